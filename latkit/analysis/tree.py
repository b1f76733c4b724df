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

#: Category codes in SQL (a CASE is cheaper than ``list_position`` over 10M rows).
_CATEGORY_CODE = (
    "CASE category "
    + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(CATEGORIES[:-1]))
    + f" ELSE {len(CATEGORIES) - 1} END"
)

#: The per-span columns ``load`` needs, as SQL over ``spans`` ({where}: the caller's filter).
SPAN_ARRAYS_SQL = f"""
    SELECT
        rowid AS span_row,
        start_ns,
        greatest(end_ns, start_ns) AS end_ns,
        ({_CATEGORY_CODE})::TINYINT AS category,
        kind = 'server' AS is_server
    FROM spans {{where}}
"""

#: Each span's parent, as a pair of rowids. The ids are hashed together with the trace id
#: so that DuckDB joins 64-bit integers, not strings: on 10M spans the join takes about
#: 1.7 s, where sorting by trace in numpy and matching within each trace took 6 s.
PARENTS_SQL = """
    WITH s AS (
        SELECT rowid AS r, trace_id, span_id, parent_span_id FROM spans {where}
    ),
    children AS (
        SELECT r, hash(trace_id, parent_span_id) AS key FROM s WHERE parent_span_id IS NOT NULL
    ),
    ids AS (
        SELECT r, hash(trace_id, span_id) AS key FROM s
    )
    SELECT c.r AS child, i.r AS parent
    FROM children AS c JOIN ids AS i ON i.key = c.key AND i.r <> c.r
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
    """Read spans (``WHERE`` clause optional, parameters bound) into ``SpanArrays``."""
    clause = f"WHERE {where}" if where else ""
    cur = con.cursor()
    cols = _numpy_columns(cur.sql(SPAN_ARRAYS_SQL.format(where=clause), params=params))
    pairs = _numpy_columns(cur.sql(PARENTS_SQL.format(where=clause), params=params))
    span_row = cols["span_row"].astype(np.int64)
    n = len(span_row)
    child, parent_row = pairs["child"].astype(np.int64), pairs["parent"].astype(np.int64)
    if n and not (span_row[0] == 0 and span_row[-1] == n - 1):
        # Rows were deleted or filtered out: map rowids to positions in the arrays.
        position = np.full(int(span_row.max()) + 1, -1, dtype=np.int64)
        position[span_row] = np.arange(n, dtype=np.int64)
        child, parent_row = position[child], position[parent_row]
    parent = np.full(n, -1, dtype=np.int64)
    if len(child) and np.bincount(child, minlength=n).max() > 1:
        # Two spans of a trace share the parent's id (a client and a server half with one
        # id): the first one loaded wins, as everywhere else in latkit.
        order = np.lexsort((-parent_row, child))
        child, parent_row = child[order], parent_row[order]
    parent[child] = parent_row  # the last write per child wins
    return SpanArrays(
        start_ns=cols["start_ns"].astype(np.int64),
        end_ns=cols["end_ns"].astype(np.int64),
        category=cols["category"].astype(np.int64),
        is_server=cols["is_server"].astype(np.bool_),
        parent=parent,
        span_row=span_row,
    )


def _numpy_columns(relation: Any) -> dict[str, np.ndarray]:
    table = relation.to_arrow_table()
    return {name: _numpy(table.column(name)) for name in table.column_names}


def _numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.to_numpy(zero_copy_only=False)


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
