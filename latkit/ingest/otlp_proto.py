"""Read OpenTelemetry traces in protobuf form (OTLP/protobuf) as ``spans`` rows.

Two layouts are read, told apart by content:

* one message: an ``ExportTraceServiceRequest`` (the OTLP/HTTP body) or a ``TracesData``;
  both are ``repeated ResourceSpans resource_spans = 1``, so their bytes decode the same;
* the OpenTelemetry Collector file exporter's ``format: proto``: a sequence of such messages,
  each preceded by its length as 4 bytes, big-endian.

Use::

    from latkit.ingest import Source, otlp_proto

    for item in otlp_proto.read(Source.of("traces.pb")):
        ...  # Rows("spans", <pyarrow.RecordBatch in latkit.schema.SPAN_STAGING>) or Reject

How values are rendered (``attributes`` and friends are key/value lists of text): strings as
they are, bools ``true``/``false``, ints in decimal, doubles exactly as Python's ``repr``
(``0.5``, ``1.0``, ``1e-05``), bytes as lowercase hex, arrays and kvlists as compact JSON
(ints as numbers, bytes as hex strings). A value that is unset (or a profiles-only
``string_value_strindex``) is NULL. Ids are lowercase hex; ``parent_span_id``,
``trace_state``, ``status_message`` and ``scope`` are NULL when empty; ``service`` is the
resource's ``service.name`` or ``unknown_service``. Unknown span kinds read as
``unspecified``, unknown status codes as ``unset``. Invalid UTF-8 in a string is replaced by
U+FFFD (protobuf itself would refuse the whole message).

Why a compiled decoder: NOTES.md measured, on 1M spans, ~1.66M spans/s for protobuf's own
``ParseFromString`` but only ~90k spans/s for a per-span Python loop and ~140k for the best
column-wise pure-Python extraction: touching each attribute from Python costs ~3.4 µs per
span, so parsing is not the bottleneck, Python is. A numba-compiled wire decoder filling
numpy arrays that become Arrow columns measured 650k-900k spans/s *including* the DuckDB
insert. So this module walks the protobuf wire format itself in numba (``_kernel``
functions below), recording for every span, event, link and key/value the *offsets* of its
strings in the message buffer; Python then builds each Arrow column in bulk (one gather per
string column, ids hex-encoded in the same pass, numbers rendered by Arrow casts). No
per-span Python code runs. Only the rare array/kvlist attribute values (and doubles in
scientific notation) are rendered per value in Python.

Dependencies: numba (imported on first ``read``, not on ``import latkit``; compiled once per
machine and cached next to this file, ``cache=True``), numpy and pyarrow; the
opentelemetry-proto classes only to render array/kvlist values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from latkit.ingest import BATCH_ROWS, LoadError, Reject, Rows, Source, excerpt
from latkit.schema import KEY_VALUES, SPAN_EVENT, SPAN_KINDS, SPAN_LINK, SPAN_STAGING, SPAN_STATUSES

FORMAT = "otlp_proto"

#: Largest single message (or frame) read; anything claiming more is refused, not allocated.
MAX_MESSAGE_BYTES = 1 << 30
#: The buffer framed messages are read into: a batch never holds more message bytes.
CHUNK_BYTES = 48 << 20
#: Framed messages are decoded as they are read, this many bytes at a time.
DECODE_BYTES = 2 << 20
#: Spans a batch holds (whole messages: it may hold more, and the last one fewer): see
#: ``latkit.ingest.BATCH_ROWS``.
BATCH_SPANS = BATCH_ROWS

# --------------------------------------------------------------------------- the wire decoder
#
# The decoder fills row-major int64 tables, one row per span, event, link, resource, scope or
# key/value pair. Strings and ids are not copied: a row holds (offset, length) of the bytes
# in the message buffer. Tables live in one tuple, indexed by these numbers; when one is full
# the message being decoded is rolled back, the table doubled and the message decoded again.

SPANS, EVENTS, LINKS, RESOURCES, SCOPES = 0, 1, 2, 3, 4
SPAN_ATTRS, EVENT_ATTRS, LINK_ATTRS, RESOURCE_ATTRS = 5, 6, 7, 8

# Columns. A name ending in a string field's name is its offset; the next column its length.
S_TRACE, S_SPAN, S_PARENT, S_STATE, S_NAME = 0, 2, 4, 6, 8
S_KIND, S_START, S_END, S_CODE, S_MESSAGE, S_RESOURCE, S_SCOPE = 10, 11, 12, 13, 14, 16, 17
E_SPAN, E_TIME, E_NAME = 0, 1, 2
L_SPAN, L_TRACE, L_SPANID, L_STATE = 0, 1, 3, 5
C_NAME = 0
K_OWNER, K_KEY, K_TYPE, K_VALUE, K_NUM = 0, 1, 3, 4, 6
WIDTHS = (18, 4, 7, 0, 2, 7, 7, 7, 7)
#: Typical message bytes per row of each table (real SDK output, and the benchmark's).
BYTES_PER_ROW = (200, 2000, 4000, 20000, 4000, 30, 1000, 2000, 20000)

# AnyValue kinds (K_TYPE). K_VALUE points at the string/bytes/array/kvlist bytes; K_NUM holds
# a bool or int, or a double's bits.
V_NONE, V_STRING, V_BOOL, V_INT, V_DOUBLE, V_ARRAY, V_KVLIST, V_BYTES = range(8)

# Why a message failed (err[0]); err[1] is the buffer offset, err[2] the full table.
E_TRUNCATED, E_VARINT, E_WIRE_TYPE, E_FIELD_ZERO, E_GROUP, E_FULL = 1, 2, 3, 4, 5, 6
REASONS = {
    E_TRUNCATED: "truncated or corrupt protobuf: a length runs past the end of its message",
    E_VARINT: "corrupt protobuf: a varint longer than 10 bytes",
    E_WIRE_TYPE: "corrupt protobuf: invalid wire type",
    E_FIELD_ZERO: "corrupt protobuf: field number 0",
    E_GROUP: "corrupt protobuf: unbalanced group",
}

_F = TypeVar("_F", bound=Callable[..., Any])
_KERNELS: list[Callable[..., Any]] = []
#: Helpers inlined into their callers: a call with array arguments costs atomic reference
#: counting (perf showed it taking most of the decode time), inlining lets numba prune some
#: of it. Inlining ``_span``, ``_key_value``, ``_status`` and ``_copy`` too (and indexing rows
#: instead of slicing row views) took the decode of the benchmark's 1M spans from 1.35-1.69
#: to 1.13-1.25 CPU-s (interleaved runs, load average ~5). The reference counting that
#: inlining left is gone too now: see ``_ALLOCATING``.
_INLINE = {
    "_fail",
    "_varint",
    "_fixed64",
    "_tag",
    "_bytes",
    "_fixed",
    "_new_row",
    "_skip_value",
    "_any_value",
    "_copy",
    "_decimal_size",
    "_key_value",
    "_span",
    "_status",
}
#: The only kernels that allocate. Every other one is compiled without numba's reference
#: counting (``_nrt=False``, an option numba keeps for code that never allocates): each array
#: handed to a helper, or taken from the ``tabs`` tuple, otherwise costs atomic increments
#: and decrements, per field decoded. Without them the decode of the benchmark's 1M spans
#: took 0.56 s instead of 1.15 s (idle machine, same run).
_ALLOCATING = {"_decode", "_doubled"}
_compiled = False


def _kernel(fn: _F) -> _F:
    """Mark ``fn`` for numba. ``_compile`` swaps it for ``numba.njit(cache=True)(fn)``."""
    _KERNELS.append(fn)
    return fn


def _compile() -> None:
    """Import numba and put compiled kernels in place of the Python functions (first call
    only; numba compiles each on first use and caches the machine code on disk)."""
    global _compiled
    if not _compiled:
        import numba

        for fn in _KERNELS:
            options: dict[str, Any] = {"cache": True, "nogil": True}
            if fn.__name__ in _INLINE:
                options["inline"] = "always"
            if fn.__name__ not in _ALLOCATING:
                options["_nrt"] = False
            globals()[fn.__name__] = numba.njit(**options)(fn)
        _compiled = True


@_kernel
def _fail(err: np.ndarray, code: int, pos: int, table: int) -> int:
    err[0], err[1], err[2] = code, pos, table
    return -1


@_kernel
def _varint(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``pos``: (value, next position); position -1 if cut, -2 if
    longer than 10 bytes. Values wrap to int64, as protobuf's int64 does."""
    value = 0
    shift = 0
    while shift < 64:
        if pos >= end:
            return 0, -1
        b = int(buf[pos])
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    return 0, -2


@_kernel
def _fixed64(buf: np.ndarray, pos: int) -> int:
    value = 0
    for i in range(8):
        value |= int(buf[pos + i]) << (8 * i)
    return value


@_kernel
def _tag(buf: np.ndarray, pos: int, end: int, err: np.ndarray) -> tuple[int, int, int]:
    """A field's key: (field number, wire type, next position); position -1 on error."""
    key, nxt = _varint(buf, pos, end)
    if nxt < 0:
        return 0, 0, _fail(err, E_TRUNCATED if nxt == -1 else E_VARINT, pos, 0)
    field = key >> 3
    if field == 0:
        return 0, 0, _fail(err, E_FIELD_ZERO, pos, 0)
    return field, key & 7, nxt


@_kernel
def _bytes(buf: np.ndarray, pos: int, end: int, err: np.ndarray) -> tuple[int, int]:
    """A length-delimited value: (its start, its end = the next position); -1s on error."""
    n, start = _varint(buf, pos, end)
    if start < 0:
        _fail(err, E_TRUNCATED if start == -1 else E_VARINT, pos, 0)
        return -1, -1
    if n < 0 or n > end - start:
        _fail(err, E_TRUNCATED, pos, 0)
        return -1, -1
    return start, start + n


@_kernel
def _fixed(buf: np.ndarray, pos: int, end: int, size: int, err: np.ndarray) -> int:
    """The position after a fixed-size value, -1 if it runs past ``end``."""
    if end - pos < size:
        return _fail(err, E_TRUNCATED, pos, 0)
    return pos + size


@_kernel
def _skip_value(buf: np.ndarray, pos: int, end: int, wire: int, err: np.ndarray) -> int:
    """Skip a varint, fixed or length-delimited value; -1 for any other wire type."""
    if wire == 0:
        _, nxt = _varint(buf, pos, end)
        if nxt < 0:
            return _fail(err, E_TRUNCATED if nxt == -1 else E_VARINT, pos, 0)
        return nxt
    if wire == 1:
        return _fixed(buf, pos, end, 8, err)
    if wire == 5:
        return _fixed(buf, pos, end, 4, err)
    if wire == 2:
        return _bytes(buf, pos, end, err)[1]
    return _fail(err, E_WIRE_TYPE, pos, 0)


@_kernel
def _skip(buf: np.ndarray, pos: int, end: int, field: int, wire: int, err: np.ndarray) -> int:
    """Skip a field we do not read (unknown fields included, groups too)."""
    if wire != 3:
        if wire == 4:
            return _fail(err, E_GROUP, pos, 0)
        return _skip_value(buf, pos, end, wire, err)
    depth = 1
    while depth > 0:
        inner, w, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if w == 3:
            depth += 1
        elif w == 4:
            depth -= 1
            if depth == 0 and inner != field:
                return _fail(err, E_GROUP, pos, 0)
        else:
            pos = _skip_value(buf, pos, end, w, err)
            if pos < 0:
                return -1
    return pos


@_kernel
def _new_row(table: np.ndarray, counts: np.ndarray, t: int, err: np.ndarray, pos: int) -> int:
    """Append a zeroed row to ``table`` (table number ``t``): its index, or -1 (E_FULL)."""
    i = counts[t]
    if i >= table.shape[0]:
        return _fail(err, E_FULL, pos, t)
    counts[t] = i + 1
    for c in range(table.shape[1]):
        table[i, c] = 0
    return i


@_kernel
def _any_value(buf: np.ndarray, pos: int, end: int, kv: np.ndarray, i: int, err: np.ndarray) -> int:
    """AnyValue (into row ``i`` of ``kv``): a oneof, so the last of its fields wins.
    Rows are indexed, never sliced: a row view costs two atomic reference counts."""
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        kind = V_NONE
        if wire == 2 and (field == 1 or field == 5 or field == 6 or field == 7):
            start, pos = _bytes(buf, pos, end, err)
            kind = (
                V_STRING
                if field == 1
                else V_ARRAY
                if field == 5
                else V_KVLIST
                if field == 6
                else V_BYTES
            )
            kv[i, K_VALUE], kv[i, K_VALUE + 1] = start, pos - start
        elif wire == 0 and (field == 2 or field == 3 or field == 8):
            num, nxt = _varint(buf, pos, end)
            if nxt < 0:
                return _fail(err, E_TRUNCATED if nxt == -1 else E_VARINT, pos, 0)
            pos = nxt
            # field 8 (string_value_strindex) belongs to profiles: no text here, so NULL
            kind = V_BOOL if field == 2 else V_INT if field == 3 else V_NONE
            kv[i, K_NUM] = num
        elif wire == 1 and field == 4:
            nxt = _fixed(buf, pos, end, 8, err)
            if nxt >= 0:
                kv[i, K_NUM] = _fixed64(buf, pos)
            kind, pos = V_DOUBLE, nxt
        else:
            pos = _skip(buf, pos, end, field, wire, err)
            kind = kv[i, K_TYPE]
        if pos < 0:
            return -1
        kv[i, K_TYPE] = kind
    return pos


@_kernel
def _key_value(
    buf: np.ndarray,
    pos: int,
    end: int,
    kv: np.ndarray,
    counts: np.ndarray,
    t: int,
    err: np.ndarray,
    owner: int,
) -> int:
    """One KeyValue of span, event, link or resource attributes, into ``kv`` (table ``t``).
    Only that table is passed: each array argument costs reference counting per call."""
    i = _new_row(kv, counts, t, err, pos)
    if i < 0:
        return -1
    kv[i, K_OWNER] = owner
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and field == 1:
            start, pos = _bytes(buf, pos, end, err)
            kv[i, K_KEY], kv[i, K_KEY + 1] = start, pos - start
        elif wire == 2 and field == 2:
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0:
                kv[i, K_TYPE] = V_NONE  # a repeated message field merges; emptied value reads NULL
                pos = _any_value(buf, start, pos, kv, i, err)
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _event(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
    span: int,
) -> int:
    """Span.Event: time 1 (fixed64), name 2, attributes 3."""
    i = _new_row(tabs[EVENTS], counts, EVENTS, err, pos)
    if i < 0:
        return -1
    row = tabs[EVENTS][i]
    row[E_SPAN] = span
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 1 and field == 1:
            nxt = _fixed(buf, pos, end, 8, err)
            if nxt >= 0:
                row[E_TIME] = _fixed64(buf, pos)
            pos = nxt
        elif wire == 2 and (field == 2 or field == 3):
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0 and field == 2:
                row[E_NAME], row[E_NAME + 1] = start, pos - start
            elif pos >= 0:
                pos = _key_value(buf, start, pos, tabs[EVENT_ATTRS], counts, EVENT_ATTRS, err, i)
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _link(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
    span: int,
) -> int:
    """Span.Link: trace_id 1, span_id 2, trace_state 3, attributes 4."""
    i = _new_row(tabs[LINKS], counts, LINKS, err, pos)
    if i < 0:
        return -1
    row = tabs[LINKS][i]
    row[L_SPAN] = span
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and 1 <= field <= 4:
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0 and field == 4:
                pos = _key_value(buf, start, pos, tabs[LINK_ATTRS], counts, LINK_ATTRS, err, i)
            elif pos >= 0:
                col = L_TRACE if field == 1 else L_SPANID if field == 2 else L_STATE
                row[col], row[col + 1] = start, pos - start
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _status(buf: np.ndarray, pos: int, end: int, spans: np.ndarray, i: int, err: np.ndarray) -> int:
    """Status (of span row ``i``): message 2, code 3."""
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and field == 2:
            start, pos = _bytes(buf, pos, end, err)
            spans[i, S_MESSAGE], spans[i, S_MESSAGE + 1] = start, pos - start
        elif wire == 0 and field == 3:
            code, nxt = _varint(buf, pos, end)
            if nxt < 0:
                return _fail(err, E_TRUNCATED if nxt == -1 else E_VARINT, pos, 0)
            spans[i, S_CODE], pos = code, nxt
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _span(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
    resource: int,
    scope: int,
) -> int:
    """Span: ids 1 2 4, trace_state 3, name 5, kind 6, times 7 8, attributes 9, events 11,
    links 13, status 15. Dropped counts (10 12 14) and flags (16) are skipped."""
    spans = tabs[SPANS]
    i = _new_row(spans, counts, SPANS, err, pos)
    if i < 0:
        return -1
    spans[i, S_RESOURCE], spans[i, S_SCOPE] = resource, scope
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2:
            start, pos = _bytes(buf, pos, end, err)
            if pos < 0:
                return -1
            if 1 <= field <= 5:
                col = (
                    S_TRACE
                    if field == 1
                    else S_SPAN
                    if field == 2
                    else S_STATE
                    if field == 3
                    else S_PARENT
                    if field == 4
                    else S_NAME
                )
                spans[i, col], spans[i, col + 1] = start, pos - start
            elif field == 9:
                pos = _key_value(buf, start, pos, tabs[SPAN_ATTRS], counts, SPAN_ATTRS, err, i)
            elif field == 11:
                pos = _event(buf, start, pos, tabs, counts, err, i)
            elif field == 13:
                pos = _link(buf, start, pos, tabs, counts, err, i)
            elif field == 15:
                pos = _status(buf, start, pos, spans, i, err)
        elif wire == 0 and field == 6:
            kind, nxt = _varint(buf, pos, end)
            if nxt < 0:
                return _fail(err, E_TRUNCATED if nxt == -1 else E_VARINT, pos, 0)
            spans[i, S_KIND], pos = kind, nxt
        elif wire == 1 and (field == 7 or field == 8):
            nxt = _fixed(buf, pos, end, 8, err)
            if nxt >= 0:
                spans[i, S_START if field == 7 else S_END] = _fixed64(buf, pos)
            pos = nxt
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _scope(buf: np.ndarray, pos: int, end: int, row: np.ndarray, err: np.ndarray) -> int:
    """InstrumentationScope: of its fields we keep the name (1)."""
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and field == 1:
            start, pos = _bytes(buf, pos, end, err)
            row[C_NAME], row[C_NAME + 1] = start, pos - start
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _scope_spans(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
    resource: int,
) -> int:
    """ScopeSpans: scope 1, spans 2."""
    s = _new_row(tabs[SCOPES], counts, SCOPES, err, pos)
    if s < 0:
        return -1
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and (field == 1 or field == 2):
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0 and field == 1:
                pos = _scope(buf, start, pos, tabs[SCOPES][s], err)
            elif pos >= 0:
                pos = _span(buf, start, pos, tabs, counts, err, resource, s)
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _resource(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
    r: int,
) -> int:
    """Resource: attributes 1."""
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and field == 1:
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0:
                pos = _key_value(
                    buf, start, pos, tabs[RESOURCE_ATTRS], counts, RESOURCE_ATTRS, err, r
                )
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _resource_spans(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
) -> int:
    """ResourceSpans: resource 1, scope_spans 2."""
    r = _new_row(tabs[RESOURCES], counts, RESOURCES, err, pos)
    if r < 0:
        return -1
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and (field == 1 or field == 2):
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0 and field == 1:
                pos = _resource(buf, start, pos, tabs, counts, err, r)
            elif pos >= 0:
                pos = _scope_spans(buf, start, pos, tabs, counts, err, r)
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _traces_data(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
) -> int:
    """TracesData / ExportTraceServiceRequest: resource_spans 1."""
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, err)
        if pos < 0:
            return -1
        if wire == 2 and field == 1:
            start, pos = _bytes(buf, pos, end, err)
            if pos >= 0:
                pos = _resource_spans(buf, start, pos, tabs, counts, err)
        else:
            pos = _skip(buf, pos, end, field, wire, err)
        if pos < 0:
            return -1
    return pos


@_kernel
def _doubled(a: np.ndarray) -> np.ndarray:
    b = np.empty((2 * a.shape[0] + 64, a.shape[1]), np.int64)
    b[: a.shape[0]] = a
    return b


@_kernel
def _decode(
    buf: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    failures: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Decode the messages ``buf[starts[m]:stops[m]]`` into the tables, appending after
    ``counts``. A message that fails adds no rows: ``failures[m]`` = (reason, offset).
    Returns the tables (new arrays where one had to grow)."""
    err = np.zeros(3, np.int64)
    saved = counts.copy()
    for m in range(len(starts)):
        failures[m, 0] = 0
        while True:
            saved[:] = counts
            if _traces_data(buf, starts[m], stops[m], tabs, counts, err) >= 0:
                break
            counts[:] = saved
            if err[0] != E_FULL:
                failures[m, 0], failures[m, 1] = err[0], err[1]
                break
            t = err[2]
            tabs = (
                _doubled(tabs[0]) if t == 0 else tabs[0],
                _doubled(tabs[1]) if t == 1 else tabs[1],
                _doubled(tabs[2]) if t == 2 else tabs[2],
                _doubled(tabs[3]) if t == 3 else tabs[3],
                _doubled(tabs[4]) if t == 4 else tabs[4],
                _doubled(tabs[5]) if t == 5 else tabs[5],
                _doubled(tabs[6]) if t == 6 else tabs[6],
                _doubled(tabs[7]) if t == 7 else tabs[7],
                _doubled(tabs[8]) if t == 8 else tabs[8],
            )
    return tabs


@_kernel
def _gather(
    src: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    hexed: bool,
    offsets: np.ndarray,
    data: np.ndarray,
) -> int:
    """Copy the byte ranges (``off``, ``length``) of ``src`` to ``data`` at ``offsets``,
    hex-encoding them if ``hexed`` (a negative length copies nothing). Returns the OR of
    the bytes copied as they are (>= 0x80: not all ASCII)."""
    high = 0
    for i in range(len(off)):
        high |= _copy(src, off[i], max(length[i], 0), data, offsets[i], hexed)
    return high


@_kernel
def _copy(src: np.ndarray, o: int, n: int, data: np.ndarray, p: int, hexed: bool) -> int:
    """Copy ``src[o:o+n]`` to ``data[p:]`` (as hex digits if ``hexed``); the OR of the bytes
    copied as they are."""
    high = 0
    if hexed:
        for j in range(n):
            b = src[o + j]
            hi, lo = b >> 4, b & 15
            data[p + 2 * j] = hi + (48 if hi < 10 else 87)
            data[p + 2 * j + 1] = lo + (48 if lo < 10 else 87)
    else:
        for j in range(n):
            b = src[o + j]
            data[p + j] = b
            high |= b
    return high


@_kernel
def _decimal_size(v: int) -> int:
    """How many characters ``v`` takes in decimal (sign included)."""
    if v == -9223372036854775807 - 1:
        return 20
    size = 1
    if v < 0:
        size, v = 2, -v
    while v >= 10:
        size += 1
        v //= 10
    return size


@_kernel
def _text_offsets(
    length: np.ndarray, per_byte: int, null_if_empty: bool, offsets: np.ndarray, valid: np.ndarray
) -> tuple[int, int]:
    """Arrow offsets (into ``offsets``) of strings of ``length * per_byte`` bytes, and
    ``valid``: False where the length is negative (absent) or, if ``null_if_empty``, 0.
    Returns the total (which may not fit: check it before use) and the NULL count."""
    total = nulls = 0
    for i in range(len(length)):
        offsets[i] = total
        n = length[i]
        if n < 0 or (null_if_empty and n == 0):
            valid[i] = False
            nulls += 1
        else:
            valid[i] = True
            total += n * per_byte
    offsets[len(length)] = total
    return total, nulls


@_kernel
def _value_offsets(
    kv: np.ndarray,
    side_offsets: np.ndarray,
    side_at: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
) -> int:
    """Arrow offsets (into ``offsets``) of the AnyValue rows of ``kv`` as text (see
    ``_values``), and ``valid`` (False for an unset value); their total, or -1 at the first
    double, array or kvlist when the side array that renders those is not given
    (``side_at`` empty)."""
    total = 0
    rare = len(side_at) > 0
    for i in range(len(offsets) - 1):
        offsets[i] = total
        kind = kv[i, K_TYPE]
        valid[i] = kind != V_NONE
        if kind == V_STRING:
            total += kv[i, K_VALUE + 1]
        elif kind == V_BOOL:
            total += 4 if kv[i, K_NUM] != 0 else 5
        elif kind == V_INT:
            total += _decimal_size(kv[i, K_NUM])
        elif kind == V_BYTES:
            total += 2 * kv[i, K_VALUE + 1]
        elif kind != V_NONE:
            if not rare:
                return -1
            j = side_at[i]
            total += side_offsets[j + 1] - side_offsets[j]
        if total > 2147483647:
            return total  # over Arrow's limit: ``_sized`` refuses it
    offsets[len(offsets) - 1] = total
    return total


@_kernel
def _value_text(
    buf: np.ndarray,
    kv: np.ndarray,
    side_offsets: np.ndarray,
    side_data: np.ndarray,
    side_at: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
) -> int:
    """Write each AnyValue row of ``kv`` as text at ``offsets`` in ``data`` (sizes from
    ``_value_offsets``); the OR of the bytes copied as they are."""
    high = 0
    for i in range(len(offsets) - 1):
        kind = kv[i, K_TYPE]
        p = offsets[i]
        if kind == V_STRING:
            high |= _copy(buf, kv[i, K_VALUE], kv[i, K_VALUE + 1], data, p, False)
        elif kind == V_BOOL:
            if kv[i, K_NUM] != 0:
                data[p], data[p + 1], data[p + 2], data[p + 3] = 116, 114, 117, 101  # true
            else:
                data[p], data[p + 1], data[p + 2], data[p + 3] = 102, 97, 108, 115  # fals
                data[p + 4] = 101  # e
        elif kind == V_INT:
            v = kv[i, K_NUM]
            q = offsets[i + 1] - 1
            if v == -9223372036854775807 - 1:
                v = 922337203685477580  # all but the last digit, which is 8
                data[q] = 56
                q -= 1
                data[p] = 45
            elif v < 0:
                v = -v
                data[p] = 45  # -
            while True:
                data[q] = 48 + v % 10
                v //= 10
                q -= 1
                if v == 0:
                    break
        elif kind == V_BYTES:
            _copy(buf, kv[i, K_VALUE], kv[i, K_VALUE + 1], data, p, True)
        elif kind != V_NONE:
            j = side_at[i]
            o = side_offsets[j]
            high |= _copy(side_data, o, side_offsets[j + 1] - o, data, p, False)
    return high


@_kernel
def _repeat_lists(
    index: np.ndarray,
    lists: np.ndarray,
    key_offsets: np.ndarray,
    key_data: np.ndarray,
    value_offsets: np.ndarray,
    value_data: np.ndarray,
    value_valid: np.ndarray,
    out_lists: np.ndarray,
    out_key_offsets: np.ndarray,
    out_key_data: np.ndarray,
    out_value_offsets: np.ndarray,
    out_value_data: np.ndarray,
    out_value_valid: np.ndarray,
) -> None:
    """Key/value list ``index[i]`` of (``lists``, keys, values) as list ``i`` of the outputs:
    a ``take`` of a ``KEY_VALUES`` array, written straight into sized buffers. A list's keys
    (and values) are one run of bytes, copied as one."""
    entry = key_at = value_at = 0
    out_lists[0] = out_key_offsets[0] = out_value_offsets[0] = 0
    for i in range(len(index)):
        r = index[i]
        first, last = lists[r], lists[r + 1]
        key_shift = key_at - key_offsets[first]
        value_shift = value_at - value_offsets[first]
        for j in range(first, last):
            out_key_offsets[entry + 1] = key_offsets[j + 1] + key_shift
            out_value_offsets[entry + 1] = value_offsets[j + 1] + value_shift
            out_value_valid[entry] = value_valid[j]
            entry += 1
        n = key_offsets[last] - key_offsets[first]
        _copy(key_data, key_offsets[first], n, out_key_data, key_at, False)
        key_at += n
        n = value_offsets[last] - value_offsets[first]
        _copy(value_data, value_offsets[first], n, out_value_data, value_at, False)
        value_at += n
        out_lists[i + 1] = entry


# --------------------------------------------------------------------------- Arrow columns
#
# Every column is built by compiled passes: one sizes it (offsets, NULLs), Python allocates
# the buffer, one writes into it. The kernels never allocate, so they are compiled without
# numba's reference counting (see ``_ALLOCATING``). Arrow's own ``take`` of the
# per-resource attributes onto each span, and numpy passes over the attribute table per
# value kind, were most of the column time before.

_NO_SIDE = np.zeros(0, np.uint8)
_NO_OFFSETS = np.zeros(1, np.int32)
_NO_INDEX = np.zeros(0, np.int64)
MAX_TEXT = 2**31 - 1


def _sized(total: int) -> np.ndarray:
    """A data buffer for ``total`` bytes of text (Arrow's int32 offsets limit it to 2 GiB)."""
    if total > MAX_TEXT:
        raise LoadError("more than 2 GiB of text in one batch")
    return np.empty(total, np.uint8)


def _string_array(
    offsets: np.ndarray, data: np.ndarray, high: int, valid: np.ndarray | None
) -> pa.StringArray:
    nulls, null_count = None, 0
    if valid is not None and not valid.all():
        nulls = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = len(valid) - int(valid.sum())
    arr = pa.StringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data), nulls, null_count
    )
    return arr if high < 0x80 else _valid_utf8(arr)


def _strings(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    *,
    hexed: bool = False,
    null_if_empty: bool = False,
) -> pa.StringArray:
    """A string column from byte ranges of ``buf``: NULL where the length is negative (an
    absent string) or, if ``null_if_empty``, 0. ``off`` and ``length`` may be strided
    columns of a decoder table."""
    offsets = np.empty(len(off) + 1, np.int32)
    valid = np.empty(len(off), np.bool_)
    total, nulls = _text_offsets(length, 2 if hexed else 1, null_if_empty, offsets, valid)
    data = _sized(total)
    high = _gather(buf, off, length, hexed, offsets, data)
    return _string_array(offsets, data, high, valid if nulls else None)


def _valid_utf8(arr: pa.StringArray) -> pa.StringArray:
    """``arr`` with any invalid UTF-8 replaced by U+FFFD (the rare slow path)."""
    try:
        arr.validate(full=True)
        return arr
    except pa.ArrowInvalid:
        raw = arr.cast(pa.binary()).to_pylist()
        return pa.array(
            [None if b is None else b.decode("utf-8", "replace") for b in raw], pa.string()
        )


def _col(table: np.ndarray, n: int, col: int) -> np.ndarray:
    """Column ``col`` of the first ``n`` rows, as a fresh contiguous array."""
    return np.array(table[:n, col], dtype=np.int64, copy=True)


def _offsets(owners: np.ndarray, n_owners: int) -> pa.Array:
    """List offsets for rows grouped by (ascending) owner index."""
    ends = np.cumsum(np.bincount(owners, minlength=n_owners), dtype=np.int64)
    return pa.array(np.concatenate([[0], ends]).astype(np.int32))


def _key_values(buf: np.ndarray, table: np.ndarray, n: int, n_owners: int) -> pa.ListArray:
    """One ``KEY_VALUES`` list per owner from a key/value table."""
    kv = table[:n]
    pairs = pa.StructArray.from_arrays(
        [_strings(buf, kv[:, K_KEY], kv[:, K_KEY + 1]), _values(buf, kv)],
        fields=list(KEY_VALUES.value_type),
    )
    return pa.ListArray.from_arrays(_offsets(kv[:, K_OWNER], n_owners), pairs, KEY_VALUES)


def _values(buf: np.ndarray, kv: np.ndarray) -> pa.StringArray:
    """AnyValues as text, in one compiled pass: strings copied from ``buf``, bools, ints and
    bytes rendered as they are copied; doubles and array/kvlist values (rare) are rendered
    in Python first, into a side array the pass copies from. NULL for an unset value."""
    side_offsets, side_data, side_at = _NO_OFFSETS, _NO_SIDE, _NO_INDEX
    offsets = np.empty(len(kv) + 1, np.int32)
    valid = np.empty(len(kv), np.bool_)
    total = _value_offsets(kv, side_offsets, side_at, offsets, valid)
    if total < 0:  # a double, array or kvlist: render those first
        kind = kv[:, K_TYPE]
        pieces: list[pa.Array] = []
        side_at = np.zeros(len(kv), np.int64)  # index of the value's text in the side array
        base = 0
        for k in (V_DOUBLE, V_ARRAY, V_KVLIST):
            rows = np.flatnonzero(kind == k)
            if len(rows) == 0:
                continue
            if k == V_DOUBLE:
                text = _doubles(kv[rows, K_NUM].view(np.float64))
            else:
                text = _json_values(buf, kv[rows, K_VALUE], kv[rows, K_VALUE + 1], k == V_ARRAY)
            pieces.append(text)
            side_at[rows] = base + np.arange(len(rows))
            base += len(rows)
        side = pa.concat_arrays(pieces).fill_null("")  # unreadable nested values were NULL
        side_offsets = np.frombuffer(side.buffers()[1], np.int32)[side.offset :]
        side_data = np.frombuffer(side.buffers()[2] or b"", np.uint8)
        total = _value_offsets(kv, side_offsets, side_at, offsets, valid)
    data = _sized(total)
    high = _value_text(buf, kv, side_offsets, side_data, side_at, offsets, data)
    return _string_array(offsets, data, high, None if valid.all() else valid)


def _doubles(x: np.ndarray) -> pa.StringArray:
    """Doubles as Python's ``repr`` writes them. Arrow's cast gives the same shortest digits;
    in repr's positional range (1e-4 <= |x| < 1e16) it only lacks the ``.0`` of whole numbers.
    Values outside that range (or where Arrow chose an exponent) go through ``repr``."""
    text = pc.cast(pa.array(x), pa.string())
    size = np.abs(x)
    positional = ((size >= 1e-4) & (size < 1e16)) | (x == 0)
    positional &= ~pc.match_substring(text, "e").to_numpy(zero_copy_only=False)
    whole = positional & ~pc.match_substring(text, ".").to_numpy(zero_copy_only=False)
    text = pc.if_else(pa.array(whole), pc.binary_join_element_wise(text, ".0", ""), text)
    if positional.all():
        return text
    others = pa.array([repr(v) for v in x[~positional].tolist()], pa.string())
    return pc.replace_with_mask(text, pa.array(~positional), others)


def _json_values(
    buf: np.ndarray, off: np.ndarray, length: np.ndarray, array: bool
) -> pa.StringArray:
    """ArrayValue / KeyValueList bytes as compact JSON (rare: done per value)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.common.v1.common_pb2 import ArrayValue, KeyValueList

    cls = ArrayValue if array else KeyValueList
    out: list[str | None] = []
    for o, n in zip(off.tolist(), length.tolist(), strict=True):
        try:
            value = _plain_list(cls.FromString(buf[o : o + n].tobytes()), array)
            out.append(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
        except (DecodeError, RecursionError):
            out.append(None)
    return pa.array(out, pa.string())


def _plain_list(message: Any, array: bool) -> object:
    if array:
        return [_plain(v) for v in message.values]
    return {kv.key: _plain(kv.value) for kv in message.values}


def _plain(value: Any) -> object:
    """An AnyValue as a JSON-able Python value (bytes as hex)."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return _plain_list(value.array_value, True)
    if which == "kvlist_value":
        return _plain_list(value.kvlist_value, False)
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, which)
    return None


def _repeat_key_values(kvs: pa.ListArray, index: np.ndarray) -> pa.ListArray:
    """``kvs.take(index)`` for a ``KEY_VALUES`` array built here (no offsets or slices):
    each span's copy of its resource's attributes. Arrow's ``take`` of a list of structs
    cost ~0.5 s per 1M spans of 4 resource attributes, this pass about a fifth of it."""
    lists = np.frombuffer(kvs.buffers()[1], np.int32)[: len(kvs) + 1]
    keys, values = kvs.values.field("key"), kvs.values.field("value")
    key_offsets = np.frombuffer(keys.buffers()[1], np.int32)[: len(keys) + 1]
    value_offsets = np.frombuffer(values.buffers()[1], np.int32)[: len(values) + 1]
    key_data = np.frombuffer(keys.buffers()[2] or b"", np.uint8)
    value_data = np.frombuffer(values.buffers()[2] or b"", np.uint8)
    value_valid = values.is_valid().to_numpy(zero_copy_only=False)
    per_list = np.diff(lists)[index]
    entries = int(per_list.sum())
    key_bytes = int((key_offsets[lists[1:]] - key_offsets[lists[:-1]])[index].sum())
    value_bytes = int((value_offsets[lists[1:]] - value_offsets[lists[:-1]])[index].sum())
    if max(entries, key_bytes, value_bytes) > MAX_TEXT:
        raise LoadError("more than 2 GiB of resource attributes in one batch")
    out_lists = np.empty(len(index) + 1, np.int32)
    out_key_offsets = np.empty(entries + 1, np.int32)
    out_value_offsets = np.empty(entries + 1, np.int32)
    out_key_data = np.empty(key_bytes, np.uint8)
    out_value_data = np.empty(value_bytes, np.uint8)
    out_value_valid = np.empty(entries, np.bool_)
    _repeat_lists(
        index,
        lists,
        key_offsets,
        key_data,
        value_offsets,
        value_data,
        value_valid,
        out_lists,
        out_key_offsets,
        out_key_data,
        out_value_offsets,
        out_value_data,
        out_value_valid,
    )
    pairs = pa.StructArray.from_arrays(
        [
            _string_array(out_key_offsets, out_key_data, 0, None),
            _string_array(out_value_offsets, out_value_data, 0, out_value_valid),
        ],
        fields=list(KEY_VALUES.value_type),
    )
    return pa.ListArray.from_arrays(pa.array(out_lists), pairs, KEY_VALUES)


def _columns(buf: np.ndarray, tabs: tuple[np.ndarray, ...], counts: np.ndarray) -> pa.Table:
    """The decoded tables as one Arrow table in ``SPAN_STAGING``."""
    n, n_res, n_scopes = int(counts[SPANS]), int(counts[RESOURCES]), int(counts[SCOPES])
    spans, events, links = tabs[SPANS], tabs[EVENTS], tabs[LINKS]

    def text(
        table: np.ndarray, rows: int, col: int, *, hexed: bool = False, null_if_empty: bool = False
    ) -> pa.StringArray:
        return _strings(
            buf, table[:rows, col], table[:rows, col + 1], hexed=hexed, null_if_empty=null_if_empty
        )

    # Per resource: its attributes and service; each span takes those of its resource.
    resource_attrs = _key_values(buf, tabs[RESOURCE_ATTRS], int(counts[RESOURCE_ATTRS]), n_res)
    flat = resource_attrs.flatten()
    is_service = pc.equal(flat.field("key"), "service.name").to_numpy(zero_copy_only=False)
    service_of = np.full(n_res, -1, np.int64)
    owners = tabs[RESOURCE_ATTRS][: int(counts[RESOURCE_ATTRS]), K_OWNER]
    service_of[owners[is_service]] = np.flatnonzero(is_service)
    services = flat.field("value").take(pa.array(service_of, mask=service_of < 0))
    resource = _col(spans, n, S_RESOURCE)
    scope = pa.array(_col(spans, n, S_SCOPE))

    n_events, n_links = int(counts[EVENTS]), int(counts[LINKS])
    event_structs = pa.StructArray.from_arrays(
        [
            pa.array(_col(events, n_events, E_TIME)),
            text(events, n_events, E_NAME),
            _key_values(buf, tabs[EVENT_ATTRS], int(counts[EVENT_ATTRS]), n_events),
        ],
        fields=list(SPAN_EVENT),
    )
    link_structs = pa.StructArray.from_arrays(
        [
            text(links, n_links, L_TRACE, hexed=True),
            text(links, n_links, L_SPANID, hexed=True),
            text(links, n_links, L_STATE, null_if_empty=True),
            _key_values(buf, tabs[LINK_ATTRS], int(counts[LINK_ATTRS]), n_links),
        ],
        fields=list(SPAN_LINK),
    )
    kind = _col(spans, n, S_KIND)
    code = _col(spans, n, S_CODE)
    columns = [
        text(spans, n, S_TRACE, hexed=True),
        text(spans, n, S_SPAN, hexed=True),
        text(spans, n, S_PARENT, hexed=True, null_if_empty=True),
        text(spans, n, S_STATE, null_if_empty=True),
        text(spans, n, S_NAME),
        pa.array(SPAN_KINDS).take(pa.array(np.where((kind >= 0) & (kind < 6), kind, 0))),
        services.take(pa.array(resource)).fill_null("unknown_service"),
        pa.array(_col(spans, n, S_START)),
        pa.array(_col(spans, n, S_END)),
        pa.array(SPAN_STATUSES).take(pa.array(np.where((code >= 0) & (code < 3), code, 0))),
        text(spans, n, S_MESSAGE, null_if_empty=True),
        text(tabs[SCOPES], n_scopes, C_NAME, null_if_empty=True).take(scope),
        _key_values(buf, tabs[SPAN_ATTRS], int(counts[SPAN_ATTRS]), n),
        _repeat_key_values(resource_attrs, resource),
        pa.ListArray.from_arrays(
            _offsets(events[:n_events, E_SPAN], n), event_structs, pa.list_(SPAN_EVENT)
        ),
        pa.ListArray.from_arrays(
            _offsets(links[:n_links, L_SPAN], n), link_structs, pa.list_(SPAN_LINK)
        ),
    ]
    return pa.Table.from_arrays(columns, schema=SPAN_STAGING)


# --------------------------------------------------------------------------- the file


def _grown(table: np.ndarray, rows: int, used: int) -> np.ndarray:
    """``table`` with room for ``rows`` rows, its first ``used`` kept."""
    out = np.empty((rows, table.shape[1]), np.int64)
    out[:used] = table[:used]
    return out


class _Decoder:
    """Decodes messages into its tables, run after run, until asked for the Arrow batch;
    keeps the tables between batches so that they grow only once."""

    def __init__(self, header: int, room: int = 0) -> None:
        self.header = header  # bytes before each message in the file: 4 when framed
        self.room = room  # message bytes a batch may hold, as far as is known
        self.tabs = tuple(np.empty((1024, w), np.int64) for w in WIDTHS)
        self.counts = np.zeros(len(WIDTHS), np.int64)

    @property
    def spans(self) -> int:
        """Spans decoded since the last batch."""
        return int(self.counts[SPANS])

    def run(
        self, buf: np.ndarray, starts: list[int], stops: list[int], file_offsets: list[int]
    ) -> Iterator[Reject]:
        """Decode the messages ``buf[starts[i]:stops[i]]`` (found at ``file_offsets[i]`` in
        the file), which must stay in ``buf`` until the next ``batch``; a Reject for each
        corrupt one, positioned at its frame header."""
        if not starts:
            return
        failures = np.zeros((len(starts), 2), np.int64)
        # Size the tables for typical OTLP so that growing (which decodes a message again)
        # is rare: rows expected per byte of message, by table. They are sized for what a
        # batch can hold (``room``) when first used, not run by run as the buffer fills:
        # grown to fit each run, copying their rows into fresh pages each time, they cost
        # the benchmark's 1M spans 5% of the load's CPU (2.7% grown twofold at a time).
        # Rows never written cost no memory: the kernel maps pages on first touch.
        size = max(stops[-1], self.room)  # stops[-1]: message bytes in ``buf`` so far
        self.tabs = tuple(
            t if len(t) * per >= size else _grown(t, max(size // per + 64, 2 * len(t)), int(n))
            for t, per, n in zip(self.tabs, BYTES_PER_ROW, self.counts, strict=True)
        )
        self.tabs = _decode(
            buf,
            np.array(starts, np.int64),
            np.array(stops, np.int64),
            self.tabs,
            self.counts,
            failures,
        )
        for m in np.flatnonzero(failures[:, 0]).tolist():
            at = int(failures[m, 1])
            where = file_offsets[m] + at - starts[m]
            yield Reject(
                position=f"byte {file_offsets[m] - self.header}",
                reason=f"{REASONS[int(failures[m, 0])]} (at byte {where}); message skipped",
                excerpt=excerpt(buf[at : at + 40].tobytes().hex(" ")),
            )

    def batch(self, buf: np.ndarray) -> Iterator[Rows]:
        """The spans decoded since the last batch, as one Arrow batch (none if none)."""
        if self.counts[SPANS]:
            table = _columns(buf, self.tabs, self.counts)
            yield Rows("spans", table, read=table.num_rows)
        self.counts[:] = 0


def _read_into(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; the number of bytes read (short only at the end)."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _framed(stream: IO[bytes], decoder: _Decoder, batch_spans: int) -> Iterator[Rows | Reject]:
    """Collector file-exporter framing: 4-byte big-endian length, then the message.

    Messages are read into one buffer and decoded a few MB at a time; once ``batch_spans``
    spans are decoded (or the buffer is full) they become one batch, and the buffer is
    used again from its start."""
    buf = np.empty(CHUNK_BYTES, np.uint8)
    starts: list[int] = []
    stops: list[int] = []
    offsets: list[int] = []
    decoded = 0  # messages of ``starts`` decoded so far
    used = offset = 0
    header = bytearray(4)

    def decode() -> Iterator[Reject]:
        nonlocal decoded
        yield from decoder.run(buf, starts[decoded:], stops[decoded:], offsets[decoded:])
        decoded = len(starts)

    while True:
        got = _read_into(stream, memoryview(header))
        if got == 0:
            break
        if got < 4:
            yield Reject(
                f"byte {offset}",
                f"truncated frame header: {got} of 4 bytes at the end of the file",
                excerpt(header[:got].hex(" ")),
            )
            break
        size = int.from_bytes(header, "big")
        if size > MAX_MESSAGE_BYTES:
            yield Reject(
                f"byte {offset}",
                f"frame length {size} is over the "
                f"{MAX_MESSAGE_BYTES} byte limit: not framed OTLP from here on; "
                "rest of file not read",
                excerpt(header.hex(" ")),
            )
            break
        if used and used + size > len(buf):
            yield from decode()
            yield from decoder.batch(buf)
            starts, stops, offsets, used, decoded = [], [], [], 0, 0
        if size > len(buf):
            buf = np.empty(size, np.uint8)
        got = _read_into(stream, memoryview(buf)[used : used + size])  # type: ignore[arg-type]
        if got < size:
            yield from decode()
            yield from decoder.batch(buf)
            yield Reject(
                f"byte {offset}",
                f"truncated frame: its header says {size} bytes, the file ends after {got}",
                excerpt(header.hex(" ")),
            )
            return
        starts.append(used)
        stops.append(used + size)
        offsets.append(offset + 4)
        used += size
        offset += 4 + size
        if used - starts[decoded] >= DECODE_BYTES:
            yield from decode()
            if decoder.spans >= batch_spans:
                yield from decoder.batch(buf)
                starts, stops, offsets, used, decoded = [], [], [], 0, 0
    yield from decode()
    yield from decoder.batch(buf)


def _single(stream: IO[bytes], source: Source, decoder: _Decoder) -> Iterator[Rows | Reject]:
    """One unframed message: read whole (it has no inner boundaries), up to the limit."""
    data = bytearray()
    while piece := stream.read(16 << 20):
        data += piece
        if len(data) > MAX_MESSAGE_BYTES:
            raise LoadError(
                f"{source.name}: an unframed protobuf message of more than "
                f"{MAX_MESSAGE_BYTES} bytes (byte 0 on); split it into framed "
                "messages"
            )
    buf = np.frombuffer(data, np.uint8)
    yield from decoder.run(buf, [0], [len(data)], [0])
    yield from decoder.batch(buf)


def read(source: Source, **options: object) -> Iterator[Rows | Reject]:
    """The spans of an OTLP protobuf file, one ``Rows("spans", batch)`` per batch, and one
    ``Reject`` per corrupt message. A batch holds whole messages: at least ``batch_spans``
    spans (default ``BATCH_SPANS``) except the last, fewer where the read buffer
    (``CHUNK_BYTES``) fills first; a single unframed message is one batch.

    >>> from latkit.ingest import Source
    >>> rows = [r for r in read(Source.of("tests/fixtures/otlp/framed.pb"))]
    >>> sum(r.records for r in rows)
    24
    """
    batch_spans = options.get("batch_spans", BATCH_SPANS)
    if not isinstance(batch_spans, int) or batch_spans < 1:
        raise LoadError(f"{source.name}: batch_spans must be a positive int")
    head = source.head()
    if not head:
        return  # an empty file is an empty message: no spans
    layout = _layout(head, strict=False)
    if layout is None:
        raise LoadError(
            f"{source.name}: not OTLP protobuf (neither one TracesData / "
            "ExportTraceServiceRequest nor length-framed ones)"
        )
    try:
        _compile()
        # A batch holds at most a read buffer of messages, or the whole (uncompressed) file.
        room = CHUNK_BYTES if source.compression else min(source.path.stat().st_size, CHUNK_BYTES)
        decoder = _Decoder(4 if layout == "framed" else 0, room)
        with source.open() as stream:
            if layout == "framed":
                yield from _framed(stream, decoder, batch_spans)
            else:
                yield from _single(stream, source, decoder)
    except LoadError:
        raise
    except Exception as e:  # a corrupt compressed stream, or a bug: name the file either way
        raise LoadError(f"{source.name}: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------- detection

#: The messages sniffing checks: field number -> (wire type, message or None).
_MESSAGES: dict[str, dict[int, tuple[int, str | None]]] = {
    "TracesData": {1: (2, "ResourceSpans")},
    "ResourceSpans": {1: (2, "Resource"), 2: (2, "ScopeSpans"), 3: (2, None)},
    "Resource": {1: (2, "KeyValue"), 2: (0, None), 3: (2, None)},
    "ScopeSpans": {1: (2, "Scope"), 2: (2, "Span"), 3: (2, None)},
    "Scope": {1: (2, None), 2: (2, None), 3: (2, "KeyValue"), 4: (0, None)},
    "Span": {
        1: (2, None),
        2: (2, None),
        3: (2, None),
        4: (2, None),
        5: (2, None),
        6: (0, None),
        7: (1, None),
        8: (1, None),
        9: (2, "KeyValue"),
        10: (0, None),
        11: (2, "Event"),
        12: (0, None),
        13: (2, "Link"),
        14: (0, None),
        15: (2, "Status"),
        16: (5, None),
    },
    "Event": {1: (1, None), 2: (2, None), 3: (2, "KeyValue"), 4: (0, None)},
    "Link": {
        1: (2, None),
        2: (2, None),
        3: (2, None),
        4: (2, "KeyValue"),
        5: (0, None),
        6: (5, None),
    },
    "Status": {2: (2, None), 3: (0, None)},
    "KeyValue": {1: (2, None), 2: (2, "AnyValue")},
    "AnyValue": {
        1: (2, None),
        2: (0, None),
        3: (0, None),
        4: (1, None),
        5: (2, None),
        6: (2, None),
        7: (2, None),
    },
}
_FIXED = {1: 8, 5: 4}
#: How much of the head the structure check walks (in Python: keep it short).
SNIFF_BYTES = 4096


def _plausible(data: bytes, pos: int, end: int, message: str, strict: bool = True) -> bool:
    """Whether ``data[pos:end]`` reads as ``message`` as far as ``data`` goes: fields of the
    right wire type, lengths that fit their enclosing message, and (if ``strict``) only
    fields that the message has."""
    fields = _MESSAGES[message]
    while pos < min(end, len(data)):
        key, pos = _py_varint(data, pos)
        if pos < 0:
            return pos == -1  # cut by the end of the head: fine so far
        wire, inner = fields.get(key >> 3, (-1, None))
        if wire != key & 7:
            if strict or key & 7 not in (0, 1, 2, 5):
                return not strict and key & 7 == 3  # an unknown group: give it the benefit
            wire, inner = key & 7, None
        if wire == 0:
            _, pos = _py_varint(data, pos)
            if pos < 0:
                return pos == -1
        elif wire in _FIXED:
            pos += _FIXED[wire]
        else:
            size, pos = _py_varint(data, pos)
            if pos < 0:
                return pos == -1
            if pos + size > end:
                return False
            if inner is not None and not _plausible(data, pos, pos + size, inner, strict):
                return False
            pos += size
    return pos <= end


def _py_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); position -1 if ``data`` ends first, -2 if over 10 bytes."""
    value = 0
    for i in range(10):
        if pos >= len(data):
            return 0, -1
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return value, pos
    return 0, -2


def _starts_traces(head: bytes, pos: int, end: int, strict: bool) -> bool:
    """Whether a TracesData starts at ``head[pos]``. Strictly: a first ResourceSpans
    (``0x0a``, length) opening with its resource or a scope_spans, and only known fields."""
    if not strict:
        return _plausible(head, pos, end, "TracesData", strict=False)
    if head[pos : pos + 1] != b"\x0a":
        return False
    _, body = _py_varint(head, pos + 1)
    return (
        0 < body < len(head)
        and head[body] in (0x0A, 0x12)
        and _plausible(head, pos, end, "TracesData")
    )


def _layout(head: bytes, strict: bool = True) -> str | None:
    """``"single"`` (one message), ``"framed"`` (length-prefixed ones) or None (neither).
    ``sniff`` is strict; ``read``, told the file is OTLP, accepts any plausible start
    (unknown fields, empty messages)."""
    head = head[:SNIFF_BYTES]
    if head[:1] == b"\x0a" and _starts_traces(head, 0, MAX_MESSAGE_BYTES, strict):
        return "single"
    pos = 0
    while len(head) >= pos + 4:
        size = int.from_bytes(head[pos : pos + 4], "big")
        if size == 0:  # empty frames carry nothing: look at the next one
            pos += 4
            continue
        if size <= MAX_MESSAGE_BYTES and _starts_traces(head, pos + 4, pos + 4 + size, strict):
            return "framed"
        return None
    return None if strict or pos != len(head) else "framed"


def sniff(head: bytes) -> bool:
    """Whether ``head`` (the first decompressed bytes of a file) starts OTLP protobuf traces:
    one message starting with ``0x0a`` + length, or frames of a 4-byte length then ``0x0a``,
    whose first fields are all ones that TracesData, Span and friends have.

    >>> sniff(b'{"resourceSpans": []}')
    False
    """
    return _layout(head) is not None
