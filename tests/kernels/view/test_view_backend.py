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
    # the three views move the data once: the transpose and the slice run inside the reshape's copy tile
    views = {e.op: e for e in plan.layers if e.family == "view"}
    assert {n: e.tiles for n, e in views.items()} == {"tr": 0, "sl": 0, "rs": 1}
    assert views["rs"].fused == ["tr", "sl"] and views["tr"].fused_into == "sl" and views["sl"].fused_into == "rs"
    assert {sb.tensor for sb in plan.shared_buffers} & {"tr_y", "sl_y"} == set()


def two_branch(first: int, second: int):
    gb = GraphBuilder(1)
    x = gb.tensor("x", (12,), X_T)
    a = gb.dense("a", x, first, H_T, relu=True)
    b = gb.dense("b", x, second, H_T, relu=True)
    c = gb.op("cat", "concat", [a, b], (first + second,), H_T, axis=0)
    return gb.graph(x, gb.dense("head", c, 4, FixedType(8, 2, True)))


def test_two_branch_concat_is_resolved_into_descriptors():
    """The first branch writes exactly its 8 columns: both branches write into the concat's buffer (no tile),
    and the input fans out to both branches through one broadcast read."""
    for overrides in ({}, {"a": {"cas_length": 2, "cas_num": 1}, "head": {"cas_length": 2, "cas_num": 1}}):
        plan, _ = check(two_branch(8, 6), overrides)
        assert {e.op: e.tiles for e in plan.layers}["cat"] == 0 and not plan.kernels_of("cat")
        bufs = {sb.tensor: sb for sb in plan.shared_buffers}
        assert "a_y" not in bufs and "b_y" not in bufs
        assert sum(len(sb.writers) for sb in plan.shared_buffers if sb.tensor == "cat_y") == 2
        reads = [len(acc.endpoints) for sb in plan.shared_buffers if sb.tensor == "x" for acc in sb.readers]
        assert reads == ([2] if not overrides else [1, 1, 1])  # a's two cascade positions read other slices


def test_concat_after_a_padded_branch_needs_a_copy_tile():
    """The first branch's 6 columns are written as 8 (its mmul block): in the concat's buffer its padding would
    land on the second branch's columns, so the concat runs as a copy tile."""
    plan, _ = check(two_branch(6, 8))
    assert {e.op: e.tiles for e in plan.layers}["cat"] == 1


def test_concat_on_a_leading_axis_and_a_copy_reshape():
    """Concat of two [2, 8] tensors on axis 0 (a copy), then a reshape that keeps the element order: both run on
    one gather tile (the concat fused into the reshape's copy); alone, the reshape is a vector copy."""
    gb = GraphBuilder(2)
    x = gb.tensor("x", (2, 6), X_T)
    a = gb.dense("a", x, 8, H_T, relu=True)
    b = gb.dense("b", x, 8, H_T, relu=True)
    c = gb.op("cat", "concat", [a, b], (4, 8), H_T, axis=0)
    r = gb.op("rs", "reshape", [c], (2, 16), H_T)
    plan, _ = check(gb.graph(x, gb.dense("head", r, 3, FixedType(8, 2, True))))
    views = {e.op: e for e in plan.layers if e.family == "view"}
    assert (views["cat"].tiles, views["cat"].fused_into, views["rs"].tiles, views["rs"].copy) == (0, "rs", 1, False)
    gb = GraphBuilder(2)
    x = gb.tensor("x", (4, 8), X_T)
    r = gb.op("rs", "reshape", [gb.dense("a", x, 8, H_T, relu=True)], (2, 16), H_T)
    plan, _ = check(gb.graph(x, gb.dense("head", r, 3, FixedType(8, 2, True))))
    assert plan.layer("rs").copy


def test_int16_views():
    gb = GraphBuilder(3)
    x = gb.tensor("x", (3, 5), FixedType(16, 11, True))
    h = gb.dense("phi", x, 7, FixedType(16, 9, True))
    t = gb.op("tr", "transpose", [h], (7, 3), FixedType(16, 9, True), perm=[1, 0])
    r = gb.op("rs", "reshape", [t], (21,), FixedType(16, 9, True))
    check(gb.graph(x, gb.dense("head", r, 4, FixedType(16, 8, True))))


def test_slices_on_the_last_axis_are_read_in_place():
    """Slices of a dense output (one 6 columns wide in the middle, so its readers' padded windows reach into the
    next columns) and of the graph input are resolved into read descriptors: no tile, their readers read their
    columns of the input's buffer; a third op reads the whole tensor. Multi-tile producer and readers too."""
    gb = GraphBuilder(5)
    x = gb.tensor("x", (16,), X_T)
    xs = gb.op("xs", "slice", [x], (8,), X_T, axis=0, start=4, end=12)
    a = gb.dense("a", x, 24, H_T, relu=True)
    mid = gb.op("mid", "slice", [a], (6,), H_T, axis=0, start=8, end=14)
    low = gb.op("low", "slice", [a], (8,), H_T, axis=0, start=0, end=8)
    h1 = gb.dense("h1", mid, 8, H_T, relu=True)
    h2 = gb.op("h2", "eltwise", [low], (8,), H_T, op="relu")
    h3 = gb.dense("h3", a, 8, H_T)
    h4 = gb.dense("h4", xs, 8, H_T)
    cat = gb.op("cat", "concat", [h1, h2, h3, h4], (32,), H_T, axis=0)
    g = gb.graph(x, gb.dense("head", cat, 5, FixedType(8, 2, True)))
    for overrides in ({}, {"a": {"cas_length": 2, "cas_num": 3}, "h1": {"cas_num": 1}, "h3": {"cas_length": 2}}):
        plan, _ = check(g, overrides)
        tiles = {e.op: e.tiles for e in plan.layers}
        assert tiles["mid"] == tiles["low"] == tiles["xs"] == 0, tiles
        buffered = {sb.tensor for sb in plan.shared_buffers}
        assert not buffered & {"mid_y", "low_y", "xs_y"}
        reads_a = sorted((acc.tiling.offset if hasattr(acc.tiling, "offset") else None, len(acc.endpoints))
                         for sb in plan.shared_buffers if sb.tensor == "a_y" for acc in sb.readers)
        assert len(reads_a) >= 3, reads_a  # h3's window(s), mid's and low's readers


def test_a_slice_on_a_leading_axis_runs_in_the_next_views_copy():
    gb = GraphBuilder(6)
    x = gb.tensor("x", (4, 8), X_T)
    h = gb.dense("phi", x, 8, H_T, relu=True)
    s = gb.op("sl", "slice", [h], (2, 8), H_T, axis=0, start=1, end=3)
    plan, _ = check(gb.graph(x, gb.dense("head", gb.op("rs", "reshape", [s], (16,), H_T), 3, FixedType(8, 2, True))))
    assert {e.op: e.tiles for e in plan.layers if e.family == "view"} == {"sl": 0, "rs": 1}
    gb = GraphBuilder(6)
    x = gb.tensor("x", (4, 8), X_T)
    s = gb.op("sl", "slice", [gb.dense("phi", x, 8, H_T, relu=True)], (2, 8), H_T, axis=0, start=1, end=3)
    plan, _ = check(gb.graph(x, gb.op("pool", "reduce", [s], (8,), FixedType(8, 2, True), op="sum", axes=[0],
                                      keepdims=False)))
    assert plan.layer("sl").tiles == 1  # no view after it: its own copy tile
