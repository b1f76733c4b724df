"""How often does the cache hit, what does it save, and what would it do at another size?

A *lookup* is a cache read span (``category = 'cache'``: Redis, Memcached, Valkey) whose
operation reads (``GET``, ``MGET``, ``HGET``, ...). Whether it hit is read from the
``cache.hit`` attribute where the application recorded one (OpenTelemetry has no standard
attribute, and the Redis instrumentations record neither key nor result: ``GET ?``).
Everywhere else it is *inferred* from the cache-aside pattern, by :func:`infer_hits`:

- under the same parent, the spans after a read and before the next read are its *window*;
- a database query in the window is the fill, so the read **missed** (usually a cache write
  of the same key or key pattern follows; a miss on a row that does not exist has none);
- a read with no query in its window **hit**.

Keys come from ``cache.key`` or from the statement when the instrumentation keeps it
(OpenTelemetry JS's ioredis: ``get item:123``; never ``?``). *Key patterns* replace the
values inside keys by placeholders (``user:42:profile`` gives ``user:{id}:profile``), so
that hit rates group sensibly. Without keys, everything that needs them (the size curve,
the TTL estimate) says so instead of guessing.

>>> wb = latkit.open(); _ = wb.load("sample_data/traces")
>>> cache.hit_rates(wb, by="key_pattern").select("key_pattern", "lookups", "hit_rate")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from latkit.workbook import Workbook

#: Cache operations that read, and those that write (upper case; Redis and Memcached names).
READ_OPS = (
    "GET", "MGET", "HGET", "HMGET", "HGETALL", "GETEX", "JSON.GET",
    "GETS", "GET_MULTI", "GET_MANY",
)
WRITE_OPS = (
    "SET", "SETEX", "PSETEX", "SETNX", "MSET", "MSETNX", "HSET", "HMSET", "HSETNX",
    "JSON.SET", "ADD", "REPLACE", "CAS", "SET_MULTI", "SET_MANY",
)

#: The operation of a cache span: the semantic-convention attribute, else the statement's or
#: the span name's first word.
_OPERATION = """upper(coalesce(
    attr(attributes, 'db.operation.name'),
    attr(attributes, 'db.operation'),
    nullif(split_part(trim(db_statement), ' ', 1), ''),
    split_part(trim(name), ' ', 1)
))"""

#: The key: ``cache.key`` where the application recorded it, else the statement's first
#: argument when the instrumentation kept it (``get item:123``), never a masked ``?``.
_KEY = """coalesce(
    attr(attributes, 'cache.key'),
    CASE WHEN split_part(trim(db_statement), ' ', 2) NOT IN ('', '?')
         THEN split_part(trim(db_statement), ' ', 2) END
)"""


def _pattern(column: str) -> str:
    """SQL that turns a key into its pattern: e-mails, UUIDs, dates, numbers and long hex
    hashes become ``{email}``, ``{uuid}``, ``{date}``, ``{id}``, ``{hash}``. Numbers and
    hashes only count as whole tokens (between separators), so ``v2`` or ``en-GB`` stay;
    each token rule runs twice because adjacent tokens share a separator."""
    expr = column
    rules = [
        (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "{email}"),
        (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
         "{uuid}"),
        (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "{date}"),
    ]
    for regex, placeholder in rules:
        expr = f"regexp_replace({expr}, '{regex}', '{placeholder}', 'g')"
    for regex, placeholder in (
        (r"(^|[^0-9A-Za-z{])[0-9]+([^0-9A-Za-z}]|$)", "{id}"),
        (r"(^|[^0-9A-Za-z{])[0-9a-fA-F]{16,}([^0-9A-Za-z}]|$)", "{hash}"),
    ):
        for _ in range(2):
            expr = f"regexp_replace({expr}, '{regex}', '\\1{placeholder}\\2', 'g')"
    return expr


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


#: Every cache span with its operation, key and key pattern.
_CACHE_OPS = f"""
    SELECT trace_id, span_id, parent_span_id, service, start_ns, end_ns, duration_ms,
           cache_hit, {_OPERATION} AS operation, {_KEY} AS key
    FROM spans
    WHERE category = 'cache'
"""

#: One row per cache read: what :func:`infer_hits` concludes from its siblings.
_INFER = f"""
    cache_ops AS (
        SELECT *, {_pattern("key")} AS key_pattern,
               CASE WHEN operation IN {_in(READ_OPS)} THEN 'read'
                    WHEN operation IN {_in(WRITE_OPS)} THEN 'write' END AS role
        FROM ({_CACHE_OPS})
    ),
    reads AS (
        SELECT * FROM cache_ops WHERE role = 'read'
    ),
    families AS (
        SELECT DISTINCT trace_id, parent_span_id FROM reads WHERE parent_span_id IS NOT NULL
    ),
    siblings AS (
        SELECT trace_id, span_id, parent_span_id, start_ns, end_ns, duration_ms, role,
               key, key_pattern, NULL AS query_template
        FROM cache_ops SEMI JOIN families USING (trace_id, parent_span_id)
        WHERE role IS NOT NULL
        UNION ALL
        SELECT trace_id, span_id, parent_span_id, start_ns, end_ns, duration_ms, 'query',
               NULL, NULL, query_template
        FROM spans SEMI JOIN families USING (trace_id, parent_span_id)
        WHERE category = 'db'
    ),
    -- Number the windows: each read opens one that runs until the next read. Siblings
    -- starting in the same instant (JS spans have whole milliseconds) are put in the order
    -- of the pattern: read, query, write.
    numbered AS (
        SELECT *,
               sum(CAST(role = 'read' AS INTEGER)) OVER (
                   PARTITION BY trace_id, parent_span_id
                   ORDER BY start_ns,
                            CASE role WHEN 'read' THEN 0 WHEN 'query' THEN 1 ELSE 2 END,
                            end_ns, span_id
                   ROWS UNBOUNDED PRECEDING
               ) AS window_no
        FROM siblings
    ),
    windowed AS (
        SELECT *,
               max(key_pattern) FILTER (role = 'read') OVER w AS read_pattern,
               min(start_ns) FILTER (role = 'query') OVER w AS first_query_ns
        FROM numbered
        WHERE window_no > 0
        WINDOW w AS (PARTITION BY trace_id, parent_span_id, window_no)
    ),
    windows AS (
        SELECT trace_id,
               any_value(span_id) FILTER (role = 'read') AS span_id,
               count(*) FILTER (role = 'query') AS fill_queries,
               sum(duration_ms) FILTER (role = 'query') AS fill_ms,
               arg_min(query_template, start_ns)
                   FILTER (role = 'query' AND query_template IS NOT NULL) AS fill_template,
               -- the fill's write: after the first query, of the same key pattern when known
               arg_min(span_id, start_ns) FILTER (fill_write) AS write_span_id,
               min(start_ns) FILTER (fill_write) AS write_start_ns,
               arg_min(duration_ms, start_ns) FILTER (fill_write) AS write_ms
        FROM (
            SELECT *,
                   role = 'write' AND start_ns >= first_query_ns
                   AND (key_pattern IS NULL OR read_pattern IS NULL
                        OR key_pattern = read_pattern) AS fill_write
            FROM windowed
        )
        GROUP BY trace_id, parent_span_id, window_no
    ),
    inferred AS (
        SELECT r.*,
               CASE WHEN w.span_id IS NULL THEN NULL ELSE w.fill_queries = 0 END
                   AS inferred_hit,
               CASE WHEN w.span_id IS NULL THEN 'no parent'
                    WHEN w.fill_queries = 0 THEN 'no fill'
                    WHEN w.write_span_id IS NOT NULL THEN 'fill then write'
                    ELSE 'fill, no write' END AS evidence,
               w.fill_queries, w.fill_ms, w.fill_template,
               w.write_span_id, w.write_start_ns, w.write_ms
        FROM reads AS r LEFT JOIN windows AS w USING (trace_id, span_id)
    )
"""

_INFER_HITS = f"""
    WITH {_INFER}
    SELECT trace_id, span_id, inferred_hit, evidence, fill_queries, fill_ms, fill_template,
           write_span_id, write_start_ns, write_ms
    FROM inferred
    ORDER BY start_ns, trace_id, span_id
"""

#: Every lookup, with its request (the latest-starting server span of the same service and
#: trace that contains the read's start: robust to missing intermediate spans).
_LOOKUPS_CTE = f"""
    {_INFER},
    requests AS (
        SELECT r.trace_id, r.span_id,
               arg_max(q.span_id, q.start_ns) AS request_span_id,
               arg_max(q.route, q.start_ns) AS route,
               arg_max(q.duration_ms, q.start_ns) AS request_ms
        FROM reads AS r
        JOIN spans AS q
          ON q.trace_id = r.trace_id AND q.kind = 'server' AND q.service = r.service
         AND q.start_ns <= r.start_ns AND r.start_ns <= q.end_ns
        GROUP BY r.trace_id, r.span_id
    ),
    lookups AS (
        SELECT i.trace_id, i.span_id, i.start_ns,
               make_timestamp(i.start_ns // 1000) AS "time",
               i.service, q.route, q.request_span_id, q.request_ms,
               i.operation, i.key, i.key_pattern,
               coalesce(i.cache_hit, i.inferred_hit) AS hit,
               CASE WHEN i.cache_hit IS NOT NULL THEN 'observed'
                    WHEN i.inferred_hit IS NOT NULL THEN 'inferred' END AS hit_source,
               i.cache_hit AS observed_hit, i.inferred_hit, i.evidence,
               i.duration_ms, i.fill_ms, i.fill_template, i.write_start_ns, i.write_ms
        FROM inferred AS i LEFT JOIN requests AS q USING (trace_id, span_id)
    )
"""


def infer_hits(wb: Workbook) -> pl.DataFrame:
    """For every cache read, the hit or miss that the cache-aside pattern implies.

    Inferred for every read, also those that carry ``cache.hit`` (so the rule can be checked
    against them); :func:`lookups` uses the inference only where no hit was observed.
    Columns: ``trace_id, span_id, inferred_hit`` (NULL for a read with no parent, whose
    siblings cannot be seen), ``evidence`` (``no fill``, ``fill then write``, ``fill, no
    write``, ``no parent``), ``fill_queries, fill_ms`` (count and summed duration of the
    database queries in the read's window), ``fill_template`` (the first one's template),
    ``write_span_id, write_start_ns, write_ms`` (the cache write that stored the fill).

    >>> cache.infer_hits(wb).group_by("evidence").len()
    """
    return wb.sql(_INFER_HITS)


def lookups(wb: Workbook) -> pl.DataFrame:
    """Every cache read, with its request, key, key pattern and hit or miss.

    Columns: ``trace_id, span_id, start_ns, time`` (a UTC timestamp), ``service, route,
    request_span_id, request_ms`` (the request the read served and its latency), ``operation``
    (``GET``, ``MGET``, ...), ``key, key_pattern`` (NULL where no key was recorded), ``hit``
    (NULL when unknown), ``hit_source`` (``observed`` from ``cache.hit``, ``inferred`` by
    :func:`infer_hits`), ``observed_hit, inferred_hit, evidence, duration_ms`` (the read),
    ``fill_ms, fill_template, write_start_ns, write_ms`` (what a miss did next), in time order.

    >>> cache.lookups(wb).filter(pl.col("hit_source") == "inferred").height
    """
    return wb.sql(f"WITH {_LOOKUPS_CTE} SELECT * FROM lookups ORDER BY start_ns, trace_id, span_id")


#: Groupings :func:`hit_rates` knows by name (a route is always within its service).
_GROUPS = {
    "key_pattern": "key_pattern",
    "route": "service, route",
    "service": "service",
    "operation": "operation",
}


def hit_rates(wb: Workbook, by: str = "key_pattern") -> pl.DataFrame:
    """Hit rate, the latency of requests that hit against those that missed, time saved.

    ``by`` is ``"key_pattern"``, ``"route"`` (with ``service``), ``"service"``,
    ``"operation"``, or a time bucket such as ``"10s"`` or ``"1 minute"`` (column ``bucket``).
    Columns: the grouping, then ``lookups, hits, misses, unknown, hit_rate`` (hits over
    hits + misses), ``inferred`` (lookups whose hit was inferred), ``lookup_ms_hit,
    lookup_ms_miss`` (mean read time), ``fill_ms`` (mean database time of a miss),
    ``request_p50_ms_hit, request_p50_ms_miss, request_p95_ms_hit, request_p95_ms_miss``
    (latency of the requests the lookups served), ``saved_ms`` (what the hits saved their
    requests against no cache at all: per hit, the mean latency of a request that missed,
    filled and wrote, less its read and write, minus the mean latency of one that hit),
    ``miss_cost_ms`` (what the misses spent on the cache for nothing: their reads and
    writes), ``net_saved_ms`` (the difference: negative when the cache costs more time than
    it saves). Means, not medians, since these are totals. Sorted by lookups, most first.

    >>> cache.hit_rates(wb, by="route")
    """
    params: dict[str, Any] = {}
    if by in _GROUPS:
        group = _GROUPS[by]
        order = f"lookups DESC, {group}"
    else:
        if _interval(by) is None:
            raise ValueError(
                f"by={by!r}: give one of {', '.join(_GROUPS)} or a time bucket like '1m'"
            )
        group = 'time_bucket(CAST($every AS INTERVAL), "time") AS bucket'
        order = "bucket"
        params["every"] = _interval(by)
    return wb.sql(
        f"""
        WITH {_LOOKUPS_CTE}
        SELECT {group},
               count(*) AS lookups,
               count(*) FILTER (hit) AS hits,
               count(*) FILTER (NOT hit) AS misses,
               count(*) FILTER (hit IS NULL) AS unknown,
               hits / nullif(hits + misses, 0) AS hit_rate,
               count(*) FILTER (hit_source = 'inferred') AS inferred,
               avg(duration_ms) FILTER (hit) AS lookup_ms_hit,
               avg(duration_ms) FILTER (NOT hit) AS lookup_ms_miss,
               avg(fill_ms) FILTER (NOT hit) AS fill_ms,
               quantile_cont(request_ms, 0.50) FILTER (hit) AS request_p50_ms_hit,
               quantile_cont(request_ms, 0.50) FILTER (NOT hit) AS request_p50_ms_miss,
               quantile_cont(request_ms, 0.95) FILTER (hit) AS request_p95_ms_hit,
               quantile_cont(request_ms, 0.95) FILTER (NOT hit) AS request_p95_ms_miss,
               -- Without the cache, a hit's request would have been a filled request minus
               -- its cache calls: compare with the misses that filled and wrote (all misses
               -- when no write was traced).
               hits * (
                   coalesce(avg(request_ms - duration_ms - write_ms) FILTER (NOT hit),
                            avg(request_ms - duration_ms) FILTER (NOT hit))
                   - avg(request_ms) FILTER (hit)
               ) AS saved_ms,
               coalesce(sum(duration_ms) FILTER (NOT hit), 0)
                   + coalesce(sum(write_ms) FILTER (NOT hit), 0) AS miss_cost_ms,
               saved_ms - miss_cost_ms AS net_saved_ms
        FROM lookups
        GROUP BY ALL
        ORDER BY {order}
        """,
        params,
    )


def _interval(text: str) -> str | None:
    """``"10s"``, ``"1m"``, ``"1 minute"`` as a DuckDB interval string, or None."""
    short = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    stripped = text.strip()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = stripped[len(number):].strip()
    candidate = f"{number} {short.get(unit, unit)}" if number else stripped
    con = duckdb.connect()
    ok = con.execute("SELECT TRY_CAST($t AS INTERVAL) IS NOT NULL", {"t": candidate}).fetchall()
    con.close()
    return candidate if ok[0][0] and number else None


# -- TTL ---------------------------------------------------------------------------------

_AGES = f"""
    WITH {_LOOKUPS_CTE},
    aged AS (
        SELECT *,
               last_value(write_start_ns IGNORE NULLS) OVER (
                   PARTITION BY key ORDER BY start_ns, span_id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
               ) AS last_set_ns
        FROM lookups
        WHERE key IS NOT NULL AND hit IS NOT NULL
    )
    SELECT *, CASE WHEN last_set_ns < start_ns THEN (start_ns - last_set_ns) / 1e9 END AS age_s
    FROM aged
"""


def ages(wb: Workbook) -> pl.DataFrame:
    """Each keyed lookup with the age of the value it found (or would have found).

    Columns: those of :func:`lookups` plus ``last_set_ns`` (the start of the last cache write
    that stored this key after a miss, as far as the traces show) and ``age_s`` (seconds since
    then; NULL when no earlier write is visible). A hit's age is below the TTL; a miss on a
    key that was written before is an *expiry* (or an eviction), and its age is at least the
    TTL.
    """
    return wb.sql(f"{_AGES} ORDER BY start_ns, trace_id, span_id")


def ttl_estimate(wb: Workbook) -> pl.DataFrame:
    """The TTL each key pattern behaves as if it had, bracketed by the observations.

    Instrumentations mask the TTL argument (``SETEX ? ? ?``), but it shows in the key stream:
    the oldest value ever served is younger than the TTL, and a miss on a key written
    earlier (an expiry) comes at least a TTL after that write. Columns: ``key_pattern,
    lookups, sets, expiries, max_hit_age_s, min_expiry_age_s, ttl_s`` (the midpoint of the
    bracket when it is consistent, else NULL: evictions, or writes the traces do not show).

    >>> cache.ttl_estimate(wb).select("key_pattern", "ttl_s")
    """
    return wb.sql(
        f"""
        SELECT key_pattern,
               count(*) AS lookups,
               count(*) FILTER (NOT hit AND write_start_ns IS NOT NULL) AS sets,
               count(*) FILTER (NOT hit AND age_s IS NOT NULL) AS expiries,
               max(age_s) FILTER (hit) AS max_hit_age_s,
               min(age_s) FILTER (NOT hit) AS min_expiry_age_s,
               CASE WHEN max_hit_age_s < min_expiry_age_s
                    THEN (max_hit_age_s + min_expiry_age_s) / 2 END AS ttl_s
        FROM ({_AGES})
        GROUP BY key_pattern
        ORDER BY lookups DESC, key_pattern
        """
    )


# -- what the cache would do at other sizes -------------------------------------------------


def _stack_distances(keys: np.ndarray, cacheable: np.ndarray) -> np.ndarray:
    """Mattson's LRU stack distance of every access, in one pass with a Fenwick tree.

    The distance of an access is the number of distinct other keys used since the same key
    was last used; an LRU cache of ``c`` entries hits exactly the accesses with distance
    below ``c``. -1 for a first access, or a key that is never cached."""
    n = len(keys)
    last = np.full(int(keys.max()) + 1 if n else 0, -1, dtype=np.int64)
    tree = np.zeros(n + 1, dtype=np.int64)  # marks the latest access of each key
    distance = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        k = keys[i]
        if not cacheable[k]:
            continue
        p = last[k]
        if p >= 0:
            # marks in positions p+1 .. i-1 = prefix(i - 1) - prefix(p)
            total = 0
            j = i  # prefix sum over positions < i (1-based index i)
            while j > 0:
                total += tree[j]
                j -= j & -j
            j = p + 1
            while j > 0:
                total -= tree[j]
                j -= j & -j
            distance[i] = total
            j = p + 1
            while j <= n:
                tree[j] -= 1
                j += j & -j
        j = i + 1
        while j <= n:
            tree[j] += 1
            j += j & -j
        last[k] = i
    return distance


def _lru_ttl(
    keys: np.ndarray, times: np.ndarray, cacheable: np.ndarray, capacity: int, ttl_ns: int
) -> np.ndarray:
    """Simulate an LRU cache of ``capacity`` entries whose values expire ``ttl_ns`` after
    they were written (as Redis's SETEX: a read does not extend it). Fills on every miss of
    a cacheable key. Returns whether each access hit. Expired entries keep their slot until
    they are read or evicted, as a lazily expiring cache would."""
    n = len(keys)
    k_count = int(keys.max()) + 1 if n else 0
    prev = np.full(k_count, -1, dtype=np.int64)
    nxt = np.full(k_count, -1, dtype=np.int64)
    present = np.zeros(k_count, dtype=np.bool_)
    written = np.zeros(k_count, dtype=np.int64)
    hit = np.zeros(n, dtype=np.bool_)
    head = -1
    tail = -1
    size = 0
    for i in range(n):
        k = keys[i]
        if not cacheable[k]:
            continue
        fresh = present[k] and (ttl_ns < 0 or times[i] - written[k] < ttl_ns)
        if present[k]:  # unlink; it goes back to the front below
            if prev[k] >= 0:
                nxt[prev[k]] = nxt[k]
            else:
                head = nxt[k]
            if nxt[k] >= 0:
                prev[nxt[k]] = prev[k]
            else:
                tail = prev[k]
            size -= 1
        if fresh:
            hit[i] = True
        else:
            written[k] = times[i]
        prev[k] = -1
        nxt[k] = head
        if head >= 0:
            prev[head] = k
        head = k
        if tail < 0:
            tail = k
        present[k] = True
        size += 1
        if size > capacity:
            t = tail
            tail = prev[t]
            if tail >= 0:
                nxt[tail] = -1
            else:
                head = -1
            present[t] = False
            prev[t] = -1
            nxt[t] = -1
            size -= 1
    return hit


@functools.cache
def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The numba-compiled ``fn`` (numba is imported on first use only: it takes a while)."""
    from numba import njit

    return njit(cache=True)(fn)


def stack_distances(keys: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Mattson's LRU stack distance of each access in a key stream (-1 for a first access).

    An LRU cache of ``c`` entries hits exactly the accesses whose distance is below ``c``.

    >>> cache.stack_distances(["a", "b", "a", "a"]).tolist()
    [-1, -1, 1, 0]
    """
    codes = _codes(keys)
    cacheable = np.ones(int(codes.max()) + 1 if len(codes) else 0, dtype=np.bool_)
    return _jit(_stack_distances)(codes, cacheable)


def _codes(keys: Sequence[Any] | np.ndarray) -> np.ndarray:
    series = pl.Series("k", list(keys) if not isinstance(keys, np.ndarray) else keys)
    return series.cast(pl.String).rank("dense").cast(pl.Int64).to_numpy() - 1


_CURVE_COLUMNS = {
    "cache_size": pl.Int64, "hit_rate": pl.Float64, "hit_rate_ttl": pl.Float64,
    "ttl_s": pl.Float64, "lookups": pl.Int64, "keys": pl.Int64,
    "observed_hit_rate": pl.Float64, "ceiling": pl.Float64, "note": pl.String,
}


def size_curve(
    wb: Workbook,
    key_pattern: str | None = None,
    sizes: Sequence[int] | None = None,
    ttl_s: float | None = None,
) -> pl.DataFrame:
    """The hit rate an LRU cache of each size would have reached on the observed key stream.

    One pass of Mattson's stack distances over the lookups in time order (of ``key_pattern``
    only, or of all keyed lookups as one shared cache) gives the hit rate of every size at
    once; ``cache_size`` counts entries. Keys that were never stored (no hit, no write after a
    miss: ids that do not exist) always miss and take no room. ``hit_rate_ttl`` simulates the
    same LRU with values expiring ``ttl_s`` after they were written (given, or estimated by
    :func:`ttl_estimate`, the longest when several patterns share the stream; NULL when
    neither), so the gap between ``hit_rate`` and ``hit_rate_ttl`` is what the TTL costs.
    Columns: ``cache_size, hit_rate, hit_rate_ttl, ttl_s, lookups, keys`` (distinct stored
    keys), ``observed_hit_rate`` (what the cache really did on these lookups), ``ceiling``
    (an infinite cache with no expiry), ``note`` (lookups left out for lack of a key; a
    single row of NULLs and the reason when no lookup has a key: keys are never invented).
    Sorted by ``cache_size``.

    >>> cache.size_curve(wb, "product:{id}").filter(pl.col("cache_size") >= 1000).head(1)
    """
    frame = lookups(wb)
    if key_pattern is not None:
        frame = frame.filter(pl.col("key_pattern") == key_pattern)
    keyed = frame.filter(pl.col("key").is_not_null())
    missing = frame.height - keyed.height
    if keyed.height == 0:
        reason = (
            f"none of the {frame.height} lookups has a key (the instrumentation masks it as "
            "'GET ?' and no cache.key attribute was recorded): the key stream, and so the "
            "size curve, cannot be computed; record cache.key through the instrumentation's "
            "request hook"
        )
        return pl.DataFrame(
            [{name: None for name in _CURVE_COLUMNS} | {"note": reason}], schema=_CURVE_COLUMNS
        )
    note = (
        f"{missing} of {frame.height} lookups have no key and are left out" if missing else None
    )
    keyed = keyed.with_columns(code=pl.col("key").rank("dense").cast(pl.Int64) - 1)
    codes = keyed["code"].to_numpy()
    # A key is stored if it ever hit or was written after a miss.
    stored = (
        keyed.group_by("code")
        .agg((pl.col("hit").fill_null(False) | pl.col("write_start_ns").is_not_null())
             .any().alias("stored"))
    )
    cacheable = np.zeros(int(codes.max()) + 1, dtype=bool)
    cacheable[stored["code"].to_numpy()] = stored["stored"].to_numpy()
    distances = _jit(_stack_distances)(codes, cacheable)
    n_keys = int(cacheable.sum())
    if sizes is None:
        grid = np.geomspace(1, max(n_keys, 1), num=48)
        sizes = sorted({int(round(s)) for s in grid} | {max(n_keys, 1)})
    reuse = np.sort(distances[distances >= 0])
    sizes_array = np.asarray(sorted(sizes), dtype=np.int64)
    hits = np.searchsorted(reuse, sizes_array, side="left")  # distances below each size
    n = len(codes)
    if ttl_s is None:
        estimate = ttl_estimate(wb)
        if key_pattern is not None:
            estimate = estimate.filter(pl.col("key_pattern") == key_pattern)
        values = estimate["ttl_s"].drop_nulls()
        ttl_s = float(values.max()) if len(values) else None  # type: ignore[arg-type]
    if ttl_s is not None:
        times = keyed["start_ns"].to_numpy()
        simulate = _jit(_lru_ttl)
        ttl_ns = int(ttl_s * 1e9)
        hit_rate_ttl: list[float | None] = [
            float(simulate(codes, times, cacheable, int(c), ttl_ns).mean()) for c in sizes_array
        ]
    else:
        hit_rate_ttl = [None] * len(sizes_array)
    known = keyed["hit"].drop_nulls()
    observed = float(known.mean()) if len(known) else None  # type: ignore[arg-type]
    return pl.DataFrame(
        {
            "cache_size": sizes_array,
            "hit_rate": hits / n,
            "hit_rate_ttl": hit_rate_ttl,
            "ttl_s": [ttl_s] * len(sizes_array),
            "lookups": [n] * len(sizes_array),
            "keys": [n_keys] * len(sizes_array),
            "observed_hit_rate": [observed] * len(sizes_array),
            "ceiling": [len(reuse) / n] * len(sizes_array),
            "note": [note] * len(sizes_array),
        },
        schema=_CURVE_COLUMNS,
    )


# -- staleness ---------------------------------------------------------------------------

_WRITE_WORDS = ("INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY")


def _tables(template: str, target_only: bool) -> list[str]:
    """Tables a statement reads (or, with ``target_only``, the one it writes), lowercase and
    without schema; empty when sqlglot cannot parse it."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(template, read="postgres")
    except sqlglot.errors.ParseError:
        return []
    if tree is None:
        return []
    if target_only:
        table = tree.find(exp.Table)
        return [table.name.lower()] if table is not None and table.name else []
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    names = {t.name.lower() for t in tree.find_all(exp.Table) if t.name}
    return sorted(names - ctes)


#: The writes a query log shows, beside the traced ones (``staleness``).
_LOGGED_WRITES = """
    UNION ALL
    SELECT w.table_name AS table_name, q.ts_ns AS ts_ns, 'logged' AS seen_in
    FROM queries AS q JOIN _write_tables AS w USING (query_template)
"""


def staleness(wb: Workbook, ttl_s: float | None = None) -> pl.DataFrame:
    """How often the data behind each key pattern changes, against how long it stays cached.

    The *source tables* of a key pattern are those its fill queries read (parsed with
    sqlglot). Writes to them are ``INSERT``/``UPDATE``/``DELETE``/``MERGE``/... statements on
    those tables, from traced database spans and from query logs (``queries``: they also see
    writers that are not traced, like batch jobs and other services). Until its TTL runs out,
    a cached value can be that old, so every write opens a window of up to ``ttl_s`` in which
    a hit may serve stale data. Columns: ``key_pattern, source_tables, ttl_s`` (given, else
    :func:`ttl_estimate`), ``hits, writes_traced, writes_logged, observed_min`` (minutes the
    data covers), ``writes_per_min`` (from the larger of the two write counts),
    ``hits_after_write`` (hits within ``ttl_s`` after a write to a source table: an upper
    bound on the stale reads, since the write may have touched other rows),
    ``stale_hit_share`` (their share of hits).

    >>> cache.staleness(wb).select("key_pattern", "source_tables", "writes_per_min", "ttl_s")
    """
    fills = wb.sql(
        f"""
        WITH {_LOOKUPS_CTE}
        SELECT DISTINCT key_pattern, fill_template FROM lookups
        WHERE fill_template IS NOT NULL
        """
    )
    fill_tables = pl.DataFrame(
        [
            {"key_pattern": pattern, "table_name": table}
            for pattern, template in fills.iter_rows()
            for table in _tables(template, target_only=False)
        ],
        schema={"key_pattern": pl.String, "table_name": pl.String},
    ).unique()
    # Without query logs (none loaded, or a ClickHouse workbook: spans only) the writes are
    # the traced ones alone, and the log's table is not read.
    logged = wb.has_rows("queries")
    writes = wb.sql(
        f"""
        SELECT DISTINCT query_template FROM (
            SELECT query_template FROM spans WHERE category = 'db'
            {"UNION ALL SELECT query_template FROM queries" if logged else ""}
        )
        WHERE upper(split_part(ltrim(query_template), ' ', 1)) IN {_in(_WRITE_WORDS)}
           OR regexp_matches(query_template, '^\\s*WITH\\b.*\\b(INSERT|UPDATE|DELETE)\\b', 'is')
        """
    )
    write_tables = pl.DataFrame(
        [
            {"query_template": template, "table_name": table}
            for (template,) in writes.iter_rows()
            for table in _tables(template, target_only=True)
        ],
        schema={"query_template": pl.String, "table_name": pl.String},
    )
    ttls = ttl_estimate(wb).select("key_pattern", pl.col("ttl_s").alias("estimated_ttl_s"))
    cur = wb.con.cursor()
    cur.register("_fill_tables", fill_tables.to_arrow())
    cur.register("_write_tables", write_tables.to_arrow())
    cur.register("_ttls", ttls.to_arrow())
    return cur.sql(
        f"""
        WITH {_LOOKUPS_CTE},
        patterns AS (
            SELECT key_pattern, count(*) FILTER (hit) AS hits FROM lookups GROUP BY key_pattern
        ),
        sources AS (
            SELECT key_pattern, list_sort(list(DISTINCT table_name)) AS source_tables
            FROM _fill_tables GROUP BY key_pattern
        ),
        writes AS (
            SELECT w.table_name AS table_name, s.start_ns AS ts_ns, 'traced' AS seen_in
            FROM spans AS s JOIN _write_tables AS w USING (query_template)
            WHERE s.category = 'db'
            {_LOGGED_WRITES if logged else ""}
        ),
        span_of_time AS (
            SELECT (max(hi) - min(lo)) / 60e9 AS observed_min FROM (
                SELECT min(start_ns) AS lo, max(end_ns) AS hi FROM spans
                {"UNION ALL SELECT min(ts_ns), max(ts_ns) FROM queries" if logged else ""}
            )
        ),
        per_pattern AS (
            SELECT p.key_pattern AS key_pattern, p.hits AS hits,
                   coalesce(s.source_tables, []) AS source_tables,
                   coalesce(CAST($ttl_s AS DOUBLE), t.estimated_ttl_s) AS ttl_s
            FROM patterns AS p
            LEFT JOIN sources AS s ON s.key_pattern IS NOT DISTINCT FROM p.key_pattern
            LEFT JOIN _ttls AS t ON t.key_pattern IS NOT DISTINCT FROM p.key_pattern
        ),
        pattern_writes AS (
            SELECT p.key_pattern AS key_pattern, w.ts_ns AS ts_ns, w.seen_in AS seen_in
            FROM per_pattern AS p, writes AS w
            WHERE list_contains(p.source_tables, w.table_name)
        ),
        stale_hits AS (
            SELECT l.key_pattern AS key_pattern, count(DISTINCT l.span_id) AS hits_after_write
            FROM lookups AS l
            JOIN per_pattern AS p ON p.key_pattern IS NOT DISTINCT FROM l.key_pattern
            JOIN pattern_writes AS w ON w.key_pattern IS NOT DISTINCT FROM l.key_pattern
            WHERE l.hit AND l.start_ns >= w.ts_ns
              AND l.start_ns < w.ts_ns + p.ttl_s * 1e9
            GROUP BY l.key_pattern
        ),
        write_counts AS (
            SELECT key_pattern,
                   count(*) FILTER (seen_in = 'traced') AS writes_traced,
                   count(*) FILTER (seen_in = 'logged') AS writes_logged
            FROM pattern_writes GROUP BY key_pattern
        )
        SELECT p.key_pattern AS key_pattern, p.source_tables AS source_tables,
               p.ttl_s AS ttl_s, p.hits AS hits,
               coalesce(c.writes_traced, 0) AS writes_traced,
               coalesce(c.writes_logged, 0) AS writes_logged,
               t.observed_min,
               greatest(coalesce(c.writes_traced, 0), coalesce(c.writes_logged, 0))
                   / nullif(t.observed_min, 0) AS writes_per_min,
               CASE WHEN p.ttl_s IS NULL THEN NULL
                    ELSE coalesce(h.hits_after_write, 0) END AS hits_after_write,
               CASE WHEN p.ttl_s IS NULL THEN NULL
                    ELSE coalesce(h.hits_after_write, 0) / nullif(p.hits, 0) END
                   AS stale_hit_share
        FROM per_pattern AS p
        CROSS JOIN span_of_time AS t
        LEFT JOIN write_counts AS c ON c.key_pattern IS NOT DISTINCT FROM p.key_pattern
        LEFT JOIN stale_hits AS h ON h.key_pattern IS NOT DISTINCT FROM p.key_pattern
        ORDER BY p.hits DESC, p.key_pattern
        """,
        params={"ttl_s": ttl_s},
    ).pl()


def key_patterns(keys: Sequence[str | None]) -> list[str | None]:
    """The key pattern of each key, by the rules :func:`lookups` applies.

    >>> cache.key_patterns(["user:42:profile", "s:3f2a9c1e-0b7d-4c55-9a11-2b6f0c8d9e10"])
    ['user:{id}:profile', 's:{uuid}']
    """
    table = pa.table({"key": pa.array(list(keys), pa.string())})
    con = duckdb.connect()
    con.register("_keys", table)
    rows = con.sql(f"SELECT {_pattern('key')} AS p FROM _keys").fetchall()
    con.close()
    return [r[0] for r in rows]
