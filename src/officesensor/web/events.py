"""Live events: newly stored readings, with their statistics, fanned out to every open page.

Ingest's writer thread calls ``EventHub.publish`` after each commit; the hub serialises each
reading once and hands the batch to the web server's event loop, which puts it on the queue
of every matching subscriber (one per open ``/api/stream``). Nothing here blocks ingest: a
subscriber that falls ``QUEUE_SIZE`` events behind is dropped, and its browser reconnects and
catches up from the store (``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from officesensor.live import Analysed
from officesensor.models import Reading, SensorStatus, unit_of
from officesensor.web.series import finite_or_none, iso_utc

log = logging.getLogger(__name__)

QUEUE_SIZE = 2_000


@dataclass(frozen=True, slots=True)
class LiveEvent:
    sensor: str
    metric: str | None  # None: about the whole sensor (a status event)
    id: int  # reading events: the reading's time in epoch µs (streams resume after it)
    data: str  # JSON
    kind: str = "reading"  # the SSE event name: "reading" or "status"


def status_event(status: SensorStatus) -> LiveEvent:
    """A sensor went online or offline (its status message or its last will)."""
    payload = {"sensor": status.sensor, "online": status.online, "since": iso_utc(status.since)}
    return LiveEvent(status.sensor, None, 0, json.dumps(payload), kind="status")


def reading_event(
    reading: Reading,
    mean: float | None,
    std: float | None,
    z: float | None,
    anomaly: bool,
    z_threshold: float,
) -> LiveEvent:
    """The event of one reading; the same fields as ``/api/readings`` rows plus the series."""
    band = None if std is None or mean is None else z_threshold * std
    payload: dict[str, Any] = {
        "sensor": reading.sensor,
        "metric": reading.metric,
        "unit": unit_of(reading.metric),
        "id": reading.reading_id,
        "ts": iso_utc(reading.ts),
        "value": reading.value,
        "mean": mean,
        "std": std,
        "z": z,
        "lower": None if band is None or mean is None else mean - band,
        "upper": None if band is None or mean is None else mean + band,
        "anomaly": anomaly,
    }
    return LiveEvent(reading.sensor, reading.metric, reading.ts_us, json.dumps(payload))


def analysed_event(item: Analysed, z_threshold: float) -> LiveEvent:
    stats = item.stats
    return reading_event(
        item.reading,
        finite_or_none(stats.mean),
        None if stats.std is None else finite_or_none(stats.std),
        None if stats.z is None else finite_or_none(stats.z),
        stats.anomaly,
        z_threshold,
    )


@dataclass(eq=False, slots=True)
class Subscription:
    sensor: str | None
    metric: str | None
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    overflowed: bool = False

    def wants(self, event: LiveEvent) -> bool:
        return (self.sensor is None or self.sensor == event.sensor) and (
            self.metric is None or event.metric is None or self.metric == event.metric
        )


class EventHub:
    def __init__(self, z_threshold: float) -> None:
        self._z = z_threshold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()  # guards _loop, which the server sets and clears
        self._closed = False

    # -------------------------------------------------------------- any thread

    def publish(self, analysed: Sequence[Analysed]) -> None:
        """Called by ingest after a commit. Never raises into ingest, never blocks."""
        with self._lock:
            loop = self._loop
        if loop is None or not analysed:
            return
        try:
            events = [analysed_event(item, self._z) for item in analysed]
            loop.call_soon_threadsafe(self._dispatch, events)
        except RuntimeError:  # the loop closed between the check and the call
            pass
        except Exception:
            log.exception("live events: could not publish a batch (ignored)")

    def publish_status(self, status: SensorStatus) -> None:
        """Called by ingest for each status message. Never raises, never blocks."""
        with self._lock:
            loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            loop.call_soon_threadsafe(self._dispatch, [status_event(status)])

    # -------------------------------------------------------------- the event loop

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
            self._closed = False

    def subscribe(self, sensor: str | None, metric: str | None) -> Subscription:
        subscription = Subscription(sensor, metric)
        if self._closed:
            subscription.queue.put_nowait(None)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every stream (server shutdown): each gets None, then nothing more."""
        with self._lock:
            self._loop = None
            self._closed = True
        for subscription in list(self._subscribers):
            _offer(subscription, None)

    def _dispatch(self, events: list[LiveEvent]) -> None:
        for subscription in list(self._subscribers):
            for event in events:
                if subscription.wants(event) and not _offer(subscription, event):
                    break


def _offer(subscription: Subscription, event: LiveEvent | None) -> bool:
    """Queue ``event``; a full queue marks the subscriber overflowed (its stream then ends)."""
    if subscription.overflowed:
        return False
    try:
        subscription.queue.put_nowait(event)
        return True
    except asyncio.QueueFull:
        subscription.overflowed = True
        # Make room for the end marker so the stream notices at once.
        subscription.queue.get_nowait()
        subscription.queue.put_nowait(None)
        return False
