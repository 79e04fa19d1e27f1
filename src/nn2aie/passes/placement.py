"""Deterministic, legal, compact placement of layer rectangles on the compute array.

Each layer is a rectangle ``cas_length`` columns wide (its cascade runs west -> east along a row, the horizontal
cascade direction of AIE-ML, AM020) and ``cas_num`` rows high (one chain per row). Every kernel keeps all its
buffers in its own memory module (the memory plan pins them by address), so rectangles need no free margin
column; ``check_placement`` verifies the invariants.

Placement is an exact optimisation with OR-Tools CP-SAT: one interval pair per rectangle, ``AddNoOverlap2D``, and
a wire-length objective (``wire_length``): data between layers goes down to a memory tile and up again, so an
edge costs the horizontal distance from the producer's east end (its outputs) to the consumer's west end (its
first cascade position) plus both rectangles' heights above the memory-tile row; the graph input and output cost
their layer's height above the interface. Each term is weighted (``Weights``): the compile pipeline gives every
edge, input and output the bytes its tensor moves per graph iteration, in 32-byte words, so heavy edges are kept
short first (unit weights when none are given). The search is deterministic: one worker, a fixed seed and a limit in
CP-SAT's *deterministic* time units (not seconds), so the same model gives the same placement on any machine.
A greedy shelf packing (graph order, each layer right after its producer, new shelf above when a row is full) is
the solver's hint and the fallback when CP-SAT is not installed or finds nothing within the limit. The report
(``PlacementReport``) states the method, objective, best lower bound and gap.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from nn2aie import progress
from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, InternalCheckError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.physical import Kernel

DETERMINISTIC_LIMIT = 4.0  # CP-SAT deterministic time units (about seconds on a fast core; machine independent)


@dataclass
class PlacementReport:
    method: str  # "cp-sat" | "shelf"
    status: str  # CP-SAT status name, or why the heuristic was used
    wire_length: int  # objective of the final placement (wire_length)
    lower_bound: int  # best proven lower bound (== wire_length when optimal)
    heuristic_wire_length: int  # the shelf packing's objective, for comparison
    seconds: float

    @property
    def gap(self) -> float:
        return 0.0 if self.wire_length == 0 else (self.wire_length - self.lower_bound) / self.wire_length

    def to_json(self) -> dict:
        """Without the run time, so that projects stay byte-identical."""
        return {k: v for k, v in asdict(self).items() if k != "seconds"} | {"gap": round(self.gap, 6)}


def chain_edges(layers: list[DenseExec]) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(len(layers) - 1)]


@dataclass(frozen=True)
class Weights:
    """What one tile hop of each edge costs: the bytes it moves per graph iteration, in 32-byte words (one
    256-bit stream beat), so a wide tensor pulls its producer and consumer closer than a narrow one."""

    edges: tuple[int, ...]
    sources: dict[int, int]  # layer index -> words it reads from the graph input
    sinks: dict[int, int]  # layer index -> words it writes to the graph output


def _unit(edges: list[tuple[int, int]], sources: list[int], sinks: list[int]) -> Weights:
    return Weights(tuple(1 for _ in edges), {i: 1 for i in sources}, {i: 1 for i in sinks})


def wire_length(layers: list[DenseExec], origins: list[tuple[int, int]], edges: list[tuple[int, int]],
                sources: list[int], sinks: list[int], weights: Weights | None = None) -> int:
    """The placement objective (see the module docstring): tile hops, each weighted by ``weights`` (default 1)."""
    w = weights or _unit(edges, sources, sinks)
    total = 0
    for k, (p, c) in enumerate(edges):
        (xp, yp), (xc, yc) = origins[p], origins[c]
        total += w.edges[k] * (abs(xp + layers[p].cas_length - 1 - xc) + yp + yc)
    total += sum(w.sources[i] * origins[i][1] for i in sources) + sum(w.sinks[i] * origins[i][1] for i in sinks)
    return total


def _endpoints(n: int, edges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Layers fed by the graph input (no producer) and feeding the graph output (no consumer)."""
    has_in, has_out = {c for _, c in edges}, {p for p, _ in edges}
    return [i for i in range(n) if i not in has_in], [i for i in range(n) if i not in has_out]


def _check_fits(layers: list[DenseExec], device: Device) -> None:
    for e in layers:
        if e.cas_length > device.columns or e.cas_num > device.compute_rows:
            raise DoesNotFitError(f"layer {e.op}", f"a {e.cas_length}x{e.cas_num} rectangle exceeds the "
                                  f"{device.columns}x{device.compute_rows} array of {device.name}",
                                  "reduce cas_length/cas_num")
    used = sum(e.tiles for e in layers)
    if used > device.columns * device.compute_rows:
        raise DoesNotFitError("design", f"needs {used} compute tiles, {device.name} has "
                              f"{device.columns * device.compute_rows}",
                              "use a larger device, fewer tiles per layer (a larger max weight bytes per tile), or a "
                              "smaller model")


def shelf_placement(layers: list[DenseExec], device: Device) -> list[tuple[int, int]] | None:
    """Greedy shelves in graph order; None when the rectangles do not pack this way."""
    origins, x, y, shelf_height = [], 0, 0, 0
    for e in layers:
        if x + e.cas_length > device.columns:
            x, y, shelf_height = 0, y + shelf_height, 0
        if y + e.cas_num > device.compute_rows:
            return None
        origins.append((x, y))
        x += e.cas_length
        shelf_height = max(shelf_height, e.cas_num)
    return origins


def _cp_sat(layers: list[DenseExec], device: Device, edges: list[tuple[int, int]], sources: list[int],
            sinks: list[int], hint: list[tuple[int, int]] | None, weights: Weights):
    """(origins, status, objective, bound) from CP-SAT, or None when OR-Tools is missing."""
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        return None
    m = cp_model.CpModel()
    cols, rows = device.columns, device.compute_rows
    xs, ys, xi, yi = [], [], [], []
    for i, e in enumerate(layers):
        x = m.NewIntVar(0, cols - e.cas_length, f"x{i}")
        y = m.NewIntVar(0, rows - e.cas_num, f"y{i}")
        xs.append(x)
        ys.append(y)
        xi.append(m.NewFixedSizeIntervalVar(x, e.cas_length, f"ix{i}"))
        yi.append(m.NewFixedSizeIntervalVar(y, e.cas_num, f"iy{i}"))
    m.AddNoOverlap2D(xi, yi)
    terms = []
    for k, (p, c) in enumerate(edges):
        d = m.NewIntVar(0, cols, f"d{k}")
        span = xs[p] + layers[p].cas_length - 1 - xs[c]
        m.Add(d >= span)
        m.Add(d >= -span)
        terms += [weights.edges[k] * d, weights.edges[k] * ys[p], weights.edges[k] * ys[c]]
    terms += [weights.sources[i] * ys[i] for i in sources] + [weights.sinks[i] * ys[i] for i in sinks]
    m.Minimize(sum(terms))
    if hint is not None:
        for i, (x0, y0) in enumerate(hint):
            m.AddHint(xs[i], x0)
            m.AddHint(ys[i], y0)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # one worker + fixed seed + deterministic time: reproducible everywhere
    solver.parameters.random_seed = 0
    solver.parameters.max_deterministic_time = DETERMINISTIC_LIMIT
    # display only; two rectangles are placed in an instant, not worth a line on screen
    with progress.task(f"placement: CP-SAT search over {len(layers)} layer rectangles", enabled=len(layers) > 2):
        status = solver.Solve(m)
    name = solver.StatusName(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return [], name, 0, 0
    origins = [(int(solver.Value(xs[i])), int(solver.Value(ys[i]))) for i in range(len(layers))]
    return origins, name, int(round(solver.ObjectiveValue())), int(round(solver.BestObjectiveBound()))


def place(layers: list[DenseExec], kernels: list[Kernel], device: Device,
          edges: list[tuple[int, int]] | None = None, weights: Weights | None = None) -> PlacementReport:
    """Assign (col, row) to every kernel. ``edges`` are (producer, consumer) layer indices (default: a chain);
    ``weights`` (default: every hop costs 1, graph input read by the layers without producers, output written by
    those without consumers) name the layers at the graph's ends too."""
    start = time.perf_counter()
    _check_fits(layers, device)
    edges = chain_edges(layers) if edges is None else edges
    if weights is None:
        sources, sinks = _endpoints(len(layers), edges)
        weights = _unit(edges, sources, sinks)
    else:
        sources, sinks = sorted(weights.sources), sorted(weights.sinks)
    shelf = shelf_placement(layers, device)
    shelf_cost = wire_length(layers, shelf, edges, sources, sinks, weights) if shelf is not None else -1
    solved = _cp_sat(layers, device, edges, sources, sinks, shelf, weights)
    if solved is not None and solved[0]:
        origins, status, objective, bound = solved
        if shelf is not None and shelf_cost < objective:  # never worse than the hint (cannot happen when optimal)
            origins, objective, bound, status = shelf, shelf_cost, bound, f"{status}, shelf kept"
        method = "cp-sat"
    elif shelf is not None:
        origins, objective, bound = shelf, shelf_cost, 0
        status = "ortools not installed" if solved is None else f"cp-sat: {solved[1]}"
        method = "shelf"
    else:
        raise DoesNotFitError(
            "design", f"the {sum(e.tiles for e in layers)} tiles in rectangles "
            f"{', '.join(f'{e.cas_length}x{e.cas_num}' for e in layers)} do not pack into the "
            f"{device.columns}x{device.compute_rows} array of {device.name}",
            "use a larger device, fewer tiles per layer (a larger max weight bytes per tile), or a smaller model")
    by_layer = {e.op: origins[i] for i, e in enumerate(layers)}
    for k in kernels:
        x0, y0 = by_layer[k.layer]
        k.col, k.row = x0 + k.position, y0 + k.chain
    check_placement(kernels, device)
    return PlacementReport(method, status, objective, min(bound, objective), shelf_cost,
                           time.perf_counter() - start)


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
        if k.cascade_from is not None:
            prev = by_name[k.cascade_from]
            if (prev.col + 1, prev.row) != (k.col, k.row):
                raise InternalCheckError(where, "cascade source is not the west neighbour", "report this")
