"""Choose containers, accumulator, mmul shape and the SRS epilogue of every dense op.

The accumulator is chosen so that no partial sum can overflow: the bound
``max_n (sum_k |W[k,n]| * max|x| + |b[n]|)`` holds for every input the input type allows (the weights are
constants) and must stay below the accumulator's positive range; otherwise the op is refused.

The epilogue (``plan_epilogue``) turns the exact accumulator into output codes with the tile's SRS
(shift, ``aie::rounding_mode``, ``aie::saturation_mode``) into the output container, then a clamp to
``[clamp_lo, clamp_hi]``. It is built so that, for every accumulator value within the bound, it gives the codes
of ``ir.evaluate.requantize`` (+ ReLU) — the source framework's arithmetic. The argument for each mode is in
docs/numerics.md; combinations without such an argument are refused with ``UnsupportedQuantizationError``.
"""

from __future__ import annotations

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import IllegalConfigError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import accumulator_frac, bias_in_accumulator
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.dense.scaled import ScaledLayer, is_scaled, scaled_layer
from nn2aie.kernels.dense.stepped import is_stepped, stepped_requant
from nn2aie.kernels.epilogue import ACC_BITS, Epilogue, plan_epilogue  # noqa: F401  (shared with other families)
from nn2aie.kernels.requant import REQUANT_KINDS, choose_requant

# Preferred aie::mmul shape per operand pair on AIE-ML (all native: one MAC instruction per mac()).
# AIE-API defines the 16x8 shapes for 32-bit accumulators only (detail/aie2/mmul_16_8.hpp): a 16x8 layer whose
# sum could leave 32 bits is widened to 16x16 (weights stored as int16, same codes) with acc64.
PREFERRED_MMUL = {
    ("int8", "int8"): ((4, 8, 8), "acc32"),
    ("int16", "int8"): ((4, 4, 8), "acc32"),
    ("int16", "int16"): ((4, 4, 4), "acc64"),
}
MAX_ACCUMULATOR_REGISTERS = 4  # of 9 x 1024-bit accumulator registers, leave room for the epilogue


def _bit_type(container: str) -> str:
    return container.removeprefix("u")


def _max_abs(t: FixedType | ScaledType) -> int:
    return max(abs(t.min_code), abs(t.max_code))


def accumulator_budget(acc: str, mmul: tuple[int, int, int]) -> int:
    """Independent accumulators a tile may keep: the largest of 4, 2, 1 within MAX_ACCUMULATOR_REGISTERS."""
    for cand in (4, 2, 1):
        if cand * (ACC_BITS[acc] * mmul[0] * mmul[2]) // 1024 <= MAX_ACCUMULATOR_REGISTERS:
            return cand
    return 1


def legal_mmul_shapes(device: Device, pair: tuple[str, str], acc: str) -> list[tuple[int, int, int]]:
    """The aie::mmul shapes the device's AIE-API offers for an operand pair (native first, then the ones AIE-API
    builds from several native MACs), for the accumulator the pair uses; PREFERRED_MMUL first."""
    entry = device.mmul_shapes(*pair)
    if entry.get("acc") not in (None, acc):
        return [PREFERRED_MMUL[pair][0]]
    shapes = [tuple(s) for s in entry.get("native", []) + entry.get("emulated", [])]
    preferred = PREFERRED_MMUL[pair][0]
    return [preferred] + [s for s in shapes if s != preferred]


def _checked_mmul(shape: tuple, pair: tuple[str, str], acc: str, batch: int, device: Device,
                  where: str) -> tuple[int, int, int]:
    legal = legal_mmul_shapes(device, pair, acc)
    text = "x".join(map(str, shape))
    choices = ", ".join("x".join(map(str, s)) for s in legal)
    if shape not in legal:
        raise IllegalConfigError(f"override for {where}", f"mmul {text} is not an aie::mmul shape for "
                                 f"{pair[0]} x {pair[1]} ({acc}) on {device.name}", f"use one of {choices}")
    if batch % shape[0]:
        raise IllegalConfigError(f"override for {where}", f"mmul {text} needs a batch that is a multiple of "
                                 f"{shape[0]}, the batch is {batch}", f"change the batch or use one of {choices}")
    return shape


def plan_precision(graph: Graph, op: Op, device: Device, batch: int,
                   mmul_override: tuple[int, int, int] | None = None, requant_kind: str | None = None) -> DenseExec:
    """How ``op`` runs on a tile: types, accumulator, mmul shape (PREFERRED_MMUL unless overridden), epilogue
    (for float scales the cheapest exact requantisation, or ``requant_kind`` when the user names one)."""
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
                f"{t.width}-bit values need a {t.container_bits}-bit container; AIE-ML dense kernels take 8 or 16 bits",
                "quantize to at most 16 bits")
    if not wt.signed:
        raise UnsupportedQuantizationError(f"{where} weights", "unsigned weights are not supported",
                                           "use a signed weight quantizer")
    pair = (_bit_type(xt.container), _bit_type(wt.container))
    if pair not in PREFERRED_MMUL:
        raise UnsupportedQuantizationError(
            where, f"operand pair {xt.container} x {wt.container} has no dense kernel",
            "use int8 x int8, int16 x int8 or int16 x int16 (activations x weights)")
    mmul, acc = PREFERRED_MMUL[pair]
    device.mmul_shapes(*pair)  # refuses pairs the device generation lacks

    k, n = w_t.shape
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
        mmul, acc = PREFERRED_MMUL[pair]
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

    mmul_fixed = mmul_override is not None
    if mmul_fixed:
        mmul = _checked_mmul(tuple(mmul_override), pair, acc, batch, device, where)
    return DenseExec(
        op=op.name, k=k, n=n, batch=batch, a_dtype=xt.container, w_dtype=w_container, out_dtype=yt.container,
        acc=acc, mmul=mmul, shift=epi.shift, rounding=epi.rounding, saturation=epi.saturation,
        clamp_lo=epi.clamp_lo, clamp_hi=epi.clamp_hi, wrap_bits=epi.wrap_bits, relu=relu,
        has_bias=bias is not None, acc_bound=bound, n_accumulators=accumulator_budget(acc, mmul),
        mmul_fixed=mmul_fixed, requant=requant,
    )


def tile_bias(graph: Graph, op: Op, scaled: ScaledLayer | None = None) -> np.ndarray | None:
    """The bias codes the tile's accumulators start from (int64 [N]) or None."""
    if scaled is None and is_scaled(graph, op):
        scaled = scaled_layer(graph, op)
    return scaled.tile_bias if scaled is not None else bias_in_accumulator(graph, op)


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


def parse_mmul(value, where: str) -> tuple[int, int, int]:
    """An mmul shape given as "4x16x8" or [4, 16, 8]."""
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise IllegalConfigError(where, f"mmul {value!r} is not a shape M x K x N", "write it like \"4x16x8\"")
    return shape  # type: ignore[return-value]
