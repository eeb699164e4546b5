"""Per-series rolling statistics kept up to date as readings arrive: O(1) work per reading.

A series is primed once from the store (the readings its first window needs: W-1, or W for
the methods that judge a reading against the W before it), then only updated. Readings
older than the newest one already seen (late arrivals) are stored but not fed to the live
window, which would otherwise see time run backwards; pages recompute from the store anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from officesensor.analytics import DEFAULT_METHOD, Incremental, WindowStats, detector
from officesensor.errors import StoreError
from officesensor.models import AnomalyRecord, Reading, WriteResult
from officesensor.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Analysed:
    reading: Reading
    stats: WindowStats


class LiveAnalytics:
    def __init__(
        self, store: Store, window: int, z_threshold: float, method: str = DEFAULT_METHOD
    ) -> None:
        self._store = store
        self._window = window
        self._z = z_threshold
        self._detector = detector(method)
        self._stats: dict[tuple[str, str], Incremental] = {}
        self._newest: dict[tuple[str, str], datetime] = {}

    def update(self, readings: Iterable[Reading]) -> list[Analysed]:
        """Feed newly stored readings (any order); returns the in-order ones with their stats."""
        results = []
        for reading in sorted(readings, key=lambda r: (r.ts, r.reading_id)):
            key = (reading.sensor, reading.metric)
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = self._primed(reading)
            newest = self._newest.get(key)
            if newest is not None and reading.ts <= newest:
                continue
            self._newest[key] = reading.ts
            results.append(Analysed(reading, stats.update(reading.value)))
        return results

    def _primed(self, first: Reading) -> Incremental:
        stats = self._detector.incremental(self._window, self._z)
        try:
            history = self._store.latest(
                first.sensor, first.metric, self._detector.history(self._window), before=first.ts
            )
        except StoreError as exc:  # statistics only: start with an empty window instead
            log.warning(
                "live statistics for %s/%s start unprimed: %s", first.sensor, first.metric, exc
            )
            return stats
        for reading in history:
            stats.update(reading.value)
        if history:
            self._newest[(first.sensor, first.metric)] = history[-1].ts
        return stats


def flagged(analysed: Iterable[Analysed]) -> list[AnomalyRecord]:
    """The anomalies among analysed readings, as the store records them."""
    return [
        AnomalyRecord(a.reading, a.stats.mean, a.stats.std, a.stats.z)
        for a in analysed
        if a.stats.anomaly and a.stats.std is not None and a.stats.z is not None
    ]


def write_and_flag(
    store: Store, readings: Sequence[Reading], analytics: LiveAnalytics
) -> WriteResult:
    """Store a batch (in reading-time order) and record the anomalies the live detector flags
    among the newly stored readings, as ingest does. For backfills and imports."""
    result = store.write_many(readings)
    found = flagged(analytics.update(result.new))
    if found:
        store.record_anomalies(found)
    return result
