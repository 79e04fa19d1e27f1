"""How a view op runs: resolved into memory-tile descriptors where its inputs can simply be stored as column
ranges of its output (``column_alias``: a concat on the last axis, a rename that keeps rows and columns), else a
copy kernel on one tile.

The copy kernel that gathers every output element from its input windows.

On chip a tensor is ``[rows, columns]`` per graph iteration with the columns padded to whole 32-bit words (what
the DMA moves); a view changes rows, columns or order. The tile reads each input window (``batch`` events, padded
rows) and writes the output window; which input element each output element is comes from a per-event index
table derived by running the logical view (kernels/view/logical.py) on element positions, so the copy is the
view by construction. Where the table is the identity (same flat order, no padding moved), the kernel copies
16-element vectors instead of gathering element by element.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from nn2aie.errors import UnsupportedOpError
from nn2aie.ir.execution import OpExec, rows_per_event
from nn2aie.ir.logical import Graph, Op
from nn2aie.kernels.plain import word_padded_width
from nn2aie.kernels.view import logical

LANES = 16
MAX_TABLE = 4096  # index entries per event (int32 each): at most 16 KB of the tile's data memory


@dataclass
class ViewExec(OpExec):
    op: str
    kind: str
    batch: int
    dtype: str  # one container for every input and the output (views keep types)
    in_rows: list[int]  # rows per event of each input
    in_widths: list[int]  # padded columns of each input window
    in_columns: list[int]  # logical columns of each input
    out_rows: int
    out_width: int
    out_columns: int
    copy: bool  # the table is the identity: a vector copy
    table: list[int] = field(default_factory=list)  # per output element of one event: source index, -1 = zero
    resolved: bool = False  # no tile: the producers write straight into the output's memory-tile buffer
    reads: list[str] = field(default_factory=list)  # tensors the tile reads when earlier views are fused into it
    fused: list[str] = field(default_factory=list)  # views fused into this one's copy (their data moves once)
    fused_into: str = ""  # this view runs inside that view's copy tile
    cas_length: int = 1
    cas_num: int = 1
    override: bool = False
    notes: list[str] = field(default_factory=list)

    family: ClassVar[str] = "view"

    def in_size(self, i: int) -> int:
        """Elements of input ``i``'s window for one event."""
        return self.in_rows[i] * self.in_widths[i]

    @property
    def out_size(self) -> int:
        return self.out_rows * self.out_width

    def to_json(self) -> dict:
        d = asdict(self)
        d["table"] = len(self.table)
        d["family"] = self.family
        d["tiles"] = self.tiles
        return d


def too_large(op: Op, elements: int) -> UnsupportedOpError:
    return UnsupportedOpError(f"op {op.name} ({op.kind})", f"moves {elements} elements per event; the copy kernel's "
                              f"index table holds at most {MAX_TABLE}",
                              "split the tensor, or keep its layout (a view of fewer elements)")


def plan(graph: Graph, op: Op, batch: int, reads: list[str] | None = None) -> ViewExec:
    """``reads``: the tensors the copy tile reads when views before this one are fused into it (their inputs
    instead of their outputs); the table then runs the whole chain of views on element positions."""
    reads = list(reads or op.inputs)
    ins = [graph.tensor(t) for t in reads]
    y = graph.tensor(op.outputs[0])
    dtype = y.type.container
    in_rows = [rows_per_event(tuple(t.shape)) for t in ins]
    in_cols = [int(t.shape[-1]) if t.shape else 1 for t in ins]
    in_widths = [word_padded_width(c, dtype) for c in in_cols]
    out_rows = rows_per_event(tuple(y.shape))
    out_cols = int(y.shape[-1]) if y.shape else 1
    out_width = word_padded_width(out_cols, dtype)
    if out_rows * out_width > MAX_TABLE:
        if reads != list(op.inputs) or (column_alias(graph, op) is None and column_window(graph, op) is None):
            raise too_large(op, out_rows * out_width)
        # only resolvable into descriptors (checked when the pipeline tries: partition refuses otherwise)
        return ViewExec(op=op.name, kind=op.kind, batch=batch, dtype=dtype, in_rows=in_rows, in_widths=in_widths,
                        in_columns=in_cols, out_rows=out_rows, out_width=out_width, out_columns=out_cols,
                        copy=False, table=[])
    # element positions in the concatenated padded input windows of one event, run through the logical view
    positions, offset = {}, 0
    for t, rows, width, cols in zip(ins, in_rows, in_widths, in_cols, strict=True):
        grid = (offset + np.arange(rows * width, dtype=np.int64)).reshape(rows, width)[:, :cols]
        positions[t.name] = grid.reshape((1,) + tuple(t.shape))
        offset += rows * width
    moved = _through(graph, op, positions).reshape(out_rows, out_cols)
    table = np.full((out_rows, out_width), -1, dtype=np.int64)
    table[:, :out_cols] = moved
    flat = table.reshape(-1)
    copy = len(ins) == 1 and flat.size == in_rows[0] * in_widths[0] and np.array_equal(flat, np.arange(flat.size))
    return ViewExec(op=op.name, kind=op.kind, batch=batch, dtype=dtype, in_rows=in_rows, in_widths=in_widths,
                    in_columns=in_cols, out_rows=out_rows, out_width=out_width, out_columns=out_cols,
                    copy=bool(copy and (batch * flat.size) % LANES == 0), table=flat.tolist(),
                    reads=reads if reads != list(op.inputs) else [])


def _through(graph: Graph, op: Op, positions: dict[str, np.ndarray]) -> np.ndarray:
    """The logical view on element positions, through the fused views before it back to the tensors read."""
    vals = [positions[t] if t in positions else _through(graph, graph.producer(t), positions)  # type: ignore[arg-type]
            for t in op.inputs]
    return logical.evaluate(graph, op, vals)[0]


def copy_only(graph: Graph, op: Op) -> bool:
    """A view that always needs a copy (no descriptor form): the one to fuse into the next view."""
    return column_alias(graph, op) is None and column_window(graph, op) is None


def column_alias(graph: Graph, op: Op) -> list[int] | None:
    """First output column of each input when the view is a column layout of its inputs, else None."""
    ins = [graph.tensor(t) for t in op.inputs]
    y = graph.tensor(op.outputs[0])
    rank = len(y.shape)
    if op.kind == "concat" and op.attrs["axis"] == rank - 1 and rank >= 1:
        offsets, col = [], 0
        for t in ins:
            offsets.append(col)
            col += int(t.shape[-1])
        return offsets
    if op.kind == "reshape" and ins[0].shape and y.shape and ins[0].shape[-1] == y.shape[-1] and \
            rows_per_event(tuple(ins[0].shape)) == rows_per_event(tuple(y.shape)):
        return [0]  # the same rows and columns: a new name for the same buffer
    return None


def column_window(graph: Graph, op: Op) -> int | None:
    """First input column of the output when the view is one column range of its input (a slice on the last
    axis: the same rows), else None."""
    y = graph.tensor(op.outputs[0])
    if op.kind == "slice" and y.shape and op.attrs["axis"] == len(y.shape) - 1:
        return int(op.attrs["start"])
    return None


def run_tile(e: ViewExec, inputs: list[np.ndarray], iters: int) -> np.ndarray:
    """The output window rows ``[iters * batch * out_rows, out_width]`` from the input windows."""
    events = iters * e.batch
    cat = np.concatenate([np.asarray(a, dtype=np.int64).reshape(events, -1) for a in inputs]
                         + [np.zeros((events, 1), dtype=np.int64)], axis=1)  # the last column: the zero source
    table = np.asarray(e.table, dtype=np.int64)
    index = np.where(table < 0, cat.shape[1] - 1, table)
    return cat[:, index].reshape(events * e.out_rows, e.out_width)
