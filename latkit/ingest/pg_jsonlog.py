"""PostgreSQL jsonlog files (``log_destination = 'jsonlog'``, PostgreSQL 15 and later).

One JSON object per line; keys whose value is NULL are left out by the server. Lines are read
in bounded chunks and decoded by DuckDB's ``json_transform`` with the type given; a line that
is not a JSON object goes to ``rejects`` with its line number. ``pg_messages`` says what each
message means.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pglogs/main.json.gz")
>>> wb.sql("select count(*) as n from queries where statement like 'SELECT * FROM orders%'")["n"][0]
30
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from latkit.ingest import Reject, Rows, Source, excerpt
from latkit.ingest.pg_messages import OVERLAP, Classifier, connect, line_chunks

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "pg_jsonlog"

CHUNK_BYTES = 32 << 20

_SNIFF = re.compile(rb'^\{"timestamp":"\d{4}-\d\d-\d\d [^"]*",.*"error_severity":"[A-Z0-9]+"')

#: The keys read, as json_transform's type (others are ignored).
_TYPE = (
    '{"timestamp": "VARCHAR", "user": "VARCHAR", "dbname": "VARCHAR", "pid": "INTEGER",'
    ' "remote_host": "VARCHAR", "session_id": "VARCHAR", "error_severity": "VARCHAR",'
    ' "message": "VARCHAR", "detail": "VARCHAR", "application_name": "VARCHAR",'
    ' "query_id": "BIGINT"}'
)

_ENTRIES = f"""
WITH j AS (
    SELECT
        line,
        text[1:-2] AS text,
        CASE WHEN json_valid(text) AND starts_with(ltrim(text), '{{')
             THEN json_transform(text, '{_TYPE}') END AS r
    FROM _lines
)
SELECT
    line,
    pg_ts_ns(r.timestamp) AS ts_ns,
    r.pid,
    r.session_id,
    r.user AS user_name,
    r.dbname AS database,
    nullif(r.application_name, '') AS application,
    r.remote_host AS client,
    r.error_severity AS severity,
    r.message,
    r.detail,
    r.query_id,
    CASE WHEN r.message IS NULL AND text <> '' THEN text END AS unmatched
FROM j
WHERE text <> ''
"""


def sniff(head: bytes) -> bool:
    """A first line that is a PostgreSQL jsonlog object."""
    return bool(_SNIFF.match(head.lstrip()))


def read(
    source: Source,
    threads: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    overlap: int = OVERLAP,
    **_: object,
) -> Iterator[Rows | Reject]:
    """Queries, connections and auto_explain plans of a jsonlog (see the module doc)."""
    con = connect(threads)
    classifier = Classifier(derive_sessions=False, threads=threads, overlap=overlap)
    for lines in line_chunks(source, chunk_bytes):
        con.register("_lines", lines)
        entries = con.sql(_ENTRIES).to_arrow_table()
        con.unregister("_lines")
        unmatched = entries.column("unmatched")
        if unmatched.null_count < len(unmatched):
            bad = entries.filter(unmatched.is_valid())
            for line, text in zip(bad.column("line").to_pylist(),
                                  bad.column("unmatched").to_pylist(), strict=True):
                yield Reject(f"line {line}", "not a jsonlog record (a JSON object with a "
                             "message)", excerpt(text))
            entries = entries.filter(unmatched.is_null())
        yield from classifier.feed(entries.drop_columns(["unmatched"]))
    yield from classifier.close()
