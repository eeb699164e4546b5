"""Operations endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

- ``/healthz`` answers 200 whenever the process can answer at all, and touches nothing else:
  a liveness probe that failed on a broker outage would restart a process that is only
  waiting for the broker.
- ``/readyz`` answers 200 only when this instance can do its job: the store answers and, if
  ingest runs here, it is connected and subscribed, writing, and not far behind. 503 with a
  reason otherwise. Neither says more than that (no paths, URLs or error texts: they stay
  open without authentication); the log has the details.
- ``/metrics`` is the Prometheus exposition (``web/exposition.py``): ingest's counters, store
  write latency, broker link, per-series freshness, HTTP request durations, plus families
  from ``add_metrics_source`` (docs/operations.md lists them all).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from officesensor import __version__
from officesensor.errors import StoreError
from officesensor.models import (
    IngestSnapshot,
    IngestTelemetry,
    RejectReason,
    SeriesInfo,
)
from officesensor.web.context import web_context
from officesensor.web.exposition import CONTENT_TYPE, Family, render
from officesensor.web.httpmetrics import (
    ROUTE_KEY,
    UNMATCHED,
    HttpMetricsMiddleware,
    HttpRequestMetrics,
)

if TYPE_CHECKING:
    from officesensor.web.asgi import StreamApp

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)

OPS_KEY = "officesensor.ops"
#: Readiness fails while this many messages or more wait in ingest (received, not yet committed
#: and acknowledged). Ingest's queue holds 10,000; half of it means the writer is far behind.
READY_MAX_BACKLOG = 5_000

#: Returns extra metric families for /metrics; called on every scrape, so it must be cheap.
#: Prefer ``Family`` objects (checked and escaped); finished exposition lines (``str``, HELP
#: and TYPE included) are accepted too, each one line.
MetricsSource = Callable[[], Iterable[Family | str]]


@runtime_checkable
class TelemetrySource(Protocol):
    """Ingest's operator-only figures (``Ingest.telemetry``); test doubles may lack them."""

    def telemetry(self) -> IngestTelemetry: ...


@dataclass
class OpsState:
    """Per app: when the process started, the HTTP histograms, extra metric sources."""

    process_start: float  # epoch seconds
    http: HttpRequestMetrics = field(default_factory=HttpRequestMetrics)
    sources: list[MetricsSource] = field(default_factory=list)


@bp.record_once
def _set_up(state: BlueprintSetupState) -> None:
    state.app.extensions[OPS_KEY] = OpsState(process_start=_process_start_time())


def ops_state(app: Flask) -> OpsState:
    ops = app.extensions[OPS_KEY]
    assert isinstance(ops, OpsState)
    return ops


def add_metrics_source(app: Flask, source: MetricsSource) -> None:
    """Add ``source``'s families to every /metrics scrape of ``app`` (see the module doc)."""
    ops_state(app).sources.append(source)


def measure_requests(app: StreamApp) -> HttpMetricsMiddleware:
    """``app`` with every HTTP request timed into the histogram that /metrics shows."""
    return HttpMetricsMiddleware(app, ops_state(app.flask_app).http)


@bp.after_app_request
def _note_route(response: Response) -> Response:
    """Hand the matched rule (``/<metric>``, never the raw path) to HttpMetricsMiddleware,
    through the ASGI scope that a2wsgi puts in the environ."""
    scope = request.environ.get("asgi.scope")
    if isinstance(scope, dict):
        rule = request.url_rule
        scope[ROUTE_KEY] = rule.rule if rule is not None else UNMATCHED
    return response


# ----------------------------------------------------------------------------- health


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    context = web_context()
    try:
        context.store.ping()
    except Exception as exc:  # any failure means not ready; the log says which
        log.warning("readiness: the store does not answer: %s", exc)
        return _not_ready("store: does not answer")
    if context.ingest is None:
        return jsonify(status="ok", store="ok", ingest="not in this process"), 200
    try:
        snapshot = context.ingest.snapshot()
    except Exception:
        log.exception("readiness: ingest snapshot failed")
        return _not_ready("ingest: no state")
    reason = ingest_not_ready(snapshot, READY_MAX_BACKLOG)
    if reason is not None:
        return _not_ready(reason)
    return jsonify(status="ok", store="ok", ingest="connected"), 200


def ingest_not_ready(snapshot: IngestSnapshot, max_backlog: int) -> str | None:
    """Why ingest keeps this instance from being ready, or None."""
    if not snapshot.connected:
        return "ingest: not connected and subscribed to the MQTT broker"
    if not snapshot.store_ok:
        return "ingest: cannot write to the store"
    if snapshot.backlog >= max_backlog:
        return f"ingest: {snapshot.backlog} messages waiting (limit {max_backlog})"
    return None


def _not_ready(reason: str) -> tuple[Response, int]:
    return jsonify(status="unhealthy", reason=reason), 503


# ----------------------------------------------------------------------------- /metrics


@bp.get("/metrics")
def metrics() -> Response:
    context = web_context()
    ops = ops_state(current_app)
    probe = context.ingest
    snapshot = probe.snapshot() if probe is not None else None
    telemetry = probe.telemetry() if isinstance(probe, TelemetrySource) else None
    store_up = True
    try:
        series = context.store.series()  # the one store query of a scrape
    except StoreError as exc:  # the rest (ingest's view above all) matters most now
        log.warning("metrics: the store does not answer: %s", exc)
        store_up, series = False, []
    families = [
        *process_families(time.time(), ops.process_start),
        *ingest_families(snapshot, telemetry),
        *series_families(
            datetime.now(UTC), series, context.settings.ingest_max_series, store_up=store_up
        ),
        http_family(ops.http),
    ]
    text = render(families) + _extra_text(ops.sources, {f.name for f in families})
    return Response(text, content_type=CONTENT_TYPE)


def _extra_text(sources: Sequence[MetricsSource], taken: set[str]) -> str:
    """Each source's families; a failing or clashing source is logged and left out alone."""
    parts = []
    for source in sources:
        try:
            items = list(source())
            families = [item for item in items if isinstance(item, Family)]
            lines = [item for item in items if isinstance(item, str)]
            if any("\n" in line or "\r" in line for line in lines):
                raise ValueError("a line of exposition text contains a line break")
            names = {family.name for family in families}
            names |= {line.split()[2] for line in lines if line.startswith("# TYPE ")}
            clash = taken & names
            if clash:
                raise ValueError(f"metric families already written: {sorted(clash)}")
            parts.append((render(families) if families else "") + "".join(f"{s}\n" for s in lines))
            taken |= names
        except Exception:
            log.exception("metrics: source %r failed (left out)", source)
    return "".join(parts)


def process_families(now_s: float, start_s: float) -> list[Family]:
    return [
        Family.gauge(
            "officesensor_build_info",
            "The running version (always 1).",
            [({"version": __version__}, 1)],
        ),
        Family.gauge(
            "officesensor_process_start_time_seconds",
            "When this process started, in seconds since the Unix epoch.",
            [({}, start_s)],
        ),
        Family.gauge(
            "officesensor_process_uptime_seconds",
            "Seconds since this process started.",
            [({}, round(max(0.0, now_s - start_s), 3))],
        ),
    ]


def ingest_families(
    snapshot: IngestSnapshot | None, telemetry: IngestTelemetry | None
) -> list[Family]:
    """Ingest's counters and state; nothing when ingest does not run in this process."""
    if snapshot is None:
        return []
    s = snapshot
    reasons = dict.fromkeys((r.value for r in RejectReason), 0) | s.rejected
    families = [
        Family.counter(
            "officesensor_ingest_received_total",
            "Messages received from the broker.",
            [({}, s.received)],
        ),
        Family.counter("officesensor_ingest_stored_total", "Readings stored.", [({}, s.stored)]),
        Family.counter(
            "officesensor_ingest_duplicates_total",
            "Readings already stored (redelivered), ignored.",
            [({}, s.duplicates)],
        ),
        Family.counter(
            "officesensor_ingest_conflicts_total",
            "Readings that collided with a different stored one (kept aside).",
            [({}, s.conflicts)],
        ),
        Family.counter(
            "officesensor_ingest_rejected_total",
            "Messages rejected, by reason.",
            [({"reason": reason}, count) for reason, count in sorted(reasons.items())],
        ),
        Family.gauge(
            "officesensor_ingest_backlog",
            "Messages received but not yet committed and acknowledged.",
            [({}, s.backlog)],
        ),
        Family.gauge(
            "officesensor_ingest_store_writable",
            "1 while ingest can write to the store.",
            [({}, int(s.store_ok))],
        ),
        Family.gauge(
            "officesensor_mqtt_connected",
            "1 while connected and subscribed to the broker.",
            [({}, int(s.connected))],
        ),
        Family.counter(
            "officesensor_mqtt_reconnects_total",
            "Reconnections to the broker.",
            [({}, s.reconnects)],
        ),
        Family.counter(
            "officesensor_anomalies_total",
            "Anomalous readings seen by ingest.",
            [({}, s.anomalies)],
        ),
    ]
    if telemetry is not None:
        families += [
            Family.gauge(
                "officesensor_mqtt_connection_changed_timestamp_seconds",
                "When officesensor_mqtt_connected last changed (or ingest started).",
                [({}, telemetry.connection_changed.timestamp())],
            ),
            Family.histogram(
                "officesensor_store_write_duration_seconds",
                "Time to commit one batch of readings to the store.",
                [({}, telemetry.store_write_seconds)],
            ),
        ]
    return families


def series_families(
    now: datetime, series: Sequence[SeriesInfo], limit: int, *, store_up: bool = True
) -> list[Family]:
    """Per-series readings and freshness, for at most ``limit`` series (ingest.max_series)."""
    shown = series[:limit]
    ages = [
        ({"sensor": s.sensor, "metric": s.metric}, max(0.0, (now - s.latest.ts).total_seconds()))
        for s in shown
        if s.latest is not None
    ]
    return [
        Family.gauge(
            "officesensor_store_up", "1 if the store answered this scrape.", [({}, int(store_up))]
        ),
        Family.gauge(
            "officesensor_series", "Series (sensor, metric) in the store.", [({}, len(series))]
        ),
        Family.gauge(
            "officesensor_series_readings",
            "Readings stored per series.",
            [({"sensor": s.sensor, "metric": s.metric}, s.count) for s in shown],
        ),
        Family.gauge(
            "officesensor_series_last_reading_age_seconds",
            "Seconds since the newest reading of each series was taken.",
            [(labels, round(age, 3)) for labels, age in ages],
        ),
    ]


def http_family(http: HttpRequestMetrics) -> Family:
    return Family.histogram(
        "officesensor_http_request_duration_seconds",
        "HTTP requests by method, route template and status class, and their durations.",
        http.snapshot(),
    )


def _process_start_time() -> float:
    """When this process started (Linux: from /proc, as Prometheus' client libraries do);
    elsewhere, now (the app is created at start-up)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after "(comm)"
        with Path("/proc/stat").open() as lines:
            boot = next(float(line.split()[1]) for line in lines if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
