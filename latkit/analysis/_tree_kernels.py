"""numba kernels behind ``latkit.analysis.tree`` (imported lazily: numba takes a while)."""

from __future__ import annotations

import numpy as np
from numba import njit

# Codes shared with tree.py (BUDGET and CATEGORIES there).
_SELF, _DB, _CACHE, _HTTP_CLIENT, _NETWORK = 0, 1, 2, 3, 4
_CAT_HTTP_CLIENT, _CAT_RPC, _CAT_DB, _CAT_CACHE, _CAT_MESSAGING = 1, 2, 3, 4, 5


@njit(cache=True)
def parents(trace_key, span_key, parent_key, is_root):
    """Row index of each span's parent within its trace (rows grouped by trace), or -1."""
    n = len(trace_key)
    parent = np.full(n, -1, dtype=np.int64)
    i = 0
    while i < n:
        j = i
        while j < n and trace_key[j] == trace_key[i]:
            j += 1
        if j - i <= 64:
            for k in range(i, j):
                if is_root[k]:
                    continue
                for m in range(i, j):
                    if span_key[m] == parent_key[k] and m != k:
                        parent[k] = m
                        break
        else:
            order = np.argsort(span_key[i:j]) + i
            keys = span_key[order]
            for k in range(i, j):
                if is_root[k]:
                    continue
                pos = np.searchsorted(keys, parent_key[k])
                if pos < len(keys) and keys[pos] == parent_key[k] and order[pos] != k:
                    parent[k] = order[pos]
        i = j
    return parent


@njit(cache=True)
def children(parent, start_ns):
    """Each span's children as linked lists: (first_child, next_sibling), -1 terminated."""
    n = len(parent)
    first_child = np.full(n, -1, dtype=np.int64)
    next_sibling = np.full(n, -1, dtype=np.int64)
    for k in range(n - 1, -1, -1):
        p = parent[k]
        if p >= 0:
            next_sibling[k] = first_child[p]
            first_child[p] = k
    return first_child, next_sibling


@njit(cache=True)
def _self_code(node, is_entry, in_callee, category, has_callee):
    if is_entry:
        return _SELF
    c = category[node]
    if c == _CAT_DB:
        return _DB
    if c == _CAT_CACHE:
        return _CACHE
    if c in (_CAT_HTTP_CLIENT, _CAT_RPC, _CAT_MESSAGING):
        return _NETWORK if has_callee else _HTTP_CLIENT
    return _HTTP_CLIENT if in_callee else _SELF


@njit(cache=True)
def partition(entries, start_ns, end_ns, category, is_server, first_child, next_sibling, emit):
    """Tile each entry span's duration with segments owned by one span each (Jaeger's walk).

    Returns the segments (only when ``emit``; the budget needs only the totals) and, per
    entry, the nanoseconds of each budget category.
    """
    totals = np.zeros((len(entries), 5), dtype=np.int64)
    cap = max(16, 4 * len(entries)) if emit else 0
    seg_entry = np.empty(cap, dtype=np.int64)
    seg_span = np.empty(cap, dtype=np.int64)
    seg_start = np.empty(cap, dtype=np.int64)
    seg_end = np.empty(cap, dtype=np.int64)
    seg_budget = np.empty(cap, dtype=np.int8)
    used = 0
    stack_node = np.empty(64, dtype=np.int64)
    stack_a = np.empty(64, dtype=np.int64)
    stack_b = np.empty(64, dtype=np.int64)
    stack_callee = np.empty(64, dtype=np.bool_)
    for e in range(len(entries)):
        root = entries[e]
        stack_node[0] = root
        stack_a[0] = start_ns[root]
        stack_b[0] = end_ns[root]
        stack_callee[0] = False
        top = 1
        while top > 0:
            top -= 1
            node = stack_node[top]
            a = stack_a[top]
            b = stack_b[top]
            in_callee = stack_callee[top]
            has_callee = False
            c = first_child[node]
            while c >= 0:
                if is_server[c]:
                    has_callee = True
                c = next_sibling[c]
            code = _self_code(node, node == root, in_callee, category, has_callee)
            t = b
            while t > a:
                best = -1
                best_start = a
                best_end = a
                c = first_child[node]
                while c >= 0:
                    cs = max(start_ns[c], a)
                    ce = min(end_ns[c], t)
                    if cs < t and ce > cs and (best == -1 or ce > best_end):
                        best = c
                        best_start = cs
                        best_end = ce
                    c = next_sibling[c]
                seg_from = a if best == -1 else best_end
                if seg_from < t:
                    totals[e, code] += t - seg_from
                if emit and seg_from < t:
                    if used == cap:
                        cap *= 2
                        seg_entry = _grow(seg_entry, cap)
                        seg_span = _grow(seg_span, cap)
                        seg_start = _grow(seg_start, cap)
                        seg_end = _grow(seg_end, cap)
                        seg_budget = _grow(seg_budget, cap)
                    seg_entry[used] = e
                    seg_span[used] = node
                    seg_start[used] = seg_from
                    seg_end[used] = t
                    seg_budget[used] = code
                    used += 1
                if best == -1:
                    break
                if top == len(stack_node):
                    stack_node = _grow(stack_node, 2 * top)
                    stack_a = _grow(stack_a, 2 * top)
                    stack_b = _grow(stack_b, 2 * top)
                    stack_callee = _grow(stack_callee, 2 * top)
                stack_node[top] = best
                stack_a[top] = best_start
                stack_b[top] = best_end
                stack_callee[top] = in_callee or is_server[best]
                top += 1
                t = best_start
    return (
        seg_entry[:used].copy(),
        seg_span[:used].copy(),
        seg_start[:used].copy(),
        seg_end[:used].copy(),
        seg_budget[:used].copy(),
        totals,
    )


@njit(cache=True)
def _grow(array, size):
    out = np.empty(size, dtype=array.dtype)
    out[: len(array)] = array
    return out
