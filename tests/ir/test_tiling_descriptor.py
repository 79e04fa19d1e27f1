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


def _blocks(buffer, boundary, traversal_wraps=None):
    """8 x 4 tiles over a [columns, rows] buffer, columns innermost (the layout the memory plan reads)."""
    cols, rows = buffer
    wraps = traversal_wraps or (cols // 8, rows // 4)
    return TilingDescriptor(buffer, (8, 4), (0, 0), (Traversal(0, 8, wraps[0]), Traversal(1, 4, wraps[1])), boundary)


def test_padding_segments_count_runs_of_equal_padding():
    assert _blocks((40, 8), None).padding_segments() == 1  # unpadded: one BD pattern
    # per row block: 4 tiles inside, 1 tile straddling column 36 (4 padded): 2 runs, the same in each row block
    assert _blocks((40, 8), (36, 8)).padding_segments() == 2
    assert _blocks((40, 32), (36, 32)).padding_segments() == 2  # more row blocks: the chain loops, no more BDs
    # 3 inside, 1 straddling column 28, 1 wholly outside (all zeros): 3 runs
    assert _blocks((40, 8), (28, 8)).padding_segments() == 3
    # boundary on a tile edge: 4 inside, 1 wholly outside
    assert _blocks((40, 8), (32, 8)).padding_segments() == 2
    # rows padded in the last row block only: the run sequence does not repeat (inside x 4, row-padded x 2)
    assert _blocks((16, 12), (16, 10)).padding_segments() == 2
    # both: row blocks 0 and 1 give (inside, column-padded) each, row block 2 (row-padded, both-padded); the run
    # sequence has no repeating unit (a BD chain loops as a whole, it has no inner loop): 6 runs
    assert _blocks((16, 12), (12, 10)).padding_segments() == 6


def test_padding_segments_agree_with_the_padded_elements():
    """Each run really is a different padding: reading the tiles of one run gives the same valid-mask per tile."""
    desc = _blocks((40, 8), (28, 8))
    _, valid = desc.addresses()
    per_tile = valid.reshape(-1, 32)  # 8 x 4 elements per tile, in traversal order
    kinds = [tuple(m) for m in per_tile[:5]]  # the first row block
    assert len(set(kinds)) == desc.padding_segments()
