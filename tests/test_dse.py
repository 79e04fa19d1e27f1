"""Design-space exploration: every visited design is a real compiled, legal, modelled design; the choice is the
fewest tiles meeting the targets, or the closest design with the limiting stage named; the Pareto front is
non-dominated; the CLI's --target-* options and `nn2aie explore`."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from nn2aie import dse
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions


@pytest.fixture(scope="module")
def jet_points():
    return dse.explore(load_model(make_qdq_mlp([16, 64, 32, 32, 5], seed=1)).graph)


def test_points_are_compiled_and_modelled(jet_points):
    assert len(jet_points) >= 4
    assert {p.batch for p in jet_points} == set(dse.BATCHES)
    for p in jet_points:
        assert p.tiles >= 4 and p.events_per_s > 0 and p.latency_us > 0
        assert len(p.rectangles) == 4


def test_choice_meets_targets_with_fewest_tiles(jet_points):
    best, why = dse.choose(jet_points, events_per_s=60e6, latency_us=1.5)
    assert best.events_per_s >= 60e6 and best.latency_us <= 1.5 and "meets the targets" in why
    meeting = [p for p in jet_points if p.events_per_s >= 60e6 and p.latency_us <= 1.5]
    assert len(meeting) < len(jet_points)  # the targets exclude some designs
    assert best.tiles == min(p.tiles for p in meeting)


def test_unreachable_target_names_the_limit(jet_points):
    best, why = dse.choose(jet_points, events_per_s=1e12)
    assert "no explored design meets the targets" in why and best.perf.bottleneck in why
    assert best.events_per_s == max(p.events_per_s for p in jet_points)


def test_pareto_front_is_non_dominated(jet_points):
    front = dse.pareto(jet_points)
    assert front
    for p in front:
        assert not any(q.tiles <= p.tiles and q.latency_us <= p.latency_us and q.events_per_s >= p.events_per_s and
                       (q.tiles, q.latency_us, q.events_per_s) != (p.tiles, p.latency_us, p.events_per_s)
                       for q in jet_points)


def test_tile_budget_and_fixed_layers_are_respected():
    graph = load_model(make_qdq_mlp([384, 256, 200, 10], seed=1)).graph
    points = dse.explore(graph, max_tiles=20)
    assert points and all(p.tiles <= 20 for p in points)
    fixed = CompileOptions(overrides={"fc0_matmul": {"cas_length": 3, "cas_num": 2}})
    for p in dse.explore(graph, fixed, max_tiles=40):
        assert p.overrides["fc0_matmul"] == {"cas_length": 3, "cas_num": 2}


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "nn2aie.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_compile_to_targets_and_explore(tmp_path):
    model = tmp_path / "jet.onnx"
    onnx.save(make_qdq_mlp([16, 64, 32, 32, 5], seed=1), model)
    r = _run(["compile", str(model), "-o", str(tmp_path / "p"), "--target-events-per-s", "60e6",
              "--target-latency-us", "1.5", "--no-check"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "design-space exploration" in r.stdout and "meets the targets" in r.stdout
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["performance"]["events_per_s"] >= 60e6 and summary["performance"]["latency_us"] <= 1.5
    r = _run(["explore", str(model), "-o", str(tmp_path / "x"), "--max-tiles", "8"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x" / "pareto.png").read_bytes().startswith(b"\x89PNG")
    data = json.loads((tmp_path / "x" / "pareto.json").read_text())
    assert any(d["pareto"] for d in data["designs"]) and all(d["tiles"] <= 8 for d in data["designs"])
    bad = _run(["compile", str(model), "-o", str(tmp_path / "q"), "--target-latency-us", "-1"], tmp_path)
    assert bad.returncode == 2 and "--target-latency-us" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr and not (tmp_path / "q").exists()


def test_mmul_shape_is_chosen_per_layer_and_a_users_shape_survives_growth():
    from helpers import random_mlp_graph

    graph = random_mlp_graph([16, 64, 32, 32, 5], act_bits=16)
    free = dse.explore(graph, batches=(4,))
    assert all(p.mmul[-1] == "dense3:4x8x4" for p in free)  # the cost model's pick for an 8-wide int16 x int8 layer
    int8 = random_mlp_graph([16, 64, 32, 32, 5])
    fixed = dse.explore(int8, CompileOptions(overrides={"dense1": {"mmul": "4x16x8"}}), batches=(4,))
    assert any(r != "dense1:1x1" for p in fixed for r in p.rectangles if r.startswith("dense1"))  # it grew
    assert all(p.mmul[1] == "dense1:4x16x8" and p.overrides["dense1"]["mmul"] == "4x16x8" for p in fixed)


def test_pareto_files_are_replaced_whole_or_not_at_all(jet_points, tmp_path, monkeypatch):
    from nn2aie.report import pareto as report

    front = dse.pareto(jet_points)
    paths = report.write_pareto(jet_points, front, tmp_path, "jet.onnx")
    before = {p.name: p.read_bytes() for p in paths}
    assert json.loads(before["pareto.json"])["designs"] and before["pareto.png"].startswith(b"\x89PNG")

    # a second run is interrupted while pareto.md is being written (its bytes are out, the rename is not done)
    monkeypatch.setattr(report.atomic, "write_file", _interrupt_on("pareto.md", report.atomic.write_file))
    with pytest.raises(KeyboardInterrupt):
        report.write_pareto(jet_points[:2], dse.pareto(jet_points[:2]), tmp_path, "other.onnx")
    assert (tmp_path / "pareto.md").read_bytes() == before["pareto.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.json", "pareto.md", "pareto.png"]  # no temp left


def _interrupt_on(name, real):
    def write(path, fill):
        if path.name != name:
            return real(path, fill)

        def half(f):
            fill(f)
            raise KeyboardInterrupt  # after the bytes reached the temporary file, before the rename
        return real(path, half)
    return write
