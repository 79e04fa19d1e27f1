"""The numerics every linear op shares (dense, conv): ``y = requantize(act(sum_k x_k W[k, n] + b_n))`` over a
constant ``[K, N]`` weight matrix (a convolution's is its im2col matrix: rows (tap, input channel), one column per
filter), planned once here and used by each family's tiles.

The accumulator is chosen so that no partial sum can overflow: the bound
``max_n (sum_k |W[k,n]| * max|x| + |b[n]|)`` holds for every input the input type allows (the weights are
constants) and must stay below the accumulator's positive range; otherwise the op is refused.

The epilogue (``plan_epilogue``) turns the exact accumulator into output codes with the tile's SRS
(shift, ``aie::rounding_mode``, ``aie::saturation_mode``) into the output container, then a clamp to
``[clamp_lo, clamp_hi]``; float scales and read-off step functions get kernels/requant.py's cheapest exact
requantisation (kernels/linear_scaled.py, kernels/linear_stepped.py). Each is built so that, for every accumulator
value within the bound, it gives the codes of the source framework's arithmetic (docs/numerics.md); combinations
without such an argument are refused with ``UnsupportedQuantizationError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import IllegalConfigError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import accumulator_frac, bias_in_accumulator, requantize
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.epilogue import ACC_BITS, Epilogue, plan_epilogue
from nn2aie.kernels.linear_scaled import ScaledLayer, evaluate_codes, is_scaled, scaled_layer
from nn2aie.kernels.linear_stepped import evaluate_stepped, is_stepped, stepped_requant
from nn2aie.kernels.requant import REQUANT_KINDS, Requant, choose_requant

# The preferred aie::mmul shape and the accumulator of each operand pair (activations x weights, container types
# without the sign) on AIE-ML, all native (one MAC instruction per mac()); dense and conv tiles use them.
# AIE-API defines the int16 x int8 shapes for 32-bit accumulators only (detail/aie2/mmul_16_8.hpp): such a layer
# whose sum could leave 32 bits is widened to int16 x int16 (weights stored as int16, same codes) with acc64.
PREFERRED_MMUL = {
    ("int8", "int8"): ((4, 8, 8), "acc32"),
    ("int16", "int8"): ((4, 4, 8), "acc32"),
    ("int16", "int16"): ((4, 4, 4), "acc64"),
}
PAIR_ACC = {pair: acc for pair, (_, acc) in PREFERRED_MMUL.items()}


@dataclass(frozen=True)
class LinearPlan:
    """Types, accumulator, bound and epilogue of one linear op."""

    a_dtype: str
    w_dtype: str  # the weights' container on the tile (int16 when an int16 x int8 layer is widened)
    out_dtype: str
    pair: tuple[str, str]  # operand pair without signs, e.g. ("int8", "int8")
    acc: str
    bound: int  # worst-case |partial sum| for any input of the input type
    bias: np.ndarray | None  # int64 [N]: what the tile's accumulators start from
    relu: bool
    epilogue: Epilogue
    requant: Requant | None  # a multiplier / table epilogue (float scales, read-off steps); None: the SRS


def _bit_type(container: str) -> str:
    return container.removeprefix("u")


def _max_abs(t: FixedType | ScaledType) -> int:
    return max(abs(t.min_code), abs(t.max_code))


def tile_bias(graph: Graph, op: Op, scaled: ScaledLayer | None = None) -> np.ndarray | None:
    """The bias codes the tile's accumulators start from (int64 [N]) or None."""
    if scaled is None and is_scaled(graph, op):
        scaled = scaled_layer(graph, op)
    return scaled.tile_bias if scaled is not None else bias_in_accumulator(graph, op)


def plan_linear(graph: Graph, op: Op, device: Device, what: str = "dense",
                requant_kind: str | None = None) -> LinearPlan:
    """How ``op`` computes on a tile (``what`` names the family's kernels in errors); ``requant_kind`` restricts
    a float-scale layer's requantisation to one implementation."""
    x_t = graph.tensor(op.inputs[0])
    w_t = graph.tensor(op.inputs[1])
    y_t = graph.tensor(op.outputs[0])
    where = f"layer {op.name}"
    xt, wt, yt = x_t.type, w_t.type, y_t.type
    scaled = scaled_layer(graph, op) if is_scaled(graph, op) else None
    assert all(isinstance(t, FixedType | ScaledType) for t in (xt, wt, yt))

    for t, role, tensor in ((xt, "input", x_t), (wt, "weights", w_t)):
        if t.container_bits not in (8, 16):
            raise UnsupportedQuantizationError(
                f"{where} {role} tensor {tensor.origin or tensor.name}",
                f"{t.width}-bit values need a {t.container_bits}-bit container; AIE-ML {what} kernels take 8 or "
                "16 bits", "quantize to at most 16 bits")
    if not wt.signed:
        raise UnsupportedQuantizationError(f"{where} weights", "unsigned weights are not supported",
                                           "use a signed weight quantizer")
    pair = (_bit_type(xt.container), _bit_type(wt.container))
    if pair not in PAIR_ACC:
        raise UnsupportedQuantizationError(
            where, f"operand pair {xt.container} x {wt.container} has no {what} kernel",
            "use int8 x int8, int16 x int8 or int16 x int16 (activations x weights)")
    acc = PAIR_ACC[pair]
    device.mmul_shapes(*pair)  # refuses pairs the device generation lacks

    bias = tile_bias(graph, op, scaled)
    bias_max = int(abs(bias).max(initial=0)) if bias is not None else 0
    # worst case over every input the input type allows, given the actual weights: each partial sum of column n
    # (any subset of its products, bias included, cascades included) stays within sum_k |W[k,n]|*max|x| + |b[n]|
    col_abs = np.abs(w_t.data.astype(np.int64)).sum(axis=0)
    b_abs = np.abs(bias) if bias is not None else 0
    bound = int((col_abs * _max_abs(xt) + b_abs).max(initial=0))
    w_container = wt.container
    if pair == ("int16", "int8") and bound >= 2 ** (ACC_BITS[acc] - 1):
        pair, w_container = ("int16", "int16"), "int16"
        acc = PAIR_ACC[pair]
        device.mmul_shapes(*pair)
    limit = min(ACC_BITS[acc] - 1, 53)  # 2**53: the emulator's float64 sums stay exact
    if bound >= 2**limit:
        raise UnsupportedQuantizationError(
            where, f"the accumulator could overflow: |sum| may reach {bound} >= 2^{limit} ({acc})",
            "use narrower weights/activations or split the layer")
    if bias is not None and bias_max >= 2**31:
        raise UnsupportedQuantizationError(
            f"{where} bias", "bias at the accumulator's scale needs more than 32 bits",
            "quantize the bias to 32 bits at scale = input scale x weight scale")

    relu = op.attrs.get("activation") == "relu"
    out_where = f"{where} output tensor {y_t.origin or y_t.name}"
    requant = None
    if is_stepped(op):
        if yt.container_bits not in (8, 16):
            raise UnsupportedQuantizationError(out_where, f"{yt.width}-bit output codes need a {yt.container_bits}-"
                                               "bit container", "quantize layer outputs to at most 16 bits")
        kinds = REQUANT_KINDS if requant_kind is None else (requant_kind,)
        try:
            requant = stepped_requant(op, tuple(device.fact("srs_shift_safe_range")), kinds)
        except UnsupportedQuantizationError as exc:
            raise UnsupportedQuantizationError(out_where, f"no exact {' or '.join(kinds)} requantisation: "
                                               f"{exc.reason}", exc.hint) from exc
        epi = Epilogue(requant.shift, requant.rounding, "saturate", requant.lo, requant.hi)
        if requant.kind == "shift":
            requant = None
    elif scaled is None:
        if requant_kind not in (None, "shift"):
            raise IllegalConfigError(f"override for layer {op.name}", f"requant {requant_kind!r} is for float "
                                     "scales; this layer's scales are powers of two and it requantises by a shift",
                                     "drop the requant override for this layer")
        epi = plan_epilogue(yt, accumulator_frac(graph, op), acc, relu, bound, device, out_where)
    else:
        epi, requant = _scaled_epilogue(scaled, yt, device, out_where, requant_kind)
    return LinearPlan(xt.container, w_container, yt.container, pair, acc, bound, bias, relu, epi, requant)


def _scaled_epilogue(scaled: ScaledLayer, yt, device: Device, where: str, kind: str | None = None):
    """The epilogue of a scaled layer: kernels/requant.py's cheapest exact implementation of the source map on the
    reachable accumulator range; an SRS when it is one (then no Requant is kept), else a multiplier or a table.
    ``kind`` restricts the choice to one implementation (a refusal says why it is not exact)."""
    if yt.container_bits not in (8, 16):
        raise UnsupportedQuantizationError(where, f"{yt.width}-bit output codes need a {yt.container_bits}-bit "
                                           "container", "quantize layer outputs to at most 16 bits")
    kinds = REQUANT_KINDS if kind is None else (kind,)
    try:
        rq = choose_requant(scaled.map, scaled.acc_lo, scaled.acc_hi, tuple(device.fact("srs_shift_safe_range")),
                            kinds)
    except UnsupportedQuantizationError as exc:
        raise UnsupportedQuantizationError(where, f"no exact {' or '.join(kinds)} requantisation: {exc.reason}",
                                           exc.hint) from exc
    epi = Epilogue(rq.shift, rq.rounding, "saturate", rq.lo, rq.hi)
    return epi, (None if rq.kind == "shift" else rq)


def evaluate_linear(graph: Graph, op: Op, acc: np.ndarray) -> np.ndarray:
    """Output codes of the op from its exact sums ``acc`` ([..., N] int64, bias not yet added), as the source
    computes them: a read-off step function, the exact float-scale map, or bias + ReLU + requantisation."""
    if is_stepped(op):  # a threshold table read off the source (kernels/linear_stepped.py)
        bias = bias_in_accumulator(graph, op)
        return evaluate_stepped(op, acc if bias is None else acc + bias)
    if is_scaled(graph, op):  # float scales / zero points: the exact source map (kernels/linear_scaled.py)
        layer = scaled_layer(graph, op)
        return evaluate_codes(layer, acc + (layer.tile_bias if layer.tile_bias is not None else 0))
    bias = bias_in_accumulator(graph, op)
    if bias is not None:
        acc = acc + bias
    if op.attrs.get("activation") == "relu":  # on the exact sum, before requantisation
        acc = np.maximum(acc, 0)
    y_t = graph.tensor(op.outputs[0])
    assert isinstance(y_t.type, FixedType)
    where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
    return requantize(acc, accumulator_frac(graph, op), y_t.type, where)
