"""/healthz, /readyz and /metrics through the Flask test client, over a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from officesensor.histogram import Histogram
from officesensor.models import RejectReason
from officesensor.web import create_app
from officesensor.web.exposition import Family
from officesensor.web.httpmetrics import ROUTE_KEY, UNMATCHED
from officesensor.web.ops import READY_MAX_BACKLOG, add_metrics_source, ops_state
from tests.prometheus import parse

# ----------------------------------------------------------------------------- /healthz


def test_healthz_is_ok_without_ingest(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_healthz_stays_ok_while_broker_and_store_are_down(client_with_ingest, store):
    client = client_with_ingest(connected=False, store_ok=False)
    store.close()
    response = client.get("/healthz")
    assert response.status_code == 200  # liveness: restarting would not help
    assert response.json == {"status": "ok"}


# ----------------------------------------------------------------------------- /readyz


def test_readyz_ok_without_ingest(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "store": "ok", "ingest": "not in this process"}


def test_readyz_ok_with_connected_ingest(client_with_ingest):
    response = client_with_ingest(backlog=READY_MAX_BACKLOG - 1).get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "store": "ok", "ingest": "connected"}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"connected": False}, "not connected"),
        ({"store_ok": False}, "cannot write to the store"),
        ({"backlog": READY_MAX_BACKLOG}, f"{READY_MAX_BACKLOG} messages waiting"),
    ],
)
def test_readyz_503_when_ingest_is_not_ready(client_with_ingest, changes, words):
    response = client_with_ingest(**changes).get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unhealthy"
    assert words in response.json["reason"]


def test_readyz_503_when_the_store_does_not_answer_says_nothing_private(client, store, tmp_path):
    store.close()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unhealthy", "reason": "store: does not answer"}
    assert str(tmp_path) not in response.text


# ----------------------------------------------------------------------------- /metrics


def test_metrics_without_ingest_has_process_series_and_http_only(client, write_series):
    newest = write_series("Temperature", count=12)[-1]
    response = client.get("/metrics")
    scraped = datetime.now(UTC)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse(response.text)
    assert set(families) == {
        "officesensor_build_info",
        "officesensor_process_start_time_seconds",
        "officesensor_process_uptime_seconds",
        "officesensor_store_up",
        "officesensor_series",
        "officesensor_series_readings",
        "officesensor_series_last_reading_age_seconds",
        "officesensor_http_request_duration_seconds",
    }
    assert families["officesensor_series_readings"].values() == {
        (("metric", "Temperature"), ("sensor", "default")): 12.0
    }
    # write_series starts an hour ago, 15 s apart: the newest reading is 3,435 s old.
    age = families["officesensor_series_last_reading_age_seconds"].value(
        sensor="default", metric="Temperature"
    )
    assert 0 <= (scraped - newest.ts).total_seconds() - age < 60
    assert families["officesensor_store_up"].value() == 1
    assert families["officesensor_http_request_duration_seconds"].kind == "histogram"
    start = families["officesensor_process_start_time_seconds"].value()
    assert families["officesensor_process_uptime_seconds"].value() >= 0
    assert start > 1.7e9


def test_metrics_with_ingest_parses_and_counts(client_with_ingest, write_series):
    write_series("Temperature", count=3)
    families = parse(client_with_ingest(connected=False).get("/metrics").text)
    single = {
        name: family.samples[0][2] for name, family in families.items() if len(family.samples) == 1
    }
    assert single["officesensor_ingest_received_total"] == 120
    assert single["officesensor_ingest_stored_total"] == 110
    assert single["officesensor_ingest_duplicates_total"] == 4
    assert single["officesensor_ingest_conflicts_total"] == 1
    assert single["officesensor_ingest_backlog"] == 0
    assert single["officesensor_ingest_store_writable"] == 1
    assert single["officesensor_mqtt_connected"] == 0
    assert single["officesensor_mqtt_reconnects_total"] == 2
    assert single["officesensor_anomalies_total"] == 7
    rejected = {
        labels["reason"]: value
        for _, labels, value in families["officesensor_ingest_rejected_total"].samples
    }
    assert set(rejected) == {reason.value for reason in RejectReason}  # zeros included
    assert rejected["not_json"] == 3
    assert rejected["out_of_range"] == 2
    assert sum(rejected.values()) == 5
    assert families["officesensor_ingest_received_total"].kind == "counter"


def test_metrics_escapes_label_values(client, write_series):
    awkward = 'a"b\\c\nd°'
    write_series("Humidity", count=2, sensor=awkward)
    text = client.get("/metrics").text
    assert 'sensor="a\\"b\\\\c\\nd°"' in text
    family = parse(text)["officesensor_series_readings"]
    assert family.samples == [
        ("officesensor_series_readings", {"sensor": awkward, "metric": "Humidity"}, 2)
    ]


def test_metrics_of_an_empty_store_is_still_valid(client):
    families = parse(client.get("/metrics").text)
    assert families["officesensor_series"].value() == 0
    assert families["officesensor_series_readings"].samples == []


def test_metrics_asks_the_store_once_and_is_bounded_by_max_series(
    settings, store, write_series, monkeypatch
):
    for i in range(5):
        write_series("Temperature", count=2, sensor=f"s{i}")
    calls = []
    series = store.series
    monkeypatch.setattr(store, "series", lambda: calls.append(1) or series())
    client = create_app(settings.replace(ingest_max_series=3), store).test_client()
    families = parse(client.get("/metrics").text)
    assert len(calls) == 1
    assert families["officesensor_series"].value() == 5
    assert len(families["officesensor_series_readings"].samples) == 3
    assert len(families["officesensor_series_last_reading_age_seconds"].samples) == 3


def test_metrics_still_answer_when_the_store_does_not(client_with_ingest, store):
    client = client_with_ingest(store_ok=False)
    store.close()
    response = client.get("/metrics")
    assert response.status_code == 200
    families = parse(response.text)
    assert families["officesensor_store_up"].value() == 0
    assert families["officesensor_ingest_store_writable"].value() == 0
    assert families["officesensor_ingest_received_total"].value() == 120


def test_extra_metric_sources_are_added_and_a_bad_one_is_left_out(app, client, caplog):
    histogram = Histogram([1.0])
    histogram.observe(0.5)

    def alerts() -> list[Family]:
        return [
            Family.counter(
                "officesensor_alerts_fired_total", "Alerts fired.", [({"rule": 'x"y'}, 2)]
            ),
            Family.histogram(
                "officesensor_alert_delivery_seconds", "Delivery.", [({}, histogram.snapshot())]
            ),
        ]

    def broken() -> list[Family]:
        raise RuntimeError("boom")

    def clashing() -> list[Family]:
        return [Family.gauge("officesensor_series", "Mine!", [({}, 1)])]

    def lines() -> list[str]:  # finished exposition lines are accepted too
        return [
            "# HELP officesensor_alerts_firing Alerts firing now.",
            "# TYPE officesensor_alerts_firing gauge",
            'officesensor_alerts_firing{severity="critical"} 1',
        ]

    def forging() -> list[str]:
        return ["# TYPE officesensor_forged gauge", "officesensor_forged 1\nofficesensor_x 2"]

    for source in (broken, alerts, clashing, lines, forging):
        add_metrics_source(app, source)
    response = client.get("/metrics")
    assert response.status_code == 200
    families = parse(response.text)
    assert families["officesensor_alerts_fired_total"].value(rule='x"y') == 2
    assert families["officesensor_alert_delivery_seconds"].histogram().count == 1
    assert families["officesensor_alerts_firing"].value(severity="critical") == 1
    assert families["officesensor_series"].help == "Series (sensor, metric) in the store."
    assert "officesensor_forged" not in families
    failures = [r for r in caplog.records if "left out" in r.getMessage()]
    assert len(failures) == 3


# ----------------------------------------------------------------------------- route labels


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/temperature", "/<metric>"),
        ("/no-such-metric", "/<metric>"),  # the page answers 404, the rule still matched
        ("/api/readings?metric=Temperature", "/api/readings"),
        ("/healthz", "/healthz"),
        ("/static/officesensor.css", "/static/<path:filename>"),
        ("/api/no/such/thing", UNMATCHED),
    ],
)
def test_the_route_template_reaches_the_asgi_scope(client, write_series, path, route):
    write_series("Temperature", count=12)
    scope: dict[str, object] = {}
    client.get(path, environ_overrides={"asgi.scope": scope}).close()  # a file stays open
    assert scope[ROUTE_KEY] == route


def test_the_http_histogram_shows_what_the_middleware_measured(app, client):
    ops_state(app).http.observe("GET", "/<metric>", 200, 0.02)
    ops_state(app).http.observe("BREW", "/<metric>", 418, 0.02)
    family = parse(client.get("/metrics").text)["officesensor_http_request_duration_seconds"]
    assert family.histogram(method="GET", route="/<metric>", status="2xx").count == 1
    assert family.histogram(method="other", route="/<metric>", status="4xx").count == 1
