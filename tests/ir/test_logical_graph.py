"""Logical IR: verify() catches broken graphs; JSON round trip is lossless."""

import json

import numpy as np
import pytest

from nn2aie.errors import InternalCheckError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph
from nn2aie.ir.types import FixedType, FloatType, type_from_json

from helpers import random_codes, random_mlp_graph


def test_json_round_trip_keeps_types_data_and_results():
    g = random_mlp_graph([16, 24, 5], out_width=6, rounding="TRN", narrow=True)
    text = json.dumps(g.to_json())
    g2 = Graph.from_json(json.loads(text))
    g2.verify()
    assert g2.to_json() == g.to_json()
    x = random_codes(g, 50)
    assert np.array_equal(evaluate(g, {"x0": x})["x2"], evaluate(g2, {"x0": x})["x2"])


def test_type_codes_and_json():
    t = FixedType(4, 2, signed=True, narrow=True)
    assert (t.min_code, t.max_code, t.container) == (-7, 7, "int8")
    u = FixedType(8, 0, signed=False, narrow=True)
    assert (u.min_code, u.max_code, u.container) == (0, 254, "uint8")
    assert type_from_json(FloatType().to_json()) == FloatType()
    assert type_from_json(t.to_json()) == t


@pytest.mark.parametrize("breakage, message", [
    (lambda g: g.ops.reverse(), "before it is produced"),
    (lambda g: g.tensors["w0"].__setattr__("data", g.tensors["w0"].data[:, :3]), "weights"),
    (lambda g: g.tensors["w0"].data.__setitem__((0, 0), 300), "outside the range"),
    (lambda g: g.ops[0].attrs.__setitem__("activation", "gelu"), "activation"),
    (lambda g: g.outputs.__setitem__(0, "nowhere"), "never produced"),
])
def test_verify_catches(breakage, message):
    g = random_mlp_graph([16, 24, 5])
    breakage(g)
    with pytest.raises(InternalCheckError, match=message):
        g.verify()
