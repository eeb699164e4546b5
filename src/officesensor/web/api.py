"""The JSON API under ``/api/``, described by ``/api/openapi.json`` (see openapi.py).

A bad query parameter answers 400 ``{"error": ..., "parameter": NAME}``; a parameter naming
something that does not exist answers 404 in the same shape. Numbers that are undefined
(a z-score over a flat window) are ``null``, never NaN.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from officesensor.models import Reading, unit_of
from officesensor.web.context import sensor_online, web_context
from officesensor.web.history import (
    CSV_HEADER,
    bucket_chart,
    cadence_s,
    csv_lines,
    interval_rows,
)
from officesensor.web.openapi import openapi_document
from officesensor.web.ranges import RangeError, TimeRange, bucket_width, parse_range
from officesensor.web.series import (
    analyse_latest,
    analyse_range,
    find_series,
    finite_or_none,
    iso_utc,
    metric_names,
    pick_sensor,
    resolve_metric,
)

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_NAME_LENGTH = 256
DEFAULT_BUCKETS = 1000
MAX_BUCKETS = 5000


class ParameterError(Exception):
    """A query parameter is missing, malformed, or names nothing that exists."""

    def __init__(self, parameter: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.status = status


@bp.errorhandler(ParameterError)
def _parameter_error(exc: ParameterError) -> tuple[Response, int]:
    return jsonify(error=exc.message, parameter=exc.parameter), exc.status


def reading_json(reading: Reading) -> dict[str, Any]:
    return {"id": reading.reading_id, "ts": iso_utc(reading.ts), "value": reading.value}


@bp.get("/series")
def series() -> list[dict[str, Any]]:
    return [
        {
            "sensor": info.sensor,
            "metric": info.metric,
            "unit": unit_of(info.metric),
            "count": info.count,
            "latest": reading_json(info.latest) if info.latest else None,
            "online": sensor_online(info.sensor),
        }
        for info in web_context().store.series()
    ]


@bp.get("/readings")
def readings() -> dict[str, Any]:
    """The latest ``limit`` readings, or with range/start/end the first ``limit`` in it."""
    context = web_context()
    sensor, metric = _series_params()
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    settings = context.settings
    span = _range_params(sensor, metric) if _has_range_params() else None
    rows: list[dict[str, Any]] = []
    if sensor is not None:
        if span is None:
            data = analyse_latest(
                context.store, sensor, metric, limit, settings.window, settings.z,
                settings.anomaly_method,
            )  # fmt: skip
        else:
            data = analyse_range(
                context.store, sensor, metric, span.start, span.end,
                settings.window, settings.z, limit=limit, method=settings.anomaly_method,
            )  # fmt: skip
        rows = [
            {
                **reading_json(reading),
                "mean": finite_or_none(data.stats.mean[i]),
                "std": finite_or_none(data.stats.std[i]),
                "z": finite_or_none(data.stats.z[i]),
                "anomaly": bool(data.stats.anomaly[i]),
            }
            for i, reading in enumerate(data.readings)
        ]
    body: dict[str, Any] = {
        "sensor": sensor,
        "metric": metric,
        "unit": unit_of(metric),
        "window": settings.window,
        "z_threshold": settings.z,
    }
    if span is not None:
        body |= {"start": iso_utc(span.start), "end": iso_utc(span.end)}
    return body | {"readings": rows}


@bp.get("/chart")
def chart() -> dict[str, Any]:
    """A range downsampled to at most ``buckets`` epoch-aligned buckets (min, mean, max)."""
    store = web_context().store
    sensor, metric = _series_params()
    target = _int_param("buckets", DEFAULT_BUCKETS, 10, MAX_BUCKETS)
    span = _range_params(sensor, metric)
    body: dict[str, Any] = {
        "sensor": sensor,
        "metric": metric,
        "unit": unit_of(metric),
        "start": iso_utc(span.start),
        "end": iso_utc(span.end),
    }
    if sensor is None:
        empty: dict[str, list[Any]] = {k: [] for k in ("t", "count", "mean", "min", "max")}
        width = bucket_width(span.span, target)
        return body | {"bucket_s": width, "gap_s": float(2 * width), "points": empty}
    chart = bucket_chart(store, sensor, metric, span, target, cadence_s(store, sensor, metric))
    return body | {
        "bucket_s": chart.width_s,
        "gap_s": chart.gap_s,
        "points": {
            "t": chart.t,
            "count": chart.count,
            "mean": chart.mean,
            "min": chart.min,
            "max": chart.max,
        },
    }


@bp.get("/stats")
def stats() -> dict[str, Any]:
    """Interval statistics: the last 1h/24h/7d/30d/1y and the selected range."""
    store = web_context().store
    sensor, metric = _series_params()
    span = _range_params(sensor, metric)
    body: dict[str, Any] = {"sensor": sensor, "metric": metric, "unit": unit_of(metric)}
    if sensor is None:
        return body | {"cadence_s": None, "intervals": []}
    cadence = cadence_s(store, sensor, metric)
    rows = interval_rows(store, sensor, metric, span, _now(), cadence)
    return body | {"cadence_s": cadence, "intervals": [row.json() for row in rows]}


@bp.get("/anomalies")
def anomalies() -> dict[str, Any]:
    """Readings flagged as anomalies when they arrived, newest first."""
    store = web_context().store
    sensor, metric = _series_params()
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    span = _range_params(sensor, metric)
    found = [] if sensor is None else store.anomalies(sensor, metric, span.start, span.end, limit)
    return {
        "sensor": sensor,
        "metric": metric,
        "unit": unit_of(metric),
        "start": iso_utc(span.start),
        "end": iso_utc(span.end),
        "anomalies": [
            {
                **reading_json(a.reading),
                "mean": finite_or_none(a.mean),
                "std": finite_or_none(a.std),
                "z": finite_or_none(a.z),
            }
            for a in found
        ],
    }


@bp.get("/export.csv")
def export_csv() -> Response:
    """Every reading of a range as CSV, streamed, with the API's statistics."""
    context = web_context()
    sensor, metric = _series_params()
    span = _range_params(sensor, metric)
    settings = context.settings
    if sensor is None:
        lines: Any = iter([CSV_HEADER])
    else:
        lines = csv_lines(
            context.store, sensor, metric, span.start, span.end, settings.window, settings.z,
            method=settings.anomaly_method,
        )  # fmt: skip
    stamp = span.end.strftime("%Y%m%dT%H%M%SZ")
    filename = f"{_safe_filename(sensor or 'none')}-{_safe_filename(metric)}-{stamp}.csv"
    return Response(
        lines,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/ingest")
def ingest() -> Response | tuple[Response, int]:
    probe = web_context().ingest
    if probe is None:
        return jsonify(error="ingest is not running in this process"), 404
    return jsonify(dataclasses.asdict(probe.snapshot()))


@bp.get("/quarantine")
def quarantine() -> Response | tuple[Response, int]:
    probe = web_context().ingest
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if probe is None:
        return jsonify(error="ingest is not running in this process"), 404
    return jsonify(
        [
            {
                "received": iso_utc(m.received),
                "topic": m.topic,
                "reason": m.reason.value,
                "detail": m.detail,
                "payload_bytes": m.payload_bytes,
                "payload_preview": m.payload_preview,
            }
            for m in probe.quarantine(limit)
        ]
    )


@bp.get("/conflicts")
def conflicts() -> list[dict[str, Any]]:
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return [
        {"sensor": r.sensor, "metric": r.metric, **reading_json(r)}
        for r in web_context().store.conflicts(limit)
    ]


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return openapi_document()


def _series_params() -> tuple[str | None, str]:
    """The series a request names: ``metric`` (required) and ``sensor`` (default: the
    usual one for the metric, None while no sensor has it)."""
    requested_metric = _required_text_param("metric")
    requested_sensor = _text_param("sensor")
    all_series = web_context().store.series()
    metric = resolve_metric(requested_metric, metric_names(all_series))
    if metric is None:
        raise ParameterError("metric", f"no metric named {requested_metric!r}", 404)
    if requested_sensor and find_series(requested_sensor, metric, all_series) is None:
        raise ParameterError("sensor", f"sensor {requested_sensor!r} has no {metric} readings", 404)
    return requested_sensor or pick_sensor(metric, all_series), metric


def _has_range_params() -> bool:
    return any(request.args.get(name) for name in ("range", "start", "end"))


def _range_params(sensor: str | None, metric: str) -> TimeRange:
    for name in ("range", "start", "end"):
        value = request.args.get(name)
        if value is not None and (len(value) > 64 or not value.isprintable()):
            raise ParameterError(name, f"{name} must be at most 64 printable characters")
    first = None
    if sensor is not None and request.args.get("range") == "all":
        first = web_context().store.first_time(sensor, metric)
    try:
        return parse_range(request.args, _now(), first)
    except RangeError as exc:
        raise ParameterError(exc.parameter, exc.message) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _safe_filename(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)[:64]


def _required_text_param(name: str) -> str:
    value = _text_param(name)
    if value is None:
        raise ParameterError(name, f"{name} is required")
    return value


def _text_param(name: str) -> str | None:
    value = request.args.get(name)
    if not value:
        return None
    if len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise ParameterError(name, f"{name} must be at most {MAX_NAME_LENGTH} printable characters")
    return value


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ParameterError(name, f"{name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise ParameterError(name, f"{name} must be a whole number from {low} to {high}")
    return value
