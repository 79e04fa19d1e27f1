"""Physical IR: tile coordinates, per-tile memory maps, memory-tile buffers with their DMA descriptors, PLIOs.

This plan is the single source for codegen, the emulator and (later) the cycle model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.ir.execution import OpExec
from nn2aie.ir.tiling import TilingDescriptor


@dataclass
class BufferAlloc:
    """One buffer in a compute tile's data memory (byte offset from the module base)."""

    name: str
    offset: int
    size: int
    bank: int

    def to_json(self) -> dict:
        return {"name": self.name, "offset": self.offset, "size": self.size, "bank": self.bank}


@dataclass(frozen=True)
class SpatialView:
    """A port that moves a window of each event's image rather than all its rows: the tensor's per-event rows seen
    as an image of ``shape`` (``(H, W)``; 1-D ``(1, L)``), the window starting at ``origin`` (per axis; negative or
    past the image: rows outside it read as zero, the memory tile's zero padding, reads only) of ``extent`` rows
    per axis. The port's ``rows`` are ``events * prod(extent)``, the window's rows row-major per event: every event
    of the graph iteration, or ``events = (first, count)`` of them (tiles sharing out the batch)."""

    shape: tuple[int, ...]
    origin: tuple[int, ...]
    extent: tuple[int, ...]
    events: tuple[int, int] | None = None

    @property
    def rows(self) -> int:
        return math.prod(self.extent)

    @property
    def padded(self) -> bool:
        return any(o < 0 or o + e > s for o, e, s in zip(self.origin, self.extent, self.shape, strict=True))

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "origin": list(self.origin), "extent": list(self.extent)} | \
            ({"events": list(self.events)} if self.events is not None else {})


@dataclass(frozen=True)
class PortSpec:
    """One data port of a tile kernel: which columns of which tensor it moves, in which tile-side layout.

    Tensors on chip are row-major ``[rows, columns]`` per graph iteration (rows = batch x the product of the
    per-event leading axes, columns = the last axis, zero-padded). A port moves columns ``[start, start + width)``
    of every row; ``block`` is the (rows, columns) block layout of the window in the tile buffer (row-block major,
    row-major inside a block; what aie::mmul loads and stores), or None for plain row-major rows."""

    name: str  # "in", "in1", "out", ...: the family's port name
    direction: str  # "in" | "out"
    index: int  # which activation input (in the op's input order, constants skipped) or output it moves
    start: int
    width: int
    block: tuple[int, int] | None
    dtype: str  # container type of the window
    rows: int  # rows per graph iteration
    view: SpatialView | None = None  # a window of each event's image (None: every row of the tensor)

    def to_json(self, tensor: str) -> dict:
        return {"name": self.name, "direction": self.direction, "tensor": tensor, "columns": [self.start, self.width],
                "rows": self.rows, "dtype": self.dtype, "block": list(self.block) if self.block else None} | \
            ({"view": self.view.to_json()} if self.view is not None else {})


@dataclass
class Kernel:
    """One compute-tile kernel instance: a piece of one layer (op), at (position, chain) of its footprint."""

    name: str
    layer: str
    chain: int  # row of the layer's footprint (dense: index along N, 0..cas_num-1)
    position: int  # column of the footprint (dense: index along the cascade, 0..cas_length-1)
    role: str  # the family's role of this tile (dense: single | first | middle | last)
    col: int
    row: int
    k_start: int  # dense: slice of the padded reduction dimension (0 for other families)
    n_start: int  # dense: slice of the padded output dimension (0 for other families)
    weights: np.ndarray  # packed in the order the kernel reads them, container dtype (may be empty)
    bias: np.ndarray | None  # int32 codes at the accumulator LSB (first/single only)
    memory: list[BufferAlloc] = field(default_factory=list)
    family: str = "dense"
    cascade_from: str | None = None  # the kernel whose cascade output feeds this one (explicit, never parsed)
    cascade_to: str | None = None
    ports: list[PortSpec] = field(default_factory=list)  # data ports (set by the memory plan from the family)
    port_tensors: list[str] = field(default_factory=list)  # the tensor each port moves

    @property
    def has_output(self) -> bool:
        return self.role in ("single", "last") if self.family == "dense" else True

    @property
    def has_cascade_in(self) -> bool:
        return self.cascade_from is not None

    @property
    def has_cascade_out(self) -> bool:
        return self.cascade_to is not None

    def to_json(self) -> dict:
        return {
            "name": self.name, "layer": self.layer, "chain": self.chain, "position": self.position,
            "role": self.role, "tile": [self.col, self.row], "k_start": self.k_start, "n_start": self.n_start,
            "weight_bytes": int(self.weights.nbytes),
            "bias_bytes": int(self.bias.nbytes) if self.bias is not None else 0,
            "memory": [b.to_json() for b in self.memory],
            "family": self.family,
            "ports": [p.to_json(t) for p, t in zip(self.ports, self.port_tensors, strict=True)],
            "cascade": {"from": self.cascade_from, "to": self.cascade_to},
        }


@dataclass(frozen=True)
class Endpoint:
    """Where a stream starts or ends: a kernel's buffer port or a PLIO."""

    kind: str  # "kernel" | "plio"
    name: str
    port: str = ""  # the kernel's data port; "" = its only port in that direction

    def to_json(self) -> str:
        return f"{self.kind}:{self.name}" + (f".{self.port}" if self.port else "")


@dataclass
class Access:
    """One port of a shared buffer: who is on the other side (several endpoints = a stream broadcast to all
    of them), and the descriptor that orders the data."""

    endpoints: list[Endpoint]
    tiling: TilingDescriptor

    def to_json(self) -> dict:
        return {"endpoints": [e.to_json() for e in self.endpoints], "tiling": self.tiling.to_json()}


MEMTILE_ALIGN = 32  # bytes: each buffer of a memory-tile rotation starts on a 256-bit boundary


def assign_memtile_offsets(buffers: list[SharedBuffer]) -> None:
    """Lay the buffers sharing a memory tile one after the other (in plan order)."""
    used: dict[tuple[int, int], int] = {}
    for sb in buffers:
        sb.offset = used.get((sb.col, sb.row), 0)
        used[(sb.col, sb.row)] = sb.offset + sb.num_buffers * sb.buffer_bytes


@dataclass
class SharedBuffer:
    """A memory-tile buffer re-tiling a tensor between producers and consumers (double buffered)."""

    name: str
    tensor: str  # logical tensor it carries
    dtype: str
    dims: tuple[int, ...]  # dimension 0 innermost: (columns, rows)
    col: int
    row: int  # memory-tile row (0 = the row next to the array interface)
    writers: list[Access]
    readers: list[Access]
    col_start: int = 0  # first logical column of the tensor this buffer holds
    first_event: int = 0  # first event of the iteration it holds (a buffer split by events: tiles sharing out the
    # batch, each range of events on a memory tile of its own; its rows are those events' rows)
    num_buffers: int = 2
    offset: int = 0  # byte address of its first buffer in the memory tile (several buffers may share one)

    @property
    def buffer_bytes(self) -> int:
        """One buffer of the rotation, rounded up to MEMTILE_ALIGN (where the next one starts)."""
        one = int(np.prod(self.dims)) * dtype_bytes(self.dtype)
        return -(-one // MEMTILE_ALIGN) * MEMTILE_ALIGN

    @property
    def bytes(self) -> int:
        return int(np.prod(self.dims)) * dtype_bytes(self.dtype) * self.num_buffers

    def to_json(self) -> dict:
        return {"name": self.name, "tensor": self.tensor, "dtype": self.dtype, "dims": list(self.dims),
                "memtile": [self.col, self.row], "col_start": self.col_start, "bytes": self.bytes,
                "writers": [w.to_json() for w in self.writers], "readers": [r.to_json() for r in self.readers]} | \
            ({"first_event": self.first_event} if self.first_event else {}) | \
            ({"offset": self.offset, "num_buffers": self.num_buffers} if self.offset or self.num_buffers != 2 else {})


@dataclass
class DirectLink:
    """Producer output buffer handed straight to the consumer input: layouts already agree."""

    tensor: str
    src: str  # kernel name
    dst: str
    in_place: bool = False  # dst's core reads src's output buffer in src's memory (a neighbour module)
    src_port: str = ""  # "" = the kernel's only output / input port
    dst_port: str = ""

    def to_json(self) -> dict:
        out = {"tensor": self.tensor, "src": self.src, "dst": self.dst, "in_place": self.in_place}
        if self.src_port or self.dst_port:
            out |= {"src_port": self.src_port, "dst_port": self.dst_port}
        return out


@dataclass
class Plio:
    name: str
    direction: str  # "in" | "out"
    tensor: str
    dtype: str
    bits: int
    freq_mhz: float
    col: int
    row_width: int  # elements per logical row on the wire (padded to whole 32-bit words)
    file: str

    def to_json(self) -> dict:
        return {"name": self.name, "direction": self.direction, "tensor": self.tensor, "dtype": self.dtype,
                "bits": self.bits, "freq_mhz": self.freq_mhz, "column": self.col, "row_width": self.row_width,
                "file": self.file}


@dataclass
class PhysicalPlan:
    device: str
    graph_name: str
    batch: int
    layers: list[OpExec]
    kernels: list[Kernel]
    shared_buffers: list[SharedBuffer]
    direct_links: list[DirectLink]
    plios: list[Plio]
    input_tensors: list[str]  # graph inputs, in the model's order (one PLIO group each)
    output_tensors: list[str]  # graph outputs, in the model's order
    tensor_types: dict[str, Any]  # tensor name -> FixedType (graph IO and layer boundaries)
    notes: list[str] = field(default_factory=list)
    tensor_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-event shapes of the same tensors
    placement: dict = field(default_factory=dict)  # passes.placement.PlacementReport.to_json()
    resources: dict = field(default_factory=dict)  # passes.legality.peak_usage: the highest use of each resource

    @property
    def input_tensor(self) -> str:
        """The graph input of a single-input design (callers that handle several use ``input_tensors``)."""
        return _only(self.input_tensors, "input")

    @property
    def output_tensor(self) -> str:
        return _only(self.output_tensors, "output")

    def kernels_of(self, layer: str) -> list[Kernel]:
        return [k for k in self.kernels if k.layer == layer]

    def kernel(self, name: str) -> Kernel:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(name)

    def layer(self, op: str) -> OpExec:
        for layer in self.layers:
            if layer.op == op:
                return layer
        raise KeyError(op)

    def to_json(self) -> dict:
        return {
            "device": self.device, "graph": self.graph_name, "batch": self.batch,
            "inputs": self.input_tensors, "outputs": self.output_tensors,
            "tensor_types": {k: v.to_json() for k, v in sorted(self.tensor_types.items())},
            "layers": [layer.to_json() for layer in self.layers],
            "kernels": [k.to_json() for k in self.kernels],
            "shared_buffers": [s.to_json() for s in self.shared_buffers],
            "direct_links": [d.to_json() for d in self.direct_links],
            "plios": [p.to_json() for p in self.plios],
            "notes": self.notes, "placement": self.placement, "resources": self.resources,
        }


def _only(names: list[str], what: str) -> str:
    if len(names) != 1:
        raise InternalCheckError(f"plan {what}s", f"there are {len(names)} graph {what}s, the caller handles one",
                                 "report this")
    return names[0]


_DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8}
_NUMPY = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
          "uint32": np.uint32, "int64": np.int64}


def dtype_bytes(dtype: str) -> int:
    return _DTYPE_BYTES[dtype]


def numpy_dtype(dtype: str):
    return _NUMPY[dtype]
