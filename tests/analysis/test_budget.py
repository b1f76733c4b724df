"""The latency budget on span trees whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from latkit.analysis import budget
from tests.spantree import cache, callee, client, db, internal, server, span, workbook


def _only(frame, **where):  # type: ignore[no-untyped-def]
    for k, v in where.items():
        frame = frame.filter(frame[k] == v)
    assert frame.height == 1, frame
    return frame.row(0, named=True)


def test_sequential_children_split_the_request_exactly() -> None:
    root = server("1", "/orders/{id}", 0, 100)
    wb = workbook(
        root,
        db(root, 10, 30),
        cache(root, 30, 35),
        internal(root, "render", 50, 70),
    )
    row = _only(budget.per_request(wb))
    assert row["db_ms"] == pytest.approx(20)
    assert row["cache_ms"] == pytest.approx(5)
    assert row["self_ms"] == pytest.approx(75)  # internal spans are the service's own time
    assert row["network_ms"] == row["http_client_ms"] == 0


def test_parallel_children_are_not_double_counted() -> None:
    root = server("1", "/a", 0, 100)
    wb = workbook(root, db(root, 10, 60), db(root, 20, 50))
    row = _only(budget.per_request(wb))
    assert row["db_ms"] == pytest.approx(50)
    assert row["self_ms"] == pytest.approx(50)


def test_overlapping_children_go_to_the_one_on_the_critical_path() -> None:
    root = server("1", "/a", 0, 100)
    wb = workbook(root, db(root, 10, 50), cache(root, 30, 70))
    row = _only(budget.per_request(wb))
    # Walking back from 100: the cache call ends last and owns 30-70; the query owns 10-30.
    assert row["cache_ms"] == pytest.approx(40)
    assert row["db_ms"] == pytest.approx(20)
    assert row["self_ms"] == pytest.approx(40)
    path = budget.critical_path(wb, "1".rjust(32, "0"))
    assert path["category"].to_list() == ["self", "db", "cache", "self"]
    assert path["start_ms"].to_list() == pytest.approx([0, 10, 30, 70])
    assert path["end_ms"].to_list() == pytest.approx([10, 30, 70, 100])


def test_traced_callee_splits_into_network_downstream_and_its_database() -> None:
    root = server("1", "/checkout", 0, 100)
    call = client(root, 20, 80)
    stock = callee(call, "/stock/{sku}", 25, 75)
    wb = workbook(root, call, stock, db(stock, 30, 50))
    shop = _only(budget.per_request(wb), service="shop")
    assert shop["self_ms"] == pytest.approx(40)
    assert shop["network_ms"] == pytest.approx(10)
    assert shop["http_client_ms"] == pytest.approx(30)
    assert shop["db_ms"] == pytest.approx(20)
    inventory = _only(budget.per_request(wb), service="inventory")
    assert inventory["self_ms"] == pytest.approx(30)
    assert inventory["db_ms"] == pytest.approx(20)
    assert inventory["network_ms"] == 0


def test_untraced_callee_counts_as_downstream_time() -> None:
    root = server("1", "/a", 0, 100)
    wb = workbook(root, client(root, 20, 80))
    row = _only(budget.per_request(wb))
    assert row["http_client_ms"] == pytest.approx(60)
    assert row["network_ms"] == 0


def test_clock_skew_is_clamped_to_the_parent() -> None:
    root = server("1", "/a", 10, 100)
    wb = workbook(root, db(root, 5, 30), cache(root, 90, 120))
    row = _only(budget.per_request(wb))
    assert row["db_ms"] == pytest.approx(20)
    assert row["cache_ms"] == pytest.approx(10)
    assert row["self_ms"] == pytest.approx(60)


def test_orphans_and_several_roots() -> None:
    first = server("1", "/a", 0, 50)
    second = server("1", "/b", 60, 100)  # a second root in the same trace
    remote_child = server("1", "/c", 10, 30, parent_span_id="ffffffffffffffff")
    lost_query = db(first, 1, 2)
    lost_query["parent_span_id"] = "eeeeeeeeeeeeeeee"  # its parent never arrived
    wb = workbook(first, second, remote_child, lost_query, db(second, 70, 80))
    frame = budget.per_request(wb)
    assert sorted(frame["route"].to_list()) == ["/a", "/b", "/c"]
    assert _only(frame, route="/a")["db_ms"] == 0
    assert _only(frame, route="/b")["db_ms"] == pytest.approx(10)
    assert _only(frame, route="/c")["self_ms"] == pytest.approx(20)


def test_breakdown_shares_add_up_to_one_per_route() -> None:
    spans = []
    rng = np.random.default_rng(7)
    for i in range(40):
        route = "/a" if i % 2 else "/b"
        root = server(str(i), route, 0, 100)
        call = client(root, 5, 60)
        callee = span(
            str(i),
            "GET /x",
            10,
            55,
            parent=call,
            kind="server",
            service="inventory",
            http_route="/x",
        )
        spans += [
            root,
            call,
            callee,
            db(callee, 12, 12 + rng.uniform(1, 40)),
            db(root, 50, 50 + rng.uniform(1, 45)),
            cache(root, 40, 70),
        ]
    wb = workbook(*spans)
    frame = budget.breakdown(wb)
    sums = frame.group_by("service", "route").agg(pl.col("share").sum())
    assert sums.height == 3
    assert sums["share"].to_list() == pytest.approx([1.0] * sums.height)
    assert set(frame["category"]) == {"self", "db", "cache", "http_client", "network"}
    per = budget.per_request(wb)
    parts = per.select(
        pl.sum_horizontal("self_ms", "db_ms", "cache_ms", "http_client_ms", "network_ms")
    ).to_series()
    assert parts.to_list() == pytest.approx(per["duration_ms"].to_list())


def test_by_route_percentiles_interpolate_like_numpy() -> None:
    durations = [10, 20, 30, 40, 100]
    wb = workbook(
        *[server(str(i), "/a", 0, d) for i, d in enumerate(durations)],
        server("99", "/b", 0, 5, status="error"),
    )
    row = _only(budget.by_route(wb, target_ms=35), route="/a")
    assert row["requests"] == 5
    assert row["errors"] == 0
    for q in (50, 95, 99):
        assert row[f"p{q}_ms"] == pytest.approx(np.percentile(durations, q))
    assert row["max_ms"] == pytest.approx(100)
    assert row["over_target_share"] == pytest.approx(2 / 5)
    assert _only(budget.by_route(wb), route="/b")["errors"] == 1


def test_by_route_per_time_bucket() -> None:
    spans = [server(str(i), "/a", i * 30_000, i * 30_000 + 10 + i) for i in range(4)]
    frame = budget.by_route(workbook(*spans), every="1m")
    assert frame["requests"].to_list() == [2, 2]
    assert frame["max_ms"].to_list() == pytest.approx([11, 13])


def test_critical_path_summary_looks_only_at_the_slow_requests() -> None:
    spans = []
    for i in range(20):
        slow = i >= 18
        root = server(str(i), "/a", 0, 200 if slow else 50)
        spans += [root, db(root, 10, 190 if slow else 20)]
    summary = budget.critical_path_summary(workbook(*spans), "/a", quantile=0.9)
    top = summary.row(0, named=True)
    assert (top["category"], top["name"], top["traces"]) == ("db", "SELECT", 2)
    assert top["total_ms"] == pytest.approx(2 * 180)
    assert summary["share"].sum() == pytest.approx(1.0)


def test_sampled_requests_are_weighted_by_their_tracestate_threshold() -> None:
    # Fast requests kept at 1 in 4 (th:c, p = 0.25), slow ones all kept (th:0).
    spans = []
    for i in range(10):
        fast = server(f"f{i}", "/a", 0, 10)
        fast["trace_state"] = "ot=th:c"
        spans.append(fast)
    for i in range(10):
        slow = server(f"s{i}", "/a", 0, 200)
        slow["trace_state"] = "ot=th:0"
        spans.append(slow)
    row = _only(budget.by_route(workbook(*spans)), route="/a")
    assert row["weighted"] is True
    assert row["requests"] == 20
    assert row["est_requests"] == pytest.approx(50)
    assert row["over_target_share"] == pytest.approx(10 / 50)
    assert row["p50_ms"] == pytest.approx(10)  # 40 of 50 estimated requests were fast


def test_unsampled_data_is_not_weighted() -> None:
    row = _only(budget.by_route(workbook(server("1", "/a", 0, 10))))
    assert row["weighted"] is False
    assert row["est_requests"] == 1


def _requests(n: int, route: str, ms: float, offset_ms: float = 0, tag: str = "") -> list:
    spans = []
    for i in range(n):
        root = server(f"{tag}{route}{i}", route, offset_ms, offset_ms + ms + (i % 5))
        spans += [root, db(root, offset_ms + 1, offset_ms + ms / 2)]
    return spans


def test_diff_calls_a_real_speedup_faster_and_noise_noise() -> None:
    before = workbook(*_requests(60, "/a", 100), *_requests(60, "/b", 50))
    after = workbook(
        *_requests(60, "/a", 40, tag="x"),
        *_requests(60, "/b", 50, tag="x"),
        *_requests(5, "/new", 10),
    )
    frame = budget.diff(before, after)
    a = _only(frame, route="/a")
    assert a["verdict"] == "faster"
    assert a["change_ms"] == pytest.approx(-60)
    assert a["ci_low_ms"] <= -60 <= a["ci_high_ms"]
    assert a["db_ms_before"] > a["db_ms_after"]
    assert _only(frame, route="/b")["verdict"] == "within noise"
    assert _only(frame, route="/new")["verdict"] == "only after"


def test_diff_splits_one_workbook_in_time() -> None:
    wb = workbook(*_requests(40, "/a", 100), *_requests(40, "/a", 30, offset_ms=60_000, tag="y"))
    from tests.spantree import ORIGIN_NS

    row = _only(budget.diff(wb, split_at_ns=ORIGIN_NS + 30_000_000_000))
    assert (row["requests_before"], row["requests_after"]) == (40, 40)
    assert row["verdict"] == "faster"


def test_compare_finds_what_the_slow_requests_share() -> None:
    spans = []
    for i in range(40):
        slow = i % 10 == 0  # 4 of 40
        root = server(
            str(i),
            "/a",
            0,
            300 if slow else 20,
            user_tier="free" if slow else "paid",
            request_id=f"r{i}",
        )
        spans.append(root)
        if slow:
            spans.append(db(root, 5, 290, sql="SELECT * FROM audit_log WHERE day = 3"))
    frame = budget.compare(workbook(*spans), "/a", slow_quantile=0.9, max_values=10)
    top = frame.filter(frame["difference"] == 1.0).select("dimension", "value").rows()
    assert sorted(top) == [
        ("query", "SELECT * FROM audit_log WHERE day = ?"),
        ("span", "shop: SELECT"),
        ("user.tier", "free"),
    ]
    assert _only(frame, value="free")["slow_share"] == 1.0
    assert "request.id" not in frame["dimension"].to_list()  # one value per request
