"""Pre-aggregated rollups of readings: bucket arithmetic, moments, histograms, quantiles.

Pure logic, no I/O: the stores keep the rollups, this module defines what they hold and how
pieces of them combine.

Levels
    Rollups are kept per series at the widths ``LEVELS_S`` (minute, hour, day), each bucket
    aligned to the Unix epoch (UTC): bucket ``k`` of width ``w`` holds the readings with
    ``k·w <= time < (k+1)·w``. A bucket holds the readings' count ``n``, ``mean``, ``m2``
    (sum of squared deviations from the mean), ``min`` and ``max``. Buckets merge with Chan's
    parallel formula (``merge_moments``, ``combine_moments``), never with sums of squares, so
    mean and variance stay exact up to float rounding whatever the values' magnitude.

Ranges
    ``split_range`` cuts any [start, end) into aligned pieces: raw readings for the ragged
    edges, then minute, hour and day pieces, coarsest in the middle. A chart of buckets of
    width ``w`` uses only levels that divide ``w``, so every rollup piece lies inside one
    chart bucket; one year of 6-hour buckets therefore reads about 8,800 hour rows plus under
    two minutes of raw readings, never millions of rows.

Histograms (for quartiles)
    Hours and days also get a histogram of their values quantized to multiples of
    ``QUANTILE_STEP``: key ``k = rint(v / step)`` (an int64), decoded as ``k·step``. The
    blob is the sorted unique keys (little-endian int64) followed by their counts
    (little-endian int64). Quantization is monotone, and moves a value by at most
    ``step/2·(1+u) + 2u·|v|`` (u = 2⁻⁵³, the float rounding of the division and the
    product), so each order statistic of the quantized multiset is within that of the exact
    one (sorting commutes with a monotone map; a pointwise perturbation of at most δ moves
    every order statistic by at most δ), and so is numpy's linear interpolation between two
    of them (a convex combination). Adding the rounding of the interpolation itself (≤ 5u·M
    on each side, M = max |value|) gives the bound reported in ``IntervalStats``:

        quantile_error = step/2 + 2⁻⁴⁸·(M + step)        (see ``quantile_error_bound``)

    i.e. 0.005 in the metric's unit plus about 4e-15 relative, about 0.0086 for values of
    1e12. Only values with ``|v| <= MAX_QUANTIZABLE`` (1e13, so keys stay far inside int64
    and exact in float64) are quantized; a bucket holding a larger value gets a NULL
    histogram and its raw readings are used instead, exactly, so no finite value can
    overflow the encoding.

    Why hours and days, built once complete (see officesensor.store.sqlite): a year of
    15-second readings is 8,760 hour histograms, about 17 MB, and reading them took about
    80 ms on the 2-core reference machine, over budget; 365 day histograms (about a third of
    the bytes: values repeat across a day's hours) are read and merged in about 25 ms.
    Merging is a concatenation plus ``np.bincount`` over the key span (``np.unique`` when
    the span is huge). Building a histogram once its hour (day) is over, rather than
    merging every write into it, keeps writes cheap; the running hour is read raw.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

#: Rollup widths in seconds: minute, hour, day, aligned to the Unix epoch (UTC).
LEVELS_S = (60, 3600, 86400)
#: The level whose buckets also keep a value histogram.
HIST_LEVEL_S = 3600
#: Histogram resolution in the metric's unit.
QUANTILE_STEP = 0.01
#: Values beyond this magnitude are never quantized (their hour keeps no histogram).
MAX_QUANTIZABLE = 1e13
#: The quartiles ``IntervalStats`` reports.
QUARTILES = (0.25, 0.5, 0.75)

_US = 1_000_000
_QUANTILE_REL_EPS = 2.0**-48
#: Largest key span merged with a dense ``np.bincount`` (else ``np.unique``).
_DENSE_SPAN = 1 << 22
#: Below this many readings, plain Python beats numpy's per-call overhead.
_SMALL = 128
_BLOB_INT = np.dtype("<i8")

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Bucket:
    """The readings of one chart bucket: ``start`` is the bucket's aligned start."""

    start: datetime
    count: int
    mean: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class IntervalStats:
    """Statistics of the readings with start <= time < end.

    count, min and max are exact; mean and std (sample, ddof=1; None when count < 2) are
    exact up to float rounding. Quartiles follow ``np.quantile(values, q)`` (linear
    interpolation): exactly when ``quantile_error`` is 0.0, else within ``quantile_error``
    (metric units) of it.
    """

    start: datetime
    end: datetime
    count: int
    mean: float | None
    std: float | None
    min: float | None
    q25: float | None
    median: float | None
    q75: float | None
    max: float | None
    quantile_error: float


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, mean, sum of squared deviations, min and max of some readings (n >= 1)."""

    n: int
    mean: float
    m2: float
    min: float
    max: float

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None below two readings."""
        if self.n < 2:
            return None
        return math.sqrt(max(self.m2, 0.0) / (self.n - 1))


# --------------------------------------------------------------------------- moments


def moments_of(values: Sequence[float] | FloatArray) -> Moments | None:
    """The moments of some values (two-pass); None when there are none."""
    x = np.asarray(values, dtype=np.float64)
    if not x.size:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(x))
        m2 = float(np.sum((x - mean) ** 2))
    return Moments(int(x.size), mean, m2, float(x.min()), float(x.max()))


def merge_moments(a: Moments | None, b: Moments | None) -> Moments | None:
    """Chan et al.'s parallel merge of two sets' moments."""
    if a is None:
        return b
    if b is None:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    m2 = a.m2 + b.m2 + delta * delta * (a.n * b.n / n)
    return Moments(n, mean, m2, min(a.min, b.min), max(a.max, b.max))


def combine_moments(
    n: Sequence[int] | Int64Array,
    mean: Sequence[float] | FloatArray,
    m2: Sequence[float] | FloatArray,
    mins: Sequence[float] | FloatArray,
    maxs: Sequence[float] | FloatArray,
) -> Moments | None:
    """Merge many sets' moments at once: the k-way form of Chan's formula,
    M2 = Σ m2ᵢ + Σ nᵢ (meanᵢ - mean)²."""
    counts = np.asarray(n, dtype=np.int64)
    keep = counts > 0
    if not keep.any():
        return None
    counts = counts[keep]
    means = np.asarray(mean, dtype=np.float64)[keep]
    total = int(counts.sum())
    with np.errstate(over="ignore", invalid="ignore"):
        weights = counts / total
        grand = float(means[0]) if means.size == 1 else float(np.sum(weights * means))
        m2_total = float(
            np.sum(np.asarray(m2, dtype=np.float64)[keep]) + np.sum(counts * (means - grand) ** 2)
        )
    return Moments(
        total,
        grand,
        m2_total,
        float(np.min(np.asarray(mins, dtype=np.float64)[keep])),
        float(np.max(np.asarray(maxs, dtype=np.float64)[keep])),
    )


# --------------------------------------------------------------------------- ranges


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a range: raw readings (``width_s`` 0) with lo_us <= time < hi_us, or the
    rollup buckets of width ``width_s`` whose starts lie in [lo_us, hi_us) (both aligned)."""

    width_s: int
    lo_us: int
    hi_us: int


def floor_to(us: int, width_us: int) -> int:
    return us // width_us * width_us


def ceil_to(us: int, width_us: int) -> int:
    return -(-us // width_us) * width_us


def split_range(start_us: int, end_us: int, widths_s: Iterable[int] = LEVELS_S) -> list[Piece]:
    """Cut [start, end) into raw edges and aligned pieces, coarsest in the middle.

    ``widths_s`` ascending, each a multiple of the one before. The pieces are disjoint and
    cover the range; a piece of width w starts and ends on multiples of w."""
    pieces: list[Piece] = []
    lo, hi, finer = start_us, end_us, 0
    if lo >= hi:
        return pieces
    for width in widths_s:
        width_us = width * _US
        a, b = ceil_to(lo, width_us), floor_to(hi, width_us)
        if a >= b:
            break
        if lo < a:
            pieces.append(Piece(finer, lo, a))
        if b < hi:
            pieces.append(Piece(finer, b, hi))
        lo, hi, finer = a, b, width
    pieces.append(Piece(finer, lo, hi))
    return pieces


def levels_for_width(width_s: int) -> tuple[int, ...]:
    """The rollup levels usable for chart buckets of ``width_s`` seconds (those dividing it)."""
    return tuple(level for level in LEVELS_S if width_s % level == 0)


# --------------------------------------------------------------------------- grouping


RollupRow = tuple[int, int, int, int, float, float, float, float]
#: The values of a batch per (series, hour start in s).
HourValues = dict[tuple[int, int], FloatArray | list[float]]


def rollup_rows(
    series: Sequence[int] | Int64Array,
    ts_us: Sequence[int] | Int64Array,
    values: Sequence[float] | FloatArray,
) -> tuple[list[RollupRow], HourValues]:
    """Group readings by (series, level, aligned bucket) for every level of ``LEVELS_S``.

    Returns the groups' (series, level, start_s, n, mean, m2, min, max) rows, and the
    values of each ``HIST_LEVEL_S`` group (to build its histogram if it is complete)."""
    size = len(values)
    if size == 0:
        return [], {}
    if size <= _SMALL:
        return _rollup_rows_small(_as_list(series), _as_list(ts_us), _as_list(values))
    return _rollup_rows_numpy(
        np.asarray(series, dtype=np.int64),
        np.asarray(ts_us, dtype=np.int64),
        np.asarray(values, dtype=np.float64),
    )


def _as_list(column: Sequence[Any] | npt.NDArray[Any]) -> list[Any]:
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def _rollup_rows_numpy(
    series: Int64Array, ts_us: Int64Array, values: FloatArray
) -> tuple[list[RollupRow], HourValues]:
    size = values.size
    if size > 1:
        same_series = series[1:] == series[:-1]
        if not np.all(series[1:] >= series[:-1]) or not np.all(
            (ts_us[1:] >= ts_us[:-1]) | ~same_series
        ):
            order = np.lexsort((ts_us, series))  # buckets are monotone in time: one sort
            series, ts_us, values = series[order], ts_us[order], values[order]
            same_series = series[1:] == series[:-1]
    rows: list[RollupRow] = []
    hour_values: HourValues = {}
    change = np.empty(size, dtype=np.bool_)
    change[0] = True
    for level in LEVELS_S:
        bucket = ts_us // (level * _US)
        if size > 1:
            np.not_equal(bucket[1:], bucket[:-1], out=change[1:])
            change[1:] |= ~same_series
        starts = np.flatnonzero(change)
        n = np.empty(starts.size, dtype=np.int64)
        n[:-1] = starts[1:] - starts[:-1]
        n[-1] = size - starts[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            mean = np.add.reduceat(values, starts) / n
            m2 = np.add.reduceat((values - np.repeat(mean, n)) ** 2, starts)
        sids = series[starts].tolist()
        start_s = (bucket[starts] * level).tolist()
        rows.extend(
            zip(
                sids,
                [level] * len(sids),
                start_s,
                n.tolist(),
                mean.tolist(),
                m2.tolist(),
                np.minimum.reduceat(values, starts).tolist(),
                np.maximum.reduceat(values, starts).tolist(),
                strict=True,
            )
        )
        if level == HIST_LEVEL_S:
            bounds = [*starts.tolist(), size]
            for i, key in enumerate(zip(sids, start_s, strict=True)):
                hour_values[key] = values[bounds[i] : bounds[i + 1]]
    return rows, hour_values


def _rollup_rows_small(
    series: list[int], ts_us: list[int], values: list[float]
) -> tuple[list[RollupRow], HourValues]:
    """``rollup_rows`` in plain Python, faster than numpy's per-call overhead for the small
    batches of live ingest (tests check both agree): the finest level from the readings,
    each coarser one by Chan-merging the consecutive groups of the level below."""
    first = LEVELS_S[0]
    width = first * _US
    # Finest groups in (series, time) order: (series, start_s, values).
    chunks: list[tuple[int, int, list[float]]] = []
    last_sid, last_bucket = None, None
    current: list[float] = []
    for sid, ts, value in sorted(zip(series, ts_us, values, strict=True)):
        bucket = ts // width
        if bucket == last_bucket and sid == last_sid:
            current.append(value)
        else:
            current = [value]
            chunks.append((sid, bucket * first, current))
            last_sid, last_bucket = sid, bucket
    level_rows: list[RollupRow] = []
    for sid, start_s, chunk in chunks:
        n = len(chunk)
        if n == 1:
            value = chunk[0]
            level_rows.append((sid, first, start_s, 1, value, 0.0, value, value))
            continue
        mean = sum(chunk) / n
        m2 = sum([(x - mean) * (x - mean) for x in chunk])
        level_rows.append((sid, first, start_s, n, mean, m2, min(chunk), max(chunk)))
    rows = list(level_rows)
    hour_values: HourValues = {}
    for level in LEVELS_S[1:]:
        merged: list[RollupRow] = []
        for sid, _, start_s, n, mean, m2, low, high in level_rows:
            start_s = start_s // level * level
            if merged and merged[-1][2] == start_s and merged[-1][0] == sid:
                _, _, _, n0, mean0, m20, low0, high0 = merged[-1]
                total = n0 + n
                delta = mean - mean0
                merged[-1] = (
                    sid,
                    level,
                    start_s,
                    total,
                    mean0 + delta * (n / total),
                    m20 + m2 + delta * delta * (n0 * n / total),
                    min(low0, low),
                    max(high0, high),
                )
            else:
                merged.append((sid, level, start_s, n, mean, m2, low, high))
        level_rows = merged
        rows.extend(merged)
        if level == HIST_LEVEL_S:
            for sid, start_s, chunk in chunks:
                key = (sid, start_s // level * level)
                known = hour_values.get(key)
                if known is None:
                    hour_values[key] = chunk
                else:
                    hour_values[key] = [*known, *chunk]
    return rows, hour_values


# --------------------------------------------------------------------------- histograms


def quantizable(values: FloatArray) -> bool:
    if not values.size:
        return True
    return bool(values.min() >= -MAX_QUANTIZABLE and values.max() <= MAX_QUANTIZABLE)


def quantize(values: FloatArray) -> Int64Array:
    """Histogram keys of quantizable values: rint(v / step), monotone in v."""
    return np.rint(values / QUANTILE_STEP).astype(np.int64)


def dequantize(keys: Int64Array) -> FloatArray:
    return keys.astype(np.float64) * QUANTILE_STEP


def encode_hist(keys: Int64Array, counts: Int64Array) -> bytes:
    """Blob of sorted unique keys, then their counts, both little-endian int64."""
    return keys.astype("<i8").tobytes() + counts.astype("<i8").tobytes()


def decode_hist(blob: bytes) -> tuple[Int64Array, Int64Array]:
    size = len(blob) // 16
    keys = np.frombuffer(blob, dtype=_BLOB_INT, count=size).astype(np.int64, copy=False)
    counts = np.frombuffer(blob, dtype=_BLOB_INT, count=size, offset=8 * size)
    return keys, counts.astype(np.int64, copy=False)


def hist_of(values: Sequence[float] | FloatArray) -> bytes | None:
    """The histogram blob of some values; None if any is not quantizable."""
    if isinstance(values, list) and len(values) <= _SMALL:
        return _hist_of_list(values)
    x = np.asarray(values, dtype=np.float64)
    if not quantizable(x):
        return None
    keys = quantize(x)
    keys.sort()
    run_start = np.ones(keys.size, dtype=np.bool_)
    np.not_equal(keys[1:], keys[:-1], out=run_start[1:])
    firsts = np.flatnonzero(run_start)
    counts = np.diff(firsts, append=keys.size)
    return encode_hist(keys[firsts], counts)


def _hist_of_list(values: list[float]) -> bytes | None:
    """``hist_of`` in plain Python for few values: the same keys (Python's round() of a
    float rounds half to even, like np.rint) without numpy's per-call overhead."""
    if values and (max(values) > MAX_QUANTIZABLE or min(values) < -MAX_QUANTIZABLE):
        return None
    tally = Counter([round(v / QUANTILE_STEP) for v in values])
    ordered = sorted(tally)
    return (
        np.array(ordered, dtype="<i8").tobytes()
        + np.array([tally[k] for k in ordered], dtype="<i8").tobytes()
    )


def merge_blobs(blobs: Sequence[bytes]) -> bytes:
    """Merge many histogram blobs (none of them None) into one."""
    gathered = ValueCounts()
    gathered.add_blobs(blobs)
    keys, counts = gathered.summed_keys()
    return encode_hist(keys, counts)


def _sum_by_key(keys: Int64Array, counts: Int64Array) -> tuple[Int64Array, Int64Array]:
    """Sorted unique keys and the summed counts of each."""
    if keys.size == 0:
        return keys, counts
    low = int(keys.min())
    span = int(keys.max()) - low + 1
    if span <= max(_DENSE_SPAN, 4 * keys.size):
        dense = np.bincount(keys - low, weights=counts, minlength=span)
        present = np.flatnonzero(dense)
        return present.astype(np.int64) + low, dense[present].astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique.astype(np.int64), np.bincount(inverse, weights=counts).astype(np.int64)


class ValueCounts:
    """A multiset of values being gathered: quantized histograms plus exact raw values."""

    def __init__(self) -> None:
        self._keys: list[Int64Array] = []
        self._counts: list[Int64Array] = []
        self._exact: list[FloatArray] = []
        self.quantized = False  # whether any value was quantized

    def add_hist(self, blob: bytes) -> None:
        self.add_blobs([blob])

    def add_blobs(self, blobs: Sequence[bytes]) -> None:
        """Many histogram blobs (views into them: no copy until the merge)."""
        for blob in blobs:
            size = len(blob) // 16
            if size:
                self._keys.append(np.frombuffer(blob, dtype=_BLOB_INT, count=size))
                self._counts.append(
                    np.frombuffer(blob, dtype=_BLOB_INT, count=size, offset=8 * size)
                )
                self.quantized = True

    def add_values(self, values: FloatArray) -> None:
        """Raw values: quantized if they can be, else kept exact."""
        if values.size == 0:
            return
        if quantizable(values):
            self._keys.append(quantize(values))
            self._counts.append(np.ones(values.size, dtype=np.int64))
            self.quantized = True
        else:
            self._exact.append(values.astype(np.float64))

    def _all_keys(self) -> tuple[Int64Array, Int64Array]:
        if not self._keys:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys = np.concatenate(self._keys).astype(np.int64, copy=False)
        return keys, np.concatenate(self._counts).astype(np.int64, copy=False)

    def summed_keys(self) -> tuple[Int64Array, Int64Array]:
        """Sorted distinct keys of the quantized values and their counts."""
        return _sum_by_key(*self._all_keys())

    def sorted_counts(self) -> tuple[FloatArray, Int64Array]:
        """Sorted values (decoded) and their counts, for ``weighted_quantiles``: when the
        key span is small, every key of the span, most with count 0 (no need to drop them)."""
        if not self._exact:
            keys, counts = self._all_keys()
            if keys.size:
                low = int(keys.min())
                span = int(keys.max()) - low + 1
                if span <= _DENSE_SPAN:
                    dense = np.bincount(keys - low, weights=counts, minlength=span)
                    return dequantize(np.arange(low, low + span, dtype=np.int64)), dense.astype(
                        np.int64
                    )
        keys, counts = self.summed_keys()
        values = dequantize(keys)
        if not self._exact:
            return values, counts
        exact = np.concatenate(self._exact)
        all_values = np.concatenate([values, exact])
        all_counts = np.concatenate([counts, np.ones(exact.size, dtype=np.int64)])
        order = np.argsort(all_values, kind="stable")
        return all_values[order], all_counts[order]


def weighted_quantiles(
    values: FloatArray, counts: Int64Array, qs: Sequence[float] = QUARTILES
) -> list[float]:
    """``np.quantile`` (linear) of the multiset with sorted ``values`` repeated ``counts``
    times, computed with numpy's own float operations but without expanding it."""
    cum = np.cumsum(counts)
    n = int(cum[-1])

    def stat(rank: int) -> float:
        return float(values[int(np.searchsorted(cum, rank, side="right"))])

    out = []
    for q in qs:
        h = float(np.float64(n - 1) * np.float64(q))
        if h >= n - 1:
            out.append(stat(n - 1))
            continue
        low = math.floor(h)
        t = h - low
        a, b = stat(low), stat(low + 1)
        out.append(lerp(a, b, t))
    return out


def lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp``: the interpolation ``np.quantile`` uses, bit for bit."""
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.float64(b) - np.float64(a)
        if t >= 0.5:
            return float(np.float64(b) - diff * (1 - t))
        return float(np.float64(a) + diff * t)


def quantile_error_bound(min_value: float, max_value: float) -> float:
    """Guaranteed bound on |quartile from histograms - np.quantile of the exact values| when
    all values lie in [min_value, max_value] (see the module docstring)."""
    magnitude = max(abs(min_value), abs(max_value))
    return QUANTILE_STEP / 2 + _QUANTILE_REL_EPS * (magnitude + QUANTILE_STEP)


def exact_quartiles(values: FloatArray) -> list[float]:
    with np.errstate(over="ignore", invalid="ignore"):
        return [float(q) for q in np.quantile(values, QUARTILES)]
