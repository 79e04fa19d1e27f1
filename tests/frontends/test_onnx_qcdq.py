"""Brevitas' QCDQ form: ``QuantizeLinear -> Clip(lo, hi) -> DequantizeLinear`` is a sub-8-bit (or narrow) quantizer
in an 8-bit container; the QDQ frontend reads the Clip as part of it (and Clip of constant weight codes as the
clipped constants). Checked against onnxruntime on the exported model with ``np.array_equal``."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model

pytest.importorskip("brevitas")


def brevitas_qcdq(tmp_path) -> onnx.ModelProto:
    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_onnx_qcdq
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

    torch.manual_seed(0)
    linear = dict(bias=True, bias_quant=Int32Bias, weight_quant=Int8WeightPerTensorFixedPoint,
                  return_quant_tensor=True)
    module = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=6, return_quant_tensor=True),
        qnn.QuantLinear(16, 32, weight_bit_width=4, **linear),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(32, 5, weight_bit_width=3, **linear),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=5)).eval()
    path = tmp_path / "qcdq.onnx"
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        # the TorchScript exporter: Brevitas' dynamo QCDQ export refuses quantized biases
        export_onnx_qcdq(module, torch.randn(1, 16), str(path), dynamo=False)
    return onnx.load(str(path))


def test_brevitas_sub_byte_qcdq_is_bit_exact(tmp_path):
    model = brevitas_qcdq(tmp_path)
    assert sum(n.op_type == "Clip" for n in model.graph.node) >= 5
    compiled = compile_loaded(load_model(model))
    layers = compiled.summary()["layers"]
    assert [(layer["input_type"], layer["output_type"]) for layer in layers] == [
        ("fixed<s6,f5,RND_CONV,SAT>", "fixed<u4,f4,RND_CONV,SAT>"),
        ("fixed<u4,f4,RND_CONV,SAT>", "fixed<s5,f4,RND_CONV,SAT>")]
    w = compiled.model.graph.tensor(compiled.model.graph.ops[0].inputs[1]).data
    assert w.min() >= -8 and w.max() <= 7  # 4-bit weights, clipped constants
    x = (np.random.default_rng(0).normal(size=(3000, 16)) * 3).astype(np.float32)
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))


def _handmade(lo: int, hi: int) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = rng.integers(-7, 8, size=(8, 4)).astype(np.int8)
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "s_in": np.float32(0.125), "z_in": np.int8(0), "lo": np.int8(lo), "hi": np.int8(hi),
        "w": w, "s_w": np.float32(0.25), "z_w": np.int8(0), "s_y": np.float32(0.5), "z_y": np.int8(0)}.items()]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"], name="q_in"),
             helper.make_node("Clip", ["xq", "lo", "hi"], ["xc"], name="clip_in"),
             helper.make_node("DequantizeLinear", ["xc", "s_in", "z_in"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w", "s_w", "z_w"], ["wd"], name="dq_w"),
             helper.make_node("MatMul", ["xd", "wd"], ["m"], name="mm"),
             helper.make_node("QuantizeLinear", ["m", "s_y", "z_y"], ["yq"], name="q_y"),
             helper.make_node("DequantizeLinear", ["yq", "s_y", "z_y"], ["y"], name="dq_y")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_narrow_clip_is_a_narrow_type_and_exact():
    compiled = compile_loaded(load_model(_handmade(-7, 7)))
    assert compiled.input_type.narrow and compiled.input_type.width == 4
    x = np.random.default_rng(2).uniform(-3, 3, size=(2000, 8)).astype(np.float32)
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))


def test_clip_to_no_bit_width_range_is_refused_naming_the_quantizer():
    with pytest.raises(UnsupportedQuantizationError, match=r"q_in.*\[-5, 9\].*not the range of a signed bit width"):
        load_model(_handmade(-5, 9))
