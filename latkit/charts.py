"""Altair charts of analysis frames. Charts take DataFrames and never run SQL.

>>> from latkit import charts
>>> charts.setup()                      # offline rendering: spec plus an SVG beside it
>>> charts.budget_bars(budget.breakdown(wb), target_ms=100)
"""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import polars as pl

#: One colour per budget category, the same in every chart.
BUDGET_COLORS = {
    "self": "#4c78a8",
    "db": "#e45756",
    "cache": "#72b7b2",
    "http_client": "#f58518",
    "network": "#b279a2",
}

_BUDGET_SCALE = alt.Scale(domain=list(BUDGET_COLORS), range=list(BUDGET_COLORS.values()))


def setup() -> None:
    """Render charts with no network: the Vega-Lite spec (JupyterLab draws it natively)
    plus an SVG of it made by vl-convert, so GitHub, nbviewer and HTML exports show it too.
    Data is embedded in the spec (no files written beside the notebook)."""
    alt.renderers.register("latkit", _render)
    alt.renderers.enable("latkit")
    alt.data_transformers.disable_max_rows()


def _render(spec: dict[str, Any], **metadata: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import vl_convert

    bundle: dict[str, Any] = {
        "application/vnd.vegalite.v5+json": spec,
        "image/svg+xml": vl_convert.vegalite_to_svg(spec),
        "text/plain": "<Altair chart>",
    }
    return bundle, metadata


def budget_bars(breakdown: pl.DataFrame, target_ms: float = 100.0) -> alt.LayerChart:
    """A stacked bar per route of its mean time per request by budget category, against
    the target. ``breakdown`` is ``budget.breakdown(wb)``."""
    data = breakdown.with_columns(
        (pl.col("service") + " " + pl.col("route").fill_null("(no route)")).alias("label")
    )
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("sum(mean_ms):Q", title="mean time per request (ms)"),
            y=alt.Y("label:N", title=None, sort="-x"),
            color=alt.Color("category:N", scale=_BUDGET_SCALE, title="spent on"),
            order=alt.Order("category:N"),
            tooltip=[
                "service",
                "route",
                "category",
                alt.Tooltip("mean_ms:Q", format=".1f"),
                alt.Tooltip("p95_ms:Q", format=".1f"),
                alt.Tooltip("share:Q", format=".0%"),
            ],
        )
    )
    target = (
        alt.Chart(pl.DataFrame({"target_ms": [target_ms]}))
        .mark_rule(color="black", strokeDash=[4, 4])
        .encode(x="target_ms:Q")
    )
    return (bars + target).properties(title="Where each route's time goes", width=520)


def latency_distribution(
    requests: pl.DataFrame, target_ms: float = 100.0, column: str = "duration_ms"
) -> alt.LayerChart:
    """A histogram of request latency (log scale) with p50, p95, p99 and the target marked.
    ``requests`` has one row per request, e.g. ``budget.per_request(wb, route=...)``."""
    values = requests[column]
    marks = pl.DataFrame(
        {
            "mark": ["p50", "p95", "p99", "target"],
            "ms": [
                values.quantile(0.50, "linear"),
                values.quantile(0.95, "linear"),
                values.quantile(0.99, "linear"),
                target_ms,
            ],
        }
    )
    hist = (
        alt.Chart(requests.select(column))
        .mark_bar(color="#4c78a8", opacity=0.8)
        .encode(
            x=alt.X(f"{column}:Q", bin=alt.Bin(maxbins=60), title="request latency (ms)"),
            y=alt.Y("count():Q", title="requests"),
        )
    )
    rules = (
        alt.Chart(marks)
        .mark_rule(strokeWidth=2)
        .encode(
            x="ms:Q",
            color=alt.Color(
                "mark:N",
                scale=alt.Scale(
                    domain=["p50", "p95", "p99", "target"],
                    range=["#54a24b", "#f58518", "#e45756", "black"],
                ),
            ),
            tooltip=["mark", alt.Tooltip("ms:Q", format=".1f")],
        )
    )
    return (hist + rules).properties(title="Latency distribution", width=520, height=220)


def waterfall(spans: pl.DataFrame, critical_path: pl.DataFrame | None = None) -> alt.LayerChart:
    """A Gantt chart of one trace's spans, with its critical path drawn over them.

    ``spans`` is ``budget.trace_spans(wb, trace_id)``; ``critical_path`` is
    ``budget.critical_path(wb, trace_id)``."""
    data = spans
    order = data["label"].to_list()
    bars = (
        alt.Chart(data)
        .mark_bar(opacity=0.35, color="#888888", height=12)
        .encode(
            x=alt.X("start_ms:Q", title="ms since the request started"),
            x2="end_ms:Q",
            y=alt.Y("label:N", sort=order, title=None),
            tooltip=["service", "name", "category", alt.Tooltip("duration_ms:Q", format=".2f")],
        )
    )
    layers: list[alt.Chart] = [bars]
    if critical_path is not None and critical_path.height:
        path = critical_path.join(spans.select("span_id", "label"), on="span_id", how="left")
        layers.append(
            alt.Chart(path)
            .mark_bar(height=12)
            .encode(
                x="start_ms:Q",
                x2="end_ms:Q",
                y=alt.Y("label:N", sort=order),
                color=alt.Color("category:N", scale=_BUDGET_SCALE, title="critical path"),
                tooltip=["name", "category", alt.Tooltip("duration_ms:Q", format=".2f")],
            )
        )
    height = max(120, 18 * len(order))
    chart = alt.layer(*layers).properties(title="One trace", width=560, height=height)
    return cast(alt.LayerChart, chart)


# -- Cache (latkit.analysis.cache) -------------------------------------------------------

#: Colours of hit, miss and unknown, the same in every cache chart.
HIT_COLORS = {"hit": "#54a24b", "miss": "#e45756", "unknown": "#bab0ac"}

_HIT_SCALE = alt.Scale(domain=list(HIT_COLORS), range=list(HIT_COLORS.values()))


def _outcome(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col("hit"))
        .then(pl.lit("hit"))
        .when(pl.col("hit").not_())
        .then(pl.lit("miss"))
        .otherwise(pl.lit("unknown"))
        .alias("outcome")
    )


def hit_rate_bars(rates: pl.DataFrame, by: str = "key_pattern") -> alt.Chart:
    """One bar per group: hits and misses stacked, so both the hit rate and the volume show.
    ``rates`` is ``cache.hit_rates(wb, by=by)``; ``by`` names its label column."""
    label = pl.col(by).cast(pl.String).fill_null("(no key recorded)")
    data = (
        rates.with_columns(label.alias("group"))
        .select("group", "lookups", "hit_rate", "hits", "misses")
        .unpivot(
            index=["group", "lookups", "hit_rate"],
            on=["hits", "misses"],
            variable_name="outcome",
            value_name="count",
        )
        .with_columns(pl.col("outcome").replace({"hits": "hit", "misses": "miss"}))
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("count:Q", title="lookups"),
            y=alt.Y(
                "group:N", title=None, sort=alt.EncodingSortField("lookups", order="descending")
            ),
            color=alt.Color("outcome:N", scale=_HIT_SCALE, title=None),
            order=alt.Order("outcome:N"),
            tooltip=[
                "group",
                "outcome",
                "count",
                "lookups",
                alt.Tooltip("hit_rate:Q", format=".1%"),
            ],
        )
        .properties(title=f"Cache lookups by {by.replace('_', ' ')}: hits and misses", width=520)
    )


def hit_miss_latency(lookups: pl.DataFrame) -> alt.Chart:
    """The latency of the requests a lookup served, when it hit against when it missed
    (box plots on a log scale). ``lookups`` is ``cache.lookups(wb)``."""
    data = (
        _outcome(lookups)
        .filter(pl.col("request_ms").is_not_null())
        .select("outcome", "request_ms", "route")
    )
    return (
        alt.Chart(data)
        .mark_boxplot(extent=1.5, size=28)
        .encode(
            x=alt.X("request_ms:Q", scale=alt.Scale(type="log"), title="request latency (ms)"),
            y=alt.Y("outcome:N", title=None, sort=list(HIT_COLORS)),
            color=alt.Color("outcome:N", scale=_HIT_SCALE, legend=None),
        )
        .properties(
            title="Request latency when the cache hit and when it missed", width=520, height=120
        )
    )


def hit_rate_over_time(rates: pl.DataFrame) -> alt.Chart:
    """Hit rate per time bucket, with the lookups per bucket as bars behind it.
    ``rates`` is ``cache.hit_rates(wb, by="10s")`` (any bucket)."""
    base = alt.Chart(rates).encode(x=alt.X("bucket:T", title=None))
    bars = base.mark_bar(color="#dddddd").encode(y=alt.Y("lookups:Q", title="lookups"))
    line = base.mark_line(point=True, color="#54a24b").encode(
        y=alt.Y(
            "hit_rate:Q",
            title="hit rate",
            axis=alt.Axis(format="%"),
            scale=alt.Scale(domain=[0, 1]),
        ),
        tooltip=[alt.Tooltip("bucket:T"), "lookups", alt.Tooltip("hit_rate:Q", format=".1%")],
    )
    return (
        alt.layer(bars, line)
        .resolve_scale(y="independent")
        .properties(title="Hit rate over time", width=520, height=200)
    )


def size_curve(curve: pl.DataFrame) -> alt.LayerChart:
    """Hit rate against cache size (entries, log scale): LRU with no expiry, LRU with the TTL,
    and rules at the hit rate observed and at the ceiling of an infinite cache.
    ``curve`` is ``cache.size_curve(wb)``."""
    data = curve.filter(pl.col("cache_size").is_not_null())
    models = ["LRU, values never expire"]
    series = [data.select("cache_size", "hit_rate").with_columns(pl.lit(models[0]).alias("model"))]
    if data["hit_rate_ttl"].drop_nulls().len():
        models.append(f"LRU, values expire after {data['ttl_s'].drop_nulls()[0]:.3g} s")
        series.append(
            data.select("cache_size", pl.col("hit_rate_ttl").alias("hit_rate")).with_columns(
                pl.lit(models[1]).alias("model")
            )
        )
    long = pl.concat(series)
    lines = (
        alt.Chart(long)
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=alt.X("cache_size:Q", scale=alt.Scale(type="log"), title="cache size (entries)"),
            y=alt.Y(
                "hit_rate:Q",
                title="hit rate",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "model:N", title=None, scale=alt.Scale(domain=models, range=["#4c78a8", "#f58518"])
            ),
            tooltip=["model", "cache_size", alt.Tooltip("hit_rate:Q", format=".1%")],
        )
    )
    marks = pl.DataFrame(
        {
            "mark": ["observed", "infinite cache"],
            "hit_rate": [data["observed_hit_rate"].first(), data["ceiling"].first()],
        },
        schema={"mark": pl.String, "hit_rate": pl.Float64},
    ).drop_nulls()
    rules = (
        alt.Chart(marks)
        .mark_rule(strokeDash=[4, 4])
        .encode(
            y="hit_rate:Q",
            color=alt.Color(
                "mark:N",
                title=None,
                scale=alt.Scale(
                    domain=["observed", "infinite cache"], range=["#54a24b", "#888888"]
                ),
            ),
            tooltip=["mark", alt.Tooltip("hit_rate:Q", format=".1%")],
        )
    )
    return (
        alt.layer(lines, rules)
        .resolve_scale(color="independent")
        .properties(title="What the cache would hit at other sizes", width=520, height=260)
    )


def age_histogram(ages: pl.DataFrame, ttl_s: float | None = None) -> alt.LayerChart:
    """How old the cached value was at each lookup: hits below the TTL, expiries (misses on
    a key written before) above it. ``ages`` is ``cache.ages(wb)``; ``ttl_s`` draws a rule."""
    data = _outcome(ages).filter(pl.col("age_s").is_not_null()).select("outcome", "age_s")
    bars = (
        alt.Chart(data)
        .mark_bar(opacity=0.8)
        .encode(
            x=alt.X("age_s:Q", bin=alt.Bin(maxbins=60), title="seconds since the key was written"),
            y=alt.Y("count():Q", title="lookups", stack=True),
            color=alt.Color("outcome:N", scale=_HIT_SCALE, title=None),
        )
    )
    layers: list[alt.Chart] = [bars]
    if ttl_s is not None:
        layers.append(
            alt.Chart(pl.DataFrame({"ttl_s": [ttl_s]}))
            .mark_rule(color="black", strokeDash=[4, 4])
            .encode(x="ttl_s:Q", tooltip=[alt.Tooltip("ttl_s:Q", format=".2f")])
        )
    return alt.LayerChart(layer=layers).properties(
        title="Age of the cached value at each lookup", width=520, height=200
    )


# -- Connections and the network (latkit.analysis.pooling, .network) ---------------------

#: Colours of the parts of a call, the same in every network chart.
PART_COLORS = {"client": "#f58518", "server": "#4c78a8", "gap": "#b279a2"}

#: Gaps of zero cannot sit on a log scale: they are drawn at this floor (ms).
_LOG_FLOOR_MS = 0.01


def setup_gaps(gaps: pl.DataFrame, flagged: list[str] | None = None) -> alt.Chart:
    """One box per route of the time before its first query that no span explains, on a log
    scale. ``gaps`` is ``pooling.setup_gaps(wb)``; routes in ``flagged`` (e.g. those of
    ``pooling.no_pool``) are drawn in red."""
    data = gaps.select(
        (pl.col("service") + " " + pl.col("route").fill_null("(no route)")).alias("label"),
        pl.col("route").is_in(flagged or []).alias("flagged"),
        pl.col("gap_ms").clip(lower_bound=_LOG_FLOOR_MS),
    )
    return (
        alt.Chart(data)
        .mark_boxplot(extent="min-max", size=14)
        .encode(
            x=alt.X(
                "gap_ms:Q",
                scale=alt.Scale(type="log"),
                title="unexplained time before the first query (ms, log scale)",
            ),
            y=alt.Y("label:N", title=None, sort="-x"),
            color=alt.Color(
                "flagged:N",
                scale=alt.Scale(domain=[False, True], range=["#4c78a8", "#e45756"]),
                title="connects per request",
            ),
        )
        .properties(title="Connection setup hides before the first query", width=520)
    )


def load_curve(by_load: pl.DataFrame, routes: list[str] | None = None) -> alt.Chart:
    """p50 (dashed) and p99 (solid) per route against the number of requests in flight.
    ``by_load`` is ``pooling.by_load(wb)``; ``routes`` keeps only those routes."""
    data = by_load if routes is None else by_load.filter(pl.col("route").is_in(routes))
    long = data.unpivot(
        index=["service", "route", "in_flight_min", "load", "requests"],
        on=["p50_ms", "p99_ms"],
        variable_name="percentile",
        value_name="ms",
    ).with_columns(pl.col("percentile").str.strip_suffix("_ms"))
    order = long.sort("in_flight_min")["load"].unique(maintain_order=True).to_list()
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "load:O",
                sort=order,
                title="requests in flight when the request arrived",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("ms:Q", title="latency (ms)"),
            color=alt.Color("route:N", title="route"),
            strokeDash=alt.StrokeDash("percentile:N", sort=["p99", "p50"], title=None),
            tooltip=[
                "service",
                "route",
                "load",
                "percentile",
                "requests",
                alt.Tooltip("ms:Q", format=".1f"),
            ],
        )
        .properties(title="Latency against load", width=520, height=260)
    )


def edge_percentiles(edges: pl.DataFrame) -> alt.Chart:
    """For each traced caller -> callee edge, the client, server and gap durations at p50,
    p95 and p99 side by side. ``edges`` is ``network.edges(wb)``."""
    parts = ["client", "server", "gap"]
    long = (
        edges.filter(pl.col("traced"))
        .with_columns((pl.col("caller") + " → " + pl.col("callee")).alias("edge"))
        .unpivot(
            index=["edge", "calls"],
            on=[f"{part}_p{q}_ms" for part in parts for q in (50, 95, 99)],
            variable_name="measure",
            value_name="ms",
        )
        .with_columns(
            pl.col("measure").str.extract(r"^([a-z]+)_").alias("part"),
            pl.col("measure").str.extract(r"_(p\d+)_").alias("percentile"),
        )
    )
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("ms:Q", title="duration (ms)"),
            y=alt.Y("percentile:N", title=None, sort=["p50", "p95", "p99"]),
            yOffset=alt.YOffset("part:N", sort=parts),
            color=alt.Color(
                "part:N",
                scale=alt.Scale(domain=parts, range=[PART_COLORS[p] for p in parts]),
                title=None,
            ),
            row=alt.Row("edge:N", title=None),
            tooltip=["edge", "part", "percentile", alt.Tooltip("ms:Q", format=".1f"), "calls"],
        )
        .properties(title="Where a call's time goes: callee (server) and the path (gap)", width=460)
    )


def rtt_floors(table: pl.DataFrame, measured_ms: float | None = None) -> alt.LayerChart:
    """Bars of the round-trip floor from each origin to each destination; with
    ``measured_ms``, a rule at a measured or quoted round trip to compare with. ``table`` is
    ``network.rtt_table(...)``."""
    data = table.with_columns((pl.col("origin") + " → " + pl.col("destination")).alias("pair"))
    bars = (
        alt.Chart(data)
        .mark_bar(color=PART_COLORS["gap"])
        .encode(
            x=alt.X("min_rtt_ms:Q", title="round-trip floor in fibre (ms)"),
            y=alt.Y("pair:N", title=None, sort=None),
            tooltip=[
                "origin",
                "destination",
                alt.Tooltip("distance_km:Q", format=",.0f"),
                alt.Tooltip("min_rtt_ms:Q", format=".1f"),
            ],
        )
    )
    labels = bars.mark_text(align="left", dx=3).encode(text=alt.Text("min_rtt_ms:Q", format=".0f"))
    layers = [bars, labels]
    if measured_ms is not None:
        layers.append(
            alt.Chart(pl.DataFrame({"measured_ms": [measured_ms]}))
            .mark_rule(color="black", strokeDash=[4, 4])
            .encode(x="measured_ms:Q")
        )
    return alt.LayerChart(layer=layers).properties(
        title="The speed of light sets the floor", width=480
    )


# -- Indexes (latkit.analysis.indexes) ---------------------------------------------------


def query_profile(top: pl.DataFrame, n: int = 10, width: int = 60) -> alt.Chart:
    """A bar per query of its share of all database time, largest first.

    ``top`` is ``indexes.top_queries(wb)``; the first ``n`` rows are drawn, each labelled by
    its rank and the start of its template (``width`` characters).
    """
    data = (
        top.head(n)
        .with_columns(
            label=pl.format("{}. {}", pl.col("rank"), pl.col("query_template").str.slice(0, width))
        )
        .select("label", "share", "calls", "total_ms", "mean_ms")
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", title="share of database time", axis=alt.Axis(format="%")),
            y=alt.Y("label:N", title=None, sort="-x"),
            tooltip=[
                "label",
                "calls",
                alt.Tooltip("total_ms:Q", format=",.0f"),
                alt.Tooltip("mean_ms:Q", format=",.3f"),
            ],
        )
        .properties(width=360)
    )


def plan_comparison(costs: pl.DataFrame, labels: dict[int, str] | None = None) -> alt.Chart:
    """Execution time and pages read per plan, on log scales: the O(n) / O(log n) picture.

    ``costs`` is ``indexes.plan_costs(wb)`` (a few plans); ``labels`` names plans by
    ``plan_id`` (default: their ``scans``).
    """
    names = labels or {}
    data = costs.with_columns(
        label=pl.col("plan_id").replace_strict(
            names, default=pl.col("scans"), return_dtype=pl.String
        )
    ).select("label", "execution_ms", "blocks", "rows_read")
    long = data.unpivot(
        index="label",
        on=["execution_ms", "blocks", "rows_read"],
        variable_name="measure",
        value_name="value",
    )
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title=None, scale=alt.Scale(type="log")),
            y=alt.Y("label:N", title=None),
            color=alt.Color("label:N", legend=None),
            row=alt.Row("measure:N", title=None),
            tooltip=["label", "measure", alt.Tooltip("value:Q", format=",")],
        )
        .properties(width=360, height=60)
    )
