"""The storage contract (officesensor.store): every store passes these tests through the
``store`` fixture (tests/store/conftest.py). SQLite-only checks come last, apart."""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from officesensor.errors import StoreError
from officesensor.models import (
    AnomalyRecord,
    Reading,
    SeriesInfo,
    WriteResult,
    from_epoch_us,
    to_epoch_us,
)
from officesensor.rollups import Bucket, IntervalStats, merge_blobs
from officesensor.store import Store
from officesensor.store.sqlite import EXACT_LIMIT, MIGRATIONS, SqliteStore

T0 = datetime(2024, 5, 1, 9, 0, 0, 123456, tzinfo=UTC)
STEP = timedelta(seconds=15)


def reading(
    i: int,
    *,
    sensor: str = "default",
    metric: str = "Temperature",
    reading_id: int | None = None,
    value: float | None = None,
    ts: datetime | None = None,
) -> Reading:
    """The i-th reading of a series: every 15 s from T0, ID i, a value that depends on i."""
    return Reading(
        sensor=sensor,
        metric=metric,
        reading_id=i if reading_id is None else reading_id,
        ts=T0 + i * STEP if ts is None else ts,
        value=70.0 + i / 4 if value is None else value,
    )


def series_by_key(store: Store) -> dict[tuple[str, str], SeriesInfo]:
    return {(info.sensor, info.metric): info for info in store.series()}


def _assert_accounted(result: WriteResult, batch_size: int) -> None:
    assert result.stored + result.duplicates + result.conflicts == batch_size
    assert len(result.conflicting) == result.conflicts


# --------------------------------------------------------------------------- empty store


def test_empty_store(store: Store) -> None:
    store.ping()
    assert store.series() == []
    assert store.latest("default", "Temperature", 10) == []
    assert store.range("default", "Temperature", T0, T0 + timedelta(days=1)) == []
    assert store.conflicts() == []
    assert store.write_many([]) == WriteResult()


# --------------------------------------------------------------------------- write and read


def test_write_then_read_back(store: Store) -> None:
    batch = [reading(i) for i in range(5)]
    result = store.write_many(batch)
    assert result == WriteResult(stored=5, new=batch)
    assert store.latest("default", "Temperature", 10) == batch
    assert store.range("default", "Temperature", T0, T0 + timedelta(days=1)) == batch


def test_values_ids_and_times_round_trip_exactly(store: Store) -> None:
    batch = [
        reading(0, value=0.1 + 0.2, reading_id=2**63 - 1),
        reading(1, value=-40.000000000000014, reading_id=0, ts=T0 + timedelta(microseconds=1)),
        reading(
            2,
            value=1013.2500000000001,
            reading_id=1_717_243_140_123,
            ts=datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
        ),
        reading(3, value=-0.0, ts=datetime(2000, 1, 1, tzinfo=UTC)),
    ]
    store.write_many(batch)
    got = store.range(
        "default", "Temperature", datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    )
    assert sorted(got, key=lambda r: r.ts) == sorted(batch, key=lambda r: r.ts)
    by_id = {r.reading_id: r for r in got}
    for original in batch:
        back = by_id[original.reading_id]
        assert back.ts == original.ts
        assert back.ts.utcoffset() == timedelta(0)
        assert back.value == original.value
        assert type(back.value) is float
        assert type(back.reading_id) is int


def test_reads_are_oldest_first_whatever_the_write_order(store: Store) -> None:
    batch = [reading(i) for i in range(20)]
    shuffled = batch[:]
    random.Random(3).shuffle(shuffled)
    store.write_many(shuffled[:7])
    store.write_many(shuffled[7:])
    assert store.latest("default", "Temperature", 100) == batch
    assert store.range("default", "Temperature", T0, T0 + timedelta(days=1)) == batch


def test_latest_returns_the_most_recent_oldest_first(store: Store) -> None:
    batch = [reading(i) for i in range(10)]
    store.write_many(batch)
    assert store.latest("default", "Temperature", 3) == batch[7:]
    assert store.latest("default", "Temperature", 1) == batch[9:]
    assert store.latest("default", "Temperature", 10) == batch
    assert store.latest("default", "Temperature", 50) == batch


def test_latest_before_is_exclusive(store: Store) -> None:
    batch = [reading(i) for i in range(10)]
    store.write_many(batch)
    assert store.latest("default", "Temperature", 3, before=batch[5].ts) == batch[2:5]
    just_after = batch[5].ts + timedelta(microseconds=1)
    assert store.latest("default", "Temperature", 3, before=just_after) == batch[3:6]
    assert store.latest("default", "Temperature", 3, before=T0) == []
    assert store.latest("default", "Temperature", 3, before=None) == batch[7:]


def test_range_start_is_inclusive_and_end_exclusive(store: Store) -> None:
    batch = [reading(i) for i in range(10)]
    store.write_many(batch)
    assert store.range("default", "Temperature", batch[2].ts, batch[5].ts) == batch[2:5]
    one_us = timedelta(microseconds=1)
    assert (
        store.range("default", "Temperature", batch[2].ts + one_us, batch[5].ts + one_us)
        == (batch[3:6])
    )
    assert (
        store.range("default", "Temperature", batch[2].ts - one_us, batch[5].ts - one_us)
        == (batch[2:5])
    )
    assert store.range("default", "Temperature", batch[4].ts, batch[4].ts) == []
    assert store.range("default", "Temperature", batch[4].ts, batch[4].ts + one_us) == [batch[4]]
    assert store.range("default", "Temperature", batch[9].ts + one_us, batch[9].ts + STEP) == []


def test_range_limit_keeps_the_oldest(store: Store) -> None:
    batch = [reading(i) for i in range(10)]
    store.write_many(batch)
    end = T0 + timedelta(days=1)
    assert store.range("default", "Temperature", batch[1].ts, end, limit=3) == batch[1:4]
    assert store.range("default", "Temperature", T0, end, limit=100) == batch
    assert store.range("default", "Temperature", T0, end, limit=None) == batch


def test_range_accepts_any_utc_offset(store: Store) -> None:
    batch = [reading(i) for i in range(4)]
    store.write_many(batch)
    start = batch[1].ts.astimezone(ZoneInfo("Europe/Berlin"))  # the same instant
    assert store.range("default", "Temperature", start, batch[3].ts) == batch[1:3]


# --------------------------------------------------------------------------- exactly once


def test_same_batch_twice_is_stored_once(store: Store) -> None:
    batch = [reading(i) for i in range(6)]
    assert store.write_many(batch) == WriteResult(stored=6, new=batch)
    again = store.write_many(batch)
    assert again == WriteResult(duplicates=6)
    assert store.latest("default", "Temperature", 100) == batch
    assert series_by_key(store)["default", "Temperature"].count == 6
    assert store.conflicts() == []


def test_duplicates_within_one_batch(store: Store) -> None:
    first, second = reading(0), reading(1)
    result = store.write_many([first, second, first, first])
    assert (result.stored, result.duplicates, result.conflicts) == (2, 2, 0)
    assert result.new == [first, second]
    assert store.latest("default", "Temperature", 10) == [first, second]
    assert series_by_key(store)["default", "Temperature"].count == 2


def test_conflict_keeps_the_original_and_reports_the_newcomer(store: Store) -> None:
    original = reading(0, value=70.5)
    newcomer = reading(0, value=99.5)  # same sensor, metric, time and ID
    assert store.write_many([original]).stored == 1
    result = store.write_many([newcomer])
    assert (result.stored, result.duplicates, result.conflicts) == (0, 0, 1)
    assert result.conflicting == [newcomer]
    assert result.new == []
    assert store.latest("default", "Temperature", 10) == [original]
    assert store.conflicts() == [newcomer]
    assert series_by_key(store)["default", "Temperature"].count == 1


def test_conflict_within_one_batch(store: Store) -> None:
    original, newcomer = reading(0, value=70.5), reading(0, value=71.5)
    result = store.write_many([original, newcomer])
    assert (result.stored, result.conflicts, result.conflicting) == (1, 1, [newcomer])
    assert store.latest("default", "Temperature", 10) == [original]
    assert store.conflicts() == [newcomer]


def test_conflicts_newest_first_and_limited(store: Store) -> None:
    store.write_many([reading(0), reading(1)])
    first_loser = reading(0, value=1.5)
    second_loser = reading(1, value=2.5, metric="Temperature")
    store.write_many([first_loser])
    store.write_many([second_loser])
    assert store.conflicts() == [second_loser, first_loser]
    assert store.conflicts(limit=1) == [second_loser]


def test_mixed_batch_counts_every_reading_once(store: Store) -> None:
    store.write_many([reading(0), reading(1)])
    batch = [reading(0), reading(1, value=-5.0), reading(2), reading(3), reading(2)]
    result = store.write_many(batch)
    _assert_accounted(result, len(batch))
    assert (result.stored, result.duplicates, result.conflicts) == (2, 2, 1)
    assert result.conflicting == [reading(1, value=-5.0)]
    assert series_by_key(store)["default", "Temperature"].count == 4


def test_restarted_counter_ids_with_new_times_are_all_kept(store: Store) -> None:
    # The original sensor's ID restarts at 0 whenever its program restarts.
    before = [reading(i, reading_id=i) for i in range(4)]
    after = [reading(10 + i, reading_id=i) for i in range(4)]
    assert store.write_many(before).stored == 4
    result = store.write_many(after)
    assert result == WriteResult(stored=4, new=after)
    assert store.latest("default", "Temperature", 100) == before + after
    assert series_by_key(store)["default", "Temperature"].count == 8


def test_same_time_different_ids_are_different_readings(store: Store) -> None:
    a = reading(0, reading_id=1, value=70.0)
    b = reading(0, reading_id=2, value=71.0)
    assert store.write_many([a, b]).stored == 2
    assert sorted(store.latest("default", "Temperature", 10), key=lambda r: r.reading_id) == [a, b]


def test_result_is_accounted_for_random_batches(store: Store) -> None:
    rng = random.Random(11)
    pool = [reading(i, metric=rng.choice(["Temperature", "Humidity"])) for i in range(30)]
    written: set[Reading] = set()
    for _ in range(8):
        batch = [rng.choice(pool) for _ in range(rng.randint(1, 12))]
        result = store.write_many(batch)
        _assert_accounted(result, len(batch))
        assert result.conflicts == 0
        assert result.stored == len(set(batch) - written)
        written |= set(batch)
    counts = {key: info.count for key, info in series_by_key(store).items()}
    for metric in ("Temperature", "Humidity"):
        expected = sorted((r for r in written if r.metric == metric), key=lambda r: r.ts)
        assert store.latest("default", metric, 100) == expected
        assert counts.get(("default", metric), 0) == len(expected)


# --------------------------------------------------------------------------- series


def test_series_are_apart_by_sensor_and_metric(store: Store) -> None:
    kinds = [("pi-1", "Temperature"), ("pi-1", "Humidity"), ("pi-2", "Temperature")]
    batches = {
        kind: [
            reading(i, sensor=kind[0], metric=kind[1], value=float(n * 100 + i))
            for i in range(n + 2)
        ]
        for n, kind in enumerate(kinds)
    }
    store.write_many([r for batch in batches.values() for r in batch])
    for (sensor, metric), batch in batches.items():
        assert store.latest(sensor, metric, 100) == batch
        assert store.range(sensor, metric, T0, T0 + timedelta(days=1)) == batch
    assert store.latest("pi-2", "Humidity", 10) == []
    assert store.latest("pi-3", "Temperature", 10) == []


def test_series_counts_and_latest(store: Store) -> None:
    store.write_many([reading(i, sensor="pi-1") for i in range(3)])
    store.write_many(
        [reading(i, sensor="pi-1", metric="Pressure", value=1000.0 + i) for i in range(5)]
    )
    store.write_many([reading(i, sensor="pi-1") for i in range(2, 4)])  # one new, one duplicate
    store.write_many([reading(1, sensor="pi-1", value=0.0)])  # a conflict: not counted
    infos = series_by_key(store)
    assert set(infos) == {("pi-1", "Temperature"), ("pi-1", "Pressure")}
    assert infos["pi-1", "Temperature"].count == 4
    assert infos["pi-1", "Temperature"].latest == reading(3, sensor="pi-1")
    assert infos["pi-1", "Pressure"].count == 5
    assert infos["pi-1", "Pressure"].latest == reading(
        4, sensor="pi-1", metric="Pressure", value=1004.0
    )


def test_same_key_in_two_series_is_no_conflict(store: Store) -> None:
    a = reading(0, sensor="pi-1", value=70.0)
    b = reading(0, sensor="pi-2", value=75.0)
    c = reading(0, sensor="pi-1", metric="Humidity", value=40.0)
    assert store.write_many([a, b, c]) == WriteResult(stored=3, new=[a, b, c])
    assert store.conflicts() == []


# --------------------------------------------------------------------------- failures


def test_failed_batch_raises_store_error_and_stores_nothing_of_it(store: Store) -> None:
    kept = [reading(i) for i in range(3)]
    store.write_many(kept)
    before = series_by_key(store)
    # Readings are finite by the time they reach a store; a NaN one must fail the batch.
    batch = [
        reading(3),
        reading(0, sensor="new-sensor", metric="Humidity", value=40.0),
        reading(4, value=float("nan")),
    ]
    with pytest.raises(StoreError):
        store.write_many(batch)
    assert store.latest("default", "Temperature", 100) == kept
    assert store.latest("new-sensor", "Humidity", 100) == []
    assert series_by_key(store) == before
    # The store is still usable, and the good readings of that batch go in when resent.
    result = store.write_many(batch[:2])
    assert result == WriteResult(stored=2, new=batch[:2])
    assert store.latest("default", "Temperature", 100) == [*kept, batch[0]]
    assert store.latest("new-sensor", "Humidity", 100) == [batch[1]]
    assert series_by_key(store)["new-sensor", "Humidity"].count == 1


def test_closed_store_raises_store_error(store: Store) -> None:
    store.write_many([reading(0)])
    store.close()
    with pytest.raises(StoreError):
        store.write_many([reading(1)])
    with pytest.raises(StoreError):
        store.latest("default", "Temperature", 10)
    with pytest.raises(StoreError):
        store.range("default", "Temperature", T0, T0 + STEP)
    with pytest.raises(StoreError):
        store.series()
    with pytest.raises(StoreError):
        store.conflicts()
    with pytest.raises(StoreError):
        store.ping()
    store.close()  # closing twice is harmless


def test_reads_from_another_thread(store: Store) -> None:
    batch = [reading(i) for i in range(5)]
    store.write_many(batch)
    seen: list[list[Reading]] = []
    worker = threading.Thread(target=lambda: seen.append(store.latest("default", "Temperature", 9)))
    worker.start()
    worker.join(timeout=10)
    assert seen == [batch]
    store.write_many([reading(5)])
    assert store.latest("default", "Temperature", 1) == [reading(5)]


# --------------------------------------------------------------------------- rollups: buckets

_example_ids = itertools.count()


def _fresh_sensor() -> str:
    """A sensor name no earlier hypothesis example used: examples share one store."""
    return f"hyp-{next(_example_ids)}"


DAY = timedelta(days=1)
#: 2024-05-01 23:00 UTC: data around it crosses minute, hour and day boundaries.
BASE = datetime(2024, 5, 1, 23, 0, tzinfo=UTC)
_US = 1_000_000

offset_us = st.one_of(
    st.integers(0, 3 * 86_400 * _US),
    st.integers(3_540 * _US, 3_720 * _US),  # around midnight
    st.sampled_from([0, 1, 59_999_999, 60 * _US, 3_600 * _US - 1, 3_600 * _US, 90_000 * _US]),
)
value_st = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-40, 40).map(lambda i: i / 4),
)


@st.composite
def series_data(draw: st.DrawFn, max_size: int = 60) -> list[tuple[int, float]]:
    """(µs after BASE, value) of readings; several may share a microsecond."""
    return draw(st.lists(st.tuples(offset_us, value_st), max_size=max_size))


def _write_series(
    store: Store, sensor: str, data: list[tuple[int, float]], batches: int = 1
) -> list[Reading]:
    """Write the readings in about ``batches`` batches, so rollups are merged too."""
    readings = [
        Reading(sensor, "Temperature", i, BASE + timedelta(microseconds=off), value)
        for i, (off, value) in enumerate(data)
    ]
    size = max(1, -(-len(readings) // batches))
    for first in range(0, len(readings), size):
        batch = readings[first : first + size]
        assert store.write_many(batch).stored == len(batch)
    return readings


def _span(draw: st.DrawFn) -> tuple[datetime, datetime]:
    a, b = draw(offset_us), draw(offset_us)
    start = BASE + timedelta(microseconds=min(a, b) - draw(st.integers(0, 120 * _US)))
    return start, BASE + timedelta(microseconds=max(a, b) + draw(st.integers(0, 2)))


def brute_buckets(
    readings: list[Reading], start: datetime, end: datetime, width_s: int
) -> list[tuple[datetime, int, float, float, float]]:
    groups: dict[int, list[float]] = {}
    width_us = width_s * _US
    for r in readings:
        if start <= r.ts < end:
            groups.setdefault(to_epoch_us(r.ts) // width_us, []).append(r.value)
    return [
        (from_epoch_us(k * width_us), len(v), math.fsum(v) / len(v), min(v), max(v))
        for k, v in sorted(groups.items())
    ]


def _assert_buckets(got: list[Bucket], expected: list[tuple[Any, ...]]) -> None:
    assert [(b.start, b.count, b.min, b.max) for b in got] == [
        (e[0], e[1], e[3], e[4]) for e in expected
    ]
    for bucket, (*_, low, high) in zip(got, expected, strict=True):
        exact = next(e[2] for e in expected if e[0] == bucket.start)
        assert abs(bucket.mean - exact) <= 1e-9 * max(1.0, abs(low), abs(high))
        assert type(bucket.mean) is float
        assert type(bucket.count) is int


widths = st.one_of(
    st.sampled_from([1, 7, 59, 60, 90, 120, 300, 3600, 5400, 7200, 21600, 86400, 172800]),
    st.integers(1, 3 * 86400),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=series_data(), width_s=widths, draw=st.data())
def test_buckets_equal_brute_force_grouping(
    store: Store, data: list[tuple[int, float]], width_s: int, draw: st.DataObject
) -> None:
    sensor = _fresh_sensor()
    readings = _write_series(store, sensor, data, draw.draw(st.integers(1, 4)))
    start, end = draw.draw(st.composite(lambda d: _span(d))())
    got = store.buckets(sensor, "Temperature", start, end, width_s)
    _assert_buckets(got, brute_buckets(readings, start, end, width_s))


def test_buckets_over_days_use_every_level_and_match(store: Store) -> None:
    rng = random.Random(4)
    readings = [
        reading(i, value=rng.uniform(-30, 30), ts=BASE + timedelta(seconds=37 * i))
        for i in range(8000)  # about 3.4 days
    ]
    for chunk in range(0, len(readings), 1000):
        store.write_many(readings[chunk : chunk + 1000])
    start = BASE + timedelta(seconds=13, microseconds=5)
    end = BASE + timedelta(days=3, hours=2, seconds=1)
    for width_s in (60, 600, 3600, 10800, 86400, 2 * 86400, 1000):
        got = store.buckets("default", "Temperature", start, end, width_s)
        _assert_buckets(got, brute_buckets(readings, start, end, width_s))


def test_buckets_of_nothing(store: Store) -> None:
    assert store.buckets("default", "Temperature", T0, T0 + DAY, 60) == []
    store.write_many([reading(0)])
    assert store.buckets("default", "Temperature", T0 + DAY, T0 + 2 * DAY, 60) == []
    assert store.buckets("default", "Temperature", T0, T0, 60) == []
    assert store.buckets("default", "Temperature", T0 + DAY, T0, 60) == []
    assert store.buckets("default", "Humidity", T0, T0 + DAY, 60) == []
    with pytest.raises(ValueError, match="width"):
        store.buckets("default", "Temperature", T0, T0 + DAY, 0)


def test_bucket_start_is_aligned_even_when_the_range_cuts_it(store: Store) -> None:
    store.write_many([reading(0, ts=BASE + timedelta(minutes=5), value=3.0)])
    (bucket,) = store.buckets(
        "default", "Temperature", BASE + timedelta(minutes=1), BASE + DAY, 3600
    )
    assert bucket == Bucket(BASE, 1, 3.0, 3.0, 3.0)
    assert bucket.start.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- rollups: stats


def brute_stats(readings: list[Reading], start: datetime, end: datetime) -> list[float]:
    return [r.value for r in readings if start <= r.ts < end]


def _assert_stats(stats: IntervalStats, values: list[float]) -> None:
    assert stats.count == len(values)
    if not values:
        assert (stats.mean, stats.std, stats.min, stats.median, stats.max) == (None,) * 5
        assert (stats.q25, stats.q75) == (None, None)
        return
    x = np.array(values)
    scale = max(1.0, float(np.max(np.abs(x))))
    assert stats.min == x.min()
    assert stats.max == x.max()
    assert stats.mean is not None
    assert abs(stats.mean - math.fsum(values) / len(values)) <= 1e-9 * scale
    if len(values) < 2:
        assert stats.std is None
    else:
        assert stats.std is not None
        assert abs(stats.std - float(np.std(x, ddof=1))) <= 1e-6 * scale
    expected = np.quantile(x, [0.25, 0.5, 0.75]).tolist()
    got = [stats.q25, stats.median, stats.q75]
    if stats.quantile_error == 0.0:
        assert got == expected
    else:
        assert stats.quantile_error <= 0.005 + 1e-13 * scale
        for q, e in zip(got, expected, strict=True):
            assert q is not None
            assert abs(q - e) <= stats.quantile_error


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "histograms"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=series_data(), draw=st.data())
def test_interval_stats_equal_brute_force(
    store: Store, exact: bool, data: list[tuple[int, float]], draw: st.DataObject
) -> None:
    store.exact_limit = 10**9 if exact else 0
    sensor = _fresh_sensor()
    readings = _write_series(store, sensor, data, draw.draw(st.integers(1, 4)))
    start, end = draw.draw(st.composite(lambda d: _span(d))())
    stats = store.interval_stats(sensor, "Temperature", start, end)
    assert (stats.start, stats.end) == (start, end)
    values = brute_stats(readings, start, end)
    _assert_stats(stats, values)
    if exact:
        assert stats.quantile_error == 0.0


@pytest.mark.parametrize("limit", [10**9, 5000, 0])
def test_interval_stats_over_days(store: Store, limit: int) -> None:
    store.exact_limit = limit
    rng = random.Random(9)
    readings = [
        reading(i, value=round(rng.gauss(70, 4), 3), ts=BASE + timedelta(seconds=29 * i))
        for i in range(12000)
    ]
    store.write_many(readings)
    for start, end in [
        (BASE + timedelta(seconds=1), BASE + timedelta(days=3, seconds=7)),
        (BASE + timedelta(hours=5), BASE + timedelta(hours=6)),
        (BASE - DAY, BASE + 5 * DAY),
    ]:
        stats = store.interval_stats("default", "Temperature", start, end)
        values = brute_stats(readings, start, end)
        _assert_stats(stats, values)
        if len(values) <= limit:
            assert stats.quantile_error == 0.0
        else:
            assert 0.0 < stats.quantile_error < 0.0051


def test_interval_stats_of_nothing(store: Store) -> None:
    empty = store.interval_stats("default", "Temperature", T0, T0 + DAY)
    assert empty == IntervalStats(T0, T0 + DAY, 0, None, None, None, None, None, None, None, 0.0)
    store.write_many([reading(0, value=5.0)])
    one = store.interval_stats("default", "Temperature", T0, T0 + DAY)
    assert (one.count, one.mean, one.std, one.min, one.median, one.max) == (
        1,
        5.0,
        None,
        5.0,
        5.0,
        5.0,
    )
    assert store.interval_stats("default", "Temperature", T0 + DAY, T0).count == 0


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "histograms"])
def test_huge_values_do_not_break_rollups(store: Store, exact: bool) -> None:
    store.exact_limit = 10**9 if exact else 0
    values = [1e12, -1e12, 3e13, -7.5e14, 1e300, -1e300, 0.5, 70.25]
    store.write_many([reading(i, value=v) for i, v in enumerate(values)])
    stats = store.interval_stats("default", "Temperature", T0, T0 + DAY)
    assert (stats.count, stats.min, stats.max) == (len(values), -1e300, 1e300)
    for q, e in zip(
        [stats.q25, stats.median, stats.q75], np.quantile(values, [0.25, 0.5, 0.75]), strict=True
    ):
        assert q is not None
        assert abs(q - e) <= stats.quantile_error
    (bucket,) = store.buckets("default", "Temperature", T0, T0 + DAY, 86400)
    assert (bucket.count, bucket.min, bucket.max) == (len(values), -1e300, 1e300)


def test_duplicates_conflicts_and_failed_batches_leave_rollups_alone(store: Store) -> None:
    store.exact_limit = 0
    batch = [reading(i, value=float(i % 7)) for i in range(300)]
    store.write_many(batch)
    span = (T0, T0 + DAY)

    def snapshot() -> tuple[Any, ...]:
        return (
            store.buckets("default", "Temperature", *span, 60),
            store.buckets("default", "Temperature", *span, 3600),
            store.buckets("default", "Temperature", *span, 86400),
            store.interval_stats("default", "Temperature", *span),
        )

    before = snapshot()
    store.write_many(batch[::3])  # duplicates
    store.write_many([reading(i, value=-99.0) for i in range(0, 300, 5)])  # conflicts
    store.write_many([batch[1], reading(7, value=1e9), batch[2]])  # both, in one batch
    with pytest.raises(StoreError):
        store.write_many([reading(400, value=1.0), reading(401, value=float("nan"))])
    assert snapshot() == before
    # and a mixed batch adds exactly its new readings
    result = store.write_many([batch[0], reading(300, value=100.0), reading(3, value=-5.0)])
    assert result.stored == 1
    stats = store.interval_stats("default", "Temperature", *span)
    assert stats.count == 301
    assert stats.max == 100.0


def test_rollups_add_up_over_many_small_batches(store: Store) -> None:
    store.exact_limit = 0
    rng = random.Random(2)
    readings = [
        reading(i, value=rng.uniform(0, 10), ts=BASE + timedelta(seconds=50 * i))
        for i in range(2000)
    ]
    shuffled = readings[:]
    rng.shuffle(shuffled)
    position = 0
    while position < len(shuffled):  # batch sizes as ingest makes them, out of order
        size = rng.choice([1, 2, 5, 50, 300])
        store.write_many(shuffled[position : position + size])
        position += size
    start, end = BASE - DAY, BASE + 3 * DAY
    _assert_buckets(
        store.buckets("default", "Temperature", start, end, 3600),
        brute_buckets(readings, start, end, 3600),
    )
    _assert_stats(
        store.interval_stats("default", "Temperature", start, end),
        brute_stats(readings, start, end),
    )


def test_late_readings_into_old_days_count(store: Store) -> None:
    store.exact_limit = 0
    rng = random.Random(6)
    on_time = [
        reading(i, value=round(rng.uniform(60, 70), 2), ts=BASE + timedelta(seconds=60 * i))
        for i in range(4 * 1440)  # four days, one a minute
    ]
    for first in range(0, len(on_time), 700):
        store.write_many(on_time[first : first + 700])
    late = [
        reading(10_000 + i, value=90.0 + i / 100, ts=BASE + timedelta(hours=25, seconds=7 * i))
        for i in range(2000)  # a day's worth of high values, into the second day
    ]
    store.write_many(late[:1000])
    store.write_many(late[1000:])
    everything = on_time + late
    for start, end in [(BASE, BASE + 5 * DAY), (BASE + DAY, BASE + 3 * DAY)]:
        _assert_stats(
            store.interval_stats("default", "Temperature", start, end),
            brute_stats(everything, start, end),
        )


# --------------------------------------------------------------------------- iter_range


@pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
def test_iter_range_streams_every_reading_oldest_first(store: Store, chunk: int) -> None:
    batch = [reading(i) for i in range(20)]
    same_us = [reading(5, reading_id=100 + k, value=float(k)) for k in range(4)]
    store.write_many(list(reversed(batch)) + same_us)
    expected = sorted(batch + same_us, key=lambda r: (r.ts, r.reading_id))
    chunks = list(store.iter_range("default", "Temperature", T0, T0 + DAY, chunk=chunk))
    assert [r for c in chunks for r in c] == expected
    assert all(0 < len(c) <= chunk for c in chunks)
    inner = list(store.iter_range("default", "Temperature", batch[5].ts, batch[9].ts, chunk))
    assert [r for c in inner for r in c] == [
        r for r in expected if batch[5].ts <= r.ts < batch[9].ts
    ]


def test_iter_range_of_nothing(store: Store) -> None:
    assert list(store.iter_range("default", "Temperature", T0, T0 + DAY)) == []
    store.write_many([reading(0)])
    assert list(store.iter_range("default", "Temperature", T0 + STEP, T0 + DAY)) == []
    assert list(store.iter_range("nobody", "Temperature", T0, T0 + DAY)) == []
    with pytest.raises(ValueError, match="chunk"):
        next(store.iter_range("default", "Temperature", T0, T0 + DAY, chunk=0))


def test_iter_range_is_lazy(store: Store) -> None:
    store.write_many([reading(i) for i in range(10)])
    stream = store.iter_range("default", "Temperature", T0, T0 + DAY, chunk=4)
    assert next(stream) == [reading(i) for i in range(4)]
    store.write_many([reading(i) for i in range(10, 12)])  # written while streaming
    rest = [r for c in stream for r in c]
    assert rest[:6] == [reading(i) for i in range(4, 10)]


# --------------------------------------------------------------------------- first_time


def test_first_time(store: Store) -> None:
    assert store.first_time("default", "Temperature") is None
    store.write_many([reading(5), reading(3, sensor="other")])
    assert store.first_time("default", "Temperature") == reading(5).ts
    store.write_many([reading(2)])
    assert store.first_time("default", "Temperature") == reading(2).ts
    assert store.first_time("default", "Humidity") is None


# --------------------------------------------------------------------------- anomalies


def anomaly(i: int, **kwargs: Any) -> AnomalyRecord:
    return AnomalyRecord(reading(i, **kwargs), mean=70.0 + i, std=0.5, z=2.0 + i / 10)


def test_anomalies_round_trip_newest_first(store: Store) -> None:
    assert store.anomalies("default", "Temperature", T0, T0 + DAY) == []
    assert store.anomaly_count("default", "Temperature", T0, T0 + DAY) == 0
    records = [anomaly(i) for i in (3, 1, 8, 5)] + [anomaly(2, metric="Humidity")]
    store.write_many([a.reading for a in records])
    store.record_anomalies(records)
    store.record_anomalies([])
    got = store.anomalies("default", "Temperature", T0, T0 + DAY)
    assert got == [anomaly(i) for i in (8, 5, 3, 1)]
    assert store.anomalies("default", "Temperature", T0, T0 + DAY, limit=2) == got[:2]
    assert store.anomalies("default", "Humidity", T0, T0 + DAY) == [records[-1]]
    assert store.anomaly_count("default", "Temperature", T0, T0 + DAY) == 4
    # [start, end): start inclusive, end exclusive
    assert store.anomalies("default", "Temperature", reading(3).ts, reading(8).ts) == [
        anomaly(5),
        anomaly(3),
    ]
    assert store.anomaly_count("default", "Temperature", reading(3).ts, reading(8).ts) == 2
    assert store.anomaly_count("nobody", "Temperature", T0, T0 + DAY) == 0


def test_recording_anomalies_is_idempotent(store: Store) -> None:
    store.write_many([reading(1), reading(2)])
    store.record_anomalies([anomaly(1), anomaly(2)])
    again = AnomalyRecord(reading(1), mean=0.0, std=1.0, z=9.0)
    store.record_anomalies([again, anomaly(1), anomaly(2)])
    assert store.anomalies("default", "Temperature", T0, T0 + DAY) == [anomaly(2), anomaly(1)]
    assert store.anomaly_count("default", "Temperature", T0, T0 + DAY) == 2


def test_closed_store_raises_store_error_on_rollup_reads(store: Store) -> None:
    store.close()
    for call in (
        lambda: store.buckets("default", "Temperature", T0, T0 + DAY, 60),
        lambda: store.interval_stats("default", "Temperature", T0, T0 + DAY),
        lambda: list(store.iter_range("default", "Temperature", T0, T0 + DAY)),
        lambda: store.first_time("default", "Temperature"),
        lambda: store.record_anomalies([anomaly(0)]),
        lambda: store.anomalies("default", "Temperature", T0, T0 + DAY),
        lambda: store.anomaly_count("default", "Temperature", T0, T0 + DAY),
    ):
        with pytest.raises(StoreError):
            call()


# --------------------------------------------------------------------------- SQLite only


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "officesensor.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(db_path)
    try:
        yield opened
    finally:
        opened.close()


def test_sqlite_data_survives_close_and_reopen(db_path: Path) -> None:
    first = SqliteStore(db_path)
    batch = [reading(i) for i in range(5)]
    first.write_many(batch)
    first.write_many([reading(2, value=-1.0)])
    first.close()
    again = SqliteStore(db_path)
    try:
        assert again.latest("default", "Temperature", 100) == batch
        assert series_by_key(again)["default", "Temperature"].count == 5
        assert again.conflicts() == [reading(2, value=-1.0)]
        assert again.write_many(batch) == WriteResult(duplicates=5)
        assert again.write_many([reading(5)]) == WriteResult(stored=1, new=[reading(5)])
        assert series_by_key(again)["default", "Temperature"].count == 6
    finally:
        again.close()


def test_sqlite_uses_wal_and_records_the_schema_version(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    sqlite_store.write_many([reading(0)])
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()


def test_sqlite_reopening_does_not_migrate_again(db_path: Path) -> None:
    SqliteStore(db_path).close()
    again = SqliteStore(db_path)  # would fail on "table series already exists"
    again.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()


def _newer_schema(path: Path) -> None:
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()


def _not_a_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database file at all" * 100)


def test_sqlite_refuses_a_newer_schema(db_path: Path) -> None:
    _newer_schema(db_path)
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(db_path)


@pytest.mark.parametrize("spoil", [_newer_schema, _not_a_database], ids=lambda f: f.__name__)
def test_sqlite_refused_open_closes_its_connections(
    db_path: Path, spoil: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoil(db_path)
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def tracking_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", tracking_connect)
    with pytest.raises(StoreError):
        SqliteStore(db_path)
    assert opened, "the store did not open the file at all"
    for connection in opened:  # each leaked connection is an open file until collected
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")


def test_sqlite_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "a-directory.db")


def test_sqlite_not_a_database_is_a_store_error(db_path: Path) -> None:
    _not_a_database(db_path)
    with pytest.raises(StoreError):
        SqliteStore(db_path)


# --------------------------------------------------------------------------- SQLite: schema 2


def _v1_database(path: Path, readings: list[Reading]) -> None:
    """A database as the code before rollups (schema version 1) left it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    v1_script = MIGRATIONS[0]
    assert isinstance(v1_script, str)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(v1_script)
        ids: dict[tuple[str, str], int] = {}
        for r in readings:
            key = (r.sensor, r.metric)
            if key not in ids:
                ids[key] = len(ids) + 1
                conn.execute(
                    "INSERT INTO series (id, sensor, metric) VALUES (?, ?, ?)", (ids[key], *key)
                )
            conn.execute(
                "INSERT INTO readings VALUES (?, ?, ?, ?)",
                (ids[key], r.ts_us, r.reading_id, r.value),
            )
            conn.execute("UPDATE series SET count = count + 1 WHERE id = ?", (ids[key],))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()


def _rollup_tables(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        rollup_rows = conn.execute(
            "SELECT s.sensor, s.metric, level, start_s, n, mean, m2, min_value, max_value "
            "FROM rollups JOIN series s ON s.id = series_id ORDER BY 1, 2, 3, 4"
        ).fetchall()
        hist_rows = conn.execute(
            "SELECT s.sensor, s.metric, level, start_s, data "
            "FROM histograms JOIN series s ON s.id = series_id ORDER BY 1, 2, 3, 4"
        ).fetchall()
    finally:
        conn.close()
    return rollup_rows, hist_rows


def _migration_readings() -> list[Reading]:
    rng = random.Random(8)
    readings = []
    for sensor, metric in [("pi-1", "Temperature"), ("pi-1", "Humidity"), ("pi-2", "Temperature")]:
        for i in range(3000):
            ts = BASE + timedelta(seconds=41 * i, microseconds=rng.randrange(1_000_000))
            readings.append(Reading(sensor, metric, i, ts, round(rng.gauss(50, 20), 2)))
        readings.append(Reading(sensor, metric, 10_000, readings[-1].ts, -3.5))  # same µs
    return readings


def test_sqlite_migration_builds_rollups_of_stored_readings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import officesensor.store.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "MIGRATE_CHUNK", 777)  # several chunks per series
    readings = _migration_readings()
    old = tmp_path / "v1.db"
    _v1_database(old, readings)
    migrated = SqliteStore(old, exact_limit=0)
    try:
        assert migrated.latest("pi-1", "Humidity", 1) == [readings[2 * 3001 - 1]]
        start, end = BASE - DAY, BASE + 3 * DAY
        for sensor, metric in [
            ("pi-1", "Temperature"),
            ("pi-1", "Humidity"),
            ("pi-2", "Temperature"),
        ]:
            series = [r for r in readings if (r.sensor, r.metric) == (sensor, metric)]
            for width_s in (60, 3600, 86400, 600):
                _assert_buckets(
                    migrated.buckets(sensor, metric, start, end, width_s),
                    brute_buckets(series, start, end, width_s),
                )
            stats = migrated.interval_stats(sensor, metric, start, end)
            assert stats.quantile_error > 0
            _assert_stats(stats, brute_stats(series, start, end))
    finally:
        migrated.close()
    conn = sqlite3.connect(old)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
    # The same rollups as a store that received the readings through write_many.
    fresh = SqliteStore(tmp_path / "fresh.db")
    for chunk in range(0, len(readings), 500):
        fresh.write_many(readings[chunk : chunk + 500])
    fresh.close()
    got_rollups, got_hists = _rollup_tables(old)
    want_rollups, want_hists = _rollup_tables(tmp_path / "fresh.db")
    assert got_hists == want_hists
    assert [row[:5] + row[7:] for row in got_rollups] == [row[:5] + row[7:] for row in want_rollups]
    for got, want in zip(got_rollups, want_rollups, strict=True):
        assert got[5] == pytest.approx(want[5], rel=1e-12, abs=1e-9)
        assert got[6] == pytest.approx(want[6], rel=1e-9, abs=1e-6)


def test_sqlite_migration_of_an_empty_v1_database(tmp_path: Path) -> None:
    _v1_database(tmp_path / "v1.db", [])
    store = SqliteStore(tmp_path / "v1.db")
    try:
        assert store.series() == []
        store.write_many([reading(0)])
        assert store.interval_stats("default", "Temperature", T0, T0 + DAY).count == 1
    finally:
        store.close()


def test_sqlite_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import officesensor.store.sqlite as sqlite_module

    readings = _migration_readings()[:100]
    path = tmp_path / "v1.db"
    _v1_database(path, readings)

    def broken(*args: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(sqlite_module, "_add_to_rollups", broken)
        with pytest.raises(StoreError, match="disk I/O"):
            SqliteStore(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "rollups" not in tables
    finally:
        conn.close()
    store = SqliteStore(path)  # and the next open migrates
    try:
        stats = store.interval_stats("pi-1", "Temperature", BASE - DAY, BASE + DAY)
        assert stats.count == 100
    finally:
        store.close()


def test_sqlite_rollups_and_anomalies_survive_reopen(db_path: Path) -> None:
    first = SqliteStore(db_path, exact_limit=0)
    first.write_many([reading(i) for i in range(50)])
    first.record_anomalies([anomaly(3)])
    stats = first.interval_stats("default", "Temperature", T0, T0 + DAY)
    first.close()
    again = SqliteStore(db_path, exact_limit=0)
    try:
        assert again.interval_stats("default", "Temperature", T0, T0 + DAY) == stats
        assert again.anomalies("default", "Temperature", T0, T0 + DAY) == [anomaly(3)]
    finally:
        again.close()


def test_sqlite_exact_limit_is_per_store(db_path: Path) -> None:
    store = SqliteStore(db_path)
    try:
        assert store.exact_limit == EXACT_LIMIT
        store.write_many([reading(i) for i in range(10)])
        assert store.interval_stats("default", "Temperature", T0, T0 + DAY).quantile_error == 0
        store.exact_limit = 9
        assert store.interval_stats("default", "Temperature", T0, T0 + DAY).quantile_error > 0
    finally:
        store.close()


def test_sqlite_day_histograms_are_the_merge_of_their_hours(db_path: Path) -> None:
    store = SqliteStore(db_path)
    rng = random.Random(3)
    readings = [
        reading(i, value=round(rng.gauss(0, 30), 1), ts=BASE + timedelta(seconds=97 * i))
        for i in range(4000)  # about 4.5 days
    ]
    for first in range(0, len(readings), 333):
        store.write_many(readings[first : first + 333])
    store.write_many([reading(9999, value=1e200, ts=BASE + timedelta(hours=30))])  # no hist
    store.close()
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT level, start_s, data FROM histograms ORDER BY level, start_s"
        ).fetchall()
    finally:
        conn.close()
    hours = [(start, data) for level, start, data in rows if level == 3600]
    days = {start: data for level, start, data in rows if level == 86400}
    day_starts = sorted({start // 86400 * 86400 for start, _ in hours})
    assert sorted(days) == day_starts[:-1]  # every day but the running one
    for day, data in days.items():
        blobs = [blob for start, blob in hours if day <= start < day + 86400]
        if any(blob is None for blob in blobs):
            assert data is None
        else:
            assert data == merge_blobs(blobs)
    assert sum(data is None for data in days.values()) == 1


def test_sqlite_batch_failing_inside_the_rollups_changes_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import officesensor.store.sqlite as sqlite_module

    store = SqliteStore(db_path, exact_limit=0)
    try:
        readings = [
            reading(i, value=float(i % 13), ts=BASE + timedelta(seconds=40 * i)) for i in range(600)
        ]
        store.write_many(readings[:100])
        real = sqlite_module._maintain_hists

        def failing(*args: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(sqlite_module, "_maintain_hists", failing)
        phantom = [
            reading(1000 + i, value=1e6, ts=BASE + timedelta(seconds=40 * i + 1))
            for i in range(100, 150)
        ]
        with pytest.raises(StoreError):
            store.write_many(phantom)
        monkeypatch.setattr(sqlite_module, "_maintain_hists", real)
        for first in range(100, 600, 50):
            store.write_many(readings[first : first + 50])
        start, end = BASE, BASE + DAY
        _assert_stats(
            store.interval_stats("default", "Temperature", start, end),
            brute_stats(readings, start, end),
        )
        _assert_buckets(
            store.buckets("default", "Temperature", start, end, 60),
            brute_buckets(readings, start, end, 60),
        )
    finally:
        store.close()
