"""ScaledType: float32 scales and zero points; host quantisation against QONNX's own Quant, JSON round trip."""

from __future__ import annotations

import zlib
from fractions import Fraction

import numpy as np
import pytest

from nn2aie.ir.types import ScaledType, type_from_json
from nn2aie.numerics import QONNX_TO_IR_ROUNDING


def test_json_round_trip_and_description():
    for t in (ScaledType(8, True, (float(np.float32(0.1)),)),
              ScaledType(4, False, (float(np.float32(0.3)),), (7,), "TRN", "SAT", False),
              ScaledType(8, True, tuple(float(np.float32(s)) for s in (0.01, 0.02, 0.5)), narrow=True)):
        assert type_from_json(t.to_json()) == t
    per_channel = ScaledType(8, True, (0.5, 0.25, 0.125))
    assert per_channel.channels == 3 and per_channel.scale_of(1) == Fraction(1, 4)
    assert "3 scales" in per_channel.describe()
    assert ScaledType(8, False, (0.5,), (3,)).describe() == "scaled<u8,x0.5,zp=3,RND_CONV,SAT>"


@pytest.mark.parametrize("scale, zero_point", [((0.0,), (0,)), ((0.1,), (0,)), ((-1.0,), (0,)),
                                               ((float("inf"),), (0,)), ((0.5, 0.25), (1, 2, 3))])
def test_invalid_scales_are_rejected(scale, zero_point):
    with pytest.raises(ValueError):  # 0.1 as a Python float is not a float32 value
        ScaledType(8, True, scale, zero_point)


@pytest.mark.parametrize("mode", sorted(QONNX_TO_IR_ROUNDING))
@pytest.mark.parametrize("signed, narrow, zero_point", [(True, False, 0), (True, True, -3), (False, False, 17)])
def test_host_quantisation_is_qonnx_quant(mode, signed, narrow, zero_point):
    pytest.importorskip("qonnx")
    from qonnx.custom_op.general.quant import quant

    rng = np.random.default_rng(zlib.crc32(f"{mode}{signed}{zero_point}".encode()))
    scale = np.float32(rng.uniform(0.003, 0.7))
    t = ScaledType(6, signed, (float(scale),), (zero_point,), QONNX_TO_IR_ROUNDING[mode], "SAT", narrow)
    x = (rng.standard_normal(20_000) * rng.choice([0.01, 1.0, 10.0, 1e3], 20_000)).astype(np.float32)
    x[:400] = (rng.integers(-80, 80, 400) + 0.5).astype(np.float32) * scale  # ties, as far as float32 allows
    codes = t.quantize_float32(x)
    want = quant(x, scale, np.float32(zero_point), np.float32(6), int(signed), int(narrow), mode)
    assert np.array_equal(t.dequantize_float32(codes), want.astype(np.float32))
    assert codes.min() == t.min_code and codes.max() == t.max_code  # saturation both ways
    lo, hi = t.real_bounds()
    assert (lo, hi) == ((t.min_code - zero_point) * float(scale), (t.max_code - zero_point) * float(scale))
