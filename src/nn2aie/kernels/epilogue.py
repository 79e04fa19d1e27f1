"""The SRS epilogue every family shares: an exact integer (accumulator) -> output codes on the tile.

``plan_epilogue`` builds shift, ``aie::rounding_mode``, ``aie::saturation_mode``, a clamp and an optional wrap
step so that, for every accumulator value within a bound, the tile gives the codes of
``ir.evaluate.requantize`` (+ ReLU) -- the source framework's arithmetic (docs/numerics.md has the argument for
each mode; combinations without one are refused with ``UnsupportedQuantizationError``). ``apply_epilogue`` is the
same step on int64 arrays, for the emulator of families that compute in integers.

Not a family: a shared building block (kernels/family.py's interface does not depend on it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.evaluate import overflow_range
from nn2aie.ir.types import FixedType
from nn2aie.numerics import (
    aie_rounding,
    aie_saturation,
    container_range,
    saturate,
    shift_round,
    shift_round_float,
    wrap_float,
)

ACC_BITS = {"acc32": 32, "acc64": 64}
OUTPUT_CONTAINER_BITS = (8, 16)  # outputs feed the next layer's operands (int8/int16); 32-bit: see _check_container


@dataclass(frozen=True)
class Epilogue:
    """Accumulator -> output codes on the tile: ``wrap(clamp(srs(acc, shift, rounding, saturation), lo, hi))``.

    ``wrap_bits`` > 0 is AP_WRAP into a type narrower than its container: after the clamp the kernel keeps the
    low ``wrap_bits`` bits, sign-extended (signed) or masked (unsigned)."""

    shift: int
    rounding: str  # aie::rounding_mode
    saturation: str  # aie::saturation_mode
    clamp_lo: int
    clamp_hi: int
    wrap_bits: int = 0


def _check_container(yt: FixedType, acc: str, shift: int, device: Device, where: str) -> None:
    """8/16-bit outputs always; 32-bit ones (the graph output only: no kernel takes int32 activations) where the
    SRS into int32 honours the shift: acc64 -> int32 is an SRS, acc32 -> int32 a reinterpretation (UG1583,
    AIE-API), exact only with shift 0."""
    if yt.container_bits in OUTPUT_CONTAINER_BITS:
        return
    conversion = device.fact("srs_outputs").get(acc, {}).get(yt.container)
    if yt.container_bits == 32 and conversion == "srs":
        return
    if yt.container_bits == 32 and conversion == "reinterpret" and shift == 0:
        return
    reason = f"{yt.width}-bit output codes need a {yt.container_bits}-bit container"
    if yt.container_bits == 32 and conversion == "reinterpret":
        reason += (f"; the {acc} -> {yt.container} conversion ignores the SRS shift (AIE-API), so a 32-bit output "
                   f"works only at the accumulator's own scale (shift 0, here {shift})")
    raise UnsupportedQuantizationError(where, reason, "quantize layer outputs to at most 16 bits, or give a "
                                       "32-bit output the accumulator's fractional bits")


def plan_epilogue(yt: FixedType, acc_frac: int, acc: str, relu: bool, acc_bound: int, device: Device,
                  where: str) -> Epilogue:
    """The SRS + clamp (+ wrap) epilogue that reproduces ``requantize(acc, acc_frac, yt)`` (then ReLU) exactly for
    every accumulator with ``|acc| <= acc_bound``; refuses what cannot be reproduced. ``where`` names the output
    tensor in errors."""
    shift = acc_frac - yt.frac
    _check_container(yt, acc, shift, device, where)
    rounding = aie_rounding(yt.rounding, where)
    saturation = aie_saturation(yt.overflow, where, yt.signed)
    if yt.overflow == "WRAP" and yt.narrow:
        raise UnsupportedQuantizationError(
            where, "wrap-around into a narrow range is defined by no framework", "use AP_SAT / AP_SAT_SYM for this "
            "tensor, or AP_WRAP without the narrow range")

    lo_shift, hi_shift = device.fact("srs_shift_safe_range")
    if shift > hi_shift:
        raise UnsupportedQuantizationError(
            where, f"the SRS would shift right by {shift} bits; AIE-ML shifts at most {hi_shift} (UG1583)",
            "check the scales of input, weights and output (the output has far fewer fractional bits than the "
            "accumulator)")
    if shift < lo_shift:
        raise UnsupportedQuantizationError(
            where, f"output scale 2^{-yt.frac} is {-shift} bits finer than the accumulator scale 2^{-acc_frac}: "
            f"the SRS would shift left by {-shift}; AIE-ML supports left shifts of at most {-lo_shift} bit(s) "
            "(UG1583: SRS shifts -4..-2 are unsafe)",
            f"use an output scale of at least 2^{-(acc_frac - lo_shift)}")
    if shift < 0 and acc_bound << -shift >= 1 << (ACC_BITS[acc] - 1):
        raise UnsupportedQuantizationError(
            where, f"the SRS left shift by {-shift} could overflow the {acc} lanes (|acc| may reach {acc_bound})",
            "use an output quantizer with fewer fractional bits or narrower operands")

    c_lo, c_hi = container_range(yt.container_bits, yt.signed)
    # every rounded value lies in [-q_max, q_max] (rounding moves a value by less than one output LSB)
    q_max = acc_bound << -shift if shift <= 0 else -(-acc_bound >> shift)
    wrap_bits = 0
    if yt.overflow != "WRAP":
        lo, hi = overflow_range(yt)
        if relu:
            lo = max(lo, 0)
    elif yt.min_code <= (0 if relu else -q_max) and q_max <= yt.max_code:
        # no kept value can leave the type: wrap-around never happens, saturating is the same and always exact
        saturation, lo, hi = "saturate", (max(yt.min_code, 0) if relu else yt.min_code), yt.max_code
    elif relu:
        # The model wraps srs(max(acc, 0)); the kernel clamps after its SRS. Exact when the SRS cannot leave the
        # container (then max(srs(acc), 0) == srs(max(acc, 0)): rounding is monotone and keeps 0) and the type is
        # narrower than the container, so the wrap step runs after the clamp.
        if yt.width == yt.container_bits or q_max > c_hi:
            raise UnsupportedQuantizationError(
                where, f"ReLU followed by a wrapping output type: sums up to {acc_bound} could wrap "
                f"({q_max} > {yt.max_code}), and the kernel applies ReLU after its SRS into the "
                f"{yt.container_bits}-bit container", "use AP_SAT for this tensor (or fewer integer bits in the "
                "inputs/weights, or a type narrower than its container)")
        saturation, lo, hi, wrap_bits = "saturate", 0, c_hi, yt.width
    else:
        # saturation 'none' keeps the low container bits (modulo 2^container); the wrap step narrows further
        lo, hi = c_lo, c_hi
        wrap_bits = yt.width if yt.width < yt.container_bits else 0
    if not (c_lo <= lo <= hi <= c_hi):  # the clamp must lie inside the container: checked, not assumed
        raise UnsupportedQuantizationError(where, f"output codes [{lo}, {hi}] do not fit {yt.container}",
                                           "report this model to the nn2aie developers")
    return Epilogue(shift, rounding, saturation, lo, hi, wrap_bits)


def apply_epilogue(acc: np.ndarray, epi: Epilogue, container_bits: int, signed: bool) -> np.ndarray:
    """The tile's ``wrap(clamp(srs(acc)))`` on exact int64 accumulator values (int64 codes out)."""
    acc = np.asarray(acc, dtype=np.int64)
    if epi.saturation != "none" and acc.size and max(int(acc.max()), -int(acc.min())) < 2 ** 53:
        # fast path: float64 holds every value exactly, and shift_round_float rounds exactly below 2**53;
        # saturate-then-clamp is one clamp to the intersection (the clamp range lies inside the container's)
        sat_hi = (1 << (container_bits - 1)) - 1 if signed else (1 << container_bits) - 1
        sat_lo = (-sat_hi - (epi.saturation == "saturate")) if signed else 0
        y = shift_round_float(acc.astype(np.float64), epi.shift, epi.rounding, inplace=True)
        y = np.clip(y, max(sat_lo, epi.clamp_lo), min(sat_hi, epi.clamp_hi), out=y)
        if epi.wrap_bits:
            y = wrap_float(y, epi.wrap_bits, signed)
        return y.astype(np.int64)
    y = saturate(shift_round(np.asarray(acc, dtype=np.int64), epi.shift, epi.rounding), container_bits, signed,
                 epi.saturation)
    y = np.clip(y, epi.clamp_lo, epi.clamp_hi)
    if epi.wrap_bits:
        y = saturate(y, epi.wrap_bits, signed, "none")  # keep the low wrap_bits bits, two's complement
    return y
