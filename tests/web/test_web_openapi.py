"""/api/openapi.json is valid, complete, and every documented response matches its schema."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from officesensor.models import AnomalyRecord, Reading
from officesensor.web.asgi import STREAM_PATH

# (path, status) -> (needs in-process ingest, URL that answers with that status)
EXAMPLES: dict[tuple[str, str], tuple[bool, str]] = {
    ("/api/series", "200"): (False, "/api/series"),
    ("/api/readings", "200"): (False, "/api/readings?metric=temperature&limit=50"),
    ("/api/readings", "400"): (False, "/api/readings?metric=Temperature&limit=many"),
    ("/api/readings", "404"): (False, "/api/readings?metric=Radiation"),
    ("/api/chart", "200"): (False, "/api/chart?metric=Temperature&range=1h&buckets=10"),
    ("/api/chart", "400"): (False, "/api/chart?metric=Temperature&range=2h"),
    ("/api/chart", "404"): (False, "/api/chart?metric=Temperature&sensor=nobody"),
    ("/api/stats", "200"): (False, "/api/stats?metric=Temperature&range=all"),
    ("/api/stats", "400"): (False, "/api/stats?metric=Temperature&start=yesterday&end=now"),
    ("/api/stats", "404"): (False, "/api/stats?metric=Radiation"),
    ("/api/anomalies", "200"): (False, "/api/anomalies?metric=Temperature&range=24h"),
    ("/api/anomalies", "400"): (False, "/api/anomalies?metric=Temperature&limit=-1"),
    ("/api/anomalies", "404"): (False, "/api/anomalies?metric=Radiation"),
    ("/api/export.csv", "200"): (False, "/api/export.csv?metric=Temperature&range=1h"),
    ("/api/export.csv", "400"): (False, "/api/export.csv?metric=Temperature&start=2024-01-01"),
    ("/api/export.csv", "404"): (False, "/api/export.csv?metric=Radiation"),
    ("/api/ingest", "200"): (True, "/api/ingest"),
    ("/api/ingest", "404"): (False, "/api/ingest"),
    ("/api/quarantine", "200"): (True, "/api/quarantine"),
    ("/api/quarantine", "400"): (True, "/api/quarantine?limit=0"),
    ("/api/quarantine", "404"): (False, "/api/quarantine"),
    ("/api/alerts", "200"): (False, "/api/alerts?limit=5"),
    ("/api/alerts", "400"): (False, "/api/alerts?state=sleeping"),
    ("/api/conflicts", "200"): (False, "/api/conflicts"),
    ("/api/conflicts", "400"): (False, "/api/conflicts?limit=0"),
    ("/api/openapi.json", "200"): (False, "/api/openapi.json"),
    ("/healthz", "200"): (False, "/healthz"),
    ("/readyz", "200"): (False, "/readyz"),
    ("/readyz", "503"): (True, "/readyz"),  # the fake ingest reports "disconnected"
    ("/metrics", "200"): (False, "/metrics"),
}


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    return response.json


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """Validates against ``schema``, resolving ``#/components/...`` in ``document``."""
    return Draft202012Validator({**schema, "components": document["components"]})


def test_document_is_openapi_3_1_with_valid_schemas(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, item in document["paths"].items():
        for operation in item.values():
            for status, response in operation["responses"].items():
                assert response["description"], (path, status)
                for media in response.get("content", {}).values():
                    Draft202012Validator.check_schema(media["schema"])


def test_every_api_route_is_documented(app, document):
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # Flask's <name> is OpenAPI's {name}
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    routes.add(STREAM_PATH)  # served by the ASGI layer, not Flask
    assert routes == {p for p in document["paths"] if p.startswith("/api/")}


def test_examples_cover_every_documented_response(document):
    documented = {
        (path, status)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if path != STREAM_PATH  # tests/integration/test_live_stream.py, over real HTTP
        and method == "get"  # POST /api/alerts/{episode_id}/ack: tests/web/test_alerts_web.py
        and (path, status) != ("/api/alerts", "503")  # stopping: tests/web/test_alerts_web.py
    }
    assert documented == set(EXAMPLES)


@pytest.mark.parametrize(("path", "status"), sorted(EXAMPLES))
def test_documented_responses_match_their_schemas(
    path, status, document, client, client_with_ingest, write_series, store
):
    readings = write_series("Temperature", count=40, spikes=(30,))
    write_series("Pressure", [1013.0, 1013.0, 1013.0])  # std 0: null z-scores
    original = readings[0]
    store.write_many([Reading("default", "Temperature", 0, original.ts, original.value + 1)])
    store.record_anomalies([AnomalyRecord(readings[30], 72.1, 0.9, 5.4)])
    with_ingest, url = EXAMPLES[(path, status)]
    test_client = client_with_ingest(connected=False) if with_ingest else client
    if (path, status) == ("/api/ingest", "200"):
        test_client = client_with_ingest()
    response = test_client.get(url)
    assert str(response.status_code) == status
    ((media_type, media),) = document["paths"][path]["get"]["responses"][status]["content"].items()
    assert response.content_type.startswith(media_type)
    body = response.json if response.is_json else response.text
    errors = list(validator(document, media["schema"]).iter_errors(body))
    assert not errors, [error.message for error in errors]


def test_schemas_reject_what_the_api_must_never_send(document):
    readings = validator(document, {"$ref": "#/components/schemas/Readings"})
    good = {
        "sensor": "default",
        "metric": "Temperature",
        "unit": "°F",
        "window": 10,
        "z_threshold": 2.0,
        "readings": [
            {
                "id": 1,
                "ts": "2024-05-01T09:00:00Z",
                "value": 70.0,
                "mean": 70.0,
                "std": None,
                "z": None,
                "anomaly": False,
            }
        ],
    }
    assert readings.is_valid(good)
    assert not readings.is_valid({**good, "readings": [{**good["readings"][0], "z": "NaN"}]})
    assert not readings.is_valid({**good, "extra": 1})
