"""The ``latkit`` command: load, summary, report, and errors as one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner, Result

import latkit
from latkit.cli import main
from tests import spantree

FIXTURES = Path(__file__).parent / "fixtures"
OTLP = FIXTURES / "otlp"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="latkit")


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    # Progress lines ("[1/2] running ...") aside, stderr is the one line of the error.
    lines = [x for x in result.stderr.splitlines() if x and not x.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_version_and_help():
    assert run("--version").output.strip() == f"latkit, version {latkit.__version__}"
    helped = run("--help")
    assert helped.exit_code == 0
    for command in ("load", "summary", "report"):
        assert command in helped.output


def test_python_dash_m_latkit_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "latkit", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"latkit, version {latkit.__version__}"


def test_load_shows_what_each_file_added_and_rejected(tmp_path):
    db = tmp_path / "case.duckdb"
    result = run("load", OTLP / "spans.jsonl", OTLP / "bad_line.jsonl", "--db", db)
    assert result.exit_code == 0, result.output
    with latkit.open(db, read_only=True) as wb:
        loads = wb.sql("SELECT path, rejected FROM loads ORDER BY path")
        spans = wb.counts()["spans"]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "format", "added", "duplicates", "rejected", "seconds"]
    bad = next(line for line in lines if "bad_line.jsonl" in line)
    good = next(line for line in lines if "spans.jsonl" in line and "bad_line" not in line)
    assert "otlp_json" in good and f"spans {spans:,}" in result.stdout
    rejected = loads.filter(loads["path"].str.ends_with("bad_line.jsonl"))["rejected"][0]
    assert rejected > 0
    assert bad.split()[-2] == str(rejected)
    assert "SELECT * FROM rejects" in result.stdout


def test_loading_the_same_file_again_adds_nothing(tmp_path):
    db = tmp_path / "case.duckdb"
    assert run("load", OTLP / "spans.jsonl", "--db", db).exit_code == 0
    again = run("load", OTLP / "spans.jsonl", "--db", db)
    assert again.exit_code == 0
    assert "already loaded" in again.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["load", "no/such/file.pb", "--db", "{tmp}/case.duckdb"], ["no/such/file.pb"]),
        (["load", str(OTLP / "not_otlp.txt"), "--db", "{tmp}/case.duckdb"], ["not_otlp.txt"]),
        (["load", str(OTLP / "spans.jsonl"), "--db", "{tmp}/other.duckdb"], ["not a latkit"]),
        (["summary", "--db", "{tmp}/missing.duckdb"], ["missing.duckdb", "latkit load"]),
        (["summary", "--db", "{tmp}/other.duckdb"], ["not a latkit"]),
        (["report", "--db", "{tmp}/missing.duckdb", "--out", "{tmp}/r"], ["missing.duckdb"]),
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path, args, words):
    import duckdb

    with duckdb.connect(str(tmp_path / "other.duckdb")) as con:
        con.execute("CREATE TABLE t (a INT)")
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(result, *words)


def test_a_mistyped_file_creates_no_workbook(tmp_path):
    db = tmp_path / "case.duckdb"
    assert_one_line_error(run("load", tmp_path / "nope.pb", "--db", db), "nope.pb")
    assert not db.exists()


def test_usage_errors_exit_2():
    result = run("load")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr
    assert run("summary").exit_code == 2  # --db is required
    assert run("frobnicate").exit_code == 2


# -- summary -----------------------------------------------------------------------------


def nplusone_workbook(path: Path) -> None:
    """Ten requests to /items that each fetch 8 products one by one (an N+1, 80 ms of
    database time in a 90 ms request), and ten fast requests to /health."""
    spans = []
    for i in range(10):
        root = spantree.server(f"a{i}", "/items", i * 1000, i * 1000 + 90)
        spans.append(root)
        for k in range(8):
            start = i * 1000 + 5 + 10 * k
            sql = f"SELECT name FROM products WHERE id = {k}"
            spans.append(spantree.db(root, start, start + 10, sql=sql))
        spans.append(spantree.server(f"b{i}", "/health", i * 1000, i * 1000 + 2))
    with latkit.open(path) as wb:
        spantree.add(wb, *spans)


def test_summary_shows_routes_over_budget_and_the_n_plus_one(tmp_path):
    db = tmp_path / "case.duckdb"
    nplusone_workbook(db)
    result = run("summary", "--db", db, "--target-ms", "50")
    assert result.exit_code == 0, result.output
    out = result.stdout
    over, nplusone, *_ = out.split("\n\n")
    assert over.startswith("Routes over the 50 ms budget at p99")
    items = next(line for line in over.splitlines() if "/items" in line)
    # 80 of 90 ms in the database: db first, at 89 %.
    assert "db 89% (80.0 ms)" in items
    assert "/health" not in over
    assert "N+1 queries" in nplusone
    assert "SELECT name FROM products WHERE id = ?" in nplusone
    row = next(line for line in nplusone.splitlines() if "/items" in line)
    assert row.split()[2:3] == ["SELECT"] and " 10 " in row  # ten traces
    for title in ("Index suggestions", "Cache hit rates", "open a connection per request"):
        assert title in out


def test_summary_with_a_generous_budget_says_so(tmp_path):
    db = tmp_path / "case.duckdb"
    nplusone_workbook(db)
    result = run("summary", "--db", db, "--target-ms", "1000")
    assert "none: all 2 routes are within 1000 ms at p99" in result.stdout


def test_summary_says_what_is_not_available(tmp_path, monkeypatch):
    db = tmp_path / "case.duckdb"
    latkit.open(db).close()  # an empty workbook
    monkeypatch.setitem(sys.modules, "latkit.analysis.indexes", None)  # as if not written yet
    result = run("summary", "--db", db)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "not available: the workbook has no spans (latkit load ...)" in out
    assert "not available: latkit.analysis.indexes is not in this latkit" in out
    assert out.count("not available") == 5


# -- report ------------------------------------------------------------------------------


def notebook(path: Path, *cells: str) -> Path:
    """A tiny curated notebook: a parameters cell, then the given code cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'traces = "../sample_data/traces/*.otlp.pb"\nworkbook = None\nsample_data = True'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params]
    nb.cells += [nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.notebooks
def test_report_runs_each_notebook_against_the_workbook(tmp_path):
    db = tmp_path / "case.duckdb"
    nplusone_workbook(db)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook(
        folder / "01_count.ipynb",
        """
        import latkit
        assert traces is None and not sample_data
        wb = latkit.open(workbook)
        print("requests:", wb.sql("SELECT count(*) AS n FROM spans WHERE kind = 'server'")["n"][0])
        """,
    )
    notebook(folder / "02_broken.ipynb", "raise KeyError('no such route')")
    notebook(folder / "notes.ipynb", "raise SystemExit('not a curated notebook: never run')")
    out = tmp_path / "report"
    result = run("report", "--db", db, "--out", out, "--notebooks", folder)
    assert_one_line_error(result, "1 of 2 notebook(s)", "02_broken.ipynb", "KeyError")
    assert "[1/2] running 01_count.ipynb" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "01_count.html", "02_broken.html", "index.html"
    ]
    page = (out / "01_count.html").read_text()
    assert "requests: 20" in page
    assert "wb.sql(" not in page  # code hidden
    assert "no such route" in (out / "02_broken.html").read_text()  # the failure is shown
    index = (out / "index.html").read_text()
    assert 'href="01_count.html"' in index and "stopped at In [" in index
