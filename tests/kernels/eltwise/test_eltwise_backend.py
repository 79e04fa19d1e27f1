"""The eltwise family's backend: every op, compiled between dense layers, emulated on the placed design equals the
logical model exactly on 2000 inputs over the whole input range; the emitted kernels, compiled natively against
the AIE-API emulation headers, equal the emulator (one case per op and operand form; the sweep of output types
runs on the emulator)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import GraphBuilder, check  # noqa: E402

from nn2aie.errors import UnsupportedQuantizationError  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402

X_T = FixedType(8, 5, True)
A_T = FixedType(8, 4, True)  # the first operand (a dense output)
B_T = FixedType(8, 2, False)  # a second activation with another scale and signedness


def build(kind: str, y_type: FixedType, operand: str = "activation", width: int = 20, seed: int = 0, **attrs):
    """x -> dense -> a; op(a[, b]) -> y -> dense head. ``operand``: activation (b = a second dense of x, relu'd),
    input (b = x itself, a skip), scalar, channel or full constants, or none (unary ops)."""
    gb = GraphBuilder(seed)
    x = gb.tensor("x", (width,), X_T)
    a = gb.dense("da", x, width, A_T)
    inputs = [a]
    if operand == "activation":
        inputs.append(gb.dense("db", x, width, B_T, relu=True))
    elif operand == "input":
        inputs.append(x)
    elif operand in ("scalar", "channel"):
        c_t = FixedType(8, 6, True)
        shape = () if operand == "scalar" else (width,)
        inputs.append(gb.tensor("c", shape, c_t, gb.rng.integers(-128, 128, size=shape)))
    y = gb.op("op", "eltwise", inputs, (width,), y_type, op=kind, **attrs)
    return gb.graph(x, gb.dense("head", y, 5, FixedType(8, 1, True)))


BINARY_CASES = [(k, o) for k in ("add", "sub", "mul", "max", "min") for o in ("activation", "input", "channel")] + \
    [("add", "scalar"), ("mul", "scalar"), ("max", "scalar")]


@pytest.mark.parametrize(("kind", "operand"), BINARY_CASES)
def test_binary_ops_with_activations_and_constants(kind, operand):
    y_t = FixedType(8, 3 if kind != "mul" else 5, True, "RND_CONV", "SAT")
    check(build(kind, y_t, operand), {"da": {"cas_num": 2, "cas_length": 1}, "op": {"cas_num": 2}},
          cosim_events=48 if operand in ("activation", "channel") or kind == "add" else 0)


UNARY_CASES = [("relu", {}), ("identity", {}), ("leaky_relu", {"alpha_shift": 3}),
               ("clip", {"lo": [-3, 1], "hi": [45, 3]}), ("clip", {"lo": None, "hi": [7, 0]})]


@pytest.mark.parametrize(("kind", "attrs"), UNARY_CASES)
def test_unary_ops(kind, attrs):
    y_t = FixedType(8, 5, kind != "relu", "RND", "SAT")
    check(build(kind, y_t, "none", **attrs), {"op": {"cas_num": 3}})


OUTPUT_TYPES = [FixedType(8, 2, True, mode, ovf) for mode in ("TRN", "RND_ZERO", "RND_MIN_INF", "RND_INF", "TRN_ZERO")
                for ovf in ("SAT", "SAT_SYM")] + \
    [FixedType(6, 2, True, "RND", "WRAP"), FixedType(8, 3, True, "RND_CONV", "WRAP"), FixedType(5, 1, False),
     FixedType(16, 9, True, "RND", "SAT"), FixedType(8, 6, True, "RND", "SAT"), FixedType(7, 1, True, narrow=True)]


@pytest.mark.parametrize("y_t", OUTPUT_TYPES, ids=lambda t: t.describe())
def test_add_into_every_output_type(y_t):
    """Rounding, saturation, wrap-around into narrow types, 16-bit outputs, an output finer than both operands."""
    check(build("add", y_t, "activation", width=12), cosim_events=48 if y_t.overflow == "WRAP" else 0)


@pytest.mark.parametrize("y_t", [FixedType(8, 2, True, "RND", "SAT_SYM"), FixedType(6, 4, False, "TRN", "SAT")],
                         ids=lambda t: t.describe())
def test_monotone_ops_into_other_types(y_t):
    for kind in ("max", "min"):
        check(build(kind, y_t, "activation", width=8), cosim_events=0)
    check(build("leaky_relu", y_t, "none", width=8, alpha_shift=1), cosim_events=0)


def test_rank2_operands_and_a_full_constant_tensor():
    """A per-particle tensor [P, F]: leading rows, and a constant of the operand's shape (not per channel)."""
    gb = GraphBuilder(3)
    x = gb.tensor("x", (3, 8), X_T)
    a = gb.dense("da", x, 12, A_T)
    c = gb.tensor("c", (3, 12), FixedType(8, 4, True), gb.rng.integers(-128, 128, size=(3, 12)))
    y = gb.op("op", "eltwise", [a, c], (3, 12), FixedType(8, 3, True), op="add")
    s = gb.op("s", "reduce", [y], (12,), FixedType(8, 2, True), op="sum", axes=[0], keepdims=False)
    check(gb.graph(x, gb.dense("head", s, 4, FixedType(8, 0, True))), {"op": {"cas_num": 3}})


def test_wrapping_max_is_refused_with_the_reason():
    with pytest.raises(UnsupportedQuantizationError, match=r"op op output tensor op_y.*wrapping output type"):
        check(build("max", FixedType(6, 3, True, "RND", "WRAP"), "activation"), cosim_events=0)


def test_multi_tile_slices_cover_the_tensor():
    plan, _ = check(build("sub", FixedType(8, 3, True), "activation", width=36), {"op": {"cas_num": 3}},
                    cosim_events=0)
    (e,) = [e for e in plan.layers if e.op == "op"]
    assert (e.cas_num, e.slice) == (3, 12)
    assert sorted(k.n_start for k in plan.kernels_of("op")) == [0, 12, 24]
    assert np.all([k.col >= 0 and k.row >= 0 for k in plan.kernels_of("op")])


def test_tall_tensors_share_their_rows_out_over_tiles():
    """An image-sized residual add whose column slice does not fit one tile: row pieces (bands of each event's
    rows, or whole events), each a window of its own in the memory tile; 1x1 convolutions around it."""
    from nn2aie.ir.types import FixedType as F

    def conv1x1(gb, name, x, m, y_t):
        c = gb.tensors[x].shape[-1]
        w = gb.tensor(f"{name}_w", (c, m), F(8, 7, True), gb.rng.integers(-128, 128, size=(c, m)))
        return gb.op(name, "conv", [x, w], gb.tensors[x].shape[:-1] + (m,), y_t, kernel=[1, 1], strides=[1, 1],
                     dilations=[1, 1], pads_begin=[0, 0], pads_end=[0, 0], groups=1, activation="linear")

    for (h, w), batch in (((16, 16), 12),):
        gb = GraphBuilder(3)
        x = gb.tensor("x", (h, w, 8), F(8, 5, True))
        a = conv1x1(gb, "pa", x, 16, F(8, 3, True))
        b = conv1x1(gb, "pb", x, 16, F(8, 4, True))
        s = gb.op("add", "eltwise", [a, b], (h, w, 16), F(8, 3, True), op="add")
        plan, _ = check(gb.graph(x, conv1x1(gb, "head", s, 16, F(8, 2, True))), events=16, batch=batch,
                        cosim_events=8)
        (e,) = [e for e in plan.layers if e.op == "add"]
        assert e.pieces > 1 and e.rows * e.pieces == batch * h * w
