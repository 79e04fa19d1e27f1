"""Bit-exact shift-round-saturate (SRS) of AIE-ML, vectorised over NumPy int64 arrays.

Definitions follow shared/reference/aie-ml.md section 5 (AIE-API ``aie::rounding_mode`` /
``aie::saturation_mode``, UG1583). Every kernel family's semantics calls these; nothing else rounds.
The mode tables and the exactness arguments are in docs/numerics.md.
"""

from __future__ import annotations

import numpy as np

from nn2aie.errors import UnsupportedQuantizationError

# ap_fixed rounding -> AIE-ML rounding mode (shared/reference/numerics.md; checked against the `quantizers`
# package and the UG1399 examples in tests/test_numerics_oracles.py)
AP_TO_AIE_ROUNDING = {
    "TRN": "floor",
    "TRN_ZERO": "symmetric_floor",
    "RND": "positive_inf",
    "RND_ZERO": "symmetric_zero",
    "RND_MIN_INF": "negative_inf",
    "RND_INF": "symmetric_inf",
    "RND_CONV": "conv_even",
}
# Rounding modes of QONNX Quant that ap_fixed lacks; the IR names them like this (``FixedType.rounding``).
EXTRA_IR_ROUNDING = {
    "CEIL": "ceil",            # toward +inf (np.ceil)
    "UP": "symmetric_ceil",    # away from zero (sign(x) * ceil(|x|))
}
IR_TO_AIE_ROUNDING = {**AP_TO_AIE_ROUNDING, **EXTRA_IR_ROUNDING}
# QONNX Quant ``rounding_mode`` -> IR rounding name (qonnx ``resolve_rounding_mode``)
QONNX_TO_IR_ROUNDING = {
    "ROUND": "RND_CONV",       # np.round: half to even
    "HALF_EVEN": "RND_CONV",
    "FLOOR": "TRN",
    "CEIL": "CEIL",
    "DOWN": "TRN_ZERO",        # np.fix: toward zero
    "UP": "UP",
    "HALF_UP": "RND_INF",      # sign(x) * floor(|x| + 0.5): ties away from zero
    "HALF_DOWN": "RND_ZERO",   # sign(x) * ceil(|x| - 0.5): ties toward zero
}
AP_TO_AIE_SATURATION = {"WRAP": "none", "SAT": "saturate", "SAT_SYM": "symmetric"}

AIE_ROUNDING_MODES = ("floor", "ceil", "symmetric_floor", "symmetric_ceil", "negative_inf", "positive_inf",
                      "symmetric_zero", "symmetric_inf", "conv_even", "conv_odd")
AIE_SATURATION_MODES = ("none", "saturate", "symmetric")


def aie_rounding(ir_mode: str, where: str = "tensor") -> str:
    """AIE-ML rounding mode of an IR (ap_fixed or QONNX-only) rounding name."""
    if ir_mode not in IR_TO_AIE_ROUNDING:
        raise UnsupportedQuantizationError(
            where, f"rounding mode {ir_mode!r} is unknown",
            f"use one of {', '.join(IR_TO_AIE_ROUNDING)}")
    return IR_TO_AIE_ROUNDING[ir_mode]


def aie_saturation(ap_mode: str, where: str, signed: bool = True) -> str:
    """AIE-ML saturation mode of an ap_fixed overflow mode.

    AP_SAT_SYM on an unsigned type clamps to [0, max] (ap_ufixed, `quantizers`): that is plain ``saturate``;
    the symmetric hardware mode is only used for signed outputs."""
    if ap_mode == "SAT_ZERO":
        raise UnsupportedQuantizationError(
            where, "overflow mode AP_SAT_ZERO (overflow -> 0) has no AIE-ML saturation mode and nn2aie does not "
            "emulate it", "quantize this tensor with AP_SAT (clamp) instead")
    if ap_mode not in AP_TO_AIE_SATURATION:
        raise UnsupportedQuantizationError(
            where, f"overflow mode {ap_mode} has no AIE-ML saturation mode",
            "use AP_SAT, AP_SAT_SYM or AP_WRAP for this tensor")
    if ap_mode == "SAT_SYM" and not signed:
        return "saturate"
    return AP_TO_AIE_SATURATION[ap_mode]


def container_range(bits: int, signed: bool) -> tuple[int, int]:
    """Codes of a ``bits``-wide two's-complement (or unsigned) integer."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _int_array(x) -> np.ndarray:
    """int64 array, or an object array of Python ints when ``x`` already is one (arbitrary precision)."""
    x = np.asarray(x)
    return x if x.dtype == object else x.astype(np.int64)


def needs_wide_ints(max_abs: int, shift: int) -> bool:
    """True when ``shift_round`` of values up to ``max_abs`` by ``shift`` does not fit int64 arithmetic."""
    if shift >= 62:
        return True
    return shift < 0 and int(max_abs).bit_length() - shift >= 63


def shift_round(x: np.ndarray, shift: int, mode: str) -> np.ndarray:
    """Divide integer ``x`` by 2**shift and round with the AIE-ML ``mode``; shift <= 0 scales up exactly.

    int64 in, int64 out; an object array of Python ints (see ``needs_wide_ints``) is computed exactly too."""
    if mode not in AIE_ROUNDING_MODES:
        raise ValueError(f"unknown AIE rounding mode {mode!r}")
    x = _int_array(x)
    wide = x.dtype == object
    one = 1 if wide else np.int64(1)
    if shift <= 0:
        return x << (-shift if wide else np.int64(-shift))
    s = shift if wide else np.int64(shift)
    q = x >> s  # arithmetic shift: floor division
    r = x - (q << s)
    nonzero = (r != 0).astype(x.dtype)
    neg = x < 0
    if mode == "floor":
        return q
    if mode == "ceil":
        return q + nonzero
    if mode == "symmetric_floor":
        return np.where(neg, q + nonzero, q)
    if mode == "symmetric_ceil":
        return np.where(neg, q, q + nonzero)
    half = one << (s - 1)
    above = r > half
    tie = r == half
    if mode == "negative_inf":
        up = np.zeros_like(tie)
    elif mode == "positive_inf":
        up = tie
    elif mode == "symmetric_zero":
        up = tie & neg
    elif mode == "symmetric_inf":
        up = tie & ~neg
    elif mode == "conv_even":
        up = tie & ((q & 1) == 1)
    else:  # conv_odd
        up = tie & ((q & 1) == 0)
    return q + (above | up).astype(x.dtype)


def shift_round_half_even(x: np.ndarray, shift) -> np.ndarray:
    """``x / 2**shift`` rounded half to even (the AIE SRS in mode ``conv_even``) with ``shift >= 1`` a scalar or one
    per element (a per-row shift, as the softmax and norm kernels use); int64 in, int64 out."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    q = x >> s
    r = x - (q << s)
    half = np.int64(1) << (s - 1)
    return q + ((r > half) | ((r == half) & ((q & 1) == 1))).astype(np.int64)


def isqrt_int64(v: np.ndarray) -> np.ndarray:
    """``floor(sqrt(v))`` of int64 values ``0 <= v < 2**62``, exactly: a float64 estimate corrected by whole steps
    (its error is a few units at most; ``s * s`` fits int64 for ``s < 2**31``)."""
    v = np.asarray(v, dtype=np.int64)
    s = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(4):
        s = np.where(s * s > v, s - 1, s)
        s = np.where((s + 1) * (s + 1) <= v, s + 1, s)
    return s


def div_round(num, den, mode: str) -> np.ndarray:
    """``num / den`` rounded to an integer with the AIE-ML rounding ``mode`` (den > 0, element-wise): the exact
    rational form of ``shift_round`` (which is ``div_round(x, 2**shift, mode)``), for scales that are not powers of
    two. Object arrays of Python ints are computed exactly; int64 inputs must keep ``2 * num`` in range."""
    if mode not in AIE_ROUNDING_MODES:
        raise ValueError(f"unknown AIE rounding mode {mode!r}")
    num, den = np.broadcast_arrays(_int_array(num), _int_array(den))
    q = num // den  # floor division
    r = num - q * den  # 0 <= r < den
    nonzero = r != 0
    neg = num < 0
    if mode == "floor":
        up = np.zeros_like(nonzero)
    elif mode == "ceil":
        up = nonzero
    elif mode == "symmetric_floor":
        up = nonzero & neg
    elif mode == "symmetric_ceil":
        up = nonzero & ~neg
    else:
        twice = 2 * r
        above, tie = twice > den, twice == den
        up = {"negative_inf": np.zeros_like(tie), "positive_inf": tie, "symmetric_zero": tie & neg,
              "symmetric_inf": tie & ~neg, "conv_even": tie & (q % 2 == 1),
              "conv_odd": tie & (q % 2 == 0)}[mode] | above
    return q + up.astype(q.dtype)


def saturate(x: np.ndarray, bits: int, signed: bool, mode: str) -> np.ndarray:
    """Bring integer ``x`` into a ``bits``-wide container with the AIE-ML saturation ``mode`` (dtype kept)."""
    x = _int_array(x)
    wide = x.dtype == object
    lo, hi = container_range(bits, signed)
    if mode == "saturate":
        return np.clip(x, lo, hi)
    if mode == "symmetric":
        return np.clip(x, -hi if signed else lo, hi)
    if mode == "none":
        if bits >= 64 and not wide:
            return x
        mask = (1 << bits) - 1
        low = x & (mask if wide else np.int64(mask))
        if signed:
            period = (1 << bits) if wide else np.int64(1) << np.int64(bits)  # int64 wraps 2**63 to -2**63: same
            low = np.where(low > hi, low - period, low)
        return low
    raise ValueError(f"unknown AIE saturation mode {mode!r}")


def srs(x: np.ndarray, shift: int, bits: int, signed: bool, rounding: str, saturation: str) -> np.ndarray:
    """Shift-round-saturate one accumulator array to a ``bits``-wide integer vector (as int64)."""
    return saturate(shift_round(x, shift, rounding), bits, signed, saturation)


def pack(x: np.ndarray, bits: int, signed: bool, saturation: str) -> np.ndarray:
    """AIE-ML ``pack`` (16 -> 8 bits): narrows with the tile's saturation mode and never rounds (UG1583, pack)."""
    return saturate(x, bits, signed, saturation)


def srs_then_pack(x: np.ndarray, shift: int, mid_bits: int, bits: int, signed: bool, rounding: str,
                  saturation: str) -> np.ndarray:
    """acc64 -> 8-bit as AIE-API lowers it: SRS to ``mid_bits`` (16) lanes, then ``pack`` to ``bits`` (8).

    Equals ``srs(x, shift, bits, ...)`` for every saturation mode when ``mid_bits >= bits`` (docs/numerics.md):
    rounding happens once, in the first step; wrap-around is reduction modulo 2**mid_bits then 2**bits, i.e.
    modulo 2**bits; the saturating ranges are nested, so clamping to the wide range first changes nothing."""
    return pack(srs(x, shift, mid_bits, signed, rounding, saturation), bits, signed, saturation)


def quantize_float(x: np.ndarray, frac: int, bits: int, signed: bool, lo: int, hi: int) -> np.ndarray:
    """Host-side input quantisation as int64 codes (see ``quantize_float32``)."""
    return quantize_float32(x, frac, lo, hi).astype(np.int64)


def quantize_float32(x: np.ndarray, frac: int, lo: int, hi: int) -> np.ndarray:
    """Host-side input quantisation: round-half-even(x * 2**frac), clamp to [lo, hi] (QuantizeLinear / Quant)."""
    if not -126 <= frac <= 127:
        # 2**frac is not a normal float32 (inf, or a denormal): scale in float64, where it only changes the
        # exponent. QuantizeLinear's x / scale in float32 gives the same codes: it overflows only beyond the
        # clamp range and underflows only far below one half.
        scaled64 = np.clip(np.rint(np.ldexp(np.asarray(x, dtype=np.float32).astype(np.float64), frac)), lo, hi)
        return scaled64.astype(np.float32)
    # float32 like QuantizeLinear: x * 2**frac only changes the exponent (exact for float32 inputs)
    scaled = np.asarray(x, dtype=np.float32) * np.float32(2.0 ** frac)
    np.rint(scaled, out=scaled)
    np.clip(scaled, lo, hi, out=scaled)
    return scaled  # exact integer codes held in float32 (|code| < 2**24)


def round_float_codes(v: np.ndarray, ir_mode: str) -> np.ndarray:
    """Float values rounded to integers with an IR rounding mode (``FixedType.rounding`` names), in float64, where
    float32 inputs and ``v +- 0.5`` are exact; returned as float64 integers."""
    x = np.asarray(v, dtype=np.float64)
    mode = aie_rounding(ir_mode)
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    if mode == "symmetric_floor":
        return np.trunc(x)
    if mode == "symmetric_ceil":
        return np.sign(x) * np.ceil(np.abs(x))
    if mode == "conv_even":
        return np.rint(x)
    if mode == "positive_inf":
        return np.floor(x + 0.5)
    if mode == "negative_inf":
        return np.ceil(x - 0.5)
    if mode == "symmetric_inf":
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if mode == "symmetric_zero":
        return np.sign(x) * np.ceil(np.abs(x) - 0.5)
    raise ValueError(f"no float rounding for {ir_mode!r}")


def shift_round_float(acc: np.ndarray, shift: int, mode: str, inplace: bool = False) -> np.ndarray:
    """``shift_round`` for float arrays that hold exact integers (the emulator's fast path).

    Exact when every |acc| < 2**24 (float32) or < 2**53 (float64): scaling by 2**-shift only changes the
    exponent, v +- 0.5 stays on the value's grid (shift >= 1), and floor/ceil/trunc/rint are exact.
    ``inplace`` reuses ``acc``'s memory (the caller's temporary) for the common modes.
    """
    scale = acc.dtype.type(2.0 ** -shift)
    v = np.multiply(acc, scale, out=acc) if inplace else acc * scale
    if shift <= 0:
        return v
    half = acc.dtype.type(0.5)
    if mode == "floor":
        return np.floor(v, out=v) if inplace else np.floor(v)
    if mode == "ceil":
        return np.ceil(v)
    if mode == "symmetric_floor":
        return np.trunc(v)
    if mode == "symmetric_ceil":
        return np.copysign(np.ceil(np.abs(v)), v)
    if mode == "negative_inf":
        return np.ceil(v - half)
    if mode == "positive_inf":
        return np.floor(v + half)
    if mode == "symmetric_zero":
        return np.copysign(np.ceil(np.abs(v) - half), v)
    if mode == "symmetric_inf":
        return np.copysign(np.floor(np.abs(v) + half), v)
    if mode == "conv_even":
        return np.rint(v, out=v) if inplace else np.rint(v)
    if mode == "conv_odd":
        f = np.floor(v)
        return np.where(v - f == half, f + 1 - np.mod(f, 2), np.floor(v + half))
    raise ValueError(f"unknown AIE rounding mode {mode!r}")


def srs_float(acc: np.ndarray, shift: int, bits: int, signed: bool, rounding: str, saturation: str,
              inplace: bool = False) -> np.ndarray:
    """``srs`` on exact-integer float arrays; saturating modes stay in floating point, wrap goes through int64."""
    q = shift_round_float(acc, shift, rounding, inplace)
    if saturation == "none":
        return saturate(q.astype(np.int64), bits, signed, "none").astype(acc.dtype)
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    lo = (-hi - 1 if saturation == "saturate" else -hi) if signed else 0
    return np.clip(q, lo, hi, out=q if inplace else None)


def wrap_float(y: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Reduce exact-integer floats modulo ``2**bits`` into the signed / unsigned ``bits``-wide range, in place
    (the kernel's wrap step: upshift + arithmetic downshift, or a mask). Exact for |y| < 2**53."""
    period = float(1 << bits)
    if signed:
        y += period / 2
        np.mod(y, period, out=y)
        y -= period / 2
        return y
    return np.mod(y, period, out=y)
