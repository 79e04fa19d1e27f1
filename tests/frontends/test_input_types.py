"""Float graph inputs a model reads without a quantizer: refused with the option named, or cast on the host into
the ap_fixed type the user gives (``input_types`` / ``--input-type``), said so in the summary, and compared with
the source on the cast inputs (the design equals the model on inputs on that grid)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded, compile_path, load_project, write_project_atomic
from nn2aie.errors import IllegalConfigError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.ir.types import FixedType, parse_ap_type
from nn2aie.passes.pipeline import CompileOptions

TYPE = "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"


def qdq_float_input() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, size=(8, 4)).astype(np.int8)
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "w": w, "sw": np.float32(2**-6), "zw": np.int8(0), "sy": np.float32(2**-3), "zy": np.int8(0)}.items()]
    nodes = [helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"], name="dq_w"),
             helper.make_node("MatMul", ["x", "wd"], ["m"], name="mm"),
             helper.make_node("QuantizeLinear", ["m", "sy", "zy"], ["q"], name="q_y"),
             helper.make_node("DequantizeLinear", ["q", "sy", "zy"], ["y"], name="dq_y")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_parse_ap_type():
    assert parse_ap_type("ap_fixed<8,3,AP_RND_CONV,AP_SAT>") == FixedType(8, 5, True, "RND_CONV", "SAT")
    assert parse_ap_type("ap_ufixed<6,2>") == FixedType(6, 4, False, "TRN", "WRAP")  # ap_fixed's own defaults
    assert parse_ap_type(" ap_int<12> ") == FixedType(12, 0, True, "TRN", "WRAP")
    for bad in ("fixed<8,3>", "ap_fixed<8>", "ap_fixed<8,3,AP_FOO>", "ap_fixed<64,3>", "ap_int<8,AP_SAT>"):
        with pytest.raises(ValueError):
            parse_ap_type(bad)


def test_qdq_float_input_is_refused_naming_the_option_then_cast_on_the_host():
    with pytest.raises(UnsupportedQuantizationError, match=r"graph input x.*reads the float input directly.*"
                       r"--input-type x=ap_fixed"):
        load_model(qdq_float_input())
    compiled = compile_loaded(load_model(qdq_float_input(), input_types={"x": TYPE}))
    summary = compiled.summary()
    assert summary["inputs"][0]["type"] == "fixed<s8,f5,RND_CONV,SAT>"
    assert "input_types" in summary["host_stages"]["input x"]
    x = np.random.default_rng(1).uniform(-6, 6, size=(2000, 8)).astype(np.float32)  # saturating ones too
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))
    # the reference runs the source on the host's cast values: on inputs already on the grid, on the raw ones too
    on_grid = np.clip(np.round(x * 32), -128, 127).astype(np.float32) / 32
    from nn2aie.frontends.onnx_qdq import run_reference

    assert np.array_equal(compiled.emulate(on_grid), run_reference(qdq_float_input(), on_grid))


def test_brevitas_model_without_an_input_quantizer():
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        qnn.QuantLinear(16, 8, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)).eval()
    proto = export_brevitas_qonnx(module, 16)
    name = proto.graph.input[0].name
    with pytest.raises(UnsupportedQuantizationError, match="reads the float graph input .* --input-type"):
        load_model(proto)
    compiled = compile_loaded(load_model(proto, input_types={name: "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"}))
    x = np.random.default_rng(2).normal(size=(2000, 16)).astype(np.float32) * 4
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))


def test_input_type_errors():
    with pytest.raises(IllegalConfigError, match="no graph input z .*its inputs: x"):
        load_model(qdq_float_input(), input_types={"z": TYPE})
    with pytest.raises(IllegalConfigError, match="input type for x"):
        load_model(qdq_float_input(), input_types={"x": "int8"})
    from nn2aie.examples.builders import make_qdq_mlp

    model = make_qdq_mlp([8, 6, 4])
    with pytest.raises(IllegalConfigError, match="already quantized .*drop the input type"):
        load_model(model, input_types={model.graph.input[0].name: TYPE})


def test_cli_input_type_and_project_round_trip(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(qdq_float_input(), model)
    out = tmp_path / "prj"
    r = subprocess.run([sys.executable, "-m", "nn2aie.cli", "-q", "compile", str(model), "-o", str(out),
                        "--input-type", f"x={TYPE}", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["options"]["input_types"] == {"x": TYPE} and summary["bit_exact_check"]["bit_exact"]
    again = load_project(out)  # rebuilt from options.json, input type included
    assert again.input_type == FixedType(8, 5, True, "RND_CONV", "SAT")
    r = subprocess.run([sys.executable, "-m", "nn2aie.cli", "compile", str(model), "-o", str(tmp_path / "no")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "--input-type x=" in r.stderr and "Traceback" not in r.stderr


def test_projects_without_input_types_keep_their_options_file(tmp_path):
    from nn2aie.examples.builders import make_qdq_mlp

    path = tmp_path / "m.onnx"
    onnx.save(make_qdq_mlp([8, 6, 4]), path)
    write_project_atomic(compile_path(path, CompileOptions()), tmp_path / "p")
    assert "input_types" not in json.loads((tmp_path / "p" / "nn2aie" / "options.json").read_text())
