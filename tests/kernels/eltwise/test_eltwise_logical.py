"""The eltwise family's logical model against the source frameworks: onnxruntime computes the float op (inputs are
exact dequantised codes), qonnx's own Quant (``int_quant``) brings the float result into the output type with each
QONNX rounding mode. Bit-exact on random codes of random types, extremes included; and verify's refusals."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper

from nn2aie.errors import InternalCheckError
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType

N = 3000
# IR rounding -> QONNX rounding_mode (the reference's name for the same function)
QONNX_MODE = {"RND_CONV": "ROUND", "TRN": "FLOOR", "CEIL": "CEIL", "TRN_ZERO": "DOWN", "UP": "UP",
              "RND_INF": "HALF_UP", "RND_ZERO": "HALF_DOWN"}


def ort_node(op_type: str, arrays: list[np.ndarray], opset: int = 13, **attrs) -> np.ndarray:
    """Run one ONNX node with onnxruntime (CPU, no graph optimisation) on float32 inputs."""
    import onnxruntime as ort

    names = [f"i{k}" for k in range(len(arrays))]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
                                              for n, a in zip(names, arrays, strict=True)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {n: a.astype(np.float32) for n, a in zip(names, arrays, strict=True)})[0]


def qonnx_codes(values: np.ndarray, t: FixedType) -> np.ndarray:
    """QONNX Quant of float values into ``t`` (scale 2**-frac), as integer codes."""
    from qonnx.custom_op.general.quant import quant

    scale = np.float64(2.0 ** -t.frac)
    q = quant(np.asarray(values, dtype=np.float64), scale, np.float64(0), np.float64(t.width), int(t.signed),
              int(t.narrow), QONNX_MODE[t.rounding])
    return np.rint(np.asarray(q, dtype=np.float64) / scale).astype(np.int64)


def random_type(rng: np.random.Generator, signed: bool | None = None) -> FixedType:
    signed = bool(rng.integers(2)) if signed is None else signed
    return FixedType(int(rng.integers(3, 9)), int(rng.integers(-2, 9)), signed)


def random_codes(rng: np.random.Generator, t: FixedType, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.integers(t.min_code, t.max_code + 1, size=shape)
    x[:5] = t.max_code
    x[5:10] = t.min_code
    return x.astype(np.int64)


def value(codes: np.ndarray, t: FixedType) -> np.ndarray:
    return np.ldexp(codes.astype(np.float64), -t.frac).astype(np.float32)


def one_op_graph(kind: str, a_t: FixedType, shape: tuple[int, ...], y_t: FixedType, b: Tensor | None = None,
                 **attrs) -> Graph:
    tensors = {"a": Tensor("a", shape, a_t), "y": Tensor("y", shape, y_t)}
    inputs = ["a"]
    if b is not None:
        tensors["b"] = b
        inputs.append("b")
    graph = Graph("t", tensors, [Op("e", "eltwise", inputs, ["y"], {"op": kind, **attrs})],
                  [n for n in inputs if tensors[n].data is None], ["y"])
    graph.verify()
    return graph


ROUNDINGS = sorted(QONNX_MODE)


def output_type(rng: np.random.Generator, kind: str, a_t: FixedType, b_t: FixedType, trial: int) -> FixedType:
    """An output type whose range roughly covers the result (a little saturation, some rounding)."""
    amax, bmax = max(-a_t.min_code, a_t.max_code), max(-b_t.min_code, b_t.max_code)
    if kind == "mul":
        frac, bound = a_t.frac + b_t.frac, amax * bmax
    else:
        frac = max(a_t.frac, b_t.frac)
        bound = (amax << (frac - a_t.frac)) + (bmax << (frac - b_t.frac))
    width = int(rng.integers(5, 9))
    signed = kind != "max" or bool(rng.integers(2))
    drop = max(0, bound.bit_length() - (width - 1) + int(rng.integers(-1, 2)))
    return FixedType(width, frac - drop, signed, ROUNDINGS[trial % len(ROUNDINGS)], "SAT", narrow=bool(trial % 2))


@pytest.mark.parametrize("kind", ["add", "sub", "mul", "max", "min"])
@pytest.mark.parametrize("operand", ["activation", "scalar", "channel", "full"])
def test_binary_ops_equal_onnxruntime_then_qonnx_quant(kind, operand):
    pytest.importorskip("qonnx")
    rng = np.random.default_rng(zlib.crc32(f"{kind}-{operand}".encode()))
    shape = (3, 4)
    distinct = []
    for trial in range(6):
        a_t, b_t = random_type(rng), random_type(rng)
        y_t = output_type(rng, kind, a_t, b_t, trial)
        a = random_codes(rng, a_t, (N,) + shape)
        if operand == "activation":
            b_tensor, b = Tensor("b", shape, b_t), random_codes(rng, b_t, (N,) + shape)
            b_ref = value(b, b_t)
        else:
            cshape = {"scalar": (), "channel": (shape[-1],), "full": shape}[operand]
            data = rng.integers(b_t.min_code, b_t.max_code + 1, size=cshape).astype(np.int64)
            b_tensor, b = Tensor("b", cshape, b_t, data), None
            b_ref = np.broadcast_to(value(data, b_t), (N,) + shape)
        g = one_op_graph(kind, a_t, shape, y_t, b_tensor)
        ins = {"a": a} if b is None else {"a": a, "b": b}
        ours = evaluate(g, ins)["y"]
        ref_float = ort_node({"add": "Add", "sub": "Sub", "mul": "Mul", "max": "Max", "min": "Min"}[kind],
                             [value(a, a_t), b_ref])
        assert np.array_equal(ours, qonnx_codes(ref_float, y_t)), (kind, operand, a_t, b_t, y_t)
        distinct.append(len(np.unique(ours)))
    assert max(distinct) > 8  # the comparison is not degenerate


@pytest.mark.parametrize("kind", ["relu", "clip", "leaky_relu", "identity"])
def test_unary_ops_equal_onnxruntime_then_qonnx_quant(kind):
    pytest.importorskip("qonnx")
    rng = np.random.default_rng(5)
    shape = (6,)
    for trial in range(6):
        a_t = random_type(rng, signed=True)
        y_t = FixedType(int(rng.integers(4, 9)), int(rng.integers(-1, 9)), bool(rng.integers(2)),
                        ROUNDINGS[trial % len(ROUNDINGS)], "SAT")
        a = random_codes(rng, a_t, (N,) + shape)
        attrs: dict = {}
        if kind == "relu":
            ref = ort_node("Relu", [value(a, a_t)])
        elif kind == "identity":
            ref = value(a, a_t)
        elif kind == "leaky_relu":
            s = int(rng.integers(0, 5))
            attrs["alpha_shift"] = s
            ref = ort_node("LeakyRelu", [value(a, a_t)], alpha=float(2.0 ** -s))
        else:
            lo = [int(rng.integers(-40, 0)), int(rng.integers(0, 6))] if trial != 1 else None
            hi = [int(rng.integers(1, 60)), int(rng.integers(-1, 6))] if trial != 2 else None
            attrs.update(lo=lo, hi=hi)
            bounds = [np.full((1,), np.ldexp(float(b[0]), -b[1]) if b is not None else inf, np.float32)
                      for b, inf in ((lo, -np.inf), (hi, np.inf))]
            ref = ort_node("Clip", [value(a, a_t)] + [b.reshape(()) for b in bounds])
        g = one_op_graph(kind, a_t, shape, y_t, **attrs)
        ours = evaluate(g, {"a": a})["y"]
        assert np.array_equal(ours, qonnx_codes(ref, y_t)), (kind, a_t, y_t, attrs)


def test_identity_wrap_keeps_the_low_bits():
    a_t, y_t = FixedType(8, 2, True), FixedType(4, 1, True, "TRN", "WRAP")
    g = one_op_graph("identity", a_t, (1,), y_t)
    a = np.arange(-128, 128).reshape(-1, 1)
    want = (a >> 1) & 15
    want = np.where(want > 7, want - 16, want)
    assert np.array_equal(evaluate(g, {"a": a})["y"], want)


@pytest.mark.parametrize("mutate, text", [
    (lambda g: g.ops[0].attrs.update(op="pow"), "unknown"),
    (lambda g: g.ops[0].inputs.append("a"), "takes 1 input"),
    (lambda g: g.ops[0].attrs.update(alpha_shift=-1, op="leaky_relu"), "alpha_shift"),
    (lambda g: g.ops[0].attrs.update(op="clip", lo=[1.5, 2]), "clip bound"),
    (lambda g: g.ops[0].attrs.update(op="relu", lo=[1, 2]), "only clip"),
    (lambda g: g.tensors.__setitem__("y", Tensor("y", (5,), FixedType(8, 0))), "output shape"),
    (lambda g: g.ops[0].attrs.update(op="leaky_relu", alpha_shift=70), "62 bits"),
])
def test_verify_refuses(mutate, text):
    g = one_op_graph("relu", FixedType(8, 2), (4,), FixedType(8, 2))
    mutate(g)
    with pytest.raises(InternalCheckError, match=text):
        g.verify()


def test_verify_refuses_bad_operands():
    a_t = FixedType(8, 2)
    bad_const = Tensor("b", (3,), a_t, np.zeros(3, np.int64))
    with pytest.raises(InternalCheckError, match="per-channel"):
        one_op_graph("add", a_t, (4,), a_t, bad_const)
    out_of_range = Tensor("b", (), a_t, np.asarray(300))
    with pytest.raises(InternalCheckError, match="outside the range"):
        one_op_graph("add", a_t, (4,), a_t, out_of_range)
    with pytest.raises(InternalCheckError, match="differ"):
        one_op_graph("add", a_t, (4,), a_t, Tensor("b", (2, 2), a_t))
    tensors = {"c": Tensor("c", (4,), a_t, np.zeros(4, np.int64)), "a": Tensor("a", (4,), a_t),
               "y": Tensor("y", (4,), a_t)}
    g = Graph("t", tensors, [Op("e", "eltwise", ["c", "a"], ["y"], {"op": "add"})], ["a"], ["y"])
    with pytest.raises(InternalCheckError, match="constants go second"):
        g.verify()


def test_round_trip_json():
    g = one_op_graph("clip", FixedType(8, 2), (4,), FixedType(6, 1), lo=[-3, 1], hi=None)
    assert Graph.from_json(g.to_json()).to_json() == g.to_json()
