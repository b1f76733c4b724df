"""Index opportunities: predicates, the profile, Seq Scans, suggestions and HypoPG checks.

Two kinds of data: the committed sample data (answers in ``sample_data/truth.json``), and a
throwaway PostgreSQL (``tests/postgres.py``) whose tables are made here, so that the right
suggestion is known by construction: ``people`` (200,000 rows, ``email`` not indexed),
``events`` (100,000 rows, nothing on ``kind``/``created_at``), ``members`` (an index on
``email`` created halfway through the log) and ``codes`` (12 rows: a Seq Scan is right).
The log is the server's own csvlog with auto_explain's JSON plans.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import latkit
from latkit.analysis import indexes
from tests.postgres import PostgresServer, missing

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
TRUTH = json.loads((SAMPLE / "truth.json").read_text())


# ------------------------------------------------------------------------- predicates

# (statement, expected (table, column, kind, indexable) in any order)
SHAPES = [
    ("SELECT * FROM t WHERE a = $1", {("t", "a", "equality", True)}),
    ("select * from T where A = %s", {("t", "a", "equality", True)}),
    (
        "SELECT o.id FROM orders o JOIN customers AS c ON c.id = o.customer_id "
        "WHERE c.email = %s AND o.status = 'open'",
        {
            ("customers", "id", "join", True),
            ("orders", "customer_id", "join", True),
            ("customers", "email", "equality", True),
            ("orders", "status", "equality", True),
        },
    ),
    ("SELECT * FROM t WHERE a IN (1, 2, 3)", {("t", "a", "equality", True)}),
    ("SELECT * FROM t WHERE a = ANY($1)", {("t", "a", "equality", True)}),
    ("SELECT * FROM t WHERE a IS NULL", {("t", "a", "equality", True)}),
    ("SELECT * FROM t WHERE created_at BETWEEN $1 AND $2", {("t", "created_at", "range", True)}),
    ("SELECT * FROM t WHERE 5 < a", {("t", "a", "range", True)}),
    ("SELECT * FROM t WHERE name LIKE 'abc%'", {("t", "name", "range", True)}),
    ("SELECT * FROM t WHERE name LIKE '%abc'", {("t", "name", "filter", False)}),
    ("SELECT * FROM t WHERE name ILIKE 'abc%'", {("t", "name", "filter", False)}),
    ("SELECT * FROM t WHERE lower(email) = $1", {("t", "email", "filter", False)}),
    ("SELECT * FROM t WHERE date(created_at) = $1", {("t", "created_at", "filter", False)}),
    ("SELECT * FROM t WHERE a + 1 = 5", {("t", "a", "filter", False)}),
    ("SELECT * FROM t WHERE a <> 3", {("t", "a", "filter", False)}),
    ("SELECT * FROM t WHERE NOT (a = 3)", {("t", "a", "filter", False)}),
    ("SELECT * FROM t WHERE a = 1 OR b = 2", {("t", "a", "filter", False),
                                              ("t", "b", "filter", False)}),
    ("SELECT * FROM t WHERE (a = 1 OR a = 2) AND b > 3", {("t", "a", "equality", True),
                                                          ("t", "b", "range", True)}),
    (
        "SELECT * FROM t WHERE t.a IN (SELECT u.x FROM u WHERE u.y = 3)",
        {("t", "a", "equality", True), ("u", "y", "equality", True)},
    ),
    (
        "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.t_id = t.id AND u.k > 5)",
        {("u", "t_id", "join", True), ("u", "k", "range", True)},
    ),
    (
        "SELECT * FROM t WHERE a = $1 ORDER BY b DESC LIMIT 10",
        {("t", "a", "equality", True), ("t", "b", "order", True)},
    ),
    ("UPDATE t SET x = 1 WHERE id = $1", {("t", "id", "equality", True)}),
    ("DELETE FROM t WHERE created_at < now() - interval '1 day'",
     {("t", "created_at", "range", True)}),
    (
        "WITH recent AS (SELECT * FROM t WHERE created_at > $1) "
        "SELECT * FROM recent r JOIN u ON u.id = r.u_id WHERE u.kind = $2",
        {
            ("t", "created_at", "range", True),
            ("u", "id", "join", True),
            (None, "u_id", "join", True),  # a CTE's column: no table to index
            ("u", "kind", "equality", True),
        },
    ),
    ("SELECT * FROM a, b WHERE x = 1", {(None, "x", "equality", True)}),  # ambiguous
    ("this is not SQL ((", set()),
]


@pytest.mark.parametrize(("statement", "expected"), SHAPES, ids=[s for s, _ in SHAPES])
def test_predicates_of_statement_shapes(statement: str, expected: set[tuple]) -> None:
    frame = indexes.predicates(statement)
    found = set(frame.select("table_name", "column_name", "kind", "indexable").iter_rows())
    assert found == expected


def test_predicates_explain_why_no_plain_index_helps() -> None:
    frame = indexes.predicates("SELECT * FROM t WHERE lower(email) = $1 AND a = 1 OR b = 2")
    assert frame["note"].str.contains("BitmapOr").all()
    note = indexes.predicates("SELECT * FROM t WHERE lower(email) = $1")["note"][0]
    assert "expression index on (LOWER(email))" in note


def test_predicates_mark_limit() -> None:
    frame = indexes.predicates("SELECT * FROM t WHERE a = $1 ORDER BY b LIMIT 3")
    assert frame["has_limit"].all()
    assert not indexes.predicates("SELECT * FROM t WHERE a = $1")["has_limit"].any()


# ------------------------------------------------------------------------- sample data


@pytest.fixture(scope="module")
def sample() -> latkit.Workbook:
    wb = latkit.open()
    wb.load(SAMPLE / "postgres/postgresql.csv.gz", SAMPLE / "postgres/pg_stat_statements.csv")
    return wb


def test_top_queries_counts_every_logged_execution(sample: latkit.Workbook) -> None:
    from latkit.fingerprint import fingerprint

    top = indexes.top_queries(sample, source="log")
    calls = dict(zip(top["fingerprint"], top["calls"], strict=True))
    expected = {fingerprint(s["pg_template"]): s["count"] for s in TRUTH["statements"]}
    assert calls == expected
    assert top["share"].sum() == pytest.approx(1.0)
    assert top["rank"].to_list() == list(range(1, top.height + 1))
    assert top["total_ms"].is_sorted(descending=True)


def test_top_queries_p95_and_vm_match_the_single_executions(sample: latkit.Workbook) -> None:
    top = indexes.top_queries(sample, source="log")
    durations = sample.sql("SELECT fingerprint, duration_ms FROM queries")
    for row in top.iter_rows(named=True):
        d = durations.filter(pl.col("fingerprint") == row["fingerprint"])["duration_ms"]
        values = d.to_numpy()
        assert row["p95_ms"] == pytest.approx(np.percentile(values, 95))
        assert row["vm"] == pytest.approx(values.var() / values.mean())
        assert row["mean_ms"] == pytest.approx(values.mean())


def test_top_queries_prefers_pg_stat_statements(sample: latkit.Workbook) -> None:
    top = indexes.top_queries(sample)
    assert set(top["measured_by"]) == {"pg_stat_statements"}
    scan = top.row(0, named=True)  # the unindexed lookup dominates the database time
    assert scan["query_template"] == TRUTH["seq_scan"]["pg_template"].replace("$1", "?")
    assert scan["share"] > 0.5
    assert scan["p95_ms"] is not None  # from the log: pg_stat_statements has no p95
    by_calls = indexes.top_queries(sample, by="calls")
    assert by_calls["calls"].is_sorted(descending=True)
    with pytest.raises(ValueError, match="by must be one of"):
        indexes.top_queries(sample, by="rows")


def test_seq_scans_read_the_whole_table(sample: latkit.Workbook) -> None:
    scans = indexes.seq_scans(sample)
    truth = TRUTH["seq_scan"]
    assert set(scans["relation"]) == {truth["table"]}
    assert set(scans["table_rows"]) == {truth["table_rows"]}
    assert (scans["kept_share"] < 0.01).all()
    assert (scans["calls"] == next(s["count"] for s in TRUTH["statements"]
                                   if s["pg_template"] == truth["pg_template"])).all()


def test_suggest_finds_the_missing_index_and_not_the_decoy(sample: latkit.Workbook) -> None:
    found = indexes.suggest(sample)
    truth = TRUTH["seq_scan"]
    assert found.height == 1
    row = found.row(0, named=True)
    assert (row["table_name"], row["columns"]) == (truth["table"], [truth["column"]])
    assert row["create_index"] == truth["fix"].replace(
        "CREATE INDEX", "CREATE INDEX CONCURRENTLY")
    assert row["reason"] == "seq_scan"
    assert 0 < row["est_saving_ms"] <= row["total_ms"]
    assert TRUTH["decoy_seq_scan"]["table"] not in found["table_name"].to_list()


def test_suggest_skips_tiny_tables_seen_in_explain_files(sample: latkit.Workbook) -> None:
    wb = latkit.open()
    wb.load(SAMPLE / "postgres/explain/shipping_method_by_code_decoy.json")
    decoy = indexes.seq_scans(wb).row(0, named=True)
    assert decoy["table_rows"] == TRUTH["decoy_seq_scan"]["table_rows"]
    assert indexes.suggest(wb).is_empty()


def test_suggest_from_an_explain_file_alone() -> None:
    wb = latkit.open()
    wb.load(SAMPLE / "postgres/explain/customers_by_email_before_index.json")
    found = indexes.suggest(wb)
    assert found["columns"].to_list() == [[TRUTH["seq_scan"]["column"]]]
    # No statement in an EXPLAIN file: the scan's filter makes a runnable one.
    assert found["statements"][0][0].startswith(f"SELECT * FROM {TRUTH['seq_scan']['table']}")


def test_suggest_notes_an_index_seen_in_a_plan_of_unknown_time() -> None:
    # EXPLAIN files carry no time: the index in the "after" plan may or may not exist now.
    wb = latkit.open()
    wb.load(SAMPLE / "postgres/explain/customers_by_email_before_index.json",
            SAMPLE / "postgres/explain/customers_by_email_after_index.json")
    row = indexes.suggest(wb).row(0, named=True)
    assert "customers_email_idx" in row["note"]


def test_suggest_respects_a_schema_file(sample: latkit.Workbook, tmp_path: Path) -> None:
    # The demo's own schema has no index on the column: the suggestion stays.
    assert indexes.suggest(sample, schema=SAMPLE / "demo/schema.sql").height == 1
    schema = tmp_path / "schema.sql"
    schema.write_text((SAMPLE / "demo/schema.sql").read_text() + "\n" + TRUTH["seq_scan"]["fix"]
                      + ";\n")
    assert indexes.suggest(sample, schema=schema).is_empty()


@pytest.mark.parametrize(
    ("ddl", "covered"),
    [
        ("CREATE TABLE customers (id int, email text UNIQUE)", True),
        ("CREATE TABLE customers (id int, email text, PRIMARY KEY (email, id))", True),
        ("CREATE TABLE customers (id int, email text, CONSTRAINT u UNIQUE (email))", True),
        ("CREATE INDEX ON customers USING btree (email)", True),
        ("CREATE INDEX ON customers (id, email)", False),  # email is not the leading column
        ("CREATE INDEX ON customers (lower(email))", False),  # an expression
        ("CREATE INDEX ON customers (email) WHERE id > 5", False),  # partial
    ],
)
def test_schema_indexes_that_cover_the_predicate(
    sample: latkit.Workbook, tmp_path: Path, ddl: str, covered: bool
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(ddl + ";\n")
    assert indexes.suggest(sample, schema=schema).is_empty() == covered


def test_verify_without_psycopg_names_the_extra(
    sample: latkit.Workbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"latkit\[postgres\]"):
        indexes.verify(sample, "host=127.0.0.1")


# ------------------------------------------------------------------------- a real PostgreSQL

SETUP = """
DROP TABLE IF EXISTS people, events, members, codes;
CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, city text NOT NULL,
                     active boolean NOT NULL);
INSERT INTO people SELECT g, 'user' || g || '@example.com', 'city' || g % 100, g % 2 = 0
FROM generate_series(1, 200000) AS g;
CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL, created_at timestamptz NOT NULL,
                     payload text NOT NULL);
INSERT INTO events SELECT g, 'kind' || g % 50,
       timestamptz '2026-01-01' + g * interval '1 minute', repeat('x', 40)
FROM generate_series(1, 100000) AS g;
CREATE TABLE members (id int PRIMARY KEY, email text NOT NULL);
INSERT INTO members SELECT g, 'member' || g || '@example.com' FROM generate_series(1, 50000) g;
CREATE TABLE codes (id int PRIMARY KEY, code text NOT NULL);
INSERT INTO codes SELECT g, 'C' || lpad(g::text, 2, '0') FROM generate_series(1, 12) AS g;
VACUUM ANALYZE people, events, members, codes;
"""

SESSION = """
SET max_parallel_workers_per_gather = 0;
SET log_min_duration_statement = 0;
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_format = json;
"""

LOOKUPS = 4  # executions of each query in the log
MARKER = "SELECT 'latkit-indexes-end-of-workload'"


def _workload() -> str:
    lines = []
    for i in range(1, LOOKUPS + 1):
        lines += [
            f"SELECT id, city FROM people WHERE email = 'user{i * 997}@example.com';",
            f"SELECT id, email FROM people WHERE id = {i * 31};",
            f"SELECT id, payload FROM events WHERE kind = 'kind{i}' "
            f"AND created_at >= timestamptz '2026-02-01' ORDER BY created_at LIMIT 20;",
            f"SELECT id FROM members WHERE email = 'member{i}@example.com';",
            f"SELECT id FROM codes WHERE code = 'C{i:02d}';",
        ]
    # The members index is created halfway: later plans use it, so it needs no suggestion.
    lines.append("CREATE INDEX members_email_idx ON members (email);")
    lines += [f"SELECT id FROM members WHERE email = 'member{i}@example.com';"
              for i in range(1, LOOKUPS + 1)]
    return "\n".join(lines) + f"\n{MARKER};\n"


@pytest.fixture(scope="module")
def server(postgres: PostgresServer) -> PostgresServer:
    available = postgres.psql("SELECT count(*) FROM pg_available_extensions "
                              "WHERE name = 'hypopg'").strip()
    if available != "1":
        missing("HypoPG", f"postgresql-{postgres.major}-hypopg")
    postgres.psql(SETUP)
    return postgres


@pytest.fixture(scope="module")
def logged(server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> latkit.Workbook:
    """A workbook of the server's own csvlog for the workload above."""
    relative = server.psql("SELECT pg_current_logfile('csvlog')").strip()
    log = server.data_dir / relative
    start = log.stat().st_size
    server.psql(SESSION + _workload())
    deadline = time.monotonic() + 20
    while MARKER.split("'")[1] not in log.read_bytes()[start:].decode("utf-8", "replace"):
        assert time.monotonic() < deadline, "the workload never reached the server log"
        time.sleep(0.1)
    time.sleep(0.3)  # the collector writes the last lines together
    part = tmp_path_factory.mktemp("pglog") / "workload.csv"
    part.write_bytes(log.read_bytes()[start:])
    wb = latkit.open()
    wb.load(part)
    return wb


def test_live_log_has_the_plans(logged: latkit.Workbook) -> None:
    scans = indexes.seq_scans(logged)
    people = scans.filter(pl.col("relation") == "people").row(0, named=True)
    assert people["plans"] == LOOKUPS
    assert people["table_rows"] == 200_000  # rows removed + rows kept, every plan
    assert people["rows_removed"] == LOOKUPS * (200_000 - 1)
    assert people["calls"] == LOOKUPS
    assert scans.filter(pl.col("relation") == "codes")["table_rows"].to_list() == [12]


def test_live_suggestions_are_the_missing_indexes_only(logged: latkit.Workbook) -> None:
    found = indexes.suggest(logged)
    got = dict(zip(found["table_name"], found["columns"].to_list(), strict=True))
    # people: one equality column; events: equality, then the range that is also the order.
    # Not members (indexed after its scans), codes (12 rows) or the primary-key lookups.
    assert got == {"people": ["email"], "events": ["kind", "created_at"]}
    assert found["create_index"].to_list()[0].startswith("CREATE INDEX CONCURRENTLY")


def test_live_database_decides_what_exists(logged: latkit.Workbook,
                                           server: PostgresServer) -> None:
    found = indexes.suggest(logged, dsn=server.dsn)
    assert set(found["table_name"]) == {"people", "events"}
    assert found.filter(pl.col("table_name") == "people")["table_rows"][0] == 200_000
    server.psql("CREATE INDEX people_email_idx ON people (email);")
    try:
        found = indexes.suggest(logged, dsn=server.dsn)
        assert set(found["table_name"]) == {"events"}
    finally:
        server.psql("DROP INDEX people_email_idx;")


def _real_plan(server: PostgresServer, create_index: str, statement: str) -> str:
    """The node types and index names of the plan after really creating the index."""
    out = server.psql(
        "BEGIN;\n"
        f"{create_index.replace(' CONCURRENTLY', '')};\n"
        f"EXPLAIN (FORMAT JSON) {statement};\n"
        "ROLLBACK;\n"
    )
    return out


@pytest.mark.parametrize(
    ("table", "columns", "statement", "chosen"),
    [
        ("people", ["email"], "SELECT id FROM people WHERE email = 'user5@example.com'", True),
        ("people", ["active"], "SELECT id FROM people WHERE active", False),  # half the rows
        ("people", ["email"], "SELECT id, city FROM people WHERE email = $1", True),
    ],
)
def test_verify_agrees_with_the_planner(
    logged: latkit.Workbook,
    server: PostgresServer,
    table: str,
    columns: list[str],
    statement: str,
    chosen: bool,
) -> None:
    name = f"{table}_{'_'.join(columns)}_idx"
    create = f"CREATE INDEX CONCURRENTLY {name} ON {table} ({', '.join(columns)})"
    suggestion = pl.DataFrame(
        {"table_name": [table], "columns": [columns], "create_index": [create],
         "statements": [[statement]]}
    )
    checked = indexes.verify(logged, server.dsn, suggestion, create_extension=True)
    row = checked.row(0, named=True)
    assert row["index_chosen"] is chosen, row
    assert row["status"] == ("index used" if chosen else "not chosen")
    if chosen:
        assert row["cost_after"] < row["cost_before"] / 10
        assert "hypothetical index" in row["plan_after"]
    assert "Seq Scan on people" in row["plan_before"]
    # The planner with the real index makes the same choice (literal values for EXPLAIN).
    literal = statement.replace("$1", "'user5@example.com'")
    assert (name in _real_plan(server, create, literal)) is chosen
    # Nothing was left behind: the hypothetical index is gone.
    assert server.psql("SELECT count(*) FROM hypopg_list_indexes").strip() == "0"


def test_verify_checks_every_suggestion(logged: latkit.Workbook, server: PostgresServer) -> None:
    checked = indexes.verify(logged, server.dsn, create_extension=True)
    assert set(checked["table_name"]) == {"people", "events"}
    assert checked["index_chosen"].all(), checked
    assert (checked["cost_reduction"] > 0.5).all()


def test_verify_says_when_hypopg_is_not_installed(
    logged: latkit.Workbook, server: PostgresServer
) -> None:
    server.psql("DROP DATABASE IF EXISTS latkit_no_hypopg; CREATE DATABASE latkit_no_hypopg;")
    dsn = server.dsn.replace("dbname=postgres", "dbname=latkit_no_hypopg")
    checked = indexes.verify(logged, dsn, indexes.suggest(logged))
    assert checked["status"].str.contains("CREATE EXTENSION hypopg").all()
    assert checked["index_chosen"].is_null().all()


def test_verify_reports_a_statement_that_does_not_plan(
    logged: latkit.Workbook, server: PostgresServer
) -> None:
    suggestion = pl.DataFrame(
        {"table_name": ["nowhere"], "columns": [["x"]],
         "create_index": ["CREATE INDEX CONCURRENTLY nowhere_x_idx ON nowhere (x)"],
         "statements": [["SELECT * FROM nowhere WHERE x = $1"]]}
    )
    row = indexes.verify(logged, server.dsn, suggestion, create_extension=True).row(0, named=True)
    assert row["status"].startswith("could not plan: ")
    assert "nowhere" in row["status"]
