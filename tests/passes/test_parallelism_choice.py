"""Parallelism choice: fits the tile, minimal, overrides honoured or refused with a reason."""

import pytest

from nn2aie.devices import get_device
from nn2aie.errors import DoesNotFitError, IllegalConfigError
from nn2aie.passes.parallelism import tile_buffers
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
