"""The emitted Makefile: v++ targets the catalog's full part name by default (any Vitis release that knows the
part), PLATFORM= overrides it with a platform, the Vitis version found is printed, and a missing Vitis gives
the clear message. Run through GNU make itself where it is installed (a fake v++ stands in for Vitis)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from nn2aie.codegen.project import render_project
from nn2aie.devices import get_device
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.onnx_qdq import load_qdq
from nn2aie.passes.pipeline import CompileOptions, compile_graph

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def makefile(device: str) -> str:
    plan, _ = compile_graph(load_qdq(make_qdq_mlp([8, 6, 4])), CompileOptions(device=device))
    return render_project(plan, None, {})["Makefile"]


@pytest.mark.parametrize(("device", "part"), [("xcve2802", "xcve2802-vsvh1760-2MP-e-S"),
                                              ("xcve2302", "xcve2302-sfva784-1LP-e-S")])
def test_default_target_is_the_catalog_part(device, part):
    text = makefile(device)
    assert get_device(device).vitis_part == part
    assert f"PART ?= {part}\n" in text and "PLATFORM ?=\n" in text
    assert "xilinx_vek280_base_2024" not in text  # no release-specific platform name by default


@pytest.fixture
def project(tmp_path):
    (tmp_path / "Makefile").write_text(makefile("xcve2802"))
    return tmp_path


def _fake_vpp(tmp_path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    vpp = bin_dir / "v++"
    vpp.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "****** v++ v2025.1 (64-bit)"; exit 0; fi\n'
                   'echo "ran v++ $*"\n')
    vpp.chmod(vpp.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _make(project, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=project, capture_output=True, text=True, env=env, timeout=60)


@needs_make
def test_part_by_default_and_platform_override(project, tmp_path):
    env = _fake_vpp(tmp_path)
    r = _make(project, "hw", env=env)
    assert r.returncode == 0, r.stderr
    assert "Vitis: ****** v++ v2025.1 (64-bit); target --part=xcve2802-vsvh1760-2MP-e-S" in r.stdout
    assert "ran v++ -c --target=hw --mode aie --part=xcve2802-vsvh1760-2MP-e-S --config aie.cfg src/graph.cpp" \
        in r.stdout
    r = _make(project, "x86com", "PLATFORM=/opt/p/vek280.xpfm", env=env)
    assert r.returncode == 0, r.stderr
    assert "ran v++ -c --target=x86sim --mode aie --platform=/opt/p/vek280.xpfm --config aie.cfg src/graph.cpp" \
        in r.stdout and "--part" not in r.stdout
    r = _make(project, "hw", "PART=xcve2802-vsvh1760-1LP-e-S", env=env)
    assert "--part=xcve2802-vsvh1760-1LP-e-S" in r.stdout


@needs_make
def test_missing_vitis_is_one_clear_message(project):
    env = {**os.environ, "PATH": "/usr/bin:/bin"} if shutil.which("v++") is None else None
    if env is None:
        pytest.skip("a real v++ is installed")
    r = _make(project, "hw", env=env)
    assert r.returncode != 0
    assert "AMD Vitis (v++) not found: source <Vitis>/settings64.sh first" in r.stdout
