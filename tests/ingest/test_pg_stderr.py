"""pg_stderr on logs written by a real PostgreSQL 15 (tests/fixtures/make_pglogs.py).

The workload is known by construction (expected.json): 30 ``SELECT * FROM orders WHERE id
= n``, 20 counts by customer, a multi-line statement, 3 auto_explained ``pg_sleep`` queries,
5 short sessions and pgbench runs of 2 clients x 10 transactions in the extended and the
prepared protocol.
"""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest

import latkit
from latkit.ingest import LoadError, Source, pg_stderr

PGLOGS = Path(__file__).resolve().parents[1] / "fixtures" / "pglogs"
EXPECTED = json.loads((PGLOGS / "expected.json").read_text())


def load(path: Path | str, **options: object) -> latkit.Workbook:
    wb = latkit.open()
    wb.load(path, **options)
    return wb


@pytest.fixture(scope="module")
def main() -> latkit.Workbook:
    return load(PGLOGS / "main.log")


def count(wb: latkit.Workbook, like: str) -> int:
    return int(wb.sql("select count(*) from queries where statement like ?", [like]).item())


def test_sniff_takes_stderr_logs_but_not_csvlog_or_jsonlog() -> None:
    assert pg_stderr.sniff((PGLOGS / "main.log").read_bytes()[:65536])
    for other in ("main.csv.gz", "main.json.gz"):
        assert not pg_stderr.sniff(gzip.decompress((PGLOGS / other).read_bytes())[:65536])


def test_every_execution_of_each_statement_is_one_row(main: latkit.Workbook) -> None:
    assert count(main, "SELECT * FROM orders WHERE id = %") == EXPECTED["orders_by_id"]
    assert count(main, "SELECT count(*) FROM orders WHERE customer_id = %") == EXPECTED[
        "open_by_customer"]
    assert count(main, "SELECT id, pg_sleep(0.03)%") == EXPECTED["sleeps"]
    assert count(main, "SELECT % AS answer;") == EXPECTED["short_sessions"]
    # one fingerprint per shape, whatever the literals
    fps = main.sql("select count(distinct fingerprint) from queries "
                   "where statement like 'SELECT * FROM orders WHERE id = %'").item()
    assert fps == 1


def test_a_multiline_statement_is_kept_whole(main: latkit.Workbook) -> None:
    rows = main.sql("select statement, line from queries where statement like '%customer_id,%'")
    assert rows["statement"].to_list() == [EXPECTED["multiline"]]
    line = rows["line"].item()
    text = (PGLOGS / "main.log").read_text().splitlines()
    assert "statement: SELECT o.customer_id," in text[line - 1]


def test_extended_protocol_execution_is_counted_once_with_its_phases(
    main: latkit.Workbook,
) -> None:
    runs = main.sql("""
        select duration_ms, phase_ms, parameters, session_id
        from queries where statement = 'SELECT status FROM orders WHERE id = $1;'
        order by line
    """)
    per_mode = EXPECTED["pgbench_clients"] * EXPECTED["pgbench_transactions_per_client"]
    assert runs.height == 2 * per_mode
    phases = runs["phase_ms"].to_list()
    assert all({"bind", "execute"} <= {k for k, _ in _items(p)} for p in phases)
    # the duration is the execute phase; parse and bind are kept beside it
    assert all(d == dict(_items(p))["execute"] for d, p in zip(runs["duration_ms"], phases,
                                                               strict=True))
    assert all(p.startswith("$1 = '") for p in runs["parameters"])
    # -M extended parses every time; -M prepared once per connection
    parsed = sum(1 for p in phases if "parse" in dict(_items(p)))
    assert parsed == per_mode + EXPECTED["pgbench_clients"]


def _items(m: object) -> list[tuple[str, float]]:
    if isinstance(m, dict):
        return list(m.items())
    return [(e["key"], e["value"]) for e in m]  # type: ignore[attr-defined]


def test_connections_and_session_ids(main: latkit.Workbook) -> None:
    events = dict(main.sql("select event, count(*) from connections group by all").rows())
    # CREATE DATABASE, the workload, the short sessions, and per pgbench run its clients
    # plus the connection pgbench opens first to check the database
    sessions = 1 + 1 + EXPECTED["short_sessions"] + 2 * (EXPECTED["pgbench_clients"] + 1)
    assert events == {"received": sessions, "authorized": sessions, "disconnection": sessions}
    # every query's session has its connection events, under the same derived id
    orphans = main.sql("""
        select count(*) from queries q
        where not exists (select 1 from connections c
                          where c.session_id = q.session_id and c.event = 'authorized')
    """).item()
    assert orphans == 0
    # names come from the connection lines when the prefix has none
    apps = set(main.sql("select distinct application from queries")["application"])
    assert apps == {"fixture", "short", "pgbench"}
    assert main.sql("select min(session_ms) from connections "
                    "where event = 'disconnection'").item() > 0


def test_derived_session_ids_are_the_servers_own() -> None:
    # The csvlog of the same run carries PostgreSQL's %c for every line. The derived id takes
    # the session start from the `connection received` line; the server's is the fork, a
    # moment earlier: the two differ only when a second boundary falls in between.
    stderr = load(PGLOGS / "main.log")
    csv = load(PGLOGS / "main.csv.gz")
    for table in ("queries", "connections"):
        sql = f"select pid, ts_ns, line, session_id from {table} order by all"
        pairs = zip(stderr.sql(sql).rows(), csv.sql(sql).rows(), strict=True)
        for (pid, ts, _, ours), (pid2, ts2, _, theirs) in pairs:
            assert (pid, ts) == (pid2, ts2)
            if ours != theirs:
                start, hex_pid = theirs.split(".")
                received = stderr.sql(
                    "select ts_ns // 1000000000 from connections "
                    "where event = 'received' and session_id = ?", [ours]).item()
                assert ours == f"{received:x}.{hex_pid}" and received == int(start, 16) + 1


def test_log_statement_all_keeps_statements_without_duration() -> None:
    wb = load(PGLOGS / "statements.log.gz")
    # one session turned log_min_duration_statement on: its statements are paired with the
    # bare `duration:` line after them; every other statement has a NULL duration
    assert count(wb, "SELECT * FROM orders WHERE id = %") == EXPECTED["orders_by_id"]
    timed = wb.sql("select count(*) from queries where statement like 'SELECT * FROM orders "
                   "WHERE id = %' and duration_ms > 0").item()
    assert timed == EXPECTED["orders_by_id"]
    untimed = wb.sql("""select count(*) from queries
                        where statement = 'SELECT status FROM orders WHERE id = $1;'
                          and duration_ms is null and parameters like '$1 = %'""").item()
    assert untimed == 2 * EXPECTED["pgbench_clients"] * EXPECTED[
        "pgbench_transactions_per_client"]
    # the prefix '%m [%p] %q%u@%d ' gives user and database on each line
    assert wb.sql("select distinct database from queries where statement like "
                  "'SELECT * FROM orders%'").item() == "shop_statements"


def test_the_long_prefix_is_detected_and_its_fields_read() -> None:
    wb = load(PGLOGS / "prefixed.log.gz")
    row = wb.sql("select user_name, database, application, client from queries "
                 "where statement like 'SELECT * FROM orders WHERE id = 1;'").row(0)
    assert row == ("postgres", "shop_prefixed", "fixture", "[local]")
    assert count(wb, "SELECT * FROM orders WHERE id = %") == EXPECTED["orders_by_id"]


def test_an_explicit_prefix_is_used(tmp_path: Path) -> None:
    wb = load(PGLOGS / "statements.log.gz", log_line_prefix="%m [%p] %q%u@%d ")
    assert count(wb, "SELECT * FROM orders WHERE id = %") == EXPECTED["orders_by_id"]
    with pytest.raises(LoadError, match="tried '%t ::: %p '"):
        load(PGLOGS / "main.log", log_line_prefix="%t ::: %p ")


def test_an_unknown_prefix_raises_naming_the_prefixes_tried(tmp_path: Path) -> None:
    # hand-made from real output: the same lines under a prefix no one uses
    lines = (PGLOGS / "main.log").read_text().splitlines(keepends=True)
    odd = tmp_path / "odd.log"
    odd.write_text("".join("<<" + ln.replace(" UTC [", "|", 1) if ln[:1].isdigit() else ln
                           for ln in lines))
    with pytest.raises(LoadError) as e:
        load(odd)
    message = str(e.value)
    assert "'%m [%p] '" in message and "'%m [%p] %q%u@%d '" in message
    assert "<<2026-" in message  # the first unmatched line is shown
    assert str(odd) in message


def test_a_garbage_line_goes_to_rejects_with_its_line_number(tmp_path: Path) -> None:
    lines = (PGLOGS / "main.log").read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.log"
    bad.write_text("".join(lines[:49]) + "kernel: oom-killer woke up\n" + "".join(lines[49:]))
    wb = latkit.open()
    report = wb.load(bad)
    assert report.rejected == 1
    assert wb.sql("select position from rejects").item() == "line 50"
    assert report.rows["queries"] == 104
    assert report.loaded + report.duplicates + report.rejected == report.read


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_compressed_logs_load_the_same(main: latkit.Workbook, suffix: str,
                                       tmp_path: Path) -> None:
    path = PGLOGS / f"main.log{suffix}"
    if suffix == ".gz":  # the committed .gz is main.log itself
        assert gzip.decompress(path.read_bytes()) == (PGLOGS / "main.log").read_bytes()
    if suffix == ".bz2":
        assert bz2.decompress(path.read_bytes()) == (PGLOGS / "main.log").read_bytes()
    assert Source.of(path).compression is not None
    wb = load(path)
    # Rounded: a parallel sum adds floats in no fixed order.
    summary = "select count(*), round(sum(duration_ms), 6), count(distinct session_id) from queries"
    assert wb.sql(summary).row(0) == main.sql(summary).row(0)


def test_tiny_chunks_give_the_same_rows(main: latkit.Workbook) -> None:
    wb = load(PGLOGS / "main.log", chunk_bytes=300, overlap=2)
    summary = """select count(*), round(sum(duration_ms), 6), count(phase_ms), count(parameters),
                        count(distinct session_id), sum(line) from queries"""
    assert wb.sql(summary).row(0) == main.sql(summary).row(0)


def test_auto_explain_json_plans_are_flattened(main: latkit.Workbook) -> None:
    sleeps = main.sql("""
        select p.plan_id, p.duration_ms, n.node_type, n.relation, n.index_name
        from plans p join plan_nodes n using (plan_id)
        where p.statement like 'SELECT id, pg_sleep(0.03)%' and n.node_id = 0
    """)
    assert sleeps.height == EXPECTED["sleeps"]
    assert set(sleeps["node_type"]) == {"Index Only Scan"}
    assert set(sleeps["index_name"]) == {"orders_pkey"}
    assert sleeps["duration_ms"].min() >= 30
    # plans and queries share the fingerprint
    joined = main.sql("""select count(distinct p.plan_id) from plans p
                         join queries q using (fingerprint)
                         where p.statement like 'SELECT id, pg_sleep%'""").item()
    assert joined == EXPECTED["sleeps"]


def test_auto_explain_text_plans_are_kept_and_read_into_nodes() -> None:
    wb = load(PGLOGS / "prefixed.log.gz")
    plans = wb.sql("select statement, plan from plans where statement like "
                   "'SELECT id, pg_sleep%' order by plan_id")
    assert plans["statement"].to_list() == [
        f"SELECT id, pg_sleep(0.03) FROM orders WHERE id = {i};"
        for i in range(1, EXPECTED["sleeps"] + 1)
    ]
    first = json.loads(plans["plan"][0])
    assert isinstance(first, str) and "Index Only Scan using orders_pkey" in first
    nodes = wb.sql("select node_type, index_name, relation from plan_nodes where plan_id = "
                   "(select min(plan_id) from plans where statement like 'SELECT id, pg_sleep%')")
    assert nodes.rows() == [("Index Only Scan", "orders_pkey", "orders")]


def test_signed_literals_make_one_template() -> None:
    wb = load(PGLOGS / "pgbench.log.gz")
    groups = wb.sql("""
        select count(distinct fingerprint) as shapes, count(*) as n
        from queries where statement like 'UPDATE pgbench_accounts SET abalance = abalance + %'
    """).row(0)
    assert groups == (1, 2 * 150)
    assert count(wb, "UPDATE pgbench_accounts SET abalance = abalance + -%") > 0
