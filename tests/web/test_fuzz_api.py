"""Schemathesis against /api/openapi.json: no 5xx, and every response matches the document.

The Flask app runs in-process (WSGI) over a real SQLite store holding a few series, anomalies
and a conflict, with an in-process ingest whose quarantine holds a message; each documented
operation gets a bounded number of generated requests (valid and invalid), with a fixed seed.
``/api/stream`` is the endless SSE stream of the ASGI layer (not Flask): excluded, it is
tested over real HTTP in tests/integration/test_live_stream.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from officesensor.config import load_settings
from officesensor.live import LiveAnalytics, write_and_flag
from officesensor.models import AnomalyRecord, QuarantinedMessage, Reading, RejectReason
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app
from officesensor.web.asgi import STREAM_PATH
from tests.web.conftest import INTERVAL, START, FakeIngest, healthy_snapshot, series_values

MAX_EXAMPLES = 50
SEED = 20_261_201

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def _build_app(folder: Path) -> tuple[Flask, SqliteStore]:
    config = load_settings(environ={}).replace(window=10, z=2.0)
    store = SqliteStore(folder / "readings.db")
    analytics = LiveAnalytics(store, config.window, config.z)
    for sensor, metric, base in (
        ("default", "Temperature", 72.0),
        ("default", "Humidity", 40.0),
        ("kitchen", "Temperature", 70.0),
        ("default", "CO2", 600.0),
    ):
        values = series_values(80, base, spikes=(50,))
        readings = [
            Reading(sensor, metric, i, START + i * INTERVAL, v) for i, v in enumerate(values)
        ]
        write_and_flag(store, readings, analytics)
    flat = [Reading("default", "Pressure", i, START + i * INTERVAL, 1013.0) for i in range(5)]
    store.write_many(flat)  # std 0: null z-scores
    first = Reading("default", "Temperature", 0, START, 99.0)
    store.write_many([first])  # same ID, other value: a conflict
    store.record_anomalies([AnomalyRecord(first, 72.1, 0.9, 5.4)])
    quarantined = QuarantinedMessage(
        received=datetime(2026, 1, 1, tzinfo=UTC),
        topic="office/metrics/<script>",
        reason=RejectReason.BAD_METRIC_NAME,
        detail="metric <script> is not a plain name",
        payload_bytes=12,
        payload_preview='{"x": "</script>"}',
    )
    ingest = FakeIngest(healthy_snapshot(), [quarantined])
    return create_app(config, store, ingest), store


# Built at import: schemathesis parametrizes from a loaded schema (its lazy fixture loader,
# schemathesis.pytest.from_fixture, fails on pytest 9: it sets Function._nodeid). The store
# lives in a temporary directory that the module fixture below removes.
_FOLDER = tempfile.TemporaryDirectory(prefix="officesensor-fuzz-")
APP, _STORE = _build_app(Path(_FOLDER.name))
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", APP).exclude(path=STREAM_PATH)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _STORE.close()
    _FOLDER.cleanup()


@schema.parametrize()
@seed(SEED)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_never_fails_and_matches_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


def test_the_stream_is_the_only_operation_left_out() -> None:
    operations = {result.ok().path for result in schema.get_all_operations()}
    documented = set(APP.test_client().get("/api/openapi.json").json["paths"])
    assert STREAM_PATH not in operations
    # Schemathesis itself leaves out the operation that serves the schema it loaded from
    # (tests/web/test_web_openapi.py checks that one).
    assert documented - operations == {STREAM_PATH, "/api/openapi.json"}
