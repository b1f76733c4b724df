"""Altair charts of connection cost and the network path (``latkit.analysis.pooling`` and
``latkit.analysis.network``). Charts take DataFrames and never run SQL.

These belong in ``latkit.charts`` with the other builders and are kept apart only until they
are merged there; call ``latkit.charts.setup()`` first for offline rendering.

>>> from latkit import charts_network
>>> charts_network.setup_gaps(pooling.setup_gaps(wb))
"""

from __future__ import annotations

import altair as alt
import polars as pl

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
            x=alt.X("gap_ms:Q", scale=alt.Scale(type="log"),
                    title="unexplained time before the first query (ms, log scale)"),
            y=alt.Y("label:N", title=None, sort="-x"),
            color=alt.Color("flagged:N", scale=alt.Scale(domain=[False, True],
                                                          range=["#4c78a8", "#e45756"]),
                            title="connects per request"),
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
            x=alt.X("load:O", sort=order, title="requests in flight when the request arrived",
                    axis=alt.Axis(labelAngle=0)),
            y=alt.Y("ms:Q", title="latency (ms)"),
            color=alt.Color("route:N", title="route"),
            strokeDash=alt.StrokeDash("percentile:N", sort=["p99", "p50"], title=None),
            tooltip=["service", "route", "load", "percentile", "requests",
                     alt.Tooltip("ms:Q", format=".1f")],
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
            color=alt.Color("part:N", scale=alt.Scale(domain=parts,
                                                       range=[PART_COLORS[p] for p in parts]),
                            title=None),
            row=alt.Row("edge:N", title=None),
            tooltip=["edge", "part", "percentile", alt.Tooltip("ms:Q", format=".1f"), "calls"],
        )
        .properties(title="Where a call's time goes: callee (server) and the path (gap)",
                    width=460)
    )


def rtt_floors(table: pl.DataFrame, measured_ms: float | None = None) -> alt.LayerChart:
    """Bars of the round-trip floor from each origin to each destination; with
    ``measured_ms``, a rule at a measured or quoted round trip to compare with. ``table`` is
    ``network.rtt_table(...)``."""
    data = table.with_columns(
        (pl.col("origin") + " → " + pl.col("destination")).alias("pair")
    )
    bars = (
        alt.Chart(data)
        .mark_bar(color=PART_COLORS["gap"])
        .encode(
            x=alt.X("min_rtt_ms:Q", title="round-trip floor in fibre (ms)"),
            y=alt.Y("pair:N", title=None, sort=None),
            tooltip=["origin", "destination", alt.Tooltip("distance_km:Q", format=",.0f"),
                     alt.Tooltip("min_rtt_ms:Q", format=".1f")],
        )
    )
    labels = bars.mark_text(align="left", dx=3).encode(
        text=alt.Text("min_rtt_ms:Q", format=".0f")
    )
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
