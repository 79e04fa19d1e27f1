"""Performance model of a placed design: a timed simulation of the physical plan over many graph iterations.

Every activity of one iteration is a stage with a duration, read from the plan (the same objects codegen and the
emulator use):

- PLIO input / output: the PLIO's bytes at ``plio_bits`` x PL clock, converted to AIE cycles (never faster than
  one 32-bit stream, 4 B/cycle);
- memory-tile writes and reads: one DMA channel per access, 4 B per AIE cycle (AM020), the descriptor's element
  count; a read broadcast to several chains is one stream;
- compute tiles: the family's ``tile_cycles`` (e.g. kernels/dense/cost.py, calibrated, call included);
- direct hand-offs: in place (a neighbour reads the producer's buffer) only the lock hand-over; between tiles that
  are not neighbours one tile-DMA transfer (4 B per cycle) from the producer's buffer to the consumer's.

The hand-overs the data path makes add the overheads of ``Overheads`` (catalog facts of the generation, fitted on
the public aiesimulator latencies of benchmarks/data/aiesim_aie4ml_models.csv by benchmarks/aiesim_compare.py):
every DMA transfer (memory-tile write or read, tile-to-tile DMA, PLIO) starts ``dma_start_cycles`` after its data
is ready (lock acquire, buffer-descriptor start, stream set-up); every kernel invocation adds
``kernel_start_cycles`` to the family's own cycles (lock acquire / release of its buffers, the core's wake-up);
data crosses the array interface (PL <-> shim) in ``plio_crossing_cycles`` each way.

A stage starts when the data it needs for this iteration is complete (all writers of a memory-tile buffer; the
slice a tile reads; the producer of a direct hand-off), when it has finished its previous iteration, and when the
buffer it writes into has a free slot (its consumers have finished iteration i - n: tile buffers hold n = 2, a
memory-tile buffer holds its planned ``num_buffers``, more than 2 on a skip connection).
Tiles of one cascade chain run in lock-step: a tile starts no earlier than its west
neighbour and finishes no earlier than the neighbour's partial sums arrive. Streams add
``stream_hop_cycles`` per switch on their route (the legality model's routes) to latency, not to occupancy.

The steady-state initiation interval (II), the first iteration's latency (first input word to the last output word;
and to the first output word, the metric aiesimulator's ``io_stream_start_difference_cycles`` reports), events/s, TOPS,
per-tile utilisation and the bottleneck stage follow. Every result carries its assumptions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from nn2aie.devices import Device, get_device
from nn2aie.ir.physical import PhysicalPlan, dtype_bytes
from nn2aie.kernels.registry import family_named
from nn2aie.passes.legality import global_row, route

DMA_BYTES_PER_CYCLE = 4  # one 32-bit stream / DMA channel per AIE cycle (AM020)
CASCADE_HOP_CYCLES = 4  # partial sums reach the east neighbour (2-deep cascade FIFO; M)


@dataclass(frozen=True)
class Overheads:
    """Per hand-over costs in AIE cycles (the generation's catalog facts; see the module docstring)."""

    dma_start_cycles: float
    kernel_start_cycles: float
    plio_crossing_cycles: float

    @classmethod
    def of(cls, device: Device) -> Overheads:
        return cls(float(device.fact("dma_start_cycles")), float(device.fact("kernel_start_cycles")),
                   float(device.fact("plio_crossing_cycles")))


@dataclass
class Stage:
    name: str
    kind: str  # plio-in | plio-out | memtile-write | memtile-read | kernel
    duration: float  # cycles the resource is busy per iteration
    latency: float = 0.0  # extra cycles until the data arrives (stream hops)
    preds: list[str] = field(default_factory=list)  # data this iteration needs
    cascade_from: str | None = None  # lock-step with the west neighbour of a cascade chain
    buffers: int = 2  # buffers of what the stage writes into (tile buffers: ping-pong; memory tiles: the plan's)


@dataclass
class Performance:
    interval_cycles: float
    latency_cycles: float
    events_per_s: float
    latency_us: float
    tops: float
    bottleneck: str
    bottleneck_kind: str
    utilisation: dict[str, float]  # kernel -> busy fraction of the interval
    assumptions: dict
    layers: dict[str, dict] = field(default_factory=dict)  # layer -> its tiles' cycles, utilisation, MAC use
    first_output_cycles: float = 0.0  # first input word -> first output word (aiesimulator's latency metric)

    def to_json(self) -> dict:
        util = sorted(self.utilisation.values())
        return {
            "interval_cycles": round(self.interval_cycles, 1), "latency_cycles": round(self.latency_cycles, 1),
            "first_output_cycles": round(self.first_output_cycles, 1),
            "events_per_s": round(self.events_per_s), "latency_us": round(self.latency_us, 4),
            "tops": round(self.tops, 3), "bottleneck": self.bottleneck, "bottleneck_kind": self.bottleneck_kind,
            "tile_utilisation": {"min": round(util[0], 4), "max": round(util[-1], 4),
                                 "mean": round(sum(util) / len(util), 4)} if util else {},
            "layers": self.layers, "assumptions": self.assumptions,
        }


def _stages(plan: PhysicalPlan, device: Device, plio_bytes_per_cycle: dict[str, float], over: Overheads,
            ) -> dict[str, Stage]:
    layers = {e.op: e for e in plan.layers}
    kernels = {k.name: k for k in plan.kernels}
    hop = float(device.fact("stream_hop_cycles"))
    stages: dict[str, Stage] = {}

    def where_kernel(k) -> tuple[int, int]:
        return k.col, global_row(device, "compute", k.row)

    def where(ep) -> tuple[int, int]:
        if ep.kind == "kernel":
            return where_kernel(kernels[ep.name])
        p = next(p for p in plan.plios if p.name == ep.name)
        return p.col, 0

    def node(ep) -> str:
        return f"kernel:{ep.name}" if ep.kind == "kernel" else f"plio:{ep.name}"

    feeds: dict[str, list[str]] = defaultdict(list)  # kernel -> the stages that fill its input ports
    for sb in plan.shared_buffers:
        elem = dtype_bytes(sb.dtype)
        here = (sb.col, global_row(device, "memtile", sb.row))
        writers = []
        for i, acc in enumerate(sb.writers):
            nbytes = acc.tiling.elements * elem
            for ep in acc.endpoints:
                if ep.kind == "plio":
                    rate = plio_bytes_per_cycle[ep.name]
                    name = f"plio-in:{ep.name}"
                    stages[name] = Stage(name, "plio-in", over.dma_start_cycles + nbytes / rate,
                                         over.plio_crossing_cycles + hop * len(route(where(ep), here)))
                else:
                    name = f"write:{sb.name}:{i}"
                    stages[name] = Stage(name, "memtile-write", over.dma_start_cycles + nbytes / DMA_BYTES_PER_CYCLE,
                                         hop * len(route(where(ep), here)), [node(ep)])
                writers.append(name)
        for i, acc in enumerate(sb.readers):
            nbytes = acc.tiling.elements * elem
            plios = [ep for ep in acc.endpoints if ep.kind == "plio"]
            rate = min([DMA_BYTES_PER_CYCLE] + [plio_bytes_per_cycle[p.name] for p in plios])
            kind = "plio-out" if plios else "memtile-read"
            name = f"plio-out:{plios[0].name}" if plios else f"read:{sb.name}:{i}"
            hops = max((len(route(here, where(ep))) for ep in acc.endpoints), default=0)
            crossing = over.plio_crossing_cycles if plios else 0.0
            stages[name] = Stage(name, kind, over.dma_start_cycles + nbytes / rate, crossing + hop * hops,
                                 list(writers))
            for ep in acc.endpoints:
                if ep.kind == "kernel":
                    feeds[ep.name].append(name)
    for link in plan.direct_links:
        if link.in_place:  # the consumer reads the producer's buffer: the lock hand-over only
            feeds[link.dst].append(f"kernel:{link.src}")
            continue
        src, dst = kernels[link.src], kernels[link.dst]
        port = next(p for p in src.ports if p.direction == "out" and (p.name == link.src_port or not link.src_port))
        name = f"dma:{link.src}->{link.dst}"
        stages[name] = Stage(name, "tile-dma", over.dma_start_cycles + port.rows * port.width
                             * dtype_bytes(port.dtype) / DMA_BYTES_PER_CYCLE,
                             hop * len(route(where_kernel(src), where_kernel(dst))), [f"kernel:{link.src}"])
        feeds[link.dst].append(name)
    for k in plan.kernels:
        e = layers[k.layer]
        name = f"kernel:{k.name}"
        preds = list(dict.fromkeys(feeds.get(k.name, [])))  # one predecessor per input port
        west = f"kernel:{k.cascade_from}" if k.cascade_from is not None else None
        stages[name] = Stage(name, "kernel", family_named(e.family).tile_cycles(e, k) + over.kernel_start_cycles, 0.0,
                             preds, west)
    for s in stages.values():  # plio nodes of writers resolve to their stage names
        s.preds = [p.replace("plio:", "plio-in:") for p in s.preds]
    for sb in plan.shared_buffers:  # a stage writing into a memory-tile buffer may run num_buffers - 1 ahead
        for i, acc in enumerate(sb.writers):
            for ep in acc.endpoints:
                stages[f"plio-in:{ep.name}" if ep.kind == "plio" else f"write:{sb.name}:{i}"].buffers = sb.num_buffers
    return stages


def _order(stages: dict[str, Stage]) -> list[str]:
    deps = {n: set(s.preds) | ({s.cascade_from} if s.cascade_from else set()) for n, s in stages.items()}
    order, done = [], set()
    while len(order) < len(stages):
        ready = sorted(n for n, d in deps.items() if n not in done and d <= done)
        if not ready:
            raise ValueError("the plan's data flow has a cycle")
        order += ready
        done.update(ready)
    return order


def model_performance(plan: PhysicalPlan, iterations: int = 24, aie_clock_mhz: float | None = None,
                      overheads: Overheads | None = None) -> Performance:
    """Timed simulation of ``iterations`` graph iterations of the placed design (``overheads``: the catalog's
    unless given, e.g. by the calibration fit)."""
    device = get_device(plan.device)
    f_aie = float(aie_clock_mhz or device.aie_clock_mhz)
    over = overheads or Overheads.of(device)
    plio_rate = {p.name: device.plio_bytes_per_cycle(p.bits, p.freq_mhz, f_aie) for p in plan.plios}
    stages = _stages(plan, device, plio_rate, over)
    order = _order(stages)
    consumers: dict[str, list[str]] = defaultdict(list)
    for n, s in stages.items():
        for p in s.preds:
            consumers[p].append(n)
    start: dict[str, list[float]] = {n: [] for n in stages}
    busy: dict[str, list[float]] = {n: [] for n in stages}  # resource free again
    done: dict[str, list[float]] = {n: [] for n in stages}  # data available downstream
    for i in range(iterations):
        for n in order:
            s = stages[n]
            t = busy[n][i - 1] if i else 0.0
            t = max([t] + [done[p][i] for p in s.preds])
            if i >= s.buffers:  # the buffers this stage writes: its consumers released iteration i - buffers
                t = max([t] + [busy[c][i - s.buffers] for c in consumers[n]])
            if s.cascade_from:
                t = max(t, start[s.cascade_from][i])
            end = t + s.duration
            arrive = end + s.latency
            if s.cascade_from:
                arrive = max(arrive, done[s.cascade_from][i] + CASCADE_HOP_CYCLES)
                end = max(end, arrive)
            start[n].append(t)
            busy[n].append(end)
            done[n].append(arrive)
    outs = [n for n, s in stages.items() if s.kind == "plio-out"]
    ins = [n for n, s in stages.items() if s.kind == "plio-in"]
    last = [max(done[n][i] for n in outs) for i in range(iterations)]
    half = iterations // 2
    interval = (last[-1] - last[half]) / (iterations - 1 - half)
    first_in = min(start[n][0] for n in ins)
    latency = last[0] - first_in
    # the first output word leaves its memory tile once that read has started, then crosses the stream and the PL
    first_out = min(start[n][0] + over.dma_start_cycles + stages[n].latency for n in outs) - first_in
    batch = plan.batch
    events_per_s = batch * f_aie * 1e6 / interval
    macs = sum(family_named(e.family).useful_ops(e) for e in plan.layers) // batch
    bottleneck = max(stages.values(), key=lambda s: (s.duration, s.name))
    util = {n.removeprefix("kernel:"): s.duration / interval for n, s in stages.items() if s.kind == "kernel"}
    assumptions = {
        "aie_clock_mhz": f_aie, "pl_clock_mhz": sorted({p.freq_mhz for p in plan.plios}),
        "plio_bits": sorted({p.bits for p in plan.plios}), "batch": batch, "iterations_simulated": iterations,
        "dma_bytes_per_cycle": DMA_BYTES_PER_CYCLE, "stream_hop_cycles": float(device.fact("stream_hop_cycles")),
        "overheads": {"dma_start_cycles": over.dma_start_cycles, "kernel_start_cycles": over.kernel_start_cycles,
                      "plio_crossing_cycles": over.plio_crossing_cycles,
                      "source": device.fact_source("dma_start_cycles")},
        "kernel_cost_model": "; ".join(dict.fromkeys(
            text for e in plan.layers if (text := family_named(e.family).cost_assumptions()))),
        "buffers": ("every buffer double-buffered" if all(sb.num_buffers == 2 for sb in plan.shared_buffers) else
                    "tile buffers double-buffered, memory-tile buffers as planned (num_buffers: "
                    f"{sorted({sb.num_buffers for sb in plan.shared_buffers})})") + "; PL side never stalls the PLIOs",
    }
    return Performance(interval, latency, events_per_s, latency / f_aie, 2 * macs * events_per_s / 1e12,
                       bottleneck.name, bottleneck.kind, util, assumptions, _per_layer(plan, stages, interval),
                       first_out)


def _per_layer(plan: PhysicalPlan, stages: dict[str, Stage], interval: float) -> dict[str, dict]:
    """Per layer: the slowest tile's modelled cycles per invocation, its tiles' busy fraction of the interval, and
    MAC use = the layer's useful MACs per interval / (its tiles x the native MACs per cycle)."""
    out = {}
    for e in plan.layers:
        cycles = [stages[f"kernel:{k.name}"].duration for k in plan.kernels if k.layer == e.op]
        if not cycles:
            continue
        fam = family_named(e.family)
        peak = fam.peak_ops_per_cycle(e)
        out[e.op] = {"tiles": len(cycles), "kernel_cycles_max": round(max(cycles), 1),
                     "utilisation_max": round(max(cycles) / interval, 4),
                     "utilisation_mean": round(sum(cycles) / len(cycles) / interval, 4),
                     "mac_use": round(fam.useful_ops(e) / (len(cycles) * peak * interval), 4) if peak else None}
    return out
