"""The eltwise family behind the common interface (kernels/family.py).

An op runs on ``cas_num`` tiles side by side, each on a column slice of every operand (plain rows, widths a
multiple of 4 so a window is whole 16-lane vectors); no cascade. The per-tile steps are planned in plan.py and
emulated in tile.py; templates/ holds the C++."""

from __future__ import annotations

from typing import Any

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, IllegalConfigError, UnsupportedQuantizationError
from nn2aie.ir.execution import OpExec, ceil_div
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, SpatialView, dtype_bytes, numpy_dtype
from nn2aie.kernels import plain
from nn2aie.kernels.eltwise import logical
from nn2aie.kernels.eltwise.plan import COLUMN_ALIGN, LANES, EltwiseExec, plan
from nn2aie.kernels.eltwise.tile import (
    affine_window,
    constant_window,
    lut_arrays,
    lut_entries_of,
    quantize_window,
    run_affine,
    run_lut,
    run_quantize,
    run_tile,
)
from nn2aie.kernels.family import Fail, KernelInstance, NativeRun, OpFamily, PortSpec

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.eltwise", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)
CALL_OVERHEAD_CYCLES = 40  # as the dense family's: "tens of cycles" per kernel call (UG1079), not calibrated
OPERAND_CONTAINERS = ("int8", "uint8", "int16", "uint16")


def _e(e: OpExec) -> EltwiseExec:
    assert isinstance(e, EltwiseExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/eltwise_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/eltwise_l{index}.cc"


def params_path(index: int) -> str:
    return f"data/params_l{index}.h"


def _lut_parts(x: EltwiseExec, weights: np.ndarray) -> list[np.ndarray]:
    """A tile's table parameters (kernel.weights holds them one after the other)."""
    return [weights] if x.lut_variant == "scalar" else list(np.split(np.asarray(weights), 2))


def _lut_buffers(x: EltwiseExec) -> list[tuple[str, int]]:
    from nn2aie.kernels.eltwise.plan import lut_parallel_entries

    if x.lut_variant == "scalar":
        return [("param", x.lut_entries * dtype_bytes(x.c_dtype))]
    size = 2 * lut_parallel_entries(x.lut_entries) * dtype_bytes(x.c_dtype)
    return [("lut_ab", size), ("lut_cd", size)]


class EltwiseFamily(OpFamily):
    name = "eltwise"
    kinds = ("eltwise",)
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
        for t in [op.inputs[0]] + ([op.inputs[1]] if len(op.inputs) > 1 else []):
            tensor = graph.tensor(t)
            if tensor.type.container not in OPERAND_CONTAINERS:
                raise UnsupportedQuantizationError(
                    f"op {op.name} operand {tensor.origin or t}", f"{tensor.type.width}-bit codes need a "
                    f"{tensor.type.container} container; eltwise tiles take 8- and 16-bit operands",
                    "quantize the operands to at most 16 bits")
        return plan(graph, op, device, batch)

    def _buffers(self, e: EltwiseExec, slice_width: int) -> int:
        window = e.rows * slice_width
        ins = dtype_bytes(e.a_dtype) + (dtype_bytes(e.b_dtype) if e.b_dtype else 0)
        param = dtype_bytes(e.c_dtype) * e.planes if e.const == "table" else 0
        tables = sum(size for _, size in _lut_buffers(e)) if e.const == "lut" else 0
        return window * (2 * ins + 2 * dtype_bytes(e.out_dtype) + param) + tables

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        x = _e(e)
        budget = plain.tile_budget(device)
        if override and "cas_num" in override:
            parts = int(override["cas_num"])
            slices = plain.column_slices(x.width, parts, COLUMN_ALIGN)
            if slices is None:
                raise IllegalConfigError(f"override for layer {x.op}", f"cas_num {parts} leaves a tile without "
                                         f"columns ({x.width} columns in slices of {COLUMN_ALIGN})",
                                         f"use at most {ceil_div(x.width, COLUMN_ALIGN)} tiles")
            if self._buffers(x, slices[0][1]) > budget:
                raise DoesNotFitError(f"op {x.op}", f"{parts} tile(s) of {slices[0][1]} columns need "
                                      f"{self._buffers(x, slices[0][1])} B of buffers, a tile has {budget} B free",
                                      "use more tiles (cas_num) or a smaller batch")
            x.cas_num, x.slice, x.override = parts, slices[0][1], True
            return
        for parts in range(1, ceil_div(x.width, COLUMN_ALIGN) + 1):
            slices = plain.column_slices(x.width, parts, COLUMN_ALIGN)
            if slices is not None and self._buffers(x, slices[0][1]) <= budget:
                x.cas_num, x.slice = parts, slices[0][1]
                return
        # one column slice is too tall: share the rows out over tiles (images: events, or bands of an event)
        total = x.rows
        channels = min(device.fact("memtile_dma_channels").values())
        if x.const != "table" and x.kind != "quantize":
            options = sorted((pieces * parts, parts, pieces) for pieces in range(2, channels + 1)
                             for parts in range(1, ceil_div(x.width, COLUMN_ALIGN) + 1))
            for tiles, parts, pieces in options:  # fewest tiles, then the widest column slices
                rows = self._piece_rows(x, total, pieces)
                slices = plain.column_slices(x.width, parts, COLUMN_ALIGN)
                if rows is None or slices is None or tiles > device.compute_rows:
                    continue
                x.rows = rows
                if self._buffers(x, slices[0][1]) <= budget:
                    x.cas_num, x.slice, x.pieces = tiles, slices[0][1], pieces
                    return
                x.rows = total
        raise DoesNotFitError(f"op {x.op}", f"{total} rows of one column slice do not fit a tile (nor shared out "
                              f"over up to {channels} tiles)", "use a smaller batch")

    @staticmethod
    def _piece_rows(x: EltwiseExec, total: int, pieces: int) -> int | None:
        return plain.piece_rows(total, x.event_rows or total, pieces)

    def grow(self, e: OpExec, device: Device) -> dict | None:
        x = _e(e)
        if x.cas_num * 2 <= device.compute_rows and plain.column_slices(x.width, x.cas_num * 2, COLUMN_ALIGN):
            return {"cas_num": x.cas_num * 2}
        return None

    # -- physical -----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        x = _e(e)
        kernels = []
        for chain in range(x.cas_num):
            piece, part = divmod(chain, x.cas_num // x.pieces)
            start = part * x.slice
            param = np.zeros(0, dtype=np.int8)
            if x.kind == "quantize":
                param = quantize_window(graph, op, x, start).astype(numpy_dtype(x.c_dtype)).reshape(-1)
            elif x.kind == "affine":
                param = affine_window(x, start).astype(numpy_dtype(x.c_dtype)).reshape(-1)
            elif x.const == "table":
                param = constant_window(graph, op, x, start).astype(numpy_dtype(x.c_dtype)).reshape(-1)
            elif x.const == "lut":  # the same table on every tile of the op
                param = np.concatenate(lut_arrays(graph, op, x)).astype(numpy_dtype(x.c_dtype))
            k = Kernel(name=f"{layer_id}_c{chain}", layer=op.name, chain=chain, position=0, role="single",
                       col=-1, row=-1, k_start=piece, n_start=start, weights=param, bias=None, family=self.name)
            k.memory = self.memory_map(x, k, device, frozenset())
            kernels.append(k)
        return kernels

    def _view(self, x: EltwiseExec, piece: int) -> SpatialView | None:
        return plain.piece_view(x.rows, x.event_rows, x.pieces, piece)

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        x = _e(e)
        view = self._view(x, kernel.k_start)
        out = [PortSpec("in0", "in", 0, kernel.n_start, x.slice, None, x.a_dtype, x.rows, view)]
        if x.b_dtype:
            out.append(PortSpec("in1", "in", 1, kernel.n_start, x.slice, None, x.b_dtype, x.rows, view))
        out.append(PortSpec("out", "out", 0, kernel.n_start, x.slice, None, x.out_dtype, x.rows, view))
        return out

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple]:
        x = _e(e)
        if x.pieces > 1:  # each row piece is a window of its own
            views = [self._view(x, p) for p in range(x.pieces)]
            return [(c * x.slice, x.slice, p, v.events if v is not None else None)
                    for c in range(x.cas_num // x.pieces) for p, v in enumerate(views)]
        return [(c * x.slice, x.slice) for c in range(x.cas_num)]

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        x = _e(e)
        buffers = plain.port_buffers(self.ports(x, kernel), skip)
        if x.const == "table":
            buffers.insert(0, ("param", x.planes * x.rows * x.slice * dtype_bytes(x.c_dtype)))
        elif x.const == "lut":
            buffers[:0] = _lut_buffers(x)
        return plain.memory_map(buffers, device, f"kernel {kernel.name} of op {x.op}")

    # -- emulation ----------------------------------------------------------------------------------------------
    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _e(e)
        for k in kernels:
            ports = self.ports(x, k)
            a = io.read(k, "in0")
            b = None
            if x.b_dtype:
                b = io.read(k, "in1")
            elif x.const == "table":
                b = np.tile(k.weights.astype(np.int64).reshape(x.planes, x.rows, x.slice), (1, io.iterations, 1))
                b = b[0] if x.planes == 1 else b
            if x.kind == "lut":
                y = run_lut(x, a, lut_entries_of(x, _lut_parts(x, k.weights)))
            elif x.kind == "quantize":
                y = run_quantize(x, a, b)
            else:
                y = run_affine(x, a, b) if x.kind == "affine" else run_tile(x, a, b)
            if io.trace is not None:
                ins = [(ports[0], a)] + ([(ports[1], b)] if x.b_dtype else [])
                plain.record(io.trace, k, ins, y, io.iterations)
            io.write(k, "out", y)

    # -- cost and resources -------------------------------------------------------------------------------------
    def _vector_ops(self, x: EltwiseExec) -> int:
        """Vector instructions per 16-lane step: UPS per operand, ADD/MUL, SRS per result, MAX/MIN."""
        if x.arith == "lut":
            # parallel: 16 lookups at the 4 parallel accesses of aie::lut per cycle (the index SRS, its clamp and
            # the narrowing of the values run in other slots); scalar: one lookup (load, load, store) per cycle
            return LANES // 4 if x.lut_variant == "parallel" else LANES
        if x.arith == "quantize":
            return 10  # UPS + SRS (to 16 bits), MUL, SRS, MAX + MIN (or SUB + AND + ADD), MUL, SRS
        if x.arith == "affine":
            return 9  # UPS + SRS (to 16 bits), 32 x 16 MUL (two passes), UPS of the offsets, ADD, SRS, MAX + MIN
        if x.arith in ("add", "sub"):
            return 4  # UPS, UPS, ADD, SRS
        if x.arith == "mul":
            return 2  # MUL, SRS
        ops = 2  # UPS, SRS
        if x.second:
            ops += 3  # UPS, SRS, MAX/MIN
        return ops + (x.lo is not None) + (x.hi is not None)

    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        return self.max_tile_cycles(e)

    def max_tile_cycles(self, e: OpExec) -> float:
        x = _e(e)
        return float(CALL_OVERHEAD_CYCLES + (x.rows * x.slice // LANES) * self._vector_ops(x))

    def useful_ops(self, e: OpExec) -> int:
        x = _e(e)
        return x.rows * x.pieces * x.width

    def cost_assumptions(self) -> str:
        return ("kernels/eltwise: one vector instruction per cycle per 16 lanes (UPS, ADD/MUL, SRS, MAX/MIN "
                "counted, loads and stores in parallel slots), plus the call overhead; not calibrated")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        # the loop body (at most ~10 bundles, software-pipelined x3) and a fixed frame of ~40 bundles
        return int(device.fact("program_memory_runtime_bytes")) + 16 * (40 + 3 * (2 + self._vector_ops(_e(e))))

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: EltwiseExec, index: int, comment: str) -> dict:
        b_t = x.b_dtype or x.c_dtype
        return {
            "idx": index, "comment": comment, "kind": x.kind, "guard": f"NN2AIE_ELTWISE_L{index}_H",
            "ns": f"eltwise_l{index}", "cls": f"EltwiseL{index}", "header": header_path(index),
            "inputs": 2 if x.b_dtype else 1, "has_param": x.const == "table",
            "in0_t": plain.CXX_TYPES[x.a_dtype], "in1_t": plain.CXX_TYPES.get(x.b_dtype, ""),
            "b_t": plain.CXX_TYPES.get(b_t, ""), "o_t": plain.CXX_TYPES[x.out_dtype], "acc": x.acc,
            "rows": x.rows, "slice": x.slice, "lanes": LANES, "rounding": x.epi().rounding,
            "saturation": x.epi().saturation, "scalar": x.scalar if x.const == "scalar" else None,
            "arith": x.arith, "combine": x.combine, "second": x.second, "ua": x.ua, "ub": x.ub,
            "e1": {"args": plain.epilogue_args(x.epi(), x.out_dtype)},
            "e2": {"args": plain.epilogue_args(x.epi(True), x.out_dtype) if x.epilogue2 else ""},
            "lo": x.lo, "hi": x.hi, "planes": x.planes, "wrap": x.wrap, "offset_shift": x.offset_shift,
        }

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        x = _e(e)
        ctx = self._context(x, index, comment)
        if x.const == "lut":
            return self._render_lut(x, index, kernels, ctx)
        files = {header_path(index): _ENV.get_template("eltwise_kernel.h.j2").render(ctx),
                 source_path(index): _ENV.get_template("eltwise_kernel.cc.j2").render(ctx)}
        if x.const == "table":
            arrays = [(f"P_{ident}", f"{ident}: columns [{k.n_start}, {k.n_start + x.slice})", k.weights)
                      for k, ident in kernels]
            files[params_path(index)] = plain.param_header(
                params_path(index), f"Eltwise op {index} ({comment}): the constant operand per tile window.",
                x.c_dtype, arrays)
        return files

    def _render_lut(self, x: EltwiseExec, index: int, kernels: list[tuple[Kernel, str]], ctx: dict) -> dict[str, str]:
        from nn2aie.kernels.eltwise.plan import lut_parallel_entries

        parallel = x.lut_variant == "parallel"
        size = 2 * lut_parallel_entries(x.lut_entries) if parallel else x.lut_entries
        ctx |= {"variant": x.lut_variant, "key_t": plain.CXX_TYPES[x.key_dtype], "entries": x.lut_entries,
                "lut_size": size, "bias": -x.lut_lo, "lut_lo": x.lut_lo}
        files = {header_path(index): _ENV.get_template("eltwise_lut.h.j2").render(ctx),
                 source_path(index): _ENV.get_template("eltwise_lut.cc.j2").render(ctx)}
        names = ("ab", "cd") if parallel else ("",)
        arrays = []
        for k, ident in kernels:
            for name, part in zip(names, _lut_parts(x, k.weights), strict=True):
                what = f"copy {name} of the table" if name else "the table"
                arrays.append((f"P_{ident}{'_' + name if name else ''}", f"{ident}: {what}", part))
        layout = ("in the aie::lut<4, int16> layout (128-bit groups stored twice)" if parallel else
                  "one entry per input code")
        files[params_path(index)] = plain.param_header(
            params_path(index), f"Eltwise op {index} ({ctx['comment']}): the lookup table of input codes "
            f"[{x.lut_lo}, {x.lut_lo + x.lut_entries - 1}], {layout}.", x.c_dtype, arrays)
        return files

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [params_path(index)] if _e(e).const in ("table", "lut") else []

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        x = _e(e)
        args: tuple[str, ...] = ()
        params: tuple[str, ...] = ()
        if x.const == "table":
            n = int(kernel.weights.size)
            args = (f"std::vector<{plain.CXX_TYPES[x.c_dtype]}>(P_{ident}, P_{ident} + {n})",)
            params = ("param",)
        elif x.const == "lut":
            t = plain.CXX_TYPES[x.c_dtype]
            if x.lut_variant == "scalar":
                n = int(kernel.weights.size)
                args, params = (f"std::vector<{t}>(P_{ident}, P_{ident} + {n})",), ("param",)
            else:
                n = int(kernel.weights.size) // 2
                args = tuple(f"std::vector<{t}>(P_{ident}_{c}, P_{ident}_{c} + {n})" for c in ("ab", "cd"))
                params = ("lut_ab", "lut_cd")
        ins = {"in0": 0} | ({"in1": 1} if x.b_dtype else {})
        return KernelInstance(type_name=f"EltwiseL{index}", ctor_args=args, params=params,
                              source=source_path(index), in_ports=ins, out_ports={"out": 0})

    def describe(self, e: OpExec, index: int) -> str:
        x = _e(e)
        operand = {"none": "", "scalar": f" constant {x.scalar}", "table": " constant tensor",
                   "lut": f" table of {x.lut_entries} entries ({x.lut_variant})"}[x.const]
        return (f"eltwise {x.kind}{operand}, {x.a_dtype}{' x ' + x.b_dtype if x.b_dtype else ''} -> "
                f"{x.out_dtype}, {x.acc}, {x.width} columns over {x.cas_num} tile(s) of {x.slice}")

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        return f"columns [{kernel.n_start}, {kernel.n_start + _e(e).slice})"

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index), source_path(index)] + self.param_headers(e, index)

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        x = _e(e)
        arrays: tuple[tuple[str, str], ...] = ()
        if x.const == "lut" and x.lut_variant == "parallel":
            arrays = (("L::p_t", "L::LUT_SIZE"), ("L::p_t", "L::LUT_SIZE"))
        spec = plain.DriverSpec(f"eltwise_l{index}", header_path(index), source_path(index),
                                params_path(index) if x.const in ("table", "lut") else None, 2 if x.b_dtype else 1,
                                x.const in ("table", "lut"), arrays)
        return plain.driver_source(spec, entries)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return plain.position(self.ports(e, kernel)[-1], element)

    # -- reporting ----------------------------------------------------------------------------------------------
    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _e(e)
        return {"op": x.kind, "width": x.width, "slice": x.slice, "acc": x.acc, "shift": x.epi().shift,
                "rounding": x.epi().rounding, "saturation": x.epi().saturation,
                "constant": x.const, "elements": x.rows * x.pieces * x.width} | (
                    {"lut": {"entries": x.lut_entries, "first_code": x.lut_lo, "variant": x.lut_variant,
                             "function": op.attrs.get("function", "")}} if x.kind == "lut" else {}) | (
                    {"requant": {"kind": "multiplier", "reason": x.requant_reason,
                                 "negated_channels": sum(m < 0 for m in x.multipliers)}} if x.kind == "affine" else {})
