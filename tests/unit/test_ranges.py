"""Time ranges from query parameters, bucket widths and gap thresholds (web/ranges.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from officesensor.web.ranges import (
    BUCKET_WIDTHS_S,
    NAMED_RANGES,
    RangeError,
    bucket_width,
    gap_threshold_s,
    parse_range,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", [n for n, length in NAMED_RANGES.items() if length])
def test_named_ranges_end_now(name):
    span = parse_range({"range": name}, NOW)
    assert span.name == name
    assert span.live
    assert span.end - NOW == timedelta(microseconds=1)  # a reading stamped now is inside
    assert span.span == NAMED_RANGES[name]


def test_default_is_the_last_24_hours():
    assert parse_range({}, NOW).span == timedelta(hours=24)


def test_all_starts_at_the_first_reading():
    first = NOW - timedelta(days=400)
    assert parse_range({"range": "all"}, NOW, first).start == first
    assert parse_range({"range": "all"}, NOW, None).span == timedelta(hours=24)


def test_custom_range_accepts_offsets_and_naive_utc():
    span = parse_range({"start": "2024-05-01T09:00:00+02:00", "end": "2024-05-01T10:00"}, NOW)
    assert span.name == "custom"
    assert not span.live
    assert span.start == datetime(2024, 5, 1, 7, 0, tzinfo=UTC)
    assert span.end == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"range": "2w"}, "range"),
        ({"range": "1h", "start": "2024-01-01", "end": "2024-01-02"}, "range"),
        ({"start": "2024-01-01"}, "end"),
        ({"end": "2024-01-01"}, "start"),
        ({"start": "tomorrow", "end": "2024-01-01"}, "start"),
        ({"start": "2024-01-02", "end": "2024-01-01"}, "end"),
        ({"start": "2024-01-01", "end": "2024-01-01"}, "end"),
        ({"start": "0001-01-01", "end": "2024-01-01"}, "start"),
    ],
)
def test_bad_ranges_name_the_parameter(args, parameter):
    with pytest.raises(RangeError) as caught:
        parse_range(args, NOW)
    assert caught.value.parameter == parameter


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (timedelta(hours=1), 60),
        (timedelta(hours=24), 120),
        (timedelta(days=7), 900),
        (timedelta(days=30), 3600),
        (timedelta(days=365), 43200),
        (timedelta(days=5000), 604800),
    ],
)
def test_bucket_width_gives_at_most_the_target(span, width):
    assert bucket_width(span) == width
    assert span.total_seconds() / width <= 1000


def test_bucket_width_beyond_the_table_is_whole_days():
    width = bucket_width(timedelta(days=100_000))
    assert width % 86400 == 0
    assert width > BUCKET_WIDTHS_S[-1]
    assert timedelta(days=100_000).total_seconds() / width <= 1000


def test_gap_threshold():
    assert gap_threshold_s(60, None) == 120
    assert gap_threshold_s(60, 15) == 120
    assert gap_threshold_s(15, 15) == 45  # raw readings: three missed
    assert gap_threshold_s(60, 300) == 900
