"""Run fuzz cases in a worker process with a per-case time limit and classify every outcome.

The parent writes each case to a fresh temporary directory and sends its path and options to a long-lived worker
(``spawn`` start method, so the worker is a clean interpreter whatever threads the parent runs). The worker calls
``nn2aie.api.compile_path`` and, on success, checks the design bit for bit. If no answer arrives within the time
limit the worker is killed and the case is a **hang**; if the worker dies (signal, out of memory) it is a
**crash**. The worker runs under an address-space limit, so a memory bomb surfaces as an exception rather than
taking the machine down.

Statuses (``GOOD`` are the contract; everything else is a finding):

- ``ok``: compiled, and the placed design's emulator equals the logical integer model and (when the float32
  reference is exact, ``graph.source['reference_exact'] == 'yes'``) the source framework, on seeded inputs
- ``typed``: an ``nn2aie.errors.Nn2aieError`` subclass other than ``InternalCheckError`` whose ``where`` and
  ``reason`` are non-empty
- ``internal``: ``InternalCheckError`` (an nn2aie invariant failed: a bug)
- ``untyped``: any other exception from ``compile_path`` (traceback kept)
- ``bad_message``: a typed error with an empty ``where`` or ``reason``
- ``mismatch``: compiled but not bit-exact; ``check_error``: compiled but the checks themselves raised
  (``summary()``, emulation, or the reference framework refusing a model nn2aie accepted)
- ``hang`` / ``crash``: see above
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .mutators import Case

GOOD = ("ok", "typed")
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MEMORY_LIMIT = 6 << 30  # bytes of address space per worker
CHECK_EVENTS = 48


@dataclass
class Outcome:
    case: Case
    status: str
    error_class: str = ""
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0

    @property
    def good(self) -> bool:
        return self.status in GOOD

    def line(self) -> str:
        text = f"{self.case.description} -> {self.status}"
        if self.error_class:
            text += f" {self.error_class}: {self.message[:300]}"
        return text


# --------------------------------------------------------------------------------------------------------------
# in the worker
# --------------------------------------------------------------------------------------------------------------
def _check_inputs(compiled, seed: int):
    import numpy as np

    from nn2aie.api import default_inputs

    x = default_inputs(compiled, CHECK_EVENTS, seed)
    t = compiled.input_type
    special = np.zeros((4, x.shape[1]), dtype=np.float32)
    special[1] = t.max_code * t.lsb
    special[2] = t.min_code * t.lsb
    special[3, ::2], special[3, 1::2] = 1e30, -1e30
    return np.concatenate([x, special]).astype(np.float32)


def verify_compiled(compiled, seed: int = 0) -> tuple[str, str]:
    """(status, detail) of a successful compile: emulator == logical model (== source framework when exact)."""
    import numpy as np

    from nn2aie.api import check_bit_exact
    from nn2aie.ir.evaluate import evaluate

    compiled.summary()  # what `nn2aie compile` prints and writes: must not fail on an accepted model
    x = _check_inputs(compiled, seed)
    graph = compiled.model.graph
    ours = compiled.emulate(x)
    codes = compiled.quantize(x)
    logical = evaluate(graph, {graph.inputs[0]: codes})[graph.outputs[0]]
    logical = (logical.astype(np.float64) * compiled.output_type.lsb).astype(np.float32)
    if not np.array_equal(ours, logical):
        bad = np.argwhere(ours != logical)[0]
        return "mismatch", (f"emulator != logical model at event {bad[0]} output {bad[1]}: "
                            f"{ours[tuple(bad)]} vs {logical[tuple(bad)]}")
    if graph.source.get("reference_exact", "yes") != "yes":
        return "ok", "emulator == logical model (float32 reference not exact for this model)"
    res = check_bit_exact(compiled, x)
    if not res["bit_exact"]:
        return "mismatch", f"emulator != {res['reference']}: {res['first_mismatch']}"
    return "ok", f"bit-exact against {res['reference']} on {res['events']} events"


def execute(spec: dict) -> dict:
    """Compile one case file and classify the result (runs in the worker; never raises)."""
    from nn2aie.api import compile_path
    from nn2aie.errors import InternalCheckError, Nn2aieError
    from nn2aie.passes.pipeline import CompileOptions

    probe = spec.get("probe")  # harness self-tests only
    if probe == "sleep":
        time.sleep(3600)
    if probe == "exit":
        os._exit(3)
    out: dict = {"status": "", "error_class": "", "message": "", "traceback": ""}
    try:
        if probe == "raise":
            raise ZeroDivisionError("probe")
        if probe == "typed":
            from nn2aie.errors import BadFileError

            raise BadFileError("probe", "typed probe", "nothing to do")
        compiled = compile_path(spec["path"], CompileOptions(**spec["options"]))
    except InternalCheckError as exc:
        out.update(status="internal", error_class=type(exc).__name__, message=str(exc),
                   traceback=traceback.format_exc())
        return out
    except Nn2aieError as exc:
        ok = bool(str(exc.where).strip()) and bool(str(exc.reason).strip())
        out.update(status="typed" if ok else "bad_message", error_class=type(exc).__name__, message=str(exc))
        if not ok:
            out["traceback"] = traceback.format_exc()
        return out
    except BaseException as exc:  # noqa: BLE001 - every other exception is the finding we are looking for
        out.update(status="untyped", error_class=type(exc).__name__, message=str(exc)[:2000],
                   traceback=traceback.format_exc())
        return out
    try:
        status, detail = verify_compiled(compiled, spec.get("check_seed", 0))
        out.update(status=status, message=detail)
    except BaseException as exc:  # noqa: BLE001
        out.update(status="check_error", error_class=type(exc).__name__, message=str(exc)[:2000],
                   traceback=traceback.format_exc())
    return out


def _serve(conn, memory_limit: int | None) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # refused models are expected: keep ORT's own log quiet
    import nn2aie.api  # noqa: F401 - import once, before the first case's clock starts
    import nn2aie.frontends.onnx_qdq  # noqa: F401
    import nn2aie.frontends.qonnx_frontend  # noqa: F401

    conn.send("ready")
    while True:
        spec = conn.recv()
        if spec is None:
            return
        conn.send(execute(spec))


# --------------------------------------------------------------------------------------------------------------
# in the parent
# --------------------------------------------------------------------------------------------------------------
class Worker:
    """A worker process that runs cases one at a time; restarted after a hang or a crash."""

    def __init__(self, memory_limit: int | None = DEFAULT_MEMORY_LIMIT, start_timeout: float = 120.0):
        self.memory_limit = memory_limit
        self.start_timeout = start_timeout
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.conn = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_serve, args=(child, self.memory_limit), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        try:
            ready = parent.poll(self.start_timeout) and parent.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.stop()
            raise RuntimeError("fuzz worker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                try:
                    self.conn.send(None)
                    self.proc.join(2)
                except (OSError, BrokenPipeError):
                    pass
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        self.stop()
        self.restarts += 1

    def run(self, spec: dict, timeout: float) -> tuple[dict, float]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        t0 = time.perf_counter()
        self.conn.send(spec)
        try:
            ready = self.conn.poll(timeout)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self._kill()
            return {"status": "hang", "message": f"no result within {timeout:g} s"}, time.perf_counter() - t0
        try:
            result = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self._kill()
            return {"status": "crash", "message": f"worker died (exit code {code})"}, time.perf_counter() - t0
        return result, time.perf_counter() - t0

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def materialize(case: Case, root: pathlib.Path) -> pathlib.Path:
    """Put the case on disk under ``root``; returns the path handed to nn2aie."""
    path = root / f"case{case.index}{case.suffix}"
    if case.kind == "file":
        path.write_bytes(case.payload)
    elif case.kind == "dir":
        path.mkdir()
        (path / "model.onnx").write_bytes(case.payload)
    elif case.kind == "fifo":
        os.mkfifo(path)
    elif case.kind == "dangling_symlink":
        path.symlink_to(root / "nowhere.onnx")
    elif case.kind != "missing":
        raise ValueError(case.kind)
    return path


def run_cases(cases: Iterable[Case], timeout: float = DEFAULT_TIMEOUT_S, worker: Worker | None = None,
              probe: str | None = None) -> Iterator[Outcome]:
    """Run ``cases`` one by one (a new temporary directory each); yields one ``Outcome`` per case."""
    own = worker is None
    worker = worker or Worker()
    try:
        for case in cases:
            root = pathlib.Path(tempfile.mkdtemp(prefix="nn2aie-fuzz-"))
            try:
                path = materialize(case, root)
                spec = {"path": str(path), "options": case.options, "check_seed": case.index}
                if probe:
                    spec["probe"] = probe
                result, seconds = worker.run(spec, timeout)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            yield Outcome(case, result.get("status", "crash"), result.get("error_class", ""),
                          result.get("message", ""), result.get("traceback", ""), seconds)
    finally:
        if own:
            worker.stop()
