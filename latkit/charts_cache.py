"""Altair charts of the cache analysis (``latkit.analysis.cache``). Charts take DataFrames
and never run SQL.

These belong in ``latkit.charts`` with the other builders and are kept apart only until they
are merged there; call ``latkit.charts.setup()`` first for offline rendering.

>>> from latkit import charts_cache
>>> charts_cache.size_curve(cache.size_curve(wb))
"""

from __future__ import annotations

import altair as alt
import polars as pl

#: Colours of hit, miss and unknown, the same in every cache chart.
HIT_COLORS = {"hit": "#54a24b", "miss": "#e45756", "unknown": "#bab0ac"}

_HIT_SCALE = alt.Scale(domain=list(HIT_COLORS), range=list(HIT_COLORS.values()))


def _outcome(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col("hit")).then(pl.lit("hit"))
        .when(pl.col("hit").not_()).then(pl.lit("miss"))
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
        .unpivot(index=["group", "lookups", "hit_rate"], on=["hits", "misses"],
                 variable_name="outcome", value_name="count")
        .with_columns(pl.col("outcome").replace({"hits": "hit", "misses": "miss"}))
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("count:Q", title="lookups"),
            y=alt.Y("group:N", title=None,
                    sort=alt.EncodingSortField("lookups", order="descending")),
            color=alt.Color("outcome:N", scale=_HIT_SCALE, title=None),
            order=alt.Order("outcome:N"),
            tooltip=["group", "outcome", "count", "lookups",
                     alt.Tooltip("hit_rate:Q", format=".1%")],
        )
        .properties(title=f"Cache lookups by {by.replace('_', ' ')}: hits and misses", width=520)
    )


def hit_miss_latency(lookups: pl.DataFrame) -> alt.Chart:
    """The latency of the requests a lookup served, when it hit against when it missed
    (box plots on a log scale). ``lookups`` is ``cache.lookups(wb)``."""
    data = _outcome(lookups).filter(pl.col("request_ms").is_not_null()).select(
        "outcome", "request_ms", "route"
    )
    return (
        alt.Chart(data)
        .mark_boxplot(extent=1.5, size=28)
        .encode(
            x=alt.X("request_ms:Q", scale=alt.Scale(type="log"), title="request latency (ms)"),
            y=alt.Y("outcome:N", title=None, sort=list(HIT_COLORS)),
            color=alt.Color("outcome:N", scale=_HIT_SCALE, legend=None),
        )
        .properties(title="Request latency when the cache hit and when it missed",
                    width=520, height=120)
    )


def hit_rate_over_time(rates: pl.DataFrame) -> alt.Chart:
    """Hit rate per time bucket, with the lookups per bucket as bars behind it.
    ``rates`` is ``cache.hit_rates(wb, by="10s")`` (any bucket)."""
    base = alt.Chart(rates).encode(x=alt.X("bucket:T", title=None))
    bars = base.mark_bar(color="#dddddd").encode(y=alt.Y("lookups:Q", title="lookups"))
    line = base.mark_line(point=True, color="#54a24b").encode(
        y=alt.Y("hit_rate:Q", title="hit rate", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
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
                pl.lit(models[1]).alias("model"))
        )
    long = pl.concat(series)
    lines = (
        alt.Chart(long)
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=alt.X("cache_size:Q", scale=alt.Scale(type="log"), title="cache size (entries)"),
            y=alt.Y("hit_rate:Q", title="hit rate", axis=alt.Axis(format="%"),
                    scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("model:N", title=None,
                            scale=alt.Scale(domain=models, range=["#4c78a8", "#f58518"])),
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
            color=alt.Color("mark:N", title=None,
                            scale=alt.Scale(domain=["observed", "infinite cache"],
                                            range=["#54a24b", "#888888"])),
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
