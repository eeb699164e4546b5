"""Rolling statistics and the original sample's z-score anomaly rule, without its look-ahead.

For each reading, the window is that reading and the W-1 readings before it in reading-time
order (fewer at the start of a series). Over the window: mean, sample variance and standard
deviation (ddof=1), z = (x - mean) / std, anomaly when |z| >= Z, band = mean ± Z·std.
With one reading in the window, or a window of identical values, std/z are undefined (None or
NaN) and the reading is not an anomaly.

Two implementations that agree (tests/unit/test_analytics.py checks it with hypothesis):
``RollingStats`` updates in O(1) per reading, for the ingest hot path; ``rolling_stats``
computes a whole series at once with numpy, for pages and the API.

Beside that original rule (method ``zscore``, the default) two more detectors judge each
reading against the W readings *before* it, so a spike cannot hide in its own window:
``zscore-previous`` (mean and sample std of the previous W readings) and ``mad`` (median and
1.4826·MAD of the previous W readings). Each also has an incremental form (``PreviousZScore``,
``MedianMad``) and a batch form (``previous_stats``, ``mad_stats``) that agree
(tests/unit/test_detectors.py). ``detector(name)`` selects one by the ``anomaly.method``
setting's value. In their ``WindowStats``/``SeriesStats`` ``mean`` is the centre (the median
for ``mad``), ``std`` the scale (1.4826·MAD for ``mad``), ``variance`` its square and ``n``
the number of readings the centre and scale come from. See docs/anomalies.md.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

DEFAULT_WINDOW = 10
DEFAULT_Z = 2.0
#: The anomaly detectors by name, the values of the ``anomaly.method`` setting.
METHODS: tuple[str, ...] = ("zscore", "zscore-previous", "mad")
DEFAULT_METHOD = "zscore"
#: 1.4826·MAD estimates the standard deviation of normally distributed readings.
MAD_SCALE = 1.4826

#: Variances below this share of mean² are rounding noise, not spread: treated as zero.
_RELATIVE_VARIANCE_FLOOR = 1e-20
#: RollingStats recomputes its sums from the window this often, so rounding cannot drift.
_RESYNC_EVERY = 1024


@dataclass(frozen=True, slots=True)
class WindowStats:
    n: int
    mean: float
    variance: float | None
    std: float | None
    z: float | None
    anomaly: bool


def _degenerate(variance: float, mean: float) -> bool:
    return variance <= _RELATIVE_VARIANCE_FLOOR * max(1.0, mean * mean)


class RollingStats:
    """Sliding-window mean and variance updated in O(1) per reading (Welford, add and remove)."""

    def __init__(self, window: int = DEFAULT_WINDOW, z_threshold: float = DEFAULT_Z) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        self.window = window
        self.z_threshold = z_threshold
        self._values: deque[float] = deque(maxlen=window)
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean
        self._updates = 0
        self._equal_run = 0  # how many of the latest values are equal to the newest

    def update(self, value: float) -> WindowStats:
        values = self._values
        self._equal_run = self._equal_run + 1 if values and values[-1] == value else 1
        if len(values) == self.window:
            old = values[0]
            values.append(value)  # drops `old`
            old_mean = self._mean
            self._mean += (value - old) / self.window
            self._m2 += (value - old) * (value - self._mean + old - old_mean)
        else:
            values.append(value)
            delta = value - self._mean
            self._mean += delta / len(values)
            self._m2 += delta * (value - self._mean)
        self._updates += 1
        if self._equal_run >= len(values):
            # A window of identical values has exactly no spread; don't keep rounding residue.
            self._mean, self._m2 = value, 0.0
        elif self._updates % _RESYNC_EVERY == 0:
            self._resync()
        return self._stats(value)

    def against(self, value: float) -> WindowStats:
        """The statistics of ``value`` against the current window, without adding it."""
        if not self._values:
            return WindowStats(0, math.nan, None, None, None, False)
        return self._stats(value)

    def _resync(self) -> None:
        n = len(self._values)
        self._mean = math.fsum(self._values) / n
        self._m2 = math.fsum((v - self._mean) * (v - self._mean) for v in self._values)

    def _stats(self, value: float) -> WindowStats:
        n = len(self._values)
        mean = self._mean
        if n < 2:
            return WindowStats(n, mean, None, None, None, False)
        variance = max(self._m2, 0.0) / (n - 1)
        if _degenerate(variance, mean):
            return WindowStats(n, mean, 0.0, 0.0, None, False)
        std = math.sqrt(variance)
        z = (value - mean) / std
        return WindowStats(n, mean, variance, std, z, abs(z) >= self.z_threshold)


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """Per-reading statistics of a whole series; NaN where undefined."""

    mean: npt.NDArray[np.float64]
    variance: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    z: npt.NDArray[np.float64]
    anomaly: npt.NDArray[np.bool_]
    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]

    def since(self, start: int) -> SeriesStats:
        """The statistics of the readings from index ``start`` on."""
        return SeriesStats(
            **{f.name: getattr(self, f.name)[start:] for f in dataclasses.fields(self)}
        )


def rolling_stats(
    values: Sequence[float] | npt.NDArray[np.float64],
    window: int = DEFAULT_WINDOW,
    z_threshold: float = DEFAULT_Z,
) -> SeriesStats:
    """Trailing-window statistics of a series in reading-time order, computed at once."""
    if window < 2:
        raise ValueError("window must be at least 2")
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):  # overflow of absurd values gives inf/NaN, not warnings
        mean, variance = _windowed_moments(x, window)
        std = np.sqrt(variance)
        z = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), np.nan)
        anomaly = np.abs(np.nan_to_num(z, nan=0.0)) >= z_threshold
    return SeriesStats(
        mean=mean,
        variance=variance,
        std=std,
        z=z,
        anomaly=anomaly,
        lower=mean - z_threshold * std,
        upper=mean + z_threshold * std,
    )


def _windowed_moments(
    x: npt.NDArray[np.float64], window: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and sample variance of each reading's trailing window (two-pass, exact)."""
    size = len(x)
    if not size:
        return np.full(0, np.nan), np.full(0, np.nan)
    # Pad the front with NaN so every reading has a full-width (partly empty) window.
    padded = np.concatenate([np.full(window - 1, np.nan), x])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    counts = np.minimum(np.arange(1, size + 1), window)
    mean = np.nansum(windows, axis=1) / counts
    squares = np.nansum((windows - mean[:, None]) ** 2, axis=1)
    variance = np.where(counts >= 2, squares / np.maximum(counts - 1, 1), np.nan)
    degenerate = variance <= _RELATIVE_VARIANCE_FLOOR * np.maximum(1.0, mean * mean)
    return mean, np.where(degenerate, 0.0, variance)


# ------------------------------------------------------------------ detectors beyond the original


Values = Sequence[float] | npt.NDArray[np.float64]


class Incremental(Protocol):
    """A detector's incremental form: one call per reading, in reading-time order."""

    def update(self, value: float) -> WindowStats: ...


def _check_window(window: int) -> None:
    if window < 2:
        raise ValueError("window must be at least 2")


class PreviousZScore:
    """z of each reading against the mean and sample std of the W readings before it.

    O(1) per reading: a ``RollingStats`` over the previous readings, asked before it is fed.
    """

    def __init__(self, window: int = DEFAULT_WINDOW, z_threshold: float = DEFAULT_Z) -> None:
        _check_window(window)
        self.window = window
        self.z_threshold = z_threshold
        self._before = RollingStats(window, z_threshold)

    def update(self, value: float) -> WindowStats:
        stats = self._before.against(value)
        self._before.update(value)
        return stats


class MedianMad:
    """Robust z of each reading against the W readings before it:
    (x - median) / (1.4826·MAD), MAD the median of the absolute deviations from the median.

    Keeps the window sorted: the median is O(1) and the MAD O(log W) (the middle of two sorted
    runs of deviations, found by bisection); an insertion or removal is a bisection plus a
    memmove of at most W pointers.
    """

    def __init__(self, window: int = DEFAULT_WINDOW, z_threshold: float = DEFAULT_Z) -> None:
        _check_window(window)
        self.window = window
        self.z_threshold = z_threshold
        self._values: deque[float] = deque()
        self._sorted: list[float] = []

    def update(self, value: float) -> WindowStats:
        stats = self._against(value)
        if len(self._values) == self.window:
            old = self._values.popleft()
            del self._sorted[bisect_left(self._sorted, old)]
        self._values.append(value)
        insort(self._sorted, value)
        return stats

    def _against(self, value: float) -> WindowStats:
        ordered = self._sorted
        n = len(ordered)
        if n < 2:
            return WindowStats(n, ordered[0] if n else math.nan, None, None, None, False)
        median = _middle(ordered)
        scale = MAD_SCALE * _median_deviation(ordered, median)
        variance = scale * scale
        if _degenerate(variance, median):
            return WindowStats(n, median, 0.0, 0.0, None, False)
        z = (value - median) / scale
        return WindowStats(n, median, variance, scale, z, abs(z) >= self.z_threshold)


def _middle(ordered: Sequence[float]) -> float:
    """The median of sorted values (as numpy computes it: the mean of the middle two)."""
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _median_deviation(ordered: Sequence[float], median: float) -> float:
    """The median of |v - median| over sorted values, in O(log n).

    The deviations form two ascending runs: median - v for v < median (walking left from the
    median) and v - median for v >= median (walking right); their k-th smallest is found by
    bisection on how many of it come from the left run.
    """
    n = len(ordered)
    split = bisect_left(ordered, median)

    def kth(k: int) -> float:  # the k-th smallest deviation, from 0
        lo, hi = max(0, k + 1 - (n - split)), min(k + 1, split)
        while lo < hi:  # the fewest taken from the left run such that the rest fit
            i = (lo + hi) // 2
            j = k + 1 - i  # taken from the right run; >= 1 here
            if ordered[split + j - 1] - median <= median - ordered[split - 1 - i]:
                hi = i
            else:
                lo = i + 1
        i, j = lo, k + 1 - lo
        left = median - ordered[split - i] if i else -math.inf
        right = ordered[split + j - 1] - median if j else -math.inf
        return max(left, right)

    return kth((n - 1) // 2) if n % 2 else (kth(n // 2 - 1) + kth(n // 2)) / 2


def _series_stats(
    x: npt.NDArray[np.float64],
    centre: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
    z_threshold: float,
) -> SeriesStats:
    """z, flags and band from each reading's centre and scale² (NaN: fewer than 2 readings)."""
    with np.errstate(all="ignore"):
        degenerate = variance <= _RELATIVE_VARIANCE_FLOOR * np.maximum(1.0, centre * centre)
        variance = np.where(degenerate, 0.0, variance)
        std = np.sqrt(variance)
        z = np.where(std > 0, (x - centre) / np.where(std > 0, std, 1.0), np.nan)
        anomaly = np.abs(np.nan_to_num(z, nan=0.0)) >= z_threshold
        return SeriesStats(
            mean=centre,
            variance=variance,
            std=std,
            z=z,
            anomaly=anomaly,
            lower=centre - z_threshold * std,
            upper=centre + z_threshold * std,
        )


def previous_stats(
    values: Values, window: int = DEFAULT_WINDOW, z_threshold: float = DEFAULT_Z
) -> SeriesStats:
    """``PreviousZScore`` over a whole series at once: each reading against the mean and
    sample std of the ``window`` readings before it."""
    _check_window(window)
    x = np.asarray(values, dtype=np.float64)
    centre, variance = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if len(x) > 1:
        with np.errstate(all="ignore"):
            inclusive_mean, inclusive_variance = _windowed_moments(x[:-1], window)
        centre[1:], variance[1:] = inclusive_mean, inclusive_variance
    return _series_stats(x, centre, variance, z_threshold)


#: mad_stats works on at most this many window values at a time.
_MAD_CHUNK_VALUES = 1 << 22


def mad_stats(
    values: Values, window: int = DEFAULT_WINDOW, z_threshold: float = DEFAULT_Z
) -> SeriesStats:
    """``MedianMad`` over a whole series at once: each reading against the median and
    1.4826·MAD of the ``window`` readings before it."""
    _check_window(window)
    x = np.asarray(values, dtype=np.float64)
    size = len(x)
    centre, scale = np.full(size, np.nan), np.full(size, np.nan)
    for i in range(1, min(window, size)):  # the first readings: fewer than W before them
        before = x[:i]
        centre[i] = np.median(before)
        if i >= 2:
            scale[i] = MAD_SCALE * np.median(np.abs(before - centre[i]))
    if size > window:
        windows = np.lib.stride_tricks.sliding_window_view(x[:-1], window)
        step = max(1, _MAD_CHUNK_VALUES // window)
        with np.errstate(all="ignore"):
            for start in range(0, len(windows), step):
                chunk = windows[start : start + step]
                median = np.median(chunk, axis=1)
                mad = np.median(np.abs(chunk - median[:, None]), axis=1)
                rows = slice(window + start, window + start + len(chunk))
                centre[rows], scale[rows] = median, MAD_SCALE * mad
    with np.errstate(all="ignore"):
        variance = scale * scale
    return _series_stats(x, centre, variance, z_threshold)


@dataclass(frozen=True, slots=True)
class Detector:
    """An anomaly detector: its incremental form for ingest and its batch form for pages."""

    name: str
    includes_current: bool  # whether a reading's own value is in the window it is judged by
    incremental: Callable[[int, float], Incremental]
    batch: Callable[[Values, int, float], SeriesStats]

    def history(self, window: int) -> int:
        """Readings before the first one that a full window needs."""
        return window - 1 if self.includes_current else window


DETECTORS: dict[str, Detector] = {
    "zscore": Detector("zscore", True, RollingStats, rolling_stats),
    "zscore-previous": Detector("zscore-previous", False, PreviousZScore, previous_stats),
    "mad": Detector("mad", False, MedianMad, mad_stats),
}


def detector(method: str = DEFAULT_METHOD) -> Detector:
    """The detector the ``anomaly.method`` setting names."""
    try:
        return DETECTORS[method]
    except KeyError:
        raise ValueError(
            f"unknown anomaly method {method!r}: must be one of {', '.join(METHODS)}"
        ) from None
