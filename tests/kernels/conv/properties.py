"""Random convolutions and max pools compiled with random splits: the placed design's emulator must equal the
logical model (itself checked against torch and onnxruntime in tests/ir/test_conv_semantics.py and
test_pool_semantics.py) on every event, and every tile's C++ must equal the emulator (native co-simulation) on a
sample of the cases. ``run(cases, seed)`` is shared by the default test (a few hundred cases) and the slow one
(the documented run of >= 5000 cases, docs/testing.md).

A case draws: 1-D or 2-D; batch 1, 4 or 8; spatial sizes 1..12; kernel 1..5 (padding below it); strides (rows 1..3,
along the row 1 / 2 / 4); dilations 1..3; groups (1, 2, depthwise); 1..40 input channels, 1..40 filters; int8 or
int16 activations, 8- or 16-bit outputs; bias or not, ReLU or not; and the four splits (input-channel cascade,
output slices, row bands, event groups) either automatic or forced at random among the legal ones. A draw whose
geometry is not a convolution, or that no split fits, is redrawn (the refusal must be a typed nn2aie error)."""

from __future__ import annotations

import numpy as np

from nn2aie.errors import Nn2aieError
from nn2aie.ir.conv_semantics import ConvGeometry
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.pool_semantics import PoolGeometry
from nn2aie.ir.types import FixedType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def draw(rng: np.random.Generator) -> tuple[Graph, dict, int, str] | None:
    """One random case: (graph, overrides, batch, description), or None for a draw that is not a layer."""
    rank = int(rng.integers(1, 3))
    spatial = tuple(int(v) for v in rng.integers(1, 13, size=rank))
    kernel = tuple(int(v) for v in rng.integers(1, 6, size=rank))
    strides = (int(rng.integers(1, 4)),) * (rank - 1) + (int(rng.choice([1, 2, 4])),)
    dilations = tuple(int(v) for v in rng.integers(1, 4, size=rank))
    pb = tuple(int(rng.integers(0, k)) for k in kernel)
    pe = tuple(int(rng.integers(0, k)) for k in kernel)
    pool = rng.random() < 0.2
    wide = rng.random() < 0.25
    x_t = FixedType(16, 9, True) if wide else FixedType(8, 5, bool(rng.random() < 0.8 or not pool))
    batch = int(rng.choice([1, 4, 8]))
    if pool:
        channels = int(rng.integers(1, 41))
        if x_t.signed:
            pb, pe = (0,) * rank, (0,) * rank
        geo = PoolGeometry(spatial, kernel, strides, pb, pe, dilations, bool(rng.random() < 0.3))
        if geo.problem() is not None:
            return None
        tensors = {"x": Tensor("x", (*spatial, channels), x_t), "y": Tensor("y", (*geo.out_spatial, channels), x_t)}
        op = Op("pool", "pool", ["x"], ["y"], {"op": "max", "kernel": list(kernel), "strides": list(strides),
                                                "dilations": list(dilations), "pads_begin": list(pb),
                                                "pads_end": list(pe), "ceil_mode": geo.ceil_mode})
        desc = f"maxpool {rank}d {spatial} k{kernel} s{strides} d{dilations} p{pb}/{pe} c{channels} {x_t.describe()}"
    else:
        groups = int(rng.choice([1, 1, 2, 0]))  # 0: depthwise
        cg = int(rng.integers(1, 21 if groups != 1 else 41))
        channels = cg * (groups or 1) if groups else int(rng.integers(1, 17))
        groups = groups or channels
        filters = (int(rng.integers(1, 21)) * groups) if groups > 1 else int(rng.integers(1, 41))
        geo = ConvGeometry(spatial, channels, kernel, filters, strides, dilations, pb, pe, groups)
        if geo.problem() is not None:
            return None
        taps = int(np.prod(kernel))
        w_bits = 8
        w = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), size=(taps * channels // groups, filters))
        y_t = FixedType(16 if rng.random() < 0.3 else 8, 6, bool(rng.random() < 0.7), "RND_CONV", "SAT")
        tensors = {"x": Tensor("x", (*spatial, channels), x_t),
                   "w": Tensor("w", w.shape, FixedType(w_bits, 7, True), w),
                   "y": Tensor("y", (*geo.out_spatial, filters), y_t)}
        inputs = ["x", "w"]
        if rng.random() < 0.7:
            tensors["b"] = Tensor("b", (filters,), FixedType(24, 12, True),
                                  rng.integers(-30000, 30000, size=filters))
            inputs.append("b")
        op = Op("conv", "conv", inputs, ["y"], {"kernel": list(kernel), "strides": list(strides),
                                                "dilations": list(dilations), "pads_begin": list(pb),
                                                "pads_end": list(pe), "groups": groups,
                                                "activation": "relu" if rng.random() < 0.5 else "linear"})
        desc = (f"conv {rank}d {spatial} k{kernel} s{strides} d{dilations} p{pb}/{pe} g{groups} c{channels} "
                f"m{filters} {x_t.describe()} -> {y_t.describe()}")
    overrides = {}
    if rng.random() < 0.6:
        ho = geo.out_spatial[0] if rank == 2 else 1
        ov = {"bands": int(rng.choice(_divisors(ho))), "event_groups": int(rng.choice(_divisors(batch))),
              "parts": int(rng.integers(1, 4))}
        if not pool:
            ov["cas_length"] = int(rng.integers(1, 4))
        overrides = {op.name: ov}
        desc += f" {ov}"
    g = Graph("case", tensors, [op], ["x"], ["y"], {"framework": "test"})
    try:
        g.verify()
    except Nn2aieError:
        return None
    return g, overrides, batch, desc


def run(cases: int, seed: int, native_every: int = 0) -> dict:
    """Compile and check ``cases`` random layers; returns counts (compiled, refused, co-simulated, mismatches)."""
    rng = np.random.default_rng(seed)
    done = refused = cosim = 0
    mismatches: list[str] = []
    while done < cases:
        case = draw(rng)
        if case is None:
            continue
        g, overrides, batch, desc = case
        try:
            plan, _ = compile_graph(g, CompileOptions(batch=batch, overrides=overrides))
        except Nn2aieError:  # typed: a split that does not fit, an unsupported stride, ...
            refused += 1
            if refused > 20 * cases:
                raise AssertionError("almost every draw is refused: the generator is broken") from None
            continue
        x_t = g.tensor("x")
        events = 2 * batch + 3
        x = rng.integers(x_t.type.min_code, x_t.type.max_code + 1, size=(events, int(np.prod(x_t.shape))))
        x[0], x[1] = x_t.type.max_code, x_t.type.min_code
        want = evaluate(g, {"x": x.reshape(events, *x_t.shape)})["y"].reshape(events, -1)
        got = Emulator(plan).run(x)
        if not np.array_equal(got, want):
            mismatches.append(desc)
        if native_every and done % native_every == 0:
            report = run_native_cosim(plan, x[:batch])
            cosim += 1
            if not all(k.match for k in report.kernels) or not report.kernels:
                mismatches.append("native: " + desc)
        done += 1
    return {"cases": done, "refused": refused, "native": cosim, "mismatches": mismatches}
