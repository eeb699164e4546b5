"""Alerts end to end: a private Mosquitto, ``officesensor serve`` as a subprocess with alert
rules, a real webhook HTTP server (failing its first attempts), and an MQTT subscriber on
office/alerts/#. Readings are published as a sensor publishes them."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.alert_helpers import AlertWatcher, Webhook
from tests.integration.conftest import (
    Broker,
    Publisher,
    Server,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)
from tests.prometheus import parse

pytestmark = pytest.mark.integration

TOPIC = "office/alerts/lab/Temperature"
WARM = {
    "name": "too-warm",
    "kind": "threshold",
    "sensor": "lab",
    "metric": "temperature",
    "above": 80.0,
    "hysteresis": 2.0,
    "severity": "critical",
}
_ids = itertools.count(int(time.time() * 1000))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto")
    yield broker
    stop_process(broker.proc)


@pytest.fixture
def watcher(mosquitto: Broker) -> Iterator[AlertWatcher]:
    watching = AlertWatcher(mosquitto)
    yield watching
    watching.close()


@pytest.fixture
def sensor(mosquitto: Broker) -> Iterator[Publisher]:
    publisher = Publisher(mosquitto)
    yield publisher
    publisher.close()


def serve_with(broker: Broker, workdir: Path, rules: list[dict[str, Any]], hook: Webhook) -> Server:
    return start_serve(
        broker,
        workdir,
        OFFICESENSOR_ALERTS_RULES=json.dumps(rules),
        OFFICESENSOR_ALERTS_WEBHOOK_URL=hook.url,
        OFFICESENSOR_ALERTS_STATE=str(workdir / "alerts.db"),
    )


def stop(server: Server) -> None:
    code = stop_process(server.proc)
    assert code == 0, f"serve exited with {code}:\n{server.log()}"


def publish(sensor: Publisher, name: str, value: float, ts: datetime | None = None) -> None:
    ts = ts or datetime.now(UTC)
    body = {"Temperature": value, "ID": next(_ids), "Timestamp": ts.isoformat(), "Sensor": name}
    sensor.publish("office/metrics/Temperature", json.dumps(body))


def stored(server: Server, sensor: str, count: int) -> None:
    """Wait until ``count`` readings of ``sensor`` are stored (and so handed to alerts)."""

    def enough() -> bool:
        series = server.json("/api/series")
        return any(s["sensor"] == sensor and s["count"] >= count for s in series)

    wait_for(enough, 15, f"{count} readings of {sensor} stored")


def states(messages: list[Any]) -> list[str]:
    return [m.body["state"] for m in messages]


def test_threshold_fires_once_retries_the_webhook_and_resolves_once(
    mosquitto: Broker, watcher: AlertWatcher, sensor: Publisher, tmp_path: Path
):
    hook = Webhook(fail_first=2)
    server = serve_with(mosquitto, tmp_path / "serve", [WARM], hook)
    try:
        publish(sensor, "lab", 75.0)
        publish(sensor, "lab", 81.5)
        (firing,) = watcher.wait(1, TOPIC)
        assert (firing.qos, firing.retain) == (1, False)
        body = firing.body
        assert set(body) == {
            "id", "rule", "kind", "state", "severity", "sensor", "metric", "value",
            "threshold", "since", "at",
        }  # fmt: skip
        assert (body["rule"], body["kind"], body["state"], body["severity"]) == (
            "too-warm", "threshold", "firing", "critical"
        )  # fmt: skip
        assert (body["sensor"], body["metric"], body["value"], body["threshold"]) == (
            "lab", "Temperature", 81.5, 80.0
        )  # fmt: skip
        # The webhook refused twice (503), then took it: one delivery, three attempts.
        wait_for(lambda: len(hook.delivered()) == 1, 30, "the webhook delivery after retries")
        assert [a.status for a in hook.attempts] == [503, 503, 200]
        assert hook.attempts[0].content_type == "application/json"
        assert hook.delivered() == [body]

        # Flapping within the hysteresis band (78 < value <= 80 and back above): nothing.
        for value in (79.0, 80.5, 78.5, 81.0, 79.9):
            publish(sensor, "lab", value)
        publish(sensor, "lab", 77.0)  # <= 80 - 2: resolved
        stored(server, "lab", 8)
        messages = watcher.wait(2, TOPIC)
        assert states(messages) == ["firing", "resolved"]  # FIFO: nothing slipped in between
        assert messages[1].body["id"] == body["id"]
        assert messages[1].body["value"] == 77.0
        wait_for(lambda: len(hook.delivered()) == 2, 30, "the resolved webhook delivery")
        assert [d["state"] for d in hook.delivered()] == ["firing", "resolved"]

        api = server.json("/api/alerts")
        assert api["active"] == []
        assert [e["state"] for e in api["history"]] == ["resolved", "firing"]
        assert api["delivery"]["delivered"] == {"mqtt": 2, "webhook": 2}
        assert api["delivery"]["retries"] == {"mqtt": 0, "webhook": 2}
        assert api["delivery"]["dead_letters"] == {"mqtt": 0, "webhook": 0}
        families = parse(server.get("/metrics")[1].decode())
        delivered = families["officesensor_alert_notifications_delivered_total"]
        assert delivered.value(channel="webhook") == 2
        assert families["officesensor_alert_delivery_retries_total"].value(channel="webhook") == 2
        assert families["officesensor_alerts_firing"].value(severity="critical") == 0
        time.sleep(1.0)  # nothing more may arrive
        assert len(watcher.received(TOPIC)) == 2
        assert len(hook.attempts) == 4
    finally:
        stop(server)
        hook.close()


def test_a_sensor_that_stops_reporting_goes_stale_and_comes_back(
    mosquitto: Broker, watcher: AlertWatcher, sensor: Publisher, tmp_path: Path
):
    quiet = {"name": "quiet", "kind": "stale", "sensor": "den", "intervals": 3}
    hook = Webhook()
    server = serve_with(mosquitto, tmp_path / "serve", [quiet], hook)
    topic = "office/alerts/den/Temperature"
    try:
        start = datetime.now(UTC) - timedelta(seconds=6)
        for i in range(6):  # readings 1 s apart by their timestamps: a 1 s cadence
            publish(sensor, "den", 70.0 + i / 10, start + timedelta(seconds=i))
        stored(server, "den", 6)
        (firing,) = watcher.wait(1, topic)  # silent for more than 3 x 1 s
        assert (firing.body["kind"], firing.body["state"]) == ("stale", "firing")
        assert firing.body["threshold"] == 3.0
        assert firing.body["value"] > 3.0
        publish(sensor, "den", 70.5)
        messages = watcher.wait(2, topic)
        assert states(messages) == ["firing", "resolved"]
        wait_for(lambda: len(hook.delivered()) == 2, 30, "both webhook deliveries")
    finally:
        stop(server)
        hook.close()


def test_a_restart_while_firing_neither_notifies_again_nor_forgets_to_resolve(
    mosquitto: Broker, watcher: AlertWatcher, sensor: Publisher, tmp_path: Path
):
    hook = Webhook()
    workdir = tmp_path / "serve"
    server = serve_with(mosquitto, workdir, [WARM], hook)
    try:
        publish(sensor, "lab", 85.0)
        (firing,) = watcher.wait(1, TOPIC)
        wait_for(lambda: len(hook.delivered()) == 1, 30, "the firing webhook delivery")
    finally:
        stop(server)
    server = serve_with(mosquitto, workdir, [WARM], hook)
    try:
        assert [a["id"] for a in server.json("/api/alerts")["active"]] == [firing.body["id"]]
        publish(sensor, "lab", 86.0)
        publish(sensor, "lab", 84.0)
        stored(server, "lab", 3)
        publish(sensor, "lab", 70.0)
        messages = watcher.wait(2, TOPIC)
        assert states(messages) == ["firing", "resolved"]
        assert messages[1].body["id"] == firing.body["id"]
        wait_for(lambda: len(hook.delivered()) == 2, 30, "the resolved webhook delivery")
        time.sleep(1.0)  # nothing more may arrive
        assert len(watcher.received(TOPIC)) == 2
        assert [d["state"] for d in hook.delivered()] == ["firing", "resolved"]
    finally:
        stop(server)
        hook.close()


def test_a_webhook_that_refuses_for_good_makes_a_dead_letter(
    mosquitto: Broker, watcher: AlertWatcher, sensor: Publisher, tmp_path: Path
):
    # 404: retrying cannot help (a revoked Slack webhook answers so), dead at once. Exhausting
    # the retries of a 5xx webhook: tests/integration/test_alert_delivery.py.
    hook = Webhook(failure=404, always_fail=True)
    server = serve_with(mosquitto, tmp_path / "serve", [WARM], hook)
    try:
        publish(sensor, "lab", 90.0)
        watcher.wait(1, TOPIC)  # MQTT is delivered regardless

        def dead() -> bool:
            return server.json("/api/alerts")["delivery"]["dead_letters"]["webhook"] == 1

        wait_for(dead, 30, "one webhook dead letter")
        delivery = server.json("/api/alerts")["delivery"]
        assert delivery["dead_letters"] == {"mqtt": 0, "webhook": 1}
        assert delivery["pending"] == {"mqtt": 0, "webhook": 0}
        assert "HTTP 404" in delivery["last_error"]
        assert hook.count() == 1
        assert "gave up delivering to http://127.0.0.1" in server.log()
        assert "/hooks/alerts" not in server.log()  # the URL's path may hold a secret
    finally:
        stop(server)
        hook.close()
