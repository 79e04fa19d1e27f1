"""ONNX QDQ frontend: quantized models in QuantizeLinear/DequantizeLinear form -> logical IR (a DAG of ops).

Model form (zero points 0, per-tensor power-of-two scales): every float graph input goes through QuantizeLinear;
every op reads DequantizeLinear outputs (*quantized values*) and its float result goes through QuantizeLinear. The
graph may be a DAG: a quantized value may feed several nodes and be a graph output at the same time, with any number
of graph inputs and outputs. Nodes are read in a topological order; per ONNX tensor the parser keeps the logical
tensor holding its codes and its quantization type. Read as (docs/frontends.md, "ONNX QDQ", has the full table):

- ``MatMul | Gemm (constant quantized weights) [-> Add(constant bias)] [-> Relu] -> QuantizeLinear``: one ``dense``
  op (a rank-3 MatMul ``[N, P, F] @ W[F, K]`` is a dense applied per row ``P``). ``Q -> DQ -> Relu`` right after a
  dense's own QuantizeLinear, with nothing else reading it, folds into the dense as its activation.
- ``Add / Sub / Mul / Max / Min`` of two quantized values, or of a value and a constant, ``Relu``, ``Clip``,
  ``LeakyRelu`` (alpha = 2**-s): ``eltwise`` ops whose output type is the following QuantizeLinear's. A float
  result ``-> Relu -> QuantizeLinear`` is the op quantized to that type, then an eltwise relu (exact: Q is monotone
  with Q(0) = 0, so Q(relu(r)) = relu(Q(r))).
- ``Concat, Split, Slice, Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Identity``: views (or nothing); the
  batch axis must stay first and whole.
- ``ReduceMean / ReduceSum / ReduceMax, GlobalAveragePool / GlobalMaxPool``: ``reduce`` (mean: ``divide=float32``).
- ``QuantizeLinear`` of a quantized value: nothing when it repeats the value's type (exact), else an eltwise
  ``identity`` (one requantisation).

Semantics (shared/reference/numerics.md, ONNX QDQ): QuantizeLinear is y = saturate(round_half_even(x / s) + zp).
With s = 2**-f and zp = 0 a dequantised activation is exactly ``code * 2**-f``, the MatMul/Gemm/Add result is
exactly ``acc * 2**-(fx + fw)`` with an integer accumulator ``acc``, and QuantizeLinear of it is RND_CONV + SAT
requantisation — the ``dense`` op of the logical IR. The same holds for every op above whose float32 result is
exact: the logical op computes the exact result and requantises it into the QuantizeLinear's type.

Exactness of the reference: onnxruntime evaluates the float ops in float32. Every product and partial sum of a
MatMul/Gemm/Add is an integer multiple of the accumulator LSB, so float32 arithmetic is exact (in any summation
order, with or without FMA) while every partial sum is below 2**24 LSBs. ``load_qdq`` checks the sufficient bound
``max|x| * max_n sum_k |W[k, n]| + max|b| < 2**24`` per layer (max|x| = largest code magnitude of the input type;
this is never looser than ``K * max|x| * max|w| + max|b|``), and that every scale involved (input, weights,
accumulator, output) is within 2**+-100 so that no float32 value overflows or becomes denormal, and records
``graph.source['reference_exact']`` =
``'yes'`` / ``'no'``. Models beyond the bound make the float reference itself inexact: onnxruntime's output may
then differ from the exact integer arithmetic nn2aie implements (and the AIE computes) by a rounding of the float32
accumulator — compare such models against the exact integer semantics, not against onnxruntime. The other ops use
the same convention with their own bound (in LSBs of the exact result): add/sub
``max|a| * 2**(f - fa) + max|b| * 2**(f - fb) < 2**24``, mul ``max|a| * max|b| < 2**24``, sum/mean
``n * max|a| < 2**24`` (onnxruntime sums in float32, then divides by float32(n): the ``divide=float32`` mean),
constants below 2**24 codes; max/min/relu/clip/leaky_relu/views are exact selections or power-of-two scalings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import onnx

from nn2aie.errors import BadFileError, IllegalConfigError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.float_functions import (
    REGION_ONLY_OPS,
    Region,
    find_region,
    refuse_wide_constants,
    region_model,
    trimmed_table,
)
from nn2aie.frontends.onnx_common import (
    CONV_OPS,
    ModelLike,
    SpatialPads,
    attr,
    check_inference,
    constants,
    consumers_map,
    conv_attrs,
    conv_geometry,
    elem_type,
    elem_type_name,
    fold_constant_moves,
    identifier,
    load_onnx,
    node_where,
    opset_version,
    pad_of,
    pool_attrs,
    producers_map,
    real_inputs,
    topological_order,
    unique,
    value_shape,
    without_unused_opsets,
)
from nn2aie.ir import host
from nn2aie.ir.host import HostPrologue
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType

BINARY_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Max": "max", "Min": "min"}
_COMMUTATIVE = ("add", "mul", "max", "min")
REDUCE_OPS = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "GlobalAveragePool": "mean",
           "GlobalMaxPool": "max"}
VIEW_OPS = ("Concat", "Split", "Slice", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
SUPPORTED_OPS = ("QuantizeLinear", "DequantizeLinear", "MatMul", "Gemm", *BINARY_OPS, "Relu", "Clip", "LeakyRelu",
                 *VIEW_OPS, *REDUCE_OPS, "Constant", "BatchNormalization", "Div", "Conv", "MaxPool", "AveragePool",
                 "Pad", "Softmax", "LayerNormalization", *REGION_ONLY_OPS)
_OPS_HINT = ("nn2aie reads MatMul/Gemm/Add/Relu, Sub/Mul/Max/Min, Clip/LeakyRelu, Concat/Split/Slice/Transpose/"
             "Reshape/Flatten/Squeeze/Unsqueeze/Identity, ReduceMean/ReduceSum/ReduceMax, GlobalAveragePool/"
             "GlobalMaxPool and elementwise functions of one value (Sigmoid, Tanh, Erf, Exp, Sqrt, ...) between "
             "QuantizeLinear/DequantizeLinear nodes (docs/frontends.md, ONNX QDQ)")
_POW2_HINT = "re-export with power-of-two scales (e.g. quantize with scale = 2**-round(log2(s)))"
_ZP_HINT = "re-export with symmetric quantization (zero point 0)"
_QDQ_HINT = "put QuantizeLinear -> DequantizeLinear after it and let the DequantizeLinear output fan out"
_EXACT_LIMIT = 1 << 24
_INT_LIMIT = 1 << 62  # the eltwise / reduce families compute exact results in int64 below this bound
_FRAC_RANGE = 100  # |fractional bits| beyond which float32 values may overflow (2**128) or lose bits (denormals)
_SCALE_TYPES = ("float32", "float16", "bfloat16")  # the ONNX type constraint of QuantizeLinear's scale
_FULL_BATCH_END = (1 << 31) - 1  # a Slice end at least this large keeps a dynamic batch axis whole
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
    narrow: bool = False  # QCDQ: a Clip to [-(2**(w-1) - 1), 2**(w-1) - 1]
    ir: FixedType | None = field(default=None, compare=False)  # a user-given input type (its own modes)

    @property
    def lo(self) -> int:
        return (-(1 << (self.width - 1)) + int(self.narrow)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def max_abs(self) -> int:
        return max(-self.lo, self.hi)

    def fixed(self) -> FixedType:
        if self.ir is not None:
            return self.ir
        return FixedType(width=self.width, frac=self.frac, signed=self.signed, rounding="RND_CONV", overflow="SAT",
                         narrow=self.narrow)

    def describe(self) -> str:
        return f"{elem_type_name(self.onnx_type)} x {_p2(self.frac)}"


@dataclass(frozen=True)
class _SQType:
    """A QuantizeLinear / DequantizeLinear with a float scale, a zero point, or (weights and biases) one scale per
    channel along ``axis`` of the constant: ``(code - zero_point) * scale``. Only the dense handler, graph inputs
    and outputs and views take such values (kernels/linear_scaled.py defines the layer); an op that needs a
    power-of-two scale asks for ``frac`` and gets a typed refusal naming the node."""

    onnx_type: int
    width: int
    signed: bool
    scale: tuple[float, ...]
    zero_point: int
    where: str = field(compare=False)  # the node it came from: where errors point, not part of the type
    axis: int | None = None  # per-axis constants: the axis of the scales

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def max_abs(self) -> int:
        return max(-self.lo, self.hi)

    @property
    def frac(self) -> int:
        zp = f" and zero point {self.zero_point}" if self.zero_point else ""
        scale = f"{self.scale[0]:.6g}" if len(self.scale) == 1 else f"{len(self.scale)} per-axis scales"
        raise UnsupportedQuantizationError(
            self.where, f"its scale {scale}{zp} is not a power of two with zero point 0, which the operation "
            "reading it needs: float scales and zero points are supported on the inputs, weights, biases and "
            "outputs of MatMul / Gemm layers and through views so far", _POW2_HINT)

    def fixed(self, channel_scales: tuple[float, ...] | None = None) -> ScaledType:
        return ScaledType(self.width, self.signed, channel_scales or self.scale, (self.zero_point,), "RND_CONV",
                          "SAT")

    def describe(self) -> str:
        return self.fixed().describe() if len(self.scale) == 1 else f"{elem_type_name(self.onnx_type)} per-axis"


USER_INPUT_HINT = ("quantize it in the model (a QuantizeLinear / Quant node), or let the host cast it into a type "
                   "you choose: nn2aie compile --input-type {name}=ap_fixed<8,3,AP_RND_CONV,AP_SAT> (API: "
                   "load_model(path, input_types={{'{name}': ...}}); the design then equals the model on inputs "
                   "on that grid)")


@dataclass
class QConst:
    codes: np.ndarray  # int64
    qtype: _QType
    origin: str


@dataclass(frozen=True)
class QVal:
    """A quantized ONNX tensor: the logical ``tensor`` holds its codes in ``qtype``. ``codes``: the ONNX tensor is the
    integer codes (a QuantizeLinear output, or a view of one); otherwise it is the dequantized float value."""

    tensor: str
    qtype: _QType
    codes: bool = False
    pads: SpatialPads | None = None  # the output of a zero Pad of ``tensor``: the next Conv / pool takes the zeros


_PAD_READERS = ("QuantizeLinear", "DequantizeLinear", "Identity", "Conv", "MaxPool", "AveragePool")


@dataclass
class LinearLayer:
    """What a linear op's shared parsing (``linear_layer``) builds: the op kind and its own attributes, the logical
    output shape, the ONNX per-event shape of its float sum (epilogue constants broadcast against it) and how many
    spatial axes follow the channel axis there (NCHW conv: 2; dense: 0)."""

    kind: str
    attrs: dict
    out_shape: tuple[int, ...]
    sum_shape: tuple[int, ...]
    trailing: int = 0


@dataclass
class PoolTail:
    """What quantizes an average pool's float result: the source's nodes after the division (run by ``runner`` on
    every reachable window sum), the result's type, how the last node's output becomes codes, its ONNX element
    type, and the tensor it writes."""

    nodes: list[onnx.NodeProto]
    y_type: Any
    to_code: Callable[[np.ndarray], np.ndarray]
    runner: str
    out_type: int
    output: str


CHANNELS_LAST_KINDS = ("conv", "pool")


_Tail = tuple[onnx.NodeProto | None, onnx.NodeProto | None]  # (QuantizeLinear, Relu before it) after a float op


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


def dyadic_codes(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(codes, f)`` with ``values == codes * 2**-f`` exactly and the smallest such ``f`` (possibly negative), for
    finite binary floats (every one is a dyadic rational); None when a code would need more than 62 bits."""
    flat = [Fraction(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    fracs = [q.denominator.bit_length() - 1 - _trailing_zeros(q.numerator) for q in flat if q != 0]
    f = max(fracs, default=0)
    codes = [int(q * Fraction(2) ** f) for q in flat]  # exact: f is at least every value's own fraction
    if any(abs(c) >= _INT_LIMIT for c in codes):
        return None
    return np.asarray(codes, dtype=np.int64).reshape(np.shape(values)), f


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def _fixed_for_codes(codes: np.ndarray, frac: int) -> FixedType | None:
    """The narrowest signed 8/16/32-bit type holding ``codes`` at ``frac`` (None: wider than 32 bits)."""
    lo, hi = int(codes.min(initial=0)), int(codes.max(initial=0))
    for width in (8, 16, 32):
        if -(1 << (width - 1)) <= lo and hi < 1 << (width - 1):
            return FixedType(width, frac, True, "RND_CONV", "SAT")
    return None


def _binary_bounds(kind: str, am: int, fa: int, bm: int, fb: int) -> tuple[int, int]:
    """(frac of the exact result, bound on |result| and every intermediate in its LSBs), docs/ops.md eltwise."""
    if kind == "mul":
        return fa + fb, am * bm
    f = max(fa, fb)
    return f, (am << (f - fa)) + (bm << (f - fb))


class QdqParser:
    QUANTIZERS: tuple[str, ...] = ("QuantizeLinear",)  # the op types that quantize a float result
    def __init__(self, model: onnx.ModelProto, file: str):
        self.model = model
        self.file = file
        self.graph = model.graph
        self.clips: dict[str, tuple[int, int]] = {}  # QuantizeLinear output -> its QCDQ Clip bounds
        self.folded: dict[str, np.ndarray] = {}  # Clip of integer constant codes, evaluated
        nodes, moved = fold_constant_moves(topological_order(self.graph), constants(self.graph),
                                           opset_version(model) or onnx.defs.onnx_opset_version())
        self.nodes = self.fold_qcdq_clips(nodes, constants(self.graph) | moved)
        self.index = {id(n): i for i, n in enumerate(self.graph.node)}
        self.consts = constants(self.graph) | moved | self.folded
        self.producer = producers_map(self.nodes)
        self.consumers = consumers_map(self.nodes)
        self.visited: set[int] = set()
        self.graph_outputs = {o.name for o in self.graph.output}
        self.input_names: set[str] = set()  # the float graph inputs
        self.graph_inputs: list[str] = []  # their logical tensors
        self.fixed_batch: int | None = None
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.taken: set[str] = set()
        # channels-first ONNX tensors held channels last (conv models): logical tensor -> its ONNX per-event shape
        # [C, *spatial] (the logical shape is [*spatial, C]); and tensors flattened from one: logical tensor -> the
        # channels-first shape it was flattened from (its ONNX elements in NCHW order, logical ones in NHWC order)
        self.cl: dict[str, tuple[int, ...]] = {}
        self.order: dict[str, tuple[int, ...]] = {}
        self.counts: dict[str, int] = {}
        self.vals: dict[str, QVal] = {}  # ONNX tensor name -> its quantized value
        self.aliases: dict[str, list[str]] = {}  # logical tensor -> the ONNX names bound to it
        self.exact = True
        self.prologues: dict[str, HostPrologue] = {}  # logical input -> the host's quantizer, when not the type's
        self.user_input_types: dict[str, FixedType] = {}  # float graph inputs the user gave a type (load_qdq)

    def fold_qcdq_clips(self, nodes: list[onnx.NodeProto], consts: dict) -> list[onnx.NodeProto]:
        """Brevitas' QCDQ form writes a sub-8-bit (or narrow) quantizer as ``QuantizeLinear -> Clip(lo, hi) ->
        DequantizeLinear`` on integer codes: that Clip is part of the quantizer. Each such Clip (integer constant
        bounds, the QuantizeLinear's only reader, read only by DequantizeLinear) is dropped and its bounds kept for
        ``qparams``, which narrows the type to them."""
        users: dict[str, list[onnx.NodeProto]] = {}
        for n in nodes:
            for i in n.input:
                users.setdefault(i, []).append(n)
        made = {o: n for n in nodes for o in n.output}
        drop: set[int] = set()
        for clip in nodes:
            if clip.op_type != "Clip" or len(clip.input) != 3 or not clip.input[0]:
                continue
            q = made.get(clip.input[0])
            readers = users.get(clip.output[0], [])
            bounds = [consts.get(b) for b in clip.input[1:]]
            value = consts.get(clip.input[0])
            if (value is not None and np.issubdtype(np.asarray(value).dtype, np.integer)
                    and all(b is not None and np.size(b) == 1 for b in bounds)):
                # TorchScript QCDQ weights: Clip of integer codes stored as a constant -> the clipped constant
                self.folded[clip.output[0]] = np.clip(np.asarray(value), np.asarray(bounds[0]).reshape(-1)[0],
                                                      np.asarray(bounds[1]).reshape(-1)[0])
                drop.add(id(clip))
                continue
            if (q is None or q.op_type != "QuantizeLinear" or len(users.get(q.output[0], [])) != 1 or not readers
                    or any(r.op_type != "DequantizeLinear" or r.input[0] != clip.output[0] for r in readers)
                    or any(b is None or np.size(b) != 1 or not np.issubdtype(np.asarray(b).dtype, np.integer)
                           for b in bounds)):
                continue
            self.clips[q.output[0]] = (int(np.asarray(bounds[0]).reshape(-1)[0]),
                                       int(np.asarray(bounds[1]).reshape(-1)[0]))
            for r in readers:  # a copy reads the codes directly (the model itself stays as it is, for the reference)
                copy = onnx.NodeProto()
                copy.CopyFrom(r)
                copy.input[0] = q.output[0]
                nodes[nodes.index(r)] = copy
            drop.add(id(clip))
        return [n for n in nodes if id(n) not in drop]

    def clipped_range(self, node: onnx.NodeProto, bounds: tuple[int, int], width: int, signed: bool,
                      zero: int) -> tuple[int, bool, bool]:
        """(width, signed, narrow) of the code range a QCDQ Clip leaves; other ranges are refused."""
        lo, hi = bounds
        for w in range(1 if not signed else 2, width + 1):
            if signed and (lo, hi) == (-(1 << (w - 1)), (1 << (w - 1)) - 1):
                return w, True, False
            if signed and (lo, hi) == (-(1 << (w - 1)) + 1, (1 << (w - 1)) - 1):
                return w, True, True
            if not signed and (lo, hi) == (0, (1 << w) - 1):
                return w, False, False
        raise UnsupportedQuantizationError(
            self.where(node), f"the Clip after it keeps the codes [{lo}, {hi}], which is not the range of a "
            f"{'signed' if signed else 'unsigned'} bit width (QCDQ)", "export quantizers with standard ranges")

    # -- helpers ------------------------------------------------------------------------------------------
    def where(self, node: onnx.NodeProto) -> str:
        return node_where(node, self.index.get(id(node)))

    def visit(self, node: onnx.NodeProto) -> None:
        self.visited.add(id(node))

    def users(self, tensor: str) -> list[onnx.NodeProto]:
        return self.consumers.get(tensor, [])

    def bind(self, name: str, val: QVal) -> None:
        self.vals[name] = val
        self.aliases.setdefault(val.tensor, []).append(name)

    def shape(self, val: QVal) -> tuple[int, ...]:
        return self.tensors[val.tensor].shape

    def check_float32(self, bound: int, *fracs: int) -> None:
        """onnxruntime computes the op in float32: exact while the exact result (and every partial result) stays
        below 2**24 LSBs and no scale leaves float32's normal range; otherwise the reference is marked inexact."""
        if bound >= _EXACT_LIMIT or not all(-_FRAC_RANGE <= f <= _FRAC_RANGE for f in fracs):
            self.exact = False

    def single_user(self, tensor: str, node: onnx.NodeProto) -> onnx.NodeProto | None:
        """The one consumer of the unquantized float result ``tensor`` of ``node`` (None: none, or it is a graph
        output); refuses fan-out of a float result (it must be quantized first)."""
        if tensor in self.graph_outputs:
            return None
        users = self.users(tensor)
        if len(users) > 1:
            names = ", ".join(self.where(u) for u in users)
            raise UnsupportedQuantizationError(f"tensor {tensor}", f"the unquantized float result of "
                                               f"{self.where(node)} feeds several nodes ({names})", _QDQ_HINT)
        return users[0] if users else None

    def no_quantize(self, node: onnx.NodeProto, out: str, got: onnx.NodeProto | None) -> UnsupportedQuantizationError:
        what = self.where(got) if got is not None else "the graph output"
        return UnsupportedQuantizationError(
            f"tensor {out}", f"the result of {self.where(node)} goes to {what} without QuantizeLinear",
            "quantize every op output (QuantizeLinear -> DequantizeLinear after each op)")

    def quant_tail(self, node: onnx.NodeProto, optional: bool = False) -> _Tail:
        """``(Q, Relu or None)`` quantizing ``node``'s result: ``-> Q`` or ``-> Relu -> Q``, each the only consumer.
        ``optional`` (ops whose result is still a quantized value): ``(None, None)`` unless a single Q follows."""
        out = node.output[0]
        nxt = None if out in self.graph_outputs else (self.users(out) or [None])[0]
        if nxt is not None and len(self.users(out)) == 1 and nxt.op_type == "QuantizeLinear":
            self.visit(nxt)
            return nxt, None
        if optional:
            return None, None
        nxt = self.single_user(out, node)
        if nxt is not None and nxt.op_type == "Relu":
            q = self.single_user(nxt.output[0], nxt)
            if q is not None and q.op_type == "QuantizeLinear":
                self.visit(nxt)
                self.visit(q)
                return q, nxt
            raise self.no_quantize(nxt, nxt.output[0], q)
        raise self.no_quantize(node, out, nxt)

    def op_name(self, node: onnx.NodeProto | None, kind: str) -> str:
        idx = self.counts.get(kind, 0)
        self.counts[kind] = idx + 1
        fallback = f"{kind}{idx}"
        return unique(identifier(node.name, fallback) if node is not None and node.name else fallback, self.taken)

    def add_op(self, name: str, kind: str, inputs: list[str], shape: tuple[int, ...], qtype: _QType, origin: str,
               attrs: dict | None = None) -> str:
        """Append an op with one new output tensor ``{name}_out``; returns the tensor's name."""
        y = unique(f"{name}_out", self.taken)
        self.tensors[y] = Tensor(y, tuple(shape), qtype.fixed(), origin=origin)
        self.ops.append(Op(name, kind, inputs, [y], attrs or {}))
        if kind in CHANNELS_LAST_KINDS:  # conv / pool results: ONNX [C, *spatial], held [*spatial, C]
            self.cl[y] = (shape[-1], *shape[:-1])
        elif kind == "eltwise" and inputs and tuple(shape) == tuple(self.tensors[inputs[0]].shape):
            if inputs[0] in self.cl:
                self.cl[y] = self.cl[inputs[0]]
            elif inputs[0] in self.order:
                self.order[y] = self.order[inputs[0]]
        return y

    def onnx_shape(self, val: QVal) -> tuple[int, ...]:
        """The ONNX per-event shape of a value (channels first where the logical tensor is channels last)."""
        return self.cl.get(val.tensor, self.shape(val))

    def layout_of(self, val: QVal) -> tuple:
        return (self.cl.get(val.tensor), self.order.get(val.tensor))

    def rows_in_logical_order(self, x: QVal, codes: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
        """Weight rows of a MatMul / Gemm reading ``x`` permuted from the ONNX element order of x's event into
        the logical one (a Flatten of a channels-first conv result is read channels last: no transpose on chip)."""
        if x.tensor in self.cl and len(self.cl[x.tensor]) > 1:
            raise UnsupportedOpError(self.where(node), f"multiplies the channels-first tensor {node.input[0]} of "
                                     f"shape {list(self.cl[x.tensor])} along its last (spatial) axis",
                                     "Flatten the conv result before the dense layer")
        shape = self.order.get(x.tensor)
        if shape is None:
            return codes
        from nn2aie.ir.conv_semantics import nchw_flatten_order

        out = np.empty_like(codes)
        out[nchw_flatten_order(shape[1:], shape[0])] = codes
        return out

    def quantized_result(self, node: onnx.NodeProto, name: str, kind: str, inputs: list[str],
                         shape: tuple[int, ...], q: onnx.NodeProto, relu: onnx.NodeProto | None,
                         attrs: dict | None = None) -> str:
        """An op whose result goes through ``[Relu ->] q``: the op in q's type, then relu if any; binds q's codes."""
        qtype = self.qparams(q, None, _ACT_TYPES, "activation")
        y = self.add_op(name, kind, inputs, shape, qtype, q.output[0], attrs)
        if relu is not None and qtype.signed:  # Q(relu(r)) == relu(Q(r)); unsigned Q already clamps at 0
            y = self.add_op(self.op_name(relu, "relu"), "eltwise", [y], shape, qtype, q.output[0], {"op": "relu"})
        self.bind(q.output[0], QVal(y, qtype, codes=True))
        return y

    def is_constant(self, name: str) -> bool:
        """Known without running the graph: an initializer / Constant, or Q / DQ of one (weights, biases)."""
        if name in self.consts:
            return True
        node = self.producer.get(name)
        return (node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear")
                and self.is_constant(node.input[0]))

    def value(self, name: str, user: onnx.NodeProto, codes_ok: bool = False) -> QVal:
        """The quantized value ``user`` reads (a DequantizeLinear output, or what a view / Relu made of one);
        ``codes_ok``: integer codes are fine too (views move codes as well as values)."""
        val = self.vals.get(name)
        if val is not None and val.pads is not None and user.op_type not in _PAD_READERS:
            raise UnsupportedOpError(self.where(user), f"reads {name}, the output of a Pad: only a Conv, MaxPool or "
                                     "AveragePool takes the zeros into its window",
                                     "pad inside that Conv / pool (its pads attribute), or drop the Pad")
        if val is not None and (codes_ok or not val.codes):
            return val
        where = self.where(user)
        if val is not None:
            raise UnsupportedQuantizationError(where, f"reads the integer codes {name} (a QuantizeLinear output) "
                                               "instead of their DequantizeLinear output",
                                               "dequantize the codes first (QDQ form)")
        if name in self.input_names:
            raise UnsupportedQuantizationError(where, f"reads the float graph input {name} directly",
                                               "quantize the input first (QuantizeLinear -> DequantizeLinear)")
        if self.is_constant(name):
            raise UnsupportedOpError(where, f"input {name} is a constant where nn2aie expects an activation",
                                     "fold computations on constants into the initializers (e.g. onnx-simplifier)")
        producer = self.producer.get(name)
        src = self.where(producer) if producer is not None else "a graph input"
        raise UnsupportedQuantizationError(where, f"reads {name}, the unquantized float result of {src}", _QDQ_HINT)

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
        per_axis = scale.size != 1 or (zp is not None and zp.size != 1)
        if per_axis and role not in ("weight", "bias"):
            raise UnsupportedQuantizationError(
                where, f"per-axis quantization (scale shape {list(scale.shape)}) of an {role} is not supported "
                "(only weights and biases may have one scale per channel)", "quantize activations per tensor")
        flat = scale.reshape(-1).astype(np.float64)
        if not np.all(np.isfinite(flat)) or np.any(flat <= 0):
            bad = float(flat[~(np.isfinite(flat) & (flat > 0))][0])
            raise UnsupportedQuantizationError(where, f"scale {bad!r} is not a positive finite number",
                                               "re-export with positive scales")
        s = float(flat[0])
        frac = pow2_frac(s) if not per_axis else None
        zero = 0
        if zp is not None:
            if zp.dtype not in _NP_TO_ONNX:
                raise UnsupportedQuantizationError(where, f"zero point type {zp.dtype} is not supported",
                                                   "use int8, uint8 or int16 activations and weights")
            zp_type = _NP_TO_ONNX[zp.dtype]
            zps = zp.reshape(-1).astype(np.int64)
            if np.any(zps != zps[0]):
                raise UnsupportedQuantizationError(where, f"zero points {zps.tolist()[:4]} differ per channel",
                                                   "use one zero point per tensor (0 for weights)")
            zero = int(zps[0])
            if zero and role in ("weight", "bias"):
                raise UnsupportedQuantizationError(where, f"zero point {zero} on a {role} is not 0 (asymmetric "
                                                   f"{role}s are not supported)", _ZP_HINT)
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
        narrow = False
        if node.output and node.output[0] in self.clips:  # QCDQ: the Clip after it is part of the quantizer
            width, signed, narrow = self.clipped_range(node, self.clips[node.output[0]], width, signed, zero)
        if frac is not None and zero == 0:
            return _QType(qt, frac, width, signed, narrow)
        if narrow:
            raise UnsupportedQuantizationError(where, "a narrow-range Clip with a float scale is not supported",
                                               "use the full range of the bit width")
        axis = int(attr(node, "axis", 1)) if per_axis else None
        return _SQType(qt, width, signed, tuple(float(v) for v in flat) if per_axis else (s,), zero, where, axis)

    # -- constants ----------------------------------------------------------------------------------------
    def float_const(self, name: str) -> np.ndarray | None:
        if name in self.consts:
            value = np.asarray(self.consts[name])
            return value if np.issubdtype(value.dtype, np.floating) else None
        return None

    def quant_const(self, name: str, allowed: dict[int, tuple[int, bool]], role: str,
                    user: onnx.NodeProto) -> QConst | np.ndarray:
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
            return QConst(raw.astype(np.int64), qt, src)
        qnode = self.producer.get(src)
        if qnode is not None and qnode.op_type == "QuantizeLinear" and self.float_const(qnode.input[0]) is not None:
            self.visit(qnode)
            qt = self.qparams(qnode, None, allowed, role)
            dq = self.qparams(node, qt.onnx_type, allowed, role)
            if isinstance(qt, _SQType) or isinstance(dq, _SQType):
                raise UnsupportedQuantizationError(self.where(qnode), f"a float {role} quantized in the graph "
                                                   "with a float scale", f"store the {role} as integer codes "
                                                   "behind DequantizeLinear (onnxruntime quantize_static does)")
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
            return QConst(codes, qt, qnode.input[0])
        src_where = f"graph input {src}" if qnode is None else self.where(qnode)
        raise UnsupportedOpError(self.where(user), f"{role} {name} is not a constant: {self.where(node)} "
                                 f"dequantizes {src_where}", hint)

    def bias_codes(self, value: QConst | np.ndarray, acc_frac: int, n: int, user: onnx.NodeProto,
                   name: str) -> np.ndarray:
        """Bias as int32 codes at the accumulator's LSB 2**-acc_frac (exact, or refuse)."""
        hint = ("quantize the bias to int32 with scale = input scale x weight scale "
                "(DequantizeLinear of an int32 initializer)")
        int32_msg = f"bias does not fit int32 at the accumulator LSB {_p2(acc_frac)}"
        if isinstance(value, QConst):
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

    def operand_const(self, name: str, a_shape: tuple[int, ...], user: onnx.NodeProto,
                      cl: tuple[int, ...] | None = None) -> tuple[np.ndarray, FixedType, str]:
        """A constant eltwise operand as ``(codes, type, origin)``: DQ of an int initializer (its own type), or a
        float initializer at the finest power-of-two scale it needs (the narrowest signed 8/16/32-bit type); shaped
        as docs/ops.md wants: ``()``, ``(C,)`` (last axis) or ``a_shape``."""
        value = self.quant_const(name, _BIAS_TYPES, "constant", user)
        if isinstance(value, QConst):
            codes, ftype, origin = value.codes, value.qtype.fixed(), value.origin
        else:
            if not np.all(np.isfinite(value)):
                raise UnsupportedQuantizationError(self.where(user), f"the constant {name} contains NaN or inf",
                                                   "fix the exported constant")
            dyadic = dyadic_codes(value)
            ftype = _fixed_for_codes(*dyadic) if dyadic is not None else None
            if ftype is None:
                raise UnsupportedQuantizationError(
                    self.where(user), f"the float constant {name} needs more than 32 bits at one power-of-two "
                    "scale", "quantize the constant (DequantizeLinear of an int8/int16/int32 initializer) or round it")
            codes, origin = dyadic[0], name
        if cl is not None:  # broadcast against the ONNX [C, *spatial] event, then hold it channels last
            full = self.broadcast_const(codes, cl, user, name)
            if full.ndim == 0:
                return full, ftype, origin
            full = np.broadcast_to(full, cl)  # a per-last-axis vector broadcasts along W, as in ONNX
            head = full[(slice(None), *([0] * (len(cl) - 1)))]  # [C]
            if np.array_equal(full, np.broadcast_to(head.reshape(-1, *([1] * (len(cl) - 1))), cl)):
                return np.ascontiguousarray(head), ftype, origin  # per channel: the last axis on chip
            return np.ascontiguousarray(np.moveaxis(full, 0, -1)), ftype, origin
        return self.broadcast_const(codes, a_shape, user, name), ftype, origin

    def broadcast_const(self, codes: np.ndarray, a_shape: tuple[int, ...], user: onnx.NodeProto,
                        name: str) -> np.ndarray:
        """ONNX-broadcast constant -> scalar / per-channel / full per-event shape (refusing batch-dependent ones)."""
        rank = len(a_shape)
        where = self.where(user)
        if codes.ndim > rank + 1:
            raise UnsupportedOpError(where, f"constant {name} of shape {list(codes.shape)} has more axes than the "
                                     f"activation [batch, {', '.join(map(str, a_shape))}]",
                                     "give the constant the activation's shape or fewer axes")
        full = codes.reshape((1,) * (rank + 1 - codes.ndim) + codes.shape)
        per = full[0]
        try:
            grown = np.broadcast_shapes(per.shape, a_shape) != tuple(a_shape)
        except ValueError:
            grown = True
        if full.shape[0] != 1 or grown:
            raise UnsupportedOpError(where, f"constant {name} of shape {list(codes.shape)} does not broadcast to the "
                                     f"activation [batch, {', '.join(map(str, a_shape))}] without enlarging it",
                                     "use a scalar, a per-channel [C] or a per-event constant")
        if per.size == 1:
            return per.reshape(())
        if rank and per.shape[-1] == a_shape[-1] and all(d == 1 for d in per.shape[:-1]):
            return per.reshape(-1)
        return np.ascontiguousarray(np.broadcast_to(per, a_shape))

    def scalar_const(self, name: str, user: onnx.NodeProto, what: str) -> float:
        """A scalar constant operand (Clip bounds) as a float: a float initializer or DQ of an int one."""
        if not self.is_constant(name):
            raise UnsupportedOpError(self.where(user), f"{what} {name} is computed at run time",
                                     f"make the {what} a constant (initializer)")
        value = self.quant_const(name, _BIAS_TYPES, what, user)
        if isinstance(value, QConst):
            arr = value.codes.astype(np.float64) * 2.0 ** -value.qtype.frac
        else:
            arr = np.asarray(value, dtype=np.float64)
        if arr.size != 1:
            raise BadFileError(self.where(user), f"{what} {name} has shape {list(arr.shape)}, not a scalar",
                               "re-export the model")
        return float(arr.reshape(-1)[0])

    # -- the graph ----------------------------------------------------------------------------------------------
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
        if not inputs:
            raise UnsupportedOpError("model", "has no graph input (weights must be initializers)",
                                     "export the model with its float input(s) as graph inputs")
        graph_inputs = self.graph_inputs = [self.graph_input(vi) for vi in inputs]
        batches = {value_shape(vi)[0] for vi in inputs}
        self.fixed_batch = next(iter(batches)) if len(batches) == 1 and isinstance(next(iter(batches)), int) else None
        handlers = {"QuantizeLinear": self.on_quantize, "DequantizeLinear": self.on_dequantize,
                    "MatMul": self.on_dense, "Gemm": self.on_dense, "Conv": self.on_conv, "MaxPool": self.on_maxpool,
                    "AveragePool": self.on_avgpool, "Relu": self.on_relu, "Clip": self.on_clip,
                    "LeakyRelu": self.on_leaky_relu, "Concat": self.on_concat, "Split": self.on_split,
                    "Slice": self.on_slice, "Transpose": self.on_transpose, "Identity": self.on_identity,
                    "Pad": self.on_pad, "BatchNormalization": self.on_unfused_float, "Div": self.on_unfused_float,
                    **{op: self.on_function for op in REGION_ONLY_OPS}, "Softmax": self.on_softmax,
                    "LayerNormalization": self.on_layernorm,
                    **{op: self.on_binary for op in BINARY_OPS}, **{op: self.on_reduce for op in REDUCE_OPS},
                    **{op: self.on_reshape for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze")}}
        for node in self.nodes:
            if id(node) in self.visited:
                continue
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and self.is_constant(node.input[0]):
                continue  # weights / biases / constant operands: resolved by the op that reads them
            self.visit(node)
            handlers[node.op_type](node)
        taken: dict[str, str] = {}
        outputs = [self.graph_output(vi.name, taken) for vi in self.graph.output]
        self.prune(graph_inputs, outputs)
        if not self.ops:
            raise UnsupportedOpError("model", "contains no MatMul/Gemm layer or other operation to compile",
                                     _OPS_HINT)
        name = self.graph.name or "onnx_qdq"
        source = {"framework": "onnx-qdq", "file": self.file, "reference_exact": "yes" if self.exact else "no"}
        host.store(source, host.HOST_PROLOGUE, {t: v for t, v in self.prologues.items() if t in graph_inputs})
        host.store(source, host.HOST_EPILOGUE, self.layout_epilogues(outputs))
        graph = Graph(identifier(name, "onnx_qdq"), self.tensors, self.ops, graph_inputs, outputs, source)
        check_inference(self.model)
        graph.verify()
        return graph

    def graph_input(self, vi: onnx.ValueInfoProto) -> str:
        """A float graph input [batch, *shape] read by QuantizeLinear(s) of one type -> a logical input."""
        x_name = vi.name
        shape = value_shape(vi)
        if elem_type(vi) != T.FLOAT:
            raise UnsupportedQuantizationError(f"graph input {x_name}",
                                               f"has type {elem_type_name(elem_type(vi))}, expected float",
                                               "feed float32 inputs followed by QuantizeLinear")
        if shape is None or len(shape) < 2 or not all(isinstance(d, int) and d >= 1 for d in shape[1:]):
            raise UnsupportedOpError(f"graph input {x_name}", f"has shape {shape}, expected [batch, K] (or "
                                     "[batch, d1, d2, ...]) with static per-event dims",
                                     "export the model with the batch axis first and static feature dims")
        batch = shape[0]
        if isinstance(batch, int) and batch < 1:
            raise BadFileError(f"graph input {x_name}", f"has a fixed batch dimension {batch} (zero-size input)",
                               "export with a dynamic (or positive) batch dimension")
        if isinstance(batch, int) and batch > MAX_FIXED_BATCH:
            raise UnsupportedOpError(f"graph input {x_name}", f"has a fixed batch dimension {batch}: the reference "
                                     f"check pads the inputs to it (at most {MAX_FIXED_BATCH} supported)",
                                     "export with a dynamic batch dimension")
        users = self.users(x_name)
        user_type = self.user_input_types.get(x_name)
        quantized = bool(users) and all(u.op_type == "QuantizeLinear" and u.input[0] == x_name for u in users)
        if user_type is not None:
            if quantized:
                raise IllegalConfigError(f"input type for {x_name}", f"the graph input {x_name} is already "
                                         f"quantized by {self.where(users[0])}", "drop the input type")
            return self.user_typed_input(x_name, tuple(shape[1:]), user_type)
        if not quantized:
            got = next((u for u in users if u.op_type != "QuantizeLinear" or u.input[0] != x_name), None)
            what = self.where(got) if got is not None else "nothing"
            raise UnsupportedQuantizationError(f"graph input {x_name}", f"is consumed by {what}, not a "
                                               "QuantizeLinear: the model reads the float input directly",
                                               USER_INPUT_HINT.format(name=x_name))
        x_type = self.qparams(users[0], None, _ACT_TYPES, "activation")
        for q in users[1:]:
            other = self.qparams(q, None, _ACT_TYPES, "activation")
            if other != x_type:
                raise UnsupportedQuantizationError(
                    self.where(q), f"quantizes the graph input {x_name} to {other.describe()}, "
                    f"{self.where(users[0])} to {x_type.describe()}", "quantize each graph input once")
        lname = unique(identifier(x_name, "input"), self.taken)
        per_event, channels_first = tuple(shape[1:]), ()
        if len(per_event) >= 2 and self.feeds_conv(x_name):  # images: channels first in ONNX, last on chip
            channels_first, per_event = per_event, (*per_event[1:], per_event[0])
            self.cl[lname] = channels_first
        self.tensors[lname] = Tensor(lname, per_event, x_type.fixed(), origin=x_name)
        if isinstance(x_type, _SQType) or channels_first:  # ONNX rounds x / scale, then adds the zero point
            self.prologues[lname] = HostPrologue((), "quantize_linear" if isinstance(x_type, _SQType) else "type",
                                                 tuple(shape[1:]), channels_first)
        self.input_names.add(x_name)
        for q in users:
            self.visit(q)
            self.bind(q.output[0], QVal(lname, x_type, codes=True))
        return lname

    def user_typed_input(self, name: str, shape: tuple[int, ...], t: FixedType) -> str:
        """A float graph input read without a quantizer, cast on the host into the type the user gave."""
        lname = unique(identifier(name, "input"), self.taken)
        self.tensors[lname] = Tensor(lname, shape, t, origin=name)
        self.prologues[lname] = HostPrologue((), "user", shape)
        self.input_names.add(name)
        q = _QType(T.INT16 if t.width > 8 else T.INT8, t.frac, t.width, t.signed, t.narrow, t)
        self.bind(name, QVal(lname, q))
        return lname

    def graph_output(self, name: str, taken: dict[str, str]) -> str:
        """The logical tensor of a graph output (``taken``: logical tensor -> the graph output already using it)."""
        val = self.vals.get(name)
        where = f"graph output {name}"
        if val is None:
            if name in self.input_names:
                raise UnsupportedOpError(where, "is a graph input (nothing is computed)", "remove that output")
            producer = self.producer.get(name)
            src = self.where(producer) if producer is not None else "a constant"
            raise UnsupportedQuantizationError(where, f"is the unquantized float result of {src}",
                                               "end the model with QuantizeLinear (-> DequantizeLinear)")
        if val.pads is not None:
            raise UnsupportedOpError(where, "is the output of a Pad (zeros around an image)",
                                     "end the model at the tensor before the Pad")
        if val.tensor in self.graph_inputs:
            raise UnsupportedOpError(where, f"is the quantized graph input {self.tensors[val.tensor].origin} "
                                     "(nothing is computed)", "remove that output")
        if val.tensor in taken:
            raise UnsupportedOpError(where, f"carries the same values as the graph output {taken[val.tensor]}",
                                     "keep one of the two outputs")
        taken[val.tensor] = name
        self.tensors[val.tensor].origin = name
        return val.tensor

    def prune(self, inputs: list[str], outputs: list[str]) -> None:
        """Drop ops (and their tensors) no graph output depends on: onnxruntime computes them, nothing reads them."""
        needed = set(outputs)
        kept = []
        for op in reversed(self.ops):
            if needed.intersection(op.outputs):
                kept.append(op)
                needed.update(op.inputs)
        self.ops = kept[::-1]
        for name in inputs:
            if name not in needed:
                raise UnsupportedOpError(f"graph input {self.tensors[name].origin}", "no graph output depends on it",
                                         "remove the unused input from the model")
        self.tensors = {k: t for k, t in self.tensors.items() if k in needed}

    def check_dynamic_weights(self, inputs: list[onnx.ValueInfoProto]) -> None:
        """A graph input used (directly or through DequantizeLinear) as MatMul/Gemm weights or bias."""
        for vi in inputs:
            for user in self.users(vi.name):
                chain = [user]
                if user.op_type == "DequantizeLinear":
                    chain = self.users(user.output[0])
                    operand = user.output[0]
                else:
                    operand = vi.name
                for node in chain:
                    if node.op_type in ("MatMul", "Gemm") and operand in list(node.input)[1:]:
                        raise UnsupportedOpError(
                            self.where(node), f"its weights/bias come from the graph input {vi.name} "
                            "(dynamic weights)", "store weights and biases as initializers")

    # -- quantize / dequantize ------------------------------------------------------------------------------
    def on_quantize(self, q: onnx.NodeProto) -> None:
        """QuantizeLinear of a quantized value: exact when it repeats the type, else one requantisation."""
        val = self.value(q.input[0], q)
        qtype = self.qparams(q, None, _ACT_TYPES, "activation")
        if qtype == val.qtype:
            self.bind(q.output[0], QVal(val.tensor, qtype, codes=True, pads=val.pads))
            return
        if val.pads is not None:
            raise UnsupportedQuantizationError(self.where(q), f"requantises the output of a Pad into "
                                               f"{qtype.describe()}", "quantize the Pad's output as its input")
        if isinstance(qtype, _SQType) or isinstance(val.qtype, _SQType):
            raise UnsupportedQuantizationError(
                self.where(q), f"requantises {val.qtype.describe()} into {qtype.describe()}: a requantisation "
                "between float scales outside a MatMul / Gemm layer is not supported yet",
                "quantize the value once (one QuantizeLinear / DequantizeLinear pair)")
        y = self.add_op(self.op_name(q, "identity"), "eltwise", [val.tensor], self.shape(val), qtype, q.output[0],
                        {"op": "identity"})
        self.bind(q.output[0], QVal(y, qtype, codes=True))

    def on_dequantize(self, dq: onnx.NodeProto) -> None:
        src = dq.input[0]
        val = self.vals.get(src)
        if val is None or not val.codes:
            what = f"the graph input {src}" if src in self.input_names else f"{src}, not the output of a " \
                "QuantizeLinear of an activation"
            raise UnsupportedQuantizationError(self.where(dq), f"dequantizes {what}",
                                               "use the QDQ form: DequantizeLinear reads a QuantizeLinear output")
        qtype = self.qparams(dq, val.qtype.onnx_type, _ACT_TYPES, "activation")
        if isinstance(qtype, _SQType) or isinstance(val.qtype, _SQType):
            if (isinstance(qtype, _SQType) and isinstance(val.qtype, _SQType) and qtype.scale == val.qtype.scale
                    and qtype.zero_point == val.qtype.zero_point):
                self.bind(dq.output[0], QVal(val.tensor, val.qtype, pads=val.pads))
                return
            producer = self.producer.get(src)
            qwhere = self.where(producer) if producer is not None else "the QuantizeLinear"
            raise UnsupportedQuantizationError(
                self.where(dq), f"its scale / zero point ({qtype.describe()}) differ from those of {qwhere} "
                f"({val.qtype.describe()})", "use the same scale and zero point on both nodes of a pair")
        if qtype.frac != val.qtype.frac:
            raise UnsupportedQuantizationError(
                self.where(dq), f"scale {_p2(qtype.frac)} differs from the QuantizeLinear scale "
                f"{_p2(val.qtype.frac)}", "use the same scale on both nodes of a QuantizeLinear/DequantizeLinear pair")
        self.bind(dq.output[0], QVal(val.tensor, val.qtype, pads=val.pads))

    # -- layouts --------------------------------------------------------------------------------------------
    def feeds_conv(self, name: str) -> bool:
        """Whether a Conv / pool reads the value (through quantizers, Relu, Identity)."""
        seen, todo = {name}, [name]
        while todo:
            t = todo.pop()
            for u in self.users(t):
                if u.op_type in CONV_OPS and u.input and u.input[0] == t:
                    return True
                if u.op_type in ("QuantizeLinear", "DequantizeLinear", "Relu", "Identity", "Clip", "Quant", "Pad",
                                 "BipolarQuant", "Mul", "Sub", "Add", "Div") and \
                        u.output and u.output[0] not in seen:
                    seen.add(u.output[0])
                    todo.append(u.output[0])
        return False

    def layout_epilogues(self, outputs: list[str], epilogues: dict | None = None) -> dict:
        """Graph outputs held channels last: the host transposes them back (ir/host.py)."""
        from nn2aie.ir.host import HostEpilogue, channels_last_order

        out = dict(epilogues or {})
        for t in outputs:
            shape = self.cl.get(t) or self.order.get(t)
            if shape and not np.array_equal(channels_last_order(shape), np.arange(math.prod(shape))):
                steps = out[t].steps if t in out else ()
                out[t] = HostEpilogue(steps, tuple(shape))
        return out

    # -- conv -----------------------------------------------------------------------------------------------
    def channels_first_input(self, node: onnx.NodeProto, x: QVal) -> tuple[int, ...]:
        cf = self.cl.get(x.tensor)
        if cf is None:
            raise UnsupportedOpError(self.where(node), f"reads {node.input[0]} of shape {list(self.shape(x))}, which "
                                     "is not an image held channels last (a graph input or a conv / pool result)",
                                     "feed the convolution from the graph input or another convolution")
        return cf

    def on_conv(self, node: onnx.NodeProto) -> None:
        """Conv: a linear op over the im2col matrix of its weights (kernels/conv/logical.py), parsed like a dense
        layer from there on (bias, Relu, float steps, QuantizeLinear; float scales)."""
        from nn2aie.ir.conv_semantics import weights_from_onnx

        where = self.where(node)
        x = self.value(node.input[0], node)
        cf = self.channels_first_input(node, x)
        w = self.quant_const(node.input[1], _WEIGHT_TYPES, "weight", node)
        if not isinstance(w, QConst):
            raise UnsupportedQuantizationError(where, f"weights {node.input[1]} are float, not quantized",
                                               "quantize the weights (DequantizeLinear of an int8 initializer)")
        geo = conv_geometry(node, where, cf, tuple(w.codes.shape), x.pads)
        m = geo.filters
        if isinstance(w.qtype, _SQType) and w.qtype.axis is not None:
            axis = w.qtype.axis + w.codes.ndim if w.qtype.axis < 0 else w.qtype.axis
            if axis != 0 or len(w.qtype.scale) != m:
                raise UnsupportedQuantizationError(w.qtype.where, f"per-axis weight scales along axis "
                                                   f"{w.qtype.axis} are not one per output channel",
                                                   "quantize the weights per output channel (axis 0) or per tensor")
        codes = weights_from_onnx(w.codes).reshape(-1, m)
        bias_src = (node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        layer = LinearLayer("conv", conv_attrs(geo), (*geo.out_spatial, m), (m, *geo.out_spatial),
                            len(geo.spatial))
        self.linear_layer(node, x, w, codes, bias_src, layer)

    def on_maxpool(self, node: onnx.NodeProto) -> None:
        """MaxPool of a quantized image: a selection of codes, so its result is a value of the input's type (the
        QuantizeLinear after it, if any, is handled as a requantisation of that value)."""
        x = self.value(node.input[0], node)
        cf = self.channels_first_input(node, x)
        if x.pads is not None and (x.qtype.lo < 0 or getattr(x.qtype, "zero_point", 0)):
            raise UnsupportedOpError(self.where(node), f"max-pools the output of a Pad of {x.qtype.describe()} "
                                     "codes: nn2aie's pool padding is the smallest code (ONNX's -inf), which the "
                                     "Pad's zeros are only for unsigned codes with zero point 0",
                                     "pad inside the MaxPool (its pads attribute)")
        attrs = pool_attrs(node, self.where(node), cf, x.pads)
        out = attrs.pop("out")
        y = self.add_op(self.op_name(node, "maxpool"), "pool", [x.tensor], (*out, cf[0]), x.qtype, node.output[0],
                        attrs)
        self.bind(node.output[0], QVal(y, x.qtype))

    def on_pad(self, node: onnx.NodeProto) -> None:
        """A zero Pad of the spatial axes of an image: no op of its own -- the Conv / pool reading it takes the
        zeros into its padding (the memory tile's zero padding on chip)."""
        x = self.value(node.input[0], node, codes_ok=True)
        cf = self.channels_first_input(node, x)
        pads = pad_of(node, self.where(node), len(cf) + 1,
                      lambda name: np.asarray(self.consts[name]) if self.is_constant(name) else None)
        if x.pads is not None:  # two Pads in a row: their zeros add up
            pads = tuple(tuple(a + b for a, b in zip(p, q, strict=True)) for p, q in zip(x.pads, pads, strict=True))
        self.bind(node.output[0], dataclasses.replace(x, pads=pads if any(pads[0] + pads[1]) else x.pads))

    def on_avgpool(self, node: onnx.NodeProto) -> None:
        """AveragePool with one divisor for every window (no padding, or count_include_pad=1; no partial ceil_mode
        windows): the exact window sum as a depthwise conv with unit weights, and onnxruntime's own float32
        division and QuantizeLinear read off on every reachable sum (a threshold table / multiplier, as a BatchNorm
        after a layer)."""
        from nn2aie.frontends.source_eval import chain_function, step_thresholds
        from nn2aie.ir.pool_semantics import PoolGeometry

        where = self.where(node)
        x = self.value(node.input[0], node)
        cf = self.channels_first_input(node, x)
        if isinstance(x.qtype, _SQType):
            raise UnsupportedQuantizationError(where, "average pooling of a float-scale value is not supported yet",
                                               "use power-of-two scales around the AveragePool")
        own_pads = any(attr(node, "pads", []) or []) or attr(node, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET",
                                                                                                  "VALID", b"VALID")
        attrs = pool_attrs(node, where, cf, x.pads)  # a Pad's zeros are always counted, the pool's own maybe not
        out = attrs.pop("out")
        geo = PoolGeometry(tuple(cf[1:]), tuple(attrs["kernel"]), tuple(attrs["strides"]), tuple(attrs["pads_begin"]),
                           tuple(attrs["pads_end"]), tuple(attrs["dilations"]), attrs["ceil_mode"])
        if own_pads and not attr(node, "count_include_pad", 0):
            raise UnsupportedOpError(where, "averages over padding with count_include_pad=0: the divisor differs at "
                                     "the image's edges", "pad explicitly (count_include_pad=1) or drop the padding")
        if attrs["ceil_mode"] and geo.out_spatial != PoolGeometry(geo.spatial, geo.kernel, geo.strides,
                                                                  geo.pads_begin, geo.pads_end, geo.dilations,
                                                                  False).out_spatial:
            raise UnsupportedOpError(where, "ceil_mode adds partial windows whose divisor differs",
                                     "use ceil_mode=0 or a shape the windows divide")
        channels, taps = cf[0], int(np.prod(attrs["kernel"]))
        tail = self.avgpool_tail(node)
        y_type = tail.y_type
        # the sum S of the window's codes; the source computes float32(S * sx) exactly (below 2**24 LSBs), divides
        # by the count in float32 and quantizes: read off as a step function of S on every reachable sum
        sx = x.qtype.frac
        lo, hi = taps * x.qtype.lo, taps * x.qtype.hi
        self.check_float32(max(-lo, hi), sx)
        div_c = unique("avgpool_count", self.taken)
        consts = dict(self.consts)
        consts[div_c] = np.asarray(np.float32(taps))
        div = onnx.helper.make_node("Div", [node.input[0] + "_sum", div_c], [node.output[0]], name=node.name or "avg")
        fn = chain_function([div, *tail.nodes], consts, node.input[0] + "_sum", list(self.model.opset_import),
                            lambda acc: np.ldexp(acc, -sx).astype(np.float32), tail.to_code, runner=tail.runner,
                            out_type=tail.out_type, trailing=len(cf) - 1)
        thresholds, negated, acc_lo, acc_hi = step_thresholds(fn, lo, hi, 1, y_type.lo, y_type.hi, where)
        name = self.op_name(node, "avgpool")
        w_name = unique(f"{name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (taps, channels), FixedType(2, 0, True), np.ones((taps, channels),
                                                                                              dtype=np.int64))
        table = {"thresholds": [thresholds[0].tolist()] * channels, "acc_range": [acc_lo, acc_hi],
                 "clamp": [y_type.lo, y_type.hi], "negated_channels": [],
                 "source": f"{node.name or 'AveragePool'}: the window sum divided by {taps} and quantized "
                           f"({' -> '.join(n.op_type for n in tail.nodes)}), run by {tail.runner} on every "
                           "reachable sum"}
        conv = {"kernel": attrs["kernel"], "strides": attrs["strides"], "dilations": attrs["dilations"],
                "pads_begin": attrs["pads_begin"], "pads_end": attrs["pads_end"], "groups": channels}
        y = self.add_op(name, "conv", [x.tensor, w_name], (*out, channels), y_type, tail.output,
                        {"activation": "linear", "requant_table": table, **conv})
        self.bind(tail.output, QVal(y, y_type, codes=True))

    def avgpool_tail(self, node: onnx.NodeProto) -> PoolTail:
        """The QuantizeLinear after an AveragePool (no Relu between: apply it before the pool)."""
        q, relu = self.quant_tail(node)
        if relu is not None:
            raise UnsupportedOpError(self.where(relu), "a Relu after an average pool of a quantized value",
                                     "apply the Relu before the pool")
        zp = self.consts.get(q.input[2]) if len(q.input) > 2 and q.input[2] else None
        out_type = _NP_TO_ONNX.get(np.asarray(zp).dtype, T.UINT8) if zp is not None else T.UINT8
        return PoolTail([q], self.qparams(q, None, _ACT_TYPES, "activation"),
                        lambda v: np.asarray(v).astype(np.int64), "onnxruntime", out_type, q.output[0])

    # -- dense ----------------------------------------------------------------------------------------------
    def on_dense(self, node: onnx.NodeProto) -> None:
        where = self.where(node)
        if node.op_type == "MatMul" and len(node.input) == 2 and not self.is_constant(node.input[0]) \
                and not self.is_constant(node.input[1]):
            self.on_matmul_of_activations(node)
            return
        if self.is_constant(node.input[0]):
            raise UnsupportedOpError(where, f"multiplies the constant {node.input[0]} by an activation (W @ x)",
                                     "put the activation first (x @ W, transposing the weights)")
        x = self.value(node.input[0], node)
        x_shape = self.shape(x)
        k = x_shape[-1]
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
        if not isinstance(w, QConst):
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
        if isinstance(w.qtype, _SQType) and w.qtype.axis is not None:
            rank = w.codes.ndim
            axis = w.qtype.axis + rank if w.qtype.axis < 0 else w.qtype.axis
            if axis != (0 if trans_b else 1) or len(w.qtype.scale) != n:
                raise UnsupportedQuantizationError(w.qtype.where, f"per-axis weight scales along axis "
                                                   f"{w.qtype.axis} are not one per output channel",
                                                   "quantize the weights per output channel (or per tensor)")
        codes = self.rows_in_logical_order(x, codes, node)
        layer = LinearLayer("dense", {}, x_shape[:-1] + (n,), (*x_shape[:-1], n))
        self.linear_layer(node, x, w, codes, bias_src, layer)

    def on_matmul_of_activations(self, node: onnx.NodeProto) -> None:
        """``MatMul`` of two quantized values ``[*L, M, K] @ [*L, K, N]`` (attention scores, weighted sums, token
        mixing), optionally followed by ``Mul`` / ``Div`` by a power-of-two constant (a ``1 / sqrt(d)`` with ``d`` a
        power of four), then one quantizer: a ``matmul`` op (exact sums, one requantisation)."""
        where = self.where(node)
        a, b = self.value(node.input[0], node), self.value(node.input[1], node)
        for val, name in ((a, node.input[0]), (b, node.input[1])):
            if self.off_grid(val.qtype):
                raise UnsupportedQuantizationError(where, f"multiplies {name} of {val.qtype.describe()}: a product "
                                                   "of two activations needs power-of-two scales with zero point 0 "
                                                   "so far", _POW2_HINT)
            if val.tensor in self.cl and len(self.cl[val.tensor]) > 1:
                raise UnsupportedOpError(where, f"multiplies the channels-first conv result {name}",
                                         "flatten or transpose it explicitly first")
        sa, sb = self.shape(a), self.shape(b)
        if len(sa) < 2 or len(sb) != len(sa) or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            raise UnsupportedOpError(where, f"multiplies per-event shapes {list(sa)} @ {list(sb)}; nn2aie takes "
                                     "[*L, M, K] @ [*L, K, N] with the same leading axes (no broadcasting)",
                                     "reshape / transpose the operands to that form")
        shift, last = 0, node
        while True:  # power-of-two scalings of the float result before its quantizer
            out = last.output[0]
            users = [] if out in self.graph_outputs else self.users(out)
            if len(users) != 1 or users[0].op_type not in ("Mul", "Div"):
                break
            step = users[0]
            other = [i for i in step.input if i != out]
            value = self.float_values(other[0]) if len(other) == 1 and self.is_constant(other[0]) else None
            exponent = pow2_frac(float(np.asarray(value).reshape(-1)[0])) if value is not None and \
                np.size(value) == 1 else None
            if exponent is None or (step.op_type == "Div" and step.input[0] != out):
                raise UnsupportedOpError(self.where(step), "scales a product of two activations by something other "
                                         "than a power-of-two constant", "scale one operand before the MatMul (e.g. "
                                         "the queries by 1 / sqrt(d)), or use a head size that is a power of four")
            shift += exponent if step.op_type == "Mul" else -exponent
            self.visit(step)
            last = step
        q, relu = self.quant_tail(last)
        bound = sa[-1] * a.qtype.max_abs * b.qtype.max_abs
        self.check_float32(bound, a.qtype.frac, b.qtype.frac)
        name = self.op_name(node, "matmul")
        self.quantized_result(node, name, "matmul", [a.tensor, b.tensor], (*sa[:-1], sb[-1]), q, relu,
                              {"frac_shift": int(shift)} if shift else {})

    def linear_layer(self, node: onnx.NodeProto, x: QVal, w: QConst, codes: np.ndarray, bias_src,
                     layer: LinearLayer) -> None:
        """A MatMul / Gemm / Conv sum ``x . codes`` (codes [K, N] in the logical input order) and what follows it:
        a bias Add, Relu, float steps or QuantizeLinear; the op is ``layer.kind`` (dense, conv)."""
        where = self.where(node)
        x_shape = self.shape(x)
        n = codes.shape[1]
        scaled = isinstance(x.qtype, _SQType) or isinstance(w.qtype, _SQType)
        acc_frac = 0 if scaled else x.qtype.frac + w.qtype.frac
        out = node.output[0]
        nxt = self.single_user(out, node)
        if node.op_type == "MatMul" and nxt is not None and nxt.op_type == "Add":
            other = [i for i in nxt.input if i != out]
            if len(other) != 1 or len(nxt.input) != 2:
                raise UnsupportedOpError(self.where(nxt), "adds the layer output to itself", _OPS_HINT)
            if not self.is_constant(other[0]):
                raise UnsupportedQuantizationError(
                    self.where(nxt), f"adds {other[0]} to the unquantized result of {where}",
                    "quantize the MatMul/Gemm result (QuantizeLinear -> DequantizeLinear) before the Add, or make "
                    "the added tensor a constant bias")
            self.visit(nxt)
            bias_src = (other[0], nxt)
            out = nxt.output[0]
            nxt = self.single_user(out, nxt)
        bias = None
        bias_value = None
        if bias_src is not None:
            name, user = bias_src
            bias_value = self.quant_const(name, _BIAS_TYPES, "bias", user)
            if not scaled:
                bias = self.bias_codes(bias_value, acc_frac, n, user, name)
        activation = "linear"
        if nxt is not None and nxt.op_type == "Relu":
            self.visit(nxt)
            activation = "relu"
            out = nxt.output[0]
            nxt = self.single_user(out, nxt)
        if nxt is not None and nxt.op_type in ("BatchNormalization", "Mul", "Div", "Add", "Sub", "Clip") and \
                self.epilogue_step(nxt, out, n, x_shape, layer):
            self.stepped_dense(node, x, w, codes, bias, bias_src, activation, out, nxt, x_shape, layer)
            return
        if nxt is None or nxt.op_type != "QuantizeLinear":
            got = self.where(nxt) if nxt is not None else "the graph output"
            raise UnsupportedQuantizationError(
                f"tensor {out}", f"the result of {where} goes to {got} without QuantizeLinear",
                "quantize every layer output (QuantizeLinear -> DequantizeLinear after each MatMul/Gemm)")
        self.visit(nxt)
        y_type = self.qparams(nxt, None, _ACT_TYPES, "activation")
        if scaled or isinstance(y_type, _SQType):
            if bias_value is not None and bias is not None:  # the bias was put on the fixed-point grid: redo
                bias = None
            self.scaled_dense(node, x, w, codes, bias_src, bias_value, activation, nxt, y_type, layer)
            return

        op_name = self.op_name(node, layer.kind)
        w_name = unique(f"{op_name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, codes.shape, w.qtype.fixed(), np.ascontiguousarray(codes, np.int64),
                                      origin=w.origin)
        inputs = [x.tensor, w_name]
        if bias is not None:
            b_name = unique(f"{op_name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), FixedType(32, acc_frac, True, "RND_CONV", "SAT"),
                                          bias, origin=bias_src[0])
            inputs.append(b_name)
        y_name = self.add_op(op_name, layer.kind, inputs, layer.out_shape, y_type, nxt.output[0],
                             {"activation": activation, **layer.attrs})
        self.bind(nxt.output[0], QVal(y_name, y_type, codes=True))

        col = int(np.abs(codes).sum(axis=0).max(initial=0))
        b_max = int(np.abs(bias).max(initial=0)) if bias is not None else 0
        self.check_float32(x.qtype.max_abs * col + b_max, x.qtype.frac, w.qtype.frac, acc_frac, y_type.frac)

    def on_unfused_float(self, node: onnx.NodeProto) -> None:
        """BatchNormalization or Div that no MatMul / Gemm epilogue took (a Div may start a function's table)."""
        if node.op_type == "Div" and self.function_region(node):
            return
        raise UnsupportedOpError(self.where(node), f"{node.op_type} is supported only between a MatMul / Gemm and "
                                 "its QuantizeLinear (BatchNorm of a [batch, features] sum; Div by a constant)",
                                 "fold it into the preceding layer before quantizing, or place it right after one")

    # -- float steps between a dense sum and its QuantizeLinear ------------------------------------------------
    def epilogue_const(self, name: str) -> np.ndarray | None:
        return self.float_const(name)

    def epilogue_step(self, node: onnx.NodeProto, value: str, n: int, x_shape: tuple[int, ...],
                      layer: LinearLayer | None = None) -> bool:
        """A float step reading ``value`` (a [batch, n] sum or a step after it), monotone in it per channel:
        BatchNormalization, Mul / Div / Add / Sub by a constant (scalar or per channel; x / c, not c / x), Relu, Clip
        with constant bounds (constants found by ``epilogue_const``; the QONNX parser looks through Identity)."""
        if node.domain not in ("", "ai.onnx") or value not in node.input:
            return False
        if node.op_type == "Relu":
            return True
        others = [i for i in node.input if i and i != value]
        if node.op_type in ("Mul", "Add", "Sub", "Div"):
            if len(node.input) != 2 or len(others) != 1 or (node.op_type == "Div" and node.input[0] != value):
                return False
        elif node.input[0] != value:
            return False
        sum_shape = layer.sum_shape if layer is not None else (*x_shape[:-1], n)
        for name in others:
            c = self.epilogue_const(name)
            if c is None:
                return False
            if node.op_type == "BatchNormalization":  # per channel along axis 1, not numpy-broadcast
                if np.size(c) not in (1, n):
                    return False
                continue
            try:
                if np.broadcast_shapes(np.shape(c), (1, *sum_shape)) != (1, *sum_shape):
                    return False
                if layer is not None and layer.trailing and np.size(c) > 1 and np.ndim(c) >= layer.trailing and \
                        any(d != 1 for d in np.shape(c)[-layer.trailing:]):
                    return False  # a constant that varies over the spatial axes is not per channel
            except ValueError:
                return False
        if node.op_type == "BatchNormalization":  # channels on axis 1: the layer's outputs (a [batch, n] sum or NCHW)
            return ((len(sum_shape) == 1 or (layer is not None and layer.trailing > 0)) and len(node.input) == 5
                    and not attr(node, "training_mode", 0) and len(node.output) == 1)
        return node.op_type in ("Mul", "Add", "Sub", "Div", "Clip")

    def stepped_dense(self, node: onnx.NodeProto, x: QVal, w: QConst, codes: np.ndarray, bias, bias_src,
                      activation: str, sum_name: str, first: onnx.NodeProto, x_shape: tuple[int, ...],
                      layer: LinearLayer) -> None:
        """MatMul / Gemm whose float sum goes through BatchNormalization or float steps into QuantizeLinear: the
        epilogue is read off onnxruntime on every reachable accumulator (frontends/source_eval.py) as a per-channel
        threshold table (kernels/linear_stepped.py); power-of-two operands (the float sum is then exact)."""
        from nn2aie.frontends.source_eval import chain_function, step_thresholds

        where = self.where(node)
        if isinstance(x.qtype, _SQType) or isinstance(w.qtype, _SQType):
            raise UnsupportedQuantizationError(
                where, f"float operations ({first.op_type}) between a layer with float-scale operands and its "
                "QuantizeLinear are not supported", "fold them into the weights before quantizing (onnxruntime's "
                "quantize_static does), or use power-of-two scales")
        k, n = codes.shape
        acc_frac = x.qtype.frac + w.qtype.frac
        chain, nxt = [], first
        if activation == "relu":  # the Relu before the chain: part of it (the tile sees only the table)
            relu = next(u for u in self.nodes if u.op_type == "Relu" and u.output[0] == sum_name)
            chain.append(relu)
            value = relu.input[0]
            sum_name = value
        value = chain[-1].output[0] if chain else sum_name
        while nxt is not None and self.epilogue_step(nxt, value, n, x_shape, layer):
            self.visit(nxt)
            chain.append(nxt)
            value = nxt.output[0]
            nxt = self.single_user(value, nxt)
        if nxt is None or nxt.op_type != "QuantizeLinear" or nxt.input[0] != value:
            got = self.where(nxt) if nxt is not None else "the graph output"
            raise UnsupportedQuantizationError(f"tensor {value}", f"the float steps after {where} go to {got} "
                                               "without QuantizeLinear", "quantize the result (QuantizeLinear)")
        self.visit(nxt)
        y_type = self.qparams(nxt, None, _ACT_TYPES, "activation")
        b_codes = bias if bias is not None else np.zeros(n, dtype=np.int64)
        w64 = codes.astype(np.int64)
        low = np.minimum(w64 * x.qtype.lo, w64 * x.qtype.hi).sum(axis=0) + b_codes
        high = np.maximum(w64 * x.qtype.lo, w64 * x.qtype.hi).sum(axis=0) + b_codes
        acc_lo, acc_hi = int(low.min(initial=0)), int(high.max(initial=0))
        self.check_float32(max(-acc_lo, acc_hi), x.qtype.frac, w.qtype.frac, acc_frac)
        zp = self.consts.get(nxt.input[2]) if len(nxt.input) > 2 and nxt.input[2] else None
        out_type = _NP_TO_ONNX.get(np.asarray(zp).dtype, T.UINT8) if zp is not None else T.UINT8

        def to_input(acc: np.ndarray) -> np.ndarray:  # the source's float sum of that accumulator (exact)
            return np.ldexp(acc, -acc_frac).astype(np.float32)

        def to_code(v: np.ndarray) -> np.ndarray:  # QuantizeLinear's output is the code
            return np.asarray(v).astype(np.int64)

        fn = chain_function([*chain, nxt], self.consts, sum_name, list(self.model.opset_import), to_input, to_code,
                            runner="onnxruntime", out_type=out_type, trailing=layer.trailing)
        thresholds, negated, acc_lo, acc_hi = step_thresholds(fn, acc_lo, acc_hi, n, y_type.lo, y_type.hi, where)
        if negated.any():
            flipped = -w64[:, negated]
            if flipped.min(initial=0) < w.qtype.lo or flipped.max(initial=0) > w.qtype.hi:
                col = int(np.nonzero(negated)[0][0])
                raise UnsupportedQuantizationError(
                    where, f"output channel {col} falls as its sum grows (a negative BatchNorm / Mul scale): the tile "
                    f"accumulates the negated weights, and {-w.qtype.lo} is not an {elem_type_name(w.qtype.onnx_type)} "
                    "code", "quantize the weights to a narrow (symmetric) range, e.g. [-127, 127]")
            w64 = w64.copy()
            w64[:, negated] = flipped
            b_codes = np.where(negated, -b_codes, b_codes)
        op_name = self.op_name(node, layer.kind)
        w_name = unique(f"{op_name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (k, n), w.qtype.fixed(), np.ascontiguousarray(w64), origin=w.origin)
        inputs = [x.tensor, w_name]
        if np.any(b_codes):
            b_name = unique(f"{op_name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), FixedType(32, acc_frac, True, "RND_CONV", "SAT"), b_codes,
                                          origin=bias_src[0] if bias_src else "")
            inputs.append(b_name)
        table = {"thresholds": thresholds.tolist(), "acc_range": [acc_lo, acc_hi], "clamp": [y_type.lo, y_type.hi],
                 "negated_channels": [int(i) for i in np.nonzero(negated)[0]],
                 "source": " -> ".join(c.name or c.op_type for c in [*chain, nxt]) + ", run by onnxruntime on the "
                           "layer's accumulator values"}
        y = self.add_op(op_name, layer.kind, inputs, layer.out_shape, y_type, nxt.output[0],
                        {"activation": "linear", "requant_table": table, **layer.attrs})
        self.bind(nxt.output[0], QVal(y, y_type, codes=True))
        if isinstance(y_type, _SQType):
            self.exact = False

    def scaled_dense(self, node: onnx.NodeProto, x: QVal, w: QConst, codes: np.ndarray, bias_src,
                     bias_value, activation: str, quant: onnx.NodeProto, y_type, layer: LinearLayer) -> None:
        """A MatMul / Gemm with float scales or zero points (onnxruntime quantize_static's form): every tensor
        typed with its scales (weights per output channel), kernels/linear_scaled.py defines the exact map; the
        source computes in float32, so the reference is not provably exact (docs/numerics.md)."""
        k, n = codes.shape
        op_name = self.op_name(node, layer.kind)
        if isinstance(w.qtype, _SQType):
            per = w.qtype.scale if len(w.qtype.scale) > 1 and len(set(w.qtype.scale)) > 1 else None
            w_type = w.qtype.fixed(per) if per else w.qtype.fixed(w.qtype.scale[:1])
        else:
            w_type = w.qtype.fixed()
        w_name = unique(f"{op_name}_w", self.taken)
        self.tensors[w_name] = Tensor(w_name, (k, n), w_type, np.ascontiguousarray(codes, np.int64), origin=w.origin)
        inputs = [x.tensor, w_name]
        if bias_src is not None:
            b_codes, b_type = self.scaled_bias(bias_value, n, bias_src[1], bias_src[0])
            b_name = unique(f"{op_name}_b", self.taken)
            self.tensors[b_name] = Tensor(b_name, (n,), b_type, b_codes, origin=bias_src[0])
            inputs.append(b_name)
        y = self.add_op(op_name, layer.kind, inputs, layer.out_shape, y_type, quant.output[0],
                        {"activation": activation, **layer.attrs})
        self.bind(quant.output[0], QVal(y, y_type, codes=True))
        self.exact = False  # float32 sums near a rounding boundary: docs/numerics.md

    def scaled_bias(self, value, n: int, user: onnx.NodeProto, name: str) -> tuple[np.ndarray, FixedType | ScaledType]:
        """Bias codes and an exact type: DequantizeLinear'd int codes with their (per-channel) scales, or a float32
        bias as each value's own mantissa and power-of-two scale."""
        if isinstance(value, QConst):
            codes = np.broadcast_to(value.codes.reshape(-1) if value.codes.size > 1 else value.codes.reshape(1),
                                    (n,)).astype(np.int64)
            if isinstance(value.qtype, _SQType):
                scales = value.qtype.scale
                if len(scales) not in (1, n):
                    raise UnsupportedQuantizationError(value.qtype.where, f"{len(scales)} bias scales for {n} "
                                                       "outputs", "use one bias scale, or one per output channel")
                return codes, ScaledType(value.qtype.width, True, scales if len(set(scales)) > 1 else scales[:1])
            return codes, FixedType(value.qtype.width, value.qtype.frac, value.qtype.signed)
        values = np.broadcast_to(np.asarray(value, dtype=np.float32).reshape(-1) if np.size(value) > 1 else
                                 np.asarray(value, dtype=np.float32).reshape(1), (n,)).astype(np.float64)
        mantissa, exponent = np.frexp(values)
        codes = np.rint(np.ldexp(mantissa, 24)).astype(np.int64)  # float32 mantissas have 24 bits: exact
        exps = np.where(codes == 0, 0, exponent - 24)
        if np.any(exps < -149) or not np.all(np.isfinite(values)):
            raise UnsupportedQuantizationError(self.where(user), f"the float bias {name} has values that are not "
                                               "finite or below 2^-125", "set such bias values to 0")
        scales = tuple(float(np.ldexp(1.0, int(e))) for e in exps)
        return codes, ScaledType(26, True, scales if len(set(scales)) > 1 else scales[:1], (0,))

    # -- eltwise --------------------------------------------------------------------------------------------
    def foldable_relu(self, relu: onnx.NodeProto, val: QVal) -> Op | None:
        """The dense / conv op whose own Q -> DQ feeds only this Relu (then relu can be its activation), else None."""
        producer = next((op for op in self.ops if val.tensor in op.outputs), None)
        if producer is None or producer.kind not in ("dense", "conv"):
            return None
        names = self.aliases.get(val.tensor, [])
        if len(names) != 2 or relu.input[0] not in names:
            return None  # the dense's Q output and one DequantizeLinear output, nothing else
        return producer if all(len(self.users(n)) == 1 and n not in self.graph_outputs for n in names) else None

    # -- elementwise float functions of one value: lookup tables -----------------------------------------------
    def const_size(self, name: str) -> int:
        if name in self.consts:
            return int(np.size(self.consts[name]))
        return self.const_size(self.producer[name].input[0])  # Q / DQ of a constant

    def const_nodes(self, names: list[str]) -> list[onnx.NodeProto]:
        """The Q / DQ nodes computing the constants ``names`` from initializers, in order."""
        out: list[onnx.NodeProto] = []
        for name in names:
            if name in self.consts or not name:
                continue
            node = self.producer[name]
            out += [n for n in self.const_nodes(list(node.input)) if n not in out]
            if node not in out:
                out.append(node)
        return out

    def function_region(self, node: onnx.NodeProto) -> bool:
        """Take ``node`` and the float nodes around it as one lookup table when together they compute a function
        of one quantized value (frontends/float_functions.py); False when they do not."""
        order = {id(n): i for i, n in enumerate(self.nodes)}
        for name in dict.fromkeys(node.input):
            val = self.vals.get(name)
            if val is None or val.codes or val.pads is not None:
                continue
            region = find_region(node, name, order, self.consumers, self.producer, self.is_constant,
                                 self.const_size, self.graph_outputs, self.QUANTIZERS, self.where, False)
            if region is not None and (region.inexact or self.off_grid(val.qtype) or self.off_grid_sink(region)):
                refuse_wide_constants(region, self.const_size, self.where)
                self.lookup_table(region, val)
                return True
        return False

    def off_grid(self, qtype) -> bool:
        """A float scale or a zero point: the exact integer eltwise ops do not take it (a table does)."""
        return isinstance(qtype, _SQType)

    def off_grid_sink(self, region: Region) -> bool:
        try:
            return self.off_grid(self.qparams(region.sink, None, _ACT_TYPES, "activation"))
        except (UnsupportedQuantizationError, UnsupportedOpError, BadFileError):
            return False  # the node's own handler reports the quantizer

    def lookup_table(self, region: Region, val: QVal) -> None:
        """The region as an eltwise ``lut``: onnxruntime runs its nodes (and the quantizer) on every input code."""
        q = region.sink
        qtype = self.qparams(q, None, _ACT_TYPES, "activation")
        codes = np.arange(val.qtype.lo, val.qtype.hi + 1, dtype=np.int64)
        const_inputs = [i for n in region.nodes + [q] for i in n.input if i and self.is_constant(i)]
        try:
            out = self.tabulate(region, val.qtype, qtype, codes, self.const_nodes(const_inputs))
        except Exception as exc:  # the runtime refuses the nodes: the model's own problem, named
            raise UnsupportedOpError(self.where(region.nodes[0]), f"the source runtime cannot evaluate the "
                                     f"elementwise function {region.function} on its own ({type(exc).__name__}: "
                                     f"{exc})", "check that the model runs in its framework") from exc
        lo, table = trimmed_table(codes, out)
        name = self.op_name(region.nodes[0], "lut")
        tname = unique(f"{name}_table", self.taken)
        self.tensors[tname] = Tensor(tname, (int(table.size),), qtype.fixed(), data=table, origin=q.output[0])
        y = self.add_op(name, "eltwise", [val.tensor, tname], self.shape(val), qtype, q.output[0],
                        {"op": "lut", "lo": int(lo), "function": region.function})
        for node in region.nodes:
            self.visit(node)
        self.visit(q)
        self.bind(q.output[0], QVal(y, qtype, codes=True))

    def tabulate(self, region: Region, x, y, codes: np.ndarray, const_nodes: list[onnx.NodeProto]) -> np.ndarray:
        """The output codes of ``region`` (quantizer included) on the input ``codes`` of type ``x``: onnxruntime
        (as ``run_reference`` runs the model) on DequantizeLinear -> the region's nodes -> its QuantizeLinear."""
        scale, zero = (2.0 ** -x.frac, 0) if isinstance(x, _QType) else (x.scale[0], x.zero_point)
        model = region_model(region, const_nodes, self.consts, list(self.model.opset_import), codes.size,
                             y.onnx_type, (x.onnx_type, scale, zero))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(x.onnx_type)
        got = _session(model, False).run(None, {"nn2aie_codes": codes.astype(dtype)})[0]
        return np.clip(np.asarray(got, dtype=np.int64), y.lo, y.hi)  # a QCDQ Clip after the quantizer

    def on_function(self, node: onnx.NodeProto) -> None:
        if self.function_region(node):
            return
        val = self.value(node.input[0], node)  # refuses a non-quantized input with its reason
        raise UnsupportedOpError(self.where(node), f"{node.op_type} of {node.input[0]} is supported as part of an "
                                 "elementwise function of that one quantized value whose result one "
                                 f"QuantizeLinear quantizes (input {val.qtype.describe()})",
                                 "put QuantizeLinear -> DequantizeLinear after the function (nothing else reading "
                                 "its float result) and use scalar constants in it")

    def on_softmax(self, node: onnx.NodeProto) -> None:
        """Softmax over the last axis of a quantized value, quantized by the next quantizer: the integer softmax of
        docs/numerics.md (the source computes in float; benchmarks/float_ops_mismatch.py measures the difference)."""
        val = self.value(node.input[0], node)
        rank = len(self.onnx_shape(val)) + 1
        opset = opset_version(self.model) or 13
        if opset < 13 and rank != 2:
            raise UnsupportedOpError(self.where(node), f"softmax of a rank-{rank} tensor in opset {opset} (which "
                                     "flattens from its axis)", "export with opset >= 13 and axis=-1")
        self.last_axis(node, val, int(attr(node, "axis", -1 if opset >= 13 else 1)), "softmax")
        q, _ = self.quant_tail(node)  # a Relu after a softmax changes nothing: its values are >= 0
        name = self.op_name(node, "softmax")
        self.quantized_result(node, name, "softmax", [val.tensor], self.shape(val), q, None, {"axis": -1})

    def last_axis(self, node: onnx.NodeProto, val: QVal, axis: int, what: str) -> None:
        """Refuse an op that normalises over another axis than the last (or over a channels-first conv result)."""
        rank = len(self.onnx_shape(val)) + 1
        if (axis + rank if axis < 0 else axis) != rank - 1:
            raise UnsupportedOpError(self.where(node), f"{what} over axis {axis} of a rank-{rank} tensor; nn2aie "
                                     "normalises over the last axis", "transpose the axis to normalise last")
        if val.tensor in self.cl and len(self.cl[val.tensor]) > 1:
            raise UnsupportedOpError(self.where(node), f"{what} over the channels of a conv result (held channels "
                                     "last)", "flatten the conv result first")

    def float_values(self, name: str) -> np.ndarray | None:
        """A float constant as the source computes it: a float initializer, or DequantizeLinear of integer codes
        (``(code - zero_point) * scale`` in float32, per axis where the scale is a vector)."""
        value = self.float_const(name)
        if value is not None:
            return value
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in self.consts:
            return None
        codes = np.asarray(self.consts[node.input[0]])
        scale = self.float_const(node.input[1])
        zero = np.asarray(self.consts[node.input[2]]) if len(node.input) > 2 and node.input[2] in self.consts \
            else np.zeros((), codes.dtype)
        if scale is None or not np.issubdtype(codes.dtype, np.integer):
            return None
        if np.size(scale) > 1:  # per axis: broadcast along the node's axis
            shape = [1] * codes.ndim
            shape[int(attr(node, "axis", 1))] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape) if np.size(zero) > 1 else zero
        return (codes.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)

    def on_layernorm(self, node: onnx.NodeProto) -> None:
        """LayerNormalization over the last axis of a quantized value (float scale and bias constants), quantized
        by the next quantizer: the integer layer norm of docs/numerics.md (the source computes in float)."""
        val = self.value(node.input[0], node)
        where = self.where(node)
        self.last_axis(node, val, int(attr(node, "axis", -1)), "LayerNormalization")
        if any(o and self.users(o) or o in self.graph_outputs for o in node.output[1:]):
            raise UnsupportedOpError(where, "its Mean / InvStdDev outputs are used", "use only the normalised output")
        n = self.shape(val)[-1]
        consts = []
        for index, what in ((1, "scale"), (2, "bias")):
            name = node.input[index] if len(node.input) > index else ""
            if not name:
                consts.append(None)
                continue
            value = self.float_values(name)
            if value is None or np.size(value) not in (1, n):
                raise UnsupportedOpError(where, f"its {what} {name} is not a float constant of 1 or {n} values",
                                         f"store the {what} as a float32 initializer")
            consts.append([float(v) for v in np.broadcast_to(np.asarray(value, np.float32).reshape(-1), (n,))])
        q, relu = self.quant_tail(node)
        name = self.op_name(node, "layernorm")
        attrs = {"axis": -1, "epsilon": float(np.float32(attr(node, "epsilon", 1e-5))), "gamma": consts[0],
                 "beta": consts[1], "rms": False}
        self.quantized_result(node, name, "layernorm", [val.tensor], self.shape(val), q, relu, attrs)

    def on_relu(self, node: onnx.NodeProto) -> None:
        val = self.value(node.input[0], node)
        dense = self.foldable_relu(node, val)
        if dense is not None:  # Q -> DQ -> Relu after a dense: relu of its exact result, quantized the same way
            dense.attrs["activation"] = "relu"
            self.bind(node.output[0], val)
            return
        if self.function_region(node):
            return
        self.unary(node, val, "relu", {}, optional=True)

    def unary(self, node: onnx.NodeProto, val: QVal, kind: str, attrs: dict, optional: bool) -> None:
        """An eltwise op on one value, quantized by the following Q; without Q (``optional``: the result is still
        a value of the input's type) the output keeps the input's type."""
        q, relu = self.quant_tail(node, optional)
        name = self.op_name(node, kind)
        if q is None:
            y = self.add_op(name, "eltwise", [val.tensor], self.shape(val), val.qtype, node.output[0],
                            {"op": kind, **attrs})
            self.bind(node.output[0], QVal(y, val.qtype))
            return
        self.quantized_result(node, name, "eltwise", [val.tensor], self.shape(val), q, relu, {"op": kind, **attrs})

    def on_leaky_relu(self, node: onnx.NodeProto) -> None:
        if self.function_region(node):
            return
        val = self.value(node.input[0], node)
        alpha = float(attr(node, "alpha", 0.01))
        s = pow2_frac(alpha)
        if s is None or s < 0:
            raise UnsupportedOpError(self.where(node), f"alpha={alpha:g} is not 2**-s with s >= 0 (0.5, 0.25, "
                                     "0.125, ...)", "use a power-of-two slope such as 0.125 (an exact shift)")
        if (val.qtype.max_abs << s) >= _INT_LIMIT:
            raise UnsupportedOpError(self.where(node), f"alpha=2**-{s} is too small for an exact integer result",
                                     "use a slope of at least 2**-40")
        self.check_float32(0, val.qtype.frac, val.qtype.frac + s)
        self.unary(node, val, "leaky_relu", {"alpha_shift": s}, optional=False)

    def on_clip(self, node: onnx.NodeProto) -> None:
        if self.function_region(node):
            return
        val = self.value(node.input[0], node)
        fa = val.qtype.frac
        lo, hi = self.clip_bounds(node)
        a_lo, a_hi = val.qtype.lo * 2.0**-fa, val.qtype.hi * 2.0**-fa
        if lo is not None and lo <= a_lo:  # max(a, lo) == a for every code: no lower bound
            lo = None
        if hi is not None and hi >= a_hi and (lo is None or hi >= lo):
            hi = None
        bounds, on_grid, f = [], True, fa
        for b in (lo, hi):
            if b is None:
                bounds.append(None)
                continue
            code, frac = dyadic_codes(np.asarray(b))  # a finite float32 bound: always dyadic, < 2**62
            bounds.append([int(code), frac])
            on_grid &= frac <= fa and a_lo <= b <= a_hi
            f = max(f, frac)
        bound = max([val.qtype.max_abs << (f - fa)] + [abs(c) << (f - fr) for c, fr in filter(None, bounds)])
        if bound >= _INT_LIMIT:
            raise UnsupportedQuantizationError(self.where(node), f"a bound ({lo}, {hi}) is too fine for the input "
                                               f"scale {_p2(fa)} (an exact result needs more than 62 bits)",
                                               "round the Clip bounds to the input's scale")
        self.check_float32(0, f)
        self.unary(node, val, "clip", {"lo": bounds[0], "hi": bounds[1]}, optional=on_grid)

    def clip_bounds(self, node: onnx.NodeProto) -> tuple[float | None, float | None]:
        """Clip's (min, max): inputs 1 and 2 (opset 11+, optional) or the attributes min / max (opset 6)."""
        if any(a.name in ("min", "max") for a in node.attribute):
            bounds = [attr(node, "min"), attr(node, "max")]
        else:
            bounds = [self.scalar_const(node.input[i], node, "Clip bound") if len(node.input) > i and node.input[i]
                      else None for i in (1, 2)]
        for b in bounds:
            if b is not None and math.isnan(b):
                raise UnsupportedOpError(self.where(node), "a Clip bound is NaN", "use finite bounds")
        lo, hi = (None if b is None else float(np.float32(b)) for b in bounds)
        if (lo is not None and lo == math.inf) or (hi is not None and hi == -math.inf):
            raise UnsupportedOpError(self.where(node), f"Clip bounds ({lo}, {hi}) send every value to infinity",
                                     "use finite bounds")
        return lo, hi

    def on_binary(self, node: onnx.NodeProto) -> None:
        if self.function_region(node):  # the start of an elementwise function (GELU's Mul, HardSwish's Add, ...)
            return
        kind = BINARY_OPS[node.op_type]
        where = self.where(node)
        if len(node.input) != 2:
            raise UnsupportedOpError(where, f"has {len(node.input)} inputs; nn2aie reads {node.op_type} of two",
                                     f"write it as a chain of two-input {node.op_type} nodes")
        a_name, b_name = node.input
        a_const, b_const = self.is_constant(a_name), self.is_constant(b_name)
        if a_const and b_const:
            raise UnsupportedOpError(where, "computes on constants only", "fold it into an initializer")
        if a_const:
            if kind not in _COMMUTATIVE:
                raise UnsupportedOpError(where, f"subtracts an activation from the constant {a_name} (c - x); "
                                         "nn2aie's eltwise sub takes the activation first",
                                         "rewrite c - x as Mul(x, -1) followed by Add(., c)")
            a_name, b_name, b_const = b_name, a_name, True  # the constant goes second
        a = self.value(a_name, node)
        a_shape = self.shape(a)
        if b_const:
            op_name = self.op_name(node, kind)
            codes, ctype, origin = self.operand_const(b_name, a_shape, node, self.cl.get(a.tensor))
            if a.tensor in self.order and codes.ndim:
                raise UnsupportedOpError(where, f"combines the flattened channels-first tensor {a_name} with the "
                                         f"non-scalar constant {b_name}", "apply the constant before the Flatten")
            c_name = unique(f"{op_name}_c", self.taken)
            self.tensors[c_name] = Tensor(c_name, codes.shape, ctype, codes, origin=origin)
            b_tensor, bm, fb = c_name, int(np.abs(codes).max(initial=0)), ctype.frac
            preserving = False
        else:
            b = self.value(b_name, node)
            if self.layout_of(b) != self.layout_of(a):
                raise UnsupportedOpError(where, f"combines {a_name} and {b_name}, held in different layouts on chip "
                                         "(one is a channels-first conv result, the other not)",
                                         "combine tensors of the same kind (both conv results, or neither)")
            if self.shape(b) != a_shape:
                raise UnsupportedOpError(where, f"operand shapes {list(a_shape)} and {list(self.shape(b))} differ "
                                         "(per event)", f"nn2aie's {kind} takes two activations of one shape")
            op_name = self.op_name(node, kind)
            b_tensor, bm, fb = b.tensor, b.qtype.max_abs, b.qtype.frac
            preserving = kind in ("max", "min") and b.qtype == a.qtype  # the result is one of two same-type values
        am, fa = a.qtype.max_abs, a.qtype.frac
        f, bound = _binary_bounds(kind, am, fa, bm, fb)
        if bound >= _INT_LIMIT:
            raise UnsupportedQuantizationError(where, f"operand scales {_p2(fa)} and {_p2(fb)} are too far apart "
                                               "for an exact integer result (more than 62 bits)",
                                               "quantize both operands with closer scales")
        exact_bound = max(am, bm) if kind in ("max", "min") else bound  # a selection only needs exact operands
        q, relu = self.quant_tail(node, optional=preserving)
        fracs = [fa, fb, f] + ([self.qparams(q, None, _ACT_TYPES, "activation").frac] if q is not None else [])
        self.check_float32(exact_bound, *fracs)
        if q is None:
            y = self.add_op(op_name, "eltwise", [a.tensor, b_tensor], a_shape, a.qtype, node.output[0], {"op": kind})
            self.bind(node.output[0], QVal(y, a.qtype))
            return
        self.quantized_result(node, op_name, "eltwise", [a.tensor, b_tensor], a_shape, q, relu, {"op": kind})

    # -- views ----------------------------------------------------------------------------------------------
    def view(self, node: onnx.NodeProto, name: str, kind: str, val: QVal, shape: tuple[int, ...],
             origin: str, attrs: dict | None = None) -> QVal:
        """A view op ``name``: the output keeps the input's type and domain (codes or values)."""
        y = self.add_op(name, kind, [val.tensor], shape, val.qtype, origin, attrs)
        return QVal(y, val.qtype, val.codes)

    def batch_axis(self, axis: int, rank: int, node: onnx.NodeProto, what: str = "axis") -> int:
        """An ONNX axis of a [batch, ...] tensor of ``rank`` -> per-event axis (refuses the batch axis)."""
        where = self.where(node)
        if not -rank <= axis < rank:
            raise BadFileError(where, f"{what} {axis} is out of range for rank {rank}", "re-export the model")
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise UnsupportedOpError(where, f"works along the batch axis ({what} 0)",
                                     "keep the batch axis first and whole; work along feature axes")
        return axis - 1

    def ints_input(self, node: onnx.NodeProto, index: int, what: str) -> list[int] | None:
        """A constant integer input (shape, axes, starts, ...) as a list; None when absent."""
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            raise UnsupportedOpError(self.where(node), f"its {what} ({name}) is computed at run time",
                                     f"make the {what} a constant (initializer)")
        return [int(v) for v in np.asarray(self.consts[name]).reshape(-1)]

    def refuse_channels_first(self, node: onnx.NodeProto, name: str) -> None:
        val = self.vals.get(name)
        if val is not None and (val.tensor in self.cl or val.tensor in self.order):
            raise UnsupportedOpError(self.where(node), f"{node.op_type} of the channels-first tensor {name} "
                                     f"({list(self.onnx_shape(val))}, a conv result held channels last on chip) is "
                                     "not supported yet", "apply it after a Flatten, or before the convolutions")

    def on_identity(self, node: onnx.NodeProto) -> None:
        self.bind(node.output[0], self.value(node.input[0], node, codes_ok=True))

    def on_transpose(self, node: onnx.NodeProto) -> None:
        self.refuse_channels_first(node, node.input[0])
        val = self.value(node.input[0], node, codes_ok=True)
        shape = self.shape(val)
        rank = len(shape) + 1
        perm = list(attr(node, "perm", list(range(rank))[::-1]))
        if sorted(perm) != list(range(rank)):
            raise BadFileError(self.where(node), f"perm {perm} is not a permutation of {rank} axes",
                               "re-export the model")
        if perm[0] != 0:
            raise UnsupportedOpError(self.where(node), f"perm {perm} moves the batch axis",
                                     "keep axis 0 (the batch) first: perm = [0, ...]")
        per = [p - 1 for p in perm[1:]]
        if per == sorted(per):
            self.bind(node.output[0], val)
            return
        self.bind(node.output[0], self.view(node, self.op_name(node, "transpose"), "transpose", val,
                                            tuple(shape[p] for p in per), node.output[0], {"perm": per}))

    def on_reshape(self, node: onnx.NodeProto) -> None:
        """Reshape / Flatten / Squeeze / Unsqueeze: a ``reshape`` of the per-event shape (batch axis kept)."""
        val = self.value(node.input[0], node, codes_ok=True)
        shape = self.shape(val)
        rule = {"Reshape": self.reshape_shape, "Flatten": self.flatten_shape, "Squeeze": self.squeeze_shape,
                "Unsqueeze": self.unsqueeze_shape}[node.op_type]
        if val.tensor in self.cl or val.tensor in self.order:
            self.channels_last_view(node, val, rule)
            return
        target = rule(node, shape)
        if math.prod(target) != math.prod(shape):
            raise BadFileError(self.where(node), f"reshapes {list(shape)} into {list(target)} (per event)",
                               "re-export the model")
        if target != shape:
            val = self.view(node, self.op_name(node, "reshape"), "reshape", val, target, node.output[0])
        self.bind(node.output[0], val)

    def channels_last_view(self, node: onnx.NodeProto, val: QVal, rule) -> None:
        """A reshape of a tensor held channels last: to its own ONNX shape, to the same shape (1-wide axes aside:
        [C, 1, 1] <-> [C]), or flat, where the logical tensor is reshaped flat and its element order recorded
        (the dense layer reading it permutes its weight rows); other reshapes would move data on chip."""
        from nn2aie.ir.conv_semantics import nchw_flatten_order

        onnx_shape = self.onnx_shape(val)
        target = rule(node, onnx_shape)
        if math.prod(target) != math.prod(onnx_shape):
            raise BadFileError(self.where(node), f"reshapes {list(onnx_shape)} into {list(target)} (per event)",
                               "re-export the model")
        squeezed = tuple(d for d in onnx_shape if d != 1)
        if tuple(target) == tuple(onnx_shape):
            self.bind(node.output[0], val)
            return
        if val.tensor in self.cl and tuple(d for d in target if d != 1) == squeezed and squeezed[:1] == onnx_shape[:1]:
            # only 1-wide spatial axes appear or vanish: [C, 1, 1] -> [C] (a global pool before a dense layer)
            logical = tuple(target[1:]) + (target[0],) if len(target) > 1 else tuple(target)
            out = self.view(node, self.op_name(node, "reshape"), "reshape", val, logical, node.output[0]) \
                if logical != self.shape(val) else val
            if len(target) > 1:
                self.cl[out.tensor] = tuple(target)
            self.bind(node.output[0], out)
            return
        if len(target) == 1:
            out = self.view(node, self.op_name(node, "reshape"), "reshape", val, tuple(target), node.output[0])
            source = self.cl.get(val.tensor) or self.order[val.tensor]
            order = nchw_flatten_order(tuple(source[1:]), source[0])
            if not np.array_equal(order, np.arange(order.size)):
                self.order[out.tensor] = source
            self.bind(node.output[0], out)
            return
        raise UnsupportedOpError(self.where(node), f"reshapes the channels-first tensor {node.input[0]} "
                                 f"{list(onnx_shape)} into {list(target)}, which would move data on chip "
                                 "(conv results are held channels last)", "Flatten it (for a dense layer) instead")

    def reshape_shape(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
        target = self.ints_input(node, 1, "target shape")
        where = self.where(node)
        if target is None:
            raise BadFileError(where, "has no target shape", "re-export the model")
        if attr(node, "allowzero", 0) and 0 in target:
            raise UnsupportedOpError(where, "a 0 in the target shape with allowzero=1 makes an empty tensor",
                                     "use allowzero=0 or a non-zero shape")
        full = [0] + list(shape)  # 0 stands for the batch dimension
        dims = [full[i] if d == 0 and i < len(full) else d for i, d in enumerate(target)]
        elems = math.prod(shape)
        lead, rest = dims[0], dims[1:]
        batch_kept = lead == 0 or (self.fixed_batch is not None and lead == self.fixed_batch)
        if lead == -1 and -1 not in rest and math.prod(rest) == elems:
            batch_kept = True
        if not batch_kept or rest.count(-1) > 1 or any(d < -1 for d in rest):
            raise UnsupportedOpError(where, f"target shape {target} does not keep the batch axis first (input "
                                     f"[batch, {', '.join(map(str, shape))}])",
                                     "reshape with target [0, ...] or [-1, d1, ...] covering one event")
        if -1 in rest:
            known = math.prod(d for d in rest if d != -1)
            if known == 0 or elems % known:
                raise BadFileError(where, f"target shape {target} does not fit {elems} elements per event",
                                   "re-export the model")
            rest[rest.index(-1)] = elems // known
        return tuple(rest)

    def flatten_shape(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
        rank = len(shape) + 1
        axis = int(attr(node, "axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis == 0 or math.prod(shape[:axis - 1]) != 1:
            raise UnsupportedOpError(self.where(node), f"axis={axis} merges the batch axis with feature axes",
                                     "flatten with axis=1")
        return (math.prod(shape[axis - 1:]),)

    def squeeze_shape(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
        axes = attr(node, "axes") or self.ints_input(node, 1, "axes")
        if not axes:
            raise UnsupportedOpError(self.where(node), "Squeeze without axes would also drop a batch of one",
                                     "give Squeeze its axes")
        per = {self.batch_axis(int(a), len(shape) + 1, node) for a in axes}
        if any(shape[a] != 1 for a in per):
            raise BadFileError(self.where(node), f"squeezes axes of size != 1 in [batch, {shape}]",
                               "re-export the model")
        return tuple(d for i, d in enumerate(shape) if i not in per)

    def unsqueeze_shape(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
        axes = attr(node, "axes") or self.ints_input(node, 1, "axes") or []
        rank = len(shape) + 1 + len(axes)
        per = sorted(self.batch_axis(int(a), rank, node) for a in axes)
        out = list(shape)
        for a in per:
            out.insert(a, 1)
        return tuple(out)

    def on_slice(self, node: onnx.NodeProto) -> None:
        self.refuse_channels_first(node, node.input[0])
        val = self.value(node.input[0], node, codes_ok=True)
        shape = self.shape(val)
        rank = len(shape) + 1
        if len(node.input) == 1:  # opset < 10: attributes
            starts, ends = list(attr(node, "starts", [])), list(attr(node, "ends", []))
            axes, steps = attr(node, "axes"), None
        else:
            starts, ends = self.ints_input(node, 1, "starts"), self.ints_input(node, 2, "ends")
            axes, steps = self.ints_input(node, 3, "axes"), self.ints_input(node, 4, "steps")
        axes = list(axes) if axes is not None else list(range(len(starts)))
        if steps is not None and any(s != 1 for s in steps):
            raise UnsupportedOpError(self.where(node), f"steps {steps}: only step 1 is supported",
                                     "slice contiguous ranges (step 1), e.g. with Split or several Slices")
        cur = val
        for axis, start, end in zip(axes, starts, ends, strict=True):
            axis = axis + rank if axis < 0 else axis
            if axis == 0:
                if start != 0 or end < (self.fixed_batch or _FULL_BATCH_END):
                    raise UnsupportedOpError(self.where(node), f"slices the batch axis [{start}:{end}]",
                                             "keep the batch axis whole; slice feature axes")
                continue
            dim = shape[axis - 1]
            lo, hi = (min(max(v + dim if v < 0 else v, 0), dim) for v in (start, end))
            if lo >= hi:
                raise UnsupportedOpError(self.where(node), f"the slice [{start}:{end}] of axis {axis} is empty",
                                         "remove the empty slice")
            if (lo, hi) != (0, dim):  # one slice op per sliced axis
                cut = self.shape(cur)
                cur = self.view(node, self.op_name(node, "slice"), "slice", cur,
                                cut[:axis - 1] + (hi - lo,) + cut[axis:], node.output[0],
                                {"axis": axis - 1, "start": lo, "end": hi})
        self.bind(node.output[0], cur)

    def on_split(self, node: onnx.NodeProto) -> None:
        self.refuse_channels_first(node, node.input[0])
        val = self.value(node.input[0], node, codes_ok=True)
        shape = self.shape(val)
        axis = self.batch_axis(int(attr(node, "axis", 0)), len(shape) + 1, node)
        dim, parts = shape[axis], len(node.output)
        sizes = attr(node, "split") or self.ints_input(node, 1, "split sizes")
        if not sizes:
            if not attr(node, "num_outputs") and dim % parts:
                raise BadFileError(self.where(node), f"cannot split {dim} into {parts} equal parts",
                                   "re-export the model")
            step = -(-dim // parts)  # opset 18 num_outputs: ceil(dim / parts), the last part smaller
            sizes = [step] * (parts - 1) + [dim - step * (parts - 1)]
        if len(sizes) != parts or sum(sizes) != dim or min(sizes) < 1:
            raise BadFileError(self.where(node), f"split sizes {list(sizes)} do not cut {dim} into {parts} parts",
                               "re-export the model")
        start = 0
        for out, size in zip(node.output, sizes, strict=True):
            if out and size == dim:
                self.bind(out, val)
            elif out:  # one slice per output
                self.bind(out, self.view(node, self.op_name(node, "slice"), "slice", val,
                                         shape[:axis] + (size,) + shape[axis + 1:], out,
                                         {"axis": axis, "start": start, "end": start + size}))
            start += size

    def on_concat(self, node: onnx.NodeProto) -> None:
        for name in node.input:
            self.refuse_channels_first(node, name)
        vals = [self.value(name, node, codes_ok=True) for name in node.input]
        where = self.where(node)
        if len({v.codes for v in vals}) > 1:
            raise UnsupportedQuantizationError(where, "concatenates integer codes with dequantized values",
                                               "concatenate DequantizeLinear outputs")
        shape = self.shape(vals[0])
        axis = self.batch_axis(int(attr(node, "axis", 0)), len(shape) + 1, node)
        for v in vals:
            s = self.shape(v)
            if len(s) != len(shape) or any(s[i] != shape[i] for i in range(len(shape)) if i != axis):
                raise BadFileError(where, f"input shapes {[list(self.shape(v)) for v in vals]} differ outside "
                                   f"axis {axis + 1}", "re-export the model")
        out_shape = shape[:axis] + (sum(self.shape(v)[axis] for v in vals),) + shape[axis + 1:]
        if len(vals) == 1:
            self.bind(node.output[0], vals[0])
            return
        q = None if vals[0].codes else self.quant_tail(node, optional=True)[0]
        if q is None:
            if len({v.qtype for v in vals}) > 1:
                raise UnsupportedQuantizationError(
                    where, f"concatenates values of different types ({', '.join(v.qtype.describe() for v in vals)}) "
                    "without a QuantizeLinear after it", "quantize the Concat output (QuantizeLinear)")
            y = self.add_op(self.op_name(node, "concat"), "concat", [v.tensor for v in vals], out_shape,
                            vals[0].qtype, node.output[0], {"axis": axis})
            self.bind(node.output[0], QVal(y, vals[0].qtype, vals[0].codes))
            return
        # Q(concat(DQ values)) == concat(Q(each value)): requantise the inputs whose type differs, then concatenate
        qtype = self.qparams(q, None, _ACT_TYPES, "activation")
        name = self.op_name(node, "concat")
        inputs = []
        for i, v in enumerate(vals):
            if v.qtype != qtype:
                ident = unique(f"{name}_in{i}", self.taken)
                inputs.append(self.add_op(ident, "eltwise", [v.tensor], self.shape(v), qtype, node.input[i],
                                          {"op": "identity"}))
            else:
                inputs.append(v.tensor)
        y = self.add_op(name, "concat", inputs, out_shape, qtype, q.output[0], {"axis": axis})
        self.bind(q.output[0], QVal(y, qtype, codes=True))

    # -- reduce ---------------------------------------------------------------------------------------------
    def on_reduce(self, node: onnx.NodeProto) -> None:
        kind = REDUCE_OPS[node.op_type]
        val = self.value(node.input[0], node)
        cl = self.cl.get(val.tensor)
        shape = cl if cl is not None else self.shape(val)  # the ONNX per-event shape: axes refer to it
        if val.tensor in self.order:
            self.refuse_channels_first(node, node.input[0])
        rank = len(shape) + 1
        where = self.where(node)
        if node.op_type.startswith("Global"):
            if len(shape) < 2:
                raise BadFileError(where, f"needs [batch, channels, spatial...], got rank {rank}",
                                   "re-export the model")
            axes, keep = list(range(1, len(shape))), True
        else:
            raw = attr(node, "axes")
            if raw is None:
                raw = self.ints_input(node, 1, "axes")
            keep = bool(attr(node, "keepdims", 1))
            if not raw:
                if attr(node, "noop_with_empty_axes", 0):
                    self.bind(node.output[0], val)  # empty axes with noop_with_empty_axes=1: the input itself
                    return
                raise UnsupportedOpError(where, "reduces over every axis, the batch axis included",
                                         "give the axes to reduce (feature axes only)")
            axes = sorted({self.batch_axis(int(a), rank, node, "reduced axis") for a in raw})
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        n = math.prod(shape[a] for a in axes)
        onnx_out = out_shape
        if cl is not None:  # axis 0 (channels) is the last axis on chip, spatial axis i is axis i - 1
            if 0 in axes:
                raise UnsupportedOpError(where, f"reduces over the channels of the conv result {node.input[0]}",
                                         "reduce over the spatial axes only (a global pool)")
            axes = [a - 1 for a in axes]
            logical = self.shape(val)
            out_shape = tuple(1 if i in axes else d for i, d in enumerate(logical)) if keep else \
                tuple(d for i, d in enumerate(logical) if i not in axes)
        total = n * val.qtype.max_abs
        if total >= 1 << 53:
            raise UnsupportedQuantizationError(where, f"the sum of {n} values needs more than 53 bits",
                                               "reduce fewer elements")
        attrs = {"op": kind, "axes": axes, "keepdims": keep}
        if kind == "mean":
            attrs["divide"] = "float32"  # onnxruntime: float32 sum, then float32 division by n
        q, relu = self.quant_tail(node, optional=kind == "max")  # a max is one of the inputs: still a value
        name = self.op_name(node, kind)
        self.check_float32(total if kind != "max" else 0, val.qtype.frac)  # float32 sum: exact below 2**24 LSBs
        if q is None:
            y = self.add_op(name, "reduce", [val.tensor], out_shape, val.qtype, node.output[0], attrs)
            self.bind(node.output[0], QVal(y, val.qtype))
        else:
            y = self.quantized_result(node, name, "reduce", [val.tensor], out_shape, q, relu, attrs)
        if cl is not None and len(onnx_out) > 1:
            self.cl[y] = onnx_out


def load_qdq(model: ModelLike, input_types: dict[str, FixedType] | None = None) -> Graph:
    """Parse an ONNX QDQ model (path or ModelProto) into a verified logical graph; typed errors otherwise.
    ``input_types``: types for float graph inputs read without a QuantizeLinear (frontends/loader.py)."""
    proto, file = load_onnx(model)
    parser = QdqParser(proto, file)
    parser.user_input_types = dict(input_types or {})
    return parser.parse()


def _session(proto: onnx.ModelProto, optimize: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    data = without_unused_opsets(proto).SerializeToString()
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def run_reference(model: ModelLike, x, optimize: bool = False):
    """Run the ORIGINAL model with onnxruntime (CPU, graph optimisations off unless ``optimize``) on float32
    ``x`` of shape [B, K] (or [B, d1, d2, ...]); returns the float32 output [B, ...]. A model with several inputs
    takes a list of arrays in its input order; with several outputs it returns a list in its output order.

    A fixed batch dimension b0 is handled by running chunks of b0 rows (zero-padded). A model that ends in an
    integer QuantizeLinear output is returned dequantized (code * scale, exact for power-of-two scales).
    """
    proto, _ = load_onnx(model)
    inputs = real_inputs(proto.graph)
    xs = list(x) if isinstance(x, (list, tuple)) and len(inputs) > 1 else [x]
    xs = [np.asarray(v, dtype=np.float32) for v in xs]
    if len(xs) != len(inputs):
        raise UnsupportedOpError("model", f"run_reference got {len(xs)} input arrays for {len(inputs)} inputs",
                                 "pass one array per model input, in order")
    if any(v.ndim < 2 for v in xs) or len({v.shape[0] for v in xs}) != 1:
        raise ValueError("every input must have shape [B, K] or [B, d1, d2, ...] with the same B")
    shape = value_shape(inputs[0]) or (None,)
    b0 = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    sess = _session(proto, optimize)
    names = [vi.name for vi in inputs]
    n = xs[0].shape[0]
    if b0 is None:
        outs = sess.run(None, dict(zip(names, xs, strict=True)))
    else:
        chunks = []
        for start in range(0, n, b0):
            feed = {}
            for name, v in zip(names, xs, strict=True):
                part = v[start:start + b0]
                pad = b0 - part.shape[0]
                if pad:
                    part = np.concatenate([part, np.zeros((pad, *v.shape[1:]), np.float32)])
                feed[name] = part
            chunks.append([o[: b0 - pad] for o in sess.run(None, feed)])
        outs = [np.concatenate([c[i] for c in chunks]) if chunks else np.zeros((0,), np.float32)
                for i in range(len(proto.graph.output))]
    result = []
    for i, out in enumerate(outs):
        out = np.asarray(out)
        if np.issubdtype(out.dtype, np.integer):
            out = _dequantize_output(proto, out, i)
        result.append(out.astype(np.float32))
    return result[0] if len(result) == 1 else result


def _dequantize_output(proto: onnx.ModelProto, codes: np.ndarray, index: int = 0) -> np.ndarray:
    name = proto.graph.output[index].name
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
