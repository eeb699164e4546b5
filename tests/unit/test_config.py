"""config.load_settings: defaults < TOML file < OFFICESENSOR_* variables < flags, and every bad
value stops start-up with a ConfigError that names the setting the way the user wrote it."""

from __future__ import annotations

import dataclasses
import math
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from officesensor.config import (
    SPECS,
    HttpAddress,
    MqttUrl,
    Settings,
    describe,
    load_settings,
    parse_mqtt_url,
    sqlite_path,
)
from officesensor.errors import ConfigError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "officesensor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _pem(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


# --------------------------------------------------------------------------- good values


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.mqtt_url == MqttUrl("127.0.0.1", 1883, tls=False)
    assert (settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file) == (
        None,
        None,
        None,
    )
    assert settings.mqtt_client_id == f"officesensor-{socket.gethostname()}"[:128]
    assert settings.mqtt_protocol == "5"
    assert settings.topic == "office/metrics/+"
    assert settings.store == "sqlite:///data/officesensor.db"
    assert settings.http == HttpAddress("127.0.0.1", 8000)
    assert settings.window == 10
    assert settings.z == 2.0
    assert settings.sensor_timezone == "local"
    now = datetime.now(UTC)
    assert now.astimezone(settings.tz).utcoffset() == now.astimezone().utcoffset()  # local
    assert settings.ingest_batch_size == 500
    assert settings.ingest_max_payload_bytes == 16_384
    assert settings.log_level == "INFO"


def test_environment_outside_the_prefix_is_ignored() -> None:
    environ = {"HOME": "/nowhere", "OFFICESENSOR": "x", "officesensor_window": "99"}
    assert load_settings(environ=environ) == load_settings(environ={})


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        """
window = 20
z = 3
topic = "office/metrics/#"
log_level = "debug"

[mqtt]
url = "mqtt://toml-broker:1884"
client_id = "from-toml"
protocol = "3.1.1"

[sensor]
timezone = "Europe/Berlin"

[ingest]
batch_size = 50
""",
    )
    from_file = load_settings(config, environ={})
    assert from_file.window == 20
    assert from_file.z == 3.0
    assert from_file.topic == "office/metrics/#"
    assert from_file.log_level == "DEBUG"
    assert from_file.mqtt_url == MqttUrl("toml-broker", 1884, tls=False)
    assert from_file.mqtt_client_id == "from-toml"
    assert from_file.mqtt_protocol == "3.1.1"
    assert from_file.sensor_timezone == "Europe/Berlin"
    assert from_file.tz == ZoneInfo("Europe/Berlin")
    assert from_file.ingest_batch_size == 50
    assert from_file.http == HttpAddress("127.0.0.1", 8000)  # untouched: default

    environ = {
        "OFFICESENSOR_WINDOW": "30",
        "OFFICESENSOR_MQTT_URL": "mqtts://env-broker",
        "OFFICESENSOR_HTTP": "0.0.0.0:9000",
    }
    from_env = load_settings(config, environ=environ)
    assert from_env.window == 30
    assert from_env.mqtt_url == MqttUrl("env-broker", 8883, tls=True)
    assert from_env.http == HttpAddress("0.0.0.0", 9000)
    assert from_env.z == 3.0  # still from the file
    assert from_env.mqtt_client_id == "from-toml"

    from_flags = load_settings(
        config, environ=environ, overrides={"window": "40", "mqtt_url": None, "z": "2.5"}
    )
    assert from_flags.window == 40
    assert from_flags.z == 2.5
    assert from_flags.mqtt_url == MqttUrl("env-broker", 8883, tls=True)  # None: flag not given


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("mqtt://broker", MqttUrl("broker", 1883, tls=False), id="mqtt-default-port"),
        pytest.param("mqtts://broker", MqttUrl("broker", 8883, tls=True), id="mqtts-default-port"),
        pytest.param("mqtt://10.0.0.5:11883", MqttUrl("10.0.0.5", 11883, tls=False), id="port"),
        pytest.param(
            "mqtts://abc-ats.iot.us-west-2.amazonaws.com:8883",
            MqttUrl("abc-ats.iot.us-west-2.amazonaws.com", 8883, tls=True),
            id="aws-iot",
        ),
        pytest.param(
            "mqtts://alice:p%40ss@broker:8884",
            MqttUrl("broker", 8884, tls=True, username="alice", password="p@ss"),
            id="credentials-unquoted",
        ),
        pytest.param("mqtt://[::1]:1883", MqttUrl("::1", 1883, tls=False), id="ipv6"),
    ],
)
def test_mqtt_urls(raw: str, expected: MqttUrl) -> None:
    assert load_settings(environ={"OFFICESENSOR_MQTT_URL": raw}).mqtt_url == expected


@pytest.mark.parametrize(
    "store",
    [
        "sqlite:///data/officesensor.db",
        "sqlite:////var/lib/officesensor/readings.db",
        "dynamodb://OfficeSensor?region=us-west-2",
        "dynamodb://OfficeSensor?region=us-west-2&endpoint_url=http://127.0.0.1:5000",
    ],
)
def test_good_stores(store: str) -> None:
    assert load_settings(environ={"OFFICESENSOR_STORE": store}).store == store


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:///data/officesensor.db") == Path("data/officesensor.db")
    assert sqlite_path("sqlite:////var/lib/x.db") == Path("/var/lib/x.db")


def test_http_with_ipv6_host() -> None:
    assert load_settings(environ={"OFFICESENSOR_HTTP": "[::1]:8080"}).http == HttpAddress(
        "::1", 8080
    )


def test_tls_files(tmp_path: Path) -> None:
    ca, cert, key = (_pem(tmp_path, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    settings = load_settings(
        environ={
            "OFFICESENSOR_MQTT_URL": "mqtts://broker:8883",
            "OFFICESENSOR_MQTT_CA_FILE": str(ca),
            "OFFICESENSOR_MQTT_CERT_FILE": str(cert),
            "OFFICESENSOR_MQTT_KEY_FILE": str(key),
        }
    )
    assert (settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file) == (
        ca,
        cert,
        key,
    )


def test_settings_replace() -> None:
    settings = load_settings(environ={})
    assert settings.replace(window=42).window == 42
    assert settings.window == 10


# --------------------------------------------------------------------------- passwords


def test_str_of_mqtt_url_never_shows_the_password() -> None:
    url = parse_mqtt_url("mqtts://alice:hunter2%21@broker:8883")
    assert url.password == "hunter2!"
    assert str(url) == "mqtts://alice@broker:8883"
    assert "hunter2" not in str(url)
    assert "hunter2" not in str(load_settings(environ={"OFFICESENSOR_MQTT_URL": str(url)}).mqtt_url)


def test_repr_of_settings_never_shows_the_password() -> None:
    # Settings end up in debug logs and tracebacks: the password must not come with them.
    settings = load_settings(environ={"OFFICESENSOR_MQTT_URL": "mqtts://alice:hunter2@broker"})
    assert "hunter2" not in repr(settings.mqtt_url)
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("mqtts://alice:hunter2@broker:70000", id="bad-port"),
        pytest.param("mqtts://alice:hunter2@broker:8883/path", id="path"),
        pytest.param("http://alice:hunter2@broker", id="scheme"),
    ],
)
def test_config_error_never_shows_the_password(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OFFICESENSOR_MQTT_URL": raw})
    assert caught.value.setting == "OFFICESENSOR_MQTT_URL"
    assert "hunter2" not in str(caught.value)


# --------------------------------------------------------------------------- bad values

BAD_ENV = [
    ("OFFICESENSOR_MQTT_URL", "http://broker:1883"),
    ("OFFICESENSOR_MQTT_URL", "broker:1883"),
    ("OFFICESENSOR_MQTT_URL", "mqtt://"),
    ("OFFICESENSOR_MQTT_URL", "mqtt://broker:0"),
    ("OFFICESENSOR_MQTT_URL", "mqtt://broker:70000"),
    ("OFFICESENSOR_MQTT_URL", "mqtt://broker:abc"),
    ("OFFICESENSOR_MQTT_URL", "mqtt://broker:1883/office"),
    ("OFFICESENSOR_MQTT_URL", "mqtt://broker:1883?tls=1"),
    ("OFFICESENSOR_HTTP", "127.0.0.1:70000"),
    ("OFFICESENSOR_HTTP", "127.0.0.1:abc"),
    ("OFFICESENSOR_HTTP", "127.0.0.1:-1"),
    ("OFFICESENSOR_HTTP", "8000"),
    ("OFFICESENSOR_HTTP", ":8000"),
    ("OFFICESENSOR_WINDOW", "1"),
    ("OFFICESENSOR_WINDOW", "0"),
    ("OFFICESENSOR_WINDOW", "abc"),
    ("OFFICESENSOR_WINDOW", "true"),
    ("OFFICESENSOR_WINDOW", "10.5"),
    ("OFFICESENSOR_WINDOW", ""),
    ("OFFICESENSOR_WINDOW", "10001"),
    ("OFFICESENSOR_Z", "nan"),
    ("OFFICESENSOR_Z", "inf"),
    ("OFFICESENSOR_Z", "-1"),
    ("OFFICESENSOR_Z", "0"),
    ("OFFICESENSOR_Z", "abc"),
    ("OFFICESENSOR_Z", "1e400"),
    ("OFFICESENSOR_SENSOR_TIMEZONE", "Mars/Olympus_Mons"),
    ("OFFICESENSOR_SENSOR_TIMEZONE", "Europe"),
    ("OFFICESENSOR_SENSOR_TIMEZONE", "../../etc/passwd"),
    ("OFFICESENSOR_SENSOR_TIMEZONE", "/etc/localtime"),
    ("OFFICESENSOR_SENSOR_TIMEZONE", ""),
    ("OFFICESENSOR_TOPIC", "office/#/x"),
    ("OFFICESENSOR_TOPIC", "office/me+trics"),
    ("OFFICESENSOR_TOPIC", "office/metrics#"),
    ("OFFICESENSOR_TOPIC", "office/\x00/x"),
    ("OFFICESENSOR_TOPIC", "o/" * 200),
    ("OFFICESENSOR_STORE", "postgres://db/officesensor"),
    ("OFFICESENSOR_STORE", "data/officesensor.db"),
    ("OFFICESENSOR_STORE", "sqlite://host/officesensor.db"),
    ("OFFICESENSOR_STORE", "sqlite:///"),
    ("OFFICESENSOR_STORE", "dynamodb://?region=us-west-2"),
    ("OFFICESENSOR_STORE", "dynamodb://OfficeSensor?regoin=us-west-2"),
    ("OFFICESENSOR_MQTT_PROTOCOL", "4"),
    ("OFFICESENSOR_MQTT_CLIENT_ID", "has space"),
    ("OFFICESENSOR_MQTT_CLIENT_ID", "x" * 129),
    ("OFFICESENSOR_MQTT_CLIENT_ID", ""),
    ("OFFICESENSOR_LOG_LEVEL", "verbose"),
    ("OFFICESENSOR_INGEST_BATCH_SIZE", "0"),
    ("OFFICESENSOR_INGEST_MAX_PAYLOAD_BYTES", "10"),
    ("OFFICESENSOR_MQTT_CA_FILE", "/nonexistent/ca.pem"),
    ("OFFICESENSOR_MQTT_CERT_FILE", "/nonexistent/cert.pem"),
    ("OFFICESENSOR_MQTT_KEY_FILE", "/nonexistent/key.pem"),
]


@pytest.mark.parametrize(
    ("name", "value"), [pytest.param(n, v, id=f"{n[13:].lower()}={v[:30]!r}") for n, v in BAD_ENV]
)
def test_bad_environment_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={name: value})
    assert caught.value.setting == name
    assert str(caught.value).startswith(f"{name}: ")
    assert caught.value.problem


def test_unknown_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OFFICESENSOR_WINDOWS": "10"})
    assert caught.value.setting == "OFFICESENSOR_WINDOWS"
    assert "unknown" in caught.value.problem


def test_directory_is_not_a_certificate_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OFFICESENSOR_MQTT_CA_FILE": str(tmp_path)})
    assert caught.value.setting == "OFFICESENSOR_MQTT_CA_FILE"


BAD_TOML = [
    pytest.param("window = 1\n", "window", id="window-1"),
    pytest.param('window = "abc"\n', "window", id="window-abc"),
    pytest.param("window = true\n", "window", id="window-bool"),
    pytest.param("window = 2.5\n", "window", id="window-float"),
    pytest.param("window = [10]\n", "window", id="window-list"),
    pytest.param("window = {}\n", "window", id="window-table"),
    pytest.param("z = nan\n", "z", id="z-nan"),
    pytest.param("z = -1\n", "z", id="z-negative"),
    pytest.param("z = inf\n", "z", id="z-inf"),
    pytest.param('z = "high"\n', "z", id="z-text"),
    pytest.param("[mqtt]\nurl = 5\n", "mqtt.url", id="url-number"),
    pytest.param('[mqtt]\nurl = "http://broker"\n', "mqtt.url", id="url-scheme"),
    pytest.param('[mqtt]\nurl = "mqtt://broker:0"\n', "mqtt.url", id="url-port-0"),
    pytest.param('[mqtt]\nprotocol = "3"\n', "mqtt.protocol", id="protocol"),
    pytest.param("[mqtt]\nprotocol = 5\n", "mqtt.protocol", id="protocol-number"),
    pytest.param(
        '[mqtt]\ncert_file = "/nonexistent/cert.pem"\n', "mqtt.cert_file", id="missing-cert"
    ),
    pytest.param('[sensor]\ntimezone = "Nowhere/Land"\n', "sensor.timezone", id="timezone"),
    pytest.param('topic = "office/#/x"\n', "topic", id="topic-hash-not-last"),
    pytest.param('topic = "office/me+trics"\n', "topic", id="topic-plus-in-level"),
    pytest.param('store = "mysql://db"\n', "store", id="store-scheme"),
    pytest.param('http = "localhost"\n', "http", id="http-no-port"),
    pytest.param("[ingest]\nbatch_size = 0\n", "ingest.batch_size", id="batch-size"),
    pytest.param('log_level = "loud"\n', "log_level", id="log-level"),
]


@pytest.mark.parametrize(("text", "key"), BAD_TOML)
def test_bad_toml_value_names_the_key_and_the_file(tmp_path: Path, text: str, key: str) -> None:
    config = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert caught.value.setting == f"{key} in {config}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param("windows = 10\n", "windows", id="top-level"),
        pytest.param('[mqtt]\nhost = "broker"\n', "mqtt.host", id="in-table"),
        pytest.param('mqtt_url = "mqtt://broker"\n', "mqtt_url", id="field-name-not-key"),
        pytest.param('[database]\nurl = "x"\n', "database.url", id="unknown-table"),
        pytest.param('[sensor.location]\nroom = "2.14"\n', "sensor.location.room", id="nested"),
    ],
)
def test_unknown_toml_key_is_named_with_the_file(tmp_path: Path, text: str, key: str) -> None:
    config = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert caught.value.setting == f"{key} in {config}"
    assert "unknown" in caught.value.problem


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"window = \n", id="missing-value"),
        pytest.param(b"[mqtt\nurl = 'x'\n", id="broken-table"),
        pytest.param(b"window = 10\nwindow = 11\n", id="duplicate-key"),
        pytest.param(b"window = 10 # \xff\n", id="not-utf8"),
    ],
)
def test_invalid_toml_names_the_config_flag_and_file(tmp_path: Path, content: bytes) -> None:
    config = tmp_path / "broken.toml"
    config.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert caught.value.setting == "--config"
    assert str(config) in caught.value.problem


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml", environ={})
    assert caught.value.setting == "--config"


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        pytest.param("window", "1", "--window", id="window"),
        pytest.param("window", "abc", "--window", id="window-abc"),
        pytest.param("z", "nan", "--z", id="z"),
        pytest.param("mqtt_url", "http://broker", "--mqtt-url", id="mqtt-url"),
        pytest.param("sensor_timezone", "Nowhere/Land", "--sensor-timezone", id="timezone"),
        pytest.param("http", "127.0.0.1:99999", "--http", id="http"),
        pytest.param("store", "postgres://x", "--store", id="store"),
    ],
)
def test_bad_flag_names_the_flag(field: str, value: str, flag: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, overrides={field: value})
    assert caught.value.setting == flag


def test_flag_error_wins_over_a_good_environment_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OFFICESENSOR_WINDOW": "20"}, overrides={"window": "1"})
    assert caught.value.setting == "--window"


def test_error_shows_the_bad_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OFFICESENSOR_WINDOW": "eleven"})
    assert "'eleven'" in str(caught.value)


# --------------------------------------------------------------------------- TLS combinations


def _sources(tmp_path: Path, where: str, values: dict[str, str]) -> dict[str, Any]:
    """load_settings arguments that set each field in ``values`` from one place."""
    if where == "env":
        return {"environ": {"OFFICESENSOR_" + f.upper(): v for f, v in values.items()}}
    if where == "flag":
        return {"environ": {}, "overrides": values}
    tables: dict[str, list[str]] = {}
    for field, value in values.items():
        table, _, key = field.partition("_")
        tables.setdefault(table, []).append(f"{key} = {value!r}")
    text = "".join(f"[{t}]\n" + "\n".join(lines) + "\n" for t, lines in tables.items())
    return {"config_file": _toml(tmp_path, text), "environ": {}}


def _label(where: str, field: str, config: Path | None) -> str:
    if where == "env":
        return "OFFICESENSOR_" + field.upper()
    if where == "flag":
        return "--" + field.replace("_", "-")
    return f"{field.replace('_', '.', 1)} in {config}"


@pytest.mark.parametrize("where", ["env", "toml", "flag"])
@pytest.mark.parametrize(
    ("given", "missing"),
    [
        pytest.param("mqtt_cert_file", "mqtt_key_file", id="cert-without-key"),
        pytest.param("mqtt_key_file", "mqtt_cert_file", id="key-without-cert"),
    ],
)
def test_certificate_and_key_go_together(
    tmp_path: Path, where: str, given: str, missing: str
) -> None:
    kwargs = _sources(
        tmp_path,
        where,
        {"mqtt_url": "mqtts://broker:8883", given: str(_pem(tmp_path, "half.pem"))},
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    # The message names a setting involved, as written (or as its variable if left unset).
    config = kwargs.get("config_file")
    assert caught.value.setting in {
        _label(where, given, config),
        "OFFICESENSOR_" + missing.upper(),
    }


@pytest.mark.parametrize("where", ["env", "toml", "flag"])
@pytest.mark.parametrize("tls_file", ["mqtt_ca_file", "mqtt_cert_file"])
def test_certificate_files_need_mqtts(tmp_path: Path, where: str, tls_file: str) -> None:
    files = {tls_file: str(_pem(tmp_path, "a.pem"))}
    if tls_file == "mqtt_cert_file":
        files["mqtt_key_file"] = str(_pem(tmp_path, "b.pem"))
    kwargs = _sources(tmp_path, where, {"mqtt_url": "mqtt://broker:1883", **files})
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    config = kwargs.get("config_file")
    assert caught.value.setting in {_label(where, field, config) for field in ("mqtt_url", *files)}


def test_certificate_with_default_mqtt_url_names_the_url_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OFFICESENSOR_MQTT_CA_FILE": str(_pem(tmp_path, "ca.pem"))})
    assert caught.value.setting in {"OFFICESENSOR_MQTT_URL", "OFFICESENSOR_MQTT_CA_FILE"}
    assert "mqtts://" in caught.value.problem


# --------------------------------------------------------------------------- describe


def test_describe_covers_every_setting() -> None:
    rows = describe()
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {key.replace(".", "_") for key, *_ in rows} == fields
    assert len(rows) == len(fields) == len(SPECS)
    assert len({env for _, env, *_ in rows}) == len(rows)
    for key, env, default, help_text in rows:
        assert env == "OFFICESENSOR_" + key.replace(".", "_").upper()
        assert help_text.strip(), key
        assert isinstance(default, str), key
    shown = {key: default for key, _, default, _ in rows}
    assert shown["mqtt.client_id"] == "officesensor-<hostname>"
    assert shown["window"] == "10"
    assert shown["z"] == "2.0"
    assert shown["topic"] == "office/metrics/+"


def test_every_described_default_is_what_load_settings_uses() -> None:
    defaults = load_settings(environ={})
    for key, env, default, _ in describe():
        if "<hostname>" in default:  # mqtt.client_id, sensor.name: shown as a placeholder
            continue
        assert load_settings(environ={env: default}) == defaults, key


def test_z_is_a_float_and_finite() -> None:
    z = load_settings(environ={"OFFICESENSOR_Z": "3"}).z
    assert isinstance(z, float)
    assert math.isfinite(z)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OFFICESENSOR_TOPIC", ""),
        ("OFFICESENSOR_TOPIC", "   "),
        ("OFFICESENSOR_SENSOR_OUTBOX_MAX_AGE", "99999999999999w"),
    ],
)
def test_values_that_would_fail_later_are_refused_at_start_up(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: value})
    assert caught.value.setting == variable
