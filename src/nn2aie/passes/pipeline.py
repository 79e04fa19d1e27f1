"""The ordered pass list: logical graph -> execution plan -> physical plan. Each pass is named; the plan is
checked after every pass, and ``dump_after`` returns the state after a named pass as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from nn2aie.devices import DEFAULT_DEVICE, Device, get_target_device
from nn2aie.errors import DoesNotFitError, IllegalConfigError, UnsupportedOpError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.logical import Graph
from nn2aie.ir.physical import Kernel, PhysicalPlan
from nn2aie.passes.legality import check_legality, peak_usage
from nn2aie.passes.memplan import MemoryPlanner, boundary_feasible, check_chain
from nn2aie.passes.parallelism import choose_parallelism
from nn2aie.passes.partition import memory_map, partition_layer
from nn2aie.passes.placement import PlacementReport, place
from nn2aie.passes.precision import plan_precision
from nn2aie.passes.verify import verify_plan


@dataclass
class CompileOptions:
    device: str = DEFAULT_DEVICE
    batch: int = 4  # rows per graph iteration (one aie::mmul row block)
    plio_bits: int = 128
    pl_freq_mhz: float | None = None  # default: the part's catalogued PL clock
    max_weight_bytes: int | None = None  # per tile; default one data-memory bank
    # layer name -> {"cas_length": L, "cas_num": C, "mmul": "MxKxN"}, each key optional
    overrides: dict[str, dict] = field(default_factory=dict)

    def validate(self, device: Device) -> None:
        if self.batch < 1 or self.batch % 4:
            raise IllegalConfigError("option batch", f"batch {self.batch} is not a positive multiple of 4",
                                     "use 4, 8, 12, ... (the aie::mmul row block is 4)")
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
            if not isinstance(ov, dict) or set(ov) - {"cas_length", "cas_num", "mmul"}:
                raise IllegalConfigError(f"override for layer {name}", f"unknown keys in {ov!r}",
                                         "give any of {\"cas_length\": L, \"cas_num\": C, \"mmul\": \"MxKxN\"}")
            if "mmul" in ov:
                parse_mmul(ov["mmul"], f"override for layer {name}")
            for key in ("cas_length", "cas_num"):
                if key in ov and (type(ov[key]) is not int or ov[key] < 1):  # bool, float, str: refused
                    raise IllegalConfigError(f"override for layer {name}", f"{key} {ov[key]!r} is not a positive "
                                             "integer", f"give {key} as a whole number of tiles, e.g. 2")


def parse_mmul(value, where: str) -> tuple[int, int, int]:
    """An mmul shape given as "4x16x8" or [4, 16, 8]."""
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise IllegalConfigError(where, f"mmul {value!r} is not a shape M x K x N", "write it like \"4x16x8\"")
    return shape  # type: ignore[return-value]


@dataclass
class State:
    graph: Graph
    device: Device
    options: CompileOptions
    layers: list[DenseExec] = field(default_factory=list)
    kernels: list[Kernel] = field(default_factory=list)
    placement: PlacementReport | None = None
    plan: PhysicalPlan | None = None

    def to_json(self) -> dict:
        if self.plan is not None:
            return self.plan.to_json()
        out: dict = {"graph": self.graph.to_json(with_data=False)}
        if self.layers:
            out["layers"] = [e.to_json() for e in self.layers]
        if self.kernels:
            out["kernels"] = [k.to_json() for k in self.kernels]
        return out


def _legalise(s: State) -> None:
    s.graph.verify()
    if len(s.graph.inputs) != 1 or len(s.graph.outputs) != 1:
        raise UnsupportedOpError(f"graph {s.graph.name}", "the model must have exactly one input and one output",
                                 "export a single-input, single-output model")
    if not s.graph.ops:
        raise UnsupportedOpError(f"graph {s.graph.name}", "contains no dense layer", "nothing to compile")
    check_chain(s.graph.ops, s.graph)
    unknown = set(s.options.overrides) - {op.name for op in s.graph.ops}
    if unknown:
        raise IllegalConfigError(f"override for {sorted(unknown)[0]}", "no layer of that name",
                                 f"layers are: {', '.join(op.name for op in s.graph.ops)}")


def _precision(s: State) -> None:
    def shape(op) -> tuple[int, int, int] | None:
        ov = s.options.overrides.get(op.name, {})
        return parse_mmul(ov["mmul"], f"override for layer {op.name}") if "mmul" in ov else None

    s.layers = [plan_precision(s.graph, op, s.device, s.options.batch, shape(op)) for op in s.graph.ops]


def _parallelism(s: State) -> None:
    limit = s.options.max_weight_bytes or s.device.bank_bytes
    for e in s.layers:
        choose_parallelism(e, s.device, limit, s.options.overrides.get(e.op))


def _legalise_boundaries(s: State) -> None:
    """Where a producer's chains and a consumer's cascade positions cannot share memory tiles within the DMA
    channel limit, lengthen the consumer's cascade (or, if it is fixed by an override, the producer's) until the
    tensor can be split at columns where no slice straddles a cut."""
    limit = s.options.max_weight_bytes or s.device.bank_bytes
    channels = min(s.device.fact("memtile_dma_channels").values())
    for prod, cons in zip(s.layers, s.layers[1:], strict=False):
        if boundary_feasible(prod, cons, channels):
            continue
        target, fixed = (cons, prod) if not cons.override else (prod, cons)
        if target.override:
            raise DoesNotFitError(
                f"tensor between layers {prod.op} and {cons.op}",
                f"{prod.cas_num} producer chains and {cons.cas_length} consumer cascade positions cannot be "
                f"served by memory tiles with {channels} DMA channels each",
                "pick overrides whose slices line up (e.g. consumer cas_length dividing producer cas_num)")
        for length in range(target.cas_length + 1, s.device.columns + 1):
            num = target.cas_num if target is cons else max(1, -(-target.tiles // length))
            try:
                choose_parallelism(target, s.device, limit, {"cas_length": length, "cas_num": num})
            except IllegalConfigError:
                continue
            target.override = False
            if boundary_feasible(prod, cons, channels):
                target.notes.append(f"cascade lengthened to {length} so the tensor to/from {fixed.op} can be "
                                    "split over memory tiles")
                break
        else:
            raise DoesNotFitError(f"tensor between layers {prod.op} and {cons.op}",
                                  "no split over memory tiles respects the DMA channel limits",
                                  "set cas_length/cas_num of both layers explicitly")


def _partition(s: State) -> None:
    s.kernels = []
    for i, (op, e) in enumerate(zip(s.graph.ops, s.layers, strict=True)):
        s.kernels += partition_layer(s.graph, op, e, s.device, f"l{i}")


def _place(s: State) -> None:
    s.placement = place(s.layers, s.kernels, s.device)


def _memory_plan(s: State) -> None:
    o = s.options
    mp = MemoryPlanner(s.device, o.batch, o.plio_bits, o.pl_freq_mhz or s.device.pl_clock_mhz_default)
    g = s.graph
    ops = g.ops
    types = {}
    for i, op in enumerate(ops):
        x, y = op.inputs[0], op.outputs[0]
        types[x], types[y] = g.tensor(x).type, g.tensor(y).type
        mine = [k for k in s.kernels if k.layer == op.name]
        if i == 0:
            mp.route(x, s.layers[0].a_dtype, None, [], s.layers[0], mine, g.tensor(x).shape[-1])
        prev_kernels = mine
        if i + 1 < len(ops):
            nxt = [k for k in s.kernels if k.layer == ops[i + 1].name]
            mp.route(y, s.layers[i].out_dtype, s.layers[i], prev_kernels, s.layers[i + 1], nxt,
                     g.tensor(y).shape[-1])
        else:
            mp.route(y, s.layers[i].out_dtype, s.layers[i], prev_kernels, None, [], g.tensor(y).shape[-1])
    # a direct hand-off reads the producer's output buffer in place: the consumer needs no input buffers
    by_name = {k.name: k for k in s.kernels}
    for link in (link for link in mp.links if link.in_place):
        k = by_name[link.dst]
        e = next(layer for layer in s.layers if layer.op == k.layer)
        k.memory = memory_map(e, s.device, k.role, f"kernel {k.name}", frozenset({"in_ping", "in_pong"}))
    s.plan = PhysicalPlan(
        device=s.device.name, graph_name=g.name, batch=o.batch, layers=s.layers, kernels=s.kernels,
        shared_buffers=mp.shared, direct_links=mp.links, plios=mp.plios, input_tensor=g.inputs[0],
        output_tensor=g.outputs[0], tensor_types=types,
        placement=s.placement.to_json() if s.placement is not None else {})


def _check(s: State) -> None:
    assert s.plan is not None
    verify_plan(s.plan, s.device)
    s.plan.resources = peak_usage(check_legality(s.plan, s.device))


PASSES: list[tuple[str, Callable[[State], None]]] = [
    ("legalise", _legalise),
    ("precision", _precision),
    ("parallelism", _parallelism),
    ("legalise-boundaries", _legalise_boundaries),
    ("partition", _partition),
    ("place", _place),
    ("memory-plan", _memory_plan),
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
