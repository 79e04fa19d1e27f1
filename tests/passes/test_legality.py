"""The legality model: every rule has a design that violates exactly that rule and gets a clear error naming the
rule, where, and by how much; valid designs (up to the full 296-tile array) pass and report their peak use.

Some rules cannot be broken on the VE2802 without breaking an earlier one first (e.g. 16 buffer descriptors per
tile are never exhausted through 2 + 2 DMA channels); those tests use a device whose catalog fact is smaller, so the
rule itself is still exercised on a real plan.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from nn2aie.devices import Device, get_device
from nn2aie.errors import DoesNotFitError
from nn2aie.ir.physical import Access, BufferAlloc
from nn2aie.passes.legality import RULES, check_legality, peak_usage, resource_usage
from nn2aie.passes.pipeline import CompileOptions, compile_graph

from helpers import random_mlp_graph

DEVICE = get_device("xcve2802")


class PatchedDevice(Device):
    """The VE2802 with some generation facts replaced (a smaller part, for rules the real one cannot reach)."""

    def __init__(self, **facts):
        super().__init__(**{f.name: getattr(DEVICE, f.name) for f in dataclasses.fields(DEVICE)})
        object.__setattr__(self, "_patched", facts)

    def fact(self, key: str):
        return self._patched.get(key, super().fact(key))


def plan_of(sizes, overrides=None, seed=0):
    return compile_graph(random_mlp_graph(sizes, seed=seed), CompileOptions(overrides=overrides or {}))[0]


def assert_violates(plan, device, rule: str, where: str = ""):
    with pytest.raises(DoesNotFitError) as err:
        check_legality(plan, device)
    text = str(err.value)
    assert err.value.where.startswith(f"{rule} at "), text
    assert where in err.value.where, text
    print(f"{rule}: {text}")
    return text


def test_valid_designs_pass_and_report_peaks():
    for sizes, ov in (([16, 64, 32, 32, 5], None), ([384, 256, 200, 10], {"dense0": {"cas_length": 4, "cas_num": 2}}),
                      ([1024] * 5, None)):
        plan = plan_of(sizes, ov)
        peaks = peak_usage(check_legality(plan, DEVICE))
        assert plan.resources == peaks  # the compiler ran the same check
        assert set(peaks) >= {"tile data memory", "tile DMA channels", "memory-tile DMA channels", "program memory",
                              "stream-switch ports", "PLIO ports"}
        assert all(p["used"] <= p["capacity"] for p in peaks.values())


def test_tile_data_memory():
    plan = plan_of([64, 32, 10])
    k = plan.kernels[0]
    end = max(b.offset + b.size for b in k.memory)
    k.memory.append(BufferAlloc("extra", end, DEVICE.data_memory_bytes - end + 100, end // DEVICE.bank_bytes))
    text = assert_violates(plan, DEVICE, "tile data memory", f"tile ({k.col},{k.row})")
    assert "over by 100" in text


def test_neighbour_memory():
    plan = plan_of([16, 64, 32, 32, 5])
    link = next(link for link in plan.direct_links if link.in_place)
    dst = plan.kernel(link.dst)
    dst.col += 3  # the reader is no longer next to the module holding the buffer
    assert_violates(plan, DEVICE, "neighbour memory", link.src)


def test_tile_dma_channels():
    plan = plan_of([64, 32, 10])
    sb = next(sb for sb in plan.shared_buffers if any(ep.kind == "kernel" for a in sb.readers for ep in a.endpoints))
    acc = sb.readers[0]
    sb.readers += [Access(list(acc.endpoints), acc.tiling), Access(list(acc.endpoints), acc.tiling)]
    text = assert_violates(plan, DEVICE, "tile DMA channels", "S2MM")
    assert "uses 3 of 2" in text and "over by 1" in text


def test_tile_buffer_descriptors():
    plan = plan_of([64, 32, 10])
    assert_violates(plan, PatchedDevice(tile_buffer_descriptors=1), "tile buffer descriptors")


def test_memory_tile_capacity():
    plan = plan_of([64, 32, 10])
    sb = plan.shared_buffers[0]
    sb.dims = (sb.dims[0], 300_000 // sb.dims[0])  # > 512 KB double buffered
    text = assert_violates(plan, DEVICE, "memory-tile capacity", sb.name)
    assert "524288 B" in text


def test_memory_tile_dma_channels():
    plan = plan_of([64, 32, 10])
    sb = plan.shared_buffers[0]
    sb.readers += [Access([], sb.readers[0].tiling) for _ in range(7 - len(sb.readers))]  # ports nobody reads
    text = assert_violates(plan, DEVICE, "memory-tile DMA channels", "MM2S")
    assert "uses 7 of 6" in text


def test_memory_tile_buffer_descriptors():
    plan = plan_of([384, 256, 200, 10], {"dense0": {"cas_length": 4, "cas_num": 2}})
    assert_violates(plan, PatchedDevice(memtile_buffer_descriptors=6), "memory-tile buffer descriptors", "BD pool")


def test_zero_padded_read_takes_its_buffer_descriptors_per_padding_run():
    """A padded memory-tile read needs a ping/pong pair of BDs per run of tiles with the same padding (VT-07's
    77-4352 case): 2 runs (inside, straddling) and 3 runs (inside, straddling, all zeros) on a real plan."""
    plan = plan_of([64, 32, 10])
    sb = next(sb for sb in plan.shared_buffers if sb.readers[0].tiling.tile_traversal)
    where = f"memory tile ({sb.col},{sb.row}) ({sb.name}) BD pool 0"

    def pool0(boundary):
        reader = sb.readers[0]
        sb.readers[0] = Access(reader.endpoints, dataclasses.replace(reader.tiling, boundary_dimension=boundary))
        use = next(u for u in resource_usage(plan, DEVICE) if u.where == where)
        sb.readers[0] = reader
        return use.used

    assert sb.readers[0].tiling.buffer_dimension == (64, 4) and sb.readers[0].tiling.tiling_dimension == (8, 4)
    unpadded = pool0(None)
    assert unpadded == 4  # the writer's ping/pong and the reader's, both on even channels
    assert pool0((60, 4)) == unpadded + 2  # tiles 0-48 inside, tile 56 straddles column 60
    assert pool0((52, 4)) == unpadded + 4  # tiles 0-40 inside, 48 straddles, 56 reads only zeros


def test_stream_switch_ports():
    # the 296-tile layer sends its 8 output streams south from column 36: with 2 south ports per switch (a smaller
    # part than the VE2802's 4) columns 35-37 offer 6. The memory-tile row has no east-west links, so a stream
    # changes column in the lowest compute row: the 7 streams from the rows above it cross into that row
    plan = compile_graph(random_mlp_graph([4736, 1024], seed=1),
                         CompileOptions(overrides={"dense0": {"cas_length": 37, "cas_num": 8}}))[0]
    ports = dict(DEVICE.fact("stream_switch_ports"), south=2)
    text = assert_violates(plan, PatchedDevice(stream_switch_ports=ports), "stream-switch ports", "southbound")
    assert "columns 36-36 (passing in 35-37), array row 4" in text and "uses 7 of 6 streams (over by 1)" in text


def test_plio_ports():
    plan = compile_graph(random_mlp_graph([4736, 1024], seed=1),
                         CompileOptions(overrides={"dense0": {"cas_length": 37, "cas_num": 8}}))[0]
    ins = [p for p in plan.plios if p.direction == "in"]
    assert len(ins) >= 5
    for p in ins:
        p.col = 0  # every input PLIO in one interface column: 2 x 64-bit channels each, 8 per column
    text = assert_violates(plan, DEVICE, "PLIO ports", "interface column 0 (PL->AIE)")
    assert f"uses {2 * len(ins)} of 8" in text


def test_cascade_direction():
    plan = plan_of([384, 256, 200, 10], {"dense0": {"cas_length": 4, "cas_num": 2}})
    k = next(k for k in plan.kernels if k.layer == "dense0" and k.position == 1 and k.chain == 1)
    k.col, k.row = k.col - 1, k.row + 1  # the hop from p0 now goes north
    assert_violates(plan, DEVICE, "cascade direction", k.name)


def test_program_memory():
    plan = plan_of([64, 32, 10])
    text = assert_violates(plan, PatchedDevice(program_memory_bytes=2048), "program memory")
    assert "estimate" in text


def test_every_rule_is_tested():
    tested = {"tile data memory", "neighbour memory", "tile DMA channels", "tile buffer descriptors",
              "memory-tile capacity", "memory-tile DMA channels", "memory-tile buffer descriptors",
              "stream-switch ports", "PLIO ports", "cascade direction", "program memory"}
    assert tested == set(RULES)


def test_full_array_layer_is_legal():
    plan = compile_graph(random_mlp_graph([4736, 1024], seed=1),
                         CompileOptions(overrides={"dense0": {"cas_length": 37, "cas_num": 8}}))[0]
    assert len(plan.kernels) == 296
    peaks = peak_usage(check_legality(copy.deepcopy(plan), DEVICE))
    assert peaks["memory-tile DMA channels"]["used"] <= 6
    # 37 input slices and 8 output chains: split over PLIOs fast enough for the layer (memory plan)
    assert len([p for p in plan.plios if p.direction == "in"]) >= 7


def test_routes_change_column_outside_the_memory_tile_rows():
    """A stream between a compute tile and a memory tile in another column moves east-west in a compute or
    interface row (the memory-tile rows have no such links), with the same number of hops."""
    from nn2aie.passes.legality import route

    flat = frozenset({1, 2})  # VE2802: rows 1-2 are memory tiles, 0 the interface, 3.. compute
    down = route((5, 6), (2, 1), flat)  # compute (5, row 6) -> memory tile (2, row 1)
    assert [lk for lk in down if lk[2] in ("east", "west")] == [(5, 3, "west"), (4, 3, "west"), (3, 3, "west")]
    assert len(down) == len(route((5, 6), (2, 1)))
    up = route((0, 0), (3, 2), flat)  # PLIO -> memory tile: across in the interface row
    assert {lk[1] for lk in up if lk[2] == "east"} == {0}
    assert not [lk for lk in route((2, 1), (7, 4), flat) if lk[2] in ("east", "west") and lk[1] in flat]


def test_plio_in_a_column_without_pl_interface_is_refused():
    """A part whose catalog lists the PL interface columns: a PLIO elsewhere has no channels (and the memory plan
    puts PLIOs in the nearest listed column)."""
    plan = plan_of([64, 32, 10])
    col = next(p.col for p in plan.plios)
    others = tuple(c for c in range(DEVICE.columns) if c != col)
    text = assert_violates(plan, dataclasses.replace(DEVICE, shim_pl_columns=others), "PLIO ports",
                           f"interface column {col}")
    assert "of 0" in text
