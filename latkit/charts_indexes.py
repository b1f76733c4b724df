"""Charts for index opportunities (to be merged into ``latkit.charts``).

Charts take frames from ``latkit.analysis.indexes`` and never run SQL.

>>> charts_indexes.query_profile(indexes.top_queries(wb))
>>> charts_indexes.plan_comparison(indexes.plan_costs(wb), labels={0: "before", 1: "after"})
"""

from __future__ import annotations

import altair as alt
import polars as pl


def query_profile(top: pl.DataFrame, n: int = 10, width: int = 60) -> alt.Chart:
    """A bar per query of its share of all database time, largest first.

    ``top`` is ``indexes.top_queries(wb)``; the first ``n`` rows are drawn, each labelled by
    its rank and the start of its template (``width`` characters).
    """
    data = top.head(n).with_columns(
        label=pl.format("{}. {}", pl.col("rank"), pl.col("query_template").str.slice(0, width))
    ).select("label", "share", "calls", "total_ms", "mean_ms")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", title="share of database time", axis=alt.Axis(format="%")),
            y=alt.Y("label:N", title=None, sort="-x"),
            tooltip=["label", "calls", alt.Tooltip("total_ms:Q", format=",.0f"),
                     alt.Tooltip("mean_ms:Q", format=",.3f")],
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
        label=pl.col("plan_id").replace_strict(names, default=pl.col("scans"),
                                               return_dtype=pl.String)
    ).select("label", "execution_ms", "blocks", "rows_read")
    long = data.unpivot(index="label", on=["execution_ms", "blocks", "rows_read"],
                        variable_name="measure", value_name="value")
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
