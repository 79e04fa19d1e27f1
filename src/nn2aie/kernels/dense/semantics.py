"""Bit-exact model of ONE dense tile kernel: the arithmetic contract of templates/dense_kernel.cc.j2.

Per invocation a tile holds a [batch, k_slice] input window and a [k_slice, n_slice] weight slice and computes,
for every step of ``m_accumulators`` row blocks and column group g, ``m_accumulators x n_accumulators``
aie::mmul accumulators (each A block shared by the group's column blocks, each B block by its row blocks):

    acc = bias (first/single) | cascade-in (middle/last)
    for k_blk: acc[j] += A[m, k_blk] @ B[k_blk, g*NB + j]          (exact integer, acc32/acc64 lanes)
    single/last:  y = wrap(clamp(srs(acc, shift, rounding, saturation), lo, hi))   -> output buffer
                  (wrap: AP_WRAP into wrap_bits < container bits, only when wrap_bits > 0)
    first/middle: acc -> cascade-out

Layouts (shared with the C++ template and the DMA descriptors):
- input/output windows: blocks of mmul_m x mmul_k (input) / mmul_m x mmul_n (output), row-major inside a block,
  blocks ordered row-block major (``BlockLayout``);
- cascade words: one accumulator block (mmul_m x mmul_n lanes) per (m, n_blk), in the order the kernel finishes
  them (``cascade_order``: steps of m_accumulators row blocks, column groups, then (i, j) inside a group);
- weights: packed by ``pack_weights`` in the order the kernel loads them: (group, k_blk, j), each block
  mmul_k x mmul_n row-major.
Accumulation order does not change the result: lanes are exact integers and the accumulator width is chosen so
no partial sum can overflow (see kernels/dense/precision.py). The NumPy model therefore uses BLAS in float32 or
float64, whichever is provably exact for the slice (``product_dtype``), and sums cascades in float64
(exact below 2**53).
"""

from __future__ import annotations

import numpy as np

from nn2aie.ir.execution import DenseExec
from nn2aie.ir.tiling import BlockLayout
from nn2aie.numerics import shift_round_float, srs_float, wrap_float

_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32}


def input_layout(e: DenseExec) -> BlockLayout:
    return BlockLayout(e.batch, e.k_slice, e.mmul[0], e.mmul[1])


def output_layout(e: DenseExec) -> BlockLayout:
    return BlockLayout(e.batch, e.n_slice, e.mmul[0], e.mmul[2])


def cascade_order(e: DenseExec) -> np.ndarray:
    """Accumulator blocks (index m * N_BLOCKS + n_blk) in the order the kernel finishes them, which is the order
    they travel on the cascade: row-block steps of m_accumulators, column groups, then (i, j) inside a group."""
    mb, nb = e.batch // e.mmul[0], e.n_slice // e.mmul[2]
    macc, nacc = e.m_accumulators, e.n_accumulators
    return np.array([(m0 + i) * nb + g * nacc + j for m0 in range(0, mb, macc) for g in range(nb // nacc)
                     for i in range(macc) for j in range(nacc)], dtype=np.int64)


def cascade_to_stream(e: DenseExec, lanes: np.ndarray) -> np.ndarray:
    """[..., batch, n_slice] accumulator lanes -> [..., batch*n_slice] in cascade (stream) order."""
    blocks = output_layout(e).to_blocks(lanes)
    size = e.mmul[0] * e.mmul[2]
    lead = blocks.shape[:-1]
    return blocks.reshape(*lead, -1, size)[..., cascade_order(e), :].reshape(*lead, -1)


def cascade_from_stream(e: DenseExec, stream: np.ndarray) -> np.ndarray:
    size = e.mmul[0] * e.mmul[2]
    lead = stream.shape[:-1]
    blocks = np.empty(stream.shape[:-1] + (stream.shape[-1] // size, size), dtype=stream.dtype)
    blocks[..., cascade_order(e), :] = stream.reshape(*lead, -1, size)
    return output_layout(e).from_blocks(blocks.reshape(*lead, -1))


def pack_weights(e: DenseExec, w_slice: np.ndarray) -> np.ndarray:
    """[k_slice, n_slice] -> 1-D in kernel load order (group, k_blk, j, kk, nn)."""
    _, mk, mn = e.mmul
    kb, nb, nacc = e.k_slice // mk, e.n_slice // mn, e.n_accumulators
    blocks = w_slice.reshape(kb, mk, nb // nacc, nacc, mn)  # [k_blk, kk, g, j, nn]
    return np.ascontiguousarray(blocks.transpose(2, 0, 3, 1, 4)).reshape(-1)


def unpack_weights(e: DenseExec, packed: np.ndarray) -> np.ndarray:
    _, mk, mn = e.mmul
    kb, nb, nacc = e.k_slice // mk, e.n_slice // mn, e.n_accumulators
    blocks = packed.reshape(nb // nacc, kb, nacc, mk, mn)  # [g, k_blk, j, kk, nn]
    return blocks.transpose(1, 3, 0, 2, 4).reshape(e.k_slice, e.n_slice)


def _code_bound(dtype: str) -> int:
    bits = _BITS[dtype]
    return (1 << bits) - 1 if dtype.startswith("u") else 1 << (bits - 1)


def product_dtype(e: DenseExec) -> type:
    """float32 when one tile's dot products are provably exact in float32 (|sum| < 2**24), else float64
    (exact below 2**53, guaranteed for every supported type pair and slice size)."""
    bound = e.k_slice * _code_bound(e.a_dtype) * _code_bound(e.w_dtype)
    return np.float32 if bound < 2**24 else np.float64


def input_matrix(e: DenseExec, a_window: np.ndarray) -> np.ndarray:
    """Input window [iters, batch*k_slice] (buffer order) -> [iters*batch, k_slice] in the product dtype."""
    iters = a_window.shape[0]
    a = input_layout(e).from_blocks(a_window).reshape(iters * e.batch, e.k_slice)
    return a.astype(product_dtype(e))


def weight_matrix(e: DenseExec, packed_weights: np.ndarray) -> np.ndarray:
    return unpack_weights(e, packed_weights).astype(product_dtype(e))


def accumulator_dtype(e: DenseExec) -> type:
    """float32 when the whole accumulator (all cascade partial sums, bias) stays below 2**24, else float64."""
    return np.float32 if e.acc_bound < 2**24 else np.float64


def requant_columns(e: DenseExec, n_start: int, count: int):
    """The layer's Requant for output columns [n_start, n_start + count) of the padded N (padding columns repeat
    the last channel: their codes are computed like any other and never read)."""
    channels = [min(c, e.n - 1) for c in range(n_start, n_start + count)]
    return e.requant.select(channels)


def run_tile_logical(e: DenseExec, role: str, a_mat: np.ndarray, w_mat: np.ndarray, bias: np.ndarray | None,
                     cascade_in: np.ndarray | None, n_start: int = 0) -> np.ndarray:
    """The tile's arithmetic on logical matrices. Returns [iters, batch, n_slice]: accumulator lanes for
    first/middle tiles, output codes for single/last tiles; both as exact integers in ``accumulator_dtype``.

    ``w_mat`` may also hold the weight matrices of several chains at the same cascade position side by side
    (``bias`` and ``cascade_in`` concatenated the same way): output columns are independent, so that equals
    one call per tile, concatenated (``n_start``: the first output column of ``w_mat``, 0 for all chains of a
    position side by side). ``cascade_in`` is consumed (accumulated into in place)."""
    acc_t = accumulator_dtype(e)
    product = (a_mat @ w_mat).reshape(-1, e.batch, w_mat.shape[1])
    if role in ("single", "first"):
        acc = product.astype(acc_t, copy=False)
        if bias is not None:
            acc += bias.astype(acc_t)[None, None, :]
    else:
        acc = cascade_in
        acc += product
    if role in ("first", "middle"):
        return acc
    if e.requant is not None:  # multiplier or table epilogue of a scaled layer (kernels/requant.py)
        return requant_columns(e, n_start, acc.shape[-1]).apply(acc.astype(np.int64)).astype(acc_t)
    bits, signed = _BITS[e.out_dtype], not e.out_dtype.startswith("u")
    if e.saturation == "none":
        y = srs_float(acc, e.shift, bits, signed, e.rounding, e.saturation, inplace=True)
        y = np.clip(y, e.clamp_lo, e.clamp_hi, out=y)
    else:
        # saturate then clamp == one clamp to the intersection (the clamp range lies inside the container's)
        y = shift_round_float(acc, e.shift, e.rounding, inplace=True)  # acc is this call's own temporary
        sat_hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        sat_lo = (-sat_hi - (e.saturation == "saturate")) if signed else 0
        y = np.clip(y, max(sat_lo, e.clamp_lo), min(sat_hi, e.clamp_hi), out=y)
    return wrap_float(y, e.wrap_bits, signed) if e.wrap_bits else y


def run_tile(e: DenseExec, role: str, a_window: np.ndarray, packed_weights: np.ndarray,
             bias: np.ndarray | None, cascade_in: np.ndarray | None, n_start: int = 0) -> np.ndarray:
    """One invocation per leading index of ``a_window`` ([iters, batch*k_slice], buffer order).

    Returns the output window ([iters, batch*n_slice] codes, buffer order) for single/last tiles, or the cascade
    words ([iters, batch*n_slice] int64 accumulator lanes, block order) for first/middle tiles.
    """
    cas = None
    if cascade_in is not None:
        cas = cascade_from_stream(e, cascade_in).astype(accumulator_dtype(e))
    out = run_tile_logical(e, role, input_matrix(e, a_window), weight_matrix(e, packed_weights), bias, cas, n_start)
    if role in ("first", "middle"):
        return cascade_to_stream(e, out.astype(np.int64))
    return output_layout(e).to_blocks(out.astype(np.int64))
