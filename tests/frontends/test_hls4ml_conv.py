"""A small Keras 3 CNN through hls4ml into the nn2aie backend plugin: Conv2D ('same' and 'valid', strided), ReLU,
MaxPooling2D, Conv1D on a time series, Flatten, Dense. The model is converted twice with the same explicit
precisions -- once with ``backend='nn2aie'``, once with hls4ml's Vitis backend, whose ``compile()`` builds the C
simulation with g++ -- and ``predict`` must agree exactly on >= 500 inputs (hls4ml computes each conv output pixel
as a Dense over its window in accum_t, then the result cast; nn2aie's conv is that dense over the im2col rows)."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere

import shutil  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
hls4ml = pytest.importorskip("hls4ml")

from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.hls4ml_plugin.backend import compiled_model  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
X_T, W_T, B_T, WIDE_T = "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<8,2>", "ap_fixed<16,6>", "ap_fixed<32,16>"
RELU_T, OUT_T = "ap_ufixed<8,3,AP_RND,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
EVENTS = 600


def cnn2d():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((8, 8, 3), name="inp"),
        keras.layers.Conv2D(16, 3, padding="same", name="c1", bias_initializer="random_normal"),
        keras.layers.ReLU(name="r1"),
        keras.layers.MaxPooling2D(2, name="p1"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c2", activation="relu",
                            bias_initializer="random_normal"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(5, name="fc", bias_initializer="random_normal"),
    ], name="cnn2d")


def cnn1d():
    keras.utils.set_random_seed(4)
    return keras.Sequential([
        keras.Input((32, 4), name="inp"),
        keras.layers.Conv1D(16, 5, padding="same", name="c1", activation="relu", bias_initializer="random_normal"),
        keras.layers.MaxPooling1D(2, name="p1"),
        keras.layers.Conv1D(16, 3, strides=2, name="c2", bias_initializer="random_normal"),
        keras.layers.ReLU(name="r2"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(3, name="fc", bias_initializer="random_normal"),
    ], name="cnn1d")


def ds_block():
    """A depthwise-separable block as DS-CNN has them: DepthwiseConv2D (hls4ml DepthwiseConv2D), a 1x1 Conv2D
    (hls4ml PointwiseConv2D), ReLUs, a global average pool and a Dense head."""
    keras.utils.set_random_seed(5)
    return keras.Sequential([
        keras.Input((6, 5, 8), name="inp"),
        keras.layers.DepthwiseConv2D(3, padding="same", name="c1", bias_initializer="random_normal"),
        keras.layers.ReLU(name="r1"),
        keras.layers.Conv2D(16, 1, name="c2", activation="relu", bias_initializer="random_normal"),
        keras.layers.MaxPooling2D((2, 1), name="p1"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(4, name="fc", bias_initializer="random_normal"),
    ], name="ds_block")


def config(model, backend: str) -> dict:
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    for name, layer in cfg["LayerName"].items():
        prec = layer.setdefault("Precision", {})
        if name == "inp":
            prec["result"] = X_T
        elif name.startswith(("c", "fc")) and not name.endswith(("_relu", "_linear")):
            prec.update(weight=W_T, bias=B_T, accum=WIDE_T, result=OUT_T if name == "fc" else WIDE_T)
        elif isinstance(prec, dict):
            prec["result"] = RELU_T if "r" in name or name.endswith("_relu") else prec.get("result", RELU_T)
    for name in ("p1", "flat"):
        cfg["LayerName"][name]["Precision"] = {"result": RELU_T}
    return cfg


@needs_gxx
@pytest.mark.parametrize("build", [cnn2d, cnn1d, ds_block], ids=["cnn2d", "cnn1d", "depthwise_separable"])
def test_keras_cnn_predict_equals_hls4ml_csim(build, tmp_path):
    model = build()
    vitis = hls4ml.converters.convert_from_keras_model(model, hls_config=config(model, "Vitis"), backend="Vitis",
                                                       output_dir=str(tmp_path / "vitis"), io_type="io_parallel")
    ours = hls4ml.converters.convert_from_keras_model(model, hls_config=config(model, "nn2aie"), backend="nn2aie",
                                                      output_dir=str(tmp_path / "aie"), io_type="io_parallel")
    vitis.compile()
    ours.compile()
    # batch 1 too (the lowest latency): the same model through the plugin with Batch = 1
    single = hls4ml.converters.convert_from_keras_model(model, hls_config=config(model, "nn2aie"), backend="nn2aie",
                                                        output_dir=str(tmp_path / "aie1"), io_type="io_parallel",
                                                        batch=1)
    single.compile()
    assert compiled_model(single).plan.batch == 1 and compiled_model(ours).plan.batch == 4
    ops = graph_from_hls4ml(ours).ops
    kinds = [op.kind for op in ops]
    assert kinds.count("conv") == 2 and "pool" in kinds
    if build is ds_block:
        assert ops[0].attrs["groups"] == 8  # the depthwise convolution
    shape = model.input_shape[1:]
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.normal(0, 2.0, size=(EVENTS // 2, *shape)),  # saturating inputs too
                        rng.integers(-64, 64, size=(EVENTS // 2, *shape)) * 2.0 ** -4])  # on the grid, ties
    want = np.asarray(vitis.predict(np.ascontiguousarray(x)))
    got = np.asarray(ours.predict(np.ascontiguousarray(x)))
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} outputs differ, first at {bad[0].tolist()}"
    assert np.array_equal(np.asarray(single.predict(np.ascontiguousarray(x))), want)
    assert np.unique(want).size > 20
