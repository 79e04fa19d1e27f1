"""The hand-over overheads of the performance model (catalog facts fitted on aiesimulator, benchmarks/
aiesim_compare.py): each one adds its constant once per hand-over of that kind on the input -> output path, a
tile-to-tile direct link is a DMA transfer, and the aiesim comparison holds its calibration targets."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

import numpy as np
import pytest

from nn2aie.devices import get_device
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.perf.model import Overheads, model_performance

from helpers import random_mlp_graph

ZERO = Overheads(0.0, 0.0, 0.0)


def single_tile_layer():
    plan, _ = compile_graph(random_mlp_graph([32, 16]), CompileOptions(batch=8, overrides={
        "dense0": {"cas_length": 1, "cas_num": 1}}))
    return plan


def test_each_overhead_counts_once_per_hand_over_on_the_path():
    plan = single_tile_layer()
    assert len(plan.kernels) == 1 and not plan.direct_links
    # the path: PLIO -> memory tile, memory tile -> tile, the kernel, tile -> memory tile, memory tile -> PLIO
    dma_transfers = sum(len(sb.writers) + len(sb.readers) for sb in plan.shared_buffers)
    assert dma_transfers == 4
    base = model_performance(plan, overheads=ZERO)
    for over, per_path in ((Overheads(10.0, 0.0, 0.0), 10.0 * dma_transfers), (Overheads(0.0, 10.0, 0.0), 10.0),
                           (Overheads(0.0, 0.0, 10.0), 20.0)):
        got = model_performance(plan, overheads=over)
        assert got.latency_cycles - base.latency_cycles == pytest.approx(per_path)
    assert base.first_output_cycles < base.latency_cycles  # the first output word precedes the last


def test_catalog_overheads_are_the_default():
    plan = single_tile_layer()
    catalog = Overheads.of(get_device(plan.device))
    assert catalog.kernel_start_cycles > 0
    assert model_performance(plan).latency_cycles == model_performance(plan, overheads=catalog).latency_cycles
    assert model_performance(plan).to_json()["assumptions"]["overheads"]["kernel_start_cycles"] == \
        catalog.kernel_start_cycles


def test_structure_options_build_the_peer_structure():
    graph = random_mlp_graph([256, 32, 32])
    opts = {"dense0": {"cas_length": 4, "cas_num": 1}, "dense1": {"cas_length": 1, "cas_num": 1}}
    split, _ = compile_graph(graph, CompileOptions(batch=8, overrides=opts))
    single, _ = compile_graph(graph, CompileOptions(batch=8, overrides=opts, plio_split=False,
                                                    direct_handoffs=False))
    n_in = [sum(p.direction == "in" for p in plan.plios) for plan in (split, single)]
    assert n_in[0] > n_in[1] == 1
    assert split.direct_links and not single.direct_links
    assert model_performance(single).latency_cycles > model_performance(split).latency_cycles


def test_a_direct_link_between_distant_tiles_is_a_dma_transfer():
    graph = random_mlp_graph([256, 32, 32])
    plan, _ = compile_graph(graph, CompileOptions(batch=8, overrides={
        "dense0": {"cas_length": 4, "cas_num": 1}, "dense1": {"cas_length": 1, "cas_num": 1}}))
    link = next(link for link in plan.direct_links if link.in_place)
    over = Overheads(7.0, 0.0, 0.0)
    in_place = model_performance(plan, overheads=over)
    plan.direct_links = [dataclasses.replace(x, in_place=False) if x is link else x for x in plan.direct_links]
    dma = model_performance(plan, overheads=over)
    # 8 rows x 32 int8 columns cross one 32-bit DMA channel (4 B per cycle) after its start-up, plus stream hops
    moved = 8 * graph.tensor(link.tensor).shape[-1] / 4 + over.dma_start_cycles
    extra = dma.latency_cycles - in_place.latency_cycles
    assert extra >= moved and (extra - moved) % 4 == 0


def test_aiesim_comparison_meets_its_targets():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
    import aiesim_compare as bench

    rows = bench.read_designs()
    assert len(rows) == 66
    plans = bench.build_plans(rows)
    stats = bench.summarise(rows, bench.modelled_ns(plans, Overheads.of(get_device(plans[0].device))))
    held = stats["sets"]["held-out"]
    assert held["designs"] == 30 and held["median_abs_err_pct"] <= 10.0 and held["max_abs_err_pct"] <= 25.0
    assert stats["sets"]["fitted"]["median_abs_err_pct"] <= 10.0
    assert np.median([m["spearman"] for m in stats["models"].values()]) >= 0.8
