"""Bank-aware tile memory (kernels/tile_memory.py) over compiled designs: no buffer that fits in a bank straddles a
bank boundary, the weights and the activation input buffers (and the two halves of a ping/pong pair) are in
different banks on every tile whose memory allows it, and graph.h's location constraints are the allocation."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from family_graphs import GraphBuilder  # noqa: E402

from nn2aie.codegen.project import kernel_instances, render_project  # noqa: E402
from nn2aie.devices import get_device  # noqa: E402
from nn2aie.examples.builders import make_qdq_mlp  # noqa: E402
from nn2aie.frontends.onnx_qdq import load_qdq  # noqa: E402
from nn2aie.ir.execution import ceil_div  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402
from nn2aie.kernels.tile_memory import conflicts, straddles  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402


def _eltwise_graph():
    gb = GraphBuilder(3)
    x = gb.tensor("x", (64,), FixedType(8, 5, True))
    a = gb.dense("a", x, 64, FixedType(8, 4, True))
    s = gb.op("add", "eltwise", [a, x], (64,), FixedType(8, 3, True), op="add")
    return gb.graph(x, gb.dense("head", s, 8, FixedType(8, 2, True)))


DESIGNS = {  # (graph, compile options)
    "jet_tagger": (lambda: load_qdq(make_qdq_mlp([16, 64, 32, 32, 5], seed=21)), {"batch": 4}),
    "mlp_384_cascades": (lambda: load_qdq(make_qdq_mlp([384, 256, 200, 10], seed=3)), {"batch": 8}),
    # 32 KB of weights on one tile: two banks, the two input buffers in the other two
    "two_bank_weights": (lambda: load_qdq(make_qdq_mlp([256, 128, 8], seed=4)),
                         {"batch": 16, "max_weight_bytes": 32768,
                          "overrides": {"fc0_matmul": {"cas_length": 1, "cas_num": 1}}}),
    "eltwise": (_eltwise_graph, {"batch": 16, "overrides": {"add": {"cas_num": 2}}}),
}


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def design(request):
    make, options = DESIGNS[request.param]
    plan, _ = compile_graph(make(), CompileOptions(**options))
    return request.param, plan


def _banks(a, bank: int) -> set[int]:
    return set(range(a.offset // bank, (a.offset + a.size - 1) // bank + 1))


def test_no_buffer_straddles_a_bank_boundary(design):
    _, plan = design
    bank = get_device(plan.device).bank_bytes
    for k in plan.kernels:
        assert not [a.name for a in k.memory if straddles(a, bank)], k.name
        spans = sorted((a.offset, a.offset + a.size) for a in k.memory)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False)), k.name  # no overlap
        assert all(a.bank == a.offset // bank for a in k.memory)


def test_weights_and_inputs_are_apart_where_memory_allows(design):
    name, plan = design
    device = get_device(plan.device)
    bank, n_banks = device.bank_bytes, int(device.fact("data_memory_banks"))
    checked = 0
    for k in plan.kernels:
        mem = {a.name: a for a in k.memory}
        weights = mem.get("weights") or mem.get("param")
        inputs = [a for n, a in mem.items() if n.startswith("in") and n.endswith(("_ping", "_pong"))]
        if weights is None or not inputs or any(a.size > bank for a in inputs):
            continue
        if ceil_div(weights.size, bank) + 2 > n_banks:
            continue  # the weights leave fewer than two banks: sharing is unavoidable
        checked += 1
        for a in inputs:
            assert not _banks(a, bank) & _banks(weights, bank), (k.name, a.name)
        pairs = [(n, n[:-5] + "_pong") for n in mem if n.endswith("_ping") and n[:-5] + "_pong" in mem]
        for p, q in pairs:
            assert not _banks(mem[p], bank) & _banks(mem[q], bank), (k.name, p)
        assert not [c for c in conflicts(k.memory, bank) if "weights" in c or "param" in c], k.name
    if name != "eltwise":
        assert checked, "no tile was checked"


def test_graph_h_location_constraints_are_the_allocation(design):
    _, plan = design
    graph_h = render_project(plan, None, {})["src/graph.h"]
    idents = {name: ident for name, (ident, _) in kernel_instances(plan).items()}
    for k in plan.kernels:
        ident, mem = idents[k.name], {a.name: a for a in k.memory}
        col, row = k.col, k.row
        m = re.search(rf"adf::location<adf::stack>\({re.escape(ident)}\) = adf::address\({col}, {row}, (\d+)\);",
                      graph_h)
        assert m and int(m.group(1)) == mem["stack"].offset, k.name
        for port, ping, pong in (("in[0]", "in_ping", "in_pong"), ("out[0]", "out_ping", "out_pong")):
            if ping not in mem:
                continue
            m = re.search(rf"adf::location<adf::buffer>\({re.escape(ident)}\.{re.escape(port)}\) = "
                          rf"\{{adf::address\({col}, {row}, (\d+)\), adf::address\({col}, {row}, (\d+)\)\}};", graph_h)
            assert m and (int(m.group(1)), int(m.group(2))) == (mem[ping].offset, mem[pong].offset), (k.name, port)
        if "weights" in mem:
            m = re.search(rf"adf::location<adf::parameter>\({re.escape(ident)}\.param\[0\]\) = "
                          rf"adf::address\({col}, {row}, (\d+)\);", graph_h)
            assert m and int(m.group(1)) == mem["weights"].offset, k.name


def test_allocator_separates_what_fits_and_names_what_does_not():
    from nn2aie.errors import DoesNotFitError
    from nn2aie.kernels.tile_memory import allocate

    device = get_device("xcve2802")
    bank = device.bank_bytes
    small = allocate([("weights", 4096), ("bias", 256), ("in_ping", 2048), ("in_pong", 2048), ("out_ping", 1024),
                      ("out_pong", 1024), ("stack", 1024), ("heap", 1024)], device, "t", "hint")
    assert not conflicts(small, bank) and not any(straddles(a, bank) for a in small)
    assert len({a.bank for a in small if a.name in ("weights", "in_ping", "in_pong")}) == 3
    # 40 KB of weights take three banks: the two inputs share the fourth (a ping/pong conflict, cheaper than an
    # input beside the weights, which the kernel loads in the same cycle), and the conflict is named
    big = allocate([("weights", 40960), ("in_ping", 8192), ("in_pong", 8192), ("stack", 1024), ("heap", 1024)],
                   device, "t", "hint")
    assert big[0].offset == 0 and conflicts(big, bank) == [("in_ping", "in_pong")]
    end = max(a.offset + a.size for a in big)
    assert end <= device.data_memory_bytes
    with pytest.raises(DoesNotFitError, match="needs .* of data memory"):
        allocate([("weights", 60000), ("in_ping", 4096), ("in_pong", 4096)], device, "tile t", "use more tiles")


def test_a_weights_input_bank_conflict_costs_serialised_loads():
    """The cost model's stated penalty: A and B in one bank load one after the other (sum instead of max)."""
    import dataclasses

    from nn2aie.kernels.dense.cost import dense_loop_nest, trip_cycles
    from nn2aie.kernels.registry import family_named

    plan, _ = compile_graph(load_qdq(make_qdq_mlp([64, 64, 8], seed=2)), CompileOptions(batch=32))
    e = plan.layers[0]
    k = plan.kernels_of(e.op)[0]
    assert not [c for c in conflicts(k.memory, get_device(plan.device).bank_bytes) if "weights" in c]
    fam = family_named(e.family)
    apart = fam.tile_cycles(e, k)
    w = next(a for a in k.memory if a.name == "weights")
    k.memory = [dataclasses.replace(a, offset=w.offset + w.size, bank=w.bank) if a.name == "in_ping" else a
                for a in k.memory]  # the input moved into the weights' bank
    shared = fam.tile_cycles(e, k)
    n = dense_loop_nest(e, k.role)
    per_trip = (n.a_bits + n.b_bits - max(n.a_bits, n.b_bits)) / 256
    assert per_trip > 0 and shared - apart == pytest.approx(n.groups * n.k_iterations *
                                                            (trip_cycles(dataclasses.replace(n, loads_share_bank=True))
                                                             - trip_cycles(n)))
    assert shared > apart
