"""QONNX frontend: Brevitas fixed-point MLPs imported bit-exactly, hand-built QONNX patterns, typed refusals.

Reference chain checked here: nn2aie logical evaluation == qonnx execute_onnx == the Brevitas module's forward.
"""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.frontends.qonnx_frontend import load_qonnx, quantize_constant, run_reference
from nn2aie.ir.evaluate import evaluate
from nn2aie.numerics import quantize_float

QDOMAIN = "qonnx.custom_op.general"


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------
def float_inputs(n: int, k: int, seed: int) -> np.ndarray:
    """Gaussian rows at several magnitudes (many saturate), exact half-LSB ties, and huge values."""
    rng = np.random.default_rng(seed)
    mag = rng.choice([0.05, 0.5, 2.0, 8.0, 100.0], size=(n, 1))
    x = rng.standard_normal((n, k)) * mag
    x[:8] = np.array([1e4, -1e4, 0.0, -0.0, 1e-9, -1e-9, 3.0, -3.0])[:, None]
    # half-LSB ties for every power-of-two LSB between 2**-12 and 2**0
    lsb = 2.0 ** -rng.integers(0, 13, size=(n // 4, 1))
    x[8: 8 + n // 4] = (rng.integers(-300, 300, size=(n // 4, k)) + 0.5) * lsb
    return x.astype(np.float32)


def nn2aie_forward(graph, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize float rows with the graph input type, evaluate, dequantize; returns (float out, input codes)."""
    t = graph.tensor(graph.inputs[0]).type
    codes = quantize_float(x, t.frac, t.width, t.signed, t.min_code, t.max_code)
    y = evaluate(graph, {graph.inputs[0]: codes})[graph.outputs[0]]
    out_t = graph.tensor(graph.outputs[0]).type
    return (y.astype(np.float64) * 2.0 ** -out_t.frac).astype(np.float32), codes


def input_quant_node(proto: onnx.ModelProto) -> onnx.NodeProto:
    inits = {i.name for i in proto.graph.initializer}
    name = [vi.name for vi in proto.graph.input if vi.name not in inits][0]
    return next(n for n in proto.graph.node if n.input and n.input[0] == name)


def qonnx_input_quant(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """QONNX's own Quant (int_quant) applied to the network input, as float."""
    from qonnx.custom_op.general.quant import quant

    node = input_quant_node(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    mode = attrs.get("rounding_mode", b"ROUND")
    return quant(x, *(inits[i] for i in node.input[1:4]), attrs["signed"], attrs["narrow"],
                 mode.decode() if isinstance(mode, bytes) else mode)


def requant_ties(graph, codes: np.ndarray) -> int:
    """How many first-layer outputs hit an exact rounding tie (so half-even is really exercised)."""
    op = graph.ops[0]
    x_t, w, y_t = graph.tensor(op.inputs[0]).type, graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0]).type
    acc = codes @ w.data
    acc_frac = x_t.frac + w.type.frac
    if len(op.inputs) == 3:
        b = graph.tensor(op.inputs[2])
        acc = acc + (b.data << (acc_frac - b.type.frac))
    shift = acc_frac - y_t.frac
    assert shift > 0
    return int(np.sum((acc & ((1 << shift) - 1)) == (1 << (shift - 1))))


class Builder:
    """Tiny hand-written QONNX graphs (batch 1) for patterns Brevitas does not emit by default."""

    def __init__(self, k: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.k = k
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def const(self, value, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], base: str | None = None, **attrs) -> str:
        out = self.name((base or op.lower()) + "_out")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(base or op), **attrs))
        return out

    def quant(self, x: str, scale, bits: int, signed: int = 1, narrow: int = 0, mode: str = "ROUND",
              zeropt=0.0, base: str = "Quant") -> str:
        ins = [x, self.const(scale, "scale"), self.const(zeropt, "zeropt"), self.const(float(bits), "bits")]
        out = self.name(base + "_out")
        self.nodes.append(helper.make_node("Quant", ins, [out], name=self.name(base), domain=QDOMAIN,
                                           signed=signed, narrow=narrow, rounding_mode=mode))
        return out

    def model(self, out: str, n_out: int) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "handmade",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, self.k])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, n_out])], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                       helper.make_opsetid(QDOMAIN, 1)])


def handmade_mlp(hidden_mode: str = "FLOOR", weight_mode: str = "ROUND", seed: int = 0,
                 k: int = 12, h: int = 9, n: int = 5) -> onnx.ModelProto:
    """input Quant -> Quant(W).T -> Identity -> MatMul -> Add(float bias) -> Quant s8 -> Relu -> Quant u4 (same
    scale) -> MatMul(Quant W) -> Add(Quant bias at a coarser scale, first operand) -> Identity -> Quant s6 narrow."""
    rng = np.random.default_rng(seed)
    b = Builder(k)
    x = b.quant("x", 2.0**-4, 8, base="InQuant")
    w1 = b.quant(b.const(rng.normal(0, 0.4, size=(h, k)), "W1_"), 2.0**-6, 8, narrow=1, mode=weight_mode)
    w1 = b.node("Identity", [b.node("Transpose", [w1], perm=[1, 0])])
    acc = b.node("MatMul", [x, w1], base="fc1")
    bias1 = rng.integers(-2000, 2000, size=h) * 2.0**-10  # exactly on the accumulator grid (frac 4 + 6)
    acc = b.node("Add", [acc, b.const(bias1, "b1_")])
    hq = b.quant(acc, 2.0**-3, 8, signed=1, mode=hidden_mode, base="ActQuant")
    hq = b.node("Relu", [hq])
    hq = b.quant(hq, 2.0**-3, 4, signed=0, base="ReQuant")
    w2 = b.quant(b.const(rng.normal(0, 0.5, size=(h, n)), "W2_"), 2.0**-5, 6, narrow=1)
    acc2 = b.node("MatMul", [hq, w2], base="fc2")
    b2 = b.quant(b.const(rng.normal(0, 0.5, size=n), "b2_"), 2.0**-6, 16)  # coarser than 2**-8
    acc2 = b.node("Identity", [b.node("Add", [b2, acc2])])
    y = b.quant(acc2, 2.0**-2, 6, signed=1, narrow=1, mode="HALF_UP", base="OutQuant")
    return b.model(y, n)


def handmade_two_layer(**overrides) -> onnx.ModelProto:
    """Plain Gemm(transB) MLP 8-6-4 with knobs to break one thing at a time."""
    o = dict(in_scale=2.0**-4, zeropt=0.0, act_bits=8, act_mode="ROUND", w_scale=[2.0**-6], bias=True,
             float_bias=None, hidden_quant=True, out_quant=True, extra=None, w_quant=True)
    o.update(overrides)
    rng = np.random.default_rng(3)
    b = Builder(8)
    x = b.quant("x", o["in_scale"], 8, base="InQuant")
    w1 = b.const(rng.normal(0, 0.4, size=(6, 8)), "W1_")
    if o["w_quant"]:
        w1 = b.quant(w1, np.asarray(o["w_scale"], dtype=np.float64).reshape(-1, 1), 8, narrow=1, base="WQuant")
    ins = [x, w1]
    if o["float_bias"] is not None:
        ins.append(b.const(o["float_bias"], "fb_"))
    elif o["bias"]:
        ins.append(b.quant(b.const(rng.normal(0, 0.3, size=6), "b1_"), 2.0**-10, 32, base="BQuant"))
    h = b.node("Gemm", ins, base="fc1", transB=1)
    if o["extra"]:
        h = b.node(o["extra"], [h], base="Extra")
    h = b.node("Relu", [h], base="relu1")
    if o["hidden_quant"]:
        h = b.quant(h, 2.0**-3, o["act_bits"], signed=0, mode=o["act_mode"], zeropt=o["zeropt"], base="ActQuant")
    w2 = b.quant(b.const(rng.normal(0, 0.4, size=(4, 6)), "W2_"), 2.0**-6, 8, narrow=1, base="W2Quant")
    y = b.node("Gemm", [h, w2], base="fc2", transB=1)
    if o["out_quant"]:
        y = b.quant(y, 2.0**-3, 8, base="OutQuant")
    return b.model(y, 4)


# ------------------------------------------------------------------------------------------------------------
# Brevitas models (trained a few steps, exported with export_qonnx)
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brevitas():
    pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    pytest.importorskip("onnxoptimizer")
    from nn2aie.examples import brevitas_models

    return brevitas_models


@pytest.fixture(scope="module")
def exported(brevitas):
    cache: dict[str, tuple] = {}

    def get(key: str):
        if key not in cache:
            sizes, seed, steps = {"jet": ([16, 64, 32, 32, 5], 0, 20), "wide": ([384, 256, 200, 10], 1, 10)}[key]
            module = brevitas.make_brevitas_mlp(sizes, seed=seed, train_steps=steps)
            cache[key] = (module, brevitas.export_brevitas_qonnx(module, sizes[0]), sizes)
        return cache[key]

    return get


@pytest.mark.parametrize("key", ["jet", "wide"])
def test_brevitas_mlp_bit_exact(exported, key):
    import torch

    module, proto, sizes = exported(key)
    graph = load_qonnx(proto)
    assert graph.source["framework"] == "qonnx" and graph.source["reference_exact"] == "yes"
    assert [op.kind for op in graph.ops] == ["dense"] * (len(sizes) - 1)
    assert [op.attrs["activation"] for op in graph.ops] == ["relu"] * (len(sizes) - 2) + ["linear"]
    for op, (k, n) in zip(graph.ops, zip(sizes[:-1], sizes[1:], strict=True), strict=True):
        assert graph.tensor(op.inputs[1]).shape == (k, n)
        assert graph.tensor(op.outputs[0]).shape == (n,)
        assert graph.tensor(op.inputs[2]).type.frac == (graph.tensor(op.inputs[0]).type.frac
                                                        + graph.tensor(op.inputs[1]).type.frac)
    in_t = graph.tensor(graph.inputs[0]).type
    assert (in_t.width, in_t.signed, in_t.rounding, in_t.overflow) == (8, True, "RND_CONV", "SAT")
    assert graph.tensor(graph.ops[0].outputs[0]).type.signed is False  # Uint8 QuantReLU

    x = float_inputs(1500, sizes[0], seed=7)
    ours, codes = nn2aie_forward(graph, x)
    # host-side input quantisation == QONNX Quant (ROUND = half-even) on the input
    assert np.array_equal(codes * 2.0 ** -in_t.frac, qonnx_input_quant(proto, x).astype(np.float64))
    assert np.abs(codes).max() == 128  # saturation exercised
    assert requant_ties(graph, codes) > 0  # half-even ties exercised in the first requantisation

    ref = run_reference(proto, x)
    with torch.no_grad():
        torch_out = module(torch.from_numpy(x)).numpy()
    assert ref.shape == torch_out.shape == ours.shape == (len(x), sizes[-1])
    assert np.array_equal(ref, torch_out), "qonnx execute_onnx differs from the Brevitas forward"
    assert np.array_equal(ours, ref)
    assert np.array_equal(ours, torch_out)


def test_run_reference_batches(exported):
    _, proto, sizes = exported("jet")
    graph = load_qonnx(proto)
    x = float_inputs(10_000, sizes[0], seed=11)
    t0 = time.perf_counter()
    ref = run_reference(proto, x)  # chunks of 4096, last one zero-padded
    assert time.perf_counter() - t0 < 20
    assert np.array_equal(nn2aie_forward(graph, x)[0], ref)
    assert np.array_equal(run_reference(proto, x[:3], chunk=1), ref[:3])  # row by row
    assert np.array_equal(run_reference(proto, x[5]), ref[5])  # a single 1-D row


def test_brevitas_small_variants(brevitas):
    """Signed 4-bit ReLU, 4-bit weights, Int16Bias; and the TorchScript exporter (different node patterns)."""
    import torch

    module = brevitas.make_brevitas_mlp([16, 24, 5], seed=3, train_steps=8, weight_bit_width=4, relu_bits=4,
                                        signed_relu=True, bias_bits=16)
    x = float_inputs(1000, 16, seed=5)
    with torch.no_grad():
        torch_out = module(torch.from_numpy(x)).numpy()
    for kwargs in ({}, {"dynamo": False}):
        proto = brevitas.export_brevitas_qonnx(module, 16, **kwargs)
        graph = load_qonnx(proto)
        hidden = graph.tensor(graph.ops[0].outputs[0]).type
        assert (hidden.width, hidden.signed, hidden.container) == (4, True, "int8")
        assert graph.tensor(graph.ops[0].inputs[1]).type.width == 4
        assert graph.tensor(graph.ops[0].inputs[2]).type.width == 16
        ours = nn2aie_forward(graph, x)[0]
        assert np.array_equal(ours, run_reference(proto, x))
        assert np.array_equal(ours, torch_out)
    assert [op.name for op in graph.ops] == ["n1_Gemm", "n3_Gemm"]  # TorchScript node names, C-identifier safe
    assert graph.tensor(graph.ops[0].outputs[0]).origin == "/2/act_quant/export_handler/Quant_output_0"


# ------------------------------------------------------------------------------------------------------------
# hand-written QONNX patterns (MatMul+Add, Transpose on weights, Quant->Relu->Quant, FLOOR / HALF_UP, CEIL weights)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_mode", ["ROUND", "CEIL"])
def test_handmade_patterns_bit_exact(weight_mode):
    pytest.importorskip("qonnx")
    proto = handmade_mlp(weight_mode=weight_mode)
    graph = load_qonnx(proto)
    fc1, fc2 = graph.ops
    assert fc1.name.startswith("fc1") and fc2.name.startswith("fc2")
    assert fc1.attrs["activation"] == "relu" and fc2.attrs["activation"] == "linear"
    h_t = graph.tensor(fc1.outputs[0]).type
    assert (h_t.width, h_t.signed, h_t.frac, h_t.rounding) == (4, False, 3, "TRN")  # u4 clamp, FLOOR rounding
    y_t = graph.tensor(fc2.outputs[0]).type
    assert (y_t.width, y_t.narrow, y_t.rounding) == (6, True, "RND_INF")
    assert graph.tensor(fc2.inputs[2]).type.frac == 8  # bias brought to the accumulator LSB
    x = float_inputs(3000, 12, seed=2)
    assert np.array_equal(nn2aie_forward(graph, x)[0], run_reference(proto, x))


def test_reference_exactness_is_recorded():
    """16-bit activations x 16-bit weights: float32 accumulation in the reference may round -> flagged."""
    rng = np.random.default_rng(0)
    b = Builder(64)
    x = b.quant("x", 2.0**-8, 16, base="InQuant")
    w = b.quant(b.const(rng.normal(0, 1.0, size=(64, 4))), 2.0**-12, 16, base="WQuant")
    y = b.quant(b.node("MatMul", [x, w], base="fc"), 2.0**-4, 16, base="OutQuant")
    graph = load_qonnx(b.model(y, 4))
    assert graph.source["reference_exact"] == "no"
    assert load_qonnx(handmade_mlp()).source["reference_exact"] == "yes"


def test_quantize_constant_modes():
    from nn2aie.frontends.qonnx_frontend import QuantSpec

    values = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1.25, -1.25, 100.0, -100.0]) * 0.25
    expect = {
        "ROUND": [-2, -2, 0, 0, 2, 2, 1, -1, 7, -7],
        "FLOOR": [-3, -2, -1, 0, 1, 2, 1, -2, 7, -7],
        "CEIL": [-2, -1, 0, 1, 2, 3, 2, -1, 7, -7],
        "HALF_UP": [-3, -2, -1, 1, 2, 3, 1, -1, 7, -7],
        "HALF_DOWN": [-2, -1, 0, 0, 1, 2, 1, -1, 7, -7],
        "DOWN": [-2, -1, 0, 0, 1, 2, 1, -1, 7, -7],
        "UP": [-3, -2, -1, 1, 2, 3, 2, -2, 7, -7],
    }
    for mode, want in expect.items():
        spec = QuantSpec(helper.make_node("Quant", [], []), 4, 2, True, True, mode)  # s4 narrow: [-7, 7]
        assert quantize_constant(values, spec).tolist() == want, mode


# ------------------------------------------------------------------------------------------------------------
# refusals: typed errors naming the node, the reason and the way out
# ------------------------------------------------------------------------------------------------------------
def test_last_layer_without_output_quant_outputs_its_exact_sum():
    """fc2 -> graph output with no Quant: the source's output is the float32 sum, exact below 2**24 LSBs; the array
    outputs the sum's codes at the accumulator LSB (2^-(3 + 6)) and the host dequantizes them."""
    compiled = compile_loaded(load_model(handmade_two_layer(out_quant=False, act_bits=4)))
    assert compiled.output_type.frac == 9 and compiled.output_type.width == 16
    x = np.random.default_rng(2).uniform(-10, 10, size=(2000, 8)).astype(np.float32)
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))
    with pytest.raises(UnsupportedQuantizationError, match=r"exact sum \(up to \d+\) is the graph output .* more than "
                       "16 bits"):
        load_model(handmade_two_layer(out_quant=False))  # 8-bit hidden codes: the sum needs 17 bits


def test_brevitas_batchnorm_before_the_quantizer_compiles_bit_exact(brevitas):
    """QuantLinear -> BatchNorm1d -> QuantIdentity: the BatchNorm becomes the layer's epilogue (read off qonnx's own
    nodes on every accumulator value), equal to qonnx on random inputs."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(8)
    with torch.no_grad():
        bn.running_mean.normal_(0, 2)
        bn.running_var.uniform_(0.5, 4)
        bn.weight.normal_()
        bn.bias.normal_()
    module = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 8, bias=False, weight_quant=Int8WeightPerTensorFixedPoint, narrow_range=True), bn,
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)).eval()
    proto = brevitas.export_brevitas_qonnx(module, 16)
    compiled = compile_loaded(load_model(proto))
    x = np.random.default_rng(1).normal(size=(2000, 16)).astype(np.float32) * 2
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))


@pytest.mark.parametrize("overrides, error, where, text", [
    (dict(extra="Hardmax"), UnsupportedOpError, "node Extra", "operator Hardmax is not supported"),
    (dict(extra="Sigmoid"), UnsupportedQuantizationError, "node Extra", "no Quant node between"),
    (dict(act_bits=24), UnsupportedQuantizationError, "node ActQuant", "bit width 24 is above 16"),
    (dict(hidden_quant=False), UnsupportedQuantizationError, "node fc2", "float tensor"),
    (dict(w_quant=False), UnsupportedQuantizationError, "node fc1", "weights W1_"),
    (dict(float_bias=np.full(6, 1e-4)), UnsupportedQuantizationError, "node fc1", "not exactly representable"),
])
def test_handmade_refusals(overrides, error, where, text):
    with pytest.raises(error) as info:
        load_qonnx(handmade_two_layer(**overrides))
    err = info.value
    assert err.where.startswith(where), err.where
    assert text in err.reason, err.reason
    assert err.hint


def test_handmade_baseline_loads_and_float_bias_on_grid_is_accepted():
    pytest.importorskip("qonnx")
    for proto in (handmade_two_layer(), handmade_two_layer(float_bias=(np.arange(6) - 3) * 2.0**-10)):
        graph = load_qonnx(proto)
        x = float_inputs(500, 8, seed=4)
        assert np.array_equal(nn2aie_forward(graph, x)[0], run_reference(proto, x))


@pytest.mark.parametrize("mode", ["CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN", "FLOOR"])
def test_every_qonnx_rounding_mode_on_activations(mode):
    pytest.importorskip("qonnx")
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import load_model

    proto = handmade_two_layer(act_mode=mode)
    graph = load_qonnx(proto)
    x = float_inputs(800, 8, seed=11)
    ref = run_reference(proto, x)
    assert np.array_equal(nn2aie_forward(graph, x)[0], ref)
    assert np.array_equal(compile_loaded(load_model(proto)).emulate(x), ref)  # the placed design too
