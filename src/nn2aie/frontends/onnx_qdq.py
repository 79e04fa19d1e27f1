"""ONNX QDQ frontend: MLPs in QuantizeLinear/DequantizeLinear form -> logical IR (one ``dense`` op per layer).

Accepted pattern (zero points 0, per-tensor power-of-two scales)::

    x(float [batch, K]) -> QuantizeLinear -> DequantizeLinear ->
      { MatMul(., DQ(int W) | DQ(Q(float W))) [-> Add(DQ(int32 b) | float b)] | Gemm(., W, C) }
      [-> Relu] -> QuantizeLinear -> DequantizeLinear [-> Relu [-> QuantizeLinear -> DequantizeLinear]] -> ...

The graph output is the last DequantizeLinear (or Relu) output, or the last QuantizeLinear output.

Semantics (shared/reference/numerics.md, ONNX QDQ): QuantizeLinear is y = saturate(round_half_even(x / s) + zp).
With s = 2**-f and zp = 0 a dequantised activation is exactly ``code * 2**-f``, the MatMul/Gemm/Add result is
exactly ``acc * 2**-(fx + fw)`` with an integer accumulator ``acc``, and QuantizeLinear of it is RND_CONV + SAT
requantisation — the ``dense`` op of the logical IR. ReLU commutes with that quantisation (zp = 0), so a ReLU
before or after a Q/DQ pair is folded into the layer.

Exactness of the reference: onnxruntime evaluates MatMul/Gemm/Add in float32. Every product and partial sum is an
integer multiple of the accumulator LSB, so float32 arithmetic is exact (in any summation order, with or without
FMA) while every partial sum is below 2**24 LSBs. ``load_qdq`` checks the sufficient bound
``max|x| * max_n sum_k |W[k, n]| + max|b| < 2**24`` per layer (max|x| = largest code magnitude of the input type;
this is never looser than ``K * max|x| * max|w| + max|b|``), and that every scale involved (input, weights,
accumulator, output) is within 2**+-100 so that no float32 value overflows or becomes denormal, and records
``graph.source['reference_exact']`` =
``'yes'`` / ``'no'``. Models beyond the bound make the float reference itself inexact: onnxruntime's output may
then differ from the exact integer arithmetic nn2aie implements (and the AIE computes) by a rounding of the float32
accumulator — compare such models against the exact integer semantics, not against onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from nn2aie.errors import BadFileError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.onnx_common import (
    ModelLike,
    attr,
    check_inference,
    constants,
    consumers_map,
    elem_type,
    elem_type_name,
    identifier,
    load_onnx,
    node_where,
    producers_map,
    real_inputs,
    topological_order,
    unique,
    value_shape,
    without_unused_opsets,
)
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType

SUPPORTED_OPS = ("QuantizeLinear", "DequantizeLinear", "MatMul", "Gemm", "Add", "Relu", "Constant")
_OPS_HINT = "nn2aie supports MatMul/Gemm/Add/Relu with QuantizeLinear/DequantizeLinear in this version"
_POW2_HINT = "re-export with power-of-two scales (e.g. quantize with scale = 2**-round(log2(s)))"
_ZP_HINT = "re-export with symmetric quantization (zero point 0)"
_EXACT_LIMIT = 1 << 24
_FRAC_RANGE = 100  # |fractional bits| beyond which float32 values may overflow (2**128) or lose bits (denormals)
_SCALE_TYPES = ("float32", "float16", "bfloat16")  # the ONNX type constraint of QuantizeLinear's scale
MAX_FIXED_BATCH = 1 << 20  # a fixed batch dimension the reference run pads to (larger: export a dynamic batch)

T = onnx.TensorProto
# integer element types nn2aie accepts: onnx type -> (width, signed)
_ACT_TYPES = {T.INT8: (8, True), T.UINT8: (8, False), T.INT16: (16, True)}
_WEIGHT_TYPES = {T.INT8: (8, True), T.UINT8: (8, False), T.INT16: (16, True)}
_BIAS_TYPES = {T.INT8: (8, True), T.UINT8: (8, False), T.INT16: (16, True), T.INT32: (32, True)}
_NP_TO_ONNX = {np.dtype(np.int8): T.INT8, np.dtype(np.uint8): T.UINT8, np.dtype(np.int16): T.INT16,
               np.dtype(np.uint16): T.UINT16, np.dtype(np.int32): T.INT32, np.dtype(np.uint32): T.UINT32,
               np.dtype(np.int64): T.INT64}


@dataclass(frozen=True)
class _QType:
    """A per-tensor power-of-two quantisation: codes of ``onnx_type`` times 2**-frac."""

    onnx_type: int
    frac: int
    width: int
    signed: bool

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def fixed(self) -> FixedType:
        return FixedType(width=self.width, frac=self.frac, signed=self.signed, rounding="RND_CONV", overflow="SAT")

    def describe(self) -> str:
        return f"{elem_type_name(self.onnx_type)} x {_p2(self.frac)}"


@dataclass
class _QConst:
    codes: np.ndarray  # int64
    qtype: _QType
    origin: str


def _p2(frac: int) -> str:
    """A power-of-two scale 2**-frac as text."""
    return f"2**{-frac}"


def pow2_frac(scale: float) -> int | None:
    """``f`` with ``scale == 2**-f`` exactly, else None (also for zero, negative, NaN, inf)."""
    if not np.isfinite(scale) or scale <= 0:
        return None
    mant, exp = np.frexp(scale)
    if mant != 0.5:
        return None
    return 1 - int(exp)


class _Parser:
    def __init__(self, model: onnx.ModelProto, file: str):
        self.model = model
        self.file = file
        self.graph = model.graph
        self.nodes = topological_order(self.graph)
        self.index = {id(n): i for i, n in enumerate(self.graph.node)}
        self.consts = constants(self.graph)
        self.producer = producers_map(self.nodes)
        self.consumers = consumers_map(self.nodes)
        self.visited: set[int] = set()
        self.graph_outputs = {o.name for o in self.graph.output}
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.taken: set[str] = set()
        self.exact = True

    # -- helpers ------------------------------------------------------------------------------------------
    def where(self, node: onnx.NodeProto) -> str:
        return node_where(node, self.index.get(id(node)))

    def visit(self, node: onnx.NodeProto) -> None:
        self.visited.add(id(node))

    def only_consumer(self, tensor: str, context: str) -> onnx.NodeProto | None:
        """The single consumer of ``tensor`` (None if it has none); refuses fan-out."""
        users = self.consumers.get(tensor, [])
        if len(users) > 1:
            names = ", ".join(self.where(u) for u in users)
            raise UnsupportedOpError(f"tensor {tensor}", f"{context} feeds several nodes ({names})",
                                     "nn2aie supports plain layer chains (no branches or skip connections) "
                                     "in this version")
        if users and tensor in self.graph_outputs:
            raise UnsupportedOpError(f"tensor {tensor}", "is a graph output and also feeds further nodes",
                                     "make the model output the last layer only")
        return users[0] if users else None

    def qparams(self, node: onnx.NodeProto, int_type: int | None, allowed: dict[int, tuple[int, bool]],
                role: str) -> _QType:
        """Per-tensor power-of-two parameters of a QuantizeLinear / DequantizeLinear node."""
        where = self.where(node)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(where, f"is from domain {node.domain!r}",
                                     "use the standard ONNX QuantizeLinear/DequantizeLinear (domain '')")
        if len(node.input) < 2 or node.input[1] not in self.consts:
            raise UnsupportedQuantizationError(where, "the scale is not a constant (dynamic quantization)",
                                               "export with static quantization (scales as initializers)")
        if attr(node, "block_size", 0):
            raise UnsupportedQuantizationError(where, "blocked quantization (block_size) is not supported",
                                               "re-export with per-tensor scales")
        scale = np.asarray(self.consts[node.input[1]])
        if scale.dtype.name not in _SCALE_TYPES:
            raise UnsupportedQuantizationError(where, f"scale type {scale.dtype.name} is not a QuantizeLinear/"
                                               "DequantizeLinear scale type", "store the scale as float32")
        zp = None
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in self.consts:
                raise UnsupportedQuantizationError(where, "the zero point is not a constant",
                                                   "export with static quantization")
            zp = np.asarray(self.consts[node.input[2]])
        for value, what in ((scale, "scale"), (zp, "zero point")):
            if value is not None and value.ndim > 1:
                raise BadFileError(where, f"the {what} has shape {list(value.shape)}: QuantizeLinear/"
                                   f"DequantizeLinear take a scalar or 1-D {what}", "re-export the model")
        if scale.size != 1 or (zp is not None and zp.size != 1):
            raise UnsupportedQuantizationError(
                where, f"per-axis quantization (scale shape {list(scale.shape)}) is not supported yet",
                "re-export with per-tensor scales (one power-of-two scale per tensor)")
        s = float(scale.reshape(-1)[0])
        frac = pow2_frac(s)
        if frac is None:
            if not np.isfinite(s) or s <= 0:
                raise UnsupportedQuantizationError(where, f"scale {s!r} is not a positive finite number",
                                                   "re-export with positive power-of-two scales")
            raise UnsupportedQuantizationError(where, f"scale {s:.6g} is not a power of two", _POW2_HINT)
        if zp is not None:
            if zp.dtype not in _NP_TO_ONNX:
                raise UnsupportedQuantizationError(where, f"zero point type {zp.dtype} is not supported",
                                                   "use int8, uint8 or int16 activations and weights")
            zp_type = _NP_TO_ONNX[zp.dtype]
            if int(zp.reshape(-1)[0]) != 0:
                raise UnsupportedQuantizationError(where, f"zero point {int(zp.reshape(-1)[0])} is not 0",
                                                   _ZP_HINT)
        else:
            zp_type = None
        if node.op_type == "QuantizeLinear":
            out_dtype = int(attr(node, "output_dtype", 0) or 0)
            qt = zp_type if zp_type is not None else (out_dtype or T.UINT8)
        else:
            qt = int_type if int_type is not None else zp_type
            if zp_type is not None and int_type is not None and zp_type != int_type:
                raise BadFileError(where, f"zero point type {elem_type_name(zp_type)} differs from the input "
                                   f"type {elem_type_name(int_type)}", "re-export the model")
        if qt not in allowed:
            names = "/".join(elem_type_name(t) for t in allowed)
            raise UnsupportedQuantizationError(where, f"{role} type {elem_type_name(qt or 0)} is not supported",
                                               f"quantize {role}s to {names}")
        width, signed = allowed[qt]
        return _QType(qt, frac, width, signed)

    def expect_dequant(self, node: onnx.NodeProto | None, qtype: _QType, after: str) -> onnx.NodeProto:
        if node is None or node.op_type != "DequantizeLinear":
            got = self.where(node) if node is not None else "nothing"
            raise UnsupportedQuantizationError(
                f"tensor {after}", f"an integer tensor is followed by {got} instead of a DequantizeLinear",
                "use the QDQ form: every QuantizeLinear is followed by a DequantizeLinear")
        self.visit(node)
        dq = self.qparams(node, qtype.onnx_type, _ACT_TYPES, "activation")
        if dq.frac != qtype.frac:
            raise UnsupportedQuantizationError(
                self.where(node), f"scale {_p2(dq.frac)} differs from the QuantizeLinear scale {_p2(qtype.frac)}",
                "use the same scale on both nodes of a QuantizeLinear/DequantizeLinear pair")
        return node

    # -- constants ----------------------------------------------------------------------------------------
    def float_const(self, name: str) -> np.ndarray | None:
        if name in self.consts:
            value = np.asarray(self.consts[name])
            return value if np.issubdtype(value.dtype, np.floating) else None
        return None

    def quant_const(self, name: str, allowed: dict[int, tuple[int, bool]], role: str,
                    user: onnx.NodeProto) -> _QConst | np.ndarray:
        """Resolve a constant operand: DQ(int initializer), DQ(Q(float initializer)) or a plain float array."""
        plain = self.float_const(name)
        if plain is not None:
            return plain
        node = self.producer.get(name)
        hint = f"store the {role} as an initializer behind DequantizeLinear"
        if node is None:
            if name in self.consts:
                raise UnsupportedQuantizationError(f"tensor {name}", f"integer {role} is used without "
                                                   "DequantizeLinear", hint)
            raise UnsupportedOpError(self.where(user), f"{role} {name} is a graph input, not a constant", hint)
        if node.op_type != "DequantizeLinear":
            raise UnsupportedOpError(self.where(user), f"{role} {name} is computed at run time by "
                                     f"{self.where(node)}, not a constant", hint)
        self.visit(node)
        src = node.input[0]
        if src in self.consts:
            raw = np.asarray(self.consts[src])
            if raw.dtype not in _NP_TO_ONNX:
                raise UnsupportedQuantizationError(self.where(node), f"{role} type {raw.dtype} is not supported",
                                                   f"quantize {role}s to int8 (weights) / int32 (bias)")
            qt = self.qparams(node, _NP_TO_ONNX[raw.dtype], allowed, role)
            return _QConst(raw.astype(np.int64), qt, src)
        qnode = self.producer.get(src)
        if qnode is not None and qnode.op_type == "QuantizeLinear" and self.float_const(qnode.input[0]) is not None:
            self.visit(qnode)
            qt = self.qparams(qnode, None, allowed, role)
            dq = self.qparams(node, qt.onnx_type, allowed, role)
            if dq.frac != qt.frac:
                raise UnsupportedQuantizationError(
                    self.where(node), f"scale {_p2(dq.frac)} differs from the QuantizeLinear scale {_p2(qt.frac)}",
                    "use the same scale on both nodes of a QuantizeLinear/DequantizeLinear pair")
            values = self.float_const(qnode.input[0]).astype(np.float64)
            if not np.all(np.isfinite(values)):
                raise UnsupportedQuantizationError(f"tensor {qnode.input[0]}", f"{role} contains NaN or inf",
                                                   "fix the exported weights")
            # QuantizeLinear: saturate(round_half_even(x / 2**-f)); x * 2**f is exact in float64.
            codes = np.clip(np.rint(values * 2.0 ** qt.frac), qt.lo, qt.hi).astype(np.int64)
            return _QConst(codes, qt, qnode.input[0])
        src_where = f"graph input {src}" if qnode is None else self.where(qnode)
        raise UnsupportedOpError(self.where(user), f"{role} {name} is not a constant: {self.where(node)} "
                                 f"dequantizes {src_where}", hint)

    def bias_codes(self, value: _QConst | np.ndarray, acc_frac: int, n: int, user: onnx.NodeProto,
                   name: str) -> np.ndarray:
        """Bias as int32 codes at the accumulator's LSB 2**-acc_frac (exact, or refuse)."""
        hint = ("quantize the bias to int32 with scale = input scale x weight scale "
                "(DequantizeLinear of an int32 initializer)")
        int32_msg = f"bias does not fit int32 at the accumulator LSB {_p2(acc_frac)}"
        if isinstance(value, _QConst):
            arr, shift = value.codes, acc_frac - value.qtype.frac
            if shift > 31 and np.any(arr):
                raise UnsupportedQuantizationError(f"tensor {name}", int32_msg, hint)
            if shift >= 0:
                codes = arr << np.int64(shift)
            else:
                # a step of 2**63 or more: only the code 0 is a multiple of it (and int64 cannot hold the step)
                off_grid = np.any(arr) if -shift > 62 else np.any(arr % (1 << -shift))
                if off_grid:
                    raise UnsupportedQuantizationError(
                        f"tensor {value.origin}", f"bias scale {_p2(value.qtype.frac)} is finer than the "
                        f"accumulator LSB {_p2(acc_frac)} (input scale x weight scale)", hint)
                codes = arr >> np.int64(min(-shift, 63))
        else:
            scaled = value.astype(np.float64) * 2.0 ** acc_frac  # exact power-of-two scaling
            if not np.all(np.isfinite(scaled)) or np.any(scaled != np.rint(scaled)):
                raise UnsupportedQuantizationError(
                    f"tensor {name}", f"float bias is not a multiple of the accumulator LSB {_p2(acc_frac)} "
                    "(input scale x weight scale)", hint)
            if np.any(np.abs(scaled) >= 2.0**31):
                raise UnsupportedQuantizationError(f"tensor {name}", int32_msg, hint)
            codes = np.rint(scaled).astype(np.int64)
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size == 1 and n != 1:
            codes = np.full(n, int(codes.reshape(-1)[0]), dtype=np.int64)
        if codes.ndim > 1 and all(d == 1 for d in codes.shape[:-1]):
            codes = codes.reshape(-1)
        if codes.shape != (n,):
            raise UnsupportedOpError(self.where(user), f"bias {name} has shape {list(codes.shape)}, expected [{n}]",
                                     "use a per-output-channel bias of shape [N]")
        if codes.min(initial=0) < -(1 << 31) or codes.max(initial=0) > (1 << 31) - 1:
            raise UnsupportedQuantizationError(f"tensor {name}", int32_msg, hint)
        return codes

    # -- the chain ------------------------------------------------------------------------------------------
    def parse(self) -> Graph:
        for node in self.nodes:
            if node.op_type not in SUPPORTED_OPS or node.domain not in ("", "ai.onnx"):
                dom = f" from domain {node.domain!r}" if node.domain not in ("", "ai.onnx") else ""
                raise UnsupportedOpError(self.where(node), f"operator {node.op_type}{dom} is not supported",
                                         _OPS_HINT)
            if node.op_type == "Constant":
                self.visit(node)
        inputs = real_inputs(self.graph)
        self.check_dynamic_weights(inputs)
        if len(inputs) != 1 or len(self.graph.output) != 1:
            raise UnsupportedOpError(
                "model", f"has {_count(len(inputs), 'input')} ({', '.join(i.name for i in inputs)}) and "
                f"{_count(len(self.graph.output), 'output')} ({', '.join(o.name for o in self.graph.output)})",
                "nn2aie supports one input and one output; weights must be initializers, not graph inputs")
        x_vi = inputs[0]
        x_name = x_vi.name
        shape = value_shape(x_vi)
        if elem_type(x_vi) != T.FLOAT:
            raise UnsupportedQuantizationError(f"graph input {x_name}",
                                               f"has type {elem_type_name(elem_type(x_vi))}, expected float",
                                               "feed float32 inputs followed by QuantizeLinear")
        if shape is None or len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
            raise UnsupportedOpError(f"graph input {x_name}", f"has shape {shape}, expected [batch, K] with a "
                                     "static K", "export the MLP with a 2-D input [batch, features]")
        k_in = shape[1]
        batch = shape[0]
        if isinstance(batch, int) and batch < 1:
            raise BadFileError(f"graph input {x_name}", f"has a fixed batch dimension {batch} (zero-size input)",
                               "export with a dynamic (or positive) batch dimension")
        if isinstance(batch, int) and batch > MAX_FIXED_BATCH:
            raise UnsupportedOpError(f"graph input {x_name}", f"has a fixed batch dimension {batch}: the reference "
                                     f"check pads the inputs to it (at most {MAX_FIXED_BATCH} supported)",
                                     "export with a dynamic batch dimension")

        q0 = self.only_consumer(x_name, "the graph input")
        if q0 is None or q0.op_type != "QuantizeLinear":
            got = self.where(q0) if q0 is not None else "nothing"
            raise UnsupportedQuantizationError(f"graph input {x_name}", f"is consumed by {got}, not a "
                                               "QuantizeLinear", "quantize the input first (QDQ form)")
        self.visit(q0)
        x_type = self.qparams(q0, None, _ACT_TYPES, "activation")
        lname = unique(identifier(x_name, "input"), self.taken)
        self.tensors[lname] = Tensor(lname, (k_in,), x_type.fixed(), origin=x_name)
        graph_input = lname

        cur_int, cur_type, cur_logical = q0.output[0], x_type, lname
        out_onnx = None
        layer = 0
        while True:
            if cur_int in self.graph_outputs and not self.consumers.get(cur_int):
                out_onnx = cur_int
                break
            dq = self.expect_dequant(self.only_consumer(cur_int, "a quantized tensor"), cur_type, cur_int)
            f = dq.output[0]
            nxt = self.only_consumer(f, "a dequantized tensor")
            if nxt is not None and nxt.op_type == "Relu":
                f, nxt = self.fold_relu_after_dq(nxt, cur_logical, cur_type)
                if nxt is not None and nxt.op_type == "QuantizeLinear":
                    cur_int = self.same_requant(nxt, cur_type)
                    continue
            if nxt is None:
                if f in self.graph_outputs:
                    out_onnx = f
                    break
                raise BadFileError(f"tensor {f}", "is neither consumed nor a graph output", "re-export the model")
            if nxt.op_type not in ("MatMul", "Gemm") or nxt.input[0] != f:
                raise UnsupportedOpError(self.where(nxt), "expected a MatMul/Gemm taking the dequantized "
                                         f"activation {f} as its first input", _OPS_HINT)
            cur_int, cur_type, cur_logical = self.layer(nxt, cur_logical, cur_type, layer)
            layer += 1

        if not self.ops:
            raise UnsupportedOpError("model", "contains no MatMul/Gemm layer", _OPS_HINT)
        rest = [n for n in self.nodes if id(n) not in self.visited]
        if rest:
            raise UnsupportedOpError(self.where(rest[0]), "is not part of the supported input -> layer chain -> "
                                     "output pattern", _OPS_HINT)
        self.tensors[cur_logical].origin = out_onnx
        name = self.graph.name or "onnx_qdq"
        source = {"framework": "onnx-qdq", "file": self.file, "reference_exact": "yes" if self.exact else "no"}
        graph = Graph(identifier(name, "onnx_qdq"), self.tensors, self.ops, [graph_input], [cur_logical], source)
        check_inference(self.model)
        graph.verify()
        return graph

    def check_dynamic_weights(self, inputs: list[onnx.ValueInfoProto]) -> None:
        """A graph input used (directly or through DequantizeLinear) as MatMul/Gemm weights or bias."""
        for vi in inputs:
            for user in self.consumers.get(vi.name, []):
                chain = [user]
                if user.op_type == "DequantizeLinear":
                    chain = self.consumers.get(user.output[0], [])
                    operand = user.output[0]
                else:
                    operand = vi.name
                for node in chain:
                    if node.op_type in ("MatMul", "Gemm") and operand in list(node.input)[1:]:
                        raise UnsupportedOpError(
                            self.where(node), f"its weights/bias come from the graph input {vi.name} "
                            "(dynamic weights)", "store weights and biases as initializers")

    def fold_relu_after_dq(self, relu: onnx.NodeProto, logical: str, qtype: _QType):
        """Q -> DQ -> Relu: relu of an exactly representable value; fold into the producing dense op."""
        self.visit(relu)
        op = next((o for o in self.ops if o.outputs[0] == logical), None)
        if op is None:
            raise UnsupportedOpError(self.where(relu), "a Relu on the graph input is not a dense layer",
                                     "remove the Relu before the first MatMul/Gemm")
        op.attrs["activation"] = "relu"
        out = relu.output[0]
        return out, self.only_consumer(out, "a Relu output")

    def same_requant(self, q: onnx.NodeProto, qtype: _QType) -> str:
        """Q -> DQ -> Relu -> Q: the second Q must repeat the parameters (then it is exact: no new rounding)."""
        self.visit(q)
        q2 = self.qparams(q, None, _ACT_TYPES, "activation")
        if q2 != qtype:
            raise UnsupportedQuantizationError(
                self.where(q), f"requantizes {qtype.describe()} to {q2.describe()} between layers: a second "
                "rounding that is not part of a dense layer",
                "quantize once per layer (Relu before the QuantizeLinear, or the same parameters after it)")
        return q.output[0]

    def layer(self, node: onnx.NodeProto, x_logical: str, x_type: _QType, idx: int) -> tuple[str, _QType, str]:
        self.visit(node)
        where = self.where(node)
        k = self.tensors[x_logical].shape[-1]
        bias_src = None
        if node.op_type == "Gemm":
            if attr(node, "transA", 0):
                raise UnsupportedOpError(where, "transA=1 is not supported", "export Gemm with transA=0")
            alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
            if alpha != 1.0:
                raise UnsupportedOpError(where, f"alpha={alpha:g} is not supported (only alpha=1)",
                                         "fold alpha into the weights and re-export")
            if len(node.input) > 2 and node.input[2] and beta != 1.0:
                raise UnsupportedOpError(where, f"beta={beta:g} is not supported (only beta=1)",
                                         "fold beta into the bias and re-export")
            trans_b = bool(attr(node, "transB", 0))
            if len(node.input) > 2 and node.input[2]:
                bias_src = (node.input[2], node)
        else:
            trans_b = False
        w = self.quant_const(node.input[1], _WEIGHT_TYPES, "weight", node)
        if not isinstance(w, _QConst):
            raise UnsupportedQuantizationError(where, f"weights {node.input[1]} are float, not quantized",
                                               "quantize the weights (DequantizeLinear of an int8 initializer)")
        codes = w.codes.T if trans_b else w.codes
        if codes.ndim != 2:
            raise UnsupportedOpError(where, f"weights have rank {codes.ndim}, expected a 2-D matrix",
                                     "nn2aie supports dense (fully connected) layers")
        if codes.shape[0] != k:
            raise BadFileError(where, f"weights {list(codes.shape)} do not match the input width {k}",
                               "re-export the model")
        n = codes.shape[1]
        acc_frac = x_type.frac + w.qtype.frac
        out = node.output[0]
        nxt = self.only_consumer(out, f"the output of {where}")
        if node.op_type == "MatMul" and nxt is not None and nxt.op_type == "Add":
            other = [i for i in nxt.input if i != out]
            if len(other) != 1 or len(nxt.input) != 2:
                raise UnsupportedOpError(self.where(nxt), "adds the layer output to itself", _OPS_HINT)
            self.visit(nxt)
            bias_src = (other[0], nxt)
            out = nxt.output[0]
            nxt = self.only_consumer(out, f"the output of {self.where(nxt)}")
        bias = None
        if bias_src is not None:
            name, user = bias_src
            value = self.quant_const(name, _BIAS_TYPES, "bias", user)
            bias = self.bias_codes(value, acc_frac, n, user, name)
        activation = "linear"
        if nxt is not None and nxt.op_type == "Relu":
            self.visit(nxt)
            activation = "relu"
            out = nxt.output[0]
            nxt = self.only_consumer(out, f"the output of {self.where(nxt)}")
        if nxt is None or nxt.op_type != "QuantizeLinear":
            got = self.where(nxt) if nxt is not None else "the graph output"
            raise UnsupportedQuantizationError(
                f"tensor {out}", f"the result of {where} goes to {got} without QuantizeLinear",
                "quantize every layer output (QuantizeLinear -> DequantizeLinear after each MatMul/Gemm)")
        self.visit(nxt)
        y_type = self.qparams(nxt, None, _ACT_TYPES, "activation")

        op_name = unique(identifier(node.name, f"dense{idx}") if node.name else f"dense{idx}", self.taken)
        w_name = unique(f"{op_name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (k, n), w.qtype.fixed(), np.ascontiguousarray(codes, np.int64),
                                      origin=w.origin)
        inputs = [x_logical, w_name]
        if bias is not None:
            b_name = unique(f"{op_name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), FixedType(32, acc_frac, True, "RND_CONV", "SAT"),
                                          bias, origin=bias_src[0])
            inputs.append(b_name)
        y_name = unique(f"{op_name}_out", self.taken)
        self.tensors[y_name] = Tensor(y_name, (n,), y_type.fixed(), origin=nxt.output[0])
        self.ops.append(Op(op_name, "dense", inputs, [y_name], {"activation": activation}))

        x_max = max(-x_type.lo, x_type.hi)
        col = int(np.abs(codes).sum(axis=0).max(initial=0))
        b_max = int(np.abs(bias).max(initial=0)) if bias is not None else 0
        fracs = (x_type.frac, w.qtype.frac, acc_frac, y_type.frac)
        if x_max * col + b_max >= _EXACT_LIMIT or not all(-_FRAC_RANGE <= f <= _FRAC_RANGE for f in fracs):
            self.exact = False
        return nxt.output[0], y_type, y_name


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def load_qdq(model: ModelLike) -> Graph:
    """Parse an ONNX QDQ MLP (path or ModelProto) into a verified logical graph; typed errors otherwise."""
    proto, file = load_onnx(model)
    return _Parser(proto, file).parse()


def _session(proto: onnx.ModelProto, optimize: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    data = without_unused_opsets(proto).SerializeToString()
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def run_reference(model: ModelLike, x: np.ndarray, optimize: bool = False) -> np.ndarray:
    """Run the ORIGINAL model with onnxruntime (CPU, graph optimisations off unless ``optimize``) on float32
    ``x`` of shape [B, K]; returns float32 [B, N].

    A fixed batch dimension b0 is handled by running chunks of b0 rows (zero-padded). A model that ends in an
    integer QuantizeLinear output is returned dequantized (code * scale, exact for power-of-two scales).
    """
    proto, _ = load_onnx(model)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError("x must have shape [B, K]")
    inputs = real_inputs(proto.graph)
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise UnsupportedOpError("model", "run_reference needs exactly one input and one output",
                                 "export a single-input single-output model")
    in_name = inputs[0].name
    shape = value_shape(inputs[0]) or (None, x.shape[1])
    b0 = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    sess = _session(proto, optimize)
    if b0 is None:
        out = sess.run(None, {in_name: x})[0]
    else:
        chunks = []
        for start in range(0, x.shape[0], b0):
            part = x[start:start + b0]
            pad = b0 - part.shape[0]
            if pad:
                part = np.concatenate([part, np.zeros((pad, x.shape[1]), np.float32)])
            chunks.append(sess.run(None, {in_name: part})[0][: b0 - pad])
        out = np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)
    out = np.asarray(out)
    if np.issubdtype(out.dtype, np.integer):
        out = _dequantize_output(proto, out)
    return out.astype(np.float32)


def _dequantize_output(proto: onnx.ModelProto, codes: np.ndarray) -> np.ndarray:
    name = proto.graph.output[0].name
    node = producers_map(proto.graph.node).get(name)
    consts = constants(proto.graph)
    if node is None or node.op_type != "QuantizeLinear" or node.input[1] not in consts:
        raise UnsupportedQuantizationError(f"graph output {name}", "integer output not produced by a "
                                           "QuantizeLinear with a constant scale", "dequantize the output")
    scale = float(np.asarray(consts[node.input[1]]).reshape(-1)[0])
    zp = 0
    if len(node.input) > 2 and node.input[2] in consts:
        zp = int(np.asarray(consts[node.input[2]]).reshape(-1)[0])
    return (codes.astype(np.float64) - zp) * scale
