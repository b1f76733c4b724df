"""numba kernels behind ``latkit.analysis.tree`` (imported lazily: numba takes a while)."""

from __future__ import annotations

import numpy as np
from numba import njit

# Codes shared with tree.py (BUDGET and CATEGORIES there).
_SELF, _DB, _CACHE, _HTTP_CLIENT, _NETWORK = 0, 1, 2, 3, 4
_CAT_HTTP_CLIENT, _CAT_RPC, _CAT_DB, _CAT_CACHE, _CAT_MESSAGING = 1, 2, 3, 4, 5
_SERVER = 256  # bit of ``NODE.code`` set on server spans; the low byte is the category

#: One span as the walk sees it, 32 bytes: everything it reads about a span sits in one
#: cache line. The spans of a trace lie far apart in a table loaded batch by batch, so a walk
#: over separate arrays (start, end, category, children...) missed the cache once per array
#: per span; packing them took the partition of 2M spans from 0.70 to 0.60 s (the 6x of this
#: rewrite came from the caller-grown buffers, see ``partition``).
NODE = np.dtype(
    [
        ("start", "<i8"),
        ("end", "<i8"),
        ("first", "<i4"),  # first child (row), -1 for none
        ("next", "<i4"),  # next sibling (row), -1 at the last
        ("code", "<i4"),  # category, | _SERVER on a server span
        ("pad", "<i4"),
    ],
    align=True,
)

#: Deeper than this, a span is treated as a leaf: real traces are far shallower, and a
#: parent cycle in hostile input must not walk forever.
_MAX_DEPTH = 10_000


@njit(cache=True)
def nodes(parent, start_ns, end_ns, category, is_server):
    """Pack the spans into ``NODE`` records, with each span's children linked in row order."""
    n = len(parent)
    out = np.empty(n, dtype=NODE)
    for k in range(n):
        out[k].start = start_ns[k]
        out[k].end = end_ns[k]
        out[k].first = -1
        out[k].next = -1
        out[k].code = category[k] | (_SERVER if is_server[k] else 0)
        out[k].pad = 0
    for k in range(n - 1, -1, -1):
        p = parent[k]
        if p >= 0:
            out[k].next = out[p].first
            out[p].first = k
    return out


#: ``partition``'s answers: done, or which buffer to enlarge before calling it again.
DONE, MORE_STACK, MORE_KIDS, MORE_SEGMENTS = 0, 1, 2, 3


@njit(cache=True)
def partition(entries, spans, first, totals, segments, used, stack, kids, emit):
    """Tile each entry span's duration with segments owned by one span each (Jaeger's walk).

    ``spans`` are ``NODE`` records. Each span's children are sorted by end, latest first
    (ties: the first loaded), so the backwards walk takes them in one pass: at each step the
    next child that starts before the cursor is the one that finished last. A child skipped
    once (it starts after the cursor, or ends before the span's window) can never qualify
    later, because the cursor only moves back. Rescanning all the children at every step
    instead cost O(k^2) for k children.

    Fills ``totals[e]`` (nanoseconds per budget category) and, when ``emit``, the rows of
    ``segments`` (entry, span, start, end, budget) from row ``used`` on, for the entries from
    ``first`` on. The buffers are the caller's and never grow here: an array reassigned inside
    a numba loop is reference-counted at every step, which made this walk 10x slower. When a
    buffer is full the walk stops before the entry it could not finish and returns ``(code,
    entry, used)``; the caller enlarges that buffer and calls again from ``entry``.
    """
    for e in range(first, len(entries)):
        start_used = used
        root = entries[e]
        totals[e, :] = 0
        stack[0, 0] = root
        stack[0, 1] = spans[root].start
        stack[0, 2] = spans[root].end
        stack[0, 3] = 0  # depth * 2 + (1 inside a callee)
        top = 1
        while top > 0:
            top -= 1
            node = stack[top, 0]
            a = stack[top, 1]
            b = stack[top, 2]
            depth = stack[top, 3] >> 1
            in_callee = (stack[top, 3] & 1) == 1
            # The children, sorted by end (insertion sort: most spans have a few).
            m = 0
            has_callee = False
            c = spans[node].first if depth < _MAX_DEPTH else -1
            while c >= 0:
                if spans[c].code & _SERVER:
                    has_callee = True
                if m == len(kids):
                    return MORE_KIDS, e, start_used
                end = spans[c].end
                j = m - 1
                while j >= 0 and spans[kids[j]].end < end:
                    kids[j + 1] = kids[j]
                    j -= 1
                kids[j + 1] = c
                m += 1
                c = spans[c].next
            # Whose time is the node's own time?
            category = spans[node].code & 255
            if node == root:
                code = _SELF
            elif category == _CAT_DB:
                code = _DB
            elif category == _CAT_CACHE:
                code = _CACHE
            elif category in (_CAT_HTTP_CLIENT, _CAT_RPC, _CAT_MESSAGING):
                code = _NETWORK if has_callee else _HTTP_CLIENT
            else:
                code = _HTTP_CLIENT if in_callee else _SELF
            t = b
            i = 0
            while t > a:
                best = -1
                best_start = a
                best_end = a
                while i < m:
                    c = kids[i]
                    i += 1
                    cs = max(spans[c].start, a)
                    ce = min(spans[c].end, t)
                    if cs < t and ce > cs:
                        best = c
                        best_start = cs
                        best_end = ce
                        break
                seg_from = a if best == -1 else best_end
                if seg_from < t:
                    totals[e, code] += t - seg_from
                    if emit:
                        if used == len(segments):
                            return MORE_SEGMENTS, e, start_used
                        segments[used, 0] = e
                        segments[used, 1] = node
                        segments[used, 2] = seg_from
                        segments[used, 3] = t
                        segments[used, 4] = code
                        used += 1
                if best == -1:
                    break
                if top == len(stack):
                    return MORE_STACK, e, start_used
                stack[top, 0] = best
                stack[top, 1] = best_start
                stack[top, 2] = best_end
                callee = in_callee or (spans[best].code & _SERVER) != 0
                stack[top, 3] = (depth + 1) * 2 + (1 if callee else 0)
                top += 1
                t = best_start
    return DONE, len(entries), used
