"""DMA tiling descriptors with the semantics of ADF ``adf::tiling_parameters`` (UG1603, Vitis-Tutorials AIE-ML 07).

A descriptor turns an N-dimensional buffer into a 1-D stream (read) or a stream into the buffer (write):
- ``buffer_dimension``: buffer extents, dimension 0 innermost (contiguous);
- ``tiling_dimension``: the extents of one tile; its elements are visited dimension 0 innermost;
- ``offset``: origin of the first tile;
- ``tile_traversal``: loops over tiles, index 0 innermost: (dimension, stride, wrap) moves the tile origin by
  ``stride`` elements along ``dimension``, ``wrap`` times;
- ``boundary_dimension`` (reads only): elements outside it read as zero (memory-tile MM2S zero padding).

Codegen prints these objects; the emulator executes ``addresses()`` of the very same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Traversal:
    dimension: int
    stride: int
    wrap: int


@dataclass(frozen=True)
class TilingDescriptor:
    buffer_dimension: tuple[int, ...]
    tiling_dimension: tuple[int, ...]
    offset: tuple[int, ...]
    tile_traversal: tuple[Traversal, ...] = ()
    boundary_dimension: tuple[int, ...] | None = None

    @property
    def elements(self) -> int:
        n = int(np.prod(self.tiling_dimension))
        for t in self.tile_traversal:
            n *= t.wrap
        return n

    def coordinates(self) -> np.ndarray:
        """Coordinates [elements, ndim] in stream order."""
        nd = len(self.buffer_dimension)
        # element offsets inside one tile, dimension 0 fastest
        grids = np.meshgrid(*[np.arange(e) for e in reversed(self.tiling_dimension)], indexing="ij")
        inner = np.stack([g.ravel() for g in reversed(grids)], axis=1)  # [tile_elems, nd]
        coords = self.tile_origins()[:, None, :] + inner[None, :, :]
        return coords.reshape(-1, nd)

    @cached_property
    def _addresses(self) -> tuple[np.ndarray, np.ndarray]:
        coords = self.coordinates()
        dims = np.asarray(self.buffer_dimension, dtype=np.int64)
        strides = np.concatenate([[1], np.cumprod(dims)[:-1]]).astype(np.int64)
        bound = np.asarray(self.boundary_dimension if self.boundary_dimension else dims, dtype=np.int64)
        valid = np.all((coords >= 0) & (coords < bound) & (coords < dims), axis=1)
        addr = np.where(valid, coords @ strides, 0)
        return addr, valid

    def addresses(self) -> tuple[np.ndarray, np.ndarray]:
        """(linear element address, valid mask) per stream element; invalid elements read as zero."""
        return self._addresses

    def in_bounds(self) -> bool:
        """True when every element lies inside the buffer (required for writes and for unpadded reads)."""
        coords = self.coordinates()
        return bool(np.all((coords >= 0) & (coords < np.asarray(self.buffer_dimension))))

    def tile_origins(self) -> np.ndarray:
        """Origins [tiles, ndim] of the tiles in traversal order."""
        nd = len(self.buffer_dimension)
        origins = np.zeros((1, nd), dtype=np.int64) + np.asarray(self.offset, dtype=np.int64)
        for t in self.tile_traversal:  # index 0 innermost: later loops are outer
            step = np.zeros(nd, dtype=np.int64)
            step[t.dimension] = t.stride
            moves = np.arange(t.wrap, dtype=np.int64)[:, None] * step[None, :]
            origins = (moves[:, None, :] + origins[None, :, :]).reshape(-1, nd)
        return origins

    def padding_segments(self) -> int:
        """Buffer descriptors one pass of this read needs, before ping/pong: a DMA BD addresses one regular n-D
        pattern with one zero padding, so the compiler gives each run of consecutive tiles with the same padding
        (inside, straddling the boundary, wholly outside) its own BD and chains them; a sequence of runs that
        repeats over the outer traversal loops is one chain that loops. 1 for an unpadded read."""
        if not self.boundary_dimension:
            return 1
        origins = self.tile_origins()
        lo = np.zeros(len(self.buffer_dimension), dtype=np.int64)
        hi = np.minimum(np.asarray(self.boundary_dimension), np.asarray(self.buffer_dimension))
        ext = np.asarray(self.tiling_dimension, dtype=np.int64)
        # per tile and dimension: elements padded before and after the valid range
        before = np.clip(lo - origins, 0, ext)
        after = np.clip(origins + ext - hi, 0, ext)
        pattern = np.concatenate([before, after], axis=1)
        change = np.flatnonzero(np.any(pattern[1:] != pattern[:-1], axis=1)) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [len(pattern)]]))
        runs = [(tuple(pattern[s]), int(n)) for s, n in zip(starts, lengths, strict=True)]
        for period in range(1, len(runs) + 1):  # smallest repeating unit of the run sequence
            if len(runs) % period == 0 and runs == runs[:period] * (len(runs) // period):
                return period
        return len(runs)

    def to_json(self) -> dict:
        return {
            "buffer_dimension": list(self.buffer_dimension),
            "tiling_dimension": list(self.tiling_dimension),
            "offset": list(self.offset),
            "tile_traversal": [{"dimension": t.dimension, "stride": t.stride, "wrap": t.wrap}
                               for t in self.tile_traversal],
            "boundary_dimension": list(self.boundary_dimension) if self.boundary_dimension else None,
        }


@dataclass
class BlockLayout:
    """Layout of a [rows, cols] window inside a tile buffer: blocks of block_rows x block_cols stored
    contiguously (row-major inside a block), blocks ordered row-block major. This is what aie::mmul loads."""

    rows: int
    cols: int
    block_rows: int
    block_cols: int
    notes: list[str] = field(default_factory=list)

    def to_blocks(self, x: np.ndarray) -> np.ndarray:
        """[..., rows, cols] -> [..., rows*cols] in buffer order."""
        lead = x.shape[:-2]
        rb, cb = self.rows // self.block_rows, self.cols // self.block_cols
        y = x.reshape(*lead, rb, self.block_rows, cb, self.block_cols)
        y = np.moveaxis(y, -3, -2)  # [..., rb, cb, br, bc]
        return y.reshape(*lead, self.rows * self.cols)

    def from_blocks(self, x: np.ndarray) -> np.ndarray:
        lead = x.shape[:-1]
        rb, cb = self.rows // self.block_rows, self.cols // self.block_cols
        y = x.reshape(*lead, rb, cb, self.block_rows, self.block_cols)
        y = np.moveaxis(y, -2, -3)
        return y.reshape(*lead, self.rows, self.cols)
