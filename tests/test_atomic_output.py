"""Atomic project output: a compile interrupted anywhere leaves the previous project byte for byte as it was.

In-process interrupts (KeyboardInterrupt raised from inside the writer at several points, the final swap
included) must also leave no temporary directory behind; a process killed with SIGKILL while writing may leave
one clearly named sibling, which the next compile of the same directory removes.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import onnx
import pytest

import nn2aie.api as api
import nn2aie.atomic as atomic
import nn2aie.codegen.project as project
from nn2aie.api import compile_path, write_project_atomic
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.passes.pipeline import CompileOptions


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _listing(d: pathlib.Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("m") / "mlp.onnx"
    onnx.save(make_qdq_mlp([32, 48, 16, 8], seed=4), path)
    return path


@pytest.fixture(autouse=True)
def _quick_pictures(request, monkeypatch):
    """In-process writes draw a stand-in picture (matplotlib is not what these tests are about)."""
    if "sigkill" not in request.node.name:
        monkeypatch.setattr(project, "placement_pictures", lambda plan: {"png": b"png", "svg": plan.graph_name})


@pytest.fixture(scope="module")
def designs(model):
    """Two different designs of one model: the previous project and the one whose write is interrupted."""
    return compile_path(model), compile_path(model, CompileOptions(batch=8))


@pytest.fixture()
def previous(designs, tmp_path) -> tuple[pathlib.Path, dict[str, bytes]]:
    out = tmp_path / "work" / "proj"
    write_project_atomic(designs[0], out)
    return out, _tree(out)


def _interrupting(fn, at: int = 1):
    """``fn`` that raises KeyboardInterrupt on its ``at``-th call (a plain function, so it also binds as a
    method when set on a class)."""
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    return wrapper


def _interrupt_rendering(mp):
    mp.setattr(project, "placement_pictures", _interrupting(project.placement_pictures))


def _interrupt_mid_write(mp):  # the 6th file written into the temporary directory
    mp.setattr(pathlib.Path, "write_text", _interrupting(pathlib.Path.write_text, at=6))


def _interrupt_provenance(mp):
    mp.setattr(api, "_write_provenance", _interrupting(api._write_provenance))


def _interrupt_exchange(mp):
    mp.setattr(atomic, "_exchange", _interrupting(atomic._exchange))


def _interrupt_between_renames(mp):  # no atomic exchange: previous aside, then the new one in: stop before it
    mp.setattr(atomic, "_exchange", lambda a, b: False)
    mp.setattr(pathlib.Path, "rename", _interrupting(pathlib.Path.rename, at=2))


@pytest.mark.parametrize("interrupt", [_interrupt_rendering, _interrupt_mid_write, _interrupt_provenance,
                                       _interrupt_exchange, _interrupt_between_renames])
def test_interrupted_write_keeps_previous_project_and_leaves_nothing(interrupt, designs, previous, monkeypatch):
    out, before = previous
    listing = _listing(out.parent)
    with monkeypatch.context() as mp:
        interrupt(mp)
        with pytest.raises(KeyboardInterrupt):
            write_project_atomic(designs[1], out)
    assert _tree(out) == before
    assert _listing(out.parent) == listing  # no temporary or backup directory left


@pytest.mark.parametrize("exchange", [True, False])
def test_replacing_a_project(designs, previous, monkeypatch, exchange):
    out, before = previous
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    write_project_atomic(designs[1], out)
    after = _tree(out)
    assert after != before and '"batch": 8' in after["summary.json"].decode()
    assert _listing(out.parent) == ["proj"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # the umask's mode, not a private temp dir's 0700


def test_foreign_directory_is_refused_unless_forced(designs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(api.IllegalConfigError, match="--force"):
        write_project_atomic(designs[0], out)
    assert _listing(out) == ["precious.txt"] and _listing(tmp_path) == ["mine"]
    write_project_atomic(designs[0], out, force=True)
    assert "precious.txt" not in _listing(out) and _listing(tmp_path) == ["mine"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_compile_are_cleaned_up(designs, previous):
    out, before = previous
    dead = _dead_pid()
    stale_tmp = out.with_name(f".proj.nn2aie-tmp-{dead}-0123abcd")
    stale_tmp.mkdir()
    (stale_tmp / "half.txt").write_text("partial")
    live = out.with_name(f".proj.nn2aie-tmp-{os.getpid()}-0123abcd")  # a compile still running: kept
    live.mkdir()
    other = out.with_name(".proj.something-else")  # not ours: kept
    other.mkdir()
    write_project_atomic(designs[1], out)
    assert _listing(out.parent) == sorted(["proj", live.name, other.name])


def test_previous_project_moved_aside_comes_back(designs, previous, monkeypatch):
    """Killed between the two renames (no atomic exchange): the next write puts the previous project back before
    anything else, so even a failing compile leaves it in place."""
    out, before = previous
    aside = out.with_name(f".proj.nn2aie-old-{_dead_pid()}-0123abcd")
    out.rename(aside)
    monkeypatch.setattr(project, "placement_pictures", _interrupting(project.placement_pictures))
    with pytest.raises(KeyboardInterrupt):
        write_project_atomic(designs[1], out)
    assert _tree(out) == before and _listing(out.parent) == ["proj"]


# The victim writes each project file 20 ms late, so that a kill at a random moment of the write phase lands between
# files with certainty (the real writes take a few milliseconds in all).
_SLOW_WRITER = """
import pathlib, sys, time
for name in ("write_text", "write_bytes"):
    def slow(self, *args, _write=getattr(pathlib.Path, name), **kwargs):
        time.sleep(0.02)
        return _write(self, *args, **kwargs)
    setattr(pathlib.Path, name, slow)
from nn2aie.cli import main
sys.argv[0] = "nn2aie"
main()
"""


def test_sigkill_while_writing_a_large_project(model, previous, tmp_path):
    """A real process (a 36-tile design) killed with SIGKILL at a random moment while it writes its files."""
    out, before = previous
    big = tmp_path / "big.onnx"
    onnx.save(make_qdq_mlp([1024, 512, 64], seed=3), big)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, "-q", "compile", str(big), "-o", str(out),
                             "--no-check"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tmp = None
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:  # until the first file is being written
            tmp = next((p for p in out.parent.iterdir() if p.name.startswith(".proj.nn2aie-tmp-")), None)
            if tmp is not None and any(tmp.iterdir()):
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the compile ended before it was killed: {proc.stderr.read()}"
        time.sleep(random.uniform(0.0, 0.3))  # about 15 of the project's 20+ files
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert tmp is not None
    assert _tree(out) == before  # the previous project, byte for byte
    left = [p.name for p in out.parent.iterdir() if p.name != "proj"]
    assert left == [tmp.name] and f".nn2aie-tmp-{proc.pid}-" in tmp.name  # one leftover, clearly named
    r = subprocess.run([sys.executable, "-m", "nn2aie.cli", "-q", "compile", str(model), "-o", str(out),
                        "--no-check"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _listing(out.parent) == ["proj"]  # the next compile removed the leftover
    assert _tree(out) == before  # same model and options as the previous project: the same bytes
