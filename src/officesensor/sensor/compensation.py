"""CPU-heat compensation for a Sense HAT sitting on the Pi's board.

The Sense HAT's sensors sit a few millimetres above the CPU and read several degrees too
warm. The commonly used correction estimates the true air temperature from how much hotter
the CPU is than the sensor:

    t_corrected = t_sensor - (t_cpu - t_sensor) / factor

``factor`` depends on the Pi model, the case and the airflow: it must be calibrated against a
reference thermometer (docs/raspberry-pi.md). The CPU temperature comes from the kernel's
thermal zone, in millidegrees Celsius.
"""

from __future__ import annotations

import math
from pathlib import Path

#: Where Linux reports the SoC temperature on a Raspberry Pi (millidegrees Celsius).
CPU_TEMPERATURE_FILE = Path("/sys/class/thermal/thermal_zone0/temp")


def compensate(t_sensor_c: float, t_cpu_c: float, factor: float) -> float:
    """The estimated air temperature, in °C. ``factor`` must be positive."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, not {factor}")
    return t_sensor_c - (t_cpu_c - t_sensor_c) / factor


def read_cpu_temperature_c(path: Path = CPU_TEMPERATURE_FILE) -> float:
    """The CPU's temperature in °C. Raises OSError when it cannot be read or makes no sense."""
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        millidegrees = int(text)
    except ValueError:
        raise OSError(f"{path} holds {text[:20]!r}, not millidegrees") from None
    return millidegrees / 1000.0
