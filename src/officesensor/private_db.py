"""Opening a private SQLite file: one process's own state (the sensor outbox, the alert
state), locked for as long as it is open, so a second process using the same file fails at
once with a clear message instead of both quietly interleaving writes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from officesensor.errors import StoreError


@dataclass(frozen=True, slots=True)
class Schema:
    version: int  # kept in PRAGMA user_version
    tables: frozenset[str]
    statements: tuple[str, ...]  # creating them all, run once in a new file


def open_private(
    path: Path, schema: Schema, *, what: str, kind: str, in_use_hint: str
) -> sqlite3.Connection:
    """Open (creating if needed) and lock ``path``, creating ``schema`` in a new file or
    checking an existing one in the same transaction. Errors name the file as ``what`` ("the
    sensor outbox") and ``kind`` ("a sensor outbox"); ``in_use_hint`` says what to do when
    another process holds it. Every error is a StoreError. The connection may be handed to
    another thread (its owner keeps it to one thread at a time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory of {what} {path}: {exc}") from exc
    try:
        conn = sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    try:
        # Exclusive before WAL: no shared-memory index, and the lock is held until close.
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # committed survives a power cut
        conn.execute("BEGIN IMMEDIATE")  # takes the lock now, not at the first write
        try:
            _create_or_check(conn, path, schema, what, kind)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc):
            raise StoreError(f"{what} {path} is in use by another process ({in_use_hint})") from exc
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not {kind}: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _create_or_check(
    conn: sqlite3.Connection, path: Path, schema: Schema, what: str, kind: str
) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version > schema.version:
        raise StoreError(f"{what} {path} was written by a newer officesensor")
    if (version == 0 and tables) or not tables <= schema.tables:
        raise StoreError(f"{path} is not {kind} (it holds other tables)")
    if version == 0:
        for statement in schema.statements:  # not executescript: it would commit
            conn.execute(statement)
