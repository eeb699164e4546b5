"""``officesensor sensor install-service``: a systemd unit that runs the sensor at boot and
restarts it when it fails, and a starter settings file for it. Pure: builds text, writes
nothing (the CLI writes the files and prints the ``systemctl`` commands; it never runs them).

The unit waits for the network, runs as a dedicated user with the ``i2c`` and ``gpio`` groups
(the sensors' device files), and is sandboxed: the file system is read-only to it except its
data directory (the outbox) and ``~/.config/sense_hat`` (where the ``sense-hat`` library
keeps its settings), it cannot gain privileges or load kernel modules. It keeps
``/dev`` (no ``PrivateDevices``), so ``/dev/i2c-*`` and the Sense HAT's framebuffer stay
reachable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from officesensor.config import Settings

DEFAULT_UNIT_PATH = Path("/etc/systemd/system/officesensor-sensor.service")
RESTART_S = 10


@dataclass(frozen=True, slots=True)
class UnitOptions:
    executable: Path  # the venv's officesensor script, absolute
    config_file: Path  # absolute
    working_directory: Path  # absolute: the outbox lives here
    user: str
    home: Path | None = None  # the user's home: the sense-hat library keeps settings there
    description: str = "Office Sensor: publish this room's climate over MQTT"


def _quote(word: str) -> str:
    """A word for ExecStart= or ReadWritePaths=: systemd splits on spaces and reads C-style
    escapes in quotes; % starts a specifier everywhere, %% is a plain %."""
    word = word.replace("%", "%%")
    if word and all(c.isalnum() or c in "/._-+=:@,%" for c in word):
        return word
    return json.dumps(word)


def render_unit(options: UnitOptions) -> str:
    for name in ("executable", "config_file", "working_directory"):
        if not getattr(options, name).is_absolute():
            raise ValueError(f"{name} must be an absolute path")
    if not options.user or any(c.isspace() for c in options.user):
        raise ValueError(f"not a user name: {options.user!r}")
    command = [str(options.executable), "sensor", "--config", str(options.config_file)]
    writable = [_quote(str(options.working_directory))]  # ReadWritePaths= is a quoted list
    if options.home is not None:  # "-": no error when it does not exist (no Sense HAT)
        writable.append(_quote("-" + str(options.home / ".config" / "sense_hat")))
    return "\n".join(
        [
            "[Unit]",
            f"Description={options.description}",
            "After=network-online.target time-sync.target",
            "Wants=network-online.target",
            "# Keep trying however often it fails (a HAT or broker not ready at boot).",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            "Type=simple",
            f"User={options.user}",
            "SupplementaryGroups=i2c gpio",
            # the rest of the line, unquoted
            f"WorkingDirectory={str(options.working_directory).replace('%', '%%')}",
            f"ExecStart={' '.join(_quote(word) for word in command)}",
            "Restart=on-failure",
            f"RestartSec={RESTART_S}",
            "# 75: stopped with readings still in the outbox; the next start sends them.",
            "SuccessExitStatus=75",
            "TimeoutStopSec=30",
            "# Hardening that leaves /dev/i2c-*, /dev/fb* and /sys/class/thermal reachable.",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            f"ReadWritePaths={' '.join(writable)}",
            "PrivateTmp=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectKernelTunables=yes",
            "ProtectControlGroups=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def enable_commands(unit_path: Path) -> list[str]:
    """What to run (as root) after writing the unit; printed, never run by us."""
    name = unit_path.name
    return [
        "sudo systemctl daemon-reload",
        f"sudo systemctl enable --now {name}",
        f"journalctl -u {name} -f",
    ]


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def render_config(settings: Settings, outbox: Path) -> str:
    """A settings file for the service holding the settings in effect now (so what works in
    a shell works as a service), with the outbox at ``outbox`` (absolute)."""
    s = settings
    url = s.mqtt_url
    credentials = ""
    if url.username:
        from urllib.parse import quote

        credentials = quote(url.username, safe="")
        if url.password:
            credentials += ":" + quote(url.password, safe="")
        credentials += "@"
    host = f"[{url.host}]" if ":" in url.host else url.host
    mqtt_url = f"{'mqtts' if url.tls else 'mqtt'}://{credentials}{host}:{url.port}"
    lines = [
        "# Settings of the officesensor sensor service (docs/configuration.md lists them all).",
        "[mqtt]",
        f"url = {_toml_string(mqtt_url)}",
        f"protocol = {_toml_string(s.mqtt_protocol)}",
        f"alpn = {_toml_string(s.mqtt_alpn)}",
        f"client_id = {_toml_string(s.mqtt_client_id)}",
    ]
    for key, path in (
        ("ca_file", s.mqtt_ca_file),
        ("cert_file", s.mqtt_cert_file),
        ("key_file", s.mqtt_key_file),
    ):
        if path is not None:
            lines.append(f"{key} = {_toml_string(str(path.absolute()))}")
    lines += [
        "",
        "[sensor]",
        f"name = {_toml_string(s.sensor_name)}",
        f"source = {_toml_string(s.sensor_source)}",
        f"units = {_toml_string(s.sensor_units)}",
        f"cpu_compensation = {float(s.sensor_cpu_compensation)!r}",
        f"i2c_bus = {int(s.sensor_i2c_bus)}",
        f"i2c_address = {hex(s.sensor_i2c_address)}",
        f"clock_check = {_toml_string(s.sensor_clock_check)}",
        f"timezone = {_toml_string(s.sensor_timezone)}",
        f"outbox = {_toml_string(str(outbox))}",
        "",
    ]
    return "\n".join(lines)
