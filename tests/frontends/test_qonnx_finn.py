"""FINN's binarized and 2-bit MLPs (brevitas_examples.bnn_pynq TFC / SFC / LFC) through the QONNX frontend.

Each model is built from the examples' own code with seeded weights and BatchNorm / TensorNorm parameters (drawn so
that every threshold matters: gammas of both signs, a zero gamma, integer means that put the bipolar quantizer's
tie at 0 on reachable sums), exported with Brevitas' export_qonnx, and compared with qonnx's own execution of the
exported model (``np.array_equal``) on 2000 inputs that include the input quantizer's ties (x = 0.5, 2x - 1 = 0)
and values outside [0, 1]; hidden layers are compared code by code with qonnx's tensors, and the kernels are
co-simulated natively against the emulator.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.frontends.qonnx_frontend import reference_tensors
from nn2aie.ir.evaluate import evaluate

pytest.importorskip("brevitas_examples")

EVENTS = 2000


@functools.cache
def finn_model(name: str, seed: int = 3) -> bytes:
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_finn_fc

    return export_brevitas_qonnx(make_finn_fc(name, seed), 784, input_shape=(1, 28, 28)).SerializeToString()


def images(events: int = EVENTS, seed: int = 0) -> np.ndarray:
    """MNIST-shaped inputs: uniform in [-0.2, 1.2], a tenth of the pixels exactly 0, 0.5 (the tie of 2x - 1) or 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, size=(events, 1, 28, 28)).astype(np.float32)
    pick = rng.random(x.shape) < 0.1
    x[pick] = rng.choice(np.array([0.0, 0.5, 1.0], dtype=np.float32), size=int(pick.sum()))
    return x


def compiled_of(name: str):
    return compile_loaded(load_model(onnx.load_from_string(finn_model(name))))


@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_2w2a", "tfc_1w2a", "sfc_2w2a"])
def test_finn_mlp_bit_exact_against_qonnx(name):
    c = compiled_of(name)
    x = images()
    ours, ref = c.emulate(x), c.reference(x)
    assert ours.shape == ref.shape == (EVENTS, 10)
    assert np.array_equal(ours, ref)
    assert np.unique(ref).size > 10  # the outputs vary: the thresholds decide something
    summary = c.summary()
    assert "bipolar" in summary["host_stages"]["input x"] or name.endswith("2a")
    assert "x * 2" in summary["host_stages"]["input x"]
    hidden = [layer for layer in summary["layers"] if "negated_channels" in layer.get("requant", {})]
    assert len(hidden) == 3 and all(layer["requant"]["negated_channels"] > 0 for layer in hidden)
    # the step functions' implementation: a table, or a shift / multiplier verified to have the same thresholds
    assert all(layer["requant"]["kind"] in ("table", "multiplier", "shift") for layer in hidden)


@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_2w2a"])
def test_finn_hidden_layers_code_by_code(name):
    """Every hidden activation code equals qonnx's (the BipolarQuant / Quant outputs of the exported graph)."""
    c = compiled_of(name)
    g = c.model.graph
    x = images(500, seed=1)
    codes = c.quantize(x)
    values = evaluate(g, {g.inputs[0]: codes})
    hidden = [op.outputs[0] for op in g.topo_order() if "requant_table" in op.attrs]
    ref = reference_tensors(onnx.load_from_string(finn_model(name)), x, [g.tensor(t).origin for t in hidden])
    for t in hidden:
        want = np.rint(ref[g.tensor(t).origin].astype(np.float64)).astype(np.int64)  # scale 1: values are codes
        assert np.array_equal(values[t].reshape(want.shape), want), t


def test_finn_tfc_native_cosim():
    c = compiled_of("tfc_1w1a")
    report = c.native_cosim(images(16, seed=2))
    assert report.kernels and all(k.match for k in report.kernels)
    assert sum(k.compared for k in report.kernels) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sfc_1w1a", "lfc_1w1a", "lfc_1w2a"])
def test_finn_large_mlps_bit_exact(name):
    c = compiled_of(name)
    x = images()
    assert np.array_equal(c.emulate(x), c.reference(x))


# -- refusals ---------------------------------------------------------------------------------------------------
def _handmade(nodes, inits, width=4):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, width])],
                              [onnx.numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
                               for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid("qonnx.custom_op.general", 1)])


def _quant(name, inp, out, bits=8.0, narrow=0):
    from onnx import helper

    return helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out], name=name,
                            domain="qonnx.custom_op.general", signed=1, narrow=narrow, rounding_mode="ROUND")


def _quant_inits(name, scale=1.0, bits=8.0):
    return {f"{name}_s": np.float32(scale), f"{name}_z": np.float32(0), f"{name}_b": np.float32(bits)}


def test_negative_batchnorm_scale_with_full_range_weights_is_refused():
    """A channel that falls as its sum grows needs the negated weights; -(-128) does not fit int8."""
    from onnx import helper

    w = np.full((4, 8), 1.0, dtype=np.float32)
    w[0, 0] = -128.0
    nodes = [_quant("qx", "x", "xq"), _quant("qw", "w", "wq"),
             helper.make_node("MatMul", ["xq", "wq"], ["s"], name="mm"),
             helper.make_node("BatchNormalization", ["s", "g", "b", "m", "v"], ["bn"], name="bn"),
             _quant("qy", "bn", "y")]
    inits = {"w": w.T.copy(), "g": -np.ones(4), "b": np.zeros(4), "m": np.zeros(4), "v": np.ones(4),
             **_quant_inits("qx"), **_quant_inits("qw"), **_quant_inits("qy", 4.0)}
    with pytest.raises(UnsupportedQuantizationError, match="negated weights.*narrow"):
        load_model(_handmade(nodes, inits))


def test_batchnorm_of_a_quantized_value_is_a_per_channel_affine_step():
    """Quant -> Relu -> BatchNormalization -> Quant: a standalone BatchNorm (no layer to fold into) becomes an
    eltwise affine op, its step function read off qonnx on every input code and run as a multiply-add per
    channel (verified on the whole code range); equal to qonnx, the kernels co-simulated natively."""
    from onnx import helper

    rng = np.random.default_rng(3)
    nodes = [_quant("qx", "x", "xq"), helper.make_node("Relu", ["xq"], ["r"], name="relu"),
             helper.make_node("BatchNormalization", ["r", "g", "b", "m", "v"], ["bn"], name="bn"),
             _quant("qy", "bn", "y")]
    inits = {"g": rng.normal(size=8), "b": rng.normal(size=8), "m": rng.uniform(0, 8, 8), "v": rng.uniform(1, 9, 8),
             **_quant_inits("qx", 0.0625), **_quant_inits("qy", 0.125)}
    c = compile_loaded(load_model(_handmade(nodes, inits, 8)))
    x = np.random.default_rng(4).uniform(-10, 10, size=(2000, 8)).astype(np.float32)
    assert np.array_equal(c.emulate(x), c.reference(x))
    layer = next(layer for layer in c.summary()["layers"] if layer.get("op") == "affine")
    assert layer["requant"]["kind"] == "multiplier" and layer["requant"]["negated_channels"] > 0
    report = c.native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)


def test_batchnorm_of_a_rank_3_value_is_refused():
    from onnx import helper

    graph = helper.make_graph(
        [_quant("qx", "x", "xq"), helper.make_node("BatchNormalization", ["xq", "g", "b", "m", "v"], ["bn"],
                                                   name="bn"), _quant("qy", "bn", "y")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8])],
        [onnx.numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in {
            "g": np.ones(4), "b": np.zeros(4), "m": np.zeros(4), "v": np.ones(4), **_quant_inits("qx"),
            **_quant_inits("qy")}.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1)])
    with pytest.raises(UnsupportedOpError, match="BatchNormalization of a \\[4, 8\\] value"):
        load_model(model)


@pytest.mark.parametrize("quantizers", ["fixed_point", "float"])
def test_brevitas_input_batchnorm(quantizers):
    """QuantIdentity -> BatchNorm1d -> QuantIdentity -> QuantLinear (a jet tagger's input normalisation)."""
    import brevitas.nn as qnn
    import torch
    from brevitas import quant

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    act, wq = ((quant.Int8ActPerTensorFixedPoint, quant.Int8WeightPerTensorFixedPoint) if quantizers ==
               "fixed_point" else (quant.Int8ActPerTensorFloat, quant.Int8WeightPerTensorFloat))
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(16)
    with torch.no_grad():
        bn.running_mean.normal_(0, 1)
        bn.running_var.uniform_(0.3, 3)
        bn.weight.normal_()
        bn.bias.normal_(0, 0.5)
    module = torch.nn.Sequential(qnn.QuantIdentity(act_quant=act, return_quant_tensor=False), bn,
                                 qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
                                 qnn.QuantLinear(16, 8, bias=False, weight_quant=wq, return_quant_tensor=True),
                                 qnn.QuantIdentity(act_quant=act))
    if quantizers == "float":  # calibrate the float scales
        module.train()
        with torch.no_grad():
            for _ in range(5):
                module(torch.randn(64, 16) * 2)
    module.eval()
    c = compile_loaded(load_model(export_brevitas_qonnx(module, 16)))
    x = (np.random.default_rng(0).normal(size=(3000, 16)) * 2).astype(np.float32)
    assert np.array_equal(c.emulate(x), c.reference(x))
    assert [layer.get("op") for layer in c.summary()["layers"]][0] == "affine"


def test_bipolar_quant_of_an_eltwise_result_is_refused():
    from onnx import helper

    nodes = [_quant("qx", "x", "xq"), helper.make_node("Relu", ["xq"], ["r"], name="relu"),
             helper.make_node("BipolarQuant", ["r", "bs"], ["y"], name="bq", domain="qonnx.custom_op.general")]
    inits = {"bs": np.float32(1.0), **_quant_inits("qx")}
    with pytest.raises(UnsupportedQuantizationError, match="bipolar quantizer is supported on the graph input"):
        load_model(_handmade(nodes, inits, 8))


def test_float_tail_with_a_relu_needs_an_output_quantizer():
    from onnx import helper

    nodes = [_quant("qx", "x", "xq"), _quant("qw", "w", "wq"), helper.make_node("MatMul", ["xq", "wq"], ["s"],
                                                                                 name="mm"),
             helper.make_node("Mul", ["s", "c"], ["m"], name="mul"), helper.make_node("Relu", ["m"], ["y"],
                                                                                     name="relu")]
    inits = {"w": np.ones((8, 4)), "c": np.float32(0.5), **_quant_inits("qx"), **_quant_inits("qw")}
    with pytest.raises(UnsupportedQuantizationError, match="no output quantizer|Quant node"):
        load_model(_handmade(nodes, inits))


def test_float_tail_mul_add_is_exact_on_the_host():
    """A last MatMul whose sum is scaled and shifted by float constants: the array outputs the exact sum, the host
    applies the two float32 operations; equal to qonnx on every input."""
    from onnx import helper

    rng = np.random.default_rng(5)
    w = rng.integers(-3, 4, size=(8, 4)).astype(np.float32)
    nodes = [_quant("qx", "x", "xq", 6.0), _quant("qw", "w", "wq", 3.0),
             helper.make_node("MatMul", ["xq", "wq"], ["s"], name="mm"),
             helper.make_node("Mul", ["c", "s"], ["m"], name="mul"), helper.make_node("Sub", ["d", "m"], ["y"],
                                                                                      name="sub")]
    inits = {"w": w, "c": rng.normal(size=4).astype(np.float32), "d": np.float32(0.3),
             **_quant_inits("qx", 0.25, 6.0), **_quant_inits("qw", 1.0, 3.0)}
    c = compile_loaded(load_model(_handmade(nodes, inits)))
    x = rng.uniform(-10, 10, size=(2000, 8)).astype(np.float32)
    assert np.array_equal(c.emulate(x), c.reference(x))
    assert "0.3 - x" in c.summary()["host_stages"]["output y"]


# -- Brevitas MLPs with BatchNorm (trained; some gammas negated) ---------------------------------------------------
@pytest.mark.parametrize("quantizers", ["fixed_point", "default", "per_channel"])
def test_brevitas_batchnorm_mlp_bit_exact_with_multiplier_epilogues(quantizers):
    """QuantLinear -> BatchNorm1d -> QuantReLU: where an affine map has exactly the thresholds qonnx's float32
    BatchNorm gives, the tile runs a multiplier (verified on every accumulator), else the table; either way equal
    to qonnx on 4000 inputs, and the kernels co-simulate natively."""
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_mlp

    module = make_brevitas_mlp([16, 64, 32, 5], seed=1, quantizers=quantizers, batch_norm=True)
    c = compile_loaded(load_model(export_brevitas_qonnx(module, 16)))
    x = (np.random.default_rng(0).normal(size=(4000, 16)) * 3).astype(np.float32)
    assert np.array_equal(c.emulate(x), c.reference(x))
    kinds = [layer["requant"]["kind"] for layer in c.summary()["layers"][:2]]
    assert all(k in ("multiplier", "table") for k in kinds)
    if quantizers != "per_channel":  # per channel, float32 rounding leaves some channels with no affine map
        assert "multiplier" in kinds
    report = c.native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)
