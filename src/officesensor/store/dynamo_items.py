"""DynamoDB items <-> plain values for the DynamoDB store. Pure: no I/O, no clock.

Readings keep the original IoT rule's shape: partition key ``Metric`` (S), sort key ``ID``
(N), the message as the map attribute ``payload``. The partition is the metric's name for
the default sensor (exactly the original's key) and ``<Metric>#<sensor>`` for a named one.

The sort key
    Our sensor's ``ID`` is the epoch milliseconds of its reading, so the app writes such a
    reading under ``ID`` = its ID, as the IoT rule would. Any other reading (the original
    sensor's counter arriving through ingest, an import, two readings in one millisecond)
    is written under a *time key*: the decimal ``<ms>.<µs within the ms><ID + 1>`` (three
    and nineteen digits after the point; 35 significant digits, DynamoDB keeps 38), unique
    per (time, ID) and in [ms, ms + 1). ``payload.ID`` always holds the reading's ID. So
    within the *time region* of a partition (keys >= ``TIME_KEY_MIN``, 2000-01-01 in ms)
    ``floor(key)`` is the reading's millisecond, and restarted counters never overwrite one
    another (the original rule's defect). Keys below ``TIME_KEY_MIN`` are the original
    rule's counters (the *counter region*), whose order is not time order; see
    officesensor.store.dynamo_counters.

Everything else lives under partition keys starting with ``~``, which no IoT rule writes
and the original web app never reads: rollups (``~hour#``, ``~day#``, ``~dayhist#``),
anomalies (``~anomaly#``), conflicts (``~conflicts``, keyed by ``conflict_key``), the
series registry (``~series``) and migration checkpoints (``~checkpoint#``).
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from datetime import tzinfo
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import numpy as np

from officesensor import rollups
from officesensor.models import DEFAULT_SENSOR, AnomalyRecord, Reading, from_epoch_us
from officesensor.payload import METRIC_NAME, SENSOR_NAME, parse_timestamp
from officesensor.rollups import Moments

Item = dict[str, Any]

HASH_KEY = "Metric"
RANGE_KEY = "ID"
#: 2000-01-01T00:00Z in epoch ms: every reading's time key is at least this (ingest
#: rejects older timestamps); the original counters stay far below it.
TIME_KEY_MIN = 946_684_800_000
MAX_ID = 2**63 - 1
SERIES_REGISTRY = "~series"
CONFLICTS = "~conflicts"
#: DynamoDB numbers hold magnitudes in [1e-130, 1e126); floats outside go as strings.
_N_MIN, _N_MAX = 1e-130, 9.9e125

# --------------------------------------------------------------------------- keys


def series_pk(sensor: str, metric: str) -> str:
    """The partition of a series: ``Temperature``, or ``Temperature#office-2``."""
    return metric if sensor == DEFAULT_SENSOR else f"{metric}#{sensor}"


def parse_pk(pk: str) -> tuple[str, str] | None:
    """(sensor, metric) of a reading partition; None for anything else."""
    metric, _, sensor = pk.partition("#")
    if not METRIC_NAME.fullmatch(metric):
        return None
    if not sensor:
        return DEFAULT_SENSOR, metric
    return (sensor, metric) if SENSOR_NAME.fullmatch(sensor) else None


def derived_pk(kind: str, pk: str) -> str:
    """A ``~`` partition belonging to a series partition, e.g. ``~hour#Temperature``."""
    return f"~{kind}#{pk}"


def time_key(ts_us: int, reading_id: int) -> str:
    """``<ms>.<µs in the ms, 3 digits><ID + 1, 19 digits>``: unique per (time, ID), in
    [ms, ms + 1), ordered like (time, ID)."""
    ms, rest = divmod(ts_us, 1000)
    return f"{ms}.{rest:03d}{reading_id + 1:019d}"


def natural_key(ts_us: int, reading_id: int) -> str:
    """Where a reading goes first: its own ID when that is its epoch millisecond (our
    sensor, as the IoT rule writes it), else its time key."""
    if reading_id == ts_us // 1000:
        return str(reading_id)
    return time_key(ts_us, reading_id)


def key_value(key: str) -> Decimal:
    return Decimal(key)


def key_ms(key: Decimal) -> int:
    """The millisecond a time-region key belongs to."""
    return int(key.to_integral_value(rounding=ROUND_FLOOR))


def time_key_bounds(lo_us: int, hi_us: int) -> tuple[int, int]:
    """Inclusive key bounds of the time region holding every reading with lo <= t < hi
    (a reading at hi's millisecond may be among them: callers filter by time)."""
    return max(lo_us // 1000, TIME_KEY_MIN), (hi_us - 1) // 1000 + 1


# --------------------------------------------------------------------------- numbers


def number_value(value: float) -> dict[str, str]:
    """A finite float as a DynamoDB number, or as a string where DynamoDB's range ends."""
    magnitude = abs(value)
    if value == 0 or _N_MIN <= magnitude <= _N_MAX:
        return {"N": repr(float(value))}
    return {"S": repr(float(value))}


def _float_of(attr: dict[str, Any] | None) -> float | None:
    if attr is None:
        return None
    raw = attr.get("N", attr.get("S"))
    if not isinstance(raw, str):
        return None
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int_of(attr: dict[str, Any] | None) -> int | None:
    raw = None if attr is None else attr.get("N")
    if not isinstance(raw, str):
        return None
    try:
        number = Decimal(raw)
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


# --------------------------------------------------------------------------- readings


def reading_item(pk: str, key: str, reading: Reading) -> Item:
    """A reading as our sensor's message stored the way the original IoT rule stores it
    (the fields of ``payload.encode_reading``, timestamp in UTC)."""
    payload: dict[str, Any] = {
        reading.metric: number_value(reading.value),
        "ID": {"N": str(reading.reading_id)},
        "Timestamp": {"S": reading.ts.isoformat(timespec="microseconds")},
    }
    if reading.sensor != DEFAULT_SENSOR:
        payload["Sensor"] = {"S": reading.sensor}
    return {HASH_KEY: {"S": pk}, RANGE_KEY: {"N": key}, "payload": {"M": payload}}


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a reading item says: its key, and its reading (None when the payload is not
    a valid reading, ``foreign`` when it belongs to another sensor's series)."""

    key: Decimal
    reading: Reading | None
    foreign: bool = False


def parse_reading_item(item: Item, sensor: str | None, metric: str, tz: tzinfo) -> Parsed:
    """Read an item as the original rule or this app wrote it. Tolerated: counter IDs,
    naive ``str(datetime.now())`` timestamps (read in ``tz``, as ingest reads them),
    extra payload fields, a ``Sensor`` field (an item of another sensor than ``sensor`` is
    ``foreign``; ``sensor`` None takes the payload's). Not applied: ingest's plausibility
    ranges (a stored reading is shown as stored)."""
    key = Decimal(item[RANGE_KEY]["N"])
    payload = item.get("payload", {}).get("M")
    if not isinstance(payload, dict):
        return Parsed(key, None)
    named = payload.get("Sensor", {}).get("S") if "Sensor" in payload else DEFAULT_SENSOR
    if not isinstance(named, str) or not SENSOR_NAME.fullmatch(named):
        return Parsed(key, None)
    if sensor is not None and named != sensor:
        return Parsed(key, None, foreign=True)
    reading_id = _int_of(payload.get("ID"))
    if reading_id is None or not 0 <= reading_id <= MAX_ID:
        return Parsed(key, None)
    raw_ts = payload.get("Timestamp", {}).get("S")
    ts = parse_timestamp(raw_ts, tz) if isinstance(raw_ts, str) and len(raw_ts) <= 64 else None
    value = _float_of(payload.get(metric))
    if ts is None or value is None:
        return Parsed(key, None)
    return Parsed(key, Reading(named, metric, reading_id, ts, value))


def identity(reading: Reading) -> tuple[int, int]:
    """A reading's identity within its series: (time in µs, ID)."""
    return reading.ts_us, reading.reading_id


# --------------------------------------------------------------------------- anomalies


_FLOATS4 = struct.Struct("<4d")


def anomaly_item(pk: str, record: AnomalyRecord) -> Item:
    r = record.reading
    stats = _FLOATS4.pack(r.value, record.mean, record.std, record.z)
    return {
        HASH_KEY: {"S": derived_pk("anomaly", pk)},
        RANGE_KEY: {"N": time_key(r.ts_us, r.reading_id)},
        "ts": {"N": str(r.ts_us)},
        "rid": {"N": str(r.reading_id)},
        "stats": {"B": stats},
    }


def parse_anomaly_item(item: Item, sensor: str, metric: str) -> AnomalyRecord:
    value, mean, std, z = _FLOATS4.unpack(item["stats"]["B"])
    ts = from_epoch_us(int(item["ts"]["N"]))
    reading = Reading(sensor, metric, int(item["rid"]["N"]), ts, value)
    return AnomalyRecord(reading, mean, std, z)


# --------------------------------------------------------------------------- conflicts


#: Digits of a conflict key's hash: with the 13 of the millisecond and the 3 of the µs, 37
#: significant digits (DynamoDB keeps 38).
_CONFLICT_HASH_DIGITS = 21


def conflict_key(pk: str, reading: Reading) -> str:
    """Where a conflicting newcomer is kept under ``~conflicts``: ``<ms>.<µs in the ms, 3
    digits><21 digits of a hash of its partition, time, ID and value>``. The same newcomer
    always gets the same key, so writing it with ``attribute_not_exists`` again (a retried
    batch, a redelivery, another instance) changes nothing; different newcomers practically
    never share one (70 bits, and only within one microsecond); keys sort by reading time."""
    value = reading.value + 0.0  # -0.0 and 0.0 are one value (they compare equal)
    identity_bytes = f"{pk}\x00{reading.ts_us}\x00{reading.reading_id}\x00".encode()
    digest = hashlib.blake2b(identity_bytes + struct.pack("<d", value), digest_size=16).digest()
    ms, rest = divmod(reading.ts_us, 1000)
    digits = int.from_bytes(digest, "big") % 10**_CONFLICT_HASH_DIGITS
    return f"{ms}.{rest:03d}{digits:0{_CONFLICT_HASH_DIGITS}d}"


def conflict_item(key: str, reading: Reading, received_us: int) -> Item:
    return {
        HASH_KEY: {"S": CONFLICTS},
        RANGE_KEY: {"N": key},
        "sensor": {"S": reading.sensor},
        "metric": {"S": reading.metric},
        "ts": {"N": str(reading.ts_us)},
        "rid": {"N": str(reading.reading_id)},
        "value": {"B": struct.pack("<d", reading.value)},
        "received": {"N": str(received_us)},
    }


def parse_conflict_item(item: Item) -> Reading:
    (value,) = struct.unpack("<d", item["value"]["B"])
    return Reading(
        item["sensor"]["S"],
        item["metric"]["S"],
        int(item["rid"]["N"]),
        from_epoch_us(int(item["ts"]["N"])),
        value,
    )


# --------------------------------------------------------------------------- summaries

#: One sub-bucket of a summary: offset of its start from the summary's start (s), n,
#: mean, m2, min, max.
_PART = np.dtype([("off", "<i4"), ("n", "<i8"), ("moments", "<f8", (4,))])
_HEAD = struct.Struct("<q4d")


@dataclass(frozen=True, slots=True)
class Summary:
    """A closed hour or day of a series: its moments, the moments of its sub-buckets
    (minutes of an hour, hours of a day) keyed by start (s), and its value histogram
    (``rollups.hist_of``; None when a value is too large to quantize)."""

    start_s: int
    moments: Moments
    parts: dict[int, Moments]
    hist: bytes | None


def pack_moments(moments: Moments, parts: dict[int, Moments], start_s: int) -> bytes:
    table = np.zeros(len(parts), dtype=_PART)
    for i, (part_start, m) in enumerate(sorted(parts.items())):
        table[i] = (part_start - start_s, m.n, (m.mean, m.m2, m.min, m.max))
    head = _HEAD.pack(moments.n, moments.mean, moments.m2, moments.min, moments.max)
    return head + table.tobytes()


def unpack_moments(blob: bytes, start_s: int) -> tuple[Moments, dict[int, Moments]]:
    n, mean, m2, low, high = _HEAD.unpack_from(blob)
    table = np.frombuffer(blob, dtype=_PART, offset=_HEAD.size)
    parts = {
        start_s + int(row["off"]): Moments(int(row["n"]), *(float(x) for x in row["moments"]))
        for row in table
    }
    return Moments(int(n), mean, m2, low, high), parts


def pack_hist(blob: bytes) -> bytes:
    """A histogram blob, smaller: keys as differences, then zlib (5-10x on real data)."""
    keys, counts = rollups.decode_hist(blob)
    deltas = np.diff(keys, prepend=np.int64(0)) if keys.size else keys
    return zlib.compress(rollups.encode_hist(deltas, counts), 6)


def unpack_hist(packed: bytes) -> bytes:
    deltas, counts = rollups.decode_hist(zlib.decompress(packed))
    return rollups.encode_hist(np.cumsum(deltas, dtype=np.int64), counts)


def summaries_of(
    ts_us: rollups.Int64Array, values: rollups.FloatArray, level_s: int
) -> dict[int, Summary]:
    """Summaries of every ``level_s`` period (3600 or 86400) holding some of the readings:
    the rollups of officesensor.rollups, each period with its sub-level moments."""
    if not values.size:
        return {}
    sub_s = 60 if level_s == 3600 else 3600
    rows, _ = rollups.rollup_rows(np.zeros(values.size, dtype=np.int64), ts_us, values)
    moments: dict[int, Moments] = {}
    parts: dict[int, dict[int, Moments]] = {}
    for _, level, start_s, n, mean, m2, low, high in rows:
        m = Moments(n, mean, m2, low, high)
        if level == level_s:
            moments[start_s] = m
        elif level == sub_s:
            parts.setdefault(start_s // level_s * level_s, {})[start_s] = m
    period = ts_us // (level_s * 1_000_000) * level_s
    order = np.argsort(period, kind="stable")
    sorted_periods, sorted_values = period[order], values[order]
    bounds = np.flatnonzero(np.diff(sorted_periods)) + 1
    out = {}
    for chunk_periods, chunk in zip(
        np.split(sorted_periods, bounds), np.split(sorted_values, bounds), strict=True
    ):
        start = int(chunk_periods[0])
        out[start] = Summary(start, moments[start], parts[start], rollups.hist_of(chunk))
    return out
