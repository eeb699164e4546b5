"""The whole pipeline on real components: a broker (Mosquitto over MQTT 5 and 3.1.1, and the
embedded broker), ``officesensor serve`` as a subprocess, readings read back over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.integration.conftest import Publisher, Server, wait_for

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")


def original_payloads(count: int, start: datetime) -> list[tuple[str, bytes]]:
    """Exactly what the original sensor sends: counter IDs from 0, naive local timestamps."""
    messages = []
    for i in range(count):
        naive = str((start + timedelta(seconds=15 * i)).astimezone(BERLIN).replace(tzinfo=None))
        for metric, value in (
            ("Temperature", 70.0 + i / 10),
            ("Humidity", 40.0 + i / 10),
            ("Pressure", 1010.0 + i / 10),
        ):
            body = {metric: value, "ID": i, "Timestamp": naive}
            messages.append((f"office/metrics/{metric}", json.dumps(body).encode()))
    return messages


def our_payloads(count: int, start: datetime) -> list[tuple[str, bytes]]:
    messages = []
    for i in range(count):
        ts = start + timedelta(seconds=15 * i, milliseconds=500)
        body = {
            "Temperature": 71.5 + i / 100,
            "ID": int(ts.timestamp() * 1000),
            "Timestamp": ts.astimezone(BERLIN).isoformat(),
            "Sensor": "kitchen",
        }
        messages.append(("office/metrics/Temperature", json.dumps(body).encode()))
    return messages


INVALID: list[tuple[str, bytes, str]] = [
    ("office/metrics/Temperature", b"not json", "not_json"),
    ("office/metrics/Temperature", b"\xff\xfe", "not_utf8"),
    (
        "office/metrics/Temperature",
        b'{"Temperature": NaN, "ID": 1, "Timestamp": "2024-01-01T00:00:00Z"}',
        "non_finite",
    ),
    (
        "office/metrics/Temperature",
        b'{"Temperature": 1e999, "ID": 1, "Timestamp": "2024-01-01T00:00:00Z"}',
        "non_finite",
    ),
    (
        "office/metrics/Temperature",
        b'{"Temperature": "hot", "ID": 1, "Timestamp": "2024-01-01T00:00:00Z"}',
        "bad_value_type",
    ),
    (
        "office/metrics/Temperature",
        b'{"Temperature": 70, "Timestamp": "2024-01-01T00:00:00Z"}',
        "missing_id",
    ),
    (
        "office/metrics/Temperature",
        b'{"Temperature": 70, "ID": 1, "Timestamp": "1970-01-01T00:00:00Z"}',
        "timestamp_too_old",
    ),
    ("office/metrics/Temperature", b"[" * 5000 + b"]" * 5000, "too_deep"),
    (
        "office/metrics/Temperature",
        b'{"Temperature": 70, "Temperature": 71, "ID": 1, "Timestamp": "2024-01-01T00:00:00Z"}',
        "duplicate_key",
    ),
    (
        "office/metrics/<script>",
        b'{"<script>": 1, "ID": 1, "Timestamp": "2024-01-01T00:00:00Z"}',
        "bad_metric_name",
    ),
    ("office/metrics/Temperature", b" " * 20_000, "too_large"),
]


def ingest_settled(server: Server, expected_received: int) -> dict[str, object]:
    def check() -> dict[str, object] | None:
        snapshot = server.json("/api/ingest")
        if snapshot["received"] >= expected_received and snapshot["backlog"] == 0:
            return snapshot  # type: ignore[no-any-return]
        return None

    return wait_for(check, 30, f"ingest to handle {expected_received} messages")  # type: ignore[no-any-return]


def test_every_valid_reading_stored_once_and_every_invalid_one_counted(
    serve: Server, publisher: Publisher
) -> None:
    start = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=1)
    original = original_payloads(30, start)
    ours = our_payloads(20, start)
    for topic, payload in original + ours:
        publisher.publish(topic, payload)
    for topic, payload, _reason in INVALID:
        publisher.publish(topic, payload)

    total = len(original) + len(ours) + len(INVALID)
    snapshot = ingest_settled(serve, total)
    assert snapshot["stored"] == len(original) + len(ours)
    assert snapshot["duplicates"] == 0
    expected_rejections: dict[str, int] = {}
    for _topic, _payload, reason in INVALID:
        expected_rejections[reason] = expected_rejections.get(reason, 0) + 1
    assert snapshot["rejected"] == expected_rejections

    series = {(s["sensor"], s["metric"]): s for s in serve.json("/api/series")}
    assert series[("default", "Temperature")]["count"] == 30
    assert series[("default", "Humidity")]["count"] == 30
    assert series[("default", "Pressure")]["count"] == 30
    assert series[("kitchen", "Temperature")]["count"] == 20

    readings = serve.json("/api/readings?metric=Temperature&sensor=default&limit=1000")
    readings = readings["readings"] if isinstance(readings, dict) else readings
    assert [r["id"] for r in readings] == list(range(30))
    # The naive Berlin-local timestamps were read in the configured zone and stored as UTC.
    first = datetime.fromisoformat(readings[0]["ts"].replace("Z", "+00:00"))
    assert first == start
    assert [r["value"] for r in readings] == pytest.approx([70.0 + i / 10 for i in range(30)])

    status, page = serve.get("/temperature")
    assert status == 200
    assert b"Temperature" in page
    status, page = serve.get("/temperature?sensor=kitchen")
    assert status == 200
    assert b"kitchen" in page
    status, overview = serve.get("/")
    assert status == 200
    assert b"kitchen" in overview

    status, metrics = serve.get("/metrics")
    assert status == 200
    assert b'officesensor_ingest_rejected_total{reason="too_deep"} 1' in metrics


def test_the_same_message_twice_is_stored_once(serve: Server, publisher: Publisher) -> None:
    body = json.dumps(
        {"Humidity": 41.25, "ID": 7, "Timestamp": "2024-05-01 12:00:00.000001"}
    ).encode()
    publisher.publish("office/metrics/Humidity", body)
    publisher.publish("office/metrics/Humidity", body)

    snapshot = ingest_settled(serve, 2)
    assert snapshot["stored"] == 1
    assert snapshot["duplicates"] == 1
    readings = serve.json("/api/readings?metric=Humidity&sensor=default&limit=100")
    readings = readings["readings"] if isinstance(readings, dict) else readings
    assert [(r["id"], r["value"]) for r in readings] == [(7, 41.25)]
