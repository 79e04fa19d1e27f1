"""Graphs with several inputs and outputs, and a graph output that further ops also read: each graph input gets
its own input PLIO(s), each output its output PLIO(s) (an output read inside the array too gets an output PLIO
next to its internal readers); the emulator of the placed design equals the logical model on every output, the
kernels co-simulate natively, and the project's PLIO files carry each tensor."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))
from family_graphs import GraphBuilder  # noqa: E402

from nn2aie.codegen import data_files  # noqa: E402
from nn2aie.codegen.project import render_project  # noqa: E402
from nn2aie.errors import IllegalConfigError, UnsupportedOpError  # noqa: E402
from nn2aie.ir.evaluate import evaluate  # noqa: E402
from nn2aie.ir.logical import Graph  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402
from nn2aie.sim.emulator import Emulator  # noqa: E402
from nn2aie.sim.native import run_native_cosim  # noqa: E402

X1_T, X2_T = FixedType(8, 5, True), FixedType(8, 3, False)
H_T, S_T = FixedType(8, 4, True), FixedType(8, 3, True)


def two_in_three_out(seed: int = 0) -> Graph:
    """x1 [16] -> d1 (16); x2 [8] -> d2 (16); s = d1 + d2 (an output that head1 also reads); head1(s) [5];
    head2(d2) [4]. Outputs in the order head1, s, head2."""
    gb = GraphBuilder(seed)
    x1 = gb.tensor("x1", (16,), X1_T)
    x2 = gb.tensor("x2", (8,), X2_T)
    d1 = gb.dense("d1", x1, 16, H_T, relu=True)
    d2 = gb.dense("d2", x2, 16, H_T)
    s = gb.op("add", "eltwise", [d1, d2], (16,), S_T, op="add")
    y1 = gb.dense("head1", s, 5, FixedType(8, 1, True))
    y2 = gb.dense("head2", d2, 4, FixedType(8, 2, True))
    g = Graph("multi_io", gb.tensors, gb.ops, [x1, x2], [y1, s, y2], {"framework": "test"})
    g.verify()
    return g


def codes_for(g: Graph, events: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for t in g.inputs:
        typ = g.tensor(t).type
        x = rng.integers(typ.min_code, typ.max_code + 1, size=(events, int(np.prod(g.tensor(t).shape))))
        x[:3], x[3:6] = typ.max_code, typ.min_code
        out[t] = x
    return out


@pytest.mark.parametrize("overrides", [{}, {"d1": {"cas_length": 2, "cas_num": 2}, "d2": {"cas_num": 2},
                                            "add": {"cas_num": 2}, "head1": {"cas_length": 2}}])
def test_emulator_equals_logical_model_on_every_output(overrides):
    g = two_in_three_out()
    plan, _ = compile_graph(g, CompileOptions(overrides=overrides))
    assert plan.input_tensors == ["x1", "x2"] and plan.output_tensors == [g.outputs[0], "add_y", g.outputs[2]]
    ins = {p.tensor for p in plan.plios if p.direction == "in"}
    outs = {p.tensor for p in plan.plios if p.direction == "out"}
    assert ins == {"x1", "x2"} and outs == set(g.outputs)
    xs = codes_for(g, 2000)
    want = evaluate(g, xs)
    got = Emulator(plan).run_many(xs)
    assert set(got) == set(g.outputs)
    for t in g.outputs:
        assert np.array_equal(got[t], want[t].reshape(2000, -1)), t
    assert len(np.unique(got["add_y"], axis=0)) > 1000  # the internal output carries real data


def test_every_kernel_cosimulates_with_two_inputs():
    g = two_in_three_out(1)
    overrides = {"d1": {"cas_length": 2, "cas_num": 2}, "add": {"cas_num": 2}}
    plan, _ = compile_graph(g, CompileOptions(overrides=overrides))
    xs = codes_for(g, 40)
    report = run_native_cosim(plan, [xs["x1"], xs["x2"]])
    assert report.kernels and all(k.match and k.compared > 0 for k in report.kernels), \
        [(k.kernel, k.error) for k in report.kernels if not k.match]
    assert {k.layer for k in report.kernels} == {op.name for op in g.ops}


def test_project_plio_files_carry_each_tensor():
    g = two_in_three_out(2)
    plan, _ = compile_graph(g, CompileOptions())
    xs = codes_for(g, 10)
    files = render_project(plan, [xs["x1"], xs["x2"]], {})
    want = evaluate(g, xs)
    specs = data_files.plio_specs(plan)
    for t in g.inputs + g.outputs:
        mine = [s for s in specs if s.tensor == t]
        assert mine, t
        direction = "in" if t in g.inputs else "out"
        values = {}
        for s in mine:
            path = s.file if direction == "in" else s.file.replace("plio_", "expected_plio_")
            name = next(f for f in files if f.endswith(path.split("/")[-1]))
            values[s.name] = data_files.parse_plio_text(files[name], s.dtype)
        width = int(np.prod(g.tensor(t).shape))
        got = data_files.gather_columns(mine, values, width, events=10)
        ref = xs[t] if direction == "in" else want[t].reshape(10, -1)
        assert np.array_equal(got, ref), t


def test_emulator_refuses_missing_or_mismatched_inputs():
    g = two_in_three_out()
    plan, _ = compile_graph(g, CompileOptions())
    emu = Emulator(plan)
    xs = codes_for(g, 8)
    with pytest.raises(IllegalConfigError, match="design's inputs"):
        emu.run_many({"x1": xs["x1"]})
    with pytest.raises(IllegalConfigError, match="run_many"):
        emu.run(xs["x1"])
    with pytest.raises(IllegalConfigError, match="events"):
        emu.run_many({"x1": xs["x1"], "x2": xs["x2"][:4]})


def test_passthrough_and_unused_inputs_are_refused_by_name():
    gb = GraphBuilder(0)
    x1 = gb.tensor("x1", (16,), X1_T)
    x2 = gb.tensor("x2", (8,), X2_T)
    y = gb.dense("d1", x1, 4, H_T)
    unused = Graph("unused", gb.tensors, gb.ops, [x1, x2], [y], {"framework": "test"})
    with pytest.raises(UnsupportedOpError, match="x2.*no op reads"):
        compile_graph(unused, CompileOptions())
    through = Graph("through", gb.tensors, gb.ops, [x1], [y, x1], {"framework": "test"})
    with pytest.raises(UnsupportedOpError, match="x1.*passed through"):
        compile_graph(through, CompileOptions())


def test_rank3_input_plio_files_carry_every_row_of_an_event():
    """A [particles, features] input crosses the PLIO one particle row after another (regression: the project's
    input file once held only the first row of each event)."""
    gb = GraphBuilder(4)
    x = gb.tensor("x", (6, 8), X1_T)
    h = gb.dense("phi", x, 8, H_T, relu=True)
    m = gb.op("pool", "reduce", [h], (8,), FixedType(8, 2, True), op="sum", axes=[0], keepdims=False)
    g = gb.graph(x, gb.dense("rho", m, 4, FixedType(8, 1, True)))
    plan, _ = compile_graph(g, CompileOptions())
    rng = np.random.default_rng(0)
    codes = rng.integers(X1_T.min_code, X1_T.max_code + 1, size=(9, 48))
    files = render_project(plan, codes, {})
    (spec,) = [s for s in data_files.plio_specs(plan) if s.direction == "in"]
    values = data_files.parse_plio_text(files[spec.file], spec.dtype)
    rows = data_files.rows_from_values(values, spec.row_width)
    assert rows.shape[0] == 12 * 6  # 3 graph iterations of 4 events, 6 rows each
    assert np.array_equal(rows[:54, :8], codes.reshape(54, 8))
    assert not rows[54:].any()
