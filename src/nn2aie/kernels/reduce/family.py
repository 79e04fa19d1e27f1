"""The reduce family behind the common interface (kernels/family.py): ``cas_num`` tiles side by side, each on a
column slice (multiple of 16) of the input and output; plan.py has the tile's steps and semantics."""

from __future__ import annotations

from typing import Any

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, IllegalConfigError
from nn2aie.ir.execution import OpExec, ceil_div
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, dtype_bytes
from nn2aie.kernels import plain
from nn2aie.kernels.family import Fail, KernelInstance, NativeRun, OpFamily, PortSpec
from nn2aie.kernels.reduce import logical
from nn2aie.kernels.reduce.plan import COLUMN_ALIGN, LANES, ReduceExec, plan, run_tile
from nn2aie.kernels.requant import requant_header_file

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.reduce", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)
CALL_OVERHEAD_CYCLES = 40  # as the dense family's: "tens of cycles" per kernel call (UG1079), not calibrated


def _r(e: OpExec) -> ReduceExec:
    assert isinstance(e, ReduceExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/reduce_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/reduce_l{index}.cc"


def params_path(index: int) -> str:
    return f"data/params_l{index}.h"


class ReduceFamily(OpFamily):
    name = "reduce"
    kinds = ("reduce",)
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
        return plan(graph, op, device, batch)

    def _buffers(self, x: ReduceExec, slice_width: int) -> int:
        table = len(x.table) * dtype_bytes(x.out_dtype)
        return slice_width * (2 * x.rows_in * dtype_bytes(x.a_dtype) + 2 * x.rows_out * dtype_bytes(x.out_dtype)) \
            + table

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        x = _r(e)
        budget = plain.tile_budget(device)
        choices = [int(override["cas_num"])] if override and "cas_num" in override else \
            range(1, ceil_div(x.width, COLUMN_ALIGN) + 1)
        for parts in choices:
            slices = plain.column_slices(x.width, parts, COLUMN_ALIGN)
            if slices is None:
                raise IllegalConfigError(f"override for layer {x.op}", f"cas_num {parts} leaves a tile without "
                                         f"columns ({x.width} columns in slices of {COLUMN_ALIGN})",
                                         f"use at most {ceil_div(x.width, COLUMN_ALIGN)} tiles")
            if self._buffers(x, slices[0][1]) <= budget:
                x.cas_num, x.slice = parts, slices[0][1]
                x.override = bool(override and "cas_num" in override)
                return
        raise DoesNotFitError(f"op {x.op}", f"the input rows of one column slice ({x.rows_in} rows) do not fit a "
                              "tile's data memory", "use a smaller batch, or more tiles (cas_num)")

    def grow(self, e: OpExec, device: Device) -> dict | None:
        x = _r(e)
        if x.cas_num * 2 <= device.compute_rows and plain.column_slices(x.width, x.cas_num * 2, COLUMN_ALIGN):
            return {"cas_num": x.cas_num * 2}
        return None

    # -- physical -----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        x = _r(e)
        table = np.asarray(x.table, dtype=np.dtype(x.out_dtype))
        kernels = []
        for chain in range(x.cas_num):
            k = Kernel(name=f"{layer_id}_c{chain}", layer=op.name, chain=chain, position=0, role="single",
                       col=-1, row=-1, k_start=0, n_start=chain * x.slice, weights=table, bias=None,
                       family=self.name)
            k.memory = self.memory_map(x, k, device, frozenset())
            kernels.append(k)
        return kernels

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        x = _r(e)
        return [PortSpec("in0", "in", 0, kernel.n_start, x.slice, None, x.a_dtype, x.rows_in),
                PortSpec("out", "out", 0, kernel.n_start, x.slice, None, x.out_dtype, x.rows_out)]

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple[int, int]]:
        x = _r(e)
        return [(c * x.slice, x.slice) for c in range(x.cas_num)]

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        x = _r(e)
        buffers = plain.port_buffers(self.ports(x, kernel), skip)
        if x.table:
            buffers.insert(0, ("param", len(x.table) * dtype_bytes(x.out_dtype)))
        return plain.memory_map(buffers, device, f"kernel {kernel.name} of op {x.op}")

    # -- emulation ----------------------------------------------------------------------------------------------
    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _r(e)
        for k in kernels:
            a = io.read(k, "in0")
            y = run_tile(x, a, io.iterations)
            if io.trace is not None:
                plain.record(io.trace, k, [(self.ports(x, k)[0], a)], y, io.iterations)
            io.write(k, "out", y)

    # -- cost and resources -------------------------------------------------------------------------------------
    def max_tile_cycles(self, e: OpExec) -> float:
        x = _r(e)
        vectors = x.rows_out * (x.slice // LANES)
        per_output = x.red + 2 + (LANES if x.table else 0)  # a load-and-add per row, the SRS + store (or lookups)
        if x.requant is not None:  # the multiplier's instructions instead of the SRS (kernels/requant.py count)
            per_output += x.requant.cycles_per_vector(LANES)
        return float(CALL_OVERHEAD_CYCLES + vectors * per_output)

    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        return self.max_tile_cycles(e)

    def useful_ops(self, e: OpExec) -> int:
        x = _r(e)
        return x.rows_in * x.width

    def cost_assumptions(self) -> str:
        return ("kernels/reduce: one 16-lane load-and-accumulate per cycle, two cycles of SRS and store per output "
                "vector, one cycle per table lookup, plus the call overhead; not calibrated")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        return int(device.fact("program_memory_runtime_bytes")) + 16 * 72  # three loops, one pipelined: ~72 bundles

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: ReduceExec, index: int, comment: str) -> dict:
        ctx = {
            "idx": index, "comment": comment, "kind": x.kind, "guard": f"NN2AIE_REDUCE_L{index}_H",
            "ns": f"reduce_l{index}", "cls": f"ReduceL{index}", "header": header_path(index),
            "in0_t": plain.CXX_TYPES[x.a_dtype], "o_t": plain.CXX_TYPES[x.out_dtype], "acc": x.acc,
            "batch": x.batch, "outer": x.outer, "red": x.red, "inner": x.inner, "slice": x.slice, "lanes": LANES,
            "has_table": bool(x.table), "table_min": x.table_min, "table_size": len(x.table), "up": x.up,
        }
        if x.requant is not None:
            rq = x.requant
            at, dt = rq.correction_planes() if rq.corrections else (np.zeros((0, 1)), np.zeros((0, 1)))
            ctx |= {"requant": {"m": int(rq.multipliers[0]), "b": int(rq.offsets[0]), "offset_shift": rq.offset_shift,
                                "shift": rq.shift, "lo": rq.lo, "hi": rq.hi, "rounding": rq.rounding,
                                "fixes": [(int(a[0]), int(d[0])) for a, d in zip(at, dt, strict=True)],
                                "reason": rq.reason.replace("\n", " ")}}
        else:
            ctx["requant"] = None
        if not x.table and x.requant is None:
            epi = x.epi()
            bits, signed = plain.BITS[x.out_dtype], plain.is_signed(x.out_dtype)
            c_lo = -(1 << (bits - 1)) if signed else 0
            c_hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
            ctx |= {"rounding": epi.rounding, "saturation": epi.saturation, "shift": epi.shift,
                    "apply_lo": epi.clamp_lo > c_lo, "apply_hi": epi.clamp_hi < c_hi, "clamp_lo": epi.clamp_lo,
                    "clamp_hi": epi.clamp_hi, "wrap_bits": epi.wrap_bits, "signed": signed,
                    "wrap_shift": bits - epi.wrap_bits}
        return ctx

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        x = _r(e)
        ctx = self._context(x, index, comment)
        files = {header_path(index): _ENV.get_template("reduce_kernel.h.j2").render(ctx),
                 source_path(index): _ENV.get_template("reduce_kernel.cc.j2").render(ctx), **self._requant_header(x)}
        if x.table:
            files[params_path(index)] = plain.param_header(
                params_path(index), f"Reduce op {index} ({comment}): output code of each possible sum.",
                x.out_dtype, [(f"P_{ident}", f"{ident}: sums {x.table_min}..{x.table_min + len(x.table) - 1}",
                               k.weights) for k, ident in kernels])
        return files

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def _requant_header(self, x: ReduceExec) -> dict[str, str]:
        return requant_header_file() if x.requant is not None else {}

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [params_path(index)] if _r(e).table else []

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        x = _r(e)
        args: tuple[str, ...] = ()
        params: tuple[str, ...] = ()
        if x.table:
            args = (f"std::vector<{plain.CXX_TYPES[x.out_dtype]}>(P_{ident}, P_{ident} + {len(x.table)})",)
            params = ("param",)
        return KernelInstance(type_name=f"ReduceL{index}", ctor_args=args, params=params,
                              source=source_path(index), in_ports={"in0": 0}, out_ports={"out": 0})

    def describe(self, e: OpExec, index: int) -> str:
        x = _r(e)
        how = "table" if x.table else f"{x.requant.kind} requantisation" if x.requant is not None else \
            f"shift {x.epi().shift} ({x.epi().rounding}, {x.epi().saturation})"
        return (f"reduce {x.kind} of {x.red} rows ({x.outer} x [{x.red}] x {x.inner} per event), {x.a_dtype} -> "
                f"{x.out_dtype}, {x.acc}, {how}, {x.width} columns over {x.cas_num} tile(s) of {x.slice}")

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        return f"columns [{kernel.n_start}, {kernel.n_start + _r(e).slice})"

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index), source_path(index)] + self.param_headers(e, index) + list(
            self._requant_header(_r(e)))

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        x = _r(e)
        spec = plain.DriverSpec(f"reduce_l{index}", header_path(index), source_path(index),
                                params_path(index) if x.table else None, 1, bool(x.table))
        return plain.driver_source(spec, entries)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return plain.position(self.ports(e, kernel)[-1], element)

    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _r(e)
        out = {"op": x.kind, "reduced": x.red, "width": x.width, "slice": x.slice, "acc": x.acc,
               "method": "table" if x.table else "multiplier" if x.requant is not None else "srs"}
        if x.requant is not None:
            return out | {"requant": x.requant.to_json()}
        if not x.table:
            out |= {"shift": x.epi().shift, "rounding": x.epi().rounding, "saturation": x.epi().saturation}
        return out
