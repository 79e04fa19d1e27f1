"""Valid seed models for the fuzzer, built in-process with ``onnx.helper`` (no torch export: fast and deterministic).

QDQ seeds come from ``nn2aie.examples.builders.make_qdq_mlp`` in its different styles (MatMul+Add or Gemm, transB,
float or int32 bias, float weights behind QuantizeLinear, ReLU after the DequantizeLinear, int8 / int16, with and
without bias and final ReLU). QONNX seeds are hand-built ``Quant`` graphs of the shape Brevitas exports
(input Quant -> Gemm/MatMul(+Add) -> Relu -> Quant -> ... -> Quant) with several bit widths and rounding modes.

Every seed compiles and is bit-exact against its source framework; ``tests/fuzz/test_fuzz_frontends.py`` checks it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nn2aie.examples.builders import make_qdq_mlp

QONNX_DOMAIN = "qonnx.custom_op.general"


@dataclass(frozen=True)
class Seed:
    name: str
    framework: str  # "onnx-qdq" | "qonnx"
    sizes: tuple[int, ...]
    kwargs: tuple[tuple[str, object], ...] = field(default=())

    def build(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.ParseFromString(_serialized(self))
        return model


@functools.cache
def _serialized(seed: Seed) -> bytes:
    kwargs = dict(seed.kwargs)
    if seed.framework == "onnx-qdq":
        model = make_qdq_mlp(list(seed.sizes), name=seed.name, **kwargs)
    else:
        model = make_qonnx_mlp(list(seed.sizes), name=seed.name, **kwargs)
    return model.SerializeToString(deterministic=True)


def _qdq(name: str, sizes: tuple[int, ...], **kwargs) -> Seed:
    return Seed(name, "onnx-qdq", sizes, tuple(sorted(kwargs.items())))


def _qonnx(name: str, sizes: tuple[int, ...], **kwargs) -> Seed:
    return Seed(name, "qonnx", sizes, tuple(sorted(kwargs.items())))


SEEDS: tuple[Seed, ...] = (
    _qdq("qdq_small", (8, 6, 4)),
    _qdq("qdq_jet", (16, 64, 32, 32, 5), seed=21),
    _qdq("qdq_one_layer", (12, 5), seed=3),
    _qdq("qdq_odd_nobias", (33, 17, 9), seed=4, bias=False, relu_last=True),
    _qdq("qdq_int16", (16, 24, 8), seed=5, act_bits=16),
    _qdq("qdq_gemm_transb", (10, 12, 6), seed=6, gemm=True, trans_b=True),
    _qdq("qdq_gemm_nobias", (20, 8, 3), seed=7, gemm=True, bias=False),
    _qdq("qdq_float_bias", (9, 7, 5), seed=8, float_bias=True),
    _qdq("qdq_float_weights", (14, 10, 4), seed=9, float_weights=True),
    _qdq("qdq_relu_after_dq", (12, 10, 8, 4), seed=10, relu_after_dq=True),
    _qdq("qdq_signed_hidden", (40, 24, 6), seed=11, signed_hidden=True, w_max=31),
    _qonnx("qonnx_gemm", (8, 6, 4)),
    _qonnx("qonnx_matmul_add", (12, 9, 5), seed=1, gemm=False),
    _qonnx("qonnx_float_bias", (10, 7, 3), seed=2, bias="float"),
    _qonnx("qonnx_4bit_floor", (16, 12, 6), seed=3, act_bits=4, w_bits=4, mode="FLOOR"),
    _qonnx("qonnx_nobias_transpose", (6, 8, 8, 2), seed=4, bias=None, gemm=False, transpose=True),
)

SEED_BY_NAME = {s.name: s for s in SEEDS}


def make_qonnx_mlp(sizes: list[int], seed: int = 0, act_bits: int = 8, w_bits: int = 8, gemm: bool = True,
                   bias: str | None = "quant", mode: str = "ROUND", transpose: bool = False,
                   name: str = "qonnx_mlp") -> onnx.ModelProto:
    """A QONNX MLP with power-of-two ``Quant`` nodes (batch 1, opset 13 + the qonnx domain).

    ``gemm``: Gemm(transB=1) with W stored [N, K]; else MatMul (+ Add bias) with W [K, N] (``transpose`` stores
    it [N, K] behind a Transpose node). ``bias``: "quant" (Quant of a float initializer at the accumulator LSB),
    "float" (a float initializer exactly on the accumulator grid) or None. Hidden activations: Relu -> unsigned
    Quant; the output: a signed Quant. ``mode`` is the activation rounding mode.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    count = [0]

    def fresh(base: str) -> str:
        count[0] += 1
        return f"{base}_{count[0]}"

    def const(value, base: str) -> str:
        nm = fresh(base)
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), nm))
        return nm

    def quant(x: str, frac: int, bits: int, signed: int, narrow: int, rounding: str, base: str) -> str:
        ins = [x, const(2.0 ** -frac, f"{base}_scale"), const(0.0, f"{base}_zeropt"), const(float(bits), f"{base}_bw")]
        out = fresh(f"{base}_out")
        nodes.append(helper.make_node("Quant", ins, [out], name=fresh(base), domain=QONNX_DOMAIN, signed=signed,
                                      narrow=narrow, rounding_mode=rounding))
        return out

    def node(op: str, ins: list[str], base: str, **attrs) -> str:
        out = fresh(f"{base}_out")
        nodes.append(helper.make_node(op, ins, [out], name=fresh(base), **attrs))
        return out

    in_frac, w_frac, hid_frac = 4, 6, 3
    x = quant("x", in_frac, act_bits, 1, 0, "ROUND", "InQuant")
    x_frac = in_frac
    n_layers = len(sizes) - 1
    for i in range(n_layers):
        k, n = sizes[i], sizes[i + 1]
        last = i == n_layers - 1
        w = rng.normal(0, 0.4, size=(k, n))
        acc_frac = x_frac + w_frac
        if gemm:
            wq = quant(const(w.T, f"fc{i}_W"), w_frac, w_bits, 1, 1, "ROUND", f"fc{i}_WQuant")
        elif transpose:
            wq = node("Transpose", [quant(const(w.T, f"fc{i}_W"), w_frac, w_bits, 1, 1, "ROUND", f"fc{i}_WQuant")],
                      f"fc{i}_WT", perm=[1, 0])
        else:
            wq = quant(const(w, f"fc{i}_W"), w_frac, w_bits, 1, 1, "ROUND", f"fc{i}_WQuant")
        b_name = None
        if bias == "quant":
            b_name = quant(const(rng.normal(0, 0.3, size=n), f"fc{i}_b"), acc_frac, 32, 1, 0, "ROUND",
                           f"fc{i}_BQuant")
        elif bias == "float":
            b_name = const(rng.integers(-2000, 2000, size=n) * 2.0 ** -acc_frac, f"fc{i}_bf")
        if gemm:
            y = node("Gemm", [x, wq] + ([b_name] if b_name else []), f"fc{i}", transB=1)
        else:
            y = node("MatMul", [x, wq], f"fc{i}")
            if b_name:
                y = node("Add", [y, b_name], f"fc{i}_bias")
        if last:
            x = quant(y, hid_frac - 1, act_bits, 1, 0, mode, "OutQuant")
        else:
            x = quant(node("Relu", [y], f"fc{i}_relu"), hid_frac, act_bits, 0, 0, mode, f"fc{i}_ActQuant")
            x_frac = hid_frac
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="tests.fuzz.seeds")
    model.ir_version = 8
    return model
