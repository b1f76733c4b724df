"""The ``latkit`` command: load files into a workbook, read its headline findings, write a
report.

    latkit load sample_data/traces sample_data/postgres/postgresql.csv.gz --db case.duckdb
    latkit summary --db case.duckdb --target-ms 100
    latkit report --db case.duckdb --out report/

An error is one line on stderr and exit status 1 (2 for a usage error), never a traceback.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import click
import duckdb
import polars as pl

import latkit
from latkit import report as reports
from latkit.workbook import LoadReport, Workbook, expand

__all__ = ["main"]

#: Errors that are the user's to fix: shown as one line, exit status 1.
_EXPECTED = (latkit.LoadError, latkit.WorkbookError, reports.ReportError, OSError, duckdb.Error)


class _Latkit(click.Group):
    """A group that turns expected errors into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _EXPECTED as e:
            raise click.ClickException(_one_line(e)) from None


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


_DB = click.option(
    "--db",
    required=True,
    envvar="LATKIT_DB",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The workbook file (DuckDB). Also read from $LATKIT_DB.",
)


@click.group(cls=_Latkit, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(latkit.__version__, prog_name="latkit")
def main() -> None:
    """Find where an API's latency goes: load traces and query logs into a workbook,
    then read its findings in the terminal or as an HTML report."""


# -- load --------------------------------------------------------------------------------


@main.command()
@click.argument("files", nargs=-1, required=True)
@_DB
@click.option(
    "--format",
    "format_",
    metavar="NAME",
    help="Read every file with this reader (otlp_proto, pg_csvlog, ...) instead of detecting.",
)
def load(files: tuple[str, ...], db: Path, format_: str | None) -> None:
    """Load FILES (files, folders searched recursively, or quoted globs) into the workbook,
    creating it if needed, then show what was loaded and rejected per file."""
    # Check every path before the workbook is created, so that a typo creates nothing.
    expand(files)
    with latkit.open(db) as wb:
        result = _load_with_progress(wb, files, format_)
    _echo_load_report(result)


def _load_with_progress(wb: Workbook, files: Sequence[str], format_: str | None) -> LoadReport:
    """``wb.load(*files)`` with a progress bar on stderr (when it is a terminal) that names
    the file loading and ticks per file."""
    from tqdm import tqdm

    with tqdm(total=len(expand(files)), unit="file", disable=None, leave=False) as bar:

        def tick(path: Path, done: int, total: int) -> None:
            bar.n = done
            bar.set_postfix_str(path.name)  # shown while the file loads, however long

        result = wb.load(*files, format=format_, progress=tick)
        bar.n = bar.total
    return result


def _echo_load_report(result: LoadReport) -> None:
    rows = [
        [
            f.path,
            f.format or "-",
            f.note or ", ".join(f"{t} {n:,}" for t, n in sorted(f.rows.items())) or "nothing",
            f.duplicates,
            f.rejected,
            f.seconds,
        ]
        for f in result.files
    ]
    click.echo(_table(["file", "format", "added", "duplicates", "rejected", "seconds"], rows))
    added = ", ".join(f"{t} {n:,}" for t, n in sorted(result.rows.items())) or "nothing"
    click.echo(
        f"\n{len(result.files)} file(s) in {result.seconds:.1f} s: added {added}; "
        f"{result.duplicates:,} duplicate(s), {result.rejected:,} rejected"
    )
    if result.rejected:
        click.echo("What was rejected, and why: SELECT * FROM rejects (in the workbook)")
    if result.skipped:
        click.echo(f"{len(result.skipped)} file(s) skipped: not a format latkit reads")


# -- summary -----------------------------------------------------------------------------


class _Unavailable(Exception):
    """A section of the summary that this latkit or this workbook cannot fill."""


@main.command()
@_DB
@click.option(
    "--target-ms",
    type=float,
    default=100.0,
    show_default=True,
    help="The latency budget per request.",
)
@click.option("--top", type=int, default=10, show_default=True, help="Rows per section.")
def summary(db: Path, target_ms: float, top: int) -> None:
    """The headline findings: routes over budget and where their time goes, N+1 queries,
    index suggestions, cache hit rates, routes that connect per request."""
    _require(db)
    with latkit.open(db, read_only=True) as wb:
        counts = wb.counts()
        sections: list[tuple[str, Callable[[], pl.DataFrame | str]]] = [
            (
                f"Routes over the {target_ms:g} ms budget at p99",
                lambda: _over_budget(wb, counts, target_ms),
            ),
            ("N+1 queries", lambda: _n_plus_one(wb, counts)),
            ("Index suggestions", lambda: _indexes(wb, counts)),
            ("Cache hit rates", lambda: _cache(wb, counts)),
            ("Routes that open a connection per request", lambda: _no_pool(wb, counts)),
        ]
        for i, (title, section) in enumerate(sections):
            click.echo(("\n" if i else "") + click.style(title, bold=True))
            try:
                found = section()
            except _Unavailable as e:
                found = f"not available: {e}"
            except Exception as e:  # one section failing must not hide the others
                found = f"not available: {type(e).__name__}: {_one_line(e)}"
            if isinstance(found, str):
                click.echo(f"  {found}")
                continue
            click.echo(_indent(_table(found.columns, found.head(top).rows())))
            if found.height > top:
                click.echo(f"  ... and {found.height - top} more (--top to show more)")


def _analysis(name: str, function: str) -> Callable[..., pl.DataFrame]:
    """``latkit.analysis.<name>.<function>``, or _Unavailable naming what is missing."""
    try:
        module: ModuleType = importlib.import_module(f"latkit.analysis.{name}")
    except ImportError as e:
        raise _Unavailable(f"latkit.analysis.{name} is not in this latkit ({e})") from e
    found = getattr(module, function, None)
    if found is None:
        raise _Unavailable(f"latkit.analysis.{name} has no {function}()")
    return found


def _need(counts: dict[str, int], *tables: str) -> None:
    if not any(counts.get(t) for t in tables):
        what = " or ".join(tables)
        raise _Unavailable(f"the workbook has no {what} (latkit load ...)")


def _over_budget(wb: Workbook, counts: dict[str, int], target_ms: float) -> pl.DataFrame | str:
    by_route = _analysis("budget", "by_route")
    breakdown = _analysis("budget", "breakdown")
    _need(counts, "spans")
    routes = by_route(wb, target_ms=target_ms)
    if routes.is_empty():
        raise _Unavailable("no requests (server spans) in the workbook")
    over = routes.filter(pl.col("p99_ms") > target_ms)
    if over.is_empty():
        return f"none: all {routes.height} routes are within {target_ms:g} ms at p99"
    where = (
        breakdown(wb)
        .filter(pl.col("share") > 0)
        .sort("share", descending=True)
        .group_by("service", "route", maintain_order=True)
        .agg(
            pl.format(
                "{} {}% ({} ms)",
                pl.col("category"),
                (pl.col("share") * 100).round(0).cast(pl.Int64),
                pl.col("mean_ms").round(1),
            )
            .head(3)
            .str.join(", ")
            .alias("time goes to (share, mean)")
        )
    )
    return over.join(where, on=["service", "route"], how="left", nulls_equal=True).select(
        "service",
        "route",
        "requests",
        "p50_ms",
        "p99_ms",
        "over_target_share",
        "time goes to (share, mean)",
    )


def _n_plus_one(wb: Workbook, counts: dict[str, int]) -> pl.DataFrame | str:
    detect = _analysis("nplusone", "summary")
    _need(counts, "spans")
    found = detect(wb)
    if found.is_empty():
        return "none found in the traces"
    return _columns(
        found,
        "service",
        "route",
        "query_template",
        "traces",
        "share_of_route_traces",
        "median_repeats",
        "saved_ms",
        "fix",
    )


def _indexes(wb: Workbook, counts: dict[str, int]) -> pl.DataFrame | str:
    suggest = _analysis("indexes", "suggest")
    _need(counts, "plans", "queries", "statements", "spans")
    found = suggest(wb)
    if found.is_empty():
        return "none: no scan or query that an index would clearly help"
    return _columns(
        found,
        "table_name",
        "columns",
        "reason",
        "calls",
        "total_ms",
        "est_saving_ms",
        "create_index",
    )


def _cache(wb: Workbook, counts: dict[str, int]) -> pl.DataFrame | str:
    hit_rates = _analysis("cache", "hit_rates")
    _need(counts, "spans")
    found = hit_rates(wb)
    if found.is_empty():
        return "no cache lookups in the traces"
    return _columns(
        found,
        "key_pattern",
        "lookups",
        "hits",
        "misses",
        "unknown",
        "hit_rate",
        "saved_ms",
        "net_saved_ms",
    )


def _no_pool(wb: Workbook, counts: dict[str, int]) -> pl.DataFrame | str:
    no_pool = _analysis("pooling", "no_pool")
    _need(counts, "spans", "connections")
    found = no_pool(wb)
    if found.is_empty():
        return "none: every route and application seems to reuse its connections"
    return _columns(
        found,
        "source",
        "service",
        "route",
        "application",
        "requests",
        "sessions",
        "setup_p50_ms",
        "saved_ms",
        "p99_ms",
        "p99_pooled_ms",
    )


def _columns(frame: pl.DataFrame, *wanted: str) -> pl.DataFrame:
    """The wanted columns that the frame has (analyses are still growing), all-null ones
    left out."""
    present = [c for c in wanted if c in frame.columns and frame[c].null_count() < frame.height]
    return frame.select(present or frame.columns)


# -- report ------------------------------------------------------------------------------


@main.command()
@_DB
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the HTML pages (created if needed).",
)
@click.option(
    "--notebooks",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of the curated notebooks (NN_name.ipynb). Default: latkit's own.",
)
@click.option("--target-ms", type=float, help="The latency budget, for notebooks that take one.")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="Set a notebook parameter (a Python literal, else a string); repeatable.",
)
@click.option("--timeout", type=float, help="Seconds a cell may run before its notebook stops.")
def report(
    db: Path,
    out: Path,
    folder: Path | None,
    target_ms: float | None,
    parameters: tuple[tuple[str, str], ...],
    timeout: float | None,
) -> None:
    """Run the curated notebooks headless against the workbook and write one self-contained
    HTML page each (code hidden, charts embedded, nothing fetched from the network), plus
    an index.html."""
    _require(db)
    latkit.open(db).close()  # a clear error now if it is not a workbook, or is locked
    overrides: dict[str, Any] = {name: _literal(value) for name, value in parameters}
    if target_ms is not None:
        overrides["target_ms"] = target_ms
    notebooks = reports.notebooks(folder)

    def started(path: Path) -> None:
        number = notebooks.index(path) + 1
        click.echo(f"[{number}/{len(notebooks)}] running {path.name}", err=True)

    pages = reports.build(db, out, notebooks, overrides, timeout, on_start=started)
    rows = [[str(p.html), p.seconds, p.error or "ok"] for p in pages]
    click.echo(_table(["page", "seconds", "run"], rows))
    click.echo(f"\nOpen {out / 'index.html'}")
    failed = [p for p in pages if p.error]
    if failed:
        _fail(
            f"{len(failed)} of {len(pages)} notebook(s) stopped early; first: "
            f"{failed[0].notebook.name} at {failed[0].error} (its page shows where)"
        )


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _require(db: Path) -> None:
    if not db.is_file():
        _fail(f"{db}: no such workbook (make one with: latkit load FILES --db {db})")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


# -- plain-text tables -------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 60) -> str:
    """Rows under headers, numbers right-aligned, long texts cut at ``width``."""
    cells = [[_cell(h, v, width) for h, v in zip(headers, row, strict=True)] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(list(headers)), line(rule)] + [line(r) for r in cells])


#: Columns shown whole however long: they are meant to be copied.
_WHOLE = {"create_index"}


def _cell(header: str, value: Any, width: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if "share" in header or header.endswith("rate"):
            return f"{value:.0%}"
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    text = " ".join(str(value).split())
    if len(text) <= width or header in _WHOLE:
        return text
    return text[: width - 1] + "…"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


if __name__ == "__main__":
    main(prog_name="latkit")
