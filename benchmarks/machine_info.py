"""What every benchmark result states about the machine it ran on (shared by the scripts in this folder)."""

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
