"""Native co-simulation of the generated kernel C++ (no Vitis needed).

For a placed design, the project is rendered in memory (``render_project``: the very text ``nn2aie compile``
writes), each layer's kernel source is compiled once (all cascade roles of the layer in one binary) with a host
C++17 compiler against the AIE-API emulation headers in ``include/``, in one translation unit with a small
generated driver (``templates/driver.cc.j2``) that includes it verbatim. Every kernel instance is run over all
graph iterations in one process: its input windows and cascade-in words come from the emulator's
``Trace``, its weights and bias from the generated weights header through the constructor arguments graph.h uses.
Its output window (or cascade-out words) is compared bit for bit with the Trace.

Binaries are cached by a hash of everything that goes into them (sources, emulation headers, compiler, flags) in
``$NN2AIE_NATIVE_CACHE`` or a per-user directory under the system temp dir. ``$NN2AIE_CXX`` picks the compiler
(default ``g++``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from nn2aie.errors import IllegalConfigError, InternalCheckError, MissingToolError
from nn2aie.ir.execution import OpExec, ceil_div
from nn2aie.ir.physical import Kernel, PhysicalPlan
from nn2aie.kernels.family import KernelInstance, OpFamily
from nn2aie.kernels.registry import family_named
from nn2aie.sim.emulator import Emulator, Trace

INCLUDE_DIR = pathlib.Path(__file__).resolve().parent / "include"
CXX_FLAGS = ("-std=c++17", "-O1", "-DAIE_EMU_CHECK_ACC_RANGE=1", "-DAIE_EMU_CHECK_ALIGNMENT=1",
             "-DAIE_EMU_CHECK_VECTOR_SIZES=1")
DRIVER_NAME = "nn2aie_driver.cc"
TRACE_BUDGET = 1 << 24  # values recorded per chunk of graph iterations (int64: 128 MB)


# -- results ---------------------------------------------------------------------------------------------------
@dataclass
class KernelResult:
    """Native run of one kernel instance compared with the emulator."""

    kernel: str
    layer: str
    layer_index: int
    tile: tuple[int, int]
    role: str
    output: str  # "buffer" (output codes) or "cascade" (accumulator lanes)
    match: bool
    compared: int  # values compared (iterations x window)
    mismatches: int = 0
    first_index: int | None = None  # first differing value: flat index over all iterations, buffer/cascade order
    iteration: int | None = None  # ... as graph iteration and index inside that iteration's window
    element: int | None = None
    position: str | None = None  # ... and what that element is (row/column, or cascade word/lane)
    got: int | None = None  # native value
    want: int | None = None  # emulator value
    error: str | None = None  # the native run failed (message of the emulation or the driver)

    def describe(self) -> str:
        where = f"tile {self.tile} {self.kernel} ({self.role}) of layer l{self.layer_index} {self.layer}"
        if self.error is not None:
            return f"{where}: native run failed: {self.error}"
        if self.match:
            return f"{where}: {self.compared} values match"
        return (f"{where}: first difference at {self.output} value {self.first_index} (iteration {self.iteration}, "
                f"{self.position}): native {self.got}, emulator {self.want}; {self.mismatches} of {self.compared} "
                "values differ")


@dataclass
class NativeReport:
    kernels: list[KernelResult]
    events: int
    iterations: int
    compiler: str
    builds: int  # binaries compiled now
    cached: int  # binaries taken from the cache
    compile_s: float
    run_s: float
    layers: list[str] = field(default_factory=list)  # layer names in plan order

    @property
    def all_match(self) -> bool:
        return all(r.match for r in self.kernels)

    @property
    def mismatched(self) -> list[KernelResult]:
        return [r for r in self.kernels if not r.match]

    def lines(self) -> list[str]:
        """Compact text: one line per layer when all its tiles match, one line per failing tile otherwise."""
        n_bin = self.builds + self.cached
        out = [f"native co-simulation: {len(self.kernels)} kernel(s) in {len(self.layers)} layer(s), "
               f"{self.iterations} graph iteration(s) ({self.events} event(s)); {n_bin} binar"
               f"{'y' if n_bin == 1 else 'ies'} ({self.builds} compiled in {self.compile_s:.1f} s, {self.cached} "
               f"cached) with {self.compiler}; runs {self.run_s:.1f} s"]
        for i, name in enumerate(self.layers):
            rs = [r for r in self.kernels if r.layer_index == i]
            if not rs:
                continue
            bad = [r for r in rs if not r.match]
            if not bad:
                out.append(f"  l{i} {name}: all {len(rs)} tile(s) match bit for bit "
                           f"({sum(r.compared for r in rs)} values)")
                continue
            out.append(f"  l{i} {name}: {len(bad)} of {len(rs)} tile(s) MISMATCH")
            out += ["    " + r.describe() for r in bad]
        out.append("native co-simulation: " + ("all tiles match the emulator bit for bit" if self.all_match else
                                               f"{len(self.mismatched)} tile(s) differ from the emulator"))
        return out

    def format(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> dict:
        d = asdict(self)
        d["all_match"] = self.all_match
        return d


# -- toolchain -------------------------------------------------------------------------------------------------
def find_compiler(cxx: str | None = None) -> str:
    """Path of the C++17 compiler: ``cxx``, else ``$NN2AIE_CXX``, else g++."""
    name = cxx or os.environ.get("NN2AIE_CXX") or "g++"
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            "native co-simulation", f"the C++ compiler {name!r} was not found on PATH",
            "install a C++17 compiler (GCC's g++: `sudo apt-get install g++` on Debian/Ubuntu, `sudo dnf install "
            "gcc-c++` on Fedora, Xcode command line tools on macOS) or point NN2AIE_CXX at one")
    return path


@functools.lru_cache(maxsize=8)
def compiler_version(path: str) -> str:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise MissingToolError("native co-simulation", f"cannot run the C++ compiler {path} ({exc})",
                               "install a working g++ or point NN2AIE_CXX at one") from None
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0] if first else pathlib.Path(path).name


def default_cache_dir() -> pathlib.Path:
    env = os.environ.get("NN2AIE_NATIVE_CACHE")
    if env:
        return pathlib.Path(env)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return pathlib.Path(tempfile.gettempdir()) / f"nn2aie-native-cache-{uid}"


@functools.lru_cache(maxsize=1)
def _header_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(INCLUDE_DIR.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(INCLUDE_DIR).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# -- build -----------------------------------------------------------------------------------------------------
@dataclass
class _Layer:
    index: int
    spec: OpExec
    family: OpFamily
    kernels: list[Kernel]
    sources: dict[str, str]  # path relative to src/ -> text (kernel .h/.cc, parameter headers, driver)
    binary: pathlib.Path | None = None
    cached: bool = False


def _layer_sources(files: dict[str, str], e: OpExec, fam: OpFamily, index: int) -> dict[str, str]:
    out = {}
    for rel in fam.native_sources(e, index):
        key = "src/" + rel
        if key not in files:
            raise InternalCheckError(f"native co-simulation of layer {index}", f"the rendered project has no {key}",
                                     "report this")
        out[rel] = files[key]
    return out


def driver_source(plan: PhysicalPlan, index: int, kernels: list[Kernel],
                  instances: dict[str, tuple[str, KernelInstance]] | None = None) -> str:
    """The C++ driver of layer ``index``: one entry per kernel instance, in ``kernels`` order. ``instances``:
    ``nn2aie.codegen.project.kernel_instances(plan)`` when the caller has it already."""
    from nn2aie.codegen.project import kernel_instances

    instances = instances if instances is not None else kernel_instances(plan)
    e = plan.layers[index]
    entries = []
    for j, k in enumerate(kernels):
        _, inst = instances[k.name]
        entries.append({"index": j, "name": k.name, "col": k.col, "row": k.row, "role": k.role,
                        "type_name": inst.type_name, "ctor_args": list(inst.ctor_args), "params": list(inst.params)})
    return family_named(e.family).native_driver(e, index, entries)


def _build(layer: _Layer, cxx: str, cache_dir: pathlib.Path) -> None:
    key = hashlib.sha256(json.dumps({
        "compiler": [cxx, compiler_version(cxx)], "flags": CXX_FLAGS, "headers": _header_digest(),
        "sources": layer.sources}, sort_keys=True).encode()).hexdigest()[:32]
    final = cache_dir / key
    exe = final / "driver"
    if exe.is_file():
        layer.binary, layer.cached = exe, True
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        src = work / "src"
        for rel, text in layer.sources.items():
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
        cmd = [cxx, *CXX_FLAGS, "-I", str(INCLUDE_DIR), "-I", str(src), str(src / DRIVER_NAME), "-o",
               str(work / "driver")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log = "\n".join(proc.stderr.strip().splitlines()[:40])
            raise InternalCheckError(
                f"native co-simulation of layer l{layer.index} {layer.spec.op}",
                f"the generated kernel C++ did not compile with {pathlib.Path(cxx).name} against the AIE-API "
                f"emulation headers:\n{log}", "report this (the emitted C++ or the emulation headers are wrong)")
        if final.exists() and not exe.is_file():  # a damaged cache entry
            shutil.rmtree(final, ignore_errors=True)
        try:
            work.rename(final)
        except OSError:  # another process built the same binary meanwhile
            if not exe.is_file():
                raise
        layer.binary, layer.cached = exe, False
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


# -- run -------------------------------------------------------------------------------------------------------
@dataclass
class _Accumulated:
    result: KernelResult
    offset: int = 0  # values compared so far (flat index of this chunk's first value)


def _run_kernel(layer: _Layer, entry: int, k: Kernel, trace: Trace, iters: int, work: pathlib.Path,
                acc: _Accumulated) -> None:
    e, fam = layer.spec, layer.family
    res = acc.result
    if res.error is not None:
        return
    run = fam.native_run(e, k, trace, iters, work / f"l{layer.index}_e{entry}")
    assert layer.binary is not None
    proc = subprocess.run([str(layer.binary), str(entry), str(iters), *run.args], capture_output=True, text=True)
    want = run.want
    if proc.returncode != 0:
        msg = proc.stderr.strip() or f"exit code {proc.returncode}"
        res.error, res.match = msg.splitlines()[0][:300], False
        return
    got = np.fromfile(run.out_path, dtype=run.out_dtype).astype(np.int64)
    for p in run.files:
        pathlib.Path(p).unlink(missing_ok=True)
    if got.size != want.size:
        res.error, res.match = f"the driver wrote {got.size} values, expected {want.size}", False
        return
    diff = np.flatnonzero(got != want)
    res.compared += int(want.size)
    if diff.size:
        res.mismatches += int(diff.size)
        if res.first_index is None:
            i = int(diff[0])
            per_iter = want.size // iters
            res.first_index = acc.offset + i
            res.iteration, res.element = divmod(res.first_index, per_iter)
            res.position = fam.native_position(e, k, res.output, res.element)
            res.got, res.want = int(got[i]), int(want[i])
        res.match = False
    acc.offset += int(want.size)


def _prepare(plan: PhysicalPlan, files: dict[str, str] | None) -> list[_Layer]:
    from nn2aie.codegen.project import kernel_instances, render_project

    if files is None:
        files = render_project(plan, None, {})
    instances = kernel_instances(plan)
    layers = []
    for i, e in enumerate(plan.layers):
        ks = sorted(plan.kernels_of(e.op), key=lambda k: (k.chain, k.position))
        if not ks:
            continue
        fam = family_named(e.family)
        sources = _layer_sources(files, e, fam, i)
        sources[DRIVER_NAME] = driver_source(plan, i, ks, instances)
        layers.append(_Layer(i, e, fam, ks, sources))
    return layers


def _build_all(layers: list[_Layer], cxx_path: str, cache: pathlib.Path, jobs: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda lay: _build(lay, cxx_path, cache), layers))


def compile_kernels(plan: PhysicalPlan, *, cxx: str | None = None, cache_dir: str | pathlib.Path | None = None,
                    jobs: int | None = None, files: dict[str, str] | None = None) -> dict[int, pathlib.Path]:
    """Compile (or find in the cache) the native binary of every layer of ``plan``: {layer index: executable}.
    ``run_native_cosim`` does this itself; calling it first only warms the cache (e.g. for many plans at once)."""
    cxx_path = find_compiler(cxx)
    layers = _prepare(plan, files)
    _build_all(layers, cxx_path, pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir(),
               max(1, jobs or os.cpu_count() or 1))
    return {lay.index: lay.binary for lay in layers if lay.binary is not None}


def run_native_cosim(plan: PhysicalPlan, x_codes: np.ndarray, *, cxx: str | None = None,
                     cache_dir: str | pathlib.Path | None = None, jobs: int | None = None,
                     files: dict[str, str] | None = None,
                     progress: Callable[[str], None] | None = None) -> NativeReport:
    """Compile and run every kernel instance of ``plan`` natively on input codes ``x_codes`` [events, K] (a list
    of them in the plan's input order when the design has several inputs); compare each with the emulator, bit
    for bit.

    ``files``: rendered project files to compile instead of ``render_project``'s (for tests of the comparison).
    ``jobs``: parallel compiler / kernel processes (default: CPU count).
    """
    say = progress or (lambda _msg: None)
    cxx_path = find_compiler(cxx)
    compiler = compiler_version(cxx_path)
    cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    jobs = max(1, jobs or os.cpu_count() or 1)
    xs = [np.asarray(v) for v in (x_codes if isinstance(x_codes, (list, tuple)) else [x_codes])]
    if len(xs) != len(plan.input_tensors):
        raise IllegalConfigError("native co-simulation inputs", f"got {len(xs)} arrays, the design has "
                                 f"{len(plan.input_tensors)} inputs", "pass one code array per input, in order")
    for x in xs:
        if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.integer) or x.shape[0] != xs[0].shape[0]:
            raise IllegalConfigError("native co-simulation inputs", f"expected integer codes [events, K] (the same "
                                     f"events for every input), got {x.dtype} {list(x.shape)}",
                                     "quantize the inputs first (Compiled.quantize)")
    x = xs[0]

    layers = _prepare(plan, files)
    t0 = time.perf_counter()
    say(f"compiling {len(layers)} layer binar{'y' if len(layers) == 1 else 'ies'} with {compiler}")
    _build_all(layers, cxx_path, cache, jobs)
    compile_s = time.perf_counter() - t0

    results = {}
    for lay in layers:
        for k in lay.kernels:
            results[k.name] = _Accumulated(KernelResult(
                kernel=k.name, layer=lay.spec.op, layer_index=lay.index, tile=(k.col, k.row), role=k.role,
                output="cascade" if k.has_cascade_out else "buffer", match=True, compared=0))

    # graph iterations in chunks that keep the recorded trace bounded
    rows = plan.batch
    iterations = ceil_div(x.shape[0], rows)
    emu_ports = Emulator(plan)
    per_iter = sum(3 * spec.rows * spec.width for ports in emu_ports.ports.values() for spec in ports.values())
    step = max(1, TRACE_BUDGET // max(1, per_iter))
    emulator = emu_ports
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nn2aie-native-run-") as tmp:
        work = pathlib.Path(tmp)
        for start in range(0, iterations, step):
            n = min(step, iterations - start)
            trace = Trace()
            emulator.run_many({t: v[start * rows:(start + n) * rows]
                               for t, v in zip(plan.input_tensors, xs, strict=True)}, trace)
            say(f"running {len(results)} kernel(s) over graph iterations {start}..{start + n - 1}")
            tasks = [(lay, j, k) for lay in layers for j, k in enumerate(lay.kernels)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_run_kernel, lay, j, k, trace, n, work, results[k.name])
                           for lay, j, k in tasks]
                for f in futures:
                    f.result()
    run_s = time.perf_counter() - t1
    return NativeReport(
        kernels=[results[k.name].result for lay in layers for k in lay.kernels], events=int(x.shape[0]),
        iterations=iterations, compiler=compiler, builds=sum(not lay.cached for lay in layers),
        cached=sum(lay.cached for lay in layers), compile_s=compile_s, run_s=run_s,
        layers=[e.op for e in plan.layers])
