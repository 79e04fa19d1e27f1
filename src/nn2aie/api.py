"""High-level API used by the CLI and by users: compile a model to a project, emulate it, check it.

    from nn2aie.api import compile_model, emulate
    result = compile_model("jet.onnx", "out/jet")
    y = emulate("jet.onnx", x_float)
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nn2aie import __version__, atomic, progress
from nn2aie.errors import BadFileError, IllegalConfigError, Nn2aieError
from nn2aie.frontends.loader import LoadedModel, load_model
from nn2aie.ir import host
from nn2aie.ir.evaluate import cast_input, input_pre_cast, overflow_range
from nn2aie.ir.physical import PhysicalPlan
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.kernels.registry import family_named
from nn2aie.numerics import quantize_float32
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.perf.model import model_performance
from nn2aie.sim import emulator
from nn2aie.sim.emulator import Emulator

if TYPE_CHECKING:
    from nn2aie.sim.native import NativeReport

PROJECT_MARKER = "nn2aie-project.json"  # identifies a directory nn2aie wrote (safe to replace)
DEFAULT_PROJECT_EVENTS = 64


def quantize_input(x: np.ndarray, t: FixedType | ScaledType, pre: FixedType | None = None) -> np.ndarray:
    """Float inputs -> exact input codes (in float32) with the input type's own rounding and overflow (after a
    first cast into ``pre`` when the source model casts twice, see ``ir.evaluate.INPUT_PRE_CAST``)."""
    if isinstance(t, ScaledType):  # a float scale: the source's own float32 quantizer
        return t.quantize_float32(x)
    if pre is None and t.rounding == "RND_CONV" and t.overflow != "WRAP":  # QuantizeLinear / Quant(ROUND)
        lo, hi = overflow_range(t)
        return quantize_float32(x, t.frac, lo, hi)
    return cast_input(x, t, pre, "inputs").astype(np.float32)  # any other input type (e.g. hls4ml's)


def dequantize_output(codes: np.ndarray, t: FixedType | ScaledType) -> np.ndarray:
    """Output codes -> the float32 values the source framework gives for them."""
    if isinstance(t, ScaledType):
        return t.dequantize_float32(codes)
    return np.multiply(codes, np.float32(t.lsb), dtype=np.float32)


def options_json(options: CompileOptions) -> dict:
    """The options as written into projects and summaries (``input_types`` only when given, so that projects of
    models that need none stay as they were)."""
    out = asdict(options)
    if not out.get("input_types"):
        out.pop("input_types", None)
    return out


def real_bounds(t: FixedType | ScaledType) -> tuple[float, float]:
    """Real values of a type's smallest and largest code."""
    if isinstance(t, ScaledType):
        return t.real_bounds()
    return t.min_code * t.lsb, t.max_code * t.lsb


@dataclass
class Compiled:
    model: LoadedModel
    plan: PhysicalPlan
    options: CompileOptions
    dump: str | None = None
    _cached_emulator: Emulator | None = field(default=None, repr=False, compare=False)

    # -- graph inputs and outputs (several: lists in the model's order; one: the single-value properties) -------
    @property
    def input_names(self) -> list[str]:
        """The model's names of the graph inputs (e.g. the ONNX input names), in order."""
        return [self.model.graph.tensor(t).origin or t for t in self.plan.input_tensors]

    @property
    def output_names(self) -> list[str]:
        return [self.model.graph.tensor(t).origin or t for t in self.plan.output_tensors]

    @property
    def input_types(self) -> list[FixedType]:
        return [self.plan.tensor_types[t] for t in self.plan.input_tensors]

    @property
    def output_types(self) -> list[FixedType]:
        return [self.plan.tensor_types[t] for t in self.plan.output_tensors]

    @property
    def input_widths(self) -> list[int]:
        """Input codes per event of each input (the tensor flattened)."""
        return [int(np.prod(self.plan.tensor_shapes[t])) for t in self.plan.input_tensors]

    @property
    def output_widths(self) -> list[int]:
        return [int(np.prod(self.plan.tensor_shapes[t])) for t in self.plan.output_tensors]

    @property
    def single_io(self) -> bool:
        return len(self.plan.input_tensors) == 1 and len(self.plan.output_tensors) == 1

    @property
    def input_type(self) -> FixedType:
        return self.plan.tensor_types[self.plan.input_tensor]

    @property
    def input_pre_type(self) -> FixedType | None:
        """A type the host casts inputs into before ``input_type`` (None: one cast)."""
        return input_pre_cast(self.model.graph)

    @property
    def input_width(self) -> int:
        """Input codes per event (the input tensor flattened)."""
        return int(np.prod(self.plan.tensor_shapes[self.plan.input_tensor]))

    @property
    def output_width(self) -> int:
        return int(np.prod(self.plan.tensor_shapes[self.plan.output_tensor]))

    @property
    def output_type(self) -> FixedType:
        return self.plan.tensor_types[self.plan.output_tensor]

    def input_list(self, x) -> list[np.ndarray]:
        """User inputs as one array per graph input: an array (one input), a list / tuple in the model's input
        order, or a dict by input name."""
        names = self.input_names
        if isinstance(x, dict):
            unknown = sorted(set(x) - set(names))
            missing = [n for n in names if n not in x]
            if unknown or missing:
                raise IllegalConfigError("inputs", f"got {sorted(x)}, the model's inputs are {names}",
                                         "pass one array per input, keyed by the input names")
            return [np.asarray(x[n]) for n in names]
        if isinstance(x, (list, tuple)) and len(names) == 1 and not (len(x) == 1 and isinstance(x[0], np.ndarray)):
            return [np.asarray(x)]  # one input given as nested lists of rows
        if isinstance(x, (list, tuple)):
            if len(x) != len(names):
                raise IllegalConfigError("inputs", f"got {len(x)} arrays, the model has {len(names)} inputs "
                                         f"({', '.join(names)})", "pass one array per input, in this order")
            return [np.asarray(v) for v in x]
        if len(names) != 1:
            raise IllegalConfigError("inputs", f"got one array, the model has {len(names)} inputs "
                                     f"({', '.join(names)})", "pass a list (in this order) or a dict by name")
        return [np.asarray(x)]

    def _outputs(self, ys: list[np.ndarray]):
        return ys[0] if len(ys) == 1 else ys

    def quantize(self, x):
        """Float inputs -> input codes, exactly as the model's input quantizer (round half even, saturate;
        +-inf saturate like QuantizeLinear; NaN is refused). Several inputs: a list of code arrays."""
        return self._outputs([q.astype(np.int64) for q in self._quantize32_all(x)])

    def _quantize32_all(self, x) -> list[np.ndarray]:
        xs = self.input_list(x)
        pre = self.input_pre_type if len(xs) == 1 else None
        out = []
        for name, tensor, t, k, v in zip(self.input_names, self.plan.input_tensors, self.input_types,
                                         self.input_widths, xs, strict=True):
            where = "inputs" if len(xs) == 1 else f"input {name}"
            if v.ndim > 2 and v.shape[0] and int(np.prod(v.shape[1:])) == k:  # [events, *input shape]
                v = v.reshape(v.shape[0], k)
            if v.ndim == 1:
                v = v[None, :]
            if v.ndim != 2 or v.shape[1] != k:
                raise IllegalConfigError(where, f"expected an array of shape [events, {k}], got {list(v.shape)}",
                                         f"save one row of {k} features per event")
            if not np.issubdtype(v.dtype, np.number) or np.isnan(v).any():
                raise IllegalConfigError(where, "contain NaN (or are not numbers)", "clean the inputs first")
            out.append(self._host_quantize(tensor, v, t, pre))
        if len({v.shape[0] for v in out}) > 1:
            raise IllegalConfigError("inputs", f"have different numbers of events {[v.shape[0] for v in out]}",
                                     "pass the same events for every input")
        return out

    def _quantize32(self, x: np.ndarray) -> np.ndarray:
        return self._quantize32_all(x)[0]

    def _host_quantize(self, tensor: str, v: np.ndarray, t, pre) -> np.ndarray:
        """The source's float steps before its input quantizer (ir/host.py), then that quantizer."""
        prologue = host.prologues(self.model.graph.source).get(tensor)
        if prologue is None:
            return quantize_input(v, t, pre)
        v = prologue.apply_steps(v)
        if prologue.quantizer == "bipolar":
            codes = host.bipolar_codes(v)
        elif prologue.quantizer == "quantize_linear":
            codes = t.quantize_linear_float32(v)
        elif prologue.quantizer == "user":  # the input type the user gave for a float input (input_types)
            codes = cast_input(v, t, None, "inputs").astype(np.float32)
        else:
            codes = quantize_input(v, t, pre)
        return prologue.to_array_order(codes)  # channels first -> channels last (conv models)

    def _host_dequantize(self, tensor: str, codes: np.ndarray, t) -> np.ndarray:
        """Output codes -> the source's float values: dequantized, then its float steps (ir/host.py)."""
        y = dequantize_output(codes, t)
        epilogue = host.epilogues(self.model.graph.source).get(tensor)
        return y if epilogue is None else epilogue.apply_steps(y)

    def host_stages(self) -> dict:
        """What the host computes in float around the array, per graph input / output (for the summary)."""
        source = self.model.graph.source
        names = {t: self.model.graph.tensor(t).origin or t for t in [*self.plan.input_tensors,
                                                                     *self.plan.output_tensors]}
        return ({f"input {names.get(t, t)}": p.describe() for t, p in host.prologues(source).items()}
                | {f"output {names.get(t, t)}": e.describe() for t, e in host.epilogues(source).items()})

    def dequantize(self, codes):
        if isinstance(codes, list):
            return [self._host_dequantize(tn, c, t) for tn, c, t in zip(self.plan.output_tensors, codes,
                                                                        self.output_types, strict=True)]
        return self._host_dequantize(self.plan.output_tensor, codes, self.output_type)

    def emulate_codes(self, codes):
        """Input codes (an array, or a list per input) -> output codes (an array, or a list per output)."""
        emu = self._emulator()
        if self.single_io and not isinstance(codes, (list, tuple)):
            return emu.run(codes)
        xs = list(codes) if isinstance(codes, (list, tuple)) else [codes]
        if len(xs) != len(self.plan.input_tensors):
            raise IllegalConfigError("input codes", f"got {len(xs)} arrays, the model has "
                                     f"{len(self.plan.input_tensors)} inputs", "pass one array per input")
        ys = emu.run_many(dict(zip(self.plan.input_tensors, xs, strict=True)))
        return self._outputs([ys[t] for t in self.plan.output_tensors])

    def emulate(self, x):
        """Float inputs -> dequantized float32 outputs of the placed design (codes stay in float32 on the way:
        they come from the model's own quantizer, so the range check of ``Emulator.run`` is not needed).

        One input: an array [events, ...]; several: a list in the model's input order or a dict by name. Returns
        an array, or a list in the model's output order when it has several outputs."""
        codes = self._quantize32_all(x)
        emu = self._emulator()
        events = codes[0].shape[0]
        ys = emu.run_unchecked_many(dict(zip(self.plan.input_tensors, codes, strict=True)))
        return self._outputs([self._host_dequantize(t, emu.trim(ys[t], events, t), typ)
                              for t, typ in zip(self.plan.output_tensors, self.output_types, strict=True)])

    def native_cosim(self, x, **kwargs) -> NativeReport:
        """Compile the generated kernel C++ with the host C++ compiler (AIE-API emulation headers) and run every
        tile on float inputs ``x``, quantized as in ``emulate``; each tile's output is compared bit for bit with
        the emulator. Keyword arguments go to ``nn2aie.sim.native.run_native_cosim``."""
        from nn2aie.sim.native import run_native_cosim

        return run_native_cosim(self.plan, self.quantize(x), **kwargs)

    def _emulator(self) -> Emulator:
        if self._cached_emulator is None:
            self._cached_emulator = Emulator(self.plan)
        return self._cached_emulator

    def reference(self, x):
        """The source framework's float outputs (a list per output when the model has several). If it cannot run
        a model nn2aie accepted, that is a typed error (the design cannot be verified), not the framework's own
        exception."""
        xs = [np.asarray(v, dtype=np.float32) for v in self.input_list(x)]
        try:
            if len(xs) == 1 and len(self.plan.output_tensors) == 1:
                return np.asarray(self.model.reference(xs[0]), dtype=np.float32)
            ys = self.model.reference(xs if len(xs) > 1 else xs[0])
            ys = ys if isinstance(ys, (list, tuple)) else [ys]
            return self._outputs([np.asarray(y, dtype=np.float32) for y in ys])
        except Nn2aieError:
            raise
        except Exception as exc:  # onnxruntime / qonnx refusing the model
            text = " ".join(str(exc).split())[:400] or type(exc).__name__
            raise BadFileError(f"model {self.model.graph.name}", f"compiled, but the reference "
                               f"({self.model.framework}) cannot run it to check bit-exactness "
                               f"({type(exc).__name__}: {text})",
                               "check the model with its source framework, or compile with --no-check") from exc

    def summary(self, checked: dict | None = None) -> dict:
        plan = self.plan
        stages = self.host_stages()
        g = self.model.graph
        layers = []
        for e in plan.layers:
            op = g.op(e.op)
            layers.append({
                "name": op.name, "input_type": g.tensor(g.activation_inputs(op)[0]).type.describe(),
                "output_type": g.tensor(op.outputs[0]).type.describe(), "cas_length": e.cas_length,
                "cas_num": e.cas_num, "tiles": e.tiles, "override": e.override,
                "tiles_at": sorted([k.col, k.row] for k in plan.kernels_of(e.op)),
            } | family_named(e.family).summary(g, op, e))
        return {
            "generator": f"nn2aie {__version__}",
            "model": {"name": g.name, "framework": self.model.framework, "file": g.source.get("file", "")},
            "device": plan.device, "batch": plan.batch,
            "options": {k: v for k, v in options_json(self.options).items() if k != "overrides"}
            | {"overrides": dict(sorted(self.options.overrides.items()))},
            "tiles_used": len(plan.kernels),
            "memory_tiles_used": len(plan.shared_buffers),
            "plios": [p.to_json() for p in plan.plios],
            "placement": plan.placement,
            "resources": plan.resources,
            "performance": model_performance(plan).to_json(),
            "layers": layers,
            "input_type": self.input_types[0].describe(),
            "output_type": self.output_types[0].describe(),
            "inputs": [{"name": n, "type": t.describe(), "shape": list(self.plan.tensor_shapes[tn])}
                       for n, t, tn in zip(self.input_names, self.input_types, self.plan.input_tensors, strict=True)],
            "outputs": [{"name": n, "type": t.describe(), "shape": list(self.plan.tensor_shapes[tn])}
                        for n, t, tn in zip(self.output_names, self.output_types, self.plan.output_tensors,
                                            strict=True)],
            "bit_exact_check": checked or {},
        } | ({"host_stages": stages} if stages else {})


def compile_loaded(model: LoadedModel, options: CompileOptions | None = None, dump_after: str | None = None,
                   progress: Callable[[str], None] | None = None) -> Compiled:
    options = options or CompileOptions()
    plan, dump = compile_graph(model.graph, options, dump_after=dump_after, progress=progress)
    return Compiled(model, plan, options, dump)


def compile_path(model_path: str | pathlib.Path, options: CompileOptions | None = None,
                 dump_after: str | None = None, progress: Callable[[str], None] | None = None) -> Compiled:
    options = options or CompileOptions()
    return compile_loaded(load_model(model_path, input_types=options.input_types), options, dump_after, progress)


def default_inputs(compiled: Compiled, events: int = DEFAULT_PROJECT_EVENTS, seed: int = 0):
    """Seeded inputs spanning the input type's whole range (including saturating values), as floats (a list
    per input when the model has several)."""
    rng = np.random.default_rng(seed)
    xs = []
    for t, k in zip(compiled.input_types, compiled.input_widths, strict=True):
        lo, hi = real_bounds(t)
        span = hi - lo + (t.scale[0] if isinstance(t, ScaledType) else t.lsb)  # one code more than the range
        x = rng.uniform(lo - span / 4, hi + span / 4, size=(events, k))
        xs.append(x.astype(np.float32))
    return xs[0] if len(xs) == 1 else xs


def events_of(x) -> int:
    """Events in one input array or in a list / dict of them (one per graph input)."""
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], np.ndarray):
        return int(x[0].shape[0])
    return int(np.asarray(x).shape[0])


INTEGER_ALGORITHM_KINDS = ("softmax",)  # float-defined in the sources; nn2aie's integer algorithm (numerics.md)


def check_bit_exact(compiled: Compiled, x: np.ndarray) -> dict:
    """Emulate the placed design and run the source framework on the same float inputs; compare exactly."""
    ours = compiled.emulate(x)
    plan = compiled.plan
    events = events_of(x)
    macs = events * sum(family_named(e.family).useful_ops(e) for e in plan.layers) // plan.batch
    with progress.task(f"reference: {compiled.model.framework} on {events:,} events",
                       enabled=macs >= emulator.PROGRESS_MACS):  # display only
        ref = compiled.reference(x)
    if isinstance(ours, list):  # several outputs: compared side by side, per event
        ref = ref if isinstance(ref, list) else [ref]
        if len(ref) != len(ours):
            raise BadFileError(f"model {compiled.model.graph.name}", f"the reference returned {len(ref)} outputs, "
                               f"the design has {len(ours)}", "check the model with its source framework")
        ours = np.concatenate([o.reshape(events, -1) for o in ours], axis=1)
        ref = np.concatenate([r.reshape(events, -1) for r in ref], axis=1)
    if ref.shape != ours.shape:
        ref = ref.reshape(ours.shape)
    equal_rows = np.all(ours == ref, axis=1)
    first_bad = None
    if not equal_rows.all():
        i = int(np.argmin(equal_rows))
        j = int(np.argmax(ours[i] != ref[i]))
        first_bad = {"event": i, "output": j, "nn2aie": float(ours[i, j]), "reference": float(ref[i, j])}
    # ops the source computes in float and nn2aie by a stated integer algorithm (docs/numerics.md): the design
    # equals nn2aie's logical model exactly; against the float source a few outputs may differ by a code
    integer_algorithms = [op.name for op in compiled.model.graph.ops if op.kind in INTEGER_ALGORITHM_KINDS]
    return {"events": events, "matching_events": int(equal_rows.sum()),
            "outputs": int(ours.size), "matching_outputs": int((ours == ref).sum()),
            "reference": compiled.model.framework, "bit_exact": bool(np.array_equal(ours, ref)),
            "first_mismatch": first_bad} | ({"integer_algorithms": integer_algorithms} if integer_algorithms else {})


# -- project output (atomic) ------------------------------------------------------------------------------
def _is_nn2aie_project(path: pathlib.Path) -> bool:
    return (path / PROJECT_MARKER).is_file()


def prepare_output(out_dir: pathlib.Path, force: bool) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise IllegalConfigError(f"output {out_dir}", "exists and is not a directory", "choose another -o path")
        if any(out_dir.iterdir()) and not _is_nn2aie_project(out_dir) and not force:
            raise IllegalConfigError(f"output {out_dir}", "is a non-empty directory that nn2aie did not write",
                                     "choose an empty or new directory, or pass --force to replace it")


def write_project_atomic(compiled: Compiled, out_dir: str | pathlib.Path, x: np.ndarray | None = None,
                         force: bool = False, checked: dict | None = None, codes: np.ndarray | None = None,
                         marker_extra: dict | None = None) -> dict:
    """Write the Vitis project into a temporary sibling directory, then move it into place.

    ``codes`` (input codes) replace ``x`` for frontends that quantize inputs their own way (hls4ml).
    An error or an interrupt leaves any previous project untouched and no partial directory behind. A process
    killed outright (SIGKILL, power loss) can leave its temporary sibling ``.DIR.nn2aie-tmp-PID-*``; the next
    write to ``DIR`` removes it (and puts a previous project back if the kill came between two renames).
    """
    from nn2aie.codegen.project import write_project

    out_dir = pathlib.Path(out_dir)
    if out_dir.parent.is_dir():
        recover_stale_output(out_dir)
    prepare_output(out_dir, force)
    if codes is None:
        codes = compiled.quantize(default_inputs(compiled) if x is None else x)
    summary = compiled.summary(checked)
    summary["project_events"] = events_of(codes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.sibling(out_dir, "tmp")
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would become the project's; this one follows the umask
    try:
        write_project(compiled.plan, tmp, codes, summary)
        _write_provenance(compiled, tmp, marker_extra or {})
        atomic.replace_dir(tmp, out_dir)
    except BaseException:
        atomic.remove(tmp)
        raise
    return summary


def recover_stale_output(out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Clean up after a compile of ``out_dir`` that was killed: a previous project it had moved aside comes back
    when ``out_dir`` is missing; every other leftover sibling is removed. Returns the removed paths."""
    out_dir = pathlib.Path(out_dir)
    removed = []
    for kind, path in atomic.stale_siblings(out_dir):
        if kind == "old" and not out_dir.exists() and not out_dir.is_symlink() and _is_nn2aie_project(path):
            path.rename(out_dir)
            continue
        atomic.remove(path)
        removed.append(path)
    return removed


def _write_provenance(compiled: Compiled, out: pathlib.Path, marker_extra: dict) -> None:
    """What `nn2aie simulate DIR` needs to rebuild the same plan: the source model (ONNX, or the logical graph
    for frontends without one, e.g. hls4ml) and the options."""
    src = out / "nn2aie"
    src.mkdir(exist_ok=True)
    if compiled.model.proto is not None:
        (src / "model.onnx").write_bytes(compiled.model.proto.SerializeToString(deterministic=True))
    else:
        graph_json = json.dumps(compiled.model.graph.to_json(), indent=1, sort_keys=True)
        (src / "graph.json").write_text(graph_json + "\n")
    options = options_json(compiled.options)
    (src / "options.json").write_text(json.dumps(options, indent=1, sort_keys=True) + "\n")
    marker = {"generator": "nn2aie", "version": __version__, "framework": compiled.model.framework} | marker_extra
    (out / PROJECT_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")


def load_project(project_dir: str | pathlib.Path) -> Compiled:
    """Rebuild the compiled design of a project directory (and check it matches the plan written there)."""
    d = pathlib.Path(project_dir)
    if not _is_nn2aie_project(d):
        raise BadFileError(f"directory {d}", "is not an nn2aie project (no nn2aie-project.json)",
                           "pass a directory written by `nn2aie compile`, or the model file itself")
    try:
        options = CompileOptions(**json.loads((d / "nn2aie" / "options.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise BadFileError(f"{d / 'nn2aie' / 'options.json'}", f"unreadable ({exc})", "recompile the project") from None
    if (d / "nn2aie" / "model.onnx").is_file():
        compiled = compile_path(d / "nn2aie" / "model.onnx", options)
    else:
        compiled = compile_loaded(_graph_model(d / "nn2aie" / "graph.json"), options)
    plan_file = d / "plan.json"
    if plan_file.is_file():
        stored = json.loads(plan_file.read_text())
        if stored != json.loads(json.dumps(compiled.plan.to_json())):
            raise BadFileError(f"{plan_file}", "does not match the plan rebuilt from the project's model",
                               "the project was edited or written by another nn2aie version: recompile it")
    return compiled


def _graph_model(path: pathlib.Path) -> LoadedModel:
    """A project saved as a logical graph (frontends without an ONNX model): its reference is the logical integer
    model, link 2 of the verification chain (the source framework is not available here)."""
    from nn2aie.ir.evaluate import evaluate
    from nn2aie.ir.logical import Graph

    try:
        graph = Graph.from_json(json.loads(path.read_text()))
        graph.verify()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadFileError(f"{path}", f"unreadable ({exc})", "recompile the project") from None

    def reference(x):
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        feeds = {}
        for t, v in zip(graph.inputs, xs, strict=True):
            x_t = graph.tensor(t)
            feeds[t] = quantize_input(np.asarray(v), x_t.type).astype(np.int64).reshape((-1,) + tuple(x_t.shape))
        ys = evaluate(graph, feeds)
        events = len(next(iter(feeds.values())))
        outs = [dequantize_output(ys[t].reshape(events, -1), graph.tensor(t).type) for t in graph.outputs]
        return outs[0] if len(outs) == 1 else outs

    return LoadedModel(graph, graph.source.get("framework", "graph"), None, reference)
