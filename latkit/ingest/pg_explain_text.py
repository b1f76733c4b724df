"""EXPLAIN's text format, turned into the JSON format's shape so that one ``flatten`` serves both.

auto_explain writes text plans unless ``auto_explain.log_format`` says otherwise, so most
logs that carry plans carry these::

    Query Text: SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id
    Hash Join  (cost=30.50..3966.02 rows=600 width=11) (actual time=0.3..28.1 rows=600 loops=1)
      Hash Cond: (o.customer_id = c.id)
      ->  Seq Scan on orders o  (cost=0.00..3185.00 rows=200000 width=4) (actual ...)
      ->  Hash  (cost=18.00..18.00 rows=1000 width=15) (actual ...)
            ->  Index Scan using customers_pkey on customers c  (cost=...) (actual ...)
                  Index Cond: (id <= 3)

A node is a line with ``->`` (or the first line); its properties (``Filter: ...``) are the
lines indented under it, and its children the ``->`` lines indented under it; ``InitPlan``,
``SubPlan`` and ``CTE`` headings only group children, as ``Parent Relationship`` does in
JSON. The node's description is decoded into what JSON would say: ``Seq Scan on orders o``
is ``"Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o"``; ``Hash Left Join``
is a ``Hash Join`` with ``"Join Type": "Left"``; ``HashAggregate`` an ``Aggregate``;
``Insert on orders`` a ``ModifyTable``. tests/ingest/test_pg_explain_text.py checks every
plan of tests/fixtures/pgplans/text_plans.json against the JSON plan PostgreSQL gave for the
same query.

>>> plan = parse("Seq Scan on orders  (cost=0.00..3685.00 rows=200 width=10)\\n"
...              "  Filter: (customer_id = 42)")
>>> plan["Plan"]["Node Type"], plan["Plan"]["Relation Name"], plan["Plan"]["Filter"]
('Seq Scan', 'orders', '(customer_id = 42)')
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse"]

_NUMBER = r"-?\d+(?:\.\d+)?"
#: A node line: indentation, an optional arrow, the description, then the estimates and the
#: measurements, each optional (COSTS OFF, no ANALYZE, TIMING OFF).
_NODE = re.compile(
    rf"^(?P<indent> *)(?P<arrow>->  +)?(?P<desc>.+?)"
    rf"(?:  \(cost=(?P<startup>{_NUMBER})\.\.(?P<total>{_NUMBER})"
    rf" rows=(?P<rows>{_NUMBER}) width=(?P<width>\d+)\))?"
    rf"(?: ?\((?:actual (?:time=(?P<t0>{_NUMBER})\.\.(?P<t1>{_NUMBER}) )?"
    rf"rows=(?P<arows>{_NUMBER}) loops=(?P<loops>\d+)|(?P<never>never executed))\))?$"
)
_PROPERTY = re.compile(r"^(?P<indent> *)(?P<key>[A-Z][A-Za-z ]*?): (?P<value>.*)$")
_GROUP = re.compile(r"^(?P<indent> *)(?:InitPlan|SubPlan|CTE) \S")

_IDENT = r'"(?:[^"]|"")*"|[^\s"]+'
_ON = re.compile(rf"^(?P<what>.+?) on (?P<rel>{_IDENT})(?: (?P<alias>{_IDENT}))?$")
_USING = re.compile(rf"^(?P<what>.+?) using (?P<index>{_IDENT}) on (?P<rel>.+)$")
_QUALIFIED = re.compile(rf"(?P<schema>{_IDENT})\.(?P<name>{_IDENT})")
_JOIN = re.compile(
    r"^(?P<algo>Nested Loop|Hash|Merge)(?: (?P<type>Left|Right|Full|Semi|Anti|Right Semi"
    r"|Right Anti))?(?: Join)?$"
)
_AGGREGATE = re.compile(
    r"^(?:(?P<partial>Partial|Finalize) )?(?P<kind>Hash|Group|Mixed)?Aggregate$"
)
#: Scans whose ``on`` names a table (the others name a function, a CTE, a subquery ...).
_TABLE_SCANS = frozenset(
    {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan",
     "Tid Range Scan", "Sample Scan", "Foreign Scan"}
)  # fmt: skip
_MODIFY = frozenset({"Insert", "Update", "Delete", "Merge"})
#: Properties whose value is a count, as JSON gives them.
_COUNTS = frozenset(
    {"Rows Removed by Filter", "Rows Removed by Index Recheck", "Rows Removed by Join Filter",
     "Heap Fetches", "Workers Planned", "Workers Launched"}
)  # fmt: skip


def parse(text: str) -> dict[str, Any] | None:
    """A text plan as JSON's ``{"Query Text": ..., "Plan": {...}}``, or None without a node.

    ``text`` is what EXPLAIN or auto_explain printed, with or without a ``Query Text:`` line
    (whose continuation lines, for a statement over several lines, run up to the first node
    line).
    """
    lines = text.expandtabs(8).splitlines()
    out: dict[str, Any] = {}
    i = 0
    if lines and lines[0].startswith("Query Text: "):
        query = [lines[0][len("Query Text: "):]]
        i = 1
        while i < len(lines) and not _is_node(lines[i], first=True):
            query.append(lines[i])
            i += 1
        out["Query Text"] = "\n".join(query)
    # The nodes open at each column: (column of the description, node).
    open_nodes: list[tuple[int, dict[str, Any]]] = []
    for line in lines[i:]:
        if not line.strip():
            continue
        node_match = _NODE.match(line) if _is_node(line, first=not open_nodes) else None
        if node_match is not None:
            indent = len(node_match["indent"])
            column = indent + len(node_match["arrow"] or "")
            node = _node(node_match)
            while open_nodes and open_nodes[-1][0] >= indent + (1 if node_match["arrow"] else 0):
                open_nodes.pop()
            if open_nodes:
                open_nodes[-1][1].setdefault("Plans", []).append(node)
            elif "Plan" in out:
                break  # a second plan in the same text: only the first is read
            else:
                out["Plan"] = node
            open_nodes.append((column, node))
            continue
        if _GROUP.match(line) or not open_nodes:
            continue
        prop = _PROPERTY.match(line)
        if prop is not None:
            indent = len(prop["indent"])
            if indent == 0 and prop["key"] in ("Planning Time", "Execution Time"):
                out[prop["key"]] = float(prop["value"].removesuffix(" ms"))
                continue
            owners = [node for column, node in open_nodes if column < indent]
            if owners:
                owners[-1][prop["key"]] = _value(prop["key"], prop["value"])
    if "Plan" not in out:
        return None
    _zero_counts(out["Plan"])
    return out


#: Counts the text format leaves out when they are zero (explain.c: "in text mode, suppress
#: zero counts"), and the property that makes PostgreSQL report each under ANALYZE.
_ZERO_COUNTS = {
    "Rows Removed by Filter": "Filter",
    "Rows Removed by Join Filter": "Join Filter",
    "Rows Removed by Index Recheck": "Recheck Cond",
}


def _zero_counts(root: dict[str, Any]) -> None:
    """Put back the zero counts, so that a filter that removed nothing says 0, as in JSON."""
    stack = [root]
    while stack:
        node = stack.pop()
        if "Actual Loops" in node:
            for count, condition in _ZERO_COUNTS.items():
                if condition in node:
                    node.setdefault(count, 0)
        stack.extend(node.get("Plans", []))


def _is_node(line: str, first: bool) -> bool:
    """A node line: an arrow, or (the first node) a line with EXPLAIN's estimates."""
    stripped = line.lstrip()
    if stripped.startswith("->"):
        return True
    return first and ("  (cost=" in line or " (actual " in line or "(never executed)" in line)


def _node(m: re.Match[str]) -> dict[str, Any]:
    node = _describe(m["desc"].strip())
    if m["total"] is not None:
        node["Startup Cost"] = float(m["startup"])
        node["Total Cost"] = float(m["total"])
        node["Plan Rows"] = _int_or_float(m["rows"])
        node["Plan Width"] = int(m["width"])
    if m["never"]:
        node.update({"Actual Rows": 0, "Actual Loops": 0})
    elif m["loops"] is not None:
        if m["t0"] is not None:
            node["Actual Startup Time"] = float(m["t0"])
            node["Actual Total Time"] = float(m["t1"])
        node["Actual Rows"] = _int_or_float(m["arows"])
        node["Actual Loops"] = int(m["loops"])
    return node


def _describe(desc: str) -> dict[str, Any]:
    """What JSON says for a node description such as ``Index Scan using pk on orders o``."""
    parallel = desc.startswith("Parallel ")
    if parallel:
        desc = desc[len("Parallel "):]
    node: dict[str, Any] = {"Parallel Aware": parallel}
    if m := _USING.match(desc):
        what = m["what"].removesuffix(" Backward")
        if what != m["what"]:
            node["Scan Direction"] = "Backward"
        rel = _ON.match(f"x on {m['rel']}")
        node.update({"Node Type": what, "Index Name": _unquote(m["index"])})
        if rel is not None:
            node.update(_relation(rel["rel"], rel["alias"]))
        return node
    if m := _ON.match(desc):
        what = m["what"]
        if what in _MODIFY:
            node.update({"Node Type": "ModifyTable", "Operation": what})
            node.update(_relation(m["rel"], m["alias"]))
        elif what == "Bitmap Index Scan":
            node.update({"Node Type": what, "Index Name": _unquote(m["rel"])})
        elif what in _TABLE_SCANS:
            node["Node Type"] = what
            node.update(_relation(m["rel"], m["alias"]))
        else:  # Function Scan on generate_series g, CTE Scan on recent ...
            node.update({"Node Type": what, "Alias": _unquote(m["alias"] or m["rel"])})
        return node
    if m := _JOIN.match(desc):
        algo = m["algo"]
        if algo != "Hash" or m["type"] or desc.endswith(" Join"):
            node["Node Type"] = "Nested Loop" if algo == "Nested Loop" else f"{algo} Join"
            node["Join Type"] = m["type"] or "Inner"
            return node
    if m := _AGGREGATE.match(desc):
        node["Node Type"] = "Aggregate"
        node["Strategy"] = {"Hash": "Hashed", "Group": "Sorted", "Mixed": "Mixed"}.get(
            m["kind"] or "", "Plain"
        )
        if m["partial"]:
            node["Partial Mode"] = m["partial"]
        return node
    node["Node Type"] = desc
    return node


def _relation(rel: str, alias: str | None) -> dict[str, Any]:
    """``Relation Name`` (and ``Schema`` when qualified, as VERBOSE prints it) and ``Alias``
    (the table's own name when the query gave none, as in JSON)."""
    out: dict[str, Any] = {}
    if m := _QUALIFIED.fullmatch(rel):
        out["Schema"] = _unquote(m["schema"])
        rel = m["name"]
    out["Relation Name"] = _unquote(rel)
    out["Alias"] = _unquote(alias) if alias else out["Relation Name"]
    return out


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def _value(key: str, value: str) -> Any:
    if key in _COUNTS and re.fullmatch(r"\d+", value):
        return int(value)
    return value


def _int_or_float(text: str) -> int | float:
    """PostgreSQL 18 prints row counts with two decimals (``rows=1.00``); older ones whole."""
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
