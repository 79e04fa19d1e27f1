"""Placed-design emulation equals the logical integer model, bit for bit, over shapes and parallelism."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.execution import ceil_div
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator, Trace

from helpers import random_codes, random_mlp_graph


def check(graph, options=None, n=1000, seed=1):
    plan, _ = compile_graph(graph, options)
    x = random_codes(graph, n, seed)
    got = Emulator(plan).run(x)
    want = evaluate(graph, {graph.inputs[0]: x})[graph.outputs[0]]
    assert got.dtype == np.int64 and got.shape == want.shape
    assert np.array_equal(got, want)
    return plan


@pytest.mark.parametrize("sizes", [[16, 64, 32, 32, 5], [384, 256, 200, 10], [1024, 512, 10]])
def test_named_shapes(sizes):
    check(random_mlp_graph(sizes))


def test_forced_four_by_two_on_every_layer():
    sizes = [384, 256, 200, 10]
    graph = random_mlp_graph(sizes)
    overrides = {f"dense{i}": {"cas_length": 4, "cas_num": 2} for i in range(2)}
    overrides["dense2"] = {"cas_length": 4, "cas_num": 1}
    plan = check(graph, CompileOptions(overrides=overrides))
    assert [(e.cas_length, e.cas_num) for e in plan.layers] == [(4, 2), (4, 2), (4, 1)]


def test_int16_activations():
    check(random_mlp_graph([40, 24, 9], act_bits=16), n=500)


def test_int16_activations_and_weights():
    plan = check(random_mlp_graph([40, 24, 9], act_bits=16, w_bits=16),
                 CompileOptions(overrides={"dense0": {"cas_length": 3, "cas_num": 2}}), n=500)
    assert plan.layers[0].mmul == (4, 4, 4) and plan.layers[0].acc == "acc64"


def test_batch_of_eight_and_partial_last_iteration():
    check(random_mlp_graph([16, 64, 5]), CompileOptions(batch=8), n=13)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 70), min_size=2, max_size=4), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 1000))
def test_random_shapes_and_splits(sizes, length, num, seed):
    graph = random_mlp_graph(sizes, seed=seed)
    op = graph.ops[0]
    k, n = graph.tensor(op.inputs[1]).shape
    kb, nb = ceil_div(k, 8), ceil_div(n, 8)
    length, num = min(length, kb), min(num, nb)
    # keep the split only when every slice is non-empty (otherwise the chooser refuses it)
    if (length - 1) * ceil_div(kb, length) >= kb or (num - 1) * ceil_div(nb, num) >= nb:
        length, num = 1, 1
    check(graph, CompileOptions(overrides={op.name: {"cas_length": length, "cas_num": num}}), n=64, seed=seed)


def test_trace_records_every_kernel():
    graph = random_mlp_graph([16, 64, 32])
    plan, _ = compile_graph(graph, CompileOptions(overrides={"dense0": {"cas_length": 2, "cas_num": 2}}))
    trace = Trace()
    Emulator(plan).run(random_codes(graph, 8), trace)
    for k in plan.kernels:
        assert k.name in trace.inputs and k.name in trace.outputs
        if k.has_cascade_in:
            assert k.name in trace.cascade_in


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([[16, 64, 32, 32, 5], [40, 24, 9], [100, 30, 20]]), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 100))
def test_column_ports_equal_descriptor_streams(sizes, length, num, seed):
    """The fast path (descriptors proved to be column slices) and the general path (descriptor address lists)
    give identical outputs and identical per-kernel traces."""
    graph = random_mlp_graph(sizes, seed=seed)
    k, n = graph.tensor(graph.ops[1].inputs[1]).shape
    kb, nb = ceil_div(k, 8), ceil_div(n, 8)
    length, num = min(length, kb), min(num, nb)
    if (length - 1) * ceil_div(kb, length) >= kb or (num - 1) * ceil_div(nb, num) >= nb:
        length, num = 1, 1
    plan, _ = compile_graph(graph, CompileOptions(overrides={"dense1": {"cas_length": length, "cas_num": num}}))
    fast = Emulator(plan)
    assert fast.uses_column_ports
    slow = Emulator(plan)
    slow._columns = None  # force the general path
    x = random_codes(graph, 37, seed)
    t_fast, t_slow = Trace(), Trace()
    assert np.array_equal(fast.run(x, t_fast, padded=True), slow.run(x, t_slow, padded=True))
    for name in t_slow.outputs:
        assert np.array_equal(t_fast.inputs[name], t_slow.inputs[name])
        assert np.array_equal(t_fast.outputs[name], t_slow.outputs[name])
        if name in t_slow.cascade_in:
            assert np.array_equal(t_fast.cascade_in[name], t_slow.cascade_in[name])


def test_a_descriptor_that_is_not_a_column_slice_uses_the_general_path():
    from dataclasses import replace

    from nn2aie.ir.tiling import Traversal

    graph = random_mlp_graph([16, 64, 32])
    plan, _ = compile_graph(graph, CompileOptions(batch=8, overrides={"dense1": {"cas_length": 2, "cas_num": 1}}))
    sb = next(s for s in plan.shared_buffers if s.readers[0].endpoints[0].kind == "kernel" and s.tensor == "x1")
    reader = sb.readers[0]
    t = reader.tiling
    # walk the row blocks first: same elements, different order -> not a column slice any more
    reader.tiling = replace(t, tile_traversal=(Traversal(1, t.tile_traversal[1].stride, t.tile_traversal[1].wrap),
                                               Traversal(0, t.tile_traversal[0].stride, t.tile_traversal[0].wrap)))
    emulator = Emulator(plan)
    assert not emulator.uses_column_ports
    # and the general path then really executes the changed order: the result differs from the reference
    x = random_codes(graph, 16)
    assert not np.array_equal(emulator.run(x), evaluate(graph, {"x0": x})["x2"])


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"]),
       st.sampled_from(["SAT", "SAT_SYM"]), st.sampled_from([None, 4, 6]), st.booleans(), st.integers(0, 50))
def test_rounding_overflow_and_narrow_types(rounding, overflow, width, narrow, seed):
    graph = random_mlp_graph([24, 40, 12], seed=seed, out_width=width, rounding=rounding, overflow=overflow,
                             narrow=narrow)
    check(graph, CompileOptions(overrides={"dense0": {"cas_length": 3, "cas_num": 2}}), n=200, seed=seed)


def test_int16_x_int8_layer_widened_to_int16_weights():
    plan = check(random_mlp_graph([1200, 16, 8], act_bits=16), n=300)
    assert (plan.layers[0].acc, plan.layers[0].w_dtype, plan.layers[0].mmul) == ("acc64", "int16", (4, 4, 4))
    assert plan.layers[1].acc == "acc32"  # K = 16: the sum stays in 32 bits
