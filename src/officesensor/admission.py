"""Which new series ingest lets in. Pure: a flood of made-up metric or sensor names must not
grow the store (and the dashboard's navigation) without bound.

A reading of a series already stored is always admitted. A new series is admitted while there
are fewer than ``max_series`` series and, when an allow-list is set, only for listed metrics.
A message is admitted or refused whole (a weather message carries three readings).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from officesensor.models import Reading, Rejection, RejectReason
from officesensor.payload import printable


class SeriesGate:
    def __init__(
        self,
        known: Iterable[tuple[str, str]],
        *,
        max_series: int,
        allowed_metrics: Sequence[str] = (),
    ) -> None:
        self._known = set(known)
        self._max_series = max_series
        self._allowed = frozenset(allowed_metrics)

    @property
    def series_count(self) -> int:
        return len(self._known)

    def admit(self, readings: Sequence[Reading], topic: str | bytes) -> Rejection | None:
        """None if every reading may be stored (new series are then counted as known).
        ``topic`` is only rendered (escaped) when the message is refused."""
        if len(readings) == 1 and (readings[0].sensor, readings[0].metric) in self._known:
            return None  # the common case, kept cheap
        new = {(r.sensor, r.metric) for r in readings} - self._known
        if not new:
            return None
        topic = printable(topic)
        if self._allowed:
            refused = sorted(m for _, m in new if m not in self._allowed)
            if refused:
                return Rejection(
                    RejectReason.METRIC_NOT_ALLOWED,
                    f"metric {refused[0]} is not in ingest.allowed_metrics",
                    topic,
                )
        if len(self._known) + len(new) > self._max_series:
            return Rejection(
                RejectReason.TOO_MANY_SERIES,
                f"already {len(self._known)} series (ingest.max_series = {self._max_series})",
                topic,
            )
        self._known |= new
        return None
