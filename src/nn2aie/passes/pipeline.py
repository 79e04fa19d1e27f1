"""The ordered pass list: logical graph -> execution plan -> physical plan. Each pass is named; the plan is
checked after every pass, and ``dump_after`` returns the state after a named pass as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from nn2aie.devices import DEFAULT_DEVICE, Device, get_target_device
from nn2aie.errors import DoesNotFitError, IllegalConfigError, UnsupportedOpError
from nn2aie.ir.execution import OpExec, ceil_div, rows_per_event
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.physical import Endpoint, Kernel, PhysicalPlan, assign_memtile_offsets
from nn2aie.kernels.family import OpFamily, PortSpec
from nn2aie.kernels.registry import family_for, family_named
from nn2aie.passes.legality import check_legality, peak_usage
from nn2aie.passes.memplan import MemoryPlanner, SliceSpec, TensorRoute, boundary_feasible
from nn2aie.passes.placement import PlacementReport, Weights, place
from nn2aie.passes.verify import verify_plan


@dataclass
class CompileOptions:
    device: str = DEFAULT_DEVICE
    batch: int = 4  # rows per graph iteration (one aie::mmul row block)
    plio_bits: int = 128
    pl_freq_mhz: float | None = None  # default: the part's catalogued PL clock
    max_weight_bytes: int | None = None  # per tile; default one data-memory bank
    # layer name -> {"cas_length": L, "cas_num": C, "mmul": "MxKxN", "requant": kind}, each key optional
    overrides: dict[str, dict] = field(default_factory=dict)
    # True: a graph input or output is split over several PLIOs where one PLIO would be slower than the layer next to
    # it; False: one PLIO per memory-tile buffer (fewer PL data movers; the aie4ml peer's designs, which the aiesim
    # comparison of benchmarks/aiesim_compare.py rebuilds, use one input PLIO)
    plio_split: bool = True
    # True: a producer tile hands a tensor to one consumer tile directly where their layouts agree (in place when
    # they are neighbours); False: every tensor between layers goes through a memory tile (the aie4ml peer's
    # designs have no in-place hand-offs; the aiesim comparison rebuilds them so)
    direct_handoffs: bool = True
    # graph input name -> an ap_fixed type for a float input the model reads without a quantizer: the host
    # quantizes it (ir/host.py), and the design equals the source on inputs already on that grid
    input_types: dict[str, str] = field(default_factory=dict)

    def validate(self, device: Device) -> None:
        if type(self.batch) is not int or self.batch < 1:
            raise IllegalConfigError("option batch", f"batch {self.batch!r} is not a positive whole number",
                                     "use 1 (lowest latency) or a multiple of 4 (a dense layer's aie::mmul row block "
                                     "is 4: other batches pad its rows)")
        if self.plio_bits not in device.fact("plio_bits"):
            raise IllegalConfigError("option plio_bits", f"{self.plio_bits}-bit PLIO does not exist",
                                     "use 32, 64 or 128")
        if self.pl_freq_mhz is not None and not (0 < self.pl_freq_mhz <= device.aie_clock_mhz / 2):  # NaN fails too
            raise IllegalConfigError("option pl_freq_mhz",
                                     f"{self.pl_freq_mhz} MHz is not a PL clock for {device.name}",
                                     f"use a clock above 0 and at most half the AIE clock "
                                     f"({device.aie_clock_mhz / 2:g} MHz, UG1603)")
        if self.max_weight_bytes is not None and not (64 <= self.max_weight_bytes <= device.data_memory_bytes):
            raise IllegalConfigError("option max_weight_bytes", f"{self.max_weight_bytes} B is outside "
                                     f"64..{device.data_memory_bytes}", "use at most the tile's data memory")
        for name, ov in self.overrides.items():
            if not isinstance(ov, dict):
                raise IllegalConfigError(f"override for layer {name}", f"unknown keys in {ov!r}",
                                         "give any of {\"cas_length\": L, \"cas_num\": C, \"mmul\": \"MxKxN\"}")
            # keys and values are checked by the layer's own family once the graph is known (_legalise)


@dataclass
class State:
    graph: Graph
    device: Device
    options: CompileOptions
    layers: list[OpExec] = field(default_factory=list)
    kernels: list[Kernel] = field(default_factory=list)
    placement: PlacementReport | None = None
    plan: PhysicalPlan | None = None
    aliases: dict[str, tuple[str, int]] = field(default_factory=dict)  # tensor -> (tensor holding it, 1st column)
    windows: dict[str, tuple[str, int]] = field(default_factory=dict)  # slice output -> (its input, 1st column)
    reads: dict[str, list[str]] = field(default_factory=dict)  # op -> tensors its ports read (ops fused into it)
    fused_into: dict[str, str] = field(default_factory=dict)  # op -> the op whose tiles run it

    def inputs(self, op: Op) -> list[str]:
        """The activation tensors ``op``'s input ports read (its own inputs unless producers were fused in)."""
        return self.reads.get(op.name) or self.graph.activation_inputs(op)

    def absorber(self, op: Op) -> Op:
        """The op whose tiles run ``op`` (itself unless it was fused into a later op)."""
        while op.name in self.fused_into:
            op = self.graph.op(self.fused_into[op.name])
        return op

    def to_json(self) -> dict:
        if self.plan is not None:
            return self.plan.to_json()
        out: dict = {"graph": self.graph.to_json(with_data=False)}
        if self.layers:
            out["layers"] = [e.to_json() for e in self.layers]
        if self.kernels:
            out["kernels"] = [k.to_json() for k in self.kernels]
        return out


def _family(op: Op) -> OpFamily:
    fam = family_for(op.kind)
    assert fam is not None  # Graph.verify refuses unknown kinds
    return fam


def _exec_family(e: OpExec) -> OpFamily:
    return family_named(e.family)


def _legalise(s: State) -> None:
    s.graph.verify()
    if not s.graph.ops:
        raise UnsupportedOpError(f"graph {s.graph.name}", "contains no op", "nothing to compile")
    for op in s.graph.ops:
        for t in op.outputs:
            if not s.graph.consumers(t) and t not in s.graph.outputs:
                raise UnsupportedOpError(f"op {op.name} ({op.kind})", f"its output {s.graph.tensor(t).origin or t} "
                                         "is neither read by another op nor a graph output (a dead branch)",
                                         "remove the op from the model, or make its result a graph output")
    for t in s.graph.outputs:
        if s.graph.producer(t) is None:
            raise UnsupportedOpError(f"tensor {s.graph.tensor(t).origin or t}", "is a graph input passed through "
                                     "to a graph output unchanged (no op computes it)",
                                     "take it from the host's own copy of the input, not from the array")
    for t in s.graph.inputs:
        if not s.graph.consumers(t):
            raise UnsupportedOpError(f"tensor {s.graph.tensor(t).origin or t}", "is a graph input no op reads",
                                     "remove the unused input from the model")
    if len(set(s.graph.outputs)) != len(s.graph.outputs):
        raise UnsupportedOpError(f"graph {s.graph.name}", "lists one tensor as two graph outputs",
                                 "output each tensor once")
    unknown = set(s.options.overrides) - {op.name for op in s.graph.ops}
    if unknown:
        raise IllegalConfigError(f"override for {sorted(unknown)[0]}", "no layer of that name",
                                 f"layers are: {', '.join(op.name for op in s.graph.ops)}")
    for op in s.graph.ops:
        if op.name in s.options.overrides:
            _family(op).validate_override(op.name, s.options.overrides[op.name])


def _precision(s: State) -> None:
    s.layers = [_family(op).plan(s.graph, op, s.device, s.options.batch, s.options.overrides.get(op.name, {}))
                for op in s.graph.topo_order()]


def _parallelism(s: State) -> None:
    limit = s.options.max_weight_bytes or s.device.bank_bytes
    for e in s.layers:
        _exec_family(e).parallelise(s.graph, e, s.device, limit, s.options.overrides.get(e.op))


def _root(s: State, tensor: str) -> tuple[str, int]:
    """The tensor whose buffer holds ``tensor`` (itself unless a view was resolved into descriptors), and the first
    column ``tensor`` takes in it."""
    col = 0
    while tensor in s.aliases:
        tensor, off = s.aliases[tensor]
        col += off
    return tensor, col


def _tensor_edges(s: State) -> list[tuple[int, int, str]]:
    """(producer layer index, consumer layer index, tensor) for every activation tensor between two layers with
    tiles (through views resolved into descriptors)."""
    index = {e.op: i for i, e in enumerate(s.layers)}
    edges = []
    for op in s.graph.topo_order():
        if s.layers[index[op.name]].tiles == 0:
            continue
        for t in op.outputs:
            for user in _readers(s, _root(s, t)[0]):
                edges.append((index[op.name], index[user.name], t))
    return edges


def _readers(s: State, tensor: str) -> list[Op]:
    """The ops with tiles that read ``tensor``'s buffer: its consumers, and through slices resolved into
    descriptors, the slices' readers."""
    out: list[Op] = []
    for user in s.graph.consumers(tensor):
        y = user.outputs[0]
        if y in s.windows and s.windows[y][0] == tensor:
            out += _readers(s, y)
        elif s.absorber(user) not in out:
            out.append(s.absorber(user))
    return out


def _legalise_boundaries(s: State) -> None:
    """Where a producer's chains and a consumer's cascade positions cannot share memory tiles within the DMA
    channel limit, lengthen the consumer's cascade (or, if it is fixed by an override, the producer's) until the
    tensor can be split at columns where no slice straddles a cut."""
    limit = s.options.max_weight_bytes or s.device.bank_bytes
    channels = min(s.device.fact("memtile_dma_channels").values())

    def feasible(prod: OpExec, cons: OpExec, tensor: str) -> bool:
        j = s.inputs(s.graph.op(cons.op)).index(tensor)
        return boundary_feasible(_exec_family(prod).port_slices(prod, "out"),
                                 _exec_family(cons).port_slices(cons, "in", j), channels)

    for pi, ci, tensor in _tensor_edges(s):
        prod, cons = s.layers[pi], s.layers[ci]
        if feasible(prod, cons, tensor):
            continue
        target, fixed = (cons, prod) if not cons.override else (prod, cons)
        if target.override or "cas_length" not in _exec_family(target).override_keys:
            raise DoesNotFitError(
                f"tensor between layers {prod.op} and {cons.op}",
                f"{prod.cas_num} producer chains and {cons.cas_length} consumer cascade positions cannot be "
                f"served by memory tiles with {channels} DMA channels each",
                "pick overrides whose slices line up (e.g. consumer cas_length dividing producer cas_num)")
        if _lengthen(s, target, fixed, prod, cons, tensor, feasible, limit):
            continue
        # the producer's finer split can line up where its current one cannot (a conv's narrower channel slices)
        for _ in range(MAX_PRODUCER_GROWTH if target is cons and not prod.override else 0):
            step = _exec_family(prod).grow(prod, s.device)
            if step is None:
                break
            try:
                _exec_family(prod).parallelise(s.graph, prod, s.device, limit, step)
            except (IllegalConfigError, DoesNotFitError):
                break
            prod.override = False
            if feasible(prod, cons, tensor) or _lengthen(s, cons, prod, prod, cons, tensor, feasible, limit):
                prod.notes.append(f"split finer ({prod.tiles} tiles) so the tensor to {cons.op} can be split over "
                                  "memory tiles")
                break
        if not feasible(prod, cons, tensor):
            j = s.inputs(s.graph.op(cons.op)).index(tensor)
            n_w = len(_exec_family(prod).port_slices(prod, "out"))
            n_r = len(set(map(tuple, _exec_family(cons).port_slices(cons, "in", j))))
            raise DoesNotFitError(
                f"tensor between layers {prod.op} and {cons.op}",
                f"{n_w} writer ports and {n_r} reader ports cannot be shared out over memory tiles of {channels} "
                "DMA channels each: no column cut separates them and no split by events does (a port moving every "
                "event forbids one)",
                "set the splits of both layers explicitly (cas_length / cas_num; a conv's parts, bands, "
                "event_groups) so that each column range or range of events has at most "
                f"{channels} writers and readers")


MAX_PRODUCER_GROWTH = 4  # DSE steps the boundary legaliser may take on a producer


def _lengthen(s: State, target: OpExec, fixed: OpExec, prod: OpExec, cons: OpExec, tensor: str, feasible,
              limit: int) -> bool:
    """Lengthen ``target``'s cascade until the boundary is feasible; False (target re-planned at its last try)
    when no length is."""
    for length in range(target.cas_length + 1, s.device.columns + 1):
        num = target.cas_num if target is cons else max(1, -(-target.tiles // length))
        try:
            _exec_family(target).parallelise(s.graph, target, s.device, limit,
                                             {"cas_length": length, "cas_num": num})
        except (IllegalConfigError, DoesNotFitError):
            continue
        target.override = False
        if feasible(prod, cons, tensor):
            target.notes.append(f"cascade lengthened to {length} so the tensor to/from {fixed.op} can be "
                                "split over memory tiles")
            return True
    return False


def _fuse_views(s: State) -> None:
    """A chain of views moves its data once: a view that needs a copy and feeds only the next view runs inside
    that view's copy tile (the family decides, ``fuse_input``)."""
    g = s.graph
    execs = {e.op: e for e in s.layers}
    for e in s.layers:
        op = g.op(e.op)
        for t in list(s.inputs(op)):
            prod = g.producer(t)
            if prod is None or t in g.outputs or len(g.consumers(t)) != 1 or prod.name in s.fused_into:
                continue
            reads = _exec_family(e).fuse_input(g, op, e, t, prod, execs[prod.name], s.inputs(op))
            if reads is not None:
                s.reads[op.name] = reads
                s.fused_into[prod.name] = op.name


def _resolve_views(s: State) -> None:
    """A view whose inputs can be stored as column ranges of its output (a concat on the last axis, a rename)
    gets no tile: its producers write straight into the output's memory-tile buffer at their columns. Only where
    that is exact and legal: every input written by one op with tiles and read by nothing else, no writer's
    padding columns reaching into the next input's, 32-bit aligned columns, and memory tiles that can serve the
    joined writers and the readers within their DMA channels."""
    g = s.graph
    execs = {e.op: e for e in s.layers}
    channels = min(s.device.fact("memtile_dma_channels").values())
    for e in s.layers:
        fam = _exec_family(e)
        op = g.op(e.op)
        offsets = fam.column_alias(g, op, e)
        if offsets is None or len(set(op.inputs)) != len(op.inputs) or op.name in s.reads:
            continue
        y = op.outputs[0]
        writers: list[tuple[int, int]] = []
        ok = True
        for j, (t, off) in enumerate(zip(op.inputs, offsets, strict=True)):
            prod = g.producer(t)
            if prod is None or t in g.outputs or len(g.consumers(t)) != 1 or _rows(s, t) != _rows(s, y):
                ok = False
                break
            pe = execs[prod.name]
            if pe.tiles == 0:
                ok = False
                break
            slices = _exec_family(pe).port_slices(pe, "out", prod.outputs.index(t))
            end = max(a + w for a, w, *_ in slices)
            padded_into_next = j < len(op.inputs) - 1 and end != g.tensor(t).shape[-1]
            if padded_into_next or (off * g.tensor(t).type.container_bits) % 32:
                ok = False
                break
            writers += [(a + off, w, *key) for a, w, *key in slices]
        for user in g.consumers(y) if ok else []:
            ue = execs[user.name]
            if ue.tiles == 0 or not boundary_feasible(writers, _exec_family(ue).port_slices(
                    ue, "in", s.inputs(user).index(y)), channels):
                ok = False
        if ok:
            fam.resolve_alias(e)
            for t, off in zip(op.inputs, offsets, strict=True):
                s.aliases[t] = (y, off)
    for e in s.layers:
        if e.tiles == 0:
            continue
        op = g.op(e.op)
        start = _exec_family(e).column_window(g, op, e)
        if start is None or op.name in s.reads:
            continue
        x, y = op.inputs[0], op.outputs[0]
        if (y in g.outputs or x in s.aliases or y in s.aliases or _rows(s, x) != _rows(s, y) or not g.consumers(y)
                or (start * g.tensor(x).type.container_bits) % 32
                or any(execs[u.name].tiles == 0 for u in g.consumers(y))):
            continue
        s.windows[y] = (x, start)  # tentatively: the readers of x's buffer with it, checked below
        if _root(s, x)[0] == x and not _window_feasible(s, x, channels):
            del s.windows[y]
            continue
        _exec_family(e).resolve_alias(e)


def _window_feasible(s: State, x: str, channels: int) -> bool:
    """Can x's buffer serve its writers and every reader (slices' readers at their columns) within the memory
    tiles' DMA channels? A graph input's PLIOs adapt to any split."""
    g = s.graph
    execs = {e.op: e for e in s.layers}
    prod = g.producer(x)
    if prod is None:
        return True
    pe = execs[prod.name]
    if pe.tiles == 0:
        return False  # x is itself the output of a resolved view: keep it simple, copy instead
    writers = _exec_family(pe).port_slices(pe, "out", prod.outputs.index(x))

    def reads(t: str, off: int) -> list[tuple[int, int]]:
        out = []
        for user in g.consumers(t):
            y = user.outputs[0]
            if y in s.windows and s.windows[y][0] == t:
                out += reads(y, off + s.windows[y][1])
                continue
            reader = s.absorber(user)
            ue = execs[reader.name]
            out += [(a + off, w, *key) for a, w, *key in _exec_family(ue).port_slices(ue, "in",
                                                                                           s.inputs(reader).index(t))]
        return out

    return boundary_feasible(writers, reads(x, 0), channels)


def _partition(s: State) -> None:
    s.kernels = []
    for i, e in enumerate(s.layers):
        s.kernels += _exec_family(e).partition(s.graph, s.graph.op(e.op), e, s.device, f"l{i}")


def _words(s: State, tensor: str) -> int:
    """32-byte words a tensor moves per graph iteration (the placement's edge weight)."""
    t = s.graph.tensor(tensor)
    return max(1, ceil_div(_rows(s, tensor) * int(t.shape[-1]) * t.type.container_bits // 8, 32))


def _place(s: State) -> None:
    weights: dict[tuple[int, int], int] = {}
    for p, c, t in _tensor_edges(s):
        weights[(p, c)] = weights.get((p, c), 0) + _words(s, t)
    index = {e.op: i for i, e in enumerate(s.layers)}
    sources: dict[int, int] = {}
    for t in s.graph.inputs:
        for user in _readers(s, t):
            sources[index[user.name]] = sources.get(index[user.name], 0) + _words(s, t)
    sinks: dict[int, int] = {}
    for t in s.graph.outputs:
        writers = [t]
        while writers:  # through views resolved into descriptors, to the ops that write the output's buffer
            w = writers.pop()
            op = s.graph.producer(w)
            if op is None:
                continue
            if s.layers[index[op.name]].tiles == 0:
                writers += op.inputs
            else:
                sinks[index[op.name]] = sinks.get(index[op.name], 0) + _words(s, w)
    # layers without tiles (views resolved into descriptors) take no rectangle
    placed = [i for i, e in enumerate(s.layers) if e.tiles]
    local = {i: j for j, i in enumerate(placed)}
    edges = [(local[p], local[c]) for p, c in weights]
    s.placement = place([s.layers[i] for i in placed], s.kernels, s.device, edges,
                        Weights(tuple(weights.values()), {local[i]: w for i, w in sources.items() if i in local},
                                {local[i]: w for i, w in sinks.items() if i in local}))


def _rows(s: State, tensor: str) -> int:
    return s.options.batch * rows_per_event(s.graph.tensor(tensor).shape)


def _memory_plan(s: State) -> None:
    o = s.options
    mp = MemoryPlanner(s.device, o.batch, o.plio_bits, o.pl_freq_mhz or s.device.pl_clock_mhz_default, o.plio_split)
    g = s.graph
    execs = {e.op: e for e in s.layers}
    by_layer: dict[str, list[Kernel]] = {e.op: [] for e in s.layers}
    for k in s.kernels:
        by_layer[k.layer].append(k)
    ports: dict[str, list[PortSpec]] = {k.name: _exec_family(execs[k.layer]).ports(execs[k.layer], k)
                                        for k in s.kernels}
    for k in s.kernels:  # the plan carries each tile's ports: the single source for codegen, emulator, cost
        op = g.op(k.layer)
        ins, outs = s.inputs(op), op.outputs
        k.ports = ports[k.name]
        k.port_tensors = [(ins if p.direction == "in" else outs)[p.index] for p in k.ports]

    def endpoint(k: Kernel, spec: PortSpec) -> Endpoint:
        single = sum(1 for p in ports[k.name] if p.direction == spec.direction) == 1
        return Endpoint("kernel", k.name, "" if single else spec.name)

    def slices(op: Op, tensor: str, direction: str) -> tuple[list[SliceSpec], list[tuple[Kernel, PortSpec]]]:
        names = s.inputs(op) if direction == "in" else op.outputs
        specs: list[SliceSpec] = []
        used = []
        for k in by_layer[op.name]:
            for spec in ports[k.name]:
                if spec.direction == direction and names[spec.index] == tensor:
                    used.append((k, spec))
                    block = spec.block
                    key = (spec.start, spec.width, block, spec.view, spec.rows)
                    same = next((x for x in specs if x.key == key), None) if direction == "in" else None
                    if same is not None:  # one read port broadcast to every tile that needs the same slice
                        same.endpoints.append(endpoint(k, spec))
                    else:
                        specs.append(SliceSpec(spec.start, spec.width, [endpoint(k, spec)], block, spec.view,
                                               spec.rows))
        return specs, used

    def writer_slices(t: str) -> tuple[list[SliceSpec], list[tuple[Kernel, PortSpec]]]:
        """The ports writing tensor ``t``'s buffer: its producer's, or through a view resolved into descriptors,
        its inputs' producers' shifted to their columns."""
        op = g.producer(t)
        assert op is not None
        if execs[op.name].tiles:
            return slices(op, t, "out")
        specs, used = [], []
        for a in op.inputs:
            sub, sub_used = writer_slices(a)
            off = s.aliases[a][1]
            specs += [x.shifted(off) for x in sub]
            used += sub_used
        return specs, used

    def reader_slices(t: str, off: int = 0) -> tuple[list[SliceSpec], list[tuple[Kernel, PortSpec]]]:
        """The ports reading tensor ``t``'s buffer: its consumers', and through slices resolved into descriptors,
        the slices' readers shifted to their columns; ops reading the same window share one broadcast read."""
        readers: list[SliceSpec] = []
        used: list[tuple[Kernel, PortSpec]] = []
        for user in g.consumers(t):
            y = user.outputs[0]
            if y in s.windows and s.windows[y][0] == t:
                specs, u = reader_slices(y, off + s.windows[y][1])
            elif user.name in s.fused_into:  # runs inside a later op's tiles: that op's ports read t
                reader = s.absorber(user)
                if any(k.layer == reader.name for k, _ in used):
                    continue  # already counted through another of its fused views
                specs, u = slices(reader, t, "in")
                specs = [x.shifted(off) for x in specs]
            else:
                specs, u = slices(user, t, "in")
                specs = [x.shifted(off) for x in specs]
            for spec in specs:
                same = next((x for x in readers if x.key == spec.key), None)
                if same is not None:
                    same.endpoints += spec.endpoints
                else:
                    readers.append(spec)
            used += u
        return readers, used

    types, shapes = {}, {}
    tensors = list(g.inputs) + [t for op in g.topo_order() for t in op.outputs]
    for t in tensors:
        types[t], shapes[t] = g.tensor(t).type, tuple(g.tensor(t).shape)
        if t in s.aliases or t in s.windows:  # held in the buffer of a view's output / input: routed with it
            continue
        producer = g.producer(t)
        if producer is not None and producer.name in s.fused_into:  # computed inside the next op's copy only
            continue
        consumers = g.consumers(t)
        writers = w_used = None
        if producer is not None:
            writers, w_used = writer_slices(t)
        readers: list[SliceSpec] | None = None
        r_used: list[tuple[Kernel, PortSpec]] = []
        if consumers:
            readers, r_used = reader_slices(t)
        dtype = (w_used[0][1] if w_used else r_used[0][1]).dtype
        plio_layer = execs[r_used[0][0].layer] if producer is None else execs[w_used[0][0].layer]
        kernels = [k for k, _ in (w_used or [])] + [k for k, _ in r_used]
        direct = None
        through_window = any(u.outputs[0] in s.windows for u in consumers)
        if (o.direct_handoffs and w_used is not None and len(w_used) == 1 and len(r_used) == 1 and t not in g.outputs
                and not through_window and _same_window(w_used[0][1], r_used[0][1])):
            direct = (endpoint(*w_used[0]), endpoint(*r_used[0]))
        mp.route(TensorRoute(t, dtype, _rows(s, t), g.tensor(t).shape[-1], writers, readers, kernels,
                             _exec_family(plio_layer).max_tile_cycles(plio_layer), direct,
                             plio_out=t in g.outputs and bool(consumers)))
    # a direct hand-off reads the producer's output buffer in place: the consumer needs no input buffers
    by_name = {k.name: k for k in s.kernels}
    for link in (link for link in mp.links if link.in_place):
        k = by_name[link.dst]
        e = execs[k.layer]
        fam = _exec_family(e)
        port = link.dst_port or next(p.name for p in ports[k.name] if p.direction == "in")
        k.memory = fam.memory_map(e, k, s.device, frozenset(fam.input_buffers(port)))
    s.plan = PhysicalPlan(
        device=s.device.name, graph_name=g.name, batch=o.batch, layers=s.layers, kernels=s.kernels,
        shared_buffers=mp.shared, direct_links=mp.links, plios=mp.plios, input_tensors=list(g.inputs),
        output_tensors=list(g.outputs), tensor_types=types, tensor_shapes=shapes,
        placement=s.placement.to_json() if s.placement is not None else {})


def _same_window(w: PortSpec, r: PortSpec) -> bool:
    """A writer port and a reader port that hold the same window in the same layout: a direct hand-off."""
    return (w.start == r.start == 0 and w.width == r.width and w.block == r.block and w.dtype == r.dtype
            and w.rows == r.rows and w.view is None and r.view is None)


MAX_SKIP_BUFFERS = 8  # deepest memory-tile buffer the depth search tries (each one costs a BD per access)


def _buffer_depth(s: State) -> None:
    """A tensor read by ops at different depths of the graph (a skip connection) is held until its last reader is
    done: with two buffers its writer would wait for the long branch. Give each such memory-tile buffer the fewest
    buffers that reach the modelled interval of a deeper one (performance model), within the memory tile's
    capacity and MAX_SKIP_BUFFERS."""
    from nn2aie.perf.model import model_performance  # perf reads the plan; the plan does not need perf otherwise

    plan = s.plan
    assert plan is not None
    layer_of = {k.name: k.layer for k in plan.kernels}
    skips = [sb for sb in plan.shared_buffers
             if len({layer_of[ep.name] for acc in sb.readers for ep in acc.endpoints if ep.kind == "kernel"}) > 1]
    for sb in skips:
        others = sum(b.num_buffers * b.buffer_bytes for b in plan.shared_buffers
                     if (b.col, b.row) == (sb.col, sb.row) and b is not sb)
        deepest = min(MAX_SKIP_BUFFERS, (s.device.memtile_bytes - others) // sb.buffer_bytes)
        best, best_ii = sb.num_buffers, model_performance(plan).interval_cycles
        for n in range(sb.num_buffers + 1, deepest + 1):
            sb.num_buffers = n
            ii = model_performance(plan).interval_cycles
            if ii < best_ii - 1e-6:
                best, best_ii = n, ii
        sb.num_buffers = best
    assign_memtile_offsets(plan.shared_buffers)


def _check(s: State) -> None:
    assert s.plan is not None
    verify_plan(s.plan, s.device)
    s.plan.resources = peak_usage(check_legality(s.plan, s.device))


PASSES: list[tuple[str, Callable[[State], None]]] = [
    ("legalise", _legalise),
    ("precision", _precision),
    ("parallelism", _parallelism),
    ("fuse-views", _fuse_views),
    ("legalise-boundaries", _legalise_boundaries),
    ("resolve-views", _resolve_views),
    ("partition", _partition),
    ("place", _place),
    ("memory-plan", _memory_plan),
    ("buffer-depth", _buffer_depth),
    ("legality-check", _check),
]
PASS_NAMES = [name for name, _ in PASSES]


def compile_graph(graph: Graph, options: CompileOptions | None = None, dump_after: str | None = None,
                  progress: Callable[[str], None] | None = None) -> tuple[PhysicalPlan, str | None]:
    """Run every pass; returns the physical plan and (if asked) the JSON dump after ``dump_after``."""
    options = options or CompileOptions()
    device = get_target_device(options.device)
    options.validate(device)
    if dump_after is not None and dump_after not in PASS_NAMES:
        raise IllegalConfigError("option dump-after", f"no pass named {dump_after!r}",
                                 f"passes are: {', '.join(PASS_NAMES)}")
    try:
        return _run_passes(graph, device, options, dump_after, progress)
    except DoesNotFitError as first:
        if options.max_weight_bytes is not None:
            raise
        # the default budget (one bank of weights per tile) spreads large layers over many tiles, whose rectangles
        # may not pack; more weights per tile (fewer, denser tiles) is the next default, up to the data memory
        budget = 2 * device.bank_bytes
        while budget < device.data_memory_bytes:
            if progress:
                progress(f"retry with {budget // 1024} KiB of weights per tile")
            try:
                return _run_passes(graph, device, replace(options, max_weight_bytes=budget), dump_after, progress)
            except DoesNotFitError:
                budget += device.bank_bytes
        raise first


def _run_passes(graph: Graph, device, options: CompileOptions, dump_after: str | None,
                progress: Callable[[str], None] | None) -> tuple[PhysicalPlan, str | None]:
    state = State(graph, device, options)
    dump = None
    for name, fn in PASSES:
        if progress:
            progress(name)
        fn(state)
        if name == dump_after:
            dump = json.dumps(state.to_json(), indent=1, sort_keys=True)
    assert state.plan is not None
    return state.plan, dump
