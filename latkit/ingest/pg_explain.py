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

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from latkit.ingest import MAX_RECORD_BYTES, LoadError, Reject, Rows, Source, excerpt

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
        root = _root(plan)
        if root is None:
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


def _root(plan: object) -> dict[str, Any] | None:
    """The root node of a plan given as EXPLAIN's wrapper object or as the node itself."""
    if not isinstance(plan, dict):
        return None
    root = plan.get("Plan", plan)
    return root if isinstance(root, dict) and isinstance(root.get("Node Type"), str) else None


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
    """Whether ``head`` starts an EXPLAIN (FORMAT JSON) document (or psql's table of one).

    >>> sniff(b'[\\n  {\\n    "Plan": {\\n      "Node Type": "Seq Scan",')
    True
    >>> sniff(b'{"resourceSpans": []}')
    False
    """
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if _ALIGNED_HEADER.match(text):
        return b'"Node Type"' in text
    return text[:1] in (b"[", b"{") and bool(_PLAN_KEY.search(text)) and b'"Node Type"' in text


def read(source: Source, **options: object) -> Iterator[Rows | Reject]:
    """The plans of one file: ``plans`` rows, then their ``plan_nodes`` rows, in batches.

    The whole file is parsed at once (EXPLAIN output is small; a file of many plans is
    still read in full, then yielded ``BATCH_PLANS`` plans at a time). A document that ends
    early is a ``LoadError`` when nothing before it was readable, otherwise a ``Reject``.
    """
    with source.open() as f:
        raw = f.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        raise LoadError(f"{source.name}: more than {MAX_RECORD_BYTES:,} bytes of EXPLAIN output, "
                        "which is read whole: split it into several files")
    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    if _ALIGNED_HEADER.match(text.lstrip().encode()):
        text = _unalign(text)
    plans: list[dict[str, Any]] = []
    first_id = 0
    for item in _documents(source, text):
        if isinstance(item, Reject):
            yield item
            continue
        plans.append(item)
        if len(plans) == BATCH_PLANS:
            yield from _batches(plans, first_id)
            first_id += len(plans)
            plans = []
    if plans:
        yield from _batches(plans, first_id)


#: Plans per yielded batch.
BATCH_PLANS = 1000

_PLAN_KEY = re.compile(rb'"Plan"\s*:\s*\{')
_ALIGNED_HEADER = re.compile(rb"\s*QUERY PLAN\s*\r?\n-{4,}")
#: psql's table around the plan: the column header, its rule, the row count.
_TABLE_LINE = re.compile(r"^(QUERY PLAN|-+|\(\d+ rows?\))$")


def _batches(plans: list[dict[str, Any]], first_id: int) -> Iterator[Rows]:
    ids = list(range(first_id, first_id + len(plans)))
    yield Rows(
        "plans",
        pa.Table.from_pydict(
            {
                "plan_id": ids,
                "statement": [_text(p.get("Query Text")) for p in plans],
                "duration_ms": [_duration_ms(p) for p in plans],
                "plan": [json.dumps(p, ensure_ascii=False) for p in plans],
            },
            schema=PLANS_STAGING,
        ),
    )
    yield Rows("plan_nodes", flatten(ids, plans), read=0)  # derived from the plans read


def _documents(source: Source, text: str) -> Iterator[dict[str, Any] | Reject]:
    """Each plan of the JSON documents in ``text`` (arrays of plans, bare plans)."""
    decoder = json.JSONDecoder()
    position = 0
    found = 0
    line, counted = 1, 0  # the line of ``position``, counted up to ``counted``
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position >= len(text):
            break
        try:
            document, end = decoder.raw_decode(text, position)
        except RecursionError:  # JSON nested thousands deep: no EXPLAIN output is
            line += text.count("\n", counted, position)
            if found == 0:
                raise LoadError(
                    f"{source.name}: not readable as EXPLAIN (FORMAT JSON): the document at "
                    f"line {line} is nested too deeply to read"
                ) from None
            yield Reject(f"line {line}", f"JSON nested too deeply after {found} plan(s)",
                         excerpt(text[position : position + 120]))
            return
        except json.JSONDecodeError as e:
            if found == 0:
                # EXPLAIN output always ends with a closing bracket: without one, say so.
                ends = text.rstrip()[-1:] in ("]", "}")
                cut = "" if ends else "; the file ends early: truncated?"
                raise LoadError(
                    f"{source.name}: not readable as EXPLAIN (FORMAT JSON): {e.msg} "
                    f"(line {e.lineno}, column {e.colno}){cut}"
                ) from None
            yield Reject(f"line {e.lineno}", f"invalid JSON after {found} plan(s): {e.msg}",
                         excerpt(text[position : position + 120]))
            return
        line += text.count("\n", counted, position)
        counted = position
        items = document if isinstance(document, list) else [document]
        for index, item in enumerate(items):
            if _root(item) is not None:
                found += 1
                yield item
            else:
                where = f"line {line}" + (f", element {index}" if len(items) > 1 else "")
                yield Reject(where, "not an EXPLAIN plan (no \"Plan\" with a \"Node Type\")",
                             excerpt(json.dumps(item)))
        position = end


def _unalign(text: str) -> str:
    """The JSON inside psql's aligned output: no headers, footers or ``+`` marks.

    Line numbers in messages then count the JSON's lines, not the file's.
    """
    out = []
    for line in text.splitlines():
        if _TABLE_LINE.match(line.strip()):
            continue
        stripped = line.rstrip()
        if stripped.endswith("+"):
            stripped = stripped[:-1]
        out.append(stripped[1:] if stripped.startswith(" ") else stripped)
    return "\n".join(out)


def _duration_ms(plan: dict[str, Any]) -> float | None:
    """Execution Time when EXPLAIN ANALYZE gave one, else the root node's Actual Total Time."""
    root = _root(plan) or {}
    for value in (plan.get("Execution Time"), root.get("Actual Total Time")):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
