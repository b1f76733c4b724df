"""PgBouncer logs, made by tests/fixtures/make_pg_plans.py with PgBouncer 1.18.

The workload there, through a pool of one server connection: 3 psql sessions, one admin
console session (SHOW STATS), then pgbench with 3 clients for 5 seconds (pgbench opens one
more connection first, to check the server). Stats are logged every 2 seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

import latkit
from latkit.ingest import LoadError, Source, pgbouncer

LOG = Path(__file__).parent.parent / "fixtures" / "pgplans" / "pgbouncer.log"
PSQL, ADMIN, PGBENCH_CLIENTS, PGBENCH_SECONDS = 3, 1, 3, 5
LOGINS = PSQL + ADMIN + 1 + PGBENCH_CLIENTS


@pytest.fixture(scope="module")
def wb() -> latkit.Workbook:
    wb = latkit.open()
    wb.load(LOG)
    return wb


def count(wb: latkit.Workbook, event: str) -> int:
    return int(wb.sql("select count(*) as n from connections where event = ?", [event])["n"][0])


def test_every_login_and_close_is_counted(wb: latkit.Workbook) -> None:
    assert count(wb, "login") == LOGINS
    assert count(wb, "close") == LOGINS
    admin = wb.sql("select count(*) as n from connections where database = 'pgbouncer'")
    assert admin["n"][0] == 2 * ADMIN


def test_logins_pair_with_closes_on_pointer_and_client(wb: latkit.Workbook) -> None:
    sessions = wb.sql(
        """
        select session_id, client,
               count(*) filter (where event = 'login') as logins,
               count(*) filter (where event = 'close') as closes,
               max(session_ms) as session_ms,
               min(detail) as reason
        from connections
        where event in ('login', 'close')
        group by all
        """
    )
    assert sessions.height == LOGINS  # PgBouncer reuses pointers: clients tell them apart
    assert set(sessions["logins"]) == {1} and set(sessions["closes"]) == {1}
    assert set(sessions["reason"]) == {"client close request"}
    assert sessions["session_id"].str.starts_with("C-0x").all()
    # pgbench's clients lived for the run; age= is whole seconds.
    assert sessions["session_ms"].max() in (PGBENCH_SECONDS * 1000, (PGBENCH_SECONDS + 1) * 1000)


def test_server_connections_open_and_close(wb: latkit.Workbook) -> None:
    assert count(wb, "server_new") >= 1
    assert count(wb, "server_close") == count(wb, "server_new")
    closes = wb.sql("select distinct detail from connections where event = 'server_close'")
    assert closes["detail"].to_list() == ["server idle timeout"]


def test_stats_lines_keep_their_numbers_with_the_wait_time(wb: latkit.Workbook) -> None:
    text = LOG.read_text().splitlines()
    stats_lines = [i + 1 for i, line in enumerate(text) if " LOG stats: " in line]
    stats = wb.sql("select line, detail from connections where event = 'stats' order by line")
    assert stats["line"].to_list() == stats_lines
    busiest = max(stats_lines, key=lambda n: int(re.findall(r"wait (\d+) us", text[n - 1])[0]))
    detail = json.loads(stats.filter(stats["line"] == busiest)["detail"][0])
    assert detail["wait_us"] == int(re.findall(r"wait (\d+) us", text[busiest - 1])[0])
    assert detail["wait_us"] > 0  # 3 clients on a pool of one: some of them waited
    assert detail["xacts_per_s"] == int(re.findall(r"(\d+) xacts/s", text[busiest - 1])[0])
    assert {"queries_per_s", "in_bytes_per_s", "out_bytes_per_s", "xact_us", "query_us"} <= set(
        detail
    )


def test_times_are_utc_nanoseconds(wb: latkit.Workbook) -> None:
    first = wb.sql("select ts_ns, line from connections order by line limit 1").row(0)
    stamp = LOG.read_text().splitlines()[first[1] - 1][:23]
    expected = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC)
    assert first[0] == int(expected.timestamp() * 1_000_000) * 1000


def test_a_garbled_line_is_rejected_and_the_rest_loaded(tmp_path: Path) -> None:
    lines = LOG.read_text().splitlines(keepends=True)
    lines.insert(5, "\x00\x00 this is not a log line\n")
    path = tmp_path / "pgbouncer.log"
    path.write_text("".join(lines))
    wb = latkit.open()
    report = wb.load(path)
    assert report.rejected == 1
    assert wb.sql("select position from rejects")["position"][0] == "line 6"
    assert count(wb, "login") == LOGINS


def test_a_local_zone_needs_its_name(tmp_path: Path) -> None:
    path = tmp_path / "pgbouncer.log"
    path.write_text(
        "2026-01-01 10:00:00.250 CET [7] LOG C-0x1: shop/app@10.0.0.7:5000 login attempt: "
        "db=shop user=app tls=no\n"
    )
    with pytest.raises(LoadError, match="CET.*timezone="):
        latkit.open().load(path)
    wb = latkit.open()
    wb.load(path, timezone="Europe/Paris")
    expected = dt.datetime(2026, 1, 1, 9, 0, 0, 250_000, tzinfo=dt.UTC)
    assert wb.sql("select ts_ns from connections")["ts_ns"][0] == int(
        expected.timestamp() * 1_000_000
    ) * 1000


def test_sniff_tells_pgbouncer_from_postgres_logs() -> None:
    assert pgbouncer.sniff(Source.of(LOG).head())
    assert not pgbouncer.sniff(
        b"2026-01-01 00:00:00.000 UTC [7] LOG:  connection authorized: user=app database=shop\n"
    )
    assert not pgbouncer.sniff(b'{"resourceSpans": []}')


def test_the_start_line_gives_the_version(wb: latkit.Workbook) -> None:
    start = wb.sql("select detail, line from connections where event = 'start'")
    text = LOG.read_text().splitlines()
    assert start.rows() == [
        ("1.18.0", next(i + 1 for i, t in enumerate(text) if "process up: PgBouncer" in t))
    ]


def test_a_time_no_calendar_has_rejects_that_line_only(tmp_path: Path) -> None:
    # Damage found by the long fuzz run: one flipped bit made a year 3026 (beyond what
    # nanoseconds hold), and month 13 is no date at all.
    lines = LOG.read_text().splitlines(keepends=True)
    logins = [i for i, line in enumerate(lines) if "login attempt" in line]
    lines[logins[0]] = "3" + lines[logins[0]][1:]
    lines[logins[1]] = lines[logins[1]].replace("-11-", "-13-", 1)
    path = tmp_path / "pgbouncer.log"
    path.write_text("".join(lines))
    wb = latkit.open()
    report = wb.load(path)
    assert report.rejected == 2
    assert wb.sql("select position from rejects order by position")["position"].to_list() == [
        f"line {logins[0] + 1}",
        f"line {logins[1] + 1}",
    ]
    assert count(wb, "login") == LOGINS - 2 and count(wb, "close") == LOGINS
