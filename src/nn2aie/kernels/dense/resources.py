"""Static resources of one dense tile kernel that the legality check needs (next to its semantics and template).

Program memory is an estimate (no compiler here): the per-tile runtime (``program_memory_runtime_bytes`` in the
catalog) plus the kernel function counted in 128-bit VLIW bundles of templates/dense_kernel.cc.j2: the K loop
body is M_ACC A loads, N_ACC B loads and M_ACC x N_ACC MAC bundles, software-pipelined (x3 for prologue/epilogue), each
accumulator adds its SRS/clamp/store (or cascade write) epilogue and its bias or cascade-read prologue, and the
fixed frame (loops, pointers, mode setting) is about 48 bundles. A typical int8 layer estimates at 3-5 KB of the
16 KB, so the rule only bites for unusually unrolled variants; it states its assumption in the error.
"""

from __future__ import annotations

from nn2aie.devices import Device
from nn2aie.ir.execution import DenseExec

BUNDLE_BYTES = 16  # one 128-bit VLIW instruction bundle (AM020)
FRAME_BUNDLES = 48
PIPELINE_FACTOR = 3
EPILOGUE_BUNDLES = {"single": 10, "first": 6, "middle": 8, "last": 12}  # per accumulator


def program_memory_bytes(e: DenseExec, role: str, device: Device) -> int:
    accumulators = e.m_accumulators * e.n_accumulators
    loop = PIPELINE_FACTOR * (e.m_accumulators + e.n_accumulators + accumulators)
    per_acc = EPILOGUE_BUNDLES[role] + (4 if e.wrap_bits else 0)
    bundles = FRAME_BUNDLES + loop + accumulators * per_acc
    return int(device.fact("program_memory_runtime_bytes")) + BUNDLE_BYTES * bundles
