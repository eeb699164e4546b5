"""Turn one MQTT message into readings, or into a rejection with a reason. Pure: no I/O, no clock.

Accepted topics (the metric is the third level, as the original AWS IoT rule's ``topic(3)``):

- ``<prefix>/<level>/<Metric>`` and ``<prefix>/<level>/<Metric>/<sensor>``: one reading of
  ``Metric`` whose value is the payload field of the same name;
- ``<prefix>/weather``: the original sensor's combined message, one reading per known metric
  present in it (Temperature, Humidity, Pressure).

Accepted payloads: a JSON object with the metric's value, ``ID`` (a non-negative integer:
the original sensor's counter or our epoch milliseconds) and ``Timestamp`` (ISO 8601 with an
offset, or the original's naive ``str(datetime.now())``, read in the sensor's time zone).
An optional ``Sensor`` field names the sensor; readings that name none belong to ``default``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NoReturn

from officesensor.models import (
    DEFAULT_SENSOR,
    METRIC_UNITS,
    Reading,
    Rejection,
    RejectReason,
    SensorStatus,
)

METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
SENSOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NAIVE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?")
_MAX_ID = 2**63 - 1
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

#: Physically plausible values, in the original's units. Anything outside is a broken sensor.
PLAUSIBLE_RANGE: dict[str, tuple[float, float]] = {
    "Temperature": (-60.0, 200.0),  # °F
    "Humidity": (0.0, 100.0),  # %
    "Pressure": (260.0, 1260.0),  # mb
}

#: Bounds for other metrics: wide, but keeps absurd magnitudes out of the statistics.
ANY_METRIC_RANGE = (-1e12, 1e12)


@dataclass(frozen=True, slots=True)
class PayloadRules:
    max_payload_bytes: int = 16_384
    max_future_skew: timedelta = timedelta(hours=1)


DEFAULT_RULES = PayloadRules()


class _Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject(reason: RejectReason, detail: str) -> NoReturn:
    raise _Rejected(reason, detail)


def parse_message(
    topic: str | bytes,
    payload: bytes | bytearray,
    *,
    now: datetime,
    sensor_tz: tzinfo,
    rules: PayloadRules = DEFAULT_RULES,
) -> list[Reading] | Rejection:
    """Parse one message. Returns its readings (never empty), or why it was rejected."""
    try:
        return _parse(topic, payload, now=now, sensor_tz=sensor_tz, rules=rules)
    except _Rejected as exc:
        return Rejection(exc.reason, exc.detail, printable(topic))


def _parse(
    topic: str | bytes,
    payload: bytes | bytearray,
    *,
    now: datetime,
    sensor_tz: tzinfo,
    rules: PayloadRules,
) -> list[Reading]:
    metrics, topic_sensor = _parse_topic(topic)
    if len(payload) > rules.max_payload_bytes:
        _reject(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {rules.max_payload_bytes}")
    document = _decode_json(payload)
    if not isinstance(document, dict):
        _reject(RejectReason.NOT_OBJECT, f"payload is a JSON {type(document).__name__}")
    sensor = _sensor_of(document, topic_sensor)
    reading_id = _id_of(document)
    ts = _timestamp_of(document, now=now, sensor_tz=sensor_tz, rules=rules)
    if metrics is None:  # combined weather message
        present = [m for m in METRIC_UNITS if m in document]
        if not present:
            _reject(RejectReason.NO_METRICS, "no Temperature, Humidity or Pressure field")
        metrics = present
    return [Reading(sensor, m, reading_id, ts, _value_of(document, m)) for m in metrics]


def is_status_topic(topic: bytes) -> bool:
    """``<prefix>/status/<sensor>``: a sensor's status (see ``parse_status``)."""
    # Called for every message: the substring test rejects readings without splitting.
    return b"/status/" in topic and topic.count(b"/") == 2 and topic.split(b"/")[1] == b"status"


def status_filter(metrics_filter: str) -> str:
    """The status topics beside a metrics filter: ``office/metrics/+`` -> ``office/status/+``."""
    return metrics_filter.split("/", 1)[0] + "/status/+"


def parse_status(
    topic: bytes, payload: bytes | bytearray, now: datetime
) -> SensorStatus | Rejection:
    """A status message: topic ``<prefix>/status/<sensor>``, payload
    ``{"Sensor": "<sensor>", "Online": true|false}`` (``Sensor`` optional; if present it must
    name the topic's sensor)."""
    try:
        try:
            sensor = topic.split(b"/")[2].decode("utf-8")
        except (IndexError, UnicodeDecodeError):
            _reject(RejectReason.BAD_TOPIC, "expected <prefix>/status/<sensor>")
        if not SENSOR_NAME.fullmatch(sensor):
            _reject(RejectReason.BAD_SENSOR_NAME, f"sensor {printable(sensor)} is not a name")
        if len(payload) > 1024:
            _reject(RejectReason.TOO_LARGE, f"status of {len(payload)} bytes > 1024")
        document = _decode_json(payload)
        if not isinstance(document, dict):
            _reject(RejectReason.NOT_OBJECT, f"payload is a JSON {type(document).__name__}")
        online = document.get("Online")
        if not isinstance(online, bool):
            _reject(RejectReason.BAD_STATUS, "Online must be true or false")
        if "Sensor" in document and document["Sensor"] != sensor:
            _reject(RejectReason.BAD_SENSOR_NAME, f"topic names {sensor}, payload another")
        return SensorStatus(sensor, online, now)
    except _Rejected as exc:
        return Rejection(exc.reason, exc.detail, printable(topic))


def _parse_topic(topic: str | bytes) -> tuple[list[str] | None, str | None]:
    """Returns ([metric], sensor-or-None) for a metric topic, (None, None) for weather."""
    if isinstance(topic, bytes):
        try:
            topic = topic.decode("utf-8")
        except UnicodeDecodeError:
            _reject(RejectReason.BAD_TOPIC, "topic is not UTF-8")
    if len(topic) > 256:
        _reject(RejectReason.BAD_TOPIC, "topic longer than 256 characters")
    levels = topic.split("/")
    if len(levels) == 2 and levels[1] == "weather":
        return None, None
    if len(levels) not in (3, 4):
        _reject(RejectReason.BAD_TOPIC, "expected <prefix>/<level>/<Metric>[/<sensor>]")
    metric = levels[2]
    if not METRIC_NAME.fullmatch(metric):
        _reject(RejectReason.BAD_METRIC_NAME, f"metric {printable(metric)} is not a plain name")
    sensor = None
    if len(levels) == 4:
        sensor = levels[3]
        if not SENSOR_NAME.fullmatch(sensor):
            _reject(RejectReason.BAD_SENSOR_NAME, f"sensor {printable(sensor)} is not a name")
    return [metric], sensor


def _decode_json(payload: bytes | bytearray) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        _reject(RejectReason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
    try:
        return _DECODER.decode(text)
    except _Rejected:
        raise
    except RecursionError:
        _reject(RejectReason.TOO_DEEP, "JSON nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and int literals over the digit limit
        _reject(RejectReason.NOT_JSON, str(exc)[:120])


def _refuse_constant(name: str) -> NoReturn:
    _reject(RejectReason.NON_FINITE, f"{name} is not a number JSON allows")


def _unique_keys(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            _reject(RejectReason.DUPLICATE_KEY, f"key {printable(key)} appears twice")
        document[key] = value
    return document


def _sensor_of(document: dict[str, Any], topic_sensor: str | None) -> str:
    if "Sensor" not in document:
        return topic_sensor or DEFAULT_SENSOR
    sensor = document["Sensor"]
    if not isinstance(sensor, str) or not SENSOR_NAME.fullmatch(sensor):
        _reject(RejectReason.BAD_SENSOR_NAME, f"Sensor {printable(repr(sensor))} is not a name")
    if topic_sensor is not None and topic_sensor != sensor:
        _reject(RejectReason.BAD_SENSOR_NAME, f"topic names {topic_sensor}, payload {sensor}")
    return sensor


def _id_of(document: dict[str, Any]) -> int:
    if "ID" not in document:
        _reject(RejectReason.MISSING_ID, "no ID field")
    reading_id = document["ID"]
    if isinstance(reading_id, bool) or not isinstance(reading_id, int):
        _reject(RejectReason.BAD_ID, f"ID is a {type(reading_id).__name__}, not an integer")
    if not 0 <= reading_id <= _MAX_ID:
        _reject(RejectReason.BAD_ID, "ID outside 0 .. 2**63-1")
    return reading_id


def _timestamp_of(
    document: dict[str, Any], *, now: datetime, sensor_tz: tzinfo, rules: PayloadRules
) -> datetime:
    if "Timestamp" not in document:
        _reject(RejectReason.MISSING_TIMESTAMP, "no Timestamp field")
    raw = document["Timestamp"]
    if not isinstance(raw, str) or len(raw) > 64:
        _reject(RejectReason.BAD_TIMESTAMP, "Timestamp is not a short string")
    ts = parse_timestamp(raw, sensor_tz)
    if ts is None:
        _reject(RejectReason.BAD_TIMESTAMP, f"cannot read Timestamp {printable(raw)}")
    if ts < _EARLIEST:
        _reject(RejectReason.TIMESTAMP_TOO_OLD, f"{ts.isoformat()} is before 2000 (clock not set?)")
    if ts > now + rules.max_future_skew:
        _reject(RejectReason.TIMESTAMP_IN_FUTURE, f"{ts.isoformat()} is ahead of {now.isoformat()}")
    return ts


def parse_timestamp(raw: str, sensor_tz: tzinfo) -> datetime | None:
    """ISO 8601 with an offset, or a naive local time read in ``sensor_tz``. Returns UTC."""
    raw = raw.strip()
    if not raw.isascii() or not raw.isprintable():  # fromisoformat lets odd separators by
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if ts.tzinfo is None:
        if not _NAIVE_TIMESTAMP.fullmatch(raw):
            return None
        ts = ts.replace(tzinfo=sensor_tz)
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved across midnight by the offset
        return None


def _value_of(document: dict[str, Any], metric: str) -> float:
    if metric not in document:
        _reject(RejectReason.MISSING_VALUE, f"no {metric} field")
    value = document[metric]
    if isinstance(value, bool) or not isinstance(value, int | float):
        _reject(RejectReason.BAD_VALUE_TYPE, f"{metric} is a {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        _reject(RejectReason.NON_FINITE, f"{metric} is too large for a float")
    if not math.isfinite(number):
        _reject(RejectReason.NON_FINITE, f"{metric} is {number}")
    low, high = PLAUSIBLE_RANGE.get(metric, ANY_METRIC_RANGE)
    if not low <= number <= high:
        _reject(RejectReason.OUT_OF_RANGE, f"{metric} {number} outside {low} .. {high}")
    return number


def printable(text: str | bytes | bytearray, limit: int = 80) -> str:
    """A short, log-safe rendering of untrusted text (control characters escaped)."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", "backslashreplace")
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def encode_reading(reading: Reading, local_tz: tzinfo = UTC) -> tuple[str, bytes]:
    """Our sensor's message for a reading: the original topic and fields, ``ID`` in epoch ms
    and an ISO 8601 timestamp with its offset. ``parse_message`` reads it back unchanged."""
    topic = f"office/metrics/{reading.metric}"
    document: dict[str, Any] = {
        reading.metric: reading.value,
        "ID": reading.reading_id,
        "Timestamp": reading.ts.astimezone(local_tz).isoformat(timespec="microseconds"),
    }
    if reading.sensor != DEFAULT_SENSOR:
        document["Sensor"] = reading.sensor
    return topic, json.dumps(document, separators=(",", ":")).encode()


# One decoder for every message: json.loads with hooks would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
