"""latkit: find where an API's latency goes, from traces and query logs, in DuckDB.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("sample_data/traces")
>>> wb.sql("select service, count(*) as spans from spans group by all order by all")
"""

from __future__ import annotations

from latkit.ingest import LoadError
from latkit.workbook import FileReport, LoadReport, Workbook, WorkbookError, open

__version__ = "0.1.0"

__all__ = [
    "FileReport",
    "LoadError",
    "LoadReport",
    "Workbook",
    "WorkbookError",
    "__version__",
    "open",
]
