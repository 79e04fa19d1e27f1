"""QONNX frontend: MLPs exported by Brevitas ``export_qonnx`` with fixed-point (power-of-two) quantizers.

Accepted graph (after Identity/Dropout pass-through and folding of constant sub-graphs)::

    input -> Quant -> { Gemm | MatMul [-> Add bias] } -> [Relu] -> Quant [-> Relu] [-> Quant] -> ... -> Quant

Weights are ``Quant(initializer)`` (optionally followed by Transpose/Identity), biases ``Quant(initializer)`` or a
float initializer exactly representable at the accumulator's LSB (input scale x weight scale). Each
Gemm/MatMul becomes one logical ``dense`` op with integer weight codes ``[K, N]``, bias codes at
``frac = x_frac + w_frac`` and its output typed by the activation Quant that follows it.

Semantics of QONNX ``Quant`` (qonnx ``int_quant``): ``q = round(clip(x / scale + zeropt, lo, hi))``,
output ``(q - zeropt) * scale``; with integer bounds clip-then-round equals round-then-clip, which is what the
logical IR does (round with the mapped mode, then saturate).

Exactness of the reference: QONNX (onnxruntime inside ``execute_onnx``) and Brevitas compute Gemm/MatMul in
float32, exact while every partial sum stays below 2**24 accumulator LSBs; ``load_qonnx`` checks the sufficient
bound per layer and records ``graph.source['reference_exact']`` = ``'yes'`` / ``'no'`` (as the QDQ frontend does).

``run_reference`` executes the model with ``qonnx.core.onnx_exec.execute_onnx`` (the source framework's own
execution) on a batch of float inputs.
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from nn2aie.errors import BadFileError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.onnx_common import (
    ModelLike,
    attr,
    check_inference,
    constants,
    consumers_map,
    elem_type_name,
    identifier,
    initializers,
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
from nn2aie.numerics import QONNX_TO_IR_ROUNDING

QUANT_OP_TYPES = ("Quant", "IntQuant")
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")  # where qonnx finds its Quant implementation
STANDARD_DOMAINS = ("", "ai.onnx")
QUANT_PARAM_DTYPES = (np.dtype(np.float32),)  # QONNX specifies float32 (float64 would turn qonnx's outputs float64)
MAX_FIXED_BATCH = 1 << 20
PASS_THROUGH_OPS = ("Identity", "Dropout")
SUPPORTED_TEXT = ("supported: Quant (per-tensor, power-of-two scale, zero point 0) on the input, weights, biases "
                  "and activations; Gemm / MatMul (+ Add bias); Relu; Identity / Dropout; constant sub-graphs")
FIXED_POINT_HINT = ("export with brevitas.quant.fixed_point quantizers, e.g. Int8WeightPerTensorFixedPoint / "
                    "Int8ActPerTensorFixedPoint")

# QONNX rounding_mode -> rounding of the logical IR (ap_fixed names, plus CEIL and UP which ap_fixed lacks)
ROUNDING_TO_AP: dict[str, str] = QONNX_TO_IR_ROUNDING
MAX_ACT_BITS = 16
MAX_WEIGHT_BITS = 16
MAX_BIAS_BITS = 32
FLOAT32_EXACT = 2**24  # every integer below this is exactly representable in float32
FLOAT32_FRAC_RANGE = 100  # scales 2**+-100 keep every float32 value normal and finite


# ----------------------------------------------------------------------------------------------------------
# parsed Quant parameters
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantSpec:
    node: onnx.NodeProto
    width: int
    frac: int
    signed: bool
    narrow: bool
    rounding_mode: str

    @property
    def where(self) -> str:
        return node_where(self.node)

    @property
    def lo(self) -> int:
        return self.fixed_type().min_code

    @property
    def hi(self) -> int:
        return self.fixed_type().max_code

    def fixed_type(self, rounding: str = "RND_CONV") -> FixedType:
        return FixedType(width=self.width, frac=self.frac, signed=self.signed, rounding=rounding, overflow="SAT",
                         narrow=self.narrow)


def round_codes(values: np.ndarray, mode: str) -> np.ndarray:
    """QONNX rounding functions (qonnx ``resolve_rounding_mode``), on float64 values."""
    v = np.asarray(values, dtype=np.float64)
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(v)
    if mode == "FLOOR":
        return np.floor(v)
    if mode == "CEIL":
        return np.ceil(v)
    if mode == "DOWN":
        return np.fix(v)
    if mode == "UP":
        return np.sign(v) * np.ceil(np.abs(v))
    if mode == "HALF_UP":
        return np.sign(v) * np.floor(np.abs(v) + 0.5)
    if mode == "HALF_DOWN":
        return np.sign(v) * np.ceil(np.abs(v) - 0.5)
    raise ValueError(mode)


def quantize_constant(values: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """Integer codes QONNX ``Quant`` gives a constant: round(clip(x / scale)), exactly (power-of-two scale)."""
    scaled = np.ldexp(np.asarray(values, dtype=np.float64), spec.frac)  # x / 2**-frac, exact in float64
    return round_codes(np.clip(scaled, spec.lo, spec.hi), spec.rounding_mode).astype(np.int64)


def _power_of_two_exponent(s: float) -> int | None:
    if not (math.isfinite(s) and s > 0):
        return None
    mantissa, exponent = math.frexp(s)
    return exponent - 1 if mantissa == 0.5 else None


# ----------------------------------------------------------------------------------------------------------
# importer
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Param:
    """A constant operand of a layer: integer codes (with their Quant) or a raw float array."""

    values: np.ndarray
    spec: QuantSpec | None
    origin: str


@dataclass
class _Layer:
    node: onnx.NodeProto
    x_ir: str
    x_type: FixedType
    weight: np.ndarray  # int codes [K, N]
    w_spec: QuantSpec
    op_name: str
    w_name: str
    bias: _Param | None = None
    bias_node: onnx.NodeProto | None = None  # node that added the bias (Gemm or Add)
    chain: list[tuple[str, onnx.NodeProto, QuantSpec | None]] = field(default_factory=list)


def _is_quant(node: onnx.NodeProto) -> bool:
    return node.op_type in QUANT_OP_TYPES


INT, STRING = onnx.AttributeProto.INT, onnx.AttributeProto.STRING


def _typed_attr(node: onnx.NodeProto, name: str, kind: int, default=None):
    """Value of attribute ``name`` if it has type ``kind``; ``default`` if absent; None if of another type."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a) if a.type == kind else None
    return default


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Does an array of ``shape`` broadcast to ``target`` without changing it (numpy rules)?"""
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


class _QonnxImporter:
    def __init__(self, proto: onnx.ModelProto, file: str):
        self.proto = proto
        self.file = file
        self.g = proto.graph
        self.nodes = topological_order(self.g)
        self.consts: dict[str, np.ndarray] = constants(self.g)
        self.producer = producers_map(self.nodes)
        self.consumers = consumers_map(self.nodes)
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.taken: set[str] = set()
        self.inputs: list[str] = []
        self.reference_exact = True

    # -- helpers -------------------------------------------------------------------------------------------
    def _fold_constants(self) -> None:
        """Evaluate standard-domain nodes whose inputs are all constant (Transpose/Reshape/Cast of weights...)."""
        from onnx.reference import ReferenceEvaluator

        for node in self.nodes:
            if _is_quant(node) or node.domain not in ("", "ai.onnx") or node.op_type == "Constant":
                continue
            if any(o in self.consts for o in node.output):
                continue
            ins = [i for i in node.input if i]
            if not ins or not all(i in self.consts for i in ins):
                continue
            try:
                results = ReferenceEvaluator(node).run(None, {i: self.consts[i] for i in ins})
            except Exception:  # leave it to the structural checks, which name the node
                continue
            for name, value in zip(node.output, results, strict=False):
                self.consts[name] = np.asarray(value)

    def _const(self, name: str) -> np.ndarray | None:
        t = name
        while t not in self.consts:
            node = self.producer.get(t)
            if node is None or node.op_type not in PASS_THROUGH_OPS:
                return None
            t = node.input[0]
        return self.consts[t]

    def _check_op_types(self) -> None:
        for node in self.nodes:
            if _is_quant(node):
                if node.domain not in QONNX_DOMAINS:
                    raise UnsupportedOpError(node_where(node), f"{node.op_type} from domain {node.domain!r} is not the "
                                             "QONNX quantizer (qonnx cannot execute it)",
                                             f"use domain {QONNX_DOMAINS[0]!r}, as Brevitas export_qonnx writes")
                if len(node.output) != 1 or not node.output[0]:
                    outs = list(node.output)
                    raise BadFileError(node_where(node), f"{node.op_type} has the outputs {outs}, expected one named "
                                       "output", "re-export the model with Brevitas export_qonnx")
                continue
            if node.domain not in STANDARD_DOMAINS:
                raise UnsupportedOpError(node_where(node), f"operator {node.op_type} from domain {node.domain!r} is "
                                         "not supported by the QONNX frontend", SUPPORTED_TEXT)
            if node.op_type in PASS_THROUGH_OPS:
                self._check_pass_through(node)
                continue
            if node.op_type in ("Gemm", "MatMul", "Add", "Relu", "Constant"):
                continue
            if all(o in self.consts for o in node.output):
                continue  # folded constant sub-graph
            if node.op_type == "Transpose":
                continue  # checked where used (only on constant weights)
            hint = SUPPORTED_TEXT
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                hint = "this is an ONNX QDQ model: load it with nn2aie.frontends.onnx_qdq.load_qdq"
            elif node.op_type in ("Trunc", "BipolarQuant", "MultiThreshold", "FloatQuant"):
                hint = f"{node.op_type} is not supported yet; {SUPPORTED_TEXT}"
            raise UnsupportedOpError(node_where(node),
                                     f"operator {node.op_type} is not supported by the QONNX frontend", hint)

    def _check_pass_through(self, node: onnx.NodeProto) -> None:
        """Identity, or an inference-mode Dropout: a constant scalar ratio and no (or a constant false)
        training_mode, so that the output equals the input."""
        extra = [i for i in node.input[1:] if i]
        if node.op_type == "Identity" and not extra:
            return
        if node.op_type == "Dropout":
            ratio = self.consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            training = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            ratio_ok = len(node.input) < 2 or not node.input[1] or (ratio is not None and np.size(ratio) == 1)
            training_ok = len(node.input) < 3 or not node.input[2] or (
                training is not None and np.size(training) == 1 and not np.asarray(training).reshape(-1)[0])
            if ratio_ok and training_ok:
                return
        raise UnsupportedOpError(node_where(node), f"{node.op_type} with inputs {list(node.input)} is not a "
                                 "pass-through (Dropout needs a constant scalar ratio and training_mode off)",
                                 "export the model in eval mode")

    def parse_quant(self, node: onnx.NodeProto, role: str, shape: tuple[int, ...] | None = None) -> QuantSpec:
        """Parameters of a per-tensor power-of-two Quant; ``shape`` is the quantized tensor's shape (a batch-1
        activation ``(1, n)``, or a constant's shape) that scale, zero point and bit width must broadcast to."""
        where = node_where(node)
        if len(node.input) != 4:
            raise BadFileError(where, f"Quant has {len(node.input)} inputs, expected 4 (x, scale, zeropt, bitwidth)",
                               "re-export the model with Brevitas export_qonnx")
        scale, zeropt, bitwidth = (self._const(node.input[i]) for i in (1, 2, 3))
        for value, what in ((scale, "scale"), (zeropt, "zero point"), (bitwidth, "bit width")):
            if value is None:
                raise UnsupportedQuantizationError(where, f"the {what} is not a constant",
                                                   "export with fixed (eval-mode) quantization parameters")
            if np.asarray(value).dtype not in QUANT_PARAM_DTYPES:
                raise BadFileError(where, f"the {what} has type {np.asarray(value).dtype}; QONNX Quant takes float32 "
                                   "parameters", "re-export the model with Brevitas export_qonnx")
            if np.asarray(value).size == 0:
                raise BadFileError(where, f"empty {what} tensor", "re-export the model")
            if shape is not None and not _broadcasts_to(np.shape(value), shape):
                raise BadFileError(where, f"the {what} of shape {list(np.shape(value))} does not broadcast to the "
                                   f"quantized tensor's shape {list(shape)}", "re-export the model")
        scale = np.asarray(scale, dtype=np.float64)
        flat = scale.ravel()
        if flat.size == 0:
            raise BadFileError(where, "empty scale tensor", "re-export the model")
        if flat.size > 1 and not np.all(flat == flat[0]):
            raise UnsupportedQuantizationError(
                where, f"per-channel scale ({flat.size} values, shape {list(scale.shape)}) is not supported yet",
                "use per-tensor quantizers, e.g. Int8WeightPerTensorFixedPoint instead of "
                "Int8WeightPerChannelFixedPoint")
        s = float(flat[0])
        exponent = _power_of_two_exponent(s)
        if exponent is None:
            raise UnsupportedQuantizationError(where, f"scale {s:.6g} is not a power of two", FIXED_POINT_HINT)
        zp = np.asarray(zeropt, dtype=np.float64).ravel()
        if np.any(zp != 0):
            raise UnsupportedQuantizationError(
                where, f"zero point {zp[np.nonzero(zp)[0][0]]:.6g} is not zero (asymmetric quantization)",
                "use symmetric quantizers with zero point 0, e.g. the brevitas.quant.fixed_point presets")
        bw = np.asarray(bitwidth, dtype=np.float64).ravel()
        if bw.size != 1 or not float(bw[0]).is_integer():
            raise UnsupportedQuantizationError(where, f"bit width {bw.tolist()} is not a single integer",
                                               "use a fixed integer bit width")
        width = int(bw[0])
        signed_attr, narrow_attr = _typed_attr(node, "signed", INT), _typed_attr(node, "narrow", INT)
        if signed_attr is None or narrow_attr is None or {signed_attr, narrow_attr} - {0, 1}:
            raise BadFileError(where, "Quant needs integer attributes 'signed' and 'narrow' with values 0 or 1",
                               "re-export the model with Brevitas export_qonnx")
        signed, narrow = bool(signed_attr), bool(narrow_attr)
        mode = _typed_attr(node, "rounding_mode", STRING, b"ROUND")
        if mode is None:
            raise BadFileError(where, "the attribute 'rounding_mode' is not a string",
                               "re-export the model with Brevitas export_qonnx")
        mode = mode.decode(errors="replace").upper()
        if mode not in ROUNDING_TO_AP:
            raise UnsupportedQuantizationError(where, f"rounding_mode {mode} is unknown",
                                               f"use one of {', '.join(ROUNDING_TO_AP)}")
        limit = {"bias": MAX_BIAS_BITS, "weight": MAX_WEIGHT_BITS}.get(role, MAX_ACT_BITS)
        if width > limit:
            raise UnsupportedQuantizationError(
                where, f"{role} bit width {width} is above {limit}",
                f"quantize {role}s to at most {limit} bits (AIE-ML kernels use int8/int16 operands)")
        if width < (2 if signed else 1):
            raise UnsupportedQuantizationError(where, f"{'signed ' if signed else ''}bit width {width} is too small "
                                               "(1-bit signed Quant is bipolar in QONNX)",
                                               "use at least 2 bits for signed values")
        return QuantSpec(node, width, -exponent, signed, narrow, mode)

    def act_rounding(self, spec: QuantSpec) -> str:
        return ROUNDING_TO_AP[spec.rounding_mode]

    def resolve_param(self, name: str, role: str) -> _Param | None:
        """Constant operand ``name``: Quant(constant) codes (through Identity/Transpose) or a float constant."""
        perms: list[tuple[onnx.NodeProto, list[int] | None]] = []
        t = name
        while True:
            if t in self.consts:
                values = self._numeric(self.consts[t], t, role)
                spec = None
                origin = t
                break
            node = self.producer.get(t)
            if node is None:
                return None
            if node.op_type in PASS_THROUGH_OPS:
                t = node.input[0]
                continue
            if node.op_type == "Transpose":
                perms.append((node, attr(node, "perm")))
                t = node.input[0]
                continue
            if _is_quant(node):
                x = self._const(node.input[0])
                if x is None:
                    return None
                x = self._numeric(x, node.input[0], role)
                if np.isnan(x).any():
                    raise UnsupportedQuantizationError(f"tensor {node.input[0]}", f"the {role} contains NaN",
                                                       "fix the exported parameters (NaN has no quantized code)")
                spec = self.parse_quant(node, role, x.shape)
                values = quantize_constant(x, spec)
                origin = node.input[0]
                break
            return None
        for node, perm in reversed(perms):
            try:
                values = np.transpose(values, perm) if perm is not None else np.transpose(values)
            except ValueError as exc:
                raise BadFileError(node_where(node), f"perm {perm} does not fit the {role} of shape "
                                   f"{list(np.shape(values))} ({exc})", "re-export the model") from None
        return _Param(np.asarray(values), spec, origin)

    @staticmethod
    def _numeric(values: np.ndarray, name: str, role: str) -> np.ndarray:
        """Weights and biases are float32, like the activations (QONNX's Gemm/MatMul/Add and its Quant outputs
        follow their operands' type: another type would make the reference fail or compute in float64)."""
        values = np.asarray(values)
        if values.dtype != np.float32:
            raise UnsupportedQuantizationError(f"tensor {name}", f"the {role} has type {values.dtype}, expected "
                                               "float32", "store weights and biases as float32 tensors")
        return values

    def _add_tensor(self, name: str, shape: tuple[int, ...], ftype: FixedType, data: np.ndarray | None,
                    origin: str) -> str:
        ir_name = unique(name, self.taken)
        self.tensors[ir_name] = Tensor(ir_name, shape, ftype, None if data is None else data.astype(np.int64),
                                       origin)
        return ir_name

    # -- layers --------------------------------------------------------------------------------------------
    def start_layer(self, node: onnx.NodeProto, x_ir: str, x_type: FixedType) -> _Layer:
        where = node_where(node)
        if node.op_type == "Gemm":
            for name, want in (("alpha", 1.0), ("beta", 1.0)):
                value = attr(node, name, 1.0)
                if value != want and not (name == "beta" and len(node.input) < 3):
                    raise UnsupportedOpError(where, f"Gemm with {name}={value} is not supported",
                                             "export a plain linear layer (alpha = beta = 1)")
            if attr(node, "transA", 0):
                raise UnsupportedOpError(where, "Gemm with transA=1 is not supported",
                                         "the activation must be the first, untransposed operand")
        w_param = self.resolve_param(node.input[1], "weight")
        if w_param is None:
            raise UnsupportedOpError(where, f"weights {node.input[1]} are not a constant",
                                     "the second operand must be a (quantized) weight initializer")
        if w_param.spec is None:
            raise UnsupportedQuantizationError(
                where, f"weights {w_param.origin} are float (no Quant node on them)",
                "quantize the weights, e.g. QuantLinear(weight_quant=Int8WeightPerTensorFixedPoint); keep the weight "
                "Quant nodes (qonnx cleanup_model with preserve_qnt_ops=True, the default)")
        w = w_param.values
        if node.op_type == "Gemm" and attr(node, "transB", 0):
            w = w.T
        if w.ndim != 2:
            raise UnsupportedOpError(where, f"weights of shape {list(w.shape)} are not a matrix",
                                     "only dense layers (2-D weights) are supported")
        k, n = w.shape
        x_width = self.tensors[x_ir].shape[-1]
        if x_width != k:
            raise BadFileError(where, f"weights have {k} input features but the incoming activation has {x_width}",
                               "re-export the model")
        idx = len(self.ops)
        op_name = unique(identifier(node.name, f"dense{idx}") if node.name else f"dense{idx}", self.taken)
        w_name = self._add_tensor(f"{op_name}_w", (k, n), w_param.spec.fixed_type(), w, w_param.origin)
        layer = _Layer(node, x_ir, x_type, w, w_param.spec, op_name, w_name)
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            self.attach_bias(layer, node, node.input[2])
        return layer

    def attach_bias(self, layer: _Layer, node: onnx.NodeProto, name: str) -> None:
        where = node_where(node)
        if layer.bias is not None:
            raise UnsupportedOpError(where, "a second bias on one layer is not supported",
                                     "use a single bias per Gemm/MatMul")
        param = self.resolve_param(name, "bias")
        if param is None:
            raise UnsupportedOpError(where, f"bias {name} is not a constant",
                                     "only constant (quantized or float) biases are supported")
        n = layer.weight.shape[1]
        values = np.asarray(param.values)
        if values.size == 1:
            values = np.full(n, values.ravel()[0])
        if values.size != n or (values.ndim > 1 and values.shape[-1] != n):
            raise UnsupportedOpError(where, f"bias of shape {list(values.shape)} does not broadcast as a [{n}] vector",
                                     "use a per-output-feature bias")
        layer.bias = _Param(values.reshape(n), param.spec, param.origin)
        layer.bias_node = node

    def bias_codes(self, layer: _Layer) -> tuple[np.ndarray, FixedType] | None:
        """Bias codes and type at the accumulator's LSB (frac = x_frac + w_frac)."""
        if layer.bias is None:
            return None
        acc_frac = layer.x_type.frac + layer.w_spec.frac
        p = layer.bias
        if p.spec is None:  # float bias: must sit exactly on the accumulator grid
            scaled = np.ldexp(np.asarray(p.values, dtype=np.float64), acc_frac)
            if not np.all(np.isfinite(scaled)) or not np.all(scaled == np.round(scaled)):
                raise UnsupportedQuantizationError(
                    node_where(layer.bias_node),
                    f"float bias {p.origin} is not exactly representable at the accumulator LSB 2^{-acc_frac} "
                    "(input scale x weight scale)",
                    "quantize the bias, e.g. QuantLinear(bias_quant=Int32Bias)")
            if np.abs(scaled).max(initial=0) >= 2**31:
                raise UnsupportedQuantizationError(node_where(layer.bias_node),
                                                   f"float bias {p.origin} does not fit 32 bits at the accumulator "
                                                   f"LSB 2^{-acc_frac}", "quantize the bias with Int32Bias")
            return scaled.astype(np.int64), FixedType(32, acc_frac, True)
        spec = p.spec
        shift = acc_frac - spec.frac
        codes = p.values.astype(np.int64)
        width = spec.width
        if shift > 0:  # coarser than the accumulator: exact left shift
            if shift > MAX_BIAS_BITS and np.any(codes):  # beyond 32 bits (and beyond what int64 can shift)
                raise UnsupportedQuantizationError(spec.where, f"bias codes at the accumulator LSB 2^{-acc_frac} "
                                                   "do not fit 32 bits", "use a smaller bias or Int32Bias")
            codes = codes << np.int64(min(shift, 62))
            width = spec.width + shift
        elif shift < 0:  # finer: only if every code is a multiple of the step (2**63 and more: only 0 is)
            off_grid = np.any(codes) if -shift > 62 else np.any(codes % (np.int64(1) << np.int64(-shift)) != 0)
            step = np.int64(1) << np.int64(min(-shift, 62))
            if off_grid:
                raise UnsupportedQuantizationError(
                    spec.where, f"bias scale 2^{-spec.frac} is finer than the accumulator LSB 2^{-acc_frac} "
                    "(input scale x weight scale)",
                    "quantize the bias with Int32Bias / Int16Bias (scale = input scale x weight scale)")
            codes = codes // step
        if width > MAX_BIAS_BITS:
            if np.abs(codes).max(initial=0) >= 2**31:
                raise UnsupportedQuantizationError(spec.where, f"bias codes at the accumulator LSB 2^{-acc_frac} "
                                                   "do not fit 32 bits", "use a smaller bias or Int32Bias")
            width = MAX_BIAS_BITS
        return codes, FixedType(width, acc_frac, spec.signed, narrow=spec.narrow and shift == 0)

    def finish_layer(self, layer: _Layer, out_onnx: str, next_node: onnx.NodeProto | None) -> tuple[str, FixedType]:
        """Emit the dense op for ``layer``; its output type comes from the Quant/Relu chain that followed it."""
        lwhere = node_where(layer.node)
        quants = [spec for kind, _, spec in layer.chain if kind == "quant" and spec is not None]
        relu = any(kind == "relu" for kind, _, _ in layer.chain)
        if not quants:
            if next_node is not None:
                raise UnsupportedQuantizationError(
                    node_where(next_node),
                    f"its input {next_node.input[0]} is a float tensor: there is no Quant node between "
                    f"{lwhere} and it",
                    "add an activation quantizer between the layers (QuantReLU / QuantIdentity with a fixed-point "
                    "act_quant, e.g. Uint8ActPerTensorFixedPoint)")
            raise UnsupportedQuantizationError(
                lwhere, "the graph output is a float accumulator: there is no Quant node after the last layer",
                "add an output quantizer, e.g. QuantIdentity(act_quant=Int8ActPerTensorFixedPoint) after the last "
                "QuantLinear")
        y_type = self.merge_quants(quants, relu)
        k, n = layer.weight.shape
        inputs = [layer.x_ir, layer.w_name]
        bias = self.bias_codes(layer)
        if bias is not None:
            codes, b_type = bias
            inputs.append(self._add_tensor(f"{layer.op_name}_b", (n,), b_type, codes, layer.bias.origin))
        self._check_float32_exact(layer, bias, y_type.frac)
        y_ir = self._add_tensor(f"{layer.op_name}_out", (n,), y_type, None, out_onnx)
        self.ops.append(Op(layer.op_name, "dense", inputs, [y_ir], {"activation": "relu" if relu else "linear"}))
        return y_ir, y_type

    def merge_quants(self, quants: list[QuantSpec], relu: bool) -> FixedType:
        """One type equal to a chain of same-scale Quants (and Relus, which commute with them)."""
        first = quants[0]
        rounding = self.act_rounding(first)
        for q in quants[1:]:
            if q.frac != first.frac:
                raise UnsupportedQuantizationError(
                    q.where, f"re-quantizes an activation of scale 2^{-first.frac} to scale 2^{-q.frac} "
                    "(double rounding)", "use a single activation quantizer per layer output")
        if relu:
            chosen = min(quants, key=lambda q: q.hi)  # relu: codes in [0, min hi]
        else:
            lo, hi = max(q.lo for q in quants), min(q.hi for q in quants)
            matching = [q for q in quants if (q.lo, q.hi) == (lo, hi)]
            if not matching:
                raise UnsupportedQuantizationError(
                    quants[-1].where, f"chained Quants clamp to [{lo}, {hi}], which no single fixed-point type has",
                    "use a single activation quantizer per layer output")
            chosen = matching[0]
        if chosen.width > MAX_ACT_BITS:
            raise UnsupportedQuantizationError(chosen.where, f"activation bit width {chosen.width} is above "
                                               f"{MAX_ACT_BITS}", "quantize activations to at most 16 bits")
        return chosen.fixed_type(rounding)

    def _check_float32_exact(self, layer: _Layer, bias: tuple[np.ndarray, FixedType] | None, y_frac: int) -> None:
        """Is the float32 reference (QONNX execute_onnx / Brevitas) exact for this layer?

        Every product and partial sum is an integer multiple of the accumulator LSB, so float32 arithmetic is
        exact in any summation order while ``max|x| * max_n sum_k |W[k, n]| + max|b|`` stays below 2**24 LSBs
        and no value overflows or becomes denormal (every scale within 2**+-100).
        Beyond it the reference itself may round; nn2aie (and the AIE) compute exactly.
        """
        acc_frac = layer.x_type.frac + layer.w_spec.frac
        if not all(-FLOAT32_FRAC_RANGE <= f <= FLOAT32_FRAC_RANGE
                   for f in (layer.x_type.frac, layer.w_spec.frac, acc_frac, y_frac)):
            self.reference_exact = False
        xt = layer.x_type
        xmax = max(abs(xt.min_code), abs(xt.max_code))
        bound = float(np.abs(layer.weight).sum(axis=0).max(initial=0)) * xmax
        if bias is not None:
            bound += float(np.abs(bias[0]).max(initial=0))
        if bound >= FLOAT32_EXACT:
            self.reference_exact = False

    # -- walk ----------------------------------------------------------------------------------------------
    def run(self) -> Graph:
        self._fold_constants()
        self._check_op_types()
        ins = real_inputs(self.g)
        if len(ins) != 1 or len(self.g.output) != 1:
            raise UnsupportedOpError(f"graph {self.g.name or '?'}",
                                     f"{len(ins)} inputs and {len(self.g.output)} outputs; only single-input, "
                                     "single-output MLPs are supported", "export one network per model")
        in_vi, out_name = ins[0], self.g.output[0].name
        shape = value_shape(in_vi)
        self._check_io(in_vi, self.g.output[0], shape)
        t = in_vi.name
        input_quants: list[QuantSpec] = []
        layer: _Layer | None = None
        x_ir = x_type = None
        while True:
            users = self.consumers.get(t, [])
            if t == out_name:
                if users:
                    raise UnsupportedOpError(f"tensor {t}", "the graph output also feeds other nodes",
                                             "only a single chain of layers is supported")
                break
            if not users:
                raise BadFileError(f"tensor {t}", "is neither consumed nor the graph output", "re-export the model")
            if len(users) > 1:
                names = ", ".join(node_where(u) for u in users)
                raise UnsupportedOpError(f"tensor {t}", f"feeds {len(users)} nodes ({names}); only a single chain "
                                         "of layers is supported", "export a sequential MLP")
            node = users[0]
            where = node_where(node)
            op = node.op_type
            if op in PASS_THROUGH_OPS:
                t = node.output[0]
                continue
            if _is_quant(node) or op == "Relu":
                if node.input[0] != t:
                    raise UnsupportedOpError(where, f"activation {t} is used as a quantization parameter",
                                             SUPPORTED_TEXT)
                if op == "Relu":
                    if layer is None:
                        raise UnsupportedOpError(where, "Relu on the network input (before the first Gemm/MatMul) "
                                                 "is not supported", "apply the Relu after a dense layer")
                    layer.chain.append(("relu", node, None))
                else:
                    if layer is not None:
                        act_shape = (1, int(layer.weight.shape[1]))
                    else:
                        act_shape = (1, shape[-1]) if shape and isinstance(shape[-1], int) else None
                    spec = self.parse_quant(node, "activation" if layer is not None else "input", act_shape)
                    if layer is None:
                        input_quants.append(spec)
                    else:
                        layer.chain.append(("quant", node, spec))
                t = node.output[0]
                continue
            if op in ("Gemm", "MatMul"):
                if node.input[0] != t:
                    raise UnsupportedOpError(where, "the activation is the second operand",
                                             "the activation must be the first operand (x @ W)")
                if layer is not None:
                    x_ir, x_type = self.finish_layer(layer, t, node)
                elif x_ir is None:
                    if not input_quants:
                        raise UnsupportedQuantizationError(
                            where, f"its input {t} is a float tensor: the network input is not quantized",
                            "quantize the input, e.g. QuantIdentity(act_quant=Int8ActPerTensorFixedPoint) as the "
                            "first module")
                    x_type = self.merge_quants(input_quants, relu=False)
                    k = shape[-1] if shape and isinstance(shape[-1], int) else None
                    if k is None:
                        k = self._weight_rows(node)
                        for q in input_quants:  # their parameters could not be checked against [1, K] before
                            self.parse_quant(q.node, "input", (1, int(k)))
                    x_ir = self._add_tensor(identifier(in_vi.name, "input"), (int(k),), x_type, None, in_vi.name)
                    self.inputs = [x_ir]
                layer = self.start_layer(node, x_ir, x_type)
                t = node.output[0]
                continue
            if op == "Add":
                if layer is None or layer.chain:
                    raise UnsupportedOpError(where, "Add is only supported as the bias of a MatMul/Gemm, directly "
                                             "after it", SUPPORTED_TEXT)
                if node.input[0] == node.input[1]:
                    raise UnsupportedOpError(where, "adds a tensor to itself", SUPPORTED_TEXT)
                other = node.input[1] if node.input[0] == t else node.input[0]
                self.attach_bias(layer, node, other)
                t = node.output[0]
                continue
            raise UnsupportedOpError(where, f"operator {op} is not supported on the activation path", SUPPORTED_TEXT)
        if layer is None:
            raise UnsupportedOpError(f"graph {self.g.name or '?'}", "no Gemm/MatMul layer found",
                                     "export an MLP built from QuantLinear layers")
        y_ir, _ = self.finish_layer(layer, t, None)
        out_shape = value_shape(self.g.output[0])
        n_out = int(layer.weight.shape[1])
        if out_shape is not None and isinstance(out_shape[-1], int) and out_shape[-1] != n_out:
            raise BadFileError(f"graph output {out_name}", f"is declared with {out_shape[-1]} features but the last "
                               f"layer {node_where(layer.node)} computes {n_out}", "re-export the model")
        name = identifier(self.g.name or (pathlib.Path(self.file).stem if self.file else ""), "qonnx_model")
        source = {"framework": "qonnx", "file": self.file, "reference_exact": "yes" if self.reference_exact else "no"}
        if self.proto.producer_name:
            source["producer"] = f"{self.proto.producer_name} {self.proto.producer_version}".strip()
        graph = Graph(name, self.tensors, self.ops, self.inputs, [y_ir], source)
        check_inference(self.proto)
        graph.verify()
        return graph

    def _check_io(self, in_vi: onnx.ValueInfoProto, out_vi: onnx.ValueInfoProto, shape) -> None:
        """Float32 input and output; input shape [batch, K] with a positive batch the reference can run."""
        for vi, role in ((in_vi, "graph input"), (out_vi, "graph output")):
            code = vi.type.tensor_type.elem_type
            if code != onnx.TensorProto.FLOAT:
                raise UnsupportedQuantizationError(f"{role} {vi.name}", f"has type {elem_type_name(code)}, expected "
                                                   "float", "export the model with float32 inputs and outputs")
        out_shape = value_shape(out_vi)
        if out_shape is not None and (len(out_shape) != 2 or any(isinstance(d, int) and d < 1 for d in out_shape)):
            raise BadFileError(f"graph output {out_vi.name}", f"is declared with shape {list(out_shape)}, expected "
                               "[batch, N] with positive dimensions", "re-export the model")
        if shape is None:
            return
        if len(shape) != 2:
            raise UnsupportedOpError(f"graph input {in_vi.name}", f"has shape {list(shape)}, expected [batch, K]",
                                     "export the MLP with a 2-D input [batch, features]")
        for dim, what in zip(shape, ("batch", "feature"), strict=True):
            if isinstance(dim, int) and dim < 1:
                raise BadFileError(f"graph input {in_vi.name}", f"has a {what} dimension {dim} (zero-size input)",
                                   "export with positive (or dynamic) dimensions")
        if isinstance(shape[0], int) and shape[0] > MAX_FIXED_BATCH:
            raise UnsupportedOpError(f"graph input {in_vi.name}", f"has a fixed batch dimension {shape[0]}: the "
                                     f"reference check runs batches of that size (at most {MAX_FIXED_BATCH} "
                                     "supported)", "export with batch size 1 or a dynamic batch dimension")

    def _weight_rows(self, node: onnx.NodeProto) -> int:
        p = self.resolve_param(node.input[1], "weight")
        if p is None or p.values.ndim != 2:
            raise UnsupportedOpError(node_where(node), "cannot determine the number of input features",
                                     "export with a static input shape [batch, features]")
        return int(p.values.shape[1] if node.op_type == "Gemm" and attr(node, "transB", 0) else p.values.shape[0])


def load_qonnx(model: ModelLike) -> Graph:
    """Import a QONNX MLP (Brevitas ``export_qonnx`` with fixed-point quantizers) as a logical graph."""
    proto, file = load_onnx(model)
    return _QonnxImporter(proto, file).run()


# ----------------------------------------------------------------------------------------------------------
# reference execution
# ----------------------------------------------------------------------------------------------------------
def _prepare_for_batch(proto: onnx.ModelProto, batch: int, features: int | None = None):
    """A qonnx ModelWrapper of ``proto`` with a static batch dimension ``batch`` (qonnx cleanup, same semantics).

    The input is declared ``[batch, features]`` (a symbolic or missing feature dimension would make qonnx
    allocate a zero-width input) and an output without a shape ``[batch, n]`` (qonnx's ChangeBatchSize edits
    dimension 0 of both)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    model = onnx.ModelProto()
    model.CopyFrom(without_unused_opsets(proto))
    dense = initializers(model.graph)  # qonnx does not read sparse initializers: store them densely
    for sp in model.graph.sparse_initializer:
        model.graph.initializer.append(numpy_helper.from_array(dense[sp.values.name], sp.values.name))
    del model.graph.sparse_initializer[:]
    inits = {i.name for i in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)  # the real input first: ChangeBatchSize edits graph.input[0]
    if features is not None and model.graph.input:
        _set_shape(model.graph.input[0], [batch, int(features)])
    out = model.graph.output[0] if model.graph.output else None
    if out is not None and len(out.type.tensor_type.shape.dim) == 0:
        _set_shape(out, [batch, "n"])
    return cleanup_model(ModelWrapper(model), override_inpsize=batch)


def _set_shape(vi: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    tt = vi.type.tensor_type
    tt.ClearField("shape")
    tt.shape.SetInParent()
    for d in dims:
        if isinstance(d, str):
            tt.shape.dim.add().dim_param = d
        else:
            tt.shape.dim.add().dim_value = d


def run_reference(model: ModelLike, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Run the QONNX model with ``qonnx.core.onnx_exec.execute_onnx`` on float inputs ``x`` of shape [n, K].

    The exported batch dimension (usually 1) is replaced by a static batch of ``min(n, chunk)`` rows via
    qonnx ``cleanup_model(override_inpsize=...)``; the inputs run in chunks, the last one zero-padded (rows are
    independent in an MLP). Inputs are cast to float32 first, as QONNX and Brevitas compute in float32: quantize
    the same float32 values on the host. Returns the float32 output [n, N] exactly as QONNX computes it.
    """
    try:
        from qonnx.core.onnx_exec import execute_onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UnsupportedOpError("python package qonnx", f"cannot import qonnx: {exc}",
                                 "install the optional dependency: pip install 'nn2aie[qonnx]'") from exc
    proto, _ = load_onnx(model)
    data = np.asarray(x, dtype=np.float32)
    single = data.ndim == 1
    if single:
        data = data[None, :]
    n = data.shape[0]
    if n == 0:
        raise BadFileError("run_reference", "no input rows", "pass an array of shape [n, features] with n >= 1")
    batch = max(1, min(n, int(chunk)))
    prepared = _prepare_for_batch(proto, batch, data.shape[1])
    iname, oname = prepared.graph.input[0].name, prepared.graph.output[0].name
    outs = []
    for start in range(0, n, batch):
        rows = data[start:start + batch]
        if rows.shape[0] < batch:
            pad = np.zeros((batch - rows.shape[0],) + rows.shape[1:], dtype=np.float32)
            rows = np.concatenate([rows, pad])
        y = execute_onnx(prepared, {iname: rows})[oname]
        outs.append(np.asarray(y)[: min(batch, n - start)])
    out = np.concatenate(outs).astype(np.float32)
    return out[0] if single else out
