"""Logical integer model: evaluates a logical graph on integer codes, layer by layer, with exact arithmetic.

This is link 2 of the verification chain (shared/design.md): it must equal the source framework's execution,
and the physical emulator must equal it. It knows nothing about tiles.
"""

from __future__ import annotations

import numpy as np

from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.numerics import aie_rounding, saturate, shift_round


def exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer matmul via float64 BLAS, exact while every partial sum stays below 2**53 (checked)."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0)) * x.shape[-1]
    if bound < 2.0**53:
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return x.astype(np.int64) @ w.astype(np.int64)


def requantize(acc: np.ndarray, acc_frac: int, out: FixedType, where: str) -> np.ndarray:
    """Bring an exact accumulator (value acc * 2**-acc_frac) into ``out``: round, then overflow handling."""
    q = shift_round(acc, acc_frac - out.frac, aie_rounding(out.rounding))
    if out.overflow == "SAT":
        return np.clip(q, out.min_code, out.max_code)
    if out.overflow == "SAT_SYM":
        bound = min(out.max_code, -out.min_code) if out.signed else out.max_code
        return np.clip(q, -bound if out.signed else 0, bound)
    if out.overflow == "WRAP":
        return saturate(q, out.width, out.signed, "none")
    raise UnsupportedQuantizationError(where, f"overflow mode {out.overflow} is not supported yet",
                                       "use SAT, SAT_SYM or WRAP")


def accumulator_frac(graph: Graph, op: Op) -> int:
    return graph.tensor(op.inputs[0]).type.frac + graph.tensor(op.inputs[1]).type.frac


def bias_in_accumulator(graph: Graph, op: Op) -> np.ndarray | None:
    """Bias codes scaled to the accumulator's LSB (exact left shift)."""
    if len(op.inputs) < 3:
        return None
    b = graph.tensor(op.inputs[2])
    shift = accumulator_frac(graph, op) - b.type.frac
    if shift < 0:
        raise UnsupportedQuantizationError(
            f"tensor {b.origin or b.name}", f"bias has {b.type.frac} fractional bits, finer than the accumulator's "
            f"{accumulator_frac(graph, op)}", "quantize the bias with scale = input scale x weight scale")
    return b.data.astype(np.int64) << np.int64(shift)


def evaluate_dense(graph: Graph, op: Op, x: np.ndarray) -> np.ndarray:
    w = graph.tensor(op.inputs[1]).data
    acc = exact_matmul(x, w)
    bias = bias_in_accumulator(graph, op)
    if bias is not None:
        acc = acc + bias
    y_type = graph.tensor(op.outputs[0]).type
    y = requantize(acc, accumulator_frac(graph, op), y_type, f"op {op.name}")
    if op.attrs.get("activation") == "relu":
        y = np.maximum(y, 0)
    return y


def evaluate(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the graph on integer codes; returns every tensor's codes (int64)."""
    values = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    for op in graph.ops:
        if op.kind == "dense":
            values[op.outputs[0]] = evaluate_dense(graph, op, values[op.inputs[0]])
    return values
