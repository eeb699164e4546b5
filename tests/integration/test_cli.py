"""The ``officesensor`` command as a user runs it: a subprocess, real files, real sockets."""

from __future__ import annotations

import csv
import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Broker,
    Server,
    cli_process,
    free_port,
    port_open,
    run_cli,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

COMMANDS = ["demo", "serve", "ingest", "sensor", "broker", "export", "import", "dynamodb", "auth"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    result = run_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--config" in result.stdout


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"OFFICESENSOR_WINDOW": "1"}, [], "OFFICESENSOR_WINDOW"),
        ({"OFFICESENSOR_MQTT_URL": "http://broker"}, [], "OFFICESENSOR_MQTT_URL"),
        ({"OFFICESENSOR_WINDOWS": "5"}, [], "OFFICESENSOR_WINDOWS"),
        ({}, ["--z", "nan"], "--z"),
        ({}, ["--http", "localhost"], "--http"),
        ({"OFFICESENSOR_MQTT_CA_FILE": "/nonexistent/ca.pem"}, [], "OFFICESENSOR_MQTT_CA_FILE"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(
    env: dict[str, str], args: list[str], named: str, tmp_path: Path
) -> None:
    result = run_cli("serve", *args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"officesensor: error: {named}: ")


def test_a_busy_web_port_gets_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "serve",
            "--http",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{tmp_path / 'x.db'}",
            cwd=tmp_path,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_sensor_publishes_original_and_our_format_through_serve(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server: Server | None = None
    try:
        server = start_serve(broker, tmp_path / "serve")
        env = {"OFFICESENSOR_MQTT_URL": broker.url, "OFFICESENSOR_MQTT_CLIENT_ID": "pi"}
        original = run_cli(
            "sensor",
            "--count",
            "3",
            "--interval",
            "0.05",
            "--seed",
            "1",
            "--original-format",
            cwd=tmp_path,
            env=env,
        )
        assert original.returncode == 0, original.stderr
        ours = run_cli(
            "sensor",
            "--count",
            "4",
            "--interval",
            "0.05",
            "--seed",
            "2",
            "--sensor",
            "meeting-room",
            cwd=tmp_path,
            env=env,
        )
        assert ours.returncode == 0, ours.stderr

        def counts() -> dict[tuple[str, str], int] | None:
            found = {(s["sensor"], s["metric"]): s["count"] for s in server.json("/api/series")}
            expected = {("default", m): 3 for m in ("Temperature", "Humidity", "Pressure")}
            expected |= {("meeting-room", m): 4 for m in ("Temperature", "Humidity", "Pressure")}
            return found if found == expected else None

        wait_for(counts, 20, "both sensors' readings")
        readings = server.json("/api/readings?metric=Pressure&sensor=default&limit=10")
        readings = readings["readings"] if isinstance(readings, dict) else readings
        assert [r["id"] for r in readings] == [0, 1, 2]  # the original counter IDs
        assert server.json("/api/ingest")["rejected"] == {}
    finally:
        if server is not None:
            assert stop_process(server.proc) == 0, server.log()
        stop_process(broker.proc)


def test_backfill_export_import_round_trip(tmp_path: Path) -> None:
    first = f"sqlite:///{tmp_path / 'first.db'}"
    second = f"sqlite:///{tmp_path / 'second.db'}"
    result = run_cli("sensor", "--backfill", "2h", "--seed", "3", "--store", first, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "backfill [" in result.stderr  # the progress bar
    with sqlite3.connect(tmp_path / "first.db") as db:
        stored = db.execute("SELECT count(*) FROM readings").fetchone()[0]
    # 2 h at one sample per 15 s, three metrics, minus the injected dropouts
    assert 0.9 * 480 * 3 <= stored <= 480 * 3

    exported = run_cli("export", "--store", first, "-o", str(tmp_path / "out.csv"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == stored

    for attempt in range(2):
        imported = run_cli("import", str(tmp_path / "out.csv"), "--store", second, cwd=tmp_path)
        assert imported.returncode == 0, imported.stderr
        expected = f"imported {stored if attempt == 0 else 0} readings"
        assert expected in imported.stderr
    with sqlite3.connect(tmp_path / "second.db") as db:
        assert db.execute("SELECT count(*) FROM readings").fetchone()[0] == stored


def test_demo_serves_live_readings_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    # Something already listens on 1883 on many machines; the demo must not care.
    http_port = free_port()
    proc = cli_process(
        [
            "demo",
            "--http",
            f"127.0.0.1:{http_port}",
            "--interval",
            "0.5",
            "--backfill",
            "1h",
            "--seed",
            "7",
        ],
        tmp_path,
        {},
    )
    server = Server(proc, f"http://127.0.0.1:{http_port}", tmp_path)
    try:
        wait_for(
            lambda: proc.poll() is None and server.get("/healthz")[0] == 200,
            60,
            "the demo to be healthy",
        )
        before = server.json("/api/ingest")["stored"]
        wait_for(
            lambda: server.json("/api/ingest")["stored"] >= before + 6,
            20,
            "live readings to arrive",
        )
        status, page = server.get("/temperature")
        assert status == 200
        assert b"bokeh" in page.lower()
        assert (tmp_path / "data" / "officesensor.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
    assert code == 0, server.log()
    assert "Traceback" not in server.log()


def test_ingest_alone_and_the_embedded_broker_command(tmp_path: Path) -> None:
    port = free_port()
    broker_proc = cli_process(["broker", "--port", str(port)], tmp_path / "broker", {})
    broker = Broker("embedded", port, "3.1.1", broker_proc)
    ingest = None
    try:
        wait_for(lambda: broker_proc.poll() is None and port_open(port), 20, "the broker")
        env = {
            "OFFICESENSOR_MQTT_URL": broker.url,
            "OFFICESENSOR_MQTT_PROTOCOL": "3.1.1",
            "OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'i.db'}",
        }
        ingest = cli_process(["ingest"], tmp_path / "ingest", env)
        log = tmp_path / "ingest" / "ingest.log"
        wait_for(lambda: "ingest: subscribed" in log.read_text(), 20, "ingest to subscribe")
        sensor = run_cli(
            "sensor",
            "--count",
            "2",
            "--interval",
            "0.05",
            cwd=tmp_path,
            env={**env, "OFFICESENSOR_MQTT_CLIENT_ID": "pi"},
        )
        assert sensor.returncode == 0, sensor.stderr

        def stored() -> bool:
            with sqlite3.connect(tmp_path / "i.db") as db:
                return db.execute("SELECT count(*) FROM readings").fetchone()[0] == 6

        wait_for(stored, 20, "ingest to store 6 readings")
    finally:
        if ingest is not None:
            assert stop_process(ingest) == 0
        stop_process(broker_proc)
