"""hls4ml's own activation functions run on every input code: the lookup table of an ``Activation`` layer.

hls4ml computes sigmoid, tanh, softplus, softsign and selu by indexing a table it fills at start-up in C++
(``nnet_activation.h``: the index is a function of the input's value, the entry a ``table_t`` value, the result
cast into the layer's ``res_T``). The output code is therefore a function of the input code, and nn2aie gets it
from hls4ml itself: a small C++ program includes hls4ml's ``nnet_utils`` and ``ap_types`` headers (shipped inside
the hls4ml package; not Vitis), instantiates the layer's function with the layer's types and table size, and
prints the output code of every input code. Compiled with the host C++ compiler (``$NN2AIE_CXX`` or g++); the
result is cached per (function, types, table size) for the process.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import subprocess
import tempfile

import numpy as np

from nn2aie.errors import MissingToolError, UnsupportedOpError
from nn2aie.ir.types import FixedType

# hls4ml activation name -> whether its nnet function takes a parameter (each checked against hls4ml's C
# simulation: tests/frontends/test_hls4ml_activations.py; elu takes a param_t alpha, not read here yet)
FUNCTIONS = {"sigmoid": False, "tanh": False, "softplus": False, "softsign": False, "selu": False}
_AP_ROUNDING = {"RND_CONV": "AP_RND_CONV", "RND": "AP_RND", "TRN": "AP_TRN", "TRN_ZERO": "AP_TRN_ZERO",
                "RND_ZERO": "AP_RND_ZERO", "RND_INF": "AP_RND_INF", "RND_MIN_INF": "AP_RND_MIN_INF"}
_AP_OVERFLOW = {"SAT": "AP_SAT", "WRAP": "AP_WRAP", "SAT_SYM": "AP_SAT_SYM", "SAT_ZERO": "AP_SAT_ZERO"}
MAX_CODES = 1 << 16


def ap_type(t: FixedType) -> str:
    """The ap_fixed C++ type of a FixedType (its rounding and overflow modes included)."""
    base = "ap_fixed" if t.signed else "ap_ufixed"
    return f"{base}<{t.width},{t.width - t.frac},{_AP_ROUNDING[t.rounding]},{_AP_OVERFLOW[t.overflow]}>"


def _headers() -> pathlib.Path:
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or spec.origin is None:
        raise MissingToolError("hls4ml", "is not installed, so its activation tables cannot be computed",
                               "pip install hls4ml")
    return pathlib.Path(spec.origin).parent / "templates" / "vivado"


_PROGRAM = """#include "ap_fixed.h"
#include "nnet_utils/nnet_activation.h"
#include <cstdio>

typedef {in_t} in_t;
typedef {out_t} out_t;
struct config : nnet::activ_config {{
    static const unsigned n_in = {n};
    static const unsigned table_size = {table_size};
    static const unsigned io_type = nnet::io_parallel;
    static const unsigned reuse_factor = 1;
    typedef {table_t} table_t;
}};
static in_t x[{n}];
static out_t y[{n}];

int main() {{
    for (long i = 0; i < {n}; ++i) x[i].range({in_w} - 1, 0) = (unsigned long long)({lo}LL + i);
    nnet::{function}<in_t, out_t, config>(x, {param}y);
    for (long i = 0; i < {n}; ++i) {{
        long long v = (long long)(unsigned long long)y[i].range({out_w} - 1, 0);
        if ({out_signed} && v >= (1LL << ({out_w} - 1))) v -= 1LL << {out_w};
        std::printf("%lld\\n", v);
    }}
    return 0;
}}
"""


@functools.cache
def activation_codes(function: str, in_t: FixedType, out_t: FixedType, table_size: int, table_t: FixedType,
                     alpha: float | None = None) -> np.ndarray:
    """hls4ml's output code for every input code ``in_t.min_code .. in_t.max_code`` (int64)."""
    from nn2aie.sim.native.harness import find_compiler

    if function not in FUNCTIONS:
        raise UnsupportedOpError(f"hls4ml activation {function}", "has no table nn2aie reads",
                                 f"use one of {', '.join(sorted(FUNCTIONS))}, ReLU or LeakyReLU")
    n = in_t.max_code - in_t.min_code + 1
    if n > MAX_CODES:
        raise UnsupportedOpError(f"hls4ml activation {function}", f"its input has {in_t.width} bits",
                                 "use an input precision of at most 16 bits")
    param = f"({ap_type(table_t)}){alpha!r}, " if FUNCTIONS[function] else ""
    text = _PROGRAM.format(in_t=ap_type(in_t), out_t=ap_type(out_t), n=n, table_size=int(table_size),
                           table_t=ap_type(table_t), in_w=in_t.width, lo=in_t.min_code, function=function,
                           param=param, out_w=out_t.width, out_signed="true" if out_t.signed else "false")
    headers = _headers()
    with tempfile.TemporaryDirectory(prefix="nn2aie-hls4ml-") as tmp:
        src, exe = pathlib.Path(tmp) / "table.cpp", pathlib.Path(tmp) / "table"
        src.write_text(text)
        build = subprocess.run([find_compiler(), "-std=c++14", "-O1", "-w", "-I", str(headers),
                                "-I", str(headers / "ap_types"), str(src), "-o", str(exe)],
                               capture_output=True, text=True)
        if build.returncode != 0:
            raise UnsupportedOpError(f"hls4ml activation {function}", "hls4ml's C++ for it did not compile here ("
                                     f"{' '.join(build.stderr.split())[:300]})", "report this to the nn2aie developers")
        run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    return np.asarray([int(v) for v in run.stdout.split()], dtype=np.int64)
