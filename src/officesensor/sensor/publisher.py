"""Publishes a sensor's readings over MQTT (QoS 1) in our format or the original sensor's.

Our format: the original topics and field names, ``ID`` = epoch milliseconds (a restart never
reuses an ID) and an ISO 8601 timestamp with its offset. The original format (for tests and
migration drills): ``ID`` is a counter from 0 and ``Timestamp`` is ``str(datetime.now())``,
naive local time, plus the combined ``office/weather`` message, exactly as the sample sends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

from officesensor import mqtt
from officesensor.config import Settings
from officesensor.payload import encode_reading
from officesensor.sensor.simulated import Sample, readings_of

log = logging.getLogger(__name__)


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


class Publisher:
    """One MQTT connection for a sensor; QoS 1 messages queue in memory while disconnected."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        s = settings
        self._client = mqtt.make_client(
            s.mqtt_url,
            client_id,
            protocol=s.mqtt_protocol,
            ca_file=str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
            cert_file=str(s.mqtt_cert_file) if s.mqtt_cert_file else None,
            key_file=str(s.mqtt_key_file) if s.mqtt_key_file else None,
        )
        self._client.on_connect = mqtt.guarded(self._on_connect)
        self._client.on_disconnect = mqtt.guarded(self._on_disconnect)
        self._client.on_publish = mqtt.guarded(self._on_publish)
        # Message ids the broker has not acknowledged yet. paho's MQTTMessageInfo cannot tell
        # (it raises for a message queued while disconnected), so on_publish keeps this.
        self._unacked: set[int] = set()
        self._lock = threading.Lock()
        self._url = s.mqtt_url
        self._closing = False
        mqtt.connect(self._client, s.mqtt_url)
        self._client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("sensor: broker refused the connection: %s", reason)
        else:
            log.info("sensor: connected to %s", self._url)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self._closing:
            return
        log.warning("sensor: disconnected (%s); reconnecting", mqtt.reason_text(reason))

    def _on_publish(self, _c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        with self._lock:
            self._unacked.discard(mid)

    def publish(self, topic: str, payload: bytes) -> None:
        with self._lock:  # on_publish cannot run before the mid is recorded
            info = self._client.publish(topic, payload, qos=1)
            self._unacked.add(info.mid)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the broker acknowledged everything published; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._unacked:
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.flush(5.0)
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()


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
    """Publish each sample when its time comes; returns how many samples were published."""
    published = 0
    for sample in samples:
        wait_s = (sample.ts - clock()).total_seconds()
        if wait_s > 0 and stop.wait(wait_s):
            break
        if stop.is_set():
            break
        if original_format:
            messages = original_messages(sample, published, tz)
        else:
            messages = our_messages(sample, sensor, tz)
        for topic, payload in messages:
            publisher.publish(topic, payload)
        published += 1
        log.debug("sensor: published %s", sample.values)
    return published
