"""Execution IR: per logical op, which kernel variant runs it, with which tiling and parallelism."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def rows_per_event(shape: tuple[int, ...]) -> int:
    """On-chip rows one event of a tensor takes: the product of its per-event leading axes (1 when flat)."""
    rows = 1
    for d in shape[:-1]:
        rows *= int(d)
    return rows


class OpExec:
    """How one logical op runs: the family's plan for it (a dataclass subclass per family).

    Every subclass has ``op`` (the logical op's name), a rectangle footprint ``cas_length`` columns x ``cas_num``
    rows of compute tiles (0 x 0 for an op resolved without tiles, e.g. a view folded into descriptors),
    ``override`` (the rectangle was given by the user) and ``notes``. The family's own fields say the rest."""

    family: ClassVar[str] = ""
    op: str
    cas_length: int
    cas_num: int
    override: bool
    notes: list[str]

    @property
    def tiles(self) -> int:
        return self.cas_length * self.cas_num

    def to_json(self) -> dict:
        d = asdict(self)  # type: ignore[call-overload]
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


@dataclass
class DenseExec(OpExec):
    """How one dense op runs: a rectangle of ``cas_length`` x ``cas_num`` tiles.

    The reduction K is split into ``cas_length`` slices of ``k_slice`` along a cascade chain; the outputs N into
    ``cas_num`` parallel chains of ``n_slice`` columns. Slices are multiples of the mmul shape; zero padding fills
    K up to ``cas_length * k_slice`` and N up to ``cas_num * n_slice``.
    """

    op: str
    k: int
    n: int
    batch: int  # rows per kernel invocation (graph iteration), multiple of mmul_m
    a_dtype: str  # activation container, e.g. int8
    w_dtype: str
    out_dtype: str
    acc: str  # acc32 | acc64
    mmul: tuple[int, int, int]  # (M, K, N) of aie::mmul
    shift: int  # SRS shift: accumulator frac - output frac
    rounding: str  # AIE-ML rounding mode of the tile
    saturation: str  # AIE-ML saturation mode of the tile
    clamp_lo: int  # after SRS: clamp to the output type's codes (and 0 for ReLU)
    clamp_hi: int
    relu: bool
    has_bias: bool
    acc_bound: int  # worst-case |partial sum| for any input of the input type: max_n sum_k |W|*max|x| + |b|
    wrap_bits: int = 0  # > 0: AP_WRAP into this many bits after the clamp (type narrower than its container)
    cas_length: int = 1
    cas_num: int = 1
    k_slice: int = 0
    n_slice: int = 0
    n_accumulators: int = 1  # register blocking: independent accumulators along N (sharing each A block)
    m_accumulators: int = 1  # ... and along M, row blocks of the batch (sharing each B block)
    override: bool = False  # parallelism given by the user
    mmul_fixed: bool = False  # mmul shape given by the user (else the parallelism pass may pick a faster one)
    notes: list[str] = field(default_factory=list)
    # scaled layers whose epilogue is not one SRS: the chosen kernels/requant.py Requant (multiplier or table);
    # None for an SRS epilogue (shift, rounding, saturation and clamp above say it all)
    requant: Any = None

    @property
    def k_padded(self) -> int:
        return self.cas_length * self.k_slice

    @property
    def n_padded(self) -> int:
        return self.cas_num * self.n_slice

    family: ClassVar[str] = "dense"

    def to_json(self) -> dict:  # stable keys (no "family": dense plans predate families)
        d = asdict(self)
        d["mmul"] = list(self.mmul)
        if self.requant is None:
            d.pop("requant")
        else:
            d["requant"] = self.requant.to_json()
        d["tiles"] = self.tiles
        return d
