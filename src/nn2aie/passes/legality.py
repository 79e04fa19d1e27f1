"""Resource legality of a physical plan, driven by the device catalog: would Vitis accept this design?

Independent of the passes that built the plan: every use is re-derived from the plan objects (kernels and their
memory maps, shared buffers and their accesses, direct links, PLIOs) and compared with a catalog capacity. The
check runs on every design before anything is emitted; the first violated resource is raised as a
``DoesNotFitError`` naming the rule, where, and by how much. ``resource_usage`` returns every use with its
capacity (the peak per rule goes into the project summary).

Rules (catalog fact in brackets):
- ``tile data memory``: bytes of the buffers held in a compute tile's memory module, by bank
  [data_memory_bytes, data_memory_banks]; a buffer read in place by a neighbour must lie in a module that core
  can reach [neighbour_memory].
- ``tile DMA channels``: buffers a tile receives (S2MM) / sends (MM2S) through its DMA [tile_dma_channels];
  ``tile buffer descriptors``: 2 per double-buffered DMA transfer [tile_buffer_descriptors, bds_per_buffer].
- ``memory-tile capacity`` (double buffering counted) [memtile_bytes]; ``memory-tile DMA channels``
  [memtile_dma_channels]; ``memory-tile buffer descriptors`` per BD pool (channel parity; a zero-padded read
  takes its BDs once per run of tiles with the same padding, ``TilingDescriptor.padding_segments``)
  [memtile_buffer_descriptors, memtile_bd_pools, bds_per_buffer].
- ``stream-switch ports``: streams crossing each vertical switch-to-switch link per direction, routed
  dimension-ordered (vertically in the column of the compute-tile end, horizontally in the lower row, or the
  nearest row on the way with east-west links: memory-tile rows have none [memtile_stream_east_west]); a broadcast
  counts once per link. A stream may step ``DETOUR_COLUMNS`` columns aside to pass a row boundary, so the demand
  of every column range is checked against the ports of the range widened by that much; horizontal traffic
  per column boundary against the ports of the rows with east-west links (the router may cross in any). This is a
  capacity model, not a router: it rejects designs no router could route, and may accept a few that a real
  router finds congested [stream_switch_ports].
- ``PLIO ports``: 64-bit PL interface channels per interface column and direction [shim_pl_ports].
- ``cascade direction``: each cascade hop goes to the east or south neighbour [cascade_directions].
- ``program memory``: the kernel family's estimate per tile (``OpFamily.program_memory``) [program_memory_bytes].
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError
from nn2aie.ir.physical import Kernel, PhysicalPlan
from nn2aie.kernels.registry import family_named

RULES = ("tile data memory", "neighbour memory", "tile DMA channels", "tile buffer descriptors",
         "memory-tile capacity", "memory-tile DMA channels", "memory-tile buffer descriptors",
         "stream-switch ports", "PLIO ports", "cascade direction", "program memory")

_HINTS = {
    "tile data memory": "use more tiles for this layer (cas_length / cas_num) or a smaller batch",
    "neighbour memory": "this is a bug in nn2aie's memory plan; please report the model",
    "tile DMA channels": "avoid feeding one tile from more than two memory-tile buffers (change cas_length / "
                         "cas_num of the layers around it)",
    "tile buffer descriptors": "reduce the number of buffers this tile moves by DMA",
    "memory-tile capacity": "use a smaller batch, or let the tensor be split over more memory tiles",
    "memory-tile DMA channels": "choose cas_num / cas_length so a memory tile serves at most 6 slices each way",
    "memory-tile buffer descriptors": "reduce the slices one memory tile serves",
    "stream-switch ports": "spread the layers over more columns (shorter cas_num) or place fewer streams in one "
                           "column",
    "PLIO ports": "use fewer or narrower PLIOs per interface column",
    "cascade direction": "this is a bug in nn2aie's placement; please report the model",
    "program memory": "use fewer accumulators per tile (register blocking) or a simpler epilogue",
}

DETOUR_COLUMNS = 1  # a vertical stream may pass a row boundary this many columns beside its own (router; M)
_DIRECTIONS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}


@dataclass(frozen=True)
class Usage:
    rule: str
    where: str
    used: int
    capacity: int
    unit: str = ""

    @property
    def over(self) -> int:
        return self.used - self.capacity


def global_row(device: Device, kind: str, row: int) -> int:
    """Rows of the whole array: 0 = interface (shim), then memory-tile rows, then compute rows."""
    return {"shim": 0, "memtile": 1 + row, "compute": 1 + device.memtile_rows + row}[kind]


def route(src: tuple[int, int], dst: tuple[int, int], flat: frozenset[int] = frozenset()
          ) -> list[tuple[int, int, str]]:
    """Links (col, row, direction leaving that switch) of a dimension-ordered route: horizontal in the lower row,
    or in the nearest row on the way that has east-west links when the lower row is in ``flat`` (the memory-tile
    rows: their switches have none). The number of hops does not depend on ``flat``."""
    (c0, r0), (c1, r1) = src, dst
    lo, hi = min(r0, r1), max(r0, r1)
    across = next((r for r in range(lo, hi + 1) if r not in flat), lo)  # the row where the column changes
    links: list[tuple[int, int, str]] = []
    r = r0
    while r != across:  # vertically to that row
        links.append((c0, r, "north" if across > r else "south"))
        r += 1 if across > r else -1
    c = c0
    while c != c1:
        d = "east" if c1 > c else "west"
        links.append((c, across, d))
        c += 1 if c1 > c else -1
    while r != r1:  # then on to the destination row in its column
        links.append((c1, r, "north" if r1 > r else "south"))
        r += 1 if r1 > r else -1
    return links


def resource_usage(plan: PhysicalPlan, device: Device) -> list[Usage]:
    """Every resource use of the plan with its capacity, in rule order."""
    uses: list[Usage] = []
    kernels = {k.name: k for k in plan.kernels}
    layers = {e.op: e for e in plan.layers}

    def tile(k: Kernel) -> str:
        return f"tile ({k.col},{k.row}) (kernel {k.name})"

    # -- compute-tile data memory, by bank and in total ----------------------------------------------------------
    bank = device.bank_bytes
    for k in plan.kernels:
        per_bank: dict[int, int] = defaultdict(int)
        for b in k.memory:
            start, end = b.offset, b.offset + b.size
            for i in range(start // bank, (max(end, start + 1) - 1) // bank + 1):
                per_bank[i] += min(end, (i + 1) * bank) - max(start, i * bank)
        # bytes held (buffers are spread over the banks, so the highest address is not the use); an address past
        # the module shows up as a bank the module does not have
        total = sum(b.size for b in k.memory)
        uses.append(Usage("tile data memory", tile(k), total, device.data_memory_bytes, "B"))
        banks = int(device.fact("data_memory_banks"))
        for i, used in sorted(per_bank.items()):
            where = f"{tile(k)} bank {i}" if i < banks else f"{tile(k)} bank {i} (the module has {banks})"
            uses.append(Usage("tile data memory", where, used, bank if i < banks else 0, "B"))
    reach = {(0, 0) if d == "own" else _DIRECTIONS[d] for d in device.fact("neighbour_memory")}  # module - core
    for link in plan.direct_links:
        if link.in_place:
            src, dst = kernels[link.src], kernels[link.dst]
            ok = (src.col - dst.col, src.row - dst.row) in reach
            uses.append(Usage("neighbour memory", f"{tile(dst)} reading the output buffer of {link.src} in place",
                              0 if ok else 1, 0, "module out of reach"))

    # -- compute-tile DMA ----------------------------------------------------------------------------------------
    s2mm: dict[str, int] = defaultdict(int)
    mm2s: dict[str, int] = defaultdict(int)
    for sb in plan.shared_buffers:
        for acc in sb.writers:
            for ep in acc.endpoints:
                if ep.kind == "kernel":
                    mm2s[ep.name] += 1
        for acc in sb.readers:
            for ep in acc.endpoints:
                if ep.kind == "kernel":
                    s2mm[ep.name] += 1
    for link in plan.direct_links:
        if not link.in_place:
            mm2s[link.src] += 1
            s2mm[link.dst] += 1
    channels = device.fact("tile_dma_channels")
    per_buffer = int(device.fact("bds_per_buffer")["double"])
    for k in plan.kernels:
        uses.append(Usage("tile DMA channels", f"{tile(k)} S2MM (in)", s2mm[k.name], int(channels["s2mm"])))
        uses.append(Usage("tile DMA channels", f"{tile(k)} MM2S (out)", mm2s[k.name], int(channels["mm2s"])))
        uses.append(Usage("tile buffer descriptors", tile(k), per_buffer * (s2mm[k.name] + mm2s[k.name]),
                          int(device.fact("tile_buffer_descriptors"))))

    # -- memory tiles --------------------------------------------------------------------------------------------
    by_memtile: dict[tuple[int, int], list] = defaultdict(list)
    for sb in plan.shared_buffers:
        by_memtile[(sb.col, sb.row)].append(sb)
    mt_channels = device.fact("memtile_dma_channels")
    pools = int(device.fact("memtile_bd_pools"))
    pool_size = int(device.fact("memtile_buffer_descriptors")) // pools
    for (c, r), bufs in sorted(by_memtile.items()):
        where = f"memory tile ({c},{r}) ({', '.join(sb.name for sb in bufs)})"
        uses.append(Usage("memory-tile capacity", where, sum(sb.bytes for sb in bufs), device.memtile_bytes, "B"))
        writers = [(a, sb) for sb in bufs for a in sb.writers]
        readers = [(a, sb) for sb in bufs for a in sb.readers]
        uses.append(Usage("memory-tile DMA channels", f"{where} S2MM (in)", len(writers), int(mt_channels["s2mm"])))
        uses.append(Usage("memory-tile DMA channels", f"{where} MM2S (out)", len(readers), int(mt_channels["mm2s"])))
        bds = [0] * pools

        def chain(sb) -> int:  # one BD per buffer of the rotation: a deeper buffer (skip connection) takes more
            return per_buffer * sb.num_buffers // 2

        for i, (_, sb) in enumerate(writers):
            bds[i % pools] += chain(sb)
        for i, (acc, sb) in enumerate(readers):
            bds[i % pools] += chain(sb) * acc.tiling.padding_segments()
        for p, used in enumerate(bds):
            uses.append(Usage("memory-tile buffer descriptors", f"{where} BD pool {p}", used, pool_size))

    # -- streams through the switches ----------------------------------------------------------------------------
    plios = {p.name: p for p in plan.plios}

    def position(ep) -> tuple[int, int]:
        if ep.kind == "kernel":
            k = kernels[ep.name]
            return k.col, global_row(device, "compute", k.row)
        return plios[ep.name].col, global_row(device, "shim", 0)

    flat = frozenset() if device.fact("memtile_stream_east_west") else frozenset(
        global_row(device, "memtile", r) for r in range(device.memtile_rows))
    link_use: dict[tuple[int, int, str], int] = defaultdict(int)
    for sb in plan.shared_buffers:
        here = (sb.col, global_row(device, "memtile", sb.row))
        for acc in sb.writers:
            for ep in acc.endpoints:
                for lk in route(position(ep), here, flat):
                    link_use[lk] += 1
        for acc in sb.readers:  # one stream broadcast to every endpoint: each link counted once
            for lk in sorted({lk for ep in acc.endpoints for lk in route(here, position(ep), flat)}):
                link_use[lk] += 1
    for link in plan.direct_links:
        if not link.in_place:
            s, d = kernels[link.src], kernels[link.dst]
            for lk in route((s.col, global_row(device, "compute", s.row)),
                             (d.col, global_row(device, "compute", d.row)), flat):
                link_use[lk] += 1
    ports = device.fact("stream_switch_ports")
    rows = 1 + device.memtile_rows + device.compute_rows
    cuts: dict[tuple[int, str], int] = defaultdict(int)
    vertical: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)
    for (c, r, d), used in sorted(link_use.items()):
        if d in ("north", "south"):
            vertical[(r, d)][c] = used
        else:
            cuts[(c, d)] += used
    for (r, d), demand in sorted(vertical.items()):
        # A stream may pass a row boundary in its own column or a neighbouring one. Such an assignment exists iff
        # (Hall's condition on intervals) every column range [a, b] carries at most the ports of [a-1, b+1].
        cols = sorted(demand)
        for i, a in enumerate(cols):
            used = 0
            for b in cols[i:]:
                used += demand[b]
                lo, hi = max(a - DETOUR_COLUMNS, 0), min(b + DETOUR_COLUMNS, device.columns - 1)
                uses.append(Usage("stream-switch ports", f"columns {a}-{b} (passing in {lo}-{hi}), array row {r} "
                                  f"(0 = interface), {d}bound", used, int(ports[d]) * (hi - lo + 1), "streams"))
    crossing = rows - len(flat)  # the router may cross a column boundary in any row that has east-west links
    for (c, d), used in sorted(cuts.items()):
        nxt = c + 1 if d == "east" else c - 1
        uses.append(Usage("stream-switch ports", f"{d}bound between columns {c} and {nxt} (the {crossing} rows "
                          "with east-west links)", used, int(ports[d]) * crossing, "streams"))

    # -- PLIO ports per interface column -------------------------------------------------------------------------
    pl = device.fact("shim_pl_ports")
    per_col: dict[tuple[int, str], int] = defaultdict(int)
    for p in plan.plios:
        per_col[(p.col, p.direction)] += -(-p.bits // int(pl["bits"]))
    pl_cols = set(device.pl_columns())
    for (c, d), used in sorted(per_col.items()):
        # a column without a PL interface has no PLIO channels at all
        uses.append(Usage("PLIO ports", f"interface column {c} ({'PL->AIE' if d == 'in' else 'AIE->PL'})", used,
                          int(pl[d]) if c in pl_cols else 0, f"x {pl['bits']}-bit channels"))

    # -- cascades and program memory -----------------------------------------------------------------------------
    allowed = {_DIRECTIONS[d] for d in device.fact("cascade_directions")}
    for k in plan.kernels:
        if k.cascade_from is not None:
            prev = kernels[k.cascade_from]
            ok = (k.col - prev.col, k.row - prev.row) in allowed
            uses.append(Usage("cascade direction", f"cascade {prev.name} -> {k.name}", 0 if ok else 1, 0,
                              "hop not east/south"))
        e = layers[k.layer]
        uses.append(Usage("program memory", tile(k), family_named(e.family).program_memory(e, k, device),
                          int(device.fact("program_memory_bytes")), "B (estimate)"))
    return uses


def check_legality(plan: PhysicalPlan, device: Device) -> list[Usage]:
    """Raise DoesNotFitError for the first violated resource (in RULES order); return all uses."""
    uses = resource_usage(plan, device)
    for rule in RULES:
        for u in uses:
            if u.rule == rule and u.used > u.capacity:
                if u.capacity == 0 and u.unit in ("module out of reach", "hop not east/south"):
                    reason = f"{u.unit}"
                else:
                    reason = f"uses {u.used} of {u.capacity} {u.unit} (over by {u.over})".replace("  ", " ")
                raise DoesNotFitError(f"{rule} at {u.where}", reason, _HINTS[rule])
    return uses


def peak_usage(uses: list[Usage]) -> dict[str, dict]:
    """The highest use of each rule (for the project summary)."""
    out: dict[str, dict] = {}
    for u in uses:
        if u.capacity <= 0:
            continue
        best = out.get(u.rule)
        if best is None or u.used / u.capacity > best["used"] / best["capacity"]:
            out[u.rule] = {"used": u.used, "capacity": u.capacity, "where": u.where}
    return dict(sorted(out.items()))
