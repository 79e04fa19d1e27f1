"""Cycles of one dense tile invocation, counted from the loop structure of templates/dense_kernel.cc.j2 with the
shared matrix-kernel model and its calibration (kernels/mac_cost.py)."""

from __future__ import annotations

import dataclasses
import math

from nn2aie.ir.execution import DenseExec
from nn2aie.kernels.mac_cost import (  # noqa: F401  (re-exported: the model's terms are read through this module)
    CALIBRATION,
    CALL_OVERHEAD_CYCLES,
    CASCADE_CYCLES_PER_WORD,
    DEPENDENT_MAC_INTERVAL,
    LOAD_BITS_PER_UNIT_CYCLE,
    MAC_INSTRUCTIONS_PER_CYCLE,
    NATIVE_MACS_PER_INSTRUCTION,
    OUTPUT_CYCLES_PER_256_BITS,
    LoopNest,
    fit_output_constants,
    group_cycles,
    invocation_cycles,
    kernel_cycles,
    trip_cycles,
)

_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32}


# -- the dense template -----------------------------------------------------------------------------------------
def dense_loop_nest(e: DenseExec, role: str) -> LoopNest:
    """The loop nest of templates/dense_kernel.cc.j2 for one tile of layer ``e`` in ``role``: steps of M_ACC row
    blocks outer, groups of N_ACC column blocks, K inner; each trip loads M_ACC A blocks and N_ACC B blocks and
    issues M_ACC x N_ACC MACs."""
    m, k, n = e.mmul
    a_bits, w_bits = _BITS[e.a_dtype], _BITS[e.w_dtype]
    pair = (e.a_dtype.removeprefix("u"), e.w_dtype)
    per_instruction = NATIVE_MACS_PER_INSTRUCTION[pair]
    acc_bits = 32 if e.acc == "acc32" else 64
    cascade_words = math.ceil(m * n * acc_bits / 512)
    out = role in ("single", "last")
    return LoopNest(
        groups=(e.batch // m // e.m_accumulators) * (e.n_slice // n // e.n_accumulators),
        accumulators=e.m_accumulators * e.n_accumulators,
        k_iterations=e.k_slice // k,
        mac_instructions=max(1, m * k * n // per_instruction),
        a_bits=e.m_accumulators * m * k * a_bits,
        b_bits=e.n_accumulators * k * n * w_bits,
        out_bits_per_acc=m * n * _BITS[e.out_dtype] if out else 0,
        out_element_bits=_BITS[e.out_dtype],
        cascade_words_per_acc=cascade_words * ((role in ("middle", "last")) + (role in ("first", "middle"))),
    )


def requant_cycles(e: DenseExec, role: str) -> float:
    """A scaled layer's multiplier / table epilogue on the output tiles: its cycles per 32-lane output vector
    (kernels/requant.py, an uncalibrated instruction count) times the vectors the tile writes per invocation."""
    if e.requant is None or role not in ("single", "last"):
        return 0.0
    vectors = e.batch * e.n_slice / 32
    return vectors * e.requant.cycles_per_vector(32)


def dense_tile_cycles(e: DenseExec, role: str, loads_share_bank: bool = False) -> float:
    n = dense_loop_nest(e, role)
    if loads_share_bank:
        n = dataclasses.replace(n, loads_share_bank=True)
    return invocation_cycles(n) + requant_cycles(e, role)


def dense_efficiency(e: DenseExec, role: str) -> float:
    """Useful MACs (the layer's own, padding excluded) over the tile's peak in the modelled cycles."""
    nest = dense_loop_nest(e, role)
    peak = NATIVE_MACS_PER_INSTRUCTION[(e.a_dtype.removeprefix("u"), e.w_dtype)] * MAC_INSTRUCTIONS_PER_CYCLE
    return e.batch * e.k_slice * e.n_slice / (peak * invocation_cycles(nest))
