"""The compiled fast path of the OTLP JSON reader (``latkit.ingest._otlp_json_fast``).

It must give exactly the rows and rejects of the DuckDB path on everything both read, hand
every line it is not sure of to the DuckDB path, and agree with protobuf's own parse of
random messages encoded as OTLP/JSON.
"""

from __future__ import annotations

import base64
import json
from itertools import count
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData

from latkit.ingest import Reject, Rows, Source, otlp_json
from latkit.ingest._otlp_json_fast import BYTES_PER_ROW, Scanner, _points_into
from latkit.ingest.otlp_json import _line_offsets
from latkit.ingest.otlp_proto import EVENT_ATTRS, SPAN_ATTRS
from latkit.schema import SPAN_KINDS, SPAN_STAGING, SPAN_STATUSES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "otlp"
FILES = [
    "spans.jsonl",
    "spans.jsonl.gz",
    "spans.jsonl.zst",
    "protojson_base64.json",
    "tempo_v1_batches.json",
    "tempo_v1_ils.json",
    "tempo_resourcespans.json",
    "tempo_v2.json",
    "bad_line.jsonl",
    "not_otlp.txt",
]


def read(path: Path, **options: Any) -> tuple[pa.Table, list[Reject]]:
    options.setdefault("fast", True)  # small files would otherwise take the DuckDB path
    tables, rejects = [], []
    for item in otlp_json.read(Source.of(path), **options):
        if isinstance(item, Rows):
            batch = item.batch
            tables.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
        else:
            assert isinstance(item, Reject)
            rejects.append(item)
    table = pa.concat_tables(tables) if tables else SPAN_STAGING.empty_table()
    return table, rejects


def both(path: Path, **options: Any) -> tuple[pa.Table, list[Reject]]:
    """What the fast path reads, after checking that the DuckDB path reads the same."""
    fast, fast_rejects = read(path, **options)
    slow, slow_rejects = read(path, fast=False, **options)
    assert fast.schema == slow.schema == SPAN_STAGING
    # the same rows; where some lines went to DuckDB, the scanned ones come first
    assert sorted(fast.to_pylist(), key=repr) == sorted(slow.to_pylist(), key=repr)
    assert fast_rejects == slow_rejects
    return fast, fast_rejects


def unread(data: bytes) -> list[int]:
    """Indexes of the lines that the fast path leaves to DuckDB."""
    offsets = _line_offsets(data, len(data), False)
    scanned = Scanner().spans(data, offsets)
    assert scanned is not None
    return np.flatnonzero(scanned[1]).tolist()


_names = count()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fast")


def write(tmp: Path, data: bytes) -> Path:
    path = tmp / f"{next(_names)}.jsonl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", FILES)
def test_the_fast_and_duckdb_paths_give_identical_batches_on_every_fixture(name: str) -> None:
    both(FIXTURES / name)
    both(FIXTURES / name, chunk_bytes=1024)


def test_the_collector_lines_are_read_by_the_fast_path() -> None:
    assert unread((FIXTURES / "spans.jsonl").read_bytes()) == []


def test_other_shapes_are_left_to_duckdb() -> None:
    for name in ("protojson_base64.json", "tempo_v1_batches.json", "tempo_v1_ils.json"):
        data = json.dumps(json.loads((FIXTURES / name).read_text())).encode()
        assert unread(data) == [0], name
    doc = json.loads((FIXTURES / "tempo_v2.json").read_text())
    assert "trace" in doc and unread(json.dumps(doc).encode()) == [0]


def span_line(span: dict[str, Any], **resource: Any) -> str:
    attrs = [{"key": "service.name", "value": {"stringValue": "svc"}}]
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": attrs, **resource},
                    "scopeSpans": [{"scope": {"name": "s"}, "spans": [span]}],
                }
            ]
        }
    )


BASE = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "n", "kind": 2}


@pytest.mark.parametrize(
    "text",
    ['a\\nb\\t\\"q\\" \\\\ \\/', "caf\\u00e9 \\u20ac", "\\ud83d\\ude00!", "plain ünïcode ✓"],
)
def test_escaped_strings_are_unescaped_like_json_does(text: str, tmp: Path) -> None:
    raw = span_line({**BASE, "name": "X", "attributes": [{"key": "k", "value": {}}]})
    raw = raw.replace('"X"', f'"{text}"').replace('"k"', f'"{text}"')
    path = write(tmp, raw.encode() + b"\n")
    assert unread(path.read_bytes()) == []
    table, rejects = both(path)
    want = json.loads(f'"{text}"')
    assert rejects == [] and table["name"].to_pylist() == [want]
    assert table["attributes"].to_pylist() == [[{"key": want, "value": None}]]


@pytest.mark.parametrize(
    "change",
    [
        {"name": "lone \\ud800 surrogate"},
        {"name": "nul \\u0000"},
        {"traceId": "q80TK3tjMAHC3G7WrLtBHw=="},  # base64
        {"spanId": ""},
        {"parentSpanId": "AAAAAAAAAAA="},
        {"kind": 2.0},
        {"startTimeUnixNano": "-5"},
        {"startTimeUnixNano": 1.5e18},
        {"endTimeUnixNano": "18446744073709551615"},
        {"attributes": [{"key": "d", "value": {"doubleValue": "NaN"}}]},
        {"attributes": [{"key": "i", "value": {"intValue": 1e3}}]},
        {"attributes": [{"key": "two", "value": {"stringValue": "a", "intValue": "1"}}]},
        {"attributes": [{"value": {"stringValue": "no key"}}]},
        {"attributes": None},
        {"links": [{"traceId": "ab" * 16}]},
        {"dropped_attributes_count": 1},
    ],
    ids=str,
)
def test_what_the_fast_path_is_unsure_of_goes_to_duckdb(change: dict[str, Any], tmp: Path) -> None:
    good = span_line(BASE)
    raw = span_line({**BASE, **{k: "@@" for k in change}})
    for k, v in change.items():
        text = json.dumps(v) if k != "name" else f'"{v}"'
        raw = raw.replace('"@@"', text, 1)
    path = write(tmp, f"{good}\n{raw}\n{good}\n".encode())
    assert unread(path.read_bytes()) == [1]
    both(path)


def test_numbers_enums_ids_and_values_of_every_kind(tmp: Path) -> None:
    nested = {"values": [{"stringValue": "x"}, {"intValue": "3"}, {"kvlistValue": {"values": []}}]}
    span = {
        **BASE,
        "traceId": "AB" * 16,
        "parentSpanId": "0000000000000000",
        "kind": "SPAN_KIND_CONSUMER",
        "startTimeUnixNano": 1767225600000000000,
        "endTimeUnixNano": "1767225600000000007",
        "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
        "flags": 257,
        "attributes": [
            {"key": "s", "value": {"stringValue": ""}},
            {"key": "i", "value": {"intValue": -42}},
            {"key": "i2", "value": {"intValue": "0042"}},
            {"key": "b", "value": {"boolValue": False}},
            {"key": "d", "value": {"doubleValue": 1e-7}},
            {"key": "d2", "value": {"doubleValue": 3}},
            {"key": "z", "value": {"bytesValue": base64.b64encode(b"\x00\xff").decode()}},
            {"key": "a", "value": {"arrayValue": nested}},
            {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "k", "value": {}}]}}},
            {"key": "none", "value": {}},
        ],
        "events": [{"name": "e", "attributes": []}, {"timeUnixNano": "5"}],
        "links": [{"traceId": "12" * 16, "spanId": "34" * 8, "traceState": "t=1"}],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"intValue": "7"}}]}
    path = write(tmp, (span_line(span) + "\n" + span_line(span, **resource) + "\n").encode())
    assert unread(path.read_bytes()) == []
    table, rejects = both(path)
    row = table.to_pylist()[0]
    assert row["trace_id"] == "ab" * 16 and row["parent_span_id"] is None
    assert (row["kind"], row["status"], row["status_message"]) == ("consumer", "error", "boom")
    assert (row["start_ns"], row["end_ns"]) == (1767225600000000000, 1767225600000000007)
    values = {kv["key"]: kv["value"] for kv in row["attributes"]}
    assert values == {
        "s": "",
        "i": "-42",
        "i2": "0042",  # as the DuckDB path keeps it
        "b": "false",
        "d": "1e-07",
        "d2": "3.0",
        "z": "00ff",
        "a": '["x",3,{}]',
        "kv": '{"k":null}',
        "none": None,
    }
    assert row["events"] == [
        {"time_ns": None, "name": "e", "attributes": []},
        {"time_ns": 5, "name": None, "attributes": []},
    ]
    assert row["links"][0]["trace_state"] == "t=1"
    assert table["service"].to_pylist() == ["svc", "unknown_service"]


def test_a_mixed_chunk_keeps_line_numbers_for_its_rejects(tmp: Path) -> None:
    lines = (FIXTURES / "spans.jsonl").read_text().splitlines()
    snake = lines[1].replace('"resourceSpans"', '"resource_spans"')
    path = write(tmp, "\n".join([lines[0], "{oops", "", snake, lines[2], "[1]"]).encode() + b"\n")
    table, rejects = both(path)
    assert [r.position for r in rejects] == ["line 2", "line 6"]
    assert table.num_rows == read(FIXTURES / "spans.jsonl")[0].num_rows


def test_a_full_table_grows_and_its_document_is_scanned_again(tmp: Path) -> None:
    """More attributes than the tables were sized for: the scan stops at that document,
    restores its bytes (the escape in its name was already undone in place), the full table
    doubles, and the scan starts again at that document, as many times as it takes."""
    many = [{"key": f"k{i}", "value": {}} for i in range(5000)]
    events = [{"name": "e", "attributes": many[:1500]}, {"attributes": many[1500:3000]}]
    span = {**BASE, "name": "X", "attributes": many, "events": events}
    big = span_line(span).replace('"X"', '"a\\\\u0041"')  # JSON for the text a\\u0041
    small = span_line(BASE)
    data = "\n".join([small, "{oops", big, small]).encode() + b"\n"
    scanner = Scanner()
    size = len(data)  # the tables spans() starts from:
    sized = [1024 if 1024 * per >= size else size // per + 64 for per in BYTES_PER_ROW]
    scanned = scanner.spans(data, _line_offsets(data, len(data), False))
    assert scanned is not None and scanned[0] is not None
    assert np.flatnonzero(scanned[1]).tolist() == [1]
    grown = [len(t) for t in scanner.tabs]
    assert grown[SPAN_ATTRS] > sized[SPAN_ATTRS] and grown[EVENT_ATTRS] > 2 * sized[EVENT_ATTRS]
    rows = scanned[0].to_pylist()
    assert [r["name"] for r in rows] == ["n", "a\\u0041", "n"]
    assert [len(r["attributes"]) for r in rows] == [0, 5000, 0]
    table, rejects = both(write(tmp, data))
    assert table.to_pylist() == rows and [r.position for r in rejects] == ["line 2"]


def test_a_scanner_reuses_its_buffer_but_not_under_a_table_that_shows_it() -> None:
    """The scan edits a copy of each chunk, kept for the next chunk; the table of the first
    chunk does not change when the second is scanned."""
    scanner = Scanner()
    first = (span_line({**BASE, "name": "X"}).replace('"X"', '"caf\\u00e9"') + "\n").encode()
    second = (span_line({**BASE, "name": "other", "spanId": "ef" * 8}) + "\n").encode()
    one = scanner.spans(first, _line_offsets(first, len(first), False))
    assert one is not None and one[0] is not None
    kept = one[0].to_pylist()
    buffer = scanner.scratch
    two = scanner.spans(second, _line_offsets(second, len(second), False))
    assert two is not None and two[0] is not None
    assert scanner.scratch is buffer and one[0].to_pylist() == kept
    assert kept[0]["name"] == "caf\u00e9" and two[0]["name"].to_pylist() == ["other"]
    buf = scanner.scratch[: len(second)]
    shows = pa.table(
        {
            "x": pa.StringArray.from_buffers(
                1, pa.py_buffer(np.array([0, 3], np.int32)), pa.py_buffer(buf)
            )
        }
    )
    assert _points_into(shows, buf) and not _points_into(two[0], buf)


# --------------------------------------------------------------------------- random messages

texts = st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"), max_size=10)
keys = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"),
    min_size=1,
    max_size=8,
)
ids16 = st.binary(min_size=16, max_size=16).filter(any)
ids8 = st.binary(min_size=8, max_size=8).filter(any)
times = st.integers(0, 2**63 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(
    st.none(),
    st.builds(lambda v: AnyValue(string_value=v), texts),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), floats),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=6)),
)


def any_values() -> st.SearchStrategy[AnyValue | None]:
    def nest(inner: st.SearchStrategy[AnyValue | None]) -> st.SearchStrategy[AnyValue]:
        def array(vs: list[AnyValue | None]) -> AnyValue:
            out = AnyValue()
            out.array_value.values.extend(v or AnyValue() for v in vs)
            return out

        def kvlist(ps: list[tuple[str, AnyValue | None]]) -> AnyValue:
            out = AnyValue()
            out.kvlist_value.values.extend(KeyValue(key=k, value=v or AnyValue()) for k, v in ps)
            return out

        return st.one_of(
            st.builds(array, st.lists(inner, max_size=3)),
            st.builds(kvlist, st.lists(st.tuples(keys, inner), max_size=3)),
        )

    return st.recursive(scalars, nest, max_leaves=5)


attribute_lists = st.lists(
    st.builds(
        lambda k, v: KeyValue(key=k) if v is None else KeyValue(key=k, value=v), keys, any_values()
    ),
    max_size=3,
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(ids16),
        span_id=draw(ids8),
        parent_span_id=draw(st.one_of(st.just(b""), st.just(bytes(8)), ids8)),
        trace_state=draw(texts),
        name=draw(texts),
        kind=cast(Any, draw(st.integers(0, 7))),  # 6 and 7 are no kinds
        start_time_unix_nano=draw(times),
        end_time_unix_nano=draw(times),
        flags=draw(st.integers(0, 2**32 - 1)),
    )
    span.attributes.extend(draw(attribute_lists))
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(time_unix_nano=draw(times), name=draw(texts))
        event.attributes.extend(draw(attribute_lists))
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(trace_id=draw(ids16), span_id=draw(ids8), trace_state=draw(texts))
        link.attributes.extend(draw(attribute_lists))
    if draw(st.booleans()):
        span.status.code = cast(Any, draw(st.integers(0, 3)))
        span.status.message = draw(texts)
    return span


@st.composite
def messages(draw: st.DrawFn) -> TracesData:
    data = TracesData()  # at least one resourceSpans: "{}" is not an OTLP document
    for _ in range(draw(st.integers(1, 3))):
        rs = ResourceSpans()
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(attribute_lists))
            if draw(st.booleans()):
                rs.resource.attributes.add(key="service.name").value.string_value = draw(texts)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name, ss.scope.version = draw(texts), draw(texts)
            ss.spans.extend(draw(st.lists(spans(), max_size=3)))
        data.resource_spans.append(rs)
    return data


def hex_ids(value: Any, upper: bool) -> Any:
    """MessageToDict's output with ids in hex, as OTLP/JSON writes them."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("traceId", "spanId", "parentSpanId"):
                v = base64.b64decode(v).hex()
                v = v.upper() if upper else v
            out[k] = hex_ids(v, upper)
        return out
    if isinstance(value, list):
        return [hex_ids(v, upper) for v in value]
    return value


def rendered(value: AnyValue | None) -> str | None:
    """An attribute value as text, from protobuf's own parse (how the readers render it)."""
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
        {"key": kv.key, "value": rendered(kv.value if kv.HasField("value") else None)} for kv in kvs
    ]


def expected_rows(data: TracesData) -> list[dict[str, Any]]:
    """The rows, from protobuf's parse, as OTLP/JSON carries them: a default (empty or
    zero) name, time or scope name is not written, so it reads as NULL."""
    out = []
    for rs in data.resource_spans:
        resource = pairs(rs.resource.attributes)
        service = next((kv for kv in rs.resource.attributes if kv.key == "service.name"), None)
        is_text = service is not None and service.value.WhichOneof("value") == "string_value"
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex() if any(s.parent_span_id) else None,
                        "trace_state": s.trace_state or None,
                        "name": s.name or None,
                        "kind": SPAN_KINDS[s.kind] if s.kind < 6 else "unspecified",
                        "service": service.value.string_value
                        if service is not None and is_text
                        else "unknown_service",
                        "start_ns": s.start_time_unix_nano or None,
                        "end_ns": s.end_time_unix_nano or None,
                        "status": SPAN_STATUSES[s.status.code] if s.status.code < 3 else "unset",
                        "status_message": s.status.message or None,
                        "scope": ss.scope.name or None,
                        "attributes": pairs(s.attributes),
                        "resource_attributes": resource,
                        "events": [
                            {
                                "time_ns": e.time_unix_nano or None,
                                "name": e.name or None,
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
@given(
    data=st.lists(messages(), min_size=1, max_size=3),
    upper=st.booleans(),
    ascii_only=st.booleans(),
)
def test_the_fast_path_agrees_with_protobuf(
    data: list[TracesData], upper: bool, ascii_only: bool, tmp: Path
) -> None:
    lines = [json.dumps(hex_ids(MessageToDict(m), upper), ensure_ascii=ascii_only) for m in data]
    raw = ("\n".join(lines) + "\n").encode()
    assert unread(raw) == []
    want = [row for m in data for row in expected_rows(m)]
    got, rejects = read(write(tmp, raw))
    assert rejects == []
    assert got.to_pylist() == want
