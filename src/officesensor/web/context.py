"""What every request handler needs: the settings, the store and (maybe) ingest's counters.

``create_app`` puts one ``WebContext`` in ``app.extensions``; handlers fetch it with
``web_context()``. Nothing here is a module-level global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import current_app

from officesensor.config import Settings
from officesensor.models import IngestSnapshot, QuarantinedMessage, SensorStatus
from officesensor.store import Store

EXTENSION_KEY = "officesensor"


class IngestProbe(Protocol):
    """Ingest running in the same process, seen from the web: its counters and state."""

    def snapshot(self) -> IngestSnapshot:
        """The counters and state at this moment."""

    def quarantine(self, limit: int) -> list[QuarantinedMessage]:
        """The newest rejected messages, newest first."""

    def sensor_statuses(self) -> dict[str, SensorStatus]:
        """Each sensor's latest status message (online, or offline by its last will)."""


@dataclass(frozen=True, slots=True)
class WebContext:
    settings: Settings
    store: Store
    ingest: IngestProbe | None
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
