"""DMA tiling descriptors: stream order, traversal, zero padding (adf::tiling_parameters semantics)."""

import numpy as np

from nn2aie.ir.tiling import BlockLayout, TilingDescriptor, Traversal


def read(desc: TilingDescriptor, buf: np.ndarray) -> list[int]:
    addr, valid = desc.addresses()
    return np.where(valid, buf.ravel()[addr], 0).tolist()


def test_linear_whole_buffer():
    buf = np.arange(12).reshape(3, 4)  # 3 rows x 4 columns: dims (4, 3), dim 0 contiguous
    d = TilingDescriptor((4, 3), (4, 3), (0, 0))
    assert read(d, buf) == list(range(12))


def test_tiles_visited_dim0_first_then_outer_traversal():
    buf = np.arange(16).reshape(4, 4)
    # 2x2 tiles; traversal walks columns (dim 0) first, then rows
    d = TilingDescriptor((4, 4), (2, 2), (0, 0), (Traversal(0, 2, 2), Traversal(1, 2, 2)))
    assert read(d, buf) == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]


def test_offset_and_boundary_zero_padding():
    buf = np.arange(1, 13).reshape(2, 6)  # rows [1..6], [7..12]
    # read columns 4..7 of a 6-wide buffer whose real data ends at column 5: columns past 5 read as zero
    d = TilingDescriptor((6, 2), (4, 2), (4, 0), (), (6, 2))
    assert read(d, buf) == [5, 6, 0, 0, 11, 12, 0, 0]
    d2 = TilingDescriptor((6, 2), (2, 2), (2, 0), (), (3, 2))
    assert read(d2, buf) == [3, 0, 9, 0]
    assert not TilingDescriptor((6, 2), (4, 2), (4, 0)).in_bounds()


def test_write_then_read_roundtrip_block_layout():
    rows, cols = 8, 16
    layout = BlockLayout(rows, cols, 4, 8)
    x = np.arange(rows * cols).reshape(rows, cols)
    blocks = layout.to_blocks(x)
    assert np.array_equal(layout.from_blocks(blocks), x)
    # a descriptor reading 4x8 blocks row-block major produces exactly the block layout
    d = TilingDescriptor((cols, rows), (8, 4), (0, 0), (Traversal(0, 8, 2), Traversal(1, 4, 2)))
    assert read(d, x) == blocks.tolist()
