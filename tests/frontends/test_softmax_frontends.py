"""Softmax between quantizers in ONNX QDQ (onnx.helper models; a torch MLP quantized by onnxruntime, ending in a
softmax like the jet tagger) and QONNX (Brevitas: QuantIdentity -> torch.softmax -> QuantIdentity). The source
computes the softmax in float; nn2aie computes the integer algorithm of docs/numerics.md. The emulated design
must equal nn2aie's logical model exactly and its kernels must co-simulate natively; against the source at most
0.1 % of the outputs may differ, each by one code (the goal of the issue; benchmarks/float_ops_mismatch.py reports
the measured table)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError
from nn2aie.frontends.loader import load_model
from nn2aie.ir.evaluate import evaluate
from nn2aie.passes.pipeline import CompileOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_onnx_qdq_lut as lut  # noqa: E402

EVENTS = 2000


def check_against_source(c, x: np.ndarray, out_scale: float) -> tuple[float, int]:
    """Emulator == logical model exactly; returns (fraction of outputs that differ from the source, max codes)."""
    codes = c.quantize(x)
    g = c.model.graph
    want = evaluate(g, {g.inputs[0]: codes.reshape((x.shape[0], *g.tensor(g.inputs[0]).shape))})[g.outputs[0]]
    assert np.array_equal(c.emulate_codes(codes), want.reshape(x.shape[0], -1))
    diff = np.rint(np.abs(c.emulate(x) - c.reference(x)) / out_scale).astype(np.int64)
    return float((diff > 0).mean()), int(diff.max())


@pytest.mark.parametrize("n, out_type, out_frac", [(5, TensorProto.UINT8, 8), (32, TensorProto.UINT8, 8),
                                                   (24, TensorProto.INT8, 7), (64, TensorProto.INT16, 15)])
@pytest.mark.parametrize("batch", [1, 4])
def test_qdq_softmax(n, out_type, out_frac, batch, monkeypatch):
    monkeypatch.setattr(lut, "WIDTH", n)
    model = lut.Model(in_frac=4, out_frac=out_frac, out_type=out_type).build(
        lambda m, x: m.node("Softmax", x, axis=-1))
    c = compile_loaded(load_model(model), CompileOptions(batch=batch))
    assert [op.kind for op in c.model.graph.ops] == ["softmax"]
    x = np.random.default_rng(n).uniform(-8, 8, (EVENTS, n)).astype(np.float32)
    fraction, worst = check_against_source(c, x, 2.0 ** -out_frac)
    assert worst <= 1 and fraction <= 1e-3, (fraction, worst)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


def test_onnxruntime_quantized_jet_tagger_with_softmax():
    """16 -> 64 -> 32 -> 32 -> 5 with ReLUs and a softmax, quantized by onnxruntime (uint8 activations, float
    scales and zero points): dense layers, then the softmax on the float-scaled logits."""
    import tempfile

    torch = pytest.importorskip("torch")
    from onnxruntime import quantization as q

    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 5), nn.Softmax(dim=-1))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        torch.onnx.export(net.eval(), torch.rand(1, 16), str(src), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)

        class Reader(q.CalibrationDataReader):
            def __init__(self):
                self.rows = iter([{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(64)])

            def get_next(self):
                return next(self.rows, None)

        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
        model = onnx.load(str(dst))
    c = compile_loaded(load_model(model), CompileOptions(batch=4))
    assert [op.kind for op in c.model.graph.ops][-1] == "softmax"
    x = rng.standard_normal((EVENTS, 16)).astype(np.float32)
    scale = c.output_type.scale[0]
    fraction, worst = check_against_source(c, x, scale)
    assert worst <= 1 and fraction <= 1e-3, (fraction, worst)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


def test_softmax_over_another_axis_is_refused(monkeypatch):
    monkeypatch.setattr(lut, "WIDTH", 8)
    model = lut.Model().build(lambda m, x: m.node("Softmax", x, axis=0))
    with pytest.raises(UnsupportedOpError, match=r"Softmax.*axis 0.*last axis"):
        load_model(model)


@pytest.mark.parametrize("batch", [1, 4])
def test_qonnx_softmax_from_brevitas(batch):
    torch = pytest.importorskip("torch")
    qnn = pytest.importorskip("brevitas.nn")
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(16, 10, weight_quant=Int8WeightPerTensorFixedPoint, bias=False)
            self.a = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)
            self.o = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint)

        def forward(self, x):
            return self.o(torch.softmax(self.a(self.fc(self.q(x))), dim=-1))

    torch.manual_seed(0)
    net = Net()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 16) * 2)
    net.eval()
    c = compile_loaded(load_model(export_brevitas_qonnx(net, 0, input_shape=(16,))), CompileOptions(batch=batch))
    assert [op.kind for op in c.model.graph.ops] == ["dense", "softmax"]
    x = np.random.default_rng(3).normal(0, 2, (EVENTS, 16)).astype(np.float32)
    fraction, worst = check_against_source(c, x, float(c.output_type.lsb))
    with torch.no_grad():
        brevitas = net(torch.from_numpy(x)).numpy()
    assert np.array_equal(c.reference(x), brevitas)  # qonnx == Brevitas: the float source is one
    assert worst <= 1 and fraction <= 1e-3, (fraction, worst)
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)
