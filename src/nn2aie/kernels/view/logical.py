"""Logical semantics of the view family (docs/ops.md): verify and the exact integer model."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.logical import Graph, Op
from nn2aie.kernels.family import Fail


def verify(graph: Graph, op: Op, fail: Fail) -> None:
    fail(f"op {op.name}", "the view family's logical semantics are not written yet")


def evaluate(graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    raise NotImplementedError("view logical semantics")
