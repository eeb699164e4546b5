"""The DynamoDB store's writes: conditional puts, classified by what stands in their way.

Each reading is put under its natural key (officesensor.store.dynamo_items) with
``attribute_not_exists``, 16 in flight. A refused put returns what stands under its key: an
equal reading is a duplicate, a different reading with the same identity a conflict (kept
under ``~conflicts``, never overwriting), and another reading under the same key (a second
reading in one millisecond, another sensor's item) moves to its time key. After the puts:
the series registry learns new series, and closed periods the readings fall in get their
rollups tombstoned (officesensor.store.dynamo_rollups).

Why not TransactWriteItems: it costs two write units per item for an atomicity the contract
does not need (a batch that fails part-way is completed by its retry, exactly once), and a
cancelled transaction refuses every item with the one that failed. What a failed attempt
did write is found again as duplicates by its retry; ``_unreported`` lets the same instance
still report those readings as new, so live statistics and counts see them once.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import tzinfo

from officesensor.errors import StoreError
from officesensor.models import Reading, WriteResult
from officesensor.store.dynamo_client import WRITTEN, DynamoClient, Put
from officesensor.store.dynamo_items import (
    SERIES_REGISTRY,
    Item,
    conflict_item,
    identity,
    natural_key,
    parse_reading_item,
    reading_item,
    series_pk,
    time_key,
)
from officesensor.store.dynamo_rollups import Rollups

log = logging.getLogger(__name__)

_UNREPORTED_MAX = 100_000

Identity = tuple[str, int, int]  # (partition, time µs, ID)


class ReadingWriter:
    def __init__(self, db: DynamoClient, tz: tzinfo, rollups: Rollups) -> None:
        self._db = db
        self._tz = tz
        self._rollups = rollups
        #: Series partitions known to be in the ``~series`` registry.
        self.registered: set[str] = set()
        self._unreported: dict[Identity, float] = {}
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
        committed: list[int] = []
        try:
            conflicts = self._write_leaders(readings, leaders, keys, status, standing, committed)
            for i, r in enumerate(readings):
                if status[i] == "follower":
                    ident = (series_pk(r.sensor, r.metric), r.ts_us, r.reading_id)
                    status[i] = "duplicate" if standing[ident] == r.value else "conflict"
                    if status[i] == "conflict":
                        conflicts.append(r)
            self._record_conflicts(conflicts)
            self._after_commit(readings, status)
        except BaseException:
            with self._lock:  # a retry finds them stored: it must still report them new
                for i in committed:
                    if len(self._unreported) >= _UNREPORTED_MAX:
                        break
                    r = readings[i]
                    ident = (series_pk(r.sensor, r.metric), r.ts_us, r.reading_id)
                    self._unreported[ident] = r.value
            raise
        result = WriteResult()
        for i, r in enumerate(readings):
            if status[i] == "new":
                result.stored += 1
                result.new.append(r)
            elif status[i] == "duplicate":
                result.duplicates += 1
            else:
                result.conflicts += 1
                result.conflicting.append(r)
        return result

    def _write_leaders(
        self,
        readings: Sequence[Reading],
        leaders: list[int],
        keys: dict[int, str],
        status: list[str],
        standing: dict[Identity, float],
        committed: list[int],
    ) -> list[Reading]:
        """Put each reading if its key is free; classify the others. Returns the
        conflicting readings; ``committed`` collects the indexes written."""
        conflicts: list[Reading] = []
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
                    committed.append(i)
                elif isinstance(outcome, StoreError):
                    error = error or outcome
                elif isinstance(outcome, dict):
                    verdict = self._classify(r, keys[i], outcome, standing)
                    if verdict == "moved":
                        keys[i] = time_key(r.ts_us, r.reading_id)
                        retry.append(i)
                    else:
                        status[i] = verdict
                        if verdict == "conflict":
                            conflicts.append(r)
            if error is not None:
                raise error
            pending = retry
        return conflicts

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

    @staticmethod
    def _conflict_key(received_us: int) -> str:
        return f"{received_us}.{secrets.randbits(40):013d}"

    def _record_conflicts(self, conflicts: list[Reading]) -> None:
        received = self._received()
        puts = [
            Put(conflict_item(self._conflict_key(received), r, received), None) for r in conflicts
        ]
        for outcome in self._db.put_many(puts) if puts else ():
            if isinstance(outcome, StoreError):
                raise outcome

    def _after_commit(self, readings: Sequence[Reading], status: list[str]) -> None:
        """Register new series and tombstone the rollups of closed periods that new (or
        already stored, after a failed attempt) readings fall in."""
        times: dict[str, list[int]] = {}
        for r, verdict in zip(readings, status, strict=True):
            if verdict in ("new", "duplicate"):
                times.setdefault(series_pk(r.sensor, r.metric), []).append(r.ts_us)
        fresh = sorted(pk for pk in times if pk not in self.registered)
        if fresh:
            self._db.add_to_set(SERIES_REGISTRY, 0, "pks", fresh)
            self.registered.update(fresh)
        for pk, ts in times.items():
            self._rollups.invalidate(pk, ts)
