"""Connection pooling: sessions from logs and span trees whose answers are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

import latkit
from latkit.analysis import pooling
from tests.spantree import db, internal, server, span, workbook

PGLOGS = Path(__file__).resolve().parents[1] / "fixtures" / "pglogs"
T0 = 1_700_000_040_000_000_000  # on a whole minute


def _session(
    wb: latkit.Workbook,
    session: str,
    received_ms: float,
    *,
    authorized_ms: float | None,
    statements: list[tuple[float, float]],
    session_ms: float | None,
    application: str | None = "app",
) -> None:
    """One session: connection events and statements (end time, duration), times in ms."""
    def ns(ms: float) -> int:
        return T0 + round(ms * 1e6)

    events = [("received", received_ms, None)]
    if authorized_ms is not None:
        events.append(("authorized", authorized_ms, None))
    if session_ms is not None:
        events.append(("disconnection", received_ms + session_ms, session_ms))
    conns = pl.DataFrame(
        {
            "ts_ns": [ns(t) for _, t, _ in events],
            "event": [e for e, _, _ in events],
            "session_id": session,
            "application": application,
            "user_name": "u",
            "database": "d",
            "session_ms": [s for _, _, s in events],
        },
        schema_overrides={"session_ms": pl.Float64, "application": pl.String},
    )
    queries = pl.DataFrame(
        {
            "ts_ns": [ns(end) for end, _ in statements],
            "duration_ms": [d for _, d in statements],
            "statement": "SELECT 1",
            "session_id": session,
            "application": application,
        },
        schema_overrides={"ts_ns": pl.Int64, "duration_ms": pl.Float64,
                          "application": pl.String},
    )
    cur = wb.con.cursor()
    cur.register("_c", conns.to_arrow())
    cur.execute("INSERT INTO connections BY NAME SELECT * FROM _c")
    cur.register("_q", queries.to_arrow())
    cur.execute("INSERT INTO queries BY NAME SELECT * FROM _q")


def test_session_list_reads_setup_milestones_and_statements() -> None:
    wb = latkit.open()
    _session(wb, "a", 0, authorized_ms=4, statements=[(12, 2), (20, 1)], session_ms=25)
    _session(wb, "b", 100, authorized_ms=None, statements=[], session_ms=None)
    rows = {r["session_id"]: r for r in pooling.session_list(wb).rows(named=True)}
    a, b = rows["a"], rows["b"]
    assert (a["statements"], a["statement_ms"], a["session_ms"]) == (2, 3.0, 25.0)
    assert a["authorized_ms"] == pytest.approx(4)
    assert a["first_statement_ms"] == pytest.approx(10)  # ended at 12 after running 2 ms
    assert a["authenticated_ms"] is None  # not logged (trust authentication)
    assert a["end_ns"] - a["start_ns"] == 25_000_000
    assert (b["statements"], b["end_ns"], b["authorized_ms"]) == (0, None, None)


def test_sessions_summarise_per_application() -> None:
    wb = latkit.open()
    # Ten one-statement sessions in the first minute, one long pooled one over two minutes.
    for i in range(10):
        t = i * 5_000.0
        _session(wb, f"s{i}", t, authorized_ms=t + 2, statements=[(t + 10, 1)], session_ms=20,
                 application="cron")
    _session(wb, "pool", 0, authorized_ms=3, application="web", session_ms=120_000,
             statements=[(1_000.0 * k, 0.5) for k in range(1, 101)])
    frame = pooling.sessions(wb)
    cron = frame.filter(pl.col("application") == "cron").row(0, named=True)
    web = frame.filter(pl.col("application") == "web").row(0, named=True)
    assert (cron["sessions"], cron["short_sessions"], cron["statements_p50"]) == (10, 10, 1)
    assert cron["sessions_per_minute"] == pytest.approx(10 / 2)  # the log covers two minutes
    assert cron["peak_per_minute"] == 10
    assert cron["authorized_p50_ms"] == pytest.approx(2)
    assert cron["first_statement_p50_ms"] == pytest.approx(9)
    assert (web["sessions"], web["statements_max"], web["short_sessions"]) == (1, 100, 0)


def test_sessions_without_application_name_are_a_group_too() -> None:
    wb = latkit.open()
    for i in range(3):
        _session(wb, f"s{i}", i * 100.0, authorized_ms=i * 100.0 + 1, statements=[],
                 session_ms=5, application=None)
    [row] = pooling.sessions(wb).rows(named=True)
    assert (row["application"], row["sessions"], row["peak_per_minute"]) == (None, 3, 3)


def test_logs_flag_many_short_sessions_but_not_a_pool() -> None:
    wb = latkit.open()
    for i in range(8):
        t = i * 1_000.0
        _session(wb, f"s{i}", t, authorized_ms=t + 3, statements=[(t + 15, 2)], session_ms=20,
                 application="reports")
    _session(wb, "pool", 0, authorized_ms=3, application="web", session_ms=60_000,
             statements=[(100.0 * k, 0.5) for k in range(1, 200)])
    [row] = pooling.no_pool(wb).rows(named=True)
    assert (row["source"], row["application"], row["sessions"]) == ("logs", "reports", 8)
    assert row["short_sessions"] == 8
    assert row["setup_p50_ms"] == pytest.approx(13)  # received -> first statement began
    assert row["saved_ms"] == pytest.approx(13)
    assert row["p99_ms"] is None  # a log has no request durations


def test_real_log_the_short_psql_sessions_are_flagged() -> None:
    expected = json.loads((PGLOGS / "expected.json").read_text())
    for name in ("main.csv.gz", "main.json.gz"):
        wb = latkit.open()
        wb.load(PGLOGS / name)
        frame = pooling.sessions(wb)
        short = frame.filter(pl.col("application") == "short").row(0, named=True)
        assert short["sessions"] == expected["short_sessions"]
        assert short["statements_max"] == 1
        assert short["authorized_p50_ms"] >= 0
        flagged = pooling.no_pool(wb)
        # psql -c sessions are one statement each; pgbench's run ten; the workload's one.
        assert flagged["application"].to_list() == ["short"], name


def _request(trace: str, route: str, t: float, gap: float, *, before: float = 1.0) -> list:  # type: ignore[type-arg]
    """A request: some work for ``before`` ms, then ``gap`` ms of nothing, then a query."""
    root = server(trace, route, t, t + before + gap + 5)
    work = internal(root, "parse", t + 0.2, t + before)
    query = db(root, t + before + gap, t + before + gap + 3)
    return [root, work, query]


def test_setup_gap_is_the_unexplained_time_before_the_first_query() -> None:
    spans = _request("1", "/a", 0, gap=7.5)
    wb = workbook(*spans)
    [row] = pooling.setup_gaps(wb).rows(named=True)
    assert row["gap_ms"] == pytest.approx(7.5)
    assert row["first_query_ms"] == pytest.approx(8.5)


def test_a_connect_span_counts_as_setup() -> None:
    root = server("1", "/a", 0, 30)
    connect = span("1", "pg.connect", 2, 14, parent=root, kind="client", db_system="postgresql")
    query = db(root, 14, 18)
    [row] = pooling.setup_gaps(workbook(root, connect, query)).rows(named=True)
    assert row["gap_ms"] == pytest.approx(14)


def test_the_route_that_connects_per_request_is_flagged_with_its_saving() -> None:
    spans = []
    for i in range(20):
        t = i * 100.0
        spans += _request(f"a{i}", "/pooled", t, gap=0.5)
        spans += _request(f"b{i}", "/also-pooled", t + 30, gap=0.5 + (i % 2) * 0.2)
        # Connecting costs 10 ms, except one request in four at 40 ms (the slow tail).
        spans += _request(f"c{i}", "/no-pool", t + 60, gap=40.0 if i % 4 == 0 else 10.0)
    # One pooled request with a slow first query is noise, not a pattern.
    spans += _request("x", "/pooled", 5_000, gap=30.0)
    wb = workbook(*spans)
    [row] = pooling.no_pool(wb).rows(named=True)
    assert (row["source"], row["service"], row["route"]) == ("traces", "shop", "/no-pool")
    assert row["requests"] == 20
    assert row["baseline_ms"] == pytest.approx(0.5)  # median of the other routes' gaps
    assert row["setup_p50_ms"] == pytest.approx(10)
    assert row["consistent_share"] == 1.0
    # Each request would keep a 0.5 ms checkout: saves 9.5 ms, or 39.5 ms on the slow ones.
    assert row["saved_ms"] == pytest.approx((15 * 9.5 + 5 * 39.5) / 20)
    # Durations are 1 + gap + 5: 16 or 46 ms now; with a pool 6.5 ms for every request.
    assert row["p99_ms"] == pytest.approx(46)
    assert row["p99_pooled_ms"] == pytest.approx(6.5)
    assert row["p50_pooled_ms"] == pytest.approx(6.5)


def test_a_service_with_one_route_or_equal_gaps_flags_nothing() -> None:
    spans = []
    for i in range(10):
        spans += _request(f"a{i}", "/only", i * 100.0, gap=20)
    assert pooling.no_pool(workbook(*spans)).is_empty()
    spans = []
    for i in range(10):
        spans += _request(f"a{i}", "/a", i * 100.0, gap=1.0)
        spans += _request(f"b{i}", "/b", i * 100.0 + 50, gap=1.2)
    assert pooling.no_pool(workbook(*spans)).is_empty()


def test_in_flight_counts_overlapping_requests_of_the_same_service() -> None:
    wb = workbook(
        server("1", "/a", 0, 100),
        server("2", "/a", 10, 20),  # inside 1: two in flight
        server("3", "/b", 15, 50),  # 1 and 3 running, 2 too: three
        server("4", "/a", 60, 70),  # 1 and 3 (ended at 50)? 1 only: two
        server("5", "/a", 100, 110),  # 1 ended exactly at 100: one
        server("6", "/a", 15, 16, service="inventory"),  # another service: one
    )
    frame = pooling.in_flight(wb)
    counts = dict(zip(frame["trace_id"].str.strip_chars_start("0"), frame["in_flight"],
                      strict=True))
    assert counts == {"1": 1, "2": 2, "3": 3, "4": 2, "5": 1, "6": 1}


def test_by_load_buckets_in_powers_of_two() -> None:
    spans = [server(f"q{i}", "/a", i * 10.0, i * 10.0 + 2) for i in range(5)]  # alone
    spans += [server(f"b{i}", "/a", 1000 + i * 0.1, 1050) for i in range(6)]  # 1..6 at once
    frame = pooling.by_load(workbook(*spans), min_requests=1)
    assert frame["load"].to_list() == ["1", "2", "3–4", "5–8"]
    assert frame["requests"].to_list() == [6, 1, 2, 2]
    assert frame.filter(pl.col("load") == "5–8")["p50_ms"][0] == pytest.approx(49.55)


def test_chart_builders_encode_the_frames_columns() -> None:
    # Chart specs.
    from latkit import charts

    spans = []
    for i in range(6):
        spans += _request(f"a{i}", "/a", i * 100.0, gap=0.5)
        spans += _request(f"b{i}", "/b", i * 100.0 + 50, gap=12.0)
    wb = workbook(*spans)
    spec = charts.setup_gaps(pooling.setup_gaps(wb), flagged=["/b"]).to_dict()
    assert spec["mark"]["type"] == "boxplot"
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["encoding"]["color"]["field"] == "flagged"
    curve = charts.load_curve(pooling.by_load(wb, min_requests=1)).to_dict()
    assert curve["mark"]["type"] == "line"
    assert curve["encoding"]["strokeDash"]["field"] == "percentile"
    assert curve["encoding"]["y"]["field"] == "ms"


# -- PgBouncer's pool waits --------------------------------------------------------------------

PGBOUNCER_LOG = Path(__file__).resolve().parents[1] / "fixtures" / "pgplans" / "pgbouncer.log"
PGBENCH_CLIENTS = 3  # on a pool of one server connection (tests/fixtures/pgplans/README.md)


def _stats_lines(text: str) -> list[tuple[int, int]]:
    """(xacts/s, wait us) of each stats line, in order."""
    return [
        (int(x), int(w))
        for x, w in re.findall(r"stats: (\d+) xacts/s, .* wait (\d+) us", text)
    ]


def test_pool_waits_before_1_24_are_client_waiting_per_second(tmp_path: Path) -> None:
    wb = latkit.open()
    wb.load(PGBOUNCER_LOG)
    waits = pooling.pool_waits(wb)
    expected = _stats_lines(PGBOUNCER_LOG.read_text())
    assert waits["xacts_per_s"].to_list() == [x for x, _ in expected]
    assert set(waits["version"]) == {"1.18.0"}
    busy = waits.filter(pl.col("wait_us") > 0)
    assert busy.height == sum(1 for _, w in expected if w > 0) > 0
    for row, (xacts, wait) in zip(
        busy.iter_rows(named=True), [e for e in expected if e[1] > 0], strict=True
    ):
        assert row["clients_waiting"] == pytest.approx(wait / 1e6)
        assert row["wait_ms_per_xact"] == pytest.approx(wait / xacts / 1e3)
        # Three pgbench clients on one server: at most two can be queued at any moment.
        assert 0 < row["clients_waiting"] <= PGBENCH_CLIENTS - 1
    assert waits.filter(pl.col("xacts_per_s") == 0)["wait_ms_per_xact"].is_null().all()


def test_pool_waits_from_1_24_are_per_server_assignment(tmp_path: Path) -> None:
    # The same log as if a newer PgBouncer had written it (only the version line differs).
    path = tmp_path / "pgbouncer.log"
    path.write_text(PGBOUNCER_LOG.read_text().replace("PgBouncer 1.18.0", "PgBouncer 1.24.1"))
    wb = latkit.open()
    wb.load(path)
    row = pooling.pool_waits(wb).sort("wait_us", descending=True).row(0, named=True)
    assert row["version"] == "1.24.1"
    assert row["wait_ms_per_xact"] == pytest.approx(row["wait_us"] / 1e3)
    assert row["clients_waiting"] == pytest.approx(row["wait_us"] * row["xacts_per_s"] / 1e6)
    assert "per server assignment" in row["wait_meaning"]


def test_pool_waits_without_a_version_say_so(tmp_path: Path) -> None:
    path = tmp_path / "pgbouncer.log"
    lines = PGBOUNCER_LOG.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if "process up" not in line))
    wb = latkit.open()
    wb.load(path)
    waits = pooling.pool_waits(wb)
    assert waits.height == len(_stats_lines(path.read_text())) > 0
    assert waits["clients_waiting"].is_null().all() and waits["version"].is_null().all()
    assert waits["wait_meaning"].str.starts_with("unknown").all()
