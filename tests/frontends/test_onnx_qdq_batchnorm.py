"""ONNX QDQ with a BatchNormalization (and Relu / Mul) between a MatMul's sum and its QuantizeLinear: the epilogue is
read off onnxruntime on every reachable accumulator (frontends/source_eval.py) and run as a verified multiplier or
table; equal to onnxruntime on 2000 inputs, the kernels co-simulated natively."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model


def model(steps: str = "bn_relu", weight_lo: int = -127) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    k, n, m = 12, 16, 4
    w1 = rng.integers(weight_lo, 128, size=(k, n)).astype(np.int8)
    w1[0, :] = weight_lo  # every column reaches the lowest code
    w2 = rng.integers(-127, 128, size=(n, m)).astype(np.int8)
    inits = {"sx": np.float32(2**-4), "zx": np.int8(0), "w1": w1, "sw": np.float32(2**-7), "zw": np.int8(0),
             "b1": rng.integers(-2000, 2000, size=n).astype(np.int32), "sb": np.float32(2**-11), "zb": np.int32(0),
             "g": rng.normal(size=n).astype(np.float32), "beta": rng.normal(size=n).astype(np.float32),
             "mean": rng.normal(size=n).astype(np.float32), "var": rng.uniform(0.5, 4, n).astype(np.float32),
             "c": rng.uniform(0.5, 2, n).astype(np.float32), "sh": np.float32(2**-3), "zh": np.uint8(0),
             "w2": w2, "sy": np.float32(2**-2), "zy": np.int8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w1", "sw", "zw"], ["w1d"], name="dq_w1"),
             helper.make_node("DequantizeLinear", ["b1", "sb", "zb"], ["b1d"], name="dq_b1"),
             helper.make_node("MatMul", ["xd", "w1d"], ["m1"], name="mm1"),
             helper.make_node("Add", ["m1", "b1d"], ["a1"], name="add1")]
    value = "a1"
    if "bn" in steps:
        nodes.append(helper.make_node("BatchNormalization", [value, "g", "beta", "mean", "var"], ["bn"], name="bn"))
        value = "bn"
    if "mul" in steps:
        nodes.append(helper.make_node("Mul", [value, "c"], ["mul"], name="mul"))
        value = "mul"
    if "relu" in steps:
        nodes.append(helper.make_node("Relu", [value], ["r"], name="relu"))
        value = "r"
    nodes += [helper.make_node("QuantizeLinear", [value, "sh", "zh"], ["hq"], name="q_h"),
              helper.make_node("DequantizeLinear", ["hq", "sh", "zh"], ["hd"], name="dq_h"),
              helper.make_node("DequantizeLinear", ["w2", "sw", "zw"], ["w2d"], name="dq_w2"),
              helper.make_node("MatMul", ["hd", "w2d"], ["m2"], name="mm2"),
              helper.make_node("QuantizeLinear", ["m2", "sy", "zy"], ["yq"], name="q_y"),
              helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"], name="dq_y")]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", m])],
                              [numpy_helper.from_array(v, name) for name, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("steps", ["bn_relu", "bn", "mul_relu", "bn_mul"])
def test_batchnorm_between_matmul_and_quantizelinear_equals_onnxruntime(steps):
    c = compile_loaded(load_model(model(steps)))
    assert c.model.graph.source["reference_exact"] == "yes"
    x = (np.random.default_rng(5).normal(size=(2000, 12)) * 4).astype(np.float32)  # saturating ones too
    ours, ref = c.emulate(x), c.reference(x)
    assert np.array_equal(ours, ref)
    assert np.unique(ref).size > 20
    first = c.summary()["layers"][0]
    assert first["requant"]["kind"] in ("multiplier", "table", "shift")
    if "bn" in steps:
        assert first["requant"]["negated_channels"] > 0
    report = c.native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)


def test_negative_scale_with_full_range_weights_is_refused():
    with pytest.raises(UnsupportedQuantizationError, match="negated weights.*-128|128 is not an int8 code"):
        load_model(model("bn", weight_lo=-128))


def test_batchnorm_of_a_dequantized_value_is_refused_naming_the_place():
    inits = {"s": np.float32(2**-4), "z": np.int8(0), "g": np.ones(4, np.float32), "b": np.zeros(4, np.float32),
             "m": np.zeros(4, np.float32), "v": np.ones(4, np.float32)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
             helper.make_node("BatchNormalization", ["xd", "g", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("QuantizeLinear", ["bn", "s", "z"], ["yq"], name="q_y"),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dq_y")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    with pytest.raises(UnsupportedOpError, match=r"node bn \(BatchNormalization\).*between a MatMul / Gemm"):
        load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
