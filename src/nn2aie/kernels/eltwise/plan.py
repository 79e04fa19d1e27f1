"""How an eltwise op runs on tiles: the integer steps of one 16-lane vector, chosen so that they give the codes
of the logical model (kernels/eltwise/logical.py) for every input the types allow.

Every op is one of two shapes on the tile:

- **arithmetic** (add, sub, mul): ``acc = (a << ua) +- (b << ub)`` or ``acc = a * b`` exactly in an accumulator
  (UPS / ADD / MUL), then one SRS epilogue (kernels/epilogue.py) into the output type;
- **monotone** (max, min, relu, clip, leaky_relu, identity): each operand is requantised on its own
  (``y_i = epilogue_i(x_i << u_i)``), then combined with max / min and clamped to constant bounds. This equals
  requantising the exact result because requantisation (rounding, then a saturating clamp) is monotone:
  ``rq(max(x, y)) = max(rq(x), rq(y))`` and ``rq(clip(x, lo, hi)) = clip(rq(x), rq(lo), rq(hi))``. LeakyReLU
  with slope ``2^-s`` is ``max(rq_fa(a), rq_(fa+s)(a))``: for ``a >= 0`` the first is the larger, for ``a < 0`` the
  second, and they are the two branches of the logical model. A wrapping output type is not monotone: refused
  where wrap-around could happen, except for identity (one operand, no bound: its epilogue wraps as a dense's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.evaluate import requantize
from nn2aie.ir.execution import OpExec, rows_per_event
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.kernels.eltwise import logical
from nn2aie.kernels.epilogue import ACC_BITS, Epilogue, plan_epilogue
from nn2aie.numerics import aie_rounding

LANES = 16  # elements per vector step (int8: 128-bit, int16: 256-bit vectors; acc32 / acc64 accumulators)
COLUMN_ALIGN = 4  # slice widths: rows (a multiple of 4) x width must be whole vectors
MAX_UPSHIFT = 59  # accum::from_vector shifts 0..59 (UPS)


@dataclass
class EltwiseExec(OpExec):
    op: str
    kind: str  # logical op: add, sub, mul, max, min, relu, clip, leaky_relu, identity
    rows: int  # rows per graph iteration (batch x leading axes)
    width: int  # columns of the tensor (its last axis)
    a_dtype: str
    b_dtype: str  # second activation's container, "" when the second operand is a constant or absent
    const: str  # "none" | "scalar" | "table" (a constant tensor expanded per window)
    c_dtype: str  # constant container ("" without constant)
    scalar: int  # the scalar constant's code (const == "scalar")
    out_dtype: str
    acc: str  # acc32 | acc64
    arith: str  # add | sub | mul | none
    combine: str  # max | min | none: how the second requantised operand joins the first
    second: str  # "b" (the other operand) | "a" (leaky_relu's second branch) | ""
    ua: int  # up-shift of the first operand
    ub: int  # up-shift of the second operand / branch
    epilogue: dict  # Epilogue of the first (or only) result
    epilogue2: dict  # Epilogue of the second requantised operand ({} without one)
    lo: int | None = None  # constant bounds after requantisation (clip / relu)
    hi: int | None = None
    slice: int = 0  # columns per tile (multiple of COLUMN_ALIGN)
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)
    const_rows: int = 1  # rows per event of a "table" constant (1: per channel)
    planes: int = 1  # quantize: parameter planes M, LO / BASE, HI / MASK, P (see plan_quantize); affine: M, B
    wrap: bool = False  # quantize: the elements wrap (else saturate)
    offset_shift: int = 0  # affine: the offsets B are added as B << offset_shift
    multipliers: list[int] = field(default_factory=list)  # affine: per channel, signed (a falling channel: < 0)
    offsets: list[int] = field(default_factory=list)  # affine: per channel
    requant_reason: str = ""  # affine: why this implementation
    # row pieces: the iteration's rows shared out over ``pieces`` tiles per column slice (whole events, or bands of
    # one event's rows); ``rows`` is then one piece's rows. Not for per-element constants (table, quantize).
    pieces: int = 1
    event_rows: int = 0  # rows per event (the iteration has rows * pieces / event_rows events)
    # lut: the table's first input code, its entries, the variant ("parallel": aie::parallel_lookup on int16
    # values in the 4-copy layout; "scalar": one copy in the output container, one element at a time) and the
    # type the input codes are read as (the lookup's key)
    lut_lo: int = 0
    lut_entries: int = 0
    lut_variant: str = ""
    key_dtype: str = ""

    family: ClassVar[str] = "eltwise"

    def epi(self, second: bool = False) -> Epilogue:
        return Epilogue(**(self.epilogue2 if second else self.epilogue))

    def to_json(self) -> dict:
        d = asdict(self)
        defaults = {"planes": 1, "wrap": False, "offset_shift": 0, "multipliers": [], "offsets": [],
                    "requant_reason": "", "pieces": 1, "lut_lo": 0, "lut_entries": 0, "lut_variant": "",
                    "key_dtype": ""}
        d.pop("event_rows")  # a property of the tensor, not of the plan
        for key, value in defaults.items():  # fields of the per-element / per-channel kinds only
            if d[key] == value:
                del d[key]
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


def _max_abs(t: FixedType) -> int:
    return max(abs(t.min_code), abs(t.max_code))


def _acc_for(bound: int) -> str:
    return "acc32" if bound < 1 << (ACC_BITS["acc32"] - 1) else "acc64"


QUANTIZE_MAX_SPREAD = 15  # 2**(S - s_k) multiplies a 16-bit operand into a 32-bit accumulator lane


def plan_quantize(graph: Graph, op: Op, batch: int, where: str) -> EltwiseExec:
    """Per-element requantisation (HGQ2's heterogeneous quantizers) as vector steps with one parameter per lane:

        v = srs(a * M_k, S)               the element's rounding at its own fraction f_k (M_k = 2**(S - (fa - f_k)),
                                          one SRS shift S = max(0, max_k (fa - f_k)) for all lanes)
        v = min(max(v, LO_k), HI_k)       saturation to the element's range, or, wrapping:
        v = ((v - BASE_k) & MASK_k) + BASE_k   (BASE_k its smallest code, MASK_k = 2**w_k - 1)
        y = v * P_k                       exactly onto the output grid (P_k = 2**(F - f_k))

    A 0-bit element has M_k = 0 and gives 0. Equal to the logical model (each element's ``requantize``, then
    the exact shift) because multiplying by a power of two is exact and the SRS rounds the same real value."""
    a_t, y_t = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    n = int(np.prod(a_t.shape))
    types = logical.element_types(op, n)
    fa = a_t.type.frac
    shifts = [fa - t.frac for t in types if t is not None] or [0]
    top = max(0, max(shifts))
    if top - min(shifts) > QUANTIZE_MAX_SPREAD:
        raise UnsupportedQuantizationError(where, f"the elements' fractional bits span {top - min(shifts)} bits "
                                           f"around the input's ({fa}); a tile lane handles at most "
                                           f"{QUANTIZE_MAX_SPREAD}", "keep the per-element fractional bits closer")
    el = op.attrs["elements"]
    if y_t.type.container not in ("int8", "uint8", "int16", "uint16"):
        raise UnsupportedQuantizationError(where, f"{y_t.type.width}-bit output codes", "quantize to at most 16 bits")
    mode = aie_rounding(el["rounding"], where)
    epi = Epilogue(top, mode, "none", -(1 << 31), (1 << 31) - 1)
    return EltwiseExec(
        op=op.name, kind="quantize", rows=batch * rows_per_event(tuple(a_t.shape)), width=int(a_t.shape[-1]),
        event_rows=rows_per_event(tuple(a_t.shape)),
        a_dtype=a_t.type.container, b_dtype="", const="table", c_dtype="int32", scalar=0,
        out_dtype=y_t.type.container, acc="acc32", arith="quantize", combine="none", second="", ua=0, ub=top,
        epilogue=asdict(epi), epilogue2={}, const_rows=rows_per_event(tuple(a_t.shape)), planes=4,
        wrap=el["overflow"] == "WRAP")


def plan_affine(graph: Graph, op: Op, device: Device, batch: int, where: str) -> EltwiseExec:
    """A per-channel step function the frontend read off the source (a BatchNorm or float affine chain between two
    quantizers, ``requant_table`` over the oriented input code) as one multiply-add per lane:

        v = clamp(srs(a * M_c + (B_c << t), s), lo, hi)

    with ``M_c`` negative for a channel whose codes fall as the input grows; kernels/requant.py chooses ``M``, ``B``,
    ``s`` and proves them equal to the source's thresholds on the whole input range. Refused when no affine map has
    those thresholds (an eltwise tile runs no threshold table)."""
    from nn2aie.kernels.requant import requant_from_table

    a_t, y_t = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    table = op.attrs["requant_table"]
    if y_t.type.container not in ("int8", "uint8", "int16", "uint16"):
        raise UnsupportedQuantizationError(where, f"{y_t.type.width}-bit output codes", "quantize to at most 16 bits")
    rq = requant_from_table(table, where, tuple(device.fact("srs_shift_safe_range")), ("shift", "multiplier"))
    channels = len(table["thresholds"])
    sign = np.ones(channels, dtype=np.int64)
    sign[list(table["negated_channels"])] = -1
    mults = rq.multipliers or (1,) * channels
    offs = rq.offsets or (0,) * channels
    if len(mults) == 1:
        mults, offs = mults * channels, offs * channels
    shift = rq.shift
    if shift < 0:  # a left shift: into the multipliers (exact)
        mults, offs, shift = tuple(m << -shift for m in mults), tuple(b << -shift for b in offs), 0
    epi = Epilogue(shift, rq.rounding, "saturate", rq.lo, rq.hi)
    return EltwiseExec(
        op=op.name, kind="affine", rows=batch * rows_per_event(tuple(a_t.shape)), width=int(a_t.shape[-1]),
        event_rows=rows_per_event(tuple(a_t.shape)),
        a_dtype=a_t.type.container, b_dtype="", const="table", c_dtype="int32", scalar=0,
        out_dtype=y_t.type.container, acc="acc64", arith="affine", combine="none", second="", ua=0, ub=shift,
        epilogue=asdict(epi), epilogue2={}, lo=rq.lo, hi=rq.hi, const_rows=1, planes=2,
        offset_shift=rq.offset_shift, multipliers=[int(s) * int(m) for s, m in zip(sign, mults, strict=True)],
        offsets=[int(b) for b in offs], requant_reason=rq.reason)


def quantize_planes(graph: Graph, op: Op, e: EltwiseExec) -> np.ndarray:
    """[4, n] per-element parameters M, LO / BASE, HI / MASK, P of a quantize op (see plan_quantize)."""
    a_t, y_t = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    types = logical.element_types(op, int(np.prod(a_t.shape)))
    out = np.zeros((4, len(types)), dtype=np.int64)
    for k, t in enumerate(types):
        if t is None:
            out[3, k] = 1
            continue
        out[0, k] = 1 << (e.ub - (a_t.type.frac - t.frac))
        if e.wrap:
            out[1, k], out[2, k] = t.min_code, (1 << t.width) - 1
        else:
            out[1, k], out[2, k] = t.min_code, t.max_code
        out[3, k] = 1 << (y_t.type.frac - t.frac)
    return out


LUT_GROUP_BYTES = 16  # aie::lut on AIE-ML: values repeat every 128 bits, in two copies (UG1603 "Lookup Tables")
PARALLEL_KEYS = ("int8", "uint8", "int16")  # index types of aie::parallel_lookup (UG1529; UG1603's uint8 example)


def lut_parallel_entries(entries: int) -> int:
    """Entries of a parallel table padded to whole 128-bit groups of int16 values (the padding repeats the last
    entry and is never indexed: the lookup saturates at ``entries - 1``)."""
    per_group = LUT_GROUP_BYTES // 2
    return -(-entries // per_group) * per_group


def plan_lut(graph: Graph, op: Op, device: Device, batch: int, where: str) -> EltwiseExec:
    """A lookup table (docs/ops.md ``lut``). ``parallel``: ``aie::parallel_lookup`` (4 lookups per cycle) with
    int16 values in the layout ``aie::lut<4, int16>`` requires, when the key type has a lookup and each of the
    two copies fits half a bank; otherwise ``scalar`` (one copy, one lookup per cycle) when the table fits a bank;
    otherwise refused with the sizes."""
    a_t, table, y_t = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
    entries = int(table.shape[0])
    lo = int(op.attrs["lo"])
    key = a_t.type.container
    if key == "uint16" and a_t.type.max_code < 1 << 15:
        key = "int16"  # the codes read the same as int16
    bank = device.bank_bytes
    padded = lut_parallel_entries(entries)
    out_bytes = 2 if y_t.type.container.endswith("16") else 1
    if key in PARALLEL_KEYS and lo <= 0 and 2 * padded * 2 <= bank // 2:
        variant, c_dtype = "parallel", "int16"
    elif entries * out_bytes <= bank:
        variant, c_dtype = "scalar", y_t.type.container
    else:
        raise UnsupportedQuantizationError(
            where, f"its table has {entries} entries of {out_bytes} byte(s) ({entries * out_bytes} B): more than "
            f"one {bank} B bank of a tile's data memory", "quantize the op's input to fewer bits")
    epi = Epilogue(0, "floor", "none", y_t.type.min_code, y_t.type.max_code)
    return EltwiseExec(
        op=op.name, kind="lut", rows=batch * rows_per_event(tuple(a_t.shape)), width=int(a_t.shape[-1]),
        event_rows=rows_per_event(tuple(a_t.shape)),
        a_dtype=a_t.type.container, b_dtype="", const="lut", c_dtype=c_dtype, scalar=0,
        out_dtype=y_t.type.container, acc="acc32", arith="lut", combine="none", second="", ua=0, ub=0,
        epilogue=asdict(epi), epilogue2={}, lut_lo=lo, lut_entries=entries, lut_variant=variant, key_dtype=key)


def plan(graph: Graph, op: Op, device: Device, batch: int) -> EltwiseExec:
    kind = op.attrs["op"]
    if kind == "lut":
        y_t = graph.tensor(op.outputs[0])
        return plan_lut(graph, op, device, batch, f"op {op.name} output tensor {y_t.origin or y_t.name}")
    if kind in ("quantize", "affine"):
        y_t = graph.tensor(op.outputs[0])
        where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
        return plan_quantize(graph, op, batch, where) if kind == "quantize" else \
            plan_affine(graph, op, device, batch, where)
    a_t = graph.tensor(op.inputs[0])
    y_t = graph.tensor(op.outputs[0])
    assert isinstance(a_t.type, FixedType) and isinstance(y_t.type, FixedType)
    where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
    yt, fa = y_t.type, a_t.type.frac
    b_t = graph.tensor(op.inputs[1]) if len(op.inputs) > 1 else None
    const, c_dtype, scalar, const_rows = "none", "", 0, 1
    b_dtype = ""
    if b_t is not None:
        if b_t.is_const:
            assert b_t.data is not None
            c_dtype = b_t.type.container
            if b_t.data.ndim == 0:
                const, scalar = "scalar", int(b_t.data)
            else:
                const = "table"
                const_rows = rows_per_event(tuple(b_t.shape)) if len(b_t.shape) == len(a_t.shape) else 1
        else:
            b_dtype = b_t.type.container
    amax = _max_abs(a_t.type)
    bmax = logical._max_abs(b_t) if b_t is not None else 0
    fb = b_t.type.frac if b_t is not None else 0
    fields: dict = {"lo": None, "hi": None}
    if kind in ("add", "sub"):
        f = max(fa, fb, yt.frac)
        ua, ub = f - fa, f - fb
        bound = (amax << ua) + (bmax << ub)
        acc = _acc_for(bound)
        epi = plan_epilogue(yt, f, acc, False, bound, device, where)
        fields |= {"arith": kind, "combine": "none", "second": "", "ua": ua, "ub": ub, "epilogue": epi, "epi2": None}
    elif kind == "mul":
        bound = amax * bmax
        acc = _acc_for(bound)
        epi = plan_epilogue(yt, fa + fb, acc, False, bound, device, where)
        fields |= {"arith": "mul", "combine": "none", "second": "", "ua": 0, "ub": 0, "epilogue": epi, "epi2": None}
    else:
        ua = max(0, yt.frac - fa)
        bound = amax << ua
        second, ub, epi2, combine = "", 0, None, "none"
        if kind in ("max", "min"):
            ub = max(0, yt.frac - fb)
            bound = max(bound, bmax << ub)
            second, combine = "b", kind
        elif kind == "leaky_relu":
            s = int(op.attrs["alpha_shift"])
            ub = max(0, yt.frac - fa - s)
            bound = max(bound, amax << ub)
            second, combine = "a", "max"
        acc = _acc_for(bound)
        epi = plan_epilogue(yt, fa + ua, acc, False, amax << ua, device, where)
        if second == "b":
            epi2 = plan_epilogue(yt, fb + ub, acc, False, bmax << ub, device, where)
        elif second == "a":
            epi2 = plan_epilogue(yt, fa + int(op.attrs["alpha_shift"]) + ub, acc, False, amax << ub, device, where)
        for e in (epi, epi2):
            # one requantised operand and no bound after it (identity) is the epilogue itself, wrap included
            if kind != "identity" and e is not None and (e.wrap_bits or e.saturation == "none"):
                raise UnsupportedQuantizationError(
                    where, f"eltwise {kind} into a wrapping output type: wrap-around could happen, and the tile "
                    "computes this op by requantising each operand first (exact only for saturating types)",
                    "quantize this tensor with saturation (AP_SAT), or wide enough that it cannot wrap")
        if epi2 is not None and (epi2.rounding, epi2.saturation) != (epi.rounding, epi.saturation):
            raise UnsupportedQuantizationError(where, "the two requantisations need different tile modes",
                                               "report this model to the nn2aie developers")
        if kind in ("relu", "clip"):
            lo = [0, 0] if kind == "relu" else op.attrs.get("lo")
            hi = None if kind == "relu" else op.attrs.get("hi")
            for key, bnd in (("lo", lo), ("hi", hi)):
                if bnd is None:
                    continue
                # a bound a never reaches changes nothing: dropped (its requantisation could even wrap); a
                # reachable one lies in a's range, where requantisation cannot wrap (checked above)
                code, frac = int(bnd[0]), int(bnd[1])
                f = max(frac, fa)
                edge = (a_t.type.min_code if key == "lo" else a_t.type.max_code) << (f - fa)
                if (key == "lo" and code << (f - frac) <= edge) or (key == "hi" and code << (f - frac) >= edge):
                    continue
                fields[key] = int(requantize(np.array([code], dtype=np.int64), frac, yt, where)[0])
        fields |= {"arith": "none", "combine": combine, "second": second, "ua": ua, "ub": ub, "epilogue": epi,
                   "epi2": epi2}
    for shift in (fields["ua"], fields["ub"]):
        if shift > MAX_UPSHIFT:
            raise UnsupportedQuantizationError(where, f"an operand would be shifted up by {shift} bits (UPS: "
                                               f"at most {MAX_UPSHIFT})", "use closer scales on the operands")
    epi2 = fields.pop("epi2")
    return EltwiseExec(
        op=op.name, kind=kind, rows=batch * rows_per_event(tuple(a_t.shape)), width=int(a_t.shape[-1]),
        event_rows=rows_per_event(tuple(a_t.shape)),
        a_dtype=a_t.type.container, b_dtype=b_dtype, const=const, c_dtype=c_dtype, scalar=scalar,
        out_dtype=yt.container, acc=acc, arith=fields["arith"], combine=fields["combine"], second=fields["second"],
        ua=fields["ua"], ub=fields["ub"], epilogue=asdict(fields["epilogue"]),
        epilogue2=asdict(epi2) if epi2 is not None else {}, lo=fields["lo"], hi=fields["hi"],
        const_rows=const_rows)
