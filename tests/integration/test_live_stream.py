"""/api/stream over real HTTP: ``officesensor serve`` as a subprocess, a private Mosquitto,
readings published with paho and read back as Server-Sent Events by raw socket clients."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import (
    Broker,
    Publisher,
    Server,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    started = start_mosquitto(tmp_path / "mosquitto")
    yield started
    stop_process(started.proc)


@pytest.fixture
def serve(broker: Broker, tmp_path: Path) -> Iterator[Server]:
    server = start_serve(broker, tmp_path / "serve")
    yield server
    if server.proc.poll() is None:
        code = stop_process(server.proc)
        assert code == 0, f"serve exited with {code}:\n{server.log()}"


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    pub = Publisher(broker)
    yield pub
    pub.close()


class EventStream:
    """A raw-socket SSE client: sends the request, parses events as they come."""

    def __init__(self, base: str, query: str = "", headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        lines = [f"GET /api/stream{query} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        self.status_line, self.headers = self._read_head()

    def _read_head(self) -> tuple[str, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *rest = head.decode("latin-1").split("\r\n")
        return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in rest)}

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("stream closed")
        self.buffer += chunk

    def next_fields(self, deadline: float) -> dict[str, str]:
        """The next event's fields (``event``, ``id``, ``data``...; comments dropped)."""
        while b"\n\n" not in self.buffer:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            self._receive()
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        for line in block.decode().splitlines():
            if ":" in line and not line.startswith(":"):
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        return fields

    def events(self, count: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """The next ``count`` reading events (chunked encoding is undone loosely: the
        chunk-size lines never look like SSE fields)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < count:
            fields = self.next_fields(deadline)
            if fields.get("event") == "reading":
                found.append({**json.loads(fields["data"]), "event_id": int(fields["id"])})
        return found

    def close(self) -> None:
        self.sock.close()


def reading(value: float, ts: datetime, metric: str = "Temperature") -> tuple[str, bytes]:
    body = {metric: value, "ID": int(ts.timestamp() * 1000), "Timestamp": ts.isoformat()}
    return f"office/metrics/{metric}", json.dumps(body).encode()


def test_a_published_reading_arrives_as_an_event(serve, publisher):
    stream = EventStream(serve.base, "?metric=Temperature")
    try:
        assert stream.status_line.startswith("HTTP/1.1 200")
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-store"
        assert "content-security-policy" in stream.headers
        time.sleep(0.3)  # subscribed before the first publish
        now = datetime.now(UTC).replace(microsecond=0)
        publisher.publish(*reading(55.5, now, "Humidity"))  # filtered out
        publisher.publish(*reading(71.25, now))
        (event,) = stream.events(1)
    finally:
        stream.close()
    assert event["sensor"] == "default"
    assert event["metric"] == "Temperature"
    assert event["unit"] == "°F"
    assert event["value"] == 71.25
    assert event["ts"] == now.isoformat().replace("+00:00", "Z")
    assert event["id"] == int(now.timestamp() * 1000)  # the reading's ID
    assert event["event_id"] == int(now.timestamp() * 1_000_000)  # its time, µs
    assert event["anomaly"] is False


def test_a_reconnecting_client_gets_what_it_missed(serve, publisher):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    stream = EventStream(serve.base, "?metric=Temperature")
    time.sleep(0.3)
    publisher.publish(*reading(70.0, start))
    (first,) = stream.events(1)
    stream.close()
    for i in range(1, 4):  # while the page is away
        publisher.publish(*reading(70.0 + i, start + timedelta(seconds=15 * i)))
    wait_for(
        lambda: len(serve.json("/api/readings?metric=Temperature")["readings"]) == 4,
        15,
        "the missed readings to be stored",
    )
    resumed = EventStream(
        serve.base, "?metric=Temperature", {"Last-Event-ID": str(first["event_id"])}
    )
    try:
        # The replay reaches back by the accepted clock skew, so it repeats the reading the
        # page has (pages skip it), then brings the missed ones, then goes on live.
        replayed = resumed.events(4)
        publisher.publish(*reading(80.0, start + timedelta(minutes=1)))
        (live,) = resumed.events(1)
    finally:
        resumed.close()
    assert [e["value"] for e in replayed] == [70.0, 71.0, 72.0, 73.0]
    assert [e["event_id"] for e in replayed] == sorted(e["event_id"] for e in replayed)
    assert replayed[1]["mean"] == pytest.approx(70.5)  # statistics as if it had stayed
    assert live["value"] == 80.0


def test_replay_covers_a_sensor_whose_clock_runs_behind(serve, publisher):
    now = datetime.now(UTC).replace(microsecond=0)
    stream = EventStream(serve.base)
    time.sleep(0.3)
    publisher.publish(*reading(40.0, now + timedelta(minutes=20), "Humidity"))  # fast clock
    (ahead,) = stream.events(1)
    stream.close()
    publisher.publish(*reading(71.0, now))  # stamped 20 min before what the page last saw
    wait_for(
        lambda: serve.json("/api/readings?metric=Temperature")["readings"],
        15,
        "the reading to be stored",
    )
    resumed = EventStream(serve.base, f"?last_event_id={ahead['event_id']}")
    try:
        events = resumed.events(2)
    finally:
        resumed.close()
    assert sorted(e["value"] for e in events) == [40.0, 71.0]


def test_200_open_streams_leave_the_server_answering(serve, publisher):
    streams = [EventStream(serve.base) for _ in range(200)]
    try:
        assert all(s.status_line.startswith("HTTP/1.1 200") for s in streams)
        status, _ = serve.get("/api/series")
        assert status == 200
        status, _ = serve.get("/temperature")
        assert status == 200
        time.sleep(0.5)
        publisher.publish(*reading(68.5, datetime.now(UTC)))
        for stream in streams:
            (event,) = stream.events(1)
            assert event["value"] == 68.5
    finally:
        for stream in streams:
            stream.close()
    code = stop_process(serve.proc)
    assert code == 0, serve.log()


def test_shutdown_ends_open_streams(serve):
    streams = [EventStream(serve.base) for _ in range(5)]
    started = time.monotonic()
    code = stop_process(serve.proc, timeout_s=15)
    assert code == 0, serve.log()
    assert time.monotonic() - started < 10, "open streams held the shutdown"
    for stream in streams:
        with pytest.raises((ConnectionError, OSError)):
            stream.events(1, timeout_s=5)
        stream.close()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("?sensor=%00", "sensor"), ("?last_event_id=yesterday", "last_event_id")],
)
def test_bad_stream_parameters_are_400_naming_them(serve, query, parameter):
    status, body = serve.get(f"/api/stream{query}")
    assert status == 400
    assert json.loads(body)["parameter"] == parameter
