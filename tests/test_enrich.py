"""Promoting hot attributes to columns (``latkit.enrich.attributes``)."""

from __future__ import annotations

import random

import pyarrow as pa

from latkit import enrich
from latkit.schema import KEY_VALUES, one_array

Pairs = list[dict[str, str | None]] | None


def _plain(rows: list[Pairs], wanted: dict[str, tuple[str, ...]]) -> dict[str, list]:
    """The rule written out in Python: the first listed key present; of a key repeated in a
    row, its last value."""
    out: dict[str, list] = {name: [] for name in wanted}
    for row in rows:
        for name, keys in wanted.items():
            found = None
            for key in keys:
                values = [kv["value"] for kv in row or [] if kv["key"] == key]
                if values:
                    found = values[-1]
                    break
            out[name].append(found)
    return out


def test_the_current_name_wins_over_the_older_one_in_any_order() -> None:
    kvs = pa.array(
        [
            [{"key": "db.statement", "value": "old"}, {"key": "db.query.text", "value": "new"}],
            [{"key": "db.query.text", "value": "new"}, {"key": "db.statement", "value": "old"}],
            [{"key": "db.statement", "value": "old"}],
            [],
        ],
        KEY_VALUES,
    )
    got = enrich.attributes(kvs, {"s": ("db.query.text", "db.statement", "sql.query")})
    assert got["s"].to_pylist() == ["new", "new", "old", None]


def test_a_key_repeated_in_a_row_gives_its_last_value() -> None:
    kvs = pa.array([[{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]], KEY_VALUES)
    assert enrich.attribute(kvs, ("a",)).to_pylist() == ["2"]


def test_keys_that_only_share_a_prefix_or_length_do_not_match() -> None:
    kvs = pa.array(
        [[{"key": "http.rout", "value": "x"}, {"key": "http.routf", "value": "y"}]], KEY_VALUES
    )
    assert enrich.attribute(kvs, ("http.route",)).to_pylist() == [None]


def test_promotion_agrees_with_the_rule_on_random_lists_sliced_and_chunked() -> None:
    rng = random.Random(7)
    keys = ["http.route", "url.template", "db.statement", "db.query.text", "cache.hit", "x", "é"]
    rows: list[Pairs] = []
    for _ in range(3000):
        if rng.random() < 0.05:
            rows.append(None)
            continue
        row = []
        for _ in range(rng.randrange(0, 6)):
            key = rng.choice(keys) if rng.random() > 0.05 else None
            value = None if rng.random() < 0.1 else str(rng.randrange(1000))
            row.append({"key": key, "value": value})
        rows.append(row)
    wanted = {
        "_route": ("http.route", "url.template"),
        "_db_statement": ("db.query.text", "db.statement"),
        "_cache_hit": ("cache.hit",),
        "_e": ("é",),
        "_none": ("absent",),
    }
    kvs = pa.array(rows, KEY_VALUES)
    got = enrich.attributes(kvs, wanted)
    assert {k: v.to_pylist() for k, v in got.items()} == _plain(rows, wanted)
    sliced = enrich.attributes(kvs.slice(1234, 700), wanted)
    assert {k: v.to_pylist() for k, v in sliced.items()} == _plain(rows[1234:1934], wanted)
    chunked = pa.chunked_array([kvs.slice(0, 10), kvs.slice(10)])
    assert (
        enrich.attributes(chunked, wanted)["_route"].to_pylist() == _plain(rows, wanted)["_route"]
    )


def test_empty_and_attribute_free_columns_give_nulls() -> None:
    assert enrich.attribute(pa.array([], KEY_VALUES), ("a",)).to_pylist() == []
    assert enrich.attribute(pa.array([[], None], KEY_VALUES), ("a",)).to_pylist() == [None, None]
    assert enrich.attribute(pa.chunked_array([], KEY_VALUES), ("a",)).to_pylist() == []


def test_one_array_keeps_a_single_chunk_without_copying_it() -> None:
    values = pa.array([[{"key": "a", "value": "1"}], [], [{"key": "b", "value": None}]], KEY_VALUES)
    alone = one_array(pa.chunked_array([values]))
    assert alone.buffers()[1].address == values.buffers()[1].address  # the same memory
    assert one_array(pa.chunked_array([values[:1], values[1:]])).equals(values)
    assert one_array(pa.chunked_array([], KEY_VALUES)).type == KEY_VALUES
    assert one_array(values) is values


def test_promotion_reads_a_sliced_chunk_like_the_whole() -> None:
    kvs = pa.array(
        [[{"key": "http.route", "value": f"/r{i}"}, {"key": "x", "value": "y"}] for i in range(6)],
        KEY_VALUES,
    )
    part = enrich.attribute(pa.chunked_array([kvs.slice(2, 3)]), ("http.route",))
    assert part.to_pylist() == ["/r2", "/r3", "/r4"]
