"""SQLite store: one writer connection behind a lock, one reader connection per thread, WAL.

Readings live in a WITHOUT ROWID table keyed by (series, time, ID), so a redelivered message
hits the key and is recognised; ``synchronous=FULL`` makes every commit survive power loss.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from officesensor.errors import StoreError
from officesensor.models import Reading, SeriesInfo, WriteResult, from_epoch_us, to_epoch_us

log = logging.getLogger(__name__)

#: Schema migrations, applied in order; PRAGMA user_version records how many have run.
MIGRATIONS: tuple[str, ...] = (
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
)


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._series_ids: dict[tuple[str, str], int] = {}
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
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                log.info("migrating %s to schema version %d", self.path, number)
                self._writer.executescript(
                    f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;"
                )

    # ------------------------------------------------------------------ writes

    def write_many(self, readings: Sequence[Reading]) -> WriteResult:
        result = WriteResult()
        if not readings:
            return result
        with self._write_lock, self._translate_errors("write"):
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored_per_series: dict[int, int] = {}
                for reading in readings:
                    series_id = self._series_id(conn, reading.sensor, reading.metric)
                    key = (series_id, to_epoch_us(reading.ts), reading.reading_id)
                    cursor = conn.execute(
                        "INSERT INTO readings (series_id, ts_us, reading_id, value) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (*key, reading.value),
                    )
                    if cursor.rowcount == 1:
                        result.stored += 1
                        result.new.append(reading)
                        stored_per_series[series_id] = stored_per_series.get(series_id, 0) + 1
                        continue
                    (existing,) = conn.execute(
                        "SELECT value FROM readings "
                        "WHERE series_id = ? AND ts_us = ? AND reading_id = ?",
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
                conn.executemany(
                    "UPDATE series SET count = count + ? WHERE id = ?",
                    [(n, sid) for sid, n in stored_per_series.items()],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._series_ids.clear()  # ids created in the rolled-back transaction are gone
                raise
        return result

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
