"""PostgreSQL csvlog files (``log_destination = 'csvlog'``): 23, 24 or 26 columns.

PostgreSQL 12 writes 23 columns, 13 adds ``backend_type`` (24) and 14 to 17 add
``leader_pid`` and ``query_id`` (26); the count is read from the first record. DuckDB's
``read_csv`` reads the file (gzip and zstd itself; bz2 is decompressed to a temporary file
first) with the columns given, in record batches, and ``pg_messages`` says what each message
means. ``line`` is the line on which a record starts (records span lines where a field holds
newlines); malformed records go to ``rejects`` with their line (DuckDB's count). Records
after a malformed one have ``line`` too small by the lines it took: rejects are known only
once the scan is done, and correcting the few files that have them is not worth a second
pass.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pglogs/main.csv.gz")
>>> wb.sql("select count(*) as n from queries where statement like 'SELECT * FROM orders%'")["n"][0]
30
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from latkit.ingest import LoadError, Reject, Rows, Source, excerpt
from latkit.ingest.pg_messages import OVERLAP, Classifier, connect

__all__ = ["COLUMNS", "FORMAT", "read", "sniff"]

FORMAT = "pg_csvlog"

#: csvlog columns by count (PostgreSQL docs, "Using CSV-Format Log Output", 12 / 13 / 14+).
COLUMNS: dict[int, tuple[str, ...]] = {
    23: (
        "log_time", "user_name", "database_name", "process_id", "connection_from",
        "session_id", "session_line_num", "command_tag", "session_start_time",
        "virtual_transaction_id", "transaction_id", "error_severity", "sql_state_code",
        "message", "detail", "hint", "internal_query", "internal_query_pos", "context",
        "query", "query_pos", "location", "application_name",
    ),
}
COLUMNS[24] = (*COLUMNS[23], "backend_type")
COLUMNS[26] = (*COLUMNS[24], "leader_pid", "query_id")

#: Record batch size handed to the classifier.
BATCH_ROWS = 500_000

_FIRST = re.compile(
    rb'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z0-9_/+\-:]+)?,("[^"]*"|[^,]*),'
)

# Text fields that may hold newlines (the others never do).
_MULTILINE = ("message", "detail", "hint", "internal_query", "context", "query",
              "application_name", "user_name", "database_name")

_SELECT = """
SELECT
    pg_ts_ns(log_time) AS ts_ns,
    try_cast(process_id AS INTEGER) AS pid,
    nullif(session_id, '') AS session_id,
    nullif(user_name, '') AS user_name,
    nullif(database_name, '') AS database,
    nullif(application_name, '') AS application,
    nullif(regexp_replace(connection_from, ':\\d+$', ''), '') AS client,
    error_severity AS severity,
    message,
    nullif(detail, '') AS detail,
    {query_id} AS query_id,
    {newlines} AS newlines
FROM read_csv(
    $path, columns = $columns, header = false, delim = ',', quote = '"', escape = '"',
    compression = $compression, ignore_errors = true, store_rejects = true,
    null_padding = false, parallel = true, auto_detect = false,
    strict_mode = false
)
"""


# DuckDB reports a short record once per missing column: one reject per record.
_REJECTS = """
SELECT line, arg_min(csv_line, column_idx), arg_min(error_message, column_idx)
FROM reject_errors
GROUP BY line
ORDER BY line
"""


def sniff(head: bytes) -> bool:
    """A CSV whose first field is a PostgreSQL timestamp and whose first record has a csvlog
    column count."""
    if not _FIRST.match(head):
        return False
    return _column_count(head) in COLUMNS


def _column_count(head: bytes) -> int | None:
    text = head.decode("utf-8", "replace")
    try:
        record = next(csv.reader(io.StringIO(text, newline="")))
    except (StopIteration, csv.Error):
        return None
    return len(record)


def read(
    source: Source,
    threads: int | None = None,
    batch_rows: int = BATCH_ROWS,
    overlap: int = OVERLAP,
    **_: object,
) -> Iterator[Rows | Reject]:
    """Queries, connections and auto_explain plans of a csvlog (see the module doc)."""
    count = _column_count(source.head())
    if count not in COLUMNS:
        raise LoadError(
            f"{source.name}: the first csvlog record has {count} columns; PostgreSQL 12 writes "
            f"23, 13 writes 24 and 14-17 write 26"
        )
    names = COLUMNS[count]
    with _readable(source) as (path, compression):
        con = connect(threads)
        # contains() first: counting by replace() copies every field, and few have newlines
        newlines = " + ".join(
            f"CASE WHEN contains({c}, E'\\n') "
            f"THEN length({c}) - length(replace({c}, E'\\n', '')) ELSE 0 END"
            for c in _MULTILINE if c in names
        )
        query_id = "try_cast(query_id AS BIGINT)" if "query_id" in names else "NULL::BIGINT"
        sql = _SELECT.format(query_id=query_id, newlines=newlines)
        params = {"path": str(path), "columns": dict.fromkeys(names, "VARCHAR"),
                  "compression": compression}
        classifier = Classifier(derive_sessions=False, threads=threads, overlap=overlap)
        next_line = 1
        for batch in _batches(con, sql, params, batch_rows):
            if isinstance(batch, Reject):  # the file breaks off here (a corrupt .gz or .zst)
                yield Reject(f"line {next_line}", batch.reason)
                break
            extra = batch.column("newlines").to_numpy(zero_copy_only=False).astype(np.int64)
            span = 1 + extra
            starts = next_line + np.cumsum(span) - span
            next_line = int(starts[-1] + span[-1]) if len(starts) else next_line
            entries = pa.Table.from_batches([batch]).drop_columns(["newlines"])
            entries = entries.append_column("line", pa.array(starts, pa.int64()))
            yield from classifier.feed(entries)
        yield from classifier.close()
        try:
            bad = con.sql(_REJECTS).fetchall()
        except duckdb.CatalogException:  # the scan broke off before DuckDB made the table
            bad = []
        for line, text, why in bad:
            yield Reject(f"line {line}", f"not a csvlog record: {why.splitlines()[0]}",
                         excerpt(text or ""))


def _batches(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, object], batch_rows: int
) -> Iterator[pa.RecordBatch | Reject]:
    """The query's batches; a Reject last if DuckDB cannot read on (what came before stays)."""
    try:
        yield from con.sql(sql, params=params).to_arrow_reader(batch_rows)
    except duckdb.IOException as e:
        yield Reject("", f"cannot read on: {str(e).splitlines()[0]}")


class _readable:
    """A path and compression DuckDB can read: the file itself, or bz2 decompressed to a
    temporary file (DuckDB reads gzip and zstd but not bz2)."""

    def __init__(self, source: Source):
        self.source = source
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> tuple[Path, str]:
        compression = {"gzip": "gzip", "zstd": "zstd", None: "none"}.get(
            self.source.compression
        )
        if compression is not None:
            return self.source.path, compression
        self.tmp = tempfile.TemporaryDirectory(prefix="latkit-")
        path = Path(self.tmp.name) / "log.csv"
        with self.source.open() as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst, 4 << 20)
        return path, "none"

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
