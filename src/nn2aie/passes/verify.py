"""Structural invariants of a physical plan (placement, memory maps, descriptors, one source per input and one
sink per output); a violation is a bug in nn2aie (InternalCheckError). Resource limits (memory, DMA channels,
buffer descriptors, stream ports, PLIOs, program memory) are the legality model's: passes/legality.py.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import InternalCheckError
from nn2aie.ir.physical import PhysicalPlan, dtype_bytes
from nn2aie.kernels.registry import family_named
from nn2aie.passes.placement import check_placement


def _internal(where: str, reason: str) -> InternalCheckError:
    return InternalCheckError(where, reason, "this is a bug in nn2aie; please report the model")


def verify_plan(plan: PhysicalPlan, device: Device) -> None:
    check_placement(plan.kernels, device)
    granule = int(device.fact("dma_granularity_bytes"))

    # every kernel: memory map inside its module, no overlaps, alignment
    for k in plan.kernels:
        spans = sorted((b.offset, b.offset + b.size, b.name) for b in k.memory)
        for (_s0, e0, n0), (s1, _e1, n1) in zip(spans, spans[1:], strict=False):
            if s1 < e0:
                raise _internal(f"kernel {k.name}", f"buffers {n0} and {n1} overlap")

    # every kernel input port has exactly one source, every output port exactly one sink
    ports = {k.name: k.ports or family_named(e.family).ports(e, k) for e in plan.layers for k in plan.kernels_of(e.op)}

    def port_key(kernel: str, port: str, direction: str) -> tuple[str, str]:
        if port:
            return kernel, port
        names = [p.name for p in ports.get(kernel, []) if p.direction == direction]
        return kernel, names[0] if len(names) == 1 else "?"

    sources: Counter = Counter()
    sinks: Counter = Counter()
    for link in plan.direct_links:
        sinks[port_key(link.src, link.src_port, "out")] += 1
        sources[port_key(link.dst, link.dst_port, "in")] += 1
    for sb in plan.shared_buffers:
        where = f"memory-tile buffer {sb.name} at memtile ({sb.col},{sb.row})"
        if not (0 <= sb.col < device.columns and 0 <= sb.row < device.memtile_rows):
            raise _internal(where, "memory tile outside the device")
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
                    if acc in sb.writers:
                        sinks[port_key(ep.name, ep.port, "out")] += 1
                    else:
                        sources[port_key(ep.name, ep.port, "in")] += 1
        written = np.zeros(sb.dims[0] * sb.dims[1], dtype=bool)
        for acc in sb.writers:
            written[acc.tiling.addresses()[0]] = True
        for acc in sb.readers:
            addr, valid = acc.tiling.addresses()
            if not written[addr[valid]].all():
                raise _internal(where, "a reader may see elements nobody wrote")
    spans: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
    for sb in plan.shared_buffers:
        spans.setdefault((sb.col, sb.row), []).append((sb.offset, sb.offset + sb.num_buffers * sb.buffer_bytes,
                                                        sb.name))
    for (c, r), items in spans.items():  # buffers sharing a memory tile lie side by side, inside it
        items.sort()
        for (_s0, e0, n0), (s1, _e1, n1) in zip(items, items[1:], strict=False):
            if s1 < e0:
                raise _internal(f"memory tile ({c},{r})", f"buffers {n0} and {n1} overlap")
        if items[-1][1] > device.memtile_bytes:
            raise _internal(f"memory tile ({c},{r})", f"buffers end at byte {items[-1][1]}, past its "
                            f"{device.memtile_bytes} B")
    for k in plan.kernels:
        for spec in ports[k.name]:
            if spec.direction == "in" and sources[(k.name, spec.name)] != 1:
                raise _internal(f"kernel {k.name}", f"input port {spec.name} has {sources[(k.name, spec.name)]} "
                                "sources")
            if spec.direction == "out" and sinks[(k.name, spec.name)] != 1:
                raise _internal(f"kernel {k.name}", f"output port {spec.name} goes to {sinks[(k.name, spec.name)]} "
                                "places")
