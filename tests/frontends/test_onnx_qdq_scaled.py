"""ONNX QDQ with float scales and zero points: models quantized by onnxruntime's own ``quantize_static`` (uint8 or
int8 activations with zero points, int8 weights per tensor or per output channel, int32 biases at scale sx * sw).

onnxruntime computes each Gemm in float32 and nn2aie the exact rational map (kernels/linear_scaled.py); the two can
only differ where a layer's real value lies within float32 rounding of a rounding boundary. So the check is layer by
layer, on onnxruntime's own QuantizeLinear outputs (the integer codes of every layer): each layer fed the source's
input codes must give the source's output codes except where the rigorous float32 bound of ``float32_tie_margin``
allows a tie, and every end-to-end difference must come from an event with such a layer-level tie. The host-side
input quantizer must equal onnxruntime's QuantizeLinear exactly, and the emulator the logical model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.types import ScaledType
from nn2aie.kernels.linear_scaled import evaluate_codes, float32_tie_margin, scaled_layer

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")


def float_mlp(sizes: list[int], seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        inits += [numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"B{i}"], [f"a{i}"], name=f"fc{i}"))
        x = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def ort_quantized(tmp_path, sizes, seed, per_channel: bool, activations: str) -> onnx.ModelProto:
    src, dst = tmp_path / "f32.onnx", tmp_path / "qdq.onnx"
    onnx.save(float_mlp(sizes, seed), src)
    rng = np.random.default_rng(seed + 100)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{"x": (rng.normal(size=(1, sizes[0])) * 2).astype(np.float32)} for _ in range(64)])

        def get_next(self):
            return next(self.rows, None)

    act = {"uint8": quantization.QuantType.QUInt8, "int8": quantization.QuantType.QInt8}[activations]
    quantization.quantize_static(str(src), str(dst), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=per_channel, activation_type=act,
                                 weight_type=quantization.QuantType.QInt8)
    return onnx.load(str(dst))


def ort_codes(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime's values of the named (QuantizeLinear output) tensors, declared extra graph outputs."""
    m = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in m.graph.value_info}
    for name in names:
        m.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = session.run(names, {"x": x})
    return {n: np.asarray(v).astype(np.int64) for n, v in zip(names, outs, strict=True)}


@pytest.mark.parametrize("per_channel, activations", [(True, "uint8"), (False, "uint8"), (True, "int8")])
def test_quantize_static_mlp_layer_by_layer(tmp_path, per_channel, activations):
    sizes = [16, 64, 32, 5]
    model = ort_quantized(tmp_path, sizes, seed=4, per_channel=per_channel, activations=activations)
    compiled = compile_loaded(load_model(model))
    graph = compiled.model.graph
    assert graph.source["reference_exact"] == "no"
    assert all(isinstance(graph.tensor(t).type, ScaledType) for op in graph.ops for t in op.inputs[:2])
    x = (np.random.default_rng(9).normal(size=(3000, sizes[0])) * 3).astype(np.float32)
    x[:50] *= 100  # saturating inputs

    q_in = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x").output[0]
    dq_input = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    names = [q_in] + [dq_input.get(graph.tensor(op.outputs[0]).origin, graph.tensor(op.outputs[0]).origin)
                      for op in graph.ops]  # the codes: QuantizeLinear outputs
    source = ort_codes(model, x, names)
    host = compiled.quantize(x)
    assert np.array_equal(host, source[q_in])  # the host quantizer is onnxruntime's QuantizeLinear, exactly
    assert host.max() == 255 if activations == "uint8" else host.max() == 127

    differing: set[int] = set()
    per_layer = []
    for i, op in enumerate(graph.ops):
        x_codes = source[names[i]]
        layer = scaled_layer(graph, op)
        acc = x_codes @ graph.tensor(op.inputs[1]).data.astype(np.int64)
        if layer.tile_bias is not None:
            acc = acc + layer.tile_bias
        y = evaluate_codes(layer, acc)
        rows, cols = np.nonzero(y != source[names[i + 1]])
        distance, bound = float32_tie_margin(graph, op, x_codes, rows, cols)
        assert np.all(distance <= bound), f"{op.name}: a difference the float32 bound does not explain"
        assert np.all(np.abs(y[rows, cols] - source[names[i + 1]][rows, cols]) == 1)
        differing.update(rows.tolist())
        per_layer.append(len(rows))
    ours = evaluate(graph, {graph.inputs[0]: host})[graph.outputs[0]]
    end_to_end = set(np.nonzero((ours != source[names[-1]]).any(axis=1))[0].tolist())
    assert end_to_end <= differing
    assert len(end_to_end) <= 5, per_layer  # float32 ties are rare
    assert np.array_equal(compiled.emulate_codes(host), ours)  # the placed design == the logical model
    kinds = {layer["requant"]["kind"] for layer in compiled.summary()["layers"]}
    assert kinds <= {"multiplier", "table"}
    report = compiled.native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)


def _insert_after_first_layer(model: onnx.ModelProto, op_type: str, **attrs) -> onnx.ModelProto:
    """``op_type`` between the first layer's DequantizeLinear and the second Gemm."""
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith(("r0", "a0")))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm" and dq.output[0] in n.input)
    extra = helper.make_node(op_type, [dq.output[0]], ["extra"], name="extra", **attrs)
    gemm.input[list(gemm.input).index(dq.output[0])] = "extra"
    model.graph.node.insert(list(model.graph.node).index(gemm), extra)
    return model


def test_relu_of_a_zero_point_value_folds_into_the_layer(tmp_path):
    """Relu((q - zp) s) = (max(q, zp) - zp) s: the Relu after a layer's QDQ pair is its activation, exactly."""
    model = _insert_after_first_layer(ort_quantized(tmp_path, [8, 6, 4], seed=1, per_channel=False,
                                                    activations="int8"), "Relu")
    compiled = compile_loaded(load_model(model))
    assert compiled.summary()["layers"][0]["activation"] == "relu"
    x = (np.random.default_rng(3).normal(size=(3000, 8)) * 3).astype(np.float32)
    ours, ref = compiled.emulate(x), compiled.reference(x)
    assert int((ours != ref).any(axis=1).sum()) <= 3  # float32 ties only (the layer-by-layer test proves them)


def test_float_scale_into_an_eltwise_op_is_refused_naming_the_quantizer(tmp_path):
    """A float-scale value read by an op that needs a power-of-two scale (LeakyRelu between the layers)."""
    model = _insert_after_first_layer(ort_quantized(tmp_path, [8, 6, 4], seed=1, per_channel=False,
                                                    activations="int8"), "LeakyRelu", alpha=0.125)
    with pytest.raises(UnsupportedQuantizationError, match="not a power of two with zero point 0"):
        load_model(model)
