"""Rollups on DynamoDB: a derived cache of *closed* hours and days, in the readings' table.

Items (partition ``~<kind>#<series partition>``, sort key the period's start in epoch s):

- ``~hour#…``: the hour's moments and its minutes' moments (``m``, binary), and its value
  histogram (``h``, binary; ``nh`` when a value is too large to quantize);
- ``~day#…``: the day's moments and its hours' moments (about 1.2 KB), all a chart needs;
- ``~dayhist#…``: the day's histogram, apart, so charts never pay for it; it belongs to
  the day item with the same ``gen``.

A period is *closed* once ``grace_s`` has passed since its end. The summary of a closed
period is computed from raw readings the first time someone needs it (one query per run of
consecutive missing periods), written with a condition, and read from then on; open
periods are computed from raw readings (open days from their hours) and never stored.
Nothing about a rollup is ever incremented, so instances, retries and crashes cannot make it
count a reading twice: a rollup is a pure function of the raw readings of a closed period.

Late readings: after a write commits readings into a closed period (or finds them there
already: a redelivery after a failed attempt), the writer overwrites that period's items
with a *tombstone* holding only a fresh random ``gen``. A reader that computed a summary
writes it only if the item is still what it saw before reading the raw readings (absent,
or a tombstone of the same ``gen``), so a summary computed from readings that a concurrent
late write has changed is either refused or overwritten by that write's tombstone. Writes
are conditional PutItem requests, sent concurrently. Readers
decide what is closed from their clock before they read; writers tombstone from
``grace_s - skew_s`` after the period's end, so clocks may disagree by ``skew_s``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from officesensor import rollups
from officesensor.errors import StoreError
from officesensor.rollups import Moments
from officesensor.store.dynamo_client import DynamoClient, Put, error_code
from officesensor.store.dynamo_items import (
    HASH_KEY,
    RANGE_KEY,
    Item,
    Summary,
    derived_pk,
    pack_hist,
    pack_moments,
    summaries_of,
    unpack_hist,
    unpack_moments,
)

log = logging.getLogger(__name__)

HOUR_S = 3600
DAY_S = 86_400
_US = 1_000_000
#: Longest stretch of raw readings computed at once (bounds memory on a first 1-year view).
_RAW_CHUNK_S = {HOUR_S: 2 * DAY_S, DAY_S: 7 * DAY_S}

#: (lo_us, hi_us) -> times (µs) and values of the series' readings with lo <= t < hi.
RawReader = Callable[[int, int], tuple[rollups.Int64Array, rollups.FloatArray]]


@dataclass(frozen=True, slots=True)
class _Seen:
    """A rollup item as read: its ``gen`` (None: no item) and summary (None: tombstone)."""

    gen: str | None
    summary: Summary | None


def _new_gen() -> str:
    return str(secrets.randbits(62))


class Rollups:
    def __init__(
        self,
        db: DynamoClient,
        *,
        grace_s: float,
        skew_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.grace_s = grace_s
        self.skew_s = skew_s
        self._clock = clock
        #: False once DynamoDB refused a rollup write (a read-only IAM policy): then every
        #: summary is computed on read.
        self.writable = True

    def _closed(self, start_s: int, level_s: int, now: float) -> bool:
        return start_s + level_s + self.grace_s <= now

    def closed_through(self, level_s: int, now: float) -> int:
        """The start of the first ``level_s`` period not closed at ``now``: every period
        before it is closed."""
        return int((now - self.grace_s) // level_s * level_s)

    # ------------------------------------------------------------------ reading

    def summaries(
        self, pk: str, level_s: int, lo_s: int, hi_s: int, raw: RawReader, *, with_hist: bool
    ) -> dict[int, Summary]:
        """Summaries of the periods of ``level_s`` starting in [lo_s, hi_s) (aligned) that
        hold readings. ``with_hist``: day summaries carry their histogram (hours always do)."""
        if lo_s >= hi_s:
            return {}
        now = self._clock()  # before anything is read: see the module docstring
        seen = self._read_items(pk, level_s, lo_s, hi_s, with_hist)
        found: dict[int, Summary] = {}
        missing: list[int] = []
        open_starts: list[int] = []
        for start in range(lo_s, hi_s, level_s):
            item = seen.get(start)
            if item is not None and item.summary is not None:
                found[start] = item.summary
            elif self._closed(start, level_s, now):
                missing.append(start)
            else:
                open_starts.append(start)
        for run_lo, run_hi in _runs(missing, level_s):
            computed = self._compute(run_lo, run_hi, level_s, raw)
            found.update(computed)
            self._store(pk, level_s, computed, seen)
        if open_starts:
            found.update(self._open(pk, level_s, open_starts[0], hi_s, raw))
        return found

    def _open(
        self, pk: str, level_s: int, lo_s: int, hi_s: int, raw: RawReader
    ) -> dict[int, Summary]:
        if level_s == HOUR_S:
            ts, values = raw(lo_s * _US, hi_s * _US)
            return summaries_of(ts, values, HOUR_S)
        hours = self.summaries(pk, HOUR_S, lo_s, hi_s, raw, with_hist=True)
        days: dict[int, list[Summary]] = {}
        for start, summary in sorted(hours.items()):
            days.setdefault(start // DAY_S * DAY_S, []).append(summary)
        return {start: _merge_day(start, parts) for start, parts in days.items()}

    def _read_items(
        self, pk: str, level_s: int, lo_s: int, hi_s: int, with_hist: bool
    ) -> dict[int, _Seen]:
        kind = "hour" if level_s == HOUR_S else "day"
        items = self._db.query_items(derived_pk(kind, pk), lo_s, hi_s - 1, consistent=False)
        hists: dict[int, Item] = {}
        if level_s == DAY_S and with_hist:
            for item in self._db.query_items(
                derived_pk("dayhist", pk), lo_s, hi_s - 1, consistent=False
            ):
                hists[int(item[RANGE_KEY]["N"])] = item
        seen: dict[int, _Seen] = {}
        for item in items:
            start = int(item[RANGE_KEY]["N"])
            gen = item.get("gen", {}).get("N")
            summary = None
            if "m" in item:
                hist_item = item if level_s == HOUR_S else hists.get(start)
                if level_s == DAY_S and not with_hist:
                    summary = _summary(start, item, None)
                elif hist_item is not None and hist_item.get("gen", {}).get("N") == gen:
                    summary = _summary(start, item, hist_item)
            seen[start] = _Seen(gen, summary)
        return seen

    def _compute(self, lo_s: int, hi_s: int, level_s: int, raw: RawReader) -> dict[int, Summary]:
        computed: dict[int, Summary] = {}
        step = _RAW_CHUNK_S[level_s]
        for chunk_lo in range(lo_s, hi_s, step):
            chunk_hi = min(chunk_lo + step, hi_s)
            ts, values = raw(chunk_lo * _US, chunk_hi * _US)
            computed.update(summaries_of(ts, values, level_s))
        return computed

    # ------------------------------------------------------------------ writing

    def _store(
        self, pk: str, level_s: int, computed: dict[int, Summary], seen: dict[int, _Seen]
    ) -> None:
        """Write computed summaries, each only over what was seen before computing it. A
        day's histogram goes first, under the gen its day item is about to get: a day is
        valid only while both carry the same gen, which any tombstone breaks."""
        if not self.writable or not computed:
            return
        hists: list[Put] = []
        items: list[Put] = []
        kind = "hour" if level_s == HOUR_S else "day"
        for start, summary in sorted(computed.items()):
            previous = seen.get(start)
            if previous is None or previous.gen is None:
                condition, values = "attribute_not_exists(#i)", {}
            else:
                condition, values = "#g = :g", {":g": {"N": previous.gen}}
            gen = {"N": _new_gen()}
            hist: Item = (
                {"nh": {"BOOL": True}}
                if summary.hist is None
                else {"h": {"B": pack_hist(summary.hist)}}
            )
            item = {
                **_key(derived_pk(kind, pk), start),
                "gen": gen,
                "m": {"B": pack_moments(summary.moments, summary.parts, start)},
            }
            if level_s == HOUR_S:
                item.update(hist)
            else:
                hists.append(
                    Put({**_key(derived_pk("dayhist", pk), start), "gen": gen, **hist}, None)
                )
            items.append(Put(item, condition, values))
        try:
            self._db.batch_write([put.item for put in hists])  # unconditional: 25 a request
            for outcome in self._db.put_many(items):
                if isinstance(outcome, StoreError):  # a lost race is fine, not an error
                    raise outcome
        except StoreError as exc:
            if error_code(exc) == "AccessDeniedException" or "AccessDenied" in str(exc):
                log.warning("rollups cannot be written (%s): computing them on every read", exc)
                self.writable = False
                return
            raise

    def invalidate(self, pk: str, ts_us: Iterable[int]) -> None:
        """Tombstone the closed hours and days holding these reading times (the writer's
        side of the module docstring; call it after the readings are committed)."""
        now = self._clock()
        margin = self.grace_s - self.skew_s
        hours = {t // (HOUR_S * _US) * HOUR_S for t in ts_us}
        days = {hour // DAY_S * DAY_S for hour in hours}
        tombstones = [
            {**_key(derived_pk("hour", pk), hour), "gen": {"N": _new_gen()}}
            for hour in sorted(hours)
            if hour + HOUR_S + margin <= now
        ]
        for day in sorted(days):  # a new day gen also voids its ~dayhist item
            if day + DAY_S + margin <= now:
                tombstones.append({**_key(derived_pk("day", pk), day), "gen": {"N": _new_gen()}})
        if tombstones:
            self._db.batch_write(tombstones)


def _key(pk: str, start_s: int) -> Item:
    return {HASH_KEY: {"S": pk}, RANGE_KEY: {"N": str(start_s)}}


def _summary(start: int, item: Item, hist_item: Item | None) -> Summary:
    moments, parts = unpack_moments(item["m"]["B"], start)
    hist = None
    if hist_item is not None and "h" in hist_item:
        hist = unpack_hist(hist_item["h"]["B"])
    return Summary(start, moments, parts, hist)


def _runs(starts: list[int], step: int) -> list[tuple[int, int]]:
    """Consecutive aligned starts as [lo, hi) runs."""
    runs: list[tuple[int, int]] = []
    for start in starts:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + step)
        else:
            runs.append((start, start + step))
    return runs


def _merge_day(start: int, hours: list[Summary]) -> Summary:
    """An open day from its hours' summaries."""
    merged = rollups.combine_moments(
        np.array([h.moments.n for h in hours], dtype=np.int64),
        np.array([h.moments.mean for h in hours]),
        np.array([h.moments.m2 for h in hours]),
        np.array([h.moments.min for h in hours]),
        np.array([h.moments.max for h in hours]),
    )
    assert merged is not None
    blobs = [h.hist for h in hours]
    hist = None if any(b is None for b in blobs) else rollups.merge_blobs([b for b in blobs if b])
    parts: dict[int, Moments] = {h.start_s: h.moments for h in hours}
    return Summary(start, merged, parts, hist)
