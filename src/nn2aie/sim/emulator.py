"""Physical emulator: runs the PLACED design tile by tile, bit-exact, vectorised over graph iterations.

It executes the plan objects codegen prints: PLIO words enter memory-tile buffers through their write
descriptors, every kernel gets the window its read descriptor (or direct hand-off) delivers, runs the kernel
family's ``semantics.run_tile`` on its own weight slice, forwards cascade accumulators east, and its output is
scattered into the next memory-tile buffer by the writer descriptor. Outputs are gathered from the output PLIOs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nn2aie.errors import IllegalConfigError
from nn2aie.ir.execution import ceil_div
from nn2aie.ir.physical import Kernel, PhysicalPlan, SharedBuffer
from nn2aie.kernels.dense import semantics as dense


@dataclass
class Trace:
    """Per-kernel values of one run (for co-simulation of emitted kernels): inputs, cascade, outputs."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    cascade_in: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


class Emulator:
    def __init__(self, plan: PhysicalPlan):
        self.plan = plan
        self.layers = {e.op: e for e in plan.layers}
        self._reader_of: dict[str, tuple[SharedBuffer, int]] = {}
        self._writer_of: dict[str, tuple[SharedBuffer, int]] = {}
        for sb in plan.shared_buffers:
            for i, acc in enumerate(sb.readers):
                for ep in acc.endpoints:
                    self._reader_of[f"{ep.kind}:{ep.name}"] = (sb, i)
            for i, acc in enumerate(sb.writers):
                for ep in acc.endpoints:
                    self._writer_of[f"{ep.kind}:{ep.name}"] = (sb, i)
        self._direct_src = {link.dst: link.src for link in plan.direct_links}
        # weights are unpacked once from the packed arrays the project ships
        self._weights = {k.name: dense.weight_matrix(self.layers[k.layer], k.weights) for k in plan.kernels}
        in_type = plan.tensor_types[plan.input_tensor]
        self.input_type = in_type
        self.output_type = plan.tensor_types[plan.output_tensor]

    # -- public ------------------------------------------------------------------------------------------
    def run(self, x_codes: np.ndarray, trace: Trace | None = None, padded: bool = False) -> np.ndarray:
        """Integer input codes [B, K] -> integer output codes [B, N] (int64).

        ``padded=True`` returns what the output PLIOs carry instead: every row of every graph iteration
        (B rounded up to the batch; the extra rows are zero inputs) and every written column (N padded)."""
        plan = self.plan
        first, last = plan.layers[0], plan.layers[-1]
        x = np.asarray(x_codes)
        if x.ndim != 2 or x.shape[1] != first.k:
            raise IllegalConfigError("emulator input", f"expected shape [batch, {first.k}], got {list(x.shape)}",
                                     "pass one row per event with the model's input width")
        lo, hi = self.input_type.min_code, self.input_type.max_code
        if x.size and (x.min() < lo or x.max() > hi):
            raise IllegalConfigError("emulator input", f"codes outside [{lo}, {hi}] of the input type",
                                     "quantize inputs with the model's input quantizer first")
        rows = plan.batch
        n_events = x.shape[0]
        iters = max(1, ceil_div(n_events, rows))
        x_pad = np.zeros((iters * rows, x.shape[1]), dtype=np.int64)
        x_pad[:n_events] = x
        x_iter = x_pad.reshape(iters, rows, -1)

        buffers = {sb.name: np.zeros((iters, sb.dims[0] * sb.dims[1]), dtype=np.int32)
                   for sb in plan.shared_buffers}
        # graph input: each input PLIO streams its column range row by row (host pads rows with zeros)
        for p in plan.plios:
            if p.direction != "in":
                continue
            sb, idx = self._writer_of[f"plio:{p.name}"]
            start = sb.col_start
            cols = np.zeros((iters, rows, p.row_width), dtype=np.int64)
            avail = max(0, min(p.row_width, x.shape[1] - start))
            cols[:, :, :avail] = x_iter[:, :, start:start + avail]
            self._write(buffers[sb.name], sb, idx, cols.reshape(iters, -1))

        out_windows: dict[str, np.ndarray] = {}
        for e in plan.layers:
            kernels = sorted(plan.kernels_of(e.op), key=lambda k: (k.chain, k.position))
            matrices: dict[str, np.ndarray] = {}  # one gather per read port: chains share a broadcast
            cascade: np.ndarray | None = None
            for k in kernels:
                source = self._source_key(k)
                if source not in matrices:
                    window = self._input_window(k, buffers, out_windows)
                    matrices[source] = dense.input_matrix(e, window)
                    if trace is not None:
                        trace.inputs[source] = window
                if trace is not None:
                    trace.inputs[k.name] = trace.inputs[source]
                    if k.has_cascade_in:
                        trace.cascade_in[k.name] = dense.output_layout(e).to_blocks(cascade.astype(np.int64))
                result = dense.run_tile_logical(e, k.role, matrices[source], self._weights[k.name], k.bias,
                                                cascade if k.has_cascade_in else None)
                if not k.has_output:
                    cascade = result
                    if trace is not None:
                        trace.outputs[k.name] = dense.output_layout(e).to_blocks(result.astype(np.int64))
                    continue
                cascade = None
                window = dense.output_layout(e).to_blocks(result)
                out_windows[k.name] = window
                if trace is not None:
                    trace.outputs[k.name] = window
                key = f"kernel:{k.name}"
                if key in self._writer_of:
                    sb, idx = self._writer_of[key]
                    self._write(buffers[sb.name], sb, idx, window)

        y = np.zeros((iters, rows, last.n_padded), dtype=np.int64)
        for p in plan.plios:
            if p.direction != "out":
                continue
            sb, idx = self._reader_of[f"plio:{p.name}"]
            stream = self._read(buffers[sb.name], sb, idx)
            y[:, :, sb.col_start:sb.col_start + p.row_width] = stream.reshape(iters, rows, p.row_width)
        y = y.reshape(iters * rows, -1)
        return y if padded else y[:n_events, : last.n]

    # -- data movement --------------------------------------------------------------------------------
    def _source_key(self, k: Kernel) -> str:
        if k.name in self._direct_src:
            return f"direct:{self._direct_src[k.name]}"
        sb, idx = self._reader_of[f"kernel:{k.name}"]
        return f"{sb.name}.out[{idx}]"

    def _input_window(self, k: Kernel, buffers: dict, out_windows: dict) -> np.ndarray:
        if k.name in self._direct_src:
            return out_windows[self._direct_src[k.name]]
        sb, idx = self._reader_of[f"kernel:{k.name}"]
        return self._read(buffers[sb.name], sb, idx)

    @staticmethod
    def _read(buf: np.ndarray, sb: SharedBuffer, idx: int) -> np.ndarray:
        addr, valid = sb.readers[idx].tiling.addresses()
        return np.where(valid[None, :], buf[:, addr], 0)

    @staticmethod
    def _write(buf: np.ndarray, sb: SharedBuffer, idx: int, stream: np.ndarray) -> None:
        addr, _ = sb.writers[idx].tiling.addresses()
        buf[:, addr] = stream
