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
import pyarrow as pa

#: Budget categories: what an instant of a request was spent on.
BUDGET = ("self", "db", "cache", "http_client", "network")
SELF, DB, CACHE, HTTP_CLIENT, NETWORK = range(5)

#: Span categories (``spans.category``) as codes, in this order.
CATEGORIES = ("http_server", "http_client", "rpc", "db", "cache", "messaging", "internal")

#: The columns ``load`` needs, as SQL over ``spans`` (filtered by the caller's WHERE).
SPAN_ARRAYS_SQL = """
    SELECT
        hash(trace_id) AS trace_key,
        hash(span_id) AS span_key,
        coalesce(hash(parent_span_id), 0) AS parent_key,
        parent_span_id IS NULL AS is_root,
        start_ns,
        greatest(end_ns, start_ns) AS end_ns,
        list_position($categories, category) - 1 AS category,
        kind = 'server' AS is_server,
        rowid AS span_row
    FROM spans
"""


@dataclass
class SpanArrays:
    """Spans as parallel arrays, grouped by trace, with each span's parent as a row index."""

    trace_key: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    category: np.ndarray
    is_server: np.ndarray
    parent: np.ndarray  # row index of the parent, -1 at a root or when it never arrived
    span_row: np.ndarray  # the span's rowid in the spans table

    def __len__(self) -> int:
        return len(self.start_ns)


def load(con: Any, where: str = "", params: dict[str, Any] | None = None) -> SpanArrays:
    """Read spans (``WHERE`` clause optional, parameters bound) into ``SpanArrays``."""
    query = SPAN_ARRAYS_SQL + (f" WHERE {where}" if where else "")
    table = (
        con.cursor()
        .sql(query, params={"categories": list(CATEGORIES), **(params or {})})
        .to_arrow_table()
    )
    cols = {name: _numpy(table.column(name)) for name in table.column_names}
    order = np.argsort(cols["trace_key"], kind="stable")
    trace_key = cols["trace_key"][order]
    parent = _parents(
        trace_key,
        cols["span_key"][order],
        cols["parent_key"][order],
        cols["is_root"][order].astype(np.bool_),
    )
    return SpanArrays(
        trace_key=trace_key,
        start_ns=cols["start_ns"][order].astype(np.int64),
        end_ns=cols["end_ns"][order].astype(np.int64),
        category=cols["category"][order].astype(np.int64),
        is_server=cols["is_server"][order].astype(np.bool_),
        parent=parent,
        span_row=cols["span_row"][order].astype(np.int64),
    )


def _numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.to_numpy(zero_copy_only=False)


def partition(spans: SpanArrays, entries: np.ndarray) -> tuple[np.ndarray, ...]:
    """The critical-path partition of each entry span.

    Returns parallel arrays, one element per segment: ``entry`` (index into ``entries``),
    ``span`` (row in ``spans`` owning the segment), ``start_ns``, ``end_ns`` and ``budget``
    (a code into ``BUDGET``). The segments of one entry tile its whole duration.
    """
    return _walk(spans, entries, emit=True)[:5]


def budget_totals(spans: SpanArrays, entries: np.ndarray) -> np.ndarray:
    """Per entry span, the nanoseconds of each ``BUDGET`` category (an ``n x 5`` array):
    the partition summed, without materialising its segments."""
    return np.asarray(_walk(spans, entries, emit=False)[5])


def _walk(spans: SpanArrays, entries: np.ndarray, emit: bool) -> tuple[np.ndarray, ...]:
    kernels = _kernels()
    first_child, next_sibling = kernels.children(spans.parent, spans.start_ns)
    return tuple(
        kernels.partition(
            entries.astype(np.int64),
            spans.start_ns,
            spans.end_ns,
            spans.category,
            spans.is_server,
            first_child,
            next_sibling,
            emit,
        )
    )


def _parents(
    trace_key: np.ndarray, span_key: np.ndarray, parent_key: np.ndarray, is_root: np.ndarray
) -> np.ndarray:
    if len(trace_key) == 0:
        return np.zeros(0, np.int64)
    return np.asarray(_kernels().parents(trace_key, span_key, parent_key, is_root))


_KERNELS: Any = None


def _kernels() -> Any:
    """Compile (once per machine: numba caches to disk) and return the numba kernels."""
    global _KERNELS
    if _KERNELS is None:
        from latkit.analysis import _tree_kernels

        _KERNELS = _tree_kernels
    return _KERNELS
