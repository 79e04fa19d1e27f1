"""QONNX models through hls4ml's ONNX converter into the nn2aie backend plugin (``backend='nn2aie'``).

A Brevitas MLP (fixed-point quantizers, trained a few steps) is exported to QONNX, prepared as hls4ml's QONNX
flow expects (qonnx cleanup, channels-last, Gemm -> MatMul) and converted twice: with ``backend='nn2aie'`` and
with hls4ml's Vitis backend (``compile()`` builds the C simulation with g++). hls4ml writes the input quantizer
as a linear Activation after the Input layer, so the host casts a float input into the Input type first and
then into the quantizer's type (``ir.evaluate.INPUT_PRE_CAST``).

- With a wide Input type (``fixed<48,16>``: every float32 input that matters is exact), ``predict`` equals
  qonnx's own execution of the export (the framework) and hls4ml's C-simulation.
- With hls4ml's default ``fixed<32,16>`` Input type the first cast truncates to 16 fractional bits, which moves
  values just above a rounding tie onto the tie: hls4ml then differs from QONNX on a few outputs, and nn2aie
  follows hls4ml (equal to its C-simulation), as a backend of hls4ml must.
"""

from __future__ import annotations

import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

hls4ml = pytest.importorskip("hls4ml")
pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_mlp  # noqa: E402
from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.frontends.qonnx_frontend import run_reference  # noqa: E402
from nn2aie.ir.evaluate import input_pre_cast  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
SIZES = {"jet_tagger": (16, 64, 32, 32, 5), "mlp_384_256_200_10": (384, 256, 200, 10)}
N_SAMPLES = 1200


def prepared_qonnx(sizes, seed: int = 0):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    proto = export_brevitas_qonnx(make_brevitas_mlp(list(sizes), seed=seed, train_steps=5), sizes[0])
    model = cleanup_model(ModelWrapper(proto))
    model = cleanup_model(model.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul()))
    return proto, model


def convert(model, backend: str, out_dir: str, input_type: str | None):
    cfg = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend=backend,
                                                      default_precision="fixed<32,16>")
    if input_type is not None:
        cfg["LayerName"]["global_in"]["Precision"]["result"] = input_type
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hls4ml.converters.convert_from_onnx_model(model, hls_config=cfg, backend=backend,
                                                         output_dir=out_dir, io_type="io_parallel")


def inputs(k: int, seed: int) -> np.ndarray:
    """Gaussian rows at several magnitudes (many saturate the 8-bit input quantizer), exact ties of 2**-5."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(N_SAMPLES, k)) * rng.choice([0.1, 1.0, 4.0, 20.0], size=(N_SAMPLES, 1))
    x[: N_SAMPLES // 4] = (rng.integers(-3000, 3000, size=(N_SAMPLES // 4, k)) + 0.5) * 2.0**-4
    return x.astype(np.float32)


@needs_gxx
@pytest.mark.parametrize("name", sorted(SIZES))
def test_predict_equals_qonnx_and_hls4ml_csim(name, tmp_path):
    sizes = SIZES[name]
    proto, model = prepared_qonnx(sizes)
    x = inputs(sizes[0], seed=3)
    want = run_reference(proto, x)  # qonnx's own execution of the Brevitas export
    ours = convert(model, "nn2aie", str(tmp_path / "aie"), "fixed<48,16>")
    vitis = convert(model, "Vitis", str(tmp_path / "vitis"), "fixed<48,16>")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    graph = graph_from_hls4ml(ours)
    assert input_pre_cast(graph) is not None  # the input quantizer became the graph input type
    assert len(graph.ops) == len(sizes) - 1
    got = ours.predict(x).reshape(want.shape)
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} outputs differ from qonnx, first at {bad[0].tolist()}"
    assert np.array_equal(got, vitis.predict(x).reshape(want.shape))
    assert len(np.unique(got)) > 20


@needs_gxx
def test_default_input_type_follows_hls4ml_not_qonnx(tmp_path):
    sizes = SIZES["mlp_384_256_200_10"]
    proto, model = prepared_qonnx(sizes)
    x = inputs(sizes[0], seed=4)
    ours = convert(model, "nn2aie", str(tmp_path / "aie"), None)
    vitis = convert(model, "Vitis", str(tmp_path / "vitis"), None)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    got, csim = ours.predict(x), vitis.predict(x)
    assert np.array_equal(got, csim)
    differs = int((csim.reshape(-1, sizes[-1]) != run_reference(proto, x)).sum())
    print(f"hls4ml (fixed<32,16> input) differs from qonnx on {differs} of {csim.size} outputs; nn2aie == hls4ml")
