"""``officesensor sensor install-service``: the systemd unit and its settings file."""

from __future__ import annotations

import configparser
import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

from officesensor.cli import main
from officesensor.config import load_settings
from officesensor.sensor.service_unit import (
    UnitOptions,
    enable_commands,
    render_config,
    render_unit,
)

OPTIONS = UnitOptions(
    executable=Path("/home/pi/officesensor/.venv/bin/officesensor"),
    config_file=Path("/home/pi/officesensor/officesensor.toml"),
    working_directory=Path("/home/pi/officesensor"),
    user="pi",
    home=Path("/home/pi"),
)


def parse(unit: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(unit)
    return parser


def test_unit_restarts_on_failure_after_the_network_as_a_dedicated_user() -> None:
    unit = parse(render_unit(OPTIONS))
    assert unit.sections() == ["Unit", "Service", "Install"]
    assert "network-online.target" in unit["Unit"]["After"].split()
    assert unit["Unit"]["Wants"] == "network-online.target"
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert int(service["RestartSec"]) > 0
    assert service["User"] == "pi"
    assert set(service["SupplementaryGroups"].split()) == {"i2c", "gpio"}
    assert service["WorkingDirectory"] == "/home/pi/officesensor"
    assert "75" in service["SuccessExitStatus"].split()  # stopped with a backlog: not a failure
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_exec_start_runs_the_venvs_officesensor_with_the_config_file() -> None:
    command = shlex.split(parse(render_unit(OPTIONS))["Service"]["ExecStart"])
    assert command == [
        "/home/pi/officesensor/.venv/bin/officesensor",
        "sensor",
        "--config",
        "/home/pi/officesensor/officesensor.toml",
    ]


def test_hardening_keeps_devices_and_only_the_data_directory_writable() -> None:
    service = parse(render_unit(OPTIONS))["Service"]
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == [
        "/home/pi/officesensor",
        "-/home/pi/.config/sense_hat",  # the sense-hat library writes its settings there
    ]
    assert service["NoNewPrivileges"] == "yes"
    for option in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"):
        assert option not in service, f"{option} would hide /dev/i2c-* from the sensor"


def test_paths_with_spaces_are_quoted_and_relative_paths_refused() -> None:
    spaced = UnitOptions(
        Path("/opt/office sensor/bin/officesensor"),
        Path("/etc/office sensor.toml"),
        Path("/var/lib/office sensor"),
        "sensor",
    )
    service = parse(render_unit(spaced))["Service"]
    assert shlex.split(service["ExecStart"])[0] == "/opt/office sensor/bin/officesensor"
    assert shlex.split(service["ExecStart"])[-1] == "/etc/office sensor.toml"
    assert service["ReadWritePaths"] == '"/var/lib/office sensor"'
    assert service["WorkingDirectory"] == "/var/lib/office sensor"
    percent = parse(render_unit(UnitOptions(OPTIONS.executable, Path("/etc/100%.toml"),
                                            Path("/srv/50%"), "pi")))["Service"]  # fmt: skip
    assert shlex.split(percent["ExecStart"])[-1] == "/etc/100%%.toml"  # systemd reads "%"
    assert percent["WorkingDirectory"] == percent["ReadWritePaths"] == "/srv/50%%"
    with pytest.raises(ValueError, match="absolute"):
        render_unit(UnitOptions(Path("bin/officesensor"), OPTIONS.config_file, Path("/x"), "pi"))
    with pytest.raises(ValueError, match="user"):
        render_unit(UnitOptions(OPTIONS.executable, OPTIONS.config_file, Path("/x"), "a b"))


def test_enable_commands_are_printed_not_run() -> None:
    assert enable_commands(Path("/etc/systemd/system/officesensor-sensor.service")) == [
        "sudo systemctl daemon-reload",
        "sudo systemctl enable --now officesensor-sensor.service",
        "journalctl -u officesensor-sensor.service -f",
    ]


def test_config_file_round_trips_the_settings_in_effect(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    settings = load_settings(
        environ={
            "OFFICESENSOR_MQTT_URL": "mqtts://pi%40office:p%C3%A4ss%22word@broker.example:8883",
            "OFFICESENSOR_MQTT_CA_FILE": str(ca),
            "OFFICESENSOR_SENSOR_NAME": "meeting-room.2",
            "OFFICESENSOR_SENSOR_SOURCE": "bme280",
            "OFFICESENSOR_SENSOR_I2C_ADDRESS": "0x77",
            "OFFICESENSOR_SENSOR_CPU_COMPENSATION": "1.5",
            "OFFICESENSOR_SENSOR_UNITS": "c",
        }
    )
    config = tmp_path / "officesensor.toml"
    config.write_text(render_config(settings, tmp_path / "outbox.db"))
    loaded = load_settings(config, environ={})
    assert loaded.mqtt_url == settings.mqtt_url
    assert loaded.mqtt_url.password == 'päss"word'
    for field in (
        "mqtt_ca_file", "mqtt_client_id", "mqtt_protocol", "sensor_name", "sensor_source",
        "sensor_units", "sensor_cpu_compensation", "sensor_i2c_bus", "sensor_i2c_address",
        "sensor_clock_check", "sensor_timezone",
    ):  # fmt: skip
        assert getattr(loaded, field) == getattr(settings, field), field
    assert loaded.sensor_outbox == tmp_path / "outbox.db"


def test_install_service_writes_the_unit_and_settings_and_prints_the_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("OFFICESENSOR_")]:
        monkeypatch.delenv(name)
    unit_file = tmp_path / "officesensor-sensor.service"
    data = tmp_path / "data dir"
    code = main(
        [
            "sensor", "install-service", "--output", str(unit_file), "--data-dir", str(data),
            "--user", "sensor", "--sensor", "kitchen", "--source", "sensehat",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "sudo systemctl enable --now officesensor-sensor.service" in out
    service = parse(unit_file.read_text())["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0] == str(Path(sys.executable).parent / "officesensor")
    assert command[1:] == ["sensor", "--config", str(data / "officesensor.toml")]
    assert service["User"] == "sensor"
    config = data / "officesensor.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    settings = load_settings(config, environ={})
    assert (settings.sensor_name, settings.sensor_source) == ("kitchen", "sensehat")
    assert settings.sensor_outbox == data / "data" / "sensor-outbox.db"

    config.write_text('[sensor]\nname = "kept"\n')  # an existing settings file is left alone
    assert (
        main(["sensor", "install-service", "--output", str(unit_file), "--data-dir", str(data)])
        == 0
    )
    assert config.read_text() == '[sensor]\nname = "kept"\n'


def test_install_service_print_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sensor", "install-service", "--print", "--user", "pi"]) == 0
    unit = parse(capsys.readouterr().out)
    assert unit["Service"]["WorkingDirectory"] == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_install_service_cannot_write_says_so_and_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.service"
    config = tmp_path / "s.toml"
    config.write_text("")
    code = main(["sensor", "install-service", "--config", str(config), "--output", str(missing)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--output" in err
    assert "--print" in err
