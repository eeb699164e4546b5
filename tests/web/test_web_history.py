"""Ranges over the JSON API: chart buckets, interval statistics, anomalies and the CSV export,
all checked against the raw readings they summarise."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from officesensor.models import AnomalyRecord


@pytest.fixture
def now() -> datetime:
    """This test's now: coverage is counted up to the real now, so series are placed
    relative to the moment the test runs, not to when the module was imported."""
    return datetime.now(UTC).replace(microsecond=0)


def test_chart_buckets_summarise_the_readings_exactly(now, client, write_series):
    readings = write_series("Temperature", count=300, start=now - timedelta(minutes=80))
    body = client.get("/api/chart?metric=Temperature&range=24h&buckets=100").json
    assert body["bucket_s"] == 900  # 24 h / 100 -> the next nice width, 15 min
    points = body["points"]
    assert sum(points["count"]) == len(readings)
    for i, start_ms in enumerate(points["t"]):
        inside = [r.value for r in readings if start_ms <= r.ts_us / 1000 < start_ms + 900_000]
        assert points["count"][i] == len(inside)
        assert points["min"][i] == min(inside)
        assert points["max"][i] == max(inside)
        assert points["mean"][i] == pytest.approx(np.mean(inside), rel=1e-12)
    assert points["t"] == sorted(points["t"])
    assert body["gap_s"] >= 1800


def test_stats_are_exact_for_short_intervals_and_name_every_interval(now, client, write_series):
    readings = write_series("Temperature", count=200, start=now - timedelta(minutes=50))
    body = client.get("/api/stats?metric=Temperature&range=24h").json
    assert [i["name"] for i in body["intervals"]] == ["1h", "24h", "7d", "30d", "1y", "selected"]
    assert body["cadence_s"] == 15.0
    values = np.array([r.value for r in readings])
    for interval in body["intervals"]:
        assert interval["count"] == len(values)
        assert interval["quantile_error"] == 0.0
        assert interval["min"] == values.min()
        assert interval["max"] == values.max()
        assert interval["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert interval["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        for key, q in (("q25", 0.25), ("median", 0.5), ("q75", 0.75)):
            assert interval[key] == pytest.approx(np.quantile(values, q), rel=1e-12)
    hour = body["intervals"][0]
    assert hour["coverage"] == pytest.approx(1.0, abs=0.03)  # 15 s cadence, nothing missing


def test_coverage_counts_missing_readings(now, client, write_series):
    write_series("Temperature", count=120, start=now - timedelta(minutes=59))
    # 30 min of readings every 15 s, then silence: half of what was expected since the first
    body = client.get("/api/stats?metric=Temperature&range=1h").json
    assert body["intervals"][0]["coverage"] == pytest.approx(0.5, abs=0.02)


def test_stats_of_a_custom_range(now, client, write_series):
    readings = write_series("Temperature", count=100, start=now - timedelta(hours=3))
    start, end = readings[10].ts, readings[30].ts
    query = f"start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B")
    body = client.get(f"/api/stats?metric=Temperature&{query}").json
    selected = body["intervals"][-1]
    assert selected["name"] == "selected"
    assert selected["count"] == 20
    assert selected["start"] == start.isoformat().replace("+00:00", "Z")


def test_anomalies_newest_first_within_the_range(now, client, write_series, store):
    readings = write_series(
        "Temperature", count=200, spikes=(50, 150), start=now - timedelta(hours=1)
    )
    body = client.get("/api/anomalies?metric=Temperature&range=1h").json
    times = [a["ts"] for a in body["anomalies"]]
    assert times == sorted(times, reverse=True)
    spiked = {readings[50].reading_id, readings[150].reading_id}
    assert spiked <= {a["id"] for a in body["anomalies"]}
    store.record_anomalies([AnomalyRecord(readings[50], 72.0, 0.5, 9.0)])  # again: kept once
    again = client.get("/api/anomalies?metric=Temperature&range=1h").json["anomalies"]
    assert len(again) == len(body["anomalies"])


def test_csv_export_matches_the_api_value_for_value(now, client, write_series):
    write_series("Temperature", count=150, spikes=(70,), start=now - timedelta(minutes=40))
    api = client.get("/api/readings?metric=Temperature&range=1h&limit=10000").json["readings"]
    response = client.get("/api/export.csv?metric=Temperature&range=1h")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(api) == 150
    for row, item in zip(rows, api, strict=True):
        assert row["time"] == item["ts"]
        assert int(row["id"]) == item["id"]
        assert float(row["value"]) == item["value"]
        for key in ("mean", "std", "z"):
            assert (float(row[key]) if row[key] else None) == item[key]
        assert (row["anomaly"] == "true") == item["anomaly"]


def test_csv_export_streams_in_chunks_with_windows_across_them(now, store, settings, write_series):
    from officesensor.web.history import csv_lines

    readings = write_series("Temperature", count=95, start=now - timedelta(minutes=30))
    whole = "".join(
        csv_lines(store, "default", "Temperature", readings[0].ts, now, settings.window, 2.0)
    )
    chunked = list(
        csv_lines(store, "default", "Temperature", readings[0].ts, now, settings.window, 2.0, 7)
    )
    assert len(chunked) == 1 + 14  # header, then 95 rows in chunks of 7
    assert "".join(chunked) == whole


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/chart?metric=Temperature&range=2w", "range"),
        ("/api/chart?metric=Temperature&buckets=5", "buckets"),
        ("/api/stats?metric=Temperature&start=2024-05-01T00:00:00Z", "end"),
        ("/api/stats?metric=Temperature&end=2024-05-01T00:00:00Z", "start"),
        ("/api/stats?metric=Temperature&start=soon&end=2024-05-01", "start"),
        ("/api/readings?metric=Temperature&range=1h&start=2024-05-01&end=2024-05-02", "range"),
        ("/api/anomalies?metric=Temperature&start=2024-05-02&end=2024-05-01", "end"),
        ("/api/export.csv?metric=Temperature&start=0001-01-01&end=2024-05-01", "start"),
        ("/api/export.csv?range=1h", "metric"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client, write_series, url, parameter):
    write_series("Temperature", count=5)
    response = client.get(url)
    assert response.status_code == 400, response.text
    assert response.json["parameter"] == parameter


def test_a_metric_without_readings_answers_empty(client):
    chart = client.get("/api/chart?metric=Humidity&range=7d").json
    assert chart["sensor"] is None
    assert chart["points"]["t"] == []
    assert client.get("/api/stats?metric=Humidity").json["intervals"] == []
    assert client.get("/api/export.csv?metric=Humidity").text.startswith("time,id,value")


def test_approximate_quartiles_state_their_bound_and_keep_it(now, tmp_path, settings):
    from officesensor.models import Reading
    from officesensor.store.sqlite import SqliteStore
    from officesensor.web import create_app

    store = SqliteStore(tmp_path / "small-exact.db", exact_limit=100)  # rollups beyond 100
    try:
        rng = np.random.default_rng(3)
        values = np.round(70 + rng.normal(0, 2, 3000), 6)
        start = now - timedelta(hours=12, seconds=7)
        store.write_many(
            [
                Reading("default", "Temperature", i, start + timedelta(seconds=13 * i), float(v))
                for i, v in enumerate(values)
            ]
        )
        client = create_app(settings, store).test_client()
        body = client.get("/api/stats?metric=Temperature&range=24h").json
    finally:
        store.close()
    day = body["intervals"][1]
    assert day["name"] == "24h"
    assert day["count"] == len(values)
    assert day["min"] == values.min()
    assert day["max"] == values.max()
    assert day["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert day["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert 0 < day["quantile_error"] <= 0.0051
    for key, q in (("q25", 0.25), ("median", 0.5), ("q75", 0.75)):
        assert abs(day[key] - np.quantile(values, q)) <= day["quantile_error"]


@pytest.mark.parametrize(("method", "flagged"), [("zscore", False), ("zscore-previous", True)])
def test_the_anomaly_method_setting_reaches_pages_api_and_csv(
    now, tmp_path, settings, method, flagged
):
    """At W=10 the original's z can never reach 2.9 ((W-1)/sqrt(W) = 2.85): a spike that
    the previous-window z-score flags stays unflagged by it, everywhere alike."""
    from officesensor.live import LiveAnalytics, write_and_flag
    from officesensor.models import Reading
    from officesensor.store.sqlite import SqliteStore
    from officesensor.web import create_app

    chosen = settings.replace(window=10, z=2.9, anomaly_method=method)
    store = SqliteStore(tmp_path / f"{method}.db")
    try:
        start = now - timedelta(minutes=30)
        values = [70.0 + 0.01 * (i % 3) for i in range(60)]
        values[45] = 80.0
        readings = [
            Reading("default", "Temperature", i, start + timedelta(seconds=15 * i), v)
            for i, v in enumerate(values)
        ]
        analytics = LiveAnalytics(store, chosen.window, chosen.z, chosen.anomaly_method)
        write_and_flag(store, readings, analytics)  # as ingest would, with the chosen method
        client = create_app(chosen, store).test_client()
        api = client.get("/api/readings?metric=Temperature&range=1h&limit=1000").json
        rows = list(
            csv.DictReader(io.StringIO(client.get("/api/export.csv?metric=Temperature").text))
        )
        stored = client.get("/api/anomalies?metric=Temperature&range=1h").json["anomalies"]
    finally:
        store.close()
    assert api["readings"][45]["anomaly"] is flagged
    assert (rows[45]["anomaly"] == "true") is flagged
    assert ([a["id"] for a in stored] == [45]) is flagged
