"""QONNX frontend: models exported by Brevitas ``export_qonnx`` with fixed-point (power-of-two) quantizers.

A QONNX ``Quant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode)`` quantizes *and dequantizes*: its
output is the float ``code * scale``. With a per-tensor power-of-two scale ``2**-f`` and zero point 0 a Quant
output is therefore a *quantized value* whose codes are exact integers; every other node computes in float32 (qonnx
runs standard nodes with onnxruntime, one node at a time). The graph may be a DAG (fan-out, several inputs and
outputs); ``qonnx_dag.QonnxParser`` walks it in a topological order and builds the logical ops the ONNX QDQ
frontend builds (``onnx_qdq``, docs/frontends.md "QONNX" has the table):

- ``Gemm | MatMul`` with ``Quant(initializer)`` weights (through Transpose / Identity) ``[-> Add bias] [-> Relu] ->
  Quant``: ``dense`` (a rank-3 ``MatMul`` is a dense per row); later same-scale ``Relu`` / ``Quant`` nodes that
  only narrow the range fold into it, as Brevitas' ``QuantReLU`` after ``QuantLinear`` does;
- ``Add / Sub / Mul / Max / Min`` (two quantized values of any scales, or a value and a constant), ``Relu``,
  ``Clip``, ``LeakyRelu`` followed by a Quant: ``eltwise``;
- ``Concat``, ``Split``, ``Slice``, ``Transpose``, ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``,
  ``Identity``, eval-mode ``Dropout``: views; ``ReduceMean / ReduceSum / ReduceMax``, ``GlobalAveragePool /
  GlobalMaxPool``: ``reduce`` (the mean divides the float32 sum by float32(n), as onnxruntime does);
- ``Quant`` of a quantized value: nothing when every value already is a code of its type, else an eltwise
  ``identity`` (one requantisation).

Semantics of QONNX ``Quant`` (qonnx ``int_quant``): ``q = round(clip(x / scale + zeropt, lo, hi))``, output
``(q - zeropt) * scale``; with integer bounds clip-then-round equals round-then-clip, which is what the logical IR
does (round with the mapped mode, then saturate). ``x / 2**-f`` is exact in float32 (scales within 2**+-100).

Exactness of the reference: the float32 result of every op is exact while it (and every partial sum) stays below
2**24 LSBs of the exact result; ``load_qonnx`` checks the sufficient bounds of the QDQ frontend per op and records
``graph.source['reference_exact']`` = ``'yes'`` / ``'no'``.

``run_reference`` executes the model with ``qonnx.core.onnx_exec.execute_onnx`` (the source framework's own
execution) on a batch of float inputs of any rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from nn2aie.errors import BadFileError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.onnx_common import (
    ModelLike,
    attr,
    initializers,
    load_onnx,
    node_where,
    real_inputs,
    without_unused_opsets,
)
from nn2aie.ir.logical import Graph
from nn2aie.ir.types import FixedType, ScaledType
from nn2aie.numerics import QONNX_TO_IR_ROUNDING

QUANT_OP_TYPES = ("Quant", "IntQuant")
BIPOLAR = "BipolarQuant"  # x >= 0 ? +scale : -scale (qonnx binary_quant)
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")  # where qonnx finds its Quant implementation
STANDARD_DOMAINS = ("", "ai.onnx")
QUANT_PARAM_DTYPES = (np.dtype(np.float32),)  # QONNX specifies float32 (float64 would turn qonnx's outputs float64)
MAX_FIXED_BATCH = 1 << 20
PASS_THROUGH_OPS = ("Identity", "Dropout")
SUPPORTED_TEXT = ("supported: Quant (power-of-two scale and zero point 0; float scales, zero points and per-channel "
                  "weight scales on dense layers) and BipolarQuant on the inputs, weights, biases, constants and "
                  "activations; Gemm / MatMul (+ Add bias, + BatchNormalization / Mul / Div / Add / Sub by constants "
                  "before the quantizer); Add / Sub / Mul / Max / Min; Relu / Clip / "
                  "LeakyRelu; Concat / Split / Slice / Transpose / Reshape / Flatten / Squeeze / Unsqueeze / Identity "
                  "/ Dropout; ReduceMean / ReduceSum / ReduceMax / GlobalAveragePool / GlobalMaxPool; constant "
                  "sub-graphs (docs/frontends.md, QONNX)")
FIXED_POINT_HINT = ("export with brevitas.quant.fixed_point quantizers, e.g. Int8WeightPerTensorFixedPoint / "
                    "Int8ActPerTensorFixedPoint")

# QONNX rounding_mode -> rounding of the logical IR (ap_fixed names, plus CEIL and UP which ap_fixed lacks)
ROUNDING_TO_AP: dict[str, str] = QONNX_TO_IR_ROUNDING
MAX_ACT_BITS = 16
MAX_WEIGHT_BITS = 16
MAX_BIAS_BITS = 32
_ROLE_BITS = {"bias": MAX_BIAS_BITS, "constant": MAX_BIAS_BITS, "weight": MAX_WEIGHT_BITS}

# ----------------------------------------------------------------------------------------------------------
# parsed Quant parameters
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantSpec:
    """A Quant node's parameters. Fixed point: ``scale = 2**-frac``, zero point 0, ``scale`` empty. Otherwise
    (``scaled``) ``scale`` holds the float32 scale(s) -- one, or for weights one per output channel in the order
    of ``scale_axis`` of the quantized constant -- and ``zero_point`` the integer zero point; ``frac`` is 0 and
    means nothing."""

    node: onnx.NodeProto
    width: int
    frac: int
    signed: bool
    narrow: bool
    rounding_mode: str
    scale: tuple[float, ...] = ()
    zero_point: int = 0
    scale_array: np.ndarray | None = field(default=None, compare=False, hash=False)  # as given (broadcastable)
    bipolar: bool = False  # a BipolarQuant: codes -1 and +1 only (2-bit narrow signed container)

    @property
    def scaled(self) -> bool:
        return bool(self.scale)

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

    def ir_type(self, rounding: str = "RND_CONV", channel_scales: tuple[float, ...] | None = None
                ) -> FixedType | ScaledType:
        """The IR type of the codes: fixed point, or scaled (``channel_scales``: the weights' per-channel scales
        in output-channel order, when they differ)."""
        if not self.scaled:
            return self.fixed_type(rounding)
        return ScaledType(self.width, self.signed, channel_scales or self.scale, (self.zero_point,), rounding,
                          "SAT", self.narrow)


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
    """Integer codes QONNX ``Quant`` gives a constant: round(clip(x / scale + zeropt)), exactly (power-of-two
    scale), or with a float scale in float32 as qonnx computes it (IEEE division and addition: the same on every
    machine)."""
    if spec.scaled:
        v = np.asarray(values, dtype=np.float32) / spec.scale_array.astype(np.float32) + np.float32(spec.zero_point)
        return round_codes(np.clip(v.astype(np.float64), spec.lo, spec.hi), spec.rounding_mode).astype(np.int64)
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
    scales: np.ndarray | None = None  # a scaled Quant's scale per element of ``values`` (same transposes)


def _is_quant(node: onnx.NodeProto) -> bool:
    return node.op_type in QUANT_OP_TYPES


def _is_quantizer(node: onnx.NodeProto) -> bool:
    """A Quant or a BipolarQuant (the quantizers a constant may sit behind)."""
    return node.op_type in QUANT_OP_TYPES or node.op_type == BIPOLAR


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


# ----------------------------------------------------------------------------------------------------------
# constants and Quant parameters of a model (mixed into the graph walk, qonnx_dag.QonnxParser)
# ----------------------------------------------------------------------------------------------------------
def check_pass_through(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> None:
    """Identity, or an inference-mode Dropout: a constant scalar ratio and no (or a constant false)
    training_mode, so that the output equals the input (and its mask output, if any, is not used)."""
    extra = [i for i in node.input[1:] if i]
    if node.op_type == "Identity" and not extra:
        return
    if node.op_type == "Dropout":
        ratio = consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        training = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        ratio_ok = len(node.input) < 2 or not node.input[1] or (ratio is not None and np.size(ratio) == 1)
        training_ok = len(node.input) < 3 or not node.input[2] or (
            training is not None and np.size(training) == 1 and not np.asarray(training).reshape(-1)[0])
        if ratio_ok and training_ok:
            return
    raise UnsupportedOpError(node_where(node), f"{node.op_type} with inputs {list(node.input)} is not a "
                             "pass-through (Dropout needs a constant scalar ratio and training_mode off)",
                             "export the model in eval mode")


def check_quant_arity(node: onnx.NodeProto) -> None:
    if len(node.input) != 4:
        raise BadFileError(node_where(node), f"Quant has {len(node.input)} inputs, expected 4 (x, scale, zeropt, "
                           "bitwidth)", "re-export the model with Brevitas export_qonnx")


class QonnxParams:
    """Constants, pass-throughs and Quant parameters; needs ``nodes``, ``consts`` and ``producer``."""

    nodes: list[onnx.NodeProto]
    consts: dict[str, np.ndarray]
    producer: dict[str, onnx.NodeProto]

    def fold_constants(self) -> None:
        """Evaluate standard-domain nodes whose inputs are all constant (Transpose/Reshape/Cast of weights...)."""
        from onnx.reference import ReferenceEvaluator

        for node in self.nodes:
            if _is_quantizer(node) or node.domain not in STANDARD_DOMAINS or node.op_type == "Constant":
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

    def parse_quant(self, node: onnx.NodeProto, role: str, shape: tuple[int, ...] | None = None) -> QuantSpec:
        """Parameters of a per-tensor power-of-two Quant; ``shape`` is the quantized tensor's shape (a batch-1
        activation ``(1, n)``, or a constant's shape) that scale, zero point and bit width must broadcast to."""
        where = node_where(node)
        check_quant_arity(node)
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
        if not np.all(np.isfinite(flat)) or np.any(flat <= 0):
            raise UnsupportedQuantizationError(where, "a scale is not a positive finite number",
                                               "re-export with positive quantizer scales")
        per_channel = flat.size > 1 and not np.all(flat == flat[0])
        if per_channel and role not in ("weight", "bias"):
            raise UnsupportedQuantizationError(
                where, f"per-channel scale ({flat.size} values, shape {list(scale.shape)}) on an {role} is not "
                "supported (only weights and biases may have one scale per output channel)",
                "quantize activations per tensor")
        zp = np.asarray(zeropt, dtype=np.float64).ravel()
        if np.any(zp != zp[0]) or not float(zp[0]).is_integer():
            raise UnsupportedQuantizationError(where, f"zero point {zp.tolist()[:4]} is not one integer",
                                               "use per-tensor integer zero points")
        if zp[0] != 0 and role in ("weight", "bias", "constant"):
            raise UnsupportedQuantizationError(
                where, f"zero point {zp[0]:.6g} on a {role} is not zero (asymmetric {role}s are not supported)",
                f"quantize the {role} symmetrically (zero point 0)")
        exponent = None if per_channel or zp[0] != 0 else _power_of_two_exponent(float(flat[0]))
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
        limit = _ROLE_BITS.get(role, MAX_ACT_BITS)
        if width > limit:
            raise UnsupportedQuantizationError(
                where, f"{role} bit width {width} is above {limit}",
                f"quantize {role}s to at most {limit} bits (AIE-ML kernels use int8/int16 operands)")
        if width < (2 if signed else 1):
            raise UnsupportedQuantizationError(where, f"{'signed ' if signed else ''}bit width {width} is too small "
                                               "(1-bit signed Quant is bipolar in QONNX)",
                                               "use at least 2 bits for signed values")
        if exponent is not None:
            return QuantSpec(node, width, -exponent, signed, narrow, mode)
        if role == "input" and width > 16:
            raise UnsupportedQuantizationError(where, f"input bit width {width} is above 16",
                                               "quantize the input to at most 16 bits")
        values = tuple(float(v) for v in (flat if per_channel else flat[:1]))
        return QuantSpec(node, width, 0, signed, narrow, mode, values, int(zp[0]),
                         np.asarray(scale, dtype=np.float32))

    def parse_bipolar(self, node: onnx.NodeProto) -> QuantSpec:
        """A BipolarQuant(x, scale): codes +-1 of a 2-bit narrow signed container, scale a power of two."""
        where = node_where(node)
        if len(node.input) != 2 or len(node.output) != 1:
            raise BadFileError(where, f"BipolarQuant has {len(node.input)} inputs, expected 2 (x, scale)",
                               "re-export the model with Brevitas export_qonnx")
        scale = self._const(node.input[1])
        if scale is None:
            raise UnsupportedQuantizationError(where, "the scale is not a constant",
                                               "export with fixed (eval-mode) quantization parameters")
        flat = np.asarray(scale, dtype=np.float64).ravel()
        if flat.size == 0 or np.any(flat != flat[0]):
            raise UnsupportedQuantizationError(where, f"bipolar scale {flat.tolist()[:4]} is not one value",
                                               "use one scale per tensor for a BipolarQuant")
        exponent = _power_of_two_exponent(float(flat[0]))
        if exponent is None:
            raise UnsupportedQuantizationError(where, f"bipolar scale {flat[0]:.6g} is not a power of two",
                                               "use scale 1 (FINN's binarized networks do) or a power of two")
        return QuantSpec(node, 2, -exponent, True, True, "ROUND", bipolar=True)

    def resolve_param(self, name: str, role: str) -> _Param | None:
        """Constant operand ``name``: Quant(constant) codes (through Identity/Transpose) or a float constant."""
        perms: list[tuple[onnx.NodeProto, list[int] | None]] = []
        t = name
        while True:
            if t in self.consts:
                values = self._numeric(self.consts[t], t, role)
                spec = None
                origin = t
                scales = None
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
            if node.op_type == BIPOLAR:
                x = self._const(node.input[0])
                if x is None:
                    return None
                x = self._numeric(x, node.input[0], role)
                spec = self.parse_bipolar(node)
                values = np.where(x >= np.float32(0), 1, -1).astype(np.int64)  # NaN: -1, as qonnx
                origin, scales = node.input[0], None
                break
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
                scales = np.broadcast_to(spec.scale_array, x.shape) if spec.scaled else None
                break
            return None
        for node, perm in reversed(perms):
            try:
                values = np.transpose(values, perm) if perm is not None else np.transpose(values)
                if scales is not None:
                    scales = np.transpose(scales, perm) if perm is not None else np.transpose(scales)
            except ValueError as exc:
                raise BadFileError(node_where(node), f"perm {perm} does not fit the {role} of shape "
                                   f"{list(np.shape(values))} ({exc})", "re-export the model") from None
        return _Param(np.asarray(values), spec, origin, scales)

    @staticmethod
    def _numeric(values: np.ndarray, name: str, role: str) -> np.ndarray:
        """Weights and biases are float32, like the activations (QONNX's Gemm/MatMul/Add and its Quant outputs
        follow their operands' type: another type would make the reference fail or compute in float64)."""
        values = np.asarray(values)
        if values.dtype != np.float32:
            raise UnsupportedQuantizationError(f"tensor {name}", f"the {role} has type {values.dtype}, expected "
                                               "float32", "store weights and biases as float32 tensors")
        return values

    @staticmethod
    def bias_at(p: _Param, acc_frac: int, user: onnx.NodeProto) -> tuple[np.ndarray, FixedType]:
        """Bias codes and type at the accumulator's LSB ``2**-acc_frac`` (frac = x_frac + w_frac), exactly;
        ``user`` is the node that adds the bias (Gemm or Add)."""
        if p.spec is None:  # float bias: must sit exactly on the accumulator grid
            scaled = np.ldexp(np.asarray(p.values, dtype=np.float64), acc_frac)
            if not np.all(np.isfinite(scaled)) or not np.all(scaled == np.round(scaled)):
                raise UnsupportedQuantizationError(
                    node_where(user),
                    f"float bias {p.origin} is not exactly representable at the accumulator LSB 2^{-acc_frac} "
                    "(input scale x weight scale)",
                    "quantize the bias, e.g. QuantLinear(bias_quant=Int32Bias)")
            if np.abs(scaled).max(initial=0) >= 2**31:
                raise UnsupportedQuantizationError(node_where(user),
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


def load_qonnx(model: ModelLike, input_types: dict[str, FixedType] | None = None) -> Graph:
    """Import a QONNX model (Brevitas ``export_qonnx``; a DAG of the ops above) as a verified logical graph; typed
    errors naming the ONNX node otherwise. ``input_types``: types for float graph inputs read without a quantizer
    (frontends/loader.py)."""
    from nn2aie.frontends.qonnx_dag import QonnxParser  # the graph walk builds on this module

    proto, file = load_onnx(model)
    parser = QonnxParser(proto, file)
    parser.user_input_types = dict(input_types or {})
    return parser.parse()


# ----------------------------------------------------------------------------------------------------------
# reference execution
# ----------------------------------------------------------------------------------------------------------
def _prepare_for_batch(proto: onnx.ModelProto, batch: int, event_shape: tuple[int, ...] | list[tuple[int, ...]]):
    """A qonnx ModelWrapper of ``proto`` with a static batch dimension ``batch`` (qonnx cleanup, same semantics).

    The input is declared ``[batch, *event_shape]`` (several inputs: one event shape each, in order; a symbolic
    or missing dimension would make qonnx allocate a zero-size input), every declared output gets the batch
    ``batch`` (an output without a shape is declared ``[batch, n]``), and a Reshape of an activation with a
    constant target gets ``batch`` as its first entry (the frontend only accepts targets that keep the batch axis
    first: 0, -1 or the exported batch), as qonnx's ChangeBatchSize does. Constant nodes become initializers, so
    that such targets are found."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    model = onnx.ModelProto()
    model.CopyFrom(without_unused_opsets(proto))
    g = model.graph
    dense = initializers(g)  # qonnx does not read sparse initializers: store them densely
    for sp in g.sparse_initializer:
        g.initializer.append(numpy_helper.from_array(dense[sp.values.name], sp.values.name))
    del g.sparse_initializer[:]
    consts = [n for n in g.node if n.op_type == "Constant" and n.domain in STANDARD_DOMAINS
              and len(n.output) == 1 and len(n.attribute) == 1 and n.attribute[0].name == "value"]
    for node in consts:
        g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t), node.output[0]))
        g.node.remove(node)
    inits = {i.name: i for i in g.initializer}
    keep = [vi for vi in g.input if vi.name not in inits]
    del g.input[:]
    g.input.extend(keep)  # the real inputs only
    shapes = event_shape if isinstance(event_shape, list) else [event_shape]
    for vi, shape in zip(g.input, shapes, strict=True):
        _set_shape(vi, [batch, *shape])
    for out in g.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) == 0:
            _set_shape(out, [batch, "n"])
        else:
            dims[0].Clear()
            dims[0].dim_value = batch
    del g.value_info[:]
    for node in g.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in inits \
                and node.input[0] not in inits:
            target = numpy_helper.to_array(inits[node.input[1]]).copy()
            if target.ndim == 1 and target.size and target[0] > 0:  # the exported (fixed) batch
                target[0] = batch
                name = f"{node.input[1]}_batch{batch}"
                if name not in inits:
                    inits[name] = numpy_helper.from_array(target, name)
                    g.initializer.append(inits[name])
                node.input[1] = name
    return cleanup_model(ModelWrapper(model))


def _set_shape(vi: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    tt = vi.type.tensor_type
    tt.ClearField("shape")
    tt.shape.SetInParent()
    for d in dims:
        if isinstance(d, str):
            tt.shape.dim.add().dim_param = d
        else:
            tt.shape.dim.add().dim_value = d


def run_reference(model: ModelLike, x, chunk: int = 4096):
    """Run the QONNX model with ``qonnx.core.onnx_exec.execute_onnx`` on float inputs ``x`` of shape [n, K] (or
    [n, d1, d2, ...]; a single 1-D row [K] gives a 1-D result). A model with several inputs takes a list of arrays
    in its input order; with several outputs it returns a list in its output order.

    The exported batch dimension (usually 1) is replaced by a static batch of ``min(n, chunk)`` rows (qonnx
    ``cleanup_model`` after setting the shapes, see ``_prepare_for_batch``); the inputs run in chunks, the last one
    zero-padded (events are independent: nn2aie refuses every op along the batch axis). Inputs are cast to float32
    first, as QONNX and Brevitas compute in float32: quantize the same float32 values on the host. Returns the
    float32 outputs [n, ...] exactly as QONNX computes them.
    """
    try:
        import qonnx.core.onnx_exec  # noqa: F401  (a clear error here rather than deep in _execute_chunks)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UnsupportedOpError("python package qonnx", f"cannot import qonnx: {exc}",
                                 "install the optional dependency: pip install 'nn2aie[qonnx]'") from exc
    proto, _ = load_onnx(model)
    n_inputs = len(real_inputs(proto.graph))
    xs = list(x) if isinstance(x, (list, tuple)) and n_inputs > 1 else [x]
    if len(xs) != n_inputs:
        raise UnsupportedOpError("model", f"run_reference got {len(xs)} input arrays for {n_inputs} inputs",
                                 "pass one array per model input, in order")
    data = [np.asarray(v, dtype=np.float32) for v in xs]
    single = data[0].ndim == 1
    if single:
        data = [d[None, :] for d in data]
    n = data[0].shape[0]
    if n == 0 or any(d.shape[0] != n for d in data):
        raise BadFileError("run_reference", "no input rows, or inputs with different row counts",
                           "pass arrays of shape [n, features] with the same n >= 1")
    ys, _ = _execute_chunks(proto, data, chunk)
    ys = [y[0] for y in ys] if single else ys
    return ys[0] if len(ys) == 1 else ys


def reference_tensors(model: ModelLike, x, names: Sequence[str], chunk: int = 4096) -> dict[str, np.ndarray]:
    """Like ``run_reference`` on rows ``x`` [n, ...] (one array per input, in order), but returns the float32 values
    QONNX computes for the named tensors of the model (e.g. Quant outputs: each layer's own input and output), so
    that a difference can be traced to the layer where it arises. The names are declared extra graph outputs of a
    copy."""
    proto, _ = load_onnx(model)
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    data = [np.asarray(v, dtype=np.float32) for v in xs]
    produced = {t for node in proto.graph.node for t in node.output}
    missing = [t for t in names if t not in produced]
    if missing:
        raise BadFileError("reference_tensors", f"no node of the model produces a tensor named {missing[0]!r}",
                           "name tensors the model's nodes produce (nn2aie tensors keep them as .origin)")
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    declared = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in dict.fromkeys(names) if t not in declared)
    ys, _ = _execute_chunks(probe, data, chunk)  # cleanup renames outputs to global_out_<i>: match by position
    found = dict(zip([o.name for o in probe.graph.output], ys, strict=True))
    return {t: found[t] for t in names}


def _execute_chunks(proto: onnx.ModelProto, data: list[np.ndarray], chunk: int
                    ) -> tuple[list[np.ndarray], list[str]]:
    """Run rows in static batches of ``min(n, chunk)`` (the last zero-padded); the graph outputs and their names."""
    from qonnx.core.onnx_exec import execute_onnx

    n = data[0].shape[0]
    batch = max(1, min(n, int(chunk)))
    prepared = _prepare_for_batch(proto, batch, [tuple(int(d) for d in v.shape[1:]) for v in data])
    names = [vi.name for vi in prepared.graph.input]
    onames = [o.name for o in prepared.graph.output]
    outs: list[list[np.ndarray]] = [[] for _ in onames]
    for start in range(0, n, batch):
        feed = {}
        for name, v in zip(names, data, strict=True):
            rows = v[start:start + batch]
            if rows.shape[0] < batch:
                rows = np.concatenate([rows, np.zeros((batch - rows.shape[0],) + rows.shape[1:], dtype=np.float32)])
            feed[name] = rows
        result = execute_onnx(prepared, feed)
        for i, oname in enumerate(onames):
            outs[i].append(np.asarray(result[oname])[: min(batch, n - start)])
    return [np.concatenate(o).astype(np.float32) for o in outs], onames
