"""Operations on real processes: Mosquitto on a free port, ``officesensor serve`` with JSON
logs, /metrics scraped over HTTP and read by a strict parser, the broker killed and
restarted under it, /healthz and /readyz watched throughout."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from officesensor.models import RejectReason
from tests.integration.conftest import (
    Publisher,
    Server,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)
from tests.prometheus import MetricFamily, parse

pytestmark = pytest.mark.integration

# Mosquitto refuses C0 and C1 controls in topics; a line separator gets through.
HOSTILE_TOPIC = "office/metrics/Temp\u2028officesensor: forged line"


def scrape(server: Server) -> dict[str, MetricFamily]:
    status, body = server.get("/metrics")
    assert status == 200
    return parse(body.decode())


def reading(i: int, now: datetime) -> bytes:
    ts = now - timedelta(seconds=15 * (10 - i))
    body = {
        "Temperature": 71.0 + i / 10,
        "ID": int(ts.timestamp() * 1000),
        "Timestamp": ts.isoformat(),
        "Sensor": "kitchen",
    }
    return json.dumps(body).encode()


def http_count(families: dict[str, MetricFamily], method: str, route: str, status: str) -> float:
    family = families["officesensor_http_request_duration_seconds"]
    if {"method": method, "route": route, "status": status} not in family.label_sets("_count"):
        return 0
    return family.histogram(method=method, route=route, status=status).count


def test_metrics_readiness_and_json_logs_through_a_broker_outage(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    server = start_serve(broker, tmp_path / "serve", OFFICESENSOR_LOG_FORMAT="json")
    publisher = Publisher(broker)
    try:
        # ---- ingest counters and the store write histogram
        now = datetime.now(UTC)
        good = [reading(i, now) for i in range(5)]
        for payload in good:
            publisher.publish("office/metrics/Temperature", payload)
        publisher.publish("office/metrics/Temperature", good[0])  # a redelivery, in effect
        publisher.publish("office/metrics/Temperature", b"not json")
        publisher.publish(HOSTILE_TOPIC, b'{"Temperature": 1}')
        sent = len(good) + 3

        def settled() -> dict[str, MetricFamily] | None:
            families = scrape(server)
            handled = families["officesensor_ingest_received_total"].value() == sent
            idle = families["officesensor_ingest_backlog"].value() == 0
            return families if handled and idle else None

        families = wait_for(settled, 20, "ingest to handle every message")
        assert families["officesensor_ingest_stored_total"].value() == 5
        assert families["officesensor_ingest_duplicates_total"].value() == 1
        assert families["officesensor_ingest_conflicts_total"].value() == 0
        rejected = families["officesensor_ingest_rejected_total"]
        assert {labels["reason"] for labels in rejected.label_sets()} == {
            r.value for r in RejectReason
        }
        assert rejected.value(reason="not_json") == 1
        assert rejected.value(reason="bad_metric_name") == 1
        assert sum(rejected.values().values()) == 2
        writes = families["officesensor_store_write_duration_seconds"].histogram()
        assert 1 <= writes.count <= 6  # each committed batch holding a reading, at most one each
        assert writes.sum > 0
        assert (
            families["officesensor_series_readings"].value(sensor="kitchen", metric="Temperature")
            == 5
        )
        age = families["officesensor_series_last_reading_age_seconds"].value(
            sensor="kitchen", metric="Temperature"
        )
        assert 15 <= age < 15 + 120  # the newest reading was stamped 15 s before `now`
        assert families["officesensor_mqtt_connected"].value() == 1
        up_since = families["officesensor_mqtt_connection_changed_timestamp_seconds"].value()
        assert families["officesensor_process_uptime_seconds"].value() > 0

        # ---- the HTTP histogram: route templates, unknown paths, the live stream
        assert server.get("/temperature")[0] == 200
        assert server.get("/no-such-metric")[0] == 404
        assert server.get("/api/no/such/thing")[0] == 404
        assert server.get("/static/officesensor.css")[0] == 200
        with urllib.request.urlopen(server.base + "/api/stream", timeout=5) as stream:
            assert stream.status == 200
            assert stream.readline().startswith(b"retry:")
        expected = {
            ("GET", "/<metric>", "2xx"): 1,
            ("GET", "/<metric>", "4xx"): 1,  # the rule matched; the page said 404
            ("GET", "unmatched", "4xx"): 1,
            ("GET", "/static/<path:filename>", "2xx"): 1,
            ("GET", "/api/stream", "2xx"): 1,
        }

        def counted() -> dict[str, MetricFamily] | None:
            # A request is observed when the app has finished with it, which may be a moment
            # after its client has the last byte: poll.
            families = scrape(server)
            seen = {key: http_count(families, *key) for key in expected}
            return families if seen == expected else None

        families = wait_for(counted, 10, f"the HTTP histogram to count {expected}")
        assert http_count(families, "GET", "/metrics", "2xx") >= 1
        assert http_count(families, "GET", "/readyz", "2xx") >= 1
        routes = {
            labels["route"]
            for labels in families["officesensor_http_request_duration_seconds"].label_sets(
                "_count"
            )
        }
        assert not any("no-such" in route or "thing" in route for route in routes)

        # ---- the broker dies: not ready, still alive; it comes back: ready again
        publisher.close()
        broker.proc.kill()
        broker.proc.wait()
        wait_for(lambda: server.get("/readyz")[0] == 503, 15, "/readyz to turn 503")
        _, body = server.get("/readyz")
        assert json.loads(body) == {
            "status": "unhealthy",
            "reason": "ingest: not connected and subscribed to the MQTT broker",
        }
        assert server.get("/healthz") == (200, b'{"status":"ok"}\n')
        families = scrape(server)
        assert families["officesensor_mqtt_connected"].value() == 0
        down_since = families["officesensor_mqtt_connection_changed_timestamp_seconds"].value()
        assert down_since > up_since
        assert down_since <= time.time()

        broker = start_mosquitto(tmp_path / "mosquitto", port=broker.port)
        wait_for(lambda: server.get("/readyz")[0] == 200, 30, "/readyz to recover")
        families = scrape(server)
        assert families["officesensor_mqtt_connected"].value() == 1
        assert families["officesensor_mqtt_reconnects_total"].value() >= 1
        assert families["officesensor_mqtt_connection_changed_timestamp_seconds"].value() > (
            down_since
        )
        publisher = Publisher(broker)
        publisher.publish("office/metrics/Temperature", reading(9, datetime.now(UTC)))
        wait_for(
            lambda: scrape(server)["officesensor_ingest_stored_total"].value() == 6,
            20,
            "a reading stored after the outage",
        )
    finally:
        publisher.close()
        code = stop_process(server.proc)
        stop_process(broker.proc)
    assert code == 0, server.log()

    # ---- every line the process wrote is one JSON object
    lines = (tmp_path / "serve" / "serve.log").read_text(encoding="utf-8").splitlines()
    events = []
    for line in lines:
        event = json.loads(line)  # fails on any line that is not JSON
        assert "\\u001b" not in line  # no terminal colour codes (uvicorn's color_message)
        assert set(event) >= {"time", "level", "logger", "message"}, line
        assert datetime.fromisoformat(event["time"]).utcoffset() == timedelta(0)
        events.append(event)
    messages = [event["message"] for event in events]
    assert any(m.startswith("Office Sensor dashboard: http://") for m in messages)
    forged = [m for m in messages if "bad_metric_name" in m]
    assert len(forged) == 1
    assert "\u2028" not in forged[0]  # escaped by ingest
    assert "Temp\\u2028officesensor" in forged[0]
    assert any(e["level"] == "WARNING" and "disconnected" in e["message"] for e in events)
