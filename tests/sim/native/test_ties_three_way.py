"""Ties and overflow boundaries, three ways: the `quantizers` ap_fixed oracle, the placed-design emulator and
the emitted kernel compiled natively must give identical codes, for all 7 rounding x 3 overflow modes.

One dense layer with weights [1, 16, 0, ...] per column and int8 inputs of scale 1 makes every accumulator in
[-2176, 2159] reachable (acc = x0 + 16 * x1 + bias). The output type has an LSB of 16 accumulator LSBs
(ap_fixed<8, 12>), so the SRS shifts by 4: every accumulator = 8 (mod 16) is an exact tie, both signs occur,
and the range crosses the type's limits on both sides (overflow boundaries, several wrap periods).
"""

from __future__ import annotations

import numpy as np
import pytest

from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim

quantizers = pytest.importorskip("quantizers", reason="the `quantizers` package (test extra) is not installed")

ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOWS = ("WRAP", "SAT", "SAT_SYM")
SHIFT = 4


def tie_layer(rounding: str, overflow: str, signed: bool) -> Graph:
    k, n = 8, 8
    w = np.zeros((k, n), dtype=np.int64)
    w[0, :], w[1, :] = 1, 16
    bias = np.arange(n, dtype=np.int64) * 3 - 12  # moves the accumulator grid a little per column
    tensors = {
        "x": Tensor("x", (k,), FixedType(8, 0, True)),
        "w": Tensor("w", (k, n), FixedType(8, 0, True), w),
        "b": Tensor("b", (n,), FixedType(32, 0, True), bias),
        "y": Tensor("y", (n,), FixedType(8, -SHIFT, signed, rounding, overflow), origin="y"),
    }
    op = Op("tie", "dense", ["x", "w", "b"], ["y"], {"activation": "linear"})
    return Graph("ties", tensors, [op], ["x"], ["y"], {"framework": "test"})


def all_inputs() -> np.ndarray:
    x0, x1 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    x = np.zeros((x0.size, 8), dtype=np.int64)
    x[:, 0], x[:, 1] = x0.ravel(), x1.ravel()
    x[:, 2:] = 5  # multiplied by zero weights: must not matter
    return x


def oracle(graph: Graph, x: np.ndarray) -> np.ndarray:
    """ap_fixed<8, 12, rounding, overflow> (ap_ufixed for unsigned) of the exact sums, by `quantizers`."""
    t = graph.tensor("y").type
    acc = x @ graph.tensor("w").data + graph.tensor("b").data
    q = quantizers.get_fixed_quantizer_np(t.rounding, t.overflow)
    k = 1 if t.signed else 0
    integer = t.width - t.frac  # ap_fixed I (sign bit included)
    values = q(acc.astype(np.float64), np.float64(k), np.float64(integer - k), np.float64(t.frac))
    return np.ldexp(values, t.frac).astype(np.int64)


CASES = [(r, o, True) for r in ROUNDINGS for o in OVERFLOWS] + [("RND_CONV", o, False) for o in OVERFLOWS]


@pytest.mark.parametrize(("rounding", "overflow", "signed"), CASES,
                         ids=[f"{r}-{o}-{'s' if s else 'u'}" for r, o, s in CASES])
def test_ties_and_boundaries_oracle_emulator_native(rounding, overflow, signed, native_cache):
    graph = tie_layer(rounding, overflow, signed)
    plan, _ = compile_graph(graph, CompileOptions(overrides={"tie": {"cas_length": 1, "cas_num": 1}}))
    x = all_inputs()
    acc = x @ graph.tensor("w").data + graph.tensor("b").data
    assert np.any(acc % 16 == 8) and np.any((acc % 16 == 8) & (acc < 0))  # ties on both signs
    want = oracle(graph, x)
    t = graph.tensor("y").type
    assert np.any(acc >> SHIFT < t.min_code)  # below the range (for ap_ufixed: every negative sum)
    assert np.any(acc >> SHIFT > t.max_code) or not signed  # and above it (signed types)
    got = Emulator(plan).run(x)
    bad = np.nonzero(got != want)
    assert bad[0].size == 0, f"emulator {got[bad][:5]} vs quantizers {want[bad][:5]} at acc {acc[bad][:5]}"
    report = run_native_cosim(plan, x, cache_dir=native_cache)  # the compiled kernel == the emulator, per tile
    assert report.all_match, report.format()
