"""The simulated office: deterministic, realistic, and its injected anomalies are labelled."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime, timedelta, timezone

import pytest

from officesensor.models import Reading
from officesensor.payload import PLAUSIBLE_RANGE, encode_reading, parse_message
from officesensor.sensor.simulated import (
    ANOMALY_KINDS,
    METRICS,
    InjectedAnomaly,
    Sample,
    SimulatedOffice,
    readings_of,
)

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
MINUTE = 60.0
THREE_WEEKS = 21 * 24 * 60  # samples at one a minute

#: Smallest spike and drift sizes the simulator injects, per metric.
MIN_SPIKE = {"Temperature": 2.5, "Humidity": 4.0, "Pressure": 2.0}
MIN_DRIFT = {"Temperature": 2.0, "Humidity": 4.0, "Pressure": 2.0}


def run(office: SimulatedOffice, count: int, interval_s: float = MINUTE) -> list[Sample]:
    return list(office.samples(START, interval_s, count))


@pytest.fixture(scope="module")
def faulty() -> tuple[list[Sample], list[InjectedAnomaly]]:
    """Three weeks with many anomalies (8 per metric per day)."""
    office = SimulatedOffice(7, anomaly_rate_per_day=8.0)
    return run(office, THREE_WEEKS), office.anomalies


@pytest.fixture(scope="module")
def clean() -> list[Sample]:
    """The same three weeks without anomalies: the true signal beneath ``faulty``."""
    return run(SimulatedOffice(7, anomaly_rate_per_day=0.0), THREE_WEEKS)


def affected(samples: list[Sample], anomaly: InjectedAnomaly) -> list[int]:
    return [i for i, s in enumerate(samples) if anomaly.start <= s.ts <= anomaly.end]


# --- determinism and timing -------------------------------------------------------------------


def test_same_seed_gives_identical_samples_and_anomalies() -> None:
    first, second = SimulatedOffice(3), SimulatedOffice(3)
    assert run(first, 5000) == run(second, 5000)
    assert first.anomalies == second.anomalies
    assert first.anomalies  # 5000 minutes at 2/day/metric: some anomalies happened


def test_different_seeds_differ() -> None:
    a, b = run(SimulatedOffice(1), 500), run(SimulatedOffice(2), 500)
    differing = sum(x.values != y.values for x, y in zip(a, b, strict=True))
    assert differing > 450


def test_each_call_starts_afresh_from_the_seed() -> None:
    office = SimulatedOffice(5, anomaly_rate_per_day=20.0)
    first, anomalies = run(office, 3000), office.anomalies
    assert run(office, 3000) == first
    assert office.anomalies == anomalies


def test_samples_are_utc_at_start_plus_k_intervals() -> None:
    start = datetime(2024, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    samples = list(SimulatedOffice().samples(start, 15.0, 5))
    assert [s.ts for s in samples] == [start + timedelta(seconds=15 * k) for k in range(5)]
    assert all(s.ts.tzinfo is UTC for s in samples)


def test_endless_when_count_is_none() -> None:
    samples = list(itertools.islice(SimulatedOffice().samples(START, 15.0), 10_000))
    assert len(samples) == 10_000
    assert samples[-1].ts == START + timedelta(seconds=15 * 9_999)


def test_count_zero_gives_nothing() -> None:
    assert list(SimulatedOffice().samples(START, 15.0, 0)) == []


@pytest.mark.parametrize(
    ("start", "interval_s", "count"),
    [
        (datetime(2024, 1, 1), 15.0, 1),  # naive start
        (START, 0.0, 1),
        (START, -15.0, 1),
        (START, float("nan"), 1),
        (START, 15.0, -1),
    ],
)
def test_bad_sampling_arguments_are_refused(start: datetime, interval_s: float, count: int) -> None:
    with pytest.raises(ValueError, match=r"start|interval_s|count"):
        SimulatedOffice().samples(start, interval_s, count)


@pytest.mark.parametrize("rate", [-1.0, float("inf"), float("nan")])
def test_bad_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="anomaly_rate_per_day"):
        SimulatedOffice(anomaly_rate_per_day=rate)


def test_unknown_anomaly_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        SimulatedOffice(anomaly_kinds=("spike", "fire"))


# --- climate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz", [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))], ids=str
)
def test_heated_working_hours_are_warmer_than_nights_and_weekends(tz: timezone) -> None:
    samples = run(SimulatedOffice(11, tz=tz, anomaly_rate_per_day=0.0), 14 * 24 * 60)
    working, night, weekend = [], [], []
    for sample in samples:
        local = sample.ts.astimezone(tz)
        value = sample.values["Temperature"]
        if local.weekday() >= 5:
            weekend.append(value)
        elif 9 <= local.hour < 18:
            working.append(value)
        elif local.hour < 6:
            night.append(value)
    assert 69.5 < statistics.mean(working) < 72.5
    assert 61.5 < statistics.mean(night) < 66.0
    assert 61.5 < statistics.mean(weekend) < 66.0
    assert statistics.mean(working) - max(statistics.mean(night), statistics.mean(weekend)) > 5


def test_humidity_falls_when_the_heating_runs(clean: list[Sample]) -> None:
    by_hour: dict[bool, list[float]] = {True: [], False: []}
    for sample in clean:
        warm = sample.ts.weekday() < 5 and 9 <= sample.ts.hour < 18
        by_hour[warm].append(sample.values["Humidity"])
    assert statistics.mean(by_hour[False]) - statistics.mean(by_hour[True]) > 5


def test_clean_values_are_realistic(clean: list[Sample]) -> None:
    expected = {"Temperature": (58.0, 75.0), "Humidity": (20.0, 60.0), "Pressure": (979, 1041)}
    for metric, (low, high) in expected.items():
        values = [s.values[metric] for s in clean]
        assert low <= min(values), metric
        assert max(values) <= high, metric
    temperatures = [s.values["Temperature"] for s in clean]
    steps = [abs(b - a) for a, b in itertools.pairwise(temperatures)]
    assert statistics.median(steps) < 0.3  # smooth: small noise, no jumps
    pressures = [s.values["Pressure"] for s in clean]
    assert max(abs(b - a) for a, b in itertools.pairwise(pressures)) < 1.0
    assert max(pressures) - min(pressures) > 3  # but it does wander


def test_pressure_wanders_realistically_over_a_year() -> None:
    samples = run(SimulatedOffice(8, anomaly_rate_per_day=0.0), 365 * 24, interval_s=3600.0)
    pressures = [s.values["Pressure"] for s in samples]
    assert min(pressures) >= 979.0
    assert max(pressures) <= 1041.0
    assert 3.0 < statistics.pstdev(pressures) < 12.0
    assert 1005.0 < statistics.mean(pressures) < 1021.0


def test_every_value_is_plausible_even_with_many_anomalies(
    faulty: tuple[list[Sample], list[InjectedAnomaly]],
) -> None:
    samples, _ = faulty
    for sample in samples:
        for metric, value in sample.values.items():
            low, high = PLAUSIBLE_RANGE[metric]
            assert low <= value <= high, (sample.ts, metric, value)


def test_clean_run_has_every_metric_in_every_sample(clean: list[Sample]) -> None:
    assert all(set(s.values) == set(METRICS) and not s.labels for s in clean)


# --- anomalies --------------------------------------------------------------------------------


def test_no_anomalies_at_rate_zero() -> None:
    office = SimulatedOffice(4, anomaly_rate_per_day=0.0)
    assert all(not s.labels for s in run(office, 20_000))
    assert office.anomalies == []


def test_labels_match_the_recorded_anomalies(
    faulty: tuple[list[Sample], list[InjectedAnomaly]],
) -> None:
    samples, anomalies = faulty
    expected: dict[tuple[int, str], str] = {}
    for anomaly in anomalies:
        indices = affected(samples, anomaly)
        assert indices, anomaly
        for i in indices:
            assert (i, anomaly.metric) not in expected, "anomalies of one metric overlap"
            expected[(i, anomaly.metric)] = anomaly.kind
    labelled = {(i, m): kind for i, s in enumerate(samples) for m, kind in s.labels.items()}
    assert labelled == expected
    assert {a.kind for a in anomalies} == set(ANOMALY_KINDS)
    assert {a.metric for a in anomalies} == set(METRICS)


def test_unlabelled_samples_equal_the_clean_signal(
    faulty: tuple[list[Sample], list[InjectedAnomaly]], clean: list[Sample]
) -> None:
    samples, _ = faulty
    for bad, good in zip(samples, clean, strict=True):
        for metric in METRICS:
            if metric not in bad.labels:
                assert bad.values[metric] == good.values[metric]


def kind_of(anomalies: list[InjectedAnomaly], kind: str) -> list[InjectedAnomaly]:
    found = [a for a in anomalies if a.kind == kind]
    assert len(found) >= 20, f"too few {kind} anomalies to test"
    return found


def test_spikes_are_single_samples_far_from_their_neighbours(
    faulty: tuple[list[Sample], list[InjectedAnomaly]], clean: list[Sample]
) -> None:
    samples, anomalies = faulty
    for spike in kind_of(anomalies, "spike"):
        assert spike.start == spike.end
        [i] = affected(samples, spike)
        m = spike.metric
        assert abs(samples[i].values[m] - clean[i].values[m]) >= MIN_SPIKE[m] - 0.01
        neighbours = (clean[i - 1].values[m] + clean[i + 1].values[m]) / 2
        assert abs(samples[i].values[m] - neighbours) > 0.8 * MIN_SPIKE[m]


def test_drifts_build_up_then_snap_back(
    faulty: tuple[list[Sample], list[InjectedAnomaly]], clean: list[Sample]
) -> None:
    samples, anomalies = faulty
    for drift in kind_of(anomalies, "drift"):
        indices, m = affected(samples, drift), drift.metric
        assert 10 <= len(indices) <= 30  # 10-30 minutes at one sample a minute
        offsets = [samples[i].values[m] - clean[i].values[m] for i in indices]
        sizes = [abs(o) for o in offsets]
        assert all(b >= a - 0.011 for a, b in itertools.pairwise(sizes))  # grows (± rounding)
        assert sizes[-1] >= MIN_DRIFT[m] - 0.01
        assert sizes[0] < sizes[-1] / 5
        after = indices[-1] + 1
        assert samples[after].values[m] == clean[after].values[m]  # snapped back


def test_stuck_sensor_repeats_the_last_value_exactly(
    faulty: tuple[list[Sample], list[InjectedAnomaly]], clean: list[Sample]
) -> None:
    samples, anomalies = faulty
    for stuck in kind_of(anomalies, "stuck"):
        indices, m = affected(samples, stuck), stuck.metric
        assert 5 <= len(indices) <= 30
        before = samples[indices[0] - 1].values[m]
        assert all(samples[i].values[m] == before for i in indices)
        assert any(clean[i].values[m] != before for i in indices)  # the room did move


def test_dropouts_miss_the_metric_only(
    faulty: tuple[list[Sample], list[InjectedAnomaly]],
) -> None:
    samples, anomalies = faulty
    for dropout in kind_of(anomalies, "dropout"):
        indices, m = affected(samples, dropout), dropout.metric
        assert 1 <= len(indices) <= 15
        for i in indices:
            assert m not in samples[i].values
            others = set(METRICS) - {m}
            assert {o for o in others if samples[i].labels.get(o) != "dropout"} <= set(
                samples[i].values
            )


def test_anomalies_come_at_the_configured_rate() -> None:
    office = SimulatedOffice(9, anomaly_rate_per_day=2.0)
    run(office, 90 * 24 * 60)  # 90 days: 180 expected per metric
    for metric in METRICS:
        count = sum(a.metric == metric for a in office.anomalies)
        assert 140 <= count <= 220, (metric, count)
    kinds = [a.kind for a in office.anomalies]
    assert all(kinds.count(kind) > 80 for kind in ANOMALY_KINDS)


def test_anomaly_kinds_can_be_chosen() -> None:
    office = SimulatedOffice(2, anomaly_rate_per_day=10.0, anomaly_kinds=("spike",))
    samples = run(office, 5 * 24 * 60)
    assert office.anomalies
    assert {a.kind for a in office.anomalies} == {"spike"}
    assert all(set(s.values) == set(METRICS) for s in samples)


def test_anomalies_do_not_change_the_climate() -> None:
    """The clean twin of a faulty run is the same seed at rate 0 (the RNGs are separate)."""
    plain = run(SimulatedOffice(6, anomaly_rate_per_day=0.0), 2000)
    spiky = run(SimulatedOffice(6, anomaly_rate_per_day=50.0, anomaly_kinds=("spike",)), 2000)
    changed = sum(a.values != b.values for a, b in zip(plain, spiky, strict=True))
    assert 0 < changed < 2000 * 3 * 50 / 1440 * 2


# --- readings ---------------------------------------------------------------------------------


def test_readings_have_epoch_millisecond_ids() -> None:
    ts = datetime(2024, 3, 4, 10, 11, 12, 345_678, tzinfo=UTC)
    sample = Sample(ts, {"Temperature": 71.5, "Pressure": 1012.25}, {"Humidity": "dropout"})
    readings = readings_of(sample, sensor="lab")
    assert readings == [
        Reading("lab", "Temperature", 1_709_547_072_345, ts, 71.5),
        Reading("lab", "Pressure", 1_709_547_072_345, ts, 1012.25),
    ]
    assert readings[0].reading_id == int(ts.timestamp() * 1000)


@pytest.mark.parametrize("sensor", ["default", "lab-2"])
@pytest.mark.parametrize("local_tz", [UTC, timezone(timedelta(hours=-7))], ids=str)
def test_readings_round_trip_through_the_wire_format(
    faulty: tuple[list[Sample], list[InjectedAnomaly]], sensor: str, local_tz: timezone
) -> None:
    samples, _ = faulty
    now = samples[-1].ts
    readings = [r for s in samples[:3000] for r in readings_of(s, sensor=sensor)]
    assert len(readings) > 8000
    for reading in readings:
        topic, payload = encode_reading(reading, local_tz)
        assert parse_message(topic, payload, now=now, sensor_tz=UTC) == [reading]
