"""pg_jsonlog on jsonlogs written by a real PostgreSQL 15 (tests/fixtures/make_pglogs.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import latkit
from latkit.ingest import pg_jsonlog

PGLOGS = Path(__file__).resolve().parents[1] / "fixtures" / "pglogs"
EXPECTED = json.loads((PGLOGS / "expected.json").read_text())

SUMMARY = """
    select count(*), round(sum(duration_ms), 6), count(phase_ms), count(parameters),
           count(distinct session_id), count(distinct fingerprint)
    from queries
"""


def load(path: Path | str, **options: object) -> latkit.Workbook:
    wb = latkit.open()
    wb.load(path, **options)
    return wb


@pytest.fixture(scope="module")
def main() -> latkit.Workbook:
    return load(PGLOGS / "main.json.gz")


def test_sniff() -> None:
    assert pg_jsonlog.sniff(gzip.decompress((PGLOGS / "main.json.gz").read_bytes())[:65536])
    assert not pg_jsonlog.sniff(b'{"resourceSpans": []}')
    assert not pg_jsonlog.sniff((PGLOGS / "main.log").read_bytes()[:65536])


def test_the_workload_is_read(main: latkit.Workbook) -> None:
    n = main.sql("select count(*) from queries "
                 "where statement like 'SELECT * FROM orders WHERE id = %'").item()
    assert n == EXPECTED["orders_by_id"]
    assert main.sql("select statement from queries where statement like '%customer_id,%'"
                    ).item() == EXPECTED["multiline"]
    # one JSON object per line: the line is the record's number
    assert main.sql("select count(*) from queries where line < 1").item() == 0
    plans = main.sql("select count(*) from plans where statement like 'SELECT id, pg_sleep%'")
    assert plans.item() == EXPECTED["sleeps"]


def test_jsonlog_csvlog_and_stderr_of_one_run_agree(main: latkit.Workbook) -> None:
    for other in ("main.csv.gz", "main.log"):
        assert load(PGLOGS / other).sql(SUMMARY).row(0) == main.sql(SUMMARY).row(0)


def test_text_plans_and_statement_logging() -> None:
    prefixed = load(PGLOGS / "prefixed.json.gz")
    assert prefixed.counts()["plans"] >= EXPECTED["sleeps"]
    # auto_explain wrote text plans here; they are read into the nodes the JSON ones give.
    nodes = "select node_type, relation, index_name from plan_nodes order by plan_id, node_id"
    assert prefixed.sql(nodes).rows() == load(PGLOGS / "main.json.gz").sql(nodes).rows()
    assert prefixed.counts()["plan_nodes"] > 0
    statements = load(PGLOGS / "statements.json.gz")
    assert statements.sql("select count(*) - count(duration_ms) from queries").item() == 47


def test_a_broken_line_goes_to_rejects_with_its_number(tmp_path: Path) -> None:
    lines = gzip.decompress((PGLOGS / "main.json.gz").read_bytes()).decode().splitlines(True)
    bad = tmp_path / "bad.json"
    bad.write_text("".join(lines[:9]) + '{"timestamp": "2026-11-28 00:29:1\n'
                   + "".join(lines[9:]))
    wb = latkit.open()
    report = wb.load(bad)
    assert report.rejected == 1
    assert wb.sql("select position from rejects").item() == "line 10"
    assert report.rows["queries"] == 104
    assert report.loaded + report.duplicates + report.rejected == report.read
