"""Random softmax ops compiled with random splits: the placed design's emulator must equal the logical model on
every event and every tile's C++ must equal the emulator (native co-simulation) on a sample of the cases;
``run(cases, seed)`` is shared by the default test and the slow documented run (>= 5000 cases, docs/testing.md).

A case draws: a row length 1..96 (tails of every size), 1..6 rows per event, batch 1/2/4/8, int8 or uint8 input
codes at a random power-of-two or float scale, an output of 8 or 16 bits, signed or not, at a power-of-two or
float scale below 1 with a zero point, and the rows shared out over 1..4 tiles (automatic or forced)."""

from __future__ import annotations

import numpy as np

from nn2aie.errors import Nn2aieError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim


def _scale(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def draw(rng: np.random.Generator) -> tuple[Graph, dict, int, str]:
    n = int(rng.integers(1, 97))
    per_event = int(rng.choice([1, 1, 2, 4, 6]))
    signed = bool(rng.random() < 0.7)
    if rng.random() < 0.5:
        x_t = FixedType(8, int(rng.integers(1, 7)), signed)
    else:
        x_t = ScaledType(8, signed, (_scale(rng, 0.005, 0.5),), (0,))
    bits = int(rng.choice([8, 16]))
    y_signed = bool(rng.random() < 0.3)
    if rng.random() < 0.5:
        y_t = FixedType(bits, bits - int(y_signed) if rng.random() < 0.7 else bits - 2, y_signed)
    else:
        top = (1 << (bits - int(y_signed))) - 1
        zero = int(rng.integers(-(1 << (bits - 1)), 0)) if y_signed else 0
        y_t = ScaledType(bits, y_signed, (float(np.float32(1.0 / (top - zero))),), (zero,))
    shape = (per_event, n) if per_event > 1 else (n,)
    tensors = {"x": Tensor("x", shape, x_t), "y": Tensor("y", shape, y_t)}
    graph = Graph("softmax_case", tensors, [Op("sm", "softmax", ["x"], ["y"], {"axis": -1})], ["x"], ["y"],
                  {"framework": "test"})
    batch = int(rng.choice([1, 2, 4, 8]))
    overrides = {"sm": {"cas_num": int(rng.choice([2, 4]))}} if rng.random() < 0.3 else {}
    desc = f"softmax {shape} {x_t.describe()} -> {y_t.describe()} batch {batch} {overrides}"
    return graph, overrides, batch, desc


def run(cases: int, seed: int, native_every: int, events: int = 64) -> dict:
    rng = np.random.default_rng(seed)
    out = {"cases": 0, "refused": 0, "native": 0, "mismatches": [], "pieces": 0}
    while out["cases"] < cases:
        graph, overrides, batch, desc = draw(rng)
        graph.verify()
        try:
            plan, _ = compile_graph(graph, CompileOptions(batch=batch, overrides=overrides))
        except Nn2aieError:
            if not overrides:
                raise
            out["refused"] += 1  # a forced split that does not share the rows evenly: a typed refusal
            continue
        t = graph.tensor("x")
        x = rng.integers(t.type.min_code, t.type.max_code + 1, size=(events, int(np.prod(t.shape))))
        x[0], x[1] = t.type.max_code, t.type.min_code
        want = evaluate(graph, {"x": x.reshape((events, *t.shape))})["y"].reshape(events, -1)
        got = Emulator(plan).run(x)
        if not np.array_equal(got, want):
            out["mismatches"].append(desc)
        out["pieces"] += int(plan.layers[0].pieces > 1)
        if native_every and out["cases"] % native_every == 0:
            report = run_native_cosim(plan, x[:8])
            if not all(k.match for k in report.kernels):
                out["mismatches"].append(f"native: {desc}")
            out["native"] += 1
        out["cases"] += 1
    return out
