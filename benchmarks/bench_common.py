"""Shared by the scripts in this folder: what every result states about the machine, and the benchmark models."""

from __future__ import annotations

import os
import pathlib
import platform

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


# the four QDQ MLPs the compile / emulation / peer-comparison benchmarks share (nn2aie.examples.builders sizes)
BENCHMARK_MODELS = {
    "jet tagger 16-64-32-32-5": [16, 64, 32, 32, 5],
    "MLP 384-256-200-10": [384, 256, 200, 10],
    "autoencoder 640-128-128-128-8-128-128-128-640": [640, 128, 128, 128, 8, 128, 128, 128, 640],
    "MLP 1024-1024-1024-1024": [1024, 1024, 1024, 1024],
}
