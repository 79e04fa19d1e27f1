"""The dense family's part of the emulator: all tiles of a layer on all graph iterations at once, bit-exact.

The chains' tiles at one cascade position read the same broadcast port, so their products are one GEMM over
their weight slices side by side (``semantics.run_tile_logical`` accepts that); cascades carry the partial sums
from position to position, and the last position's chains write their output columns."""

from __future__ import annotations

from typing import Any

import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.physical import Kernel
from nn2aie.kernels.dense import semantics as dense


def _positions(e: DenseExec, kernels: list[Kernel], io: Any) -> list[tuple[list[Kernel], np.ndarray, Any]]:
    """Per cascade position: the chains' tiles (by chain), their weights side by side, their biases."""
    def build():
        out = []
        for pos in range(e.cas_length):
            ks = sorted((k for k in kernels if k.position == pos), key=lambda k: k.chain)
            if len({io.source(k, "in") for k in ks}) != 1:
                raise InternalCheckError(f"layer {e.op} position {pos}", "chains read different ports", "report this")
            bias = None
            if ks[0].bias is not None:
                bias = np.concatenate([k.bias for k in ks]).astype(dense.accumulator_dtype(e))
            out.append((ks, np.hstack([dense.weight_matrix(e, k.weights) for k in ks]), bias))
        return out

    return io.cached(("dense", e.op), build)


def emulate_layer(e: DenseExec, kernels: list[Kernel], io: Any) -> None:
    positions = _positions(e, kernels, io)
    cascade = None
    for pos, (ks, weights, bias) in enumerate(positions):
        a_mat = io.read(ks[0], "in")
        if a_mat.dtype != weights.dtype:
            a_mat = a_mat.astype(weights.dtype)
        if io.trace is not None:
            _record_inputs(io.trace, e, ks, a_mat, cascade, io.iterations)
        result = dense.run_tile_logical(e, ks[0].role, a_mat, weights, bias, cascade)
        if io.trace is not None:
            _record_outputs(io.trace, e, ks, result)
        if pos + 1 < len(positions):
            cascade = result
            continue
        io.write_group([(k, "out") for k in ks], result.reshape(-1, result.shape[-1]))


def _record_inputs(trace: Any, e: DenseExec, kernels: list[Kernel], a_mat, cascade, iters: int) -> None:
    """Before the call (the cascade array is consumed in place): windows in buffer/cascade order."""
    a = np.asarray(a_mat, dtype=np.int64).reshape(iters, e.batch, e.k_slice)
    window = dense.input_layout(e).to_blocks(a)
    for c, k in enumerate(kernels):
        trace.inputs[k.name] = window
        if k.has_cascade_in:
            words = cascade[..., c * e.n_slice:(c + 1) * e.n_slice].astype(np.int64)
            trace.cascade_in[k.name] = dense.cascade_to_stream(e, words)


def _record_outputs(trace: Any, e: DenseExec, kernels: list[Kernel], result) -> None:
    for c, k in enumerate(kernels):
        block = result[..., c * e.n_slice:(c + 1) * e.n_slice].astype(np.int64)
        trace.outputs[k.name] = (dense.cascade_to_stream(e, block) if k.has_cascade_out
                                 else dense.output_layout(e).to_blocks(block))
