"""The norm family (LayerNorm, RMSNorm): the numpy algorithm against an independent big-integer implementation of
the written algorithm (docs/numerics.md, "LayerNorm"), its distance to a float layer norm, and the backend
(emulator == logical model, native co-simulation, rows shared out over tiles, refusals) with a property run over
shapes, types, epsilons, gains and splits (the slow run is the documented >= 5000 cases)."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nn2aie.errors import InternalCheckError
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.norm.logical import params, rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import check  # noqa: E402
from norm_properties import run  # noqa: E402


def norm_graph(n: int, x_t, y_t, per_event: int = 1, **attrs) -> Graph:
    shape = (per_event, n) if per_event > 1 else (n,)
    a = {"axis": -1, "epsilon": 1e-5, "rms": False, "gamma": None, "beta": None} | attrs
    g = Graph("ln", {"x": Tensor("x", shape, x_t), "y": Tensor("y", shape, y_t)},
              [Op("ln", "layernorm", ["x"], ["y"], a)], ["x"], ["y"], {"framework": "test"})
    g.verify()
    return g


def _half_even(v: Fraction) -> int:
    q = math.floor(v)
    return q + (1 if v - q > Fraction(1, 2) or (v - q == Fraction(1, 2) and q % 2) else 0)


def reference_row(x: list[int], s_x: Fraction, zx: int, s_y: Fraction, zy: int, lo: int, hi: int, eps: float,
                  rms: bool, gamma: list[float], beta: list[float]) -> list[int]:
    """The written algorithm with Python integers and exact rationals (no numpy, no shared code)."""
    n = len(x)
    a = [v - zx for v in x]
    total, squares = sum(a), sum(v * v for v in a)
    c = [n * v for v in a] if rms else [n * v - total for v in a]
    var = n * squares if rms else n * squares - total * total
    w = var * 256 + _half_even(Fraction(eps) * n * n / (s_x * s_x) * 256)
    ub = 30 - math.ceil(math.log2(n) / 2)
    if var == 0:
        r, k = 0, 1
    else:
        m = max(0, (61 - w.bit_length()) // 2)
        r, k = (1 << 60) // math.isqrt(w << (2 * m)), 56 - m - ub
    top = max(abs(Fraction(g)) / s_y for g in gamma) or Fraction(1)
    f = 0
    while f < 59 - ub and top * Fraction(2) ** (f + 1) < (1 << 31) - 1:
        f += 1
    t = 0
    while any(abs(_half_even(Fraction(b) / s_y * Fraction(2) ** (ub + f - t))) >= 1 << 31 for b in beta):
        t += 1

    def srs(v: int, s: int) -> int:
        return _half_even(Fraction(v, 1 << s))

    out = []
    for j in range(n):
        u = srs(c[j] * r, k)
        g = _half_even(Fraction(gamma[j]) / s_y * Fraction(2) ** f)
        b = _half_even(Fraction(beta[j]) / s_y * Fraction(2) ** (ub + f - t)) << t
        out.append(min(max(srs(u * g + b, ub + f) + zy, lo), hi))
    return out


CASES = [(FixedType(8, 4, True), FixedType(8, 5, True), False),
         (ScaledType(8, False, (float(np.float32(0.05)),), (120,)), ScaledType(8, True, (float(np.float32(0.03)),),
                                                                               (7,)), False),
         (FixedType(8, 3, True), FixedType(16, 11, True), True),
         (FixedType(8, 0, True), ScaledType(8, False, (float(np.float32(0.02)),), (128,)), True)]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("n", [2, 7, 32, 100])
def test_numpy_rows_equal_the_written_algorithm(case, n):
    x_t, y_t, rms = CASES[case]
    rng = np.random.default_rng(n + 10 * case)
    gamma = [float(v) for v in rng.uniform(-1.5, 1.5, n).astype(np.float32)]
    beta = [float(v) for v in rng.uniform(-1, 1, n).astype(np.float32)]
    g = norm_graph(n, x_t, y_t, rms=rms, gamma=gamma, beta=beta)
    p = params(g, g.op("ln"))
    x = rng.integers(x_t.min_code, x_t.max_code + 1, (40, n))
    x[0], x[1] = x_t.max_code, x[1, 0]  # an extreme row and a constant one
    s_x = Fraction(2) ** -x_t.frac if isinstance(x_t, FixedType) else Fraction(x_t.scale[0])
    s_y = Fraction(2) ** -y_t.frac if isinstance(y_t, FixedType) else Fraction(y_t.scale[0])
    zx = x_t.zero_point[0] if isinstance(x_t, ScaledType) else 0
    zy = y_t.zero_point[0] if isinstance(y_t, ScaledType) else 0
    got = rows(x, p)
    for row, out in zip(x.tolist(), got.tolist(), strict=True):
        assert out == reference_row(row, s_x, zx, s_y, zy, y_t.min_code, y_t.max_code, 1e-5, rms, gamma, beta)


@pytest.mark.parametrize("n, y_t", [(16, FixedType(8, 5, True)), (64, FixedType(8, 4, True)),
                                    (64, FixedType(16, 11, True))])
def test_distance_to_a_float_layernorm_is_at_most_one_code(n, y_t):
    rng = np.random.default_rng(n)
    gamma, beta = rng.uniform(0.5, 1.5, n).astype(np.float32), rng.uniform(-0.5, 0.5, n).astype(np.float32)
    g = norm_graph(n, FixedType(8, 4, True), y_t, gamma=[float(v) for v in gamma], beta=[float(v) for v in beta])
    x = rng.integers(-128, 128, (4000, n))
    ours = rows(x, params(g, g.op("ln")))
    v = x / 16.0
    z = (v - v.mean(axis=-1, keepdims=True)) / np.sqrt(v.var(axis=-1, keepdims=True) + 1e-5)
    ref = np.clip(np.rint((z * gamma + beta) * 2.0 ** y_t.frac), y_t.min_code, y_t.max_code)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, ((diff > 0).mean(), diff.max())


@pytest.mark.parametrize("n, per_event, batch, rms", [(10, 1, 4, False), (16, 1, 1, True), (33, 4, 4, False),
                                                      (96, 2, 8, True)])
def test_emulator_and_native_equal_the_logical_model(n, per_event, batch, rms):
    rng = np.random.default_rng(n)
    g = norm_graph(n, FixedType(8, 4, True), ScaledType(8, True, (float(np.float32(0.04)),), (3,)), per_event,
                   rms=rms, gamma=[float(v) for v in rng.uniform(-1, 1, n).astype(np.float32)],
                   beta=[float(v) for v in rng.uniform(-1, 1, n).astype(np.float32)])
    check(g, batch=batch, events=500, cosim_events=16)


def test_rows_shared_out_over_tiles():
    g = norm_graph(32, FixedType(8, 4, True), FixedType(8, 5, True), per_event=8)
    plan, _ = check(g, overrides={"ln": {"cas_num": 4}}, batch=4, events=300, cosim_events=8)
    assert plan.layers[0].pieces == 4 and len(plan.kernels_of("ln")) == 4


def test_refusals():
    with pytest.raises(InternalCheckError, match="at most 8"):
        norm_graph(8, FixedType(16, 8, True), FixedType(8, 5, True))
    with pytest.raises(InternalCheckError, match="gamma must be null or 8"):
        norm_graph(8, FixedType(8, 4, True), FixedType(8, 5, True), gamma=[1.0, 2.0])
    with pytest.raises(InternalCheckError, match="2 to"):
        norm_graph(1, FixedType(8, 4, True), FixedType(8, 5, True))


def test_random_norm_ops():
    result = run(cases=60, seed=1, native_every=20)
    assert result["mismatches"] == [], result
    assert result["native"] >= 3


@pytest.mark.slow
def test_random_norm_ops_documented_run():
    result = run(cases=5000, seed=2026, native_every=250)
    print(result)
    assert result["mismatches"] == [], result
