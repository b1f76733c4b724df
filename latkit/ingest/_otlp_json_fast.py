"""The fast path of the OTLP JSON reader: a compiled scanner for the common shape.

``latkit.ingest.otlp_json`` reads every shape of OTLP/JSON with DuckDB (``json_transform`` +
UNNEST). That costs ~11 µs of CPU per span (1M spans in Collector-sized lines: ~40k spans/s
end to end on 2 cores), far from the 200k spans/s the workbook needs: ``json_transform``
alone is ~3.6 µs a span, the UNNESTs and list lambdas the rest. Faster generic JSON parsers
do not help much either (NOTES.md: orjson + Python flattening ~78k spans/s), because once
the JSON is parsed, touching each value from Python costs more than the parse.

So this module does for OTLP/JSON what ``otlp_proto`` does for the protobuf wire format: a
numba-compiled scanner (``_kernel`` functions, ``nogil``, cached on disk) that knows OTLP's
structure (``resourceSpans`` -> ``scopeSpans`` -> ``spans``, lowerCamelCase keys) walks each
document once and fills int64 tables of *offsets* into the chunk's bytes: one row per span,
event, link, scope, resource and key/value, with the same columns as ``otlp_proto``'s, so
that its bulk column builders (``_strings``, ``_key_values``, ``_values``, ``_offsets``)
make the Arrow columns. No per-span Python code runs. The scanner works on a private copy of
the chunk and edits it in place where that is shorter than the text: it lowercases hex ids,
unescapes strings that hold a backslash (``\\uXXXX`` and surrogate pairs included) and
decodes base64 ``bytesValue``; doubles are parsed by Arrow in bulk, array and kvlist values
rendered by the DuckDB path's own Python function (rare).

Measured on the benchmark's 1M spans (``benchmarks/data/otlp_1000000.jsonl``, 567 MiB,
~10,000 spans a line), CPU seconds being the steadier figure on a shared machine: the scan
~1.7-2.2 CPU-us a span (2.6-3.4 before its kernels dropped reference counting, see
``compile_kernels``), the Arrow columns ~1.6-2 (otlp_proto's compiled builders; the byte
gather is most of it, bound by memory rather than by the instructions), the reader alone
~2.8-2.9 CPU-us a span (reading into one reused buffer, see ``otlp_json._Reader._pieces``)
against ~10-11 for the DuckDB path; ``latkit.open().load()`` end to end 3.8-4.6 s
(``benchmarks/ingest_otlp.py --cases jsonl``). A plain numba loop over the same
bytes costs 0.1 us a span, and a generic JSON validator written like this scanner as much
as the scanner had then: the per-string and per-call work, not the structure, is where a
faster scanner would have to win.

The scanner is deliberately strict: anything it is not sure to read *exactly* as the DuckDB
path does makes it give up on that line (or document), which then goes to DuckDB: base64 or
malformed ids, snake_case or Tempo v1 keys (any key with ``_``, ``batches``,
``instrumentationLibrary...``), ``{"trace": ...}`` / ``{"result": ...}`` wrappers or any other
top-level key, JSON ``null`` where a value is expected, missing ids, quoted doubles (``"NaN"``),
numbers it cannot render the same way (fractions or exponents in times, ints or enums; ints
over 18 digits), a lone surrogate or ``\\u0000``, keys with escapes, nesting deeper than 62,
anything that is not valid JSON, and a chunk with invalid UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from latkit.ingest.otlp_proto import (
    C_NAME,
    E_NAME,
    E_SPAN,
    E_TIME,
    EVENT_ATTRS,
    EVENTS,
    K_KEY,
    K_NUM,
    K_OWNER,
    K_TYPE,
    K_VALUE,
    L_SPAN,
    L_SPANID,
    L_STATE,
    L_TRACE,
    LINK_ATTRS,
    LINKS,
    RESOURCE_ATTRS,
    RESOURCES,
    S_CODE,
    S_END,
    S_KIND,
    S_MESSAGE,
    S_NAME,
    S_PARENT,
    S_RESOURCE,
    S_SCOPE,
    S_SPAN,
    S_START,
    S_STATE,
    S_TRACE,
    SCOPES,
    SPAN_ATTRS,
    SPANS,
    V_ARRAY,
    V_BOOL,
    V_BYTES,
    V_DOUBLE,
    V_KVLIST,
    V_NONE,
    V_STRING,
    _col,
    _grown,
    _key_values,
    _offsets,
    _repeat_key_values,
    _strings,
)
from latkit.schema import SPAN_EVENT, SPAN_KINDS, SPAN_LINK, SPAN_STAGING, SPAN_STATUSES

# Extra columns beyond otlp_proto's: which optional numbers a span / event has (JSON omits
# zeros, and the DuckDB path reads an absent time as NULL), and each resource's service.
S_FLAGS = 18  # bit 1: start time present, bit 2: end time present
E_FLAGS = 4  # bit 1: time present
R_SERVICE, R_SERVICE_STATE = 0, 2  # (offset, length) of service.name; 1 string, 2 other kind
#: Table widths (span, event, link, resource, scope, then the four key/value tables).
WIDTHS = (19, 5, 7, 3, 2, 7, 7, 7, 7)
#: Typical chunk bytes per row of each table, to size the tables before scanning.
BYTES_PER_ROW = (400, 4000, 8000, 20000, 8000, 60, 2000, 4000, 20000)
#: A string whose length is this was absent (read as NULL), not empty.
ABSENT = -1

E_BAD, E_FULL = 1, 6  # why a document failed: not ours to read / a table is full
MAX_DEPTH = 62

_F = TypeVar("_F", bound=Callable[..., Any])
_KERNELS: list[Callable[..., Any]] = []
_INLINE = {
    "_fail",
    "_ws",
    "_new_row",
    "_key",
    "_after",
    "_is",
    "_hex4",
    "_open",
}
_compiled = False


def _kernel(fn: _F) -> _F:
    """Mark ``fn`` for numba; ``compile_kernels`` swaps in ``numba.njit(cache=True, ...)(fn)``."""
    _KERNELS.append(fn)
    return fn


def compile_kernels() -> None:
    """Import numba and compile the scanner (first call only; cached on disk after).

    The kernels are compiled without numba's reference counting (``_nrt=False``, the
    ``flags.nrt`` option numba keeps for code that never allocates): with it, every array
    handed to a helper or taken out of the ``tabs`` tuple (``tabs[SPANS]``, a row view) costs
    an atomic incref and decref (the compiled ``_document`` had 327 increfs and 1051 decrefs
    in its IR). Without, the scan of the benchmark's 1M spans went from 2.6-3.4 to 1.7-2.2
    CPU-s (medians 3.1 and 1.8; 8 interleaved runs each, 2 shared cores), the whole read
    from 6.5-7.3 to 4.9-6.0 (with the reused copy in ``Scanner.spans``). So no kernel may
    allocate (no ``np.empty``, ``.copy()``, slice assignment between arrays, new arrays
    returned): numba refuses to compile one that does. ``Scanner.spans`` allocates the
    scratch arrays and grows a full table itself.
    """
    global _compiled
    if not _compiled:
        import numba

        from latkit.ingest import otlp_proto

        otlp_proto._compile()  # the column builders' gather

        for fn in _KERNELS:
            options: dict[str, Any] = {  # a dict: numba's typed signature lacks _nrt
                "cache": True,
                "nogil": True,
                "inline": "always" if fn.__name__ in _INLINE else "never",
                "_nrt": False,
            }
            globals()[fn.__name__] = numba.njit(**options)(fn)
        _compiled = True


def _word(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), np.uint8).copy()


# Keys and enum names, as constants the compiled code compares bytes against.
W_RESOURCE_SPANS = _word("resourceSpans")
W_RESOURCE = _word("resource")
W_SCOPE_SPANS = _word("scopeSpans")
W_SCOPE = _word("scope")
W_SPANS = _word("spans")
W_ATTRIBUTES = _word("attributes")
W_NAME = _word("name")
W_TRACE_ID = _word("traceId")
W_SPAN_ID = _word("spanId")
W_PARENT = _word("parentSpanId")
W_TRACE_STATE = _word("traceState")
W_KIND = _word("kind")
W_START = _word("startTimeUnixNano")
W_END = _word("endTimeUnixNano")
W_TIME = _word("timeUnixNano")
W_EVENTS = _word("events")
W_LINKS = _word("links")
W_STATUS = _word("status")
W_CODE = _word("code")
W_MESSAGE = _word("message")
W_KEY = _word("key")
W_VALUE = _word("value")
W_STRING_VALUE = _word("stringValue")
W_BOOL_VALUE = _word("boolValue")
W_INT_VALUE = _word("intValue")
W_DOUBLE_VALUE = _word("doubleValue")
W_BYTES_VALUE = _word("bytesValue")
W_ARRAY_VALUE = _word("arrayValue")
W_KVLIST_VALUE = _word("kvlistValue")
W_SERVICE_NAME = _word("service.name")
W_BATCHES = _word("batches")
W_LEGACY = _word("instrumentationLibrary")
W_KIND_PREFIX = _word("SPAN_KIND_")
W_KINDS = (
    _word("INTERNAL"),
    _word("SERVER"),
    _word("CLIENT"),
    _word("PRODUCER"),
    _word("CONSUMER"),
)
W_OK = _word("STATUS_CODE_OK")
W_ERROR = _word("STATUS_CODE_ERROR")
W_TRUE = _word("true")
W_FALSE = _word("false")
W_NULL = _word("null")

# --------------------------------------------------------------------------- the scanner


@_kernel
def _fail(err: np.ndarray, code: int, pos: int, table: int) -> int:
    err[0], err[1], err[2] = code, pos, table
    return -1


@_kernel
def _ws(buf: np.ndarray, pos: int, end: int) -> int:
    while pos < end:
        c = buf[pos]
        if c == 32 or c == 10 or c == 13 or c == 9:
            pos += 1
        else:
            break
    return pos


@_kernel
def _is(buf: np.ndarray, start: int, n: int, word: np.ndarray) -> bool:
    if n != len(word):
        return False
    for i in range(n):  # noqa: SIM110 - a loop numba compiles to compares, no generator
        if buf[start + i] != word[i]:
            return False
    return True


@_kernel
def _new_row(table: np.ndarray, counts: np.ndarray, t: int, err: np.ndarray, pos: int) -> int:
    i = counts[t]
    if i >= table.shape[0]:
        return _fail(err, E_FULL, pos, t)
    counts[t] = i + 1
    for c in range(table.shape[1]):
        table[i, c] = 0
    return i


@_kernel
def _hex4(buf: np.ndarray, pos: int, end: int) -> int:
    if end - pos < 4:
        return -1
    v = 0
    for i in range(4):
        c = int(buf[pos + i])
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@_kernel
def _string(buf: np.ndarray, pos: int, end: int, write: bool) -> tuple[int, int, int]:
    """The JSON string at ``pos`` (which must be its opening quote): (start, length, next).
    With ``write``, escapes are undone in place (the text only ever gets shorter) and
    ``length`` is the unescaped length; next is -1 if the string is not valid or not one we
    read exactly as DuckDB does (a lone surrogate, ``\\u0000``)."""
    if pos >= end or buf[pos] != 34:
        return 0, 0, -1
    pos += 1
    start = pos
    while pos < end:
        c = buf[pos]
        if c == 34:
            return start, pos - start, pos + 1
        if c == 92:
            break
        if c < 32:
            return 0, 0, -1
        pos += 1
    out = pos
    while pos < end:
        c = buf[pos]
        if c == 34:
            return start, out - start, pos + 1
        if c < 32:
            return 0, 0, -1
        if c != 92:
            if write:
                buf[out] = c
            out += 1
            pos += 1
            continue
        if pos + 1 >= end:
            return 0, 0, -1
        e = buf[pos + 1]
        ch = -1
        if e == 34 or e == 92 or e == 47:
            ch = e
        elif e == 98:
            ch = 8
        elif e == 102:
            ch = 12
        elif e == 110:
            ch = 10
        elif e == 114:
            ch = 13
        elif e == 116:
            ch = 9
        elif e != 117:
            return 0, 0, -1
        if ch >= 0:
            if write:
                buf[out] = ch
            out += 1
            pos += 2
            continue
        cp = _hex4(buf, pos + 2, end)
        pos += 6
        if cp < 0 or cp == 0:
            return 0, 0, -1
        if 0xDC00 <= cp < 0xE000:
            return 0, 0, -1
        if 0xD800 <= cp < 0xDC00:
            if pos + 1 >= end or buf[pos] != 92 or buf[pos + 1] != 117:
                return 0, 0, -1
            lo = _hex4(buf, pos + 2, end)
            if lo < 0xDC00 or lo >= 0xE000:
                return 0, 0, -1
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            pos += 6
        if cp < 0x80:
            if write:
                buf[out] = cp
            out += 1
        elif cp < 0x800:
            if write:
                buf[out] = 0xC0 | (cp >> 6)
                buf[out + 1] = 0x80 | (cp & 0x3F)
            out += 2
        elif cp < 0x10000:
            if write:
                buf[out] = 0xE0 | (cp >> 12)
                buf[out + 1] = 0x80 | ((cp >> 6) & 0x3F)
                buf[out + 2] = 0x80 | (cp & 0x3F)
            out += 3
        else:
            if write:
                buf[out] = 0xF0 | (cp >> 18)
                buf[out + 1] = 0x80 | ((cp >> 12) & 0x3F)
                buf[out + 2] = 0x80 | ((cp >> 6) & 0x3F)
                buf[out + 3] = 0x80 | (cp & 0x3F)
            out += 4
    return 0, 0, -1


@_kernel
def _number(buf: np.ndarray, pos: int, end: int) -> tuple[int, bool]:
    """The JSON number at ``pos``: (next position, whether it is a plain integer); -1 if
    it is not a valid number."""
    start = pos
    if pos < end and buf[pos] == 45:
        pos += 1
    if pos >= end:
        return -1, False
    if buf[pos] == 48:
        pos += 1
    elif 49 <= buf[pos] <= 57:
        while pos < end and 48 <= buf[pos] <= 57:
            pos += 1
    else:
        return -1, False
    plain = True
    if pos < end and buf[pos] == 46:
        plain = False
        pos += 1
        digits = pos
        while pos < end and 48 <= buf[pos] <= 57:
            pos += 1
        if pos == digits:
            return -1, False
    if pos < end and (buf[pos] == 101 or buf[pos] == 69):
        plain = False
        pos += 1
        if pos < end and (buf[pos] == 43 or buf[pos] == 45):
            pos += 1
        digits = pos
        while pos < end and 48 <= buf[pos] <= 57:
            pos += 1
        if pos == digits:
            return -1, False
    if plain and buf[start] == 45 and pos - start == 2 and buf[start + 1] == 48:
        plain = False  # -0: leave its rendering to DuckDB
    return pos, plain


@_kernel
def _skip_any(buf: np.ndarray, pos: int, end: int) -> int:
    """Validate and skip one JSON value (iteratively; a bit per level says object or
    array); -1 if invalid or nested deeper than ``MAX_DEPTH``."""
    depth = 0
    objects = 0  # bit d set: level d is an object
    while True:
        pos = _ws(buf, pos, end)
        if pos >= end:
            return -1
        c = buf[pos]
        opened = False
        if c == 123 or c == 91:
            pos = _ws(buf, pos + 1, end)
            if pos >= end:
                return -1
            if (c == 123 and buf[pos] == 125) or (c == 91 and buf[pos] == 93):
                pos += 1
            else:
                if depth >= MAX_DEPTH:
                    return -1
                if c == 123:
                    objects |= 1 << depth
                    _, _, pos = _string(buf, pos, end, False)
                    if pos < 0:
                        return -1
                    pos = _ws(buf, pos, end)
                    if pos >= end or buf[pos] != 58:
                        return -1
                    pos += 1
                else:
                    objects &= ~(1 << depth)
                depth += 1
                opened = True
        elif c == 34:
            _, _, pos = _string(buf, pos, end, False)
        elif c == 116:
            pos = pos + 4 if _is(buf, pos, min(4, end - pos), W_TRUE) else -1
        elif c == 102:
            pos = pos + 5 if _is(buf, pos, min(5, end - pos), W_FALSE) else -1
        elif c == 110:
            pos = pos + 4 if _is(buf, pos, min(4, end - pos), W_NULL) else -1
        else:
            pos, _ = _number(buf, pos, end)
        if pos < 0:
            return -1
        if opened:
            continue
        # a value is complete: close what it completes, or go on to the next member
        while True:
            if depth == 0:
                return pos
            pos = _ws(buf, pos, end)
            if pos >= end:
                return -1
            c = buf[pos]
            is_object = (objects >> (depth - 1)) & 1
            if c == 44:
                pos = _ws(buf, pos + 1, end)
                if is_object:
                    _, _, pos = _string(buf, pos, end, False)
                    if pos < 0:
                        return -1
                    pos = _ws(buf, pos, end)
                    if pos >= end or buf[pos] != 58:
                        return -1
                    pos += 1
                break
            if (c == 125 and is_object) or (c == 93 and not is_object):
                depth -= 1
                pos += 1
                continue
            return -1


@_kernel
def _key(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int]:
    """An object key and its colon: (start, length, position of the value); -1 for a key
    the DuckDB path might rename or read differently (``_``, escapes, Tempo v1 names)."""
    if pos >= end or buf[pos] != 34:
        return 0, 0, -1
    start = pos + 1
    p = start
    while p < end and buf[p] != 34:
        c = buf[p]
        if c == 92 or c == 95 or c < 32:
            return 0, 0, -1
        p += 1
    if p >= end:
        return 0, 0, -1
    n = p - start
    if _is(buf, start, n, W_BATCHES):
        return 0, 0, -1
    if n >= len(W_LEGACY) and _is(buf, start, len(W_LEGACY), W_LEGACY):
        return 0, 0, -1
    p = _ws(buf, p + 1, end)
    if p >= end or buf[p] != 58:
        return 0, 0, -1
    return start, n, _ws(buf, p + 1, end)


@_kernel
def _after(buf: np.ndarray, pos: int, end: int, close: int) -> tuple[int, bool]:
    """After a member or element: (position of the next one, True) after a comma, or
    (position after ``close``, False); -1 otherwise."""
    pos = _ws(buf, pos, end)
    if pos >= end:
        return -1, False
    if buf[pos] == 44:
        return _ws(buf, pos + 1, end), True
    if buf[pos] == close:
        return pos + 1, False
    return -1, False


@_kernel
def _open(buf: np.ndarray, pos: int, end: int, open_: int, close: int) -> tuple[int, bool]:
    """At ``open_`` (``{`` or ``[``): (position of the first member, whether there is one)."""
    if pos >= end or buf[pos] != open_:
        return -1, False
    pos = _ws(buf, pos + 1, end)
    if pos < end and buf[pos] == close:
        return pos + 1, False
    return pos, True


@_kernel
def _id(buf: np.ndarray, pos: int, end: int, size: int, parent: bool) -> tuple[int, int, int]:
    """A hex id of ``size`` bytes, lowercased in place: (start, length, next). A parent may
    be empty, and all zeros reads as none (length 0). -1 for anything else (base64)."""
    start, n, nxt = _string(buf, pos, end, False)
    if nxt < 0 or nxt - start - 1 != n:  # escaped: not ours
        return 0, 0, -1
    if n == 0 and parent:
        return start, 0, nxt
    if n != 2 * size:
        return 0, 0, -1
    zero = True
    for i in range(start, start + n):
        c = buf[i]
        if 65 <= c <= 70:
            buf[i] = c + 32
        elif not (48 <= c <= 57 or 97 <= c <= 102):
            return 0, 0, -1
        if c != 48:
            zero = False
    if zero and parent:
        return start, 0, nxt
    return start, n, nxt


@_kernel
def _uint(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """An unsigned 64-bit int (as a string or a number) that fits int64: (value, next)."""
    quoted = pos < end and buf[pos] == 34
    if quoted:
        pos += 1
    start = pos
    value = 0
    while pos < end and 48 <= buf[pos] <= 57:
        d = int(buf[pos]) - 48
        if value > (9223372036854775807 - d) // 10:
            return 0, -1
        value = value * 10 + d
        pos += 1
    if pos == start:
        return 0, -1
    if quoted:
        if pos >= end or buf[pos] != 34:
            return 0, -1
        return value, pos + 1
    if buf[start] == 48 and pos - start > 1:
        return 0, -1
    if pos < end and (buf[pos] == 46 or buf[pos] == 101 or buf[pos] == 69):
        return 0, -1
    return value, pos


@_kernel
def _enum(buf: np.ndarray, pos: int, end: int, status: bool) -> tuple[int, int]:
    """A span kind (or status code): (value, next). An integer or its digits as a string,
    or the enum's name; anything else the DuckDB path reads as 0."""
    if pos < end and buf[pos] == 34:
        start, n, nxt = _string(buf, pos, end, False)
        if nxt < 0 or nxt - start - 1 != n:  # escaped: not ours
            return 0, -1
        if n == 1 and 49 <= buf[start] <= (50 if status else 53):
            return int(buf[start]) - 48, nxt
        if status:
            if _is(buf, start, n, W_OK):
                return 1, nxt
            if _is(buf, start, n, W_ERROR):
                return 2, nxt
            return 0, nxt
        p = len(W_KIND_PREFIX)
        if n > p and _is(buf, start, p, W_KIND_PREFIX):
            for k in range(5):
                if _is(buf, start + p, n - p, W_KINDS[k]):
                    return k + 1, nxt
        return 0, nxt
    start = pos
    nxt, plain = _number(buf, pos, end)
    if nxt < 0 or not plain:
        return 0, -1
    if nxt - start == 1 and 49 <= buf[start] <= (50 if status else 53):
        return int(buf[start]) - 48, nxt
    return 0, nxt


@_kernel
def _base64(buf: np.ndarray, start: int, n: int) -> int:
    """Decode standard, padded base64 at ``buf[start:start+n]`` in place: its byte length,
    -1 if it is not that."""
    if n % 4 != 0:
        return -1
    out = start
    acc = 0
    bits = 0
    pad = 0
    for i in range(start, start + n):
        c = buf[i]
        if 65 <= c <= 90:
            v = c - 65
        elif 97 <= c <= 122:
            v = c - 71
        elif 48 <= c <= 57:
            v = c + 4
        elif c == 43:
            v = 62
        elif c == 47:
            v = 63
        elif c == 61 and i >= start + n - 2:
            pad += 1
            continue
        else:
            return -1
        if pad:
            return -1
        acc = (acc << 6) | v
        bits += 6
        if bits >= 8:
            bits -= 8
            buf[out] = (acc >> bits) & 0xFF
            out += 1
    if pad and buf[start + n - 1] != 61:
        return -1
    return out - start


@_kernel
def _any_value(buf: np.ndarray, pos: int, end: int, kv: np.ndarray, i: int, err: np.ndarray) -> int:
    """AnyValue, into row ``i`` of ``kv``. ``kv[i, K_NUM]`` is 1 for a stringValue (for
    ``service.name``); an intValue keeps its own text (as the DuckDB path does) and reads as
    a string. The row is indexed, not sliced: a row view costs two atomic reference counts."""
    pos, more = _open(buf, pos, end, 123, 125)
    kinds = 0
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        if _is(buf, ks, kn, W_STRING_VALUE) or _is(buf, ks, kn, W_BYTES_VALUE):
            start, n, pos = _string(buf, pos, end, True)
            if pos >= 0 and kn == len(W_BYTES_VALUE) and buf[ks] == 98:
                n = _base64(buf, start, n)
                kv[i, K_TYPE] = V_BYTES
                if n < 0:
                    pos = -1
            else:
                kv[i, K_TYPE], kv[i, K_NUM] = V_STRING, 1
            kv[i, K_VALUE], kv[i, K_VALUE + 1] = start, n
            kinds += 1
        elif _is(buf, ks, kn, W_INT_VALUE):
            if pos < end and buf[pos] == 34:
                start, n, pos = _string(buf, pos, end, True)
            else:
                start = pos
                pos, plain = _number(buf, pos, end)
                n = pos - start
                if not plain or n > 18:
                    pos = -1
            kv[i, K_TYPE], kv[i, K_NUM] = V_STRING, 0
            kv[i, K_VALUE], kv[i, K_VALUE + 1] = start, n
            kinds += 1
        elif _is(buf, ks, kn, W_BOOL_VALUE):
            if _is(buf, pos, min(4, end - pos), W_TRUE):
                kv[i, K_NUM], pos = 1, pos + 4
            elif _is(buf, pos, min(5, end - pos), W_FALSE):
                kv[i, K_NUM], pos = 0, pos + 5
            else:
                pos = -1
            kv[i, K_TYPE] = V_BOOL
            kinds += 1
        elif _is(buf, ks, kn, W_DOUBLE_VALUE):
            start = pos
            pos, _ = _number(buf, pos, end)
            kv[i, K_TYPE] = V_DOUBLE
            kv[i, K_VALUE], kv[i, K_VALUE + 1] = start, pos - start
            kinds += 1
        elif _is(buf, ks, kn, W_ARRAY_VALUE) or _is(buf, ks, kn, W_KVLIST_VALUE):
            start = pos
            pos = _skip_any(buf, pos, end) if pos < end and buf[pos] == 123 else -1
            kv[i, K_TYPE] = V_ARRAY if buf[ks] == 97 else V_KVLIST
            kv[i, K_VALUE], kv[i, K_VALUE + 1] = start, pos - start
            kinds += 1
        else:
            pos = _skip_any(buf, pos, end)
        if pos < 0 or kinds > 1:
            return _fail(err, E_BAD, pos, 0)
        pos, more = _after(buf, pos, end, 125)
    if pos < 0:
        return _fail(err, E_BAD, pos, 0)
    return pos


@_kernel
def _kv_list(
    buf: np.ndarray,
    pos: int,
    end: int,
    kv: np.ndarray,
    counts: np.ndarray,
    t: int,
    err: np.ndarray,
    owner: int,
    resources: np.ndarray,
) -> int:
    """A list of KeyValue into ``kv`` (table ``t``). For a resource's (``t`` is
    ``RESOURCE_ATTRS``), the first ``service.name`` is noted in ``resources``: its text if a
    stringValue."""
    pos, more = _open(buf, pos, end, 91, 93)
    while more:
        i = _new_row(kv, counts, t, err, pos)
        if i < 0:
            return -1
        kv[i, K_OWNER] = owner
        has_key = False
        pos, fields = _open(buf, pos, end, 123, 125)
        while fields:
            ks, kn, pos = _key(buf, pos, end)
            if pos < 0:
                return _fail(err, E_BAD, pos, 0)
            if _is(buf, ks, kn, W_KEY):
                start, n, pos = _string(buf, pos, end, True)
                kv[i, K_KEY], kv[i, K_KEY + 1] = start, n
                has_key = True
            elif _is(buf, ks, kn, W_VALUE):
                kv[i, K_TYPE] = V_NONE
                pos = _any_value(buf, pos, end, kv, i, err)
            else:
                pos = _skip_any(buf, pos, end)
            if pos < 0:
                return _fail(err, E_BAD, pos, 0)
            pos, fields = _after(buf, pos, end, 125)
        if pos < 0 or not has_key:
            return _fail(err, E_BAD, pos, 0)
        if (
            t == RESOURCE_ATTRS
            and resources[owner, R_SERVICE_STATE] == 0
            and _is(buf, kv[i, K_KEY], kv[i, K_KEY + 1], W_SERVICE_NAME)
        ):
            string = kv[i, K_TYPE] == V_STRING and kv[i, K_NUM] == 1
            resources[owner, R_SERVICE_STATE] = 1 if string else 2
            resources[owner, R_SERVICE] = kv[i, K_VALUE]
            resources[owner, R_SERVICE + 1] = kv[i, K_VALUE + 1]
        pos, more = _after(buf, pos, end, 93)
    if pos < 0:
        return _fail(err, E_BAD, pos, 0)
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
    i = _new_row(tabs[EVENTS], counts, EVENTS, err, pos)
    if i < 0:
        return -1
    row = tabs[EVENTS][i]
    row[E_SPAN], row[E_NAME + 1] = span, ABSENT
    pos, more = _open(buf, pos, end, 123, 125)
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        if _is(buf, ks, kn, W_TIME):
            row[E_TIME], pos = _uint(buf, pos, end)
            row[E_FLAGS] = 1
        elif _is(buf, ks, kn, W_NAME):
            row[E_NAME], row[E_NAME + 1], pos = _string(buf, pos, end, True)
        elif _is(buf, ks, kn, W_ATTRIBUTES):
            pos = _kv_list(
                buf, pos, end, tabs[EVENT_ATTRS], counts, EVENT_ATTRS, err, i, tabs[RESOURCES]
            )
        else:
            pos = _skip_any(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0) if err[0] != E_FULL else -1
        pos, more = _after(buf, pos, end, 125)
    if pos < 0:
        return _fail(err, E_BAD, pos, 0)
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
    i = _new_row(tabs[LINKS], counts, LINKS, err, pos)
    if i < 0:
        return -1
    row = tabs[LINKS][i]
    row[L_SPAN] = span
    ids = 0
    pos, more = _open(buf, pos, end, 123, 125)
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        if _is(buf, ks, kn, W_TRACE_ID):
            row[L_TRACE], row[L_TRACE + 1], pos = _id(buf, pos, end, 16, False)
            ids |= 1
        elif _is(buf, ks, kn, W_SPAN_ID):
            row[L_SPANID], row[L_SPANID + 1], pos = _id(buf, pos, end, 8, False)
            ids |= 2
        elif _is(buf, ks, kn, W_TRACE_STATE):
            row[L_STATE], row[L_STATE + 1], pos = _string(buf, pos, end, True)
        elif _is(buf, ks, kn, W_ATTRIBUTES):
            pos = _kv_list(
                buf, pos, end, tabs[LINK_ATTRS], counts, LINK_ATTRS, err, i, tabs[RESOURCES]
            )
        else:
            pos = _skip_any(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0) if err[0] != E_FULL else -1
        pos, more = _after(buf, pos, end, 125)
    if pos < 0 or ids != 3:
        return _fail(err, E_BAD, pos, 0)
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
    i = _new_row(tabs[SPANS], counts, SPANS, err, pos)
    if i < 0:
        return -1
    row = tabs[SPANS][i]
    row[S_RESOURCE], row[S_SCOPE], row[S_NAME + 1] = resource, scope, ABSENT
    ids = 0
    pos, more = _open(buf, pos, end, 123, 125)
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        if _is(buf, ks, kn, W_TRACE_ID):
            row[S_TRACE], row[S_TRACE + 1], pos = _id(buf, pos, end, 16, False)
            ids |= 1
        elif _is(buf, ks, kn, W_SPAN_ID):
            row[S_SPAN], row[S_SPAN + 1], pos = _id(buf, pos, end, 8, False)
            ids |= 2
        elif _is(buf, ks, kn, W_PARENT):
            row[S_PARENT], row[S_PARENT + 1], pos = _id(buf, pos, end, 8, True)
        elif _is(buf, ks, kn, W_NAME):
            row[S_NAME], row[S_NAME + 1], pos = _string(buf, pos, end, True)
        elif _is(buf, ks, kn, W_KIND):
            row[S_KIND], pos = _enum(buf, pos, end, False)
        elif _is(buf, ks, kn, W_START):
            row[S_START], pos = _uint(buf, pos, end)
            row[S_FLAGS] |= 1
        elif _is(buf, ks, kn, W_END):
            row[S_END], pos = _uint(buf, pos, end)
            row[S_FLAGS] |= 2
        elif _is(buf, ks, kn, W_ATTRIBUTES):
            pos = _kv_list(
                buf, pos, end, tabs[SPAN_ATTRS], counts, SPAN_ATTRS, err, i, tabs[RESOURCES]
            )
        elif _is(buf, ks, kn, W_EVENTS) or _is(buf, ks, kn, W_LINKS):
            is_events = kn == len(W_EVENTS)
            pos, items = _open(buf, pos, end, 91, 93)
            while items:
                if is_events:
                    pos = _event(buf, pos, end, tabs, counts, err, i)
                else:
                    pos = _link(buf, pos, end, tabs, counts, err, i)
                if pos < 0:
                    return -1
                pos, items = _after(buf, pos, end, 93)
        elif _is(buf, ks, kn, W_TRACE_STATE):
            row[S_STATE], row[S_STATE + 1], pos = _string(buf, pos, end, True)
        elif _is(buf, ks, kn, W_STATUS):
            pos, fields = _open(buf, pos, end, 123, 125)
            while fields:
                ks, kn, pos = _key(buf, pos, end)
                if pos < 0:
                    break
                if _is(buf, ks, kn, W_CODE):
                    row[S_CODE], pos = _enum(buf, pos, end, True)
                elif _is(buf, ks, kn, W_MESSAGE):
                    row[S_MESSAGE], row[S_MESSAGE + 1], pos = _string(buf, pos, end, True)
                else:
                    pos = _skip_any(buf, pos, end)
                if pos < 0:
                    break
                pos, fields = _after(buf, pos, end, 125)
        else:
            pos = _skip_any(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0) if err[0] != E_FULL else -1
        pos, more = _after(buf, pos, end, 125)
    if pos < 0 or ids != 3:
        return _fail(err, E_BAD, pos, 0)
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
    s = _new_row(tabs[SCOPES], counts, SCOPES, err, pos)
    if s < 0:
        return -1
    scope = tabs[SCOPES][s]
    scope[C_NAME + 1] = ABSENT
    pos, more = _open(buf, pos, end, 123, 125)
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        if _is(buf, ks, kn, W_SCOPE):
            pos, fields = _open(buf, pos, end, 123, 125)
            while fields:
                ks, kn, pos = _key(buf, pos, end)
                if pos < 0:
                    break
                if _is(buf, ks, kn, W_NAME):
                    scope[C_NAME], scope[C_NAME + 1], pos = _string(buf, pos, end, True)
                else:
                    pos = _skip_any(buf, pos, end)
                if pos < 0:
                    break
                pos, fields = _after(buf, pos, end, 125)
        elif _is(buf, ks, kn, W_SPANS):
            pos, items = _open(buf, pos, end, 91, 93)
            while items:
                pos = _span(buf, pos, end, tabs, counts, err, resource, s)
                if pos < 0:
                    return -1
                pos, items = _after(buf, pos, end, 93)
        else:
            pos = _skip_any(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0) if err[0] != E_FULL else -1
        pos, more = _after(buf, pos, end, 125)
    if pos < 0:
        return _fail(err, E_BAD, pos, 0)
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
    r = _new_row(tabs[RESOURCES], counts, RESOURCES, err, pos)
    if r < 0:
        return -1
    pos, more = _open(buf, pos, end, 123, 125)
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        if _is(buf, ks, kn, W_RESOURCE):
            pos, fields = _open(buf, pos, end, 123, 125)
            while fields:
                ks, kn, pos = _key(buf, pos, end)
                if pos < 0:
                    break
                if _is(buf, ks, kn, W_ATTRIBUTES):
                    pos = _kv_list(
                        buf,
                        pos,
                        end,
                        tabs[RESOURCE_ATTRS],
                        counts,
                        RESOURCE_ATTRS,
                        err,
                        r,
                        tabs[RESOURCES],
                    )
                else:
                    pos = _skip_any(buf, pos, end)
                if pos < 0:
                    break
                pos, fields = _after(buf, pos, end, 125)
        elif _is(buf, ks, kn, W_SCOPE_SPANS):
            pos, items = _open(buf, pos, end, 91, 93)
            while items:
                pos = _scope_spans(buf, pos, end, tabs, counts, err, r)
                if pos < 0:
                    return -1
                pos, items = _after(buf, pos, end, 93)
        else:
            pos = _skip_any(buf, pos, end)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0) if err[0] != E_FULL else -1
        pos, more = _after(buf, pos, end, 125)
    if pos < 0:
        return _fail(err, E_BAD, pos, 0)
    return pos


@_kernel
def _document(
    buf: np.ndarray,
    pos: int,
    end: int,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    err: np.ndarray,
) -> int:
    """``{"resourceSpans": [...]}`` and nothing else (other shapes are DuckDB's to read)."""
    pos, more = _open(buf, _ws(buf, pos, end), end, 123, 125)
    seen = False
    while more:
        ks, kn, pos = _key(buf, pos, end)
        if pos < 0 or not _is(buf, ks, kn, W_RESOURCE_SPANS):
            return _fail(err, E_BAD, pos, 0)
        seen = True
        pos, items = _open(buf, pos, end, 91, 93)
        while items:
            pos = _resource_spans(buf, pos, end, tabs, counts, err)
            if pos < 0:
                return -1
            pos, items = _after(buf, pos, end, 93)
        if pos < 0:
            return _fail(err, E_BAD, pos, 0)
        pos, more = _after(buf, pos, end, 125)
    if pos < 0 or not seen or _ws(buf, pos, end) != end:
        return _fail(err, E_BAD, pos, 0)
    return pos


@_kernel
def _scan(
    buf: np.ndarray,
    orig: np.ndarray,
    offsets: np.ndarray,
    tabs: tuple[np.ndarray, ...],
    counts: np.ndarray,
    failed: np.ndarray,
    err: np.ndarray,
    saved: np.ndarray,
    m: int,
) -> tuple[int, int]:
    """Scan the documents ``buf[offsets[m]:offsets[m+1]]`` (lines, or one document) from
    ``m`` on into the tables. A document that fails adds no rows and sets ``failed[m]``; a
    blank one is fine. When a table is full, the document's rows are dropped, its bytes
    restored from ``orig`` (the scan edits them in place) and (that document, that table)
    returned, for the caller to grow the table and scan again from there; (-1, -1) when all
    are scanned. ``err`` (3) and ``saved`` (as ``counts``) are scratch."""
    n = len(offsets) - 1
    while m < n:
        start, stop = offsets[m], offsets[m + 1]
        failed[m] = False
        if _ws(buf, start, stop) != stop:
            for t in range(len(counts)):
                saved[t] = counts[t]
            err[0] = 0
            if _document(buf, start, stop, tabs, counts, err) < 0:
                for t in range(len(counts)):
                    counts[t] = saved[t]
                for i in range(start, stop):
                    buf[i] = orig[i]
                if err[0] == E_FULL:
                    return m, err[2]
                failed[m] = True
        m += 1
    return -1, -1


# --------------------------------------------------------------------------- Arrow columns


def _text(
    buf: np.ndarray, table: np.ndarray, rows: int, col: int, *, null_if_empty: bool = False
) -> pa.StringArray:
    """A string column; NULL where the string was absent (or, if asked, empty)."""
    return _strings(buf, table[:rows, col], table[:rows, col + 1], null_if_empty=null_if_empty)


def _prepare_values(buf: np.ndarray, kv: np.ndarray, extra: list[bytes], base: int) -> int:
    """Turn the kinds otlp_proto's ``_values`` does not know as JSON text into ones it does:
    doubles (their text, parsed by Arrow in bulk) into bits in ``K_NUM``; arrays and kvlists
    (rare) into strings rendered as the DuckDB path renders them, appended to ``extra``
    (which will follow the chunk's bytes, from ``base`` on). Returns the new ``base``."""
    kind = kv[:, K_TYPE]
    doubles = np.flatnonzero(kind == V_DOUBLE)
    if len(doubles):
        text = _strings(buf, kv[doubles, K_VALUE].copy(), kv[doubles, K_VALUE + 1].copy())
        values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        kv[doubles, K_NUM] = values.view(np.int64)
    nested = np.flatnonzero((kind == V_ARRAY) | (kind == V_KVLIST))
    if len(nested):
        from latkit.ingest.otlp_json import _plain_json

        for i in nested.tolist():
            o, n = int(kv[i, K_VALUE]), int(kv[i, K_VALUE + 1])
            name = "arrayValue" if kv[i, K_TYPE] == V_ARRAY else "kvlistValue"
            rendered = _plain_json(name, buf[o : o + n].tobytes().decode())
            if rendered is None:
                kv[i, K_TYPE] = V_NONE
                continue
            data = rendered.encode()
            kv[i, K_TYPE], kv[i, K_VALUE], kv[i, K_VALUE + 1] = V_STRING, base, len(data)
            extra.append(data)
            base += len(data)
    return base


def _columns(buf: np.ndarray, tabs: tuple[np.ndarray, ...], counts: np.ndarray) -> pa.Table:
    """The scanned tables as one Arrow table in ``SPAN_STAGING``, as the DuckDB path has it."""
    n, n_res = int(counts[SPANS]), int(counts[RESOURCES])
    n_events, n_links = int(counts[EVENTS]), int(counts[LINKS])
    spans, events, links, resources = tabs[SPANS], tabs[EVENTS], tabs[LINKS], tabs[RESOURCES]
    extra: list[bytes] = []
    base = len(buf)
    for t in (SPAN_ATTRS, EVENT_ATTRS, LINK_ATTRS, RESOURCE_ATTRS):
        base = _prepare_values(buf, tabs[t][: int(counts[t])], extra, base)
    if extra:
        buf = np.concatenate([buf, np.frombuffer(b"".join(extra), np.uint8)])

    def attributes(t: int, owners: int) -> pa.ListArray:
        return _key_values(buf, tabs[t], int(counts[t]), owners)

    resource_attrs = attributes(RESOURCE_ATTRS, n_res)
    is_text = _col(resources, n_res, R_SERVICE_STATE) == 1
    service = _strings(
        buf,
        _col(resources, n_res, R_SERVICE),
        np.where(is_text, _col(resources, n_res, R_SERVICE + 1), -1),  # NULL unless text
    ).fill_null("unknown_service")
    resource = _col(spans, n, S_RESOURCE)
    span_flags = _col(spans, n, S_FLAGS)
    event_structs = pa.StructArray.from_arrays(
        [
            pa.array(_col(events, n_events, E_TIME), mask=_col(events, n_events, E_FLAGS) == 0),
            _text(buf, events, n_events, E_NAME),
            attributes(EVENT_ATTRS, n_events),
        ],
        fields=list(SPAN_EVENT),
    )
    link_structs = pa.StructArray.from_arrays(
        [
            _text(buf, links, n_links, L_TRACE),
            _text(buf, links, n_links, L_SPANID),
            _text(buf, links, n_links, L_STATE, null_if_empty=True),
            attributes(LINK_ATTRS, n_links),
        ],
        fields=list(SPAN_LINK),
    )
    kind = _col(spans, n, S_KIND)
    code = _col(spans, n, S_CODE)
    columns = [
        _text(buf, spans, n, S_TRACE),
        _text(buf, spans, n, S_SPAN),
        _text(buf, spans, n, S_PARENT, null_if_empty=True),
        _text(buf, spans, n, S_STATE, null_if_empty=True),
        _text(buf, spans, n, S_NAME),
        pa.array(SPAN_KINDS).take(pa.array(kind)),
        service.take(pa.array(resource)),
        pa.array(_col(spans, n, S_START), mask=(span_flags & 1) == 0),
        pa.array(_col(spans, n, S_END), mask=(span_flags & 2) == 0),
        pa.array(SPAN_STATUSES).take(pa.array(code)),
        _text(buf, spans, n, S_MESSAGE, null_if_empty=True),
        _text(buf, tabs[SCOPES], int(counts[SCOPES]), C_NAME).take(
            pa.array(_col(spans, n, S_SCOPE))
        ),
        attributes(SPAN_ATTRS, n),
        _repeat_key_values(resource_attrs, resource),
        pa.ListArray.from_arrays(
            _offsets(events[:n_events, E_SPAN], n), event_structs, pa.list_(SPAN_EVENT)
        ),
        pa.ListArray.from_arrays(
            _offsets(links[:n_links, L_SPAN], n), link_structs, pa.list_(SPAN_LINK)
        ),
    ]
    return pa.Table.from_arrays(columns, schema=SPAN_STAGING)


# --------------------------------------------------------------------------- the entry point


class Scanner:
    """Scans chunks of OTLP/JSON; keeps its tables, and the buffer the scan edits, between
    chunks so they grow only once."""

    def __init__(self) -> None:
        compile_kernels()
        self.tabs = tuple(np.empty((1024, w), np.int64) for w in WIDTHS)
        self.scratch = np.empty(0, np.uint8)

    def spans(
        self, data: bytes | bytearray, offsets: np.ndarray
    ) -> tuple[pa.Table | None, np.ndarray] | None:
        """The spans of the documents ``data[offsets[m]:offsets[m+1]]`` that this path can
        read, and which documents it could not (``failed``, for the DuckDB path). None when
        the chunk is not valid UTF-8 (the DuckDB path then reads all of it)."""
        end = int(offsets[-1])
        text = pa.LargeStringArray.from_buffers(
            1, pa.py_buffer(np.array([0, end], np.int64)), pa.py_buffer(data)
        )
        try:
            text.validate(full=True)
        except pa.ArrowInvalid:
            return None
        orig = np.frombuffer(data, np.uint8, count=end)
        # The scan edits a copy. A fresh copy of each chunk cost ~0.4 CPU-s on the benchmark's
        # 1M spans (567 MiB), nearly all of it the kernel faulting in and zeroing new pages;
        # copying into the previous chunk's buffer costs ~0.1.
        if len(self.scratch) < end:
            self.scratch = np.empty(end + end // 4, np.uint8)
        buf = self.scratch[:end]
        np.copyto(buf, orig)
        size = end
        self.tabs = tuple(
            t if len(t) * per >= size else np.empty((size // per + 64, t.shape[1]), np.int64)
            for t, per in zip(self.tabs, BYTES_PER_ROW, strict=True)
        )
        counts = np.zeros(len(WIDTHS), np.int64)
        failed = np.zeros(len(offsets) - 1, np.bool_)
        err, saved = np.zeros(3, np.int64), np.zeros(len(WIDTHS), np.int64)
        offsets = offsets.astype(np.int64)
        m = 0
        while True:
            m, full = _scan(buf, orig, offsets, self.tabs, counts, failed, err, saved, m)
            if m < 0:
                break
            self.tabs = tuple(
                _grown(t, 2 * len(t) + 64, len(t)) if i == full else t
                for i, t in enumerate(self.tabs)
            )
        if not counts[SPANS]:
            return None, failed
        table = _columns(buf, self.tabs, counts)
        if _points_into(table, buf):  # the next chunk must not overwrite what the table shows
            self.scratch = np.empty(0, np.uint8)
        return table, failed


def _points_into(table: pa.Table, buf: np.ndarray) -> bool:
    """Whether any of ``table``'s Arrow buffers lies in ``buf``'s memory. (None does: the
    column builders gather the bytes they keep. This guards reusing ``buf`` if one ever
    makes a zero-copy column of it.)"""
    low = buf.ctypes.data
    high = low + buf.nbytes
    for column in table.columns:
        for chunk in column.chunks:
            for b in chunk.buffers():
                if b is not None and b.size and b.address < high and low < b.address + b.size:
                    return True
    return False
