"""A simulated office climate with labelled, injected anomalies. Pure: no I/O, no clock.

Values are in the original sensor's units (Temperature °F, Humidity %, Pressure mb). The
heating runs 07:00-18:00 local time on weekdays; humidity falls as the room warms; pressure
wanders slowly around 1013 mb. Each metric independently suffers anomalies at random times
(a Poisson process, ``anomaly_rate_per_day`` per metric), all recorded as ``InjectedAnomaly``.

The climate and each metric's anomalies draw from separate generators derived from the seed,
so the same seed with ``anomaly_rate_per_day=0`` yields the clean signal of the faulty run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from officesensor.models import DEFAULT_SENSOR, Reading, to_epoch_us

METRICS: tuple[str, ...] = ("Temperature", "Humidity", "Pressure")
ANOMALY_KINDS: tuple[str, ...] = ("spike", "drift", "stuck", "dropout")

#: Size of a spike or of a drift's final offset, per metric (uniform in the range, either sign).
_SPIKE_SIZE = {"Temperature": (2.5, 5.0), "Humidity": (4.0, 8.0), "Pressure": (2.0, 4.0)}
_DRIFT_SIZE = {"Temperature": (2.0, 4.0), "Humidity": (4.0, 8.0), "Pressure": (2.0, 5.0)}
#: Hard limits on emitted values, well inside payload.PLAUSIBLE_RANGE.
_CLAMP = {"Temperature": (40.0, 100.0), "Humidity": (5.0, 95.0), "Pressure": (950.0, 1070.0)}
#: How long each kind lasts, in seconds (a spike is always one sample).
_DURATION_S = {"spike": (0, 0), "drift": (600, 1800), "stuck": (300, 1800), "dropout": (60, 900)}
_DECIMALS = 2
_NEVER = 2**63


@dataclass(frozen=True, slots=True)
class InjectedAnomaly:
    """A fault injected into one metric, affecting every sample with start <= ts <= end."""

    metric: str
    kind: str  # one of ANOMALY_KINDS
    start: datetime  # first affected sample, UTC
    end: datetime  # last affected sample, UTC (== start for a spike)


@dataclass(frozen=True, slots=True)
class Sample:
    ts: datetime  # UTC-aware
    values: dict[str, float]  # metric -> value; a metric in dropout is absent
    labels: dict[str, str]  # metric -> anomaly kind active at this sample (absent = normal)


def _ar(interval_s: float, tau_s: float, sd: float) -> tuple[float, float]:
    """AR(1) coefficient and innovation sd of a process with time constant tau_s and sd."""
    a = math.exp(-interval_s / tau_s)
    return a, sd * math.sqrt(1.0 - a * a)


class _Climate:
    """The true (fault-free) room: one ``advance`` per sample returns (°F, %, mb)."""

    def __init__(self, rng: random.Random, interval_s: float) -> None:
        self._rng = rng
        self._gauss = rng.gauss
        self._warm = math.exp(-interval_s / 1800.0)  # heating brings the room up in ~30 min
        self._cool = math.exp(-interval_s / 9000.0)  # it cools over ~2.5 h
        self._wobble_ar = _ar(interval_s, 1800.0, 0.25)  # drafts, people, sun through clouds
        self._weather_ar = _ar(interval_s, 8 * 3600.0, 2.5)  # outdoor humidity, % points
        self._pressure_ar = _ar(interval_s, 2.5 * 86400.0, 7.0)  # synoptic weather, mb
        self._room_f = math.nan
        self._wobble_f = 0.0
        self._weather = rng.gauss(0.0, 2.5)
        self._pressure_mb = min(1035.0, max(990.0, rng.gauss(1013.0, 7.0)))
        self._day = -1
        self._on_f = self._off_f = 0.0

    def advance(self, local: datetime) -> tuple[float, float, float]:
        day = local.toordinal()
        if day != self._day:  # each day its own set-point and overnight low
            self._day = day
            self._on_f = 71.0 + self._rng.uniform(-0.5, 0.5)
            self._off_f = 63.5 + self._rng.uniform(-1.0, 1.0)
        hour = local.hour + local.minute / 60.0 + local.second / 3600.0
        heating = local.weekday() < 5 and 7.0 <= hour < 18.0
        target = self._on_f if heating else self._off_f
        if self._room_f != self._room_f:  # NaN: the first sample starts settled
            self._room_f = target
        a = self._warm if target > self._room_f else self._cool
        self._room_f = target + (self._room_f - target) * a
        gauss = self._gauss
        a, s = self._wobble_ar
        self._wobble_f = self._wobble_f * a + gauss(0.0, s)
        a, s = self._weather_ar
        self._weather = self._weather * a + gauss(0.0, s)
        a, s = self._pressure_ar
        pressure = 1013.0 + (self._pressure_mb - 1013.0) * a + gauss(0.0, s)
        if not 980.0 <= pressure <= 1040.0:  # reflect at the bounds
            pressure = 1960.0 - pressure if pressure < 980.0 else 2080.0 - pressure
        self._pressure_mb = pressure
        sun_f = 0.4 * math.cos((hour - 15.0) * (math.pi / 12.0))
        temperature = self._room_f + sun_f + self._wobble_f + gauss(0.0, 0.12)
        humidity = 46.0 - 1.4 * (self._room_f - 62.0) + self._weather + gauss(0.0, 0.3)
        return temperature, humidity, pressure + gauss(0.0, 0.05)


class _Injector:
    """Injects one metric's anomalies into its clean values and records them."""

    def __init__(
        self,
        metric: str,
        rng: random.Random,
        per_sample: float,
        kinds: tuple[str, ...],
        interval_s: float,
        record: list[InjectedAnomaly],
    ) -> None:
        self.metric = metric
        self._rng = rng
        self._per_sample = per_sample  # expected anomalies per sample
        self._kinds = kinds
        self._interval_s = interval_s
        self._record = record
        self._kind = ""
        self._left = self._n = 0
        self._size = self._frozen = 0.0
        self._last = math.nan
        self._next_k = self._schedule(0)

    def _schedule(self, k: int) -> int:
        if self._per_sample <= 0.0 or not self._kinds:
            return _NEVER
        return k + 1 + int(self._rng.expovariate(self._per_sample))

    def _begin(self, ts: datetime, value: float, step: timedelta) -> None:
        rng, kind = self._rng, self._rng.choice(self._kinds)
        low, high = _DURATION_S[kind]
        self._kind = kind
        self._n = self._left = max(1, round(rng.uniform(low, high) / self._interval_s))
        size_low, size_high = (_DRIFT_SIZE if kind == "drift" else _SPIKE_SIZE)[self.metric]
        self._size = rng.choice((-1.0, 1.0)) * rng.uniform(size_low, size_high)
        self._frozen = value if self._last != self._last else self._last
        self._record.append(InjectedAnomaly(self.metric, kind, ts, ts + (self._n - 1) * step))

    def apply(
        self, k: int, ts: datetime, value: float, step: timedelta
    ) -> tuple[float | None, str]:
        """The reported value (None = missing) and the anomaly kind ("" = normal)."""
        if self._left == 0:
            if k < self._next_k:
                self._last = value
                return value, ""
            self._begin(ts, value, step)
        self._left -= 1
        kind = self._kind
        out: float | None
        if kind == "spike":
            out = value + self._size
        elif kind == "drift":
            out = value + self._size * (self._n - self._left) / self._n
        elif kind == "stuck":
            out = self._frozen
        else:
            out = None
        if out is not None:
            self._last = out
        if self._left == 0:
            self._next_k = self._schedule(k + 1)  # at least one normal sample in between
        return out, kind


class SimulatedOffice:
    """Deterministic under ``seed``: the same seed and start give the same samples and labels.

    Each ``samples`` call starts afresh from the seed; ``anomalies`` lists those injected so
    far by the most recent call. ``anomaly_rate_per_day`` applies to each metric; 0 disables.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        tz: tzinfo = UTC,
        anomaly_rate_per_day: float = 2.0,
        anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS,
    ) -> None:
        if not (math.isfinite(anomaly_rate_per_day) and anomaly_rate_per_day >= 0.0):
            raise ValueError(f"anomaly_rate_per_day must be >= 0, not {anomaly_rate_per_day}")
        unknown = set(anomaly_kinds) - set(ANOMALY_KINDS)
        if unknown:
            raise ValueError(f"unknown anomaly kinds {sorted(unknown)}")
        self.seed = seed
        self.tz = tz
        self.anomaly_rate_per_day = anomaly_rate_per_day
        self.anomaly_kinds = tuple(anomaly_kinds)
        self._anomalies: list[InjectedAnomaly] = []

    @property
    def anomalies(self) -> list[InjectedAnomaly]:
        return list(self._anomalies)

    def samples(
        self, start: datetime, interval_s: float, count: int | None = None
    ) -> Iterator[Sample]:
        """Samples at ``start + k * interval_s`` for k = 0, 1, ... (endless when count is None)."""
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if not (math.isfinite(interval_s) and interval_s > 0.0):
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        self._anomalies = []
        return self._generate(start.astimezone(UTC), interval_s, count)

    def _generate(self, start: datetime, interval_s: float, count: int | None) -> Iterator[Sample]:
        climate = _Climate(random.Random(f"{self.seed}:climate"), interval_s)
        per_sample = self.anomaly_rate_per_day * interval_s / 86_400.0
        injectors = [
            _Injector(
                m,
                random.Random(f"{self.seed}:anomaly:{m}"),
                per_sample,
                self.anomaly_kinds,
                interval_s,
                self._anomalies,
            )
            for m in METRICS
        ]
        clamps = [_CLAMP[m] for m in METRICS]
        step, tz, k = timedelta(seconds=interval_s), self.tz, 0
        while count is None or k < count:
            ts = start + k * step
            values: dict[str, float] = {}
            labels: dict[str, str] = {}
            clean = climate.advance(ts.astimezone(tz))
            for injector, value, (low, high) in zip(injectors, clean, clamps, strict=True):
                out, kind = injector.apply(k, ts, value, step)
                if kind:
                    labels[injector.metric] = kind
                if out is not None:
                    values[injector.metric] = round(min(high, max(low, out)), _DECIMALS)
            yield Sample(ts, values, labels)
            k += 1


def readings_of(sample: Sample, *, sensor: str = DEFAULT_SENSOR) -> list[Reading]:
    """One Reading per metric present in ``sample``; reading_id = epoch milliseconds of ts."""
    reading_id = to_epoch_us(sample.ts) // 1000
    return [Reading(sensor, m, reading_id, sample.ts, v) for m, v in sample.values.items()]
