"""Logical IR: what to compute, with exact types. Plain dataclasses, JSON round-trip, ``verify()``.

Op kinds and their semantics belong to the op families (``kernels/<family>/``, listed in ``kernels/registry.py``;
docs/ops.md is the reference). Tensor shapes are per event (no batch axis); the graph is a DAG with any number of
inputs and outputs, its ops stored in a topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.ir.types import TensorType, type_from_json


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
    def _maps(self) -> tuple[dict[str, Op], dict[str, list[Op]]]:
        """(producer of each tensor, consumers of each tensor), rebuilt when the op list changes."""
        key = tuple((id(op), tuple(op.inputs), tuple(op.outputs)) for op in self.ops)
        cached = self.__dict__.get("_maps_cache")
        if cached is None or cached[0] != key:
            producer: dict[str, Op] = {}
            consumers: dict[str, list[Op]] = {}
            for op in self.ops:
                for t in op.outputs:
                    producer.setdefault(t, op)
                for t in dict.fromkeys(op.inputs):
                    consumers.setdefault(t, []).append(op)
            cached = (key, producer, consumers)
            self.__dict__["_maps_cache"] = cached
        return cached[1], cached[2]

    def producer(self, tensor: str) -> Op | None:
        return self._maps()[0].get(tensor)

    def consumers(self, tensor: str) -> list[Op]:
        return list(self._maps()[1].get(tensor, []))

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def activation_inputs(self, op: Op) -> list[str]:
        """The op's inputs that are not constants, in order (repeats kept)."""
        return [t for t in op.inputs if not self.tensors[t].is_const]

    def topo_order(self) -> list[Op]:
        """Ops in a topological order: the stored order, which ``verify`` checks is one."""
        return list(self.ops)

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
        from nn2aie.kernels.registry import family_for  # the registry imports the IR

        names: set[str] = set()
        for op in self.ops:
            family = family_for(op.kind)
            if family is None:
                fail(f"op {op.name}", f"unknown kind {op.kind}")
            if op.name in names:
                fail(f"op {op.name}", "two ops share this name")
            names.add(op.name)
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
            family.verify(self, op, fail)
        for name in self.outputs:
            if name not in produced:
                fail(f"graph output {name}", "never produced")

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
