"""A sensor's status reaches the dashboard: ``officesensor sensor`` keeps office/status/<name>
retained with a last will, ``officesensor serve`` follows it, and /api/series and the live
stream say "offline" as soon as the sensor's process dies (kill -9: the broker publishes the
will)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Broker,
    cli_process,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)
from tests.integration.test_live_stream import EventStream

pytestmark = pytest.mark.integration


def online_of(server, sensor: str) -> set[bool | None]:
    return {s["online"] for s in server.json("/api/series") if s["sensor"] == sensor}


def start_sensor(broker: Broker, workdir: Path, name: str):
    return cli_process(
        ["sensor", "--sensor", name, "--interval", "0.5"],
        workdir,
        {
            "OFFICESENSOR_MQTT_URL": broker.url,
            "OFFICESENSOR_MQTT_CLIENT_ID": f"pi-{name}",
            "OFFICESENSOR_SENSOR_CLOCK_CHECK": "floor",
        },
    )


def test_a_killed_sensor_is_offline_at_once_and_online_again_after_restart(tmp_path: Path):
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = start_serve(broker, tmp_path / "serve")
    lab = attic = None
    try:
        lab = start_sensor(broker, tmp_path / "lab", "lab")
        attic = start_sensor(broker, tmp_path / "attic", "attic")
        for name in ("lab", "attic"):
            wait_for(lambda n=name: online_of(server, n) == {True}, 30, f"{name} to be online")
        stream = EventStream(server.base)
        try:
            time.sleep(0.3)
            attic.send_signal(signal.SIGKILL)  # no goodbye: the broker sends the last will
            attic.wait(10)
            deadline = time.monotonic() + 15
            status = None
            while status is None and time.monotonic() < deadline:
                status = _next_status(stream, "attic")
        finally:
            stream.close()
        assert status == {"sensor": "attic", "online": False, "since": status["since"]}
        assert online_of(server, "attic") == {False}
        assert online_of(server, "lab") == {True}  # the other sensor is unaffected

        attic = start_sensor(broker, tmp_path / "attic", "attic")
        wait_for(lambda: online_of(server, "attic") == {True}, 30, "attic to be back online")
        assert stop_process(attic) in (0, 75)  # orderly stop: says offline itself
        attic = None
        wait_for(lambda: online_of(server, "attic") == {False}, 15, "attic's goodbye")
    finally:
        for proc in (lab, attic):
            if proc is not None and proc.poll() is None:
                stop_process(proc)
        assert stop_process(server.proc) == 0, server.log()
        stop_process(broker.proc)


def test_statuses_survive_a_server_restart_through_retained_messages(tmp_path: Path):
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = start_serve(broker, tmp_path / "serve")
    sensor = start_sensor(broker, tmp_path / "lab", "lab")
    try:
        wait_for(lambda: online_of(server, "lab") == {True}, 30, "lab to be online")
        assert stop_process(server.proc) == 0, server.log()
        server = start_serve(broker, tmp_path / "serve")  # a fresh process, same store
        wait_for(lambda: online_of(server, "lab") == {True}, 15, "the retained status")
    finally:
        stop_process(sensor)
        stop_process(server.proc)
        stop_process(broker.proc)


def _next_status(stream: EventStream, sensor: str) -> dict | None:
    """The next event if it is a status event about ``sensor``, else None."""
    fields = stream.next_fields(time.monotonic() + 5)
    if fields.get("event") != "status":
        return None
    body = json.loads(fields["data"])
    return body if body["sensor"] == sensor else None
