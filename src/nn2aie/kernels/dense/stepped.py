"""Dense layers whose epilogue the frontend read off the source as a threshold table (``requant_table`` attribute).

When float operations of the source (BatchNormalization, Mul / Add by per-channel constants, a BipolarQuant) sit
between a layer's integer sum and its output quantizer, the frontend runs the source's own nodes on the layer's
accumulator values and stores, per output channel, the thresholds of the resulting step function
(frontends/source_eval.py). The layer's semantics are then ``code_n = lo + #{k : acc_n >= t_nk}`` on the exact
accumulator (bias included; channels the source maps decreasingly already accumulate the negated column), which is
the requantisation ``table`` of kernels/requant.py, run on the tile as it is.
"""

from __future__ import annotations

import numpy as np

from nn2aie.ir.logical import Op
from nn2aie.kernels.requant import Requant

ATTR = "requant_table"


def is_stepped(op: Op) -> bool:
    return ATTR in op.attrs


def stepped_requant(op: Op) -> Requant:
    """The table as a Requant over the accumulator range the frontend evaluated."""
    table = op.attrs[ATTR]
    lo, hi = (int(v) for v in table["clamp"])
    acc_lo, acc_hi = (int(v) for v in table["acc_range"])
    thresholds = tuple(tuple(int(v) for v in row) for row in table["thresholds"])
    return Requant("table", "conv_even", lo, hi, acc_lo, acc_hi, thresholds=thresholds, channels=len(thresholds),
                   reason=f"thresholds read off the source ({table.get('source', '')})")


def evaluate_stepped(op: Op, acc: np.ndarray) -> np.ndarray:
    """Codes of exact accumulators ``acc`` [..., N] (bias included)."""
    return stepped_requant(op).apply(acc)
