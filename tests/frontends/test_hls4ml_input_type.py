"""The Input type the nn2aie hls4ml backend chooses before an input quantizer (``exact_input_type``) and the check
of a configured one (``input_cast_is_exact``), against an independent oracle: ap_fixed's documented quantization
and overflow modes computed on exact rationals (``fractions.Fraction``) for float32 values of every exponent."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from nn2aie.frontends.hls4ml_frontend import exact_input_type, input_cast_is_exact
from nn2aie.ir.evaluate import cast_float, cast_input
from nn2aie.ir.types import FixedType


def ap_cast(value: Fraction, t: FixedType) -> Fraction:
    """ap_[u]fixed<W, W - frac, Q, O>(value): quantization mode Q on the 2**-frac grid, then overflow mode O."""
    s = value * Fraction(2)**t.frac
    fl = math.floor(s)
    r = s - fl
    half = Fraction(1, 2)
    up = {
        "TRN": False,
        "TRN_ZERO": r > 0 and s < 0,
        "RND": r >= half,
        "RND_ZERO": r > half or (r == half and s < 0),
        "RND_MIN_INF": r > half,
        "RND_INF": r > half or (r == half and s > 0),
        "RND_CONV": r > half or (r == half and fl % 2 == 1),
    }[t.rounding]
    code = fl + int(up)
    lo, hi = (-(1 << (t.width - 1)), (1 << (t.width - 1)) - 1) if t.signed else (0, (1 << t.width) - 1)
    if t.overflow == "SAT_SYM" and t.signed:
        lo = -hi
    if t.overflow == "WRAP":
        code = (code - lo) % (1 << t.width) + lo
    else:
        code = min(max(code, lo), hi)
    return code / Fraction(2)**t.frac


def float32_samples(q: FixedType, n: int, seed: int) -> np.ndarray:
    """Random float32 bit patterns (every exponent, subnormals, both signs), q's rounding ties and their
    neighbours, and values around the smallest magnitudes the argument of exact_input_type distinguishes."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[np.isfinite(bits)]
    ties = ((np.arange(q.min_code - 2, q.max_code + 3) + 0.5) * 2.0**-q.frac).astype(np.float32)
    small = np.float32([2.0**-(q.frac + k) for k in (1, 2, 3, 25, 26)] + [1e-45, 0.0])
    centres = np.concatenate([ties, small, -ties, -small])
    scaled = (rng.uniform(-1, 1, size=n) * 2.0 ** (q.width - q.frac + 2)).astype(np.float32)
    return np.concatenate([bits, scaled, centres, np.nextafter(centres, np.float32(np.inf)),
                           np.nextafter(centres, np.float32(-np.inf))])


SIGN_ROUNDINGS = ("TRN_ZERO", "RND_ZERO", "RND_INF")  # look at the value's sign, which a wrap can flip
QUANTIZERS = [FixedType(8, 4, True, r, "SAT") for r in ("RND_CONV", "TRN", "RND", "RND_MIN_INF") + SIGN_ROUNDINGS]
QUANTIZERS += [FixedType(8, 4, True, r, "WRAP") for r in ("RND_CONV", "TRN", "RND", "RND_MIN_INF")]
QUANTIZERS += [FixedType(8, 3, False, "RND_CONV", "SAT"), FixedType(8, 8, False, "RND", "SAT"),
               FixedType(4, -2, True, "RND_CONV", "SAT_SYM"), FixedType(16, 10, True, "RND_CONV", "SAT")]


@pytest.mark.parametrize("q", QUANTIZERS, ids=lambda t: t.describe())
def test_exact_input_type_makes_the_double_cast_the_quantizer(q):
    pre = exact_input_type(q)
    assert pre is not None
    x = float32_samples(q, 3000, seed=q.width * 31 + q.frac)
    direct = [ap_cast(Fraction(float(v)), q) for v in x]
    twice = [ap_cast(ap_cast(Fraction(float(v)), pre), q) for v in x]
    assert direct == twice
    # nn2aie's host cast computes the same codes (what predict() feeds the design)
    want = np.array([int(d * Fraction(2)**q.frac) for d in direct], dtype=np.int64)
    assert np.array_equal(cast_input(x, q, pre, "x"), want)
    assert np.array_equal(cast_float(x, q, "x"), want)
    assert input_cast_is_exact(pre, q)


@pytest.mark.parametrize("pre_text, pre", [("fixed<16,6>", FixedType(16, 10, True, "TRN", "WRAP")),
                                           ("fixed<32,16>", FixedType(32, 16, True, "TRN", "WRAP")),
                                           ("fixed<48,16>", FixedType(48, 32, True, "TRN", "WRAP"))])
def test_hls4ml_default_input_types_are_flagged_and_do_differ(pre_text, pre):
    """hls4ml's usual Input types before an int8 quantizer: the check says 'may differ', and a float32 input where
    they do differ exists (found by the oracle, not by the code under test)."""
    q = FixedType(8, 4, True, "RND_CONV", "SAT")
    assert not input_cast_is_exact(pre, q)
    x = float32_samples(q, 3000, seed=1)
    differ = [float(v) for v in x if ap_cast(ap_cast(Fraction(float(v)), pre), q) != ap_cast(Fraction(float(v)), q)]
    assert differ, f"{pre_text}: no counterexample among the samples"


def test_truncation_before_truncation_is_exact():
    q = FixedType(8, 4, True, "TRN", "SAT")
    pre = FixedType(16, 8, True, "TRN", "SAT")
    assert input_cast_is_exact(pre, q)
    x = float32_samples(q, 2000, seed=2)
    assert all(ap_cast(ap_cast(Fraction(float(v)), pre), q) == ap_cast(Fraction(float(v)), q) for v in x)


def test_no_exact_type_when_it_would_be_too_wide_or_mode_is_not_ap_fixed():
    assert exact_input_type(FixedType(40, 20, True, "RND_CONV", "SAT")) is None
    assert exact_input_type(FixedType(8, 4, True, "RND_CONV", "SAT_ZERO")) is None


@pytest.mark.parametrize("rounding", SIGN_ROUNDINGS)
def test_no_exact_type_for_a_wrapping_quantizer_with_sign_rounding(rounding):
    """A wrap in the first cast can flip the sign the quantizer's rounding looks at: the oracle finds a float32
    where the wide wrapping type (exact for the shift-invariant roundings) differs, so None is the true answer."""
    q = FixedType(8, 4, True, rounding, "WRAP")
    assert exact_input_type(q) is None
    wide = FixedType(34, 29, True, "TRN", "WRAP")
    assert not input_cast_is_exact(wide, q)
    x = float32_samples(q, 3000, seed=9)
    assert any(ap_cast(ap_cast(Fraction(float(v)), wide), q) != ap_cast(Fraction(float(v)), q) for v in x)


def test_wrap_cast_of_huge_values_wraps_like_ap_fixed():
    t = FixedType(32, 16, True, "TRN", "WRAP")
    x = np.float32([3e38, -3e38, 1e30, 2.0**31 + 2.0**15 + 0.75, -(2.0**40) - 3.25, 7.5])
    want = [int(ap_cast(Fraction(float(v)), t) * Fraction(2)**t.frac) for v in x]
    assert cast_float(x, t, "x").tolist() == want
