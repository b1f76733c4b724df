"""PostgreSQL stderr logs (``log_destination = 'stderr'``), with any ``log_line_prefix``.

The prefix is detected from the first lines (``pg_messages.KNOWN_PREFIXES``: ``'%m [%p] '``,
``'%m [%p] %q%u@%d '``, ``'%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h '``, ...) or given::

    wb.load("postgresql.log", log_line_prefix="%m [%p] %q%u@%d ")

An entry is a line that starts with the prefix and a severity (``LOG:  ``), plus the lines
after it that start with a tab (PostgreSQL indents every further line of a message with one,
and removes nothing else). A ``DETAIL:`` entry belongs to the entry before it. A line that
is neither goes to ``rejects`` with its line number. What the messages mean is
``pg_messages``' business.

The file is read in chunks of bytes cut at entry boundaries, split into lines with numpy and
taken apart with one regular expression in DuckDB, so memory stays bounded and Python does no
per-line work.

Not read (yet): ``log_destination = 'syslog'`` files, whose lines carry a syslog header and
``[n-k]`` continuation numbers before the prefix, and messages in a language other than
English (``lc_messages``): the severities and message texts are matched in English.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pglogs/main.log")
>>> wb.sql("select count(*) as n from queries where statement like 'SELECT * FROM orders%'")["n"][0]
30
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from latkit.ingest import LoadError, Reject, Rows, Source, excerpt
from latkit.ingest.pg_messages import (
    KNOWN_PREFIXES,
    OVERLAP,
    SEVERITY_RE,
    Classifier,
    Prefix,
    connect,
    detect_prefix,
    line_chunks,
    prefix_regex,
)

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "pg_stderr"

#: Bytes read per chunk (the chunk is cut back to the last complete entry).
CHUNK_BYTES = 32 << 20

_SEVERITY_ANYWHERE = re.compile(r"\b" + SEVERITY_RE)

# The chunk's lines (`_lines`: line, grp, cont, text) -> one row per entry head, with its
# continuation lines glued on (one tab removed from each) and the DETAIL after it.
_ENTRIES = r"""
WITH heads AS (
    SELECT
        line,
        grp,
        text,
        regexp_extract(text, $pattern, $names) AS f,
        -- every line ends with a newline (line_chunks makes sure); CRLF files have two
        CASE WHEN suffix(text, E'\r\n') THEN -3 ELSE -2 END AS last
    FROM _lines WHERE NOT cont
), more AS (
    SELECT grp, string_agg(text[2:CASE WHEN suffix(text, E'\r\n') THEN -3 ELSE -2 END],
                           E'\n' ORDER BY line) AS more
    FROM _lines WHERE cont GROUP BY grp
), entries AS MATERIALIZED (
    SELECT
        h.line,
        h.grp,
        h.text,
        h.f,
        CASE WHEN m.more IS NULL THEN h.text[length(h.f.head) + 1:h.last]
             ELSE h.text[length(h.f.head) + 1:h.last] || E'\n' || m.more END AS message
    FROM heads AS h LEFT JOIN more AS m USING (grp)
), details AS (
    -- a DETAIL entry is the one right after its message (PostgreSQL writes them together)
    SELECT grp - 1 AS grp, message AS detail FROM entries WHERE f.severity = 'DETAIL'
)
SELECT
    line,
    {ts} AS ts_ns,
    {pid} AS pid,
    {session_id} AS session_id,
    {user_name} AS user_name,
    {database} AS database,
    {application} AS application,
    {client} AS client,
    nullif(f.severity, '') AS severity,
    message,
    d.detail,
    {query_id} AS query_id,
    CASE WHEN f.severity = '' AND trim(text, E'\r\n') <> '' THEN text[1:-2] END AS unmatched
FROM entries LEFT JOIN details AS d USING (grp)
"""

# Continuation lines before the file's first entry have nothing to belong to.
_ORPHANS = r"""
SELECT line, text[1:-2] AS text FROM _lines WHERE cont AND grp = 0 ORDER BY line
"""


def sniff(head: bytes) -> bool:
    """A text log whose lines carry PostgreSQL's ``LOG:  `` / ``ERROR:  `` markers."""
    text = head.decode("utf-8", "replace")
    if text.lstrip().startswith(("{", "[")):
        return False
    lines = text.splitlines()[:200]
    return sum(1 for line in lines if _SEVERITY_ANYWHERE.search(line)) >= max(1, len(lines) // 10)


def read(
    source: Source,
    log_line_prefix: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    threads: int | None = None,
    overlap: int = OVERLAP,
    **_: object,
) -> Iterator[Rows | Reject]:
    """Queries, connections and auto_explain plans of a stderr log (see the module doc)."""
    head_lines = source.head().decode("utf-8", "replace").splitlines()[:500]
    if log_line_prefix is not None:
        prefix = prefix_regex(log_line_prefix)
        tried = [log_line_prefix]
    else:
        found = detect_prefix(head_lines)
        tried = list(KNOWN_PREFIXES)
        if found is None:
            raise _no_statements(source, tried, head_lines, None)
        prefix = found
    con = connect(threads)
    sql = _ENTRIES.format(**_field_sql(prefix))
    params = {"pattern": prefix.pattern, "names": list(prefix.names)}
    classifier = Classifier(
        derive_sessions="session_id" not in prefix.names, threads=threads, overlap=overlap
    )
    first_unmatched: str | None = None
    for lines in line_chunks(source, chunk_bytes):
        con.register("_lines", lines)
        if lines.column("grp")[0].as_py() == 0:
            for line, text in con.execute(_ORPHANS).fetchall():
                first_unmatched = first_unmatched or text
                yield Reject(f"line {line}", "continuation line before any log entry",
                             excerpt(text))
        entries = con.sql(sql, params=params).to_arrow_table()
        con.unregister("_lines")
        unmatched = entries.column("unmatched")
        if unmatched.null_count < len(unmatched):
            bad = entries.filter(unmatched.is_valid())
            for line, text in zip(bad.column("line").to_pylist(),
                                  bad.column("unmatched").to_pylist(), strict=True):
                first_unmatched = first_unmatched or text
                yield Reject(f"line {line}",
                             f"does not start with log_line_prefix {prefix.text!r}",
                             excerpt(text))
            entries = entries.filter(unmatched.is_null())
        yield from classifier.feed(entries.drop_columns(["unmatched"]))
    yield from classifier.close()
    if classifier.statements == 0 and first_unmatched is not None:
        raise _no_statements(source, tried, head_lines, prefix)


def _no_statements(
    source: Source, tried: list[str], head_lines: list[str], prefix: Prefix | None
) -> LoadError:
    rx = prefix.compiled() if prefix else None
    first = next((ln for ln in head_lines if ln.strip() and not (rx and rx.match(ln))), "")
    return LoadError(
        f"{source.name}: no statements found: no log_line_prefix matched "
        f"(tried {', '.join(repr(p) for p in tried)}); first unmatched line: "
        f"{excerpt(first)!r}. Pass the server's setting: "
        f"wb.load(path, log_line_prefix='...')"
    )


def _field_sql(prefix: Prefix) -> dict[str, str]:
    """SQL for each entry column from the prefix's captures (NULL where it has none)."""
    names = set(prefix.names)

    def text(name: str) -> str:
        if name not in names:
            return "NULL::VARCHAR"
        return f"nullif(nullif(f.{name}, ''), '[unknown]')"

    if "ts" in names:
        ts = "pg_ts_ns(f.ts)"
    elif "epoch" in names:
        ts = "(try_cast(f.epoch AS DECIMAL(18, 3)) * 1000000000)::BIGINT"
    else:
        ts = "NULL::BIGINT"
    client = text("client")
    if "client" in names:  # %r is host(port); keep the host, as %h would
        client = f"regexp_replace({client}, '\\(\\d+\\)$', '')"
    return {
        "ts": ts,
        "pid": "try_cast(f.pid AS INTEGER)" if "pid" in names else "NULL::INTEGER",
        "session_id": text("session_id"),
        "user_name": text("user_name"),
        "database": text("database"),
        "application": text("application"),
        "client": client,
        "query_id": "try_cast(f.query_id AS BIGINT)" if "query_id" in names else "NULL::BIGINT",
    }
