"""The committed sample data loads into exactly what the demo counted (sample_data/truth.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import latkit
from latkit.fingerprint import fingerprint

SAMPLE = Path(__file__).parents[1] / "sample_data"
TRUTH = json.loads((SAMPLE / "truth.json").read_text())


@pytest.fixture(scope="module")
def wb() -> latkit.Workbook:
    wb = latkit.open()
    wb.load(SAMPLE / "traces")
    return wb


def test_span_and_trace_counts_match_the_exporters(wb: latkit.Workbook) -> None:
    truth = TRUTH["spans"]
    row = wb.sql("select count(*) as spans, count(distinct trace_id) as traces from spans")
    assert row["spans"][0] == truth["total_spans"]
    assert row["traces"][0] == truth["traces"]
    per_service = dict(wb.sql("select service, count(*) from spans group by all").rows())
    assert per_service == truth["spans_per_service"]


def test_protobuf_and_json_exports_hold_the_same_spans(wb: latkit.Workbook) -> None:
    loads = wb.sql("select format, rows['spans'] as spans, duplicates from loads order by path")
    by_format: dict[str, int] = {}
    for fmt, spans, duplicates in loads.rows():
        by_format[fmt] = by_format.get(fmt, 0) + spans + duplicates
    assert by_format["otlp_json"] == by_format["otlp_proto"] == TRUTH["spans"]["total_spans"]


def test_requests_per_route_match_the_services(wb: latkit.Workbook) -> None:
    seen = {
        (service, route): n
        for service, route, n in wb.sql(
            "select service, route, count(*) from spans where kind = 'server' group by all"
        ).rows()
    }
    expected = {(r["service"], r["route"]): r["requests"] for r in TRUTH["server_requests"]}
    assert seen == expected


def test_status_codes_per_route_match_the_load_generator(wb: latkit.Workbook) -> None:
    for route, info in TRUTH["routes"].items():
        codes = dict(
            wb.sql(
                "select http_status_code::varchar, count(*) from spans "
                "where kind = 'server' and service = $service and route = $route group by all",
                {"service": info["service"], "route": route},
            ).rows()
        )
        assert codes == info["status"], route


@pytest.mark.parametrize("log", ["postgresql.log.gz", "postgresql.csv.gz", "postgresql.json.gz"])
def test_statements_per_template_match_the_services_counts(log: str) -> None:
    wb = latkit.open()
    wb.load(SAMPLE / "postgres" / log)
    seen = dict(wb.sql("select fingerprint, count(*) from queries group by all").rows())
    expected = {fingerprint(s["pg_template"]): s["count"] for s in TRUTH["statements"]}
    assert {fp: seen.get(fp) for fp in expected} == expected
    # The code's %s form and the server's $1 form are the same template.
    assert {fingerprint(s["template"]) for s in TRUTH["statements"]} == set(expected)
