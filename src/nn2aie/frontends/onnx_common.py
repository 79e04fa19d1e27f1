"""Shared ONNX helpers for the frontends: loading, constants, topological order, graph-input shapes.

Every failure to read a model is a :class:`~nn2aie.errors.BadFileError` naming the file (or the in-memory model),
never a raw protobuf / onnx exception.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
from collections.abc import Iterable

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from onnx import numpy_helper

from nn2aie.errors import BadFileError, UnsupportedOpError

ModelLike = str | pathlib.Path | onnx.ModelProto
MIN_OPSET = 7  # the oldest default-domain opset onnxruntime guarantees

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
    bad_text = _non_utf8_field(proto)
    if bad_text is not None:
        raise BadFileError(where, f"the text field {bad_text} is not valid UTF-8 (a corrupted file?)",
                           "re-export the model")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadFileError(where, f"is not a valid ONNX model ({first})", _CHECK_HINT) from None
    check_structure(proto, where)
    return proto, file


def _non_utf8_field(msg, path: str = "model") -> str | None:
    """Path of the first protobuf ``string`` field holding bytes (the parser keeps invalid UTF-8 as bytes)."""
    for fd, value in msg.ListFields():
        if fd.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE):
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == FieldDescriptor.LABEL_REPEATED
        for i, item in enumerate(value if repeated else [value]):
            here = f"{path}.{fd.name}[{i}]" if repeated else f"{path}.{fd.name}"
            if fd.type == FieldDescriptor.TYPE_STRING:
                if not isinstance(item, str):
                    return here
            else:
                found = _non_utf8_field(item, here)
                if found is not None:
                    return found
    return None


def _domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


@functools.cache
def _known_opsets() -> dict[str, tuple[int, int]]:
    """Operator-set domain -> (first, last) version this onnx package defines."""
    try:
        return dict(onnx.defs.C.schema_version_map())
    except AttributeError:  # pragma: no cover - older/newer onnx without the C map
        return {"": (1, onnx.defs.onnx_opset_version())}


def without_unused_opsets(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` without operator-set imports no node uses (they do not change what the model computes,
    but onnxruntime refuses domains/versions it does not know even when nothing uses them)."""
    used = {_domain(n.domain) for n in proto.graph.node} | {""}
    if all(_domain(imp.domain) in used for imp in proto.opset_import):
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = [imp for imp in out.opset_import if _domain(imp.domain) in used]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out


def check_structure(proto: onnx.ModelProto, where: str) -> None:
    """What ``onnx.checker`` lets through but onnxruntime / qonnx refuse: duplicate node names, an operator set
    imported twice (``''`` and ``ai.onnx`` are the same), a known operator set at a version ONNX does not define,
    two type declarations of one tensor, and graph inputs/outputs without a defined element type."""
    g = proto.graph
    seen: dict[str, int] = {}
    for imp in proto.opset_import:
        dom = _domain(imp.domain)
        if dom in seen:
            raise BadFileError(where, f"imports the operator set {dom or 'ai.onnx'!r} twice (versions {seen[dom]} "
                               f"and {imp.version})", "import every operator set once; " + _CHECK_HINT)
        seen[dom] = int(imp.version)
        if imp.version < 1:
            raise BadFileError(where, f"imports the operator set {dom or 'ai.onnx'!r} with version {imp.version}",
                               "operator set versions start at 1; " + _CHECK_HINT)
        if dom == "" and imp.version < MIN_OPSET:
            raise UnsupportedOpError(where, f"uses ONNX opset {imp.version}; onnxruntime (the reference nn2aie "
                                     f"checks against) supports opset {MIN_OPSET} and newer",
                                     "re-export the model with opset 13 or newer")
        known = _known_opsets().get(dom)
        if known is not None and not known[0] <= imp.version <= known[1]:
            raise BadFileError(where, f"imports operator set {dom or 'ai.onnx'!r} version {imp.version}, which "
                               f"ONNX does not define (versions {known[0]}..{known[1]})",
                               "re-export with a released opset version")
    names: dict[str, int] = {}
    for node in g.node:
        if node.name:
            names[node.name] = names.get(node.name, 0) + 1
    dup = next((n for n, c in names.items() if c > 1), None)
    if dup is not None:
        raise BadFileError(f"node {dup}", f"the name is used by {names[dup]} nodes (node names must be unique)",
                           "give every node its own name and re-export the model")
    declared: set[str] = set()
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in declared:
            raise BadFileError(f"tensor {vi.name}", "has more than one type declaration (graph input, output or "
                               "value_info)", "declare every tensor once and re-export the model")
        declared.add(vi.name)
    for vi, role in [(vi, "graph input") for vi in g.input] + [(vi, "graph output") for vi in g.output]:
        code = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else None
        if code is None or code == onnx.TensorProto.UNDEFINED or code not in onnx.TensorProto.DataType.values():
            raise BadFileError(f"{role} {vi.name}", f"has no defined tensor element type ({elem_type_name(code or 0)})",
                               "declare the input and output types (float32) and re-export the model")


def check_inference(proto: onnx.ModelProto) -> None:
    """ONNX type and shape inference in strict mode: a declared type or shape (value_info, graph output) that
    contradicts what the operators compute makes the model invalid for onnxruntime as well."""
    where = f"model {proto.graph.name or '(unnamed)'}"
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx.shape_inference.InferenceError
        text = " ".join(str(exc).split())
        raise BadFileError(where, f"is inconsistent under ONNX type/shape inference ({text[:400]})",
                           _CHECK_HINT) from None


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


def _unreadable(what: str, exc: Exception) -> BadFileError:
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    return BadFileError(what, f"cannot be read ({type(exc).__name__}: {text})",
                        "its dims, data type and stored data disagree; re-export the model")


def initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializer name -> NumPy array (sparse initializers densified); BadFileError for unreadable ones."""
    out = {}
    for init in graph.initializer:
        try:
            out[init.name] = numpy_helper.to_array(init)
        except Exception as exc:  # dims that do not match the data, unknown data types, ...
            raise _unreadable(f"initializer {init.name}", exc) from None
    for sp in graph.sparse_initializer:
        try:
            out[sp.values.name] = _densify(sp)
        except Exception as exc:  # indices out of range, values/indices of different lengths, ...
            raise _unreadable(f"sparse initializer {sp.values.name}", exc) from None
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
            try:
                value = constant_node_value(node)
            except Exception as exc:  # a value tensor whose dims and data disagree
                raise _unreadable(node_where(node), exc) from None
            if value is not None:
                out[node.output[0]] = value
    return out


# data-movement ops an exporter leaves on constants (torch's F.pad computes its pads this way): folded exactly
_FOLDABLE = ("ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze", "Squeeze", "Gather",
             "Shape", "Identity")


def fold_constant_moves(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                        opset: int) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """Nodes (in topological order) of the data-movement kinds above whose inputs are all constants, evaluated by
    onnx's reference implementation (no arithmetic: the values are moved, cast or filled, so exactly what any
    runtime computes); returns the other nodes and the folded values."""
    from onnx.reference import ReferenceEvaluator

    known, folded, kept = dict(consts), {}, []
    for node in nodes:
        inputs = [i for i in node.input if i]
        if (node.op_type in _FOLDABLE and node.domain in ("", "ai.onnx") and inputs
                and all(i in known for i in inputs)):
            try:
                values = ReferenceEvaluator(node, opsets={"": opset}).run(None, {i: known[i] for i in inputs})
            except Exception as exc:
                raise _unreadable(node_where(node), exc) from None
            for name, value in zip(node.output, values, strict=False):
                known[name] = folded[name] = np.asarray(value)
            continue
        kept.append(node)
    return kept, folded


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


CONV_OPS = ("Conv", "MaxPool", "AveragePool")  # ops that read a channels-first activation window by window


SpatialPads = tuple[tuple[int, ...], tuple[int, ...]]  # (begin, end) zeros per spatial axis of an ONNX Pad


def _padded(channels_first: tuple[int, ...], pads: SpatialPads | None) -> tuple[int, ...]:
    """The spatial shape the node sees: after an explicit zero Pad folded into its window."""
    spatial = tuple(channels_first[1:])
    if pads is None:
        return spatial
    return tuple(n + b + e for n, b, e in zip(spatial, pads[0], pads[1], strict=True))


def _unpad(geo, channels_first: tuple[int, ...], pads: SpatialPads | None):
    """A geometry resolved on the padded input, re-expressed on the unpadded one: the Pad's zeros join the node's
    own padding (both read as zero from the memory tile)."""
    if pads is None:
        return geo
    return dataclasses.replace(geo, spatial=tuple(channels_first[1:]),
                               pads_begin=tuple(a + b for a, b in zip(geo.pads_begin, pads[0], strict=True)),
                               pads_end=tuple(a + b for a, b in zip(geo.pads_end, pads[1], strict=True)))


def pad_of(node: onnx.NodeProto, where: str, rank: int, const) -> SpatialPads:
    """The spatial zeros of an ONNX Pad (``mode="constant"``, value 0, nothing on the batch or channel axes) of a
    rank-``rank`` ``[N, C, *spatial]`` tensor, or a typed error. ``const(name)`` gives a constant input's array
    (None if not constant)."""
    mode = attr(node, "mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise UnsupportedOpError(where, f"mode {mode!r} pads with copies of the image, not zeros",
                                 "pad with zeros (mode constant), or inside the Conv / pool (its pads attribute)")
    inputs = list(node.input) + [""] * 4
    if inputs[1]:
        raw = const(inputs[1])
        if raw is None:
            raise UnsupportedOpError(where, f"its pads {inputs[1]} are computed at run time",
                                     "give the pads as a constant")
        pads = [int(v) for v in np.asarray(raw).reshape(-1)]
    else:
        pads = [int(v) for v in attr(node, "pads", [])]
    value = const(inputs[2]) if inputs[2] else attr(node, "value", 0.0)
    if inputs[2] and value is None:
        raise UnsupportedOpError(where, "its constant value is computed at run time", "pad with the constant 0")
    if np.asarray(value).size and float(np.asarray(value).reshape(-1)[0]) != 0.0:
        raise UnsupportedOpError(where, f"pads with {float(np.asarray(value).reshape(-1)[0]):g}, not zero",
                                 "pad with zeros (the padding a convolution reads)")
    axes = list(range(rank))
    if inputs[3]:
        raw = const(inputs[3])
        if raw is None:
            raise UnsupportedOpError(where, "its axes are computed at run time", "give the axes as a constant")
        axes = [int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(raw).reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise BadFileError(where, f"{len(pads)} pads for {len(axes)} axes", "re-export the model")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[len(axes) + i]
    if begin[0] or end[0] or begin[1] or end[1]:
        raise UnsupportedOpError(where, f"pads the batch or channel axis (pads {pads})",
                                 "pad only the spatial axes of an [N, C, H, W] / [N, C, L] tensor")
    if min(begin + end) < 0:
        raise UnsupportedOpError(where, f"negative pads {pads} crop the image", "crop with a Slice instead")
    return tuple(begin[2:]), tuple(end[2:])


def conv_geometry(node: onnx.NodeProto, where: str, channels_first: tuple[int, ...], w_shape: tuple[int, ...],
                  pads: SpatialPads | None = None):
    """The geometry of an ONNX Conv reading a ``[C, *spatial]`` event with weights ``[M, C / group, *kernel]``
    (ir/conv_semantics.py), or a typed error naming the node; ``pads``: an explicit zero Pad before it, folded in."""
    from nn2aie.ir.conv_semantics import ConvGeometry

    spatial = _padded(channels_first, pads)
    if len(w_shape) != len(spatial) + 2:
        raise BadFileError(where, f"weights of shape {list(w_shape)} do not match a {len(spatial)}-D input "
                           f"{list(channels_first)}", "re-export the model")
    kernel = tuple(int(v) for v in (attr(node, "kernel_shape") or w_shape[2:]))
    if kernel != tuple(w_shape[2:]):
        raise BadFileError(where, f"kernel_shape {list(kernel)} differs from the weights {list(w_shape)}",
                           "re-export the model")
    group = int(attr(node, "group", 1))
    if group < 1 or channels_first[0] != w_shape[1] * group:
        raise BadFileError(where, f"{channels_first[0]} input channels do not match weights {list(w_shape)} with "
                           f"{group} group(s)", "re-export the model")
    try:
        geo = ConvGeometry.from_onnx(spatial, channels_first[0], kernel, int(w_shape[0]), attr(node, "strides"),
                                     attr(node, "dilations"), attr(node, "pads"), attr(node, "auto_pad", "NOTSET"),
                                     group)
    except ValueError as exc:
        raise BadFileError(where, str(exc), "re-export the model") from exc
    geo = _unpad(geo, channels_first, pads)
    why = geo.problem()
    if why is not None:
        raise UnsupportedOpError(where, f"is not a supported convolution: {why}",
                                 "use 1-D or 2-D convolutions with padding smaller than the kernel")
    return geo


def conv_attrs(geo) -> dict:
    """The logical conv op's attributes (kernels/conv/logical.py) of a geometry."""
    return {"kernel": list(geo.kernel), "strides": list(geo.strides), "dilations": list(geo.dilations),
            "pads_begin": list(geo.pads_begin), "pads_end": list(geo.pads_end), "groups": geo.groups}


def pool_attrs(node: onnx.NodeProto, where: str, channels_first: tuple[int, ...],
               pads: SpatialPads | None = None) -> dict:
    """The logical pool op's attributes of an ONNX MaxPool reading a ``[C, *spatial]`` event, or a typed error;
    ``pads``: an explicit zero Pad before it, folded into its padding."""
    from nn2aie.ir.conv_semantics import ConvGeometry
    from nn2aie.ir.pool_semantics import PoolGeometry

    spatial = _padded(channels_first, pads)
    kernel = tuple(int(v) for v in (attr(node, "kernel_shape") or ()))
    if len(kernel) != len(spatial):
        raise BadFileError(where, f"kernel_shape {list(kernel)} does not match the {len(spatial)}-D input",
                           "re-export the model")
    if int(attr(node, "storage_order", 0)) != 0 or (len(node.output) > 1 and node.output[1]):
        raise UnsupportedOpError(where, "returns the indices of the maxima (a second output / storage_order)",
                                 "export MaxPool without indices")
    try:  # auto_pad and pads resolve as for Conv (the kernel's geometry; 1 filter is a placeholder)
        conv = ConvGeometry.from_onnx(spatial, channels_first[0], kernel, 1, attr(node, "strides"),
                                      attr(node, "dilations"), attr(node, "pads"), attr(node, "auto_pad", "NOTSET"))
    except ValueError as exc:
        raise BadFileError(where, str(exc), "re-export the model") from exc
    conv = _unpad(conv, channels_first, pads)
    geo = PoolGeometry(tuple(channels_first[1:]), kernel, conv.strides, conv.pads_begin, conv.pads_end,
                       conv.dilations, bool(attr(node, "ceil_mode", 0)))
    why = geo.problem()
    if why is not None:
        raise UnsupportedOpError(where, f"is not a supported pooling: {why}", "use 1-D or 2-D windows")
    return {"op": "max", "kernel": list(geo.kernel), "strides": list(geo.strides), "dilations": list(geo.dilations),
            "pads_begin": list(geo.pads_begin), "pads_end": list(geo.pads_end), "ceil_mode": geo.ceil_mode,
            "out": list(geo.out_spatial)}
