"""Logical IR: what to compute, with exact types. Plain dataclasses, JSON round-trip, ``verify()``.

Supported op kinds (issue scope): ``dense`` — y = requantize(act(x @ W + b)): the activation acts on the exact
accumulator, then the result is brought into the output type (the order of ONNX Relu -> QuantizeLinear, QONNX
Relu -> Quant and hls4ml Dense -> ReLU -> cast). With saturating output types the other order gives the same
codes (rounding is monotone and keeps 0), which lets frontends fold a ReLU that follows a quantizer.
Inputs of a dense op: [x, W] or [x, W, b]; W has shape [K, N] (x @ W), b has shape [N].
Attributes: ``activation`` in {"linear", "relu"}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.ir.types import FixedType, TensorType, type_from_json

OP_KINDS = ("dense",)
ACTIVATIONS = ("linear", "relu")


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: TensorType
    data: np.ndarray | None = None  # integer codes (int64) for constants
    origin: str = ""  # name in the source model, for error messages

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def to_json(self, with_data: bool = True) -> dict:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "type": self.type.to_json()}
        if self.origin:
            out["origin"] = self.origin
        if self.data is not None and with_data:
            out["data"] = self.data.astype(np.int64).ravel().tolist()
        return out


@dataclass
class Op:
    name: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "inputs": self.inputs, "outputs": self.outputs,
                "attrs": dict(sorted(self.attrs.items()))}


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor]
    ops: list[Op]
    inputs: list[str]
    outputs: list[str]
    source: dict[str, str] = field(default_factory=dict)

    # -- queries -------------------------------------------------------------
    def producer(self, tensor: str) -> Op | None:
        for op in self.ops:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: str) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    # -- invariants ------------------------------------------------------------
    def verify(self) -> None:
        def fail(where: str, reason: str) -> None:
            raise InternalCheckError(where, reason, "please report this model to the nn2aie developers")

        produced: set[str] = set(self.inputs)
        for name in self.inputs:
            if name not in self.tensors:
                fail(f"graph input {name}", "no such tensor")
        for op in self.ops:
            if op.kind not in OP_KINDS:
                fail(f"op {op.name}", f"unknown kind {op.kind}")
            for t in op.inputs + op.outputs:
                if t not in self.tensors:
                    fail(f"op {op.name}", f"tensor {t} is not declared")
            for t in op.inputs:
                if not self.tensors[t].is_const and t not in produced:
                    fail(f"op {op.name}", f"input {t} is used before it is produced (ops must be topological)")
            for t in op.outputs:
                if t in produced:
                    fail(f"op {op.name}", f"tensor {t} is produced twice")
                produced.add(t)
            if op.kind == "dense":
                self._verify_dense(op, fail)
        for name in self.outputs:
            if name not in produced:
                fail(f"graph output {name}", "never produced")

    def _verify_dense(self, op: Op, fail) -> None:
        if len(op.inputs) not in (2, 3) or len(op.outputs) != 1:
            fail(f"op {op.name}", "dense takes [x, W] or [x, W, b] and gives one output")
        x, w = self.tensors[op.inputs[0]], self.tensors[op.inputs[1]]
        y = self.tensors[op.outputs[0]]
        for t in (x, w, y):
            if not isinstance(t.type, FixedType):
                fail(f"op {op.name}", f"tensor {t.name} is not fixed point")
        if not w.is_const or w.data is None or w.data.shape != tuple(w.shape) or len(w.shape) != 2:
            fail(f"op {op.name}", "weights must be a constant [K, N] array")
        k, n = w.shape
        if x.shape[-1] != k or y.shape[-1] != n:
            fail(f"op {op.name}", f"shape mismatch x{x.shape} W{w.shape} y{y.shape}")
        if len(op.inputs) == 3:
            b = self.tensors[op.inputs[2]]
            if not b.is_const or b.data is None or b.data.shape != (n,):
                fail(f"op {op.name}", "bias must be a constant [N] array")
        for t in [w] + ([self.tensors[op.inputs[2]]] if len(op.inputs) == 3 else []):
            d = t.data
            if d is None or d.min(initial=0) < t.type.min_code or d.max(initial=0) > t.type.max_code:
                fail(f"tensor {t.name}", "constant codes outside the range of its type")
        if op.attrs.get("activation", "linear") not in ACTIVATIONS:
            fail(f"op {op.name}", f"activation {op.attrs.get('activation')} unknown")

    # -- serialisation ------------------------------------------------------------
    def to_json(self, with_data: bool = True) -> dict:
        return {
            "name": self.name,
            "source": dict(sorted(self.source.items())),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "tensors": [self.tensors[k].to_json(with_data) for k in sorted(self.tensors)],
            "ops": [op.to_json() for op in self.ops],
        }

    @classmethod
    def from_json(cls, data: dict) -> Graph:
        tensors = {}
        for t in data["tensors"]:
            arr = None
            if "data" in t:
                arr = np.asarray(t["data"], dtype=np.int64).reshape(t["shape"])
            tensors[t["name"]] = Tensor(t["name"], tuple(t["shape"]), type_from_json(t["type"]), arr,
                                        t.get("origin", ""))
        ops = [Op(o["name"], o["kind"], list(o["inputs"]), list(o["outputs"]), dict(o["attrs"])) for o in data["ops"]]
        return cls(data["name"], tensors, ops, list(data["inputs"]), list(data["outputs"]), dict(data["source"]))
