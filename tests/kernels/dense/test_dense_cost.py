"""The dense cost model: its constants are the fit of the published calibration points, it reproduces each point
within 10 %, and it follows the template's loop structure (which resource bounds a trip)."""

from __future__ import annotations

import pytest

from nn2aie.kernels.dense import cost
from nn2aie.passes.pipeline import CompileOptions, compile_graph

from helpers import random_mlp_graph


def test_constants_are_the_fit_of_the_calibration_points():
    fitted = cost.fit_output_constants()
    for bits, value in cost.OUTPUT_CYCLES_PER_256_BITS.items():
        assert value == pytest.approx(fitted[bits], abs=5e-4)


@pytest.mark.parametrize("index", range(len(cost.CALIBRATION)))
def test_each_calibration_point_within_10_percent(index):
    name, nest, measured, _source = cost.CALIBRATION[index]
    modelled = cost.kernel_cycles(nest)
    assert abs(modelled - measured) / measured <= 0.10, (name, modelled, measured)


def test_calibration_efficiencies_match_the_tutorial_story():
    naive, shared16, shared32 = (cost.kernel_cycles(n) for _, n, _, _ in cost.CALIBRATION)
    ideal = 64**3 / 256
    assert 0.45 < ideal / naive < 0.52  # B loads bound the naive kernel at 50 %
    assert ideal / shared16 > 0.9  # sharing B between two row blocks balances loads and MACs
    assert shared32 > shared16  # wider outputs cost epilogue cycles


def test_trip_bounds():
    base = dict(groups=1, accumulators=4, k_iterations=8, mac_instructions=1, out_bits_per_acc=0,
                out_element_bits=8)
    # A reused over 4 column blocks, B streamed: B unit 4 x 512 bits = 8 cycles for 4 MACs
    assert cost.trip_cycles(cost.LoopNest(a_bits=256, b_bits=4 * 512, **base)) == 8
    # B shared by 4 row blocks: 4 A blocks (4 cycles), 1 B block (2 cycles), 4 MACs: MAC bound
    assert cost.trip_cycles(cost.LoopNest(a_bits=4 * 256, b_bits=512, **base)) == 4
    # one accumulator: the dependency chain bounds it
    one = dict(base, accumulators=1)
    assert cost.trip_cycles(cost.LoopNest(a_bits=256, b_bits=512, **one)) == cost.DEPENDENT_MAC_INTERVAL


def test_template_loop_nest_counts_every_mac_once():
    plan, _ = compile_graph(random_mlp_graph([384, 256, 200, 10]),
                            CompileOptions(batch=8, overrides={"dense0": {"cas_length": 3, "cas_num": 2}}))
    for e in plan.layers:
        per = cost.NATIVE_MACS_PER_INSTRUCTION[(e.a_dtype.removeprefix("u"), e.w_dtype)]
        for role in {k.role for k in plan.kernels_of(e.op)}:
            nest = cost.dense_loop_nest(e, role)
            assert nest.macs_issued * per == e.batch * e.k_slice * e.n_slice
            assert 0 < cost.dense_efficiency(e, role) <= 1
            assert cost.dense_tile_cycles(e, role) > cost.kernel_cycles(nest)  # the call overhead is counted
