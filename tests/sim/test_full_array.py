"""Layer scaling on the whole VE2802 array: a single dense layer over 296 of the 304 tiles (8 chains x 37 cascade
positions) and a 256-tile four-layer MLP. Each is placed (CP-SAT, gap reported), passes the legality model,
is emitted with its placement picture, and its placed-design emulation equals onnxruntime bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from nn2aie.api import check_bit_exact, compile_loaded, write_project_atomic
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

DESIGNS = {
    "single_layer_296": ([37 * 128, 8 * 128], {"fc0_matmul": {"cas_length": 37, "cas_num": 8}}, 296),
    "mlp_256": ([1024, 1024, 1024, 1024, 1024], {}, 256),
}


def wide_inputs(k: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, k)) * rng.choice([0.05, 0.5, 2.0, 50.0], size=(n, 1))
    x[:4] = [[1e3], [-1e3], [0.0], [-0.0]]  # saturating rows
    return x.astype(np.float32)


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_full_array_design(name, tmp_path):
    sizes, overrides, tiles = DESIGNS[name]
    compiled = compile_loaded(load_model(make_qdq_mlp(sizes, seed=3)), CompileOptions(overrides=overrides))
    plan = compiled.plan
    assert len(plan.kernels) == tiles
    assert len({(k.col, k.row) for k in plan.kernels}) == tiles
    assert plan.placement["method"] == "cp-sat" and plan.placement["gap"] == 0.0
    assert all(p["used"] <= p["capacity"] for p in plan.resources.values())  # legality ran in the compiler
    result = check_bit_exact(compiled, wide_inputs(sizes[0], 1000, seed=4))
    assert result["bit_exact"] and result["matching_outputs"] == 1000 * sizes[-1]
    summary = write_project_atomic(compiled, tmp_path / name)
    assert summary["tiles_used"] == tiles
    assert (tmp_path / name / "report" / "placement.png").stat().st_size > 10_000
    graph_h = (tmp_path / name / "src" / "graph.h").read_text()
    assert graph_h.count("adf::location<adf::kernel>") == tiles
