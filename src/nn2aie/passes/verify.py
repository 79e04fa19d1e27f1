"""Legality check of a physical plan against the device catalog, run before anything is emitted.

Independent of the passes that built the plan: it re-derives every resource use from the plan objects and
names the first violated resource, where, and by how much.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, InternalCheckError
from nn2aie.ir.physical import PhysicalPlan, dtype_bytes
from nn2aie.passes.placement import check_placement


def _internal(where: str, reason: str) -> InternalCheckError:
    return InternalCheckError(where, reason, "this is a bug in nn2aie; please report the model")


def verify_plan(plan: PhysicalPlan, device: Device) -> None:
    check_placement(plan.kernels, device)
    granule = int(device.fact("dma_granularity_bytes"))
    mem_channels = device.fact("memtile_dma_channels")
    used_memtiles: Counter = Counter()

    # every kernel: memory map inside its module, no overlaps, alignment
    for k in plan.kernels:
        spans = sorted((b.offset, b.offset + b.size, b.name) for b in k.memory)
        for (_s0, e0, n0), (s1, _e1, n1) in zip(spans, spans[1:], strict=False):
            if s1 < e0:
                raise _internal(f"kernel {k.name}", f"buffers {n0} and {n1} overlap")
        if spans and spans[-1][1] > device.data_memory_bytes:
            raise DoesNotFitError(f"kernel {k.name} at tile ({k.col},{k.row})",
                                  f"data memory overflows by {spans[-1][1] - device.data_memory_bytes} B",
                                  "use more tiles for this layer")

    # every kernel input has exactly one source, every output exactly one sink
    sources: Counter = Counter()
    sinks: Counter = Counter()
    for link in plan.direct_links:
        sinks[link.src] += 1
        sources[link.dst] += 1
    for sb in plan.shared_buffers:
        where = f"memory-tile buffer {sb.name} at memtile ({sb.col},{sb.row})"
        used_memtiles[(sb.col, sb.row)] += 1
        if not (0 <= sb.col < device.columns and 0 <= sb.row < device.memtile_rows):
            raise _internal(where, "memory tile outside the device")
        if sb.bytes > device.memtile_bytes:
            raise DoesNotFitError(where, f"needs {sb.bytes} B (double buffered), a memory tile has "
                                  f"{device.memtile_bytes} B", "use a smaller batch")
        if len(sb.writers) > mem_channels["s2mm"] or len(sb.readers) > mem_channels["mm2s"]:
            raise DoesNotFitError(where, f"{len(sb.writers)} writers / {len(sb.readers)} readers exceed the "
                                  f"{mem_channels['s2mm']} + {mem_channels['mm2s']} DMA channels",
                                  "reduce cas_num / cas_length")
        elem = dtype_bytes(sb.dtype)
        if (sb.dims[0] * elem) % granule:
            raise _internal(where, f"row of {sb.dims[0] * elem} B is not a whole number of {granule}-byte words")
        for acc in sb.writers:
            if acc.tiling.boundary_dimension is not None or not acc.tiling.in_bounds():
                raise _internal(where, "a write descriptor leaves the buffer (padding exists only on reads)")
        for acc in sb.readers:
            t = acc.tiling
            if t.boundary_dimension is None and not t.in_bounds():
                raise _internal(where, "a read descriptor leaves the buffer without zero padding")
        for acc in sb.writers + sb.readers:
            t = acc.tiling
            if (t.tiling_dimension[0] * elem) % granule or (t.offset[0] * elem) % granule:
                raise _internal(where, "innermost tile width or offset is not a whole number of 32-bit words")
            for ep in acc.endpoints:
                if ep.kind == "kernel":
                    (sinks if acc in sb.writers else sources)[ep.name] += 1
        written = np.zeros(sb.dims[0] * sb.dims[1], dtype=bool)
        for acc in sb.writers:
            written[acc.tiling.addresses()[0]] = True
        for acc in sb.readers:
            addr, valid = acc.tiling.addresses()
            if not written[addr[valid]].all():
                raise _internal(where, "a reader may see elements nobody wrote")
    for (c, r), n in used_memtiles.items():
        if n > 1:
            raise _internal(f"memory tile ({c},{r})", f"holds {n} buffers")
    for k in plan.kernels:
        if k.position == 0 and sources[k.name] != 1:
            raise _internal(f"kernel {k.name}", f"{sources[k.name]} input sources")
        if k.position > 0 and sources[k.name] != 1:
            raise _internal(f"kernel {k.name}", f"{sources[k.name]} input sources")
        if k.has_output and sinks[k.name] != 1:
            raise _internal(f"kernel {k.name}", f"output goes to {sinks[k.name]} places")
