"""Cycles of one conv tile invocation, counted from the loop structure of templates/conv_kernel.cc.j2 with the
shared matrix-kernel model and its calibration (kernels/mac_cost.py).

Per event, output row and pixel step the kernel runs ``GROUPS`` accumulator groups of ``M_ACC x N_ACC``
accumulators; a group walks ``KH x KW x CB`` trips, each loading ``M_ACC`` A blocks (``SW x MMUL_M`` pixels of
``MMUL_K`` channels; an A block that does not start on a 256-bit boundary -- taps whose column offset ``kw x DW``
is not a multiple of 4 pixels -- is charged one more 256-bit load: ``aie::load_unaligned_v``, UG1603 "Alignment"
says unaligned loads cost more, by how much is assumed here, not measured) and ``N_ACC`` B blocks, and issuing
``M_ACC x N_ACC`` MACs. After the trips each accumulator is converted and stored (the calibrated unhidden epilogue
per 256 bits, as dense). A float-scale layer adds its requantisation per 32-lane output vector (kernels/requant.py).
"""

from __future__ import annotations

from nn2aie.kernels.conv.plan import PIXELS_PER_256, ConvExec
from nn2aie.kernels.mac_cost import (
    CALL_OVERHEAD_CYCLES,
    NATIVE_MACS_PER_INSTRUCTION,
    OUTPUT_CYCLES_PER_256_BITS,
    LoopNest,
    invocation_cycles,
)

_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16}


def misaligned_taps(e: ConvExec) -> int:
    return sum(1 for kw in range(e.kernel[1]) if (kw * e.dilations[1]) % PIXELS_PER_256) * e.kernel[0]


def loop_nest(e: ConvExec, role: str = "single") -> LoopNest:
    m, k, n = e.mmul
    pair = (e.a_dtype.removeprefix("u"), e.w_dtype)
    per_instruction = NATIVE_MACS_PER_INSTRUCTION[pair]
    a_bits = _BITS[e.a_dtype]
    trips = e.taps * (e.c_pad // k)
    # the extra load of misaligned taps, averaged over the trips (one more 256-bit load per A block)
    extra = misaligned_taps(e) * (e.c_pad // k) / trips * 256
    return LoopNest(
        groups=e.tile_batch * e.band_rows * (e.wq // e.group_pixels) * (e.m_slice // (n * e.n_accumulators)),
        accumulators=e.m_accumulators * e.n_accumulators,
        k_iterations=trips,
        mac_instructions=max(1, m * k * n // per_instruction),
        a_bits=int(e.m_accumulators * (e.strides[1] * m * k * a_bits + extra)),
        b_bits=e.n_accumulators * k * n * _BITS[e.w_dtype],
        out_bits_per_acc=m * n * _BITS[e.out_dtype] if role in ("single", "last") else 0,
        out_element_bits=_BITS[e.out_dtype],
        cascade_words_per_acc=max(1, m * n * (32 if e.acc == "acc32" else 64) // 512) * (
            (role in ("middle", "last")) + (role in ("first", "middle"))),
    )


def requant_cycles(e: ConvExec, role: str = "single") -> float:
    if e.requant is None or role not in ("single", "last"):
        return 0.0
    vectors = e.tile_batch * e.band_rows * e.wq * e.m_slice / 32
    return vectors * e.requant.cycles_per_vector(32)


def pool_cycles(e: ConvExec) -> float:
    """A max pool tile: per pixel group and channel block, one load (SW x 256 bits, one more when misaligned) and
    one vector max per tap, both units and the vector slot in parallel; the store of the pixels; the call."""
    k = e.mmul[1]
    blocks = e.tile_batch * e.band_rows * (e.wq // e.mmul[0]) * (e.m_slice // k)
    loads = e.taps * e.strides[1] + misaligned_taps(e)  # 256-bit loads per block, on two load units
    per_block = max(e.taps, loads / 2) + e.mmul[0] * 0.5  # the maxes, or the loads; the pixel stores (half hidden)
    return blocks * per_block + CALL_OVERHEAD_CYCLES


def depthwise_cycles(e: ConvExec) -> float:
    """A depthwise tile: per pixel group and channel block, per tap one element-wise MAC of MMUL_M x MMUL_K lanes
    (one instruction, assumed) with its A load (SW x 256 bits, one more when misaligned) and its 256-bit weight load
    on the other unit; then the epilogue of the block (the calibrated unhidden fraction, as the matrix kernels)."""
    m, k, _ = e.mmul
    blocks = e.tile_batch * e.band_rows * (e.wq // m) * (e.m_slice // k)
    a_loads = e.taps * e.strides[1] + misaligned_taps(e)
    per_block = max(e.taps, a_loads, e.taps) + m * k * _BITS[e.out_dtype] / 256 * OUTPUT_CYCLES_PER_256_BITS[
        _BITS[e.out_dtype]]
    return blocks * per_block + requant_cycles(e) + CALL_OVERHEAD_CYCLES


def tile_cycles(e: ConvExec, role: str = "single") -> float:
    if e.pool:
        return pool_cycles(e)
    if e.variant == "depthwise":
        return depthwise_cycles(e)
    return invocation_cycles(loop_nest(e, role)) + requant_cycles(e, role)


def peak_macs(e: ConvExec) -> int:
    if e.variant == "depthwise":  # one element-wise MAC instruction of MMUL_M x MMUL_K lanes per cycle (assumed)
        return e.mmul[0] * e.mmul[1]
    return NATIVE_MACS_PER_INSTRUCTION[(e.a_dtype.removeprefix("u"), e.w_dtype)]


def efficiency(e: ConvExec) -> float:
    """Useful MACs of one tile (its share of the op's, padding and junk pixels excluded) over the tile's peak in
    the modelled cycles."""
    useful = (e.tile_batch * e.band_rows * e.out_spatial[1] * min(e.m_slice, e.filters) * e.taps
              * (e.channels // e.groups) / e.slices)
    return useful / (peak_macs(e) * max(tile_cycles(e, role) for role in e.roles))
