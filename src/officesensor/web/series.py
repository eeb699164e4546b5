"""Which series a request means, and its readings with their trailing-window statistics.

Shared by the HTML pages and the JSON API so both show the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from officesensor.analytics import DEFAULT_METHOD, SeriesStats, detector
from officesensor.models import DEFAULT_SENSOR, METRIC_UNITS, Reading, SeriesInfo
from officesensor.store import Store

#: The original sensor's metrics: always listed, even before their first reading.
KNOWN_METRICS: tuple[str, ...] = tuple(METRIC_UNITS)
#: Lower-case paths that belong to other routes; a metric with that name keeps its own case.
_RESERVED_SLUGS = frozenset(
    {"metrics", "healthz", "readyz", "api", "static", "bokeh", "favicon.ico"}
)


def metric_names(series: Sequence[SeriesInfo]) -> list[str]:
    """The known metrics in their usual order, then every other stored metric by name."""
    others = sorted({s.metric for s in series} - set(KNOWN_METRICS), key=lambda m: (m.lower(), m))
    return [*KNOWN_METRICS, *others]


def metric_slugs(metrics: Sequence[str]) -> dict[str, str]:
    """The URL path segment of each metric: its name in lower case, unless that is ambiguous."""
    lowered: dict[str, int] = {}
    for metric in metrics:
        lowered[metric.lower()] = lowered.get(metric.lower(), 0) + 1
    return {
        m: m.lower() if lowered[m.lower()] == 1 and m.lower() not in _RESERVED_SLUGS else m
        for m in metrics
    }


def resolve_metric(requested: str, metrics: Sequence[str]) -> str | None:
    """The metric a path segment names: exactly, else ignoring case (first in list order)."""
    if requested in metrics:
        return requested
    folded = requested.casefold()
    return next((m for m in metrics if m.casefold() == folded), None)


def sensors_of(metric: str, series: Sequence[SeriesInfo]) -> list[str]:
    return [s.sensor for s in series if s.metric == metric]


def pick_sensor(metric: str, series: Sequence[SeriesInfo]) -> str | None:
    """The sensor shown when none is asked for: ``default`` if it has the metric, else the first."""
    sensors = sensors_of(metric, series)
    if DEFAULT_SENSOR in sensors:
        return DEFAULT_SENSOR
    return sensors[0] if sensors else None


def find_series(sensor: str, metric: str, series: Sequence[SeriesInfo]) -> SeriesInfo | None:
    return next((s for s in series if s.sensor == sensor and s.metric == metric), None)


@dataclass(frozen=True, slots=True)
class AnalysedReadings:
    """The latest readings of a series, oldest first, with per-reading statistics (NaN: none)."""

    readings: list[Reading]
    stats: SeriesStats  # one entry per reading

    def __len__(self) -> int:
        return len(self.readings)

    def anomaly_indices(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.stats.anomaly)]


def analyse_latest(
    store: Store,
    sensor: str,
    metric: str,
    limit: int,
    window: int,
    z_threshold: float,
    method: str = DEFAULT_METHOD,
) -> AnalysedReadings:
    """The latest ``limit`` readings with statistics over trailing windows (of ``method``,
    see analytics.detector).

    Fetches the extra readings a full window needs first (``window - 1``, or ``window`` for
    the methods that exclude the reading itself), so each shown reading has a full window
    whenever the series is long enough, then drops them: nothing looks ahead.
    """
    chosen = detector(method)
    fetched = store.latest(sensor, metric, limit + chosen.history(window))
    stats = chosen.batch([r.value for r in fetched], window, z_threshold)
    skip = max(0, len(fetched) - limit)
    return AnalysedReadings(readings=fetched[skip:], stats=stats.since(skip))


def finite_or_none(value: float) -> float | None:
    """A number JSON can carry: NaN and infinities become None."""
    number = float(value)
    return number if math.isfinite(number) else None


def iso_utc(ts: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2024-05-01T10:11:12Z``, ``2024-05-01T10:11:12.500000Z``."""
    return ts.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def analyse_range(
    store: Store,
    sensor: str,
    metric: str,
    start: datetime,
    end: datetime,
    window: int,
    z_threshold: float,
    limit: int | None = None,
    method: str = DEFAULT_METHOD,
) -> AnalysedReadings:
    """Readings with start <= time < end (the first ``limit``), with statistics over trailing
    windows that reach back before ``start``, exactly as ``analyse_latest`` computes them."""
    chosen = detector(method)
    history = store.latest(sensor, metric, chosen.history(window), before=start)
    shown = store.range(sensor, metric, start, end, limit)
    stats = chosen.batch([r.value for r in (*history, *shown)], window, z_threshold)
    return AnalysedReadings(readings=shown, stats=stats.since(len(history)))
