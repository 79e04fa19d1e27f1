"""The softmax family behind the common interface (kernels/family.py).

A tile normalises whole rows: its window is ``rows x slice`` with ``slice`` the row length padded to whole
16-lane vectors (the padding lanes are masked out of the maximum and the sum). An op too tall for one tile shares
its rows out over ``pieces`` tiles (whole events, or bands of one event's rows); no cascade. The arithmetic is
``logical.rows`` (docs/numerics.md, "Softmax"); templates/ holds the C++.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.execution import OpExec, ceil_div, rows_per_event
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, dtype_bytes
from nn2aie.kernels import plain
from nn2aie.kernels.family import Fail, KernelInstance, NativeRun, OpFamily, PortSpec
from nn2aie.kernels.softmax import logical

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.softmax", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)
LANES = 16
CALL_OVERHEAD_CYCLES = 40  # as the other families': "tens of cycles" per kernel call (UG1079), not calibrated
DIVISION_CYCLES = 70  # one 64-bit integer division per row on the scalar unit (a software routine), not calibrated
LUT_GROUP = 4  # int32 values per 128-bit group of aie::lut<4, int32> (UG1603 "Lookup Tables")
OUTPUTS = ("int8", "uint8", "int16", "uint16")


@dataclass
class SoftmaxExec(OpExec):
    op: str
    rows: int  # rows of one tile's window per graph iteration
    width: int  # N, the row length
    slice: int  # N padded to whole vectors
    a_dtype: str
    out_dtype: str
    event_rows: int  # rows per event
    entries: int  # D, the exp table's entries
    q: int
    c: int
    shift2: int
    zero_point: int
    lo: int
    hi: int
    pieces: int = 1
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)

    family: ClassVar[str] = "softmax"

    def to_json(self) -> dict:
        d = asdict(self)
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


def _s(e: OpExec) -> SoftmaxExec:
    assert isinstance(e, SoftmaxExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/softmax_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/softmax_l{index}.cc"


def params_path(index: int) -> str:
    return f"data/params_l{index}.h"


def table_layout(table: tuple[int, ...]) -> np.ndarray:
    """The exp table as ``aie::lut<4, int32>`` wants each of its two copies: entries padded (with the last, 0) to
    whole 128-bit groups of 4 int32 values, each group stored twice in a row (UG1603)."""
    values = np.asarray(table, dtype=np.int64)
    padded = np.concatenate([values, np.zeros(-values.size % LUT_GROUP, dtype=np.int64)])
    groups = padded.reshape(-1, LUT_GROUP)
    return np.concatenate([groups, groups], axis=1).reshape(-1)


class SoftmaxFamily(OpFamily):
    name = "softmax"
    kinds = ("softmax",)
    override_keys = frozenset({"cas_num"})

    # -- logical ------------------------------------------------------------------------------------------------
    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        logical.verify(graph, op, fail)

    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return logical.evaluate(graph, op, inputs)

    # -- planning -----------------------------------------------------------------------------------------------
    def validate_override(self, layer: str, override: dict) -> None:
        super().validate_override(layer, override)
        plain.validate_cas_num(layer, override)

    def plan(self, graph: Graph, op: Op, device: Device, batch: int, override: dict) -> OpExec:
        x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
        where = f"op {op.name} output tensor {y.origin or y.name}"
        if y.type.container not in OUTPUTS:
            raise UnsupportedQuantizationError(where, f"{y.type.width}-bit output codes", "quantize to 16 bits or less")
        p = logical.params(graph, op)
        per_event = rows_per_event(tuple(x.shape))
        n = int(x.shape[-1])
        return SoftmaxExec(op=op.name, rows=batch * per_event, width=n, slice=ceil_div(n, LANES) * LANES,
                           a_dtype=x.type.container, out_dtype=y.type.container, event_rows=per_event,
                           entries=len(p.table), q=p.q, c=p.c, shift2=p.shift2, zero_point=p.zero_point, lo=p.lo,
                           hi=p.hi)

    def _bytes(self, x: SoftmaxExec, rows: int) -> int:
        window = rows * x.slice
        return 2 * window * (dtype_bytes(x.a_dtype) + dtype_bytes(x.out_dtype)) + 2 * 4 * table_layout(
            (0,) * x.entries).size

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        x = _s(e)
        x.rows, x.pieces = plain.share_rows(x.op, x.rows, x.event_rows, x.slice, lambda rows: self._bytes(x, rows),
                                            device, override)
        x.cas_num, x.override = x.pieces, bool(override and "cas_num" in override)

    def grow(self, e: OpExec, device: Device) -> dict | None:
        x = _s(e)
        return plain.grow_rows(x.rows, x.pieces, x.event_rows, device)

    # -- physical -----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        x = _s(e)
        layout = table_layout(logical.params(graph, op).table).astype(np.int32)
        kernels = []
        for piece in range(x.pieces):
            k = Kernel(name=f"{layer_id}_c{piece}", layer=op.name, chain=piece, position=0, role="single",
                       col=-1, row=-1, k_start=piece, n_start=0, weights=layout, bias=None, family=self.name)
            k.memory = self.memory_map(x, k, device, frozenset())
            kernels.append(k)
        return kernels

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        x = _s(e)
        return plain.row_ports(x.rows, x.event_rows, x.pieces, kernel.k_start, x.slice, x.a_dtype, x.out_dtype)

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple]:
        x = _s(e)
        return plain.row_port_slices(x.rows, x.event_rows, x.pieces, x.slice)

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        x = _s(e)
        size = 4 * int(kernel.weights.size)
        buffers = [("lut_ab", size), ("lut_cd", size)] + plain.port_buffers(self.ports(x, kernel), skip)
        return plain.memory_map(buffers, device, f"kernel {kernel.name} of op {x.op}")

    # -- emulation ----------------------------------------------------------------------------------------------
    def _params(self, x: SoftmaxExec, kernel: Kernel) -> logical.SoftmaxParams:
        """The algorithm's parameters as the tile holds them (the table read back through its layout)."""
        groups = np.asarray(kernel.weights, dtype=np.int64).reshape(-1, 2 * LUT_GROUP)[:, :LUT_GROUP]
        table = tuple(int(v) for v in groups.reshape(-1)[:x.entries])
        return logical.SoftmaxParams(table, x.q, x.c, x.shift2, x.zero_point, x.lo, x.hi, x.width)

    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _s(e)
        for k in kernels:
            a = io.read(k, "in0")  # [iterations * rows, slice]; columns past the row are padding
            # padding lanes have t = 0, so the kernel writes clamp(z) there
            y = np.full(np.shape(a), min(max(x.zero_point, x.lo), x.hi), dtype=np.int64)
            y[:, :x.width] = logical.rows(a[:, :x.width], self._params(x, k))
            if io.trace is not None:
                plain.record(io.trace, k, [(self.ports(x, k)[0], a)], y, io.iterations)
            io.write(k, "out", y)

    # -- cost and resources -------------------------------------------------------------------------------------
    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        return self.max_tile_cycles(e)

    def max_tile_cycles(self, e: OpExec) -> float:
        x = _s(e)
        vectors = x.slice // LANES
        # per vector: max pass 1 (load, MAX), sum pass 2 (SUB, 4 cycles of lookups at 4 per cycle, ADD), output
        # pass 3 (the lookups again, MUL, SRS, MUL, SRS, ADD, MIN/MAX, narrowing): about 1 + 6 + 10 cycles; per row
        # the reductions (~8 cycles) and the division
        return float(CALL_OVERHEAD_CYCLES + x.rows * (vectors * 17 + 8 + DIVISION_CYCLES))

    def useful_ops(self, e: OpExec) -> int:
        x = _s(e)
        return x.rows * x.pieces * x.width

    def cost_assumptions(self) -> str:
        return ("kernels/softmax: per 16-lane vector one cycle per vector instruction and 4 table lookups per "
                f"cycle, per row {DIVISION_CYCLES} cycles for the 64-bit division on the scalar unit, plus the "
                "call overhead; not calibrated")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        return int(device.fact("program_memory_runtime_bytes")) + 16 * 160  # three loops and the division routine

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: SoftmaxExec, index: int, comment: str) -> dict:
        tail = x.width % LANES
        return {"idx": index, "comment": comment, "guard": f"NN2AIE_SOFTMAX_L{index}_H", "ns": f"softmax_l{index}",
                "cls": f"SoftmaxL{index}", "header": header_path(index), "in0_t": plain.CXX_TYPES[x.a_dtype],
                "o_t": plain.CXX_TYPES[x.out_dtype], "rows": x.rows, "slice": x.slice, "width": x.width,
                "lanes": LANES, "entries": x.entries, "lut_size": table_layout((0,) * x.entries).size, "q": x.q,
                "c": x.c, "shift2": x.shift2, "zero_point": x.zero_point, "lo": x.lo, "hi": x.hi,
                "tail_mask": (1 << tail) - 1 if tail else 0, "in_min": -(1 << 7) if x.a_dtype == "int8" else 0}

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        x = _s(e)
        ctx = self._context(x, index, comment)
        files = {header_path(index): _ENV.get_template("softmax_kernel.h.j2").render(ctx),
                 source_path(index): _ENV.get_template("softmax_kernel.cc.j2").render(ctx)}
        arrays = []
        for k, ident in kernels:
            for copy in ("ab", "cd"):
                arrays.append((f"P_{ident}_{copy}", f"{ident}: copy {copy} of the exp table", k.weights))
        files[params_path(index)] = plain.param_header(
            params_path(index), f"Softmax op {index} ({comment}): T[d] = round(2**{x.q} exp(-d s_x)), "
            f"{x.entries} entries in the aie::lut<4, int32> layout (128-bit groups stored twice).", "int32", arrays)
        return files

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [params_path(index)]

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        n = int(kernel.weights.size)
        args = tuple(f"std::vector<int32>(P_{ident}_{c}, P_{ident}_{c} + {n})" for c in ("ab", "cd"))
        return KernelInstance(type_name=f"SoftmaxL{index}", ctor_args=args, params=("lut_ab", "lut_cd"),
                              source=source_path(index), in_ports={"in0": 0}, out_ports={"out": 0})

    def describe(self, e: OpExec, index: int) -> str:
        x = _s(e)
        return (f"softmax over rows of {x.width}, {x.a_dtype} -> {x.out_dtype}, exp table of {x.entries} entries "
                f"(2**{x.q}), {x.rows * x.pieces} rows over {x.pieces} tile(s)")

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        return f"rows piece {kernel.k_start}"

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index), source_path(index), params_path(index)]

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        spec = plain.DriverSpec(f"softmax_l{index}", header_path(index), source_path(index), params_path(index), 1,
                                True, (("int32", "L::LUT_SIZE"), ("int32", "L::LUT_SIZE")))
        return plain.driver_source(spec, entries)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return plain.position(self.ports(e, kernel)[-1], element)

    # -- reporting ----------------------------------------------------------------------------------------------
    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _s(e)
        return {"op": "softmax", "width": x.width, "rows": x.rows * x.pieces, "table_entries": x.entries,
                "table_fraction_bits": x.q, "algorithm": "docs/numerics.md#softmax"}
