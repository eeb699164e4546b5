"""The JSON API over a real SQLite store."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest

from officesensor.analytics import RollingStats
from officesensor.models import Reading


def parse_ts(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text)


def test_series_is_empty_without_readings(client):
    response = client.get("/api/series")
    assert response.status_code == 200
    assert response.json == []


def test_series_lists_every_series_with_its_latest_reading(client, write_series):
    temperature = write_series("Temperature", [70.0, 71.5])
    write_series("CO2", [400.0], sensor="lab")
    body = client.get("/api/series").json
    assert body == [
        {
            "sensor": "default",
            "metric": "Temperature",
            "unit": "°F",
            "count": 2,
            "latest": {
                "id": 1,
                "ts": temperature[-1].ts.isoformat().replace("+00:00", "Z"),
                "value": 71.5,
            },
            "online": None,  # no ingest in this process: nobody heard the sensor's status
        },
        {
            "sensor": "lab",
            "metric": "CO2",
            "unit": "",
            "count": 1,
            "latest": body[1]["latest"],
            "online": None,
        },
    ]
    assert parse_ts(body[1]["latest"]["ts"]).utcoffset().total_seconds() == 0


def test_series_carry_the_sensors_own_status(settings, store, write_series):
    from officesensor.models import SensorStatus
    from officesensor.web import create_app
    from tests.web.conftest import FakeIngest, healthy_snapshot

    write_series("Temperature", [70.0], sensor="lab")
    write_series("Temperature", [70.0], sensor="attic")
    write_series("Temperature", [70.0], sensor="original")
    now = datetime.now(UTC)
    ingest = FakeIngest(
        healthy_snapshot(),
        statuses={
            "lab": SensorStatus("lab", True, now),
            "attic": SensorStatus("attic", False, now),
        },
    )
    client = create_app(settings, store, ingest).test_client()
    online = {s["sensor"]: s["online"] for s in client.get("/api/series").json}
    assert online == {"attic": False, "lab": True, "original": None}
    overview = client.get("/").text
    classes = dict(
        (sensor, cls.split())
        for cls, sensor in re.findall(r'<article class="([^"]*)" data-sensor="([^"]+)"', overview)
    )
    assert "offline" in classes["attic"]
    assert "offline" not in classes["lab"]
    assert "offline" not in classes["original"]  # unknown is not offline


def test_readings_are_the_latest_n_oldest_first_with_trailing_stats(client, write_series):
    readings = write_series("Temperature", count=80, spikes=(70,))
    body = client.get("/api/readings?metric=temperature&limit=25").json
    assert body["metric"] == "Temperature"
    assert body["sensor"] == "default"
    assert body["unit"] == "°F"
    assert (body["window"], body["z_threshold"]) == (10, 2.0)
    rows = body["readings"]
    assert [r["id"] for r in rows] == [r.reading_id for r in readings[-25:]]
    # An independent, incremental implementation over the whole history gives the same
    # numbers: each shown reading has its full trailing window, and nothing looks ahead.
    rolling = RollingStats(window=10, z_threshold=2.0)
    expected = [rolling.update(r.value) for r in readings][-25:]
    for row, stats in zip(rows, expected, strict=True):
        assert row["mean"] == pytest.approx(stats.mean)
        assert row["std"] == pytest.approx(stats.std)
        assert row["z"] == pytest.approx(stats.z)
        assert row["anomaly"] is stats.anomaly
    assert any(r["anomaly"] for r in rows)
    assert rows[70 - (80 - 25)]["anomaly"] is True  # the spike at index 70


def test_a_later_reading_does_not_change_earlier_statistics(client, write_series, store):
    readings = write_series("Temperature", count=40)
    before = client.get("/api/readings?metric=Temperature&limit=40").json["readings"]
    last = readings[-1]
    spike = Reading("default", "Temperature", 999, last.ts.replace(second=59), 200.0)
    store.write_many([spike])
    after = client.get("/api/readings?metric=Temperature&limit=41").json["readings"]
    assert after[:-1] == before
    assert after[-1]["anomaly"] is True


def test_readings_default_limit_is_100(client, write_series):
    write_series("Humidity", count=130, base=40.0)
    assert len(client.get("/api/readings?metric=Humidity").json["readings"]) == 100


def test_undefined_statistics_are_null_never_nan(client, write_series):
    write_series("Pressure", [1013.0, 1013.0, 1013.0])
    response = client.get("/api/readings?metric=Pressure")
    assert b"NaN" not in response.data
    assert b"Infinity" not in response.data
    first, second, _ = response.json["readings"]
    assert first["std"] is None
    assert first["z"] is None
    assert second["std"] == 0.0
    assert second["z"] is None
    assert not any(r["anomaly"] for r in response.json["readings"])


def test_readings_of_a_known_metric_without_data(client):
    body = client.get("/api/readings?metric=Humidity").json
    assert body["sensor"] is None
    assert body["readings"] == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "metric"),
        ("metric=", "metric"),
        ("metric=Temperature&limit=abc", "limit"),
        ("metric=Temperature&limit=0", "limit"),
        ("metric=Temperature&limit=-5", "limit"),
        ("metric=Temperature&limit=10001", "limit"),
        ("metric=Temperature&limit=1.5", "limit"),
        ("metric=Temperature&limit=" + "9" * 5000, "limit"),
        ("metric=Temperature&limit=%EF%BC%95", "limit"),  # a full-width digit
        ("metric=" + "T" * 300, "metric"),
        ("metric=Temp%00", "metric"),
        ("metric=Temperature&sensor=a%0Ab", "sensor"),
    ],
)
def test_invalid_readings_parameters_are_400_naming_the_parameter(client, query, parameter):
    response = client.get(f"/api/readings?{query}")
    assert response.status_code == 400
    assert response.json["parameter"] == parameter
    assert response.json["error"]


def test_limit_bounds_are_accepted(client, write_series):
    write_series("Temperature", count=3)
    assert client.get("/api/readings?metric=Temperature&limit=1").status_code == 200
    assert client.get("/api/readings?metric=Temperature&limit=10000").status_code == 200


def test_unknown_metric_or_sensor_is_404_naming_it(client, write_series):
    write_series("Temperature", count=3)
    response = client.get("/api/readings?metric=Radiation")
    assert (response.status_code, response.json["parameter"]) == (404, "metric")
    response = client.get("/api/readings?metric=Temperature&sensor=nobody")
    assert (response.status_code, response.json["parameter"]) == (404, "sensor")


def test_ingest_is_404_json_when_ingest_runs_elsewhere(client):
    response = client.get("/api/ingest")
    assert response.status_code == 404
    assert response.is_json
    assert "error" in response.json


def test_ingest_snapshot_as_json(client_with_ingest):
    body = client_with_ingest(backlog=5).get("/api/ingest").json
    assert body["connected"] is True
    assert body["backlog"] == 5
    assert body["rejected"] == {"not_json": 3, "out_of_range": 2}
    assert body["last_error"] is None


def test_conflicts_lists_the_readings_that_lost(client, write_series, store):
    original = write_series("Temperature", [70.0])[0]
    loser = Reading(original.sensor, original.metric, original.reading_id, original.ts, 99.0)
    assert store.write_many([loser]).conflicts == 1
    body = client.get("/api/conflicts").json
    assert body == [
        {
            "sensor": "default",
            "metric": "Temperature",
            "id": original.reading_id,
            "ts": original.ts.isoformat().replace("+00:00", "Z"),
            "value": 99.0,
        }
    ]
    assert client.get("/api/conflicts?limit=0").json["parameter"] == "limit"


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404
    assert response.is_json
    assert response.json["error"]


def test_api_never_writes_nan_even_for_odd_values(client, write_series):
    write_series("Temperature", [1e308, -1e308, 1e308])
    response = client.get("/api/readings?metric=Temperature")
    assert response.status_code == 200
    for row in response.json["readings"]:
        for key in ("mean", "std", "z"):
            assert row[key] is None or math.isfinite(row[key])


def test_quarantine_lists_rejected_messages_newest_first(settings, store):
    from datetime import UTC, datetime

    from officesensor.models import QuarantinedMessage, RejectReason
    from officesensor.web import create_app
    from tests.web.conftest import FakeIngest, healthy_snapshot

    kept = [
        QuarantinedMessage(
            received=datetime(2026, 1, 1, 12, 0, second, tzinfo=UTC),
            topic="office/metrics/<b>",
            reason=RejectReason.BAD_METRIC_NAME,
            detail="metric <b> is not a plain name",
            payload_bytes=12,
            payload_preview='{"\\x00": 1}',
        )
        for second in (2, 1)
    ]
    client = create_app(settings, store, FakeIngest(healthy_snapshot(), kept)).test_client()
    body = client.get("/api/quarantine?limit=1").json
    assert body == [
        {
            "received": "2026-01-01T12:00:02Z",
            "topic": "office/metrics/<b>",
            "reason": "bad_metric_name",
            "detail": "metric <b> is not a plain name",
            "payload_bytes": 12,
            "payload_preview": '{"\\x00": 1}',
        }
    ]
    assert client.get("/api/quarantine?limit=0").status_code == 400


def test_quarantine_is_404_json_when_ingest_runs_elsewhere(client):
    response = client.get("/api/quarantine")
    assert response.status_code == 404
    assert response.is_json
