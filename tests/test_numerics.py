"""SRS rounding and saturation against an independent oracle written with exact fractions."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn2aie.numerics import AIE_ROUNDING_MODES, div_round, saturate, shift_round


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


# -- acc64 -> 8-bit outputs: SRS to 16 bits, then pack (AIE-API lowering) equals one SRS step --------------------
@pytest.mark.parametrize("saturation", ["none", "saturate", "symmetric"])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("mode", AIE_ROUNDING_MODES)
def test_srs_to_16_then_pack_equals_one_step_srs(mode, signed, saturation):
    from nn2aie.numerics import srs, srs_then_pack

    rng = np.random.default_rng(7)
    shift = 5
    # exact ties, the 8- and 16-bit boundaries (and their neighbours) at the output LSB, and random values
    edges = [-(2**15), -(2**15) - 1, -(2**15) + 1, 2**15 - 1, 2**15, -129, -128, -127, 127, 128, 255, 256, 0, 1, -1]
    codes = np.array([e + d for e in edges for d in (-1, 0, 1)], dtype=np.int64)
    xs = np.concatenate([(codes << shift) + r for r in (-(2**4), -1, 0, 1, 2**4)]
                        + [rng.integers(-(2**40), 2**40, 2000), rng.integers(-(2**20), 2**20, 2000)])
    one = srs(xs, shift, 8, signed, mode, saturation)
    two = srs_then_pack(xs, shift, 16, 8, signed, mode, saturation)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("saturation", ["none", "saturate", "symmetric"])
def test_pack_never_rounds_and_saturates_per_mode(saturation):
    from nn2aie.numerics import pack

    x = np.array([-32768, -300, -129, -128, -127, -1, 0, 1, 127, 128, 300, 32767], dtype=np.int64)
    assert np.array_equal(pack(x, 8, True, saturation), saturate(x, 8, True, saturation))


# -- mode tables ----------------------------------------------------------------------------------------------
def test_ir_rounding_names_map_to_aie_modes():
    from nn2aie.numerics import IR_TO_AIE_ROUNDING, QONNX_TO_IR_ROUNDING, aie_rounding

    assert set(IR_TO_AIE_ROUNDING.values()) <= set(AIE_ROUNDING_MODES)
    assert set(QONNX_TO_IR_ROUNDING.values()) <= set(IR_TO_AIE_ROUNDING)
    assert aie_rounding("CEIL") == "ceil" and aie_rounding("RND") == "positive_inf"
    from nn2aie.errors import UnsupportedQuantizationError

    with pytest.raises(UnsupportedQuantizationError, match="rounding mode 'AP_RND'"):
        aie_rounding("AP_RND", "tensor y")


def test_saturation_table_and_refusals():
    from nn2aie.errors import UnsupportedQuantizationError
    from nn2aie.numerics import aie_saturation

    assert aie_saturation("WRAP", "t") == "none"
    assert aie_saturation("SAT", "t") == "saturate"
    assert aie_saturation("SAT_SYM", "t") == "symmetric"
    assert aie_saturation("SAT_SYM", "t", signed=False) == "saturate"  # [0, max] either way
    with pytest.raises(UnsupportedQuantizationError, match=r"tensor y1.*AP_SAT_ZERO.*AP_SAT"):
        aie_saturation("SAT_ZERO", "tensor y1")


# -- arbitrary-precision fallback -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", AIE_ROUNDING_MODES)
def test_huge_shifts_use_exact_python_ints(mode):
    from nn2aie.numerics import needs_wide_ints

    xs = [-(2**62), -(2**61) - 1, -(2**61), -5, 0, 5, 2**61, 2**61 + 1, 2**62 - 1]
    for shift in (62, 63, 70):
        assert needs_wide_ints(2**62, shift)
        got = shift_round(np.array(xs, dtype=np.int64).astype(object), shift, mode)
        assert [int(v) for v in got] == [oracle_round(x, shift, mode) for x in xs]
    left = shift_round(np.array([3, -3], dtype=object), -70, "floor")
    assert [int(v) for v in left] == [3 << 70, -3 << 70]
    assert [int(v) for v in saturate(left, 8, True, "none")] == [0, 0]
    assert [int(v) for v in saturate(left, 8, True, "saturate")] == [127, -128]


def oracle_div_round(num: int, den: int, mode: str) -> int:
    """Rounding of the exact rational num / den, from the same definitions as ``oracle_round`` (any den > 0)."""
    v = Fraction(num, den)
    lo = floor(v)
    frac = v - lo
    if frac == 0:
        return lo
    if mode in ("floor", "ceil", "symmetric_floor", "symmetric_ceil"):
        return {"floor": lo, "ceil": lo + 1, "symmetric_floor": lo if v > 0 else lo + 1,
                "symmetric_ceil": lo + 1 if v > 0 else lo}[mode]
    half = Fraction(1, 2)
    if frac != half:
        return lo + 1 if frac > half else lo
    return {"negative_inf": lo, "positive_inf": lo + 1, "symmetric_zero": lo if v > 0 else lo + 1,
            "symmetric_inf": lo + 1 if v > 0 else lo, "conv_even": lo if lo % 2 == 0 else lo + 1,
            "conv_odd": lo if lo % 2 == 1 else lo + 1}[mode]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), st.integers(1, 10**6),
       st.sampled_from(AIE_ROUNDING_MODES))
def test_div_round_matches_oracle_on_any_denominator(xs, den, mode):
    # ties included: multiples of den / 2 when den is even
    xs = xs + [den * k + den // 2 for k in (-3, -1, 0, 2)] if den % 2 == 0 else xs
    got = div_round(np.array(xs, dtype=np.int64), den, mode)
    assert got.tolist() == [oracle_div_round(x, den, mode) for x in xs]
    objects = div_round(np.array([x * 2**30 for x in xs], dtype=object), den * 2**30, mode)
    assert objects.tolist() == got.tolist()  # exact Python ints: same result at any size


@pytest.mark.parametrize("mode", AIE_ROUNDING_MODES)
def test_div_round_by_a_power_of_two_is_shift_round(mode):
    xs = np.arange(-300, 301, dtype=np.int64)
    assert np.array_equal(div_round(xs, 16, mode), shift_round(xs, 4, mode))


def test_isqrt_int64_equals_math_isqrt():
    import math

    from nn2aie.numerics import isqrt_int64

    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(0, 1 << 62, 20000), np.arange(0, 5000),
                        np.array([(1 << 31) - 1, 1 << 31, (1 << 61) - 1, 1 << 61, (1 << 62) - 1])])
    squares = np.array([s * s + d for s in rng.integers(0, 1 << 31, 2000).tolist() for d in (-1, 0, 1) if s * s + d >= 0
                        and s * s + d < 1 << 62], dtype=np.int64)
    v = np.concatenate([v, squares])
    assert isqrt_int64(v).tolist() == [math.isqrt(int(x)) for x in v]


def test_shift_round_half_even_per_element_shifts():
    from fractions import Fraction

    from nn2aie.numerics import shift_round_half_even

    rng = np.random.default_rng(1)
    x = rng.integers(-(1 << 50), 1 << 50, 5000)
    s = rng.integers(1, 40, 5000)
    x[:8] = [3, 5, -3, -5, 1, -1, 6, -6]
    s[:8] = 1

    def want(v: int, k: int) -> int:
        q = Fraction(v, 1 << k)
        f = q.numerator // q.denominator
        r = q - f
        return f + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and f % 2) else 0)

    assert shift_round_half_even(x, s).tolist() == [want(int(a), int(b)) for a, b in zip(x, s, strict=True)]
