"""Native co-simulation of float-scale dense layers: the multiplier and threshold-table epilogues as written into
the project (kernels/templates/nn2aie_requant.h, included by the dense kernel) compiled with g++ against the
AIE-API emulation headers, equal to the emulator tile by tile; and the whole flow from a Brevitas model with its
default quantizers (Vitis project written, every tile co-simulated)."""

from __future__ import annotations

import numpy as np
import pytest

from nn2aie.ir.evaluate import evaluate
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim

from helpers import scaled_graph

CASES = {  # name -> scaled_graph arguments, overrides of layer "fc"
    "int8_multiplier_relu": (dict(seed=0, k=64, n=48, relu=True), {}),
    "int8_table_cascade": (dict(seed=1, k=64, n=48, rounding="RND_INF"), {"cas_length": 2, "cas_num": 3,
                                                                          "requant": "table"}),
    "uint8_zero_point_table": (dict(seed=2, k=40, n=20, zy=120, out_signed=False, relu=True, rounding="TRN"),
                               {"requant": "table"}),
    "per_tensor_multiplier_cascade": (dict(seed=3, k=96, n=24, per_channel=False, rounding="CEIL"),
                                      {"cas_length": 3}),
    "int16_out_multiplier": (dict(seed=29, k=32, n=16, y_bits=16), {}),  # most int16 cases need a table
    "int16_in_acc64_multiplier": (dict(seed=5, k=32, n=16, x_bits=16, w_bits=16, w_max=300), {}),
    "int16_in_acc64_table": (dict(seed=6, k=32, n=16, x_bits=16, w_bits=16, w_max=300, rounding="RND_ZERO"),
                             {"requant": "table"}),
}


def codes(graph, events: int, seed: int) -> np.ndarray:
    t = graph.tensor(graph.inputs[0]).type
    x = np.random.default_rng(seed).integers(t.min_code, t.max_code + 1, size=(events, graph.tensor("x").shape[0]))
    x[:4], x[4:8] = t.max_code, t.min_code
    return x


@pytest.mark.parametrize("name", list(CASES))
def test_requant_epilogues_match_the_emulator(name, native_cache):
    args, override = CASES[name]
    graph = scaled_graph(**args)
    plan, _ = compile_graph(graph, CompileOptions(batch=4, overrides={"fc": override}))
    e = plan.layers[0]
    assert e.requant is not None and e.requant.kind == override.get("requant", "multiplier")
    if args.get("x_bits") == 16:
        assert e.acc == "acc64"  # the int32 view of the accumulator is an SRS by 0 (verified inside int32)
    x = codes(graph, 40, seed=len(name))
    assert np.array_equal(Emulator(plan).run(x), evaluate(graph, {"x": x})["y"])
    report = run_native_cosim(plan, x, cache_dir=native_cache)
    assert report.all_match, report.format()
    assert all(r.compared > 0 for r in report.kernels)


def test_broken_constants_are_caught(native_cache, monkeypatch):
    """The co-simulation reads the constants from the emitted weights header: one wrong multiplier is found."""
    from nn2aie.kernels.dense import codegen

    graph = scaled_graph(seed=0, k=64, n=48, relu=True)
    plan, _ = compile_graph(graph, CompileOptions(batch=4))
    original = codegen.requant_constants

    def off_by_one(e, n_start):
        q = original(e, n_start).copy()
        q[3] //= 2  # halve channel 3's multiplier (first column block)
        return q

    monkeypatch.setattr(codegen, "requant_constants", off_by_one)
    x = codes(graph, 40, seed=1)
    report = run_native_cosim(plan, x, cache_dir=native_cache)
    assert not report.all_match
    bad = [r for r in report.kernels if not r.match]
    assert bad and "column 3" in bad[0].position


def test_brevitas_default_quantizers_native(native_cache, tmp_path):
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    from nn2aie.api import compile_loaded, write_project_atomic
    from nn2aie.examples import brevitas_models
    from nn2aie.frontends.loader import load_model

    module = brevitas_models.make_brevitas_mlp([16, 64, 32, 5], seed=0, train_steps=20, quantizers="per_channel")
    compiled = compile_loaded(load_model(brevitas_models.export_brevitas_qonnx(module, 16)))
    assert {e.requant.kind for e in compiled.plan.layers} == {"multiplier"}
    x = np.random.default_rng(0).normal(0, 3, size=(64, 16)).astype(np.float32)
    report = compiled.native_cosim(x, cache_dir=native_cache)
    assert report.all_match, report.format()
    write_project_atomic(compiled, tmp_path / "proj", x[:8])
    src = tmp_path / "proj" / "src"
    assert (src / "kernels" / "nn2aie_requant.h").is_file()
    assert "requant_multiplier" in (src / "kernels" / "dense_l0_impl.h").read_text()
    assert "Q_" in (src / "data" / "weights_l0.h").read_text()
