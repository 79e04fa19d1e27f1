"""Shared by the scripts in this folder: what every result states about the machine, and the benchmark models."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import platform
import warnings

from nn2aie import __version__


def _cpuinfo() -> str:
    try:
        return pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def machine() -> dict:
    """CPU model, whether it has VNNI (int8 dot products; matters for onnxruntime's fused kernels), cores, versions."""
    info = _cpuinfo()
    cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
               platform.processor() or "unknown")
    return {"cpu": cpu, "vnni": "avx512_vnni" in info or "avx_vnni" in info, "cores": os.cpu_count(),
            "python": platform.python_version(), "nn2aie": __version__, "platform": platform.platform()}


def quiet() -> contextlib.ExitStack:
    """Silence warnings and the chatter of torch / Brevitas exporters while a benchmark builds its models."""
    sink = io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(sink))
    stack.enter_context(contextlib.redirect_stderr(sink))
    return stack


# the four QDQ MLPs the compile / emulation / peer-comparison benchmarks share (nn2aie.examples.builders sizes)
BENCHMARK_MODELS = {
    "jet tagger 16-64-32-32-5": [16, 64, 32, 32, 5],
    "MLP 384-256-200-10": [384, 256, 200, 10],
    "autoencoder 640-128-128-128-8-128-128-128-640": [640, 128, 128, 128, 8, 128, 128, 128, 640],
    "MLP 1024-1024-1024-1024": [1024, 1024, 1024, 1024],
}
