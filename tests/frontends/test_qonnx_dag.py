"""QONNX frontend on DAG models: Brevitas residual / two-branch / DeepSets exports, hand-built QONNX graphs for the
ops Brevitas does not emit easily, Quant of quantized values, typed refusals naming the node.

The check everywhere: the logical graph of ``load_qonnx``, evaluated with ``nn2aie.ir.evaluate.evaluate`` on the
input codes of the graph input's own type (``cast_float``), equals qonnx's execution of the model
(``qonnx.core.onnx_exec.execute_onnx`` through ``run_reference``) with ``np.array_equal`` on 2000 float inputs: a
mix of magnitudes, 300 of them far beyond the calibration range (every quantizer saturates somewhere) and 200 on
exact rounding ties of the input quantizer. For the Brevitas models qonnx's output also equals the module's own
forward. Brevitas activation scales come from a short calibration (train-mode forward passes collect statistics),
so the branches of a merge get different power-of-two scales, which the tests assert.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.qonnx_frontend import load_qonnx, run_reference
from nn2aie.ir.evaluate import cast_float, evaluate
from nn2aie.ir.logical import Graph

pytest.importorskip("qonnx")

QDOMAIN = "qonnx.custom_op.general"
N_SAMPLES, N_WILD, N_TIES = 2000, 300, 200


# -- inputs and the check -------------------------------------------------------------------------------------
def samples(shape: tuple[int, ...], frac: int, seed: int = 0, n: int = N_SAMPLES) -> np.ndarray:
    """Gaussian events at several magnitudes, the last ``N_WILD`` 16x larger (saturating), the first ``N_TIES``
    on exact half-LSB ties of an input quantizer with fraction ``frac``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)) * rng.choice([0.3, 1.0, 2.0], size=(n,) + (1,) * len(shape))
    x[:N_TIES] = (rng.integers(-100, 100, (N_TIES, *shape)) + 0.5) * 2.0**-frac
    x[-N_WILD:] *= 16.0
    return x.astype(np.float32)


def input_codes(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Host-side input codes: the float inputs cast into the graph input's type (its rounding, saturation), which
    is what the model's input Quant computes."""
    t = graph.tensor(graph.inputs[0])
    return cast_float(x.astype(np.float64), t.type, t.origin)


def logical(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The logical model's float output: exact integer evaluation of the input codes, dequantized."""
    y = evaluate(graph, {graph.inputs[0]: input_codes(graph, x)})[graph.outputs[0]]
    return (y * graph.tensor(graph.outputs[0]).type.lsb).astype(np.float32)


def assert_bit_exact(model: onnx.ModelProto, x: np.ndarray, distinct: int = 8) -> tuple[Graph, np.ndarray]:
    graph = load_qonnx(model)
    assert graph.source["framework"] == "qonnx" and graph.source["reference_exact"] == "yes"
    want = run_reference(model, x)
    got = logical(graph, x)
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} values differ, first at {bad[0].tolist()}: {got[tuple(bad[0])]} vs qonnx " \
                         f"{want[tuple(bad[0])]}"
    assert len(np.unique(want)) > distinct, "a trivial output proves nothing"
    return graph, want


def kinds(graph: Graph) -> list[str]:
    return [op.attrs["op"] if op.kind in ("eltwise", "reduce") else op.kind for op in graph.ops]


def in_types(graph: Graph, op_name: str) -> list:
    return [graph.tensor(t).type for t in graph.op(op_name).inputs if not graph.tensor(t).is_const]


# -- Brevitas models ------------------------------------------------------------------------------------------
@dataclass
class Brevitas:
    """A calibrated Brevitas module in eval mode and its QONNX export."""

    module: object
    proto: onnx.ModelProto
    shape: tuple[int, ...]


def brevitas_modules():
    """The Brevitas modules of these tests (torch and brevitas are imported here, so that the hand-built QONNX
    tests run without them)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer")
    import brevitas.nn as qnn
    from brevitas.quant import Int32Bias
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint as Int8Act
    from brevitas.quant.fixed_point import Int8WeightPerTensorFixedPoint as Int8Weight
    from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPoint as Uint8Act

    def linear(k: int, n: int):
        return qnn.QuantLinear(k, n, weight_quant=Int8Weight, bias=True, bias_quant=Int32Bias,
                               return_quant_tensor=True)

    def act(quant=Int8Act, bits: int = 8, tensor: bool = True):
        return qnn.QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=tensor)

    def relu(bits: int = 8, tensor: bool = True):
        return qnn.QuantReLU(act_quant=Uint8Act, bit_width=bits, return_quant_tensor=tensor)

    class Residual(torch.nn.Module):
        """q_in -> fc1 -> QuantReLU -> fc2 -> q_branch, skip q_skip(x); merged by ``merge``:

        - ``eltwise``: ``QuantEltwiseAdd(input_quant=None, output_quant=Int8)`` of the two float branches, which
          come from two quantizers (different scales);
        - ``plus``: ``+`` of the two float branches, then a QuantIdentity, then a QuantReLU (Add -> Quant -> Relu
          -> Quant);
        - ``shared``: one QuantIdentity applied to both branches (one scale), ``+`` of the two QuantTensors, then
          a QuantIdentity;
        then a head (QuantLinear) and an output QuantIdentity."""

        def __init__(self, merge: str, width: int = 16, hidden: int = 32, branch_bits: int = 8) -> None:
            super().__init__()
            self.merge = merge
            self.q_in = act()
            self.fc1, self.relu1, self.fc2 = linear(width, hidden), relu(), linear(hidden, width)
            self.q_branch, self.q_skip = act(bits=branch_bits, tensor=False), act(tensor=False)
            self.add = qnn.QuantEltwiseAdd(input_quant=None, output_quant=Int8Act, return_quant_tensor=True)
            self.q_shared, self.q_sum, self.relu2 = act(), act(), relu()
            self.head, self.q_out = linear(width, 5), act(tensor=False)

        def forward(self, x):
            x = self.q_in(x)
            h = self.q_branch(self.fc2(self.relu1(self.fc1(x))))
            skip = self.q_skip(x)
            if self.merge == "eltwise":
                s = self.add(h, skip)
            elif self.merge == "plus":
                s = self.relu2(self.q_sum(h + skip))
            else:
                s = self.q_sum(self.q_shared(h) + self.q_shared(skip))
            return self.q_out(self.head(s))

    class TwoBranch(torch.nn.Module):
        """The quantized input fans out into a ReLU branch and a linear branch, ``torch.cat`` on the feature axis
        (two scales and signednesses), a QuantIdentity, a dense head."""

        def __init__(self) -> None:
            super().__init__()
            self.q_in = act()
            self.a1, self.a_relu, self.a2 = linear(16, 24), relu(), linear(24, 12)
            self.q_a = act(tensor=False)
            self.b1, self.b_relu = linear(16, 8), relu(bits=6, tensor=False)
            self.q_cat, self.head1, self.relu_h, self.head2 = act(), linear(20, 16), relu(), linear(16, 5)
            self.q_out = act(tensor=False)

        def forward(self, x):
            x = self.q_in(x)
            a = self.q_a(self.a2(self.a_relu(self.a1(x))))
            b = self.b_relu(self.b1(x))
            c = self.q_cat(torch.cat([a, b], dim=1))
            return self.q_out(self.head2(self.relu_h(self.head1(c))))

    class DeepSets(torch.nn.Module):
        """Per-particle QuantLinear stack on [batch, particles, features] (a rank-3 MatMul), ``torch.mean`` or
        ``torch.sum`` over the particles, a QuantIdentity, a dense head."""

        def __init__(self, pool: str, features: int = 6, hidden: int = 16) -> None:
            super().__init__()
            self.pool = pool
            self.q_in = act()
            self.phi1, self.relu1 = linear(features, hidden), relu()
            self.phi2, self.relu2 = linear(hidden, hidden), relu(tensor=False)
            self.q_pool = act()
            self.rho1, self.relu3, self.rho2, self.q_out = linear(hidden, 16), relu(), linear(16, 5), act(tensor=False)

        def forward(self, x):
            h = self.relu2(self.phi2(self.relu1(self.phi1(self.q_in(x)))))
            pooled = torch.mean(h, dim=1) if self.pool == "mean" else torch.sum(h, dim=1)
            return self.q_out(self.rho2(self.relu3(self.rho1(self.q_pool(pooled)))))

    return torch, {"Residual": Residual, "TwoBranch": TwoBranch, "DeepSets": DeepSets}


def make_brevitas(kind: str, shape: tuple[int, ...], seed: int, *args, **kwargs) -> Brevitas:
    """Build a module with seeded weights, calibrate its activation scales (train-mode forward passes collect
    statistics; Brevitas then uses their power-of-two scales in eval mode) and export it with ``export_qonnx``."""
    torch, classes = brevitas_modules()
    from brevitas.export import export_qonnx

    torch.manual_seed(seed)
    module = classes[kind](*args, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # fresh weights of the seed, wider than the default init
            if p.ndim == 2:
                p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
        module.train()
        for _ in range(4):
            module(torch.randn(256, *shape, generator=gen) * 1.5)
    module.eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        export_qonnx(module, torch.randn(1, *shape, generator=gen), str(path))
        proto = onnx.load(str(path))
    return Brevitas(module, proto, shape)


def module_forward(model: Brevitas, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.module(torch.from_numpy(x)).numpy()


def brevitas_check(model: Brevitas, seed: int) -> tuple[Graph, np.ndarray, np.ndarray]:
    graph = load_qonnx(model.proto)
    x = samples(model.shape, graph.tensor(graph.inputs[0]).type.frac, seed)
    graph, want = assert_bit_exact(model.proto, x, distinct=32)
    assert np.array_equal(want, module_forward(model, x)), "qonnx execution differs from the Brevitas forward"
    assert len(np.unique(want, axis=0)) > N_SAMPLES // 2, "a degenerate model proves nothing"
    return graph, x, want


@pytest.mark.parametrize("merge", ["eltwise", "plus", "shared"])
def test_brevitas_residual_block(merge):
    model = make_brevitas("Residual", (16,), 10, merge)
    graph, _, _ = brevitas_check(model, seed=1)
    add = next(op for op in graph.ops if op.attrs.get("op") == "add")
    a, b = in_types(graph, add.name)
    fc2 = [op for op in graph.ops if op.kind == "dense"][1]
    sources = [fc2.outputs[0], graph.inputs[0]]  # fc2's output and the (quantized) graph input: the skip
    assert len(graph.consumers(graph.inputs[0])) == 2  # the input fans out to fc1 and the skip
    if merge == "shared":  # one quantizer on both branches: each operand requantised to its type (or already it)
        assert a == b
        for t, src in zip(add.inputs, sources, strict=True):
            p = graph.producer(t)
            assert t == src or (p.attrs == {"op": "identity"} and p.inputs == [src])
        assert any(t != src for t, src in zip(add.inputs, sources, strict=True))  # two scales before the shared one
        assert kinds(graph) == ["dense", "dense", "identity", "add", "dense"]
    else:  # two quantizers: the branches reach the add at different scales, nothing requantises them first
        assert a.frac != b.frac, (a, b)
        assert add.inputs == sources
        assert kinds(graph) == (["dense", "dense", "add", "dense"] if merge == "eltwise"
                                else ["dense", "dense", "add", "relu", "dense"])
    if merge == "plus":  # Add -> Quant(int8) -> Relu -> Quant(uint8): the add, then a standalone relu into uint8
        relu = next(op for op in graph.ops if op.attrs.get("op") == "relu")
        assert relu.inputs == add.outputs and graph.tensor(relu.outputs[0]).type.signed is False


def test_brevitas_two_branch_concat():
    model = make_brevitas("TwoBranch", (16,), 11)
    graph, _, _ = brevitas_check(model, seed=2)
    cat = next(op for op in graph.ops if op.kind == "concat")
    sources = [graph.producer(t) for t in cat.inputs]
    # the two branches have different types; each input whose type differs from the Quant after the cat is
    # requantised by an eltwise identity (qonnx: float concat, then one Quant = requantise each part)
    assert any(p.attrs.get("op") == "identity" for p in sources)
    assert len(graph.consumers(graph.inputs[0])) == 2
    assert graph.tensor(cat.outputs[0]).shape == (20,)
    assert kinds(graph).count("dense") == 5


@pytest.mark.parametrize("pool", ["mean", "sum"])
def test_brevitas_deepsets(pool):
    model = make_brevitas("DeepSets", (6, 5), 12, pool, features=5)
    graph, _, _ = brevitas_check(model, seed=3)
    assert graph.tensor(graph.inputs[0]).shape == (6, 5)
    red = next(op for op in graph.ops if op.kind == "reduce")
    assert red.attrs["op"] == pool and red.attrs["axes"] == [0] and red.attrs["keepdims"] is False
    assert (red.attrs.get("divide") == "float32") == (pool == "mean")  # qonnx: float32 sum / float32(6)
    phi = graph.producer(red.inputs[0])
    assert phi.kind == "dense" and graph.tensor(phi.outputs[0]).shape == (6, 16)
    assert kinds(graph) == ["dense", "dense", pool, "dense", "dense"]


def test_brevitas_torchscript_export_and_float_fan_out_refusal():
    """The TorchScript exporter (Transpose -> MatMul -> Add(bias first) for the rank-3 QuantLinear) gives the same
    logical graph; a float result that fans out to two quantizers is refused, naming the tensor."""
    torch, _ = brevitas_modules()
    from brevitas.export import export_qonnx

    model = make_brevitas("DeepSets", (6, 5), 13, "mean", features=5)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model.module, torch.randn(1, 6, 5), f"{tmp}/m.onnx", dynamo=False)
        proto = onnx.load(f"{tmp}/m.onnx")
    assert {"Transpose", "MatMul", "ReduceMean"} <= {n.op_type for n in proto.graph.node}
    ts = Brevitas(model.module, proto, model.shape)
    graph, x, want = brevitas_check(ts, seed=4)
    assert np.array_equal(want, run_reference(model.proto, x))  # the two exports compute the same
    assert kinds(graph) == kinds(load_qonnx(model.proto))

    bad = onnx.ModelProto()
    bad.CopyFrom(model.proto)
    relu = next(n for n in bad.graph.node if n.op_type == "Relu")
    quant = next(n for n in bad.graph.node if n.input and n.input[0] == relu.output[0])
    twin = onnx.NodeProto()
    twin.CopyFrom(quant)
    twin.name, twin.output[0] = "twin_quant", "twin_out"
    bad.graph.node.append(twin)
    bad.graph.output.append(helper.make_tensor_value_info("twin_out", TensorProto.FLOAT, [1, 6, 16]))
    with pytest.raises(UnsupportedQuantizationError) as info:
        load_qonnx(bad)
    assert info.value.where == f"tensor {relu.output[0]}" and "feeds several nodes" in info.value.reason
    assert "twin_quant" in info.value.reason and info.value.hint


# -- hand-built QONNX graphs ----------------------------------------------------------------------------------
@dataclass
class V:
    """A quantized value of the model being built: the ONNX tensor (a Quant output or a view of one), its
    approximate values on a calibration batch (float64; only used to pick scales), its fraction."""

    name: str
    cal: np.ndarray
    frac: int


class Net:
    """A QONNX graph built node by node; each Quant's scale is the largest power of two that does not clip the
    calibration values (unless given)."""

    def __init__(self, seed: int, opset: int = 13):
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.count = 0

    def uid(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value, prefix: str = "c", dtype=np.float32) -> str:
        name = self.uid(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values) -> str:
        return self.const(values, "i", np.int64)

    def node(self, op: str, inputs: list[str], n_out: int = 1, name: str | None = None, **attrs):
        name = name or self.uid(op.lower())
        outs = [f"{name}_y{i}" for i in range(n_out)] if n_out > 1 else [f"{name}_y"]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs if n_out > 1 else outs[0]

    def quant(self, x: str, cal: np.ndarray, bits: int = 8, signed: bool = True, frac: int | None = None,
              mode: str = "ROUND", narrow: bool = False, name: str | None = None) -> V:
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
        lo = -hi - (not narrow) if signed else 0
        if frac is None:
            frac = math.floor(math.log2(hi / max(float(np.abs(cal).max()), 1e-9)))
        name = name or self.uid("quant")
        ins = [x, self.const(2.0**-frac, f"{name}_scale"), self.const(0.0, f"{name}_zp"),
               self.const(float(bits), f"{name}_bits")]
        self.nodes.append(helper.make_node("Quant", ins, [f"{name}_y"], name=name, domain=QDOMAIN,
                                           signed=int(signed), narrow=int(narrow), rounding_mode=mode))
        return V(f"{name}_y", np.clip(np.round(cal * 2.0**frac), lo, hi) * 2.0**-frac, frac)

    def input(self, shape: list[int], frac: int = 4, bits: int = 8) -> V:
        self.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape]))
        cal = np.random.default_rng(0).standard_normal((256, *shape))
        return self.quant("x", cal, bits=bits, frac=frac, name="in_quant")

    def dense(self, v: V, n: int, relu: bool = False, signed: bool | None = None, frac: int | None = None,
              gemm: bool = False, name: str | None = None, **quant) -> V:
        """Quant(W) weights, MatMul + Add(Quant(int32 bias)) or Gemm(transB, float bias on the grid), [Relu],
        Quant."""
        k = v.cal.shape[-1]
        w = self.rng.integers(-127, 128, (k, n)) * 2.0**-7
        acc = v.frac + 7
        bias = self.rng.integers(-(1 << acc), (1 << acc) + 1, n) * 2.0**-acc  # about +-1
        name = name or self.uid("fc")
        w_q = self.quant(self.const(w.T if gemm else w, f"{name}_w"), w, frac=7, narrow=True).name
        if gemm:
            y = self.node("Gemm", [v.name, w_q, self.const(bias, f"{name}_b")], name=name, transB=1)
        else:
            b_q = self.quant(self.const(bias, f"{name}_b"), bias, bits=32, frac=acc).name
            y = self.node("Add", [self.node("MatMul", [v.name, w_q], name=name), b_q], name=f"{name}_bias")
        cal = v.cal @ w + bias
        if relu:
            y, cal = self.node("Relu", [y], name=f"{name}_relu"), np.maximum(cal, 0)
        return self.quant(y, cal, signed=not relu if signed is None else signed, frac=frac, name=f"{name}_quant",
                          **quant)

    def op(self, op: str, inputs: list[str], cal: np.ndarray, name: str | None = None, attrs: dict | None = None,
           **quant) -> V:
        """A float op on quantized values, then Quant."""
        name = name or self.uid(op.lower())
        return self.quant(self.node(op, inputs, name=name, **(attrs or {})), cal, name=f"{name}_quant", **quant)

    def view(self, op: str, v: V, cal: np.ndarray, extra: list[str] | None = None, name: str | None = None,
             **attrs) -> V:
        """An op whose result is still a quantized value (no Quant after it)."""
        return V(self.node(op, [v.name, *(extra or [])], name=name, **attrs), cal, v.frac)

    def model(self, out: V) -> onnx.ModelProto:
        output = helper.make_tensor_value_info(out.name, TensorProto.FLOAT, [1, *out.cal.shape[1:]])
        graph = helper.make_graph(self.nodes, "handmade_dag", self.inputs, [output], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset),
                                                        helper.make_opsetid(QDOMAIN, 1)])
        onnx.checker.check_model(model)
        return model


def check_outputs(net: Net, outs: dict[str, V], x: np.ndarray) -> dict[str, Graph]:
    """Each value in ``outs`` as the output of the model (qonnx runs one output at a time); every one bit-exact."""
    return {key: assert_bit_exact(net.model(v), x)[0] for key, v in outs.items()}


def test_binary_ops_of_activations_and_constants():
    """Sub / Mul / Max / Min / Add of two activations of different scales and with constants (float32
    initializers and Quant(initializer); scalar, per-channel, full shape, constant first), results quantized with
    several rounding modes; Add -> Relu -> Quant; Max of one type without a Quant."""
    net = Net(seed=1)
    x = net.input([12])
    h = net.dense(x, 10, name="h")
    g = net.dense(x, 10, frac=h.frac + 1, name="g", gemm=True)
    h2 = net.dense(x, 10, frac=h.frac, name="h2")
    per_channel = (net.rng.integers(-8, 9, 10) * 0.25).astype(np.float32)
    full = (net.rng.integers(-40, 40, (1, 10)) * 2.0**-5).astype(np.float32)
    k16 = net.quant(net.const(net.rng.integers(-3000, 3000, 10) * 2.0**-9), np.ones(1), bits=16, frac=9).name
    added = net.node("Add", [h.name, g.name], name="add_relu")
    outs = {
        "sub": net.op("Sub", [h.name, g.name], h.cal - g.cal, name="sub_hg", mode="HALF_UP"),
        "mul": net.op("Mul", [h.name, g.name], h.cal * g.cal, name="mul_hg", mode="FLOOR"),
        "max": net.op("Max", [h.name, g.name], np.maximum(h.cal, g.cal), name="max_hg"),
        "mul_c": net.op("Mul", [h.name, net.const(per_channel)], h.cal * per_channel, name="mul_c", mode="CEIL"),
        "min_c_first": net.op("Min", [net.const(full), g.name], np.minimum(full, g.cal), name="min_c_first"),
        "add_c_first": net.op("Add", [net.const(0.375), h.name], 0.375 + h.cal, name="add_c_first", mode="DOWN"),
        "sub_k16": net.op("Sub", [h.name, k16], h.cal, name="sub_k16", mode="HALF_DOWN"),
        "add_relu": net.quant(net.node("Relu", [added], name="add_relu_relu"), np.maximum(h.cal + g.cal, 0),
                              name="add_relu_quant"),
        "min_same": net.dense(net.view("Min", h, np.minimum(h.cal, h2.cal), [h2.name], name="min_same"), 4,
                              name="head"),
    }
    x_in = samples((12,), x.frac)
    graphs = check_outputs(net, outs, x_in)
    for key in ("min_c_first", "add_c_first"):  # the constant went second
        op = graphs[key].op(key)
        assert not graphs[key].tensor(op.inputs[0]).is_const and graphs[key].tensor(op.inputs[1]).is_const
    g_mul = graphs["mul_c"]
    c = g_mul.tensor(g_mul.op("mul_c").inputs[1])
    assert c.shape == (10,) and c.type.frac == 2
    assert graphs["sub_k16"].tensor(graphs["sub_k16"].op("sub_k16").inputs[1]).type.width == 16
    assert [t.frac for t in in_types(graphs["sub"], "sub_hg")] == [h.frac, g.frac]
    assert graphs["sub"].tensor(graphs["sub"].op("sub_hg").outputs[0]).type.rounding == "RND_INF"  # HALF_UP
    assert graphs["mul"].tensor(graphs["mul"].op("mul_hg").outputs[0]).type.rounding == "TRN"  # FLOOR
    assert kinds(graphs["add_relu"])[-2:] == ["add", "relu"]  # signed Quant: relu after the add
    assert graphs["min_same"].op("min_same").attrs == {"op": "min"}


def test_unary_ops_and_standalone_relu():
    net = Net(seed=2)
    x = net.input([12])
    h = net.dense(x, 10, name="h")
    f32 = np.float32
    clip = net.op("Clip", [h.name, net.const(f32(-1.5)), net.const(f32(2.25))], np.clip(h.cal, -1.5, 2.25),
                  frac=h.frac + 1, name="clip")
    on_grid = net.view("Clip", clip, np.clip(clip.cal, -0.5, 0.75), [net.const(f32(-0.5)), net.const(f32(0.75))],
                       name="clip_grid")  # bounds on the input grid: still a value of its type, no Quant
    outs = {
        "clip_grid": net.dense(on_grid, 4, name="head_clip"),
        "leaky": net.op("LeakyRelu", [h.name], np.where(h.cal >= 0, h.cal, 0.125 * h.cal), frac=h.frac + 2,
                        name="leaky", attrs={"alpha": 0.125}),
        "relu": net.op("Relu", [h.name], np.maximum(h.cal, 0), signed=False, name="relu_h"),  # h fans out
        "relu_value": net.dense(net.view("Relu", h, np.maximum(h.cal, 0), name="relu_value"), 4, name="head_relu"),
    }
    graphs = check_outputs(net, outs, samples((12,), x.frac, seed=1))
    assert graphs["clip_grid"].op("clip").attrs == {"op": "clip", "lo": [-3, 1], "hi": [9, 2]}
    assert graphs["leaky"].op("leaky").attrs == {"op": "leaky_relu", "alpha_shift": 3}
    for key, name in (("relu", "relu_h"), ("relu_value", "relu_value")):  # h fans out: not folded into its dense
        assert graphs[key].op(name).attrs == {"op": "relu"}
        assert graphs[key].op("h").attrs["activation"] == "linear"


def test_views_transpose_reshape_slice_split():
    net = Net(seed=3)
    x = net.input([4, 6])
    t = net.view("Transpose", x, x.cal.transpose(0, 2, 1), name="tr", perm=[0, 2, 1])
    t = net.quant(t.name, t.cal, frac=x.frac, name="tr_same")  # the same type after a view: nothing
    r = net.view("Reshape", t, t.cal.reshape(-1, 24), [net.ints([1, 24])], name="rs")  # the exported batch 1
    u = net.view("Unsqueeze", r, r.cal[:, None], [net.ints([1])], name="unsq")
    s = net.view("Squeeze", u, r.cal, [net.ints([-2])], name="sq")
    sl = net.view("Slice", s, s.cal[:, 2:20], [net.ints([2]), net.ints([20]), net.ints([1])], name="sl")
    p0, p1 = net.node("Split", [sl.name, net.ints([10, 8])], n_out=2, name="split", axis=1)
    coarse = net.quant(p1, sl.cal[:, 10:], frac=x.frac - 1, mode="HALF_UP", name="coarse")  # requantised
    both = net.view("Slice", x, x.cal[:, 1:3, :-1], [net.ints([1, 0]), net.ints([3, -1]), net.ints([1, 2])],
                    name="sl2")
    flat = net.view("Flatten", both, both.cal.reshape(-1, 10), name="flat", axis=1)
    heads = [net.dense(V(p0, sl.cal[:, :10], x.frac), 5, name="h0"), net.dense(coarse, 5, name="h1"),
             net.dense(flat, 5, name="h2")]
    cal = np.concatenate([v.cal for v in heads], -1)
    out = net.op("Concat", [v.name for v in heads], cal, name="cat", attrs={"axis": -1})
    graph, _ = assert_bit_exact(net.model(out), samples((4, 6), x.frac, seed=2))
    expect = {  # op name -> (kind, attributes, output shape per event)
        "tr": ("transpose", {"perm": [1, 0]}, (6, 4)), "rs": ("reshape", {}, (24,)), "unsq": ("reshape", {}, (1, 24)),
        "sq": ("reshape", {}, (24,)), "sl": ("slice", {"axis": 0, "start": 2, "end": 20}, (18,)),
        "split": ("slice", {"axis": 0, "start": 0, "end": 10}, (10,)),
        "split_2": ("slice", {"axis": 0, "start": 10, "end": 18}, (8,)),
        "coarse": ("eltwise", {"op": "identity"}, (8,)), "sl2": ("slice", {"axis": 0, "start": 1, "end": 3}, (2, 6)),
        "sl2_2": ("slice", {"axis": 1, "start": 0, "end": 5}, (2, 5)), "flat": ("reshape", {}, (10,)),
        "cat": ("concat", {"axis": 0}, (15,)),
    }
    got = {op.name: (op.kind, op.attrs, graph.tensor(op.outputs[0]).shape) for op in graph.ops if op.kind != "dense"}
    assert got == expect  # the Quant after the transpose repeats its type: no op
    assert graph.tensor(graph.op("coarse").outputs[0]).type.rounding == "RND_INF"  # the Quant's HALF_UP


@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_over_particles(opset):
    """[B, 6 particles, 5 features]: a rank-3 MatMul per particle, ReduceMean (at the input's scale: rounding ties
    of the float32 mean happen) / ReduceSum / ReduceMax (no Quant: a max is one of its inputs) over the
    particles, axes as attribute (opset 13) or input (opset 18), a head on their concatenation."""
    net = Net(seed=4, opset=opset)
    x = net.input([6, 5])
    phi = net.dense(x, 8, relu=True, name="phi")
    by_attr = opset < 18

    def axes(op: str, values: list[int]) -> tuple[list[str], dict]:
        if by_attr and op != "ReduceSum":
            return [], {"axes": values}
        return [net.ints(values)], {}

    extra, attrs = axes("ReduceMean", [-2])
    mean = net.op("ReduceMean", [phi.name, *extra], phi.cal.mean(1), frac=phi.frac, name="mean",
                  attrs={"keepdims": 0, **attrs})
    extra, attrs = axes("ReduceSum", [1])
    total = net.op("ReduceSum", [phi.name, *extra], phi.cal.sum(1), signed=False, name="sum",
                   attrs={"keepdims": 0, **attrs})
    extra, attrs = axes("ReduceMax", [1])
    peak = net.view("ReduceMax", phi, phi.cal.max(1, keepdims=True), extra, name="peak", keepdims=1, **attrs)
    flat = net.view("Flatten", peak, peak.cal.reshape(len(peak.cal), -1), name="flat", axis=1)
    cal = np.concatenate([mean.cal, total.cal, flat.cal], -1)
    cat = net.op("Concat", [mean.name, total.name, flat.name], cal, name="cat", attrs={"axis": 1})
    xs = samples((6, 5), x.frac, seed=3)
    graph, _ = assert_bit_exact(net.model(net.dense(cat, 3, name="head")), xs)
    assert mean_ties(graph, xs, "mean") > 50  # round-half-even of the float32 mean is exercised
    red = {op.attrs["op"]: op for op in graph.ops if op.kind == "reduce"}
    assert red["mean"].attrs == {"op": "mean", "axes": [0], "keepdims": False, "divide": "float32"}
    assert red["sum"].attrs == {"op": "sum", "axes": [0], "keepdims": False}
    assert red["max"].attrs == {"op": "max", "axes": [0], "keepdims": True}
    assert graph.tensor(graph.op("phi").outputs[0]).shape == (6, 8)


def mean_ties(graph: Graph, x: np.ndarray, op_name: str) -> int:
    """How many outputs of the mean ``op_name`` are exact rounding ties of its output type (so round-half-even of
    the float32 quotient is exercised): sum * 2**(fo - fi) / n has the fraction one half."""
    op = graph.op(op_name)
    src, dst = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    count = math.prod(src.shape) // math.prod(dst.shape)
    sums = evaluate(graph, {graph.inputs[0]: input_codes(graph, x)})[src.name].sum(
        axis=tuple(1 + a for a in op.attrs["axes"]))
    shift = dst.type.frac - src.type.frac
    num, den = (sums << shift, count) if shift >= 0 else (sums, count << -shift)
    return int(np.count_nonzero(2 * num % (2 * den) == den))


def test_global_pools():
    """[B, C=3, H=5, W=3]: GlobalAveragePool at a scale one bit coarser than its input (15 pixels: rounding ties
    of the float32 mean happen) and GlobalMaxPool (no Quant), each flattened into a head."""
    net = Net(seed=5)
    x = net.input([3, 5, 3], frac=4)
    gap = net.op("GlobalAveragePool", [x.name], x.cal.mean((2, 3), keepdims=True), frac=x.frac - 1, name="gap")
    gmp = net.view("GlobalMaxPool", x, x.cal.max((2, 3), keepdims=True), name="gmp")
    heads = {}
    for key, v in (("gap", gap), ("gmp", gmp)):
        flat = net.view("Flatten", v, v.cal.reshape(len(v.cal), -1), name=f"{key}_flat", axis=1)
        heads[key] = net.dense(flat, 4, name=f"{key}_head")
    xs = samples((3, 5, 3), x.frac, seed=5)
    graphs = check_outputs(net, heads, xs)
    assert graphs["gap"].op("gap").attrs == {"op": "mean", "axes": [1, 2], "keepdims": True, "divide": "float32"}
    assert graphs["gmp"].op("gmp").attrs == {"op": "max", "axes": [1, 2], "keepdims": True}
    assert mean_ties(graphs["gap"], xs, "gap") > 20


def test_quant_of_quantized_values():
    """A Quant after a quantized value: nothing when every value already is a code of its type, a narrowing of
    the producing op's type (same scale, only reader), else an eltwise identity with the Quant's rounding."""
    net = Net(seed=6)
    x = net.input([12])
    a = net.dense(x, 10, name="a", mode="FLOOR")
    same = net.quant(a.name, a.cal, frac=a.frac, name="same")  # repeats the type: nothing
    coarse = net.quant(same.name, same.cal, frac=a.frac - 2, mode="HALF_UP", name="coarse")  # a second rounding
    finer = net.quant(coarse.name, coarse.cal, bits=12, frac=a.frac, name="finer")  # holds every value: nothing
    r = net.dense(x, 10, relu=True, signed=True, name="r")  # ReLU'd int8
    r_u8 = net.quant(r.name, r.cal, signed=False, frac=r.frac, name="r_u8")  # [0, 127] fits uint8: nothing
    n = net.dense(x, 10, name="n")
    n4 = net.quant(n.name, n.cal, bits=4, frac=n.frac, name="n4")  # narrows n's type: folded into the dense
    u = net.dense(x, 10, relu=True, name="u")  # uint8, read twice (so its type cannot change)
    u_s8 = net.quant(u.name, u.cal, frac=u.frac, name="u_s8")  # [0, 255] -> [-128, 127]: a clamp (identity)
    cal = np.concatenate([finer.cal, r_u8.cal, n4.cal, u_s8.cal, u.cal], -1)
    out = net.op("Concat", [finer.name, r_u8.name, n4.name, u_s8.name, u.name], cal, frac=a.frac - 2, name="cat",
                 attrs={"axis": 1})
    graph, _ = assert_bit_exact(net.model(out), samples((12,), x.frac, seed=6))
    ops = {op.name: op for op in graph.ops}
    assert "same" not in ops and "finer" not in ops and "r_u8" not in ops and "n4" not in ops
    assert ops["coarse"].attrs == {"op": "identity"} and ops["u_s8"].attrs == {"op": "identity"}
    assert graph.tensor(ops["coarse"].outputs[0]).type.rounding == "RND_INF"
    n_t = graph.tensor(ops["n"].outputs[0]).type
    assert (n_t.width, n_t.signed, n_t.frac) == (4, True, n.frac)
    assert ops["r"].attrs["activation"] == "relu" and graph.tensor(ops["r"].outputs[0]).type.signed


def test_two_graph_inputs_and_outputs_compile_and_equal_qonnx():
    """Several inputs and outputs: read, compiled, and the placed design equals qonnx execution on each output."""
    net = Net(seed=7)
    x = net.input([8])
    net.inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8]))
    z = net.quant("z", np.ones((1, 8)), frac=3, name="z_quant")
    s = net.op("Add", [x.name, z.name], x.cal + z.cal, name="add")
    head = net.dense(s, 4, name="head")
    model = net.model(head)
    model.graph.output.append(helper.make_tensor_value_info(s.name, TensorProto.FLOAT, [1, 8]))
    graph = load_qonnx(model)
    assert [graph.tensor(t).origin for t in graph.inputs] == ["x", "z"]
    assert [graph.tensor(t).origin for t in graph.outputs] == [head.name, s.name]
    assert graph.consumers(graph.outputs[1])  # the sum is an output and feeds the head
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import load_model

    compiled = compile_loaded(load_model(model))
    xs = [samples((8,), x.frac, seed=3), samples((8,), 3, seed=4)]
    want = run_reference(model, xs)
    got = compiled.emulate(xs)
    assert len(want) == len(got) == 2
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w.reshape(len(g), -1))
    with pytest.raises(UnsupportedOpError, match="1 input arrays for 2 inputs"):
        run_reference(model, np.zeros((2, 8), np.float32))


def test_float32_inexact_references_are_flagged():
    net = Net(seed=8)
    x = net.input([8], frac=12, bits=16)
    assert load_qonnx(net.model(net.op("Mul", [x.name, x.name], x.cal**2, bits=16))).source[
        "reference_exact"] == "no"  # int16 x int16: 30-bit products
    net = Net(seed=8)
    x = net.input([1024, 2], frac=4, bits=16)
    total = net.op("ReduceSum", [x.name, net.ints([1])], x.cal.sum(1), bits=16, attrs={"keepdims": 0})
    assert load_qonnx(net.model(total)).source["reference_exact"] == "no"  # 1024 x 2**15 LSBs


# -- refusals ---------------------------------------------------------------------------------------------------
def _one(op: str, ints: list[list[int]] | None = None, shape: list[int] | None = None, quant: bool = True,
         domain: str = "", **attrs) -> onnx.ModelProto:
    """x -> Quant -> ``op`` (node ``bad``, constant int64 inputs ``ints``) [-> Quant] -> Identity -> output."""
    net = Net(seed=9)
    x = net.input(shape or [6])
    out = net.node(op, [x.name, *(net.ints(v) for v in ints or [])], name="bad", **attrs)
    if domain:
        net.nodes[-1].domain = domain
    v = net.quant(out, x.cal, frac=x.frac) if quant else V(out, x.cal, x.frac)
    net.nodes.append(helper.make_node("Identity", [v.name], ["y"], name="out"))
    out_vi = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, *(shape or [6])])
    graph = helper.make_graph(net.nodes, "bad", net.inputs, [out_vi], net.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", net.opset),
                                                   helper.make_opsetid(QDOMAIN, 1)])


def _binary(op: str, first_const: bool = False, fan_out: bool = False, second_shape: int = 6,
            quant_after: bool = True) -> onnx.ModelProto:
    """``op`` (node ``bad``) of the quantized input and: a constant first, another activation of the same shape
    (the input requantised) or of another shape (a second graph input); its result read by one Quant, two Quants
    or none (a graph output)."""
    net = Net(seed=10)
    x = net.input([6])
    if first_const:
        ins = [net.const(np.float32(1.0)), x.name]
    elif second_shape != 6:
        net.inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, second_shape]))
        ins = [x.name, net.quant("z", np.ones((1, second_shape)), frac=3, name="zq").name]
    else:
        ins = [x.name, net.quant(x.name, x.cal, frac=x.frac + 1, name="x2").name]
    r = net.node(op, ins, name="bad")
    if fan_out:
        net.quant(r, x.cal, name="q_a")
        return net.model(net.quant(r, x.cal, frac=x.frac - 1, name="q_b"))
    return net.model(net.quant(r, x.cal, name="q") if quant_after else V(r, x.cal, x.frac))


def _mixed_concat() -> onnx.ModelProto:
    net = Net(seed=11)
    x = net.input([6])
    y = net.quant(x.name, x.cal, frac=x.frac + 1, name="x2")
    return net.model(net.dense(net.view("Concat", x, np.concatenate([x.cal, y.cal], -1), [y.name], name="bad",
                                        axis=1), 3))


def _matmul_plus_activation() -> onnx.ModelProto:
    net = Net(seed=12)
    x = net.input([6])
    w = net.quant(net.const(np.eye(6) * 0.5), np.eye(6), frac=6, name="wq")
    mm = net.node("MatMul", [x.name, w.name], name="mm")
    return net.model(net.op("Add", [mm, x.name], x.cal, name="bad"))


def _non_pow2_activation() -> onnx.ModelProto:
    net = Net(seed=13)
    x = net.input([6])
    h = net.dense(x, 6)  # two values: not a function of one (which a lookup table would take at any scale)
    r = net.node("Add", [x.name, h.name], name="add")
    v = net.quant(r, x.cal, name="bad")
    scale = next(i for i in net.inits if i.name.startswith("bad_scale"))
    scale.CopyFrom(numpy_helper.from_array(np.asarray(0.3, np.float32), scale.name))
    return net.model(v)


def _trunc() -> onnx.ModelProto:
    model = _one("Relu")
    node = next(n for n in model.graph.node if n.name == "bad")
    node.op_type, node.domain = "Trunc", QDOMAIN
    return model


REFUSALS = {
    "unknown_op": (lambda: _one("Hardmax"), UnsupportedOpError, "operator Hardmax is not supported"),
    "trunc": (_trunc, UnsupportedOpError, "operator Trunc from domain"),
    "leaky_relu_alpha": (lambda: _one("LeakyRelu", alpha=0.1), UnsupportedOpError, "alpha=0.1"),
    "constant_minuend": (lambda: _binary("Sub", first_const=True), UnsupportedOpError, "constant"),
    "float_fan_out": (lambda: _binary("Add", fan_out=True), UnsupportedQuantizationError, "several nodes"),
    "unquantized_output": (lambda: _binary("Add", quant_after=False), UnsupportedQuantizationError,
                           "no Quant node after the last layer"),
    "shapes_differ": (lambda: _binary("Add", second_shape=1), UnsupportedOpError, "shapes"),
    "mixed_concat_without_quant": (_mixed_concat, UnsupportedQuantizationError, "no Quant node follows it"),
    "matmul_plus_activation": (_matmul_plus_activation, UnsupportedQuantizationError, "unquantized result"),
    "non_pow2_activation_scale": (_non_pow2_activation, UnsupportedQuantizationError, "needs a power-of-two scale"),
    "slice_step_2": (lambda: _one("Slice", [[0], [6], [1], [2]]), UnsupportedOpError, "step 1"),
    "slice_batch": (lambda: _one("Slice", [[0], [1], [0]]), UnsupportedOpError, "batch axis"),
    "reshape_merges_batch": (lambda: _one("Reshape", [[-1]], shape=[2, 3], quant=False), UnsupportedOpError,
                             "batch axis"),
    "transpose_batch": (lambda: _one("Transpose", shape=[2, 3], quant=False, perm=[1, 0, 2]), UnsupportedOpError,
                        "batch axis"),
    "reduce_batch": (lambda: _one("ReduceMean", shape=[2, 3], axes=[0], keepdims=1), UnsupportedOpError,
                     "batch axis"),
    "concat_batch": (lambda: _one("Concat", axis=0, quant=False), UnsupportedOpError, "batch axis"),
    "relu_in_qonnx_domain": (lambda: _one("Relu", domain=QDOMAIN), UnsupportedOpError,
                               "from domain 'qonnx.custom_op.general'"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_node(case):
    build, err_type, words = REFUSALS[case]
    with pytest.raises(err_type) as info:
        load_qonnx(build())
    err = info.value
    assert "bad" in f"{err.where} {err.reason}", err
    assert words in err.reason, err
    assert err.hint, "every error says what to do"
