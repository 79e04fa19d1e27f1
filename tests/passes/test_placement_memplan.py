"""Placement and memory plan invariants (the legality check runs inside compile_graph too)."""

import numpy as np
import pytest

from nn2aie.passes.pipeline import CompileOptions, compile_graph

from helpers import random_mlp_graph


def test_rectangles_disjoint_and_cascades_west_to_east():
    plan, _ = compile_graph(random_mlp_graph([640, 128, 128, 128, 8, 128, 128, 128, 640]))
    tiles = [(k.col, k.row) for k in plan.kernels]
    assert len(tiles) == len(set(tiles))
    by_name = {k.name: k for k in plan.kernels}
    for k in plan.kernels:
        if k.position:
            prev = by_name[f"{k.name.rsplit('_p', 1)[0]}_p{k.position - 1}"]
            assert (prev.col + 1, prev.row) == (k.col, k.row)


def test_consumer_starts_next_to_producer():
    plan, _ = compile_graph(random_mlp_graph([384, 256, 200, 10]))
    spans = []
    for e in plan.layers:
        cols = [k.col for k in plan.kernels_of(e.op)]
        spans.append((min(cols), max(cols)))
    for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start == prev_end + 1


def test_large_layers_split_buffers_within_dma_channels():
    plan, _ = compile_graph(random_mlp_graph([1024, 1024, 1024]))
    for sb in plan.shared_buffers:
        assert len(sb.writers) <= 6 and len(sb.readers) <= 6
    # the 8 chains of layer 0 feed 8 cascade positions of layer 1 through more than one memory tile
    inter = [sb for sb in plan.shared_buffers if sb.tensor == plan.layers[0].op.replace("dense", "x") or
             sb.tensor == "x1"]
    assert len(inter) >= 2
    memtiles = [(sb.col, sb.row) for sb in plan.shared_buffers]
    assert len(memtiles) == len(set(memtiles))


def test_direct_handoff_when_layouts_agree():
    plan, _ = compile_graph(random_mlp_graph([16, 64, 32, 32, 5]))
    assert len(plan.direct_links) == 3  # every inter-layer tensor goes tile to tile
    plan2, _ = compile_graph(random_mlp_graph([16, 64, 32, 32, 5]),
                             CompileOptions(overrides={"dense1": {"cas_length": 4, "cas_num": 2}}))
    assert len(plan2.direct_links) == 1  # dense2 -> dense3 only


def test_padded_reads_are_zero_filled_past_the_written_columns():
    plan, _ = compile_graph(random_mlp_graph([16, 20, 5]), CompileOptions(overrides={"dense1": {"cas_length": 3,
                                                                                                  "cas_num": 1}}))
    sb = [s for s in plan.shared_buffers if s.tensor == "x1"][0]
    written = max(w.tiling.offset[0] + w.tiling.elements // sb.dims[1] for w in sb.writers)
    for r in sb.readers:
        addr, valid = r.tiling.addresses()
        cols = addr % sb.dims[0]
        assert np.all(cols[valid] < written)


def test_same_model_same_plan():
    a, _ = compile_graph(random_mlp_graph([384, 256, 200, 10], seed=3))
    b, _ = compile_graph(random_mlp_graph([384, 256, 200, 10], seed=3))
    assert a.to_json() == b.to_json()


def test_memory_tile_groups_respect_capacity_as_well_as_channels():
    from nn2aie.errors import DoesNotFitError
    from nn2aie.passes.memplan import _groups, _Span

    readers = [_Span(p * 64, p * 64 + 64, None) for p in range(8)]  # 8 consumer positions of 64 columns
    assert _groups(None, readers, 512, 6, "t") == [(0, 384, None), (384, 512, None)]  # channels: 6 per memory tile
    assert _groups(None, readers, 512, 6, "t", max_columns=128) == [(0, 128, None), (128, 256, None),
                                                                    (256, 384, None), (384, 512, None)]
    with pytest.raises(DoesNotFitError, match="more than the 32 columns a memory tile holds"):
        _groups(None, readers, 512, 6, "t", max_columns=32)


def test_a_buffer_between_tiles_sharing_out_the_batch_splits_by_events():
    """4 producer tiles (one event each) write all 16 columns; 8 consumer ports read 8 columns of one event each:
    no column cut is free of a straddling writer, so only event ranges bring each memory tile within 6 channels
    (here [0, 3) with 3 writers and 6 readers, and [3, 4)); a port moving every event forbids any event cut."""
    from nn2aie.errors import DoesNotFitError
    from nn2aie.passes.memplan import _groups, _Span, boundary_feasible

    writers = [_Span(0, 16, (ev, ev + 1)) for ev in range(4)]
    readers = [_Span(c, c + 8, (ev, ev + 1)) for c in (0, 8) for ev in range(4)]
    with pytest.raises(DoesNotFitError, match="more than 6 producer or consumer slices"):
        _groups(writers, readers, 16, 6, "t")
    assert _groups(writers, readers, 16, 6, "t", by_events=True) == [(0, 16, [(0, 3), (3, 4)])]
    with pytest.raises(DoesNotFitError):
        _groups(writers, readers + [_Span(0, 16, None)], 16, 6, "t", by_events=True)
    # the legaliser's view of the same ports: (start, width, window, (first event, count))
    w = [(0, 16, ev, (ev, 1)) for ev in range(4)]
    r = [(c, 8, ev, (ev, 1)) for c in (0, 8) for ev in range(4)]
    assert boundary_feasible(w, r, 6)
    assert not boundary_feasible(w, r + [(0, 16, 9, None)], 6)
    assert not boundary_feasible([(a, b, ev) for a, b, ev, _ in w], [(a, b, ev) for a, b, ev, _ in r], 6)
