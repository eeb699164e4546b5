"""analytics: the original sample's rolling statistics, without its look-ahead, in two
implementations (incremental and batch) that must agree."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from officesensor.analytics import (
    _RESYNC_EVERY,
    DEFAULT_WINDOW,
    DEFAULT_Z,
    RollingStats,
    SeriesStats,
    WindowStats,
    rolling_stats,
)

#: Relative agreement asked of the two implementations.
RTOL = 1e-9
#: Share of mean² below which a variance is rounding noise (the documented degenerate floor).
VARIANCE_FLOOR = 1e-20


def _incremental(values: Sequence[float], window: int, z: float) -> list[WindowStats]:
    stats = RollingStats(window, z)
    return [stats.update(v) for v in values]


def _windows(values: Sequence[float], window: int) -> list[list[float]]:
    return [list(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


# --------------------------------------------------------------------------- definitions


def test_defaults_are_the_originals() -> None:
    assert DEFAULT_WINDOW == 10
    assert DEFAULT_Z == 2.0
    stats = RollingStats()
    assert (stats.window, stats.z_threshold) == (10, 2.0)


# Window W=4 including the current reading, Z=1.4. The windows, written out by hand:
HAND_VALUES = [10.0, 12.0, 11.0, 13.0, 30.0, 12.0, 11.0, 11.0]
HAND_WINDOWS = [
    [10.0],
    [10.0, 12.0],
    [10.0, 12.0, 11.0],
    [10.0, 12.0, 11.0, 13.0],
    [12.0, 11.0, 13.0, 30.0],
    [11.0, 13.0, 30.0, 12.0],
    [13.0, 30.0, 12.0, 11.0],
    [30.0, 12.0, 11.0, 11.0],
]
HAND_ANOMALIES = [False, False, False, False, True, False, False, False]


def test_hand_example_batch() -> None:
    got = rolling_stats(HAND_VALUES, window=4, z_threshold=1.4)
    for i, window in enumerate(HAND_WINDOWS):
        mean = statistics.mean(window)
        assert got.mean[i] == pytest.approx(mean, rel=1e-12)
        if len(window) < 2:
            assert math.isnan(got.variance[i])
            assert math.isnan(got.std[i])
            assert math.isnan(got.z[i])
            continue
        std = statistics.stdev(window)
        assert got.variance[i] == pytest.approx(statistics.variance(window), rel=1e-12)
        assert got.std[i] == pytest.approx(std, rel=1e-12)
        assert got.z[i] == pytest.approx((window[-1] - mean) / std, rel=1e-12)
        assert got.lower[i] == pytest.approx(mean - 1.4 * std, rel=1e-12)
        assert got.upper[i] == pytest.approx(mean + 1.4 * std, rel=1e-12)
    assert got.anomaly.tolist() == HAND_ANOMALIES
    # The spike, worked by hand: mean 16.5, squared deviations 245, variance 245/3.
    assert got.z[4] == pytest.approx(13.5 / math.sqrt(245 / 3), rel=1e-12)
    assert got.std[4] == pytest.approx(9.0369611411, rel=1e-9)


def test_hand_example_incremental() -> None:
    got = _incremental(HAND_VALUES, window=4, z=1.4)
    assert [s.n for s in got] == [len(w) for w in HAND_WINDOWS]
    assert [s.anomaly for s in got] == HAND_ANOMALIES
    for stats, window in zip(got, HAND_WINDOWS, strict=True):
        mean = statistics.mean(window)
        assert stats.mean == pytest.approx(mean, rel=1e-12)
        if len(window) < 2:
            assert (stats.variance, stats.std, stats.z) == (None, None, None)
            continue
        std = statistics.stdev(window)
        assert stats.variance == pytest.approx(statistics.variance(window), rel=1e-12)
        assert stats.std == pytest.approx(std, rel=1e-12)
        assert stats.z == pytest.approx((window[-1] - mean) / std, rel=1e-12)


def test_original_defaults_flag_a_spike_after_nine_calm_readings() -> None:
    calm = [70.0, 70.2, 70.1, 70.0, 70.3, 70.1, 70.2, 70.0, 70.1]
    values = [*calm, 75.0, 70.1]
    window = [*calm, 75.0]
    expected_z = (75.0 - statistics.mean(window)) / statistics.stdev(window)
    assert expected_z > 2.0  # sanity of the example itself
    batch = rolling_stats(values)
    incremental = _incremental(values, DEFAULT_WINDOW, DEFAULT_Z)
    assert batch.anomaly.tolist() == [False] * 9 + [True, False]
    assert [s.anomaly for s in incremental] == [False] * 9 + [True, False]
    assert batch.z[9] == pytest.approx(expected_z, rel=1e-12)
    assert incremental[9].z == pytest.approx(expected_z, rel=1e-12)
    # The 11th reading's window drops the first calm reading and keeps the spike.
    last = [*calm[1:], 75.0, 70.1]
    assert batch.mean[10] == pytest.approx(statistics.mean(last), rel=1e-12)
    assert incremental[10].std == pytest.approx(statistics.stdev(last), rel=1e-12)


def test_window_includes_the_current_reading() -> None:
    batch = rolling_stats([0.0, 10.0], window=2)
    (_, second) = _incremental([0.0, 10.0], 2, 2.0)
    # Window [0, 10]: mean 5, variance 50, z = 5 / sqrt(50).
    assert batch.mean[1] == 5.0
    assert batch.variance[1] == 50.0
    assert batch.z[1] == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert (second.n, second.mean, second.variance) == (2, 5.0, 50.0)
    assert second.z == pytest.approx(1 / math.sqrt(2), rel=1e-12)


def test_anomaly_threshold_is_inclusive() -> None:
    # Window [0, 0, 0, 4]: mean 1, variance 4, std 2, z = 1.5 exactly.
    values = [0.0, 0.0, 0.0, 4.0]
    assert rolling_stats(values, window=4, z_threshold=1.5).anomaly[3]
    assert not rolling_stats(values, window=4, z_threshold=1.5000001).anomaly[3]
    assert _incremental(values, 4, 1.5)[3].anomaly
    assert not _incremental(values, 4, 1.5000001)[3].anomaly
    assert _incremental(values, 4, 1.5)[3].z == 1.5


def test_negative_z_counts_as_anomaly() -> None:
    values = [0.0, 0.0, 0.0, -4.0]
    assert rolling_stats(values, window=4, z_threshold=1.5).z[3] == -1.5
    assert rolling_stats(values, window=4, z_threshold=1.5).anomaly[3]
    assert _incremental(values, 4, 1.5)[3].anomaly


def test_first_reading_uses_what_is_available() -> None:
    (only,) = _incremental([72.5], 10, 2.0)
    assert only == WindowStats(1, 72.5, None, None, None, False)
    batch = rolling_stats([72.5])
    assert batch.mean.tolist() == [72.5]
    for array in (batch.variance, batch.std, batch.z, batch.lower, batch.upper):
        assert math.isnan(array[0])
    assert batch.anomaly.tolist() == [False]


def test_empty_series() -> None:
    batch = rolling_stats([])
    for array in (batch.mean, batch.variance, batch.std, batch.z, batch.anomaly):
        assert len(array) == 0


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(21.5, id="21.5"),
        pytest.param(0.1, id="0.1"),
        pytest.param(1013.27, id="1013.27"),
        pytest.param(-9999.99, id="neg"),
    ],
)
def test_constant_series_has_no_anomaly_and_no_z(value: float) -> None:
    values = [value] * 30
    batch = rolling_stats(values, window=7)
    assert not batch.anomaly.any()
    assert np.isnan(batch.z).all()
    assert batch.variance[1:].tolist() == [0.0] * 29
    assert batch.std[1:].tolist() == [0.0] * 29
    for i, stats in enumerate(_incremental(values, 7, 2.0)):
        assert stats.n == min(i + 1, 7)
        assert stats.mean == pytest.approx(value, rel=1e-15)
        assert stats.z is None
        assert not stats.anomaly
        if i:
            assert (stats.variance, stats.std) == (0.0, 0.0)


def test_constant_window_after_spread_is_degenerate_again() -> None:
    values = [20.0, 25.0, 20.5, *([21.25] * 6)]
    batch = rolling_stats(values, window=4)
    incremental = _incremental(values, 4, 2.0)
    assert batch.variance[-1] == 0.0
    assert math.isnan(batch.z[-1])
    assert incremental[-1].z is None
    assert incremental[-1].variance == 0.0


@pytest.mark.parametrize(
    ("values", "window"),
    [
        pytest.param([68.11, 67.91, 68.49, 68.49], 2, id="temperatures-w2"),
        pytest.param([68.11, 20.0, 20.0, 20.0], 3, id="drop-w3"),
        pytest.param([68.11, 67.91, 68.56, 67.88, 68.82, *([72.51] * 10)], 10, id="w10"),
    ],
)
def test_window_of_identical_values_has_no_z_whatever_came_before(
    values: list[float], window: int
) -> None:
    # A sensor stuck on one value: every reading in the window is identical, so the spread
    # is exactly zero and z is undefined (the module's own definition), not a rounding residue.
    assert len(set(values[-window:])) == 1
    batch = rolling_stats(values, window)
    assert (batch.variance[-1], batch.std[-1]) == (0.0, 0.0)
    assert math.isnan(batch.z[-1])
    last = _incremental(values, window, 2.0)[-1]
    assert (last.variance, last.std, last.z, last.anomaly) == (0.0, 0.0, None, False)


@pytest.mark.parametrize("window", [pytest.param(w, id=f"w{w}") for w in (1, 0, -3)])
def test_window_below_two_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        RollingStats(window)
    with pytest.raises(ValueError, match="window"):
        rolling_stats([1.0, 2.0], window=window)


def test_incremental_window_slides() -> None:
    got = _incremental([1.0, 2.0, 3.0, 4.0, 5.0, 100.0], 3, 2.0)
    assert [s.n for s in got] == [1, 2, 3, 3, 3, 3]
    assert got[4].mean == 4.0  # [3, 4, 5]
    assert got[5].mean == pytest.approx(109 / 3, rel=1e-15)  # [4, 5, 100]
    assert got[4].variance == pytest.approx(1.0, rel=1e-12)


# --------------------------------------------------------------------------- no look-ahead


def test_no_look_ahead_example() -> None:
    # The original's first window peeked at the next reading: a spike must not change the
    # statistics of the reading before it.
    base = [70.0, 70.2, 70.1, 70.0, 70.3]
    quiet = rolling_stats([*base, 70.1], window=3)
    spiky = rolling_stats([*base, 150.0], window=3)
    for name in ("mean", "variance", "std", "z", "lower", "upper"):
        np.testing.assert_array_equal(getattr(quiet, name)[:5], getattr(spiky, name)[:5])
    assert quiet.anomaly[:5].tolist() == spiky.anomaly[:5].tolist()


_values = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(_values, min_size=1, max_size=120),
    tail=st.lists(_values, min_size=1, max_size=40),
    cut=st.integers(0, 119),
    window=st.integers(2, 30),
)
def test_no_look_ahead_property(
    values: list[float], tail: list[float], cut: int, window: int
) -> None:
    cut = cut % len(values)
    prefix = values[: cut + 1]
    other = [*prefix, *tail]
    first, second = rolling_stats(values, window), rolling_stats(other, window)
    alone = rolling_stats(prefix, window)
    for name in ("mean", "variance", "std", "z", "anomaly", "lower", "upper"):
        for stats in (second, alone):
            np.testing.assert_array_equal(
                getattr(first, name)[: cut + 1], getattr(stats, name)[: cut + 1], err_msg=name
            )
    assert (
        _incremental(values, window, 2.0)[: cut + 1] == _incremental(other, window, 2.0)[: cut + 1]
    )


# --------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class _Tolerances:
    mean: float
    variance: float


def _tolerances(prefix: Sequence[float], batch_variance: float) -> _Tolerances:
    """Agreement asked at one reading: RTOL relative, plus an absolute part scaled by the
    magnitude and spread of the values seen so far (the incremental algorithm's rounding
    error grows with those, not with the window's own variance)."""
    scale = max(abs(v) for v in prefix)
    spread = max(prefix) - min(prefix)
    variance = 0.0 if math.isnan(batch_variance) else batch_variance
    return _Tolerances(mean=RTOL * scale, variance=RTOL * (variance + scale * spread))


def _assert_agree(values: Sequence[float], window: int, z_threshold: float) -> None:
    batch = rolling_stats(values, window, z_threshold)
    incremental = _incremental(values, window, z_threshold)
    assert len(incremental) == len(values) == len(batch.mean)
    for i, inc in enumerate(incremental):
        where = f"reading {i} of {len(values)}, window {window}"
        tol = _tolerances(values[: i + 1], float(batch.variance[i]))
        assert inc.n == min(i + 1, window), where
        assert abs(inc.mean - batch.mean[i]) <= tol.mean, where
        if inc.n == 1:
            assert (inc.variance, inc.std, inc.z, inc.anomaly) == (None, None, None, False), where
            assert math.isnan(batch.variance[i]), where
            assert math.isnan(batch.z[i]), where
            assert not batch.anomaly[i], where
            continue
        assert inc.variance is not None, where
        assert inc.std is not None, where
        assert abs(inc.variance - batch.variance[i]) <= tol.variance, where
        # Each implementation's std is the root of its variance, so std agrees as variance does.
        assert inc.std == pytest.approx(math.sqrt(inc.variance), rel=1e-15), where
        assert batch.std[i] == pytest.approx(math.sqrt(batch.variance[i]), rel=1e-15), where
        inc_degenerate = inc.z is None
        batch_degenerate = bool(np.isnan(batch.z[i]))
        assert inc_degenerate == (inc.std == 0.0), where
        assert batch_degenerate == (batch.std[i] == 0.0), where
        if len(set(values[max(0, i - window + 1) : i + 1])) == 1:
            # Identical values are exactly at zero spread, not merely near the floor.
            assert inc_degenerate, where
            assert batch_degenerate, where
        if inc_degenerate and batch_degenerate:
            assert not inc.anomaly, where
            assert not batch.anomaly[i], where
            continue
        if inc_degenerate or batch_degenerate:
            # Only at the degenerate-variance floor: the variances agreed above, so the
            # defined side's variance is within tolerance of zero. Nothing more to compare.
            continue
        assert inc.z is not None
        std_tol = tol.variance / (inc.std + batch.std[i])
        z_tol = (tol.mean + abs(inc.z) * std_tol) / batch.std[i] + RTOL * abs(batch.z[i])
        assert abs(inc.z - batch.z[i]) <= z_tol, where
        if abs(abs(batch.z[i]) - z_threshold) > z_tol + RTOL * z_threshold:
            assert inc.anomaly == bool(batch.anomaly[i]), where
            assert inc.anomaly == (abs(batch.z[i]) >= z_threshold), where


def _assert_matches_reference(values: Sequence[float], window: int, z_threshold: float) -> None:
    """The batch implementation against statistics.* over explicit trailing slices."""
    batch = rolling_stats(values, window, z_threshold)
    for i, win in enumerate(_windows(values, window)):
        tol = _tolerances(values[: i + 1], float(batch.variance[i]))
        mean = math.fsum(win) / len(win)
        assert abs(batch.mean[i] - mean) <= tol.mean
        if len(win) == 1:
            assert math.isnan(batch.variance[i])
            continue
        variance = statistics.variance(win)
        assert abs(batch.variance[i] - variance) <= tol.variance
        if variance > 1e-6 * max(1.0, mean * mean):  # well above the floor: z is well defined
            z = (win[-1] - mean) / math.sqrt(variance)
            assert batch.z[i] == pytest.approx(z, rel=1e-6, abs=1e-6)
            if abs(abs(z) - z_threshold) > 1e-6:
                assert bool(batch.anomaly[i]) == (abs(z) >= z_threshold)
        # With the window including the current reading, |z| <= (n - 1) / sqrt(n).
        if not math.isnan(batch.z[i]):
            n = len(win)
            assert abs(batch.z[i]) <= (n - 1) / math.sqrt(n) * (1 + 1e-9)


_thresholds = st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0])


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(_values, min_size=1, max_size=300),
    window=st.integers(2, 50),
    z_threshold=_thresholds,
)
def test_implementations_agree_on_wide_values(
    values: list[float], window: int, z_threshold: float
) -> None:
    _assert_agree(values, window, z_threshold)


@settings(max_examples=150, deadline=None)
@given(
    base=st.floats(950.0, 1050.0),
    noise_scale=st.sampled_from([1e-4, 1e-2, 0.1, 1.0, 5.0]),
    noise=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=300),
    window=st.integers(2, 50),
    z_threshold=_thresholds,
)
def test_implementations_agree_on_pressure_like_values(
    base: float, noise_scale: float, noise: list[float], window: int, z_threshold: float
) -> None:
    _assert_agree([base + noise_scale * e for e in noise], window, z_threshold)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.sampled_from([20.0, 20.0, 20.1, 0.1, 1013.25, -3.3]), min_size=1, max_size=200
    ),
    window=st.integers(2, 12),
    z_threshold=_thresholds,
)
def test_implementations_agree_with_repeated_values(
    values: list[float], window: int, z_threshold: float
) -> None:
    _assert_agree(values, window, z_threshold)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-1e4, 1e4).map(lambda v: round(v, 2)), min_size=1, max_size=80),
    window=st.integers(2, 20),
    z_threshold=_thresholds,
)
def test_batch_matches_statistics_module(
    values: list[float], window: int, z_threshold: float
) -> None:
    _assert_matches_reference(values, window, z_threshold)


def _long_series(seed: int) -> list[float]:
    rng = random.Random(seed)
    wide = [rng.uniform(-1e4, 1e4) for _ in range(1_000)]
    drift = [1013.0 + 0.001 * i + rng.gauss(0.0, 0.05) for i in range(3_000)]
    temperature = [round(68.0 + rng.gauss(0.0, 0.3), 2) for _ in range(1_000)]
    return wide + drift + temperature


@pytest.mark.parametrize("window", [pytest.param(w, id=f"w{w}") for w in (2, 10, 50)])
def test_long_series_agree(window: int) -> None:
    _assert_agree(_long_series(window), window, DEFAULT_Z)


@pytest.mark.parametrize("window", [pytest.param(w, id=f"w{w}") for w in (10, 50)])
def test_long_series_recovers_precision_after_large_values_leave(window: int) -> None:
    # 1,000 readings of ±1e4, then 4,000 calm humidity readings. Removing large values from a
    # running sum leaves their rounding error behind; the periodic resync must wash it out, so
    # that once a resync has seen only calm readings, the incremental variance is as precise
    # as the calm data allows (1e-11 of its magnitude times its spread, where the leftover
    # error of the large values would be about 1e-9 absolute).
    rng = random.Random(window)
    values = [rng.uniform(-1e4, 1e4) for _ in range(1_000)]
    values += [round(45.0 + rng.gauss(0.0, 0.2), 2) for _ in range(4_000)]
    clean_from = -(-(1_000 + window) // _RESYNC_EVERY) * _RESYNC_EVERY
    assert clean_from + 1_000 <= len(values), "resync period too long for this series"
    batch = rolling_stats(values, window)
    incremental = _incremental(values, window, DEFAULT_Z)
    for i in range(clean_from, len(values)):
        win = values[i - window + 1 : i + 1]
        scale = max(abs(v) for v in win)
        spread = max(win) - min(win)
        assert spread > 0
        variance = incremental[i].variance
        assert variance is not None
        assert abs(variance - batch.variance[i]) <= 1e-11 * (batch.variance[i] + scale * spread), i


def test_series_stats_shapes() -> None:
    got = rolling_stats(np.linspace(60.0, 80.0, 25), window=5, z_threshold=2.0)
    assert isinstance(got, SeriesStats)
    for name in ("mean", "variance", "std", "z", "anomaly", "lower", "upper"):
        assert getattr(got, name).shape == (25,), name
    assert got.anomaly.dtype == np.bool_
