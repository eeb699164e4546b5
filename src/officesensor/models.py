"""Plain value objects shared by every layer. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from officesensor.histogram import HistogramSnapshot

DEFAULT_SENSOR = "default"

#: Units of the metrics the original sensor publishes. Other metrics are shown without a unit.
METRIC_UNITS: dict[str, str] = {"Temperature": "°F", "Humidity": "%", "Pressure": "mb"}


def unit_of(metric: str) -> str:
    return METRIC_UNITS.get(metric, "")


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of one metric by one sensor.

    Its identity is (sensor, metric, ts, reading_id): a broker redelivering the same message
    yields an equal Reading, while a sensor whose ID counter restarted yields a new one.
    """

    sensor: str
    metric: str
    reading_id: int
    ts: datetime  # timezone-aware, UTC
    value: float

    @property
    def ts_us(self) -> int:
        """Reading time as integer microseconds since the Unix epoch."""
        return to_epoch_us(self.ts)


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """A reading the live z-score rule flagged, with the window statistics it was judged by."""

    reading: Reading
    mean: float
    std: float
    z: float


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A (sensor, metric) series with its most recent reading."""

    sensor: str
    metric: str
    count: int
    latest: Reading | None


class RejectReason(StrEnum):
    """Why a message was not stored. The values are stable: they appear in counters and logs."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    DUPLICATE_KEY = "duplicate_key"
    NOT_OBJECT = "not_object"
    BAD_TOPIC = "bad_topic"
    BAD_METRIC_NAME = "bad_metric_name"
    BAD_SENSOR_NAME = "bad_sensor_name"
    MISSING_VALUE = "missing_value"
    BAD_VALUE_TYPE = "bad_value_type"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    MISSING_ID = "missing_id"
    BAD_ID = "bad_id"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    NO_METRICS = "no_metrics"
    METRIC_NOT_ALLOWED = "metric_not_allowed"
    TOO_MANY_SERIES = "too_many_series"
    BAD_STATUS = "bad_status"


@dataclass(frozen=True, slots=True)
class SensorStatus:
    """A sensor's own word on whether it is connected (``<prefix>/status/<sensor>``, retained,
    and its MQTT last will), and when ingest heard it."""

    sensor: str
    online: bool
    since: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    topic: str = ""


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    """A rejected message kept for inspection: where, why, and the start of its payload."""

    received: datetime
    topic: str  # printable rendering (control characters escaped)
    reason: RejectReason
    detail: str
    payload_bytes: int
    payload_preview: str  # the first bytes, decoded with escapes: never raw device text


@dataclass(slots=True)
class WriteResult:
    """What a batch write did: every reading passed in is counted in exactly one field."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    conflicting: list[Reading] = field(default_factory=list)
    new: list[Reading] = field(default_factory=list)  # the ``stored`` ones, in input order


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class IngestSnapshot:
    """Ingest's counters and state at one moment, for /healthz, /metrics and the API."""

    connected: bool
    received: int
    stored: int
    duplicates: int
    conflicts: int
    rejected: dict[str, int]
    backlog: int
    reconnects: int
    anomalies: int
    last_error: str | None
    store_ok: bool


@dataclass(frozen=True, slots=True)
class IngestTelemetry:
    """Ingest's figures for operators only (/metrics), kept out of ``IngestSnapshot`` and so
    out of the public ``/api/ingest`` document."""

    store_write_seconds: HistogramSnapshot  # each committed batch's write_many
    connection_changed: datetime  # when ``IngestSnapshot.connected`` last flipped (or start)
