"""Logical semantics of the softmax family: verify and the exact integer algorithm (docs/numerics.md, "Softmax").

A ``softmax`` op normalises each row of its input over the last axis. Where the source computes it in float
(ONNX Softmax, torch.softmax between quantizers), nn2aie computes this integer algorithm instead, the same in the
logical model, the emulator and the tile's C++ (the mismatch with the float source is measured, not hidden:
benchmarks/float_ops_mismatch.py). For a row of input codes ``x_1 .. x_N`` of scale ``s_x`` and an output type of
scale ``s_y`` (``e = floor(log2 s_y)``, so ``2**e <= s_y < 2**(e + 1)``), zero point ``z`` and range
``[lo, hi]``:

1. ``d_j = max_k x_k - x_j`` (an integer >= 0);
2. ``t_j = T[min(d_j, D - 1)]`` with the table ``T[d] = round(2**Q * exp(-d * s_x))`` (float64 at compile time,
   half away from zero), cut after its first zero entry (``D`` entries), ``Q = min(24, 31 - bitlength(N))`` so
   that the row sum fits 31 bits;
3. ``S = sum_j t_j`` (``S >= 2**Q``: the largest element has ``d = 0``);
4. ``P = 29 + bitlength(S)``, ``R = floor(2**P / S)`` (so ``2**29 < R <= 2**30``: one division per row);
5. ``u_j = srs(t_j * R, P - 30)`` (``~ 2**30 * t_j / S``) and ``v_j = srs(u_j * C, 60 + e)`` with the constant
   ``C = round(2**(30 + e) / s_y)`` (``2**29 < C <= 2**30``), both SRS rounding half to even;
6. ``y_j = clamp(v_j + z, lo, hi)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, ScaledType, code_step
from nn2aie.kernels.family import Fail
from nn2aie.numerics import shift_round_half_even

MAX_INPUT_BITS = 8  # d_j is a 16-bit lookup index; 16-bit inputs would need a two-level table
ROUNDING = "conv_even"  # both SRS steps (aie::rounding_mode)
MAX_ROW = 1 << 11  # Q = 31 - bitlength(N) >= 20 keeps the table's precision


@dataclass(frozen=True)
class SoftmaxParams:
    """Everything the algorithm needs besides the codes, derived from the op's types."""

    table: tuple[int, ...]  # T[0 .. D-1]
    q: int
    c: int  # output multiplier
    shift2: int  # 60 + e
    zero_point: int
    lo: int
    hi: int
    width: int  # N


def params(graph: Graph, op: Op) -> SoftmaxParams:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    n = int(x.shape[-1])
    q = min(24, 31 - n.bit_length())
    s_x = float(code_step(x.type))
    span = x.type.max_code - x.type.min_code
    table = []
    for d in range(span + 1):
        t = math.floor(math.ldexp(math.exp(-d * s_x), q) + 0.5)
        table.append(t)
        if t == 0:
            break
    s_y = code_step(y.type)
    e = math.floor(math.log2(s_y))
    while Fraction(2) ** e > s_y:  # exact floor(log2) of the rational scale
        e -= 1
    while Fraction(2) ** (e + 1) <= s_y:
        e += 1
    c_exact = Fraction(2) ** (30 + e) / s_y
    c = math.floor(c_exact + Fraction(1, 2))
    zp = y.type.zero_point_of(0) if isinstance(y.type, ScaledType) else 0
    return SoftmaxParams(tuple(table), q, c, 60 + e, zp, y.type.min_code, y.type.max_code, n)


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        fail(where, "softmax takes one input and gives one output")
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    for t in (x, y):
        if not isinstance(t.type, FixedType | ScaledType) or (isinstance(t.type, ScaledType) and t.type.channels != 1):
            fail(where, f"tensor {t.name} is neither fixed point nor scaled per tensor")
        if t.is_const:
            fail(where, f"tensor {t.name} must be an activation")
    if tuple(x.shape) != tuple(y.shape) or not x.shape:
        fail(where, f"output shape {y.shape} differs from the input shape {x.shape}")
    if x.type.width > MAX_INPUT_BITS:
        fail(where, f"the input has {x.type.width} bits; the softmax tile takes at most {MAX_INPUT_BITS}")
    if not 1 <= x.shape[-1] <= MAX_ROW:
        fail(where, f"rows of {x.shape[-1]} elements; at most {MAX_ROW}")
    if code_step(y.type) >= 1:
        fail(where, f"output scale {float(code_step(y.type))} is not below 1 (a probability needs a finer grid)")
    if y.type.width > 16:
        fail(where, "the output has more than 16 bits")
    if set(op.attrs) - {"axis", "source"} or op.attrs.get("axis", -1) != -1:
        fail(where, f"attributes {op.attrs}: softmax runs over the last axis (axis -1) only")


def rows(x: np.ndarray, p: SoftmaxParams) -> np.ndarray:
    """The algorithm on rows: ``x`` [..., N] int64 codes -> output codes [..., N]."""
    x = np.asarray(x, dtype=np.int64)
    table = np.asarray(p.table, dtype=np.int64)
    d = x.max(axis=-1, keepdims=True) - x
    t = table[np.minimum(d, table.size - 1)]
    s = t.sum(axis=-1, keepdims=True)
    bits = np.floor(np.log2(s.astype(np.float64))).astype(np.int64) + 1  # bitlength of S (S < 2**31: exact)
    big = 1 << (29 + bits)
    r = big // s
    u = shift_round_half_even(t * r, bits - 1)
    v = shift_round_half_even(u * np.int64(p.c), p.shift2)
    return np.clip(v + p.zero_point, p.lo, p.hi)


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [rows(inputs[0], params(graph, op))]
