"""Query templates and fingerprints: which statements are the same query with other values?

One function for spans and for query logs, so that traces and logs join on ``fingerprint``::

    >>> from latkit.fingerprint import fingerprint, template
    >>> template("select * from order_items where order_id = %s  /*traceparent='00-ab-cd-01'*/")
    'SELECT * FROM order_items WHERE order_id = ?'
    >>> template("SELECT * FROM order_items WHERE order_id = $1") == template(
    ...     "SELECT * FROM order_items WHERE order_id = 42;")
    True
    >>> len(fingerprint("SELECT 1")), fingerprint("SELECT 1") == fingerprint("select 2")
    (16, True)

Template rules (PostgreSQL dialect):

- Every value is one ``?``: string literals of every kind (``'O''Brien'``, ``E'\\n'``,
  ``$$...$$``, ``B'01'``, ``U&'...'``), numbers (``42``, ``-4121``, ``0.5``, ``1e5``, ``0x1F``),
  booleans, and driver or server placeholders (``%s``, ``%(name)s``, ``$1``, ``?``, ``:name``).
  A sign belongs to its number (``x + -4121`` and ``x + 17`` both give ``x + ?``). Numbers
  are values wherever they stand, so ``ORDER BY 1`` gives ``ORDER BY ?`` and ``VARCHAR(20)``
  gives ``VARCHAR(?)``, as pg_stat_statements does for the former.
- ``NULL`` stays ``NULL`` (as in pg_stat_statements); ``IS TRUE`` / ``IS FALSE`` stay too.
- In an ``IN`` list, a ``VALUES`` list or an ``ARRAY[...]``, an item that is the same as the
  first item after normalisation is dropped: ``IN (1, 2, 3)`` gives ``IN (?)`` and a
  ``VALUES`` list of any number of rows gives one row with one ``?`` per column,
  ``VALUES (?, ?)``.
- Keywords and known function names are upper-cased (as sqlglot writes them, which also
  spells casts ``CAST(? AS DATE)``); identifiers keep their case, and lose their quotes unless
  PostgreSQL needs them (``"order_items"`` gives ``order_items``, ``"Order"`` stays quoted).
- Comments go, whitespace collapses to one space, a trailing ``;`` goes.
- A dollar-quoted body is a value too, so every ``DO $$ ... $$`` block is ``DO ?``.

Statements sqlglot cannot parse (``VACUUM``, ``DO``, ``EXPLAIN``, truncated text, garbage)
get the template of the literal-stripping pass alone, with known keywords upper-cased; no
input raises.

``fingerprint`` is the first 8 bytes of BLAKE2b over the template, in hex: stable across
processes, machines and releases of Python.

The vectorised path, :func:`templates`, is what loading uses: one compiled lexing pass over
the Arrow buffers strips the literals of every statement (sqlglot parses only a few thousand
statements a second, and statements with literals are nearly all distinct), then sqlglot
normalises each distinct stripped text once, behind a bounded cache. :func:`template` is
the same path for one statement, so the two always agree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from sqlglot import exp

__all__ = ["fingerprint", "template", "templates"]

#: Distinct stripped texts whose normalised template is kept between calls.
CACHE_SIZE = 65_536

#: PostgreSQL's reserved key words (the "reserved" and "reserved (can be function or type)"
#: columns of the key word appendix): an identifier spelled like one keeps its quotes.
PG_RESERVED = frozenset(
    """
    ALL ANALYSE ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC AUTHORIZATION BINARY BOTH CASE CAST
    CHECK COLLATE COLLATION COLUMN CONCURRENTLY CONSTRAINT CREATE CROSS CURRENT_CATALOG
    CURRENT_DATE CURRENT_ROLE CURRENT_SCHEMA CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER
    DEFAULT DEFERRABLE DESC DISTINCT DO ELSE END EXCEPT FALSE FETCH FOR FOREIGN FREEZE FROM
    FULL GRANT GROUP HAVING ILIKE IN INITIALLY INNER INTERSECT INTO IS ISNULL JOIN LATERAL
    LEADING LEFT LIKE LIMIT LOCALTIME LOCALTIMESTAMP NATURAL NOT NOTNULL NULL OFFSET ON ONLY
    OR ORDER OUTER OVERLAPS PLACING PRIMARY REFERENCES RETURNING RIGHT SELECT SESSION_USER
    SIMILAR SOME SYMMETRIC SYSTEM_USER TABLE TABLESAMPLE THEN TO TRAILING TRUE UNION UNIQUE
    USER USING VARIADIC VERBOSE WHEN WHERE WINDOW WITH
    """.split()  # noqa: SIM905 - a word list reads better as words
)

#: Words upper-cased in the template of a statement sqlglot cannot parse: the reserved ones
#: plus the commands and clauses such statements are usually made of.
_FALLBACK_KEYWORDS = PG_RESERVED | frozenset(
    """
    ABORT ALTER BEGIN BETWEEN BY CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT CONFLICT COPY
    CURSOR DEALLOCATE DECLARE DELETE DISCARD DROP EXECUTE EXISTS EXPLAIN FORMAT IF INDEX
    INSERT LANGUAGE LISTEN LOCK MATERIALIZED MOVE NOTHING NOTIFY NOWAIT PREPARE REFRESH REINDEX
    RELEASE RESET REVOKE ROLLBACK SAVEPOINT SET SHARE SHOW SKIP LOCKED START TEMP TEMPORARY
    TRANSACTION TRUNCATE UNLISTEN UPDATE VACUUM VALUES VIEW WORK
    """.split()  # noqa: SIM905 - a word list reads better as words
)

_UNQUOTED_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")
_FALLBACK_TOKEN = re.compile(r"\"(?:[^\"]|\"\")*\"?|''|[^\W\d]\w*|\d+", re.UNICODE)


def template(sql: str) -> str:
    """The statement with every value replaced by ``?``, in a canonical spelling.

    >>> template("UPDATE pgbench_accounts SET abalance = abalance + -4121 WHERE aid = 3")
    'UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?'
    >>> template("select id from t where x in (1, 2, 3) and y = :y")
    'SELECT id FROM t WHERE x IN (?) AND y = ?'
    """
    import pyarrow as pa

    tpl, _ = templates(pa.array([sql], pa.large_string()))
    value = tpl[0].as_py()
    assert isinstance(value, str)
    return value


def fingerprint(sql: str) -> str:
    """16 hex digits that are the same for two statements exactly when their templates are.

    >>> fingerprint("SELECT * FROM t WHERE id = 1") == fingerprint("select * from t where id=$1")
    True
    >>> fingerprint("SELECT * FROM t WHERE id = 1") == fingerprint("SELECT * FROM u WHERE id = 1")
    False
    """
    return _digest(template(sql))


def templates(statements: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``(query_template, fingerprint)`` for a column of statements, aligned with it.

    Nulls stay null in both. Takes string, large string, string view or dictionary arrays;
    returns two string arrays.

    >>> import pyarrow as pa
    >>> tpl, fp = templates(pa.array(["select 1", None, "SELECT 2 -- again"]))
    >>> tpl.to_pylist()
    ['SELECT ?', None, 'SELECT ?']
    >>> fp[0] == fp[2], fp[1].is_valid
    (True, False)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from latkit.schema import one_array

    statements = one_array(statements)
    if not pa.types.is_dictionary(statements.type) and _repeated(statements):
        statements = pc.dictionary_encode(statements)
    if pa.types.is_dictionary(statements.type):
        # Strip each distinct text once; the indices say where each one goes.
        positions: pa.Array | None = statements.indices
        statements = statements.dictionary
    else:
        positions = None
    if not pa.types.is_large_string(statements.type):
        statements = statements.cast(pa.large_string())

    encoded = pc.dictionary_encode(_strip(statements))
    distinct = encoded.dictionary.to_pylist()
    tpl = pa.array([_normalise(text) for text in distinct], pa.string())
    fp = pa.array([_digest(text) for text in tpl.to_pylist()], pa.string())
    indices = encoded.indices
    if positions is not None:
        indices = indices.take(positions)
    return tpl.take(indices), fp.take(indices)


def _repeated(statements: pa.Array, sample: int = 4096) -> bool:
    """Whether the first ``sample`` statements repeat enough (half of them or more) for
    stripping each distinct text once to pay.

    Instrumented statements repeat (drivers send them with placeholders): on the OTLP
    benchmark's 667,000 statements, 50 distinct, ``templates`` took 0.14-0.26 CPU-s, and
    0.03-0.05 encoded first. Logged statements carry their literals and nearly never repeat:
    encoding 1M distinct ones costs 0.22-0.31 CPU-s more, as much as the strip it would save.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    head = statements.slice(0, sample).cast(pa.large_string())  # string views count too
    return bool(len(head)) and pc.count_distinct(head).as_py() * 2 <= len(head)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# --- the cheap pass -----------------------------------------------------------------------
#
# Regular expressions were measured first, on 1M statements (75 MB) on two cores: one
# replace pass over every row costs 0.3-2.4 s in pyarrow (RE2), polars (Rust regex) or
# DuckDB, and stripping literals right (strings, comments, quoted identifiers, numbers,
# placeholders) takes four such passes, 4-6 s in all. One lexing pass compiled with numba
# does it all in about 0.4 s of CPU, and splits over the cores. numba is imported on first
# use only (about 1.5 s, plus 1 s to load the compiled lexer from numba's cache, or 10-15 s
# to compile it the first time on a machine).


def _strip(statements: pa.Array) -> pa.Array:
    """Each statement of a ``large_string`` array with literals and comments stripped.

    Strings become ``''`` and numbers and placeholders ``0`` (so that sqlglot still parses
    ``DATE ''`` or ``''::date``), whitespace runs become one space, and the items of an
    ``IN`` or ``VALUES`` list that repeat the first item go (so that lists of any length
    give one text to parse).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(statements)
    _, offsets_buf, data_buf = statements.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[statements.offset :][: n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf else np.zeros(0, np.uint8)
    lex, classes = _lexer(), _classes()

    def strip_rows(first: int, last: int) -> pa.Array:
        bounds = offsets[first : last + 1]
        # The lexer writes no more than it reads, but for one byte in a row that ends in a
        # lone quote (' becomes '').
        out = np.empty(int(bounds[-1] - bounds[0]) + last - first, dtype=np.uint8)
        out_offsets = np.empty(last - first + 1, dtype=np.int64)
        lex(data, bounds, classes, np.zeros((6, 64), dtype=np.int64), out, out_offsets)
        return pa.LargeStringArray.from_buffers(
            last - first, pa.py_buffer(out_offsets), pa.py_buffer(out[: out_offsets[-1]])
        )

    # The compiled lexer releases the GIL, so parts of a large column run on every core.
    parts = min(os.cpu_count() or 1, 8) if n >= 100_000 else 1
    cuts = [n * k // parts for k in range(parts + 1)]
    if parts == 1:
        stripped = strip_rows(0, n)
    else:
        with ThreadPoolExecutor(parts) as pool:
            stripped = pa.concat_arrays(list(pool.map(strip_rows, cuts[:-1], cuts[1:])))
    if statements.null_count:
        valid = statements.is_valid()
        stripped = (
            pa.LargeStringArray.from_buffers(
                n,
                stripped.buffers()[1],
                stripped.buffers()[2],
                null_bitmap=valid.buffers()[1],
            )
            if valid.offset == 0
            else pc.if_else(valid, stripped, None)
        )
    return stripped


@lru_cache(maxsize=1)
def _lexer() -> Any:
    import numba

    return numba.njit(cache=True, nogil=True, boundscheck=False)(_lex_all)


# The lexer below is plain Python that numba compiles; it also runs uncompiled, which is how
# a debugger can step through it. Bytes are classified ASCII-wise by ``_classes()`` (1 letter,
# 2 digit, 4 space, 0 anything else): every byte >= 0x80 counts as a letter, so multi-byte
# UTF-8 characters are copied whole.

_LETTER, _DIGIT, _SPACE = 1, 2, 4


@lru_cache(maxsize=1)
def _classes() -> np.ndarray:
    import numpy as np

    table = np.zeros(256, dtype=np.uint8)
    for c in range(256):
        if c >= 0x80 or c == ord("_") or chr(c).isalpha():
            table[c] = _LETTER
        elif chr(c).isdigit():
            table[c] = _DIGIT
        elif c == 32 or 9 <= c <= 13:
            table[c] = _SPACE
    return table


def _lex_all(
    data: np.ndarray,
    offsets: np.ndarray,
    classes: np.ndarray,
    stack: np.ndarray,
    out: np.ndarray,
    out_offsets: np.ndarray,
) -> None:
    """Write each statement of ``data`` stripped to ``out``; see ``_strip``."""
    values_word = (118, 97, 108, 117, 101, 115)  # b"values"
    pos = 0
    # One frame per open IN list or VALUES list: its kind (1 IN, 2 VALUES), the paren depth
    # its separating commas sit at, the first item's span, where the current item starts,
    # and where the comma before it was written (-1 while on the first item).
    # (``stack`` holds these six rows, so that deeper nesting is simply not collapsed.)
    max_frames = stack.shape[1]
    f_kind, f_level, f_first0, f_first1, f_item, f_sep = (
        stack[0],
        stack[1],
        stack[2],
        stack[3],
        stack[4],
        stack[5],
    )
    for row in range(len(offsets) - 1):
        out_offsets[row] = pos
        start = pos
        i = offsets[row]
        end = offsets[row + 1]
        pending_space = False
        depth = 0
        frames = 0
        after = 0  # 1 right after the keyword IN, 2 right after VALUES
        while True:
            # Past the last byte comes one more round with c = 0, to close an open list.
            c = data[i] if i < end else 0
            cls = classes[c]
            nxt = data[i + 1] if i + 1 < end else 0
            if cls == 4:  # whitespace
                pending_space = True
                i += 1
                continue
            if c == 45 and nxt == 45:  # -- comment
                while i < end and data[i] != 10:
                    i += 1
                pending_space = True
                continue
            if c == 47 and nxt == 42:  # /* comment */, nested as PostgreSQL nests them
                nest = 1
                i += 2
                while i < end and nest > 0:
                    a = data[i]
                    b = data[i + 1] if i + 1 < end else 0
                    if a == 42 and b == 47:
                        nest -= 1
                        i += 2
                    elif a == 47 and b == 42:
                        nest += 1
                        i += 2
                    else:
                        i += 1
                pending_space = True
                continue

            # A token [i, j) follows; it is written as is (0), as '' (1) or as 0 (2).
            kind = 0
            j = i + 1
            word = False
            quote_from = -1  # a quoted string's opening quote, when there is one
            backslash = False
            if i >= end:
                j = end
            elif c == 39:  # 'string'
                quote_from = i
            elif c == 34:  # "quoted identifier", "" doubles a quote
                while j < end:
                    if data[j] == 34:
                        if j + 1 < end and data[j + 1] == 34:
                            j += 2
                            continue
                        j += 1
                        break
                    j += 1
                word = True
            elif cls == 1:  # a word, or the prefix of E'', B'', X'', N'' or U&''
                while j < end and (classes[data[j]] & 3 or data[j] == 36):
                    j += 1
                word = True
                q = data[j] if j < end else 0
                if j == i + 1 and q == 39 and (c | 32) in (101, 98, 120, 110):
                    quote_from = j
                    backslash = (c | 32) == 101
                elif (
                    j == i + 1 and q == 38 and (c | 32) == 117 and j + 1 < end and data[j + 1] == 39
                ):
                    quote_from = j + 1
            elif cls == 2 or (c == 46 and classes[nxt] == 2):  # a number
                kind = 2
                if c == 48 and (nxt | 32) in (120, 111, 98):  # 0x1F 0o17 0b101
                    j = i + 2
                    while j < end and classes[data[j]] & 3:
                        j += 1
                else:
                    while j < end and (classes[data[j]] == 2 or data[j] == 95):
                        j += 1
                    # A decimal point, but not the first dot of 1..2
                    if (
                        c != 46
                        and j < end
                        and data[j] == 46
                        and not (j + 1 < end and data[j + 1] == 46)
                    ):
                        j += 1
                        while j < end and (classes[data[j]] == 2 or data[j] == 95):
                            j += 1
                    if j < end and (data[j] | 32) == 101:
                        k = j + 1
                        if k < end and (data[k] == 43 or data[k] == 45):
                            k += 1
                        if k < end and classes[data[k]] == 2:
                            j = k
                            while j < end and classes[data[j]] == 2:
                                j += 1
            elif c == 36:  # $1, or a $tag$ dollar-quoted string $tag$
                if classes[nxt] == 2:
                    while j < end and classes[data[j]] == 2:
                        j += 1
                    kind = 2
                else:
                    t = j
                    while t < end and classes[data[t]] & 3:
                        t += 1
                    if t < end and data[t] == 36:
                        tag_len = t + 1 - i
                        j = end
                        k = t + 1
                        while k + tag_len <= end:
                            same = True
                            for m in range(tag_len):
                                if data[k + m] != data[i + m]:
                                    same = False
                                    break
                            if same:
                                j = k + tag_len
                                break
                            k += 1
                        kind = 1
            elif c == 37:  # %s, %(name)s; %% is a percent sign
                if nxt == 115:
                    j = i + 2
                    kind = 2
                elif nxt == 40:
                    k = i + 2
                    while k < end and data[k] != 41:
                        k += 1
                    if k + 1 < end and data[k + 1] == 115:
                        j = k + 2
                        kind = 2
                elif nxt == 37:
                    j = i + 2
            elif c == 63:  # ? is a placeholder, but ?| ?& and the ?? escape are operators
                if nxt == 124 or nxt == 38 or nxt == 63:
                    j = i + 2
                else:
                    kind = 2
            elif c == 58:  # :name is a placeholder, :: a cast, a[lo:hi] a slice
                if nxt == 58:
                    j = i + 2
                elif classes[nxt] == 1:
                    p = pos - 1
                    while p >= start and out[p] == 32:
                        p -= 1
                    if p < start or not (classes[out[p]] & 3 or out[p] == 41 or out[p] == 93):
                        j = i + 2
                        while j < end and classes[data[j]] & 3:
                            j += 1
                        kind = 2
            if quote_from >= 0:  # to the closing quote; '' doubles it, in E'' so does \'
                j = quote_from + 1
                while j < end:
                    b = data[j]
                    if backslash and b == 92:
                        j += 2
                        continue
                    if b == 39:
                        if j + 1 < end and data[j + 1] == 39:
                            j += 2
                            continue
                        j += 1
                        break
                    j += 1
                j = min(j, end)
                kind = 1
                word = False

            # IN and VALUES lists: an item that repeats the first is unwritten, comma and all.
            # Items end at a comma between them, at the ) of an IN list, and at whatever
            # follows the last row of a VALUES list.
            if frames > 0 and depth == f_level[frames - 1]:
                top = frames - 1
                closes = c == 44 or (f_kind[top] == 1 and c == 41)
                ends_values = f_kind[top] == 2 and c != 44 and c != 40
                if closes or ends_values:
                    if f_sep[top] < 0:
                        f_first0[top] = f_item[top]
                        f_first1[top] = pos
                    else:
                        # Compared without the spaces around them: "1, 2" lists as "1,2".
                        a0, a1, b0, b1 = f_item[top], pos, f_first0[top], f_first1[top]
                        while a0 < a1 and out[a0] == 32:
                            a0 += 1
                        while a1 > a0 and out[a1 - 1] == 32:
                            a1 -= 1
                        while b0 < b1 and out[b0] == 32:
                            b0 += 1
                        while b1 > b0 and out[b1 - 1] == 32:
                            b1 -= 1
                        same = a1 - a0 == b1 - b0
                        k = 0
                        while same and k < a1 - a0:
                            same = out[a0 + k] == out[b0 + k]
                            k += 1
                        if same:
                            pos = f_sep[top]
                    if c == 44:
                        pending_space = False
                        f_sep[top] = pos
                        f_item[top] = pos + 1
                    else:
                        frames -= 1
            if i >= end:
                break
            if pending_space:
                if pos > start:
                    out[pos] = 32
                    pos += 1
                pending_space = False
            if c == 40 and after == 2 and frames < max_frames:
                f_kind[frames] = 2
                f_level[frames] = depth
                f_sep[frames] = -1
                f_item[frames] = pos
                frames += 1
            if kind == 0:
                for k in range(j - i):
                    out[pos + k] = data[i + k]
                pos += j - i
            elif kind == 1:
                out[pos] = 39
                out[pos + 1] = 39
                pos += 2
            else:
                out[pos] = 48
                pos += 1
            if c == 40:
                depth += 1
                if after == 1 and frames < max_frames:
                    f_kind[frames] = 1
                    f_level[frames] = depth
                    f_sep[frames] = -1
                    f_item[frames] = pos
                    frames += 1
            elif c == 41:
                depth -= 1
                while frames > 0 and f_level[frames - 1] > depth:
                    frames -= 1
            elif c == 59:
                depth = 0
                frames = 0
            after = 0
            if word and j - i == 2 and (c | 32) == 105 and (data[i + 1] | 32) == 110:
                after = 1
            elif word and j - i == 6:
                after = 2
                for m in range(6):
                    if data[i + m] | 32 != values_word[m]:
                        after = 0
                        break
            i = j
        # A statement ends without trailing spaces or semicolons.
        while pos > start and (out[pos - 1] == 32 or out[pos - 1] == 59):
            pos -= 1
    out_offsets[len(offsets) - 1] = pos


# --- the sqlglot pass ---------------------------------------------------------------------


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    # sqlglot logs an error for every statement it falls back to parsing as a Command
    # (VACUUM, DO, EXPLAIN ...); here that is expected, and the fallback is ours to make.
    logger = logging.getLogger("sqlglot")
    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


@lru_cache(maxsize=CACHE_SIZE)
def _normalise(stripped: str) -> str:
    """The template of one stripped text: sqlglot's spelling, or the fallback's."""
    import sqlglot
    from sqlglot import exp

    try:
        with _quiet_sqlglot():
            trees = sqlglot.parse(stripped, dialect="postgres")
            if any(tree is None or isinstance(tree, exp.Command) for tree in trees):
                return _fallback(stripped)
            return "; ".join(
                _canonical(tree).sql(dialect="postgres", comments=False)
                for tree in trees
                if tree is not None
            )
    except Exception:  # sqlglot raises several kinds on odd input; none may escape
        return _fallback(stripped)


def _canonical(tree: exp.Expr) -> exp.Expr:
    from sqlglot import exp

    def values_to_placeholders(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Boolean) and isinstance(node.parent, exp.Is):
            return node
        if isinstance(node, exp.Literal | exp.Boolean | exp.Placeholder | exp.Parameter):
            return exp.Placeholder(jdbc=True)
        if isinstance(node, exp.Identifier) and node.quoted:
            name = node.name
            if _UNQUOTED_IDENTIFIER.fullmatch(name) and name.upper() not in PG_RESERVED:
                node.set("quoted", False)
        return node

    def fold(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Placeholder):
            return node.this
        if isinstance(node, exp.Interval) and isinstance(node.this, exp.Placeholder):
            # sqlglot would write INTERVAL '?': a string, where a value was meant.
            unit = node.args.get("unit")
            return exp.var("INTERVAL ?" + (f" {unit.sql('postgres')}" if unit else ""))
        if isinstance(node, exp.In | exp.Values | exp.Array) and len(node.expressions) > 1:
            first, *rest = node.expressions
            kept = [first, *(item for item in rest if item != first)]
            if len(kept) < len(node.expressions):
                node.set("expressions", kept)
        if isinstance(node, exp.WindowSpec):
            for key in ("kind", "start_side", "end_side"):
                value = node.args.get(key)
                if isinstance(value, str):
                    node.set(key, value.upper())
        return node

    tree = tree.transform(values_to_placeholders, copy=True)
    # Folded bottom-up, so that -(-1) and lists of signed numbers fold completely.
    for node in list(tree.walk(bfs=False))[::-1]:
        replacement = fold(node)
        if replacement is not node:
            node.replace(replacement)
            if node is tree:
                tree = replacement
    return tree


def _fallback(stripped: str) -> str:
    """A template from the stripped text alone: values to ``?``, known keywords upper-cased."""

    def token(match: re.Match[str]) -> str:
        text = match.group()
        if text == "''" or text.isdigit():
            return "?"
        if text.upper() in _FALLBACK_KEYWORDS:
            return text.upper()
        return text

    return _FALLBACK_TOKEN.sub(token, stripped)
