"""``wb.load(..., redact=True)``: no literal value from a source file reaches the workbook.

The proof loads real files (PostgreSQL logs in three formats with ``DETAIL:  parameters:``
lines, EXPLAIN plans with literals in their filters, a pg_stat_statements export, and traces
made by the OpenTelemetry SDK with an e-mail address, a user id, a client address, query
strings and SQL with literals in them) with ``redact=True``, takes the literals out of the
sources, and searches every text value of every table (the strings inside JSON too), and
the output of ``latkit summary``, for each of them as a whole token.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import latkit
from latkit import redact, schema
from latkit.fingerprint import fingerprint
from latkit.redact import DEFAULT_KEYS

FIXTURES = Path(__file__).parent / "fixtures"
PG_FILES = [
    FIXTURES / "pglogs/main.log",
    FIXTURES / "pglogs/main.csv.gz",
    FIXTURES / "pglogs/main.json.gz",
    FIXTURES / "pgplans/seqscan_filter.json",
    FIXTURES / "pgplans/several.json",
    FIXTURES / "pgplans/statements_pg17.csv",
]

EMAIL = "ann.lee@example.com"
USER_ID = "customer-88231"
CLIENT = "203.0.113.77"
TOKEN = "s3cr3tT0ken"
COUPON = "SPRING-7788"
#: (The order id 4217 in the URL's path is kept, as the path is: routes need it.)
PRIVATE = [EMAIL, USER_ID, CLIENT, TOKEN, COUPON, "88231"]


def make_traces(path: Path) -> Path:
    """Spans with private data, made and encoded by the OpenTelemetry SDK (Collector framing)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.orders")
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as server:
        server.set_attributes(
            {
                "http.request.method": "GET",
                "http.route": "/orders/{id}",
                "http.target": f"/orders/4217?email={EMAIL}&token={TOKEN}",
                "url.full": f"https://shop.example/orders/4217?coupon={COUPON}",
                "enduser.id": USER_ID,
                "user.email": EMAIL,
                "client.address": CLIENT,
                "http.response.status_code": 500,
            }
        )
        with tracer.start_as_current_span("SELECT shop", kind=SpanKind.CLIENT) as db:
            db.set_attributes(
                {
                    "db.system": "postgresql",
                    "db.statement": f"SELECT * FROM customers WHERE email = '{EMAIL}' "
                    "AND id = 88231",
                    "server.address": "db",
                }
            )
            db.record_exception(
                ValueError(f"duplicate key value: Key (email)=({EMAIL}) already exists")
            )
            db.set_status(Status(StatusCode.ERROR, f"no customer '{USER_ID}'"))
    provider.shutdown()
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    path.write_bytes(struct.pack(">I", len(body)) + body)
    return path


def make_bad_log(path: Path) -> Path:
    """A real log with one broken line that quotes private values (a reject's excerpt)."""
    text = (FIXTURES / "pglogs/main.log").read_text()
    path.write_text(text + f"garbage line for {EMAIL} with 'SPRING-7788'\n")
    return path


# --- literals of the sources ----------------------------------------------------------------

_STATEMENT = re.compile(r"(?:statement|execute [^:]*|query): (.*)")
_PARAMETER = re.compile(r"\$\d+ = '((?:[^']|'')*)'")
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_NUMBER = re.compile(r"(?<![\w.$])(\d{4,}(?:\.\d+)?)(?![\w.])")


def source_literals(path: Path) -> set[str]:
    """Bind parameter values, quoted strings (3+ characters) and numbers (4+ digits) in
    the statements and plans of a file, and e-mail addresses anywhere in it."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8", "replace")
    found: set[str] = set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text))
    found |= {v.replace("''", "'") for v in _PARAMETER.findall(text)}
    texts = [m.group(1) for m in _STATEMENT.finditer(text)]
    if path.suffix == ".json":  # plans: the expressions in them
        texts.append(text)
    if path.name.startswith("statements_"):  # a pg_stat_statements export: its queries
        texts += [row["query"] for row in csv.DictReader(io.StringIO(text))]
    for sql in texts:
        found |= {q for q in _QUOTED.findall(sql) if len(q) >= 3}
        found |= set(_NUMBER.findall(sql))
    return {f for f in found if f.strip()}


def workbook_texts(wb: latkit.Workbook) -> Iterator[tuple[str, str]]:
    """(table.column, text) for every text value in the workbook, JSON strings included.

    Where the file was and its hash (``source``, ``path``, ``sha256``) are left out: they
    come from the machine (a temporary folder numbered by pytest, say), not from the data,
    and can contain the digits of a literal by chance."""
    for table in (*schema.DATA_TABLES, "loads", "rejects"):
        frame = wb.sql(f"SELECT * EXCLUDE (load_id) FROM {table}")
        json_columns = {"plan", "extra"}
        for column in frame.columns:
            if column in {"source", "path", "sha256"}:
                continue
            for value in frame[column].to_list():
                for text in _strings(value):
                    if column in json_columns:
                        for inner in _strings(json.loads(text)):
                            yield f"{table}.{column}", inner
                    else:
                        yield f"{table}.{column}", text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def leaks(
    texts: Iterator[tuple[str, str]] | list[tuple[str, str]], literals: set[str]
) -> dict[str, set[str]]:
    """Which literals occur, as a whole token, in which columns."""
    pattern = re.compile(
        r"(?<![\w])("
        + "|".join(re.escape(x) for x in sorted(literals, key=len)[::-1])
        + r")(?![\w])"
    )
    found: dict[str, set[str]] = {}
    for where, text in texts:
        for m in pattern.finditer(text):
            found.setdefault(m.group(1), set()).add(where)
    return found


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("redact")
    return [*PG_FILES, make_traces(tmp / "traces.pb"), make_bad_log(tmp / "bad.log")]


@pytest.fixture(scope="module")
def literals(sources: list[Path]) -> set[str]:
    found = set(PRIVATE)
    for path in sources:
        found |= source_literals(path)
    return found


@pytest.fixture(scope="module")
def redacted(tmp_path_factory: pytest.TempPathFactory, sources: list[Path]) -> Path:
    path = tmp_path_factory.mktemp("redacted") / "case.duckdb"
    with latkit.open(path) as wb:
        wb.load(*sources, redact=True)
    return path


def test_the_sources_do_hold_literals_and_an_unredacted_load_keeps_them(
    sources: list[Path], literals: set[str]
) -> None:
    # Guards the proof: the literals are real, and would be found if they were stored.
    assert {"18296", "paid", EMAIL} <= literals
    wb = latkit.open()
    wb.load(*sources)
    found = leaks(workbook_texts(wb), literals)
    assert {"18296", EMAIL, TOKEN, USER_ID, CLIENT, "88231"} <= set(found)


def test_no_literal_from_the_sources_is_anywhere_in_a_redacted_workbook(
    redacted: Path, literals: set[str]
) -> None:
    with latkit.open(redacted, read_only=True) as wb:
        assert wb.counts()["queries"] > 0 and wb.counts()["spans"] == 2
        assert leaks(workbook_texts(wb), literals) == {}


def test_redacted_rows_keep_what_analyses_need(redacted: Path) -> None:
    with latkit.open(redacted, read_only=True) as wb:
        db = wb.sql("select * from spans where db_system = 'postgresql'").row(0, named=True)
        assert db["db_statement"] == "SELECT * FROM customers WHERE email = ? AND id = ?"
        assert db["fingerprint"] == fingerprint(db["db_statement"])
        server = wb.sql("select * from spans where kind = 'server'").row(0, named=True)
        assert server["route"] == "/orders/{id}" and server["http_status_code"] == 500
        attrs = {kv["key"]: kv["value"] for kv in server["attributes"]}
        assert "user.email" not in attrs
        assert attrs["enduser.id"].startswith("h:") and attrs["client.address"].startswith("h:")
        assert attrs["http.target"] == "/orders/4217"
        assert attrs["url.full"] == "https://shop.example/orders/4217"
        assert wb.sql("select count(*) as n from queries where parameters is not null")["n"][0] == 0
        assert wb.sql("select count(*) as n from rejects where excerpt is not null")["n"][0] == 0


def test_fingerprints_are_the_same_redacted_or_not() -> None:
    plain, hidden = latkit.open(), latkit.open()
    plain.load(*PG_FILES[:1])
    hidden.load(*PG_FILES[:1], redact=True)
    query = "select fingerprint, count(*) as n from queries group by all order by all"
    assert plain.sql(query).equals(hidden.sql(query))


def test_redact_keys_add_to_the_defaults(tmp_path: Path) -> None:
    wb = latkit.open()
    wb.load(make_traces(tmp_path / "t.pb"), redact_keys={"http.route": "drop"})
    server = wb.sql("select attributes from spans where kind = 'server'")["attributes"][0]
    keys = {kv["key"] for kv in server}
    assert "http.route" not in keys and "user.email" not in keys
    assert DEFAULT_KEYS["user.email"] == "drop"


def test_a_summary_of_a_redacted_workbook_shows_no_literal(
    redacted: Path, literals: set[str], tmp_path: Path
) -> None:
    from latkit.cli import main

    result = CliRunner().invoke(main, ["summary", "--db", str(redacted)])
    assert result.exit_code == 0, result.output
    # The summary's own words ("Routes that open a connection") are no leak of 'open'.
    empty = tmp_path / "empty.duckdb"
    latkit.open(empty).close()
    words = CliRunner().invoke(main, ["summary", "--db", str(empty)]).output
    assert leaks([("summary", result.output)], literals - set(re.findall(r"\w+", words))) == {}


def test_a_secret_keys_the_hashes_so_a_guess_cannot_be_confirmed(tmp_path: Path) -> None:
    traces = make_traces(tmp_path / "t.pb")
    query = """
        SELECT attr(attributes, 'enduser.id') AS user_id, attr(attributes, 'client.address') AS ip
        FROM spans WHERE kind = 'server'
    """

    def hashes(**secret: str) -> tuple[str, str]:
        wb = latkit.open()
        wb.load(traces, redact=True, **secret)
        return tuple(wb.sql(query).row(0))  # type: ignore[return-value]

    unkeyed = hashes()
    guessed = tuple(redact.hashed(pa.array([USER_ID, CLIENT])).to_pylist())
    assert unkeyed == guessed  # without a secret, hashing a guess confirms it
    keyed = hashes(redact_secret="correct horse")
    assert keyed == hashes(redact_secret="correct horse")  # workbooks still join
    assert keyed != hashes(redact_secret="another secret")
    assert all(h.startswith("h:") for h in keyed) and not set(keyed) & set(guessed)
    assert "correct horse" not in repr(redact.Redaction.of(None, "correct horse"))
