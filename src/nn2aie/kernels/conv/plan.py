"""How a conv op runs on tiles, and the bit-exact semantics of one tile (templates/conv_kernel_impl.h.j2).

A 1-D convolution runs as a 2-D one with one image row (``H = 1``). The op's footprint is ``event_groups x bands x
parts`` chains of ``slices`` tiles: the batch's events are shared out over ``event_groups``, output rows split into
``bands`` equal row bands, output channels into ``parts`` slices of ``m_slice`` (whole accumulator groups), input
channels into ``slices`` slices of ``c_pad`` along a cascade (partial sums of every computed pixel travel on it).
The chains stack in columns of at most the array's rows: the footprint is ``cas_length = ceil(chains / rows) x
slices`` columns by ``cas_num = min(chains, rows)`` rows. Each tile holds its
channel slice of the weights and reads, per event, the **input window** of its band from the memory tile: rows
``[r0 * SH - pad_top, ...)`` of ``HI`` rows and columns ``[-pad_left, ...)`` of ``WI`` pixels, zero outside the
image (the memory tile's zero padding: no core writes a padded pixel), every input channel padded to ``c_pad``
(a multiple of MMUL_K, zero), laid out ``[channel block][row][pixel][MMUL_K]`` per event.

Per event, output row ``ho`` of the band and pixel group ``wq`` (``M_ACC`` groups of ``MMUL_M`` consecutive
output pixels; the row is computed up to ``WQ``, a multiple of ``M_ACC * MMUL_M``, and only pixels ``< WO`` are
stored) and accumulator group ``g`` of ``N_ACC`` column blocks, the tile computes::

    acc[i][j] = bias (or 0)
    for kh, kw, cb:  acc[i][j] += A(ho, wq + i * MMUL_M, kh, kw, cb) @ B(g, kh, kw, cb, j)
    out[ho, w, (g * N_ACC + j) * MMUL_N + n] = epilogue(acc[i][j])  for the stored pixels w

where ``A`` is the ``MMUL_M x MMUL_K`` block of input pixels ``(ho * SH + kh * DH, (w0 + m) * SW + kw * DW)``,
channels ``cb * MMUL_K ...``: consecutive pixels of one window row, loaded as one vector (stride 1) or as every
SW-th pixel block of a longer load (``aie::filter_even``, strides 2 and 4). The output window is
``[HO * WO, m_slice]`` plain rows per event. The sums are exact integers (the accumulator is chosen so that no
partial sum overflows; kernels/linear.py), so the NumPy model below sums in float64 (exact below 2**53) in any
order; grouped convolutions run with weights that are zero outside each group.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, IllegalConfigError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.ir.execution import OpExec, ceil_div
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import dtype_bytes
from nn2aie.kernels.conv import logical
from nn2aie.kernels.epilogue import Epilogue, apply_epilogue
from nn2aie.kernels.linear import PREFERRED_MMUL, plan_linear
from nn2aie.kernels.plain import ALIGN, BITS, is_signed
from nn2aie.kernels.requant_native import constant_rows

MMUL = {pair: shape for pair, (shape, _) in PREFERRED_MMUL.items()}  # the linear numerics' shapes
W_STRIDES = (1, 2, 4)  # strides along the row the kernel's loads support (filter_even halves a vector)
MAX_ACCUMULATORS = 4  # 1024-bit accumulator registers the kernel keeps (of 9), as the dense family
PIXELS_PER_256 = 4  # one pixel of a channel block is MMUL_K elements = 64 bits for every pair in MMUL
STORE_BITS = 128  # the narrowest AIE-ML vector store: a pixel's output is stored in 128-bit pieces


@dataclass
class ConvExec(OpExec):
    op: str
    batch: int
    spatial: tuple[int, int]  # (H, W) of the input (1-D: (1, L))
    out_spatial: tuple[int, int]  # (HO, WO)
    channels: int  # C
    filters: int  # M
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads_begin: tuple[int, int]
    pads_end: tuple[int, int]
    groups: int
    rank: int  # spatial axes of the source op (1 or 2)
    a_dtype: str
    w_dtype: str
    out_dtype: str
    acc: str
    mmul: tuple[int, int, int]
    epilogue: dict  # Epilogue of the SRS (also the clamp range of a requantisation)
    relu: bool
    has_bias: bool
    acc_bound: int
    c_pad: int  # input channels of one tile (a cascade position's slice), a multiple of MMUL_K
    requant: Any = None  # kernels/requant.py Requant (multiplier / table) or None (the SRS epilogue)
    pool: str = ""  # "" a convolution; "max" a max pool (no weights: channels pass through, c_pad = m_slice)
    c_total: int = 0  # input channels padded to MMUL_K (``slices`` slices of c_pad cover them)
    # "mmul": aie::mmul blocks over (pixels x channels) x (channels x filters); "depthwise": one filter per channel
    # (groups = C = M), an element-wise aie::mac of 4 pixels x MMUL_K channels per tap, channels sliced like a pool
    variant: str = "mmul"
    slices: int = 1  # input-channel slices along a cascade (the override key cas_length)
    m_slice: int = 0  # output channels per tile
    parts: int = 1  # output-channel slices
    bands: int = 1  # output row bands
    event_groups: int = 1  # the batch's events shared out over tiles (each tile runs batch / event_groups)
    m_accumulators: int = 1  # pixel groups sharing each B block
    n_accumulators: int = 1  # column blocks sharing each A block
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)

    family: ClassVar[str] = "conv"

    # -- derived geometry ---------------------------------------------------------------------------------------
    def epi(self) -> Epilogue:
        return Epilogue(**self.epilogue)

    @property
    def band_rows(self) -> int:
        return self.out_spatial[0] // self.bands

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def group_pixels(self) -> int:
        return self.mmul[0] * self.m_accumulators

    @property
    def wq(self) -> int:
        """Output pixels a row is computed to: whole pixel groups."""
        return ceil_div(self.out_spatial[1], self.group_pixels) * self.group_pixels

    @property
    def window(self) -> tuple[int, int]:
        """(HI, WI): the input window of one band, per event."""
        sh, sw = self.strides
        dh, dw = self.dilations
        hi = (self.band_rows - 1) * sh + (self.kernel[0] - 1) * dh + 1
        wi = self.wq * sw + (self.kernel[1] - 1) * dw  # the last group's load reads SW - 1 pixels past its last
        return hi, ceil_div(wi, PIXELS_PER_256) * PIXELS_PER_256  # rows start on 256-bit boundaries

    @property
    def tile_batch(self) -> int:
        return self.batch // self.event_groups

    @property
    def in_rows(self) -> int:
        return self.tile_batch * self.window[0] * self.window[1]

    @property
    def out_rows(self) -> int:
        return self.tile_batch * self.band_rows * self.out_spatial[1]

    @property
    def m_padded(self) -> int:
        return self.parts * self.m_slice

    def band_origin(self, band: int) -> tuple[int, int]:
        return (band * self.band_rows * self.strides[0] - self.pads_begin[0], -self.pads_begin[1])

    @property
    def per_channel(self) -> bool:
        """A tile reads the channels it writes (max pool, depthwise conv)."""
        return bool(self.pool) or self.variant == "depthwise"

    def weight_elems(self) -> int:
        if self.pool:
            return 0
        if self.variant == "depthwise":  # per (channel block, tap) the block's weights repeated for 4 pixels
            return self.taps * self.m_slice * self.mmul[0]
        return self.taps * self.c_pad * self.m_slice

    @property
    def roles(self) -> list[str]:
        if self.slices == 1:
            return ["single"]
        return ["first"] + (["middle"] if self.slices > 2 else []) + ["last"]

    @property
    def chains(self) -> int:
        """Independent cascades: event groups x row bands x output-channel slices."""
        return self.event_groups * self.bands * self.parts

    @property
    def cascade_lanes(self) -> int:
        """Accumulator lanes one tile sends on its cascade per invocation: every computed pixel's partial sums."""
        return self.tile_batch * self.band_rows * self.wq * self.m_slice

    def to_json(self) -> dict:
        d = asdict(self)
        d["family"] = self.family
        d["tiles"] = self.tiles
        d["requant"] = self.requant.to_json() if self.requant is not None else None
        for key in ("spatial", "out_spatial", "kernel", "strides", "dilations", "pads_begin", "pads_end", "mmul"):
            d[key] = list(d[key])
        return d


def _pair2(v: tuple[int, ...], fill: int) -> tuple[int, int]:
    return (fill, int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))


def plan(graph: Graph, op: Op, device: Device, batch: int, requant_kind: str | None) -> ConvExec:
    geo = logical.geometry(graph, op)
    where = f"op {op.name} (conv)"
    rank = len(geo.spatial)
    x_t = graph.tensor(op.inputs[0])
    if logical.pad_code(graph, op) != 0 and (any(geo.pads_begin) or any(geo.pads_end)):
        raise UnsupportedQuantizationError(
            f"{where} input {x_t.origin or x_t.name}", f"its zero point is {logical.pad_code(graph, op)}: the "
            "source pads with that code, the memory tile's zero padding writes 0",
            "quantize the conv input with zero point 0 (symmetric, or unsigned from 0) or pad explicitly")
    lin = plan_linear(graph, op, device, "conv", requant_kind)
    strides = _pair2(geo.strides, 1)
    if strides[1] not in W_STRIDES:
        raise UnsupportedOpError(where, f"stride {strides[1]} along the {'row' if rank == 2 else 'sequence'}; the "
                                 f"conv kernel loads pixels at strides {', '.join(map(str, W_STRIDES))}",
                                 "use one of those strides")
    mmul = MMUL[lin.pair]
    _, k, n = mmul
    out_bits = BITS[lin.out_dtype]
    store_blocks = max(1, STORE_BITS // (n * out_bits))  # column blocks one 128-bit pixel store covers
    e = ConvExec(
        op=op.name, batch=batch, spatial=_pair2(geo.spatial, 1), out_spatial=_pair2(geo.out_spatial, 1),
        channels=geo.channels, filters=geo.filters, kernel=_pair2(geo.kernel, 1), strides=strides,
        dilations=_pair2(geo.dilations, 1), pads_begin=_pair2(geo.pads_begin, 0),
        pads_end=_pair2(geo.pads_end, 0), groups=geo.groups, rank=rank, a_dtype=lin.a_dtype,
        w_dtype=lin.w_dtype, out_dtype=lin.out_dtype, acc=lin.acc, mmul=mmul, epilogue=asdict(lin.epilogue),
        relu=lin.relu, has_bias=lin.bias is not None, acc_bound=lin.bound, c_pad=ceil_div(geo.channels, k) * k,
        requant=lin.requant, n_accumulators=store_blocks, c_total=ceil_div(geo.channels, k) * k)
    depthwise = geo.groups > 1 and geo.groups == geo.channels == geo.filters  # one filter per channel
    if depthwise and STORE_BITS // (k * out_bits) <= 2:  # (a pixel's 128-bit store spans at most two blocks)
        e.variant = "depthwise"
        e.mmul = (mmul[0], k, k)
        e.n_accumulators = max(1, STORE_BITS // (k * out_bits))
    elif geo.groups > 1:
        e.notes.append(f"{geo.groups} groups run as one convolution with zero weights outside each group "
                       f"({geo.groups}x the MACs of the grouped one)")
    return e


def plan_pool(graph: Graph, op: Op, device: Device, batch: int) -> ConvExec:
    """A max pool on the conv family's tiles: the same windows, bands and channel slices, a vector max per tap."""
    geo = logical.pool_geometry(graph, op)
    where = f"op {op.name} (pool)"
    x_t = graph.tensor(op.inputs[0])
    xt = x_t.type
    if xt.container_bits not in (8, 16):
        raise UnsupportedQuantizationError(f"{where} input {x_t.origin or x_t.name}", f"{xt.container} codes; pool "
                                           "tiles take 8- and 16-bit codes", "quantize the input to at most 16 bits")
    out = geo.out_spatial
    # ceil_mode: the last windows reach past the end padding; those positions count as padding too
    ends = tuple(max(pe, (o - 1) * st + (k - 1) * d + 1 - i - pb) for o, st, k, d, i, pb, pe in zip(
        out, geo.strides, geo.kernel, geo.dilations, geo.spatial, geo.pads_begin, geo.pads_end, strict=True))
    if (any(geo.pads_begin) or any(ends)) and xt.min_code < 0:
        raise UnsupportedOpError(where, f"pads a signed input ({xt.describe()}): the source ignores padding, the "
                                 "memory tile's padding reads as code 0, which would win over negative codes",
                                 "pool a non-negative (unsigned or post-ReLU) tensor, or drop the padding")
    rank = len(geo.spatial)
    strides = _pair2(geo.strides, 1)
    if strides[1] not in W_STRIDES:
        raise UnsupportedOpError(where, f"stride {strides[1]} along the {'row' if rank == 2 else 'sequence'}; pool "
                                 f"tiles load pixels at strides {', '.join(map(str, W_STRIDES))}",
                                 "use one of those strides")
    container = xt.container
    _, k, _ = MMUL[(container.removeprefix("u"), "int8")]
    store_blocks = max(1, STORE_BITS // (k * BITS[container]))
    channels = int(x_t.shape[-1])
    return ConvExec(
        op=op.name, batch=batch, spatial=_pair2(geo.spatial, 1), out_spatial=_pair2(out, 1), channels=channels,
        filters=channels, kernel=_pair2(geo.kernel, 1), strides=strides, dilations=_pair2(geo.dilations, 1),
        pads_begin=_pair2(geo.pads_begin, 0), pads_end=_pair2(ends, 0), groups=1, rank=rank, a_dtype=container,
        w_dtype=container, out_dtype=container, acc="acc32", mmul=(4, k, k),
        epilogue=asdict(Epilogue(0, "floor", "none", xt.min_code, xt.max_code)), relu=False, has_bias=False,
        acc_bound=0, c_pad=k * store_blocks, pool="max", n_accumulators=store_blocks, c_total=ceil_div(channels, k) * k)


# -- parallelism --------------------------------------------------------------------------------------------------
def _accumulators(e: ConvExec) -> tuple[int, int]:
    """(M_ACC, N_ACC): the register blocking with the fewest modelled cycles per useful MAC (kernels/mac_cost.py's
    trip: MACs, A loads on one unit, B loads on the other; pixels computed past the row's end count as waste).
    N_ACC is a multiple of the 128-bit store width, M_ACC x N_ACC blocks fit MAX_ACCUMULATORS registers."""
    from nn2aie.kernels.mac_cost import NATIVE_MACS_PER_INSTRUCTION, LoopNest, trip_cycles

    m, k, n = e.mmul
    regs = max(1, (32 if e.acc == "acc32" else 64) * m * n // 1024)
    store = max(1, STORE_BITS // (n * BITS[e.out_dtype]))
    a_bits, w_bits = BITS[e.a_dtype], BITS[e.w_dtype]
    per = max(1, m * k * n // NATIVE_MACS_PER_INSTRUCTION[(e.a_dtype.removeprefix("u"), e.w_dtype)])
    wo = e.out_spatial[1]
    best = None
    for n_acc in (store, 2 * store, 4 * store):
        if n_acc * n > ceil_div(e.filters, n) * n and n_acc > store:
            continue
        for m_acc in (1, 2, 4):
            if m_acc * n_acc * regs > MAX_ACCUMULATORS or (m_acc > 1 and (m_acc - 1) * m >= wo):
                continue
            trip = trip_cycles(LoopNest(1, m_acc * n_acc, 1, per, m_acc * e.strides[1] * m * k * a_bits,
                                        n_acc * k * n * w_bits, 0, 8))
            waste = ceil_div(wo, m * m_acc) * m * m_acc / wo
            score = (trip / (m_acc * n_acc) * waste, -n_acc)
            if best is None or score < best[0]:
                best = (score, m_acc, n_acc)
    assert best is not None
    return best[1], best[2]


def tile_bytes(e: ConvExec, role: str = "single") -> dict[str, int]:
    """A tile's buffers (bytes): double-buffered input window and output (single / last), weights, bias (single /
    first), requantisation (single / last)."""
    out = {"in": 2 * e.in_rows * e.c_pad * dtype_bytes(e.a_dtype)}
    if role in ("single", "last"):
        out["out"] = 2 * e.out_rows * e.m_slice * dtype_bytes(e.out_dtype)
    out["weights"] = e.weight_elems() * dtype_bytes(e.w_dtype)
    if e.has_bias and role in ("single", "first"):
        out["bias"] = 4 * e.m_slice
    if e.requant is not None and role in ("single", "last"):
        out["requant"] = 4 * requant_words(e)
    return out


def requant_words(e: ConvExec) -> int:
    """int32 constants of one tile's requantisation (as kernels/requant_native.tile_constants lays them out)."""
    return constant_rows(e.requant) * e.m_slice


def fits(e: ConvExec, device: Device) -> bool:
    budget = device.data_memory_bytes - int(device.fact("stack_bytes_default")) - \
        int(device.fact("heap_bytes_default")) - 8 * ALIGN
    return all(sum(tile_bytes(e, role).values()) <= budget for role in e.roles)


def stack_rows(device: Device) -> int:
    """Chains per footprint column: half the array's rows, so that a wide conv's streams to and from the memory
    tiles spread over twice the columns (each chain has its own input window and output region; the stream
    switches of one column carry a few of them, the legality model counts them)."""
    return max(1, device.compute_rows // 2)


def footprint(chains: int, length: int, device: Device) -> tuple[int, int]:
    """(rows, columns) of the rectangle ``chains`` cascades of ``length`` tiles take: as few columns of chains as
    ``stack_rows`` allows, the chains shared out evenly over them (few empty slots)."""
    stacks = -(-chains // stack_rows(device))
    return -(-chains // stacks), stacks * length


def _band_counts(ho: int) -> list[int]:
    return [b for b in range(1, ho + 1) if ho % b == 0]


def choose(e: ConvExec, device: Device, override: dict | None) -> None:
    """The fewest tiles that fit (event groups, row bands and output-channel slices; at equal tiles fewer bands,
    then fewer event groups), or the user's override. Where no split fits, narrower accumulator groups (slices of
    fewer channels, down to one 128-bit pixel store) are tried before refusing with the numbers."""
    override = override or {}
    want_parts, want_bands, want_groups = (override.get(k) for k in ("parts", "bands", "event_groups"))
    want_length = override.get("cas_length")
    k = e.mmul[1]
    max_length = 1 if e.per_channel else e.c_total // k
    if want_length is not None and want_length > max_length:
        why = "a max pool or depthwise conv has no cascade" if e.per_channel else \
            f"{e.c_total} input channels give at most {max_length} slices of {k}"
        raise IllegalConfigError(f"override for layer {e.op}", f"cas_length {want_length}: {why}",
                                 f"use at most {max_length}")
    where = f"override for layer {e.op}"
    if want_bands is not None and e.out_spatial[0] % want_bands:
        raise IllegalConfigError(where, f"bands {want_bands} do not divide the {e.out_spatial[0]} output rows",
                                 f"use one of {', '.join(map(str, _band_counts(e.out_spatial[0])))}")
    if want_groups is not None and e.batch % want_groups:
        raise IllegalConfigError(where, f"event_groups {want_groups} do not divide the batch of {e.batch}",
                                 f"use one of {', '.join(map(str, _band_counts(e.batch)))}")
    store = max(1, STORE_BITS // (e.mmul[2] * BITS[e.out_dtype]))
    if e.per_channel:  # one pixel group, the column blocks of one pixel store
        e.m_accumulators, e.n_accumulators = 1, store
    else:
        e.m_accumulators, e.n_accumulators = _accumulators(e)
    channels = min(device.fact("memtile_dma_channels").values())
    too_many_windows: tuple[int, int] | None = None  # the first split that fit a tile but not the DMA channels
    while want_parts and e.n_accumulators > store and ceil_div(e.filters, e.mmul[2] * e.n_accumulators) < want_parts:
        e.n_accumulators //= 2  # narrower accumulator groups: slices of fewer channels
    while True:
        step = e.mmul[2] * e.n_accumulators
        max_parts = ceil_div(e.filters, step)
        if want_parts is not None and want_parts > max_parts:
            raise IllegalConfigError(where, f"parts {want_parts}: {e.filters} output channels give at most "
                                     f"{max_parts} slices of {step}", f"use at most {max_parts}")
        candidates = []
        for length in ([want_length] if want_length else range(1, max_length + 1)):
            c_slice = ceil_div(ceil_div(e.c_total, length), k) * k
            if (length - 1) * c_slice >= e.c_total:
                continue
            for groups in ([want_groups] if want_groups else _band_counts(e.batch)):
                for bands in ([want_bands] if want_bands else _band_counts(e.out_spatial[0])):
                    for parts in ([want_parts] if want_parts else range(1, max_parts + 1)):
                        m_slice = ceil_div(ceil_div(e.filters, parts), step) * step
                        if (parts - 1) * m_slice >= e.filters:
                            continue
                        candidates.append((length * groups * bands * parts, length, groups, bands, parts, m_slice,
                                           c_slice))
        # at equal tiles: shorter cascades, then the batch shared out before the rows (an event group's window
        # has no halo, and a buffer between event groups splits over memory tiles by events), then fewer slices
        candidates.sort(key=lambda c: (c[0], c[1], c[3], c[2], c[4]))
        for tiles, length, groups, bands, parts, m_slice, c_slice in candidates:
            rows, columns = footprint(tiles // length, length, device)
            if columns > device.columns:
                continue  # the chains stack in columns of at most stack_rows, each `length` tiles wide
            e.slices, e.event_groups, e.bands, e.parts, e.m_slice = length, groups, bands, parts, m_slice
            e.c_pad = m_slice if e.per_channel else c_slice  # a pool tile reads the channels it writes
            if fits(e, device):
                if groups * bands > channels and not (want_groups or want_bands):
                    # distinct windows of one column range are a memory-tile DMA channel each; a buffer between
                    # event groups may be split by events, the graph's input (one PLIO per column range) not:
                    # only an explicit override goes past the channels
                    too_many_windows = too_many_windows or (groups, bands)
                    continue
                e.cas_num, e.cas_length = rows, columns
                e.override = bool(want_parts or want_bands or want_groups or want_length)
                return
        if e.n_accumulators <= store or want_parts:
            break
        e.n_accumulators //= 2
        e.m_accumulators = 2 if e.out_spatial[1] > e.mmul[0] and not e.per_channel else 1
    if too_many_windows is not None:
        groups, bands = too_many_windows
        raise DoesNotFitError(
            f"op {e.op} (conv)", f"the fewest tiles that fit a tile's data memory ({groups} event groups x {bands} "
            f"row bands) read {groups * bands} windows of the same channels, more than the {channels} DMA channels "
            "of a memory tile", "set event_groups and bands explicitly (a tensor between layers may be split over "
            "memory tiles by events), or use a smaller batch")
    fitting = [c for c in candidates if footprint(c[0] // c[1], c[1], device)[1] <= device.columns] or \
        candidates
    if fitting:
        _, e.slices, e.event_groups, e.bands, e.parts, e.m_slice, c_slice = fitting[-1]
        e.c_pad = e.m_slice if e.per_channel else c_slice
    need = max((tile_bytes(e, role) for role in e.roles), key=lambda d: sum(d.values()))
    raise DoesNotFitError(
        f"op {e.op} (conv)", f"no split into input-channel slices, event groups, row bands and output-channel slices "
        f"fits a tile's data memory: at {e.slices} x {e.event_groups} x {e.bands} x {e.parts} tiles one still "
        f"needs {sum(need.values())} bytes ({', '.join(f'{k} {v}' for k, v in need.items())}) of "
        f"{device.data_memory_bytes}", "use a smaller batch, fewer input channels, or narrower types for this layer")


# -- weights and the tile's arithmetic ----------------------------------------------------------------------------
def dense_weights(graph: Graph, op: Op, e: ConvExec) -> np.ndarray:
    """``[KH, KW, slices * c_pad, m_padded]`` int64: the op's weights with zeros outside each group and in the
    padding."""
    w = logical.kernel_weights(graph, op).reshape(e.kernel[0], e.kernel[1], e.channels // e.groups, e.filters)
    out = np.zeros((e.kernel[0], e.kernel[1], e.slices * e.c_pad, e.m_padded), dtype=np.int64)
    cg, mg = e.channels // e.groups, e.filters // e.groups
    for g in range(e.groups):
        out[:, :, g * cg:(g + 1) * cg, g * mg:(g + 1) * mg] = w[..., g * mg:(g + 1) * mg]
    return out


def pack_weights(e: ConvExec, w_slice: np.ndarray) -> np.ndarray:
    """``[KH, KW, c_pad, m_slice]`` -> 1-D in kernel load order (group g, kh, kw, cb, j, kk, nn)."""
    _, k, n = e.mmul
    kh, kw = e.kernel
    groups = e.m_slice // (n * e.n_accumulators)
    blocks = w_slice.reshape(kh, kw, e.c_pad // k, k, groups, e.n_accumulators, n)  # [kh, kw, cb, kk, g, j, nn]
    return np.ascontiguousarray(blocks.transpose(4, 0, 1, 2, 5, 3, 6)).reshape(-1)


def unpack_weights(e: ConvExec, packed: np.ndarray) -> np.ndarray:
    _, k, n = e.mmul
    kh, kw = e.kernel
    groups = e.m_slice // (n * e.n_accumulators)
    blocks = np.asarray(packed).reshape(groups, kh, kw, e.c_pad // k, e.n_accumulators, k, n)
    return blocks.transpose(1, 2, 3, 5, 0, 4, 6).reshape(kh, kw, e.c_pad, e.m_slice)


def window_to_image(e: ConvExec, window: np.ndarray) -> np.ndarray:
    """The input port's logical matrix ``[events * HI * WI, c_pad]`` -> ``[events, HI, WI, c_pad]``."""
    hi, wi = e.window
    return np.asarray(window).reshape(-1, hi, wi, e.c_pad)


def run_pool_tile(e: ConvExec, image: np.ndarray) -> np.ndarray:
    """A max pool tile: the largest code of each window of ``image`` [events, HI, WI, c_pad] (zero padding
    included: plan_pool admits padding only where no code is negative) -> [events * HO_band * WO, c_pad]."""
    sh, sw = e.strides
    dh, dw = e.dilations
    ho, wo = e.band_rows, e.out_spatial[1]
    x = np.asarray(image, dtype=np.int64)
    out = None
    for kh in range(e.kernel[0]):
        for kw in range(e.kernel[1]):
            patch = x[:, kh * dh:kh * dh + (ho - 1) * sh + 1:sh, kw * dw:kw * dw + (wo - 1) * sw + 1:sw, :]
            out = patch.copy() if out is None else np.maximum(out, patch)
    return out.reshape(-1, e.c_pad)


def partial_sums(e: ConvExec, image: np.ndarray, w_tile: np.ndarray) -> np.ndarray:
    """A tile's exact sums over its channel slice for every computed pixel: ``[events, HO_band, WQ, m_slice]``
    int64 from input windows ``[events, HI, WI, c_pad]`` and weights ``[KH, KW, c_pad, m_slice]`` (unpacked). The
    pixels past WO read the window's own (zero-padded) columns, as the kernel does: they travel on the cascade."""
    sh, sw = e.strides
    dh, dw = e.dilations
    ho, wq = e.band_rows, e.wq
    x = np.asarray(image, dtype=np.float64)
    w = np.asarray(w_tile, dtype=np.float64)
    acc = np.zeros((x.shape[0], ho, wq, e.m_slice), dtype=np.float64)
    for kh in range(e.kernel[0]):
        for kw in range(e.kernel[1]):
            patch = x[:, kh * dh:kh * dh + (ho - 1) * sh + 1:sh, kw * dw:kw * dw + (wq - 1) * sw + 1:sw, :]
            acc += patch @ w[kh, kw]  # exact: every partial sum is below 2**53 (kernels/linear.py)
    return acc.astype(np.int64)


def finish_tile(e: ConvExec, sums: np.ndarray, requant: Any) -> np.ndarray:
    """Output codes ``[events * HO_band * WO, m_slice]`` of the whole sums ``[events, HO_band, WQ, m_slice]``
    (bias included): the stored pixels through the epilogue."""
    flat = sums[:, :, : e.out_spatial[1], :].reshape(-1, e.m_slice)
    if requant is not None:
        return requant.apply(flat)
    return apply_epilogue(flat, e.epi(), BITS[e.out_dtype], is_signed(e.out_dtype))


def cascade_stream(e: ConvExec, sums: np.ndarray, iters: int) -> np.ndarray:
    """``[iters * tile_batch, HO_band, WQ, m_slice]`` partial sums -> ``[iters, cascade_lanes]`` in the order the
    kernel sends them: event, row, pixel step, group, then blocks (i, j), each MMUL_M x MMUL_N row-major."""
    m, _, n = e.mmul
    steps, groups = e.wq // e.group_pixels, e.m_slice // (n * e.n_accumulators)
    blocks = np.asarray(sums).reshape(iters, e.tile_batch, e.band_rows, steps, e.m_accumulators, m, groups,
                                      e.n_accumulators, n)
    return np.ascontiguousarray(blocks.transpose(0, 1, 2, 3, 6, 4, 7, 5, 8)).reshape(iters, -1)


def pack_depthwise(e: ConvExec, w: np.ndarray) -> np.ndarray:
    """Depthwise weights ``[taps, m_slice]`` -> 1-D in kernel load order: per (channel block, tap) the block's
    MMUL_K weights repeated for the MMUL_M pixels of a vector (row-major pixels x channels)."""
    k, m = e.mmul[1], e.mmul[0]
    blocks = np.asarray(w).reshape(e.taps, e.m_slice // k, k).transpose(1, 0, 2)  # [cb, tap, kk]
    return np.ascontiguousarray(np.repeat(blocks[:, :, None, :], m, axis=2)).reshape(-1)


def unpack_depthwise(e: ConvExec, packed: np.ndarray) -> np.ndarray:
    k, m = e.mmul[1], e.mmul[0]
    blocks = np.asarray(packed).reshape(e.m_slice // k, e.taps, m, k)[:, :, 0, :]
    return blocks.transpose(1, 0, 2).reshape(e.taps, e.m_slice)


def depthwise_sums(e: ConvExec, image: np.ndarray, w_tile: np.ndarray) -> np.ndarray:
    """A depthwise tile's exact sums for every computed pixel: ``[events, HO_band, WQ, m_slice]`` from input
    windows ``[events, HI, WI, m_slice]`` and weights ``[taps, m_slice]`` (channel c by filter c)."""
    sh, sw = e.strides
    dh, dw = e.dilations
    ho, wq = e.band_rows, e.wq
    x = np.asarray(image, dtype=np.int64)
    w = np.asarray(w_tile, dtype=np.int64).reshape(e.kernel[0], e.kernel[1], e.m_slice)
    acc = np.zeros((x.shape[0], ho, wq, e.m_slice), dtype=np.int64)
    for kh in range(e.kernel[0]):
        for kw in range(e.kernel[1]):
            acc += x[:, kh * dh:kh * dh + (ho - 1) * sh + 1:sh, kw * dw:kw * dw + (wq - 1) * sw + 1:sw, :] * w[kh, kw]
    return acc


def run_tile(e: ConvExec, image: np.ndarray, w_tile: np.ndarray, bias: np.ndarray | None,
             requant: Any) -> np.ndarray:
    """A single tile (no cascade): output rows ``[events * HO_band * WO, m_slice]`` of input windows ``image``
    ``[events, HI, WI, c_pad]`` with the tile's weights ``[KH, KW, c_pad, m_slice]`` (unpacked), bias
    ``[m_slice]`` and the requantisation of its columns (or None: the SRS epilogue)."""
    sums = partial_sums(e, image, w_tile)
    if bias is not None:
        sums += np.asarray(bias, dtype=np.int64)
    return finish_tile(e, sums, requant)
