"""Fuzzing every reader through ``latkit.open().load(path)``: hostile input never crashes a load.

The corpus is the real files under ``tests/fixtures`` (made by real producers), mutated:
truncated, bit-flipped, spliced with another file, re-encoded (UTF-16, Latin-1, a BOM), with
bytes inserted, deleted or repeated, numbers made huge, then maybe compressed (or compressed
and cut), and loaded either with its format detected or forced to some reader's format (a
file of another format). Whatever happens, a load either

- raises ``latkit.LoadError`` naming the file, leaving the workbook as it was, or
- returns a ``LoadReport`` that adds up (loaded + duplicates + rejected == read) and matches
  what the workbook recorded (``loads``, ``rejects``, the rows of each table).

A reader that crashes is wrapped by the workbook as "<format> reader failed: ..."; that is
still a ``LoadError``, but it loses the whole file, so it counts as a bug here too.

The short run (a deterministic ~100 cases) is part of the normal suite; the long run
(10,000 cases, ``pytest -m long tests/test_fuzz.py``) is marked ``long``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import struct
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import latkit
from latkit import schema
from latkit.ingest import Source, input_errors, readers
from latkit.workbook import MAX_REJECTS_STORED

FIXTURES = Path(__file__).parent / "fixtures"
FORMATS = sorted(m.FORMAT for m in readers())


def _corpus() -> dict[str, bytes]:
    """Every fixture made by a real producer, decompressed."""
    out = {}
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file() and path.suffix not in (".py", ".md") and path.name != "expected.json":
            with Source.of(path).open() as f:
                out[str(path.relative_to(FIXTURES))] = f.read()
    return out


CORPUS = _corpus()
NAMES = sorted(CORPUS)

# --- mutations ------------------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]


def _at(draw: Draw, data: bytes) -> int:
    return int(draw(st.integers(0, max(len(data) - 1, 0))))


def _truncate(draw: Draw, data: bytes) -> bytes:
    return data[: _at(draw, data)]


def _flip(draw: Draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(int(draw(st.integers(1, 8)))):
        if out:
            out[_at(draw, data)] ^= 1 << int(draw(st.integers(0, 7)))
    return bytes(out)


def _splice(draw: Draw, data: bytes) -> bytes:
    other = CORPUS[str(draw(st.sampled_from(NAMES)))]
    return data[: _at(draw, data)] + other[_at(draw, other) :]


def _reencode(draw: Draw, data: bytes) -> bytes:
    text = data.decode("utf-8", "replace")
    encoding = str(draw(st.sampled_from(["utf-16", "utf-16-be", "latin-1", "cp1252", "utf-8-sig"])))
    return text.replace("e", "é").encode(encoding, "replace")


def _insert(draw: Draw, data: bytes) -> bytes:
    i = _at(draw, data)
    return data[:i] + bytes(draw(st.binary(min_size=1, max_size=64))) + data[i:]


def _delete(draw: Draw, data: bytes) -> bytes:
    i = _at(draw, data)
    return data[:i] + data[i + int(draw(st.integers(1, 200))) :]


def _repeat(draw: Draw, data: bytes) -> bytes:
    i, j = sorted((_at(draw, data), _at(draw, data)))
    return data[:j] + data[i:j] * int(draw(st.integers(1, 3))) + data[j:]


def _huge_number(draw: Draw, data: bytes) -> bytes:
    digits = [i for i in range(len(data)) if 48 <= data[i] <= 57][:2000]
    if not digits:
        return data
    i = int(draw(st.sampled_from(digits)))
    big = str(draw(st.sampled_from(["99999999999999999999999", "-9223372036854775809", "1e999"])))
    return data[:i] + big.encode() + data[i:]


MUTATIONS = [_truncate, _flip, _splice, _reencode, _insert, _delete, _repeat, _huge_number]


def _pack(draw: Draw, data: bytes) -> bytes:
    how = draw(st.sampled_from(["plain", "plain", "plain", "gzip", "zstd", "bz2", "cut gzip"]))
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if how == "bz2":
        return bz2.compress(data)
    if how == "cut gzip":
        packed = gzip.compress(data, mtime=0)
        return packed[: _at(draw, packed)]
    return data


class Case:
    """A mutated file: what was done, its bytes, the format to force (None: detect).

    Not a dataclass: hypothesis would print every byte of a failing case."""

    def __init__(self, what: str, data: bytes, fmt: str | None):
        self.what, self.data, self.fmt = what, data, fmt

    def __repr__(self) -> str:  # short: hypothesis prints it for a failing case
        digest = hashlib.sha256(self.data).hexdigest()[:12]
        return f"Case({self.what!r}, {len(self.data)} bytes sha256 {digest}, fmt={self.fmt!r})"


@st.composite
def mutated(draw: Draw) -> Case:
    """A real file, mutated one to three times, maybe compressed, maybe forced to a format."""
    name = str(draw(st.sampled_from(NAMES)))
    data = CORPUS[name]
    steps = []
    for _ in range(int(draw(st.integers(1, 3)))):
        mutation = draw(st.sampled_from(MUTATIONS))
        data = mutation(draw, data)
        steps.append(mutation.__name__.lstrip("_"))
    data = _pack(draw, data)
    fmt = draw(st.none() | st.sampled_from(FORMATS))
    return Case(f"{name}: {', '.join(steps)}", data, fmt)



# --- the property ---------------------------------------------------------------------------

_numbers = count()


def load_and_check(folder: Path, data: bytes, fmt: str | None) -> latkit.LoadReport | None:
    """Load ``data`` as a file into a fresh workbook; check the outcome (see the module doc)."""
    path = folder / f"case{next(_numbers)}.bin"
    path.write_bytes(data)
    wb = latkit.open()
    try:
        try:
            report = wb.load(path, format=fmt) if fmt else wb.load(path)
        except latkit.LoadError as e:
            message = str(e)
            assert "reader failed" not in message, message
            assert path.name in message or (fmt is None and not data) or "format" in message
            assert not any(wb.counts().values()), "a refused file left rows behind"
            assert wb.sql("select count(*) as n from loads")["n"][0] == 0
            return None
        assert_adds_up(wb, report)
        return report
    finally:
        wb.close()
        path.unlink()


def assert_adds_up(wb: latkit.Workbook, report: latkit.LoadReport) -> None:
    """Every file of the report adds up, and the workbook recorded exactly that."""
    assert report.loaded + report.duplicates + report.rejected == report.read
    for f in report.files:
        assert f.loaded + f.duplicates + f.rejected == f.read, f
        if f.note is not None:
            continue
        (row,) = wb.con.execute(
            "SELECT load_id, read, rejected, duplicates, rows FROM loads WHERE path = ?",
            [f.path],
        ).fetchall()
        load_id, read, rejected, duplicates, rows = row
        assert (read, rejected, duplicates) == (f.read, f.rejected, f.duplicates)
        assert {t: n for t, n in dict(rows).items() if n} == {t: n for t, n in f.rows.items() if n}
        for table in schema.DATA_TABLES:
            (stored,) = wb.con.execute(
                f"SELECT count(*) FROM {table} WHERE load_id = ?", [load_id]
            ).fetchall()[0]
            assert stored == f.rows.get(table, 0), table
        (kept,) = wb.con.execute(
            "SELECT count(*) FROM rejects WHERE load_id = ?", [load_id]
        ).fetchall()[0]
        assert kept == min(f.rejected, MAX_REJECTS_STORED)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module (hypothesis does not mix with function-scoped fixtures)."""
    return tmp_path_factory.mktemp("fuzz")


_SHORT = settings(
    max_examples=100,
    derandomize=True,  # the normal suite runs the same cases every time
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_SHORT
@given(case=mutated())
def test_a_mutated_real_file_loads_or_is_refused_cleanly(folder: Path, case: Case) -> None:
    load_and_check(folder, case.data, case.fmt)


@pytest.mark.long
@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutated())
def test_long_run_of_mutated_real_files(folder: Path, case: Case) -> None:
    load_and_check(folder, case.data, case.fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=15, derandomize=True, database=None, deadline=None)
@given(data=st.binary(min_size=1, max_size=2048))
def test_random_bytes_forced_through_each_reader_are_refused_or_rejected(
    folder: Path, fmt: str, data: bytes
) -> None:
    load_and_check(folder, data, fmt)


# --- what the fuzzer found (regressions) ----------------------------------------------------


@pytest.mark.parametrize(
    "name", ["pglogs/main.log", "pgplans/several.json", "pgplans/pgbouncer.log"]
)
def test_a_cut_gzip_keeps_what_came_before_and_rejects_the_break(folder: Path, name: str) -> None:
    # Found: pg_stderr, pg_explain and pgbouncer let gzip's EOFError escape as a reader
    # failure, losing the whole file. Now the break is one reject naming its byte offset.
    packed = gzip.compress(CORPUS[name] * 40, mtime=0)
    report = load_and_check(folder, packed[: len(packed) * 3 // 4], None)
    if report is not None:  # pg_explain reads whole: nothing readable is a clear LoadError
        assert report.rejected >= 1 and report.loaded > 0


def test_a_csvlog_gzip_that_breaks_off_is_a_reject_not_a_crash(folder: Path) -> None:
    # Found by the long run: DuckDB's "Unexpected end of GZIP stream" escaped pg_csvlog as a
    # reader failure. Now it is a reject (DuckDB reads ahead, so a small file may have no
    # batch before the break: then "nothing readable", naming the break).
    packed = gzip.compress(CORPUS["pglogs/pgbench.csv.gz"] * 20, mtime=0)
    report = load_and_check(folder, packed[: len(packed) * 2 // 3], None)
    assert report is None or report.rejected >= 1


def test_a_spliced_csvlog_is_read_with_rejects_not_refused(folder: Path) -> None:
    # Found: a csvlog cut and joined mid-record made DuckDB's CSV sniffer give up on the
    # whole file ("not possible to automatically detect the CSV parsing dialect").
    a, b = CORPUS["pglogs/main_pg12.csv.gz"], CORPUS["pglogs/pgbench.csv.gz"]
    report = load_and_check(folder, gzip.compress(a[: len(a) // 2] + b[len(b) // 3 :]), None)
    assert report is not None and report.loaded > 0


def test_a_frame_length_of_4_gb_is_a_reject_at_its_offset(folder: Path) -> None:
    good = CORPUS["otlp/framed.pb"]
    report = load_and_check(folder, good + struct.pack(">I", 0xFFFF_FFF0) + b"\x0a\x00", None)
    assert report is not None
    assert report.rejected == 1 and report.loaded > 0


def test_a_timestamp_out_of_nanosecond_range_is_null_not_a_crash(folder: Path) -> None:
    # Found by the long run: a bit flip turned 2026 into 9026, past what epoch nanoseconds
    # hold, and DuckDB's conversion error failed the whole csvlog.
    text = CORPUS["pglogs/main.csv.gz"].replace(b"2026-", b"9026-", 3)
    report = load_and_check(folder, text, None)
    assert report is not None and report.loaded > 0


def test_a_duckdb_error_quoting_a_cut_character_is_a_reject_not_a_crash(folder: Path) -> None:
    # Found by the long run: a protobuf file re-encoded with é everywhere, forced through the
    # Jaeger reader. DuckDB's "Malformed JSON" message quotes the input cut mid-character,
    # the binding raised UnicodeDecodeError decoding that message, and the reader failed.
    text = CORPUS["otlp/framed.pb"].decode("utf-8", "replace").replace("e", "é")
    assert load_and_check(folder, text.encode("utf-8-sig"), "jaeger_json") is None



def test_input_errors_makes_an_undecodable_duckdb_message_a_duckdb_error() -> None:
    # What the binding raises for such a message; every reader that queries its input
    # through DuckDB (OTLP JSON, Zipkin, Jaeger) wraps the query in input_errors().
    cut = UnicodeDecodeError("utf-8", b"Malformed JSON at: \xc3", 19, 20, "unexpected end")
    refused = pytest.raises(duckdb.InvalidInputException, match="Malformed JSON at: \ufffd")
    with refused, input_errors():
        raise cut
