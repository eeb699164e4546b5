"""The storage protocol every store implements, and ``open_store`` to pick one by URL.

Contract (tests/store/ runs one suite over every implementation):

- ``write_many`` is idempotent: a reading equal to a stored one changes nothing and counts as
  a duplicate; a different reading with the same key (sensor, metric, time, ID) is a conflict:
  the stored one stays, the newcomer is kept aside and counted, never silently dropped.
  It returns only after the batch is durably committed.
- ``WriteResult.new`` lists the readings the write actually stored (input order).
- reads return readings in reading-time order (oldest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from officesensor.models import Reading, SeriesInfo, WriteResult


class Store(Protocol):
    def write_many(self, readings: Sequence[Reading]) -> WriteResult:
        """Store a batch durably; see the module docstring for duplicates and conflicts."""

    def latest(
        self, sensor: str, metric: str, limit: int, before: datetime | None = None
    ) -> list[Reading]:
        """The most recent ``limit`` readings of a series (earlier than ``before`` if given),
        oldest first."""

    def range(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int | None = None
    ) -> list[Reading]:
        """Readings with start <= time < end, oldest first; the first ``limit`` of them."""

    def series(self) -> list[SeriesInfo]:
        """Every (sensor, metric) series with its reading count and latest reading."""

    def conflicts(self, limit: int = 100) -> list[Reading]:
        """Readings that collided with a different stored one, newest first."""

    def ping(self) -> None:
        """Raise StoreError unless the store answers reads."""

    def probe_write(self) -> None:
        """Raise StoreError unless a write could be committed now (changes nothing)."""

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""


def open_store(url: str) -> Store:
    """Open the store a validated ``store`` setting names."""
    if url.startswith("sqlite:"):
        from officesensor.config import sqlite_path
        from officesensor.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    from officesensor.errors import ConfigError

    raise ConfigError("OFFICESENSOR_STORE", f"the {url.split(':')[0]} store is not available yet")
