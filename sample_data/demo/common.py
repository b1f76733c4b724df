"""Pieces shared by the demo services (shop, inventory).

- OtlpFileExporter: a SpanExporter that encodes every batch with the OpenTelemetry SDK's own
  OTLP encoder (opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans) and appends
  it to
    <service>.otlp.pb     ExportTraceServiceRequest messages, each preceded by its length as a
                          4-byte big-endian unsigned integer (the Collector file exporter's
                          `format: proto` framing);
    <service>.otlp.jsonl  one ExportTraceServiceRequest per line in OTLP/JSON (protobuf JSON
                          mapping, lowerCamelCase keys, enums as integers, trace/span ids as
                          lowercase hex as the OTLP/JSON encoding requires).
  It also counts what it writes (spans, traces, server spans per route): those counters are the
  demo's own ground truth for the span counts.
- Stats: the service's own counters (requests per route and status, SQL statements per
  template, cache hits and misses, ...), dumped as JSON when the service receives SIGTERM.
- serve(): runs a Flask app on werkzeug's threaded WSGI server (HTTP/1.1, keep-alive) and
  shuts down cleanly on SIGTERM (flushes the span processor, closes pools, writes stats).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import signal
import struct
import sys
import threading
import time

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hexify_ids(request: dict) -> None:
    """OTLP/JSON: traceId/spanId/parentSpanId are hex strings, not base64 (the protobuf JSON
    mapping's default for bytes)."""
    for rs in request.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _b64_to_hex(span[key])
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = _b64_to_hex(link[key])


class OtlpFileExporter(SpanExporter):
    def __init__(self, pb_path: str, jsonl_path: str):
        self._lock = threading.Lock()
        self._pb = open(pb_path, "ab")
        self._jl = open(jsonl_path, "a", encoding="utf-8")
        self.spans = 0
        self.batches = 0
        self.trace_ids: set[str] = set()
        self.root_spans = 0
        self.by_kind: collections.Counter = collections.Counter()
        self.by_name: collections.Counter = collections.Counter()
        self.server_by_route: collections.Counter = collections.Counter()
        self.error_spans: collections.Counter = collections.Counter()

    def export(self, spans) -> SpanExportResult:
        request = encode_spans(spans)
        data = request.SerializeToString()
        as_dict = MessageToDict(request, use_integers_for_enums=True)
        _hexify_ids(as_dict)
        line = json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._pb.write(struct.pack(">I", len(data)) + data)
            self._pb.flush()
            self._jl.write(line + "\n")
            self._jl.flush()
            self.batches += 1
            for span in spans:
                self.spans += 1
                self.trace_ids.add(format(span.context.trace_id, "032x"))
                if span.parent is None:
                    self.root_spans += 1
                kind = span.kind.name.lower()
                self.by_kind[kind] += 1
                self.by_name[span.name] += 1
                if span.status.status_code.name == "ERROR":
                    self.error_spans[f"{kind} {span.name}"] += 1
                if span.kind == SpanKind.SERVER:
                    route = (span.attributes or {}).get("http.route")
                    self.server_by_route[str(route)] += 1
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._pb.close()
            self._jl.close()

    def counters(self) -> dict:
        return {
            "spans": self.spans,
            "export_batches": self.batches,
            "traces": len(self.trace_ids),
            "root_spans": self.root_spans,
            "spans_by_kind": dict(self.by_kind),
            "spans_by_name": dict(self.by_name),
            "server_spans_by_route": dict(self.server_by_route),
            "error_spans": dict(self.error_spans),
            "trace_ids": sorted(self.trace_ids),
        }


def setup_telemetry(service: str, outdir: str):
    resource = Resource.create(
        {
            "service.name": service,
            "service.version": "1.4.2",
            "service.namespace": "latkit-demo",
            "service.instance.id": f"{service}-{os.getpid()}",
            "deployment.environment": "demo",
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OtlpFileExporter(
        os.path.join(outdir, f"{service}.otlp.pb"), os.path.join(outdir, f"{service}.otlp.jsonl")
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter, max_queue_size=65536, schedule_delay_millis=1000, max_export_batch_size=512
        )
    )
    trace.set_tracer_provider(provider)
    return provider, exporter


def cache_request_hook(span, instance, args, kwargs):
    """redis-py instrumentation request hook: record the key of a GET as `cache.key` (the
    instrumentation itself records only `GET ?`)."""
    if span is not None and span.is_recording() and args and str(args[0]).upper() == "GET":
        span.set_attribute("cache.key", str(args[1]))


def cache_response_hook(span, instance, response):
    """redis-py instrumentation response hook: `cache.hit` on GET spans (Sentry's caches
    convention): a GET that returned a value is a hit, a nil reply a miss."""
    if span is not None and span.is_recording() and getattr(span, "name", "") == "GET":
        span.set_attribute("cache.hit", response is not None)


class Stats:
    """The service's own counters (its ground truth, independent of the telemetry)."""

    def __init__(self, service: str):
        self.service = service
        self.lock = threading.Lock()
        self.requests = collections.Counter()  # (route, status) -> n
        self.sql = collections.Counter()  # (database, sql as written) -> n
        self.cache = collections.defaultdict(collections.Counter)  # pattern -> hit/miss/set
        self.lists = collections.defaultdict(list)  # name -> values (ms, N per request...)
        self.counts = collections.Counter()  # free-form counters

    def request(self, route: str, status: int) -> None:
        with self.lock:
            self.requests[(route, status)] += 1

    def statement(self, database: str, sql: str) -> None:
        with self.lock:
            self.sql[(database, sql)] += 1

    def cache_event(self, pattern: str, event: str) -> None:
        with self.lock:
            self.cache[pattern][event] += 1

    def add(self, name: str, value) -> None:
        with self.lock:
            self.lists[name].append(value)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "service": self.service,
                "requests": [
                    {"route": r, "status": s, "count": n}
                    for (r, s), n in sorted(self.requests.items())
                ],
                "sql": [
                    {"database": d, "sql": q, "count": n} for (d, q), n in sorted(self.sql.items())
                ],
                "cache": {k: dict(v) for k, v in self.cache.items()},
                "lists": dict(self.lists),
                "counts": dict(self.counts),
            }


def execute(stats: Stats, database: str, cur, sql: str, params=None):
    """cursor.execute, counted per SQL text as written in the code."""
    stats.statement(database, sql)
    cur.execute(sql, params)
    return cur


def serve(app, port: int, provider, exporter, stats: Stats, outdir: str, on_shutdown=()):
    from flask import request
    from werkzeug.serving import WSGIRequestHandler, make_server

    @app.after_request
    def _count(response):
        rule = request.url_rule.rule if request.url_rule is not None else None
        stats.request(str(rule), response.status_code)
        return response

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a production server would

        def log_request(self, code="-", size="-"):
            pass

    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=Handler)

    def _terminate(signum, frame):
        for fn in on_shutdown:
            try:
                fn()
            except Exception as exc:  # keep shutting down
                print(f"shutdown hook failed: {exc!r}", file=sys.stderr)
        provider.shutdown()  # flushes the BatchSpanProcessor into the exporter
        out = stats.as_dict()
        out["exporter"] = exporter.counters()
        with open(os.path.join(outdir, f"{stats.service}.stats.json"), "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)
        sys.stderr.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, _terminate)
    print(f"{stats.service} listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


def now_ms() -> float:
    return time.perf_counter() * 1000.0
