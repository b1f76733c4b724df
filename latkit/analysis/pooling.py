"""What do database connections cost, and which code opens one per request?

Opening a PostgreSQL connection is a TCP handshake, often TLS, authentication and the fork of
a backend process: tens of milliseconds, sometimes a hundred under load. A pool (psycopg_pool,
HikariCP, PgBouncer in front of the server) pays that once and hands warm connections out, so
code that connects per request pays it on every request, and worst when the server is busy.

Three sources show it:

- **PostgreSQL's log** with ``log_connections`` and ``log_disconnections`` on: every session
  logs ``connection received``, ``connection authorized`` and ``disconnection: session
  time``. Pooled applications open few, long sessions with many statements each; connecting
  per request shows as many short sessions with one or two statements (``sessions``).
- **Traces**: instrumentations usually record no span for connecting (NOTES.md), so the
  connect time is a gap in the request's own time right before its first query. On a pooled
  route that gap is the pool checkout, well under a millisecond; a route that connects per
  request has a gap of the connect time, on every request (``setup_gaps``). Where the
  instrumentation does record connecting (OpenTelemetry JS: ``pg.connect``,
  ``pg-pool.connect``), those spans count as part of the gap.

- **PgBouncer's log**: its periodic ``stats:`` lines say how long clients queued for a
  server connection when the pool was exhausted (``pool_waits``): latency that neither the
  database's timings nor most instrumentations show.

``no_pool`` puts the first two together; ``by_load`` shows latency against the number of requests in
flight, where a pool that runs out makes p99 climb while p50 stays put.

>>> pooling.no_pool(wb).select("source", "route", "application", "saved_ms")
>>> pooling.sessions(wb)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from latkit.analysis import tree
from latkit.workbook import Workbook

#: The connection events of PostgreSQL's own log (PgBouncer's are ``login``, ``close`` ...).
_PG_EVENTS = "('received', 'authenticated', 'authorized', 'disconnection')"

#: A span that connects rather than queries (pg.connect, pg-pool.connect, "connect").
_IS_CONNECT = "regexp_matches(lower(s.name), 'connect')"

#: One row per session of PostgreSQL's log; times in ns, the statement start is its log time
#: minus the parse, bind and execute it took.
_SESSIONS = f"""
    WITH events AS (
        SELECT session_id,
               min(ts_ns) FILTER (event = 'received') AS received_ns,
               min(ts_ns) FILTER (event = 'authenticated') AS authenticated_ns,
               min(ts_ns) FILTER (event = 'authorized') AS authorized_ns,
               max(ts_ns) FILTER (event = 'disconnection') AS disconnected_ns,
               max(session_ms) FILTER (event = 'disconnection') AS session_ms,
               min(ts_ns) AS first_event_ns,
               max(application) AS application,
               max(user_name) AS user_name,
               max(database) AS database,
               max(client) AS client,
               max(pid) AS pid
        FROM connections
        WHERE event IN {_PG_EVENTS} AND session_id IS NOT NULL
        GROUP BY session_id
    ),
    statements AS (
        SELECT session_id,
               count(*) AS statements,
               sum(duration_ms) AS statement_ms,
               min(ts_ns - CAST(1e6 * coalesce(list_sum(map_values(phase_ms)), duration_ms, 0)
                                AS BIGINT)) AS first_statement_ns
        FROM queries
        WHERE session_id IN (SELECT session_id FROM events)
        GROUP BY session_id
    )
    SELECT e.session_id, e.pid, e.application, e.user_name, e.database, e.client,
           coalesce(e.received_ns,
                    e.disconnected_ns - CAST(e.session_ms * 1e6 AS BIGINT),
                    e.first_event_ns) AS start_ns,
           e.disconnected_ns AS end_ns,
           e.session_ms,
           coalesce(s.statements, 0) AS statements,
           coalesce(s.statement_ms, 0.0) AS statement_ms,
           (e.authenticated_ns - e.received_ns) / 1e6 AS authenticated_ms,
           (e.authorized_ns - e.received_ns) / 1e6 AS authorized_ms,
           (s.first_statement_ns - e.received_ns) / 1e6 AS first_statement_ms
    FROM events AS e LEFT JOIN statements AS s USING (session_id)
"""


def session_list(wb: Workbook) -> pl.DataFrame:
    """Every database session in PostgreSQL's log: when, who, how long, how busy.

    Needs ``log_connections`` and ``log_disconnections``. Columns: ``session_id, pid,
    application, user_name, database, client, start_ns, end_ns`` (NULL while still open at the
    end of the log), ``session_ms`` (PostgreSQL's ``session time``), ``statements``,
    ``statement_ms`` (their summed durations), then the setup milestones in milliseconds after
    ``connection received``, NULL where the log does not show them: ``authenticated_ms``
    (logged only for methods that authenticate an identity, not ``trust``),
    ``authorized_ms`` (backend ready) and ``first_statement_ms`` (the first statement began:
    the client's own share of connecting, then its first query). Sorted by start.

    >>> pooling.session_list(wb).filter(pl.col("statements") <= 1)
    """
    return wb.sql(f"{_SESSIONS} ORDER BY start_ns, session_id")


def sessions(wb: Workbook, few_statements: int = 3) -> pl.DataFrame:
    """How each application, user and database uses its connections, from PostgreSQL's log.

    Columns: ``application, user_name, database, sessions, sessions_per_minute`` (over the
    time the log covers, at least a minute), ``peak_per_minute`` (the busiest minute),
    ``session_p50_ms, session_p95_ms, session_max_ms``, ``statements_p50, statements_mean,
    statements_max`` per session, ``short_sessions`` (sessions with at most
    ``few_statements`` statements), ``authorized_p50_ms, authorized_p95_ms`` and
    ``first_statement_p50_ms, first_statement_p95_ms`` (setup, from ``connection
    received``; see ``session_list``). Most sessions first.

    >>> pooling.sessions(wb).select("application", "sessions", "statements_p50")
    """
    return wb.sql(
        f"""
        WITH s AS ({_SESSIONS}),
        window_min AS (
            SELECT greatest((max(coalesce(end_ns, start_ns)) - min(start_ns)) / 60e9, 1.0) AS m
            FROM s
        ),
        peaks AS (
            SELECT application, user_name, database, max(n) AS peak_per_minute
            FROM (SELECT application, user_name, database, start_ns // 60_000_000_000 AS minute,
                         count(*) AS n
                  FROM s GROUP BY ALL)
            GROUP BY ALL
        )
        SELECT s.application, s.user_name, s.database,
               count(*) AS sessions,
               count(*) / any_value(window_min.m) AS sessions_per_minute,
               any_value(p.peak_per_minute) AS peak_per_minute,
               quantile_cont(session_ms, 0.50) AS session_p50_ms,
               quantile_cont(session_ms, 0.95) AS session_p95_ms,
               max(session_ms) AS session_max_ms,
               quantile_cont(statements, 0.50) AS statements_p50,
               avg(statements) AS statements_mean,
               max(statements) AS statements_max,
               count(*) FILTER (statements <= $few) AS short_sessions,
               quantile_cont(authorized_ms, 0.50) AS authorized_p50_ms,
               quantile_cont(authorized_ms, 0.95) AS authorized_p95_ms,
               quantile_cont(first_statement_ms, 0.50) AS first_statement_p50_ms,
               quantile_cont(first_statement_ms, 0.95) AS first_statement_p95_ms
        FROM s
        JOIN peaks AS p
          ON p.application IS NOT DISTINCT FROM s.application
         AND p.user_name IS NOT DISTINCT FROM s.user_name
         AND p.database IS NOT DISTINCT FROM s.database,
        window_min
        GROUP BY s.application, s.user_name, s.database
        ORDER BY sessions DESC, s.application, s.user_name, s.database
        """,
        {"few": few_statements},
    )


def _entries(wb: Workbook) -> pa.Table:
    """Each span's request: the nearest server span above it (itself for a server span).

    Pointer jumping over the parent array: log(depth) vectorised steps, no Python per span.
    """
    spans = tree.load(wb.con)
    rows = np.arange(len(spans), dtype=np.int64)
    owner = np.where(spans.is_server | (spans.parent < 0), rows, spans.parent)
    while True:
        jumped = owner[owner]
        if np.array_equal(jumped, owner):
            break
        owner = jumped
    has_entry = spans.is_server[owner] if len(spans) else np.zeros(0, np.bool_)
    return pa.table(
        {
            "span_row": spans.span_row[has_entry],
            "entry_row": spans.span_row[owner[has_entry]],
        }
    )


_GAPS = f"""
    WITH members AS (
        SELECT m.entry_row, s.rowid AS span_row, s.start_ns,
               greatest(s.end_ns, s.start_ns) AS end_ns,
               {_IS_CONNECT} AS is_connect,
               s.category = 'db' AND NOT {_IS_CONNECT} AS is_query
        FROM _entries AS m JOIN spans AS s ON s.rowid = m.span_row
    ),
    first_query AS (
        SELECT entry_row, arg_min(span_row, start_ns) AS query_row, min(start_ns) AS query_ns
        FROM members WHERE is_query
        GROUP BY entry_row
    ),
    -- The last moment before the first query that some other span accounts for: the end of
    -- a span finished by then, or the start of one still open (the request itself, a handler).
    boundary AS (
        SELECT f.entry_row, any_value(f.query_ns) AS query_ns,
               max(CASE WHEN m.end_ns <= f.query_ns THEN m.end_ns
                        WHEN m.start_ns <= f.query_ns THEN m.start_ns END) AS boundary_ns
        FROM first_query AS f JOIN members AS m USING (entry_row)
        WHERE m.span_row <> f.query_row AND NOT m.is_connect
        GROUP BY f.entry_row
    )
    SELECT e.trace_id, e.span_id, e.service, e.route, e.start_ns, e.duration_ms,
           greatest(b.query_ns - e.start_ns, 0) / 1e6 AS first_query_ms,
           greatest(b.query_ns - greatest(b.boundary_ns, e.start_ns), 0) / 1e6 AS gap_ms
    FROM boundary AS b JOIN spans AS e ON e.rowid = b.entry_row
"""


def setup_gaps(wb: Workbook) -> pl.DataFrame:
    """For each request that queries a database: the unexplained time right before its first
    query, where connecting (which usually has no span) hides.

    Columns: ``trace_id, span_id, service, route, start_ns, duration_ms`` (the request's
    server span), ``first_query_ms`` (from the request's start to its first query) and
    ``gap_ms`` (from the last moment another span of the request accounts for to that
    query; connect spans such as ``pg.connect`` count as gap). Sorted by start.

    >>> pooling.setup_gaps(wb).group_by("route").agg(pl.col("gap_ms").median())
    """
    cur = wb.con.cursor()
    cur.register("_entries", _entries(wb))
    return cur.sql(f"{_GAPS} ORDER BY e.start_ns, e.trace_id, e.span_id").pl()


_NO_POOL_COLUMNS = pl.Schema(
    {
        "source": pl.String(),
        "service": pl.String(),
        "route": pl.String(),
        "application": pl.String(),
        "user_name": pl.String(),
        "database": pl.String(),
        "requests": pl.Int64(),
        "sessions": pl.Int64(),
        "short_sessions": pl.Int64(),
        "setup_p50_ms": pl.Float64(),
        "setup_p99_ms": pl.Float64(),
        "baseline_ms": pl.Float64(),
        "consistent_share": pl.Float64(),
        "saved_ms": pl.Float64(),
        "p50_ms": pl.Float64(),
        "p99_ms": pl.Float64(),
        "p50_pooled_ms": pl.Float64(),
        "p99_pooled_ms": pl.Float64(),
        "evidence": pl.String(),
    }
)


def no_pool(
    wb: Workbook,
    *,
    ratio: float = 3.0,
    min_excess_ms: float = 2.0,
    consistency: float = 0.5,
    min_requests: int = 5,
    few_statements: int = 3,
    min_sessions: int = 5,
) -> pl.DataFrame:
    """Which routes (from traces) and applications (from the log) open a connection per
    request, and what would a pool save? Only those flagged get a row.

    From traces, a route is flagged when its median gap before the first query
    (``setup_gaps``) is at least ``ratio`` times, and ``min_excess_ms`` more than, the median
    of the other routes of its service, and at least ``consistency`` of its requests have a
    gap above their 95th percentile (one slow connect is noise; connecting per request is
    every request). A pool would bring each request's gap down to that baseline: ``saved_ms``
    is the mean saving per request, ``p50_pooled_ms`` and ``p99_pooled_ms`` the route's
    percentiles with that saving taken off each request. A service needs two routes or more
    that query the database for the comparison.

    From PostgreSQL's log, an (application, user, database) is flagged when it opened at
    least ``min_sessions`` sessions and the median session ran at most ``few_statements``
    statements. ``setup_p50_ms`` is then the server's share of connecting (``connection
    received`` to the first statement of those short sessions), a lower bound of what a pool
    saves: the TCP and TLS handshakes before ``received`` are not in the log.

    Columns: ``source`` (``traces`` or ``logs``), ``service, route`` (traces), ``application,
    user_name, database`` (logs), ``requests`` (traces), ``sessions, short_sessions`` (logs),
    ``setup_p50_ms, setup_p99_ms, baseline_ms, consistent_share, saved_ms, p50_ms, p99_ms,
    p50_pooled_ms, p99_pooled_ms`` (request percentiles: traces only) and ``evidence`` (in
    words). Largest saving first.

    >>> pooling.no_pool(wb).select("source", "route", "application", "saved_ms", "p99_ms",
    ...                            "p99_pooled_ms")
    """
    frames = [_no_pool_traces(wb, ratio, min_excess_ms, consistency, min_requests)]
    if wb.has_rows("connections"):  # none loaded, or a ClickHouse workbook (spans only)
        frames.append(_no_pool_logs(wb, few_statements, min_sessions))
    return (
        pl.concat([f.select(_NO_POOL_COLUMNS.names()).cast(_NO_POOL_COLUMNS) for f in frames])
        .sort(["saved_ms", "source"], descending=[True, False], nulls_last=True)
    )


def _no_pool_traces(
    wb: Workbook, ratio: float, min_excess_ms: float, consistency: float, min_requests: int
) -> pl.DataFrame:
    cur = wb.con.cursor()
    cur.register("_entries", _entries(wb))
    params: dict[str, Any] = {
        "ratio": ratio,
        "excess": min_excess_ms,
        "consistency": consistency,
        "min_requests": min_requests,
    }
    return cur.sql(
        f"""
        WITH g AS ({_GAPS}),
        routes AS (
            SELECT service, route, count(*) AS requests,
                   quantile_cont(gap_ms, 0.50) AS setup_p50_ms,
                   quantile_cont(gap_ms, 0.99) AS setup_p99_ms
            FROM g GROUP BY service, route
        ),
        -- Each route against the other routes of its service (leave one out).
        baselines AS (
            SELECT r.service, r.route,
                   quantile_cont(o.gap_ms, 0.50) AS baseline_ms,
                   quantile_cont(o.gap_ms, 0.95) AS baseline_p95_ms
            FROM routes AS r
            JOIN g AS o ON o.service = r.service AND o.route IS DISTINCT FROM r.route
            GROUP BY r.service, r.route
        ),
        flagged AS (
            SELECT r.*, b.baseline_ms, b.baseline_p95_ms
            FROM routes AS r JOIN baselines AS b
              ON b.service = r.service AND b.route IS NOT DISTINCT FROM r.route
            WHERE r.requests >= $min_requests
              AND r.setup_p50_ms >= $ratio * b.baseline_ms
              AND r.setup_p50_ms >= b.baseline_ms + $excess
        ),
        per_request AS (
            SELECT f.*, g.duration_ms, g.gap_ms,
                   greatest(g.gap_ms - f.baseline_ms, 0) AS saved
            FROM flagged AS f JOIN g
              ON g.service = f.service AND g.route IS NOT DISTINCT FROM f.route
        )
        SELECT 'traces' AS source, service, route,
               NULL AS application, NULL AS user_name, NULL AS database,
               any_value(requests) AS requests, NULL AS sessions, NULL AS short_sessions,
               any_value(setup_p50_ms) AS setup_p50_ms, any_value(setup_p99_ms) AS setup_p99_ms,
               any_value(baseline_ms) AS baseline_ms,
               avg(CAST(gap_ms > baseline_p95_ms AS DOUBLE)) AS consistent_share,
               avg(saved) AS saved_ms,
               quantile_cont(duration_ms, 0.50) AS p50_ms,
               quantile_cont(duration_ms, 0.99) AS p99_ms,
               quantile_cont(duration_ms - saved, 0.50) AS p50_pooled_ms,
               quantile_cont(duration_ms - saved, 0.99) AS p99_pooled_ms,
               printf('median %.1f ms before the first query vs %.1f ms on the other routes '
                      'of %s', any_value(setup_p50_ms), any_value(baseline_ms), service)
                   AS evidence
        FROM per_request
        GROUP BY service, route
        HAVING avg(CAST(gap_ms > baseline_p95_ms AS DOUBLE)) >= $consistency
        """,
        params=params,
    ).pl()


def _no_pool_logs(wb: Workbook, few_statements: int, min_sessions: int) -> pl.DataFrame:
    return wb.sql(
        f"""
        WITH s AS ({_SESSIONS}),
        groups AS (
            SELECT application, user_name, database,
                   count(*) AS sessions,
                   count(*) FILTER (statements <= $few) AS short_sessions,
                   quantile_cont(statements, 0.5) AS statements_p50,
                   quantile_cont(first_statement_ms, 0.50)
                       FILTER (statements <= $few) AS setup_p50_ms,
                   quantile_cont(first_statement_ms, 0.99)
                       FILTER (statements <= $few) AS setup_p99_ms,
                   quantile_cont(session_ms, 0.50) FILTER (statements <= $few) AS short_ms
            FROM s GROUP BY ALL
        )
        SELECT 'logs' AS source, NULL AS service, NULL AS route,
               application, user_name, database,
               NULL AS requests, sessions, short_sessions,
               setup_p50_ms, setup_p99_ms,
               NULL AS baseline_ms,
               short_sessions / sessions AS consistent_share,
               setup_p50_ms AS saved_ms,
               NULL AS p50_ms, NULL AS p99_ms, NULL AS p50_pooled_ms, NULL AS p99_pooled_ms,
               printf('%d of %d sessions ran at most %d statements (median session %.0f ms); '
                      'setup %.1f ms from connection received to the first statement',
                      short_sessions, sessions, $few, short_ms, setup_p50_ms) AS evidence
        FROM groups
        WHERE sessions >= $min_sessions AND statements_p50 <= $few
        """,
        {"few": few_statements, "min_sessions": min_sessions},
    )


def in_flight(wb: Workbook) -> pl.DataFrame:
    """How many requests each service was handling when each request arrived.

    For each server span, the number of server spans of the same service that had started
    and not yet ended at its start, itself included (so at least 1): a sweep over sorted
    start and end times, O(n log n). Columns: ``trace_id, span_id, service, route, start_ns,
    duration_ms, in_flight``. Sorted by start.

    >>> pooling.in_flight(wb)["in_flight"].max()
    """
    frame = wb.sql(
        """
        SELECT trace_id, span_id, service, route, start_ns,
               greatest(end_ns, start_ns) AS end_ns, duration_ms
        FROM spans WHERE kind = 'server'
        ORDER BY service, start_ns, trace_id, span_id
        """
    )
    counts = np.zeros(frame.height, np.int64)
    services = frame["service"].to_numpy()
    starts = frame["start_ns"].to_numpy()
    ends = frame["end_ns"].to_numpy()
    # Rows are sorted by service: each service is one contiguous slice.
    changes = np.flatnonzero(services[1:] != services[:-1]) + 1
    bounds = [0, *changes.tolist(), len(services)] if len(services) else [0]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        s, e = starts[lo:hi], np.sort(ends[lo:hi])
        # Started at or before this start, minus those that had already ended by then.
        counts[lo:hi] = np.searchsorted(s, s, "right") - np.searchsorted(e, s, "right")
    return (
        frame.with_columns(pl.Series("in_flight", counts))
        .drop("end_ns")
        .sort(["start_ns", "trace_id", "span_id"])
    )


def by_load(wb: Workbook, min_requests: int = 5) -> pl.DataFrame:
    """Latency against load: each route's percentiles by the number of requests in flight.

    In-flight counts (``in_flight``) are grouped in powers of two (1, 2, 3–4, 5–8, ...);
    buckets with fewer than ``min_requests`` requests are left out. A pool that runs out shows
    as a p99 that climbs with load while p50 barely moves: requests queue for a connection.
    Columns: ``service, route, in_flight_min, in_flight_max, load`` (the bucket as text),
    ``requests, p50_ms, p95_ms, p99_ms``. Sorted by route, then load.

    >>> pooling.by_load(wb).filter(pl.col("route") == "/reports/daily")
    """
    frame = in_flight(wb)
    cur = wb.con.cursor()
    cur.register("_in_flight", frame.to_arrow())
    return cur.sql(
        """
        WITH b AS (
            SELECT *,
                   CASE WHEN in_flight <= 2 THEN in_flight
                        ELSE CAST(2 ^ (ceil(log2(in_flight)) - 1) AS BIGINT) + 1 END AS lo,
                   CASE WHEN in_flight <= 2 THEN in_flight
                        ELSE CAST(2 ^ ceil(log2(in_flight)) AS BIGINT) END AS hi
            FROM _in_flight
        )
        SELECT service, route, lo AS in_flight_min, hi AS in_flight_max,
               CASE WHEN lo = hi THEN CAST(lo AS VARCHAR) ELSE lo || '–' || hi END AS load,
               count(*) AS requests,
               quantile_cont(duration_ms, 0.50) AS p50_ms,
               quantile_cont(duration_ms, 0.95) AS p95_ms,
               quantile_cont(duration_ms, 0.99) AS p99_ms
        FROM b
        GROUP BY service, route, lo, hi
        HAVING count(*) >= $min_requests
        ORDER BY service, route, lo
        """,
        params={"min_requests": min_requests},
    ).pl()


#: PgBouncer's ``wait`` in its stats lines: up to 1.23, microseconds that clients spent
#: waiting for a server per second of the period (stats.c divides by the period); from 1.24,
#: which counts server assignments, the mean wait of one assignment.
_PER_ASSIGNMENT_FROM = (1, 24)


def pool_waits(wb: Workbook) -> pl.DataFrame:
    """How long clients queued for a server connection, from PgBouncer's periodic stats.

    When every server connection of a pool is busy, PgBouncer holds the client until one
    frees up: that wait is latency added to the request, invisible to the database's own
    timings. Its ``stats:`` lines (every ``stats_period``) report it, with a meaning that
    depends on the version (the ``start`` event of the same log says which), so each row
    says how its numbers were derived (``wait_meaning``). Up to 1.23 the line gives client
    waiting per second, so ``clients_waiting`` (the mean number of clients queued) is exact
    and ``wait_ms_per_xact`` spreads the wait over the period's transactions; from 1.24 it
    gives the mean wait per server assignment, which is ``wait_ms_per_xact`` itself in
    transaction pooling, and ``clients_waiting`` assumes one assignment per transaction.
    Where the log has no ``process up`` line, both are NULL.

    Columns: ``time`` (UTC), ``source``, ``version``, ``xacts_per_s, queries_per_s,
    xact_ms, query_ms, wait_us`` (as logged), ``clients_waiting, wait_ms_per_xact,
    wait_meaning``. Sorted by source and time.

    >>> pooling.pool_waits(wb).filter(pl.col("wait_ms_per_xact") > 1)
    """
    major, minor = _PER_ASSIGNMENT_FROM
    return wb.sql(
        f"""
        WITH stats AS (
            SELECT ts_ns, source,
                   CAST(detail ->> 'xacts_per_s' AS DOUBLE) AS xacts_per_s,
                   CAST(detail ->> 'queries_per_s' AS DOUBLE) AS queries_per_s,
                   CAST(detail ->> 'xact_us' AS DOUBLE) / 1e3 AS xact_ms,
                   CAST(detail ->> 'query_us' AS DOUBLE) / 1e3 AS query_ms,
                   CAST(detail ->> 'wait_us' AS DOUBLE) AS wait_us
            FROM connections WHERE event = 'stats'
        ),
        starts AS (
            SELECT ts_ns, source, detail AS version,
                   CAST(split_part(detail, '.', 1) AS INTEGER) AS major,
                   CAST(split_part(detail, '.', 2) AS INTEGER) AS minor
            FROM connections WHERE event = 'start'
        ),
        versioned AS (
            SELECT s.*, v.version,
                   CASE WHEN v.version IS NULL THEN NULL
                        ELSE (v.major, v.minor) >= ({major}, {minor}) END AS per_assignment
            FROM stats AS s
            ASOF LEFT JOIN starts AS v ON v.source = s.source AND s.ts_ns >= v.ts_ns
        )
        SELECT make_timestamp(ts_ns // 1000) AS time, source, version,
               xacts_per_s, queries_per_s, xact_ms, query_ms, wait_us,
               CASE WHEN per_assignment THEN wait_us * xacts_per_s / 1e6
                    WHEN NOT per_assignment THEN wait_us / 1e6 END AS clients_waiting,
               CASE WHEN per_assignment THEN wait_us / 1e3
                    WHEN NOT per_assignment THEN wait_us / nullif(xacts_per_s, 0) / 1e3
                    END AS wait_ms_per_xact,
               CASE WHEN per_assignment
                        THEN 'wait per server assignment (PgBouncer >= {major}.{minor})'
                    WHEN NOT per_assignment
                        THEN 'client waiting per second (PgBouncer < {major}.{minor})'
                    ELSE 'unknown: no "process up" line gives the PgBouncer version'
                    END AS wait_meaning
        FROM versioned
        ORDER BY source, ts_ns
        """
    )
