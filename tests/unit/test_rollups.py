"""officesensor.rollups: range splitting, moments, histograms and quantiles against brute force."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from officesensor import rollups
from officesensor.rollups import (
    LEVELS_S,
    MAX_QUANTIZABLE,
    QUANTILE_STEP,
    Moments,
    Piece,
    ValueCounts,
    combine_moments,
    decode_hist,
    hist_of,
    merge_blobs,
    merge_moments,
    moments_of,
    quantile_error_bound,
    split_range,
    weighted_quantiles,
)

US = 1_000_000
DAY_US = 86_400 * US
T0_US = 1_714_521_600 * US  # 2024-05-01 00:00 UTC

finite = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)
coarse = st.integers(-400, 400).map(lambda i: i / 4)  # ties and repeated values
values_st = st.lists(st.one_of(finite, coarse), min_size=1, max_size=80)


def _close(a: float, b: float, scale: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, scale)


# --------------------------------------------------------------------------- split_range


offsets = st.one_of(
    st.integers(-2 * DAY_US, 5 * DAY_US),
    st.sampled_from([0, 1, 59 * US, 60 * US, 3599 * US, 3600 * US, DAY_US, DAY_US - 1]),
)


@settings(deadline=None)
@given(offsets, offsets, st.sampled_from([(), (60,), (60, 3600), LEVELS_S, (3600, 86400)]))
def test_split_range_covers_the_range_with_aligned_disjoint_pieces(
    a: int, b: int, widths: tuple[int, ...]
) -> None:
    start, end = T0_US + min(a, b), T0_US + max(a, b)
    pieces = split_range(start, end, widths)
    if start == end:
        assert pieces == []
        return
    spans = sorted((p.lo_us, p.hi_us) for p in pieces)
    assert spans[0][0] == start
    assert spans[-1][1] == end
    for (_, hi), (lo, _) in itertools.pairwise(spans):
        assert hi == lo  # contiguous and disjoint
    for piece in pieces:
        assert piece.lo_us < piece.hi_us
        assert piece.width_s in (0, *widths)
        if piece.width_s:
            assert piece.lo_us % (piece.width_s * US) == 0
            assert piece.hi_us % (piece.width_s * US) == 0
        else:  # raw edges are shorter than the finest level
            assert not widths or piece.hi_us - piece.lo_us < max(widths) * US * 2


def test_split_range_example() -> None:
    start = T0_US + 30 * US  # 00:00:30
    end = T0_US + 2 * DAY_US + 3600 * US + 90 * US  # day 2, 01:01:30
    assert split_range(start, end) == [
        Piece(0, start, T0_US + 60 * US),
        Piece(0, end - 30 * US, end),
        Piece(60, T0_US + 60 * US, T0_US + 3600 * US),
        Piece(60, T0_US + 2 * DAY_US + 3600 * US, end - 30 * US),
        Piece(3600, T0_US + 3600 * US, T0_US + DAY_US),
        Piece(3600, T0_US + 2 * DAY_US, T0_US + 2 * DAY_US + 3600 * US),
        Piece(86400, T0_US + DAY_US, T0_US + 2 * DAY_US),
    ]


def test_levels_for_width() -> None:
    assert rollups.levels_for_width(7) == ()
    assert rollups.levels_for_width(90 * 60) == (60,)
    assert rollups.levels_for_width(6 * 3600) == (60, 3600)
    assert rollups.levels_for_width(7 * 86400) == LEVELS_S


# --------------------------------------------------------------------------- moments


@settings(deadline=None)
@given(values_st, st.data())
def test_chan_merges_equal_the_moments_of_the_union(
    values: list[float], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(values)))
    merged = merge_moments(moments_of(values[:cut]), moments_of(values[cut:]))
    assert merged is not None
    _assert_moments(merged, values)


@settings(deadline=None)
@given(st.lists(values_st, min_size=1, max_size=8))
def test_k_way_combine_equals_the_moments_of_the_union(parts: list[list[float]]) -> None:
    moments = [moments_of(p) for p in parts]
    combined = combine_moments(
        [m.n for m in moments if m],
        [m.mean for m in moments if m],
        [m.m2 for m in moments if m],
        [m.min for m in moments if m],
        [m.max for m in moments if m],
    )
    assert combined is not None
    _assert_moments(combined, [v for p in parts for v in p])


def _assert_moments(m: Moments, values: list[float]) -> None:
    x = np.array(values)
    scale = float(np.max(np.abs(x)))
    assert m.n == len(values)
    assert m.min == x.min()
    assert m.max == x.max()
    assert _close(m.mean, math.fsum(values) / len(values), scale)
    if len(values) >= 2:
        assert m.std is not None
        assert _close(m.std, float(np.std(x, ddof=1)), scale, rel=1e-7)
    else:
        assert m.std is None


def test_moments_edge_cases() -> None:
    assert moments_of([]) is None
    assert merge_moments(None, None) is None
    one = Moments(1, 2.0, 0.0, 2.0, 2.0)
    assert merge_moments(one, None) is one
    assert merge_moments(None, one) is one
    assert combine_moments([0], [0.0], [0.0], [0.0], [0.0]) is None
    assert Moments(2, 0.0, -1e-30, 0.0, 0.0).std == 0.0  # rounding residue is clamped


# --------------------------------------------------------------------------- grouping


readings_st = st.lists(
    st.tuples(
        st.integers(1, 3),  # series
        st.one_of(
            st.integers(-DAY_US, 3 * DAY_US),
            st.integers(0, 200 * US),
            st.sampled_from([0, 59_999_999, 60 * US, 3600 * US - 1, DAY_US]),
        ),
        st.one_of(finite, coarse),
    ),
    min_size=1,
    max_size=300,
)


@pytest.mark.parametrize("small", [0, 10**9], ids=["numpy", "python"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(readings=readings_st)
def test_rollup_rows_equal_brute_force(
    readings: list[tuple[int, int, float]], small: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups, "_SMALL", small)
    series = np.array([r[0] for r in readings], dtype=np.int64)
    ts = np.array([T0_US + r[1] for r in readings], dtype=np.int64)
    values = np.array([r[2] for r in readings], dtype=np.float64)
    rows, hour_values = rollups.rollup_rows(series, ts, values)
    expected: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for sid, t, v in zip(series.tolist(), ts.tolist(), values.tolist(), strict=True):
        for level in LEVELS_S:
            expected[sid, level, t // (level * US) * level].append(v)
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(expected)
    for sid, level, start_s, n, mean, m2, low, high in rows:
        _assert_moments(Moments(n, mean, m2, low, high), expected[sid, level, start_s])
    assert sorted(hour_values) == sorted(
        (sid, start_s) for sid, level, start_s in expected if level == rollups.HIST_LEVEL_S
    )
    for (sid, start_s), hour in hour_values.items():
        assert sorted(list(hour)) == sorted(expected[sid, rollups.HIST_LEVEL_S, start_s])


# --------------------------------------------------------------------------- histograms


@settings(deadline=None)
@given(st.lists(st.lists(st.one_of(finite, coarse), max_size=150), min_size=1, max_size=5))
def test_merged_histograms_equal_the_histogram_of_the_union(parts: list[list[float]]) -> None:
    blobs = [hist_of(part) for part in parts]
    merged = merge_blobs([blob for blob in blobs if blob is not None])
    union = [v for p in parts for v in p]
    assert merged == hist_of(union)
    keys, counts = decode_hist(merged)
    assert np.all(np.diff(keys) > 0)
    assert int(counts.sum()) == len(union)


def test_histogram_keys_are_rounded_values() -> None:
    blob = hist_of([0.004, 0.006, -0.006, 1.0, 1.0, 0.015, 0.025])
    assert blob is not None
    keys, counts = decode_hist(blob)
    rounded = np.rint(np.array([0.004, 0.006, -0.006, 1.0, 0.015, 0.025]) / 0.01)
    assert keys.tolist() == sorted(set(rounded.astype(int).tolist()))
    assert keys.tolist() == [-1, 0, 1, 2, 100]
    assert int(counts.sum()) == 7


def test_unquantizable_values_make_a_null_histogram_that_sticks() -> None:
    assert hist_of([1.0, MAX_QUANTIZABLE * 2]) is None
    assert hist_of([1.0, -1e300]) is None
    assert hist_of([MAX_QUANTIZABLE, -MAX_QUANTIZABLE]) is not None
    assert hist_of(list(np.full(300, 1e300))) is None  # the numpy path too


# --------------------------------------------------------------------------- quantiles


@settings(deadline=None)
@given(st.lists(st.one_of(finite, coarse), min_size=1, max_size=200))
def test_weighted_quantiles_equal_numpy_exactly(values: list[float]) -> None:
    unique, counts = np.unique(np.array(values), return_counts=True)
    got = weighted_quantiles(unique, counts.astype(np.int64), (0.0, 0.25, 0.5, 0.75, 1.0, 0.1))
    expected = np.quantile(np.array(values), [0.0, 0.25, 0.5, 0.75, 1.0, 0.1])
    assert got == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(finite, coarse, st.floats(-1e13, 1e13)), min_size=1, max_size=200),
    st.data(),
)
def test_quartiles_from_histograms_are_within_the_bound(
    values: list[float], data: st.DataObject
) -> None:
    # Some of the values come in as histograms, the others raw, as in a store.
    cut = data.draw(st.integers(0, len(values)))
    gathered = ValueCounts()
    blob = hist_of(values[:cut])
    assert blob is not None
    gathered.add_hist(blob)
    gathered.add_values(np.array(values[cut:]))
    got = weighted_quantiles(*gathered.sorted_counts())
    expected = np.quantile(np.array(values), rollups.QUARTILES)
    bound = quantile_error_bound(min(values), max(values))
    assert bound >= QUANTILE_STEP / 2
    for q, e in zip(got, expected, strict=True):
        assert abs(q - e) <= bound


@settings(deadline=None)
@given(st.lists(st.floats(-1e300, 1e300).filter(lambda v: abs(v) > MAX_QUANTIZABLE), min_size=1))
def test_unquantizable_values_give_exact_quartiles(values: list[float]) -> None:
    gathered = ValueCounts()
    gathered.add_values(np.array(values))
    assert not gathered.quantized
    got = weighted_quantiles(*gathered.sorted_counts())
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.quantile(np.array(values), rollups.QUARTILES)
    assert got == pytest.approx(expected.tolist(), nan_ok=True, rel=0, abs=0)


def test_add_blobs_equals_add_hist_one_by_one() -> None:
    rng = np.random.default_rng(5)
    blobs = [hist_of(rng.normal(70, 3, size)) for size in (1, 10, 240, 0, 57)]
    one, many = ValueCounts(), ValueCounts()
    for blob in blobs:
        assert blob is not None
        one.add_hist(blob)
    many.add_blobs([b for b in blobs if b is not None])
    a, b = one.sorted_counts(), many.sorted_counts()
    assert a[0].tolist() == b[0].tolist()
    assert a[1].tolist() == b[1].tolist()
    assert many.quantized


def test_wide_key_spans_use_the_sparse_merge() -> None:
    values = [-1e12, 0.0, 0.01, 1e12, 1e12]
    gathered = ValueCounts()
    gathered.add_values(np.array(values))
    sorted_values, counts = gathered.sorted_counts()
    assert sorted_values.tolist() == [-1e12, 0.0, 0.01, 1e12]
    assert counts.tolist() == [1, 1, 1, 2]


def test_the_bound_grows_with_magnitude_but_stays_small() -> None:
    assert quantile_error_bound(60.0, 80.0) == pytest.approx(0.005, rel=1e-9)
    assert 0.005 < quantile_error_bound(-1e12, 5.0) < 0.01
