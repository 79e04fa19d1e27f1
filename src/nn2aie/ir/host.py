"""Host-side float steps around the array: what the source model computes in float before its first quantizer and
after its last integer result.

Real models quantize their input after a few float operations (FINN's networks feed ``2x - 1`` to a bipolar
quantizer) and end in float operations on the last layer's exact sum (FINN's TensorNorm ``(y - m) / s * g + b``).
Those steps are not array work: the host runs them, in float32, exactly as the source does (every step is one IEEE
float32 operation per element, the same in numpy and onnxruntime), and the array sees integer codes only.

- ``HostPrologue`` of a graph input: elementwise steps on the user's float values, then the quantizer (the input
  type's own; ``bipolar``: ``+1`` where the value is >= 0, else ``-1``, as QONNX ``BipolarQuant``; or
  ``quantize_linear``: ONNX QuantizeLinear's ``saturate(round_half_even(x / scale) + zero_point)``, which rounds
  before adding the zero point where QONNX ``Quant`` adds it first; or ``user``: a float input the model reads
  without a quantizer, cast into the ap_fixed type the user chose with ``input_types``);
- ``HostEpilogue`` of a graph output: the output codes dequantized (``code * lsb``, exact), then elementwise steps.

Element order: the steps act on the event flattened in row-major order (views between them keep that order), each
constant broadcast to the event's shape at its place and flattened, so every step is ``x op c[k]`` per feature.
Both are stored in ``Graph.source`` as JSON (``HOST_PROLOGUE`` / ``HOST_EPILOGUE``, keyed by the logical tensor)
and reported in the compile summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

HOST_PROLOGUE = "host_prologue"
HOST_EPILOGUE = "host_epilogue"
STEP_OPS = ("add", "sub", "mul", "div", "rsub", "rdiv")  # x+c, x-c, x*c, x/c, c-x, c/x
QUANTIZERS = ("type", "bipolar", "quantize_linear", "user")
_SYMBOL = {"add": "x + {c}", "sub": "x - {c}", "mul": "x * {c}", "div": "x / {c}", "rsub": "{c} - x",
           "rdiv": "{c} / x"}


@dataclass(frozen=True)
class HostStep:
    """``x op c`` per feature in float32: ``constant`` is one float32 value or one per feature of the event."""

    op: str
    constant: tuple[float, ...]
    origin: str = ""  # the source node, for the summary

    def __post_init__(self) -> None:
        if self.op not in STEP_OPS or not self.constant:
            raise ValueError(f"bad host step {self.op!r} with {len(self.constant)} constants")

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[events, K] float32 -> float32, one IEEE rounding per element."""
        c = np.asarray(self.constant, dtype=np.float32)
        x = np.asarray(x, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = {"add": lambda: x + c, "sub": lambda: x - c, "mul": lambda: x * c, "div": lambda: x / c,
                   "rsub": lambda: c - x, "rdiv": lambda: c / x}[self.op]()
        return out.astype(np.float32, copy=False)

    def describe(self) -> str:
        c = f"{self.constant[0]:.6g}" if len(self.constant) == 1 else f"c[{len(self.constant)}]"
        return _SYMBOL[self.op].format(c=c)

    def to_json(self) -> dict:
        return {"op": self.op, "constant": list(self.constant), "origin": self.origin}

    @classmethod
    def from_json(cls, data: dict) -> HostStep:
        return cls(data["op"], tuple(float(v) for v in data["constant"]), data.get("origin", ""))


@dataclass(frozen=True)
class HostPrologue:
    """Float steps before a graph input's quantizer (``quantizer``: "type" = the input type's, or "bipolar")."""

    steps: tuple[HostStep, ...]
    quantizer: str = "type"
    source_shape: tuple[int, ...] = ()  # the per-event shape of the source model's input
    # the source's channels-first event shape [C, *spatial] when the array holds the input channels last: the codes
    # are transposed on the host after the quantizer (empty: same element order)
    channels_first: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"unknown host quantizer {self.quantizer!r}")

    def to_array_order(self, codes: np.ndarray) -> np.ndarray:
        """[events, K] codes in the source's element order -> the array's (channels last)."""
        if not self.channels_first:
            return codes
        return np.asarray(codes)[:, np.argsort(channels_last_order(self.channels_first))]

    def apply_steps(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float32)
        for step in self.steps:
            y = step.apply(y)
        return y

    def describe(self) -> str:
        last = {"bipolar": "bipolar (x >= 0 ? +1 : -1)", "quantize_linear": "QuantizeLinear (round(x / s) + zp)",
                "user": "cast into the input type given with input_types (the source model reads floats: equal "
                        "to it on inputs on that grid)"}
        parts = [s.describe() for s in self.steps] + [last.get(self.quantizer, "the input quantizer")]
        if self.channels_first:
            parts.append(f"transposed from {list(self.channels_first)} (channels first) to channels last")
        return " -> ".join(parts)

    def to_json(self) -> dict:
        return {"steps": [s.to_json() for s in self.steps], "quantizer": self.quantizer,
                "source_shape": list(self.source_shape)} | \
            ({"channels_first": list(self.channels_first)} if self.channels_first else {})

    @classmethod
    def from_json(cls, data: dict) -> HostPrologue:
        return cls(tuple(HostStep.from_json(s) for s in data["steps"]), data.get("quantizer", "type"),
                   tuple(int(v) for v in data.get("source_shape", ())),
                   tuple(int(v) for v in data.get("channels_first", ())))


@dataclass(frozen=True)
class HostEpilogue:
    """Float steps after a graph output's codes are dequantized."""

    steps: tuple[HostStep, ...]
    channels_first: tuple[int, ...] = ()  # as HostPrologue: the output is held channels last, the source's is not

    def to_source_order(self, y: np.ndarray) -> np.ndarray:
        """[events, K] values in the array's element order -> the source's."""
        if not self.channels_first:
            return y
        return np.asarray(y)[:, channels_last_order(self.channels_first)]

    def apply_steps(self, y: np.ndarray) -> np.ndarray:
        out = np.asarray(self.to_source_order(y), dtype=np.float32)
        for step in self.steps:
            out = step.apply(out)
        return out

    def describe(self) -> str:
        first = ["the output codes dequantized"]
        if self.channels_first:
            first.append(f"transposed from channels last to {list(self.channels_first)} (channels first)")
        return " -> ".join(first + [s.describe() for s in self.steps])

    def to_json(self) -> dict:
        return {"steps": [s.to_json() for s in self.steps]} | \
            ({"channels_first": list(self.channels_first)} if self.channels_first else {})

    @classmethod
    def from_json(cls, data: dict) -> HostEpilogue:
        return cls(tuple(HostStep.from_json(s) for s in data["steps"]),
                   tuple(int(v) for v in data.get("channels_first", ())))


def channels_last_order(channels_first: tuple[int, ...]) -> np.ndarray:
    """Where each element of a channels-first event ``[C, *spatial]`` (flattened) sits in the channels-last one."""
    c, spatial = channels_first[0], tuple(channels_first[1:])
    index = np.arange(int(np.prod(spatial, dtype=np.int64)) * c).reshape(*spatial, c)
    return np.moveaxis(index, -1, 0).reshape(-1)


def bipolar_codes(x: np.ndarray) -> np.ndarray:
    """QONNX ``BipolarQuant``'s sign in float32 codes: +1 where x >= 0 (also -0.0), else -1 (NaN too)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x >= np.float32(0), np.float32(1), np.float32(-1)).astype(np.float32)


def prologues(source: dict[str, str]) -> dict[str, HostPrologue]:
    text = source.get(HOST_PROLOGUE)
    return {k: HostPrologue.from_json(v) for k, v in json.loads(text).items()} if text else {}


def epilogues(source: dict[str, str]) -> dict[str, HostEpilogue]:
    text = source.get(HOST_EPILOGUE)
    return {k: HostEpilogue.from_json(v) for k, v in json.loads(text).items()} if text else {}


def store(source: dict[str, str], key: str, stages: dict) -> None:
    """Write prologues / epilogues (by logical tensor) into a graph's ``source`` dict (nothing when empty)."""
    if stages:
        source[key] = json.dumps({k: v.to_json() for k, v in sorted(stages.items())}, sort_keys=True)
