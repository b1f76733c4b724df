"""Which missing indexes cost the most, and what ``CREATE INDEX`` fixes them?

A lookup by an unindexed column reads the whole table: a *sequential scan*, whose cost grows
with the table (O(n)), where a B-tree index finds the matching rows in a few page reads
(O(log n)). On a large table that is the difference between tens of milliseconds and tens of
microseconds per call, which is why a missing index is usually the first thing to look for.

The evidence, strongest first:

1. **Plans** (auto_explain in the log, EXPLAIN files): a ``Seq Scan`` node with a ``Filter``
   that threw away most of the rows it read, on a table with many rows. :func:`seq_scans`
   lists them; the table's size is what the scan read (rows removed plus rows kept, times the
   loops).
2. **Statements** (the log, pg_stat_statements, spans) parsed with sqlglot
   (:func:`predicates`): which columns a query compares with a value, and how. Alone they
   only suggest an index for a table known to be large (from a plan or a live database) and
   a query that is slow on average, because without a plan nothing says the query does not
   already use an index.

:func:`suggest` turns that evidence into a short list of ``CREATE INDEX CONCURRENTLY``
statements, skipping tables too small for an index to matter (a Seq Scan over a dozen rows
is the right plan) and predicates an existing index already covers (indexes seen in plans,
in a schema file, or in a live database). :func:`verify` tests each suggestion against a
live PostgreSQL with HypoPG's hypothetical indexes, as Dexter does, without building
anything. :func:`top_queries` is the profile to start from: where the database time goes.

>>> wb = latkit.open(); _ = wb.load("sample_data/postgres")
>>> indexes.suggest(wb).select("table_name", "columns", "create_index")
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from latkit.workbook import Workbook

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["plan_costs", "predicates", "seq_scans", "suggest", "top_queries", "verify"]

#: A table with fewer rows than this is not worth an index suggestion: a sequential scan of
#: a few hundred pages costs well under a millisecond.
MIN_TABLE_ROWS = 10_000

#: A scan whose filter keeps more than this share of the rows it reads is not selective
#: enough for an index to beat reading the table.
MAX_KEPT_SHARE = 0.1

#: A statement whose mean time is below this is answered without reading a large table:
#: statement-only suggestions (no plan) need a query at least this slow on average.
MIN_MEAN_MS = 1.0

#: What one index lookup of a few rows is assumed to cost, for the estimated saving (the
#: sample data's EXPLAIN after the index measured a few hundredths of a millisecond).
INDEX_LOOKUP_MS = 0.05

_PG_EXTRA = "postgres"

# -------------------------------------------------------------------------------- profile

#: Per-execution durations by fingerprint, from the log and from database spans.
_EXECUTIONS = """
    SELECT 'log' AS measured_by, fingerprint, query_template, duration_ms
    FROM queries
    WHERE fingerprint IS NOT NULL AND duration_ms IS NOT NULL
    UNION ALL
    SELECT 'spans', fingerprint, query_template, duration_ms
    FROM spans
    WHERE category = 'db' AND fingerprint IS NOT NULL AND duration_ms IS NOT NULL
"""

_PROFILE = f"""
    WITH executions AS ({_EXECUTIONS}),
    per_source AS (
        SELECT measured_by, fingerprint,
               any_value(query_template) AS query_template,
               count(*) AS calls,
               sum(duration_ms) AS total_ms,
               avg(duration_ms) AS mean_ms,
               quantile_cont(duration_ms, 0.95) AS p95_ms,
               var_pop(duration_ms) / nullif(avg(duration_ms), 0) AS vm
        FROM executions
        GROUP BY measured_by, fingerprint
        UNION ALL
        SELECT 'pg_stat_statements', fingerprint,
               any_value(query_template),
               sum(calls),
               sum(total_ms),
               sum(total_ms) / nullif(sum(calls), 0),
               NULL,
               -- the pooled variance of the exported rows (one per query id and user)
               (sum(calls * (power(try_cast(extra ->> 'stddev_exec_time' AS DOUBLE), 2)
                             + power(mean_ms, 2)))
                    / nullif(sum(calls), 0)
                - power(sum(total_ms) / nullif(sum(calls), 0), 2))
                   / nullif(sum(total_ms) / nullif(sum(calls), 0), 0)
        FROM statements
        WHERE fingerprint IS NOT NULL
        GROUP BY fingerprint
    ),
    chosen AS (
        SELECT *,
               row_number() OVER (
                   PARTITION BY fingerprint
                   ORDER BY CASE measured_by
                                WHEN $first THEN 0
                                WHEN 'pg_stat_statements' THEN 1
                                WHEN 'log' THEN 2
                                ELSE 3 END) AS preference
        FROM per_source
        WHERE $source = 'auto' OR measured_by = $source
    ),
    distributions AS (
        -- p95 and V/M need single executions: the log, else spans
        SELECT fingerprint, p95_ms, vm,
               row_number() OVER (PARTITION BY fingerprint
                                  ORDER BY CASE measured_by WHEN 'log' THEN 0 ELSE 1 END) AS k
        FROM per_source
        WHERE measured_by <> 'pg_stat_statements'
    )
    SELECT c.fingerprint, c.query_template, c.calls, c.total_ms,
           c.total_ms / sum(c.total_ms) OVER () AS share,
           c.mean_ms,
           coalesce(c.p95_ms, d.p95_ms) AS p95_ms,
           greatest(coalesce(c.vm, d.vm), 0) AS vm,
           c.measured_by
    FROM chosen AS c
    LEFT JOIN distributions AS d ON d.fingerprint = c.fingerprint AND d.k = 1
    WHERE c.preference = 1
"""

_SORTABLE = ("total_ms", "calls", "mean_ms", "p95_ms", "vm")


def top_queries(wb: Workbook, by: str = "total_ms", source: str = "auto") -> pl.DataFrame:
    """Where the database time goes: one row per query fingerprint (pt-query-digest's profile).

    Columns: ``rank, fingerprint, query_template, calls, total_ms, share`` (of all database
    time in the frame), ``mean_ms`` (pt-query-digest's R/Call), ``p95_ms``, ``vm`` (variance
    over mean of the execution time, pt-query-digest's V/M: near 0 for a query that always
    takes the same time, large when a few executions are much slower than the rest), and
    ``measured_by`` (``pg_stat_statements``, ``log`` or ``spans``). Sorted by ``by``
    (``total_ms``, ``calls``, ``mean_ms``, ``p95_ms`` or ``vm``), largest first.

    The three sources see the same executions, so they are never added up. With
    ``source="auto"`` each fingerprint is measured by pg_stat_statements when it is there
    (it counts every call), else by the log (which may hold only the slow ones, with
    ``log_min_duration_statement`` above 0), else by database spans (whose time also holds
    the network and the driver). ``p95_ms`` and ``vm`` come from single executions (the log,
    else spans); pg_stat_statements alone gives ``vm`` from its standard deviation and no
    p95. ``source="log"`` (or ``"pg_stat_statements"``, ``"spans"``) uses one source only.

    >>> indexes.top_queries(wb).head(5)
    """
    if by not in _SORTABLE:
        raise ValueError(f"by must be one of {', '.join(_SORTABLE)}, not {by!r}")
    sources = ("auto", "pg_stat_statements", "log", "spans")
    if source not in sources:
        raise ValueError(f"source must be one of {', '.join(sources)}, not {source!r}")
    first = "pg_stat_statements" if source == "auto" else source
    frame = wb.sql(
        f"""
        SELECT row_number() OVER (ORDER BY {by} DESC NULLS LAST, fingerprint) AS rank, *
        FROM ({_PROFILE})
        ORDER BY rank
        """,
        {"source": source, "first": first},
    )
    return frame.with_columns(pl.col("rank").cast(pl.Int64), pl.col("calls").cast(pl.Int64))


# -------------------------------------------------------------------------------- seq scans

#: Sequential scans with a filter, the time each one really took, and the table size it saw.
#: A node's Actual Total Time and rows are per loop; loops of a node under a Gather are
#: parallel workers, so their wall time is one loop's, not the sum (and the Gather's own
#: time when it gathers nothing else: an index lookup needs no workers at all).
_SCANS = r"""
    WITH RECURSIVE scans AS (
        SELECT n.plan_id, n.node_id, n.relation, n.schema_name, n.alias, n.filter,
               coalesce(n.rows_removed_by_filter, 0) AS removed,
               coalesce(n.actual_rows, 0) AS kept,
               coalesce(n.actual_loops, 1) AS loops,
               n.actual_total_ms, n.plan_rows, n.parent_node_id
        FROM plan_nodes AS n
        WHERE n.node_type IN ('Seq Scan', 'Parallel Seq Scan')
          AND n.filter IS NOT NULL AND n.relation IS NOT NULL
    ),
    up AS (
        SELECT plan_id, node_id, parent_node_id AS ancestor, 0 AS steps FROM scans
        UNION ALL
        SELECT up.plan_id, up.node_id, p.parent_node_id, up.steps + 1
        FROM up JOIN plan_nodes AS p ON p.plan_id = up.plan_id AND p.node_id = up.ancestor
        WHERE up.ancestor IS NOT NULL AND up.steps < 100
    ),
    parallel AS (
        -- under a Gather that gathers only this scan, the Gather's time is the scan's cost
        SELECT up.plan_id, up.node_id,
               max(CASE WHEN up.steps = 0 THEN p.actual_total_ms END) AS gather_ms
        FROM up JOIN plan_nodes AS p ON p.plan_id = up.plan_id AND p.node_id = up.ancestor
        WHERE p.node_type IN ('Gather', 'Gather Merge')
        GROUP BY up.plan_id, up.node_id
    )
    SELECT s.*,
           (s.removed + s.kept) * s.loops AS rows_read,
           CASE WHEN par.node_id IS NOT NULL THEN coalesce(par.gather_ms, s.actual_total_ms)
                ELSE s.actual_total_ms * s.loops END AS wall_ms,
           -- the filter with its values as ?, so that executions group together
           regexp_replace(
               regexp_replace(
                   regexp_replace(
                       regexp_replace(s.filter, '''(?:[^'']|'''')*''', '?', 'g'),
                       '\$[0-9]+', '?', 'g'),
                   '\b[0-9]+(\.[0-9]+)?\b', '?', 'g'),
               '\?::(?:"[^"]+"|[a-z_][a-z0-9_ ]*[a-z0-9_])(?:\[\])?', '?', 'g')
               AS filter_template,
           pl.fingerprint, pl.ts_ns, pl.source
    FROM scans AS s
    JOIN plans AS pl USING (plan_id)
    LEFT JOIN parallel AS par ON par.plan_id = s.plan_id AND par.node_id = s.node_id
"""


def seq_scans(wb: Workbook) -> pl.DataFrame:
    """Sequential scans with a filter in the plans: which table, which filter, how wasteful.

    One row per table and filter (values in the filter replaced by ``?``). Columns:
    ``relation, filter`` (the template), ``example_filter`` (one as the plan printed it),
    ``plans`` (plans that had this scan), ``rows_read, rows_removed, rows_kept`` (summed over
    those plans, loops included), ``kept_share`` (rows kept over rows read: small means an
    index would read far less), ``table_rows`` (the most rows one scan read: the table's size
    when the scan ran), ``scan_ms`` (the scans' time: loops added up, except parallel workers,
    which run at the same time), ``mean_scan_ms`` (per plan), ``fingerprints`` (the queries
    they belong to; empty for EXPLAIN files without the statement), ``calls`` (executions of
    those queries, from :func:`top_queries`: how often the scan really ran, not just how
    often it was logged), ``last_seen_ns``. Sorted by ``scan_ms``, largest first.

    >>> indexes.seq_scans(wb).select("relation", "filter", "table_rows", "kept_share")
    """
    profile = top_queries(wb).select("fingerprint", "calls")
    cur = wb.con.cursor()
    cur.register("_profile", profile.to_arrow())
    frame = cur.sql(
        f"""
        WITH s AS ({_SCANS})
        SELECT relation, filter_template AS filter,
               min(filter) AS example_filter,
               count(DISTINCT plan_id) AS plans,
               sum(rows_read) AS rows_read,
               sum(removed * loops) AS rows_removed,
               sum(kept * loops) AS rows_kept,
               sum(kept * loops) / nullif(sum(rows_read), 0) AS kept_share,
               max(rows_read) AS table_rows,
               sum(wall_ms) AS scan_ms,
               sum(wall_ms) / count(DISTINCT plan_id) AS mean_scan_ms,
               list_sort(list_distinct(list(fingerprint))) AS fingerprints,
               (SELECT sum(p.calls) FROM _profile AS p
                WHERE list_contains(list_distinct(list(s.fingerprint)), p.fingerprint))
                   AS calls,
               max(ts_ns) AS last_seen_ns
        FROM s
        GROUP BY relation, filter_template
        ORDER BY scan_ms DESC NULLS LAST, relation, filter
        """
    ).pl()
    cur.close()
    return frame.with_columns(
        pl.col("rows_read", "rows_removed", "rows_kept", "table_rows", "calls").cast(pl.Int64)
    )


def plan_costs(wb: Workbook) -> pl.DataFrame:
    """What each plan read and how long it took: the figure that makes O(n) concrete.

    One row per plan. Columns: ``plan_id, source, fingerprint, execution_ms`` (EXPLAIN
    ANALYZE's Execution Time, or the logged duration), ``scans`` (its scan nodes, e.g.
    ``Seq Scan on customers; Index Scan using customers_email_idx on customers``),
    ``rows_read`` (rows the scans looked at: rows kept plus rows removed by a filter, all
    loops), ``rows_returned`` (by the root node), ``blocks`` (8 kB pages the plan touched,
    from ``BUFFERS``: NULL without it). Sorted by ``plan_id``.

    >>> indexes.plan_costs(wb).filter(pl.col("source").str.contains("customers_by_email"))
    """
    return wb.sql(
        """
        WITH nodes AS (
            SELECT n.plan_id,
                   string_agg(n.node_type
                              || CASE WHEN n.index_name IS NOT NULL
                                      THEN ' using ' || n.index_name ELSE '' END
                              || CASE WHEN n.relation IS NOT NULL
                                      THEN ' on ' || n.relation ELSE '' END,
                              '; ' ORDER BY n.node_id)
                       FILTER (n.relation IS NOT NULL OR n.index_name IS NOT NULL) AS scans,
                   sum((coalesce(n.rows_removed_by_filter, 0) + coalesce(n.actual_rows, 0))
                       * coalesce(n.actual_loops, 1))
                       FILTER (n.relation IS NOT NULL) AS rows_read,
                   max(n.actual_rows * coalesce(n.actual_loops, 1))
                       FILTER (n.node_id = 0) AS rows_returned
            FROM plan_nodes AS n
            GROUP BY n.plan_id
        )
        SELECT p.plan_id, p.source, p.fingerprint, p.duration_ms AS execution_ms,
               n.scans, CAST(n.rows_read AS BIGINT) AS rows_read,
               CAST(n.rows_returned AS BIGINT) AS rows_returned,
               CAST(json_extract(p.plan, '$.Plan."Shared Hit Blocks"') AS BIGINT)
                 + CAST(json_extract(p.plan, '$.Plan."Shared Read Blocks"') AS BIGINT)
                   AS blocks
        FROM plans AS p LEFT JOIN nodes AS n USING (plan_id)
        ORDER BY p.plan_id
        """
    )


# -------------------------------------------------------------------------------- predicates


@dataclass(frozen=True)
class Predicate:
    """One column a statement compares, and whether a plain B-tree index on it can help."""

    table: str | None
    column: str
    kind: str  # equality, range, order, join, filter
    operator: str
    indexable: bool
    note: str = ""
    opclass: str | None = None  # text_pattern_ops for LIKE 'prefix%'


#: Casts that only relabel text (PostgreSQL prints ``(name)::text`` for a varchar column):
#: an index on the column still serves the comparison.
_RELABEL = frozenset({"TEXT", "VARCHAR", "CHAR", "NCHAR", "NVARCHAR", "BPCHAR", "NAME"})


def predicates(statement: str) -> pl.DataFrame:
    """The columns a statement filters, joins and sorts on, and whether an index can help.

    Columns: ``table_name`` (aliases resolved; NULL when an unqualified column of a
    multi-table query cannot be placed), ``column_name``, ``kind`` (``equality``: ``=``,
    ``IN``, ``= ANY``, ``IS NULL``; ``range``: ``<``, ``>``, ``BETWEEN``, ``LIKE 'prefix%'``;
    ``order``: ORDER BY; ``join``: a comparison with another table's column; ``filter``: a
    condition no plain index serves), ``operator``, ``indexable`` (a plain B-tree index on
    the column can serve it), ``note`` (why not, or what index would), ``has_limit``.
    Subqueries and CTEs are read in their own scope. Values may be literals or placeholders
    (``$1``, ``%s``, ``?``). A statement sqlglot cannot parse gives an empty frame.

    >>> indexes.predicates("SELECT * FROM orders o WHERE o.customer_id = $1 ORDER BY o.id")
    """
    rows = [
        {
            "table_name": p.table,
            "column_name": p.column,
            "kind": p.kind,
            "operator": p.operator,
            "indexable": p.indexable,
            "note": p.note,
            "has_limit": limited,
        }
        for p, limited in _statement_predicates(statement)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "table_name": pl.String,
            "column_name": pl.String,
            "kind": pl.String,
            "operator": pl.String,
            "indexable": pl.Boolean,
            "note": pl.String,
            "has_limit": pl.Boolean,
        },
    )


def _parse(sql: str) -> exp.Expr | None:
    import sqlglot
    from sqlglot.errors import SqlglotError

    text = re.sub(r"%s|%\(\w+\)s", "?", sql)  # driver placeholders
    try:
        parsed = sqlglot.parse_one(text, read="postgres")
    except (SqlglotError, ValueError, RecursionError):
        return None
    return parsed


@lru_cache(maxsize=4096)
def _statement_predicates(sql: str) -> tuple[tuple[Predicate, bool], ...]:
    """``(predicate, the scope has a LIMIT)`` for every predicate of the statement."""
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    tree = _parse(sql)
    if tree is None:
        return ()
    out: list[tuple[Predicate, bool]] = []
    if isinstance(tree, exp.Update | exp.Delete):
        target = tree.this
        if isinstance(target, exp.Table):
            name = _name(target.this)
            aliases: dict[str, str | None] = {target.alias_or_name: name, name: name}
            where = tree.args.get("where")
            if where is not None:
                out += [(p, False) for p in _conditions(where.this, _Resolver(aliases, None))]
            return tuple(out)
    if not isinstance(tree, exp.Query):
        return ()
    try:
        scopes = traverse_scope(tree)
    except Exception:  # sqlglot raises plain errors on some shapes; then no predicates
        return ()
    for scope in scopes:
        select = scope.expression
        if not isinstance(select, exp.Select):
            continue
        resolver = _Resolver.of(scope)
        limited = select.args.get("limit") is not None
        conditions: list[exp.Expression] = []
        where = select.args.get("where")
        if where is not None:
            conditions.append(where.this)
        for join in select.args.get("joins") or []:
            on = join.args.get("on")
            if on is not None:
                conditions.append(on)
        for condition in conditions:
            out += [(p, limited) for p in _conditions(condition, resolver)]
        order = select.args.get("order")
        if order is not None:
            for ordered in order.expressions:
                column = _column(ordered.this)
                if column is None:
                    continue
                direction = "DESC" if ordered.args.get("desc") else "ASC"
                out.append(
                    (
                        Predicate(resolver.table(column), _name(column.this), "order",
                                  f"ORDER BY {direction}", True),
                        limited,
                    )
                )
    return tuple(out)


@dataclass
class _Resolver:
    """Alias -> table name in one scope, with the enclosing scopes for correlated columns."""

    aliases: dict[str, str | None]
    parent: _Resolver | None
    default: str | None = field(default=None)

    def __post_init__(self) -> None:
        tables = set(self.aliases.values())
        if self.default is None and len(tables) == 1:
            self.default = next(iter(tables))

    @classmethod
    def of(cls, scope: Any) -> _Resolver:
        """The resolver of a sqlglot ``Scope`` (and of the scopes around it)."""
        from sqlglot import exp

        parent = cls.of(scope.parent) if scope.parent is not None else None
        aliases: dict[str, str | None] = {}
        for alias, source in scope.sources.items():
            aliases[alias] = _name(source.this) if isinstance(source, exp.Table) else None
        return cls(aliases, parent)

    def table(self, column: exp.Column) -> str | None:
        qualifier = column.table
        if not qualifier:
            return self.default
        resolver: _Resolver | None = self
        while resolver is not None:
            if qualifier in resolver.aliases:
                return resolver.aliases[qualifier]
            resolver = resolver.parent
        return None

    def is_local(self, column: exp.Column) -> bool:
        return not column.table or column.table in self.aliases


def _name(identifier: Any) -> str:
    """An identifier as PostgreSQL stores it: unquoted names fold to lower case."""
    from sqlglot import exp

    if isinstance(identifier, exp.Identifier):
        return identifier.this if identifier.quoted else identifier.this.lower()
    return str(identifier.name if hasattr(identifier, "name") else identifier).lower()


def _strip(node: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    while True:
        relabel = isinstance(node, exp.Cast) and node.to.this.name in _RELABEL
        if isinstance(node, exp.Paren) or relabel:
            node = node.this
        else:
            return node


def _column(node: exp.Expression) -> exp.Column | None:
    from sqlglot import exp

    stripped = _strip(node)
    return stripped if isinstance(stripped, exp.Column) else None


def _columns_outside_subqueries(node: exp.Expression) -> list[exp.Column]:
    from sqlglot import exp

    return [
        n
        for n in node.walk(prune=lambda n: isinstance(n, exp.Query))
        if isinstance(n, exp.Column)
    ]


def _is_value(node: exp.Expression) -> bool:
    """A constant, a placeholder, or anything computed without this row's columns."""
    return not _columns_outside_subqueries(node)


_RANGE_OPS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _conditions(node: exp.Expression, resolver: _Resolver) -> list[Predicate]:
    """The predicates of one boolean condition (a WHERE, an ON or a plan's Filter)."""
    from sqlglot import exp

    node = _strip(node)
    if isinstance(node, exp.And):
        return _conditions(node.this, resolver) + _conditions(node.expression, resolver)
    if isinstance(node, exp.Or):
        return _or(node, resolver)
    if isinstance(node, exp.Query | exp.Exists):
        return []  # a subquery's predicates are read in its own scope
    kind = type(node).__name__.upper()
    if isinstance(node, exp.EQ | exp.GT | exp.GTE | exp.LT | exp.LTE | exp.NEQ):
        operator = "=" if kind == "EQ" else "<>" if kind == "NEQ" else _RANGE_OPS[kind]
        return _comparison(node.this, node.expression, operator, resolver)
    if isinstance(node, exp.In):
        return _one_column(node.this, "equality", "IN", resolver)
    if isinstance(node, exp.Between):
        return _one_column(node.this, "range", "BETWEEN", resolver)
    if isinstance(node, exp.Is):
        if isinstance(node.expression, exp.Null):
            return _one_column(node.this, "equality", "IS NULL", resolver)
        return _one_column(node.this, "filter", "IS", resolver, note="IS TRUE/FALSE: not selective")
    if isinstance(node, exp.Like | exp.ILike):
        return _like(node, resolver)
    if isinstance(node, exp.Not):
        return [
            _unusable(c, resolver, "NOT", "a negated condition: an index does not help")
            for c in _columns_outside_subqueries(node)
        ]
    column = _column(node)
    if column is not None:  # a boolean column on its own
        return _one_column(column, "filter", "boolean", resolver,
                           note="a boolean column: rarely selective enough for an index")
    return [
        _unusable(c, resolver, "expression", "the column is inside an expression")
        for c in _columns_outside_subqueries(node)
    ]


def _comparison(
    left: exp.Expression, right: exp.Expression, operator: str, resolver: _Resolver
) -> list[Predicate]:
    from sqlglot import exp

    if _is_value(left) and not _is_value(right):
        left, right = right, left
        operator = _FLIPPED.get(operator, operator)
    if isinstance(_strip(right), exp.Any | exp.All):
        right = _strip(right).this
        operator = "= ANY" if operator == "=" else f"{operator} ANY"
    column = _column(left)
    if column is not None and _is_value(right):
        if operator == "<>":
            return [_unusable(column, resolver, "<>", "not-equal is not selective")]
        kind = "equality" if operator in ("=", "= ANY") else "range"
        return [_predicate(column, kind, operator, resolver)]
    other = _column(right)
    if column is not None and other is not None:
        if resolver.table(column) != resolver.table(other) or not (
            resolver.is_local(column) and resolver.is_local(other)
        ):
            out = []
            # The inner side of a join (or a correlated subquery's column) is looked up by
            # the other side's value: an equality from its point of view.
            for col in (column, other):
                if resolver.is_local(col):
                    out.append(_predicate(col, "join", operator, resolver))
            return out
        return [
            _unusable(c, resolver, operator, "two columns of one row compared")
            for c in (column, other)
        ]
    note = "a function or expression on the column: a plain index does not help"
    if _is_value(right):
        columns = _columns_outside_subqueries(left)
        expression = _strip(left).sql(dialect="postgres")
        note += f"; an expression index on ({expression}) would"
        return [_unusable(c, resolver, operator, note) for c in columns]
    return [
        _unusable(c, resolver, operator, note)
        for c in _columns_outside_subqueries(left) + _columns_outside_subqueries(right)
    ]


def _like(node: exp.Like | exp.ILike, resolver: _Resolver) -> list[Predicate]:
    from sqlglot import exp

    column = _column(node.this)
    pattern = _strip(node.expression)
    if column is None:
        return [
            _unusable(c, resolver, "LIKE", "LIKE on an expression: a plain index does not help")
            for c in _columns_outside_subqueries(node.this)
        ]
    if isinstance(node, exp.ILike):
        return [_unusable(column, resolver, "ILIKE",
                          "ILIKE: needs an index on lower(column) or a trigram index")]
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        text = pattern.this
        if text and text[0] not in "%_":
            return [
                Predicate(resolver.table(column), _name(column.this), "range", "LIKE prefix",
                          True, "a prefix match: B-tree with text_pattern_ops",
                          "text_pattern_ops")
            ]
        return [_unusable(column, resolver, "LIKE",
                          "a pattern that starts with a wildcard: needs a trigram index")]
    return [_unusable(column, resolver, "LIKE", "the pattern is a parameter: a prefix match "
                      "can use a B-tree with text_pattern_ops, a leading wildcard cannot")]


def _or(node: exp.Or, resolver: _Resolver) -> list[Predicate]:
    """``a = 1 OR a = 2`` is an IN; an OR across columns needs one index per branch."""
    branches = _or_branches(node)
    parts = [_conditions(b, resolver) for b in branches]
    keys = {
        (p.table, p.column) for part in parts for p in part if p.kind == "equality"
    }
    if len(keys) == 1 and all(
        len(part) == 1 and part[0].kind == "equality" for part in parts
    ):
        only = parts[0][0]
        return [Predicate(only.table, only.column, "equality", "OR (IN)", True)]
    note = "OR across columns: one index per branch (a BitmapOr) or a UNION rewrite"
    seen: dict[tuple[str | None, str], Predicate] = {}
    for part in parts:
        for p in part:
            seen.setdefault((p.table, p.column),
                            Predicate(p.table, p.column, "filter", "OR", False, note))
    return list(seen.values())


def _or_branches(node: exp.Expression) -> list[exp.Expression]:
    from sqlglot import exp

    node = _strip(node)
    if isinstance(node, exp.Or):
        return _or_branches(node.this) + _or_branches(node.expression)
    return [node]


def _one_column(
    node: exp.Expression, kind: str, operator: str, resolver: _Resolver, note: str = ""
) -> list[Predicate]:
    column = _column(node)
    if column is None:
        return [
            _unusable(c, resolver, operator, "a function or expression on the column: "
                      "a plain index does not help")
            for c in _columns_outside_subqueries(node)
        ]
    if kind == "filter":
        return [_unusable(column, resolver, operator, note)]
    return [_predicate(column, kind, operator, resolver)]


def _predicate(column: exp.Column, kind: str, operator: str, resolver: _Resolver) -> Predicate:
    return Predicate(resolver.table(column), _name(column.this), kind, operator, True)


def _unusable(column: exp.Column, resolver: _Resolver, operator: str, note: str) -> Predicate:
    return Predicate(resolver.table(column), _name(column.this), "filter", operator, False, note)


@lru_cache(maxsize=4096)
def _filter_predicates(condition: str, relation: str, alias: str | None) -> tuple[Predicate, ...]:
    """The predicates of a plan node's Filter (or Index Cond) on ``relation``."""
    tree = _parse(f"SELECT 1 WHERE {condition}")
    if tree is None:
        return ()
    where = tree.args.get("where")
    if where is None:
        return ()
    aliases: dict[str, str | None] = {relation: relation}
    if alias:
        aliases[alias] = relation
    return tuple(_conditions(where.this, _Resolver(aliases, None, relation)))


# -------------------------------------------------------------------------------- existing indexes


@dataclass(frozen=True)
class _Index:
    table: str
    name: str | None
    columns: tuple[str, ...]
    ordered: bool  # the index's column order is known (schema, database), not just its columns
    source: str
    seen_ns: int | None = None


def _schema_indexes(text: str, source: str) -> list[_Index]:
    """Indexes a schema file declares: CREATE INDEX, primary keys and unique constraints."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, SqlglotError

    try:
        statements = sqlglot.parse(text, read="postgres", error_level=ErrorLevel.IGNORE)
    except SqlglotError as e:
        raise ValueError(f"{source}: cannot read the schema: {e}") from e
    out: list[_Index] = []
    for statement in statements:
        if not isinstance(statement, exp.Create):
            continue
        kind = (statement.args.get("kind") or "").upper()
        if kind == "INDEX":
            index = _index_of(statement, source)
            if index is not None:
                out.append(index)
        elif kind == "TABLE" and isinstance(statement.this, exp.Schema):
            out += _table_constraints(statement.this, source)
    return out


def _index_of(statement: exp.Create, source: str) -> _Index | None:
    from sqlglot import exp

    index = statement.this
    if not isinstance(index, exp.Index):
        return None
    table = index.args.get("table")
    params = index.args.get("params")
    if not isinstance(table, exp.Table) or params is None or params.args.get("where"):
        return None  # a partial index serves only its own WHERE: not counted
    columns = []
    for item in params.args.get("columns") or []:
        target = item.this if isinstance(item, exp.Ordered) else item
        column = _column(target)
        if column is None:
            break  # an expression: the columns after it are not a usable prefix
        columns.append(_name(column.this))
    if not columns:
        return None
    name = _name(index.this) if index.this is not None else None
    return _Index(_name(table.this), name, tuple(columns), True, source)


def _table_constraints(schema: exp.Schema, source: str) -> list[_Index]:
    from sqlglot import exp

    table = _name(schema.this.this)
    out = []
    for item in schema.expressions:
        if isinstance(item, exp.ColumnDef):
            for constraint in item.args.get("constraints") or []:
                if isinstance(constraint.kind, exp.PrimaryKeyColumnConstraint |
                              exp.UniqueColumnConstraint):
                    out.append(_Index(table, None, (_name(item.this),), True, source))
            continue
        for node in [item, *(item.expressions if isinstance(item, exp.Constraint) else [])]:
            if isinstance(node, exp.PrimaryKey):
                columns = tuple(_name(i) for i in node.expressions)
            elif isinstance(node, exp.UniqueColumnConstraint) and isinstance(
                node.this, exp.Schema
            ):
                columns = tuple(_name(i) for i in node.this.expressions)
            else:
                continue
            if columns:
                out.append(_Index(table, None, columns, True, source))
    return out


_PLAN_INDEXES = """
    SELECT coalesce(n.relation, parent.relation, grand.relation) AS relation,
           coalesce(n.alias, parent.alias, grand.alias) AS alias,
           n.index_name, n.index_cond, max(pl.ts_ns) AS seen_ns,
           min(pl.source) AS source
    FROM plan_nodes AS n
    JOIN plans AS pl USING (plan_id)
    LEFT JOIN plan_nodes AS parent
           ON parent.plan_id = n.plan_id AND parent.node_id = n.parent_node_id
    LEFT JOIN plan_nodes AS grand
           ON grand.plan_id = parent.plan_id AND grand.node_id = parent.parent_node_id
    WHERE n.index_name IS NOT NULL AND n.index_cond IS NOT NULL
    GROUP BY ALL
"""


def _plan_indexes(wb: Workbook) -> list[_Index]:
    """Indexes the plans used, with the columns their Index Cond names (order unknown)."""
    out = []
    for row in wb.sql(_PLAN_INDEXES).iter_rows(named=True):
        if row["relation"] is None:
            continue
        columns = []
        for p in _filter_predicates(row["index_cond"], row["relation"], row["alias"]):
            if p.table == row["relation"] and p.column not in columns:
                columns.append(p.column)
        if columns:
            out.append(_Index(row["relation"], row["index_name"], tuple(columns), False,
                              f"plan ({row['source']})", row["seen_ns"]))
    return out


# -------------------------------------------------------------------------------- live database


def _connect(dsn: str) -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise ImportError(
            "reading a live PostgreSQL needs psycopg, which latkit does not install by "
            f"default (it is LGPL): pip install 'latkit[{_PG_EXTRA}]'"
        ) from e
    return psycopg.connect(dsn, autocommit=True)


def _database_catalog(dsn: str) -> tuple[list[_Index], dict[str, float]]:
    """The live database's indexes (from pg_indexes) and table sizes (pg_class.reltuples)."""
    with _connect(dsn) as con:
        rows = con.execute(
            """
            SELECT indexdef FROM pg_indexes
            WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
            """
        ).fetchall()
        sizes = con.execute(
            """
            SELECT c.relname, c.reltuples FROM pg_class AS c
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'm')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            """
        ).fetchall()
    indexes = _schema_indexes(";\n".join(r[0] for r in rows), "database")
    return indexes, {name: float(n) for name, n in sizes if n is not None and n >= 0}


# -------------------------------------------------------------------------------- suggestions


@dataclass
class _Candidate:
    table: str
    columns: list[str]
    opclasses: dict[str, str]
    equality: list[str]
    reason: str
    fingerprints: set[str] = field(default_factory=set)
    filters: set[str] = field(default_factory=set)  # the scans' filter templates
    rows_removed: int = 0
    table_rows: int | None = None
    seen_ns: int | None = None
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_SUGGESTION_SCHEMA: dict[str, Any] = {
    "table_name": pl.String,
    "columns": pl.List(pl.String),
    "create_index": pl.String,
    "index_name": pl.String,
    "reason": pl.String,
    "fingerprints": pl.List(pl.String),
    "calls": pl.Int64,
    "total_ms": pl.Float64,
    "rows_removed": pl.Int64,
    "table_rows": pl.Int64,
    "est_saving_ms": pl.Float64,
    "est_saving_share": pl.Float64,
    "saving_basis": pl.String,
    "statements": pl.List(pl.String),
    "note": pl.String,
}


def suggest(
    wb: Workbook,
    *,
    schema: str | Path | None = None,
    dsn: str | None = None,
    min_table_rows: int = MIN_TABLE_ROWS,
    max_kept_share: float = MAX_KEPT_SHARE,
    min_mean_ms: float = MIN_MEAN_MS,
    index_lookup_ms: float = INDEX_LOOKUP_MS,
) -> pl.DataFrame:
    """Candidate indexes, one row each, most valuable first: few and precise.

    Columns:

    - ``table_name``, ``columns`` (equality columns first, then one range column, then the
      ORDER BY columns when the index can also deliver the order), ``create_index`` (a
      ready ``CREATE INDEX CONCURRENTLY``, which does not block writes while it builds),
      ``index_name``;
    - the evidence: ``reason`` (``seq_scan``: plans read the table sequentially and threw
      most rows away; ``statement``: only the statements' text and a table known to be
      large), ``fingerprints``, ``calls`` and ``total_ms`` (of those queries, from
      :func:`top_queries`), ``rows_removed`` (by the scans' filters, in the plans seen),
      ``table_rows`` (the table's size as a plan or the live database saw it);
    - ``est_saving_ms`` and ``est_saving_share`` (of all database time): for ``seq_scan``,
      each query's mean scan time per plan (parallel workers counted once) times its
      calls, minus ``index_lookup_ms`` per call, at most the query's total time; for
      ``statement``, the queries' total time minus the lookups (an upper bound: no plan
      says how much of it the scan takes). Plans logged by auto_explain above a duration
      threshold are the slower executions, so the estimate leans high. ``saving_basis``
      says which estimate was used;
    - ``statements`` (one runnable example per query, for :func:`verify` and EXPLAIN) and
      ``note`` (an index on these columns seen elsewhere, a LIKE operator class, ...).

    Skipped: tables with fewer than ``min_table_rows`` rows, scans that keep more than
    ``max_kept_share`` of the rows they read, conditions no plain index serves (functions
    on the column, ``OR`` across columns, ``LIKE '%x'``), statement-only candidates whose
    queries average under ``min_mean_ms``, and predicates an existing index covers (its
    leading column is one of the candidate's equality columns, or its first column).
    Existing indexes are read from ``schema`` (a SQL file of CREATE TABLE / CREATE INDEX),
    from the live database at ``dsn`` (``pg_indexes``; it also gives table sizes from
    ``pg_class.reltuples``; needs ``latkit[postgres]``), and from the plans' index scans.
    An index seen in a plan is only known to have existed when that plan ran: it hides a
    suggestion when it was seen after the last sequential scan, and otherwise is named in
    ``note``.

    >>> indexes.suggest(wb, schema="db/schema.sql").select("table_name", "create_index")
    """
    profile = top_queries(wb)
    stats = {r["fingerprint"]: r for r in profile.iter_rows(named=True)}
    all_ms = float(profile["total_ms"].sum() or 0.0)

    known: list[_Index] = []
    sizes: dict[str, float] = {}
    if schema is not None:
        path = Path(schema)
        known += _schema_indexes(path.read_text(), str(path))
    live_tables: set[str] = set()
    if dsn is not None:
        live, live_sizes = _database_catalog(dsn)
        known += live
        sizes.update(live_sizes)
        live_tables = set(live_sizes)
    seen_in_plans = [i for i in _plan_indexes(wb) if i.table not in live_tables]

    scans = wb.sql(_SCANS)
    # Table sizes seen in plans: what a filtered scan read, or the planner's row estimate
    # for an unfiltered one. The live database, when given, knows better.
    observed = pl.concat([
        scans.select("relation", pl.col("rows_read").cast(pl.Float64).alias("rows")),
        wb.sql(
            """
            SELECT relation, plan_rows AS rows FROM plan_nodes
            WHERE node_type IN ('Seq Scan', 'Parallel Seq Scan') AND filter IS NULL
              AND relation IS NOT NULL AND plan_rows IS NOT NULL
            """
        ).select("relation", pl.col("rows").cast(pl.Float64)),
    ])
    for table, rows in observed.group_by("relation").agg(pl.col("rows").max()).iter_rows():
        if table not in live_tables and rows is not None:
            sizes[table] = max(sizes.get(table, 0.0), float(rows))

    candidates = _from_scans(scans, stats, sizes, min_table_rows, max_kept_share)
    covered_by_scans = {(c.table, c.columns[0]) for c in candidates}
    candidates += _from_statements(profile, sizes, min_table_rows, min_mean_ms,
                                   covered_by_scans)
    merged = _merge(candidates)

    rows = []
    for c in merged:
        blocking = _covering(c, known)
        if blocking is not None:
            continue
        seen = _covering(c, seen_in_plans)
        if seen is not None:
            if seen.seen_ns is not None and c.seen_ns is not None and seen.seen_ns >= c.seen_ns:
                continue  # the index was in use after the last sequential scan: done already
            c.notes.append(
                f"an index on {c.table} ({', '.join(seen.columns)}) appears in a plan "
                f"({seen.name}, {seen.source}): if it exists now, this one is not needed"
            )
        calls = sum(int(stats[f]["calls"]) for f in c.fingerprints if f in stats)
        total = sum(float(stats[f]["total_ms"]) for f in c.fingerprints if f in stats)
        saving, basis = _saving(c, scans, stats, index_lookup_ms)
        name = _index_name(c.table, c.columns)
        rows.append(
            {
                "table_name": c.table,
                "columns": c.columns,
                "create_index": _create_index(name, c.table, c.columns, c.opclasses),
                "index_name": name,
                "reason": c.reason,
                "fingerprints": sorted(c.fingerprints),
                "calls": calls if c.fingerprints else None,
                "total_ms": total if c.fingerprints else None,
                "rows_removed": c.rows_removed if c.reason == "seq_scan" else None,
                "table_rows": c.table_rows,
                "est_saving_ms": saving,
                "est_saving_share": saving / all_ms if all_ms else None,
                "saving_basis": basis,
                "statements": c.examples,
                "note": "; ".join(c.notes) or None,
            }
        )
    frame = pl.DataFrame(rows, schema=_SUGGESTION_SCHEMA)
    return frame.sort(["est_saving_ms", "table_name"], descending=[True, False], nulls_last=True)


def _from_scans(
    scans: pl.DataFrame,
    stats: dict[str, dict[str, Any]],
    sizes: dict[str, float],
    min_table_rows: int,
    max_kept_share: float,
) -> list[_Candidate]:
    """Candidates from large, selective sequential scans, one per table and columns."""
    if scans.is_empty():
        return []
    groups = scans.group_by("relation", "filter_template").agg(
        pl.col("alias").first(),
        pl.col("filter").first().alias("example_filter"),
        pl.col("rows_read").sum(),
        (pl.col("removed") * pl.col("loops")).sum().alias("rows_removed"),
        (pl.col("kept") * pl.col("loops")).sum().alias("rows_kept"),
        pl.col("rows_read").max().alias("table_rows"),
        pl.col("ts_ns").max().alias("seen_ns"),
        pl.col("fingerprint").drop_nulls().unique().sort().alias("fingerprints"),
    )
    out: dict[tuple[str, tuple[str, ...]], _Candidate] = {}
    for g in groups.sort("relation", "filter_template").iter_rows(named=True):
        table = g["relation"]
        table_rows = max(float(g["table_rows"] or 0), sizes.get(table, 0.0))
        if table_rows < min_table_rows or not g["rows_read"]:
            continue
        if g["rows_kept"] / g["rows_read"] > max_kept_share:
            continue
        preds = [
            p for p in _filter_predicates(g["example_filter"], table, g["alias"])
            if p.table == table
        ]
        fingerprints = set(g["fingerprints"])
        orders = [
            p for f in sorted(fingerprints) for p, _ in _statement_predicates(
                _template_of(stats, f)) if p.kind == "order" and p.table == table
        ]
        columns, opclasses, equality = _index_columns(preds + orders)
        if not columns:
            continue
        c = out.get((table, tuple(columns)))
        if c is None:
            c = out[(table, tuple(columns))] = _Candidate(
                table, columns, opclasses, equality, "seq_scan", table_rows=int(table_rows))
        c.fingerprints |= fingerprints
        c.filters.add(g["filter_template"])
        c.rows_removed += int(g["rows_removed"])
        c.table_rows = max(c.table_rows or 0, int(table_rows))
        c.seen_ns = max(c.seen_ns or 0, g["seen_ns"] or 0) or None
        examples = [_runnable(_template_of(stats, f)) for f in sorted(fingerprints)
                    if _template_of(stats, f)]
        if not examples:
            # EXPLAIN files do not hold the statement: the scan's own filter makes one.
            examples = [f"SELECT * FROM {_quote(table)} WHERE {g['example_filter']}"]
        c.examples += [e for e in examples if e not in c.examples]
        if opclasses and not c.notes:
            c.notes.append("text_pattern_ops serves LIKE 'prefix%' whatever the collation")
    return list(out.values())


def _from_statements(
    profile: pl.DataFrame,
    sizes: dict[str, float],
    min_table_rows: int,
    min_mean_ms: float,
    already: set[tuple[str, str]],
) -> list[_Candidate]:
    """Candidates from statements alone: slow queries on tables known to be large."""
    out = []
    for row in profile.iter_rows(named=True):
        if (row["mean_ms"] or 0.0) < min_mean_ms or not row["query_template"]:
            continue
        by_table: dict[str, list[Predicate]] = {}
        for p, _ in _statement_predicates(row["query_template"]):
            if p.table is not None:
                by_table.setdefault(p.table, []).append(p)
        for table, preds in sorted(by_table.items()):
            if sizes.get(table, 0.0) < min_table_rows:
                continue
            columns, opclasses, equality = _index_columns(preds)
            if not columns or (table, columns[0]) in already:
                continue
            c = _Candidate(table, columns, opclasses, equality, "statement",
                           {row["fingerprint"]}, table_rows=int(sizes[table]))
            c.examples = [_runnable(row["query_template"])]
            c.notes.append("no plan: confirm with EXPLAIN ANALYZE or verify()")
            out.append(c)
    return out


def _saving(
    c: _Candidate, scans: pl.DataFrame, stats: dict[str, dict[str, Any]], lookup_ms: float
) -> tuple[float, str]:
    """The estimated saving in ms, and what it is based on.

    For each query with sequential scans in its plans: the mean scan time per plan, times
    the query's calls, minus one index lookup per call, at most the query's total time. For
    a query known only from its text: its total time minus the lookups (an upper bound).
    """
    saving, bases = 0.0, []
    measured: set[str] = set()
    if c.filters:
        part = scans.filter(
            (pl.col("relation") == c.table) & pl.col("filter_template").is_in(sorted(c.filters))
        )
        per_plan = part.group_by("plan_id").agg(
            pl.col("fingerprint").first(), pl.col("wall_ms").sum()
        )
        known = per_plan.filter(pl.col("fingerprint").is_in(sorted(stats)))
        if known.height:
            # EXPLAIN runs without their statement are not part of the workload: they only
            # count when nothing else says what the scan costs.
            per_plan = known
        for (fingerprint,), plans in per_plan.group_by(["fingerprint"]):
            mean = float(plans["wall_ms"].mean() or 0.0)  # type: ignore[arg-type]
            if fingerprint in stats:
                measured.add(str(fingerprint))
                calls = int(stats[fingerprint]["calls"])
                cap = float(stats[fingerprint]["total_ms"])
            else:  # a plan without its statement (an EXPLAIN file): it ran once
                calls, cap = plans.height, float(plans["wall_ms"].sum())
            saving += max(0.0, min(mean * calls, cap) - calls * lookup_ms)
        bases.append("seq scan time")
    rest = [f for f in sorted(c.fingerprints - measured) if f in stats]
    if rest and not c.filters:
        for f in rest:
            calls = int(stats[f]["calls"])
            saving += max(0.0, float(stats[f]["total_ms"]) - calls * lookup_ms)
        bases.append("query time (upper bound)")
    return saving, " + ".join(bases)


def _template_of(stats: dict[str, dict[str, Any]], fingerprint: str) -> str:
    row = stats.get(fingerprint)
    return str(row["query_template"]) if row and row["query_template"] else ""


def _runnable(template: str) -> str:
    """A template's ``?`` values as ``$1, $2 ...`` placeholders, which PREPARE accepts."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", template)


def _index_columns(
    preds: Sequence[Predicate],
) -> tuple[list[str], dict[str, str], list[str]]:
    """Equality columns, then the first range column, then ORDER BY when it can still help.

    After a range column the index is no longer in the ORDER BY's order, so ORDER BY columns
    come only when there is no range, or the range column is the first ORDER BY column.
    """
    usable = [p for p in preds if p.indexable]
    equality = _unique(p.column for p in usable if p.kind == "equality")
    ranges = [p for p in usable if p.kind == "range" and p.column not in equality]
    order = _unique(p.column for p in usable if p.kind == "order")
    columns = list(equality)
    opclasses = {}
    if ranges:
        first = ranges[0]
        columns.append(first.column)
        if first.opclass:
            opclasses[first.column] = first.opclass
    if order and (not ranges or order[0] == ranges[0].column):
        columns += [c for c in order if c not in columns and c not in opclasses]
    if not equality and not ranges:
        return [], {}, []  # ORDER BY alone: not what this analysis is about
    return columns, opclasses, equality


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge(candidates: list[_Candidate]) -> list[_Candidate]:
    """One candidate per index: same columns, or columns that are a prefix of another's."""
    ordered = sorted(candidates, key=lambda c: (c.table, -len(c.columns), c.reason != "seq_scan"))
    kept: list[_Candidate] = []
    for c in ordered:
        into = next(
            (k for k in kept if k.table == c.table and k.columns[: len(c.columns)] == c.columns),
            None,
        )
        if into is None:
            kept.append(c)
            continue
        into.fingerprints |= c.fingerprints
        into.filters |= c.filters
        into.rows_removed += c.rows_removed
        into.examples += [e for e in c.examples if e not in into.examples]
        into.notes += [n for n in c.notes if n not in into.notes]
        into.table_rows = max(into.table_rows or 0, c.table_rows or 0) or None
        into.seen_ns = max(into.seen_ns or 0, c.seen_ns or 0) or None
        if c.reason == "seq_scan":
            into.reason = "seq_scan"
    for c in kept:
        if c.reason == "seq_scan":  # a plan backs it: the statement-only caveat goes
            c.notes = [n for n in c.notes if not n.startswith("no plan")]
    return kept


def _covering(c: _Candidate, indexes: Iterable[_Index]) -> _Index | None:
    """An index whose leading column already serves the candidate's predicates.

    With a known column order (schema, database) the index's first column must be one of
    the candidate's equality columns or its first column; for an index seen in a plan only
    the columns its Index Cond used are known, and one of them must be.
    """
    leading = {c.columns[0], *c.equality}
    for index in indexes:
        if index.table != c.table:
            continue
        if index.ordered and index.columns[0] in leading:
            return index
        if not index.ordered and leading & set(index.columns):
            return index
    return None


def _index_name(table: str, columns: Sequence[str]) -> str:
    name = "_".join([table, *columns, "idx"])
    return name if len(name) <= 63 else name[:58] + "_idx"


_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def _quote(name: str) -> str:
    from latkit.fingerprint import PG_RESERVED

    if _PLAIN.fullmatch(name) and name.upper() not in PG_RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _create_index(name: str, table: str, columns: Sequence[str], opclasses: dict[str, str],
                  concurrently: bool = True) -> str:
    parts = ", ".join(
        _quote(c) + (f" {opclasses[c]}" if c in opclasses else "") for c in columns
    )
    how = "CONCURRENTLY " if concurrently else ""
    return f"CREATE INDEX {how}{_quote(name)} ON {_quote(table)} ({parts})"


# -------------------------------------------------------------------------------- verify

_VERIFY_SCHEMA: dict[str, Any] = {
    "table_name": pl.String,
    "columns": pl.List(pl.String),
    "create_index": pl.String,
    "statement": pl.String,
    "cost_before": pl.Float64,
    "cost_after": pl.Float64,
    "cost_reduction": pl.Float64,
    "index_chosen": pl.Boolean,
    "plan_before": pl.String,
    "plan_after": pl.String,
    "status": pl.String,
}


def verify(
    wb: Workbook,
    dsn: str,
    suggestions: pl.DataFrame | None = None,
    *,
    create_extension: bool = False,
) -> pl.DataFrame:
    """Would PostgreSQL use each suggested index? Checked with HypoPG, nothing is built.

    For every suggestion (``suggest(wb)`` unless given) and each of its ``statements``, the
    planner's estimated cost and plan are read with ``EXPLAIN`` before and after a
    *hypothetical* index (``hypopg_create_index``), which only this session's planner sees;
    ``hypopg_reset()`` removes it. This is how Dexter decides. Statements with ``$n``
    placeholders are planned as prepared statements with ``plan_cache_mode =
    force_generic_plan``, so no parameter values are needed.

    Columns: ``table_name, columns, create_index, statement, cost_before, cost_after,
    cost_reduction`` (1 - after / before), ``index_chosen`` (the plan after uses the
    hypothetical index), ``plan_before``, ``plan_after`` (the plans' scan nodes, e.g.
    ``Seq Scan on customers``), ``status``: ``index used``, ``not chosen``, or why the check
    could not run (HypoPG missing, the statement did not plan). HypoPG must be installed in
    the database (``CREATE EXTENSION hypopg``; Debian package ``postgresql-NN-hypopg``), or
    pass ``create_extension=True`` to create it. Needs psycopg: ``pip install
    'latkit[postgres]'``.

    >>> indexes.verify(wb, "postgresql://localhost/shop")
    """
    frame = suggest(wb) if suggestions is None else suggestions
    rows: list[dict[str, Any]] = []
    with _connect(dsn) as con:
        missing = _hypopg_missing(con, create_extension)
        for s in frame.iter_rows(named=True):
            statements = s.get("statements") or []
            base = {"table_name": s["table_name"], "columns": s["columns"],
                    "create_index": s["create_index"]}
            if missing:
                rows.append(base | {"statement": statements[0] if statements else None,
                                    "status": missing})
                continue
            for statement in statements or [None]:
                rows.append(base | {"statement": statement}
                            | _check(con, s["create_index"], statement))
    return pl.DataFrame(rows, schema=_VERIFY_SCHEMA)


def _hypopg_missing(con: Any, create: bool) -> str | None:
    """Why HypoPG cannot be used in this database, or None when it can."""
    installed = con.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'").fetchone()
    if installed:
        return None
    available = con.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'"
    ).fetchone()
    major = con.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
    package = f"postgresql-{major[0]}-hypopg" if major else "postgresql-NN-hypopg"
    if not available:
        return (f"HypoPG is not available on this server: install it (Debian package "
                f"{package}), then CREATE EXTENSION hypopg")
    if not create:
        return ("HypoPG is available but not installed in this database: run CREATE "
                "EXTENSION hypopg (or verify(..., create_extension=True))")
    con.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    return None


def _check(con: Any, create_index: str, statement: str | None) -> dict[str, Any]:
    if not statement:
        return {"status": "no statement to test"}
    hypothetical = create_index.replace(" CONCURRENTLY", "", 1)
    try:
        before = _explain(con, statement)
        created = con.execute(
            "SELECT indexname FROM hypopg_create_index(%s)", [hypothetical]
        ).fetchone()
        try:
            after = _explain(con, statement)
        finally:
            con.execute("SELECT hypopg_reset()")
    except Exception as e:  # any database error: report it on the row, check the others
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"status": f"could not plan: {message}"}
    name = created[0] if created else None
    used = name is not None and name in _index_names(after)
    cost_before = float(before["Total Cost"])
    cost_after = float(after["Total Cost"])
    return {
        "cost_before": cost_before,
        "cost_after": cost_after,
        "cost_reduction": 1 - cost_after / cost_before if cost_before else None,
        "index_chosen": used,
        "plan_before": _scans_of(before),
        "plan_after": _scans_of(after, hypothetical=name),
        "status": "index used" if used else "not chosen",
    }


def _explain(con: Any, statement: str) -> dict[str, Any]:
    """The root node of the statement's plan (generic, when it has placeholders)."""
    if not re.search(r"\$\d+", statement):
        row = con.execute(f"EXPLAIN (FORMAT JSON) {statement}").fetchone()
        return _root(row[0])
    count = max(int(n) for n in re.findall(r"\$(\d+)", statement))
    con.execute("SET plan_cache_mode = force_generic_plan")
    con.execute("DEALLOCATE ALL")
    try:
        con.execute(f"PREPARE latkit_verify AS {statement}")
        nulls = ", ".join(["NULL"] * count)
        row = con.execute(f"EXPLAIN (FORMAT JSON) EXECUTE latkit_verify({nulls})").fetchone()
    finally:
        con.execute("DEALLOCATE ALL")
        con.execute("RESET plan_cache_mode")
    return _root(row[0])


def _root(document: Any) -> dict[str, Any]:
    plans = json.loads(document) if isinstance(document, str) else document
    root = plans[0]["Plan"]
    assert isinstance(root, dict)
    return root


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans") or []:
        yield from _walk(child)


def _index_names(root: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in _walk(root) if "Index Name" in n}


def _scans_of(root: dict[str, Any], hypothetical: str | None = None) -> str:
    parts = []
    for n in _walk(root):
        if "Relation Name" in n or "Index Name" in n:
            text = n["Node Type"]
            if "Index Name" in n:
                shown = "hypothetical index" if n["Index Name"] == hypothetical else n[
                    "Index Name"]
                text += f" using {shown}"
            if "Relation Name" in n:
                text += f" on {n['Relation Name']}"
            parts.append(text)
    return "; ".join(parts) or root["Node Type"]
