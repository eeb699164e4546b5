"""The benchmark's publisher side: our sensor's messages, a persistent session created for an
offline subscriber, bulk pre-queueing, and a paced publisher for the latency run."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from _mosquitto import HOST
from officesensor.models import DEFAULT_SENSOR, Reading, from_epoch_us
from officesensor.payload import encode_reading

TOPIC_FILTER = "office/metrics/+"
SESSION_EXPIRY_S = 3600
METRICS = ("Temperature", "Humidity", "Pressure")
_BASES = {"Temperature": 71.0, "Humidity": 40.0, "Pressure": 1010.0}


def make_messages(count: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """``count`` distinct readings in our sensor's wire format, one metric after the other,
    1 ms apart and ending now (``ID`` = epoch milliseconds, so every ID is distinct too)."""
    rng = random.Random(seed)
    end_ms = time.time_ns() // 1_000_000
    messages = []
    for i in range(count):
        metric = METRICS[i % len(METRICS)]
        ms = end_ms - count + i
        value = round(_BASES[metric] + rng.uniform(-2.0, 2.0), 2)
        reading = Reading(DEFAULT_SENSOR, metric, ms, from_epoch_us(ms * 1000), value)
        messages.append(encode_reading(reading, UTC))
    return messages


def _client(client_id: str, protocol: str) -> paho.Client:
    v5 = protocol == "5"
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else False,
    )


def connect_kwargs(protocol: str, *, clean_start: bool) -> dict[str, object]:
    """connect() arguments for a persistent session (MQTT 5: session expiry set)."""
    if protocol != "5":
        return {"keepalive": 30}
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    return {"keepalive": 30, "clean_start": clean_start, "properties": properties}


def create_session(port: int, client_id: str, protocol: str) -> None:
    """Connect as the consumer once, subscribe with QoS 1 and leave: the broker then keeps
    the session and queues matching messages for it while it is offline."""
    client = _client(client_id, protocol)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(HOST, port, **connect_kwargs(protocol, clean_start=True))
    client.loop_start()
    try:
        client.subscribe(TOPIC_FILTER, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK from the broker within 10 s")
    finally:
        client.disconnect()
        client.loop_stop()


class _Publisher:
    def __init__(self, port: int, protocol: str, client_id: str) -> None:
        self.client = _client(client_id, protocol)
        self.client.max_inflight_messages_set(1000)
        self.acked = 0
        self._lock = threading.Condition()
        self._all_acked = threading.Event()
        self._expected = 0
        self.client.on_publish = self._on_publish
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, *_args: object) -> None:
        with self._lock:
            self.acked += 1
            if self.acked >= self._expected:
                self._all_acked.set()
            self._lock.notify_all()

    def wait_outstanding_below(self, sent: int, limit: int, timeout_s: float = 30) -> None:
        """paho numbers messages 1..65535 when publish() is called and keys its in-flight
        table by that number: more than 65535 unacknowledged at once would overwrite each
        other. Stay well below that."""
        with self._lock:
            if not self._lock.wait_for(lambda: sent - self.acked < limit, timeout_s):
                raise RuntimeError(f"broker acknowledged only {self.acked} of {sent} publishes")

    def expect(self, count: int) -> None:
        with self._lock:
            self._expected = count
            if self.acked >= count:
                self._all_acked.set()

    def wait_acked(self, timeout_s: float) -> None:
        if not self._all_acked.wait(timeout_s):
            raise RuntimeError(f"broker acknowledged {self.acked} of {self._expected} publishes")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, protocol: str, messages: list[tuple[str, bytes]]) -> float:
    """Publish every message with QoS 1 and wait for all PUBACKs (the broker has queued them
    for the offline session by then). Returns the seconds it took."""
    started = time.perf_counter()
    publisher = _Publisher(port, protocol, "bench-prequeue")
    try:
        publisher.expect(len(messages))
        for sent, (topic, payload) in enumerate(messages):
            if sent % 1000 == 0:
                publisher.wait_outstanding_below(sent, 20_000)
            publisher.client.publish(topic, payload, qos=1)
        publisher.wait_acked(60 + len(messages) / 1000)
    finally:
        publisher.close()
    return time.perf_counter() - started


def publish_paced(port: int, protocol: str, rate_per_s: float, duration_s: float) -> int:
    """Publish at a steady rate, each reading stamped with its send time (``Timestamp`` to the
    microsecond, ``ID`` in epoch ms), so the consumer can compute publish-to-commit latency.
    Returns how many were published (all acknowledged by the broker)."""
    count = round(rate_per_s * duration_s)
    publisher = _Publisher(port, protocol, "bench-paced")
    try:
        publisher.expect(count)
        start = time.perf_counter()
        last_id = 0
        for i in range(count):
            delay = start + i / rate_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent_us = time.time_ns() // 1000
            last_id = max(last_id + 1, sent_us // 1000)
            metric = METRICS[i % len(METRICS)]
            value = round(_BASES[metric] + (i % 7) * 0.1, 2)
            reading = Reading(DEFAULT_SENSOR, metric, last_id, from_epoch_us(sent_us), value)
            publisher.client.publish(*encode_reading(reading, UTC), qos=1)
        publisher.wait_acked(30)
    finally:
        publisher.close()
    return count
