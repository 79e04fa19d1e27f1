"""Byte-identical projects across runs, processes and PYTHONHASHSEED values.

Each model is compiled by the real command line in separate processes with different hash seeds (set iteration
order, anything keyed on ``hash(str)``), different output directories and a different working directory; every
file of every project, the placement pictures included, must be byte for byte the same.
"""

from __future__ import annotations

import os
import pathlib
import random
import subprocess
import sys
from importlib import resources

import onnx
import pytest

from nn2aie.examples.builders import make_qdq_mlp

# (model file, extra compile options): the bundled example, a 3-layer MLP with cascades and broadcast reads, and a
# layer of 4x8 = 32 tiles whose output is split over several memory tiles
MODELS = {
    "jet_tagger": (None, []),
    "mlp384": ([384, 256, 200, 10], []),
    "cascade1024": ([1024, 512, 64], ["--batch", "8"]),
}
HASH_SEEDS = ("0", "1", str(random.SystemRandom().randrange(2, 4_294_967_295)))


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def first_difference(a: dict[str, bytes], b: dict[str, bytes]) -> str | None:
    """None when both trees hold the same files with the same bytes, else the first difference in words."""
    if sorted(a) != sorted(b):
        return f"file lists differ: only in one {sorted(set(a) ^ set(b))[:5]}"
    for rel in sorted(a):
        if a[rel] != b[rel]:
            at = next(i for i, (x, y) in enumerate(zip(a[rel], b[rel], strict=False)) if x != y) \
                if any(x != y for x, y in zip(a[rel], b[rel], strict=False)) else min(len(a[rel]), len(b[rel]))
            return f"{rel} differs at byte {at} ({len(a[rel])} vs {len(b[rel])} bytes)"
    return None


def test_first_difference_names_the_file():
    a = {"x.txt": b"same", "y.bin": b"abcdef"}
    assert first_difference(a, dict(a)) is None
    assert first_difference(a, {"x.txt": b"same", "y.bin": b"abcXef"}) == "y.bin differs at byte 3 (6 vs 6 bytes)"
    assert first_difference(a, {"x.txt": b"same"}).startswith("file lists differ")
    assert first_difference(a, {"x.txt": b"same", "y.bin": b"abc"}) == "y.bin differs at byte 3 (6 vs 3 bytes)"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, (sizes, _) in MODELS.items():
        path = d / f"{name}.onnx"
        if sizes is None:
            path.write_bytes(resources.files("nn2aie.examples").joinpath("jet_tagger_qdq.onnx").read_bytes())
        else:
            onnx.save(make_qdq_mlp(sizes, seed=5), path)
        out[name] = path
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_projects_are_byte_identical_across_processes_and_hash_seeds(name, model_files, tmp_path):
    model = model_files[name]
    extra = MODELS[name][1]
    procs = []
    for i, seed in enumerate(HASH_SEEDS):  # all processes at once: the test costs one compile
        out = tmp_path / f"run{i}" / "proj"
        out.parent.mkdir()
        env = dict(os.environ, PYTHONHASHSEED=seed)
        cwd = out.parent if i < 2 else tmp_path  # another working directory, relative -o
        target = str(out) if i < 2 else os.path.relpath(out, tmp_path)
        procs.append((out, seed, subprocess.Popen(
            [sys.executable, "-m", "nn2aie.cli", "-q", "compile", str(model), "-o", target, *extra],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    trees = []
    for out, seed, p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, f"PYTHONHASHSEED={seed}: {stderr}"
        assert stdout == ""  # -q
        trees.append((seed, _tree(out)))
    seed0, base = trees[0]
    assert {"report/placement.png", "report/placement.svg", "summary.json", "src/graph.h"} <= set(base)
    for seed, tree in trees[1:]:
        diff = first_difference(base, tree)
        assert diff is None, f"PYTHONHASHSEED={seed0} vs {seed}: {diff}"
    for rel, content in base.items():  # nothing machine- or run-specific leaks into the files
        assert str(tmp_path).encode() not in content, rel
