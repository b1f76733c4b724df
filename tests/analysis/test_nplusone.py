"""N+1 detection on span trees and query-log sessions whose answers are known."""

from __future__ import annotations

import polars as pl
import pytest

import latkit
from latkit.analysis import nplusone
from tests.spantree import cache, client, db, internal, server, span, workbook

ITEM = "SELECT name FROM products WHERE id = %s"
ORDER = "SELECT * FROM orders WHERE id = %s"


def loop(parent, n: int, start: float, sql: str = ITEM, step: float = 2.0, gap: float = 0.5):  # type: ignore[no-untyped-def]
    return [
        db(parent, start + i * (step + gap), start + i * (step + gap) + step, sql=sql)
        for i in range(n)
    ]


def test_a_loop_under_one_parent_is_found_with_its_repeats() -> None:
    root = server("1", "/orders/{id}/items", 0, 100)
    wb = workbook(root, db(root, 1, 3, sql=ORDER), *loop(root, 12, 5))
    [row] = nplusone.detect(wb).rows(named=True)
    assert row["repeats"] == 12
    assert row["route"] == "/orders/{id}/items"
    assert row["query_template"] == "SELECT name FROM products WHERE id = ?"
    assert row["total_ms"] == pytest.approx(24)
    assert row["share_of_trace"] == pytest.approx(0.24)


def test_spans_in_between_do_not_break_the_run() -> None:
    root = server("1", "/a", 0, 200)
    spans = [root]
    for i in range(8):
        t = 10 + i * 10
        spans += [
            internal(root, "pool.checkout", t, t + 1),
            cache(root, t + 1, t + 2),
            db(root, t + 2, t + 5, sql=ITEM),
            db(root, t + 5, t + 7, sql=ORDER),
        ]
    frame = nplusone.detect(workbook(*spans))
    # A loop of two queries per item is two N+1s, each with 8 repeats.
    assert sorted(frame["repeats"].to_list()) == [8, 8]
    assert frame["fingerprint"].n_unique() == 2


def test_parallel_queries_are_a_fan_out_not_a_loop() -> None:
    root = server("1", "/a", 0, 100)
    parallel = [db(root, 10 + i * 0.1, 40, sql=ITEM) for i in range(10)]
    fan_out = [db(root, 50, 60, sql=f"SELECT * FROM t{i} WHERE id = 1") for i in range(10)]
    assert nplusone.detect(workbook(root, *parallel, *fan_out)).is_empty()


def test_loops_below_the_threshold_and_the_join_version_are_not_flagged() -> None:
    a = server("1", "/short", 0, 100)
    b = server("2", "/join", 0, 100)
    wb = workbook(
        a,
        *loop(a, 4, 5),
        b,
        db(
            b,
            5,
            9,
            sql="SELECT p.name FROM order_items i JOIN products p ON p.id = i.product_id "
            "WHERE i.order_id = %s",
        ),
    )
    assert nplusone.detect(wb, min_repeats=5).is_empty()
    assert nplusone.detect(wb, min_repeats=4)["repeats"].to_list() == [4]


def test_nested_loops_and_two_n_plus_ones_under_one_parent() -> None:
    root = server("1", "/a", 0, 1000)
    spans = [root]
    for i in range(6):  # outer loop: one span per order, each with an inner loop of 5
        order = internal(root, "load_order", 10 + i * 100, 90 + i * 100)
        spans += [order, *loop(order, 5, 12 + i * 100)]
    frame = nplusone.detect(workbook(*spans))
    assert frame.height == 6  # one inner N+1 per order span
    assert set(frame["repeats"]) == {5}


def test_overlapping_by_a_rounding_millisecond_still_counts_as_sequential() -> None:
    root = server("1", "/a", 0, 100)
    # JS-style whole-millisecond starts: each query appears to start 0.4 ms before the
    # previous one ended.
    spans = [db(root, 10 + i * 2 - 0.4 * (i > 0), 12 + i * 2, sql=ITEM) for i in range(6)]
    assert nplusone.detect(workbook(root, *spans))["repeats"].to_list() == [6]


def test_summary_estimates_the_saving_and_names_the_fix() -> None:
    spans = []
    for t in range(4):
        root = server(str(t), "/items", 0, 100)
        spans += [root, *loop(root, 10, 5)]
    spans.append(server("9", "/items", 0, 10))  # a request with no loop
    [row] = nplusone.summary(workbook(*spans)).rows(named=True)
    assert row["traces"] == 4
    assert row["share_of_route_traces"] == pytest.approx(4 / 5)
    assert row["total_ms"] == pytest.approx(4 * 10 * 2)
    assert row["saved_ms"] == pytest.approx(4 * 9 * 2)
    assert "WHERE id = ANY($1)" in row["fix"] and "JOIN products" in row["fix"]


def test_repeated_downstream_calls_are_an_http_n_plus_one() -> None:
    root = server("1", "/checkout", 0, 200)
    spans = [root]
    for i in range(6):
        call = client(root, 10 + i * 20, 25 + i * 20, http_url=f"http://inventory/stock/{100 + i}")
        callee = span(
            "1",
            "GET /stock/{sku}",
            12 + i * 20,
            23 + i * 20,
            parent=call,
            kind="server",
            service="inventory",
            http_route="/stock/{sku}",
        )
        spans += [call, callee]
    [row] = nplusone.detect_http(workbook(*spans)).rows(named=True)
    assert (row["call"], row["repeats"]) == ("GET /stock/{sku}", 6)


def test_queries_per_request_distribution() -> None:
    spans = []
    for t, n in enumerate([1, 2, 12, 20]):
        root = server(str(t), "/a", 0, 200)
        spans += [root, *loop(root, n, 1)]
    [row] = nplusone.queries_per_request(workbook(*spans)).rows(named=True)
    assert row["max_queries"] == 20
    assert row["p50_queries"] == pytest.approx(7)
    assert row["over_alarm_share"] == pytest.approx(0.5)


def _log(wb: latkit.Workbook, session: str, entries: list[tuple[float, float, str]]) -> None:
    """Query-log rows: (end time in ms, duration in ms, statement) on one session."""
    from latkit.fingerprint import templates

    frame = pl.DataFrame(
        {
            "ts_ns": [int(1.7e18 + end * 1e6) for end, _, _ in entries],
            "duration_ms": [d for _, d, _ in entries],
            "statement": [s for _, _, s in entries],
            "session_id": session,
            "line": list(range(len(entries))),
        }
    )
    template, fp = templates(frame["statement"].to_arrow())
    frame = frame.with_columns(
        query_template=pl.from_arrow(template), fingerprint=pl.from_arrow(fp)
    )
    cur = wb.con.cursor()
    cur.register("_rows", frame.to_arrow())
    cur.execute("INSERT INTO queries BY NAME SELECT * FROM _rows")


def test_logs_find_a_loop_but_not_a_busy_pooled_connection() -> None:
    wb = latkit.open()
    loop_rows = [(10.0, 0.5, "SELECT * FROM orders WHERE id = 7")]
    loop_rows += [
        (10.8 + i * 0.8, 0.5, f"SELECT name FROM products WHERE id = {i}") for i in range(9)
    ]
    _log(wb, "loop", loop_rows)
    # A pooled connection: the same one-query request over and over, 40 ms apart.
    _log(
        wb,
        "pool",
        [(t * 40.0, 0.5, f"SELECT qty FROM stock WHERE sku = 'S{t}'") for t in range(30)],
    )
    [row] = nplusone.detect_in_logs(wb).rows(named=True)
    assert (row["session_id"], row["repeats"]) == ("loop", 9)
    assert row["query_template"] == "SELECT name FROM products WHERE id = ?"
