"""DynamoDB store: the original sample's table, read and written the way its IoT rule does.

Item design (officesensor.store.dynamo_items): partition ``Metric`` = the metric, or
``<Metric>#<sensor>`` for a named sensor; sort key ``ID``; the message as ``payload``.
Everything else the store keeps lives under ``~`` partitions in the same table.

Writes: officesensor.store.dynamo_writes (conditional puts: every reading stored once,
never overwriting; throttling that outlives botocore's retries raises StoreError, which
ingest turns into back-pressure). Read-only mode refuses them here.

Reads: the time region of a partition is read with key conditions on the millisecond; the
original rule's counter region through officesensor.store.dynamo_counters; long ranges
through the rollup cache of officesensor.store.dynamo_rollups, combined by
officesensor.store.dynamo_aggregates. ``series()`` is served from
officesensor.store.dynamo_series's caches. docs/dynamodb.md explains the design and its
costs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo

import numpy as np

from officesensor import rollups
from officesensor.config import DynamoOptions
from officesensor.errors import StoreError
from officesensor.models import (
    METRIC_UNITS,
    AnomalyRecord,
    Reading,
    SeriesInfo,
    WriteResult,
    to_epoch_us,
)
from officesensor.rollups import Bucket, IntervalStats
from officesensor.store import dynamo_aggregates as aggregates
from officesensor.store.dynamo_client import DynamoClient, Put
from officesensor.store.dynamo_counters import CounterIndex
from officesensor.store.dynamo_items import (
    CONFLICTS,
    SERIES_REGISTRY,
    Summary,
    anomaly_item,
    derived_pk,
    identity,
    key_ms,
    parse_anomaly_item,
    parse_conflict_item,
    parse_pk,
    parse_reading_item,
    series_pk,
    time_key,
    time_key_bounds,
)
from officesensor.store.dynamo_rollups import DAY_S, HOUR_S, Rollups
from officesensor.store.dynamo_series import BASELINE_TTL_S, SERIES_TTL_S, SeriesCache
from officesensor.store.dynamo_writes import ReadingWriter

log = logging.getLogger(__name__)

#: As SqliteStore: exact interval statistics up to a day at a 15 s cadence.
EXACT_LIMIT = 6_000
#: A period's rollup is cached once this long has passed since its end.
GRACE_S = 120.0
#: In read-only mode the IoT rule writes and cannot tombstone rollups of periods it writes
#: late into, so periods are cached only once this old (late readings older than that are
#: not reflected until their rollup items are deleted; see docs/dynamodb.md).
READ_ONLY_SETTLE_S = 3600.0
_US = 1_000_000
_END_OF_TIME_US = 2**62
#: How often ``series()`` reads again the series this process wrote to while it read them.
_SERIES_ROUNDS = 3


class DynamoStore:
    def __init__(
        self,
        options: DynamoOptions,
        *,
        tz: tzinfo = UTC,
        exact_limit: int = EXACT_LIMIT,
        grace_s: float | None = None,
        counter_refresh_s: float = 5.0,
        series_ttl_s: float = SERIES_TTL_S,
        baseline_ttl_s: float = BASELINE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read_only = options.read_only
        self.exact_limit = exact_limit
        self.table = options.table
        self._tz = tz
        self._clock = clock
        self._counter_refresh_s = counter_refresh_s
        self._db = DynamoClient(options)
        if grace_s is None:
            grace_s = READ_ONLY_SETTLE_S if options.read_only else GRACE_S
        self._rollups = Rollups(self._db, grace_s=grace_s, clock=clock)
        self._counters: dict[str, CounterIndex] = {}
        self._series_cache = SeriesCache(ttl_s=series_ttl_s, baseline_ttl_s=baseline_ttl_s)
        self._writer = ReadingWriter(self._db, tz, self._rollups, self._series_cache, clock)
        self._absent: dict[str, float] = {}  # default partitions found empty, when
        self._lock = threading.Lock()
        try:
            self.ping()  # a missing table or no credentials fail here, not at first use
        except StoreError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ writes

    def write_many(self, readings: Sequence[Reading]) -> WriteResult:
        self._db.check_open()
        if self.read_only:
            raise StoreError(
                f"the DynamoDB store on {self.table} is read-only (read_only=true): "
                "it stores no readings; the table's own writer (an AWS IoT rule) does"
            )
        return self._writer.write_many(readings)

    # ------------------------------------------------------------------ raw reads

    def _counter_index(self, pk: str, sensor: str, metric: str) -> CounterIndex:
        with self._lock:
            index = self._counters.get(pk)
            if index is None:
                index = CounterIndex(
                    self._db, pk, sensor, metric, self._tz, self._counter_refresh_s
                )
                self._counters[pk] = index
            return index

    def _collect(
        self,
        sensor: str,
        metric: str,
        lo_us: int,
        hi_us: int,
        *,
        need: int | None = None,
        descending: bool = False,
        keep: Callable[[Reading], bool] | None = None,
    ) -> list[Reading]:
        """Readings with lo <= time < hi that ``keep`` accepts, oldest first: all, or the
        ``need`` oldest (newest when ``descending``)."""
        self._db.check_open()
        if lo_us >= hi_us or (need is not None and need <= 0):
            return []
        accept = keep or (lambda r: True)
        pk = series_pk(sensor, metric)
        found = self._time_region(pk, sensor, metric, lo_us, hi_us, need, descending, accept)
        found += self._counter_index(pk, sensor, metric).readings(
            lo_us, hi_us, need=need, descending=descending, keep=accept
        )
        unique = {identity(r): r for r in reversed(found)}  # the time region's copy wins
        ordered = sorted(unique.values(), key=identity)
        if need is not None:
            ordered = ordered[-need:] if descending else ordered[:need]
        return ordered

    def _time_region(
        self,
        pk: str,
        sensor: str,
        metric: str,
        lo_us: int,
        hi_us: int,
        need: int | None,
        descending: bool,
        keep: Callable[[Reading], bool],
    ) -> list[Reading]:
        """Keys are in the reading's millisecond: once ``need`` readings are found, the
        rest of that millisecond is read too (their order within it is not time order)."""
        lo_key, hi_key = time_key_bounds(lo_us, hi_us)
        if lo_key > hi_key:
            return []
        found: list[Reading] = []
        boundary: int | None = None
        pages = self._db.query_pages(
            pk,
            lo_key,
            hi_key,
            descending=descending,
            page_size=None if need is None else need + 8,
        )
        for page in pages:
            for item in page.get("Items", []):
                parsed = parse_reading_item(item, sensor, metric, self._tz)
                ms = key_ms(parsed.key)
                if boundary is not None and (ms < boundary if descending else ms > boundary):
                    return found
                r = parsed.reading
                if r is None or not lo_us <= r.ts_us < hi_us or not keep(r):
                    continue
                found.append(r)
                if need is not None and len(found) == need:
                    boundary = ms
        return found

    def _raw_reader(
        self, sensor: str, metric: str
    ) -> Callable[[int, int], tuple[rollups.Int64Array, rollups.FloatArray]]:
        def read(lo_us: int, hi_us: int) -> tuple[rollups.Int64Array, rollups.FloatArray]:
            found = self._collect(sensor, metric, lo_us, hi_us)
            ts = np.fromiter((r.ts_us for r in found), dtype=np.int64, count=len(found))
            values = np.fromiter((r.value for r in found), dtype=np.float64, count=len(found))
            return ts, values

        return read

    # ------------------------------------------------------------------ reads

    def latest(
        self, sensor: str, metric: str, limit: int, before: datetime | None = None
    ) -> list[Reading]:
        hi = _END_OF_TIME_US if before is None else to_epoch_us(before)
        return self._collect(sensor, metric, 0, hi, need=limit, descending=True)

    def range(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int | None = None
    ) -> list[Reading]:
        return self._collect(sensor, metric, to_epoch_us(start), to_epoch_us(end), need=limit)

    def iter_range(
        self, sensor: str, metric: str, start: datetime, end: datetime, chunk: int = 10_000
    ) -> Iterator[list[Reading]]:
        if chunk < 1:
            raise ValueError("chunk must be positive")
        lo_us, end_us = to_epoch_us(start), to_epoch_us(end)
        after: tuple[int, int] | None = None
        while True:
            keep = None if after is None else _after(after)
            rows = self._collect(sensor, metric, lo_us, end_us, need=chunk, keep=keep)
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            after = identity(rows[-1])
            lo_us = after[0]

    def first_time(self, sensor: str, metric: str) -> datetime | None:
        found = self._collect(sensor, metric, 0, _END_OF_TIME_US, need=1)
        return found[0].ts if found else None

    def series(self) -> list[SeriesInfo]:
        """Served from a cache of a few seconds that this process's writes keep exact;
        computed, it reads per series the latest reading and the hours since the last
        closed day (officesensor.store.dynamo_series)."""
        self._db.check_open()
        cache = self._series_cache
        cached = cache.result()
        if cached is not None:
            return cached
        with cache.computing:  # callers meanwhile wait for this result, not compute it too
            cached = cache.result()
            if cached is not None:
                return cached
            start = cache.states()
            registry = self._db.get(SERIES_REGISTRY, 0, consistent=False) or {}
            pks = set(registry.get("pks", {}).get("SS", []))
            self._writer.registered.update(pks)
            pks |= self._probe_original_partitions(pks)
            found: dict[str, SeriesInfo | None] = {}
            before: dict[str, tuple[int, int]] = {}
            todo = sorted(pks)
            for _ in range(_SERIES_ROUNDS):  # then serve it uncached
                for pk in todo:
                    before[pk] = cache.state(pk)
                    found[pk] = self._series_info(pk)
                kept, todo = cache.keep(found, before, start)
                if kept or not todo:
                    break
        infos = [info for info in found.values() if info is not None]
        return sorted(infos, key=lambda info: (info.sensor, info.metric))

    def _series_info(self, pk: str) -> SeriesInfo | None:
        names = parse_pk(pk)
        if names is None:
            return None
        sensor, metric = names
        last = self.latest(sensor, metric, 1)
        if not last:
            return None
        return SeriesInfo(sensor, metric, self._count(pk, sensor, metric, last[0]), last[0])

    def _probe_original_partitions(self, known: set[str]) -> set[str]:
        """The original rule's partitions (Temperature, Humidity, Pressure) hold readings
        the registry never heard of; list them when they have items."""
        found = set()
        now = time.monotonic()
        for pk in METRIC_UNITS:
            if pk in known or now - self._absent.get(pk, -math.inf) < self._counter_refresh_s:
                continue
            page = next(self._db.query_pages(pk, page_size=1, consistent=False))
            if page.get("Items"):
                found.add(pk)
            else:
                self._absent[pk] = now
        if found and self._rollups.writable:
            try:
                self._db.add_to_set(SERIES_REGISTRY, 0, "pks", sorted(found))
            except StoreError as exc:  # read-only IAM: listing them each time is fine
                log.info("could not register %s: %s", sorted(found), exc)
        return found

    def _count(self, pk: str, sensor: str, metric: str, last: Reading) -> int:
        """The closed days' count (the baseline, kept in memory) plus the hours since."""
        through = self._rollups.closed_through(DAY_S, self._clock())
        cache = self._series_cache
        baseline = cache.baseline(pk, through)
        if baseline is None:
            token = cache.late_token(pk)
            first = self.first_time(sensor, metric)
            counted = 0
            if first is not None:
                lo = to_epoch_us(first) // (DAY_S * _US) * DAY_S
                days = self._summaries(sensor, metric, DAY_S, lo, through, with_hist=False)
                counted = sum(summary.moments.n for summary in days.values())
            cache.keep_baseline(pk, through, counted, token)
        else:
            counted = baseline.count
        hi = last.ts_us // (HOUR_S * _US) * HOUR_S + HOUR_S
        hours = self._summaries(sensor, metric, HOUR_S, through, hi, with_hist=False)
        return counted + sum(summary.moments.n for summary in hours.values())

    def conflicts(self, limit: int = 100) -> list[Reading]:
        self._db.check_open()
        found: list[Reading] = []
        for page in self._db.query_pages(CONFLICTS, descending=True, page_size=limit):
            found.extend(parse_conflict_item(item) for item in page.get("Items", []))
            if len(found) >= limit:
                break
        return found[:limit]

    # ------------------------------------------------------------------ rollup reads

    def _summaries(
        self, sensor: str, metric: str, level_s: int, lo_s: int, hi_s: int, *, with_hist: bool
    ) -> dict[int, Summary]:
        return self._rollups.summaries(
            series_pk(sensor, metric),
            level_s,
            lo_s,
            hi_s,
            self._raw_reader(sensor, metric),
            with_hist=with_hist,
        )

    def buckets(
        self, sensor: str, metric: str, start: datetime, end: datetime, width_s: int
    ) -> list[Bucket]:
        if width_s <= 0:
            raise ValueError("width_s must be positive")
        self._db.check_open()
        return aggregates.buckets(self._series(sensor, metric), start, end, width_s)

    def interval_stats(
        self, sensor: str, metric: str, start: datetime, end: datetime
    ) -> IntervalStats:
        self._db.check_open()
        return aggregates.interval_stats(self._series(sensor, metric), start, end, self.exact_limit)

    def _series(self, sensor: str, metric: str) -> _Series:
        return _Series(self, sensor, metric)

    # ------------------------------------------------------------------ anomalies

    def record_anomalies(self, items: Sequence[AnomalyRecord]) -> None:
        self._db.check_open()
        if not items:
            return
        if self.read_only:
            raise StoreError(f"the DynamoDB store on {self.table} is read-only")
        unique: dict[tuple[str, str], AnomalyRecord] = {}
        for record in items:
            r = record.reading
            pk = series_pk(r.sensor, r.metric)
            unique.setdefault((pk, time_key(r.ts_us, r.reading_id)), record)
        puts = [Put(anomaly_item(pk, record)) for (pk, _), record in unique.items()]
        for outcome in self._db.put_many(puts):  # a record already there stays: the first
            if isinstance(outcome, StoreError):
                raise outcome

    def anomalies(
        self, sensor: str, metric: str, start: datetime, end: datetime, limit: int = 1000
    ) -> list[AnomalyRecord]:
        self._db.check_open()
        bounds = _anomaly_bounds(start, end)
        if bounds is None or limit <= 0:
            return []
        found: list[AnomalyRecord] = []
        pk = derived_pk("anomaly", series_pk(sensor, metric))
        for page in self._db.query_pages(pk, *bounds, descending=True, page_size=limit):
            found.extend(parse_anomaly_item(item, sensor, metric) for item in page["Items"])
            if len(found) >= limit:
                break
        return found[:limit]

    def anomaly_count(self, sensor: str, metric: str, start: datetime, end: datetime) -> int:
        self._db.check_open()
        bounds = _anomaly_bounds(start, end)
        if bounds is None:
            return 0
        pk = derived_pk("anomaly", series_pk(sensor, metric))
        return sum(
            int(page.get("Count", 0)) for page in self._db.query_pages(pk, *bounds, count_only=True)
        )

    # ------------------------------------------------------------------ health

    def ping(self) -> None:
        self._db.get(SERIES_REGISTRY, 0, consistent=False)

    def probe_write(self) -> None:
        self._db.check_open()
        if self.read_only:
            raise StoreError(f"the DynamoDB store on {self.table} is read-only")
        self._db.probe_write()

    def close(self) -> None:
        self._db.close()


def _after(cursor: tuple[int, int]) -> Callable[[Reading], bool]:
    return lambda r: identity(r) > cursor


def _anomaly_bounds(start: datetime, end: datetime) -> tuple[str, str] | None:
    """Inclusive key bounds of the anomalies with start <= time < end (their keys are time
    keys: ``<ms>.<µs><ID + 1>``, so ``<ms>.<µs>`` sorts before every key of that µs)."""
    lo_us, hi_us = to_epoch_us(start), to_epoch_us(end)
    if lo_us >= hi_us:
        return None
    return _floor_key(lo_us), _floor_key(hi_us)


def _floor_key(ts_us: int) -> str:
    ms, rest = divmod(ts_us, 1000)
    return f"{ms}.{rest:03d}"


class _Series:
    """One series as officesensor.store.dynamo_aggregates reads it."""

    def __init__(self, store: DynamoStore, sensor: str, metric: str) -> None:
        self._store, self._sensor, self._metric = store, sensor, metric
        self._arrays = store._raw_reader(sensor, metric)

    def readings(self, lo_us: int, hi_us: int) -> list[Reading]:
        return self._store._collect(self._sensor, self._metric, lo_us, hi_us)

    def values(self, lo_us: int, hi_us: int) -> rollups.FloatArray:
        return self._arrays(lo_us, hi_us)[1]

    def summaries(
        self, level_s: int, lo_s: int, hi_s: int, *, with_hist: bool
    ) -> dict[int, Summary]:
        return self._store._summaries(
            self._sensor, self._metric, level_s, lo_s, hi_s, with_hist=with_hist
        )
