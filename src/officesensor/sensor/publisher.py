"""Publishes a sensor's readings over MQTT (QoS 1) in our format or the original sensor's,
through an on-disk outbox, so no reading is lost while the broker is unreachable.

Status (last will): a publisher given a sensor name keeps ``office/status/<sensor>`` up to date,
retained and QoS 1: ``{"Sensor": "<sensor>", "Online": true}`` on every connect,
``{"Sensor": "<sensor>", "Online": false}`` before an orderly disconnect, and the same as its
MQTT will, which the broker publishes as soon as it notices the connection dropped (a crash, a
power cut, a network failure: at the latest 1.5 keepalives, 45 s, after the last packet).

Our format: the original topics and field names, ``ID`` = epoch milliseconds (a restart never
reuses an ID) and an ISO 8601 timestamp with its offset. The original format (for tests and
migration drills): ``ID`` is a counter from 0 and ``Timestamp`` is ``str(datetime.now())``,
naive local time, plus the combined ``office/weather`` message, exactly as the sample sends.

Delivery (at least once, in order):

- ``publish`` writes the message to the outbox (``sensor/outbox.py``, durable on return) and
  never waits for the broker; while it is down, messages simply accumulate there.
- One sender thread owns the outbox's SQLite connection. It takes the callers' writes and
  paho's events from one queue, and publishes from the outbox's head in ``seq`` order, with
  at most ``window`` messages awaiting their PUBACK. A message leaves the outbox only when its
  PUBACK arrives (``on_publish`` with its mid).
- On every (re)connect paho's own copies of unacknowledged messages are dropped and the sender
  starts again from the outbox's head, so the broker sees the messages in ``seq`` order: those
  left by an earlier run (or an earlier connection) first. A message whose PUBACK was lost is
  sent twice; the server dedupes by reading identity.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from officesensor import mqtt
from officesensor.config import Settings
from officesensor.errors import StoreError
from officesensor.models import to_epoch_us
from officesensor.payload import encode_reading
from officesensor.sensor.outbox import Outbox
from officesensor.sensor.sender import (
    Ack,
    Counters,
    Event,
    Link,
    LinkDown,
    LinkUp,
    PublisherStats,
    Sender,
    Stop,
    Write,
)
from officesensor.sensor.simulated import Sample, readings_of

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

#: Most messages published and not yet acknowledged (also capped by paho's max_inflight).
WINDOW = 20

#: Retained status messages (see the module docstring): ``office/status/<sensor>``.
STATUS_PREFIX = "office/status/"
#: How long ``close`` waits for the broker to acknowledge the "offline" status.
STATUS_TIMEOUT_S = 2.0

#: Exit codes of ``officesensor sensor`` (see ``exit_code``).
EXIT_DELIVERED = 0
EXIT_LOST = 1
EXIT_PENDING = 75  # sysexits' EX_TEMPFAIL: nothing lost, try again later


def original_messages(sample: Sample, counter: int, tz: tzinfo) -> list[tuple[str, bytes]]:
    """The messages the original sample's sensor sends for one sample, byte for byte in shape."""
    timestamp = str(sample.ts.astimezone(tz).replace(tzinfo=None))
    messages = [
        (
            f"office/metrics/{metric}",
            json.dumps({metric: value, "ID": counter, "Timestamp": timestamp}).encode(),
        )
        for metric, value in sample.values.items()
    ]
    weather = {"ID": counter, **sample.values, "Timestamp": timestamp}
    messages.append(("office/weather", json.dumps(weather).encode()))
    return messages


def our_messages(sample: Sample, sensor: str, tz: tzinfo) -> list[tuple[str, bytes]]:
    return [encode_reading(reading, tz) for reading in readings_of(sample, sensor=sensor)]


def status_topic(sensor: str) -> str:
    return STATUS_PREFIX + sensor


def status_payload(sensor: str, *, online: bool) -> bytes:
    return json.dumps({"Sensor": sensor, "Online": online}, separators=(",", ":")).encode()


def exit_code(stats: PublisherStats) -> int:
    """0: everything delivered; 1: something was lost in this run (dropped, refused or not
    written); 75: nothing lost, but messages wait in the outbox for the next run."""
    if stats.lost_this_run:
        return EXIT_LOST
    return EXIT_PENDING if stats.pending else EXIT_DELIVERED


class Publisher:
    """A sensor's MQTT connection with an on-disk outbox. Thread-safe ``publish``.

    With ``status_of`` (a sensor name) it also keeps that sensor's retained status and sets
    its last will (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        client_id: str,
        *,
        window: int = WINDOW,
        status_of: str | None = None,
    ) -> None:
        s = settings
        outbox = Outbox(
            s.sensor_outbox,
            max_messages=s.sensor_outbox_max_messages,
            max_age=s.sensor_outbox_max_age,
        )
        try:
            self._client = mqtt.make_client(s, client_id)
        except BaseException:
            outbox.close()
            raise
        self._url = s.mqtt_url
        self._status_of = status_of
        self._closing = self._closed = False
        self._events: queue.Queue[Event] = queue.Queue()  # writers wait, so it stays small
        self._link = Link()
        self._counters = Counters(outbox.pending(), outbox.dropped)
        self._client.on_connect = mqtt.guarded(self._on_connect)
        self._client.on_connect_fail = mqtt.guarded(self._on_connect_fail)
        self._client.on_disconnect = mqtt.guarded(self._on_disconnect)
        self._client.on_publish = mqtt.guarded(self._on_publish)
        sender = Sender(
            outbox,
            self._client,
            self._events,
            self._link,
            self._counters,
            window=max(1, min(window, self._client.max_inflight_messages)),
        )
        self._thread = threading.Thread(target=sender.run, name="sensor-outbox", daemon=True)
        if status_of is not None:
            self._client.will_set(
                status_topic(status_of), status_payload(status_of, online=False), 1, True
            )
        self._thread.start()
        mqtt.connect(self._client, s.mqtt_url)
        self._client.loop_start()

    # ------------------------------------------------------------------------ paho callbacks
    # They run on paho's network thread and only hand events to the sender.

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("sensor: broker refused the connection: %s", reason)
            self._events.put(LinkDown())
            return
        with self._link.lock:
            # paho would resend its unacknowledged messages after this callback, possibly
            # after newer ones; the sender republishes them from the outbox, in order, instead.
            client.drop_out_messages()
            self._link.up = True
            self._link.epoch += 1
            epoch = self._link.epoch
        mqtt.note_connected(client)
        log.info("sensor: connected to %s", self._url)
        if self._status_of is not None:
            sensor = self._status_of
            client.publish(status_topic(sensor), status_payload(sensor, online=True), 1, True)
        self._events.put(LinkUp(epoch))

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        log.debug("sensor: cannot reach %s; retrying", self._url)
        self._events.put(LinkDown())

    def _on_disconnect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._link.up = False  # no lock here: see Link
        self._events.put(LinkDown(expected=self._closing))
        if not self._closing:
            log.warning("sensor: disconnected (%s); reconnecting", mqtt.reason_text(reason))
            mqtt.note_disconnected(client, reason)  # logs a client id used twice

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        refused = bool(getattr(reason, "is_failure", False))
        self._events.put(Ack(mid, str(reason) if refused else None))

    # ------------------------------------------------------------------------ public API

    def publish(self, topic: str, payload: bytes) -> None:
        """Put one message in the outbox for delivery; see ``publish_many``."""
        self.publish_many([(topic, payload)])

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Write messages to the outbox (durably, in one transaction) for delivery in order.

        Returns once they are on disk; never waits for the broker. Raises StoreError when
        they cannot be written (disk full, publisher closed): then they are lost.
        """
        write = Write(list(messages), datetime.now(UTC))
        if not write.messages:
            return
        if self._closed:
            raise StoreError("the sensor publisher is closed")
        self._events.put(write)
        while not write.done.wait(0.5):
            if not self._thread.is_alive() and not write.done.is_set():
                raise StoreError("the sensor outbox is closed")
        if write.error is not None:
            raise StoreError(write.error)

    def stats(self) -> PublisherStats:
        return self._counters.snapshot()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the outbox is empty (the broker acknowledged everything); False on
        timeout, with the rest still in the outbox."""
        deadline = time.monotonic() + timeout_s
        with self._counters.changed:
            while self._counters.pending:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or not self._thread.is_alive():
                    return False
                self._counters.changed.wait(min(remaining_s, 0.5))
        return True

    def close(self, flush_timeout_s: float = 2.0) -> PublisherStats:
        """Flush briefly, disconnect and close the outbox. Messages not acknowledged stay in
        the outbox and go first next time. Returns the final counters."""
        if self._closed:
            return self.stats()
        self.flush(flush_timeout_s)
        self._closed = self._closing = True
        self._say_offline()
        self._client.disconnect()
        mqtt.stop_network_loop(self._client)  # no paho callback runs after this
        self._events.put(Stop())
        self._thread.join()
        stats = self.stats()
        log.info(
            "sensor: %d messages acknowledged by the broker, %d kept in the outbox for next "
            "time, %d lost in this run (%d dropped, %d refused, %d not written)",
            stats.published,
            stats.pending,
            stats.lost_this_run,
            stats.dropped_this_run,
            stats.refused,
            stats.failed,
        )
        return stats

    def _say_offline(self) -> None:
        """An orderly disconnect discards the will, so say "offline" first (when connected:
        after a lost connection the broker has published the will already)."""
        if self._status_of is None or not self._link.up:
            return
        sensor = self._status_of
        info = self._client.publish(
            status_topic(sensor), status_payload(sensor, online=False), 1, True
        )
        try:
            info.wait_for_publish(STATUS_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # connection gone meanwhile: the will covers it
            log.debug("sensor: offline status not sent: %s", exc)


def run_sensor(
    samples: Iterator[Sample],
    publisher: Publisher,
    *,
    sensor: str,
    tz: tzinfo,
    original_format: bool = False,
    stop: threading.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Publish each sample when its time comes; returns how many samples went to the outbox."""
    published = 0
    for sample in samples:
        wait_s = (sample.ts - clock()).total_seconds()
        if wait_s > 0 and stop.wait(wait_s):
            break
        if stop.is_set():
            break
        if original_format:
            reading_id, messages = published, original_messages(sample, published, tz)
        else:
            reading_id = to_epoch_us(sample.ts) // 1000
            messages = our_messages(sample, sensor, tz)
        try:
            publisher.publish_many(messages)
        except StoreError as exc:
            log.error("sensor: sample at %s lost: %s", sample.ts.isoformat(), exc)
            continue
        published += 1
        log.debug(
            "sensor: sample at %s (ID %d) stored for delivery: %s",
            sample.ts.isoformat(),
            reading_id,
            ", ".join(sample.values),
        )
    return published
