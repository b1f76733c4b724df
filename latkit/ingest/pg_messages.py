"""What PostgreSQL's log messages mean, for every log format: the logic the readers share.

The three log readers (``pg_stderr``, ``pg_csvlog``, ``pg_jsonlog``) differ only in how a
file splits into *entries* (one per logged message, with its timestamp, pid, user, ...). They
hand entries in the ``ENTRIES`` shape to a :class:`Classifier`, which turns them into rows of
the canonical tables, in DuckDB, in bounded chunks:

- ``duration: 1.2 ms  statement: ...`` is one ``queries`` row; so is ``statement: ...`` or
  ``execute <name>: ...`` without a duration (``log_statement = 'all'``), with a NULL
  duration unless a bare ``duration: 1.2 ms`` of the same pid follows (``log_statement`` and
  ``log_min_duration_statement`` both on log a statement once, its duration later).
- The extended protocol logs ``parse``, ``bind`` and ``execute`` entries. One execution is
  one row, at its ``execute`` entry: ``duration_ms`` is the execute duration (what PostgreSQL,
  pgBadger and pg_stat_statements' ``total_exec_time`` count as the statement's time) and
  ``phase_ms`` keeps ``{'parse': .., 'bind': .., 'execute': ..}`` for the parse and bind of
  the same pid since its previous execution (a named prepared statement is parsed once, so
  later executions have no ``parse``). ``DETAIL:  parameters: ...`` goes to ``parameters``.
- ``connection received``, ``connection authenticated``, ``connection authorized`` and
  ``disconnection: session time: ...`` are ``connections`` rows (events ``received``,
  ``authenticated``, ``authorized``, ``disconnection``).
- auto_explain's ``duration: 1.2 ms  plan:`` entries are ``plans`` rows (JSON plans are
  flattened into ``plan_nodes`` by ``pg_explain.flatten``; text plans are read by
  ``pg_explain_text`` into the same shape first, and the text is kept as a JSON string).
  They are *not* ``queries`` rows: the statement's own duration line is.

Every row gets a ``session_id``. Where the format has none (a stderr prefix without ``%c``)
it is derived as PostgreSQL makes it: ``<session start, Unix seconds, hex>.<pid, hex>``, the
start taken from the pid's latest ``connection received`` entry, else from the pid's first
entry in the file. Query rows without user, database, application or client in their prefix
get them from their session's connection entries.

>>> from latkit.ingest.pg_messages import prefix_regex
>>> prefix_regex("%m [%p] ").names
('head', 'ts', 'pid', 'severity')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from latkit import ingest
from latkit.ingest import MAX_RECORD_BYTES, LoadError, Rows, Source

__all__ = [
    "ENTRIES",
    "KNOWN_PREFIXES",
    "OVERLAP",
    "SEVERITIES",
    "Classifier",
    "Prefix",
    "connect",
    "detect_prefix",
    "line_chunks",
    "prefix_regex",
]

#: The entries a reader hands to the ``Classifier``: one per logged message, in file order.
#: ``line`` is the (1-based) line of the entry's first line in the file; ``detail`` is the
#: message's DETAIL text; ``session_id`` may be NULL (it is derived then).
ENTRIES = pa.schema(
    [
        ("line", pa.int64()),
        ("ts_ns", pa.int64()),
        ("pid", pa.int32()),
        ("session_id", pa.string()),
        ("user_name", pa.string()),
        ("database", pa.string()),
        ("application", pa.string()),
        ("client", pa.string()),
        ("severity", pa.string()),
        ("message", pa.string()),
        ("detail", pa.string()),
        ("query_id", pa.int64()),
    ]
)

#: Message severities as PostgreSQL writes them (lc_messages = 'C').
SEVERITIES = (
    "LOG", "ERROR", "WARNING", "FATAL", "PANIC", "DETAIL", "HINT", "CONTEXT", "STATEMENT",
    "QUERY", "LOCATION", "NOTICE", "INFO", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5",
    "DEBUG",
)
SEVERITY_RE = "(" + "|".join(SEVERITIES) + "):  "

#: Prefixes tried, in order, when none is given (the first that matches most lines wins).
KNOWN_PREFIXES = (
    "%m [%p] %q%u@%d ",  # Debian and Ubuntu's default
    "%m [%p] ",  # PostgreSQL's default since 10
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",  # pgBadger's documentation
    "%t [%p]: [%l-1] user=%u,db=%d ",
    "%t [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%m [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: [%l-1] ",
    "%m %c ",
    "%t [%p] ",
    "%t ",
    "%m ",
    "",  # the default before PostgreSQL 10
)

_TS = (
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?"
    r"(?: [A-Za-z][A-Za-z0-9_/+\-]*| [+\-]\d\d(?::?\d\d)?)?"
)

#: log_line_prefix escape -> (regex, entry column or None)
_ESCAPES: dict[str, tuple[str, str | None]] = {
    "a": (r"(.*?)", "application"),
    "u": (r"(.*?)", "user_name"),
    "d": (r"(.*?)", "database"),
    "r": (r"(.*?)", "client"),
    "h": (r"(.*?)", "client"),
    "b": (r"(.*?)", None),
    "p": (r"(\d+)", "pid"),
    "P": (r"\d*", None),
    "t": (f"({_TS})", "ts"),
    "m": (f"({_TS})", "ts"),
    "n": (r"(\d+(?:\.\d+)?)", "epoch"),
    "i": (r".*?", None),
    "e": (r"[0-9A-Z]{5}", None),
    "c": (r"([0-9a-f]+\.[0-9a-f]+)", "session_id"),
    "l": (r"\d+", None),
    "s": (f"{_TS}", None),
    "v": (r"\S*?", None),
    "x": (r"\d*", None),
    "Q": (r"(-?\d+)", "query_id"),
}


@dataclass(frozen=True)
class Prefix:
    """A ``log_line_prefix`` as a regular expression matching a whole first line of an entry.

    ``pattern`` captures ``names``: ``head`` (the whole prefix and severity marker: the
    message is what follows), the prefix's fields, then ``severity``. It is RE2 and Python
    ``re`` compatible, so DuckDB and Python agree on what matches.
    """

    text: str
    pattern: str
    names: tuple[str, ...]

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


def prefix_regex(prefix: str) -> Prefix:
    """The regular expression for lines written with this ``log_line_prefix``.

    >>> p = prefix_regex("%t [%p]: [%l-1] user=%u,db=%d ")
    >>> m = p.compiled().match("2024-01-02 03:04:05 UTC [42]: [3-1] user=app,db=shop LOG:  x")
    >>> dict(zip(p.names, m.groups()))["database"]
    'shop'
    """
    parts: list[str] = []
    names: list[str] = []
    optional = False
    i = 0
    while i < len(prefix):
        c = prefix[i]
        if c != "%" or i + 1 >= len(prefix):
            parts.append(re.escape(c) if c != " " else " +")
            i += 1
            continue
        j = i + 1
        padded = False
        while j < len(prefix) and (prefix[j] in "-" or prefix[j].isdigit()):
            padded = True
            j += 1
        if j >= len(prefix):
            break
        esc = prefix[j]
        i = j + 1
        if esc == "%":
            parts.append("%")
        elif esc == "q":
            parts.append("(?:")  # the rest is written only by session processes
            optional = True
        elif esc in _ESCAPES:
            regex, name = _ESCAPES[esc]
            if name is not None and name in names:  # %r and %h both give the client
                regex, name = regex.replace("(", "(?:", 1), None
            parts.append(r" *" + regex + r" *" if padded else regex)
            if name is not None:
                names.append(name)
        else:
            parts.append(re.escape("%" + esc))
    if optional:
        parts.append(")?")
    # No capture of the message: RE2 then stops at the severity instead of scanning the line.
    pattern = "^(" + "".join(parts) + SEVERITY_RE + ")"
    return Prefix(prefix, pattern, ("head", *names, "severity"))


def detect_prefix(lines: Sequence[str]) -> Prefix | None:
    """The known prefix that matches most of these lines (None if none matches any).

    Ties go to the prefix that reads more non-empty fields, then to the simpler one: with
    ``%q`` a prefix's tail is optional, so ``'%m [%p] %q%u@%d '`` matches every line that
    ``'%m [%p] '`` matches, and should win only where lines do carry ``user@db``.

    >>> detect_prefix(["2024-01-02 03:04:05.678 UTC [42] LOG:  statement: SELECT 1"]).text
    '%m [%p] '
    """
    best: tuple[int, int, int, Prefix] | None = None
    for text in KNOWN_PREFIXES:
        p = prefix_regex(text)
        rx = p.compiled()
        matches = [m for m in map(rx.match, lines) if m]
        fields = sum(1 for m in matches for g in m.groups()[1:-1] if g)
        key = (len(matches), fields, -len(p.names))
        if matches and (best is None or key > best[:3]):
            best = (*key, p)
    return best[3] if best else None


TS_MACROS = (
    r"""
    CREATE OR REPLACE TEMP MACRO pg_ts_local(local, tz) AS CASE
        WHEN tz IN ('', 'UTC', 'GMT', 'Z', 'UCT') THEN try(epoch_ns(local))
        WHEN regexp_full_match(tz, '[+-]\d\d(:?\d\d)?') THEN try(epoch_ns(local))
            - (CASE WHEN tz[1] = '-' THEN -1 ELSE 1 END)
              * (tz[2:3]::BIGINT * 3600
                 + coalesce(try_cast(replace(tz[4:], ':', '') AS BIGINT), 0) * 60)
              * 1000000000
        WHEN tz IN (SELECT name FROM pg_timezone_names()) THEN try(epoch_ns(timezone(tz, local)))
    END
    """,
    r"""
    CREATE OR REPLACE TEMP MACRO pg_ts_ns(t) AS CASE  -- try(): NULL past nanoseconds' range
        WHEN suffix(t, ' UTC') THEN try(epoch_ns(try_cast(t[1:-5] AS TIMESTAMP)))
        ELSE pg_ts_local(
            try_cast(regexp_extract(t, '^(\S+ \S+)', 1) AS TIMESTAMP),
            regexp_extract(t, '^\S+ \S+ (\S+)$', 1))
    END
    """,
)

# One row per entry, with the message taken apart; `_t` holds this round's entries.
# Plain string functions, not one regular expression: several times faster on long texts.
#   duration: 1.2 ms  statement: SELECT ...      | statement: SELECT ...
#   duration: 1.2 ms  execute <unnamed>: SELECT  | execute S_1/C_2: SELECT ...
#   duration: 1.2 ms  parse S_1: ... / bind ...  | duration: 1.2 ms  (bare)
#   duration: 1.2 ms  plan:\n{...}
_CLASSIFY = """
CREATE OR REPLACE TEMP TABLE _c AS
WITH d AS (
    SELECT
        *,
        starts_with(message, 'duration: ') AS has_dur,
        -- where the message goes on after "duration: 1.2 ms  " (1 without a duration);
        -- positions, not substrings: copying every statement twice costs more than parsing
        CASE WHEN starts_with(message, 'duration: ') THEN strpos(message, ' ms') + 5 ELSE 1
        END AS pos
    FROM _t
    WHERE severity = 'LOG'
), v AS (
    SELECT
        *,
        CASE
            WHEN substr(message, pos, 11) = 'statement: ' THEN 'statement'
            WHEN substr(message, pos, 8) = 'execute ' THEN 'execute'
            WHEN has_dur AND substr(message, pos, 6) = 'parse ' THEN 'parse'
            WHEN has_dur AND substr(message, pos, 5) = 'bind ' THEN 'bind'
            WHEN has_dur AND substr(message, pos, 5) = 'plan:' THEN 'plan'
            WHEN has_dur AND length(message) < pos THEN 'duration'
        END AS verb,
        CASE
            WHEN starts_with(message, 'connection received: ') THEN 'received'
            WHEN starts_with(message, 'connection authorized: ') THEN 'authorized'
            WHEN starts_with(message, 'connection authenticated: ') THEN 'authenticated'
            WHEN starts_with(message, 'disconnection: ') THEN 'disconnection'
        END AS event
    FROM d
)
SELECT
    v.line, ts_ns, pid, coalesce(session_id, _sid.sid) AS session_id,
    user_name, database, application, client, detail,
    nullif(query_id, 0) AS query_id,
    CASE WHEN event IS NOT NULL THEN message END AS message,
    CASE WHEN has_dur THEN try_cast(message[11:pos - 6] AS DOUBLE) END AS dur,
    verb,
    CASE verb
        WHEN 'statement' THEN substr(message, pos + 11)
        WHEN 'plan' THEN ltrim(substr(message, pos + 5), E'\n')
        WHEN 'duration' THEN NULL
        ELSE substr(message, pos + strpos(substr(message, pos), ': ') + 1)
    END AS text,
    event
FROM v LEFT JOIN _sid ON _sid.line = v.line
WHERE verb IS NOT NULL OR event IS NOT NULL
"""

# Session starts per pid, for deriving session ids: the carried state (`_starts`), this
# round's `connection received` entries, and a pid's first entry where nothing earlier is known.
# The as-of join runs on (line, pid) alone: carrying the messages through it costs seconds.
_DERIVE_SESSIONS = (
    """
CREATE OR REPLACE TEMP TABLE _all_starts AS
SELECT pid, line, start_s FROM _starts
UNION ALL
SELECT pid, line, ts_ns // 1000000000 FROM _t
WHERE severity = 'LOG' AND starts_with(message, 'connection received: ')
UNION ALL
SELECT pid, min(line), arg_min(ts_ns, line) // 1000000000
FROM _t
WHERE pid IS NOT NULL AND pid NOT IN (SELECT pid FROM _starts)
GROUP BY pid
""",
    """
CREATE OR REPLACE TEMP TABLE _sid AS
SELECT t.line, printf('%x.%x', s.start_s, t.pid) AS sid
FROM (SELECT line, pid FROM _t WHERE severity = 'LOG' AND session_id IS NULL) AS t
ASOF JOIN _all_starts AS s ON t.pid = s.pid AND t.line >= s.line
""",
    """
CREATE OR REPLACE TEMP TABLE _starts AS
SELECT pid, max(line) AS line, arg_max(start_s, line) AS start_s
FROM _all_starts WHERE line < $hi GROUP BY pid
""",
)

# What each session's connection entries say about it (latest session per pid is kept).
_SESSIONS = r"""
CREATE OR REPLACE TEMP TABLE _sessions AS
WITH seen AS (
    SELECT session_id, pid, line, user_name, database, application, client FROM _sessions
    UNION ALL
    SELECT
        session_id, pid, line,
        coalesce(nullif(regexp_extract(message, ' user=(\S+)', 1), ''), user_name),
        coalesce(nullif(regexp_extract(message, ' database=(\S+)', 1), ''), database),
        coalesce(nullif(regexp_extract(message, ' application_name=(.*?)(?: SSL| GSS|$)', 1),
                        ''), application),
        coalesce(nullif(regexp_extract(message, 'host=(\S+)', 1), ''), client)
    FROM _c
    WHERE event IS NOT NULL AND line < $hi AND session_id IS NOT NULL
), merged AS (
    SELECT session_id, any_value(pid) AS pid, max(line) AS line,
           last(user_name ORDER BY line) FILTER (user_name IS NOT NULL) AS user_name,
           last(database ORDER BY line) FILTER (database IS NOT NULL) AS database,
           last(application ORDER BY line) FILTER (application IS NOT NULL) AS application,
           last(client ORDER BY line) FILTER (client IS NOT NULL) AS client
    FROM seen GROUP BY session_id
)
SELECT * FROM merged QUALIFY row_number() OVER (PARTITION BY pid ORDER BY line DESC) = 1
"""

_QUERIES = r"""
WITH paired AS (
    -- Entries that need their neighbours: executions (their parse and bind come before),
    -- statements without a duration (a bare duration may follow), and those neighbours.
    -- Only (line, pid, verb, dur) go through the windows: sorting the texts costs seconds.
    SELECT
        line, pid, verb, dur,
        coalesce(sum((verb IN ('statement', 'execute'))::INT) OVER w_before, 0) AS n_before,
        lead(verb) OVER w AS next_verb,
        lead(dur) OVER w AS next_dur
    FROM _c
    WHERE verb IN ('execute', 'parse', 'bind', 'duration')
       OR (verb = 'statement' AND dur IS NULL)
    WINDOW w AS (PARTITION BY pid ORDER BY line),
           w_before AS (PARTITION BY pid ORDER BY line
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), phases AS (
    SELECT pid, n_before,
           last(dur ORDER BY line) FILTER (verb = 'parse') AS parse_ms,
           last(dur ORDER BY line) FILTER (verb = 'bind') AS bind_ms
    FROM paired WHERE verb IN ('parse', 'bind')
    GROUP BY ALL
), extra AS (
    SELECT
        a.line,
        CASE WHEN a.dur IS NULL AND a.next_verb = 'duration' THEN a.next_dur END AS later_dur,
        CASE WHEN a.verb = 'execute' AND a.dur IS NOT NULL THEN map_from_entries(list_filter(
            [('parse', p.parse_ms), ('bind', p.bind_ms), ('execute', a.dur)],
            lambda e: e[2] IS NOT NULL)) END AS phase_ms
    FROM paired AS a
    LEFT JOIN phases AS p ON p.pid = a.pid AND p.n_before = a.n_before
    WHERE a.verb IN ('statement', 'execute')
)
SELECT
    q.ts_ns,
    coalesce(q.dur, x.later_dur) AS duration_ms,
    q.text AS statement,
    coalesce(q.database, s.database) AS database,
    coalesce(q.user_name, s.user_name) AS user_name,
    coalesce(q.application, s.application) AS application,
    q.session_id,
    q.pid,
    coalesce(q.client, s.client) AS client,
    CASE WHEN starts_with(q.detail, 'parameters: ') THEN q.detail[13:] END AS parameters,
    q.query_id,
    x.phase_ms,
    q.line
FROM _c AS q
LEFT JOIN extra AS x ON x.line = q.line
LEFT JOIN _sessions AS s ON s.session_id = q.session_id
WHERE q.verb IN ('statement', 'execute') AND q.line >= $lo AND q.line < $hi
"""

_CONNECTIONS = r"""
SELECT
    c.ts_ns,
    c.event,
    c.session_id,
    c.pid,
    coalesce(nullif(regexp_extract(c.message, ' user=(\S+)', 1), ''), c.user_name, s.user_name)
        AS user_name,
    coalesce(nullif(regexp_extract(c.message, ' database=(\S+)', 1), ''), c.database,
             s.database) AS database,
    coalesce(nullif(regexp_extract(c.message, ' application_name=(.*?)(?: SSL| GSS|$)', 1), ''),
             c.application, s.application) AS application,
    coalesce(nullif(regexp_extract(c.message, 'host=(\S+)', 1), ''), c.client, s.client)
        AS client,
    CASE WHEN c.event = 'disconnection' THEN
        (try_cast(regexp_extract(c.message, 'session time: (\d+):', 1) AS DOUBLE) * 3600
         + try_cast(regexp_extract(c.message, 'session time: \d+:(\d+):', 1) AS DOUBLE) * 60
         + try_cast(regexp_extract(c.message, 'session time: \d+:\d+:([0-9.]+)', 1) AS DOUBLE))
        * 1000
    END AS session_ms,
    c.message AS detail,
    c.line
FROM _c AS c
LEFT JOIN _sessions AS s ON s.session_id = c.session_id
WHERE c.event IS NOT NULL AND c.line >= $lo AND c.line < $hi
"""

_PLANS = """
SELECT line, ts_ns, dur AS duration_ms, text AS plan
FROM _c
WHERE verb = 'plan' AND line >= $lo AND line < $hi
ORDER BY line
"""

_INIT = """
CREATE OR REPLACE TEMP TABLE _starts (pid INTEGER, line BIGINT, start_s BIGINT);
CREATE OR REPLACE TEMP TABLE _sid (line BIGINT, sid VARCHAR);
CREATE OR REPLACE TEMP TABLE _sessions (
    session_id VARCHAR, pid INTEGER, line BIGINT, user_name VARCHAR, database VARCHAR,
    application VARCHAR, client VARCHAR
);
"""

#: A text plan's query: from "Query Text: " to the first line of the plan tree.


#: Entries kept from one round to read the next (``Classifier``). Pairs further apart than
#: this many entries of other sessions (a bind and its execute, a statement and its bare
#: duration) are not joined.
OVERLAP = 20_000


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A private DuckDB connection with the timestamp macros (never the workbook's)."""
    con = ingest.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for macro in TS_MACROS:
        con.execute(macro)
    return con


class Classifier:
    """Turns entries (``ENTRIES``) into ``queries``, ``connections``, ``plans`` and
    ``plan_nodes`` rows, a chunk at a time.

    Feed it entries in file order with :meth:`feed` and call :meth:`close` at the end. It keeps
    the last ``overlap`` entries of a round to read the next one (a ``bind`` before an
    ``execute``, a bare ``duration`` after a ``statement``), so memory is bounded by the chunk
    size, and keeps per pid only its latest session.

    >>> import pyarrow as pa
    >>> c = Classifier(derive_sessions=True)
    >>> entries = pa.table({"line": [1], "ts_ns": [0], "pid": [7], "severity": ["LOG"],
    ...     "message": ["duration: 1.5 ms  statement: SELECT 1"]})
    >>> [(r.table, r.batch.column("session_id")[0].as_py()) for r in c.feed(entries, final=True)]
    [('queries', '0.7')]
    """

    def __init__(
        self, derive_sessions: bool, overlap: int = OVERLAP, threads: int | None = None
    ):
        self.derive_sessions = derive_sessions
        self.overlap = overlap
        self.con = connect(threads)
        self.con.execute(_INIT)
        self._buffer: pa.Table | None = None
        self._lo = 0
        self._plan_id = 0
        self.statements = 0  # queries rows so far (a log without any is suspicious)

    def feed(self, entries: pa.Table, final: bool = False) -> Iterator[Rows]:
        """Rows for the entries that can be settled now (all of them when ``final``)."""
        entries = conform(entries)
        table = entries if self._buffer is None else pa.concat_tables([self._buffer, entries])
        n = table.num_rows
        if not final and n <= 2 * self.overlap:
            self._buffer = table
            return
        if final:
            hi = 1 << 62
            self._buffer = None
        else:
            # Entries need not come sorted: cut by line number, not by position.
            lines = table.column("line").to_numpy()
            hi = int(np.partition(lines, n - self.overlap)[n - self.overlap])
            keep_from = int(np.partition(lines, n - 2 * self.overlap)[n - 2 * self.overlap])
            self._buffer = table.filter(pa.array(lines >= keep_from))
        yield from self._round(table, self._lo, hi)
        self._lo = hi

    def close(self) -> Iterator[Rows]:
        """Rows for whatever is still held back."""
        if self._buffer is not None:
            yield from self.feed(self._buffer.slice(0, 0), final=True)

    def _round(self, table: pa.Table, lo: int, hi: int) -> Iterator[Rows]:
        con = self.con
        con.register("_t", table)
        params = {"lo": lo, "hi": hi}
        if self.derive_sessions:
            con.execute(_DERIVE_SESSIONS[0])
            con.execute(_DERIVE_SESSIONS[1])
            con.execute(_DERIVE_SESSIONS[2], {"hi": hi})
        con.execute(_CLASSIFY)
        con.execute(_SESSIONS, {"hi": hi})
        queries = con.sql(_QUERIES, params=params).to_arrow_table()
        connections = con.sql(_CONNECTIONS, params=params).to_arrow_table()
        plans = con.sql(_PLANS, params=params).to_arrow_table()
        con.unregister("_t")
        if queries.num_rows:
            self.statements += queries.num_rows
            yield Rows("queries", queries)
        if connections.num_rows:
            yield Rows("connections", connections)
        if plans.num_rows:
            yield from self._plans(plans)

    def _plans(self, plans: pa.Table) -> Iterator[Rows]:
        from latkit.ingest.pg_explain import flatten
        from latkit.ingest.pg_explain_text import parse as parse_text_plan

        statements: list[str | None] = []
        texts: list[str] = []
        ids: list[int] = []
        parsed_ids: list[int] = []
        parsed: list[dict[str, Any]] = []
        for text in plans.column("plan").to_pylist():
            plan_id = self._plan_id
            self._plan_id += 1
            ids.append(plan_id)
            body = (text or "").strip()
            doc: Any = None
            if body.startswith("{"):
                try:
                    doc = json.loads(body)
                except (ValueError, RecursionError):  # not JSON, or nested absurdly deep
                    doc = None
            if isinstance(doc, dict):
                statements.append(doc.get("Query Text"))
                texts.append(body)
                parsed_ids.append(plan_id)
                parsed.append(doc)
            else:
                doc = parse_text_plan(body)
                statements.append(doc.get("Query Text") if doc else None)
                texts.append(json.dumps(body))
                if doc is not None:
                    parsed_ids.append(plan_id)
                    parsed.append(doc)
        yield Rows(
            "plans",
            pa.table(
                {
                    "plan_id": pa.array(ids, pa.int64()),
                    "statement": pa.array(statements, pa.string()),
                    "ts_ns": plans.column("ts_ns"),
                    "duration_ms": plans.column("duration_ms"),
                    "plan": pa.array(texts, pa.string()),
                }
            ),
        )
        if parsed:
            nodes = flatten(parsed_ids, parsed)
            if nodes.num_rows:
                # Nodes are part of their plan's record, not records read on their own.
                yield Rows("plan_nodes", nodes, read=0)


def conform(entries: pa.Table) -> pa.Table:
    """Entries in exactly the ``ENTRIES`` shape: missing columns as NULL, types cast."""
    columns = []
    for field in ENTRIES:
        if field.name in entries.column_names:
            col = entries.column(field.name)
            columns.append(col if col.type == field.type else col.cast(field.type))
        else:
            columns.append(pa.nulls(entries.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=ENTRIES)


def line_chunks(source: Source, chunk_bytes: int) -> Iterator[pa.Table]:
    """The file's lines in chunks that end at an entry boundary.

    Columns: ``line`` (1-based), ``text`` (with its newline, always), ``cont`` (starts with
    a tab: part of the entry above) and ``grp`` (the number of the entry it belongs to, counted
    from 1 through the file; 0 before the first entry).
    """
    line_base = 0
    grp_base = 0
    carry = b""
    with source.open() as f:
        while True:
            data = f.read(chunk_bytes)
            eof = not data
            buf = carry + data
            if not buf:
                return
            if eof and not buf.endswith(b"\n"):
                buf += b"\n"  # every line ends with a newline: SQL cuts it off blindly
            arr = np.frombuffer(buf, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10) + 1  # one past each newline
            starts = np.concatenate(([0], ends[:-1])).astype(np.int64)
            if len(ends) == 0:
                carry = _bounded(source, buf, line_base)
                continue
            firsts = arr[np.minimum(starts, len(buf) - 1)]
            cont = firsts == 9
            if not eof:
                # The last entry may go on in the next chunk: keep it for then, and with it
                # any DETAIL entries right before it, so that a message and its DETAIL stay
                # in one chunk.
                heads = np.flatnonzero(~cont)
                k = len(heads) - 1
                while k > 0 and b"DETAIL:  " in buf[int(starts[heads[k]]):
                                                     int(starts[heads[k]]) + 400]:
                    k -= 1
                if k < 1:
                    carry = _bounded(source, buf, line_base)
                    continue
                keep = int(heads[k])
                carry = buf[int(starts[keep]):]
                ends, starts, cont = ends[:keep], starts[:keep], cont[:keep]
            n = len(ends)
            size = int(ends[-1])
            grp = grp_base + np.cumsum(~cont)
            offsets = np.concatenate((starts, [size]))
            text = _strings(buf[:size], offsets)
            yield pa.table(
                {
                    "line": pa.array(np.arange(line_base + 1, line_base + n + 1, dtype=np.int64)),
                    "grp": pa.array(grp.astype(np.int64)),
                    "cont": pa.array(cont),
                    "text": text,
                }
            )
            line_base += n
            grp_base = int(grp[-1])
            if eof:
                return


def _bounded(source: Source, buf: bytes, line_base: int) -> bytes:
    """``buf``, unless one entry (or one line) has grown past ``MAX_RECORD_BYTES``."""
    if len(buf) > MAX_RECORD_BYTES:
        raise LoadError(
            f"{source.name}: a log entry of more than {MAX_RECORD_BYTES:,} bytes from line "
            f"{line_base + 1} on: not a PostgreSQL log from there (no line breaks)"
        )
    return buf


def _strings(data: bytes, offsets: np.ndarray) -> pa.Array:
    """A string array over ``data`` cut at ``offsets``, without copying when it is UTF-8."""
    if len(data) < (1 << 31) - 1:
        arr = pa.StringArray.from_buffers(
            len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
        )
    else:
        arr = pa.LargeStringArray.from_buffers(
            len(offsets) - 1, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(data)
        )
    try:
        arr.validate(full=True)
        return arr
    except pa.ArrowInvalid:
        # Not UTF-8 (a server_encoding of LATIN1, a binary parameter): decode line by line.
        lines = [data[a:b].decode("utf-8", "replace")
                 for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        return pa.array(lines, pa.string())
