"""The HTML pages: ``/`` (overview of every series) and ``/<metric>`` (chart and anomalies).

Every string that came from a device reaches the templates as plain text, and Jinja escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for

from officesensor.models import Reading, SeriesInfo, unit_of
from officesensor.web.context import web_context
from officesensor.web.plots import chart_data, chart_item
from officesensor.web.series import (
    CHART_READINGS,
    AnalysedReadings,
    analyse_latest,
    find_series,
    metric_names,
    metric_slugs,
    pick_sensor,
    resolve_metric,
    sensors_of,
)
from officesensor.web.sparkline import SPARK_READINGS, sparkline

bp = Blueprint("pages", __name__)

#: Seconds between the pages' automatic reloads (the original's publishing interval).
REFRESH_S = 15


@dataclass(frozen=True, slots=True)
class NavLink:
    label: str
    url: str
    current: bool = False


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One (sensor, metric) series as the overview and summaries show it."""

    sensor: str | None
    metric: str
    unit: str
    count: int
    value: str | None  # the latest value, formatted
    time: str | None  # time of the latest reading, UTC
    age: str | None  # how long ago that was
    url: str


def nav_links(metrics: Sequence[str], current: str | None = None) -> list[NavLink]:
    slugs = metric_slugs(metrics)
    links = [NavLink("Overview", url_for("pages.overview"), current is None)]
    links += [NavLink(m, url_for("pages.metric", metric=slugs[m]), m == current) for m in metrics]
    return links


@bp.get("/")
def overview() -> str:
    store = web_context().store
    series = store.series()
    metrics = metric_names(series)
    slugs = metric_slugs(metrics)
    order = {metric: i for i, metric in enumerate(metrics)}
    series = sorted(series, key=lambda s: (order[s.metric], s.sensor))
    now = datetime.now(UTC)
    rows = [_row(info, slugs[info.metric], now) for info in series]
    cards = []
    for metric in metrics:
        sensor = pick_sensor(metric, series)
        info = find_series(sensor, metric, series) if sensor is not None else None
        others = [r for r in rows if r.metric == metric and r.sensor != sensor]
        main = _row(info, slugs[metric], now) if info else _empty_row(metric, slugs[metric])
        spark = sparkline(store.latest(info.sensor, metric, SPARK_READINGS)) if info else None
        cards.append({"main": main, "others": others, "spark": spark})
    return render_template(
        "overview.html",
        nav=nav_links(metrics),
        cards=cards,
        rows=rows,
        refresh_s=REFRESH_S,
    )


@bp.get("/<metric>")
def metric(metric: str) -> str:
    context = web_context()
    settings = context.settings
    series = context.store.series()
    metrics = metric_names(series)
    name = resolve_metric(metric, metrics)
    if name is None:
        abort(404, description=f"There is no metric named “{metric}”.")
    requested = request.args.get("sensor")
    sensor = requested if requested is not None else pick_sensor(name, series)
    info = find_series(sensor, name, series) if sensor is not None else None
    if requested is not None and info is None:
        abort(404, description=f"Sensor “{requested}” has no {name} readings.")
    slug = metric_slugs(metrics)[name]
    unit = unit_of(name)
    view: dict[str, Any] = {"chart": None, "anomalies": [], "shown": 0, "flagged": 0}
    if sensor is not None and info is not None and info.count:
        data = analyse_latest(
            context.store, sensor, name, CHART_READINGS, settings.window, settings.z
        )
        if len(data):
            indices = data.anomaly_indices()
            view = {
                "chart": _chart_item(unit),
                "chart_data": chart_data(data),
                "anomalies": [_anomaly(data.readings[i], data, i) for i in reversed(indices)],
                "shown": len(data),
                "flagged": len(indices),
            }
    now = datetime.now(UTC)
    return render_template(
        "metric.html",
        nav=nav_links(metrics, current=name),
        metric=name,
        unit=unit,
        sensor=sensor,
        sensor_links=[
            NavLink(s, url_for("pages.metric", metric=slug, sensor=s), s == sensor)
            for s in sensors_of(name, series)
        ],
        summary=_row(info, slug, now) if info else _empty_row(name, slug),
        window=settings.window,
        z=settings.z,
        refresh_s=REFRESH_S,
        **view,
    )


def _chart_item(unit: str) -> dict[str, Any]:
    items = web_context().chart_items
    item = items.get(unit)
    if item is None:  # two requests racing here just build it twice
        item = items[unit] = chart_item(unit)
    return item


@bp.app_template_filter("value")
def format_value(value: float) -> str:
    return f"{value:,.2f}"


def format_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_age(ts: datetime, now: datetime) -> str:
    seconds = int((now - ts).total_seconds())
    if seconds < 0:
        return "in the future"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _row(info: SeriesInfo, slug: str, now: datetime) -> SeriesRow:
    latest = info.latest
    return SeriesRow(
        sensor=info.sensor,
        metric=info.metric,
        unit=unit_of(info.metric),
        count=info.count,
        value=format_value(latest.value) if latest else None,
        time=format_time(latest.ts) if latest else None,
        age=format_age(latest.ts, now) if latest else None,
        url=url_for("pages.metric", metric=slug, sensor=info.sensor),
    )


def _empty_row(metric: str, slug: str) -> SeriesRow:
    return SeriesRow(
        None, metric, unit_of(metric), 0, None, None, None, url_for("pages.metric", metric=slug)
    )


def _anomaly(reading: Reading, data: AnalysedReadings, i: int) -> dict[str, str]:
    return {
        "value": format_value(reading.value),
        "mean": format_value(data.stats.mean[i]),
        "std": format_value(data.stats.std[i]),
        "z": f"{data.stats.z[i]:+.2f}",
        "time": format_time(reading.ts),
    }
