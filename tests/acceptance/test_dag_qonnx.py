"""Issue 11 acceptance, QONNX: a Brevitas residual block exported with ``export_qonnx`` -- QuantLinear ->
QuantReLU -> QuantLinear on one branch, the quantized input through its own QuantIdentity on the skip, merged by
``QuantEltwiseAdd`` with the two operands at different (calibrated, power-of-two) scales, a dense head -- read by
the QONNX frontend, compiled with forced multi-tile parallelism on every op, and emulated on the placed design:
the output equals qonnx's own execution (``execute_onnx``) of the exported file bit for bit (``np.array_equal``)
on 2400 float inputs, 300 of them far beyond the calibration range (saturating). Every kernel of the plan is then
compiled natively with g++ and compared with the emulator. The same for a Brevitas DeepSets model (per-particle
QuantLinear on ``[batch, particles, features]``, ``torch.mean`` over the particles, a dense head)."""

from __future__ import annotations

import pathlib
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "frontends"))
import test_qonnx_dag as Q  # noqa: E402  (the QONNX DAG frontend test's Brevitas models and inputs)

from nn2aie.frontends.qonnx_frontend import load_qonnx, run_reference  # noqa: E402
from nn2aie.ir.evaluate import cast_float  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402
from nn2aie.sim.emulator import Emulator  # noqa: E402
from nn2aie.sim.native import run_native_cosim  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from multi_tile import forced_multi_tile  # noqa: E402

EVENTS = 2400
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="native co-simulation needs g++")


@pytest.fixture(scope="module", params=["residual", "deepsets"])
def case(request):
    if request.param == "residual":
        model = Q.make_brevitas("Residual", (16,), 21, "eltwise")
    else:
        model = Q.make_brevitas("DeepSets", (6, 8), 22, "mean", features=8, hidden=32)
    graph = load_qonnx(model.proto)
    overrides = forced_multi_tile(graph)
    plan, _ = compile_graph(graph, CompileOptions(overrides=overrides))
    x = Q.samples(model.shape, graph.tensor(graph.inputs[0]).type.frac, seed=23, n=EVENTS)
    codes = cast_float(x.astype(np.float64), graph.tensor(graph.inputs[0]).type, "inputs").reshape(EVENTS, -1)
    return request.param, model, graph, plan, overrides, x, codes


def test_placed_design_equals_qonnx_execution(case):
    name, model, graph, plan, overrides, x, codes = case
    want = run_reference(model.proto, x)
    got = (Emulator(plan).run(codes).astype(np.float64) * graph.tensor(graph.outputs[0]).type.lsb).reshape(want.shape)
    assert np.array_equal(got.astype(np.float32), want)
    assert np.array_equal(want, Q.module_forward(model, x))  # qonnx execution == the Brevitas forward
    assert len(np.unique(want, axis=0)) > EVENTS // 2 and len(np.unique(want)) > 100, "a degenerate model"
    top = graph.tensor(graph.inputs[0]).type.max_code
    assert (np.abs(codes) >= top).mean() > 0.05, "a share of the inputs must saturate the input quantizer"
    assert graph.source["reference_exact"] == "yes"
    kinds = Q.kinds(graph)
    if name == "residual":
        assert kinds == ["dense", "dense", "add", "dense"]
        add = next(op for op in graph.ops if op.kind == "eltwise")
        a, b = (graph.tensor(t).type for t in add.inputs)
        assert a.frac != b.frac and add.inputs[1] == graph.inputs[0]  # two scales; the skip is the input itself
        assert {e.op: e.tiles for e in plan.layers} == {op: ov.get("cas_length", 1) * ov["cas_num"]
                                                         for op, ov in overrides.items()}
    else:
        assert kinds == ["dense", "dense", "mean", "dense", "dense"]
        assert graph.tensor(graph.inputs[0]).shape == (6, 8)
    assert len([e for e in plan.layers if e.tiles > 1]) >= 3, [(e.op, e.tiles) for e in plan.layers]
    assert {e.op for e in plan.layers} == {op.name for op in graph.ops}


@needs_gxx
def test_every_kernel_cosimulates(case):
    _, _, graph, plan, _, _, codes = case
    report = run_native_cosim(plan, np.concatenate([codes[:48], codes[-48:]]))
    assert report.kernels and all(k.match and k.compared > 0 for k in report.kernels), \
        [(k.kernel, k.error, k.position) for k in report.kernels if not k.match]
    with_tiles = {e.op for e in plan.layers if e.tiles > 0}
    assert {k.layer for k in report.kernels} == with_tiles == {op.name for op in graph.ops}
