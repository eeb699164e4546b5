"""Two sensors, one server: two ``officesensor sensor`` processes with different names publish
to a private Mosquitto on the unchanged topics ``office/metrics/<Metric>``, the name in each
payload's ``Sensor`` field, and one ``officesensor serve`` keeps their series apart."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from officesensor.mqtt import stop_network_loop
from tests.integration.conftest import (
    Server,
    cli_process,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

METRICS = ("Temperature", "Humidity", "Pressure")
SAMPLES = 5


class Recorder:
    """A subscriber to the original IoT rule's filter, office/metrics/+."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self.messages: list[tuple[str, dict[str, Any]]] = []
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-rule")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("office/metrics/+", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def close(self) -> None:
        self.client.disconnect()
        stop_network_loop(self.client)


def test_two_named_sensors_reach_one_server_as_two_series(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server: Server | None = None
    recorder = Recorder(broker.port)
    try:
        server = start_serve(broker, tmp_path / "serve")
        sensors = {
            name: cli_process(
                ["sensor", "--sensor", name, "--count", str(SAMPLES), "--interval", "0.1"],
                tmp_path / name,  # each sensor its own outbox
                {
                    "OFFICESENSOR_MQTT_URL": broker.url,
                    "OFFICESENSOR_MQTT_CLIENT_ID": f"pi-{name}",  # one client id per sensor
                    "OFFICESENSOR_SENSOR_CLOCK_CHECK": "floor",
                },
            )
            for name in ("kitchen", "meeting-room.2")
        }
        for name, proc in sensors.items():
            assert proc.wait(60) == 0, (tmp_path / name / "sensor.log").read_text()[-2000:]

        def both_series() -> dict[tuple[str, str], int] | None:
            assert server is not None
            found = {(s["sensor"], s["metric"]): s["count"] for s in server.json("/api/series")}
            expected = {(name, m): SAMPLES for name in sensors for m in METRICS}
            return found if found == expected else None

        wait_for(both_series, 20, "both sensors' series in /api/series")
        for name in sensors:
            page = server.json(f"/api/readings?metric=Temperature&sensor={name}&limit=100")
            readings = page["readings"] if isinstance(page, dict) else page
            assert len(readings) == SAMPLES
        assert server.json("/api/ingest")["rejected"] == {}

        wait_for(lambda: len(recorder.messages) >= 2 * SAMPLES * 3, 10, "the rule's copies")
        for topic, document in recorder.messages:
            prefix, level, metric = topic.split("/")  # three levels: the IoT rule still matches
            assert (prefix, level) == ("office", "metrics")
            assert document["Sensor"] in sensors
            assert set(document) == {metric, "ID", "Timestamp", "Sensor"}
    finally:
        recorder.close()
        if server is not None:
            assert stop_process(server.proc) == 0, server.log()
        stop_process(broker.proc)
