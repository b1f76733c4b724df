"""The OTLP protobuf reader, against the SDK-made fixtures and against protobuf itself."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData

from latkit.ingest import LoadError, Reject, Rows, Source, otlp_proto
from latkit.schema import SPAN_KINDS, SPAN_STAGING, SPAN_STATUSES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def read_all(path: Path, **options: Any) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Every row (as dicts, file order) and every reject of a file."""
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for item in otlp_proto.read(Source.of(path), **options):
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            assert isinstance(item, Rows) and item.table == "spans"
            assert item.batch.schema == SPAN_STAGING
            assert item.records == item.batch.num_rows
            rows.extend(item.batch.to_pylist())
    return rows, rejects


def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


_names = itertools.count()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module (hypothesis does not mix with function-scoped fixtures)."""
    return tmp_path_factory.mktemp("otlp_proto")


def write(tmp: Path, data: bytes) -> Path:
    path = tmp / f"{next(_names)}.pb"
    path.write_bytes(data)
    return path


def as_text(value: object) -> str:
    """How expected.json's attribute values read in the spans table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict) and set(value) == {"$base64"}:
        return base64.b64decode(value["$base64"]).hex()
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# --------------------------------------------------------------------------- SDK fixtures


@pytest.mark.parametrize("name", ["single.pb", "tracesdata.pb", "framed.pb"])
def test_every_span_of_the_sdk_fixtures_is_read_as_the_sdk_made_it(name: str) -> None:
    rows, rejects = read_all(FIXTURES / name)
    assert rejects == []
    assert len(rows) == EXPECTED["n_spans"]
    by_id = {r["span_id"]: r for r in rows}
    for want in EXPECTED["spans"]:
        got = by_id[want["span_id"]]
        for key in (
            "trace_id",
            "parent_span_id",
            "name",
            "kind",
            "service",
            "start_ns",
            "end_ns",
            "status",
        ):
            assert got[key] == want[key], (want["span_id"], key)
        assert {kv["key"]: kv["value"] for kv in got["attributes"]} == {
            k: as_text(v) for k, v in want["attributes"].items()
        }
        assert len(got["events"]) == want["n_events"]
        assert len(got["links"]) == want["n_links"]
        resource = EXPECTED["resources"][want["service"]]
        assert {kv["key"]: kv["value"] for kv in got["resource_attributes"]} == resource


def test_single_tracesdata_and_framed_files_give_the_same_rows() -> None:
    def key(r: dict[str, Any]) -> str:
        return r["span_id"]

    single = sorted(read_all(FIXTURES / "single.pb")[0], key=key)
    assert sorted(read_all(FIXTURES / "tracesdata.pb")[0], key=key) == single
    assert sorted(read_all(FIXTURES / "framed.pb")[0], key=key) == single


def test_events_links_scope_and_render_values_of_the_sdk_fixture() -> None:
    rows, _ = read_all(FIXTURES / "framed.pb")
    render = next(r for r in rows if r["name"] == "render")
    assert render["scope"] == "shop.app"
    assert [e["name"] for e in render["events"]] == ["template.loaded", "template.rendered"]
    assert {kv["key"]: kv["value"] for kv in render["events"][1]["attributes"]} == {
        "output_bytes": "9120",
        "ms": "13.5",
    }
    consumer = next(r for r in rows if r["kind"] == "consumer")
    (link,) = consumer["links"]
    producer = next(r for r in rows if r["kind"] == "producer")
    assert (link["trace_id"], link["span_id"]) == (producer["trace_id"], producer["span_id"])
    assert link["attributes"]  # the fixture gives its link attributes
    error = [r for r in rows if r["status"] == "error"]
    assert len(error) == 1 and error[0]["events"][0]["name"] == "exception"


def test_truncated_file_keeps_every_complete_frame_and_rejects_the_cut_one() -> None:
    info = EXPECTED["malformed"]["truncated.pb"]
    rows, rejects = read_all(FIXTURES / "truncated.pb")
    assert len(rows) == info["readable_spans"]
    assert len(rejects) == 1
    assert rejects[0].position == f"byte {info['truncated_message_offset']}"
    assert "truncated" in rejects[0].reason


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.compress])
def test_compressed_framed_file_reads_the_same(compress: Any, tmp: Path) -> None:
    path = write(tmp, compress((FIXTURES / "framed.pb").read_bytes()))
    assert read_all(path)[0] == read_all(FIXTURES / "framed.pb")[0]


@pytest.mark.parametrize(("batch_spans", "sizes"), [(5, [7, 9, 8]), (8, [16, 8]), (17, [24])])
def test_batches_hold_whole_messages_and_at_least_batch_spans(
    batch_spans: int, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # framed.pb holds three messages of 7, 9 and 8 spans; decode after every message, and
    # size the tables so that each decode regrows them (keeping the rows decoded before)
    monkeypatch.setattr(otlp_proto, "DECODE_BYTES", 1)
    monkeypatch.setattr(otlp_proto, "BYTES_PER_ROW", (1,) * len(otlp_proto.WIDTHS))
    items = list(otlp_proto.read(Source.of(FIXTURES / "framed.pb"), batch_spans=batch_spans))
    assert [i.batch.num_rows for i in items if isinstance(i, Rows)] == sizes
    assert (
        read_all(FIXTURES / "framed.pb", batch_spans=batch_spans)[0]
        == read_all(FIXTURES / "framed.pb")[0]
    )


@pytest.mark.parametrize("compress", [False, True])
def test_tables_are_sized_once_not_run_by_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    # 60 messages decoded one at a time into one batch: each run needs a little more room
    # than the last, and growing the tables run by run copied them over and over.
    data = (FIXTURES / "framed.pb").read_bytes() * 20
    path = tmp_path / ("many.pb.gz" if compress else "many.pb")
    path.write_bytes(gzip.compress(data) if compress else data)
    monkeypatch.setattr(otlp_proto, "DECODE_BYTES", 1)
    monkeypatch.setattr(otlp_proto, "CHUNK_BYTES", 4 * len(data))  # room for the whole file
    sizes: dict[int, list[int]] = {}  # id of a table -> the rows it has had, growth by growth
    kept: list[np.ndarray] = []  # every table seen, so that no id is reused
    real = otlp_proto._grown

    def spy(table: np.ndarray, rows: int, used: int) -> np.ndarray:
        out = real(table, rows, used)
        sizes[id(out)] = [*sizes.pop(id(table), [len(table)]), rows]
        kept.extend((table, out))
        return out

    monkeypatch.setattr(otlp_proto, "_grown", spy)
    items = list(otlp_proto.read(Source.of(path), batch_spans=10_000))
    assert sum(i.batch.num_rows for i in items if isinstance(i, Rows)) == 20 * EXPECTED["n_spans"]
    assert sizes
    assert all(len(rows) == 2 for rows in sizes.values()), sizes  # grown once, on first use


def test_a_full_read_buffer_ends_a_batch_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_proto, "DECODE_BYTES", 1)
    size = (FIXTURES / "framed.pb").stat().st_size
    monkeypatch.setattr(otlp_proto, "CHUNK_BYTES", size // 2)  # room for one message or two
    items = list(otlp_proto.read(Source.of(FIXTURES / "framed.pb"), batch_spans=100))
    sizes = [i.batch.num_rows for i in items if isinstance(i, Rows)]
    assert len(sizes) > 1 and sum(sizes) == EXPECTED["n_spans"]


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("name", ["single.pb", "tracesdata.pb", "framed.pb", "truncated.pb"])
def test_sniff_claims_protobuf_traces(name: str) -> None:
    assert otlp_proto.sniff(Source.of(FIXTURES / name).head())


@pytest.mark.parametrize(
    "name",
    [
        "spans.jsonl",
        "spans.jsonl.gz",
        "protojson_base64.json",
        "tempo_v2.json",
        "not_otlp.txt",
        "bad_line.jsonl",
        "expected.json",
    ],
)
def test_sniff_leaves_other_files_alone(name: str) -> None:
    assert not otlp_proto.sniff(Source.of(FIXTURES / name).head())


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\n",
        b"\ntrace_id,span_id\n1,2\n",
        b"\n\nhello world, not protobuf",
        b"ts,duration\n1,2\n",
        b"\x00\x00\x00\x05hello",
        gzip.compress(b"hello")[:10],
    ],
)
def test_sniff_refuses_text_and_noise(head: bytes) -> None:
    assert not otlp_proto.sniff(head)


def test_reading_a_non_otlp_file_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="not OTLP protobuf"):
        list(otlp_proto.read(Source.of(FIXTURES / "not_otlp.txt")))


def test_importing_the_reader_does_not_import_numba() -> None:
    code = "import latkit.ingest.otlp_proto, sys; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# --------------------------------------------------------------------------- bad input


def one_span_message(name: str = "ok") -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, name
    return request.SerializeToString()


def test_a_corrupt_frame_is_rejected_and_the_next_frames_are_read(tmp: Path) -> None:
    good = one_span_message()
    bad = b"\x0a\x05\x12\x7f\x0a\x01\x02"  # a ScopeSpans claiming 127 bytes in a 5-byte RS
    with pytest.raises(Exception):  # noqa: B017 - protobuf agrees it is corrupt
        ExportTraceServiceRequest.FromString(bad)
    rows, rejects = read_all(write(tmp, framed(good, bad, good)))
    assert [r["name"] for r in rows] == ["ok", "ok"]
    assert len(rejects) == 1
    assert rejects[0].position == f"byte {4 + len(good)}"
    assert "at byte" in rejects[0].reason


def test_a_truncated_single_message_is_one_reject(tmp: Path) -> None:
    data = one_span_message()
    rows, rejects = read_all(write(tmp, data[:-3]))
    assert rows == [] and len(rejects) == 1 and rejects[0].position == "byte 0"


def test_an_absurd_frame_length_is_refused_not_allocated(tmp: Path) -> None:
    good = one_span_message()
    data = framed(good) + struct.pack(">I", 0xFFFFFFF0) + b"\x0a\x00"
    rows, rejects = read_all(write(tmp, data))
    assert len(rows) == 1
    assert len(rejects) == 1 and rejects[0].position == f"byte {4 + len(good)}"
    assert "limit" in rejects[0].reason


def test_zero_length_messages_and_empty_files_give_no_rows_and_no_rejects(tmp: Path) -> None:
    assert read_all(write(tmp, framed(b"", one_span_message(), b""))) == (
        read_all(write(tmp, framed(one_span_message())))
    )
    assert read_all(write(tmp, b"")) == ([], [])


def test_invalid_utf8_in_a_name_is_replaced_not_fatal(tmp: Path) -> None:
    data = one_span_message("caf\u00e9").replace("caf\u00e9".encode(), b"caf\xff\xfe")
    rows, rejects = read_all(write(tmp, data))
    assert rejects == [] and rows[0]["name"] == "caf\ufffd\ufffd"


# --------------------------------------------------------------------------- vs protobuf

UNKNOWN_FIELDS = [
    b"",
    b"\xa0\x06\x2a",  # field 100, varint 42
    b"\xaa\x06\x03abc",  # field 101, length-delimited
    b"\xb5\x06\x01\x02\x03\x04",  # field 102, fixed32
    b"\xb9\x06" + bytes(8),  # field 103, fixed64
    b"\xc3\x06\x08\x01\xc4\x06",  # field 104, a group holding field 1 = 1
]

texts = st.text(max_size=12)
ids = st.sampled_from([0, 8, 16]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
u64 = st.integers(min_value=0, max_value=2**64 - 1)
scalars = st.one_of(
    st.none(),
    st.builds(lambda v: AnyValue(string_value=v), texts),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=6)),
)


def any_values() -> st.SearchStrategy[AnyValue | None]:
    def nest(inner: st.SearchStrategy[AnyValue | None]) -> st.SearchStrategy[AnyValue]:
        items = st.lists(inner.map(lambda v: v or AnyValue()), max_size=3)
        pairs = st.lists(st.tuples(texts, inner.map(lambda v: v or AnyValue())), max_size=3)

        def array(vs: list[AnyValue]) -> AnyValue:
            out = AnyValue()
            out.array_value.values.extend(vs)
            return out

        def kvlist(ps: list[tuple[str, AnyValue]]) -> AnyValue:
            out = AnyValue()
            out.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in ps)
            return out

        return st.one_of(st.builds(array, items), st.builds(kvlist, pairs))

    return st.recursive(scalars, nest, max_leaves=6)


def with_unknown(message: Any, extra: bytes) -> Any:
    """``message`` carrying unknown fields (protobuf keeps and re-serialises them)."""
    return type(message).FromString(message.SerializeToString() + extra)


@st.composite
def attribute_lists(draw: st.DrawFn) -> list[KeyValue]:
    out = []
    for key, value in draw(st.lists(st.tuples(texts, any_values()), max_size=4)):
        kv = KeyValue(key=key) if value is None else KeyValue(key=key, value=value)
        out.append(with_unknown(kv, draw(st.sampled_from(UNKNOWN_FIELDS))))
    return out


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(ids),
        span_id=draw(ids),
        parent_span_id=draw(ids),
        trace_state=draw(texts),
        name=draw(texts),
        kind=draw(st.integers(0, 7)),  # 6 and 7 are not kinds (yet)
        start_time_unix_nano=draw(u64),
        end_time_unix_nano=draw(u64),
        flags=draw(st.integers(0, 2**32 - 1)),
        dropped_attributes_count=draw(st.integers(0, 3)),
    )
    span.attributes.extend(draw(attribute_lists()))
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(time_unix_nano=draw(u64), name=draw(texts))
        event.attributes.extend(draw(attribute_lists()))
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(trace_id=draw(ids), span_id=draw(ids), trace_state=draw(texts))
        link.attributes.extend(draw(attribute_lists()))
    if draw(st.booleans()):
        span.status.code = draw(st.integers(0, 3))
        span.status.message = draw(texts)
    return with_unknown(span, draw(st.sampled_from(UNKNOWN_FIELDS)))


@st.composite
def requests(draw: st.DrawFn) -> TracesData:
    data = TracesData()
    for _ in range(draw(st.integers(0, 3))):
        rs = ResourceSpans()
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(attribute_lists()))
            if draw(st.booleans()):
                rs.resource.attributes.add(key="service.name").value.string_value = draw(texts)
        for _ in range(draw(st.integers(0, 3))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name, ss.scope.version = draw(texts), draw(texts)
            ss.spans.extend(draw(st.lists(spans(), max_size=3)))
        data.resource_spans.append(with_unknown(rs, draw(st.sampled_from(UNKNOWN_FIELDS))))
    return data


def render(value: AnyValue | None) -> str | None:
    """What the reader must make of an AnyValue, computed from protobuf's own parse."""
    plain = to_plain(value) if value is not None else None
    if plain is None:
        return None
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, float):
        return repr(plain)
    if isinstance(plain, list | dict):
        return json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
    return str(plain)


def to_plain(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "array_value":
        return [to_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: to_plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def pairs(kvs: Any) -> list[dict[str, str | None]]:
    return [
        {"key": kv.key, "value": render(kv.value if kv.HasField("value") else None)} for kv in kvs
    ]


def signed(n: int) -> int:
    return n - 2**64 if n >= 2**63 else n


def expected_rows(data: TracesData) -> list[dict[str, Any]]:
    """The rows, field by field, from ``ParseFromString`` and ordinary field access."""
    out = []
    for rs in data.resource_spans:
        resource = pairs(rs.resource.attributes)
        services = [kv["value"] for kv in resource if kv["key"] == "service.name"]
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex() or None,
                        "trace_state": s.trace_state or None,
                        "name": s.name,
                        "kind": SPAN_KINDS[s.kind] if s.kind < 6 else "unspecified",
                        "service": services[-1]
                        if services and services[-1] is not None
                        else "unknown_service",
                        "start_ns": signed(s.start_time_unix_nano),
                        "end_ns": signed(s.end_time_unix_nano),
                        "status": SPAN_STATUSES[s.status.code] if s.status.code < 3 else "unset",
                        "status_message": s.status.message or None,
                        "scope": ss.scope.name or None,
                        "attributes": pairs(s.attributes),
                        "resource_attributes": resource,
                        "events": [
                            {
                                "time_ns": signed(e.time_unix_nano),
                                "name": e.name,
                                "attributes": pairs(e.attributes),
                            }
                            for e in s.events
                        ],
                        "links": [
                            {
                                "trace_id": lk.trace_id.hex(),
                                "span_id": lk.span_id.hex(),
                                "trace_state": lk.trace_state or None,
                                "attributes": pairs(lk.attributes),
                            }
                            for lk in s.links
                        ],
                    }
                )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(requests(), min_size=1, max_size=3))
def test_decoder_agrees_with_protobuf(messages: list[TracesData], tmp: Path) -> None:
    blobs = [m.SerializeToString() for m in messages]
    want = [row for blob in blobs for row in expected_rows(TracesData.FromString(blob))]
    rows, rejects = read_all(write(tmp, framed(*blobs)), batch_spans=4)
    assert rejects == []
    assert rows == want
    if blobs[0][:1] == b"\x0a":  # as one unframed message too (if it can be told apart)
        single, rejects = read_all(write(tmp, blobs[0]))
        assert rejects == [] and single == expected_rows(messages[0])


def rendered(tmp: Path, kind: str, values: list[Any]) -> list[str | None]:
    """The text the reader gives attributes of one span holding ``values`` of ``kind``."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    for v in values:
        setattr(span.attributes.add(key="v").value, kind, v)
    rows, _ = read_all(write(tmp, request.SerializeToString()))
    return [kv["value"] for kv in rows[0]["attributes"]]


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.floats(), min_size=1, max_size=60))
def test_doubles_render_as_python_repr(values: list[float], tmp: Path) -> None:
    assert rendered(tmp, "double_value", values) == [repr(v) for v in values]


def test_schema_is_exactly_span_staging() -> None:
    items = list(otlp_proto.read(Source.of(FIXTURES / "framed.pb")))
    assert all(isinstance(i, Rows) and i.batch.schema == SPAN_STAGING for i in items)
    assert isinstance(items[0], Rows) and isinstance(items[0].batch, pa.RecordBatch | pa.Table)


def test_integers_render_in_decimal_at_every_width(tmp: Path) -> None:
    values = [0, 7, -1, 9, 10, -10, 99, 100, 10**18, 2**63 - 1, -(2**63), -(2**63) + 1]
    assert rendered(tmp, "int_value", values) == [str(v) for v in values]
