"""/alerts, /api/alerts and acknowledgement, over a real alert state file read by a (not
started) AlertService, through the Flask test client with CSRF enforced as in production."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from officesensor.alerts.service import AlertService
from officesensor.config import Settings
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app
from tests.web.alert_history import RULES, Step, write_history

#: A history: Temperature of "lab" fires and resolves, then fires again (still firing); an
#: anomaly of "attic" fires and resolves; a hostile name fires (names are escaped).
STEPS: list[Step] = [
    ("lab", "Temperature", 79.0, False),
    ("lab", "Temperature", 81.5, False),
    ("lab", "Temperature", 80.5, False),
    ("lab", "Temperature", 78.5, False),
    ("attic", "Humidity", 70.0, True),
    ("attic", "Humidity", 40.0, False),
    ("lab", "Temperature", 82.25, False),
    ("<b>x</b>", "Temperature", 90.0, False),
]

ServiceFactory = Callable[..., AlertService]


@pytest.fixture
def make_service(settings: Settings, store: SqliteStore, tmp_path: Path):
    made: list[AlertService] = []

    def make(steps: list[Step] = STEPS) -> AlertService:
        config = settings.replace(alerts_rules=RULES, alerts_state=tmp_path / "alerts.db")
        write_history(config.alerts_state, config, steps)
        service = AlertService(config, store)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


@pytest.fixture
def alerts_app(settings: Settings, store: SqliteStore, make_service: ServiceFactory) -> Flask:
    service = make_service()
    return create_app(service._settings, store, None, service)


@pytest.fixture
def alerts_client(alerts_app: Flask) -> FlaskClient:
    return alerts_app.test_client()


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field in the page"
    return found.group(1)


def schema_validator(client: FlaskClient, name: str) -> Draft202012Validator:
    document = client.get("/api/openapi.json").json
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    )


def assert_matches(client: FlaskClient, name: str, body: Any) -> None:
    errors = [e.message for e in schema_validator(client, name).iter_errors(body)]
    assert errors == []


# ----------------------------------------------------------------------------- page


def test_the_page_without_an_alert_service_says_so(client: FlaskClient):
    response = client.get("/alerts")
    assert response.status_code == 200
    assert "No alert rules are configured here" in response.text
    assert "No alert is firing." in response.text
    body = client.get("/api/alerts").json
    assert body["enabled"] is False
    assert (body["active"], body["history"], body["next_before"]) == ([], [], None)
    assert_matches(client, "Alerts", body)


def test_the_page_shows_firing_alerts_first_then_the_history_newest_first(
    alerts_client: FlaskClient,
):
    html = alerts_client.get("/alerts").text
    active, history = html.split('id="alert-history"')
    assert active.count('class="alert-row') == 2
    assert "82.25" in active
    assert "2 rules" in html
    states = re.findall(r'<tr class="event-row state-(\w+)"', history)
    assert states == ["firing", "firing", "resolved", "firing", "resolved", "firing"]
    # Times as every page shows them: <time datetime=ISO>UTC text</time>, for the page script.
    assert re.search(r'<time datetime="[0-9T:.-]+Z">[0-9 :-]+UTC</time>', history)
    assert 'aria-label="Alerts"' in html  # the nav link


def test_device_strings_are_escaped_everywhere(alerts_client: FlaskClient):
    for path in ("/alerts", "/"):
        html = alerts_client.get(path).text
        assert "<b>x</b>" not in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_the_history_is_paginated(make_service: ServiceFactory, store: SqliteStore):
    steps = [("lab", "Temperature", 81.0 if i % 2 else 70.0, False) for i in range(130)]
    service = make_service(steps)
    client = create_app(service._settings, store, None, service).test_client()
    first = client.get("/alerts").text
    assert first.count('class="event-row') == 50
    older = re.search(r'href="(/alerts\?before=\d+)" rel="next"', first)
    assert older
    second = client.get(older.group(1)).text
    assert second.count('class="event-row') == 50
    assert "Newest" in second
    third = client.get(re.search(r'href="(/alerts\?before=\d+)"', second.split("Newest")[1])[1])
    assert third.text.count('class="event-row') == 29  # 65 firings, 64 resolutions
    assert 'rel="next"' not in third.text
    assert client.get("/alerts?before=x").status_code == 400


def test_acknowledge_through_the_page_form(alerts_client: FlaskClient):
    page = alerts_client.get("/alerts").text
    ids = re.findall(r'action="/alerts/([0-9a-f]{16})/ack"', page)
    assert len(ids) == 2
    refused = alerts_client.post(f"/alerts/{ids[0]}/ack", data={})
    assert refused.status_code == 403  # no CSRF token
    done = alerts_client.post(f"/alerts/{ids[0]}/ack", data={"csrf_token": csrf_from(page)})
    assert done.status_code == 303
    after = alerts_client.get(done.headers["Location"]).text
    assert re.findall(r'action="/alerts/([0-9a-f]{16})/ack"', after) == ids[1:]
    assert '<tr class="event-row state-acknowledged"' in after
    missing = alerts_client.post(
        "/alerts/0123456789abcdef/ack", data={"csrf_token": csrf_from(page)}
    )
    assert missing.status_code == 404


def test_the_overview_shows_firing_alerts(alerts_client: FlaskClient, client: FlaskClient):
    html = alerts_client.get("/").text
    banner = html.split('id="firing-alerts"')[1].split("</section>")[0]
    assert "2 alerts firing" in banner
    assert "too-warm" in banner
    assert 'href="/alerts"' in banner
    assert 'id="firing-alerts"' not in client.get("/").text  # no alert service: no banner


def test_after_the_service_stopped_alerts_answer_503_and_the_overview_still_renders(
    make_service: ServiceFactory, store: SqliteStore
):
    # A shutdown: serve stops the alert service while web threads may still be answering.
    service = make_service()
    client = create_app(service._settings, store, None, service).test_client()
    token = csrf_from(client.get("/alerts").text)
    episode_id = client.get("/api/alerts").json["active"][0]["id"]
    service.stop()
    api = client.get("/api/alerts")
    assert api.status_code == 503
    assert "shutting down" in api.json["error"]
    assert_matches(client, "Error", api.json)
    page = client.get("/alerts")
    assert page.status_code == 503
    assert "shutting down" in page.text
    for url, form in ((f"/api/alerts/{episode_id}/ack", {}), (f"/alerts/{episode_id}/ack", {})):
        acked = client.post(url, data=form, headers={"X-CSRF-Token": token})
        assert acked.status_code == 503
    overview = client.get("/")
    assert overview.status_code == 200
    assert 'id="firing-alerts"' not in overview.text
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "officesensor_alert" not in metrics.text


# ----------------------------------------------------------------------------- API


def test_the_api_lists_active_history_and_delivery(alerts_client: FlaskClient):
    body = alerts_client.get("/api/alerts").json
    assert_matches(alerts_client, "Alerts", body)
    assert body["enabled"] is True
    assert [(a["sensor"], a["value"]) for a in body["active"]] == [
        ("<b>x</b>", 90.0),
        ("lab", 82.25),
    ]
    assert [e["seq"] for e in body["history"]] == sorted(
        (e["seq"] for e in body["history"]), reverse=True
    )
    first, second, _third = (e for e in reversed(body["history"]) if e["sensor"] == "lab")
    assert (first["state"], second["state"]) == ("firing", "resolved")
    assert first["id"] == second["id"]
    assert (first["notified"], second["notified"]) == (True, True)
    # Every transition was notified: six MQTT messages wait (no delivery runs here), and no
    # webhook is configured.
    assert body["delivery"]["pending"] == {"mqtt": 6, "webhook": 0}
    assert body["delivery"]["dead_letters"] == {"mqtt": 0, "webhook": 0}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=resolved", {("lab", "resolved"), ("attic", "resolved")}),
        ("sensor=attic", {("attic", "firing"), ("attic", "resolved")}),
        ("metric=Humidity&state=firing", {("attic", "firing")}),
        ("sensor=nobody", set()),
    ],
)
def test_the_api_filters_the_history(alerts_client: FlaskClient, query: str, expected: set[Any]):
    body = alerts_client.get(f"/api/alerts?{query}").json
    assert {(e["sensor"], e["state"]) for e in body["history"]} == expected


def test_the_api_pages_with_next_before(alerts_client: FlaskClient):
    seen = []
    url = "/api/alerts?limit=4"
    while url:
        body = alerts_client.get(url).json
        seen += [e["seq"] for e in body["history"]]
        url = f"/api/alerts?limit=4&before={body['next_before']}" if body["next_before"] else ""
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 6


@pytest.mark.parametrize(
    "query", ["state=asleep", "limit=0", "limit=1001", "limit=x", "before=-3", "sensor="]
)
def test_bad_parameters_are_400_naming_the_parameter(alerts_client: FlaskClient, query: str):
    response = alerts_client.get(f"/api/alerts?{query}")
    assert response.status_code == 400
    assert response.json["parameter"] == query.split("=")[0]
    assert_matches(alerts_client, "Error", response.json)


def test_acknowledge_through_the_api(alerts_client: FlaskClient):
    token = csrf_from(alerts_client.get("/alerts").text)
    episode = alerts_client.get("/api/alerts").json["active"][0]
    url = f"/api/alerts/{episode['id']}/ack"
    refused = alerts_client.post(url)
    assert refused.status_code == 403
    assert_matches(alerts_client, "Error", refused.json)
    done = alerts_client.post(url, headers={"X-CSRF-Token": token})
    assert done.status_code == 200
    assert_matches(alerts_client, "Alert", done.json)
    assert done.json["acknowledged_at"] is not None
    again = alerts_client.post(url, headers={"X-CSRF-Token": token})
    assert again.json["acknowledged_at"] == done.json["acknowledged_at"]  # once
    events = alerts_client.get("/api/alerts?state=acknowledged").json["history"]
    assert [e["id"] for e in events] == [episode["id"]]
    for unknown in ("0123456789abcdef", "nope", "x" * 64):
        response = alerts_client.post(f"/api/alerts/{unknown}/ack", headers={"X-CSRF-Token": token})
        assert response.status_code == 404
        assert_matches(alerts_client, "Error", response.json)


def test_every_documented_ack_response_is_covered(alerts_client: FlaskClient):
    document = alerts_client.get("/api/openapi.json").json
    responses = document["paths"]["/api/alerts/{episode_id}/ack"]["post"]["responses"]
    # 200, 403, 404 above; 401 when authentication is configured: tests/web/test_web_auth.py
    # covers the guard every route shares; 503 during shutdown: the test of stopping.
    assert set(responses) == {"200", "401", "403", "404", "503"}
