"""hls4ml DAG models (Keras 3 functional API) -> nn2aie logical graph == hls4ml's own Vitis C-simulation.

Each model is converted twice with the same explicit per-layer precisions: with ``backend='nn2aie'`` (read by
``graph_from_hls4ml`` into the logical IR) and with hls4ml's Vitis backend, whose ``compile()`` builds the C
simulation with g++. The logical graph, evaluated with ``nn2aie.ir.evaluate.evaluate`` on the input codes (the
Input type's own cast of the float inputs, as hls4ml's C++ does), must equal the C-simulation's ``predict`` with
``np.array_equal`` on 2400 inputs: a quarter-LSB grid over twice the input range (ties, saturation, wrap), exact
ties and normal reals. The merge / concatenate / pooling / transpose result types are narrow, with several rounding
and overflow modes, so every requantisation the frontend emits is exercised (the tests count saturated outputs).

Covered: residual Add + Keras ReLU() + LeakyReLU(1/4) with fan-out (``residual``), Subtract / Multiply / Maximum /
Minimum / Average / Concatenate as six outputs of one model (``merges``), Permute + GlobalAveragePooling1D,
GlobalMaxPooling1D, Flatten -> Dense, Reshape + GlobalAveragePooling2D / GlobalMaxPooling2D (``pooling``).
Only the frontend's logical graph is checked here (its dense layers keep 32-bit results, which tiles refuse);
tests/acceptance/test_dag_hls4ml.py compiles and emulates a residual model end to end.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere (no TensorFlow / JAX in this venv)

import shutil  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
hls4ml = pytest.importorskip("hls4ml")

from nn2aie.errors import Nn2aieError, UnsupportedOpError, UnsupportedQuantizationError  # noqa: E402
from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.ir.evaluate import cast_float, evaluate  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")

WEIGHT_T, BIAS_T, WIDE_T = "ap_fixed<8,2>", "ap_fixed<16,6>", "ap_fixed<32,16>"
N_SAMPLES = 2400
L = keras.layers


@dataclass
class Case:
    name: str
    build: object  # () -> keras.Model
    x_t: str
    precisions: dict = field(default_factory=dict)  # layer -> {"result": ..., "accum": ..., ...}


def _dense(n, name, activation=None, seed=0):
    return L.Dense(n, activation=activation, name=name,
                   bias_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=seed))


def residual_model():
    keras.utils.set_random_seed(11)
    x = keras.Input((16,), name="inp")
    h1 = _dense(16, "fc1", "relu", 1)(x)  # fc1_relu fans out to fc2 and the Add
    h2 = _dense(16, "fc2", None, 2)(h1)
    s = L.Add(name="add")([h1, h2])
    r = L.ReLU(name="relu")(s)  # hls4ml: thresholded ReLU with theta 0
    h3 = _dense(16, "fc3", None, 3)(r)
    lr = L.LeakyReLU(negative_slope=0.25, name="lrelu")(h3)
    s2 = L.Add(name="add2")([lr, x])  # a skip from the input
    y = _dense(5, "fc4", None, 4)(s2)
    return keras.Model(x, y, name="residual")


def merges_model():
    keras.utils.set_random_seed(12)
    x = keras.Input((12,), name="inp")
    a = _dense(8, "fa", None, 1)(x)
    b = _dense(8, "fb", None, 2)(x)
    outs = [L.Subtract(name="sub")([a, b]), L.Multiply(name="mul")([a, b]), L.Maximum(name="max")([a, b]),
            L.Minimum(name="min")([a, b]), L.Average(name="avg")([a, b])]
    cat = L.Concatenate(name="cat")([a, outs[0]])
    y = _dense(4, "fc", None, 3)(L.LeakyReLU(negative_slope=0.5, name="lrelu")(cat))
    return keras.Model(x, outs + [y], name="merges")


def pooling_model():
    keras.utils.set_random_seed(13)
    x = keras.Input((6, 4), name="inp")
    t = L.Permute((2, 1), name="transp")(x)  # (4, 6)
    gap = L.GlobalAveragePooling1D(name="gap")(t)  # (6,): mean over 4
    gmp = L.GlobalMaxPooling1D(name="gmp")(x)  # (4,)
    y = _dense(5, "fc", None, 1)(L.Flatten(name="flat")(x))
    r = L.Reshape((2, 3, 4), name="resh")(x)
    gap2 = L.GlobalAveragePooling2D(name="gap2")(r)  # (4,): mean over 6, a division that truncates
    gmp2 = L.GlobalMaxPooling2D(name="gmp2")(r)
    return keras.Model(x, [gap, gmp, y, gap2, gmp2], name="pooling")


CASES = {
    "residual": Case("residual", residual_model, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", {
        "fc1_relu": {"result": "ap_ufixed<8,2,AP_RND,AP_SAT>"},
        "add": {"result": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
        "relu": {"result": "ap_ufixed<7,2,AP_TRN,AP_SAT>"},
        "lrelu": {"result": "ap_fixed<9,3,AP_RND_INF,AP_SAT_SYM>", "param": "ap_fixed<8,1>"},
        "add2": {"result": "ap_fixed<8,2,AP_RND_ZERO,AP_WRAP>"},
        "fc4": {"result": "ap_fixed<10,3,AP_RND,AP_SAT>"},
    }),
    "merges": Case("merges", merges_model, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", {
        "fa": {"result": "ap_fixed<10,4,AP_RND,AP_SAT>"},
        "fb": {"result": "ap_fixed<9,3,AP_TRN,AP_WRAP>"},
        "sub": {"result": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
        "mul": {"result": "ap_fixed<10,4,AP_RND_MIN_INF,AP_SAT_SYM>"},
        "max": {"result": "ap_fixed<6,2,AP_TRN_ZERO,AP_SAT>"},
        "min": {"result": "ap_fixed<7,2,AP_RND_INF,AP_WRAP>"},
        "avg": {"result": "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"},
        "cat": {"result": "ap_fixed<8,3,AP_RND,AP_SAT>"},
        "lrelu": {"result": "ap_fixed<10,3,AP_RND_CONV,AP_SAT>", "param": "ap_fixed<4,1>"},
        "fc": {"result": "ap_fixed<12,5,AP_RND,AP_SAT>"},
    }),
    "pooling": Case("pooling", pooling_model, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", {
        "gap": {"result": "ap_fixed<8,2,AP_RND_CONV,AP_SAT>", "accum": "ap_fixed<16,6>"},
        "gmp": {"result": "ap_fixed<6,2,AP_RND,AP_SAT>", "accum": "ap_fixed<16,6>"},
        "gap2": {"result": "ap_fixed<10,3,AP_TRN,AP_SAT>", "accum": "ap_fixed<16,6>"},
        "gmp2": {"result": "ap_fixed<6,3,AP_TRN,AP_WRAP>", "accum": "ap_fixed<7,3,AP_RND,AP_SAT>"},
        "fc": {"result": "ap_fixed<10,3,AP_RND,AP_SAT>"},
    }),
}


def parse_fixed(text: str) -> FixedType:
    inner = text.replace(" ", "").split("<")[1].rstrip(">").split(",")
    width, integer = int(inner[0]), int(inner[1])
    modes = [m.replace("AP_", "") for m in inner[2:]] + ["TRN", "WRAP"][len(inner) - 2:]
    return FixedType(width, width - integer, not text.startswith("ap_u"), modes[0], modes[1])


def hls_config(model, case: Case, backend: str) -> dict:
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    layers = cfg["LayerName"]
    layers["inp"]["Precision"]["result"] = case.x_t
    for name, layer in layers.items():
        if name != "inp" and "weight" in layer.get("Precision", {}):  # Dense: wide, exact accumulation
            layer["Precision"].update(weight=WEIGHT_T, bias=BIAS_T, accum=WIDE_T, result=WIDE_T)
    for name, prec in case.precisions.items():
        assert name in layers, (name, sorted(layers))
        layers[name]["Precision"].update(prec)
    return cfg


def convert(case: Case, backend: str, out_dir: str, edit=None):
    model = case.build()
    cfg = hls_config(model, case, backend)
    if edit is not None:
        edit(cfg["LayerName"])
    return model, hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, backend=backend, output_dir=out_dir, project_name=case.name, io_type="io_parallel")


def make_inputs(case: Case, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The input grid at quarter-LSB steps over twice the range (ties, overflow), exact ties, normal reals."""
    t = parse_fixed(case.x_t)
    rng = np.random.default_rng(seed)
    span = 1 << (t.width + 2)
    grid = rng.integers(-span, span, size=(N_SAMPLES // 2, *shape)) * 2.0 ** -(t.frac + 2)
    ties = (2 * rng.integers(-(span // 2), span // 2, size=(N_SAMPLES // 4, *shape)) + 1) * 2.0 ** -(t.frac + 1)
    reals = rng.normal(0.0, 2.0 ** (t.width - t.frac - 1), size=(N_SAMPLES - len(grid) - len(ties), *shape))
    return np.ascontiguousarray(np.concatenate([grid, ties, reals]), dtype=np.float64)


_VITIS: dict[str, object] = {}


@pytest.fixture(scope="module")
def vitis_models(tmp_path_factory):
    """The Vitis C-sim of every case, converted once and compiled concurrently (one g++ per case)."""
    if not _VITIS:
        start = time.perf_counter()
        models = {name: convert(case, "Vitis", str(tmp_path_factory.mktemp(f"vitis_{name}")))[1]
                  for name, case in CASES.items()}
        with ThreadPoolExecutor(max_workers=max(1, min(len(models), os.cpu_count() or 1))) as pool:
            list(pool.map(lambda m: m.compile(), models.values()))
        _VITIS.update(models)
        print(f"hls4ml Vitis C-sim of {len(models)} DAG models: {time.perf_counter() - start:.1f} s")
    return _VITIS


def csim_outputs(vitis, x: np.ndarray) -> list[np.ndarray]:
    got = vitis.predict(np.ascontiguousarray(x.reshape(len(x), -1)))
    got = got if isinstance(got, list) else [got]
    return [np.asarray(g, dtype=np.float64).reshape(len(x), -1) for g in got]


def logical_outputs(graph, x: np.ndarray) -> list[np.ndarray]:
    (inp,) = graph.inputs
    values = evaluate(graph, {inp: cast_float(x, graph.tensor(inp).type, "inputs")})
    return [values[o].reshape(len(x), -1).astype(np.float64) * graph.tensor(o).type.lsb for o in graph.outputs]


def _check(name: str, vitis_models, tmp_path) -> object:
    case = CASES[name]
    _, ours = convert(case, "nn2aie", str(tmp_path / "aie"))
    graph = graph_from_hls4ml(ours)
    shape = graph.tensor(graph.inputs[0]).shape
    x = make_inputs(case, shape, seed=900 + len(name))
    want = csim_outputs(vitis_models[name], x)
    got = logical_outputs(graph, x)
    assert len(got) == len(want) == len(graph.outputs)
    for out, g, w in zip(graph.outputs, got, want, strict=True):
        assert g.shape == w.shape, (out, g.shape, w.shape)
        bad = np.argwhere(g != w)
        assert not len(bad), f"output {out}: {len(bad)} of {g.size} values differ, first at {bad[0].tolist()}: " \
                             f"nn2aie {g[tuple(bad[0])]} vs hls4ml {w[tuple(bad[0])]}"
        assert len(np.unique(w)) > 8, f"output {out} is degenerate"
    return graph


@needs_gxx
def test_residual_add_relu_leaky_equals_hls4ml_csim(vitis_models, tmp_path):
    graph = _check("residual", vitis_models, tmp_path)
    kinds = [(op.kind, op.attrs.get("op", op.attrs.get("activation"))) for op in graph.ops]
    assert kinds == [("dense", "relu"), ("dense", "linear"), ("eltwise", "add"), ("eltwise", "relu"),
                     ("dense", "linear"), ("eltwise", "leaky_relu"), ("eltwise", "add"), ("dense", "linear")]
    assert graph.op("lrelu").attrs["alpha_shift"] == 2
    assert {o.name for o in graph.consumers("fc1_relu")} == {"fc2", "add"}  # fan-out
    assert {o.name for o in graph.consumers("inp")} == {"fc1", "add2"}


@needs_gxx
def test_merges_and_concatenate_equal_hls4ml_csim(vitis_models, tmp_path):
    graph = _check("merges", vitis_models, tmp_path)
    assert graph.outputs == ["sub", "mul", "max", "min", "avg", "fc"]
    assert graph.op("avg").attrs == {"op": "mul"} and graph.op("avg_sum").attrs == {"op": "add"}
    # Concatenate assigns each input to its result type: both inputs are requantised first
    assert graph.op("cat").inputs == ["cat_in0", "cat_in1"]


@needs_gxx
def test_transpose_flatten_reshape_global_pooling_equal_hls4ml_csim(vitis_models, tmp_path):
    graph = _check("pooling", vitis_models, tmp_path)
    assert graph.op("gap_mean").attrs == {"op": "mean", "axes": [0], "keepdims": False, "divide": "exact"}
    assert graph.tensor("gap_mean").type.rounding == "TRN_ZERO"  # ap_fixed division truncates toward zero
    assert graph.op("gap2_mean").attrs["axes"] == [0, 1]
    # hls4ml gives a Transpose its input's type (a configured result precision is not used): no cast
    assert graph.op("transp").attrs == {"perm": [1, 0]} and graph.op("transp").inputs == ["inp"]
    assert graph.op("flat").kind == "reshape" and graph.tensor("flat").type == parse_fixed(CASES["pooling"].x_t)
    assert graph.op("gmp").kind == "reduce"  # a wide accum: one requantisation
    assert graph.op("gmp2_max").kind == "reduce" and graph.op("gmp2").attrs == {"op": "identity"}  # rounding accum


# -- refusals and the plugin ------------------------------------------------------------------------------------
def test_narrow_pooling_accumulator_is_refused(tmp_path):
    def narrow(layers):
        layers["gap"]["Precision"]["accum"] = "ap_fixed<8,3>"

    _, hm = convert(CASES["pooling"], "nn2aie", str(tmp_path / "p"), edit=narrow)
    with pytest.raises(UnsupportedQuantizationError, match=r"hls4ml layer gap \(GlobalPooling1D\) accum.*partial "
                       r"sum of 4 inputs"):
        graph_from_hls4ml(hm)


def test_leaky_relu_slope_must_be_a_power_of_two(tmp_path):
    def build():
        x = keras.Input((8,), name="inp")
        return keras.Model(x, _dense(4, "fc")(L.LeakyReLU(negative_slope=0.3, name="lrelu")(x)))

    _, hm = convert(Case("lrelu03", build, "ap_fixed<8,3>"), "nn2aie", str(tmp_path / "p"))
    with pytest.raises(UnsupportedOpError, match=r"hls4ml layer lrelu \(.*\): activation 'leakyrelu' with "
                       r"parameter 0.3 is not supported.*power-of-two"):
        graph_from_hls4ml(hm)


def test_dag_model_through_the_plugin_is_refused_by_the_backend_with_a_typed_error(tmp_path):
    """The logical graph converts; compile() refuses this model's 32-bit dense results with a typed error (the
    acceptance test compiles a residual model whose types fit the tiles)."""
    _, hm = convert(CASES["residual"], "nn2aie", str(tmp_path / "p"))
    assert len(graph_from_hls4ml(hm).ops) == 8
    try:
        hm.compile()
    except Nn2aieError as err:
        print(f"backend refusal: {err}")
        return
    y = hm.predict(np.zeros((4, 16)))
    assert np.asarray(y).shape == (4, 5)
