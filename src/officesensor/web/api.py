"""The JSON API under ``/api/``, described by ``/api/openapi.json`` (see openapi.py).

A bad query parameter answers 400 ``{"error": ..., "parameter": NAME}``; a parameter naming
something that does not exist answers 404 in the same shape. Numbers that are undefined
(a z-score over a flat window) are ``null``, never NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, Response, jsonify, request

from officesensor.models import Reading, unit_of
from officesensor.web.context import web_context
from officesensor.web.openapi import openapi_document
from officesensor.web.series import (
    analyse_latest,
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
        }
        for info in web_context().store.series()
    ]


@bp.get("/readings")
def readings() -> dict[str, Any]:
    context = web_context()
    requested_metric = _required_text_param("metric")
    requested_sensor = _text_param("sensor")
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    all_series = context.store.series()
    metric = resolve_metric(requested_metric, metric_names(all_series))
    if metric is None:
        raise ParameterError("metric", f"no metric named {requested_metric!r}", 404)
    sensor = requested_sensor or pick_sensor(metric, all_series)
    if requested_sensor and find_series(requested_sensor, metric, all_series) is None:
        raise ParameterError("sensor", f"sensor {requested_sensor!r} has no {metric} readings", 404)
    rows: list[dict[str, Any]] = []
    if sensor is not None:
        settings = context.settings
        data = analyse_latest(context.store, sensor, metric, limit, settings.window, settings.z)
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
    return {
        "sensor": sensor,
        "metric": metric,
        "unit": unit_of(metric),
        "window": context.settings.window,
        "z_threshold": context.settings.z,
        "readings": rows,
    }


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
