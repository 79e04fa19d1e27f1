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

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from nn2aie.api import compile_loaded  # noqa: E402
from nn2aie.frontends.loader import load_model  # noqa: E402
from nn2aie.frontends.onnx_qdq import run_reference  # noqa: E402
from nn2aie.frontends.pytorch import export_qdq  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions  # noqa: E402

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


def _multi_tile(graph) -> dict[str, dict]:
    """Parallelism forced on every op that has it: cascades of 2 and 2 chains on dense ops, 2 column slices on
    elementwise ops whose width splits into multiples of 4."""
    overrides: dict[str, dict] = {}
    for op in graph.ops:
        width = graph.tensor(op.outputs[0]).shape[-1]
        if op.kind == "dense":
            k = graph.tensor(op.inputs[0]).shape[-1]
            overrides[op.name] = {"cas_length": 2 if k >= 16 else 1, "cas_num": 2 if width % 8 == 0 else 1}
        elif op.kind == "eltwise" and width % 8 == 0:
            overrides[op.name] = {"cas_num": 2}
    return overrides


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
    compiled = compile_loaded(loaded, CompileOptions(overrides=_multi_tile(loaded.graph)))
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
