"""Real processes for integration tests: Mosquitto on a free port with its own config, the
embedded broker, and the ``officesensor`` CLI as a subprocess. Every fixture waits until its
process answers and always stops it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from officesensor.mqtt import stop_network_loop

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, sqlite3.Error):  # not up yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    input_text: str = "",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``officesensor ARGS`` to completion, with no OFFICESENSOR_* from this process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OFFICESENSOR_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "officesensor.cli", *args],
        cwd=cwd,
        env=full_env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Broker:
    kind: str
    port: int
    protocol: str  # the MQTT version clients should speak to it
    proc: subprocess.Popen[Any]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def start_mosquitto(workdir: Path, port: int | None = None, extra_conf: str = "") -> Broker:
    """Mosquitto with persistence in ``workdir``; restart it with the same port and workdir."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        # As root, Mosquitto would switch to its own user, which cannot write pytest's private
        # temporary directories: no log, and no persistence across a restart.
        + ("user root\n" if os.geteuid() == 0 else "")
        + "persistence true\n"
        f"persistence_location {workdir}/\n"
        f"log_dest file {workdir}/mosquitto.log\n"
        "log_type error\nlog_type warning\nlog_type notice\n" + extra_conf
    )
    with (workdir / "mosquitto.out").open("ab") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=out)
    wait_for(lambda: proc.poll() is None and port_open(port), 10, "mosquitto to listen")
    return Broker("mosquitto", port, "5", proc)


def start_embedded_broker(workdir: Path) -> Broker:
    port = free_port()
    proc = cli_process(["broker", "--port", str(port)], workdir, {})
    wait_for(lambda: proc.poll() is None and port_open(port), 20, "embedded broker to listen")
    return Broker("embedded", port, "3.1.1", proc)


def cli_process(args: list[str], workdir: Path, env: dict[str, str]) -> subprocess.Popen[Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OFFICESENSOR_")}
    full_env.update(env)
    with (workdir / f"{args[0]}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "officesensor.cli", *args],
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(params=["mosquitto-5", "mosquitto-3.1.1", "embedded-3.1.1"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    kind, protocol = request.param.split("-", 1)
    if kind == "mosquitto":
        started = start_mosquitto(tmp_path / "mosquitto")
        started.protocol = protocol
    else:
        started = start_embedded_broker(tmp_path / "broker")
    yield started
    stop_process(started.proc)


@dataclass
class Server:
    proc: subprocess.Popen[Any]
    base: str
    workdir: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))


def start_serve(broker: Broker, workdir: Path, **extra_env: str) -> Server:
    http_port = free_port()
    env = {
        "OFFICESENSOR_MQTT_URL": broker.url,
        "OFFICESENSOR_MQTT_PROTOCOL": broker.protocol,
        "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-test-ingest",
        "OFFICESENSOR_STORE": f"sqlite:///{workdir / 'office.db'}",
        "OFFICESENSOR_HTTP": f"127.0.0.1:{http_port}",
        "OFFICESENSOR_SENSOR_TIMEZONE": "Europe/Berlin",
        **extra_env,
    }
    proc = cli_process(["serve"], workdir, env)
    server = Server(proc, f"http://127.0.0.1:{http_port}", workdir)

    def healthy() -> bool:
        assert proc.poll() is None, f"serve exited early:\n{server.log()}"
        return server.get("/readyz")[0] == 200  # connected and subscribed: nothing is lost

    wait_for(healthy, 30, "serve to report ready")
    return server


@pytest.fixture
def serve(broker: Broker, tmp_path: Path) -> Iterator[Server]:
    server = start_serve(broker, tmp_path / "serve")
    yield server
    code = stop_process(server.proc)
    assert code == 0, f"serve exited with {code}:\n{server.log()}"


class Publisher:
    """A plain paho client publishing QoS 1 and waiting for each PUBACK."""

    def __init__(self, broker: Broker) -> None:
        protocol = paho.MQTTv5 if broker.protocol == "5" else paho.MQTTv311
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-pub-{os.getpid()}", protocol=protocol
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"broker did not acknowledge {topic}"

    def close(self) -> None:
        self.client.disconnect()
        stop_network_loop(self.client)


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    pub = Publisher(broker)
    yield pub
    pub.close()
