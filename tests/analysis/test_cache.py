"""Cache hit rates, inference and the LRU size curve, on data whose answers are known."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import polars as pl
import pytest

from latkit import charts
from latkit.analysis import cache
from tests.spantree import cache as cache_get
from tests.spantree import cache_set, db, internal, server, span, workbook

PRODUCT_SQL = "SELECT id, name FROM products WHERE id = %s"


def _request(
    trace: str, t0: float, key: str | None, outcome: str, observed: bool = True
) -> list[dict[str, Any]]:
    """One cache-aside request: ``hit`` (3 ms), ``miss`` (GET, SELECT, SETEX: 7 ms) or
    ``absent`` (a miss on a row that does not exist: GET, SELECT, no write: 5 ms)."""
    duration = {"hit": 3.0, "miss": 7.0, "absent": 5.0}[outcome]
    root = server(trace, "/products/{id}", t0, t0 + duration)
    attrs: dict[str, Any] = {}
    if key is not None and observed:
        attrs["cache_key"] = key
    if observed:
        attrs["cache_hit"] = outcome == "hit"
    spans = [root, cache_get(root, t0 + 0.5, t0 + 1.5, **attrs)]  # every read takes 1 ms
    if outcome != "hit":
        spans.append(db(root, t0 + 2, t0 + 4, sql=PRODUCT_SQL))  # every fill takes 2 ms
    if outcome == "miss":
        spans.append(cache_set(root, t0 + 4.5, t0 + 5))  # every write takes 0.5 ms
    return spans


def _stream(outcomes: list[tuple[str | None, str]], observed: bool = True,
            gap_ms: float = 10.0) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for i, (key, outcome) in enumerate(outcomes):
        spans += _request(f"{i + 1:x}", i * gap_ms, key, outcome, observed)
    return spans


MIX = [("product:1", "miss"), ("product:1", "hit"), ("product:2", "miss"),
       ("product:1", "hit"), ("product:99", "absent"), ("product:2", "hit")]


@pytest.mark.parametrize("observed", [True, False])
def test_hit_rate_is_the_same_whether_cache_hit_is_recorded_or_inferred(observed: bool) -> None:
    wb = workbook(*_stream(MIX, observed=observed))
    found = cache.lookups(wb)
    assert found["hit"].to_list() == [False, True, False, True, False, True]
    assert set(found["hit_source"]) == {"observed" if observed else "inferred"}
    assert found["evidence"].to_list() == [
        "fill then write", "no fill", "fill then write", "no fill", "fill, no write", "no fill"]
    assert found["route"].unique().to_list() == ["/products/{id}"]
    row = cache.hit_rates(wb, by="route").row(0, named=True)
    assert (row["lookups"], row["hits"], row["misses"], row["unknown"]) == (6, 3, 3, 0)
    assert row["hit_rate"] == pytest.approx(0.5)
    assert row["inferred"] == (0 if observed else 6)
    assert row["request_p50_ms_hit"] == pytest.approx(3.0)
    assert row["request_p50_ms_miss"] == pytest.approx(7.0)
    assert row["fill_ms"] == pytest.approx(2.0)
    # With no cache, each of the 3 hits would have been a 7 ms filled request less its read
    # (1 ms) and write (0.5 ms): 5.5 ms instead of 3. The misses spent 3 reads of 1 ms and
    # 2 writes of 0.5 ms on the cache for nothing. Net: 31.5 ms without a cache, 28 with.
    assert row["saved_ms"] == pytest.approx(3 * (5.5 - 3))
    assert row["miss_cost_ms"] == pytest.approx(3 * 1.0 + 2 * 0.5)
    assert row["net_saved_ms"] == pytest.approx(31.5 - 28)


def test_inference_agrees_with_recorded_hits() -> None:
    wb = workbook(*_stream(MIX, observed=True))
    inferred = cache.infer_hits(wb).join(
        cache.lookups(wb).select("span_id", "observed_hit"), on="span_id")
    assert inferred["inferred_hit"].to_list() == inferred["observed_hit"].to_list()
    assert inferred["fill_queries"].to_list() == [1, 0, 1, 0, 1, 0]


def test_several_reads_under_one_parent_each_get_their_own_window() -> None:
    root = server("1", "/page", 0, 30)
    wb = workbook(
        root,
        cache_get(root, 1, 2),                      # hit: the next span is another read
        cache_get(root, 3, 4),                      # miss: filled and written
        db(root, 5, 7, sql=PRODUCT_SQL),
        cache_set(root, 8, 9),
        cache_get(root, 10, 11),                    # hit
        cache_get(root, 12, 12.5),                  # miss, not written (no such row)
        db(root, 13, 15, sql="SELECT 1 FROM orders WHERE id = %s"),
    )
    found = cache.lookups(wb)
    assert found["hit"].to_list() == [True, False, True, False]
    assert found["evidence"].to_list() == ["no fill", "fill then write", "no fill",
                                           "fill, no write"]
    assert found["fill_template"].to_list()[1] == "SELECT id, name FROM products WHERE id = ?"


def test_a_read_with_no_parent_stays_unknown() -> None:
    orphan = span("1", "GET", 0, 1, kind="client", db_system="redis", db_statement="GET ?")
    found = cache.lookups(workbook(orphan))
    assert found["hit"].to_list() == [None]
    assert found["evidence"].to_list() == ["no parent"]
    assert cache.hit_rates(workbook(orphan))["unknown"].to_list() == [1]


def test_javascript_style_spans_keys_from_the_statement_and_ties_in_one_millisecond() -> None:
    # ioredis keeps the key in the statement, names are lowercase, current attribute names,
    # and Express puts the calls under a "request handler" span, all on whole milliseconds.
    root = server("1", "/items/:id", 0, 10, service="api")
    handler = internal(root, "request handler - /items/:id", 0, 10)

    def redis(name: str, statement: str, at: float) -> dict[str, Any]:
        return span("1", name, at, at + 1, parent=handler, kind="client", service="api",
                    db_system_name="redis", db_query_text=statement)

    pg = span("1", "pg.query:SELECT shop", 2, 3, parent=handler, kind="client", service="api",
              db_system_name="postgresql", db_query_text="SELECT * FROM items WHERE id = $1")
    wb = workbook(root, handler, redis("get", "get item:123", 2), pg,
                  redis("set", "set item:123 ?", 3), redis("get", "get item:7", 5))
    found = cache.lookups(wb)
    assert found["key"].to_list() == ["item:123", "item:7"]
    assert found["key_pattern"].to_list() == ["item:{id}", "item:{id}"]
    assert found["operation"].to_list() == ["GET", "GET"]
    assert found["route"].to_list() == ["/items/:id", "/items/:id"]
    assert found["hit"].to_list() == [False, True]
    assert found["evidence"].to_list() == ["fill then write", "no fill"]


def test_key_patterns_replace_values_but_keep_dimensions() -> None:
    keys = ["user:42:profile", "session:3f2a9c1e-0b7d-4c55-9a11-2b6f0c8d9e10",
            "u:ana@example.com:v2", "blob:9f86d081884c7d659a2feaa0c55ad015",
            "report:2024-05-21:en-GB", "a:1:2", "tok_123", "plain", None]
    assert cache.key_patterns(keys) == [
        "user:{id}:profile", "session:{uuid}", "u:{email}:v2", "blob:{hash}",
        "report:{date}:en-GB", "a:{id}:{id}", "tok_{id}", "plain", None]


def test_hit_rates_by_time_bucket() -> None:
    wb = workbook(*_stream(MIX, gap_ms=1000.0))  # one request a second
    rates = cache.hit_rates(wb, by="3s")
    # Buckets are aligned to the epoch (as polars truncates), not to the first lookup.
    expected = (
        cache.lookups(wb)
        .group_by(pl.col("time").dt.truncate("3s").alias("bucket"))
        .agg(pl.len().alias("lookups"), pl.col("hit").sum().alias("hits"))
        .sort("bucket")
    )
    assert rates["bucket"].to_list() == expected["bucket"].to_list()
    assert rates["lookups"].to_list() == expected["lookups"].to_list()
    assert rates["hits"].to_list() == expected["hits"].to_list()
    assert rates.height == 3 and rates["lookups"].sum() == 6
    with pytest.raises(ValueError, match="time bucket"):
        cache.hit_rates(wb, by="colour")


# -- stack distances and the size curve ----------------------------------------------------


def _lru_brute_force(keys: list[int], size: int, ttl: float = float("inf"),
                     times: list[float] | None = None) -> float:
    cached: OrderedDict[int, float] = OrderedDict()
    hits = 0
    for i, k in enumerate(keys):
        now = times[i] if times is not None else float(i)
        if k in cached and now - cached[k] < ttl:
            hits += 1
            cached.move_to_end(k)
            continue
        cached.pop(k, None)
        cached[k] = now
        if len(cached) > size:
            cached.popitem(last=False)
    return hits / len(keys)


def test_stack_distances_of_a_small_stream() -> None:
    assert cache.stack_distances(["a", "b", "c", "a", "a", "c"]).tolist() == [-1, -1, -1, 2, 0, 1]


def test_cyclic_stream_gets_nothing_from_lru_until_every_key_fits() -> None:
    keys = [f"k:{i % 10}" for i in range(200)]
    distances = cache.stack_distances(keys)
    assert (distances[10:] == 9).all()
    outcomes = [(k, "miss") for k in keys]  # every value was written, none ever hit
    curve = cache.size_curve(workbook(*_stream(outcomes)), sizes=[1, 5, 9, 10, 50])
    assert curve["cache_size"].to_list() == [1, 5, 9, 10, 50]
    assert curve["hit_rate"].to_list() == [0, 0, 0, pytest.approx(190 / 200),
                                           pytest.approx(190 / 200)]
    assert curve["ceiling"][0] == pytest.approx(190 / 200)
    assert curve["observed_hit_rate"][0] == 0


def test_zipf_stream_matches_a_brute_force_lru() -> None:
    rng = np.random.default_rng(7)
    weights = 1 / np.arange(1, 301) ** 1.1
    keys = rng.choice(300, size=5000, p=weights / weights.sum()).tolist()
    distances = cache.stack_distances(keys)
    for size in (1, 2, 10, 37, 100, 300):
        assert (distances[distances >= 0] < size).sum() / len(keys) == pytest.approx(
            _lru_brute_force(keys, size)), size


def test_lru_with_ttl_matches_a_brute_force_simulation() -> None:
    rng = np.random.default_rng(11)
    keys = rng.choice(40, size=3000, p=(w := 1 / np.arange(1, 41)) / w.sum())
    times = np.cumsum(rng.exponential(1.0, size=3000))
    simulate = cache._jit(cache._lru_ttl)
    cacheable = np.ones(40, dtype=bool)
    for size, ttl in ((5, 20.0), (20, 8.0), (40, 1e9)):
        got = simulate(keys, (times * 1e9).astype(np.int64), cacheable, size, int(ttl * 1e9))
        assert got.mean() == pytest.approx(
            _lru_brute_force(keys.tolist(), size, ttl * 1e9, (times * 1e9).tolist()))


def test_size_curve_without_keys_says_so_instead_of_guessing() -> None:
    curve = cache.size_curve(workbook(*_stream(MIX, observed=False)))
    assert curve.height == 1
    assert curve["cache_size"][0] is None
    assert "none of the 6 lookups has a key" in curve["note"][0]


def test_keys_that_are_never_stored_always_miss_and_take_no_room() -> None:
    # product:99 does not exist: read three times, never written, never a hit.
    outcomes = [("product:1", "miss"), ("product:99", "absent"), ("product:99", "absent"),
                ("product:1", "hit"), ("product:99", "absent")]
    curve = cache.size_curve(workbook(*_stream(outcomes)), sizes=[1, 2])
    # With product:99 out of the stack, product:1's reuse distance is 0: a 1-entry LRU hits.
    assert curve["hit_rate"].to_list() == [pytest.approx(1 / 5), pytest.approx(1 / 5)]
    assert curve["keys"][0] == 1


# -- TTL and staleness ---------------------------------------------------------------------


def _ttl_stream() -> list[dict[str, Any]]:
    """product:1 written at 0 s, served at 4 s and 9 s, expired by 12 s (TTL 10 s)."""
    spans: list[dict[str, Any]] = []
    for i, (seconds, outcome) in enumerate([(0, "miss"), (4, "hit"), (9, "hit"), (12, "miss"),
                                            (13, "hit")]):
        spans += _request(f"{i + 1:x}", seconds * 1000.0, "product:1", outcome)
    return spans


def test_ttl_is_bracketed_by_the_oldest_hit_and_the_youngest_expiry() -> None:
    wb = workbook(*_ttl_stream())
    row = cache.ttl_estimate(wb).row(0, named=True)
    # Ages run from the write (4.5 ms after each request starts) to the read (0.5 ms after).
    assert row["max_hit_age_s"] == pytest.approx(9 - 0.004)
    assert row["min_expiry_age_s"] == pytest.approx(12 - 0.004)
    assert row["ttl_s"] == pytest.approx(10.5 - 0.004)
    assert (row["sets"], row["expiries"]) == (2, 1)
    curve = cache.size_curve(wb, "product:{id}", sizes=[1])
    assert curve["hit_rate"][0] == pytest.approx(4 / 5)  # LRU that never expires
    assert curve["hit_rate_ttl"][0] == pytest.approx(3 / 5)  # the TTL costs one hit
    assert curve["observed_hit_rate"][0] == pytest.approx(3 / 5)


def test_staleness_counts_writes_to_the_fill_table_and_hits_inside_the_ttl() -> None:
    spans = _ttl_stream()
    job = server("f0", "/admin/price", 2400, 2600)
    spans += [job, db(job, 2500, 2501, sql="UPDATE products SET price = %s WHERE id = %s")]
    other = server("f1", "/admin/order", 2400, 2600)
    spans += [other, db(other, 2500, 2501, sql="UPDATE orders SET state = %s WHERE id = %s")]
    wb = workbook(*spans)
    row = cache.staleness(wb, ttl_s=10.0).row(0, named=True)
    assert row["key_pattern"] == "product:{id}"
    assert row["source_tables"] == ["products"]
    assert (row["writes_traced"], row["writes_logged"]) == (1, 0)
    assert row["ttl_s"] == 10.0
    # The UPDATE at 2.5 s may have made the hits at 4 s and 9 s stale; not the one at 13 s.
    assert row["hits_after_write"] == 2
    assert row["stale_hit_share"] == pytest.approx(2 / 3)
    assert row["writes_per_min"] == pytest.approx(1 / (13.003 / 60))


def test_staleness_with_no_writes_reports_zero_not_nothing() -> None:
    row = cache.staleness(workbook(*_ttl_stream())).row(0, named=True)
    assert (row["writes_traced"], row["writes_logged"], row["hits_after_write"]) == (0, 0, 0)
    assert row["writes_per_min"] == 0
    assert row["stale_hit_share"] == 0


# -- chart builders (to move to tests/test_charts.py with them) ------------------------------


def test_cache_charts_encode_what_they_promise() -> None:
    wb = workbook(*_ttl_stream())
    bars = charts.hit_rate_bars(cache.hit_rates(wb, by="route"), by="route").to_dict()
    assert bars["mark"]["type"] == "bar"
    assert bars["encoding"]["color"]["field"] == "outcome"
    rows = next(iter(bars["datasets"].values()))
    assert {(r["outcome"], r["count"]) for r in rows} == {("hit", 3), ("miss", 2)}
    curve = charts.size_curve(cache.size_curve(wb, sizes=[1, 2])).to_dict()
    lines, rules = curve["layer"]
    assert lines["encoding"]["x"]["scale"]["type"] == "log"
    models = {r["model"] for r in curve["datasets"][lines["data"]["name"]]}
    assert len(models) == 2
    assert {r["mark"] for r in curve["datasets"][rules["data"]["name"]]} == {
        "observed", "infinite cache"}
    box = charts.hit_miss_latency(cache.lookups(wb)).to_dict()
    assert box["mark"]["type"] == "boxplot"
    ages = charts.age_histogram(cache.ages(wb), ttl_s=10).to_dict()
    assert [layer["mark"]["type"] for layer in ages["layer"]] == ["bar", "rule"]
    over_time = charts.hit_rate_over_time(cache.hit_rates(wb, by="5s")).to_dict()
    assert over_time["layer"][1]["encoding"]["y"]["field"] == "hit_rate"
    assert pl.DataFrame(rows).height == 2
