"""Alerts on the dashboard: ``/alerts`` (firing first, then the history, with acknowledgement),
``/api/alerts`` and ``POST /api/alerts/<id>/ack``, and the firing alerts for the overview.

They read the alert service of this process (``WebContext.alerts``); without one (a bare
``create_app``) the page says so and the API answers ``enabled: false`` with empty lists.
Once the service has stopped (a shutdown, while requests are still answered) its state file
is closed: these routes answer 503 and the overview shows no firing alerts.
Sensor and metric names come from devices: Jinja escapes them, as every page does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Response as WerkzeugResponse

from officesensor.alerts.state import ACKNOWLEDGED, AlertStateClosed, Episode, Event
from officesensor.models import unit_of
from officesensor.web.context import AlertsProbe, web_context
from officesensor.web.pages import nav_links
from officesensor.web.series import iso_utc, metric_names

bp = Blueprint("alerts", __name__)

PAGE_SIZE = 50
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
MAX_NAME_LENGTH = 256
EVENT_STATES = ("pending", "firing", "resolved", "cancelled", ACKNOWLEDGED)
EPISODE_ID = re.compile(r"[0-9a-f]{16}")


class AlertParameterError(Exception):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@bp.errorhandler(AlertParameterError)
def _parameter_error(exc: AlertParameterError) -> tuple[Response, int]:
    return jsonify(error=exc.message, parameter=exc.parameter), 400


@bp.errorhandler(AlertStateClosed)
def _stopped(exc: AlertStateClosed) -> Any:
    """The alert service stopped (shutting down): 503, as JSON or a page like any error."""
    unavailable = ServiceUnavailable("Alerts are not available: the server is shutting down.")
    return current_app.handle_http_exception(unavailable)


# ----------------------------------------------------------------------------- page


@dataclass(frozen=True, slots=True)
class Row:
    """An episode or event as the page shows it; the template escapes every string."""

    id: str
    rule: str
    kind: str
    severity: str
    sensor: str
    metric: str
    state: str
    unit: str
    value: float | None
    threshold: float | None
    since: datetime
    at: datetime
    acknowledged: datetime | None = None
    suppressed: bool = False
    notified: bool = False
    detail: str = ""


def _episode_row(e: Episode) -> Row:
    return Row(
        e.id, e.rule, e.kind, e.severity, e.sensor, e.metric, "firing", unit_of(e.metric),
        e.value, e.threshold, e.since, e.fired, e.acknowledged, e.suppressed, not e.suppressed,
        e.detail,
    )  # fmt: skip


def _event_row(e: Event) -> Row:
    return Row(
        e.id, e.rule, e.kind, e.severity, e.sensor, e.metric, e.state, unit_of(e.metric),
        e.value, e.threshold, e.since, e.at, None, e.suppressed, e.notified, e.detail,
    )  # fmt: skip


@bp.app_template_global("firing_alerts")
def firing_alerts() -> list[Row]:
    """The alerts firing now (for the overview's banner)."""
    alerts = web_context().alerts
    try:
        return [_episode_row(e) for e in alerts.active()] if alerts is not None else []
    except AlertStateClosed:  # shutting down: the overview still renders
        return []


@bp.get("/alerts")
def page() -> str:
    context = web_context()
    alerts = context.alerts
    before = _before(request.args.get("before"), api=False)
    active = alerts.active() if alerts is not None else []
    events = alerts.events(before=before, limit=PAGE_SIZE + 1) if alerts is not None else []
    older = events[PAGE_SIZE - 1].seq if len(events) > PAGE_SIZE else None
    return render_template(
        "alerts.html",
        nav=nav_links(metric_names(context.store.series()), current=""),
        enabled=alerts is not None and alerts.enabled,
        rules=alerts.rules if alerts is not None else (),
        active=[_episode_row(e) for e in active],
        history=[_event_row(e) for e in events[:PAGE_SIZE]],
        older=older,
        paged=before is not None,
        delivery=alerts.delivery() if alerts is not None else None,
        webhook=bool(context.settings.alerts_webhook_url),
        topic_prefix=context.settings.alerts_topic_prefix,
    )


@bp.post("/alerts/<episode_id>/ack")
def acknowledge_form(episode_id: str) -> WerkzeugResponse:
    """The page's Acknowledge button (a form carrying the CSRF token)."""
    if _acknowledge(episode_id) is None:
        abort(404, description="There is no such alert.")
    return redirect(url_for("alerts.page"), code=303)


def _acknowledge(episode_id: str) -> Episode | None:
    alerts = web_context().alerts
    if alerts is None or not EPISODE_ID.fullmatch(episode_id):
        return None
    return alerts.acknowledge(episode_id)


# ----------------------------------------------------------------------------- API


@bp.get("/api/alerts")
def api_alerts() -> dict[str, Any]:
    args = request.args
    state = args.get("state")
    if state is not None and state not in EVENT_STATES:
        raise AlertParameterError("state", f"must be one of {', '.join(EVENT_STATES)}")
    sensor, metric = _name("sensor"), _name("metric")
    limit = _limit(args.get("limit"))
    before = _before(args.get("before"), api=True)
    alerts = web_context().alerts
    if alerts is None:
        return {"enabled": False, "active": [], "history": [], "next_before": None,
                "delivery": _delivery_json(None)}  # fmt: skip
    active = [
        e for e in alerts.active()
        if (sensor is None or e.sensor == sensor) and (metric is None or e.metric == metric)
    ]  # fmt: skip
    events = alerts.events(
        state=state, sensor=sensor, metric=metric, before=before, limit=limit + 1
    )
    return {
        "enabled": alerts.enabled,
        "active": [episode_json(e) for e in active],
        "history": [event_json(e) for e in events[:limit]],
        "next_before": events[limit - 1].seq if len(events) > limit else None,
        "delivery": _delivery_json(alerts),
    }


@bp.post("/api/alerts/<episode_id>/ack")
def api_acknowledge(episode_id: str) -> tuple[Response, int]:
    episode = _acknowledge(episode_id)
    if episode is None:
        return jsonify(error="There is no such alert."), 404
    return jsonify(episode_json(episode)), 200


def episode_json(e: Episode) -> dict[str, Any]:
    return {
        "id": e.id,
        "rule": e.rule,
        "kind": e.kind,
        "severity": e.severity,
        "sensor": e.sensor,
        "metric": e.metric,
        "state": "firing" if e.resolved is None else "resolved",
        "value": e.value,
        "threshold": e.threshold,
        "since": iso_utc(e.since),
        "fired_at": iso_utc(e.fired),
        "resolved_at": iso_utc(e.resolved) if e.resolved else None,
        "acknowledged_at": iso_utc(e.acknowledged) if e.acknowledged else None,
        "suppressed": e.suppressed,
    }


def event_json(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "id": e.id,
        "rule": e.rule,
        "kind": e.kind,
        "severity": e.severity,
        "sensor": e.sensor,
        "metric": e.metric,
        "state": e.state,
        "value": e.value,
        "threshold": e.threshold,
        "since": iso_utc(e.since),
        "at": iso_utc(e.at),
        "notified": e.notified,
        "suppressed": e.suppressed,
        "detail": e.detail,
    }


def _delivery_json(alerts: AlertsProbe | None) -> dict[str, Any]:
    if alerts is None:
        zero = {"mqtt": 0, "webhook": 0}
        return {"pending": zero, "delivered": zero, "retries": zero, "dead_letters": zero,
                "last_error": None, "dropped_batches": 0}  # fmt: skip
    status = alerts.delivery()
    c = status.counts
    return {
        "pending": c.pending,
        "delivered": c.delivered,
        "retries": c.retries,
        "dead_letters": c.dead_letters,
        "last_error": status.last_error,
        "dropped_batches": status.dropped_batches,
    }


def _name(parameter: str) -> str | None:
    value = request.args.get(parameter)
    if value is not None and not 0 < len(value) <= MAX_NAME_LENGTH:
        raise AlertParameterError(parameter, f"must be 1 to {MAX_NAME_LENGTH} characters")
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_LIMIT:
        raise AlertParameterError("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _before(raw: str | None, *, api: bool) -> int | None:
    if raw is None:
        return None
    if raw.isdecimal() and 0 < len(raw) <= 18 and int(raw) > 0:
        return int(raw)
    if api:
        raise AlertParameterError("before", "must be a positive whole number (next_before)")
    abort(400, description="before: must be a positive whole number.")
