"""The SRS epilogue chosen by kernels/dense/precision.py reproduces the logical model exactly, for every rounding and
overflow mode, type pair and output container, over the whole accumulator range the types allow; and the
combinations it cannot reproduce are refused with a message naming the tensor.

The kernel epilogue is modelled step by step as the emitted C++ runs it (AIE-API lowering): ``to_vector<o_t>
(SHIFT)`` = one SRS for acc32 -> 8/16 bit and acc64 -> 16 bit, SRS to 16 bit then ``pack`` for acc64 -> 8 bit;
then ``aie::max`` / ``aie::min`` with the clamp bounds; then, for AP_WRAP into a type narrower than its container,
the wrap step (keep the low ``wrap_bits`` bits, sign-extended or masked).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nn2aie.devices import get_device
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.evaluate import accumulator_frac, requantize
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType
from nn2aie.kernels.dense.precision import plan_precision
from nn2aie.numerics import srs, srs_then_pack

DEVICE = get_device("xcve2802")
ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "CEIL", "UP")
PAIRS = {"int8xint8": (8, 8), "int16xint8": (16, 8), "int16xint16": (16, 16)}


def one_layer(x_t: FixedType, w_t: FixedType, y_t: FixedType, k: int = 24, n: int = 8, relu: bool = False,
              bias: bool = True, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    tensors = {
        "x": Tensor("x", (k,), x_t),
        "w": Tensor("w", (k, n), w_t, rng.integers(w_t.min_code, w_t.max_code + 1, size=(k, n))),
        "y": Tensor("y", (n,), y_t, origin="model/out"),
    }
    inputs = ["x", "w"]
    if bias:
        b_t = FixedType(32, x_t.frac + w_t.frac, True)
        tensors["b"] = Tensor("b", (n,), b_t, rng.integers(-(1 << 10), 1 << 10, size=n))
        inputs.append("b")
    op = Op("fc", "dense", inputs, ["y"], {"activation": "relu" if relu else "linear"})
    return Graph("g", tensors, [op], ["x"], ["y"], {"framework": "test"})


def kernel_epilogue(acc: np.ndarray, e: DenseExec) -> np.ndarray:
    """What the tile does with an accumulator lane, step by step (see the module docstring)."""
    bits = int(e.out_dtype.removeprefix("u").removeprefix("int"))
    signed = not e.out_dtype.startswith("u")
    if e.acc == "acc64" and bits == 8:
        y = srs_then_pack(acc, e.shift, 16, 8, signed, e.rounding, e.saturation)
    else:
        y = srs(acc, e.shift, bits, signed, e.rounding, e.saturation)
    y = np.minimum(np.maximum(y, e.clamp_lo), e.clamp_hi)
    if e.wrap_bits:  # upshift by (bits - wrap_bits), then arithmetic downshift (signed) / mask (unsigned)
        y = srs(y, 0, e.wrap_bits, signed, "floor", "none")
    return y


def accumulator_probes(e: DenseExec, out: FixedType, rng: np.random.Generator) -> np.ndarray:
    """Every accumulator class that matters, within |acc| <= acc_bound: ties and their neighbours around each
    output code near 0, the clamp/overflow boundaries, the container boundaries, the bound itself, random."""
    one = 1 << max(e.shift, 0)
    half = one // 2
    codes = {0, 1, -1, 2, -2, out.min_code, out.max_code, -out.max_code, out.min_code - 1, out.max_code + 1,
             -(1 << (out.container_bits - 1)), (1 << (out.container_bits - 1)) - 1, (1 << out.container_bits) - 1,
             1 << out.container_bits, 1 << 15, -(1 << 15) - 1}
    offsets = {0, half, -half, half + 1, half - 1, -half - 1, -half + 1, one - 1, 1 - one}
    if e.shift < 0:
        codes = {c >> -e.shift for c in codes}
        offsets = {0}
    probes = [c * one + d for c in codes for d in offsets]
    probes += [e.acc_bound, -e.acc_bound, e.acc_bound - 1, 1 - e.acc_bound]
    probes = np.array(probes, dtype=np.int64)
    probes = probes[np.abs(probes) <= e.acc_bound]
    rand = rng.integers(-e.acc_bound, e.acc_bound + 1, size=1000)
    small = rng.integers(-64 * one, 64 * one + 1, size=1000)
    small = small[np.abs(small) <= e.acc_bound]  # the contract covers |acc| <= acc_bound only
    return np.unique(np.concatenate([probes, rand, small]))


def check_epilogue(graph: Graph, seed: int = 0) -> DenseExec:
    op = graph.ops[0]
    e = plan_precision(graph, op, DEVICE, 4)
    out = graph.tensor("y").type
    acc = accumulator_probes(e, out, np.random.default_rng(seed))
    want = requantize(np.maximum(acc, 0) if e.relu else acc, accumulator_frac(graph, op), out, "test")
    got = kernel_epilogue(acc, e)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, (f"{out.describe()} via {e.acc} shift {e.shift} {e.rounding}/{e.saturation} clamp "
                           f"[{e.clamp_lo}, {e.clamp_hi}]: acc {acc[bad[:5]].tolist()} -> kernel "
                           f"{got[bad[:5]].tolist()}, logical {want[bad[:5]].tolist()}")
    return e


# (output width, container, signed, narrow, overflow) combinations the epilogue supports
OUTPUTS = [(w, s, nr, ov) for w in (8, 6, 16, 12, 3) for s in (True, False) for nr in (False, True)
           for ov in ("SAT", "SAT_SYM", "WRAP") if not (ov == "WRAP" and nr)]


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_epilogue_equals_logical_model(pair, rounding):
    a_bits, w_bits = PAIRS[pair]
    x_t = FixedType(a_bits, 5 if a_bits == 8 else 11, True)
    w_t = FixedType(w_bits, 7 if w_bits == 8 else 13, True)
    acc_frac = x_t.frac + w_t.frac
    n = 0
    for (width, signed, narrow, overflow), relu in itertools.product(OUTPUTS, (False, True)):
        for shift in (-1, 0, 1, 4, 9, 17):
            y_t = FixedType(width, acc_frac - shift, signed, rounding, overflow, narrow)
            if overflow == "WRAP" and relu:  # refused only when a full-width type or the container could wrap
                try:
                    e = check_epilogue(one_layer(x_t, w_t, y_t, relu=relu), seed=n)
                    assert e.saturation == "saturate"
                    assert e.wrap_bits in (0, width) and (e.wrap_bits == 0 or width < y_t.container_bits)
                except UnsupportedQuantizationError as err:
                    assert "ReLU followed by a wrapping output type" in str(err)
                n += 1
                continue
            e = check_epilogue(one_layer(x_t, w_t, y_t, relu=relu), seed=n)
            assert e.acc == ("acc64" if pair == "int16xint16" else "acc32")
            n += 1
    assert n == len(OUTPUTS) * 2 * 6


def test_unsigned_inputs_and_outputs():
    x_t = FixedType(8, 4, False)  # uint8 activations (after a ReLU)
    for rounding, overflow in itertools.product(ROUNDINGS, ("SAT", "SAT_SYM", "WRAP")):
        for width in (8, 16):
            e = check_epilogue(one_layer(x_t, FixedType(8, 7, True), FixedType(width, 6, False, rounding, overflow)))
            assert e.out_dtype == f"uint{width}"
            if overflow == "SAT_SYM":
                assert e.saturation == "saturate"  # unsigned symmetric == plain saturation


def test_modes_reach_the_plan():
    g = one_layer(FixedType(16, 11, True), FixedType(8, 7, True), FixedType(8, 15, True, "RND_MIN_INF", "SAT_SYM"))
    e = check_epilogue(g)
    assert (e.acc, e.shift, e.rounding, e.saturation, e.clamp_lo, e.clamp_hi) == (
        "acc32", 3, "negative_inf", "symmetric", -127, 127)


# -- refusals ---------------------------------------------------------------------------------------------------
X8, W8 = FixedType(8, 5, True), FixedType(8, 7, True)


@pytest.mark.parametrize(("y_t", "match"), [
    (FixedType(8, 6, True, "RND", "SAT_ZERO"), r"output tensor model/out.*AP_SAT_ZERO.*AP_SAT"),
    (FixedType(8, 6, True, "RND", "WRAP", narrow=True), r"model/out.*narrow"),
    (FixedType(24, 6, True), r"model/out.*acc32 -> int32 conversion ignores the SRS shift.*shift 0, here 6"),
    (FixedType(32, 6, True), r"model/out.*32-bit"),
    (FixedType(8, 14, True), r"model/out.*2 bits finer.*shift left by 2.*at most 1 bit.*-4..-2 are unsafe"),
    (FixedType(8, 12 - 60, True), r"model/out.*shift right by 60.*at most 59"),
    (FixedType(8, 6, True, "AP_RND"), r"model/out.*rounding mode 'AP_RND'"),
])
def test_refused_with_the_tensor_named(y_t, match):
    with pytest.raises(UnsupportedQuantizationError, match=match):
        plan_precision(one_layer(X8, W8, y_t), one_layer(X8, W8, y_t).ops[0], DEVICE, 4)


def test_left_shift_that_could_overflow_the_lanes_is_refused():
    # int8 x int8, K = 2^16: |acc| <= 2^16 * 2^7 * 2^7 = 2^30 fits acc32, but 2^30 << 1 does not
    x_t, w_t = FixedType(8, 0, True), FixedType(8, 0, True)
    g = one_layer(x_t, w_t, FixedType(16, 1, True), k=1 << 16, bias=False)
    g.tensors["w"].data[:] = -128  # the bound follows the actual weights: make them the worst case
    with pytest.raises(UnsupportedQuantizationError, match="left shift by 1 could overflow the acc32 lanes"):
        plan_precision(g, g.ops[0], DEVICE, 4)
    ok = one_layer(x_t, w_t, FixedType(16, 1, True), k=60000, bias=False)
    ok.tensors["w"].data[:] = -128
    assert plan_precision(ok, ok.ops[0], DEVICE, 4).shift == -1


def test_catalog_shift_ranges_cite_ug1583():
    assert DEVICE.fact("srs_shift_range") == [-4, 59]
    assert DEVICE.fact("srs_shift_safe_range") == [-1, 59]
    assert "unsafe" in DEVICE.fact_source("srs_shift_safe_range")
    assert DEVICE.fact("srs_outputs")["acc64"]["int8"] == "srs16+pack"
    assert DEVICE.fact("srs_outputs")["acc32"]["int32"] == "reinterpret"


def test_relu_into_wrapping_type_is_exact_when_no_sum_can_wrap_and_refused_otherwise():
    small_w = FixedType(3, 7, True)  # |w| <= 4: with k=24 and int8 inputs, |acc| <= 24*128*4 + 1023 = 13311
    ok = one_layer(X8, small_w, FixedType(8, 12 - 7, True, "RND", "WRAP"), relu=True)  # shift 7: <= 104
    e = check_epilogue(ok)
    assert e.saturation == "saturate" and e.clamp_lo == 0
    wraps = one_layer(X8, small_w, FixedType(8, 12 - 3, True, "RND", "WRAP"), relu=True)  # shift 3: up to 1664
    with pytest.raises(UnsupportedQuantizationError, match="ReLU followed by a wrapping output type"):
        check_epilogue(wraps)


def test_int16_x_int8_uses_acc32_and_widens_when_the_sum_could_leave_32_bits():
    small = one_layer(FixedType(16, 11, True), FixedType(8, 7, True), FixedType(16, 10, True), k=24)
    e = plan_precision(small, small.ops[0], DEVICE, 4)
    assert (e.mmul, e.acc, e.w_dtype) == ((4, 4, 8), "acc32", "int8")
    # 1024 * 32768 * 128 = 2**32: AIE-API has no acc64 16x8 mmul, so the weights are stored as int16 (same codes)
    big = one_layer(FixedType(16, 11, True), FixedType(8, 7, True), FixedType(16, 0, True), k=1024)
    big.tensors["w"].data[:] = -128  # worst-case weights: the bound follows the actual weights
    e = check_epilogue(big)
    assert (e.mmul, e.acc, e.w_dtype) == ((4, 4, 4), "acc64", "int16")


def test_accumulator_bound_follows_the_actual_weights():
    x_t, w_t = FixedType(8, 0, True), FixedType(8, 0, True)
    g = one_layer(x_t, w_t, FixedType(16, 0, True), k=64, n=8, bias=False)
    w = g.tensors["w"].data
    w[:] = 0
    w[:, 3] = 5  # one column of 5s: |sum| <= 64 * 5 * 128
    e = plan_precision(g, g.ops[0], DEVICE, 4)
    assert e.acc_bound == 64 * 5 * 128


def test_narrow_wrap_keeps_the_low_bits_after_the_srs():
    # 6-bit AP_WRAP in an int8 container: SRS with saturation 'none' (modulo 2^8), then the 6-bit wrap step
    e = check_epilogue(one_layer(X8, W8, FixedType(6, 6, True, "RND", "WRAP")))
    assert (e.saturation, e.wrap_bits, e.clamp_lo, e.clamp_hi) == ("none", 6, -128, 127)
    u = check_epilogue(one_layer(X8, W8, FixedType(5, 6, False, "TRN", "WRAP")))
    assert (u.out_dtype, u.wrap_bits) == ("uint8", 5)
    # 9-bit in int16 after ReLU (HGQ2's datalane types): SRS into int16 cannot overflow, clamp at 0, then wrap
    r = check_epilogue(one_layer(X8, W8, FixedType(9, 6, True, "RND", "WRAP"), relu=True))
    assert (r.out_dtype, r.saturation, r.clamp_lo, r.wrap_bits) == ("int16", "saturate", 0, 9)
    # no sum can reach past the type: no wrap step at all
    small_w = FixedType(3, 7, True)
    assert check_epilogue(one_layer(X8, small_w, FixedType(6, 12 - 9, True, "RND", "WRAP"))).wrap_bits == 0


def test_32_bit_outputs_where_the_conversion_honours_the_shift():
    # acc32 -> int32 reinterprets the lanes: exact at the accumulator's own scale (shift 0) only
    e = check_epilogue(one_layer(X8, W8, FixedType(18, 12, True, "TRN", "WRAP")))  # |acc| <= 394239: may wrap
    assert (e.out_dtype, e.shift, e.wrap_bits) == ("int32", 0, 18)
    exact = check_epilogue(one_layer(X8, W8, FixedType(18, 12, True, "TRN", "WRAP"), k=4))  # < 2^17: never wraps
    assert (exact.out_dtype, exact.wrap_bits) == ("int32", 0)
    s = check_epilogue(one_layer(X8, W8, FixedType(10, 12, True, "TRN", "SAT")))  # 10 bits: int16, unchanged
    assert s.out_dtype == "int16"
    sat = check_epilogue(one_layer(X8, W8, FixedType(17, 12, True, "TRN", "SAT")))
    assert (sat.out_dtype, sat.clamp_lo, sat.clamp_hi) == ("int32", -(1 << 16), (1 << 16) - 1)
    # acc64 -> int32 is a real SRS: any shift
    x16, w16 = FixedType(16, 11, True), FixedType(16, 13, True)
    e64 = check_epilogue(one_layer(x16, w16, FixedType(24, 20, True, "RND_CONV", "SAT")))
    assert (e64.acc, e64.out_dtype, e64.shift) == ("acc64", "int32", 4)
