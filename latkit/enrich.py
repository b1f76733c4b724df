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

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from latkit import fingerprint
from latkit.schema import KEY_VALUES, one_array

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
    of its keys present in each row (of a key repeated in a row, its last value). The
    key/value lists are scanned once for all keys.

    Why a compiled scan: the keys are compared byte by byte in one numba loop over the Arrow
    buffers, and each column is then one ``take`` of the values. The vectorised Arrow version
    before it (``index_in`` over every key, ``list_parent_indices``, then a numpy pass per
    key) measured 0.23-0.31 CPU-s on the benchmark's 1M spans (7M attributes, five batches),
    this one 0.18-0.27, interleaved on a shared machine: the nine ``take`` calls are now most
    of it. numba is loaded already: ``fingerprint`` needs it.
    """
    kvs = one_array(kvs)
    if kvs.type != KEY_VALUES:
        kvs = kvs.cast(KEY_VALUES)
    n = len(kvs)
    flat = kvs.flatten()
    if len(flat) == 0:
        return {name: pa.nulls(n, pa.string()) for name in wanted}
    keys = flat.field("key")
    list_offsets = np.frombuffer(kvs.buffers()[1], np.int32)[kvs.offset : kvs.offset + n + 1]
    key_offsets = np.frombuffer(keys.buffers()[1], np.int32)[
        keys.offset : keys.offset + len(keys) + 1
    ]
    key_data = np.frombuffer(keys.buffers()[2] or b"", np.uint8)
    key_valid = (
        keys.is_valid().to_numpy(zero_copy_only=False) if keys.null_count else np.ones(0, np.bool_)
    )
    names = list(wanted)
    words = [
        (k.encode(), names.index(name), rank)
        for name in names
        for rank, k in enumerate(wanted[name])
    ]
    words.sort(key=lambda w: len(w[0]))
    longest = max(len(w[0]) for w in words)
    by_length = np.searchsorted([len(w[0]) for w in words], np.arange(longest + 2)).astype(np.int64)
    word_data = np.frombuffer(b"".join(w[0] for w in words), np.uint8)
    word_offsets = np.concatenate([[0], np.cumsum([len(w[0]) for w in words])]).astype(np.int64)
    word_column = np.array([w[1] for w in words], np.int64)
    word_rank = np.array([w[2] for w in words], np.int64)
    pick = _picker()(
        list_offsets - list_offsets[0],
        key_offsets,
        key_data,
        key_valid,
        word_data,
        word_offsets,
        by_length,
        word_column,
        word_rank,
        len(names),
    )
    values = flat.field("value")
    out = {}
    for c, name in enumerate(names):
        mask = pick[c] < 0
        if mask.all():
            out[name] = pa.nulls(n, pa.string())
        else:
            out[name] = values.take(pa.array(np.where(mask, 0, pick[c]), mask=mask))
    return out


@lru_cache(maxsize=1)
def _picker() -> Any:
    import numba

    return numba.njit(cache=True, nogil=True, boundscheck=False)(_pick)


def _pick(
    list_offsets: np.ndarray,
    key_offsets: np.ndarray,
    key_data: np.ndarray,
    key_valid: np.ndarray,
    word_data: np.ndarray,
    word_offsets: np.ndarray,
    by_length: np.ndarray,
    word_column: np.ndarray,
    word_rank: np.ndarray,
    columns: int,
) -> np.ndarray:
    """For each column and row, the index of the flattened entry whose key is the
    best-ranked of that column's words present in the row (the last of equals), else -1.
    Words are sorted by length; ``by_length[k]`` is the first word of length ``k`` or more."""
    rows = len(list_offsets) - 1
    pick = np.full((columns, rows), -1, np.int64)
    rank = np.zeros((columns, rows), np.int64)
    longest = len(by_length) - 2
    for r in range(rows):
        for j in range(list_offsets[r], list_offsets[r + 1]):
            if len(key_valid) > 0 and not key_valid[j]:
                continue
            start = key_offsets[j]
            size = key_offsets[j + 1] - start
            if size > longest:
                continue
            for w in range(by_length[size], by_length[size + 1]):
                o = word_offsets[w]
                same = True
                for b in range(size):
                    if key_data[start + b] != word_data[o + b]:
                        same = False
                        break
                if same:
                    c = word_column[w]
                    if pick[c, r] < 0 or word_rank[w] <= rank[c, r]:
                        pick[c, r] = j
                        rank[c, r] = word_rank[w]
    return pick


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
