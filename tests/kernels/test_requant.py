"""Exact requantisation for any scale (kernels/requant.py), against an independent oracle: the source map
``clamp(round(acc * c + e))`` evaluated per accumulator with Python ``Fraction``s and the rounding rules written
out from their definitions (shared/reference/aie-ml.md section 5), on every accumulator of the range."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn2aie.kernels.requant import AffineMap, choose_requant
from nn2aie.numerics import AIE_ROUNDING_MODES

from helpers import round_rational


def oracle(scale, offset, mode, lo, hi, accs) -> np.ndarray:
    """[len(accs), channels] codes: every accumulator, every channel, one Fraction at a time."""
    return np.array([[min(hi, max(lo, round_rational(a * c + e, mode))) for c, e in zip(scale, offset, strict=True)]
                     for a in accs], dtype=np.int64)


def f32(x: float) -> Fraction:
    return Fraction(float(np.float32(x)))


@st.composite
def cases(draw):
    """Scales as exported models have them: float32 input, per-channel weight and output scales (their exact
    ratio), an optional float32 bias and integer zero point, a rounding mode, an output type and a range."""
    channels = draw(st.integers(1, 4))
    sx = f32(draw(st.floats(2.0**-12, 2.0**-1)))
    sy = f32(draw(st.floats(2.0**-10, 2.0**1)))
    pow2 = draw(st.booleans()) and draw(st.booleans())
    if pow2:  # the fixed-point case: every ratio a power of two, no offset
        k = draw(st.integers(-2, 12))
        scale = [Fraction(1, 2**k) if k >= 0 else Fraction(2**-k)] * channels
        offset = [Fraction(0)] * channels
    else:
        sw = [f32(draw(st.floats(2.0**-10, 2.0**-2))) for _ in range(channels)]
        scale = [sx * w / sy for w in sw]
        zero_point = draw(st.integers(-8, 8))
        bias = [draw(st.integers(-5000, 5000)) for _ in range(channels)]
        offset = [b * f32(float(sx * w)) / sy + zero_point for b, w in zip(bias, sw, strict=True)]
    mode = draw(st.sampled_from(AIE_ROUNDING_MODES))
    lo, hi = draw(st.sampled_from([(-128, 127), (0, 255), (-8, 7), (0, 127), (-32768, 32767)]))
    # a range around where the codes change (most of it unsaturated), or anywhere
    centre = draw(st.integers(-2000, 2000)) * (draw(st.integers(1, 200)))
    width = draw(st.integers(1, 1500))
    return scale, offset, mode, lo, hi, centre - width, centre + width


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_chosen_requant_equals_the_source_on_every_accumulator(case):
    scale, offset, mode, lo, hi, a_lo, a_hi = case
    src = AffineMap.from_scales(scale, offset, mode, lo, hi)
    rq = choose_requant(src, a_lo, a_hi)
    accs = list(range(a_lo, a_hi + 1))
    want = oracle(scale, offset, mode, lo, hi, accs)
    grid = np.repeat(np.asarray(accs, dtype=np.int64)[:, None], len(scale), axis=1)
    assert np.array_equal(rq.apply(grid), want), rq.reason
    assert np.array_equal(src.evaluate(grid), want)
    if all(e == 0 for e in offset) and len(set(scale)) == 1 and _is_power_of_two(scale[0]) \
            and scale[0] <= 16:  # an SRS shifts by -4 .. 59
        assert rq.kind == "shift"


@settings(max_examples=100, deadline=None)
@given(cases())
def test_every_kind_that_is_chosen_is_exact_and_table_always_is(case):
    scale, offset, mode, lo, hi, a_lo, a_hi = case
    src = AffineMap.from_scales(scale, offset, mode, lo, hi)
    accs = np.arange(a_lo, a_hi + 1, dtype=np.int64)
    grid = np.repeat(accs[:, None], len(scale), axis=1)
    want = oracle(scale, offset, mode, lo, hi, accs.tolist())
    for kinds in (("table",), ("multiplier", "table")):
        rq = choose_requant(src, a_lo, a_hi, kinds=kinds)
        assert np.array_equal(rq.apply(grid), want), (kinds, rq.reason)


def _is_power_of_two(c: Fraction) -> bool:
    return c.numerator & (c.numerator - 1) == 0 and c.denominator & (c.denominator - 1) == 0


def test_thresholds_are_where_the_codes_step():
    src = AffineMap.from_scales([f32(0.0173), f32(0.051)], [f32(0.37), Fraction(-3, 2)], "conv_even", -128, 127)
    t = src.thresholds(-5000, 5000)
    accs = np.arange(-5000, 5001)
    codes = src.evaluate(np.repeat(accs[:, None], 2, axis=1))
    for n in range(2):
        for j, k in enumerate(range(-127, 128)):
            first = accs[codes[:, n] >= k]
            assert t[n, j] == (first[0] if len(first) else 5001)


def test_exact_ties_of_a_non_dyadic_scale_take_a_fitted_multiplier():
    """c = 2/3, e = 1/2: every multiple of 3 lands exactly on a tie (2j + 1/2), which half-to-even sends down;
    an int32 multiplier M / 2**s is never exactly 2/3, so a multiplier of the map itself moves the ties of one sign
    up. Another affine map, away from the ties, has the very same thresholds (fit_affine), and its multiplier is
    exact: chosen with that reason, equal to the exact oracle on the whole range."""
    src = AffineMap.from_scales([Fraction(2, 3)], [Fraction(1, 2)], "conv_even", -128, 127)
    rq = choose_requant(src, -150, 150)
    assert rq.kind == "multiplier"
    assert "of an affine map with the source's thresholds: no int32 multiplier" in rq.reason
    accs = np.arange(-150, 151)[:, None]
    assert np.array_equal(rq.apply(accs), oracle([Fraction(2, 3)], [Fraction(1, 2)], "conv_even", -128, 127,
                                                 accs[:, 0].tolist()))
    # on one sign the multiplier below 2/3 keeps every tie below: exact directly
    assert "affine map with" not in choose_requant(src, 1, 150).reason


def test_float_scales_of_a_real_layer_take_a_multiplier():
    rng = np.random.default_rng(0)
    sw = rng.uniform(0.002, 0.02, 64).astype(np.float32)
    sx, sy = f32(0.0123457), f32(0.0871234)
    scale = [sx * Fraction(float(w)) / sy for w in sw]
    offset = [int(b) * Fraction(float(np.float32(float(sx) * w))) / sy for b, w in
              zip(rng.integers(-3000, 3000, 64), sw, strict=True)]
    src = AffineMap.from_scales(scale, offset, "conv_even", -128, 127)
    rq = choose_requant(src, -1_000_000, 1_000_000)
    assert rq.kind == "multiplier" and all(0 < m < 2**31 for m in rq.multipliers)
    acc = rng.integers(-1_000_000, 1_000_001, (3000, 64))
    assert np.array_equal(rq.apply(acc), src.evaluate(acc))
    t = src.thresholds(-1_000_000, 1_000_000)
    near = np.clip(np.concatenate([t - 1, t], axis=1), -1_000_000, 1_000_000).T  # both sides of every step
    assert np.array_equal(rq.apply(near), src.evaluate(near))


def test_refusals_are_typed():
    from nn2aie.errors import UnsupportedQuantizationError

    with pytest.raises(UnsupportedQuantizationError, match="not positive"):
        AffineMap.from_scales([Fraction(-1, 3)], [Fraction(0)], "conv_even", -128, 127)
    src = AffineMap.from_scales([Fraction(2, 3)], [Fraction(1, 2)], "conv_even", -128, 127)
    with pytest.raises(UnsupportedQuantizationError, match="not one power of two"):
        choose_requant(src, -150, 150, kinds=("shift",))


def test_table_levels_fold_what_the_range_decides_and_reproduce_the_codes():
    src = AffineMap.from_scales([Fraction(2, 3), Fraction(1, 7)], [Fraction(1, 2), Fraction(0)], "conv_even",
                                -128, 127)
    rq = choose_requant(src, -20, 40, kinds=("table",))
    base, levels = rq.table_levels()
    # the codes on [-20, 40]: channel 0 from round(-12.83) = -13 to round(27.17) = 27 (40 steps), channel 1 from
    # round(-2.86) = -3 to round(5.71) = 6 (9 steps, padded to 40 with thresholds that never count)
    assert base == (-13, -3) and len(levels) == 40
    assert [lv[1] for lv in levels[9:]] == [41] * 31
    accs = np.arange(-20, 41)
    grid = np.repeat(accs[:, None], 2, axis=1)
    counted = np.asarray(base)[None, :] + (grid[:, None, :] >= np.asarray(levels)[None, :, :]).sum(axis=1)
    assert np.array_equal(counted, rq.apply(grid))
    assert rq.cycles_per_vector(32) == 2 * 2 * 40 + 2


def test_accumulators_beyond_int32_take_only_a_shift():
    from nn2aie.errors import UnsupportedQuantizationError

    src = AffineMap.from_scales([Fraction(1, 3)], [Fraction(0)], "conv_even", -128, 127)
    with pytest.raises(UnsupportedQuantizationError, match="leaves int32"):
        choose_requant(src, -(2**33), 2**33)
    assert choose_requant(AffineMap.from_scales([Fraction(1, 2**20)], [Fraction(0)], "floor", -128, 127),
                          -(2**33), 2**33).kind == "shift"


# -- fit_affine: an affine map with given thresholds -------------------------------------------------------------
def _brute_codes(fn, acc_lo, acc_hi):
    acc = np.arange(acc_lo, acc_hi + 1)
    return np.array([fn(a) for a in acc])


def test_fit_affine_recovers_a_map_from_its_thresholds_and_perturbed_ones():
    """Thresholds of an exact affine map, then with one threshold moved by one accumulator (as float32 rounding in
    a source's BatchNorm does): a fitted map exists in both cases (the gap has slack) and equals them exactly."""
    from nn2aie.kernels.requant import fit_affine

    # scales and offsets with large denominators: no accumulator lands exactly on a rounding tie (a map with
    # ties has a zero-width feasible set, which the float search cannot hit; such a map is used as read)
    src = AffineMap.from_scales([Fraction(3001, 1000003), Fraction(7001, 2000017)],
                                [Fraction(17001, 10007), Fraction(-3001, 7019)], "conv_even", 0, 255)
    want = src.thresholds(-60000, 60000)
    fitted = fit_affine(want, 0, 255, -60000, 60000)
    assert fitted is not None and np.array_equal(fitted.thresholds(-60000, 60000), want)
    moved = want.copy()
    moved[0, 100] += 1  # one code starts one accumulator later
    fitted = fit_affine(moved, 0, 255, -60000, 60000)
    if fitted is not None:  # only if some affine map has exactly these thresholds: checked exactly
        assert np.array_equal(fitted.thresholds(-60000, 60000), moved)
        codes = fitted.evaluate(np.arange(-60000, 60001)[:, None].repeat(2, axis=1))
        table = 0 + (np.arange(-60000, 60001)[:, None, None] >= moved[None]).sum(axis=-1)
        assert np.array_equal(codes, table)


def test_fit_affine_refuses_steps_no_affine_map_has():
    """Codes 0, 2, 3, ... (a jump of two, then steps of one): no map clamp(round(a c + e)) jumps two codes once
    and one code elsewhere with equal spacing; the fit must say so (None), never return a wrong map."""
    from nn2aie.kernels.requant import fit_affine

    t = np.array([[10, 10, 20, 30, 40]])  # code >= 1 and >= 2 from 10; >= 3 from 20; ...
    assert fit_affine(t, 0, 5, 0, 100) is None


# -- step_thresholds: thresholds of a monotone function, full table and bisection ---------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(-3000, 0), st.integers(1, 3000), st.lists(st.floats(-2, 2).filter(lambda v: abs(v) > 1e-3),
                                                             min_size=1, max_size=4),
       st.floats(-50, 50), st.booleans())
def test_step_thresholds_equal_brute_force(acc_lo, span, slopes, offset, bisect):
    """Against a brute-force oracle: for every level, the smallest accumulator whose code reaches it (on the
    oriented accumulator of a falling channel)."""
    import nn2aie.frontends.source_eval as se

    acc_hi = acc_lo + span
    lo, hi = -8, 7
    slope = np.array(slopes)

    def fn(acc):
        return np.clip(np.floor(acc * slope[None, :] / 100.0 + offset), lo, hi).astype(np.int64)

    old = se.FULL_TABLE_VALUES
    se.FULL_TABLE_VALUES = 0 if bisect else old
    try:
        t, negated, a_lo, a_hi = se.step_thresholds(fn, acc_lo, acc_hi, len(slopes), lo, hi, "test")
    finally:
        se.FULL_TABLE_VALUES = old
    for n in range(len(slopes)):
        sign = -1 if negated[n] else 1
        acc = np.arange(a_lo, a_hi + 1)
        codes = fn((sign * acc).astype(np.float64)[:, None].repeat(len(slopes), axis=1))[:, n]
        assert np.all(np.diff(codes) >= 0)  # oriented: rising on the whole widened range
        if slopes[n] > 0:
            assert not negated[n]
        for j, k in enumerate(range(lo + 1, hi + 1)):
            reach = acc[codes >= k]
            assert t[n, j] == (reach.min() if reach.size else a_hi + 1)
