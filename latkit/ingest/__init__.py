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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Protocol, cast

import duckdb
import pyarrow as pa

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

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bz2",
}


class LoadError(Exception):
    """A file could not be loaded at all. The message names the file and the reason."""


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
        """The decompressed content as a binary stream."""
        if self.compression == "gzip":
            return cast(IO[bytes], gzip.open(self.path, "rb"))
        if self.compression == "bz2":
            return cast(IO[bytes], bz2.open(self.path, "rb"))
        if self.compression == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().stream_reader(
                self.path.open("rb"), read_across_frames=True, closefd=True
            )
        return self.path.open("rb")

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


def excerpt(data: bytes | str, limit: int = 120) -> str:
    """A short, printable excerpt of a bad record for the ``rejects`` table."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"
