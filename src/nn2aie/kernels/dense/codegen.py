"""Dense family code generation: the AIE C++ kernel class of a layer, its weight/bias arrays, and what the graph
needs to instantiate one tile (class type, constructor arguments, port and parameter indices).

The C++ implements ``semantics.run_tile`` exactly; the layouts are documented in both places. Names coming
from the model (layer names) reach this module only as ready-made, comment-safe text; every C++ identifier is
built from the plan's layer index and the caller's sanitised kernel identifiers.
"""

from __future__ import annotations

import jinja2
import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.physical import Kernel
from nn2aie.kernels.family import KernelInstance
from nn2aie.kernels.requant import REQUANT_HEADER_PATH, requant_header_file  # noqa: F401
from nn2aie.kernels.requant_native import constant_rows, tile_constants
from nn2aie.numerics import AIE_ROUNDING_MODES

ROLE_ORDER = ("single", "first", "middle", "last")
# ADF / AIE-API element type names (adf.h typedefs) and their <cstdint> equivalents for plain data headers
ADF_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32"}
STD_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t"}
_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32}
_ACC_BITS = {"acc32": 32, "acc64": 64}
CASCADE_WORD_BITS = 512  # AIE-ML cascade word (AM020)
REQUANT_CODES = {"multiplier": 1, "table": 2}
SATURATION_MODES = ("none", "saturate", "symmetric")

_ROLE_SUMMARY = {
    "single": "whole reduction on one tile; bias in, SRS + clamp out to the output buffer",
    "first": "first K slice of a chain; bias in, partial sums out on the cascade",
    "middle": "inner K slice; partial sums in and out on the cascade",
    "last": "last K slice; partial sums in on the cascade, SRS + clamp out to the output buffer",
}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.dense", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)


def class_name(layer_index: int) -> str:
    return f"DenseL{layer_index}"


def header_path(layer_index: int) -> str:
    return f"kernels/dense_l{layer_index}.h"


def source_path(layer_index: int, role: str) -> str:
    """One source per cascade role: a tile compiles only the code of the role it runs."""
    return f"kernels/dense_l{layer_index}_{role}.cc"


def impl_path(layer_index: int) -> str:
    return f"kernels/dense_l{layer_index}_impl.h"


def layer_roles(e: DenseExec) -> list[str]:
    """The cascade roles a layer's tiles take, in ROLE_ORDER (from its cascade length)."""
    if e.cas_length == 1:
        return ["single"]
    return ["first"] + (["middle"] if e.cas_length > 2 else []) + ["last"]


def weights_header_path(layer_index: int) -> str:
    return f"data/weights_l{layer_index}.h"


def weight_symbol(ident: str) -> str:
    return f"W_{ident}"


def bias_symbol(ident: str) -> str:
    return f"B_{ident}"


def requant_symbol(ident: str) -> str:
    return f"Q_{ident}"


def has_requant(e: DenseExec, role: str) -> bool:
    """Whether a tile of ``role`` holds requantisation constants (float-scale layers, output tiles)."""
    return e.requant is not None and role in ("single", "last")


def requant_levels(e: DenseExec) -> int:
    return len(e.requant.table_levels()[1]) if e.requant.kind == "table" else 0


def requant_constants(e: DenseExec, n_start: int) -> np.ndarray:
    """The int32 constants of the tile whose columns start at ``n_start`` (kernels/requant_native.tile_constants)."""
    return tile_constants(e.requant, e.n, n_start, e.n_slice, e.mmul[2], f"layer {e.op}")


def _container_range(dtype: str) -> tuple[int, int]:
    bits = _BITS[dtype]
    return (0, (1 << bits) - 1) if dtype.startswith("u") else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _check(e: DenseExec) -> None:
    where = f"dense codegen for layer {e.op!r}"
    for dtype in (e.a_dtype, e.w_dtype, e.out_dtype):
        if dtype not in ADF_TYPES:
            raise InternalCheckError(where, f"no C++ type for {dtype}", "report this")
    if e.acc not in _ACC_BITS:
        raise InternalCheckError(where, f"unknown accumulator {e.acc}", "report this")
    if e.rounding not in AIE_ROUNDING_MODES or e.saturation not in SATURATION_MODES:
        raise InternalCheckError(where, f"unknown rounding/saturation {e.rounding}/{e.saturation}", "report this")
    if e.wrap_bits and not (0 < e.wrap_bits < _BITS[e.out_dtype]):
        raise InternalCheckError(where, f"wrap to {e.wrap_bits} bits in {e.out_dtype}", "report this")
    m, k, n = e.mmul
    if (e.batch % m or e.k_slice % k or e.n_slice % n or (e.n_slice // n) % e.n_accumulators
            or (e.batch // m) % e.m_accumulators):
        raise InternalCheckError(where, "slices are not whole mmul blocks / accumulator groups", "report this")
    if (m * n) % (CASCADE_WORD_BITS // _ACC_BITS[e.acc]):
        raise InternalCheckError(where, f"a {m}x{n} {e.acc} block is not whole cascade words", "report this")


def _cxx_bool(v: bool) -> str:
    return "true" if v else "false"


def _role_context(e: DenseExec, ns: str, role: str) -> dict:
    in_arg = f"adf::input_buffer<{ns}::a_t, adf::extents<{ns}::IN_SIZE>>& __restrict in"
    out_arg = f"adf::output_buffer<{ns}::o_t, adf::extents<{ns}::OUT_SIZE>>& __restrict out"
    cin_arg = f"adf::input_cascade<{ns}::acc_tag>* __restrict cin"
    cout_arg = f"adf::output_cascade<{ns}::acc_tag>* __restrict cout"
    has_bias = e.has_bias and role in ("single", "first")
    cascade_in = role in ("middle", "last")
    output = role in ("single", "last")
    signature = [in_arg] + ([cin_arg] if cascade_in else []) + ([out_arg] if output else [cout_arg])
    call = ["in.data()", "w", "b" if has_bias else "nullptr", "cin" if cascade_in else "nullptr",
            "nullptr" if output else "cout", "out.data()" if output else "nullptr"]
    requant = has_requant(e, role)
    if e.requant is not None:
        call.append("q" if requant else "nullptr")
    return {"name": role, "summary": _ROLE_SUMMARY[role], "bias": has_bias, "signature": signature, "call": call,
            "requant": requant}


def render_layer_sources(e: DenseExec, layer_index: int, roles: set[str], layer_comment: str) -> dict[str, str]:
    """C++ header, shared body and one source per role of layer ``layer_index``'s kernel class (``roles`` only).

    Returns {path relative to src/: text}. ``layer_comment`` must already be safe inside a // comment.
    """
    _check(e)
    unknown = set(roles) - set(ROLE_ORDER)
    if unknown or not roles:
        raise InternalCheckError(f"dense codegen for layer {e.op!r}", f"bad roles {sorted(unknown)}", "report this")
    cls, ns = class_name(layer_index), f"dense_l{layer_index}"
    lo_min, hi_max = _container_range(e.out_dtype)
    m, k, n = e.mmul
    ctx = {
        "idx": layer_index, "cls": cls, "ns": ns, "layer_comment": layer_comment,
        "guard": f"NN2AIE_DENSE_L{layer_index}_H", "header": f"dense_l{layer_index}.h",
        "impl_guard": f"NN2AIE_DENSE_L{layer_index}_IMPL_H", "impl": f"dense_l{layer_index}_impl.h",
        "a_t": ADF_TYPES[e.a_dtype], "w_t": ADF_TYPES[e.w_dtype], "o_t": ADF_TYPES[e.out_dtype], "acc": e.acc,
        "batch": e.batch, "k_slice": e.k_slice, "n_slice": e.n_slice, "mmul_m": m, "mmul_k": k, "mmul_n": n,
        "n_acc": e.n_accumulators, "m_acc": e.m_accumulators, "shift": e.shift,
        "clamp_lo": e.clamp_lo, "clamp_hi": e.clamp_hi,
        "apply_lo": _cxx_bool(e.clamp_lo > lo_min), "apply_hi": _cxx_bool(e.clamp_hi < hi_max),
        "wrap_bits": e.wrap_bits, "wrap_shift": (_BITS[e.out_dtype] - e.wrap_bits) if e.wrap_bits else 0,
        "has_bias": _cxx_bool(e.has_bias), "rounding": e.rounding, "saturation": e.saturation,
        "word_lanes": CASCADE_WORD_BITS // _ACC_BITS[e.acc],
        "accumulators": [(i, j) for i in range(e.m_accumulators) for j in range(e.n_accumulators)],
        "row_accumulators": list(range(e.m_accumulators)), "col_accumulators": list(range(e.n_accumulators)),
        "roles": [_role_context(e, ns, r) for r in ROLE_ORDER if r in roles],
        "requant": _requant_context(e),
    }
    files = {
        header_path(layer_index): _ENV.get_template("dense_kernel.h.j2").render(ctx),
        impl_path(layer_index): _ENV.get_template("dense_kernel_impl.h.j2").render(ctx),
    }
    for r in ctx["roles"]:
        files[source_path(layer_index, r["name"])] = _ENV.get_template("dense_kernel.cc.j2").render(ctx | {"r": r})
    if e.requant is not None:
        files |= requant_header_file()
    return files


def _requant_context(e: DenseExec) -> dict | None:
    if e.requant is None:
        return None
    rq = e.requant
    if rq.kind not in REQUANT_CODES:
        raise InternalCheckError(f"dense codegen for layer {e.op!r}", f"requantisation kind {rq.kind}", "report this")
    levels = requant_levels(e)
    slots = rq.correction_slots if rq.kind == "multiplier" else 0
    return {"kind": rq.kind, "code": REQUANT_CODES[rq.kind], "offset_shift": rq.offset_shift, "levels": levels,
            "stride_rows": constant_rows(rq), "slots": slots,
            "reason": rq.reason.replace("\n", " ")}


def kernel_instance(e: DenseExec, layer_index: int, kernel: Kernel, ident: str) -> KernelInstance:
    """Class type, constructor arguments and port indices of one tile (``ident``: its C++ identifier)."""
    n_w = int(kernel.weights.size)
    if n_w != e.k_slice * e.n_slice:
        raise InternalCheckError(f"kernel {kernel.name}", f"{n_w} weights, expected {e.k_slice * e.n_slice}",
                                 "report this")
    w_sym = weight_symbol(ident)
    args = [f"std::vector<{ADF_TYPES[e.w_dtype]}>({w_sym}, {w_sym} + {n_w})"]
    params = ["weights"]
    has_bias = e.has_bias and kernel.role in ("single", "first")
    if has_bias:
        if kernel.bias is None or kernel.bias.size != e.n_slice:
            raise InternalCheckError(f"kernel {kernel.name}", "bias missing or of the wrong size", "report this")
        b_sym = bias_symbol(ident)
        args.append(f"std::vector<int32>({b_sym}, {b_sym} + {e.n_slice})")
        params.append("bias")
    if has_requant(e, kernel.role):
        q_sym = requant_symbol(ident)
        args.append(f"std::vector<int32>({q_sym}, {q_sym} + {requant_constants(e, kernel.n_start).size})")
        params.append("requant")
    return KernelInstance(
        type_name=f"{class_name(layer_index)}<DenseRole::{kernel.role}>", ctor_args=tuple(args),
        params=tuple(params), source=source_path(layer_index, kernel.role), in_ports={"in": 0},
        out_ports={"out": 0} if kernel.has_output else {},
        cascade_in_port=1 if kernel.has_cascade_in else None, cascade_out_port=0 if kernel.has_cascade_out else None)


def layer_line(e: DenseExec, index: int) -> str:
    """graph.h's header line of the layer (its name made comment-safe by the caller's ``e.op``-free text)."""
    act = "relu" if e.relu else "linear"
    rq = f", {e.requant.kind} requantisation" if e.requant is not None else ""
    return (f"{e.k} -> {e.n}, {e.a_dtype} x {e.w_dtype} -> {e.out_dtype}, "
            f"{e.acc}, mmul {e.mmul[0]}x{e.mmul[1]}x{e.mmul[2]}, cas_length {e.cas_length} x cas_num {e.cas_num}, "
            f"slices K {e.k_slice} N {e.n_slice}, shift {e.shift} ({e.rounding}, {e.saturation}), {act}, "
            f"clamp [{e.clamp_lo}, {e.clamp_hi}]{rq}")


def format_array(values: np.ndarray, per_line: int, indent: str = "    ") -> str:
    """Comma-separated integers, ``per_line`` per line (deterministic)."""
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return ",\n".join(indent + line for line in lines)


def render_weights_header(e: DenseExec, layer_index: int, kernels: list[tuple[Kernel, str]],
                          layer_comment: str) -> str:
    """``static const`` weight (and bias) arrays of every tile of the layer, in kernel load order."""
    guard = f"NN2AIE_WEIGHTS_L{layer_index}_H"
    w_type = STD_TYPES[e.w_dtype]
    per_line = 32 if _BITS[e.w_dtype] == 8 else 16
    out = [
        "// Generated by nn2aie: do not edit by hand.",
        f"// Layer {layer_index} ({layer_comment}): weights packed in kernel load order (column group, k block,",
        "// accumulator; each block MMUL_K x MMUL_N row-major) and int32 biases at the accumulator LSB.",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <cstdint>", "",
    ]
    for kernel, ident in kernels:
        lo, hi = _container_range(e.w_dtype)
        w = np.asarray(kernel.weights)
        if w.size and (w.min() < lo or w.max() > hi):
            raise InternalCheckError(f"kernel {kernel.name}", f"weights outside {e.w_dtype}", "report this")
        out.append(f"// {ident}: chain {kernel.chain}, position {kernel.position} ({kernel.role}), "
                   f"K [{kernel.k_start}, {kernel.k_start + e.k_slice}), N [{kernel.n_start}, "
                   f"{kernel.n_start + e.n_slice})")
        out.append(f"alignas(32) static const {w_type} {weight_symbol(ident)}[{w.size}] = {{")
        out.append(format_array(w, per_line))
        out.append("};")
        if e.has_bias and kernel.role in ("single", "first") and kernel.bias is not None:
            out.append(f"alignas(32) static const int32_t {bias_symbol(ident)}[{kernel.bias.size}] = {{")
            out.append(format_array(kernel.bias, 16))
            out.append("};")
        if has_requant(e, kernel.role):
            q = requant_constants(e, kernel.n_start)
            out.append(f"// {ident}: {e.requant.kind} requantisation constants, per column block of MMUL_N channels")
            out.append(f"alignas(32) static const int32_t {requant_symbol(ident)}[{q.size}] = {{")
            out.append(format_array(q, 16))
            out.append("};")
        out.append("")
    out.append(f"#endif  // {guard}")
    return "\n".join(out) + "\n"
