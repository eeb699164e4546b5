"""Rolling statistics and the original sample's z-score anomaly rule, without its look-ahead.

For each reading, the window is that reading and the W-1 readings before it in reading-time
order (fewer at the start of a series). Over the window: mean, sample variance and standard
deviation (ddof=1), z = (x - mean) / std, anomaly when |z| >= Z, band = mean ± Z·std.
With one reading in the window, or a window of identical values, std/z are undefined (None or
NaN) and the reading is not an anomaly.

Two implementations that agree (tests/unit/test_analytics.py checks it with hypothesis):
``RollingStats`` updates in O(1) per reading, for the ingest hot path; ``rolling_stats``
computes a whole series at once with numpy, for pages and the API.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DEFAULT_WINDOW = 10
DEFAULT_Z = 2.0

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
