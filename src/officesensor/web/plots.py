"""The Bokeh chart of a metric page: a figure built once per unit, and the data of each view.

Bokeh takes ~55 ms to build and serialise a figure in Python, so the figure (with empty
data sources named ``readings`` and ``anomalies``) is built once per unit and kept by the app
(``WebContext.chart_items``); each page carries only its readings as plain JSON. Both travel in
``<script type="application/json">`` blocks (data, never executed) and
``static/officesensor.js`` embeds the figure and fills its sources: the page needs no inline
script. Tooltips are lists of (label, field) pairs, which BokehJS renders as text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from bokeh.core.types import ID
from bokeh.embed import json_item
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool
from bokeh.plotting import figure

from officesensor.models import AnomalyRecord
from officesensor.web.history import BucketChart
from officesensor.web.series import AnalysedReadings

#: The chart's colours; static/officesensor.css uses the same ones for the legend above it.
COLOURS = {
    "observation": "#2563eb",
    "mean": "#d97706",
    "band": "#60a5fa",
    "anomaly": "#dc2626",
    "text": "#334155",
    "grid": "#e2e8f0",
}
CHART_TARGET = "chart"
#: Columns of the sources, in the order the data functions write them.
COLUMNS = ("x", "value", "mean", "lower", "upper", "std", "z")
BUCKET_COLUMNS = ("x", "mean", "min", "max", "count")
ANOMALY_COLUMNS = ("x", "value", "mean", "std", "z")
#: Decimals kept for the derived statistics (the page shows two).
_STAT_DECIMALS = 4

Columns = dict[str, list[float | None]]


def chart_data(data: AnalysedReadings, gap_s: float) -> dict[str, Columns]:
    """The ``readings`` source: x in epoch milliseconds, null where a statistic is undefined
    (JSON has no NaN; the page script turns it back), and a row of nulls wherever readings
    are more than ``gap_s`` apart, so the lines break there instead of bridging the gap."""
    x = np.array([r.ts_us / 1000 for r in data.readings], dtype=np.float64)
    columns: dict[str, npt.NDArray[np.float64]] = {
        "x": x,
        "value": np.array([r.value for r in data.readings], dtype=np.float64),
        "mean": data.stats.mean,
        "lower": data.stats.lower,
        "upper": data.stats.upper,
        "std": data.stats.std,
        "z": data.stats.z,
    }
    columns = _with_gaps(columns, gap_s)
    return {"readings": {name: _json_numbers(name, column) for name, column in columns.items()}}


def bucket_data(chart: BucketChart) -> dict[str, Columns]:
    """The ``buckets`` source (min-max envelope, mean, count), with gaps as in chart_data."""
    columns = {
        "x": np.array(chart.t, dtype=np.float64),
        "mean": np.array(chart.mean, dtype=np.float64),
        "min": np.array(chart.min, dtype=np.float64),
        "max": np.array(chart.max, dtype=np.float64),
        "count": np.array(chart.count, dtype=np.float64),
    }
    columns = _with_gaps(columns, chart.gap_s)
    return {"buckets": {name: _json_numbers(name, column) for name, column in columns.items()}}


def anomaly_data(found: Sequence[AnomalyRecord]) -> Columns:
    """The ``anomalies`` source, oldest first."""
    ordered = sorted(found, key=lambda a: a.reading.ts)
    columns = {
        "x": np.array([a.reading.ts_us / 1000 for a in ordered], dtype=np.float64),
        "value": np.array([a.reading.value for a in ordered], dtype=np.float64),
        "mean": np.array([a.mean for a in ordered], dtype=np.float64),
        "std": np.array([a.std for a in ordered], dtype=np.float64),
        "z": np.array([a.z for a in ordered], dtype=np.float64),
    }
    return {name: _json_numbers(name, column) for name, column in columns.items()}


def _with_gaps(
    columns: dict[str, npt.NDArray[np.float64]], gap_s: float
) -> dict[str, npt.NDArray[np.float64]]:
    x = columns["x"]
    breaks = np.flatnonzero(np.diff(x) > gap_s * 1000) + 1
    if not len(breaks):
        return columns
    out = {}
    for name, column in columns.items():
        filler = (x[breaks - 1] + x[breaks]) / 2 if name == "x" else np.nan
        out[name] = np.insert(column.astype(np.float64), breaks, filler)
    return out


def _json_numbers(name: str, column: npt.NDArray[np.float64]) -> list[float | None]:
    if name not in ("x", "value", "count"):
        column = np.round(column, _STAT_DECIMALS)
    return [v if math.isfinite(v) else None for v in column.tolist()]


def chart_item(unit: str, mode: str) -> dict[str, Any]:
    """The figure as a Bokeh JSON item with empty sources: ``readings`` (mode "readings": each
    reading, its moving average and band) or ``buckets`` (mode "buckets": min-max envelope
    and mean per bucket), and ``anomalies`` in both."""
    anomalies = ColumnDataSource({name: [] for name in ANOMALY_COLUMNS}, name="anomalies")
    fig = _empty_figure(unit)
    suffix = f" {unit}" if unit else ""
    common = [("time", "@x{%F %T}"), ("value", "@value{0,0.00}" + suffix)]
    if mode == "readings":
        readings = ColumnDataSource({name: [] for name in COLUMNS}, name="readings")
        fig.varea(
            x="x", y1="lower", y2="upper", source=readings,
            fill_color=COLOURS["band"], fill_alpha=0.22,
        )  # fmt: skip
        main = fig.line(
            x="x", y="value", source=readings, line_color=COLOURS["observation"], line_width=1.6
        )
        fig.line(x="x", y="mean", source=readings, line_color=COLOURS["mean"], line_width=2.2)
        main_tips = [*common, ("moving average", "@mean{0,0.00}" + suffix)]
    else:
        buckets = ColumnDataSource({name: [] for name in BUCKET_COLUMNS}, name="buckets")
        fig.varea(
            x="x", y1="min", y2="max", source=buckets,
            fill_color=COLOURS["band"], fill_alpha=0.35,
        )  # fmt: skip
        main = fig.line(
            x="x", y="mean", source=buckets, line_color=COLOURS["observation"], line_width=1.6
        )
        main_tips = [
            ("from", "@x{%F %T}"),
            ("mean", "@mean{0,0.00}" + suffix),
            ("min – max", "@min{0,0.00} – @max{0,0.00}" + suffix),
            ("readings", "@count{0,0}"),
        ]
    flagged = fig.scatter(
        x="x", y="value", source=anomalies, size=9,
        fill_color=COLOURS["anomaly"], line_color="white", line_width=1.5,
    )  # fmt: skip
    fig.add_tools(
        HoverTool(
            renderers=[main], mode="vline", formatters={"@x": "datetime"}, tooltips=main_tips
        ),
        HoverTool(
            renderers=[flagged],
            formatters={"@x": "datetime"},
            tooltips=[*common, ("z-score", "@z{+0.00}")],
        ),
    )
    return dict(json_item(fig, target=ID(CHART_TARGET)))


def _empty_figure(unit: str) -> Any:
    fig = figure(
        x_axis_type="datetime",
        sizing_mode="stretch_width",
        height=380,
        tools="pan,xwheel_zoom,box_zoom,reset,save",
        active_scroll="xwheel_zoom",
        toolbar_location="right",
        background_fill_color="white",
        border_fill_color="white",
        outline_line_color=None,
        min_border_left=56,
    )
    fig.toolbar.logo = None
    fig.toolbar.autohide = True
    fig.xaxis.formatter = DatetimeTickFormatter(
        seconds="%H:%M:%S",
        minsec="%H:%M:%S",
        minutes="%H:%M",
        hourmin="%H:%M",
        hours="%H:%M",
        days="%b %d",
        months="%b %Y",
        years="%Y",
    )
    fig.xaxis.axis_label = "time"  # the page script names the viewer's zone
    fig.yaxis.axis_label = unit or None
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_label_text_color = COLOURS["text"]
        axis.axis_label_text_font_style = "normal"
        axis.major_label_text_color = COLOURS["text"]
        axis.axis_line_color = COLOURS["grid"]
        axis.major_tick_line_color = COLOURS["grid"]
        axis.minor_tick_line_color = None
    fig.grid.grid_line_color = COLOURS["grid"]
    return fig
