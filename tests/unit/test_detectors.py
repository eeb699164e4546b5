"""analytics detectors: each method's incremental and batch forms agree, degenerate windows
never flag, the setting selects a detector, and the live path uses it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from officesensor.analytics import (
    DEFAULT_METHOD,
    DETECTORS,
    MAD_SCALE,
    METHODS,
    MedianMad,
    PreviousZScore,
    RollingStats,
    WindowStats,
    detector,
    mad_stats,
    previous_stats,
    rolling_stats,
)
from officesensor.config import SPEC_BY_FIELD, load_settings
from officesensor.errors import ConfigError
from officesensor.live import LiveAnalytics, flagged
from officesensor.models import Reading
from officesensor.store.sqlite import SqliteStore

RTOL = 1e-9

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
# Sensor-like values: a few decimals, so ties and flat stretches are common.
rounded = st.integers(min_value=-2000, max_value=2000).map(lambda i: i / 100)
series = st.lists(st.one_of(finite, rounded), max_size=60)


def _incremental(method: str, values: Sequence[float], window: int, z: float) -> list[WindowStats]:
    stats = detector(method).incremental(window, z)
    return [stats.update(v) for v in values]


def _previous(values: Sequence[float], window: int) -> list[list[float]]:
    return [list(values[max(0, i - window) : i]) for i in range(len(values))]


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= RTOL * max(1.0, scale)


def test_methods_are_the_settings_choices() -> None:
    assert set(METHODS) == set(DETECTORS)
    assert DEFAULT_METHOD == "zscore"
    assert SPEC_BY_FIELD["anomaly_method"].default == DEFAULT_METHOD
    for method in METHODS:
        assert load_settings(environ={"OFFICESENSOR_ANOMALY_METHOD": method}).anomaly_method == (
            method
        )


def test_default_method_is_the_original_rule() -> None:
    chosen = detector()
    assert chosen.incremental is RollingStats
    assert chosen.batch is rolling_stats
    assert chosen.history(10) == 9
    assert detector("zscore-previous").history(10) == 10
    assert detector("mad").history(10) == 10


def test_unknown_method_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OFFICESENSOR_ANOMALY_METHOD"):
        load_settings(environ={"OFFICESENSOR_ANOMALY_METHOD": "median"})
    config = tmp_path / "office.toml"
    config.write_text('[anomaly]\nmethod = "MAD"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"anomaly\.method in .*office\.toml.*zscore-previous"):
        load_settings(config, environ={})
    with pytest.raises(ValueError, match="must be one of zscore, zscore-previous, mad"):
        detector("median")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("window", [1, 0, -3])
def test_window_below_two_is_refused(method: str, window: int) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        detector(method).incremental(window, 2.0)
    with pytest.raises(ValueError, match="at least 2"):
        detector(method).batch([1.0, 2.0], window, 2.0)


@pytest.mark.parametrize("method", ["zscore-previous", "mad"])
def test_spike_cannot_hide_in_its_own_window(method: str) -> None:
    base = [70.0, 70.2, 69.9, 70.1, 70.0, 69.8, 70.2, 70.1, 69.9, 70.0]
    values = [*base, 75.0]
    # The original rule: |z| <= (W-1)/sqrt(W) = 2.846 with W = 10, so Z = 3 can never flag.
    original = rolling_stats(values, 10, 3.0)
    assert abs(original.z[-1]) <= 9 / math.sqrt(10)
    assert not original.anomaly.any()
    batch = detector(method).batch(values, 10, 3.0)
    assert batch.anomaly[-1]
    assert batch.z[-1] > 20
    assert not batch.anomaly[:-1].any()


@pytest.mark.parametrize("window", [2, 3, 5, 10, 40])
def test_inclusive_bound(window: int) -> None:
    values = [0.0] * (window - 1) + [1.0]
    z = rolling_stats(values, window).z[-1]
    assert z == pytest.approx((window - 1) / math.sqrt(window), rel=1e-12)


def test_previous_zscore_by_hand() -> None:
    values = [1.0, 3.0, 2.0, 8.0]
    got = _incremental("zscore-previous", values, 3, 2.0)
    assert got[0] == WindowStats(0, got[0].mean, None, None, None, False)
    assert math.isnan(got[0].mean)
    assert got[1] == WindowStats(1, 1.0, None, None, None, False)
    assert got[2].n == 2
    assert got[2].mean == 2.0
    assert got[2].z == pytest.approx(0.0)
    mean, std = 2.0, 1.0  # of [1, 3, 2]
    assert got[3].mean == pytest.approx(mean)
    assert got[3].std == pytest.approx(std)
    assert got[3].z == pytest.approx((8.0 - mean) / std)
    assert got[3].anomaly
    batch = previous_stats(values, 3, 2.0)
    assert batch.z[3] == pytest.approx(6.0)
    assert batch.lower[3] == pytest.approx(0.0)
    assert batch.upper[3] == pytest.approx(4.0)


def test_mad_by_hand() -> None:
    values = [10.0, 12.0, 11.0, 50.0, 13.0, 11.0]
    got = _incremental("mad", values, 4, 3.0)
    # Reading 5 (11.0) against [12, 11, 50, 13]: median 12.5, deviations 0.5 1.5 37.5 0.5
    # -> MAD 1.0; the outlier 50 barely moves it.
    assert got[5].n == 4
    assert got[5].mean == 12.5
    assert got[5].std == pytest.approx(MAD_SCALE)
    assert got[5].z == pytest.approx(-1.5 / MAD_SCALE)
    # Reading 3 (50.0) against [10, 12, 11]: median 11, MAD 1.
    assert got[3].z == pytest.approx(39.0 / MAD_SCALE)
    assert got[3].anomaly
    batch = mad_stats(values, 4, 3.0)
    assert list(batch.anomaly) == [s.anomaly for s in got]


@pytest.mark.parametrize("method", METHODS)
def test_degenerate_windows_never_flag(method: str) -> None:
    values = [5.0, 1e6, 20.0, 20.0, 20.0, 20.0, 20.0, 90.0]
    chosen = detector(method)
    inc = _incremental(method, values, 4, 0.1)
    batch = chosen.batch(values, 4, 0.1)
    # Fewer than 2 readings in the window: never flagged, whatever the value.
    assert not inc[0].anomaly
    assert not batch.anomaly[0]
    if not chosen.includes_current:
        assert not inc[1].anomaly
        assert not batch.anomaly[1]
    # The window before 90.0 is flat (20 x4): the previous-window methods cannot judge it.
    if not chosen.includes_current:
        assert inc[7].z is None
        assert not inc[7].anomaly
        assert not batch.anomaly[7]
        assert math.isnan(batch.z[7])
        assert batch.std[7] == 0.0


def test_mad_is_degenerate_when_most_of_the_window_is_equal() -> None:
    values = [20.0, 20.0, 20.0, 21.0, 30.0]
    assert _incremental("mad", values, 4, 2.0)[4].z is None
    assert math.isnan(mad_stats(values, 4, 2.0).z[4])


@pytest.mark.parametrize("method", METHODS)
def test_empty_and_single(method: str) -> None:
    chosen = detector(method)
    assert len(chosen.batch([], 5, 2.0).z) == 0
    one = chosen.batch([72.5], 5, 2.0)
    assert not one.anomaly[0]
    assert math.isnan(one.z[0])


def _assert_agree(method: str, values: Sequence[float], window: int, z: float) -> None:
    batch = detector(method).batch(values, window, z)
    incremental = _incremental(method, values, window, z)
    assert len(incremental) == len(values) == len(batch.z)
    for i, inc in enumerate(incremental):
        where = f"{method}: reading {i} of {len(values)}, window {window}"
        scale = max((abs(v) for v in values[: i + 1]), default=1.0)
        if math.isnan(inc.mean):
            assert math.isnan(batch.mean[i]), where
        else:
            assert _close(inc.mean, float(batch.mean[i]), scale), where
        if inc.std is None:
            assert math.isnan(batch.std[i]), where
            assert not inc.anomaly, where
            assert not batch.anomaly[i], where
            continue
        spread = max(values[: i + 1]) - min(values[: i + 1])
        assert abs(inc.std - batch.std[i]) <= RTOL * (scale + spread) + 1e-6 * spread, where
        if inc.z is None or math.isnan(batch.z[i]):
            # Degenerate (flat) on one side: only at the floor, where the other's std is ~0.
            assert inc.std <= 1e-6 * max(1.0, scale), where
            assert batch.std[i] <= 1e-6 * max(1.0, scale), where
            if inc.z is None:
                assert not inc.anomaly, where
            if math.isnan(batch.z[i]):
                assert not batch.anomaly[i], where
            continue
        # z divides by std: the rounding left in mean and std (relative to the values'
        # magnitude, which can dwarf a small spread) is magnified by 1/std.
        std_err = RTOL * (scale + spread) + 1e-6 * spread
        z_tol = (RTOL * scale + abs(inc.z) * std_err) / float(batch.std[i]) + 1e-6 * max(
            1.0, abs(batch.z[i])
        )
        assert abs(inc.z - batch.z[i]) <= z_tol, where
        if abs(abs(batch.z[i]) - z) > 2 * z_tol:
            assert inc.anomaly == bool(batch.anomaly[i]), where


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=150, deadline=None)
@given(values=series, window=st.integers(min_value=2, max_value=12), z=st.floats(0.5, 4.0))
def test_incremental_and_batch_agree(
    method: str, values: list[float], window: int, z: float
) -> None:
    _assert_agree(method, values, window, z)


@settings(max_examples=100, deadline=None)
@given(values=series, window=st.integers(min_value=2, max_value=12))
def test_mad_matches_statistics(values: list[float], window: int) -> None:
    """Both forms against statistics.median over explicit slices of the previous readings."""
    batch = mad_stats(values, window)
    incremental = _incremental("mad", values, window, 2.0)
    for i, before in enumerate(_previous(values, window)):
        if len(before) < 2:
            assert incremental[i].std is None
            continue
        median = statistics.median(before)
        mad = statistics.median(abs(v - median) for v in before)
        assert incremental[i].mean == pytest.approx(median, rel=1e-12, abs=1e-12)
        assert float(batch.mean[i]) == pytest.approx(median, rel=1e-12, abs=1e-12)
        assert incremental[i].std == pytest.approx(MAD_SCALE * mad, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(values=series, window=st.integers(min_value=2, max_value=12))
def test_previous_is_the_inclusive_rule_one_reading_late(values: list[float], window: int) -> None:
    previous, inclusive = previous_stats(values, window), rolling_stats(values, window)
    np.testing.assert_array_equal(previous.mean[1:], inclusive.mean[:-1])
    np.testing.assert_array_equal(previous.std[1:], inclusive.std[:-1])


def test_long_series_agree_including_resync() -> None:
    rng = np.random.default_rng(6)
    values = list(np.round(70 + np.cumsum(rng.normal(0, 0.1, 3000)) + rng.normal(0, 0.2, 3000), 2))
    values[1500] += 8.0
    for method in METHODS:
        _assert_agree(method, values, 10, 2.0)
    for cls in (PreviousZScore, MedianMad):
        assert cls(10, 2.0).update(1.0).n == 0


@pytest.mark.parametrize("method", METHODS)
def test_live_analytics_uses_the_method(method: str, tmp_path: Path) -> None:
    """Primed from the store, the live path flags what the batch form flags for the whole
    series, from the first reading after the history on."""
    store = SqliteStore(tmp_path / "live.db")
    try:
        start = datetime(2024, 5, 1, tzinfo=UTC)
        values = [70.0 + 0.1 * ((i * 7) % 5) for i in range(30)]
        values[20] = 78.0
        readings = [
            Reading("default", "Temperature", i, start + timedelta(seconds=15 * i), v)
            for i, v in enumerate(values)
        ]
        store.write_many(readings[:15])
        live = LiveAnalytics(store, 10, 2.0, method)
        analysed = live.update(readings[15:])
        store.write_many(readings[15:])
        batch = detector(method).batch(values, 10, 2.0)
        expected = [i for i in range(15, 30) if batch.anomaly[i]]
        assert [r.reading.reading_id for r in flagged(analysed)] == expected
        assert 20 in expected
    finally:
        store.close()
