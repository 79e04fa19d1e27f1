"""Logical semantics of the matmul family: ``y = requantize(a @ b)`` of two activations.

``a`` is ``[*L, M, K]`` and ``b`` ``[*L, K, N]`` per event (the same leading axes ``L``, e.g. attention heads),
``y`` is ``[*L, M, N]``. The products are summed exactly (integers at fraction ``fa + fb + frac_shift``; the
attribute ``frac_shift`` is a power-of-two factor ``2^-frac_shift`` the frontend folded in, e.g. the
``1 / sqrt(d)`` of attention scores when ``d`` is a power of four), then requantised into ``y``'s type
(``ir.evaluate.requantize``: rounding, saturation or wrap of the output type)."""

from __future__ import annotations

import math

import numpy as np

from nn2aie.ir.evaluate import requantize
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.kernels.family import Fail

MAX_OPERAND_BITS = 8


def acc_frac(graph: Graph, op: Op) -> int:
    a, b = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    return a.type.frac + b.type.frac + int(op.attrs.get("frac_shift", 0))


def acc_bound(graph: Graph, op: Op) -> int:
    a, b = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])

    def top(t: FixedType) -> int:
        return max(abs(t.min_code), abs(t.max_code))

    return int(a.shape[-1]) * top(a.type) * top(b.type)


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    if len(op.inputs) != 2 or len(op.outputs) != 1:
        fail(where, "matmul takes two inputs (activations) and gives one output")
    a, b, y = (graph.tensor(t) for t in (*op.inputs, op.outputs[0]))
    for t in (a, b, y):
        if not isinstance(t.type, FixedType):
            fail(where, f"tensor {t.name} is not fixed point (power-of-two scale, zero point 0)")
    if a.is_const or b.is_const or y.is_const:
        fail(where, "both operands and the result are activations (a constant operand is a dense layer)")
    if len(a.shape) < 2 or len(b.shape) != len(a.shape) or tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        fail(where, f"operand shapes {a.shape} and {b.shape} are not [*L, M, K] and [*L, K, N]")
    if a.shape[-1] != b.shape[-2]:
        fail(where, f"the inner dimensions differ: {a.shape} @ {b.shape}")
    if tuple(y.shape) != (*a.shape[:-1], b.shape[-1]):
        fail(where, f"output shape {y.shape} is not {(*a.shape[:-1], b.shape[-1])}")
    for t in (a, b):
        if t.type.width > MAX_OPERAND_BITS:
            fail(where, f"operand {t.name} has {t.type.width} bits; the matmul tile takes at most {MAX_OPERAND_BITS}")
    shift = op.attrs.get("frac_shift", 0)
    if not isinstance(shift, int) or isinstance(shift, bool) or abs(shift) > 30:
        fail(where, f"frac_shift={shift!r} must be an integer within +-30")
    if set(op.attrs) - {"frac_shift"}:
        fail(where, f"unknown attributes {sorted(set(op.attrs) - {'frac_shift'})}")
    if acc_bound(graph, op) >= 1 << 62:
        fail(where, "the exact sum needs more than 62 bits")


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    a, b = (np.asarray(v, dtype=np.int64) for v in inputs)
    acc = np.matmul(a, b)  # exact: every partial sum is below 2^62 (verify)
    y = graph.tensor(op.outputs[0])
    return [requantize(acc, acc_frac(graph, op), y.type, f"op {op.name} output tensor {y.origin or y.name}")]


def macs(graph: Graph, op: Op) -> int:
    a, b = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    return math.prod(a.shape) * int(b.shape[-1])
