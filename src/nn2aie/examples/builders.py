"""Deterministic ONNX QDQ model builders (``onnx.helper`` only) for examples, tests and benchmarks.

``make_qdq_mlp([16, 64, 32, 32, 5])`` is the jet tagger: float input -> QuantizeLinear(int8) -> DequantizeLinear ->
per layer MatMul(DQ(int8 weights)) + DQ(int32 bias) -> Relu -> QuantizeLinear(uint8) -> DequantizeLinear ... ->
last layer linear -> QuantizeLinear(int8) -> DequantizeLinear -> float output. All scales are powers of two, all
zero points 0, opset 21 (the first opset with int16 QuantizeLinear), IR version 10, dynamic batch dimension.

Output scales (when ``out_fracs`` is None) follow one fixed rule: the model is run in exact integer arithmetic on a
seeded calibration batch (inputs ~ N(0, 1) quantised at ``in_frac``), and each layer's output fraction is chosen so
the RMS accumulator lands at a quarter of the output type's maximum code.

Same arguments -> byte-identical ``SerializeToString()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
IR_VERSION = 10
_CALIBRATION_SAMPLES = 256

_NP = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16,
       TensorProto.INT32: np.int32}
_RANGE = {TensorProto.INT8: (-128, 127), TensorProto.UINT8: (0, 255), TensorProto.INT16: (-32768, 32767),
          TensorProto.INT32: (-(1 << 31), (1 << 31) - 1)}


@dataclass
class _Style:
    gemm: bool = False
    trans_b: bool = False
    float_bias: bool = False
    float_weights: bool = False
    relu_after_dq: bool = False


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def qparams(self, prefix: str, frac: int, dtype: int) -> tuple[str, str]:
        scale = self.init(f"{prefix}_scale", np.asarray(2.0 ** -frac, dtype=np.float32))
        zp = self.init(f"{prefix}_zero_point", np.zeros((), dtype=_NP[dtype]))
        return scale, zp

    def quant(self, x: str, prefix: str, frac: int, dtype: int) -> str:
        scale, zp = self.qparams(prefix, frac, dtype)
        return self.node("QuantizeLinear", [x, scale, zp], f"{prefix}_q", f"{prefix}_quant")

    def dequant(self, q: str, prefix: str, frac: int, dtype: int, out: str | None = None) -> str:
        scale, zp = self.qparams(f"{prefix}_dq", frac, dtype)
        return self.node("DequantizeLinear", [q, scale, zp], out or f"{prefix}_dq", f"{prefix}_dequant")


def _requant(acc: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    """Calibration-only integer requantisation: round half even, saturate."""
    return np.clip(np.rint(acc.astype(np.float64) * 2.0 ** -shift), lo, hi).astype(np.int64)


def make_qdq_mlp(sizes: list[int], seed: int = 0, act_bits: int = 8, relu_last: bool = False, in_frac: int = 5,
                 w_frac: int = 6, out_fracs: list[int] | None = None, bias: bool = True,
                 signed_hidden: bool = False, *, w_max: int = 127, gemm: bool = False, trans_b: bool = False,
                 float_bias: bool = False, float_weights: bool = False, relu_after_dq: bool = False,
                 name: str = "qdq_mlp") -> onnx.ModelProto:
    """A QDQ MLP with seeded weights uniform in [-w_max, w_max] (int8) and int32 biases.

    ``act_bits`` 8: int8 input/output, uint8 hidden (int8 with ``signed_hidden``); 16: int16 everywhere.
    Style switches (for frontend tests): ``gemm`` uses Gemm with the bias as input C (``trans_b`` stores W as
    [N, K] with transB=1); ``float_bias`` adds a plain float32 initializer (exactly on the accumulator grid);
    ``float_weights`` stores float32 weights (off-grid values, exact ties and out-of-range values included) behind
    QuantizeLinear -> DequantizeLinear; ``relu_after_dq`` moves hidden ReLUs after the DequantizeLinear of an
    int8 output: Q -> DQ -> Relu -> Q -> DQ on even hidden layers and Q -> DQ -> Relu -> next MatMul on odd ones.
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError("sizes needs at least two positive entries [in, ..., out]")
    if act_bits not in (8, 16):
        raise ValueError("act_bits must be 8 or 16")
    if not 1 <= w_max <= 127:
        raise ValueError("w_max must be in 1..127")
    n_layers = len(sizes) - 1
    if out_fracs is not None and len(out_fracs) != n_layers:
        raise ValueError(f"out_fracs needs {n_layers} entries")
    style = _Style(gemm, trans_b, float_bias, float_weights, relu_after_dq)
    rng = np.random.default_rng(seed)
    cal_rng = np.random.default_rng([seed, 1])
    act_signed = TensorProto.INT16 if act_bits == 16 else TensorProto.INT8
    if act_bits == 16 or signed_hidden or relu_after_dq:
        hidden_t = act_signed
    else:
        hidden_t = TensorProto.UINT8
    w_t = TensorProto.INT8

    b = _Builder()
    x_frac, x_t = in_frac, act_signed
    lo, hi = _RANGE[x_t]
    cal = np.clip(np.rint(cal_rng.standard_normal((_CALIBRATION_SAMPLES, sizes[0])) * 2.0 ** in_frac), lo, hi)
    cal = cal.astype(np.int64)
    cur = b.dequant(b.quant("x", "input", in_frac, x_t), "input", in_frac, x_t)

    for i in range(n_layers):
        k, n = int(sizes[i]), int(sizes[i + 1])
        last = i == n_layers - 1
        p = f"fc{i}"
        w = rng.integers(-w_max, w_max + 1, size=(k, n)).astype(np.int64)
        acc_frac = x_frac + w_frac
        mm = cal @ w
        rms_mm = max(1.0, float(np.sqrt(np.mean(mm.astype(np.float64) ** 2))))
        half = max(1, int(rms_mm // 2))
        bias_codes = rng.integers(-half, half + 1, size=n).astype(np.int64) if bias else np.zeros(n, np.int64)
        acc = mm + bias_codes
        out_t = act_signed if last else hidden_t
        o_lo, o_hi = _RANGE[out_t]
        relu = relu_last if last else True
        if out_fracs is not None:
            o_frac = int(out_fracs[i])
        else:
            rms = max(1.0, float(np.sqrt(np.mean(acc.astype(np.float64) ** 2))))
            o_frac = acc_frac + int(math.floor(math.log2((o_hi / 4) / rms) + 0.5))

        # weights
        w_store = w.T if style.trans_b else w
        if style.float_weights:
            wf = _float_weights(rng, w_store, w_frac)
            wq = b.quant(b.init(f"{p}_weight_f", wf), f"{p}_weight", w_frac, w_t)
        else:
            wq = b.init(f"{p}_weight_q", w_store.astype(np.int8))
        w_dq = b.dequant(wq, f"{p}_weight", w_frac, w_t)

        # bias
        bias_name = None
        if bias:
            if style.float_bias:
                bias_name = b.init(f"{p}_bias_f", (bias_codes * 2.0 ** -acc_frac).astype(np.float32))
            else:
                bq = b.init(f"{p}_bias_q", bias_codes.astype(np.int32))
                bias_name = b.dequant(bq, f"{p}_bias", acc_frac, TensorProto.INT32)

        if style.gemm:
            ins = [cur, w_dq] + ([bias_name] if bias_name else [])
            y = b.node("Gemm", ins, f"{p}_gemm_out", f"{p}_gemm", transB=1 if style.trans_b else 0)
        else:
            y = b.node("MatMul", [cur, w_dq], f"{p}_matmul_out", f"{p}_matmul")
            if bias_name:
                y = b.node("Add", [y, bias_name], f"{p}_add_out", f"{p}_bias_add")

        after_dq = style.relu_after_dq and relu and not last
        if relu and not after_dq:
            y = b.node("Relu", [y], f"{p}_relu_out", f"{p}_relu")
        yq = b.quant(y, p, o_frac, out_t)
        out_name = "y" if last else None
        y = b.dequant(yq, p, o_frac, out_t, out=out_name)
        if after_dq:
            y = b.node("Relu", [y], f"{p}_relu_out", f"{p}_relu")
            if i % 2 == 0:  # requantise with the same parameters: Q -> DQ -> Relu -> Q -> DQ
                y = b.dequant(b.quant(y, f"{p}_post", o_frac, out_t), f"{p}_post", o_frac, out_t)

        q = _requant(acc, acc_frac - o_frac, o_lo, o_hi)
        cal = np.maximum(q, 0) if relu else q
        cur, x_frac, x_t = y, o_frac, out_t

    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", int(sizes[0])])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", int(sizes[-1])])],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nn2aie.examples.builders", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _float_weights(rng: np.random.Generator, codes: np.ndarray, frac: int) -> np.ndarray:
    """float32 weights that QuantizeLinear maps back to ``codes`` or neighbours: off-grid values, exact ties
    (round half to even matters) and a few far out-of-range values (saturation matters)."""
    offs = rng.uniform(-0.49, 0.49, size=codes.shape)
    tie = rng.random(codes.shape) < 0.2
    offs = np.where(tie, np.where(rng.random(codes.shape) < 0.5, -0.5, 0.5), offs)
    vals = codes.astype(np.float64) + offs
    flat = vals.reshape(-1)
    if flat.size >= 4:
        flat[0], flat[1], flat[2], flat[3] = 300.0, -300.5, 127.5, -128.5
    return (vals * 2.0 ** -frac).astype(np.float32)


def _replace_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for idx, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[idx].CopyFrom(numpy_helper.from_array(np.asarray(value), name))
            return
    raise KeyError(name)


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    for node in model.graph.node:
        if node.name == name:
            return node
    raise KeyError(name)


VARIANTS = ("non_pow2_scale", "zero_scale", "negative_scale", "nan_scale", "nonzero_zero_point",
            "per_axis_scale", "sigmoid", "gemm_alpha", "dynamic_weights", "two_outputs", "requant_between")


def make_qdq_variant(variant: str, sizes: list[int] | None = None, seed: int = 0) -> tuple[onnx.ModelProto, str]:
    """A variant of the QDQ MLP and the name of the ONNX node (or tensor) it is about.

    All but ``two_outputs`` must be refused by the QDQ frontend with an error naming that node (for
    ``requant_between`` the node is fc1's bias, finer than its accumulator once fc0 is requantised). ``two_outputs``
    loads since the frontend takes DAGs; the compile pipeline still refuses a graph with two outputs by name.

    Variants: ``non_pow2_scale`` / ``zero_scale`` / ``negative_scale`` / ``nan_scale`` (scale of fc0_quant),
    ``nonzero_zero_point`` (fc0_quant), ``per_axis_scale`` (per-column weight scale of fc0, all powers of two),
    ``sigmoid`` (fc0_relu becomes Sigmoid), ``gemm_alpha`` (Gemm alpha=0.5), ``dynamic_weights`` (fc0's int8
    weights become a graph input), ``two_outputs`` (a second graph output), ``requant_between`` (Q -> DQ -> Relu
    -> Q with a different scale after fc0).
    """
    sizes = list(sizes or [8, 6, 4])
    if variant in ("non_pow2_scale", "zero_scale", "negative_scale", "nan_scale"):
        model = make_qdq_mlp(sizes, seed)
        value = {"non_pow2_scale": 0.0123, "zero_scale": 0.0, "negative_scale": -0.125, "nan_scale": np.nan}[variant]
        _replace_init(model, "fc0_scale", np.asarray(value, dtype=np.float32))
        return model, "fc0_quant"
    if variant == "nonzero_zero_point":
        model = make_qdq_mlp(sizes, seed)
        _replace_init(model, "fc0_zero_point", np.asarray(3, dtype=np.uint8))
        return model, "fc0_quant"
    if variant == "per_axis_scale":
        model = make_qdq_mlp(sizes, seed)
        _replace_init(model, "fc0_weight_dq_scale", np.full(sizes[1], 2.0 ** -6, dtype=np.float32))
        _replace_init(model, "fc0_weight_dq_zero_point", np.zeros(sizes[1], dtype=np.int8))
        node = _node(model, "fc0_weight_dequant")
        node.attribute.append(helper.make_attribute("axis", 1))
        return model, "fc0_weight_dequant"
    if variant == "sigmoid":
        model = make_qdq_mlp(sizes, seed)
        _node(model, "fc0_relu").op_type = "Sigmoid"
        return model, "fc0_relu"
    if variant == "gemm_alpha":
        model = make_qdq_mlp(sizes, seed, gemm=True)
        _node(model, "fc0_gemm").attribute.append(helper.make_attribute("alpha", 0.5))
        return model, "fc0_gemm"
    if variant == "dynamic_weights":
        model = make_qdq_mlp(sizes, seed)
        init = next(i for i in model.graph.initializer if i.name == "fc0_weight_q")
        model.graph.initializer.remove(init)
        model.graph.input.append(helper.make_tensor_value_info("fc0_weight_q", TensorProto.INT8,
                                                               [sizes[0], sizes[1]]))
        return model, "fc0_matmul"
    if variant == "two_outputs":
        model = make_qdq_mlp(sizes, seed)
        model.graph.output.append(helper.make_tensor_value_info("fc0_dq", TensorProto.FLOAT, ["batch", sizes[1]]))
        return model, "fc0_dq"
    if variant == "requant_between":
        model = make_qdq_mlp(sizes, seed, relu_after_dq=True)
        _replace_init(model, "fc0_post_scale", np.asarray(2.0 ** -2, dtype=np.float32))
        _replace_init(model, "fc0_post_dq_scale", np.asarray(2.0 ** -2, dtype=np.float32))
        return model, "fc0_post_quant"
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
