"""A Bosch BME280 on the Pi's I2C bus as a source, through ``smbus2`` and Pimoroni's
``pimoroni-bme280`` driver (both imported only when this source is chosen).

The driver runs in forced mode: each ``read`` starts one conversion and waits for it, so the
values are fresh (never a stale register) and the sensor sleeps between readings, which keeps
its self-heating low (Bosch's recommended setting for weather monitoring). One conversion
gives all three values (the driver's ``get_*`` methods would start one each).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from officesensor.errors import ConfigError
from officesensor.sensor.sources import Limits, Measurement

#: Data-sheet operating range: -40..85 °C, 0..100 %RH, 300..1100 hPa.
BME280_LIMITS = Limits(temperature_c=(-40.0, 85.0), humidity_pct=(0.0, 100.0),
                       pressure_mb=(300.0, 1100.0))  # fmt: skip


class Bme280Like(Protocol):
    """What this source uses of ``bme280.BME280`` (after ``setup(mode="forced")``)."""

    temperature: float  # °C
    humidity: float  # %RH
    pressure: float  # hPa

    def update_sensor(self) -> None: ...


class Bme280Source:
    name = "bme280"
    limits = BME280_LIMITS

    def __init__(self, device: Bme280Like, *, release: Callable[[], None] = lambda: None) -> None:
        self._device = device
        self._release = release

    def read(self) -> Measurement:
        try:
            self._device.update_sensor()  # I2C errors are OSError already
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:  # nonsense registers
            raise OSError(f"BME280 read failed: {exc!r}") from exc
        device = self._device
        return Measurement(device.temperature, device.humidity, device.pressure)

    def close(self) -> None:
        self._release()


def open_bme280(
    *,
    bus: int,
    address: int,
    import_module: Callable[[str], ModuleType] = importlib.import_module,
) -> Bme280Source:
    """The BME280 at ``address`` on ``/dev/i2c-<bus>``; ConfigError naming the setting when
    it cannot be used."""
    try:
        smbus2: Any = import_module("smbus2")
        driver: Any = import_module("bme280")
    except ImportError as exc:
        raise ConfigError(
            "sensor.source",
            f"bme280 needs smbus2 and pimoroni-bme280 ({exc}): pip install 'officesensor[pi]'",
        ) from None
    if not hasattr(driver, "BME280"):
        raise ConfigError(
            "sensor.source",
            "the installed bme280 module is not pimoroni-bme280 (RPi.bme280 uses the same "
            "name): pip uninstall RPi.bme280 && pip install 'officesensor[pi]'",
        )
    try:
        i2c = smbus2.SMBus(bus)
    except OSError as exc:
        raise ConfigError(
            "sensor.i2c_bus",
            f"cannot open /dev/i2c-{bus}: {exc} (enable I2C with raspi-config; the user "
            "must be in the i2c group)",
        ) from None
    try:
        device = driver.BME280(i2c_addr=address, i2c_dev=i2c)
        device.setup(mode="forced")
    except (OSError, RuntimeError) as exc:
        i2c.close()
        raise ConfigError(
            "sensor.i2c_address", f"no BME280 answers at 0x{address:02x} on /dev/i2c-{bus}: {exc}"
        ) from None
    return Bme280Source(device, release=i2c.close)
