"""Native co-simulation: the kernel C++ nn2aie writes into projects, compiled with g++ against the AIE-API
emulation headers, equals the emulator tile by tile, bit for bit (outputs and cascade words), over shapes,
parallelism, int8/int16 operands, narrow outputs and every rounding and saturation mode. A broken kernel source is
reported as a mismatch naming its tile. Binaries are compiled once per distinct source per session."""

from __future__ import annotations

import concurrent.futures
import os
import re
from importlib import resources

import numpy as np
import pytest
from click.testing import CliRunner

from nn2aie.api import compile_loaded, default_inputs
from nn2aie.codegen.project import render_project
from nn2aie.errors import MissingToolError
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.ir.evaluate import evaluate
from nn2aie.numerics import AP_TO_AIE_ROUNDING, AP_TO_AIE_SATURATION
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import compile_kernels, find_compiler, run_native_cosim

from helpers import forced_overrides, random_codes, random_mlp_graph


def assert_all_tiles_match(plan, x, cache, **kwargs):
    report = run_native_cosim(plan, x, cache_dir=cache, **kwargs)
    assert report.all_match, report.format()
    assert [r.kernel for r in report.kernels] == [k.name for e in plan.layers for k in
                                                  sorted(plan.kernels_of(e.op), key=lambda k: (k.chain, k.position))]
    iterations = -(-x.shape[0] // plan.batch)
    for r in report.kernels:
        e = plan.layer(r.layer)
        assert r.compared == iterations * e.batch * e.n_slice, r
    return report


def _graph_plan(graph, overrides=None):
    plan, _ = compile_graph(graph, CompileOptions(overrides=overrides or {}))
    return plan


# -- models ----------------------------------------------------------------------------------------------------
def test_bundled_demo_example(native_cache):
    with resources.as_file(resources.files("nn2aie.examples").joinpath("jet_tagger_qdq.onnx")) as path:
        compiled = compile_loaded(load_model(path))
    x = default_inputs(compiled, events=1000, seed=2)
    report = compiled.native_cosim(x, cache_dir=native_cache)
    assert report.all_match, report.format()
    assert len(report.kernels) == len(compiled.plan.kernels)
    assert report.iterations == 1000 // compiled.plan.batch
    text = report.format()
    assert "all tiles match the emulator bit for bit" in text
    assert text.count("tile(s) match bit for bit") == len(compiled.plan.layers)  # one line per layer


def test_qdq_384_256_200_10_forced_4x2(native_cache):
    loaded = load_model(make_qdq_mlp([384, 256, 200, 10], seed=11))
    compiled = compile_loaded(loaded, CompileOptions(overrides=forced_overrides(loaded.graph, 4, 2)))
    plan = compiled.plan
    assert [(e.cas_length, e.cas_num) for e in plan.layers][:2] == [(4, 2), (4, 2)]
    assert {k.role for k in plan.kernels} == {"first", "middle", "last"}
    x = compiled.quantize(default_inputs(compiled, events=200, seed=3))
    assert_all_tiles_match(plan, x, native_cache)


def test_int16_activations_qdq_model(native_cache):
    loaded = load_model(make_qdq_mlp([40, 24, 9], seed=4, act_bits=16, w_max=7, out_fracs=[4, 4]))
    compiled = compile_loaded(loaded, CompileOptions(overrides=forced_overrides(loaded.graph, 2, 2)))
    assert all(e.acc == "acc32" and e.mmul == (4, 4, 8) for e in compiled.plan.layers)
    x = compiled.quantize(default_inputs(compiled, events=300, seed=4))
    assert_all_tiles_match(compiled.plan, x, native_cache)


def test_int16_activations_and_weights(native_cache):
    graph = random_mlp_graph([40, 24, 9], act_bits=16, w_bits=16)
    plan = _graph_plan(graph, {"dense0": {"cas_length": 3, "cas_num": 2}})
    assert plan.layers[0].mmul == (4, 4, 4) and plan.layers[0].acc == "acc64"
    assert_all_tiles_match(plan, random_codes(graph, 300), native_cache)


def test_int16_x_int8_widened_to_int16_weights(native_cache):
    """A 16x8 layer whose sum could leave 32 bits runs as 16x16 with acc64 (AIE-API has no acc64 16x8 mmul)."""
    graph = random_mlp_graph([1200, 16, 8], act_bits=16)
    plan = _graph_plan(graph, {"dense0": {"cas_length": 3, "cas_num": 2}})
    assert (plan.layers[0].acc, plan.layers[0].w_dtype) == ("acc64", "int16")
    assert_all_tiles_match(plan, random_codes(graph, 200), native_cache)


def test_int16_inputs_to_8bit_outputs_acc64_two_step(native_cache):
    """acc64 -> int8: SRS to 16 bits, then pack."""
    graph = random_mlp_graph([40, 24], act_bits=16, w_bits=16, out_width=8)
    plan = _graph_plan(graph, {"dense0": {"cas_length": 2, "cas_num": 3}})
    assert (plan.layers[0].acc, plan.layers[0].out_dtype) == ("acc64", "int8")
    assert_all_tiles_match(plan, random_codes(graph, 300), native_cache)


@pytest.mark.parametrize("kwargs", [
    {"out_width": 4},
    {"out_width": 4, "overflow": "SAT_SYM", "narrow": True},
    {"out_width": 6, "overflow": "SAT_SYM", "rounding": "RND"},
    {"out_width": 12, "act_bits": 16},
], ids=["4bit-sat", "4bit-symmetric-narrow", "6bit-symmetric", "12bit-in-int16"])
def test_narrow_outputs(native_cache, kwargs):
    graph = random_mlp_graph([40, 24, 9], seed=3, **kwargs)
    plan = _graph_plan(graph)
    assert any(e.clamp_hi - e.clamp_lo < 255 or e.out_dtype.endswith("16") for e in plan.layers)
    assert_all_tiles_match(plan, random_codes(graph, 300, seed=5), native_cache)


@pytest.mark.parametrize("signed", [True, False])
def test_wrap_into_few_bits_of_an_int8_container(native_cache, signed):
    graph = random_mlp_graph([40, 9], seed=5, out_width=3, overflow="WRAP")
    y = graph.tensors["x1"]
    graph.tensors["x1"] = type(y)(y.name, y.shape, type(y.type)(3, y.type.frac + 2, signed, "RND", "WRAP"))
    plan = _graph_plan(graph)
    assert (plan.layers[0].out_dtype, plan.layers[0].wrap_bits) == ("int8" if signed else "uint8", 3)
    assert_all_tiles_match(plan, random_codes(graph, 300, seed=6), native_cache)


def test_relu_then_wrap_into_9_bits_of_int16(native_cache):
    """HGQ2-style hidden type: ReLU, then AP_WRAP into 9 bits held in int16 (clamp at 0, then sign extension)."""
    graph = random_mlp_graph([40, 24, 9], seed=3, act_bits=16, hidden_unsigned=False)
    h = graph.tensors["x1"]
    graph.tensors["x1"] = type(h)(h.name, h.shape, type(h.type)(9, h.type.frac + 4, True, "RND", "WRAP"))
    plan = _graph_plan(graph)
    e = plan.layers[0]
    assert (e.out_dtype, e.relu, e.clamp_lo, e.wrap_bits) == ("int16", True, 0, 9)
    assert_all_tiles_match(plan, random_codes(graph, 300, seed=6), native_cache)


def test_32_bit_output_at_the_accumulator_scale(native_cache):
    """acc32 -> int32 with shift 0 (the lanes as they are), clamped to an 18-bit saturating type."""
    graph = random_mlp_graph([40, 24, 9], seed=4)
    last = graph.tensors["x2"]
    acc_frac = graph.tensor("x1").type.frac + graph.tensor("w1").type.frac
    graph.tensors["x2"] = type(last)(last.name, last.shape, type(last.type)(18, acc_frac, True, "TRN", "SAT"))
    plan = _graph_plan(graph)
    assert (plan.layers[-1].out_dtype, plan.layers[-1].shift) == ("int32", 0)
    assert_all_tiles_match(plan, random_codes(graph, 300, seed=6), native_cache)


def test_no_bias_and_cascade_roles(native_cache):
    graph = random_mlp_graph([64, 48, 5], bias=False)
    plan = _graph_plan(graph, {"dense0": {"cas_length": 8, "cas_num": 1}})
    assert_all_tiles_match(plan, random_codes(graph, 100), native_cache)


# -- every rounding and saturation mode --------------------------------------------------------------------------
# One layer per case (one binary each; ReLU / unsigned hidden layers run in the tests above). The binaries of all
# cases are compiled together up front, so the compiler uses every core.
MODEL_MODES = [(r, o) for r in sorted(AP_TO_AIE_ROUNDING) for o in ("SAT", "SAT_SYM", "WRAP")]
PLAN_MODES = [(r, s) for r in ("ceil", "symmetric_ceil", "conv_odd") for s in ("none", "saturate", "symmetric")]


def _model_mode_case(rounding, overflow):
    graph = random_mlp_graph([40, 9], seed=7, rounding=rounding, overflow=overflow)
    return graph, _graph_plan(graph)


def _plan_mode_case(rounding, saturation):
    graph = random_mlp_graph([40, 9], seed=9)
    plan = _graph_plan(graph, {"dense0": {"cas_length": 2, "cas_num": 1}})
    for e in plan.layers:
        e.rounding, e.saturation = rounding, saturation
    return graph, plan


@pytest.fixture(scope="module")
def mode_binaries(native_cache):
    plans = [_model_mode_case(*m)[1] for m in MODEL_MODES] + [_plan_mode_case(*m)[1] for m in PLAN_MODES]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda p: compile_kernels(p, cache_dir=native_cache, jobs=1), plans))
    return native_cache


@pytest.mark.parametrize("rounding, overflow", MODEL_MODES)
def test_rounding_and_saturation_modes_from_the_model(mode_binaries, rounding, overflow):
    graph, plan = _model_mode_case(rounding, overflow)
    assert {e.rounding for e in plan.layers} == {AP_TO_AIE_ROUNDING[rounding]}
    assert {e.saturation for e in plan.layers} == {AP_TO_AIE_SATURATION[overflow]}
    report = assert_all_tiles_match(plan, random_codes(graph, 400, seed=8), mode_binaries)
    assert report.builds == 0  # compiled by the fixture


@pytest.mark.parametrize("rounding, saturation", PLAN_MODES)
def test_rounding_modes_no_model_quantizer_reaches(mode_binaries, rounding, saturation):
    """AIE-ML modes without an ap_fixed / ONNX counterpart: set on the plan directly (emulator and generated C++
    both read the plan, so they must still agree). Two-tile cascade chain."""
    graph, plan = _plan_mode_case(rounding, saturation)
    report = assert_all_tiles_match(plan, random_codes(graph, 400, seed=10), mode_binaries)
    assert report.builds == 0  # compiled by the fixture


# -- a broken kernel is caught ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cascade_design():
    graph = random_mlp_graph([64, 128, 10], seed=12)
    plan = _graph_plan(graph, {"dense0": {"cas_length": 4, "cas_num": 2}})
    return plan, random_codes(graph, 100, seed=13)


def _shift_plus_one(text: str) -> str:
    new, n = re.subn(r"constexpr int SHIFT = (\d+);", lambda m: f"constexpr int SHIFT = {int(m.group(1)) + 1};",
                     text)
    assert n == 1
    return new


def test_broken_kernel_shift_is_reported_as_mismatch_naming_the_tile(native_cache, cascade_design):
    plan, x = cascade_design
    files = render_project(plan, None, {})
    files["src/kernels/dense_l0.h"] = _shift_plus_one(files["src/kernels/dense_l0.h"])
    report = run_native_cosim(plan, x, cache_dir=native_cache, files=files)
    assert not report.all_match
    bad = report.mismatched
    # only the tiles that apply the shift (the last of each chain) differ; cascade words are unaffected
    assert {r.kernel for r in bad} == {k.name for k in plan.kernels_of(plan.layers[0].op) if k.role == "last"}
    for r in bad:
        k = plan.kernel(r.kernel)
        assert r.tile == (k.col, k.row) and r.error is None and r.mismatches > 0
        assert r.got != r.want and r.first_index is not None and r.iteration is not None
        assert f"tile ({k.col}, {k.row}) {k.name} (last) of layer l0" in r.describe()
    assert all(r.match for r in report.kernels if r.layer_index == 1)
    text = report.format()
    assert "MISMATCH" in text and "2 tile(s) differ from the emulator" in text


def test_broken_kernel_cascade_traffic_is_reported(native_cache, cascade_design):
    plan, x = cascade_design
    files = render_project(plan, None, {})
    src = files["src/kernels/dense_l0_impl.h"]
    files["src/kernels/dense_l0_impl.h"] = src.replace("write_cascade_block(cout, c.to_accum());",
                                                       "if (n_blk > 0) write_cascade_block(cout, c.to_accum());")
    assert files["src/kernels/dense_l0_impl.h"] != src
    report = run_native_cosim(plan, x, cache_dir=native_cache, files=files)
    senders = {k.name for k in plan.kernels if k.role in ("first", "middle")}
    assert {r.kernel for r in report.mismatched} == senders
    assert all("cascade word(s), expected" in (r.error or "") for r in report.mismatched)


# -- command line and errors -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jet_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("native-cli")
    model = d / "jet.onnx"
    import onnx

    onnx.save(make_qdq_mlp([16, 64, 32, 32, 5], seed=21), model)
    x = np.random.default_rng(0).normal(0, 3, size=(120, 16)).astype(np.float32)
    np.save(d / "x.npy", x)
    return model, d / "x.npy"


def test_cli_simulate_native(native_cache, jet_files, monkeypatch):
    model, x = jet_files
    monkeypatch.setenv("NN2AIE_NATIVE_CACHE", str(native_cache))
    r = CliRunner().invoke(__import__("nn2aie.cli", fromlist=["main"]).main,
                           ["simulate", str(model), "--inputs", str(x), "--native", "--parallel", "fc0_matmul=2x2"])
    assert r.exit_code == 0, r.output
    assert "native co-simulation: all tiles match the emulator bit for bit" in r.output
    assert "l0 fc0_matmul: all 4 tile(s) match bit for bit" in r.output


def test_cli_simulate_native_mismatch_exits_1(native_cache, jet_files, monkeypatch):
    import nn2aie.codegen.project as project

    model, x = jet_files
    monkeypatch.setenv("NN2AIE_NATIVE_CACHE", str(native_cache))
    real = project.render_project

    def broken(plan, inputs, summary):
        files = real(plan, inputs, summary)
        files["src/kernels/dense_l1.h"] = _shift_plus_one(files["src/kernels/dense_l1.h"])
        return files

    monkeypatch.setattr(project, "render_project", broken)
    r = CliRunner().invoke(__import__("nn2aie.cli", fromlist=["main"]).main,
                           ["simulate", str(model), "--inputs", str(x), "--native", "--no-check"])
    assert r.exit_code == 1, r.output
    assert re.search(r"l1 fc1_matmul: 1 of 1 tile\(s\) MISMATCH", r.output)
    assert re.search(r"tile \(\d+, \d+\) l1_c0_p0 \(single\) of layer l1 fc1_matmul: first difference at buffer "
                     r"value \d+", r.output)


def test_missing_compiler_is_a_clear_error(monkeypatch, jet_files):
    monkeypatch.setenv("NN2AIE_CXX", "nn2aie-no-such-compiler")
    with pytest.raises(MissingToolError, match="install a C\\+\\+17 compiler"):
        find_compiler()
    model, x = jet_files
    r = CliRunner().invoke(__import__("nn2aie.cli", fromlist=["main"]).main,
                           ["simulate", str(model), "--inputs", str(x), "--native", "--no-check"])
    assert r.exit_code == 2
    assert "missing tool" in r.output and "g++" in r.output


@pytest.mark.parametrize("batch", [8, 16])
def test_row_block_register_blocking_with_cascades(native_cache, batch):
    """Batches of several mmul row blocks: M_ACC row blocks share each loaded B block, and cascade words travel in
    the kernel's finishing order (semantics.cascade_order), through first, middle and last tiles."""
    graph = random_mlp_graph([96, 64, 10], seed=21)
    plan, _ = compile_graph(graph, CompileOptions(batch=batch, overrides={"dense0": {"cas_length": 3, "cas_num": 2}}))
    assert plan.layers[0].m_accumulators > 1
    assert_all_tiles_match(plan, random_codes(graph, 3 * batch + 1, seed=22), native_cache)


def _every_mmul_shape():
    from nn2aie.devices import get_device

    shapes = get_device("xcve2802").fact("mmul_shapes")
    for act_bits, w_bits, key in ((8, 8, "int8xint8"), (16, 8, "int16xint8"), (16, 16, "int16xint16")):
        for shape in shapes[key]["native"] + shapes[key]["emulated"]:
            yield pytest.param(act_bits, w_bits, tuple(shape), id=f"{key}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("act_bits,w_bits,shape", list(_every_mmul_shape()))
def test_every_catalogued_mmul_shape_with_cascades(native_cache, act_bits, w_bits, shape):
    """Each aie::mmul shape the catalog offers (native and multi-instruction), forced on a cascaded layer and a
    single-tile layer: the emitted kernels equal the emulator, and the emulator the logical model."""
    graph = random_mlp_graph([64, 32, 16], seed=sum(shape), act_bits=act_bits, w_bits=w_bits)
    mmul = "x".join(map(str, shape))
    plan, _ = compile_graph(graph, CompileOptions(batch=8, overrides={
        "dense0": {"cas_length": 2, "cas_num": 2, "mmul": mmul}, "dense1": {"mmul": mmul}}))
    assert [e.mmul for e in plan.layers] == [shape, shape]
    x = random_codes(graph, 8 * 3, seed=5)
    assert np.array_equal(Emulator(plan).run(x), evaluate(graph, {graph.inputs[0]: x})[graph.outputs[0]])
    assert_all_tiles_match(plan, x, native_cache)
