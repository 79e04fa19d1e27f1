"""SRS rounding and saturation against an independent oracle written with exact fractions."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn2aie.numerics import AIE_ROUNDING_MODES, saturate, shift_round


def oracle_round(x: int, shift: int, mode: str) -> int:
    """Rounding of the exact rational x / 2**shift, from the mode definitions (aie-ml.md section 5)."""
    v = Fraction(x, 2**shift)
    lo = floor(v)
    frac = v - lo
    if frac == 0:
        return lo
    if mode == "floor":
        return lo
    if mode == "ceil":
        return lo + 1
    if mode == "symmetric_floor":  # toward zero
        return lo if v > 0 else lo + 1
    if mode == "symmetric_ceil":  # away from zero
        return lo + 1 if v > 0 else lo
    half = Fraction(1, 2)
    if frac != half:
        return lo + 1 if frac > half else lo
    return {
        "negative_inf": lo,
        "positive_inf": lo + 1,
        "symmetric_zero": lo if v > 0 else lo + 1,
        "symmetric_inf": lo + 1 if v > 0 else lo,
        "conv_even": lo if lo % 2 == 0 else lo + 1,
        "conv_odd": lo if lo % 2 == 1 else lo + 1,
    }[mode]


@pytest.mark.parametrize("mode", AIE_ROUNDING_MODES)
def test_ties_and_neighbours_every_mode(mode):
    shift = 3
    xs = []
    for k in range(-6, 7):
        for r in range(-9, 10):
            xs.append(k * 8 + r)  # includes exact ties (r = +-4) on both signs
    got = shift_round(np.array(xs, dtype=np.int64), shift, mode)
    want = [oracle_round(x, shift, mode) for x in xs]
    assert got.tolist() == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), st.integers(1, 20),
       st.sampled_from(AIE_ROUNDING_MODES))
def test_random_values_match_oracle(xs, shift, mode):
    got = shift_round(np.array(xs, dtype=np.int64), shift, mode)
    assert got.tolist() == [oracle_round(x, shift, mode) for x in xs]


def test_zero_and_negative_shift_are_exact_scaling():
    x = np.array([-5, 0, 7], dtype=np.int64)
    assert shift_round(x, 0, "conv_even").tolist() == [-5, 0, 7]
    assert shift_round(x, -2, "floor").tolist() == [-20, 0, 28]


def test_saturation_modes():
    x = np.array([-300, -128, -127, 0, 127, 128, 300], dtype=np.int64)
    assert saturate(x, 8, True, "saturate").tolist() == [-128, -128, -127, 0, 127, 127, 127]
    assert saturate(x, 8, True, "symmetric").tolist() == [-127, -127, -127, 0, 127, 127, 127]
    # wrap keeps the low 8 bits as two's complement
    assert saturate(x, 8, True, "none").tolist() == [((v + 128) % 256) - 128 for v in x.tolist()]
    assert saturate(np.array([-1, 0, 255, 256]), 8, False, "saturate").tolist() == [0, 0, 255, 255]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**23) + 1, 2**23 - 1), min_size=1, max_size=30), st.integers(0, 12),
       st.sampled_from(AIE_ROUNDING_MODES), st.sampled_from(["saturate", "symmetric", "none"]),
       st.sampled_from([(8, True), (8, False), (16, True), (16, False)]), st.sampled_from([np.float32, np.float64]))
def test_float_fast_path_equals_integer_srs(xs, shift, mode, sat, container, dtype):
    from nn2aie.numerics import srs, srs_float

    bits, signed = container
    x = np.array(xs, dtype=np.int64)
    want = srs(x, shift, bits, signed, mode, sat)
    got = srs_float(x.astype(dtype), shift, bits, signed, mode, sat)
    assert np.array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("mode", AIE_ROUNDING_MODES)
def test_float_fast_path_ties_at_the_float32_limit(mode):
    from nn2aie.numerics import shift_round_float

    shift = 4
    xs = np.array([k * 16 + r for k in (-(2**19) + 1, -3, 0, 3, 2**19 - 1) for r in range(-8, 9)], dtype=np.int64)
    got = shift_round_float(xs.astype(np.float32), shift, mode)
    assert got.astype(np.int64).tolist() == [oracle_round(int(x), shift, mode) for x in xs]


@pytest.mark.parametrize("mode", AIE_ROUNDING_MODES)
def test_inplace_float_path_equals_copying_path(mode):
    from nn2aie.numerics import srs_float

    x = np.arange(-5000, 5000, 7, dtype=np.float32)
    want = srs_float(x.copy(), 5, 8, True, mode, "saturate")
    got = srs_float(x.copy(), 5, 8, True, mode, "saturate", inplace=True)
    assert np.array_equal(got, want)
