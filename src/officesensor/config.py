"""One validated settings object: defaults, then the TOML file, then OFFICESENSOR_* variables,
then command-line flags. Every error names the setting and where its bad value came from."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from officesensor.errors import ConfigError

if TYPE_CHECKING:
    from officesensor.alerts.rules import AlertRule

ENV_PREFIX = "OFFICESENSOR_"
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True, slots=True)
class MqttUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    def __str__(self) -> str:  # never shows the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HttpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    mqtt_url: MqttUrl
    mqtt_ca_file: Path | None
    mqtt_cert_file: Path | None
    mqtt_key_file: Path | None
    mqtt_client_id: str
    mqtt_protocol: str
    mqtt_share_group: str
    mqtt_alpn: str
    topic: str
    store: str
    http: HttpAddress
    window: int
    z: float
    anomaly_method: str
    sensor_timezone: str
    ingest_batch_size: int
    ingest_max_payload_bytes: int
    ingest_max_series: int
    ingest_allowed_metrics: tuple[str, ...]
    sensor_outbox: Path
    sensor_outbox_max_messages: int
    sensor_outbox_max_age: timedelta
    sensor_name: str
    sensor_source: str
    sensor_units: str
    sensor_cpu_compensation: float
    sensor_i2c_bus: int
    sensor_i2c_address: int
    sensor_clock_check: str
    log_level: str
    log_format: str
    auth_token: str | None = dataclasses.field(repr=False)
    auth_users_file: Path | None
    auth_behind_proxy: bool
    alerts_rules: tuple[AlertRule, ...]
    alerts_webhook_url: str | None = dataclasses.field(repr=False)
    alerts_webhook_format: str
    alerts_topic_prefix: str
    alerts_state: Path

    @property
    def tz(self) -> tzinfo:
        return resolve_timezone(self.sensor_timezone)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- value parsers
# Each takes the raw value (from TOML: any type; from env or flags: a string) and returns the
# typed value, or raises ValueError with a sentence saying what is wrong.


def parse_mqtt_url(raw: Any) -> MqttUrl:
    parts = urlsplit(_text(raw))
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("must be mqtt[s]://[user[:password]@]host[:port] with nothing after")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("port must be a number from 1 to 65535") from exc
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    tls = parts.scheme == "mqtts"
    return MqttUrl(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def parse_http(raw: Any) -> HttpAddress:
    text = _text(raw)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT, for example 127.0.0.1:8000")
    host = host.strip("[]")
    port = _port(port_text, allow_zero=True)
    return HttpAddress(host, port)


def parse_store(raw: Any) -> str:
    text = _text(raw)
    parts = urlsplit(text)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.lstrip("/"):
            raise ValueError("must be sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return text
    if parts.scheme == "dynamodb":
        if not parts.netloc:
            raise ValueError("must name the table: dynamodb://TABLE?region=...")
        dynamodb_options(text)  # raises ValueError naming a bad parameter
        return text
    raise ValueError("must start with sqlite:/// or dynamodb://")


@dataclass(frozen=True, slots=True)
class DynamoOptions:
    """What a ``dynamodb://TABLE?...`` store URL says (credentials come from AWS's chain)."""

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    retry_mode: str = "adaptive"  # botocore's retry modes: legacy, standard, adaptive
    max_attempts: int = 10
    read_only: bool = False


_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


def dynamodb_options(store_url: str) -> DynamoOptions:
    """Parse a ``dynamodb://`` URL; ValueError says which parameter is wrong."""
    parts = urlsplit(store_url)
    table = unquote(parts.netloc)
    if not _TABLE_NAME.fullmatch(table):
        raise ValueError("table name must be 3 to 255 letters, digits, '_', '.' or '-'")
    query = parse_qs(parts.query, keep_blank_values=True)
    allowed = {"region", "endpoint_url", "retry_mode", "max_attempts", "read_only"}
    unknown = set(query) - allowed
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
    one = {key: values[-1] for key, values in query.items()}
    options = DynamoOptions(table)
    if "region" in one:
        options = dataclasses.replace(options, region=one["region"] or None)
    if "endpoint_url" in one:
        endpoint = one["endpoint_url"]
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError("endpoint_url must be an http:// or https:// URL")
        options = dataclasses.replace(options, endpoint_url=endpoint)
    if "retry_mode" in one:
        if one["retry_mode"] not in ("legacy", "standard", "adaptive"):
            raise ValueError("retry_mode must be legacy, standard or adaptive")
        options = dataclasses.replace(options, retry_mode=one["retry_mode"])
    if "max_attempts" in one:
        attempts = one["max_attempts"]
        if not attempts.isdigit() or not 1 <= int(attempts) <= 100:
            raise ValueError("max_attempts must be a whole number from 1 to 100")
        options = dataclasses.replace(options, max_attempts=int(attempts))
    if "read_only" in one:
        options = dataclasses.replace(options, read_only=parse_bool(one["read_only"] or "true"))
    return options


def sqlite_path(store_url: str) -> Path:
    """The file a ``sqlite:///`` URL names (three slashes: relative, four: absolute)."""
    return Path(urlsplit(store_url).path[1:])


def parse_topic(raw: Any) -> str:
    text = _text(raw)
    if not text:
        raise ValueError("must not be empty")
    if len(text) > 256 or any(ord(c) < 32 for c in text):
        raise ValueError("must be a short MQTT topic filter without control characters")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
            "+" in level and level != "+"
        ):
            raise ValueError("wildcards must fill a whole level, and # only the last one")
    return text


def parse_client_id(raw: Any) -> str:
    text = _text(raw)
    if not 1 <= len(text) <= 128 or not text.isprintable() or " " in text:
        raise ValueError("must be 1 to 128 printable characters without spaces")
    return text


def parse_protocol(raw: Any) -> str:
    text = _text(raw)
    if text not in ("5", "3.1.1"):
        raise ValueError("must be 5 or 3.1.1")
    return text


def parse_share_group(raw: Any) -> str:
    text = _text(raw)
    if text and (not text.isprintable() or any(c in text for c in "/+# ") or len(text) > 64):
        raise ValueError("must be a short name without '/', '+', '#' or spaces (or empty)")
    return text


def parse_alpn(raw: Any) -> str:
    text = _text(raw)
    if not text or len(text) > 64 or not text.isprintable() or " " in text:
        raise ValueError("must be auto, none or an ALPN protocol name such as x-amzn-mqtt-ca")
    return text


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _text(raw).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def parse_secret(raw: Any) -> str | None:
    """A secret (token, URL with a key in it): empty means none; never echoed in errors."""
    text = _text(raw)
    if text and (len(text) < 16 or not text.isprintable()):
        raise ValueError("must be at least 16 printable characters")
    return text or None


def parse_webhook_url(raw: Any) -> str | None:
    text = _text(raw)
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return text


def parse_topic_prefix(raw: Any) -> str:
    text = _text(raw).rstrip("/")
    if not text or any(c in text for c in "+#") or not text.isprintable():
        raise ValueError("must be a topic without wildcards, such as office/alerts")
    return text


def parse_alert_rules(raw: Any) -> tuple[AlertRule, ...]:
    """``[[alerts.rules]]`` tables in TOML, or the same list as JSON in the variable."""
    from officesensor.alerts.rules import parse_rules

    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return ()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON list of rule tables ({exc.msg})") from None
    return parse_rules(raw)


def parse_file(raw: Any) -> Path | None:
    text = _text(raw)
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"no readable file at {path}")
    return path


def parse_timezone(raw: Any) -> str:
    text = _text(raw)
    resolve_timezone(text)
    return text


def resolve_timezone(name: str) -> tzinfo:
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name or 'local')") from exc


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '12h', '30d', '2w' -> timedelta. Raises ValueError with a hint."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or not 0 < int(number) * units[unit] < 2**40:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 12h, 30d or 2w")
    return timedelta(seconds=int(number) * units[unit])


def parse_duration_setting(raw: Any) -> timedelta:
    return parse_duration(_text(raw))


def parse_path(raw: Any) -> Path:
    text = _text(raw)
    if not text:
        raise ValueError("must be a file path")
    return Path(text).expanduser()


def parse_metric_list(raw: Any) -> tuple[str, ...]:
    from officesensor.payload import METRIC_NAME

    items = raw if isinstance(raw, list) else _text(raw).split(",")
    names = tuple(_text(item) for item in items if not isinstance(item, str) or item.strip())
    for name in names:
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a metric name")
    return names


def parse_sensor_name(raw: Any) -> str:
    from officesensor.payload import SENSOR_NAME

    text = _text(raw)
    if not SENSOR_NAME.fullmatch(text):
        raise ValueError(
            "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return text


def default_sensor_name(hostname: str) -> str:
    """The host name's first label made into a valid sensor name ('sensor' if nothing is left)."""
    label = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname.split(".")[0]).lstrip("_.-")[:64]
    return label or "sensor"


def one_of(*choices: str, fold: bool = False) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = _text(raw).upper() if fold else _text(raw)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def parse_i2c_address(raw: Any) -> int:
    """A 7-bit I2C address written in hex (0x76) or decimal (118)."""
    if isinstance(raw, bool):
        raise ValueError("must be an I2C address such as 0x76")
    try:
        value = raw if isinstance(raw, int) else int(_text(raw), 0)
    except ValueError as exc:
        raise ValueError("must be an I2C address such as 0x76") from exc
    if not 0x03 <= value <= 0x77:
        raise ValueError("must be a 7-bit I2C address from 0x03 to 0x77")
    return value


def parse_log_level(raw: Any) -> str:
    text = _text(raw).upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return text


def int_between(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError("must be a whole number")
        try:
            value = int(raw) if isinstance(raw, int) else int(_text(raw), 10)
        except ValueError as exc:
            raise ValueError("must be a whole number") from exc
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def float_between(low: float, high: float) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError("must be a number")
        try:
            value = float(raw) if isinstance(raw, int | float) else float(_text(raw))
        except ValueError as exc:
            raise ValueError("must be a number") from exc
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, not {type(raw).__name__}")
    return raw.strip()


def _port(text: str, *, allow_zero: bool = False) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise ValueError("port must be a number from 1 to 65535")
    return int(text)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Spec:
    key: str  # TOML key, dotted for tables: "mqtt.url"
    parse: Callable[[Any], Any]
    default: Any  # raw default, parsed like any other value
    help: str

    @property
    def field(self) -> str:
        return self.key.replace(".", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()


SPECS: tuple[Spec, ...] = (
    Spec(
        "mqtt.url",
        parse_mqtt_url,
        "mqtt://127.0.0.1:1883",
        "Broker to subscribe to: mqtt://host:1883 or mqtts://host:8883 (TLS, verified).",
    ),
    Spec(
        "mqtt.ca_file",
        parse_file,
        "",
        "CA certificate(s) that sign the broker's certificate (default: the system's).",
    ),
    Spec("mqtt.cert_file", parse_file, "", "Client certificate for mutual TLS (AWS IoT Core)."),
    Spec("mqtt.key_file", parse_file, "", "Private key of the client certificate."),
    Spec(
        "mqtt.client_id",
        parse_client_id,
        f"officesensor-{socket.gethostname()}"[:128],
        "Stable MQTT client id; the broker keeps this client's session under it.",
    ),
    Spec("mqtt.protocol", parse_protocol, "5", "MQTT protocol version: 5 or 3.1.1."),
    Spec(
        "mqtt.share_group",
        parse_share_group,
        "",
        "Share ingest among instances: subscribe as $share/<group>/<topic> (empty: don't).",
    ),
    Spec(
        "mqtt.alpn",
        parse_alpn,
        "auto",
        "TLS ALPN protocol: auto (x-amzn-mqtt-ca for mqtts on port 443, for AWS IoT Core), "
        "none, or a name.",
    ),
    Spec("topic", parse_topic, "office/metrics/+", "Topic filter ingest subscribes to."),
    Spec(
        "store",
        parse_store,
        "sqlite:///data/officesensor.db",
        "Where readings live: sqlite:///path.db or dynamodb://TABLE?region=...",
    ),
    Spec("http", parse_http, "127.0.0.1:8000", "Address the web dashboard listens on."),
    Spec("window", int_between(2, 10_000), "10", "Readings in the rolling window (W)."),
    Spec("z", float_between(0.1, 100.0), "2.0", "Anomaly when |z| is at least this (Z)."),
    Spec(
        "anomaly.method",
        one_of("zscore", "zscore-previous", "mad"),
        "zscore",
        "How z is computed (docs/anomalies.md): zscore (window includes the reading), "
        "zscore-previous or mad (robust; both against the W readings before it).",
    ),
    Spec(
        "sensor.timezone",
        parse_timezone,
        "local",
        "Time zone of sensors that send naive timestamps (the original sensor does).",
    ),
    Spec(
        "ingest.batch_size",
        int_between(1, 100_000),
        "500",
        "Most readings committed in one transaction.",
    ),
    Spec(
        "ingest.max_payload_bytes",
        int_between(64, 1_048_576),
        "16384",
        "Larger messages are rejected as too_large.",
    ),
    Spec(
        "ingest.max_series",
        int_between(1, 1_000_000),
        "200",
        "Most (sensor, metric) series; readings that would start another are rejected.",
    ),
    Spec(
        "ingest.allowed_metrics",
        parse_metric_list,
        "",
        "Comma-separated metric names to accept (empty: any metric).",
    ),
    Spec(
        "sensor.outbox",
        parse_path,
        "data/sensor-outbox.db",
        "SQLite file where the sensor keeps readings until the broker has them.",
    ),
    Spec(
        "sensor.outbox_max_messages",
        int_between(1, 100_000_000),
        "1000000",
        "Most messages the outbox holds; the oldest are dropped (and counted) beyond it.",
    ),
    Spec(
        "sensor.outbox_max_age",
        parse_duration_setting,
        "7d",
        "Messages older than this are dropped from the outbox (and counted).",
    ),
    Spec(
        "sensor.name",
        parse_sensor_name,
        default_sensor_name(socket.gethostname()),
        "This sensor's name, sent in each reading's Sensor field and its status topic.",
    ),
    Spec(
        "sensor.source",
        one_of("simulated", "sensehat", "bme280"),
        "simulated",
        "Where the sensor's readings come from: simulated, sensehat or bme280.",
    ),
    Spec(
        "sensor.units",
        one_of("F", "C", fold=True),
        "F",
        "Temperature unit of the sensor's own log lines (F or C); the wire is always °F.",
    ),
    Spec(
        "sensor.cpu_compensation",
        float_between(0.0, 100.0),
        "0",
        "Sense HAT CPU-heat factor: t - (t_cpu - t) / factor (0: off; calibrate it).",
    ),
    Spec("sensor.i2c_bus", int_between(0, 255), "1", "I2C bus of the BME280 (/dev/i2c-N)."),
    Spec(
        "sensor.i2c_address",
        parse_i2c_address,
        "0x76",
        "I2C address of the BME280: 0x76 (SDO to ground) or 0x77.",
    ),
    Spec(
        "sensor.clock_check",
        one_of("auto", "floor", "off"),
        "auto",
        "Wait for a synchronised clock before stamping readings: auto (NTP, else floor), "
        "floor or off.",
    ),
    Spec("log_level", parse_log_level, "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Spec("log_format", one_of("text", "json"), "text", "Log lines as text or JSON objects."),
    Spec(
        "auth.token",
        parse_secret,
        "",
        "Bearer token that grants access (at least 16 characters; prefer the variable).",
    ),
    Spec(
        "auth.users_file",
        parse_file,
        "",
        "File of viewers with hashed passwords (officesensor auth add-user writes it).",
    ),
    Spec(
        "auth.behind_proxy",
        parse_bool,
        "false",
        "true when an authenticating reverse proxy guards a non-loopback http address.",
    ),
    Spec(
        "alerts.rules",
        parse_alert_rules,
        "",
        "Alert rules: [[alerts.rules]] tables in TOML, a JSON list in the variable "
        "(docs/alerts.md).",
    ),
    Spec(
        "alerts.webhook_url",
        parse_webhook_url,
        "",
        "Where alerts are POSTed as JSON (empty: no webhook).",
    ),
    Spec(
        "alerts.webhook_format",
        one_of("json", "slack"),
        "json",
        "Webhook body: json (the alert) or slack (an incoming-webhook message).",
    ),
    Spec(
        "alerts.topic_prefix",
        parse_topic_prefix,
        "office/alerts",
        "Alerts are published on <prefix>/<sensor>/<metric>.",
    ),
    Spec(
        "alerts.state",
        parse_path,
        "data/alerts.db",
        "SQLite file keeping alert state and history across restarts.",
    ),
)
SPEC_BY_FIELD = {spec.field: spec for spec in SPECS}


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings. ``overrides`` maps field names to raw values (from CLI flags)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {s.field: (s.default, "default") for s in SPECS}
    if config_file is not None:
        for field, value in _read_toml(config_file).items():
            raw[field] = (value, f"{SPEC_BY_FIELD[field].key} in {config_file}")
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field not in SPEC_BY_FIELD:
            raise ConfigError(name, "unknown setting (see docs/configuration.md)")
        raw[field] = (value, name)
    for field, value in (overrides or {}).items():
        if value is not None:
            raw[field] = (value, "--" + field.replace("_", "-"))
    values: dict[str, Any] = {}
    labels = {
        f: source if source != "default" else SPEC_BY_FIELD[f].env for f, (_, source) in raw.items()
    }
    for spec in SPECS:
        value = raw[spec.field][0]
        try:
            values[spec.field] = spec.parse(value)
        except ValueError as exc:
            raise ConfigError(
                labels[spec.field], f"{exc} (got {_shown(value, spec.field)})"
            ) from None
    _check_tls_files(values, labels)
    return Settings(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}

    def walk(table: dict[str, Any], prefix: str) -> None:
        for key, value in table.items():
            dotted = f"{prefix}{key}"
            if (spec := SPEC_BY_FIELD.get(dotted.replace(".", "_"))) and spec.key == dotted:
                flat[spec.field] = value  # a table here is a wrong type, found when parsed
            elif isinstance(value, dict):
                walk(value, dotted + ".")
            else:
                raise ConfigError(f"{dotted} in {path}", "unknown setting")

    walk(document, "")
    return flat


def _check_tls_files(values: dict[str, Any], labels: dict[str, str]) -> None:
    """Settings that only make sense together; errors name them as the user wrote them."""
    cert, key = values["mqtt_cert_file"], values["mqtt_key_file"]
    if (cert is None) != (key is None):
        given = "mqtt_cert_file" if key is None else "mqtt_key_file"
        raise ConfigError(labels[given], "a client certificate and its key go together")
    tls_only = ("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
    if not values["mqtt_url"].tls and any(values[f] is not None for f in tls_only):
        raise ConfigError(labels["mqtt_url"], "certificate files need an mqtts:// URL")


#: Settings whose values are secrets: errors name them but never show the value.
SECRET_FIELDS = frozenset({"auth_token", "alerts_webhook_url"})


def _shown(value: Any, field: str = "") -> str:
    """The bad value for an error message: short, and never with a password in it."""
    if field in SECRET_FIELDS:
        return "a value that is not shown"
    text = _URL_PASSWORD.sub(r"\1***@", repr(value))
    return text if len(text) <= 60 else text[:59] + "…"


def describe() -> list[tuple[str, str, str, str]]:
    """(TOML key, variable, default, help) per setting: the source of docs/configuration.md."""
    shown = {"mqtt.client_id": "officesensor-<hostname>", "sensor.name": "<hostname>"}
    return [(s.key, s.env, shown.get(s.key, str(s.default)), s.help) for s in SPECS]


def markdown_table() -> str:
    """The settings as a Markdown table; README.md and docs/configuration.md embed it and
    tests/unit/test_docs.py fails when they drift apart from this object."""
    lines = ["| TOML key | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for key, env, default, help_text in describe():
        shown = f"`{default}`" if default else "(none)"
        meaning = help_text.replace("|", "\\|")
        lines.append(f"| `{key}` | `{env}` | {shown} | {meaning} |")
    return "\n".join(lines)
