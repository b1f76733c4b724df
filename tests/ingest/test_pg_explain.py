"""EXPLAIN (FORMAT JSON) files and auto_explain plans, made by tests/fixtures/make_pg_plans.py.

The workload is fixed there: ``orders`` has 200,000 rows with ``customer_id = id % 1000``,
so ``customer_id = 42`` matches 200 rows and a sequential scan removes 199,800.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import latkit
from latkit.ingest import LoadError, Source, pg_explain

PLANS = Path(__file__).parent.parent / "fixtures" / "pgplans"
MATCHING = 200  # orders with customer_id = 42
REMOVED = 200_000 - MATCHING


def load(*names: str) -> latkit.Workbook:
    wb = latkit.open()
    wb.load(*(PLANS / n for n in names))
    return wb


def test_seq_scan_node_has_relation_filter_and_rows_removed() -> None:
    wb = load("seqscan_filter.json")
    node = wb.sql("select * from plan_nodes").row(0, named=True)
    assert node["node_type"] == "Seq Scan"
    assert node["relation"] == "orders"
    assert node["alias"] == "orders"
    assert node["filter"] == "(customer_id = 42)"
    assert node["rows_removed_by_filter"] == REMOVED
    assert node["actual_rows"] == MATCHING
    assert node["actual_loops"] == 1
    assert (node["node_id"], node["parent_node_id"], node["depth"]) == (0, None, 0)


def test_plan_row_carries_execution_time_and_the_plan_json() -> None:
    raw = json.loads((PLANS / "seqscan_filter.json").read_text())[0]
    wb = load("seqscan_filter.json")
    plan = wb.sql("select statement, duration_ms, plan::varchar as plan from plans").row(
        0, named=True
    )
    assert plan["statement"] is None  # psql's EXPLAIN output does not repeat the query
    assert plan["duration_ms"] == raw["Execution Time"]
    assert json.loads(plan["plan"]) == raw
    loads = wb.sql("select format, read, rejected from loads").row(0)
    assert loads == ("pg_explain", 1, 0)  # one plan read; its node is derived from it


def test_index_scan_names_the_index_created_by_the_workload() -> None:
    wb = load("indexscan.json")
    node = wb.sql("select * from plan_nodes").row(0, named=True)
    assert node["node_type"] == "Index Scan"
    assert node["index_name"] == "orders_customer_id_idx"
    assert node["index_cond"] == "(customer_id = 42)"
    assert node["filter"] is None and node["rows_removed_by_filter"] is None
    assert node["actual_rows"] == MATCHING


def test_join_plan_is_flattened_in_pre_order_with_initplan_and_subplan() -> None:
    raw = json.loads((PLANS / "join_subplan.json").read_text())[0]["Plan"]
    wb = load("join_subplan.json")
    nodes = wb.sql("select * from plan_nodes order by node_id")
    assert nodes.height == (PLANS / "join_subplan.json").read_text().count('"Node Type"')
    assert nodes["node_id"].to_list() == list(range(nodes.height))
    # The root's children, in the order EXPLAIN lists them (InitPlan, the join, SubPlan).
    children = nodes.filter(nodes["parent_node_id"] == 0)
    assert children["node_type"].to_list() == [c["Node Type"] for c in raw["Plans"]]
    assert set(children["depth"]) == {1}
    assert [c["Parent Relationship"] for c in raw["Plans"]] == ["InitPlan", "Outer", "SubPlan"]
    # Every node sits one level below its parent, and after it in pre-order.
    bad = wb.sql(
        """
        select c.node_id
        from plan_nodes c join plan_nodes p
          on p.plan_id = c.plan_id and p.node_id = c.parent_node_id
        where c.depth <> p.depth + 1 or c.node_id <= p.node_id
        """
    )
    assert bad.height == 0
    assert nodes["depth"].max() == 3
    join = nodes.filter(nodes["node_type"] == "Nested Loop").row(0, named=True)
    assert join["actual_rows"] == raw["Plans"][1]["Actual Rows"]
    assert join["actual_total_ms"] == raw["Plans"][1]["Actual Total Time"]  # per loop
    assert join["actual_loops"] == 1


def test_explain_without_analyze_gives_null_actuals() -> None:
    wb = load("explain_only.json")
    node = wb.sql("select * from plan_nodes").row(0, named=True)
    assert node["node_type"] == "Seq Scan" and node["filter"] == "(customer_id = 42)"
    assert node["actual_rows"] is None
    assert node["actual_loops"] is None
    assert node["actual_total_ms"] is None
    assert node["plan_rows"] > 0 and node["total_cost"] > 0
    assert wb.sql("select duration_ms from plans")["duration_ms"][0] is None


def test_auto_explain_plan_keeps_its_query_text_and_fingerprint() -> None:
    raw = json.loads((PLANS / "auto_explain.json").read_text())
    wb = load("auto_explain.json")
    plan = wb.sql("select statement, fingerprint, duration_ms from plans").row(0, named=True)
    assert plan["statement"] == "SELECT id, amount FROM orders WHERE customer_id = 42;"
    assert plan["fingerprint"] is not None
    assert plan["duration_ms"] == raw["Plan"]["Actual Total Time"]
    relations = wb.sql("select relation from plan_nodes where relation is not null")
    assert relations["relation"].to_list() == ["orders"]


@pytest.mark.parametrize(
    ("name", "plans"),
    [("several.json", 3), ("array_of_two.json", 2), ("bare_object.json", 1)],
)
def test_every_plan_of_a_file_is_read(name: str, plans: int) -> None:
    wb = load(name)
    per_plan = wb.sql(
        "select plan_id, count(*) as n from plan_nodes group by plan_id order by plan_id"
    )
    assert per_plan["plan_id"].to_list() == list(range(plans))
    assert per_plan["n"].sum() == (PLANS / name).read_text().count('"Node Type"')


def test_psql_aligned_table_reads_like_the_plain_json() -> None:
    aligned = load("psql_aligned.txt").sql("select node_type, depth from plan_nodes")
    plain = load("join_subplan.json").sql("select node_type, depth from plan_nodes")
    assert aligned.height == plain.height == 11
    assert aligned["depth"].to_list() == plain["depth"].to_list()


def test_plan_ids_stay_unique_across_files() -> None:
    wb = load("several.json", "seqscan_filter.json")
    ids = wb.sql("select plan_id from plans order by plan_id")["plan_id"].to_list()
    assert ids == [0, 1, 2, 3]
    orphans = wb.sql("select count(*) as n from plan_nodes anti join plans using (plan_id)")
    assert orphans["n"][0] == 0


def test_truncated_explain_file_is_a_load_error_naming_the_file() -> None:
    with pytest.raises(LoadError, match=r"truncated\.json.*truncated\?"):
        latkit.open().load(PLANS / "truncated.json")


def test_a_non_plan_element_is_rejected_and_the_rest_loaded(tmp_path: Path) -> None:
    plans = json.loads((PLANS / "array_of_two.json").read_text())
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([plans[0], {"Plan": "not a node"}, plans[1]]))
    wb = latkit.open()
    report = wb.load(path)
    assert report.rows["plans"] == 2
    assert report.rejected == 1
    assert wb.sql("select position from rejects")["position"][0] == "line 1, element 1"


def test_flatten_returns_plan_nodes_rows_for_the_log_readers() -> None:
    plan = json.loads((PLANS / "auto_explain.json").read_text())
    table = pg_explain.flatten([41, 42], [plan, plan["Plan"]])
    assert table.schema == pg_explain.PLAN_NODES_STAGING
    assert table.column("plan_id").to_pylist() == [41, 41, 42, 42]
    assert table.column("parent_node_id").to_pylist() == [None, 0, None, 0]
    assert table.column("index_name").to_pylist()[1] == "orders_customer_id_idx"


def test_sniff_tells_explain_from_otlp_json_and_postgres_jsonlog() -> None:
    assert pg_explain.sniff(Source.of(PLANS / "seqscan_filter.json").head())
    assert pg_explain.sniff(Source.of(PLANS / "psql_aligned.txt").head())
    assert not pg_explain.sniff(b'{"resourceSpans": [{"resource": {}}]}')
    message = json.dumps({"message": "duration: 1.0 ms  plan:\n" + json.dumps(
        json.loads((PLANS / "auto_explain.json").read_text()))})
    assert not pg_explain.sniff(message.encode())
