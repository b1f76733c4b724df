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
