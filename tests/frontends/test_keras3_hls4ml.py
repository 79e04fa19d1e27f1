"""Keras 3 models through hls4ml's Keras converter into the nn2aie backend plugin (``backend='nn2aie'``).

Plain Keras 3 MLPs (torch backend, no TensorFlow) are converted twice with the same explicit per-layer precisions:
once with ``backend='nn2aie'`` and once with hls4ml's Vitis backend, whose ``compile()`` builds the C simulation with
g++; ``predict`` must agree exactly on >= 1000 inputs that hit the input type's ties and overflow. hls4ml turns both
``Dense(activation='relu')`` (a ``<name>_relu`` Activation layer) and a separate ``Activation('relu')`` layer into
Dense + Activation, so the models use both spellings. Accumulators and Dense results are wide (exact), so the lossy
casts are the input, every ReLU result (saturating) and the last Dense result.

HGQ2 (``hgq.layers.QDense``) models give the Dense a narrow TRN/WRAP result type before the ReLU's own RND/WRAP
type; the frontend composes the two requantisations into one exactly (or refuses pairs that do not compose), and
the narrow WRAP types run through the kernel's wrap step. ``predict`` equals HGQ2's Keras execution and hls4ml's
Vitis C-simulation.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere (no TensorFlow / JAX in this venv)

import shutil  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
hls4ml = pytest.importorskip("hls4ml")

from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError  # noqa: E402
from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")

WEIGHT_T, BIAS_T, WIDE_T = "ap_fixed<8,2>", "ap_fixed<16,6>", "ap_fixed<32,16>"
N_SAMPLES = 1200


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple[int, ...]
    x_t: str
    relu_t: tuple[str, ...]  # one per hidden layer
    out_t: str
    seed: int = 0


JET = Case("keras_jet_tagger", (16, 64, 32, 32, 5), "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
           ("ap_ufixed<8,2,AP_RND,AP_SAT>", "ap_fixed<8,3,AP_RND_INF,AP_SAT_SYM>", "ap_ufixed<8,3,AP_TRN,AP_SAT>"),
           "ap_fixed<8,2,AP_RND_ZERO,AP_SAT>", seed=1)
BIG = Case("keras_mlp_384_256_200_10", (384, 256, 200, 10), "ap_fixed<8,3,AP_TRN,AP_WRAP>",
           ("ap_ufixed<8,1,AP_RND_MIN_INF,AP_SAT>", "ap_fixed<8,2,AP_RND_CONV,AP_SAT_SYM>"),
           "ap_fixed<16,6,AP_TRN_ZERO,AP_SAT>", seed=2)


def relu_name(i: int) -> str:
    """hls4ml's name of the ReLU after Dense fc{i}: odd layers use Dense(activation='relu'), even ones a layer."""
    return f"fc{i}_relu" if i % 2 else f"relu{i}"


def keras_mlp(sizes, seed: int):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((sizes[0],), name="inp")]
    n_dense = len(sizes) - 1
    for i, n in enumerate(sizes[1:], start=1):
        hidden = i < n_dense
        bias_init = keras.initializers.RandomNormal(stddev=0.5, seed=seed * 100 + i)
        layers.append(keras.layers.Dense(n, activation="relu" if hidden and i % 2 else None, name=f"fc{i}",
                                         bias_initializer=bias_init))
        if hidden and not i % 2:
            layers.append(keras.layers.Activation("relu", name=relu_name(i)))
    return keras.Sequential(layers, name="mlp")


def hls_config(model, case: Case, backend: str) -> dict:
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    layers = cfg["LayerName"]
    layers["inp"]["Precision"]["result"] = case.x_t
    n_dense = len(case.sizes) - 1
    for i in range(1, n_dense + 1):
        last = i == n_dense
        layers[f"fc{i}"]["Precision"].update(weight=WEIGHT_T, bias=BIAS_T, accum=WIDE_T,
                                             result=case.out_t if last else WIDE_T)
        if not last:
            layers[relu_name(i)]["Precision"]["result"] = case.relu_t[i - 1]
    return cfg


def convert(case: Case, backend: str, out_dir: str):
    model = keras_mlp(case.sizes, case.seed)
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=hls_config(model, case, backend), backend=backend, output_dir=out_dir,
        project_name="mlp", io_type="io_parallel")


def parse_fixed(text: str) -> FixedType:
    inner = text.replace(" ", "").split("<")[1].rstrip(">").split(",")
    width, integer = int(inner[0]), int(inner[1])
    modes = [m.replace("AP_", "") for m in inner[2:]] + ["TRN", "WRAP"][len(inner) - 2:]
    return FixedType(width, width - integer, not text.startswith("ap_u"), modes[0], modes[1])


def make_inputs(case: Case) -> np.ndarray:
    """The input grid at quarter-LSB steps over twice the range (ties, overflow, negatives), exact ties, reals."""
    t = parse_fixed(case.x_t)
    rng = np.random.default_rng(700 + case.seed)
    k = case.sizes[0]
    span = 1 << (t.width + 2)
    grid = rng.integers(-span, span, size=(N_SAMPLES // 2, k)) * 2.0 ** -(t.frac + 2)
    ties = (2 * rng.integers(-(span // 2), span // 2, size=(N_SAMPLES // 4, k)) + 1) * 2.0 ** -(t.frac + 1)
    reals = rng.normal(0.0, 2.0 ** (t.width - t.frac - 1), size=(N_SAMPLES - len(grid) - len(ties), k))
    return np.ascontiguousarray(np.concatenate([grid, ties, reals]), dtype=np.float64)


def _check_case(case: Case, tmp_path) -> None:
    start = time.perf_counter()
    vitis = convert(case, "Vitis", str(tmp_path / "vitis"))
    ours = convert(case, "nn2aie", str(tmp_path / "aie"))
    with ThreadPoolExecutor(max_workers=2) as pool:  # g++ for the C-sim while nn2aie compiles its plan
        futures = [pool.submit(m.compile) for m in (vitis, ours)]
        for f in futures:
            f.result()
    # both ReLU spellings become Dense + Activation, folded into one relu dense op per hidden layer
    graph = graph_from_hls4ml(ours)
    n_dense = len(case.sizes) - 1
    assert [op.attrs["activation"] for op in graph.ops] == ["relu"] * (n_dense - 1) + ["linear"]
    assert [t.type for t in (graph.tensor(op.outputs[0]) for op in graph.ops)] == \
        [parse_fixed(t) for t in case.relu_t] + [parse_fixed(case.out_t)]
    x = make_inputs(case)
    want = vitis.predict(x)
    got = ours.predict(x)
    assert got.shape == want.shape == (N_SAMPLES, case.sizes[-1])
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} outputs differ, first at {bad[0].tolist()}: {got[tuple(bad[0])]} vs " \
                         f"{want[tuple(bad[0])]}"
    assert len(np.unique(got)) > 20  # not a degenerate (all-saturated / all-zero) model
    x_t = parse_fixed(case.x_t)
    assert (x < 0).any() and (np.abs(x) > 2.0 ** (x_t.width - x_t.frac - 1)).any()  # negatives, overflow
    print(f"{case.name}: convert + compile + predict {time.perf_counter() - start:.1f} s")


@needs_gxx
@pytest.mark.parametrize("case", [JET, BIG], ids=lambda c: c.name)  # ~8 s and ~13 s each (g++ of the C-sim)
def test_keras3_mlp_predict_equals_hls4ml_vitis_csim(case, tmp_path):
    _check_case(case, tmp_path)


# -- HGQ2 --------------------------------------------------------------------------------------------------------
def hgq2_mlp(sizes=(16, 64, 32, 32, 5), seed: int = 3, train_steps: int = 0, per_tensor_activations: bool = True):
    """An HGQ2 MLP: per-weight (heterogeneous) weight quantizers, one trainable quantizer per activation tensor
    (``per_tensor_activations``) or HGQ2's default per-element ones (hls4ml FixedPointQuantizer layers: see
    test_hgq2_default_per_element_quantizers_are_bit_exact), WRAP on the datalanes as HGQ2's defaults; optionally
    trained a few steps on seeded synthetic data so the bit widths move."""
    pytest.importorskip("hgq")
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QDense

    keras.utils.set_random_seed(seed)
    with QuantizerConfigScope(place="all", default_q_type="kif", overflow_mode="SAT_SYM"), \
            QuantizerConfigScope(place="datalane", default_q_type="kif", overflow_mode="WRAP",
                                 **(dict(heterogeneous_axis=(), homogeneous_axis=None) if per_tensor_activations
                                    else {})), \
            LayerConfigScope(enable_ebops=False):
        layers = [keras.Input((sizes[0],), name="inp")]
        for i, n in enumerate(sizes[1:], start=1):
            last = i == len(sizes) - 1
            layers.append(QDense(n, activation=None if last else "relu", name=f"fc{i}"))
        model = keras.Sequential(layers)
    if train_steps:
        rng = np.random.default_rng(seed)
        x = rng.normal(0.0, 1.5, size=(64 * train_steps, sizes[0])).astype(np.float32)
        y = rng.normal(0.0, 1.0, size=(64 * train_steps, sizes[-1])).astype(np.float32)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    return model


def convert_hgq2(model, backend: str, out_dir: str):
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    return hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, backend=backend, output_dir=out_dir,
                                                      project_name="hgq", io_type="io_parallel")


def hgq2_inputs(model, n: int, seed: int) -> np.ndarray:
    """Inputs at several magnitudes (most values wrap in the input quantizer's few integer bits), exact ties of
    the finest input LSB, negatives."""
    rng = np.random.default_rng(seed)
    k = model.inputs[0].shape[-1]
    mag = rng.choice([0.1, 1.0, 3.0, 12.0], size=(n, 1))
    x = rng.normal(0.0, 1.0, size=(n, k)) * mag
    x[: n // 4] = (rng.integers(-2000, 2000, size=(n // 4, k)) + 0.5) * 2.0 ** -8
    return x.astype(np.float32)


HGQ2_CASES = {"hgq2_jet_tagger": (16, 64, 32, 32, 5), "hgq2_mlp_384_256_200_10": (384, 256, 200, 10)}


@pytest.mark.parametrize("name", sorted(HGQ2_CASES))
def test_hgq2_predict_equals_keras(name, tmp_path):
    """HGQ2 writes a narrow TRN/WRAP Dense result, then the ReLU's own RND/WRAP type: the two requantisations
    compose exactly into one (frontends/hls4ml_frontend.py); predict must equal HGQ2's own Keras execution."""
    model = hgq2_mlp(HGQ2_CASES[name], seed=5, train_steps=3)
    hm = convert_hgq2(model, "nn2aie", str(tmp_path / "aie"))
    fc1 = next(layer for layer in hm.get_layers() if layer.name == "fc1")
    result, accum = fc1.get_output_variable().type.precision, fc1.get_attr("accum_t").precision
    assert result.width - result.integer < accum.width - accum.integer  # HGQ2 requantises the Dense result
    hm.compile()
    graph = graph_from_hls4ml(hm)
    assert [op.attrs["activation"] for op in graph.ops] == ["relu"] * (len(graph.ops) - 1) + ["linear"]
    assert any(graph.tensor(op.outputs[0]).type.overflow == "WRAP" and
               graph.tensor(op.outputs[0]).type.width < graph.tensor(op.outputs[0]).type.container_bits
               for op in graph.ops)  # the wrap step is exercised
    x = hgq2_inputs(model, N_SAMPLES, seed=11)
    want = np.asarray(model.predict(x, verbose=0))
    got = hm.predict(x).reshape(want.shape)
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} outputs differ, first at {bad[0].tolist()}: {got[tuple(bad[0])]} vs " \
                         f"{want[tuple(bad[0])]}"
    assert len(np.unique(got)) > 20


@needs_gxx
def test_hgq2_predict_equals_hls4ml_vitis_csim(tmp_path):
    """The same HGQ2 jet tagger through hls4ml's own Vitis C-simulation (g++): equal to nn2aie's predict."""
    model = hgq2_mlp(HGQ2_CASES["hgq2_jet_tagger"], seed=6, train_steps=3)
    x = hgq2_inputs(model, N_SAMPLES, seed=12)
    vitis = convert_hgq2(model, "Vitis", str(tmp_path / "vitis"))
    ours = convert_hgq2(model, "nn2aie", str(tmp_path / "aie"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    want = vitis.predict(x)
    assert np.array_equal(ours.predict(x).reshape(want.shape), want)
    assert np.array_equal(want.reshape(-1, 5), np.asarray(model.predict(x, verbose=0)))


def test_non_composable_requantisations_are_refused(tmp_path):
    """A rounding Dense result followed by a coarser rounding ReLU type is two requantisations that no single
    one equals: refused with a typed error naming both layers."""
    case = Case("two_requant", (16, 8, 4), "ap_fixed<8,3>", ("ap_ufixed<8,3,AP_RND,AP_SAT>",), "ap_fixed<16,6>")
    model = keras_mlp(case.sizes, 0)
    cfg = hls_config(model, case, "nn2aie")
    cfg["LayerName"]["fc1"]["Precision"]["result"] = "ap_fixed<18,10,AP_RND_CONV,AP_SAT>"  # 8 of 11 frac bits
    hm = hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, backend="nn2aie",
                                                    output_dir=str(tmp_path / "aie"), project_name="mlp",
                                                    io_type="io_parallel")
    with pytest.raises(UnsupportedOpError, match=r"hls4ml layers fc1 \(Dense\) -> fc1_relu \(relu\): the Dense "
                       r"result type .* rounds again: two requantisations in a row") as err:
        hm.compile()
    print(f"refusal: {err.value}")
    with pytest.raises(UnsupportedOpError, match="two requantisations"):
        hm.predict(np.zeros((4, 16)))


def hgq2_residual(seed: int = 1):
    """An HGQ2 residual block with per-tensor quantizers: fc1's ReLU output feeds fc2 and the QAdd, so HGQ2 puts
    one quantizer on each reader and hls4ml keeps them as FixedPointQuantizer layers (one (k, b, i) for every
    element), trained a few steps."""
    pytest.importorskip("hgq")
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QAdd, QDense

    keras.utils.set_random_seed(seed)
    with QuantizerConfigScope(place="all", default_q_type="kif", overflow_mode="SAT_SYM"), \
            QuantizerConfigScope(place="datalane", default_q_type="kif", overflow_mode="WRAP",
                                 heterogeneous_axis=(), homogeneous_axis=None), \
            LayerConfigScope(enable_ebops=False):
        inp = keras.Input((16,), name="inp")
        h = QDense(32, activation="relu", name="fc1")(inp)
        b = QDense(32, activation="relu", name="fc2")(h)
        out = QDense(5, name="fc3")(QAdd(name="add")([h, b]))
        model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(rng.normal(0, 1.5, (192, 16)).astype(np.float32), rng.normal(size=(192, 5)).astype(np.float32),
              batch_size=64, epochs=1, verbose=0)
    return model


@needs_gxx
def test_hgq2_residual_with_per_tensor_quantizer_layers_is_bit_exact(tmp_path):
    """The per-tensor FixedPointQuantizer layers of a fan-out are per-tensor casts (eltwise identities, wrap
    included): predict == HGQ2's Keras == hls4ml's Vitis C-simulation, and the kernels co-simulate natively."""
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import LoadedModel

    model = hgq2_residual()
    x = hgq2_inputs(model, N_SAMPLES, seed=13)
    vitis = convert_hgq2(model, "Vitis", str(tmp_path / "vitis"))
    ours = convert_hgq2(model, "nn2aie", str(tmp_path / "aie"))
    assert [layer.class_name for layer in ours.get_layers()].count("FixedPointQuantizer") == 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    want = np.asarray(model.predict(x, verbose=0))
    got = ours.predict(x).reshape(want.shape)
    assert np.array_equal(got, want)
    assert np.array_equal(vitis.predict(x).reshape(want.shape), want)
    assert len(np.unique(got)) > 20
    graph = graph_from_hls4ml(ours)
    assert {op.name for op in graph.consumers("fc1_relu")} == {"fc2_iq_q", "quantizer_q"}  # the fan-out
    compiled = compile_loaded(LoadedModel(graph, "hls4ml", None, None))
    report = compiled.native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)


@needs_gxx
@pytest.mark.parametrize("name", sorted(HGQ2_CASES))
def test_hgq2_default_per_element_quantizers_are_bit_exact(name, tmp_path):
    """HGQ2's default datalane quantizers are per element; trained a few steps, hls4ml keeps them as
    FixedPointQuantizer layers with one (k, b, i) per element. Each becomes an eltwise quantize (every element
    cast into its own type): predict == HGQ2's Keras == hls4ml's Vitis C-simulation on 2000 inputs (most of them
    wrapping in the input quantizer), and the kernels co-simulate natively."""
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import LoadedModel

    model = hgq2_mlp(HGQ2_CASES[name], seed=5, train_steps=3, per_tensor_activations=False)
    x = hgq2_inputs(model, 2000, seed=14)
    vitis = convert_hgq2(model, "Vitis", str(tmp_path / "vitis"))
    ours = convert_hgq2(model, "nn2aie", str(tmp_path / "aie"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    want = np.asarray(model.predict(x, verbose=0))
    got = ours.predict(x).reshape(want.shape)
    assert np.array_equal(got, want)
    assert np.array_equal(vitis.predict(x).reshape(want.shape), want)
    assert len(np.unique(got)) > 20
    graph = graph_from_hls4ml(ours)
    quantizers = [op for op in graph.ops if op.attrs.get("op") == "quantize"]
    assert quantizers and any(len(set(op.attrs["elements"]["width"])) > 1 for op in quantizers)  # per element
    compiled = compile_loaded(LoadedModel(graph, "hls4ml", None, None))
    report = compiled.native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)


def _bn_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), name="inp")
    out = keras.layers.Dense(5, name="fc")(keras.layers.BatchNormalization(name="bn")(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.get_layer("bn").set_weights([rng.normal(size=16), rng.normal(size=16) * 0.5, rng.normal(size=16),
                                       rng.uniform(0.5, 3, 16)])  # gammas of both signs
    return model


def _bn_convert(model, backend: str, out_dir: str, bn_result: str = "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"):
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    cfg["LayerName"]["inp"]["Precision"]["result"] = "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"
    cfg["LayerName"]["bn"]["Precision"].update(result=bn_result, scale="ap_fixed<12,3>", bias="ap_fixed<12,3>")
    cfg["LayerName"]["fc"]["Precision"].update(result="ap_fixed<16,6,AP_RND_CONV,AP_SAT>", accum="ap_fixed<32,16>",
                                               weight="ap_fixed<8,2>", bias="ap_fixed<8,2>")
    return hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, backend=backend, output_dir=out_dir,
                                                      project_name="bn", io_type="io_parallel")


@needs_gxx
def test_batchnorm_layer_equals_hls4ml_csim(tmp_path):
    """hls4ml's BatchNormalization (data * scale + bias, one cast into res_T) on the input features: an eltwise
    affine, exact per channel: predict == hls4ml's Vitis C-simulation on 2000 inputs, native co-simulation."""
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import LoadedModel

    model = _bn_model()
    vitis = _bn_convert(model, "Vitis", str(tmp_path / "vitis"))
    ours = _bn_convert(model, "nn2aie", str(tmp_path / "aie"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(m.compile) for m in (vitis, ours)]:
            f.result()
    x = (np.random.default_rng(1).normal(size=(2000, 16)) * 3).astype(np.float32)
    want = vitis.predict(x)
    assert np.array_equal(ours.predict(x).reshape(want.shape), want)
    assert len(np.unique(want)) > 100
    graph = graph_from_hls4ml(ours)
    assert [(op.kind, op.attrs.get("op")) for op in graph.ops] == [("eltwise", "affine"), ("dense", None)]
    assert graph.op("bn").attrs["requant_table"]["negated_channels"]
    report = compile_loaded(LoadedModel(graph, "hls4ml", None, None)).native_cosim(x[:16])
    assert report.kernels and all(k.match for k in report.kernels)


def test_batchnorm_with_a_wide_auto_result_is_refused(tmp_path):
    hm = _bn_convert(_bn_model(), "nn2aie", str(tmp_path / "aie"), bn_result="auto")
    with pytest.raises(UnsupportedQuantizationError, match="bn result.*wider than 16 bits.*result precision"):
        hm.compile()


def _input_quantizer_model(quantizer_t: str, tmp_path, input_t: str | None = None):
    """Input ``x`` -> Activation('linear') quantizing into ``quantizer_t`` -> wide Dense, through the nn2aie
    backend; a PrecisionWarning is raised as an error."""
    import warnings

    from nn2aie.errors import PrecisionWarning

    model = keras.Sequential([keras.Input((16,), name="x"), keras.layers.Activation("linear", name="inq"),
                              keras.layers.Dense(5, name="d")])
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="nn2aie")
    cfg["LayerName"]["inq"]["Precision"]["result"] = quantizer_t
    cfg["LayerName"]["d"]["Precision"].update(result=WIDE_T, accum=WIDE_T)
    if input_t is not None:
        cfg["LayerName"]["x"]["Precision"]["result"] = input_t
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        return hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, backend="nn2aie",
                                                          output_dir=str(tmp_path / "prj"))


@pytest.mark.parametrize("quantizer_t, reason", [
    ("ap_fixed<8,4,AP_RND_ZERO,AP_WRAP>", r"wraps and rounds by the sign of the value \(RND_ZERO\)"),
    ("ap_fixed<40,20,AP_RND_CONV,AP_SAT>", r"40 bits wide: an Input type that keeps it bit-exact needs 66 bits"),
])
def test_input_quantizer_without_an_exact_input_type_is_refused(quantizer_t, reason, tmp_path):
    from nn2aie.errors import UnsupportedQuantizationError

    with pytest.raises(UnsupportedQuantizationError, match=rf"hls4ml layer inq \(input quantizer of x\).*"
                                                           rf"{reason}.*LayerName'\]\['x'\]"):
        _input_quantizer_model(quantizer_t, tmp_path)


def test_input_type_set_by_the_user_is_kept(tmp_path):
    """An explicit exact Input type is kept without a warning; an explicit inexact one is kept with one."""
    from nn2aie.errors import PrecisionWarning

    exact = _input_quantizer_model("ap_fixed<8,4,AP_RND_CONV,AP_SAT>", tmp_path, "ap_fixed<40,6,AP_TRN,AP_SAT>")
    assert str(next(iter(exact.get_layers())).get_output_variable().type.precision) == "fixed<40,6,TRN,SAT,0>"
    with pytest.raises(PrecisionWarning, match=r"hls4ml layer x \(Input\): the configured precision "
                                               r"ap_fixed<16,6> .*fixed<34,5,TRN,SAT>"):
        _input_quantizer_model("ap_fixed<8,4,AP_RND_CONV,AP_SAT>", tmp_path, "ap_fixed<16,6>")
