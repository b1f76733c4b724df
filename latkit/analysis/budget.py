"""Which requests miss the latency budget, and where does their time go?

Requests are *entry spans*: server spans, one per request a service handled. Every instant
of an entry span is attributed to exactly one span, the deepest one active at that instant
(the one on the critical path where parallel children overlap, see ``tree``), and that
span's kind decides the budget category:

``db``, ``cache``
    database and cache client spans.
``http_client``
    a downstream call whose callee is not traced, or the callee's own time when it is.
``network``
    the part of a client span that its callee's server span does not cover: the wire,
    queueing, connection setup.
``self``
    the entry span's own time and its internal spans: code, serialisation, and anything
    uninstrumented (connection setup often has no span at all).

So the categories of a request add up to its duration, and a route's shares add up to 1.

>>> wb = latkit.open(); _ = wb.load("sample_data/traces")
>>> budget.by_route(wb).columns[:4]
['service', 'route', 'requests', 'errors']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from latkit.analysis import tree
from latkit.workbook import Workbook

#: Server spans are the requests; a status of error or an HTTP 5xx is an error. ``weight`` is
#: how many requests each one stands for when traces were sampled: from the W3C tracestate
#: ``ot=th:`` threshold (OpenTelemetry probability sampling: p = 1 - th / 2^56), or a
#: ``SampleRate`` / ``sampling.rate`` attribute (Honeycomb's convention), else 1.
_REQUESTS = """
    SELECT *,
           status = 'error' OR coalesce(http_status_code >= 500, false) AS is_error,
           coalesce(
               2.0 ^ 56 / nullif(2.0 ^ 56 - ('0x' || rpad(nullif(regexp_extract(
                   trace_state, '(^|,)ot=([^,]*;)?th:([0-9a-f]{1,14})', 3), ''), 14, '0')
               )::UBIGINT, 0),
               try_cast(coalesce(attr(attributes, 'SampleRate'),
                                 attr(attributes, 'sampling.rate')) AS DOUBLE),
               1.0
           ) AS weight
    FROM spans
    WHERE kind = 'server'
"""

_PERCENTILES = """
    quantile_cont(duration_ms, 0.50) AS p50_ms,
    quantile_cont(duration_ms, 0.95) AS p95_ms,
    quantile_cont(duration_ms, 0.99) AS p99_ms,
"""

#: With unequal weights: the weighted inverse of the empirical distribution (the smallest
#: latency whose cumulative weight reaches q), since linear interpolation between ranks has
#: no single weighted form.
_WEIGHTED_PERCENTILES = """
    min(duration_ms) FILTER (cum_weight >= 0.50 * total_weight) AS p50_ms,
    min(duration_ms) FILTER (cum_weight >= 0.95 * total_weight) AS p95_ms,
    min(duration_ms) FILTER (cum_weight >= 0.99 * total_weight) AS p99_ms,
"""


def by_route(wb: Workbook, target_ms: float = 100.0, every: str | None = None) -> pl.DataFrame:
    """Latency percentiles per route, and the share of requests over ``target_ms``.

    Columns: ``service, route, requests, errors, p50_ms, p95_ms, p99_ms, max_ms,
    over_target_share, est_requests, weighted`` (plus ``bucket``, a timestamp, when
    ``every`` is given, e.g. ``"1m"``), sorted by p99, slowest first. Percentiles interpolate
    linearly between ranks. Where the data says traces were sampled (tracestate ``th``, a
    ``SampleRate`` attribute), each request counts with its weight: ``est_requests`` is the
    estimated number of real requests, ``weighted`` says that percentiles and shares were
    weighted.

    >>> budget.by_route(wb, target_ms=100).filter(pl.col("p99_ms") > 100)
    """
    bucket = ""
    partition = "service, route"
    if every is not None:
        bucket = "time_bucket(CAST($every AS INTERVAL), make_timestamp(start_ns // 1000))"
        partition += f", {bucket}"
        bucket += " AS bucket,"
    weighted = bool(
        wb.sql(f"SELECT coalesce(bool_or(weight <> 1), false) AS w FROM ({_REQUESTS})")["w"][0]
    )
    source = f"({_REQUESTS})"
    if weighted:
        source = f"""(
            SELECT *,
                   sum(weight) OVER (PARTITION BY {partition} ORDER BY duration_ms
                                     ROWS UNBOUNDED PRECEDING) AS cum_weight,
                   sum(weight) OVER (PARTITION BY {partition}) AS total_weight
            FROM {source}
        )"""
    query = f"""
        SELECT
            service,
            route,
            {bucket}
            count(*) AS requests,
            count(*) FILTER (is_error) AS errors,
            {_WEIGHTED_PERCENTILES if weighted else _PERCENTILES}
            max(duration_ms) AS max_ms,
            sum(weight * CAST(duration_ms > $target_ms AS DOUBLE)) / sum(weight)
                AS over_target_share,
            sum(weight) AS est_requests,
            {weighted} AS weighted
        FROM {source}
        GROUP BY ALL
        ORDER BY {"bucket, " if every else ""}p99_ms DESC, service, route
    """
    params: dict[str, Any] = {"target_ms": target_ms}
    if every is not None:
        params["every"] = every
    return wb.sql(query, params)


def per_request(wb: Workbook, service: str | None = None, route: str | None = None) -> pl.DataFrame:
    """Each request's time by budget category.

    Columns: ``trace_id, span_id, service, route, duration_ms``, then one column per budget
    category in milliseconds (``self_ms, db_ms, cache_ms, http_client_ms, network_ms``),
    which add up to ``duration_ms``. In the order the requests started.
    """
    cur, relation, params = _per_request(wb, service, route)
    return (
        cur.sql(f"SELECT * FROM {relation} ORDER BY start_ns, trace_id, span_id", params=params)
        .pl()
        .drop("start_ns")
    )


def breakdown(wb: Workbook, service: str | None = None, route: str | None = None) -> pl.DataFrame:
    """Where each route's time goes, by budget category.

    Columns: ``service, route, category, requests, mean_ms, p95_ms, share``: per request, the
    mean and 95th percentile of the time spent in ``category``, and its share of all the
    route's time (the shares of a route add up to 1). Sorted by route, then share.

    >>> budget.breakdown(wb, route="/orders/{id}")
    """
    cur, relation, params = _per_request(wb, service, route)
    # One row per request and category: a cross join with the category names rather than
    # UNPIVOT, so that the query also runs on ClickHouse (latkit.clickhouse); as fast here.
    names = ", ".join(f"('{name}')" for name in tree.BUDGET)
    pick = " ".join(f"WHEN '{name}' THEN {name}_ms" for name in tree.BUDGET)
    return cur.sql(
        f"""
        WITH long AS (
            SELECT r.service, r.route, c.category, CASE c.category {pick} END AS ms
            FROM {relation} AS r CROSS JOIN (VALUES {names}) AS c(category)
        )
        SELECT service, route, category,
               count(*) AS requests,
               avg(ms) AS mean_ms,
               quantile_cont(ms, 0.95) AS p95_ms,
               sum(ms) / nullif(sum(sum(ms)) OVER (PARTITION BY service, route), 0) AS share
        FROM long
        GROUP BY service, route, category
        ORDER BY service, route, share DESC, category
        """,
        params=params,
    ).pl()


def _per_request(
    wb: Workbook, service: str | None, route: str | None
) -> tuple[Any, str, dict[str, Any]]:
    """A cursor with each request's budget registered, and the SQL relation that reads it."""
    # A workbook may hand over its span arrays in shards of whole traces, so that memory
    # stays bounded (latkit.clickhouse does); each request's answer is the same either way.
    shards = getattr(wb, "span_array_shards", None)
    parts = []
    for spans in shards() if shards is not None else [tree.load(wb.con)]:
        entries = np.flatnonzero(spans.is_server)
        totals = tree.budget_totals(spans, entries)
        parts.append(
            pa.table(
                {"span_row": spans.span_row[entries]}
                | {f"{name}_ms": totals[:, i] / 1e6 for i, name in enumerate(tree.BUDGET)}
            )
        )
    frame = pa.concat_tables(parts)
    cur = wb.con.cursor()
    cur.register("_per_request", frame)
    filters, params = _filters(service, route)
    relation = f"""(
        SELECT s.trace_id, s.span_id, s.service, s.route, s.duration_ms, s.start_ns,
               p.* EXCLUDE (span_row)
        FROM _per_request AS p
        JOIN (SELECT rowid AS span_row, * FROM spans WHERE kind = 'server') AS s USING (span_row)
        {filters}
    )"""
    return cur, relation, params


def critical_path(wb: Workbook, trace_id: str) -> pl.DataFrame:
    """The critical path of one trace (Jaeger's algorithm), as segments in time order.

    Columns: ``span_id, service, name, category, start_ms, end_ms, duration_ms`` where times
    are milliseconds from the start of the trace's first entry span and ``category`` is the
    budget category the segment counts as. Segments tile each root request's duration.
    """
    spans = tree.load(wb.con, "trace_id = $trace_id", {"trace_id": trace_id})
    roots = np.flatnonzero((spans.parent < 0) & spans.is_server)
    if len(roots) == 0:
        roots = np.flatnonzero(spans.parent < 0)
    _, seg_span, seg_start, seg_end, seg_budget = tree.partition(spans, roots)
    origin = int(spans.start_ns[roots].min()) if len(roots) else 0
    frame = pa.table(
        {
            "span_row": spans.span_row[seg_span],
            "start_ms": (seg_start - origin) / 1e6,
            "end_ms": (seg_end - origin) / 1e6,
            "category": pa.array(np.array(tree.BUDGET)[seg_budget.astype(np.int64)]),
        }
    )
    cur = wb.con.cursor()
    cur.register("_segments", frame)
    return cur.sql(
        """
        SELECT s.span_id, s.service, s.name, g.category, g.start_ms, g.end_ms,
               g.end_ms - g.start_ms AS duration_ms
        FROM _segments AS g JOIN spans AS s ON s.rowid = g.span_row
        ORDER BY g.start_ms, g.end_ms
        """
    ).pl()


def critical_path_summary(
    wb: Workbook, route: str, quantile: float = 0.95, service: str | None = None
) -> pl.DataFrame:
    """What lies on the critical path of a route's slow requests, over many traces.

    The slow requests are those at or above the route's ``quantile`` of duration. Columns:
    ``category, service, name, traces, total_ms, mean_ms, share``: the time each (budget
    category, span name) held the critical path, summed over those requests, and its share
    of their total time. Sorted by share, largest first.
    """
    spans = tree.load(wb.con)
    entry_rows = _slow_entries(wb, route, quantile, service)
    is_entry = np.isin(spans.span_row, entry_rows) & spans.is_server
    entries = np.flatnonzero(is_entry)
    seg_entry, seg_span, seg_start, seg_end, seg_budget = tree.partition(spans, entries)
    frame = pa.table(
        {
            "entry": seg_entry,
            "span_row": spans.span_row[seg_span],
            "ms": (seg_end - seg_start) / 1e6,
            "category": pa.array(np.array(tree.BUDGET)[seg_budget.astype(np.int64)]),
        }
    )
    cur = wb.con.cursor()
    cur.register("_segments", frame)
    return cur.sql(
        """
        SELECT g.category, s.service, s.name,
               count(DISTINCT g.entry) AS traces,
               sum(g.ms) AS total_ms,
               sum(g.ms) / count(DISTINCT g.entry) AS mean_ms,
               sum(g.ms) / sum(sum(g.ms)) OVER () AS share
        FROM _segments AS g JOIN spans AS s ON s.rowid = g.span_row
        GROUP BY g.category, s.service, s.name
        ORDER BY share DESC, g.category, s.service, s.name
        """
    ).pl()


def _slow_entries(wb: Workbook, route: str, quantile: float, service: str | None) -> np.ndarray:
    rows = wb.sql(
        """
        WITH r AS (
            SELECT rowid AS span_row, duration_ms FROM spans
            WHERE kind = 'server' AND route = $route
              AND ($service IS NULL OR service = $service)
        )
        SELECT span_row FROM r
        WHERE duration_ms >= (SELECT quantile_cont(duration_ms, $q) FROM r)
        """,
        {"route": route, "service": service, "q": quantile},
    )
    return rows["span_row"].to_numpy().astype(np.int64)


def _filters(service: str | None, route: str | None) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if service is not None:
        clauses.append("s.service = $service")
        params["service"] = service
    if route is not None:
        clauses.append("s.route = $route")
        params["route"] = route
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def trace_spans(wb: Workbook, trace_id: str) -> pl.DataFrame:
    """The spans of one trace, laid out for a waterfall (``charts.waterfall``).

    Columns: ``span_id, parent_span_id, service, name, category, depth, start_ms, end_ms,
    duration_ms, label``, times from the start of the trace's earliest span, in tree order
    (each span after its parent, siblings by start time).
    """
    frame = wb.sql(
        """
        WITH RECURSIVE t AS (
            SELECT * FROM spans WHERE trace_id = $trace_id
        ),
        tree AS (
            SELECT span_id, 0 AS depth, [start_ns] AS path
            FROM t
            WHERE parent_span_id IS NULL
               OR parent_span_id NOT IN (SELECT span_id FROM t)
            UNION ALL
            SELECT c.span_id, tree.depth + 1, list_append(tree.path, c.start_ns)
            FROM t AS c JOIN tree ON c.parent_span_id = tree.span_id
            WHERE tree.depth < 100
        )
        SELECT t.span_id, t.parent_span_id, t.service, t.name, t.category, tree.depth,
               (t.start_ns - min(t.start_ns) OVER ()) / 1e6 AS start_ms,
               (t.end_ns - min(t.start_ns) OVER ()) / 1e6 AS end_ms,
               t.duration_ms
        FROM t JOIN tree USING (span_id)
        ORDER BY tree.path, t.span_id
        """,
        {"trace_id": trace_id},
    )
    return frame.with_columns(
        pl.format(
            "{} {}{} · {}",
            pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(2),
            pl.lit("  ").repeat_by(pl.col("depth")).list.join(""),
            pl.col("service"),
            pl.col("name"),
        ).alias("label")
    )


def diff(
    before: Workbook,
    after: Workbook | None = None,
    *,
    split_at_ns: int | None = None,
    target_ms: float = 100.0,
    quantile: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Did a change make each route faster? Two workbooks (or one split in time) side by side.

    Give two workbooks, or one workbook and ``split_at_ns`` (requests starting before it are
    *before*). Columns: ``service, route, requests_before, requests_after``, then
    ``p50/p95/p99_ms`` and ``over_target_share`` and each budget category's mean ``*_ms``
    with a ``_before`` and ``_after`` suffix, then ``change_ms`` (after minus before at
    ``quantile``), ``ci_low_ms, ci_high_ms`` (a bootstrap 95 % interval of that change,
    ``resamples`` draws, fixed ``seed``) and ``verdict``: ``faster`` or ``slower`` when the
    interval excludes zero, ``within noise`` when it does not, ``only before``/``only after``
    for routes seen on one side.

    >>> budget.diff(latkit.open("before.duckdb"), latkit.open("after.duckdb"))
    """
    if (after is None) == (split_at_ns is None):
        raise ValueError("give either a second workbook or split_at_ns, not both")
    sides = {}
    for side, wb in (("before", before), ("after", after or before)):
        frame = per_request(wb)
        if split_at_ns is not None:
            starts = wb.sql("SELECT span_id, trace_id, start_ns FROM spans WHERE kind = 'server'")
            frame = frame.join(starts, on=["trace_id", "span_id"])
            keep = pl.col("start_ns") < split_at_ns
            frame = frame.filter(keep if side == "before" else ~keep).drop("start_ns")
        sides[side] = frame
    rng = np.random.default_rng(seed)
    rows = []
    keys = sorted(
        set(sides["before"].select("service", "route").unique().iter_rows())
        | set(sides["after"].select("service", "route").unique().iter_rows()),
        key=lambda k: (k[0] or "", k[1] or ""),
    )
    for service, route in keys:
        row: dict[str, Any] = {"service": service, "route": route}
        durations = {}
        for side, frame in sides.items():
            part = frame.filter((pl.col("service") == service) & (pl.col("route") == route))
            values = part["duration_ms"].to_numpy()
            durations[side] = values
            row[f"requests_{side}"] = len(values)
            for q in (50, 95, 99):
                row[f"p{q}_ms_{side}"] = float(np.percentile(values, q)) if len(values) else None
            row[f"over_target_share_{side}"] = (
                float((values > target_ms).mean()) if len(values) else None
            )
            for name in tree.BUDGET:
                row[f"{name}_ms_{side}"] = part[f"{name}_ms"].mean() if len(values) else None
        row.update(_bootstrap(durations["before"], durations["after"], quantile, resamples, rng))
        rows.append(row)
    return pl.DataFrame(rows)


def _bootstrap(
    before: np.ndarray,
    after: np.ndarray,
    quantile: float,
    resamples: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    if len(before) == 0 or len(after) == 0:
        verdict = "only after" if len(before) == 0 else "only before"
        return {"change_ms": None, "ci_low_ms": None, "ci_high_ms": None, "verdict": verdict}
    q = 100 * quantile
    change = float(np.percentile(after, q) - np.percentile(before, q))
    draws = np.empty(resamples)
    # Resample in blocks so memory stays bounded on routes with many requests.
    block = max(1, 2_000_000 // max(len(before), len(after)))
    for start in range(0, resamples, block):
        n = min(block, resamples - start)
        b = before[rng.integers(0, len(before), (n, len(before)))]
        a = after[rng.integers(0, len(after), (n, len(after)))]
        draws[start : start + n] = np.percentile(a, q, axis=1) - np.percentile(b, q, axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    verdict = "faster" if high < 0 else "slower" if low > 0 else "within noise"
    return {
        "change_ms": change,
        "ci_low_ms": float(low),
        "ci_high_ms": float(high),
        "verdict": verdict,
    }


def compare(
    wb: Workbook,
    route: str,
    slow_quantile: float = 0.95,
    service: str | None = None,
    max_values: int = 50,
) -> pl.DataFrame:
    """What sets a route's slow requests apart (BubbleUp-style)?

    Requests at or above ``slow_quantile`` of the route's latency are *slow*, the rest the
    *baseline*. For every attribute value of the request span, every span (service and
    name) and every query template in its trace, the share of slow requests that have it
    against the share of baseline requests that have it. Attributes with more than
    ``max_values`` distinct values (ids, timestamps) are left out: they describe single
    requests, not groups. Columns: ``dimension, value, slow_share, baseline_share,
    difference``, most over-represented first.

    >>> budget.compare(wb, "/products/<int:product_id>").head(5)
    """
    return wb.sql(
        """
        WITH req AS (
            SELECT trace_id, span_id, duration_ms, attributes FROM spans
            WHERE kind = 'server' AND route = $route
              AND ($service IS NULL OR service = $service)
        ),
        labeled AS (
            SELECT *, duration_ms >= (SELECT quantile_cont(duration_ms, $q) FROM req) AS slow
            FROM req
        ),
        features AS (
            SELECT span_id, slow, a.key AS dimension, a.value AS value
            FROM (SELECT span_id, slow, unnest(attributes) AS a FROM labeled)
            UNION
            SELECT l.span_id, l.slow, 'span' AS dimension, s.service || ': ' || s.name
            FROM labeled AS l JOIN spans AS s USING (trace_id)
            WHERE s.span_id <> l.span_id
            UNION
            SELECT l.span_id, l.slow, 'query' AS dimension, s.query_template
            FROM labeled AS l JOIN spans AS s USING (trace_id)
            WHERE s.query_template IS NOT NULL
        ),
        usable AS (
            SELECT dimension FROM features GROUP BY dimension
            HAVING count(DISTINCT value) <= $max_values
        ),
        totals AS (
            SELECT count(*) FILTER (slow) AS slow_n, count(*) FILTER (NOT slow) AS base_n
            FROM labeled
        )
        SELECT dimension, value,
               count(DISTINCT span_id) FILTER (slow) / any_value(slow_n) AS slow_share,
               coalesce(count(DISTINCT span_id) FILTER (NOT slow) / nullif(any_value(base_n), 0),
                        0) AS baseline_share,
               slow_share - baseline_share AS difference
        FROM features JOIN usable USING (dimension), totals
        GROUP BY dimension, value
        ORDER BY difference DESC, dimension, value
        """,
        {"route": route, "service": service, "q": slow_quantile, "max_values": max_values},
    )
