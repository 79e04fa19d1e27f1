"""Logical semantics of the reduce family (docs/ops.md): verify and the exact integer model.

``sum`` and ``max`` are exact at the input's fraction, then requantised. ``mean`` divides the exact sum by the
number of reduced elements ``n`` the way the source does (attribute ``divide``): ``exact`` rounds the rational
``sum / n`` with the output type's rounding mode; ``float32`` reproduces the float32 arithmetic of onnxruntime
(and so of qonnx execution), ``float32(float32(sum * 2**-fa) / float32(n))``, then rounds that float exactly."""

from __future__ import annotations

import math

import numpy as np

from nn2aie.ir.evaluate import requantize
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.kernels.family import Fail
from nn2aie.numerics import aie_rounding, div_round

OPS = ("sum", "mean", "max")
DIVIDE_MODES = ("exact", "float32")
EXACT_LIMIT = 1 << 62


def reduced_count(graph: Graph, op: Op) -> int:
    shape = graph.tensor(op.inputs[0]).shape
    return math.prod(shape[a] for a in op.attrs["axes"])


def output_shape(in_shape: tuple[int, ...], axes: list[int], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(in_shape))
    return tuple(d for i, d in enumerate(in_shape) if i not in axes)


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        fail(where, "reduce takes one input and gives one output")
    a, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    for t in (a, y):
        if not isinstance(t.type, FixedType):
            fail(where, f"tensor {t.name} is not fixed point")
        if t.is_const:
            fail(where, f"tensor {t.name} is a constant; reduce takes and gives activations")
    kind = op.attrs.get("op")
    if kind not in OPS:
        fail(where, f"reduce op {kind!r} is unknown (known: {', '.join(OPS)})")
    axes = op.attrs.get("axes")
    rank = len(a.shape)
    if (not isinstance(axes, list | tuple) or not axes or list(axes) != sorted(set(axes))
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < rank for x in axes)):
        fail(where, f"axes {axes!r} must be a non-empty sorted list of distinct per-event axes (rank {rank})")
    keepdims = op.attrs.get("keepdims")
    if not isinstance(keepdims, bool):
        fail(where, f"keepdims {keepdims!r} must be a boolean")
    if tuple(y.shape) != output_shape(tuple(a.shape), list(axes), keepdims):
        fail(where, f"output shape {y.shape} does not match reducing {a.shape} over {axes}")
    if kind == "mean":
        if op.attrs.get("divide") not in DIVIDE_MODES:
            fail(where, f"divide {op.attrs.get('divide')!r} must be one of {', '.join(DIVIDE_MODES)}")
    elif "divide" in op.attrs:
        fail(where, "only mean takes the attribute divide")
    amax = max(abs(a.type.min_code), abs(a.type.max_code))
    bound = amax * reduced_count(graph, op)
    if bound >= EXACT_LIMIT:
        fail(where, "the exact sum needs more than 62 bits")
    if kind == "mean" and op.attrs.get("divide") == "float32" and (bound >= 1 << 53
                                                                     or bound.bit_length() - a.type.frac >= 127):
        fail(where, "the float32 mean of this input type could overflow float32 (or its sum float64)")


def _requantize_float32(q: np.ndarray, y: FixedType, where: str) -> np.ndarray:
    """Codes of the float32 values ``q`` in ``y`` (y's rounding of q * 2**fy, then its overflow), exactly: each
    float32 is m * 2**(e - 24) with an integer m (|m| < 2**24); values are grouped by exponent."""
    q64 = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q64)):
        raise ValueError("non-finite float32 mean")  # excluded by verify's bound (|sum| < 2**62, n >= 1)
    mant, exp = np.frexp(q64)
    m = np.ldexp(mant, 24).astype(np.int64)  # exact: a float32 has at most 24 significant bits
    out = np.zeros(q64.shape, dtype=np.int64)
    for e in np.unique(exp):
        sel = exp == e
        out[sel] = requantize(m[sel], 24 - int(e), y, where)
    return out


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    a_t, y_t = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    assert isinstance(a_t.type, FixedType) and isinstance(y_t.type, FixedType)
    a = np.asarray(inputs[0], dtype=np.int64)
    axes = tuple(x + 1 for x in op.attrs["axes"])
    keep = bool(op.attrs["keepdims"])
    kind = op.attrs["op"]
    fa = a_t.type.frac
    where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
    if kind == "max":
        return [requantize(a.max(axis=axes, keepdims=keep), fa, y_t.type, where)]
    total = a.sum(axis=axes, keepdims=keep)
    if kind == "sum":
        return [requantize(total, fa, y_t.type, where)]
    return [mean_codes(total, reduced_count(graph, op), a_t.type, y_t.type, op.attrs["divide"], where)]


def mean_codes(total: np.ndarray, n: int, a: FixedType, y: FixedType, divide: str, where: str) -> np.ndarray:
    """Output codes of ``mean`` from the exact sums ``total`` (int64 codes at a's fraction) of ``n`` elements."""
    fa = a.frac
    if divide == "float32":
        value = np.ldexp(total.astype(np.float64), -fa).astype(np.float32)  # float32(sum * 2**-fa): one rounding
        q = value / np.float32(n)  # IEEE float32 division, round to nearest even
        return _requantize_float32(q, y, where)
    # exact: round(sum * 2**(fy - fa) / n) with y's rounding, then y's overflow (a requantisation at shift 0)
    fy = y.frac
    num = total.astype(object) * (1 << max(0, fy - fa))
    den = n * (1 << max(0, fa - fy))
    rounded = div_round(num, den, aie_rounding(y.rounding, where))
    lo, hi = -(1 << 62), 1 << 62  # beyond every type's range: clamping here keeps int64 and the saturated code
    if y.overflow == "WRAP":
        rounded = rounded % (1 << y.width)  # wrap is modulo 2**width: reduce first, keep the residue
    rounded = np.clip(rounded, lo, hi).astype(np.int64)
    return requantize(rounded, fy, y, where)
