"""QONNX models through hls4ml's ONNX converter into the nn2aie backend plugin (``backend='nn2aie'``).

A Brevitas MLP (int8 input quantizer, int8 weights, uint8 ReLU activations, trained a few steps) is exported to
QONNX, prepared as hls4ml's QONNX flow expects (qonnx cleanup, channels-last, Gemm -> MatMul) and converted with
``backend='nn2aie'`` and with hls4ml's Vitis backend (``compile()`` builds its C simulation with g++). hls4ml
writes the input quantizer as a linear Activation after the Input layer, so the C++ casts a float input into the
Input type first and then into the quantizer's type.

- hls4ml's default configuration (``config_from_onnx_model(model, backend='nn2aie')``, nothing set): the nn2aie
  backend gives the Input layer a type that makes the two casts equal the quantizer on every float32 input, so
  ``predict`` equals qonnx's own execution of the export on random and crafted inputs (rounding ties and their
  float32 neighbours, saturation, values hls4ml's default types wrap, subnormals).
- hls4ml's C simulation with that same Input type equals qonnx too: the type is exact in AMD's ap_fixed C++, not
  only in nn2aie's emulator.
- An Input type the user sets is kept (nn2aie then equals hls4ml's C simulation) with a ``PrecisionWarning``,
  whose claim (the outputs may differ from the quantizer) holds on these inputs.
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

from nn2aie.errors import PrecisionWarning  # noqa: E402
from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_mlp  # noqa: E402
from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.frontends.qonnx_frontend import run_reference  # noqa: E402
from nn2aie.ir.evaluate import input_pre_cast  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
SIZES = {"jet_tagger": (16, 64, 32, 32, 5), "mlp_384_256_200_10": (384, 256, 200, 10)}
N_RANDOM = 10_000


def prepared_qonnx(sizes, seed: int = 0):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    proto = export_brevitas_qonnx(make_brevitas_mlp(list(sizes), seed=seed, train_steps=5), sizes[0])
    model = cleanup_model(ModelWrapper(proto))
    model = cleanup_model(model.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul()))
    return proto, model


def convert(model, backend: str, out_dir: str, input_type: str | None = None, **config_kw):
    """hls4ml's configuration as config_from_onnx_model makes it, with the Input type set only if given."""
    cfg = hls4ml.utils.config.config_from_onnx_model(model, backend=backend, **config_kw)
    if input_type is not None:
        cfg["LayerName"]["global_in"]["Precision"]["result"] = input_type
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="qonnx|hls4ml|brevitas|onnx")
        return hls4ml.converters.convert_from_onnx_model(model, hls_config=cfg, backend=backend,
                                                         output_dir=out_dir, io_type="io_parallel")


def random_inputs(n: int, k: int, seed: int) -> np.ndarray:
    """Gaussian rows at several magnitudes (many saturate the 8-bit input quantizer), a quarter on exact ties."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, k)) * rng.choice([0.1, 1.0, 4.0, 20.0], size=(n, 1))
    x[: n // 4] = (rng.integers(-3000, 3000, size=(n // 4, k)) + 0.5) * 2.0**-4
    return x.astype(np.float32)


def edge_inputs(k: int, q: FixedType, seed: int) -> np.ndarray:
    """Rows of float32 values where a cast before the quantizer ``q`` can go wrong: every rounding tie of q's grid
    over its range and the float32 numbers next to it, the range ends, values hls4ml's default Input types wrap
    (2**5 for fixed<16,6>, 2**15 for fixed<32,16>), float32 extremes, tiny and subnormal values, -0."""
    lsb = 2.0**-q.frac
    ties = (np.arange(q.min_code - 1, q.max_code + 2) + 0.5) * lsb
    centres = np.concatenate([ties, [q.min_code * lsb, q.max_code * lsb, 2.0**5, 2.0**15, 2.0**16, 2.0**31,
                                     3e38, 1e30, 2.0**-(q.frac + 2), 2.0**-(q.frac + 1), 1e-45, 1e-40]])
    centres = np.concatenate([centres, -centres]).astype(np.float32)
    near = np.concatenate([np.nextafter(centres, np.float32(np.inf)), centres,
                           np.nextafter(centres, np.float32(-np.inf)), np.float32([0.0, -0.0])])
    values = np.random.default_rng(seed).permutation(np.resize(near, -(-near.size // k) * k))
    return values.reshape(-1, k).astype(np.float32)


def quantizer_type(compiled_model) -> FixedType:
    graph = graph_from_hls4ml(compiled_model)
    t = graph.tensors[graph.inputs[0]].type
    assert isinstance(t, FixedType)
    return t


def hls4ml_input_precision(model) -> str:
    layer = next(iter(model.get_layers()))
    assert layer.class_name == "Input"
    return str(layer.get_output_variable().type.precision)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_default_config_predicts_what_qonnx_computes(name, tmp_path):
    sizes = SIZES[name]
    proto, model = prepared_qonnx(sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)  # nothing to warn about: nothing was set
        ours = convert(model, "nn2aie", str(tmp_path / "aie"))
    q = quantizer_type(ours)
    x = np.concatenate([random_inputs(N_RANDOM, sizes[0], seed=3), edge_inputs(sizes[0], q, seed=4)])
    want = run_reference(proto, x)  # qonnx's own execution of the Brevitas export
    got = ours.predict(x).reshape(want.shape)
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} of {got.size} outputs differ from qonnx, first at {bad[0].tolist()}"
    assert len(np.unique(got)) > 20
    assert len(graph_from_hls4ml(ours).ops) == len(sizes) - 1


@needs_gxx
@pytest.mark.parametrize("name", sorted(SIZES))
def test_chosen_input_type_is_exact_in_hls4ml_csim(name, tmp_path):
    """hls4ml's own C++ (ap_fixed) with the Input type the nn2aie backend chose gives qonnx's outputs too, and
    so does nn2aie: the type is right for a Vitis build, not only for the emulator."""
    sizes = SIZES[name]
    proto, model = prepared_qonnx(sizes)
    ours = convert(model, "nn2aie", str(tmp_path / "aie"))
    chosen = hls4ml_input_precision(ours)
    vitis = convert(model, "Vitis", str(tmp_path / "vitis"), chosen)
    assert hls4ml_input_precision(vitis) == chosen
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    q = quantizer_type(ours)
    assert input_pre_cast(graph_from_hls4ml(ours)) is not None  # the host casts into the chosen type first
    x = np.concatenate([random_inputs(2000, sizes[0], seed=5), edge_inputs(sizes[0], q, seed=6)])
    want = run_reference(proto, x)
    csim = vitis.predict(x).reshape(want.shape)
    assert np.array_equal(csim, want)
    assert np.array_equal(ours.predict(x).reshape(want.shape), want)


@needs_gxx
def test_explicit_input_type_is_kept_and_warned(tmp_path):
    sizes = SIZES["mlp_384_256_200_10"]
    proto, model = prepared_qonnx(sizes)
    with pytest.warns(PrecisionWarning, match=r"global_in .*fixed<32,16>.*fixed<\d+,\d+,TRN,SAT>"):
        ours = convert(model, "nn2aie", str(tmp_path / "aie"), "fixed<32,16>")
    vitis = convert(model, "Vitis", str(tmp_path / "vitis"), "fixed<32,16>")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    assert hls4ml_input_precision(ours) == hls4ml_input_precision(vitis)
    x = np.concatenate([random_inputs(2000, sizes[0], seed=7), edge_inputs(sizes[0], quantizer_type(ours), 8)])
    got, csim = ours.predict(x), vitis.predict(x)
    assert np.array_equal(got, csim)  # nn2aie follows the configured hls4ml design
    differs = int((csim.reshape(-1, sizes[-1]) != run_reference(proto, x)).sum())
    assert differs > 0, "the warning says the configured type may differ from the quantizer; here it does"


def test_unfused_bias_names_the_configuration(tmp_path):
    """granularity='model' sets every Dense's result precision, so hls4ml leaves the bias add as an ApplyAlpha
    layer: the error says why and which configuration folds it."""
    from nn2aie.errors import UnsupportedOpError

    _, model = prepared_qonnx(SIZES["jet_tagger"])
    hls_model = convert(model, "nn2aie", str(tmp_path / "aie"), granularity="model")
    with pytest.raises(UnsupportedOpError, match=r"ApplyAlpha.*granularity='name'"):
        graph_from_hls4ml(hls_model)
