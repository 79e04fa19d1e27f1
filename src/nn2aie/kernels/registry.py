"""The explicit list of op families (no registration by import side effects) and lookup by logical op kind.

This module and each family's own folder are the only places that import a family's modules."""

from __future__ import annotations

from functools import cache

from nn2aie.kernels.family import OpFamily


@cache
def families() -> tuple[OpFamily, ...]:
    """Every family, in a fixed order (imported on first use: families import the IR, the IR asks the registry)."""
    from nn2aie.kernels.conv.family import ConvFamily
    from nn2aie.kernels.dense.family import DenseFamily
    from nn2aie.kernels.eltwise.family import EltwiseFamily
    from nn2aie.kernels.matmul.family import MatmulFamily
    from nn2aie.kernels.norm.family import NormFamily
    from nn2aie.kernels.reduce.family import ReduceFamily
    from nn2aie.kernels.softmax.family import SoftmaxFamily
    from nn2aie.kernels.view.family import ViewFamily

    return (DenseFamily(), EltwiseFamily(), ViewFamily(), ReduceFamily(), ConvFamily(), SoftmaxFamily(),
            NormFamily(), MatmulFamily())


@cache
def _by_kind() -> dict[str, OpFamily]:
    out: dict[str, OpFamily] = {}
    for fam in families():
        for kind in fam.kinds:
            assert kind not in out, f"op kind {kind} claimed by two families"
            out[kind] = fam
    return out


def op_kinds() -> tuple[str, ...]:
    return tuple(sorted(_by_kind()))


def family_for(kind: str) -> OpFamily | None:
    return _by_kind().get(kind)


@cache
def _by_name() -> dict[str, OpFamily]:
    return {fam.name: fam for fam in families()}


def family_named(name: str) -> OpFamily:
    """The family of an execution plan entry (``OpExec.family``)."""
    return _by_name()[name]
