"""Operations endpoints: ``/healthz`` for load balancers, ``/metrics`` for Prometheus."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from flask import Blueprint, Response, jsonify

from officesensor.models import IngestSnapshot, RejectReason, SeriesInfo
from officesensor.web.context import web_context

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    context = web_context()
    try:
        context.store.ping()
    except Exception as exc:  # any failure means unhealthy; say which
        log.warning("health check: store does not answer: %s", exc)
        return _unhealthy(f"store: {exc}")
    if context.ingest is None:
        return jsonify(status="ok", store="ok", ingest="not in this process"), 200
    try:
        snapshot = context.ingest.snapshot()
    except Exception as exc:
        log.warning("health check: ingest snapshot failed: %s", exc)
        return _unhealthy(f"ingest: {exc}")
    if not snapshot.connected:
        return _unhealthy("ingest: not connected to the MQTT broker")
    if not snapshot.store_ok:
        return _unhealthy("ingest: cannot write to the store")
    return jsonify(status="ok", store="ok", ingest="connected"), 200


def _unhealthy(reason: str) -> tuple[Response, int]:
    return jsonify(status="unhealthy", reason=reason), 503


@bp.get("/metrics")
def metrics() -> Response:
    context = web_context()
    snapshot = context.ingest.snapshot() if context.ingest is not None else None
    text = prometheus_text(snapshot, context.store.series())
    return Response(text, content_type=PROMETHEUS_CONTENT_TYPE)


def prometheus_text(snapshot: IngestSnapshot | None, series: Iterable[SeriesInfo]) -> str:
    """The exposition: ingest's counters (when ingest runs here) and readings per series."""
    lines: list[str] = []
    if snapshot is not None:
        counters = (
            ("ingest_received_total", "Messages received from the broker.", snapshot.received),
            ("ingest_stored_total", "Readings stored.", snapshot.stored),
            ("ingest_duplicates_total", "Redelivered readings ignored.", snapshot.duplicates),
            (
                "ingest_conflicts_total",
                "Readings that collided with a different stored one.",
                snapshot.conflicts,
            ),
        )
        for name, help_text, value in counters:
            _family(lines, name, "counter", help_text, [({}, value)])
        reasons = dict.fromkeys((r.value for r in RejectReason), 0) | snapshot.rejected
        _family(
            lines,
            "ingest_rejected_total",
            "counter",
            "Messages rejected, by reason.",
            [({"reason": reason}, count) for reason, count in sorted(reasons.items())],
        )
        _family(
            lines,
            "ingest_backlog",
            "gauge",
            "Readings received but not yet stored.",
            [({}, snapshot.backlog)],
        )
        _family(
            lines,
            "mqtt_connected",
            "gauge",
            "1 while connected to the broker.",
            [({}, int(snapshot.connected))],
        )
        _family(
            lines,
            "mqtt_reconnects_total",
            "counter",
            "Reconnections to the broker.",
            [({}, snapshot.reconnects)],
        )
        _family(
            lines,
            "anomalies_total",
            "counter",
            "Anomalous readings seen by ingest.",
            [({}, snapshot.anomalies)],
        )
    _family(
        lines,
        "series_readings",
        "gauge",
        "Readings stored per series.",
        [({"sensor": s.sensor, "metric": s.metric}, s.count) for s in series],
    )
    return "\n".join(lines) + "\n"


def _family(
    lines: list[str],
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[Mapping[str, str], int | float]],
) -> None:
    full = f"officesensor_{name}"
    lines.append(f"# HELP {full} {help_text}")
    lines.append(f"# TYPE {full} {kind}")
    for labels, value in samples:
        label_text = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
        lines.append(f"{full}{{{label_text}}} {value}" if label_text else f"{full} {value}")


def escape_label(value: str) -> str:
    """A label value as the exposition format writes it: \\ " and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
