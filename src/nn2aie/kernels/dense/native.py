"""Native co-simulation spec of the dense family: the driver that runs its tiles on the host and its file formats
(sim/native/harness.py compiles and runs it; templates/native_driver.cc.j2 documents the protocol)."""

from __future__ import annotations

import pathlib
from typing import Any

import jinja2
import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.physical import Kernel
from nn2aie.kernels.dense import codegen
from nn2aie.kernels.family import NativeRun

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels.dense", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)


def driver_source(index: int, entries: list[dict], roles: list[str]) -> str:
    """The C++ driver of layer ``index``: one entry per kernel instance (dicts with index, name, col, row, role,
    type_name, ctor_args and params as graph.h creates the kernel)."""
    rows = []
    for entry in entries:
        params = tuple(entry["params"])
        if params[:1] != ("weights",) or [p for p in params[1:] if p not in ("bias", "requant")] \
                or len(set(params)) != len(params):
            raise InternalCheckError(f"kernel {entry['name']}", f"unexpected parameters {params}", "report this")
        rows.append(entry | {"has_bias": "bias" in params, "has_requant": "requant" in params,
                             "requant_param": params.index("requant") if "requant" in params else -1})
    return _ENV.get_template("native_driver.cc.j2").render(
        requant=any(r["has_requant"] for r in rows),
        idx=index, ns=f"dense_l{index}", kernel_header=codegen.header_path(index),
        weights_header=codegen.weights_header_path(index),
        kernel_sources=[codegen.source_path(index, r) for r in roles],
        entries=rows)


def run_spec(e: DenseExec, k: Kernel, trace: Any, iters: int, stem: pathlib.Path) -> NativeRun:
    """Write the kernel's input (and cascade-in) files for ``iters`` graph iterations; what to compare."""
    window = trace.inputs[k.name].reshape(iters, -1)
    a = window.astype(np.dtype(e.a_dtype))
    if not np.array_equal(a, window):
        raise InternalCheckError(f"kernel {k.name}", f"input window values do not fit {e.a_dtype}", "report this")
    in_path, cin_path, out_path = stem.with_suffix(".in"), stem.with_suffix(".cin"), stem.with_suffix(".out")
    a.tofile(in_path)
    cin_arg = "-"
    if k.has_cascade_in:
        np.ascontiguousarray(trace.cascade_in[k.name].reshape(iters, -1), dtype=np.int64).tofile(cin_path)
        cin_arg = str(cin_path)
    out_dtype = np.dtype(e.out_dtype) if k.has_output else np.dtype(np.int64)
    want = trace.outputs[k.name].reshape(-1).astype(np.int64)
    return NativeRun([str(in_path), cin_arg, str(out_path)], out_path, out_dtype, want, [in_path, cin_path, out_path],
                     "buffer" if k.has_output else "cascade")


def position(e: DenseExec, k: Kernel, output: str, element: int) -> str:
    """What value ``element`` of a tile's output window (or cascade words) is."""
    if output == "cascade":
        lanes = codegen.CASCADE_WORD_BITS // (32 if e.acc == "acc32" else 64)
        return f"cascade word {element // lanes}, lane {element % lanes}"
    mm, _, mn = e.mmul
    block, inside = divmod(element, mm * mn)
    rb, cb = divmod(block, e.n_slice // mn)
    row, col = rb * mm + inside // mn, cb * mn + inside % mn
    return f"window row {row}, column {col} = layer output column {k.n_start + col}"
