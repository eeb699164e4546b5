"""The Prometheus text format written by web/exposition.py, read back by a strict parser."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from officesensor.histogram import Histogram, HistogramSnapshot
from officesensor.models import IngestSnapshot, IngestTelemetry, Reading, RejectReason, SeriesInfo
from officesensor.web.exposition import Family, escape_label, format_value, render
from officesensor.web.ops import ingest_families, series_families
from tests.prometheus import parse

HOSTILE = [
    'a"b',
    "back\\slash",
    "new\nline",
    '\\n literally, and \\" too',
    'x"} 1\nofficesensor_forged 1\n# TYPE x counter',
    "trailing\\",
    "°F",
    "\r\t\x00\u2028",
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_label_values_read_back_exactly_and_forge_nothing(name):
    text = render(
        [Family.gauge("officesensor_series_readings", "Readings.", [({"sensor": name}, 3)])]
    )
    families = parse(text)
    assert set(families) == {"officesensor_series_readings"}  # nothing forged
    family = families["officesensor_series_readings"]
    assert family.samples == [("officesensor_series_readings", {"sensor": name}, 3.0)]
    assert text.count("\n") == 3  # Prometheus splits lines on \n only


@given(st.text())
def test_any_label_value_round_trips(value):
    text = render([Family.gauge("g", "x", [({"l": value}, 1)])])
    assert parse(text)["g"].samples == [("g", {"l": value}, 1.0)]


def test_escape_label_is_the_formats_escape():
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_help_text_is_escaped():
    text = render([Family.counter("c_total", "two\nlines \\ here", [({}, 1)])])
    assert text.splitlines()[0] == "# HELP c_total two\\nlines \\\\ here"
    assert parse(text)["c_total"].help == "two\nlines \\ here"


def test_histogram_lines_are_cumulative_and_end_with_inf():
    histogram = Histogram([0.1, 0.5, 1.0])
    for value in (0.05, 0.1, 0.3, 0.7, 3.0):
        histogram.observe(value)
    text = render(
        [Family.histogram("h_seconds", "Durations.", [({"route": "/x"}, histogram.snapshot())])]
    )
    assert text.splitlines()[2:] == [
        'h_seconds_bucket{route="/x",le="0.1"} 2',
        'h_seconds_bucket{route="/x",le="0.5"} 3',
        'h_seconds_bucket{route="/x",le="1"} 4',
        'h_seconds_bucket{route="/x",le="+Inf"} 5',
        'h_seconds_sum{route="/x"} 4.15',
        'h_seconds_count{route="/x"} 5',
    ]
    parsed = parse(text)["h_seconds"].histogram(route="/x")
    assert parsed.buckets == [(0.1, 2), (0.5, 3), (1.0, 4), (math.inf, 5)]
    assert parsed.count == 5
    assert parsed.sum == pytest.approx(4.15)


def test_an_empty_histogram_family_is_valid():
    text = render([Family.histogram("h_seconds", "Nothing yet.", [])])
    assert parse(text)["h_seconds"].kind == "histogram"


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (2.0, "2"), (0.25, "0.25"), (1e-7, "1e-07"), (math.inf, "+Inf"),
     (-math.inf, "-Inf"), (math.nan, "NaN"), (True, "1"), (1.7e300, "1.7e+300")],
)  # fmt: skip
def test_values(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize(
    "build",
    [
        lambda: Family.gauge("bad-name", "x", []),
        lambda: Family.gauge("9lives", "x", []),
        lambda: Family("g", "summary!", "x"),
        lambda: Family("h", "histogram", "x", samples=[({}, 1)]),
        lambda: render([Family.gauge("g", "x", [({"bad-label": "v"}, 1)])]),
        lambda: render([Family.gauge("g", "x", [({"__reserved": "v"}, 1)])]),
        lambda: render([Family.histogram("h", "x", [({"le": "1"}, Histogram([1]).snapshot())])]),
        lambda: render([Family.gauge("g", "x", []), Family.gauge("g", "y", [])]),
    ],
)
def test_programming_errors_are_refused(build):
    with pytest.raises(ValueError, match=r"\w"):  # each says what is wrong
        build()


@pytest.mark.parametrize(
    "text",
    [
        "g 1\n",  # no TYPE
        '# TYPE g gauge\ng{l="a\\tb"} 1\n',  # an escape the format does not have
        '# TYPE g gauge\ng{l="a"} one\n',
        "# TYPE g gauge\ng 1\ng 2\n",  # duplicate sample
        "# TYPE g gauge\n# TYPE h gauge\ng 1\n",  # g split around h
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
        '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',  # no +Inf
        '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',
        "# TYPE g gauge\ng 1",  # no final newline
    ],
)
def test_the_test_parser_is_strict(text):
    with pytest.raises(AssertionError):
        parse(text)


# ----------------------------------------------------------------------------- ops' families

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def snapshot(**changes: object) -> IngestSnapshot:
    values: dict[str, object] = dict(
        connected=True, received=10, stored=6, duplicates=1, conflicts=1,
        rejected={"not_json": 2}, backlog=3, reconnects=1, anomalies=0,
        last_error=None, store_ok=True,
    )  # fmt: skip
    return IngestSnapshot(**(values | changes))  # type: ignore[arg-type]


def test_every_reject_reason_is_present_with_zero():
    families = parse(render(ingest_families(snapshot(), None)))
    rejected = families["officesensor_ingest_rejected_total"]
    assert {dict(k)["reason"]: v for k, v in rejected.values().items()} == {
        reason.value: (2.0 if reason is RejectReason.NOT_JSON else 0.0) for reason in RejectReason
    }
    assert families["officesensor_ingest_received_total"].value() == 10
    assert families["officesensor_ingest_backlog"].kind == "gauge"
    assert "officesensor_store_write_duration_seconds" not in families  # no telemetry given


def test_telemetry_adds_the_write_histogram_and_the_link_change_time():
    histogram = Histogram([0.001, 0.01])
    histogram.observe(0.004)
    changed = NOW - timedelta(minutes=5)
    families = parse(
        render(ingest_families(snapshot(), IngestTelemetry(histogram.snapshot(), changed)))
    )
    write = families["officesensor_store_write_duration_seconds"].histogram()
    assert write.buckets == [(0.001, 0), (0.01, 1), (math.inf, 1)]
    changed_s = families["officesensor_mqtt_connection_changed_timestamp_seconds"].value()
    assert changed_s == changed.timestamp()


def test_series_families_are_bounded_and_age_from_the_newest_reading():
    infos = [
        SeriesInfo(f"s{i}", "Temperature", i + 1, Reading(f"s{i}", "Temperature", 1,
                   NOW - timedelta(seconds=10 * i), 70.0))
        for i in range(5)
    ]  # fmt: skip
    infos.append(SeriesInfo("empty", "Humidity", 0, None))
    families = parse(render(series_families(NOW, infos, limit=3)))
    assert families["officesensor_series"].value() == 6  # all of them, counted
    ages = families["officesensor_series_last_reading_age_seconds"]
    assert ages.label_sets() == [{"sensor": f"s{i}", "metric": "Temperature"} for i in range(3)]
    assert ages.value(sensor="s2", metric="Temperature") == 20.0
    readings = families["officesensor_series_readings"]
    assert readings.value(sensor="s0", metric="Temperature") == 1


def test_a_reading_from_the_future_has_age_zero():
    ahead = Reading("s", "Temperature", 1, NOW + timedelta(seconds=30), 70.0)
    families = parse(render(series_families(NOW, [SeriesInfo("s", "Temperature", 1, ahead)], 10)))
    assert (
        families["officesensor_series_last_reading_age_seconds"].value(
            sensor="s", metric="Temperature"
        )
        == 0
    )


def test_histogram_snapshot_counts():
    snap = HistogramSnapshot((1.0, 2.0), (1, 0, 2), 7.5)
    assert snap.count == 3
    assert snap.cumulative() == [(1.0, 1), (2.0, 1), (math.inf, 3)]
