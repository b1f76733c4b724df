"""What would storing resource attributes once per resource buy? A what-if for a DESIGN choice.

Run from the repository root:

    .venv/bin/python benchmarks/resource_storage.py --runs 8

Every span of a resource carries the same resource attributes (service name, version, host,
SDK: five in the benchmark's spans), and ``spans.resource_attributes`` stores a copy on each
span. This script measures what that copy costs, to decide whether ``spans`` should become a
view joining a ``resources`` table (one row per distinct resource) to span rows that keep an
id. It changes nothing in latkit; it models both sides:

  load   ``latkit.open().load()`` of ingest_otlp.py's 1M-span protobuf file, each run in a
         fresh process, alternating three shapes: ``copied``, as latkit stores spans now (a
         list of key/value structs on each span); ``json_object``, the same attributes as
         one JSON object per span (``{"service.name": "shop", ...}``, rendered once per
         resource; a column of type JSON, read with ``resource_attributes->>'host.name'``),
         which the canonical table could hold as it is; and ``not_stored``, neither copied
         nor stored (NULL): what a resources table would leave per span, less its id. Its
         own rows, a handful per batch, are not modelled.
  query  the analyses of benchmarks/analysis.py on its generated spans, on the ``spans``
         table and on a view over ``span_rows`` joined to ``resources``: what every query
         would pay for the join (DuckDB does not drop a LEFT JOIN whose columns go unused).
         The view exposes ``rowid`` as a column, which the analyses join on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import analysis  # noqa: E402 - benchmarks/analysis.py: the generated spans and analyses
import ingest_otlp  # noqa: E402 - benchmarks/ingest_otlp.py: the 1M-span input

SHAPES = ("copied", "json_object", "not_stored")


def load_once(shape: str, pb: Path) -> dict[str, float]:
    """One load in this process: wall and CPU seconds, peak RSS (MiB)."""
    import numpy as np
    import pyarrow as pa

    import latkit
    from latkit import schema
    from latkit.ingest import otlp_proto

    if shape == "json_object":
        at = schema.SPAN_STAGING.get_field_index("resource_attributes")
        otlp_proto.SPAN_STAGING = schema.SPAN_STAGING.set(  # type: ignore[misc]
            at, pa.field("resource_attributes", pa.string())
        )
        schema.TABLES["spans"] = schema.TABLES["spans"].replace(
            f"resource_attributes {schema._KV}", "resource_attributes JSON"
        )

        def as_json(kvs: pa.ListArray, index: np.ndarray) -> pa.Array:
            objects = [
                "{"
                + ",".join(f"{json.dumps(kv['key'])}:{json.dumps(kv['value'])}" for kv in row)
                + "}"
                for row in kvs.to_pylist()
            ]
            return pa.array(objects, pa.string()).take(pa.array(index))

        otlp_proto._repeat_key_values = as_json  # type: ignore[assignment]
    elif shape == "not_stored":

        def no_copy(kvs: pa.ListArray, index: np.ndarray) -> pa.Array:
            return pa.nulls(len(index), schema.KEY_VALUES)

        otlp_proto._repeat_key_values = no_copy  # type: ignore[assignment]
    wb = latkit.open()
    wb.load(ingest_otlp.WARM_UP)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    wb.load(pb)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"seconds": seconds, "cpu": cpu, "rss_mib": after.ru_maxrss / 1024}


def compare_loads(runs: int, pb: Path) -> None:
    results: dict[str, list[dict[str, float]]] = {shape: [] for shape in SHAPES}
    for _ in range(runs):
        for shape in SHAPES:  # alternating, so that the machine's drift hits both alike
            out = subprocess.run(
                [sys.executable, __file__, "--child", shape],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            )
            results[shape].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for shape, rows in results.items():
        each = ", ".join(f"{r['seconds']:.2f}" for r in sorted(rows, key=lambda r: r["seconds"]))
        print(
            f"load {shape:<11} median {statistics.median(r['seconds'] for r in rows):.2f} s, "
            f"CPU {statistics.median(r['cpu'] for r in rows):.2f} s, "
            f"peak RSS {statistics.median(r['rss_mib'] for r in rows):,.0f} MiB (runs: {each})",
            flush=True,
        )


def compare_queries(spans: int) -> None:
    import latkit
    from latkit.analysis import budget, nplusone

    wb = latkit.open()
    wb.con.execute(analysis.GENERATE, {"traces": spans // analysis.SPANS_PER_TRACE})
    wb.con.execute(
        "UPDATE spans SET resource_attributes = [{'key': 'service.name', 'value': service},"
        " {'key': 'host.name', 'value': service || '-1'}]"
    )
    queries = {
        "budget.by_route": lambda: budget.by_route(wb),
        "budget.breakdown": lambda: budget.breakdown(wb),
        "nplusone.detect": lambda: nplusone.detect(wb),
        "count server spans": lambda: wb.sql("SELECT count(*) FROM spans WHERE kind = 'server'"),
    }

    def medians() -> dict[str, float]:
        out = {}
        for name, query in queries.items():
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                query()
                seconds.append(time.perf_counter() - started)
            out[name] = statistics.median(seconds)
        return out

    on_table = medians()
    columns = [
        name
        for (name,) in wb.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'spans' "
            "ORDER BY column_index"
        ).fetchall()
    ]
    kept = ", ".join(f"s.{c}" for c in columns if c != "resource_attributes")
    wb.con.execute(
        "CREATE TABLE resources AS SELECT row_number() OVER () AS resource_id, "
        "resource_attributes AS attributes FROM (SELECT DISTINCT resource_attributes FROM spans)"
    )
    wb.con.execute(
        f"CREATE TABLE span_rows AS SELECT {kept}, r.resource_id FROM spans AS s "
        "JOIN resources AS r ON r.attributes = s.resource_attributes ORDER BY s.rowid"
    )
    wb.con.execute("DROP TABLE spans")
    view_columns = ", ".join(
        "r.attributes AS resource_attributes" if c == "resource_attributes" else f"s.{c}"
        for c in columns
    )
    wb.con.execute(
        f"CREATE VIEW spans AS SELECT s.rowid AS rowid, {view_columns} "
        "FROM span_rows AS s LEFT JOIN resources AS r USING (resource_id)"
    )
    on_view = medians()
    print(f"queries on {spans:,} spans, median of 5:")
    for name in queries:
        table, view = on_table[name], on_view[name]
        print(f"  {name:<20} table {table:.3f} s, view {view:.3f} s ({view / table - 1:+.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="loads of each shape")
    parser.add_argument("--query-spans", type=int, default=1_000_000)
    parser.add_argument("--child", choices=SHAPES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pb, _ = ingest_otlp.inputs(1_000_000)
    if args.child:
        print(json.dumps(load_once(args.child, pb)))
        return
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    compare_loads(args.runs, pb)
    compare_queries(args.query_spans)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
