"""The Jaeger JSON reader, on Jaeger JSON translated from the OpenTelemetry SDK's spans by the
documented OTLP -> Jaeger rules (tests/fixtures/make_zipkin_jaeger.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import latkit
from latkit.ingest import Reject, Rows, Source, detect, jaeger

FIXTURES = Path(__file__).parents[1] / "fixtures" / "zipkin_jaeger"
EXPECTED = json.loads((Path(__file__).parents[1] / "fixtures/otlp/expected.json").read_text())

ROWS = """
    SELECT trace_id, span_id, parent_span_id, name, kind, service, start_ns, end_ns, status
    FROM spans ORDER BY ALL
"""


def _load(*paths: Path) -> latkit.Workbook:
    wb = latkit.open()
    wb.load(*paths)
    return wb


def _truth_rows(trace: str | None = None) -> list[tuple[object, ...]]:
    keys = ("trace_id", "span_id", "parent_span_id", "name", "kind", "service", "start_ns",
            "end_ns", "status")
    spans = [s for s in EXPECTED["spans"] if trace is None or s["trace_id"] == trace]
    return sorted(tuple(s[k] for k in keys) for s in spans)


@pytest.mark.parametrize(
    "name",
    [
        "jaeger_api_traces.json",  # /api/traces envelope
        "jaeger_spans.json",  # a bare array of spans, each with its process
        "jaeger_traces.jsonl",  # JSON lines of trace objects
        "jaeger_old_ids.json",  # hex ids without leading zeros
        "jaeger_v3.json",  # API v3: {"result": OTLP/JSON}
    ],
)
def test_every_shape_reads_into_the_same_spans(name: str) -> None:
    assert _load(FIXTURES / name).sql(ROWS).rows() == _truth_rows()


def test_a_single_trace_object_as_the_ui_downloads_it() -> None:
    trace_a = EXPECTED["traces"]["A"]
    assert _load(FIXTURES / "jaeger_ui_trace.json").sql(ROWS).rows() == _truth_rows(trace_a)


def test_old_ids_are_left_padded() -> None:
    doc = json.loads((FIXTURES / "jaeger_old_ids.json").read_text())
    short = [s["spanID"] for t in doc["data"] for s in t["spans"] if len(s["spanID"]) < 16]
    assert short  # the fixture does have ids that lost their leading zeros
    wb = _load(FIXTURES / "jaeger_old_ids.json")
    ids = set(wb.sql("select span_id from spans")["span_id"])
    assert {s.rjust(16, "0") for s in short} <= ids


def test_tags_of_every_type_read_as_the_otlp_reader_renders_them() -> None:
    wb = _load(FIXTURES / "jaeger_api_traces.json")
    attrs = wb.sql("select attributes from spans where name = 'render'")["attributes"][0]
    values = {kv["key"]: kv["value"] for kv in attrs}
    assert values["render.template"] == "order.html"  # string
    assert values["render.cached"] == "false"  # bool
    assert values["render.items"] == "3"  # int64
    assert values["render.ratio"] == "0.375"  # float64
    assert values["render.digest"] == "deadbeef0042"  # binary (base64 in the JSON)
    assert values["render.sizes"] == "[512,2048,128]"  # an array: a string of JSON
    otlp = latkit.open()
    otlp.load(Path(__file__).parents[1] / "fixtures/otlp/single.pb")
    otlp_attrs = otlp.sql("select attributes from spans where name = 'render'")["attributes"][0]
    scalar = ("render.template", "render.cached", "render.items", "render.ratio", "render.digest")
    assert {kv["key"]: kv["value"] for kv in otlp_attrs if kv["key"] in scalar} == {
        k: values[k] for k in scalar
    }


def test_processes_give_the_service_and_the_resource() -> None:
    wb = _load(FIXTURES / "jaeger_api_traces.json")
    row = wb.sql("select service, resource_attributes from spans where name = 'render'").row(0)
    resource = {kv["key"]: kv["value"] for kv in row[1]}
    assert row[0] == "shop"
    assert resource == {k: str(v) for k, v in EXPECTED["resources"]["shop"].items()}


def test_logs_are_events_and_follows_from_is_a_link() -> None:
    wb = _load(FIXTURES / "jaeger_api_traces.json")
    error = wb.sql("select * from spans where status = 'error'").row(0, named=True)
    (event,) = error["events"]
    assert event["name"] == "exception"
    assert {kv["key"] for kv in event["attributes"]} >= {"exception.type", "exception.message"}
    consumer = wb.sql("select links from spans where kind = 'consumer'")["links"][0].to_list()
    producer = [s for s in EXPECTED["spans"] if s["kind"] == "producer"][0]
    assert consumer == [
        {
            "trace_id": producer["trace_id"],
            "span_id": producer["span_id"],
            "trace_state": None,
            "attributes": [{"key": "opentracing.ref_type", "value": "follows_from"}],
        }
    ]


def test_bad_lines_are_rejected_by_line_and_the_report_adds_up(tmp_path: Path) -> None:
    lines = (FIXTURES / "jaeger_traces.jsonl").read_text().splitlines()
    broken = lines[:1] + ['{"traceID": "ab", "spans": [', '{"nothing": "here"}'] + lines[1:2]
    broken.append(lines[0])  # the same trace again: its spans are duplicates
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(broken) + "\n")
    wb = latkit.open()
    report = wb.load(path)
    first_two = len(json.loads(lines[0])["spans"]) + len(json.loads(lines[1])["spans"])
    assert report.rows == {"spans": first_two}
    assert report.duplicates == len(json.loads(lines[0])["spans"])
    assert report.rejected == 2
    assert report.loaded + report.duplicates + report.rejected == report.read
    rejects = wb.sql("select position, reason from rejects order by position").rows()
    assert [p for p, _ in rejects] == ["line 2", "line 3"]
    assert rejects[0][1].startswith("not JSON") and rejects[1][1].startswith("not a Jaeger")


def test_a_v3_stream_keeps_its_line_numbers(tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "jaeger_v3.json").read_text())
    line = json.dumps(doc)
    path = tmp_path / "v3.jsonl"
    path.write_text(line + "\n" + '{"result": {"resourceSpans": [\n' + line + "\n")
    items = list(jaeger.read(Source.of(path)))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [r.position for r in rejects] == ["line 2"]
    assert sum(i.batch.num_rows for i in items if isinstance(i, Rows)) == 48


def test_the_result_key_is_renamed_even_across_blocks() -> None:
    data = b'{"result":{"a":1}}\n{ \n "result" : {"b":2}}\n'
    for size in (1, 3, 7, 64):
        stream = io.BufferedReader(jaeger._ResultAsTrace(io.BytesIO(data)), buffer_size=size)
        out = b"".join(iter(lambda: stream.read(size), b""))  # noqa: B023
        assert out == data.replace(b'"result"', b' "trace"'), size


def test_jaeger_files_are_detected_by_content() -> None:
    for name in ("jaeger_api_traces.json", "jaeger_ui_trace.json", "jaeger_spans.json",
                 "jaeger_traces.jsonl", "jaeger_v3.json"):
        assert detect(Source.of(FIXTURES / name)) is jaeger, name
    assert detect(Source.of(FIXTURES / "jaeger_services.json")) is None
    assert not jaeger.sniff(b'{"resourceSpans": [{"resource": {}}]}')
    assert not jaeger.sniff(b'[{"traceId": "a", "id": "b"}]')
