"""Exact tensor types.

A fixed-point value is ``code * 2**-frac`` where ``code`` is an integer in ``[min_code, max_code]``. A scaled value
(``ScaledType``: ONNX QDQ / QONNX / Brevitas with float scales) is ``(code - zero_point) * scale``, per tensor or per
channel of the last axis, each scale a float32 (an exact rational). Rounding and overflow modes use the ap_fixed
names (shared/reference/numerics.md); they describe how a wider value is brought *into* this type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

# ap_fixed rounding modes, plus CEIL (toward +inf) and UP (away from zero) that QONNX Quant also defines
ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "CEIL", "UP")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")


@dataclass(frozen=True)
class FixedType:
    width: int
    frac: int
    signed: bool = True
    rounding: str = "RND_CONV"
    overflow: str = "SAT"
    narrow: bool = False  # QONNX narrow range: signed codes exclude -2**(w-1); unsigned exclude 2**w - 1

    kind = "fixed"

    @property
    def min_code(self) -> int:
        if not self.signed:
            return 0
        return -(1 << (self.width - 1)) + (1 if self.narrow else 0)

    @property
    def max_code(self) -> int:
        if not self.signed:
            return (1 << self.width) - 1 - (1 if self.narrow else 0)
        return (1 << (self.width - 1)) - 1

    @property
    def container_bits(self) -> int:
        """Smallest AIE storage type holding every code."""
        for bits in (8, 16, 32):
            if self.width <= bits:
                return bits
        return 64

    @property
    def container(self) -> str:
        """C++ / AIE element type name, e.g. int8 or uint8."""
        return f"{'' if self.signed else 'u'}int{self.container_bits}"

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    def describe(self) -> str:
        sign = "s" if self.signed else "u"
        extra = ",narrow" if self.narrow else ""
        return f"fixed<{sign}{self.width},f{self.frac},{self.rounding},{self.overflow}{extra}>"

    def to_json(self) -> dict:
        return {"kind": "fixed", **asdict(self)}


@dataclass(frozen=True)
class FloatType:
    width: int = 32

    kind = "float"

    def describe(self) -> str:
        return f"float{self.width}"

    def to_json(self) -> dict:
        return {"kind": "float", "width": self.width}


_AP_Q = {"AP_TRN": "TRN", "AP_TRN_ZERO": "TRN_ZERO", "AP_RND": "RND", "AP_RND_ZERO": "RND_ZERO",
         "AP_RND_MIN_INF": "RND_MIN_INF", "AP_RND_INF": "RND_INF", "AP_RND_CONV": "RND_CONV"}
_AP_O = {"AP_WRAP": "WRAP", "AP_SAT": "SAT", "AP_SAT_SYM": "SAT_SYM"}


def parse_ap_type(text: str) -> FixedType:
    """``ap_fixed<W,I[,Q[,O]]>``, ``ap_ufixed<...>``, ``ap_int<W>`` or ``ap_uint<W>`` with ap_fixed's own defaults
    (AP_TRN, AP_WRAP); raises ValueError with the reason."""
    import re

    m = re.fullmatch(r"\s*ap_(u?)(fixed|int)\s*<\s*([^>]*)>\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not ap_fixed<W,I[,Q,O]>, ap_ufixed<...>, ap_int<W> or ap_uint<W>")
    unsigned, kind, args = m.group(1) == "u", m.group(2), [a.strip() for a in m.group(3).split(",")]
    try:
        width = int(args[0])
        integer = int(args[1]) if kind == "fixed" else width
    except (IndexError, ValueError):
        raise ValueError(f"{text!r}: the width (and integer bits) must be integers") from None
    rest = args[2:] if kind == "fixed" else args[1:]
    if len(rest) > 2 or (kind == "int" and rest):
        raise ValueError(f"{text!r}: too many arguments")
    q = _AP_Q.get(rest[0].upper(), None) if rest else "TRN"
    o = _AP_O.get(rest[1].upper(), None) if len(rest) > 1 else "WRAP"
    if q is None or o is None:
        raise ValueError(f"{text!r}: rounding must be one of {', '.join(_AP_Q)}, overflow one of {', '.join(_AP_O)}")
    if width < (1 if unsigned else 2) or width > 32:
        raise ValueError(f"{text!r}: width {width} is outside 1..32")
    return FixedType(width=width, frac=width - integer, signed=not unsigned, rounding=q, overflow=o)


@dataclass(frozen=True)
class ScaledType:
    """Integer codes of ``width`` bits standing for ``(code - zero_point[n]) * scale[n]``, ``n`` the channel (last
    axis) when ``scale`` has more than one entry, else one scale for the tensor. Scales are float32 values (kept as
    the Python floats that hold them exactly); ``rounding`` / ``overflow`` as for FixedType."""

    width: int
    signed: bool
    scale: tuple[float, ...]
    zero_point: tuple[int, ...] = (0,)
    rounding: str = "RND_CONV"
    overflow: str = "SAT"
    narrow: bool = False

    kind = "scaled"

    def __post_init__(self) -> None:
        if not self.scale or any(not (s > 0 and np.isfinite(s)) or float(np.float32(s)) != s for s in self.scale):
            raise ValueError(f"scales must be positive finite float32 values, got {self.scale!r}")
        if len(self.zero_point) not in (1, len(self.scale)):
            raise ValueError("one zero point, or one per scale")

    @property
    def channels(self) -> int:
        return max(len(self.scale), len(self.zero_point))

    def scale_of(self, n: int) -> Fraction:
        return Fraction(self.scale[n if len(self.scale) > 1 else 0])

    def zero_point_of(self, n: int) -> int:
        return int(self.zero_point[n if len(self.zero_point) > 1 else 0])

    min_code = FixedType.min_code
    max_code = FixedType.max_code
    container_bits = FixedType.container_bits
    container = FixedType.container

    def quantize_float32(self, x: np.ndarray) -> np.ndarray:
        """Host-side codes of float inputs as QONNX ``Quant`` / Brevitas compute them, in float32:
        ``round(clip(x / scale + zero_point, lo, hi))`` with the type's rounding (per tensor only). Codes are
        returned as float32 (exact integers)."""
        if self.channels != 1:
            raise ValueError("host-side quantisation takes a per-tensor scale")
        from nn2aie.numerics import round_float_codes  # numerics imports nothing from the IR

        v = np.asarray(x, dtype=np.float32) / np.float32(self.scale[0]) + np.float32(self.zero_point[0])
        v = np.clip(v, np.float32(self.min_code), np.float32(self.max_code))
        return round_float_codes(v, self.rounding).astype(np.float32)

    def quantize_linear_float32(self, x: np.ndarray) -> np.ndarray:
        """Host-side codes as ONNX QuantizeLinear computes them: ``saturate(round_half_even(x / scale) +
        zero_point)`` in float32 (per tensor); float32 codes."""
        if self.channels != 1:
            raise ValueError("host-side quantisation takes a per-tensor scale")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v = np.rint(np.asarray(x, dtype=np.float32) / np.float32(self.scale[0])).astype(np.float64)
        v = v + self.zero_point[0]
        return np.clip(v, self.min_code, self.max_code).astype(np.float32)

    def dequantize_float32(self, codes: np.ndarray) -> np.ndarray:
        """``(code - zero_point) * scale`` in float32, as QONNX / onnxruntime dequantise (per tensor)."""
        c = np.asarray(codes, dtype=np.float32) - np.float32(self.zero_point[0])
        return (c * np.float32(self.scale[0])).astype(np.float32)

    def real_bounds(self) -> tuple[float, float]:
        """The real values of the smallest and largest code."""
        s, z = self.scale[0], self.zero_point[0]
        return (self.min_code - z) * s, (self.max_code - z) * s

    def describe(self) -> str:
        sign = "s" if self.signed else "u"
        scale = f"{self.scale[0]:.6g}" if len(self.scale) == 1 else f"{len(self.scale)} scales"
        zp = f",zp={self.zero_point[0]}" if len(self.zero_point) == 1 and self.zero_point[0] else (
            f",{len(self.zero_point)} zero points" if len(self.zero_point) > 1 else "")
        extra = ",narrow" if self.narrow else ""
        return f"scaled<{sign}{self.width},x{scale}{zp},{self.rounding},{self.overflow}{extra}>"

    def to_json(self) -> dict:
        d = asdict(self)
        d["scale"], d["zero_point"] = list(self.scale), list(self.zero_point)
        return {"kind": "scaled", **d}


TensorType = FixedType | FloatType | ScaledType


def code_step(t: FixedType | ScaledType) -> Fraction:
    """The real value of one code step of a per-tensor type, exactly: ``2**-frac`` or the scale."""
    return Fraction(2) ** -t.frac if isinstance(t, FixedType) else t.scale_of(0)


def type_from_json(data: dict) -> TensorType:
    data = dict(data)
    kind = data.pop("kind")
    if kind == "fixed":
        return FixedType(**data)
    if kind == "float":
        return FloatType(**data)
    if kind == "scaled":
        data["scale"] = tuple(float(v) for v in data["scale"])
        data["zero_point"] = tuple(int(v) for v in data["zero_point"])
        return ScaledType(**data)
    raise ValueError(f"unknown tensor type kind {kind!r}")
