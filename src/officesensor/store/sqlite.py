"""SQLite store: one writer connection behind a lock, one reader connection per thread, WAL.

Readings live in a WITHOUT ROWID table keyed by (series, time, ID), so a redelivered message
hits the key and is recognised; ``synchronous=FULL`` makes every commit survive power loss.

Rollups (schema version 2, see officesensor.rollups): ``rollups`` holds, per series, level
(bucket width in seconds: 60, 3600, 86400) and bucket start, the bucket's n, mean, m2, min
and max; ``histograms`` holds hour and day value histograms for quartiles. ``write_many``
groups the readings it newly stores per (series, level, bucket) (plain Python for small
batches, numpy for large ones) and folds each group in with one UPSERT (Chan's merge in
SQL), in the same transaction as the readings. An hour gets its histogram when a later hour
of its series is written (from the batch, or the values this writer kept, or else its raw
readings), a day likewise from its hours; a late reading into a bucket that has one rebuilds
it. So the running hour and day are never rewritten per write; readers use raw readings for
hours without a histogram. ``anomalies`` keeps what ingest's z-score flagged.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from officesensor import rollups
from officesensor.errors import StoreError
from officesensor.models import (
    AnomalyRecord,
    Reading,
    SeriesInfo,
    WriteResult,
    from_epoch_us,
    to_epoch_us,
)
from officesensor.rollups import Bucket, IntervalStats, ValueCounts

log = logging.getLogger(__name__)

#: ``interval_stats`` reads raw values (exact quartiles) up to this many readings: a day at
#: a 15 s cadence (5,760). Reading raw values costs about 1 ms per 1,000 and the statistics
#: table asks for six intervals; beyond this, quartiles come from the rollup histograms
#: (quantile_error 0.005 units).
EXACT_LIMIT = 6_000
#: Readings per chunk when migration 2 builds rollups from stored readings.
MIGRATE_CHUNK = 200_000

_US = 1_000_000
_DAY_S = 86_400
_HOUR_S = rollups.HIST_LEVEL_S
#: (series, hour start) -> the values this writer stored in that hour (see _add_to_rollups).
RunningHours = dict[tuple[int, int], list[float]]
_RUNNING_HOURS = 64

_ROLLUP_UPSERT = """
    INSERT INTO rollups (series_id, level, start_s, n, mean, m2, min_value, max_value)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (series_id, level, start_s) DO UPDATE SET
        n = n + excluded.n,
        mean = mean + (excluded.mean - mean) * (CAST(excluded.n AS REAL) / (n + excluded.n)),
        m2 = m2 + excluded.m2 + (excluded.mean - mean) * (excluded.mean - mean)
            * (CAST(n AS REAL) * excluded.n / (n + excluded.n)),
        min_value = min(min_value, excluded.min_value),
        max_value = max(max_value, excluded.max_value)
"""
_V2_TABLES = """
    CREATE TABLE rollups (
        series_id  INTEGER NOT NULL,  -- series (id), no foreign key: it costs every write
        level      INTEGER NOT NULL,  -- bucket width in seconds
        start_s    INTEGER NOT NULL,  -- bucket start in seconds since the epoch, aligned
        n          INTEGER NOT NULL,
        mean       REAL,              -- NULL only if absurd values overflowed it to NaN
        m2         REAL,
        min_value  REAL NOT NULL,
        max_value  REAL NOT NULL,
        PRIMARY KEY (series_id, level, start_s)
    ) WITHOUT ROWID;
    CREATE TABLE histograms (
        series_id  INTEGER NOT NULL,  -- series (id)
        level      INTEGER NOT NULL,
        start_s    INTEGER NOT NULL,
        data       BLOB,              -- NULL: the bucket holds a value too large to quantize
        PRIMARY KEY (series_id, level, start_s)
    ) WITHOUT ROWID;
    CREATE TABLE anomalies (
        series_id  INTEGER NOT NULL REFERENCES series (id),
        ts_us      INTEGER NOT NULL,
        reading_id INTEGER NOT NULL,
        value      REAL NOT NULL,
        mean       REAL,
        std        REAL,
        z          REAL,
        PRIMARY KEY (series_id, ts_us, reading_id)
    ) WITHOUT ROWID;
"""


def _migration_2(conn: sqlite3.Connection) -> None:
    """Rollup, histogram and anomaly tables, and the rollups of the readings already stored
    (read in chunks of MIGRATE_CHUNK, so a big database is never loaded at once)."""
    for statement in _V2_TABLES.split(";"):  # executescript would commit first
        if statement.strip():
            conn.execute(statement)
    series_ids = [row[0] for row in conn.execute("SELECT id FROM series ORDER BY id")]
    for series_id in series_ids:
        last: tuple[int, int] | None = None
        done = 0
        while True:
            if last is None:
                rows = conn.execute(
                    "SELECT ts_us, reading_id, value FROM readings WHERE series_id = ? "
                    "ORDER BY ts_us, reading_id LIMIT ?",
                    (series_id, MIGRATE_CHUNK),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT ts_us, reading_id, value FROM readings WHERE series_id = ? "
                    "AND ts_us >= ? AND (ts_us > ? OR reading_id > ?) "
                    "ORDER BY ts_us, reading_id LIMIT ?",
                    (series_id, last[0], last[0], last[1], MIGRATE_CHUNK),
                ).fetchall()
            if not rows:
                break
            ts = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            values = np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows))
            _add_to_rollups(conn, np.full(len(rows), series_id, dtype=np.int64), ts, values)
            done += len(rows)
            last = (rows[-1][0], rows[-1][1])
            if len(rows) < MIGRATE_CHUNK:
                break
        log.info("built the rollups of series %d from %d readings", series_id, done)


def _add_to_rollups(
    conn: sqlite3.Connection,
    series: Sequence[int] | rollups.Int64Array,
    ts_us: Sequence[int] | rollups.Int64Array,
    values: Sequence[float] | rollups.FloatArray,
    running: RunningHours | None = None,
) -> None:
    """Fold newly stored readings into the rollups: one UPSERT per (series, level, bucket),
    then the histograms that became due. ``running`` keeps the values this writer stored
    per recent hour, so an hour's histogram is built without reading it back."""
    rows, hour_values = rollups.rollup_rows(series, ts_us, values)
    conn.executemany(_ROLLUP_UPSERT, rows)
    batch_n = {(row[0], row[2]): row[3] for row in rows if row[1] == _HOUR_S}
    if running is not None:
        for key, chunk in hour_values.items():
            running.setdefault(key, []).extend(
                chunk.tolist() if isinstance(chunk, np.ndarray) else chunk
            )
    for series_id in sorted({sid for sid, _ in hour_values}):
        hours = sorted(hour for sid, hour in hour_values if sid == series_id)
        _maintain_hists(conn, series_id, hours, hour_values, batch_n, running)
    if running is not None and len(running) > _RUNNING_HOURS:
        for key in sorted(running, key=lambda k: k[1])[: len(running) - _RUNNING_HOURS]:
            del running[key]


def _maintain_hists(
    conn: sqlite3.Connection,
    series_id: int,
    hours: list[int],
    hour_values: rollups.HourValues,
    batch_n: dict[tuple[int, int], int],
    running: RunningHours | None,
) -> None:
    """After a write into ``hours`` of a series: an hour gets its histogram once a later
    hour is written (so the running hour, read raw, is not rewritten by every write), a day
    once a later day is; a late reading into an hour or day that has one rebuilds it."""
    days = sorted({hour // _DAY_S * _DAY_S for hour in hours})
    have = set(
        conn.execute(
            "SELECT level, start_s FROM histograms "
            "WHERE series_id = ? AND level = ? AND start_s >= ? AND start_s <= ? UNION ALL "
            "SELECT level, start_s FROM histograms "
            "WHERE series_id = ? AND level = ? AND start_s >= ? AND start_s <= ?",
            (
                *(series_id, _HOUR_S, hours[0] - _HOUR_S, hours[-1]),
                *(series_id, _DAY_S, days[0] - _DAY_S, days[-1]),
            ),
        ).fetchall()
    )
    for hour in hours:
        if (_HOUR_S, hour) in have:  # a late reading
            _build_hour_hist(conn, series_id, hour, hour_values, batch_n, running)
        if (_HOUR_S, hour - _HOUR_S) not in have:
            _build_hour_hist(conn, series_id, hour - _HOUR_S, hour_values, batch_n, running)
            have.add((_HOUR_S, hour - _HOUR_S))
    for day in days:
        if (_DAY_S, day) in have:
            _build_day_hist(conn, series_id, day)
        if (_DAY_S, day - _DAY_S) not in have:
            _build_day_hist(conn, series_id, day - _DAY_S)


def _build_hour_hist(
    conn: sqlite3.Connection,
    series_id: int,
    hour: int,
    hour_values: rollups.HourValues,
    batch_n: dict[tuple[int, int], int],
    running: RunningHours | None,
) -> None:
    row = conn.execute(
        "SELECT n FROM rollups WHERE series_id = ? AND level = ? AND start_s = ?",
        (series_id, _HOUR_S, hour),
    ).fetchone()
    if row is None:  # no reading in that hour
        return
    stored_n = row[0]
    key = (series_id, hour)
    kept = None if running is None else running.pop(key, None)
    values: rollups.FloatArray | list[float]
    if batch_n.get(key) == stored_n:  # the batch has all its readings
        values = hour_values[key]
    elif kept is not None and len(kept) == stored_n:  # so had this writer
        values = kept
    else:
        values = _hour_values(conn, series_id, hour)
    _put_hist(conn, series_id, _HOUR_S, hour, rollups.hist_of(values))


def _build_day_hist(conn: sqlite3.Connection, series_id: int, day: int) -> None:
    hours = conn.execute(
        "SELECT r.start_s, h.start_s IS NOT NULL, h.data FROM rollups r "
        "LEFT JOIN histograms h ON h.series_id = r.series_id AND h.level = r.level "
        "AND h.start_s = r.start_s "
        "WHERE r.series_id = ? AND r.level = ? AND r.start_s >= ? AND r.start_s < ?",
        (series_id, _HOUR_S, day, day + _DAY_S),
    ).fetchall()
    if not hours:
        return
    blobs: list[bytes | None] = []
    for start_s, has_hist, data in hours:
        if not has_hist:  # e.g. the last hour before a gap: build it now
            data = rollups.hist_of(_hour_values(conn, series_id, start_s))
            _put_hist(conn, series_id, _HOUR_S, start_s, data)
        blobs.append(data)
    complete = [blob for blob in blobs if blob is not None]
    merged = rollups.merge_blobs(complete) if len(complete) == len(blobs) else None
    _put_hist(conn, series_id, _DAY_S, day, merged)


def _put_hist(
    conn: sqlite3.Connection, series_id: int, level: int, start_s: int, data: bytes | None
) -> None:
    conn.execute(
        "INSERT INTO histograms (series_id, level, start_s, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (series_id, level, start_s) DO UPDATE SET data = excluded.data",
        (series_id, level, start_s, data),
    )


def _hour_values(conn: sqlite3.Connection, series_id: int, hour: int) -> rollups.FloatArray:
    return _raw_values(conn, series_id, hour * _US, (hour + _HOUR_S) * _US)


def _raw_values(
    conn: sqlite3.Connection, series_id: int, lo_us: int, hi_us: int
) -> rollups.FloatArray:
    """The values of a series' readings with lo <= time < hi."""
    rows = conn.execute(
        "SELECT value FROM readings WHERE series_id = ? AND ts_us >= ? AND ts_us < ?",
        (series_id, lo_us, hi_us),
    ).fetchall()
    return np.fromiter((row[0] for row in rows), dtype=np.float64, count=len(rows))


Migration = str | Callable[[sqlite3.Connection], None]

#: Schema migrations, applied in order; PRAGMA user_version records how many have run.
#: A string is an SQL script; a callable runs inside the migration's transaction.
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE series (
        id       INTEGER PRIMARY KEY,
        sensor   TEXT NOT NULL,
        metric   TEXT NOT NULL,
        count    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (sensor, metric)
    );
    CREATE TABLE readings (
        series_id  INTEGER NOT NULL REFERENCES series (id),
        ts_us      INTEGER NOT NULL,
        reading_id INTEGER NOT NULL,
        value      REAL NOT NULL,
        PRIMARY KEY (series_id, ts_us, reading_id)
    ) WITHOUT ROWID;
    CREATE TABLE conflicts (
        series_id   INTEGER NOT NULL REFERENCES series (id),
        ts_us       INTEGER NOT NULL,
        reading_id  INTEGER NOT NULL,
        value       REAL NOT NULL,
        received_us INTEGER NOT NULL
    );
    """,
    _migration_2,
)


class SqliteStore:
    def __init__(self, path: Path | str, *, exact_limit: int = EXACT_LIMIT) -> None:
        self.path = Path(path)
        self.exact_limit = exact_limit
        self.read_only = False  # see Store.read_only
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._series_ids: dict[tuple[str, str], int] = {}
        self._committed_ids: dict[tuple[str, str], int] = {}  # for readers: never changes
        self._running_hours: RunningHours = {}
        self._closed = False
        with self._translate_errors("open"):
            self._writer = self._connect()
            try:
                self._migrate()
            except BaseException:
                self._writer.close()
                raise

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _translate_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {action} failed on {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._write_lock:
            version = self._writer.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this program's "
                    f"{len(MIGRATIONS)}: upgrade officesensor"
                )
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                log.info("migrating %s to schema version %d", self.path, number)
                if isinstance(step, str):
                    self._writer.executescript(
                        f"BEGIN IMMEDIATE; {step}; PRAGMA user_version={number}; COMMIT;"
                    )
                    continue
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    step(self._writer)
                    self._writer.execute(f"PRAGMA user_version={number}")
                    self._writer.execute("COMMIT")
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise

    # ------------------------------------------------------------------ writes

    def write_many(self, readings: Sequence[Reading]) -> WriteResult:
        result = WriteResult()
        if not readings:
            return result
        with self._write_lock, self._translate_errors("write"):
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = []
                last_key, series_id = None, 0
                for reading in readings:
                    key = (reading.sensor, reading.metric)
                    if key != last_key:
                        series_id = self._series_id(conn, *key)
                        last_key = key
                    rows.append(
                        (series_id, to_epoch_us(reading.ts), reading.reading_id, reading.value)
                    )
                if self._insert_all_new(conn, rows):
                    result.stored = len(readings)
                    result.new = list(readings)
                    stored = rows
                else:
                    stored = self._insert_one_by_one(conn, readings, rows, result)
                stored_per_series: dict[int, int] = {}
                for row in stored:
                    stored_per_series[row[0]] = stored_per_series.get(row[0], 0) + 1
                conn.executemany(
                    "UPDATE series SET count = count + ? WHERE id = ?",
                    [(n, sid) for sid, n in stored_per_series.items()],
                )
                if stored:
                    series_col, ts_col, _, value_col = zip(*stored, strict=True)
                    _add_to_rollups(conn, series_col, ts_col, value_col, self._running_hours)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._series_ids.clear()  # ids created in the rolled-back transaction are gone
                self._running_hours.clear()  # and so are the values it stored
                raise
        return result

    @staticmethod
    def _insert_all_new(conn: sqlite3.Connection, rows: list[tuple[int, int, int, float]]) -> bool:
        """The common case at once: insert every row, keep them if all were new (no key hit
        a stored reading or an earlier one of the batch); else undo and return False."""
        conn.execute("SAVEPOINT batch")
        before = conn.total_changes
        conn.executemany(
            "INSERT INTO readings (series_id, ts_us, reading_id, value) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )
        all_new = conn.total_changes - before == len(rows)
        if not all_new:
            conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        return all_new

    @staticmethod
    def _insert_one_by_one(
        conn: sqlite3.Connection,
        readings: Sequence[Reading],
        rows: list[tuple[int, int, int, float]],
        result: WriteResult,
    ) -> list[tuple[int, int, int, float]]:
        """Insert row by row, telling new readings from duplicates and conflicts; returns
        the rows stored."""
        stored = []
        for reading, row in zip(readings, rows, strict=True):
            cursor = conn.execute(
                "INSERT INTO readings (series_id, ts_us, reading_id, value) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                row,
            )
            if cursor.rowcount == 1:
                result.stored += 1
                result.new.append(reading)
                stored.append(row)
                continue
            key = row[:3]
            (existing,) = conn.execute(
                "SELECT value FROM readings WHERE series_id = ? AND ts_us = ? AND reading_id = ?",
                key,
            ).fetchone()
            if existing == reading.value:
                result.duplicates += 1
            else:
                result.conflicts += 1
                result.conflicting.append(reading)
                conn.execute(
                    "INSERT INTO conflicts VALUES (?, ?, ?, ?, ?)",
                    (*key, reading.value, time.time_ns() // 1000),
                )
        return stored

    def _series_id(self, conn: sqlite3.Connection, sensor: str, metric: str) -> int:
        key = (sensor, metric)
        series_id = self._series_ids.get(key)
        if series_id is None:
            conn.execute(
                "INSERT INTO series (sensor, metric) VALUES (?, ?) ON CONFLICT DO NOTHING", key
            )
            (series_id,) = conn.execute(
                "SELECT id FROM series WHERE sensor = ? AND metric = ?", key
            ).fetchone()
            self._series_ids[key] = series_id
        return series_id

    # ------------------------------------------------------------------ reads

    def latest(
        self, sensor: str, metric: str, limit: int, before: datetime | None = None
    ) -> list[Reading]:
        before_us = 2**63 - 1 if before is None else to_epoch_us(before)
        with self._translate_errors("read"):
            rows = (
                self._reader()
                .execute(
                    "SELECT r.ts_us, r.reading_id, r.value FROM readings r "
                    "JOIN series s ON s.id = r.series_id WHERE s.sensor = ? AND s.metric = ? "
                    "AND r.ts_us < ? ORDER BY r.ts_us DESC, r.reading_id DESC LIMIT ?",
                    (sensor, metric, before_us, limit),
                )
                .fetchall()
            )
        return [_reading(sensor, metric, row) for row in reversed(rows)]

    def range(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int | None = None
    ) -> list[Reading]:
        with self._translate_errors("read"):
            rows = (
                self._reader()
                .execute(
                    "SELECT r.ts_us, r.reading_id, r.value FROM readings r "
                    "JOIN series s ON s.id = r.series_id WHERE s.sensor = ? AND s.metric = ? "
                    "AND r.ts_us >= ? AND r.ts_us < ? ORDER BY r.ts_us, r.reading_id LIMIT ?",
                    (
                        sensor,
                        metric,
                        to_epoch_us(start),
                        to_epoch_us(end),
                        -1 if limit is None else limit,
                    ),
                )
                .fetchall()
            )
        return [_reading(sensor, metric, row) for row in rows]

    def series(self) -> list[SeriesInfo]:
        with self._translate_errors("read"):
            conn = self._reader()
            rows = conn.execute(
                "SELECT id, sensor, metric, count FROM series ORDER BY sensor, metric"
            ).fetchall()
            infos = []
            for series_id, sensor, metric, count in rows:
                last = conn.execute(
                    "SELECT ts_us, reading_id, value FROM readings WHERE series_id = ? "
                    "ORDER BY ts_us DESC, reading_id DESC LIMIT 1",
                    (series_id,),
                ).fetchone()
                latest = _reading(sensor, metric, last) if last else None
                infos.append(SeriesInfo(sensor, metric, count, latest))
        return infos

    def conflicts(self, limit: int = 100) -> list[Reading]:
        with self._translate_errors("read"):
            rows = (
                self._reader()
                .execute(
                    "SELECT s.sensor, s.metric, c.ts_us, c.reading_id, c.value FROM conflicts c "
                    "JOIN series s ON s.id = c.series_id ORDER BY c.received_us DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [_reading(sensor, metric, rest) for sensor, metric, *rest in rows]

    # ------------------------------------------------------------------ rollup reads

    def _lookup_series(self, conn: sqlite3.Connection, sensor: str, metric: str) -> int | None:
        key = (sensor, metric)
        series_id = self._committed_ids.get(key)
        if series_id is None:
            row = conn.execute(
                "SELECT id FROM series WHERE sensor = ? AND metric = ?", key
            ).fetchone()
            if row is None:
                return None
            series_id = self._committed_ids[key] = int(row[0])
        return series_id

    def buckets(
        self, sensor: str, metric: str, start: datetime, end: datetime, width_s: int
    ) -> list[Bucket]:
        if width_s <= 0:
            raise ValueError("width_s must be positive")
        start_us, end_us = to_epoch_us(start), to_epoch_us(end)
        if start_us >= end_us:
            return []
        width_us = width_s * _US
        origin_us = rollups.floor_to(start_us, width_us)
        origin_s = origin_us // _US
        # bucket index (from origin) -> [count, sum, min, max]
        acc: dict[int, list[float]] = {}
        with self._translate_errors("read"):
            conn = self._reader()
            series_id = self._lookup_series(conn, sensor, metric)
            if series_id is None:
                return []
            for piece in rollups.split_range(start_us, end_us, rollups.levels_for_width(width_s)):
                if piece.width_s == 0:
                    rows = conn.execute(
                        "SELECT (ts_us - ?) / ?, COUNT(*), SUM(value), MIN(value), MAX(value) "
                        "FROM readings WHERE series_id = ? AND ts_us >= ? AND ts_us < ? "
                        "GROUP BY 1",
                        (origin_us, width_us, series_id, piece.lo_us, piece.hi_us),
                    ).fetchall()
                else:
                    rows = conn.execute(
                        "SELECT (start_s - ?) / ?, SUM(n), SUM(n * mean), MIN(min_value), "
                        "MAX(max_value) FROM rollups WHERE series_id = ? AND level = ? "
                        "AND start_s >= ? AND start_s < ? GROUP BY 1",
                        (
                            origin_s,
                            width_s,
                            series_id,
                            piece.width_s,
                            piece.lo_us // _US,
                            piece.hi_us // _US,
                        ),
                    ).fetchall()
                for index, count, total, low, high in rows:
                    total = math.nan if total is None else total
                    seen = acc.get(index)
                    if seen is None:
                        acc[index] = [count, total, low, high]
                    else:
                        seen[0] += count
                        seen[1] += total
                        seen[2] = min(seen[2], low)
                        seen[3] = max(seen[3], high)
        return [
            Bucket(
                from_epoch_us(origin_us + index * width_us),
                int(count),
                float(total / count),
                float(low),
                float(high),
            )
            for index, (count, total, low, high) in sorted(acc.items())
        ]

    def interval_stats(
        self, sensor: str, metric: str, start: datetime, end: datetime
    ) -> IntervalStats:
        start_us, end_us = to_epoch_us(start), to_epoch_us(end)
        empty = IntervalStats(start, end, 0, None, None, None, None, None, None, None, 0.0)
        if start_us >= end_us:
            return empty
        with self._translate_errors("read"):
            conn = self._reader()
            series_id = self._lookup_series(conn, sensor, metric)
            if series_id is None:
                return empty
            count = sum(
                self._count(conn, series_id, piece)
                for piece in rollups.split_range(start_us, end_us)
            )
            if count == 0:
                return empty
            if count <= self.exact_limit:
                values = _raw_values(conn, series_id, start_us, end_us)
                return _exact_stats(start, end, values)
            return self._approximate_stats(conn, series_id, start, end)

    def _count(self, conn: sqlite3.Connection, series_id: int, piece: rollups.Piece) -> int:
        if piece.width_s == 0:
            row = conn.execute(
                "SELECT COUNT(*) FROM readings WHERE series_id = ? AND ts_us >= ? AND ts_us < ?",
                (series_id, piece.lo_us, piece.hi_us),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT SUM(n) FROM rollups WHERE series_id = ? AND level = ? "
                "AND start_s >= ? AND start_s < ?",
                (series_id, piece.width_s, piece.lo_us // _US, piece.hi_us // _US),
            ).fetchone()
        return int(row[0] or 0)

    def _approximate_stats(
        self, conn: sqlite3.Connection, series_id: int, start: datetime, end: datetime
    ) -> IntervalStats:
        """Moments from hour and day rollups plus raw edges; quartiles from hour histograms
        plus the raw edges' values."""
        moments: rollups.Moments | None = None
        counts = ValueCounts()
        hist_lo, hist_hi = None, None
        levels = (rollups.HIST_LEVEL_S, *(w for w in rollups.LEVELS_S if w > 3600))
        for piece in rollups.split_range(to_epoch_us(start), to_epoch_us(end), levels):
            if piece.width_s == 0:
                values = _raw_values(conn, series_id, piece.lo_us, piece.hi_us)
                moments = rollups.merge_moments(moments, rollups.moments_of(values))
                counts.add_values(values)
                continue
            hist_lo = piece.lo_us if hist_lo is None else min(hist_lo, piece.lo_us)
            hist_hi = piece.hi_us if hist_hi is None else max(hist_hi, piece.hi_us)
            rows = conn.execute(
                "SELECT n, mean, m2, min_value, max_value FROM rollups WHERE series_id = ? "
                "AND level = ? AND start_s >= ? AND start_s < ?",
                (series_id, piece.width_s, piece.lo_us // _US, piece.hi_us // _US),
            ).fetchall()
            if rows:
                table = np.array(rows, dtype=np.float64)
                part = rollups.combine_moments(
                    table[:, 0].astype(np.int64), table[:, 1], table[:, 2], table[:, 3], table[:, 4]
                )
                moments = rollups.merge_moments(moments, part)
        if hist_lo is not None and hist_hi is not None:
            self._gather_hists(conn, series_id, hist_lo, hist_hi, counts)
        assert moments is not None  # the count said there are readings
        values, weights = counts.sorted_counts()
        q25, median, q75 = rollups.weighted_quantiles(values, weights)
        error = rollups.quantile_error_bound(moments.min, moments.max) if counts.quantized else 0.0
        return IntervalStats(
            start=start,
            end=end,
            count=moments.n,
            mean=moments.mean,
            std=moments.std,
            min=moments.min,
            q25=max(moments.min, min(q25, moments.max)),
            median=max(moments.min, min(median, moments.max)),
            q75=max(moments.min, min(q75, moments.max)),
            max=moments.max,
            quantile_error=error,
        )

    def _gather_hists(
        self, conn: sqlite3.Connection, series_id: int, lo_us: int, hi_us: int, counts: ValueCounts
    ) -> None:
        """Add the values of [lo, hi) (hour-aligned) to ``counts``: day histograms where
        there are some, hour histograms elsewhere, raw values of hours without one."""
        day_us = _DAY_S * _US
        days_lo, days_hi = rollups.ceil_to(lo_us, day_us), rollups.floor_to(hi_us, day_us)
        blobs: list[bytes] = []
        hour_runs: list[tuple[int, int]] = []
        cursor = lo_us
        if days_lo < days_hi:
            for start_s, data in conn.execute(
                "SELECT start_s, data FROM histograms WHERE series_id = ? AND level = ? "
                "AND start_s >= ? AND start_s < ? AND data IS NOT NULL ORDER BY start_s",
                (series_id, _DAY_S, days_lo // _US, days_hi // _US),
            ):
                if cursor < start_s * _US:
                    hour_runs.append((cursor, start_s * _US))
                cursor = start_s * _US + day_us
                blobs.append(data)
        if cursor < hi_us:
            hour_runs.append((cursor, hi_us))
        for run_lo, run_hi in hour_runs:
            for start_s, data in conn.execute(
                "SELECT r.start_s, h.data FROM rollups r LEFT JOIN histograms h "
                "ON h.series_id = r.series_id AND h.level = r.level AND h.start_s = r.start_s "
                "WHERE r.series_id = ? AND r.level = ? AND r.start_s >= ? AND r.start_s < ?",
                (series_id, _HOUR_S, run_lo // _US, run_hi // _US),
            ).fetchall():
                if data is not None:
                    blobs.append(data)
                else:  # the running hour, or a value too large to quantize: raw, exactly
                    counts.add_values(_hour_values(conn, series_id, start_s))
        counts.add_blobs(blobs)

    def iter_range(
        self, sensor: str, metric: str, start: datetime, end: datetime, chunk: int = 10_000
    ) -> Iterator[list[Reading]]:
        if chunk < 1:
            raise ValueError("chunk must be positive")
        start_us, end_us = to_epoch_us(start), to_epoch_us(end)
        with self._translate_errors("read"):
            series_id = self._lookup_series(self._reader(), sensor, metric)
        if series_id is None:
            return
        last: tuple[int, int] | None = None
        while True:
            with self._translate_errors("read"):
                conn = self._reader()
                if last is None:
                    rows = conn.execute(
                        "SELECT ts_us, reading_id, value FROM readings WHERE series_id = ? "
                        "AND ts_us >= ? AND ts_us < ? ORDER BY ts_us, reading_id LIMIT ?",
                        (series_id, start_us, end_us, chunk),
                    ).fetchall()
                else:
                    rows = conn.execute(
                        "SELECT ts_us, reading_id, value FROM readings WHERE series_id = ? "
                        "AND ts_us >= ? AND (ts_us > ? OR reading_id > ?) AND ts_us < ? "
                        "ORDER BY ts_us, reading_id LIMIT ?",
                        (series_id, last[0], last[0], last[1], end_us, chunk),
                    ).fetchall()
            if not rows:
                return
            yield [_reading(sensor, metric, row) for row in rows]
            if len(rows) < chunk:
                return
            last = (int(rows[-1][0]), int(rows[-1][1]))

    def first_time(self, sensor: str, metric: str) -> datetime | None:
        with self._translate_errors("read"):
            conn = self._reader()
            series_id = self._lookup_series(conn, sensor, metric)
            if series_id is None:
                return None
            row = conn.execute(
                "SELECT ts_us FROM readings WHERE series_id = ? ORDER BY ts_us LIMIT 1",
                (series_id,),
            ).fetchone()
        return None if row is None else from_epoch_us(int(row[0]))

    # ------------------------------------------------------------------ anomalies

    def record_anomalies(self, items: Sequence[AnomalyRecord]) -> None:
        if not items:
            return
        with self._write_lock, self._translate_errors("write"):
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = [
                    (
                        self._series_id(conn, item.reading.sensor, item.reading.metric),
                        item.reading.ts_us,
                        item.reading.reading_id,
                        item.reading.value,
                        item.mean,
                        item.std,
                        item.z,
                    )
                    for item in items
                ]
                conn.executemany(
                    "INSERT INTO anomalies (series_id, ts_us, reading_id, value, mean, std, z) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._series_ids.clear()
                raise

    def anomalies(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int = 1000
    ) -> list[AnomalyRecord]:
        with self._translate_errors("read"):
            conn = self._reader()
            series_id = self._lookup_series(conn, sensor, metric)
            if series_id is None:
                return []
            rows = conn.execute(
                "SELECT ts_us, reading_id, value, mean, std, z FROM anomalies "
                "WHERE series_id = ? AND ts_us >= ? AND ts_us < ? "
                "ORDER BY ts_us DESC, reading_id DESC LIMIT ?",
                (series_id, to_epoch_us(start), to_epoch_us(end), limit),
            ).fetchall()
        return [
            AnomalyRecord(
                _reading(sensor, metric, (ts_us, reading_id, value)),
                _float(mean),
                _float(std),
                _float(z),
            )
            for ts_us, reading_id, value, mean, std, z in rows
        ]

    def anomaly_count(self, sensor: str, metric: str, start: datetime, end: datetime) -> int:
        with self._translate_errors("read"):
            conn = self._reader()
            series_id = self._lookup_series(conn, sensor, metric)
            if series_id is None:
                return 0
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM anomalies WHERE series_id = ? AND ts_us >= ? AND ts_us < ?",
                (series_id, to_epoch_us(start), to_epoch_us(end)),
            ).fetchone()
        return int(count)

    # ------------------------------------------------------------------ health

    def ping(self) -> None:
        with self._translate_errors("ping"):
            self._reader().execute("SELECT 1 FROM series LIMIT 1").fetchall()

    def probe_write(self) -> None:
        # Takes SQLite's write lock and gives it back: fails while another connection holds
        # it past the busy timeout (the usual "database is locked" outage).
        with self._write_lock, self._translate_errors("write probe"):
            self._writer.execute("BEGIN IMMEDIATE")
            self._writer.execute("ROLLBACK")

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()


def _reading(sensor: str, metric: str, row: Sequence[int | float]) -> Reading:
    ts_us, reading_id, value = row
    return Reading(sensor, metric, int(reading_id), from_epoch_us(int(ts_us)), float(value))


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _exact_stats(start: datetime, end: datetime, values: rollups.FloatArray) -> IntervalStats:
    moments = rollups.moments_of(values)
    assert moments is not None
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if values.size >= 2 else None
    q25, median, q75 = rollups.exact_quartiles(values)
    return IntervalStats(
        start=start,
        end=end,
        count=moments.n,
        mean=mean,
        std=std,
        min=moments.min,
        q25=q25,
        median=median,
        q75=q75,
        max=moments.max,
        quantile_error=0.0,
    )
