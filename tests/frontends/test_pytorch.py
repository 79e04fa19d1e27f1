"""nn2aie.from_pytorch: Brevitas modules (QONNX path) and plain torch MLPs (post-training quantization, QDQ path).

Every compiled design is emulated on >= 1000 inputs (including saturating ones) and compared with np.array_equal
against the source framework (Brevitas forward + qonnx execution, or onnxruntime on the emitted QDQ model) and,
for the plain path, against an independent float64 fake-quantized torch forward written here from the documented
calibration rule.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import nn2aie  # noqa: E402
from nn2aie.api import compile_loaded  # noqa: E402
from nn2aie.errors import IllegalConfigError, UnsupportedOpError, UnsupportedQuantizationError  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions  # noqa: E402

JET = [16, 64, 32, 32, 5]
WIDE = [384, 256, 200, 10]


def test_import_nn2aie_does_not_import_torch():
    import subprocess

    code = "import sys, nn2aie; assert 'torch' not in sys.modules; assert callable(nn2aie.from_pytorch)"
    subprocess.run([sys.executable, "-c", code], check=True)


def _inputs(n: int, k: int, seed: int, scale: float = 1.0, wild: int = 0) -> np.ndarray:
    """n rows ~ N(0, scale^2), the last ``wild`` of them 10x larger (far outside any calibration range)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) * scale
    if wild:
        x[-wild:] *= 10.0
    return x.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# Brevitas
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brevitas_models():
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    pytest.importorskip("onnxoptimizer")
    from nn2aie.examples.brevitas_models import make_brevitas_mlp

    return {"jet": make_brevitas_mlp(JET, seed=0, train_steps=20), "wide": make_brevitas_mlp(WIDE, seed=1,
                                                                                              train_steps=10)}


@pytest.mark.parametrize("key", ["jet", "wide"])
def test_brevitas_bit_exact(brevitas_models, key):
    module = brevitas_models[key]
    sizes = JET if key == "jet" else WIDE
    before = {k: v.clone() for k, v in module.state_dict().items()}
    loaded = nn2aie.from_pytorch(module, torch.randn(1, sizes[0]), name=f"brevitas_{key}")
    assert loaded.framework == "qonnx" and loaded.graph.name == f"brevitas_{key}"
    assert loaded.graph.source["reference_exact"] == "yes"
    assert not module.training  # the exporter's mode switches are undone
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())

    compiled = compile_loaded(loaded)
    x = _inputs(1200, sizes[0], seed=5, scale=2.0, wild=100)
    ours = compiled.emulate(x)
    with torch.no_grad():
        forward = module(torch.from_numpy(x)).numpy()
    assert np.abs(compiled.quantize(x)).max() == 128  # the input quantizer saturates
    assert ours.dtype == forward.dtype == np.float32 and ours.shape == (1200, sizes[-1])
    assert np.array_equal(ours, forward)
    assert np.array_equal(ours, compiled.reference(x))


def test_brevitas_falls_back_to_the_torchscript_exporter(brevitas_models, monkeypatch):
    """Where Brevitas' dynamo export fails, from_pytorch exports with the TorchScript exporter, says so in the
    graph's source, and the design is still bit-exact against the module's forward."""
    import brevitas.export

    real = brevitas.export.export_qonnx
    calls = []

    def dynamo_fails(*args, **kwargs):
        calls.append(kwargs.get("dynamo", True))
        if kwargs.get("dynamo", True):
            raise RuntimeError("dynamo cannot trace this module")
        return real(*args, **kwargs)

    monkeypatch.setattr(brevitas.export, "export_qonnx", dynamo_fails)
    module = brevitas_models["jet"]
    loaded = nn2aie.from_pytorch(module, torch.randn(1, JET[0]), name="jet_ts")
    assert calls == [True, False]
    assert "TorchScript exporter" in loaded.graph.source["frontend"]
    compiled = compile_loaded(loaded)
    x = _inputs(500, JET[0], seed=6, scale=2.0, wild=50)
    with torch.no_grad():
        assert np.array_equal(compiled.emulate(x), module(torch.from_numpy(x)).numpy())

    def both_fail(*args, **kwargs):
        raise RuntimeError(f"exporter {kwargs.get('dynamo', True)} fails")

    monkeypatch.setattr(brevitas.export, "export_qonnx", both_fail)
    with pytest.raises(UnsupportedOpError, match="fails with both exporters .*dynamo: RuntimeError.*TorchScript"):
        nn2aie.from_pytorch(module, torch.randn(1, JET[0]), name="jet_none")


def test_quant_multihead_attention_exports_through_torchscript_and_names_its_first_unsupported_op():
    """Brevitas' dynamo exporter cannot export QuantMultiheadAttention; the TorchScript export can, and the
    refusal then names a real node of the attention graph (attention is issue 15's work)."""
    import brevitas.nn as qnn

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(return_quant_tensor=False)
            self.mha = qnn.QuantMultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            x = self.q(x)
            return self.mha(x, x, x, need_weights=False)[0]

    with pytest.raises(UnsupportedOpError, match=r"at node /mha/\S+ \(\w+\): operator \w+ is not supported"):
        nn2aie.from_pytorch(Attention().eval(), torch.randn(4, 6, 16))


def test_brevitas_refuses_bit_width_arguments(brevitas_models):
    with pytest.raises(IllegalConfigError, match="Brevitas"):
        nn2aie.from_pytorch(brevitas_models["jet"], torch.randn(1, 16), act_bits=16)


# ------------------------------------------------------------------------------------------------------------
# plain torch: independent fake-quant oracle (float64 torch, written from the documented rule)
# ------------------------------------------------------------------------------------------------------------
def _frac(m: float, max_code: int) -> int:
    m = m if m > 0 else 1.0
    f = -60
    while m * 2.0 ** (f + 1) <= max_code:  # plain search, no log2
        f += 1
    return f


def _fq(t, frac: int, lo: int, hi: int):
    return torch.clamp(torch.round(t * 2.0 ** frac), lo, hi) * 2.0 ** -frac  # torch.round: half to even


def fake_quant_forward(seq, calibration: np.ndarray, x: np.ndarray, act_bits: int = 8,
                       weight_bits: int = 8) -> np.ndarray:
    """The PTQ model in float64 torch: ``seq`` is [Linear, (ReLU)?]* (Identity/Dropout skipped)."""
    mods = [m for m in seq if not isinstance(m, nn.Identity | nn.Dropout)]
    smax = (1 << (act_bits - 1)) - 1
    umax = 255 if act_bits == 8 else smax
    cal = torch.from_numpy(np.asarray(calibration, np.float64))
    h = torch.from_numpy(np.asarray(x, np.float32).astype(np.float64))
    f_in = _frac(cal.abs().max().item(), smax)
    h = _fq(h, f_in, -smax - 1, smax)
    i = 0
    while i < len(mods):
        lin = mods[i]
        relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
        w = lin.weight.detach().double()
        b = lin.bias.detach().double()
        wmax = (1 << (weight_bits - 1)) - 1
        fw = _frac(w.abs().max().item(), wmax)
        wq = _fq(w, fw, -wmax, wmax)
        bq = torch.round(b * 2.0 ** (f_in + fw)) * 2.0 ** -(f_in + fw)
        cal = cal @ w.T + b
        h = h @ wq.T + bq  # exact: every term is a multiple of 2^-(f_in+fw) far below 2^53
        if relu:
            cal, h = torch.relu(cal), torch.relu(h)
            lo, hi = (0, umax) if act_bits == 8 else (-smax - 1, smax)
        else:
            lo, hi = -smax - 1, smax
        f_out = _frac(cal.abs().max().item(), hi)
        h = _fq(h, f_out, lo, hi)
        f_in = f_out
        i += 2 if relu else 1
    return h.numpy().astype(np.float32)


def _plain_mlp(sizes: list[int], seed: int, steps: int = 10) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(k, n))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(seed + 1)
    target = torch.randn(sizes[0], sizes[-1], generator=gen) / sizes[0] ** 0.5
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        xb = torch.randn(64, sizes[0], generator=gen)
        loss = torch.mean((model(xb) - torch.tanh(xb @ target) * 2) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("sizes,act_bits,weight_bits", [(JET, 8, 8), (WIDE, 8, 8), (JET, 16, 8), (JET, 16, 16),
                                                     (JET, 8, 4)], ids=["jet8", "wide8", "jet16", "jet16w16", "jet8w4"])
def test_plain_mlp_ptq_bit_exact(sizes, act_bits, weight_bits):
    model = _plain_mlp(sizes, seed=len(sizes) + act_bits)
    cal = _inputs(512, sizes[0], seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = nn2aie.from_pytorch(model, torch.from_numpy(cal[:1]), calibration=torch.from_numpy(cal),
                                 act_bits=act_bits, weight_bits=weight_bits, name="plain")
    assert loaded.framework == "onnx-qdq" and loaded.graph.name == "plain"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
    compiled = compile_loaded(loaded)

    x = _inputs(1200, sizes[0], seed=2, wild=150)  # fresh data; 150 rows far beyond the calibration range
    ours = compiled.emulate(x)
    assert np.abs(compiled.quantize(x)).max() == (1 << (act_bits - 1))  # input saturation exercised
    oracle = fake_quant_forward(model, cal, x, act_bits, weight_bits)
    assert np.array_equal(ours, oracle)
    if loaded.graph.source["reference_exact"] == "yes":  # onnxruntime's float32 sums are exact (< 2^24 LSBs)
        assert np.array_equal(ours, compiled.reference(x))
    else:
        assert act_bits == 16

    # accuracy sanity on in-range data: the quantized model is close to the float model
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:1000])).numpy()
    rel = np.linalg.norm(ours[:1000] - ref) / np.linalg.norm(ref)
    assert rel < (0.2 if weight_bits < 8 else 0.1 if act_bits == 8 else 0.02), rel


def test_ptq_calibration_rule_and_qdq_structure():
    import onnx
    from onnx import numpy_helper

    model = _plain_mlp([8, 6, 3], seed=3, steps=0)
    with torch.no_grad():
        model[0].weight.mul_(0).add_(0.25)
        model[0].weight[0, 0] = -0.9  # max|W| = 0.9 -> frac floor(log2(127 / 0.9)) = 7
        model[0].bias.fill_(0.3)
    cal = np.full((4, 8), 0.5, np.float32)
    cal[0, 0] = -3.0  # max|x| = 3 -> int8 frac 5 (3 * 32 = 96 <= 127 < 192)
    loaded = nn2aie.from_pytorch(model, cal[:1], calibration=cal)
    inits = {i.name: numpy_helper.to_array(i) for i in loaded.proto.graph.initializer}
    assert inits["input_scale"] == np.float32(2.0 ** -5)
    assert inits["fc0_weight_dq_scale"] == np.float32(2.0 ** -7)
    assert inits["fc0_weight_q"].dtype == np.int8 and inits["fc0_weight_q"].shape == (8, 6)
    assert inits["fc0_weight_q"][0, 0] == -115  # round(-0.9 * 128) = -115.2 -> -115
    assert inits["fc0_bias_q"].dtype == np.int32 and inits["fc0_bias_q"][0] == round(0.3 * 2 ** 12)
    assert inits["fc0_zero_point"].dtype == np.uint8  # ReLU output: uint8
    assert inits["fc1_zero_point"].dtype == np.int8  # linear output: int8
    assert all(not v.any() for k, v in inits.items() if k.endswith("zero_point"))
    assert loaded.proto.opset_import[0].version == 21
    onnx.checker.check_model(loaded.proto)
    assert _frac(3.0, 127) == 5 and _frac(0.0, 127) == 6 and _frac(255.0, 255) == 0 and _frac(255.5, 255) == -1


class _CustomMLP(nn.Module):
    """A custom forward (traced with torch.fx): Flatten at the input, functional ReLU, Identity, Dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(16, 24)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(24, 4, bias=False)
        self.idt = nn.Identity()

    def forward(self, x):
        return self.idt(self.fc2(self.drop(torch.nn.functional.relu(self.fc1(self.flat(x))))))


def test_custom_forward_with_flatten_and_functional_relu():
    torch.manual_seed(4)
    model = _CustomMLP().eval()
    cal = _inputs(256, 16, seed=3).reshape(256, 4, 4)
    loaded = nn2aie.from_pytorch(model, torch.from_numpy(cal[:2]), calibration=cal)
    compiled = compile_loaded(loaded)
    x = _inputs(1000, 16, seed=4, wild=50)  # compiled inputs are the flattened rows
    ours = compiled.emulate(x)
    assert np.array_equal(ours, compiled.reference(x))
    oracle_model = nn.Sequential(model.fc1, nn.ReLU(), nn.Linear(24, 4)).eval()
    with torch.no_grad():
        oracle_model[2].weight.copy_(model.fc2.weight)
        oracle_model[2].bias.zero_()
    assert np.array_equal(ours, fake_quant_forward(oracle_model, cal.reshape(256, 16), x))


# ------------------------------------------------------------------------------------------------------------
# refusals
# ------------------------------------------------------------------------------------------------------------
def _cal(k: int = 8) -> np.ndarray:
    return _inputs(64, k, seed=0)


def test_leaky_relu_is_refused_with_the_module_path():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.LeakyReLU(), nn.Linear(8, 2)).eval()
    with pytest.raises(UnsupportedOpError) as err:
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=_cal())
    assert "model.3 (LeakyReLU)" in str(err.value) and "nn.ReLU" in str(err.value)


ACTIVATION_MODELS = {
    # a jet tagger with GELU, LayerNorm, tanh and a softmax output
    "gelu_layernorm_softmax": lambda: nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 32),
                                                    nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 5), nn.Softmax(dim=-1)),
    "every_table_activation": lambda: nn.Sequential(
        nn.Linear(16, 16), nn.SiLU(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 8), nn.Hardswish(),
        nn.Linear(8, 8), nn.ELU(), nn.Linear(8, 8), nn.Mish(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, 8),
        nn.Hardsigmoid(), nn.Linear(8, 4), nn.GELU(approximate="tanh")),
}


@pytest.mark.parametrize("name", sorted(ACTIVATION_MODELS))
def test_activations_softmax_and_layernorm_compile(name):
    """Plain torch activations become lookup tables (bit-exact with the emitted QDQ model, which onnxruntime runs),
    Softmax and LayerNorm nn2aie's integer algorithms (at most a few outputs one code away)."""
    torch.manual_seed(0)
    model = ACTIVATION_MODELS[name]().eval()
    cal = torch.randn(512, 16)
    compiled = compile_loaded(nn2aie.from_pytorch(model, cal[:1], calibration=cal), CompileOptions(batch=4))
    kinds = [op.attrs.get("op", op.kind) for op in compiled.model.graph.ops]
    assert kinds.count("lut") == (2 if name == "gelu_layernorm_softmax" else 8), kinds
    x = np.random.default_rng(1).normal(0, 1, (2000, 16)).astype(np.float32)
    ours, ref = compiled.emulate(x), compiled.reference(x)
    if name == "every_table_activation":
        assert np.array_equal(ours, ref)
    else:
        assert np.mean(ours != ref) <= 1e-3
    report = compiled.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


def test_conv1d_is_refused_with_the_module_path():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(12, 2)).eval()
    with pytest.raises(UnsupportedOpError) as err:
        nn2aie.from_pytorch(model, torch.randn(1, 1, 8), calibration=torch.randn(16, 1, 8))
    assert "model.0 (Conv1d)" in str(err.value) and "nn.Linear" in str(err.value)


def _bn(n: int, seed: int) -> nn.BatchNorm1d:
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(n)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=gen))
        bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
        bn.weight.copy_(torch.randn(n, generator=gen))
        bn.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return bn.eval()


def _folded(lin: nn.Linear, bn: nn.BatchNorm1d, before: bool) -> nn.Linear:
    """The oracle's own fold (torch, float64): bn(lin(x)) or lin(bn(x)) as one Linear."""
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double()
    t = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).double()
    w, b = lin.weight.double(), lin.bias.double()
    out = nn.Linear(lin.in_features, lin.out_features).double()
    with torch.no_grad():
        out.weight.copy_(w * s[None, :] if before else w * s[:, None])
        out.bias.copy_(b + w @ t if before else b * s + t)
    return out


def test_batchnorm_folds_into_the_neighbouring_linear():
    """BatchNorm1d after a Linear folds into it, BatchNorm1d on the input into the Linear after it (PTQ quantizes
    the folded float model): equal to a fake-quantized oracle of the folded model and to onnxruntime."""
    torch.manual_seed(3)
    l1, l2 = nn.Linear(8, 16), nn.Linear(16, 4)
    bn_in, bn_mid = _bn(8, 1), _bn(16, 2)
    model = nn.Sequential(bn_in, l1, bn_mid, nn.ReLU(), l2).eval()
    cal = _cal()
    compiled = compile_loaded(nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=cal))
    assert [op.kind for op in compiled.model.graph.ops] == ["dense", "dense"]
    x = _inputs(1500, 8, seed=9, scale=2.0, wild=100)
    ours = compiled.emulate(x)
    with torch.no_grad():
        first = _folded(_folded(l1, bn_in, before=True), bn_mid, before=False)
    oracle = fake_quant_forward([first, nn.ReLU(), l2], cal, x)
    assert np.array_equal(ours, oracle)
    assert np.array_equal(ours, compiled.reference(x))
    with torch.no_grad():  # and, on the calibration inputs, close to the float module (quantization error only)
        float_out = model(torch.from_numpy(cal.astype(np.float32))).numpy()
    assert np.abs(compiled.emulate(cal) - float_out).mean() < 0.1 * np.abs(float_out).mean()


def test_batchnorm_with_no_linear_next_to_it_is_refused():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.BatchNorm1d(8).eval(), nn.ReLU(), nn.Linear(8, 2)).eval()
    with pytest.raises(UnsupportedOpError, match=r"model\.2 \(BatchNorm1d\).*folds into an nn\.Linear"):
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=_cal())


def test_residual_is_traced_not_refused():
    """A residual add is no longer refused by from_pytorch itself: it becomes an ONNX Add between QDQ pairs
    (tests/frontends/test_pytorch_dag.py checks the emitted model against a fake-quant oracle)."""
    from nn2aie.frontends.pytorch import export_qdq

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return x + self.fc(x)

    proto = export_qdq(Residual().eval(), torch.randn(1, 8), calibration=_cal())
    assert [n.op_type for n in proto.graph.node].count("Add") == 2  # the bias add and the residual add


def test_missing_calibration_is_refused():
    model = nn.Sequential(nn.Linear(8, 2)).eval()
    with pytest.raises(IllegalConfigError, match="pass calibration="):
        nn2aie.from_pytorch(model, torch.randn(1, 8))


def test_training_mode_is_refused_and_left_alone():
    model = nn.Sequential(nn.Linear(8, 4), nn.Dropout(0.5), nn.Linear(4, 2))  # fresh modules train by default
    with pytest.raises(IllegalConfigError, match=r"training mode.*module\.eval\(\)"):
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=_cal())
    assert model.training


def test_bias_overflow_is_refused():
    model = nn.Sequential(nn.Linear(8, 2)).eval()
    with torch.no_grad():
        model[0].weight.fill_(1e-3)
        model[0].bias.fill_(1e4)  # 1e4 * 2^(5 + 16) > 2^31
    with pytest.raises(UnsupportedQuantizationError, match=r"model\.0\.bias\[0\].*int32"):
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=_cal())


def test_bad_arguments():
    model = nn.Sequential(nn.Linear(8, 2)).eval()
    with pytest.raises(IllegalConfigError, match="act_bits"):
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=_cal(), act_bits=4)
    with pytest.raises(IllegalConfigError, match="sample shape"):
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=_cal(9))
    with pytest.raises(IllegalConfigError, match="NaN"):
        nn2aie.from_pytorch(model, torch.randn(1, 8), calibration=np.full((4, 8), math.nan))
    with pytest.raises(IllegalConfigError, match="torch.nn.Module"):
        nn2aie.from_pytorch(object(), torch.randn(1, 8), calibration=_cal())


def test_project_round_trip(tmp_path):
    from nn2aie.api import check_bit_exact, load_project, write_project_atomic

    model = _plain_mlp([16, 12, 4], seed=9, steps=3)
    cal = _inputs(128, 16, seed=6)
    compiled = compile_loaded(nn2aie.from_pytorch(model, cal[:1], calibration=cal, name="tiny"))
    x = _inputs(1000, 16, seed=7, wild=50)
    checked = check_bit_exact(compiled, x)
    assert checked["bit_exact"]
    summary = write_project_atomic(compiled, tmp_path / "proj", x[:64], checked=checked)
    assert summary["model"]["name"] == "tiny" and summary["model"]["framework"] == "onnx-qdq"
    again = load_project(tmp_path / "proj")  # rebuilt from the emitted QDQ model stored in the project
    assert np.array_equal(again.emulate(x), compiled.emulate(x))
