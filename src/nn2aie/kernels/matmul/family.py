"""The matmul family behind the common interface (kernels/family.py): products of two activations.

A tile computes whole matrices: its windows are ``g`` matrices of ``a`` (``g*M`` rows of ``KP`` columns, ``K``
padded to 32-bit words) and of ``b`` (``g*K`` rows of ``NP`` columns, ``N`` padded to 16-lane vectors). The
iteration's ``batch * L`` matrices are shared out over ``pieces`` tiles (whole events, or groups of matrices of
one event: attention heads over tiles); no cascade. Per output vector the tile accumulates ``K`` products of one
``a`` element (broadcast) with a 16-lane row of ``b`` exactly in acc32, then one SRS epilogue (kernels/epilogue.py)
-- 16 MACs per cycle, a first kernel that is exact and simple rather than at the ``aie::mmul`` peak.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, IllegalConfigError, UnsupportedQuantizationError
from nn2aie.ir.execution import OpExec, ceil_div
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, SpatialView, dtype_bytes
from nn2aie.kernels import plain
from nn2aie.kernels.epilogue import Epilogue, apply_epilogue, plan_epilogue
from nn2aie.kernels.family import Fail, KernelInstance, NativeRun, OpFamily, PortSpec
from nn2aie.kernels.matmul import logical

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.matmul", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)
LANES = 16
CALL_OVERHEAD_CYCLES = 40  # as the other families': "tens of cycles" per kernel call (UG1079), not calibrated
OUTPUTS = ("int8", "uint8", "int16", "uint16")


@dataclass
class MatmulExec(OpExec):
    op: str
    mats: int  # matrices per event (prod of the leading axes)
    batch: int
    m: int
    k: int
    n: int
    kp: int  # K padded to whole 32-bit words of a
    np_: int  # N padded to whole 16-lane vectors
    a_dtype: str
    b_dtype: str
    out_dtype: str
    acc: str
    epilogue: dict
    group: int = 0  # matrices per tile
    pieces: int = 1
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)

    family: ClassVar[str] = "matmul"

    def epi(self) -> Epilogue:
        return Epilogue(**self.epilogue)

    def to_json(self) -> dict:
        d = asdict(self)
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


def _m(e: OpExec) -> MatmulExec:
    assert isinstance(e, MatmulExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/matmul_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/matmul_l{index}.cc"


class MatmulFamily(OpFamily):
    name = "matmul"
    kinds = ("matmul",)
    override_keys = frozenset({"cas_num"})

    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        logical.verify(graph, op, fail)

    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return logical.evaluate(graph, op, inputs)

    # -- planning -----------------------------------------------------------------------------------------------
    def validate_override(self, layer: str, override: dict) -> None:
        super().validate_override(layer, override)
        plain.validate_cas_num(layer, override)

    def plan(self, graph: Graph, op: Op, device: Device, batch: int, override: dict) -> OpExec:
        a, b, y = (graph.tensor(t) for t in (*op.inputs, op.outputs[0]))
        where = f"op {op.name} output tensor {y.origin or y.name}"
        if y.type.container not in OUTPUTS:
            raise UnsupportedQuantizationError(where, f"{y.type.width}-bit output codes", "quantize to 16 bits or less")
        bound = logical.acc_bound(graph, op)
        if bound >= 1 << 31:
            raise UnsupportedQuantizationError(where, f"the sums reach {bound}, beyond a 32-bit accumulator lane",
                                               "use a shorter inner dimension or narrower operands")
        epi = plan_epilogue(y.type, logical.acc_frac(graph, op), "acc32", False, bound, device, where)
        m, k, n = int(a.shape[-2]), int(a.shape[-1]), int(b.shape[-1])
        return MatmulExec(op=op.name, mats=math.prod(a.shape[:-2]), batch=batch, m=m, k=k, n=n,
                          kp=plain.word_padded_width(k, a.type.container), np_=ceil_div(n, LANES) * LANES,
                          a_dtype=a.type.container, b_dtype=b.type.container, out_dtype=y.type.container,
                          acc="acc32", epilogue=asdict(epi))

    def _bytes(self, x: MatmulExec, group: int) -> int:
        return 2 * group * (x.m * x.kp * dtype_bytes(x.a_dtype) + x.k * x.np_ * dtype_bytes(x.b_dtype)
                            + x.m * x.np_ * dtype_bytes(x.out_dtype))

    def _shares(self, x: MatmulExec, pieces: int) -> bool:
        """Whether ``pieces`` tiles can take equal groups of matrices: every port's rows whole events or bands."""
        total = x.batch * x.mats
        if total % pieces:
            return False
        return pieces == 1 or all(plain.piece_rows(x.batch * x.mats * rows, x.mats * rows, pieces) is not None
                                  for rows in (x.m, x.k))

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        x = _m(e)
        budget = plain.tile_budget(device)
        total = x.batch * x.mats
        forced = int(override["cas_num"]) if override and "cas_num" in override else None
        channels = plain.row_pieces_limit(device)
        for pieces in [forced] if forced else range(1, channels + 1):
            if not self._shares(x, pieces):
                if forced:
                    raise IllegalConfigError(f"override for layer {x.op}", f"cas_num {pieces} does not share the "
                                             f"{total} matrices of an iteration into equal groups whose rows are "
                                             "whole events or bands of multiples of 4 rows",
                                             "use a divisor of batch x heads, e.g. 2")
                continue
            group = total // pieces
            if self._bytes(x, group) <= budget:
                x.group, x.pieces, x.cas_num, x.override = group, pieces, pieces, forced is not None
                return
            if forced:
                raise DoesNotFitError(f"op {x.op}", f"{pieces} tile(s) of {group} matrices need "
                                      f"{self._bytes(x, group)} B, a tile has {budget} B free",
                                      "use more tiles (cas_num) or a smaller batch")
        raise DoesNotFitError(f"op {x.op}", f"{total} matrices of {x.m}x{x.k} @ {x.k}x{x.n} do not fit a tile, nor "
                              f"shared out over up to {channels} tiles", "use a smaller batch")

    def grow(self, e: OpExec, device: Device) -> dict | None:
        x = _m(e)
        for pieces in range(x.pieces + 1, min(2 * x.pieces, device.compute_rows) + 1):
            if self._shares(x, pieces):
                return {"cas_num": pieces}
        return None

    # -- physical -----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        x = _m(e)
        kernels = []
        for piece in range(x.pieces):
            k = Kernel(name=f"{layer_id}_c{piece}", layer=op.name, chain=piece, position=0, role="single",
                       col=-1, row=-1, k_start=piece, n_start=0, weights=np.zeros(0, dtype=np.int8), bias=None,
                       family=self.name)
            k.memory = self.memory_map(x, k, device, frozenset())
            kernels.append(k)
        return kernels

    def _view(self, x: MatmulExec, rows: int, piece: int) -> SpatialView | None:
        return plain.piece_view(x.group * rows, x.mats * rows, x.pieces, piece)

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        x = _m(e)
        p = kernel.k_start
        return [PortSpec("in0", "in", 0, 0, x.kp, None, x.a_dtype, x.group * x.m, self._view(x, x.m, p)),
                PortSpec("in1", "in", 1, 0, x.np_, None, x.b_dtype, x.group * x.k, self._view(x, x.k, p)),
                PortSpec("out", "out", 0, 0, x.np_, None, x.out_dtype, x.group * x.m, self._view(x, x.m, p))]

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple]:
        x = _m(e)
        rows, width = (x.k, x.np_) if direction == "in" and index == 1 else (x.m, x.kp if direction == "in" else
                                                                            x.np_)
        if x.pieces == 1:
            return [(0, width)]
        views = [self._view(x, rows, p) for p in range(x.pieces)]
        return [(0, width, p, v.events if v is not None else None) for p, v in enumerate(views)]

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        x = _m(e)
        return plain.memory_map(plain.port_buffers(self.ports(x, kernel), skip), device,
                                f"kernel {kernel.name} of op {x.op}")

    # -- emulation ----------------------------------------------------------------------------------------------
    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _m(e)
        bits, signed = plain.BITS[x.out_dtype], plain.is_signed(x.out_dtype)
        for kern in kernels:
            a = np.asarray(io.read(kern, "in0"), dtype=np.int64)  # [iterations * group * M, KP]
            b = np.asarray(io.read(kern, "in1"), dtype=np.int64)  # [iterations * group * K, NP]
            am = a.reshape(-1, x.m, x.kp)[:, :, :x.k]
            bm = b.reshape(-1, x.k, x.np_)
            y = apply_epilogue(np.matmul(am, bm), x.epi(), bits, signed).reshape(-1, x.np_)
            if io.trace is not None:
                ports = self.ports(x, kern)
                plain.record(io.trace, kern, [(ports[0], a), (ports[1], b)], y, io.iterations)
            io.write(kern, "out", y)

    # -- cost and resources -------------------------------------------------------------------------------------
    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        return self.max_tile_cycles(e)

    def max_tile_cycles(self, e: OpExec) -> float:
        x = _m(e)
        # per 16-lane output vector: K broadcast MACs (one per cycle, loads in parallel) and ~4 for the epilogue
        return float(CALL_OVERHEAD_CYCLES + x.group * x.m * (x.np_ // LANES) * (x.k + 4))

    def useful_ops(self, e: OpExec) -> int:
        x = _m(e)
        return x.batch * x.mats * x.m * x.k * x.n

    def peak_ops_per_cycle(self, e: OpExec) -> int:
        return LANES

    def cost_assumptions(self) -> str:
        return ("kernels/matmul: one 16-lane broadcast multiply-accumulate per cycle (a row of b times one element "
                "of a), about 4 cycles of epilogue per output vector, plus the call overhead; not calibrated")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        return int(device.fact("program_memory_runtime_bytes")) + 16 * 80

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: MatmulExec, index: int, comment: str) -> dict:
        epi = x.epi()
        return {"idx": index, "comment": comment, "guard": f"NN2AIE_MATMUL_L{index}_H", "ns": f"matmul_l{index}",
                "cls": f"MatmulL{index}", "header": header_path(index), "in0_t": plain.CXX_TYPES[x.a_dtype],
                "in1_t": plain.CXX_TYPES[x.b_dtype], "o_t": plain.CXX_TYPES[x.out_dtype], "group": x.group,
                "m": x.m, "k": x.k, "n": x.n, "kp": x.kp, "np": x.np_, "lanes": LANES, "rounding": epi.rounding,
                "saturation": epi.saturation, "finish": plain.epilogue_args(epi, x.out_dtype)}

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        ctx = self._context(_m(e), index, comment)
        return {header_path(index): _ENV.get_template("matmul_kernel.h.j2").render(ctx),
                source_path(index): _ENV.get_template("matmul_kernel.cc.j2").render(ctx)}

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        return KernelInstance(type_name=f"MatmulL{index}", ctor_args=(), params=(), source=source_path(index),
                              in_ports={"in0": 0, "in1": 1}, out_ports={"out": 0})

    def describe(self, e: OpExec, index: int) -> str:
        x = _m(e)
        return (f"matmul of activations, {x.mats} x [{x.m}x{x.k}] @ [{x.k}x{x.n}] per event, {x.a_dtype} x "
                f"{x.b_dtype} -> {x.out_dtype}, {x.pieces} tile(s) of {x.group} matrices")

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        return f"matrices piece {kernel.k_start}"

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index), source_path(index)]

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        spec = plain.DriverSpec(f"matmul_l{index}", header_path(index), source_path(index), None, 2, False)
        return plain.driver_source(spec, entries)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return plain.position(self.ports(e, kernel)[-1], element)

    # -- reporting ----------------------------------------------------------------------------------------------
    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _m(e)
        return {"op": "matmul", "matrices": x.mats, "m": x.m, "k": x.k, "n": x.n, "acc": x.acc,
                "shift": x.epi().shift, "rounding": x.epi().rounding, "saturation": x.epi().saturation}

