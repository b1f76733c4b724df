"""Where are the N+1 queries?

An N+1 is a loop hidden behind an innocent line of code: fetch a list, then run one query per
item. Each query is fast, so no single one looks slow; together they dominate the request.
ORMs make them easy to write and hard to see, which is why counting queries per request is
the rule of thumb (alarm above about 10).

In traces, an N+1 is a *run*: database spans with the same fingerprint under the same parent,
executed one after another. Spans of other kinds between them (a pool checkout, a cache call,
a log span) do not break the run, and neither does a different query interleaved with it (a
loop of two queries per item is two N+1s). Queries that overlap in time ran in parallel: a
fan-out, not a loop, so overlap starts a new run.

In query logs alone, with no traces, the same loop shows as a burst of one fingerprint on one
session, statement after statement with almost no idle time between them; a pooled
connection that serves many requests has the same query at much longer intervals.

>>> nplusone.detect(wb).head()
>>> nplusone.summary(wb)
"""

from __future__ import annotations

import polars as pl

from latkit.workbook import Workbook

#: Two calls overlapping by less than this (or by less than half the shorter one) still count
#: as one after the other: OpenTelemetry JS records whole milliseconds (NOTES.md).
_OVERLAP_TOLERANCE_NS = 1_000_000

#: Runs of repeated calls under one parent, over a relation ``calls(row, trace_id,
#: parent_span_id, key, template, service, start_ns, end_ns, duration_ms)`` (``row`` is the
#: span's rowid). The window functions see only narrow rows (a group hash, times, the rowid):
#: sorting the strings along with them made ``detect`` 2.4 times slower (benchmarks/analysis.py);
#: the names are joined back once per run. ``keyed`` is narrow and read twice, so it is
#: materialised; ``calls`` is wide and must not be (materialising its strings cost as much as
#: the windows): its second use, the join back, reads only the runs' rows.
_RUNS = f"""
    keyed AS MATERIALIZED (
        SELECT row, hash(trace_id, parent_span_id, key) AS g, start_ns, end_ns, duration_ms
        FROM calls
    ),
    candidates AS (
        -- Most groups are a single call; drop those before the window functions.
        SELECT g FROM keyed GROUP BY g HAVING count(*) >= $min_repeats
    ),
    ordered AS MATERIALIZED (
        -- A call breaks the run when it starts before an earlier call of its group ended.
        SELECT *,
               CASE WHEN max(end_ns) OVER (PARTITION BY g ORDER BY start_ns, row
                                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                         - start_ns > least({_OVERLAP_TOLERANCE_NS}, (end_ns - start_ns) / 2)
                    THEN 1 ELSE 0 END AS breaks
        FROM keyed SEMI JOIN candidates USING (g)
    ),
    broken AS (
        SELECT DISTINCT g FROM ordered WHERE breaks = 1
    ),
    numbered AS (
        -- Most groups never break: one run, numbered without a second window.
        SELECT o.*, 0 AS run FROM ordered AS o ANTI JOIN broken USING (g)
        UNION ALL
        SELECT o.*, sum(breaks) OVER (PARTITION BY g ORDER BY start_ns, row
                                      ROWS UNBOUNDED PRECEDING) AS run
        FROM ordered AS o SEMI JOIN broken USING (g)
    ),
    grouped AS (
        SELECT arg_min(row, start_ns) AS first_row,
               count(*) AS repeats,
               sum(duration_ms) AS total_ms,
               min(start_ns) AS first_ns,
               max(end_ns) AS last_ns
        FROM numbered
        GROUP BY g, run
        HAVING count(*) >= $min_repeats AND sum(duration_ms) >= $min_total_ms
    ),
    runs AS (
        SELECT c.trace_id, c.parent_span_id, c.key, c.template, c.service,
               r.*
        FROM grouped AS r JOIN calls AS c ON c.row = r.first_row
    ),
    requests AS (
        SELECT trace_id, service, route, start_ns, end_ns, duration_ms
        FROM spans WHERE kind = 'server'
    ),
    located AS (
        SELECT r.*, q.route, q.duration_ms AS request_ms,
               row_number() OVER (
                   PARTITION BY r.first_row ORDER BY q.start_ns DESC) AS innermost
        FROM runs AS r
        LEFT JOIN requests AS q
            ON q.trace_id = r.trace_id AND q.service = r.service
           AND q.start_ns <= r.first_ns AND q.end_ns >= r.first_ns
    )
"""

_DB_CALLS = """
    calls AS NOT MATERIALIZED (
        SELECT rowid AS row, trace_id, parent_span_id, fingerprint AS key,
               query_template AS template, service, start_ns, end_ns, duration_ms
        FROM spans
        WHERE category = 'db' AND fingerprint IS NOT NULL AND parent_span_id IS NOT NULL
    )
"""

# A downstream call's key is the callee's route when the callee is traced, else the method
# and the URL path with numbers and ids replaced.
_HTTP_CALLS = r"""
    callee AS (
        SELECT trace_id, parent_span_id AS client_span_id, any_value(route) AS route
        FROM spans WHERE kind = 'server' AND parent_span_id IS NOT NULL
        GROUP BY ALL
    ),
    calls AS NOT MATERIALIZED (
        SELECT c.rowid AS row, c.trace_id, c.parent_span_id,
               coalesce(c.http_method, 'GET') || ' ' || coalesce(
                   callee.route,
                   regexp_replace(
                       regexp_replace(
                           regexp_extract(coalesce(attr(c.attributes, 'url.full'),
                                                   attr(c.attributes, 'http.url'), c.name),
                                          '^(?:[a-z]+://[^/]+)?([^?#]*)', 1),
                           '/[0-9a-f]{8}-[0-9a-f-]{27}(/|$)', '/{id}\1', 'g'),
                       '/[0-9]+(/|$)', '/{id}\1', 'g')
               ) AS key,
               NULL AS template,
               c.service, c.start_ns, c.end_ns, c.duration_ms
        FROM spans AS c
        LEFT JOIN callee ON callee.trace_id = c.trace_id AND callee.client_span_id = c.span_id
        WHERE c.category = 'http_client' AND c.parent_span_id IS NOT NULL
    )
"""


def detect(wb: Workbook, min_repeats: int = 5, min_total_ms: float = 0.0) -> pl.DataFrame:
    """Every N+1 in the traces: a run of one query under one parent, one after another.

    Columns: ``trace_id, service, route, parent_span_id, fingerprint, query_template,
    repeats, total_ms, share_of_trace`` (the run's time over its request's duration), sorted
    by ``total_ms``, largest first. ``min_total_ms`` hides small runs (Sentry alarms only
    above 50 ms); by default nothing is hidden and the ranking does the work.

    >>> nplusone.detect(wb, min_repeats=5).head(3)
    """
    return _runs(wb, _DB_CALLS, min_repeats, min_total_ms).rename(
        {"key": "fingerprint", "template": "query_template"}
    )


def detect_http(wb: Workbook, min_repeats: int = 5, min_total_ms: float = 0.0) -> pl.DataFrame:
    """N+1 calls to another service: the same downstream route called in a loop.

    Columns: ``trace_id, service, route, parent_span_id, call, repeats, total_ms,
    share_of_trace``; ``call`` is the method and the callee's route (or the URL path with ids
    replaced when the callee is not traced).
    """
    return (
        _runs(wb, _HTTP_CALLS, min_repeats, min_total_ms).drop("template").rename({"key": "call"})
    )


def _runs(wb: Workbook, calls: str, min_repeats: int, min_total_ms: float) -> pl.DataFrame:
    return wb.sql(
        f"""
        WITH {calls}, {_RUNS}
        SELECT trace_id, service, route, parent_span_id, key, template, repeats, total_ms,
               total_ms / nullif(request_ms, 0) AS share_of_trace
        FROM located
        WHERE innermost = 1
        ORDER BY total_ms DESC, trace_id, first_ns
        """,
        {"min_repeats": min_repeats, "min_total_ms": min_total_ms},
    )


def summary(wb: Workbook, min_repeats: int = 5) -> pl.DataFrame:
    """The N+1s per route and query template, with what batching them would save.

    Columns: ``service, route, query_template, fingerprint, traces, share_of_route_traces,
    median_repeats, max_repeats, total_ms, saved_ms`` (the run's time minus about one
    execution per run: what one batched query would leave), ``fix`` (in words, fitted to the
    template). Sorted by ``saved_ms``.
    """
    runs = detect(wb, min_repeats=min_repeats)
    if runs.is_empty():
        return pl.DataFrame(
            schema={
                "service": pl.String,
                "route": pl.String,
                "query_template": pl.String,
                "fingerprint": pl.String,
                "traces": pl.Int64,
                "share_of_route_traces": pl.Float64,
                "median_repeats": pl.Float64,
                "max_repeats": pl.Int64,
                "total_ms": pl.Float64,
                "saved_ms": pl.Float64,
                "fix": pl.String,
            }
        )
    route_traces = wb.sql(
        "SELECT service, route, count(DISTINCT trace_id) AS route_traces "
        "FROM spans WHERE kind = 'server' GROUP BY ALL"
    )
    frame = (
        runs.with_columns(saved=pl.col("total_ms") * (1 - 1 / pl.col("repeats")))
        .group_by("service", "route", "query_template", "fingerprint")
        .agg(
            traces=pl.col("trace_id").n_unique(),
            median_repeats=pl.col("repeats").median(),
            max_repeats=pl.col("repeats").max(),
            total_ms=pl.col("total_ms").sum(),
            saved_ms=pl.col("saved").sum(),
        )
        .join(route_traces, on=["service", "route"], how="left")
        .with_columns(share_of_route_traces=pl.col("traces") / pl.col("route_traces"))
    )
    fixes = [fix(t) for t in frame["query_template"].to_list()]
    return (
        frame.with_columns(fix=pl.Series(fixes, dtype=pl.String))
        .select(
            "service",
            "route",
            "query_template",
            "fingerprint",
            "traces",
            "share_of_route_traces",
            "median_repeats",
            "max_repeats",
            "total_ms",
            "saved_ms",
            "fix",
        )
        .sort("saved_ms", descending=True)
    )


def fix(template: str | None) -> str:
    """How to batch a repeated query, in words, from its template.

    >>> fix("SELECT name FROM products WHERE id = ?")[:40]
    'fetch all rows at once: WHERE id = ANY($'
    """
    if not template:
        return "batch the calls into one"
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(template.replace("?", "NULL"), read="postgres")
    except sqlglot.errors.ParseError:
        return "batch the queries into one"
    where = tree.find(exp.Where)
    table = tree.find(exp.Table)
    eqs = [
        e
        for e in (where.find_all(exp.EQ) if where else [])
        if isinstance(e.left, exp.Column) and isinstance(e.right, exp.Null)
    ]
    if isinstance(tree, exp.Select) and len(eqs) == 1 and table is not None:
        column = eqs[0].left.name
        return (
            f"fetch all rows at once: WHERE {column} = ANY($1) (or IN (...)) with the list of "
            f"{column}s, or JOIN {table.name} in the query that produced the list"
        )
    if isinstance(tree, exp.Insert):
        return "insert all rows in one statement (multi-row VALUES, or COPY)"
    if isinstance(tree, (exp.Update, exp.Delete)):
        return "change all rows in one statement (WHERE key = ANY($1), or UPDATE ... FROM VALUES)"
    return "batch the queries into one"


def queries_per_request(wb: Workbook, alarm_at: int = 10) -> pl.DataFrame:
    """How many database queries each route's requests issue.

    Columns: ``service, route, requests, p50_queries, p95_queries, max_queries,
    over_alarm_share`` (the share of requests issuing more than ``alarm_at`` queries, the
    rule of thumb of CLAIMS.md claim 6). Queries are counted in the request's own service
    (a downstream service's queries belong to its own requests).
    """
    return wb.sql(
        """
        WITH requests AS (
            SELECT trace_id, span_id, service, route, start_ns, end_ns
            FROM spans WHERE kind = 'server'
        ),
        counted AS (
            SELECT r.service, r.route, r.span_id, count(q.span_id) AS queries
            FROM requests AS r
            LEFT JOIN spans AS q
                ON q.trace_id = r.trace_id AND q.service = r.service AND q.category = 'db'
               AND q.start_ns >= r.start_ns AND q.start_ns <= r.end_ns
            GROUP BY r.service, r.route, r.span_id
        )
        SELECT service, route, count(*) AS requests,
               quantile_cont(queries, 0.5) AS p50_queries,
               quantile_cont(queries, 0.95) AS p95_queries,
               max(queries) AS max_queries,
               avg(CAST(queries > $alarm_at AS DOUBLE)) AS over_alarm_share
        FROM counted
        GROUP BY ALL
        ORDER BY p95_queries DESC, service, route
        """,
        {"alarm_at": alarm_at},
    )


def detect_in_logs(
    wb: Workbook,
    min_repeats: int = 5,
    max_gap_ms: float = 1.0,
    max_idle_ms: float = 25.0,
    min_total_ms: float = 0.0,
) -> pl.DataFrame:
    """N+1 loops from query logs alone: bursts of one query on one session.

    Statements of one fingerprint on one session form a run while each one directly follows
    the previous one on that session (nothing else ran in between), or starts within
    ``max_gap_ms`` of its end (so a loop of two queries per item, interleaved, is still two
    runs). A pooled connection serving many requests runs the same query too, but each
    request starts with other statements (the query that fetched the list), which ends the
    run. Log timestamps have millisecond precision (``%m``), so gaps are known to about a
    millisecond. Columns: ``session_id, database, user_name, application, fingerprint,
    query_template, repeats, total_ms, first_ts, last_ts``, sorted by ``total_ms``.
    """
    return wb.sql(
        """
        WITH q AS (
            SELECT session_id, database, user_name, application, fingerprint,
                   query_template, duration_ms,
                   ts_ns - CAST(coalesce(duration_ms, 0) * 1e6 AS BIGINT) AS start_ns,
                   ts_ns AS end_ns,
                   row_number() OVER (PARTITION BY session_id ORDER BY ts_ns, line, source)
                       AS position
            FROM queries
            WHERE fingerprint IS NOT NULL AND session_id IS NOT NULL
        ),
        gaps AS (
            SELECT *,
                   (start_ns - lag(end_ns) OVER w) / 1e6 AS gap_ms,
                   position - lag(position) OVER w AS step
            FROM q
            WINDOW w AS (PARTITION BY session_id, fingerprint ORDER BY position)
        ),
        numbered AS (
            SELECT *,
                   sum(CASE WHEN gap_ms <= $max_gap_ms OR (step = 1 AND gap_ms <= $max_idle_ms)
                                THEN 0 ELSE 1 END)
                       OVER (PARTITION BY session_id, fingerprint ORDER BY position
                             ROWS UNBOUNDED PRECEDING) AS run
            FROM gaps
        )
        SELECT session_id, any_value(database) AS database, any_value(user_name) AS user_name,
               any_value(application) AS application, fingerprint,
               any_value(query_template) AS query_template,
               count(*) AS repeats, sum(duration_ms) AS total_ms,
               make_timestamp(min(start_ns) // 1000) AS first_ts,
               make_timestamp(max(end_ns) // 1000) AS last_ts
        FROM numbered
        GROUP BY session_id, fingerprint, run
        HAVING count(*) >= $min_repeats AND coalesce(sum(duration_ms), 0) >= $min_total_ms
        ORDER BY total_ms DESC, session_id, first_ts
        """,
        {
            "min_repeats": min_repeats,
            "max_gap_ms": max_gap_ms,
            "max_idle_ms": max_idle_ms,
            "min_total_ms": min_total_ms,
        },
    )
