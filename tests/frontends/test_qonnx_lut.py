"""Float activation functions between Brevitas quantizers (QONNX): ``QuantIdentity -> torch.sigmoid / tanh / GELU
/ SiLU / ELU / HardSigmoid / HardSwish / exp / softplus / mish -> QuantIdentity`` compile to lookup tables whose
entries qonnx's own execution computes on every input code; the design equals qonnx (the reference) and the
Brevitas forward on >= 2000 random inputs at batch 1 and 4, and the kernels co-simulate natively."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

torch = pytest.importorskip("torch")
qnn = pytest.importorskip("brevitas.nn")
EVENTS = 2000
F = torch.nn.functional
FUNCTIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu,
             "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu, "elu": F.elu,
             "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish, "exp": torch.exp, "softplus": F.softplus,
             "mish": F.mish}


def brevitas_net(name: str, unsigned_out: bool = False):
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    w8 = {"weight_quant": Int8WeightPerTensorFixedPoint, "bias": False}
    out_quant = Uint8ActPerTensorFixedPoint if unsigned_out else Int8ActPerTensorFixedPoint

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8, 16, return_quant_tensor=True, **w8)
            self.a = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)
            self.f = qnn.QuantIdentity(act_quant=out_quant)
            self.head = qnn.QuantLinear(16, 4, **w8)
            self.o = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            x = self.a(self.fc(self.q(x)))
            return self.o(self.head(self.f(FUNCTIONS[name](x))))

    torch.manual_seed(0)
    net = Net()
    net.train()
    with torch.no_grad():
        for _ in range(3):  # calibrate the activation ranges
            net(torch.randn(32, 8) * 2)
    return net.eval()


@functools.cache
def compiled(name: str, batch: int):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    net = brevitas_net(name)
    return net, compile_loaded(load_model(export_brevitas_qonnx(net, 0, input_shape=(8,))), CompileOptions(batch=batch))


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_activations_equal_qonnx_and_brevitas(name, batch):
    net, c = compiled(name, batch)
    x = np.random.default_rng(1).normal(0, 2, (EVENTS, 8)).astype(np.float32)
    ours, ref = c.emulate(x), c.reference(x)
    with torch.no_grad():
        brevitas = net(torch.from_numpy(x)).numpy()
    assert np.array_equal(ours, ref)
    assert np.array_equal(ref, brevitas)
    luts = [op for op in c.model.graph.ops if op.attrs.get("op") == "lut"]
    assert len(luts) == 1 and np.unique(c.model.graph.tensor(luts[0].inputs[1]).data).size > 4


@pytest.mark.parametrize("name", ["gelu", "tanh", "softplus"])
def test_native_cosimulation(name):
    _, c = compiled(name, 4)
    x = np.random.default_rng(2).normal(0, 2, (8, 8)).astype(np.float32)
    report = c.native_cosim(x)
    assert len(report.kernels) >= 3 and all(k.match for k in report.kernels)


def test_a_function_of_two_values_is_refused():
    """sigmoid(x) * y of two quantized values is not a function of one value: a typed error names the node."""
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q1 = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)
            self.fc = qnn.QuantLinear(8, 8, weight_quant=Int8WeightPerTensorFixedPoint, bias=False)
            self.q2 = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)
            self.o = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            x = self.q1(x)
            return self.o(torch.sigmoid(x) * self.q2(self.fc(x)))

    with pytest.raises(UnsupportedOpError, match=r"Sigmoid.*one quantized value"):
        load_model(export_brevitas_qonnx(Net().eval(), 0, input_shape=(8,)))
