"""The buffer-depth pass: a tensor read at both ends of a long branch (a skip connection) gets a memory-tile
buffer deep enough that its writer does not wait for the long branch (performance model), within the memory
tile's capacity; buffers with one reading op keep two."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))
from family_graphs import GraphBuilder, check  # noqa: E402

from nn2aie.codegen.project import render_project  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402
from nn2aie.passes.legality import check_legality  # noqa: E402
from nn2aie.passes.pipeline import MAX_SKIP_BUFFERS  # noqa: E402
from nn2aie.perf.model import model_performance  # noqa: E402

T = FixedType(8, 4, True)


def skip_graph(depth: int, width: int = 64):
    gb = GraphBuilder(0)
    x = gb.tensor("x", (width,), FixedType(8, 5, True))
    h = x
    for i in range(depth):
        h = gb.dense(f"d{i}", h, width, T)
    y = gb.op("add", "eltwise", [h, x], (width,), T, op="add")
    return gb.graph(x, gb.dense("head", y, 8, FixedType(8, 2, True)))


def test_skip_buffer_is_deepened_and_shortens_the_interval():
    plan, _ = check(skip_graph(4), cosim_events=0)
    depth = {sb.tensor: sb.num_buffers for sb in plan.shared_buffers}
    assert 2 < depth["x"] <= MAX_SKIP_BUFFERS
    assert all(n == 2 for t, n in depth.items() if t != "x")
    deep = model_performance(plan).interval_cycles
    (x_buf,) = [sb for sb in plan.shared_buffers if sb.tensor == "x"]
    chosen = x_buf.num_buffers
    for n in range(2, chosen):  # every shallower buffer is slower: the pass took the fewest that reach the best
        x_buf.num_buffers = n
        assert model_performance(plan).interval_cycles > deep
    x_buf.num_buffers = chosen
    check_legality(plan, plan_device(plan))  # capacity and buffer descriptors of the deeper buffer
    graph_h = render_project(plan, None, {})["src/graph.h"]
    assert f"adf::num_buffers(mt_x_mt) = {chosen};" in graph_h


def test_a_short_skip_keeps_two_buffers():
    plan, _ = check(skip_graph(1), cosim_events=0)
    assert {sb.num_buffers for sb in plan.shared_buffers} == {2}


def plan_device(plan):
    from nn2aie.devices import get_target_device

    return get_target_device(plan.device)


def test_buffers_share_memory_tiles_once_every_tile_holds_one():
    """xcve2302 has 17 memory tiles; a chain of dense and eltwise ops needs a buffer per tensor between them (their
    layouts differ): later buffers share memory tiles, side by side, and the design stays bit-exact."""
    gb = GraphBuilder(4)
    h = x = gb.tensor("x", (16,), FixedType(8, 5, True))
    for i in range(10):
        h = gb.dense(f"d{i}", h, 16, T)
        h = gb.op(f"r{i}", "eltwise", [h], (16,), T, op="relu")
    plan, _ = check(gb.graph(x, h), cosim_events=0, device="xcve2302")
    by_tile: dict = {}
    for sb in plan.shared_buffers:
        by_tile.setdefault((sb.col, sb.row), []).append(sb)
    assert len(plan.shared_buffers) > 17 and len(by_tile) <= 17
    shared = [sorted(bufs, key=lambda b: b.offset) for bufs in by_tile.values() if len(bufs) > 1]
    assert shared
    graph_h = render_project(plan, None, {})["src/graph.h"]
    for bufs in shared:
        for a, b in zip(bufs, bufs[1:], strict=False):
            assert b.offset >= a.offset + a.num_buffers * a.buffer_bytes
        last = bufs[-1]
        assert f"adf::address({last.col}, {last.row}, {last.offset})" in graph_h
