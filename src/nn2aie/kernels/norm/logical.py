"""Logical semantics of the norm family: verify and the exact integer algorithm (docs/numerics.md, "LayerNorm").

A ``layernorm`` op normalises each row of its input over the last axis: ``(x - mean) / sqrt(var + eps) * gamma +
beta`` (``rms``: ``x / sqrt(mean(x^2) + eps) * gamma + beta``). The sources compute it in float; nn2aie computes
the integer algorithm below in the logical model, the emulator and the tile C++ alike. For a row of ``N`` input
codes with zero point ``z_x`` and scale ``s_x``, ``a_j = x_j - z_x``:

1. ``c_j = N a_j - sum_k a_k`` and ``V = N sum_k a_k^2 - (sum_k a_k)^2`` (RMS: ``c_j = N a_j``,
   ``V = N sum_k a_k^2``), exact integers;
2. ``W = V * 2^8 + round(eps N^2 / s_x^2 * 2^8)`` (the epsilon in the same units, rounded once at compile time);
3. one inverse square root per row: ``V = 0`` gives ``r = 0``, ``k = 1``; otherwise
   ``m = max(0, (61 - bitlength(W)) // 2)``, ``s = isqrt(W * 2^(2m))`` (the floor of the square root; ``W * 2^(2m)``
   lies in ``[2^59, 2^61)``), ``r = floor(2^60 / s)`` (about ``2^30``) and ``k = 56 - m - U`` with
   ``U = 30 - ceil(log2(N) / 2)`` (so ``|z| 2^U < 2^31``);
4. ``u_j = srs(c_j r, k)`` (about ``2^U z_j``, z the normalised value: ``c_j r ~ z_j 2^(56 - m)``);
5. ``v_j = srs(u_j G_j + B_j, U + F)`` with ``G_j = round(gamma_j / s_y * 2^F)`` (``F`` in 0..59 - U, the largest
   with every ``|G_j| < 2^31``) and ``B_j = round(beta_j / s_y * 2^(U + F - t)) * 2^t`` (``t >= 0`` the smallest
   with every ``|B_j / 2^t| < 2^31``), rounding half to even here and in every SRS;
6. ``y_j = clamp(v_j + z_y, lo, hi)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, ScaledType, code_step
from nn2aie.kernels.family import Fail
from nn2aie.numerics import isqrt_int64, shift_round_half_even

MAX_INPUT_BITS = 8
MAX_ROW = 1 << 11
EPS_BITS = 8  # fraction bits of the epsilon term
MAX_SHIFT = 59  # the catalog's safe SRS range


def u_bits(n: int) -> int:
    """U: u = 2^U z fits 31 bits for |z| <= sqrt(N)."""
    return 30 - math.ceil(math.log2(n) / 2)


@dataclass(frozen=True)
class NormParams:
    rms: bool
    zero_in: int
    eps_term: int  # round(eps N^2 / s_x^2 * 2^8)
    gains: tuple[int, ...]  # G_j
    offsets: tuple[int, ...]  # B_j / 2^t
    f: int
    t: int
    u: int
    zero_out: int
    lo: int
    hi: int
    width: int


def _round_half_even(v: Fraction) -> int:
    q = math.floor(v)
    r = v - q
    return q + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and q % 2) else 0)


def params(graph: Graph, op: Op) -> NormParams:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    n = int(x.shape[-1])
    s_x, s_y = code_step(x.type), code_step(y.type)
    eps = Fraction(float(op.attrs["epsilon"]))
    eps_term = _round_half_even(eps * n * n / (s_x * s_x) * (1 << EPS_BITS))
    gamma = [Fraction(float(g)) for g in (op.attrs.get("gamma") or [1.0] * n)]
    beta = [Fraction(float(b)) for b in (op.attrs.get("beta") or [0.0] * n)]
    top = max((abs(g) / s_y for g in gamma), default=Fraction(1)) or Fraction(1)
    ub = u_bits(n)
    f = 0
    while f < MAX_SHIFT - ub and top * Fraction(2) ** (f + 1) < (1 << 31) - 1:  # every |G_j| below 2^31
        f += 1
    gains = tuple(_round_half_even(g / s_y * Fraction(2) ** f) for g in gamma)
    t = 0
    while True:
        offsets = tuple(_round_half_even(b / s_y * Fraction(2) ** (ub + f - t)) for b in beta)
        if all(abs(o) < (1 << 31) for o in offsets):
            break
        t += 1
    zin = x.type.zero_point_of(0) if isinstance(x.type, ScaledType) else 0
    zout = y.type.zero_point_of(0) if isinstance(y.type, ScaledType) else 0
    return NormParams(bool(op.attrs.get("rms", False)), zin, eps_term, gains, offsets, f, t, ub, zout,
                      y.type.min_code, y.type.max_code, n)


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        fail(where, "layernorm takes one input and gives one output (gamma and beta are attributes)")
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    for t in (x, y):
        if not isinstance(t.type, FixedType | ScaledType) or (isinstance(t.type, ScaledType) and t.type.channels != 1):
            fail(where, f"tensor {t.name} is neither fixed point nor scaled per tensor")
        if t.is_const:
            fail(where, f"tensor {t.name} must be an activation")
    if tuple(x.shape) != tuple(y.shape) or not x.shape:
        fail(where, f"output shape {y.shape} differs from the input shape {x.shape}")
    n = int(x.shape[-1])
    if x.type.width > MAX_INPUT_BITS:
        fail(where, f"the input has {x.type.width} bits; the layernorm tile takes at most {MAX_INPUT_BITS}")
    if y.type.width > 16:
        fail(where, "the output has more than 16 bits")
    if not 2 <= n <= MAX_ROW:
        fail(where, f"rows of {n} elements; 2 to {MAX_ROW}")
    eps = op.attrs.get("epsilon")
    if not isinstance(eps, float | int) or isinstance(eps, bool) or not eps >= 0:
        fail(where, f"epsilon={eps!r} must be a number >= 0")
    for key in ("gamma", "beta"):
        v = op.attrs.get(key)
        if v is not None and (not isinstance(v, list) or len(v) != n or not all(math.isfinite(float(e)) for e in v)):
            fail(where, f"{key} must be null or {n} finite numbers (one per element of a row)")
    unknown = set(op.attrs) - {"axis", "epsilon", "gamma", "beta", "rms", "source"}
    if unknown or op.attrs.get("axis", -1) != -1:
        fail(where, f"attributes {sorted(op.attrs)}: layernorm runs over the last axis (axis -1) only")


def inverse_root(v: np.ndarray, w: np.ndarray, ub: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 per row: ``(r, k)`` (int64; ``w < 2**47`` for 8-bit inputs, so ``w * 2**(2m) < 2**61``)."""
    w = np.asarray(w, dtype=np.int64)
    bits = np.zeros(w.shape, dtype=np.int64)
    rest = w.copy()
    while np.any(rest):  # bitlength of W, exactly
        bits += rest > 0
        rest >>= 1
    m = np.maximum(0, (61 - bits) // 2)
    r = (np.int64(1) << np.int64(60)) // np.maximum(isqrt_int64(w << (2 * m)), 1)
    zero = np.asarray(v) == 0
    return np.where(zero, 0, r), np.where(zero, 1, 56 - m - ub)


def rows(x: np.ndarray, p: NormParams) -> np.ndarray:
    """The algorithm on rows: ``x`` [..., N] int64 codes -> output codes [..., N]."""
    a = np.asarray(x, dtype=np.int64) - p.zero_in
    n = p.width
    total = a.sum(axis=-1, keepdims=True)
    squares = (a * a).sum(axis=-1, keepdims=True)
    if p.rms:
        c, v = n * a, n * squares
    else:
        c, v = n * a - total, n * squares - total * total
    w = (v << EPS_BITS) + p.eps_term
    r, k = inverse_root(v, w, p.u)
    u = shift_round_half_even(c * r, k)
    g = np.asarray(p.gains, dtype=np.int64)
    b = np.asarray(p.offsets, dtype=np.int64) << np.int64(p.t)
    vout = shift_round_half_even(u * g + b, p.u + p.f)
    return np.clip(vout + p.zero_out, p.lo, p.hi)


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [rows(inputs[0], params(graph, op))]
