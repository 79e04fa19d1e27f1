"""Small logical graphs around one op of a new family, built directly in the IR for the families' backend tests:
a dense producer (so the op reads a multi-tile layer's output through a memory tile), the op, a dense consumer.
The oracle of every check is the logical integer model (``ir.evaluate``), itself checked against each source
framework by the frontend tests."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.emulator import Emulator
from nn2aie.sim.native import run_native_cosim


class GraphBuilder:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []

    def tensor(self, name: str, shape: tuple[int, ...], t: FixedType, data: np.ndarray | None = None) -> str:
        self.tensors[name] = Tensor(name, tuple(shape), t, data)
        return name

    def dense(self, name: str, x: str, n: int, y_type: FixedType, relu: bool = False) -> str:
        shape = self.tensors[x].shape
        k = shape[-1]
        w = self.tensor(f"{name}_w", (k, n), FixedType(8, 7, True), self.rng.integers(-128, 128, size=(k, n)))
        y = self.tensor(f"{name}_y", tuple(shape[:-1]) + (n,), y_type)
        self.ops.append(Op(name, "dense", [x, w], [y], {"activation": "relu" if relu else "linear"}))
        return y

    def op(self, name: str, kind: str, inputs: list[str], y_shape: tuple[int, ...], y_type: FixedType,
           **attrs) -> str:
        y = self.tensor(f"{name}_y", y_shape, y_type)
        self.ops.append(Op(name, kind, inputs, [y], attrs))
        return y

    def graph(self, x: str, y: str, name: str = "family_test") -> Graph:
        g = Graph(name, self.tensors, self.ops, [x], [y], {"framework": "test"})
        g.verify()
        return g


def random_codes(graph: Graph, n: int, seed: int = 5) -> np.ndarray:
    """Input codes over the whole input range, the extremes included (every saturating path gets used)."""
    rng = np.random.default_rng(seed)
    t = graph.tensor(graph.inputs[0])
    x = rng.integers(t.type.min_code, t.type.max_code + 1, size=(n, int(np.prod(t.shape))))
    x[:4], x[4:8] = t.type.max_code, t.type.min_code
    return x


def check(graph: Graph, overrides: dict | None = None, events: int = 2000, cosim_events: int = 48,
          batch: int = 4, device: str = "xcve2802"):
    """Compile, emulate ``events`` inputs (== the logical model, exactly) and co-simulate every kernel natively
    on the first ``cosim_events``. Returns the plan."""
    plan, _ = compile_graph(graph, CompileOptions(device=device, batch=batch, overrides=overrides or {}))
    x = random_codes(graph, events)
    t = graph.tensor(graph.inputs[0])
    want = evaluate(graph, {graph.inputs[0]: x.reshape((events,) + tuple(t.shape))})[graph.outputs[0]]
    got = Emulator(plan).run(x)
    assert np.array_equal(got, want.reshape(events, -1))
    if cosim_events:
        report = run_native_cosim(plan, x[:cosim_events])
        bad = [(k.kernel, k.error, k.position, k.got, k.want) for k in report.kernels if not k.match]
        assert not bad, bad
        assert all(k.compared > 0 for k in report.kernels)
    return plan, want
