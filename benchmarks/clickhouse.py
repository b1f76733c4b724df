"""N+1 detection and the latency budget over synthetic spans: DuckDB against chdb (ClickHouse).

    PYTHONPATH=. .venv/bin/python benchmarks/clickhouse.py                 # 20M spans, both
    PYTHONPATH=. .venv/bin/python benchmarks/clickhouse.py --engine chdb --spans 1000000

Each engine runs in its own process, one after the other (``--engine both`` starts them),
so neither inherits the other's memory or caches. The spans are those of
``benchmarks/analysis.py`` (20 per request: a server span with an N+1 of 8 queries, 4 other
queries, 2 cache calls and a call to a second service with 2 queries of its own), generated
inside each engine: in DuckDB straight into the canonical ``spans`` table, in chdb into the
Collector exporter's ``otel_traces`` table, with the attributes the exporter would store
(``http.route``, ``db.system``, ``db.statement``), so that ClickHouse derives category,
route and fingerprint itself as it would for real data.

Timed: ``nplusone.detect`` (SQL only: window functions, in the engine) and
``budget.breakdown`` (span arrays out of the engine, numba kernels in this process, the
per-request totals back in and aggregated in the engine). Wall time and this process's CPU
time (user + system) are printed; the CPU time of an embedded engine (DuckDB, chdb) is in
this process, so the two are comparable on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SPANS_PER_TRACE = 20

#: The spans of benchmarks/analysis.py, as the exporter would write them to otel_traces.
OTEL_GENERATE = """
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName,
                         SpanKind, ServiceName, SpanAttributes, Duration, StatusCode)
SELECT fromUnixTimestamp64Nano(start_ns), trace_id, span_id, parent_span_id, '', name, kind,
       service, attributes, toUInt64(end_ns - start_ns), 'STATUS_CODE_UNSET'
FROM (
    SELECT
        intDiv(number, 20) AS trace,
        number % 20 AS j,
        ['/orders/{id}', '/products/{id}', '/checkout/{id}', '/search', '/users/{id}'][
            trace % 5 + 1] AS route,
        toInt64(1700000000000000000) + toInt64(trace) * 2000000 AS t0,
        leftPad(lower(hex(trace)), 32, '0') AS trace_id,
        leftPad(lower(hex(trace * 32 + j + 1)), 16, '0') AS span_id,
        multiIf(j = 0, '',
                j IN (17, 18), leftPad(lower(hex(trace * 32 + 17)), 16, '0'),
                j = 16, leftPad(lower(hex(trace * 32 + 16)), 16, '0'),
                leftPad(lower(hex(trace * 32 + 1)), 16, '0')) AS parent_span_id,
        multiIf(j = 0, concat('GET ', route), j = 15, 'GET', j = 16, 'GET /stock',
                j IN (13, 14), 'GET', 'SELECT') AS name,
        if(j IN (0, 16), 'SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT') AS kind,
        if(j >= 16, 'inventory', 'shop') AS service,
        t0 + multiIf(j = 0, 0, j = 15, 60000000, j = 16, 62000000,
                     j IN (17, 18), 63000000 + (j - 17) * 5000000, j * 4000000) AS start_ns,
        start_ns + multiIf(j = 0, 90000000 + (trace % 97) * 1000000, j = 15, 20000000,
                           j = 16, 15000000, 3000000) AS end_ns,
        multiIf(
            j = 0, map('http.route', route),
            j = 16, map('http.route', '/stock'),
            j = 15, map('http.request.method', 'GET'),
            j IN (13, 14), map('db.system', 'redis'),
            j BETWEEN 1 AND 8,
                map('db.system', 'postgresql',
                    'db.statement', 'SELECT name FROM products WHERE id = %s'),
            j BETWEEN 9 AND 12,
                map('db.system', 'postgresql',
                    'db.statement', concat('SELECT * FROM t', toString(j), ' WHERE id = %s')),
            map('db.system', 'postgresql',
                'db.statement', 'SELECT qty FROM stock WHERE sku = %s')
        ) AS attributes
    FROM numbers({spans})
)
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), _cpu()
    result = fn()
    return time.perf_counter() - wall, _cpu() - cpu, result


def run(engine: str, spans: int) -> None:
    import latkit
    from latkit.analysis import budget, nplusone

    traces = spans // SPANS_PER_TRACE
    if engine == "duckdb":
        spec = importlib.util.spec_from_file_location(
            "analysis_benchmark", Path(__file__).with_name("analysis.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        wb: object = latkit.open()
        wall, cpu, _ = timed(
            lambda: wb.con.execute(module.GENERATE, {"traces": traces})  # type: ignore[attr-defined]
        )
    else:
        from chdb import session

        from latkit import clickhouse

        chs = session.Session()
        clickhouse.create_otel_traces(chs)
        wall, cpu, _ = timed(
            lambda: chs.query(
                OTEL_GENERATE.replace("{spans}", str(traces * SPANS_PER_TRACE)), "Null"
            )
        )
        wb = clickhouse.open_clickhouse(chs)
    n = wb.counts()["spans"]  # type: ignore[attr-defined]
    print(f"[{engine}] generated {n:,} spans in {wall:.1f} s (cpu {cpu:.1f} s)", flush=True)
    checks = {
        "nplusone.detect": lambda frame: frame.height == traces and set(frame["repeats"]) == {8},
        "budget.breakdown": lambda frame: set(frame["requests"]) == {traces // 5, traces},
    }
    calls = {
        "nplusone.detect": lambda: nplusone.detect(wb),  # type: ignore[arg-type]
        "budget.breakdown": lambda: budget.breakdown(wb),  # type: ignore[arg-type]
    }
    for name, fn in calls.items():
        wall, cpu, frame = timed(fn)
        ok = checks[name](frame)
        print(
            f"[{engine}] {name:<18} wall {wall:7.2f} s   cpu {cpu:7.2f} s   "
            f"{n / wall:>12,.0f} spans/s   answer {'as constructed' if ok else 'WRONG'}",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{engine}] peak RSS {peak:,.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000_000)
    parser.add_argument("--engine", choices=["both", "duckdb", "chdb"], default="both")
    args = parser.parse_args()
    if args.engine != "both":
        run(args.engine, args.spans)
        return
    for engine in ("duckdb", "chdb"):
        subprocess.run(
            [sys.executable, __file__, "--engine", engine, "--spans", str(args.spans)],
            check=True,
        )


if __name__ == "__main__":
    main()
