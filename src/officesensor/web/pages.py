"""The HTML pages: ``/`` (overview of every series) and ``/<metric>`` (chart and anomalies).

Every string that came from a device reaches the templates as plain text, and Jinja escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from markupsafe import Markup, escape

from officesensor.models import AnomalyRecord, Reading, SeriesInfo, unit_of
from officesensor.web.context import sensor_online, web_context
from officesensor.web.history import bucket_chart, cadence_s
from officesensor.web.plots import anomaly_data, bucket_data, chart_data, chart_item
from officesensor.web.ranges import (
    NAMED_RANGES,
    RAW_LIMIT,
    RAW_SPAN,
    TARGET_BUCKETS,
    RangeError,
    TimeRange,
    gap_threshold_s,
    parse_range,
)
from officesensor.web.series import (
    KNOWN_METRICS,
    AnalysedReadings,
    analyse_range,
    find_series,
    iso_utc,
    metric_names,
    metric_slugs,
    pick_sensor,
    resolve_metric,
    sensors_of,
)
from officesensor.web.sparkline import Sparkline, sparkline

bp = Blueprint("pages", __name__)

#: A sensor is stale once it has missed this many of its usual intervals.
STALE_INTERVALS = 3
#: The overview's sparklines: the last 24 h in 15-minute buckets.
SPARK_SPAN = timedelta(hours=24)
SPARK_BUCKET_S = 900
#: Anomalies marked on a metric page's chart, and listed under it (newest first); the
#: JSON API and the CSV export have all of them.
ANOMALY_MARKS = 1000
ANOMALY_ROWS = 50


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
    latest_value: float | None = None
    iso: str | None = None  # time of the latest reading, ISO 8601
    ms: float | None = None  # and in epoch milliseconds


def nav_links(metrics: Sequence[str], current: str | None = None) -> list[NavLink]:
    slugs = metric_slugs(metrics)
    links = [NavLink("Overview", url_for("pages.overview"), current is None)]
    links += [NavLink(m, url_for("pages.metric", metric=slugs[m]), m == current) for m in metrics]
    return links


@bp.get("/")
def overview() -> str:
    context = web_context()
    store = context.store
    series = store.series()
    metrics = metric_names(series)
    slugs = metric_slugs(metrics)
    order = {metric: i for i, metric in enumerate(metrics)}
    series = sorted(series, key=lambda s: (order[s.metric], s.sensor))
    now = datetime.now(UTC)
    tz = context.settings.tz
    today = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    cards = [_card(info, slugs[info.metric], now, today) for info in series]
    missing = [m for m in KNOWN_METRICS if not any(c.metric == m for c in cards)]
    return render_template(
        "overview.html",
        nav=nav_links(metrics),
        cards=cards,
        missing=[_empty_row(m, slugs[m]) for m in missing],
        rows=[_row(info, slugs[info.metric], now) for info in series],
        today_zone=_zone_name(tz, now),
        stale_intervals=STALE_INTERVALS,
    )


@dataclass(frozen=True, slots=True)
class Card:
    """A (sensor, metric) on the overview: now, today, and a sparkline of the last 24 h."""

    sensor: str
    metric: str
    unit: str
    url: str
    latest: Reading | None
    cadence_s: float | None
    stale: bool
    today_min: float | None
    today_max: float | None
    anomalies_today: int
    spark: Sparkline | None
    spark_points: list[list[float]]  # [epoch ms, mean] pairs, for live updates
    online: bool | None  # the sensor's own status; None: it sends none


def _card(info: SeriesInfo, slug: str, now: datetime, today: datetime) -> Card:
    store = web_context().store
    sensor, metric = info.sensor, info.metric
    cadence = cadence_s(store, sensor, metric)
    latest = info.latest
    stale = (
        latest is not None
        and cadence is not None
        and ((now - latest.ts).total_seconds() > STALE_INTERVALS * cadence)
    )
    end = now + timedelta(seconds=1)
    day = store.buckets(sensor, metric, today, end, 3600) if today < end else []
    spark_buckets = store.buckets(sensor, metric, now - SPARK_SPAN, end, SPARK_BUCKET_S)
    points = [[b.start.timestamp() * 1000, b.mean] for b in spark_buckets]
    return Card(
        sensor=sensor,
        metric=metric,
        unit=unit_of(metric),
        url=url_for("pages.metric", metric=slug, sensor=sensor),
        latest=latest,
        cadence_s=cadence,
        stale=stale,
        today_min=min((b.min for b in day), default=None),
        today_max=max((b.max for b in day), default=None),
        anomalies_today=store.anomaly_count(sensor, metric, today, end),
        spark=sparkline(points),
        spark_points=points,
        online=sensor_online(sensor),
    )


@bp.get("/<metric>")
def metric(metric: str) -> str:
    context = web_context()
    settings = context.settings
    store = context.store
    series = store.series()
    metrics = metric_names(series)
    name = resolve_metric(metric, metrics)
    if name is None:
        abort(404, description=f"There is no metric named “{metric}”.")
    requested = request.args.get("sensor")
    sensor = requested if requested is not None else pick_sensor(name, series)
    info = find_series(sensor, name, series) if sensor is not None else None
    if requested is not None and info is None:
        abort(404, description=f"Sensor “{requested}” has no {name} readings.")
    now = datetime.now(UTC)
    wants_all = request.args.get("range") == "all"
    first = store.first_time(sensor, name) if wants_all and sensor is not None and info else None
    try:
        span = parse_range(request.args, now, first)
    except RangeError as exc:
        abort(400, description=f"{exc.parameter}: {exc.message}")
    slug = metric_slugs(metrics)[name]
    unit = unit_of(name)
    view: dict[str, Any] = {
        "chart": None, "anomalies": [], "anomaly_count": 0, "shown": 0, "mode": None
    }  # fmt: skip
    if sensor is not None and info is not None and info.count:
        view = _chart_view(sensor, name, unit, span, info.count)
        if not view["shown"] and not span.live:  # a past range without readings: no chart
            view |= {"chart": None, "mode": None}
    return render_template(
        "metric.html",
        nav=nav_links(metrics, current=name),
        metric=name,
        unit=unit,
        sensor=sensor,
        sensor_links=[
            NavLink(
                s, url_for("pages.metric", metric=slug, sensor=s, **_range_args(span)), s == sensor
            )
            for s in sensors_of(name, series)
        ],
        range_links=[
            NavLink(r, url_for("pages.metric", metric=slug, sensor=sensor, range=r), r == span.name)
            for r in NAMED_RANGES
        ],
        span=span,
        span_start=iso_utc(span.start),
        span_end=iso_utc(span.end),
        slug=slug,
        summary=_row(info, slug, now) if info else _empty_row(name, slug),
        window=settings.window,
        z=settings.z,
        api_args={"sensor": sensor or "", "metric": name, **_range_args(span)},
        **view,
    )


def _range_args(span: TimeRange) -> dict[str, Any]:
    if span.name == "custom":
        return {"start": iso_utc(span.start), "end": iso_utc(span.end)}
    return {"range": span.name}


def _chart_view(
    sensor: str, metric: str, unit: str, span: TimeRange, stored: int
) -> dict[str, Any]:
    context = web_context()
    store, settings = context.store, context.settings
    cadence = cadence_s(store, sensor, metric)
    found = store.anomalies(sensor, metric, span.start, span.end, ANOMALY_MARKS)
    data: AnalysedReadings | None = None
    # Fetch the readings only when they may be few enough to draw one by one.
    expected = span.span.total_seconds() / cadence if cadence else 0.0
    if span.span <= RAW_SPAN and (stored <= RAW_LIMIT or expected <= RAW_LIMIT):
        data = analyse_range(
            store, sensor, metric, span.start, span.end, settings.window, settings.z,
            limit=RAW_LIMIT + 1, method=settings.anomaly_method,
        )  # fmt: skip
        if len(data) > RAW_LIMIT:
            data = None
    if data is not None:
        mode = "readings"
        step = cadence or 60.0
        columns = chart_data(data, gap_s=gap_threshold_s(step, cadence))
        shown = len(data)
        capacity = RAW_LIMIT
        bucket_s = 0
        gap_s = gap_threshold_s(step, cadence)
    else:
        mode = "buckets"
        chart = bucket_chart(store, sensor, metric, span, TARGET_BUCKETS, cadence)
        columns = bucket_data(chart)
        shown = sum(chart.count)
        capacity = TARGET_BUCKETS + 50
        bucket_s = chart.width_s
        gap_s = chart.gap_s
    columns["anomalies"] = anomaly_data(found)
    live = {
        "mode": mode,
        "live": span.live,
        "sensor": sensor,
        "metric": metric,
        "unit": unit,
        "capacity": capacity,
        "bucket_s": bucket_s,
        "gap_s": gap_s,
        "start_ms": span.start.timestamp() * 1000,
        "stream": url_for("api.openapi").removesuffix("openapi.json") + "stream",
    }
    return {
        "chart": _chart_item(unit, mode),
        "chart_data": columns,
        "chart_live": live,
        "anomalies": [_anomaly(a) for a in found[:ANOMALY_ROWS]],
        "anomaly_count": (
            len(found)
            if len(found) < ANOMALY_MARKS
            else store.anomaly_count(sensor, metric, span.start, span.end)
        ),
        "shown": shown,
        "mode": mode,
    }


def _chart_item(unit: str, mode: str) -> dict[str, Any]:
    items = web_context().chart_items
    key = f"{mode}:{unit}"
    item = items.get(key)
    if item is None:  # two requests racing here just build it twice
        item = items[key] = chart_item(unit, mode)
    return item


@bp.app_template_global("num")
def number_html(value: float, unit: str, kind: str = "value") -> Markup:
    """A number from a device as the server shows it, plus what the page script needs to
    show it in the viewer's temperature unit. kind: "value" (a reading, mean, min...) or
    "spread" (a standard deviation: scaled, not shifted)."""
    # Plain formatting, then Markup once: the value is a float (repr and format give digits,
    # signs, dots, "e", "inf", "nan"), kind and unit are escaped. Markup.format or Markup
    # concatenation would be 5x slower, and a page has a few hundred of these.
    flag = " data-f" if unit == "°F" else ""
    html = (
        f'<span class="v" data-v="{float(value)!r}" data-k="{escape(kind)}"{flag}>'
        f"{format_value(value)}</span>"
    )
    if unit:
        html += f' <span class="u"{flag}>{escape(unit)}</span>'
    return Markup(html)  # noqa: S704 (every interpolated part is escaped or a number)


@bp.app_template_global("when")
def time_html(iso: str, text: str) -> Markup:
    """A time: ISO 8601 for the page script (which shows it in the viewer's zone), ``text``
    (UTC) for everyone else."""
    return Markup(f'<time datetime="{escape(iso)}">{escape(text)}</time>')  # noqa: S704 (escaped)


@bp.app_template_filter("iso")
def _iso_filter(ts: datetime) -> str:
    return iso_utc(ts)


@bp.app_template_filter("utc")
def _utc_filter(ts: datetime) -> str:
    return format_time(ts)


@bp.app_template_filter("age")
def _age_filter(ts: datetime) -> str:
    return format_age(ts, datetime.now(UTC))


@bp.app_template_filter("duration")
def format_duration(seconds: float) -> str:
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g} {unit}"
    return f"{seconds:g} s"


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
        latest_value=latest.value if latest else None,
        iso=iso_utc(latest.ts) if latest else None,
        ms=latest.ts.timestamp() * 1000 if latest else None,
    )


def _empty_row(metric: str, slug: str) -> SeriesRow:
    return SeriesRow(
        None, metric, unit_of(metric), 0, None, None, None, url_for("pages.metric", metric=slug)
    )


def _anomaly(record: AnomalyRecord) -> dict[str, Any]:
    return {
        "value": record.reading.value,
        "mean": record.mean,
        "std": record.std,
        "z": f"{record.z:+.2f}",
        "time": format_time(record.reading.ts),
        "iso": iso_utc(record.reading.ts),
    }


def _zone_name(tz: tzinfo, now: datetime) -> str:
    return str(getattr(tz, "key", None) or now.astimezone(tz).tzname() or "UTC")
