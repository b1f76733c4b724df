"""Self-check of a generation: the committed files agree with truth.json.

Reads traces/*.otlp.pb (opentelemetry-proto classes) and traces/*.otlp.jsonl.gz (json), the
variant, and the PostgreSQL stderr log, and compares their counts with the demo's own
counters in truth.json. Run by generate.py at the end; exits non-zero on a mismatch.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from make_variants import read_framed  # noqa: E402


def attr(kv):
    v = kv.value
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def main() -> int:
    truth = json.load(open(os.path.join(SAMPLE, "truth.json")))
    errors = []

    def expect(what, got, want):
        if got != want:
            errors.append(f"{what}: files say {got!r}, truth says {want!r}")

    spans_t = truth["spans"]
    for layout in ("traces", "variants/no_cache_hit/traces"):
        traces, per_service, routes, hits = set(), collections.Counter(), {}, collections.Counter()
        for service in spans_t["spans_per_service"]:
            routes[service] = collections.Counter()
            for msg in read_framed(os.path.join(SAMPLE, layout, f"{service}.otlp.pb")):
                for rs in msg.resource_spans:
                    names = [attr(kv) for kv in rs.resource.attributes if kv.key == "service.name"]
                    expect(f"{layout} service.name", names, [service])
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            per_service[service] += 1
                            traces.add(span.trace_id.hex())
                            attrs = {kv.key: attr(kv) for kv in span.attributes}
                            if span.kind == 2:
                                routes[service][attrs.get("http.route")] += 1
                            if "cache.hit" in attrs:
                                hits[attrs["cache.hit"]] += 1
            jl_spans = 0
            with gzip.open(os.path.join(SAMPLE, layout, f"{service}.otlp.jsonl.gz"), "rt") as fh:
                for line in fh:
                    for rs in json.loads(line)["resourceSpans"]:
                        for ss in rs["scopeSpans"]:
                            for span in ss["spans"]:
                                jl_spans += 1
                                if not re.fullmatch(r"[0-9a-f]{32}", span["traceId"]):
                                    errors.append(f"{layout} {service}: traceId not hex")
                                    break
            expect(
                f"{layout} {service} spans (jsonl)", jl_spans, spans_t["spans_per_service"][service]
            )
            expect(
                f"{layout} {service} server spans per route",
                dict(routes[service]),
                spans_t["server_spans_per_route"][service],
            )
        expect(f"{layout} spans per service", dict(per_service), spans_t["spans_per_service"])
        expect(f"{layout} traces", len(traces), spans_t["traces"])
        cache = truth["cache"]["key_patterns"]["product:{id}"]
        if layout == "traces":
            expect(
                "cache.hit true/false", (hits[True], hits[False]), (cache["hits"], cache["misses"])
            )
        else:
            expect("variant cache.hit attributes", sum(hits.values()), 0)

    for route, r in truth["routes"].items():
        expect(
            f"server spans {route}",
            spans_t["server_spans_per_route"]["shop"].get(route),
            r["requests"],
        )

    with gzip.open(os.path.join(SAMPLE, "postgres", "postgresql.log.gz"), "rt") as fh:
        authorized = sum(1 for line in fh if "LOG:  connection authorized:" in line)
    expect(
        "connections in the log",
        authorized,
        truth["connection_pooling"]["server_connections_expected"],
    )

    for e in errors:
        print("MISMATCH", e)
    print(
        "check:",
        "OK" if not errors else f"{len(errors)} mismatches",
        f"({spans_t['total_spans']} spans, {spans_t['traces']} traces)",
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
