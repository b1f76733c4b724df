"""The same spans exported as OTLP, Zipkin and Jaeger load into the same canonical rows, and
every analysis gives the same answer on each.

The three files hold the 24 spans of tests/fixtures/make_otlp.py: OTLP protobuf from the SDK's
encoder, Zipkin v2 JSON from the SDK's Zipkin exporter, Jaeger JSON from the documented
OpenTelemetry -> Jaeger translation (tests/fixtures/make_zipkin_jaeger.py). The fixture times
are whole milliseconds, so microsecond formats lose nothing here.

What a format cannot carry is compared only where it can:
- Zipkin has no links, no resource (the SDK's exporter flattens resource attributes into
  every span's tags; the resource is only ``service.name``), and no trace state.
- Jaeger carries links as references without their attributes (``opentracing.ref_type`` only).
- Both render an attribute of a non-primitive type as a string (Zipkin's exporter even turns
  bytes into a list of integers and drops a map), so attribute values are compared only for
  the keys the analyses read (they are the promoted columns below).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import latkit
from latkit.analysis import budget

FIXTURES = Path(__file__).parent / "fixtures"
FILES = {
    "otlp": FIXTURES / "otlp" / "single.pb",
    "zipkin": FIXTURES / "zipkin_jaeger" / "zipkin.json",
    "jaeger": FIXTURES / "zipkin_jaeger" / "jaeger_api_traces.json",
}

#: The canonical columns every format carries.
CANONICAL = """
    SELECT trace_id, span_id, parent_span_id, name, kind, service,
           start_ns // 1000 AS start_us, end_ns // 1000 AS end_us, duration_ms,
           status, category, route, http_method, http_status_code, db_system, db_statement,
           fingerprint, query_template, peer, cache_hit, scope,
           len(events) AS events
    FROM spans
    ORDER BY trace_id, span_id
"""


@pytest.fixture(scope="module")
def workbooks() -> dict[str, latkit.Workbook]:
    out = {}
    for name, path in FILES.items():
        wb = latkit.open()
        report = wb.load(path)
        assert report.rows == {"spans": 24} and report.rejected == 0, (name, report)
        out[name] = wb
    return out


@pytest.mark.parametrize("fmt", ["zipkin", "jaeger"])
def test_the_same_spans_give_the_same_canonical_rows(
    workbooks: dict[str, latkit.Workbook], fmt: str
) -> None:
    expected = workbooks["otlp"].sql(CANONICAL)
    assert expected["status"].to_list().count("error") == 1  # the check below means something
    assert_frame_equal(workbooks[fmt].sql(CANONICAL), expected)


def test_jaeger_keeps_the_resource_and_the_links(workbooks: dict[str, latkit.Workbook]) -> None:
    query = """
        SELECT span_id, resource_attributes,
               list_transform(links, lambda l: [l.trace_id, l.span_id]) AS links
        FROM spans ORDER BY span_id
    """
    assert_frame_equal(workbooks["jaeger"].sql(query), workbooks["otlp"].sql(query))


def test_zipkin_keeps_the_attributes_that_are_text_or_numbers(
    workbooks: dict[str, latkit.Workbook],
) -> None:
    query = """
        SELECT span_id, a.key, a.value
        FROM (SELECT span_id, unnest(attributes) AS a FROM spans)
        WHERE a.key IN ('http.route', 'db.statement', 'db.query.text', 'cache.hit',
                        'http.status_code', 'messaging.kafka.offset', 'render.ratio')
        ORDER BY ALL
    """
    assert_frame_equal(workbooks["zipkin"].sql(query), workbooks["otlp"].sql(query))


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns[:3])


@pytest.mark.parametrize("fmt", ["zipkin", "jaeger"])
def test_the_latency_budget_is_the_same_whatever_the_format(
    workbooks: dict[str, latkit.Workbook], fmt: str
) -> None:
    for analysis in (budget.by_route, budget.breakdown):
        expected = _sorted(analysis(workbooks["otlp"]))
        assert expected.height > 0
        assert_frame_equal(_sorted(analysis(workbooks[fmt])), expected, abs_tol=1e-3)


@pytest.mark.parametrize("fmt", ["zipkin", "jaeger"])
def test_loading_a_second_format_adds_no_span_twice(fmt: str) -> None:
    wb = latkit.open()
    wb.load(FILES["otlp"])
    report = wb.load(FILES[fmt])
    assert report.rows == {"spans": 0}
    assert report.duplicates == 24
    assert report.loaded + report.duplicates + report.rejected == report.read
