"""How fast do OTLP traces load? Protobuf (Collector framing) and OTLP/JSON lines, 1M spans.

Run from the repository root:

    .venv/bin/python benchmarks/ingest_otlp.py            # 1,000,000 spans, 3 runs each
    .venv/bin/python benchmarks/ingest_otlp.py --spans 200000 --runs 1

The first run generates the inputs with the opentelemetry-proto classes (20,000 traces of 50
spans over 5 services, ~6 attributes per span including an 80-character SQL statement;
10,000 spans per message) and caches them under benchmarks/data/ (git-ignored). Each
measurement then runs in a fresh process, so that its peak RSS is its own, after a warm-up
read of a small fixture (numba's cached machine code loaded, DuckDB started); the median of
``--runs`` is printed, in spans per second and as a ratio to protobuf's ``ParseFromString``,
with the CPU seconds (user + system, all threads) the measurement took: on a shared machine
the CPU time is the steadier figure, and the load average is printed beside each wall time.

Cases:
  parse     ExportTraceServiceRequest.FromString over every frame (bytes already in memory)
  read      latkit.ingest.otlp_proto.read(): frames decoded into Arrow batches
  insert    read() + ``INSERT INTO t SELECT * FROM batch`` into an in-memory DuckDB table
  load      latkit.open().load(<protobuf file>), in-memory workbook
  load_disk latkit.open(<tmp>.duckdb).load(<protobuf file>)
  jsonl     latkit.open().load(<OTLP JSON lines file>)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
WARM_UP = ROOT / "tests" / "fixtures" / "otlp" / "framed.pb"

SERVICES = ("frontend", "checkout", "catalog", "payments", "accounts")
SPANS_PER_TRACE = 50
TRACES_PER_MESSAGE = 200  # 10,000 spans per message
CASES = ("parse", "read", "insert", "load", "load_disk", "jsonl")


# --------------------------------------------------------------------------- the inputs


def _sql(i: int) -> str:
    return f"SELECT id, total, status, created_at FROM orders WHERE customer_id = %s LIMIT {i:3d}"


def make_request(rng: random.Random, t0: int) -> object:
    """One ExportTraceServiceRequest of TRACES_PER_MESSAGE traces."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key: str, value: str | bool | int | float) -> KeyValue:
        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    request = ExportTraceServiceRequest()
    scopes = {}
    for s in SERVICES:
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(
            [
                kv("service.name", s),
                kv("service.version", "1.2.3"),
                kv("deployment.environment", "prod"),
                kv("host.name", f"{s}-7d9f-1"),
                kv("telemetry.sdk.language", "python"),
            ]
        )
        for scope in ("flask", "psycopg", "redis", "requests", "app"):
            ss = rs.scope_spans.add()
            ss.scope.name = f"opentelemetry.instrumentation.{scope}"
            ss.scope.version = "0.66b0"
            scopes[s, scope] = ss
    for t in range(TRACES_PER_MESSAGE):
        trace_id = rng.randbytes(16)
        service = SERVICES[t % len(SERVICES)]
        start = t0 + t * 1_000_000_000
        root_id = rng.randbytes(8)
        root = scopes[service, "flask"].spans.add(
            trace_id=trace_id,
            span_id=root_id,
            name="GET /orders/{id}",
            kind=2,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 80_000_000,
        )
        root.attributes.extend(
            [
                kv("http.method", "GET"),
                kv("http.route", "/orders/{id}"),
                kv("http.target", f"/orders/{t}"),
                kv("http.status_code", 200),
                kv("net.host.name", service),
                kv("http.user_agent", "curl/8.11.1"),
            ]
        )
        for i in range(1, SPANS_PER_TRACE):
            at = start + i * 1_500_000
            which = ("psycopg", "psycopg", "psycopg", "redis", "requests", "app")[i % 6]
            span = scopes[service, which].spans.add(
                trace_id=trace_id,
                span_id=rng.randbytes(8),
                parent_span_id=root_id,
                kind=1 if which == "app" else 3,
                start_time_unix_nano=at,
                end_time_unix_nano=at + rng.randrange(100_000, 1_400_000),
            )
            if which == "psycopg":
                span.name = "SELECT"
                attrs = [
                    kv("db.system", "postgresql"),
                    kv("db.name", "shop"),
                    kv("db.user", "shop"),
                    kv("db.statement", _sql(i)),
                    kv("net.peer.name", "db"),
                    kv("net.peer.port", 5432),
                ]
            elif which == "redis":
                span.name = "GET"
                attrs = [
                    kv("db.system", "redis"),
                    kv("db.statement", "GET ?"),
                    kv("net.peer.name", "cache"),
                    kv("net.peer.port", 6379),
                    kv("cache.hit", i % 4 != 0),
                    kv("cache.key", f"order:{t}"),
                ]
            elif which == "requests":
                span.name = "GET"
                attrs = [
                    kv("http.method", "GET"),
                    kv("http.url", f"http://stock/stock/{i}"),
                    kv("http.status_code", 200),
                    kv("server.address", "stock"),
                    kv("server.port", 8080),
                    kv("net.peer.name", "stock"),
                ]
            else:
                span.name = "render"
                attrs = [
                    kv("code.function", "render"),
                    kv("code.namespace", "shop.views"),
                    kv("render.ms", rng.random() * 10),
                    kv("render.items", i),
                    kv("render.cached", False),
                    kv("thread.name", "worker-1"),
                ]
                if i % 12 == 5:
                    span.status.code = 2
                    span.status.message = "template error"
            span.attributes.extend(attrs)
    return request


def to_otlp_json(request: object) -> str:
    """OTLP/JSON of a request: the protobuf JSON mapping with hex ids and integer enums."""
    import base64

    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(request, use_integers_for_enums=True)  # type: ignore[arg-type]
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc, separators=(",", ":"))


def inputs(n_spans: int) -> tuple[Path, Path]:
    """The framed protobuf and JSON lines files of ``n_spans`` spans (made once, cached)."""
    DATA.mkdir(parents=True, exist_ok=True)
    pb, jsonl = DATA / f"otlp_{n_spans}.pb", DATA / f"otlp_{n_spans}.jsonl"
    if pb.exists() and jsonl.exists():
        return pb, jsonl
    print(f"generating {n_spans:,} spans into {DATA} (once) ...", flush=True)
    rng = random.Random(42)
    messages = max(1, n_spans // (SPANS_PER_TRACE * TRACES_PER_MESSAGE))
    with open(f"{pb}.tmp", "wb") as fp, open(f"{jsonl}.tmp", "w") as fj:
        for m in range(messages):
            request = make_request(rng, 1_767_225_600_000_000_000 + m * 10**12)
            body = request.SerializeToString()  # type: ignore[attr-defined]
            fp.write(struct.pack(">I", len(body)) + body)
            fj.write(to_otlp_json(request) + "\n")
    Path(f"{pb}.tmp").rename(pb)
    Path(f"{jsonl}.tmp").rename(jsonl)
    return pb, jsonl


# --------------------------------------------------------------------------- one measurement


def measure(case: str, pb: Path, jsonl: Path) -> dict[str, float]:
    """Run one case in this process: seconds, spans and peak RSS (MiB)."""
    import duckdb

    import latkit
    from latkit.ingest import Rows, Source, otlp_proto
    from latkit.schema import SPAN_STAGING

    latkit.open().load(WARM_UP)  # numba code loaded, DuckDB warm: not part of the timing
    spans = 0
    global _CPU_STARTED
    _CPU_STARTED = _cpu()
    if case == "parse":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        data = pb.read_bytes()
        started = time.perf_counter()
        pos = 0
        while pos < len(data):
            (size,) = struct.unpack_from(">I", data, pos)
            request = ExportTraceServiceRequest.FromString(data[pos + 4 : pos + 4 + size])
            spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            pos += 4 + size
    elif case in ("read", "insert"):
        con = duckdb.connect()
        con.register("empty", SPAN_STAGING.empty_table())
        con.execute("CREATE TABLE t AS SELECT * FROM empty")
        started = time.perf_counter()
        for item in otlp_proto.read(Source.of(pb)):
            if isinstance(item, Rows):
                spans += item.batch.num_rows
                if case == "insert":
                    batch = item.batch  # noqa: F841 - DuckDB finds it by name
                    con.execute("INSERT INTO t SELECT * FROM batch")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wb = latkit.open(Path(tmp) / "bench.duckdb" if case == "load_disk" else None)
            started = time.perf_counter()
            report = wb.load(jsonl if case == "jsonl" else pb)
            spans = report.rows.get("spans", 0)
            seconds = time.perf_counter() - started
            wb.close()
            return _result(seconds, spans)
    return _result(time.perf_counter() - started, spans)


_CPU_STARTED = 0.0


def _cpu() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _result(seconds: float, spans: int) -> dict[str, float]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu": _cpu() - _CPU_STARTED, "spans": spans, "rss_mib": rss}


# --------------------------------------------------------------------------- the report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    pb, jsonl = inputs(args.spans)
    if args.child:
        print(json.dumps(measure(args.child, pb, jsonl)))
        return

    print(
        f"{pb.name}: {pb.stat().st_size / 2**20:,.0f} MiB, "
        f"{jsonl.name}: {jsonl.stat().st_size / 2**20:,.0f} MiB; median of {args.runs}; "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    results: dict[str, dict[str, float]] = {}
    for case in args.cases.split(","):
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, __file__, "--spans", str(args.spans), "--child", case],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(r["seconds"] for r in runs)
        results[case] = {
            "seconds": seconds,
            "cpu": statistics.median(r["cpu"] for r in runs),
            "spans": runs[0]["spans"],
            "rate": runs[0]["spans"] / seconds,
            "rss_mib": max(r["rss_mib"] for r in runs),
        }
        r = results[case]
        ratio = ""
        if "parse" in results and case != "parse":
            ratio = f"  {results['parse']['rate'] / r['rate']:.2f}x slower than parse"
        each = ", ".join(f"{x['seconds']:.2f}" for x in runs)
        print(
            f"{case:10s} {r['spans']:>10,.0f} spans  {r['seconds']:6.2f} s  cpu {r['cpu']:6.2f} s  "
            f"{r['rate']:>10,.0f} spans/s  peak RSS {r['rss_mib']:6,.0f} MiB  "
            f"(runs: {each}; load average {os.getloadavg()[0]:.2f}){ratio}",
            flush=True,
        )


if __name__ == "__main__":
    main()
