"""Fixtures for the web tests: the Flask test client over a real SQLite store in tmp_path."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from officesensor.config import Settings, load_settings
from officesensor.live import LiveAnalytics, write_and_flag
from officesensor.models import (
    IngestSnapshot,
    QuarantinedMessage,
    Reading,
    RejectReason,
    SensorStatus,
)
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app

#: Series start an hour ago, so they fall in the pages' default range (the last 24 h).
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
INTERVAL = timedelta(seconds=15)

WriteSeries = Callable[..., list[Reading]]


@dataclass
class FakeIngest:
    """Our own IngestProbe interface, answering a fixed snapshot."""

    state: IngestSnapshot
    rejected: list[QuarantinedMessage] = field(default_factory=list)
    statuses: dict[str, SensorStatus] = field(default_factory=dict)

    def snapshot(self) -> IngestSnapshot:
        return self.state

    def quarantine(self, limit: int) -> list[QuarantinedMessage]:
        return self.rejected[:limit]

    def sensor_statuses(self) -> dict[str, SensorStatus]:
        return dict(self.statuses)


def healthy_snapshot(**changes: object) -> IngestSnapshot:
    snapshot = IngestSnapshot(
        connected=True,
        received=120,
        stored=110,
        duplicates=4,
        conflicts=1,
        rejected={"not_json": 3, "out_of_range": 2},
        backlog=0,
        reconnects=2,
        anomalies=7,
        last_error=None,
        store_ok=True,
    )
    return replace(snapshot, **changes)  # type: ignore[arg-type]


def series_values(count: int, base: float, spikes: Sequence[int] = ()) -> list[float]:
    """A smooth, slightly noisy series; each index in ``spikes`` jumps by +5."""
    values = []
    for i in range(count):
        wiggle = 0.8 * math.sin(i / 25) + 0.05 * math.sin(i * 1.7)
        values.append(round(base + wiggle + (5.0 if i in spikes else 0.0), 3))
    return values


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ={}).replace(window=10, z=2.0)


@pytest.fixture
def store(tmp_path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "readings.db")
    yield store
    store.close()


@pytest.fixture
def app(settings: Settings, store: SqliteStore) -> Flask:
    return create_app(settings, store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def write_series(store: SqliteStore, settings: Settings) -> WriteSeries:
    """Write one series; returns its readings, oldest first (15 s apart from START)."""

    def write(
        metric: str = "Temperature",
        values: Sequence[float] | None = None,
        *,
        sensor: str = "default",
        count: int = 60,
        base: float = 72.0,
        spikes: Sequence[int] = (),
        start: datetime = START,
    ) -> list[Reading]:
        values = list(values) if values is not None else series_values(count, base, spikes)
        readings = [
            Reading(sensor, metric, i, start + i * INTERVAL, value)
            for i, value in enumerate(values)
        ]
        # As ingest does: store, then record what the live z-score flags.
        analytics = LiveAnalytics(store, settings.window, settings.z, settings.anomaly_method)
        result = write_and_flag(store, readings, analytics)
        assert result.stored == len(readings)
        return readings

    return write


@pytest.fixture
def client_with_ingest(settings: Settings, store: SqliteStore) -> Callable[..., FlaskClient]:
    """A client of an app whose in-process ingest reports ``healthy_snapshot(**changes)``."""

    def make(**changes: object) -> FlaskClient:
        rejected = QuarantinedMessage(
            received=datetime(2026, 1, 1, tzinfo=UTC),
            topic="office/metrics/Temperature",
            reason=RejectReason.NOT_JSON,
            detail="Expecting value: line 1 column 1 (char 0)",
            payload_bytes=8,
            payload_preview="not json",
        )
        ingest = FakeIngest(healthy_snapshot(**changes), [rejected])
        return create_app(settings, store, ingest).test_client()

    return make
