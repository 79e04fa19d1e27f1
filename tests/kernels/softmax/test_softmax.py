"""The softmax family: the numpy algorithm against an independent big-integer implementation of the written
algorithm (docs/numerics.md, "Softmax"), its distance to a float softmax, and the backend (emulator == logical
model, native co-simulation, rows shared out over tiles, refusals) with a property run over shapes, types and
splits (the slow run is the documented >= 5000 cases)."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nn2aie.errors import IllegalConfigError, InternalCheckError
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.softmax.logical import params, rows
from nn2aie.passes.pipeline import CompileOptions, compile_graph

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import check  # noqa: E402
from softmax_properties import run  # noqa: E402


def softmax_graph(n: int, x_t, y_t, per_event: int = 1) -> Graph:
    shape = (per_event, n) if per_event > 1 else (n,)
    g = Graph("sm", {"x": Tensor("x", shape, x_t), "y": Tensor("y", shape, y_t)},
              [Op("sm", "softmax", ["x"], ["y"], {"axis": -1})], ["x"], ["y"], {"framework": "test"})
    g.verify()
    return g


def reference_row(x: list[int], s_x: Fraction, s_y: Fraction, zero: int, lo: int, hi: int) -> list[int]:
    """The written algorithm with Python integers and exact rationals (no numpy, no shared code)."""
    n = len(x)
    q = min(24, 31 - n.bit_length())
    table = []
    for d in range(512):
        t = math.floor(math.ldexp(math.exp(-d * float(s_x)), q) + 0.5)
        table.append(t)
        if t == 0:
            break

    def srs_even(v: int, s: int) -> int:
        quo, rem = divmod(v, 1 << s)
        half = 1 << (s - 1)
        return quo + (1 if rem > half or (rem == half and quo % 2) else 0)

    e = 0
    while Fraction(2) ** e > s_y:
        e -= 1
    c = math.floor(Fraction(2) ** (30 + e) / s_y + Fraction(1, 2))
    m = max(x)
    t = [table[min(m - v, len(table) - 1)] for v in x]
    s = sum(t)
    bits = s.bit_length()
    r = (1 << (29 + bits)) // s
    return [min(max(srs_even(srs_even(v * r, bits - 1) * c, 60 + e) + zero, lo), hi) for v in t]


TYPES = [(FixedType(8, 4, True), FixedType(8, 8, False)), (FixedType(8, 3, False), FixedType(8, 7, True)),
         (ScaledType(8, True, (float(np.float32(0.0731)),)), ScaledType(8, False, (float(np.float32(1 / 255)),))),
         (FixedType(8, 5, True), ScaledType(8, True, (float(np.float32(1 / 255)),), (-128,))),
         (FixedType(8, 2, True), FixedType(16, 15, False))]


@pytest.mark.parametrize("types", range(len(TYPES)))
@pytest.mark.parametrize("n", [1, 5, 16, 37])
def test_numpy_rows_equal_the_written_algorithm(types, n):
    x_t, y_t = TYPES[types]
    g = softmax_graph(n, x_t, y_t)
    p = params(g, g.op("sm"))
    rng = np.random.default_rng(n + 10 * types)
    x = rng.integers(x_t.min_code, x_t.max_code + 1, (60, n))
    x[0] = x_t.max_code
    x[1, : max(1, n // 2)] = x_t.min_code
    s_x = Fraction(2) ** -x_t.frac if isinstance(x_t, FixedType) else Fraction(x_t.scale[0])
    s_y = Fraction(2) ** -y_t.frac if isinstance(y_t, FixedType) else Fraction(y_t.scale[0])
    zero = y_t.zero_point[0] if isinstance(y_t, ScaledType) else 0
    got = rows(x, p)
    for row, out in zip(x.tolist(), got.tolist(), strict=True):
        assert out == reference_row(row, s_x, s_y, zero, y_t.min_code, y_t.max_code)


@pytest.mark.parametrize("n", [8, 32, 128])
def test_distance_to_a_float_softmax_is_at_most_one_code(n):
    """Against float64 softmax rounded half to even (the float32 sources differ from it by less than this): at most
    0.1 % of outputs differ, by one code."""
    x_t, y_t = FixedType(8, 4, True), FixedType(8, 8, False)
    g = softmax_graph(n, x_t, y_t)
    x = np.random.default_rng(n).integers(-128, 128, (4000, n))
    ours = rows(x, params(g, g.op("sm")))
    v = x / 16.0
    ex = np.exp(v - v.max(axis=-1, keepdims=True))
    ref = np.clip(np.rint(256 * ex / ex.sum(axis=-1, keepdims=True)), 0, 255)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, ((diff > 0).mean(), diff.max())


@pytest.mark.parametrize("n, per_event, batch", [(10, 1, 4), (16, 1, 1), (33, 4, 4), (96, 2, 8)])
def test_emulator_and_native_equal_the_logical_model(n, per_event, batch):
    g = softmax_graph(n, FixedType(8, 4, True), ScaledType(8, False, (float(np.float32(1 / 255)),)), per_event)
    check(g, batch=batch, events=500, cosim_events=16)


def test_rows_shared_out_over_tiles():
    g = softmax_graph(32, FixedType(8, 4, True), FixedType(8, 8, False), per_event=8)
    plan, _ = check(g, overrides={"sm": {"cas_num": 4}}, batch=4, events=300, cosim_events=8)
    assert plan.layers[0].pieces == 4 and len(plan.kernels_of("sm")) == 4


def test_tall_tensors_share_their_rows_out_automatically():
    g = softmax_graph(64, FixedType(8, 4, True), FixedType(8, 8, False), per_event=32)
    plan, _ = check(g, batch=8, events=40, cosim_events=0)
    assert plan.layers[0].pieces > 1


def test_refusals():
    with pytest.raises(InternalCheckError, match="at most 8"):
        softmax_graph(8, FixedType(16, 8, True), FixedType(8, 8, False))
    with pytest.raises(InternalCheckError, match="not below 1"):
        softmax_graph(8, FixedType(8, 4, True), FixedType(8, 0, False))
    g = softmax_graph(8, FixedType(8, 4, True), FixedType(8, 8, False), per_event=3)
    with pytest.raises(IllegalConfigError, match="cas_num 5"):
        compile_graph(g, CompileOptions(batch=4, overrides={"sm": {"cas_num": 5}}))


def test_random_softmax_ops():
    result = run(cases=60, seed=1, native_every=20)
    assert result["mismatches"] == [], result
    assert result["native"] >= 3


@pytest.mark.slow
def test_random_softmax_ops_documented_run():
    result = run(cases=5000, seed=2026, native_every=250)
    print(result)
    assert result["mismatches"] == [], result
