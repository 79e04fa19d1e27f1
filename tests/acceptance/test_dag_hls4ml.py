"""Issue 11 acceptance, hls4ml: a residual model with two ``Add`` merges (a skip from the input, different types
on the two branches, a wrapping sum) compiled by nn2aie and emulated on the placed design equals hls4ml's own
Vitis C-simulation (``predict``) bit for bit on 2400 inputs -- through the hls4ml plugin (``backend='nn2aie'``)
and again with forced multi-tile parallelism on every layer, where every kernel is also compiled natively and
compared with the emulator."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere

import pathlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
hls4ml = pytest.importorskip("hls4ml")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "frontends"))
import test_hls4ml_dag as H  # noqa: E402  (the DAG frontend test's conversion helpers)

from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.ir.evaluate import cast_float  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402
from nn2aie.sim.emulator import Emulator  # noqa: E402
from nn2aie.sim.native import run_native_cosim  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
L = H.L


def residual_model():
    keras.utils.set_random_seed(21)
    x = keras.Input((16,), name="inp")
    h1 = H._dense(32, "fc1", "relu", 1)(x)
    h2 = H._dense(16, "fc2", None, 2)(h1)
    s = L.Add(name="add")([x, h2])  # skip from the input: ap_fixed<8,3> + ap_fixed<8,2>
    h3 = H._dense(16, "fc3", "relu", 3)(s)
    s2 = L.Add(name="add2")([s, h3])  # s fans out to fc3 and add2; the sum wraps
    return keras.Model(x, H._dense(5, "fc4", None, 4)(s2), name="residual_aie")


CASE = H.Case("residual_aie", residual_model, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", {
    "fc1": {"result": "ap_fixed<16,6>", "accum": "ap_fixed<24,10>"},
    "fc1_relu": {"result": "ap_ufixed<8,3,AP_RND,AP_SAT>"},
    "fc2": {"result": "ap_fixed<8,2,AP_RND,AP_SAT>", "accum": "ap_fixed<24,10>"},
    "add": {"result": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
    "fc3": {"result": "ap_fixed<16,6>", "accum": "ap_fixed<24,10>"},
    "fc3_relu": {"result": "ap_ufixed<8,2,AP_TRN,AP_SAT>"},
    "add2": {"result": "ap_fixed<8,3,AP_RND_ZERO,AP_WRAP>"},
    "fc4": {"result": "ap_fixed<12,4,AP_RND,AP_SAT>", "accum": "ap_fixed<24,10>"},
})


def _precisions(layers: dict) -> None:
    for layer in layers.values():
        if "weight" in layer.get("Precision", {}):
            layer["Precision"].update(weight=H.WEIGHT_T, bias=H.BIAS_T)
    for name, prec in CASE.precisions.items():
        layers[name]["Precision"].update(prec)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    _, ours = H.convert(CASE, "nn2aie", str(tmp_path_factory.mktemp("aie")), edit=_precisions)
    _, vitis = H.convert(CASE, "Vitis", str(tmp_path_factory.mktemp("vitis")), edit=_precisions)
    vitis.compile()
    x = H.make_inputs(CASE, (16,), seed=31)
    return ours, H.csim_outputs(vitis, x)[0], x


@needs_gxx
def test_plugin_predict_equals_hls4ml_csim(models):
    ours, want, x = models
    ours.compile()
    got = np.asarray(ours.predict(x), dtype=np.float64).reshape(want.shape)
    assert np.array_equal(got, want)
    assert len(np.unique(want)) > 100  # not a degenerate model
    kinds = [op.kind for op in graph_from_hls4ml(ours).ops]
    assert kinds == ["dense", "dense", "eltwise", "dense", "eltwise", "dense"]


@needs_gxx
def test_forced_multi_tile_equals_csim_and_every_kernel_cosimulates(models):
    ours, want, x = models
    graph = graph_from_hls4ml(ours)
    overrides = {"fc1": {"cas_length": 2, "cas_num": 2}, "fc2": {"cas_length": 2, "cas_num": 2},
                 "add": {"cas_num": 2}, "fc3": {"cas_num": 2}, "add2": {"cas_num": 4},
                 "fc4": {"cas_length": 2, "cas_num": 1}}
    plan, _ = compile_graph(graph, CompileOptions(overrides=overrides))
    assert {e.op: e.tiles for e in plan.layers} == {"fc1": 4, "fc2": 4, "add": 2, "fc3": 2, "add2": 4, "fc4": 2}
    codes = cast_float(x, graph.tensor(graph.inputs[0]).type, "inputs")
    got = Emulator(plan).run(codes).astype(np.float64) * graph.tensor(graph.outputs[0]).type.lsb
    assert np.array_equal(got, want)
    report = run_native_cosim(plan, codes[:96])
    assert report.kernels and all(k.match and k.compared > 0 for k in report.kernels), \
        [(k.kernel, k.error, k.position) for k in report.kernels if not k.match]
    assert {k.layer for k in report.kernels} == set(overrides)
