"""Exact tensor types.

A fixed-point value is ``code * 2**-frac`` where ``code`` is an integer in ``[min_code, max_code]``.
Rounding and overflow modes use the ap_fixed names (shared/reference/numerics.md); they describe how a wider
value is brought *into* this type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


TensorType = FixedType | FloatType


def type_from_json(data: dict) -> TensorType:
    data = dict(data)
    kind = data.pop("kind")
    if kind == "fixed":
        return FixedType(**data)
    if kind == "float":
        return FloatType(**data)
    raise ValueError(f"unknown tensor type kind {kind!r}")
