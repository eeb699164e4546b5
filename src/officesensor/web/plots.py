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
from typing import Any

import numpy as np
import numpy.typing as npt
from bokeh.core.types import ID
from bokeh.embed import json_item
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool
from bokeh.plotting import figure

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
#: Columns of both data sources, in the order chart_data writes them.
COLUMNS = ("x", "value", "mean", "lower", "upper", "std", "z")
#: Decimals kept for the derived statistics (the page shows two).
_STAT_DECIMALS = 4


def chart_data(data: AnalysedReadings) -> dict[str, dict[str, list[float | None]]]:
    """The columns of the ``readings`` and ``anomalies`` sources: x in epoch milliseconds,
    null where a statistic is undefined (JSON has no NaN; the page script turns it back)."""
    columns: dict[str, npt.NDArray[np.float64]] = {
        "x": np.array([r.ts_us / 1000 for r in data.readings], dtype=np.float64),
        "value": np.array([r.value for r in data.readings], dtype=np.float64),
        "mean": data.stats.mean,
        "lower": data.stats.lower,
        "upper": data.stats.upper,
        "std": data.stats.std,
        "z": data.stats.z,
    }
    marked = np.flatnonzero(data.stats.anomaly)
    return {
        "readings": {name: _json_numbers(name, column) for name, column in columns.items()},
        "anomalies": {
            name: _json_numbers(name, column[marked]) for name, column in columns.items()
        },
    }


def _json_numbers(name: str, column: npt.NDArray[np.float64]) -> list[float | None]:
    if name not in ("x", "value"):
        column = np.round(column, _STAT_DECIMALS)
    return [v if math.isfinite(v) else None for v in column.tolist()]


def chart_item(unit: str) -> dict[str, Any]:
    """The figure as a Bokeh JSON item, with empty sources named readings and anomalies."""
    readings = ColumnDataSource({name: [] for name in COLUMNS}, name="readings")
    anomalies = ColumnDataSource({name: [] for name in COLUMNS}, name="anomalies")
    fig = _empty_figure(unit)
    fig.varea(
        x="x",
        y1="lower",
        y2="upper",
        source=readings,
        fill_color=COLOURS["band"],
        fill_alpha=0.22,
    )
    observed = fig.line(
        x="x", y="value", source=readings, line_color=COLOURS["observation"], line_width=1.6
    )
    fig.line(x="x", y="mean", source=readings, line_color=COLOURS["mean"], line_width=2.2)
    flagged = fig.scatter(
        x="x",
        y="value",
        source=anomalies,
        size=9,
        fill_color=COLOURS["anomaly"],
        line_color="white",
        line_width=1.5,
    )
    suffix = f" {unit}" if unit else ""
    common = [("time", "@x{%F %T} UTC"), ("value", "@value{0,0.00}" + suffix)]
    fig.add_tools(
        HoverTool(
            renderers=[observed],
            mode="vline",
            formatters={"@x": "datetime"},
            tooltips=[*common, ("moving average", "@mean{0,0.00}" + suffix)],
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
    fig.xaxis.axis_label = "time (UTC)"
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
