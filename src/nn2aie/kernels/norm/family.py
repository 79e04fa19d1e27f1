"""The norm family (LayerNorm, RMSNorm) behind the common interface (kernels/family.py).

A tile normalises whole rows: its window is ``rows x slice`` with ``slice`` the row length padded to whole
16-lane vectors (padding lanes add nothing to the sums, and their gain and offset are 0). An op too tall for one
tile shares its rows out over ``pieces`` tiles (whole events, or bands of one event's rows); no cascade. The
arithmetic is ``logical.rows`` (docs/numerics.md, "LayerNorm"); templates/ holds the C++.
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
from nn2aie.kernels.norm import logical

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.norm", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)
LANES = 16
CALL_OVERHEAD_CYCLES = 40  # as the other families': "tens of cycles" per kernel call (UG1079), not calibrated
ROW_SCALAR_CYCLES = 250  # per row: the 64-bit integer square root (32 steps) and one division, not calibrated
OUTPUTS = ("int8", "uint8", "int16", "uint16")


@dataclass
class NormExec(OpExec):
    op: str
    rows: int  # rows of one tile's window per graph iteration
    width: int  # N, the row length
    slice: int  # N padded to whole vectors
    a_dtype: str
    out_dtype: str
    event_rows: int  # rows per event
    rms: bool
    zero_in: int
    eps_term: int
    f: int
    t: int
    u: int
    zero_out: int
    lo: int
    hi: int
    pieces: int = 1
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)

    family: ClassVar[str] = "norm"

    def to_json(self) -> dict:
        d = asdict(self)
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


def _s(e: OpExec) -> NormExec:
    assert isinstance(e, NormExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/norm_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/norm_l{index}.cc"


def params_path(index: int) -> str:
    return f"data/params_l{index}.h"


def param_array(p: logical.NormParams, slice_width: int) -> np.ndarray:
    """The tile's parameters: the gains G then the offsets B / 2^t, one per column (padding columns 0)."""
    out = np.zeros((2, slice_width), dtype=np.int64)
    out[0, :p.width] = p.gains
    out[1, :p.width] = p.offsets
    return out.reshape(-1)


class NormFamily(OpFamily):
    name = "norm"
    kinds = ("layernorm",)
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
        if max(abs(g) for g in p.gains) >= 1 << 31:
            raise UnsupportedQuantizationError(where, "a gamma is 2^31 or more output steps", "check the output "
                                               "quantizer's scale")
        per_event = rows_per_event(tuple(x.shape))
        n = int(x.shape[-1])
        return NormExec(op=op.name, rows=batch * per_event, width=n, slice=ceil_div(n, LANES) * LANES,
                        a_dtype=x.type.container, out_dtype=y.type.container, event_rows=per_event, rms=p.rms,
                        zero_in=p.zero_in, eps_term=p.eps_term, f=p.f, t=p.t, u=p.u, zero_out=p.zero_out, lo=p.lo,
                        hi=p.hi)

    def _bytes(self, x: NormExec, rows: int) -> int:
        window = rows * x.slice
        return 2 * window * (dtype_bytes(x.a_dtype) + dtype_bytes(x.out_dtype)) + 2 * 4 * x.slice

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
        layout = param_array(logical.params(graph, op), x.slice).astype(np.int32)
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
        buffers = [("param", 4 * int(kernel.weights.size))] + plain.port_buffers(self.ports(x, kernel), skip)
        return plain.memory_map(buffers, device, f"kernel {kernel.name} of op {x.op}")

    # -- emulation ----------------------------------------------------------------------------------------------
    def _params(self, x: NormExec, kernel: Kernel) -> logical.NormParams:
        """The algorithm's parameters as the tile holds them (gains and offsets read back from its array)."""
        arr = np.asarray(kernel.weights, dtype=np.int64).reshape(2, x.slice)
        return logical.NormParams(x.rms, x.zero_in, x.eps_term, tuple(int(v) for v in arr[0, :x.width]),
                                  tuple(int(v) for v in arr[1, :x.width]), x.f, x.t, x.u, x.zero_out, x.lo,
                                  x.hi, x.width)

    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _s(e)
        for k in kernels:
            a = io.read(k, "in0")  # [iterations * rows, slice]; columns past the row are padding
            # padding lanes have gain and offset 0, so the kernel writes clamp(z) there
            y = np.full(np.shape(a), min(max(x.zero_out, x.lo), x.hi), dtype=np.int64)
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
        # per vector: the sums pass (load, SUB, MAC, ADD: ~4 cycles), the output pass (SUB, MUL, SUB, MUL + SRS,
        # MUL + ADD + SRS, ADD, MIN/MAX, narrowing: ~10 cycles); per row the reductions and the scalar steps
        return float(CALL_OVERHEAD_CYCLES + x.rows * (vectors * 14 + 10 + ROW_SCALAR_CYCLES))

    def useful_ops(self, e: OpExec) -> int:
        x = _s(e)
        return x.rows * x.pieces * x.width

    def cost_assumptions(self) -> str:
        return ("kernels/norm: per 16-lane vector one cycle per vector instruction, per row "
                f"{ROW_SCALAR_CYCLES} cycles for the integer square root and division on the scalar unit, plus the "
                "call overhead; not calibrated")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        return int(device.fact("program_memory_runtime_bytes")) + 16 * 200  # two loops, isqrt and the division

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: NormExec, index: int, comment: str) -> dict:
        tail = x.width % LANES
        return {"idx": index, "comment": comment, "guard": f"NN2AIE_NORM_L{index}_H", "ns": f"norm_l{index}",
                "cls": f"NormL{index}", "header": header_path(index), "in0_t": plain.CXX_TYPES[x.a_dtype],
                "o_t": plain.CXX_TYPES[x.out_dtype], "rows": x.rows, "slice": x.slice, "width": x.width,
                "lanes": LANES, "rms": x.rms, "zero_in": x.zero_in, "eps_term": x.eps_term, "f": x.f, "t": x.t,
                "zero_out": x.zero_out, "lo": x.lo, "hi": x.hi, "tail_mask": (1 << tail) - 1 if tail else 0,
                "eps_bits": logical.EPS_BITS, "u": x.u}

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        x = _s(e)
        ctx = self._context(x, index, comment)
        files = {header_path(index): _ENV.get_template("norm_kernel.h.j2").render(ctx),
                 source_path(index): _ENV.get_template("norm_kernel.cc.j2").render(ctx)}
        arrays = [(f"P_{ident}", f"{ident}: gains G then offsets B / 2^{x.t} per column", k.weights)
                  for k, ident in kernels]
        files[params_path(index)] = plain.param_header(
            params_path(index), f"{'RMS' if x.rms else 'Layer'}Norm op {index} ({comment}): per column "
            f"G = round(gamma / s_y 2^{x.f}) and B / 2^{x.t}.", "int32", arrays)
        return files

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [params_path(index)]

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        n = int(kernel.weights.size)
        return KernelInstance(type_name=f"NormL{index}", ctor_args=(f"std::vector<int32>(P_{ident}, P_{ident} + {n})",),
                              params=("param",), source=source_path(index), in_ports={"in0": 0}, out_ports={"out": 0})

    def describe(self, e: OpExec, index: int) -> str:
        x = _s(e)
        return (f"{'rms' if x.rms else 'layer'}norm over rows of {x.width}, {x.a_dtype} -> {x.out_dtype}, "
                f"{x.rows * x.pieces} rows over {x.pieces} tile(s)")

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        return f"rows piece {kernel.k_start}"

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index), source_path(index), params_path(index)]

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        spec = plain.DriverSpec(f"norm_l{index}", header_path(index), source_path(index), params_path(index), 1, True)
        return plain.driver_source(spec, entries)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return plain.position(self.ports(e, kernel)[-1], element)

    # -- reporting ----------------------------------------------------------------------------------------------
    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _s(e)
        return {"op": "rmsnorm" if x.rms else "layernorm", "width": x.width, "rows": x.rows * x.pieces,
                "gain_fraction_bits": x.f, "algorithm": "docs/numerics.md#layernorm"}
