"""The canonical tables, and the Arrow shapes that readers hand to the workbook.

Readers never write to DuckDB themselves: each yields Arrow batches in one of the *staging*
shapes below, and the workbook enriches them (``latkit.enrich``) and inserts them into the
canonical tables, so every format gets the same treatment and the same deduplication.
"""

from __future__ import annotations

import pyarrow as pa

#: Bumped whenever a canonical table changes; ``latkit.workbook`` migrates older files.
SCHEMA_VERSION = 1

#: An attribute list: every key kept, values rendered as text (bools as ``true``/``false``,
#: numbers in decimal, arrays and maps as JSON). A list of structs is much cheaper to build
#: and store than a DuckDB MAP (NOTES.md), and ``attr(list, 'key')`` reads one value back.
KEY_VALUES = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))

SPAN_EVENT = pa.struct([("time_ns", pa.int64()), ("name", pa.string()), ("attributes", KEY_VALUES)])
SPAN_LINK = pa.struct(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("trace_state", pa.string()),
        ("attributes", KEY_VALUES),
    ]
)

#: What a trace reader yields for the ``spans`` table (one row per span).
#: Ids are lowercase hex (32 / 16 characters); ``parent_span_id`` is NULL at a root;
#: ``kind`` is one of server client internal producer consumer unspecified;
#: ``status`` one of ok error unset; ``service`` is the resource's ``service.name``.
SPAN_STAGING = pa.schema(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("parent_span_id", pa.string()),
        ("trace_state", pa.string()),
        ("name", pa.string()),
        ("kind", pa.string()),
        ("service", pa.string()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("status", pa.string()),
        ("status_message", pa.string()),
        ("scope", pa.string()),
        ("attributes", KEY_VALUES),
        ("resource_attributes", KEY_VALUES),
        ("events", pa.list_(SPAN_EVENT)),
        ("links", pa.list_(SPAN_LINK)),
    ]
)

SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
SPAN_STATUSES = ("unset", "ok", "error")

_KV = "STRUCT(key VARCHAR, value VARCHAR)[]"

#: DDL of every canonical table, in creation order.
TABLES: dict[str, str] = {
    "meta": """
        CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)
    """,
    "loads": """
        CREATE TABLE IF NOT EXISTS loads (
            load_id     INTEGER,
            path        VARCHAR,
            sha256      VARCHAR,
            bytes       BIGINT,
            format      VARCHAR,
            rows        MAP(VARCHAR, BIGINT),
            read        BIGINT,
            duplicates  BIGINT,
            rejected    BIGINT,
            seconds     DOUBLE,
            loaded_at   TIMESTAMPTZ
        )
    """,
    "rejects": """
        CREATE TABLE IF NOT EXISTS rejects (
            load_id   INTEGER,
            path      VARCHAR,
            position  VARCHAR,
            reason    VARCHAR,
            excerpt   VARCHAR
        )
    """,
    "spans": f"""
        CREATE TABLE IF NOT EXISTS spans (
            trace_id            VARCHAR,
            span_id             VARCHAR,
            parent_span_id      VARCHAR,
            trace_state         VARCHAR,
            name                VARCHAR,
            kind                VARCHAR,
            service             VARCHAR,
            start_ns            BIGINT,
            end_ns              BIGINT,
            duration_ms         DOUBLE,
            status              VARCHAR,
            status_message      VARCHAR,
            category            VARCHAR,
            route               VARCHAR,
            http_method         VARCHAR,
            http_status_code    INTEGER,
            db_system           VARCHAR,
            db_statement        VARCHAR,
            fingerprint         VARCHAR,
            query_template      VARCHAR,
            peer                VARCHAR,
            cache_hit           BOOLEAN,
            scope               VARCHAR,
            attributes          {_KV},
            resource_attributes {_KV},
            events              STRUCT(time_ns BIGINT, name VARCHAR, attributes {_KV})[],
            links               STRUCT(trace_id VARCHAR, span_id VARCHAR, trace_state VARCHAR,
                                       attributes {_KV})[],
            source              VARCHAR,
            load_id             INTEGER
        )
    """,
    "queries": """
        CREATE TABLE IF NOT EXISTS queries (
            ts_ns           BIGINT,
            duration_ms     DOUBLE,
            statement       VARCHAR,
            fingerprint     VARCHAR,
            query_template  VARCHAR,
            database        VARCHAR,
            user_name       VARCHAR,
            application     VARCHAR,
            session_id      VARCHAR,
            pid             INTEGER,
            client          VARCHAR,
            parameters      VARCHAR,
            rows            BIGINT,
            query_id        BIGINT,
            phase_ms        MAP(VARCHAR, DOUBLE),
            line            BIGINT,
            source          VARCHAR,
            load_id         INTEGER
        )
    """,
    "plans": """
        CREATE TABLE IF NOT EXISTS plans (
            plan_id         BIGINT,
            fingerprint     VARCHAR,
            query_template  VARCHAR,
            statement       VARCHAR,
            ts_ns           BIGINT,
            duration_ms     DOUBLE,
            plan            JSON,
            source          VARCHAR,
            load_id         INTEGER
        )
    """,
    "plan_nodes": """
        CREATE TABLE IF NOT EXISTS plan_nodes (
            plan_id                 BIGINT,
            node_id                 INTEGER,
            parent_node_id          INTEGER,
            depth                   INTEGER,
            node_type               VARCHAR,
            relation                VARCHAR,
            schema_name             VARCHAR,
            alias                   VARCHAR,
            index_name              VARCHAR,
            index_cond              VARCHAR,
            filter                  VARCHAR,
            rows_removed_by_filter  BIGINT,
            actual_rows             DOUBLE,
            actual_loops            BIGINT,
            actual_total_ms         DOUBLE,
            plan_rows               DOUBLE,
            total_cost              DOUBLE,
            source                  VARCHAR,
            load_id                 INTEGER
        )
    """,
    "statements": """
        CREATE TABLE IF NOT EXISTS statements (
            fingerprint          VARCHAR,
            query_template       VARCHAR,
            query                VARCHAR,
            query_id             BIGINT,
            database             VARCHAR,
            user_name            VARCHAR,
            calls                BIGINT,
            total_ms             DOUBLE,
            mean_ms              DOUBLE,
            rows                 BIGINT,
            shared_blks_hit      BIGINT,
            shared_blks_read     BIGINT,
            temp_blks_written    BIGINT,
            extra                JSON,
            source               VARCHAR,
            load_id              INTEGER
        )
    """,
    "connections": """
        CREATE TABLE IF NOT EXISTS connections (
            ts_ns        BIGINT,
            event        VARCHAR,
            session_id   VARCHAR,
            pid          INTEGER,
            user_name    VARCHAR,
            database     VARCHAR,
            application  VARCHAR,
            client       VARCHAR,
            session_ms   DOUBLE,
            detail       VARCHAR,
            line         BIGINT,
            source       VARCHAR,
            load_id      INTEGER
        )
    """,
}

#: Tables that readers fill (the rest are bookkeeping).
DATA_TABLES = ("spans", "queries", "plans", "plan_nodes", "statements", "connections")

#: Tables whose rows are derived from records of another table (a plan's nodes), so they
#: count as rows added but not as records read or loaded.
DERIVED_TABLES = ("plan_nodes",)

#: SQL macros every workbook has. ``attr(attributes, 'db.statement')`` reads one attribute.
MACROS = (
    """
    CREATE OR REPLACE MACRO attr(kvs, k) AS
        list_extract(list_filter(kvs, lambda kv: kv.key = k), 1).value
    """,
)


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one array: itself, its only chunk (Arrow's ``combine_chunks`` copies
    even one chunk: 3.5% of the CPU of loading 1M OTLP spans, most of it the kernel zeroing
    the copy's fresh pages), its chunks joined, or an empty array of its type."""
    if isinstance(column, pa.Array):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type)
