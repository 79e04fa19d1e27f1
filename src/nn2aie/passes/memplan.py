"""Memory plan: every tensor between layers (and the graph's input and output) gets a route.

- A **direct hand-off** when one producer tile feeds one consumer tile and their buffer layouts agree.
- Otherwise a **memory-tile shared buffer** holding the tensor as a row-major [rows, columns] array: each
  producer chain writes its column slice with a descriptor that undoes its block layout; each consumer cascade
  position reads its column slice with a descriptor that builds the block layout its mmul loads (zero padding
  past the written columns comes from ``boundary_dimension``). One read port is broadcast to all chains of the
  consumer that need the same slice.
- A buffer whose writers or readers exceed a memory tile's DMA channels is split at columns where no slice
  straddles the cut, one memory tile per part.
- Graph input and output cross the array interface on PLIOs (rows padded to whole 32-bit words; an input's rows
  padded with zeros on the host up to every column its readers read, so its reads need no DMA zero padding and
  no extra buffer descriptors), split over
  several PLIOs (and memory tiles) where one PLIO would move its columns slower than the layer computes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError
from nn2aie.ir.execution import ceil_div
from nn2aie.ir.physical import MEMTILE_ALIGN, DirectLink, Endpoint, Kernel, Plio, SharedBuffer, SpatialView, dtype_bytes
from nn2aie.ir.physical import Access as PortAccess
from nn2aie.ir.tiling import TilingDescriptor, Traversal


@dataclass
class SliceSpec:
    """A column slice [start, start+width) of the tensor, moved by one port."""

    start: int
    width: int
    endpoints: list[Endpoint]
    block: tuple[int, int] | None  # (block_rows, block_cols) of the tile-side layout; None = linear rows
    view: SpatialView | None = None  # the port moves a window of each event's image (PortSpec.view)
    rows: int | None = None  # the port's rows per iteration when they differ from the tensor's (a dense layer at a
    # batch that is not a multiple of its mmul rows pads them: it writes and reads whole row blocks)

    @property
    def end(self) -> int:
        return self.start + self.width

    @property
    def key(self) -> tuple:
        """What a read moves: equal keys are one read port broadcast to all their endpoints."""
        return self.start, self.width, self.block, self.view, self.rows

    def shifted(self, off: int) -> SliceSpec:
        return replace(self, start=self.start + off)


def _view_descriptor(spec: SliceSpec, base: int, dims: tuple[int, int], boundary: int | None) -> TilingDescriptor:
    """A window of every event's image: the buffer seen as ``(columns, W, H, events)`` (1-D images as H = 1),
    one tile of ``(columns or a block's columns, *extent)`` per event (and per column block), origin at the
    window's (possibly negative) origin; positions outside the image -- and columns past the written ones -- read
    as zero through ``boundary_dimension`` (the memory tile's zero padding on dimensions 0..2)."""
    view = spec.view
    assert view is not None
    events = dims[1] // math.prod(view.shape)
    first, count = view.events if view.events is not None else (0, events)
    buffer = (dims[0], *reversed(view.shape), events)
    origin = (spec.start - base, *reversed(view.origin), first)
    cols = boundary if boundary is not None else dims[0]
    needs_bound = view.padded or spec.end - base > cols
    bound = (cols, *reversed(view.shape), events) if needs_bound else None
    step = Traversal(len(buffer) - 1, 1, count)
    if spec.block is None:
        return TilingDescriptor(buffer, (spec.width, *reversed(view.extent), 1), origin, (step,), bound)
    br, bc = spec.block
    assert br == view.rows, "a view's block is all window rows of one event by bc columns"
    return TilingDescriptor(buffer, (bc, *reversed(view.extent), 1), origin,
                            (Traversal(0, bc, spec.width // bc), step), bound)


def _descriptor(spec: SliceSpec, base: int, dims: tuple[int, int], rows: int,
                boundary: int | None) -> TilingDescriptor:
    if spec.view is not None:
        return _view_descriptor(spec, base, dims, boundary)
    port_rows = spec.rows if spec.rows is not None else rows
    cols = boundary if boundary is not None and spec.end - base > boundary else None
    bound = (cols if cols is not None else dims[0], rows) if cols is not None or port_rows > rows else None
    if spec.block is None:
        return TilingDescriptor(dims, (spec.width, port_rows), (spec.start - base, 0), (), bound)
    br, bc = spec.block
    return TilingDescriptor(
        dims, (bc, br), (spec.start - base, 0),
        (Traversal(0, bc, spec.width // bc), Traversal(1, br, port_rows // br)), bound)


def _valid_cuts(specs: list[SliceSpec]) -> set[int]:
    ends = {s.end for s in specs}
    return {c for c in ends if not any(s.start < c < s.end for s in specs)}


def _groups(writers: list[SliceSpec] | None, readers: list[SliceSpec] | None, total: int, channels: int,
            where: str, max_columns: int | None = None) -> list[tuple[int, int]]:
    """Column ranges [s, e) each served by one memory tile (flexible PLIO sides are given as None): at most
    ``channels`` writers and readers each, and at most ``max_columns`` columns (the memory tile's capacity)."""
    fixed = [s for s in (writers or []) + (readers or [])]
    cuts = sorted(_valid_cuts(fixed) | {total}) if fixed else [total]
    cuts = [c for c in cuts if c <= total]
    groups, start = [], 0
    while start < total:
        best = None
        for c in cuts:
            if c <= start:
                continue
            nw = sum(1 for s in writers or [] if start <= s.start < c)
            nr = sum(1 for s in readers or [] if start <= s.start < c)
            if nw <= channels and nr <= channels and (max_columns is None or c - start <= max_columns):
                best = c
            else:
                break
        if best is None:
            if max_columns is not None and cuts and min(c for c in cuts if c > start) - start > max_columns:
                raise DoesNotFitError(
                    where, f"one producer or consumer slice needs more than the {max_columns} columns a memory tile "
                    "holds (double buffered)", "use a smaller batch or more tiles for the layers around it")
            raise DoesNotFitError(
                where, f"more than {channels} producer or consumer slices share columns that cannot be split "
                "across memory tiles", "choose cas_num/cas_length overrides whose slice widths divide evenly")
        groups.append((start, best))
        start = best
    return groups


def boundary_feasible(writer_slices: list[tuple], reader_slices: list[tuple], channels: int) -> bool:
    """Can a tensor with these writer and reader slices be split over memory tiles within the DMA channel limits?
    A slice is ``(start, width)`` or ``(start, width, window)``: reads of one window (equal tuples) share one
    broadcast channel, reads of different windows of the same columns (a conv's row bands) do not."""
    writers = [SliceSpec(s[0], s[1], [], None) for s in writer_slices]
    readers = [SliceSpec(s[0], s[1], [], None) for s in dict.fromkeys(tuple(r) for r in reader_slices)]
    total = max(s[0] + s[1] for s in list(writer_slices) + list(reader_slices))
    try:
        _groups(writers, readers, total, channels, "")
    except DoesNotFitError:
        return False
    return True


@dataclass
class TensorRoute:
    """What the memory plan needs to route one tensor: its writer and reader ports (None: the array interface,
    a PLIO), rows per graph iteration, the logical width, and the modelled cycles of the layer on the PLIO side
    (the PLIO split keeps the PLIO from bounding that layer)."""

    tensor: str
    dtype: str
    rows: int
    width: int
    writers: list[SliceSpec] | None
    readers: list[SliceSpec] | None
    kernels: list[Kernel]
    plio_layer_cycles: float = 0.0
    direct: tuple[Endpoint, Endpoint] | None = None  # (writer, reader) when a direct hand-off is possible
    plio_out: bool = False  # a graph output that ops read too: an output PLIO reads each buffer besides them


class MemoryPlanner:
    def __init__(self, device: Device, batch: int, plio_bits: int, pl_freq_mhz: float, plio_split: bool = True):
        self.device = device
        self.plio_split = plio_split
        self.batch = batch
        self.plio_bits = plio_bits
        self.pl_freq_mhz = pl_freq_mhz
        self.channels = min(device.fact("memtile_dma_channels").values())
        self.free_memtiles = [(c, r) for r in range(device.memtile_rows) for c in range(device.columns)]
        self.memtile_use: dict[tuple[int, int], tuple[int, int, int]] = {}  # bytes, writers, readers
        self.shared: list[SharedBuffer] = []
        self.links: list[DirectLink] = []
        self.plios: list[Plio] = []

    # -- helpers ----------------------------------------------------------------------------------------
    def _take_memtile(self, near_col: float, where: str, nbytes: int, writers: int, readers: int) -> tuple[int, int]:
        """A free memory tile nearest the buffer's endpoints; once every one holds a buffer, the nearest that still
        has the capacity (double buffering counted, aligned) and the DMA channels for this one too."""
        if self.free_memtiles:
            best = min(self.free_memtiles, key=lambda t: (t[1], abs(t[0] - near_col), t[0]))
            self.free_memtiles.remove(best)
        else:
            fits = [t for t, (used, w, r) in self.memtile_use.items()
                    if used + nbytes <= self.device.memtile_bytes and w + writers <= self.channels
                    and r + readers <= self.channels]
            if not fits:
                raise DoesNotFitError(where, f"all {self.device.columns * self.device.memtile_rows} memory tiles "
                                      "are full (capacity or DMA channels)", "use fewer layers or a larger device")
            best = min(fits, key=lambda t: (abs(t[0] - near_col), t[1], t[0]))
        used, w, r = self.memtile_use.get(best, (0, 0, 0))
        self.memtile_use[best] = (used + nbytes, w + writers, r + readers)
        return best

    def _word_elems(self, dtype: str, rows: int) -> int:
        """Columns a PLIO row is padded to: whole 32-bit words, and one iteration's rows whole PLIO words (a batch
        of 1 on a 128-bit PLIO: 16 int8 columns)."""
        plio_bytes = self.plio_bits // 8
        return max(1, 4 // dtype_bytes(dtype), plio_bytes // math.gcd(plio_bytes, rows * dtype_bytes(dtype)))

    # -- routes -----------------------------------------------------------------------------------------
    def route(self, r: TensorRoute) -> None:
        # the buffer holds the tallest writer's rows (a dense layer's padded row blocks); readers read their rows
        rows = max([r.rows] + [w.rows for w in r.writers or [] if w.rows is not None and w.view is None])
        where = f"tensor {r.tensor}"
        if r.direct is not None:
            (src, dst) = r.direct
            kernels = {k.name: k for k in r.kernels}
            self.links.append(DirectLink(r.tensor, src.name, dst.name,
                                         self._reads_neighbour(kernels[dst.name], kernels[src.name]),
                                         src.port, dst.port))
            return
        word = self._word_elems(r.dtype, r.rows)
        writers, readers = r.writers, r.readers
        if writers is not None:
            written = max(w.end for w in writers)
        else:
            # the host pads each row with zeros to every column a reader reads (at least whole 32-bit words), so no
            # read of a graph input needs the DMA's zero padding (which costs memory-tile buffer descriptors)
            written = ceil_div(max([r.width] + [x.end for x in readers or []]), word) * word
        total = max([written] + [x.end for x in readers or []])
        if writers is not None and (readers is None or r.plio_out):
            total = max(total, ceil_div(written, word) * word)  # an output PLIO moves whole PLIO words per iteration
        # a memory tile holds its columns double buffered: split the tensor where it would not fit
        capacity = self.device.memtile_bytes // (2 * rows * dtype_bytes(r.dtype))
        capacity -= capacity % word
        max_columns = capacity
        if self.plio_split and (writers is None or readers is None):  # a PLIO side: split where one PLIO is slower
            specs = readers if writers is None else writers
            assert specs is not None
            max_columns = min(max_columns, max(self._plio_columns(r.plio_layer_cycles, rows, r.dtype),
                                               max(spec.width for spec in specs)))
            max_columns -= max_columns % word
        try:
            groups = _groups(writers, readers, total, self.channels, where, max_columns)
        except DoesNotFitError:
            if max_columns == capacity:
                raise
            # the slices allow no split that fast: fewer, slower PLIOs (the performance model will show it)
            groups = _groups(writers, readers, total, self.channels, where, capacity)
        for gi, (s, e) in enumerate(groups):
            name = f"{r.tensor}_mt{gi}" if e - s < total else f"{r.tensor}_mt"
            g_written = min(e, written) - s
            dims = (e - s, rows)
            if writers is None:
                plio = self._plio("in", r.tensor, r.dtype, gi, g_written)
                w_specs = [SliceSpec(s, g_written, [Endpoint("plio", plio.name)], None)]
            else:
                w_specs = [w for w in writers if s <= w.start < e]
            out_width = min(e - s, ceil_div(g_written, word) * word)  # the columns past g_written read as zero
            if readers is None:
                plio = self._plio("out", r.tensor, r.dtype, gi, out_width)
                # a PLIO reads the tensor's own rows; a padded buffer's extra rows stay on chip
                r_specs = [SliceSpec(s, out_width, [Endpoint("plio", plio.name)], None, rows=r.rows)]
            else:
                r_specs = [x for x in readers if s <= x.start < e]
                if r.plio_out:
                    plio = self._plio("out", r.tensor, r.dtype, gi, out_width)
                    r_specs.append(SliceSpec(s, out_width, [Endpoint("plio", plio.name)], None, rows=r.rows))
            w_acc = [PortAccess(w.endpoints, _descriptor(w, s, dims, rows, None)) for w in w_specs]
            r_acc = [PortAccess(x.endpoints, _descriptor(x, s, dims, rows, g_written)) for x in r_specs]
            cols = [self._col_of(ep, r.kernels) for spec in w_specs + r_specs for ep in spec.endpoints]
            cols = [c for c in cols if c is not None]
            near = sum(cols) / len(cols) if cols else 0.0
            one = -(-(e - s) * rows * dtype_bytes(r.dtype) // MEMTILE_ALIGN) * MEMTILE_ALIGN
            mc, mr = self._take_memtile(near, where, 2 * one, len(w_acc), len(r_acc))
            for p in self.plios:
                if p.col < 0:  # below its memory tile, or the nearest interface column with a PL interface
                    p.col = min(self.device.pl_columns(), key=lambda c: (abs(c - mc), c))
            self.shared.append(SharedBuffer(name, r.tensor, r.dtype, dims, mc, mr, w_acc, r_acc, col_start=s))

    def _plio_columns(self, layer_cycles: float, rows: int, dtype: str) -> int:
        """Columns one PLIO moves per graph iteration in the time the layer's slowest tile computes (the
        kernel cost model), so the PLIO does not bound the design: a PLIO carries plio_bits at the PL clock, at
        most one 32-bit stream (4 B) per AIE cycle."""
        rate = self.device.plio_bytes_per_cycle(self.plio_bits, self.pl_freq_mhz)
        return int(layer_cycles * rate // (rows * dtype_bytes(dtype)))

    def _plio(self, direction: str, tensor: str, dtype: str, index: int, width: int) -> Plio:
        name = f"plio_{direction}{len([p for p in self.plios if p.direction == direction])}"
        plio = Plio(name=name, direction=direction, tensor=tensor, dtype=dtype, bits=self.plio_bits,
                    freq_mhz=self.pl_freq_mhz, col=-1, row_width=width, file=f"data/{name}.txt")
        self.plios.append(plio)
        return plio

    def _reads_neighbour(self, core: Kernel, module: Kernel) -> bool:
        """Can ``core``'s tile read the data memory of ``module``'s tile? (catalog: own/west/north/south)"""
        offsets = {"own": (0, 0), "west": (-1, 0), "north": (0, 1), "south": (0, -1)}
        reach = {offsets[d] for d in self.device.fact("neighbour_memory")}
        return (module.col - core.col, module.row - core.row) in reach

    @staticmethod
    def _col_of(ep: Endpoint, kernels: list[Kernel]) -> int | None:
        for k in kernels:
            if k.name == ep.name:
                return k.col
        return None
