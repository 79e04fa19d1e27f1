"""Choose the mmul shape and register blocking of every dense op; its types, accumulator and epilogue are the
linear numerics shared with the conv family (kernels/linear.py, docs/numerics.md)."""

from __future__ import annotations

from nn2aie.devices import Device
from nn2aie.errors import IllegalConfigError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.kernels.epilogue import ACC_BITS, Epilogue, plan_epilogue  # noqa: F401  (shared with other families)
from nn2aie.kernels.linear import PREFERRED_MMUL, plan_linear, tile_bias  # noqa: F401  (re-exported here)

MAX_ACCUMULATOR_REGISTERS = 4  # of 9 x 1024-bit accumulator registers, leave room for the epilogue


def accumulator_budget(acc: str, mmul: tuple[int, int, int]) -> int:
    """Independent accumulators a tile may keep: the largest of 4, 2, 1 within MAX_ACCUMULATOR_REGISTERS."""
    for cand in (4, 2, 1):
        if cand * (ACC_BITS[acc] * mmul[0] * mmul[2]) // 1024 <= MAX_ACCUMULATOR_REGISTERS:
            return cand
    return 1


def legal_mmul_shapes(device: Device, pair: tuple[str, str], acc: str) -> list[tuple[int, int, int]]:
    """The aie::mmul shapes the device's AIE-API offers for an operand pair (native first, then the ones AIE-API
    builds from several native MACs), for the accumulator the pair uses; PREFERRED_MMUL first."""
    entry = device.mmul_shapes(*pair)
    if entry.get("acc") not in (None, acc):
        return [PREFERRED_MMUL[pair][0]]
    shapes = [tuple(s) for s in entry.get("native", []) + entry.get("emulated", [])]
    preferred = PREFERRED_MMUL[pair][0]
    return [preferred] + [s for s in shapes if s != preferred]


def _checked_mmul(shape: tuple, pair: tuple[str, str], acc: str, batch: int, device: Device,
                  where: str) -> tuple[int, int, int]:
    legal = legal_mmul_shapes(device, pair, acc)
    text = "x".join(map(str, shape))
    choices = ", ".join("x".join(map(str, s)) for s in legal)
    if shape not in legal:
        raise IllegalConfigError(f"override for {where}", f"mmul {text} is not an aie::mmul shape for "
                                 f"{pair[0]} x {pair[1]} ({acc}) on {device.name}", f"use one of {choices}")
    if batch % shape[0]:
        raise IllegalConfigError(f"override for {where}", f"mmul {text} needs a batch that is a multiple of "
                                 f"{shape[0]}, the batch is {batch}", f"change the batch or use one of {choices}")
    return shape


def plan_precision(graph: Graph, op: Op, device: Device, batch: int,
                   mmul_override: tuple[int, int, int] | None = None, requant_kind: str | None = None) -> DenseExec:
    """How ``op`` runs on a tile: types, accumulator and epilogue (kernels/linear.py: for float scales the cheapest
    exact requantisation, or ``requant_kind`` when the user names one), mmul shape (PREFERRED_MMUL unless
    overridden)."""
    lin = plan_linear(graph, op, device, "dense", requant_kind)
    mmul, acc = PREFERRED_MMUL[lin.pair]
    assert acc == lin.acc
    k, n = graph.tensor(op.inputs[1]).shape
    epi = lin.epilogue
    mmul_fixed = mmul_override is not None
    if mmul_fixed:
        mmul = _checked_mmul(tuple(mmul_override), lin.pair, acc, batch, device, f"layer {op.name}")
    return DenseExec(
        op=op.name, k=k, n=n, batch=batch, a_dtype=lin.a_dtype, w_dtype=lin.w_dtype, out_dtype=lin.out_dtype,
        acc=acc, mmul=mmul, shift=epi.shift, rounding=epi.rounding, saturation=epi.saturation,
        clamp_lo=epi.clamp_lo, clamp_hi=epi.clamp_hi, wrap_bits=epi.wrap_bits, relu=lin.relu,
        has_bias=lin.bias is not None, acc_bound=lin.bound, n_accumulators=accumulator_budget(acc, mmul),
        mmul_fixed=mmul_fixed, requant=lin.requant,
    )


def parse_mmul(value, where: str) -> tuple[int, int, int]:
    """An mmul shape given as "4x16x8" or [4, 16, 8]."""
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise IllegalConfigError(where, f"mmul {value!r} is not a shape M x K x N", "write it like \"4x16x8\"")
    return shape  # type: ignore[return-value]
