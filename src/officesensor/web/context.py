"""What every request handler needs: the settings, the store, and (maybe) ingest's counters
and the alert service.

``create_app`` puts one ``WebContext`` in ``app.extensions``; handlers fetch it with
``web_context()``. Nothing here is a module-level global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flask import current_app

from officesensor.config import Settings
from officesensor.models import IngestSnapshot, QuarantinedMessage, SensorStatus
from officesensor.store import Store

if TYPE_CHECKING:
    from officesensor.alerts.rules import AlertRule
    from officesensor.alerts.service import DeliveryStatus
    from officesensor.alerts.state import Episode, Event

EXTENSION_KEY = "officesensor"


class IngestProbe(Protocol):
    """Ingest running in the same process, seen from the web: its counters and state."""

    def snapshot(self) -> IngestSnapshot:
        """The counters and state at this moment."""

    def quarantine(self, limit: int) -> list[QuarantinedMessage]:
        """The newest rejected messages, newest first."""

    def sensor_statuses(self) -> dict[str, SensorStatus]:
        """Each sensor's latest status message (online, or offline by its last will)."""


class AlertsProbe(Protocol):
    """The alert service in this process (alerts/service.py), seen from the web."""

    rules: tuple[AlertRule, ...]

    @property
    def enabled(self) -> bool:
        """Whether rules are evaluated here."""

    def active(self) -> list[Episode]:
        """Episodes firing now, newest first."""

    def events(
        self,
        *,
        state: str | None = None,
        sensor: str | None = None,
        metric: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """History, newest first."""

    def acknowledge(self, episode_id: str) -> Episode | None:
        """Mark an episode acknowledged; None when there is no such episode."""

    def delivery(self) -> DeliveryStatus:
        """Delivery counters (pending, delivered, retries, dead letters)."""

    def metrics_lines(self) -> list[str]:
        """The same counters as Prometheus exposition lines, for /metrics."""


@dataclass(frozen=True, slots=True)
class WebContext:
    settings: Settings
    store: Store
    ingest: IngestProbe | None
    #: The alert service, when this process runs one (``serve`` does).
    alerts: AlertsProbe | None = None
    #: The metric pages' Bokeh figure per unit (units are a closed set: ``models.unit_of``),
    #: built on first use; read-only once stored.
    chart_items: dict[str, dict[str, Any]] = field(default_factory=dict)


def sensor_online(sensor: str) -> bool | None:
    """Whether ``sensor`` says it is connected: None when ingest is not in this process or
    the sensor never sent a status (the original sensor doesn't)."""
    ingest = web_context().ingest
    if ingest is None:
        return None
    status = ingest.sensor_statuses().get(sensor)
    return None if status is None else status.online


def web_context() -> WebContext:
    context = current_app.extensions[EXTENSION_KEY]
    assert isinstance(context, WebContext)
    return context
