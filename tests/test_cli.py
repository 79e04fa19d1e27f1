"""The nn2aie command: demo, compile, simulate, devices, and the error contract (exit 2, one paragraph,
no output directory)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from nn2aie.cli import main
from nn2aie.examples.builders import make_qdq_mlp, make_qdq_variant


def run(args, cwd=None):
    """Run the real console entry point in a subprocess (exit codes and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "nn2aie.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def jet_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "jet.onnx"
    onnx.save(make_qdq_mlp([16, 64, 32, 32, 5], seed=21), path)
    return path


def test_demo_reports_tiles_placement_and_bit_exactness(tmp_path):
    r = run(["demo", "-o", str(tmp_path / "demo")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tiles used: 4 compute tiles" in r.stdout
    assert "compute row  0 | A B C D" in r.stdout
    assert "bit-exact: 5000/5000 outputs match the reference" in r.stdout
    assert (tmp_path / "demo" / "src" / "graph.h").is_file()


def test_compile_writes_project_and_summary(jet_model, tmp_path):
    out = tmp_path / "proj"
    r = run(["compile", str(jet_model), "-o", str(out), "--parallel", "fc1_matmul=4x2", "--json"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    layer = next(x for x in summary["layers"] if x["name"] == "fc1_matmul")
    assert (layer["cas_length"], layer["cas_num"], layer["tiles"]) == (4, 2, 8)
    assert summary["bit_exact_check"]["bit_exact"] is True
    for f in ("Makefile", "aie.cfg", "src/graph.h", "src/graph.cpp", "plan.json", "nn2aie-project.json"):
        assert (out / f).is_file(), f


def test_simulate_model_and_project_dir_agree_and_match_reference(jet_model, tmp_path):
    out = tmp_path / "proj"
    assert run(["-q", "compile", str(jet_model), "-o", str(out), "--no-check"]).returncode == 0
    x = np.random.default_rng(0).normal(0, 3, size=(300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r1 = run(["simulate", str(out), "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y_dir.npy")])
    r2 = run(["simulate", str(jet_model), "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y_model.npy")])
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "bit-exact: 1500/1500 outputs match the reference" in r1.stdout
    assert np.array_equal(np.load(tmp_path / "y_dir.npy"), np.load(tmp_path / "y_model.npy"))
    assert np.load(tmp_path / "y_dir.codes.npy").dtype == np.int64


def test_devices_lists_catalog():
    result = CliRunner().invoke(main, ["devices", "--json"])
    assert result.exit_code == 0
    names = {d["name"] for d in json.loads(result.output)}
    assert {"xcve2802", "xcve2302"} <= names


def _unsupported_op_model(path):
    model, _ = make_qdq_variant("sigmoid")
    next(n for n in model.graph.node if n.op_type == "Sigmoid").op_type = "Hardmax"  # (Sigmoid is a table now)
    onnx.save(model, path)


def _non_pow2_model(path):
    model, _ = make_qdq_variant("non_pow2_scale")
    onnx.save(model, path)


def _too_big_model(path):
    onnx.save(make_qdq_mlp([1024, 1024, 1024, 1024], seed=1), path)


@pytest.mark.parametrize("make, extra, needle", [
    (_unsupported_op_model, [], "unsupported operation"),
    (_non_pow2_model, [], "differ from those of"),
    (_too_big_model, ["--device", "xcve2302"], "does not fit"),
])
def test_errors_are_one_paragraph_exit_2_and_leave_no_directory(tmp_path, make, extra, needle):
    model = tmp_path / "bad.onnx"
    make(model)
    out = tmp_path / "out"
    r = run(["compile", str(model), "-o", str(out), *extra])
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("nn2aie: ") and " — " in r.stderr  # where: reason — what to do
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]  # no temporary directory left either


def test_truncated_file_is_a_bad_file_error(tmp_path, jet_model):
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(jet_model.read_bytes()[:100])
    r = run(["compile", str(bad), "-o", str(tmp_path / "o")])
    assert r.returncode == 2 and "bad input file" in r.stderr


def test_refuses_foreign_non_empty_directory_unless_forced(jet_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    r = run(["compile", str(jet_model), "-o", str(out), "--no-check"])
    assert r.returncode == 2 and "--force" in r.stderr
    assert (out / "precious.txt").read_text() == "keep me"
    assert run(["compile", str(jet_model), "-o", str(out), "--no-check", "--force"]).returncode == 0
    assert not (out / "precious.txt").exists()


def test_recompile_replaces_project_byte_identically(jet_model, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b, a):
        assert run(["-q", "compile", str(jet_model), "-o", str(out)]).returncode == 0
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_bad_option_values_are_refused(jet_model, tmp_path):
    r = run(["compile", str(jet_model), "-o", str(tmp_path / "o"), "--batch", "0"])
    assert r.returncode == 2 and "positive whole number" in r.stderr
    r = run(["compile", str(jet_model), "-o", str(tmp_path / "o"), "--parallel", "fc1_matmul=four"])
    assert r.returncode == 2 and "LAYER=LxC" in r.stderr
    assert not (tmp_path / "o").exists()


def test_float_model_without_quantization_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8, dtype=np.float32))
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "float_mlp", [x], [y], [w])
    path = tmp_path / "f.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    r = run(["compile", str(path), "-o", str(tmp_path / "o")])
    assert r.returncode == 2 and "no quantization found" in r.stderr


def test_compile_options_with_a_project_directory_are_refused(jet_model, tmp_path):
    out = tmp_path / "proj"
    assert run(["-q", "compile", str(jet_model), "-o", str(out), "--no-check"]).returncode == 0
    np.save(tmp_path / "x.npy", np.zeros((4, 16), dtype=np.float32))
    r = run(["simulate", str(out), "--inputs", str(tmp_path / "x.npy"), "--device", "xcve2302"])
    assert r.returncode == 2 and "project directory" in r.stderr


def test_config_mmul_shape_is_used_and_merged_with_parallel(jet_model, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"layers": {"fc1_matmul": {"mmul": "4x16x8"}}}))
    r = CliRunner().invoke(main, ["compile", "--json", str(jet_model), "-o", str(tmp_path / "o"), "--config",
                                  str(cfg), "--parallel", "fc1_matmul=1x2", "--no-check"])
    assert r.exit_code == 0, r.output
    layer = next(x for x in json.loads(r.output)["layers"] if x["name"] == "fc1_matmul")
    assert (layer["mmul"], layer["cas_length"], layer["cas_num"]) == ("4x16x8", 1, 2)


@pytest.mark.parametrize("config,needle", [
    ({"layers": [1, 2]}, "expected {\"layers\""),
    ({"layers": {"fc1_matmul": {"mmul": "4x4x4"}}}, "not an aie::mmul shape for int8 x int8"),
    ({"layers": {"fc1_matmul": {"mmul": "big"}}}, "is not a shape M x K x N"),
    ({"layers": {"fc1_matmul": {"tiles": 3}}}, "unknown keys"),
])
def test_bad_config_is_refused_with_exit_2(jet_model, tmp_path, config, needle):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(config))
    r = run(["compile", str(jet_model), "-o", str(tmp_path / "o"), "--config", str(cfg)])
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_compile_and_simulate_a_model_with_two_inputs_and_three_outputs(tmp_path):
    """.npz inputs by input name (compile and simulate), .npz outputs by output name, equal to onnxruntime."""
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "acceptance"))
    from test_dag_qdq import _two_input_model

    from nn2aie.frontends.onnx_qdq import run_reference

    proto, x = _two_input_model()
    model = tmp_path / "two.onnx"
    onnx.save(proto, model)
    np.savez(tmp_path / "x.npz", calo=x[1][:200], tracks=x[0][:200])
    out = tmp_path / "proj"
    r = run(["-q", "compile", str(model), "-o", str(out), "--inputs", str(tmp_path / "x.npz"), "--json"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert [i["name"] for i in summary["inputs"]] == ["tracks", "calo"] and len(summary["outputs"]) == 3
    assert summary["bit_exact_check"]["bit_exact"] and summary["project_events"] == 200
    assert (out / "data" / "plio_in1.txt").is_file()
    r = run(["simulate", str(out), "--inputs", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy")])
    assert r.returncode == 0, r.stderr
    assert "bit-exact" in r.stdout
    with np.load(tmp_path / "y.npz") as y, np.load(tmp_path / "y.codes.npz") as codes:
        want = run_reference(proto, [x[0][:200], x[1][:200]])
        names = [o["name"] for o in summary["outputs"]]
        assert sorted(y.files) == sorted(names) and sorted(codes.files) == sorted(names)
        for name, w in zip(names, want, strict=True):
            assert np.array_equal(y[name], w.reshape(200, -1)), name
    np.save(tmp_path / "one.npy", x[0][:10])
    r = run(["simulate", str(out), "--inputs", str(tmp_path / "one.npy")])
    assert r.returncode == 2 and "2 inputs" in r.stderr
