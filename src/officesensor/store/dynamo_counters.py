"""The counter region of a reading partition: what the original IoT rule wrote.

The original sensor's ``ID`` is a counter that restarts at 0 with its program, and the rule
keys items by it, so a restart overwrites the oldest keys: read in key order, the region is
a few *segments*, key intervals along which time never goes back (the newest run from 0
up, then what is left of earlier runs). This module finds them once per process (one pass
over the region, keeping every ``SAMPLE_EVERY``-th (key, time) of each segment), then keeps
them current at most every ``refresh_s`` with two small queries: the first key (has a new
run started?) and the keys after the newest segment (has it grown?). A time range then maps
to a key range per segment, read with key conditions, never the whole region.

Everything here is derived and in memory: a wrong guess costs extra reads, never a missed
reading that the segments say is there. The region of a table written only by this app is
empty, which one query with ``Limit 1`` tells.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from decimal import Decimal

from officesensor.models import Reading
from officesensor.store.dynamo_client import DynamoClient
from officesensor.store.dynamo_items import TIME_KEY_MIN, Parsed, parse_reading_item

SAMPLE_EVERY = 64
_WALK_PAGE = 200

Keep = Callable[[Reading], bool]


@dataclass
class Segment:
    """Keys key_lo..key_hi, along which reading times never decrease; ts_lo <= every time
    in it <= ts_hi. ``samples`` are (key, time) pairs in key order, the first key first."""

    key_lo: int
    key_hi: int
    ts_lo: int
    ts_hi: int
    samples: list[tuple[int, int]] = field(default_factory=list)
    _since_sample: int = 0

    def extend(self, key: int, ts_us: int) -> None:
        self.key_hi, self.ts_hi = key, ts_us
        self._since_sample += 1
        if self._since_sample >= SAMPLE_EVERY:
            self.samples.append((key, ts_us))
            self._since_sample = 0

    def key_bounds(self, lo_us: int, hi_us: int) -> tuple[int, int] | None:
        """Keys (inclusive) of this segment that can hold a time in [lo, hi)."""
        if self.ts_hi < lo_us or self.ts_lo >= hi_us or self.key_lo > self.key_hi:
            return None
        times = [ts for _, ts in self.samples]
        first = self.key_lo
        i = bisect.bisect_left(times, lo_us) - 1  # last sample before lo: all keys up to
        if i >= 0:  # it hold earlier times
            first = max(first, self.samples[i][0])
        last = self.key_hi
        j = bisect.bisect_left(times, hi_us)  # first sample at or after hi
        if j < len(self.samples):
            last = min(last, self.samples[j][0])
        return first, last

    def trim_below(self, key: int) -> None:
        """Keys below ``key`` were overwritten by a newer run."""
        self.key_lo = key
        self.samples = [(k, ts) for k, ts in self.samples if k >= key]


class CounterIndex:
    """The segments of one partition's counter region, for one series."""

    def __init__(
        self, db: DynamoClient, pk: str, sensor: str, metric: str, tz: tzinfo, refresh_s: float
    ) -> None:
        self._db, self._pk, self._sensor, self._metric, self._tz = db, pk, sensor, metric, tz
        self._refresh_s = refresh_s
        self._segments: list[Segment] | None = None
        self._head: tuple[int, int] | None = None  # (key, time) of the region's first item
        self._checked = -math.inf
        self._lock = threading.Lock()

    def _parse(self, item: dict[str, object]) -> Parsed:
        return parse_reading_item(item, self._sensor, self._metric, self._tz)

    # ------------------------------------------------------------------ keeping current

    def segments(self) -> list[Segment]:
        with self._lock:
            now = time.monotonic()
            if self._segments is None:
                self._segments = self._build()
                self._checked = now
            elif now - self._checked >= self._refresh_s:
                self._refresh(self._segments)
                self._checked = now
            return list(self._segments)

    def _build(self) -> list[Segment]:
        segments: list[Segment] = []
        current: Segment | None = None
        self._head = None
        # eventually consistent (half the price): what it misses, the next walk finds
        for page in self._db.query_pages(self._pk, below=TIME_KEY_MIN, consistent=False):
            for item in page.get("Items", []):
                parsed = self._parse(item)
                if self._head is None:
                    self._head = _head_of(parsed)
                if parsed.reading is None:
                    continue
                key, ts = int(parsed.key), parsed.reading.ts_us
                if current is not None and ts >= current.ts_hi:
                    current.extend(key, ts)
                else:
                    current = Segment(key, key, ts, ts, [(key, ts)])
                    segments.append(current)
        return segments

    def _refresh(self, segments: list[Segment]) -> None:
        head = next(self._db.query_pages(self._pk, below=TIME_KEY_MIN, page_size=1))
        items = head.get("Items", [])
        if not items:
            segments.clear()
            self._head = None
            return
        first = self._parse(items[0])
        if _head_of(first) != self._head:
            reading = first.reading
            if not segments or reading is None or reading.ts_us <= max(s.ts_hi for s in segments):
                segments[:] = self._build()  # not a plain restart: start afresh
                return
            key, ts = int(first.key), reading.ts_us  # the program restarted: a new run
            run = Segment(key, key, ts, ts, [(key, ts)])
            trimmed = self._trim(segments, key)
            segments.append(run)
            self._head = (key, ts)
            if not trimmed or not self._walk(segments, run):
                segments[:] = self._build()
                return
        if not segments:
            return
        newest = max(segments, key=lambda s: s.ts_hi)
        if not self._walk(segments, newest):
            segments[:] = self._build()

    def _walk(self, segments: list[Segment], run: Segment) -> bool:
        """Extend ``run`` over the keys after it that continue it in time (the original
        sensor counting on), trimming them off the older segments they overwrote.
        False if the region is not as the segments say (the caller rebuilds them)."""
        start = run.key_hi + 1
        while start < TIME_KEY_MIN:
            page = next(
                self._db.query_pages(self._pk, start, TIME_KEY_MIN - 1, page_size=_WALK_PAGE)
            )
            items = page.get("Items", [])
            for item in items:
                parsed = self._parse(item)
                if parsed.reading is None:
                    continue
                key, ts = int(parsed.key), parsed.reading.ts_us
                if ts < run.ts_hi:
                    return True
                if not self._trim(segments, key, keep=run):
                    return False
                run.extend(key, ts)
            if not page.get("LastEvaluatedKey"):
                return True
            start = int(Decimal(items[-1]["ID"]["N"])) + 1 if items else TIME_KEY_MIN
        return True

    @staticmethod
    def _trim(segments: list[Segment], key: int, keep: Segment | None = None) -> bool:
        for segment in list(segments):
            if segment is keep or not segment.key_lo <= key <= segment.key_hi:
                continue
            if key != segment.key_lo:  # overwritten in its middle: not a run we understand
                return False
            if key == segment.key_hi:
                segments.remove(segment)
            else:
                segment.trim_below(key + 1)
        return True

    # ------------------------------------------------------------------ reading

    def readings(
        self, lo_us: int, hi_us: int, *, need: int | None, descending: bool, keep: Keep
    ) -> list[Reading]:
        """Readings with lo <= time < hi that ``keep`` accepts: all of them, or at least
        the ``need`` oldest (newest if ``descending``) of each segment."""
        found: list[Reading] = []
        for segment in self.segments():
            bounds = segment.key_bounds(lo_us, hi_us)
            if bounds is None:
                continue
            taken = 0
            pages = self._db.query_pages(
                self._pk,
                *bounds,
                descending=descending,
                page_size=None if need is None else need + 1,
            )
            for page in pages:
                for item in page.get("Items", []):
                    reading = self._parse(item).reading
                    if reading is None or not lo_us <= reading.ts_us < hi_us:
                        continue
                    if keep(reading):
                        found.append(reading)
                        taken += 1
                if need is not None and taken >= need:
                    break
        return found


def _head_of(parsed: Parsed) -> tuple[int, int]:
    """What identifies the region's first item: its key and time (-1: not a reading)."""
    return int(parsed.key), (-1 if parsed.reading is None else parsed.reading.ts_us)
