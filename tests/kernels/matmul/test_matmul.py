"""The matmul family (products of two activations): the backend on graphs built in the IR -- emulator == logical
model (exact integer products, one requantisation), native co-simulation, matrices shared out over tiles (heads
over tiles), refusals -- and a property run over shapes, types and splits (the slow run is the documented >= 5000
cases)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nn2aie.errors import IllegalConfigError, InternalCheckError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_properties import run  # noqa: E402

A_T, B_T, Y_T = FixedType(8, 4, True), FixedType(8, 5, False), FixedType(8, 2, True)


def mm_graph(lead, m, k, n, a_t=A_T, b_t=B_T, y_t=Y_T, **attrs) -> Graph:
    g = Graph("mm", {"a": Tensor("a", (*lead, m, k), a_t), "b": Tensor("b", (*lead, k, n), b_t),
                     "y": Tensor("y", (*lead, m, n), y_t)},
              [Op("mm", "matmul", ["a", "b"], ["y"], attrs)], ["a", "b"], ["y"], {"framework": "test"})
    g.verify()
    return g


def check(g: Graph, batch: int, overrides: dict | None = None, events: int = 300):
    plan, _ = compile_graph(g, CompileOptions(batch=batch, overrides=overrides or {}))
    rng = np.random.default_rng(0)
    xs = {t: rng.integers(g.tensor(t).type.min_code, g.tensor(t).type.max_code + 1,
                          (events, int(np.prod(g.tensor(t).shape)))) for t in ("a", "b")}
    want = evaluate(g, {t: xs[t].reshape(events, *g.tensor(t).shape) for t in xs})["y"].reshape(events, -1)
    assert np.array_equal(Emulator(plan).run_many(xs)["y"].reshape(events, -1), want)
    report = run_native_cosim(plan, [xs["a"][:8], xs["b"][:8]])
    assert report.kernels and all(k.match for k in report.kernels)
    return plan


def test_the_logical_model_is_numpy_matmul_requantised():
    g = mm_graph((2,), 3, 5, 4, y_t=FixedType(16, 9, True), frac_shift=1)
    rng = np.random.default_rng(1)
    a, b = rng.integers(-128, 128, (7, 2, 3, 5)), rng.integers(0, 256, (7, 2, 5, 4))
    got = evaluate(g, {"a": a, "b": b})["y"]
    exact = np.einsum("eimk,eikn->eimn", a, b)  # at fraction 4 + 5 + 1 = 10; output at 9: one bit, half even
    q, r = np.divmod(exact, 2)
    want = np.clip(q + ((r == 1) & (q % 2 == 1)), -32768, 32767)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("lead, m, k, n, batch", [((), 8, 16, 8, 4), ((4,), 16, 8, 16, 4), ((2,), 5, 3, 7, 1),
                                                  ((4,), 32, 4, 32, 1), ((2, 2), 8, 24, 40, 2)])
def test_emulator_and_native_equal_the_logical_model(lead, m, k, n, batch):
    check(mm_graph(lead, m, k, n), batch)


def test_heads_over_tiles():
    plan = check(mm_graph((4,), 16, 8, 20), batch=2, overrides={"mm": {"cas_num": 4}})
    assert plan.layers[0].pieces == 4 and plan.layers[0].group == 2


def test_refusals():
    with pytest.raises(InternalCheckError, match="inner dimensions"):
        Graph("bad", {"a": Tensor("a", (4, 5), FixedType(8, 4)), "b": Tensor("b", (6, 4), FixedType(8, 4)),
                      "y": Tensor("y", (4, 4), FixedType(8, 4))},
              [Op("mm", "matmul", ["a", "b"], ["y"], {})], ["a", "b"], ["y"], {}).verify()
    with pytest.raises(InternalCheckError, match="at most 8"):
        mm_graph((), 4, 4, 4, a_t=FixedType(16, 8, True))
    with pytest.raises(IllegalConfigError, match="cas_num 3"):
        compile_graph(mm_graph((4,), 8, 8, 8), CompileOptions(batch=1, overrides={"mm": {"cas_num": 3}}))
    with pytest.raises(UnsupportedQuantizationError, match="32-bit accumulator"):
        compile_graph(mm_graph((), 4, 80000, 4), CompileOptions(batch=1))


def test_random_matmuls():
    result = run(cases=60, seed=1, native_every=20)
    assert result["mismatches"] == [], result
    assert result["native"] >= 3 and result["too_big"] < result["cases"] // 2, result


@pytest.mark.slow
def test_random_matmuls_documented_run():
    result = run(cases=5000, seed=2026, native_every=250)
    print(result)
    assert result["mismatches"] == [], result
