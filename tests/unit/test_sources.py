"""Sensor sources through fakes that behave like the devices: a Sense HAT whose first reads
return 0 and that sometimes raises OSError, a BME280 driver with I2C errors and nonsense
registers. Out-of-range and non-numeric values are skipped and counted, never published."""

from __future__ import annotations

import itertools
import json
import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from officesensor.config import load_settings
from officesensor.errors import ConfigError
from officesensor.models import Rejection
from officesensor.payload import parse_message
from officesensor.sensor.bme280 import BME280_LIMITS, Bme280Source, open_bme280
from officesensor.sensor.clock import ClockGate
from officesensor.sensor.compensation import compensate, read_cpu_temperature_c
from officesensor.sensor.publisher import run_sensor
from officesensor.sensor.sensehat import SENSEHAT_LIMITS, SenseHatSource, open_sensehat
from officesensor.sensor.simulated import SimulatedOffice
from officesensor.sensor.sources import (
    SOURCE_NAMES,
    Limits,
    Measurement,
    Sampler,
    SimulatedSource,
    SkipCounts,
    SkipReason,
    check,
    open_source,
)

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
OPEN = ClockGate("off")


# ----------------------------------------------------------------------------- fakes


class FakeSenseHat:
    """Like sense_hat.SenseHat: °C, %, mb; 0 until a sensor has converted once; a scripted
    OSError on chosen reads (an I2C hiccup)."""

    def __init__(
        self,
        t_humidity: float = 24.0,
        t_pressure: float = 25.0,
        humidity: float = 40.0,
        pressure: float = 1013.25,
        *,
        cold_reads: int = 1,
        fail_on: set[int] | None = None,
    ) -> None:
        self.values = {
            "t_humidity": t_humidity,
            "t_pressure": t_pressure,
            "humidity": humidity,
            "pressure": pressure,
        }
        self.cold_reads = cold_reads
        self.fail_on = fail_on or set()
        self.reads = 0

    def _get(self, name: str) -> float:
        if name == "t_humidity":  # every read starts with this one
            self.reads += 1
        if self.reads in self.fail_on:
            raise OSError(121, "Remote I/O error")
        return 0 if self.reads <= self.cold_reads else self.values[name]

    def get_temperature(self) -> float:
        return self.get_temperature_from_humidity()

    def get_temperature_from_humidity(self) -> float:
        return self._get("t_humidity")

    def get_temperature_from_pressure(self) -> float:
        return self._get("t_pressure")

    def get_humidity(self) -> float:
        return self._get("humidity")

    def get_pressure(self) -> float:
        return self._get("pressure")


class FakeBme280:
    """Like pimoroni-bme280's BME280 after setup(mode="forced"): update_sensor() runs one
    conversion and sets temperature (°C), humidity (%) and pressure (hPa)."""

    def __init__(self, readings: list[tuple[float, float, float] | BaseException]) -> None:
        self._readings = iter(readings)
        self.temperature = self.humidity = self.pressure = 0.0
        self.setup_mode: str | None = None

    def setup(self, mode: str = "normal") -> None:
        self.setup_mode = mode

    def update_sensor(self) -> None:
        reading = next(self._readings)
        if isinstance(reading, BaseException):
            raise reading
        self.temperature, self.humidity, self.pressure = reading


class FakeClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.now += timedelta(seconds=seconds)
        return stop.is_set()


def sampler(source: Any, gate: ClockGate = OPEN, **kwargs: Any) -> Sampler:
    return Sampler(source, interval_s=15.0, gate=gate, **kwargs)


def taken(s: Sampler, count: int) -> list[dict[str, float] | None]:
    results = []
    for i in range(count):
        sample = s.take(NOW + timedelta(seconds=15 * i))
        results.append(None if sample is None else sample.values)
    return results


# ----------------------------------------------------------------------------- Sense HAT


def test_sensehat_first_reads_are_zero_and_skipped_as_no_value_then_values_in_f() -> None:
    hat = FakeSenseHat(cold_reads=2)
    s = sampler(SenseHatSource(hat))
    first, second, third = taken(s, 3)
    assert first is None
    assert second is None
    # mean of the two sensors' 24 and 25 °C = 24.5 °C = 76.1 °F
    assert third == {"Temperature": 76.1, "Humidity": 40.0, "Pressure": 1013.25}
    assert s.skipped.by_reason == {SkipReason.NO_VALUE: 6}
    assert s.skipped.by_metric["Pressure", SkipReason.NO_VALUE] == 2


def test_sensehat_oserror_skips_the_reading_and_counts_it_and_the_next_read_works() -> None:
    hat = FakeSenseHat(cold_reads=0, fail_on={2, 3})
    s = sampler(SenseHatSource(hat))
    assert [v is not None for v in taken(s, 4)] == [True, False, False, True]
    assert s.skipped.by_reason == {SkipReason.READ_ERROR: 2}


def test_sensehat_one_temperature_sensor_not_ready_uses_the_other() -> None:
    hat = FakeSenseHat(t_humidity=0, t_pressure=20.0, cold_reads=0)
    assert SenseHatSource(hat).read().temperature_c == 20.0


@pytest.mark.parametrize(
    ("values", "metric", "reason"),
    [
        ({"humidity": 104.7}, "Humidity", SkipReason.OUT_OF_RANGE),
        ({"humidity": -3.0}, "Humidity", SkipReason.OUT_OF_RANGE),
        ({"pressure": 0}, "Pressure", SkipReason.NO_VALUE),  # the library's "not ready"
        ({"pressure": 1500.0}, "Pressure", SkipReason.OUT_OF_RANGE),
        ({"t_humidity": 130.0, "t_pressure": 130.0}, "Temperature", SkipReason.OUT_OF_RANGE),
        ({"t_humidity": -45.0, "t_pressure": -45.0}, "Temperature", SkipReason.OUT_OF_RANGE),
        ({"t_humidity": math.nan}, "Temperature", SkipReason.NOT_A_NUMBER),
        ({"humidity": math.inf}, "Humidity", SkipReason.NOT_A_NUMBER),
        ({"pressure": math.nan}, "Pressure", SkipReason.NOT_A_NUMBER),
    ],
)
def test_sensehat_bad_values_are_skipped_and_counted_the_others_published(
    values: dict[str, float], metric: str, reason: SkipReason
) -> None:
    hat = FakeSenseHat(cold_reads=0)
    hat.values.update(values)
    s = sampler(SenseHatSource(hat))
    (published,) = taken(s, 1)
    assert published is not None
    assert metric not in published
    assert set(published) == {"Temperature", "Humidity", "Pressure"} - {metric}
    assert s.skipped.by_metric == {(metric, reason): 1}


def test_sensehat_limits_are_the_data_sheets() -> None:
    assert Limits((-30.0, 105.0), (0.0, 100.0), (260.0, 1260.0)) == SENSEHAT_LIMITS


def test_cpu_compensation_applies_the_formula_with_the_configured_factor() -> None:
    hat = FakeSenseHat(t_humidity=30.0, t_pressure=30.0, cold_reads=0)
    source = SenseHatSource(hat, cpu_compensation=1.5, cpu_temperature=lambda: 45.0)
    # 30 - (45 - 30) / 1.5 = 20 °C
    assert source.read().temperature_c == pytest.approx(20.0)
    assert SenseHatSource(hat, cpu_temperature=lambda: 45.0).read().temperature_c == 30.0


def test_cpu_temperature_failure_is_a_read_error() -> None:
    def broken() -> float:
        raise OSError("thermal zone gone")

    s = sampler(
        SenseHatSource(FakeSenseHat(cold_reads=0), cpu_compensation=2.0, cpu_temperature=broken)
    )
    assert taken(s, 1) == [None]
    assert s.skipped.by_reason == {SkipReason.READ_ERROR: 1}


def test_compensate_refuses_a_nonpositive_factor() -> None:
    assert compensate(30.0, 50.0, 2.0) == 20.0
    for factor in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="factor"):
            compensate(30.0, 50.0, factor)


def test_cpu_temperature_is_read_in_millidegrees(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("52312\n")
    assert read_cpu_temperature_c(zone) == 52.312
    zone.write_text("hot\n")
    with pytest.raises(OSError, match="millidegrees"):
        read_cpu_temperature_c(zone)
    with pytest.raises(FileNotFoundError):
        read_cpu_temperature_c(tmp_path / "missing")


def module(name: str, **attributes: Any) -> ModuleType:
    mod = ModuleType(name)
    for key, value in attributes.items():
        setattr(mod, key, value)
    return mod


def importer(**modules: ModuleType) -> Any:
    def import_module(name: str) -> ModuleType:
        if name not in modules:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return modules[name]

    return import_module


def test_open_sensehat_without_the_library_names_the_setting_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        open_sensehat(cpu_compensation=0.0, import_module=importer())
    assert caught.value.setting == "sensor.source"
    assert "officesensor[pi]" in caught.value.problem


def test_open_sensehat_without_the_hat_names_the_setting() -> None:
    def no_hat() -> None:
        raise OSError("Cannot detect RPi-Sense FB device")

    with pytest.raises(ConfigError, match="Cannot detect RPi-Sense FB") as caught:
        open_sensehat(
            cpu_compensation=0.0,
            import_module=importer(sense_hat=module("sense_hat", SenseHat=no_hat)),
        )
    assert caught.value.setting == "sensor.source"


def test_open_sensehat_with_compensation_needs_a_readable_cpu_temperature(tmp_path: Path) -> None:
    library = importer(sense_hat=module("sense_hat", SenseHat=lambda: FakeSenseHat(cold_reads=0)))
    with pytest.raises(ConfigError) as caught:
        open_sensehat(
            cpu_compensation=1.5, cpu_temperature_file=tmp_path / "none", import_module=library
        )
    assert caught.value.setting == "sensor.cpu_compensation"
    zone = tmp_path / "temp"
    zone.write_text("45000\n")
    source = open_sensehat(cpu_compensation=1.5, cpu_temperature_file=zone, import_module=library)
    assert source.read().temperature_c == pytest.approx(24.5 - (45.0 - 24.5) / 1.5)


# ----------------------------------------------------------------------------- BME280


def test_bme280_values_in_original_units_and_device_errors_counted() -> None:
    device = FakeBme280(
        [
            (21.0, 45.5, 1002.3),
            OSError(121, "Remote I/O error"),  # the I2C bus hiccupped
            ZeroDivisionError("float division by zero"),  # calibration registers read as 0
            (22.0, 46.0, 1002.0),
        ]
    )
    s = sampler(Bme280Source(device))
    assert taken(s, 4) == [
        {"Temperature": 69.8, "Humidity": 45.5, "Pressure": 1002.3},
        None,
        None,
        {"Temperature": 71.6, "Humidity": 46.0, "Pressure": 1002.0},
    ]
    assert s.skipped.by_reason == {SkipReason.READ_ERROR: 2}


@pytest.mark.parametrize(
    ("reading", "skipped"),
    [
        ((21.0, 45.0, 0.0), {("Pressure", SkipReason.OUT_OF_RANGE): 1}),
        ((21.0, 45.0, 250.0), {("Pressure", SkipReason.OUT_OF_RANGE): 1}),
        ((21.0, 100.5, 1000.0), {("Humidity", SkipReason.OUT_OF_RANGE): 1}),
        ((86.0, 45.0, 1000.0), {("Temperature", SkipReason.OUT_OF_RANGE): 1}),
        ((-41.0, 45.0, 1000.0), {("Temperature", SkipReason.OUT_OF_RANGE): 1}),
        ((math.nan, math.nan, math.nan), {
            (m, SkipReason.NOT_A_NUMBER): 1 for m in ("Temperature", "Humidity", "Pressure")
        }),
    ],
)  # fmt: skip
def test_bme280_out_of_range_values_are_skipped_and_counted(
    reading: tuple[float, float, float], skipped: dict[tuple[str, SkipReason], int]
) -> None:
    s = sampler(Bme280Source(FakeBme280([reading])))
    (published,) = taken(s, 1)
    assert not set(published or {}) & {metric for metric, _ in skipped}
    assert s.skipped.by_metric == skipped


def test_bme280_limits_are_the_data_sheets() -> None:
    assert Limits((-40.0, 85.0), (0.0, 100.0), (300.0, 1100.0)) == BME280_LIMITS


def test_open_bme280_sets_up_forced_mode_and_close_releases_the_bus() -> None:
    closed: list[int] = []
    made: dict[str, Any] = {}

    class SMBus:
        def __init__(self, bus: int) -> None:
            self.bus = bus

        def close(self) -> None:
            closed.append(self.bus)

    def BME280(i2c_addr: int, i2c_dev: SMBus) -> FakeBme280:
        made.update(address=i2c_addr, bus=i2c_dev.bus)
        made["device"] = FakeBme280([(20.0, 50.0, 1010.0)])
        return made["device"]

    source = open_bme280(
        bus=3,
        address=0x77,
        import_module=importer(
            smbus2=module("smbus2", SMBus=SMBus), bme280=module("bme280", BME280=BME280)
        ),
    )
    assert (made["address"], made["bus"], made["device"].setup_mode) == (0x77, 3, "forced")
    assert source.read() == Measurement(20.0, 50.0, 1010.0)
    source.close()
    assert closed == [3]


def test_open_bme280_errors_name_the_setting_to_fix() -> None:
    def no_bus(bus: int) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(ConfigError) as caught:
        open_bme280(bus=1, address=0x76, import_module=importer())
    assert caught.value.setting == "sensor.source"
    with pytest.raises(ConfigError) as caught:
        open_bme280(
            bus=1,
            address=0x76,
            import_module=importer(smbus2=module("smbus2"), bme280=module("bme280")),
        )
    assert "RPi.bme280" in caught.value.problem  # another package's bme280 module
    with pytest.raises(ConfigError) as caught:
        open_bme280(
            bus=1,
            address=0x76,
            import_module=importer(
                smbus2=module("smbus2", SMBus=no_bus), bme280=module("bme280", BME280=object)
            ),
        )
    assert caught.value.setting == "sensor.i2c_bus"
    assert "/dev/i2c-1" in caught.value.problem

    closed: list[bool] = []
    bus = SimpleNamespace(close=lambda: closed.append(True))

    def absent(i2c_addr: int, i2c_dev: Any) -> Any:
        raise RuntimeError("Unable to find bme280 on 0x76, IOError")

    with pytest.raises(ConfigError) as caught:
        open_bme280(
            bus=1,
            address=0x76,
            import_module=importer(
                smbus2=module("smbus2", SMBus=lambda n: bus), bme280=module("bme280", BME280=absent)
            ),
        )
    assert caught.value.setting == "sensor.i2c_address"
    assert closed == [True]


# ----------------------------------------------------------------------------- simulated


def test_simulated_source_reports_the_simulators_values() -> None:
    office = SimulatedOffice(4)
    expected = list(SimulatedOffice(4).samples(NOW, 15.0, 200))
    s = sampler(SimulatedSource(office, NOW, 15.0))
    got = taken(s, 200)
    assert got == [sample.values or None for sample in expected]
    dropouts = sum(3 - len(sample.values) for sample in expected)
    assert s.skipped.by_reason.get(SkipReason.NO_VALUE, 0) == dropouts


def test_open_source_picks_by_setting_and_imports_no_hardware_library_for_simulated() -> None:
    import sys

    settings = load_settings(environ={})
    assert settings.sensor_source == "simulated"
    source = open_source(settings, simulation=SimulatedOffice(1), start=NOW, interval_s=15.0)
    assert source.name == "simulated"
    assert not {"sense_hat", "smbus2", "bme280"} & set(sys.modules)
    assert SOURCE_NAMES == ("simulated", "sensehat", "bme280")
    with pytest.raises(ConfigError) as caught:
        open_source(
            settings.replace(sensor_source="bme280"),
            simulation=SimulatedOffice(1),
            start=NOW,
            interval_s=15.0,
        )
    assert caught.value.setting.startswith("sensor.")


# ----------------------------------------------------------------------------- checks


def test_check_also_keeps_within_what_ingest_accepts() -> None:
    wide = Limits((-100.0, 150.0), (0.0, 100.0), (0.0, 2000.0))
    skipped = SkipCounts()
    # 100 °C = 212 °F: beyond ingest's plausible -60..200 °F although the device allows it
    assert check(Measurement(100.0, 50.0, 100.0), wide, skipped) == {"Humidity": 50.0}
    assert skipped.by_metric == {
        ("Temperature", SkipReason.OUT_OF_RANGE): 1,
        ("Pressure", SkipReason.OUT_OF_RANGE): 1,
    }


def test_check_refuses_values_that_are_not_numbers() -> None:
    skipped = SkipCounts()
    bogus: Any = "21.5"
    assert check(Measurement(bogus, True, None), SENSEHAT_LIMITS, skipped) == {}
    assert skipped.by_metric == {
        ("Temperature", SkipReason.NOT_A_NUMBER): 1,
        ("Humidity", SkipReason.NOT_A_NUMBER): 1,
        ("Pressure", SkipReason.NO_VALUE): 1,
    }


def test_skips_are_logged_first_then_every_hundredth(caplog: pytest.LogCaptureFixture) -> None:
    skipped = SkipCounts()
    for _ in range(250):
        skipped.add(SkipReason.READ_ERROR, None, "I2C error")
    assert skipped.by_reason == {SkipReason.READ_ERROR: 250}
    assert len([r for r in caplog.records if "read_error" in r.getMessage()]) == 3
    assert skipped.summary() == "read_error 250"


class Collector:
    """Stands in for the Publisher: records what would go to the outbox."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        self.messages.extend(messages)


def test_only_good_values_reach_the_publisher_and_ingest_accepts_them_all() -> None:
    device = FakeBme280(
        [
            (21.0, 45.0, 1000.0),
            OSError(5, "Input/output error"),
            (21.5, 130.0, 0.0),
            (math.nan, 44.0, 1001.0),
            (22.0, 44.0, 1001.0),
        ]
    )
    clock = FakeClock()
    stop = threading.Event()
    s = Sampler(Bme280Source(device), interval_s=15.0, gate=OPEN, clock=clock, wait=clock.wait)
    collector = Collector()
    count = run_sensor(
        itertools.islice(s.samples(stop), 4),
        collector,  # type: ignore[arg-type]
        sensor="lab",
        tz=UTC,
        stop=stop,
        clock=clock,
    )
    assert count == 4
    values = [(t.split("/")[2], json.loads(p)) for t, p in collector.messages]
    assert [(m, doc[m]) for m, doc in values] == [
        ("Temperature", 69.8), ("Humidity", 45.0), ("Pressure", 1000.0),
        ("Temperature", 70.7),
        ("Humidity", 44.0), ("Pressure", 1001.0),
        ("Temperature", 71.6), ("Humidity", 44.0), ("Pressure", 1001.0),
    ]  # fmt: skip
    assert all(doc["Sensor"] == "lab" for _, doc in values)
    for topic, payload in collector.messages:
        parsed = parse_message(topic, payload, now=clock.now, sensor_tz=UTC)
        assert not isinstance(parsed, Rejection), parsed
    assert s.skipped.by_reason == {
        SkipReason.READ_ERROR: 1,
        SkipReason.OUT_OF_RANGE: 2,
        SkipReason.NOT_A_NUMBER: 1,
    }


# ----------------------------------------------------------------------------- schedule


def samples_of(s: Sampler, stop: threading.Event, count: int) -> list[datetime]:
    return [sample.ts for sample in itertools.islice(s.samples(stop), count)]


def test_samples_come_every_interval_on_the_clock() -> None:
    clock = FakeClock()
    s = Sampler(
        Bme280Source(FakeBme280(list(itertools.repeat((20.0, 50.0, 1000.0), 5)))),
        interval_s=15.0,
        gate=OPEN,
        clock=clock,
        wait=clock.wait,
    )
    assert samples_of(s, threading.Event(), 5) == [
        NOW + timedelta(seconds=15 * i) for i in range(5)
    ]


def test_a_clock_step_restarts_the_schedule_without_a_burst_of_reads() -> None:
    clock = FakeClock()

    class JumpingDevice(FakeBme280):
        reads = 0

        def update_sensor(self) -> None:
            super().update_sensor()
            self.reads += 1
            if self.reads == 2:  # NTP steps the clock a year ahead during this read
                clock.now += timedelta(days=365)
            if self.reads == 4:  # and back by a day during this one
                clock.now -= timedelta(days=1)

    device = JumpingDevice(list(itertools.repeat((20.0, 50.0, 1000.0), 6)))
    s = Sampler(Bme280Source(device), interval_s=15.0, gate=OPEN, clock=clock, wait=clock.wait)
    stamps = samples_of(s, threading.Event(), 6)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert device.reads == 6  # one read per sample: no catch-up burst, no day-long sleep
    assert gaps == [15.0, 365 * 86400.0, 15.0, -86400.0, 15.0]


def test_stop_ends_the_samples() -> None:
    stop = threading.Event()
    clock = FakeClock()

    def wait(event: threading.Event, seconds: float) -> bool:
        event.set()
        return True

    s = Sampler(
        Bme280Source(FakeBme280(list(itertools.repeat((20.0, 50.0, 1000.0), 3)))),
        interval_s=15.0,
        gate=OPEN,
        clock=clock,
        wait=wait,
    )
    assert len(samples_of(s, stop, 10)) == 1  # the first at once, then stop during the wait


def test_open_sensehat_explains_its_settings_directory() -> None:
    def read_only_home() -> None:
        raise PermissionError(13, "Permission denied", "/home/pi/.config/sense_hat")

    library = importer(sense_hat=module("sense_hat", SenseHat=read_only_home))
    with pytest.raises(ConfigError, match="--count 1' once as this user"):
        open_sensehat(cpu_compensation=0.0, import_module=library)
