"""The interface every op family implements (shared/design-families.md; docs/architecture.md "Adding a family").

A family owns, side by side in ``kernels/<family>/``: the logical semantics of its op kinds (verify + the exact
integer model), planning (types, accumulator, epilogue, the variant per device generation), parallelism and the
DSE growth step, partition into tile kernels with ports and parameters, the per-tile bit-exact semantics the
emulator runs, cycle cost, resources, C++ rendering, the native co-simulation spec and summary fields.

Nothing outside a family's folder and ``kernels/registry.py`` imports the family's modules: callers reach a family
through ``registry.family_for(kind)`` and the methods below. Methods a family does not need keep the defaults here,
which refuse with a typed error naming the op (a family that cannot be planned must never be silently skipped).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from nn2aie.errors import UnsupportedOpError

if TYPE_CHECKING:
    from nn2aie.ir.logical import Graph, Op

Fail = Callable[[str, str], None]  # fail(where, reason): raises InternalCheckError


class OpFamily(ABC):
    """One op family. Instances are stateless; the registry holds one of each."""

    name: str = ""  # folder name under kernels/, e.g. "dense"
    kinds: tuple[str, ...] = ()  # logical op kinds this family implements

    # -- logical ------------------------------------------------------------------------------------------------
    @abstractmethod
    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        """Check the op's arity, shapes, types and attributes; call ``fail(where, reason)`` on a violation."""

    @abstractmethod
    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The logical integer model: input codes (int64, shape [events, *tensor.shape], constants as stored)
        -> output codes (int64, [events, *shape]) of every output, exactly as the source framework computes."""

    # -- planning and the rest of the pipeline (filled in by each family) ---------------------------------------
    def unsupported(self, op: Op, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"op {op.name} ({op.kind})", f"the {self.name} family cannot yet {what}",
                                  "see the README's 'What works today' table")

    def summary(self, graph: Graph, op: Op, exec_: Any) -> dict:
        """Family-specific fields of the op's entry in summary.json (generic fields are the caller's)."""
        return {}
