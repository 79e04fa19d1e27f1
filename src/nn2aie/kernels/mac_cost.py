"""Cycles of a matrix-multiply tile kernel (dense, conv), counted from its loop structure: the shared model and
its calibration; each family builds the ``LoopNest`` of its own template (kernels/dense/cost.py, kernels/conv/cost.py).

The kernel runs ``groups`` accumulator groups; a group keeps ``accumulators`` independent ``aie::mmul``
accumulators and walks the K loop ``k_iterations`` times. One trip issues, per accumulator, the MAC
instructions of one mmul block, and loads the A blocks on one load unit and the B blocks on the other
(256 bits per unit per cycle). The trip takes the longest of:

- the MAC slot: one MAC instruction per cycle (AM020: one vector MAC unit; a native 4x8x8 int8 block is one);
- the A load unit and the B load unit: 256 bits per cycle each (AM020: 2 x 256-bit loads per cycle; AMD's
  AIE-ML GEMM tutorial counts A and B on separate units, which its measured 49 % naive efficiency confirms);
- the accumulator dependency chain: a MAC on the same accumulator issues at most every
  ``DEPENDENT_MAC_INTERVAL`` cycles (Peano AIE2 schedule: integer MAC result forwarded ~2 cycles after issue).

After the K loop each accumulator is converted and stored (or written to the cascade): the part of that
epilogue the compiler does not hide behind the next group's MACs is ``OUTPUT_CYCLES_PER_256_BITS`` per
256 bits of output, and each 512-bit cascade word read or written costs ``CASCADE_CYCLES_PER_WORD`` (the same
unhidden fraction per epilogue operation, by analogy).
A kernel call adds ``CALL_OVERHEAD_CYCLES`` (lock acquire/release, pointer set-up).

Calibration (``CALIBRATION``): AMD's AIE-ML 64x64x64 int8 GEMM with 4x16x8 blocks (Vitis-Tutorials AIE-ML
"matrix multiplication" performance study, shared/reference/peers.md): 2092 cycles naive, 1121 cycles with each
B block used by two row blocks (int16 output), 1750 cycles with int32 output. The two 16-bit points fit
``OUTPUT_CYCLES_PER_256_BITS[16]`` by least squares (both within 2.5 %); the int32 point fixes
``OUTPUT_CYCLES_PER_256_BITS[32]``. 8-bit outputs are assumed to cost what 16-bit ones do per 256 bits (one SRS
and one store). The call constant and the cascade analogy are not calibrated by these points (stated in every
report).
"""

from __future__ import annotations

from dataclasses import dataclass

MAC_INSTRUCTIONS_PER_CYCLE = 1
LOAD_BITS_PER_UNIT_CYCLE = 256
DEPENDENT_MAC_INTERVAL = 2  # cycles between dependent MACs on one accumulator (Peano AIE2Schedule.td; M)
NATIVE_MACS_PER_INSTRUCTION = {("int8", "int8"): 256, ("int16", "int8"): 128, ("int16", "int16"): 64}
OUTPUT_CYCLES_PER_256_BITS = {8: 0.2754, 16: 0.2754, 32: 1.418}  # fitted on CALIBRATION (see the docstring)
# A 512-bit cascade word is one move-slot operation of the group epilogue (put_mcd / get_scd, UG1583), like one
# 256-bit SRS + store; it is charged the same calibrated unhidden fraction. By analogy, not measured (M); the
# benchmarks show the range from fully hidden (0) to fully exposed (1 cycle per word).
CASCADE_CYCLES_PER_WORD = OUTPUT_CYCLES_PER_256_BITS[16]
CALL_OVERHEAD_CYCLES = 40  # "tens of cycles" per kernel call (UG1079); not calibrated (L)

@dataclass(frozen=True)
class LoopNest:
    """What one invocation of a matrix kernel does, in the units the cost model counts."""

    groups: int  # accumulator groups per invocation
    accumulators: int  # independent accumulators per group
    k_iterations: int  # K-loop trips per group
    mac_instructions: int  # MAC instructions per accumulator per trip
    a_bits: int  # bits of A loaded per trip (all A blocks of the group)
    b_bits: int  # bits of B loaded per trip
    out_bits_per_acc: int  # bits written per accumulator after the loop (0: cascade only)
    out_element_bits: int  # element width of the output (8 / 16 / 32)
    cascade_words_per_acc: int = 0  # 512-bit cascade words read + written per accumulator
    calls: int = 1
    loads_share_bank: bool = False  # A and B in one memory bank: their loads take turns (see trip_cycles)

    @property
    def macs_issued(self) -> int:
        return self.groups * self.k_iterations * self.accumulators * self.mac_instructions


def trip_cycles(n: LoopNest) -> float:
    mac = n.accumulators * n.mac_instructions / MAC_INSTRUCTIONS_PER_CYCLE
    # two load units work in parallel; when A and B lie in one bank the two loads of a cycle conflict and the
    # bank serves them one after the other (AM020, memory module; the penalty the bank-aware allocator avoids
    # wherever the tile's memory allows, kernels/tile_memory.py)
    loads = ((n.a_bits + n.b_bits) if n.loads_share_bank else max(n.a_bits, n.b_bits)) / LOAD_BITS_PER_UNIT_CYCLE
    chain = n.mac_instructions * DEPENDENT_MAC_INTERVAL
    return max(mac, loads, chain)


def group_cycles(n: LoopNest) -> float:
    epilogue = n.accumulators * (n.out_bits_per_acc / 256 * OUTPUT_CYCLES_PER_256_BITS[n.out_element_bits]
                                 + n.cascade_words_per_acc * CASCADE_CYCLES_PER_WORD)
    return n.k_iterations * trip_cycles(n) + epilogue


def invocation_cycles(n: LoopNest) -> float:
    return n.groups * group_cycles(n) + n.calls * CALL_OVERHEAD_CYCLES


def kernel_cycles(n: LoopNest) -> float:
    """Cycles inside the kernel body (what a tile cycle counter around the loops measures), without the call."""
    return n.groups * group_cycles(n)


# -- calibration ------------------------------------------------------------------------------------------------
def _tutorial_gemm(b_reuse: int, out_bits: int) -> LoopNest:
    """AMD's 64x64x64 int8 GEMM with aie::mmul<4,16,8> (2 native MAC instructions per block): ``b_reuse`` row
    blocks share each loaded B block (1 = naive)."""
    return LoopNest(groups=(64 // 4 // b_reuse) * (64 // 8), accumulators=b_reuse, k_iterations=64 // 16,
                    mac_instructions=2, a_bits=b_reuse * 4 * 16 * 8, b_bits=16 * 8 * 8,
                    out_bits_per_acc=4 * 8 * out_bits, out_element_bits=out_bits)


# (name, loop nest, measured kernel cycles, source)
CALIBRATION = [
    ("GEMM 64x64x64 int8, 4x16x8, naive, int16 out", _tutorial_gemm(1, 16), 2092,
     "AMD Vitis-Tutorials AIE-ML matrix multiplication performance study (shared/reference/peers.md)"),
    ("GEMM 64x64x64 int8, 4x16x8, B shared by 2 row blocks, int16 out", _tutorial_gemm(2, 16), 1121,
     "same tutorial"),
    ("GEMM 64x64x64 int8, 4x16x8, B shared by 2 row blocks, int32 out", _tutorial_gemm(2, 32), 1750,
     "same tutorial"),
]


def fit_output_constants() -> dict[int, float]:
    """Refit OUTPUT_CYCLES_PER_256_BITS from CALIBRATION (least squares for 16-bit, exact for 32-bit)."""
    def residual(nest: LoopNest, measured: float) -> tuple[float, float]:
        base = nest.groups * nest.k_iterations * trip_cycles(nest)
        per_unit = nest.groups * nest.accumulators * nest.out_bits_per_acc / 256
        return measured - base, per_unit  # measured = base + per_unit * c

    pts16 = [residual(n, c) for _, n, c, _ in CALIBRATION if n.out_element_bits == 16]
    c16 = sum(r * u for r, u in pts16) / sum(u * u for _, u in pts16)
    r32, u32 = next(residual(n, c) for _, n, c, _ in CALIBRATION if n.out_element_bits == 32)
    return {8: c16, 16: c16, 32: r32 / u32}
