"""QONNX frontend on float scales: Brevitas' default (float, per-tensor and per-channel) quantizers, hand-built
graphs with non-power-of-two scales, per-channel weight scales and activation zero points.

The source (qonnx execute_onnx, Brevitas' forward) computes each layer in float32; nn2aie computes the exact
rational map (kernels/linear_scaled.py). The two can only differ where a layer's real value lies within float32
rounding of a rounding boundary. So the check is layer by layer: each layer is fed the source's own input codes,
every output code that differs from the source's must sit within the rigorous float32 bound of a boundary
(``float32_tie_margin``), and every end-to-end difference must come from an event where such a layer-level
difference occurred. The emulator of the placed design must equal the logical model exactly.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_qonnx import float_inputs, handmade_two_layer, input_quant_node  # same folder (rootdir on sys.path)

from nn2aie.api import compile_loaded, dequantize_output, quantize_input
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.frontends.qonnx_frontend import load_qonnx, reference_tensors, run_reference
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph
from nn2aie.ir.types import ScaledType
from nn2aie.kernels.linear_scaled import evaluate_codes, float32_tie_margin, scaled_layer


def codes_of(values: np.ndarray, t) -> np.ndarray:
    """The integer codes behind the source's float32 values of a quantized tensor (checked to round-trip)."""
    if isinstance(t, ScaledType):
        scale = np.array([float(s) for s in t.scale])
        codes = np.rint(values.astype(np.float64) / scale) + np.array(t.zero_point)
    else:
        codes = np.rint(values.astype(np.float64) * 2.0**t.frac)
    codes = codes.astype(np.int64)
    assert np.array_equal(dequantize_output(codes, t), values), "the source values are not codes of the type"
    return codes


def layer_names(proto: onnx.ModelProto, graph: Graph) -> list[str]:
    """Source tensor names of every dense layer's input and of the last output (the graph input's own Quant
    output for the first layer: nn2aie names that tensor after the graph input)."""
    names = [graph.tensor(op.inputs[0]).origin for op in graph.ops] + [graph.tensor(graph.ops[-1].outputs[0]).origin]
    if names[0] in {vi.name for vi in proto.graph.input}:
        names[0] = input_quant_node(proto).output[0]
    return names


def trace_against_source(proto: onnx.ModelProto, graph: Graph, x: np.ndarray) -> dict:
    """Layer-by-layer comparison with qonnx (see the module docstring); returns counts for the caller to check."""
    assert [op.kind for op in graph.ops] == ["dense"] * len(graph.ops)
    names = layer_names(proto, graph)
    source = reference_tensors(proto, x, names)
    host = quantize_input(x, graph.tensor(graph.inputs[0]).type).astype(np.int64)
    assert np.array_equal(host, codes_of(source[names[0]], graph.tensor(graph.inputs[0]).type))  # host quantizer
    differing_events: set[int] = set()
    per_layer = []
    for i, op in enumerate(graph.ops):
        x_codes = codes_of(source[names[i]], graph.tensor(op.inputs[0]).type)
        y_source = codes_of(source[names[i + 1]], graph.tensor(op.outputs[0]).type)
        layer = scaled_layer(graph, op)
        acc = x_codes @ graph.tensor(op.inputs[1]).data.astype(np.int64)
        if layer.tile_bias is not None:
            acc = acc + layer.tile_bias
        y = evaluate_codes(layer, acc)
        rows, cols = np.nonzero(y != y_source)
        distance, bound = float32_tie_margin(graph, op, x_codes, rows, cols)
        assert np.all(distance <= bound), f"{op.name}: a difference the float32 bound does not explain"
        assert np.all(np.abs(y[rows, cols] - y_source[rows, cols]) == 1)  # a tie goes one code either way
        differing_events.update(rows.tolist())
        per_layer.append(len(rows))
    ours = evaluate(graph, {graph.inputs[0]: host})[graph.outputs[0]]
    final = codes_of(source[names[-1]], graph.tensor(graph.outputs[0]).type)
    end_to_end = set(np.nonzero((ours != final).any(axis=1))[0].tolist())
    assert end_to_end <= differing_events, "an event differs with no layer-level float32 tie behind it"
    return {"layers": per_layer, "events": len(end_to_end), "ours": ours, "host": host}


def check_emulator(proto: onnx.ModelProto, host: np.ndarray, ours: np.ndarray):
    compiled = compile_loaded(load_model(proto))
    assert np.array_equal(compiled.emulate_codes(host.astype(np.float32)).astype(np.int64), ours)
    return compiled


# ------------------------------------------------------------------------------------------------------------
# Brevitas with its default quantizers
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brevitas():
    pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    pytest.importorskip("onnxoptimizer")
    from nn2aie.examples import brevitas_models

    return brevitas_models


@pytest.mark.parametrize("quantizers", ["default", "per_channel"])
def test_brevitas_default_quantizers(brevitas, quantizers):
    import torch

    sizes = [16, 64, 32, 5]
    module = brevitas.make_brevitas_mlp(sizes, seed=0, train_steps=20, quantizers=quantizers)
    proto = brevitas.export_brevitas_qonnx(module, sizes[0])
    graph = load_qonnx(proto)
    assert graph.source["reference_exact"] == "no"  # the source sums in float32
    types = [graph.tensor(t).type for op in graph.ops for t in op.inputs[:2] + op.outputs]
    assert all(isinstance(t, ScaledType) for t in types)
    for t in types:  # learned float scales: none a power of two
        assert all(float(s) != 2.0 ** np.round(np.log2(float(s))) for s in t.scale)
    w_channels = [graph.tensor(op.inputs[1]).type.channels for op in graph.ops]
    assert w_channels == ([1, 1, 1] if quantizers == "default" else sizes[1:])

    x = float_inputs(2500, sizes[0], seed=7)
    found = trace_against_source(proto, graph, x)
    assert np.abs(found["host"]).max() == 128  # the input quantizer saturates
    assert found["events"] <= 2, found  # float32 ties are rare (docs/numerics.md has the measured rates)
    ref = run_reference(proto, x)
    with torch.no_grad():
        torch_out = module(torch.from_numpy(x)).numpy()
    assert np.array_equal(ref, torch_out), "qonnx execute_onnx differs from the Brevitas forward"
    out_t = graph.tensor(graph.outputs[0]).type
    ours = dequantize_output(found["ours"], out_t)
    assert int((ours != ref).any(axis=1).sum()) == found["events"]

    compiled = check_emulator(proto, found["host"], found["ours"])
    assert np.array_equal(compiled.emulate(x), ours)  # float in, float out: the same host quantizer
    kinds = [layer["requant"]["kind"] for layer in compiled.summary()["layers"]]
    assert set(kinds) <= {"shift", "multiplier", "table"} and "multiplier" in kinds


def test_brevitas_per_channel_fixed_point(brevitas):
    """Power-of-two scales per output channel (Int8WeightPerChannelFixedPoint): exact in float32 too."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint

    torch.manual_seed(0)
    lin = qnn.QuantLinear(16, 8, bias=False, weight_quant=Int8WeightPerChannelFixedPoint, return_quant_tensor=True)
    with torch.no_grad():
        lin.weight[0].mul_(8.0)  # one output channel with a much larger range -> its own scale
    module = torch.nn.Sequential(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
                                 lin, qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)).eval()
    proto = brevitas.export_brevitas_qonnx(module, 16)
    graph = load_qonnx(proto)
    w_t = graph.tensor(graph.ops[0].inputs[1]).type
    assert isinstance(w_t, ScaledType) and len(set(w_t.scale)) > 1
    x = float_inputs(2000, 16, seed=9)
    found = trace_against_source(proto, graph, x)
    assert found["layers"] == [0] and found["events"] == 0  # power-of-two products: no float32 rounding at all
    with torch.no_grad():
        torch_out = module(torch.from_numpy(x)).numpy()
    assert np.array_equal(dequantize_output(found["ours"], graph.tensor(graph.outputs[0]).type), torch_out)
    check_emulator(proto, found["host"], found["ours"])


# ------------------------------------------------------------------------------------------------------------
# hand-built graphs: one float-scale feature at a time, every QONNX rounding mode on the requantised output
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ROUND", "FLOOR", "CEIL", "HALF_UP", "HALF_DOWN", "UP", "DOWN"])
def test_non_power_of_two_input_scale(mode):
    pytest.importorskip("qonnx")
    proto = handmade_two_layer(in_scale=0.1, act_mode=mode)
    graph = load_qonnx(proto)
    in_t = graph.tensor(graph.inputs[0]).type
    assert isinstance(in_t, ScaledType) and in_t.scale == (np.float32(0.1),)
    found = trace_against_source(proto, graph, float_inputs(3000, 8, seed=21))
    assert found["events"] <= 2, found
    check_emulator(proto, found["host"], found["ours"])


def test_per_channel_weight_scales():
    pytest.importorskip("qonnx")
    scales = [2.0**-6 * f for f in (1.0, 0.7, 1.3, 0.45, 2.2, 0.9)]
    proto = handmade_two_layer(w_scale=scales)
    graph = load_qonnx(proto)
    w_t = graph.tensor(graph.ops[0].inputs[1]).type
    assert isinstance(w_t, ScaledType) and w_t.channels == 6
    assert [float(s) for s in w_t.scale] == [float(np.float32(s)) for s in scales]
    found = trace_against_source(proto, graph, float_inputs(3000, 8, seed=22))
    assert found["events"] <= 2, found
    check_emulator(proto, found["host"], found["ours"])


@pytest.mark.parametrize("zeropt", [3.0, 200.0])
def test_activation_zero_point(zeropt):
    """Unsigned hidden activations with a zero point after the ReLU: the next layer subtracts it exactly."""
    pytest.importorskip("qonnx")
    proto = handmade_two_layer(zeropt=zeropt)
    graph = load_qonnx(proto)
    h_t = graph.tensor(graph.ops[0].outputs[0]).type
    assert isinstance(h_t, ScaledType) and h_t.zero_point == (int(zeropt),)
    found = trace_against_source(proto, graph, float_inputs(3000, 8, seed=23))
    assert found["events"] <= 2, found
    check_emulator(proto, found["host"], found["ours"])


# ------------------------------------------------------------------------------------------------------------
# what stays refused, with the true reason
# ------------------------------------------------------------------------------------------------------------
def test_asymmetric_weights_are_refused():
    pytest.importorskip("qonnx")
    proto = handmade_two_layer()
    w_quant = next(n for n in proto.graph.node if n.name.startswith("WQuant"))
    zp = next(i for i in proto.graph.initializer if i.name == w_quant.input[2])
    zp.CopyFrom(onnx.numpy_helper.from_array(np.asarray(2.0, np.float32), zp.name))
    with pytest.raises(UnsupportedQuantizationError) as info:
        load_qonnx(proto)
    assert "WQuant" in info.value.where and "zero point" in info.value.reason and info.value.hint


def test_per_channel_activation_scale_is_refused():
    pytest.importorskip("qonnx")
    proto = handmade_two_layer()
    act = next(n for n in proto.graph.node if n.name.startswith("ActQuant"))
    scale = next(i for i in proto.graph.initializer if i.name == act.input[1])
    scale.CopyFrom(onnx.numpy_helper.from_array((np.full((1, 6), 0.125) * np.arange(1, 7)).astype(np.float32),
                                                    scale.name))
    with pytest.raises(UnsupportedQuantizationError) as info:
        load_qonnx(proto)
    assert "ActQuant" in info.value.where and "per-channel" in info.value.reason and info.value.hint
