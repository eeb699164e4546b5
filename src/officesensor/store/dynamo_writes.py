"""The DynamoDB store's writes: conditional puts, classified by what stands in their way.

Each reading is put under its natural key (officesensor.store.dynamo_items) with
``attribute_not_exists``, 16 in flight. A refused put returns what stands under its key: an
equal reading is a duplicate, a different reading with the same identity a conflict (kept
under ``~conflicts``, never overwriting), and another reading under the same key (a second
reading in one millisecond, another sensor's item) moves to its time key. After the puts:
the series registry learns new series, and closed periods the readings fall in get their
rollups tombstoned (officesensor.store.dynamo_rollups).

A conflict is kept under a key derived from the newcomer itself (``conflict_key``), put
with ``attribute_not_exists``: a retry, a redelivery or another instance meeting the same
newcomer finds its record there and writes nothing. Such a newcomer is already kept aside:
like a reading found stored, it counts as a duplicate, unless this instance's own failed
attempt kept it (``_unreported_conflicts``): then the retry reports the conflict, once.

Why not TransactWriteItems: it costs two write units per item for an atomicity the contract
does not need (a batch that fails part-way is completed by its retry, exactly once), and a
cancelled transaction refuses every item with the one that failed. What a failed attempt
did write is found again as duplicates by its retry; ``_unreported`` lets the same instance
still report those readings as new, so live statistics and counts see them once.
``SeriesCache`` (officesensor.store.dynamo_series) hears of every write: the readings it
freshly stored when it commits, the whole batch when it fails.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import tzinfo

from officesensor.errors import StoreError
from officesensor.models import Reading, WriteResult
from officesensor.store.dynamo_client import WRITTEN, DynamoClient, Put
from officesensor.store.dynamo_items import (
    SERIES_REGISTRY,
    Item,
    conflict_item,
    conflict_key,
    identity,
    natural_key,
    parse_reading_item,
    reading_item,
    series_pk,
    time_key,
)
from officesensor.store.dynamo_rollups import DAY_S, Rollups
from officesensor.store.dynamo_series import SeriesCache

log = logging.getLogger(__name__)

_UNREPORTED_MAX = 100_000

Identity = tuple[str, int, int]  # (partition, time µs, ID)
Record = tuple[str, str]  # a conflict record: (series partition, conflict key)


class ReadingWriter:
    def __init__(
        self,
        db: DynamoClient,
        tz: tzinfo,
        rollups: Rollups,
        series: SeriesCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._tz = tz
        self._rollups = rollups
        self._series = series
        self._clock = clock
        #: Series partitions known to be in the ``~series`` registry.
        self.registered: set[str] = set()
        self._unreported: dict[Identity, float] = {}
        self._unreported_conflicts: set[Record] = set()
        self._lock = threading.Lock()
        self._received_us = 0

    def write_many(self, readings: Sequence[Reading]) -> WriteResult:
        self._db.check_open()
        if not readings:
            return WriteResult()
        for reading in readings:
            if not math.isfinite(reading.value):
                raise StoreError(f"cannot store a non-finite value ({reading.value!r})")
        status: list[str] = [""] * len(readings)
        standing: dict[Identity, float] = {}  # value in the table after this write
        leaders: list[int] = []
        seen: dict[Identity, int] = {}
        for i, r in enumerate(readings):
            ident = (series_pk(r.sensor, r.metric), r.ts_us, r.reading_id)
            if ident in seen:
                status[i] = "follower"
            else:
                seen[ident] = i
                leaders.append(i)
        keys = self._assign_keys(readings, leaders)
        fresh: list[int] = []  # written by this attempt (not reported again from a failed one)
        kept: list[Record] = []  # conflict records this attempt wrote or reports
        self._series.writing(readings)
        try:
            self._write_leaders(readings, leaders, keys, status, standing, fresh)
            for i, r in enumerate(readings):
                if status[i] == "follower":
                    ident = (series_pk(r.sensor, r.metric), r.ts_us, r.reading_id)
                    status[i] = "duplicate" if standing[ident] == r.value else "conflict"
            self._record_conflicts(readings, status, kept)
            self._after_commit(readings, status)
        except BaseException:
            with self._lock:  # a retry finds them stored: it must still report them
                for i, r in enumerate(readings):
                    if status[i] == "new" and len(self._unreported) < _UNREPORTED_MAX:
                        ident = (series_pk(r.sensor, r.metric), r.ts_us, r.reading_id)
                        self._unreported[ident] = r.value
                for record in kept:
                    if len(self._unreported_conflicts) < _UNREPORTED_MAX:
                        self._unreported_conflicts.add(record)
            self._series.failed(readings, self._today_s())
            raise
        self._series.wrote(readings, [readings[i] for i in fresh], self._today_s())
        result = WriteResult()
        for i, r in enumerate(readings):
            if status[i] == "new":
                result.stored += 1
                result.new.append(r)
            elif status[i] in ("duplicate", "kept"):
                result.duplicates += 1
            else:
                result.conflicts += 1
                result.conflicting.append(r)
        return result

    def _today_s(self) -> int:
        return int(self._clock()) // DAY_S * DAY_S

    def _write_leaders(
        self,
        readings: Sequence[Reading],
        leaders: list[int],
        keys: dict[int, str],
        status: list[str],
        standing: dict[Identity, float],
        fresh: list[int],
    ) -> None:
        """Put each reading if its key is free; classify the others (``status``);
        ``fresh`` collects the indexes written."""
        pending = list(leaders)
        while pending:
            puts = [
                Put(
                    reading_item(
                        series_pk(readings[i].sensor, readings[i].metric), keys[i], readings[i]
                    )
                )
                for i in pending
            ]
            outcomes = self._db.put_many(puts)
            retry: list[int] = []
            error: StoreError | None = None
            for i, outcome in zip(pending, outcomes, strict=True):
                r = readings[i]
                if outcome is WRITTEN:
                    status[i] = "new"
                    standing[(series_pk(r.sensor, r.metric), r.ts_us, r.reading_id)] = r.value
                    fresh.append(i)
                elif isinstance(outcome, StoreError):
                    error = error or outcome
                elif isinstance(outcome, dict):
                    verdict = self._classify(r, keys[i], outcome, standing)
                    if verdict == "moved":
                        keys[i] = time_key(r.ts_us, r.reading_id)
                        retry.append(i)
                    else:
                        status[i] = verdict
            if error is not None:
                raise error
            pending = retry

    @staticmethod
    def _assign_keys(readings: Sequence[Reading], leaders: list[int]) -> dict[int, str]:
        """Natural keys, except a second reading of one millisecond under its ID's key."""
        keys: dict[int, str] = {}
        taken: set[tuple[str, str]] = set()
        for i in leaders:
            r = readings[i]
            pk = series_pk(r.sensor, r.metric)
            key = natural_key(r.ts_us, r.reading_id)
            if (pk, key) in taken:
                key = time_key(r.ts_us, r.reading_id)
            taken.add((pk, key))
            keys[i] = key
        return keys

    def _classify(self, r: Reading, key: str, old: Item, standing: dict[Identity, float]) -> str:
        """What a taken key means for ``r``: duplicate, conflict, or moved (another reading
        holds its natural key: it goes to its time key)."""
        pk = series_pk(r.sensor, r.metric)
        parsed = parse_reading_item(old, r.sensor, r.metric, self._tz) if old else None
        stored = None if parsed is None else parsed.reading
        if stored is None or identity(stored) != identity(r):
            if key != time_key(r.ts_us, r.reading_id):
                return "moved"
            log.warning("key %s of %s holds something else: kept aside as a conflict", key, pk)
            standing[(pk, r.ts_us, r.reading_id)] = math.nan
            return "conflict"
        ident = (pk, r.ts_us, r.reading_id)
        standing[ident] = stored.value
        if stored.value != r.value:
            return "conflict"
        with self._lock:
            if self._unreported.get(ident) == r.value:
                del self._unreported[ident]
                return "new"
        return "duplicate"

    def _received(self) -> int:
        with self._lock:
            self._received_us = max(time.time_ns() // 1000, self._received_us + 1)
            return self._received_us

    def _record_conflicts(
        self, readings: Sequence[Reading], status: list[str], kept: list[Record]
    ) -> None:
        """Keep each conflicting newcomer aside once, under its own ``conflict_key``. One
        whose record stands already (the same newcomer twice in the batch, or met before)
        becomes ``kept``, a duplicate, unless this instance's failed attempt wrote that
        record: then this write reports it. ``kept`` collects the records reported."""
        records: dict[Record, int] = {}
        for i, r in enumerate(readings):
            if status[i] != "conflict":
                continue
            pk = series_pk(r.sensor, r.metric)
            record = (pk, conflict_key(pk, r))
            if record in records:
                status[i] = "kept"
            else:
                records[record] = i
        if not records:
            return
        received = self._received()
        puts = [Put(conflict_item(key, readings[i], received)) for (_, key), i in records.items()]
        error: StoreError | None = None
        for (record, i), outcome in zip(records.items(), self._db.put_many(puts), strict=True):
            if outcome is WRITTEN:
                kept.append(record)
            elif isinstance(outcome, StoreError):
                error = error or outcome
            else:
                with self._lock:
                    ours = record in self._unreported_conflicts
                    self._unreported_conflicts.discard(record)
                if ours:
                    kept.append(record)
                else:
                    status[i] = "kept"
        if error is not None:
            raise error

    def _after_commit(self, readings: Sequence[Reading], status: list[str]) -> None:
        """Register new series and tombstone the rollups of closed periods that new (or
        already stored, after a failed attempt) readings fall in."""
        times: dict[str, list[int]] = {}
        for r, verdict in zip(readings, status, strict=True):
            if verdict in ("new", "duplicate"):  # not "kept": a conflict seen before
                times.setdefault(series_pk(r.sensor, r.metric), []).append(r.ts_us)
        fresh = sorted(pk for pk in times if pk not in self.registered)
        if fresh:
            self._db.add_to_set(SERIES_REGISTRY, 0, "pks", fresh)
            self.registered.update(fresh)
        for pk, ts in times.items():
            self._rollups.invalidate(pk, ts)
