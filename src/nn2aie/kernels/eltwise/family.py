"""The eltwise family behind the common interface (kernels/family.py)."""

from __future__ import annotations

import numpy as np

from nn2aie.ir.logical import Graph, Op
from nn2aie.kernels.eltwise import logical
from nn2aie.kernels.family import Fail, OpFamily


class EltwiseFamily(OpFamily):
    name = "eltwise"
    kinds = ("eltwise",)

    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        logical.verify(graph, op, fail)

    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return logical.evaluate(graph, op, inputs)
