"""Host-side float steps (ir/host.py) against onnxruntime: each step is one float32 operation per element."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from nn2aie.ir.host import HostEpilogue, HostPrologue, HostStep, bipolar_codes

ort = pytest.importorskip("onnxruntime")

ONNX_OP = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "rsub": "Sub", "rdiv": "Div"}


def _onnxruntime(steps: list[HostStep], x: np.ndarray) -> np.ndarray:
    nodes, inits, value = [], [], "x"
    for i, s in enumerate(steps):
        c = numpy_helper.from_array(np.asarray(s.constant, dtype=np.float32), f"c{i}")
        inits.append(c)
        ins = [value, f"c{i}"] if s.op in ("add", "sub", "mul", "div") else [f"c{i}", value]
        nodes.append(helper.make_node(ONNX_OP[s.op], ins, [f"v{i}"]))
        value = f"v{i}"
    graph = helper.make_graph(nodes, "steps", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                             [None, x.shape[1]])],
                              [helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, [None, x.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_steps_equal_onnxruntime_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 6)).astype(np.float32) * 3
    steps = [HostStep("mul", (2.0,)), HostStep("sub", (1.0,)),
             HostStep("div", tuple(float(v) for v in rng.uniform(0.5, 2, 6).astype(np.float32))),
             HostStep("rsub", (0.3,)), HostStep("add", tuple(float(v) for v in rng.normal(size=6).astype(np.float32))),
             HostStep("rdiv", (1.7,))]
    ours = HostEpilogue(tuple(steps)).apply_steps(x)
    assert np.array_equal(ours, _onnxruntime(steps, x), equal_nan=True)


def test_prologue_round_trips_through_json_and_describes_itself():
    p = HostPrologue((HostStep("mul", (2.0,), "Mul_0"), HostStep("sub", (1.0,), "Sub_0")), "bipolar", (1, 28, 28))
    assert HostPrologue.from_json(p.to_json()) == p
    assert p.describe() == "x * 2 -> x - 1 -> bipolar (x >= 0 ? +1 : -1)"
    with pytest.raises(ValueError):
        HostStep("pow", (2.0,))


def test_bipolar_codes_follow_qonnx():
    from qonnx.custom_op.general.bipolar_quant import binary_quant

    x = np.array([[-1.0, -0.0, 0.0, 1e-30, -1e-30, np.nan, np.inf, -np.inf]], dtype=np.float32)
    assert np.array_equal(bipolar_codes(x), binary_quant(x, np.float32(1.0)))
