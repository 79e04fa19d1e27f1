"""ONNX QDQ frontend on DAG models: fan-out, residual adds, concat, reductions, views, eltwise ops with constants.

Every model is built here with ``onnx.helper``. The check: the logical graph (``load_qdq``) evaluated with
``nn2aie.ir.evaluate.evaluate`` on the QuantizeLinear codes of float inputs (``cast_float``) equals onnxruntime's
output with ``np.array_equal`` on 2000 inputs, 300 of them 10x beyond the calibration range (every QuantizeLinear
saturates somewhere) and 200 on exact rounding ties of the input QuantizeLinear. Scales are picked from a small
calibration batch so outputs are neither all zero nor all saturated. The references are onnxruntime's outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.errors import BadFileError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.examples.builders import make_qdq_variant
from nn2aie.frontends.onnx_qdq import load_qdq, run_reference
from nn2aie.ir.evaluate import cast_float, evaluate
from nn2aie.ir.logical import Graph

ort = pytest.importorskip("onnxruntime")

N_SAMPLES, N_WILD, N_TIES = 2000, 300, 200
INT8, UINT8, INT16, INT32 = TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.INT32
_NP = {INT8: np.int8, UINT8: np.uint8, INT16: np.int16, INT32: np.int32}
_RANGE = {INT8: (-128, 127), UINT8: (0, 255), INT16: (-32768, 32767), INT32: (-(1 << 31), (1 << 31) - 1)}


# -- building models ------------------------------------------------------------------------------------------
@dataclass
class V:
    """A quantized value of the model being built: its float tensor name (a DequantizeLinear output, or a view of
    one), its values on the calibration batch (float64, on the grid), fraction and integer type."""

    name: str
    cal: np.ndarray
    frac: int
    dtype: int


class Builder:
    """A QDQ model built node by node; every QuantizeLinear's scale comes from the calibration values (the largest
    power of two that does not clip them), unless given."""

    def __init__(self, opset: int = 21, seed: int = 0):
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.cal_rng = np.random.default_rng([seed, 1])
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.count = 0

    def uid(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def init(self, value, prefix: str = "c") -> str:
        name = self.uid(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, name: str | None = None, **attrs) -> str | list[str]:
        name = name or self.uid(op.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs if n_out > 1 else outs[0]

    def qdq(self, x: str, cal: np.ndarray, dtype: int = INT8, frac: int | None = None, name: str | None = None) -> V:
        lo, hi = _RANGE[dtype]
        if frac is None:
            frac = math.floor(math.log2(hi / max(float(np.abs(cal).max()), 1e-9)))
        name = name or self.uid("q")
        scale = self.init(np.asarray(2.0 ** -frac, np.float32), f"{name}_scale")
        zp = self.init(np.zeros((), _NP[dtype]), f"{name}_zp")
        q = self.node("QuantizeLinear", [x, scale, zp], name=name)
        dq = self.node("DequantizeLinear", [q, scale, zp], name=f"{name}_dq")
        return V(dq, np.clip(np.rint(cal * 2.0**frac), lo, hi) * 2.0**-frac, frac, dtype)

    def input(self, name: str, shape: list[int], frac: int = 5, dtype: int = INT8) -> V:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape]))
        return self.qdq(name, self.cal_rng.standard_normal((256, *shape)), dtype, frac, name=f"{name}_quant")

    def const_dq(self, codes: np.ndarray, frac: int, dtype: int) -> tuple[str, np.ndarray]:
        """DequantizeLinear of an integer initializer: (its float tensor, its values)."""
        c = self.init(np.asarray(codes, _NP[dtype]), "k")
        scale = self.init(np.asarray(2.0 ** -frac, np.float32), "k_scale")
        return self.node("DequantizeLinear", [c, scale]), np.asarray(codes, np.float64) * 2.0**-frac

    def dense(self, v: V, n: int, relu: bool = False, dtype: int | None = None, frac: int | None = None,
              w_frac: int = 7, name: str | None = None) -> V:
        """MatMul(DQ(int8 W)) + DQ(int32 bias) [+ Relu] -> Q -> DQ (works per row for [B, P, F] inputs)."""
        k = v.cal.shape[-1]
        w = self.rng.integers(-127, 128, (k, n))
        acc = v.frac + w_frac
        bias = self.rng.integers(-(1 << acc), (1 << acc) + 1, n)  # about +-1.0
        w_dq, w_val = self.const_dq(w, w_frac, INT8)
        b_dq, b_val = self.const_dq(bias, acc, INT32)
        name = name or self.uid("fc")
        y = self.node("Add", [self.node("MatMul", [v.name, w_dq], name=f"{name}_matmul"), b_dq], name=f"{name}_bias")
        cal = v.cal @ w_val + b_val
        if relu:
            y, cal = self.node("Relu", [y], name=f"{name}_relu"), np.maximum(cal, 0)
        return self.qdq(y, cal, dtype if dtype is not None else (UINT8 if relu else INT8), frac, f"{name}_quant")

    def op(self, op: str, inputs: list[str], cal: np.ndarray, dtype: int = INT8, frac: int | None = None,
           name: str | None = None, **attrs) -> V:
        """A float op on dequantized values, then Q -> DQ."""
        name = name or self.uid(op.lower())
        return self.qdq(self.node(op, inputs, name=name, **attrs), cal, dtype, frac, f"{name}_quant")

    def view(self, op: str, v: V, cal: np.ndarray, inputs: list[str] | None = None, name: str | None = None,
             **attrs) -> V:
        """A view without QuantizeLinear after it: same scale and type."""
        return V(self.node(op, [v.name, *(inputs or [])], name=name, **attrs), cal, v.frac, v.dtype)

    def ints(self, values) -> str:
        return self.init(np.asarray(values, np.int64), "i")

    def output(self, *vals: V) -> None:
        for v in vals:
            shape = ["batch", *v.cal.shape[1:]]
            self.outputs.append(helper.make_tensor_value_info(v.name, TensorProto.FLOAT, shape))

    def model(self, name: str = "dag") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 10
        onnx.checker.check_model(model)
        return model


# -- checking -------------------------------------------------------------------------------------------------
def samples(shape: tuple[int, ...], frac: int = 5, seed: int = 0) -> np.ndarray:
    """Typical inputs, 300 rows 10x beyond the calibration range and 200 rows on exact ties of the input Q."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_SAMPLES, *shape))
    x[:N_TIES] = (rng.integers(-120, 120, (N_TIES, *shape)) + 0.5) * 2.0**-frac
    x[-N_WILD:] *= 10.0
    return x.astype(np.float32)


def onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def logical(graph: Graph, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The logical model's float outputs (in graph output order) and every tensor's codes."""
    codes = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        codes[name] = cast_float(feeds[t.origin].astype(np.float64), t.type, t.origin)  # = QuantizeLinear
    values = evaluate(graph, codes)
    return [(values[o] * graph.tensor(o).type.lsb).astype(np.float32) for o in graph.outputs], values


def assert_bit_exact(model: onnx.ModelProto, feeds: dict[str, np.ndarray] | None = None) -> tuple[Graph, dict]:
    graph = load_qdq(model)
    assert graph.source["reference_exact"] == "yes"
    if feeds is None:
        (vi,) = model.graph.input
        shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim[1:])
        feeds = {vi.name: samples(shape)}
    got, values = logical(graph, feeds)
    if len(feeds) == 1 and len(got) == 1:
        want = [run_reference(model, next(iter(feeds.values())))]  # the frontend's own reference runner
    else:
        want = onnxruntime(model, feeds)
    assert [o.name for o in model.graph.output] == [graph.tensor(o).origin for o in graph.outputs]
    for name, ours, ref in zip(graph.outputs, got, want, strict=True):
        assert ours.shape == ref.shape, name
        bad = np.argwhere(ours != ref)
        assert not len(bad), f"{name}: {len(bad)} values differ, first at {bad[0].tolist()}: " \
                             f"{ours[tuple(bad[0])]} vs onnxruntime {ref[tuple(bad[0])]}"
        assert len(np.unique(ref)) > 8, f"{name}: a trivial output"
    return graph, values


def kinds(graph: Graph) -> list[str]:
    return [op.attrs["op"] if op.kind in ("eltwise", "reduce") else op.kind for op in graph.ops]


# -- models ---------------------------------------------------------------------------------------------------
def test_residual_adds_of_different_scales():
    b = Builder(seed=1)
    x = b.input("x", [16])
    h = b.dense(x, 16, relu=True)  # uint8
    g = b.dense(h, 16, frac=h.frac - 2)  # int8 at another scale; h fans out to g and the add
    r = b.op("Add", [h.name, g.name], h.cal + g.cal, name="add_hg")
    r = b.op("Relu", [r.name], np.maximum(r.cal, 0), UINT8, name="relu_r")  # not foldable: after an eltwise op
    s = b.op("Add", [r.name, x.name], r.cal + x.cal, name="skip")  # a skip connection from the input
    b.output(b.dense(s, 5))
    assert h.frac != g.frac and r.frac != x.frac
    graph, _ = assert_bit_exact(b.model())
    assert kinds(graph) == ["dense", "dense", "add", "relu", "add", "dense"]
    add = graph.op("add_hg")
    assert [graph.tensor(t).type.frac for t in add.inputs] == [h.frac, g.frac]


def test_fan_out_concat_and_two_heads():
    b = Builder(seed=2)
    x = b.input("x", [12])
    a = b.dense(x, 8, relu=True)  # uint8
    c = b.dense(x, 6)  # int8
    cat = b.op("Concat", [a.name, c.name], np.concatenate([a.cal, c.cal], -1), name="cat", axis=1)
    d = b.dense(x, 4, relu=True, frac=a.frac)  # the type of a: a Concat of both needs no QuantizeLinear
    same = b.view("Concat", a, np.concatenate([a.cal, d.cal], -1), [d.name], name="cat_same", axis=-1)
    b.output(b.dense(cat, 4), b.dense(same, 3))
    graph, _ = assert_bit_exact(b.model())
    op = graph.op("cat")
    requantised = [graph.producer(t).attrs.get("op") == "identity" for t in op.inputs]
    assert requantised == [v.dtype != INT8 or v.frac != cat.frac for v in (a, c)]  # an identity where types differ
    assert requantised[0]  # uint8 -> int8
    assert graph.tensor(op.outputs[0]).type.frac == cat.frac
    same_op = graph.op("cat_same")
    assert all(graph.producer(t).kind == "dense" for t in same_op.inputs)


def _mean_ties(graph: Graph, values: dict, op_name: str) -> int:
    """Events whose exact mean lies on a rounding tie of the output type (where round-half-even decides)."""
    op = graph.op(op_name)
    fi, fo = graph.tensor(op.inputs[0]).type.frac, graph.tensor(op.outputs[0]).type.frac
    axes = tuple(a + 1 for a in op.attrs["axes"])
    n = math.prod(graph.tensor(op.inputs[0]).shape[a - 1] for a in axes)
    num = values[op.inputs[0]].sum(axis=axes) * (1 << max(fo - fi, 0))
    den = n << max(fi - fo, 0)
    return int(np.sum((2 * num) % (2 * den) == den))


@pytest.mark.parametrize("opset", [13, 18])
def test_deepsets_mean_sum_max_over_particles(opset):
    """[B, 6 particles, 5 features]: a rank-3 MatMul per particle, ReduceMean / ReduceSum / ReduceMax over the
    particles (axes as attribute for ReduceMean/Max at opset 13, as an input from opset 18; ReduceSum takes an
    input from opset 13), a dense head."""
    b = Builder(opset=opset, seed=3)
    x = b.input("x", [6, 5])
    phi = b.dense(x, 8, relu=True, name="phi")
    by_attr = opset < 18

    def reduce(op: str, cal: np.ndarray, axes: list[int], keep: int, **kw) -> V:
        ins = [phi.name] if by_attr and op != "ReduceSum" else [phi.name, b.ints(axes)]
        attrs = {"axes": axes} if by_attr and op != "ReduceSum" else {}
        return b.op(op, ins, cal, name=op.lower(), keepdims=keep, **attrs, **kw)

    mean = reduce("ReduceMean", phi.cal.mean(1), [-2], 0, frac=phi.frac)  # the input's scale: ties happen
    total = reduce("ReduceSum", phi.cal.sum(1), [1], 0)
    ins = [phi.name] if by_attr else [phi.name, b.ints([1])]
    peak = b.view("ReduceMax", phi, phi.cal.max(1, keepdims=True), ins[1:], name="peak", keepdims=1,
                  **({"axes": [1]} if by_attr else {}))  # no QuantizeLinear: a max is one of its inputs
    flat = b.view("Flatten", peak, peak.cal.reshape(len(peak.cal), -1), axis=1)
    cal = np.concatenate([mean.cal, total.cal, flat.cal], -1)
    cat = b.op("Concat", [mean.name, total.name, flat.name], cal, axis=1)
    b.output(b.dense(cat, 3))
    graph, values = assert_bit_exact(b.model())
    assert graph.tensor(graph.inputs[0]).shape == (6, 5)
    assert graph.tensor(graph.op("phi_matmul").outputs[0]).shape == (6, 8)
    red = {op.attrs["op"]: op for op in graph.ops if op.kind == "reduce"}
    assert red["mean"].attrs == {"op": "mean", "axes": [0], "keepdims": False, "divide": "float32"}
    assert red["sum"].attrs == {"op": "sum", "axes": [0], "keepdims": False}
    assert red["max"].attrs == {"op": "max", "axes": [0], "keepdims": True}
    assert _mean_ties(graph, values, "reducemean") > 50  # round-half-even of the float32 mean is exercised


def test_global_pools():
    b = Builder(seed=4)
    x = b.input("x", [3, 5, 3])  # [B, C, H, W]: 15 pixels per channel
    avg = b.op("GlobalAveragePool", [x.name], x.cal.mean((2, 3), keepdims=True), frac=x.frac - 1,
               name="gap")  # one bit coarser: ties of an odd count exist
    mx = b.view("GlobalMaxPool", x, x.cal.max((2, 3), keepdims=True), name="gmp")
    a = b.view("Flatten", avg, avg.cal.reshape(-1, 3))
    m = b.view("Reshape", mx, mx.cal.reshape(-1, 3), [b.ints([0, 3])])
    b.output(b.dense(a, 4), b.dense(m, 4))
    graph, values = assert_bit_exact(b.model())
    gap = graph.op("gap")
    assert gap.attrs == {"op": "mean", "axes": [1, 2], "keepdims": True, "divide": "float32"}
    assert _mean_ties(graph, values, "gap") > 20


def test_onnxruntime_reduce_mean_divides_the_float32_sum():
    """The reference behind ``divide=float32``: onnxruntime's ReduceMean / GlobalAveragePool of float32 values is
    float32(sum) / float32(n) (IEEE division), not sum * float32(1 / n) — checked where the two differ."""
    rng = np.random.default_rng(5)
    x = (rng.integers(-128, 128, (4000, 3, 7, 5)) * 2.0**-3).astype(np.float32)
    for op, axes in (("ReduceMean", [1, 3]), ("ReduceMean", [2]), ("GlobalAveragePool", [2, 3])):
        ins = ["x"] if op == "GlobalAveragePool" else ["x", "axes"]
        inits = [] if op == "GlobalAveragePool" else [numpy_helper.from_array(np.asarray(axes, np.int64), "axes")]
        graph = helper.make_graph([helper.make_node(op, ins, ["y"])], "m",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 7, 5])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 10
        (got,) = onnxruntime(model, {"x": x})
        n = math.prod(x.shape[a] for a in axes)
        total = x.astype(np.float64).sum(tuple(axes), keepdims=True).astype(np.float32)  # exact: < 2**24 LSBs
        assert np.array_equal(got, total / np.float32(n)), op
        assert not np.array_equal(got, total * (np.float32(1) / np.float32(n))), op


def test_binary_ops_with_constants_and_activations():
    """Sub / Mul / Max / Min / Add of two activations and with constants (float initializers and DQ of int ones,
    scalar / per-channel / full shape, constant first for commutative ops); several graph outputs, one of which
    (h) also feeds further nodes."""
    b = Builder(seed=6)
    x = b.input("x", [12])
    h = b.dense(x, 10, name="h")
    g = b.dense(x, 10, frac=h.frac + 1, name="g")
    outs = [h]
    outs.append(b.op("Sub", [h.name, g.name], h.cal - g.cal, name="sub_hg"))
    outs.append(b.op("Mul", [h.name, g.name], h.cal * g.cal, name="mul_hg"))
    outs.append(b.op("Max", [h.name, g.name], np.maximum(h.cal, g.cal), name="max_hg"))
    per_channel = (b.rng.integers(-8, 9, 10) * 0.25).astype(np.float32)
    outs.append(b.op("Mul", [h.name, b.init(per_channel)], h.cal * per_channel, name="mul_c"))
    k_name, k_val = b.const_dq(np.asarray(10), 4, INT8)
    outs.append(b.op("Max", [h.name, k_name], np.maximum(h.cal, k_val), name="max_k"))
    full = (b.rng.integers(-40, 40, (1, 10)) * 2.0**-5).astype(np.float32)
    outs.append(b.op("Min", [b.init(full), g.name], np.minimum(full, g.cal), name="min_c_first"))
    outs.append(b.op("Add", [b.init(np.float32(0.375)), h.name], 0.375 + h.cal, name="add_c_first"))
    s_name, s_val = b.const_dq(b.rng.integers(-3000, 3000, 10), 9, INT16)
    outs.append(b.op("Sub", [h.name, s_name], h.cal - s_val, name="sub_k16"))
    added = b.node("Add", [h.name, g.name], name="add_relu")  # Add -> Relu -> Q
    outs.append(b.qdq(b.node("Relu", [added], name="add_relu_relu"), np.maximum(h.cal + g.cal, 0), INT8))
    h2 = b.dense(x, 10, frac=h.frac, name="h2")  # h's type: Min(h, h2) stays a value without QuantizeLinear
    low = b.view("Min", h, np.minimum(h.cal, h2.cal), [h2.name], name="min_same")
    outs.append(b.dense(low, 4, name="head"))
    b.output(*outs)
    graph, _ = assert_bit_exact(b.model(), {"x": samples((12,))})
    assert len(graph.outputs) == len(outs)
    for name in ("min_c_first", "add_c_first"):  # the constant went second
        op = graph.op(name)
        assert not graph.tensor(op.inputs[0]).is_const and graph.tensor(op.inputs[1]).is_const
    c = graph.tensor(graph.op("mul_c").inputs[1])
    assert c.shape == (10,) and c.type.frac == 2 and c.type.width == 8
    assert graph.tensor(graph.op("max_k").inputs[1]).shape == ()
    assert graph.tensor(graph.op("min_c_first").inputs[1]).shape == (10,)
    assert graph.tensor(graph.op("sub_k16").inputs[1]).type.width == 16
    assert graph.producer(graph.outputs[len(outs) - 2]).attrs["op"] == "relu"  # Add -> Relu -> Q
    assert graph.op("min_same").attrs["op"] == "min"
    assert graph.consumers(graph.outputs[0])  # h is a graph output and feeds further ops


def test_clip_leaky_relu_and_standalone_relu():
    b = Builder(seed=7)
    x = b.input("x", [12])
    h = b.dense(x, 10, name="h")
    f32 = np.float32
    clip = b.op("Clip", [h.name, b.init(f32(-1.5)), b.init(f32(2.25))], np.clip(h.cal, -1.5, 2.25), frac=h.frac + 1,
                name="clip")
    fine = b.op("Clip", [h.name, b.init(f32(0.1))], np.maximum(h.cal, f32(0.1)), name="clip_fine")  # off-grid bound
    leaky = b.op("LeakyRelu", [h.name], np.where(h.cal >= 0, h.cal, 0.125 * h.cal), frac=h.frac + 2, name="leaky",
                 alpha=0.125)
    relu = b.op("Relu", [h.name], np.maximum(h.cal, 0), UINT8, name="relu_h")  # h fans out: not foldable
    on_grid = b.view("Clip", clip, np.clip(clip.cal, -0.5, 0.75), [b.init(f32(-0.5)), b.init(f32(0.75))],
                     name="clip_grid")  # bounds on the input grid: still a value of the input type
    pos = b.view("Relu", on_grid, np.maximum(on_grid.cal, 0), name="relu_value")  # a Relu without QuantizeLinear
    g = b.dense(x, 10, name="g")
    folded = b.view("Relu", g, np.maximum(g.cal, 0), name="relu_fold")  # Q -> DQ -> Relu after a dense: folds
    requant = b.qdq(folded.name, folded.cal, UINT8, g.frac - 1, name="requant")  # a second rounding: identity
    b.output(clip, fine, leaky, relu, b.dense(pos, 4, name="head"), b.dense(requant, 4, name="head2"))
    graph, _ = assert_bit_exact(b.model(), {"x": samples((12,))})
    assert graph.op("clip").attrs == {"op": "clip", "lo": [-3, 1], "hi": [9, 2]}
    lo = graph.op("clip_fine").attrs["lo"]
    assert lo[0] * 2.0 ** -lo[1] == float(np.float32(0.1)) and graph.op("clip_fine").attrs["hi"] is None
    assert graph.op("leaky").attrs == {"op": "leaky_relu", "alpha_shift": 3}
    assert graph.op("relu_h").attrs == {"op": "relu"}
    assert graph.tensor(graph.op("relu_value").outputs[0]).type == graph.tensor(graph.op("clip_grid").inputs[0]).type
    assert graph.op("g_matmul").attrs["activation"] == "relu"
    assert graph.op("requant").attrs == {"op": "identity"}


def test_clip_attributes_opset_10():
    b = Builder(opset=10, seed=8)
    x = b.input("x", [12])
    b.output(b.op("Clip", [x.name], np.clip(x.cal, -0.75, 1.0), frac=x.frac + 1, name="clip", min=-0.75, max=1.0))
    graph, _ = assert_bit_exact(b.model())
    assert graph.op("clip").attrs == {"op": "clip", "lo": [-3, 2], "hi": [1, 0]}


def test_views_transpose_reshape_slice_split():
    b = Builder(seed=9)
    x = b.input("x", [4, 6])
    t = b.view("Transpose", x, x.cal.transpose(0, 2, 1), name="tr", perm=[0, 2, 1])
    t = b.qdq(t.name, t.cal, INT8, x.frac, name="tr_same")  # the same scale after a view: exact, no op
    r = b.view("Reshape", t, t.cal.reshape(-1, 24), [b.ints([-1, 24])], name="rs")
    u = b.view("Unsqueeze", r, r.cal[:, None], [b.ints([1])], name="unsq")
    s = b.view("Squeeze", u, r.cal, [b.ints([-2])], name="sq")
    ident = b.view("Identity", s, s.cal, name="ident")
    sl = b.view("Slice", ident, ident.cal[:, 2:20], [b.ints([2]), b.ints([20]), b.ints([1])], name="sl")
    p0, p1 = b.node("Split", [sl.name, b.ints([10, 8])], n_out=2, name="split", axis=1)
    coarse = b.qdq(p1, sl.cal[:, 10:], INT8, x.frac - 1, name="coarse")  # a different scale: identity
    both = b.view("Slice", x, x.cal[:, 1:3, :-1], [b.ints([1, 0]), b.ints([3, -1]), b.ints([1, 2])], name="sl2")
    flat = b.view("Flatten", both, both.cal.reshape(-1, 10), name="flat")
    b.output(b.dense(V(p0, sl.cal[:, :10], x.frac, INT8), 5, name="h0"), b.dense(coarse, 5, name="h1"),
             b.dense(flat, 5, name="h2"))
    graph, _ = assert_bit_exact(b.model(), {"x": samples((4, 6))})
    ops = {op.name: op for op in graph.ops}
    assert ops["tr"].attrs == {"perm": [1, 0]} and graph.tensor(ops["tr"].outputs[0]).shape == (6, 4)
    assert "tr_same" not in ops and "ident" not in ops
    assert [ops[n].kind for n in ("rs", "unsq", "sq")] == ["reshape"] * 3
    assert ops["sl"].attrs == {"axis": 0, "start": 2, "end": 20}
    assert [ops[n].attrs for n in ("split", "split_2")] == [{"axis": 0, "start": 0, "end": 10},
                                                             {"axis": 0, "start": 10, "end": 18}]
    assert ops["coarse"].attrs == {"op": "identity"}
    assert [ops[n].attrs for n in ("sl2", "sl2_2")] == [{"axis": 0, "start": 1, "end": 3},
                                                         {"axis": 1, "start": 0, "end": 5}]


def test_split_equal_parts_opset_18():
    b = Builder(opset=18, seed=10)
    x = b.input("x", [3, 7])
    parts = b.node("Split", [x.name], n_out=3, name="split", axis=-1, num_outputs=3)  # 3, 3, 1
    heads = [b.dense(V(p, x.cal[..., 3 * i:3 * i + 3], x.frac, INT8), 4, name=f"h{i}") for i, p in enumerate(parts)]
    b.output(*heads)
    graph, _ = assert_bit_exact(b.model(), {"x": samples((3, 7))})
    assert [graph.op(n).attrs["end"] for n in ("split", "split_2", "split_3")] == [3, 6, 7]


def test_two_graph_inputs():
    b = Builder(seed=11)
    x1, x2 = b.input("x1", [8]), b.input("x2", [8], frac=4)
    s = b.op("Add", [x1.name, x2.name], x1.cal + x2.cal, name="add")
    b.output(b.dense(s, 4))
    feeds = {"x1": samples((8,), seed=1), "x2": samples((8,), frac=4, seed=2)}
    graph, _ = assert_bit_exact(b.model(), feeds)
    assert [graph.tensor(t).origin for t in graph.inputs] == ["x1", "x2"]


def test_builder_variant_with_an_internal_output_now_loads():
    """The ``two_outputs`` variant: a DequantizeLinear output that is a graph output and feeds the next layer."""
    model, node = make_qdq_variant("two_outputs")
    graph, _ = assert_bit_exact(model, {"x": samples((8,))})
    assert [graph.tensor(t).origin for t in graph.outputs] == ["y", node]
    assert graph.consumers(graph.outputs[1])


def test_builder_variant_requantized_between_layers_is_refused_at_the_bias():
    """The ``requant_between`` variant requantises fc0 to 2**-2 (an identity op now), which makes fc1's bias finer
    than its accumulator: refused there."""
    model, _ = make_qdq_variant("requant_between")
    with pytest.raises(UnsupportedQuantizationError, match=r"fc1_bias_q.*finer than the accumulator"):
        load_qdq(model)


def test_run_reference_rank3_fixed_batch_chunks():
    b = Builder(seed=12)
    x = b.input("x", [6, 5])
    b.output(b.dense(b.dense(x, 8, relu=True), 3))
    dynamic = b.model()
    fixed = onnx.ModelProto()
    fixed.CopyFrom(dynamic)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 7
    xs = samples((6, 5))[:100]  # 100 rows: 14 full chunks of 7 and a padded one
    ref = run_reference(dynamic, xs)
    assert ref.shape == (100, 6, 3)
    assert np.array_equal(run_reference(fixed, xs), ref)
    assert_bit_exact(fixed, {"x": xs})


# -- inexact references -----------------------------------------------------------------------------------------
def test_float32_inexact_ops_are_flagged():
    """Beyond 2**24 LSBs onnxruntime's float32 arithmetic rounds: the graph loads, marked reference_exact = no."""
    b = Builder(seed=13)
    x = b.input("x", [8], frac=12, dtype=INT16)
    b.output(b.op("Mul", [x.name, x.name], x.cal * x.cal, INT16))  # int16 x int16: 30-bit products
    assert load_qdq(b.model()).source["reference_exact"] == "no"
    b = Builder(seed=13)
    x = b.input("x", [8])
    k, _ = b.const_dq(np.asarray(100), 30, INT8)
    b.output(b.op("Add", [x.name, k], x.cal, frac=20))  # scales 2**-5 and 2**-30: 128 * 2**25 LSBs
    assert load_qdq(b.model()).source["reference_exact"] == "no"
    b = Builder(seed=13)
    x = b.input("x", [1024, 2], frac=4, dtype=INT16)
    b.output(b.op("ReduceSum", [x.name, b.ints([1])], x.cal.sum(1), INT16, keepdims=0))  # 1024 x 2**15
    assert load_qdq(b.model()).source["reference_exact"] == "no"


# -- refusals ---------------------------------------------------------------------------------------------------
def _one_op(op: str, ints: list[list[int]] | None = None, shape: list[int] | None = None, opset: int = 21,
            n_out: int = 1, quantize: bool = True, **attrs) -> onnx.ModelProto:
    """x -> Q -> DQ -> ``op`` (node ``bad``, extra int64 constant inputs ``ints``) [-> Q -> DQ] -> output(s)."""
    b = Builder(opset=opset)
    x = b.input("x", shape or [6])
    outs = b.node(op, [x.name, *(b.ints(v) for v in ints or [])], n_out=n_out, name="bad", **attrs)
    for out in outs if isinstance(outs, list) else [outs]:
        b.output(b.qdq(out, x.cal, INT8, x.frac) if quantize else V(out, x.cal, x.frac, INT8))
    return b.model()


def _const_minuend() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    b.output(b.op("Sub", [b.init(np.float32(1.0)), x.name], 1.0 - x.cal, name="bad"))
    return b.model()


def _matmul_plus_activation() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    w, _ = b.const_dq(np.ones((6, 6), np.int64), 6, INT8)
    mm = b.node("MatMul", [x.name, w])
    b.output(b.op("Add", [mm, x.name], x.cal, name="bad"))
    return b.model()


def _mixed_concat() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    y = b.qdq(x.name, x.cal, INT8, x.frac + 1)
    b.output(V(b.node("Concat", [x.name, y.name], name="bad", axis=1), x.cal, x.frac, INT8))
    return b.model()


def _float_fan_out() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    s = b.node("Add", [x.name, x.name], name="bad")
    b.output(b.qdq(s, x.cal), b.qdq(s, x.cal, frac=x.frac - 1))
    return b.model()


def _shapes_differ() -> onnx.ModelProto:
    b = Builder()
    x, y = b.input("x", [6]), b.input("y", [1])
    b.output(b.op("Add", [x.name, y.name], x.cal, name="bad"))
    return b.model()


def _wide_constant() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [2])
    c = np.asarray([2.0**20, 2.0**-20], np.float32)
    b.output(b.op("Mul", [x.name, b.init(c)], x.cal, name="bad"))
    return b.model()


def _three_way_max() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    b.output(b.op("Max", [x.name, x.name, x.name], x.cal, name="bad"))
    return b.model()


def _unquantized_output() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    b.output(V(b.node("Add", [x.name, b.init(np.float32(1.0))], name="bad"), x.cal, x.frac, INT8))
    return b.model()


def _weights_first() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    w, _ = b.const_dq(np.ones((6, 6), np.int64), 6, INT8)
    b.output(b.op("MatMul", [w, x.name], x.cal, name="bad"))
    return b.model()


def _input_quantized_twice() -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", [6])
    y = b.qdq("x", x.cal, INT8, x.frac + 1, name="bad")
    b.output(b.op("Add", [x.name, y.name], x.cal + y.cal))
    return b.model()


REFUSALS = {
    "leaky_relu_alpha_0.1": (lambda: _one_op("LeakyRelu", alpha=0.1), UnsupportedOpError, "alpha=0.1"),
    "constant_minuend": (_const_minuend, UnsupportedOpError, "constant"),
    "slice_step_2": (lambda: _one_op("Slice", [[0], [6], [1], [2]]), UnsupportedOpError, "step 1"),
    "slice_batch": (lambda: _one_op("Slice", [[1], [5], [0]]), UnsupportedOpError, "batch axis"),
    "transpose_batch": (lambda: _one_op("Transpose", shape=[2, 3], perm=[1, 0, 2]), UnsupportedOpError,
                        "batch axis"),
    "reshape_merges_batch": (lambda: _one_op("Reshape", [[-1]], shape=[2, 3]), UnsupportedOpError, "batch axis"),
    "flatten_axis_0": (lambda: _one_op("Flatten", shape=[2, 3], axis=0), UnsupportedOpError, "batch axis"),
    "reduce_batch": (lambda: _one_op("ReduceMean", [[0]], shape=[2, 3], keepdims=1), UnsupportedOpError,
                     "batch axis"),
    "reduce_all": (lambda: _one_op("ReduceSum", shape=[2, 3]), UnsupportedOpError, "every axis"),
    "concat_batch": (lambda: _one_op("Concat", axis=0), UnsupportedOpError, "batch axis"),
    "squeeze_no_axes": (lambda: _one_op("Squeeze", shape=[1, 6], quantize=False), UnsupportedOpError, "axes"),
    "mixed_concat_without_q": (_mixed_concat, UnsupportedQuantizationError, "different types"),
    "matmul_plus_activation": (_matmul_plus_activation, UnsupportedQuantizationError, "unquantized"),
    "float_fan_out": (_float_fan_out, UnsupportedQuantizationError, "several nodes"),
    "shapes_differ": (_shapes_differ, UnsupportedOpError, "shapes"),
    "wide_float_constant": (_wide_constant, UnsupportedQuantizationError, "32 bits"),
    "three_way_max": (_three_way_max, UnsupportedOpError, "3 inputs"),
    "unquantized_output": (_unquantized_output, UnsupportedQuantizationError, "without QuantizeLinear"),
    "unsupported_op": (lambda: _one_op("Hardmax"), UnsupportedOpError, "MatMul/Gemm/Add/Relu"),
    "weights_first": (_weights_first, UnsupportedOpError, "W @ x"),
    "input_quantized_twice": (_input_quantized_twice, UnsupportedQuantizationError, "quantizes the graph input"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_node(case):
    build, err_type, words = REFUSALS[case]
    model = build()
    with pytest.raises(err_type) as info:
        load_qdq(model)
    text = str(info.value)
    assert "bad" in text and words in text, text
    assert info.value.hint, "every error says what to do"


def test_bad_split_sizes_are_a_bad_file():
    model = _one_op("Split", [[4, 4]], n_out=2, axis=1, quantize=False)
    with pytest.raises(BadFileError, match="bad"):
        load_qdq(model)
