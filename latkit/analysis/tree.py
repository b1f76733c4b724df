"""Span trees: who is whose parent, and which span each instant of a request belongs to.

Every analysis that walks a trace (the latency budget, the critical path) needs the same two
things: the parent of each span as a row index, and a *partition* of an entry span's time
into segments, each owned by exactly one span. The partition follows Jaeger's critical-path
algorithm: walking backwards from the end of a span, the child that finished last owns the
time it covers, the gap after it belongs to the span itself, and the walk continues from
where that child started. Children are clamped to their parent first, so clock skew (a
child starting before its parent, ending after it) never creates time out of nothing, and
parallel children are never counted twice: the instants they share go to the one on the
critical path.

The walk runs in numba because it is a loop over millions of spans with data-dependent
branching that SQL cannot express and Python would take minutes over (NOTES.md: 10M spans).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

#: Budget categories: what an instant of a request was spent on.
BUDGET = ("self", "db", "cache", "http_client", "network")
SELF, DB, CACHE, HTTP_CLIENT, NETWORK = range(5)

#: Span categories (``spans.category``) as codes, in this order.
CATEGORIES = ("http_server", "http_client", "rpc", "db", "cache", "messaging", "internal")

#: Category codes in SQL (a CASE is cheaper than ``list_position`` over 10M rows).
_CATEGORY_CODE = (
    "CASE category "
    + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(CATEGORIES[:-1]))
    + f" ELSE {len(CATEGORIES) - 1} END"
)

#: What ``load`` reads of each span, as SQL over ``spans`` ({where}: the caller's filter).
#: The ids are hashed together with the trace id, so that finding each span's parent is a
#: join of 64-bit integers rather than of strings.
SPAN_ARRAYS_SQL = f"""
    SELECT
        rowid AS span_row,
        start_ns,
        greatest(end_ns, start_ns) AS end_ns,
        ({_CATEGORY_CODE})::TINYINT AS category,
        kind = 'server' AS is_server,
        hash(trace_id, span_id) AS key,
        CASE WHEN parent_span_id IS NOT NULL THEN hash(trace_id, parent_span_id) END
            AS parent_key
    FROM spans {{where}}
"""


@dataclass
class SpanArrays:
    """Spans as parallel arrays, with each span's parent as a row index."""

    start_ns: np.ndarray
    end_ns: np.ndarray
    category: np.ndarray
    is_server: np.ndarray
    parent: np.ndarray  # row index of the parent, -1 at a root or when it never arrived
    span_row: np.ndarray  # the span's rowid in the spans table

    def __len__(self) -> int:
        return len(self.start_ns)


def load(con: Any, where: str = "", params: dict[str, Any] | None = None) -> SpanArrays:
    """Read spans (``WHERE`` clause optional, parameters bound) into ``SpanArrays``.

    Each span's parent is found by a polars hash join on the hashed ids. On 10M spans it
    took 2.0 s of CPU, where DuckDB's join took 4.0 s, and sorting by trace in numpy, then
    matching within each trace, took 6 s.
    """
    clause = f"WHERE {where}" if where else ""
    frame = con.cursor().sql(SPAN_ARRAYS_SQL.format(where=clause), params=params).pl()
    n = frame.height
    frame = frame.with_row_index("row")
    pairs = (
        frame.lazy()
        .filter(pl.col("parent_key").is_not_null())
        .select(pl.col("row").alias("child"), pl.col("parent_key").alias("key"))
        .join(frame.lazy().select("row", "key"), on="key")
        .filter(pl.col("child") != pl.col("row"))
        .collect()
    )
    child = pairs["child"].to_numpy().astype(np.int64, copy=False)
    parent_row = pairs["row"].to_numpy().astype(np.int64, copy=False)
    parent = np.full(n, -1, dtype=np.int64)
    parent[child] = parent_row  # the last write per child wins
    if not np.array_equal(parent[child], parent_row):
        # Two spans of a trace share the parent's id (a client and a server half with one
        # id): the first one loaded wins, as everywhere else in latkit.
        order = np.lexsort((-parent_row, child))
        parent[child[order]] = parent_row[order]
    return SpanArrays(
        start_ns=frame["start_ns"].to_numpy().astype(np.int64, copy=False),
        end_ns=frame["end_ns"].to_numpy().astype(np.int64, copy=False),
        category=frame["category"].to_numpy().astype(np.int64),
        is_server=frame["is_server"].to_numpy().astype(np.bool_, copy=False),
        parent=parent,
        span_row=frame["span_row"].to_numpy().astype(np.int64, copy=False),
    )


def partition(spans: SpanArrays, entries: np.ndarray) -> tuple[np.ndarray, ...]:
    """The critical-path partition of each entry span.

    Returns parallel arrays, one element per segment: ``entry`` (index into ``entries``),
    ``span`` (row in ``spans`` owning the segment), ``start_ns``, ``end_ns`` and ``budget``
    (a code into ``BUDGET``). The segments of one entry tile its whole duration.
    """
    _, segments = _walk(spans, entries, emit=True)
    return tuple(segments[:, i] for i in range(4)) + (segments[:, 4].astype(np.int8),)


def budget_totals(spans: SpanArrays, entries: np.ndarray) -> np.ndarray:
    """Per entry span, the nanoseconds of each ``BUDGET`` category (an ``n x 5`` array):
    the partition summed, without materialising its segments."""
    return _walk(spans, entries, emit=False)[0]


def _walk(spans: SpanArrays, entries: np.ndarray, emit: bool) -> tuple[np.ndarray, np.ndarray]:
    """Run the partition kernel, enlarging its buffers whenever it asks (it never grows them
    itself: see ``_tree_kernels.partition``)."""
    if len(spans) >= 2**31:
        raise ValueError("more than 2**31 spans in one walk: filter by time or route first")
    kernels = _kernels()
    nodes = kernels.nodes(
        spans.parent, spans.start_ns, spans.end_ns, spans.category, spans.is_server
    )
    entries = entries.astype(np.int64)
    totals = np.zeros((len(entries), len(BUDGET)), dtype=np.int64)
    segments = np.empty((max(16, 4 * len(entries)) if emit else 0, 5), dtype=np.int64)
    stack = np.empty((64, 4), dtype=np.int64)
    kids = np.empty(64, dtype=np.int64)
    first, used = 0, 0
    while True:
        code, first, used = kernels.partition(
            entries, nodes, first, totals, segments, used, stack, kids, emit
        )
        if code == kernels.DONE:
            return totals, segments[:used]
        if code == kernels.MORE_STACK:
            stack = _doubled(stack)
        elif code == kernels.MORE_KIDS:
            kids = _doubled(kids)
        else:
            segments = _doubled(segments)


def _doubled(array: np.ndarray) -> np.ndarray:
    out = np.empty((2 * len(array),) + array.shape[1:], dtype=array.dtype)
    out[: len(array)] = array
    return out


_KERNELS: Any = None


def _kernels() -> Any:
    """Compile (once per machine: numba caches to disk) and return the numba kernels."""
    global _KERNELS
    if _KERNELS is None:
        from latkit.analysis import _tree_kernels

        _KERNELS = _tree_kernels
    return _KERNELS
