"""Source model -> frontend -> passes -> placed-design emulation, compared with the source framework itself.

References: onnxruntime for ONNX QDQ, qonnx ``execute_onnx`` and the Brevitas module for QONNX. Inputs include
negative and saturating values; equality is exact.
"""

import numpy as np
import pytest

from nn2aie.api import check_bit_exact, compile_loaded, default_inputs
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

from helpers import forced_overrides


def assert_bit_exact(loaded, options, events=1000, seed=5):
    compiled = compile_loaded(loaded, options)
    x = default_inputs(compiled, events=events, seed=seed)
    result = check_bit_exact(compiled, x)
    assert result["bit_exact"], result
    assert result["matching_outputs"] == result["outputs"] == events * compiled.plan.layers[-1].n
    return compiled


@pytest.mark.parametrize("sizes", [[16, 64, 32, 32, 5], [384, 256, 200, 10]])
@pytest.mark.parametrize("forced", [None, (4, 2)])
def test_qdq_models_against_onnxruntime(sizes, forced):
    loaded = load_model(make_qdq_mlp(sizes, seed=11))
    options = CompileOptions(overrides=forced_overrides(loaded.graph, *forced) if forced else {})
    compiled = assert_bit_exact(loaded, options, events=10_000)
    if forced:
        assert any(e.cas_length == 4 and e.cas_num == 2 for e in compiled.plan.layers)


@pytest.mark.parametrize("sizes", [[16, 64, 32, 32, 5], [384, 256, 200, 10]])
@pytest.mark.parametrize("forced", [None, (4, 2)])
def test_brevitas_qonnx_mlp_against_execute_onnx_and_module(sizes, forced):
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_mlp

    module = make_brevitas_mlp(sizes, seed=3, train_steps=10)
    loaded = load_model(export_brevitas_qonnx(module, sizes[0]))
    options = CompileOptions(overrides=forced_overrides(loaded.graph, *forced) if forced else {})
    compiled = assert_bit_exact(loaded, options, events=10_000)
    x = default_inputs(compiled, events=1000, seed=9)
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    torch_out = (out.value if hasattr(out, "value") else out).numpy()
    assert np.array_equal(compiled.emulate(x), torch_out.astype(np.float32))


def test_int16_activation_qdq_model():
    loaded = load_model(make_qdq_mlp([40, 24, 9], seed=4, act_bits=16, w_max=7, out_fracs=[4, 4]))
    assert loaded.graph.source.get("reference_exact") == "yes"
    assert_bit_exact(loaded, CompileOptions(overrides=forced_overrides(loaded.graph, 2, 2)))


def test_small_device_xcve2302():
    loaded = load_model(make_qdq_mlp([16, 64, 32, 32, 5], seed=1))
    compiled = assert_bit_exact(loaded, CompileOptions(device="xcve2302"), events=200)
    assert all(k.row < 2 for k in compiled.plan.kernels)
