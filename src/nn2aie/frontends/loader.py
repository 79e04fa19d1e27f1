"""Pick the frontend for a model file: QONNX (``Quant`` nodes) or ONNX QDQ (QuantizeLinear/DequantizeLinear)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.frontends.onnx_common import load_onnx
from nn2aie.ir.logical import Graph

QONNX_OPS = {"Quant", "BipolarQuant", "Trunc", "IntQuant"}


@dataclass
class LoadedModel:
    graph: Graph
    framework: str  # "onnx-qdq" | "qonnx"
    proto: onnx.ModelProto
    reference: Callable[[np.ndarray], np.ndarray]  # float inputs -> float outputs of the source framework


def detect_framework(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    if ops & QONNX_OPS:
        return "qonnx"
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        return "onnx-qdq"
    raise UnsupportedQuantizationError(
        f"model {model.graph.name or '(unnamed)'}", "no quantization found (no QuantizeLinear/DequantizeLinear and "
        "no QONNX Quant nodes): nn2aie compiles quantized models only",
        "quantize with power-of-two scales (ONNX QDQ) or export a Brevitas model with export_qonnx")


def load_model(path: str | pathlib.Path | onnx.ModelProto) -> LoadedModel:
    proto, _ = load_onnx(path)
    framework = detect_framework(proto)
    if framework == "qonnx":
        from nn2aie.frontends import qonnx_frontend as fe
        graph = fe.load_qonnx(proto)
    else:
        from nn2aie.frontends import onnx_qdq as fe  # type: ignore[no-redef]
        graph = fe.load_qdq(proto)
    if not isinstance(path, onnx.ModelProto):
        graph.source["file"] = pathlib.Path(path).name
    return LoadedModel(graph, framework, proto, lambda x: fe.run_reference(proto, x))
