"""Partition each layer into tile kernels: weight/bias slices packed for the kernel, and a memory map per tile."""

from __future__ import annotations

import numpy as np

from nn2aie.devices import Device
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, numpy_dtype
from nn2aie.kernels.dense.parallelism import tile_buffers
from nn2aie.kernels.dense.precision import tile_bias
from nn2aie.kernels.dense.semantics import pack_weights
from nn2aie.kernels.tile_memory import allocate


def role_of(position: int, length: int) -> str:
    if length == 1:
        return "single"
    if position == 0:
        return "first"
    return "last" if position == length - 1 else "middle"


def memory_map(e: DenseExec, device: Device, role: str, where: str, skip: frozenset[str] = frozenset()
               ) -> list[BufferAlloc]:
    """Bank-aware, 32-byte aligned allocation inside the tile's own data memory (kernels/tile_memory.py; no
    neighbour spill). ``skip`` names buffers the tile does not own (an input read in place from the west
    neighbour)."""
    items = [(n, s) for n, s in tile_buffers(e, device, role, e.k_slice, e.n_slice).items() if n not in skip]
    return allocate(items, device, where, "use more tiles for this layer (cas_length/cas_num) or a smaller batch")


def partition_layer(graph: Graph, op: Op, e: DenseExec, device: Device, layer_id: str) -> list[Kernel]:
    w = graph.tensor(op.inputs[1]).data
    w_pad = np.zeros((e.k_padded, e.n_padded), dtype=np.int64)
    w_pad[: e.k, : e.n] = w
    bias = tile_bias(graph, op)
    b_pad = np.zeros(e.n_padded, dtype=np.int64)
    if bias is not None:
        b_pad[: e.n] = bias
    kernels: list[Kernel] = []
    for chain in range(e.cas_num):
        n0 = chain * e.n_slice
        for pos in range(e.cas_length):
            k0 = pos * e.k_slice
            role = role_of(pos, e.cas_length)
            packed = pack_weights(e, w_pad[k0:k0 + e.k_slice, n0:n0 + e.n_slice]).astype(numpy_dtype(e.w_dtype))
            kb = None
            if e.has_bias and role in ("single", "first"):
                kb = b_pad[n0:n0 + e.n_slice].astype(np.int32)
            name = f"{layer_id}_c{chain}_p{pos}"
            kernels.append(Kernel(
                name=name, layer=op.name, chain=chain, position=pos, role=role, col=-1, row=-1,
                k_start=k0, n_start=n0, weights=packed, bias=kb,
                memory=memory_map(e, device, role, f"kernel {name} of layer {op.name}"),
            ))
            if pos > 0:  # the cascade runs from the previous position of the same chain
                kernels[-2].cascade_to, kernels[-1].cascade_from = name, kernels[-2].name
    return kernels
