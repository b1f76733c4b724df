"""pg_stat_statements exports: CSV with a header, from PostgreSQL 12 to 17.

What this reads is what one of these prints, with or without names for the database and user::

    COPY (SELECT * FROM pg_stat_statements) TO STDOUT WITH CSV HEADER
    \\copy (SELECT d.datname, r.rolname, s.* FROM pg_stat_statements s
           JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid)
           TO 'statements.csv' WITH CSV HEADER

The header decides everything: columns are found by name, in any order, under the names of
every version (``total_time`` before 13, ``total_exec_time`` + ``total_plan_time`` since;
``blk_read_time`` before 17, ``shared_blk_read_time`` since). Each row becomes one
``statements`` row:

- ``total_ms`` is ``total_exec_time + total_plan_time`` when the export has planning time
  (PostgreSQL 13+, zero unless ``pg_stat_statements.track_planning`` is on), so that it is
  everything the statement cost the server; ``total_time`` before 13. ``mean_ms`` is
  ``total_ms / calls``, consistent with it (PostgreSQL's own ``mean_exec_time`` stays in
  ``extra``).
- ``database`` and ``user_name`` come from ``datname`` / ``rolname`` (or ``database``,
  ``usename``, ...) when the export joined them; an export of the bare view has only the
  oids ``dbid`` / ``userid``, which stay in ``extra`` and leave these NULL.
- ``extra`` is a JSON object of every column not copied into a column of its own, so
  nothing in the export is lost (``extra ->> 'mean_exec_time'``).

One statement may appear under several query ids (NOTES.md: psycopg's int2 and int4
parameters); every row is kept, and the workbook's fingerprint groups them.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pgplans/statements_joined.csv")
>>> wb.sql("select calls from statements where query like 'UPDATE orders%'")["calls"][0]
5
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from latkit.ingest import LoadError, Reject, Rows, Source, excerpt

__all__ = ["FORMAT", "STATEMENTS_STAGING", "read", "sniff"]

FORMAT = "pg_stat_statements"

#: What ``read`` yields for the ``statements`` table (the workbook adds fingerprint, ...).
STATEMENTS_STAGING = pa.schema(
    [
        ("query", pa.string()),
        ("query_id", pa.int64()),
        ("database", pa.string()),
        ("user_name", pa.string()),
        ("calls", pa.int64()),
        ("total_ms", pa.float64()),
        ("mean_ms", pa.float64()),
        ("rows", pa.int64()),
        ("shared_blks_hit", pa.int64()),
        ("shared_blks_read", pa.int64()),
        ("temp_blks_written", pa.int64()),
        ("extra", pa.string()),
    ]
)

#: Staging column <- the export's columns that can hold it, the first present wins.
#: These are copied as they are, so they are left out of ``extra``.
COPIED: dict[str, tuple[str, ...]] = {
    "query": ("query",),
    "query_id": ("queryid", "query_id"),
    "database": ("datname", "database", "dbname", "db"),
    "user_name": ("rolname", "usename", "user_name", "username", "user"),
    "calls": ("calls",),
    "rows": ("rows",),
    "shared_blks_hit": ("shared_blks_hit",),
    "shared_blks_read": ("shared_blks_read",),
    "temp_blks_written": ("temp_blks_written",),
}
#: Execution time: ``total_exec_time`` since PostgreSQL 13, ``total_time`` before.
EXEC_TIME = ("total_exec_time", "total_time")
PLAN_TIME = "total_plan_time"

#: Rows per yielded batch.
BATCH_ROWS = 50_000

#: Column types by name; anything else is read as text (and lands in ``extra`` as text).
#: A value that does not fit its column's type rejects the row, with its line number.
_DOUBLE = re.compile(r"_time$|^wal_bytes$")
_BIGINT = re.compile(
    r"^(calls|rows|plans|queryid|query_id|userid|dbid|wal_records|wal_fpi|wal_buffers_full"
    r"|jit_functions)$|_blks_|_count$|_calls$|^parallel_workers_"
)
_BOOLEAN = re.compile(r"^toplevel$")


def sniff(head: bytes) -> bool:
    """Whether ``head`` starts with a pg_stat_statements CSV header.

    >>> sniff(b"userid,dbid,queryid,query,calls,total_exec_time,rows\\n10,5,1,select 1,1,0.1,1")
    True
    >>> sniff(b'{"resourceSpans": []}')
    False
    """
    columns = _header(head)
    return columns is not None and _is_export(columns)


def read(source: Source, **options: object) -> Iterator[Rows | Reject]:
    """The rows of one export, as ``statements`` batches, then one ``Reject`` per bad line."""
    first = source.head()
    columns = _header(first)
    if columns is None or not _is_export(columns):
        raise LoadError(
            f"{source.name}: not a pg_stat_statements CSV export: the header must name "
            f"query, calls and total_exec_time (or total_time); it starts {excerpt(first)!r}"
        )
    with tempfile.TemporaryDirectory(prefix="latkit-pgss-") as tmp:
        path, compression = _readable_by_duckdb(source, Path(tmp))
        con = duckdb.connect()
        try:
            con.read_csv(
                str(path),
                header=True,
                columns={name: _type(name) for name in columns},
                sep=",",
                quotechar='"',
                escapechar='"',
                compression=compression,
                store_rejects=True,
                max_line_size=_MAX_LINE,
                buffer_size=2 * _MAX_LINE,
            ).create_view("_export")
            for batch in con.sql(_select(columns)).to_arrow_reader(BATCH_ROWS):
                yield Rows("statements", batch.cast(STATEMENTS_STAGING))
            rejects = con.execute(_REJECTS).fetchall()
            lines = _line_numbers(source, [offset for offset, _, _ in rejects])
            for offset, reason, text in rejects:
                yield Reject(f"line {lines[offset]}", reason, excerpt(text or ""))
        except duckdb.Error as e:
            raise LoadError(f"{source.name}: cannot read as a CSV export: {e}") from e
        finally:
            con.close()


#: A query text longer than this (bytes, on one CSV line) rejects its row.
_MAX_LINE = 16 << 20

#: One reject per bad row (DuckDB may report several errors on one row), by the byte
#: offset where the row starts: DuckDB's own ``line`` counts rows, not the file's lines,
#: which differ once a query text spans several lines.
_REJECTS = """
    SELECT line_byte_position, min(error_message), min(csv_line)
    FROM reject_errors
    GROUP BY line_byte_position
    ORDER BY line_byte_position
"""


def _line_numbers(source: Source, offsets: list[int]) -> dict[int, int]:
    """The file's line number (from 1) at each byte offset of the decompressed content."""
    lines: dict[int, int] = {}
    pending = sorted(set(offsets))
    if not pending:
        return lines
    seen, newlines = 0, 0
    with source.open() as f:
        while pending and (chunk := f.read(1 << 20)):
            while pending and pending[0] < seen + len(chunk):
                lines[pending[0]] = newlines + chunk.count(b"\n", 0, pending[0] - seen) + 1
                pending.pop(0)
            seen += len(chunk)
            newlines += chunk.count(b"\n")
    for offset in pending:  # past the end: cannot happen for a row DuckDB read
        lines[offset] = newlines + 1
    return lines


def _select(columns: list[str]) -> str:
    """The query turning ``_export`` into ``STATEMENTS_STAGING`` rows.

    Only names from ``COPIED``, ``EXEC_TIME`` and ``PLAN_TIME`` are written into the SQL,
    and only once found in the header, so no text from the file reaches the query.
    """
    present = set(columns)
    picked = {
        target: next((_ident(c) for c in candidates if c in present), "NULL")
        for target, candidates in COPIED.items()
    }
    total = next(_ident(c) for c in EXEC_TIME if c in present)
    if PLAN_TIME in present:
        total = f"{total} + coalesce({_ident(PLAN_TIME)}, 0)"
    copied = [c for candidates in COPIED.values() for c in candidates if c in present]
    rest = [c for c in columns if c not in copied]
    extra = (
        f"to_json(struct_pack(*COLUMNS(* EXCLUDE ({', '.join(map(_ident, copied))}))))"
        if rest
        else "'{}'"
    )
    return f"""
        SELECT
            {picked["query"]} AS query,
            {picked["query_id"]} AS query_id,
            {picked["database"]} AS database,
            {picked["user_name"]} AS user_name,
            {picked["calls"]} AS calls,
            {total} AS total_ms,
            ({total}) / nullif({picked["calls"]}, 0) AS mean_ms,
            {picked["rows"]} AS rows,
            {picked["shared_blks_hit"]} AS shared_blks_hit,
            {picked["shared_blks_read"]} AS shared_blks_read,
            {picked["temp_blks_written"]} AS temp_blks_written,
            CAST({extra} AS VARCHAR) AS extra
        FROM _export
    """


def _header(head: bytes) -> list[str] | None:
    """The column names of the first line, lowercased and made unique; None if no CSV."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r").lstrip(b"\xef\xbb\xbf")
    if not line or b"," not in line:
        return None
    try:
        names = next(csv.reader([line.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None
    columns: list[str] = []
    for name in (n.strip().lower() for n in names):
        unique, n = name, 1
        while unique in columns:
            n += 1
            unique = f"{name}_{n}"
        columns.append(unique)
    return columns


def _is_export(columns: list[str]) -> bool:
    return "query" in columns and "calls" in columns and any(c in columns for c in EXEC_TIME)


def _type(name: str) -> str:
    if _BOOLEAN.search(name):
        return "BOOLEAN"
    if _DOUBLE.search(name):
        return "DOUBLE"
    if _BIGINT.search(name):
        return "BIGINT"
    return "VARCHAR"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _readable_by_duckdb(
    source: Source, tmp: Path
) -> tuple[Path, Literal["none", "gzip", "zstd"]]:
    """The file as DuckDB can read it: gzip and zstd as they are, bz2 decompressed first."""
    if source.compression == "gzip":
        return source.path, "gzip"
    if source.compression == "zstd":
        return source.path, "zstd"
    if source.compression is None:
        return source.path, "none"
    plain = tmp / "export.csv"
    with source.open() as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst, 4 << 20)
    return plain, "none"
