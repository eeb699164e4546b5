"""The sensor's sender thread: the only owner of the outbox's SQLite connection.

It takes the callers' writes and paho's events from one queue and publishes from the
outbox's head in ``seq`` order, with at most ``window`` messages awaiting their PUBACK; a
message leaves the outbox only when its PUBACK arrives. On every (re)connect it starts again
from the head, so the broker sees messages in order (see ``publisher.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from officesensor.errors import StoreError
from officesensor.sensor.outbox import Outbox

if TYPE_CHECKING:
    import paho.mqtt.client as paho

log = logging.getLogger("officesensor.sensor.publisher")  # one logger for the sensor's delivery

_EXPIRE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class PublisherStats:
    connected: bool
    written: int  # messages this process put into the outbox
    published: int  # messages the broker acknowledged (this process)
    pending: int  # messages in the outbox now, waiting for the broker
    dropped: int  # messages the outbox ever dropped (full or too old), over every run
    dropped_this_run: int
    refused: int  # messages the broker or paho refused for good (logged, removed)
    failed: int  # messages that could not be written to the outbox (logged, lost)

    @property
    def lost_this_run(self) -> int:
        return self.dropped_this_run + self.refused + self.failed


# ----------------------------------------------------------------------------- sender events


@dataclass(slots=True)
class Write:
    messages: list[tuple[str, bytes]]
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    mid: int
    refusal: str | None  # the reason code when the broker refused the message


@dataclass(frozen=True, slots=True)
class LinkUp:
    epoch: int


@dataclass(frozen=True, slots=True)
class LinkDown:
    expected: bool = False  # we disconnected on purpose (close)


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Event = Write | Ack | LinkUp | LinkDown | Stop


@dataclass(slots=True)
class Link:
    """The connection as paho's callbacks see it; ``epoch`` counts successful connects.

    Lock order: ``lock`` before paho's internal locks, never the other way round (on_publish
    and on_disconnect run under paho's locks, so they do not take it).
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    up: bool = False
    epoch: int = 0


class Counters:
    """What ``stats()`` reports; written by the sender thread, read by anyone."""

    def __init__(self, pending: int, dropped: int) -> None:
        self.changed = threading.Condition()
        self.connected = False
        self.written = self.published = self.refused = self.failed = 0
        self.pending = pending
        self.dropped = self.dropped_at_start = dropped

    def snapshot(self) -> PublisherStats:
        with self.changed:
            return PublisherStats(
                connected=self.connected,
                written=self.written,
                published=self.published,
                pending=self.pending,
                dropped=self.dropped,
                dropped_this_run=self.dropped - self.dropped_at_start,
                refused=self.refused,
                failed=self.failed,
            )


class Sender:
    """The outbox's owner: runs on its own thread, the only user of the SQLite connection."""

    def __init__(
        self,
        outbox: Outbox,
        client: paho.Client,
        events: queue.Queue[Event],
        link: Link,
        counters: Counters,
        *,
        window: int,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._events = events
        self._link = link
        self._counters = counters
        self._window = window
        self._epoch = 0  # the connection the state below belongs to; 0: none yet
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq, awaiting PUBACK
        self._delivered: list[int] = []  # seqs acknowledged, to remove from the outbox
        self._last_sent = 0  # highest seq published on this connection
        self._unreachable = False  # the last connect attempt failed or the connection broke
        self._backlog_since: int | None = None  # counters.published when the backlog began
        self._warned = False  # "broker unreachable" logged for the current backlog
        self._next_expiry = time.monotonic()
        self._stopping = False
        if outbox.pending():
            log.info(
                "sensor: %d messages from an earlier run wait in the outbox %s (oldest from "
                "%s); they are delivered first",
                outbox.pending(),
                outbox.path,
                outbox.oldest(),
            )
            self._backlog_since = 0

    def run(self) -> None:
        try:
            while not self._stopping:
                events = self._next_events()
                try:
                    self._handle(events)
                except Exception:
                    log.exception("sensor: outbox error (the sender keeps running)")
                    time.sleep(1.0)  # no busy loop on a persistent error (disk gone)
        finally:
            self._outbox.close()

    def _next_events(self) -> list[Event]:
        try:
            events = [self._events.get(timeout=1.0)]
        except queue.Empty:
            return []
        while len(events) < 1000:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return events

    def _handle(self, events: list[Event]) -> None:
        for event in events:  # one at a time, so a failure cannot strand a waiting writer
            try:
                self._apply(event)
            except Exception:
                log.exception("sensor: outbox error (the sender keeps running)")
        if self._delivered:
            delivered, self._delivered = self._delivered, []
            self._outbox.remove(*delivered)  # on error they stay: sent again, not lost
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + _EXPIRE_EVERY_S
            self._outbox.drop_expired(datetime.now(UTC))
        if not self._stopping:
            self._fill_window()
        self._report()

    def _apply(self, event: Event) -> None:
        if isinstance(event, Write):
            self._write(event)
        elif isinstance(event, Ack):
            seq = self._inflight.pop(event.mid, None)
            if seq is None:
                return  # sent on an earlier connection: it was republished since
            self._delivered.append(seq)
            with self._counters.changed:
                if event.refusal is None:
                    self._counters.published += 1
                else:
                    self._counters.refused += 1
            if event.refusal is not None:
                log.error("sensor: broker refused message %d: %s (dropped)", seq, event.refusal)
        elif isinstance(event, LinkUp):
            self._epoch, self._unreachable = event.epoch, False
            self._inflight.clear()
            self._last_sent = 0
        elif isinstance(event, LinkDown):
            self._epoch, self._unreachable = 0, not event.expected
        else:
            self._stopping = True

    def _write(self, write: Write) -> None:
        try:
            self._outbox.add_many(write.messages, write.now)
        except StoreError as exc:
            log.error("sensor: %d messages lost: %s", len(write.messages), exc)
            write.error = str(exc)
            with self._counters.changed:
                self._counters.failed += len(write.messages)
        else:
            with self._counters.changed:  # before done: flush() right after must see them
                self._counters.written += len(write.messages)
                self._counters.pending = self._outbox.pending()
                self._counters.dropped = self._outbox.dropped
        finally:
            write.done.set()

    def _fill_window(self) -> None:
        """Publish from the outbox's head until ``window`` messages await their PUBACK."""
        while self._epoch and len(self._inflight) < self._window:
            batch = self._outbox.peek(self._window - len(self._inflight), self._last_sent)
            if not batch:
                return
            for message in batch:
                with self._link.lock:  # no reconnect between this check and the publish
                    if not self._link.up or self._link.epoch != self._epoch:
                        return
                    try:
                        mid: int | None = self._client.publish(
                            message.topic, message.payload, qos=1
                        ).mid
                    except ValueError as exc:  # paho cannot send it at all (topic, size)
                        log.error("sensor: cannot publish message %d: %s", message.seq, exc)
                        mid = None
                self._last_sent = message.seq
                if mid is None:
                    self._outbox.remove(message.seq)
                    with self._counters.changed:
                        self._counters.refused += 1
                else:
                    self._inflight[mid] = message.seq

    def _report(self) -> None:
        """Update the counters, wake flush(), and log when a backlog starts and ends."""
        pending = self._outbox.pending()
        with self._counters.changed:
            self._counters.pending = pending
            self._counters.dropped = self._outbox.dropped
            self._counters.connected = bool(self._epoch)
            published = self._counters.published
            self._counters.changed.notify_all()
        if pending and self._unreachable and not self._warned:
            self._warned = True
            if self._backlog_since is None:
                self._backlog_since = published
            log.warning(
                "sensor: broker unreachable; keeping readings in the outbox %s until it is back",
                self._outbox.path,
            )
        elif not pending and self._backlog_since is not None:
            log.info(
                "sensor: outbox drained, %d messages delivered since the backlog began",
                published - self._backlog_since,
            )
            self._backlog_since, self._warned = None, False
