"""The workbook: a DuckDB database holding the canonical tables of one investigation.

>>> import latkit
>>> wb = latkit.open()                       # in memory; latkit.open("case.duckdb") persists
>>> report = wb.load("tests/fixtures/otlp")  # files, folders (recursive) or globs
>>> wb.sql("select count(*) as n from spans")["n"][0] > 0
True
"""

from __future__ import annotations

import glob
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeGuard, TypeVar

import duckdb
import polars as pl
import pyarrow as pa

from latkit import enrich, redact, schema
from latkit.ingest import (
    CorruptStream,
    LoadError,
    Reject,
    Rows,
    Source,
    connect,
    detect,
    excerpt,
)
from latkit.redact import Action, Redaction

__all__ = ["FileReport", "LoadReport", "Workbook", "WorkbookError", "expand", "open"]

T = TypeVar("T")

#: Rejects kept per file in the ``rejects`` table; the count is always exact.
MAX_REJECTS_STORED = 10_000

#: Bytes of Arrow batches inserted into an on-disk workbook between two checkpoints. DuckDB
#: writes large inserts straight to the file uncompressed and compresses them at the next
#: checkpoint, holding all of them in memory while it does: without checkpoints along the
#: way that is one checkpoint at the end whose memory grows with the file (950 MB for 4M
#: log statements, then spilling past ``memory_limit``). Checkpointing as the load goes does
#: the same work spread out (the load measured no slower) and keeps it to about this much.
CHECKPOINT_BYTES = 64 << 20


class WorkbookError(Exception):
    """A workbook file that this version of latkit cannot open as it is."""


@dataclass
class FileReport:
    """What loading one file did."""

    path: str
    format: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    read: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    #: None when loaded; otherwise why nothing was added ("already loaded", "unknown format")
    note: str | None = None

    @property
    def loaded(self) -> int:
        """Records stored (rows of derived tables, such as a plan's nodes, not counted)."""
        return sum(n for t, n in self.rows.items() if t not in schema.DERIVED_TABLES)


@dataclass
class LoadReport:
    """What ``Workbook.load`` did: rows added per table, duplicates, rejects, skipped files.

    Every record read is accounted for: ``loaded + duplicates + rejected == read``.
    """

    files: list[FileReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for f in self.files:
            for table, n in f.rows.items():
                total[table] = total.get(table, 0) + n
        return total

    @property
    def read(self) -> int:
        return sum(f.read for f in self.files)

    @property
    def loaded(self) -> int:
        return sum(f.loaded for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def skipped(self) -> list[str]:
        """Files inside a folder or glob that are of no known format."""
        return [f.path for f in self.files if f.note == "unknown format"]

    @property
    def already_loaded(self) -> list[str]:
        return [f.path for f in self.files if f.note == "already loaded"]

    def __repr__(self) -> str:
        rows = ", ".join(f"{t}: {n:,}" for t, n in sorted(self.rows.items())) or "nothing"
        lines = [
            f"LoadReport: {len(self.files)} file(s) in {self.seconds:.2f} s; added {rows}; "
            f"{self.duplicates:,} duplicate(s), {self.rejected:,} rejected "
            f"(details in the rejects table)"
        ]
        width = max((len(f.path) for f in self.files), default=4)
        for f in self.files:
            what = f.note or ", ".join(f"{t} {n:,}" for t, n in sorted(f.rows.items())) or "-"
            extra = []
            if f.duplicates:
                extra.append(f"{f.duplicates:,} duplicates")
            if f.rejected:
                extra.append(f"{f.rejected:,} rejected")
            tail = f" ({', '.join(extra)})" if extra else ""
            fmt = f.format or "?"
            lines.append(f"  {f.path:<{width}}  {fmt:<14} {what}{tail}  {f.seconds:.2f} s")
        return "\n".join(lines)


class Workbook:
    """The canonical tables of one investigation, in DuckDB. Make one with ``latkit.open``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str | None, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only
        self._redaction: Redaction | None = None  # set during a load(redact=True)

    def __repr__(self) -> str:
        where = self.path or ":memory:"
        counts = ", ".join(f"{t} {n:,}" for t, n in self.counts().items() if n)
        return f"<latkit.Workbook {where}: {counts or 'empty'}>"

    def counts(self) -> dict[str, int]:
        """Rows per canonical data table."""
        return {
            t: int(self.con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
            for t in schema.DATA_TABLES
        }

    def has_rows(self, table: str) -> bool:
        """Whether the canonical table ``table`` holds any row. Analyses that combine traces
        with query logs ask before reading a log table, so that they also run where there
        is none (a ClickHouse workbook holds spans only).

        >>> latkit.open().has_rows("queries")
        False
        """
        if table not in schema.DATA_TABLES:
            raise ValueError(f"not a canonical data table: {table!r}")
        return bool(self.con.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchall()[0][0])

    def sql(self, query: str, params: Any = None) -> pl.DataFrame:
        """Run a query (parameters bound, never pasted) and return a polars DataFrame."""
        return self.con.cursor().sql(query, params=params).pl()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading -------------------------------------------------------------------------

    def load(
        self,
        *paths: str | Path,
        format: str | None = None,
        progress: Callable[[Path, int, int], None] | None = None,
        redact: bool = False,
        redact_keys: Mapping[str, Action] | None = None,
        redact_secret: str | bytes | None = None,
        **options: Any,
    ) -> LoadReport:
        """Load files, folders (recursively) and globs; each file's format is detected.

        ``format`` forces a reader (``"otlp_proto"``, ...); other keyword options go to the
        readers (``log_line_prefix=...`` for PostgreSQL logs). A file named explicitly that
        holds nothing readable raises ``LoadError``; files of no known format inside a folder
        or glob are listed in ``report.skipped``. Every path is checked before anything is
        loaded. ``progress(path, done, total)`` is called before each file.

        ``redact=True`` stores statements only as templates, no bind parameters, and drops
        or hashes private attributes (``latkit.redact.DEFAULT_KEYS``, plus ``redact_keys``,
        e.g. ``{"app.customer": "drop"}``) before anything is written (``latkit.redact``).
        With ``redact_secret`` (kept outside the workbook) the hashes are keyed, so that a
        guessed value (an e-mail, an IP address) cannot be confirmed by hashing it.
        """
        if self.read_only:
            raise WorkbookError("this workbook was opened read-only; open it without read_only")
        started = time.perf_counter()
        report = LoadReport()
        targets = expand(paths)
        self._redaction = (
            Redaction.of(redact_keys, redact_secret)
            if redact or redact_keys or redact_secret
            else None
        )
        try:
            for done, (path, explicit) in enumerate(targets):
                if progress is not None:
                    progress(path, done, len(targets))
                report.files.append(self._load_file(path, explicit, format, options))
        finally:
            self._redaction = None
        report.seconds = time.perf_counter() - started
        return report

    def load_jaeger(
        self,
        url: str,
        *,
        service: str,
        operation: str | None = None,
        lookback: str = "1h",
        limit: int = 20,
        folder: str | Path | None = None,
        **fetch: Any,
    ) -> LoadReport:
        """Load the traces a running Jaeger finds (``latkit.backends.fetch_jaeger``).

        The fetched files go to ``folder`` if given (and stay), else to a temporary folder.

        >>> wb.load_jaeger("http://localhost:16686", service="shop", lookback="2h")
        ... # doctest: +SKIP
        """
        from latkit import backends

        with backends.folder_for(folder) as where:
            backends.fetch_jaeger(
                url,
                where,
                service=service,
                operation=operation,
                lookback=lookback,
                limit=limit,
                **fetch,
            )
            return self.load(where)

    def load_tempo(
        self,
        url: str,
        *,
        query: str = "{}",
        lookback: str = "1h",
        limit: int = 20,
        folder: str | Path | None = None,
        **fetch: Any,
    ) -> LoadReport:
        """Load the traces a TraceQL search of Grafana Tempo finds (``backends.fetch_tempo``).

        >>> wb.load_tempo("http://localhost:3200", query='{ resource.service.name = "shop" }')
        ... # doctest: +SKIP
        """
        from latkit import backends

        with backends.folder_for(folder) as where:
            backends.fetch_tempo(url, where, query=query, lookback=lookback, limit=limit, **fetch)
            return self.load(where)

    def _load_file(
        self, path: Path, explicit: bool, format: str | None, options: dict[str, Any]
    ) -> FileReport:
        started = time.perf_counter()
        file_report = FileReport(str(path))
        if path.stat().st_size == 0:
            if explicit:
                raise LoadError(f"{path}: the file is empty")
            file_report.note = "empty"
            return file_report
        source = Source.of(path)
        source.probe()  # a decompression bomb is refused before any reader sees it
        reader = _reader(format) if format else detect(source)
        if reader is None:
            if explicit:
                raise LoadError(
                    f"{path}: not a format latkit reads (tried: {', '.join(_formats())}); "
                    f"it starts with {excerpt(source.head(80))!r}"
                )
            file_report.note = "unknown format"
            return file_report
        file_report.format = reader.FORMAT

        # A file of the same size as one loaded before may be the same file: hash it first.
        # Otherwise hash in a thread while reading (hashlib releases the GIL), so that the
        # check costs no time on a first load.
        size = path.stat().st_size
        hasher = _Hasher(path)
        if self._seen_size(size):
            hasher.run()
            if self._seen_sha(hasher.result()):
                file_report.note = "already loaded"
                file_report.seconds = time.perf_counter() - started
                return file_report
        else:
            hasher.start()

        # Batches are committed as they come, so that memory stays bounded however large the
        # file; the file counts as loaded only once its ``loads`` row is written, in the same
        # transaction as its deduplication. Rows of a load that never got that far (killed,
        # interrupted) are removed here or when the workbook is next opened.
        _discard_unfinished(self.con)
        load_id = self._next_load_id()
        try:
            rejects = self._ingest(reader, source, load_id, options, file_report)
            sha = hasher.result()
            if self._seen_sha(sha):
                _discard(self.con, load_id)
                return FileReport(
                    str(path),
                    reader.FORMAT,
                    note="already loaded",
                    seconds=time.perf_counter() - started,
                )
            self.con.begin()
            try:
                file_report.duplicates += self._drop_duplicate_spans(load_id, file_report)
                file_report.duplicates += self._drop_duplicate_log_events(
                    load_id, reader.FORMAT, file_report
                )
                if explicit and file_report.loaded == 0 and file_report.duplicates == 0:
                    first = rejects[0].reason if rejects else "no records found"
                    raise LoadError(
                        f"{path}: nothing readable as {reader.FORMAT} "
                        f"({file_report.rejected:,} unreadable record(s); first: {first})"
                    )
                self._record(load_id, path, sha, file_report, rejects, started)
                self.con.commit()
            except BaseException:
                self.con.rollback()
                raise
        except BaseException:
            _discard(self.con, load_id)
            raise
        return file_report

    def _ingest(
        self,
        reader: ModuleType,
        source: Source,
        load_id: int,
        options: dict[str, Any],
        file_report: FileReport,
    ) -> list[Reject]:
        rejects: list[Reject] = []
        plan_offset = self._next_plan_id()
        unchecked = 0  # bytes inserted since the last checkpoint
        try:
            # The reader runs on a background thread, the inserts here: on two cores the two
            # sides overlap (see ``_prefetch``). Each batch is enriched on the lighter side:
            # spans on the reader's (OTLP protobuf: the inserts are the slower side), query
            # logs here (their readers are). A third thread for the enrichment measured no
            # faster and held one more batch: 10M OTLP spans on disk peaked at 1,424 MiB
            # against 1,246 MiB.
            read = reader.read(source, **options)
            early = (self._stage(item) if _stage_early(item) else item for item in read)
            for item in _prefetch(_row_groups(early)):
                if isinstance(item, Reject):
                    file_report.rejected += 1
                    file_report.read += 1
                    if len(rejects) < MAX_REJECTS_STORED:
                        rejects.append(item)
                    continue
                if not _stage_early(item):
                    item = self._stage(item)
                file_report.read += item.records
                self._insert(item, source, load_id, plan_offset, file_report)
                unchecked += item.batch.nbytes
                del item  # not kept while the next batch is read (see _prefetch)
                if self.path is not None and unchecked >= CHECKPOINT_BYTES:
                    self.con.execute("CHECKPOINT")
                    unchecked = 0
        except CorruptStream as e:  # what came before the break is kept
            file_report.rejected += 1
            file_report.read += 1
            rejects.append(Reject(f"byte {e.offset}", str(e)))
        except LoadError:
            raise
        except Exception as e:  # a reader bug must still name the file, never a bare traceback
            raise LoadError(f"{source.name}: {reader.FORMAT} reader failed: {e!r}") from e
        return rejects

    def _stage(self, item: Rows) -> Rows:
        """A reader's batch enriched (``latkit.enrich``), ready to insert."""
        if item.table == "spans":
            staged = enrich.stage_spans(item.batch, self._redaction)
        elif item.table in schema.DATA_TABLES:
            staged = enrich.stage_sql_texts(item.table, item.batch, self._redaction)
        else:
            return item  # refused by ``_insert``, in order
        return Rows(item.table, staged, read=item.records)

    def _insert(
        self, item: Rows, source: Source, load_id: int, plan_offset: int, report: FileReport
    ) -> None:
        table, staged = item.table, item.batch
        if table not in schema.DATA_TABLES:
            raise LoadError(f"{source.name}: reader produced rows for unknown table {table!r}")
        cur = self.con  # each batch commits on its own; the loads row marks the file done
        params: dict[str, object] = {"source": source.name, "load_id": load_id}
        cur.register("_staged", staged)
        if table == "spans":
            cur.execute(f"INSERT INTO spans {enrich.SPANS_SELECT}", params)
        else:
            columns = "*"
            if "plan_id" in staged.column_names:
                # Plan ids are numbered per file by the reader; make them unique here.
                columns = "* REPLACE (plan_id + $plan_offset AS plan_id)"
                params["plan_offset"] = plan_offset
            cur.execute(
                f"INSERT INTO {table} BY NAME "
                f"SELECT {columns}, $source AS source, $load_id AS load_id FROM _staged",
                params,
            )
        cur.unregister("_staged")
        report.rows[table] = report.rows.get(table, 0) + staged.num_rows

    def _drop_duplicate_spans(self, load_id: int, report: FileReport) -> int:
        """Delete this load's spans already present (same trace id, span id and kind)."""
        if not report.rows.get("spans"):
            return 0
        cur = self.con  # the load's transaction is on this connection
        before = report.rows["spans"]
        params = {"load_id": load_id}
        # Within the file: keep the first copy. Checked on a hash first, so that the usual
        # file without duplicates costs one aggregate instead of a sort.
        repeated = cur.execute(
            """
            SELECT count(*) > count(DISTINCT hash(trace_id, span_id, kind))
            FROM spans WHERE load_id = $load_id
            """,
            params,
        ).fetchall()[0][0]
        if repeated:
            cur.execute(
                """
                DELETE FROM spans WHERE rowid IN (
                    SELECT rowid FROM spans
                    WHERE load_id = $load_id
                    QUALIFY row_number() OVER (
                        PARTITION BY trace_id, span_id, kind ORDER BY rowid) > 1
                )
                """,
                params,
            )
        # Against earlier loads, when there were any.
        earlier = "SELECT EXISTS (SELECT 1 FROM spans WHERE load_id <> $load_id)"
        if cur.execute(earlier, params).fetchall()[0][0]:
            cur.execute(
                """
                DELETE FROM spans WHERE load_id = $load_id AND rowid IN (
                    SELECT new.rowid
                    FROM spans AS new
                    JOIN spans AS old USING (trace_id, span_id, kind)
                    WHERE new.load_id = $load_id AND old.load_id <> $load_id
                )
                """,
                params,
            )
        after = int(
            cur.execute("SELECT count(*) FROM spans WHERE load_id = ?", [load_id]).fetchall()[0][0]
        )
        report.rows["spans"] = after
        return before - after

    def _drop_duplicate_log_events(self, load_id: int, format: str, report: FileReport) -> int:
        """Delete this load's database-log events that an earlier load of the same log in
        another format holds already (``LOG_EVENT_KEYS``), and the nodes of deleted plans."""
        if format not in LOG_FORMATS or not any(report.rows.get(t) for t in LOG_EVENT_KEYS):
            return 0
        cur = self.con  # the load's transaction is on this connection
        others = [f for f in LOG_FORMATS if f != format]
        earlier = cur.execute(
            "SELECT list(load_id) FROM loads WHERE list_contains($others, format)",
            {"others": others},
        ).fetchall()[0][0]
        if not earlier:
            return 0
        dropped = 0
        for table, key in LOG_EVENT_KEYS.items():
            if not report.rows.get(table):
                continue
            # An event seen k times in an earlier load (the same statement can run twice in
            # a second, with the same duration) drops the first k of this load's copies.
            deleted = cur.execute(
                f"""
                DELETE FROM {table} WHERE rowid IN (
                    WITH new AS (
                        SELECT rowid AS r, {key} AS k,
                               row_number() OVER (PARTITION BY {key} ORDER BY ts_ns, rowid) AS n
                        FROM {table} WHERE load_id = $load_id
                    ),
                    old AS (  -- the most copies any one earlier load holds
                        SELECT k, max(n) AS n FROM (
                            SELECT {key} AS k, load_id, count(*) AS n FROM {table}
                            WHERE list_contains($earlier, load_id) GROUP BY ALL
                        ) GROUP BY k
                    )
                    SELECT new.r FROM new JOIN old ON new.k = old.k AND new.n <= old.n
                )
                """,
                {"load_id": load_id, "earlier": earlier},
            ).fetchall()[0][0]
            report.rows[table] -= deleted
            dropped += deleted
        if report.rows.get("plan_nodes"):
            nodes = cur.execute(
                """
                DELETE FROM plan_nodes WHERE load_id = $load_id AND plan_id NOT IN (
                    SELECT plan_id FROM plans WHERE load_id = $load_id)
                """,
                {"load_id": load_id},
            ).fetchall()[0][0]
            report.rows["plan_nodes"] -= nodes
        return dropped

    def _record(
        self,
        load_id: int,
        path: Path,
        sha: str,
        report: FileReport,
        rejects: list[Reject],
        started: float,
    ) -> None:
        cur = self.con  # the load's transaction is on this connection
        if rejects:
            rows = [[load_id, str(path), r.position, r.reason, r.excerpt] for r in rejects]
            if self._redaction is not None:  # excerpts not kept; reasons may quote the input
                why = redact.scrub_text(pa.array([r.reason for r in rejects], pa.string()))
                rows = [[*row[:3], w, None] for row, w in zip(rows, why.to_pylist(), strict=True)]
            cur.executemany("INSERT INTO rejects VALUES (?, ?, ?, ?, ?)", rows)
        report.seconds = time.perf_counter() - started
        cur.execute(
            "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [
                load_id,
                str(path),
                sha,
                path.stat().st_size,
                report.format,
                report.rows,
                report.read,
                report.duplicates,
                report.rejected,
                report.seconds,
            ],
        )

    def _next_load_id(self) -> int:
        row = self.con.execute("SELECT coalesce(max(load_id), 0) + 1 FROM loads").fetchall()
        return int(row[0][0])

    def _next_plan_id(self) -> int:
        row = self.con.execute("SELECT coalesce(max(plan_id), -1) + 1 FROM plans").fetchall()
        return int(row[0][0])

    def _seen_size(self, size: int) -> bool:
        return bool(
            self.con.execute("SELECT count(*) FROM loads WHERE bytes = ?", [size]).fetchall()[0][0]
        )

    def _seen_sha(self, sha: str) -> bool:
        return bool(
            self.con.execute("SELECT count(*) FROM loads WHERE sha256 = ?", [sha]).fetchall()[0][0]
        )


def _discard(con: duckdb.DuckDBPyConnection, load_id: int) -> None:
    """Remove every row of one load (one that failed or was interrupted)."""
    for table in schema.DATA_TABLES:
        con.execute(f"DELETE FROM {table} WHERE load_id = ?", [load_id])


def _discard_unfinished(con: duckdb.DuckDBPyConnection) -> None:
    """Remove rows of loads that never recorded themselves in ``loads`` (the process was
    killed mid-file). Such a load always has an id above every recorded one."""
    for table in schema.DATA_TABLES:
        con.execute(
            f"DELETE FROM {table} WHERE load_id > (SELECT coalesce(max(load_id), 0) FROM loads)"
        )


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()

#: Rows in a DuckDB row group. An INSERT of fewer rows is appended to the table row by row
#: when it commits, at about twice the cost per row, and when that is more than 16 MB of
#: data (DuckDB's automatic checkpoint threshold) it sets off a checkpoint of the table, in
#: an in-memory database too, at a cost that grows with the table. Measured on the
#: benchmark's 1M spans, in memory: inserts of 61,440 rows took 19.9 s in all (6.6 s with
#: automatic checkpoints off), of 130,000 rows 4.9 s (the last, of 90,000, took 2.8 s of
#: it), of 122,880 or 200,000 rows 2.3-2.8 s.
ROW_GROUP_ROWS = 122_880


#: The PostgreSQL log formats: the same server can write one log in all three at once
#: (``log_destination = 'stderr,csvlog,jsonlog'``).
LOG_FORMATS = ("pg_stderr", "pg_csvlog", "pg_jsonlog")

#: What makes one logged event the same event in another format of the same log: the
#: second it happened in (a stderr prefix may give whole seconds only), plus what each
#: format writes alike. A missing duration or pid is a value of its own here.
LOG_EVENT_KEYS = {
    "queries": "(coalesce(pid, -1), ts_ns // 1000000000, coalesce(duration_ms, -1), statement)",
    "plans": "(ts_ns // 1000000000, duration_ms, statement)",
    "connections": "(coalesce(pid, -1), ts_ns // 1000000000, event)",
}


def _row_groups(items: Iterator[Rows | Reject]) -> Iterator[Rows | Reject]:
    """``items`` with each table's batches of less than a row group joined until they make
    one, so that no insert but a file's last is smaller. Rejects pass straight on."""
    pending: dict[str, list[Rows]] = {}
    rows: dict[str, int] = {}

    def joined(table: str) -> Rows:
        parts = pending.pop(table)
        rows.pop(table)
        if len(parts) == 1:
            return parts[0]
        tables = [p.batch if isinstance(p.batch, pa.Table) else pa.table(p.batch) for p in parts]
        return Rows(table, pa.concat_tables(tables), read=sum(p.records for p in parts))

    for item in items:
        if isinstance(item, Reject):
            yield item
            continue
        pending.setdefault(item.table, []).append(item)
        rows[item.table] = rows.get(item.table, 0) + item.batch.num_rows
        if rows[item.table] >= ROW_GROUP_ROWS:
            yield _contiguous(joined(item.table))
    for table in list(pending):
        yield _contiguous(joined(table))


def _contiguous(item: Rows) -> Rows:
    """``item`` with its chunks joined into one if any is under a row group. DuckDB inserts
    a table's chunks in parallel, each into row groups of its own that it then merges:
    small chunks cost a second copy there (1M OTLP/JSON spans in 56,000-row chunks: 1.7 s
    an insert of 400,000)."""
    batch = item.batch
    chunks = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
    if len(chunks) > 1 and min(len(b) for b in chunks) < ROW_GROUP_ROWS:
        return Rows(item.table, batch.combine_chunks(), read=item.records)
    return item


def _stage_early(item: Rows | Reject) -> TypeGuard[Rows]:
    """Whether ``item`` is enriched on the reader's thread (spans) rather than on the
    inserting one (query logs). csvlog, 1M statements: 3.8-4.1 s with the enrichment here,
    4.0-4.3 s on the reader's thread; OTLP protobuf gains the other way."""
    return isinstance(item, Rows) and item.table == "spans"


def _prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead.

    A reader decoding the next batch (numba, DuckDB and Arrow all release the GIL) then
    overlaps with the workbook enriching and inserting the previous one: on two cores that
    is most of the difference between the two added up and the slower of the two.
    Exceptions are raised here, in order; stopping early stops the reader too.

    Batches are large (200,000 spans are about 100 MB of Arrow), so neither side keeps one
    it has handed on: at most the one being inserted, ``depth`` waiting and the one being
    made are alive.
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
                del item  # not kept while the next one is made
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(_Raised(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            put(_DONE)

    worker = threading.Thread(target=produce, name="latkit-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
            del item  # not kept while waiting for the next one
    finally:
        stop.set()
        worker.join()


class _Hasher:
    """SHA-256 of a file, computed now or in a background thread."""

    def __init__(self, path: Path):
        self.path = path
        self._digest: str | None = None
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            while chunk := f.read(4 << 20):
                h.update(chunk)
        self._digest = h.hexdigest()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()

    def result(self) -> str:
        if self._thread is not None:
            self._thread.join()
        if self._digest is None:
            self.run()
        assert self._digest is not None
        return self._digest


def expand(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """Each file that loading ``paths`` would read, and whether it was named explicitly (not
    found in a folder or glob). Raises ``LoadError`` for a path that names nothing."""
    return list(_expand(paths))


def _expand(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    for raw in paths:
        text = str(raw)
        p = Path(text).expanduser()
        if p.is_file():
            yield p, True
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    yield f, False
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            if not matches:
                raise LoadError(f"{text}: no file matches this pattern")
            for m in matches:
                if m.is_file():
                    yield m, False
                elif m.is_dir():
                    yield from _expand([m])
        else:
            raise LoadError(f"{text}: no such file or folder")


def _formats() -> list[str]:
    from latkit.ingest import readers

    return [m.FORMAT for m in readers()]


def _reader(format: str) -> ModuleType:
    from latkit.ingest import readers

    for m in readers():
        if format == m.FORMAT:
            return m
    raise LoadError(f"unknown format {format!r}; latkit reads {', '.join(_formats())}")


# -- opening and migrating ---------------------------------------------------------------

#: Steps that bring a workbook of version N to N + 1 (SQL statements).
MIGRATIONS: dict[int, tuple[str, ...]] = {}


def open(
    path: str | Path | None = None, read_only: bool = False, *, memory_limit: str | None = None
) -> Workbook:
    """Open a workbook: in memory (no path), or a DuckDB file that keeps an investigation.

    ``memory_limit`` caps the memory of the workbook's DuckDB database (its ``memory_limit``
    setting: ``"1GB"``, ``"512MiB"``); past it DuckDB spills to its ``temp_directory``.
    Without it DuckDB's own default holds (80% of the machine's memory): on disk, blocks of
    the file stay cached up to it, so a long load grows to it. What a load needs besides is
    bounded by the readers' chunks, whatever the file's size: with ``memory_limit="256MB"``
    a 5 GB PostgreSQL log peaked at 1.1 GiB resident and 10M OTLP spans at 1.2 GiB
    (``benchmarks/huge_input.py``).

    >>> wb = latkit.open()
    >>> wb.counts()["spans"]
    0
    """
    where = str(path) if path is not None else ":memory:"
    if read_only and path is None:
        raise WorkbookError("an in-memory workbook cannot be read-only")
    try:
        con = connect(where, read_only=read_only)
    except duckdb.Error as e:
        raise WorkbookError(f"{where}: cannot open as a DuckDB workbook: {e}") from e
    if memory_limit is not None:
        try:
            con.execute("SET memory_limit = ?", [memory_limit])
        except duckdb.Error as e:
            con.close()
            raise ValueError(f"memory_limit {memory_limit!r}: {e}") from e
    if path is None:
        # Nothing to write: no automatic checkpoints, which in memory only compress the
        # tables, and which a commit of more than 16 MB outside whole row groups (the last
        # insert of a large file) sets off at a cost that grows with the tables (see
        # ``ROW_GROUP_ROWS``). ``CHECKPOINT`` still compresses them when asked.
        con.execute("SET checkpoint_threshold = '1000TB'")
    _prepare(con, where, read_only)
    return Workbook(con, None if path is None else str(path), read_only)


def _prepare(con: duckdb.DuckDBPyConnection, where: str, read_only: bool) -> None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    version = schema.SCHEMA_VERSION
    if "meta" in tables:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        version = int(row[0][0]) if row else 0
    elif tables - set(schema.TABLES):
        raise WorkbookError(
            f"{where}: this DuckDB file has tables but is not a latkit workbook "
            f"(no meta table); open it with duckdb, or give latkit a new file name"
        )
    if version > schema.SCHEMA_VERSION:
        raise WorkbookError(
            f"{where}: written by a newer latkit (workbook schema {version}, this latkit "
            f"knows {schema.SCHEMA_VERSION}); upgrade latkit: pip install -U latkit"
        )
    if read_only:
        if version < schema.SCHEMA_VERSION:
            raise WorkbookError(
                f"{where}: workbook schema {version} is older than {schema.SCHEMA_VERSION}; "
                f"open it once without read_only to migrate it"
            )
        return
    con.begin()
    for v in range(version, schema.SCHEMA_VERSION):
        for statement in MIGRATIONS.get(v, ()):
            con.execute(statement)
    for ddl in schema.TABLES.values():
        con.execute(ddl)
    con.execute(
        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)]
    )
    for macro in schema.MACROS:
        con.execute(macro)
    con.commit()
    _discard_unfinished(con)
