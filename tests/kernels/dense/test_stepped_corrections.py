"""A dense layer whose epilogue is a step function read off a source (``requant_table``) that no affine map has:
the tile runs the nearest multiplier plus per-channel corrections at the accumulators where the source differs.
Built in the IR with identity weights, so that inputs can hit every corrected accumulator: the emulator equals
the logical model (the source's thresholds) and the kernels co-simulate natively on exactly those values."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType
from nn2aie.kernels.requant import AffineMap, requant_from_table
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim

N = 16
X_T = FixedType(12, 0, True)  # accumulators = inputs: [-2048, 2047]
ACC = (-2048, 2047)


def perturbed_table(seed: int = 0) -> dict:
    """Thresholds of a per-channel affine map with a few moved by one accumulator, as float32 rounding in a
    source's BatchNorm moves them (so that no affine map has them all, checked below)."""
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    scales = [Fraction(int(rng.integers(1000, 3000)), 100_003) for _ in range(N)]
    offsets = [Fraction(int(rng.integers(-5000, 5000)), 1009) for _ in range(N)]
    t = AffineMap.from_scales(scales, offsets, "conv_even", -128, 127).thresholds(*ACC)
    moved = t.copy()
    for n in range(N):
        for k in rng.choice(np.arange(20, 230), size=3, replace=False):
            if ACC[0] < moved[n, k] <= ACC[1] and moved[n, k] + 1 < moved[n, k + 1]:
                moved[n, k] += 1
    return {"thresholds": moved.tolist(), "acc_range": list(ACC), "clamp": [-128, 127], "negated_channels": [],
            "source": "test"}


def graph_of(table: dict) -> Graph:
    tensors = {"x": Tensor("x", (N,), X_T), "w": Tensor("w", (N, N), FixedType(8, 0, True), np.eye(N, dtype=np.int64)),
               "y": Tensor("y", (N,), FixedType(8, 0, True, "RND_CONV", "SAT"))}
    g = Graph("corrections", tensors, [Op("d", "dense", ["x", "w"], ["y"], {"activation": "linear",
                                                                           "requant_table": table})],
              ["x"], ["y"], {"framework": "test"})
    g.verify()
    return g


def test_corrected_multiplier_is_chosen_and_exact_on_every_accumulator():
    table = perturbed_table()
    rq = requant_from_table(table, "test", (-4, 59))
    assert rq.kind == "multiplier" and rq.corrections and rq.correction_slots <= 8
    acc = np.arange(ACC[0], ACC[1] + 1)[:, None].repeat(N, axis=1)
    want = -128 + (acc[..., None] >= np.asarray(table["thresholds"])[None]).sum(axis=-1)
    assert np.array_equal(rq.apply(acc), want)
    assert rq.cycles_per_vector(32) < requant_from_table(table, "test").cycles_per_vector(32)  # cheaper than the table


def test_emulator_and_native_kernels_on_the_corrected_accumulators():
    table = perturbed_table(1)
    g = graph_of(table)
    plan, _ = compile_graph(g, CompileOptions(batch=4))
    rq = requant_from_table(table, "test", (-4, 59))
    where, _ = rq.correction_planes()
    hits = [a for row in rq.corrections for a, _ in row]
    rng = np.random.default_rng(2)
    x = rng.integers(ACC[0], ACC[1] + 1, size=(64, N))
    for i, a in enumerate(hits):  # every corrected value, and its neighbours, on every channel
        x[i % 64, :] = np.clip(a + (i % 3) - 1, *ACC)
    want = evaluate(g, {"x": x})["y"]
    assert np.array_equal(Emulator(plan).run(x), want)
    report = run_native_cosim(plan, x)
    assert report.kernels and all(k.match for k in report.kernels), [(k.kernel, k.got, k.want) for k in report.kernels]
    assert where.shape[0] == rq.correction_slots


def test_tile_memory_holds_every_requantisation_constant_the_project_writes():
    """The memory model reserves the bytes of the constants codegen writes, correction slots included."""
    from nn2aie.kernels.dense.codegen import requant_constants

    plan, _ = compile_graph(graph_of(perturbed_table(1)), CompileOptions(batch=4))
    e = plan.layers[0]
    assert e.requant.correction_slots > 0
    out_tiles = [k for k in plan.kernels if k.role in ("single", "last")]
    assert out_tiles
    for k in out_tiles:
        written = requant_constants(e, k.n_start).nbytes
        reserved = {b.name: b.size for b in k.memory}["requant"]
        assert reserved >= written and reserved - written < 32, (k.name, reserved, written)  # 32-byte alignment
