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

import numpy as np

from nn2aie.ir.logical import Op
from nn2aie.kernels.requant import REQUANT_KINDS, Requant, requant_from_table

ATTR = "requant_table"


def is_stepped(op: Op) -> bool:
    return ATTR in op.attrs


def stepped_requant(op: Op, srs_shifts: tuple[int, int] | None = None, kinds=REQUANT_KINDS) -> Requant:
    """The layer's requantisation over the accumulator range the frontend evaluated: the table, or (``srs_shifts``
    given) the cheapest of ``kinds`` among the implementations of an affine reading whose thresholds equal it."""
    return requant_from_table(op.attrs[ATTR], f"layer {op.name}", srs_shifts, kinds)


def evaluate_stepped(op: Op, acc: np.ndarray) -> np.ndarray:
    """Codes of exact accumulators ``acc`` [..., N] (bias included)."""
    return stepped_requant(op).apply(acc)
