"""Elementwise float functions of one quantized value in ONNX QDQ models, compiled as lookup tables (eltwise
``lut``): the table is onnxruntime's own output code for every input code, so the design equals onnxruntime (the
reference, run as ``run_reference`` runs it) bit for bit. Every activation of the issue is checked on >= 2000
random inputs at batch 1 and 4, every kernel co-simulated natively, with forced column splits; 16-bit inputs use
the trimmed table (parallel or scalar lookup); the refusals name the node and the true reason."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.frontends.onnx_qdq import load_qdq
from nn2aie.passes.pipeline import CompileOptions

EVENTS = 2000
WIDTH = 24
_NP = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16}


class Model:
    """x -> Q(in) -> DQ -> body -> Q(out) -> DQ -> y, with the body's scalar constants as initializers."""

    def __init__(self, in_frac: int = 4, in_type: int = TensorProto.INT8, out_frac: int = 6,
                 out_type: int = TensorProto.INT8, out_scale: float | None = None, out_zero: int = 0):
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0
        self.in_q = (2.0 ** -in_frac, in_type, 0)
        self.out_q = (out_scale or 2.0 ** -out_frac, out_type, out_zero)

    def const(self, value: float) -> str:
        self.count += 1
        name = f"k{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op: str, *inputs: str, **attrs) -> str:
        self.count += 1
        out = f"{op.lower()}{self.count}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=f"n_{out}", **attrs))
        return out

    def qdq(self, x: str, q: tuple, name: str) -> str:
        scale, dtype, zero = q
        self.inits += [numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_s"),
                       numpy_helper.from_array(np.asarray(zero, _NP[dtype]), f"{name}_z")]
        self.nodes.append(helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"], [f"{name}_q"],
                                           name=f"{name}_quant"))
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                                           [f"{name}_dq"], name=f"{name}_dequant"))
        return f"{name}_dq"

    def build(self, body, opset: int = 21) -> onnx.ModelProto:
        x = self.qdq("x", self.in_q, "xin")
        y = self.qdq(body(self, x), self.out_q, "yout")
        self.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
        graph = helper.make_graph(self.nodes, "lut", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                    ["N", WIDTH])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _gelu_erf(m: Model, x: str) -> str:  # torch.nn.GELU() as the TorchScript exporter writes it
    e = m.node("Erf", m.node("Div", x, m.const(1.4142135381698608)))
    return m.node("Mul", m.node("Mul", x, m.node("Add", e, m.const(1.0))), m.const(0.5))


def _gelu_tanh(m: Model, x: str) -> str:  # GELU(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    cube = m.node("Mul", m.node("Mul", x, x), x)
    inner = m.node("Mul", m.node("Add", x, m.node("Mul", cube, m.const(0.044715))), m.const(0.7978845834732056))
    return m.node("Mul", m.node("Mul", x, m.const(0.5)), m.node("Add", m.node("Tanh", inner), m.const(1.0)))


def _hardswish_by_hand(m: Model, x: str) -> str:  # x * relu6(x + 3) / 6
    r6 = m.node("Clip", m.node("Add", x, m.const(3.0)), m.const(0.0), m.const(6.0))
    return m.node("Div", m.node("Mul", x, r6), m.const(6.0))


# name -> (body, input frac, output frac); inputs span about +-8 (int8 at 2**-4)
FUNCTIONS = {
    "sigmoid": (lambda m, x: m.node("Sigmoid", x), 4, 7),
    "tanh": (lambda m, x: m.node("Tanh", x), 4, 7),
    "gelu_erf": (_gelu_erf, 4, 4),
    "gelu_tanh": (_gelu_tanh, 4, 4),
    "gelu_op": (lambda m, x: m.node("Gelu", x), 4, 4),  # ONNX Gelu (opset 20)
    "silu": (lambda m, x: m.node("Mul", x, m.node("Sigmoid", x)), 4, 4),
    "elu": (lambda m, x: m.node("Elu", x, alpha=1.0), 4, 4),
    "hardsigmoid": (lambda m, x: m.node("HardSigmoid", x, alpha=1.0 / 6, beta=0.5), 4, 7),
    "hardswish": (lambda m, x: m.node("HardSwish", x), 4, 4),
    "hardswish_by_hand": (_hardswish_by_hand, 4, 4),
    "exp": (lambda m, x: m.node("Exp", x), 4, 2),
    "reciprocal": (lambda m, x: m.node("Reciprocal", m.node("Add", m.node("Abs", x), m.const(0.25))), 4, 5),
    "sqrt": (lambda m, x: m.node("Sqrt", m.node("Abs", x)), 4, 4),
    "rsqrt": (lambda m, x: m.node("Reciprocal", m.node("Sqrt", m.node("Add", m.node("Abs", x), m.const(0.5)))), 4,
              6),
    "softplus": (lambda m, x: m.node("Softplus", x), 4, 4),
    "mish": (lambda m, x: m.node("Mul", x, m.node("Tanh", m.node("Softplus", x))), 4, 4),
    "log": (lambda m, x: m.node("Log", m.node("Add", m.node("Abs", x), m.const(0.0625))), 4, 4),
    "div_by_constant": (lambda m, x: m.node("Div", x, m.const(3.0)), 4, 5),
}


def function_model(name: str) -> onnx.ModelProto:
    body, fin, fout = FUNCTIONS[name]
    return Model(in_frac=fin, out_frac=fout).build(body)


@functools.cache
def compiled(name: str, batch: int):
    return compile_loaded(load_model(function_model(name)), CompileOptions(batch=batch))


def _inputs(seed: int = 0, spread: float = 9.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-spread, spread, (EVENTS, WIDTH)).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_equals_onnxruntime(name, batch):
    c = compiled(name, batch)
    x = _inputs()
    ref = c.reference(x)
    assert np.array_equal(c.emulate(x), ref)
    assert np.unique(ref).size >= 8, "the function should not be degenerate on these inputs"
    luts = [op for op in c.model.graph.ops if op.attrs.get("op") == "lut"]
    assert len(luts) == 1 and len(c.model.graph.ops) == 1, [op.kind for op in c.model.graph.ops]


@pytest.mark.parametrize("name", ["sigmoid", "gelu_erf", "silu", "mish", "div_by_constant"])
def test_native_cosimulation_with_forced_column_splits(name):
    model = load_model(function_model(name))
    op = model.graph.ops[0].name
    for tiles in (1, 3):
        c = compile_loaded(model, CompileOptions(batch=4, overrides={op: {"cas_num": tiles}}))
        assert c.plan.layers[0].cas_num == tiles
        x = _inputs(5)
        assert np.array_equal(c.emulate(x), c.reference(x))
        report = c.native_cosim(x[:12])
        assert len(report.kernels) == tiles and all(k.match for k in report.kernels)


def test_the_table_is_trimmed_where_the_function_is_constant():
    """Sigmoid at 2**-4 into 7 fractional bits saturates to 0 / 127 far from 0: the table keeps the rising part."""
    c = compiled("sigmoid", 4)
    op = c.model.graph.ops[0]
    table = c.model.graph.tensor(op.inputs[1])
    assert table.shape[0] < 256 and op.attrs["lo"] > -128
    assert table.data[0] == 0 and table.data[-1] == 127


@pytest.mark.parametrize("variant, in_frac", [("parallel", 7), ("scalar", 10)])
def test_sixteen_bit_inputs_use_the_trimmed_table(variant, in_frac):
    """A 16-bit input into a uint8 sigmoid at 2**-8, which rises over |x| < 6.2: at 2**-7 about 1,600 codes (the
    parallel table, 4 copies), at 2**-10 about 12,700 (one copy, looked up one element at a time); onnxruntime's
    int16 Q/DQ needs opset 21."""
    model = Model(in_frac=in_frac, in_type=TensorProto.INT16, out_frac=8, out_type=TensorProto.UINT8).build(
        lambda m, x: m.node("Sigmoid", x))
    c = compile_loaded(load_model(model), CompileOptions(batch=4))
    e = c.plan.layers[0]
    assert e.lut_variant == variant and e.key_dtype == "int16"
    x = np.random.default_rng(2).uniform(-8, 8, (EVENTS, WIDTH)).astype(np.float32)
    assert np.array_equal(c.emulate(x), c.reference(x))
    report = c.native_cosim(x[:8])
    assert report.kernels and all(k.match for k in report.kernels)


def test_a_table_larger_than_a_bank_is_refused_with_its_size():
    model = Model(in_frac=12, in_type=TensorProto.INT16, out_frac=8, out_type=TensorProto.UINT8).build(
        lambda m, x: m.node("Sigmoid", x))
    with pytest.raises(UnsupportedQuantizationError, match=r"table has \d+ entries.*16384 B bank.*fewer bits"):
        compile_loaded(load_model(model), CompileOptions(batch=4))


def test_float_scales_and_zero_points_need_no_power_of_two():
    """A table maps codes to codes: the input and output may have any scale and zero point (uint8 sigmoid output
    at 1/255 with zero point 0, a tanh output at 1/100 with zero point 128)."""
    for body, out in ((lambda m, x: m.node("Sigmoid", x), (1 / 255, TensorProto.UINT8, 0)),
                      (lambda m, x: m.node("Tanh", x), (1 / 100, TensorProto.UINT8, 128))):
        m = Model(in_frac=4)
        m.out_q = (float(np.float32(out[0])), out[1], out[2])
        m.in_q = (float(np.float32(0.07)), TensorProto.INT8, 0)
        c = compile_loaded(load_model(m.build(body)), CompileOptions(batch=4))
        x = _inputs(3)
        ref = c.reference(x)
        assert np.array_equal(c.emulate(x), ref) and np.unique(ref).size > 50


@pytest.mark.parametrize("case", ["gelu_unquantized", "all_ops_quantized"])
def test_onnxruntime_quantized_torch_mlps(case):
    """Float torch MLPs quantized by onnxruntime's quantize_static (float scales and zero points): Linear, GELU
    (its Erf pattern left in float between two quantizers), Linear, Sigmoid; and, with every op quantized (uint8
    activations), Linear, Sigmoid, Linear, Tanh, Linear. The dense layers take the float scales, the activations
    become tables; == onnxruntime."""
    import tempfile
    from pathlib import Path

    torch = pytest.importorskip("torch")
    from onnxruntime import quantization as q

    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8), nn.Sigmoid()) if case == "gelu_unquantized" \
        else nn.Sequential(nn.Linear(16, 32), nn.Sigmoid(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 8))
    kw = {"op_types_to_quantize": ["MatMul", "Gemm", "Sigmoid"], "activation_type": q.QuantType.QInt8} \
        if case == "gelu_unquantized" else {"activation_type": q.QuantType.QUInt8}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        torch.onnx.export(net.eval(), torch.rand(1, 16), str(src), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)

        class Reader(q.CalibrationDataReader):
            def __init__(self):
                self.rows = iter([{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(32)])

            def get_next(self):
                return next(self.rows, None)

        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ,
                          weight_type=q.QuantType.QInt8, **kw)
        model = onnx.load(str(dst))
    c = compile_loaded(load_model(model), CompileOptions(batch=4))
    kinds = [op.attrs.get("op", op.kind) for op in c.model.graph.ops]
    assert kinds.count("lut") == 2, kinds
    x = rng.standard_normal((EVENTS, 16)).astype(np.float32)
    ref = c.reference(x)
    assert np.array_equal(c.emulate(x), ref) and np.unique(ref).size > 50


# -- refusals -----------------------------------------------------------------------------------------------------

def test_a_per_channel_constant_in_a_function_is_refused():
    def body(m: Model, x: str) -> str:
        per_channel = "pc"
        m.inits.append(numpy_helper.from_array(np.linspace(0.5, 2, WIDTH).astype(np.float32), per_channel))
        return m.node("Sigmoid", m.node("Mul", x, per_channel))

    with pytest.raises(UnsupportedOpError, match=r"Mul.*constant pc of 24 elements.*per channel"):
        load_qdq(Model().build(body))


def test_a_function_of_an_unquantized_value_is_refused():
    """Sigmoid of a float sum (no QuantizeLinear between the MatMul and it): the reason is the missing quantizer."""
    def body(m: Model, x: str) -> str:
        m.inits += [numpy_helper.from_array(np.eye(WIDTH, dtype=np.int8) * 64, "w"),
                    numpy_helper.from_array(np.float32(2.0**-7), "w_s")]
        w = m.node("DequantizeLinear", "w", "w_s")
        return m.node("Sigmoid", m.node("MatMul", x, w))

    with pytest.raises(UnsupportedQuantizationError, match=r"matmul.*goes to .*Sigmoid.*without QuantizeLinear"):
        load_qdq(Model().build(body))


def test_a_function_whose_float_result_fans_out_is_refused():
    def body(m: Model, x: str) -> str:
        s = m.node("Sigmoid", x)
        return m.node("Add", m.node("Tanh", s), m.node("MatMul", s, "w"))

    m = Model()
    m.inits.append(numpy_helper.from_array(np.eye(WIDTH, dtype=np.float32), "w"))
    with pytest.raises(UnsupportedOpError, match=r"Sigmoid.*one quantized value"):
        load_qdq(m.build(body))
