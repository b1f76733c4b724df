"""Reliability: absurd sizes, interrupted loads, reading while another process loads, SQL safety.

- Absurd sizes are refused with a clear ``LoadError`` (file, ratio, line or offset), never by
  running out of memory: a decompression bomb, a protobuf frame of 4 GB, JSON nested 100,000
  deep, a "line" of hundreds of megabytes.
- A load killed half-way (SIGKILL, or Ctrl-C's SIGINT) leaves the workbook as it was before
  that file: each file is loaded in one DuckDB transaction, and ``loads`` is written in it.
- Reading while another process loads: DuckDB lets one process write a database file, or
  several read it, not both. A notebook opens the workbook ``read_only=True`` and retries
  while the loader holds the file (``WorkbookError`` names the lock); it sees every file that
  was committed before it opened.
- Every user-supplied value is bound as a parameter (file paths, service and route names).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import zstandard

import latkit
from latkit import ingest
from latkit.ingest import otlp_json, pg_explain, pg_messages, zipkin

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parents[1]

# --- absurd sizes ---------------------------------------------------------------------------

ZEROS = b"\0" * (256 << 20)


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("bomb.log.gz", lambda b: gzip.compress(b, 9)),
        ("bomb.csv.zst", zstandard.compress),
        ("bomb.jsonl.bz2", bz2.compress),
    ],
)
def test_a_decompression_bomb_is_refused_naming_the_file_and_the_ratio(
    tmp_path: Path, name: str, pack: object
) -> None:
    heads = {
        "bomb.log.gz": (FIXTURES / "pglogs/main.log").read_bytes()[:2000],
        "bomb.csv.zst": gzip.decompress((FIXTURES / "pglogs/main.csv.gz").read_bytes())[:3000],
        "bomb.jsonl.bz2": b'{"resourceSpans":[]}\n',
    }
    path = tmp_path / name
    path.write_bytes(pack(heads[name] + ZEROS))  # type: ignore[operator]
    wb = latkit.open()
    with pytest.raises(latkit.LoadError, match=rf"{name}: refused: .*:1; the limit is 500:1"):
        wb.load(path)
    assert not any(wb.counts().values())


def test_a_protobuf_frame_claiming_4_gb_is_refused_at_its_offset(tmp_path: Path) -> None:
    good = (FIXTURES / "otlp/framed.pb").read_bytes()
    path = tmp_path / "frames.pb"
    path.write_bytes(good + struct.pack(">I", 0xFFFF_FFF0) + b"\x0a\x02\x0a\x00")
    wb = latkit.open()
    report = wb.load(path)
    assert report.rejected == 1 and report.loaded > 0
    (position, reason) = wb.con.execute("select position, reason from rejects").fetchall()[0]
    assert position == f"byte {len(good)}"
    assert "frame length 4294967280 is over" in reason


def test_a_protobuf_frame_claiming_4_gb_alone_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "frame.pb"
    path.write_bytes(struct.pack(">I", 0xFFFF_FFF0) + b"\x0a\x00")
    with pytest.raises(latkit.LoadError, match="frame.pb"):
        latkit.open().load(path, format="otlp_proto")


DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_100000_deep_in_an_explain_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('[{"Plan": {"Node Type": "Seq Scan", "x": ' + DEEP + "}}]")
    with pytest.raises(latkit.LoadError, match=r"deep.json: .*line 1 is nested too deeply"):
        latkit.open().load(path)


def test_json_nested_100000_deep_in_an_auto_explain_plan_is_kept_as_text(tmp_path: Path) -> None:
    head = (FIXTURES / "pglogs/main.log").read_text().splitlines(keepends=True)[:20]
    plan = '{"Query Text": "select 1", "Plan": {"Node Type": "Result", "x": ' + DEEP + "}}"
    path = tmp_path / "deep.log"
    path.write_text(
        "".join(head)
        + f"2026-01-01 00:00:00.000 UTC [77] LOG:  duration: 1.0 ms  plan:\n\t{plan}\n"
    )
    wb = latkit.open()
    report = wb.load(path)
    assert report.loaded + report.rejected == report.read
    assert wb.sql("select count(*) as n from plans where length(plan) > 200000")["n"][0] == 1


@pytest.mark.parametrize(
    "document",
    [
        '{"resourceSpans":' + DEEP + "}",
        '[{"traceId":"0123456789abcdef","id":"0123456789abcdef","x":' + DEEP + "}]",
        '{"data":[{"traceID":"ab","spans":' + DEEP + "}]}",
    ],
)
def test_json_nested_100000_deep_in_traces_is_no_crash(tmp_path: Path, document: str) -> None:
    path = tmp_path / "deep.json"
    path.write_text(document)
    try:
        report = latkit.open().load(path)
    except latkit.LoadError as e:
        assert "deep.json: nothing readable" in str(e)
    else:
        assert report.loaded + report.rejected == report.read


@pytest.mark.parametrize(
    ("module", "name", "data"),
    [
        (otlp_json, "one.jsonl", b'{"resourceSpans":[{"x":"' + b"a" * 5000 + b'"}]}'),
        (
            zipkin,
            "one.json",
            b'[{"traceId":"0123456789abcdef","id":"0123456789abcdef","x":"' + b"a" * 5000 + b'"}]',
        ),
        (pg_messages, "one.log", b"2026-01-01 00:00:00.000 UTC [7] LOG:  " + b"a" * 5000),
        (pg_explain, "one.json", b'[{"Plan": {"Node Type": "Result", "x": "' + b"a" * 5000),
    ],
)
def test_a_record_too_big_to_read_whole_is_refused_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: object, name: str, data: bytes
) -> None:
    # MAX_RECORD_BYTES (512 MiB) scaled down: the same code path, without the 512 MiB.
    monkeypatch.setattr(module, "MAX_RECORD_BYTES", 4096)
    path = tmp_path / name
    path.write_bytes(data * 3)
    with pytest.raises(latkit.LoadError, match=rf"{name}: .*more than 4,096 bytes"):
        latkit.open().load(path, chunk_bytes=1024) if module is not pg_explain else (
            latkit.open().load(path)
        )


def test_the_ratio_guard_leaves_ordinary_compressed_files_alone() -> None:
    assert ingest.MAX_RATIO >= 100
    report = latkit.open().load(FIXTURES / "pglogs")
    assert report.loaded > 0


# --- interrupted loads ----------------------------------------------------------------------

LOADER = """
import sys
import latkit
wb = latkit.open(sys.argv[1])
wb.load(sys.argv[2])
print("loading", flush=True)
wb.load(sys.argv[3])
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real log, repeated to ~40 MB: seconds to load, long enough to interrupt."""
    path = tmp_path_factory.mktemp("big") / "big.log"
    block = (FIXTURES / "pglogs/main.log").read_bytes()
    path.write_bytes(block * (40_000_000 // len(block)))
    return path


def start_loading(db: Path, big: Path) -> subprocess.Popen[str]:
    """A process that loads a small file (committed), then ``big``; returns once it is
    loading ``big``."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOADER, str(db), str(FIXTURES / "otlp/framed.pb"), str(big)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "loading"
    time.sleep(1.0)
    assert child.poll() is None, "the load finished before it could be interrupted"
    return child


def finish(child: subprocess.Popen[str], timeout: float) -> int:
    """Wait for ``child``; its exit code (its pipe closed)."""
    with child:
        return child.wait(timeout=timeout)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_load_records_nothing_of_the_file_and_loading_again_completes_it(
    tmp_path: Path, big_log: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "case.duckdb"
    child = start_loading(db, big_log)
    child.send_signal(sig)
    assert finish(child, 120) != 0
    with latkit.open(db) as wb:  # opens: DuckDB replays only committed transactions
        assert wb.sql("select path from loads")["path"].to_list() == [
            str(FIXTURES / "otlp/framed.pb")
        ]
        assert wb.counts()["queries"] == wb.counts()["connections"] == 0
        assert wb.sql("select count(*) as n from rejects")["n"][0] == 0
        report = wb.load(big_log)
        assert report.files[0].note is None and report.loaded > 0
        assert wb.counts()["queries"] == report.rows["queries"]
        assert len(wb.sql("select * from loads")) == 2


# --- reading while another process loads ----------------------------------------------------


def test_a_reader_waits_for_the_loader_then_sees_every_committed_file(
    tmp_path: Path, big_log: Path
) -> None:
    # DuckDB: one process writes a database file, or several read it; never both at once.
    # So a notebook opens the workbook read_only and, while a loader holds it, gets a
    # WorkbookError naming the lock: it retries (or reads a copy made between loads).
    db = tmp_path / "case.duckdb"
    child = start_loading(db, big_log)
    with pytest.raises(latkit.WorkbookError, match="lock"):
        latkit.open(db, read_only=True)
    assert finish(child, 600) == 0
    deadline = time.monotonic() + 30
    while True:
        try:
            wb = latkit.open(db, read_only=True)
            break
        except latkit.WorkbookError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with wb:
        assert len(wb.sql("select * from loads")) == 2
        assert wb.counts()["queries"] > 0


# --- SQL safety -----------------------------------------------------------------------------

EVIL = "x'; DROP TABLE spans; --"


def make_evil_traces(path: Path) -> Path:
    """Spans whose service, route and names are SQL injection attempts (SDK-made)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": EVIL}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("evil")
    for _ in range(3):
        with tracer.start_as_current_span(EVIL, kind=SpanKind.SERVER) as server:
            server.set_attributes({"http.route": f'/o/"{EVIL}', "http.request.method": "GET"})
            with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as db:
                db.set_attributes({"db.system": "postgresql", "db.statement": "SELECT 1"})
    provider.shutdown()
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    path.write_bytes(struct.pack(">I", len(body)) + body)
    return path


def test_injection_through_file_paths_service_and_route_names_and_arguments(
    tmp_path: Path,
) -> None:
    from latkit.analysis import budget, cache, indexes

    folder = tmp_path / 'it\'s "quoted"; DROP TABLE spans; --'
    folder.mkdir()
    wb = latkit.open(tmp_path / "case.duckdb")
    report = wb.load(make_evil_traces(folder / f"{EVIL}.pb"))
    csv = folder / "o'brien.csv"
    csv.write_bytes((FIXTURES / "pgplans/statements_pg17.csv").read_bytes())
    report = wb.load(csv)
    assert report.loaded > 0
    spans = wb.counts()["spans"]
    assert spans == 6
    assert wb.sql("select distinct service from spans")["service"].to_list() == [EVIL]
    assert wb.sql("select count(*) as n from loads where path like ?", [f"%{EVIL}%"])["n"][0]

    by_service = budget.breakdown(wb, service=EVIL, route=f'/o/"{EVIL}')
    assert set(by_service["service"]) == {EVIL}
    assert budget.per_request(wb, service=EVIL).height == 3
    for attempt in (EVIL, "' OR '1'='1", '"; DROP TABLE spans; --'):
        assert budget.per_request(wb, service=attempt, route=attempt).height == 0
        assert budget.trace_spans(wb, attempt).height == 0
        for call, kwargs in (
            (budget.by_route, {"every": attempt}),
            (cache.hit_rates, {"by": attempt}),
            (indexes.top_queries, {"by": attempt}),
        ):
            # Refused as a bad argument is fine, as long as nothing of it ran as SQL.
            with contextlib.suppress(ValueError, duckdb.Error):
                call(wb, **kwargs)  # type: ignore[operator]
        assert wb.counts()["spans"] == spans
    assert "spans" in set(wb.sql("select table_name from duckdb_tables()")["table_name"])
