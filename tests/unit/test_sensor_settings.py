"""The sensor's own settings: its name, source, units, compensation, I2C and clock check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from officesensor.cli import main
from officesensor.config import default_sensor_name, load_settings
from officesensor.errors import ConfigError
from officesensor.payload import SENSOR_NAME


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.sensor_name == default_sensor_name(socket.gethostname())
    assert SENSOR_NAME.fullmatch(s.sensor_name)
    assert (s.sensor_source, s.sensor_units, s.sensor_cpu_compensation) == ("simulated", "F", 0.0)
    assert (s.sensor_i2c_bus, s.sensor_i2c_address, s.sensor_clock_check) == (1, 0x76, "auto")


@pytest.mark.parametrize(
    ("hostname", "name"),
    [
        ("raspberrypi", "raspberrypi"),
        ("pi-kitchen.office.example.com", "pi-kitchen"),
        ("Büro Pi", "B-ro-Pi"),
        ("-odd_", "odd_"),
        ("", "sensor"),
        ("x" * 80, "x" * 64),
    ],
)
def test_the_default_name_is_the_host_name_made_valid(hostname: str, name: str) -> None:
    assert default_sensor_name(hostname) == name
    assert SENSOR_NAME.fullmatch(default_sensor_name(hostname))


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OFFICESENSOR_SENSOR_NAME", "meeting-room.2", "meeting-room.2"),
        ("OFFICESENSOR_SENSOR_SOURCE", "bme280", "bme280"),
        ("OFFICESENSOR_SENSOR_UNITS", "c", "C"),
        ("OFFICESENSOR_SENSOR_CPU_COMPENSATION", "2.25", 2.25),
        ("OFFICESENSOR_SENSOR_I2C_BUS", "3", 3),
        ("OFFICESENSOR_SENSOR_I2C_ADDRESS", "0x77", 0x77),
        ("OFFICESENSOR_SENSOR_I2C_ADDRESS", "118", 0x76),
        ("OFFICESENSOR_SENSOR_CLOCK_CHECK", "floor", "floor"),
    ],
)
def test_good_values(variable: str, value: str, expected: object) -> None:
    field = variable.removeprefix("OFFICESENSOR_").lower()
    assert getattr(load_settings(environ={variable: value}), field) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OFFICESENSOR_SENSOR_NAME", "kitchen/2"),
        ("OFFICESENSOR_SENSOR_NAME", "-kitchen"),
        ("OFFICESENSOR_SENSOR_NAME", "x" * 65),
        ("OFFICESENSOR_SENSOR_SOURCE", "dht22"),
        ("OFFICESENSOR_SENSOR_UNITS", "K"),
        ("OFFICESENSOR_SENSOR_CPU_COMPENSATION", "-1"),
        ("OFFICESENSOR_SENSOR_CPU_COMPENSATION", "nan"),
        ("OFFICESENSOR_SENSOR_I2C_ADDRESS", "0x80"),
        ("OFFICESENSOR_SENSOR_I2C_ADDRESS", "seventy-six"),
        ("OFFICESENSOR_SENSOR_CLOCK_CHECK", "ntp"),
    ],
)
def test_bad_values_name_the_setting(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: value})
    assert caught.value.setting == variable


def test_toml_takes_the_i2c_address_as_a_hex_integer(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("[sensor]\ni2c_address = 0x77\nname = 'lab'\n")
    settings = load_settings(config, environ={})
    assert (settings.sensor_i2c_address, settings.sensor_name) == (0x77, "lab")


def test_a_bad_sensor_flag_fails_at_start_up_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sensor", "--sensor", "no spaces please", "--count", "1"]) == 2
    assert "--sensor" in capsys.readouterr().err


def test_backfill_is_for_the_simulated_source_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sensor", "--source", "bme280", "--backfill", "1d"]) == 2
    assert "--backfill" in capsys.readouterr().err
