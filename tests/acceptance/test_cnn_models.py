"""Convolutional models of the field built and quantized in the tests (issue 14), compiled at batch 1 and 4, checked
bit for bit against their source framework's own execution on 500 random inputs, with native co-simulation of
every kernel: FINN's CIFAR-10 CNV (``brevitas_examples.bnn_pynq``, QONNX), a Brevitas CNN with BatchNorm2d and max
pooling (QONNX), MLPerf Tiny's DS-CNN keyword spotter and ResNet-8 (QONNX).
The onnxruntime-quantized CNNs (2-D, 1-D, residual) are in tests/frontends/test_onnx_qdq_conv.py."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from nn2aie.api import compile_loaded
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

pytest.importorskip("brevitas_examples")
EVENTS = 500


@functools.cache
def cnv_model(name: str) -> bytes:
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_finn_cnv

    return export_brevitas_qonnx(make_finn_cnv(name, 3), 0, input_shape=(3, 32, 32)).SerializeToString()


@functools.cache
def cnv_compiled(name: str, batch: int = 4):
    return compile_loaded(load_model(onnx.load_from_string(cnv_model(name))), CompileOptions(batch=batch))


def cifar_like(events: int, seed: int = 0) -> np.ndarray:
    """Images in [-0.2, 1.2] (the 2x - 1 input scaling then saturates both ways), a tenth of the pixels exactly 0,
    0.5 (the tie of 2x - 1 at the quantizer) or 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, size=(events, 3, 32, 32)).astype(np.float32)
    pick = rng.random(x.shape) < 0.1
    x[pick] = rng.choice(np.array([0.0, 0.5, 1.0], dtype=np.float32), size=int(pick.sum()))
    return x


@pytest.mark.parametrize("batch", [1, 4])
def test_finn_cnv_bit_exact_against_qonnx(batch):
    c = cnv_compiled("cnv_2w2a", batch)
    x = cifar_like(EVENTS)
    ours, ref = c.emulate(x), c.reference(x)
    assert ours.shape == ref.shape == (EVENTS, 10)
    assert np.array_equal(ours, ref)
    assert np.unique(ref).size > 10  # the outputs vary: thresholds and pools decide something
    layers = c.summary()["layers"]
    convs = [layer for layer in layers if layer.get("op") == "conv"]
    assert len(convs) == 6 and sum(layer.get("op") == "max_pool" for layer in layers) == 2
    assert any(layer["slices"] > 1 for layer in convs)  # input-channel cascades
    assert all(layer["requant"]["kind"] in ("table", "multiplier") for layer in convs)  # BatchNorm read off qonnx
    assert "x * 2" in c.summary()["host_stages"]["input x"] and "channels last" in c.summary()["host_stages"][
        "input x"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnv_2w2a", "cnv_1w1a"])
def test_finn_cnv_native_cosim_every_kernel(name):
    c = cnv_compiled(name)
    x = cifar_like(8, seed=1)
    assert np.array_equal(c.emulate(x), c.reference(x))
    report = c.native_cosim(x)
    assert report.kernels and all(k.match for k in report.kernels)
    assert len(report.kernels) == sum(1 for k in c.plan.kernels)


def brevitas_cnn():
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            w = {"weight_quant": Int8WeightPerTensorFixedPoint, "bias": False}
            self.qin = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, 32, 3, padding=1, **w)
            self.bn1 = torch.nn.BatchNorm2d(32)
            self.r1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(32, 32, 3, stride=2, **w)
            self.r2 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(32 * 3 * 3, 10, **w)
            self.qout = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(self.r1(self.bn1(self.c1(self.qin(x)))), 2)
            return self.qout(self.fc(torch.flatten(self.r2(self.c2(x)), 1)))

    net = Net()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(-1.0, 1.0)
    return export_brevitas_qonnx(net.eval(), 0, input_shape=(3, 16, 16))


@pytest.mark.parametrize("batch", [1, 4])
def test_brevitas_cnn_with_batchnorm_and_pooling(batch):
    c = compile_loaded(load_model(brevitas_cnn()), CompileOptions(batch=batch))
    x = np.random.default_rng(2).uniform(-1, 1, (EVENTS, 3, 16, 16)).astype(np.float32)
    ours, ref = c.emulate(x), c.reference(x)
    assert np.array_equal(ours, ref)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


@functools.cache
def ds_cnn_compiled(batch: int = 4):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_ds_cnn

    model = export_brevitas_qonnx(make_ds_cnn(0), 0, input_shape=(1, 49, 10))
    return compile_loaded(load_model(model), CompileOptions(batch=batch))


def mfcc_like(events: int, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.6, (events, 1, 49, 10)).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 4])
def test_ds_cnn_keyword_spotter_bit_exact_against_qonnx(batch):
    """MLPerf Tiny's DS-CNN: 10x4 stride-2 stem, four depthwise-separable blocks (depthwise 3x3 as a grouped conv),
    BatchNorm2d everywhere, a 25 x 5 average pool (a mean over 125: a multiplier), a dense head."""
    c = ds_cnn_compiled(batch)
    x = mfcc_like(EVENTS)
    ours, ref = c.emulate(x), c.reference(x)
    assert np.array_equal(ours, ref)
    assert np.unique(ref).size > 5
    layers = c.summary()["layers"]
    assert sum(layer.get("groups") == 64 for layer in layers) == 4  # the depthwise convolutions
    assert any(layer.get("method") == "multiplier" for layer in layers)  # the mean over 125


@pytest.mark.slow
def test_ds_cnn_native_cosim_every_kernel():
    c = ds_cnn_compiled()
    x = mfcc_like(8, seed=5)
    report = c.native_cosim(x)
    assert report.kernels and all(k.match for k in report.kernels)


@functools.cache
def resnet8_compiled(batch: int):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_resnet8

    model = export_brevitas_qonnx(make_resnet8(0), 0, input_shape=(3, 32, 32))
    return compile_loaded(load_model(model), CompileOptions(batch=batch))


@pytest.mark.parametrize("batch", [1, 4])
def test_resnet8_bit_exact_against_qonnx(batch):
    """MLPerf Tiny's ResNet-8 at CIFAR-10 size (32 x 32 x 3; 16 / 32 / 64 filters, three residual Adds, two 1x1
    strided shortcuts, BatchNorm everywhere, a global mean, a dense head). At batch 4 the first stacks share
    the batch out over tiles (event groups), and the 32 x 32 x 16 tensors between them, each written and read by
    more ports than a memory tile has DMA channels, are split over memory tiles by events."""
    c = resnet8_compiled(batch)
    x = cifar_like(EVENTS, seed=6)
    ours, ref = c.emulate(x), c.reference(x)
    assert ours.shape == ref.shape == (EVENTS, 10)
    assert np.array_equal(ours, ref)
    assert np.unique(ref).size > 10
    layers = c.summary()["layers"]
    assert sum(layer.get("op") == "conv" for layer in layers) == 9
    assert sum(layer.get("op") == "add" for layer in layers) == 3
    split = [sb for sb in c.plan.shared_buffers if sb.first_event > 0]
    assert bool(split) == (batch > 1)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)
    assert len(report.kernels) == len(c.plan.kernels)
