"""Forced multi-tile parallelism for the acceptance models (shared by the QDQ and QONNX acceptance tests)."""

from __future__ import annotations


def forced_multi_tile(graph) -> dict[str, dict]:
    """Parallelism forced on every op that has it: a cascade of 2 (when K has at least two 8-wide blocks) and 2
    chains (when N splits into two 8-aligned halves) on dense ops, 2 column slices on eltwise ops (slices of a
    multiple of 4 columns) and reduce ops (of 16)."""
    out: dict[str, dict] = {}
    for op in graph.ops:
        n = graph.tensor(op.outputs[0]).shape[-1]
        if op.kind == "dense":
            k = graph.tensor(op.inputs[0]).shape[-1]
            out[op.name] = {"cas_length": 2 if k >= 16 else 1, "cas_num": 2 if n % 8 == 0 else 1}
        elif (op.kind == "eltwise" and n % 8 == 0) or (op.kind == "reduce" and n % 32 == 0):
            out[op.name] = {"cas_num": 2}
    return out
