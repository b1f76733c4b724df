"""The OTLP JSON reader against the fixtures the OpenTelemetry SDK wrote (tests/fixtures/otlp).

``expected.json`` was computed from the SDK's own span objects, so every assertion here
compares what the reader made of an encoded file with what the SDK recorded.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from latkit.ingest import LoadError, Reject, Rows, Source, otlp_json
from latkit.schema import SPAN_STAGING

FIXTURES = Path(__file__).parent.parent / "fixtures" / "otlp"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
SPANS = {(s["trace_id"], s["span_id"]): s for s in EXPECTED["spans"]}

JSON_FILES = [
    "spans.jsonl",
    "spans.jsonl.gz",
    "spans.jsonl.zst",
    "protojson_base64.json",
    "tempo_v1_batches.json",
    "tempo_v1_ils.json",
    "tempo_resourcespans.json",
    "tempo_v2.json",
]


def read_all(path: Path, **options: Any) -> tuple[pa.Table, list[Reject], list[Rows]]:
    """Every span of ``path`` in one table, with the rejects and the ``Rows`` items."""
    rows: list[Rows] = []
    rejects: list[Reject] = []
    for item in otlp_json.read(Source.of(path), **options):
        if isinstance(item, Rows):
            rows.append(item)
        else:
            assert isinstance(item, Reject)
            rejects.append(item)
    batches = [
        r.batch if isinstance(r.batch, pa.Table) else pa.Table.from_batches([r.batch]) for r in rows
    ]
    table = pa.concat_tables(batches) if batches else SPAN_STAGING.empty_table()
    return table, rejects, rows


def rendered(value: Any) -> str:
    """An attribute value of expected.json as the reader renders attribute values (as text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict) and set(value) == {"$base64"}:
        return base64.b64decode(value["$base64"]).hex()
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def by_id(table: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["trace_id"], r["span_id"]): r for r in table.to_pylist()}


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A span row with its lists in a stable order, to compare rows from different files."""
    return {
        **row,
        "attributes": sorted((kv["key"], kv["value"]) for kv in row["attributes"]),
        "resource_attributes": sorted(
            (kv["key"], kv["value"]) for kv in row["resource_attributes"]
        ),
    }


@pytest.fixture(scope="module")
def reference() -> dict[tuple[str, str], dict[str, Any]]:
    """The rows read from spans.jsonl, which the other shapes must reproduce exactly."""
    table, rejects, _ = read_all(FIXTURES / "spans.jsonl")
    assert rejects == []
    return {k: comparable(v) for k, v in by_id(table).items()}


# --- sniff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", JSON_FILES + ["bad_line.jsonl"])
def test_sniff_claims_every_otlp_json_shape(name: str) -> None:
    assert otlp_json.sniff(Source.of(FIXTURES / name).head())


@pytest.mark.parametrize(
    "head",
    [
        (FIXTURES / "not_otlp.txt").read_bytes(),
        (FIXTURES / "single.pb").read_bytes()[:4096],
        (FIXTURES / "expected.json").read_bytes()[:4096],
        b'{"data": [{"traceID": "ab", "spans": [], "processes": {}}]}',  # Jaeger
        b'[{"traceId": "ab", "id": "cd", "localEndpoint": {"serviceName": "x"}}]',  # Zipkin
        b"",
    ],
    ids=["text", "protobuf", "other json", "jaeger", "zipkin", "empty"],
)
def test_sniff_leaves_other_formats_alone(head: bytes) -> None:
    assert not otlp_json.sniff(head)


def test_sniff_reads_a_pretty_printed_document() -> None:
    doc = json.loads((FIXTURES / "tempo_v2.json").read_text())
    assert otlp_json.sniff(json.dumps(doc, indent=2).encode()[:200])


# --- what a span becomes --------------------------------------------------------------------


def test_batches_have_exactly_the_staging_schema() -> None:
    _, _, rows = read_all(FIXTURES / "spans.jsonl")
    assert rows and all(r.table == "spans" for r in rows)
    for r in rows:
        assert r.batch.schema == SPAN_STAGING
        assert r.read == r.batch.num_rows


def test_every_span_of_the_sdk_is_read_with_its_fields() -> None:
    table, _, _ = read_all(FIXTURES / "spans.jsonl")
    got = by_id(table)
    assert set(got) == set(SPANS)
    for key, want in SPANS.items():
        row = got[key]
        for field in ("trace_id", "span_id", "parent_span_id", "name", "kind", "service"):
            assert row[field] == want[field], (key, field)
        assert (row["start_ns"], row["end_ns"]) == (want["start_ns"], want["end_ns"])
        assert row["status"] == want["status"]
        assert len(row["events"]) == want["n_events"]
        assert len(row["links"]) == want["n_links"]
        assert {kv["key"]: kv["value"] for kv in row["attributes"]} == {
            k: rendered(v) for k, v in want["attributes"].items()
        }, key


def test_attribute_values_of_every_kind_are_rendered_as_text() -> None:
    table, _, _ = read_all(FIXTURES / "spans.jsonl")
    render = next(r for r in table.to_pylist() if r["name"] == "render")
    attributes = {kv["key"]: kv["value"] for kv in render["attributes"]}
    assert attributes["render.cached"] == "false"
    assert attributes["render.items"] == "3"
    assert attributes["render.ratio"] == "0.375"
    assert attributes["render.blocks"] == '["header","items","footer"]'
    assert attributes["render.sizes"] == "[512,2048,128]"
    assert attributes["render.digest"] == "deadbeef0042"
    assert attributes["render.options"] == '{"compact":true,"locale":"en-GB"}'


def test_resource_attributes_and_scope_are_kept() -> None:
    table, _, _ = read_all(FIXTURES / "spans.jsonl")
    for row in table.to_pylist():
        resource = {kv["key"]: kv["value"] for kv in row["resource_attributes"]}
        assert resource == EXPECTED["resources"][row["service"]]
        assert row["scope"]
    scopes = set(table["scope"].to_pylist())
    assert "opentelemetry.instrumentation.psycopg" in scopes


def test_events_keep_their_time_name_and_attributes() -> None:
    table, _, _ = read_all(FIXTURES / "spans.jsonl")
    failed = next(r for r in table.to_pylist() if r["status"] == "error")
    (event,) = failed["events"]
    assert event["name"] == "exception"
    assert failed["start_ns"] <= event["time_ns"] <= failed["end_ns"]
    keys = {kv["key"]: kv["value"] for kv in event["attributes"]}
    assert keys["exception.type"] == "urllib.error.HTTPError"


def test_links_point_at_the_producer_span_in_hex() -> None:
    table, _, _ = read_all(FIXTURES / "spans.jsonl")
    consumer = next(r for r in table.to_pylist() if r["kind"] == "consumer")
    producer = next(s for s in EXPECTED["spans"] if s["kind"] == "producer")
    (link,) = consumer["links"]
    assert (link["trace_id"], link["span_id"]) == (producer["trace_id"], producer["span_id"])
    assert link["attributes"]


def test_roots_and_remote_parents() -> None:
    table, _, _ = read_all(FIXTURES / "spans.jsonl")
    rows = by_id(table)
    roots = [k for k, s in SPANS.items() if s["parent_span_id"] is None]
    assert roots and all(rows[k]["parent_span_id"] is None for k in roots)
    orphan = EXPECTED["orphan_missing_parent"]
    assert any(r["parent_span_id"] == orphan["span_id"] for r in rows.values())


# --- every shape gives the same rows --------------------------------------------------------


@pytest.mark.parametrize("name", JSON_FILES)
def test_every_shape_gives_the_same_rows(
    name: str, reference: dict[tuple[str, str], dict[str, Any]]
) -> None:
    table, rejects, _ = read_all(FIXTURES / name)
    assert rejects == []
    got = {k: comparable(v) for k, v in by_id(table).items()}
    want_traces = set(EXPECTED["trace_ids_in_file"][name])
    assert {t for t, _ in got} == want_traces
    assert got == {k: v for k, v in reference.items() if k[0] in want_traces}


def test_base64_ids_and_enum_names_are_read_like_hex_and_integers(
    reference: dict[tuple[str, str], dict[str, Any]],
) -> None:
    text = (FIXTURES / "protojson_base64.json").read_text()
    assert "SPAN_KIND_SERVER" in text and "STATUS_CODE_ERROR" in text
    table, _, _ = read_all(FIXTURES / "protojson_base64.json")
    assert {k: comparable(v) for k, v in by_id(table).items()} == reference


def _rewrite_jsonl(path: Path, out: Path, change: Any) -> Path:
    lines = [json.dumps(change(json.loads(line))) for line in path.read_text().splitlines()]
    out.write_text("\n".join(lines) + "\n")
    return out


def _walk(value: Any, fn: Any) -> Any:
    if isinstance(value, dict):
        return fn({k: _walk(v, fn) for k, v in value.items()})
    if isinstance(value, list):
        return [_walk(v, fn) for v in value]
    return value


def test_int64_as_json_numbers_read_like_strings(
    tmp_path: Path, reference: dict[tuple[str, str], dict[str, Any]]
) -> None:
    def numbers(d: dict[str, Any]) -> dict[str, Any]:
        return {k: int(v) if k.endswith("UnixNano") or k == "intValue" else v for k, v in d.items()}

    path = _rewrite_jsonl(
        FIXTURES / "spans.jsonl", tmp_path / "numbers.jsonl", lambda d: _walk(d, numbers)
    )
    assert '"startTimeUnixNano": 1' in path.read_text()
    table, rejects, _ = read_all(path)
    assert rejects == []
    assert {k: comparable(v) for k, v in by_id(table).items()} == reference


def test_snake_case_keys_read_like_camel_case(
    tmp_path: Path, reference: dict[tuple[str, str], dict[str, Any]]
) -> None:
    def snake(d: dict[str, Any]) -> dict[str, Any]:
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in d.items()}

    path = _rewrite_jsonl(
        FIXTURES / "spans.jsonl", tmp_path / "snake.jsonl", lambda d: _walk(d, snake)
    )
    assert '"resource_spans"' in path.read_text()
    table, rejects, _ = read_all(path)
    assert rejects == []
    assert {k: comparable(v) for k, v in by_id(table).items()} == reference


@pytest.mark.parametrize("name", ["tempo_v2.json", "tempo_v1_ils.json", "protojson_base64.json"])
def test_a_pretty_printed_document_reads_like_a_compact_one(
    name: str, tmp_path: Path, reference: dict[tuple[str, str], dict[str, Any]]
) -> None:
    pretty = tmp_path / name
    pretty.write_text(json.dumps(json.loads((FIXTURES / name).read_text()), indent=2) + "\n")
    table, rejects, _ = read_all(pretty)
    assert rejects == []
    want_traces = set(EXPECTED["trace_ids_in_file"][name])
    got = {k: comparable(v) for k, v in by_id(table).items()}
    assert got == {k: v for k, v in reference.items() if k[0] in want_traces}


def test_small_chunks_give_several_batches_and_the_same_rows(
    reference: dict[tuple[str, str], dict[str, Any]],
) -> None:
    table, rejects, rows = read_all(FIXTURES / "spans.jsonl", chunk_bytes=1024)
    assert rejects == [] and len(rows) == 3  # one Collector request per line
    assert sum(r.records for r in rows) == EXPECTED["n_spans"]
    assert {k: comparable(v) for k, v in by_id(table).items()} == reference


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("chunk_bytes", [None, 1024])
def test_a_byte_order_mark_is_ignored(
    tmp_path: Path,
    reference: dict[tuple[str, str], dict[str, Any]],
    fast: bool,
    chunk_bytes: int | None,
) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "spans.jsonl").read_bytes())
    table, rejects, _ = read_all(path, fast=fast, chunk_bytes=chunk_bytes)
    assert rejects == []
    assert {k: comparable(v) for k, v in by_id(table).items()} == reference


def test_blank_lines_and_crlf_are_ignored(
    tmp_path: Path, reference: dict[tuple[str, str], dict[str, Any]]
) -> None:
    lines = (FIXTURES / "spans.jsonl").read_bytes().splitlines()
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n".join([lines[0], b"", lines[1], b"   ", *lines[2:]]) + b"\r\n\r\n")
    table, rejects, _ = read_all(path)
    assert rejects == []
    assert {k: comparable(v) for k, v in by_id(table).items()} == reference


# --- values built from the proto classes ----------------------------------------------------


def _request_with_attributes(values: dict[str, AnyValue]) -> str:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes(range(16))
    span.span_id = bytes(range(8))
    span.name = "values"
    for key, value in values.items():
        kv = span.attributes.add()
        kv.key = key
        kv.value.CopyFrom(value)
    return json.dumps(MessageToDict(request))


@pytest.mark.parametrize(
    "number",
    [
        0.1,
        1.0,
        1e16,
        1e15,
        1e-05,
        0.0001,
        123456789.125,
        5e-324,
        1.7976931348623157e308,
        -0.0,
        -2.5,
        1 / 3,
    ],
)
def test_doubles_are_rendered_as_python_repr(number: float, tmp_path: Path) -> None:
    path = tmp_path / "doubles.json"
    path.write_text(_request_with_attributes({"x": AnyValue(double_value=number)}))
    table, rejects, _ = read_all(path)
    assert rejects == []
    assert table["attributes"][0].as_py() == [{"key": "x", "value": repr(number)}]


def test_a_span_without_attributes_and_service_gets_empty_lists_and_a_stand_in(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bare.json"
    path.write_text(_request_with_attributes({}))
    table, _, _ = read_all(path)
    (row,) = table.to_pylist()
    assert row["trace_id"] == bytes(range(16)).hex() and row["span_id"] == bytes(range(8)).hex()
    assert row["service"] == "unknown_service"
    assert row["kind"] == "unspecified" and row["status"] == "unset"
    assert row["parent_span_id"] is None
    assert (row["attributes"], row["events"], row["links"]) == ([], [], [])


# --- bad input ------------------------------------------------------------------------------


def test_bad_lines_are_rejected_with_their_line_numbers_and_the_rest_is_read() -> None:
    table, rejects, _ = read_all(FIXTURES / "bad_line.jsonl")
    bad = EXPECTED["malformed"]["bad_line.jsonl"]
    assert table.num_rows == bad["readable_spans"]
    assert [r.position for r in rejects] == [f"line {n}" for n in bad["bad_lines"]]
    assert all(r.reason.startswith("not JSON") for r in rejects)
    assert rejects[1].excerpt.startswith("this is not json")
    assert set(table["trace_id"].to_pylist()) <= set(EXPECTED["trace_ids_per_message"][0]) | {
        t for m in EXPECTED["trace_ids_per_message"][2:] for t in m
    }


def test_json_that_is_not_otlp_is_rejected_per_line(tmp_path: Path) -> None:
    lines = (FIXTURES / "spans.jsonl").read_text().splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([lines[0], '{"data": []}', "[1, 2]", lines[1]]) + "\n")
    table, rejects, _ = read_all(path)
    assert [r.position for r in rejects] == ["line 2", "line 3"]
    assert all("not an OTLP traces document" in r.reason for r in rejects)
    first_two = EXPECTED["trace_ids_per_message"][0] + EXPECTED["trace_ids_per_message"][1]
    assert table.num_rows == sum(EXPECTED["spans_per_trace"][t] for t in first_two)


def test_a_line_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    lines = (FIXTURES / "spans.jsonl").read_bytes().splitlines()
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join([lines[0], b'{"resourceSpans": "caf\xe9"}', *lines[1:]]))
    table, rejects, _ = read_all(path)
    assert [r.position for r in rejects] == ["line 2"]
    assert "UTF-8" in rejects[0].reason
    assert table.num_rows == EXPECTED["n_spans"]


def test_a_span_without_ids_is_rejected_and_its_neighbours_kept(tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "tempo_v2.json").read_text())
    spans = doc["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
    del spans[0]["spanId"]
    path = tmp_path / "no_id.json"
    path.write_text(json.dumps(doc))
    table, rejects, _ = read_all(path)
    assert [r.position for r in rejects] == ["line 1"]
    assert "spanId" in rejects[0].reason
    (trace_id,) = EXPECTED["trace_ids_in_file"]["tempo_v2.json"]
    assert table.num_rows == EXPECTED["spans_per_trace"][trace_id] - 1


def test_a_broken_document_is_one_reject_at_the_line_the_parser_names(tmp_path: Path) -> None:
    text = json.dumps(json.loads((FIXTURES / "tempo_v2.json").read_text()), indent=2)
    lines = text.splitlines()
    path = tmp_path / "broken.json"
    path.write_text("\n".join(lines[:40]) + "\n")  # cut in the middle
    table, rejects, _ = read_all(path)
    assert table.num_rows == 0
    (reject,) = rejects
    assert reject.reason.startswith("not JSON")
    assert reject.position == "line 41"


def test_a_truncated_gzip_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    data = (FIXTURES / "spans.jsonl").read_bytes()
    packed = gzip.compress(data, mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) - 200])
    table, rejects, _ = read_all(path)
    assert rejects and "truncated or corrupt" in rejects[-1].reason
    assert 0 < table.num_rows < EXPECTED["n_spans"]
    assert set(table["trace_id"].to_pylist()) >= set(EXPECTED["trace_ids_per_message"][0])


def test_a_file_that_is_not_gzip_after_all_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(LoadError, match="fake.gz"):
        list(otlp_json.read(Source.of(path)))


def test_plain_text_is_one_reject_not_an_exception() -> None:
    table, rejects, _ = read_all(FIXTURES / "not_otlp.txt")
    assert table.num_rows == 0
    assert len(rejects) == 1 and rejects[0].position == "line 1"


def test_stopping_early_closes_the_reader() -> None:
    items = otlp_json.read(Source.of(FIXTURES / "spans.jsonl"), chunk_bytes=1024)
    first = next(items)
    assert isinstance(first, Rows)
    items.close()  # the background thread stops; nothing leaks a warning


def test_jaeger_v3_result_wrapper_reads_like_the_collector_lines(
    reference: dict[tuple[str, str], dict[str, Any]],
) -> None:
    path = FIXTURES.parent / "zipkin_jaeger" / "jaeger_v3.json"
    if not path.exists():
        pytest.skip("tests/fixtures/make_zipkin_jaeger.py has not written jaeger_v3.json")
    assert otlp_json.sniff(Source.of(path).head())
    table, rejects, _ = read_all(path)
    assert rejects == [] and table.num_rows > 0
    got = {k: comparable(v) for k, v in by_id(table).items()}
    assert got == {k: reference[k] for k in got}


def test_a_common_wrapper_key_alone_is_not_claimed() -> None:
    assert not otlp_json.sniff(b'{"result": {"rows": [1, 2, 3]}}')
    assert not otlp_json.sniff(b'{"trace": {"id": "abc"}}')
