"""Deterministic, legal, compact placement of layer rectangles on the compute array.

Each layer is a rectangle ``cas_length`` columns wide (its cascade runs west -> east along a row, the only
horizontal cascade direction on AIE-ML, AM020) and ``cas_num`` rows high (one chain per row). Layers are
packed in graph order on shelves starting at the lowest compute row (next to the memory tiles that carry
their data): each consumer starts in the column right after its producer, so producer outputs sit next to
consumer inputs. A layer that does not fit in the remaining columns opens a new shelf above.

Every kernel keeps all its buffers in its own memory module (the memory plan pins them by address), so a
rectangle needs no free west-neighbour column; ``check_placement`` verifies the invariants.
"""

from __future__ import annotations

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, InternalCheckError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.physical import Kernel


def place(layers: list[DenseExec], kernels: list[Kernel], device: Device) -> dict[str, tuple[int, int]]:
    """Assign (col, row) to every kernel; returns each layer's rectangle origin."""
    origins: dict[str, tuple[int, int]] = {}
    x = y = shelf_height = 0
    for e in layers:
        if e.cas_length > device.columns or e.cas_num > device.compute_rows:
            raise DoesNotFitError(f"layer {e.op}", f"a {e.cas_length}x{e.cas_num} rectangle exceeds the "
                                  f"{device.columns}x{device.compute_rows} array of {device.name}",
                                  "reduce cas_length/cas_num")
        if x + e.cas_length > device.columns:
            x, y, shelf_height = 0, y + shelf_height, 0
        if y + e.cas_num > device.compute_rows:
            used = sum(layer.tiles for layer in layers)
            raise DoesNotFitError(
                f"layer {e.op}", f"the design needs {used} tiles in rectangles that do not pack into the "
                f"{device.columns}x{device.compute_rows} array of {device.name}",
                "use a larger device, fewer tiles per layer (a larger max weight bytes per tile), or a smaller model")
        origins[e.op] = (x, y)
        x += e.cas_length
        shelf_height = max(shelf_height, e.cas_num)
    for k in kernels:
        x0, y0 = origins[k.layer]
        k.col, k.row = x0 + k.position, y0 + k.chain
    check_placement(kernels, device)
    return origins


def check_placement(kernels: list[Kernel], device: Device) -> None:
    seen: dict[tuple[int, int], str] = {}
    by_name = {k.name: k for k in kernels}
    for k in kernels:
        where = f"kernel {k.name}"
        if not (0 <= k.col < device.columns and 0 <= k.row < device.compute_rows):
            raise InternalCheckError(where, f"tile ({k.col},{k.row}) outside the array", "report this")
        if (k.col, k.row) in seen:
            raise InternalCheckError(where, f"tile ({k.col},{k.row}) already holds {seen[(k.col, k.row)]}",
                                     "report this")
        seen[(k.col, k.row)] = k.name
        if any(b.offset + b.size > device.data_memory_bytes for b in k.memory):
            raise InternalCheckError(where, "a buffer lies outside the tile's own memory", "report this")
        if k.has_cascade_in:
            prev = by_name[k.name.rsplit("_p", 1)[0] + f"_p{k.position - 1}"]
            if (prev.col + 1, prev.row) != (k.col, k.row):
                raise InternalCheckError(where, "cascade source is not the west neighbour", "report this")
