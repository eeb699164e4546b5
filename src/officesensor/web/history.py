"""A series over a time range, as the pages, the JSON API and the CSV export all show it.

One module computes every number those three show, so they cannot disagree: the chart's
buckets (from the store's rollups, gaps where readings are missing), the interval statistics
with coverage, the sensor's cadence, and the CSV rows (the same trailing-window statistics as
``/api/readings``, computed chunk by chunk while streaming).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from officesensor.analytics import DEFAULT_METHOD, detector
from officesensor.rollups import IntervalStats
from officesensor.store import Store
from officesensor.web.ranges import STAT_INTERVALS, TimeRange, bucket_width, gap_threshold_s
from officesensor.web.ranges import named_range as _named_range
from officesensor.web.series import finite_or_none, iso_utc

#: Readings the cadence is learned from (the median interval between them).
CADENCE_READINGS = 101
CSV_HEADER = "time,id,value,mean,std,z,anomaly\r\n"


def cadence_s(store: Store, sensor: str, metric: str) -> float | None:
    """The sensor's usual interval between readings: the median of its latest ones."""
    latest = store.latest(sensor, metric, CADENCE_READINGS)
    gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(latest) if b.ts > a.ts]
    return statistics.median(gaps) if gaps else None


@dataclass(frozen=True, slots=True)
class BucketChart:
    width_s: int
    gap_s: float  # buckets further apart than this have a gap between them
    t: list[float]  # bucket starts, epoch milliseconds
    count: list[int]
    mean: list[float]
    min: list[float]
    max: list[float]


def bucket_chart(
    store: Store,
    sensor: str,
    metric: str,
    span: TimeRange,
    target: int,
    cadence: float | None,
) -> BucketChart:
    width = bucket_width(span.span, target)
    buckets = store.buckets(sensor, metric, span.start, span.end, width)
    return BucketChart(
        width_s=width,
        gap_s=gap_threshold_s(width, cadence),
        t=[b.start.timestamp() * 1000 for b in buckets],
        count=[b.count for b in buckets],
        mean=[b.mean for b in buckets],
        min=[b.min for b in buckets],
        max=[b.max for b in buckets],
    )


@dataclass(frozen=True, slots=True)
class IntervalRow:
    name: str
    stats: IntervalStats
    coverage: float | None  # share of the expected readings present, 0..1

    def json(self) -> dict[str, object]:
        s = self.stats
        return {
            "name": self.name,
            "start": iso_utc(s.start),
            "end": iso_utc(s.end),
            "count": s.count,
            "mean": _number(s.mean),
            "std": _number(s.std),
            "min": _number(s.min),
            "q25": _number(s.q25),
            "median": _number(s.median),
            "q75": _number(s.q75),
            "max": _number(s.max),
            "coverage": self.coverage,
            "quantile_error": s.quantile_error,
        }


def _number(value: float | None) -> float | None:
    return None if value is None else finite_or_none(value)


def interval_rows(
    store: Store,
    sensor: str,
    metric: str,
    selected: TimeRange,
    now: datetime,
    cadence: float | None,
) -> list[IntervalRow]:
    """Statistics of the last hour, day, week, month and year, then of the selected range."""
    first = store.first_time(sensor, metric)
    spans = [_named_range(name, now) for name in STAT_INTERVALS]
    rows = []
    computed: dict[tuple[datetime, datetime], IntervalStats] = {}
    for name, span in [*((s.name, s) for s in spans), ("selected", selected)]:
        key = (span.start, span.end)
        if key not in computed:
            computed[key] = store.interval_stats(sensor, metric, span.start, span.end)
        stats = computed[key]
        rows.append(IntervalRow(name, stats, coverage(stats.count, span, first, now, cadence)))
    return rows


def coverage(
    count: int, span: TimeRange, first: datetime | None, now: datetime, cadence: float | None
) -> float | None:
    """count / expected readings, where expected counts one per cadence over the part of the
    range between the series' first reading and now. None when nothing is expected."""
    if cadence is None or cadence <= 0 or first is None:
        return None
    start = max(span.start, first)
    end = min(span.end, now)
    expected = (end - start).total_seconds() / cadence
    if expected < 1:
        return None
    return round(min(1.0, count / expected), 4)


def csv_lines(
    store: Store,
    sensor: str,
    metric: str,
    start: datetime,
    end: datetime,
    window: int,
    z_threshold: float,
    chunk: int = 10_000,
    method: str = DEFAULT_METHOD,
) -> Iterator[str]:
    """The readings in [start, end) as CSV, with the same trailing-window statistics as the
    API (each window reaches back before ``start``), a chunk of rows at a time."""
    yield CSV_HEADER
    chosen = detector(method)
    depth = chosen.history(window)
    history = [r.value for r in store.latest(sensor, metric, depth, before=start)]
    for readings in store.iter_range(sensor, metric, start, end, chunk):
        values = [r.value for r in readings]
        stats = chosen.batch([*history, *values], window, z_threshold).since(len(history))
        lines = []
        for i, reading in enumerate(readings):
            mean, std, z = (finite_or_none(c[i]) for c in (stats.mean, stats.std, stats.z))
            lines.append(
                f"{iso_utc(reading.ts)},{reading.reading_id},{reading.value!r},"
                f"{_csv_number(mean)},{_csv_number(std)},{_csv_number(z)},"
                f"{'true' if stats.anomaly[i] else 'false'}\r\n"
            )
        yield "".join(lines)
        history = [*history, *values][-depth:] if depth else []


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(value)
