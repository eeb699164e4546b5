"""Where readings come from: one small interface over the simulated office and real hardware.

A ``Source`` measures the room when asked (``read``) and lets go of its device (``close``).
It reports in the device's own units (°C, %, hPa = mb); ``None`` means the device gave no
value (a Sense HAT before its first conversion, a simulated dropout). A failed read raises
``OSError`` (an I2C error, a sensor that stopped answering).

The ``Sampler`` reads a source every ``interval_s`` seconds on the wall clock, once the clock
may stamp readings (``clock.ClockGate``), and turns each reading into a ``Sample`` in the
original sensor's units (Temperature °F, Humidity %, Pressure mb). Values the device cannot
have measured are skipped and counted per reason, never published:

- ``read_error``: the read raised (the whole reading is skipped);
- ``no_value``: the device gave no value for the metric;
- ``not_a_number``: NaN, infinity, or not a number at all;
- ``out_of_range``: outside the device's measuring range (``Limits``), or outside what ingest
  accepts (``payload.PLAUSIBLE_RANGE``);
- ``clock_unsynchronised``: the clock could not be trusted, so no reading was taken.

Hardware libraries are imported only when their source is chosen (``open_source``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from officesensor.config import Settings
from officesensor.payload import PLAUSIBLE_RANGE
from officesensor.sensor.clock import ClockGate
from officesensor.sensor.simulated import Sample, SimulatedOffice

log = logging.getLogger(__name__)

SOURCE_NAMES: tuple[str, ...] = ("simulated", "sensehat", "bme280")
_DECIMALS = 2


@dataclass(frozen=True, slots=True)
class Measurement:
    """One reading of a device in its own units; None: the device gave no value."""

    temperature_c: float | None
    humidity_pct: float | None
    pressure_mb: float | None


@dataclass(frozen=True, slots=True)
class Limits:
    """What a device can measure (its data sheet's operating range); anything else is a fault."""

    temperature_c: tuple[float, float]
    humidity_pct: tuple[float, float]
    pressure_mb: tuple[float, float]


class Source(Protocol):
    name: str
    limits: Limits

    def read(self) -> Measurement:
        """Measure now. Raises OSError when the device cannot be read."""
        ...

    def close(self) -> None: ...


class SkipReason(StrEnum):
    READ_ERROR = "read_error"
    NO_VALUE = "no_value"
    NOT_A_NUMBER = "not_a_number"
    OUT_OF_RANGE = "out_of_range"
    CLOCK_UNSYNCHRONISED = "clock_unsynchronised"


class SkipCounts:
    """Readings (or single values) skipped, per reason; logs the first of each reason, then
    every hundredth, so a dying sensor cannot flood the log."""

    def __init__(self) -> None:
        self.by_reason: Counter[SkipReason] = Counter()
        self.by_metric: Counter[tuple[str, SkipReason]] = Counter()

    def add(self, reason: SkipReason, metric: str | None, detail: str) -> None:
        self.by_reason[reason] += 1
        if metric is not None:
            self.by_metric[metric, reason] += 1
        count = self.by_reason[reason]
        if count == 1 or count % 100 == 0:
            log.warning("sensor: skipped (%s, %d so far): %s", reason.value, count, detail)

    def total(self) -> int:
        return sum(self.by_reason.values())

    def summary(self) -> str:
        return ", ".join(f"{reason.value} {n}" for reason, n in sorted(self.by_reason.items()))


def fahrenheit(celsius: float) -> float:
    return celsius * 9.0 / 5.0 + 32.0


def celsius(fahrenheit_value: float) -> float:
    return (fahrenheit_value - 32.0) * 5.0 / 9.0


def check(measurement: Measurement, limits: Limits, skipped: SkipCounts) -> dict[str, float]:
    """The values worth publishing, in the original's units (°F, %, mb) rounded to 0.01;
    every other value is counted in ``skipped``."""
    values: dict[str, float] = {}
    for metric, raw, (low, high), to_wire in (
        ("Temperature", measurement.temperature_c, limits.temperature_c, fahrenheit),
        ("Humidity", measurement.humidity_pct, limits.humidity_pct, float),
        ("Pressure", measurement.pressure_mb, limits.pressure_mb, float),
    ):
        if raw is None:
            skipped.add(SkipReason.NO_VALUE, metric, f"no {metric} value from the device")
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            skipped.add(SkipReason.NOT_A_NUMBER, metric, f"{metric} is {raw!r}")
            continue
        wire = round(to_wire(raw), _DECIMALS)
        wire_low, wire_high = PLAUSIBLE_RANGE[metric]
        if not (low <= raw <= high and wire_low <= wire <= wire_high):
            skipped.add(SkipReason.OUT_OF_RANGE, metric, f"{metric} {raw} outside {low}..{high}")
            continue
        values[metric] = wire
    return values


class Sampler:
    """Reads ``source`` every ``interval_s`` seconds; see the module docstring."""

    def __init__(
        self,
        source: Source,
        *,
        interval_s: float,
        gate: ClockGate,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
        units: str = "F",
    ) -> None:
        """``wait(stop, seconds)`` sleeps and says whether ``stop`` was set (tests pass a
        fake that moves their fake ``clock`` on instead)."""
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        self.source = source
        self.interval = timedelta(seconds=interval_s)
        self.gate = gate
        self.skipped = SkipCounts()
        self.taken = 0
        self._clock = clock
        self._wait = wait
        self._units = units

    def take(self, now: datetime) -> Sample | None:
        """One reading stamped ``now``, or None when nothing in it is worth publishing."""
        if not self.gate.ready(now):
            self.skipped.add(SkipReason.CLOCK_UNSYNCHRONISED, None, "clock not synchronised")
            return None
        try:
            measurement = self.source.read()
        except OSError as exc:
            self.skipped.add(SkipReason.READ_ERROR, None, f"{self.source.name}: {exc}")
            return None
        values = check(measurement, self.source.limits, self.skipped)
        if not values:
            return None
        self.taken += 1
        if self.taken == 1:
            log.info("sensor: first reading from %s: %s", self.source.name, self.show(values))
        return Sample(now, values, {})

    def show(self, values: dict[str, float]) -> str:
        """The values for a log line, the temperature in the unit of ``sensor.units``."""
        parts = []
        for metric, value in values.items():
            if metric == "Temperature" and self._units == "C":
                parts.append(f"{metric} {celsius(value):.2f} °C")
            else:
                unit = {"Temperature": "°F", "Humidity": "%", "Pressure": "mb"}[metric]
                parts.append(f"{metric} {value:.2f} {unit}")
        return ", ".join(parts)

    def samples(self, stop: threading.Event) -> Iterator[Sample]:
        """A reading every interval until ``stop`` is set. When the clock jumps (NTP steps it,
        or a read was slow), the schedule starts afresh from now: no burst of catch-up reads."""
        due = self._clock()
        while not stop.is_set():
            wait_s = (due - self._clock()).total_seconds()
            if wait_s > self.interval.total_seconds():  # the clock went back
                due, wait_s = self._clock(), 0.0
            if wait_s > 0 and self._wait(stop, wait_s):
                return
            now = self._clock()
            due += self.interval
            if due <= now:
                due = now + self.interval
            sample = self.take(now)
            if sample is not None:
                yield sample


# ----------------------------------------------------------------------------- the sources

#: The simulated office stays within payload.PLAUSIBLE_RANGE (-60..200 °F).
SIMULATED_LIMITS = Limits((-51.0, 93.0), (0.0, 100.0), (260.0, 1260.0))


class SimulatedSource:
    """The simulated office (``simulated.py``) behind the Source interface."""

    name = "simulated"
    limits = SIMULATED_LIMITS

    def __init__(self, office: SimulatedOffice, start: datetime, interval_s: float) -> None:
        self._samples = office.samples(start, interval_s)

    def read(self) -> Measurement:
        values = next(self._samples).values
        temperature = values.get("Temperature")
        return Measurement(
            None if temperature is None else celsius(temperature),
            values.get("Humidity"),
            values.get("Pressure"),
        )

    def close(self) -> None:
        pass


def open_source(
    settings: Settings, *, simulation: SimulatedOffice, start: datetime, interval_s: float
) -> Source:
    """The source ``sensor.source`` names. Hardware libraries are imported here, only for the
    source chosen; a missing library or device raises ConfigError naming the setting."""
    name = settings.sensor_source
    if name == "sensehat":
        from officesensor.sensor.sensehat import open_sensehat

        return open_sensehat(cpu_compensation=settings.sensor_cpu_compensation)
    if name == "bme280":
        from officesensor.sensor.bme280 import open_bme280

        return open_bme280(bus=settings.sensor_i2c_bus, address=settings.sensor_i2c_address)
    return SimulatedSource(simulation, start, interval_s)
