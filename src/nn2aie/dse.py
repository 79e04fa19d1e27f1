"""Design-space exploration: choose batch, per-layer parallelism and mmul shape to meet throughput / latency targets.

For each batch (events per graph iteration) the search starts from the fewest-tiles design and repeatedly gives
more tiles to the layer whose tiles bound the interval in the performance model (``perf/model.py``): twice the
chains (``cas_num``) when its columns allow, else twice the cascade length. Every design it visits is compiled
by the normal passes (placement, memory plan, legality) and modelled, so each point is a real, legal design.
For every rectangle the parallelism pass picks the layer's aie::mmul shape and register blocking with the fewest
modelled cycles among the shapes the device offers (``kernels/dense/parallelism._finish``;
a shape the user gives is kept).
The search stops when the bottleneck is no longer a kernel (PLIO / DMA bound), the tile budget is spent, the
layer cannot be split further, or the bottleneck layer's rectangle was fixed by the user (``base.overrides``).

``choose`` returns the design with the fewest tiles that meets every target, or the point that comes closest and
the reason (the limiting stage); ``pareto`` keeps the designs no other design beats in tiles, latency and
throughput at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nn2aie.devices import get_device
from nn2aie.errors import DoesNotFitError, IllegalConfigError
from nn2aie.ir.logical import Graph
from nn2aie.kernels.registry import family_named
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.perf.model import Performance, model_performance

BATCHES = (4, 8, 16, 32)
MAX_STEPS = 24


@dataclass
class DesignPoint:
    batch: int
    overrides: dict[str, dict]
    tiles: int
    perf: Performance
    rectangles: list[str] = field(default_factory=list)
    mmul: list[str] = field(default_factory=list)  # per layer "op:MxKxN"

    @property
    def events_per_s(self) -> float:
        return self.perf.events_per_s

    @property
    def latency_us(self) -> float:
        return self.perf.latency_us

    def to_json(self) -> dict:
        return {"batch": self.batch, "tiles": self.tiles, "rectangles": self.rectangles, "mmul": self.mmul,
                "overrides": self.overrides, "events_per_s": round(self.events_per_s),
                "latency_us": round(self.latency_us, 4), "interval_cycles": round(self.perf.interval_cycles, 1),
                "tops": round(self.perf.tops, 3), "bottleneck": self.perf.bottleneck}


def explore(graph: Graph, base: CompileOptions | None = None, max_tiles: int | None = None,
            batches: tuple[int, ...] = BATCHES, progress: Callable[[str], None] | None = None) -> list[DesignPoint]:
    """Every design the search visits (see the module docstring), in visiting order."""
    base = base or CompileOptions()
    points: list[DesignPoint] = []
    for batch in batches:
        overrides = {k: dict(v) for k, v in base.overrides.items()}
        for _ in range(MAX_STEPS):
            options = CompileOptions(device=base.device, batch=batch, plio_bits=base.plio_bits,
                                     pl_freq_mhz=base.pl_freq_mhz, max_weight_bytes=base.max_weight_bytes,
                                     overrides={k: dict(v) for k, v in overrides.items()})
            try:
                plan, _ = compile_graph(graph, options)
            except (DoesNotFitError, IllegalConfigError):
                break
            tiles = len(plan.kernels)
            if max_tiles is not None and tiles > max_tiles:
                break
            perf = model_performance(plan)
            points.append(DesignPoint(batch, options.overrides, tiles, perf,
                                      [f"{e.op}:{e.cas_length}x{e.cas_num}" for e in plan.layers],
                                      [f"{e.op}:{'x'.join(map(str, e.mmul))}" for e in plan.layers]))
            if progress:
                progress(f"batch {batch}: {tiles} tiles, {perf.events_per_s:,.0f} events/s, "
                         f"{perf.latency_us:.3f} us, bound by {perf.bottleneck}")
            if not perf.bottleneck.startswith("kernel:"):
                break
            layer_op = next(k.layer for k in plan.kernels if f"kernel:{k.name}" == perf.bottleneck)
            if {"cas_length", "cas_num"} & set(base.overrides.get(layer_op, {})):  # the user fixed this rectangle
                break
            device = get_device(plan.device)
            layer = plan.layer(layer_op)
            grown = family_named(layer.family).grow(layer, device)
            if grown is None:
                break
            overrides[layer_op] = {**overrides.get(layer_op, {}), **grown}  # keeps a user's mmul
    return points


def pareto(points: list[DesignPoint]) -> list[DesignPoint]:
    def beats(a: DesignPoint, b: DesignPoint) -> bool:
        no_worse = a.tiles <= b.tiles and a.latency_us <= b.latency_us and a.events_per_s >= b.events_per_s
        better = a.tiles < b.tiles or a.latency_us < b.latency_us or a.events_per_s > b.events_per_s
        return no_worse and better

    front = [p for p in points if not any(beats(q, p) for q in points)]
    return sorted(front, key=lambda p: (p.tiles, p.latency_us, -p.events_per_s))


def choose(points: list[DesignPoint], events_per_s: float | None = None,
           latency_us: float | None = None) -> tuple[DesignPoint, str]:
    """(design, explanation): the fewest tiles meeting every target, else the closest point and why."""
    if not points:
        raise DoesNotFitError("design space", "no design of this model compiles within the limits",
                          "raise --max-tiles or use a larger device")

    def meets(p: DesignPoint) -> bool:
        return (events_per_s is None or p.events_per_s >= events_per_s) and \
            (latency_us is None or p.latency_us <= latency_us)

    ok = [p for p in points if meets(p)]
    if ok:
        best = min(ok, key=lambda p: (p.tiles, p.latency_us, -p.events_per_s, p.batch))
        return best, f"meets the targets with {best.tiles} tiles (batch {best.batch})"

    def shortfall(p: DesignPoint) -> float:
        s = 0.0
        if events_per_s is not None:
            s += max(0.0, events_per_s / p.events_per_s - 1.0)
        if latency_us is not None:
            s += max(0.0, p.latency_us / latency_us - 1.0)
        return s

    best = min(points, key=lambda p: (shortfall(p), p.tiles))
    why = (f"no explored design meets the targets; closest: {best.events_per_s:,.0f} events/s at "
           f"{best.latency_us:.3f} us with {best.tiles} tiles (batch {best.batch}), limited by {best.perf.bottleneck} "
           f"({best.perf.bottleneck_kind})")
    return best, why
