"""The conv family behind the common interface (kernels/family.py): ``bands x parts`` tiles, each one row band
of the output on one slice of its channels; plan.py has the tile's loop nest and semantics."""

from __future__ import annotations

from typing import Any

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import IllegalConfigError, InternalCheckError
from nn2aie.ir.execution import OpExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel, SpatialView, numpy_dtype
from nn2aie.ir.tiling import BlockLayout
from nn2aie.kernels import plain
from nn2aie.kernels.conv import cost, logical
from nn2aie.kernels.conv.plan import (
    ConvExec,
    cascade_stream,
    choose,
    dense_weights,
    depthwise_sums,
    finish_tile,
    pack_depthwise,
    pack_weights,
    partial_sums,
    plan,
    plan_pool,
    run_pool_tile,
    tile_bytes,
    unpack_depthwise,
    unpack_weights,
    window_to_image,
)
from nn2aie.kernels.family import Fail, KernelInstance, NativeRun, OpFamily, PortSpec
from nn2aie.kernels.linear import tile_bias
from nn2aie.kernels.requant import REQUANT_HEADER_PATH, REQUANT_KINDS, requant_header_file
from nn2aie.kernels.requant_native import constant_rows, tile_constants
from nn2aie.kernels.tile_memory import allocate
from nn2aie.numerics import AIE_ROUNDING_MODES

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.conv", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)


def _c(e: OpExec) -> ConvExec:
    assert isinstance(e, ConvExec), e
    return e


def header_path(index: int) -> str:
    return f"kernels/conv_l{index}.h"


def source_path(index: int) -> str:
    return f"kernels/conv_l{index}.cc"


def impl_path(index: int) -> str:
    return f"kernels/conv_l{index}_impl.h"


def role_source_path(index: int, role: str) -> str:
    """One source per cascade role: a tile compiles only the code of the role it runs."""
    return f"kernels/conv_l{index}_{role}.cc"


ROLE_ORDER = ("single", "first", "middle", "last")
_ROLE_SUMMARY = {
    "single": "every input channel on one tile; bias in, epilogue out to the output buffer",
    "first": "first input-channel slice; bias in, partial sums out on the cascade",
    "middle": "inner input-channel slice; partial sums in and out on the cascade",
    "last": "last input-channel slice; partial sums in on the cascade, epilogue out to the output buffer",
}


def params_path(index: int) -> str:
    return f"data/weights_l{index}.h"


class ConvFamily(OpFamily):
    name = "conv"
    kinds = ("conv", "pool")
    override_keys = frozenset({"cas_length", "parts", "bands", "event_groups", "requant"})

    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        logical.verify(graph, op, fail)

    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return logical.evaluate(graph, op, inputs)

    # -- planning -----------------------------------------------------------------------------------------------
    def validate_override(self, layer: str, override: dict) -> None:
        super().validate_override(layer, override)
        for key in ("cas_length", "parts", "bands", "event_groups"):
            if key in override and (type(override[key]) is not int or override[key] < 1):
                raise IllegalConfigError(f"override for layer {layer}", f"{key} {override[key]!r} is not a "
                                         "positive integer", f"give {key} as a whole number, e.g. 2")
        if override.get("requant", "multiplier") not in REQUANT_KINDS:
            raise IllegalConfigError(f"override for layer {layer}", f"requant {override['requant']!r} is not a "
                                     "requantisation kind", f"give one of {', '.join(REQUANT_KINDS)}")

    def plan(self, graph: Graph, op: Op, device: Device, batch: int, override: dict) -> OpExec:
        if op.kind == "pool":
            if "requant" in override:
                raise IllegalConfigError(f"override for layer {op.name}", "a max pool has no requantisation",
                                         "drop the requant override for this layer")
            return plan_pool(graph, op, device, batch)
        return plan(graph, op, device, batch, override.get("requant"))

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        choose(_c(e), device, override)

    def grow(self, e: OpExec, device: Device) -> dict | None:
        """One DSE step to about twice the tiles: more chains first (output-channel slices, row bands, event
        groups: no cascade latency), else a cascade twice as long over the input channels; None when the array
        has no room for twice the tiles."""
        x = _c(e)
        if x.tiles * 2 > device.compute_rows * device.columns:
            return None
        store = max(1, 128 // (x.mmul[2] * plain.BITS[x.out_dtype]))  # the narrowest accumulator group
        now = {"cas_length": x.slices, "parts": x.parts, "bands": x.bands, "event_groups": x.event_groups}
        if (x.parts * 2 - 1) * x.mmul[2] * store < x.filters:
            return now | {"parts": x.parts * 2}
        if x.out_spatial[0] % (x.bands * 2) == 0:
            return now | {"bands": x.bands * 2}
        if x.batch % (x.event_groups * 2) == 0:
            return now | {"event_groups": x.event_groups * 2}
        if not x.pool and x.slices * 2 <= x.c_total // x.mmul[1]:
            return now | {"cas_length": x.slices * 2}
        return None

    # -- physical -----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        x = _c(e)
        if x.pool:
            kernels = []
            for tile, (name, part) in enumerate(self._tiles(x, layer_id)):
                row, column = self._place(x, tile, 0)
                k = Kernel(name=name, layer=op.name, chain=row, position=column, role="single", col=-1, row=-1,
                           k_start=tile // x.parts, n_start=part * x.m_slice,
                           weights=np.zeros(0, dtype=numpy_dtype(x.a_dtype)), bias=None, family=self.name)
                k.memory = self.memory_map(x, k, device, frozenset())
                kernels.append(k)
            return kernels
        bias = tile_bias(graph, op)
        if x.variant == "depthwise":
            return self._partition_depthwise(graph, op, x, device, layer_id, bias)
        w = dense_weights(graph, op, x)
        b_pad = np.zeros(x.m_padded, dtype=np.int64)
        if bias is not None:
            b_pad[: x.filters] = bias
        kernels = []
        c = x.c_pad
        packed = {(pos, part): pack_weights(x, w[:, :, pos * c:(pos + 1) * c, part * x.m_slice:(part + 1) * x.m_slice])
                  .astype(numpy_dtype(x.w_dtype)) for pos in range(x.slices) for part in range(x.parts)}
        roles = x.roles
        for tile, (name, part) in enumerate(self._tiles(x, layer_id)):
            n0 = part * x.m_slice
            for pos in range(x.slices):
                role = roles[0] if pos == 0 else roles[-1] if pos == x.slices - 1 else "middle"
                row, column = self._place(x, tile, pos)
                k = Kernel(name=name + (f"_p{pos}" if x.slices > 1 else ""), layer=op.name, chain=row,
                           position=column, role=role, col=-1, row=-1, k_start=(tile // x.parts) * x.slices + pos,
                           n_start=n0,
                           weights=packed[(pos, part)],
                           bias=b_pad[n0:n0 + x.m_slice].astype(np.int32) if x.has_bias and role in (
                               "single", "first") else None, family=self.name)
                k.memory = self.memory_map(x, k, device, frozenset())
                if pos > 0:  # the cascade runs from the previous input-channel slice of the same tile slot
                    kernels[-1].cascade_to, k.cascade_from = k.name, kernels[-1].name
                kernels.append(k)
        return kernels

    def _partition_depthwise(self, graph: Graph, op: Op, x: ConvExec, device: Device, layer_id: str,
                             bias: np.ndarray | None) -> list[Kernel]:
        w = np.zeros((x.taps, x.m_padded), dtype=np.int64)
        w[:, : x.filters] = graph.tensor(op.inputs[1]).data.astype(np.int64)  # [taps, C]: filter c reads channel c
        b_pad = np.zeros(x.m_padded, dtype=np.int64)
        if bias is not None:
            b_pad[: x.filters] = bias
        kernels = []
        for tile, (name, part) in enumerate(self._tiles(x, layer_id)):
            n0 = part * x.m_slice
            row, column = self._place(x, tile, 0)
            k = Kernel(name=name, layer=op.name, chain=row, position=column, role="single", col=-1, row=-1,
                       k_start=tile // x.parts, n_start=n0,
                       weights=pack_depthwise(x, w[:, n0:n0 + x.m_slice]).astype(numpy_dtype(x.w_dtype)),
                       bias=b_pad[n0:n0 + x.m_slice].astype(np.int32) if x.has_bias else None, family=self.name)
            k.memory = self.memory_map(x, k, device, frozenset())
            kernels.append(k)
        return kernels

    @staticmethod
    def _place(x: ConvExec, chain: int, position: int) -> tuple[int, int]:
        """(row, column) of a chain's tile in the footprint: chains stack in columns of at most the array's rows,
        each chain ``slices`` tiles wide along its cascade."""
        rows = x.cas_num  # the footprint's rows (kernels/conv/plan.py footprint)
        return chain % rows, (chain // rows) * x.slices + position

    @staticmethod
    def _tiles(x: ConvExec, layer_id: str) -> list[tuple[str, int]]:
        """(kernel name, output-channel slice) of every chain: event group, band, slice. A kernel's ``k_start`` is
        ``(event_group * bands + band) * slices + cascade position`` (a pool's: ``event_group * bands + band``)."""
        out = []
        for group in range(x.event_groups):
            for band in range(x.bands):
                for part in range(x.parts):
                    prefix = f"_e{group}" if x.event_groups > 1 else ""
                    out.append((f"{layer_id}{prefix}_b{band}_s{part}", part))
        return out

    def _events(self, x: ConvExec, slot: int) -> tuple[int, int] | None:
        return None if x.event_groups == 1 else (slot // x.bands * x.tile_batch, x.tile_batch)

    def _input_port(self, x: ConvExec, slot: int, n0: int = 0, position: int = 0) -> PortSpec:
        """The input window of tile slot ``event_group * bands + band`` (and cascade position)."""
        hi, wi = x.window
        view = SpatialView(x.spatial, x.band_origin(slot % x.bands), (hi, wi), self._events(x, slot))
        if not view.padded and (hi, wi) == x.spatial and view.events is None:
            view = None  # the whole image: every row of the tensor
        start = n0 if x.per_channel else position * x.c_pad  # a pool / depthwise tile reads the channels it writes
        return PortSpec("in", "in", 0, start, x.c_pad, (hi * wi, x.mmul[1]), x.a_dtype, x.in_rows, view)

    def _output_port(self, x: ConvExec, slot: int, n0: int) -> PortSpec:
        view = None
        if x.bands > 1 or x.event_groups > 1:
            view = SpatialView(x.out_spatial, (slot % x.bands * x.band_rows, 0), (x.band_rows, x.out_spatial[1]),
                               self._events(x, slot))
        return PortSpec("out", "out", 0, n0, x.m_slice, None, x.out_dtype, x.out_rows, view)

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        x = _c(e)
        slot, position = divmod(kernel.k_start, x.slices)
        ports = [self._input_port(x, slot, kernel.n_start, position)]
        if kernel.role in ("single", "last"):
            ports.append(self._output_port(x, slot, kernel.n_start))
        return ports

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple]:
        x = _c(e)
        windows = range(x.event_groups * x.bands)  # each a window of its own (in) or a region written (out)
        if direction == "out" or x.per_channel:
            return [(p * x.m_slice, x.m_slice, w, self._events(x, w)) for p in range(x.parts) for w in windows]
        return [(p * x.c_pad, x.c_pad, w, self._events(x, w)) for p in range(x.slices) for w in windows]

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        x = _c(e)
        sizes = tile_bytes(x, kernel.role)
        items = [("weights", sizes["weights"])] if sizes["weights"] else []
        if "bias" in sizes:
            items.append(("bias", sizes["bias"]))
        if "requant" in sizes:
            items.append(("requant", sizes["requant"]))
        for port in ("in", "out"):
            if port in sizes:
                items += [(n, sizes[port] // 2) for n in (f"{port}_ping", f"{port}_pong") if n not in skip]
        items += [("stack", int(device.fact("stack_bytes_default"))), ("heap", int(device.fact("heap_bytes_default")))]
        return allocate(items, device, f"kernel {kernel.name} of op {x.op}",
                        "use a smaller batch or more tiles for this layer (parts / bands)")

    # -- emulation ----------------------------------------------------------------------------------------------
    def _tile_params(self, x: ConvExec, kernels: list[Kernel], io: Any) -> list[tuple[np.ndarray, Any]]:
        def build():
            out = []
            for k in kernels:
                rq = None
                if x.requant is not None:
                    rq = x.requant.select([min(c, x.filters - 1) for c in range(k.n_start, k.n_start + x.m_slice)])
                unpack = unpack_depthwise if x.variant == "depthwise" else unpack_weights
                out.append((unpack(x, k.weights.astype(np.int64)), rq))
            return out

        return io.cached(("conv", x.op), build)

    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        x = _c(e)
        params = self._tile_params(x, kernels, io) if not x.pool else [None] * len(kernels)
        images: dict[str, np.ndarray] = {}
        sums: dict[int, np.ndarray] = {}  # tile slot chain -> the partial sums arriving on its cascade
        for k, param in zip(kernels, params, strict=True):
            src = io.source(k, "in")
            if src not in images:
                images[src] = io.read(k, "in")
            window = images[src]
            if x.pool:
                y = run_pool_tile(x, window_to_image(x, window))
                if io.trace is not None:
                    self._trace_input(x, k, window, io)
                    io.trace.outputs[k.name] = np.asarray(y, dtype=np.int64).reshape(io.iterations, -1)
                io.write(k, "out", y)
                continue
            compute = depthwise_sums if x.variant == "depthwise" else partial_sums
            part = compute(x, window_to_image(x, window), param[0])
            if k.bias is not None:
                part += np.asarray(k.bias, dtype=np.int64)
            if io.trace is not None:
                self._trace_input(x, k, window, io)
                if k.has_cascade_in:
                    io.trace.cascade_in[k.name] = cascade_stream(x, sums[k.cascade_from], io.iterations)
            if k.has_cascade_in:
                part += sums.pop(k.cascade_from)
            if k.has_cascade_out:
                sums[k.name] = part
                if io.trace is not None:
                    io.trace.outputs[k.name] = cascade_stream(x, part, io.iterations)
                continue
            y = finish_tile(x, part, param[1])
            if io.trace is not None:
                io.trace.outputs[k.name] = np.asarray(y, dtype=np.int64).reshape(io.iterations, -1)
            io.write(k, "out", y)

    def _trace_input(self, x: ConvExec, k: Kernel, window: np.ndarray, io: Any) -> None:
        slot, position = divmod(k.k_start, x.slices)
        port = self._input_port(x, slot, k.n_start, position)
        layout = BlockLayout(port.rows, port.width, port.block[0], port.block[1])
        win = np.asarray(window, dtype=np.int64).reshape(io.iterations, port.rows, port.width)
        io.trace.inputs[k.name] = layout.to_blocks(win)

    # -- cost and resources -------------------------------------------------------------------------------------
    def max_tile_cycles(self, e: OpExec) -> float:
        x = _c(e)
        return max(cost.tile_cycles(x, role) for role in x.roles)

    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        return cost.tile_cycles(_c(e), kernel.role)

    def useful_ops(self, e: OpExec) -> int:
        x = _c(e)
        if x.per_channel:  # comparisons (max pool) or one MAC per tap and channel (depthwise)
            return x.batch * x.out_spatial[0] * x.out_spatial[1] * x.channels * x.taps
        return x.batch * x.out_spatial[0] * x.out_spatial[1] * x.filters * x.taps * (x.channels // x.groups)

    def peak_ops_per_cycle(self, e: OpExec) -> int:
        x = _c(e)
        return 0 if x.pool else cost.peak_macs(x)  # depthwise: the element-wise MAC lanes (kernels/conv/cost.py)

    def cost_assumptions(self) -> str:
        return ("kernels/conv/cost.py: the dense loop-nest model calibrated on AMD's 64x64x64 int8 GEMM; one extra "
                "256-bit load per A block not on a 256-bit boundary (assumed, not measured); requantisation by "
                "instruction count; call overhead as dense")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        x = _c(e)
        # five loops, one pipelined body of M_ACC x N_ACC MACs and their loads, the epilogue per pixel group
        return int(device.fact("program_memory_runtime_bytes")) + 16 * (96 + 8 * x.m_accumulators *
                                                                          x.n_accumulators)

    # -- codegen ------------------------------------------------------------------------------------------------
    def _context(self, x: ConvExec, index: int, comment: str) -> dict:
        epi = x.epi()
        for dtype in (x.a_dtype, x.w_dtype, x.out_dtype):
            if dtype not in plain.CXX_TYPES:
                raise InternalCheckError(f"conv codegen for op {x.op!r}", f"no C++ type for {dtype}", "report this")
        if epi.rounding not in AIE_ROUNDING_MODES:
            raise InternalCheckError(f"conv codegen for op {x.op!r}", f"rounding {epi.rounding}", "report this")
        bits, signed = plain.BITS[x.out_dtype], plain.is_signed(x.out_dtype)
        c_lo = -(1 << (bits - 1)) if signed else 0
        c_hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        m, k, n = x.mmul
        hi, wi = x.window
        store_blocks = max(1, 128 // (n * bits))
        ns = f"conv_l{index}"
        has_b = x.has_bias
        requant = None
        if x.requant is not None:
            rq = x.requant
            levels = len(rq.table_levels()[1]) if rq.kind == "table" else 0
            slots = rq.correction_slots if rq.kind == "multiplier" else 0
            requant = {"kind": rq.kind, "offset_shift": rq.offset_shift, "levels": levels, "slots": slots,
                       "stride_rows": constant_rows(rq),
                       "reason": rq.reason.replace("\n", " ")}
        roles = []
        for role in ROLE_ORDER:
            bias, rq = has_b and role in ("single", "first"), requant is not None and role in ("single", "last")
            params, inits = [f"{ns}::w_t (&w_i)[{ns}::W_SIZE]"], ["w(w_i)"]
            if bias:
                params.append(f"int32 (&b_i)[{ns}::M_SLICE]")
                inits.append("b(b_i)")
            if rq:
                params.append(f"int32 (&q_i)[{ns}::RQ_SIZE]")
                inits.append("q(q_i)")
            cin, cout = role in ("middle", "last"), role in ("first", "middle")
            signature = [f"adf::input_buffer<{ns}::a_t, adf::extents<{ns}::IN_SIZE>>& __restrict in"]
            if cin:
                signature.append(f"adf::input_cascade<{ns}::acc_tag>* __restrict cin")
            signature.append(f"adf::output_cascade<{ns}::acc_tag>* __restrict cout" if cout else
                             f"adf::output_buffer<{ns}::o_t, adf::extents<{ns}::OUT_SIZE>>& __restrict out")
            call = ["in.data()", "w", "b" if bias else "nullptr", "q" if rq else "nullptr",
                    "cin" if cin else "nullptr", "cout" if cout else "nullptr", "nullptr" if cout else "out.data()"]
            roles.append({"name": role, "summary": _ROLE_SUMMARY[role], "bias": bias, "requant": rq,
                          "ctor_params": params, "ctor_inits": inits, "signature": signature, "call": call})
        ctor_params, ctor_inits = roles[0]["ctor_params"], roles[0]["ctor_inits"]
        return {
            "idx": index, "comment": comment, "guard": f"NN2AIE_CONV_L{index}_H", "ns": ns, "cls": f"ConvL{index}",
            "header": f"conv_l{index}.h", "a_t": plain.CXX_TYPES[x.a_dtype], "w_t": plain.CXX_TYPES[x.w_dtype],
            "o_t": plain.CXX_TYPES[x.out_dtype], "acc": x.acc, "batch": x.tile_batch, "kh": x.kernel[0],
            "kw": x.kernel[1], "sh": x.strides[0], "sw": x.strides[1], "dh": x.dilations[0], "dw": x.dilations[1],
            "hi": hi, "wi": wi, "cb": x.c_pad // k, "ho": x.band_rows, "wo": x.out_spatial[1], "wq": x.wq,
            "m_slice": x.m_slice, "mmul_m": m, "mmul_k": k, "mmul_n": n, "m_acc": x.m_accumulators,
            "n_acc": x.n_accumulators, "store_blocks": store_blocks, "shift": epi.shift, "clamp_lo": epi.clamp_lo,
            "clamp_hi": epi.clamp_hi, "apply_lo": str(epi.clamp_lo > c_lo).lower(),
            "apply_hi": str(epi.clamp_hi < c_hi).lower(), "wrap_bits": epi.wrap_bits,
            "wrap_shift": bits - epi.wrap_bits if epi.wrap_bits else 0, "has_bias": str(has_b).lower(),
            "has_bias_b": has_b, "rounding": epi.rounding, "saturation": epi.saturation, "requant": requant,
            "ctor_params": ctor_params, "ctor_inits": ctor_inits, "roles": [r for r in roles if r["name"] in x.roles],
            "impl": f"conv_l{index}_impl.h", "impl_guard": f"NN2AIE_CONV_L{index}_IMPL_H",
            "word_lanes": 512 // (32 if x.acc == "acc32" else 64),
            "accumulators": [(i, j) for i in range(x.m_accumulators) for j in range(x.n_accumulators)],
            "row_accumulators": list(range(x.m_accumulators)), "col_accumulators": list(range(x.n_accumulators)),
            "store_pairs": list(range(0, x.n_accumulators, store_blocks)),
        }

    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        x = _c(e)
        ctx = self._context(x, index, comment)
        if x.pool:
            return {header_path(index): _ENV.get_template("pool_kernel.h.j2").render(ctx),
                    source_path(index): _ENV.get_template("pool_kernel.cc.j2").render(ctx)}
        if x.variant == "depthwise":
            files = {header_path(index): _ENV.get_template("depthwise_kernel.h.j2").render(ctx),
                     source_path(index): _ENV.get_template("depthwise_kernel.cc.j2").render(ctx)}
            files[params_path(index)] = self._params_file(x, index, kernels, comment)
            if x.requant is not None:
                files |= requant_header_file()
            return files
        files = {header_path(index): _ENV.get_template("conv_kernel.h.j2").render(ctx),
                 impl_path(index): _ENV.get_template("conv_kernel_impl.h.j2").render(ctx)}
        for r in ctx["roles"]:
            files[role_source_path(index, r["name"])] = _ENV.get_template("conv_kernel.cc.j2").render(ctx | {"r": r})
        files[params_path(index)] = self._params_file(x, index, kernels, comment)
        if x.requant is not None:
            files |= requant_header_file()
        return files

    def _params_file(self, x: ConvExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> str:
        order = "channel block, tap, 4 pixels x channels" if x.variant == "depthwise" else \
            "group, kh, kw, channel block, j"
        arrays = []
        for k, ident in kernels:
            arrays.append((f"W_{ident}", f"{ident}: tile slot {k.k_start}, channels [{k.n_start}, "
                           f"{k.n_start + x.m_slice}), packed ({order})", k.weights))
            if k.bias is not None:
                arrays.append((f"B_{ident}", f"{ident}: bias at the accumulator LSB", k.bias, "int32"))
            if x.requant is not None and k.role in ("single", "last"):
                arrays.append((f"Q_{ident}", f"{ident}: {x.requant.kind} requantisation constants",
                               self._requant(x, k), "int32"))
        return plain.param_header(params_path(index), f"Conv op {index} ({comment}): the constants of every tile.",
                                  x.w_dtype, arrays)

    def _requant(self, x: ConvExec, k: Kernel) -> np.ndarray:
        return tile_constants(x.requant, x.filters, k.n_start, x.m_slice, x.mmul[2], f"op {x.op}")

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [header_path(index)]

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [] if _c(e).pool else [params_path(index)]

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        x = _c(e)
        if x.pool:
            return KernelInstance(type_name=f"ConvL{index}", ctor_args=(), params=(), source=source_path(index),
                                  in_ports={"in": 0}, out_ports={"out": 0})
        w_t = plain.CXX_TYPES[x.w_dtype]
        args = [f"std::vector<{w_t}>(W_{ident}, W_{ident} + {kernel.weights.size})"]
        params = ["weights"]
        if kernel.bias is not None:
            args.append(f"std::vector<int32>(B_{ident}, B_{ident} + {x.m_slice})")
            params.append("bias")
        if x.requant is not None and kernel.role in ("single", "last"):
            args.append(f"std::vector<int32>(Q_{ident}, Q_{ident} + {self._requant(x, kernel).size})")
            params.append("requant")
        out = kernel.role in ("single", "last")
        if x.variant == "depthwise":
            return KernelInstance(type_name=f"ConvL{index}", ctor_args=tuple(args), params=tuple(params),
                                  source=source_path(index), in_ports={"in": 0}, out_ports={"out": 0})
        return KernelInstance(type_name=f"ConvL{index}<ConvRole::{kernel.role}>", ctor_args=tuple(args),
                              params=tuple(params), source=role_source_path(index, kernel.role), in_ports={"in": 0},
                              out_ports={"out": 0} if out else {},
                              cascade_in_port=1 if kernel.has_cascade_in else None,
                              cascade_out_port=0 if kernel.has_cascade_out else None)

    def describe(self, e: OpExec, index: int) -> str:
        x = _c(e)
        if x.pool:
            return (f"max pool {x.kernel[0]}x{x.kernel[1]} stride {x.strides[0]}x{x.strides[1]} pads "
                    f"{list(x.pads_begin)}/{list(x.pads_end)}: {x.spatial[0]}x{x.spatial[1]}x{x.channels} -> "
                    f"{x.out_spatial[0]}x{x.out_spatial[1]}x{x.channels}, {x.a_dtype}, {x.bands} band(s) x "
                    f"{x.parts} slice(s) of {x.m_slice} channels")
        g = f", {x.groups} groups" if x.groups > 1 else ""
        return (f"conv {x.kernel[0]}x{x.kernel[1]} stride {x.strides[0]}x{x.strides[1]} dilation "
                f"{x.dilations[0]}x{x.dilations[1]} pads {list(x.pads_begin)}/{list(x.pads_end)}{g}: "
                f"{x.spatial[0]}x{x.spatial[1]}x{x.channels} -> {x.out_spatial[0]}x{x.out_spatial[1]}x{x.filters}, "
                f"{x.a_dtype} x {x.w_dtype} -> {x.out_dtype}, {x.acc}, mmul {'x'.join(map(str, x.mmul))}, "
                f"{x.bands} band(s) x {x.parts} slice(s) of {x.m_slice} channels")

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        x = _c(e)
        slot, position = divmod(kernel.k_start, x.slices)
        r0 = slot % x.bands * x.band_rows
        events = self._events(x, slot)
        ev = f"events [{events[0]}, {events[0] + events[1]}), " if events else ""
        cin = f", input channels [{position * x.c_pad}, {(position + 1) * x.c_pad})" if x.slices > 1 else ""
        return (f"{ev}output rows [{r0}, {r0 + x.band_rows}), channels [{kernel.n_start}, "
                f"{kernel.n_start + x.m_slice}){cin} ({kernel.role})")

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        x = _c(e)
        if x.pool:
            return [header_path(index), source_path(index)]
        extra = [REQUANT_HEADER_PATH] if x.requant is not None else []
        if x.variant == "depthwise":
            return [header_path(index), source_path(index), params_path(index), *extra]
        return [header_path(index), impl_path(index), *[role_source_path(index, r) for r in x.roles],
                params_path(index), *extra]

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        x = _c(e)
        if x.pool:
            spec = plain.DriverSpec(f"conv_l{index}", header_path(index), source_path(index), None, 1, False)
            return plain.driver_source(spec, entries)
        if x.variant == "depthwise":
            arrays = [("L::w_t", "L::W_SIZE")] + ([("int32", "L::M_SLICE")] if x.has_bias else []) + (
                [("int32", "L::RQ_SIZE")] if x.requant is not None else [])
            spec = plain.DriverSpec(f"conv_l{index}", header_path(index), source_path(index), params_path(index),
                                    1, True, tuple(arrays))
            return plain.driver_source(spec, entries)
        rows = []
        for entry in entries:
            params = tuple(entry["params"])
            rows.append(entry | {"has_bias": "bias" in params, "has_requant": "requant" in params,
                                 "requant_param": params.index("requant") if "requant" in params else -1})
        return _ENV.get_template("native_driver.cc.j2").render(
            ns=f"conv_l{index}", idx=index, kernel_header=header_path(index), params_header=params_path(index),
            kernel_sources=[role_source_path(index, r) for r in x.roles], entries=rows,
            requant=x.requant is not None, bias=x.has_bias)

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> NativeRun:
        x = _c(e)
        if x.per_channel:
            return plain.run_spec(kernel, self.ports(e, kernel), trace, iters, stem)
        window = trace.inputs[kernel.name].reshape(iters, -1)
        a = window.astype(np.dtype(x.a_dtype))
        in_path, cin_path, out_path = stem.with_suffix(".in"), stem.with_suffix(".cin"), stem.with_suffix(".out")
        a.tofile(in_path)
        cin_arg = "-"
        if kernel.has_cascade_in:
            np.ascontiguousarray(trace.cascade_in[kernel.name].reshape(iters, -1), dtype=np.int64).tofile(cin_path)
            cin_arg = str(cin_path)
        out = kernel.role in ("single", "last")
        want = trace.outputs[kernel.name].reshape(-1).astype(np.int64)
        return NativeRun([str(out_path), str(in_path), cin_arg], out_path,
                         np.dtype(x.out_dtype) if out else np.dtype(np.int64), want, [in_path, cin_path, out_path],
                         "buffer" if out else "cascade")

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        if output == "cascade":
            return f"cascade lane {element}"
        return plain.position(self.ports(e, kernel)[-1], element)

    # -- reporting ----------------------------------------------------------------------------------------------
    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        x = _c(e)
        if x.pool:
            return {"op": f"{x.pool}_pool", "kernel": list(x.kernel[2 - x.rank:]),
                    "strides": list(x.strides[2 - x.rank:]),
                    "pads": [list(x.pads_begin[2 - x.rank:]), list(x.pads_end[2 - x.rank:])],
                    "channels": x.channels, "bands": x.bands, "parts": x.parts, "m_slice": x.m_slice,
                    "event_groups": x.event_groups}
        out = {"op": "conv", "variant": x.variant, "kernel": list(x.kernel[2 - x.rank:]),
               "strides": list(x.strides[2 - x.rank:]),
               "dilations": list(x.dilations[2 - x.rank:]), "pads": [list(x.pads_begin[2 - x.rank:]),
                                                                      list(x.pads_end[2 - x.rank:])],
               "groups": x.groups, "channels": x.channels, "filters": x.filters,
               "activation": "relu" if x.relu else "linear", "mmul": "x".join(map(str, x.mmul)), "acc": x.acc,
               "bands": x.bands, "parts": x.parts, "m_slice": x.m_slice, "event_groups": x.event_groups,
               "slices": x.slices, "c_slice": x.c_pad,
               "efficiency_modelled": round(cost.efficiency(x), 4)}
        if x.requant is not None:
            out["requant"] = x.requant.to_json()
        else:
            out |= {"shift": x.epi().shift, "rounding": x.epi().rounding, "saturation": x.epi().saturation}
        return out
