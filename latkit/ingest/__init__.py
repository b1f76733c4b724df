"""Readers: one module per format, each turning a file into Arrow batches.

A reader module has three names:

``FORMAT``
    the format's name as the load report shows it (``"otlp_proto"``).
``sniff(head: bytes) -> bool``
    whether the first bytes of the (decompressed) file look like this format. Detection is
    by content, so a file named ``.txt`` still loads.
``read(source: Source, **options) -> Iterator[Rows | Reject]``
    the records: batches for a canonical table (in that table's staging shape, see
    ``latkit.schema``) and one ``Reject`` per record that could not be read. A reader never
    raises on a bad record; it raises ``LoadError`` only when the file as a whole is unusable.

Readers know nothing of DuckDB tables or analyses: the workbook enriches and stores.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import importlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Protocol, cast

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: Reader modules in the order their ``sniff`` is tried: the more specific first.
READERS = (
    "latkit.ingest.jaeger",  # before otlp_json: a v3 answer {"result": {"resourceSpans"...
    "latkit.ingest.otlp_json",
    "latkit.ingest.zipkin",
    "latkit.ingest.otlp_proto",
    "latkit.ingest.pg_csvlog",
    "latkit.ingest.pg_jsonlog",
    "latkit.ingest.pg_explain",
    "latkit.ingest.pg_stat_statements",
    "latkit.ingest.pgbouncer",
    "latkit.ingest.pg_stderr",  # last: it takes any text with PostgreSQL's "LOG:  " markers
)

HEAD_BYTES = 64 * 1024

#: A compressed file may expand this many times (real logs and traces: 5-50 times; gzip's
#: own ceiling is about 1,030): beyond it the file is refused as a decompression bomb...
MAX_RATIO = 500
#: ... once this much has come out of it (small files may expand more, harmlessly).
RATIO_FLOOR = 16 << 20
#: Decompressed bytes ``Source.probe`` reads to judge the ratio before a reader that hands
#: the file to DuckDB (which decompresses gzip and zstd itself) starts.
PROBE_BYTES = 32 << 20
#: Largest record read whole into memory (a JSON document or line, an EXPLAIN file, a log
#: entry): past it a file is refused, so that memory stays bounded whatever the input.
MAX_RECORD_BYTES = 512 << 20
#: Largest piece asked of the decompressor at once: a stream that breaks loses no more.
_PIECE = 1 << 20
#: Rows per batch that readers aim at: more than a DuckDB row group, which is the least
#: the workbook inserts at once (``latkit.workbook.ROW_GROUP_ROWS``). Measured on the
#: benchmark's 1M OTLP spans, whole messages up to 200,000 or more a batch: 3.2-3.4 s in
#: memory, 6.9 s on disk; two row groups' worth (~260,000) 3.2-3.4 s and 8.8-9.5 s; one
#: (~130,000) 4.0-4.5 s and 10-10.5 s.
BATCH_ROWS = 200_000

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bz2",
}


class LoadError(Exception):
    """A file could not be loaded at all. The message names the file and the reason."""


class CorruptStream(EOFError):
    """A compressed file whose stream breaks (truncated or corrupt) after ``offset``
    decompressed bytes. An ``EOFError``, as gzip's and bz2's own are, so readers that
    keep what came before the break treat it the same; the workbook turns one that a reader
    lets through into a reject, keeping the records already read."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Rows:
    """A batch of rows for one canonical table, in its staging shape."""

    table: str
    batch: pa.RecordBatch | pa.Table
    #: records read to make this batch (defaults to its row count)
    read: int | None = None

    @property
    def records(self) -> int:
        return self.batch.num_rows if self.read is None else self.read


@dataclass(frozen=True)
class Reject:
    """One record that could not be read: where it was and why."""

    position: str  # "line 12" or "byte 4096"
    reason: str
    excerpt: str = ""


@dataclass(frozen=True)
class Source:
    """A file to read, with its compression detected from its first bytes."""

    path: Path
    compression: str | None

    @classmethod
    def of(cls, path: str | Path) -> Source:
        p = Path(path)
        with p.open("rb") as f:
            magic = f.read(4)
        compression = next((c for m, c in _MAGIC.items() if magic.startswith(m)), None)
        return cls(p, compression)

    @property
    def name(self) -> str:
        return str(self.path)

    def open(self) -> IO[bytes]:
        """The decompressed content as a binary stream.

        A compressed stream is guarded: it raises ``LoadError`` once it expands more than
        ``MAX_RATIO`` times (a decompression bomb), and ``CorruptStream`` where it breaks.
        """
        raw = self.path.open("rb")
        inner: IO[bytes]
        if self.compression == "gzip":
            inner = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        elif self.compression == "bz2":
            inner = cast(IO[bytes], bz2.BZ2File(raw, "rb"))
        elif self.compression == "zstd":
            import zstandard

            inner = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=1 << 16, read_across_frames=True, closefd=False
            )
        else:
            return raw
        return cast(IO[bytes], _Guarded(self, inner, raw))

    def probe(self) -> None:
        """Refuse a decompression bomb early: read up to ``PROBE_BYTES`` through the guard.
        (For readers that let DuckDB decompress the file.)"""
        if self.compression is None:
            return
        with self.open() as f, contextlib.suppress(CorruptStream):  # the reader's to report
            left = PROBE_BYTES
            while left > 0 and (piece := f.read(min(left, _PIECE))):
                left -= len(piece)

    def head(self, n: int = HEAD_BYTES) -> bytes:
        """The first ``n`` decompressed bytes (fewer if the file is shorter or corrupt)."""
        try:
            with self.open() as f:
                return f.read(n)
        except (OSError, EOFError, ValueError):
            return b""
        except Exception as e:  # zstandard raises its own error type
            if type(e).__module__.startswith("zstandard"):
                return b""
            raise


class _Guarded(io.RawIOBase):
    """A decompressing stream that counts what comes out of it (see ``Source.open``).

    ``read(n)`` returns ``n`` bytes unless the stream ends; when it breaks, what did come
    out is returned first and ``CorruptStream`` is raised by the next read.
    """

    def __init__(self, source: Source, inner: IO[bytes], raw: IO[bytes]):
        self.source = source
        self.inner = inner
        self.raw = raw
        # read1: the decompressor's pieces as they come, so a break loses only the last
        self._next = getattr(inner, "read1", inner.read)
        self.out = 0  # decompressed bytes so far
        self.broken: CorruptStream | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.broken is not None:
            raise self.broken
        want = -1 if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while want < 0 or got < want:
            try:
                piece = self._piece(_PIECE if want < 0 else min(want - got, _PIECE))
            except CorruptStream as e:
                if not parts:
                    raise
                self.broken = e
                break
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _piece(self, n: int) -> bytes:
        try:
            data = self._next(n)
        except LoadError:
            raise
        except Exception as e:  # gzip, bz2 and zstandard each break in their own way
            if not isinstance(e, OSError | EOFError | ValueError) and not type(
                e
            ).__module__.startswith("zstandard"):
                raise
            raise CorruptStream(
                f"the {self.source.compression} stream is truncated or corrupt after "
                f"{self.out:,} decompressed bytes ({e}); what came before was read",
                self.out,
            ) from e
        self.out += len(data)
        if self.out > RATIO_FLOOR:
            consumed = max(self.raw.tell(), 1)
            if self.out > MAX_RATIO * consumed:
                raise LoadError(
                    f"{self.source.name}: refused: {consumed:,} compressed bytes expand to "
                    f"more than {self.out:,} ({self.out // consumed:,}:1; the limit is "
                    f"{MAX_RATIO}:1), which no log or trace file does: a decompression bomb? "
                    f"If the file is genuine, decompress it and load the result"
                )
        return data

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.raw.close()
            super().close()


class ReaderModule(Protocol):
    FORMAT: str

    def sniff(self, head: bytes) -> bool: ...

    def read(self, source: Source, **options: object) -> Iterator[Rows | Reject]: ...


def readers() -> list[ModuleType]:
    return [importlib.import_module(name) for name in READERS]


def detect(source: Source) -> ModuleType | None:
    """The reader module for a file, judged by its content; None if no reader knows it."""
    head = source.head()
    if not head:
        return None
    for module in readers():
        if module.sniff(head):
            return module
    return None


def connect(database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that never draws a progress bar: a reader's private connection,
    or the workbook's. Inside Jupyter without ipywidgets the bar is already off and DuckDB
    refuses to change the setting, which is fine."""
    con = duckdb.connect(database, read_only=read_only)
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    return con


@contextlib.contextmanager
def input_errors() -> Iterator[None]:
    """DuckDB refusing a reader's input raises ``duckdb.Error``, always.

    DuckDB quotes the bad input in its message, cut at a byte count that can split a
    character; the Python binding then fails to decode the message and raises
    ``UnicodeDecodeError`` instead. It is still DuckDB refusing the input (found by the long
    fuzz run), so it becomes ``duckdb.InvalidInputException`` with the message decoded.
    """
    try:
        yield
    except UnicodeDecodeError as e:
        message = e.object.decode("utf-8", "replace") if isinstance(e.object, bytes) else str(e)
        raise duckdb.InvalidInputException(message) from e


def excerpt(data: bytes | str, limit: int = 120) -> str:
    """A short, printable excerpt of a bad record for the ``rejects`` table."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"
