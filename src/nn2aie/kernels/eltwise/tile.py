"""Bit-exact semantics of one eltwise tile (what templates/eltwise_kernel.cc.j2 computes), on int64 arrays.

A tile sees windows ``[rows, slice]`` of its operands (plain rows); a constant operand is the tile's parameter
array expanded to the window (``constant_window``) or a scalar."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.logical import Graph, Op
from nn2aie.kernels.eltwise.plan import EltwiseExec
from nn2aie.kernels.epilogue import apply_epilogue
from nn2aie.kernels.plain import BITS, is_signed
from nn2aie.numerics import shift_round


def constant_window(graph: Graph, op: Op, e: EltwiseExec, start: int) -> np.ndarray:
    """The constant operand as the tile's parameter array: [rows, slice] codes, columns past the tensor zero."""
    b = graph.tensor(op.inputs[1])
    assert b.data is not None
    per_event = np.asarray(b.data, dtype=np.int64).reshape(e.const_rows, -1)  # [rows of one event, width]
    table = np.zeros((e.const_rows, e.slice), dtype=np.int64)
    cols = min(e.slice, e.width - start)
    table[:, :cols] = per_event[:, start:start + cols]
    return np.tile(table, (e.rows // e.const_rows, 1))


def quantize_window(graph: Graph, op: Op, e: EltwiseExec, start: int) -> np.ndarray:
    """A quantize op's parameter planes as the tile's array: [4, rows, slice] (columns past the tensor: 0)."""
    from nn2aie.kernels.eltwise.plan import quantize_planes

    planes = quantize_planes(graph, op, e).reshape(4, e.const_rows, -1)
    table = np.zeros((4, e.const_rows, e.slice), dtype=np.int64)
    cols = min(e.slice, e.width - start)
    table[:, :, :cols] = planes[:, :, start:start + cols]
    return np.tile(table, (1, e.rows // e.const_rows, 1))


def affine_window(e: EltwiseExec, start: int) -> np.ndarray:
    """An affine op's planes M, B as the tile's array: [2, rows, slice] (per channel; past the tensor: 0)."""
    table = np.zeros((2, 1, e.slice), dtype=np.int64)
    cols = min(e.slice, e.width - start)
    table[0, 0, :cols] = e.multipliers[start:start + cols]
    table[1, 0, :cols] = e.offsets[start:start + cols]
    return np.tile(table, (1, e.rows, 1))


def run_affine(e: EltwiseExec, a: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """``clamp(saturate32(srs(a * M + (B << t), s)), lo, hi)`` (plan.plan_affine); ``planes`` [2, n, slice]."""
    m, b = (np.asarray(v, dtype=np.int64) for v in planes)
    v = shift_round(np.asarray(a, dtype=np.int64) * m + (b << np.int64(e.offset_shift)), e.ub, e.epi().rounding)
    v = np.clip(v, -(1 << 31), (1 << 31) - 1)  # the SRS into 32-bit lanes saturates
    return np.clip(v, e.lo, e.hi)


def run_quantize(e: EltwiseExec, a: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """The quantize steps of plan.plan_quantize: ``a`` [n, slice], ``planes`` [4, n, slice]; int64."""
    m, c1, c2, p = (np.asarray(v, dtype=np.int64) for v in planes)
    v = shift_round(np.asarray(a, dtype=np.int64) * m, e.ub, e.epi().rounding)
    v = ((v - c1) & c2) + c1 if e.wrap else np.minimum(np.maximum(v, c1), c2)
    return v * p


def run_tile(e: EltwiseExec, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Output codes of the window(s): ``a`` [n, slice] (n = iterations x rows), ``b`` the same shape (the second
    activation or the constant window, broadcast) or None; int64 in, int64 out."""
    a = np.asarray(a, dtype=np.int64)
    if e.const == "scalar":
        b = np.full_like(a, e.scalar)
    elif b is not None:
        b = np.broadcast_to(np.asarray(b, dtype=np.int64), a.shape)
    bits, signed = BITS[e.out_dtype], is_signed(e.out_dtype)
    if e.arith in ("add", "sub"):
        assert b is not None
        acc = (a << e.ua) + (b << e.ub) if e.arith == "add" else (a << e.ua) - (b << e.ub)
        return apply_epilogue(acc, e.epi(), bits, signed)
    if e.arith == "mul":
        assert b is not None
        return apply_epilogue(a * b, e.epi(), bits, signed)
    y = apply_epilogue(a << e.ua, e.epi(), bits, signed)
    if e.second:
        other = b if e.second == "b" else a
        assert other is not None
        y2 = apply_epilogue(other << e.ub, e.epi(True), bits, signed)
        y = np.maximum(y, y2) if e.combine == "max" else np.minimum(y, y2)
    if e.lo is not None:
        y = np.maximum(y, e.lo)
    if e.hi is not None:
        y = np.minimum(y, e.hi)
    return y


def lut_arrays(graph: Graph, op: Op, e: EltwiseExec) -> list[np.ndarray]:
    """The tile's table parameters: ``parallel``: two equal arrays (``lut_ab``, ``lut_cd``; to be placed in two
    banks) in the ``aie::lut<4, int16>`` layout -- the entries padded to whole 128-bit groups of 8 int16 values,
    each group stored twice in a row (UG1603 "Lookup Tables and Linear Approximation"); ``scalar``: the entries
    once, in the output container."""
    from nn2aie.kernels.eltwise.plan import LUT_GROUP_BYTES, lut_parallel_entries

    table = np.asarray(graph.tensor(op.inputs[1]).data, dtype=np.int64)
    if e.lut_variant == "scalar":
        return [table]
    padded = np.concatenate([table, np.full(lut_parallel_entries(table.size) - table.size, table[-1])])
    groups = padded.reshape(-1, LUT_GROUP_BYTES // 2)
    layout = np.concatenate([groups, groups], axis=1).reshape(-1)
    return [layout, layout.copy()]


def lut_entries_of(e: EltwiseExec, arrays: list[np.ndarray]) -> np.ndarray:
    """The table a tile's parameters hold, read back through the layout (the emulator looks up in this)."""
    from nn2aie.kernels.eltwise.plan import LUT_GROUP_BYTES

    if e.lut_variant == "scalar":
        return np.asarray(arrays[0], dtype=np.int64)
    per_group = LUT_GROUP_BYTES // 2
    groups = np.asarray(arrays[0], dtype=np.int64).reshape(-1, 2 * per_group)
    return groups[:, :per_group].reshape(-1)[:e.lut_entries]


def run_lut(e: EltwiseExec, a: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """``parallel``: index ``(x >> 0) + bias`` with ``bias = -lo``, saturated into ``[0, entries - 1]``
    (``aie::parallel_lookup``, out-of-range policy saturate); ``scalar``: the same index, clamped by the kernel."""
    index = np.clip(np.asarray(a, dtype=np.int64) - e.lut_lo, 0, e.lut_entries - 1)
    return np.asarray(entries, dtype=np.int64)[index]
