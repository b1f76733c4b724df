"""Zipkin v2 JSON spans: a list of spans, or a list of traces (lists of spans).

What Zipkin's ``POST /api/v2/spans`` takes and ``GET /api/v2/trace/{id}`` / ``/api/v2/traces``
return (https://zipkin.io/zipkin-api/), as written by Brave, the OpenTelemetry SDKs' Zipkin
exporters and the Collector. A file may hold one such document, or one per line.

>>> from latkit.ingest import Rows, Source, zipkin
>>> items = list(zipkin.read(Source.of("tests/fixtures/zipkin_jaeger/zipkin.json")))
>>> sum(i.batch.num_rows for i in items if isinstance(i, Rows))
24

How a Zipkin span becomes a canonical row
-----------------------------------------
- ``traceId`` (16 or 32 hex) is left-padded with zeros to 32 hex, ``id`` / ``parentId`` to 16;
  ``timestamp`` and ``duration`` are microseconds (``end = timestamp + duration``; a span
  without ``duration`` ends where it starts); a span without ``timestamp`` is rejected.
- ``kind`` (CLIENT SERVER PRODUCER CONSUMER) in lowercase; absent, it is the ``span.kind`` tag
  if there is one, else ``internal`` (Zipkin: "when absent, the span is local").
- ``localEndpoint.serviceName`` is the service (and the one resource attribute,
  ``service.name``). ``remoteEndpoint`` becomes attributes unless tags already say them:
  ``peer.service`` (its serviceName), ``network.peer.address`` (ipv4, else ipv6) and
  ``network.peer.port``.
- A database span from Brave says its system only as the remote service (``mysql``,
  ``postgresql``): when a span has a ``sql.query`` tag and no ``db.system`` tag, ``db.system``
  is set to the lowercased ``remoteEndpoint.serviceName``, so the enrichment sees a database.
- Tags are attributes, except those the OpenTelemetry exporters write to carry what Zipkin
  has no field for (``otel.status_code``, ``otel.status_description``, ``error``,
  ``otel.scope.name``/``otel.library.name`` and versions, ``span.kind``,
  ``w3c.tracestate``): they become ``status``, ``status_message``, ``scope``, ``kind`` and
  ``trace_state`` (see ``OTEL_TAG_MACROS``, shared with the Jaeger reader).
- Annotations are events (time, name). The OpenTelemetry exporters write an event as the
  annotation ``{"<name>": {<attributes>}}``: that is read back into the name and attributes.
- **Shared spans.** Zipkin lets a client and the server it called report one span id
  (B3 single-span-per-RPC; the server half says ``"shared": true``). Both halves stay rows.
  The client half keeps the id; the server half (``kind`` SERVER, with ``shared`` true or a
  CLIENT span of the same trace and id in the same document) gets the derived id
  ``sha256(trace_id + span_id + "server")[:16]`` (lowercase hex of the padded ids) and the
  client half as its parent. The spans of the server's service whose parent is the shared id
  are re-parented to the server half, so the tree stays a tree.

What Zipkin cannot carry: resource attributes (the OpenTelemetry exporter flattens them into
each span's tags), link, trace state (unless a ``w3c.tracestate`` tag), event attributes of
non-OpenTelemetry producers, nanoseconds (times are microseconds).

The JSON machinery here (documents or JSON lines in chunks, parsed by DuckDB's
``json_transform`` with an explicit type, malformed lines rejected) is shared with
``latkit.ingest.jaeger`` through ``read_json_spans``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from latkit.ingest import (
    MAX_RECORD_BYTES,
    LoadError,
    Reject,
    Rows,
    Source,
    excerpt,
    input_errors,
)
from latkit.schema import SPAN_KINDS, SPAN_STAGING

FORMAT = "zipkin_json"

#: Bytes of whole lines handed to DuckDB at a time (a single document is read whole).
CHUNK_BYTES = 32 * 1024 * 1024

# --- sniffing -------------------------------------------------------------------------------

_ARRAY_OF_OBJECTS = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*\[\s*(?:\[\s*)?\{")
_ID_KEY = re.compile(rb'"id"\s*:')


def sniff(head: bytes) -> bool:
    """Whether ``head`` looks like Zipkin v2 JSON: an array (of arrays) of span objects.

    >>> sniff(b'[{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","name":"get"}]')
    True
    >>> sniff(b'[{"traceID":"5af7183fb1d4cf5f","spanID":"352bff9a74ca9ad2"}]')  # Jaeger
    False
    """
    return bool(_ARRAY_OF_OBJECTS.match(head)) and b'"traceId"' in head and bool(
        _ID_KEY.search(head)
    )


# --- what Zipkin and Jaeger share: OpenTelemetry's translation tags --------------------------

#: Tags that the OpenTelemetry -> Zipkin / Jaeger translations write for what those formats have
#: no field for (opentelemetry-specification, common/mapping-to-non-otlp.md; the Collector's
#: pkg/translator/jaeger and zipkin). They become columns, not attributes.
OTEL_TAGS = (
    "otel.status_code",
    "otel.status_description",
    "error",
    "otel.scope.name",
    "otel.scope.version",
    "otel.library.name",
    "otel.library.version",
    "span.kind",
    "w3c.tracestate",
)

_KINDS = tuple(k for k in SPAN_KINDS if k != "unspecified")

#: SQL macros over a span's tags as a key/value list (``latkit.schema.KEY_VALUES``).
OTEL_TAG_MACROS = (
    """
    CREATE MACRO span_tag(kvs, k) AS
        list_extract(list_filter(kvs, lambda span_tag_kv: span_tag_kv.key = k), 1).value
    """,
    # An id of at most n hex digits, left-padded to n (old Jaeger and Tempo drop leading
    # zeros; Zipkin's 64-bit trace ids are padded to 128 bits); anything else is NULL.
    """
    CREATE MACRO hex_id(s, n) AS
        CASE WHEN regexp_full_match(s, '[0-9A-Fa-f]{1,' || n || '}') THEN lpad(lower(s), n, '0') END
    """,
    """
    CREATE MACRO hex_parent_id(s) AS nullif(hex_id(s, 16), '0000000000000000')
    """,
    # The kind field, else the span.kind tag, else internal (a local span).
    f"""
    CREATE MACRO span_kind(k, kvs) AS
        CASE
            WHEN coalesce(nullif(lower(k), ''), lower(span_tag(kvs, 'span.kind')), 'internal')
                 IN {_KINDS}
            THEN coalesce(nullif(lower(k), ''), lower(span_tag(kvs, 'span.kind')), 'internal')
            ELSE 'unspecified'
        END
    """,
    """
    CREATE MACRO span_status(kvs) AS
        CASE
            WHEN upper(span_tag(kvs, 'otel.status_code')) = 'ERROR' THEN 'error'
            WHEN upper(span_tag(kvs, 'otel.status_code')) = 'OK' THEN 'ok'
            WHEN lower(span_tag(kvs, 'error')) IS DISTINCT FROM 'false'
                 AND span_tag(kvs, 'error') IS NOT NULL THEN 'error'
            ELSE 'unset'
        END
    """,
    # Jaeger's error tag is a bool; Brave's and the OpenTelemetry Zipkin exporter's holds
    # the message.
    """
    CREATE MACRO span_status_message(kvs) AS
        coalesce(
            nullif(span_tag(kvs, 'otel.status_description'), ''),
            CASE WHEN lower(span_tag(kvs, 'error')) NOT IN ('true', 'false')
                 THEN nullif(span_tag(kvs, 'error'), '') END
        )
    """,
    """
    CREATE MACRO span_scope(kvs) AS
        coalesce(span_tag(kvs, 'otel.scope.name'), span_tag(kvs, 'otel.library.name'))
    """,
    f"""
    CREATE MACRO span_attributes(kvs) AS
        coalesce(list_filter(kvs, lambda kv: kv.key NOT IN {OTEL_TAGS}), [])
    """,
)


# --- reading JSON documents in chunks (shared with the Jaeger reader) ------------------------


@dataclass(frozen=True)
class SpanQuery:
    """How one JSON trace format becomes ``SPAN_STAGING`` rows.

    ``sql`` reads ``chunk(line_no, line)`` (one JSON document per row) and returns the
    staging columns plus ``line_no`` and ``problem`` (NULL, or why that span is rejected).
    ``recognised`` is a SQL condition on ``line`` that is true for a document of this
    format, so that a document giving no span is rejected only when it is not one.
    """

    format: str
    sql: str
    recognised: str
    what: str
    params: dict[str, Any] = field(default_factory=dict)
    macros: tuple[str, ...] = ()


def read_json_spans(
    source: Source, query: SpanQuery, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Rows | Reject]:
    """Spans of a JSON file (one document, or one per line) through ``query``.

    Memory is bounded by ``chunk_bytes`` of lines for JSON lines; a file that is one
    (pretty-printed) document is read whole. A line that is not JSON, a document that is not
    of the format and a span the query marks with a ``problem`` each become one ``Reject``.
    """
    import duckdb

    con = duckdb.connect()
    try:
        for macro in (*OTEL_TAG_MACROS, *query.macros):
            con.execute(macro)
        for piece in _pieces(source, con, max(int(chunk_bytes), 1024)):
            if isinstance(piece, Reject):
                yield piece
            else:
                yield from _chunk(con, query, *piece)
    except LoadError:
        raise
    except duckdb.Error as e:
        raise LoadError(f"{source.name}: {query.format}: {e}") from e
    finally:
        con.close()


def _pieces(
    source: Source, con: Any, chunk_bytes: int
) -> Iterator[tuple[list[int], list[bytes]] | Reject]:
    """(line numbers, lines) of about ``chunk_bytes``; a whole document is one "line"."""
    try:
        stream = source.open()
    except OSError as e:
        raise LoadError(f"{source.name}: cannot open: {e}") from e
    line_no, carry, first, offset = 1, b"", True, 0
    with stream:
        try:
            while block := _read(stream, chunk_bytes):
                offset += len(block)
                data = carry + block
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = _bounded(source, data, line_no)
                    continue
                lines = data[:cut].split(b"\n")[:-1]
                carry = data[cut:]
                if first:
                    first = False
                    if not _is_json_lines(con, lines):
                        rest, size = [], len(data)
                        while block := _read(stream, chunk_bytes):
                            rest.append(block)
                            size += len(block)
                            _bounded(source, b"", line_no, size)
                        yield [1], [data + b"".join(rest)]
                        return
                yield list(range(line_no, line_no + len(lines))), lines
                line_no += len(lines)
        except _Truncated as e:
            if offset == 0:
                raise LoadError(f"{source.name}: cannot decompress: {e}") from e
            if carry:
                yield [line_no], [carry]
                line_no += 1
            yield Reject(
                f"line {line_no}", f"the file is truncated or corrupt after {offset} bytes: {e}"
            )
            return
    if carry.strip():
        yield [line_no], [carry]


class _Truncated(Exception):
    pass


def _bounded(source: Source, data: bytes, line_no: int, size: int | None = None) -> bytes:
    """``data``, unless a document or line read whole grows past ``MAX_RECORD_BYTES``."""
    if (len(data) if size is None else size) > MAX_RECORD_BYTES:
        raise LoadError(
            f"{source.name}: a JSON document or line of more than {MAX_RECORD_BYTES:,} bytes "
            f"(from line {line_no}), which would be read whole: write one document per line"
        )
    return data


def _read(stream: IO[bytes], n: int) -> bytes:
    try:
        return stream.read(n)
    except (OSError, EOFError, ValueError) as e:
        raise _Truncated(str(e)) from e
    except Exception as e:  # zstandard raises its own error type
        if type(e).__module__.startswith("zstandard"):
            raise _Truncated(str(e)) from e
        raise


def _is_json_lines(con: Any, lines: list[bytes]) -> bool:
    """Whether the file is JSON lines: its first non-blank line is a JSON document alone."""
    for line in lines:
        if line.strip():
            text = line.decode("utf-8", "replace")
            return bool(con.execute("SELECT json_valid(?)", [text]).fetchall()[0][0])
    return True


def _chunk(
    con: Any, query: SpanQuery, line_nos: list[int], lines: list[bytes]
) -> Iterator[Rows | Reject]:
    import duckdb

    rejects: list[Reject] = []
    keep_nos, texts = [], []
    for no, raw in zip(line_nos, lines, strict=True):
        raw = raw.removeprefix(b"\xef\xbb\xbf") if no == 1 else raw
        if not raw.strip():
            continue
        try:
            texts.append(raw.decode("utf-8"))
            keep_nos.append(no)
        except UnicodeDecodeError as e:
            rejects.append(Reject(f"line {no}", f"not UTF-8 text: {e}", excerpt(raw)))
    table = pa.table(
        {"line_no": pa.array(keep_nos, pa.int64()), "line": pa.array(texts, pa.large_string())}
    )
    spans = None
    if table.num_rows:
        try:
            spans = _query(con, query, table)
        except duckdb.Error:
            spans = _query_good_lines(con, query, table, rejects)
    if table.num_rows:
        rejects += _not_recognised(con, query, table, spans, rejects)
    if spans is not None and spans.num_rows:
        bad = pc.is_valid(spans["problem"])
        for row in spans.filter(bad).select(["line_no", "problem", "name"]).to_pylist():
            rejects.append(
                Reject(f"line {row['line_no']}", row["problem"], excerpt(row["name"] or ""))
            )
        spans = spans.filter(pc.invert(bad))
    rejects.sort(key=lambda r: int(r.position.split()[-1]))
    yield from rejects
    if spans is not None and spans.num_rows:
        batch = spans.select(SPAN_STAGING.names).cast(SPAN_STAGING)
        yield Rows("spans", batch, read=batch.num_rows)


def _query(con: Any, query: SpanQuery, table: pa.Table) -> pa.Table:
    con.register("chunk", table)
    try:
        with input_errors():
            return con.sql(query.sql, params=query.params).to_arrow_table()
    finally:
        con.unregister("chunk")


def _query_good_lines(
    con: Any, query: SpanQuery, table: pa.Table, rejects: list[Reject]
) -> pa.Table | None:
    """The spans of the lines that are JSON; each line that is not becomes a reject."""
    import duckdb

    parts = []
    for i in range(table.num_rows):
        one = table.slice(i, 1)
        try:
            parts.append(_query(con, query, one))
        except duckdb.Error as e:
            line_no, line = one["line_no"][0].as_py(), one["line"][0].as_py()
            position = f"line {_error_line(line_no, line, e)}"
            rejects.append(Reject(position, _short(e), excerpt(line)))
    return pa.concat_tables(parts) if parts else None


def _not_recognised(
    con: Any, query: SpanQuery, table: pa.Table, spans: pa.Table | None, rejects: list[Reject]
) -> list[Reject]:
    """Rejects for the documents that gave no span because they are not of the format."""
    done = {int(r.position.split()[-1]) for r in rejects}
    if spans is not None and spans.num_rows:
        done |= set(pc.unique(spans["line_no"]).to_pylist())
    table = table.filter(pc.invert(pc.is_in(table["line_no"], pa.array(sorted(done), pa.int64()))))
    if not table.num_rows:
        return []
    con.register("chunk", table)
    try:
        rows = con.execute(
            f"SELECT line_no, line FROM chunk WHERE NOT coalesce({query.recognised}, false)"
        ).fetchall()
    finally:
        con.unregister("chunk")
    return [Reject(f"line {no}", f"not {query.what}", excerpt(line)) for no, line in rows]


def _error_line(line_no: int, text: str, error: Exception) -> int:
    """The line DuckDB's "at byte N" points to, inside a multi-line document."""
    if m := re.search(r"at byte (\d+)", str(error)):
        return line_no + text.encode()[: int(m.group(1))].count(b"\n")
    return line_no


def _short(error: Exception) -> str:
    text = str(error).split("  Input:", 1)[0].strip()
    text = re.sub(r"^[A-Za-z ]*Error: ", "", text)
    return f"not JSON: {text}" if text.startswith("Malformed JSON") else text


# --- Zipkin ----------------------------------------------------------------------------------

_ENDPOINT = {"serviceName": "VARCHAR", "ipv4": "VARCHAR", "ipv6": "VARCHAR", "port": "BIGINT"}
_SPAN = {
    "traceId": "VARCHAR",
    "id": "VARCHAR",
    "parentId": "VARCHAR",
    "name": "VARCHAR",
    "kind": "VARCHAR",
    "timestamp": "BIGINT",
    "duration": "BIGINT",
    "localEndpoint": _ENDPOINT,
    "remoteEndpoint": _ENDPOINT,
    "tags": "MAP(VARCHAR, VARCHAR)",
    "annotations": [{"timestamp": "BIGINT", "value": "VARCHAR"}],
    "shared": "BOOLEAN",
}

_MACROS = (
    # An OpenTelemetry exporter's event annotation: {"<name>": {<attributes>}}.
    """
    CREATE MACRO zipkin_event(a) AS
        CASE
            WHEN starts_with(ltrim(a.value), '{') AND json_valid(a.value)
                 AND json_type(map_values(json_transform(a.value, '"MAP(VARCHAR, JSON)"'))[1])
                     = 'OBJECT'
            THEN {
                'time_ns': a.timestamp * 1000,
                'name': map_keys(json_transform(a.value, '"MAP(VARCHAR, JSON)"'))[1],
                'attributes': map_entries(json_transform(
                    map_values(json_transform(a.value, '"MAP(VARCHAR, JSON)"'))[1],
                    '"MAP(VARCHAR, VARCHAR)"'))
            }
            ELSE {'time_ns': a.timestamp * 1000, 'name': a.value, 'attributes': []}
        END
    """,
)

#: One row per span of the documents in ``chunk``; see the module docstring for the rules.
_SQL = """
    WITH spans AS (
        SELECT line_no, unnest(
            CASE
                WHEN starts_with(ltrim(line), '{') THEN
                    CASE WHEN json_exists(line, '$.traceId') THEN [json_transform(line, $span)] END
                WHEN regexp_matches(line, '^\\s*\\[\\s*\\[')
                    THEN flatten(json_transform(line, $traces))
                ELSE json_transform(line, $spans)
            END
        ) AS s
        FROM chunk
    ),
    base AS (
        SELECT
            line_no,
            s,
            hex_id(s.traceId, 32) AS trace_id,
            hex_id(s.id, 16) AS id,
            hex_parent_id(s.parentId) AS parent_id,
            coalesce(map_entries(s.tags), []) AS tags,
            s.localEndpoint.serviceName AS service
        FROM spans
        WHERE s IS NOT NULL
    ),
    halves AS (
        SELECT
            *,
            upper(s.kind) = 'SERVER' AND id IS NOT NULL AND (
                coalesce(s.shared, false)
                OR bool_or(upper(s.kind) = 'CLIENT') OVER (PARTITION BY trace_id, id)
            ) AS server_half
        FROM base
    ),
    ids AS (
        SELECT
            *,
            CASE WHEN server_half THEN left(sha256(trace_id || id || 'server'), 16) ELSE id END
                AS span_id,
            CASE WHEN server_half THEN id ELSE parent_id END AS direct_parent
        FROM halves
    ),
    servers AS (
        SELECT trace_id, id AS shared_id, service, any_value(span_id) AS server_id
        FROM ids
        WHERE server_half
        GROUP BY ALL
    )
    SELECT
        ids.line_no,
        CASE
            WHEN ids.trace_id IS NULL OR ids.span_id IS NULL
                THEN 'a span without a valid traceId and id'
            WHEN s.timestamp IS NULL THEN 'a span without a timestamp'
        END AS problem,
        ids.trace_id,
        ids.span_id,
        coalesce(servers.server_id, direct_parent) AS parent_span_id,
        span_tag(tags, 'w3c.tracestate') AS trace_state,
        s.name AS name,
        span_kind(s.kind, tags) AS kind,
        coalesce(ids.service, 'unknown_service') AS service,
        s.timestamp * 1000 AS start_ns,
        (s.timestamp + coalesce(s.duration, 0)) * 1000 AS end_ns,
        span_status(tags) AS status,
        span_status_message(tags) AS status_message,
        span_scope(tags) AS scope,
        list_concat(
            span_attributes(tags),
            list_filter(
                [
                    {'key': 'peer.service', 'value': s.remoteEndpoint.serviceName},
                    {'key': 'network.peer.address',
                     'value': coalesce(s.remoteEndpoint.ipv4, s.remoteEndpoint.ipv6)},
                    {'key': 'network.peer.port', 'value': s.remoteEndpoint.port::VARCHAR},
                    {'key': 'db.system',
                     'value': CASE WHEN span_tag(tags, 'sql.query') IS NOT NULL
                                   THEN split_part(lower(s.remoteEndpoint.serviceName), '-', 1) END}
                ],
                lambda extra: extra.value IS NOT NULL AND span_tag(tags, extra.key) IS NULL
            )
        ) AS attributes,
        CASE WHEN ids.service IS NOT NULL
             THEN [{'key': 'service.name', 'value': ids.service}] ELSE [] END
            AS resource_attributes,
        coalesce(list_transform(s.annotations, lambda a: zipkin_event(a)), []) AS events,
        [] AS links
    FROM ids
    LEFT JOIN servers
        ON servers.trace_id = ids.trace_id
        AND servers.shared_id = ids.direct_parent
        AND servers.service IS NOT DISTINCT FROM ids.service
        AND NOT ids.server_half
    ORDER BY ids.line_no
"""

QUERY = SpanQuery(
    format=FORMAT,
    sql=_SQL,
    recognised="regexp_matches(line, '^\\s*\\[')",
    what="a Zipkin v2 JSON list of spans",
    params={
        "span": json.dumps(_SPAN),
        "spans": json.dumps([_SPAN]),
        "traces": json.dumps([[_SPAN]]),
    },
    macros=_MACROS,
)


def read(
    source: Source, *, chunk_bytes: int = CHUNK_BYTES, **options: object
) -> Iterator[Rows | Reject]:
    """Spans of a Zipkin v2 JSON file, as ``Rows("spans", ...)`` in ``SPAN_STAGING`` shape.

    A line that is not JSON, a document that is not a list of spans and a span without a
    valid id or a timestamp each become one ``Reject``.

    >>> rows = [r for r in read(Source.of("zipkin.json")) if isinstance(r, Rows)]
    ... # doctest: +SKIP
    """
    return read_json_spans(source, QUERY, chunk_bytes)
