"""LayerNormalization between quantizers in ONNX QDQ (onnx.helper models; a torch block quantized by onnxruntime)
and QONNX (Brevitas: QuantIdentity -> nn.LayerNorm -> QuantIdentity). The sources compute the layer norm in float;
nn2aie computes the integer algorithm of docs/numerics.md ("LayerNorm"). The emulated design must equal nn2aie's
logical model exactly and co-simulate natively; against the source at most 0.1 % of the outputs may differ, each
by one code (benchmarks/layernorm_mismatch.py reports the measured table)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_onnx_qdq_lut as lut  # noqa: E402
from test_softmax_frontends import check_against_source  # noqa: E402

EVENTS = 2000


def ln_body(n: int, seed: int, bias: bool = True, epsilon: float = 1e-5):
    rng = np.random.default_rng(seed)

    def body(m: lut.Model, x: str) -> str:
        m.inits.append(numpy_helper.from_array(rng.uniform(0.5, 1.5, n).astype(np.float32), "gamma"))
        inputs = [x, "gamma"]
        if bias:
            m.inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, n).astype(np.float32), "beta"))
            inputs.append("beta")
        return m.node("LayerNormalization", *inputs, axis=-1, epsilon=epsilon)

    return body


@pytest.mark.parametrize("n, out_type, out_frac", [(8, TensorProto.INT8, 5), (32, TensorProto.INT8, 4),
                                                   (48, TensorProto.UINT8, 5), (64, TensorProto.INT16, 11)])
@pytest.mark.parametrize("batch", [1, 4])
def test_qdq_layernorm(n, out_type, out_frac, batch, monkeypatch):
    monkeypatch.setattr(lut, "WIDTH", n)
    model = lut.Model(in_frac=4, out_frac=out_frac, out_type=out_type).build(ln_body(n, n, bias=n != 8))
    c = compile_loaded(load_model(model), CompileOptions(batch=batch))
    assert [op.kind for op in c.model.graph.ops] == ["layernorm"]
    x = np.random.default_rng(n).uniform(-8, 8, (EVENTS, n)).astype(np.float32)
    fraction, worst = check_against_source(c, x, 2.0 ** -out_frac)
    assert worst <= 1 and fraction <= 1e-3, (fraction, worst)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


def test_onnxruntime_quantized_block_with_layernorm():
    """Linear -> LayerNorm -> GELU -> Linear, quantized by onnxruntime (int8 activations, float scales and zero
    points; the GEMMs and the layer norm quantized, GELU's Erf pattern left in float between them): dense, the
    layer norm, GELU as a table, dense."""
    import tempfile

    torch = pytest.importorskip("torch")
    from onnxruntime import quantization as q

    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 16))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        torch.onnx.export(net.eval(), torch.rand(1, 16), str(src), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False, opset_version=17)

        class Reader(q.CalibrationDataReader):
            def __init__(self):
                self.rows = iter([{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(32)])

            def get_next(self):
                return next(self.rows, None)

        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          op_types_to_quantize=["MatMul", "Gemm", "LayerNormalization"])
        model = onnx.load(str(dst))
    c = compile_loaded(load_model(model), CompileOptions(batch=4))
    kinds = [op.attrs.get("op", op.kind) for op in c.model.graph.ops]
    assert kinds == ["dense", "layernorm", "lut", "dense"], kinds
    x = rng.standard_normal((EVENTS, 16)).astype(np.float32)
    ours, ref = c.emulate(x), c.reference(x)
    diff = np.rint(np.abs(ours - ref) / c.output_type.scale[0])
    # the layer norm's one-code differences pass through GELU and the last dense: a few codes at most
    assert (diff > 0).mean() <= 0.01 and diff.max() <= 4, ((diff > 0).mean(), diff.max())
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


def test_layernorm_over_another_axis_is_refused(monkeypatch):
    monkeypatch.setattr(lut, "WIDTH", 8)

    def body(m: lut.Model, x: str) -> str:
        m.inits.append(numpy_helper.from_array(np.ones((1, 8), np.float32), "g"))
        return m.node("LayerNormalization", x, "g", axis=0)

    with pytest.raises(UnsupportedOpError, match=r"LayerNormalization over axis 0.*last axis"):
        load_model(lut.Model().build(body))


@pytest.mark.parametrize("batch", [1, 4])
def test_qonnx_layernorm_from_brevitas(batch):
    torch = pytest.importorskip("torch")
    qnn = pytest.importorskip("brevitas.nn")
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(16, 24, weight_quant=Int8WeightPerTensorFixedPoint, bias=False)
            self.a = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)
            self.ln = torch.nn.LayerNorm(24)
            self.o = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            return self.o(self.ln(self.a(self.fc(self.q(x)))))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.ln.weight.uniform_(0.5, 1.5)
        net.ln.bias.uniform_(-0.5, 0.5)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 16) * 2)
    net.eval()
    c = compile_loaded(load_model(export_brevitas_qonnx(net, 0, input_shape=(16,))), CompileOptions(batch=batch))
    assert [op.kind for op in c.model.graph.ops] == ["dense", "layernorm"]
    x = np.random.default_rng(3).normal(0, 2, (EVENTS, 16)).astype(np.float32)
    fraction, worst = check_against_source(c, x, float(c.output_type.lsb))
    with torch.no_grad():
        brevitas = net(torch.from_numpy(x)).numpy()
    assert np.mean(c.reference(x) != brevitas) <= 1e-3  # qonnx runs onnxruntime's LayerNormalization
    assert worst <= 1 and fraction <= 1e-3, (fraction, worst)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)
