"""Test helpers: random logical graphs built directly in the IR (no frontend involved); exact rational rounding."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from nn2aie.ir.logical import Graph, Op, Tensor
from nn2aie.ir.types import FixedType, ScaledType


def random_mlp_graph(sizes: list[int], seed: int = 0, act_bits: int = 8, hidden_unsigned: bool = True,
                     bias: bool = True, out_width: int | None = None, rounding: str = "RND_CONV",
                     overflow: str = "SAT", narrow: bool = False, w_bits: int = 8) -> Graph:
    """A dense chain with random int8 weights; hidden layers ReLU into unsigned codes. Layer outputs may be
    narrower than their container (``out_width``) and use any rounding / saturating overflow mode."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, Tensor] = {}
    ops: list[Op] = []
    x_type = FixedType(act_bits, 5 if act_bits == 8 else 11, True)
    tensors["x0"] = Tensor("x0", (sizes[0],), x_type)
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        w_type = FixedType(w_bits, 7, True)
        w = rng.integers(w_type.min_code, w_type.max_code + 1, size=(k, n))
        tensors[f"w{i}"] = Tensor(f"w{i}", (k, n), w_type, w)
        inputs = [f"x{i}", f"w{i}"]
        in_frac = tensors[f"x{i}"].type.frac
        if bias:
            b_type = FixedType(32, in_frac + 7, True)
            tensors[f"b{i}"] = Tensor(f"b{i}", (n,), b_type, rng.integers(-(1 << 12), 1 << 12, size=n))
            inputs.append(f"b{i}")
        # output frac chosen so a typical accumulator lands mid-range
        typical = np.sqrt(k) * 64 * 64 * (2 ** (act_bits - 8)) * (2 ** (w_bits - 8))
        shift = max(0, int(np.round(np.log2(typical / 32))))
        out_frac = in_frac + 7 - shift
        signed = last or not hidden_unsigned
        y_type = FixedType(out_width or act_bits, out_frac, signed, rounding, overflow, narrow)
        tensors[f"x{i + 1}"] = Tensor(f"x{i + 1}", (n,), y_type)
        ops.append(Op(f"dense{i}", "dense", inputs, [f"x{i + 1}"], {"activation": "linear" if last else "relu"}))
    return Graph("random_mlp", tensors, ops, ["x0"], [f"x{len(sizes) - 1}"], {"framework": "test"})


def random_codes(graph: Graph, n: int, seed: int = 1) -> np.ndarray:
    """Input codes covering the whole range, with extremes."""
    rng = np.random.default_rng(seed)
    t = graph.tensor(graph.inputs[0]).type
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, graph.tensor(graph.inputs[0]).shape[-1]))
    x[: min(n, 4)] = t.max_code
    x[min(n, 4): min(n, 8)] = t.min_code
    return x


def forced_overrides(graph: Graph, length: int, num: int) -> dict[str, dict]:
    """``length`` x ``num`` on every layer where the slices stay non-empty (else the largest split that does)."""
    overrides = {}
    for op in graph.ops:
        k, n = graph.tensor(op.inputs[1]).shape
        kb, nb = -(-k // 8), -(-n // 8)
        ln = min(length, kb)
        while ln > 1 and (ln - 1) * -(-kb // ln) >= kb:
            ln -= 1
        nm = min(num, nb)
        while nm > 1 and (nm - 1) * -(-nb // nm) >= nb:
            nm -= 1
        overrides[op.name] = {"cas_length": ln, "cas_num": nm}
    return overrides


def round_rational(v: Fraction, mode: str) -> int:
    """AIE-ML rounding of an exact rational to an integer, from the definitions."""
    fl = math.floor(v)
    frac = v - fl
    half = Fraction(1, 2)
    if mode == "floor":
        return fl
    if mode == "ceil":
        return math.ceil(v)
    if mode == "symmetric_floor":
        return math.trunc(v)
    if mode == "symmetric_ceil":
        return math.floor(v) if v < 0 else math.ceil(v)
    if frac != half:
        return fl + (frac > half)
    return {"negative_inf": fl, "positive_inf": fl + 1, "symmetric_zero": fl + (v < 0), "symmetric_inf": fl + (v > 0),
            "conv_even": fl + (fl % 2), "conv_odd": fl + (1 - fl % 2)}[mode]


def f32(v: float) -> float:
    return float(np.float32(v))


def scaled_graph(seed: int, rounding: str = "RND_CONV", per_channel: bool = True, relu: bool = False,
                 k: int = 12, n: int = 6, zx: int = 0, zy: int = 0, out_signed: bool = True, x_bits: int = 8,
                 w_bits: int = 8, y_bits: int = 8, w_max: int | None = None) -> Graph:
    """One dense layer on float32 scales (x per tensor, W per channel or per tensor, a bias at power-of-two
    scales per channel, y per tensor with zero points), weights drawn over the whole weight range (or
    [-w_max, w_max])."""
    rng = np.random.default_rng(seed)
    x_t = ScaledType(x_bits, zx == 0, (f32(rng.uniform(0.004, 0.3)),), (zx,))
    w_scales = tuple(f32(s) for s in rng.uniform(0.001, 0.05, size=n if per_channel else 1))
    w_t = ScaledType(w_bits, True, w_scales, narrow=True)
    b_t = ScaledType(26, True, tuple(f32(2.0 ** -int(e)) for e in rng.integers(8, 16, size=n)))
    y_t = ScaledType(y_bits, out_signed, (f32(rng.uniform(0.01, 0.2)),), (zy,), rounding, "SAT")
    tensors = {
        "x": Tensor("x", (k,), x_t),
        "w": Tensor("w", (k, n), w_t, rng.integers(-(w_max or -w_t.min_code), (w_max or w_t.max_code) + 1,
                                                        size=(k, n))),
        "b": Tensor("b", (n,), b_t, rng.integers(-(1 << 12), 1 << 12, size=n)),
        "y": Tensor("y", (n,), y_t, origin="model/out"),
    }
    op = Op("fc", "dense", ["x", "w", "b"], ["y"], {"activation": "relu" if relu else "linear"})
    graph = Graph("scaled", tensors, [op], ["x"], ["y"], {"framework": "test"})
    graph.verify()
    return graph
