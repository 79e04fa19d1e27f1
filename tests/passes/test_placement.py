"""CP-SAT placement: optimal (gap 0) on the benchmark models, never worse than the shelf heuristic, deterministic,
independent of the model's node order, with a shelf fallback when OR-Tools is missing."""

from __future__ import annotations

import builtins
import itertools
import json
import random

import pytest

from nn2aie.api import compile_loaded
from nn2aie.devices import get_device
from nn2aie.errors import DoesNotFitError
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.physical import Kernel
from nn2aie.passes import placement
from nn2aie.passes.pipeline import CompileOptions, compile_graph

from helpers import random_mlp_graph

DEVICE = get_device("xcve2802")


def rect(name: str, length: int, num: int) -> DenseExec:
    return DenseExec(op=name, k=8 * length, n=8 * num, batch=4, a_dtype="int8", w_dtype="int8", out_dtype="int8",
                     acc="acc32", mmul=(4, 8, 8), shift=0, rounding="floor", saturation="saturate", clamp_lo=-128,
                     clamp_hi=127, relu=False, has_bias=False, acc_bound=1, cas_length=length, cas_num=num,
                     k_slice=8, n_slice=8)


def kernels_of(layers: list[DenseExec]) -> list[Kernel]:
    out = []
    for i, e in enumerate(layers):
        for c, p in itertools.product(range(e.cas_num), range(e.cas_length)):
            role = "single" if e.cas_length == 1 else ("first" if p == 0 else "last" if p == e.cas_length - 1
                                                         else "middle")
            out.append(Kernel(f"l{i}_c{c}_p{p}", e.op, c, p, role, -1, -1, 0, 0, None, None))
    return out


def tiles_by_layer(kernels: list[Kernel]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for k in kernels:
        out.setdefault(k.layer, []).append((k.col, k.row))
    return out


@pytest.mark.parametrize("sizes", [[16, 64, 32, 32, 5], [384, 256, 200, 10],
                                   [640, 128, 128, 128, 8, 128, 128, 128, 640], [1024] * 5])
def test_benchmark_models_are_placed_optimally(sizes):
    plan, _ = compile_graph(random_mlp_graph(sizes))
    rep = plan.placement
    assert rep["method"] == "cp-sat" and rep["status"] == "OPTIMAL"
    assert rep["wire_length"] == rep["lower_bound"] and rep["gap"] == 0.0
    assert rep["wire_length"] <= rep["heuristic_wire_length"]
    # the reported objective is the objective of the kernels' actual positions
    layers = plan.layers
    origins = [(min(k.col for k in plan.kernels_of(e.op)), min(k.row for k in plan.kernels_of(e.op))) for e in layers]
    edges = placement.chain_edges(layers)
    graph = random_mlp_graph(sizes)

    def words(t: str) -> int:  # bytes per graph iteration of a tensor, in 32-byte words: the hop weight
        tensor = graph.tensor(t)
        return -(-plan.batch * tensor.shape[-1] * tensor.type.container_bits // 8 // 32)

    weights = placement.Weights(tuple(words(f"x{i + 1}") for i in range(len(layers) - 1)), {0: words("x0")},
                                {len(layers) - 1: words(f"x{len(layers)}")})
    assert placement.wire_length(layers, origins, edges, [0], [len(layers) - 1], weights) == rep["wire_length"]


def test_cp_sat_beats_the_shelf_when_shelves_stack():
    # three 20-wide layers: the shelf stacks them at the west edge (long wires back to column 0); CP-SAT mirrors
    layers = [rect("a", 20, 2), rect("b", 20, 2), rect("c", 20, 2)]
    ks = kernels_of(layers)
    rep = placement.place(layers, ks, DEVICE)
    assert rep.method == "cp-sat" and rep.gap == 0.0
    assert rep.wire_length < rep.heuristic_wire_length
    tiles = [(k.col, k.row) for k in ks]
    assert len(tiles) == len(set(tiles))


def test_fan_out_edges_are_placed():
    layers = [rect("trunk", 4, 2), rect("head_a", 3, 1), rect("head_b", 3, 1)]
    ks = kernels_of(layers)
    rep = placement.place(layers, ks, DEVICE, edges=[(0, 1), (0, 2)])
    assert rep.gap == 0.0
    tiles = tiles_by_layer(ks)
    assert len({t for ts in tiles.values() for t in ts}) == sum(e.tiles for e in layers)


def test_deterministic_and_independent_of_the_node_order():
    def random_topological(model, seed):
        rng = random.Random(seed)
        nodes, out = list(model.graph.node), []
        avail = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
        while nodes:
            node = rng.choice([n for n in nodes if all(not x or x in avail for x in n.input)])
            nodes.remove(node)
            out.append(node)
            avail.update(node.output)
        del model.graph.node[:]
        model.graph.node.extend(out)
        return model

    sizes = [640, 128, 128, 128, 8, 128, 128, 128, 640]
    plans = [compile_loaded(load_model(make_qdq_mlp(sizes, seed=1))).plan]
    plans += [compile_loaded(load_model(random_topological(make_qdq_mlp(sizes, seed=1), s))).plan for s in (1, 2)]
    dumps = {json.dumps(p.to_json(), sort_keys=True) for p in plans}
    assert len(dumps) == 1


def test_shelf_fallback_without_ortools(monkeypatch):
    real_import = builtins.__import__

    def no_ortools(name, *args, **kwargs):
        if name.startswith("ortools"):
            raise ImportError("no ortools")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ortools)
    plan, _ = compile_graph(random_mlp_graph([384, 256, 200, 10]))
    assert plan.placement["method"] == "shelf" and plan.placement["status"] == "ortools not installed"


def test_a_design_that_cannot_pack_is_refused():
    layers = [rect("a", 30, 5), rect("b", 30, 4)]  # 270 tiles, but two 30-wide rectangles need 9 rows
    with pytest.raises(DoesNotFitError, match=r"30x5, 30x4 do not pack into the 38x8 array"):
        placement.place(layers, kernels_of(layers), DEVICE)
    with pytest.raises(DoesNotFitError, match="needs 320 compute tiles"):
        big = [rect("a", 38, 8), rect("b", 2, 8)]
        placement.place(big, kernels_of(big), DEVICE)


def test_full_array_single_layer_is_placed():
    layers = [rect("wide", 37, 8)]
    ks = kernels_of(layers)
    rep = placement.place(layers, ks, DEVICE)
    assert rep.gap == 0.0 and len({(k.col, k.row) for k in ks}) == 296


def test_forced_rectangles_are_placed_without_overlap():
    opts = CompileOptions(overrides={"dense0": {"cas_length": 4, "cas_num": 2}, "dense1": {"cas_length": 2,
                                                                                              "cas_num": 2}})
    plan, _ = compile_graph(random_mlp_graph([384, 256, 200, 10]), opts)
    assert len({(k.col, k.row) for k in plan.kernels}) == len(plan.kernels)
