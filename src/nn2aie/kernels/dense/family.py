"""The dense family behind the common interface (kernels/family.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nn2aie.devices import DEFAULT_DEVICE, Device, get_device
from nn2aie.errors import IllegalConfigError
from nn2aie.ir.evaluate import exact_matmul
from nn2aie.ir.execution import DenseExec, OpExec, rows_per_event
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import BufferAlloc, Kernel
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.dense import codegen, cost, native
from nn2aie.kernels.dense.emulate import emulate_layer
from nn2aie.kernels.dense.parallelism import choose_parallelism
from nn2aie.kernels.dense.partition import memory_map, partition_layer
from nn2aie.kernels.dense.precision import parse_mmul, plan_precision
from nn2aie.kernels.dense.resources import program_memory_bytes
from nn2aie.kernels.family import Fail, KernelInstance, OpFamily, PortSpec
from nn2aie.kernels.linear import evaluate_linear
from nn2aie.kernels.linear_scaled import is_scaled, scaled_layer
from nn2aie.kernels.linear_stepped import is_stepped
from nn2aie.kernels.requant import REQUANT_KINDS
from nn2aie.kernels.tile_memory import conflicts

ACTIVATIONS = ("linear", "relu")


class DenseFamily(OpFamily):
    """y = requantize(act(x @ W + b)): the activation acts on the exact accumulator, then the result is brought
    into the output type (the order of ONNX Relu -> QuantizeLinear, QONNX Relu -> Quant and hls4ml Dense -> ReLU ->
    cast). Inputs [x, W] or [x, W, b]; W is a constant [K, N], b a constant [N]; x has shape [..., K] (leading
    axes, e.g. particles, are rows of the product) and y [..., N]. Attribute ``activation``: linear | relu."""

    name = "dense"
    kinds = ("dense",)

    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        if len(op.inputs) not in (2, 3) or len(op.outputs) != 1:
            fail(f"op {op.name}", "dense takes [x, W] or [x, W, b] and gives one output")
        x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        y = graph.tensors[op.outputs[0]]
        for t in (x, w, y):
            if not isinstance(t.type, FixedType | ScaledType):
                fail(f"op {op.name}", f"tensor {t.name} is not integer (fixed point or scaled)")
        if not w.is_const or w.data is None or w.data.shape != tuple(w.shape) or len(w.shape) != 2:
            fail(f"op {op.name}", "weights must be a constant [K, N] array")
        k, n = w.shape
        if not x.shape or x.shape[-1] != k or tuple(y.shape) != tuple(x.shape[:-1]) + (n,):
            fail(f"op {op.name}", f"shape mismatch x{x.shape} W{w.shape} y{y.shape}")
        if x.is_const:
            fail(f"op {op.name}", "the input of a dense op must be an activation")
        if len(op.inputs) == 3:
            b = graph.tensors[op.inputs[2]]
            if not b.is_const or b.data is None or b.data.shape != (n,):
                fail(f"op {op.name}", "bias must be a constant [N] array")
        for t in [w] + ([graph.tensors[op.inputs[2]]] if len(op.inputs) == 3 else []):
            d = t.data
            if d is None or d.min(initial=0) < t.type.min_code or d.max(initial=0) > t.type.max_code:
                fail(f"tensor {t.name}", "constant codes outside the range of its type")
        if op.attrs.get("activation", "linear") not in ACTIVATIONS:
            fail(f"op {op.name}", f"activation {op.attrs.get('activation')} unknown")

    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [evaluate_linear(graph, op, exact_matmul(inputs[0], graph.tensor(op.inputs[1]).data))]

    # -- planning ----------------------------------------------------------------------------------------------
    override_keys = frozenset({"cas_length", "cas_num", "mmul", "requant"})

    def validate_override(self, layer: str, override: dict) -> None:
        if set(override) - self.override_keys:
            raise IllegalConfigError(f"override for layer {layer}", f"unknown keys in {override!r}",
                                     "give any of {\"cas_length\": L, \"cas_num\": C, \"mmul\": \"MxKxN\", "
                                     "\"requant\": \"multiplier\" | \"table\"}")
        if override.get("requant", "multiplier") not in REQUANT_KINDS:
            raise IllegalConfigError(f"override for layer {layer}", f"requant {override['requant']!r} is not a "
                                     "requantisation kind", f"give one of {', '.join(REQUANT_KINDS)}")
        if "mmul" in override:
            parse_mmul(override["mmul"], f"override for layer {layer}")
        for key in ("cas_length", "cas_num"):
            if key in override and (type(override[key]) is not int or override[key] < 1):  # bool, float, str
                raise IllegalConfigError(f"override for layer {layer}", f"{key} {override[key]!r} is not a "
                                         "positive integer", f"give {key} as a whole number of tiles, e.g. 2")

    def plan(self, graph: Graph, op: Op, device: Device, batch: int, override: dict) -> OpExec:
        shape = parse_mmul(override["mmul"], f"override for layer {op.name}") if "mmul" in override else None
        rows = batch * rows_per_event(graph.tensor(op.inputs[0]).shape)
        rows = -(-rows // 4) * 4  # whole row blocks of the mmul: padding rows (zeros in, ignored out)
        return plan_precision(graph, op, device, rows, shape, override.get("requant"))

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        choose_parallelism(_dense(e), device, max_weight_bytes, override)

    def grow(self, e: OpExec, device: Device) -> dict | None:
        """More chains first (they add no cascade latency), else twice the cascade length."""
        d = _dense(e)
        _, mk, mn = d.mmul
        if d.cas_num * 2 <= device.compute_rows and -(-d.n // mn) >= d.cas_num * 2:
            return {"cas_length": d.cas_length, "cas_num": d.cas_num * 2}
        if d.cas_length * 2 <= device.columns and -(-d.k // mk) >= d.cas_length * 2:
            return {"cas_length": d.cas_length * 2, "cas_num": d.cas_num}
        return None

    # -- physical ----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        return partition_layer(graph, op, _dense(e), device, layer_id)

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        d = _dense(e)
        m, k, n = d.mmul
        out = [PortSpec("in", "in", 0, kernel.k_start, d.k_slice, (m, k), d.a_dtype, d.batch)]
        if kernel.has_output:
            out.append(PortSpec("out", "out", 0, kernel.n_start, d.n_slice, (m, n), d.out_dtype, d.batch))
        return out

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple[int, int]]:
        d = _dense(e)
        if direction == "out":
            return [(c * d.n_slice, d.n_slice) for c in range(d.cas_num)]
        return [(p * d.k_slice, d.k_slice) for p in range(d.cas_length)]

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        return memory_map(_dense(e), device, kernel.role, f"kernel {kernel.name}", skip)

    def input_buffers(self, port: str) -> tuple[str, str]:
        return ("in_ping", "in_pong")

    def output_buffers(self, port: str) -> tuple[str, str]:
        return ("out_ping", "out_pong")

    # -- emulation ---------------------------------------------------------------------------------------------
    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        emulate_layer(_dense(e), kernels, io)

    # -- cost and resources ------------------------------------------------------------------------------------
    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        # every part the dense family targets is AIE-ML, whose banks are the catalog's 16 KB
        pairs = conflicts(kernel.memory, get_device(DEFAULT_DEVICE).bank_bytes)
        shared = any("weights" in pair and any(n.startswith("in_") for n in pair) for pair in pairs)
        return cost.dense_tile_cycles(_dense(e), kernel.role, loads_share_bank=shared)

    def max_tile_cycles(self, e: OpExec) -> float:
        d = _dense(e)
        roles = ["single"] if d.cas_length == 1 else ["first", "last"] + (["middle"] if d.cas_length > 2 else [])
        return max(cost.dense_tile_cycles(d, role) for role in roles)

    def useful_ops(self, e: OpExec) -> int:
        d = _dense(e)
        return d.batch * d.k * d.n

    def peak_ops_per_cycle(self, e: OpExec) -> int:
        d = _dense(e)
        return cost.NATIVE_MACS_PER_INSTRUCTION[(d.a_dtype.removeprefix("u"), d.w_dtype)]

    def cost_assumptions(self) -> str:
        return ("kernels/dense/cost.py: calibrated on AMD's 64x64x64 int8 GEMM (within 2.4 %); kernel call overhead "
                f"{cost.CALL_OVERHEAD_CYCLES} cycles assumed (UG1079 'tens of cycles', not calibrated); "
                f"{cost.CASCADE_CYCLES_PER_WORD:.3f} cycles per cascade word (by analogy with the calibrated "
                "epilogue, not measured)")

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        return program_memory_bytes(_dense(e), kernel.role, device)

    # -- codegen and co-simulation -----------------------------------------------------------------------------
    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        d = _dense(e)
        files = dict(codegen.render_layer_sources(d, index, {k.role for k, _ in kernels}, comment))
        files[codegen.weights_header_path(index)] = codegen.render_weights_header(d, index, kernels, comment)
        return files

    def includes(self, e: OpExec, index: int) -> list[str]:
        return [codegen.header_path(index)]

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        return [codegen.weights_header_path(index)]

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        return codegen.kernel_instance(_dense(e), index, kernel, ident)

    def describe(self, e: OpExec, index: int) -> str:
        return codegen.layer_line(_dense(e), index)

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        d = _dense(e)
        return (f"({kernel.role}), K [{kernel.k_start}, {kernel.k_start + d.k_slice}), "
                f"N [{kernel.n_start}, {kernel.n_start + d.n_slice})")

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        d = _dense(e)
        roles = [codegen.source_path(index, r) for r in codegen.layer_roles(d)]
        shared = [codegen.REQUANT_HEADER_PATH] if d.requant is not None else []
        return [codegen.header_path(index), codegen.impl_path(index), *roles, codegen.weights_header_path(index),
                *shared]

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        return native.driver_source(index, entries, codegen.layer_roles(_dense(e)))

    def native_run(self, e: OpExec, kernel: Kernel, trace: Any, iters: int, stem: Any) -> Any:
        return native.run_spec(_dense(e), kernel, trace, iters, stem)

    def native_position(self, e: OpExec, kernel: Kernel, output: str, element: int) -> str:
        return native.position(_dense(e), kernel, output, element)

    # -- reporting ---------------------------------------------------------------------------------------------
    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        d = _dense(e)
        return {
            "k": d.k, "n": d.n, "activation": "relu" if d.relu else "linear",
            "weight_type": graph.tensor(op.inputs[1]).type.describe(),
            "mmul": "x".join(map(str, d.mmul)), "acc": d.acc, "shift": d.shift, "rounding": d.rounding,
            "saturation": d.saturation, "k_slice": d.k_slice, "n_slice": d.n_slice,
            **({"requant": scaled_summary(graph, op, d)} if is_scaled(graph, op) or is_stepped(op) else {}),
        }


def scaled_summary(graph: Graph, op: Op, d: DenseExec) -> dict:
    """Which requantisation a scaled layer's tiles run, and why (an SRS shift when no Requant is kept)."""
    if d.requant is not None:
        return d.requant.to_json() | ({"negated_channels": len(op.attrs["requant_table"]["negated_channels"])}
                                      if is_stepped(op) else {})
    if is_stepped(op):
        return {"kind": "shift", "shift": d.shift, "reason": "the source's map is 2^-shift on every channel: one SRS",
                "accumulator_range": op.attrs["requant_table"]["acc_range"], "cycles_per_32_lanes": 0.0}
    layer = scaled_layer(graph, op)
    return {"kind": "shift", "shift": d.shift, "reason": "every channel's scale is 2^-shift and the offset a whole "
            "number of accumulator steps (folded into the bias): one SRS", "accumulator_range":
            [layer.acc_lo, layer.acc_hi], "cycles_per_32_lanes": 0.0}


def _dense(e: OpExec) -> DenseExec:
    assert isinstance(e, DenseExec), e
    return e

