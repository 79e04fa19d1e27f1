"""Dense layers whose epilogue the frontend read off the source as a threshold table (``requant_table`` attribute).

When float operations of the source (BatchNormalization, Mul / Add by per-channel constants, a BipolarQuant) sit
between a layer's integer sum and its output quantizer, the frontend runs the source's own nodes on the layer's
accumulator values and stores, per output channel, the thresholds of the resulting step function
(frontends/source_eval.py). The layer's semantics are then ``code_n = lo + #{k : acc_n >= t_nk}`` on the exact
accumulator (bias included; channels the source maps decreasingly already accumulate the negated column), which is
the requantisation ``table`` of kernels/requant.py.

A table of many levels is slow (two vector operations per level). The frontend also gives the chain's reading as
exact real arithmetic (``affine_reading``: ``clamp(round(acc * c_n + e_n))``); where that map's thresholds equal the
source's on the whole accumulator range (compared exactly), it *is* the source's map there, and
``choose_requant`` implements it as a shift or a multiplier, verified again against the same thresholds.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np

from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.logical import Op
from nn2aie.kernels.requant import REQUANT_KINDS, AffineMap, Requant, choose_requant, fit_affine
from nn2aie.numerics import aie_rounding

ATTR = "requant_table"


def is_stepped(op: Op) -> bool:
    return ATTR in op.attrs


def stepped_requant(op: Op, srs_shifts: tuple[int, int] | None = None, kinds=REQUANT_KINDS) -> Requant:
    """The layer's requantisation over the accumulator range the frontend evaluated: the table, or (``srs_shifts``
    given) the cheapest of ``kinds`` among the implementations of an affine reading whose thresholds equal it."""
    table = op.attrs[ATTR]
    lo, hi = (int(v) for v in table["clamp"])
    acc_lo, acc_hi = (int(v) for v in table["acc_range"])
    thresholds = tuple(tuple(int(v) for v in row) for row in table["thresholds"])
    base = Requant("table", "conv_even", lo, hi, acc_lo, acc_hi, thresholds=thresholds, channels=len(thresholds),
                   reason=f"thresholds read off the source ({table.get('source', '')})")
    if srs_shifts is None or kinds == ("table",):
        return base
    want = np.asarray(thresholds, dtype=np.int64)
    amap = None
    reading = table.get("affine_reading")
    if reading is not None:  # the chain's exact real arithmetic, if the source's float32 rounding never shows
        amap = AffineMap.from_scales([Fraction(*v) for v in reading["scale"]],
                                     [Fraction(*v) for v in reading["offset"]],
                                     aie_rounding(reading["rounding"], f"layer {op.name}"), *reading["clamp"])
        if (amap.lo, amap.hi) != (lo, hi) or not np.array_equal(amap.thresholds(acc_lo, acc_hi), want):
            amap = None
    how = "the chain's exact arithmetic"
    if amap is None:  # another affine map with the very same thresholds
        amap, how = fit_affine(want, lo, hi, acc_lo, acc_hi), "an affine map fitted to the source's thresholds"
    if amap is None:
        if "table" not in kinds:
            raise UnsupportedQuantizationError(f"layer {op.name}", "the source's step function between the sum and "
                                               "the quantizer equals no affine map on the accumulator range",
                                               "allow the threshold table (drop the requant override)")
        return base
    rq = choose_requant(amap, acc_lo, acc_hi, srs_shifts, kinds)
    if rq.kind == "table":
        return base
    return replace(rq, reason=f"{rq.reason}; equal to the source's thresholds ({how})")


def evaluate_stepped(op: Op, acc: np.ndarray) -> np.ndarray:
    """Codes of exact accumulators ``acc`` [..., N] (bias included)."""
    return stepped_requant(op).apply(acc)
