"""The sensor's status topic and last will against a real Mosquitto: online on connect,
offline at once when the sensor program dies (kill -9) or stops (SIGTERM), retained so a
dashboard that connects later knows too."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from officesensor.mqtt import stop_network_loop
from tests.integration.conftest import (
    Broker,
    cli_process,
    start_mosquitto,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration


class StatusWatcher:
    """Subscribes to office/status/# and records (topic, document, retained) in order."""

    def __init__(self, port: int, client_id: str) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, dict[str, Any], bool]] = []
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("office/status/#", qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.seen.append((message.topic, json.loads(message.payload), bool(message.retain)))

    def statuses(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return list(self.seen)

    def last(self, topic: str) -> dict[str, Any] | None:
        found = [doc for t, doc, _ in self.statuses() if t == topic]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.disconnect()
        stop_network_loop(self.client)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto")
    yield broker
    stop_process(broker.proc)


def start_sensor(broker: Broker, workdir: Path, name: str) -> Any:
    env = {
        "OFFICESENSOR_MQTT_URL": broker.url,
        "OFFICESENSOR_MQTT_CLIENT_ID": f"test-{name}",
        "OFFICESENSOR_SENSOR_CLOCK_CHECK": "floor",
    }
    return cli_process(
        ["sensor", "--sensor", name, "--interval", "0.2", "--seed", "1"], workdir, env
    )


def test_kill_9_of_the_sensor_publishes_its_will_at_once(mosquitto: Broker, tmp_path: Path) -> None:
    watcher = StatusWatcher(mosquitto.port, "test-status-watcher")
    sensor = start_sensor(mosquitto, tmp_path / "sensor", "lab-1")
    try:
        wait_for(
            lambda: watcher.last("office/status/lab-1") == {"Sensor": "lab-1", "Online": True},
            30,
            "the sensor to say it is online",
        )
        killed = time.monotonic()
        sensor.send_signal(signal.SIGKILL)
        sensor.wait()
        wait_for(
            lambda: watcher.last("office/status/lab-1") == {"Sensor": "lab-1", "Online": False},
            10,
            "the will",
        )
        assert time.monotonic() - killed < 5, "the will came late"  # not after a keepalive
    finally:
        stop_process(sensor)
        watcher.close()
    later = StatusWatcher(mosquitto.port, "test-status-latecomer")
    try:
        wait_for(lambda: later.statuses(), 10, "the retained status")
        assert later.statuses() == [
            ("office/status/lab-1", {"Sensor": "lab-1", "Online": False}, True)
        ]
    finally:
        later.close()


def test_an_orderly_stop_says_offline_and_a_restart_online_again(
    mosquitto: Broker, tmp_path: Path
) -> None:
    watcher = StatusWatcher(mosquitto.port, "test-status-watcher")
    topic = "office/status/lab-2"
    try:
        for run in range(2):
            sensor = start_sensor(mosquitto, tmp_path / f"run-{run}", "lab-2")
            try:
                wait_for(lambda: watcher.last(topic) == {"Sensor": "lab-2", "Online": True}, 30,
                         "online")  # fmt: skip
            finally:
                code = stop_process(sensor)
            assert code == 0, (tmp_path / f"run-{run}" / "sensor.log").read_text()[-2000:]
            wait_for(lambda: watcher.last(topic) == {"Sensor": "lab-2", "Online": False}, 10,
                     "offline")  # fmt: skip
        online = [doc["Online"] for t, doc, _ in watcher.statuses() if t == topic]
        assert online == [True, False, True, False]
    finally:
        watcher.close()
