"""PyTorch frontend: ``from_pytorch(module, example_input, ...)`` -> ``LoadedModel``.

Two paths, chosen from the module's contents:

* **Brevitas** (any submodule from ``brevitas.nn``): the module already carries its quantizers. It is exported to
  QONNX in memory (``brevitas.export.export_qonnx``) and loaded by the QONNX frontend; the reference is qonnx's
  own execution of that export (equal to the Brevitas forward for fixed-point quantizers).
* **plain torch** (``nn.Linear``, ``nn.ReLU``, ``nn.Identity``, ``nn.Dropout`` in eval mode, ``nn.Flatten``,
  the activations ``nn.Sigmoid`` / ``Tanh`` / ``GELU`` / ``SiLU`` / ``ELU`` / ``Hardswish`` / ``Hardsigmoid`` /
  ``Mish`` / ``Softplus`` (and their functional forms), ``nn.Softmax(dim=-1)``, ``nn.LayerNorm(features)``;
  in a custom ``forward`` also ``F.relu`` / ``torch.relu`` / ``.relu()``, ``a + b`` / ``torch.add`` of two tensors
  (residuals), ``torch.cat``, ``torch.mean`` / ``torch.sum`` / ``.mean()`` / ``.sum()`` over feature axes,
  ``torch.flatten(x, 1)``, ``.reshape`` / ``.view`` / ``torch.reshape`` with integer sizes): a DAG traced with
  torch.fx, quantized post-training with power-of-two scales from a calibration batch, emitted as an ONNX QDQ model
  (opset 21, zero points 0; ``export_qdq``) and loaded by the QDQ frontend; the reference is onnxruntime on that QDQ
  model. Every op's float result is followed by QuantizeLinear -> DequantizeLinear, and every op reads
  DequantizeLinear outputs (docs/ops.md conventions); a ReLU that is the only use of a Linear fuses into it.

Calibration rule (plain torch), every fraction ``f`` meaning scale ``2**-f``:

* weights, per tensor, signed ``weight_bits``: ``f = floor(log2((2**(weight_bits-1) - 1) / max|W|))`` -> no code
  clips; codes = round_half_even(W * 2**f);
* the input and every op output (Linear, ReLU, add, cat, mean, sum): ``m`` = max |value| of the *float* model over
  the calibration batch (after the ReLU when the layer has one); ``f`` = the largest integer with
  ``m * 2**f <= max_code`` (``max_code`` = 127 for int8, 255 for uint8, 32767 for int16). Outputs of a ReLU are
  uint8 with ``act_bits=8`` and int16 with ``act_bits=16`` (the QDQ frontend has no uint16); a cat of inputs of one
  type keeps that type; everything else is signed. ``m = 0`` counts as ``m = 1``. Flatten / reshape keep their
  input's scale and type;
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
from dataclasses import dataclass, field
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
    "LeakyReLU": "nn.ReLU", "ReLU6": "nn.ReLU", "Hardtanh": "nn.ReLU",
    "LogSoftmax": "nn.Softmax(dim=-1), or apply it on the host",
    "BatchNorm1d": "place it right before or after an nn.Linear (it is folded into it)",
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
    proto, exporter = _export_brevitas(export_qonnx, module, example[:1], model_name)
    proto.graph.name = model_name
    loaded = load_model(proto)
    loaded.graph.name = model_name
    loaded.graph.source["frontend"] = f"pytorch (brevitas -> qonnx, {exporter} exporter)"
    return loaded


def _export_brevitas(export_qonnx: Any, module: Any, example: Any, model_name: str) -> tuple[Any, str]:
    """QONNX from Brevitas' default (dynamo) exporter, or from the TorchScript exporter where dynamo fails (e.g.
    QuantMultiheadAttention); a typed error with both reasons when neither exports the module."""
    failures = []
    for exporter, kwargs in (("dynamo", {}), ("TorchScript", {"dynamo": False})):
        sink = io.StringIO()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                warnings.simplefilter("ignore")
                return export_qonnx(module, example, None, **kwargs), exporter  # export_path=None: nothing on disk
        except Exception as exc:  # the exporters' own errors, reported below
            failures.append(f"{exporter}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    raise UnsupportedOpError(f"module {model_name}", "Brevitas' QONNX export fails with both exporters ("
                             + "; ".join(failures) + ")", "simplify the module until export_qonnx exports it, or "
                             "export it yourself and pass the .onnx file")


# ------------------------------------------------------------------------------------------------------------
# plain torch: trace, check, calibrate, emit QDQ
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Node:
    """One computing step of the traced module (identity-like steps are aliases, not nodes)."""
    kind: str  # input | linear | relu | add | cat | mean | sum | flatten | reshape
    where: str  # for messages, e.g. "model.fc1 (Linear)"
    inputs: list[int]  # indices of the producing nodes
    attrs: dict = field(default_factory=dict)  # linear: weight [N, K], bias [N] | None; cat: dim; mean/sum: dims,
    #                                            keepdim; reshape: shape (torch arguments)
    relu: bool = False  # a linear with a fused ReLU
    value: np.ndarray | None = None  # float64 calibration values [samples, ...]


def _where(path: str, mod: Any | None = None) -> str:
    full = f"model.{path}" if path else "model"
    return f"{full} ({type(mod).__name__})" if mod is not None else full


def _tensor_args(value: Any, fx: Any) -> list[Any]:
    """fx nodes in an argument, in order, looking into lists and tuples (torch.cat's first argument)."""
    if isinstance(value, fx.Node):
        return [value]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _tensor_args(v, fx)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _tensor_args(v, fx)]
    return []


def _trace_graph(torch: Any, module: Any) -> tuple[list[_Node], list[int]]:
    """The module as a DAG of nodes (topological, node 0 the input) and the indices of its outputs."""
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types for untraceable code
        raise UnsupportedOpError(_where("", module), f"cannot be traced with torch.fx ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})",
                                 "write the model as nn.Sequential(nn.Linear, nn.ReLU, ...) or a forward without "
                                 "data-dependent control flow") from None
    nn = torch.nn
    F = torch.nn.functional
    nodes: list[_Node] = []
    env: dict[Any, int] = {}  # fx node -> index of the node computing its value
    outputs: list[int] | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if nodes:
                raise UnsupportedOpError(_where(""), "has more than one input", "trace a single-input model")
            env[node] = len(nodes)
            nodes.append(_Node("input", "model input", []))
            continue
        if node.op == "output":
            result = node.args[0]
            items = list(result) if isinstance(result, list | tuple) else [result]
            if not items or not all(isinstance(v, fx.Node) and v in env for v in items):
                raise UnsupportedOpError(_where(""), "does not return a tensor or a tuple of tensors computed by "
                                         "supported layers", "return the output tensor(s) from forward")
            outputs = list(dict.fromkeys(env[v] for v in items))
            break
        if node.op == "get_attr":
            raise UnsupportedOpError(_where(str(node.target)), "uses a parameter or buffer directly in forward",
                                     _HINT_MLP)
        label, path, mod, attrs = _classify(node, gm, nn, F, torch)
        where = _where(path, mod) if mod is not None else _where(path)
        ins = _tensor_args(list(node.args) + list(node.kwargs.values()), fx)
        if not ins:
            raise UnsupportedOpError(f"{where}", "takes no tensor input", _HINT_MLP)
        want = {"cat": None, "add": 2}.get(label, 1)
        if label == "add" and len(ins) != 2:
            raise UnsupportedOpError(f"{where} (add)", "adds a constant (only tensor + tensor is supported)",
                                     "fold a constant offset into the preceding nn.Linear's bias")
        if want is not None and len(ins) != want:
            raise UnsupportedOpError(where, f"takes {len(ins)} tensor inputs, expected {want}", _HINT_MLP)
        idx = [env[n] for n in ins]
        if label == "identity":
            env[node] = idx[0]
            continue
        if label == "linear":
            attrs = {"weight": mod.weight.detach().to(torch.float64).cpu().numpy(),
                     "bias": None if mod.bias is None else mod.bias.detach().to(torch.float64).cpu().numpy()}
        env[node] = len(nodes)
        nodes.append(_Node(label, where, idx, attrs))
    assert outputs is not None
    _fold_batchnorms(nodes, outputs)
    _fold_relus(nodes, outputs)
    if not any(n.kind == "linear" for n in nodes):
        raise UnsupportedOpError(_where("", module), "contains no nn.Linear", _HINT_MLP)
    return nodes, outputs


def _fold_batchnorms(nodes: list[_Node], outputs: list[int]) -> None:
    """Post-training quantization quantizes a float model, so an eval-mode BatchNorm1d folds into an nn.Linear
    in float64 before calibration: into the Linear before it (``W' = s W``, ``b' = s b + t`` per output) when that
    Linear feeds only the BatchNorm, else into the one Linear after it (``W' = W s``, ``b' = b + W t``, the
    BatchNorm on that Linear's input features). The QDQ model written afterwards is what nn2aie compiles and
    checks bit-exactly; the fold changes the float model only by float64 rounding."""
    users: dict[int, list[int]] = {}
    for k, n in enumerate(nodes):
        for i in n.inputs:
            users.setdefault(i, []).append(k)
    alias: dict[int, int] = {}
    for k, n in enumerate(nodes):
        n.inputs = [alias.get(i, i) for i in n.inputs]
        if n.kind != "batchnorm":
            continue
        src = nodes[n.inputs[0]]
        after = users.get(k, [])
        s, t = n.attrs["scale"], n.attrs["shift"]
        if src.kind == "linear" and users.get(n.inputs[0]) == [k] and n.inputs[0] not in outputs:
            w, b = src.attrs["weight"], src.attrs["bias"]
            if w.shape[0] != s.size:
                raise UnsupportedOpError(n.where, f"normalises {s.size} features after a Linear of {w.shape[0]}",
                                         "check the model")
            src.attrs["weight"] = w * s[:, None]
            src.attrs["bias"] = (b if b is not None else np.zeros(s.size)) * s + t
            src.where = f"{src.where} + {n.where}"
            alias[k] = n.inputs[0]
            continue
        if len(after) == 1 and k not in outputs and nodes[after[0]].kind == "linear":
            dst = nodes[after[0]]
            w, b = dst.attrs["weight"], dst.attrs["bias"]
            if w.shape[1] != s.size:
                raise UnsupportedOpError(n.where, f"normalises {s.size} features before a Linear of {w.shape[1]}",
                                         "apply the BatchNorm to the features the Linear reads")
            dst.attrs["weight"] = w * s[None, :]
            dst.attrs["bias"] = (b if b is not None else np.zeros(w.shape[0])) + w @ t
            dst.where = f"{n.where} + {dst.where}"
            alias[k] = n.inputs[0]
            continue
        raise UnsupportedOpError(n.where, "a BatchNorm1d folds into an nn.Linear right before it (read only by the "
                                 "BatchNorm) or right after it (the BatchNorm read only by it); this one has neither",
                                 "place it next to an nn.Linear, or export a QONNX model with Brevitas")
    if alias:
        outputs[:] = [alias.get(o, o) for o in outputs]
        keep = [k for k in range(len(nodes)) if k not in alias]
        renum = {old: new for new, old in enumerate(keep)}
        kept = [nodes[k] for k in keep]
        for n in kept:
            n.inputs = [renum[alias.get(i, i)] for i in n.inputs]
        nodes[:] = kept
        outputs[:] = [renum[o] for o in outputs]


def _fold_relus(nodes: list[_Node], outputs: list[int]) -> None:
    """A ReLU whose input is the only use of a Linear fuses into it; relu(relu(x)) == relu(x). Folded ReLUs become
    aliases: every later reference to them is redirected to their input."""
    users: dict[int, int] = {}
    for n in nodes:
        for i in dict.fromkeys(n.inputs):
            users[i] = users.get(i, 0) + 1
    alias: dict[int, int] = {}
    for k, n in enumerate(nodes):
        n.inputs = [alias.get(i, i) for i in n.inputs]
        if n.kind != "relu":
            continue
        src = nodes[n.inputs[0]]
        if src.kind == "relu" or (src.kind == "linear" and src.relu):
            alias[k] = n.inputs[0]
        elif src.kind == "linear" and users.get(n.inputs[0], 0) == 1 and n.inputs[0] not in outputs:
            src.relu = True
            alias[k] = n.inputs[0]
    outputs[:] = list(dict.fromkeys(alias.get(o, o) for o in outputs))
    keep = [k for k in range(len(nodes)) if k not in alias]
    renum = {old: new for new, old in enumerate(keep)}
    kept = [nodes[k] for k in keep]
    for n in kept:
        n.inputs = [renum[i] for i in n.inputs]
    nodes[:] = kept
    outputs[:] = [renum[o] for o in outputs]


def _functions(nn: Any, F: Any, torch: Any) -> dict:
    """Elementwise activation modules and functions: (ONNX op, its attributes, the torch function for calibration,
    whether the result is non-negative). The QDQ frontend compiles each into a lookup table that onnxruntime fills
    on every input code (bit-exact with the emitted model)."""
    return {
        nn.Sigmoid: ("Sigmoid", {}, torch.sigmoid, True), nn.Tanh: ("Tanh", {}, torch.tanh, False),
        nn.SiLU: ("SiLU", {}, F.silu, False), nn.Hardswish: ("HardSwish", {}, F.hardswish, False),
        nn.Hardsigmoid: ("HardSigmoid", {"alpha": 1.0 / 6, "beta": 0.5}, F.hardsigmoid, True),
        nn.Mish: ("Mish", {}, F.mish, False), nn.Softplus: ("Softplus", {}, F.softplus, True),
        torch.sigmoid: ("Sigmoid", {}, torch.sigmoid, True), torch.tanh: ("Tanh", {}, torch.tanh, False),
        F.silu: ("SiLU", {}, F.silu, False), F.hardswish: ("HardSwish", {}, F.hardswish, False),
        F.mish: ("Mish", {}, F.mish, False), F.softplus: ("Softplus", {}, F.softplus, True),
    }


def _function_node(spec: tuple, path: str) -> tuple[str, str, None, dict]:
    op, attrs, fn, positive = spec
    return "function", path, None, {"onnx": op, "onnx_attrs": attrs, "fn": fn, "positive": positive}


def _classify(node: Any, gm: Any, nn: Any, F: Any, torch: Any) -> tuple[str, str, Any, dict]:
    """(label, path, module or None, attributes) of one traced call."""
    functions = _functions(nn, F, torch)
    if node.op == "call_module":
        path = str(node.target)
        mod = gm.get_submodule(path)
        if type(mod) in functions:
            if isinstance(mod, nn.Softplus) and (mod.beta != 1 or mod.threshold != 20):
                raise UnsupportedOpError(_where(path, mod), "Softplus with beta or threshold other than 1 / 20",
                                         "use nn.Softplus()")
            return _function_node(functions[type(mod)], path)
        if isinstance(mod, nn.GELU):
            fn = F.gelu if mod.approximate == "none" else (lambda x: F.gelu(x, approximate="tanh"))
            return _function_node(("Gelu", {"approximate": mod.approximate}, fn, False), path)
        if isinstance(mod, nn.ELU):
            alpha = float(mod.alpha)
            return _function_node(("Elu", {"alpha": alpha}, lambda x: F.elu(x, alpha), False), path)
        if isinstance(mod, nn.Softmax):
            if mod.dim not in (-1, None):
                raise UnsupportedOpError(_where(path, mod), f"softmax over dim {mod.dim}", "use nn.Softmax(dim=-1)")
            return "softmax", path, mod, {}
        if isinstance(mod, nn.LayerNorm):
            if len(mod.normalized_shape) != 1:
                raise UnsupportedOpError(_where(path, mod), f"normalises over {list(mod.normalized_shape)}",
                                         "normalise over the last axis only (nn.LayerNorm(features))")
            weight = mod.weight.detach().to(torch.float64).cpu().numpy() if mod.weight is not None else None
            bias = mod.bias.detach().to(torch.float64).cpu().numpy() if mod.bias is not None else None
            return "layernorm", path, mod, {"eps": float(mod.eps), "weight": weight, "bias": bias,
                                            "n": int(mod.normalized_shape[0])}
        if isinstance(mod, nn.Linear):
            return "linear", path, mod, {}
        if isinstance(mod, nn.ReLU):
            return "relu", path, mod, {}
        if isinstance(mod, nn.Identity | nn.Dropout):  # Dropout only reaches here in eval mode
            return "identity", path, mod, {}
        if isinstance(mod, nn.BatchNorm1d):
            if mod.training or not mod.track_running_stats or mod.running_mean is None:
                raise UnsupportedOpError(_where(path, mod), "is in training mode or has no running statistics",
                                         "call model.eval() on a trained model")
            var = mod.running_var.detach().to(torch.float64).cpu().numpy()
            scale = 1.0 / np.sqrt(var + float(mod.eps))
            shift = -mod.running_mean.detach().to(torch.float64).cpu().numpy() * scale
            if mod.affine:
                g = mod.weight.detach().to(torch.float64).cpu().numpy()
                scale, shift = scale * g, shift * g + mod.bias.detach().to(torch.float64).cpu().numpy()
            return "batchnorm", path, mod, {"scale": scale, "shift": shift}
        if isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise UnsupportedOpError(_where(path, mod), f"flattens dims {mod.start_dim}..{mod.end_dim}",
                                         "use nn.Flatten() (start_dim=1, end_dim=-1)")
            return "flatten", path, mod, {}
        kind = type(mod).__name__
        nearest = _NEAREST.get(kind, "nn.Linear / nn.ReLU")
        raise UnsupportedOpError(_where(path, mod), f"{kind} is not supported by the AIE-ML flow",
                                 f"nearest supported alternative: {nearest}; {_HINT_MLP}")
    target = node.target
    args, kwargs = list(node.args), dict(node.kwargs)
    if node.op == "call_function":
        fname = getattr(target, "__name__", str(target))
        if target in (F.relu, torch.relu, torch.relu_):
            return "relu", node.name, None, {}
        if target in functions and not kwargs and len(args) == 1:
            return _function_node(functions[target], node.name)
        if target is torch.flatten and _flatten_args_ok(node):
            return "flatten", node.name, None, {}
        if target in (operator.add, torch.add):
            if kwargs.get("alpha", 1) != 1 or len(args) != 2:
                raise UnsupportedOpError(f"{_where(node.name)} (add)", "adds with a scale (alpha) or extra "
                                         "arguments", "write a + b")
            return "add", node.name, None, {}
        if target in (torch.cat, torch.concat):
            return "cat", node.name, None, {"dim": kwargs.get("dim", args[1] if len(args) > 1 else 0)}
        if target in (torch.mean, torch.sum):
            return _reduce_attrs("mean" if target is torch.mean else "sum", node, args[1:], kwargs)
        if target is torch.reshape:
            return "reshape", node.name, None, {"shape": _shape_args(node, args[1:])}
        if target in (operator.getitem,):
            fname = "indexing"
    elif node.op == "call_method":
        fname = f".{target}()"
        if target in ("relu", "relu_"):
            return "relu", node.name, None, {}
        if target == "flatten" and _flatten_args_ok(node):
            return "flatten", node.name, None, {}
        if target == "add" and len(args) == 2 and kwargs.get("alpha", 1) == 1:
            return "add", node.name, None, {}
        if target in ("mean", "sum"):
            return _reduce_attrs(target, node, args[1:], kwargs)
        if target in ("view", "reshape"):
            return "reshape", node.name, None, {"shape": _shape_args(node, args[1:])}
    else:  # pragma: no cover - fx has no other node kinds in a traced forward
        fname = node.op
    nearest = "nn.ReLU" if any(s in fname for s in ("sigmoid", "tanh", "gelu", "silu", "elu", "softmax")) else \
        "nn.Linear / nn.ReLU"
    raise UnsupportedOpError(f"{_where(node.name)} ({fname})", "is not supported by the AIE-ML flow",
                             f"nearest supported alternative: {nearest}; {_HINT_MLP}")


def _reduce_attrs(kind: str, node: Any, args: list, kwargs: dict) -> tuple[str, str, None, dict]:
    dims = kwargs.get("dim", args[0] if args else None)
    keepdim = kwargs.get("keepdim", args[1] if len(args) > 1 else False)
    dims = [dims] if isinstance(dims, int) else list(dims) if isinstance(dims, list | tuple) else None
    if dims is None or not dims or not all(isinstance(d, int) for d in dims) or "dtype" in kwargs \
            or not isinstance(keepdim, bool):
        raise UnsupportedOpError(f"{_where(node.name)} ({kind})", f"reduces over {kwargs.get('dim', args)!r}",
                                 f"give the feature axes explicitly, e.g. torch.{kind}(x, dim=1) (never the batch "
                                 "axis)")
    return kind, node.name, None, {"dims": dims, "keepdim": keepdim}


def _shape_args(node: Any, args: list) -> list[int]:
    shape = list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
    if not shape or not all(isinstance(s, int) for s in shape):
        raise UnsupportedOpError(f"{_where(node.name)} (reshape)", f"reshapes to {shape!r} (computed sizes)",
                                 "give the target shape as integers with -1 for the batch axis, e.g. "
                                 "x.reshape(-1, 16)")
    return shape


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


def _axes(n: _Node, dims: list[int], rank: int) -> list[int]:
    """Per-sample axes (0-based, without the batch axis) of torch dims on a [samples, ...] value of ``rank``."""
    out = []
    for d in dims:
        d = d + rank if d < 0 else d
        if not 1 <= d < rank:
            raise UnsupportedOpError(n.where, f"works on dim {d} of a rank-{rank} tensor (dim 0 is the batch)",
                                     "reduce / concatenate over feature axes only")
        out.append(d - 1)
    return sorted(set(out))


def _calibrate(nodes: list[_Node], x_cal: np.ndarray) -> None:
    """Float64 values of every node on the calibration batch (the float model; linears as x @ W.T + b)."""
    for n in nodes:
        vals = [nodes[i].value for i in n.inputs]
        if n.kind == "input":
            v = x_cal
        elif n.kind == "linear":
            if vals[0].shape[-1] != n.attrs["weight"].shape[1]:
                raise IllegalConfigError(n.where, f"takes {n.attrs['weight'].shape[1]} features, gets "
                                         f"{list(vals[0].shape[1:])}", "pass an input the module accepts")
            v = vals[0] @ n.attrs["weight"].T + (n.attrs["bias"] if n.attrs["bias"] is not None else 0.0)
            if n.relu:
                v = np.maximum(v, 0.0)
        elif n.kind == "relu":
            v = np.maximum(vals[0], 0.0)
        elif n.kind == "function":
            import torch

            v = n.attrs["fn"](torch.from_numpy(vals[0])).numpy()
        elif n.kind == "softmax":
            e = np.exp(vals[0] - vals[0].max(axis=-1, keepdims=True))
            v = e / e.sum(axis=-1, keepdims=True)
        elif n.kind == "layernorm":
            x = vals[0]
            if x.shape[-1] != n.attrs["n"]:
                raise IllegalConfigError(n.where, f"normalises {n.attrs['n']} features, gets {x.shape[-1]}",
                                         "pass an input the module accepts")
            v = (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + n.attrs["eps"])
            if n.attrs["weight"] is not None:
                v = v * n.attrs["weight"]
            if n.attrs["bias"] is not None:
                v = v + n.attrs["bias"]
        elif n.kind == "add":
            if vals[0].shape != vals[1].shape:
                raise UnsupportedOpError(n.where, f"adds shapes {list(vals[0].shape[1:])} and "
                                         f"{list(vals[1].shape[1:])} (broadcasting)", "add tensors of one shape")
            v = vals[0] + vals[1]
        elif n.kind == "cat":
            (axis,) = _axes(n, [n.attrs["dim"]], vals[0].ndim)
            n.attrs["axis"] = axis
            try:
                v = np.concatenate(vals, axis=axis + 1)
            except ValueError as exc:
                raise UnsupportedOpError(n.where, f"concatenates incompatible shapes ({exc})", _HINT_MLP) from None
        elif n.kind in ("mean", "sum"):
            n.attrs["axes"] = _axes(n, n.attrs["dims"], vals[0].ndim)
            fn = np.mean if n.kind == "mean" else np.sum
            v = fn(vals[0], axis=tuple(a + 1 for a in n.attrs["axes"]), keepdims=n.attrs["keepdim"])
        elif n.kind == "flatten":
            v = vals[0].reshape(len(vals[0]), -1)
        else:  # reshape
            try:
                v = vals[0].reshape(n.attrs["shape"])
            except ValueError as exc:
                raise UnsupportedOpError(n.where, f"cannot reshape {list(vals[0].shape[1:])} ({exc})",
                                         "use -1 for the batch axis") from None
            if v.shape[0] != len(vals[0]):
                raise UnsupportedOpError(n.where, f"reshapes to {n.attrs['shape']}, which moves the batch axis",
                                         "keep the batch axis first, e.g. x.reshape(-1, 16)")
        n.value = np.asarray(v, dtype=np.float64)


def _from_plain(torch: Any, module: Any, example: Any, calibration: Any, act_bits: int, weight_bits: int,
                bias_bits: int, model_name: str) -> LoadedModel:
    proto = export_qdq(module, example, calibration=calibration, act_bits=act_bits, weight_bits=weight_bits,
                       bias_bits=bias_bits, name=model_name)
    loaded = load_model(proto)
    loaded.graph.source["frontend"] = "pytorch (post-training quantization -> onnx qdq)"
    return loaded


def export_qdq(module: Any, example_input: Any, *, calibration: Any, act_bits: int = 8, weight_bits: int = 8,
               bias_bits: int = 32, name: str | None = None) -> onnx.ModelProto:
    """The ONNX QDQ model ``from_pytorch`` quantizes a plain torch module into (post-training, power-of-two scales;
    the module docstring gives the rule), before the QDQ frontend reads it."""
    torch = _require_torch()
    model_name = name or type(module).__name__.lower() or "model"
    example = _as_tensor(torch, example_input, "example_input")
    if act_bits not in (8, 16):
        raise IllegalConfigError("act_bits", f"is {act_bits}", "use 8 or 16")
    if not 2 <= int(weight_bits) <= 16:
        raise IllegalConfigError("weight_bits", f"is {weight_bits}", "use 2..16 (8 is the int8 x int8 fast path)")
    if not 2 <= int(bias_bits) <= 32:
        raise IllegalConfigError("bias_bits", f"is {bias_bits}", "use 2..32")
    if weight_bits > 8 and act_bits == 8:
        raise IllegalConfigError("weight_bits", f"is {weight_bits} with act_bits=8",
                                 "AIE-ML has no 8-bit x 16-bit kernel: use weight_bits <= 8 or act_bits=16")
    nodes, outputs = _trace_graph(torch, module)
    for n in nodes:
        if n.kind == "linear" and not (np.isfinite(n.attrs["weight"]).all() and
                                       (n.attrs["bias"] is None or np.isfinite(n.attrs["bias"]).all())):
            raise IllegalConfigError(n.where, "has NaN or infinite parameters", "fix the trained weights")
    if calibration is None:
        raise IllegalConfigError(
            f"model {model_name}", "is a plain PyTorch model: post-training quantization needs calibration data",
            "pass calibration=... (a float tensor/array of representative inputs, e.g. a few hundred samples)")
    cal = _as_tensor(torch, calibration, "calibration")
    if tuple(cal.shape[1:]) != tuple(example.shape[1:]):
        raise IllegalConfigError("calibration", f"has sample shape {list(cal.shape[1:])}, the example input "
                                 f"{list(example.shape[1:])}", "pass calibration samples shaped like the input")
    # nn.Flatten as the input's only use: the compiled design takes the flattened [samples, K] rows
    users = [n for n in nodes if 0 in n.inputs]
    flatten_input = len(users) == 1 and users[0].kind == "flatten" and 0 not in outputs
    if flatten_input:
        drop = nodes.index(users[0])
        for n in nodes:
            n.inputs = [0 if i == drop else i - (i > drop) for i in n.inputs]
        outputs[:] = [0 if o == drop else o - (o > drop) for o in outputs]
        del nodes[drop]
    first = next(n for n in nodes if n.kind == "linear")
    if flatten_input and first.inputs == [0] and first.attrs["weight"].shape[1] != int(np.prod(example.shape[1:])):
        raise IllegalConfigError("example_input", f"has {int(np.prod(example.shape[1:]))} features, {first.where} "
                                 f"takes {first.attrs['weight'].shape[1]}", "pass an input the module accepts")
    try:
        with torch.no_grad():  # the module runs on the example: shape errors surface with torch's own message
            module(example[:1])
    except Exception as exc:  # noqa: BLE001 - torch raises many types
        raise IllegalConfigError("example_input", f"the module fails on it ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})",
                                 "pass an input the module accepts") from None
    x_cal = cal.to(torch.float64).numpy()
    x_cal = x_cal.reshape(len(x_cal), -1) if flatten_input else x_cal
    _calibrate(nodes, x_cal)
    return _emit_qdq(nodes, outputs, act_bits, int(weight_bits), int(bias_bits), model_name)


def _emit_qdq(nodes: list[_Node], outputs: list[int], act_bits: int, weight_bits: int, bias_bits: int,
              model_name: str) -> onnx.ModelProto:
    """Every node's float result is followed by QuantizeLinear -> DequantizeLinear (power-of-two scale, zero point
    0); its consumers read the DequantizeLinear output. Views (flatten, reshape) keep their input's scale and type
    exactly."""
    onodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def qparams(prefix: str, frac: int, np_type: Any) -> list[str]:
        inits.append(numpy_helper.from_array(np.asarray(2.0 ** -frac, dtype=np.float32), f"{prefix}_scale"))
        inits.append(numpy_helper.from_array(np.zeros((), dtype=np_type), f"{prefix}_zero_point"))
        return [f"{prefix}_scale", f"{prefix}_zero_point"]

    def q_dq(src: str, prefix: str, frac: int, onnx_type: int, out: str | None = None) -> str:
        np_type = _ACT_NP[onnx_type]
        onodes.append(helper.make_node("QuantizeLinear", [src, *qparams(prefix, frac, np_type)],
                                       [f"{prefix}_q"], name=f"{prefix}_quant"))
        dq = out or f"{prefix}_dq"
        onodes.append(helper.make_node("DequantizeLinear", [f"{prefix}_q", *qparams(f"{prefix}_dq", frac, np_type)],
                                       [dq], name=f"{prefix}_dequant"))
        return dq

    signed_t = _ACT_ONNX[(act_bits, True)]
    relu_t = _ACT_ONNX[(8, False)] if act_bits == 8 else signed_t
    w_np = np.int8 if weight_bits <= 8 else np.int16
    w_max = (1 << (weight_bits - 1)) - 1
    b_lo, b_hi = -(1 << (bias_bits - 1)), (1 << (bias_bits - 1)) - 1

    out_names = {o: ("y" if len(outputs) == 1 else f"y{j}") for j, o in enumerate(outputs)}
    names: list[str] = []  # the DequantizeLinear output of each node
    qtypes: list[tuple[int, int]] = []  # (frac, onnx type) of each node
    counters: dict[str, int] = {}

    def prefix_for(kind: str) -> str:
        i = counters.get(kind, 0)
        counters[kind] = i + 1
        return f"{'fc' if kind == 'linear' else kind}{i}"

    def requant(k: int, y: str, p: str, out_t: int) -> None:
        frac = _calibration_frac(float(np.abs(nodes[k].value).max(initial=0.0)), _max_code(out_t))
        names.append(q_dq(y, p, frac, out_t, out=out_names.get(k)))
        qtypes.append((frac, out_t))

    for k, n in enumerate(nodes):
        ins = [names[i] for i in n.inputs]
        if n.kind == "input":
            requant(k, "x", "input", signed_t)
            continue
        p = prefix_for(n.kind)
        if n.kind == "linear":
            x_frac = qtypes[n.inputs[0]][0]
            w, bias = n.attrs["weight"], n.attrs["bias"]  # [N, K], [N]
            w_frac = _calibration_frac(float(np.abs(w).max()), w_max)
            w_codes = np.rint(w * 2.0 ** w_frac)  # |codes| <= w_max by construction, round half to even
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w_codes.T).astype(w_np), f"{p}_weight_q"))
            w_dq = f"{p}_weight_dq"
            onodes.append(helper.make_node("DequantizeLinear", [f"{p}_weight_q", *qparams(w_dq, w_frac, w_np)],
                                           [w_dq], name=f"{p}_weight_dequant"))
            y = f"{p}_matmul_out"
            onodes.append(helper.make_node("MatMul", [ins[0], w_dq], [y], name=f"{p}_matmul"))
            acc_frac = x_frac + w_frac
            if bias is not None:
                b_codes = np.rint(bias * 2.0 ** acc_frac)
                worst = int(np.argmax(np.abs(b_codes)))
                if b_codes[worst] < b_lo or b_codes[worst] > b_hi:
                    path = n.where.split(" (")[0]
                    raise UnsupportedQuantizationError(
                        f"{path}.bias[{worst}]",
                        f"bias {bias[worst]:.6g} at the accumulator scale 2^-{acc_frac} is code "
                        f"{int(b_codes[worst])}, outside int{bias_bits}",
                        "raise bias_bits (up to 32), lower act_bits, or calibrate with inputs of a larger range")
                inits.append(numpy_helper.from_array(b_codes.astype(np.int32), f"{p}_bias_q"))
                b_dq = f"{p}_bias_dq"
                onodes.append(helper.make_node("DequantizeLinear", [f"{p}_bias_q", *qparams(b_dq, acc_frac,
                                                                                             np.int32)],
                                               [b_dq], name=f"{p}_bias_dequant"))
                onodes.append(helper.make_node("Add", [y, b_dq], [f"{p}_add_out"], name=f"{p}_bias_add"))
                y = f"{p}_add_out"
            if n.relu:
                onodes.append(helper.make_node("Relu", [y], [f"{p}_relu_out"], name=f"{p}_relu"))
                y = f"{p}_relu_out"
            requant(k, y, p, relu_t if n.relu else signed_t)
        elif n.kind == "relu":
            onodes.append(helper.make_node("Relu", ins, [f"{p}_out"], name=p))
            requant(k, f"{p}_out", p, relu_t)
        elif n.kind == "function":
            op = n.attrs["onnx"]
            if op == "SiLU":  # x * sigmoid(x)
                onodes.append(helper.make_node("Sigmoid", ins, [f"{p}_sigmoid"], name=f"{p}_sigmoid"))
                onodes.append(helper.make_node("Mul", [ins[0], f"{p}_sigmoid"], [f"{p}_out"], name=p))
            else:
                onodes.append(helper.make_node(op, ins, [f"{p}_out"], name=p, **n.attrs["onnx_attrs"]))
            requant(k, f"{p}_out", p, relu_t if n.attrs["positive"] else signed_t)
        elif n.kind == "softmax":
            onodes.append(helper.make_node("Softmax", ins, [f"{p}_out"], name=p, axis=-1))
            requant(k, f"{p}_out", p, relu_t)
        elif n.kind == "layernorm":
            size = n.attrs["n"]
            extra = []
            for part, default in (("weight", 1.0), ("bias", 0.0)):
                values = n.attrs[part] if n.attrs[part] is not None else np.full(size, default)
                inits.append(numpy_helper.from_array(np.asarray(values, np.float32), f"{p}_{part}"))
                extra.append(f"{p}_{part}")
            onodes.append(helper.make_node("LayerNormalization", [ins[0], *extra], [f"{p}_out"], name=p, axis=-1,
                                           epsilon=n.attrs["eps"]))
            requant(k, f"{p}_out", p, signed_t)
        elif n.kind == "add":
            onodes.append(helper.make_node("Add", ins, [f"{p}_out"], name=p))
            requant(k, f"{p}_out", p, signed_t)
        elif n.kind == "cat":
            onodes.append(helper.make_node("Concat", ins, [f"{p}_out"], name=p, axis=n.attrs["axis"] + 1))
            types = {qtypes[i][1] for i in n.inputs}
            requant(k, f"{p}_out", p, types.pop() if len(types) == 1 else signed_t)
        elif n.kind in ("mean", "sum"):
            axes = f"{p}_axes"
            inits.append(numpy_helper.from_array(np.asarray([a + 1 for a in n.attrs["axes"]], np.int64), axes))
            op = "ReduceMean" if n.kind == "mean" else "ReduceSum"
            onodes.append(helper.make_node(op, [ins[0], axes], [f"{p}_out"], name=p,
                                           keepdims=int(n.attrs["keepdim"])))
            requant(k, f"{p}_out", p, signed_t)
        else:  # flatten / reshape: a view, then Q/DQ at the input's own scale and type (exact)
            if n.kind == "flatten":
                onodes.append(helper.make_node("Flatten", ins, [f"{p}_out"], name=p, axis=1))
            else:
                shape = f"{p}_shape"
                inits.append(numpy_helper.from_array(np.asarray((-1,) + n.value.shape[1:], np.int64), shape))
                onodes.append(helper.make_node("Reshape", [ins[0], shape], [f"{p}_out"], name=p))
            frac, onnx_t = qtypes[n.inputs[0]]
            names.append(q_dq(f"{p}_out", p, frac, onnx_t, out=out_names.get(k)))
            qtypes.append((frac, onnx_t))

    def info(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *map(int, value.shape[1:])])

    graph = helper.make_graph(onodes, model_name, [info("x", nodes[0].value)],
                              [info(out_names[o], nodes[o].value) for o in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nn2aie.frontends.pytorch", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _max_code(onnx_type: int) -> int:
    return {TensorProto.INT8: 127, TensorProto.UINT8: 255, TensorProto.INT16: 32767}[onnx_type]
