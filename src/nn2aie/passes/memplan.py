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


@dataclass(frozen=True)
class _Span:
    """What the split search sees of a port: its columns [start, end) and the events [first, last) of the graph
    iteration it moves (None: every event)."""

    start: int
    end: int
    events: tuple[int, int] | None


def _span(spec: SliceSpec) -> _Span:
    view = spec.view
    events = None if view is None or view.events is None else (view.events[0], view.events[0] + view.events[1])
    return _Span(spec.start, spec.end, events)


def _event_first(spec: SliceSpec) -> int:
    events = _span(spec).events
    assert events is not None
    return events[0]


def _rebased(spec: SliceSpec, first_event: int) -> SliceSpec:
    """The port as seen from a buffer holding the iteration's events from ``first_event`` on."""
    assert spec.view is not None and spec.view.events is not None
    first, count = spec.view.events
    return replace(spec, view=replace(spec.view, events=(first - first_event, count)))


def _cuts(ranges: list[tuple[int, int]], total: int) -> list[int]:
    """Where [0, total) may be cut: range ends no range straddles."""
    return sorted({b for _, b in ranges if b <= total and not any(a < b < e for a, e in ranges)} | {total})


def _greedy(cuts: list[int], total: int, fits) -> tuple[list[tuple[int, int]], int | None]:
    """[0, total) cut at ``cuts`` into the fewest ranges [a, b) with ``fits(a, b)``, each as wide as it can be (for
    a ``fits`` that holds on every sub-range of a range it holds on, the fewest there are); and where that stops,
    None if it covers [0, total)."""
    groups, start = [], 0
    while start < total:
        best = None
        for c in cuts:
            if c <= start:
                continue
            if not fits(start, c):
                break
            best = c
        if best is None:
            return groups, start
        groups.append((start, best))
        start = best
    return groups, None


def _within_channels(writers: list[_Span], readers: list[_Span], channels: int, inside) -> bool:
    return (sum(1 for s in writers if inside(s)) <= channels and sum(1 for s in readers if inside(s)) <= channels)


def _event_split(writers: list[_Span], readers: list[_Span], channels: int) -> list[tuple[int, int]] | None:
    """Event ranges splitting one column range's buffer so that each range's memory tile serves its ports within
    the DMA channel limits -- possible where every port moves a range of events (tiles sharing out the batch) and
    no port's events straddle a cut; None otherwise."""
    spans = writers + readers
    if not spans or any(s.events is None for s in spans):
        return None
    ranges = [s.events for s in spans if s.events is not None]
    total = max(b for _, b in ranges)
    groups, stop = _greedy(_cuts(ranges, total), total, lambda a, b: _within_channels(
        writers, readers, channels, lambda s: a <= s.events[0] < b))
    return groups if stop is None else None


def _groups(writers: list[_Span] | None, readers: list[_Span] | None, total: int, channels: int, where: str,
            max_columns: int | None = None,
            by_events: bool = False) -> list[tuple[int, int, list[tuple[int, int]] | None]]:
    """Column ranges [s, e) each served by one memory tile (flexible PLIO sides are given as None): at most
    ``channels`` writers and readers each, and at most ``max_columns`` columns (the memory tile's capacity).
    With ``by_events``, a column range whose ports exceed the channels may still be split by events over several
    memory tiles (its third element: the event ranges; None = one buffer)."""
    ws, rs = writers or [], readers or []
    fixed = ws + rs
    cuts = _cuts([(s.start, s.end) for s in fixed], total) if fixed else [total]

    def ports(a: int, b: int) -> tuple[list[_Span], list[_Span]]:
        return [s for s in ws if a <= s.start < b], [s for s in rs if a <= s.start < b]

    def fits(a: int, b: int) -> bool:
        if max_columns is not None and b - a > max_columns:
            return False
        w, r = ports(a, b)
        if len(w) <= channels and len(r) <= channels:
            return True
        return by_events and writers is not None and readers is not None and _event_split(w, r, channels) is not None

    groups, start = _greedy(cuts, total, fits)
    if start is not None:
        if max_columns is not None and min(c for c in cuts if c > start) - start > max_columns:
            raise DoesNotFitError(
                where, f"one producer or consumer slice needs more than the {max_columns} columns a memory tile "
                "holds (double buffered)", "use a smaller batch or more tiles for the layers around it")
        raise DoesNotFitError(
            where, f"more than {channels} producer or consumer slices share columns that cannot be split "
            "across memory tiles" + (" (nor by events: a port moves every event, or a PLIO carries the tensor)"
                                     if by_events or writers is None or readers is None else ""),
            f"choose splits whose slices line up, at most {channels} per column range (cas_num / cas_length; a "
            "conv's parts, bands, event_groups)")
    out: list[tuple[int, int, list[tuple[int, int]] | None]] = []
    for a, b in groups:
        w, r = ports(a, b)
        out.append((a, b, None if len(w) <= channels and len(r) <= channels else _event_split(w, r, channels)))
    return out


def boundary_feasible(writer_slices: list[tuple], reader_slices: list[tuple], channels: int) -> bool:
    """Can a tensor with these writer and reader slices be split over memory tiles within the DMA channel limits?
    A slice is ``(start, width[, window[, events]])``: reads of one window (equal tuples) share one broadcast
    channel, reads of different windows of the same columns (a conv's row bands) do not; ``events`` =
    ``(first, count)`` of the iteration's events the port moves (None: all), where the buffer may be split by
    events too."""
    def span(s: tuple) -> _Span:
        ev = s[3] if len(s) > 3 else None
        return _Span(s[0], s[0] + s[1], None if ev is None else (ev[0], ev[0] + ev[1]))

    writers = [span(s) for s in writer_slices]
    readers = [span(s) for s in dict.fromkeys(tuple(r) for r in reader_slices)]
    total = max(s.end for s in writers + readers)
    try:
        _groups(writers, readers, total, channels, "", by_events=True)
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
        w_spans = None if writers is None else [_span(w) for w in writers]
        r_spans = None if readers is None else [_span(x) for x in readers]
        try:
            groups = _groups(w_spans, r_spans, total, self.channels, where, max_columns)
        except DoesNotFitError:
            if writers is not None and readers is not None and not r.plio_out:
                # tiles sharing out the batch: the buffer split by events too, one memory tile per range
                groups = _groups(w_spans, r_spans, total, self.channels, where, max_columns, by_events=True)
            elif max_columns == capacity:
                raise
            else:  # the slices allow no split that fast: fewer, slower PLIOs (the performance model will show it)
                groups = _groups(w_spans, r_spans, total, self.channels, where, capacity)
        pieces = sum(len(evs) if evs else 1 for _, _, evs in groups)
        for gi, (s, e, evs) in enumerate(groups):
            g_written = min(e, written) - s
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
            if not evs:
                self._buffer(r, where, pieces, (s, e), rows, g_written, w_specs, r_specs)
                continue
            assert rows % self.batch == 0, "ports moving ranges of events move whole events' rows"
            for e0, e1 in evs:
                def inside(specs: list[SliceSpec], e0: int = e0, e1: int = e1) -> list[SliceSpec]:
                    return [_rebased(x, e0) for x in specs if e0 <= _event_first(x) < e1]

                self._buffer(r, where, pieces, (s, e), rows // self.batch * (e1 - e0), g_written, inside(w_specs),
                             inside(r_specs), e0)

    def _buffer(self, r: TensorRoute, where: str, pieces: int, columns: tuple[int, int], rows: int, written: int,
                w_specs: list[SliceSpec], r_specs: list[SliceSpec], first_event: int = 0) -> None:
        """One memory-tile buffer holding columns [s, e) of ``rows`` rows of the tensor (events from
        ``first_event`` on), its ports' descriptors relative to it, on the nearest memory tile with room."""
        s, e = columns
        name = f"{r.tensor}_mt{len([b for b in self.shared if b.tensor == r.tensor])}" if pieces > 1 \
            else f"{r.tensor}_mt"
        dims = (e - s, rows)
        w_acc = [PortAccess(w.endpoints, _descriptor(w, s, dims, rows, None)) for w in w_specs]
        r_acc = [PortAccess(x.endpoints, _descriptor(x, s, dims, rows, written)) for x in r_specs]
        cols = [self._col_of(ep, r.kernels) for spec in w_specs + r_specs for ep in spec.endpoints]
        cols = [c for c in cols if c is not None]
        near = sum(cols) / len(cols) if cols else 0.0
        one = -(-(e - s) * rows * dtype_bytes(r.dtype) // MEMTILE_ALIGN) * MEMTILE_ALIGN
        mc, mr = self._take_memtile(near, where, 2 * one, len(w_acc), len(r_acc))
        for p in self.plios:
            if p.col < 0:  # below its memory tile, or the nearest interface column with a PL interface
                p.col = min(self.device.pl_columns(), key=lambda c: (abs(c - mc), c))
        self.shared.append(SharedBuffer(name, r.tensor, r.dtype, dims, mc, mr, w_acc, r_acc, col_start=s,
                                        first_event=first_event))

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
