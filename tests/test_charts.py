"""Chart builders, tested on their Vega-Lite spec (no pixels)."""

from __future__ import annotations

import polars as pl

from latkit import charts
from latkit.analysis import budget
from tests.spantree import cache, callee, client, db, server, workbook


def _wb():  # type: ignore[no-untyped-def]
    root = server("1", "/checkout", 0, 100)
    call = client(root, 20, 80)
    stock = callee(call, "/stock/{sku}", 25, 75)
    return workbook(root, call, stock, db(stock, 30, 50), cache(root, 82, 90))


def test_budget_bars_stack_categories_against_the_target() -> None:
    spec = charts.budget_bars(budget.breakdown(_wb()), target_ms=80).to_dict()
    bars, rule = spec["layer"]
    assert bars["mark"]["type"] == "bar"
    assert bars["encoding"]["color"]["field"] == "category"
    assert bars["encoding"]["x"]["aggregate"] == "sum"
    assert rule["mark"]["type"] == "rule"
    assert spec["datasets"][rule["data"]["name"]] == [{"target_ms": 80}]


def test_latency_distribution_marks_percentiles_and_target() -> None:
    frame = pl.DataFrame({"duration_ms": [float(i) for i in range(1, 101)]})
    spec = charts.latency_distribution(frame, target_ms=90).to_dict()
    hist, rules = spec["layer"]
    assert hist["encoding"]["x"]["bin"]
    marks = {r["mark"]: r["ms"] for r in spec["datasets"][rules["data"]["name"]]}
    assert marks["p50"] == 50.5 and marks["target"] == 90
    assert abs(marks["p99"] - 99.01) < 1e-9


def test_waterfall_draws_every_span_and_the_critical_path() -> None:
    wb = _wb()
    trace = "1".rjust(32, "0")
    spans = budget.trace_spans(wb, trace)
    spec = charts.waterfall(spans, budget.critical_path(wb, trace)).to_dict()
    gantt, path = spec["layer"]
    assert gantt["encoding"]["x2"]["field"] == "end_ms"
    assert len(spec["datasets"][gantt["data"]["name"]]) == 5
    assert path["encoding"]["color"]["field"] == "category"
    assert spec["layer"][0]["encoding"]["y"]["sort"] == spans["label"].to_list()


def test_setup_renders_a_spec_with_an_svg_beside_it() -> None:
    charts.setup()
    bundle, _ = charts._render(charts.budget_bars(budget.breakdown(_wb())).to_dict())
    assert bundle["image/svg+xml"].lstrip().startswith("<svg")
    assert "application/vnd.vegalite.v5+json" in bundle


def test_query_profile_ranks_queries_by_share() -> None:
    top = pl.DataFrame(
        {
            "rank": [1, 2],
            "query_template": ["SELECT * FROM customers WHERE email = ?", "SELECT 1"],
            "share": [0.9, 0.1],
            "calls": [10, 100],
            "total_ms": [900.0, 100.0],
            "mean_ms": [90.0, 1.0],
        }
    )
    spec = charts.query_profile(top, width=8).to_dict()
    assert spec["encoding"]["x"]["field"] == "share"
    labels = [row["label"] for row in spec["datasets"][spec["data"]["name"]]]
    assert labels == ["1. SELECT *", "2. SELECT 1"]


def test_plan_comparison_shows_each_measure_on_a_log_scale() -> None:
    costs = pl.DataFrame(
        {
            "plan_id": [0, 1],
            "scans": ["Seq Scan", "Index Scan"],
            "execution_ms": [60.0, 0.03],
            "blocks": [5000, 4],
            "rows_read": [300000, 1],
        }
    )
    spec = charts.plan_comparison(costs, {0: "without index", 1: "with index"}).to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["encoding"]["row"]["field"] == "measure"
    rows = spec["datasets"][spec["data"]["name"]]
    assert {r["label"] for r in rows} == {"without index", "with index"}
    assert len(rows) == 6  # two plans, three measures
