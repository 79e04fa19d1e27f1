"""hls4ml table activations through the nn2aie backend plugin: ``sigmoid`` / ``tanh`` (torch models) and
``softplus`` / ``softsign`` / ``selu`` (Keras 3 models) Activation layers become
lookup tables that hls4ml's own C++ (nnet_activation.h, with the layer's types and table size) fills on every input
code, so ``predict`` equals hls4ml's Vitis C simulation exactly (>= 1000 inputs that hit the input type's ties and
overflow)."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # as tests/frontends/test_keras3_hls4ml.py: before keras is imported

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

hls4ml = pytest.importorskip("hls4ml")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_hls4ml_plugin as plugin  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
ACTIVATIONS = {"sigmoid": (torch.nn.Sigmoid, "ap_ufixed<8,0,AP_RND,AP_SAT>"),
               "tanh": (torch.nn.Tanh, "ap_fixed<8,1,AP_RND_CONV,AP_SAT>"),
               "tanh_trn": (torch.nn.Tanh, "ap_fixed<8,1,AP_TRN,AP_SAT>")}
CASE = plugin.Case("act", (16, 32, 16, 5), "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", ("", ""), "ap_fixed<16,6>")
DENSE_T = "ap_fixed<10,4,AP_RND,AP_SAT>"  # the activations' input: 10 bits (a 1024-code table)


def convert(name: str, backend: str, out_dir: str):
    act, act_t = ACTIVATIONS[name]
    model = plugin.torch_mlp(CASE.sizes, 3, act=act)
    cfg = hls4ml.utils.config_from_pytorch_model(model, input_shape=(CASE.sizes[0],), granularity="name",
                                                 backend=backend)
    layers = cfg["LayerName"]
    layers["input_1"]["Precision"]["result"] = CASE.x_t
    for i in range(3):
        last = i == 2
        layers[f"fc{i + 1}"]["Precision"].update(weight=plugin.WEIGHT_T, bias=plugin.BIAS_T, accum=plugin.WIDE_T,
                                                 result=CASE.out_t if last else DENSE_T)
        if not last:
            layers[f"relu{i + 1}"]["Precision"]["result"] = act_t
    return hls4ml.converters.convert_from_pytorch_model(model, output_dir=out_dir, project_name="act",
                                                        backend=backend, io_type="io_parallel", hls_config=cfg)


@needs_gxx
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_table_activations_equal_hls4ml_csim(name, tmp_path):
    vitis = convert(name, "Vitis", str(tmp_path / "vitis"))
    vitis.compile()
    ours = convert(name, "nn2aie", str(tmp_path / "aie"))
    ours.compile()
    x = plugin.make_inputs(CASE)
    want, got = vitis.predict(x), ours.predict(x)
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} outputs differ, first at {bad[0].tolist()}"
    assert len(np.unique(got)) > 20


def keras_convert(act: str, backend: str, out_dir: str):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, name="d1"),
                              keras.layers.Activation(act, name="a1"), keras.layers.Dense(4, name="d2")])
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    layers = cfg["LayerName"]
    for key in layers:
        layers[key].setdefault("Precision", {})
    layers[next(iter(layers))]["Precision"]["result"] = CASE.x_t
    for name, result in (("d1", DENSE_T), ("d2", CASE.out_t)):
        layers[name]["Precision"].update(weight=plugin.WEIGHT_T, bias=plugin.BIAS_T, accum=plugin.WIDE_T,
                                         result=result)
    layers["a1"]["Precision"]["result"] = "ap_fixed<8,2,AP_RND,AP_SAT>"
    return hls4ml.converters.convert_from_keras_model(model, output_dir=out_dir, backend=backend,
                                                      io_type="io_parallel", hls_config=cfg)


@needs_gxx
@pytest.mark.parametrize("act", ["softplus", "softsign", "selu"])
def test_keras_table_activations_equal_hls4ml_csim(act, tmp_path):
    vitis = keras_convert(act, "Vitis", str(tmp_path / "vitis"))
    vitis.compile()
    ours = keras_convert(act, "nn2aie", str(tmp_path / "aie"))
    ours.compile()
    x = np.random.default_rng(0).normal(0, 3, (1200, 16))
    want, got = vitis.predict(x), ours.predict(x)
    assert np.array_equal(got, want) and len(np.unique(got)) > 20
