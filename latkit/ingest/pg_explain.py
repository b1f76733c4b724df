"""EXPLAIN (FORMAT JSON) plans: psql output, arrays of plans, bare objects, auto_explain JSON.

A file holds what ``EXPLAIN (ANALYZE, FORMAT JSON) ...`` prints (``[{"Plan": {...},
"Planning Time": ..., "Execution Time": ...}]``), several such results one after another or
in one array, a bare ``{"Plan": ...}`` object, or auto_explain's JSON shape
(``{"Query Text": ..., "Plan": {...}}``). Each plan becomes one ``plans`` row and one
``plan_nodes`` row per node (``flatten``).

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pgplans/seqscan_filter.json")
>>> wb.sql("select node_type, relation from plan_nodes where node_id = 0").row(0)
('Seq Scan', 'orders')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from latkit.ingest import LoadError, Reject, Rows, Source

__all__ = ["FORMAT", "PLAN_NODES_STAGING", "PLANS_STAGING", "flatten", "read", "sniff"]

FORMAT = "pg_explain"

#: What ``flatten`` returns: the ``plan_nodes`` table's columns except ``load_id``.
#:
#: ``node_id`` numbers the nodes of one plan in pre-order from 0 (the root), ``depth`` is 0
#: at the root, and InitPlan / SubPlan nodes are children of the node that lists them.
#: ``actual_rows`` and ``actual_total_ms`` are *per loop*, as EXPLAIN reports them: the
#: node's whole time is ``actual_total_ms * actual_loops`` (and for parallel nodes, loops
#: count the workers). Without ANALYZE the ``actual_*`` columns are NULL.
PLAN_NODES_STAGING = pa.schema(
    [
        ("plan_id", pa.int64()),
        ("node_id", pa.int32()),
        ("parent_node_id", pa.int32()),
        ("depth", pa.int32()),
        ("node_type", pa.string()),
        ("relation", pa.string()),
        ("schema_name", pa.string()),
        ("alias", pa.string()),
        ("index_name", pa.string()),
        ("index_cond", pa.string()),
        ("filter", pa.string()),
        ("rows_removed_by_filter", pa.int64()),
        ("actual_rows", pa.float64()),
        ("actual_loops", pa.int64()),
        ("actual_total_ms", pa.float64()),
        ("plan_rows", pa.float64()),
        ("total_cost", pa.float64()),
    ]
)

#: What ``read`` yields for the ``plans`` table (the workbook adds fingerprint, source ...).
PLANS_STAGING = pa.schema(
    [
        ("plan_id", pa.int64()),
        ("statement", pa.string()),
        ("duration_ms", pa.float64()),
        ("plan", pa.string()),
    ]
)

#: plan_nodes column <- EXPLAIN JSON key, for the columns copied as they are.
_NODE_KEYS: dict[str, str] = {
    "node_type": "Node Type",
    "relation": "Relation Name",
    "schema_name": "Schema",
    "alias": "Alias",
    "index_name": "Index Name",
    "index_cond": "Index Cond",
    "filter": "Filter",
    "rows_removed_by_filter": "Rows Removed by Filter",
    "actual_rows": "Actual Rows",
    "actual_loops": "Actual Loops",
    "actual_total_ms": "Actual Total Time",
    "plan_rows": "Plan Rows",
    "total_cost": "Total Cost",
}


def flatten(plan_ids: Sequence[int], plans: Sequence[dict[str, Any]]) -> pa.Table:
    """One row per plan node, for the ``plan_nodes`` table (shape ``PLAN_NODES_STAGING``).

    ``plans[i]`` is one plan as EXPLAIN (FORMAT JSON) or auto_explain writes it: either the
    wrapper ``{"Plan": {...}, "Execution Time": ...}`` (with or without ``"Query Text"``) or
    the root node itself (``{"Node Type": ...}``); its rows get ``plan_ids[i]``. Nodes are
    numbered in pre-order, walking ``"Plans"`` (which includes InitPlan and SubPlan nodes).

    >>> plan = {"Plan": {"Node Type": "Limit", "Plans": [
    ...     {"Node Type": "Seq Scan", "Relation Name": "t", "Filter": "(x > 1)"}]}}
    >>> t = flatten([7], [plan])
    >>> t.select(["plan_id", "node_id", "parent_node_id", "depth", "node_type"]).to_pylist()[1]
    {'plan_id': 7, 'node_id': 1, 'parent_node_id': 0, 'depth': 1, 'node_type': 'Seq Scan'}
    """
    if len(plan_ids) != len(plans):
        raise ValueError(f"flatten: {len(plan_ids)} plan ids for {len(plans)} plans")
    columns: dict[str, list[Any]] = {name: [] for name in PLAN_NODES_STAGING.names}
    for plan_id, plan in zip(plan_ids, plans, strict=True):
        root = plan.get("Plan", plan) if isinstance(plan, dict) else None
        if not isinstance(root, dict):
            continue
        # (node, parent node id, depth), children pushed in reverse to keep pre-order.
        stack: list[tuple[dict[str, Any], int | None, int]] = [(root, None, 0)]
        node_id = 0
        while stack:
            node, parent, depth = stack.pop()
            columns["plan_id"].append(plan_id)
            columns["node_id"].append(node_id)
            columns["parent_node_id"].append(parent)
            columns["depth"].append(depth)
            for column, key in _NODE_KEYS.items():
                columns[column].append(node.get(key))
            children = node.get("Plans")
            if isinstance(children, list):
                stack.extend(
                    (child, node_id, depth + 1)
                    for child in reversed(children)
                    if isinstance(child, dict)
                )
            node_id += 1
    arrays = [
        _array(columns[field.name], field.type) for field in PLAN_NODES_STAGING
    ]
    return pa.Table.from_arrays(arrays, schema=PLAN_NODES_STAGING)


def _array(values: list[Any], type_: pa.DataType) -> pa.Array:
    """An Arrow array of ``values``; a value of the wrong kind becomes NULL, not an error."""
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([_coerce(v, type_) for v in values], type=type_)


def _coerce(value: Any, type_: pa.DataType) -> Any:
    if value is None:
        return None
    try:
        if pa.types.is_string(type_):
            return value if isinstance(value, str) else str(value)
        if pa.types.is_integer(type_):
            return int(value)
        if pa.types.is_floating(type_):
            return float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def sniff(head: bytes) -> bool:
    """Not written yet: the reader comes in the next commit."""
    return False


def read(source: Source, **options: object) -> Iterator[Rows | Reject]:
    """Not written yet: the reader comes in the next commit."""
    raise LoadError(f"{source.name}: the {FORMAT} reader is not written yet")
