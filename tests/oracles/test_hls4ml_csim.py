"""hls4ml's own C simulation as an independent oracle for nn2aie's rounding and overflow semantics.

Small seeded torch MLPs (Linear -> ReLU -> Linear) are converted by hls4ml 1.3.0 (Vitis backend, io_parallel) with
explicit ap_fixed types per layer, compiled with g++ (``ModelGraph.compile()``) and run with ``predict()``. The
same network is built directly in nn2aie's logical IR from the weights hls4ml's C++ actually loads, and
``evaluate`` / the placed-design ``Emulator`` must reproduce ``predict`` exactly on >= 1000 inputs.

Precision set-up (shared/reference/numerics.md, "hls4ml caution"): hls4ml's accumulators and the first Dense's
result are wide (exact), so the only lossy casts are the ones under test: input, ReLU result, last Dense result.

hls4ml's order of operations for Dense -> ReLU is ``cast_to_relu_result_t(relu(dense_result))``: the ReLU acts on
the exact sum and the rounding/overflow happens afterwards (``test_hls4ml_matches_its_semantics`` pins this down).
With any rounding mode and saturating overflow this equals ``relu(requantize(acc))``; with AP_WRAP it does not
(negative sums must give 0, not wrapped codes; positive overflows must wrap, for a signed type to negative values).
The ``relu_wrap_*`` cases (and the AP_WRAP sweep) check nn2aie's logical model takes the hls4ml order; the placed
design may refuse them (a clear refusal skips the emulator test, a wrong answer fails it). A narrow *Dense* result
followed by a ReLU (``narrow_dense``) is the other order, relu(wrap(acc)); it is modelled as a linear dense plus an
identity dense with the ReLU, whose requantization is exact, so it holds under either order.

Each compiled hls4ml project is cached for the session; the default run builds a handful of models (about 6 s of
g++ each), the full 7 x 3 rounding/overflow sweep is marked slow.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

hls4ml = pytest.importorskip("hls4ml")
torch = pytest.importorskip("torch")
if shutil.which("g++") is None:
    pytest.skip("g++ is not installed: hls4ml's C simulation needs it", allow_module_level=True)

from nn2aie.errors import Nn2aieError  # noqa: E402
from nn2aie.ir.evaluate import evaluate  # noqa: E402
from nn2aie.ir.logical import Graph, Op, Tensor  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402
from nn2aie.numerics import quantize_float  # noqa: E402
from nn2aie.passes.pipeline import compile_graph  # noqa: E402
from nn2aie.sim.emulator import Emulator  # noqa: E402

ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOWS = ("SAT", "SAT_SYM", "WRAP")

WEIGHT_T = "ap_fixed<8,2>"  # hls4ml default modes: AP_TRN, AP_WRAP (weights are quantized by floor)
BIAS_T = "ap_fixed<16,6>"
WIDE_T = "ap_fixed<32,16>"  # accumulators and the first Dense's result: exact for every product here

N_SAMPLES = 1200


# -- ap_fixed types and exact quantization (test-side, independent of nn2aie.numerics) -------------------------------
def ap(signed: bool, width: int, integer: int, q: str = "TRN", o: str = "WRAP") -> str:
    return f"ap_{'' if signed else 'u'}fixed<{width},{integer},AP_{q},AP_{o}>"


def parse_ap(text: str) -> FixedType:
    """'ap_ufixed<8,3,AP_RND,AP_SAT>' -> FixedType(8, 5, False, 'RND', 'SAT'); defaults AP_TRN, AP_WRAP."""
    m = re.fullmatch(r"ap_(u?)fixed<(\d+),(-?\d+)(?:,AP_(\w+?))?(?:,AP_(\w+?))?>", text.replace(" ", ""))
    assert m, text
    width, integer = int(m[2]), int(m[3])
    return FixedType(width, width - integer, m[1] != "u", m[4] or "TRN", m[5] or "WRAP")


def round_scaled(s: np.ndarray, mode: str) -> np.ndarray:
    """Round exact float64 values ``s`` (already in LSB units) to integers with the ap_fixed mode (UG1399)."""
    fl = np.floor(s)
    r = s - fl  # exact
    odd = np.mod(fl, 2) == 1
    up = {
        "TRN": np.zeros(s.shape, bool),
        "TRN_ZERO": (r > 0) & (s < 0),
        "RND": r >= 0.5,
        "RND_ZERO": (r > 0.5) | ((r == 0.5) & (s < 0)),
        "RND_MIN_INF": r > 0.5,
        "RND_INF": (r > 0.5) | ((r == 0.5) & (s > 0)),
        "RND_CONV": (r > 0.5) | ((r == 0.5) & odd),
    }[mode]
    return (fl + up).astype(np.int64)


def overflow_codes(q: np.ndarray, t: FixedType) -> np.ndarray:
    q = np.asarray(q, dtype=np.int64)
    if t.overflow == "SAT":
        return np.clip(q, t.min_code, t.max_code)
    if t.overflow == "SAT_SYM":
        return np.clip(q, -t.max_code if t.signed else 0, t.max_code)
    assert t.overflow == "WRAP", t.overflow
    low = q & ((1 << t.width) - 1)
    return np.where(low > t.max_code, low - (1 << t.width), low) if t.signed else low


def ap_cast_float(x: np.ndarray, t: FixedType) -> np.ndarray:
    """Codes of ``ap_fixed(double x)`` (x * 2**frac is exact in float64 here)."""
    return overflow_codes(round_scaled(np.asarray(x, np.float64) * 2.0**t.frac, t.rounding), t)


def round_codes(codes: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    """Round exact integer codes at scale 2**-frac to the LSB of ``t`` (ap_fixed mode), no overflow handling."""
    codes = np.asarray(codes, dtype=np.int64)
    shift = frac - t.frac
    if shift <= 0:
        return codes << -shift
    q, r = codes >> shift, codes & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    up = {
        "TRN": np.zeros(codes.shape, bool),
        "TRN_ZERO": (r > 0) & (codes < 0),
        "RND": r >= half,
        "RND_ZERO": (r > half) | ((r == half) & (codes < 0)),
        "RND_MIN_INF": r > half,
        "RND_INF": (r > half) | ((r == half) & (codes >= 0)),
        "RND_CONV": (r > half) | ((r == half) & ((q & 1) == 1)),
    }[t.rounding]
    return q + up


def ap_cast_codes(codes: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    """Cast exact integer codes at scale 2**-frac into ``t``: round (ap_fixed mode), then overflow."""
    return overflow_codes(round_codes(codes, frac, t), t)


def cast_stats(codes: np.ndarray, frac: int, t: FixedType) -> tuple[int, int]:
    """(exact ties, values out of range after rounding) when casting ``codes`` at scale 2**-frac into ``t``."""
    codes = np.asarray(codes, dtype=np.int64)
    shift = frac - t.frac
    ties = int(np.count_nonzero((codes & ((1 << shift) - 1)) == (1 << (shift - 1)))) if shift > 0 else 0
    q = round_codes(codes, frac, t)
    lo = -t.max_code if t.overflow == "SAT_SYM" and t.signed else t.min_code
    return ties, int(np.count_nonzero((q < lo) | (q > t.max_code)))


# -- cases ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple[int, int, int]
    seed: int
    x_t: str  # input_t
    hidden_t: str  # ReLU result_t (the first Dense's result is wide), or see narrow_dense
    out_t: str  # last Dense result_t (no activation)
    narrow_dense: bool = False  # put hidden_t on the first Dense's result instead; ReLU result is the same type


DEFAULT_CASES = [
    Case("ufixed_rnd_sat", (16, 12, 5), 0, ap(True, 8, 3, "RND_CONV", "SAT"), ap(False, 8, 2, "RND", "SAT"),
         ap(True, 8, 2, "TRN", "SAT_SYM")),
    Case("ufixed_rndzero_satsym", (10, 8, 3), 1, ap(True, 8, 3, "TRN_ZERO", "WRAP"),
         ap(False, 6, 2, "RND_ZERO", "SAT_SYM"), ap(True, 8, 1, "RND_INF", "WRAP")),
    Case("fixed_rndinf_sat", (16, 12, 5), 2, ap(True, 8, 3, "RND_MIN_INF", "SAT_SYM"), ap(True, 8, 3, "RND_INF", "SAT"),
         ap(True, 8, 2, "RND_CONV", "WRAP")),
    Case("fixed_trn_satsym", (10, 8, 3), 3, ap(True, 8, 3, "RND", "SAT"), ap(True, 7, 2, "TRN", "SAT_SYM"),
         ap(True, 8, 1, "RND_ZERO", "SAT")),
    Case("fixed_rndmininf_trnzero_sat16", (16, 12, 5), 4, ap(True, 8, 3, "RND_CONV", "SAT"),
         ap(True, 8, 1, "RND_MIN_INF", "SAT"), ap(True, 12, 1, "TRN_ZERO", "SAT")),
    Case("narrow_dense_wrap_then_relu", (16, 12, 5), 5, ap(True, 8, 3, "RND_CONV", "SAT"),
         ap(True, 8, 2, "RND_CONV", "WRAP"), ap(True, 8, 1, "RND", "SAT"), narrow_dense=True),
    # ReLU result with AP_WRAP: the order of ReLU and overflow matters
    Case("relu_wrap_signed", (16, 12, 5), 6, ap(True, 8, 3, "RND_CONV", "SAT"), ap(True, 8, 3, "TRN", "WRAP"),
         ap(True, 8, 2, "RND_CONV", "SAT")),
    Case("relu_wrap_unsigned", (10, 8, 3), 7, ap(True, 8, 3, "RND_CONV", "SAT"),
         ap(False, 8, 2, "RND_CONV", "WRAP"), ap(True, 8, 2, "RND_CONV", "SAT")),
]

SWEEP_CASES = [
    Case(f"sweep_{q}_{o}", (16, 12, 5) if i % 2 == 0 else (10, 8, 3), 100 + i, ap(True, 8, 3, q, o),
         ap(i % 3 != 0, 8, 3 if i % 3 != 0 else 2, q, o), ap(True, 8, 1, q, o))
    for i, (q, o) in enumerate((q, o) for q in ROUNDINGS for o in OVERFLOWS)
]


ALL_CASES = [pytest.param(c, id=c.name) for c in DEFAULT_CASES] + [
    pytest.param(c, id=c.name, marks=pytest.mark.slow) for c in SWEEP_CASES]


# -- hls4ml side --------------------------------------------------------------------------------------------------
@dataclass
class Built:
    case: Case
    model: object  # hls4ml ModelGraph, compiled
    weights: list[np.ndarray]  # [K, N] float values as loaded by hls4ml's C++ (before its cast to weight_t)
    biases: list[np.ndarray]
    compile_seconds: float


_CACHE: dict[str, Built] = {}


def torch_mlp(case: Case):
    torch.manual_seed(case.seed)
    k, h, n = case.sizes
    return torch.nn.Sequential(OrderedDict(
        fc1=torch.nn.Linear(k, h), relu1=torch.nn.ReLU(), fc2=torch.nn.Linear(h, n))).eval()


def _read_txt(project, name: str) -> np.ndarray:
    # the C++ reads these with `istream >> double` and converts to weight_t/bias_t: Python float() parses alike
    text = (project / "firmware" / "weights" / f"{name}.txt").read_text().strip()
    return np.array([float(v) for v in text.split(",")], dtype=np.float64)


def _convert(case: Case, project):
    model = torch_mlp(case)
    cfg = hls4ml.utils.config_from_pytorch_model(model, input_shape=(case.sizes[0],), granularity="name",
                                                 backend="Vitis")
    layers = cfg["LayerName"]
    assert set(layers) == {"input_1", "fc1", "relu1", "fc2"}, layers.keys()
    layers["input_1"]["Precision"]["result"] = case.x_t
    dense = {"weight": WEIGHT_T, "bias": BIAS_T, "accum": WIDE_T}
    layers["fc1"]["Precision"].update(dense, result=case.hidden_t if case.narrow_dense else WIDE_T)
    layers["relu1"]["Precision"]["result"] = case.hidden_t
    layers["fc2"]["Precision"].update(dense, result=case.out_t)
    hls_model = hls4ml.converters.convert_from_pytorch_model(
        model, output_dir=str(project), project_name="oracle", backend="Vitis", io_type="io_parallel", hls_config=cfg)
    names = [lay.name for lay in hls_model.get_layers()]
    assert names == ["input_1", "fc1", "relu1", "fc2"], names  # no layer fused or removed
    return model, hls_model


def _compile(hls_model) -> float:
    start = time.perf_counter()
    hls_model.compile()  # writes the project, runs its build_lib.sh (g++), loads the library
    return time.perf_counter() - start


def _loaded_parameters(case: Case, model, hls_model, project, seconds: float) -> Built:
    ws, bs = [], []
    for lay, lin in ((hls_model.graph["fc1"], model.fc1), (hls_model.graph["fc2"], model.fc2)):
        wvar, bvar = lay.get_weights()
        assert str(wvar.type.precision).startswith("fixed<8,2,") and str(bvar.type.precision).startswith("fixed<16,6,")
        k, n = lin.in_features, lin.out_features
        w = _read_txt(project, wvar.name).reshape(k, n)  # dense_latency indexes weights[i_in * n_out + j_out]
        b = _read_txt(project, bvar.name)
        # hls4ml prints each weight with as many decimals as its type has fractional bits (exact for values on
        # the grid, rounded otherwise); its C++ parses that text as a double and casts it with the type's modes
        w_tol, b_tol = (0.51 * 10.0 ** -parse_ap(t).frac for t in (WEIGHT_T, BIAS_T))
        assert np.allclose(w, lin.weight.detach().double().numpy().T, rtol=0, atol=w_tol)
        assert np.allclose(b, lin.bias.detach().double().numpy(), rtol=0, atol=b_tol)
        ws.append(w)
        bs.append(b)
    return Built(case, hls_model, ws, bs, seconds)


@pytest.fixture(scope="session")
def hls_build(request, tmp_path_factory):
    """Convert + compile each case once per session. On first use, every case the selected tests of this module
    need is converted (in this thread) and compiled concurrently (one g++ per CPU); a failed build is not retried."""
    failed: dict[str, str] = {}
    wanted: list[Case] = []
    for item in request.session.items:
        case = item.callspec.params.get("case") if hasattr(item, "callspec") else None
        if isinstance(case, Case) and "hls_build" in item.fixturenames and case not in wanted:
            wanted.append(case)

    def build_many(cases: list[Case]) -> None:
        jobs = []
        for case in cases:
            project = tmp_path_factory.mktemp(f"hls4ml_{case.name}")
            try:
                jobs.append((case, project, *_convert(case, project)))
            except Exception as err:
                failed[case.name] = repr(err)
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            futures = [pool.submit(_compile, job[3]) for job in jobs]
        for (case, project, model, hls_model), fut in zip(jobs, futures, strict=True):
            try:
                _CACHE[case.name] = _loaded_parameters(case, model, hls_model, project, fut.result())
            except Exception as err:
                failed[case.name] = repr(err)

    def build(case: Case) -> Built:
        if case.name not in _CACHE and case.name not in failed:
            build_many([c for c in wanted if c.name not in _CACHE and c.name not in failed] or [case])
            if case.name not in _CACHE and case.name not in failed:
                build_many([case])
        if case.name in failed:
            pytest.fail(f"the hls4ml build of {case.name} failed: {failed[case.name]}")
        return _CACHE[case.name]

    return build


def make_inputs(case: Case) -> np.ndarray:
    """Inputs: the input grid at 1/4 LSB (exact ties), well past the range (saturation / wrap), random reals."""
    x_t = parse_ap(case.x_t)
    rng = np.random.default_rng(1000 + case.seed)
    k = case.sizes[0]
    span = 1 << (x_t.width + 2)  # quarter-LSB steps over twice the range
    grid = rng.integers(-span, span, size=(N_SAMPLES // 2, k)) * 2.0 ** -(x_t.frac + 2)
    ties = (2 * rng.integers(-(span // 2), span // 2, size=(N_SAMPLES // 4, k)) + 1) * 2.0 ** -(x_t.frac + 1)
    reals = rng.normal(0.0, 2.0 ** (x_t.width - x_t.frac - 1), size=(N_SAMPLES - len(grid) - len(ties), k))
    x = np.concatenate([grid, ties, reals])
    x[0], x[1], x[2] = 2.0 ** (x_t.width - x_t.frac), -(2.0 ** (x_t.width - x_t.frac)), 0.0
    return np.ascontiguousarray(x, dtype=np.float64)


# -- nn2aie side ----------------------------------------------------------------------------------------------------
def nn2aie_graph(built: Built) -> Graph:
    """The equivalent logical graph, built directly in the IR from the values hls4ml's C++ loads."""
    case = built.case
    w_t, b_t = parse_ap(WEIGHT_T), parse_ap(BIAS_T)
    x_t, h_t, y_t = parse_ap(case.x_t), parse_ap(case.hidden_t), parse_ap(case.out_t)
    tensors = {"x": Tensor("x", (case.sizes[0],), x_t, origin="input_1")}
    ops = []

    def dense(i: int, x: str, y: str, y_type: FixedType, act: str) -> None:
        w = ap_cast_float(built.weights[i], w_t)
        b = ap_cast_float(built.biases[i], b_t)
        tensors[f"w{i}"] = Tensor(f"w{i}", w.shape, w_t, w, origin=f"fc{i + 1}.weight")
        tensors[f"b{i}"] = Tensor(f"b{i}", b.shape, b_t, b, origin=f"fc{i + 1}.bias")
        tensors[y] = Tensor(y, (w.shape[1],), y_type, origin=f"fc{i + 1}")
        ops.append(Op(f"fc{i + 1}", "dense", [x, f"w{i}", f"b{i}"], [y], {"activation": act}))

    if case.narrow_dense:
        # hls4ml: relu(cast_hidden(acc)), ReLU result of the same type. In nn2aie: dense (linear, into hidden_t),
        # then an identity dense with the ReLU, whose requantization is exact in either order (nothing can
        # overflow there, so its output may saturate: the same codes, and a type the placed design accepts).
        dense(0, "x", "h_pre", h_t, "linear")
        eye_t = FixedType(2, 0, True)
        n = case.sizes[1]
        tensors["eye"] = Tensor("eye", (n, n), eye_t, np.eye(n, dtype=np.int64))
        tensors["h"] = Tensor("h", (n,), dataclasses.replace(h_t, overflow="SAT"), origin="relu1")
        ops.append(Op("relu1", "dense", ["h_pre", "eye"], ["h"], {"activation": "relu"}))
    else:
        dense(0, "x", "h", h_t, "relu")
    dense(1, "h", "y", y_t, "linear")
    graph = Graph(f"hls4ml_{case.name}", tensors, ops, ["x"], ["y"], {"framework": "hls4ml-test"})
    graph.verify()
    return graph


def hls4ml_reference(built: Built, x: np.ndarray) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Test-side integer model of what hls4ml's C++ computes (nnet::dense_latency, nnet::relu):
    exact sum -> [cast to first Dense result_t] -> ReLU -> cast to ReLU result_t -> exact sum -> cast to result_t.
    Also returns (ties, overflows) per cast, to show the inputs exercise them."""
    case = built.case
    w_t, b_t = parse_ap(WEIGHT_T), parse_ap(BIAS_T)
    x_t, h_t, y_t = parse_ap(case.x_t), parse_ap(case.hidden_t), parse_ap(case.out_t)
    stats = {}
    s = np.asarray(x, np.float64) * 2.0**x_t.frac
    q = round_scaled(s, x_t.rounding)
    stats["input"] = (int(np.count_nonzero(s - np.floor(s) == 0.5)),
                      int(np.count_nonzero((q < x_t.min_code) | (q > x_t.max_code))))
    codes, frac = ap_cast_float(x, x_t), x_t.frac
    for i, y_type in enumerate((h_t, y_t)):
        w = ap_cast_float(built.weights[i], w_t)
        b = ap_cast_float(built.biases[i], b_t)
        acc_frac = frac + w_t.frac
        acc = codes @ w + (b << (acc_frac - b_t.frac))
        if i == 0:
            if case.narrow_dense:
                stats["dense1"] = cast_stats(acc, acc_frac, y_type)
                acc, acc_frac = ap_cast_codes(acc, acc_frac, y_type), y_type.frac
            acc = np.maximum(acc, 0)
        if i == 1 or not case.narrow_dense:  # (narrow_dense: the ReLU result cast is exact)
            stats[f"layer{i + 1}"] = cast_stats(acc, acc_frac, y_type)
        codes, frac = ap_cast_codes(acc, acc_frac, y_type), y_type.frac
    return codes, stats


def as_values(codes: np.ndarray, t: FixedType) -> np.ndarray:
    return codes.astype(np.float64) * 2.0**-t.frac


def assert_same(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    """Exact equality; on failure name how many outputs differ and the first differing sample."""
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    if len(bad):
        i = int(bad[0][0])
        raise AssertionError(f"{len(bad)} of {got.size} outputs differ; first at sample {i}: x={x[i].tolist()} "
                             f"hls4ml={want[i].tolist()} nn2aie={got[i].tolist()}")


# -- tests ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ALL_CASES)
def test_hls4ml_matches_its_semantics(hls_build, case):
    """Pins down what hls4ml computes (ReLU on the exact sum, then the cast), independent of nn2aie, and that the
    inputs hit ties and overflow at every cast."""
    built = hls_build(case)
    x = make_inputs(case)
    got = built.model.predict(x)
    want, stats = hls4ml_reference(built, x)
    assert np.array_equal(got, as_values(want, parse_ap(case.out_t))), stats
    for where, (ties, over) in stats.items():
        assert ties > 0 and over > 0, f"{where}: no exact tie or no overflow exercised: {stats}"


def test_input_quantization_matches_nn2aie_host_quantizer():
    """nn2aie's host-side quantizer (round half to even, saturate) equals ap_fixed<8,3,AP_RND_CONV,AP_SAT>(double)."""
    case = DEFAULT_CASES[0]
    t = parse_ap(case.x_t)
    x = make_inputs(case).astype(np.float32).astype(np.float64)  # the host quantizer takes float32
    mine = ap_cast_float(x, t)
    assert np.array_equal(mine, quantize_float(x, t.frac, t.width, True, t.min_code, t.max_code))


@pytest.mark.parametrize("case", ALL_CASES)
def test_logical_model_matches_hls4ml(hls_build, case):
    built = hls_build(case)
    graph = nn2aie_graph(built)
    x = make_inputs(case)
    codes = ap_cast_float(x, graph.tensor("x").type)
    got = evaluate(graph, {"x": codes})["y"]
    assert_same(as_values(got, graph.tensor("y").type), built.model.predict(x), x)


@pytest.mark.parametrize("case", ALL_CASES)
def test_emulator_matches_hls4ml(hls_build, case):
    built = hls_build(case)
    graph = nn2aie_graph(built)
    try:
        plan, _ = compile_graph(graph)
    except Nn2aieError as err:  # a clear refusal is allowed; a wrong answer is not
        pytest.skip(f"compile_graph refuses this model: {err}")
    x = make_inputs(case)
    got = Emulator(plan).run(ap_cast_float(x, graph.tensor("x").type))
    assert_same(as_values(got, graph.tensor("y").type), built.model.predict(x), x)
