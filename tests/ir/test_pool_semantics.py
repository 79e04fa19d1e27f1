"""The pooling contract (ir/pool_semantics.py) against onnxruntime's MaxPool and AveragePool (the ONNX
definitions, including padding, dilations, ceil_mode and count_include_pad) on random geometries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from nn2aie.ir.pool_semantics import PoolGeometry, exact_max, exact_sum

ort = pytest.importorskip("onnxruntime")


def _ort(op: str, x_nchw: np.ndarray, **attrs) -> np.ndarray:
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_nchw.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x_nchw.astype(np.float32)})[0]


@st.composite
def geometries(draw):
    dims = draw(st.sampled_from([1, 2]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    pb = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    pe = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    spatial = tuple(draw(st.integers(k, k + 8)) for k in kernel)
    return PoolGeometry(spatial, kernel, strides, pb, pe, ceil_mode=draw(st.booleans()))


def _attrs(geo: PoolGeometry) -> dict:
    return {"kernel_shape": list(geo.kernel), "strides": list(geo.strides),
            "pads": list(geo.pads_begin) + list(geo.pads_end), "ceil_mode": int(geo.ceil_mode)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometries(), st.integers(0, 2**31 - 1))
def test_max_equals_onnxruntime(geo, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, *geo.spatial, 3))
    want = _ort("MaxPool", np.moveaxis(x, -1, 1), **_attrs(geo))
    assert np.array_equal(exact_max(x, geo), np.moveaxis(want, 1, -1).astype(np.int64))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometries(), st.integers(0, 2**31 - 1), st.booleans())
def test_average_equals_onnxruntime(geo, seed, include_pad):
    """sum / count in float64 equals onnxruntime's float32 average (small integers: both exact to float32)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, *geo.spatial, 3))
    want = _ort("AveragePool", np.moveaxis(x, -1, 1), count_include_pad=int(include_pad), **_attrs(geo))
    total, count = exact_sum(x, geo, include_pad)
    ours = (total / count[None, ..., None]).astype(np.float32)
    assert np.array_equal(ours, np.moveaxis(want, 1, -1))


def test_dilated_max_and_problems():
    geo = PoolGeometry((9, 7), (2, 2), (1, 2), (1, 0), (0, 1), dilations=(2, 1))
    x = np.random.default_rng(1).integers(-50, 50, size=(2, 9, 7, 4))
    want = _ort("MaxPool", np.moveaxis(x, -1, 1), kernel_shape=[2, 2], strides=[1, 2], pads=[1, 0, 0, 1],
                dilations=[2, 1])
    assert np.array_equal(exact_max(x, geo), np.moveaxis(want, 1, -1).astype(np.int64))
    assert "padding" in PoolGeometry((8,), (2,), (1,), (2,), (0,)).problem()
    assert "one entry" in PoolGeometry((8,), (2, 2), (1,), (0,), (0,)).problem()


def test_a_window_of_padding_only_is_not_a_pooling():
    """Dilation can step over the only real element: ONNX would give -inf; the geometry is refused instead."""
    from nn2aie.ir.pool_semantics import PoolGeometry

    geo = PoolGeometry((1,), (2,), (4,), (1,), (0,), (2,), True)
    assert geo.problem() is not None and "padding only" in geo.problem()
    assert PoolGeometry((4,), (2,), (2,), (1,), (1,), (1,)).problem() is None
