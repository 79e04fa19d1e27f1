"""Bit-exact shift-round-saturate (SRS) of AIE-ML, vectorised over NumPy int64 arrays.

Definitions follow shared/reference/aie-ml.md section 5 (AIE-API ``aie::rounding_mode`` /
``aie::saturation_mode``, UG1583). Every kernel family's semantics calls these; nothing else rounds.
"""

from __future__ import annotations

import numpy as np

from nn2aie.errors import UnsupportedQuantizationError

# ap_fixed rounding -> AIE-ML rounding mode (shared/reference/numerics.md)
AP_TO_AIE_ROUNDING = {
    "TRN": "floor",
    "TRN_ZERO": "symmetric_floor",
    "RND": "positive_inf",
    "RND_ZERO": "symmetric_zero",
    "RND_MIN_INF": "negative_inf",
    "RND_INF": "symmetric_inf",
    "RND_CONV": "conv_even",
}
AP_TO_AIE_SATURATION = {"WRAP": "none", "SAT": "saturate", "SAT_SYM": "symmetric"}

AIE_ROUNDING_MODES = ("floor", "ceil", "symmetric_floor", "symmetric_ceil", "negative_inf", "positive_inf",
                      "symmetric_zero", "symmetric_inf", "conv_even", "conv_odd")


def aie_rounding(ap_mode: str) -> str:
    return AP_TO_AIE_ROUNDING[ap_mode]


def aie_saturation(ap_mode: str, where: str) -> str:
    if ap_mode not in AP_TO_AIE_SATURATION:
        raise UnsupportedQuantizationError(
            where, f"overflow mode {ap_mode} has no AIE-ML saturation mode",
            "use AP_SAT, AP_SAT_SYM or AP_WRAP for this tensor")
    return AP_TO_AIE_SATURATION[ap_mode]


def shift_round(x: np.ndarray, shift: int, mode: str) -> np.ndarray:
    """Divide int64 ``x`` by 2**shift and round with the AIE-ML ``mode``; shift <= 0 scales up exactly."""
    x = np.asarray(x, dtype=np.int64)
    if shift <= 0:
        return x << np.int64(-shift)
    s = np.int64(shift)
    q = x >> s  # arithmetic shift: floor division
    r = x - (q << s)
    nonzero = (r != 0).astype(np.int64)
    neg = x < 0
    if mode == "floor":
        return q
    if mode == "ceil":
        return q + nonzero
    if mode == "symmetric_floor":
        return np.where(neg, q + nonzero, q)
    if mode == "symmetric_ceil":
        return np.where(neg, q, q + nonzero)
    half = np.int64(1) << (s - 1)
    above = r > half
    tie = r == half
    if mode == "negative_inf":
        up = tie * 0
    elif mode == "positive_inf":
        up = tie
    elif mode == "symmetric_zero":
        up = tie & neg
    elif mode == "symmetric_inf":
        up = tie & ~neg
    elif mode == "conv_even":
        up = tie & ((q & 1) == 1)
    elif mode == "conv_odd":
        up = tie & ((q & 1) == 0)
    else:
        raise ValueError(f"unknown AIE rounding mode {mode!r}")
    return q + (above | up).astype(np.int64)


def saturate(x: np.ndarray, bits: int, signed: bool, mode: str) -> np.ndarray:
    """Bring int64 ``x`` into a ``bits``-wide container with the AIE-ML saturation ``mode``."""
    x = np.asarray(x, dtype=np.int64)
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    if mode == "saturate":
        return np.clip(x, lo, hi)
    if mode == "symmetric":
        return np.clip(x, -hi if signed else lo, hi)
    if mode == "none":
        if bits >= 64:
            return x
        mask = np.int64((1 << bits) - 1)
        low = x & mask
        if signed:
            low = np.where(low > hi, low - (np.int64(1) << np.int64(bits)), low)
        return low
    raise ValueError(f"unknown AIE saturation mode {mode!r}")


def srs(x: np.ndarray, shift: int, bits: int, signed: bool, rounding: str, saturation: str) -> np.ndarray:
    """Shift-round-saturate one accumulator array to a ``bits``-wide integer vector (as int64)."""
    return saturate(shift_round(x, shift, rounding), bits, signed, saturation)


def quantize_float(x: np.ndarray, frac: int, bits: int, signed: bool, lo: int, hi: int) -> np.ndarray:
    """Host-side input quantisation as int64 codes (see ``quantize_float32``)."""
    return quantize_float32(x, frac, lo, hi).astype(np.int64)


def quantize_float32(x: np.ndarray, frac: int, lo: int, hi: int) -> np.ndarray:
    """Host-side input quantisation: round-half-even(x * 2**frac), clamp to [lo, hi] (QuantizeLinear / Quant)."""
    # float32 like QuantizeLinear: x * 2**frac only changes the exponent (exact for float32 inputs)
    scaled = np.asarray(x, dtype=np.float32) * np.float32(2.0 ** frac)
    np.rint(scaled, out=scaled)
    np.clip(scaled, lo, hi, out=scaled)
    return scaled  # exact integer codes held in float32 (|code| < 2**24)


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
