"""Enrichment that every analysis needs, done once at load time.

Readers hand over staged batches (``latkit.schema``); this module adds what the analyses
query: a span's category, route, HTTP method and status, database system and statement,
peer, cache hit, and for every SQL text its template and fingerprint.

Both generations of the OpenTelemetry semantic conventions are read (NOTES.md: Python
instrumentations default to the older names, JavaScript ones write only the current names),
plus the tags Zipkin's Brave instrumentation writes. The hot keys are promoted in Arrow,
vectorised over the whole batch (a DuckDB ``list_filter`` per key and row is several times
slower), and the rules that combine them are one SQL statement, ``SPANS_SELECT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from latkit import fingerprint

if TYPE_CHECKING:
    from latkit.redact import Redaction

#: Promoted columns and the attribute keys they are read from, first match wins.
SPAN_KEYS: dict[str, tuple[str, ...]] = {
    "_route": ("http.route", "url.template", "http.path"),  # http.path: Brave's stand-in
    "_http_method": ("http.request.method", "http.method"),
    "_http_status_code": ("http.response.status_code", "http.status_code"),
    "_db_system": ("db.system.name", "db.system"),
    "_db_statement": ("db.query.text", "db.statement", "sql.query"),
    "_peer": ("server.address", "net.peer.name", "peer.service", "network.peer.address"),
    "_rpc_system": ("rpc.system",),
    "_messaging_system": ("messaging.system",),
    "_cache_hit": ("cache.hit",),
}

#: Database systems whose spans are cache lookups, not database work.
CACHE_SYSTEMS = ("redis", "memcached", "valkey")

#: The canonical ``spans`` row from a staged batch with promoted columns (``_staged``),
#: in the column order of the ``spans`` table.
SPANS_SELECT = f"""
    SELECT
        trace_id,
        span_id,
        nullif(parent_span_id, '') AS parent_span_id,
        trace_state,
        name,
        kind,
        coalesce(service, 'unknown_service') AS service,
        start_ns,
        end_ns,
        (end_ns - start_ns) / 1e6 AS duration_ms,
        status,
        status_message,
        CASE
            WHEN lower(_db_system) IN {CACHE_SYSTEMS} THEN 'cache'
            WHEN _db_system IS NOT NULL THEN 'db'
            WHEN _messaging_system IS NOT NULL OR kind IN ('producer', 'consumer')
                THEN 'messaging'
            WHEN _rpc_system IS NOT NULL THEN 'rpc'
            WHEN kind = 'server' THEN 'http_server'
            WHEN kind = 'client' THEN 'http_client'
            ELSE 'internal'
        END AS category,
        coalesce(_route, CASE WHEN kind = 'server' THEN name END) AS route,
        upper(_http_method) AS http_method,
        try_cast(_http_status_code AS INTEGER) AS http_status_code,
        lower(_db_system) AS db_system,
        _db_statement AS db_statement,
        _fingerprint AS fingerprint,
        _query_template AS query_template,
        _peer AS peer,
        try_cast(_cache_hit AS BOOLEAN) AS cache_hit,
        scope,
        attributes,
        resource_attributes,
        events,
        links,
        $source AS source,
        $load_id AS load_id
    FROM _staged
"""

#: For the tables fed by query logs: which column holds the SQL text to fingerprint.
STATEMENT_COLUMN = {"queries": "statement", "plans": "statement", "statements": "query"}


def attribute(kvs: pa.Array | pa.ChunkedArray, keys: tuple[str, ...]) -> pa.Array:
    """The value of the first of ``keys`` present in each row's key/value list, else null.

    >>> kvs = pa.array([[{"key": "a", "value": "1"}], [], [{"key": "b", "value": "2"}]],
    ...                type=latkit.schema.KEY_VALUES)
    >>> attribute(kvs, ("b", "a")).to_pylist()
    ['1', None, '2']
    """
    return attributes(kvs, {"value": keys})["value"]


def attributes(
    kvs: pa.Array | pa.ChunkedArray, wanted: dict[str, tuple[str, ...]]
) -> dict[str, pa.Array]:
    """Several promoted columns at once: for each name in ``wanted``, the value of the first
    of its keys present in each row. The key/value lists are scanned once for all keys."""
    if isinstance(kvs, pa.ChunkedArray):
        kvs = kvs.combine_chunks()
    n = len(kvs)
    flat = kvs.flatten()
    if len(flat) == 0:
        return {name: pa.nulls(n, pa.string()) for name in wanted}
    every_key = list(dict.fromkeys(k for keys in wanted.values() for k in keys))
    # Which wanted key (by position in every_key) each flattened entry has, or -1.
    which = pc.index_in(flat.field("key"), value_set=pa.array(every_key, pa.string()))
    which_np = which.fill_null(-1).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(which_np >= 0)
    hit_key = which_np[hits]
    hit_row = pc.list_parent_indices(kvs).to_numpy()[hits]
    values = flat.field("value")
    out = {}
    for name, keys in wanted.items():
        pick = np.full(n, -1, dtype=np.int64)
        # The lowest-priority key is written first so that a preferred key overwrites it.
        for key in reversed(keys):
            chosen = hit_key == every_key.index(key)
            pick[hit_row[chosen]] = hits[chosen]
        mask = pick < 0
        if mask.all():
            out[name] = pa.nulls(n, pa.string())
        else:
            out[name] = values.take(pa.array(np.where(mask, 0, pick), mask=mask))
    return out


def stage_spans(batch: pa.RecordBatch | pa.Table, redaction: Redaction | None = None) -> pa.Table:
    """A staged span batch with the promoted columns that ``SPANS_SELECT`` reads; redacted
    (``latkit.redact``) when a ``redaction`` is given. Templates and fingerprints come from
    the original statements, so a redacted workbook joins an unredacted one."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    for column, values in attributes(table.column("attributes"), SPAN_KEYS).items():
        table = table.append_column(column, values)
    query_template, fp = fingerprint.templates(table.column("_db_statement"))
    table = table.append_column("_query_template", query_template)
    table = table.append_column("_fingerprint", fp)
    if redaction is None:
        return table
    table = redaction.spans(table)
    # The peer may have been a client address, now hashed: promote it again.
    peer = attribute(table.column("attributes"), SPAN_KEYS["_peer"])
    return table.set_column(table.schema.get_field_index("_peer"), "_peer", peer)


def stage_sql_texts(
    table_name: str, batch: pa.RecordBatch | pa.Table, redaction: Redaction | None = None
) -> pa.Table:
    """A query-log batch with ``query_template`` and ``fingerprint`` added where missing;
    redacted (``latkit.redact``) when a ``redaction`` is given."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    column = STATEMENT_COLUMN.get(table_name)
    names = table.column_names
    if column in names and not ("fingerprint" in names and "query_template" in names):
        query_template, fp = fingerprint.templates(table.column(column))
        for name, values in (("query_template", query_template), ("fingerprint", fp)):
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, values)
    return table if redaction is None else redaction.sql_table(table_name, table)
