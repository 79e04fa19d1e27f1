"""The view family's backend: reshape, transpose, concat and slice as copy tiles between dense layers (padded
rows in, padded rows out): the emulator equals the logical model exactly, and the kernels co-simulate natively."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import GraphBuilder, check  # noqa: E402

from nn2aie.ir.types import FixedType  # noqa: E402

X_T = FixedType(8, 5, True)
H_T = FixedType(8, 3, False)


def test_transpose_slice_reshape_chain():
    gb = GraphBuilder(0)
    x = gb.tensor("x", (4, 6), X_T)
    h = gb.dense("phi", x, 10, H_T, relu=True)
    t = gb.op("tr", "transpose", [h], (10, 4), H_T, perm=[1, 0])
    s = gb.op("sl", "slice", [t], (10, 3), H_T, axis=1, start=1, end=4)
    r = gb.op("rs", "reshape", [s], (30,), H_T)
    plan, _ = check(gb.graph(x, gb.dense("head", r, 5, FixedType(8, 2, True))), {"phi": {"cas_num": 2}})
    assert {e.op: e.copy for e in plan.layers if e.family == "view"} == {"tr": False, "sl": False, "rs": False}


def test_two_branch_concat_with_fan_out():
    gb = GraphBuilder(1)
    x = gb.tensor("x", (12,), X_T)
    a = gb.dense("a", x, 8, H_T, relu=True)
    b = gb.dense("b", x, 6, H_T, relu=True)
    c = gb.op("cat", "concat", [a, b], (14,), H_T, axis=0)
    check(gb.graph(x, gb.dense("head", c, 4, FixedType(8, 2, True))),
          {"a": {"cas_length": 2, "cas_num": 1}, "head": {"cas_length": 2, "cas_num": 1}})


def test_concat_on_a_leading_axis_and_a_copy_reshape():
    """Concat of two [2, 8] tensors on axis 0, then a reshape that keeps the element order (a vector copy)."""
    gb = GraphBuilder(2)
    x = gb.tensor("x", (2, 6), X_T)
    a = gb.dense("a", x, 8, H_T, relu=True)
    b = gb.dense("b", x, 8, H_T, relu=True)
    c = gb.op("cat", "concat", [a, b], (4, 8), H_T, axis=0)
    r = gb.op("rs", "reshape", [c], (2, 16), H_T)
    plan, _ = check(gb.graph(x, gb.dense("head", r, 3, FixedType(8, 2, True))))
    assert {e.op: e.copy for e in plan.layers if e.family == "view"} == {"cat": False, "rs": True}


def test_int16_views():
    gb = GraphBuilder(3)
    x = gb.tensor("x", (3, 5), FixedType(16, 11, True))
    h = gb.dense("phi", x, 7, FixedType(16, 9, True))
    t = gb.op("tr", "transpose", [h], (7, 3), FixedType(16, 9, True), perm=[1, 0])
    r = gb.op("rs", "reshape", [t], (21,), FixedType(16, 9, True))
    check(gb.graph(x, gb.dense("head", r, 4, FixedType(16, 8, True))))
