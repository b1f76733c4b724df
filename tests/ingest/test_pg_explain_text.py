"""Text plans read as PostgreSQL's own JSON plans say, on plans a real PostgreSQL 15 made.

tests/fixtures/pgplans/text_plans.json holds, for each query, ``EXPLAIN (ANALYZE, FORMAT
JSON)`` and ``EXPLAIN (ANALYZE)`` run one after the other (tests/fixtures/make_pg_plans.py
``--only text_plans``): the same plan, so every node column but the timings must agree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import latkit
from latkit.ingest import pg_explain_text
from latkit.ingest.pg_explain import flatten

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PLANS = json.loads((FIXTURES / "pgplans" / "text_plans.json").read_text())
#: Every plan_nodes column except the measured times, which differ between the two runs.
SAME = [
    "plan_id", "node_id", "parent_node_id", "depth", "node_type", "relation", "schema_name",
    "alias", "index_name", "index_cond", "filter", "rows_removed_by_filter", "actual_rows",
    "actual_loops", "plan_rows", "total_cost",
]  # fmt: skip


@pytest.mark.parametrize("case", PLANS, ids=[p["query"][:40] for p in PLANS])
def test_a_text_plan_gives_the_nodes_of_its_json_twin(case: dict) -> None:  # type: ignore[type-arg]
    from_text = flatten([0], [pg_explain_text.parse(case["text"])]).select(SAME)
    from_json = flatten([0], case["json"]).select(SAME)
    assert from_text.num_rows == from_json.num_rows > 0
    assert from_text.to_pylist() == from_json.to_pylist()


def test_the_fixture_covers_every_kind_of_node_line() -> None:
    types = {
        row["node_type"]
        for case in PLANS
        for row in flatten([0], case["json"]).select(["node_type"]).to_pylist()
    }
    assert {
        "Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Bitmap Index Scan",
        "Hash Join", "Nested Loop", "Aggregate", "Sort", "Limit", "Hash", "Function Scan",
        "CTE Scan", "ModifyTable",
    } <= types  # fmt: skip
    texts = "\n".join(case["text"] for case in PLANS)
    for marker in ("InitPlan", "SubPlan", "CTE recent", "never executed", "Backward", '"R"'):
        assert marker in texts


def test_times_and_query_text_are_kept() -> None:
    case = PLANS[0]
    plan = pg_explain_text.parse("Query Text: SELECT 1\nFROM t\n" + case["text"])
    assert plan is not None
    assert plan["Query Text"] == "SELECT 1\nFROM t"  # a statement over two lines
    shown = dict(re.findall(r"^(Planning|Execution) Time: ([0-9.]+) ms$", case["text"], re.M))
    assert plan["Planning Time"] == float(shown["Planning"])
    assert plan["Execution Time"] == float(shown["Execution"])
    root = re.search(r"actual time=[0-9.]+\.\.([0-9.]+) ", case["text"])
    assert root is not None and plan["Plan"]["Actual Total Time"] == float(root[1])


def test_text_without_a_plan_is_none() -> None:
    assert pg_explain_text.parse("") is None
    assert pg_explain_text.parse("Query Text: SELECT 1\nnot a plan") is None


def test_auto_explain_text_plans_in_a_log_get_their_nodes() -> None:
    # The same workload logged twice by one server: auto_explain as JSON, then as text.
    as_json, as_text = latkit.open(), latkit.open()
    as_json.load(FIXTURES / "pglogs" / "main.log.gz")
    as_text.load(FIXTURES / "pglogs" / "prefixed.log.gz")
    columns = "plan_id, node_id, parent_node_id, node_type, relation, alias, index_cond, plan_rows"
    nodes = [wb.sql(f"SELECT {columns} FROM plan_nodes ORDER BY ALL") for wb in (as_json, as_text)]
    assert nodes[0].height > 0
    assert nodes[0].equals(nodes[1])
