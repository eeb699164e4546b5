"""The alert service's start-up choices and its never-blocking listener (alerts/service.py),
over real files and a real SQLite store; no broker (no rules, or no channels)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from officesensor.alerts import service as service_module
from officesensor.alerts.rules import parse_rules
from officesensor.alerts.service import AlertService
from officesensor.config import load_settings
from officesensor.models import SensorStatus
from officesensor.store.sqlite import SqliteStore

RULES = parse_rules([{"name": "warm", "kind": "threshold", "above": 80}])


@pytest.fixture
def store(tmp_path: Path):
    opened = SqliteStore(tmp_path / "readings.db")
    yield opened
    opened.close()


def test_without_rules_nothing_runs_and_no_file_is_made(tmp_path: Path, store: SqliteStore):
    settings = load_settings(environ={}).replace(alerts_state=tmp_path / "data" / "alerts.db")
    service = AlertService(settings, store)
    service.start()
    service.on_status(SensorStatus("lab", False, datetime.now(UTC)))
    assert (service.enabled, service.active(), service.events()) == (False, [], [])
    assert service.acknowledge("0123456789abcdef") is None
    assert service.delivery().counts.dead_letters == {"mqtt": 0, "webhook": 0}
    service.stop()
    assert not (tmp_path / "data").exists()


def test_the_listener_drops_and_counts_when_evaluation_is_behind(
    tmp_path: Path, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(service_module, "QUEUE_LIMIT", 3)
    settings = load_settings(environ={}).replace(
        alerts_rules=RULES, alerts_state=tmp_path / "alerts.db"
    )
    service = AlertService(settings, store, channels={})  # not started: nothing takes the queue
    try:
        for _ in range(5):
            service.on_analysed([])
        assert service.delivery().dropped_batches == 2
        assert "officesensor_alert_batches_dropped_total 2" in service.metrics_lines()
    finally:
        service.stop()
