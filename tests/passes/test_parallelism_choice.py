"""Parallelism choice: fits the tile, minimal, overrides honoured or refused with a reason."""

import pytest

from nn2aie.devices import get_device
from nn2aie.errors import DoesNotFitError, IllegalConfigError
from nn2aie.kernels.dense.parallelism import tile_buffers
from nn2aie.passes.pipeline import CompileOptions, compile_graph

from helpers import random_mlp_graph


def test_every_tile_fits_and_weights_within_one_bank():
    dev = get_device("xcve2802")
    plan, _ = compile_graph(random_mlp_graph([384, 256, 200, 10]))
    for e in plan.layers:
        assert e.k_slice * e.n_slice <= dev.bank_bytes
        assert e.k_slice % e.mmul[1] == 0 and e.n_slice % e.mmul[2] == 0
        assert e.k_padded >= e.k and e.n_padded >= e.n
        assert (e.cas_length - 1) * e.k_slice < e.k and (e.cas_num - 1) * e.n_slice < e.n
        for role in ("single", "first", "middle", "last"):
            assert tile_buffers(e, dev, role, e.k_slice, e.n_slice).total <= dev.data_memory_bytes


def test_choice_is_minimal_in_tiles():
    # 384x256 int8 = 96 KB of weights: at least 6 tiles of 16 KB
    plan, _ = compile_graph(random_mlp_graph([384, 256]))
    assert plan.layers[0].tiles == 6


def test_override_is_honoured():
    plan, _ = compile_graph(random_mlp_graph([16, 64, 32, 32, 5]),
                            CompileOptions(overrides={"dense1": {"cas_length": 4, "cas_num": 2}}))
    e = plan.layer("dense1")
    assert (e.cas_length, e.cas_num, e.override) == (4, 2, True)
    assert len(plan.kernels_of("dense1")) == 8


def test_override_with_empty_slices_is_refused():
    with pytest.raises(IllegalConfigError, match="dense3"):
        compile_graph(random_mlp_graph([16, 64, 32, 32, 5]),
                      CompileOptions(overrides={"dense3": {"cas_length": 8, "cas_num": 1}}))


def test_unknown_override_layer_is_refused():
    with pytest.raises(IllegalConfigError, match="nosuchlayer"):
        compile_graph(random_mlp_graph([16, 8]), CompileOptions(overrides={"nosuchlayer": {"cas_length": 1}}))


def test_model_too_large_for_the_small_part():
    with pytest.raises(DoesNotFitError):
        compile_graph(random_mlp_graph([1024, 1024, 1024]), CompileOptions(device="xcve2302"))


def test_catalogued_only_part_is_refused():
    with pytest.raises(IllegalConfigError, match="xcvc1902"):
        compile_graph(random_mlp_graph([16, 8]), CompileOptions(device="xcvc1902"))


def test_mmul_override_is_honoured_and_kept():
    plan, _ = compile_graph(random_mlp_graph([64, 32, 16]), CompileOptions(batch=8, overrides={
        "dense0": {"mmul": "4x16x8"}, "dense1": {"mmul": [2, 8, 8], "cas_length": 2, "cas_num": 1}}))
    assert [e.mmul for e in plan.layers] == [(4, 16, 8), (2, 8, 8)]
    assert [e.mmul_fixed for e in plan.layers] == [True, True]
    assert plan.layers[0].k_slice % 16 == 0
    assert (plan.layers[1].cas_length, plan.layers[1].cas_num) == (2, 1)


@pytest.mark.parametrize("mmul,batch,needle", [
    ("4x4x4", 4, "not an aie::mmul shape for int8 x int8"),  # an int16 shape on an int8 layer
    ("8x8x8", 4, "multiple of 8, the batch is 4"),
    ("4x8", 4, "is not a shape M x K x N"),
    ("axbxc", 4, "is not a shape M x K x N"),
    ([0, 8, 8], 4, "is not a shape M x K x N"),
])
def test_bad_mmul_override_is_refused_naming_the_layer(mmul, batch, needle):
    with pytest.raises(IllegalConfigError, match="dense0") as err:
        compile_graph(random_mlp_graph([64, 32]), CompileOptions(batch=batch, overrides={"dense0": {"mmul": mmul}}))
    assert needle in str(err.value)


def test_shape_choice_uses_the_cost_model_only_when_strictly_faster():
    """int16 x int8 with a single 8-wide column block: 4x4x8 keeps one accumulator whose dependent MACs wait on
    each other, 4x8x4 splits the columns over two independent accumulators; the model prefers the latter. Where
    shapes tie (the int8 layers here), the preferred 4x8x8 stays."""
    from nn2aie.kernels.dense import cost

    plan, _ = compile_graph(random_mlp_graph([16, 64, 32, 32, 5], act_bits=16))
    last = plan.layers[-1]
    assert last.mmul == (4, 8, 4) and last.n_accumulators == 2
    chosen = cost.dense_tile_cycles(last, "single")
    last.mmul, last.m_accumulators, last.n_accumulators = (4, 4, 8), 1, 1
    assert cost.dense_tile_cycles(last, "single") > chosen
    plan8, _ = compile_graph(random_mlp_graph([16, 64, 32, 32, 5]))
    assert {e.mmul for e in plan8.layers} == {(4, 8, 8)}


@pytest.mark.parametrize("value", ["", "two", None, [2], 1.5, True, 0, -3])
def test_non_integer_rectangle_overrides_are_refused(value):
    with pytest.raises(IllegalConfigError, match="dense0.*cas_length .* is not a positive integer"):
        compile_graph(random_mlp_graph([64, 32]), CompileOptions(overrides={"dense0": {"cas_length": value}}))


def test_too_large_layer_names_the_memory_limit_not_empty_slices():
    with pytest.raises(DoesNotFitError, match=r"with \d+x8 tiles, \d+ B of weights per tile exceed the 16384 B"):
        compile_graph(random_mlp_graph([4096, 4096]))
