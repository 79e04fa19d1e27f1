"""The graph walk of the QONNX frontend (``qonnx_frontend.load_qonnx``): QONNX models as DAGs.

``QonnxParser`` is the ONNX QDQ parser (``onnx_qdq.QdqParser``: its eltwise, view, concat and reduce handlers, its
naming, pruning and exactness bounds) reading QONNX's form of a quantized value: the output of a ``Quant`` node
(or a view / ReLU of one) is the float ``code * 2**-f``, exactly, so an op that reads such values and whose float
result goes through one Quant is the same logical op as in the QDQ form, with the Quant's type as its output type.
What differs from QDQ:

- no integer-code tensors (every tensor is a float);
- a Quant's type is any bit width up to 16 (weights 16, biases and other constants 32), signed or not, narrow or
  not, with any QONNX rounding mode (docs/numerics.md maps them);
- ``Quant`` of a quantized value is nothing when every value already is a code of its type (e.g. Brevitas'
  QuantIdentity repeating the type, or an unsigned Quant after a ReLU'd signed dense); it narrows the output type of
  the op that computed the value when that op's only reader chain ends in it and the scale is the same (a
  ``QuantReLU`` after a ``QuantLinear``: one clamp after one rounding); else it is an eltwise ``identity`` (one
  requantisation: qonnx divides by the scale exactly and rounds once);
- Identity and eval-mode Dropout nodes are skipped before the walk, constant sub-graphs are folded.
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass

import numpy as np
import onnx

from nn2aie.errors import BadFileError, IllegalConfigError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.float_functions import REGION_ONLY_OPS, Region, region_model
from nn2aie.frontends.onnx_common import (
    attr,
    check_inference,
    constants,
    conv_attrs,
    conv_geometry,
    elem_type,
    elem_type_name,
    identifier,
    node_where,
    real_inputs,
    unique,
    value_shape,
)
from nn2aie.frontends.onnx_qdq import BINARY_OPS, REDUCE_OPS, VIEW_OPS, LinearLayer, PoolTail, QConst, QdqParser, QVal
from nn2aie.frontends.qonnx_frontend import (
    BIPOLAR,
    FIXED_POINT_HINT,
    MAX_FIXED_BATCH,
    PASS_THROUGH_OPS,
    QONNX_DOMAINS,
    QUANT_OP_TYPES,
    ROUNDING_TO_AP,
    STANDARD_DOMAINS,
    SUPPORTED_TEXT,
    QonnxParams,
    QuantSpec,
    _is_quant,
    _is_quantizer,
    _Param,
    check_pass_through,
    check_quant_arity,
)
from nn2aie.frontends.source_eval import chain_function, step_thresholds
from nn2aie.ir import host
from nn2aie.ir.host import HostEpilogue, HostPrologue, HostStep
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType

_HANDLED = ("Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", *BINARY_OPS, "Relu", "Clip", "LeakyRelu", *VIEW_OPS,
            *REDUCE_OPS, *PASS_THROUGH_OPS, "BatchNormalization", "Div", "Softmax", "LayerNormalization",
            *REGION_ONLY_OPS)
_QONNX_ONLY = ("Trunc", "MultiThreshold", "FloatQuant", "QuantAvgPool2d")
_HOST_STEP_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}  # x op c; c - x is "rsub"
_PROLOGUE_VIEWS = ("Reshape", "Flatten")
PROLOGUE_HINT = ("quantize the input first (a Quant / BipolarQuant node, e.g. QuantIdentity as the first module); "
                 "float Mul / Div / Add / Sub by constants and Reshape / Flatten before it run on the host")
INPUT_HINT = ("quantize the input, e.g. QuantIdentity(act_quant=Int8ActPerTensorFixedPoint) as the first module, or "
              "let the host cast it into a type you choose: nn2aie compile --input-type NAME=ap_fixed<8,3,AP_RND_CONV,"
              "AP_SAT> (API: load_model(path, input_types={NAME: ...}); the design then equals the model on inputs "
              "on that grid)")
ACT_HINT = ("add an activation quantizer after it (QuantReLU / QuantIdentity with a fixed-point act_quant, e.g. "
            "Uint8ActPerTensorFixedPoint)")
FAN_OUT_HINT = "quantize it once (one Quant node, e.g. a QuantIdentity) and let the Quant output fan out"
_CONSTANT_CHAIN = ("Transpose", *PASS_THROUGH_OPS)  # Quant(W) -> Transpose -> Identity -> Gemm is still W
_RETYPABLE = ("dense", "eltwise", "reduce")  # ops that requantise their exact result into their output type


@dataclass(frozen=True)
class _AType(FixedType):
    """The type of a QONNX activation Quant (saturating, any rounding mode), with the ``_QType`` interface the
    QDQ handlers use."""

    @classmethod
    def of(cls, spec: QuantSpec, rounding: str | None = None) -> _AType | _SType:
        if spec.scaled:
            return _SType.of(spec, rounding)
        return cls(spec.width, spec.frac, spec.signed, rounding or ROUNDING_TO_AP[spec.rounding_mode], "SAT",
                   spec.narrow)

    @property
    def lo(self) -> int:
        return self.min_code

    @property
    def hi(self) -> int:
        return self.max_code

    @property
    def max_abs(self) -> int:
        return max(-self.min_code, self.max_code)

    def fixed(self) -> FixedType:
        return FixedType(self.width, self.frac, self.signed, self.rounding, self.overflow, self.narrow)

    def with_range_of(self, other: _AType) -> _AType:
        """``other``'s width, signedness and narrowness at this type's fraction and rounding."""
        return _AType(other.width, self.frac, other.signed, self.rounding, "SAT", other.narrow)


@dataclass(frozen=True)
class _SType:
    """The type of a Quant with a float scale or a zero point (per tensor), with the ``_AType`` interface. Only
    the dense handler and views know such values; every handler that needs a power-of-two scale asks for
    ``frac`` and gets a typed refusal naming the Quant node."""

    width: int
    signed: bool
    narrow: bool
    rounding: str
    scale: float
    zero_point: int
    where: str

    @classmethod
    def of(cls, spec: QuantSpec, rounding: str | None = None) -> _SType:
        return cls(spec.width, spec.signed, spec.narrow, rounding or ROUNDING_TO_AP[spec.rounding_mode],
                   spec.scale[0], spec.zero_point, spec.where)

    def fixed(self) -> ScaledType:  # the IR type (named like _AType.fixed for the shared handlers)
        return ScaledType(self.width, self.signed, (self.scale,), (self.zero_point,), self.rounding, "SAT",
                          self.narrow)

    @property
    def frac(self) -> int:
        zp = f" and zero point {self.zero_point}" if self.zero_point else ""
        raise UnsupportedQuantizationError(
            self.where, f"its scale {self.scale:.6g}{zp} is read by an operation that needs a power-of-two scale "
            "and zero point 0: float scales are supported on the inputs, weights, bias and outputs of Gemm / "
            "MatMul layers (with Relu) and through views so far", FIXED_POINT_HINT)

    @property
    def lo(self) -> int:
        return self.fixed().min_code

    @property
    def hi(self) -> int:
        return self.fixed().max_code

    @property
    def max_abs(self) -> int:
        return max(-self.lo, self.hi)

    def with_range_of(self, other) -> _SType:
        raise AssertionError(f"{self.frac}")  # the frac property raises the typed refusal first

    def describe(self) -> str:
        return self.fixed().describe()


def is_scaled(t) -> bool:
    return isinstance(t, _SType)


def _quant_codes(y_type):
    """The codes behind a Quant's float32 outputs ``(q - zp) * scale`` (exactly ``q * 2**-frac`` for fixed point)."""
    if is_scaled(y_type):
        scale, zp = float(y_type.fixed().scale[0]), y_type.fixed().zero_point[0]
        return lambda v: np.rint(np.asarray(v, dtype=np.float64) / scale + zp).astype(np.int64)
    frac = y_type.frac
    return lambda v: np.rint(np.ldexp(np.asarray(v, dtype=np.float64), frac)).astype(np.int64)


def _without_pass_through(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto``, or a copy in which Identity / eval-mode Dropout nodes are bypassed (their readers read the input
    instead); one whose output is a graph output stays (the walk reads it as a view)."""
    consts = constants(proto.graph)
    outputs = {o.name for o in proto.graph.output}
    used = {i for n in proto.graph.node for i in n.input}
    skip: dict[str, str] = {}
    for node in proto.graph.node:
        if node.op_type not in PASS_THROUGH_OPS or node.domain not in STANDARD_DOMAINS:
            continue
        check_pass_through(node, consts)
        if any(o in used or o in outputs for o in node.output[1:] if o):
            raise UnsupportedOpError(f"node {node.name or node.output[0]} ({node.op_type})", "its mask output is "
                                     "used", "export the model in eval mode (Dropout is then an identity)")
        if node.input and node.input[0] and node.output and node.output[0] not in outputs:
            skip[node.output[0]] = node.input[0]
    if not skip:
        return proto

    def source(name: str) -> str:
        while name in skip:
            name = skip[name]
        return name

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = [n for n in out.graph.node if not (n.output and n.output[0] in skip and n.op_type in PASS_THROUGH_OPS)]
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = source(name)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


class QonnxParser(QonnxParams, QdqParser):
    """QONNX model -> logical graph (a DAG), see the module docstring."""

    QUANTIZERS = tuple(QUANT_OP_TYPES)

    def __init__(self, proto: onnx.ModelProto, file: str):
        self.original = proto
        super().__init__(_without_pass_through(proto), file)
        self.fold_constants()
        self.act_types: dict[int, _AType] = {}
        self.prologues: dict[str, HostPrologue] = {}  # logical input tensor -> the host's float steps
        self.user_input_types: dict[str, FixedType] = {}  # float graph inputs the user gave a type (load_qonnx)
        self.epilogues: dict[str, HostEpilogue] = {}  # logical output tensor -> the host's float steps

    # -- quantized values -------------------------------------------------------------------------------------
    def qparams(self, node: onnx.NodeProto, *_unused) -> _AType:
        """The type of an activation Quant (the QDQ handlers call this for the Quant after an op)."""
        key = id(node)
        if node.op_type == BIPOLAR:
            raise UnsupportedQuantizationError(
                self.where(node), f"BipolarQuant of {node.input[0]}: a bipolar quantizer is supported on the graph "
                "input, on weights and after a Gemm / MatMul layer (optionally through BatchNormalization and "
                "float Mul / Div / Add / Sub by constants)", "move the binarization to one of those places")
        if key not in self.act_types:
            self.act_types[key] = _AType.of(self.parse_quant(node, "activation"))
        return self.act_types[key]

    def bind(self, name: str, val: QVal) -> None:
        """Bind an ONNX tensor to a quantized value; a Quant's parameters must broadcast to its tensor's shape
        (now known) for qonnx to run it."""
        super().bind(name, QVal(val.tensor, val.qtype))
        node = self.producer.get(name)
        if node is not None and _is_quant(node):
            self.parse_quant(node, "input" if node.input[0] in self.input_names else "activation",
                             (1, *self.shape(val)))

    def value(self, name: str, user: onnx.NodeProto, codes_ok: bool = False) -> QVal:
        val = self.vals.get(name)
        if val is not None:
            return val
        where = self.where(user)
        if name in self.input_names:
            raise UnsupportedQuantizationError(where, f"reads the float graph input {name} directly: the network "
                                               "input is not quantized", INPUT_HINT)
        if self.is_constant(name):
            raise UnsupportedOpError(where, f"input {name} is a constant where nn2aie expects an activation",
                                     "fold computations on constants into the initializers (qonnx cleanup_model)")
        producer = self.producer.get(name)
        src = self.where(producer) if producer is not None else "a graph input"
        raise UnsupportedQuantizationError(where, f"its input {name} is a float tensor: there is no Quant node "
                                           f"between {src} and it", ACT_HINT)

    def is_constant(self, name: str) -> bool:
        """Known without running the graph: a (folded) constant, or Quant / Transpose of one."""
        while name not in self.consts:
            node = self.producer.get(name)
            if node is None or not node.input or not (_is_quantizer(node) or node.op_type in _CONSTANT_CHAIN):
                return False
            name = node.input[0]
        return True

    def quant_const(self, name: str, allowed, role: str, user: onnx.NodeProto) -> QConst | np.ndarray:
        """A constant operand: ``Quant(initializer)`` codes in the Quant's type, or a plain float32 array."""
        param = self.resolve_param(name, role)
        if param is None:
            raise UnsupportedOpError(self.where(user), f"{role} {name} is computed at run time, not a constant",
                                     f"make the {role} an initializer (optionally behind a Quant node)")
        if param.spec is None:
            return np.asarray(param.values)
        return QConst(np.asarray(param.values, dtype=np.int64), _AType.of(param.spec), param.origin)

    # -- float results ----------------------------------------------------------------------------------------
    def single_user(self, tensor: str, node: onnx.NodeProto) -> onnx.NodeProto | None:
        try:
            return super().single_user(tensor, node)
        except UnsupportedQuantizationError as err:  # a float result that fans out: QONNX's way out
            raise UnsupportedQuantizationError(err.where, err.reason, FAN_OUT_HINT) from None

    def no_quantize(self, node: onnx.NodeProto, out: str, got: onnx.NodeProto | None) -> UnsupportedQuantizationError:
        if got is None and out not in self.graph_outputs:
            return UnsupportedQuantizationError(self.where(node), f"its result {out} is neither quantized nor used",
                                                "remove the unused node, or quantize its result (a Quant node)")
        if got is None:
            return UnsupportedQuantizationError(
                self.where(node), f"its result {out} is a graph output without a Quant node: there is no Quant node "
                "after the last layer", "add an output quantizer, e.g. QuantIdentity(act_quant="
                "Int8ActPerTensorFixedPoint) after the last layer")
        return UnsupportedQuantizationError(self.where(got), f"its input {out} is a float tensor: there is no Quant "
                                            f"node between {self.where(node)} and it", ACT_HINT)

    def quant_of(self, tensor: str) -> onnx.NodeProto | None:
        """The Quant that is the only reader of the float ``tensor`` (not a graph output), else None."""
        users = [] if tensor in self.graph_outputs else self.users(tensor)
        if len(users) == 1 and _is_quant(users[0]) and users[0].input[0] == tensor:
            return users[0]
        return None

    def quant_tail(self, node: onnx.NodeProto, optional: bool = False):
        """``(Quant, Relu or None)`` after ``node``'s float result: ``-> Quant`` or ``-> Relu -> Quant``, each the
        only reader; ``optional``: ``(None, None)`` unless one Quant follows."""
        q = self.quant_of(node.output[0])
        if q is not None or optional:
            if q is not None:
                self.visit(q)
            return q, None
        relu = self.single_user(node.output[0], node)
        if relu is None or relu.op_type != "Relu":
            raise self.no_quantize(node, node.output[0], relu)
        q = self.quant_of(relu.output[0])
        if q is None:
            raise self.no_quantize(relu, relu.output[0], self.single_user(relu.output[0], relu))
        self.visit(relu)
        self.visit(q)
        return q, relu

    def avgpool_tail(self, node: onnx.NodeProto) -> PoolTail:
        """After an AveragePool: a Quant, or a ``Trunc`` (Brevitas ``TruncAvgPool2d`` / ``QuantAvgPool2d``: the
        window mean back on the sum's grid, then a power-of-two truncation to the output bit width), run by qonnx."""
        nxt = self.single_user(node.output[0], node)
        if nxt is not None and nxt.op_type == "Trunc" and nxt.input[0] == node.output[0]:
            self.visit(nxt)
            y_type = self.trunc_type(nxt)
            return PoolTail([nxt], y_type, _quant_codes(y_type), "qonnx", onnx.TensorProto.FLOAT, nxt.output[0])
        q, relu = self.quant_tail(node)
        if relu is not None:
            raise UnsupportedOpError(self.where(relu), "a Relu after an average pool of a quantized value",
                                     "apply the Relu before the pool")
        y_type = self.qparams(q)
        return PoolTail([q], y_type, _quant_codes(y_type), "qonnx", onnx.TensorProto.FLOAT, q.output[0])

    def trunc_type(self, node: onnx.NodeProto) -> _AType:
        """The output type of a QONNX ``Trunc`` (version 2: inputs x, scale, zero point, input bit width, output
        scale, output bit width): codes of the output bit width at the power-of-two output scale, saturated."""
        where = self.where(node)
        if len(node.input) != 6:
            raise UnsupportedOpError(where, f"a Trunc with {len(node.input)} inputs (the version-1 form)",
                                     "re-export with a current Brevitas (Trunc with an output scale)")
        consts = [self._const(i) for i in node.input[1:]]
        if any(c is None or np.asarray(c).size != 1 for c in consts):
            raise UnsupportedQuantizationError(where, "its scale, zero point and bit widths are not scalar constants",
                                               "use one scale and bit width per tensor")
        _, zeropt, _, out_scale, out_bits = (float(np.asarray(c).reshape(-1)[0]) for c in consts)
        frac = -math.log2(out_scale) if out_scale > 0 else math.nan
        if zeropt != 0 or not frac.is_integer() or not out_bits.is_integer() or out_bits < 1:
            raise UnsupportedQuantizationError(where, f"output scale {out_scale:g}, zero point {zeropt:g}, "
                                               f"{out_bits:g} bits: not a power-of-two truncation",
                                               "use power-of-two (fixed-point) scales around the average pool")
        signed, narrow = bool(attr(node, "signed", 1)), bool(attr(node, "narrow", 0))
        mode = attr(node, "rounding_mode", "FLOOR")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        if mode not in ROUNDING_TO_AP:
            raise UnsupportedQuantizationError(where, f"rounding mode {mode!r}", f"use one of {sorted(ROUNDING_TO_AP)}")
        return _AType(int(out_bits), int(frac), signed, ROUNDING_TO_AP[mode], "SAT", narrow)

    # -- Quant of a quantized value ---------------------------------------------------------------------------
    def producer_op(self, tensor: str) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)

    def nonnegative(self, val: QVal) -> bool:
        """The value went through a ReLU (a dense with ReLU activation or an eltwise relu): no negative codes."""
        op = self.producer_op(val.tensor)
        return op is not None and (op.attrs.get("activation") == "relu" or op.attrs.get("op") == "relu")

    def private(self, tensor: str) -> bool:
        """Only one chain of nodes reads the logical ``tensor``: every ONNX name bound to it has one reader and is
        no graph output, and no op reads it yet."""
        names = self.aliases.get(tensor, [])
        return (all(len(self.users(n)) == 1 and n not in self.graph_outputs for n in names)
                and not any(tensor in op.inputs for op in self.ops))

    def foldable_relu(self, relu: onnx.NodeProto, val: QVal) -> Op | None:
        """The dense op whose output only this Relu reads (then relu can be its activation), else None."""
        op = self.producer_op(val.tensor)
        return op if op is not None and op.kind == "dense" and self.private(val.tensor) else None

    def on_quant(self, q: onnx.NodeProto) -> None:
        val = self.value(q.input[0], q)
        new, old = self.qparams(q), val.qtype
        if (is_scaled(new) or is_scaled(old)) and new == old:
            self.bind(q.output[0], val)  # the same quantizer again: every value already is one of its codes
            return
        self.check_float32(0, new.frac)
        lo = 0 if self.nonnegative(val) else old.lo
        shift = new.frac - old.frac
        if shift >= 0 and new.lo <= lo << shift and old.hi << shift <= new.hi:
            self.bind(q.output[0], val)  # every value is a code of the new type: Quant changes nothing
            return
        op = self.producer_op(val.tensor)
        if (shift == 0 and op is not None and op.kind in _RETYPABLE and self.private(val.tensor)
                and new.hi <= old.hi and (new.lo >= old.lo or (lo == 0 and new.lo <= 0))):
            # one rounding, then two clamps: the op's rounding with the narrower (new) range
            narrowed = old.with_range_of(new)
            tensor = self.tensors[val.tensor]
            tensor.type, tensor.origin = narrowed.fixed(), q.output[0]
            self.bind(q.output[0], QVal(val.tensor, narrowed))
            return
        y = self.add_op(self.op_name(q, "identity"), "eltwise", [val.tensor], self.shape(val), new, q.output[0],
                        {"op": "identity"})
        self.bind(q.output[0], QVal(y, new))

    # -- dense ------------------------------------------------------------------------------------------------
    def on_dense(self, node: onnx.NodeProto) -> None:
        where = self.where(node)
        if node.op_type == "MatMul" and len(node.input) == 2 and not self.is_constant(node.input[0]) \
                and not self.is_constant(node.input[1]):
            self.on_matmul_of_activations(node)
            return
        if self.is_constant(node.input[0]):
            raise UnsupportedOpError(where, f"the activation is the second operand ({node.input[0]} is a constant)",
                                     "the activation must be the first operand (x @ W)")
        x = self.value(node.input[0], node)
        x_shape = self.shape(x)
        if node.op_type == "Gemm":
            self.check_gemm(node, x_shape)
        w = self.resolve_param(node.input[1], "weight")
        if w is None:
            raise UnsupportedOpError(where, f"weights {node.input[1]} are not a constant",
                                     "the second operand must be a (quantized) weight initializer")
        if w.spec is None:
            raise UnsupportedQuantizationError(
                where, f"weights {w.origin} are float (no Quant node on them)",
                "quantize the weights, e.g. QuantLinear(weight_quant=Int8WeightPerTensorFixedPoint); keep the weight "
                "Quant nodes (qonnx cleanup_model with preserve_qnt_ops=True, the default)")
        codes = w.values.T if node.op_type == "Gemm" and attr(node, "transB", 0) else w.values
        if codes.ndim != 2:
            raise UnsupportedOpError(where, f"weights of shape {list(codes.shape)} are not a matrix",
                                     "only dense layers (2-D weights) are supported")
        k, n = codes.shape
        if x_shape[-1] != k:
            raise BadFileError(where, f"weights have {k} input features but the incoming activation has "
                               f"{x_shape[-1]}", "re-export the model")
        if w.scales is not None and node.op_type == "Gemm" and attr(node, "transB", 0):
            w = _Param(w.values, w.spec, w.origin, w.scales.T)  # scales in the layout of ``codes``
        codes = self.rows_in_logical_order(x, codes, node)
        bias = (node.input[2], node) if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
        self.linear_layer(node, x, w, codes, bias, LinearLayer("dense", {}, x_shape[:-1] + (n,), (*x_shape[:-1], n)))

    def on_conv(self, node: onnx.NodeProto) -> None:
        """Conv (Brevitas QuantConv1d / QuantConv2d): a linear layer over its im2col weights (kernels/conv/
        logical.py), parsed as a dense layer from its sum on (bias, Relu, BatchNorm / float steps, quantizer)."""
        from nn2aie.ir.conv_semantics import weights_from_onnx

        where = self.where(node)
        x = self.value(node.input[0], node)
        cf = self.channels_first_input(node, x)
        w = self.resolve_param(node.input[1], "weight")
        if w is None or w.spec is None:
            raise UnsupportedQuantizationError(where, f"weights {node.input[1]} are not quantized constants",
                                               "quantize the weights (e.g. QuantConv2d with an int weight quantizer)")
        geo = conv_geometry(node, where, cf, tuple(w.values.shape))
        m = geo.filters
        codes = weights_from_onnx(w.values).reshape(-1, m)
        scales = None
        if w.scales is not None:
            full = np.broadcast_to(w.scales, w.values.shape)
            scales = weights_from_onnx(full).reshape(-1, m)
        w = _Param(codes, w.spec, w.origin, scales)
        bias = (node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        layer = LinearLayer("conv", conv_attrs(geo), (*geo.out_spatial, m), (m, *geo.out_spatial), len(geo.spatial))
        self.linear_layer(node, x, w, codes, bias, layer)

    def linear_layer(self, node: onnx.NodeProto, x: QVal, w: _Param, codes: np.ndarray, bias,
                     layer: LinearLayer) -> None:
        """A Gemm / MatMul / Conv sum ``x . codes`` (codes [K, N] in the logical input order) and what follows it:
        a bias Add, Relu, float steps, the quantizer (or the graph output); the op is ``layer.kind``."""
        where = self.where(node)
        x_shape = self.shape(x)
        n = codes.shape[1]
        last, nxt = node, self.single_user(node.output[0], node)
        if nxt is not None and nxt.op_type == "Add" and len(nxt.input) == 2:  # Add directly after: the bias
            other = [i for i in nxt.input if i != last.output[0]]
            if len(other) != 1:
                raise UnsupportedOpError(self.where(nxt), "adds the layer output to itself", SUPPORTED_TEXT)
            if not self.is_constant(other[0]):
                raise UnsupportedQuantizationError(
                    self.where(nxt), f"adds {other[0]} to the unquantized result of {where}",
                    "quantize the layer output (a Quant node, e.g. QuantIdentity) before the Add, or make the added "
                    "tensor a constant bias")
            if bias is not None:
                raise UnsupportedOpError(self.where(nxt), "a second bias on one layer is not supported",
                                         "use a single bias per Gemm/MatMul")
            self.visit(nxt)
            bias, last = (other[0], nxt), nxt
            nxt = self.single_user(last.output[0], last)
        activation = "linear"
        chain: list[onnx.NodeProto] = []  # float nodes between the sum and the quantizer
        sum_name = last.output[0]  # the float sum (bias included) they read
        while nxt is not None and self.epilogue_step(nxt, last.output[0], n, x_shape, layer):
            self.visit(nxt)
            chain.append(nxt)
            last = nxt
            nxt = self.single_user(last.output[0], last)
        if chain and all(c.op_type == "Relu" for c in chain):
            activation = "relu"  # relu of the exact sum (repeated ReLUs are one)
        elif chain or (nxt is not None and nxt.op_type == BIPOLAR):
            if nxt is None and last.output[0] in self.graph_outputs:
                self.host_tail_dense(node, x, w, codes, bias, chain, sum_name, last.output[0], layer)
                return
            if nxt is None or not (_is_quantizer(nxt) and nxt.input[0] == last.output[0]):
                raise self.no_quantize(node if nxt is None else last, last.output[0], nxt)
            self.visit(nxt)
            self.stepped_dense(node, x, w, codes, bias, chain, sum_name, nxt, layer)
            return
        if (nxt is None and last.output[0] in self.graph_outputs and activation == "linear"
                and not is_scaled(x.qtype) and not w.spec.scaled):
            self.host_tail_dense(node, x, w, codes, bias, [], last.output[0], last.output[0], layer)
            return
        if nxt is None or not _is_quant(nxt) or nxt.input[0] != last.output[0]:
            raise self.no_quantize(node if nxt is None else last, last.output[0], nxt)
        self.visit(nxt)
        y_type = self.qparams(nxt)
        if is_scaled(x.qtype) or w.spec.scaled or is_scaled(y_type):
            self.scaled_dense(node, x, w, codes, bias, activation, nxt, y_type, layer)
            return

        name = self.op_name(node, layer.kind)
        w_name = unique(f"{name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, codes.shape, w.spec.fixed_type(), np.ascontiguousarray(codes, np.int64),
                                      origin=w.origin)
        inputs = [x.tensor, w_name]
        acc_frac = x.qtype.frac + w.spec.frac
        b_max = 0
        if bias is not None:
            b_codes, b_type = self.bias_at(self.bias_param(bias[0], bias[1], n), acc_frac, bias[1])
            b_name = unique(f"{name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), b_type, b_codes.astype(np.int64), origin=bias[0])
            inputs.append(b_name)
            b_max = int(np.abs(b_codes).max(initial=0))
        y = self.add_op(name, layer.kind, inputs, layer.out_shape, y_type, nxt.output[0],
                        {"activation": activation, **layer.attrs})
        self.bind(nxt.output[0], QVal(y, y_type))
        # float32 Gemm/MatMul/Add: exact while every partial sum stays below 2**24 accumulator LSBs
        col = int(np.abs(codes).astype(np.int64).sum(axis=0).max(initial=0))
        self.check_float32(x.qtype.max_abs * col + b_max, x.qtype.frac, w.spec.frac, acc_frac, y_type.frac)

    def scaled_dense(self, node: onnx.NodeProto, x: QVal, w: _Param, codes: np.ndarray, bias, activation: str,
                     quant: onnx.NodeProto, y_type, layer: LinearLayer) -> None:
        """A dense layer with float scales or zero points (kernels/linear_scaled.py defines its exact map): the
        weights' per-output-channel scales, the bias as exact codes, no float32 exactness bound (the source
        sums in float32; docs/numerics.md has the measured effect near ties)."""
        k, n = codes.shape
        if w.spec.scaled:
            scales = np.broadcast_to(w.scales, codes.shape)  # in the layout of codes (on_dense / on_conv)
            if not np.all(scales == scales[:1]):
                raise UnsupportedQuantizationError(w.spec.where, "the weight scales vary along the input axis",
                                                   "use one weight scale per output channel (or per tensor)")
            per_channel = tuple(float(v) for v in scales[0])
            w_type = w.spec.ir_type(channel_scales=per_channel if len(set(per_channel)) > 1 else None)
        else:
            w_type = w.spec.fixed_type()
        name = self.op_name(node, layer.kind)
        w_name = unique(f"{name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (k, n), w_type, np.ascontiguousarray(codes, np.int64), origin=w.origin)
        inputs = [x.tensor, w_name]
        if bias is not None:
            b_codes, b_type = self.scaled_bias(self.bias_param(bias[0], bias[1], n), bias[1])
            b_name = unique(f"{name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), b_type, b_codes, origin=bias[0])
            inputs.append(b_name)
        y = self.add_op(name, layer.kind, inputs, layer.out_shape, y_type, quant.output[0],
                        {"activation": activation, **layer.attrs})
        self.bind(quant.output[0], QVal(y, y_type))
        self.exact = False  # the float32 reference is not provably exact for float scales

    def scaled_bias(self, p: _Param, user: onnx.NodeProto) -> tuple[np.ndarray, FixedType | ScaledType]:
        """Bias codes and an exact type: a Quant'ed bias in its own type (per channel when its scales are); a
        float32 bias as each value's own mantissa and power-of-two scale (exact)."""
        n = p.values.shape[-1]
        if p.spec is not None:
            if not p.spec.scaled:
                return p.values.astype(np.int64), p.spec.fixed_type()
            scales = np.broadcast_to(p.scales, p.values.shape).reshape(n) if p.scales is not None else None
            per = tuple(float(v) for v in scales) if scales is not None and len(set(scales.tolist())) > 1 else None
            return p.values.astype(np.int64), p.spec.ir_type(channel_scales=per)
        values = np.asarray(p.values, dtype=np.float32).astype(np.float64)
        mantissa, exponent = np.frexp(values)  # value = mantissa * 2**exponent, |mantissa| in [0.5, 1)
        codes = np.rint(np.ldexp(mantissa, 24)).astype(np.int64)  # float32 mantissas have 24 bits: exact
        exps = np.where(codes == 0, 0, exponent - 24)
        if np.any(exps < -149):
            raise UnsupportedQuantizationError(node_where(user), f"the float bias {p.origin} has values below "
                                               "2^-125 that are not zero", "set such bias values to 0")
        scales = tuple(float(np.ldexp(1.0, int(e))) for e in exps)
        return codes, ScaledType(26, True, scales if len(set(scales)) > 1 else scales[:1], (0,))

    # -- float operations between a dense sum and its quantizer ------------------------------------------------
    def epilogue_const(self, name: str) -> np.ndarray | None:
        """A constant operand of a float epilogue step (through Identity / Dropout), for ``epilogue_step``."""
        return self._const(name)

    def stepped_dense(self, node: onnx.NodeProto, x: QVal, w: _Param, codes: np.ndarray, bias, chain: list,
                      sum_name: str, quant: onnx.NodeProto, layer: LinearLayer) -> None:
        """A dense layer whose sum goes through float steps (``chain``) into ``quant`` (Quant or BipolarQuant):
        its epilogue is the threshold table the source's own nodes give on every reachable accumulator
        (frontends/source_eval.py); channels whose codes fall as the sum grows accumulate the negated column."""
        where = self.where(node)
        k, n = codes.shape
        scaled = is_scaled(x.qtype) or w.spec.scaled
        b_codes = np.zeros(n, dtype=np.int64)
        if scaled:
            # float scales: the source's sum is sx * sw_n * acc + b_n, rounded to float32 (its float32 summation can
            # differ from that near a threshold: docs/numerics.md); the table absorbs every scale and the bias
            xt = x.qtype.fixed()
            if isinstance(xt, ScaledType) and xt.zero_point_of(0):
                raise UnsupportedQuantizationError(where, "float operations after a layer whose input has a zero "
                                                   "point are not supported", "quantize the input symmetrically")
            sx = float(xt.scale[0]) if isinstance(xt, ScaledType) else 2.0 ** -xt.frac
            if w.spec.scaled:
                scales = np.broadcast_to(w.scales, codes.shape)  # in the layout of codes
                if not np.all(scales == scales[:1]):
                    raise UnsupportedQuantizationError(w.spec.where, "the weight scales vary along the input axis",
                                                       "use one weight scale per output channel (or per tensor)")
                sw = scales[0].astype(np.float64)
            else:
                sw = np.full(n, 2.0 ** -w.spec.frac)
            step = sx * sw  # exact in float64: two float32 factors
            b_real = np.zeros(n)
            if bias is not None:
                p = self.bias_param(bias[0], bias[1], n)
                b_real = (p.values.astype(np.float64) * (np.broadcast_to(p.scales, p.values.shape).reshape(n)
                          if p.scales is not None else 2.0 ** -p.spec.frac if p.spec is not None else 1.0))
            self.exact = False
        else:
            acc_frac = x.qtype.frac + w.spec.frac
            if bias is not None:
                b_codes, _ = self.bias_at(self.bias_param(bias[0], bias[1], n), acc_frac, bias[1])
                b_codes = np.asarray(b_codes, dtype=np.int64)
        w64 = codes.astype(np.int64)
        x_lo, x_hi = x.qtype.lo, x.qtype.hi
        low = np.minimum(w64 * x_lo, w64 * x_hi).sum(axis=0) + b_codes
        high = np.maximum(w64 * x_lo, w64 * x_hi).sum(axis=0) + b_codes
        acc_lo, acc_hi = int(low.min(initial=0)), int(high.max(initial=0))
        if not scaled:
            self.check_float32(max(abs(acc_lo), abs(acc_hi)), x.qtype.frac, w.spec.frac, acc_frac)
        if quant.op_type == BIPOLAR:
            spec = self.parse_bipolar(quant)
            y_type = _AType.of(spec)
            lo, hi = -1, 1

            def to_code(v: np.ndarray) -> np.ndarray:
                return np.where(v >= 0, 1, -1).astype(np.int64)
        else:
            y_type = self.qparams(quant)
            lo, hi = y_type.lo, y_type.hi
            to_code = _quant_codes(y_type)

        def to_input(acc: np.ndarray) -> np.ndarray:  # the source's float32 sum of that accumulator
            if scaled:
                return (acc * step + b_real).astype(np.float32)
            return np.ldexp(acc, -acc_frac).astype(np.float32)  # exact

        names = " -> ".join(c.name or c.op_type for c in [*chain, quant])
        fn = chain_function([*chain, quant], self.consts, sum_name, list(self.model.opset_import), to_input, to_code,
                            trailing=layer.trailing)
        thresholds, negated, acc_lo, acc_hi = step_thresholds(fn, acc_lo, acc_hi, n, lo, hi, where)
        if negated.any():
            flipped = -w64[:, negated]
            w_type = w.spec.fixed_type()  # the codes' range (a scaled spec's scales live in the table)
            if flipped.min(initial=0) < w_type.min_code or flipped.max(initial=0) > w_type.max_code:
                col = int(np.nonzero(negated)[0][0])
                raise UnsupportedQuantizationError(
                    where, f"output channel {col} falls as its sum grows (a negative BatchNorm / Mul scale): the tile "
                    f"accumulates the negated weights, and {-w_type.min_code} does not fit {w_type.describe()}",
                    "use narrow-range weights (e.g. narrow_range=True) so that every weight can be negated")
            w64 = w64.copy()
            w64[:, negated] = flipped
            b_codes = np.where(negated, -b_codes, b_codes)
        name = self.op_name(node, layer.kind)
        w_name = unique(f"{name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (k, n), w.spec.fixed_type(), np.ascontiguousarray(w64),
                                      origin=w.origin)
        inputs = [x.tensor, w_name]
        if np.any(b_codes):
            b_name = unique(f"{name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), FixedType(32, x.qtype.frac + w.spec.frac, True), b_codes,
                                          origin=bias[0] if bias is not None else "")
            inputs.append(b_name)
        table = {"thresholds": thresholds.tolist(), "acc_range": [acc_lo, acc_hi], "clamp": [lo, hi],
                 "negated_channels": [int(i) for i in np.nonzero(negated)[0]],
                 "source": f"{names}, run by qonnx on the layer's accumulator values"}
        if quant.op_type != BIPOLAR:
            reading = self.affine_reading(chain, sum_name, step if scaled else np.full(n, 2.0 ** -acc_frac),
                                          b_real if scaled else np.zeros(n), negated, y_type)
            if reading is not None:
                table["affine_reading"] = reading
        y = self.add_op(name, layer.kind, inputs, layer.out_shape, y_type, quant.output[0],
                        {"activation": "linear", "requant_table": table, **layer.attrs})
        self.bind(quant.output[0], QVal(y, y_type))

    def affine_reading(self, chain: list, sum_name: str, step: np.ndarray, offset: np.ndarray, negated: np.ndarray,
                       y_type) -> dict | None:
        """The chain read as exact real arithmetic: ``code_n = clamp(round(acc * c_n + e_n))`` with rationals
        ``c_n > 0`` (of the oriented accumulator) and ``e_n``, from the float32 constants; the dense family uses it
        (a multiplier instead of a table) only where its thresholds equal the source's on the whole range. None
        when the chain has no such reading (a Relu / Clip before its end, a zero scale)."""
        from fractions import Fraction

        n = len(step)
        a = [Fraction(float(v)) for v in step]
        b = [Fraction(float(v)) for v in offset]
        clamp_zero = False
        value = sum_name
        for i, node in enumerate(chain):
            op = node.op_type
            if op in ("Relu", "Clip"):
                if i != len(chain) - 1 or op == "Clip":
                    return None
                clamp_zero = True
                continue
            consts = [np.broadcast_to(np.asarray(self._const(name), dtype=np.float64).reshape(-1)
                                      if np.size(self._const(name)) > 1 else np.asarray(self._const(name),
                                                                                       dtype=np.float64).reshape(1),
                                      (n,)) for name in node.input if name and name != value]
            if op == "BatchNormalization":
                gamma, beta, mean, var = consts
                eps = float(np.float32(attr(node, "epsilon", 1e-5)))
                for j in range(n):
                    scale = Fraction(float(gamma[j])) / Fraction(float(np.sqrt(np.float64(var[j]) + eps)))
                    a[j] *= scale
                    b[j] = (b[j] - Fraction(float(mean[j]))) * scale + Fraction(float(beta[j]))
            else:
                c = [Fraction(float(v)) for v in consts[0]]
                first = node.input[0] == value
                for j in range(n):
                    if op == "Mul":
                        a[j], b[j] = a[j] * c[j], b[j] * c[j]
                    elif op == "Div":
                        if c[j] == 0:
                            return None
                        a[j], b[j] = a[j] / c[j], b[j] / c[j]
                    elif op == "Add":
                        b[j] += c[j]
                    elif first:  # Sub: x - c
                        b[j] -= c[j]
                    else:  # c - x
                        a[j], b[j] = -a[j], c[j] - b[j]
            value = node.output[0]
        t = y_type.fixed()
        s_y = Fraction(float(t.scale[0])) if isinstance(t, ScaledType) else Fraction(2) ** -t.frac
        zp = t.zero_point_of(0) if isinstance(t, ScaledType) else 0
        scales, offsets = [], []
        for j in range(n):
            c = a[j] / s_y
            if c == 0 or (c < 0) != bool(negated[j]):
                return None
            scales.append(abs(c))
            offsets.append(b[j] / s_y + zp)
        lo = max(t.min_code, min(max(zp, t.min_code), t.max_code)) if clamp_zero else t.min_code
        return {"scale": [[v.numerator, v.denominator] for v in scales],
                "offset": [[v.numerator, v.denominator] for v in offsets], "rounding": t.rounding, "clamp": [lo,
                                                                                                  t.max_code]}

    def host_tail_dense(self, node: onnx.NodeProto, x: QVal, w: _Param, codes: np.ndarray, bias, chain: list,
                        sum_name: str, out_name: str, layer: LinearLayer) -> None:
        """A last dense layer whose float sum goes through float steps into a graph output: the array computes
        the exact sum (codes at the accumulator's LSB), the host the steps (ir/host.py), as the source does."""
        where = self.where(node)
        if is_scaled(x.qtype) or w.spec.scaled:
            raise UnsupportedQuantizationError(where, "a float-scale layer ends the model without an output "
                                               "quantizer", "add an output quantizer (e.g. QuantIdentity)")
        if layer.kind != "dense":
            raise UnsupportedQuantizationError(where, f"the {layer.kind} layer ends the model without an output "
                                               "quantizer", "add an output quantizer (e.g. QuantIdentity)")
        steps = []
        value = sum_name
        for c in chain:
            if c.op_type not in _HOST_STEP_OPS:
                raise UnsupportedQuantizationError(
                    self.where(c), f"{c.op_type} after the last layer, before the graph output {out_name}, has no "
                    "output quantizer", "add an output quantizer after it, or end the model with Mul / Div / Add / "
                    "Sub by constants (the host computes those)")
            other = next(i for i in c.input if i != value)
            op = _HOST_STEP_OPS[c.op_type] if c.input[0] == value else {"Sub": "rsub", "Div": "rdiv"}.get(
                c.op_type, _HOST_STEP_OPS[c.op_type])
            value = c.output[0]
            const = np.broadcast_to(np.asarray(self._const(other), dtype=np.float32), (1, codes.shape[1]))
            flat = const.reshape(-1)
            values = (float(flat[0]),) if np.all(flat == flat[0]) else tuple(float(v) for v in flat)
            steps.append(HostStep(op, values, c.name or c.op_type))
        k, n = codes.shape
        acc_frac = x.qtype.frac + w.spec.frac
        b_codes = None
        if bias is not None:
            b_codes, _ = self.bias_at(self.bias_param(bias[0], bias[1], n), acc_frac, bias[1])
        w64 = codes.astype(np.int64)
        b = np.abs(np.asarray(b_codes if b_codes is not None else 0, dtype=np.int64))
        bound = int((np.abs(w64).sum(axis=0) * x.qtype.max_abs + b).max(initial=0))
        width = next((bits for bits in (8, 16) if bound < 1 << (bits - 1)), None)
        if width is None:
            feeds = "feeds float operations into" if steps else "is"
            raise UnsupportedQuantizationError(
                where, f"the last layer's exact sum (up to {bound}) {feeds} the graph output {out_name} (no output "
                "quantizer); it needs more than 16 bits and the tile writes 8- or 16-bit codes",
                "add an output quantizer after the last layer")
        self.check_float32(bound, x.qtype.frac, w.spec.frac, acc_frac)
        y_type = _AType(width, acc_frac, True, "RND_CONV", "SAT", False)
        name = self.op_name(node, layer.kind)
        w_name = unique(f"{name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (k, n), w.spec.fixed_type(), np.ascontiguousarray(w64), origin=w.origin)
        inputs = [x.tensor, w_name]
        if b_codes is not None:
            b_name = unique(f"{name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), FixedType(32, acc_frac, True),
                                          np.asarray(b_codes, dtype=np.int64), origin=bias[0])
            inputs.append(b_name)
        y = self.add_op(name, "dense", inputs, self.shape(x)[:-1] + (n,), y_type, out_name, {"activation": "linear"})
        self.bind(out_name, QVal(y, y_type))
        if steps:
            self.epilogues[y] = HostEpilogue(tuple(steps))

    def check_gemm(self, node: onnx.NodeProto, x_shape: tuple[int, ...]) -> None:
        where = self.where(node)
        for name in ("alpha", "beta"):
            value = attr(node, name, 1.0)
            if value != 1.0 and not (name == "beta" and len(node.input) < 3):
                raise UnsupportedOpError(where, f"Gemm with {name}={value} is not supported",
                                         "export a plain linear layer (alpha = beta = 1)")
        if attr(node, "transA", 0):
            raise UnsupportedOpError(where, "Gemm with transA=1 is not supported",
                                     "the activation must be the first, untransposed operand")
        if len(x_shape) != 1:
            raise UnsupportedOpError(where, f"Gemm of a [batch, {', '.join(map(str, x_shape))}] activation",
                                     "use MatMul for a dense layer applied per row of a rank-3 input")

    def bias_param(self, name: str, user: onnx.NodeProto, n: int) -> _Param:
        param = self.resolve_param(name, "bias")
        if param is None:
            raise UnsupportedOpError(self.where(user), f"bias {name} is not a constant",
                                     "only constant (quantized or float) biases are supported")
        values = np.asarray(param.values)
        if values.size == 1:
            values = np.full(n, values.reshape(-1)[0])
        if values.size != n or (values.ndim > 1 and values.shape[-1] != n):
            raise UnsupportedOpError(self.where(user), f"bias of shape {list(values.shape)} does not broadcast as a "
                                     f"[{n}] vector", "use a per-output-feature bias")
        return _Param(values.reshape(n), param.spec, param.origin)

    # -- views --------------------------------------------------------------------------------------------------
    def on_slice(self, node: onnx.NodeProto) -> None:
        """A Slice of the batch axis must keep it whole for any batch (the reference runs other batch sizes than
        the exported one)."""
        fixed, self.fixed_batch = self.fixed_batch, None
        try:
            super().on_slice(node)
        finally:
            self.fixed_batch = fixed

    def on_concat(self, node: onnx.NodeProto) -> None:
        types = {self.value(name, node).qtype for name in node.input}
        if len(types) > 1 and self.quant_tail(node, optional=True)[0] is None:
            raise UnsupportedQuantizationError(
                self.where(node), f"concatenates values of different types ({', '.join(t.describe() for t in types)})"
                " and no Quant node follows it", "quantize the concatenation (e.g. a QuantIdentity after torch.cat) "
                "or quantize its inputs with one quantizer")
        super().on_concat(node)

    def on_batchnorm(self, node: onnx.NodeProto) -> None:
        """BatchNormalization of a quantized [batch, C] value, through float steps, into a Quant: an eltwise
        ``affine`` whose per-channel step function qonnx's own nodes give on every input code (frontends/
        source_eval.py); kernels/eltwise/plan.py implements it as a multiply-add per channel where an affine map
        has exactly those thresholds."""
        if node.input[0] not in self.vals:
            self.on_unfused(node)
        x = self.value(node.input[0], node)
        x_shape = self.shape(x)
        n = x_shape[-1]
        if len(x_shape) != 1 or not self.epilogue_step(node, node.input[0], n, x_shape):
            raise UnsupportedOpError(self.where(node), f"BatchNormalization of a {list(x_shape)} value per event: "
                                     "supported on [batch, features] tensors (channels on axis 1)",
                                     "apply it to a flat [batch, features] tensor, or fold it into the layer before")
        chain, last = [node], node
        nxt = self.single_user(last.output[0], last)
        while nxt is not None and self.epilogue_step(nxt, last.output[0], n, x_shape):
            self.visit(nxt)
            chain.append(nxt)
            last = nxt
            nxt = self.single_user(last.output[0], last)
        if nxt is None or not _is_quant(nxt) or nxt.input[0] != last.output[0]:
            raise self.no_quantize(last, last.output[0], nxt)
        self.visit(nxt)
        y_type = self.qparams(nxt)
        xt = x.qtype.fixed()
        if isinstance(xt, ScaledType):
            scale, zp = float(xt.scale[0]), xt.zero_point_of(0)

            def to_input(codes: np.ndarray) -> np.ndarray:  # qonnx's Quant output: (q - zp) * scale in float32
                return (codes.astype(np.float32) - np.float32(zp)) * np.float32(scale)
            step, offset = np.full(n, scale), np.full(n, -zp * scale)
        else:
            f = xt.frac

            def to_input(codes: np.ndarray) -> np.ndarray:  # exact: a power-of-two scale
                return np.ldexp(codes, -f).astype(np.float32)
            step, offset = np.full(n, 2.0 ** -f), np.zeros(n)
        to_code = _quant_codes(y_type)
        where = self.where(node)
        lo_code = 0 if self.nonnegative(x) else xt.min_code
        fn = chain_function([*chain, nxt], self.consts, node.input[0], list(self.model.opset_import), to_input,
                            to_code)
        thresholds, negated, a_lo, a_hi = step_thresholds(fn, lo_code, xt.max_code, n, y_type.lo, y_type.hi, where)
        table = {"thresholds": thresholds.tolist(), "acc_range": [a_lo, a_hi], "clamp": [y_type.lo, y_type.hi],
                 "negated_channels": [int(i) for i in np.nonzero(negated)[0]],
                 "source": " -> ".join(c.name or c.op_type for c in [*chain, nxt]) + ", run by qonnx on every "
                           "input code"}
        reading = self.affine_reading(chain, node.input[0], step, offset, negated, y_type)
        if reading is not None:
            table["affine_reading"] = reading
        y = self.add_op(self.op_name(node, "affine"), "eltwise", [x.tensor], x_shape, y_type, nxt.output[0],
                        {"op": "affine", "requant_table": table})
        self.bind(nxt.output[0], QVal(y, y_type))
        if isinstance(xt, ScaledType) or is_scaled(y_type):
            self.exact = False

    def off_grid(self, qtype) -> bool:
        return is_scaled(qtype)

    def tabulate(self, region: Region, x, y, codes: np.ndarray, const_nodes: list[onnx.NodeProto]) -> np.ndarray:
        """The output codes of ``region`` and its Quant on the input ``codes`` of type ``x``: qonnx's
        ``execute_onnx`` (the reference) on the float values the input's Quant writes for them."""
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes

        xt = x.fixed()
        if isinstance(xt, ScaledType):  # qonnx's Quant output: (q - zp) * scale in float32
            values = (codes.astype(np.float32) - np.float32(xt.zero_point_of(0))) * np.float32(xt.scale[0])
        else:
            values = np.ldexp(codes, -xt.frac).astype(np.float32)
        model = ModelWrapper(region_model(region, const_nodes, self.consts, list(self.model.opset_import),
                                          codes.size, onnx.TensorProto.FLOAT))
        got = execute_onnx(model.transform(InferShapes()), {region.source: values})[region.sink.output[0]]
        return _quant_codes(y)(got)

    def on_unfused(self, node: onnx.NodeProto) -> None:
        """BatchNormalization, Div or BipolarQuant that no dense layer's epilogue took (a Div may start a function's
        table)."""
        if node.op_type == "Div" and self.function_region(node):
            return
        if node.op_type == BIPOLAR:
            self.qparams(node)  # raises: where a bipolar quantizer is supported
        producer = self.producer.get(node.input[0])
        src = self.where(producer) if producer is not None else f"the graph input {node.input[0]}"
        raise UnsupportedOpError(self.where(node), f"{node.op_type} of {node.input[0]} (from {src}) is supported "
                                 "only on a Gemm / MatMul layer's float sum before its quantizer (BatchNorm: of a "
                                 "[batch, features] sum) or before the graph input's quantizer (Div by a constant)",
                                 "fold it into the preceding layer, or place it directly after a Gemm / MatMul")

    # -- the graph ----------------------------------------------------------------------------------------------
    def check_ops(self) -> None:
        for node in self.nodes:
            where = self.where(node)
            if _is_quantizer(node):
                if node.domain not in QONNX_DOMAINS:
                    raise UnsupportedOpError(where, f"{node.op_type} from domain {node.domain!r} is not the QONNX "
                                             "quantizer (qonnx cannot execute it)",
                                             f"use domain {QONNX_DOMAINS[0]!r}, as Brevitas export_qonnx writes")
                if len(node.output) != 1 or not node.output[0]:
                    raise BadFileError(where, f"{node.op_type} has the outputs {list(node.output)}, expected one "
                                       "named output", "re-export the model with Brevitas export_qonnx")
                if _is_quant(node):
                    check_quant_arity(node)  # onnx.checker knows no schema of the QONNX domain
                continue
            producer = self.producer.get(node.input[0]) if node.input else None
            if (node.op_type == "Trunc" and node.domain in QONNX_DOMAINS and producer is not None
                    and producer.op_type == "AveragePool"):
                continue  # TruncAvgPool2d: read off with its average pool (avgpool_tail)
            folded = bool(node.output) and all(o in self.consts for o in node.output if o)
            if node.domain in STANDARD_DOMAINS and (node.op_type in _HANDLED or node.op_type == "Constant" or folded):
                continue
            if node.op_type in _QONNX_ONLY:
                hint = f"{node.op_type} is not supported yet; {SUPPORTED_TEXT}"
            elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                hint = "this is an ONNX QDQ model: load it with nn2aie.frontends.onnx_qdq.load_qdq"
            else:
                hint = SUPPORTED_TEXT
            dom = "" if node.domain in STANDARD_DOMAINS else f" from domain {node.domain!r}"
            raise UnsupportedOpError(where, f"operator {node.op_type}{dom} is not supported by the QONNX frontend",
                                     hint)

    def parse(self) -> Graph:
        self.check_ops()
        inputs = real_inputs(self.graph)
        if not inputs:
            raise UnsupportedOpError("model", "has no graph input (weights must be initializers)",
                                     "export the model with its float input(s) as graph inputs")
        batches = {(value_shape(vi) or (None,))[0] for vi in inputs}
        batch = next(iter(batches))
        self.fixed_batch = batch if len(batches) == 1 and isinstance(batch, int) else None
        self.graph_inputs = [self.graph_input(vi) for vi in inputs]
        handlers = {"Gemm": self.on_dense, "MatMul": self.on_dense, "Conv": self.on_conv, "MaxPool": self.on_maxpool,
                    "AveragePool": self.on_avgpool, "Relu": self.on_relu, "Clip": self.on_clip,
                    "LeakyRelu": self.on_leaky_relu, "Concat": self.on_concat, "Split": self.on_split,
                    "Slice": self.on_slice, "Transpose": self.on_transpose, "Identity": self.on_identity,
                    "Dropout": self.on_identity, **{op: self.on_binary for op in BINARY_OPS},
                    "BatchNormalization": self.on_batchnorm, "Div": self.on_unfused, BIPOLAR: self.on_unfused,
                    **{op: self.on_reduce for op in REDUCE_OPS}, **{op: self.on_quant for op in ("Quant", "IntQuant")},
                    **{op: self.on_reshape for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze")},
                    **{op: self.on_function for op in REGION_ONLY_OPS}, "Softmax": self.on_softmax,
                    "LayerNormalization": self.on_layernorm}
        for node in self.nodes:
            if id(node) in self.visited or node.op_type == "Constant":
                continue
            if node.output and all(o in self.consts or self.is_constant(o) for o in node.output if o):
                continue  # weights, biases, constant operands: resolved by the op that reads them
            self.visit(node)
            handlers[node.op_type](node)
        taken: dict[str, str] = {}
        outputs = [self.output_of(vi, taken) for vi in self.graph.output]
        self.prune(self.graph_inputs, outputs)
        if not self.ops:
            raise UnsupportedOpError("model", "contains no Gemm/MatMul layer or other operation to compile",
                                     "export a network built from QuantLinear layers")
        name = identifier(self.graph.name or (pathlib.Path(self.file).stem if self.file else ""), "qonnx_model")
        source = {"framework": "qonnx", "file": self.file, "reference_exact": "yes" if self.exact else "no"}
        if self.model.producer_name:
            source["producer"] = f"{self.model.producer_name} {self.model.producer_version}".strip()
        host.store(source, host.HOST_PROLOGUE, {t: p for t, p in self.prologues.items() if t in self.graph_inputs})
        host.store(source, host.HOST_EPILOGUE, self.layout_epilogues(
            outputs, {t: e for t, e in self.epilogues.items() if t in outputs}))
        graph = Graph(name, self.tensors, self.ops, self.graph_inputs, outputs, source)
        check_inference(self.original)
        graph.verify()
        return graph

    def graph_input(self, vi: onnx.ValueInfoProto) -> str:
        """A float graph input [batch, *shape] read by Quant nodes of one type -> a logical input."""
        name, where = vi.name, f"graph input {vi.name}"
        if elem_type(vi) != onnx.TensorProto.FLOAT:
            raise UnsupportedQuantizationError(where, f"has type {elem_type_name(elem_type(vi))}, expected float",
                                               "export the model with float32 inputs and outputs")
        shape = value_shape(vi)
        if shape is not None and len(shape) < 2:
            raise UnsupportedOpError(where, f"has shape {list(shape)}, expected [batch, K] or [batch, d1, d2, ...]",
                                     "export the model with the batch axis first")
        for i, dim in enumerate(shape or ()):
            if isinstance(dim, int) and dim < 1:
                raise BadFileError(where, f"has a {'batch' if i == 0 else 'feature'} dimension {dim} (zero-size "
                                   "input)", "export with positive (or dynamic) dimensions")
        if shape is not None and isinstance(shape[0], int) and shape[0] > MAX_FIXED_BATCH:
            raise UnsupportedOpError(where, f"has a fixed batch dimension {shape[0]}: the reference check runs "
                                     f"batches of that size (at most {MAX_FIXED_BATCH} supported)",
                                     "export with batch size 1 or a dynamic batch dimension")
        users = self.users(name)
        if not users:
            raise UnsupportedOpError(where, "no graph output depends on it", "remove the unused input from the model")
        prologue = len(users) == 1 and (users[0].op_type == BIPOLAR or (
            users[0].op_type in (*_HOST_STEP_OPS, *_PROLOGUE_VIEWS) and users[0].domain in STANDARD_DOMAINS))
        user_type = self.user_input_types.get(name)
        if user_type is not None:
            if prologue or all(_is_quant(u) and u.input[0] == name for u in users):
                raise IllegalConfigError(f"input type for {name}", f"the graph input {name} is already quantized by "
                                         f"the model ({self.where(users[0])})", "drop the input type")
            if shape is None or not all(isinstance(d, int) for d in shape[1:]):
                raise UnsupportedOpError(where, "a host-cast input needs static per-event dimensions",
                                         "export with a static input shape")
            per_event = tuple(int(d) for d in shape[1:])
            lname = unique(identifier(name, "input"), self.taken)
            self.tensors[lname] = Tensor(lname, per_event, user_type, origin=name)
            self.input_names.add(name)
            self.prologues[lname] = HostPrologue((), "user", per_event)
            t = user_type
            self.bind(name, QVal(lname, _AType(t.width, t.frac, t.signed, t.rounding, t.overflow, t.narrow)))
            return lname
        if prologue:
            return self.prologue_input(vi, shape, users[0])
        for user in users:
            if user.op_type in ("Gemm", "MatMul") and name in list(user.input)[1:]:
                raise UnsupportedOpError(self.where(user), f"its weights/bias come from the graph input {name} "
                                         "(dynamic weights)", "store weights and biases as initializers")
            if not _is_quant(user) or user.input[0] != name:
                raise UnsupportedQuantizationError(self.where(user), f"reads the float graph input {name} directly: "
                                                   "the network input is not quantized", INPUT_HINT)
        per_event = self.event_shape(vi, shape, users)
        x_type = self.qparams(users[0])
        for q in users[1:]:
            if self.qparams(q) != x_type:
                raise UnsupportedQuantizationError(
                    self.where(q), f"quantizes the graph input {name} to {self.qparams(q).describe()}, "
                    f"{self.where(users[0])} to {x_type.describe()}", "quantize each graph input once")
        if not is_scaled(x_type):
            self.check_float32(0, x_type.frac)
        lname = unique(identifier(name, "input"), self.taken)
        per_event = self.image_input(lname, name, per_event, HostPrologue((), "type", per_event))
        self.tensors[lname] = Tensor(lname, per_event, x_type.fixed(), origin=name)
        self.input_names.add(name)
        for q in users:
            self.visit(q)
            self.bind(q.output[0], QVal(lname, x_type))
        return lname

    def prologue_input(self, vi: onnx.ValueInfoProto, shape, first: onnx.NodeProto) -> str:
        """A float graph input that reaches its quantizer through float steps by constants and views: the host
        runs those steps and the quantizer (ir/host.py); the array's input is the quantizer's codes."""
        name, where = vi.name, f"graph input {vi.name}"
        if shape is None or not all(isinstance(d, int) for d in shape[1:]):
            raise UnsupportedOpError(where, f"has shape {list(shape) if shape else shape}: float steps before the "
                                     "input quantizer need static per-event dimensions", "export with a static "
                                     "input shape")
        source_shape = tuple(int(d) for d in shape[1:])
        value, event, steps = name, source_shape, []
        while True:
            users = [] if value in self.graph_outputs else self.users(value)
            if len(users) != 1:
                raise UnsupportedQuantizationError(where, f"its float value {value} feeds {len(users)} nodes (or is a "
                                                   "graph output) before any quantizer", PROLOGUE_HINT)
            node = users[0]
            if _is_quantizer(node) and node.input[0] == value:
                break
            self.visit(node)
            if node.op_type in _PROLOGUE_VIEWS and node.domain in STANDARD_DOMAINS:
                event = (self.reshape_shape if node.op_type == "Reshape" else self.flatten_shape)(node, event)
            elif node.op_type in _HOST_STEP_OPS and node.domain in STANDARD_DOMAINS and len(node.input) == 2:
                other = node.input[1] if node.input[0] == value else node.input[0]
                const = self._const(other)
                full = (1, *event)
                try:
                    ok = const is not None and np.broadcast_shapes(np.shape(const), full) == full
                except ValueError:
                    ok = False
                if not ok:
                    raise UnsupportedQuantizationError(self.where(node), f"{node.op_type} of the float graph input "
                                                       f"{name} by {other}, which is not a constant of its shape",
                                                       PROLOGUE_HINT)
                flat = np.broadcast_to(np.asarray(const, dtype=np.float32), full).reshape(-1)
                op = _HOST_STEP_OPS[node.op_type]
                if node.input[0] != value:
                    op = {"sub": "rsub", "div": "rdiv"}.get(op, op)
                values = (float(flat[0]),) if np.all(flat == flat[0]) else tuple(float(v) for v in flat)
                steps.append(HostStep(op, values, node.name or node.op_type))
            else:
                raise UnsupportedQuantizationError(self.where(node), f"reads the float graph input {name} (after "
                                                   f"{len(steps)} host steps): the network input is not quantized",
                                                   PROLOGUE_HINT)
            value = node.output[0]
        if node.op_type == BIPOLAR:
            x_type, quantizer = _AType.of(self.parse_bipolar(node)), "bipolar"
        else:
            x_type, quantizer = self.qparams(node), "type"
            if not is_scaled(x_type):
                self.check_float32(0, x_type.frac)
        lname = unique(identifier(name, "input"), self.taken)
        prologue = HostPrologue(tuple(steps), quantizer, source_shape)
        event = self.image_input(lname, name, tuple(event), prologue)
        self.tensors[lname] = Tensor(lname, tuple(event), x_type.fixed(), origin=name)
        self.input_names.add(name)
        self.visit(node)
        self.bind(node.output[0], QVal(lname, x_type))
        self.prologues.setdefault(lname, prologue)
        return lname

    def image_input(self, lname: str, name: str, event: tuple[int, ...], prologue: HostPrologue) -> tuple[int, ...]:
        """A graph input read by convolutions is an image, channels first in the model and channels last on the
        array: the host transposes it after quantizing (``prologue`` with the layout). Returns its logical shape."""
        if len(event) < 2 or not self.feeds_conv(name):
            return event
        self.cl[lname] = event
        self.prologues[lname] = HostPrologue(prologue.steps, prologue.quantizer, prologue.source_shape, event)
        return (*event[1:], event[0])

    def event_shape(self, vi: onnx.ValueInfoProto, shape, quants: list[onnx.NodeProto]) -> tuple[int, ...]:
        """The per-event shape of a graph input; a [batch, K] input with an unknown K takes K from the weights of
        the dense layer reading it."""
        if shape is not None and all(isinstance(d, int) for d in shape[1:]):
            return tuple(int(d) for d in shape[1:])
        if shape is None or len(shape) == 2:
            for q in quants:
                for user in self.users(q.output[0]):
                    param = self.resolve_param(user.input[1], "weight") if user.op_type in ("Gemm", "MatMul") \
                        and len(user.input) > 1 and user.input[0] == q.output[0] else None
                    if param is not None and param.values.ndim == 2:
                        trans = user.op_type == "Gemm" and attr(user, "transB", 0)
                        return (int(param.values.shape[1] if trans else param.values.shape[0]),)
        raise UnsupportedOpError(f"graph input {vi.name}", f"has shape {list(shape) if shape else shape}: the "
                                 "per-event dimensions must be static", "export with a static input shape "
                                 "[batch, features] (or [batch, d1, d2, ...])")

    def output_of(self, vi: onnx.ValueInfoProto, taken: dict[str, str]) -> str:
        """The logical tensor of a graph output (float32, declared shape consistent with it)."""
        name, where = vi.name, f"graph output {vi.name}"
        if elem_type(vi) != onnx.TensorProto.FLOAT:
            raise UnsupportedQuantizationError(where, f"has type {elem_type_name(elem_type(vi))}, expected float",
                                               "export the model with float32 inputs and outputs")
        if name not in self.vals and name not in self.input_names:
            producer = self.producer.get(name)
            src = self.where(producer) if producer is not None else "a constant"
            raise UnsupportedQuantizationError(where, f"is the unquantized float result of {src}",
                                               "end the model with a Quant node, e.g. QuantIdentity(act_quant="
                                               "Int8ActPerTensorFixedPoint)")
        tensor = self.graph_output(name, taken)
        per_event = self.tensors[tensor].shape
        declared = value_shape(vi)
        if declared is not None and (len(declared) != len(per_event) + 1
                                     or any(isinstance(d, int) and d < 1 for d in declared)
                                     or any(isinstance(d, int) and d != e for d, e in zip(declared[1:], per_event,
                                                                                           strict=True))):
            raise BadFileError(where, f"is declared with shape {list(declared)} but nn2aie computes [batch, "
                               f"{', '.join(map(str, per_event))}]", "re-export the model")
        return tensor
