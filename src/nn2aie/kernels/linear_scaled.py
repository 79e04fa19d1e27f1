"""Dense layers on scaled tensors (float scales, zero points): the exact map from the tile's accumulator to codes.

Tensor values (ir/types.py): x = (x_code - zx) * sx per tensor, W = w_code * sw_n (per tensor or per output channel,
zero point 0), bias b_n = b_code * sb_n (any exact type), y = (y_code - zy) * sy per tensor; a FixedType counts as
scale 2**-frac and zero point 0. The source (ONNX QuantizeLinear, QONNX Quant) computes

    real_n = sx * sw_n * (sum_k x_k w_kn - zx * colsum_n) + b_n,   code_n = clamp(round(real_n / sy) + zy)

and a ReLU before the quantizer gives max(code_n, clamp(zy)) (the quantizer is monotone and maps 0 to clamp(zy)).
As a map of the tile's accumulator ``acc = sum_k x_k w_kn + t_n`` (``t_n`` the bias the tile starts from):
``code = clamp(round(acc * c_n + e_n))`` with ``c_n = sx sw_n / sy`` and ``e_n = (b_n - sx sw_n zx colsum_n) / sy
+ zy - t_n c_n``. ``t_n`` is the whole number of accumulator steps in the offset (an int32), so the epilogue's
own offset is below one step, and exactly 0 when the offset is a whole number of steps (then an SRS shift may
serve). Everything is exact rational arithmetic on the float32 scales; kernels/requant.py picks the tile's
implementation and proves it equal on the whole accumulator range.

Where the source computes the sum in float32 (onnxruntime, qonnx, Brevitas), its codes can differ from this exact
map when a real value lies within float32 rounding of a tie; docs/numerics.md states the measured rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.evaluate import overflow_range
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, ScaledType, TensorType
from nn2aie.kernels.requant import AffineMap
from nn2aie.numerics import aie_rounding

INT32_MAX = (1 << 31) - 1


def is_scaled(graph: Graph, op: Op) -> bool:
    """Whether any tensor of the dense op has a float scale or a zero point (then this module defines it; not for
    a layer whose epilogue is a table read off the source, kernels/linear_stepped.py, which holds every scale)."""
    if "requant_table" in op.attrs:
        return False
    return any(isinstance(graph.tensor(t).type, ScaledType) for t in [*op.inputs, *op.outputs])


def _scale(t: TensorType, n: int = 0) -> Fraction:
    if isinstance(t, ScaledType):
        return t.scale_of(n)
    assert isinstance(t, FixedType)
    return Fraction(1, 1 << t.frac) if t.frac >= 0 else Fraction(1 << -t.frac)


def _zero_point(t: TensorType, n: int = 0) -> int:
    return t.zero_point_of(n) if isinstance(t, ScaledType) else 0


@dataclass(frozen=True)
class ScaledLayer:
    """The exact source map of a dense op on the tile's accumulator, and the bias the tile starts from."""

    map: AffineMap
    tile_bias: np.ndarray | None  # int64 [N], or None (no bias on the tile)
    acc_lo: int  # the accumulator range every input of the input type reaches (bias included)
    acc_hi: int


def scaled_layer(graph: Graph, op: Op) -> ScaledLayer:
    x_t, w_t, y_t = (graph.tensor(t) for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    xt, wt, yt = x_t.type, w_t.type, y_t.type
    where = f"op {op.name}"
    k, n = w_t.shape
    for t, tensor, role in ((xt, x_t, "input"), (wt, w_t, "weights"), (yt, y_t, "output")):
        if not isinstance(t, FixedType | ScaledType):
            raise UnsupportedQuantizationError(f"{where} {role} {tensor.origin or tensor.name}",
                                               f"type {t.describe()} is not integer", "quantize the tensor")
        if isinstance(t, ScaledType) and role != "weights" and t.channels > 1:
            raise UnsupportedQuantizationError(
                f"{where} {role} {tensor.origin or tensor.name}", "per-channel scales on an activation are not "
                "supported (only the weights of a dense layer may have one scale per output channel)",
                "quantize activations per tensor")
    if isinstance(wt, ScaledType):
        if wt.channels not in (1, n):
            raise UnsupportedQuantizationError(f"{where} weights {w_t.origin or w_t.name}", f"{wt.channels} scales "
                                               f"for {n} output channels", "use one scale, or one per output channel")
        if any(wt.zero_point_of(j) for j in range(wt.channels)):
            raise UnsupportedQuantizationError(f"{where} weights {w_t.origin or w_t.name}", "weight zero points "
                                               "are not 0 (asymmetric weights)", "quantize weights symmetrically")
    if yt.overflow not in ("SAT", "SAT_SYM"):
        raise UnsupportedQuantizationError(f"{where} output {y_t.origin or y_t.name}", f"overflow mode {yt.overflow}"
                                           " with a float scale is defined by no source framework",
                                           "use a saturating output quantizer")
    rounding = aie_rounding(yt.rounding, f"{where} output {y_t.origin or y_t.name}")
    lo, hi = overflow_range(yt)  # type: ignore[arg-type]  (ScaledType has the same code range properties)
    zy = _zero_point(yt)
    if op.attrs.get("activation") == "relu":
        lo = max(lo, min(max(zy, lo), hi))  # max(code, Q(0)) with Q(0) = clamp(zy)
    sx, zx, sy = _scale(xt), _zero_point(xt), _scale(yt)
    w = w_t.data.astype(np.int64)
    colsum = w.sum(axis=0)
    bias_real = [Fraction(0)] * n
    if len(op.inputs) == 3:
        b_t = graph.tensor(op.inputs[2])
        bt = b_t.type
        if not isinstance(bt, FixedType | ScaledType) or (isinstance(bt, ScaledType) and any(
                bt.zero_point_of(j) for j in range(bt.channels))):
            raise UnsupportedQuantizationError(f"{where} bias {b_t.origin or b_t.name}", "the bias is not integer "
                                               "codes times a scale", "quantize the bias")
        bias_real = [int(v) * _scale(bt, j) for j, v in enumerate(b_t.data.astype(np.int64))]
    scales, offsets, tile_bias = [], [], []
    for j in range(n):
        step = sx * _scale(wt, j)  # the real value of one accumulator unit
        c = step / sy
        offset_real = bias_real[j] - step * zx * int(colsum[j])  # the real value the codes' sum is shifted by
        t = math.floor(offset_real / step)  # whole accumulator steps of the offset
        if abs(t) > INT32_MAX:
            t = 0  # too large for the tile's int32 bias: the epilogue offset carries all of it
        scales.append(c)
        offsets.append((offset_real - t * step) / sy + zy)
        tile_bias.append(t)
    amap = AffineMap.from_scales(scales, offsets, rounding, lo, hi)
    # the reachable accumulator range: per column the smallest and largest sum over the input code range
    x_lo, x_hi = xt.min_code, xt.max_code
    low = np.minimum(w * x_lo, w * x_hi).sum(axis=0) + np.asarray(tile_bias)
    high = np.maximum(w * x_lo, w * x_hi).sum(axis=0) + np.asarray(tile_bias)
    bias = np.asarray(tile_bias, dtype=np.int64) if any(tile_bias) else None
    return ScaledLayer(amap, bias, int(low.min(initial=0)), int(high.max(initial=0)))


def evaluate_codes(layer: ScaledLayer, acc: np.ndarray) -> np.ndarray:
    """Exact codes of accumulators ``acc`` ([..., N] int64, inside the layer's range) by the source map: per channel
    the number of thresholds at or below the accumulator (thresholds are exact; see AffineMap.thresholds)."""
    t = layer.map.thresholds(layer.acc_lo, layer.acc_hi)
    out = np.empty(acc.shape, dtype=np.int64)
    for j in range(acc.shape[-1]):
        out[..., j] = layer.map.lo + np.searchsorted(t[j], acc[..., j], side="right")
    return out


def float32_tie_margin(graph: Graph, op: Op, x_codes: np.ndarray, rows: np.ndarray, cols: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For output elements (rows, cols) of the op on input codes ``x_codes`` [events, K]: the exact distance of the
    real value (in output LSBs, before rounding) to the nearest rounding boundary, and a rigorous bound on how far a
    float32 evaluation of the same layer can move it: dequantising x and W (one rounding each), the products (one)
    and a sum of K + 1 terms (bias included) in any order, ``gamma_(K+3) * (sum_k |x_k w_kn| + |b_n|) / sy`` with
    ``gamma_m = m u / (1 - m u)``, ``u = 2**-24``, plus one rounding of the division by sy. A source framework that
    computes in float32 can only disagree with the exact map where the distance is within the bound."""
    layer = scaled_layer(graph, op)
    xt, wt, yt = (graph.tensor(t).type for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    w = graph.tensor(op.inputs[1]).data.astype(np.int64)
    k = w.shape[0]
    u = 2.0**-24
    gamma = (k + 3) * u / (1 - (k + 3) * u)
    bias_real = np.zeros(w.shape[1])
    if len(op.inputs) == 3:
        b_t = graph.tensor(op.inputs[2])
        bias_real = np.array([float(int(v) * _scale(b_t.type, j)) for j, v in enumerate(b_t.data)])
    sx, zx, sy = float(_scale(xt)), _zero_point(xt), float(_scale(yt))
    distance, bound = [], []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        xr = x_codes[r].astype(np.int64)
        acc = int(xr @ w[:, c]) + (int(layer.tile_bias[c]) if layer.tile_bias is not None else 0)
        v = acc * layer.map.scale(c) + layer.map.offset(c)  # exact rational, output LSBs
        frac = v - math.floor(v)
        nearest = layer.map.rounding not in ("floor", "ceil", "symmetric_floor", "symmetric_ceil")
        distance.append(float(abs(frac - Fraction(1, 2))) if nearest else float(min(frac, 1 - frac)))
        magnitude = float(np.abs((xr - zx) * sx * w[:, c] * float(_scale(wt, c))).sum()) + abs(bias_real[c])
        bound.append(gamma * magnitude / sy + 2 * (abs(float(v)) + abs(_zero_point(yt))) * u)
    return np.asarray(distance), np.asarray(bound)
