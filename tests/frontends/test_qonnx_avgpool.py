"""Average pooling in QONNX models from Brevitas: ``TruncAvgPool2d`` (exported as ``AveragePool -> Trunc``: the
window mean put back on the sum's grid, then a power-of-two truncation to the output bit width) and a float
``avg_pool2d`` followed by a quantizer (``AveragePool -> Quant``). Both run on the tiles as the exact window sum
(a depthwise conv of unit weights) whose epilogue is read off qonnx's own execution of the pool's division and
the Trunc / Quant on every reachable sum. The compiled design must equal qonnx (the reference) and the Brevitas
forward on >= 500 random images at batch 1 and 4, and every kernel must co-simulate natively."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

torch = pytest.importorskip("torch")
qnn = pytest.importorskip("brevitas.nn")
EVENTS = 500


def brevitas_pooled(kind: str):
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    w8 = {"weight_quant": Int8WeightPerTensorFixedPoint, "bias": False}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.c = qnn.QuantConv2d(3, 16, 3, padding=1, **w8)
            self.r = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            if kind == "trunc":
                self.p1 = qnn.TruncAvgPool2d(kernel_size=2, stride=2, bit_width=8)
                self.p2 = qnn.TruncAvgPool2d(kernel_size=4, stride=4, bit_width=6)  # 16 taps, 12 -> 6 bits
            else:
                self.qp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(16 * (1 if kind == "trunc" else 16), 4, **w8)
            self.o = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            x = self.r(self.c(self.q(x)))
            if kind == "trunc":
                x = self.p2(self.p1(x))
            else:  # a float 3x3 / stride 2 pool (9 taps: not a power of two), then its own quantizer
                x = x.value if hasattr(x, "value") else x  # a QuantTensor in torch, a tensor while exporting
                x = self.qp(torch.nn.functional.avg_pool2d(x, 3, stride=2, padding=1))
            return self.o(self.fc(torch.flatten(x, 1)))

    torch.manual_seed(1)
    net = Net()
    net.train()
    with torch.no_grad():
        for _ in range(3):  # calibrate the activation ranges
            net(torch.rand(8, 3, 8, 8))
    return net.eval()


@functools.cache
def compiled(kind: str, batch: int):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    net = brevitas_pooled(kind)
    return net, compile_loaded(load_model(export_brevitas_qonnx(net, 0, input_shape=(3, 8, 8))),
                               CompileOptions(batch=batch))


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("kind", ["trunc", "float_pool_quant"])
def test_average_pools_equal_qonnx_and_brevitas(kind, batch):
    net, c = compiled(kind, batch)
    x = np.random.default_rng(3).uniform(-1.0, 1.5, (EVENTS, 3, 8, 8)).astype(np.float32)
    ours, ref = c.emulate(x), c.reference(x)
    with torch.no_grad():
        brevitas = net(torch.from_numpy(x)).numpy()
    assert np.array_equal(ours, ref)
    assert np.array_equal(ref, brevitas)
    assert np.unique(ref).size > 20
    pools = [op for op in c.model.graph.ops if op.kind == "conv" and "requant_table" in op.attrs]
    assert len(pools) == (2 if kind == "trunc" else 1)
    assert all(("Trunc" if kind == "trunc" else "Quant") in op.attrs["requant_table"]["source"] for op in pools)
    report = c.native_cosim(x[:2 * batch])
    assert report.kernels and all(k.match for k in report.kernels)


def test_trunc_with_a_float_output_scale_is_refused():
    """A Trunc whose output scale is not a power of two: a typed error naming the node."""
    import onnx
    from onnx import numpy_helper

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    model = export_brevitas_qonnx(brevitas_pooled("trunc"), 0, input_shape=(3, 8, 8))
    trunc = next(n for n in model.graph.node if n.op_type == "Trunc")
    inits = {i.name: i for i in model.graph.initializer}
    scale = inits[trunc.input[4]]
    scale.CopyFrom(numpy_helper.from_array(np.asarray(numpy_helper.to_array(scale) * 0.75, np.float32),
                                           scale.name))
    with pytest.raises(UnsupportedQuantizationError, match="Trunc.*not a power-of-two truncation"):
        load_model(onnx.ModelProto.FromString(model.SerializeToString()))
