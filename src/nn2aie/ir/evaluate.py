"""Logical integer model: evaluates a logical graph on integer codes, layer by layer, with exact arithmetic.

This is link 2 of the verification chain (shared/design.md): it must equal the source framework's execution,
and the physical emulator must equal it. It knows nothing about tiles.
"""

from __future__ import annotations

import json

import numpy as np

from nn2aie.errors import InternalCheckError, UnsupportedQuantizationError
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, type_from_json
from nn2aie.numerics import aie_rounding, needs_wide_ints, saturate, shift_round


def exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer matmul via float64 BLAS, exact while every partial sum stays below 2**53 (checked)."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0)) * x.shape[-1]
    if bound < 2.0**53:
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return x.astype(np.int64) @ w.astype(np.int64)


def overflow_range(out: FixedType) -> tuple[int, int]:
    """Codes a saturating overflow mode clamps to: [min_code, max_code], or [-max, max] for signed AP_SAT_SYM
    (an unsigned SAT_SYM type clamps to [0, max], as ap_ufixed and `quantizers` do)."""
    if out.overflow == "SAT_SYM" and out.signed:
        return -out.max_code, out.max_code
    return out.min_code, out.max_code


def requantize(acc: np.ndarray, acc_frac: int, out: FixedType, where: str) -> np.ndarray:
    """Bring an exact accumulator (value acc * 2**-acc_frac) into ``out`` as the source framework does.

    Rounding (``out.rounding``: an ap_fixed name, or a QONNX-only one such as CEIL) is exact on the rational
    value; then the overflow mode: SAT / SAT_SYM clamp to ``overflow_range(out)``, WRAP keeps the low
    ``out.width`` bits (two's complement if signed). ap_fixed / `quantizers` clip *before* rounding in the
    saturating modes and QONNX Quant clips before rounding too; with clamp bounds on the output grid and a
    monotone rounding that keeps integers fixed, round-then-clip gives the same codes (docs/numerics.md, "clip
    before or after rounding"), so this one order serves every source framework.

    Refused: AP_SAT_ZERO (not emulated), and WRAP of a narrow-range type (no source framework defines it).
    """
    if out.overflow == "SAT_ZERO":
        raise UnsupportedQuantizationError(
            where, "overflow mode AP_SAT_ZERO (overflow -> 0) is not supported: AIE-ML has no such saturation mode "
            "and nn2aie does not emulate it", "quantize this tensor with AP_SAT (clamp) instead")
    if out.overflow not in ("SAT", "SAT_SYM", "WRAP"):
        raise UnsupportedQuantizationError(where, f"overflow mode {out.overflow} is unknown",
                                           "use SAT, SAT_SYM or WRAP")
    if out.overflow == "WRAP" and out.narrow:
        raise UnsupportedQuantizationError(
            where, "wrap-around into a narrow range is not defined by any source framework",
            "use a saturating overflow mode with narrow ranges")
    mode = aie_rounding(out.rounding, where)
    shift = acc_frac - out.frac
    acc = np.asarray(acc, dtype=np.int64)
    if needs_wide_ints(int(np.abs(acc).max(initial=0)), shift):
        acc = acc.astype(object)  # exact Python-int arithmetic, converted back below (results fit int64)
    q = shift_round(acc, shift, mode)
    if out.overflow == "WRAP":
        q = saturate(q, out.width, out.signed, "none")
    else:
        q = np.clip(q, *overflow_range(out))
    return q.astype(np.int64)


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


def evaluate(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the graph on integer codes ([events, *shape] per graph input); returns every tensor's codes (int64).
    Each op is evaluated by its family (kernels/registry.py), in topological order."""
    from nn2aie.kernels.registry import family_for  # the registry imports the IR

    values = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    for op in graph.topo_order():
        family = family_for(op.kind)
        if family is None:
            raise InternalCheckError(f"op {op.name}", f"unknown kind {op.kind}", "report this")
        args = [values[t] if not graph.tensor(t).is_const else graph.tensor(t).data for t in op.inputs]
        for name, value in zip(op.outputs, family.evaluate(graph, op, args), strict=True):
            values[name] = value
    return values


# Graph.source key: JSON of a type the host casts float inputs into BEFORE the graph input's own type (hls4ml's
# Input type when a linear quantizing Activation follows it); absent = one cast
INPUT_PRE_CAST = "input_pre_cast"


def input_pre_cast(graph: Graph) -> FixedType | None:
    text = graph.source.get(INPUT_PRE_CAST)
    if not text:
        return None
    t = type_from_json(json.loads(text))
    assert isinstance(t, FixedType)
    return t


def cast_input(values: np.ndarray, t: FixedType, pre: FixedType | None, where: str) -> np.ndarray:
    """Host-side input codes: ``cast_float`` into ``t``, or into ``pre`` first and then ``requantize`` into ``t``
    (two casts in a row, as the framework computes them)."""
    if pre is None:
        return cast_float(values, t, where)
    return requantize(cast_float(values, pre, where), pre.frac, t, where)


def cast_float(values: np.ndarray, t: FixedType, where: str) -> np.ndarray:
    """Codes of ``ap_fixed(double v)`` for float ``values``: the type's rounding, then its overflow mode (how
    hls4ml's C++ casts float inputs and weight text; the general form of the host-side input quantizer).

    v * 2**frac is exact in float64 and so are its floor and fraction; the rounding modes only depend on the floor
    and on whether the fraction is 0, below, at or above one half, so the value is re-expressed exactly enough on a
    quarter-LSB grid and handed to the IR's own ``requantize``."""
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise UnsupportedQuantizationError(where, "contains NaN or infinite values", "clean the values first")
    if t.overflow in ("SAT", "SAT_SYM"):
        # beyond +-2**(width - frac + 1) (a power of two: exact) every value saturates to the same code, so clip
        # there and a huge input saturates as ap_fixed does instead of overflowing the int64 codes below
        bound = np.ldexp(1.0, t.width - t.frac + 1)
        v = np.clip(v, -bound, bound)
    elif t.overflow == "WRAP":
        # WRAP keeps the codes modulo 2**width: taking v modulo 2**(width - frac) first (fmod is exact) moves the
        # scaled value by a multiple of 2**width, an even integer, which changes no rounding and no wrapped code
        v = np.fmod(v, np.ldexp(1.0, t.width - t.frac))
    scaled = np.ldexp(v, t.frac)
    floor = np.floor(scaled)
    if np.abs(floor).max(initial=0) >= 2.0**60:
        raise UnsupportedQuantizationError(where, f"values up to {np.abs(v).max():g} are far outside {t.describe()}",
                                           "check the weights or give the tensor a wider type")
    r = scaled - floor
    quarter = np.where(r == 0, 0, np.where(r < 0.5, 1, np.where(r == 0.5, 2, 3)))
    exact = floor.astype(np.int64) * 4 + quarter
    return requantize(exact, t.frac + 2, t, where)
