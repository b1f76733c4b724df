"""The Zipkin v2 JSON reader, on the OpenTelemetry SDK's Zipkin exporter output
(tests/fixtures/zipkin_jaeger/, made by make_zipkin_jaeger.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

import latkit
from latkit.ingest import Reject, Rows, Source, detect, zipkin

FIXTURES = Path(__file__).parents[1] / "fixtures" / "zipkin_jaeger"
EXPECTED = json.loads((Path(__file__).parents[1] / "fixtures/otlp/expected.json").read_text())
TRUTH = {(s["trace_id"], s["span_id"]): s for s in EXPECTED["spans"]}

ROWS = """
    SELECT trace_id, span_id, parent_span_id, name, kind, service, start_ns, end_ns, status
    FROM spans ORDER BY ALL
"""


def _load(path: Path | str) -> latkit.Workbook:
    wb = latkit.open()
    wb.load(path)
    return wb


def _truth_rows() -> list[tuple[object, ...]]:
    keys = ("trace_id", "span_id", "parent_span_id", "name", "kind", "service", "start_ns",
            "end_ns", "status")
    return sorted(tuple(s[k] for k in keys) for s in EXPECTED["spans"])


@pytest.mark.parametrize("name", ["zipkin.json", "zipkin_traces.json"])
def test_a_list_of_spans_and_a_list_of_traces_read_the_same(name: str) -> None:
    wb = _load(FIXTURES / name)
    assert wb.sql(ROWS).rows() == _truth_rows()


def test_the_exporter_posts_read_as_they_were_sent() -> None:
    wb = latkit.open()
    wb.load(FIXTURES / "zipkin_post_shop.json", FIXTURES / "zipkin_post_inventory.json")
    assert wb.sql(ROWS).rows() == _truth_rows()
    shop = _load(FIXTURES / "zipkin_post_shop.json")
    assert shop.sql("select distinct service from spans")["service"].to_list() == ["shop"]


def test_the_opentelemetry_tags_become_columns_not_attributes() -> None:
    wb = _load(FIXTURES / "zipkin.json")
    error = wb.sql("select * from spans where status = 'error'").row(0, named=True)
    assert (error["name"], error["kind"], error["http_status_code"]) == ("GET", "client", 404)
    assert error["scope"] == "opentelemetry.instrumentation.requests"
    keys = {kv["key"] for kv in error["attributes"]}
    assert not keys & set(zipkin.OTEL_TAGS)
    # internal spans have no kind in Zipkin: they read as internal
    assert wb.sql("select kind from spans where name = 'render'")["kind"].to_list() == ["internal"]


def test_annotations_written_by_opentelemetry_are_events_with_attributes() -> None:
    wb = _load(FIXTURES / "zipkin.json")
    events = wb.sql("select events from spans where name = 'render'")["events"][0].to_list()
    assert [(e["name"], e["time_ns"] - 1_767_225_600_000_000_000) for e in events] == [
        ("template.loaded", 32_000_000),
        ("template.rendered", 45_000_000),
    ]
    assert {kv["key"]: kv["value"] for kv in events[0]["attributes"]} == {
        "from_disk": "true", "size_bytes": "2688", "template": "order.html"
    }


def test_shared_spans_stay_two_rows_and_the_tree_stays_a_tree() -> None:
    plain = _load(FIXTURES / "zipkin.json")
    wb = _load(FIXTURES / "zipkin_shared.json")
    assert wb.sql("select count(distinct (trace_id, span_id, kind)) as n from spans")["n"][0] == 24
    servers = wb.sql(
        """
        select s.trace_id, s.span_id, s.parent_span_id, c.kind as parent_kind,
               c.service as parent_service
        from spans s join spans c on c.trace_id = s.trace_id and c.span_id = s.parent_span_id
        where s.kind = 'server' and s.service = 'inventory'
        """
    )
    assert servers.height == 3  # the three calls from shop to inventory
    for row in servers.iter_rows(named=True):
        derived = hashlib.sha256(
            (row["trace_id"] + row["parent_span_id"] + "server").encode()
        ).hexdigest()[:16]
        assert row["span_id"] == derived
        assert (row["parent_kind"], row["parent_service"]) == ("client", "shop")
    # the server's own children hang under the server half, as in the unshared spans
    tree = """
        select c.name, p.name as parent, p.kind as parent_kind
        from spans c left join spans p on p.trace_id = c.trace_id and p.span_id = c.parent_span_id
        order by all
    """
    assert wb.sql(tree).rows() == plain.sql(tree).rows()


def test_64_bit_trace_ids_are_padded_to_128() -> None:
    wb = _load(FIXTURES / "zipkin_64bit.json")
    ids = set(wb.sql("select distinct trace_id from spans")["trace_id"])
    assert ids == {"0" * 16 + t[16:] for t in EXPECTED["traces"].values()}


BRAVE = [
    {
        "traceId": "463ac35c9f6413ad",
        "id": "72485a3953bb6124",
        "kind": "SERVER",
        "name": "get /orders/{id}",
        "timestamp": 1_767_225_600_000_000,
        "duration": 25_000,
        "localEndpoint": {"serviceName": "shop", "ipv4": "10.0.0.5"},
        "tags": {"http.method": "GET", "http.path": "/orders/42", "http.status_code": "500",
                 "error": "boom"},
    },
    {
        "traceId": "463ac35c9f6413ad",
        "parentId": "72485a3953bb6124",
        "id": "a1b2c3d4e5f60718",
        "kind": "CLIENT",
        "name": "query",
        "timestamp": 1_767_225_600_002_000,
        "duration": 7_000,
        "localEndpoint": {"serviceName": "shop"},
        "remoteEndpoint": {"serviceName": "mysql-shop", "ipv4": "10.0.0.9", "port": 3306},
        "tags": {"sql.query": "SELECT * FROM orders WHERE id = 42"},
    },
]


def test_brave_tags_are_read_like_their_opentelemetry_counterparts(tmp_path: Path) -> None:
    """A span list in the shape Brave reports (its HTTP and MySQL instrumentations' tags;
    hand-made: no Brave runs here)."""
    path = tmp_path / "brave.json"
    path.write_text(json.dumps(BRAVE))
    wb = _load(path)
    server, query = wb.sql("select * from spans order by start_ns").iter_rows(named=True)
    assert server["trace_id"] == "0" * 16 + "463ac35c9f6413ad"
    assert (server["route"], server["http_method"], server["http_status_code"]) == (
        "/orders/42", "GET", 500
    )
    assert (server["status"], server["status_message"]) == ("error", "boom")
    assert (query["category"], query["db_system"], query["peer"]) == ("db", "mysql", "mysql-shop")
    assert query["db_statement"] == "SELECT * FROM orders WHERE id = 42"
    assert query["fingerprint"] is not None
    attrs = {kv["key"]: kv["value"] for kv in query["attributes"]}
    assert attrs["network.peer.address"] == "10.0.0.9" and attrs["network.peer.port"] == "3306"


def test_bad_lines_and_bad_spans_are_rejected_and_the_report_adds_up(tmp_path: Path) -> None:
    good = json.loads((FIXTURES / "zipkin_post_inventory.json").read_text())
    no_time = {k: v for k, v in good[0].items() if k != "timestamp"}
    bad_id = {**good[1], "id": "not-hex"}
    lines = [json.dumps(good[2:5]), "[{ broken", json.dumps([no_time, bad_id]),
             json.dumps(good[2:3]), '{"hello": "world"}']
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines) + "\n")
    wb = latkit.open()
    report = wb.load(path)
    assert report.rows == {"spans": 3}
    assert report.duplicates == 1  # line 4 repeats a span of line 1
    assert report.rejected == 4
    assert report.loaded + report.duplicates + report.rejected == report.read
    rejects = wb.sql("select position, reason from rejects order by position").rows()
    assert [p for p, _ in rejects] == ["line 2", "line 3", "line 3", "line 5"]
    reasons = " | ".join(r for _, r in rejects)
    assert "not JSON" in reasons and "without a timestamp" in reasons
    assert "without a valid traceId and id" in reasons and "not a Zipkin" in reasons


def test_a_compressed_file_reads_like_the_plain_one(tmp_path: Path) -> None:
    path = tmp_path / "zipkin.json.gz"
    path.write_bytes(gzip.compress((FIXTURES / "zipkin.json").read_bytes(), mtime=0))
    assert _load(path).sql(ROWS).rows() == _truth_rows()


def test_reading_in_small_chunks_gives_the_same_spans(tmp_path: Path) -> None:
    spans = json.loads((FIXTURES / "zipkin.json").read_text())
    lines = "".join(json.dumps([s]) + "\n" for s in spans)
    path = tmp_path / "spans.jsonl"
    path.write_text(lines)
    items = list(zipkin.read(Source.of(path), chunk_bytes=1024))
    batches = [i for i in items if isinstance(i, Rows)]
    assert len(batches) > 3 and not [i for i in items if isinstance(i, Reject)]
    assert sum(b.batch.num_rows for b in batches) == 24


def test_zipkin_files_are_detected_by_content() -> None:
    assert detect(Source.of(FIXTURES / "zipkin_traces.json")) is zipkin
    assert zipkin.sniff(b'[[{"traceId":"a","id":"b"}]]')
    assert not zipkin.sniff(b'[{"traceID":"a","spanID":"b"}]')
    assert not zipkin.sniff(b'[{"Plan": {"Node Type": "Seq Scan"}}]')
