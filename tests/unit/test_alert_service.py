"""The alert service's start-up choices and its never-blocking listener (alerts/service.py),
over real files and a real SQLite store; no broker (no rules, or no channels)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from officesensor.alerts import service as service_module
from officesensor.alerts.rules import parse_rules
from officesensor.alerts.service import AlertService
from officesensor.alerts.state import AlertStateClosed
from officesensor.config import load_settings
from officesensor.errors import StoreError
from officesensor.models import Reading, SensorStatus, SeriesInfo
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


class ThrottledStore(SqliteStore):
    """A real SQLite store whose first ``series`` and ``latest`` calls fail, as a throttled
    DynamoDB's do."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failures = {"series": 1, "latest": 1}
        self.calls = {"series": 0, "latest": 0}

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.failures[name] > 0:
            self.failures[name] -= 1
            raise StoreError(f"{name}: ProvisionedThroughputExceededException (throttled)")

    def series(self) -> list[SeriesInfo]:
        self._call("series")
        return super().series()

    def latest(
        self, sensor: str, metric: str, limit: int, before: datetime | None = None
    ) -> list[Reading]:
        self._call("latest")
        return super().latest(sensor, metric, limit, before)


def test_a_store_that_does_not_answer_at_start_is_asked_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(service_module, "SEED_RETRY_S", 0.05)
    store = ThrottledStore(tmp_path / "readings.db")
    start = datetime.now(UTC) - timedelta(minutes=10)
    store.write_many(
        [
            Reading("lab", "Temperature", i, start + timedelta(seconds=15 * i), 70.0)
            for i in range(11)
        ]
    )
    rules = parse_rules([{"name": "quiet", "kind": "stale", "intervals": 5}])
    settings = load_settings(environ={}).replace(
        alerts_rules=rules, alerts_state=tmp_path / "alerts.db"
    )
    service = AlertService(settings, store, channels={})
    try:
        service.start()  # series() fails: the start goes on
        assert "cannot list the stored series (will retry)" in caplog.text
        deadline = time.monotonic() + 20
        while service._engine.cadence_s("lab", "Temperature") is None:
            assert time.monotonic() < deadline, "the cadence was never learned"
            time.sleep(0.05)
        assert service._engine.cadence_s("lab", "Temperature") == 15.0
        assert store.calls == {"series": 2, "latest": 2}  # latest() failed once, too
        assert "1 series not seeded yet (will retry)" in caplog.text
    finally:
        service.stop()
        store.close()


def test_reads_after_stop_say_the_state_is_closed(tmp_path: Path, store: SqliteStore):
    settings = load_settings(environ={}).replace(
        alerts_rules=RULES, alerts_state=tmp_path / "alerts.db"
    )
    service = AlertService(settings, store, channels={})
    service.start()
    assert service.active() == []
    service.stop()
    for read in (service.active, service.events, service.delivery):
        with pytest.raises(AlertStateClosed):
            read()
    with pytest.raises(AlertStateClosed):
        service.acknowledge("0123456789abcdef")
    assert service.metrics_lines() == []  # /metrics goes on without the alert families
    service.on_analysed([])  # ingest may still call: queued, never evaluated, no error
