"""PyTorch frontend: ``from_pytorch(module, example_input, ...)`` -> ``LoadedModel``.

Two paths, chosen from the module's contents:

* **Brevitas** (any submodule from ``brevitas.nn``): the module already carries its quantizers. It is exported to
  QONNX in memory (``brevitas.export.export_qonnx``) and loaded by the QONNX frontend; the reference is qonnx's
  own execution of that export (equal to the Brevitas forward for fixed-point quantizers).
* **plain torch** (``nn.Linear``, ``nn.ReLU``, ``nn.Identity``, ``nn.Dropout`` in eval mode, ``nn.Flatten`` before
  the first Linear; ``F.relu`` / ``torch.relu`` / ``.relu()`` / ``torch.flatten`` in a custom ``forward``): post-
  training quantization with power-of-two scales from a calibration batch, emitted as an ONNX QDQ model (opset 21,
  zero points 0) and loaded by the QDQ frontend; the reference is onnxruntime on that QDQ model.

Calibration rule (plain torch), every fraction ``f`` meaning scale ``2**-f``:

* weights, per tensor, signed ``weight_bits``: ``f = floor(log2((2**(weight_bits-1) - 1) / max|W|))`` -> no code
  clips; codes = round_half_even(W * 2**f);
* the input and every layer output: ``m`` = max |value| of the *float* model over the calibration batch (after the
  ReLU when the layer has one); ``f`` = the largest integer with ``m * 2**f <= max_code`` (``max_code`` = 127 for
  int8, 255 for uint8, 32767 for int16). Outputs of a ReLU are uint8 with ``act_bits=8`` and int16 with
  ``act_bits=16`` (the QDQ frontend has no uint16); everything else is signed. ``m = 0`` counts as ``m = 1``;
* bias, int ``bias_bits`` (default 32) at the accumulator scale ``2**-(f_x + f_w)``: codes =
  round_half_even(b * 2**(f_x + f_w)); a bias that does not fit is refused (no silent clipping).

The module must be in eval mode (``module.eval()``); nn2aie never changes the mode or the parameters of the module it
is given (the Brevitas exporter switches modes internally and restores them).
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nn2aie.errors import IllegalConfigError, UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import LoadedModel, load_model

OPSET = 21
IR_VERSION = 10
_ACT_ONNX = {(8, True): TensorProto.INT8, (8, False): TensorProto.UINT8, (16, True): TensorProto.INT16}
_ACT_NP = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16}
_HINT_MLP = ("nn2aie's PyTorch frontend takes MLPs made of nn.Linear, nn.ReLU, nn.Identity, nn.Dropout (eval) and "
             "nn.Flatten before the first Linear; use nn.ReLU for activations, flatten inputs yourself, or export a "
             "quantized ONNX QDQ / Brevitas QONNX model")
_NEAREST = {
    "Sigmoid": "nn.ReLU (the only activation the AIE-ML dense kernels implement)",
    "Tanh": "nn.ReLU (the only activation the AIE-ML dense kernels implement)",
    "GELU": "nn.ReLU", "SiLU": "nn.ReLU", "ELU": "nn.ReLU", "LeakyReLU": "nn.ReLU", "ReLU6": "nn.ReLU",
    "Hardtanh": "nn.ReLU", "Softmax": "drop the Softmax from the compiled model and apply it on the host",
    "LogSoftmax": "drop it from the compiled model and apply it on the host",
    "BatchNorm1d": "fold the BatchNorm into the preceding nn.Linear (W' = W*g/s, b' = (b-mu)*g/s + beta)",
    "LayerNorm": "remove it or fold a fixed affine transform into an nn.Linear",
    "Conv1d": "nn.Linear on flattened inputs (dense layers only)",
    "Conv2d": "nn.Linear on flattened inputs (dense layers only)",
    "LSTM": "an unrolled MLP of nn.Linear + nn.ReLU", "GRU": "an unrolled MLP of nn.Linear + nn.ReLU",
    "RNN": "an unrolled MLP of nn.Linear + nn.ReLU", "Embedding": "one-hot inputs into an nn.Linear",
}


# ------------------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------------------
def from_pytorch(module: Any, example_input: Any, *, calibration: Any = None, act_bits: int = 8,
                 weight_bits: int = 8, bias_bits: int = 32, name: str | None = None) -> LoadedModel:
    """A torch ``nn.Module`` -> ``LoadedModel`` (use with ``nn2aie.api.compile_loaded``).

    ``example_input``: one input batch (tensor or array) of the shape the module takes, e.g. ``[1, K]``.
    Brevitas modules are exported as they are (``calibration`` and the bit widths are not used: pass the
    defaults). Plain torch MLPs are quantized post-training from ``calibration`` (required: a float
    tensor/array ``[samples, ...]`` of representative inputs) with ``act_bits`` (8 or 16), ``weight_bits``
    (2..8 in int8, 9..16 in int16) and ``bias_bits`` (2..32) — see the module docstring for the rule.
    """
    torch = _require_torch()
    if not isinstance(module, torch.nn.Module):
        raise IllegalConfigError("from_pytorch", f"expected a torch.nn.Module, got {type(module).__name__}",
                                 "pass the model object itself")
    model_name = name or type(module).__name__.lower() or "model"
    training = [p or "(root)" for p, m in module.named_modules() if m.training]
    if training:
        raise IllegalConfigError(
            f"model {model_name}", f"is in training mode ({_count_list(training)})",
            "call module.eval() first: nn2aie compiles the inference forward and does not change your module's mode")
    example = _as_tensor(torch, example_input, "example_input")
    if _is_brevitas(module):
        if (act_bits, weight_bits, bias_bits) != (8, 8, 32):
            raise IllegalConfigError(
                f"model {model_name}", "is a Brevitas module: its own quantizers fix every bit width",
                "leave act_bits/weight_bits/bias_bits at their defaults (set the widths in the Brevitas quantizers)")
        return _from_brevitas(torch, module, example, model_name)
    return _from_plain(torch, module, example, calibration, act_bits, weight_bits, bias_bits, model_name)


def _require_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise IllegalConfigError("python package torch", f"cannot import torch: {exc}",
                                 "install PyTorch (CPU wheel is enough) to use nn2aie.from_pytorch") from exc
    return torch


def _count_list(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _as_tensor(torch: Any, value: Any, what: str) -> Any:
    if isinstance(value, torch.Tensor):
        t = value.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise IllegalConfigError(what, f"is not a float tensor or array ({exc})",
                                     "pass a torch.Tensor or numpy array") from None
    if not t.is_floating_point():
        raise IllegalConfigError(what, f"has dtype {t.dtype}, not floating point", "pass float inputs")
    if t.ndim < 2 or t.shape[0] < 1:
        raise IllegalConfigError(what, f"has shape {list(t.shape)}", "pass a batch [samples, features...]")
    if not bool(torch.isfinite(t).all()):
        raise IllegalConfigError(what, "contains NaN or infinity", "pass finite values")
    return t.to(torch.float32).cpu()


def _is_brevitas(module: Any) -> bool:
    return any(type(m).__module__.startswith("brevitas.") for m in module.modules())


# ------------------------------------------------------------------------------------------------------------
# Brevitas: export to QONNX in memory, load with the QONNX frontend
# ------------------------------------------------------------------------------------------------------------
def _from_brevitas(torch: Any, module: Any, example: Any, model_name: str) -> LoadedModel:
    try:
        from brevitas.export import export_qonnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise IllegalConfigError("python package brevitas", f"cannot import brevitas.export: {exc}",
                                 "install brevitas and onnxoptimizer") from exc
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        proto = export_qonnx(module, example[:1], None)  # export_path=None -> the ModelProto, nothing on disk
    proto.graph.name = model_name
    loaded = load_model(proto)
    loaded.graph.name = model_name
    loaded.graph.source["frontend"] = "pytorch (brevitas -> qonnx)"
    return loaded


# ------------------------------------------------------------------------------------------------------------
# plain torch: trace, check, calibrate, emit QDQ
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Layer:
    path: str  # module path of the nn.Linear, e.g. "model.0"
    weight: np.ndarray  # float64 [N, K] (torch layout)
    bias: np.ndarray | None  # float64 [N]
    relu: bool = False


def _where(path: str, mod: Any | None = None) -> str:
    full = f"model.{path}" if path else "model"
    return f"{full} ({type(mod).__name__})" if mod is not None else full


def _trace_layers(torch: Any, module: Any) -> tuple[list[_Layer], bool]:
    """The module as a chain of dense layers; returns (layers, flatten_at_input)."""
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types for untraceable code
        raise UnsupportedOpError(_where("", module), f"cannot be traced with torch.fx ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})",
                                 "write the MLP as nn.Sequential(nn.Linear, nn.ReLU, ...) without data-dependent "
                                 "control flow") from None
    nn = torch.nn
    F = torch.nn.functional
    layers: list[_Layer] = []
    flatten = False
    prev: Any = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise UnsupportedOpError(_where(""), "has more than one input", "trace a single-input MLP")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise UnsupportedOpError(_where(""), "does not return the last layer's output as one tensor",
                                         "return a single tensor from forward")
            break
        if node.op == "get_attr":
            raise UnsupportedOpError(_where(str(node.target)), "uses a parameter directly in forward",
                                     _HINT_MLP)
        ins = [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, fx.Node)]
        if ins != [prev]:
            raise UnsupportedOpError(_where(node.name), "is not a plain chain: the node takes "
                                     f"{len(ins)} tensor inputs or skips a step (residual / multi-branch graph)",
                                     _HINT_MLP)
        label, path, mod = _classify(node, gm, nn, F, torch)
        if label == "linear":
            w = mod.weight.detach().to(torch.float64).cpu().numpy()
            b = None if mod.bias is None else mod.bias.detach().to(torch.float64).cpu().numpy()
            layers.append(_Layer(_where(path), w, b))
        elif label == "relu":
            if not layers:
                raise UnsupportedOpError(_where(path, mod), "is a ReLU before the first nn.Linear",
                                         "apply it to the inputs on the host (nn2aie inputs are signed)")
            layers[-1].relu = True  # relu(relu(x)) == relu(x)
        elif label == "flatten":
            if layers:
                raise UnsupportedOpError(_where(path, mod), "flattens after the first nn.Linear",
                                         "nn.Flatten is accepted at the input only (the activations are 2-D)")
            flatten = True
        elif label == "identity":
            pass
        prev = node
    if not layers:
        raise UnsupportedOpError(_where("", module), "contains no nn.Linear", _HINT_MLP)
    return layers, flatten


def _classify(node: Any, gm: Any, nn: Any, F: Any, torch: Any) -> tuple[str, str, Any]:
    if node.op == "call_module":
        path = str(node.target)
        mod = gm.get_submodule(path)
        if isinstance(mod, nn.Linear):
            return "linear", path, mod
        if isinstance(mod, nn.ReLU):
            return "relu", path, mod
        if isinstance(mod, nn.Identity | nn.Dropout):  # Dropout only reaches here in eval mode
            return "identity", path, mod
        if isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise UnsupportedOpError(_where(path, mod), f"flattens dims {mod.start_dim}..{mod.end_dim}",
                                         "use nn.Flatten() (start_dim=1, end_dim=-1)")
            return "flatten", path, mod
        kind = type(mod).__name__
        nearest = _NEAREST.get(kind, "nn.Linear / nn.ReLU")
        raise UnsupportedOpError(_where(path, mod), f"{kind} is not supported by the AIE-ML dense flow",
                                 f"nearest supported alternative: {nearest}; {_HINT_MLP}")
    target = node.target
    if node.op == "call_function":
        fname = getattr(target, "__name__", str(target))
        if target in (F.relu, torch.relu, torch.relu_):
            return "relu", node.name, None
        if target is torch.flatten and _flatten_args_ok(node):
            return "flatten", node.name, None
        if target in (operator.getitem,):
            fname = "indexing"
    elif node.op == "call_method":
        fname = f".{target}()"
        if target in ("relu", "relu_"):
            return "relu", node.name, None
        if target == "flatten" and _flatten_args_ok(node):
            return "flatten", node.name, None
    else:  # pragma: no cover - fx has no other node kinds in a traced forward
        fname = node.op
    nearest = "nn.ReLU" if any(s in fname for s in ("sigmoid", "tanh", "gelu", "silu", "elu", "softmax")) else \
        "nn.Linear / nn.ReLU"
    raise UnsupportedOpError(f"{_where(node.name)} ({fname})", "is not supported by the AIE-ML dense flow",
                             f"nearest supported alternative: {nearest}; {_HINT_MLP}")


def _flatten_args_ok(node: Any) -> bool:
    args = list(node.args[1:])
    start = node.kwargs.get("start_dim", args[0] if args else 0)
    end = node.kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
    return start == 1 and end == -1


def _calibration_frac(m: float, max_code: int) -> int:
    """Largest f with m * 2**f <= max_code (m = 0 counts as 1)."""
    if not math.isfinite(m):
        raise IllegalConfigError("calibration", "gives a non-finite activation", "check the calibration data")
    m = m if m > 0 else 1.0
    f = math.floor(math.log2(max_code / m))
    while m * 2.0 ** f > max_code:
        f -= 1
    while m * 2.0 ** (f + 1) <= max_code:
        f += 1
    return f


def _from_plain(torch: Any, module: Any, example: Any, calibration: Any, act_bits: int, weight_bits: int,
                bias_bits: int, model_name: str) -> LoadedModel:
    if act_bits not in (8, 16):
        raise IllegalConfigError("act_bits", f"is {act_bits}", "use 8 or 16")
    if not 2 <= int(weight_bits) <= 16:
        raise IllegalConfigError("weight_bits", f"is {weight_bits}", "use 2..16 (8 is the int8 x int8 fast path)")
    if not 2 <= int(bias_bits) <= 32:
        raise IllegalConfigError("bias_bits", f"is {bias_bits}", "use 2..32")
    if weight_bits > 8 and act_bits == 8:
        raise IllegalConfigError("weight_bits", f"is {weight_bits} with act_bits=8",
                                 "AIE-ML has no 8-bit x 16-bit kernel: use weight_bits <= 8 or act_bits=16")
    layers, flatten = _trace_layers(torch, module)
    for layer in layers:
        if not (np.isfinite(layer.weight).all() and (layer.bias is None or np.isfinite(layer.bias).all())):
            raise IllegalConfigError(layer.path, "has NaN or infinite parameters", "fix the trained weights")
    if calibration is None:
        raise IllegalConfigError(
            f"model {model_name}", "is a plain PyTorch model: post-training quantization needs calibration data",
            "pass calibration=... (a float tensor/array of representative inputs, e.g. a few hundred samples)")
    cal = _as_tensor(torch, calibration, "calibration")
    k_in = int(np.prod(example.shape[1:]))
    if not flatten and example.ndim != 2:
        raise IllegalConfigError("example_input", f"has shape {list(example.shape)}",
                                 "pass [batch, features] or start the module with nn.Flatten()")
    if tuple(cal.shape[1:]) != tuple(example.shape[1:]):
        raise IllegalConfigError("calibration", f"has sample shape {list(cal.shape[1:])}, the example input "
                                 f"{list(example.shape[1:])}", "pass calibration samples shaped like the input")
    if layers[0].weight.shape[1] != k_in:
        raise IllegalConfigError("example_input", f"has {k_in} features, {layers[0].path} takes "
                                 f"{layers[0].weight.shape[1]}", "pass an input the module accepts")
    with torch.no_grad():  # the module runs on the example so shape errors surface as torch's own messages
        module(example[:1])

    x_cal = cal.reshape(cal.shape[0], -1).to(torch.float64).numpy()
    proto = _emit_qdq(layers, x_cal, act_bits, int(weight_bits), int(bias_bits), model_name)
    loaded = load_model(proto)
    loaded.graph.source["frontend"] = "pytorch (post-training quantization -> onnx qdq)"
    return loaded


def _emit_qdq(layers: list[_Layer], x_cal: np.ndarray, act_bits: int, weight_bits: int, bias_bits: int,
              model_name: str) -> onnx.ModelProto:
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def qparams(prefix: str, frac: int, np_type: Any) -> list[str]:
        inits.append(numpy_helper.from_array(np.asarray(2.0 ** -frac, dtype=np.float32), f"{prefix}_scale"))
        inits.append(numpy_helper.from_array(np.zeros((), dtype=np_type), f"{prefix}_zero_point"))
        return [f"{prefix}_scale", f"{prefix}_zero_point"]

    def q_dq(src: str, prefix: str, frac: int, onnx_type: int, out: str | None = None) -> str:
        np_type = _ACT_NP[onnx_type]
        nodes.append(helper.make_node("QuantizeLinear", [src, *qparams(prefix, frac, np_type)],
                                      [f"{prefix}_q"], name=f"{prefix}_quant"))
        dq = out or f"{prefix}_dq"
        nodes.append(helper.make_node("DequantizeLinear", [f"{prefix}_q", *qparams(f"{prefix}_dq", frac, np_type)],
                                      [dq], name=f"{prefix}_dequant"))
        return dq

    signed_t = _ACT_ONNX[(act_bits, True)]
    relu_t = _ACT_ONNX[(8, False)] if act_bits == 8 else signed_t
    w_np = np.int8 if weight_bits <= 8 else np.int16
    w_max = (1 << (weight_bits - 1)) - 1
    b_lo, b_hi = -(1 << (bias_bits - 1)), (1 << (bias_bits - 1)) - 1

    x_frac = _calibration_frac(float(np.abs(x_cal).max()), _max_code(signed_t))
    cur = q_dq("x", "input", x_frac, signed_t)
    act = x_cal  # float activations of the float model (calibration statistics)
    for i, layer in enumerate(layers):
        p = f"fc{i}"
        last = i == len(layers) - 1
        w = layer.weight  # [N, K]
        w_frac = _calibration_frac(float(np.abs(w).max()), w_max)
        w_codes = np.rint(w * 2.0 ** w_frac)  # |codes| <= w_max by construction, round half to even
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w_codes.T).astype(w_np), f"{p}_weight_q"))
        w_dq = f"{p}_weight_dq"
        nodes.append(helper.make_node("DequantizeLinear", [f"{p}_weight_q", *qparams(w_dq, w_frac, w_np)],
                                      [w_dq], name=f"{p}_weight_dequant"))
        y = f"{p}_matmul_out"
        nodes.append(helper.make_node("MatMul", [cur, w_dq], [y], name=f"{p}_matmul"))
        acc_frac = x_frac + w_frac
        if layer.bias is not None:
            b_codes = np.rint(layer.bias * 2.0 ** acc_frac)
            worst = int(np.argmax(np.abs(b_codes)))
            if b_codes[worst] < b_lo or b_codes[worst] > b_hi:
                raise UnsupportedQuantizationError(
                    f"{layer.path}.bias[{worst}]",
                    f"bias {layer.bias[worst]:.6g} at the accumulator scale 2^-{acc_frac} is code "
                    f"{int(b_codes[worst])}, outside int{bias_bits}",
                    "raise bias_bits (up to 32), lower act_bits, or calibrate with inputs of a larger range")
            inits.append(numpy_helper.from_array(b_codes.astype(np.int32), f"{p}_bias_q"))
            b_dq = f"{p}_bias_dq"
            nodes.append(helper.make_node("DequantizeLinear", [f"{p}_bias_q", *qparams(b_dq, acc_frac, np.int32)],
                                          [b_dq], name=f"{p}_bias_dequant"))
            nodes.append(helper.make_node("Add", [y, b_dq], [f"{p}_add_out"], name=f"{p}_bias_add"))
            y = f"{p}_add_out"
        act = act @ w.T + (layer.bias if layer.bias is not None else 0.0)
        out_t = signed_t
        if layer.relu:
            nodes.append(helper.make_node("Relu", [y], [f"{p}_relu_out"], name=f"{p}_relu"))
            y = f"{p}_relu_out"
            act = np.maximum(act, 0.0)
            out_t = relu_t
        o_frac = _calibration_frac(float(np.abs(act).max()), _max_code(out_t))
        cur = q_dq(y, p, o_frac, out_t, out="y" if last else None)
        x_frac = o_frac
    k, n = layers[0].weight.shape[1], layers[-1].weight.shape[0]
    graph = helper.make_graph(nodes, model_name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", int(k)])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", int(n)])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nn2aie.frontends.pytorch", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _max_code(onnx_type: int) -> int:
    return {TensorProto.INT8: 127, TensorProto.UINT8: 255, TensorProto.INT16: 32767}[onnx_type]
