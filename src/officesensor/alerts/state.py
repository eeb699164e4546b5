"""The alert state file: the engine's per-key states, episodes, history and the outbox.

One SQLite file (``alerts.state``) so that a restart neither notifies a firing alert again nor
forgets to resolve it: each batch's transitions, the keys they changed and the notifications
they owe are committed in one transaction (WAL, ``synchronous=FULL``). Delivery takes the
notifications from the outbox and removes each only once delivered, or dead.

The outbox is FIFO per channel (``mqtt``, ``webhook``): only a channel's oldest message is
tried, so a resolution never overtakes its firing. Dead letters are counted in the file.

One process at a time (SQLite's exclusive locking mode, as the sensor outbox does): a second
instance pointed at the same file fails at start instead of notifying everything twice.
One connection, shared by the engine, delivery and web threads under a lock: every statement
is short, and the history is bounded (``MAX_EVENTS``, ``MAX_EPISODES``). Once closed (the
service stopped), every call raises ``AlertStateClosed``: web threads still answering during
a shutdown get a clear error (the web maps it to 503), never a closed connection's.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from officesensor.alerts.engine import FIRING, RESOLVED, Key, KeyState, Transition
from officesensor.errors import StoreError
from officesensor.models import from_epoch_us, to_epoch_us
from officesensor.private_db import Schema, open_private

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: History kept: the newest events, and resolved episodes (active ones are always kept).
MAX_EVENTS = 20_000
MAX_EPISODES = 5_000
CHANNELS = ("mqtt", "webhook")
ACKNOWLEDGED = "acknowledged"

_SCHEMA = (
    """CREATE TABLE keys (
        rule TEXT NOT NULL, sensor TEXT NOT NULL, metric TEXT NOT NULL, state TEXT NOT NULL,
        PRIMARY KEY (rule, sensor, metric)
    ) WITHOUT ROWID""",
    """CREATE TABLE episodes (
        id TEXT PRIMARY KEY, rule TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL,
        sensor TEXT NOT NULL, metric TEXT NOT NULL, since_us INTEGER NOT NULL,
        fired_us INTEGER NOT NULL, resolved_us INTEGER, value REAL, threshold REAL,
        suppressed INTEGER NOT NULL, acked_us INTEGER, detail TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX episodes_by_resolution ON episodes (resolved_us)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, episode TEXT NOT NULL, rule TEXT NOT NULL,
        kind TEXT NOT NULL, severity TEXT NOT NULL, sensor TEXT NOT NULL, metric TEXT NOT NULL,
        state TEXT NOT NULL, value REAL, threshold REAL, since_us INTEGER NOT NULL,
        at_us INTEGER NOT NULL, notified INTEGER NOT NULL, suppressed INTEGER NOT NULL,
        detail TEXT NOT NULL
    )""",
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, topic TEXT NOT NULL,
        payload BLOB NOT NULL, created_us INTEGER NOT NULL, attempts INTEGER NOT NULL,
        next_us INTEGER NOT NULL
    )""",
    "CREATE INDEX outbox_by_channel ON outbox (channel, seq)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_OUR_TABLES = frozenset({"keys", "episodes", "events", "outbox", "counters", "sqlite_sequence"})
_FILE_SCHEMA = Schema(SCHEMA_VERSION, _OUR_TABLES, _SCHEMA)


class AlertStateClosed(StoreError):
    """The alert state file is closed (the alert service has stopped)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A notification owed on one channel: ``topic`` for MQTT ("" for the webhook)."""

    channel: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    channel: str
    topic: str
    payload: bytes
    created: datetime
    attempts: int  # failed attempts so far
    next_at: datetime


@dataclass(frozen=True, slots=True)
class Episode:
    """A firing episode: active until resolved."""

    id: str
    rule: str
    kind: str
    severity: str
    sensor: str
    metric: str
    since: datetime
    fired: datetime
    resolved: datetime | None
    value: float | None
    threshold: float | None
    suppressed: bool
    acknowledged: datetime | None
    detail: str


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the history: a transition, or an acknowledgement."""

    seq: int
    id: str  # the episode's
    rule: str
    kind: str
    severity: str
    sensor: str
    metric: str
    state: str  # pending | firing | resolved | cancelled | acknowledged
    value: float | None
    threshold: float | None
    since: datetime
    at: datetime
    notified: bool
    suppressed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Per channel, over the life of the state file."""

    pending: dict[str, int]
    delivered: dict[str, int]
    retries: dict[str, int]
    dead_letters: dict[str, int]


class AlertState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = _open(path)
        self._inserted = 0
        self._closed = False

    def close(self) -> None:
        """Close the file; later calls raise ``AlertStateClosed``. Twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # ------------------------------------------------------------------ engine

    def load_states(self) -> dict[Key, KeyState]:
        with self._reading() as conn:
            rows = conn.execute("SELECT rule, sensor, metric, state FROM keys").fetchall()
        return {(r, s, m): KeyState.from_json(json.loads(state)) for r, s, m, state in rows}

    def record(
        self,
        transitions: Sequence[tuple[Transition, Sequence[Outgoing]]],
        states: Mapping[Key, dict[str, Any] | None],
        now: datetime,
    ) -> None:
        """Commit a batch's transitions, the notifications they owe and the changed keys."""
        if not transitions and not states:
            return
        now_us = to_epoch_us(now)
        with self._transaction() as conn:
            for transition, outgoing in transitions:
                self._add_event(conn, transition)
                for message in outgoing:
                    conn.execute(
                        "INSERT INTO outbox (channel, topic, payload, created_us, attempts, "
                        "next_us) VALUES (?, ?, ?, ?, 0, ?)",
                        (message.channel, message.topic, message.payload, now_us, now_us),
                    )
            for (rule, sensor, metric), data in states.items():
                if data is None:
                    conn.execute(
                        "DELETE FROM keys WHERE rule = ? AND sensor = ? AND metric = ?",
                        (rule, sensor, metric),
                    )
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO keys (rule, sensor, metric, state) "
                        "VALUES (?, ?, ?, ?)",
                        (rule, sensor, metric, json.dumps(data)),
                    )
            self._prune(conn)

    def _add_event(self, conn: sqlite3.Connection, t: Transition) -> None:
        conn.execute(
            "INSERT INTO events (episode, rule, kind, severity, sensor, metric, state, value, "
            "threshold, since_us, at_us, notified, suppressed, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.id, t.rule, t.kind, t.severity, t.sensor, t.metric, t.state, t.value,
                t.threshold, to_epoch_us(t.since), to_epoch_us(t.at), t.notify, t.suppressed,
                t.detail,
            ),
        )  # fmt: skip
        self._inserted += 1
        if t.state == FIRING:
            conn.execute(
                "INSERT INTO episodes (id, rule, kind, severity, sensor, metric, since_us, "
                "fired_us, resolved_us, value, threshold, suppressed, acked_us, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, ?) "
                # Again while active: its firing was held back by the cooldown and is
                # notified now (it keeps its first firing time). After a resolution: anew.
                "ON CONFLICT (id) DO UPDATE SET fired_us = CASE WHEN resolved_us IS NULL "
                "THEN fired_us ELSE excluded.fired_us END, resolved_us = NULL, "
                "value = excluded.value, suppressed = excluded.suppressed",
                (
                    t.id, t.rule, t.kind, t.severity, t.sensor, t.metric, to_epoch_us(t.since),
                    to_epoch_us(t.at), t.value, t.threshold, t.suppressed, t.detail,
                ),
            )  # fmt: skip
        elif t.state == RESOLVED:
            conn.execute(
                "UPDATE episodes SET resolved_us = ? WHERE id = ?", (to_epoch_us(t.at), t.id)
            )

    def _prune(self, conn: sqlite3.Connection) -> None:
        if self._inserted < 200:
            return
        self._inserted = 0
        conn.execute(
            "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?", (MAX_EVENTS,)
        )
        conn.execute(
            "DELETE FROM episodes WHERE resolved_us IS NOT NULL AND id NOT IN (SELECT id FROM "
            "episodes WHERE resolved_us IS NOT NULL ORDER BY resolved_us DESC LIMIT ?)",
            (MAX_EPISODES,),
        )

    # ------------------------------------------------------------------ reading

    def active(self) -> list[Episode]:
        """Episodes firing now, newest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE resolved_us IS NULL "  # noqa: S608
                "ORDER BY fired_us DESC, id"
            ).fetchall()
        return [_episode(row) for row in rows]

    def episode(self, episode_id: str) -> Episode | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE id = ?",  # noqa: S608
                (episode_id,),
            ).fetchone()
        return None if row is None else _episode(row)

    def events(
        self,
        *,
        state: str | None = None,
        sensor: str | None = None,
        metric: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """History, newest first; ``before``: only events older than that ``seq``."""
        where: list[str] = []
        args: list[str | int] = []
        for column, value in (("state", state), ("sensor", sensor), ("metric", metric)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events {clause} ORDER BY seq DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            ).fetchall()
        return [_event(row) for row in rows]

    def acknowledge(self, episode_id: str, now: datetime) -> Episode | None:
        """Mark an episode acknowledged (once; again changes nothing). None: no such episode."""
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE id = ?",  # noqa: S608
                (episode_id,),
            ).fetchone()
            if row is None:
                return None
            episode = _episode(row)
            if episode.acknowledged is not None:
                return episode
            conn.execute(
                "UPDATE episodes SET acked_us = ? WHERE id = ?", (to_epoch_us(now), episode_id)
            )
            conn.execute(
                "INSERT INTO events (episode, rule, kind, severity, sensor, metric, state, "
                "value, threshold, since_us, at_us, notified, suppressed, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, '')",
                (
                    episode.id, episode.rule, episode.kind, episode.severity, episode.sensor,
                    episode.metric, ACKNOWLEDGED, episode.value, episode.threshold,
                    to_epoch_us(episode.since), to_epoch_us(now), episode.suppressed,
                ),
            )  # fmt: skip
        return self.episode(episode_id)

    # ------------------------------------------------------------------ delivery

    def due(self, now: datetime) -> list[OutboxItem]:
        """Each channel's oldest message, if its time has come."""
        items = []
        with self._reading() as conn:
            for channel in CHANNELS:
                row = conn.execute(
                    "SELECT seq, channel, topic, payload, created_us, attempts, next_us "
                    "FROM outbox WHERE channel = ? ORDER BY seq LIMIT 1",
                    (channel,),
                ).fetchone()
                if row is not None and row[6] <= to_epoch_us(now):
                    items.append(_outbox_item(row))
        return items

    def next_due(self) -> datetime | None:
        """When the earliest channel head is due (None: the outbox is empty)."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT min(next_us) FROM outbox o WHERE seq = "
                "(SELECT min(seq) FROM outbox WHERE channel = o.channel)"
            ).fetchone()
        return None if row[0] is None else from_epoch_us(int(row[0]))

    def delivered(self, item: OutboxItem) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
            _count(conn, f"delivered_{item.channel}")

    def retry(self, item: OutboxItem, next_at: datetime) -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_us = ? WHERE seq = ?",
                (to_epoch_us(next_at), item.seq),
            )
            _count(conn, f"retries_{item.channel}")

    def dead(self, item: OutboxItem) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
            _count(conn, f"dead_{item.channel}")

    def drop_channel(self, channel: str) -> int:
        """Dead-letter everything owed on a channel that is no longer configured."""
        with self._transaction() as conn:
            dropped = conn.execute("DELETE FROM outbox WHERE channel = ?", (channel,)).rowcount
            if dropped:
                _count(conn, f"dead_{channel}", dropped)
        return int(dropped)

    def counts(self) -> DeliveryCounts:
        with self._reading() as conn:
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            pending = dict(conn.execute("SELECT channel, count(*) FROM outbox GROUP BY channel"))

        def per_channel(prefix: str) -> dict[str, int]:
            return {c: int(counters.get(f"{prefix}_{c}", 0)) for c in CHANNELS}

        return DeliveryCounts(
            pending={c: int(pending.get(c, 0)) for c in CHANNELS},
            delivered=per_channel("delivered"),
            retries=per_channel("retries"),
            dead_letters=per_channel("dead"),
        )

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, for reads; SQLite's errors become StoreError."""
        with self._lock:
            self._check_open()
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"alert state {self.path}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise AlertStateClosed(f"alert state {self.path}: closed (the alert service stopped)")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"alert state {self.path}: {exc}") from exc


_EPISODE_COLUMNS = (
    "id, rule, kind, severity, sensor, metric, since_us, fired_us, resolved_us, value, "
    "threshold, suppressed, acked_us, detail"
)
_EVENT_COLUMNS = (
    "seq, episode, rule, kind, severity, sensor, metric, state, value, threshold, since_us, "
    "at_us, notified, suppressed, detail"
)


def _time(us: int | None) -> datetime | None:
    return None if us is None else from_epoch_us(int(us))


def _episode(row: tuple[Any, ...]) -> Episode:
    (id_, rule, kind, severity, sensor, metric, since, fired, resolved, value, threshold,
     suppressed, acked, detail) = row  # fmt: skip
    return Episode(
        id_, rule, kind, severity, sensor, metric, from_epoch_us(since), from_epoch_us(fired),
        _time(resolved), value, threshold, bool(suppressed), _time(acked), detail,
    )  # fmt: skip


def _event(row: tuple[Any, ...]) -> Event:
    (seq, episode, rule, kind, severity, sensor, metric, state, value, threshold, since, at,
     notified, suppressed, detail) = row  # fmt: skip
    return Event(
        seq, episode, rule, kind, severity, sensor, metric, state, value, threshold,
        from_epoch_us(since), from_epoch_us(at), bool(notified), bool(suppressed), detail,
    )  # fmt: skip


def _outbox_item(row: tuple[Any, ...]) -> OutboxItem:
    seq, channel, topic, payload, created, attempts, next_us = row
    return OutboxItem(
        seq, channel, topic, bytes(payload), from_epoch_us(created), attempts,
        from_epoch_us(next_us),
    )  # fmt: skip


def _count(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and lock the state file; errors become StoreError."""
    # Shared by the engine, delivery and web threads, always under AlertState's lock.
    return open_private(
        path,
        _FILE_SCHEMA,
        what="the alert state",
        kind="an alert state file",
        in_use_hint="each instance that evaluates alerts needs its own alerts.state",
    )
