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
import gzip
import struct
from pathlib import Path

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
