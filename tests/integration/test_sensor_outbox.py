"""The sensor's outbox against a real Mosquitto: readings taken while the broker is down, or
while the sensor program is killed and restarted, all reach a subscriber, in order.

A subscriber with a persistent session (QoS 1) connects before anything is published, so the
broker (persistence on) queues messages for it across its own restart. The outage lasts
``SENSOR_OUTAGE_S`` seconds (default 3), except in the fault-suite test where the sensor is
killed and restarted during the outage: that one lasts ``SENSOR_FAULT_OUTAGE_S`` (default 60).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from officesensor.config import Settings, load_settings
from officesensor.mqtt import stop_network_loop
from officesensor.sensor.outbox import Outbox
from officesensor.sensor.publisher import (
    EXIT_DELIVERED,
    EXIT_PENDING,
    Publisher,
    exit_code,
)
from officesensor.sensor.simulated import METRICS
from tests.integration.conftest import (
    Broker,
    cli_process,
    free_port,
    start_mosquitto,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("SENSOR_OUTAGE_S", "3"))
FAULT_OUTAGE_S = float(os.environ.get("SENSOR_FAULT_OUTAGE_S", "60"))
#: paho retries after 1, 2, 4, 8 ... (at most 30) seconds: the time to notice the broker is back.
RECONNECT_S = 40.0
WEEK = timedelta(days=7)
#: What the sensor logs (at DEBUG) once a sample's messages are on disk.
STORED = re.compile(r"sensor: sample at \S+ \(ID (\d+)\) stored for delivery: ([A-Za-z, ]+)$")


class RestartableMosquitto:
    """Mosquitto on one port and one persistence directory, stopped and started at will."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.current: Broker | None = start_mosquitto(workdir, self.port)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Graceful (SIGTERM): Mosquitto saves its sessions and queued messages."""
        assert self.current is not None
        assert stop_process(self.current.proc) == 0
        self.current = None

    def start(self) -> None:
        assert self.current is None
        self.current = start_mosquitto(self.workdir, self.port)


class Subscriber:
    """A plain paho client: persistent session, QoS 1, records every message it receives."""

    def __init__(self, port: int, client_id: str) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=False,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not get its SUBACK"

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe("office/metrics/#", qos=1)

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self._messages.append((message.topic, message.payload))

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [payload for _, payload in self._messages]

    def readings(self) -> list[tuple[str, int]]:
        """(metric, ID) of every message received, in arrival order, duplicates included."""
        with self._lock:
            messages = list(self._messages)
        return [(topic.split("/")[2], json.loads(payload)["ID"]) for topic, payload in messages]

    def close(self) -> None:
        self.client.disconnect()
        stop_network_loop(self.client)


def first_occurrences(items: list[Any]) -> list[Any]:
    """Arrival order with redelivered duplicates removed (at least once: they may come)."""
    seen: set[Any] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


@pytest.fixture
def mosquitto() -> Iterator[RestartableMosquitto]:
    # Started as root, Mosquitto drops to the "mosquitto" user, which cannot enter pytest's
    # private tmp_path: it would run without persistence (and without its log file), and the
    # subscriber's session would not survive the restart. A world-writable directory of its
    # own works for root and for anyone else.
    workdir = Path(tempfile.mkdtemp(prefix="officesensor-mosquitto-"))
    workdir.chmod(0o777)
    try:
        broker = RestartableMosquitto(workdir)
        yield broker
        if broker.current is not None:
            stop_process(broker.current.proc)
        assert "Error" not in (workdir / "mosquitto.out").read_text(), "Mosquitto failed"
    finally:
        shutil.rmtree(workdir)


@pytest.fixture
def subscriber(mosquitto: RestartableMosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.port, "test-outbox-subscriber")
    yield sub
    sub.close()


def sensor_settings(url: str, outbox: Path) -> Settings:
    return load_settings(
        environ={"OFFICESENSOR_MQTT_URL": url, "OFFICESENSOR_SENSOR_OUTBOX": str(outbox)}
    )


def message(i: int) -> tuple[str, bytes]:
    return "office/metrics/Temperature", json.dumps({"Temperature": 70.0, "ID": i}).encode()


def test_readings_taken_while_the_broker_is_down_all_arrive_in_order(
    mosquitto: RestartableMosquitto,
    subscriber: Subscriber,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="officesensor")
    publisher = Publisher(sensor_settings(mosquitto.url, tmp_path / "outbox.db"), "test-sensor")
    try:
        for i in range(20):
            publisher.publish(*message(i))
            assert publisher.flush(10), publisher.stats()
            assert publisher.stats().published == i + 1, "flush() did not wait for the PUBACK"
        mosquitto.stop()
        wait_for(lambda: not publisher.stats().connected, 10, "the sensor to notice")
        started = time.monotonic()
        for i in range(20, 220):
            publisher.publish(*message(i))
        assert time.monotonic() - started < 5, "publishing waited for the broker"
        during = publisher.stats()
        assert (during.pending, during.published) == (200, 20)
        time.sleep(OUTAGE_S)
        mosquitto.start()
        assert publisher.flush(RECONNECT_S), publisher.stats()
    finally:
        stats = publisher.close()
    assert (stats.written, stats.published, stats.pending, stats.dropped) == (220, 220, 0, 0)
    assert exit_code(stats) == EXIT_DELIVERED
    expected = [message(i)[1] for i in range(220)]
    wait_for(lambda: set(subscriber.payloads()) >= set(expected), 20, "every reading")
    assert first_occurrences(subscriber.payloads()) == expected
    assert "broker unreachable; keeping readings in the outbox" in caplog.text
    assert "outbox drained" in caplog.text


def test_what_one_run_left_in_the_outbox_the_next_delivers_first(
    mosquitto: RestartableMosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    settings = sensor_settings(mosquitto.url, tmp_path / "outbox.db")
    mosquitto.stop()
    first = Publisher(settings, "test-sensor")
    try:
        for i in range(30):
            first.publish(*message(i))
    finally:
        left = first.close(flush_timeout_s=0.5)
    assert (left.written, left.published, left.pending) == (30, 0, 30)
    assert exit_code(left) == EXIT_PENDING
    second = Publisher(settings, "test-sensor")
    try:
        assert second.stats().pending == 30
        for i in range(30, 60):
            second.publish(*message(i))
        mosquitto.start()
        assert second.flush(RECONNECT_S), second.stats()
    finally:
        done = second.close()
    assert (done.written, done.published, done.pending) == (30, 60, 0)
    expected = [message(i)[1] for i in range(60)]
    wait_for(lambda: set(subscriber.payloads()) >= set(expected), 20, "every reading")
    assert first_occurrences(subscriber.payloads()) == expected


def test_without_any_broker_publishing_neither_blocks_nor_raises_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="officesensor")
    nobody = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    publisher = Publisher(sensor_settings(nobody, tmp_path / "outbox.db"), "test-sensor")
    try:
        started = time.monotonic()
        for i in range(10):
            publisher.publish(*message(i))
            assert publisher.stats().pending == i + 1
        assert time.monotonic() - started < 2
        assert not publisher.flush(0.3)
        wait_for(lambda: "broker unreachable" in caplog.text, 10, "the backlog warning")
    finally:
        stats = publisher.close(flush_timeout_s=0.2)
    assert (stats.connected, stats.written, stats.published, stats.pending) == (False, 10, 0, 10)
    assert exit_code(stats) == EXIT_PENDING
    outbox = Outbox(tmp_path / "outbox.db", max_messages=100, max_age=WEEK)
    try:
        assert [m.payload for m in outbox.peek(100)] == [message(i)[1] for i in range(10)]
    finally:
        outbox.close()


def logged_readings(log_file: Path) -> list[tuple[str, int]]:
    """(metric, ID) of every reading the sensor said it had stored, in the order taken."""
    readings = []
    for line in log_file.read_text(errors="replace").splitlines():
        if match := STORED.search(line):
            reading_id = int(match.group(1))
            readings += [(metric, reading_id) for metric in match.group(2).split(", ")]
    return readings


def test_sensor_killed_and_restarted_during_an_outage_loses_nothing(
    mosquitto: RestartableMosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    outbox = tmp_path / "sensor-outbox.db"
    env = {
        "OFFICESENSOR_MQTT_URL": mosquitto.url,
        "OFFICESENSOR_MQTT_CLIENT_ID": "test-outbox",
        "OFFICESENSOR_SENSOR_OUTBOX": str(outbox),
        "OFFICESENSOR_LOG_LEVEL": "DEBUG",
    }
    args = ["sensor", "--interval", "0.05"]
    run_a = cli_process([*args, "--seed", "1"], tmp_path / "run-a", env)
    log_a = tmp_path / "run-a" / "sensor.log"
    try:
        wait_for(lambda: len(subscriber.readings()) >= 30, 30, "the first run to deliver")
        mosquitto.stop()
        wait_for(lambda: "broker unreachable" in log_a.read_text(), 10, "the backlog warning")
        time.sleep(FAULT_OUTAGE_S / 2)
    finally:
        run_a.send_signal(signal.SIGKILL)
        run_a.wait()
    taken_a = logged_readings(log_a)
    assert len(taken_a) > len(first_occurrences(subscriber.readings())), "no backlog to lose"

    run_b = cli_process([*args, "--seed", "2"], tmp_path / "run-b", env)
    log_b = tmp_path / "run-b" / "sensor.log"
    try:
        wait_for(lambda: len(logged_readings(log_b)) >= 15, 20, "the second run to take samples")
        time.sleep(FAULT_OUTAGE_S / 2)
        mosquitto.start()
        wait_for(
            lambda: set(subscriber.readings()) >= set(taken_a),
            RECONNECT_S,
            "the first run's readings",
        )
    finally:
        code_b = stop_process(run_b)
    assert code_b == EXIT_DELIVERED, log_b.read_text()[-3000:]
    assert "messages from an earlier run wait in the outbox" in log_b.read_text()
    taken = taken_a + logged_readings(log_b)
    wait_for(lambda: set(subscriber.readings()) >= set(taken), 20, "every reading")

    arrived = first_occurrences(subscriber.readings())
    order = {metric: i for i, metric in enumerate(METRICS)}
    assert arrived == sorted(arrived, key=lambda r: (r[1], order[r[0]])), "out of order"
    # The only reading not in a log: the sample being stored as the first run was killed.
    unlogged = set(arrived) - set(taken)
    assert len(unlogged) <= len(METRICS), unlogged
    assert len({reading_id for _, reading_id in unlogged}) <= 1, unlogged
    left = Outbox(outbox, max_messages=100, max_age=WEEK)
    try:
        assert left.pending() == 0
    finally:
        left.close()
