"""The storage protocol every store implements, and ``open_store`` to pick one by URL.

Contract (tests/store/ runs one suite over every implementation):

- ``write_many`` is idempotent: a reading equal to a stored one changes nothing and counts as
  a duplicate; a different reading with the same key (sensor, metric, time, ID) is a conflict:
  the stored one stays, the newcomer is kept aside and counted, never silently dropped.
  It returns only after the batch is durably committed.
- ``WriteResult.new`` lists the readings the write actually stored (input order).
- reads return readings in reading-time order (oldest first).
- ``buckets`` and ``interval_stats`` answer any range, up to years, without reading every
  raw reading: SQLite keeps rollups (officesensor.rollups) of exactly the readings
  ``write_many`` newly stores, in the same commit; DynamoDB keeps them as a cache of closed
  periods, computed from raw readings when first needed (officesensor.store.dynamo_rollups).

Stores: ``sqlite:///path.db`` (officesensor.store.sqlite) and ``dynamodb://TABLE?...``
(officesensor.store.dynamodb, docs/dynamodb.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from officesensor.models import AnomalyRecord, Reading, SeriesInfo, WriteResult
from officesensor.rollups import Bucket, IntervalStats


class Store(Protocol):
    #: ``interval_stats`` is exact (from raw readings) for ranges holding at most this many
    #: readings, and approximates quartiles from histograms beyond. Tests may lower it.
    exact_limit: int
    #: True when the store refuses ``write_many`` (a DynamoDB table that an AWS IoT rule
    #: writes): ingest then analyses and publishes live updates but stores nothing.
    read_only: bool

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

    def buckets(
        self, sensor: str, metric: str, start: datetime, end: datetime, width_s: int
    ) -> list[Bucket]:
        """Readings with start <= time < end grouped into buckets of ``width_s`` seconds
        aligned to the Unix epoch (bucket k holds k·width_s <= time < (k+1)·width_s, and its
        ``start`` is that aligned start even when ``start`` cuts the bucket). Count, min and
        max are exact, mean exact up to float rounding. Empty buckets are left out; oldest
        first. Widths that are multiples of 60 read rollups (fast for any range); others
        group raw readings (keep those to short ranges)."""

    def interval_stats(
        self, sensor: str, metric: str, start: datetime, end: datetime
    ) -> IntervalStats:
        """Count, mean, sample std, min, quartiles and max of the readings with
        start <= time < end. Exact (``quantile_error`` 0.0) up to ``exact_limit`` readings;
        beyond, quartiles come from histograms and are within ``quantile_error``."""

    def iter_range(
        self, sensor: str, metric: str, start: datetime, end: datetime, chunk: int = 10_000
    ) -> Iterator[list[Reading]]:
        """All readings with start <= time < end, oldest first, in lists of at most
        ``chunk``; each list is fetched when asked for (keyset pagination), so any range can
        be streamed. Readings written meanwhile after the last one returned may appear."""

    def first_time(self, sensor: str, metric: str) -> datetime | None:
        """Time of the series' oldest reading; None for an unknown or empty series."""

    def record_anomalies(self, items: Sequence[AnomalyRecord]) -> None:
        """Store flagged readings durably. Idempotent on the reading's key (sensor, metric,
        time, ID): recording one again changes nothing and keeps the first record."""

    def anomalies(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int = 1000
    ) -> list[AnomalyRecord]:
        """Recorded anomalies of a series with start <= time < end, newest first; the
        ``limit`` newest."""

    def anomaly_count(self, sensor: str, metric: str, start: datetime, end: datetime) -> int:
        """How many anomalies of a series are recorded with start <= time < end."""

    def ping(self) -> None:
        """Raise StoreError unless the store answers reads."""

    def probe_write(self) -> None:
        """Raise StoreError unless a write could be committed now (changes nothing)."""

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""


def open_store(url: str, tz: tzinfo = UTC) -> Store:
    """Open the store a validated ``store`` setting names. ``tz`` is ``sensor.timezone``:
    DynamoDB items written by the original IoT rule carry naive local timestamps."""
    if url.startswith("sqlite:"):
        from officesensor.config import sqlite_path
        from officesensor.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if url.startswith("dynamodb:"):
        from officesensor.config import dynamodb_options
        from officesensor.store.dynamodb import DynamoStore

        return DynamoStore(dynamodb_options(url), tz=tz)
    from officesensor.errors import ConfigError

    raise ConfigError("OFFICESENSOR_STORE", f"the {url.split(':')[0]} store is not available yet")
