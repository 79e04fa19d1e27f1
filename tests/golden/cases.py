"""Golden snapshot of dense projects: the refactoring guard of issue 11.

Each case compiles a model (QDQ files from the bundled builders, or logical graphs built in the IR) with fixed
options and writes the whole Vitis project in memory. The snapshot holds the SHA-256 of every emitted file (the
placement pictures excluded: their bytes depend on matplotlib and FreeType versions, not on nn2aie) and of the
emulator's output codes on seeded inputs. ``python -m tests.golden.make`` rewrites ``snapshot.json``; do that only
in a commit that changes the emitted projects on purpose, and say why in its message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from nn2aie.api import Compiled, compile_loaded, default_inputs
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import LoadedModel, load_model
from nn2aie.ir.evaluate import evaluate
from nn2aie.ir.logical import Graph
from nn2aie.passes.pipeline import CompileOptions

from helpers import forced_overrides, random_codes, random_mlp_graph

PICTURES = ("report/placement.png", "report/placement.svg")


def _graph_model(graph: Graph) -> LoadedModel:
    def reference(x: np.ndarray) -> np.ndarray:  # never called by the snapshot
        raise AssertionError("the golden snapshot does not run a reference")

    return LoadedModel(graph, "graph", None, reference)


@dataclass
class Case:
    name: str
    model: Callable[[], LoadedModel]
    options: Callable[[LoadedModel], CompileOptions] = field(default=lambda _m: CompileOptions())


def _jet() -> LoadedModel:
    return load_model(str(resources.files("nn2aie.examples") / "jet_tagger_qdq.onnx"))


CASES = [
    Case("jet_tagger", _jet),
    Case("mlp384_cascades", lambda: load_model(make_qdq_mlp([384, 256, 200, 10], seed=3))),
    Case("cascade1024_memtiles", lambda: load_model(make_qdq_mlp([1024, 512, 64], seed=4)),
         lambda _m: CompileOptions(batch=8)),
    Case("int16_activations", lambda: load_model(make_qdq_mlp([64, 48, 10], seed=5, act_bits=16))),
    Case("forced_4x2", lambda: load_model(make_qdq_mlp([16, 64, 32, 32, 5], seed=11)),
         lambda m: CompileOptions(overrides=forced_overrides(m.graph, 4, 2))),
    Case("direct_links", lambda: _graph_model(random_mlp_graph([32, 32, 32, 16], seed=6))),
    Case("plio_split_wide_input", lambda: _graph_model(random_mlp_graph([2048, 64, 8], seed=7)),
         lambda _m: CompileOptions(plio_bits=64)),
    Case("int16_weights_trn_symsat", lambda: _graph_model(random_mlp_graph(
        [40, 24, 12], seed=8, w_bits=16, act_bits=16, rounding="TRN", overflow="SAT_SYM"))),
    Case("narrow_mmul_override", lambda: _graph_model(random_mlp_graph(
        [64, 32, 16], seed=9, out_width=6, hidden_unsigned=False, narrow=True)),
         lambda m: CompileOptions(batch=8, overrides={m.graph.ops[0].name: {"mmul": "4x16x8", "cas_length": 2}})),
]


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def snapshot_of(case: Case) -> dict:
    """{file: sha256} of the emitted project and the emulator's outputs on 2000 seeded inputs."""
    from nn2aie.codegen.project import render_project

    model = case.model()
    compiled = compile_loaded(model, case.options(model))
    codes = compiled.quantize(default_inputs(compiled, events=64, seed=0))
    summary = compiled.summary({})
    files = render_project(compiled.plan, codes, summary)
    out = {rel: digest(text) for rel, text in sorted(files.items()) if rel not in PICTURES}
    x = random_codes(compiled.model.graph, 2000, seed=2)
    y = compiled.emulate_codes(x)
    out["emulator:outputs"] = digest(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    if model.framework == "graph":  # the logical model must agree (a cheap sanity check of the snapshot itself)
        g = model.graph
        ref = evaluate(g, {g.inputs[0]: x})[g.outputs[0]]
        assert np.array_equal(ref, y), case.name
    return out


def compiled_case(name: str) -> Compiled:
    case = next(c for c in CASES if c.name == name)
    model = case.model()
    return compile_loaded(model, case.options(model))
