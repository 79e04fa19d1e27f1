"""Random batched matmuls of two activations compiled with random splits: the placed design's emulator must equal
the logical model on every event and every tile's C++ must equal the emulator (native co-simulation) on a sample;
``run(cases, seed)`` is shared by the default test and the slow documented run (>= 5000 cases, docs/testing.md).

A case draws: 0..2 leading axes (heads) of 1..4, M, K, N in 1..40, batch 1/2/4/8, int8 or uint8 operands at
random power-of-two scales, a power-of-two factor folded into the sum (``frac_shift`` -3..3), an 8- or 16-bit
output (signed or not, saturating or wrapping, any rounding mode), and the matrices shared out over 1..6 tiles
(automatic or forced)."""

from __future__ import annotations

import numpy as np

from nn2aie.errors import DoesNotFitError, Nn2aieError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim

ROUNDINGS = ("RND_CONV", "RND", "TRN", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN_ZERO")


def draw(rng: np.random.Generator) -> tuple[Graph, dict, int, str]:
    lead = tuple(int(v) for v in rng.integers(1, 5, size=int(rng.integers(0, 3))))
    m, k, n = (int(v) for v in rng.integers(1, 41, size=3))
    a_t = FixedType(8, int(rng.integers(0, 7)), bool(rng.random() < 0.7))
    b_t = FixedType(8, int(rng.integers(0, 7)), bool(rng.random() < 0.7))
    bits = int(rng.choice([8, 16]))
    y_t = FixedType(bits, int(rng.integers(0, 8)), bool(rng.random() < 0.8), str(rng.choice(ROUNDINGS)),
                    "WRAP" if rng.random() < 0.15 else "SAT")
    attrs = {"frac_shift": int(rng.integers(-3, 4))} if rng.random() < 0.4 else {}
    tensors = {"a": Tensor("a", (*lead, m, k), a_t), "b": Tensor("b", (*lead, k, n), b_t),
               "y": Tensor("y", (*lead, m, n), y_t)}
    graph = Graph("matmul_case", tensors, [Op("mm", "matmul", ["a", "b"], ["y"], attrs)], ["a", "b"], ["y"],
                  {"framework": "test"})
    batch = int(rng.choice([1, 2, 4, 8]))
    overrides = {"mm": {"cas_num": int(rng.integers(2, 7))}} if rng.random() < 0.3 else {}
    desc = f"matmul {lead} {m}x{k} @ {k}x{n} {a_t.describe()} x {b_t.describe()} -> {y_t.describe()} {attrs} " \
           f"batch {batch} {overrides}"
    return graph, overrides, batch, desc


def run(cases: int, seed: int, native_every: int, events: int = 32) -> dict:
    rng = np.random.default_rng(seed)
    out = {"cases": 0, "refused": 0, "too_big": 0, "native": 0, "mismatches": [], "pieces": 0}
    while out["cases"] < cases:
        graph, overrides, batch, desc = draw(rng)
        graph.verify()
        try:
            plan, _ = compile_graph(graph, CompileOptions(batch=batch, overrides=overrides))
        except (DoesNotFitError, UnsupportedQuantizationError):
            out["too_big"] += 1  # no equal share fits, or an output grid finer than the SRS can shift: typed refusals
            continue
        except Nn2aieError:
            if not overrides:
                raise
            out["refused"] += 1  # a forced split that does not share the matrices evenly: a typed refusal
            continue
        xs = {}
        for name in ("a", "b"):
            t = graph.tensor(name)
            x = rng.integers(t.type.min_code, t.type.max_code + 1, size=(events, int(np.prod(t.shape))))
            x[0], x[1] = t.type.max_code, t.type.min_code
            xs[name] = x
        shaped = {name: xs[name].reshape((events, *graph.tensor(name).shape)) for name in xs}
        want = evaluate(graph, shaped)["y"].reshape(events, -1)
        got = Emulator(plan).run_many(xs)["y"].reshape(events, -1)
        if not np.array_equal(got, want):
            out["mismatches"].append(desc)
        out["pieces"] += int(plan.layers[0].pieces > 1)
        if native_every and out["cases"] % native_every == 0:
            report = run_native_cosim(plan, [xs["a"][:8], xs["b"][:8]])
            if not all(k.match for k in report.kernels):
                out["mismatches"].append(f"native: {desc}")
            out["native"] += 1
        out["cases"] += 1
    return out
