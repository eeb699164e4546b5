"""payload.parse_message: every message the original sensor sends is accepted, ours too, and
every kind of bad input is rejected with its own reason (never an exception)."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from officesensor.models import Reading, Rejection, RejectReason
from officesensor.payload import PayloadRules, encode_reading, parse_message

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
TEMP_TOPIC = "office/metrics/Temperature"
ORIGINAL_TS = "2018-09-05 10:11:12.123456"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _parse(
    topic: str | bytes, payload: bytes, tz: tzinfo = UTC, rules: PayloadRules | None = None
) -> list[Reading] | Rejection:
    if rules is None:
        return parse_message(topic, payload, now=NOW, sensor_tz=tz)
    return parse_message(topic, payload, now=NOW, sensor_tz=tz, rules=rules)


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


# --------------------------------------------------------------------------- accepted

ACCEPTED = [
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 72.51, "ID": 42, "Timestamp": "2018-09-05 10:11:12.123456"}',
        UTC,
        [Reading("default", "Temperature", 42, _utc(2018, 9, 5, 10, 11, 12, 123456), 72.51)],
        id="original-temperature",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 68.0, "ID": 0, "Timestamp": "2018-09-05 10:11:12.123456"}',
        UTC,
        [Reading("default", "Temperature", 0, _utc(2018, 9, 5, 10, 11, 12, 123456), 68.0)],
        id="original-counter-id-zero",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70, "ID": 7, "Timestamp": "2018-09-05 10:11:12"}',
        UTC,
        [Reading("default", "Temperature", 7, _utc(2018, 9, 5, 10, 11, 12), 70.0)],
        id="original-timestamp-without-microseconds",
    ),
    pytest.param(
        "office/metrics/Humidity",
        b'{"Humidity": 41.25, "ID": 3, "Timestamp": "2018-09-05 10:11:12.5"}',
        UTC,
        [Reading("default", "Humidity", 3, _utc(2018, 9, 5, 10, 11, 12, 500000), 41.25)],
        id="original-humidity",
    ),
    pytest.param(
        "office/metrics/Pressure",
        b'{"Pressure": 1013.25, "ID": 4, "Timestamp": "2018-09-05 10:11:12.000001"}',
        UTC,
        [Reading("default", "Pressure", 4, _utc(2018, 9, 5, 10, 11, 12, 1), 1013.25)],
        id="original-pressure",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 72.51, "ID": 42, "Timestamp": "2018-09-05 10:11:12.123456"}',
        BERLIN,  # CEST, UTC+2
        [Reading("default", "Temperature", 42, _utc(2018, 9, 5, 8, 11, 12, 123456), 72.51)],
        id="original-naive-in-berlin-summer",
    ),
    pytest.param(
        "office/metrics/Pressure",
        b'{"Pressure": 990.5, "ID": 9, "Timestamp": "2019-01-15 00:30:00"}',
        BERLIN,  # CET, UTC+1: crosses midnight backwards
        [Reading("default", "Pressure", 9, _utc(2019, 1, 14, 23, 30, 0), 990.5)],
        id="original-naive-in-berlin-winter",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70.5, "ID": 1, "Timestamp": "2018-09-05T10:11:12.25"}',
        timezone(timedelta(hours=-7)),
        [Reading("default", "Temperature", 1, _utc(2018, 9, 5, 17, 11, 12, 250000), 70.5)],
        id="naive-with-T-in-fixed-offset-zone",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 71.5, "ID": 1717235940123, '
        b'"Timestamp": "2024-06-01T11:59:00.123456+02:00"}',
        BERLIN,  # ignored: the timestamp has its own offset
        [
            Reading(
                "default", "Temperature", 1717235940123, _utc(2024, 6, 1, 9, 59, 0, 123456), 71.5
            )
        ],
        id="ours-epoch-ms-id-iso-offset",
    ),
    pytest.param(
        "office/metrics/Humidity",
        b'{"Humidity": 35.0, "ID": 1717243140000, "Timestamp": "2024-06-01T11:59:00Z"}',
        BERLIN,
        [Reading("default", "Humidity", 1717243140000, _utc(2024, 6, 1, 11, 59, 0), 35.0)],
        id="ours-iso-z",
    ),
    pytest.param(
        "office/metrics/Temperature/pi-1",
        b'{"Temperature": 70.25, "ID": 5, "Timestamp": "2018-09-05 10:11:12"}',
        UTC,
        [Reading("pi-1", "Temperature", 5, _utc(2018, 9, 5, 10, 11, 12), 70.25)],
        id="sensor-in-fourth-topic-level",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70.25, "ID": 5, "Timestamp": "2018-09-05 10:11:12", "Sensor": "lab.2"}',
        UTC,
        [Reading("lab.2", "Temperature", 5, _utc(2018, 9, 5, 10, 11, 12), 70.25)],
        id="sensor-in-payload",
    ),
    pytest.param(
        "office/metrics/Temperature/lab_3",
        b'{"Temperature": 70.25, "ID": 5, "Timestamp": "2018-09-05 10:11:12", "Sensor": "lab_3"}',
        UTC,
        [Reading("lab_3", "Temperature", 5, _utc(2018, 9, 5, 10, 11, 12), 70.25)],
        id="sensor-in-topic-and-payload-agree",
    ),
    pytest.param(
        b"office/metrics/Temperature",
        b'{"Temperature": 72.51, "ID": 42, "Timestamp": "2018-09-05 10:11:12.123456"}',
        UTC,
        [Reading("default", "Temperature", 42, _utc(2018, 9, 5, 10, 11, 12, 123456), 72.51)],
        id="topic-as-bytes",
    ),
    pytest.param(
        "office/metrics/CO2",
        b'{"CO2": 5400.5, "ID": 1, "Timestamp": "2018-09-05 10:11:12"}',
        UTC,
        [Reading("default", "CO2", 1, _utc(2018, 9, 5, 10, 11, 12), 5400.5)],
        id="metric-without-plausible-range",
    ),
    pytest.param(
        "office/metrics/Humidity",
        b'{"Humidity": 100, "ID": 1, "Timestamp": "2018-09-05 10:11:12"}',
        UTC,
        [Reading("default", "Humidity", 1, _utc(2018, 9, 5, 10, 11, 12), 100.0)],
        id="humidity-at-upper-bound",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70.0, "ID": 9223372036854775807, "Timestamp": "2018-09-05 10:11:12"}',
        UTC,
        [Reading("default", "Temperature", 2**63 - 1, _utc(2018, 9, 5, 10, 11, 12), 70.0)],
        id="largest-id",
    ),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70.0, "ID": 1, "Timestamp": "2024-06-01T12:59:00+00:00"}',
        UTC,
        [Reading("default", "Temperature", 1, _utc(2024, 6, 1, 12, 59, 0), 70.0)],
        id="timestamp-59-minutes-ahead-is-clock-skew",
    ),
]


@pytest.mark.parametrize(("topic", "payload", "tz", "expected"), ACCEPTED)
def test_accepts(topic: str | bytes, payload: bytes, tz: tzinfo, expected: list[Reading]) -> None:
    result = _parse(topic, payload, tz)
    assert result == expected
    assert isinstance(result, list)
    for reading in result:
        assert reading.ts.utcoffset() == timedelta(0)
        assert type(reading.value) is float


WEATHER_ACCEPTED = [
    pytest.param(
        b'{"ID": 12, "Temperature": 72.5, "Humidity": 40.25, "Pressure": 1012.5, '
        b'"Timestamp": "2018-09-05 10:11:12.123456"}',
        UTC,
        {
            Reading("default", "Temperature", 12, _utc(2018, 9, 5, 10, 11, 12, 123456), 72.5),
            Reading("default", "Humidity", 12, _utc(2018, 9, 5, 10, 11, 12, 123456), 40.25),
            Reading("default", "Pressure", 12, _utc(2018, 9, 5, 10, 11, 12, 123456), 1012.5),
        },
        id="original-weather",
    ),
    pytest.param(
        b'{"ID": 0, "Temperature": 72.5, "Humidity": 40.25, "Pressure": 1012.5, '
        b'"Timestamp": "2018-12-24 18:00:00"}',
        BERLIN,
        {
            Reading("default", "Temperature", 0, _utc(2018, 12, 24, 17, 0, 0), 72.5),
            Reading("default", "Humidity", 0, _utc(2018, 12, 24, 17, 0, 0), 40.25),
            Reading("default", "Pressure", 0, _utc(2018, 12, 24, 17, 0, 0), 1012.5),
        },
        id="original-weather-berlin",
    ),
    pytest.param(
        b'{"ID": 3, "Humidity": 40.25, "Timestamp": "2018-09-05 10:11:12", "Sensor": "pi"}',
        UTC,
        {Reading("pi", "Humidity", 3, _utc(2018, 9, 5, 10, 11, 12), 40.25)},
        id="weather-with-one-metric-and-sensor",
    ),
]


@pytest.mark.parametrize(("payload", "tz", "expected"), WEATHER_ACCEPTED)
def test_accepts_weather(payload: bytes, tz: tzinfo, expected: set[Reading]) -> None:
    result = _parse("office/weather", payload, tz)
    assert isinstance(result, list)
    assert len(result) == len(expected)
    assert set(result) == expected


ROUND_TRIP = [
    pytest.param(
        Reading("default", "Temperature", 1717243140123, _utc(2024, 6, 1, 11, 59, 0, 123456), 71.3),
        UTC,
        id="default-sensor-utc",
    ),
    pytest.param(
        Reading("pi-7", "Pressure", 0, _utc(2018, 9, 5, 10, 11, 12), 1013.0000000000001),
        BERLIN,
        id="named-sensor-berlin",
    ),
    pytest.param(
        Reading("x", "Humidity", 2**63 - 1, _utc(2024, 1, 1, 0, 0, 0, 1), 0.1 + 0.2),
        timezone(timedelta(hours=5, minutes=45)),
        id="odd-offset",
    ),
]


@pytest.mark.parametrize(("reading", "local_tz"), ROUND_TRIP)
def test_encode_reading_round_trips(reading: Reading, local_tz: tzinfo) -> None:
    topic, payload = encode_reading(reading, local_tz)
    assert topic == f"office/metrics/{reading.metric}"
    document = json.loads(payload)
    assert document["ID"] == reading.reading_id
    # Decoded in a zone that differs from the encoder's: the offset in the payload wins.
    assert _parse(topic, payload, timezone(timedelta(hours=-3))) == [reading]


@settings(max_examples=150, deadline=None)
@given(
    sensor=st.one_of(
        st.just("default"), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
    ),
    metric=st.sampled_from(["Temperature", "Humidity", "Pressure", "CO2", "lux_1"]),
    reading_id=st.integers(0, 2**63 - 1),
    ts=st.datetimes(
        min_value=datetime(2000, 1, 1, 1),
        max_value=datetime(2024, 6, 1, 12),
        timezones=st.just(UTC),
    ),
    fraction=st.floats(0.0, 1.0),
    offset_min=st.integers(-14 * 60, 14 * 60),
)
def test_encode_reading_round_trips_property(
    sensor: str,
    metric: str,
    reading_id: int,
    ts: datetime,
    fraction: float,
    offset_min: int,
) -> None:
    low, high = {"Temperature": (-60.0, 200.0), "Humidity": (0.0, 100.0)}.get(
        metric, (260.0, 1260.0)
    )
    reading = Reading(sensor, metric, reading_id, ts, low + (high - low) * fraction)
    topic, payload = encode_reading(reading, timezone(timedelta(minutes=offset_min)))
    assert _parse(topic, payload) == [reading]


# --------------------------------------------------------------------------- rejected

GOOD_TS = '"Timestamp": "2018-09-05 10:11:12"'


def _temp(body: str) -> bytes:
    """A Temperature payload with the given fields (JSON text without braces)."""
    return ("{" + body + "}").encode()


REJECTED = [
    # --- size, encoding, JSON syntax
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70, ' + b" " * 20_000 + b'"ID": 1}',
        RejectReason.TOO_LARGE,
        id="over-size-cap",
    ),
    pytest.param(TEMP_TOPIC, b"[" * 100_000, RejectReason.TOO_LARGE, id="deep-nesting-over-cap"),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70, "ID": 1, "Timestamp": "\xff\xfe"}',
        RejectReason.NOT_UTF8,
        id="non-utf8",
    ),
    pytest.param(TEMP_TOPIC, b"\xc3\x28", RejectReason.NOT_UTF8, id="invalid-utf8-sequence"),
    pytest.param(TEMP_TOPIC, b"Temperature=70", RejectReason.NOT_JSON, id="not-json"),
    pytest.param(TEMP_TOPIC, b"", RejectReason.NOT_JSON, id="empty"),
    pytest.param(
        TEMP_TOPIC,
        b'{"Temperature": 70, "ID": 1, "Timest',
        RejectReason.NOT_JSON,
        id="truncated-json",
    ),
    pytest.param(
        TEMP_TOPIC, b'{"Temperature": 70}{"ID": 1}', RejectReason.NOT_JSON, id="two-documents"
    ),
    pytest.param(TEMP_TOPIC, b"[" * 10_000, RejectReason.TOO_DEEP, id="deep-nesting-under-cap"),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": NaN, "ID": 1, ' + GOOD_TS),
        RejectReason.NON_FINITE,
        id="nan",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": Infinity, "ID": 1, ' + GOOD_TS),
        RejectReason.NON_FINITE,
        id="infinity",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": -Infinity, "ID": 1, ' + GOOD_TS),
        RejectReason.NON_FINITE,
        id="minus-infinity",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 1e999, "ID": 1, ' + GOOD_TS),
        RejectReason.NON_FINITE,
        id="float-overflow-1e999",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": ' + "9" * 400 + ', "ID": 1, ' + GOOD_TS),
        RejectReason.NON_FINITE,
        id="huge-int-value",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": ' + "9" * 5000 + ', "ID": 1, ' + GOOD_TS),
        RejectReason.NOT_JSON,
        id="int-literal-over-digit-limit",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "Temperature": 71, "ID": 1, ' + GOOD_TS),
        RejectReason.DUPLICATE_KEY,
        id="duplicate-key",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "ID": 2, ' + GOOD_TS),
        RejectReason.DUPLICATE_KEY,
        id="duplicate-id",
    ),
    # --- top level
    pytest.param(
        TEMP_TOPIC, b'[70, 1, "2018-09-05 10:11:12"]', RejectReason.NOT_OBJECT, id="top-level-array"
    ),
    pytest.param(TEMP_TOPIC, b'"72.5"', RejectReason.NOT_OBJECT, id="top-level-string"),
    pytest.param(TEMP_TOPIC, b"72.5", RejectReason.NOT_OBJECT, id="top-level-number"),
    pytest.param(TEMP_TOPIC, b"null", RejectReason.NOT_OBJECT, id="top-level-null"),
    pytest.param(TEMP_TOPIC, b"true", RejectReason.NOT_OBJECT, id="top-level-bool"),
    # --- value
    pytest.param(
        TEMP_TOPIC, _temp('"ID": 1, ' + GOOD_TS), RejectReason.MISSING_VALUE, id="missing-value"
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Humidity": 40, "ID": 1, ' + GOOD_TS),
        RejectReason.MISSING_VALUE,
        id="value-of-another-metric",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": "72.5", "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_VALUE_TYPE,
        id="value-string",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": true, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_VALUE_TYPE,
        id="value-bool",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": null, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_VALUE_TYPE,
        id="value-null",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": [72.5], "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_VALUE_TYPE,
        id="value-list",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": {"v": 72.5}, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_VALUE_TYPE,
        id="value-object",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 200.01, "ID": 1, ' + GOOD_TS),
        RejectReason.OUT_OF_RANGE,
        id="temperature-too-high",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": -60.5, "ID": 1, ' + GOOD_TS),
        RejectReason.OUT_OF_RANGE,
        id="temperature-too-low",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 1e300, "ID": 1, ' + GOOD_TS),
        RejectReason.OUT_OF_RANGE,
        id="temperature-huge-finite",
    ),
    pytest.param(
        "office/metrics/Humidity",
        b'{"Humidity": -0.1, "ID": 1, ' + GOOD_TS.encode() + b"}",
        RejectReason.OUT_OF_RANGE,
        id="humidity-negative",
    ),
    pytest.param(
        "office/metrics/Humidity",
        b'{"Humidity": 100.5, "ID": 1, ' + GOOD_TS.encode() + b"}",
        RejectReason.OUT_OF_RANGE,
        id="humidity-over-100",
    ),
    pytest.param(
        "office/metrics/Pressure",
        b'{"Pressure": 0, "ID": 1, ' + GOOD_TS.encode() + b"}",
        RejectReason.OUT_OF_RANGE,
        id="pressure-zero",
    ),
    pytest.param(
        "office/metrics/Pressure",
        b'{"Pressure": 1300, "ID": 1, ' + GOOD_TS.encode() + b"}",
        RejectReason.OUT_OF_RANGE,
        id="pressure-too-high",
    ),
    # --- ID
    pytest.param(
        TEMP_TOPIC, _temp('"Temperature": 70, ' + GOOD_TS), RejectReason.MISSING_ID, id="missing-id"
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1.0, ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-float",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": "42", ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-string",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": true, ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-bool",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": null, ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-null",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": -1, ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-negative",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 9223372036854775808, ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-2-to-63",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": ' + "9" * 400 + ", " + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-huge",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1e999, ' + GOOD_TS),
        RejectReason.BAD_ID,
        id="id-1e999",
    ),
    # --- Timestamp
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1'),
        RejectReason.MISSING_TIMESTAMP,
        id="missing-timestamp",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": 1536142272'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-number",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": null'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-null",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": ["2018-09-05"]'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-list",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "yesterday"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-unparseable",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-date-only",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-02-30 10:11:12"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-impossible-date",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05 10:11"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-naive-without-seconds",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "' + "2" * 65 + '"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-too-long",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05\\u000010:11:12"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-naive-nul-separator",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05\\u000010:11:12Z"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-aware-nul-separator",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05\\u001b10:11:12+02:00"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-aware-escape-separator",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05 10:11:12\\u0000"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-trailing-nul",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05T10:11:12Z\\u0000"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-aware-trailing-nul",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2018-09-05 10:11:12\\u00e9"'),
        RejectReason.BAD_TIMESTAMP,
        id="timestamp-non-ascii",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2024-06-01T13:01:00+00:00"'),
        RejectReason.TIMESTAMP_IN_FUTURE,
        id="timestamp-61-minutes-ahead",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "2038-01-19 03:14:08"'),
        RejectReason.TIMESTAMP_IN_FUTURE,
        id="timestamp-far-future",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "1970-01-01 00:00:05"'),
        RejectReason.TIMESTAMP_TOO_OLD,
        id="timestamp-1970",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Timestamp": "1999-12-31T23:59:59Z"'),
        RejectReason.TIMESTAMP_TOO_OLD,
        id="timestamp-just-before-2000",
    ),
    # --- topic
    pytest.param(
        "office/metrics/<script>",
        _temp('"<script>": 1, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_METRIC_NAME,
        id="topic-markup",
    ),
    pytest.param(
        "office/metrics/Temperature\u202e",
        _temp('"Temperature": 1, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_METRIC_NAME,
        id="topic-bidi-override",
    ),
    pytest.param(
        "office/metrics/",
        _temp('"Temperature": 1, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_METRIC_NAME,
        id="topic-empty-metric",
    ),
    pytest.param(
        "office/metrics/1Temperature",
        _temp('"1Temperature": 1, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_METRIC_NAME,
        id="topic-metric-starts-with-digit",
    ),
    pytest.param(
        "office/metrics/" + "T" * 33,
        _temp('"ID": 1, ' + GOOD_TS),
        RejectReason.BAD_METRIC_NAME,
        id="topic-metric-too-long",
    ),
    pytest.param(
        "office/metrics",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_TOPIC,
        id="topic-two-levels",
    ),
    pytest.param(
        "office",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_TOPIC,
        id="topic-one-level",
    ),
    pytest.param(
        "office/metrics/Temperature/pi/extra",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_TOPIC,
        id="topic-five-levels",
    ),
    pytest.param(
        "office/metrics/Temperature/" + "a/" * 200,
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_TOPIC,
        id="topic-too-long",
    ),
    pytest.param(
        b"office/metrics/Temp\xfferature",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_TOPIC,
        id="topic-bytes-not-utf8",
    ),
    # --- sensor
    pytest.param(
        "office/metrics/Temperature/bad sensor",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="topic-sensor-with-space",
    ),
    pytest.param(
        "office/metrics/Temperature/.hidden",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="topic-sensor-leading-dot",
    ),
    pytest.param(
        "office/metrics/Temperature/",
        _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="topic-sensor-empty",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Sensor": "../etc", ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="payload-sensor-path",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Sensor": "<b>x</b>", ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="payload-sensor-markup",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Sensor": 7, ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="payload-sensor-number",
    ),
    pytest.param(
        TEMP_TOPIC,
        _temp('"Temperature": 70, "ID": 1, "Sensor": "", ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="payload-sensor-empty",
    ),
    pytest.param(
        "office/metrics/Temperature/pi-1",
        _temp('"Temperature": 70, "ID": 1, "Sensor": "pi-2", ' + GOOD_TS),
        RejectReason.BAD_SENSOR_NAME,
        id="topic-and-payload-sensor-disagree",
    ),
    # --- combined weather message
    pytest.param(
        "office/weather",
        _temp('"ID": 1, ' + GOOD_TS),
        RejectReason.NO_METRICS,
        id="weather-without-metrics",
    ),
    pytest.param(
        "office/weather",
        _temp('"ID": 1, "CO2": 400, ' + GOOD_TS),
        RejectReason.NO_METRICS,
        id="weather-only-unknown-metric",
    ),
    pytest.param(
        "office/weather",
        _temp('"ID": 1, "Temperature": 70, "Humidity": "40", ' + GOOD_TS),
        RejectReason.BAD_VALUE_TYPE,
        id="weather-one-bad-value",
    ),
    pytest.param(
        "office/weather",
        _temp('"ID": 1, "Temperature": 70, "Pressure": 5000, ' + GOOD_TS),
        RejectReason.OUT_OF_RANGE,
        id="weather-one-value-out-of-range",
    ),
    pytest.param(
        "office/weather",
        _temp('"Temperature": 70, ' + GOOD_TS),
        RejectReason.MISSING_ID,
        id="weather-missing-id",
    ),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), REJECTED)
def test_rejects(topic: str | bytes, payload: bytes, reason: RejectReason) -> None:
    result = _parse(topic, payload)
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result
    assert result.detail
    assert not _has_control_characters(result.topic)


def test_rejection_kinds_are_many_and_cover_every_reason() -> None:
    reasons = {param.values[2] for param in REJECTED}
    assert len(REJECTED) >= 25
    # The two others are ingest's admission decisions, tested in test_admission.py, and
    # bad_status belongs to status messages (test_bad_status_messages_are_rejected...).
    others = {
        RejectReason.METRIC_NOT_ALLOWED,
        RejectReason.TOO_MANY_SERIES,
        RejectReason.BAD_STATUS,
    }
    assert reasons == set(RejectReason) - others


def test_deep_nesting_with_a_larger_size_cap_is_too_deep_not_a_crash() -> None:
    result = _parse(TEMP_TOPIC, b"[" * 100_000, rules=PayloadRules(max_payload_bytes=200_000))
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.TOO_DEEP


def test_size_cap_comes_from_the_rules() -> None:
    payload = _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS)
    assert isinstance(_parse(TEMP_TOPIC, payload, rules=PayloadRules(len(payload))), list)
    small = _parse(TEMP_TOPIC, payload, rules=PayloadRules(len(payload) - 1))
    assert isinstance(small, Rejection)
    assert small.reason is RejectReason.TOO_LARGE


def test_future_skew_comes_from_the_rules() -> None:
    payload = _temp('"Temperature": 70, "ID": 1, "Timestamp": "2024-06-01T12:10:00Z"')
    strict = _parse(TEMP_TOPIC, payload, rules=PayloadRules(max_future_skew=timedelta(minutes=5)))
    assert isinstance(strict, Rejection)
    assert strict.reason is RejectReason.TIMESTAMP_IN_FUTURE
    assert isinstance(_parse(TEMP_TOPIC, payload), list)


@pytest.mark.parametrize(
    ("timestamp", "tz"),
    [
        pytest.param("0001-01-01T00:00:00+01:00", UTC, id="year-1-positive-offset"),
        pytest.param("0001-01-01 00:10:00", BERLIN, id="year-1-naive-east-of-utc"),
        pytest.param("9999-12-31T23:59:59-01:00", UTC, id="year-9999-negative-offset"),
        pytest.param("9999-12-31 23:59:59", timezone(timedelta(hours=-5)), id="year-9999-naive"),
    ],
)
def test_timestamps_outside_datetime_range_are_rejected_not_raised(
    timestamp: str, tz: tzinfo
) -> None:
    payload = _doc(Temperature=70, ID=1, Timestamp=timestamp)
    result = _parse(TEMP_TOPIC, payload, tz)  # must not raise OverflowError
    assert isinstance(result, Rejection)
    assert result.reason in {
        RejectReason.BAD_TIMESTAMP,
        RejectReason.TIMESTAMP_TOO_OLD,
        RejectReason.TIMESTAMP_IN_FUTURE,
    }


HOSTILE_TOPICS = [
    pytest.param("office/metrics/Temp\x00erature", RejectReason.BAD_METRIC_NAME, id="nul"),
    pytest.param("office/metrics/\x1b[31mred\x1b[0m", RejectReason.BAD_METRIC_NAME, id="ansi"),
    pytest.param(
        "office/metrics/Temperature/pi\r\nFAKE LOG LINE",
        RejectReason.BAD_SENSOR_NAME,
        id="crlf-sensor",
    ),
    pytest.param("office/\n/\t/x/y", RejectReason.BAD_TOPIC, id="newline-five-levels"),
    pytest.param(b"office/\xff\x00/\x07", RejectReason.BAD_TOPIC, id="bytes-not-utf8-with-nul"),
    pytest.param("office/metrics/\x7f\x85\u2028", RejectReason.BAD_METRIC_NAME, id="del-c1-ls"),
    pytest.param("\x00" * 300, RejectReason.BAD_TOPIC, id="long-nul"),
    pytest.param(
        "office/metrics/" + "\x01" * 100, RejectReason.BAD_METRIC_NAME, id="truncated-escapes"
    ),
]


@pytest.mark.parametrize(("topic", "reason"), HOSTILE_TOPICS)
def test_rejection_topic_has_no_control_characters(
    topic: str | bytes, reason: RejectReason
) -> None:
    result = _parse(topic, _temp('"Temperature": 70, "ID": 1, ' + GOOD_TS))
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert result.topic
    assert not _has_control_characters(result.topic)
    assert "\n" not in result.detail
    assert not _has_control_characters(result.detail)
    assert len(result.topic) <= 80


def test_rejection_keeps_a_plain_topic_as_is() -> None:
    result = _parse("office/metrics/Humidity", b"nope")
    assert isinstance(result, Rejection)
    assert result.topic == "office/metrics/Humidity"


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_edge_datetimes = st.one_of(  # the first and last days datetime can hold
    st.datetimes(max_value=datetime(1, 1, 2)), st.datetimes(min_value=datetime(9999, 12, 30))
)
_timestamps = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(str),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(datetime.isoformat),
    st.builds(
        lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
        _edge_datetimes,
        st.integers(-1439, 1439),
    ).map(datetime.isoformat),
    _edge_datetimes.map(str),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(
    topic=st.one_of(
        st.sampled_from(["office/metrics/Temperature", "office/weather", "a/b/Pressure/s-1"]),
        st.text(max_size=40),
        st.binary(max_size=40),
    ),
    fields=st.dictionaries(
        st.sampled_from(["Temperature", "Humidity", "Pressure", "Sensor", "x"]),
        st.one_of(st.floats(-100, 1300), _json_leaf),
        max_size=5,
    ),
    reading_id=st.one_of(st.integers(0, 2**63 - 1), _json_leaf),
    timestamp=st.one_of(_timestamps, _json_leaf),
    tz=st.sampled_from(
        [UTC, BERLIN, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]
    ),
)
def test_structured_garbage_never_raises(
    topic: str | bytes, fields: dict[str, object], reading_id: object, timestamp: object, tz: tzinfo
) -> None:
    payload = json.dumps({**fields, "ID": reading_id, "Timestamp": timestamp}).encode()
    result = _parse(topic, payload, tz)
    if isinstance(result, Rejection):
        assert not _has_control_characters(result.topic)
    else:
        assert result
        for reading in result:
            assert reading.ts.utcoffset() == timedelta(0)
            assert datetime(2000, 1, 1, tzinfo=UTC) <= reading.ts <= NOW + timedelta(hours=1)


@settings(max_examples=200, deadline=None)
@given(
    topic=st.one_of(st.text(max_size=60), st.binary(max_size=60)), payload=st.binary(max_size=200)
)
def test_arbitrary_bytes_never_raise(topic: str | bytes, payload: bytes) -> None:
    result = _parse(topic, payload)
    assert isinstance(result, list | Rejection)
    if isinstance(result, Rejection):
        assert not _has_control_characters(result.topic)


# ----------------------------------------------------------------------------- status topics

STATUS_NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (b"office/status/lab", True),
        (b"building-2/status/lab", True),
        (b"office/metrics/Temperature", False),
        (b"office/status/lab/extra", False),
        (b"office/status", False),
    ],
)
def test_status_topics_are_recognised(topic, expected):
    from officesensor.payload import is_status_topic

    assert is_status_topic(topic) is expected


def test_status_filter_sits_beside_the_metrics_filter():
    from officesensor.payload import status_filter

    assert status_filter("office/metrics/+") == "office/status/+"
    assert status_filter("building-2/metrics/#") == "building-2/status/+"


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b'{"Sensor": "lab", "Online": false}', False),
        (b'{"Online": true}', True),
        (b'{"Sensor": "lab", "Online": true, "Since": "whatever"}', True),
    ],
)
def test_status_messages_parse(payload, online):
    from officesensor.models import SensorStatus
    from officesensor.payload import parse_status

    assert parse_status(b"office/status/lab", payload, STATUS_NOW) == SensorStatus(
        "lab", online, STATUS_NOW
    )


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (b"office/status/lab", b'{"Online": "yes"}', RejectReason.BAD_STATUS),
        (b"office/status/lab", b'{"Sensor": "lab"}', RejectReason.BAD_STATUS),
        (
            b"office/status/lab",
            b'{"Sensor": "attic", "Online": true}',
            RejectReason.BAD_SENSOR_NAME,
        ),
        (b"office/status/<script>", b'{"Online": true}', RejectReason.BAD_SENSOR_NAME),
        (b"office/status/\xff", b'{"Online": true}', RejectReason.BAD_TOPIC),
        (b"office/status/lab", b"[true]", RejectReason.NOT_OBJECT),
        (b"office/status/lab", b"online", RejectReason.NOT_JSON),
        (
            b"office/status/lab",
            b'{"Online": true, "x": "' + b"a" * 2000 + b'"}',
            RejectReason.TOO_LARGE,
        ),
    ],
)
def test_bad_status_messages_are_rejected_with_a_reason(topic, payload, reason):
    from officesensor.payload import parse_status

    rejection = parse_status(topic, payload, STATUS_NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
