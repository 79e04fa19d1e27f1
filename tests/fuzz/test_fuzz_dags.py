"""Fuzzing the compiler with random DAG graphs built in the IR: dense layers, elementwise ops joining earlier
tensors (skip connections), unary ops, concats, slices, transposes and reshapes (chains of them), per-particle
tensors pooled by reduce, random output types and random per-op parallelism.

Contract on every case: ``compile_graph`` either gives a design whose emulator equals the logical model exactly
on 400 inputs over the whole input range, or raises a typed ``Nn2aieError`` that is not an
``InternalCheckError``. ``test_random_dags`` runs ``CI_CASES`` seeds in the default run; ``-m slow`` runs 300.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))
from family_graphs import GraphBuilder, random_codes  # noqa: E402

from nn2aie.errors import InternalCheckError, Nn2aieError  # noqa: E402
from nn2aie.ir.evaluate import evaluate  # noqa: E402
from nn2aie.ir.types import FixedType  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402
from nn2aie.sim.emulator import Emulator  # noqa: E402

CI_CASES = 24
ROUNDING = ("TRN", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN_ZERO")


def _type(rng: np.random.Generator, signed: bool | None = None) -> FixedType:
    signed = bool(rng.integers(2)) if signed is None else signed
    width = int(rng.choice([8, 8, 8, 6, 16]))
    overflow = str(rng.choice(["SAT", "SAT", "SAT_SYM", "WRAP"]))
    return FixedType(width, int(rng.integers(0, width)), signed, str(rng.choice(ROUNDING)), overflow)


def random_dag(seed: int):
    """A random DAG and per-op overrides."""
    rng = np.random.default_rng(seed)
    gb = GraphBuilder(seed)
    particles = int(rng.choice([1, 1, 3, 4, 5]))
    shape = (particles, int(rng.integers(3, 20))) if particles > 1 else (int(rng.integers(3, 40)),)
    x = gb.tensor("x", shape, FixedType(8, 5, True))
    live = [x]
    overrides: dict[str, dict] = {}
    for i in range(int(rng.integers(3, 9))):
        src = live[-1] if rng.random() < 0.75 else live[int(rng.integers(len(live)))]  # mostly a deep chain
        lead = gb.tensors[src].shape[:-1]
        kind = rng.choice(["dense", "dense", "binary", "unary", "concat", "reduce", "slice", "view"])
        name = f"op{i}"
        if kind == "dense" or len(live) == 1 and kind in ("binary", "concat"):
            n = int(rng.integers(2, 48))
            y = gb.dense(name, src, n, _type(rng), relu=bool(rng.integers(2)))
            if rng.integers(2) and n >= 16 and gb.tensors[src].shape[-1] >= 16:
                overrides[name] = {"cas_length": int(rng.integers(1, 3)), "cas_num": int(rng.integers(1, 3))}
        elif kind == "binary":
            same = [t for t in live if gb.tensors[t].shape == gb.tensors[src].shape and t != src]  # a skip
            if not same:
                continue
            op = str(rng.choice(["add", "sub", "mul", "max", "min"]))
            y = gb.op(name, "eltwise", [src, same[int(rng.integers(len(same)))]], gb.tensors[src].shape, _type(rng),
                      op=op)
        elif kind == "unary":
            op = str(rng.choice(["relu", "identity", "leaky_relu", "clip"]))
            attrs = {"alpha_shift": int(rng.integers(0, 4))} if op == "leaky_relu" else \
                {"lo": [int(rng.integers(-20, 1)), 2], "hi": [int(rng.integers(1, 40)), 2]} if op == "clip" else {}
            y = gb.op(name, "eltwise", [src], gb.tensors[src].shape, _type(rng, signed=op != "relu"), op=op,
                      **attrs)
        elif kind == "concat":
            others = [t for t in live if gb.tensors[t].shape[:-1] == lead and t != src]
            other = others[int(rng.integers(len(others)))] if others else src
            if other == src:
                continue
            t = gb.tensors[src].type
            b = gb.op(f"{name}_id", "eltwise", [other], gb.tensors[other].shape, t, op="identity")
            cols = gb.tensors[src].shape[-1] + gb.tensors[b].shape[-1]
            y = gb.op(name, "concat", [src, b], lead + (cols,), t, axis=len(lead))
        elif kind == "view":  # transpose / flatten of a [rows, cols] tensor, or rows from a flat one
            shape = gb.tensors[src].shape
            t = gb.tensors[src].type
            if len(shape) == 2 and rng.integers(2):
                y = gb.op(name, "transpose", [src], (shape[1], shape[0]), t, perm=[1, 0])
            elif len(shape) == 2:
                y = gb.op(name, "reshape", [src], (shape[0] * shape[1],), t)
            elif shape[0] % 2 == 0 and shape[0] <= 64:
                y = gb.op(name, "reshape", [src], (2, shape[0] // 2), t)
            else:
                continue
        elif kind == "slice":
            w = gb.tensors[src].shape[-1]
            if w < 2:
                continue
            start = int(rng.integers(0, w - 1))
            end = int(rng.integers(start + 1, w + 1))
            y = gb.op(name, "slice", [src], lead + (end - start,), gb.tensors[src].type, axis=len(lead), start=start,
                      end=end)
        else:
            if not lead:
                continue
            op = str(rng.choice(["sum", "mean", "max"]))
            attrs = {"divide": str(rng.choice(["exact", "float32"]))} if op == "mean" else {}
            y = gb.op(name, "reduce", [src], gb.tensors[src].shape[-1:], _type(rng), op=op, axes=[0],
                      keepdims=False, **attrs)
        if name in [o.name for o in gb.ops] and rng.integers(3) == 0 and gb.ops[-1].kind == "eltwise":
            overrides[name] = {"cas_num": int(rng.integers(1, 4))}
        live.append(y)
    y = live[-1]
    if len(gb.tensors[y].shape) > 1:  # end on one row per event, as a classifier head does
        y = gb.op("pool", "reduce", [y], gb.tensors[y].shape[-1:], _type(rng), op="sum", axes=[0], keepdims=False)
    head = gb.dense("head", y, 5, FixedType(8, 2, True))
    keep = list(gb.ops)
    while True:  # dead branches dropped (the compiler refuses ops whose result nobody reads)
        used = {t for op in keep for t in op.inputs}
        alive = [op for op in keep if op.outputs[0] in used or op.name == "head"]
        if len(alive) == len(keep):
            break
        keep = alive
    gb.ops = keep
    return gb.graph(x, head, f"dag{seed}"), {k: v for k, v in overrides.items() if k in {o.name for o in keep}}


def run_case(seed: int) -> str:
    try:
        graph, overrides = random_dag(seed)
    except Nn2aieError as err:  # a generated graph the IR refuses (e.g. a bound beyond 62 bits): not a bug
        assert not isinstance(err, InternalCheckError), err
        return "refused-by-ir"
    try:
        plan, _ = compile_graph(graph, CompileOptions(overrides=overrides))
    except Nn2aieError as err:
        assert not isinstance(err, InternalCheckError), f"seed {seed}: {err}"
        assert err.where and err.reason
        return type(err).__name__
    x = random_codes(graph, 400, seed)
    t = graph.tensor(graph.inputs[0])
    want = evaluate(graph, {graph.inputs[0]: x.reshape((len(x),) + tuple(t.shape))})[graph.outputs[0]]
    got = Emulator(plan).run(x)
    assert np.array_equal(got, want.reshape(len(x), -1)), f"seed {seed}: emulator != logical model"
    return "bit-exact"


def test_random_dags():
    outcomes = collections.Counter(run_case(seed) for seed in range(CI_CASES))
    print(dict(outcomes))
    assert outcomes["bit-exact"] >= CI_CASES // 2, outcomes  # most random graphs compile


@pytest.mark.slow
def test_random_dags_large():
    outcomes = collections.Counter(run_case(seed) for seed in range(1000, 1300))
    print(dict(outcomes))
    assert outcomes["bit-exact"] >= 150, outcomes
