"""nn2aie's logical requantization (``ir.evaluate.requantize``) against independent implementations of the
source frameworks' arithmetic, on exact ties (k + 1/2 LSB, both signs), overflow boundaries and random values:

- `quantizers` (PyPI, NumPy entry point ``get_fixed_quantizer_np``): the ap_fixed reference used by hls4ml's
  bit-exact flow, for all 7 ap_fixed rounding x 3 overflow modes (WRAP, SAT, SAT_SYM), signed and unsigned;
- qonnx's own Quant kernel (``qonnx.custom_op.general.quant.quant``) for every QONNX rounding_mode, narrow and
  not, signed and unsigned;
- the UG1399 worked examples (ap_fixed<3,2>).

Codes must be identical (``np.array_equal``). Every value is exactly representable in float64, so the float
oracles compute exactly.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.evaluate import requantize
from nn2aie.ir.types import FixedType
from nn2aie.numerics import QONNX_TO_IR_ROUNDING

AP_ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
AP_OVERFLOWS = ("WRAP", "SAT", "SAT_SYM")
# (W, I, signed): ap_fixed<W, I> / ap_ufixed<W, I>; I may exceed W or be negative
AP_TYPES = [(8, 3, True), (6, 2, True), (3, 2, True), (4, 4, True), (16, 6, True), (5, -1, True), (8, 9, True),
            (8, 3, False), (4, 0, False), (6, 6, False), (16, 4, False)]
SHIFTS = (0, 1, 2, 3, 6)  # accumulator fractional bits beyond the output's


def probe_accumulators(t: FixedType, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Accumulators (at frac = t.frac + shift) around every interesting output code: exact codes, exact ties
    (code + 1/2 LSB), one accumulator LSB either side of a tie, around 0, around min/max (and the symmetric
    minimum), one and several wrap periods out; plus random values over a range 4x wider than the type."""
    span = 1 << t.width
    centres = {0, 1, -1, 2, -2, t.min_code, t.max_code, -t.max_code, t.min_code - 1, t.max_code + 1,
               t.max_code + span, t.min_code - span, 3 * span + 5, -3 * span - 5}
    codes = np.array(sorted(c + d for c in centres for d in (-1, 0, 1)), dtype=np.int64)
    one = 1 << shift
    offsets = {0} if shift == 0 else {0, one // 2, -(one // 2), one // 2 + 1, one // 2 - 1, -(one // 2) - 1,
                                      -(one // 2) + 1, one - 1, -(one - 1)}
    probes = (codes[:, None] * one + np.array(sorted(offsets), dtype=np.int64)[None, :]).ravel()
    rand = rng.integers(-4 * span * one, 4 * span * one + 1, size=400)
    return np.unique(np.concatenate([probes, rand]))


# ---------------------------------------------------------------------------------------------------------------
# quantizers (ap_fixed reference)
# ---------------------------------------------------------------------------------------------------------------
quantizers = pytest.importorskip("quantizers", reason="the `quantizers` package (test extra) is not installed")


def quantizers_codes(values: np.ndarray, w: int, i: int, signed: bool, rounding: str, overflow: str) -> np.ndarray:
    """ap_fixed<W, I, rounding, overflow> of float values by `quantizers`, as integer codes (value * 2**f)."""
    q = quantizers.get_fixed_quantizer_np(rounding, overflow)
    k = 1 if signed else 0
    f = w - i
    out = q(np.asarray(values, dtype=np.float64), np.float64(k), np.float64(i - k), np.float64(f))
    codes = np.ldexp(out, f)
    assert np.array_equal(codes, np.round(codes)), "quantizers returned a value off the output grid"
    return codes.astype(np.int64)


@pytest.mark.parametrize("overflow", AP_OVERFLOWS)
@pytest.mark.parametrize("rounding", AP_ROUNDINGS)
def test_requantize_equals_quantizers_ap_fixed(rounding, overflow):
    rng = np.random.default_rng(zlib.crc32(f"{rounding}/{overflow}".encode()))
    checked = 0
    for w, i, signed in AP_TYPES:
        t = FixedType(w, w - i, signed, rounding, overflow)
        for shift in SHIFTS:
            acc = probe_accumulators(t, shift, rng)
            acc_frac = t.frac + shift
            want = quantizers_codes(np.ldexp(acc.astype(np.float64), -acc_frac), w, i, signed, rounding, overflow)
            got = requantize(acc, acc_frac, t, "oracle")
            bad = np.nonzero(got != want)[0]
            assert bad.size == 0, (f"ap_{'' if signed else 'u'}fixed<{w},{i},AP_{rounding},AP_{overflow}> shift "
                                   f"{shift}: acc {acc[bad[:5]].tolist()} -> nn2aie {got[bad[:5]].tolist()}, "
                                   f"quantizers {want[bad[:5]].tolist()}")
            checked += acc.size
    assert checked > 20000


@pytest.mark.parametrize("rounding", AP_ROUNDINGS)
def test_exact_output_finer_than_accumulator(rounding):
    """Negative SRS shift (output finer than the accumulator): exact scaling, then the overflow mode."""
    for overflow in AP_OVERFLOWS:
        t = FixedType(8, 6, True, rounding, overflow)
        acc = np.arange(-300, 301, dtype=np.int64)
        want = quantizers_codes(np.ldexp(acc.astype(np.float64), -5), 8, 2, True, rounding, overflow)
        assert np.array_equal(requantize(acc, 5, t, "oracle"), want)


@pytest.mark.parametrize(("rounding", "x", "want"), [
    # UG1399 (Vitis HLS, ap_fixed quantization modes), ap_fixed<3,2>: LSB 0.5
    ("RND", 1.25, 1.5), ("RND", -1.25, -1.0),
    ("RND_ZERO", 1.25, 1.0), ("RND_ZERO", -1.25, -1.0),
    ("RND_MIN_INF", 1.25, 1.0), ("RND_MIN_INF", -1.25, -1.5),
    ("RND_INF", 1.25, 1.5), ("RND_INF", -1.25, -1.5),
    ("RND_CONV", 0.75, 1.0), ("RND_CONV", -1.25, -1.0), ("RND_CONV", 1.25, 1.0),
    ("TRN", 1.25, 1.0), ("TRN", -1.25, -1.5),
    ("TRN_ZERO", 1.25, 1.0), ("TRN_ZERO", -1.25, -1.0),
])
def test_ug1399_worked_examples(rounding, x, want):
    t = FixedType(3, 1, True, rounding, "SAT")
    code = requantize(np.array([round(x * 4)]), 2, t, "ug1399")  # x at 2 fractional bits
    assert code.tolist() == [round(want * 2)]
    assert quantizers_codes(np.array([x]), 3, 2, True, rounding, "SAT").tolist() == [round(want * 2)]


def test_clip_before_round_equals_round_before_clip():
    """`quantizers` clips before rounding in the saturating modes; nn2aie (and the SRS) rounds first. Values just
    above max / below min, which round back into range or out of it, give the same codes."""
    t = FixedType(4, 1, True, "RND", "SAT")  # codes [-8, 7], LSB 0.5: max 3.5, min -4.0
    acc = np.array([896, 897, 959, 960, 961, 1023, -1024, -1025, -1087, -1088, -1089, -1152])  # x = acc / 256
    xs = np.ldexp(acc.astype(np.float64), -8)  # 3.5, 3.504, 3.746, 3.75 (tie), ..., -4.25 (tie), -4.254, -4.5
    want = quantizers_codes(xs, 4, 3, True, "RND", "SAT")
    assert requantize(acc, 8, t, "oracle").tolist() == want.tolist() == [7] * 6 + [-8] * 6


def test_sat_zero_and_narrow_wrap_are_refused_with_the_tensor_named():
    with pytest.raises(UnsupportedQuantizationError, match=r"layer fc2 output y.*AP_SAT_ZERO.*AP_SAT"):
        requantize(np.array([1]), 3, FixedType(8, 2, True, "RND", "SAT_ZERO"), "layer fc2 output y")
    with pytest.raises(UnsupportedQuantizationError, match="narrow"):
        requantize(np.array([1]), 3, FixedType(8, 2, True, "RND", "WRAP", narrow=True), "t")


# ---------------------------------------------------------------------------------------------------------------
# qonnx Quant
# ---------------------------------------------------------------------------------------------------------------
QONNX_TYPES = [(2, True), (3, True), (4, True), (8, True), (16, True), (1, False), (2, False), (4, False),
               (8, False), (16, False)]


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("mode", sorted(QONNX_TO_IR_ROUNDING))
def test_requantize_equals_qonnx_quant(mode, narrow):
    qonnx_quant = pytest.importorskip("qonnx.custom_op.general.quant").quant
    rng = np.random.default_rng(zlib.crc32(f"{mode}/{narrow}".encode()))
    for width, signed in QONNX_TYPES:
        if narrow and not signed and width == 1:
            continue  # unsigned 1-bit narrow has the single code 0
        for frac in (0, 3, -2):
            t = FixedType(width, frac, signed, QONNX_TO_IR_ROUNDING[mode], "SAT", narrow)
            for shift in (0, 1, 2, 4):
                acc = probe_accumulators(t, shift, rng)
                acc_frac = frac + shift
                x = np.ldexp(acc.astype(np.float64), -acc_frac)
                scale = np.float64(2.0**-frac)
                out = qonnx_quant(x, scale, np.float64(0.0), np.float64(width), int(signed), int(narrow), mode)
                want = out / scale
                assert np.array_equal(want, np.round(want))
                got = requantize(acc, acc_frac, t, "oracle")
                bad = np.nonzero(got != want.astype(np.int64))[0]
                assert bad.size == 0, (f"Quant(bits={width}, signed={signed}, narrow={narrow}, {mode}) frac {frac} "
                                       f"shift {shift}: acc {acc[bad[:5]].tolist()} -> nn2aie "
                                       f"{got[bad[:5]].tolist()}, qonnx {want[bad[:5]].tolist()}")
