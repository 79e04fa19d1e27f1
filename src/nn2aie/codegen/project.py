"""Write a complete Vitis AIE-ML project (ADF graph, kernels, weights, PLIO data, Makefile) from a physical plan.

Everything is printed from the plan objects the emulator executes: tiling descriptors, kernel weights (already
packed in load order), memory maps and tile coordinates. Output is byte-identical for identical input: plan
order or sorted order everywhere, no time stamps, no absolute paths.

Model-supplied strings (graph, layer and tensor names) can be anything. They appear only in comments, after
``comment_text`` has made them inert, and C++ identifiers are built from plan names through ``c_identifier``.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass

import jinja2
import numpy as np

from nn2aie.codegen import data_files
from nn2aie.devices import get_device
from nn2aie.errors import InternalCheckError
from nn2aie.ir.execution import rows_per_event
from nn2aie.ir.physical import Kernel, PhysicalPlan, SharedBuffer
from nn2aie.ir.tiling import TilingDescriptor
from nn2aie.kernels.family import KernelInstance
from nn2aie.kernels.registry import family_named
from nn2aie.report.picture import placement_pictures

GRAPH_CLASS = "Nn2aieGraph"
GRAPH_INSTANCE = "nn2aie_graph"
RUNTIME_RATIO = 0.9
# ADF / AIE-API element type names (adf.h typedefs)
ADF_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32"}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.codegen", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)

_CXX_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t char8_t class
compl concept const const_cast consteval constexpr constinit continue co_await co_return co_yield decltype
default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template
this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t
while xor xor_eq main adf aie std
""".split())
# Names the emitted sources use unqualified (element types, kernel classes and their namespaces, weight and bias
# arrays, macros, adf::graph's member functions, GCC's legacy predefined macros): a graph member of the same name
# would hide them (graph.h) or be replaced by the preprocessor, so identifiers never take one of them.
_SHADOWING = re.compile(r"u?int(8|16|32|64)(_t)?|u?acc(32|48|64|80)|bfloat16|c(int|float)\w*|float\d*|DenseRole|"
                        r"DenseL\d+|dense_l\d+|[WB]_\w+|NN2AIE_\w+|REGISTER_\w+|chess_\w+|ITERATIONS|"
                        r"init|run|wait|end|resume|update|read|update_async|read_async|graph|linux|unix|i386")


# -- text safety ------------------------------------------------------------------------------------------
def comment_text(text: object, limit: int = 120) -> str:
    """Make any string inert inside //, /* */, # and Markdown text: printable ASCII only (no backslash, no
    newline, no ``*/``, no trigraph), anything else as <U+XXXX>, cut to ``limit`` characters."""
    out = []
    for ch in str(text):
        if " " <= ch <= "~" and ch not in "\\`":
            out.append(ch)
        else:
            out.append(f"<U+{ord(ch):04X}>")
    s = "".join(out).replace("*/", "*<U+002F>").replace("/*", "<U+002F>*")
    s = s.replace("??", "?<U+003F>")  # no trigraph (??/ ends a // comment with a line splice in C++14 and older)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def c_identifier(name: str) -> str:
    """A valid, non-reserved C++ identifier derived from ``name`` (not necessarily unique)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    s = re.sub(r"_+", "_", s).strip("_")[:60].rstrip("_") or "x"  # cut first: the cut name is the one checked
    if s[0].isdigit() or s in _CXX_RESERVED or _SHADOWING.fullmatch(s):
        s = "n_" + s
    return s


class _Names:
    """Allocates unique identifiers in one C++ scope."""

    def __init__(self) -> None:
        self.used: set[str] = set(_CXX_RESERVED) | {GRAPH_CLASS, GRAPH_INSTANCE}

    def take(self, name: str, prefix: str = "") -> str:
        base = c_identifier(prefix + name)
        ident, i = base, 1
        while ident in self.used:
            ident = f"{base}_{i}"
            i += 1
        self.used.add(ident)
        return ident


# -- C++ snippets -----------------------------------------------------------------------------------------
def _ints(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def tiling_text(t: TilingDescriptor) -> str:
    """``adf::tiling({...})`` with designated initialisers in adf::tiling_parameters declaration order."""
    fields = [f".buffer_dimension = {_ints(t.buffer_dimension)}", f".tiling_dimension = {_ints(t.tiling_dimension)}",
              f".offset = {_ints(t.offset)}"]
    if t.tile_traversal:
        trav = ", ".join(f"{{.dimension = {int(tr.dimension)}, .stride = {int(tr.stride)}, .wrap = {int(tr.wrap)}}}"
                         for tr in t.tile_traversal)
        fields.append(f".tile_traversal = {{{trav}}}")
    if t.boundary_dimension:
        fields.append(f".boundary_dimension = {_ints(t.boundary_dimension)}")
    return "adf::tiling({" + ", ".join(fields) + "})"


def _number(x: float) -> str:
    return format(float(x), ".10g")


def _address(col: int, row: int, offset: int) -> str:
    return f"adf::address({col}, {row}, {offset})"


def _memtile_half(sb: SharedBuffer) -> int:
    return sb.buffer_bytes


@dataclass
class _Section:
    title: str
    lines: list[str]


class _GraphWriter:
    def __init__(self, plan: PhysicalPlan):
        self.plan = plan
        self.names = _Names()
        self.layer_index = {e.op: i for i, e in enumerate(plan.layers)}
        self.layers = {e.op: e for e in plan.layers}
        self.kernels = {k.name: k for k in plan.kernels}
        if len(self.kernels) != len(plan.kernels):
            raise InternalCheckError("plan kernels", "two kernels share a name", "report this")
        for k in plan.kernels:
            if k.layer not in self.layers:
                raise InternalCheckError(f"kernel {k.name}", f"belongs to unknown layer {k.layer!r}", "report this")
        self.k_ident = {k.name: self.names.take(k.name) for k in plan.kernels}
        self.p_ident = {p.name: self.names.take(p.name) for p in plan.plios}
        self.s_ident = {sb.name: self.names.take(sb.name, "mt_") for sb in plan.shared_buffers}
        self.families = {e.op: family_named(e.family) for e in plan.layers}
        self.instances = {
            k.name: self.families[k.layer].instance(self.layers[k.layer], self.layer_index[k.layer], k,
                                                    self.k_ident[k.name])
            for k in plan.kernels}
        self.plio_by_name = {p.name: p for p in plan.plios}
        self.plio_file = plio_files(plan, self.p_ident)
        self.direct_dst = {link.dst: link for link in plan.direct_links}
        self.direct_src = {link.src: link for link in plan.direct_links}

    # -- endpoint port expressions -------------------------------------------------------------------
    @staticmethod
    def _index(ports: dict[str, int], port: str, name: str, what: str) -> int:
        """k.in[] / k.out[] index of a data port ("" = the kernel's only one)."""
        if not port and len(ports) == 1:
            return next(iter(ports.values()))
        if port not in ports:
            raise InternalCheckError(f"kernel {name}", f"has no {what} port {port!r}", "report this")
        return ports[port]

    def _out_index(self, name: str, port: str = "") -> int:
        return self._index(self._instance(name).out_ports, port, name, "output")

    def _in_index(self, name: str, port: str = "") -> int:
        return self._index(self._instance(name).in_ports, port, name, "input")

    def _source_port(self, kind: str, name: str, port: str = "") -> str:
        """Expression of the port that sends data into a shared buffer."""
        if kind == "plio":
            return f"{self._plio(name, 'in')}.out[0]"
        return f"{self.k_ident[name]}.out[{self._out_index(name, port)}]"

    def _sink_port(self, kind: str, name: str, port: str = "") -> str:
        if kind == "plio":
            return f"{self._plio(name, 'out')}.in[0]"
        return f"{self.k_ident[name]}.in[{self._in_index(name, port)}]"

    def _plio(self, name: str, direction: str) -> str:
        p = self.plio_by_name.get(name)
        if p is None or p.direction != direction:
            raise InternalCheckError(f"PLIO {name}", f"is not an {direction}put PLIO of the plan", "report this")
        return self.p_ident[name]

    def _instance(self, name: str) -> KernelInstance:
        if name not in self.instances:
            raise InternalCheckError(f"endpoint kernel:{name}", "no kernel of that name", "report this")
        return self.instances[name]

    # -- sections ------------------------------------------------------------------------------------
    def members(self) -> list[str]:
        out = []
        for p in self.plan.plios:
            kind = "adf::input_plio" if p.direction == "in" else "adf::output_plio"
            out.append(f"{kind} {self.p_ident[p.name]};")
        for k in self.plan.kernels:
            out.append(f"adf::kernel {self.k_ident[k.name]};")
        for sb in self.plan.shared_buffers:
            out.append(f"adf::shared_buffer<{ADF_TYPES[sb.dtype]}> {self.s_ident[sb.name]};")
        return out

    def plio_lines(self) -> list[str]:
        lines = []
        for p in self.plan.plios:
            kind = "adf::input_plio" if p.direction == "in" else "adf::output_plio"
            lines.append(f"{self.p_ident[p.name]} = {kind}::create(\"{self.p_ident[p.name]}\", "
                         f"adf::plio_{int(p.bits)}_bits, \"{self.plio_file[p.name]}\", {_number(p.freq_mhz)});")
        return lines

    def kernel_lines(self) -> list[str]:
        lines = []
        for k in self.plan.kernels:
            e, ident, inst = self.layers[k.layer], self.k_ident[k.name], self.instances[k.name]
            lines.append(f"// {ident}: layer {comment_text(k.layer, 60)}, chain {k.chain}, position {k.position} "
                         f"{self.families[k.layer].describe_kernel(e, k)}")
            lines.append(f"{ident} = adf::kernel::create_object<{inst.type_name}>(")
            lines.append("    " + ",\n    ".join(inst.ctor_args) + ");")
            lines.append(f"adf::source({ident}) = \"{inst.source}\";")
            lines.append(f"adf::runtime<adf::ratio>({ident}) = {RUNTIME_RATIO};")
        return [piece for line in lines for piece in line.split("\n")]

    def cascade_lines(self) -> list[str]:
        lines = []
        for e in self.plan.layers:
            ks = sorted(self.plan.kernels_of(e.op), key=lambda k: (k.chain, k.position))
            for b in ks:
                if b.cascade_from is None:
                    continue
                a = self.kernels[b.cascade_from]
                ia, ib = self.instances[a.name], self.instances[b.name]
                if a.cascade_to != b.name or ia.cascade_out_port is None or ib.cascade_in_port is None:
                    raise InternalCheckError(f"cascade {a.name} -> {b.name}", "roles or positions do not chain",
                                             "report this")
                lines.append(f"adf::connect<adf::cascade>({self.k_ident[a.name]}.out[{ia.cascade_out_port}], "
                             f"{self.k_ident[b.name]}.in[{ib.cascade_in_port}]);")
        return lines

    def shared_buffer_lines(self) -> list[str]:
        lines = []
        for sb in self.plan.shared_buffers:
            s = self.s_ident[sb.name]
            rows = sb.dims[1] if len(sb.dims) > 1 else 1
            lines.append(f"// {comment_text(sb.name, 60)}: tensor {comment_text(sb.tensor, 60)}, columns "
                         f"[{sb.col_start}, {sb.col_start + sb.dims[0]}) x {rows} rows, "
                         f"memory tile ({sb.col}, {sb.row})")
            lines.append(f"{s} = adf::shared_buffer<{ADF_TYPES[sb.dtype]}>::create("
                         f"{_ints(sb.dims)}, {len(sb.writers)}, {len(sb.readers)});")
            lines.append(f"adf::num_buffers({s}) = {sb.num_buffers};")
            for i, acc in enumerate(sb.writers):
                if len(acc.endpoints) != 1:
                    raise InternalCheckError(f"buffer {sb.name} writer {i}", "needs exactly one source endpoint",
                                             "report this")
                ep = acc.endpoints[0]
                lines.append(f"adf::connect({self._source_port(ep.kind, ep.name, ep.port)}, {s}.in[{i}]);")
                lines.append(f"adf::write_access({s}.in[{i}]) = {tiling_text(acc.tiling)};")
            for j, acc in enumerate(sb.readers):
                for ep in acc.endpoints:  # several endpoints: one port broadcast to all of them
                    lines.append(f"adf::connect({s}.out[{j}], {self._sink_port(ep.kind, ep.name, ep.port)});")
                lines.append(f"adf::read_access({s}.out[{j}]) = {tiling_text(acc.tiling)};")
        return lines

    def direct_lines(self) -> list[str]:
        lines = []
        for link in self.plan.direct_links:
            how = ("one buffer in the producer's memory, read by its neighbour"
                   if link.in_place else "tile-to-tile DMA")
            lines.append(f"// tensor {comment_text(link.tensor, 60)}: {how}")
            lines.append(f"adf::connect({self.k_ident[link.src]}.out[{self._out_index(link.src, link.src_port)}], "
                         f"{self.k_ident[link.dst]}.in[{self._in_index(link.dst, link.dst_port)}]);")
        return lines

    def location_lines(self) -> list[str]:
        lines = []
        for k in self.plan.kernels:
            ident, inst = self.k_ident[k.name], self.instances[k.name]
            mem = {b.name: b for b in k.memory}
            c, r = k.col, k.row
            lines.append(f"adf::location<adf::kernel>({ident}) = adf::tile({c}, {r});")
            for i, pname in enumerate(inst.params):
                b = self._alloc(k, mem, pname)
                lines.append(f"adf::location<adf::parameter>({ident}.param[{i}]) = {_address(c, r, b.offset)};"
                             f"  // {pname}, {b.size} B")
            fam = self.families[k.layer]
            in_place = {(link.dst_port, link.src) for link in self.plan.direct_links
                        if link.dst == k.name and link.in_place}
            for port, index in inst.in_ports.items():
                src = next((s for p, s in in_place if p in ("", port)), None)
                if src is not None:
                    lines.append(f"// {ident}.in[{index}] is {self.k_ident[src]}'s output buffer (shared memory, "
                                 "constrained there)")
                    continue
                ping_name, pong_name = fam.input_buffers(port)
                ping, pong = self._alloc(k, mem, ping_name), self._alloc(k, mem, pong_name)
                lines.append(f"adf::location<adf::buffer>({ident}.in[{index}]) = "
                             f"{{{_address(c, r, ping.offset)}, {_address(c, r, pong.offset)}}};")
            for port, index in inst.out_ports.items():
                ping_name, pong_name = fam.output_buffers(port)
                ping, pong = self._alloc(k, mem, ping_name), self._alloc(k, mem, pong_name)
                lines.append(f"adf::location<adf::buffer>({ident}.out[{index}]) = "
                             f"{{{_address(c, r, ping.offset)}, {_address(c, r, pong.offset)}}};")
            stack = self._alloc(k, mem, "stack")
            lines.append(f"adf::location<adf::stack>({ident}) = {_address(c, r, stack.offset)};")
        for p in self.plan.plios:  # the interface column the plan, the performance model and the picture assume
            lines.append(f"adf::location<adf::PLIO>({self.p_ident[p.name]}) = adf::shim({p.col});")
        for sb in self.plan.shared_buffers:
            s = self.s_ident[sb.name]
            half = _memtile_half(sb)
            addrs = ", ".join(_address(sb.col, sb.row, sb.offset + i * half) for i in range(sb.num_buffers))
            lines.append(f"adf::location<adf::buffer>({s}) = {{{addrs}}};")
        return lines

    @staticmethod
    def _alloc(k: Kernel, mem: dict, name: str):
        if name not in mem:
            raise InternalCheckError(f"kernel {k.name}", f"memory map has no {name!r} buffer", "report this")
        return mem[name]


_PLAIN_DATA_FILE = re.compile(r"data/[A-Za-z0-9_]{1,64}\.txt")


def expected_file(file: str) -> str:
    """The file holding what an output PLIO must carry, next to the file the simulator writes."""
    return "data/expected_" + file.removeprefix("data/")


def plio_files(plan: PhysicalPlan, idents: dict[str, str]) -> dict[str, str]:
    """Per PLIO name, its data file relative to the project root: the plan's name when it is a plain, short
    data/*.txt, else one named after the PLIO's C++ identifier (``idents``). Files (expected_* included) are
    unique even on case-insensitive file systems, so no PLIO overwrites another's data."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for p in plan.plios:
        base = p.file if _PLAIN_DATA_FILE.fullmatch(p.file) else f"data/{idents[p.name]}.txt"
        file, i = base, 1
        while {f.lower() for f in (file, expected_file(file))} & used:
            file = f"{base.removesuffix('.txt')}_{i}.txt"
            i += 1
        used |= {file.lower(), expected_file(file).lower()}
        out[p.name] = file
    return out


# -- summary header -------------------------------------------------------------------------------------
def _cascade_count(plan: PhysicalPlan) -> int:
    return sum(1 for k in plan.kernels if k.cascade_from is not None)


def _header(plan: PhysicalPlan, events: int, iterations: int) -> list[str]:
    lines = [
        f"Model : {comment_text(plan.graph_name)}",
        f"Device: {comment_text(plan.device)} (AIE-ML)",
        f"Batch : {plan.batch} rows per graph iteration; data files hold {events} event(s) = {iterations} "
        "iteration(s)",
        f"Plan  : {len(plan.kernels)} kernel(s), {_cascade_count(plan)} cascade(s), {len(plan.shared_buffers)} "
        f"memory-tile buffer(s), {len(plan.direct_links)} direct link(s), {len(plan.plios)} PLIO(s)",
        "Layers:",
    ]
    lines += [f"  l{i} {comment_text(e.op, 40)}: {family_named(e.family).describe(e, i)}"
              for i, e in enumerate(plan.layers)]
    lines += [
        "",
        "Coordinates: adf::tile(col, row) counts compute tiles (row 0 = lowest compute row); memory tiles are",
        "addressed as adf::address(col, row, byte) with their own rows from 0. Cascades run west -> east.",
        "Data movement is printed from the plan's tiling descriptors (plan.json), the same objects nn2aie's",
        "emulator executes.",
    ]
    return lines


# -- data ------------------------------------------------------------------------------------------------
def _design_inputs(plan: PhysicalPlan, inputs_codes) -> dict[str, np.ndarray]:
    """Input codes per graph input: an array (one input) or a list in the plan's input order (None: one
    iteration of zeros)."""
    if inputs_codes is not None and not isinstance(inputs_codes, (list, tuple)):
        inputs_codes = [inputs_codes]
    if inputs_codes is not None and len(inputs_codes) != len(plan.input_tensors):
        raise InternalCheckError("project input codes", f"{len(inputs_codes)} arrays for "
                                 f"{len(plan.input_tensors)} inputs", "report this")
    out = {}
    for i, t in enumerate(plan.input_tensors):
        shape = plan.tensor_shapes.get(t)
        k = int(np.prod(shape)) if shape else plan.layers[0].k  # type: ignore[attr-defined]
        if inputs_codes is None:
            out[t] = np.zeros((plan.batch, k), dtype=np.int64)
            continue
        x = np.asarray(inputs_codes[i])
        if x.ndim != 2 or x.shape[1] != k or not np.issubdtype(x.dtype, np.integer):
            raise InternalCheckError("project input codes", f"expected integer codes [events, {k}], got "
                                     f"{x.dtype} {list(x.shape)}", "report this")
        out[t] = x.astype(np.int64)
    return out


def _design_outputs(plan: PhysicalPlan, xs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per graph output [iterations * batch, n_padded]: what its output PLIOs carry, as the emulator computes it
    (padding rows and columns included)."""
    from nn2aie.sim.emulator import Emulator

    return Emulator(plan).run_many(xs, padded=True)


def _plio_matrix(plan: PhysicalPlan, tensor: str, codes: np.ndarray) -> np.ndarray:
    """[events, codes per event] -> [events * rows per event, codes per row]: the rows a PLIO of ``tensor``
    carries (one per event, or one per leading-axis row of an event)."""
    rpe = rows_per_event(plan.tensor_shapes.get(tensor, ()))
    return codes.reshape(codes.shape[0] * rpe, -1) if rpe > 1 else codes


# -- public ------------------------------------------------------------------------------------------------
def render_project(plan: PhysicalPlan, inputs_codes: np.ndarray | None, summary: dict) -> dict[str, str]:
    """Every project file as {relative path: text} (nothing is written)."""
    if not plan.layers or not plan.kernels:
        raise InternalCheckError("plan", "has no layers or kernels", "report this")
    xs = _design_inputs(plan, inputs_codes)
    n_rows = next(iter(xs.values())).shape[0]
    events = int(n_rows) if inputs_codes is not None else 0
    iterations = data_files.iterations(n_rows, plan.batch)
    model = comment_text(plan.graph_name, 80)
    w = _GraphWriter(plan)
    files: dict[str, str] = {}

    # kernels and weights: only layers that have kernels, only the roles they use
    kernel_files, weight_files, includes = [], [], []
    for i, e in enumerate(plan.layers):
        ks = plan.kernels_of(e.op)
        if not ks:
            continue
        fam = family_named(e.family)
        params = fam.param_headers(e, i)
        for path, text in fam.render(e, i, [(k, w.k_ident[k.name]) for k in ks], comment_text(e.op, 60)).items():
            if files.get("src/" + path, text) != text:  # a shared header is rendered by several layers
                raise InternalCheckError("project", f"two layers render different src/{path}", "report this")
            files["src/" + path] = text
            if path not in params and path not in kernel_files:
                kernel_files.append(path)
        weight_files += params
        includes += fam.includes(e, i)
    includes += weight_files
    sections = [
        _Section("PLIOs (array interface)", w.plio_lines()),
        _Section("kernels: one per compute tile, weights as compiler-allocated parameters", w.kernel_lines()),
        _Section("cascades: partial sums west -> east along each chain", w.cascade_lines()),
        _Section("memory-tile buffers: re-tiling between layers (DMA descriptors from the plan)",
                 w.shared_buffer_lines()),
        _Section("direct kernel-to-kernel buffers", w.direct_lines()),
        _Section("placement and memory (addresses from the plan's per-tile memory maps)", w.location_lines()),
    ]
    sections = [s for s in sections if s.lines]
    files["src/graph.h"] = _ENV.get_template("graph.h.j2").render(
        header=_header(plan, events, iterations), includes=includes, graph_class=GRAPH_CLASS,
        members=w.members(), sections=sections)
    files["src/graph.cpp"] = _ENV.get_template("graph.cpp.j2").render(
        model=model, events=events, iterations=iterations, batch=plan.batch, graph_class=GRAPH_CLASS,
        instance=GRAPH_INSTANCE)

    # PLIO data
    specs = data_files.plio_specs(plan)
    ys = _design_outputs(plan, xs)
    plio_rows_info = []
    for s in specs:
        file = w.plio_file[s.name]
        rpe = rows_per_event(plan.tensor_shapes.get(s.tensor, ()))
        if s.direction == "in":
            rows = data_files.plio_rows(_plio_matrix(plan, s.tensor, xs[s.tensor]), plan.batch * rpe,
                                        s.col_start, s.row_width)
            files[file] = data_files.format_plio_text(rows, s.dtype, s.bits)
        else:
            y = ys[s.tensor]
            rows = data_files.plio_rows(y.reshape(y.shape[0] * rpe, -1) if rpe > 1 else y, plan.batch * rpe,
                                        s.col_start, s.row_width)
            files[expected_file(file)] = data_files.format_plio_text(rows, s.dtype, s.bits)
        plio_rows_info.append({"name": w.p_ident[s.name], "direction": s.direction, "dtype": s.dtype,
                               "bits": s.bits, "col_start": s.col_start, "row_width": s.row_width,
                               "file": file, "expected": expected_file(file)})

    freqs = sorted({float(p.freq_mhz) for p in plan.plios})
    if len(freqs) != 1:
        raise InternalCheckError("plan PLIOs", f"PLIO clocks differ ({freqs})", "report this")
    stack = max(b.size for k in plan.kernels for b in k.memory if b.name == "stack")
    heap = max(b.size for k in plan.kernels for b in k.memory if b.name == "heap")
    files["aie.cfg"] = _ENV.get_template("aie.cfg.j2").render(model=model, stack=stack, heap=heap,
                                                              freq=_number(freqs[0]))
    files["Makefile"] = _ENV.get_template("Makefile.j2").render(model=model, device=comment_text(plan.device),
                                                                part=get_device(plan.device).vitis_part)
    per_line = sorted({f"{data_files.values_per_line(s.bits, s.dtype)} {s.dtype} value(s) per {s.bits}-bit line"
                       for s in specs})
    files["README.md"] = _ENV.get_template("README.md.j2").render(
        model=model, device=comment_text(plan.device), n_kernels=len(plan.kernels),
        n_cascades=_cascade_count(plan), n_shared=len(plan.shared_buffers), n_direct=len(plan.direct_links),
        n_plios=len(plan.plios), batch=plan.batch, iterations=iterations, events=events,
        kernel_files=kernel_files, weight_files=weight_files, plios=plio_rows_info, per_line_text="; ".join(per_line),
        part=get_device(plan.device).vitis_part, perf=summary.get("performance", {}))
    files["summary.json"] = json.dumps(summary, indent=1, sort_keys=True, default=_json_default) + "\n"
    files["plan.json"] = json.dumps(plan.to_json(), indent=1, sort_keys=True, default=_json_default) + "\n"
    return files


def kernel_instances(plan: PhysicalPlan) -> dict[str, tuple[str, KernelInstance]]:
    """Per kernel name: its C++ identifier in graph.h and how graph.h creates it (class type, constructor
    arguments, ports), exactly as ``render_project`` prints them (used by native co-simulation)."""
    w = _GraphWriter(plan)
    return {k.name: (w.k_ident[k.name], w.instances[k.name]) for k in plan.kernels}


PICTURE_FILES = {"png": "report/placement.png", "svg": "report/placement.svg"}


def write_project(plan: PhysicalPlan, out_dir: pathlib.Path, inputs_codes: np.ndarray | None,
                  summary: dict) -> list[pathlib.Path]:
    """Write the project into ``out_dir`` (a fresh directory); returns the written files, sorted.

    ``inputs_codes`` [events, K] become the input PLIO files (None: one iteration of zeros); data/expected_*.txt
    hold what the emulator computes for them; the placement picture goes to report/placement.{png,svg}.
    """
    out_dir = pathlib.Path(out_dir)
    files: dict[str, str | bytes] = dict(render_project(plan, inputs_codes, summary))
    pictures = placement_pictures(plan)
    files[PICTURE_FILES["png"]], files[PICTURE_FILES["svg"]] = pictures["png"], pictures["svg"]
    written = []
    for rel in sorted(files):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        content = files[rel]
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.PurePath):
        return obj.as_posix()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
