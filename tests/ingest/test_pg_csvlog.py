"""pg_csvlog on csvlogs written by a real PostgreSQL 15 (tests/fixtures/make_pglogs.py).

The 23- and 24-column files (PostgreSQL 12 and 13) are the same run's 26-column csvlog with
the columns those versions lacked dropped (see tests/fixtures/pglogs/README.md).
"""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest
import zstandard

import latkit
from latkit.ingest import LoadError, pg_csvlog

PGLOGS = Path(__file__).resolve().parents[1] / "fixtures" / "pglogs"
EXPECTED = json.loads((PGLOGS / "expected.json").read_text())

SUMMARY = """
    select count(*), round(sum(duration_ms), 6), count(phase_ms), count(parameters),
           count(distinct session_id), count(distinct fingerprint)
    from queries
"""


def load(path: Path | str, **options: object) -> latkit.Workbook:
    wb = latkit.open()
    wb.load(path, **options)
    return wb


@pytest.fixture(scope="module")
def main() -> latkit.Workbook:
    return load(PGLOGS / "main.csv.gz")


def test_sniff_reads_the_column_count() -> None:
    for name in ("main.csv.gz", "main_pg12.csv.gz", "main_pg13.csv.gz"):
        assert pg_csvlog.sniff(gzip.decompress((PGLOGS / name).read_bytes())[:65536])
    assert not pg_csvlog.sniff((PGLOGS / "main.log").read_bytes()[:65536])
    assert not pg_csvlog.sniff(b"2026-01-01 00:00:00 UTC,a,b\n")


def test_the_workload_is_read(main: latkit.Workbook) -> None:
    n = main.sql("select count(*) from queries "
                 "where statement like 'SELECT * FROM orders WHERE id = %'").item()
    assert n == EXPECTED["orders_by_id"]
    multiline = main.sql("select statement from queries where statement like '%customer_id,%'")
    assert multiline.item() == EXPECTED["multiline"]
    # the server's own session ids and names, as the csvlog carries them
    row = main.sql("select user_name, database, application, client from queries "
                   "where statement like 'SELECT 40 AS answer;'").row(0)
    assert row == ("postgres", "shop_main", "short", "[local]")


def test_line_is_where_the_record_starts(main: latkit.Workbook) -> None:
    text = gzip.decompress((PGLOGS / "main.csv.gz").read_bytes()).decode().splitlines()
    for line, statement in main.sql("select line, statement from queries").rows():
        first = statement.splitlines()[0].replace('"', '""')
        assert first in text[line - 1], (line, statement)


def test_23_24_and_26_columns_give_the_same_rows(main: latkit.Workbook) -> None:
    for name in ("main_pg12.csv.gz", "main_pg13.csv.gz"):
        assert load(PGLOGS / name).sql(SUMMARY).row(0) == main.sql(SUMMARY).row(0)


def test_csvlog_and_stderr_of_one_run_agree(main: latkit.Workbook) -> None:
    stderr = load(PGLOGS / "main.log")
    assert stderr.sql(SUMMARY).row(0) == main.sql(SUMMARY).row(0)
    conns = "select event, pid, session_ms from connections order by all"
    assert stderr.sql(conns).rows() == main.sql(conns).rows()


def test_log_statement_all_and_pgbench(main: latkit.Workbook) -> None:
    wb = load(PGLOGS / "statements.csv.gz")
    assert wb.sql("select count(*) - count(duration_ms) from queries").item() == 47
    bench = load(PGLOGS / "pgbench.csv.gz")
    shapes = bench.sql("""select count(distinct fingerprint), count(*) from queries
                          where statement like 'UPDATE pgbench_accounts SET abalance%'""")
    assert shapes.row(0) == (1, 300)


@pytest.mark.parametrize("suffix", ["", ".bz2", ".zst"])
def test_compressed_csvlogs_load_the_same(main: latkit.Workbook, tmp_path: Path,
                                          suffix: str) -> None:
    # DuckDB reads gzip and zstd itself; bz2 is decompressed to a temporary file first
    raw = gzip.decompress((PGLOGS / "main.csv.gz").read_bytes())
    packed = {"": raw, ".bz2": bz2.compress(raw),
              ".zst": zstandard.ZstdCompressor().compress(raw)}[suffix]
    path = tmp_path / f"main.csv{suffix}"
    path.write_bytes(packed)
    assert load(path).sql(SUMMARY).row(0) == main.sql(SUMMARY).row(0)


def test_small_batches_give_the_same_rows(main: latkit.Workbook) -> None:
    wb = load(PGLOGS / "main.csv.gz", batch_rows=7, overlap=2)
    assert wb.sql(SUMMARY).row(0) == main.sql(SUMMARY).row(0)


def test_a_malformed_record_goes_to_rejects(tmp_path: Path) -> None:
    text = gzip.decompress((PGLOGS / "main.csv.gz").read_bytes()).decode()
    lines = text.splitlines(keepends=True)
    bad = tmp_path / "bad.csv"
    # the first records are one line each (a record with a plan spans many)
    bad.write_text("".join(lines[:5]) + "2026-11-28 00:29:16.000 UTC,only,three\n"
                   + "".join(lines[5:]))
    wb = latkit.open()
    report = wb.load(bad)
    assert report.rejected == 1
    assert wb.sql("select position from rejects").item() == "line 6"
    assert report.rows["queries"] == 104
    assert report.loaded + report.duplicates + report.rejected == report.read


def test_an_unknown_column_count_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text('2026-11-28 00:29:16.000 UTC,"postgres",' + ",x" * 30 + "\n")
    with pytest.raises(LoadError):
        latkit.open().load(odd, format="pg_csvlog")
