"""Random layernorm / rmsnorm ops compiled with random splits: the placed design's emulator must equal the logical
model on every event and every tile's C++ must equal the emulator (native co-simulation) on a sample;
``run(cases, seed)`` is shared by the default test and the slow documented run (>= 5000 cases, docs/testing.md).

A case draws: a row length 2..96, 1..6 rows per event, batch 1/2/4/8, int8 or uint8 input codes at a random
power-of-two or float scale (with a zero point), LayerNorm or RMSNorm, epsilon 0 or 1e-6..1e-2, gamma / beta of
random size and sign (or none), an 8- or 16-bit output at a random scale and zero point, and the rows shared out
over 1..4 tiles (automatic or forced)."""

from __future__ import annotations

import numpy as np

from nn2aie.errors import Nn2aieError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim


def _f32(v) -> list[float]:
    return [float(x) for x in np.asarray(v, dtype=np.float32)]


def draw(rng: np.random.Generator) -> tuple[Graph, dict, int, str]:
    n = int(rng.integers(2, 97))
    per_event = int(rng.choice([1, 1, 2, 4, 6]))
    signed = bool(rng.random() < 0.7)
    if rng.random() < 0.5:
        x_t = FixedType(8, int(rng.integers(0, 7)), signed)
    else:
        zero = 0 if signed else int(rng.integers(0, 200))
        x_t = ScaledType(8, signed, (float(np.float32(rng.uniform(0.005, 0.5))),), (zero,))
    bits = int(rng.choice([8, 16]))
    y_signed = bool(rng.random() < 0.8)
    if rng.random() < 0.5:
        y_t = FixedType(bits, int(rng.integers(1, bits - 3)), y_signed)
    else:
        zero = int(rng.integers(-20, 21)) if y_signed else int(rng.integers(0, 100))
        y_t = ScaledType(bits, y_signed, (float(np.float32(rng.uniform(0.002, 0.2) * 2.0 ** (8 - bits))),), (zero,))
    attrs = {"axis": -1, "epsilon": float(np.float32(0 if rng.random() < 0.2 else 10 ** rng.uniform(-6, -2))),
             "rms": bool(rng.random() < 0.3),
             "gamma": _f32(rng.uniform(-2, 2, n)) if rng.random() < 0.8 else None,
             "beta": _f32(rng.uniform(-1, 1, n)) if rng.random() < 0.7 else None}
    shape = (per_event, n) if per_event > 1 else (n,)
    graph = Graph("norm_case", {"x": Tensor("x", shape, x_t), "y": Tensor("y", shape, y_t)},
                  [Op("ln", "layernorm", ["x"], ["y"], attrs)], ["x"], ["y"], {"framework": "test"})
    batch = int(rng.choice([1, 2, 4, 8]))
    overrides = {"ln": {"cas_num": int(rng.choice([2, 4]))}} if rng.random() < 0.3 else {}
    desc = f"{'rms' if attrs['rms'] else 'layer'}norm {shape} {x_t.describe()} -> {y_t.describe()} batch {batch} " \
           f"{overrides}"
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
        x[2] = x[2, :1]  # a constant row (variance 0)
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
