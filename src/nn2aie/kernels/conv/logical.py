"""Logical semantics of the conv family (docs/ops.md): verify and the exact integer model of ``conv`` and
``pool``.

A ``pool`` op takes one activation ``[*spatial, C]`` and gives ``[*out, C]`` of the same type: attribute ``op``
(``max``: the largest code of each window's real elements, padding never wins, as ONNX MaxPool; kernels/
pool_semantics.py), ``kernel``, ``strides``, ``dilations``, ``pads_begin``, ``pads_end``, ``ceil_mode``.

A ``conv`` op takes ``[x, W]`` or ``[x, W, b]``: ``x`` an activation ``[*spatial, C]`` (channels last: ``[L, C]``
or ``[H, W, C]`` per event), ``W`` a constant ``[taps * C / groups, M]`` -- the convolution's im2col matrix, rows
ordered (kernel position row-major, then input channel of the group; ir/conv_semantics.py) -- and ``b`` a
constant ``[M]``; the output is ``[*out, M]``. Attributes: ``kernel``, ``strides``, ``dilations``, ``pads_begin``,
``pads_end`` (one entry per spatial axis), ``groups`` and ``activation`` (linear | relu). The sums are exact
(padding adds the input's zero point, i.e. the real value 0); bias, ReLU and the requantisation are the linear
numerics shared with dense (kernels/linear.py), so float scales and epilogues read off the source work alike.
"""

from __future__ import annotations

import numpy as np

from nn2aie.ir.conv_semantics import ConvGeometry, exact_conv
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.pool_semantics import PoolGeometry, exact_max
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.family import Fail
from nn2aie.kernels.linear import evaluate_linear

POOL_OPS = ("max",)

ACTIVATIONS = ("linear", "relu")
GEOMETRY_ATTRS = ("kernel", "strides", "dilations", "pads_begin", "pads_end")


def geometry(graph: Graph, op: Op) -> ConvGeometry:
    x = graph.tensor(op.inputs[0])
    w = graph.tensor(op.inputs[1])
    a = op.attrs
    return ConvGeometry(tuple(x.shape[:-1]), int(x.shape[-1]), tuple(a["kernel"]), int(w.shape[1]),
                        tuple(a["strides"]), tuple(a["dilations"]), tuple(a["pads_begin"]), tuple(a["pads_end"]),
                        int(a.get("groups", 1)))


def pad_code(graph: Graph, op: Op) -> int:
    """The code of the real value 0 in the input: what the source's zero padding adds."""
    t = graph.tensor(op.inputs[0]).type
    return t.zero_point_of(0) if isinstance(t, ScaledType) else 0


def pool_geometry(graph: Graph, op: Op) -> PoolGeometry:
    x = graph.tensor(op.inputs[0])
    a = op.attrs
    return PoolGeometry(tuple(x.shape[:-1]), tuple(a["kernel"]), tuple(a["strides"]), tuple(a["pads_begin"]),
                        tuple(a["pads_end"]), tuple(a["dilations"]), bool(a.get("ceil_mode", False)))


def verify_pool(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        fail(where, "pool takes one input and gives one output")
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    for t in (x, y):
        if not isinstance(t.type, FixedType | ScaledType) or t.is_const:
            fail(where, f"tensor {t.name} is not an integer activation")
    if op.attrs.get("op") not in POOL_OPS:
        fail(where, f"pool op {op.attrs.get('op')!r} unknown (known: {', '.join(POOL_OPS)})")
    if x.type != y.type:
        fail(where, "a max pool selects codes: input and output types must be equal")
    for key in GEOMETRY_ATTRS:
        v = op.attrs.get(key)
        if not isinstance(v, list | tuple) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            fail(where, f"attribute {key} {v!r} must be a list of integers")
    if len(x.shape) < 2:
        fail(where, f"input shape {x.shape} has no spatial axis")
    geo = pool_geometry(graph, op)
    why = geo.problem()
    if why is not None:
        fail(where, why)
    if tuple(y.shape) != (*geo.out_spatial, x.shape[-1]):
        fail(where, f"output shape {y.shape} does not match the window ({[*geo.out_spatial, x.shape[-1]]})")


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    if op.kind == "pool":
        verify_pool(graph, op, fail)
        return
    where = f"op {op.name}"
    if len(op.inputs) not in (2, 3) or len(op.outputs) != 1:
        fail(where, "conv takes [x, W] or [x, W, b] and gives one output")
    x, w, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    for t in (x, w, y):
        if not isinstance(t.type, FixedType | ScaledType):
            fail(where, f"tensor {t.name} is not integer (fixed point or scaled)")
    if x.is_const or y.is_const:
        fail(where, "the input and output of a conv op are activations")
    if not w.is_const or w.data is None or w.data.shape != tuple(w.shape) or len(w.shape) != 2:
        fail(where, "weights must be a constant [taps * C / groups, M] array")
    for key in GEOMETRY_ATTRS:
        v = op.attrs.get(key)
        if not isinstance(v, list | tuple) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            fail(where, f"attribute {key} {v!r} must be a list of integers")
    groups = op.attrs.get("groups", 1)
    if not isinstance(groups, int) or isinstance(groups, bool):
        fail(where, f"groups {groups!r} must be an integer")
    if len(x.shape) < 2:
        fail(where, f"input shape {x.shape} has no spatial axis")
    geo = geometry(graph, op)
    why = geo.problem()
    if why is not None:
        fail(where, why)
    taps = int(np.prod(geo.kernel))
    if tuple(w.shape) != (taps * geo.channels // geo.groups, geo.filters):
        fail(where, f"weights {w.shape} do not match {taps} taps x {geo.channels // geo.groups} channels per group")
    if tuple(y.shape) != (*geo.out_spatial, geo.filters):
        fail(where, f"output shape {y.shape} does not match the geometry ({[*geo.out_spatial, geo.filters]})")
    if len(op.inputs) == 3:
        b = graph.tensors[op.inputs[2]]
        if not b.is_const or b.data is None or b.data.shape != (geo.filters,):
            fail(where, "bias must be a constant [M] array")
    for t in [w] + ([graph.tensors[op.inputs[2]]] if len(op.inputs) == 3 else []):
        d = t.data
        if d is None or d.min(initial=0) < t.type.min_code or d.max(initial=0) > t.type.max_code:
            fail(f"tensor {t.name}", "constant codes outside the range of its type")
    if op.attrs.get("activation", "linear") not in ACTIVATIONS:
        fail(where, f"activation {op.attrs.get('activation')} unknown")


def kernel_weights(graph: Graph, op: Op) -> np.ndarray:
    """The weights as ``[*kernel, C / groups, M]`` (int64)."""
    geo = geometry(graph, op)
    w = graph.tensor(op.inputs[1]).data.astype(np.int64)
    return w.reshape(*geo.kernel, geo.channels // geo.groups, geo.filters)


def exact_sums(graph: Graph, op: Op, x: np.ndarray) -> np.ndarray:
    """Exact sums (bias not added) of input codes ``x`` [events, *spatial, C] -> [events, *out, M] int64."""
    return exact_conv(x, kernel_weights(graph, op), geometry(graph, op), pad_code(graph, op))


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    x = np.asarray(inputs[0], dtype=np.int64)
    if op.kind == "pool":
        return [exact_max(x, pool_geometry(graph, op))]
    return [evaluate_linear(graph, op, exact_sums(graph, op, x))]
