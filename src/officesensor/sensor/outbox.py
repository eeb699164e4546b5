"""The sensor's outbox: MQTT messages kept on disk until the broker has acknowledged them.

A SQLite file holding messages in the order they were taken (``seq``, never reused), so a
reading survives a broker outage, a crash of the sensor program and a power cut of the Pi
(WAL with ``synchronous=FULL``: ``add`` returns only once the message is on disk).

The outbox is bounded: beyond ``max_messages`` the oldest messages are dropped, and messages
older than ``max_age`` are dropped too. Every drop is logged and counted, and the count is kept
in the file, so it survives restarts.

One process at a time: the file is opened in SQLite's exclusive locking mode, so a second
sensor program pointed at the same outbox fails at start-up instead of sending everything
twice. An ``Outbox`` object is not thread-safe; its owner uses it from one thread at a time.
It never reads the clock: callers pass ``now``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from officesensor.errors import StoreError
from officesensor.models import from_epoch_us, to_epoch_us
from officesensor.private_db import Schema, open_private

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_us INTEGER NOT NULL
    )""",
    "CREATE INDEX messages_by_created ON messages (created_us)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO counters (name, value) VALUES ('dropped', 0)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_OUR_TABLES = frozenset({"messages", "counters", "sqlite_sequence"})
_FILE_SCHEMA = Schema(SCHEMA_VERSION, _OUR_TABLES, _SCHEMA)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    seq: int  # position in the outbox: increases with every message added, never reused
    topic: str
    payload: bytes
    created: datetime  # when it was added (UTC)


class Outbox:
    """A bounded, durable FIFO of (topic, payload) messages in a SQLite file."""

    def __init__(self, path: Path, *, max_messages: int, max_age: timedelta) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        if max_age <= timedelta(0):
            raise ValueError(f"max_age must be positive, not {max_age}")
        self.path = path
        self.max_messages = max_messages
        self.max_age = max_age
        self._conn = _open(path)
        try:
            self._pending = int(self._conn.execute("SELECT count(*) FROM messages").fetchone()[0])
            self._dropped = self._counter("dropped")
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot read the sensor outbox {path}: {exc}") from exc

    # ------------------------------------------------------------------------ reading

    def pending(self) -> int:
        """How many messages the outbox holds."""
        return self._pending

    @property
    def dropped(self) -> int:
        """Messages ever dropped (outbox full or too old), over every run on this file."""
        return self._dropped

    def peek(self, limit: int, after_seq: int = 0) -> list[OutboxMessage]:
        """Up to ``limit`` messages with ``seq > after_seq``, oldest first. Removes nothing."""
        rows = self._conn.execute(
            "SELECT seq, topic, payload, created_us FROM messages WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [
            OutboxMessage(seq, topic, bytes(payload), from_epoch_us(us))
            for seq, topic, payload, us in rows
        ]

    def oldest(self) -> datetime | None:
        """When the oldest message still held was added, or None when the outbox is empty."""
        row = self._conn.execute("SELECT min(created_us) FROM messages").fetchone()
        return None if row[0] is None else from_epoch_us(int(row[0]))

    # ------------------------------------------------------------------------ writing

    def add(self, topic: str, payload: bytes, now: datetime) -> int:
        """Store one message durably; returns its seq."""
        return self.add_many([(topic, payload)], now)[0]

    def add_many(self, messages: Iterable[tuple[str, bytes]], now: datetime) -> list[int]:
        """Store messages in one durable transaction, in the order given; returns their seqs.

        Then applies the bounds: messages older than ``max_age`` (relative to ``now``) and,
        beyond ``max_messages``, the oldest are dropped, possibly including some just added.
        """
        now_us = _epoch_us(now)
        seqs: list[int] = []
        with self._transaction():
            for topic, payload in messages:
                cursor = self._conn.execute(
                    "INSERT INTO messages (topic, payload, created_us) VALUES (?, ?, ?)",
                    (topic, payload, now_us),
                )
                assert cursor.lastrowid is not None
                seqs.append(cursor.lastrowid)
            self._pending += len(seqs)
            self._enforce_bounds(now_us)
        return seqs

    def remove(self, *seqs: int) -> int:
        """Delete these messages (delivered); unknown seqs are ignored. Returns how many went."""
        if not seqs:
            return 0
        with self._transaction():
            removed = self._conn.executemany(
                "DELETE FROM messages WHERE seq = ?", [(seq,) for seq in seqs]
            ).rowcount
            self._pending -= removed
        return removed

    def drop_expired(self, now: datetime) -> int:
        """Drop messages older than ``max_age``; returns how many were dropped."""
        with self._transaction():
            return self._drop_older_than(_epoch_us(now))

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------------ internals

    def _enforce_bounds(self, now_us: int) -> None:
        self._drop_older_than(now_us)
        excess = self._pending - self.max_messages
        if excess > 0:
            last = self._conn.execute(
                "SELECT seq FROM messages ORDER BY seq LIMIT 1 OFFSET ?", (excess - 1,)
            ).fetchone()[0]
            count = self._conn.execute("DELETE FROM messages WHERE seq <= ?", (last,)).rowcount
            self._count_drops(count)
            log.warning(
                "sensor outbox full (%d messages): dropped the %d oldest (%d dropped in all)",
                self.max_messages,
                count,
                self._dropped,
            )

    def _drop_older_than(self, now_us: int) -> int:
        cutoff_us = now_us - _duration_us(self.max_age)
        count = self._conn.execute(
            "DELETE FROM messages WHERE created_us < ?", (cutoff_us,)
        ).rowcount
        if count:
            self._count_drops(count)
            log.warning(
                "sensor outbox: dropped %d messages older than %s (%d dropped in all)",
                count,
                self.max_age,
                self._dropped,
            )
        return count

    def _count_drops(self, count: int) -> None:
        self._conn.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (count,))
        self._pending -= count
        self._dropped += count

    def _counter(self, name: str) -> int:
        row = self._conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One durable transaction; on any error nothing changes, in the file or in memory."""
        pending, dropped = self._pending, self._dropped
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            self._pending, self._dropped = pending, dropped
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"sensor outbox {self.path}: {exc}") from exc
            raise


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and lock the outbox file; errors become StoreError."""
    # The publisher opens the outbox in its constructor and then hands it to its sender
    # thread, which is its only user from then on.
    return open_private(
        path,
        _FILE_SCHEMA,
        what="the sensor outbox",
        kind="a sensor outbox",
        in_use_hint="each sensor program needs its own outbox file",
    )


def _epoch_us(now: datetime) -> int:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return to_epoch_us(now)


def _duration_us(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds
