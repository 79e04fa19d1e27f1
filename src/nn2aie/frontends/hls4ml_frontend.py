"""hls4ml ``ModelGraph`` -> nn2aie logical graph.

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

Weights: hls4ml prints each weight as decimal text with as many decimals as its type has fractional bits and its
C++ casts the parsed double with the weight type's rounding and overflow modes. ``weight_codes`` reproduces that
from the very strings hls4ml writes (iterating the weight variable), so the codes equal what the C++ loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.ir.evaluate import INPUT_PRE_CAST, cast_float
from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType

SUPPORTED = "Dense (with bias or not), ReLU (Activation 'relu' after a Dense), linear Activation, Input"
_NEAREST = {
    "Conv1D": "flatten the input and use a Dense (Linear) layer",
    "Conv2D": "flatten the input and use a Dense (Linear) layer",
    "Activation": "use ReLU or no activation; other activations are not available on the AIE-ML dense kernel",
    "Softmax": "drop the final softmax (take the logits) and apply it on the host",
    "BatchNormalization": "fold the batch normalisation into the preceding Linear layer before conversion",
    "Pooling1D": "flatten and use a Dense layer",
    "Pooling2D": "flatten and use a Dense layer",
    "Transpose": "give the model a flat [features] input (nn2aie compiles chains of Dense layers)",
    "Reshape": "give the model a flat [features] input (nn2aie compiles chains of Dense layers)",
    "ApplyAlpha": "per-channel scales are not folded yet: quantize weights per tensor with a power-of-two scale "
                  "(e.g. Brevitas Int8WeightPerTensorFixedPoint)",
    "FixedPointQuantizer": "this is an HGQ2 per-element (heterogeneous) activation quantizer, and nn2aie needs one "
                           "type per activation tensor: build the model under QuantizerConfigScope(place='datalane', "
                           "heterogeneous_axis=(), homogeneous_axis=None) (weights may stay per-element)",
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


def weight_codes(var, t: FixedType, where: str) -> np.ndarray:
    """Codes of a weight variable as hls4ml's C++ loads them: the decimal text hls4ml writes, cast into ``t``."""
    text = list(iter(var))  # the exact strings of firmware/weights/<name>.txt and .h
    values = np.array([float(s) for s in text], dtype=np.float64).reshape(np.asarray(var.data).shape)
    return cast_float(values, t, where)


@dataclass
class _Pending:
    """A Dense layer waiting to learn whether a ReLU follows."""
    name: str
    x: str
    w: str
    b: str | None
    acc_lo: np.ndarray
    acc_hi: np.ndarray
    acc_frac: int
    result_t: FixedType


def _layer_class(layer) -> str:
    return getattr(layer, "class_name", type(layer).__name__)


def _refuse(layer, reason: str) -> UnsupportedOpError:
    cls = _layer_class(layer)
    hint = _NEAREST.get(cls, f"nn2aie supports: {SUPPORTED}")
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
    """Convert an hls4ml ``ModelGraph`` (a chain Input -> Dense [-> ReLU] -> ... ) into a logical graph."""
    layers = list(model.get_layers())
    if not layers or _layer_class(layers[0]) not in ("Input", "InputLayer"):
        raise UnsupportedOpError("hls4ml model", "does not start with an Input layer", "convert a Sequential MLP")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedOpError("hls4ml model", f"has {len(model.inputs)} inputs and {len(model.outputs)} outputs",
                                 "nn2aie compiles single-input, single-output chains")
    # name the first layer nn2aie cannot compute (layout helpers hls4ml inserts, e.g. Transpose, come second)
    layout = ("Transpose", "Reshape", "Flatten")
    for layer in layers[1:]:
        if _layer_class(layer) not in ("Dense", "Activation") + layout:
            raise _refuse(layer, f"layer class {_layer_class(layer)} is not supported")
    tensors: dict[str, Tensor] = {}
    ops: list[Op] = []
    inp = layers[0]
    x_t = fixed_type(inp.get_output_variable().type.precision, f"hls4ml layer {inp.name} (Input) result")
    shape = tuple(int(d) for d in inp.get_output_variable().shape)
    if len(shape) != 1:
        raise _refuse(inp, f"input shape {list(shape)} is not one-dimensional")
    tensors[inp.name] = Tensor(inp.name, shape, x_t, origin=inp.name)
    current = inp.name  # the IR tensor feeding the next layer
    pending: _Pending | None = None
    source = {"framework": "hls4ml"}

    def emit(p: _Pending, out_name: str, out_t: FixedType, act: str, origin: str) -> str:
        tensors[out_name] = Tensor(out_name, (tensors[p.w].shape[1],), out_t, origin=origin)
        ins = [p.x, p.w] + ([p.b] if p.b else [])
        ops.append(Op(p.name, "dense", ins, [out_name], {"activation": act}))
        return out_name

    for layer in layers[1:]:
        cls = _layer_class(layer)
        if layer.inputs and len(layer.inputs) != 1:
            raise _refuse(layer, f"has {len(layer.inputs)} inputs; only chains are supported")
        if cls == "Dense":
            if pending is not None:
                current = emit(pending, pending.name, pending.result_t, "linear", pending.name)
            pending = _dense(layer, current, tensors)
        elif cls == "Activation" and layer.get_attr("activation", "").lower() in ("relu", "linear"):
            act = layer.get_attr("activation").lower()
            out_t = fixed_type(layer.get_output_variable().type.precision, f"hls4ml layer {layer.name} result")
            if pending is None and act == "linear" and current == inp.name and not ops:
                # an input quantizer (hls4ml's QONNX converter writes one): the host casts into the Input type,
                # then into this one (api.quantize_input); the array sees only the second type
                if out_t != x_t:
                    source[INPUT_PRE_CAST] = json.dumps(x_t.to_json(), sort_keys=True)
                    tensors[inp.name] = Tensor(inp.name, shape, out_t, origin=f"{inp.name}+{layer.name}")
                    x_t = out_t
                continue
            if pending is None:
                raise _refuse(layer, f"{act} is supported only directly after a Dense layer")
            lo, hi = int(pending.acc_lo.min(initial=0)), int(pending.acc_hi.max(initial=0))
            exact = _holds(pending.result_t, lo, hi, pending.acc_frac)
            d = pending.result_t
            if act == "relu" and exact:
                current = emit(pending, layer.name, out_t, "relu", f"{pending.name}+{layer.name}")
            elif act == "relu" and d.overflow in ("SAT", "SAT_SYM") and _holds(out_t, 0, _type_range(d)[1], d.frac):
                current = emit(pending, layer.name, d, "relu", f"{pending.name}+{layer.name}")
            elif act == "linear" and (exact or _holds(out_t, *_type_range(d), d.frac)):
                current = emit(pending, layer.name, out_t if exact else d, "linear", f"{pending.name}+{layer.name}")
            elif (folded := _compose_requantisations(pending, out_t)) is not None:
                current = emit(pending, layer.name, folded, act, f"{pending.name}+{layer.name}")
            else:
                raise UnsupportedOpError(
                    f"hls4ml layers {pending.name} (Dense) -> {layer.name} ({act})",
                    f"the Dense result type {d.describe()} already rounds or overflows the exact sum, and the "
                    f"{act} result type {out_t.describe()} rounds again: two requantisations in a row, which one "
                    "nn2aie dense op does not express",
                    f"give {pending.name}'s result a wide type (e.g. its accum type) and put the narrow type on "
                    f"{layer.name}'s result")
            pending = None
        else:
            what = f"activation '{layer.get_attr('activation')}'" if cls == "Activation" else f"layer class {cls}"
            raise _refuse(layer, f"{what} is not supported")
    if pending is not None:
        current = emit(pending, pending.name, pending.result_t, "linear", pending.name)
    if not ops:
        raise UnsupportedOpError("hls4ml model", "contains no Dense layer", "nothing to compile")
    graph = Graph(name or model.config.get_project_name(), tensors, ops, [inp.name], [current], source)
    graph.verify()
    return graph


def _dense(layer, x: str, tensors: dict[str, Tensor]) -> _Pending:
    where = f"hls4ml layer {layer.name} (Dense)"
    x_t = tensors[x].type
    assert isinstance(x_t, FixedType)
    wvar = layer.weights["weight"]
    bvar = layer.weights.get("bias")
    k, n = int(layer.get_attr("n_in")), int(layer.get_attr("n_out"))
    if tuple(np.asarray(wvar.data).shape) != (k, n):
        raise _refuse(layer, f"weight array of shape {list(np.asarray(wvar.data).shape)}, expected [{k}, {n}] "
                      "(a multi-dimensional Dense or a transformed weight layout)")
    if tensors[x].shape[-1] != k:
        raise _refuse(layer, f"expects {k} inputs, gets {tensors[x].shape[-1]}")
    w_t = fixed_type(wvar.type.precision, f"{where} weight")
    w = weight_codes(wvar, w_t, f"{where} weight")
    tensors[f"{layer.name}_weight"] = Tensor(f"{layer.name}_weight", (k, n), w_t, w, origin=f"{layer.name}.weight")
    acc_frac = x_t.frac + w_t.frac
    xlo, xhi = _type_range(x_t)
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
    return _Pending(layer.name, x, f"{layer.name}_weight", b_name, lo, hi, acc_frac, result_t)
