from __future__ import annotations

from datetime import UTC, datetime

from officesensor.admission import SeriesGate
from officesensor.models import Reading, RejectReason

TS = datetime(2026, 1, 1, tzinfo=UTC)


def reading(metric: str, sensor: str = "default") -> Reading:
    return Reading(sensor, metric, 1, TS, 1.0)


def test_known_series_are_always_admitted_even_at_the_cap() -> None:
    gate = SeriesGate([("default", "Temperature")], max_series=1)
    assert gate.admit([reading("Temperature")], "t") is None
    refused = gate.admit([reading("Humidity")], "office/metrics/Humidity")
    assert refused is not None
    assert refused.reason is RejectReason.TOO_MANY_SERIES
    assert refused.topic == "office/metrics/Humidity"
    assert "ingest.max_series" in refused.detail


def test_new_series_count_toward_the_cap_as_they_are_admitted() -> None:
    gate = SeriesGate([], max_series=3)
    admitted = [gate.admit([reading(f"M{i}")], "t") is None for i in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert gate.series_count == 3
    assert gate.admit([reading("M1")], "t") is None  # still known


def test_a_message_is_refused_whole_when_it_would_pass_the_cap() -> None:
    gate = SeriesGate([], max_series=2)
    weather = [reading("Temperature"), reading("Humidity"), reading("Pressure")]
    refused = gate.admit(weather, "office/weather")
    assert refused is not None
    assert refused.reason is RejectReason.TOO_MANY_SERIES
    assert gate.series_count == 0


def test_sensors_are_series_too() -> None:
    gate = SeriesGate([], max_series=2)
    assert gate.admit([reading("Temperature", "a")], "t") is None
    assert gate.admit([reading("Temperature", "b")], "t") is None
    assert gate.admit([reading("Temperature", "c")], "t") is not None


def test_allow_list_refuses_other_metrics_but_keeps_stored_ones() -> None:
    gate = SeriesGate([("default", "Legacy")], max_series=100, allowed_metrics=["Temperature"])
    assert gate.admit([reading("Temperature")], "t") is None
    assert gate.admit([reading("Legacy")], "t") is None  # already stored: not a new series
    refused = gate.admit([reading("Radiation")], "t")
    assert refused is not None
    assert refused.reason is RejectReason.METRIC_NOT_ALLOWED
    assert "Radiation" in refused.detail
