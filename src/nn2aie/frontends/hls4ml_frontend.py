"""hls4ml ``ModelGraph`` (a DAG) -> nn2aie logical graph.

Used by the hls4ml backend plugin (``nn2aie.hls4ml_plugin``); it reads the converted model hls4ml holds (layers,
their precision objects and weight variables) and never imports hls4ml itself.

What hls4ml's C++ computes for ``Dense`` (``nnet::dense``, io_parallel) and how it maps onto one nn2aie dense op:

* every product and the bias are cast into ``accum_t`` and summed there; nn2aie's accumulator is exact, so the
  conversion requires ``accum_t`` to hold every partial sum exactly (checked from the real weight codes and the
  input type's range) and refuses otherwise;
* the sum is cast into the Dense ``result_t``; a following ReLU (a separate ``Activation`` layer) computes
  ``relu_t(max(dense_result, 0))``. nn2aie's dense op is ``requantize(relu(acc))`` (docs/numerics.md), so the two
  layers fold into one op when the Dense result is exact (output type: the ReLU's), or when it saturates and the
  ReLU type holds each of its non-negative values (output type: the Dense's; saturation commutes with ReLU),
  or when the two requantisations compose into one (``_compose_requantisations``: a Dense result that cannot
  overflow and truncates, then a coarser TRN/RND activation type, as HGQ2 writes them; or an activation type
  with the Dense result's fractional bits). Any other pair of requantisations is refused.

The model is a DAG: layers are read in hls4ml's (topological) order, a variable may feed several layers and the
model may have several outputs. What hls4ml's C++ (nnet_utils, io_parallel) computes for the other layers, and the
logical ops (docs/ops.md) that reproduce it exactly:

* ``Merge`` add / subtract / multiply / maximum / minimum: ``res = data1 OP data2`` with the exact ap_fixed result
  (max/min: the selected input) assigned to res_T -> one eltwise op. Average: ``(data1 + data2) * ap_ufixed<1,0>
  (0.5)``, both exact -> eltwise add into an exact internal type, then eltwise mul by the constant 1/2;
* ``Concatenate``: ``res[i] = data[j]``, an assignment into res_T per input -> an eltwise identity per input whose
  type differs, then concat;
* ``Reshape`` / Flatten: in io_parallel the Vitis backend makes it an in-place view (same array and type) -> reshape
  with the input's type. ``Transpose``: ``res[i] = data[idx]`` -> (identity if the types differ) + transpose;
* ``Activation`` relu / linear after a Dense whose only consumer it is: folded as below; otherwise (or after any
  other layer) eltwise relu / identity. Keras ``ReLU()`` (hls4ml's thresholded ReLU with theta 0) is relu.
  LeakyReLU: ``alpha * x`` with alpha in param_t, exact for a power-of-two slope param_t holds -> leaky_relu;
* ``GlobalPooling1D/2D`` Max: ``max`` converted to accum_t, then to res_T -> reduce max (+ identity when accum_t
  does not hold the input type). Average: partial sums in accum_t (required exact), ``y /= n`` (ap_fixed division of
  the codes at accum_t's fraction, truncated toward zero), then res_T -> reduce mean with ``divide: exact`` into
  accum_t's grid with TRN_ZERO rounding (exactly that quotient), then an eltwise identity into res_T.

Weights: hls4ml prints each weight as decimal text with as many decimals as its type has fractional bits and its
C++ casts the parsed double with the weight type's rounding and overflow modes. ``weight_codes`` reproduces that
from the very strings hls4ml writes (iterating the weight variable), so the codes equal what the C++ loads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import INPUT_PRE_CAST, cast_float, overflow_range, requantize
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType

SUPPORTED = ("Input, Dense (with bias or not), Activation relu / linear / LeakyReLU (power-of-two slope) / Keras "
             "ReLU(), merges Add / Subtract / Multiply / Maximum / Minimum / Average, Concatenate, Reshape, Flatten, "
             "Permute (Transpose), GlobalAveragePooling1D/2D, GlobalMaxPooling1D/2D, Conv1D / Conv2D / DepthwiseConv "
             "/ PointwiseConv (channels last, any padding and stride), MaxPooling1D/2D")
_INPUT_CLASSES = ("Input", "InputLayer")
_ACT_CLASSES = ("Activation", "ParametrizedActivation", "LeakyReLU", "ThresholdedReLU", "ReLU")
_SUPPORTED_CLASSES = (("Dense", "Merge", "Concatenate", "Reshape", "Flatten", "Transpose", "GlobalPooling1D",
                      "GlobalPooling2D", "FixedPointQuantizer", "BatchNormalization", "Pooling1D", "Pooling2D")
                      + _ACT_CLASSES)
_CONV_CLASSES = ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D", "DepthwiseConv1D", "DepthwiseConv2D")
_SUPPORTED_CLASSES = _SUPPORTED_CLASSES + _CONV_CLASSES
# hls4ml merge op -> eltwise op (Average: see _Converter._merge)
_MERGE_OPS = {"add": "add", "subtract": "sub", "multiply": "mul", "maximum": "max", "minimum": "min"}
_NEAREST = {
    "Conv1D": "use channels_last data, no dilation, and a wide (exact) accum type",
    "Conv2D": "use channels_last data, no dilation, and a wide (exact) accum type",
    "Activation": "use ReLU, LeakyReLU with a power-of-two slope or no activation; other activations are not "
                  "available on AIE-ML",
    "ParametrizedActivation": "use ReLU or LeakyReLU with a power-of-two slope (e.g. 0.125)",
    "Softmax": "drop the final softmax (take the logits) and apply it on the host",
    "BatchNormalization": "fold the batch normalisation into the preceding Linear layer before conversion",
    "Pooling1D": "use max pooling (or a global average pooling layer)",
    "Pooling2D": "use max pooling (or a global average pooling layer)",
    "Dot": "use Multiply followed by a Dense layer with a ones weight",
    "ApplyAlpha": "hls4ml makes this scale-and-shift layer of a BatchNormalization, a non-power-of-two scale or a "
                  "constant Add/Mul it could not fold: fold batch normalisation into the preceding layer, quantize "
                  "per tensor with power-of-two scales (e.g. Brevitas Int8WeightPerTensorFixedPoint)",
    "FixedPointQuantizer": "an HGQ2 quantizer kept as a layer: give its elements at least one bit and types within "
                           "16 bits on one grid (or build it per tensor: QuantizerConfigScope(place='datalane', "
                           "heterogeneous_axis=(), homogeneous_axis=None))",
}


def fixed_type(precision, where: str) -> FixedType:
    """nn2aie FixedType of an hls4ml precision object (FixedPrecisionType or IntegerPrecisionType)."""
    kind = type(precision).__name__
    if kind not in ("FixedPrecisionType", "IntegerPrecisionType"):
        raise UnsupportedQuantizationError(
            where, f"precision {precision} ({kind}) is not an ap_fixed / ap_int type",
            "give this tensor an ap_fixed<W,I> precision in the hls4ml config")
    if getattr(precision, "saturation_bits", 0):
        raise UnsupportedQuantizationError(
            where, f"precision {precision} uses {precision.saturation_bits} saturation bits",
            "use an ap_fixed type without the N (saturation bits) argument")
    return FixedType(width=int(precision.width), frac=int(precision.width - precision.integer),
                     signed=bool(precision.signed), rounding=str(precision.rounding_mode),
                     overflow=str(precision.saturation_mode))


# float32 has a 24-bit significand: 25 fractional bits beyond the quantizer's make every float32 input that can
# reach a rounding tie exact in the Input type (see exact_input_type)
FLOAT32_GUARD_BITS = 25
# widest Input type the host cast handles: cast_float clips a saturating type at 2**(width + 1) codes and works in
# int64 on a quarter-LSB grid
MAX_EXACT_INPUT_WIDTH = 58
_AP_ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")  # not QONNX's CEIL/UP
# roundings that commute with a shift by an even number of LSBs (a wrap of the cast before): the others look at
# the sign of the value, which a wrap can flip
_SHIFT_INVARIANT_ROUNDING = ("TRN", "RND", "RND_MIN_INF", "RND_CONV")


def exact_input_type(q: FixedType) -> FixedType | None:
    """An Input type P such that casting any float32 into P and then into the input quantizer's type ``q`` (what
    hls4ml's C++ does: Input layer, then the quantizer's linear Activation) equals casting it into ``q`` directly
    (what QONNX / Brevitas compute). None when ``q`` is too wide for it or has no such P: AP_SAT_ZERO, and AP_WRAP
    with a rounding that depends on the sign (TRN_ZERO, RND_ZERO, RND_INF), since any finite P either saturates
    or wraps the values beyond its range, and a wrap can flip their sign.

    P: signed, frac = q.frac + 25, one integer bit more than q, AP_TRN, AP_SAT when q saturates (AP_WRAP when
    q wraps). Why it is exact, with f = q.frac and x a float32:
    - |x| >= 2**-(f+2): x is a multiple of its ulp >= 2**-(f+2-23) = 2**-(f+25) (also for subnormals, whose ulp
      is 2**-149 <= that bound), so x is exact in P unless it overflows P: no rounding at all in the first cast;
    - |x| <  2**-(f+2): x and P(x) (the floor on P's grid, which has -2**-(f+2) on it) both lie strictly between
      the ties -2**-(f+1) and 2**-(f+1) and have the same sign or P(x) = 0 <= x: every ap_fixed rounding of q
      gives 0 for both, except TRN, which gives -1 LSB for both negatives and 0 for both non-negatives;
    - overflow: P's range holds q's, so a saturated P(x) (beyond q's range) saturates q the same way as x does;
      when q wraps, P wraps modulo 2**(I+1), a multiple of q's modulus 2**I, i.e. an even number of q's LSBs:
      a shift that q's rounding (one of the shift-invariant ones) keeps and q's wrap absorbs.
    """
    if q.rounding not in _AP_ROUNDING or q.overflow not in ("SAT", "SAT_SYM", "WRAP") or q.narrow:
        return None
    if q.overflow == "WRAP" and q.rounding not in _SHIFT_INVARIANT_ROUNDING:
        return None
    width = q.width + FLOAT32_GUARD_BITS + 1
    if width > MAX_EXACT_INPUT_WIDTH:
        return None
    return FixedType(width, q.frac + FLOAT32_GUARD_BITS, True, "TRN", "WRAP" if q.overflow == "WRAP" else "SAT")


def input_cast_is_exact(pre: FixedType, q: FixedType) -> bool:
    """Does casting every float32 into ``pre`` and then into ``q`` equal casting it into ``q`` directly? A sufficient
    condition (the argument of ``exact_input_type``), so False means "may differ" for some float32 inputs."""
    if q.rounding not in _AP_ROUNDING or q.narrow or pre.narrow:
        return False
    if pre.rounding == "TRN" and q.rounding == "TRN" and pre.frac >= q.frac:
        rounding_ok = True  # floor(floor(x * 2**a) / 2**(a-b)) == floor(x * 2**b)
    else:
        rounding_ok = pre.frac >= q.frac + FLOAT32_GUARD_BITS and (pre.rounding == "TRN" or q.rounding != "TRN")
    if not rounding_ok:
        return False
    if q.overflow in ("SAT", "SAT_SYM"):
        (plo, phi), (qlo, qhi) = _type_range(pre), _type_range(q)
        shift = pre.frac - q.frac  # >= 0 here: compare the ranges on pre's grid
        return pre.overflow in ("SAT", "SAT_SYM") and plo <= qlo << shift and phi >= qhi << shift
    if q.overflow == "WRAP":  # moduli 2**(integer bits): pre's must be a multiple of q's
        return (pre.overflow == "WRAP" and pre.width - pre.frac >= q.width - q.frac
                and q.rounding in _SHIFT_INVARIANT_ROUNDING)
    return False


def weight_codes(var, t: FixedType, where: str) -> np.ndarray:
    """Codes of a weight variable as hls4ml's C++ loads them: the decimal text hls4ml writes, cast into ``t``."""
    text = list(iter(var))  # the exact strings of firmware/weights/<name>.txt and .h
    values = np.array([float(s) for s in text], dtype=np.float64).reshape(np.asarray(var.data).shape)
    return cast_float(values, t, where)


@dataclass
class _Pending:
    """A Dense (or Conv) layer waiting to learn whether a ReLU follows."""
    name: str
    x: str
    w: str
    b: str | None
    acc_lo: np.ndarray
    acc_hi: np.ndarray
    acc_frac: int
    result_t: FixedType
    kind: str = "dense"
    attrs: dict | None = None  # the conv op's geometry
    out_shape: tuple[int, ...] | None = None  # a conv's output shape (a dense's follows its input)


def _layer_class(layer) -> str:
    return getattr(layer, "class_name", type(layer).__name__)


def _refuse(layer, reason: str) -> UnsupportedOpError:
    cls = _layer_class(layer)
    hint = _NEAREST.get(cls, f"nn2aie supports: {SUPPORTED}")
    if cls == "ApplyAlpha" and _layer_class(layer.get_input_node()) == "Dense":
        # hls4ml's FuseBatchNormalization only folds into a Dense whose result precision nobody set
        hint = ("hls4ml did not fold this bias / scale into the Dense before it because that Dense has a set result "
                "precision (config_from_onnx_model(..., granularity='model') or an explicit one): create the config "
                "with granularity='name' (hls4ml's default, which leaves it 'auto') or set the Dense's result "
                "precision to 'auto'")
    return UnsupportedOpError(f"hls4ml layer {layer.name} ({cls})", reason, hint)


def _type_range(t: FixedType) -> tuple[int, int]:
    if t.overflow == "SAT_SYM" and t.signed:
        return -t.max_code, t.max_code
    return t.min_code, t.max_code


def _holds(t: FixedType, lo: int, hi: int, frac: int) -> bool:
    """Does ``t`` hold every value code * 2**-frac, code in [lo, hi], exactly?"""
    if t.frac < frac:
        return False
    shift = t.frac - frac
    tlo, thi = _type_range(t)
    return tlo <= (lo << shift) and (hi << shift) <= thi


def _compose_requantisations(p: _Pending, out_t: FixedType) -> FixedType | None:
    """One type whose single requantisation (after the ReLU, if any) equals ``out_t(act(result_t(sum)))`` for
    every exact sum the Dense can produce, or None. HGQ2 writes such pairs: a TRN/WRAP Dense result, then the
    activation's own (RND/WRAP) type.

    Requires that the Dense result never overflows (its range holds every rounded sum); then, with f0 > f1 the
    fractional bits of the sum and the Dense result, f2 those of ``out_t``, and any monotone rounding r with
    r(0) = 0 (all of them) commuting with ReLU:
    - f2 == f1: the activation only narrows: ``out_t`` with the Dense result's rounding;
    - f2 <  f1 and the Dense result truncates (TRN = floor): floor(floor(x * 2^f1) / 2^(f1-f2) + c) =
      floor(x * 2^f2 + c) for an integer-shifted floor (c = 0 for TRN, c = 1/2 for RND, half up), so ``out_t``
      applied to the exact sum is the same. Other rounding pairs (e.g. TRN then RND_CONV) are not composable.
    """
    d = p.result_t
    f0, f1, f2 = p.acc_frac, d.frac, out_t.frac
    if f1 >= f0:
        return None  # the Dense result is exact in its fractional bits; the range cases are handled by the caller
    shift = f0 - f1
    lo = int(p.acc_lo.min(initial=0)) >> shift  # floor: every rounding mode lands in [floor, ceil]
    hi = -(-int(p.acc_hi.max(initial=0)) >> shift)
    d_lo, d_hi = _type_range(d)
    if not (d_lo <= lo and hi <= d_hi):
        return None  # the Dense result itself may overflow
    if f2 == f1:
        return FixedType(out_t.width, out_t.frac, out_t.signed, d.rounding, out_t.overflow, out_t.narrow)
    if f2 < f1 and d.rounding == "TRN" and out_t.rounding in ("TRN", "RND"):
        return out_t
    return None


def graph_from_hls4ml(model, name: str | None = None) -> Graph:
    """Convert an hls4ml ``ModelGraph`` (a DAG of the layers listed in ``SUPPORTED``) into a logical graph."""
    layers = list(model.get_layers())
    if not layers or _layer_class(layers[0]) not in _INPUT_CLASSES:
        raise UnsupportedOpError("hls4ml model", "does not start with an Input layer", "convert a Sequential MLP")
    # name the first layer nn2aie cannot compute, before converting anything
    for layer in layers[1:]:
        if _layer_class(layer) not in _SUPPORTED_CLASSES + _INPUT_CLASSES:
            raise _refuse(layer, f"layer class {_layer_class(layer)} is not supported")
    conv = _Converter(model, layers)
    for layer in layers:
        conv.convert(layer)
    if not conv.ops:
        raise UnsupportedOpError("hls4ml model", "contains no layer that computes anything", "nothing to compile")
    graph = Graph(name or model.config.get_project_name(), conv.tensors, conv.ops, conv.inputs, conv.outputs(),
                  conv.source)
    graph.verify()
    return graph


class _Converter:
    """Walks hls4ml's layers in their (topological) order; ``env`` maps each hls4ml variable to its IR tensor."""

    def __init__(self, model, layers: list) -> None:
        self.model = model
        self.layers = layers
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.env: dict[str, str] = {}
        self.pending: dict[str, _Pending] = {}  # a Dense whose only consumer is a ReLU / linear activation
        self.source = {"framework": "hls4ml"}
        self.consumers: dict[str, list] = {}
        for layer in layers:
            for t in dict.fromkeys(layer.inputs or []):
                self.consumers.setdefault(t, []).append(layer)
        by_name = {layer.name: layer for layer in layers}
        self.model_outputs = [by_name[o].outputs[0] if o in by_name else o for o in model.outputs]

    def outputs(self) -> list[str]:
        missing = [o for o in self.model_outputs if o not in self.env]
        if missing:
            raise UnsupportedOpError("hls4ml model", f"output {missing[0]} is not produced by a converted layer",
                                     "report this model to the nn2aie developers")
        return [self.env[o] for o in self.model_outputs]

    # -- helpers ----------------------------------------------------------------------------------------------
    def inp(self, layer, i: int = 0) -> str:
        return self.env[layer.inputs[i]]

    def type_of(self, tensor: str) -> FixedType:
        t = self.tensors[tensor].type
        assert isinstance(t, FixedType)
        return t

    def result_type(self, layer, what: str = "result") -> FixedType:
        return fixed_type(layer.get_output_variable().type.precision,
                          f"hls4ml layer {layer.name} ({_layer_class(layer)}) {what}")

    def new_tensor(self, name: str, shape, t: FixedType, origin: str) -> str:
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), t, origin=origin)
        return name

    def emit(self, name: str, kind: str, ins: list[str], out: str, attrs: dict) -> str:
        self.ops.append(Op(name, kind, ins, [out], attrs))
        return out

    def cast(self, src: str, t: FixedType, name: str, origin: str) -> str:
        """``src`` requantised into ``t`` (an eltwise identity), or ``src`` itself when it already has type ``t``."""
        if self.type_of(src) == t:
            return src
        out = self.new_tensor(name, self.tensors[src].shape, t, origin)
        return self.emit(name, "eltwise", [src], out, {"op": "identity"})

    def emit_dense(self, p: _Pending, out_name: str, out_t: FixedType, act: str, origin: str) -> str:
        shape = p.out_shape or self.tensors[p.x].shape[:-1] + (self.tensors[p.w].shape[1],)
        self.new_tensor(out_name, shape, out_t, origin)
        ins = [p.x, p.w] + ([p.b] if p.b else [])
        return self.emit(p.name, p.kind, ins, out_name, {"activation": act, **(p.attrs or {})})

    # -- layers -----------------------------------------------------------------------------------------------
    def convert(self, layer) -> None:
        cls = _layer_class(layer)
        if len(layer.outputs) != 1:
            raise _refuse(layer, f"has {len(layer.outputs)} outputs")
        out = layer.outputs[0]
        if cls in _INPUT_CLASSES:
            t = self.result_type(layer)
            shape = tuple(int(d) for d in layer.get_output_variable().shape)
            self.env[out] = self.new_tensor(layer.name, shape, t, layer.name)
            self.inputs.append(layer.name)
            return
        missing = [t for t in layer.inputs if t not in self.env and t not in self.pending]
        if missing:
            raise _refuse(layer, f"input {missing[0]} is not a tensor nn2aie converted (a constant or an "
                          "unsupported producer)")
        n_in = 2 if cls == "Merge" else len(layer.inputs) if cls == "Concatenate" else 1
        if len(layer.inputs) != n_in or (cls == "Concatenate" and n_in < 2):
            raise _refuse(layer, f"has {len(layer.inputs)} inputs")
        if cls == "Dense":
            self._dense(layer, out)
        elif cls in _CONV_CLASSES:
            self._conv(layer, out)
        elif cls in ("Pooling1D", "Pooling2D"):
            self._pool(layer, out)
        elif cls in _ACT_CLASSES:
            self._activation(layer, out)
        elif cls == "Merge":
            self._merge(layer, out)
        elif cls == "Concatenate":
            self._concat(layer, out)
        elif cls in ("Reshape", "Flatten"):
            src = self.inp(layer)
            shape = tuple(int(d) for d in layer.get_output_variable().shape)
            if int(np.prod(shape)) != int(np.prod(self.tensors[src].shape)):
                raise _refuse(layer, f"reshapes {list(self.tensors[src].shape)} into {list(shape)}")
            # io_parallel: hls4ml's Vitis backend makes a Reshape an in-place view of its input (same array, same
            # type: vivado:inplace_parallel_reshape), so its own result precision is never used
            self.env[out] = self.new_tensor(layer.name, shape, self.type_of(src), layer.name)
            self.emit(layer.name, "reshape", [src], layer.name, {})
        elif cls == "Transpose":
            self._transpose(layer, out)
        elif cls in ("GlobalPooling1D", "GlobalPooling2D"):
            self._global_pooling(layer, out)
        elif cls == "FixedPointQuantizer":
            self._fixed_point_quantizer(layer, out)
        elif cls == "BatchNormalization":
            self._batchnorm(layer, out)
        else:  # pragma: no cover - the pre-pass refused it
            raise _refuse(layer, f"layer class {cls} is not supported")

    def _dense(self, layer, out: str) -> None:
        src = self.inp(layer)
        if len(self.tensors[src].shape) != 1:
            raise _refuse(layer, f"input of shape {list(self.tensors[src].shape)}: only Dense layers on a flat "
                          "[features] input are supported")
        p = _dense(layer, src, self.tensors, self.element_ranges(src))
        users = self.consumers.get(out, [])
        if len(users) == 1 and out not in self.model_outputs and _activation_kind(users[0]) in ("relu", "linear"):
            self.pending[out] = p  # folded into one dense op by the activation (see _activation)
        else:
            self.env[out] = self.emit_dense(p, p.name, p.result_t, "linear", p.name)

    def _conv(self, layer, out: str) -> None:
        """Conv1D / Conv2D (io_parallel, channels last): hls4ml computes each output pixel as a Dense over its
        window (nnet::conv_*_cl with a dense mult config: products and sums in accum_t, then the result cast), so
        the layer is the dense numerics over the im2col matrix of its Keras [*kernel, C, M] weights."""
        src = self.inp(layer)
        geo = _conv_attrs(layer, self.tensors[src].shape)
        p = _dense(layer, src, self.tensors, None, conv=geo)
        users = self.consumers.get(out, [])
        if len(users) == 1 and out not in self.model_outputs and _activation_kind(users[0]) in ("relu", "linear"):
            self.pending[out] = p
        else:
            self.env[out] = self.emit_dense(p, p.name, p.result_t, "linear", p.name)

    def _pool(self, layer, out: str) -> None:
        """MaxPooling1D / 2D: a selection of codes in the input's type, then hls4ml's result cast (if any)."""
        src = self.inp(layer)
        if str(layer.get_attr("pool_op", "Max")).lower() != "max":
            raise _refuse(layer, f"{layer.get_attr('pool_op')} pooling over a window is not supported yet")
        geo = _conv_attrs(layer, self.tensors[src].shape, pool=True)
        shape = (*geo.pop("out"), self.tensors[src].shape[-1])
        t = self.type_of(src)
        y = self.new_tensor(f"{layer.name}_max", shape, t, layer.name)
        self.emit(layer.name, "pool", [src], y, {"op": "max", **geo, "ceil_mode": False})
        self.env[out] = self.cast(y, self.result_type(layer), f"{layer.name}_cast", layer.name)

    def _table_activation(self, layer, out: str, function: str) -> None:
        """sigmoid / tanh / softplus / softsign / selu: hls4ml's own C++ run on every input code gives the table
        (frontends/hls4ml_tables.py), an eltwise ``lut``."""
        from nn2aie.frontends.float_functions import trimmed_table
        from nn2aie.frontends.hls4ml_tables import activation_codes

        if layer.inputs[0] in self.pending:  # a Dense that waited for a ReLU: it keeps its own result type
            p = self.pending.pop(layer.inputs[0])
            self.env[layer.inputs[0]] = self.emit_dense(p, p.name, p.result_t, "linear", p.name)
        src = self.env[layer.inputs[0]]
        in_t = self.type_of(src)
        out_t = fixed_type(layer.get_output_variable().type.precision, f"hls4ml layer {layer.name} result")
        table_t = fixed_type(layer.get_attr("table_t").precision, f"hls4ml layer {layer.name} table_t")
        codes = np.arange(in_t.min_code, in_t.max_code + 1, dtype=np.int64)
        outs = activation_codes(function, in_t, out_t, int(layer.get_attr("table_size", 1024)), table_t)
        lo, table = trimmed_table(codes, outs)
        tname = self.new_tensor(f"{layer.name}_table", (int(table.size),), out_t, layer.name)
        self.tensors[tname] = Tensor(tname, (int(table.size),), out_t, data=table, origin=layer.name)
        self.env[out] = self.new_tensor(layer.name, self.tensors[src].shape, out_t, layer.name)
        self.emit(layer.name, "eltwise", [src, tname], layer.name, {"op": "lut", "lo": int(lo),
                                                                     "function": f"hls4ml {function}"})

    def _activation(self, layer, out: str) -> None:
        act = _activation_kind(layer)
        function = str(layer.get_attr("activation", "")).lower()
        if act is None and _layer_class(layer) == "Activation":
            from nn2aie.frontends.hls4ml_tables import FUNCTIONS

            if function in FUNCTIONS:
                self._table_activation(layer, out, function)
                return
        if act is None:
            what = f"activation '{layer.get_attr('activation')}'"
            if _layer_class(layer) == "ParametrizedActivation" or layer.get_attr("activ_param") is not None:
                what += f" with parameter {layer.get_attr('activ_param')}"
            raise _refuse(layer, f"{what} is not supported")
        out_t = fixed_type(layer.get_output_variable().type.precision, f"hls4ml layer {layer.name} result")
        src_name = layer.inputs[0]
        if src_name in self.pending:
            self.env[out] = self._fold(self.pending.pop(src_name), layer, act, out_t)
            return
        src = self.env[src_name]
        if (act == "linear" and src in self.inputs and len(self.inputs) == 1 and not self.ops
                and len(self.consumers.get(src_name, [])) == 1 and src_name not in self.model_outputs):
            # an input quantizer (hls4ml's QONNX converter writes one): the host casts into the Input type,
            # then into this one (api.quantize_input); the array sees only the second type
            x_t = self.type_of(src)
            if out_t != x_t:
                self.source[INPUT_PRE_CAST] = json.dumps(x_t.to_json(), sort_keys=True)
                self.tensors[src] = Tensor(src, self.tensors[src].shape, out_t, origin=f"{src}+{layer.name}")
            self.env[out] = src
            return
        attrs: dict = {"op": {"linear": "identity"}.get(act, act)}
        if act == "leaky_relu":
            attrs["alpha_shift"] = _leaky_shift(layer)
        self.env[out] = self.new_tensor(layer.name, self.tensors[src].shape, out_t, layer.name)
        self.emit(layer.name, "eltwise", [src], layer.name, attrs)

    def _fixed_point_quantizer(self, layer, out: str) -> None:
        """HGQ2's quantizer kept as a layer (hls4ml writes ``out[i] = res_T(ap_fixed<b_i, i_i, RND, SAT>(in[i]))``
        per element): with one (k, b, i) for every element it is a per-tensor cast, i.e. an eltwise identity into
        ``ap_fixed<b, i>`` (and into the layer's result type when that does not hold it). hls4ml keeps such a
        per-tensor quantizer as a layer where the quantized tensor fans out (one quantizer per reader), so this
        is what a residual HGQ2 model needs; per-element (k, b, i) are refused as such."""
        k, b, i = (np.asarray(v) for v in layer.get_attr("mask_kbi"))
        shape = tuple(int(d) for d in layer.get_input_variable().shape)
        where = f"hls4ml layer {layer.name} result"
        rounding, overflow = str(layer.get_attr("RND")), str(layer.get_attr("SAT"))
        if any(v.size != 1 and not np.all(v == v.reshape(-1)[0]) for v in (k, b, i)):
            self._per_element_quantizer(layer, out, shape, k, b, i, rounding, overflow)
            return
        k0, b0, i0 = (int(v.reshape(-1)[0]) for v in (k, b, i))
        if b0 <= 0:
            raise _refuse(layer, "quantizes every element to 0 bits (a constant zero tensor)")
        mid = FixedType(width=b0, frac=b0 - i0, signed=bool(k0), rounding=rounding, overflow=overflow)
        out_t = fixed_type(layer.get_output_variable().type.precision, where)
        src = self.inp(layer)
        y = self.cast(src, mid, f"{layer.name}_q", layer.name)
        if not _holds(out_t, *_type_range(mid), mid.frac):
            y = self.cast(y, out_t, layer.name, layer.name)
        self.env[out] = y

    def element_ranges(self, tensor: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-element code ranges of a tensor a per-element quantizer wrote (at the tensor's fraction), else None."""
        op = next((o for o in self.ops if tensor in o.outputs), None)
        if op is None or op.kind != "eltwise" or op.attrs.get("op") != "quantize":
            return None
        frac = self.tensors[tensor].type.frac
        el = op.attrs["elements"]
        lo, hi = [], []
        for w, f, sg in zip(el["width"], el["frac"], el["signed"], strict=True):
            if not w:
                lo.append(0)
                hi.append(0)
                continue
            t = FixedType(int(w), int(f), bool(sg), el["rounding"], el["overflow"])
            lo.append(t.min_code << (frac - t.frac))
            hi.append(t.max_code << (frac - t.frac))
        return np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)

    def _batchnorm(self, layer, out: str) -> None:
        """hls4ml's BatchNormalization: ``res = data * scale + bias`` per feature in full fixed-point precision,
        then one cast into res_T: an exact affine map of the input code per channel, so an eltwise ``affine``
        whose thresholds are the map's (computed exactly) and whose multiplier kernels/requant.py proves equal."""
        from fractions import Fraction

        src = self.inp(layer)
        x_t = self.type_of(src)
        shape = self.tensors[src].shape
        if len(shape) != 1:
            raise _refuse(layer, f"normalises a {list(shape)} tensor: supported on flat [features] tensors")
        n = int(shape[0])
        where = f"hls4ml layer {layer.name}"
        s_t = fixed_type(layer.weights["scale"].type.precision, f"{where} scale")
        b_t = fixed_type(layer.weights["bias"].type.precision, f"{where} bias")
        scale = np.broadcast_to(weight_codes(layer.weights["scale"], s_t, f"{where} scale").reshape(-1), (n,))
        bias = np.broadcast_to(weight_codes(layer.weights["bias"], b_t, f"{where} bias").reshape(-1), (n,))
        y_t = self.result_type(layer)
        if y_t.container_bits > 16:
            raise UnsupportedQuantizationError(
                f"{where} result", f"type {y_t.describe()} is wider than 16 bits (hls4ml's 'auto' precision keeps the "
                "exact product)", "set the BatchNormalization's result precision, e.g. "
                "ap_fixed<16,6,AP_RND_CONV,AP_SAT>, in the hls4ml config")
        if np.any(scale == 0):
            raise _refuse(layer, "has a zero scale (a constant channel)")
        sign = np.where(scale < 0, -1, 1).astype(np.int64)
        xlo, xhi = _type_range(x_t)
        a_lo, a_hi = (min(xlo, -xhi), max(xhi, -xlo)) if np.any(sign < 0) else (xlo, xhi)
        # every oriented input code a' = sign * x through hls4ml's arithmetic: x * scale + bias exactly (at the
        # finer of the two fractions), then one cast into res_T (the IR's requantize is that cast)
        frac = max(x_t.frac + s_t.frac, b_t.frac)
        a = np.arange(a_lo, a_hi + 1, dtype=np.int64)[:, None]
        exact = (sign * a) * scale.astype(np.int64) << (frac - x_t.frac - s_t.frac)
        exact = exact + (bias.astype(np.int64) << (frac - b_t.frac))
        codes = requantize(exact, frac, y_t, f"{where} result")
        if np.any(np.diff(codes, axis=0) < 0):
            raise _refuse(layer, f"its result type {y_t.describe()} wraps some results (not monotone)")
        lo, hi = overflow_range(y_t) if y_t.overflow != "WRAP" else (y_t.min_code, y_t.max_code)  # WRAP: none wraps
        levels = np.arange(lo + 1, hi + 1)
        thresholds = a_lo + (codes[:, :, None] < levels[None, None, :]).sum(axis=0)  # [n, levels]
        step = Fraction(2) ** -(x_t.frac + s_t.frac - y_t.frac)
        c = [abs(int(v)) * step for v in scale]
        e = [int(v) * Fraction(2) ** -(b_t.frac - y_t.frac) for v in bias]
        table = {"thresholds": thresholds.tolist(), "acc_range": [a_lo, a_hi], "clamp": [lo, hi],
                 "negated_channels": [int(j) for j in np.nonzero(sign < 0)[0]],
                 "source": f"hls4ml BatchNormalization {layer.name}: data * scale + bias into {y_t.describe()}",
                 "affine_reading": {"scale": [[v.numerator, v.denominator] for v in c],
                                    "offset": [[v.numerator, v.denominator] for v in e],
                                    "rounding": y_t.rounding, "clamp": [lo, hi]}}
        self.env[out] = self.new_tensor(layer.name, shape, y_t, layer.name)
        self.emit(layer.name, "eltwise", [src], layer.name, {"op": "affine", "requant_table": table})

    def _per_element_quantizer(self, layer, out: str, shape, k, b, i, rounding: str, overflow: str) -> None:
        """HGQ2's heterogeneous quantizer: ``out[e] = res_T(ap_fixed<b_e, i_e, RND, SAT>(in[e]))`` per element e
        of the event (row-major): an eltwise ``quantize`` with the element types, into the narrowest type that
        holds them all exactly (then a cast into res_T where that does not hold it)."""
        n = int(np.prod(shape))
        ks, bs, is_ = (np.broadcast_to(np.asarray(v).reshape(-1) if np.asarray(v).size > 1 else
                                       np.asarray(v).reshape(1), (n,)).astype(int) for v in (k, b, i))
        types = [None if bw <= 0 else FixedType(width=int(bw), frac=int(bw - iw), signed=bool(kk), rounding=rounding,
                                                overflow=overflow) for kk, bw, iw in zip(ks, bs, is_, strict=True)]
        live = [t for t in types if t is not None]
        if not live:
            raise _refuse(layer, "quantizes every element to 0 bits (a constant zero tensor)")
        frac = max(t.frac for t in live)
        lo = min(t.min_code << (frac - t.frac) for t in live)
        hi = max(t.max_code << (frac - t.frac) for t in live)
        held = _exact_type(min(lo, 0), hi, frac)
        if held.width > 16:
            raise _refuse(layer, f"its elements' types span {held.width} bits on one grid (2^-{frac}); a tile "
                          "takes at most 16")
        src = self.inp(layer)
        elements = {"width": [0 if t is None else t.width for t in types],
                    "frac": [frac if t is None else t.frac for t in types],
                    "signed": [bool(t is not None and t.signed) for t in types],
                    "rounding": rounding, "overflow": overflow}
        name = f"{layer.name}_q"
        y = self.new_tensor(name, self.tensors[src].shape, held, layer.name)
        self.emit(name, "eltwise", [src], y, {"op": "quantize", "elements": elements})
        out_t = fixed_type(layer.get_output_variable().type.precision, f"hls4ml layer {layer.name} result")
        if not _holds(out_t, *_type_range(held), held.frac):
            y = self.cast(y, out_t, layer.name, layer.name)
        self.env[out] = y

    def _fold(self, p: _Pending, layer, act: str, out_t: FixedType) -> str:
        """Dense -> ReLU / linear activation as one dense op, when one requantisation expresses both casts."""
        lo, hi = int(p.acc_lo.min(initial=0)), int(p.acc_hi.max(initial=0))
        exact = _holds(p.result_t, lo, hi, p.acc_frac)
        d = p.result_t
        origin = f"{p.name}+{layer.name}"
        if act == "relu" and exact:
            return self.emit_dense(p, layer.name, out_t, "relu", origin)
        if act == "relu" and d.overflow in ("SAT", "SAT_SYM") and _holds(out_t, 0, _type_range(d)[1], d.frac):
            return self.emit_dense(p, layer.name, d, "relu", origin)
        if act == "linear" and (exact or _holds(out_t, *_type_range(d), d.frac)):
            return self.emit_dense(p, layer.name, out_t if exact else d, "linear", origin)
        if (folded := _compose_requantisations(p, out_t)) is not None:
            return self.emit_dense(p, layer.name, folded, act, origin)
        raise UnsupportedOpError(
            f"hls4ml layers {p.name} (Dense) -> {layer.name} ({act})",
            f"the Dense result type {d.describe()} already rounds or overflows the exact sum, and the "
            f"{act} result type {out_t.describe()} rounds again: two requantisations in a row, which one "
            "nn2aie dense op does not express",
            f"give {p.name}'s result a wide type (e.g. its accum type) and put the narrow type on "
            f"{layer.name}'s result")

    def _merge(self, layer, out: str) -> None:
        op = str(layer.get_attr("op", "")).lower()
        if op not in _MERGE_OPS and op != "average":
            raise _refuse(layer, f"merge operation '{op}' is not supported")
        a, b = self.inp(layer, 0), self.inp(layer, 1)
        if self.tensors[a].shape != self.tensors[b].shape:
            raise _refuse(layer, f"merges shapes {list(self.tensors[a].shape)} and {list(self.tensors[b].shape)} "
                          "(hls4ml's broadcasting merge)")
        out_t = self.result_type(layer)
        shape = self.tensors[a].shape
        if op != "average":
            # nnet::add/subtract/multiply/maximum/minimum: the exact ap_fixed result, assigned to res_T
            self.env[out] = self.new_tensor(layer.name, shape, out_t, layer.name)
            self.emit(layer.name, "eltwise", [a, b], layer.name, {"op": _MERGE_OPS[op]})
            return
        # nnet::average: (data1 + data2) * ap_ufixed<1,0>(0.5), both exact, assigned to res_T
        ta, tb = self.type_of(a), self.type_of(b)
        f = max(ta.frac, tb.frac)
        (alo, ahi), (blo, bhi) = _type_range(ta), _type_range(tb)
        lo = (alo << (f - ta.frac)) + (blo << (f - tb.frac))
        hi = (ahi << (f - ta.frac)) + (bhi << (f - tb.frac))
        total = self.new_tensor(f"{layer.name}_sum", shape, _exact_type(lo, hi, f), f"{layer.name} (exact sum)")
        self.emit(f"{layer.name}_sum", "eltwise", [a, b], total, {"op": "add"})
        half = f"{layer.name}_half"
        self.tensors[half] = Tensor(half, (), FixedType(2, 1, True), np.array(1, dtype=np.int64),
                                    origin=f"{layer.name} (0.5)")
        self.env[out] = self.new_tensor(layer.name, shape, out_t, layer.name)
        self.emit(layer.name, "eltwise", [total, half], layer.name, {"op": "mul"})

    def _concat(self, layer, out: str) -> None:
        ins = [self.inp(layer, i) for i in range(len(layer.inputs))]
        rank = len(self.tensors[ins[0]].shape)
        axis = int(layer.get_attr("axis", -1))
        axis = axis + rank if axis < 0 else axis - 1  # hls4ml keeps Keras' axis, which counts the batch axis
        shapes = [self.tensors[t].shape for t in ins]
        if not 0 <= axis < rank or any(len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] +
                                       shapes[0][axis + 1:] for s in shapes):
            raise _refuse(layer, f"concatenates shapes {[list(s) for s in shapes]} along axis "
                          f"{layer.get_attr('axis')}")
        out_t = self.result_type(layer)
        # nnet::concatenate*: res[i] = data[j], an assignment into res_T per input
        cast = [self.cast(t, out_t, f"{layer.name}_in{i}", f"{layer.name} (input {i} cast)")
                for i, t in enumerate(ins)]
        shape = list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes)
        self.env[out] = self.new_tensor(layer.name, shape, out_t, layer.name)
        self.emit(layer.name, "concat", cast, layer.name, {"axis": axis})

    def _transpose(self, layer, out: str) -> None:
        src = self.inp(layer)
        perm = layer.get_attr("perm")
        rank = len(self.tensors[src].shape)
        if not isinstance(perm, list | tuple) or sorted(int(p) for p in perm) != list(range(rank)):
            raise _refuse(layer, f"permutation {perm!r} of a rank-{rank} tensor is not understood")
        perm = [int(p) for p in perm]
        out_t = self.result_type(layer)
        cast = self.cast(src, out_t, f"{layer.name}_in", f"{layer.name} (input cast)")  # res[i] = data[idx]
        if perm == list(range(rank)):
            self.env[out] = cast if cast != src else self._reshape_alias(layer, src)
            return
        shape = [self.tensors[src].shape[p] for p in perm]
        self.env[out] = self.new_tensor(layer.name, shape, out_t, layer.name)
        self.emit(layer.name, "transpose", [cast], layer.name, {"perm": perm})

    def _reshape_alias(self, layer, src: str) -> str:
        self.new_tensor(layer.name, self.tensors[src].shape, self.type_of(src), layer.name)
        return self.emit(layer.name, "reshape", [src], layer.name, {})

    def _global_pooling(self, layer, out: str) -> None:
        src = self.inp(layer)
        shape = self.tensors[src].shape
        cls = _layer_class(layer)
        rank = 2 if cls == "GlobalPooling1D" else 3
        if len(shape) != rank or layer.get_attr("data_format", "channels_last") != "channels_last":
            raise _refuse(layer, f"pools a {list(shape)} input ({layer.get_attr('data_format')}); nn2aie reads "
                          "channels-last [positions, channels] (1D) or [height, width, channels] (2D)")
        axes = list(range(rank - 1))
        n = int(np.prod(shape[:-1]))
        x_t = self.type_of(src)
        out_t = self.result_type(layer)
        acc_t = fixed_type(layer.get_attr("accum_t").precision, f"hls4ml layer {layer.name} ({cls}) accum")
        pool_op = str(layer.get_attr("pool_op"))
        out_shape = (shape[-1],)
        attrs = {"axes": axes, "keepdims": False}
        xlo, xhi = _type_range(x_t)
        if pool_op == "Max":
            # nnet::max returns the largest input converted to accum_t; the caller assigns that to res_T
            if _holds(acc_t, xlo, xhi, x_t.frac) or acc_t == out_t:  # one requantisation
                self.env[out] = self.new_tensor(layer.name, out_shape, out_t, layer.name)
                self.emit(layer.name, "reduce", [src], layer.name, {"op": "max", **attrs})
                return
            mx = self.new_tensor(f"{layer.name}_max", out_shape, acc_t, f"{layer.name} (accum)")
            self.emit(f"{layer.name}_max", "reduce", [src], mx, {"op": "max", **attrs})
            self.env[out] = self.cast(mx, out_t, layer.name, layer.name)
            return
        if pool_op != "Average":
            raise _refuse(layer, f"pooling operation {pool_op} is not supported")
        # nnet::avg: accum_t y = 0; y += x[i] (each partial sum assigned to accum_t); y /= n (ap_fixed division:
        # the codes at accum_t's fraction divided by n, truncated toward zero); then res_T = y
        if not _holds(acc_t, min(0, n * xlo), max(0, n * xhi), x_t.frac):
            raise UnsupportedQuantizationError(
                f"hls4ml layer {layer.name} ({cls}) accum", f"accum type {acc_t.describe()} cannot hold every "
                f"partial sum of {n} inputs of type {x_t.describe()} exactly: hls4ml would round or wrap inside "
                "the average", f"set {layer.name}'s accum precision wide, e.g. ap_fixed<32,16> (at least "
                f"{x_t.frac} fractional bits)")
        quotient_t = FixedType(acc_t.width, acc_t.frac, acc_t.signed, "TRN_ZERO", "SAT")
        q = self.new_tensor(f"{layer.name}_mean", out_shape, quotient_t, f"{layer.name} (accum / {n})")
        self.emit(f"{layer.name}_mean", "reduce", [src], q, {"op": "mean", "divide": "exact", **attrs})
        self.env[out] = self.cast(q, out_t, layer.name, layer.name)
        if self.env[out] == q:  # pragma: no cover - res_T is never the internal TRN_ZERO type
            self.env[out] = self._reshape_alias(layer, q)


def _activation_kind(layer) -> str | None:
    """'relu' | 'linear' | 'leaky_relu' for the activations nn2aie computes, else None."""
    if _layer_class(layer) not in _ACT_CLASSES:
        return None
    act = str(layer.get_attr("activation", "")).lower()
    if act in ("relu", "linear"):
        return act
    param = layer.get_attr("activ_param")
    if act == "thresholdedrelu" and param is not None and float(param) == 0.0:
        return "relu"  # nnet::thresholded_relu: x > theta ? x : 0 with theta = 0 (Keras ReLU())
    if act == "leakyrelu" and param is not None and _is_power_of_two_slope(float(param)):
        return "leaky_relu"
    return None


def _is_power_of_two_slope(alpha: float) -> bool:
    if not 0 < alpha <= 1:
        return False
    mant, _ = math.frexp(alpha)
    return mant == 0.5


def _leaky_shift(layer) -> int:
    """nnet::leaky_relu computes alpha * x with alpha = param_t(<the printed slope>): exact when param_t holds the
    power-of-two slope 2^-s; the product then has s more fractional bits (docs/ops.md leaky_relu)."""
    alpha = float(layer.get_attr("activ_param"))
    s = -int(math.log2(alpha))
    param_t = fixed_type(layer.get_attr("param_t").precision, f"hls4ml layer {layer.name} param")
    code = cast_float(np.array([float(str(alpha))]), param_t, f"hls4ml layer {layer.name} param")
    if int(code[0]) * 2.0 ** -param_t.frac != alpha:
        raise UnsupportedQuantizationError(
            f"hls4ml layer {layer.name} (LeakyReLU) param", f"param type {param_t.describe()} does not hold the "
            f"slope {alpha} exactly", f"give {layer.name} a param precision with at least {s} fractional bits")
    return s


def _exact_type(lo: int, hi: int, frac: int) -> FixedType:
    """The narrowest signed type holding every code in [lo, hi] at ``frac`` (an internal, exact tensor)."""
    width = 2
    while -(1 << (width - 1)) > lo or (1 << (width - 1)) - 1 < hi:
        width += 1
    return FixedType(width, frac, True, "TRN", "SAT")


def _conv_attrs(layer, x_shape: tuple[int, ...], pool: bool = False) -> dict:
    """The conv / pool geometry of an hls4ml Conv1D/2D or Pooling1D/2D layer (its own attributes, checked against
    the input's shape), or a typed refusal."""
    a = layer.get_attr
    if (a("data_format") or "channels_last") != "channels_last":
        raise _refuse(layer, f"data_format {a('data_format')}: nn2aie takes channels_last images")
    dilation = a("dilation_rate") or a("dilation")
    if dilation not in (None, 1) and any(int(d) != 1 for d in np.atleast_1d(dilation)):
        raise _refuse(layer, f"dilation {dilation} (hls4ml's convolutions have none)")
    two = _layer_class(layer).endswith("2D")
    k = ("pool_height", "pool_width") if pool else ("filt_height", "filt_width")
    if two:
        spatial = (int(a("in_height")), int(a("in_width")))
        kernel = (int(a(k[0])), int(a(k[1])))
        strides = (int(a("stride_height")), int(a("stride_width")))
        pb, pe = (int(a("pad_top")), int(a("pad_left"))), (int(a("pad_bottom")), int(a("pad_right")))
        out = (int(a("out_height")), int(a("out_width")))
    else:
        spatial, kernel = (int(a("in_width")),), (int(a(k[1] if pool else "filt_width")),)
        strides, pb, pe = (int(a("stride_width")),), (int(a("pad_left")),), (int(a("pad_right")),)
        out = (int(a("out_width")),)
    if tuple(x_shape[:-1]) != spatial:
        raise _refuse(layer, f"input of shape {list(x_shape)}, the layer expects {list(spatial)} pixels")
    if any(p >= q for p, q in zip(pb + pe, kernel + kernel, strict=True)):
        raise _refuse(layer, f"padding {list(pb)} / {list(pe)} not smaller than the kernel {list(kernel)}")
    attrs = {"kernel": list(kernel), "strides": list(strides), "dilations": [1] * len(kernel),
             "pads_begin": list(pb), "pads_end": list(pe)}
    if pool:
        return attrs | {"out": list(out)}
    depthwise = _layer_class(layer).startswith("Depthwise")
    return attrs | {"groups": int(x_shape[-1]) if depthwise else 1, "out": list(out)}


def _dense(layer, x: str, tensors: dict[str, Tensor], x_range: tuple[np.ndarray, np.ndarray] | None = None,
           conv: dict | None = None) -> _Pending:
    where = f"hls4ml layer {layer.name} ({_layer_class(layer)})"
    x_t = tensors[x].type
    assert isinstance(x_t, FixedType)
    wvar = layer.weights["weight"]
    bvar = layer.weights.get("bias")
    w_t = fixed_type(wvar.type.precision, f"{where} weight")
    if conv is not None:  # Keras [*kernel, C, M]: rows (kernel position, channel) of the im2col matrix
        n = int(layer.get_attr("n_filt"))
        shape = tuple(np.asarray(wvar.data).shape)
        c = int(tensors[x].shape[-1])
        # depthwise: Keras [*kernel, C, multiplier], filter m = c * multiplier + d reads channel c (groups = C)
        want = [*conv["kernel"], c, n // c] if conv["groups"] > 1 else [*conv["kernel"], c, n]
        if list(shape) != want or (conv["groups"] > 1 and n % c):
            raise _refuse(layer, f"weight array of shape {list(shape)}, expected {want}")
        w = weight_codes(wvar, w_t, f"{where} weight").reshape(-1, n)
        k = w.shape[0]
    else:
        k, n = int(layer.get_attr("n_in")), int(layer.get_attr("n_out"))
        if tuple(np.asarray(wvar.data).shape) != (k, n):
            raise _refuse(layer, f"weight array of shape {list(np.asarray(wvar.data).shape)}, expected [{k}, {n}] "
                          "(a multi-dimensional Dense or a transformed weight layout)")
        if tensors[x].shape[-1] != k:
            raise _refuse(layer, f"expects {k} inputs, gets {tensors[x].shape[-1]}")
        w = weight_codes(wvar, w_t, f"{where} weight")
    tensors[f"{layer.name}_weight"] = Tensor(f"{layer.name}_weight", (k, n), w_t, w, origin=f"{layer.name}.weight")
    acc_frac = x_t.frac + w_t.frac
    xlo, xhi = _type_range(x_t)
    if x_range is not None:  # per-element types of a heterogeneous quantizer: each input's own range
        xlo, xhi = x_range[0][:, None], x_range[1][:, None]
    # bound of every partial sum per output (bias first, as hls4ml accumulates): positive and negative parts
    p_hi, p_lo = np.maximum(w * xhi, w * xlo), np.minimum(w * xhi, w * xlo)
    pos = np.maximum(p_hi, 0).sum(axis=0)
    neg = np.minimum(p_lo, 0).sum(axis=0)
    b_name, bias_acc = None, np.zeros(n, dtype=np.int64)
    if bvar is not None and np.asarray(bvar.data).size:
        b_t = fixed_type(bvar.type.precision, f"{where} bias")
        b = weight_codes(bvar, b_t, f"{where} bias").reshape(n)
        if b_t.frac > acc_frac:
            raise UnsupportedQuantizationError(
                f"{where} bias", f"{b_t.describe()} has {b_t.frac} fractional bits, finer than the products' "
                f"{acc_frac} (input + weight)", "give the bias at most as many fractional bits as input + weight")
        b_name = f"{layer.name}_bias"
        tensors[b_name] = Tensor(b_name, (n,), b_t, b, origin=f"{layer.name}.bias")
        bias_acc = b << (acc_frac - b_t.frac)
        pos = pos + np.maximum(bias_acc, 0)
        neg = neg + np.minimum(bias_acc, 0)
    acc_t = fixed_type(layer.get_attr("accum_t").precision, f"{where} accum")
    if not _holds(acc_t, int(neg.min(initial=0)), int(pos.max(initial=0)), acc_frac):
        raise UnsupportedQuantizationError(
            f"{where} accum", f"accum type {acc_t.describe()} cannot hold every partial sum exactly (products have "
            f"{acc_frac} fractional bits, sums reach [{int(neg.min(initial=0)) * 2.0**-acc_frac:g}, "
            f"{int(pos.max(initial=0)) * 2.0**-acc_frac:g}]): hls4ml would wrap/truncate inside the dot product",
            "set accum_t wide, e.g. 'auto' or ap_fixed<32,16>, in the hls4ml config")
    result_t = fixed_type(layer.get_output_variable().type.precision, f"{where} result")
    # the range of the exact sums (for the fold of a following activation)
    lo, hi = p_lo.sum(axis=0) + bias_acc, p_hi.sum(axis=0) + bias_acc
    if conv is None:
        return _Pending(layer.name, x, f"{layer.name}_weight", b_name, lo, hi, acc_frac, result_t)
    geo = dict(conv)
    out = geo.pop("out")
    return _Pending(layer.name, x, f"{layer.name}_weight", b_name, lo, hi, acc_frac, result_t, "conv", geo,
                    (*out, n))
