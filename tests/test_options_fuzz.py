"""Options and config files are validated up front: random config JSON and option values either compile or are
refused with a typed nn2aie error naming the option or layer (never another exception)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn2aie.api import compile_loaded
from nn2aie.cli import _options
from nn2aie.errors import Nn2aieError
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model

LAYERS = ["fc0_matmul", "fc1_matmul", "fc2_matmul", "fc3_matmul"]
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(allow_nan=True),
                          st.text(max_size=8), st.sampled_from(["4x8x8", "4x16x8", "2x8x8", "8x8x8", "4x4x4", "x"]))
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_layer_override = st.dictionaries(st.sampled_from(["cas_length", "cas_num", "mmul", "tiles"]),
                                  st.one_of(st.integers(-2, 40), _json_scalars, _json), max_size=3)
_configs = st.one_of(
    _json,
    st.fixed_dictionaries({"layers": st.dictionaries(st.sampled_from(LAYERS + ["nope"]), _layer_override,
                                                     max_size=3)}),
    st.fixed_dictionaries({"layers": _json}),
)


OUTCOMES: list[str] = []


@pytest.fixture(scope="module")
def jet():
    return load_model(make_qdq_mlp([16, 64, 32, 32, 5], seed=3))


@settings(max_examples=60, deadline=None, derandomize=True,  # reproducible: CI must not depend on the draw
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=_configs, batch=st.sampled_from([4, 8, 16]) | st.integers(-4, 40),
       plio=st.sampled_from([32, 64, 128, 96]),
       pl_freq=st.none() | st.floats(-10, 2000) | st.sampled_from([float("nan"), float("inf")]),
       max_weight=st.none() | st.integers(-1, 100000),
       parallel=st.lists(st.text(max_size=12) | st.sampled_from(["fc1_matmul=1x2", "fc0_matmul=2x1"]), max_size=2))
def test_random_options_compile_or_raise_typed_errors(jet, tmp_path, config, batch, plio, pl_freq, max_weight,
                                                      parallel):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    try:
        options = _options("xcve2802", batch, plio, pl_freq, max_weight, tuple(parallel), str(path))
        compiled = compile_loaded(jet, options)
    except Nn2aieError as exc:
        assert exc.where and exc.reason, exc
        OUTCOMES.append(type(exc).__name__)
        return
    OUTCOMES.append("compiled")
    assert compiled.plan.batch == batch and all(e.tiles >= 1 for e in compiled.plan.layers)
    assert pl_freq is None or 0 < pl_freq <= 625  # a PL clock above half the AIE clock (or NaN) is refused


def test_the_random_options_reached_both_outcomes():
    """Guards the test above against drawing only refusals (it runs first in this module)."""
    assert "compiled" in OUTCOMES and "IllegalConfigError" in OUTCOMES, OUTCOMES
