"""Choose each dense layer's rectangle: cas_length (K split along a cascade) x cas_num (N split over chains).

Default: the fewest tiles whose per-tile memory fits (weights within ``max_weight_bytes``, everything within
the tile's data memory), slices aligned to the mmul shape (which also keeps every DMA row a whole number of
32-bit words). Ties prefer shorter cascades (lower latency), then fewer chains. A per-layer override
``{"cas_length": L, "cas_num": C}`` is honoured or refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, IllegalConfigError
from nn2aie.ir.execution import DenseExec, ceil_div
from nn2aie.ir.physical import dtype_bytes
from nn2aie.kernels.dense import cost as dense_cost
from nn2aie.kernels.dense.precision import accumulator_budget, legal_mmul_shapes
from nn2aie.kernels.requant_native import constant_rows

ALIGN = 32  # bytes: 256-bit vector loads must be aligned (AM020, AIE-API)


def _aligned(n: int) -> int:
    return ceil_div(n, ALIGN) * ALIGN


@dataclass(frozen=True)
class TileBuffers:
    """Byte sizes of the buffers one tile of a layer needs (ping/pong counted separately)."""

    weights: int
    bias: int
    input: int  # one of the two ping/pong buffers
    output: int  # one of the two ping/pong buffers (0 for cascade-only tiles)
    stack: int
    heap: int
    requant: int = 0  # per-channel requantisation constants of a float-scale layer (single/last tiles)

    def items(self) -> list[tuple[str, int]]:
        out = [("weights", self.weights)]
        if self.bias:
            out.append(("bias", self.bias))
        if self.requant:
            out.append(("requant", self.requant))
        out += [("in_ping", self.input), ("in_pong", self.input)]
        if self.output:
            out += [("out_ping", self.output), ("out_pong", self.output)]
        out += [("stack", self.stack), ("heap", self.heap)]
        return out

    @property
    def total(self) -> int:
        return sum(_aligned(size) for _, size in self.items())


def tile_buffers(e: DenseExec, device: Device, role: str, k_slice: int, n_slice: int) -> TileBuffers:
    return TileBuffers(
        weights=k_slice * n_slice * dtype_bytes(e.w_dtype),
        bias=n_slice * 4 if (e.has_bias and role in ("single", "first")) else 0,
        input=e.batch * k_slice * dtype_bytes(e.a_dtype),
        output=e.batch * n_slice * dtype_bytes(e.out_dtype) if role in ("single", "last") else 0,
        stack=int(device.fact("stack_bytes_default")),
        heap=int(device.fact("heap_bytes_default")),
        requant=requant_words(e, n_slice) * 4 if (e.requant is not None and role in ("single", "last")) else 0,
    )


def requant_words(e: DenseExec, n_slice: int) -> int:
    """int32 constants a single/last tile holds for its columns (kernels/requant_native.tile_constants' layout)."""
    return constant_rows(e.requant) * n_slice


def _fits(e: DenseExec, device: Device, length: int, k_slice: int, n_slice: int, max_weight_bytes: int) -> str:
    """'' when a (length, k_slice, n_slice) split fits, else the reason it does not."""
    weights = k_slice * n_slice * dtype_bytes(e.w_dtype)
    if weights > max_weight_bytes:
        return f"{weights} B of weights per tile exceed the {max_weight_bytes} B limit"
    roles = ["single"] if length == 1 else ["first", "last"]
    for role in roles:
        need = tile_buffers(e, device, role, k_slice, n_slice).total
        if need > device.data_memory_bytes:
            return f"a {role} tile needs {need} B of data memory, the tile has {device.data_memory_bytes} B"
    return ""


def _split(total_blocks: int, parts: int) -> int | None:
    """Blocks per slice when ``total_blocks`` are cut into ``parts`` non-empty slices, else None."""
    per = ceil_div(total_blocks, parts)
    if (parts - 1) * per >= total_blocks:
        return None  # the last slice would be empty
    return per


def choose_parallelism(e: DenseExec, device: Device, max_weight_bytes: int,
                       override: dict | None = None) -> DenseExec:
    _, mk, mn = e.mmul
    kb, nb = ceil_div(e.k, mk), ceil_div(e.n, mn)
    max_len, max_num = device.columns, device.compute_rows

    def configure(length: int, num: int) -> tuple[int, int] | str:
        k_per = _split(kb, length)
        n_per = _split(nb, num)
        if k_per is None or n_per is None:
            return f"K={e.k} or N={e.n} is too small to give every tile a non-empty slice"
        reason = _fits(e, device, length, k_per * mk, n_per * mn, max_weight_bytes)
        return reason or (k_per * mk, n_per * mn)

    if override and {"cas_length", "cas_num"} & set(override):
        length, num = int(override.get("cas_length", 1)), int(override.get("cas_num", 1))
        if not (1 <= length <= max_len and 1 <= num <= max_num):
            raise IllegalConfigError(
                f"layer {e.op}", f"cas_length={length}, cas_num={num} outside 1..{max_len} x 1..{max_num} on "
                f"{device.name}", "choose a smaller rectangle")
        got = configure(length, num)
        if isinstance(got, str):
            raise IllegalConfigError(f"layer {e.op}", f"cas_length={length}, cas_num={num}: {got}",
                                     "choose more tiles, or drop the override to let nn2aie choose")
        e.cas_length, e.cas_num, e.override = length, num, True
        e.k_slice, e.n_slice = got
        return _finish(e, device)

    candidates = sorted((length * num, length, num) for length in range(1, max_len + 1)
                         for num in range(1, max_num + 1))
    last_reason = empty_reason = ""
    for _, length, num in candidates:
        got = configure(length, num)
        if isinstance(got, str):
            if got.startswith("K="):  # empty slices say nothing about why fewer tiles did not fit
                empty_reason = got
            else:
                last_reason = f"with {length}x{num} tiles, {got}"
            continue
        e.cas_length, e.cas_num = length, num
        e.k_slice, e.n_slice = got
        return _finish(e, device)
    raise DoesNotFitError(
        f"layer {e.op} ({e.k}x{e.n})",
        f"no rectangle of at most {max_len}x{max_num} tiles fits ({last_reason or empty_reason})",
        "use narrower weights, a smaller batch, or a device with more tiles")


def _finish(e: DenseExec, device: Device) -> DenseExec:
    """mmul shape and register blocking with the fewest modelled cycles (kernels/dense/cost.py).

    Shapes: the one precision planning gave (the user's, or PREFERRED_MMUL), and unless the user fixed it every
    other shape the device offers for the operand pair whose blocks tile the slices. Blocking: the (row blocks x
    column blocks) accumulator group within the accumulator registers the shape allows; both must divide the
    slice's blocks. Ties prefer the given shape, then fewer accumulators, then wider groups along N."""
    given = e.mmul
    pair = (e.a_dtype.removeprefix("u"), e.w_dtype)
    shapes = [given] if e.mmul_fixed else [given] + [s for s in legal_mmul_shapes(device, pair, e.acc) if s != given]
    best = None
    for shape in shapes:
        m, k, n = shape
        if e.batch % m or e.k_slice % k or e.n_slice % n:
            continue
        e.mmul = shape
        budget = accumulator_budget(e.acc, shape)
        mblk, nblk = e.batch // m, e.n_slice // n
        for macc in range(1, budget + 1):
            for nacc in range(1, budget // macc + 1):
                if mblk % macc or nblk % nacc:
                    continue
                e.m_accumulators, e.n_accumulators = macc, nacc
                key = (round(dense_cost.dense_tile_cycles(e, "single"), 6), shape != given, macc * nacc, -nacc)
                if best is None or key < best[0]:
                    best = (key, shape, macc, nacc)
    assert best is not None  # the given shape tiles the slices, and (1, 1) always divides
    _, e.mmul, e.m_accumulators, e.n_accumulators = best
    return e
