"""Property-based co-simulation: random designs (shapes, type pairs, modes, splits, extreme inputs) — the emitted
kernels compiled natively equal the emulator tile by tile, and the emulator equals the logical model.

Each example compiles its layers' kernels (about 0.7 s per layer): the default run draws a few examples;
NN2AIE_NATIVE_EXAMPLES sets more (e.g. 200 for a long run).
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings

from nn2aie.ir.evaluate import evaluate
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim

from sim.test_emulator_properties import compile_with_fallback, extreme_codes, mlps  # tests/ is on sys.path

EXAMPLES = int(os.environ.get("NN2AIE_NATIVE_EXAMPLES", "6"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
@given(case=mlps(max_layers=2))
def test_native_kernels_equal_emulator_on_random_designs(case, native_cache):
    graph, options, events, seed = case
    plan = compile_with_fallback(graph, options)
    x = extreme_codes(graph.tensor("x0").type, (events, graph.tensor("x0").shape[0]), np.random.default_rng(seed))
    assert np.array_equal(Emulator(plan).run(x), evaluate(graph, {"x0": x})[graph.outputs[0]])
    report = run_native_cosim(plan, x, cache_dir=native_cache)
    assert report.all_match, report.format()
