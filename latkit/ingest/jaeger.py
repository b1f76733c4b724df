"""Jaeger JSON traces: the query API and UI downloads, and API v3's OTLP answers.

Reads what Jaeger's query service (``/api/traces``, ``/api/traces/<id>``) and its UI
("Download JSON") write, in every shape they come in:

- the envelope ``{"data": [trace, ...], "total", "limit", "offset", "errors"}``;
- a single trace object ``{"traceID", "spans": [...], "processes": {"p1": ...}}``;
- a bare array of spans (each with its ``process`` inline, or a ``processID``);
- any of these as JSON lines (one trace or one span per line);
- API v3 (``/api/v3/traces...``): OTLP/JSON wrapped in ``{"result": ...}``, one per line when
  streamed; handed to ``latkit.ingest.otlp_json``.

>>> from latkit.ingest import Rows, Source, jaeger
>>> items = list(jaeger.read(Source.of("tests/fixtures/zipkin_jaeger/jaeger_api_traces.json")))
>>> sum(i.batch.num_rows for i in items if isinstance(i, Rows))
24

How a Jaeger span becomes a canonical row
-----------------------------------------
These invert the OpenTelemetry -> Jaeger translation (opentelemetry-collector-contrib
``pkg/translator/jaeger``, README.md and traces_to_jaegerproto.go), which is what Jaeger's OTLP
receiver runs, and Jaeger's JSON encoding (``model/converter/json/from_domain.go``):

- ``traceID`` and ``spanID`` are hex; older Jaeger printed them without leading zeros (and a
  64-bit trace id as 16 hex): they are left-padded to 32 and 16 hex.
- ``startTime`` and ``duration`` are microseconds (``end = startTime + duration``).
- The first ``CHILD_OF`` reference in the same trace is the parent (an old ``parentSpanID``
  field too); every other reference (``FOLLOWS_FROM``, ...) is a link, with its type as the
  link attribute ``opentracing.ref_type`` (as the Collector's Jaeger receiver does).
- The span's process (``processes[processID]`` or an inline ``process``) gives the service
  (``serviceName``) and the resource attributes (``service.name`` plus its tags).
- Tags of every type become attributes rendered as text like every reader renders them:
  string as is, bool ``true``/``false``, int64 in decimal, float64 as DuckDB prints a DOUBLE,
  binary (base64 in Jaeger's JSON) as lowercase hex. ``span.kind``, ``otel.status_code``,
  ``error``, ``otel.status_description``, ``otel.scope.name``/``otel.library.name`` and
  ``w3c.tracestate`` become kind, status, status message, scope and trace state (the macros are
  shared with ``latkit.ingest.zipkin``); with no ``span.kind`` tag a span is ``internal``.
- Logs become events: the ``event`` field is the name, the other fields its attributes.

What Jaeger cannot carry: link attributes (only the reference type), the instrumentation
scope's attributes, nanoseconds in the query API's JSON (microseconds), resources beyond one
process per span.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from latkit.ingest import Reject, Rows, Source
from latkit.ingest.zipkin import CHUNK_BYTES, SpanQuery, read_json_spans

FORMAT = "jaeger_json"

# --- sniffing -------------------------------------------------------------------------------

_BOM = rb"\A(?:\xef\xbb\xbf)?\s*"
_FIRST_KEY = re.compile(_BOM + rb'\{\s*"(data|result|traceID|spans|processes|spanID)"\s*:')
_ARRAY = re.compile(_BOM + rb"\[\s*\{")
_V3 = re.compile(_BOM + rb'\{\s*"result"\s*:')


def sniff(head: bytes) -> bool:
    """Whether ``head`` looks like Jaeger JSON (or a Jaeger API v3 ``{"result": ...}`` answer).

    >>> sniff(b'{"data":[{"traceID":"5af7183fb1d4cf5f","spans":[],"processes":{}}]}')
    True
    >>> sniff(b'{"result":{"resourceSpans":[]}}')
    True
    >>> sniff(b'{"resourceSpans":[]}')  # OTLP JSON
    False
    """
    if m := _FIRST_KEY.match(head):
        key = m.group(1)
        if key == b"result":
            return b'"resourceSpans"' in head
        if key == b"data":
            return b'"traceID"' in head
        return True
    return bool(_ARRAY.match(head)) and b'"traceID"' in head and b'"spanID"' in head


# --- the SQL --------------------------------------------------------------------------------

_KV = [{"key": "VARCHAR", "type": "VARCHAR", "value": "JSON"}]
_KV_SQL = "STRUCT(key VARCHAR, type VARCHAR, value JSON)[]"
_PROCESS = {"serviceName": "VARCHAR", "tags": _KV}
_SPAN = {
    "traceID": "VARCHAR",
    "spanID": "VARCHAR",
    "parentSpanID": "VARCHAR",
    "operationName": "VARCHAR",
    "references": [{"refType": "VARCHAR", "traceID": "VARCHAR", "spanID": "VARCHAR"}],
    "startTime": "BIGINT",
    "duration": "BIGINT",
    "tags": _KV,
    "logs": [{"timestamp": "BIGINT", "fields": _KV}],
    "processID": "VARCHAR",
    "process": _PROCESS,
}
_TRACE = {
    "spans": [_SPAN],
    "processes": f"MAP(VARCHAR, STRUCT(serviceName VARCHAR, tags {_KV_SQL}))",
}

_MACROS = (
    # A tag's value as text, as the other readers render the same OpenTelemetry value.
    """
    CREATE MACRO jaeger_value(t, v) AS
        CASE lower(t)
            WHEN 'float64' THEN coalesce(try_cast(v->>'$' AS DOUBLE)::VARCHAR, v->>'$')
            WHEN 'binary' THEN coalesce(lower(hex(try(from_base64(v->>'$')))), v->>'$')
            ELSE v->>'$'
        END
    """,
    """
    CREATE MACRO jaeger_kvs(kvs) AS
        coalesce(
            list_transform(
                kvs, lambda kv: {'key': kv.key, 'value': jaeger_value(kv.type, kv.value)}
            ),
            []
        )
    """,
)

#: Every accepted document as a list of traces: the envelope's data, one trace, an array of
#: traces, an array of spans, or one span (a JSON line).
_SQL = """
    WITH docs AS (
        SELECT line_no, json_transform(
            CASE
                WHEN starts_with(ltrim(line), '[') THEN
                    CASE WHEN json_exists(line, '$[0].spans') THEN line::JSON
                         ELSE json_array(json_object('spans', line::JSON)) END
                WHEN json_exists(line, '$.data') THEN json_extract(line, '$.data')
                WHEN json_exists(line, '$.spans') THEN json_array(line::JSON)
                WHEN json_exists(line, '$.spanID')
                    THEN json_array(json_object('spans', json_array(line::JSON)))
            END,
            $traces
        ) AS traces
        FROM chunk
    ),
    spans AS (
        SELECT line_no, t.processes AS processes, unnest(t.spans) AS x
        FROM (SELECT line_no, unnest(traces) AS t FROM docs)
    ),
    tagged AS (
        SELECT
            line_no,
            x,
            hex_id(x.traceID, 32) AS trace_id,
            hex_id(x.spanID, 16) AS span_id,
            jaeger_kvs(x.tags) AS tags,
            coalesce(x.process, processes[x.processID]) AS process,
            coalesce(x.references, []) AS refs
        FROM spans
        WHERE x IS NOT NULL
    ),
    parented AS (
        SELECT
            *,
            list_position(
                list_transform(
                    refs,
                    lambda r: upper(r.refType) = 'CHILD_OF' AND hex_id(r.traceID, 32) = trace_id
                ),
                true
            ) AS parent_at
        FROM tagged
    )
    SELECT
        line_no,
        CASE
            WHEN trace_id IS NULL OR span_id IS NULL
                THEN 'a span without a valid traceID and spanID'
            WHEN x.startTime IS NULL THEN 'a span without a startTime'
        END AS problem,
        trace_id,
        span_id,
        coalesce(hex_parent_id(refs[parent_at].spanID), hex_parent_id(x.parentSpanID))
            AS parent_span_id,
        span_tag(tags, 'w3c.tracestate') AS trace_state,
        x.operationName AS name,
        span_kind(NULL, tags) AS kind,
        coalesce(process.serviceName, 'unknown_service') AS service,
        x.startTime * 1000 AS start_ns,
        (x.startTime + coalesce(x.duration, 0)) * 1000 AS end_ns,
        span_status(tags) AS status,
        span_status_message(tags) AS status_message,
        span_scope(tags) AS scope,
        span_attributes(tags) AS attributes,
        list_concat(
            list_filter([{'key': 'service.name', 'value': process.serviceName}],
                        lambda kv: kv.value IS NOT NULL),
            jaeger_kvs(process.tags)
        ) AS resource_attributes,
        coalesce(
            list_transform(
                x.logs,
                lambda l: {
                    'time_ns': l.timestamp * 1000,
                    'name': coalesce(span_tag(jaeger_kvs(l.fields), 'event'), ''),
                    'attributes':
                        list_filter(jaeger_kvs(l.fields), lambda kv: kv.key <> 'event')
                }
            ),
            []
        ) AS events,
        list_transform(
            list_filter(refs, lambda r, i: i IS DISTINCT FROM parent_at),
            lambda r: {
                'trace_id': hex_id(r.traceID, 32),
                'span_id': hex_id(r.spanID, 16),
                'trace_state': NULL::VARCHAR,
                'attributes': [{'key': 'opentracing.ref_type', 'value': lower(r.refType)}]
            }
        ) AS links
    FROM parented
    ORDER BY line_no
"""

QUERY = SpanQuery(
    format=FORMAT,
    sql=_SQL,
    recognised=(
        "starts_with(ltrim(line), '[') OR json_exists(line, '$.data')"
        " OR json_exists(line, '$.spans') OR json_exists(line, '$.spanID')"
    ),
    what="a Jaeger JSON document (no data, spans or spanID)",
    params={"traces": json.dumps([_TRACE])},
    macros=_MACROS,
)


# --- reading --------------------------------------------------------------------------------


def read(
    source: Source, *, chunk_bytes: int = CHUNK_BYTES, **options: object
) -> Iterator[Rows | Reject]:
    """Spans of a Jaeger JSON file, as ``Rows("spans", ...)`` batches in ``SPAN_STAGING`` shape.

    A line that is not JSON, a document of no Jaeger shape and a span without a valid id or a
    start time each become one ``Reject``. An API v3 answer (``{"result": <OTLP/JSON>}``) is
    read by the OTLP JSON reader, with the same rejects.

    >>> rows = [r for r in read(Source.of("trace.json")) if isinstance(r, Rows)]
    ... # doctest: +SKIP
    """
    if _V3.match(source.head(4096)):
        from latkit.ingest import otlp_json

        return otlp_json.read(_V3Answer(source.path, source.compression), chunk_bytes=chunk_bytes)
    return read_json_spans(source, QUERY, chunk_bytes)


@dataclass(frozen=True)
class _V3Answer(Source):
    """A v3 answer whose ``"result"`` key reads as ``"trace"``: the shape of Tempo v2's
    ``{"trace": <OTLP>}``, which the OTLP JSON reader knows. The rename keeps every byte
    offset (``"result"`` becomes `` "trace"``), so rejects name the true line."""

    def open(self) -> IO[bytes]:
        return io.BufferedReader(_ResultAsTrace(super().open()))


class _ResultAsTrace(io.RawIOBase):
    """A byte stream with each ``{"result":`` key written ``{ "trace":``, block by block."""

    _KEY = re.compile(rb'(\{\s{0,16})"result"(?=\s{0,16}:)')
    _KEEP = 48  # bytes held back so that a key split between two blocks is still seen

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._done and len(self._pending) <= self._KEEP:
            block = self._inner.read(max(len(buffer), 1 << 16))
            if not block:
                self._done = True
            self._pending += block
        data = self._KEY.sub(rb'\1 "trace"', self._pending)
        cut = len(data) if self._done else len(data) - self._KEEP
        n = min(len(buffer), cut)
        buffer[:n] = data[:n]
        self._pending = data[n:]
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()
