from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latkit import fingerprint as fpmod
from latkit.fingerprint import fingerprint, template, templates

PGBENCH_UPDATE = "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {}"


def test_driver_and_server_placeholders_give_one_template():
    spellings = [
        "SELECT * FROM order_items WHERE order_id = %s",  # psycopg, as a span records it
        "SELECT * FROM order_items WHERE order_id = $1",  # the server's log
        "SELECT * FROM order_items WHERE order_id = ?",  # JDBC, sanitised OTel statements
        "SELECT * FROM order_items WHERE order_id = :order_id",
        "SELECT * FROM order_items WHERE order_id = %(order_id)s",
        "SELECT * FROM order_items WHERE order_id = 42",
    ]
    assert {template(s) for s in spellings} == {"SELECT * FROM order_items WHERE order_id = ?"}
    assert len({fingerprint(s) for s in spellings}) == 1


def test_in_lists_of_any_length_give_one_template():
    def in_list(n: int) -> str:
        return f"SELECT * FROM t WHERE id IN ({', '.join(str(k) for k in range(n))})"

    assert {template(in_list(n)) for n in (1, 3, 100)} == {"SELECT * FROM t WHERE id IN (?)"}
    assert template("select * from t where id in ('a','b' , 'c')") == template(in_list(2))
    assert template("SELECT * FROM t WHERE id IN (%s, %s)") == template(in_list(7))


def test_values_lists_of_any_length_give_one_row_with_a_value_per_column():
    one = "INSERT INTO t (a, b) VALUES (1, 'x')"
    five = "INSERT INTO t (a, b) VALUES " + ", ".join(f"({k}, 'v{k}')" for k in range(5))
    assert template(one) == template(five) == "INSERT INTO t (a, b) VALUES (?, ?)"
    assert template(five + " RETURNING id") == "INSERT INTO t (a, b) VALUES (?, ?) RETURNING id"


def test_rows_that_differ_in_shape_are_kept():
    assert (
        template("INSERT INTO t VALUES (1, 'a'), (2, DEFAULT)")
        == "INSERT INTO t VALUES (?, ?), (?, DEFAULT)"
    )


def test_signed_literal_is_one_value():
    expected = "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?"
    assert template(PGBENCH_UPDATE.format("-4121", 3)) == expected
    assert template(PGBENCH_UPDATE.format("17", 99)) == expected
    assert template(PGBENCH_UPDATE.format("- 4121", 3)) == expected
    assert template("SELECT * FROM t WHERE x = -4121") == "SELECT * FROM t WHERE x = ?"
    assert template("SELECT * FROM t WHERE x = - 4121") == "SELECT * FROM t WHERE x = ?"
    # A minus between two operands is an operator, not a sign.
    assert template("SELECT a - 1 FROM t") == "SELECT a - ? FROM t"


@pytest.mark.parametrize(
    "literal",
    [
        "'plain'",
        "'O''Brien'",
        "E'it\\'s\\n'",
        "e'tab\\t'",
        "$$dollar ' quoted -- not a comment$$",
        "$body$tagged $$ inside$body$",
        "B'0101'",
        "X'1F'",
        "N'national'",
        "U&'d\\0061t\\+000061'",
        "''",
    ],
)
def test_string_literals_of_every_kind_are_values(literal):
    assert template(f"SELECT * FROM t WHERE name = {literal}") == "SELECT * FROM t WHERE name = ?"


@pytest.mark.parametrize("number", ["42", "1e5", "1E-5", "0.5", ".5", "3.", "0x1F", "1_000"])
def test_numbers_of_every_spelling_are_values(number):
    assert template(f"SELECT * FROM t WHERE x > {number}") == "SELECT * FROM t WHERE x > ?"


def test_casts_keep_their_type_and_lose_their_value():
    spellings = [
        "SELECT * FROM t WHERE d = '2024-01-01'::date",
        "SELECT * FROM t WHERE d = $1::date",
        "SELECT * FROM t WHERE d = %s::date",
        "SELECT * FROM t WHERE d = ?::date",
        "SELECT * FROM t WHERE d = DATE '2024-01-01'",
        "SELECT * FROM t WHERE d = CAST('2024-01-01' AS date)",
    ]
    assert {template(s) for s in spellings} == {"SELECT * FROM t WHERE d = CAST(? AS DATE)"}
    assert template("SELECT now() - interval '5 minutes'") == template(
        "SELECT now() - INTERVAL '1 day'"
    )


def test_comments_do_not_change_the_template():
    bare = "SELECT * FROM orders WHERE id = %s"
    commented = [
        bare + " /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/",
        bare + " /*controller='orders',action='show',traceparent='00-1-2-01'*/",
        "/* leading */ " + bare,
        bare + " -- trailing, with 'a quote",
        "SELECT * FROM orders -- why\nWHERE id = %s",
        "SELECT * /* nested /* comment */ still comment */ FROM orders WHERE id = %s",
        "SELECT * FROM orders WHERE id = %s/*no space*/",
    ]
    assert {template(s) for s in commented} == {template(bare)}
    assert template("SELECT a/**/FROM t") == "SELECT a FROM t"


def test_text_inside_strings_is_not_taken_for_comments_or_placeholders():
    assert template("SELECT '-- not a comment', '/* nor this */', '$1 %s ?'") == ("SELECT ?, ?, ?")


def test_identifiers_keep_quotes_only_where_postgres_needs_them():
    assert (
        template('SELECT "Order".id, "order_items"."id", "user".name FROM "Order"')
        == 'SELECT "Order".id, order_items.id, "user".name FROM "Order"'
    )
    assert template('SELECT "my col" FROM "2024_sales"') == 'SELECT "my col" FROM "2024_sales"'


def test_unquoted_identifiers_keep_their_case():
    assert template("select OrderId, customerName from Orders") == (
        "SELECT OrderId, customerName FROM Orders"
    )


def test_keyword_case_and_whitespace_are_normalised():
    assert template("select  *\n\tfrom t\n  where x = 1;") == template(
        "SELECT * FROM t WHERE x = 2"
    )
    assert template("select * from t where x = 1;") == "SELECT * FROM t WHERE x = ?"
    assert template("SELECT 1;  ") == "SELECT ?"


def test_null_stays_and_booleans_are_values():
    assert template("SELECT * FROM t WHERE a IS NULL AND b = NULL") == (
        "SELECT * FROM t WHERE a IS NULL AND b = NULL"
    )
    assert template("UPDATE t SET active = true") == template("UPDATE t SET active = FALSE")
    assert template("UPDATE t SET active = true") == "UPDATE t SET active = ?"
    assert template("SELECT * FROM t WHERE a IS TRUE") == "SELECT * FROM t WHERE a IS TRUE"


def test_different_statements_give_different_fingerprints():
    assert fingerprint("SELECT * FROM orders WHERE id = 1") != fingerprint(
        "SELECT * FROM order_items WHERE id = 1"
    )
    assert fingerprint("SELECT a FROM t") != fingerprint("SELECT b FROM t")
    assert fingerprint("SELECT a FROM t WHERE x = 1") != fingerprint("SELECT a FROM t WHERE x > 1")


def test_fingerprint_is_a_stable_hash_of_the_template():
    fp = fingerprint("SELECT 1")
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fp == hashlib.blake2b(b"SELECT ?", digest_size=8).hexdigest()
    assert fp == "c148796e1220075a"  # pinned: a change here splits every stored fingerprint


UNPARSEABLE = [
    "VACUUM ANALYZE pgbench_accounts",
    "vacuum analyze pgbench_accounts",
    "DO $$ BEGIN PERFORM pg_sleep(0.1); RAISE NOTICE 'done'; END $$",
    "DO LANGUAGE plpgsql $x$ DECLARE n int := 3; BEGIN NULL; END $x$",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t WHERE id = 5",
    "SELECT a FROM t WHERE",
    "SELECT * FROM t WHERE name = 'unterminated",
    "SELECT * FROM t /* unterminated comment",
    "SELECT $$unterminated dollar",
    "SELECT '",
    "INSERT INTO t VALUES (1, 2",
    "))) (((",
    "garbage ; ; ''' \"\"\" $$ ?",
    "\x00\x01 binary \udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "",
    " ; ",
]


@pytest.mark.parametrize("sql", UNPARSEABLE)
def test_unparseable_statements_get_a_template_and_do_not_raise(sql):
    tpl = template(sql)
    assert isinstance(tpl, str)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(sql))


def test_unparseable_statements_are_stripped_and_upper_cased():
    assert template("vacuum  analyze pgbench_accounts;") == "VACUUM ANALYZE pgbench_accounts"
    assert template("DO $$ BEGIN NULL; END $$") == "DO ?"
    assert template("EXPLAIN ANALYZE SELECT * FROM t WHERE id = 5") == template(
        "explain analyze select * from t where id = 7"
    )
    assert template("explain analyze select * from t where id = 7") == (
        "EXPLAIN ANALYZE SELECT * FROM t WHERE id = ?"
    )


def test_unparseable_statements_log_nothing(caplog):
    with caplog.at_level(logging.DEBUG):
        template("VACUUM FULL some_table_never_seen_before")
        template("SHOW some_setting_never_seen_before")
    assert caplog.records == []


STATEMENTS = [
    PGBENCH_UPDATE.format("-4121", 3),
    PGBENCH_UPDATE.format("17", 12),
    "SELECT abalance FROM pgbench_accounts WHERE aid = 92871",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (3, 1, 5, -1234, CURRENT_TIMESTAMP)",
    "select * from t where x in (1,2,3) and y in ($1, $2) and z = any(array[1, 2])",
    "SELECT count(*) FILTER (WHERE a > 3) OVER (ORDER BY b ROWS BETWEEN 2 PRECEDING "
    "AND CURRENT ROW) FROM t",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x; SELECT 2",
    "SELECT a[1:n], b::text, c ?| array['a','b'], d ? 'k' FROM t",
    "SELECT * FROM \"Ünïcode\" WHERE naïve = 'é' AND n = 3",
    "insert into t (a) values (1), (2) on conflict (a) do update set b = excluded.b + 1",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s) WHERE n IN (SELECT 1)",
    *UNPARSEABLE,
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_templates_matches_template(sql):
    tpl, fp = templates(pa.array([sql]))
    assert tpl[0].as_py() == template(sql)
    assert fp[0].as_py() == fingerprint(sql)


# Fragments that meet at every boundary the lexer cares about; each text is a handful of them.
SQLISH = st.lists(
    st.sampled_from(
        list("abcXYZ019_ .,;:()[]'\"$%?-+*/=<>&|\\\n\té")
        + ["select", " IN ", "values", "E'", "$$", "$q$", "/*", "*/", "--", "::", "%s", "$1"]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(SQLISH, min_size=1, max_size=8))
def test_templates_matches_template_on_any_text(texts):
    tpl, fp = templates(pa.array(texts))
    assert tpl.to_pylist() == [template(t) for t in texts]
    assert fp.to_pylist() == [fingerprint(t) for t in texts]


def test_templates_keeps_nulls_and_positions():
    statements = pa.chunked_array(
        [
            ["SELECT 1", None, "select 2 -- two"],
            [None, "SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = 9"],
        ]
    )
    tpl, fp = templates(statements)
    assert tpl.to_pylist() == [
        "SELECT ?",
        None,
        "SELECT ?",
        None,
        "SELECT * FROM t WHERE id = ?",
        "SELECT * FROM t WHERE id = ?",
    ]
    assert fp.is_null().to_pylist() == [False, True, False, True, False, False]
    assert fp[0] == fp[2] and fp[4] == fp[5] and fp[0] != fp[4]
    assert tpl.type == fp.type == pa.string()


def test_repeated_statements_are_stripped_once_with_the_same_result():
    texts = ["SELECT 1", None, "select * from t where id = %s", "SELECT 2 -- two"] * 50
    column = pa.chunked_array([texts[:77], texts[77:]])
    assert fpmod._repeated(column.combine_chunks())  # the encoded path
    tpl, fp = templates(column)
    assert tpl.to_pylist() == [None if t is None else template(t) for t in texts]
    assert fp.to_pylist() == [None if t is None else fingerprint(t) for t in texts]


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["x", "SELECT 5", None, "SELECT * FROM t WHERE a = 'b'"], pa.large_string()),
        pa.array(["x", "SELECT 5", None, "SELECT * FROM t WHERE a = 'b'"], pa.string_view()),
        pa.array(["x", "SELECT 5", None, "SELECT * FROM t WHERE a = 'b'"]).dictionary_encode(),
        pa.array(["pad", "pad", "x", "SELECT 5", None, "SELECT * FROM t WHERE a = 'b'"])[2:],
    ],
    ids=["large_string", "string_view", "dictionary", "sliced"],
)
def test_templates_takes_any_string_column(column):
    tpl, _ = templates(column)
    assert tpl.to_pylist() == ["x", "SELECT ?", None, "SELECT * FROM t WHERE a = ?"]


def test_templates_of_nothing_is_nothing():
    tpl, fp = templates(pa.array([], pa.string()))
    assert len(tpl) == len(fp) == 0
    tpl, fp = templates(pa.chunked_array([], pa.string()))
    assert len(tpl) == len(fp) == 0
    tpl, fp = templates(pa.array([None, None], pa.string()))
    assert tpl.to_pylist() == fp.to_pylist() == [None, None]


def test_large_columns_are_split_across_threads_without_changing_the_result():
    statements = [PGBENCH_UPDATE.format(k - 500, k) for k in range(150_000)]
    statements[7] = None
    statements[-1] = "SELECT * FROM t WHERE id IN (1, 2, 3)"
    tpl, _ = templates(pa.array(statements))
    assert tpl.null_count == 1
    assert set(tpl.drop_null().to_pylist()) == {
        template(PGBENCH_UPDATE.format(1, 1)),
        "SELECT * FROM t WHERE id IN (?)",
    }


def test_uncompiled_lexer_agrees_with_the_compiled_one():
    column = pa.array([s for s in STATEMENTS if s is not None], pa.large_string())
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[: len(column) + 1]
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)
    results = []
    for lex in (fpmod._lex_all, fpmod._lexer()):
        out = np.empty(int(offsets[-1]) + len(column), dtype=np.uint8)
        out_offsets = np.empty(len(column) + 1, dtype=np.int64)
        lex(data, offsets, fpmod._classes(), np.zeros((6, 64), np.int64), out, out_offsets)
        results.append((bytes(out[: out_offsets[-1]]), out_offsets.tolist()))
    assert results[0] == results[1]
