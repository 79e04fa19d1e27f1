"""Dense layers on scaled tensors (kernels/linear_scaled.py): the logical model and the placed design against an
independent oracle that computes each output from the definition with Python Fractions,

    code = clamp(round((sx * sw_n * sum_k (x_k - zx) w_kn + b_n) / sy) + zy),  max(code, clamp(zy)) after a ReLU,

for random float32 scales (per tensor and per output channel), zero points, biases and every rounding mode."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nn2aie.errors import IllegalConfigError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Tensor
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.linear_scaled import scaled_layer
from nn2aie.numerics import IR_TO_AIE_ROUNDING
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator

from helpers import round_rational, scaled_graph

ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "CEIL", "UP")


def oracle(graph: Graph, x: np.ndarray) -> np.ndarray:
    op = graph.ops[0]
    xt, wt, bt, yt = (graph.tensor(t).type for t in ("x", "w", "b", "y"))
    w, b = graph.tensor("w").data, graph.tensor("b").data
    mode = IR_TO_AIE_ROUNDING[yt.rounding]
    sx, zx, sy, zy = Fraction(xt.scale[0]), xt.zero_point[0], Fraction(yt.scale[0]), yt.zero_point[0]
    out = np.empty((x.shape[0], w.shape[1]), dtype=np.int64)
    for j in range(w.shape[1]):
        sw = Fraction(wt.scale[j if len(wt.scale) > 1 else 0])
        bias = int(b[j]) * Fraction(bt.scale[j])
        for r in range(x.shape[0]):
            real = sx * sw * sum((int(x[r, i]) - zx) * int(w[i, j]) for i in range(w.shape[0])) + bias
            code = min(yt.max_code, max(yt.min_code, round_rational(real / sy, mode) + zy))
            if op.attrs["activation"] == "relu":
                code = max(code, min(yt.max_code, max(yt.min_code, zy)))
            out[r, j] = code
    return out


def codes(graph: Graph, events: int, seed: int) -> np.ndarray:
    t = graph.tensor("x").type
    x = np.random.default_rng(seed).integers(t.min_code, t.max_code + 1, size=(events, graph.tensor("x").shape[0]))
    x[:3], x[3:6] = t.max_code, t.min_code
    return x


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_logical_model_equals_the_rational_oracle(rounding, per_channel):
    graph = scaled_graph(seed=ROUNDINGS.index(rounding) + 10 * per_channel, rounding=rounding,
                         per_channel=per_channel)
    x = codes(graph, 300, seed=1)
    assert np.array_equal(evaluate(graph, {"x": x})["y"], oracle(graph, x))


@pytest.mark.parametrize("zx, zy, out_signed, relu", [(0, 0, True, True), (37, 0, True, False),
                                                     (0, 140, False, True), (128, 3, False, False)])
def test_zero_points_and_relu(zx, zy, out_signed, relu):
    graph = scaled_graph(seed=zx + zy, zx=zx, zy=zy, out_signed=out_signed, relu=relu)
    x = codes(graph, 300, seed=2)
    want = oracle(graph, x)
    assert np.array_equal(evaluate(graph, {"x": x})["y"], want)
    if relu:
        assert want.min() == min(max(zy, graph.tensor("y").type.min_code), graph.tensor("y").type.max_code)


@pytest.mark.parametrize("kind", ["multiplier", "table"])
@pytest.mark.parametrize("seed", range(4))
def test_placed_design_equals_the_logical_model(seed, kind):
    """Across tiles (a cascade, several chains): each tile's epilogue takes its own columns' constants; the
    multiplier is chosen by default here, the threshold table on request."""
    graph = scaled_graph(seed=seed, k=64, n=48, per_channel=seed % 2 == 0, relu=seed < 2,
                         rounding=ROUNDINGS[seed * 2])
    overrides = {"fc": {"cas_length": 2, "cas_num": 3} if seed % 2 else {}}
    if kind == "table":
        overrides["fc"]["requant"] = "table"
    plan, _ = compile_graph(graph, CompileOptions(batch=4, overrides=overrides))
    assert plan.layers[0].requant.kind == kind
    x = codes(graph, 1500, seed=seed)
    want = evaluate(graph, {"x": x})["y"]
    assert np.array_equal(Emulator(plan).run(x), want)
    assert np.array_equal(want[:60], oracle(graph, x[:60]))
    layer = plan.layers[0]
    if seed % 2:
        assert (layer.cas_length, layer.cas_num) == (2, 3)


def test_reachable_range_bounds_every_accumulator():
    graph = scaled_graph(seed=3, k=40, n=8)
    layer = scaled_layer(graph, graph.ops[0])
    w = graph.tensor("w").data.astype(np.int64)
    x = codes(graph, 4000, seed=4)
    acc = x @ w + (layer.tile_bias if layer.tile_bias is not None else 0)
    assert layer.acc_lo <= acc.min() and acc.max() <= layer.acc_hi
    extremes = np.where(w > 0, graph.tensor("x").type.max_code, graph.tensor("x").type.min_code).T @ w
    assert layer.acc_hi == int((np.diag(extremes) + (layer.tile_bias if layer.tile_bias is not None else 0)).max())


@pytest.mark.parametrize("change, words", [
    (lambda g: g.tensors["y"].__setattr__("type", ScaledType(8, True, (0.5, 0.25, 0.5, 0.25, 0.5, 0.25))),
     "per-channel scales on an activation"),
    (lambda g: g.tensors["w"].__setattr__("type", ScaledType(8, True, (0.5,), (2,))), "weight zero points"),
    (lambda g: g.tensors["y"].__setattr__("type", ScaledType(8, True, (0.5,), overflow="WRAP")), "overflow mode"),
    (lambda g: g.tensors["w"].__setattr__("type", ScaledType(8, True, (0.5, 0.25))), "2 scales for 6"),
])
def test_refusals_name_the_tensor(change, words):
    graph = scaled_graph(seed=0)
    change(graph)
    with pytest.raises(UnsupportedQuantizationError) as info:
        scaled_layer(graph, graph.ops[0])
    assert words in info.value.reason and info.value.hint


def test_requant_override_is_checked():
    with pytest.raises(IllegalConfigError, match="not a requantisation kind"):
        compile_graph(scaled_graph(seed=0), CompileOptions(overrides={"fc": {"requant": "lut"}}))
    fixed = scaled_graph(seed=0)
    for name, t in (("x", FixedType(8, 5, True)), ("w", FixedType(8, 7, True)), ("b", FixedType(26, 12, True)),
                    ("y", FixedType(8, 4, True))):
        fixed.tensors[name].type = t
    with pytest.raises(IllegalConfigError, match="for float scales"):
        compile_graph(fixed, CompileOptions(overrides={"fc": {"requant": "table"}}))


def test_fixed_types_mix_with_scaled_ones():
    """A fixed-point input (scale 2**-frac) into a float-scale layer."""
    graph = scaled_graph(seed=5)
    graph.tensors["x"].type = FixedType(8, 5, True)
    x = np.random.default_rng(0).integers(-128, 128, size=(200, 12))
    want = oracle_fixed_input(graph, x)
    assert np.array_equal(evaluate(graph, {"x": x})["y"], want)


def oracle_fixed_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The oracle with the fixed input read as scale 2**-5, zero point 0."""
    copy = Graph(graph.name, dict(graph.tensors), graph.ops, graph.inputs, graph.outputs, graph.source)
    copy.tensors["x"] = Tensor("x", (12,), ScaledType(8, True, (2.0**-5,)))
    return oracle(copy, x)
