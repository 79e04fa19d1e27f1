"""The hls4ml backend plugin (``backend='nn2aie'``): discovery, conversion, predict == hls4ml's own Vitis C-sim.

Each case is a seeded torch MLP converted twice with the same per-layer precisions: once with ``backend='nn2aie'``
(emulator, no C++), once with hls4ml's Vitis backend (``compile()`` builds its C simulation with g++). ``predict``
must agree exactly on >= 1000 inputs chosen to hit the input type's ties and overflow. Accumulators and Dense
results are wide (exact), so the lossy casts are the input, every ReLU result and the last Dense result. The
weights are off the 2**-f grid, so they also check that the plugin loads the weights as hls4ml's C++ does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

hls4ml = pytest.importorskip("hls4ml")
torch = pytest.importorskip("torch")

from nn2aie.errors import MissingToolError, UnsupportedOpError, UnsupportedQuantizationError  # noqa: E402
from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml  # noqa: E402
from nn2aie.ir.evaluate import cast_float  # noqa: E402
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
    device: str = "xcve2802"


CASES = [
    Case("jet_tagger", (16, 64, 32, 32, 5), "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
         ("ap_ufixed<8,2,AP_RND,AP_SAT>", "ap_fixed<8,3,AP_RND_INF,AP_SAT_SYM>", "ap_ufixed<8,3,AP_TRN,AP_SAT>"),
         "ap_fixed<8,2,AP_RND_ZERO,AP_SAT>", seed=1),
    Case("mlp_384_256_200_10", (384, 256, 200, 10), "ap_fixed<8,3,AP_TRN,AP_WRAP>",
         ("ap_ufixed<8,1,AP_RND_MIN_INF,AP_SAT>", "ap_fixed<8,2,AP_RND_CONV,AP_SAT_SYM>"),
         "ap_fixed<16,6,AP_TRN_ZERO,AP_SAT>", seed=2),
]
SLOW_CASES = [
    Case(f"jet_{q}_{o}", (16, 64, 32, 32, 5), f"ap_fixed<8,3,AP_{q},AP_{o}>",
         (f"ap_ufixed<8,2,AP_{q},AP_{o}>", f"ap_fixed<8,3,AP_{q},AP_{o}>", f"ap_fixed<16,6,AP_{q},AP_{o}>"),
         f"ap_fixed<8,2,AP_{q},AP_WRAP>", seed=10 + i)
    for i, (q, o) in enumerate((q, o) for q in ("TRN", "RND", "RND_CONV", "RND_MIN_INF") for o in ("SAT", "SAT_SYM"))
]


def torch_mlp(sizes, seed: int, act=torch.nn.ReLU):
    torch.manual_seed(seed)
    layers: list[tuple[str, torch.nn.Module]] = []
    for i, (k, n) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append((f"fc{i + 1}", torch.nn.Linear(k, n)))
        if i + 2 < len(sizes):
            layers.append((f"relu{i + 1}", act()))  # named relu* whatever the activation (config keys)
    return torch.nn.Sequential(OrderedDict(layers)).eval()


def hls_config(model, case: Case, backend: str) -> dict:
    cfg = hls4ml.utils.config_from_pytorch_model(model, input_shape=(case.sizes[0],), granularity="name",
                                                 backend=backend)
    layers = cfg["LayerName"]
    layers["input_1"]["Precision"]["result"] = case.x_t
    n_dense = len(case.sizes) - 1
    for i in range(n_dense):
        last = i == n_dense - 1
        layers[f"fc{i + 1}"]["Precision"].update(weight=WEIGHT_T, bias=BIAS_T, accum=WIDE_T,
                                                 result=case.out_t if last else WIDE_T)
        if not last:
            layers[f"relu{i + 1}"]["Precision"]["result"] = case.relu_t[i]
    return cfg


def convert(case: Case, backend: str, out_dir: str, **kwargs):
    model = torch_mlp(case.sizes, case.seed)
    return hls4ml.converters.convert_from_pytorch_model(
        model, output_dir=out_dir, project_name="mlp", backend=backend, io_type="io_parallel",
        hls_config=hls_config(model, case, backend), **kwargs)


def parse_fixed(text: str) -> FixedType:
    inner = text.replace(" ", "").split("<")[1].rstrip(">").split(",")
    width, integer = int(inner[0]), int(inner[1])
    modes = [m.replace("AP_", "") for m in inner[2:]] + ["TRN", "WRAP"][len(inner) - 2:]
    return FixedType(width, width - integer, not text.startswith("ap_u"), modes[0], modes[1])


def make_inputs(case: Case) -> np.ndarray:
    """The input grid at quarter-LSB steps over twice the range (ties, overflow), exact ties, normal reals."""
    t = parse_fixed(case.x_t)
    rng = np.random.default_rng(500 + case.seed)
    k = case.sizes[0]
    span = 1 << (t.width + 2)
    grid = rng.integers(-span, span, size=(N_SAMPLES // 2, k)) * 2.0 ** -(t.frac + 2)
    ties = (2 * rng.integers(-(span // 2), span // 2, size=(N_SAMPLES // 4, k)) + 1) * 2.0 ** -(t.frac + 1)
    reals = rng.normal(0.0, 2.0 ** (t.width - t.frac - 1), size=(N_SAMPLES - len(grid) - len(ties), k))
    return np.ascontiguousarray(np.concatenate([grid, ties, reals]), dtype=np.float64)


_VITIS: dict[str, object] = {}


@pytest.fixture(scope="module")
def vitis_models(tmp_path_factory):
    """hls4ml Vitis C-sim models, built once per module, concurrently (one g++ per CPU)."""

    def get(cases: list[Case]):
        todo = [c for c in cases if c.name not in _VITIS]
        models = [convert(c, "Vitis", str(tmp_path_factory.mktemp(f"vitis_{c.name}"))) for c in todo]
        with ThreadPoolExecutor(max_workers=max(1, min(len(models), os.cpu_count() or 1))) as pool:
            list(pool.map(lambda m: m.compile(), models))
        _VITIS.update({c.name: m for c, m in zip(todo, models, strict=True)})
        return [_VITIS[c.name] for c in cases]

    return get


# -- discovery -------------------------------------------------------------------------------------------------
def test_backend_is_registered_through_the_entry_point():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points().select(group="hls4ml.backends") if ep.name == "nn2aie"]
    assert [ep.value for ep in eps] == ["nn2aie.hls4ml_plugin:register"]
    assert "nn2aie" in hls4ml.backends.get_available_backends()
    backend = hls4ml.backends.get_backend("NN2AIE")  # hls4ml lower-cases backend names
    assert type(backend).__name__ == "Nn2aieBackend" and backend.name == "nn2aie"
    cfg = backend.create_initial_config(device="xcve2302", batch=8)
    assert cfg["Device"] == "xcve2302" and cfg["Batch"] == 8 and cfg["IOType"] == "io_parallel"


def test_importing_nn2aie_does_not_import_hls4ml():
    import subprocess
    import sys

    code = "import sys, nn2aie, nn2aie.api, nn2aie.hls4ml_plugin, nn2aie.frontends.hls4ml_frontend; " \
           "print('hls4ml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- bit-exactness against hls4ml's C simulation ------------------------------------------------------------------
def _check_case(case: Case, vitis_model, tmp_path) -> None:
    ours = convert(case, "nn2aie", str(tmp_path / "aie"))
    ours.compile()
    x = make_inputs(case)
    want = vitis_model.predict(x)
    got = ours.predict(x)
    assert got.shape == want.shape == (N_SAMPLES, case.sizes[-1])
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} outputs differ, first at {bad[0].tolist()}: {got[tuple(bad[0])]} vs " \
                         f"{want[tuple(bad[0])]}"
    assert len(np.unique(got)) > 20  # not a degenerate (all-saturated / all-zero) model
    if case.sizes[0] > 64:
        return
    # float32 inputs use hls4ml's float bridge: the same values, the same results
    assert np.array_equal(ours.predict(x.astype(np.float32)), vitis_model.predict(x.astype(np.float32)))


@needs_gxx
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_predict_equals_hls4ml_vitis_csim(case, vitis_models, tmp_path):
    vitis_model = vitis_models(CASES)[CASES.index(case)]  # the first call builds every default case at once
    _check_case(case, vitis_model, tmp_path)


@needs_gxx
@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=[c.name for c in SLOW_CASES])
def test_predict_equals_hls4ml_vitis_csim_sweep(case, vitis_models, tmp_path):
    vitis_model = vitis_models(SLOW_CASES)[SLOW_CASES.index(case)]
    _check_case(case, vitis_model, tmp_path)


@needs_gxx
def test_weight_codes_equal_the_text_hls4ml_writes(vitis_models, tmp_path):
    """The codes the frontend loads equal the ap cast of firmware/weights/*.txt of hls4ml's own Vitis project."""
    case = CASES[0]
    vitis_model = vitis_models(CASES)[0]
    graph = graph_from_hls4ml(convert(case, "nn2aie", str(tmp_path / "aie")))
    project = vitis_model.config.get_output_dir()
    for layer in vitis_model.get_layers():
        if layer.class_name != "Dense":
            continue
        for role, var in (("weight", layer.weights["weight"]), ("bias", layer.weights["bias"])):
            text = open(os.path.join(project, "firmware", "weights", f"{var.name}.txt")).read()
            values = np.array([float(v) for v in text.split(",")]).reshape(np.asarray(var.data).shape)
            t = parse_fixed(WEIGHT_T if role == "weight" else BIAS_T)
            mine = graph.tensor(f"{layer.name}_{role}").data
            assert np.array_equal(mine, cast_float(values, t, "test"))
            off_grid = np.asarray(var.data) * 2.0**t.frac != np.floor(np.asarray(var.data) * 2.0**t.frac)
            assert off_grid.any()


def model_plan_json(model):
    from nn2aie.hls4ml_plugin.backend import compiled_model

    return compiled_model(model).plan.to_json()


# -- project, build, refusals ------------------------------------------------------------------------------------
def test_write_produces_a_vitis_project(tmp_path):
    case = CASES[0]
    model = convert(case, "nn2aie", str(tmp_path / "prj"), device="xcve2802", batch=8)
    model.config.config["HLSConfig"]["LayerName"]["fc1"]["Parallelism"] = {"cas_length": 2, "cas_num": 2}
    model.write()
    out = tmp_path / "prj"
    for rel in ("src/graph.h", "src/graph.cpp", "Makefile", "aie.cfg", "summary.json", "nn2aie/graph.json",
                "nn2aie-project.json"):
        assert (out / rel).is_file(), rel
    from nn2aie.api import load_project

    rebuilt = load_project(out)  # what `nn2aie simulate DIR` does: same plan from the saved graph and options
    assert rebuilt.model.framework == "hls4ml" and rebuilt.plan.to_json() == model_plan_json(model)
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["batch"] == 8 and summary["model"]["framework"] == "hls4ml"
    fc1 = next(layer for layer in summary["layers"] if layer["name"] == "fc1")
    assert (fc1["cas_length"], fc1["cas_num"], fc1["override"]) == (2, 2, True)
    model.write()  # rewriting its own project is allowed
    assert (out / "src/graph.h").is_file()


def test_write_refuses_a_foreign_directory(tmp_path):
    from nn2aie.errors import IllegalConfigError

    (tmp_path / "prj").mkdir()
    (tmp_path / "prj" / "keep.txt").write_text("mine")
    model = convert(CASES[0], "nn2aie", str(tmp_path / "prj"))
    with pytest.raises(IllegalConfigError, match="did not write"):
        model.write()
    assert (tmp_path / "prj" / "keep.txt").read_text() == "mine"


def test_build_without_vitis_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    model = convert(CASES[0], "nn2aie", str(tmp_path / "prj"))
    with pytest.raises(MissingToolError, match=r"v\+\+.*predict\(\) already gives the bit-exact"):
        model.build()


@pytest.mark.parametrize("act", [torch.nn.ELU])
def test_unsupported_activation_names_the_layer(tmp_path, act):
    model = torch_mlp((8, 6, 3), 0, act=act)
    cfg = hls4ml.utils.config_from_pytorch_model(model, input_shape=(8,), granularity="name", backend="nn2aie")
    hm = hls4ml.converters.convert_from_pytorch_model(model, output_dir=str(tmp_path / "p"), backend="nn2aie",
                                                     hls_config=cfg)
    with pytest.raises(UnsupportedOpError, match=r"hls4ml layer relu1 \(\w*Activation\).*activation 'elu'"):
        hm.compile()


def test_conv1d_with_a_too_wide_auto_result_names_the_layer(tmp_path):
    """hls4ml's 'auto' result of a Conv1d is its exact sum (36 bits here): refused naming the layer and the fix
    (convolutions themselves convert: tests/frontends/test_hls4ml_conv.py)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv1d(2, 4, 3), flat=torch.nn.Flatten(),
                                            fc=torch.nn.Linear(4 * 6, 3))).eval()
    cfg = hls4ml.utils.config_from_pytorch_model(model, input_shape=(2, 8), granularity="name", backend="nn2aie")
    hm = hls4ml.converters.convert_from_pytorch_model(model, output_dir=str(tmp_path / "p"), backend="nn2aie",
                                                     hls_config=cfg)
    with pytest.raises(UnsupportedQuantizationError, match=r"layer conv output tensor conv: 36-bit output codes"):
        hm.predict(np.zeros((4, 16)))


def test_narrow_accumulator_is_refused(tmp_path):
    case = CASES[0]
    model = torch_mlp(case.sizes, case.seed)
    cfg = hls_config(model, case, "nn2aie")
    cfg["LayerName"]["fc2"]["Precision"]["accum"] = "ap_fixed<12,4>"
    hm = hls4ml.converters.convert_from_pytorch_model(model, output_dir=str(tmp_path / "p"), backend="nn2aie",
                                                     hls_config=cfg)
    with pytest.raises(UnsupportedQuantizationError, match="fc2.*wrap/truncate inside the dot product"):
        hm.compile()


def test_narrow_dense_result_then_relu(tmp_path):
    """Two lossy casts in a row are refused; a saturating Dense result that the ReLU type holds is folded."""
    case = CASES[0]
    model = torch_mlp(case.sizes, case.seed)
    cfg = hls_config(model, case, "nn2aie")
    cfg["LayerName"]["fc1"]["Precision"]["result"] = "ap_fixed<8,3,AP_RND,AP_WRAP>"
    hm = hls4ml.converters.convert_from_pytorch_model(model, output_dir=str(tmp_path / "p"), backend="nn2aie",
                                                      hls_config=cfg)
    with pytest.raises(UnsupportedOpError, match=r"fc1 \(Dense\) -> relu1 \(relu\).*two requantisations"):
        hm.compile()
    cfg["LayerName"]["fc1"]["Precision"]["result"] = "ap_fixed<8,3,AP_RND,AP_SAT>"
    cfg["LayerName"]["relu1"]["Precision"]["result"] = "ap_ufixed<8,2,AP_TRN,AP_SAT>"  # holds [0, 4) at 1/32
    hm = hls4ml.converters.convert_from_pytorch_model(model, output_dir=str(tmp_path / "q"), backend="nn2aie",
                                                      hls_config=cfg)
    graph = graph_from_hls4ml(hm)
    assert graph.ops[0].attrs["activation"] == "relu"
    assert graph.tensor(graph.ops[0].outputs[0]).type == parse_fixed("ap_fixed<8,3,AP_RND,AP_SAT>")


@needs_gxx
def test_folded_saturating_dense_result_equals_hls4ml(tmp_path):
    """relu(sat(acc)) with the ReLU type holding the Dense type: the folded op equals hls4ml's C-sim."""
    case = Case("sat_fold", (16, 12, 5), "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", ("ap_ufixed<8,3,AP_TRN,AP_SAT>",),
                "ap_fixed<8,2,AP_RND,AP_SAT>", seed=7)
    start = time.perf_counter()
    models = []
    for backend in ("Vitis", "nn2aie"):
        model = torch_mlp(case.sizes, case.seed)
        cfg = hls_config(model, case, backend)
        cfg["LayerName"]["fc1"]["Precision"]["result"] = "ap_fixed<8,3,AP_RND_INF,AP_SAT_SYM>"
        models.append(hls4ml.converters.convert_from_pytorch_model(
            model, output_dir=tempfile.mkdtemp(dir=tmp_path), backend=backend, hls_config=cfg))
    for m in models:
        m.compile()
    x = make_inputs(case)
    assert np.array_equal(models[1].predict(x), models[0].predict(x))
    assert time.perf_counter() - start < 120
