"""Latency histograms for /metrics: cheap to observe from any thread, read as a snapshot.

Prometheus histograms are fixed buckets chosen up front, so observing is a binary search and
one increment under a lock (no sample is kept), and any number of instances can be summed or
turned into quantiles by the server (``histogram_quantile``). Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

#: Committing one batch to the store: SQLite with ``synchronous=FULL`` takes about a
#: millisecond on an SSD, tens on an SD card; DynamoDB a few to hundreds.
STORE_WRITE_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Counts per bucket at one moment. ``counts[i]`` holds the observations in
    ``(bounds[i-1], bounds[i]]``; the last entry, one past ``bounds``, those above them all."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float  # the sum of every observed value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, observations <= le)`` for every bound and finally ``+Inf`` (the count)."""
        running = 0
        result = []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result


class Histogram:
    """Thread-safe: ``observe`` may be called from any thread, ``snapshot`` from another."""

    def __init__(self, bounds: Sequence[float]) -> None:
        ordered = tuple(float(b) for b in bounds)
        if not ordered or list(ordered) != sorted(set(ordered)) or not math.isfinite(ordered[-1]):
            raise ValueError("bucket bounds must be finite, distinct and ascending")
        self._bounds = ordered
        self._counts = [0] * (len(ordered) + 1)
        self._total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self._bounds, value)  # the first bound >= value
        with self._lock:
            self._counts[index] += 1
            self._total += value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            return HistogramSnapshot(self._bounds, tuple(self._counts), self._total)
