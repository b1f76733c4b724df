"""Build sample_data/variants/ from the committed real output (a transformation, never typing).

no_cache_hit: the same traces with the `cache.hit` and `cache.key` span attributes removed
(they are added by the demo's redis instrumentation hooks; the redis instrumentation alone
records neither). Read from traces/<service>.otlp.pb with the opentelemetry-proto classes,
attributes deleted, re-encoded in the same framing, plus the OTLP/JSON lines from the same
messages. What an analysis must infer hit/miss from.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common import _hexify_ids  # noqa: E402

DROP = {"cache.hit", "cache.key"}


def read_framed(path: str):
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(data[pos : pos + n])
        pos += n
        yield msg


def no_cache_hit() -> dict:
    src = os.path.join(SAMPLE, "traces")
    dst = os.path.join(SAMPLE, "variants", "no_cache_hit", "traces")
    os.makedirs(dst, exist_ok=True)
    removed = {k: 0 for k in DROP}
    for name in sorted(os.listdir(src)):
        if not name.endswith(".otlp.pb"):
            continue
        service = name[: -len(".otlp.pb")]
        with (
            open(os.path.join(dst, name), "wb") as pb,
            open(os.path.join(dst, f"{service}.otlp.jsonl.gz"), "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as jl,
        ):
            for msg in read_framed(os.path.join(src, name)):
                for rs in msg.resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            keep = [kv for kv in span.attributes if kv.key not in DROP]
                            for kv in span.attributes:
                                if kv.key in DROP:
                                    removed[kv.key] += 1
                            if len(keep) != len(span.attributes):
                                del span.attributes[:]
                                span.attributes.extend(keep)
                data = msg.SerializeToString()
                pb.write(struct.pack(">I", len(data)) + data)
                as_dict = MessageToDict(msg, use_integers_for_enums=True)
                _hexify_ids(as_dict)
                jl.write(
                    (json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
                )
    return removed


if __name__ == "__main__":
    print("no_cache_hit: removed attributes", no_cache_hit())
