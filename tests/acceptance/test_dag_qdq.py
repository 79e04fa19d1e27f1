"""Issue 11 acceptance, ONNX QDQ: three DAG models written as plain PyTorch modules, quantized post-training with
power-of-two scales and exported as ONNX QDQ (``export_qdq``), compiled with forced multi-tile parallelism on
every op that has parallelism, and emulated on the placed design: the output equals onnxruntime on the same QDQ
file bit for bit (``np.array_equal``) on 2400 float inputs, a quarter of them far beyond the calibration range
(saturating). Every kernel of each plan is then compiled natively with g++ and compared with the emulator.

- residual MLP: ``relu(h + fc(h))`` blocks -- the two operands of each Add come with different scales (a uint8
  ReLU output and an int8 linear output), so both are requantised to the sum's type;
- two-branch: fan-out of the input into two dense stacks (ReLU and linear), ``torch.cat``, a dense head;
- DeepSets tagger: a per-particle dense stack on ``[batch, particles, features]``, ``torch.mean`` (or
  ``torch.sum``) over the particles, a dense head.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from nn2aie.api import check_bit_exact, compile_loaded  # noqa: E402
from nn2aie.frontends.loader import load_model  # noqa: E402
from nn2aie.frontends.onnx_qdq import run_reference  # noqa: E402
from nn2aie.frontends.pytorch import export_qdq  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from multi_tile import forced_multi_tile  # noqa: E402

EVENTS = 2400
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="native co-simulation needs g++")


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.fc1, self.fc2 = nn.Linear(32, 32), nn.Linear(32, 32)
        self.out = nn.Linear(32, 6)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = torch.relu(h + self.fc1(h))
        h = torch.relu(h + self.fc2(h))
        return self.out(h)


class TwoBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = nn.Linear(16, 32), nn.Linear(32, 24)
        self.b1 = nn.Linear(16, 16)
        self.head, self.out = nn.Linear(40, 32), nn.Linear(32, 5)

    def forward(self, x):
        a = self.a2(torch.relu(self.a1(x)))
        b = torch.relu(self.b1(x))
        return self.out(torch.relu(self.head(torch.cat([a, b], dim=1))))


class DeepSets(nn.Module):
    def __init__(self, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.phi1, self.phi2 = nn.Linear(8, 32), nn.Linear(32, 32)
        self.rho1, self.rho2 = nn.Linear(32, 16), nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.phi2(torch.relu(self.phi1(x))))
        pooled = torch.mean(h, dim=1) if self.pool == "mean" else torch.sum(h, dim=1)
        return self.rho2(torch.relu(self.rho1(pooled)))


def _build(module: nn.Module, shape: tuple[int, ...], seed: int):
    torch.manual_seed(seed)
    for p in module.parameters():  # fresh weights of the seed (the constructor drew before the seed was set)
        nn.init.uniform_(p, -0.5, 0.5)
    rng = np.random.default_rng(seed)
    cal = rng.standard_normal((256, *shape)).astype(np.float32)
    proto = export_qdq(module.eval(), cal[:1], calibration=cal)
    x = rng.standard_normal((EVENTS, *shape)).astype(np.float32)
    x[: EVENTS // 4] *= 16.0  # far beyond the calibration range: saturation everywhere
    return proto, x


CASES = {
    "residual": (lambda: Residual(), (16,), 3),
    "two_branch": (lambda: TwoBranch(), (16,), 4),
    "deepsets_mean": (lambda: DeepSets("mean"), (16, 8), 5),
    "deepsets_sum": (lambda: DeepSets("sum"), (16, 8), 6),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make, shape, seed = CASES[request.param]
    proto, x = _build(make(), shape, seed)
    loaded = load_model(proto)
    compiled = compile_loaded(loaded, CompileOptions(overrides=forced_multi_tile(loaded.graph)))
    return request.param, loaded, compiled, proto, x


def test_emulator_equals_onnxruntime(case):
    name, loaded, compiled, proto, x = case
    want = run_reference(proto, x).reshape(EVENTS, -1)
    got = compiled.emulate(x)
    assert np.array_equal(got, want)
    assert len(np.unique(want, axis=0)) > EVENTS // 2, "a degenerate model proves nothing"
    t = compiled.input_type
    codes = compiled.quantize(x)
    top = 2 ** (t.width - 1) - 1 if t.signed else 2 ** t.width - 1
    assert (np.abs(codes) >= top).mean() > 0.05, "a share of the inputs must saturate the input quantizer"
    assert loaded.graph.source.get("reference_exact") == "yes"


def test_structure_and_parallelism(case):
    name, loaded, compiled, _, _ = case
    g = loaded.graph
    kinds = [op.kind for op in g.ops]
    families = {e.family for e in compiled.plan.layers}
    if name == "residual":
        adds = [op for op in g.ops if op.kind == "eltwise" and op.attrs.get("op") == "add"]
        assert len(adds) == 2
        for op in adds:  # different scales on the two branches
            a, b = (g.tensor(t).type for t in op.inputs)
            assert (a.frac, a.signed) != (b.frac, b.signed), (op.name, a, b)
        assert families == {"dense", "eltwise"}
    elif name == "two_branch":
        assert "concat" in kinds and families >= {"dense", "view"}
        x_readers = g.consumers(g.inputs[0])
        assert len(x_readers) == 2  # fan-out of the input into the two stacks
    else:
        assert "reduce" in kinds and families == {"dense", "reduce"}
        assert g.tensor(g.inputs[0]).shape[-2:] == (16, 8)
    forced = [e for e in compiled.plan.layers if e.tiles > 1]
    assert len(forced) >= 4, [(e.op, e.tiles) for e in compiled.plan.layers]


@needs_gxx
def test_every_kernel_cosimulates(case):
    _, _, compiled, _, x = case
    report = compiled.native_cosim(np.concatenate([x[:24], x[-24:]]))
    assert report.kernels and all(k.match and k.compared > 0 for k in report.kernels), \
        [(k.kernel, k.error, k.position) for k in report.kernels if not k.match]
    with_tiles = {e.op for e in compiled.plan.layers if e.tiles > 0}
    assert {k.layer for k in report.kernels} == with_tiles


# -- several graph inputs and outputs -------------------------------------------------------------------------
def _two_input_model():
    """Two inputs (e.g. tracks and calorimeter features) with their own scales, a dense stack each, an Add of the
    two branches (different scales), a concat of the sum and the second branch requantised by its own
    QuantizeLinear, two heads; the sum is also a graph output that the first head and the concat read. Inputs:
    2000 typical rows (300 of them 10x beyond the calibration range, 200 on exact ties) per input."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "frontends"))
    from test_onnx_qdq_dag import Builder, samples

    b = Builder(seed=41)
    x1, x2 = b.input("tracks", [16]), b.input("calo", [8], frac=4)
    h1 = b.dense(b.dense(x1, 32, relu=True, name="t1"), 16, name="t2")
    h2 = b.dense(x2, 16, relu=True, name="c1")
    s = b.op("Add", [h1.name, h2.name], h1.cal + h2.cal, name="sum")
    cat = b.qdq(b.node("Concat", [s.name, h2.name], name="cat", axis=-1), np.concatenate([s.cal, h2.cal], -1),
                name="cat_q")
    b.output(b.dense(s, 5, name="head1"), s, b.dense(cat, 3, name="head2"))
    return b.model("two_inputs"), [samples((16,), seed=1), samples((8,), frac=4, seed=2)]


def test_two_inputs_three_outputs_equal_onnxruntime():
    proto, x = _two_input_model()
    loaded = load_model(proto)
    compiled = compile_loaded(loaded, CompileOptions(overrides=forced_multi_tile(loaded.graph)))
    assert compiled.input_names == ["tracks", "calo"] and len(compiled.output_names) == 3
    got = compiled.emulate(x)
    want = run_reference(proto, x)
    assert isinstance(got, list) and len(got) == 3
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w.reshape(len(g), -1))
        assert len(np.unique(g, axis=0)) > 1000
    by_name = compiled.emulate({"calo": x[1], "tracks": x[0]})
    assert all(np.array_equal(a, b) for a, b in zip(by_name, got, strict=True))
    checked = check_bit_exact(compiled, x)
    assert checked["bit_exact"] and checked["events"] == len(x[0])
    assert sum(e.tiles > 1 for e in compiled.plan.layers) >= 3
    if shutil.which("g++"):
        report = compiled.native_cosim([v[:24] for v in x])
        assert report.kernels and all(k.match and k.compared > 0 for k in report.kernels)
        assert {k.layer for k in report.kernels} == {e.op for e in compiled.plan.layers if e.tiles}
