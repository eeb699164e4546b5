"""Chart buckets and interval statistics of one DynamoDB series, from rollup summaries
(officesensor.store.dynamo_rollups) in the middle of a range and raw readings at its
ragged ends. No I/O of its own: the series it is given reads.

Which summaries a range needs follows officesensor.rollups.split_range: a bucket width that
is a multiple of an hour reads day summaries (their hours' moments fill buckets such as
12 h) and hour summaries at the edges; a multiple of a minute reads hour summaries (their
minutes' moments) down to the minute; any other width groups raw readings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import numpy as np

from officesensor import rollups
from officesensor.models import Reading, from_epoch_us, to_epoch_us
from officesensor.rollups import Bucket, IntervalStats, Moments, ValueCounts
from officesensor.store.dynamo_items import Summary

HOUR_S = 3600
DAY_S = 86_400
_US = 1_000_000


class Series(Protocol):
    def readings(self, lo_us: int, hi_us: int) -> list[Reading]:
        """Raw readings with lo <= time < hi, oldest first."""

    def values(self, lo_us: int, hi_us: int) -> rollups.FloatArray:
        """Their values."""

    def summaries(
        self, level_s: int, lo_s: int, hi_s: int, *, with_hist: bool
    ) -> dict[int, Summary]:
        """Summaries of the hours or days starting in [lo_s, hi_s) that hold readings."""


# --------------------------------------------------------------------------- buckets


class _Buckets:
    """Count, sum, min and max per bucket index, from moments of pieces inside a bucket."""

    def __init__(self, origin_us: int, width_us: int) -> None:
        self.origin_us, self.width_us = origin_us, width_us
        self.acc: dict[int, list[float]] = {}

    def add(self, t_us: int, m: Moments) -> None:
        index = (t_us - self.origin_us) // self.width_us
        seen = self.acc.get(index)
        total = m.n * m.mean
        if seen is None:
            self.acc[index] = [m.n, total, m.min, m.max]
        else:
            seen[0] += m.n
            seen[1] += total
            seen[2] = min(seen[2], m.min)
            seen[3] = max(seen[3], m.max)

    def result(self) -> list[Bucket]:
        return [
            Bucket(
                from_epoch_us(self.origin_us + index * self.width_us),
                int(count),
                float(total / count),
                float(low),
                float(high),
            )
            for index, (count, total, low, high) in sorted(self.acc.items())
        ]


def buckets(series: Series, start: datetime, end: datetime, width_s: int) -> list[Bucket]:
    """As ``Store.buckets``; ``width_s`` positive."""
    start_us, end_us = to_epoch_us(start), to_epoch_us(end)
    if start_us >= end_us:
        return []
    width_us = width_s * _US
    out = _Buckets(rollups.floor_to(start_us, width_us), width_us)
    widths: tuple[int, ...] = ()
    if width_s % 60 == 0:
        widths = (60, HOUR_S, DAY_S) if width_s % HOUR_S == 0 else (60, HOUR_S)
    pieces = rollups.split_range(start_us, end_us, widths)
    hours = _hours_for(series, pieces)
    for piece in pieces:
        lo_s, hi_s = piece.lo_us // _US, piece.hi_us // _US
        if piece.width_s == 0:
            for r in series.readings(piece.lo_us, piece.hi_us):
                out.add(r.ts_us, Moments(1, r.value, 0.0, r.value, r.value))
        elif piece.width_s == 60:  # may cross an hour when no whole hour fits
            for hour in range(lo_s // HOUR_S * HOUR_S, hi_s, HOUR_S):
                summary = hours.get(hour)
                for minute, m in summary.parts.items() if summary else ():
                    if lo_s <= minute < hi_s:
                        out.add(minute * _US, m)
        elif piece.width_s == HOUR_S:
            for hour in range(lo_s, hi_s, HOUR_S):
                summary = hours.get(hour)
                if summary is not None:
                    _add_summary(out, summary, whole=width_s % HOUR_S == 0)
        else:
            for summary in series.summaries(DAY_S, lo_s, hi_s, with_hist=False).values():
                _add_summary(out, summary, whole=width_s % DAY_S == 0)
    return out.result()


def _add_summary(out: _Buckets, summary: Summary, *, whole: bool) -> None:
    if whole:
        out.add(summary.start_s * _US, summary.moments)
    else:
        for part_start, m in summary.parts.items():
            out.add(part_start * _US, m)


def _hours_for(series: Series, pieces: list[rollups.Piece]) -> dict[int, Summary]:
    """The hour summaries the minute and hour pieces need, in as few reads as spans."""
    spans: list[list[int]] = []
    for piece in pieces:
        if piece.width_s not in (60, HOUR_S):
            continue
        lo = piece.lo_us // _US // HOUR_S * HOUR_S
        hi = -(-(piece.hi_us // _US) // HOUR_S) * HOUR_S
        spans.append([lo, hi])
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    hours: dict[int, Summary] = {}
    for lo, hi in merged:
        hours.update(series.summaries(HOUR_S, lo, hi, with_hist=False))
    return hours


# --------------------------------------------------------------------------- statistics


def interval_stats(
    series: Series, start: datetime, end: datetime, exact_limit: int
) -> IntervalStats:
    """As ``Store.interval_stats``: exact from raw readings up to ``exact_limit`` of them,
    else moments from summaries and quartiles from their histograms plus the raw edges."""
    start_us, end_us = to_epoch_us(start), to_epoch_us(end)
    empty = IntervalStats(start, end, 0, None, None, None, None, None, None, None, 0.0)
    if start_us >= end_us:
        return empty
    edges: list[rollups.FloatArray] = []
    hours: list[Summary] = []
    days: list[Summary] = []
    for piece in rollups.split_range(start_us, end_us, (HOUR_S, DAY_S)):
        if piece.width_s == 0:
            edges.append(series.values(piece.lo_us, piece.hi_us))
            continue
        lo_s, hi_s = piece.lo_us // _US, piece.hi_us // _US
        found = series.summaries(piece.width_s, lo_s, hi_s, with_hist=True)
        (days if piece.width_s == DAY_S else hours).extend(found.values())
    count = sum(v.size for v in edges) + sum(s.moments.n for s in hours + days)
    if count == 0:
        return empty
    if count <= exact_limit:
        return exact_stats(start, end, series.values(start_us, end_us))
    counts = ValueCounts()
    moments: Moments | None = None
    for values in edges:
        moments = rollups.merge_moments(moments, rollups.moments_of(values))
        counts.add_values(values)
    for summary, level_s in [*((h, HOUR_S) for h in hours), *((d, DAY_S) for d in days)]:
        moments = rollups.merge_moments(moments, summary.moments)
        _add_hist(series, summary, level_s, counts)
    assert moments is not None
    values, weights = counts.sorted_counts()
    q25, median, q75 = rollups.weighted_quantiles(values, weights)
    error = rollups.quantile_error_bound(moments.min, moments.max) if counts.quantized else 0.0
    low, high = moments.min, moments.max
    return IntervalStats(
        start, end, moments.n, moments.mean, moments.std, low,
        max(low, min(q25, high)), max(low, min(median, high)), max(low, min(q75, high)),
        high, error,
    )  # fmt: skip


def _add_hist(series: Series, summary: Summary, level_s: int, counts: ValueCounts) -> None:
    """A period's values into ``counts``: its histogram, or (it holds a value too large to
    quantize) its hours' histograms, the raw values of an hour without one."""
    if summary.hist is not None:
        counts.add_blobs([summary.hist])
    elif level_s == HOUR_S:
        counts.add_values(series.values(summary.start_s * _US, (summary.start_s + HOUR_S) * _US))
    else:
        start = summary.start_s
        for hour in series.summaries(HOUR_S, start, start + DAY_S, with_hist=True).values():
            _add_hist(series, hour, HOUR_S, counts)


def exact_stats(start: datetime, end: datetime, values: rollups.FloatArray) -> IntervalStats:
    moments = rollups.moments_of(values)
    assert moments is not None
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if values.size >= 2 else None
    q25, median, q75 = rollups.exact_quartiles(values)
    return IntervalStats(
        start, end, moments.n, mean, std, moments.min, q25, median, q75, moments.max, 0.0
    )
