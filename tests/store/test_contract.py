"""The storage contract (officesensor.store): every store passes these tests through the
``store`` fixture (tests/store/conftest.py). SQLite-only checks come last, apart."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from officesensor.errors import StoreError
from officesensor.models import Reading, SeriesInfo, WriteResult
from officesensor.store import Store
from officesensor.store.sqlite import MIGRATIONS, SqliteStore

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
