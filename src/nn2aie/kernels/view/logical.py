"""Logical semantics of the view family (docs/ops.md): verify and the exact integer model.

Views move data only: the output type equals every input type (a frontend inserts an eltwise ``identity`` where
the source requantises). Axes are per-event; the evaluated arrays carry the events axis first."""

from __future__ import annotations

import math

import numpy as np

from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.family import Fail


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    ins = [graph.tensors[t] for t in op.inputs]
    outs = [graph.tensors[t] for t in op.outputs]
    if len(outs) != 1:
        fail(where, f"{op.kind} gives one output")
    if op.kind == "concat":
        if len(ins) < 2:
            fail(where, "concat takes at least two inputs")
    elif len(ins) != 1:
        fail(where, f"{op.kind} takes one input")
    for t in ins + outs:
        if not isinstance(t.type, FixedType | ScaledType):  # views move codes: any integer type
            fail(where, f"tensor {t.name} is not integer codes")
        if t.is_const:
            fail(where, f"tensor {t.name} is a constant; views take and give activations")
    y = outs[0]
    for t in ins:
        if t.type != y.type:
            fail(where, f"input {t.name} has type {t.type.describe()} but the output has {y.type.describe()} "
                 "(views keep types; requantise with an eltwise identity first)")
    a = ins[0]
    rank = len(a.shape)
    if op.kind == "reshape":
        if math.prod(a.shape) != math.prod(y.shape):
            fail(where, f"reshape from {a.shape} to {y.shape} changes the number of elements")
    elif op.kind == "transpose":
        perm = op.attrs.get("perm")
        if not isinstance(perm, list | tuple) or sorted(perm) != list(range(rank)) or not all(map(_is_int, perm)):
            fail(where, f"perm {perm!r} is not a permutation of the {rank} per-event axes")
        if tuple(y.shape) != tuple(a.shape[p] for p in perm):
            fail(where, f"output shape {y.shape} is not {a.shape} permuted by {perm}")
    elif op.kind == "concat":
        axis = op.attrs.get("axis")
        if not _is_int(axis) or not 0 <= axis < rank:
            fail(where, f"axis {axis!r} is not a per-event axis of rank {rank}")
        for t in ins:
            if len(t.shape) != rank or any(t.shape[i] != a.shape[i] for i in range(rank) if i != axis):
                fail(where, f"input shapes {[t.shape for t in ins]} differ outside axis {axis}")
        want = tuple(sum(t.shape[axis] for t in ins) if i == axis else a.shape[i] for i in range(rank))
        if tuple(y.shape) != want:
            fail(where, f"output shape {y.shape} is not the concatenation {want}")
    elif op.kind == "slice":
        axis, start, end = op.attrs.get("axis"), op.attrs.get("start"), op.attrs.get("end")
        if not _is_int(axis) or not 0 <= axis < rank:
            fail(where, f"axis {axis!r} is not a per-event axis of rank {rank}")
        if not (_is_int(start) and _is_int(end) and 0 <= start < end <= a.shape[axis]):
            fail(where, f"slice [{start!r}, {end!r}) is not within 0 <= start < end <= {a.shape[axis]}")
        want = tuple(end - start if i == axis else a.shape[i] for i in range(rank))
        if tuple(y.shape) != want:
            fail(where, f"output shape {y.shape} is not {want}")
    else:
        fail(where, f"unknown view kind {op.kind}")


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    a = np.asarray(inputs[0], dtype=np.int64)
    events = a.shape[0]
    y = graph.tensor(op.outputs[0])
    if op.kind == "reshape":
        out = a.reshape((events,) + tuple(y.shape))
    elif op.kind == "transpose":
        out = np.transpose(a, [0] + [p + 1 for p in op.attrs["perm"]])
    elif op.kind == "concat":
        out = np.concatenate([np.asarray(x, dtype=np.int64) for x in inputs], axis=op.attrs["axis"] + 1)
    else:  # slice
        index = [slice(None)] * a.ndim
        index[op.attrs["axis"] + 1] = slice(op.attrs["start"], op.attrs["end"])
        out = a[tuple(index)]
    return [np.ascontiguousarray(out)]
