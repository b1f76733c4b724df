"""latkit: find where an API's latency goes, from traces and query logs, in DuckDB.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("sample_data/traces")
>>> wb.sql("select service, count(*) as spans from spans group by all order by all")
"""

from __future__ import annotations

import typing

from latkit.ingest import LoadError
from latkit.workbook import FileReport, LoadReport, Workbook, WorkbookError, open

if typing.TYPE_CHECKING:
    from latkit.clickhouse import ClickHouseWorkbook

__version__ = "0.1.0"


def open_clickhouse(
    url_or_client: typing.Any, table: str = "otel_traces", **window: typing.Any
) -> ClickHouseWorkbook:
    """Open a ClickHouse ``otel_traces`` table as a workbook (``latkit.clickhouse``).

    The analyses run inside ClickHouse and return polars frames; ``since``, ``until`` and
    ``services`` restrict the spans they see. Needs the ``clickhouse``
    extra (``pip install latkit[clickhouse]``), imported only when this is called.

    >>> wb = latkit.open_clickhouse("http://localhost:8123")  # doctest: +SKIP
    """
    from latkit import clickhouse

    return clickhouse.open_clickhouse(url_or_client, table, **window)


__all__ = [
    "FileReport",
    "LoadError",
    "LoadReport",
    "Workbook",
    "WorkbookError",
    "__version__",
    "open",
    "open_clickhouse",
]
