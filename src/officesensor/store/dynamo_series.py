"""What keeps the DynamoDB store's ``series()`` cheap: every page view, /metrics scrape,
the alerts page and each SSE reconnect call it, and computed afresh it reads, per series,
the latest reading, the first one, the day rollups of the series' whole life and the
current day's hours. Two caches in the store object, both thread-safe:

- The **result**, for ``ttl_s`` (a few seconds). This process's own writes keep it exact:
  a committed write adds its freshly stored readings to the counts and latest readings (a
  write into a series the result does not know drops it), a failed one drops it (what the
  failed attempt stored is then counted by the next computation, and its retry, which
  reports those readings as new again, adds nothing). Other writers (instances, an AWS IoT
  rule) show within ``ttl_s``. A computation is kept only if no write of this process to a
  series was in flight or finished while that series was being read (each series has a
  *state*: a generation bumped when a write to it starts and ends, and the writes in
  flight), so that no write is both read and added; the series that were written meanwhile
  are read again.
- Per series, a **baseline**: the count of the readings of the closed days (from the
  series' first day up to the first day not closed), from the day rollups. A computation
  then reads only the latest reading and the hours from there on, a bounded cost whatever
  the series' age. A baseline is computed again when another day closes, after
  ``baseline_ttl_s`` (late readings other writers put into closed days show within it), and
  at once when this process writes into a day it covers.

Neither is ever stored: both are derived from the rollups, themselves a pure function of the
raw readings (officesensor.store.dynamo_rollups), so no failure or retry can make a count
drift for longer than these lifetimes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from officesensor.models import Reading, SeriesInfo
from officesensor.store.dynamo_items import identity, series_pk

#: How long a computed ``series()`` result is served (s).
SERIES_TTL_S = 5.0
#: How long a series' closed-days count is kept (s).
BASELINE_TTL_S = 600.0
_US = 1_000_000

#: A series' write state: (generation, writes in flight).
State = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Baseline:
    """Readings of a series before ``through_s`` (the start of its first day not closed)."""

    through_s: int
    count: int
    made: float  # monotonic time


class SeriesCache:
    def __init__(
        self,
        *,
        ttl_s: float = SERIES_TTL_S,
        baseline_ttl_s: float = BASELINE_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.baseline_ttl_s = baseline_ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: One computation at a time: callers arriving meanwhile take its result.
        self.computing = threading.Lock()
        self._result: dict[str, SeriesInfo] | None = None
        self._expires = -float("inf")
        self._states: dict[str, State] = {}
        self._baselines: dict[str, Baseline] = {}
        self._late: dict[str, int] = {}  # per partition: writes before today (UTC)

    # ------------------------------------------------------------------ the result

    def result(self) -> list[SeriesInfo] | None:
        """The cached result if still fresh, sorted by (sensor, metric)."""
        with self._lock:
            if self._result is None or self._monotonic() >= self._expires:
                return None
            return _sorted(self._result.values())

    def states(self) -> dict[str, State]:
        """Every series' write state (take it before reading the registry)."""
        with self._lock:
            return dict(self._states)

    def state(self, pk: str) -> State:
        """A series' write state (take it before reading the series)."""
        with self._lock:
            return self._states.get(pk, (0, 0))

    def keep(
        self,
        found: dict[str, SeriesInfo | None],
        before: dict[str, State],
        start: dict[str, State],
    ) -> tuple[bool, list[str]]:
        """Keep a computed result: ``found`` per series partition read (None: no readings),
        each read after its state was ``before``; ``start``: the states before the registry
        was read. Returns whether it is kept (or need not be), and if not, the series
        written meanwhile, to read again (none: a series it does not list was written)."""
        with self._lock:
            if self.ttl_s <= 0:
                return True, []
            again = [
                pk
                for pk, state in before.items()
                if state[1] or self._states.get(pk, (0, 0)) != state
            ]
            others = any(
                state != start.get(pk, (0, 0))
                for pk, state in self._states.items()
                if pk not in before
            )
            if again or others:
                return False, [] if others else again
            self._result = {pk: info for pk, info in found.items() if info is not None}
            self._expires = self._monotonic() + self.ttl_s
            return True, []

    # ------------------------------------------------------------------ baselines

    def baseline(self, pk: str, through_s: int) -> Baseline | None:
        with self._lock:
            found = self._baselines.get(pk)
            if found is None or found.through_s != through_s:
                return None
            if self._monotonic() - found.made >= self.baseline_ttl_s:
                return None
            return found

    def late_token(self, pk: str) -> int:
        with self._lock:
            return self._late.get(pk, 0)

    def keep_baseline(self, pk: str, through_s: int, count: int, token: int) -> None:
        """Keep a baseline computed since ``late_token`` gave ``token``, unless this process
        wrote into a past day of the series meanwhile."""
        with self._lock:
            if self._late.get(pk, 0) == token:
                self._baselines[pk] = Baseline(through_s, count, self._monotonic())

    # ------------------------------------------------------------------ this process's writes

    def writing(self, readings: Sequence[Reading]) -> None:
        """A write starts; ``wrote`` or ``failed`` must follow."""
        with self._lock:
            for pk in {series_pk(r.sensor, r.metric) for r in readings}:
                generation, busy = self._states.get(pk, (0, 0))
                self._states[pk] = (generation + 1, busy + 1)

    def _done(self, readings: Sequence[Reading]) -> None:
        for pk in {series_pk(r.sensor, r.metric) for r in readings}:
            generation, busy = self._states.get(pk, (0, 1))
            self._states[pk] = (generation + 1, busy - 1)

    def wrote(self, readings: Sequence[Reading], fresh: Sequence[Reading], today_s: int) -> None:
        """A write of ``readings`` committed; ``fresh`` are the readings it stored (not
        those a failed attempt stored and it reports again). ``today_s``: the start of
        today (UTC)."""
        by_pk: dict[str, list[Reading]] = {}
        for r in fresh:
            by_pk.setdefault(series_pk(r.sensor, r.metric), []).append(r)
        with self._lock:
            self._done(readings)
            self._touch(by_pk, today_s)
            if self._result is None:
                return
            for pk, rows in by_pk.items():
                info = self._result.get(pk)
                if info is None or info.latest is None:
                    self._result = None  # a series it does not know: compute afresh
                    return
                newest = max([info.latest, *rows], key=identity)
                self._result[pk] = dataclasses.replace(
                    info, count=info.count + len(rows), latest=newest
                )

    def failed(self, readings: Sequence[Reading], today_s: int) -> None:
        """A write failed after storing who knows which of ``readings``."""
        by_pk: dict[str, list[Reading]] = {}
        for r in readings:
            by_pk.setdefault(series_pk(r.sensor, r.metric), []).append(r)
        with self._lock:
            self._done(readings)
            self._result = None
            self._touch(by_pk, today_s)

    def _touch(self, by_pk: dict[str, list[Reading]], today_s: int) -> None:
        for pk, readings in by_pk.items():
            earliest = min(r.ts_us for r in readings)
            if earliest < today_s * _US:
                self._late[pk] = self._late.get(pk, 0) + 1
            found = self._baselines.get(pk)
            if found is not None and earliest < found.through_s * _US:
                del self._baselines[pk]


def _sorted(infos: Iterable[SeriesInfo]) -> list[SeriesInfo]:
    return sorted(infos, key=lambda info: (info.sensor, info.metric))
