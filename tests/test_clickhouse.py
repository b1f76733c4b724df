"""The analyses on ClickHouse (chdb, embedded) give the answers they give on DuckDB.

The sample traces are loaded into DuckDB, written by ``to_otel_traces`` into a table made
with the Collector exporter's own DDL, and every trace analysis the notebooks call is run on
both workbooks: the frames must be equal, value for value.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import latkit
from latkit.analysis import budget, cache, network, nplusone, pooling

try:
    import chdb  # noqa: F401
except ImportError:  # pragma: no cover - the dev extra installs it
    message = "chdb is not installed (pip install latkit[clickhouse])"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it", pytrace=False)
    pytest.skip(message, allow_module_level=True)

from latkit import clickhouse  # noqa: E402

SAMPLE = Path(__file__).parent.parent / "sample_data" / "traces"


@pytest.fixture(scope="module")
def duck() -> latkit.Workbook:
    wb = latkit.open()
    wb.load(SAMPLE)
    return wb


@pytest.fixture(scope="module")
def ch(duck: latkit.Workbook) -> Iterator[clickhouse.ClickHouseWorkbook]:
    wb = clickhouse.to_otel_traces(duck)
    yield wb
    wb.close()


def _slow_trace(wb: Any) -> str:
    return str(budget.per_request(wb).sort("duration_ms", "trace_id")["trace_id"][-1])


def _slow_route(wb: Any) -> str:
    return str(budget.by_route(wb)["route"][0])


#: Every analysis of traces that the notebooks call, with the arguments they use.
ANALYSES: dict[str, Callable[[Any], pl.DataFrame]] = {
    "budget.by_route": lambda wb: budget.by_route(wb, target_ms=100),
    "budget.by_route every 1m": lambda wb: budget.by_route(wb, every="1m"),
    "budget.per_request": lambda wb: budget.per_request(wb),
    "budget.per_request of a route": lambda wb: budget.per_request(
        wb, service="shop", route=_slow_route(wb)
    ),
    "budget.breakdown": lambda wb: budget.breakdown(wb),
    "budget.critical_path": lambda wb: budget.critical_path(wb, _slow_trace(wb)),
    "budget.critical_path_summary": lambda wb: budget.critical_path_summary(
        wb, _slow_route(wb), quantile=0.95
    ),
    "budget.trace_spans": lambda wb: budget.trace_spans(wb, _slow_trace(wb)),
    "budget.compare": lambda wb: budget.compare(wb, _slow_route(wb)),
    "budget.diff": lambda wb: budget.diff(wb, wb),
    "nplusone.detect": lambda wb: nplusone.detect(wb, min_repeats=5),
    "nplusone.detect low threshold": lambda wb: nplusone.detect(wb, min_repeats=2),
    "nplusone.detect_http": lambda wb: nplusone.detect_http(wb, min_repeats=2),
    "nplusone.summary": lambda wb: nplusone.summary(wb, min_repeats=5),
    "nplusone.queries_per_request": lambda wb: nplusone.queries_per_request(wb, alarm_at=10),
    "cache.lookups": lambda wb: cache.lookups(wb),
    "cache.infer_hits": lambda wb: cache.infer_hits(wb),
    "cache.hit_rates by key_pattern": lambda wb: cache.hit_rates(wb, by="key_pattern"),
    "cache.hit_rates by route": lambda wb: cache.hit_rates(wb, by="route"),
    "cache.hit_rates by 10s": lambda wb: cache.hit_rates(wb, by="10s"),
    "cache.ages": lambda wb: cache.ages(wb),
    "cache.ttl_estimate": lambda wb: cache.ttl_estimate(wb),
    "cache.size_curve": lambda wb: cache.size_curve(wb),
    "cache.staleness": lambda wb: cache.staleness(wb),
    "network.edges": lambda wb: network.edges(wb),
    "network.keep_alive": lambda wb: network.keep_alive(wb),
    "pooling.setup_gaps": lambda wb: pooling.setup_gaps(wb),
    "pooling.in_flight": lambda wb: pooling.in_flight(wb),
    "pooling.by_load": lambda wb: pooling.by_load(wb),
    "pooling.no_pool": lambda wb: pooling.no_pool(wb),
}


@pytest.mark.parametrize("name", list(ANALYSES))
def test_analysis_gives_the_same_answer_on_clickhouse(
    name: str, duck: latkit.Workbook, ch: clickhouse.ClickHouseWorkbook
) -> None:
    expected = ANALYSES[name](duck)
    got = ANALYSES[name](ch)
    assert expected.height > 0 or name == "nplusone.detect_http"
    # Integer widths differ (ClickHouse counts are UInt64, returned as Int64; DuckDB's
    # are Int64 or HUGEINT); the values may not. Floats may differ in their last bit
    # (the engines interpolate percentiles and sum in different orders), no more.
    assert_frame_equal(got, expected, check_dtypes=False, rel_tol=1e-12, abs_tol=1e-9)
    # A yes/no column stays one: ClickHouse's comparisons give UInt8, on which a polars
    # filter (``frame.filter(pl.col("traced"))``, as a chart does) fails.
    flags = [c for c, t in expected.schema.items() if t == pl.Boolean]
    assert {c: got.schema[c] for c in flags} == {c: pl.Boolean for c in flags}


def test_percentiles_interpolate_like_numpy(ch: clickhouse.ClickHouseWorkbook) -> None:
    import numpy as np

    durations = ch.sql("SELECT duration_ms FROM spans WHERE kind = 'server'")["duration_ms"]
    got = ch.sql("SELECT quantile_cont(duration_ms, 0.95) AS p FROM spans WHERE kind = 'server'")[
        "p"
    ][0]
    assert got == pytest.approx(np.percentile(durations.to_numpy(), 95), rel=1e-12)


def test_the_table_has_the_exporters_columns(ch: clickhouse.ClickHouseWorkbook) -> None:
    columns = ch.engine.arrow(f"DESCRIBE TABLE {ch.table}", {})
    types = dict(zip(columns["name"].to_pylist(), columns["type"].to_pylist(), strict=True))
    assert types == {
        "Timestamp": "DateTime64(9)",
        "TraceId": "String",
        "SpanId": "String",
        "ParentSpanId": "String",
        "TraceState": "String",
        "SpanName": "LowCardinality(String)",
        "SpanKind": "LowCardinality(String)",
        "ServiceName": "LowCardinality(String)",
        "ResourceAttributes": "Map(LowCardinality(String), String)",
        "ScopeName": "String",
        "ScopeVersion": "String",
        "SpanAttributes": "Map(LowCardinality(String), String)",
        "Duration": "UInt64",
        "StatusCode": "LowCardinality(String)",
        "StatusMessage": "String",
        "Events.Timestamp": "Array(DateTime64(9))",
        "Events.Name": "Array(LowCardinality(String))",
        "Events.Attributes": "Array(Map(LowCardinality(String), String))",
        "Links.TraceId": "Array(String)",
        "Links.SpanId": "Array(String)",
        "Links.TraceState": "Array(String)",
        "Links.Attributes": "Array(Map(LowCardinality(String), String))",
        "ResourceAttributeItems": "Array(String)",
        "SpanAttributeItems": "Array(String)",
    }


def test_spans_are_written_as_the_exporter_writes_them(
    duck: latkit.Workbook, ch: clickhouse.ClickHouseWorkbook
) -> None:
    rows = ch.engine.arrow(
        f"SELECT SpanKind, StatusCode, count() AS n FROM {ch.table} GROUP BY ALL ORDER BY ALL",
        {},
    ).to_pylist()
    kinds = {r["SpanKind"] for r in rows}
    assert kinds == {"SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"}
    assert {r["StatusCode"] for r in rows} <= {
        "STATUS_CODE_UNSET",
        "STATUS_CODE_OK",
        "STATUS_CODE_ERROR",
    }
    assert sum(r["n"] for r in rows) == duck.counts()["spans"]


def test_fingerprints_are_latkits(duck: latkit.Workbook, ch: clickhouse.ClickHouseWorkbook) -> None:
    query = """
        SELECT db_statement, fingerprint, query_template, count(*) AS n FROM spans
        WHERE db_statement IS NOT NULL GROUP BY ALL ORDER BY ALL
    """
    assert_frame_equal(ch.sql(query), duck.sql(query), check_dtypes=False)


def test_parameters_are_bound_never_pasted(ch: clickhouse.ClickHouseWorkbook) -> None:
    nasty = "x'); DROP TABLE otel_traces; -- \\' \\\\ \t\n\r é {p_a:String}"
    before = ch.counts()["spans"]
    frame = ch.sql(
        "SELECT $a AS a, $b AS b, $c AS c, $d AS d, $e AS e, $f AS f",
        {"a": nasty, "b": None, "c": 42, "d": 0.5, "e": True, "f": [nasty, "plain"]},
    )
    assert frame.row(0) == (nasty, None, 42, 0.5, True, [nasty, "plain"])
    assert nasty not in ch.translate("SELECT $a AS a", {"a": nasty}).sql
    assert ch.counts()["spans"] == before
    positional = ch.sql("SELECT ? AS a, ? AS b", [nasty, 7])
    assert positional.row(0) == (nasty, 7)


def test_query_log_analyses_are_refused_naming_the_table(
    ch: clickhouse.ClickHouseWorkbook,
) -> None:
    with pytest.raises(clickhouse.NotInClickHouse, match="'queries' table"):
        nplusone.detect_in_logs(ch)
    with pytest.raises(clickhouse.NotInClickHouse, match="'connections' table"):
        pooling.sessions(ch)


def test_the_budget_streams_span_arrays_in_shards(
    duck: latkit.Workbook, ch: clickhouse.ClickHouseWorkbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = []
    whole = functools.partial(clickhouse.ClickHouseWorkbook.span_array_shards, ch)

    def small(spans_per_shard: int = 0) -> Any:
        for spans in whole(spans_per_shard=2_000):
            shards.append(len(spans))
            yield spans

    monkeypatch.setattr(ch, "span_array_shards", small)
    got = budget.per_request(ch)
    assert len(shards) == -(-duck.counts()["spans"] // 2_000)
    assert sum(shards) == duck.counts()["spans"]
    assert_frame_equal(got, budget.per_request(duck), check_dtypes=False)


def test_sample_pulls_whole_traces_into_duckdb(
    duck: latkit.Workbook, ch: clickhouse.ClickHouseWorkbook
) -> None:
    route = _slow_route(duck)
    local = ch.sample(traces=40, where="route = $r", params={"r": route})
    ids = local.sql("SELECT DISTINCT trace_id FROM spans")["trace_id"].to_list()
    assert len(ids) == 40
    assert local.sql("SELECT count(*) AS n FROM spans WHERE route = $r", {"r": route})["n"][0]
    columns = """trace_id, span_id, parent_span_id, trace_state, name, kind, service,
        start_ns, end_ns, duration_ms, status, status_message, category, route, http_method,
        http_status_code, db_system, db_statement, fingerprint, query_template, peer,
        cache_hit, scope, attributes, resource_attributes, events, links"""
    query = f"""
        SELECT {columns} FROM spans WHERE list_contains($ids, trace_id)
        ORDER BY trace_id, span_id
    """
    assert_frame_equal(local.sql(query, {"ids": ids}), duck.sql(query, {"ids": ids}))
    assert local.sql("SELECT format, read FROM loads").row(0) == (
        "clickhouse",
        len(local.sql("SELECT 1 FROM spans")),
    )
    # The same seed picks the same traces.
    again = ch.sample(traces=40, where="route = $r", params={"r": route})
    assert sorted(again.sql("SELECT DISTINCT trace_id FROM spans")["trace_id"]) == sorted(ids)


def test_kind_and_status_in_the_later_exporters_spelling(
    ch: clickhouse.ClickHouseWorkbook,
) -> None:
    from chdb import session

    assert isinstance(ch.engine, clickhouse._Chdb)
    s = ch.engine.session
    assert isinstance(s, session.Session)
    s.query("CREATE DATABASE IF NOT EXISTS later")
    clickhouse.create_otel_traces(s, "otel_traces", "later")
    s.query(
        "INSERT INTO later.otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, "
        "ServiceName, SpanAttributes, Duration, StatusCode) VALUES (now64(9), "
        "'0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 'GET /x', 'Server', "
        "'svc', map('http.route', '/x', 'http.response.status_code', '503'), 2000000, 'Error')"
    )
    wb = latkit.open_clickhouse(s, table="later.otel_traces")
    row = wb.sql(
        "SELECT kind, status, category, route, http_status_code, duration_ms, "
        "parent_span_id FROM spans"
    ).row(0)
    assert row == ("server", "error", "http_server", "/x", 503, 2.0, None)


def test_clickhouse_libraries_are_imported_only_when_called() -> None:
    code = (
        "import sys, latkit, latkit.clickhouse; "
        "print(sorted(m for m in ('chdb', 'clickhouse_connect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_frames_uploaded_for_an_analysis_do_not_accumulate(
    ch: clickhouse.ClickHouseWorkbook,
) -> None:
    def temporary_tables() -> int:
        rows = ch.engine.arrow(
            "SELECT count() AS n FROM system.tables WHERE is_temporary "
            "AND name LIKE '\\\\_latkit\\\\_upload\\\\_%'",
            {},
        )
        return int(rows["n"][0].as_py())

    for _ in range(3):
        budget.breakdown(ch)
    assert temporary_tables() == 1  # the last one, dropped at the next upload


def test_a_window_restricts_every_analysis_inside_clickhouse(
    duck: latkit.Workbook, ch: clickhouse.ClickHouseWorkbook
) -> None:
    assert isinstance(ch.engine, clickhouse._Chdb)
    since = int(duck.sql("SELECT median(start_ns)::BIGINT AS t FROM spans")["t"][0])
    until = int(duck.sql("SELECT max(start_ns) AS t FROM spans")["t"][0])
    window = latkit.open_clickhouse(
        ch.engine.session,
        table="default.otel_traces",
        since=since,
        until=until,
        services=["shop"],
    )
    expected = duck.sql(
        """
        SELECT route, count(*) AS requests FROM spans
        WHERE kind = 'server' AND service = 'shop' AND start_ns >= $since AND start_ns < $until
        GROUP BY route ORDER BY route
        """,
        {"since": since, "until": until},
    )
    got = budget.by_route(window).select("route", "requests").sort("route")
    assert expected.height > 1
    assert_frame_equal(got, expected, check_dtypes=False)
    assert (
        "Timestamp >= fromUnixTimestamp64Nano({_w_since:Int64})"
        in window.translate("SELECT count(*) FROM spans").sql
    )


@pytest.mark.notebooks
@pytest.mark.parametrize(
    ("notebook", "files"),
    [
        ("00_tour", {"traces": None, "query_log": None}),
        ("01_latency_budget", {"traces": None}),
        ("03_n_plus_one", {"traces": None, "query_log": None}),
        ("04_cache_hit_rate", {"traces": None, "query_logs": None, "traces_without_hits": None}),
        ("05_connections_and_network", {"traces": None, "query_log": None}),
    ],
)
def test_a_trace_notebook_runs_unchanged_on_clickhouse(
    notebook: str, files: dict[str, None], tmp_path: Path
) -> None:
    """The notebook's own checkpoints assert the sample data's known answers, computed in
    ClickHouse (a chdb folder filled from the sample traces, opened by the notebook's kernel)."""
    from latkit import report

    folder = tmp_path / "chdb"
    # Another process writes the table: one chdb session per process, and this one has its own.
    code = (
        "import latkit; from latkit import clickhouse; wb = latkit.open(); "
        f"wb.load({str(SAMPLE)!r}); "
        f"clickhouse.to_otel_traces(wb, client={f'chdb:{folder}'!r}).close()"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path = Path(__file__).parent.parent / "notebooks" / f"{notebook}.ipynb"
    params = {"clickhouse": f"chdb:{folder}", "sample_data": True, **files}
    executed, error = report.run(path, tmp_path / path.name, params, timeout=600)
    assert error is None, f"{notebook} stopped at {error}"
    checkpoints = [c for c in executed.cells if c.cell_type == "code" and "assert" in c.source]
    assert checkpoints and all(c.get("execution_count") for c in checkpoints)
