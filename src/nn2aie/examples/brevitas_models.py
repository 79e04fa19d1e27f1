"""Small Brevitas MLPs (fixed-point, or Brevitas' default float-scale quantizers), and a QONNX export helper.

torch and brevitas are optional dependencies of nn2aie: they are imported inside the functions, and a missing
package is reported as a typed nn2aie error.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nn2aie.errors import IllegalConfigError

_INSTALL_HINT = "install the optional dependencies: pip install 'nn2aie[brevitas]' (torch, brevitas, onnxoptimizer)"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise IllegalConfigError(f"python package {module.split('.')[0]}",
                                 f"cannot import {module}: {exc}", _INSTALL_HINT) from exc


def make_brevitas_mlp(sizes: Sequence[int], seed: int = 0, train_steps: int = 20, weight_bit_width: int = 8,
                      relu_bits: int = 8, signed_relu: bool = False, batch: int = 64, bias_bits: int = 32,
                      quantizers: str = "fixed_point", batch_norm: bool = False) -> Any:
    """A Brevitas MLP ``sizes[0] -> ... -> sizes[-1]`` with power-of-two (fixed-point) quantizers, in eval mode.

    Layout: QuantIdentity (Int8ActPerTensorFixedPoint) -> [QuantLinear -> QuantReLU]* -> QuantLinear ->
    QuantIdentity (Int8ActPerTensorFixedPoint, returns a plain float tensor). Weights use
    Int8WeightPerTensorFixedPoint with ``weight_bit_width`` bits, biases Int32Bias (or Int16Bias with
    ``bias_bits=16``), hidden activations Uint8ActPerTensorFixedPoint (Int8ActPerTensorFixedPoint when
    ``signed_relu``) with ``relu_bits`` bits. The model is trained for ``train_steps`` SGD steps on seeded
    synthetic regression data so that weights and activation scales move away from their initial values.

    ``quantizers="default"`` uses what a Brevitas user gets without choosing: Int8ActPerTensorFloat /
    Uint8ActPerTensorFloat activations and Int8WeightPerTensorFloat weights (learned float scales) with a float
    bias; ``"per_channel"`` the same with Int8WeightPerChannelFloat weights (one float scale per output channel).

    ``batch_norm``: a BatchNorm1d between each hidden QuantLinear (then returning a float tensor) and its QuantReLU,
    trained with the rest; afterwards every third channel's gamma is negated so that both orientations occur.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise IllegalConfigError("make_brevitas_mlp", f"sizes {sizes} must list at least two positive widths",
                                 "pass e.g. [16, 64, 32, 32, 5]")
    if quantizers not in ("fixed_point", "default", "per_channel"):
        raise IllegalConfigError("make_brevitas_mlp", f"quantizers={quantizers!r} is not known",
                                 "use 'fixed_point', 'default' or 'per_channel'")
    if bias_bits not in (16, 32):
        raise IllegalConfigError("make_brevitas_mlp", f"bias_bits={bias_bits} is not supported", "use 16 or 32")
    torch = _require("torch")
    qnn = _require("brevitas.nn")
    quant = _require("brevitas.quant")

    torch.manual_seed(seed)
    bias_quant = quant.Int32Bias if bias_bits == 32 else quant.Int16Bias
    if quantizers == "fixed_point":
        act, uact, weight = (quant.Int8ActPerTensorFixedPoint, quant.Uint8ActPerTensorFixedPoint,
                             quant.Int8WeightPerTensorFixedPoint)
    else:
        act, uact = quant.Int8ActPerTensorFloat, quant.Uint8ActPerTensorFloat
        weight = quant.Int8WeightPerTensorFloat if quantizers == "default" else quant.Int8WeightPerChannelFloat
        bias_quant = None  # Brevitas' default: a float bias
    relu_quant = act if signed_relu else uact
    linear_kw = dict(weight_quant=weight, weight_bit_width=weight_bit_width,
                     bias=True, bias_quant=bias_quant, return_quant_tensor=True)
    layers: list[Any] = [qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)]
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        hidden = i < len(sizes) - 2
        layers.append(qnn.QuantLinear(k, n, **(linear_kw | ({"return_quant_tensor": False} if hidden and batch_norm
                                                             else {}))))
        if hidden and batch_norm:
            layers.append(torch.nn.BatchNorm1d(n))
        if hidden:
            layers.append(qnn.QuantReLU(act_quant=relu_quant, bit_width=relu_bits, return_quant_tensor=True))
    layers.append(qnn.QuantIdentity(act_quant=act, return_quant_tensor=False))
    model = torch.nn.Sequential(*layers)

    # seeded synthetic task: a random smooth target of a scaled Gaussian input
    gen = torch.Generator().manual_seed(seed + 1)
    target_w = torch.randn(sizes[0], sizes[-1], generator=gen) / max(1.0, sizes[0] ** 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(train_steps):
            x = torch.randn(batch, sizes[0], generator=gen) * 2.0
            y = torch.tanh(x @ target_w) * 4.0
            loss = torch.mean((model(x) - y) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight[::3] *= -1.0
    return model


def export_brevitas_qonnx(module: Any, in_features: int, input_shape: Sequence[int] | None = None,
                          **export_kwargs: Any) -> Any:
    """Export ``module`` with ``brevitas.export.export_qonnx`` (batch 1; input [1, in_features], or [1,
    *input_shape]) and return the ``onnx.ModelProto``.

    The export goes to a temporary directory that is removed afterwards (external data is loaded into the
    proto first); the exporter's console chatter is swallowed. Extra keyword arguments go to export_qonnx.
    """
    torch = _require("torch")
    export = _require("brevitas.export")
    _require("onnxoptimizer")
    import onnx

    example = torch.randn(1, *(int(d) for d in input_shape)) if input_shape else torch.randn(1, int(in_features))
    with tempfile.TemporaryDirectory(prefix="nn2aie_brevitas_") as tmp:
        path = Path(tmp) / "model.onnx"
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            export.export_qonnx(module, example, str(path), **export_kwargs)
        model = onnx.load(str(path), load_external_data=True)
    return model


def make_brevitas_residual(width: int = 32, hidden: int = 64, blocks: int = 2, outputs: int = 5, seed: int = 0,
                           calibration_steps: int = 4) -> Any:
    """A Brevitas residual MLP with power-of-two quantizers, in eval mode:
    ``q_in -> [h + q_branch(fc2(relu(fc1(h))))]* -> head -> q_out``, each block's skip and branch from their own
    quantizers (two scales) merged by ``QuantEltwiseAdd`` into an int8 sum. Activation scales are calibrated by
    ``calibration_steps`` train-mode passes over seeded Gaussian inputs (no training)."""
    torch = _require("torch")
    qnn = _require("brevitas.nn")
    quant = _require("brevitas.quant")
    fixed = _require("brevitas.quant.fixed_point")

    def linear(k: int, n: int):
        return qnn.QuantLinear(k, n, weight_quant=fixed.Int8WeightPerTensorFixedPoint, bias=True,
                               bias_quant=quant.Int32Bias, return_quant_tensor=True)

    def act(tensor: bool):
        return qnn.QuantIdentity(act_quant=fixed.Int8ActPerTensorFixedPoint, return_quant_tensor=tensor)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = linear(width, hidden), linear(hidden, width)
            self.relu = qnn.QuantReLU(act_quant=fixed.Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.q_branch, self.q_skip = act(False), act(False)
            self.add = qnn.QuantEltwiseAdd(input_quant=None, output_quant=fixed.Int8ActPerTensorFixedPoint,
                                           return_quant_tensor=True)

        def forward(self, h):
            return self.add(self.q_branch(self.fc2(self.relu(self.fc1(h)))), self.q_skip(h))

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_in = act(True)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(blocks))
            self.head, self.q_out = linear(width, outputs), act(False)

        def forward(self, x):
            h = self.q_in(x)
            for block in self.blocks:
                h = block(h)
            return self.q_out(self.head(h))

    torch.manual_seed(seed)
    model = Residual()
    gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(calibration_steps):
            model(torch.randn(256, width, generator=gen) * 1.5)
    model.eval()
    return model


FINN_FC_NAMES = ("tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a")


def make_finn_fc(name: str = "tfc_1w1a", seed: int = 0) -> Any:
    """One of FINN's binarized / low-bit MLPs from ``brevitas_examples.bnn_pynq`` (TFC 64, SFC 256, LFC 1024
    neurons per hidden layer on 28x28 MNIST-like input; ``1w1a`` bipolar weights and activations, ``2w2a`` 2-bit),
    in eval mode, exactly as the examples define it: the ``2x - 1`` input scaling, QuantLinear -> BatchNorm1d ->
    quantizer per hidden layer and a TensorNorm after the last layer.

    Untrained, a BatchNorm is the identity; so that every threshold matters the weights are seeded and the
    BatchNorm statistics and affine parameters drawn at the scale of each layer's sum (gammas of both signs, one
    channel with gamma 0, a few integer means with beta 0 so that the quantizer's tie at 0 is reached), and the
    TensorNorm's likewise. No data or weights are downloaded."""
    if name not in FINN_FC_NAMES:
        raise IllegalConfigError("make_finn_fc", f"model {name!r} is not one of FINN's bnn_pynq MLPs",
                                 f"use one of {', '.join(FINN_FC_NAMES)}")
    return _finn_model(name, 784, seed)


FINN_CNV_NAMES = ("cnv_1w1a", "cnv_1w2a", "cnv_2w2a")


def make_finn_cnv(name: str = "cnv_2w2a", seed: int = 0) -> Any:
    """FINN's CIFAR-10 CNV from ``brevitas_examples.bnn_pynq`` (six 3x3 QuantConv2d of 64/64/128/128/256/256
    filters, each -> BatchNorm2d -> quantizer, 2x2 max pools after the second and fourth; QuantLinear 256 -> 512 ->
    512 -> 10 with BatchNorm1d, TensorNorm; the ``2x - 1`` input scaling) in eval mode, exactly as the examples
    define it, with seeded weights and BatchNorm statistics drawn as ``make_finn_fc`` does. Input [1, 3, 32, 32]."""
    if name not in FINN_CNV_NAMES:
        raise IllegalConfigError("make_finn_cnv", f"model {name!r} is not one of FINN's bnn_pynq CNVs",
                                 f"use one of {', '.join(FINN_CNV_NAMES)}")
    return _finn_model(name, 27, seed)


def _finn_model(name: str, fan_in: int, seed: int) -> Any:
    """Build one of ``bnn_pynq``'s models untrained with seeded weights, quietly, and draw its statistics."""
    torch = _require("torch")
    models = _require("brevitas_examples.bnn_pynq.models")
    norm = _require("brevitas_examples.bnn_pynq.models.tensor_norm")
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model, _ = models.model_with_cfg(name, pretrained=False)
    _finn_statistics(torch, norm, model, fan_in, seed)
    model.eval()
    return model


def _finn_statistics(torch: Any, norm: Any, model: Any, fan_in: int, seed: int) -> None:
    """Seeded BatchNorm / TensorNorm statistics at the scale of each layer's sum (see ``make_finn_fc``)."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "in_features") and hasattr(m, "weight") and m.weight.dim() == 2:
                fan_in = int(m.in_features)
            if hasattr(m, "in_channels") and hasattr(m, "weight") and m.weight.dim() == 4:
                fan_in = int(m.in_channels) * int(m.weight.shape[2]) * int(m.weight.shape[3])
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = m.num_features
                spread = float(fan_in) ** 0.5
                m.running_mean.copy_(torch.randn(n, generator=gen) * spread)
                m.running_var.copy_(fan_in * (0.25 + torch.rand(n, generator=gen)))
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
                k = min(4, n)
                m.running_mean[:k] = torch.round(m.running_mean[:k])
                m.bias[:k] = 0.0
                m.weight[k % n] = 0.0
            if isinstance(m, norm.TensorNorm):
                m.running_mean.copy_(torch.randn(1, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(1, generator=gen))
                m.weight.copy_(torch.randn(1, generator=gen))
                m.bias.copy_(torch.randn(1, generator=gen))


def _seed_batchnorms(torch: Any, model: Any, seed: int) -> None:
    """BatchNorm2d statistics drawn so that every channel's scale and offset matter (an untrained BatchNorm is
    the identity): means within the sum's range, variances around it, gammas of both signs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(torch.randn(n, generator=gen).abs() * 0.8 + 0.2)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def make_resnet8(seed: int = 0, width: tuple[int, int, int] = (16, 32, 64), classes: int = 10) -> Any:
    """The MLPerf Tiny image-classification ResNet-8 (CIFAR-10 32x32x3: a 3x3 stem, three residual stacks of two
    3x3 convolutions with BatchNorm, the second and third strided by 2 with a 1x1 strided shortcut, global average
    pooling, a dense head) in Brevitas with 8-bit power-of-two (fixed-point) quantizers, eval mode, seeded weights
    and BatchNorm statistics. Input [1, 3, 32, 32]."""
    torch = _require("torch")
    qnn = _require("brevitas.nn")
    quant = _require("brevitas.quant")
    w8 = {"weight_quant": quant.Int8WeightPerTensorFixedPoint, "bias": False}
    act = quant.Int8ActPerTensorFixedPoint
    relu = quant.Uint8ActPerTensorFixedPoint

    class Stack(torch.nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = qnn.QuantConv2d(cin, cout, 3, stride=stride, padding=1, **w8)
            self.b1 = torch.nn.BatchNorm2d(cout)
            self.r1 = qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(cout, cout, 3, padding=1, **w8)
            self.b2 = torch.nn.BatchNorm2d(cout)
            self.q2 = qnn.QuantIdentity(act_quant=act, return_quant_tensor=False)
            self.short = qnn.QuantConv2d(cin, cout, 1, stride=stride, **w8) if stride != 1 or cin != cout else None
            self.qs = qnn.QuantIdentity(act_quant=act, return_quant_tensor=False) if self.short is not None else None
            self.out = qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)

        def forward(self, x):
            y = self.q2(self.b2(self.c2(self.r1(self.b1(self.c1(x))))))
            s = self.qs(self.short(x)) if self.short is not None else x.value if hasattr(x, "value") else x
            return self.out(y + s)

    class ResNet8(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qin = qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)
            self.stem = qnn.QuantConv2d(3, width[0], 3, padding=1, **w8)
            self.bn = torch.nn.BatchNorm2d(width[0])
            self.relu = qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)
            self.s1 = Stack(width[0], width[0], 1)
            self.s2 = Stack(width[0], width[1], 2)
            self.s3 = Stack(width[1], width[2], 2)
            self.qpool = qnn.QuantIdentity(act_quant=relu, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(width[2], classes, **w8)
            self.qout = qnn.QuantIdentity(act_quant=act)

        def forward(self, x):
            x = self.relu(self.bn(self.stem(self.qin(x))))
            x = self.s3(self.s2(self.s1(x)))
            x = self.qpool(torch.mean(x.value if hasattr(x, "value") else x, dim=(2, 3)))
            return self.qout(self.fc(x))

    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model = ResNet8()
        _seed_batchnorms(torch, model, seed + 1)
        model.train()  # calibrate the activation quantizers' ranges
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(8, 3, 32, 32))
        _seed_batchnorms(torch, model, seed + 1)
    model.eval()
    return model


def make_ds_cnn(seed: int = 0, filters: int = 64, blocks: int = 4, classes: int = 12) -> Any:
    """A DS-CNN keyword spotter as in MLPerf Tiny (49x10 MFCC input, a 10x4 stride-2 conv of 64 filters, four
    depthwise-separable blocks -- 3x3 depthwise, 1x1 pointwise, each with BatchNorm and ReLU -- global average
    pooling, a dense head) in Brevitas with 8-bit power-of-two quantizers, eval mode, seeded. The stem pads 5 rows
    and 1 column on each side (the 25x5 output of 'same' padding, which pads 4 / 5 rows). Input [1, 1, 49, 10]."""
    torch = _require("torch")
    qnn = _require("brevitas.nn")
    quant = _require("brevitas.quant")
    w8 = {"weight_quant": quant.Int8WeightPerTensorFixedPoint, "bias": False}
    relu = quant.Uint8ActPerTensorFixedPoint

    class DsCnn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qin = qnn.QuantIdentity(act_quant=quant.Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            layers: list[Any] = [qnn.QuantConv2d(1, filters, (10, 4), stride=2, padding=(5, 1), **w8),
                                 torch.nn.BatchNorm2d(filters), qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)]
            for _ in range(blocks):
                layers += [qnn.QuantConv2d(filters, filters, 3, padding=1, groups=filters, **w8),
                           torch.nn.BatchNorm2d(filters), qnn.QuantReLU(act_quant=relu, return_quant_tensor=True),
                           qnn.QuantConv2d(filters, filters, 1, **w8), torch.nn.BatchNorm2d(filters),
                           qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)]
            self.features = torch.nn.Sequential(*layers)
            self.qpool = qnn.QuantIdentity(act_quant=relu, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(filters, classes, **w8)
            self.qout = qnn.QuantIdentity(act_quant=quant.Int8ActPerTensorFixedPoint)

        def forward(self, x):
            x = self.features(self.qin(x))
            x = self.qpool(torch.mean(x.value if hasattr(x, "value") else x, dim=(2, 3)))
            return self.qout(self.fc(x))

    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model = DsCnn()
        _seed_batchnorms(torch, model, seed + 1)
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(8, 1, 49, 10))
        _seed_batchnorms(torch, model, seed + 1)
    model.eval()
    return model


def _calibrated(torch: Any, model: Any, shape: tuple[int, ...], seed: int) -> Any:
    """Seeded, activation ranges calibrated in train mode on three random batches, returned in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train()
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(16, *shape, generator=gen))
    return model.eval()


def make_brevitas_attention(tokens: int = 32, dim: int = 16, heads: int = 4, seed: int = 0) -> Any:
    """A transformer encoder block over ``tokens`` particles of ``dim`` features in Brevitas with 8-bit fixed-point
    quantizers: Q / K / V projections (QuantLinear), ``heads`` heads (``torch.matmul`` of the projections, scaled by
    ``1 / sqrt(dim / heads)`` -- a power of two when the head size is a power of four), softmax, the weighted sum of
    the values, the output projection, a residual add, LayerNorm, a GELU feed-forward (2 x dim) and a second residual
    add; every float result goes through a QuantIdentity. Input [1, tokens, dim]."""
    import math

    torch = _require("torch")
    qnn = _require("brevitas.nn")
    quant = _require("brevitas.quant")
    head = dim // heads

    def q(act: Any = quant.Int8ActPerTensorFixedPoint) -> Any:
        return qnn.QuantIdentity(act_quant=act)

    def lin(i: int, o: int) -> Any:
        return qnn.QuantLinear(i, o, bias=False, weight_quant=quant.Int8WeightPerTensorFixedPoint)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qin = q()
            self.wq, self.wk, self.wv = lin(dim, dim), lin(dim, dim), lin(dim, dim)
            self.aq, self.ak, self.av = q(), q(), q()
            self.scores, self.probs, self.context = q(), q(quant.Uint8ActPerTensorFixedPoint), q()
            self.wo, self.oq, self.res1 = lin(dim, dim), q(), q()
            self.norm, self.nq = torch.nn.LayerNorm(dim), q()
            self.f1, self.f1q, self.gq = lin(dim, 2 * dim), q(), q()
            self.f2, self.f2q, self.res2 = lin(2 * dim, dim), q(), q()

        def split(self, t: Any) -> Any:  # [B, T, D] -> [B, H, T, D / H]
            return t.reshape(-1, tokens, heads, head).transpose(1, 2)

        def forward(self, x: Any) -> Any:
            x = self.qin(x)
            qh, kh, vh = (self.split(a(w(x))) for a, w in ((self.aq, self.wq), (self.ak, self.wk), (self.av, self.wv)))
            s = self.scores(torch.matmul(qh, kh.transpose(-1, -2)) * (1.0 / math.sqrt(head)))
            c = self.context(torch.matmul(self.probs(torch.softmax(s, dim=-1)), vh))
            h = self.res1(self.oq(self.wo(c.transpose(1, 2).reshape(-1, tokens, dim))) + x)
            f = self.f1q(self.f1(self.nq(self.norm(h))))
            return self.res2(self.f2q(self.f2(self.gq(torch.nn.functional.gelu(f)))) + h)

    torch.manual_seed(seed)
    block = Block()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.25, 0.25)
    return _calibrated(torch, block, (tokens, dim), seed + 1)


def make_brevitas_mixer(particles: int = 16, features: int = 16, blocks: int = 2, classes: int = 5,
                        seed: int = 0) -> Any:
    """An MLP-Mixer jet tagger in Brevitas (8-bit fixed point): ``blocks`` mixer blocks over ``particles`` x
    ``features`` -- LayerNorm, token mixing (a GELU MLP over the particle axis of the transposed tensor), a residual
    add; LayerNorm, channel mixing (a GELU MLP over the features), a residual add -- then the mean over particles and
    a dense head. Input [1, particles, features]."""
    torch = _require("torch")
    qnn = _require("brevitas.nn")
    quant = _require("brevitas.quant")

    def q() -> Any:
        return qnn.QuantIdentity(act_quant=quant.Int8ActPerTensorFixedPoint)

    def lin(i: int, o: int) -> Any:
        return qnn.QuantLinear(i, o, bias=False, weight_quant=quant.Int8WeightPerTensorFixedPoint)

    class Mlp(torch.nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.a, self.aq, self.gq, self.b, self.bq = lin(width, 2 * width), q(), q(), lin(2 * width, width), q()

        def forward(self, x: Any) -> Any:
            return self.bq(self.b(self.gq(torch.nn.functional.gelu(self.aq(self.a(x))))))

    class MixerBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n1, self.n1q, self.tokens, self.r1 = torch.nn.LayerNorm(features), q(), Mlp(particles), q()
            self.n2, self.n2q, self.channels, self.r2 = torch.nn.LayerNorm(features), q(), Mlp(features), q()

        def forward(self, x: Any) -> Any:
            t = self.tokens(self.n1q(self.n1(x)).transpose(1, 2)).transpose(1, 2)
            x = self.r1(t + x)
            return self.r2(self.channels(self.n2q(self.n2(x))) + x)

    class Mixer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qin, self.embed, self.eq = q(), lin(features, features), q()
            self.blocks = torch.nn.ModuleList([MixerBlock() for _ in range(blocks)])
            self.pool, self.head, self.out = q(), lin(features, classes), q()

        def forward(self, x: Any) -> Any:
            x = self.eq(self.embed(self.qin(x)))
            for block in self.blocks:
                x = block(x)
            return self.out(self.head(self.pool(x.mean(dim=1))))

    torch.manual_seed(seed)
    model = Mixer()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.25, 0.25)
    return _calibrated(torch, model, (particles, features), seed + 1)
