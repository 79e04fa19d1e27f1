"""The graph-level performance model: a timed simulation of the placed design. Its interval equals the busiest
stage when nothing else limits the pipeline, its latency covers the whole input -> output path, and it states
its assumptions."""

from __future__ import annotations

import pytest

from nn2aie.kernels.dense import cost
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.perf.model import Overheads, _stages, model_performance

from helpers import random_mlp_graph


def plan_of(sizes, batch=4, overrides=None):
    return compile_graph(random_mlp_graph(sizes), CompileOptions(batch=batch, overrides=overrides or {}))[0]


@pytest.mark.parametrize("sizes, batch, overrides", [
    ([16, 64, 32, 32, 5], 4, None),
    ([384, 256, 200, 10], 8, {"dense0": {"cas_length": 3, "cas_num": 2}}),
    ([640, 128, 128, 128, 8, 128, 128, 128, 640], 4, None),
], ids=["jet", "384-cascade", "autoencoder"])
def test_interval_is_the_busiest_stage(sizes, batch, overrides):
    plan = plan_of(sizes, batch, overrides)
    perf = model_performance(plan)
    from nn2aie.devices import get_device
    dev = get_device(plan.device)
    stages = _stages(plan, dev, {p.name: dev.plio_bytes_per_cycle(p.bits, p.freq_mhz) for p in plan.plios},
                     Overheads.of(dev))
    busiest = max(s.duration for s in stages.values())
    assert perf.interval_cycles == pytest.approx(busiest, rel=1e-6)  # a feed-forward pipeline of double buffers
    assert max(perf.utilisation.values()) <= 1.0 + 1e-9
    # the first event passes every stage on some path: at least the longest kernel plus PLIO in and out
    kernel = max(cost.dense_tile_cycles(e, "single") for e in plan.layers if e.cas_length == 1) \
        if any(e.cas_length == 1 for e in plan.layers) else 0
    assert perf.latency_cycles > kernel
    assert perf.events_per_s == pytest.approx(plan.batch * dev.aie_clock_mhz * 1e6 / perf.interval_cycles)


def test_kernel_bound_and_io_bound_designs_name_their_bottleneck():
    jet = model_performance(plan_of([16, 64, 32, 32, 5]))
    assert jet.bottleneck_kind == "kernel" and jet.bottleneck == "kernel:l1_c0_p0"  # the 64x32 layer
    # 8 output chains: the memory plan splits the output over PLIOs fast enough for the layer -> kernel bound
    wide_plan = plan_of([1024, 1024, 1024])
    assert len([p for p in wide_plan.plios if p.direction == "out"]) >= 2
    assert model_performance(wide_plan).bottleneck_kind == "kernel"
    # one tile reading 512 inputs per event through a 32-bit PLIO (1 B per AIE cycle): the PLIO bounds it
    slow = compile_graph(random_mlp_graph([512, 8]), CompileOptions(plio_bits=32))[0]
    perf = model_performance(slow)
    assert perf.bottleneck_kind == "plio-in"
    assert perf.interval_cycles == pytest.approx(512 * 4 / (32 / 8 * 312.5 / 1250))


def test_cascade_chain_runs_in_lock_step():
    plan = plan_of([384, 64], overrides={"dense0": {"cas_length": 4, "cas_num": 1}})
    perf = model_performance(plan)
    e = plan.layers[0]
    # four tiles of the chain overlap: the interval is one tile's time, not four
    assert perf.interval_cycles < 2 * max(cost.dense_tile_cycles(e, r) for r in ("first", "middle", "last"))


def test_assumptions_and_json():
    perf = model_performance(plan_of([16, 64, 32, 32, 5]), aie_clock_mhz=1000.0)
    j = perf.to_json()
    assert j["assumptions"]["aie_clock_mhz"] == 1000.0 and j["assumptions"]["plio_bits"] == [128]
    assert j["assumptions"]["pl_clock_mhz"] == [312.5] and "calibrated" in j["assumptions"]["kernel_cost_model"]
    assert j["latency_us"] == pytest.approx(perf.latency_cycles / 1000.0, rel=1e-3)
    faster = model_performance(plan_of([16, 64, 32, 32, 5]))
    assert faster.events_per_s > perf.events_per_s  # 1.25 GHz default
