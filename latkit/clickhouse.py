"""The analyses on a ClickHouse ``otel_traces`` table, where the data is.

Teams with billions of spans keep them in ClickHouse through the OpenTelemetry Collector's
ClickHouse exporter. ``latkit.open_clickhouse`` opens such a table as a workbook whose
queries run inside ClickHouse and return polars frames, so the trace analyses (and the
notebooks that call them) run on it unchanged:

>>> wb = latkit.open_clickhouse("http://localhost:8123", table="otel_traces")  # doctest: +SKIP
>>> budget.by_route(wb)                                                        # doctest: +SKIP
>>> local = wb.sample(traces=500, where="route = $r", params={"r": "/orders/{id}"})
... # doctest: +SKIP

``to_otel_traces(wb)`` goes the other way, for tests and demos: it writes a DuckDB
workbook's spans into an ``otel_traces`` table (a fresh chdb session, embedded ClickHouse,
when no client is given) and returns the ClickHouse-backed workbook over it.

How each analysis stays defined once
------------------------------------
Every analysis is DuckDB SQL over the canonical ``spans`` table, run through ``wb.sql()``
or ``wb.con.cursor().sql()``. A ClickHouse workbook offers the same two entry points and
*translates* each query, rather than each analysis having a second, hand-written
ClickHouse version (which would drift) or moving to Ibis (a rewrite of every analysis, and
a heavy dependency, for two engines we can already name). The translation is sqlglot
(``read="duckdb", write="clickhouse"``) plus the handful of rewrites in ``translate`` and
``_clickhouse_function``, each for a construct sqlglot leaves DuckDB-only or where the two
engines' semantics differ:

- every reference to the table ``spans`` becomes a subquery over ``otel_traces``
  (``spans_sql``): the canonical columns, with ``category``, ``route``, ``db_system`` and
  the rest computed by ``latkit.enrich.SPANS_SELECT`` itself, transpiled, over the
  exporter's columns with the attribute keys of ``latkit.enrich.SPAN_KEYS``: one
  definition of the enrichment for both engines. A subquery rather than a VIEW, so a
  read-only ClickHouse user is enough; ClickHouse pushes the analyses' filters into it.
- ``quantile_cont`` becomes ``quantileExactInclusive``: both interpolate linearly between
  ranks (numpy's default, R7), and give the same floats on the test data.
- ``hash(...)`` becomes ``cityHash64(...)``, ``list_position`` ``indexOf``, ``list_sort``
  ``arraySort``, the ``attr()`` macro a map lookup, ``try_cast`` ``accurateCastOrNull``,
  ``//`` ``intDiv`` (exact on nanoseconds), ``any_value`` ``any``, ``bool_or`` ``max``,
  ``split_part`` an array element, ``string_agg(DISTINCT x ORDER BY x)`` a sorted
  ``groupUniqArray``, ``regexp_replace`` with ``'g'`` ``replaceRegexpAll``, ``time_bucket``
  arithmetic from DuckDB's origin, an ``unnest`` of the attributes an ``arrayJoin`` of
  (key, value) tuples, and ``rowid`` (which the span arrays and the budget join on) a column
  of the subquery: 63 bits of ``cityHash64(TraceId, SpanId, SpanKind)``, the identity DuckDB
  deduplicates spans by.
- A named yes/no column (a comparison, or a CASE of them) is cast to ``Bool``: ClickHouse's
  comparisons give ``UInt8``, which polars reads as a number.
- ``GROUP BY ALL`` becomes positions (DuckDB's meaning; ClickHouse's differs where an alias
  shadows a column), and an ORDER BY name that is a select alias becomes its position.
- Parameters (``$name`` and ``?``) become ClickHouse query parameters (``{p_name:Type}``),
  sent apart from the query text and parsed by the server: no user value is ever pasted
  into SQL.
- Frames an analysis registers on its cursor (``cur.register(name, arrow)``: the budget's
  per-request totals) are uploaded into a temporary table of the session.

Analyses of query logs (``queries``, ``plans``, ``plan_nodes``, ``statements``,
``connections``) do not apply: otel_traces holds spans only. A query that names one of
those tables raises ``NotInClickHouse`` saying which table is missing and what to do.
Analyses that combine traces with a log (``cache.staleness``, ``pooling.no_pool``) ask
``has_rows`` first and give their traces' half here, as on a DuckDB workbook with no log.

Which part runs where
---------------------
Filters, percentiles by route, N+1 runs (window functions), cache hit rates, queries per
request, network edges: inside ClickHouse; only results come back. The latency budget and
the critical path partition each request's time with latkit's numba kernels
(``latkit.analysis.tree``), which SQL cannot express: their *span arrays* (two hashes,
start, end, category code and a flag per span, about 40 bytes a span) are computed in
ClickHouse and streamed to the client, where the kernels run; the per-request totals go back
into a temporary table and the rest of the budget (the join with the requests, the
percentiles) runs in ClickHouse again. ``ClickHouseWorkbook.span_array_shards`` streams
those arrays in shards of whole traces (by a hash of the trace id, ``spans_per_shard`` each),
so a client's memory stays bounded whatever the table's size; each shard is one scan of the
table's needed columns, which is what limits the budget on very large tables (see
docs/clickhouse.md for an estimate at a billion spans).

Writing (``to_otel_traces``) reads the DuckDB spans in Arrow batches, sends each into a
temporary staging table (chdb reads an Arrow IPC file, clickhouse-connect sends Arrow over
HTTP) and converts it with one ``INSERT ... SELECT`` into the exporter's columns, SpanKind
and StatusCode spelled as the exporter writes them (``SPAN_KIND_SERVER``,
``STATUS_CODE_ERROR``). ``ClickHouseWorkbook.sample`` goes back: whole traces, read into
latkit's staging shape and enriched by ``latkit.enrich`` exactly as a loaded file is.

Tested against chdb (embedded ClickHouse 26.9). The clickhouse-connect path (a ClickHouse
server over HTTP) uses the same SQL but has not been run against a server here.

Fingerprints
------------
latkit's query fingerprints are computed in Python at load time (``latkit.fingerprint``),
which ClickHouse cannot run. The workbook asks ClickHouse once for one example statement per
``normalizedQueryHash`` (a few thousand query shapes, whatever the span count), computes
latkit's template and fingerprint of each example here, and hands the mapping back as
array parameters of ``transform()``: fingerprints then equal DuckDB's wherever ClickHouse's
normalisation is no coarser than latkit's (both replace literals and collapse IN lists),
and traces pulled into DuckDB join PostgreSQL logs as before.

Dialect settings sent with every query: ``join_use_nulls = 1`` (an unmatched LEFT JOIN
row has NULLs, as in DuckDB, not default values), ``prefer_column_name_to_alias = 1`` (in
``SELECT any(span_id) AS span_id, argMin(span_id, t)`` the second ``span_id`` is the
column, as in DuckDB, not the aggregate), ``aggregate_functions_null_for_empty = 1``
(``sum(x) FILTER (...)`` over no rows is NULL, not 0; counts stay 0),
``output_format_arrow_string_as_string``
and ``output_format_arrow_low_cardinality_as_dictionary = 0`` (strings come back as Arrow
strings). Unsigned integers are returned as Int64, as DuckDB counts are.

The ClickHouse client libraries (``chdb``, ``clickhouse-connect``; both Apache-2.0) are
optional (``pip install latkit[clickhouse]``) and imported only when a function here is
called.
"""

from __future__ import annotations

import itertools
import re
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import sqlglot
from sqlglot import exp

from latkit import enrich, fingerprint, schema

if TYPE_CHECKING:
    from latkit.workbook import Workbook

__all__ = [
    "OTEL_TRACES_DDL",
    "ClickHouseWorkbook",
    "NotInClickHouse",
    "Window",
    "create_otel_traces",
    "open_clickhouse",
    "to_otel_traces",
]

#: The OpenTelemetry Collector ClickHouse exporter's traces table, verbatim:
#: opentelemetry-collector-contrib, exporter/clickhouseexporter/internal/sqltemplates/
#: traces_table.sql at commit 2bf6b9e1f8c8716ab54eaac1635e56b4d0649900, the newest version
#: of that file found (earlier ones lack the ``*AttributeItems`` columns and the text-index
#: branch; the columns the analyses read are the same in all). ``create_otel_traces`` fills
#: the Go template's fields as the exporter does by default (MergeTree, no cluster, no TTL,
#: bloom-filter indexes).
OTEL_TRACES_DDL = """\
CREATE TABLE IF NOT EXISTS {{ident .Database}}.{{ident .TableName}} {{.ClusterString}} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(SpanAttributes, 'Array(Tuple(String, String))')),
{{- if .HasFullTextSearch}}
    INDEX idx_trace_id TraceId TYPE text(tokenizer = 'array'),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE text(tokenizer = 'array'),
    INDEX idx_res_attr_items ResourceAttributeItems TYPE text(tokenizer = 'array'),
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE text(tokenizer = 'array'),
    INDEX idx_span_attr_items SpanAttributeItems TYPE text(tokenizer = 'array'),
{{- else}}
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
{{- end}}
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {{.Engine}}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{{.TTL}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""  # noqa: E501

#: Canonical tables a ClickHouse workbook does not have (otel_traces holds spans only).
LOG_TABLES = tuple(t for t in schema.DATA_TABLES if t != "spans")

#: Sent with every query (see the module docstring).
SETTINGS = {
    "join_use_nulls": 1,
    "prefer_column_name_to_alias": 1,
    "aggregate_functions_null_for_empty": 1,
    "output_format_arrow_string_as_string": 1,
    "output_format_arrow_low_cardinality_as_dictionary": 0,
}


class NotInClickHouse(Exception):
    """An analysis needs a table that a ClickHouse workbook does not have."""


# -- the canonical spans over otel_traces -------------------------------------------------


#: The exporter's columns that map one to one onto latkit's span columns (both the spans
#: subquery and the staging query for ``sample`` read them).
_SPAN_COLUMNS = """
    nullIf(TraceState, '') AS trace_state,
    toString(SpanName) AS name,
    lower(replaceRegexpOne(SpanKind, '^SPAN_KIND_', '')) AS kind,
    nullIf(toString(ServiceName), '') AS service,
    toUnixTimestamp64Nano(Timestamp) AS start_ns,
    toUnixTimestamp64Nano(Timestamp) + toInt64(Duration) AS end_ns,
    lower(replaceRegexpOne(StatusCode, '^STATUS_CODE_', '')) AS status,
    nullIf(StatusMessage, '') AS status_message,
    nullIf(ScopeName, '') AS scope,
"""


def _lookup(keys: Sequence[str]) -> str:
    """The first of ``keys`` present in ``SpanAttributes``, else NULL (as ``enrich``)."""
    branches = ", ".join(f"mapContains(SpanAttributes, '{k}'), SpanAttributes['{k}']" for k in keys)
    return f"multiIf({branches}, NULL)"


def _staged(table: str, where: str = "") -> str:
    """otel_traces in the shape ``enrich.SPANS_SELECT`` reads (``_staged``), in ClickHouse.

    SpanKind and StatusCode are read both as the exporter writes them (``SPAN_KIND_SERVER``,
    ``STATUS_CODE_ERROR``) and as later exporter versions do (``Server``, ``Error``).
    """
    promoted = ",\n".join(f"{_lookup(keys)} AS {name}" for name, keys in enrich.SPAN_KEYS.items())
    return f"""
        SELECT
            TraceId AS trace_id,
            SpanId AS span_id,
            ParentSpanId AS parent_span_id,
            {_SPAN_COLUMNS}
            SpanAttributes AS attributes,
            ResourceAttributes AS resource_attributes,
            `Events.Name` AS events,  -- no analysis reads events or links
            `Links.SpanId` AS links,
            {promoted},
            transform(normalizedQueryHash(_db_statement), {{_fp_hashes:Array(UInt64)}},
                      {{_fp_fingerprints:Array(String)}}, NULL) AS _fingerprint,
            transform(normalizedQueryHash(_db_statement), {{_fp_hashes:Array(UInt64)}},
                      {{_fp_templates:Array(String)}}, NULL) AS _query_template,
            bitShiftRight(cityHash64(TraceId, SpanId, SpanKind), 1) AS rowid
        FROM {table}
        {"WHERE " + where if where else ""}
    """


def spans_sql(table: str, where: str = "") -> str:
    """The canonical ``spans`` relation over an otel_traces table, as ClickHouse SQL.

    ``latkit.enrich.SPANS_SELECT`` transpiled (``$source`` is ``clickhouse:<table>``,
    ``load_id`` 0), plus ``rowid``; ``where`` (ClickHouse SQL over the exporter's columns)
    restricts the rows read. Needs the ``_fp_*`` parameters of ``_Fingerprints``.
    """
    tree = sqlglot.parse_one(enrich.SPANS_SELECT, read="duckdb")
    assert isinstance(tree, exp.Select)
    for node in list(tree.find_all(exp.Placeholder, exp.Parameter)):
        name = node.name
        value = (
            exp.Literal.string(f"clickhouse:{table}") if name == "source" else exp.Literal.number(0)
        )
        node.replace(value)
    select = _clickhouse_functions(tree)
    assert isinstance(select, exp.Select)
    sql = select.select("rowid").sql(dialect="clickhouse")
    return sql.replace("FROM _staged", f"FROM ({_staged(table, where)}) AS _staged")


# -- translating DuckDB SQL ------------------------------------------------------------------


def _clickhouse_functions(tree: exp.Expr) -> exp.Expr:
    """The DuckDB functions that sqlglot does not map to ClickHouse, rewritten."""
    # Bottom up: a rewritten node is built from its already rewritten children.
    for child in list(tree.iter_expressions()):
        rewritten = _clickhouse_functions(child)
        if rewritten is not child:
            child.replace(rewritten)
    return _clickhouse_function(tree)


def _clickhouse_function(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = [a.copy() for a in node.expressions]
        if name == "attr" and len(args) == 2:
            kvs, key = args
            return exp.If(
                this=exp.func("mapContains", kvs, key),
                true=exp.Bracket(this=kvs.copy(), expressions=[key.copy()]),
                false=exp.Null(),
            )
        if name == "hash":
            return exp.func("cityHash64", *args)
        if name == "list_position":
            return exp.func("indexOf", *args)
        return node
    if isinstance(node, exp.SplitPart):
        text, sep = node.this.copy(), node.args["delimiter"].copy()
        n = node.args["part_index"].copy()
        parts = exp.func("splitByString", sep, exp.func("assumeNotNull", text.copy()))
        return exp.If(
            this=exp.Is(this=text, expression=exp.Null()),
            true=exp.Null(),
            false=exp.func("arrayElement", parts, n),  # 1-based, as split_part
        )
    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.Anonymous):
        return node.this.copy()  # any(): ClickHouse's any already skips NULLs
    if isinstance(node, (exp.LogicalOr, exp.LogicalAnd, exp.AnyValue)):
        name = {exp.LogicalOr: "max", exp.LogicalAnd: "min"}.get(type(node), "any")
        return exp.Anonymous(this=name, expressions=[node.this.copy()])
    if isinstance(node, exp.RegexpReplace):
        flags = node.args.get("modifiers")
        every = flags is not None and "g" in flags.name
        return exp.func(
            "replaceRegexpAll" if every else "replaceRegexpOne",
            node.this.copy(),
            node.expression.copy(),
            node.args["replacement"].copy(),
        )
    if isinstance(node, exp.IntDiv):  # not a float division and a cast: exact for big ints
        return exp.func("intDiv", node.this.copy(), node.expression.copy())
    if (
        isinstance(node, exp.Explode)
        and isinstance(node.this, exp.Column)
        and node.this.name in ("attributes", "resource_attributes")
    ):
        # The canonical key/value list is a Map here: unnest it as (key, value) tuples.
        pairs = sqlglot.parse_one(
            "arrayJoin(arrayMap((k, v) -> CAST((k, v), 'Tuple(key String, value String)'),"
            " mapKeys(__kvs__), mapValues(__kvs__)))",
            read="clickhouse",
        )
        for column in list(pairs.find_all(exp.Column)):
            if column.name == "__kvs__":
                column.replace(node.this.copy())
        return pairs
    if isinstance(node, exp.ArrayAppend):
        return exp.func("arrayPushBack", node.this.copy(), node.expression.copy())
    if isinstance(node, exp.ArraySort) and node.args.get("expression") is None:
        return exp.func("arraySort", node.this.copy())  # ascending, as list_sort
    if (
        isinstance(node, exp.DateBin)
        and isinstance(node.this, exp.Anonymous)
        and node.this.name == "latkit_interval_us"
    ):
        width = node.this.expressions[0]
        origin = exp.Literal.number(_BUCKET_ORIGIN_US)
        us = exp.func("toUnixTimestamp64Micro", node.expression.copy())
        start = exp.Add(
            this=exp.Mul(
                this=exp.func("intDiv", exp.Sub(this=us, expression=origin), width.copy()),
                expression=width.copy(),
            ),
            expression=origin.copy(),
        )
        return exp.func("fromUnixTimestamp64Micro", start)
    if isinstance(node, exp.GroupConcat):
        return _string_agg(node)
    if isinstance(node, exp.PercentileCont) and node.args.get("expression") is not None:
        fraction = node.args["expression"].sql(dialect="clickhouse")
        return exp.Anonymous(
            this=f"quantileExactInclusive({fraction})", expressions=[node.this.copy()]
        )
    if isinstance(node, exp.TryCast):
        target = exp.DataType.build(node.to.sql(dialect="duckdb"), dialect="duckdb")
        ch_type = target.sql(dialect="clickhouse")
        if ch_type.startswith("Nullable("):
            ch_type = ch_type[len("Nullable(") : -1]
        return exp.func("accurateCastOrNull", node.this.copy(), exp.Literal.string(ch_type))
    return node


def _expand_group_by_all(group: exp.Group) -> None:
    """``GROUP BY ALL`` as DuckDB means it: by every selected expression that aggregates
    nothing and is not a constant, written as positions (ClickHouse's own GROUP BY ALL,
    and grouping by an expression, differ where an alias shadows a column)."""
    select = group.parent
    assert isinstance(select, exp.Select)
    keys = []
    aggregates: set[str] = set()  # aliases of aggregates, which later items may reuse
    for i, e in enumerate(select.expressions, start=1):
        inner = e.this if isinstance(e, exp.Alias) else e
        columns = list(inner.find_all(exp.Column))
        aggregate = inner.find(exp.AggFunc, exp.Window) is not None or any(
            not c.table and c.name in aggregates for c in columns
        )
        if aggregate:
            aggregates.add(e.alias_or_name)
        elif columns:
            keys.append(exp.Literal.number(i))
    group.set("all", None)
    group.set("expressions", keys)


def _order_by_aliases_as_positions(select: exp.Select) -> None:
    """In ORDER BY, a name that is an alias of the select list means the alias (DuckDB);
    ClickHouse with ``prefer_column_name_to_alias`` would take the column: use positions."""
    order = select.args.get("order")
    if order is None:
        return
    aliases = {e.alias: i for i, e in enumerate(select.expressions, start=1) if e.alias}
    for ordered in order.expressions:
        key = ordered.this
        if isinstance(key, exp.Column) and not key.table and key.name in aliases:
            key.replace(exp.Literal.number(aliases[key.name]))


def _string_agg(gc: exp.GroupConcat) -> exp.Expr:
    """``string_agg([DISTINCT] x, sep [ORDER BY x])`` in ClickHouse: NULL when no value."""
    this = gc.this
    order = None
    if isinstance(this, exp.Order):
        order = this
        this = this.this
    distinct = isinstance(this, exp.Distinct)
    value = this.expressions[0] if distinct else this
    if order is not None:
        keys = [o.this for o in order.expressions]
        if len(keys) != 1 or keys[0] != value or order.expressions[0].args.get("desc"):
            raise NotImplementedError(f"string_agg ordered by another expression: {gc.sql()}")
    separator = gc.args.get("separator") or exp.Literal.string(",")
    gather = exp.func("groupUniqArray" if distinct else "groupArray", value.copy())
    if order is not None or distinct:
        gather = exp.func("arraySort", gather)
    joined = exp.func("arrayStringConcat", gather, separator.copy())
    empty = exp.EQ(this=exp.func("count", value.copy()), expression=exp.Literal.number(0))
    return exp.If(this=empty, true=exp.Null(), false=joined)


def _param_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Nullable(Bool)"
    if isinstance(value, int):
        return "Nullable(Int64)"
    if isinstance(value, float):
        return "Nullable(Float64)"
    if isinstance(value, (list, tuple)):
        inner = {_param_type(v) for v in value if v is not None} or {"Nullable(String)"}
        if len(inner) != 1:
            raise TypeError(f"a list parameter must hold values of one type: {value!r}")
        return f"Array({inner.pop()})"
    if value is None or isinstance(value, str):
        return "Nullable(String)"
    raise TypeError(f"unsupported parameter type {type(value).__name__}: {value!r}")


def _texts(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameter values in ClickHouse's text format, for chdb (which sends them as given)."""
    return {k: _escaped(v) for k, v in params.items()}


def _escaped(value: Any, quoted: bool = False) -> str:
    """A parameter value in ClickHouse's text format (the server parses it; never pasted)."""
    if value is None:
        return "NULL" if quoted else "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_escaped(v, quoted=True) for v in value) + "]"
    text = str(value).replace("\\", "\\\\")
    if quoted:
        return "'" + text.replace("'", "\\'") + "'"
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@dataclass
class Translation:
    """A DuckDB query translated to ClickHouse: the SQL and its parameters' values."""

    sql: str
    params: dict[str, Any]


def translate(
    query: str,
    params: Any = None,
    *,
    spans: str,
    tables: Mapping[str, str] | None = None,
) -> Translation:
    """Translate DuckDB SQL over the canonical tables into ClickHouse SQL.

    ``spans`` is the ClickHouse relation standing for ``spans``; ``tables`` maps other names
    (frames registered on a cursor) to ClickHouse tables. Raises ``NotInClickHouse`` for a
    query-log table.
    """
    tables = dict(tables or {})
    tree = sqlglot.parse_one(query, read="duckdb")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)  # a DuckDB planning hint; ClickHouse has no syntax for it
    for table in list(tree.find_all(exp.Table)):
        name = table.name
        if name in ctes or table.args.get("db"):
            continue
        if name in LOG_TABLES:
            raise NotInClickHouse(
                f"this analysis reads the {name!r} table (from PostgreSQL logs, plans or "
                f"pg_stat_statements), which a ClickHouse workbook does not have: otel_traces "
                f"holds spans only. Pull a sample into DuckDB (wb.sample(...)) and load the "
                f"logs there with latkit.open().load(...)"
            )
        if name == "spans":
            alias = table.alias or "spans"
            sub = exp.Subquery(
                this=exp.Anonymous(this="__SPANS__"),
                alias=exp.TableAlias(this=exp.to_identifier(alias)),
            )
            table.replace(sub)
        elif name in tables:
            table.set("this", exp.to_identifier(tables[name]))
    for group in list(tree.find_all(exp.Group)):
        if group.args.get("all"):
            _expand_group_by_all(group)
    for select in list(tree.find_all(exp.Select)):
        _order_by_aliases_as_positions(select)
    out = _bind(tree, params)
    _boolean_columns(tree)
    tree = _clickhouse_functions(tree)
    for join in tree.find_all(exp.Join):
        if join.args.get("kind", "").upper() == "SEMI" and not join.side:
            join.set("side", "LEFT")
    sql = tree.sql(dialect="clickhouse")
    sql = _unwrap_markers(sql, spans)
    return Translation(sql, out)


#: Expressions that are true or false (or NULL).
_BOOLEAN = (exp.Predicate, exp.Connector, exp.Not, exp.Boolean)


def _boolean_columns(tree: exp.Expr) -> None:
    """Each named yes/no column as ClickHouse's ``Bool``: its comparisons give ``UInt8``,
    which polars reads as a number, and ``frame.filter(pl.col("traced"))`` then fails."""
    for select in list(tree.find_all(exp.Select)):
        for item in select.expressions:
            if not isinstance(item, exp.Alias):
                continue
            if _is_boolean(item.this):
                item.set("this", exp.Cast(this=item.this.copy(), to=exp.DataType.build("BOOLEAN")))


def _is_boolean(node: exp.Expr) -> bool:
    """Whether ``node`` is a yes/no expression: a comparison, AND/OR/NOT, or a CASE whose
    every outcome is one (or NULL)."""
    node = node.unnest() if isinstance(node, exp.Paren) else node
    if isinstance(node, _BOOLEAN):
        return True
    if isinstance(node, exp.Case):
        outcomes = [branch.args["true"] for branch in node.args.get("ifs", [])]
        outcomes.append(node.args.get("default") or exp.Null())
        known = [o for o in outcomes if not isinstance(o, exp.Null)]
        return bool(known) and all(_is_boolean(o) for o in known)
    return False


def _bind(tree: exp.Expr, params: Any) -> dict[str, Any]:
    """Replace each ``$name`` / ``?`` with a ClickHouse query parameter marker; the values.

    ``CAST($p AS INTERVAL)`` becomes a number of microseconds (DuckDB reads the interval),
    which ``time_bucket`` below turns into arithmetic.
    """
    out: dict[str, Any] = {}
    positional = iter(params) if isinstance(params, (list, tuple)) else None
    counter = itertools.count()
    for node in list(tree.find_all(exp.Placeholder, exp.Parameter, bfs=False)):
        if positional is not None:
            name = "" if node.name == "?" else node.name
            if name and not name.isdigit():
                raise ValueError(f"named parameter ${name} with positional params")
            value = params[int(name) - 1] if name else next(positional)
            key = f"p{next(counter)}"
        else:
            if not isinstance(params, Mapping) or node.name not in params:
                raise ValueError(f"no value given for parameter ${node.name}")
            value = params[node.name]
            key = f"p_{node.name}"
        parent = node.parent
        if isinstance(parent, exp.Cast) and parent.to.is_type(exp.DataType.Type.INTERVAL):
            value = _interval_us(value)
            marker = exp.Anonymous(this=f"__PARAM__{key}:{_param_type(value)}")
            parent.replace(exp.Anonymous(this="latkit_interval_us", expressions=[marker]))
        else:
            node.replace(exp.Anonymous(this=f"__PARAM__{key}:{_param_type(value)}"))
        out[key] = value
    return out


def _interval_us(text: Any) -> int:
    """Microseconds in an interval as DuckDB reads it (``'10s'``, ``'1 minute'``)."""
    import duckdb

    con = duckdb.connect()
    try:
        us = con.execute("SELECT epoch_us(CAST(? AS INTERVAL))", [text]).fetchall()[0][0]
    finally:
        con.close()
    if not us or us <= 0:
        raise ValueError(f"{text!r}: not a positive interval")
    return int(us)


#: DuckDB's time_bucket origin for intervals without months: Monday 2000-01-03, in µs.
_BUCKET_ORIGIN_US = 946_857_600_000_000


#: A parameter marker as sqlglot writes it: ``__PARAM__name:Type()`` (a type never holds
#: an empty pair of parentheses, so the first ``()`` ends it).
_MARKER = re.compile(r"__PARAM__(\w+:.+?)\(\)")


def _unwrap_markers(sql: str, spans: str) -> str:
    """The spans subquery and ClickHouse's ``{name:Type}`` parameters in place of markers."""
    sql = sql.replace("(__SPANS__())", f"({spans})").replace("__SPANS__()", f"({spans})")
    return _MARKER.sub(lambda m: "{" + m.group(1) + "}", sql)


# -- engines ---------------------------------------------------------------------------------


class _Engine:
    """What the workbook needs of a ClickHouse client: Arrow out, Arrow in, commands."""

    def arrow(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        raise NotImplementedError

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _settings_clause() -> str:
    return " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in SETTINGS.items())


class _Chdb(_Engine):
    """An embedded ClickHouse session (chdb)."""

    def __init__(self, session: Any):
        self.session = session

    def arrow(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        table = self.session.query(sql + _settings_clause(), "ArrowTable", params=_texts(params))
        return table if isinstance(table, pa.Table) else pa.table({})

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.session.query(sql, "Null", params=_texts(params or {}))

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        # An Arrow IPC file that the embedded server reads: no copy through Python objects.
        with tempfile.TemporaryDirectory(prefix="latkit-chdb-") as folder:
            path = Path(folder) / "rows.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, data.schema) as w:
                w.write_table(data)
            self.session.query(
                f"INSERT INTO {table} SELECT * FROM file({{path:String}}, 'Arrow')",
                "Null",
                params=_texts({"path": str(path)}),
            )

    def close(self) -> None:
        self.session.close()


class _Connect(_Engine):
    """A ClickHouse server through clickhouse-connect (HTTP)."""

    def __init__(self, client: Any):
        self.client = client

    def arrow(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        # clickhouse-connect sends ``{name:Type}`` values as ``param_<name>``, formatted
        # by itself.
        return self.client.query_arrow(
            sql, parameters=dict(params), settings=dict(SETTINGS), use_strings=True
        )

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.client.command(sql, parameters=dict(params or {}))

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.client.insert_arrow(table, data)

    def close(self) -> None:
        self.client.close()


def _engine(url_or_client: Any) -> _Engine:
    if isinstance(url_or_client, _Engine):
        return url_or_client
    if isinstance(url_or_client, str):
        if url_or_client.startswith(("http://", "https://", "clickhouse://", "clickhouses://")):
            import clickhouse_connect

            return _Connect(clickhouse_connect.get_client(dsn=url_or_client))
        if url_or_client.startswith("chdb:"):
            from chdb import session

            path = url_or_client[len("chdb:") :]
            if path.startswith("//"):  # chdb://folder, written like a URL
                path = path[2:]
            # An absolute chdb:/folder stays absolute; chdb: alone is in memory.
            return _Chdb(session.Session(path) if path else session.Session())
        raise ValueError(
            f"{url_or_client!r}: give an http(s):// or clickhouse:// URL, chdb: (in memory) "
            f"or chdb:<folder>, or a chdb session or clickhouse-connect client"
        )
    if hasattr(url_or_client, "query_arrow") and hasattr(url_or_client, "insert_arrow"):
        return _Connect(url_or_client)
    if hasattr(url_or_client, "query") and hasattr(url_or_client, "send_query"):
        return _Chdb(url_or_client)
    raise TypeError(f"not a ClickHouse client: {type(url_or_client).__name__}")


# -- results ---------------------------------------------------------------------------------


def _normalise(table: pa.Table) -> pa.Table:
    """Arrow from ClickHouse in the types DuckDB would give: signed counts, plain strings."""
    columns = []
    for column in table.columns:
        t = column.type
        if pa.types.is_dictionary(t):
            column = column.cast(t.value_type)
            t = t.value_type
        if pa.types.is_timestamp(t) and t.tz is not None:
            # DuckDB's make_timestamp is a TIMESTAMP (UTC, no zone); Arrow keeps UTC inside.
            column = column.cast(pa.timestamp(t.unit))
        elif pa.types.is_unsigned_integer(t):
            # Counts fit; 64-bit hashes (the span arrays' keys) wrap, as DuckDB's would not,
            # but they are only compared for equality.
            column = column.cast(pa.int64(), safe=False)
        elif pa.types.is_large_string(t):
            column = column.cast(pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


class _Result:
    def __init__(self, table: pa.Table):
        self.table = table

    def pl(self) -> pl.DataFrame:
        frame = pl.from_arrow(self.table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def to_arrow_table(self) -> pa.Table:
        return self.table

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(zip(*(c.to_pylist() for c in self.table.columns), strict=True))


class _Cursor:
    """The part of a DuckDB cursor the analyses use, over ClickHouse."""

    def __init__(self, wb: ClickHouseWorkbook):
        self.wb = wb
        self.tables: dict[str, str] = {}

    def register(self, name: str, data: Any) -> _Cursor:
        """Upload ``data`` (Arrow or polars) into a temporary table that ``name`` stands
        for in this cursor's queries; dropped once the cursor is gone."""
        if isinstance(data, pl.DataFrame):
            data = data.to_arrow()
        self.tables[name] = self.wb._upload(data, self)
        return self

    def unregister(self, name: str) -> _Cursor:
        self.tables.pop(name, None)
        return self

    def sql(self, query: str, params: Any = None) -> _Result:
        return _Result(self.wb._run(query, params, self.tables))

    def execute(self, query: str, params: Any = None) -> _Result:
        return self.sql(query, params)

    def cursor(self) -> _Cursor:
        return _Cursor(self.wb)

    def close(self) -> None:
        self.tables.clear()


# -- the workbook ----------------------------------------------------------------------------


@dataclass
class _Fingerprints:
    """latkit's fingerprint for each query shape (``normalizedQueryHash``) in the table."""

    hashes: list[int] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        return {
            "_fp_hashes": self.hashes,
            "_fp_fingerprints": self.fingerprints,
            "_fp_templates": self.templates,
        }


@dataclass(frozen=True)
class Window:
    """Which rows of otel_traces a workbook sees: a time window and services.

    Applied inside the spans subquery on the exporter's own columns (``Timestamp``,
    ``ServiceName``), so ClickHouse prunes partitions (by day) and primary-key ranges (by
    service) before any analysis runs. Values are bound as parameters. A span is in the
    window when it starts in it; a trace straddling a boundary is cut there.
    """

    since_ns: int | None = None
    until_ns: int | None = None
    services: tuple[str, ...] | None = None

    def where(self) -> str:
        clauses = []
        if self.since_ns is not None:
            clauses.append("Timestamp >= fromUnixTimestamp64Nano({_w_since:Int64})")
        if self.until_ns is not None:
            clauses.append("Timestamp < fromUnixTimestamp64Nano({_w_until:Int64})")
        if self.services is not None:
            clauses.append("ServiceName IN {_w_services:Array(String)}")
        return " AND ".join(clauses)

    def params(self) -> dict[str, Any]:
        values = {
            "_w_since": self.since_ns,
            "_w_until": self.until_ns,
            "_w_services": list(self.services) if self.services is not None else None,
        }
        return {k: v for k, v in values.items() if v is not None}


def _ns(when: datetime | int | None) -> int | None:
    if when is None or isinstance(when, int):
        return when
    if when.tzinfo is None:
        raise ValueError(f"{when!r}: give a time zone (e.g. datetime(..., tzinfo=UTC))")
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1_000


class ClickHouseWorkbook:
    """A workbook whose spans are a ClickHouse otel_traces table. ``latkit.open_clickhouse``."""

    def __init__(self, engine: _Engine, table: str = "otel_traces", window: Window | None = None):
        self.engine = engine
        self.table = _qualified(table)
        self.window = window or Window()
        self.path: str | None = None
        self.read_only = True
        self.con = _Cursor(self)
        self._spans = spans_sql(self.table, self.window.where())
        self._uploads = itertools.count()
        self._uploaded: list[tuple[weakref.ref[_Cursor], str]] = []
        self._fp: _Fingerprints | None = None
        #: Spans per shard of span arrays for the budget kernels (``span_array_shards``).
        self.spans_per_shard = 4_000_000

    def __repr__(self) -> str:
        return f"<latkit.ClickHouseWorkbook {self.table}: spans {self.counts()['spans']:,}>"

    def __enter__(self) -> ClickHouseWorkbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.close()

    def counts(self) -> dict[str, int]:
        """Rows per canonical table: spans only (the log tables do not exist here)."""
        where = self.window.where()
        n = self.engine.arrow(
            f"SELECT count() AS n FROM {self.table} {'WHERE ' + where if where else ''}",
            self.window.params(),
        )["n"][0].as_py()
        return {"spans": int(n)} | {t: 0 for t in LOG_TABLES}

    def has_rows(self, table: str) -> bool:
        """Whether the canonical table ``table`` holds any row: only ``spans`` can here."""
        if table not in schema.DATA_TABLES:
            raise ValueError(f"not a canonical data table: {table!r}")
        return table == "spans" and self.counts()["spans"] > 0

    def sql(self, query: str, params: Any = None) -> pl.DataFrame:
        """Run a DuckDB-dialect query over the canonical ``spans`` in ClickHouse.

        >>> wb.sql("SELECT service, count(*) AS n FROM spans GROUP BY ALL")  # doctest: +SKIP
        """
        return _Result(self._run(query, params, {})).pl()

    def translate(self, query: str, params: Any = None) -> Translation:
        """The ClickHouse SQL and parameters that ``sql`` would send (for reading)."""
        t = translate(query, params, spans=self._spans)
        return Translation(t.sql, t.params | self._params())

    def _run(self, query: str, params: Any, tables: Mapping[str, str]) -> pa.Table:
        t = translate(query, params, spans=self._spans, tables=tables)
        return _normalise(self.engine.arrow(t.sql, t.params | self._params()))

    def _params(self) -> dict[str, Any]:
        """What the spans subquery itself needs: the fingerprints and the window."""
        return self._fingerprints().params() | self.window.params()

    def _fingerprints(self) -> _Fingerprints:
        if self._fp is None:
            where = self.window.where()
            examples = self.engine.arrow(
                f"""
                SELECT normalizedQueryHash(s) AS h, any(s) AS statement
                FROM (SELECT {_lookup(enrich.SPAN_KEYS["_db_statement"])} AS s
                      FROM {self.table} {"WHERE " + where if where else ""})
                WHERE s IS NOT NULL
                GROUP BY h ORDER BY h
                """,
                self.window.params(),
            )
            templates, fps = fingerprint.templates(examples["statement"])
            self._fp = _Fingerprints(
                [int(h) for h in examples["h"].to_pylist()],
                [str(f) for f in fps.to_pylist()],
                [str(t) for t in templates.to_pylist()],
            )
        return self._fp

    def span_array_shards(self, spans_per_shard: int | None = None) -> Iterator[Any]:
        """``tree.SpanArrays`` of all spans, one shard of whole traces at a time.

        Traces are split by a hash of their id into shards of about ``spans_per_shard``
        spans, so the client's memory is bounded by one shard (about 40 bytes a span out of
        ClickHouse, a few times that in the kernels) whatever the table's size. Each shard
        is one query; ClickHouse filters it while scanning.
        """
        from latkit.analysis import tree

        total = self.counts()["spans"]
        shards = max(1, -(-total // (spans_per_shard or self.spans_per_shard)))
        for k in range(shards):
            yield tree.load(
                self.con,
                "hash(trace_id) % $_shards = $_shard",
                {"_shards": shards, "_shard": k},
            )

    def _upload(self, data: pa.Table, owner: _Cursor) -> str:
        """A temporary table in the session holding ``data``; its name. Tables of cursors
        that no longer exist (an analysis registers a frame, queries it, and is done) are
        dropped first, so a session does not accumulate them."""
        alive = []
        for ref, old in self._uploaded:
            if ref() is None:
                self.engine.command(f"DROP TEMPORARY TABLE IF EXISTS {old}")
            else:
                alive.append((ref, old))
        name = f"_latkit_upload_{next(self._uploads)}"
        self._uploaded = [*alive, (weakref.ref(owner), name)]
        columns = ", ".join(f"`{f.name}` {_ch_type(f.type)}" for f in data.schema)
        self.engine.command(f"CREATE TEMPORARY TABLE {name} ({columns})")
        self.engine.insert_arrow(name, data)
        return name

    # -- moving spans to DuckDB ------------------------------------------------------------

    def sample(
        self,
        traces: int = 1000,
        where: str | None = None,
        params: Mapping[str, Any] | None = None,
        into: Workbook | None = None,
        seed: int = 0,
    ) -> Workbook:
        """Pull whole traces into a local DuckDB workbook for a deep dive.

        Up to ``traces`` trace ids are picked at random (stable for a ``seed``) among the
        traces with a span matching ``where`` (DuckDB SQL over ``spans``, parameters bound),
        and every span of them is loaded into ``into`` (a new in-memory workbook by default),
        enriched by latkit as any loaded file is. Returns that workbook.

        >>> local = wb.sample(traces=200, where="route = $r", params={"r": "/checkout"})
        ... # doctest: +SKIP
        """
        from latkit import workbook

        pick = f"""
            SELECT trace_id FROM spans {"WHERE " + where if where else ""}
            GROUP BY trace_id
            ORDER BY hash(trace_id, $_seed), trace_id
            LIMIT $_traces
        """
        ids = self.sql(pick, {**(params or {}), "_seed": seed, "_traces": traces})["trace_id"]
        target = into if into is not None else workbook.open()
        staged = self.engine.arrow(_STAGING_SQL.format(table=self.table), {"ids": ids.to_list()})
        _load_staged(target, staged, source=f"clickhouse:{self.table}")
        return target


def _ch_type(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "Int64"
    if pa.types.is_floating(t):
        return "Float64"
    if pa.types.is_boolean(t):
        return "Bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "Nullable(String)"
    raise TypeError(f"cannot upload a column of type {t}")


def _qualified(table: str) -> str:
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"{table!r}: give a table name, or database.table")
    return ".".join(f"`{p}`" for p in parts)


#: otel_traces rows of the chosen traces in latkit's staging shape (``schema.SPAN_STAGING``).
_STAGING_SQL = f"""
    SELECT
        TraceId AS trace_id,
        SpanId AS span_id,
        nullIf(ParentSpanId, '') AS parent_span_id,
        {_SPAN_COLUMNS}
        arrayMap((k, v) -> tuple(toString(k), v), mapKeys(SpanAttributes),
                 mapValues(SpanAttributes)) AS attributes,
        arrayMap((k, v) -> tuple(toString(k), v), mapKeys(ResourceAttributes),
                 mapValues(ResourceAttributes)) AS resource_attributes,
        arrayMap((t, n, a) -> tuple(toUnixTimestamp64Nano(t), toString(n),
                                    arrayMap((k, v) -> tuple(toString(k), v), mapKeys(a),
                                             mapValues(a))),
                 `Events.Timestamp`, `Events.Name`, `Events.Attributes`) AS events,
        arrayMap((t, s, st, a) -> tuple(t, s, st,
                                        arrayMap((k, v) -> tuple(toString(k), v), mapKeys(a),
                                                 mapValues(a))),
                 `Links.TraceId`, `Links.SpanId`, `Links.TraceState`, `Links.Attributes`)
            AS links
    FROM {{table}}
    WHERE TraceId IN {{{{ids:Array(String)}}}}
    ORDER BY TraceId, Timestamp, SpanId
"""


def _load_staged(target: Workbook, staged: pa.Table, source: str) -> None:
    """Insert otel_traces rows (``_STAGING_SQL``) into a DuckDB workbook, enriched."""
    batch = _as_staging(staged)
    load_id = target._next_load_id()
    started = time.perf_counter()
    con = target.con
    con.begin()
    try:
        con.register("_staged", enrich.stage_spans(batch))
        con.execute(
            f"INSERT INTO spans {enrich.SPANS_SELECT}", {"source": source, "load_id": load_id}
        )
        con.unregister("_staged")
        con.execute(
            "INSERT INTO loads VALUES (?, ?, NULL, NULL, 'clickhouse', ?, ?, 0, 0, ?, now())",
            [
                load_id,
                source,
                {"spans": batch.num_rows},
                batch.num_rows,
                time.perf_counter() - started,
            ],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _as_staging(staged: pa.Table) -> pa.Table:
    """ClickHouse's Arrow (tuples as structs with positional names) in ``SPAN_STAGING``."""
    staged = _normalise(staged)
    columns = []
    for f in schema.SPAN_STAGING:
        column = staged.column(f.name)
        if column.type != f.type:
            column = pa.chunked_array(
                [_retype(chunk, f.type) for chunk in column.chunks], type=f.type
            )
        columns.append(column)
    return pa.table(columns, schema=schema.SPAN_STAGING)


def _retype(array: pa.Array, target: pa.DataType) -> pa.Array:
    """The same values under ``target``'s field names (ClickHouse names tuple fields 1, 2)."""
    if pa.types.is_list(target):
        assert isinstance(array, (pa.ListArray, pa.LargeListArray))
        values = _retype(array.values, target.value_type)
        return pa.ListArray.from_arrays(array.offsets, values, type=target, mask=array.is_null())
    if pa.types.is_struct(target):
        assert isinstance(array, pa.StructArray)
        children = [_retype(array.field(i), target.field(i).type) for i in range(target.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(target))
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    return array.cast(target)


# -- writing otel_traces ---------------------------------------------------------------------


def create_otel_traces(client: Any, table: str = "otel_traces", database: str = "default") -> None:
    """Create the exporter's traces table (``OTEL_TRACES_DDL``) if it does not exist."""
    engine = _engine(client)
    engine.command(_render_ddl(database, table))


def _render_ddl(database: str, table: str) -> str:
    ddl = OTEL_TRACES_DDL
    start = ddl.index("{{- if .HasFullTextSearch}}")
    middle = ddl.index("{{- else}}")
    end = ddl.index("{{- end}}")
    # ``{{-`` trims the whitespace before it, the line break included.
    ddl = (
        ddl[:start].rstrip()
        + ddl[middle + len("{{- else}}") : end].rstrip()
        + ddl[end + len("{{- end}}") :]
    )
    ident = _qualified(f"{database}.{table}")
    return (
        ddl.replace("{{ident .Database}}.{{ident .TableName}}", ident)
        .replace("{{.ClusterString}}", "")
        .replace("{{.Engine}}", "MergeTree()")
        .replace("{{.TTL}}", "")
    )


#: A workbook's spans as the exporter writes them, from DuckDB (Arrow out), in batches.
_EXPORT_SQL = """
    SELECT
        start_ns AS ts_ns,
        trace_id, span_id,
        coalesce(parent_span_id, '') AS parent_span_id,
        coalesce(trace_state, '') AS trace_state,
        name,
        'SPAN_KIND_' || upper(kind) AS kind,
        service,
        list_transform(resource_attributes, lambda kv: kv.key) AS resource_keys,
        list_transform(resource_attributes, lambda kv: coalesce(kv.value, '')) AS resource_values,
        coalesce(scope, '') AS scope,
        list_transform(attributes, lambda kv: kv.key) AS span_keys,
        list_transform(attributes, lambda kv: coalesce(kv.value, '')) AS span_values,
        CAST(greatest(end_ns - start_ns, 0) AS UBIGINT) AS duration,
        'STATUS_CODE_' || upper(status) AS status,
        coalesce(status_message, '') AS status_message,
        list_transform(events, lambda e: e.time_ns) AS event_ns,
        list_transform(events, lambda e: e.name) AS event_names,
        list_transform(events, lambda e: list_transform(e.attributes, lambda kv: kv.key))
            AS event_keys,
        list_transform(events, lambda e: list_transform(e.attributes,
                                                        lambda kv: coalesce(kv.value, '')))
            AS event_values,
        list_transform(links, lambda l: l.trace_id) AS link_trace_ids,
        list_transform(links, lambda l: l.span_id) AS link_span_ids,
        list_transform(links, lambda l: coalesce(l.trace_state, '')) AS link_states,
        list_transform(links, lambda l: list_transform(l.attributes, lambda kv: kv.key))
            AS link_keys,
        list_transform(links, lambda l: list_transform(l.attributes,
                                                       lambda kv: coalesce(kv.value, '')))
            AS link_values
    FROM spans
    ORDER BY start_ns, trace_id, span_id
"""

_EXPORT_COLUMNS = """
    ts_ns Int64, trace_id String, span_id String, parent_span_id String, trace_state String,
    name String, kind String, service String, resource_keys Array(String),
    resource_values Array(String), scope String, span_keys Array(String),
    span_values Array(String), duration UInt64, status String, status_message String,
    event_ns Array(Int64), event_names Array(String), event_keys Array(Array(String)),
    event_values Array(Array(String)), link_trace_ids Array(String),
    link_span_ids Array(String), link_states Array(String), link_keys Array(Array(String)),
    link_values Array(Array(String))
"""

_EXPORT_INSERT = """
    INSERT INTO {table} (
        Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
        ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode,
        StatusMessage, `Events.Timestamp`, `Events.Name`, `Events.Attributes`,
        `Links.TraceId`, `Links.SpanId`, `Links.TraceState`, `Links.Attributes`)
    SELECT
        fromUnixTimestamp64Nano(ts_ns), trace_id, span_id, parent_span_id, trace_state, name,
        kind, service, mapFromArrays(resource_keys, resource_values), scope, '',
        mapFromArrays(span_keys, span_values), duration, status, status_message,
        arrayMap(t -> fromUnixTimestamp64Nano(t), event_ns), event_names,
        arrayMap((k, v) -> mapFromArrays(k, v), event_keys, event_values),
        link_trace_ids, link_span_ids, link_states,
        arrayMap((k, v) -> mapFromArrays(k, v), link_keys, link_values)
    FROM {staging}
"""


def to_otel_traces(
    wb: Workbook,
    client: Any = None,
    table: str = "otel_traces",
    database: str = "default",
    batch_rows: int = 200_000,
) -> ClickHouseWorkbook:
    """Write a DuckDB workbook's spans into an otel_traces table, as the exporter would.

    ``client`` is a chdb session, a clickhouse-connect client or a URL (``open_clickhouse``);
    by default a fresh in-memory chdb session. The table is created with the exporter's DDL
    if missing. Returns the ClickHouse-backed workbook over it.

    >>> wb = latkit.open(); _ = wb.load("sample_data/traces")
    >>> ch = to_otel_traces(wb)                    # doctest: +SKIP
    >>> nplusone.detect(ch).equals(nplusone.detect(wb))  # doctest: +SKIP
    True
    """
    if client is None:
        from chdb import session

        client = session.Session()
    engine = _engine(client)
    create_otel_traces(engine, table, database)
    target = _qualified(f"{database}.{table}")
    staging = "_latkit_export"
    engine.command(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ({_EXPORT_COLUMNS})")
    try:
        reader = wb.con.cursor().sql(_EXPORT_SQL).to_arrow_reader(batch_rows)
        for batch in reader:
            engine.command(f"TRUNCATE TABLE {staging}")
            engine.insert_arrow(staging, pa.Table.from_batches([batch]))
            engine.command(_EXPORT_INSERT.format(table=target, staging=staging))
    finally:
        engine.command(f"DROP TEMPORARY TABLE IF EXISTS {staging}")
    return ClickHouseWorkbook(engine, f"{database}.{table}")


def open_clickhouse(
    url_or_client: Any,
    table: str = "otel_traces",
    *,
    since: datetime | int | None = None,
    until: datetime | int | None = None,
    services: Sequence[str] | None = None,
) -> ClickHouseWorkbook:
    """Open a ClickHouse otel_traces table as a workbook: the analyses run in ClickHouse.

    ``url_or_client``: an ``http(s)://`` or ``clickhouse://`` URL (clickhouse-connect),
    ``"chdb:"`` for an in-memory chdb session or ``"chdb:<folder>"`` for one on disk, or a
    chdb session or clickhouse-connect client. ``table`` may name its database
    (``"otel.otel_traces"``). ``since`` / ``until`` (aware datetimes or Unix nanoseconds)
    and ``services`` restrict the spans every analysis sees (``Window``), inside ClickHouse.

    >>> wb = latkit.open_clickhouse("http://localhost:8123", services=["shop"],
    ...                             since=datetime(2026, 11, 1, tzinfo=UTC))  # doctest: +SKIP
    >>> nplusone.detect(wb).head()                                            # doctest: +SKIP
    """
    window = Window(_ns(since), _ns(until), tuple(services) if services is not None else None)
    return ClickHouseWorkbook(_engine(url_or_client), table, window)
