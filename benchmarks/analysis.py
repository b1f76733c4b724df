"""Time the trace analyses on a large synthetic workbook (not a test; numbers go to the README).

    .venv/bin/python benchmarks/analysis.py            # 10,000,000 spans
    .venv/bin/python benchmarks/analysis.py --spans 1000000

The spans are generated inside DuckDB (500,000 requests of 20 spans for 10M): a server span
per request with a run of 8 repeated queries (an N+1), 4 other queries, 2 cache calls, and a
call to a second service whose server span has 2 queries of its own. Each analysis is timed
3 times on an in-memory workbook; the median is reported, with the first (cold) run apart.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import latkit
from latkit.analysis import budget, nplusone

SPANS_PER_TRACE = 20

GENERATE = """
INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, service, start_ns, end_ns,
                   duration_ms, status, category, route, db_system, db_statement, fingerprint,
                   query_template, attributes, resource_attributes, events, links, source)
WITH t AS (
    SELECT i AS trace, 1.7e18::BIGINT + i * 2000000 AS t0,
           ['/orders/{id}', '/products/{id}', '/checkout/{id}', '/search', '/users/{id}'][i % 5 + 1]
               AS route
    FROM range($traces) AS r(i)
),
s AS (
    SELECT trace, t0, route, j
    FROM t, range(20) AS r(j)
)
SELECT
    lpad(printf('%x', trace), 32, '0') AS trace_id,
    lpad(printf('%x', trace * 32 + j + 1), 16, '0') AS span_id,
    CASE WHEN j = 0 THEN NULL
         WHEN j IN (17, 18) THEN lpad(printf('%x', trace * 32 + 17), 16, '0')
         WHEN j = 16 THEN lpad(printf('%x', trace * 32 + 16), 16, '0')
         ELSE lpad(printf('%x', trace * 32 + 1), 16, '0') END AS parent_span_id,
    CASE WHEN j = 0 THEN 'GET ' || route WHEN j = 15 THEN 'GET' WHEN j = 16 THEN 'GET /stock'
         WHEN j IN (13, 14) THEN 'GET' ELSE 'SELECT' END AS name,
    CASE WHEN j IN (0, 16) THEN 'server' ELSE 'client' END AS kind,
    CASE WHEN j >= 16 THEN 'inventory' ELSE 'shop' END AS service,
    t0 + CASE WHEN j = 0 THEN 0 WHEN j = 15 THEN 60e6 WHEN j = 16 THEN 62e6
              WHEN j IN (17, 18) THEN 63e6 + (j - 17) * 5e6 ELSE j * 4e6 END AS start_ns,
    start_ns + CASE WHEN j = 0 THEN 90e6 + (trace % 97) * 1e6 WHEN j = 15 THEN 20e6
                    WHEN j = 16 THEN 15e6 ELSE 3e6 END AS end_ns,
    (end_ns - start_ns) / 1e6 AS duration_ms,
    'unset' AS status,
    CASE WHEN j IN (0, 16) THEN 'http_server' WHEN j = 15 THEN 'http_client'
         WHEN j IN (13, 14) THEN 'cache' ELSE 'db' END AS category,
    CASE WHEN j = 0 THEN route WHEN j = 16 THEN '/stock' END AS route,
    CASE WHEN j IN (13, 14) THEN 'redis' WHEN j NOT IN (0, 15, 16) THEN 'postgresql' END,
    NULL, 
    CASE WHEN j BETWEEN 1 AND 8 THEN 'f_items' WHEN j BETWEEN 9 AND 12 THEN 'f_other' || j
         WHEN j IN (17, 18) THEN 'f_stock' END AS fingerprint,
    CASE WHEN j BETWEEN 1 AND 8 THEN 'SELECT name FROM products WHERE id = ?'
         WHEN j BETWEEN 9 AND 12 THEN 'SELECT * FROM t' || j || ' WHERE id = ?'
         WHEN j IN (17, 18) THEN 'SELECT qty FROM stock WHERE sku = ?' END,
    [], [], [], [], 'synthetic'
FROM s
"""


def timed(fn: Callable[[], object], runs: int = 3) -> tuple[float, float, float]:
    """First run and median of ``runs`` wall seconds, and the median CPU seconds (all threads:
    steadier than wall time when the machine is busy)."""
    times, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return times[0], statistics.median(times), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    args = parser.parse_args()
    wb = latkit.open()
    started = time.perf_counter()
    wb.con.execute(GENERATE, {"traces": args.spans // SPANS_PER_TRACE})
    n = wb.counts()["spans"]
    print(f"generated {n:,} spans in {time.perf_counter() - started:.1f} s")
    results = {
        "budget.by_route": lambda: budget.by_route(wb),
        "budget.breakdown": lambda: budget.breakdown(wb),
        "nplusone.detect": lambda: nplusone.detect(wb),
    }
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'analysis':<20} {'first run':>10} {'median of 3':>12} {'CPU':>8}   spans/s")
    for name, fn in results.items():
        first, median, cpu = timed(fn)
        print(f"{name:<20} {first:>9.2f}s {median:>11.2f}s {cpu:>7.2f}s   {n / median:,.0f}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    runs = nplusone.detect(wb)
    assert runs.height == n // SPANS_PER_TRACE and set(runs["repeats"]) == {8}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
