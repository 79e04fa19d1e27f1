"""Shared ONNX helpers for the frontends: loading, constants, topological order, graph-input shapes.

Every failure to read a model is a :class:`~nn2aie.errors.BadFileError` naming the file (or the in-memory model),
never a raw protobuf / onnx exception.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from nn2aie.errors import BadFileError

ModelLike = str | pathlib.Path | onnx.ModelProto

_CHECK_HINT = "re-export the model, or check it with `python -c \"import onnx; onnx.checker.check_model('FILE')\"`"


def load_onnx(model: ModelLike) -> tuple[onnx.ModelProto, str]:
    """Return ``(ModelProto, file)`` for a path or an already loaded model (``file`` is ``''`` then).

    The model is checked with ``onnx.checker`` (not the full shape-inference check); unreadable, truncated or
    structurally broken models raise :class:`BadFileError`.
    """
    if isinstance(model, onnx.ModelProto):
        proto, where = model, "in-memory ONNX model"
        file = ""
    elif isinstance(model, str | pathlib.Path):
        path = pathlib.Path(model)
        file = str(model)
        where = f"file {file}"
        if not path.is_file():
            raise BadFileError(where, "no such file", "check the path")
        try:
            proto = onnx.load(str(path), load_external_data=True)
        except Exception as exc:  # protobuf DecodeError, missing external data, ...
            raise BadFileError(where, f"cannot be parsed as an ONNX model ({type(exc).__name__}: {exc})",
                               "the file is truncated or not an ONNX model; " + _CHECK_HINT) from None
    else:
        raise BadFileError(repr(type(model).__name__), "expected a path or an onnx.ModelProto",
                           "pass the .onnx file path or the result of onnx.load()")
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise BadFileError(where, "the model has no graph nodes (empty or truncated file)",
                           "re-export the model")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadFileError(where, f"is not a valid ONNX model ({first})", _CHECK_HINT) from None
    return proto, file


def opset_version(model: onnx.ModelProto, domain: str = "") -> int | None:
    for imp in model.opset_import:
        if imp.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(imp.version)
    return None


def node_where(node: onnx.NodeProto, index: int | None = None) -> str:
    """Human description of a node for error messages: ``node NAME (OpType)``."""
    if node.name:
        return f"node {node.name} ({node.op_type})"
    out = node.output[0] if len(node.output) else "?"
    idx = f"#{index} " if index is not None else ""
    return f"node {idx}({node.op_type}) producing {out}"


def initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializer name -> NumPy array (sparse initializers densified)."""
    out = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for sp in graph.sparse_initializer:
        out[sp.values.name] = _densify(sp)
    return out


def _densify(sp: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sp.values)
    idx = numpy_helper.to_array(sp.indices).astype(np.int64)
    dense = np.zeros(int(np.prod(sp.dims)), dtype=values.dtype)
    if idx.ndim == 1:
        dense[idx] = values
    else:
        dense[np.ravel_multi_index(tuple(idx.T), tuple(sp.dims))] = values
    return dense.reshape(tuple(sp.dims))


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """Value of a ``Constant`` node, or None if it uses an attribute we do not read."""
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.asarray(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.asarray(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.asarray(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.asarray(list(attr.ints), dtype=np.int64)
    return None


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers plus the outputs of ``Constant`` nodes (everything known without running the graph)."""
    out = initializers(graph)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            value = constant_node_value(node)
            if value is not None:
                out[node.output[0]] = value
    return out


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old IR versions list initializers as inputs too)."""
    inits = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    return [vi for vi in graph.input if vi.name not in inits]


def value_shape(vi: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    """Shape of a value: ints for static dims, the dim_param string for symbolic ones, None for unknown.

    Returns None when the value has no tensor shape at all.
    """
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def graph_input_shape(graph: onnx.GraphProto, name: str) -> tuple[int | str | None, ...] | None:
    for vi in graph.input:
        if vi.name == name:
            return value_shape(vi)
    raise KeyError(name)


def elem_type(vi: onnx.ValueInfoProto) -> int:
    return int(vi.type.tensor_type.elem_type)


def elem_type_name(code: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(code).lower()
    except ValueError:
        return f"type#{code}"


def topological_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in a topological order (stable: keeps file order where possible); BadFileError on cycles."""
    known = {vi.name for vi in graph.input} | {i.name for i in graph.initializer}
    known |= {s.values.name for s in graph.sparse_initializer}
    known.add("")  # omitted optional inputs
    pending = list(graph.node)
    order: list[onnx.NodeProto] = []
    while pending:
        progressed = False
        rest = []
        for node in pending:
            if all(i in known for i in node.input):
                order.append(node)
                known.update(node.output)
                progressed = True
            else:
                rest.append(node)
        if not progressed:
            node = rest[0]
            missing = [i for i in node.input if i not in known]
            raise BadFileError(node_where(node), f"inputs {missing} are never produced (or the graph has a cycle)",
                               "re-export the model")
        pending = rest
    return order


def consumers_map(nodes: Iterable[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def producers_map(nodes: Iterable[onnx.NodeProto]) -> dict[str, onnx.NodeProto]:
    out: dict[str, onnx.NodeProto] = {}
    for node in nodes:
        for name in node.output:
            if name:
                out[name] = node
    return out


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


_IDENT = re.compile(r"[^A-Za-z0-9_]+")


def identifier(name: str, fallback: str) -> str:
    """A C-identifier-safe version of an ONNX name (``/fc1/MatMul`` -> ``fc1_MatMul``)."""
    text = _IDENT.sub("_", name).strip("_")
    if not text:
        return fallback
    if text[0].isdigit():
        text = "n" + text
    return text


def unique(name: str, taken: set[str]) -> str:
    """``name`` or ``name_2``, ``name_3``... whichever is not in ``taken``; adds it to ``taken``."""
    out, i = name, 2
    while out in taken:
        out = f"{name}_{i}"
        i += 1
    taken.add(out)
    return out
