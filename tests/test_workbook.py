"""The workbook: opening, persisting, schema versions, and what load does with paths."""

from __future__ import annotations
import __future__

import gzip
import shutil
import time
import types
import weakref
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import latkit
from latkit import schema

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"


def test_public_names_match_all() -> None:
    public = {
        name
        for name, value in vars(latkit).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules, once imported
        and not isinstance(value, __future__._Feature)  # from __future__ import annotations
    }
    assert public | {"__version__"} == set(latkit.__all__)


def test_open_creates_every_canonical_table() -> None:
    wb = latkit.open()
    tables = set(wb.sql("select table_name from duckdb_tables()")["table_name"])
    assert set(schema.TABLES) <= tables
    assert wb.counts() == {t: 0 for t in schema.DATA_TABLES}


def test_has_rows_says_which_tables_hold_rows() -> None:
    wb = latkit.open()
    assert not any(wb.has_rows(t) for t in schema.DATA_TABLES)
    wb.load(FIXTURES / "framed.pb")
    assert [t for t in schema.DATA_TABLES if wb.has_rows(t)] == ["spans"]
    with pytest.raises(ValueError, match="'loads'"):
        wb.has_rows("loads")


def test_workbook_file_persists_and_records_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "case.duckdb"
    with latkit.open(path) as wb:
        wb.con.execute("insert into spans (trace_id, span_id) values ('a', 'b')")
    with latkit.open(path, read_only=True) as wb:
        assert wb.counts()["spans"] == 1
        version = wb.sql("select value from meta where key = 'schema_version'")["value"][0]
        assert int(version) == schema.SCHEMA_VERSION


def test_open_applies_memory_limit_to_the_workbook(tmp_path: Path) -> None:
    for where in (None, tmp_path / "capped.duckdb"):
        with latkit.open(where, memory_limit="300MB") as wb:
            setting = wb.sql("select current_setting('memory_limit') as m")["m"][0]
            assert setting == "286.1 MiB"  # 300,000,000 bytes


def test_open_refuses_a_memory_limit_that_is_not_a_size() -> None:
    with pytest.raises(ValueError, match="memory_limit 'lots'"):
        latkit.open(memory_limit="lots")


def test_a_load_on_disk_checkpoints_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checkpointed, the rows are in the file and the write-ahead log holds only the last
    # bookkeeping; not, it holds every row of the load (a small file's inserts go there).
    log = Path(__file__).parent / "fixtures" / "pglogs" / "main.log"
    wal = {}
    for every in (1, 1 << 40):
        monkeypatch.setattr(latkit.workbook, "CHECKPOINT_BYTES", every)
        with latkit.open(tmp_path / f"every{every}.duckdb") as wb:
            report = wb.load(log)
            assert report.rows["queries"] == wb.counts()["queries"] > 0
            wal[every] = Path(f"{wb.path}.wal").stat().st_size
    assert wal[1] < wal[1 << 40] / 4


class _Batch:
    """Stands in for a reader's batch, which can be 100 MB of Arrow."""


def test_prefetch_keeps_no_batch_it_has_handed_on() -> None:
    alive: weakref.WeakSet[_Batch] = weakref.WeakSet()

    def batches() -> Iterator[_Batch]:
        for _ in range(50):
            batch = _Batch()
            alive.add(batch)
            yield batch

    seen = 0
    for batch in latkit.workbook._prefetch(batches()):
        seen += 1
        time.sleep(0.01)  # a slow insert: the reader runs as far ahead as it may
        assert len(alive) <= 3  # this one, one waiting, one being made
        del batch
    assert seen == 50


def test_newer_workbook_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    latkit.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("update meta set value = '999' where key = 'schema_version'")
    con.close()
    with pytest.raises(latkit.WorkbookError, match="newer latkit.*upgrade latkit"):
        latkit.open(path)


def test_older_workbook_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.duckdb"
    latkit.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("update meta set value = '0' where key = 'schema_version'")
    con.execute("alter table spans drop column cache_hit")
    con.close()
    monkeypatch.setitem(
        latkit.workbook.MIGRATIONS, 0, ("alter table spans add column cache_hit boolean",)
    )
    with pytest.raises(latkit.WorkbookError, match="open it once without read_only"):
        latkit.open(path, read_only=True)
    with latkit.open(path) as wb:
        assert "cache_hit" in wb.sql("select * from spans").columns
    with latkit.open(path, read_only=True) as wb:
        assert wb.counts()["spans"] == 0


def test_foreign_duckdb_file_is_not_taken_for_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table orders (id int)")
    con.close()
    with pytest.raises(latkit.WorkbookError, match="not a latkit workbook"):
        latkit.open(path)


def test_read_only_workbook_refuses_loads(tmp_path: Path) -> None:
    path = tmp_path / "case.duckdb"
    latkit.open(path).close()
    with latkit.open(path, read_only=True) as wb, pytest.raises(latkit.WorkbookError):
        wb.load(FIXTURES)


def test_explicit_file_of_unknown_format_raises_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("just some notes\n")
    with pytest.raises(latkit.LoadError, match=r"notes\.txt: not a format latkit reads"):
        latkit.open().load(f)


def test_explicit_empty_file_raises(tmp_path: Path) -> None:
    f = tmp_path / "empty.jsonl"
    f.touch()
    with pytest.raises(latkit.LoadError, match="empty"):
        latkit.open().load(f)


def test_missing_path_and_unmatched_glob_raise(tmp_path: Path) -> None:
    wb = latkit.open()
    with pytest.raises(latkit.LoadError, match="no such file"):
        wb.load(tmp_path / "nope.pb")
    with pytest.raises(latkit.LoadError, match="no file matches"):
        wb.load(str(tmp_path / "*.pb"))


def test_folder_load_skips_unknown_files_and_lists_them(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "framed.pb", tmp_path / "traces.pb")
    (tmp_path / "README.md").write_text("# my traces\n")
    (tmp_path / "sub").mkdir()
    with gzip.open(tmp_path / "sub" / "more.jsonl.gz", "wb") as g:
        g.write((FIXTURES / "spans.jsonl").read_bytes())
    report = latkit.open().load(tmp_path)
    assert report.skipped == [str(tmp_path / "README.md")]
    assert {f.format for f in report.files if f.note is None} == {"otlp_proto", "otlp_json"}
    assert report.rows["spans"] > 0
    assert "README.md" in repr(report)


def test_loading_the_same_file_twice_adds_nothing(tmp_path: Path) -> None:
    wb = latkit.open()
    first = wb.load(FIXTURES / "framed.pb")
    copy = tmp_path / "copy.pb"
    shutil.copy(FIXTURES / "framed.pb", copy)
    again = wb.load(FIXTURES / "framed.pb", copy)
    assert first.rows["spans"] > 0
    assert again.rows == {}
    assert again.already_loaded == [str(FIXTURES / "framed.pb"), str(copy)]
    assert wb.counts()["spans"] == first.rows["spans"]
    assert wb.sql("select count(*) as n from loads")["n"][0] == 1


def test_same_spans_in_another_format_are_counted_as_duplicates() -> None:
    wb = latkit.open()
    proto = wb.load(FIXTURES / "framed.pb")
    json = wb.load(FIXTURES / "spans.jsonl")
    assert json.duplicates == proto.rows["spans"]
    assert json.rows.get("spans", 0) == 0
    assert json.loaded + json.duplicates + json.rejected == json.read
    assert wb.counts()["spans"] == proto.rows["spans"]


PGLOGS = Path(__file__).parent / "fixtures" / "pglogs"


@pytest.mark.parametrize(
    ("phase", "order"),
    [
        ("main", ("log", "csv", "json")),
        ("prefixed", ("json", "log", "csv")),  # a stderr prefix of whole seconds
        ("statements", ("csv", "log", "json")),  # no durations
        ("pgbench", ("log", "json", "csv")),  # the same statements many times a second
    ],
)
def test_one_log_written_in_three_formats_counts_each_event_once(
    phase: str, order: tuple[str, str, str]
) -> None:
    # The fixtures are one server's log_destination = 'stderr,csvlog,jsonlog'.
    alone = latkit.open()
    alone.load(PGLOGS / f"{phase}.csv.gz")
    wb = latkit.open()
    first, *others = (wb.load(PGLOGS / f"{phase}.{ext}.gz") for ext in order)
    assert first.duplicates == 0
    for report in others:
        assert report.loaded == 0
        assert report.duplicates == first.loaded > 0
        assert report.loaded + report.duplicates + report.rejected == report.read
    assert wb.counts() == alone.counts()  # plan nodes included


def test_copies_are_matched_one_for_one_against_each_earlier_load(tmp_path: Path) -> None:
    # Each event twice in one file: its first copy is the event loaded from the log's
    # other formats, the second is a duplicate of nothing loaded before.
    doubled = tmp_path / "doubled.json"
    doubled.write_bytes(gzip.decompress((PGLOGS / "main.json.gz").read_bytes()) * 2)
    wb = latkit.open()
    wb.load(PGLOGS / "main.log.gz", PGLOGS / "main.csv.gz")
    once = wb.counts()
    report = wb.load(doubled)
    assert report.duplicates == report.loaded > 0
    assert wb.counts() == {t: 2 * n for t, n in once.items()}


def test_events_of_another_log_are_not_taken_for_duplicates() -> None:
    wb = latkit.open()
    wb.load(PGLOGS / "main.csv.gz")
    other = wb.load(PGLOGS / "pgbench.log.gz")
    assert other.duplicates == 0 and other.loaded > 0


def test_bad_records_are_rejected_with_position_and_the_rest_kept() -> None:
    wb = latkit.open()
    report = wb.load(FIXTURES / "bad_line.jsonl", FIXTURES / "truncated.pb")
    assert report.rejected >= 3
    assert report.loaded + report.duplicates + report.rejected == report.read
    rejects = wb.sql("select path, position, reason from rejects order by all")
    assert set(rejects["path"]) == {
        str(FIXTURES / "bad_line.jsonl"),
        str(FIXTURES / "truncated.pb"),
    }
    assert all(p.startswith(("line ", "byte ")) for p in rejects["position"])
    assert wb.counts()["spans"] == report.loaded > 0


def test_interrupted_load_leaves_nothing_half_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    wb = latkit.open()
    real = latkit.workbook.Workbook._record

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(latkit.workbook.Workbook, "_record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        wb.load(FIXTURES / "framed.pb")
    assert wb.counts()["spans"] == 0
    assert wb.sql("select count(*) as n from loads")["n"][0] == 0
    monkeypatch.setattr(latkit.workbook.Workbook, "_record", real)
    assert wb.load(FIXTURES / "framed.pb").rows["spans"] > 0


def test_load_reports_progress_before_each_file_and_checks_paths_first(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    wb = latkit.open()
    wb.load(
        FIXTURES / "framed.pb",
        FIXTURES / "spans.jsonl",
        progress=lambda path, done, total: seen.append((path.name, done, total)),
    )
    assert seen == [("framed.pb", 0, 2), ("spans.jsonl", 1, 2)]
    with pytest.raises(latkit.LoadError, match="no such file"):
        wb.load(FIXTURES / "single.pb", tmp_path / "typo.pb")
    assert wb.sql("select count(*) as n from loads")["n"][0] == 2  # single.pb was not loaded


def test_small_batches_are_joined_into_inserts_of_a_row_group_or_the_rest() -> None:
    import pyarrow as pa

    from latkit.ingest import Reject, Rows
    from latkit.workbook import ROW_GROUP_ROWS, _row_groups

    def rows(table: str, n: int, read: int | None = None) -> Rows:
        return Rows(table, pa.table({"x": pa.array(range(n), pa.int64())}), read=read)

    small, big = ROW_GROUP_ROWS // 3, ROW_GROUP_ROWS + 5
    reject = Reject("line 9", "bad")
    items = [
        rows("queries", small, read=small + 1),
        rows("connections", 7),
        reject,
        rows("queries", small),
        rows("queries", small),  # the three make a row group
        rows("queries", big),  # alone is enough
        rows("queries", small),  # the rest, at the end
    ]
    out = list(_row_groups(iter(items)))
    assert out[0] is reject  # rejects are not held
    got = [(o.table, o.batch.num_rows, o.records) for o in out[1:] if isinstance(o, Rows)]
    assert got == [
        ("queries", 3 * small, 3 * small + 1),
        ("queries", big, big),
        ("connections", 7, 7),  # what is left at the end, table by table
        ("queries", small, small),
    ]
    first = out[1].batch
    assert first.column("x").num_chunks == 1  # small batches are joined into one chunk
    assert first.column("x").to_pylist() == [*range(small)] * 3
