"""The eltwise ``quantize`` op (HGQ2's per-element quantizers): each element cast into its own ap_fixed type.

The logical model (``requantize`` per element) is checked against an oracle written from ap_fixed's definition
(round at the element's fraction, then wrap or saturate to its width); the placed design's emulator equals the
logical model on 2000 inputs over the whole input range, and the emitted kernel co-simulates natively."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import GraphBuilder, check  # noqa: E402

from nn2aie.errors import UnsupportedQuantizationError  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402

X_T = FixedType(8, 5, True)
A_T = FixedType(12, 7, True)


def element_types(width: int, seed: int, rounding: str, overflow: str, fracs=(4, 8)):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 9, size=width)
    widths[rng.random(width) < 0.1] = 0  # pruned elements: always 0
    signed = rng.random(width) < 0.7
    widths = np.where(signed & (widths == 1), 2, widths)
    frac = rng.integers(fracs[0], fracs[1] + 1, size=width)
    return {"width": [int(w) for w in widths], "frac": [int(f) for f in frac], "signed": [bool(s) for s in signed],
            "rounding": rounding, "overflow": overflow}


def held_type(el) -> FixedType:
    live = [(w, f, s) for w, f, s in zip(el["width"], el["frac"], el["signed"], strict=True) if w]
    frac = max(f for _, f, _ in live)
    lo = min((-(1 << (w - 1)) if s else 0) << (frac - f) for w, f, s in live)
    hi = max(((1 << (w - 1)) - 1 if s else (1 << w) - 1) << (frac - f) for w, f, s in live)
    width = max(lo.bit_length(), hi.bit_length()) + 2
    return FixedType(width, frac, True, "TRN", "SAT")


def build(el, width: int):
    gb = GraphBuilder(1)
    x = gb.tensor("x", (width,), X_T)
    a = gb.dense("da", x, width, A_T)
    y = gb.op("q", "eltwise", [a], (width,), held_type(el), op="quantize", elements=el)
    return gb.graph(x, gb.dense("head", y, 5, FixedType(16, 4, True)))


def oracle(codes: np.ndarray, fa: int, el, y_frac: int) -> np.ndarray:
    """ap_fixed<w, w - f> (ap_ufixed when unsigned) of code * 2**-fa, per element, from the definitions."""
    out = np.zeros_like(codes)
    for k, (w, f, s) in enumerate(zip(el["width"], el["frac"], el["signed"], strict=True)):
        if not w:
            continue
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if s else (0, (1 << w) - 1)
        for r, c in enumerate(codes[:, k].tolist()):
            v = c * 2.0 ** (f - fa)  # exact in float64 (small integers times powers of two)
            q = math.floor(v + 0.5) if el["rounding"] == "RND" else math.floor(v)
            q = ((q - lo) % (1 << w)) + lo if el["overflow"] == "WRAP" else min(max(q, lo), hi)
            out[r, k] = q << (y_frac - f)
    return out


@pytest.mark.parametrize("rounding, overflow", [("RND", "WRAP"), ("TRN", "WRAP"), ("RND", "SAT"), ("TRN", "SAT")])
def test_logical_model_equals_the_ap_fixed_oracle(rounding, overflow):
    el = element_types(24, 3, rounding, overflow)
    g = build(el, 24)
    op = g.op("q")
    a = np.random.default_rng(4).integers(A_T.min_code, A_T.max_code + 1, size=(3000, 24))
    from nn2aie.kernels.eltwise.logical import evaluate as eltwise_evaluate

    ours = eltwise_evaluate(g, op, [a])[0]
    assert np.array_equal(ours, oracle(a, A_T.frac, el, g.tensor(op.outputs[0]).type.frac))


@pytest.mark.parametrize("rounding, overflow, cosim", [("RND", "WRAP", 48), ("TRN", "SAT", 48), ("RND", "SAT", 0)])
def test_emulator_and_native_kernel_equal_the_logical_model(rounding, overflow, cosim):
    el = element_types(40, 5, rounding, overflow)
    assert len(set(el["frac"])) > 3 and 0 in el["width"]  # fractions vary, pruned elements occur
    check(build(el, 40), {"q": {"cas_num": 2}}, cosim_events=cosim)


def test_fractions_too_far_apart_are_refused():
    el = element_types(16, 6, "RND", "WRAP", fracs=(0, 30))
    el["frac"][0], el["frac"][1] = 0, 30
    el["width"][0] = el["width"][1] = 4
    with pytest.raises(UnsupportedQuantizationError, match="fractional bits span"):
        check(build(el, 16), cosim_events=0)
