"""Mutual TLS as AWS IoT Core does it, against Mosquitto with a TLS listener that requires a
client certificate. The CA, server and client certificates are made by the tests.

- ``serve`` and the sensor publisher connect with mqtts:// + certificate, key and CA, and
  readings flow end to end;
- a wrong CA, a certificate for another host and a missing client certificate are each
  refused, and say why (/readyz 503, the reason in /api/ingest and the log);
- ALPN: a real TLS server reads the ClientHello our client sends and records the protocols
  it offers (Mosquitto does not negotiate ALPN, so it could not tell us).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from officesensor import mqtt
from officesensor.config import load_settings
from officesensor.sensor.publisher import Publisher
from tests.integration.conftest import (
    Broker,
    Server,
    cli_process,
    free_port,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)
from tests.integration.tls_certs import Authority, Issued, make_authority

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Authority
    other_ca: Authority  # trusted by nobody here
    server: Issued  # for 127.0.0.1 and localhost
    wrong_host: Issued  # a valid certificate, but for broker.example
    client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_authority(directory, "test-ca")
    return Pki(
        ca=ca,
        other_ca=make_authority(directory, "other-ca"),
        server=ca.issue(directory, "server", hosts=("127.0.0.1", "localhost")),
        wrong_host=ca.issue(directory, "wrong-host", hosts=("broker.example",)),
        client=ca.issue(directory, "client"),
    )


def tls_conf(ca: Authority, server: Issued) -> str:
    # These lines follow start_mosquitto's listener line, so they configure that listener.
    return (
        f"cafile {ca.cert}\ncertfile {server.cert}\nkeyfile {server.key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )


@pytest.fixture
def tls_broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto", extra_conf=tls_conf(pki.ca, pki.server))
    yield broker
    stop_process(broker.proc)


def tls_env(pki: Pki, port: int, *, host: str = "127.0.0.1") -> dict[str, str]:
    return {
        "OFFICESENSOR_MQTT_URL": f"mqtts://{host}:{port}",
        "OFFICESENSOR_MQTT_CA_FILE": str(pki.ca.cert),
        "OFFICESENSOR_MQTT_CERT_FILE": str(pki.client.cert),
        "OFFICESENSOR_MQTT_KEY_FILE": str(pki.client.key),
    }


def stored_ids(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT r.reading_id FROM readings r JOIN series s ON s.id = r.series_id "
            "WHERE s.sensor = 'tls-sensor' ORDER BY r.reading_id"
        ).fetchall()
    conn.close()
    return [row[0] for row in rows]


def test_serve_and_the_sensor_exchange_readings_over_mutual_tls(
    pki: Pki, tls_broker: Broker, tmp_path: Path
) -> None:
    server = start_serve(tls_broker, tmp_path / "serve", **tls_env(pki, tls_broker.port))
    try:
        # The sensor connects by name (the certificate lists localhost as a DNS name too).
        settings = load_settings(
            environ={
                **tls_env(pki, tls_broker.port, host="localhost"),
                "OFFICESENSOR_SENSOR_OUTBOX": str(tmp_path / "outbox.db"),
            }
        )
        publisher = Publisher(settings, "tls-sensor")
        start = datetime.now(UTC) - timedelta(minutes=5)
        messages = []
        for i in range(20):
            ts = start + timedelta(seconds=i)
            body = {"Temperature": 70 + i / 10, "ID": i, "Timestamp": ts.isoformat()}
            body["Sensor"] = "tls-sensor"
            messages.append(("office/metrics/Temperature", json.dumps(body).encode()))
        publisher.publish_many(messages)
        assert publisher.flush(15), "the broker did not acknowledge the sensor's readings"
        stats = publisher.close()
        assert stats.published == 20
        db = tmp_path / "serve" / "office.db"
        wait_for(lambda: len(stored_ids(db)) == 20, 15, "20 readings stored over TLS")
        assert stored_ids(db) == list(range(20))
        assert server.json("/api/ingest")["last_error"] is None
    finally:
        assert stop_process(server.proc) == 0, server.log()


def start_refused_serve(broker: Broker, workdir: Path, env: dict[str, str]) -> Server:
    """``serve`` that cannot connect: wait until it answers, not ready (503)."""
    http_port = free_port()
    proc = cli_process(
        ["serve"],
        workdir,
        {
            "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-refused",
            "OFFICESENSOR_STORE": f"sqlite:///{workdir / 'office.db'}",
            "OFFICESENSOR_HTTP": f"127.0.0.1:{http_port}",
            **env,
        },
    )
    server = Server(proc, f"http://127.0.0.1:{http_port}", workdir)

    def answers() -> bool:
        assert proc.poll() is None, f"serve exited early:\n{server.log()}"
        return server.get("/readyz")[0] == 503

    wait_for(answers, 30, "serve to answer /readyz")
    return server


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-ca", "check mqtt.ca_file"),
        ("wrong-host", "certificate is not valid for '127.0.0.1'"),
        ("no-client-certificate", "set mqtt.cert_file and mqtt.key_file"),
    ],
)
def test_what_tls_refuses_is_refused_and_says_why(
    pki: Pki, tmp_path: Path, case: str, expected: str
) -> None:
    server_cert = pki.wrong_host if case == "wrong-host" else pki.server
    broker = start_mosquitto(tmp_path / "mosquitto", extra_conf=tls_conf(pki.ca, server_cert))
    env = tls_env(pki, broker.port)
    if case == "wrong-ca":
        env["OFFICESENSOR_MQTT_CA_FILE"] = str(pki.other_ca.cert)
    if case == "no-client-certificate":
        del env["OFFICESENSOR_MQTT_CERT_FILE"], env["OFFICESENSOR_MQTT_KEY_FILE"]
    try:
        server = start_refused_serve(broker, tmp_path / "serve", env)
    except BaseException:
        stop_process(broker.proc)
        raise
    try:

        def explained() -> str | None:
            error = server.json("/api/ingest")["last_error"]
            return error if error and expected in error else None

        error = wait_for(explained, 20, f"/api/ingest to explain the refusal ({expected})")
        status, body = server.get("/readyz")
        assert status == 503
        assert json.loads(body)["reason"].startswith("ingest: not connected")
        assert server.json("/api/ingest")["connected"] is False
        assert error in server.log()  # logged as it happened, once
        assert server.log().count(error) == 1
    finally:
        assert stop_process(server.proc) == 0, server.log()
        stop_process(broker.proc)


# ---------------------------------------------------------------------------------- ALPN


def offered_alpn(client_hello: bytes) -> list[str] | None:
    """The ALPN protocols a TLS ClientHello offers (None: no ALPN extension at all)."""
    assert client_hello[0] == 22, "not a TLS handshake record"
    body = client_hello[5:]
    assert body[0] == 1, "not a ClientHello"
    pos = 4 + 2 + 32  # handshake header, legacy version, random
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    while pos < end:
        kind = int.from_bytes(body[pos : pos + 2], "big")
        size = int.from_bytes(body[pos + 2 : pos + 4], "big")
        data = body[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if kind == 16:  # application_layer_protocol_negotiation
            names, i = [], 2
            while i < len(data):
                names.append(data[i + 1 : i + 1 + data[i]].decode())
                i += 1 + data[i]
            return names
    return None


class AlpnRecorder:
    """A TLS server (Python's ssl) on a free port that records, for one connection, the ALPN
    protocols the client offered (read from its ClientHello) and the one negotiated."""

    SERVER_PROTOCOLS = ("x-amzn-mqtt-ca", "mqtt", "x-custom")

    def __init__(self, pki: Pki) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server.cert, pki.server.key)
        self.context.set_alpn_protocols(list(self.SERVER_PROTOCOLS))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.offered: list[str] | None = None
        self.selected: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve_one, daemon=True)
        self.thread.start()

    def _serve_one(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            hello = b""
            while len(hello) < 5 or len(hello) < 5 + int.from_bytes(hello[3:5], "big"):
                hello = conn.recv(65536, socket.MSG_PEEK)  # leave it for the handshake
            self.offered = offered_alpn(hello)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.selected = tls.selected_alpn_protocol()
        self.done.set()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("url_port", "alpn", "offered", "selected"),
    [
        (443, "auto", ["x-amzn-mqtt-ca"], "x-amzn-mqtt-ca"),  # AWS IoT Core's MQTT on 443
        (8883, "auto", None, None),  # AWS IoT Core on 8883 wants none
        (443, "none", None, None),
        (8883, "x-custom", ["x-custom"], "x-custom"),
    ],
)
def test_the_client_offers_alpn_per_the_setting(
    pki: Pki, url_port: int, alpn: str, offered: list[str] | None, selected: str | None
) -> None:
    recorder = AlpnRecorder(pki)
    try:
        settings = load_settings(
            environ={
                **tls_env(pki, url_port),
                "OFFICESENSOR_MQTT_ALPN": alpn,
                "OFFICESENSOR_MQTT_CLIENT_ID": "alpn-probe",
            }
        )
        client = mqtt.make_client(settings)
        # The client is made for the URL's port (443 decides "auto"); it connects to the
        # recorder, which cannot listen on 443 without privileges.
        client.connect_async("127.0.0.1", recorder.port)
        client.loop_start()
        try:
            assert recorder.done.wait(10), "the client never completed a TLS handshake"
        finally:
            client.disconnect()
            mqtt.stop_network_loop(client)
        assert (recorder.offered, recorder.selected) == (offered, selected)
    finally:
        recorder.close()
