"""Schemathesis against the alert operations of /api/openapi.json with alert history present
(test_fuzz_api.py fuzzes every operation too, but without an alert service): no 5xx, and
every response matches the document. Requests carry a bearer token (generated here), which
authenticates them and, as for any script, stands in for the CSRF token, so the POST
handler itself is exercised, not only the CSRF guard."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, seed, settings

from officesensor.alerts.service import AlertService
from officesensor.config import load_settings
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app
from tests.web.alert_history import RULES, write_history
from tests.web.test_alerts_web import STEPS
from tests.web.test_fuzz_api import CHECKS, MAX_EXAMPLES, SEED

TOKEN = secrets.token_urlsafe(24)


def _build_app(folder: Path) -> tuple[Flask, SqliteStore, AlertService]:
    config = load_settings(environ={}).replace(
        alerts_rules=RULES, alerts_state=folder / "alerts.db", auth_token=TOKEN
    )
    write_history(config.alerts_state, config, STEPS)
    store = SqliteStore(folder / "readings.db")
    service = AlertService(config, store)
    return create_app(config, store, None, service), store, service


_FOLDER = tempfile.TemporaryDirectory(prefix="officesensor-alerts-fuzz-")
APP, _STORE, _SERVICE = _build_app(Path(_FOLDER.name))
_AUTH = {"Authorization": f"Bearer {TOKEN}"}
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", APP, headers=_AUTH).include(
    path_regex="^/api/alerts"
)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _SERVICE.stop()
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
def test_alert_api_never_fails_and_matches_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=_AUTH, checks=CHECKS)


def test_both_alert_operations_are_fuzzed() -> None:
    operations = {(r.ok().method, r.ok().path) for r in schema.get_all_operations()}
    assert operations == {("get", "/api/alerts"), ("post", "/api/alerts/{episode_id}/ack")}
