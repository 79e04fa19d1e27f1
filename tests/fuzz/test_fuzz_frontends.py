"""Fuzzing the frontends and the compile pipeline (docs/testing.md).

Contract checked on every case: ``nn2aie.api.compile_path`` either succeeds with a design that is bit-exact
(emulator == logical model == source framework), or raises a typed ``Nn2aieError`` (not ``InternalCheckError``)
with a non-empty ``where`` and ``reason``; no other exception, no hang (time limit per case), no crash.

- ``test_ci_case``: a deterministic subset (run seed ``CI_SEED``, ``CI_CASES`` cases) in the default run
- ``test_large_run``: the documented 600-case run (``-m slow``; the same as ``python -m tests.fuzz.run``)
- the harness itself: hangs, crashes, untyped and typed exceptions are classified as such
- regressions: one hand-made model per bug the fuzzer found, each asserting the typed error (or the successful,
  bit-exact compile) it must give now
"""

from __future__ import annotations

import collections
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nn2aie.api import compile_path
from nn2aie.errors import BadFileError, Nn2aieError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

from .harness import GOOD, Worker, run_cases, verify_compiled
from .mutators import CATEGORY_WEIGHTS, make_case, make_cases
from .run import category
from .seeds import SEED_BY_NAME, SEEDS

CI_SEED = 20250
CI_CASES = 100
CI_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def worker():
    with Worker() as w:
        yield w


def _run_one(case, worker, timeout=CI_TIMEOUT_S, probe=None):
    return next(run_cases([case], timeout=timeout, worker=worker, probe=probe))


# --------------------------------------------------------------------------------------------------------------
# the fuzz cases
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [s.name for s in SEEDS])
def test_seed_models_compile_bit_exact(seed, tmp_path):
    """Every seed is a valid model that compiles bit-exactly (so mutations start from a good model)."""
    path = tmp_path / "seed.onnx"
    onnx.save(SEED_BY_NAME[seed].build(), path)
    compiled = compile_path(path, CompileOptions())
    status, detail = verify_compiled(compiled)
    assert status == "ok", detail
    assert compiled.model.framework == SEED_BY_NAME[seed].framework


@pytest.mark.parametrize("index", range(CI_CASES))
def test_ci_case(index, worker):
    outcome = _run_one(make_case(CI_SEED, index), worker)
    assert outcome.good, f"{outcome.line()}\n{outcome.traceback}"


def test_ci_subset_is_varied(worker):
    """The CI subset covers every kind of case and ends in successes and several typed error classes."""
    cases = make_cases(CI_SEED, CI_CASES)
    kinds = collections.Counter(category(c) for c in cases)
    assert set(kinds) == set(CATEGORY_WEIGHTS), kinds
    outcomes = list(run_cases(cases, worker=worker))
    status = collections.Counter(o.status for o in outcomes)
    classes = {o.error_class for o in outcomes if o.status == "typed"}
    assert status["ok"] >= 10 and status["typed"] >= 30, status
    assert {"BadFileError", "UnsupportedQuantizationError", "UnsupportedOpError"} <= classes, classes


def test_cases_are_deterministic():
    a, b = make_case(7, 123), make_case(7, 123)
    assert (a.payload, a.mutations, a.options, a.kind) == (b.payload, b.mutations, b.options, b.kind)
    assert make_case(7, 124).payload != a.payload or make_case(7, 124).mutations != a.mutations


@pytest.mark.slow
def test_large_run():
    """The documented run: ``python -m tests.fuzz.run --cases 600 --seed 0``."""
    outcomes = list(run_cases(make_cases(0, 600)))
    bad = [o for o in outcomes if not o.good]
    assert not bad, "\n".join(o.line() + "\n" + o.traceback for o in bad[:20])
    assert len(outcomes) == 600


# --------------------------------------------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------------------------------------------
def test_harness_detects_hang_and_recovers(worker):
    case = make_case(CI_SEED, 0)
    outcome = _run_one(case, worker, timeout=1.0, probe="sleep")
    assert outcome.status == "hang" and not outcome.good
    assert 1.0 <= outcome.seconds < 30
    valid = make_case(CI_SEED, next(i for i in range(200) if make_case(CI_SEED, i).mutations == ["unmodified seed"]))
    assert _run_one(valid, worker).status == "ok"  # a fresh worker took over


def test_harness_classifies_crash_untyped_and_typed(worker):
    case = make_case(CI_SEED, 0)
    assert _run_one(case, worker, probe="exit").status == "crash"
    untyped = _run_one(case, worker, probe="raise")
    assert (untyped.status, untyped.error_class) == ("untyped", "ZeroDivisionError")
    assert "ZeroDivisionError: probe" in untyped.traceback
    typed = _run_one(case, worker, probe="typed")
    assert (typed.status, typed.error_class) == ("typed", "BadFileError") and typed.status in GOOD


# --------------------------------------------------------------------------------------------------------------
# regressions: models the fuzzer found, reduced by hand
# --------------------------------------------------------------------------------------------------------------
def _save(model: onnx.ModelProto, tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())  # no onnx.checker on the way
    return path


def _set(model: onnx.ModelProto, name: str, value) -> None:
    for init in model.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(np.asarray(value), name))
            return
    raise KeyError(name)


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name == name)


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _refused(model, tmp_path, cls, where_part: str, reason_part: str) -> Nn2aieError:
    with pytest.raises(cls) as info:
        compile_path(_save(model, tmp_path), CompileOptions())
    err = info.value
    assert where_part in err.where, err
    assert reason_part in err.reason, err
    assert err.hint
    return err


def _compiles_bit_exact(model, tmp_path) -> None:
    compiled = compile_path(_save(model, tmp_path), CompileOptions())
    status, detail = verify_compiled(compiled)
    assert status == "ok", detail
    assert "bit-exact against" in detail


def qdq(name: str = "qdq_small") -> onnx.ModelProto:
    return SEED_BY_NAME[name].build()


def qonnx(name: str = "qonnx_gemm") -> onnx.ModelProto:
    return SEED_BY_NAME[name].build()


def test_qdq_bias_scale_far_finer_than_accumulator(tmp_path):
    """Was OverflowError: a bias scale 2**-149 is 138 bits finer than the accumulator LSB."""
    m = qdq()
    _set(m, "fc0_bias_dq_scale", np.float32(2.0**-149))
    _refused(m, tmp_path, UnsupportedQuantizationError, "fc0_bias_q", "finer than the accumulator LSB")
    _set(m, "fc0_bias_q", np.zeros(6, np.int32))  # all-zero codes are on every grid
    _compiles_bit_exact(m, tmp_path)


def test_initializer_dims_disagree_with_data(tmp_path):
    """Was ValueError (cannot reshape) from numpy_helper."""
    m = qdq()
    init = _init(m, "fc0_bias_q")
    del init.dims[:]
    init.dims.extend([3])
    _refused(m, tmp_path, BadFileError, "initializer fc0_bias_q", "cannot be read")


def test_duplicate_node_names(tmp_path):
    """Was accepted, then onnxruntime refused the model in the bit-exactness check."""
    m = qdq()
    _node(m, "fc1_matmul").name = "fc0_matmul"
    _refused(m, tmp_path, BadFileError, "node fc0_matmul", "used by 2 nodes")


@pytest.mark.parametrize("domain, version, message", [("", 21, "twice"), ("ai.onnx", 99, "twice"),
                                                      ("ai.onnx.ml", 13, "does not define")])
def test_opset_imports(domain, version, message, tmp_path):
    m = qdq()
    m.opset_import.append(helper.make_opsetid(domain, version))
    _refused(m, tmp_path, BadFileError, "file", message)


def test_unused_unknown_opset_import_is_harmless(tmp_path):
    """Was accepted but unverifiable: onnxruntime refuses com.microsoft v99 even though no node uses it."""
    for make in (qdq, qonnx):
        m = make()
        m.opset_import.append(helper.make_opsetid("com.microsoft", 99))
        _compiles_bit_exact(m, tmp_path)


def test_opset_older_than_onnxruntime_supports(tmp_path):
    m = qonnx()
    next(i for i in m.opset_import if i.domain == "").version = 5
    _refused(m, tmp_path, UnsupportedOpError, "file", "opset 5")


def test_value_info_contradicting_the_graph(tmp_path):
    """Was accepted; onnxruntime: 'Type (tensor(int64)) of output arg (fc0_q) ... does not match'."""
    m = qdq()
    m.graph.value_info.append(helper.make_tensor_value_info("fc0_q", TensorProto.INT64, [5, 0]))
    _refused(m, tmp_path, BadFileError, "model qdq_small", "inconsistent under ONNX type/shape inference")
    m = qonnx()
    name = m.graph.output[0].name
    m.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4]))
    _refused(m, tmp_path, BadFileError, f"tensor {name}", "more than one type declaration")


@pytest.mark.parametrize("make", [qdq, qonnx])
def test_fixed_batch_zero_and_huge(make, tmp_path):
    """Batch 0 was accepted (onnxruntime refuses every input); 2**63-1 made the reference allocate padding."""
    m = make()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    _refused(m, tmp_path, BadFileError, "graph input x", "dimension 0")
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2**63 - 1
    _refused(m, tmp_path, UnsupportedOpError, "graph input x", "fixed batch dimension")


def test_qdq_scale_of_rank_two(tmp_path):
    """Was accepted (size 1); onnxruntime refuses a [1, 1] scale of QuantizeLinear."""
    m = qdq()
    _set(m, "input_scale", np.full((1, 1), 2.0**-5, np.float32))
    _refused(m, tmp_path, BadFileError, "input_quant", "scalar or 1-D scale")


def test_output_without_element_type(tmp_path):
    m = qdq()
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.UNDEFINED
    _refused(m, tmp_path, BadFileError, "graph output y", "no defined tensor element type")


def test_qonnx_operator_domains(tmp_path):
    """MatMul in the qonnx domain and Quant in a domain qonnx does not know were parsed as if in the right one."""
    m = qonnx("qonnx_matmul_add")
    layer = next(n for n in m.graph.node if n.op_type == "MatMul")
    layer.domain = "qonnx.custom_op.general"
    _refused(m, tmp_path, UnsupportedOpError, layer.name, "from domain 'qonnx.custom_op.general'")
    m = qonnx()
    quant = next(n for n in m.graph.node if n.op_type == "Quant")
    quant.domain = "my.quantizers"
    m.opset_import.append(helper.make_opsetid("my.quantizers", 1))
    _refused(m, tmp_path, UnsupportedOpError, quant.name, "not the QONNX quantizer")


def test_qonnx_nan_weights_and_huge_float_bias(tmp_path):
    """Both were InternalCheckError (constant codes outside the range of their type)."""
    m = qonnx()
    w = next(i for i in m.graph.initializer if i.name.startswith("fc0_W"))
    values = numpy_helper.to_array(w).copy()
    values[0, 0] = np.nan
    _set(m, w.name, values)
    _refused(m, tmp_path, UnsupportedQuantizationError, w.name, "contains NaN")
    m = qonnx("qonnx_float_bias")
    b = next(i for i in m.graph.initializer if i.name.startswith("fc0_bf"))
    values = numpy_helper.to_array(b).copy()
    values[0] = -1e30
    _set(m, b.name, values)
    _refused(m, tmp_path, UnsupportedQuantizationError, "fc0", "does not fit 32 bits")


def test_qonnx_parameter_types_and_shapes(tmp_path):
    """A uint16 bit width gave a bias range qonnx computes differently (not bit-exact); a list-valued 'signed'
    attribute was read as true; a [3] scale on a [6] bias, an empty zero point and a string zero point were
    accepted while qonnx cannot execute them."""
    m = qonnx()
    bw = next(i.name for i in m.graph.initializer if i.name.startswith("fc1_BQuant_bw"))
    _set(m, bw, np.uint16(32))
    _refused(m, tmp_path, BadFileError, "fc1_BQuant", "QONNX Quant takes float32")
    m = qonnx()
    act = next(n for n in m.graph.node if n.name.startswith("fc0_ActQuant"))
    keep = [a for a in act.attribute if a.name != "signed"]
    del act.attribute[:]
    act.attribute.extend(keep + [helper.make_attribute("signed", [-1, 0])])
    _refused(m, tmp_path, BadFileError, act.name, "'signed' and 'narrow'")
    m = qonnx()
    scale = next(i.name for i in m.graph.initializer if i.name.startswith("fc0_BQuant_scale"))
    _set(m, scale, np.full(3, 2.0**-10, np.float32))
    _refused(m, tmp_path, BadFileError, "fc0_BQuant", "does not broadcast")
    for value in (np.zeros(0, np.float32), np.asarray("0.0", dtype=object)):
        m = qonnx()
        zp = next(i.name for i in m.graph.initializer if i.name.startswith("InQuant_zeropt"))
        _set(m, zp, value)
        _refused(m, tmp_path, BadFileError, "InQuant", "zero point")


def test_qonnx_float_bias_of_another_type(tmp_path):
    """Was accepted; onnxruntime (inside qonnx) refuses a Gemm with a uint8 C input."""
    m = qonnx("qonnx_float_bias")
    b = next(i for i in m.graph.initializer if i.name.startswith("fc0_bf"))
    _set(m, b.name, numpy_helper.to_array(b).astype(np.float64))
    _refused(m, tmp_path, UnsupportedQuantizationError, b.name, "expected float32")


def test_qonnx_quant_outputs(tmp_path):
    m = qonnx()
    quant = next(n for n in m.graph.node if n.name.startswith("OutQuant"))
    quant.output.append("extra")
    _refused(m, tmp_path, BadFileError, quant.name, "expected one named output")
    m = qonnx()  # a bias Quant whose output is unnamed (so the Gemm's C input '' means "no bias")
    quant = next(n for n in m.graph.node if n.name.startswith("fc1_BQuant"))
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm" and quant.output[0] in n.input)
    quant.output[0] = gemm.input[2] = ""
    _refused(m, tmp_path, BadFileError, quant.name, "expected one named output")


@pytest.mark.parametrize("dims", [[-7], [], [1, 2**63 - 1]])
def test_qonnx_declared_output_shape(dims, tmp_path):
    """Negative, rank-0 and absurd declared output shapes reached qonnx's executor (ValueError / IndexError)."""
    m = qonnx()
    out = m.graph.output[0].type.tensor_type
    out.ClearField("shape")
    out.shape.SetInParent()
    for d in dims:
        out.shape.dim.add().dim_value = d
    _refused(m, tmp_path, BadFileError, "graph output", "declared with")


def test_qonnx_sparse_weights_and_symbolic_features_compile(tmp_path):
    """Both are valid: the reference run now densifies sparse initializers and declares the input width (qonnx
    failed with 'Found unspecified tensor shapes' / allocated a zero-width input)."""
    m = qonnx()
    w = next(i for i in m.graph.initializer if i.name.startswith("fc0_W"))
    values = numpy_helper.to_array(w)
    idx = np.flatnonzero(values)
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(values.reshape(-1)[idx], w.name),
                                       numpy_helper.from_array(idx.astype(np.int64), w.name + "_idx"),
                                       list(values.shape))
    m.graph.initializer.remove(w)
    m.graph.sparse_initializer.append(sparse)
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "K"
    assert load_model(_save(m, tmp_path)).framework == "qonnx"
    _compiles_bit_exact(m, tmp_path)


def test_name_that_is_not_utf8(tmp_path):
    """Was TypeError (a bytes graph name reached the identifier regex) after a single bit flip."""
    m = qdq()
    m.graph.name = "GRAPHNAME_A"
    data = m.SerializeToString().replace(b"GRAPHNAME_A", b"GRAPHNAME_\xe9")
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(BadFileError) as info:
        compile_path(path, CompileOptions())
    assert "model.graph.name is not valid UTF-8" in info.value.reason


def test_qonnx_opset_import_without_version(tmp_path):
    """Was accepted; qonnx finds no Quant implementation for version 0 of its domain."""
    m = qonnx()
    next(i for i in m.opset_import if i.domain == "qonnx.custom_op.general").version = 0
    _refused(m, tmp_path, BadFileError, "file", "with version 0")


def test_qonnx_input_quant_checked_once_the_width_is_known(tmp_path):
    """With a symbolic input width, a [4] zero point on the 8-wide input was accepted (qonnx cannot broadcast it)."""
    m = qonnx()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "K"
    zp = next(i.name for i in m.graph.initializer if i.name.startswith("InQuant_zeropt"))
    _set(m, zp, np.zeros(4, np.float32))
    _refused(m, tmp_path, BadFileError, "InQuant", "does not broadcast to the quantized tensor's shape [1, 8]")


def test_reference_failure_is_a_typed_error(tmp_path):
    """If the source framework cannot run an accepted model, `check_bit_exact` (what `nn2aie compile` runs after
    compiling) raises a typed error instead of the framework's exception."""
    from nn2aie.api import check_bit_exact, default_inputs

    compiled = compile_path(_save(qdq(), tmp_path), CompileOptions())

    def broken(x):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : invalid model")

    compiled.model.reference = broken
    with pytest.raises(BadFileError) as info:
        check_bit_exact(compiled, default_inputs(compiled, 8))
    assert info.value.where == "model qdq_small"
    assert "reference (onnx-qdq) cannot run it" in info.value.reason and "invalid model" in info.value.reason


def test_qdq_float64_scale(tmp_path):
    """Was OverflowError (2.0 ** 1080) for a float64 weight scale 2**-1074; ONNX scales are float32/16."""
    m = qdq("qdq_float_bias")
    _set(m, "fc0_weight_dq_scale", np.float64(2.0**-1074))
    _refused(m, tmp_path, UnsupportedQuantizationError, "fc0_weight_dequant", "scale type float64")


class _Fixed:
    """An rng stand-in that always picks item ``i`` (to choose a mutation's parameter in a regression test)."""

    def __init__(self, i: int):
        self.i = i

    def integers(self, n):
        return self.i


def test_extreme_power_of_two_scales(tmp_path):
    """Every activation/bias scale times 2**-130: the input quantizer used np.float32(2**135) = inf (NaN codes,
    not bit-exact). Times 2**120 (fractions near -115): onnxruntime's float32 overflows to inf, so the model is
    not comparable to it; it was flagged as exact and reported a mismatch."""
    from nn2aie.numerics import quantize_float32

    from .mutators import m_shift_scales

    x = np.asarray([0.0, -0.0, 3 * 2.0**-136, 2.0**-140, -1.0, 1e30, -2.0**-137], np.float32)
    assert quantize_float32(x, 135, -128, 127).tolist() == [0, 0, 2, 0, -128, 127, 0]
    assert quantize_float32(np.asarray([2.0**120, -(2.0**127)], np.float32), -127, -8, 7).tolist() == [0, -1]
    m = qdq()
    assert m_shift_scales(m, _Fixed(8)) == "activation and bias scales times 2**-130"
    compiled = compile_path(_save(m, tmp_path), CompileOptions())
    assert compiled.input_type.frac == 135
    assert verify_compiled(compiled)[0] == "ok"
    m = qdq("qdq_jet")
    assert m_shift_scales(m, _Fixed(0)) == "activation and bias scales times 2**120"
    compiled = compile_path(_save(m, tmp_path), CompileOptions())
    assert compiled.model.graph.source["reference_exact"] == "no"
    assert verify_compiled(compiled)[0] == "ok"


def test_qonnx_dropout_is_a_pass_through_only_in_eval_mode(tmp_path):
    """A Dropout whose ratio was a weight matrix was skipped as if it were Identity (qonnx cannot run it); one in
    training mode would drop activations at random."""
    m = qonnx("qonnx_nobias_transpose")
    layer = next(n for n in m.graph.node if n.op_type == "MatMul" and n.name.startswith("fc1"))
    layer.op_type = "Dropout"
    _refused(m, tmp_path, UnsupportedOpError, layer.name, "is not a pass-through")
    for training, ok in ((False, True), (True, False)):
        m = qonnx()
        first = next(n for n in m.graph.node if n.op_type == "Gemm")
        m.graph.initializer.extend([numpy_helper.from_array(np.asarray(0.5, np.float32), "ratio"),
                                    numpy_helper.from_array(np.asarray(training), "training")])
        m.graph.node.insert(list(m.graph.node).index(first), helper.make_node(
            "Dropout", [first.input[0], "ratio", "training"], ["dropped"], name="drop"))
        first.input[0] = "dropped"
        if ok:
            _compiles_bit_exact(m, tmp_path)
        else:
            _refused(m, tmp_path, UnsupportedOpError, "node drop", "training_mode off")
