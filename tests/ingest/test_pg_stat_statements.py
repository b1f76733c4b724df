"""pg_stat_statements CSV exports, made by tests/fixtures/make_pg_plans.py.

The workload there ran the orders lookup 40 times, the count by customer 12 times and the
UPDATE 5 times, each with different constants (one pg_stat_statements entry each). The PG
12/13/14/16/17 files are the PG 15 export with each version's columns (see the script).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import latkit
from latkit.ingest import Source, pg_stat_statements

PLANS = Path(__file__).parent.parent / "fixtures" / "pgplans"
LOOKUP = "SELECT id, status, amount FROM orders WHERE id = $1"
COUNT = "SELECT count(*) FROM orders WHERE customer_id = $1"
UPDATE = "UPDATE orders SET status = $1 WHERE id = $2"
CALLS = {LOOKUP: 40, COUNT: 12, UPDATE: 5}


def exported(name: str) -> dict[str, dict[str, str]]:
    """The export's rows by query text, as the csv module reads them."""
    with (PLANS / name).open(newline="") as f:
        return {row["query"]: row for row in csv.DictReader(f)}


def test_joined_export_gives_calls_totals_database_and_user() -> None:
    raw = exported("statements_joined.csv")
    wb = latkit.open()
    report = wb.load(PLANS / "statements_joined.csv")
    assert report.rows == {"statements": len(raw)}
    for query, calls in CALLS.items():
        row = wb.sql("select * from statements where query = ?", [query]).row(0, named=True)
        assert row["calls"] == calls
        assert row["rows"] == calls  # each run touched one row
        assert (row["database"], row["user_name"]) == ("latkit", "postgres")
        plan_and_exec = float(raw[query]["total_exec_time"]) + float(raw[query]["total_plan_time"])
        assert row["total_ms"] == pytest.approx(plan_and_exec)
        assert row["mean_ms"] == pytest.approx(plan_and_exec / calls)
        assert row["query_id"] == int(raw[query]["queryid"])
        assert row["shared_blks_hit"] == int(raw[query]["shared_blks_hit"])
        assert row["fingerprint"] is not None


def test_every_other_column_is_kept_in_extra() -> None:
    raw = exported("statements_joined.csv")[COUNT]
    wb = latkit.open()
    wb.load(PLANS / "statements_joined.csv")
    extra = json.loads(
        wb.sql("select extra::varchar as e from statements where query = ?", [COUNT])["e"][0]
    )
    assert extra["mean_exec_time"] == pytest.approx(float(raw["mean_exec_time"]))
    assert extra["total_plan_time"] == pytest.approx(float(raw["total_plan_time"]))
    assert extra["dbid"] == int(raw["dbid"]) and extra["toplevel"] is True
    assert "query" not in extra and "calls" not in extra and "datname" not in extra


@pytest.mark.parametrize("version", ["pg12", "pg13", "pg14", "pg15", "pg16", "pg17"])
def test_each_postgres_versions_columns_are_read(version: str) -> None:
    raw = exported(f"statements_{version}.csv")
    wb = latkit.open()
    report = wb.load(PLANS / f"statements_{version}.csv")
    assert report.files[0].format == "pg_stat_statements"
    for query, calls in CALLS.items():
        row = wb.sql("select * from statements where query = ?", [query]).row(0, named=True)
        assert row["calls"] == calls
        if version == "pg12":  # before 13: one total, no planning time
            total = float(raw[query]["total_time"])
        else:
            total = float(raw[query]["total_exec_time"]) + float(raw[query]["total_plan_time"])
        assert row["total_ms"] == pytest.approx(total)
        # The bare view has oids, not names: they stay in extra.
        assert row["database"] is None and row["user_name"] is None
        assert json.loads(row["extra"])["dbid"] == int(raw[query]["dbid"])
    if version == "pg17":
        extra = json.loads(wb.sql("select extra::varchar as e from statements")["e"][0])
        assert "shared_blk_read_time" in extra and "stats_since" in extra


def test_two_query_ids_of_one_statement_are_both_kept() -> None:
    wb = latkit.open()
    wb.load(PLANS / "statements_joined.csv")
    rows = wb.sql(
        "select query_id, calls from statements where query like 'PREPARE by_id%' order by calls"
    )
    assert rows["calls"].to_list() == [1, 2]
    assert rows["query_id"].n_unique() == 2


def test_a_bad_row_is_rejected_with_its_line_and_the_rest_loaded() -> None:
    good = exported("statements_joined.csv")
    wb = latkit.open()
    report = wb.load(PLANS / "statements_bad_row.csv")
    assert report.rejected == 1
    assert report.rows == {"statements": len(good) - 1}
    assert report.read == len(good)
    reject = wb.sql("select position, reason, excerpt from rejects").row(0, named=True)
    assert reject["position"] == "line 3"
    assert "calls" in reject["reason"] and "many" in reject["reason"]
    assert wb.sql("select count(*) as n from statements where query = ?", [COUNT])["n"][0] == 0


def test_a_rejects_line_counts_the_lines_of_multi_line_queries(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "query,calls,total_exec_time,total_plan_time\n"
        '"SELECT 1\nFROM t\nWHERE ""x"" = $1",3,1.5,0.5\n'
        '"SELECT 2",lots,1.0,0.0\n'
        '"SELECT 3",2,1.0,\n'
    )
    wb = latkit.open()
    report = wb.load(path)
    assert (report.rows, report.rejected) == ({"statements": 2}, 1)
    assert wb.sql("select position from rejects")["position"][0] == "line 5"
    totals = wb.sql("select query, total_ms, mean_ms from statements order by query").rows()
    assert totals == [('SELECT 1\nFROM t\nWHERE "x" = $1', 2.0, 2.0 / 3), ("SELECT 3", 1.0, 0.5)]


def test_sniff_needs_query_calls_and_a_total_time_column() -> None:
    assert pg_stat_statements.sniff(Source.of(PLANS / "statements_pg12.csv").head())
    assert pg_stat_statements.sniff(b"query,calls,total_exec_time\n")
    assert not pg_stat_statements.sniff(b"query,calls,rows\n")
    assert not pg_stat_statements.sniff(b'{"resourceSpans": []}')
    csvlog = b'2026-01-01 00:00:00.000 UTC,"postgres","latkit",7,"[local]",1,1,"SELECT",,,,\n'
    assert not pg_stat_statements.sniff(csvlog)
