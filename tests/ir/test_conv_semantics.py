"""The convolution contract (ir/conv_semantics.py) against two independent oracles: torch's conv1d / conv2d
in float64 (exact for these integer codes) over random geometries, and onnxruntime's Conv for the ONNX attribute
rules (auto_pad, pads, strides, dilations, group)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from nn2aie.ir.conv_semantics import ConvGeometry, exact_conv

torch = pytest.importorskip("torch")


@st.composite
def geometries(draw):
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    channels = groups * draw(st.integers(1, 3))
    filters = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    pb = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    pe = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 9)) for k, d in zip(kernel, dil, strict=True))
    return ConvGeometry(spatial, channels, kernel, filters, strides, dil, pb, pe, groups)


def torch_conv(x: np.ndarray, w: np.ndarray, geo: ConvGeometry, pad_code: int) -> np.ndarray:
    """The oracle: NCHW torch convolution of the explicitly padded input, float64 (exact below 2**53)."""
    n = len(geo.spatial)
    pad = [(0, 0)] + list(zip(geo.pads_begin, geo.pads_end, strict=True)) + [(0, 0)]
    xp = np.pad(x, pad, constant_values=pad_code)
    xt = torch.from_numpy(np.moveaxis(xp, -1, 1).astype(np.float64))
    wt = torch.from_numpy(np.moveaxis(w, (-1, -2), (0, 1)).astype(np.float64))  # [M, C/g, *kernel]
    fn = torch.nn.functional.conv1d if n == 1 else torch.nn.functional.conv2d
    y = fn(xt, wt, stride=geo.strides, dilation=geo.dilations, groups=geo.groups)
    return np.moveaxis(y.numpy(), 1, -1).astype(np.int64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometries(), st.integers(0, 2**31 - 1), st.integers(-3, 3))
def test_exact_conv_equals_torch(geo, seed, pad_code):
    assert geo.problem() is None
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(3, *geo.spatial, geo.channels))
    w = rng.integers(-128, 128, size=(*geo.kernel, geo.channels // geo.groups, geo.filters))
    ours = exact_conv(x, w, geo, pad_code)
    assert ours.shape == (3, *geo.out_spatial, geo.filters)
    assert np.array_equal(ours, torch_conv(x, w, geo, pad_code))


def _ort_conv(x_nchw: np.ndarray, w_oihw: np.ndarray, **attrs) -> np.ndarray:
    import onnxruntime as ort

    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_nchw.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w_oihw.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x_nchw.astype(np.float32)})[0]


@pytest.mark.parametrize("attrs", [
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, {"auto_pad": "SAME_LOWER", "strides": [2, 1]},
    {"auto_pad": "VALID", "dilations": [2, 1]}, {"pads": [1, 0, 2, 1], "strides": [1, 2]},
    {"pads": [1, 1, 1, 1], "group": 4}, {"auto_pad": "SAME_UPPER", "group": 2},
    {"pads": [0, 1, 0, 1], "dilations": [2, 2], "group": 2},
])
def test_onnx_attribute_rules_equal_onnxruntime(attrs):
    rng = np.random.default_rng(7)
    c, m, kh, kw, h, w_ = 4, 8, 3, 2, 9, 7
    groups = attrs.get("group", 1)
    x = rng.integers(-20, 20, size=(2, c, h, w_)).astype(np.float32)
    w = rng.integers(-20, 20, size=(m, c // groups, kh, kw)).astype(np.float32)
    want = _ort_conv(x, w, kernel_shape=[kh, kw], **attrs)
    geo = ConvGeometry.from_onnx((h, w_), c, (kh, kw), m, attrs.get("strides"), attrs.get("dilations"),
                                 attrs.get("pads"), attrs.get("auto_pad", "NOTSET"), groups)
    ours = exact_conv(np.moveaxis(x, 1, -1).astype(np.int64), np.moveaxis(w, (0, 1), (-1, -2)).astype(np.int64), geo)
    assert np.array_equal(np.moveaxis(ours, -1, 1), want.astype(np.int64))


def test_problems_are_named():
    base = dict(spatial=(8,), channels=4, kernel=(3,), filters=4, strides=(1,), dilations=(1,), pads_begin=(0,),
                pads_end=(0,))
    assert ConvGeometry(**base).problem() is None
    assert "groups" in ConvGeometry(**{**base, "groups": 3}).problem()
    assert "larger than the padded input" in ConvGeometry(**{**base, "spatial": (2,)}).problem()
    assert "one entry per spatial axis" in ConvGeometry(**{**base, "strides": (1, 1)}).problem()
    assert "not smaller than the kernel" in ConvGeometry(**{**base, "pads_begin": (3,)}).problem()
    with pytest.raises(ValueError, match="auto_pad"):
        ConvGeometry.from_onnx((8,), 4, (3,), 4, auto_pad="SAME")


def test_conv_flatten_dense_in_channels_last_equals_onnxruntime():
    """Conv -> Flatten -> MatMul as ONNX (channels first) == the channels-last contract: exact_conv on NHWC, the
    channels-last flatten, and the Dense's weight rows permuted (dense_rows_for_nhwc): no transpose on chip."""
    import onnxruntime as ort

    from nn2aie.ir.conv_semantics import dense_rows_for_nhwc, weights_from_onnx

    rng = np.random.default_rng(3)
    c, m, h, w_, n = 3, 5, 6, 7, 4
    x = rng.integers(-30, 30, size=(4, c, h, w_)).astype(np.float32)
    wc = rng.integers(-20, 20, size=(m, c, 3, 3)).astype(np.float32)
    geo = ConvGeometry.from_onnx((h, w_), c, (3, 3), m, strides=[1, 2], pads=[1, 0, 1, 1])
    flat = m * int(np.prod(geo.out_spatial))
    wd = rng.integers(-5, 5, size=(flat, n)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "wc"], ["y"], kernel_shape=[3, 3], strides=[1, 2], pads=[1, 0, 1, 1]),
             helper.make_node("Flatten", ["y"], ["f"], axis=1), helper.make_node("MatMul", ["f", "wd"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(wc, "wc"), numpy_helper.from_array(wd, "wd")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    acc = exact_conv(np.moveaxis(x, 1, -1).astype(np.int64), weights_from_onnx(wc).astype(np.int64), geo)
    ours = acc.reshape(acc.shape[0], -1) @ dense_rows_for_nhwc(wd, geo.out_spatial, m).astype(np.int64)
    assert np.array_equal(ours, want.astype(np.int64))
