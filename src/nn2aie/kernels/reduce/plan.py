"""How a reduce op runs on tiles, and the bit-exact semantics of one tile (templates/reduce_kernel.cc.j2).

The tile reduces over whole rows of the on-chip ``[rows, columns]`` layout: the reduced axes must be leading
per-event axes next to each other (the last axis, the columns, is kept). Per event the input rows are
``outer x red x inner`` and the output rows ``outer x inner``; each output row is the sum (or max) of ``red``
input rows, 16 columns per vector step, exactly in an accumulator (sum) or a vector (max). Then:

- ``sum``, ``max`` and ``mean`` over a power-of-two count ``n = 2^k``: one SRS epilogue (kernels/epilogue.py) at
  the accumulator fraction ``fa`` (``fa + k`` for the mean). For ``divide = float32`` this is exact while the
  float32 sum is (``|sum| < 2^24`` codes, else refused): dividing a float by a power of two does not round;
- ``mean`` over any other count: a lookup table indexed by the exact sum, holding the logical model's own
  output code for each possible sum (``logical.mean_codes``), so the source's rounding of the division is
  reproduced by construction; where that table would not fit (``MAX_TABLE``), the same step function of the sum
  (its thresholds found by bisection on ``logical.mean_codes``) as an int32 multiplier + SRS, corrected at the
  few sums where the source's float32 division rounds otherwise (kernels/requant.py verifies it on every sum).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.ir.execution import OpExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.kernels.epilogue import ACC_BITS, Epilogue, apply_epilogue, plan_epilogue
from nn2aie.kernels.plain import BITS, is_signed
from nn2aie.kernels.reduce import logical

LANES = 16
COLUMN_ALIGN = 16  # a row of a slice is whole 16-element vectors (aligned loads)
MAX_TABLE = 8192  # entries of a mean lookup table (o_t each): at most 16 KB of the tile's data memory
FLOAT32_EXACT = 1 << 24


@dataclass
class ReduceExec(OpExec):
    op: str
    kind: str  # sum | mean | max
    batch: int
    outer: int  # per event: leading rows before the reduced axes
    red: int  # rows reduced into one
    inner: int  # leading rows after the reduced axes
    width: int  # columns (the kept last axis)
    a_dtype: str
    out_dtype: str
    acc: str
    up: int  # up-shift of every row (sum, mean) or of the maximum before the SRS (output finer than the input)
    epilogue: dict  # Epilogue ({} for a table mean)
    table_min: int = 0  # the smallest possible sum: index 0 of the table
    table: list[int] = field(default_factory=list)  # table mean: output code of each sum table_min + i
    requant: Any = None  # multiplier mean (kernels/requant.py Requant, per tensor): where a table would not fit
    slice: int = 0
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)

    family: ClassVar[str] = "reduce"

    @property
    def rows_in(self) -> int:
        return self.batch * self.outer * self.red * self.inner

    @property
    def rows_out(self) -> int:
        return self.batch * self.outer * self.inner

    def epi(self) -> Epilogue:
        return Epilogue(**self.epilogue)

    def to_json(self) -> dict:
        d = asdict(self)
        d["table"] = len(self.table)  # the size, not the values
        if self.requant is None:
            d.pop("requant")
        else:
            d["requant"] = self.requant.to_json()
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


def plan(graph: Graph, op: Op, device: Device, batch: int) -> ReduceExec:
    a_t, y_t = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    assert isinstance(a_t.type, FixedType) and isinstance(y_t.type, FixedType)
    where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
    shape = tuple(a_t.shape)
    axes = list(op.attrs["axes"])
    kind = op.attrs["op"]
    if len(shape) - 1 in axes:
        raise UnsupportedOpError(f"op {op.name} (reduce)", f"reduces the last axis of {shape} (the columns on "
                                 "chip); this version reduces leading axes (e.g. particles, pixels)",
                                 "lay the reduced axes before the feature axis (channels last)")
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise UnsupportedOpError(f"op {op.name} (reduce)", f"reduces axes {axes}, which are not adjacent",
                                 "reduce adjacent axes (or reduce in two steps)")
    outer = math.prod(shape[:axes[0]])
    red = math.prod(shape[a] for a in axes)
    inner = math.prod(shape[axes[-1] + 1:-1])
    at, yt = a_t.type, y_t.type
    if at.container not in ("int8", "uint8", "int16", "uint16"):
        raise UnsupportedQuantizationError(f"op {op.name} input {a_t.origin or a_t.name}",
                                           f"{at.container} codes; reduce tiles take 8- and 16-bit inputs",
                                           "quantize the input to at most 16 bits")
    amax = max(abs(at.min_code), abs(at.max_code))
    bound = red * amax
    # an output finer than the accumulator: every row is shifted up as it is added (UPS), the SRS shifts right
    shift_k = red.bit_length() - 1 if kind == "mean" and red & (red - 1) == 0 else 0
    up = max(0, yt.frac - at.frac - shift_k) if kind != "mean" or shift_k or red == 1 else 0
    acc = "acc32" if bound << up < 1 << (ACC_BITS["acc32"] - 1) else "acc64"
    epi, table, table_min = None, [], 0
    if kind == "sum":
        epi = plan_epilogue(yt, at.frac + up, acc, False, bound << up, device, where)
    elif kind == "max":
        epi = plan_epilogue(yt, at.frac + up, acc, False, amax << up, device, where)
    elif red & (red - 1) == 0:  # mean over 2^k elements
        if op.attrs["divide"] == "float32" and bound >= FLOAT32_EXACT:
            raise UnsupportedQuantizationError(where, f"the float32 sum of {red} inputs may reach {bound} codes "
                                               "(>= 2^24) and be rounded by the source framework",
                                               "use narrower inputs or fewer elements per mean")
        epi = plan_epilogue(yt, at.frac + shift_k + up, acc, False, bound << up, device, where)
    else:
        table_min, table_max = red * at.min_code, red * at.max_code
        size = table_max - table_min + 1
        if size > MAX_TABLE:
            rq = mean_multiplier(red, at, yt, op.attrs["divide"], table_min, table_max, device, where)
            return ReduceExec(op=op.name, kind=kind, batch=batch, outer=outer, red=red, inner=inner,
                              width=shape[-1], a_dtype=at.container, out_dtype=yt.container, acc="acc32", up=0,
                              epilogue={}, table_min=table_min, requant=rq)
        sums = np.arange(table_min, table_max + 1, dtype=np.int64)
        table = logical.mean_codes(sums, red, at, yt, op.attrs["divide"], where).tolist()
        lo, hi = yt.min_code, yt.max_code
        if yt.container_bits not in (8, 16) or min(table) < lo or max(table) > hi:
            raise UnsupportedQuantizationError(where, f"output codes need a {yt.container} container",
                                               "quantize the mean to at most 16 bits")
    return ReduceExec(op=op.name, kind=kind, batch=batch, outer=outer, red=red, inner=inner, width=shape[-1],
                      a_dtype=at.container, out_dtype=yt.container, acc=acc, up=up,
                      epilogue=asdict(epi) if epi is not None else {}, table_min=table_min, table=table)


def mean_multiplier(red: int, at: FixedType, yt: FixedType, divide: str, sum_lo: int, sum_hi: int, device: Device,
                    where: str) -> Any:
    """The mean's step function of the exact sum on [sum_lo, sum_hi] as a per-tensor int32 multiplier (with
    corrections where needed): its thresholds found by bisection on the logical model's own codes."""
    from nn2aie.kernels.requant import requant_from_table

    if yt.container_bits not in (8, 16):
        raise UnsupportedQuantizationError(where, f"output codes need a {yt.container} container",
                                           "quantize the mean to at most 16 bits")
    if max(-sum_lo, sum_hi) >= 1 << 31:
        raise UnsupportedQuantizationError(where, f"the sum of {red} inputs can leave 32 bits",
                                           "use narrower inputs or fewer elements per mean")

    def code(s: np.ndarray, t: FixedType = yt) -> np.ndarray:
        return logical.mean_codes(np.asarray(s, dtype=np.int64), red, at, t, divide, where)

    # the thresholds below assume a mean that never falls as the sum grows: true unless the output wraps, so the
    # mean's unbounded codes (a wide signed type at the same fraction and rounding) must stay in the output's range
    if yt.overflow not in ("SAT", "SAT_SYM"):  # WRAP / SAT_ZERO: an overflowing mean falls
        wide = FixedType(min(62, yt.width + 34), yt.frac, True, yt.rounding, "SAT")
        ends = code(np.array([sum_lo, sum_hi]), wide)
        if ends.min() < yt.min_code or ends.max() > yt.max_code:
            raise UnsupportedQuantizationError(
                where, f"the mean over {red} elements overflows its {yt.width}-bit {yt.overflow} output type "
                f"(codes {int(ends.min())}..{int(ends.max())} before the overflow) and needs a table of "
                f"{sum_hi - sum_lo + 1} sums (at most {MAX_TABLE}); an int32 multiplier reproduces only a mean that "
                "never falls",
                "saturate the output type (overflow SAT) or widen it")
    lo, hi = int(code(np.array([sum_lo]))[0]), int(code(np.array([sum_hi]))[0])
    levels = np.arange(lo + 1, hi + 1, dtype=np.int64)
    left = np.full(levels.shape, sum_lo, dtype=np.int64)  # code(left) < level <= code(right)
    right = np.full(levels.shape, sum_hi, dtype=np.int64)
    while np.any(right - left > 1):
        mid = (left + right) // 2
        below = code(mid) < levels
        left, right = np.where(below, mid, left), np.where(below, right, mid)
    thresholds = np.where(code(left) >= levels, left, right)  # the smallest sum reaching each level
    table = {"thresholds": [thresholds.tolist()], "acc_range": [sum_lo, sum_hi], "clamp": [lo, hi],
             "source": f"the mean over {red} elements ({divide} division), logical model"}
    try:
        return requant_from_table(table, where, tuple(device.fact("srs_shift_safe_range")), ("multiplier",))
    except UnsupportedQuantizationError as exc:
        raise UnsupportedQuantizationError(where, f"the mean over {red} elements (not a power of two) needs a "
                                           f"table of {sum_hi - sum_lo + 1} sums (at most {MAX_TABLE}) and no "
                                           f"int32 multiplier reproduces it ({exc.reason})",
                                           "use a power-of-two count or narrower inputs") from exc


def run_tile(e: ReduceExec, a: np.ndarray, iters: int) -> np.ndarray:
    """Output window rows ``[iters * rows_out, slice]`` of the input rows ``[iters * rows_in, slice]``."""
    x = np.asarray(a, dtype=np.int64).reshape(iters * e.batch * e.outer, e.red, e.inner, -1)
    if e.kind == "max":
        acc = x.max(axis=1) << e.up
    else:
        acc = x.sum(axis=1) << e.up
    acc = acc.reshape(iters * e.rows_out, -1)
    if e.requant is not None:
        return e.requant.apply(acc)
    if e.table:
        return np.asarray(e.table, dtype=np.int64)[acc - e.table_min]
    return apply_epilogue(acc, e.epi(), BITS[e.out_dtype], is_signed(e.out_dtype))
