"""ONNX QDQ frontend: bit-exactness against onnxruntime, structure of the logical graph, typed errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_loaded
from nn2aie.errors import BadFileError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.examples.builders import make_qdq_mlp, make_qdq_variant
from nn2aie.frontends.loader import load_model
from nn2aie.frontends.onnx_qdq import load_qdq, pow2_frac, run_reference
from nn2aie.ir.evaluate import bias_in_accumulator, evaluate, exact_matmul
from nn2aie.ir.logical import Graph
from nn2aie.numerics import quantize_float

JET = [16, 64, 32, 32, 5]
BIG = [384, 256, 200, 10]


def float_inputs(k: int, frac: int, n: int = 1200, seed: int = 7) -> np.ndarray:
    """Typical, large (saturating), negative, exact-tie and extreme float32 inputs."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.standard_normal((n // 2, k)),
        rng.standard_normal((n // 4, k)) * 40.0,  # saturates the input quantizer often
        rng.uniform(-6.0, 0.0, (n // 8, k)),  # negative
        (rng.integers(-300, 300, (n // 8, k)) + 0.5) * 2.0 ** -frac,  # exact ties: round half to even
    ]
    x = np.concatenate(parts).astype(np.float32)
    x[0, :4] = [np.inf, -np.inf, 1e30, -1e30]
    x[1, :4] = [1e-40, -1e-40, 0.0, -0.0]
    return x


def compare(model: onnx.ModelProto, x: np.ndarray, graph: Graph | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(nn2aie logical model output, onnxruntime output), both float32."""
    g = graph if graph is not None else load_qdq(model)
    xt = g.tensor(g.inputs[0]).type
    codes = quantize_float(x, xt.frac, xt.width, xt.signed, xt.min_code, xt.max_code)
    out = evaluate(g, {g.inputs[0]: codes})[g.outputs[0]]
    yt = g.tensor(g.outputs[0]).type
    return (out * 2.0 ** -yt.frac).astype(np.float32), run_reference(model, x)


def assert_bit_exact(model: onnx.ModelProto, n: int = 1200) -> Graph:
    g = load_qdq(model)
    assert g.source["reference_exact"] == "yes"
    x = float_inputs(g.tensor(g.inputs[0]).shape[-1], g.tensor(g.inputs[0]).type.frac, n)
    ours, ref = compare(model, x, g)
    assert ours.shape == ref.shape == (x.shape[0], g.tensor(g.outputs[0]).shape[-1])
    assert np.array_equal(ours, ref), f"{int((ours != ref).sum())} mismatches"
    # the test is meaningful: outputs are neither all zero nor all saturated
    yt = g.tensor(g.outputs[0]).type
    codes = ours.astype(np.float64) * 2.0 ** yt.frac
    assert np.mean(codes == 0) < 0.75  # a ReLU output layer zeroes about half
    assert np.mean((codes == yt.max_code) | (codes == yt.min_code)) < 0.5
    assert len(np.unique(codes)) > 20
    return g


# -- bit exactness ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [JET, BIG], ids=["jet", "384-256-200-10"])
def test_bit_exact_mlp(sizes):
    g = assert_bit_exact(make_qdq_mlp(sizes))
    assert [op.kind for op in g.ops] == ["dense"] * (len(sizes) - 1)
    assert [op.attrs["activation"] for op in g.ops] == ["relu"] * (len(sizes) - 2) + ["linear"]


def test_bit_exact_int16_activations():
    model = make_qdq_mlp([16, 32, 8], act_bits=16, in_frac=12, w_max=7)
    quant_types = {numpy_helper.to_array(i).dtype for i in model.graph.initializer if i.name.endswith("zero_point")}
    assert np.dtype(np.int16) in quant_types and np.dtype(np.uint8) not in quant_types
    g = assert_bit_exact(model)
    assert all(g.tensor(op.outputs[0]).type.width == 16 for op in g.ops)
    assert all(g.tensor(op.inputs[1]).type.width == 8 for op in g.ops)


@pytest.mark.parametrize("kw", [dict(gemm=True, trans_b=True), dict(gemm=True), dict(float_bias=True),
                                dict(float_weights=True), dict(relu_after_dq=True), dict(signed_hidden=True),
                                dict(bias=False, relu_last=True)],
                         ids=["gemm-transB", "gemm", "float-bias", "float-weights", "relu-after-dq",
                              "signed-hidden", "nobias-relulast"])
def test_bit_exact_variants(kw):
    g = assert_bit_exact(make_qdq_mlp(JET, seed=3, **kw), n=1000)
    last = "relu" if kw.get("relu_last") else "linear"
    assert [op.attrs["activation"] for op in g.ops] == ["relu"] * 3 + [last]
    assert all(len(op.inputs) == (2 if kw.get("bias") is False else 3) for op in g.ops)


def _cpu_has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def test_optimized_session_matches():
    """ORT_ENABLE_ALL fuses QDQ MatMul into com.microsoft.QGemm (integer GEMM); results stay identical.

    nn2aie's reference is the unoptimised session (the graph's own QDQ semantics). The fused uint8 x int8 kernel
    of onnxruntime saturates 16-bit pair sums on x86 CPUs without VNNI (onnxruntime's documented u8s8 caveat),
    so the uint8 cases are compared only where the CPU has VNNI; the int16 case everywhere.
    """
    cases = [dict(act_bits=16, in_frac=12, w_max=7)]
    if _cpu_has_vnni():
        cases += [{}, dict(relu_after_dq=True)]
    for kw in cases:
        model = make_qdq_mlp(JET if "act_bits" not in kw else [16, 32, 8], **kw)
        xt = load_qdq(model).tensor("x")
        x = float_inputs(xt.shape[-1], xt.type.frac, 600)
        assert np.array_equal(run_reference(model, x), run_reference(model, x, optimize=True))


def test_float_weights_fold_rounds_half_even_and_saturates():
    g = load_qdq(make_qdq_mlp([8, 6, 4], float_weights=True))
    w = g.tensor(g.ops[0].inputs[1]).data.reshape(-1)
    # builder puts 300, -300.5, 127.5, -128.5 LSBs first: saturate, saturate, tie->128 saturates, tie->-128
    assert w[:4].tolist() == [127, -128, 127, -128]
    g8 = load_qdq(make_qdq_mlp([8, 6, 4]))
    d = g.tensor(g.ops[0].inputs[1]).data - g8.tensor(g8.ops[0].inputs[1]).data
    assert np.abs(d.reshape(-1)[4:]).max() <= 1  # off-grid values round to a neighbour


def test_reference_inexact_beyond_float32_bound():
    """int16 activations with full-range int8 weights: ORT's float32 accumulator rounds past 2**24 LSBs.
    load_qdq flags it, and every mismatch sits on a sample where some layer's partial-sum bound
    sum_k |x_k w_kn| + |b_n| reaches 2**24 (below it float32 is exact)."""
    model = make_qdq_mlp(JET, act_bits=16, in_frac=12)
    g = load_qdq(model)
    assert g.source["reference_exact"] == "no"
    x = float_inputs(16, 12, 1000)
    ours, ref = compare(model, x, g)
    xt = g.tensor(g.inputs[0]).type
    vals = evaluate(g, {g.inputs[0]: quantize_float(x, xt.frac, xt.width, xt.signed, xt.min_code, xt.max_code)})
    big = np.zeros(x.shape[0], bool)
    for op in g.ops:
        w = g.tensor(op.inputs[1]).data
        bound = exact_matmul(np.abs(vals[op.inputs[0]]), np.abs(w)) + np.abs(bias_in_accumulator(g, op))
        big |= bound.max(axis=1) >= 2**24
    bad = np.any(ours != ref, axis=1)
    assert big.any()
    assert not np.any(bad & ~big)


# -- structure ---------------------------------------------------------------------------------------------


def test_graph_structure_and_names(tmp_path):
    model = make_qdq_mlp(JET)
    path = tmp_path / "jet.onnx"
    onnx.save(model, path)
    g = load_qdq(path)
    assert g.source == {"framework": "onnx-qdq", "file": str(path), "reference_exact": "yes"}
    assert [op.name for op in g.ops] == ["fc0_matmul", "fc1_matmul", "fc2_matmul", "fc3_matmul"]
    x = g.tensor(g.inputs[0])
    assert x.origin == "x" and x.shape == (16,)
    assert (x.type.width, x.type.frac, x.type.signed, x.type.rounding, x.type.overflow) == (8, 5, True,
                                                                                           "RND_CONV", "SAT")
    assert g.tensor(g.outputs[0]).origin == "y"
    w = g.tensor(g.ops[0].inputs[1])
    assert w.shape == (16, 64) and w.data.dtype == np.int64 and w.origin == "fc0_weight_q"
    assert (w.type.width, w.type.frac, w.type.signed) == (8, 6, True)
    b = g.tensor(g.ops[0].inputs[2])
    assert (b.type.width, b.type.frac, b.type.signed) == (32, 11, True) and b.shape == (64,)
    h = g.tensor(g.ops[0].outputs[0])
    assert h.shape == (64,) and not h.type.signed and h.type.width == 8 and h.origin == "fc0_q"
    assert g.tensor(g.outputs[0]).type.signed  # last layer int8
    assert Graph.from_json(g.to_json()).to_json() == g.to_json()


def test_weights_match_initializers_and_gemm_transpose():
    g = load_qdq(make_qdq_mlp([8, 6, 4], seed=2))
    gt = load_qdq(make_qdq_mlp([8, 6, 4], seed=2, gemm=True, trans_b=True))
    for a, b in zip(g.ops, gt.ops, strict=True):
        assert np.array_equal(g.tensor(a.inputs[1]).data, gt.tensor(b.inputs[1]).data)
        assert np.array_equal(g.tensor(a.inputs[2]).data, gt.tensor(b.inputs[2]).data)
    gf = load_qdq(make_qdq_mlp([8, 6, 4], seed=2, float_bias=True))
    for a, b in zip(g.ops, gf.ops, strict=True):
        assert np.array_equal(g.tensor(a.inputs[2]).data, gf.tensor(b.inputs[2]).data)


def test_builder_deterministic():
    a = make_qdq_mlp(JET, seed=1).SerializeToString()
    assert a == make_qdq_mlp(JET, seed=1).SerializeToString()
    assert a != make_qdq_mlp(JET, seed=2).SerializeToString()
    model = make_qdq_mlp(JET)
    assert model.opset_import[0].version == 21
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def _integer_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the final DequantizeLinear: the model then ends in int8 codes."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    last = m.graph.node[-1]
    assert last.op_type == "DequantizeLinear"
    q_out = last.input[0]
    m.graph.node.remove(last)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(q_out, TensorProto.INT8, ["batch", 5]))
    return m


def test_integer_output_model():
    model = _integer_output(make_qdq_mlp(JET))
    g = load_qdq(model)
    assert g.tensor(g.outputs[0]).origin == "fc3_q"
    x = float_inputs(16, 5, 300)
    ours, ref = compare(model, x, g)
    assert np.array_equal(ours, ref)


def test_fixed_batch_one():
    model = make_qdq_mlp([8, 6, 4])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    x = float_inputs(8, 5, 40)
    assert np.array_equal(run_reference(model, x), run_reference(make_qdq_mlp([8, 6, 4]), x))


def test_pow2_frac():
    assert pow2_frac(1.0) == 0 and pow2_frac(0.125) == 3 and pow2_frac(8.0) == -3
    for bad in (0.0, -0.5, 0.3, float("nan"), float("inf")):
        assert pow2_frac(bad) is None


# -- errors -------------------------------------------------------------------------------------------------

ERROR_TYPES = {
    "non_pow2_scale": (UnsupportedQuantizationError, "differ from those of"),  # Q and DQ of a pair disagree
    "zero_scale": (UnsupportedQuantizationError, "positive"),
    "negative_scale": (UnsupportedQuantizationError, "positive"),
    "nan_scale": (UnsupportedQuantizationError, "positive"),
    "nonzero_zero_point": (UnsupportedQuantizationError, "zero point"),
    # a Sigmoid is a lookup table of one quantized value: here it reads the dense's float sum, not a quantized value
    "sigmoid": (UnsupportedQuantizationError, "without QuantizeLinear"),
    "gemm_alpha": (UnsupportedOpError, "alpha"),
    "dynamic_weights": (UnsupportedOpError, "dynamic weights"),
}


@pytest.mark.parametrize("variant", sorted(ERROR_TYPES))
def test_errors_name_the_node(variant):
    model, node = make_qdq_variant(variant)
    err_type, words = ERROR_TYPES[variant]
    with pytest.raises(err_type) as info:
        load_qdq(model)
    text = str(info.value)
    assert node in text and words in text, text
    assert info.value.hint, "every error says what to do"


def test_per_axis_weight_scales_compile_exactly():
    """One power-of-two scale per output channel (all equal here): the float-scale path, same codes as per tensor."""
    model, _ = make_qdq_variant("per_axis_scale")
    compiled = compile_loaded(load_model(model))
    x = float_inputs(8, 5, 2000)
    assert np.array_equal(compiled.emulate(x), compiled.reference(x))
    plain = compile_loaded(load_model(make_qdq_mlp([8, 6, 4])))
    assert np.array_equal(compiled.emulate(x), plain.emulate(x))


def test_error_mentions_op_type():
    model, _ = make_qdq_variant("non_pow2_scale")
    with pytest.raises(UnsupportedQuantizationError, match=r"fc0_quant \(QuantizeLinear\).*0\.0123"):
        load_qdq(model)
    model, _ = make_qdq_variant("sigmoid")
    with pytest.raises(UnsupportedQuantizationError, match=r"fc0_relu \(Sigmoid\)"):
        load_qdq(model)


def test_float_bias_off_grid_refused():
    model = make_qdq_mlp([8, 6, 4], float_bias=True)
    init = next(i for i in model.graph.initializer if i.name == "fc1_bias_f")
    value = numpy_helper.to_array(init).copy()
    value[0] += np.float32(2.0 ** -20)
    init.CopyFrom(numpy_helper.from_array(value, "fc1_bias_f"))
    with pytest.raises(UnsupportedQuantizationError, match="fc1_bias_f.*accumulator LSB"):
        load_qdq(model)


def test_bad_files(tmp_path):
    data = make_qdq_mlp(JET).SerializeToString()
    for name, blob in (("truncated.onnx", data[: len(data) // 2]), ("garbage.onnx", b"\x00\xff" * 50),
                       ("empty.onnx", b"")):
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(BadFileError) as info:
            load_qdq(path)
        assert name in str(info.value)
    with pytest.raises(BadFileError, match="no such file"):
        load_qdq(tmp_path / "missing.onnx")
