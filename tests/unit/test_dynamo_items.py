"""Pure DynamoDB item conversions (officesensor.store.dynamo_items) and the progress line."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from officesensor import rollups
from officesensor.models import Reading, to_epoch_us
from officesensor.payload import encode_reading
from officesensor.progress import Progress
from officesensor.store.dynamo_items import (
    TIME_KEY_MIN,
    key_ms,
    natural_key,
    number_value,
    pack_hist,
    pack_moments,
    parse_pk,
    parse_reading_item,
    reading_item,
    series_pk,
    summaries_of,
    time_key,
    time_key_bounds,
    unpack_hist,
    unpack_moments,
)

T = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=UTC)
ts_us = st.integers(to_epoch_us(datetime(2000, 1, 1, tzinfo=UTC)), 2**52)
ids = st.integers(0, 2**63 - 1)


def _plain(attr: dict[str, object]) -> object:
    """An attribute value as JSON would hold it."""
    ((kind, raw),) = attr.items()
    if kind == "M":
        assert isinstance(raw, dict)
        return {k: _plain(v) for k, v in raw.items()}
    if kind == "N":
        assert isinstance(raw, str)
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    return raw


@pytest.mark.parametrize("sensor", ["default", "office-2"])
def test_reading_items_hold_our_sensors_message(sensor: str) -> None:
    reading = Reading(sensor, "Temperature", to_epoch_us(T) // 1000, T, 71.25)
    item = reading_item(series_pk(sensor, "Temperature"), "1", reading)
    _, message = encode_reading(reading)
    assert _plain(item["payload"]) == json.loads(message)
    assert item["Metric"] == {"S": "Temperature" if sensor == "default" else "Temperature#office-2"}


def test_partition_keys_name_their_series() -> None:
    assert parse_pk("Temperature") == ("default", "Temperature")
    assert parse_pk("Humidity#pi-1.lab") == ("pi-1.lab", "Humidity")
    for not_a_series in ["~series", "~hour#Temperature", "Temp erature", "T#bad name", ""]:
        assert parse_pk(not_a_series) is None


@given(a=st.tuples(ts_us, ids), b=st.tuples(ts_us, ids))
def test_time_keys_order_like_time_then_id(a: tuple[int, int], b: tuple[int, int]) -> None:
    ka, kb = Decimal(time_key(*a)), Decimal(time_key(*b))
    assert (ka < kb) == (a < b)
    assert (ka == kb) == (a == b)
    assert key_ms(ka) == a[0] // 1000
    assert len(time_key(*a).replace(".", "")) <= 38  # DynamoDB keeps 38 digits
    assert key_ms(ka) >= TIME_KEY_MIN


def test_natural_key_is_our_sensors_id() -> None:
    us = to_epoch_us(T)
    assert natural_key(us, us // 1000) == str(us // 1000)
    assert natural_key(us, 7) == time_key(us, 7)
    assert Decimal(time_key(us, us // 1000)) != Decimal(us // 1000)  # never the same key
    lo, hi = time_key_bounds(us, us + 1)
    assert lo <= Decimal(natural_key(us, 7)) <= hi
    assert lo <= Decimal(natural_key(us, us // 1000)) <= hi


def test_numbers_outside_dynamodbs_range_go_as_strings() -> None:
    assert number_value(72.51) == {"N": "72.51"}
    assert number_value(-0.0) == {"N": "-0.0"}
    assert number_value(1e300) == {"S": "1e+300"}
    assert number_value(5e-324) == {"S": "5e-324"}


def test_items_as_the_original_rule_wrote_them() -> None:
    tz = ZoneInfo("America/Los_Angeles")
    item = {
        "Metric": {"S": "Temperature"},
        "ID": {"N": "42"},
        "payload": {
            "M": {
                "Temperature": {"N": "72.51"},
                "ID": {"N": "42"},
                "Timestamp": {"S": "2018-09-05 10:11:12.123456"},
                "Extra": {"S": "ignored"},
            }
        },
    }
    parsed = parse_reading_item(item, "default", "Temperature", tz)
    assert parsed.reading == Reading(
        "default", "Temperature", 42, datetime(2018, 9, 5, 17, 11, 12, 123456, tzinfo=UTC), 72.51
    )
    assert parsed.key == 42
    other = json.loads(json.dumps(item))
    other["payload"]["M"]["Sensor"] = {"S": "pi-2"}
    assert parse_reading_item(other, "default", "Temperature", tz).foreign
    assert parse_reading_item(other, None, "Temperature", tz).reading is not None
    for broken in [
        {"Temperature": {"S": "warm"}, "ID": {"N": "1"}, "Timestamp": {"S": "2018-09-05"}},
        {"Temperature": {"N": "1"}, "ID": {"N": "1.5"}, "Timestamp": {"S": "2018-09-05 1:2:3"}},
        {"Temperature": {"N": "1"}, "ID": {"N": "-1"}, "Timestamp": {"S": "2018-09-05 10:11:12"}},
        {"Temperature": {"N": "1"}, "ID": {"N": "1"}},
        {"ID": {"N": "1"}, "Timestamp": {"S": "2018-09-05 10:11:12"}},
    ]:
        bad = {**item, "payload": {"M": broken}}
        assert parse_reading_item(bad, "default", "Temperature", tz).reading is None
    assert parse_reading_item({"ID": {"N": "1"}}, "default", "Temperature", tz).reading is None


def test_summaries_pack_and_match_rollups() -> None:
    rng = np.random.default_rng(1)
    start = to_epoch_us(datetime(2024, 1, 1, tzinfo=UTC))
    ts = np.sort(start + rng.integers(0, 3 * 86_400 * 1_000_000, 5000))
    values = np.round(rng.normal(50, 10, 5000), 2)
    days = summaries_of(ts, values, 86400)
    assert sorted(days) == [start // 1_000_000 + d * 86400 for d in range(3)]
    for day, summary in days.items():
        inside = values[(ts >= day * 1_000_000) & (ts < (day + 86400) * 1_000_000)]
        assert summary.moments.n == inside.size
        assert summary.hist == rollups.hist_of(inside)
        assert sum(m.n for m in summary.parts.values()) == inside.size
        moments, parts = unpack_moments(pack_moments(summary.moments, summary.parts, day), day)
        assert (moments, parts) == (summary.moments, summary.parts)
        assert summary.hist is not None
        packed = pack_hist(summary.hist)
        assert unpack_hist(packed) == summary.hist
        assert len(packed) < len(summary.hist) / 3
    hours = summaries_of(ts, values, 3600)
    assert sum(h.moments.n for h in hours.values()) == 5000
    assert all(set(h.parts) <= set(range(h.start_s, h.start_s + 3600, 60)) for h in hours.values())


def test_progress_line() -> None:
    now = [100.0]
    out = io.StringIO()
    bar = Progress(out, "import OfficeSensor", 1000, clock=lambda: now[0], log_every_s=5)
    bar.advance(100)  # shown at once
    now[0] = 102.0
    bar.advance(100)  # not yet: every 5 s off a terminal
    now[0] = 110.0
    bar.advance(300)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("import OfficeSensor: 100 / ~1,000 items (10%)")
    assert lines[1] == "import OfficeSensor: 500 / ~1,000 items (50%), 50 items/s, about 10 s left"
    assert len(lines) == 3
    assert (
        Progress(io.StringIO(), "x", None, clock=lambda: 1.0).line(3.0) == "x: 0 items, 0 items/s"
    )


def test_progress_total_is_an_estimate() -> None:
    bar = Progress(io.StringIO(), "x", 10, clock=lambda: 0.0)
    bar.done = 15
    assert "15 / ~15 items (100%)" in bar.line(1.0)


def test_time_key_bounds_cover_every_key_of_the_range() -> None:
    rng = random.Random(2)
    for _ in range(200):
        lo = to_epoch_us(T) + rng.randrange(10**7)
        hi = lo + rng.randrange(1, 10**7)
        t = rng.randrange(lo, hi)
        first, last = time_key_bounds(lo, hi)
        assert first <= Decimal(time_key(t, rng.randrange(2**63))) <= last
        assert first <= Decimal(natural_key(t, t // 1000)) <= last
    assert time_key_bounds(0, 10)[0] == TIME_KEY_MIN
    assert timedelta(milliseconds=TIME_KEY_MIN) == datetime(2000, 1, 1) - datetime(1970, 1, 1)
