"""Span trees: parents, and the partition's edge cases (buffers that must grow, hostile input)."""

from __future__ import annotations

import numpy as np
import pytest

from latkit.analysis import budget, tree
from tests.spantree import db, internal, server, span, workbook


def _positions(wb) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Each span's name -> its row in ``tree.load``'s arrays."""
    spans = tree.load(wb.con)
    names = dict(wb.sql("SELECT rowid, name FROM spans").rows())
    return {names[int(r)]: i for i, r in enumerate(spans.span_row)}


def test_parents_are_found_within_the_trace_only() -> None:
    # The same span ids in two traces: each child finds the parent of its own trace.
    a = server("1", "/a", 0, 100, span_id="00000000000000aa")
    b = server("2", "/b", 0, 100, span_id="00000000000000aa")
    wb = workbook(
        a,
        b,
        db(a, 10, 20, span_id="00000000000000bb"),
        db(b, 10, 20, span_id="00000000000000cc"),
    )
    spans = tree.load(wb.con)
    rows = wb.sql("SELECT rowid, trace_id, span_id FROM spans").rows()
    by_row = {r: (t, s) for r, t, s in rows}
    for child, parent in enumerate(spans.parent):
        trace, span_id = by_row[int(spans.span_row[child])]
        if span_id in ("00000000000000bb", "00000000000000cc"):
            assert by_row[int(spans.span_row[parent])] == (trace, "00000000000000aa")
        else:
            assert parent == -1


def test_a_parent_id_shared_by_two_spans_resolves_to_the_first_loaded() -> None:
    root = server("1", "/a", 0, 100, span_id="0000000000000001")
    first = internal(root, "first", 10, 90, span_id="0000000000000002")
    second = span("1", "second", 10, 90, kind="client", parent=root, span_id="0000000000000002")
    wb = workbook(root, first, second, db(first, 20, 30))
    at = _positions(wb)
    assert tree.load(wb.con).parent[at["SELECT"]] == at["first"]


def test_a_parent_cycle_does_not_walk_forever() -> None:
    # Hostile input: a server span whose parent is its own child.
    s = server("1", "/a", 0, 100, span_id="0000000000000001", parent_span_id="0000000000000002")
    x = span("1", "x", 0, 100, span_id="0000000000000002", parent_span_id="0000000000000001")
    wb = workbook(s, x)
    row = budget.per_request(wb).row(0, named=True)
    assert row["duration_ms"] == pytest.approx(100)
    assert sum(row[f"{c}_ms"] for c in tree.BUDGET) == pytest.approx(100)


def test_many_children_and_deep_nesting_grow_the_buffers() -> None:
    # 300 sequential queries (more children than the first buffer holds) and a chain of 150
    # nested spans (deeper than the first stack), each ending in a 1 ms query.
    root = server("1", "/a", 0, 1000)
    spans = [root] + [db(root, i, i + 0.5) for i in range(300)]
    parent = root
    for depth in range(150):
        parent = internal(parent, f"level {depth}", 400 + depth, 1000 - depth)
        spans.append(parent)
    spans.append(db(parent, 600, 601))
    wb = workbook(*spans)
    row = budget.per_request(wb).row(0, named=True)
    assert row["db_ms"] == pytest.approx(300 * 0.5 + 1)
    assert row["self_ms"] == pytest.approx(1000 - 151)
    # Every instant is owned once: the segments tile the request.
    entries = np.flatnonzero(tree.load(wb.con).is_server)
    _, _, start, end, _ = tree.partition(tree.load(wb.con), entries)
    assert int((end - start).sum()) == 1000 * 1_000_000
    order = np.argsort(start)
    assert np.all(start[order][1:] == end[order][:-1])


def test_overlapping_children_go_to_the_one_that_ends_last() -> None:
    # A query takes the last 50 ms. Before it, two children were both running at 50 ms: the
    # walk gives the shared time to the one that finished last (Jaeger's choice: the last
    # finishing child), not to the one loaded first.
    root = server("1", "/a", 0, 100)
    early = internal(root, "render", 10, 60)  # loaded first
    late = db(root, 20, 70)
    wb = workbook(root, early, late, db(root, 50, 100))
    row = budget.per_request(wb).row(0, named=True)
    assert row["db_ms"] == pytest.approx(50 + 30)  # the last query, then late's 20..50
    assert row["self_ms"] == pytest.approx(10 + 10)  # early's 10..20, and 0..10
