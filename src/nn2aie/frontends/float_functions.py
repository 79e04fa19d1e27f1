"""Elementwise float functions of one quantized value, as lookup tables read off the source framework.

Between a dequantized value ``x`` (ONNX QDQ: a DequantizeLinear output; QONNX: a Quant output) and the quantizer
of the result, a model may compute any elementwise float function of ``x`` alone: Sigmoid, Tanh, Erf-based GELU
(``x * 0.5 * (1 + erf(x / sqrt 2))``), SiLU (``x * sigmoid(x)``), HardSwish, Exp, Sqrt, Reciprocal, a Div by a
constant, ... The output code is then a function of the input code only, so nn2aie runs the source's own nodes
(onnxruntime for QDQ, qonnx's ``execute_onnx`` for QONNX) on every input code the type allows and keeps the
resulting codes as the op's table: bit-exact with the source by construction, whatever the float arithmetic.

A **region** is the set of float nodes between the value and the quantizer: every node elementwise (the op types
below), every input a constant of one element, ``x`` itself or another region node's output, every region output
read only inside the region, and exactly one quantizer reading the last node. A region is taken as a table only
when it holds an op nn2aie does not compute exactly in integers (the ``FUNCTION_OPS`` or a Div), so the exact
integer ops keep their own handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nn2aie.errors import UnsupportedOpError

# elementwise float ops of one input (and attributes), tabulated
FUNCTION_OPS = ("Sigmoid", "Tanh", "Exp", "Log", "Erf", "Sqrt", "Reciprocal", "Softplus", "Softsign", "Elu", "Selu",
                "Celu", "HardSigmoid", "HardSwish", "Gelu", "Mish", "Abs", "Neg", "Sin", "Cos", "Atan", "Pow",
                "ThresholdedRelu", "Floor", "Ceil", "Round", "Sign")
# elementwise ops that may sit among them (with constants of one element)
ARITH_OPS = ("Mul", "Div", "Add", "Sub", "Relu", "Clip", "LeakyRelu", "Max", "Min", "Identity", "Greater", "Less",
             "GreaterOrEqual", "LessOrEqual", "Equal", "Where", "Not", "Cast")  # (a softplus' threshold select)
INEXACT = (*FUNCTION_OPS, "Div")  # a region is tabulated only when it holds one of these
SELECTION_OPS = ("Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Where", "Not", "Cast")
REGION_ONLY_OPS = (*FUNCTION_OPS, *SELECTION_OPS)  # op types the frontends read only inside a region


@dataclass
class Region:
    """The float nodes computing a function of ``source`` (in a topological order) and the quantizer after them."""

    source: str
    nodes: list[onnx.NodeProto]
    sink: onnx.NodeProto
    wide: list[tuple[onnx.NodeProto, str]] = field(default_factory=list)  # (node, constant of several elements)

    @property
    def inexact(self) -> bool:
        return any(n.op_type in INEXACT for n in self.nodes)

    @property
    def function(self) -> str:
        """A readable name: the op types in order, e.g. ``Sigmoid*Mul``."""
        return "*".join(n.op_type for n in self.nodes)


def find_region(start: onnx.NodeProto, source: str, order: dict[int, int],
                consumers: dict[str, list[onnx.NodeProto]], producer: dict[str, onnx.NodeProto],
                is_const: Callable[[str], bool], const_size: Callable[[str], int], graph_outputs: set[str],
                quantizers: tuple[str, ...], where: Callable[[onnx.NodeProto], str],
                require_inexact: bool = True) -> Region | None:
    """The region ``start`` (a node reading ``source``) belongs to, or None when it is not one (no inexact op
    while ``require_inexact``, a second activation, a float result leaving it). Constants of several elements are
    listed in ``Region.wide`` (``refuse_wide_constants``: such a region has no single table)."""
    allowed = (*FUNCTION_OPS, *ARITH_OPS)
    if start.op_type not in allowed or start.domain not in ("", "ai.onnx"):
        return None
    members: dict[int, onnx.NodeProto] = {id(start): start}
    sinks: dict[int, onnx.NodeProto] = {}
    changed = True
    while changed:
        changed = False
        for node in list(members.values()):
            for out in node.output:  # forward: who reads the node's float result
                if out in graph_outputs:
                    return None
                for user in consumers.get(out, []):
                    if id(user) in members or id(user) in sinks:
                        continue
                    if user.op_type in quantizers:
                        sinks[id(user)] = user
                    elif user.op_type in allowed and user.domain in ("", "ai.onnx"):
                        members[id(user)] = user
                        changed = True
                    else:
                        return None
            for name in node.input:  # backward: a float input computed from the source by an allowed op
                if not name or name == source or is_const(name):
                    continue
                p = producer.get(name)
                if p is None or id(p) in members:
                    continue
                if p.op_type not in allowed or p.domain not in ("", "ai.onnx"):
                    return None
                members[id(p)] = p
                changed = True
    nodes = sorted(members.values(), key=lambda n: order[id(n)])
    if require_inexact and not any(n.op_type in INEXACT for n in nodes):
        return None
    outputs = {o for n in nodes for o in n.output}
    for node in nodes:
        for name in node.input:
            if name and name != source and name not in outputs and not is_const(name):
                return None
    if len(sinks) != 1:
        return None
    sink = next(iter(sinks.values()))
    if sink.input[0] not in outputs or any(i in outputs for i in sink.input[1:]):
        return None
    wide = [(node, name) for node in nodes for name in node.input
            if name and name != source and name not in outputs and const_size(name) != 1]
    return Region(source, nodes, sink, wide)


def refuse_wide_constants(region: Region, const_size: Callable[[str], int],
                          where: Callable[[onnx.NodeProto], str]) -> None:
    """A region to be tabulated must read scalar constants only (a per-channel function has no single table)."""
    if region.wide:
        node, name = region.wide[0]
        raise UnsupportedOpError(where(node), f"the elementwise function of {region.source} reads the constant "
                                 f"{name} of {const_size(name)} elements: one table per channel is not supported "
                                 "yet", "use scalar constants in the activation function")


def region_model(region: Region, const_nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                 opsets: list[onnx.OperatorSetIdProto], n: int, out_type: int,
                 dequantize: tuple[int, float, int] | None = None) -> onnx.ModelProto:
    """A model computing the region and its quantizer on ``n`` inputs: ``const_nodes`` (Q / DQ of the constants
    it reads), the region's nodes, ``region.sink``. ``dequantize = (code type, scale, zero point)``: the model
    reads integer codes (``nn2aie_codes``) and dequantizes them into ``region.source``, as a DequantizeLinear does;
    None: it reads the float values of ``region.source`` directly (a QONNX Quant output)."""
    first, in_type, extra, front = region.source, onnx.TensorProto.FLOAT, [], []
    if dequantize is not None:
        code_type, scale, zero = dequantize
        first, in_type = "nn2aie_codes", code_type
        zp_type = {onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT16: np.int16,
                   onnx.TensorProto.UINT16: np.uint16}[code_type]
        extra = [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), "nn2aie_scale"),
                 numpy_helper.from_array(np.asarray(zero, dtype=zp_type), "nn2aie_zero")]
        front = [helper.make_node("DequantizeLinear", [first, "nn2aie_scale", "nn2aie_zero"], [region.source])]
    nodes = [*front, *const_nodes, *region.nodes, region.sink]
    needed = sorted({i for node in nodes for i in node.input if i in consts})
    graph = helper.make_graph(
        nodes, "function", [helper.make_tensor_value_info(first, in_type, [n])],
        [helper.make_tensor_value_info(region.sink.output[0], out_type, [n])],
        [numpy_helper.from_array(np.asarray(consts[i]), i) for i in needed] + extra)
    return helper.make_model(graph, opset_imports=list(opsets))


def trimmed_table(codes: np.ndarray, out: np.ndarray) -> tuple[int, np.ndarray]:
    """``(lo, table)`` of a function given on consecutive input ``codes``: the constant run at each end is cut
    down to one entry (the lookup clamps there), keeping ``lo <= 0`` when the codes reach 0 (a lookup's bias
    is not negative)."""
    out = np.asarray(out, dtype=np.int64)
    first, n = int(codes[0]), out.size
    differs_first, differs_last = out != out[0], out != out[-1]
    head = int(np.argmax(differs_first)) - 1 if differs_first.any() else n - 1  # last index of the first run
    tail = n - int(np.argmax(differs_last[::-1])) if differs_last.any() else 0  # first index of the last run
    start = min(head, max(0, -first))  # code first + start <= 0 where the run allows it
    end = max(tail, start)
    return first + start, out[start:end + 1]
