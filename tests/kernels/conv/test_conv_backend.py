"""The conv family's backend on graphs built in the IR: 1-D and 2-D convolutions (strides, paddings, dilations,
groups, ReLU, row bands and output-channel slices) between dense layers and as the graph's first op; the emulator
equals the logical model exactly (itself checked against torch / onnxruntime in tests/ir/test_conv_semantics.py
and by the frontend tests) and every kernel co-simulates natively."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import GraphBuilder, check  # noqa: E402

from nn2aie.errors import DoesNotFitError  # noqa: E402
from nn2aie.ir.conv_semantics import ConvGeometry  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402

X_T = FixedType(8, 5, True)


def conv_graph(spatial, channels, filters, kernel, strides=None, dilations=None, pads=None, groups=1,
               relu=True, head=True, seed=0, y_t=None, w_bits=8):
    y_t = y_t or FixedType(8, 3, False)
    n = len(spatial)
    strides = strides or [1] * n
    dilations = dilations or [1] * n
    pads = pads or [0] * (2 * n)
    geo = ConvGeometry(tuple(spatial), channels, tuple(kernel), filters, tuple(strides), tuple(dilations),
                       tuple(pads[:n]), tuple(pads[n:]), groups)
    assert geo.problem() is None, geo.problem()
    gb = GraphBuilder(seed)
    x = gb.tensor("x", (*spatial, channels), X_T)
    taps = int(np.prod(kernel))
    hi = 1 << (w_bits - 1)
    w = gb.tensor("conv_w", (taps * channels // groups, filters), FixedType(w_bits, w_bits - 1, True),
                  gb.rng.integers(-hi, hi, size=(taps * channels // groups, filters)))
    b = gb.tensor("conv_b", (filters,), FixedType(16, 12, True), gb.rng.integers(-2000, 2000, size=filters))
    y = gb.op("conv", "conv", [x, w, b], (*geo.out_spatial, filters), y_t, kernel=list(kernel),
              strides=list(strides), dilations=list(dilations), pads_begin=list(pads[:n]), pads_end=list(pads[n:]),
              groups=groups, activation="relu" if relu else "linear")
    if head:
        y = gb.dense("head", y, 5, FixedType(8, 2, True))
    return gb.graph(x, y)


def test_conv2d_3x3_same_padding():
    plan, _ = check(conv_graph((6, 6), 3, 16, (3, 3), pads=[1, 1, 1, 1]), events=300)
    (e,) = [e for e in plan.layers if e.op == "conv"]
    assert e.family == "conv" and e.tiles >= 1


def test_conv1d_strided_dilated():
    check(conv_graph((20,), 8, 24, (3,), strides=[2], dilations=[2], pads=[2, 1]), events=300)


def test_bands_and_slices_forced():
    plan, _ = check(conv_graph((8, 8), 8, 32, (3, 3), pads=[1, 1, 1, 1]), {"conv": {"bands": 2, "parts": 2}},
                    events=300)
    (e,) = [e for e in plan.layers if e.op == "conv"]
    assert (e.bands, e.parts, e.tiles) == (2, 2, 4)


@pytest.mark.parametrize("groups", [2, 8])
def test_grouped_and_depthwise(groups):
    plan, _ = check(conv_graph((5, 7), 8, 8 if groups == 8 else 16, (3, 3), pads=[1, 0, 1, 2], groups=groups),
                    events=300)
    (e,) = [e for e in plan.layers if e.op == "conv"]
    assert e.variant == ("depthwise" if groups == 8 else "mmul")


@pytest.mark.parametrize("case", [((8, 6), 48, (3, 3), (2, 2), [1, 1, 1, 1], 2), ((30,), 32, (5,), (1,), [2, 2], 1)])
def test_depthwise_kernel_strides_splits_int16(case):
    """The element-wise depthwise kernel: strides, padding, channel slices, bands; 16-bit outputs."""
    spatial, channels, kernel, strides, pads, bands = case
    plan, _ = check(conv_graph(spatial, channels, channels, kernel, strides=list(strides), pads=pads,
                               groups=channels, y_t=FixedType(16, 9, True)),
                    {"conv": {"parts": 2, "bands": bands}}, events=200)
    (e,) = [e for e in plan.layers if e.op == "conv"]
    assert e.variant == "depthwise" and e.parts == 2


def pool_graph(spatial, channels, kernel, strides, pads=None, ceil_mode=False, unsigned=True, seed=1):
    from nn2aie.ir.pool_semantics import PoolGeometry

    n = len(spatial)
    pads = pads or [0] * (2 * n)
    geo = PoolGeometry(tuple(spatial), tuple(kernel), tuple(strides), tuple(pads[:n]), tuple(pads[n:]),
                       (1,) * n, ceil_mode)
    assert geo.problem() is None, geo.problem()
    gb = GraphBuilder(seed)
    x = gb.tensor("x", (*spatial, 6), X_T)
    h_t = FixedType(8, 3, not unsigned)
    h = gb.dense("pre", x, channels, h_t, relu=unsigned)
    p = gb.op("pool", "pool", [h], (*geo.out_spatial, channels), h_t, op="max", kernel=list(kernel),
              strides=list(strides), dilations=[1] * n, pads_begin=list(pads[:n]), pads_end=list(pads[n:]),
              ceil_mode=ceil_mode)
    return gb.graph(x, gb.dense("head", p, 5, FixedType(8, 2, True)))


@pytest.mark.parametrize("case", [((8, 8), 16, (2, 2), (2, 2), None, False, False),
                                  ((7, 9), 24, (3, 3), (2, 2), [1, 1, 1, 1], True, True),
                                  ((12,), 32, (3,), (1,), [1, 1], False, True),
                                  ((6, 6), 16, (2, 2), (1, 1), None, False, False)])
def test_max_pool(case):
    spatial, channels, kernel, strides, pads, ceil_mode, unsigned = case
    check(pool_graph(spatial, channels, kernel, strides, pads, ceil_mode, unsigned), events=300)


def test_max_pool_slices_and_bands():
    plan, _ = check(pool_graph((8, 8), 32, (2, 2), (2, 2)), {"pool": {"bands": 2, "parts": 2}}, events=200)
    (e,) = [e for e in plan.layers if e.op == "pool"]
    assert e.tiles == 4


def test_event_groups_share_out_the_batch():
    plan, _ = check(conv_graph((6, 6), 8, 16, (3, 3), pads=[1, 1, 1, 1]),
                    {"conv": {"event_groups": 2, "bands": 3}}, events=200, batch=4)
    (e,) = [e for e in plan.layers if e.op == "conv"]
    assert (e.event_groups, e.bands, e.tiles, e.tile_batch) == (2, 3, 6, 2)
    check(pool_graph((8, 8), 16, (2, 2), (2, 2)), {"pool": {"event_groups": 4}}, events=100, batch=4)


@pytest.mark.parametrize("length", [2, 3])
def test_cascade_over_input_channels(length):
    plan, _ = check(conv_graph((6, 7), 24, 16, (3, 3), pads=[1, 1, 1, 1]),
                    {"conv": {"cas_length": length, "parts": 1}}, events=200, batch=4)
    (e,) = [e for e in plan.layers if e.op == "conv"]
    per_slice = -(-24 // length)
    assert (e.slices, e.c_pad) == (length, -(-per_slice // 8) * 8)  # slices of whole 8-channel blocks
    roles = sorted(k.role for k in plan.kernels if k.layer == "conv")
    assert roles == sorted(["first", "last"] + ["middle"] * (length - 2))


def conv_chain_graph(spatial=(6, 6), channels=8, filters=16, seed=3):
    """Three padded 3x3 convs and a dense head: the tensors between the convs are written and read by every
    event group of both."""
    gb = GraphBuilder(seed)
    x = gb.tensor("x", (*spatial, channels), X_T)
    y, c_in = x, channels
    for i in range(3):
        w = gb.tensor(f"c{i}_w", (9 * c_in, filters), FixedType(8, 7, True),
                      gb.rng.integers(-128, 128, size=(9 * c_in, filters)))
        y = gb.op(f"c{i}", "conv", [y, w], (*spatial, filters), FixedType(8, 3, False), kernel=[3, 3],
                  strides=[1, 1], dilations=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], groups=1, activation="relu")
        c_in = filters
    return gb.graph(x, gb.dense("head", y, 5, FixedType(8, 2, True)))


def test_tensor_between_event_groups_splits_over_memory_tiles_by_events():
    """4, 8 and 4 event groups at batch 8: c1's 8 readers (and writers) of the same columns are more than a
    memory tile's 6 DMA channels, and no column cut helps -- each buffer is split by events (6 + 2 events),
    each range a memory tile of its own; emulator == logical model, every kernel co-simulated. Where a port
    moves every event (the graph input's PLIO, the dense head) no split by events exists: refused, saying so."""
    groups = {"c0": {"event_groups": 4}, "c1": {"event_groups": 8}, "c2": {"event_groups": 4}}
    plan, _ = check(conv_chain_graph(), groups, events=400, batch=8)
    for t in ("c0_y", "c1_y"):
        between = [sb for sb in plan.shared_buffers if sb.tensor == t]
        assert [(sb.first_event, sb.dims[1] // 36) for sb in between] == [(0, 6), (6, 2)]
        assert all(len(sb.writers) <= 6 and len(sb.readers) <= 6 for sb in between)
        assert len({(sb.col, sb.row) for sb in between}) == 2
    with pytest.raises(DoesNotFitError, match="between layers c2 and head: 8 writer ports"):
        compile_graph(conv_chain_graph(), CompileOptions(batch=8, overrides=groups | {"c2": {"event_groups": 8}}))
    with pytest.raises(DoesNotFitError, match="tensor x: more than 6 .* a PLIO carries the tensor"):
        compile_graph(conv_chain_graph(), CompileOptions(batch=8, overrides=groups | {"c0": {"event_groups": 8}}))
