"""The dense family behind the common interface (kernels/family.py)."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.evaluate import accumulator_frac, bias_in_accumulator, exact_matmul, requantize
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.kernels.family import Fail, OpFamily

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
            if not isinstance(t.type, FixedType):
                fail(f"op {op.name}", f"tensor {t.name} is not fixed point")
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
        x, w = inputs[0], graph.tensor(op.inputs[1]).data
        acc = exact_matmul(x, w)
        bias = bias_in_accumulator(graph, op)
        if bias is not None:
            acc = acc + bias
        if op.attrs.get("activation") == "relu":  # on the exact sum, before requantisation
            acc = np.maximum(acc, 0)
        y_t = graph.tensor(op.outputs[0])
        assert isinstance(y_t.type, FixedType)
        where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
        return [requantize(acc, accumulator_frac(graph, op), y_t.type, where)]
