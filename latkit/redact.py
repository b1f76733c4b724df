"""Redaction: what a workbook keeps of private data when loaded with ``redact=True``.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pglogs/main.log", redact=True)
>>> wb.sql("select count(*) as n from queries where parameters is not null")["n"][0]
0

Applied to every staged batch before it is written (``latkit.enrich`` calls it), so the
workbook never holds the original values:

- SQL is kept only as its template (``latkit.fingerprint``: every literal and bind value is
  ``?``): ``spans.db_statement`` and the statement attributes, ``queries.statement``,
  ``plans.statement``, ``statements.query``, the expressions inside a plan (``Filter``,
  ``Index Cond``, ``Query Text``, ... in ``plans.plan``; ``plan_nodes.filter`` and
  ``index_cond``). ``queries.parameters`` (``DETAIL:  parameters:``) is NULL.
- Attributes (of spans, resources, events and links) named in ``Redaction.keys`` are dropped,
  hashed, cut to their path (URLs: the query string and fragment go) or templated (SQL);
  ``DEFAULT_KEYS`` lists what happens to which key.
- Free text that can quote values has its quoted strings, numbers and e-mail addresses
  replaced by ``?``: span names and status messages, every event attribute not named above
  (``exception.message``, ``exception.stacktrace``), reject reasons. Reject excerpts are not
  stored.
- Client addresses (``queries.client``, ``connections.client``) are hashed.

A hash keeps equality (distinct users can still be counted). Without a secret, a value
that can be guessed (an e-mail address, an IPv4 address: 2^32 of them) can be confirmed by
hashing the guess. With one (``wb.load(..., redact_secret=...)``, kept outside the
workbook), hashes are keyed BLAKE2b: nobody without the secret can test a guess, and
workbooks loaded with the same secret still join on the hashed values.

What it cannot do: values under attribute keys that are not named and are not free text (say
``app.customer_name``) are kept: add their keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from latkit import fingerprint
from latkit.schema import one_array

__all__ = ["DEFAULT_KEYS", "Action", "Redaction"]

#: What is done to an attribute's value: dropped (the key goes too), hashed, cut to the
#: path of a URL, or replaced by a SQL template.
Action = Literal["drop", "hash", "path", "template"]

DEFAULT_KEYS: dict[str, Action] = {
    # who the user is
    "enduser.id": "hash",
    "enduser.role": "drop",
    "user.id": "hash",
    "user.name": "hash",
    "user.email": "drop",
    "user.full_name": "drop",
    "usr.email": "drop",
    # where the request came from
    "client.address": "hash",
    "net.peer.ip": "hash",
    "net.sock.peer.addr": "hash",
    "network.peer.address": "hash",
    "http.client_ip": "hash",
    # what was asked (query strings carry ids, tokens, e-mails)
    "http.url": "path",
    "url.full": "path",
    "http.target": "path",
    "url.query": "drop",
    "http.request.header.authorization": "drop",
    "http.request.header.cookie": "drop",
    "http.response.header.set-cookie": "drop",
    # the statement as sent
    "db.statement": "template",
    "db.query.text": "template",
    "sql.query": "template",
    # how a process was started (arguments may hold secrets)
    "process.command_line": "drop",
    "process.command_args": "drop",
}

#: Keys of an EXPLAIN (FORMAT JSON) plan whose values are SQL expressions.
PLAN_EXPRESSIONS = frozenset(
    {
        "Query Text", "Filter", "Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond",
        "Join Filter", "One-Time Filter", "TID Cond", "Output", "Sort Key", "Group Key",
        "Presorted Key", "Cache Key", "Function Call", "Table Function Call", "Hash Key",
        "Order By", "Run Condition", "Repeatable Seed", "Sampling Parameters",
    }
)  # fmt: skip

# RE2 (pyarrow) patterns for values quoted in free text.
_EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
_QUOTED = r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\""
_NUMBER = r"-?\b\d+(?:[.,:_]\d+)*\b"


@dataclass(frozen=True)
class Redaction:
    """What to redact; ``Redaction()`` is the default, ``keys`` maps attribute keys to actions."""

    keys: Mapping[str, Action] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    #: The key of the hashes (empty: plain BLAKE2b). Never shown in a repr.
    secret: bytes = field(default=b"", repr=False)

    @classmethod
    def of(cls, keys: Mapping[str, Action] | None, secret: str | bytes | None = None) -> Redaction:
        """The default keys, with ``keys`` added (or changed); hashes keyed by ``secret``
        (any length: the BLAKE2b key is a digest of it) when one is given."""
        merged: dict[str, Action] = dict(DEFAULT_KEYS)
        merged.update(keys or {})
        bad = {k: v for k, v in merged.items() if v not in ("drop", "hash", "path", "template")}
        if bad:
            raise ValueError(f"unknown redaction action(s) {bad}: use drop, hash, path or template")
        if isinstance(secret, str):
            secret = secret.encode()
        key = hashlib.blake2b(secret, digest_size=32).digest() if secret else b""
        return cls(merged, key)

    # -- the tables ------------------------------------------------------------------------

    def spans(self, table: pa.Table) -> pa.Table:
        """A staged span table (with ``_db_statement`` and ``_query_template``) redacted."""
        table = _set(table, "_db_statement", table.column("_query_template"))
        for name in ("name", "status_message"):
            table = _set(table, name, scrub_text(table.column(name)))
        for name in ("attributes", "resource_attributes"):
            table = _set(table, name, self.key_values(table.column(name)))
        table = _set(table, "events", self._nested(table.column("events"), scrub_rest=True))
        return _set(table, "links", self._nested(table.column("links"), scrub_rest=False))

    def sql_table(self, table_name: str, table: pa.Table) -> pa.Table:
        """A staged query-log table (``queries``, ``plans``, ``plan_nodes``, ``statements``,
        ``connections``) redacted; ``query_template`` must already be there."""
        names = table.column_names
        if table_name in ("queries", "plans", "statements"):
            column = "query" if table_name == "statements" else "statement"
            if column in names:
                table = _set(table, column, table.column("query_template"))
        if "parameters" in names:
            table = _set(
                table, "parameters", pa.nulls(table.num_rows, table.schema.field("parameters").type)
            )
        if "client" in names:
            table = _set(table, "client", hashed(table.column("client"), self.secret))
        for name in ("filter", "index_cond"):
            if table_name == "plan_nodes" and name in names:
                table = _set(table, name, _template(table.column(name)))
        if table_name == "plans" and "plan" in names:
            table = _set(
                table,
                "plan",
                pa.array(
                    [None if p is None else plan_json(p) for p in table.column("plan").to_pylist()],
                    table.schema.field("plan").type,
                ),
            )
        return table

    # -- attribute lists -------------------------------------------------------------------

    def key_values(self, kvs: pa.Array | pa.ChunkedArray, scrub_rest: bool = False) -> pa.Array:
        """A key/value list column with each named key's action applied (``scrub_rest``:
        the values of other keys are scrubbed as free text)."""
        kvs = one_array(kvs)
        flat = kvs.flatten()
        if len(flat) == 0:
            return kvs
        keys, values = flat.field("key"), flat.field("value")
        named = pc.is_in(keys, value_set=pa.array(list(self.keys), pa.string()))
        for action in ("hash", "path", "template"):
            wanted = [k for k, a in self.keys.items() if a == action]
            mask = pc.is_in(keys, value_set=pa.array(wanted, pa.string()))
            if pc.any(mask).as_py():
                picked = values.filter(mask)
                changed = (
                    hashed(picked, self.secret) if action == "hash" else _ACTIONS[action](picked)
                )
                values = pc.replace_with_mask(values, mask, changed.cast(values.type))
        if scrub_rest:
            rest = pc.invert(named)
            if pc.any(rest).as_py():
                values = pc.replace_with_mask(
                    values, rest, scrub_text(values.filter(rest)).cast(values.type)
                )
        entries = pa.StructArray.from_arrays([keys, values], fields=list(flat.type))
        dropped = [k for k, a in self.keys.items() if a == "drop"]
        keep = pc.invert(pc.is_in(keys, value_set=pa.array(dropped, pa.string())))
        parents = pc.list_parent_indices(kvs).to_numpy()
        keep_np = keep.to_numpy(zero_copy_only=False)
        lengths = np.bincount(parents[keep_np], minlength=len(kvs))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        return pa.ListArray.from_arrays(
            pa.array(offsets), entries.filter(keep), type=kvs.type, mask=kvs.is_null()
        )

    def _nested(self, column: pa.Array | pa.ChunkedArray, scrub_rest: bool) -> pa.Array:
        """Events or links: a list of structs, each with an ``attributes`` list."""
        column = one_array(column)
        items = column.flatten()
        if len(items) == 0:
            return column
        fields = list(items.type)
        arrays = [items.field(f.name) for f in fields]
        for i, f in enumerate(fields):
            if f.name == "attributes":
                arrays[i] = self.key_values(arrays[i], scrub_rest=scrub_rest)
            elif f.name == "name" and scrub_rest:
                arrays[i] = scrub_text(arrays[i])
        rebuilt = pa.StructArray.from_arrays(arrays, fields=fields)
        lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        return pa.ListArray.from_arrays(
            pa.array(offsets), rebuilt, type=column.type, mask=column.is_null()
        )


# -- values ----------------------------------------------------------------------------------


def scrub_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Free text with quoted strings, numbers and e-mail addresses replaced by ``?``.

    >>> scrub_text(pa.array(["Key (email)=(ann@example.com) exists", "id 42 of 'x'"])).to_pylist()
    ['Key (email)=(?) exists', 'id ? of ?']
    """
    out = values
    for pattern in (_EMAIL, _QUOTED, _NUMBER):
        out = pc.replace_substring_regex(out, pattern, "?")
    return one_array(out)


def hashed(values: pa.Array | pa.ChunkedArray, secret: bytes = b"") -> pa.Array:
    """Each value as ``h:`` and 16 hex digits of BLAKE2b, keyed by ``secret`` if given
    (equal values stay equal).

    >>> hashed(pa.array(["10.0.0.7", None, "10.0.0.7"])).to_pylist()[1:]
    [None, 'h:02d93016ccd52ea4']
    """
    values = one_array(values)
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    digests = pa.array([_digest(v, secret) for v in encoded.dictionary.to_pylist()], pa.string())
    return digests.take(encoded.indices)


def url_path(values: pa.Array) -> pa.Array:
    """URLs (or request targets) without their query string and fragment.

    >>> url_path(pa.array(["https://shop/orders?email=a@b.c#top", "/health"])).to_pylist()
    ['https://shop/orders', '/health']
    """
    return pc.replace_substring_regex(values, r"[?#].*$", "")


def plan_json(text: str) -> str:
    """A plan (JSON text) with every expression in it templated; a plan that is not JSON
    (a text-format auto_explain plan) is scrubbed as a whole."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return json.dumps(_template(pa.array([text], pa.string()))[0].as_py())
    found: list[str] = []
    _expressions(doc, found.append)
    if isinstance(doc, str):
        return json.dumps(_template(pa.array([doc], pa.string()))[0].as_py())
    if not found:
        return text
    templated = iter(_template(pa.array(found, pa.string())).to_pylist())
    _expressions(doc, lambda _: next(templated), replace=True)
    return json.dumps(doc, ensure_ascii=False)


def _expressions(node: Any, visit: Any, replace: bool = False) -> None:
    """Visit (or replace, in place) every string under a ``PLAN_EXPRESSIONS`` key."""
    if isinstance(node, list):
        for item in node:
            _expressions(item, visit, replace)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in PLAN_EXPRESSIONS and isinstance(value, str):
                new = visit(value)
                if replace:
                    node[key] = new
            elif key in PLAN_EXPRESSIONS and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, str):
                        new = visit(item)
                        if replace:
                            value[i] = new
            else:
                _expressions(value, visit, replace)


def _template(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return fingerprint.templates(values)[0]


def _digest(value: str | None, secret: bytes = b"") -> str | None:
    if value is None:
        return None
    return "h:" + hashlib.blake2b(value.encode(), digest_size=8, key=secret).hexdigest()


_ACTIONS = {"path": url_path, "template": _template}  # "hash" takes the secret: ``hashed``


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = table.schema.get_field_index(name)
    if i < 0:
        return table
    return table.set_column(i, table.schema.field(i), values.cast(table.schema.field(i).type))
