"""Physical emulator: runs the PLACED design tile by tile, bit-exact, vectorised over graph iterations.

It executes the plan objects codegen prints: PLIO words enter memory-tile buffers through their write
descriptors, every kernel gets the window its read descriptor (or direct hand-off) delivers, runs the kernel
family's ``semantics`` on its own weight slice, forwards cascade accumulators east, and its output is scattered
into the next memory-tile buffer by the writer descriptor. Outputs are gathered from the output PLIOs.

Two equivalent ways to move data, chosen once per plan:
- **column ports** (fast): at start-up every descriptor is expanded (``TilingDescriptor.addresses``) and composed
  with the block layout of the kernel port on its other side; when the composition is exactly "these columns of
  the buffer's rows" (zero beyond the written columns), the port is executed as a column slice of a row-major
  buffer. This is proved element by element from the descriptors, not assumed.
- **streams** (general): every port gathers / scatters through its descriptor's address list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nn2aie import progress
from nn2aie.errors import IllegalConfigError, InternalCheckError
from nn2aie.ir.execution import ceil_div
from nn2aie.ir.physical import Access, Kernel, PhysicalPlan, SharedBuffer
from nn2aie.ir.tiling import BlockLayout
from nn2aie.kernels.dense import semantics as dense

CHUNK_ELEMENTS = 1 << 20  # values per buffer per piece in the fast path: intermediate arrays stay cache-sized
PROGRESS_MACS = 10**10  # multiply-accumulates of a run (about a second) from which it shows progress


@dataclass
class Trace:
    """Per-kernel values of one run (for co-simulation of emitted kernels), in buffer/cascade order:
    input windows, cascade words received, and output windows or cascade words sent."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    cascade_in: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Position:
    kernels: list[Kernel]  # the chains' tiles at one cascade position, by chain
    weights: np.ndarray  # their weight matrices side by side
    bias: np.ndarray | None


def _column_offset(access: Access, layout: BlockLayout | None, rows: int, width: int, buf_cols: int,
                   read: bool) -> int | None:
    """If the descriptor moves exactly columns [off, off+width) of every buffer row (in the block layout of the
    kernel port, or row-major for a PLIO), return off; zero-padded elements must lie past the written columns
    (reads only). Otherwise None."""
    addr, valid = access.tiling.addresses()
    if addr.size != rows * width:
        return None
    logical = np.arange(rows * width).reshape(rows, width)
    order = layout.to_blocks(logical) if layout is not None else logical.ravel()  # stream pos -> logical elem
    r, c = np.divmod(order, width)
    off = int(access.tiling.offset[0])
    if not np.array_equal(addr[valid], (r * buf_cols + c + off)[valid]):
        return None
    if not valid.all():
        if not read:
            return None
        bound = access.tiling.boundary_dimension
        if bound is None or not np.all(c[~valid] + off >= bound[0]):
            return None
    return off


class Emulator:
    def __init__(self, plan: PhysicalPlan):
        self.plan = plan
        self.layers = {e.op: e for e in plan.layers}
        self.kernels = {k.name: k for k in plan.kernels}
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
        self._plio = {p.name: p for p in plan.plios}
        # weights are unpacked once from the packed arrays the project ships
        self._weights = {k.name: dense.weight_matrix(self.layers[k.layer], k.weights) for k in plan.kernels}
        self.input_type = plan.tensor_types[plan.input_tensor]
        self.output_type = plan.tensor_types[plan.output_tensor]
        self._columns = self._prove_column_ports()
        self._positions = self._group_positions()
        self._whole_write = self._whole_layer_writes()

    # -- start-up: which ports are column slices ------------------------------------------------------------
    def _port_shape(self, access: Access, read: bool) -> tuple[BlockLayout | None, int]:
        ep = access.endpoints[0]
        if ep.kind == "plio":
            return None, self._plio[ep.name].row_width
        k = self.kernels[ep.name]
        e = self.layers[k.layer]
        return (dense.input_layout(e), e.k_slice) if read else (dense.output_layout(e), e.n_slice)

    def _prove_column_ports(self) -> dict[tuple[str, str, int], int] | None:
        offsets: dict[tuple[str, str, int], int] = {}
        rows = self.plan.batch
        for sb in self.plan.shared_buffers:
            for kind, accesses in (("w", sb.writers), ("r", sb.readers)):
                for i, acc in enumerate(accesses):
                    layout, width = self._port_shape(acc, kind == "r")
                    off = _column_offset(acc, layout, rows, width, sb.dims[0], kind == "r")
                    if off is None:
                        return None
                    offsets[(sb.name, kind, i)] = off
        return offsets

    def _group_positions(self) -> dict[str, list[_Position]]:
        """Per layer and cascade position, the chains' tiles. They read the same broadcast port (checked), so
        their products are computed in one GEMM over their weight slices side by side."""
        groups: dict[str, list[_Position]] = {}
        for e in self.plan.layers:
            kernels = self.plan.kernels_of(e.op)
            groups[e.op] = []
            for pos in range(e.cas_length):
                ks = sorted((k for k in kernels if k.position == pos), key=lambda k: k.chain)
                sources = {self._direct_src.get(k.name) or self._reader_of[f"kernel:{k.name}"][0].name + "#"
                           + str(self._reader_of[f"kernel:{k.name}"][1]) for k in ks}
                if len(sources) != 1:
                    raise InternalCheckError(f"layer {e.op} position {pos}", "chains read different ports",
                                             "report this")
                bias = None
                if ks[0].bias is not None:
                    bias = np.concatenate([k.bias for k in ks]).astype(dense.accumulator_dtype(e))
                weights = np.hstack([self._weights[k.name] for k in ks])
                groups[e.op].append(_Position(ks, weights, bias))
        return groups

    def _whole_layer_writes(self) -> dict[str, tuple[str, int]]:
        """Layers whose last-position chains write adjacent column slices (chain order) of one buffer:
        the whole layer output is then one column block of that buffer."""
        out: dict[str, tuple[str, int]] = {}
        if self._columns is None:
            return out
        for e in self.plan.layers:
            last = self._positions[e.op][-1].kernels
            targets = [self._writer_of.get(f"kernel:{k.name}") for k in last]
            if any(t is None for t in targets) or len({t[0].name for t in targets}) != 1:
                continue
            offs = [self._columns[(t[0].name, "w", t[1])] for t in targets]
            if offs == [offs[0] + c * e.n_slice for c in range(len(offs))]:
                out[e.op] = (targets[0][0].name, offs[0])
        return out

    @property
    def uses_column_ports(self) -> bool:
        return self._columns is not None

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
        y = self.run_unchecked(x, trace)
        y = y.astype(np.int64)
        return y if padded else y[: x.shape[0], : last.n]

    def run_unchecked(self, x: np.ndarray, trace: Trace | None = None) -> np.ndarray:
        """``run`` for inputs already known to be valid codes (e.g. from the model's own quantizer, in float32):
        returns the padded output codes [iterations * batch, N padded] as exact integers in a float array."""
        rows = self.plan.batch
        iters = max(1, ceil_div(x.shape[0], rows))
        macs = iters * rows * sum(e.k * e.n for e in self.plan.layers)
        with progress.task(f"emulating {x.shape[0]:,} events", total=iters * rows,
                           enabled=macs >= PROGRESS_MACS) as bar:
            if self._columns is not None:
                # chunks of graph iterations keep the working set in cache; a trace wants one piece
                widest = max([e.k_padded for e in self.plan.layers] + [e.n_padded for e in self.plan.layers])
                step = iters if trace is not None else max(1, CHUNK_ELEMENTS // (widest * rows))
                pool = {sb.name: np.zeros((step * rows, sb.dims[0]), dtype=np.float32)
                        for sb in self.plan.shared_buffers}
                y = np.empty((iters * rows, self.plan.layers[-1].n_padded), dtype=np.float32)
                for i in range(0, iters, step):
                    n = min(step, iters - i)
                    y[i * rows:(i + n) * rows] = self._run_columns(x[i * rows:(i + n) * rows], n, trace, pool)
                    bar.advance(n * rows)
            else:
                y = self._run_streams(x, iters, trace)
                bar.advance(iters * rows)
        return y

    # -- fast path: row-major buffers, column ports ------------------------------------------------------
    def _run_columns(self, x: np.ndarray, iters: int, trace: Trace | None, pool: dict[str, np.ndarray]) -> np.ndarray:
        """One piece of ``iters`` graph iterations. ``pool`` holds zeroed row-major buffers reused across pieces:
        writers overwrite the same columns every piece, so columns nobody writes stay zero."""
        plan, rows = self.plan, self.plan.batch
        events = iters * rows
        cols = self._columns
        assert cols is not None
        buffers = {name: arr[:events] for name, arr in pool.items()}
        if x.shape[0] < events:  # rows past the last event are zero inputs
            for sb in plan.shared_buffers:
                buffers[sb.name][x.shape[0]:] = 0
        for p in plan.plios:
            if p.direction == "in":
                sb, idx = self._writer_of[f"plio:{p.name}"]
                off = cols[(sb.name, "w", idx)]
                start = sb.col_start + off
                avail = max(0, min(p.row_width, x.shape[1] - start))
                if off == 0 and start == 0 and avail == x.shape[1] == buffers[sb.name].shape[1]:
                    buffers[sb.name][: x.shape[0]] = x  # the whole row in one contiguous copy
                else:
                    buffers[sb.name][: x.shape[0], off:off + avail] = x[:, start:start + avail]
        outputs: dict[str, np.ndarray] = {}
        for e in plan.layers:
            cascade = None
            for pos, group in enumerate(self._positions[e.op]):
                k0 = group.kernels[0]
                if k0.name in self._direct_src:
                    a_mat = outputs[self._direct_src[k0.name]]
                else:
                    sb, idx = self._reader_of[f"kernel:{k0.name}"]
                    off = cols[(sb.name, "r", idx)]
                    a_mat = buffers[sb.name][:, off:off + e.k_slice]
                if a_mat.dtype != group.weights.dtype:
                    a_mat = a_mat.astype(group.weights.dtype)
                if trace is not None:
                    self._record_inputs(trace, e, group.kernels, a_mat, cascade, iters)
                result = dense.run_tile_logical(e, k0.role, a_mat, group.weights, group.bias, cascade)
                if trace is not None:
                    self._record_outputs(trace, e, group.kernels, result)
                if pos + 1 < len(self._positions[e.op]):
                    cascade = result
                    continue
                result = result.reshape(events, -1)
                target = self._whole_write.get(e.op)
                if target is not None:  # the chains fill the next buffer's columns side by side
                    name, off = target
                    if off == 0 and result.shape[1] == buffers[name].shape[1]:
                        buffers[name] = result
                    else:
                        buffers[name][:, off:off + result.shape[1]] = result
                for c, k in enumerate(group.kernels):
                    out = result[:, c * e.n_slice:(c + 1) * e.n_slice]
                    outputs[k.name] = out
                    key = f"kernel:{k.name}"
                    if target is None and key in self._writer_of:
                        sb, idx = self._writer_of[key]
                        off = cols[(sb.name, "w", idx)]
                        buffers[sb.name][:, off:off + e.n_slice] = out
        y = np.zeros((events, plan.layers[-1].n_padded), dtype=np.float32)
        for p in plan.plios:
            if p.direction == "out":
                sb, idx = self._reader_of[f"plio:{p.name}"]
                off = cols[(sb.name, "r", idx)]
                y[:, sb.col_start + off:sb.col_start + off + p.row_width] = buffers[sb.name][:, off:off + p.row_width]
        return y

    @staticmethod
    def _record_inputs(trace: Trace, e, kernels: list[Kernel], a_mat, cascade, iters: int) -> None:
        """Before the call (the cascade array is consumed in place): windows in buffer/cascade order."""
        a = np.asarray(a_mat, dtype=np.int64).reshape(iters, e.batch, e.k_slice)
        window = dense.input_layout(e).to_blocks(a)
        for c, k in enumerate(kernels):
            trace.inputs[k.name] = window
            if k.has_cascade_in:
                words = cascade[..., c * e.n_slice:(c + 1) * e.n_slice].astype(np.int64)
                trace.cascade_in[k.name] = dense.cascade_to_stream(e, words)

    @staticmethod
    def _record_outputs(trace: Trace, e, kernels: list[Kernel], result) -> None:
        for c, k in enumerate(kernels):
            block = result[..., c * e.n_slice:(c + 1) * e.n_slice].astype(np.int64)
            trace.outputs[k.name] = (dense.cascade_to_stream(e, block) if k.has_cascade_out
                                     else dense.output_layout(e).to_blocks(block))

    # -- general path: descriptor address lists ---------------------------------------------------------
    def _run_streams(self, x: np.ndarray, iters: int, trace: Trace | None) -> np.ndarray:
        plan, rows = self.plan, self.plan.batch
        x_pad = np.zeros((iters * rows, x.shape[1]), dtype=np.int64)
        x_pad[: x.shape[0]] = x
        x_iter = x_pad.reshape(iters, rows, -1)
        buffers = {sb.name: np.zeros((iters, sb.dims[0] * sb.dims[1]), dtype=np.int64)
                   for sb in plan.shared_buffers}
        for p in plan.plios:
            if p.direction == "in":
                sb, idx = self._writer_of[f"plio:{p.name}"]
                start = sb.col_start
                stream = np.zeros((iters, rows, p.row_width), dtype=np.int64)
                avail = max(0, min(p.row_width, x.shape[1] - start))
                stream[:, :, :avail] = x_iter[:, :, start:start + avail]
                self._write(buffers[sb.name], sb, idx, stream.reshape(iters, -1))
        windows: dict[str, np.ndarray] = {}
        for e in plan.layers:
            cascade = None
            for k in sorted(plan.kernels_of(e.op), key=lambda k: (k.chain, k.position)):
                if k.name in self._direct_src:
                    window = windows[self._direct_src[k.name]]
                else:
                    sb, idx = self._reader_of[f"kernel:{k.name}"]
                    window = self._read(buffers[sb.name], sb, idx)
                a_mat = dense.input_matrix(e, window)
                if trace is not None:
                    self._record_inputs(trace, e, [k], a_mat, cascade, iters)
                result = dense.run_tile_logical(e, k.role, a_mat, self._weights[k.name], k.bias,
                                                cascade if k.has_cascade_in else None)
                if trace is not None:
                    self._record_outputs(trace, e, [k], result)
                if not k.has_output:
                    cascade = result
                    continue
                cascade = None
                window = dense.output_layout(e).to_blocks(result.astype(np.int64))
                windows[k.name] = window
                key = f"kernel:{k.name}"
                if key in self._writer_of:
                    sb, idx = self._writer_of[key]
                    self._write(buffers[sb.name], sb, idx, window)
        y = np.zeros((iters, rows, plan.layers[-1].n_padded), dtype=np.int64)
        for p in plan.plios:
            if p.direction == "out":
                sb, idx = self._reader_of[f"plio:{p.name}"]
                stream = self._read(buffers[sb.name], sb, idx)
                y[:, :, sb.col_start:sb.col_start + p.row_width] = stream.reshape(iters, rows, p.row_width)
        return y.reshape(iters * rows, -1)

    @staticmethod
    def _read(buf: np.ndarray, sb: SharedBuffer, idx: int) -> np.ndarray:
        addr, valid = sb.readers[idx].tiling.addresses()
        return np.where(valid[None, :], buf[:, addr], 0)

    @staticmethod
    def _write(buf: np.ndarray, sb: SharedBuffer, idx: int, stream: np.ndarray) -> None:
        addr, _ = sb.writers[idx].tiling.addresses()
        buf[:, addr] = stream
