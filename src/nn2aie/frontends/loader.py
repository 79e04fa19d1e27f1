"""Pick the frontend for a model file: QONNX (``Quant`` nodes) or ONNX QDQ (QuantizeLinear/DequantizeLinear)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from nn2aie.errors import IllegalConfigError, UnsupportedQuantizationError
from nn2aie.frontends.onnx_common import load_onnx
from nn2aie.ir.logical import Graph
from nn2aie.ir.types import FixedType, parse_ap_type

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


def load_model(path: str | pathlib.Path | onnx.ModelProto, input_types: dict[str, str] | None = None) -> LoadedModel:
    """Load a QONNX or ONNX QDQ model. ``input_types``: graph input name -> ap_fixed type text (e.g.
    ``"ap_fixed<8,3,AP_RND_CONV,AP_SAT>"``) for float inputs the model reads without a quantizer: the host casts
    them into that type, and the reference runs the source on the cast values (so that the comparison is of the
    same inputs)."""
    proto, _ = load_onnx(path)
    framework = detect_framework(proto)
    types = _input_types(proto, input_types or {})
    if framework == "qonnx":
        from nn2aie.frontends import qonnx_frontend as fe
        graph = fe.load_qonnx(proto, types)
    else:
        from nn2aie.frontends import onnx_qdq as fe  # type: ignore[no-redef]
        graph = fe.load_qdq(proto, types)
    if not isinstance(path, onnx.ModelProto):
        graph.source["file"] = pathlib.Path(path).name

    def reference(x):
        return fe.run_reference(proto, _cast_inputs(proto, types, x) if types else x)

    return LoadedModel(graph, framework, proto, reference)


def _input_types(proto: onnx.ModelProto, given: dict[str, str]) -> dict[str, FixedType]:
    from nn2aie.frontends.onnx_common import real_inputs

    names = [vi.name for vi in real_inputs(proto.graph)]
    out = {}
    for name, text in given.items():
        if name not in names:
            raise IllegalConfigError(f"input type for {name}", f"the model has no graph input {name} (its inputs: "
                                     f"{', '.join(names)})", "name a graph input of the model")
        try:
            out[name] = parse_ap_type(str(text))
        except ValueError as exc:
            raise IllegalConfigError(f"input type for {name}", str(exc),
                                     "write it as ap_fixed<W,I,AP_RND_CONV,AP_SAT> (or ap_ufixed / ap_int)") from None
    return out


def _cast_inputs(proto: onnx.ModelProto, types: dict[str, FixedType], x):
    """The float values the host's casts give, for the inputs with a user type (the others as they are)."""
    from nn2aie.frontends.onnx_common import real_inputs
    from nn2aie.ir.evaluate import cast_float

    names = [vi.name for vi in real_inputs(proto.graph)]
    xs = list(x) if isinstance(x, (list, tuple)) and len(names) > 1 else [x]

    def cast(name, v):
        t = types.get(name)
        if t is None:
            return v
        v = np.asarray(v, dtype=np.float32)
        return (cast_float(v, t, f"input {name}") * t.lsb).astype(np.float32)

    out = [cast(n, v) for n, v in zip(names, xs, strict=True)]
    return out if len(names) > 1 else out[0]
