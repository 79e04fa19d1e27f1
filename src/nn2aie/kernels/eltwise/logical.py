"""Logical semantics of the eltwise family (docs/ops.md): verify and the exact integer model.

Every op computes its result exactly as an integer at a stated fraction (int64: ``verify`` proves from the types
that every intermediate stays below 2**62), then ``ir.evaluate.requantize`` brings it into the output type."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.evaluate import requantize
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.family import Fail

BINARY = ("add", "sub", "mul", "max", "min")
UNARY = ("relu", "clip", "leaky_relu", "identity", "quantize", "affine")
TABLED = ("lut",)  # a function of one activation given by a constant table of its output codes (second input)
OPS = BINARY + UNARY + TABLED
MAX_LUT_INPUT_BITS = 16
EXACT_LIMIT = 1 << 62  # every exact intermediate stays below this (int64 arithmetic)


def element_types(op: Op, n: int) -> list[FixedType | None]:
    """The per-element types of a ``quantize`` op (attribute ``elements``: widths, fracs, signedness per element
    of the event, row-major, one rounding and overflow for all): None for a 0-bit element (always 0)."""
    el = op.attrs["elements"]
    out: list[FixedType | None] = []
    for w, f, sg in zip(el["width"], el["frac"], el["signed"], strict=True):
        out.append(None if int(w) == 0 else FixedType(int(w), int(f), bool(sg), el["rounding"], el["overflow"]))
    if len(out) != n:
        raise ValueError(f"{len(out)} element types for {n} elements")
    return out


def _max_abs(t: Tensor) -> int:
    """Largest code magnitude of a tensor: from its data for a constant, from its type otherwise."""
    if t.data is not None:
        return int(np.abs(t.data).max(initial=0))
    assert isinstance(t.type, FixedType)
    return max(abs(t.type.min_code), abs(t.type.max_code))


def _bound(value) -> tuple[int, int] | None:
    """A clip bound attribute: None, or (code, frac)."""
    if value is None:
        return None
    code, frac = value
    return int(code), int(frac)


def result_frac(graph: Graph, op: Op) -> int:
    """The fraction of the op's exact result (docs/ops.md, the table of eltwise ops)."""
    kind = op.attrs["op"]
    if kind in ("affine", "lut"):
        return 0  # a table of the input code: no exact result at a fraction
    fa = graph.tensor(op.inputs[0]).type.frac
    if kind in ("add", "sub", "max", "min"):
        return max(fa, graph.tensor(op.inputs[1]).type.frac)
    if kind == "mul":
        return fa + graph.tensor(op.inputs[1]).type.frac
    if kind == "clip":
        fracs = [fa] + [b[1] for b in (_bound(op.attrs.get("lo")), _bound(op.attrs.get("hi"))) if b is not None]
        return max(fracs)
    if kind == "leaky_relu":
        return fa + int(op.attrs["alpha_shift"])
    if kind in ("quantize", "affine"):
        return graph.tensor(op.outputs[0]).type.frac
    return fa  # relu, identity


def result_bound(graph: Graph, op: Op) -> int:
    """An upper bound on |exact result| and every intermediate, in units of 2**-result_frac."""
    kind = op.attrs["op"]
    a = graph.tensor(op.inputs[0])
    f = result_frac(graph, op)
    am = _max_abs(a)
    if kind in ("add", "sub", "max", "min"):
        b = graph.tensor(op.inputs[1])
        return (am << (f - a.type.frac)) + (_max_abs(b) << (f - b.type.frac))
    if kind == "mul":
        return am * _max_abs(graph.tensor(op.inputs[1]))
    if kind == "clip":
        out = am << (f - a.type.frac)
        for b in (_bound(op.attrs.get("lo")), _bound(op.attrs.get("hi"))):
            if b is not None:
                out = max(out, abs(b[0]) << (f - b[1]))
        return out
    if kind == "leaky_relu":
        return am << int(op.attrs["alpha_shift"])
    if kind == "quantize":
        y = graph.tensor(op.outputs[0]).type
        return max(abs(y.min_code), abs(y.max_code), am << max(0, f - a.type.frac))
    if kind == "affine":
        y = graph.tensor(op.outputs[0]).type
        return max(abs(y.min_code), abs(y.max_code), am)
    return am


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    where = f"op {op.name}"
    kind = op.attrs.get("op")
    if kind not in OPS:
        fail(where, f"eltwise op {kind!r} is unknown (known: {', '.join(OPS)})")
    arity = 2 if kind in BINARY + TABLED else 1
    if len(op.inputs) != arity or len(op.outputs) != 1:
        fail(where, f"eltwise {kind} takes {arity} input(s) and gives one output")
    if kind == "lut":
        verify_lut(graph, op, fail)
        return
    a, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    ts = [graph.tensors[t] for t in op.inputs] + [y]
    for t in ts:  # an affine op's table holds its scales: per-tensor float scales are its codes' business only
        if not isinstance(t.type, FixedType) and not (kind == "affine" and isinstance(t.type, ScaledType)
                                                      and t.type.channels == 1):
            fail(where, f"tensor {t.name} is not fixed point")
    if a.is_const:
        fail(where, "the first input of an eltwise op must be an activation (constants go second)")
    if y.is_const:
        fail(where, "the output must be an activation")
    if tuple(y.shape) != tuple(a.shape):
        fail(where, f"output shape {y.shape} differs from the input shape {a.shape}")
    if arity == 2:
        b = graph.tensors[op.inputs[1]]
        if b.is_const:
            ok = tuple(b.shape) in ((), tuple(a.shape)) or (len(a.shape) >= 1 and tuple(b.shape) == (a.shape[-1],))
            if not ok:
                fail(where, f"constant operand of shape {b.shape} is neither a scalar, a per-channel vector of "
                     f"a's last axis nor of a's shape {a.shape}")
            if b.data is None or b.data.shape != tuple(b.shape):
                fail(f"tensor {b.name}", "constant data does not match its shape")
            if b.data.min(initial=0) < b.type.min_code or b.data.max(initial=0) > b.type.max_code:
                fail(f"tensor {b.name}", "constant codes outside the range of its type")
        elif tuple(b.shape) != tuple(a.shape):
            fail(where, f"operand shapes {a.shape} and {b.shape} differ (two activations must have one shape)")
    if kind == "clip":
        for key in ("lo", "hi"):
            value = op.attrs.get(key)
            if value is not None and (not isinstance(value, list | tuple) or len(value) != 2
                                      or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                fail(where, f"clip bound {key}={value!r} must be null or [code, frac] (two integers)")
    elif "lo" in op.attrs or "hi" in op.attrs:
        fail(where, "only clip takes the bounds lo / hi")
    if kind == "quantize":
        el = op.attrs.get("elements")
        n = int(np.prod(a.shape))
        if not isinstance(el, dict) or any(len(el.get(key, ())) != n for key in ("width", "frac", "signed")):
            fail(where, f"quantize needs 'elements' with width, frac and signed for each of the {n} elements")
        try:
            types = element_types(op, n)
        except (ValueError, TypeError) as exc:
            fail(where, f"bad element types ({exc})")
        yt = y.type
        for idx, t in enumerate(types):
            if t is not None and (t.frac > yt.frac or (t.min_code << (yt.frac - t.frac)) < yt.min_code
                                  or (t.max_code << (yt.frac - t.frac)) > yt.max_code):
                fail(where, f"element {idx}'s type {t.describe()} is not held exactly by the output type "
                     f"{yt.describe()}")
    elif "elements" in op.attrs:
        fail(where, "only quantize takes per-element types")
    if kind == "affine":
        table = op.attrs.get("requant_table")
        channels = int(a.shape[-1]) if a.shape else 1
        if not isinstance(table, dict) or len(table.get("thresholds", ())) != channels:
            fail(where, f"affine needs 'requant_table' with thresholds for each of the {channels} channels")
        lo, hi = table["clamp"]
        if lo < y.type.min_code or hi > y.type.max_code:
            fail(where, f"affine codes [{lo}, {hi}] leave the output type {y.type.describe()}")
    elif "requant_table" in op.attrs:
        fail(where, "only affine takes a requant_table")
    if kind == "leaky_relu":
        s = op.attrs.get("alpha_shift")
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            fail(where, f"alpha_shift={s!r} must be an integer >= 0 (slope 2**-alpha_shift)")
    elif "alpha_shift" in op.attrs:
        fail(where, "only leaky_relu takes alpha_shift")
    if kind != "affine" and result_bound(graph, op) >= EXACT_LIMIT:
        fail(where, "the exact result needs more than 62 bits (operand fractions too far apart)")


def verify_lut(graph: Graph, op: Op, fail: Fail) -> None:
    """A lookup table: ``y = table[clip(x - lo, 0, entries - 1)]`` with ``table`` the constant second input (the
    output code of every input code from ``lo``; beyond its ends the function is constant), attribute ``lo``."""
    where = f"op {op.name}"
    a, table, y = (graph.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    for t in (a, y):
        if not isinstance(t.type, FixedType | ScaledType) or (isinstance(t.type, ScaledType) and t.type.channels != 1):
            fail(where, f"tensor {t.name} is neither fixed point nor scaled per tensor")
    if a.is_const or y.is_const:
        fail(where, "a lookup table reads an activation and writes one")
    if a.type.width > MAX_LUT_INPUT_BITS:
        fail(where, f"the input has {a.type.width} bits; a table is indexed by at most {MAX_LUT_INPUT_BITS}")
    if tuple(y.shape) != tuple(a.shape):
        fail(where, f"output shape {y.shape} differs from the input shape {a.shape}")
    if not table.is_const or len(table.shape) != 1 or table.shape[0] < 1 or table.data is None \
            or table.data.shape != tuple(table.shape):
        fail(where, f"the table {table.name} must be a constant vector of output codes")
    if table.type != y.type:
        fail(where, f"the table's type {table.type.describe()} differs from the output's {y.type.describe()}")
    if table.data.min() < y.type.min_code or table.data.max() > y.type.max_code:
        fail(f"tensor {table.name}", "table codes outside the range of the output type")
    lo = op.attrs.get("lo")
    if not isinstance(lo, int) or isinstance(lo, bool):
        fail(where, f"lo={lo!r} must be an integer (the input code of the table's first entry)")
    if lo < a.type.min_code or lo + table.shape[0] - 1 > a.type.max_code:
        fail(where, f"the table covers input codes [{lo}, {lo + table.shape[0] - 1}], outside the input type's "
             f"[{a.type.min_code}, {a.type.max_code}]")
    unknown = set(op.attrs) - {"op", "lo", "function"}
    if unknown:
        fail(where, f"unknown attributes {sorted(unknown)} of a lookup table")


def lut_lookup(codes: np.ndarray, table: np.ndarray, lo: int) -> np.ndarray:
    """``table[clip(x - lo, 0, len - 1)]``: the logical model of a lookup table (int64)."""
    table = np.asarray(table, dtype=np.int64)
    return table[np.clip(np.asarray(codes, dtype=np.int64) - lo, 0, table.size - 1)]


def _aligned(x: np.ndarray, shift: int) -> np.ndarray:
    return np.asarray(x, dtype=np.int64) << np.int64(shift)


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    kind = op.attrs["op"]
    a_t = graph.tensor(op.inputs[0])
    y_t = graph.tensor(op.outputs[0])
    if kind == "lut":
        return [lut_lookup(inputs[0], graph.tensor(op.inputs[1]).data, int(op.attrs["lo"]))]
    if kind == "affine":  # per channel (last axis): the source's step function of the (oriented) input code
        table = op.attrs["requant_table"]
        x = np.asarray(inputs[0], dtype=np.int64)
        sign = np.ones(x.shape[-1], dtype=np.int64)
        sign[list(table["negated_channels"])] = -1
        t = np.asarray(table["thresholds"], dtype=np.int64)  # [C, levels]
        return [(int(table["clamp"][0]) + ((x * sign)[..., None] >= t).sum(axis=-1)).astype(np.int64)]
    assert isinstance(y_t.type, FixedType)
    f = result_frac(graph, op)
    a = _aligned(inputs[0], f - a_t.type.frac) if kind != "leaky_relu" and kind != "mul" else \
        np.asarray(inputs[0], dtype=np.int64)
    if kind in BINARY:
        b_t = graph.tensor(op.inputs[1])
        if kind == "mul":
            acc = a * np.asarray(inputs[1], dtype=np.int64)
        else:
            b = _aligned(inputs[1], f - b_t.type.frac)
            acc = {"add": np.add, "sub": np.subtract, "max": np.maximum, "min": np.minimum}[kind](a, b)
    elif kind == "relu":
        acc = np.maximum(a, 0)
    elif kind == "clip":
        acc = a
        lo, hi = _bound(op.attrs.get("lo")), _bound(op.attrs.get("hi"))
        if lo is not None:
            acc = np.maximum(acc, np.int64(lo[0]) << np.int64(f - lo[1]))
        if hi is not None:
            acc = np.minimum(acc, np.int64(hi[0]) << np.int64(f - hi[1]))
    elif kind == "leaky_relu":
        acc = np.where(a >= 0, a << np.int64(int(op.attrs["alpha_shift"])), a)
    elif kind == "quantize":  # per element: the element's own requantisation, then exactly into the output grid
        x = np.asarray(inputs[0], dtype=np.int64)
        flat = x.reshape(x.shape[0], -1)
        out = np.zeros_like(flat)
        where = f"op {op.name}"
        for idx, t in enumerate(element_types(op, flat.shape[1])):
            if t is not None:
                out[:, idx] = requantize(flat[:, idx], a_t.type.frac, t, where) << np.int64(y_t.type.frac - t.frac)
        return [out.reshape(x.shape)]
    else:  # identity
        acc = a
    where = f"op {op.name} output tensor {y_t.origin or y_t.name}"
    return [requantize(np.asarray(acc, dtype=np.int64), f, y_t.type, where)]
