"""The Raspberry Pi Sense HAT as a source, through the ``sense-hat`` library (imported only
when this source is chosen).

The HAT has two sensors that measure temperature: the HTS221 (humidity) and the LPS25H
(pressure). The library returns 0 for a value its sensor has not converted yet (the first
reads after start-up), so an exact 0 is "no value" here, never a reading. The temperature is
the mean of both sensors' values that are present, then, when ``sensor.cpu_compensation`` is
set, corrected for the CPU's heat (``compensation.py``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from officesensor.errors import ConfigError
from officesensor.sensor.compensation import (
    CPU_TEMPERATURE_FILE,
    compensate,
    read_cpu_temperature_c,
)
from officesensor.sensor.sources import Limits, Measurement

#: Data-sheet operating ranges: HTS221 -40..120 °C, 0..100 %RH; LPS25H -30..105 °C,
#: 260..1260 hPa. Where both measure temperature, -30..105 °C.
SENSEHAT_LIMITS = Limits(temperature_c=(-30.0, 105.0), humidity_pct=(0.0, 100.0),
                         pressure_mb=(260.0, 1260.0))  # fmt: skip


class SenseHatLike(Protocol):
    """What this source uses of ``sense_hat.SenseHat``."""

    def get_temperature_from_humidity(self) -> float: ...
    def get_temperature_from_pressure(self) -> float: ...
    def get_humidity(self) -> float: ...
    def get_pressure(self) -> float: ...


def _present(value: float) -> float | None:
    """The library's 0 means "not converted yet"; anything else (NaN included) is a value."""
    return None if value == 0 else value


class SenseHatSource:
    name = "sensehat"
    limits = SENSEHAT_LIMITS

    def __init__(
        self,
        hat: SenseHatLike,
        *,
        cpu_compensation: float = 0.0,
        cpu_temperature: Callable[[], float] = read_cpu_temperature_c,
    ) -> None:
        self._hat = hat
        self._factor = cpu_compensation
        self._cpu_temperature = cpu_temperature

    def read(self) -> Measurement:
        hat = self._hat
        try:
            temperatures = (
                hat.get_temperature_from_humidity(),
                hat.get_temperature_from_pressure(),
            )
            humidity, pressure = hat.get_humidity(), hat.get_pressure()
        except (RuntimeError, ValueError) as exc:  # RTIMULib's own failures
            raise OSError(f"Sense HAT read failed: {exc}") from exc
        present = [t for t in temperatures if _present(t) is not None]
        temperature = math.fsum(present) / len(present) if present else None
        if temperature is not None and self._factor > 0 and math.isfinite(temperature):
            temperature = compensate(temperature, self._cpu_temperature(), self._factor)
        return Measurement(temperature, _present(humidity), _present(pressure))

    def close(self) -> None:
        pass  # the library holds no handle worth releasing


def open_sensehat(
    *,
    cpu_compensation: float,
    cpu_temperature_file: Path = CPU_TEMPERATURE_FILE,
    import_module: Callable[[str], ModuleType] = importlib.import_module,
) -> SenseHatSource:
    """The Sense HAT on this Pi; ConfigError (naming the setting) when it cannot be used."""
    try:
        library: Any = import_module("sense_hat")
    except ImportError as exc:
        raise ConfigError(
            "sensor.source",
            f"sensehat needs the sense-hat library ({exc}): pip install 'officesensor[pi]' "
            "in a virtualenv made with --system-site-packages, after apt install sense-hat",
        ) from None
    try:
        hat = library.SenseHat()
    except (OSError, RuntimeError) as exc:
        hint = ""
        if "sense_hat" in str(getattr(exc, "filename", "") or ""):
            hint = (
                " (the library keeps its settings in ~/.config/sense_hat: run "
                "'officesensor sensor --source sensehat --count 1' once as this user)"
            )
        raise ConfigError("sensor.source", f"no usable Sense HAT: {exc}{hint}") from None

    def cpu_temperature() -> float:
        return read_cpu_temperature_c(cpu_temperature_file)

    if cpu_compensation > 0:
        try:
            cpu_temperature()
        except OSError as exc:
            raise ConfigError(
                "sensor.cpu_compensation", f"cannot read the CPU temperature: {exc}"
            ) from None
    return SenseHatSource(hat, cpu_compensation=cpu_compensation, cpu_temperature=cpu_temperature)
