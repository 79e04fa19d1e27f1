"""Seeded mutations of valid models into fuzz cases (model files, raw bytes, file-system oddities, options).

``make_case(base_seed, index)`` is a pure function of its arguments: the same pair always gives the same case, so a
case found in a large run is reproduced with ``python -m tests.fuzz.run --seed S --only INDEX``.

Graph mutations edit the ``ModelProto`` directly (no ``onnx.checker``, so invalid models reach nn2aie): operator
types and domains, attributes, graph input/output shapes and types (0, negative, 2**31, 2**63-1, symbolic, missing),
initializer shapes / values / dtypes / deletion, scales (NaN, inf, 0, negative, non-power-of-two, denormal, per-axis)
and zero points, dangling inputs, cycles, duplicate names and producers, empty graphs, missing or extra graph
outputs, opset and IR versions, node removal / duplication / reordering, sparse and external initializers, layer
widths from 0 to thousands, and weird names. Byte mutations cut, flip, splice or concatenate the serialized file or
replace it with random bytes / text / nothing; path cases pass a directory, a missing path, a FIFO, a dangling
symlink or a valid model under a wrong extension. Option mutations give ``CompileOptions`` odd batches, PLIO
widths, devices, clocks, weight limits and per-layer overrides.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .seeds import QONNX_DOMAIN, SEEDS, Seed

# --------------------------------------------------------------------------------------------------------------
# the case
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One fuzz input: what to put on disk (``kind``) and the options to compile it with."""

    index: int
    seed: str  # seed model name ("-" for inputs not derived from a model)
    framework: str
    mutations: list[str] = field(default_factory=list)
    kind: str = "file"  # file | dir | missing | fifo | dangling_symlink
    payload: bytes = b""
    suffix: str = ".onnx"
    options: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        muts = "; ".join(self.mutations) if self.mutations else "unmodified"
        opts = f" options={self.options}" if self.options else ""
        return f"#{self.index} [{self.seed}] {muts}{opts}"


class NotApplicable(Exception):
    """The mutation has nothing to act on in this model (the generator picks another one)."""


# --------------------------------------------------------------------------------------------------------------
# helpers on ModelProto
# --------------------------------------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, items):
    items = list(items)
    if not items:
        raise NotApplicable
    return items[int(rng.integers(len(items)))]


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def _array(init: onnx.TensorProto) -> np.ndarray:
    """The initializer's value; NotApplicable when an earlier mutation made it unreadable."""
    if init.data_location == TensorProto.EXTERNAL:
        raise NotApplicable
    try:
        return numpy_helper.to_array(init)
    except Exception as exc:  # dims that lie about the data, unknown dtypes, ...
        raise NotApplicable from exc


def _set_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    new = numpy_helper.from_array(np.asarray(value), name)
    for init in model.graph.initializer:
        if init.name == name:
            init.CopyFrom(new)
            return
    model.graph.initializer.append(new)


def _param_inits(model: onnx.ModelProto, slot: int) -> list[str]:
    """Initializers feeding input ``slot`` of a quantizer (1 = scale, 2 = zero point, 3 = QONNX bit width)."""
    names = _inits(model)
    out = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Quant") and len(node.input) > slot:
            if node.input[slot] in names and node.input[slot] not in out:
                out.append(node.input[slot])
    return out


def _weight_like_inits(model: onnx.ModelProto) -> list[str]:
    """Initializers that are quantized data (not quantizer parameters)."""
    params = set(_param_inits(model, 1)) | set(_param_inits(model, 2)) | set(_param_inits(model, 3))
    return [i.name for i in model.graph.initializer if i.name not in params]


def _layers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]


def _producer(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _weight_source(model: onnx.ModelProto, layer: onnx.NodeProto) -> tuple[str, bool] | None:
    """(initializer name, stored transposed) of a layer's weights, through DQ / Q / Quant / Transpose nodes."""
    inits = _inits(model)
    prod = _producer(model)
    t, transposed = layer.input[1], layer.op_type == "Gemm" and any(
        a.name == "transB" and a.i for a in layer.attribute)
    for _ in range(6):
        if t in inits:
            return t, transposed
        node = prod.get(t)
        if node is None or not node.input:
            return None
        if node.op_type == "Transpose":
            transposed = not transposed
        t = node.input[0]
    return None


def _bias_source(model: onnx.ModelProto, layer: onnx.NodeProto) -> str | None:
    inits = _inits(model)
    prod = _producer(model)
    if layer.op_type == "Gemm":
        t = layer.input[2] if len(layer.input) > 2 else ""
    else:
        users = [n for n in model.graph.node if layer.output[0] in n.input and n.op_type == "Add"]
        if not users:
            return None
        t = next((i for i in users[0].input if i != layer.output[0]), "")
    for _ in range(4):
        if t in inits:
            return t
        node = prod.get(t)
        if node is None or not node.input:
            return None
        t = node.input[0]
    return None


def _rename_everywhere(model: onnx.ModelProto, old: str, new: str) -> None:
    g = model.graph
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for coll in (g.input, g.output, g.value_info, g.initializer):
        for item in coll:
            if item.name == old:
                item.name = new


def _all_tensor_names(model: onnx.ModelProto) -> list[str]:
    g = model.graph
    names = [vi.name for vi in g.input] + [i.name for i in g.initializer]
    names += [o for n in g.node for o in n.output]
    return list(dict.fromkeys(n for n in names if n))


def _real_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = set(_inits(model))
    for vi in model.graph.input:
        if vi.name not in inits:
            return vi
    raise NotApplicable


# --------------------------------------------------------------------------------------------------------------
# value pools
# --------------------------------------------------------------------------------------------------------------
OP_POOL = ("Sigmoid", "Tanh", "Softmax", "Conv", "Reshape", "Identity", "Dropout", "Transpose", "Add", "Mul",
           "MatMul", "Gemm", "Relu", "QuantizeLinear", "DequantizeLinear", "Quant", "Constant", "Cast", "Floor",
           "LeakyRelu", "Clip", "Flatten", "BipolarQuant", "Trunc", "MultiThreshold", "If", "Loop", "NoSuchOp", "")
DOMAIN_POOL = ("", "ai.onnx", QONNX_DOMAIN, "com.microsoft", "ai.onnx.ml", "bogus.domain", "qonnx.custom_op.other")
ATTR_NAMES = ("transA", "transB", "alpha", "beta", "axis", "block_size", "output_dtype", "saturate", "perm",
              "signed", "narrow", "rounding_mode", "ratio", "to", "value", "foo")
DIM_POOL = (0, -1, -7, 1, 2, 3, 2**31 - 1, 2**31, 2**62, 2**63 - 1)
SCALE_POOL: tuple[tuple[str, object], ...] = (
    ("nan", np.float32(np.nan)), ("inf", np.float32(np.inf)), ("-inf", np.float32(-np.inf)),
    ("zero", np.float32(0.0)), ("-zero", np.float32(-0.0)), ("negative 2**-3", np.float32(-0.125)),
    ("non power of two 0.3", np.float32(0.3)), ("non power of two 0.0123", np.float32(0.0123)),
    ("denormal 2**-149", np.float32(2.0**-149)), ("2**-126", np.float32(2.0**-126)),
    ("2**100", np.float32(2.0**100)), ("2**127", np.float32(2.0**127)), ("one", np.float32(1.0)),
    ("float64 2**-1074", np.float64(2.0**-1074)), ("float64 2**-40", np.float64(2.0**-40)),
    ("float16 2**-4", np.float16(2.0**-4)), ("int32 2", np.int32(2)), ("empty", np.zeros((0,), np.float32)),
    ("[1,1] 2**-5", np.full((1, 1), 2.0**-5, np.float32)), ("vector equal", np.full((3,), 2.0**-5, np.float32)),
    ("vector unequal", np.asarray([2.0**-5, 2.0**-4], np.float32)), ("bool", np.bool_(True)),
)
ZP_POOL: tuple[tuple[str, object], ...] = (
    ("int8 3", np.int8(3)), ("uint8 255", np.uint8(255)), ("int8 -128", np.int8(-128)), ("int32 0", np.int32(0)),
    ("int32 7", np.int32(7)), ("float32 0", np.float32(0.0)), ("float32 0.5", np.float32(0.5)),
    ("float32 nan", np.float32(np.nan)), ("uint16 0", np.uint16(0)), ("int16 0", np.int16(0)),
    ("int64 0", np.int64(0)), ("vector int8 0", np.zeros((4,), np.int8)), ("empty int8", np.zeros((0,), np.int8)),
    ("bool", np.bool_(False)),
)
BITWIDTH_POOL = (0.0, 1.0, 2.0, 7.0, 9.0, 16.0, 17.0, 31.0, 32.0, 33.0, 64.0, 1.5, -8.0, float("nan"),
                 float("inf"), 2.0**40)
DTYPE_POOL = ("float16", "float64", "float32", "int32", "int64", "uint16", "uint8", "int8", "int16", "bool",
              "uint32", "uint64", "str")
NAME_POOL = ("", "x", "int", "class", "0abc", "a/b:c", "名前", "a b", "x" * 300, "__", "fc0_matmul", "y", "-", ".")


def _attr_value(rng: np.random.Generator, name: str):
    kind = int(rng.integers(6))
    if kind == 0:
        return int(_pick(rng, (-3, -1, 0, 1, 2, 5, 2**31, -(2**63))))
    if kind == 1:
        return float(_pick(rng, (0.0, 0.5, 1.0, 2.0, -1.0, math.nan, math.inf)))
    if kind == 2:
        return _pick(rng, (b"ROUND", b"FLOOR", b"CEIL", b"HALF_UP", b"bogus", b""))
    if kind == 3:
        return [int(v) for v in _pick(rng, ([1, 0], [0, 1], [0, 1, 2], [], [2, 0], [-1, 0]))]
    if kind == 4:
        return [float(v) for v in _pick(rng, ([1.0], [0.5, 0.25], []))]
    return numpy_helper.from_array(np.asarray([1, 2], np.int64), "t")


def _cast(value: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "str":
        return np.asarray(value).astype(str).astype(object)
    with np.errstate(all="ignore"):
        return np.asarray(value).astype(dtype)


# --------------------------------------------------------------------------------------------------------------
# graph mutations: fn(model, rng) -> description; raise NotApplicable when there is no target
# --------------------------------------------------------------------------------------------------------------
def m_op_type(model, rng):
    node = _pick(rng, model.graph.node)
    new = _pick(rng, OP_POOL)
    old, node.op_type = node.op_type, new
    if new in ("Quant", "BipolarQuant", "Trunc", "MultiThreshold") and rng.random() < 0.7:
        node.domain = QONNX_DOMAIN
    elif node.domain == QONNX_DOMAIN and rng.random() < 0.7:
        node.domain = ""
    return f"op_type of {node.name or node.output[0]}: {old} -> {new!r} (domain {node.domain!r})"


def m_domain(model, rng):
    node = _pick(rng, model.graph.node)
    node.domain = _pick(rng, DOMAIN_POOL)
    return f"domain of {node.name} -> {node.domain!r}"


def m_attribute(model, rng):
    node = _pick(rng, model.graph.node)
    name = _pick(rng, ATTR_NAMES)
    value = _attr_value(rng, name)
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    try:
        node.attribute.append(helper.make_attribute(name, value))
    except (ValueError, TypeError) as exc:
        raise NotApplicable from exc
    shown = value if not isinstance(value, onnx.TensorProto) else "tensor"
    return f"attribute {name}={shown!r} on {node.name}"


def m_remove_attribute(model, rng):
    node = _pick(rng, [n for n in model.graph.node if n.attribute])
    a = _pick(rng, node.attribute)
    node.attribute.remove(a)
    return f"removed attribute {a.name} of {node.name}"


def m_io_shape(model, rng):
    vi = _pick(rng, [_real_input(model)] + list(model.graph.output))
    tt = vi.type.tensor_type
    choice = int(rng.integers(7))
    if choice == 0 and tt.HasField("shape") and len(tt.shape.dim):
        d = tt.shape.dim[int(rng.integers(len(tt.shape.dim)))]
        value = int(_pick(rng, DIM_POOL))
        d.dim_value = value
        return f"dim of {vi.name} -> {value}"
    if choice == 1 and tt.HasField("shape") and len(tt.shape.dim):
        d = tt.shape.dim[int(rng.integers(len(tt.shape.dim)))]
        d.dim_param = _pick(rng, ("K", "batch", ""))
        return f"dim of {vi.name} -> symbolic {d.dim_param!r}"
    if choice == 2 and tt.HasField("shape") and len(tt.shape.dim):
        tt.shape.dim[int(rng.integers(len(tt.shape.dim)))].Clear()
        return f"dim of {vi.name} -> unknown"
    if choice == 3:
        rank = int(_pick(rng, (0, 1, 3, 4)))
        dims = [int(_pick(rng, (1, 2, 4, 8))) for _ in range(rank)]
        tt.ClearField("shape")
        tt.shape.SetInParent()
        for v in dims:
            tt.shape.dim.add().dim_value = v
        return f"shape of {vi.name} -> rank {rank} {dims}"
    if choice == 4:
        tt.ClearField("shape")
        return f"shape of {vi.name} removed"
    if choice == 5:
        tt.elem_type = int(_pick(rng, (TensorProto.INT8, TensorProto.DOUBLE, TensorProto.FLOAT16,
                                        TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.INT64, 999)))
        return f"elem_type of {vi.name} -> {tt.elem_type}"
    vi.ClearField("type")
    return f"type of {vi.name} removed"


def m_init_shape(model, rng):
    name = _pick(rng, [i.name for i in model.graph.initializer])
    init = _inits(model)[name]
    arr = _array(init)
    choice = int(rng.integers(7))
    if choice == 0:
        new = arr.reshape(1, -1) if arr.size else arr.reshape(1, 0)
    elif choice == 1:
        new = arr.reshape(-1)
    elif choice == 2:
        new = arr[None, ...]
    elif choice == 3 and arr.ndim == 2:
        new = arr.T
    elif choice == 4:
        new = np.zeros((0,) + arr.shape[1:], arr.dtype)
    else:  # dims that lie about the stored data (huge, negative, or simply wrong)
        dims = [int(_pick(rng, (2**31, 2**40, -1, 0, 3, 2**62)))] + list(arr.shape[1:])
        del init.dims[:]
        init.dims.extend(dims)
        return f"dims of initializer {name} -> {dims} (data unchanged)"
    _set_init(model, name, new)
    return f"initializer {name} reshaped {list(arr.shape)} -> {list(new.shape)}"


def m_init_delete(model, rng):
    init = _pick(rng, model.graph.initializer)
    model.graph.initializer.remove(init)
    return f"deleted initializer {init.name}"


def m_scale(model, rng):
    name = _pick(rng, _param_inits(model, 1))
    label, value = SCALE_POOL[int(rng.integers(len(SCALE_POOL)))]
    _set_init(model, name, np.asarray(value))
    return f"scale {name} -> {label}"


def m_zero_point(model, rng):
    names = _param_inits(model, 2)
    name = _pick(rng, names)
    label, value = ZP_POOL[int(rng.integers(len(ZP_POOL)))]
    if model.graph.node and any(n.domain == QONNX_DOMAIN for n in model.graph.node):
        value = np.asarray(value).astype(np.float32)  # QONNX zero points are float
    _set_init(model, name, np.asarray(value))
    return f"zero point {name} -> {label}"


def m_bitwidth(model, rng):
    name = _pick(rng, _param_inits(model, 3))
    value = float(_pick(rng, BITWIDTH_POOL))
    _set_init(model, name, np.asarray(value, np.float32))
    return f"bit width {name} -> {value}"


def m_init_dtype(model, rng):
    name = _pick(rng, [i.name for i in model.graph.initializer])
    dtype = _pick(rng, DTYPE_POOL)
    _set_init(model, name, _cast(_array(_inits(model)[name]), dtype))
    return f"initializer {name} -> dtype {dtype}"


def m_init_values(model, rng):
    name = _pick(rng, _weight_like_inits(model))
    arr = _array(_inits(model)[name])
    choice = int(rng.integers(6))
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        pools = (info.max, info.min, 0)
        if choice < 3:
            new = np.full_like(arr, pools[choice])
            label = f"all {pools[choice]}"
        else:
            new = rng.integers(info.min, int(info.max) + 1, size=arr.shape, dtype=np.int64).astype(arr.dtype)
            label = "uniform over the dtype"
    else:
        pools = (np.nan, np.inf, 1e30, -1e30, 0.0, 2.0**-30)
        new = np.full_like(arr, pools[choice])
        if arr.size > 1 and rng.random() < 0.5:
            new = arr.copy()
            new.reshape(-1)[int(rng.integers(arr.size))] = pools[choice]
            label = f"one value {pools[choice]}"
        else:
            label = f"all {pools[choice]}"
    _set_init(model, name, new)
    return f"values of {name}: {label}"


def m_dangling_input(model, rng):
    node = _pick(rng, [n for n in model.graph.node if n.input])
    i = int(rng.integers(len(node.input)))
    old = node.input[i]
    node.input[i] = f"ghost_{i}"
    return f"input {i} of {node.name} ({old}) -> dangling ghost_{i}"


def m_self_cycle(model, rng):
    node = _pick(rng, [n for n in model.graph.node if n.input and n.output])
    node.input[0] = node.output[0]
    return f"{node.name} consumes its own output"


def m_two_cycle(model, rng):
    prod = _producer(model)
    pairs = [(prod[n.input[0]], n) for n in model.graph.node if n.input and n.input[0] in prod]
    a, b = _pick(rng, pairs)
    a.input[0] = b.output[0]
    return f"cycle {a.name} <-> {b.name}"


def m_duplicate_output(model, rng):
    nodes = [n for n in model.graph.node if n.output]
    a, b = _pick(rng, nodes), _pick(rng, nodes)
    if a.output[0] == b.output[0]:
        raise NotApplicable
    b.output[0] = a.output[0]
    return f"{b.name} also produces {a.output[0]}"


def m_duplicate_node_name(model, rng):
    nodes = list(model.graph.node)
    if len(nodes) < 2:
        raise NotApplicable
    a, b = _pick(rng, nodes), _pick(rng, nodes)
    b.name = a.name
    return f"node name {a.name} used twice"


def m_duplicate_init(model, rng):
    init = _pick(rng, model.graph.initializer)
    dup = copy.deepcopy(init)
    arr = _array(init)
    if arr.size and rng.random() < 0.5:
        dup.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
    model.graph.initializer.append(dup)
    return f"initializer {init.name} declared twice"


def m_init_shadows_tensor(model, rng):
    node = _pick(rng, model.graph.node)
    name = node.output[0]
    model.graph.initializer.append(numpy_helper.from_array(np.ones((2, 2), np.float32), name))
    return f"initializer named like node output {name}"


def m_empty_graph(model, rng):
    del model.graph.node[:]
    if rng.random() < 0.5:
        del model.graph.initializer[:]
    return "all nodes removed"


def m_graph_outputs(model, rng):
    g = model.graph
    choice = int(rng.integers(4))
    if choice == 0:
        del g.output[:]
        return "graph outputs removed"
    if choice == 1:
        g.output[0].name = "never_produced"
        return "graph output renamed to never_produced"
    if choice == 2:
        name = _pick(rng, _all_tensor_names(model))
        g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        return f"extra graph output {name}"
    g.output[0].name = _real_input(model).name
    return "graph output is the graph input"


def m_graph_inputs(model, rng):
    g = model.graph
    choice = int(rng.integers(4))
    if choice == 0:
        del g.input[:]
        return "graph inputs removed"
    if choice == 1:
        g.input.append(helper.make_tensor_value_info("extra_in", TensorProto.FLOAT, [1, 4]))
        return "extra graph input"
    if choice == 2:  # old IR style: initializers listed as graph inputs (legal)
        for init in g.initializer:
            g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        return "initializers listed as graph inputs"
    init = _pick(rng, g.initializer)
    g.initializer.remove(init)
    g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return f"initializer {init.name} turned into a graph input"


def m_opset(model, rng):
    choice = int(rng.integers(4))
    if choice == 0:
        v = int(_pick(rng, (1, 7, 10, 13, 17, 19, 20, 21, 22, 23, 30, 1000, 0, -1)))
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = v
        return f"default opset -> {v}"
    if choice == 1:
        keep = [imp for imp in model.opset_import if imp.domain not in ("", "ai.onnx")]
        del model.opset_import[:]
        model.opset_import.extend(keep)
        return "default opset import removed"
    if choice == 2:
        model.opset_import.append(helper.make_opsetid(_pick(rng, DOMAIN_POOL), int(_pick(rng, (1, 13, 99)))))
        return f"extra opset import {model.opset_import[-1].domain!r}"
    model.ir_version = int(_pick(rng, (0, 1, 3, 4, 7, 10, 11, 12, 100)))
    return f"ir_version -> {model.ir_version}"


def m_remove_node(model, rng):
    node = _pick(rng, model.graph.node)
    model.graph.node.remove(node)
    return f"removed node {node.name} ({node.op_type})"


def m_bypass_node(model, rng):
    node = _pick(rng, [n for n in model.graph.node if n.input and n.output])
    model.graph.node.remove(node)
    _rename_everywhere(model, node.output[0], node.input[0])
    return f"bypassed node {node.name} ({node.op_type})"


def m_duplicate_node(model, rng):
    node = _pick(rng, model.graph.node)
    dup = copy.deepcopy(node)
    if rng.random() < 0.5:
        dup.output[0] = dup.output[0] + "_dup"
    model.graph.node.insert(int(rng.integers(len(model.graph.node) + 1)), dup)
    return f"duplicated node {node.name}"


def m_shuffle(model, rng):
    nodes = list(model.graph.node)
    order = rng.permutation(len(nodes))
    del model.graph.node[:]
    model.graph.node.extend([nodes[i] for i in order])
    return "node order shuffled"


def m_swap_inputs(model, rng):
    node = _pick(rng, [n for n in model.graph.node if len(n.input) >= 2])
    ins = list(node.input)
    i, j = (0, 1) if rng.random() < 0.6 else (0, len(ins) - 1)
    ins[i], ins[j] = ins[j], ins[i]
    del node.input[:]
    node.input.extend(ins)
    return f"inputs {i} and {j} of {node.name} swapped"


def m_insert_node(model, rng):
    node = _pick(rng, [n for n in model.graph.node if n.input])
    op = _pick(rng, ("Identity", "Identity", "Dropout", "Relu", "Sigmoid", "Transpose"))
    slot = int(rng.integers(len(node.input)))
    src = node.input[slot]
    new = f"{src}_via_{op}"
    model.graph.node.append(helper.make_node(op, [src], [new], name=f"inserted_{op}"))
    node.input[slot] = new
    return f"{op} inserted before input {slot} of {node.name}"


def m_init_to_constant(model, rng):
    init = _pick(rng, model.graph.initializer)
    model.graph.initializer.remove(init)
    model.graph.node.insert(0, helper.make_node("Constant", [], [init.name], name=f"const_{init.name}", value=init))
    return f"initializer {init.name} moved into a Constant node"


def m_node_arity(model, rng):
    node = _pick(rng, model.graph.node)
    choice = int(rng.integers(4))
    if choice == 0 and node.input:
        removed = node.input[-1]
        del node.input[-1]
        return f"last input ({removed}) of {node.name} removed"
    if choice == 1:
        node.input.append(_pick(rng, ("", node.input[0] if node.input else "", "ghost_extra")))
        return f"extra input {node.input[-1]!r} on {node.name}"
    if choice == 2:
        node.output.append(f"{node.name}_extra_out")
        return f"extra output on {node.name}"
    del node.output[:]
    return f"outputs of {node.name} removed"


def m_sparse_init(model, rng):
    init = _pick(rng, [i for i in model.graph.initializer if i.data_location != TensorProto.EXTERNAL
                       and len(i.dims) >= 1 and math.prod(i.dims) >= 2])
    arr = _array(init)
    flat = arr.reshape(-1)
    idx = np.flatnonzero(flat)
    values = flat[idx]
    choice = int(rng.integers(3))
    label = "valid"
    if choice == 1 and idx.size:
        idx = idx.copy()
        idx[-1] = arr.size + 5
        label = "index out of range"
    elif choice == 2 and idx.size:
        idx = idx.copy()
        idx[0] = -3
        label = "negative index"
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(values, init.name),
                                       numpy_helper.from_array(idx.astype(np.int64), init.name + "_idx"),
                                       list(arr.shape))
    model.graph.initializer.remove(init)
    model.graph.sparse_initializer.append(sparse)
    return f"initializer {init.name} made sparse ({label})"


def m_external_data(model, rng):
    init = _pick(rng, [i for i in model.graph.initializer if i.data_location != TensorProto.EXTERNAL])
    init.CopyFrom(numpy_helper.from_array(_array(init), init.name))
    init.ClearField("raw_data")
    del init.external_data[:]
    loc = _pick(rng, ("missing.bin", "../outside.bin", "", "."))
    entry = init.external_data.add()
    entry.key, entry.value = "location", loc
    init.data_location = TensorProto.EXTERNAL
    return f"initializer {init.name} points to external data {loc!r}"


def m_resize_layer(model, rng):
    """Change a hidden width consistently (weights, bias, next layer's weights): 0 to thousands of units."""
    layers = _layers(model)
    if len(layers) < 2:
        raise NotApplicable
    i = int(rng.integers(len(layers) - 1))
    width = int(_pick(rng, (0, 1, 2, 3, 7, 255, 1000, 3000)))
    src_a, src_b = _weight_source(model, layers[i]), _weight_source(model, layers[i + 1])
    if src_a is None or src_b is None:
        raise NotApplicable
    inits = _inits(model)
    (wa, ta), (wb, tb) = src_a, src_b
    a, b = _array(inits[wa]), _array(inits[wb])
    k = a.shape[1] if ta else a.shape[0]
    n2 = b.shape[0] if tb else b.shape[1]

    def rand(shape, like):
        if np.issubdtype(like.dtype, np.integer):
            return rng.integers(-20, 21, size=shape).astype(like.dtype)
        return (rng.normal(0, 0.1, size=shape)).astype(like.dtype)

    _set_init(model, wa, rand((width, k) if ta else (k, width), a))
    _set_init(model, wb, rand((n2, width) if tb else (width, n2), b))
    bias = _bias_source(model, layers[i])
    if bias is not None:
        old = _array(inits[bias])
        _set_init(model, bias, np.zeros((width,), old.dtype))
    return f"width after {layers[i].name} -> {width}"


def m_rename(model, rng):
    old = _pick(rng, _all_tensor_names(model))
    new = _pick(rng, NAME_POOL)
    _rename_everywhere(model, old, new)
    return f"tensor {old} renamed to {new[:20]!r}"


def m_names(model, rng):
    choice = int(rng.integers(3))
    new = _pick(rng, NAME_POOL)
    if choice == 0:
        model.graph.name = new
        return f"graph name -> {new[:20]!r}"
    node = _pick(rng, model.graph.node)
    node.name = new
    return f"node name {node.op_type} -> {new[:20]!r}"


def m_batch_dim(model, rng):
    vi = _real_input(model)
    dims = vi.type.tensor_type.shape.dim
    if not len(dims):
        raise NotApplicable
    value = int(_pick(rng, (1, 3, 4, 7, 0)))
    dims[0].dim_value = value
    return f"batch dim of {vi.name} -> {value}"


def m_value_info(model, rng):
    name = _pick(rng, [o for n in model.graph.node for o in n.output])
    dims = [int(_pick(rng, (1, 2, 5, 0))) for _ in range(int(rng.integers(4)))]
    etype = int(_pick(rng, (TensorProto.FLOAT, TensorProto.INT8, TensorProto.INT64)))
    model.graph.value_info.append(helper.make_tensor_value_info(name, etype, dims))
    return f"value_info {name}: type {etype} shape {dims}"


def _qdq_pairs(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return [(q, dq) for q in model.graph.node if q.op_type == "QuantizeLinear" and q.output
            for dq in users.get(q.output[0], []) if dq.op_type == "DequantizeLinear"]


FRAC_POOL = (-60, -30, -12, -3, 0, 1, 3, 7, 12, 20, 30, 45, 60, 100, 126, 140)


def m_rescale(model, rng):
    """A consistent power-of-two scale change (the model stays valid): a Q -> DQ pair, the DequantizeLinear of
    weights or bias, or a QONNX Quant; fractional bits from -60 to 140 (float32 denormals included)."""
    inits = _inits(model)
    groups = [[q, dq] for q, dq in _qdq_pairs(model)]
    groups += [[n] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    groups += [[n] for n in model.graph.node if n.op_type in ("Quant", "IntQuant")]
    group = _pick(rng, groups)
    frac = int(_pick(rng, FRAC_POOL))
    for node in group:
        if len(node.input) > 1 and node.input[1] in inits:
            _set_init(model, node.input[1], np.float32(2.0 ** -frac))
    return f"scale of {'/'.join(n.name for n in group)} -> 2**{-frac}"


def m_retype(model, rng):
    """A consistent integer-type change: the zero points of a Q -> DQ pair, an integer initializer behind a
    DequantizeLinear (cast with saturation), or a QONNX Quant's bit width / signedness / narrow range."""
    inits = _inits(model)
    quants = [n for n in model.graph.node if n.op_type in ("Quant", "IntQuant")]
    if quants:
        node = _pick(rng, quants)
        bits = int(_pick(rng, (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32)))
        if len(node.input) > 3 and node.input[3] in inits:
            _set_init(model, node.input[3], np.float32(bits))
        signed, narrow = int(rng.integers(2)), int(rng.integers(2))
        keep = [a for a in node.attribute if a.name not in ("signed", "narrow")]
        del node.attribute[:]
        node.attribute.extend(keep + [helper.make_attribute("signed", signed),
                                      helper.make_attribute("narrow", narrow)])
        return f"{node.name}: {bits} bits, signed={signed}, narrow={narrow}"
    dtype = np.dtype(_pick(rng, ("int8", "uint8", "int16", "uint16", "int32")))
    pairs = _qdq_pairs(model)
    const_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    if pairs and (rng.random() < 0.5 or not const_dq):
        group = list(_pick(rng, pairs))
        label = "activation"
    else:
        group = [_pick(rng, const_dq)]
        arr = _array(inits[group[0].input[0]])
        info = np.iinfo(dtype)
        _set_init(model, group[0].input[0], np.clip(arr.astype(np.int64), info.min, info.max).astype(dtype))
        label = f"constant {group[0].input[0]}"
    for node in group:
        if len(node.input) > 2 and node.input[2] in inits:
            _set_init(model, node.input[2], np.zeros((), dtype))
    return f"{label} retyped to {dtype}"


def _operand_nodes(model: onnx.ModelProto, name: str) -> tuple[list[onnx.NodeProto], str | None]:
    """Nodes computing a constant operand (DQ / Q / Quant / Transpose / Identity chain) and its initializer."""
    prod = _producer(model)
    inits = _inits(model)
    nodes: list[onnx.NodeProto] = []
    t = name
    for _ in range(6):
        if t in inits:
            return nodes, t
        node = prod.get(t)
        if node is None or not node.input:
            return nodes, None
        nodes.append(node)
        t = node.input[0]
    return nodes, None


def m_shift_scales(model, rng):
    """Every activation and bias scale times 2**-d, weights unchanged: each layer keeps its shift (input and output
    fractions move together) and the model stays valid, with fractional bits far outside the usual range."""
    d = int(_pick(rng, (-120, -100, -60, -20, 20, 60, 100, 120, 130)))
    inits = _inits(model)
    weight_nodes: set[str] = set()
    float_biases: list[str] = []
    for layer in _layers(model):
        nodes, _ = _operand_nodes(model, layer.input[1])
        weight_nodes |= {n.output[0] for n in nodes}
        bias = _bias_source(model, layer)
        if bias is None:
            continue
        b_in = layer.input[2] if layer.op_type == "Gemm" else next(
            i for n in model.graph.node if layer.output[0] in n.input and n.op_type == "Add"
            for i in n.input if i != layer.output[0])
        nodes, init = _operand_nodes(model, b_in)
        if not nodes and init is not None:
            float_biases.append(init)
    done = set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Quant"):
            continue
        if node.output and node.output[0] in weight_nodes:
            continue
        scale = node.input[1] if len(node.input) > 1 else ""
        if scale in inits and scale not in done:
            done.add(scale)
            _set_init(model, scale, np.ldexp(_array(inits[scale]).astype(np.float64), -d).astype(np.float32))
    for name in float_biases:
        _set_init(model, name, np.ldexp(_array(inits[name]).astype(np.float64), -d).astype(np.float32))
    return f"activation and bias scales times 2**{-d}"


MUTATIONS: dict[str, Callable] = {
    "op_type": m_op_type, "domain": m_domain, "attribute": m_attribute, "remove_attribute": m_remove_attribute,
    "io_shape": m_io_shape, "init_shape": m_init_shape, "init_delete": m_init_delete, "scale": m_scale,
    "zero_point": m_zero_point, "bitwidth": m_bitwidth, "init_dtype": m_init_dtype, "init_values": m_init_values,
    "dangling_input": m_dangling_input, "self_cycle": m_self_cycle, "two_cycle": m_two_cycle,
    "duplicate_output": m_duplicate_output, "duplicate_node_name": m_duplicate_node_name,
    "duplicate_init": m_duplicate_init, "init_shadows_tensor": m_init_shadows_tensor, "empty_graph": m_empty_graph,
    "graph_outputs": m_graph_outputs, "graph_inputs": m_graph_inputs, "opset": m_opset,
    "remove_node": m_remove_node, "bypass_node": m_bypass_node, "duplicate_node": m_duplicate_node,
    "shuffle": m_shuffle, "swap_inputs": m_swap_inputs, "insert_node": m_insert_node,
    "init_to_constant": m_init_to_constant, "node_arity": m_node_arity, "sparse_init": m_sparse_init,
    "external_data": m_external_data, "resize_layer": m_resize_layer, "rename": m_rename, "names": m_names,
    "batch_dim": m_batch_dim, "value_info": m_value_info, "rescale": m_rescale, "retype": m_retype,
    "shift_scales": m_shift_scales,
}
# relative weights (default 1): the consistent mutations that keep a model valid run more often
RARE = {"empty_graph": 0.3, "shuffle": 0.6, "names": 0.6, "value_info": 0.5, "rescale": 4.0, "retype": 3.0,
        "resize_layer": 2.0, "shift_scales": 3.0}


# --------------------------------------------------------------------------------------------------------------
# byte / path mutations of a serialized model
# --------------------------------------------------------------------------------------------------------------
def b_truncate(data: bytes, rng) -> tuple[bytes, str]:
    cut = int(rng.integers(len(data) + 1))
    return data[:cut], f"truncated at byte {cut} of {len(data)}"


def b_flip(data: bytes, rng) -> tuple[bytes, str]:
    buf = bytearray(data)
    n = int(rng.integers(1, 17))
    for _ in range(n):
        pos = int(rng.integers(len(buf)))
        buf[pos] ^= 1 << int(rng.integers(8))
    return bytes(buf), f"{n} bit flips"


def b_overwrite(data: bytes, rng) -> tuple[bytes, str]:
    buf = bytearray(data)
    start = int(rng.integers(len(buf)))
    span = int(rng.integers(1, 65))
    buf[start:start + span] = rng.integers(0, 256, size=len(buf[start:start + span]), dtype=np.uint8).tobytes()
    return bytes(buf), f"random bytes over [{start}, {start + span})"


def b_insert(data: bytes, rng) -> tuple[bytes, str]:
    pos = int(rng.integers(len(data) + 1))
    junk = rng.integers(0, 256, size=int(rng.integers(1, 33)), dtype=np.uint8).tobytes()
    return data[:pos] + junk + data[pos:], f"{len(junk)} random bytes inserted at {pos}"


def b_concat(data: bytes, rng) -> tuple[bytes, str]:
    return data + data, "file concatenated with itself (protobuf merge: every repeated field doubled)"


def b_random(data: bytes, rng) -> tuple[bytes, str]:
    n = int(_pick(rng, (1, 7, 100, 4096)))
    return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes(), f"{n} random bytes"


def b_text(data: bytes, rng) -> tuple[bytes, str]:
    text = _pick(rng, (b"", b"hello world\n", b'{"graph": []}', b"\x00" * 64, b"\xff" * 16,
                       b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}", b"PK\x03\x04" + b"\x00" * 26))
    return text, f"file content {text[:16]!r}"


BYTE_MUTATIONS = {"truncate": b_truncate, "flip": b_flip, "overwrite": b_overwrite, "insert": b_insert,
                  "concat": b_concat, "random": b_random, "text": b_text}
PATH_KINDS = ("dir", "missing", "fifo", "dangling_symlink", "wrong_extension")


# --------------------------------------------------------------------------------------------------------------
# option mutations
# --------------------------------------------------------------------------------------------------------------
def mutate_options(model: onnx.ModelProto | None, rng) -> dict:
    layer_names = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")] if model else []
    choice = int(rng.integers(6))
    if choice == 0:
        return {"batch": int(_pick(rng, (0, -4, 1, 3, 8, 12, 64, 4096, 2**31)))}
    if choice == 1:
        return {"plio_bits": int(_pick(rng, (0, 7, 32, 64, 256)))}
    if choice == 2:
        return {"device": _pick(rng, ("xcve2302", "xcve2802", "nope", "", "XCVE2802"))}
    if choice == 3:
        return {"pl_freq_mhz": float(_pick(rng, (0.0, -1.0, math.nan, math.inf, 1e9, 1.0, 625.0)))}
    if choice == 4:
        return {"max_weight_bytes": int(_pick(rng, (0, 63, 64, 1024, 65536, 10**9, -1)))}
    from nn2aie.frontends.onnx_common import identifier

    name = identifier(_pick(rng, layer_names), "dense0") if layer_names and rng.random() < 0.8 else "no_such_layer"
    ov = _pick(rng, ({"cas_length": 0, "cas_num": 1}, {"cas_length": -1, "cas_num": 2}, {"cas_length": 2},
                     {"cas_num": 3}, {"cas_length": 3, "cas_num": 2}, {"cas_length": 37, "cas_num": 8},
                     {"cas_length": 1000, "cas_num": 1000}, {"cas_length": 1, "cas_num": 1}, {"bogus": 1},
                     {"cas_length": "2", "cas_num": 1.5}))
    return {"overrides": {name: dict(ov)}}


# --------------------------------------------------------------------------------------------------------------
# case generation
# --------------------------------------------------------------------------------------------------------------
CATEGORY_WEIGHTS = {"graph": 0.64, "bytes": 0.14, "path": 0.05, "options": 0.10, "valid": 0.07}


def _weighted(rng, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def apply_mutation(model: onnx.ModelProto, name: str, rng) -> str:
    return MUTATIONS[name](model, rng)


def _mutate_graph(model: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, list[str]]:
    weights = {n: RARE.get(n, 1.0) for n in MUTATIONS}
    wanted = int(_pick(rng, (1, 1, 1, 2, 2, 3)))
    done: list[str] = []
    tries = 0
    while len(done) < wanted and tries < 20:
        tries += 1
        name = _weighted(rng, weights)
        trial = copy.deepcopy(model)
        try:
            text = apply_mutation(trial, name, rng)
        except NotApplicable:
            continue
        except (IndexError, ValueError, KeyError, TypeError):  # an earlier mutation left nothing it can act on
            continue
        model = trial
        done.append(f"{name}: {text}")
    return model, done or ["unmodified seed (no mutation applied)"]


def _checker_ok(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model)
    except Exception:  # noqa: BLE001 - any checker failure
        return False
    return True


def make_case(base_seed: int, index: int) -> Case:
    """The fuzz case number ``index`` of the run seeded ``base_seed`` (deterministic)."""
    rng = np.random.default_rng([base_seed, index])
    seed: Seed = SEEDS[int(rng.integers(len(SEEDS)))]
    model = seed.build()
    case = Case(index, seed.name, seed.framework)
    category = _weighted(rng, CATEGORY_WEIGHTS)
    if category == "valid":
        case.mutations.append("unmodified seed")
    elif category == "options":
        case.options = mutate_options(model, rng)
    elif category == "graph":
        # half of the graph cases retry (up to 8 times) until onnx.checker accepts the mutated model, so that
        # they reach nn2aie's own parsing, precision and placement instead of stopping at the checker
        want_valid = rng.random() < 0.5
        seed_model = model
        for _ in range(8 if want_valid else 1):
            model, case.mutations = _mutate_graph(seed_model, rng)
            if not want_valid or _checker_ok(model):
                break
        if want_valid:
            case.mutations.append("(checker-valid)" if _checker_ok(model) else "(checker-valid not reached)")
    data = model.SerializeToString()
    if category == "bytes":
        name = _pick(rng, list(BYTE_MUTATIONS))
        data, text = BYTE_MUTATIONS[name](data, rng)
        case.mutations.append(f"{name}: {text}")
    elif category == "path":
        kind = _pick(rng, PATH_KINDS)
        case.mutations.append(f"path: {kind}")
        if kind == "wrong_extension":
            case.suffix = _pick(rng, (".txt", ".pb", "", ".onnx.bak", ".ONNX"))
        else:
            case.kind = kind
    case.payload = data
    return case


def make_cases(base_seed: int, count: int, start: int = 0) -> list[Case]:
    return [make_case(base_seed, i) for i in range(start, start + count)]
