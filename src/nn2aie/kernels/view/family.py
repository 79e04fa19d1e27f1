"""The view family behind the common interface (kernels/family.py): one copy tile per view op (plan.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, UnsupportedOpError
from nn2aie.ir.execution import OpExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, dtype_bytes
from nn2aie.kernels import plain
from nn2aie.kernels.family import Fail, KernelInstance, NativeRun, OpFamily, PortSpec
from nn2aie.kernels.view import logical
from nn2aie.kernels.view.plan import (
    LANES,
    ViewExec,
    column_alias,
    column_window,
    copy_only,
    plan,
    run_tile,
    too_large,
)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.view", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)
CALL_OVERHEAD_CYCLES = 40  # as the dense family's: "tens of cycles" per kernel call (UG1079), not calibrated


def _v(e: OpExec) -> ViewExec:
    assert isinstance(e, ViewExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/view_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/view_l{index}.cc"


def params_path(index: int) -> str:
    return f"data/params_l{index}.h"


class ViewFamily(OpFamily):
    name = "view"
    kinds = ("reshape", "transpose", "concat", "slice")

    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        logical.verify(graph, op, fail)

    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return logical.evaluate(graph, op, inputs)

    # -- planning -----------------------------------------------------------------------------------------------
    def plan(self, graph: Graph, op: Op, device: Device, batch: int, override: dict) -> OpExec:
        return plan(graph, op, batch)

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        x = _v(e)
        need = sum(b for _, b in self._buffers(x))
        budget = device.data_memory_bytes - int(device.fact("stack_bytes_default")) - \
            int(device.fact("heap_bytes_default")) - 8 * plain.ALIGN
        if need > budget:
            raise DoesNotFitError(f"op {x.op} ({x.kind})", f"its copy tile needs {need} B of buffers, a tile has "
                                  f"{budget} B free", "use a smaller batch")

    def column_alias(self, graph: Graph, op: Op, e: OpExec) -> list[int] | None:
        return column_alias(graph, op)

    def column_window(self, graph: Graph, op: Op, e: OpExec) -> int | None:
        return column_window(graph, op)

    def fuse_input(self, graph: Graph, op: Op, e: OpExec, tensor: str, producer: Op, pe: OpExec,
                   reads: list[str]) -> list[str] | None:
        """A copy view feeding this view (and nothing else) runs inside this view's copy: the tile reads the
        producer's inputs and its table goes through both views, so the data moves once. Not into a view that
        costs no tile on its own (a concat or rename: its producers write in place)."""
        x = _v(e)
        if not isinstance(pe, ViewExec) or pe.resolved or not (copy_only(graph, producer) or pe.reads) or \
                column_alias(graph, op) is not None:
            return None
        new_reads = []
        for t in reads:
            new_reads += (pe.reads or list(producer.inputs)) if t == tensor else [t]
        if len(set(new_reads)) != len(new_reads):  # one tensor twice in the window: keep the views apart
            return None
        try:
            fused = plan(graph, op, x.batch, new_reads)
        except UnsupportedOpError:  # the joined table would not fit a tile
            return None
        fused.fused = x.fused + pe.fused + [producer.name]
        fused.notes = x.notes + [f"fuses {producer.name} ({producer.kind}): one copy for both views"]
        for f in dataclasses.fields(x):
            setattr(x, f.name, getattr(fused, f.name))
        pe.resolved, pe.cas_length, pe.cas_num, pe.fused_into = True, 0, 0, op.name
        pe.notes.append(f"fused into {op.name}'s copy tile")
        return new_reads

    def resolve_alias(self, e: OpExec) -> None:
        x = _v(e)
        x.resolved, x.cas_length, x.cas_num = True, 0, 0
        x.notes.append("resolved into memory-tile descriptors: the producers write their columns of the output"
                       if x.kind != "slice" else
                       "resolved into memory-tile descriptors: the readers read their columns of the input")

    def _buffers(self, x: ViewExec) -> list[tuple[str, int]]:
        b = dtype_bytes(x.dtype)
        out = [] if x.copy else [("param", 4 * len(x.table))]
        for i in range(len(x.in_rows)):
            out += [(f"in{i}_ping", x.batch * x.in_size(i) * b), (f"in{i}_pong", x.batch * x.in_size(i) * b)]
        return out + [("out_ping", x.batch * x.out_size * b), ("out_pong", x.batch * x.out_size * b)]

    # -- physical -----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        x = _v(e)
        if x.resolved:
            return []
        if not x.copy and not x.table:
            raise too_large(op, x.out_rows * x.out_width)
        table = np.zeros(0, dtype=np.int32) if x.copy else np.asarray(x.table, dtype=np.int32)
        k = Kernel(name=f"{layer_id}_c0", layer=op.name, chain=0, position=0, role="single", col=-1, row=-1,
                   k_start=0, n_start=0, weights=table, bias=None, family=self.name)
        k.memory = self.memory_map(x, k, device, frozenset())
        return [k]

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        x = _v(e)
        out = [PortSpec(f"in{i}", "in", i, 0, x.in_widths[i], None, x.dtype, x.batch * x.in_rows[i])
               for i in range(len(x.in_rows))]
        return out + [PortSpec("out", "out", 0, 0, x.out_width, None, x.dtype, x.batch * x.out_rows)]

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple[int, int]]:
        x = _v(e)
        return [(0, x.out_width if direction == "out" else x.in_widths[index])]

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        x = _v(e)
        return plain.memory_map([b for b in self._buffers(x) if b[0] not in skip], device,
                                f"kernel {kernel.name} of op {x.op}")

    # -- emulation ----------------------------------------------------------------------------------------------
    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _v(e)
        (k,) = kernels
        ports = self.ports(x, k)
        mats = [io.read(k, f"in{i}") for i in range(len(x.in_rows))]
        y = run_tile(x, mats, io.iterations)
        if io.trace is not None:
            plain.record(io.trace, k, list(zip(ports, mats, strict=False)), y, io.iterations)
        io.write(k, "out", y)

    # -- cost and resources -------------------------------------------------------------------------------------
    def max_tile_cycles(self, e: OpExec) -> float:
        x = _v(e)
        moved = x.batch * x.out_size
        per = 1 / LANES if x.copy else 1.0  # a vector copy, or one element read and written per cycle
        return float(CALL_OVERHEAD_CYCLES + moved * per)

    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        return self.max_tile_cycles(e)

    def cost_assumptions(self) -> str:
        return ("kernels/view: a copy moves one 16-element vector per cycle, a gather one element per cycle, plus "
                "the call overhead; not calibrated")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        return int(device.fact("program_memory_runtime_bytes")) + 16 * (48 + 8 * len(_v(e).in_rows))

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: ViewExec, index: int, comment: str) -> dict:
        offsets, off = [], 0
        for i in range(len(x.in_rows)):
            offsets.append(off)
            off += x.in_size(i)
        return {"idx": index, "comment": comment, "kind": x.kind, "guard": f"NN2AIE_VIEW_L{index}_H",
                "ns": f"view_l{index}", "cls": f"ViewL{index}", "header": header_path(index),
                "inputs": len(x.in_rows), "t": plain.CXX_TYPES[x.dtype], "batch": x.batch, "lanes": LANES,
                "in_rows": x.in_rows, "in_widths": x.in_widths, "out_rows": x.out_rows, "out_width": x.out_width,
                "copy": x.copy, "offsets": offsets}

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        x = _v(e)
        ctx = self._context(x, index, comment)
        files = {header_path(index): _ENV.get_template("view_kernel.h.j2").render(ctx),
                 source_path(index): _ENV.get_template("view_kernel.cc.j2").render(ctx)}
        if not x.copy:
            files[params_path(index)] = plain.param_header(
                params_path(index), f"View op {index} ({comment}): source index of each output element of an event.",
                "int32", [(f"P_{ident}", f"{ident}", k.weights) for k, ident in kernels])
        return files

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [] if _v(e).copy else [params_path(index)]

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        x = _v(e)
        args: tuple[str, ...] = ()
        params: tuple[str, ...] = ()
        if not x.copy:
            args = (f"std::vector<int32>(P_{ident}, P_{ident} + {len(x.table)})",)
            params = ("param",)
        return KernelInstance(type_name=f"ViewL{index}", ctor_args=args, params=params, source=source_path(index),
                              in_ports={f"in{i}": i for i in range(len(x.in_rows))}, out_ports={"out": 0})

    def describe(self, e: OpExec, index: int) -> str:
        x = _v(e)
        if x.fused_into:
            return f"view {x.kind}: no tile, runs inside the copy tile of {x.fused_into}"
        if x.resolved:
            return (f"view {x.kind}: no tile, resolved into the memory-tile descriptors of its producers "
                    f"(columns of a {x.out_rows}x{x.out_columns} buffer per event)")
        ins = " + ".join(f"{r}x{c}" for r, c in zip(x.in_rows, x.in_columns, strict=True))
        return (f"view {x.kind}: {ins} -> {x.out_rows}x{x.out_columns} per event, {x.dtype}, "
                f"{'vector copy' if x.copy else 'gather'} on one tile")

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index), source_path(index)] + self.param_headers(e, index)

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        x = _v(e)
        spec = plain.DriverSpec(f"view_l{index}", header_path(index), source_path(index),
                                None if x.copy else params_path(index), len(x.in_rows), not x.copy)
        return plain.driver_source(spec, entries)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return plain.position(self.ports(e, kernel)[-1], element)

    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _v(e)
        method = "descriptors" if x.resolved else "copy" if x.copy else "gather"
        return {"op": x.kind, "method": method, "out_rows": x.out_rows,
                "out_columns": x.out_columns}
