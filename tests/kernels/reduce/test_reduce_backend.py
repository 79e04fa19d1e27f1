"""The reduce family's backend: sum / max / mean (power-of-two counts by SRS, other counts by the table of the
logical model's own rounding, both division modes) over particles and over adjacent leading axes, compiled between
dense layers: the emulator equals the logical model exactly on 2000 inputs, and the kernels co-simulate natively."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import GraphBuilder, check  # noqa: E402

from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402

X_T = FixedType(8, 5, True)


def deepsets(particles: int, kind: str, y_t: FixedType, features: int = 20, divide: str = "float32",
             hidden_unsigned: bool = True):
    gb = GraphBuilder(particles)
    x = gb.tensor("x", (particles, 6), X_T)
    h = gb.dense("phi", x, features, FixedType(8, 3, not hidden_unsigned), relu=hidden_unsigned)
    attrs = {"op": kind, "axes": [0], "keepdims": False} | ({"divide": divide} if kind == "mean" else {})
    m = gb.op("pool", "reduce", [h], (features,), y_t, **attrs)
    return gb.graph(x, gb.dense("rho", m, 5, FixedType(8, 2, True)))


CASES = [(4, "mean", "float32"), (10, "mean", "float32"), (10, "mean", "exact"), (7, "sum", ""), (16, "sum", ""),
         (5, "max", ""), (12, "mean", "exact")]


@pytest.mark.parametrize(("particles", "kind", "divide"), CASES)
def test_pool_over_particles(particles, kind, divide):
    y_t = FixedType(8, 4 if kind != "sum" else 1, False, "RND_CONV" if divide != "exact" else "TRN_ZERO", "SAT")
    plan, _ = check(deepsets(particles, kind, y_t, divide=divide or "float32"),
                    {"phi": {"cas_num": 2, "cas_length": 1}, "pool": {"cas_num": 2}, "rho": {"cas_length": 2}})
    (e,) = [e for e in plan.layers if e.op == "pool"]
    assert bool(e.table) == (kind == "mean" and particles & (particles - 1) != 0)


@pytest.mark.parametrize("y_t", [FixedType(8, 5, True, "RND", "SAT_SYM"), FixedType(6, 2, True, "TRN", "WRAP"),
                                 FixedType(16, 8, True, "RND_INF", "SAT"), FixedType(8, 6, True, "RND", "SAT")],
                         ids=lambda t: t.describe())
def test_signed_inputs_and_output_types(y_t):
    for kind in ("sum", "max", "mean"):
        check(deepsets(6, kind, y_t, hidden_unsigned=False), cosim_events=48 if kind == "mean" else 0)


def test_adjacent_leading_axes_with_outer_and_inner_rows():
    """[2, 3, 4, F] reduced over axes (1, 2): outer 2, red 12, inner 1; and over axis 1 of [2, 3, 4, F]: inner 4."""
    for axes, out_shape in (([1, 2], (2, 8)), ([1], (2, 4, 8))):
        gb = GraphBuilder(9)
        x = gb.tensor("x", (2, 3, 4, 5), X_T)
        h = gb.dense("phi", x, 8, FixedType(8, 3, True))
        m = gb.op("pool", "reduce", [h], out_shape, FixedType(8, 2, True), op="sum", axes=axes, keepdims=False)
        check(gb.graph(x, gb.dense("rho", m, 3, FixedType(8, 1, True))))


def test_reducing_the_feature_axis_is_refused_naming_the_op():
    gb = GraphBuilder(1)
    x = gb.tensor("x", (4, 6), X_T)
    h = gb.dense("phi", x, 8, FixedType(8, 3, True))
    m = gb.op("pool", "reduce", [h], (4,), FixedType(8, 2, True), op="sum", axes=[1], keepdims=False)
    with pytest.raises(UnsupportedOpError, match=r"op pool \(reduce\).*last axis"):
        check(gb.graph(x, gb.dense("rho", m, 3, FixedType(8, 1, True))))


def test_a_mean_table_too_large_is_refused():
    gb = GraphBuilder(2)
    x = gb.tensor("x", (12, 6), X_T)
    h = gb.dense("phi", x, 8, FixedType(16, 8, True))
    m = gb.op("pool", "reduce", [h], (8,), FixedType(16, 8, True), op="mean", axes=[0], keepdims=False,
              divide="exact")
    with pytest.raises(UnsupportedQuantizationError, match=r"op pool output tensor pool_y.*table"):
        check(gb.graph(x, gb.dense("rho", m, 3, FixedType(8, 1, True))))


@pytest.mark.parametrize("divide", ["float32", "exact"])
def test_mean_over_many_elements_by_multiplier(divide):
    """A mean over 125 elements (not a power of two) whose table of sums would not fit: the multiplier (with
    corrections where the float32 division rounds otherwise) equals the logical model on every event, natively."""
    y_t = FixedType(8, 4, False, "RND_CONV" if divide == "float32" else "TRN_ZERO", "SAT")
    plan, _ = check(deepsets(125, "mean", y_t, divide=divide, hidden_unsigned=False), events=500)
    (e,) = [e for e in plan.layers if e.op == "pool"]
    assert not e.table and e.requant is not None and e.requant.kind == "multiplier"


@pytest.mark.parametrize("overflow", ["WRAP", "SAT_ZERO"])
def test_mean_whose_output_overflows_is_refused_not_miscompiled(overflow):
    """A mean over 3 elements of 16-bit codes into a 6-bit type that does not saturate (the DAG fuzzer's seed
    1073): its codes fall where the sum overflows the output, so no multiplier (a rising map) reproduces it, and
    its table of 196,606 sums would not fit -- refused with the reason, where it was once emitted with
    thresholds bisected as if the mean rose and came out all zeros. Saturating the same type compiles exactly."""
    def graph(overflow_mode: str):
        gb = GraphBuilder(3)
        x = gb.tensor("x", (3, 6), X_T)
        h = gb.dense("phi", x, 12, FixedType(16, 2, False), relu=True)
        m = gb.op("pool", "reduce", [h], (12,), FixedType(6, 2, False, "RND_MIN_INF", overflow_mode), op="mean",
                  axes=[0], keepdims=False, divide="exact")
        return gb.graph(x, gb.dense("rho", m, 3, FixedType(8, 1, True)))

    with pytest.raises(UnsupportedQuantizationError, match=f"overflows its 6-bit {overflow} output type"):
        check(graph(overflow))
    plan, _ = check(graph("SAT"), events=500)
    (e,) = [e for e in plan.layers if e.op == "pool"]
    assert e.requant is not None and e.requant.kind == "multiplier"
