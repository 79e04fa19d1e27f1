"""The eltwise ``lut`` op (a table of output codes indexed by the input code, clamped at its ends): the logical
model against an independent per-element reference, the planner's variants (parallel / scalar / refused by table
size), the two table copies in two banks, the emulator == the logical model on random tables for every key and
value container, forced column splits and row pieces, native co-simulation of both variants, and the AIE-API
emulation of ``aie::lut`` / ``aie::parallel_lookup`` (index saturation, the 4-copy layout checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn2aie.devices import get_device
from nn2aie.errors import InternalCheckError, MissingToolError, UnsupportedQuantizationError
from nn2aie.ir.types import FixedType
from nn2aie.kernels.eltwise.logical import lut_lookup
from nn2aie.kernels.eltwise.plan import lut_parallel_entries, plan_lut
from nn2aie.kernels.eltwise.tile import lut_arrays, lut_entries_of
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.sim.native import INCLUDE_DIR, find_compiler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_graphs import GraphBuilder, check  # noqa: E402


def lut_graph(a_t: FixedType, y_t: FixedType, entries: int, lo: int, width: int = 24, rows: int = 1,
              seed: int = 0, producer: bool = True):
    """x -> [dense ->] lut(random table) -> y; the table's codes span the output type."""
    b = GraphBuilder(seed)
    shape = (rows, width) if rows > 1 else (width,)
    x = b.tensor("x", shape, a_t if not producer else FixedType(8, 4, True))
    h = b.dense("fc", x, width, a_t) if producer else x
    table = b.tensor("tab", (entries,), y_t, b.rng.integers(y_t.min_code, y_t.max_code + 1, entries))
    y = b.op("act", "eltwise", [h, table], shape, y_t, op="lut", lo=lo, function="random")
    return b.graph(x, y)


def test_lookup_equals_a_per_element_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lo = int(rng.integers(-300, 10))
        table = rng.integers(-128, 128, int(rng.integers(1, 400)))
        x = rng.integers(-400, 700, 500)
        want = [int(table[min(max(int(v) - lo, 0), len(table) - 1)]) for v in x]
        assert lut_lookup(x, table, lo).tolist() == want


def test_layout_stores_every_group_twice_in_two_equal_copies():
    g = lut_graph(FixedType(8, 4, True), FixedType(8, 7, True), 21, -10)
    op = g.op("act")
    e = plan_lut(g, op, get_device("xcve2802"), 4, "test")
    ab, cd = lut_arrays(g, op, e)
    table = g.tensor("tab").data
    assert e.lut_variant == "parallel" and ab.size == 2 * lut_parallel_entries(21) == 48
    assert np.array_equal(ab, cd)
    assert np.array_equal(ab[:8], table[:8]) and np.array_equal(ab[8:16], table[:8])
    assert np.array_equal(ab[16:24], table[8:16]) and np.array_equal(ab[32:37], table[16:21])
    assert np.all(ab[37:40] == table[-1])  # padding repeats the last entry
    assert np.array_equal(lut_entries_of(e, [ab, cd]), table)


@pytest.mark.parametrize("entries, lo, variant", [(256, -128, "parallel"), (2048, -1024, "parallel"),
                                                  (2049, -1024, "scalar"), (16384, -8192, "scalar"),
                                                  (300, 5, "scalar")])
def test_variant_by_table_size(entries, lo, variant):
    g = lut_graph(FixedType(16, 8, True), FixedType(8, 7, True), entries, lo)
    assert plan_lut(g, g.op("act"), get_device("xcve2802"), 4, "test").lut_variant == variant


def test_a_table_beyond_a_bank_is_refused():
    g = lut_graph(FixedType(16, 8, True), FixedType(16, 7, True), 8193, -4096)
    with pytest.raises(UnsupportedQuantizationError, match=r"8193 entries of 2 byte.*16384 B bank"):
        plan_lut(g, g.op("act"), get_device("xcve2802"), 4, "op act")


def test_the_two_copies_sit_in_two_banks():
    g = lut_graph(FixedType(8, 4, True), FixedType(8, 7, True), 256, -128)
    plan, _ = compile_graph(g, CompileOptions(batch=4))
    bank = get_device("xcve2802").bank_bytes
    for k in plan.kernels_of("act"):
        where = {b.name: (b.offset // bank, (b.offset + b.size - 1) // bank) for b in k.memory}
        assert where["lut_ab"][0] == where["lut_ab"][1] and where["lut_cd"][0] == where["lut_cd"][1]
        assert where["lut_ab"][0] != where["lut_cd"][0]


CASES = {  # (input type, output type, entries, lo)
    "int8_to_int8": (FixedType(8, 4, True), FixedType(8, 7, True), 256, -128),
    "int8_trimmed_to_int16": (FixedType(8, 4, True), FixedType(16, 12, True), 90, -40),
    "uint8_to_uint8": (FixedType(8, 4, False), FixedType(8, 8, False), 200, 0),
    "int16_to_int8": (FixedType(16, 10, True), FixedType(8, 7, True), 1500, -700),
    "int16_scalar_to_uint8": (FixedType(16, 10, True), FixedType(8, 8, False), 9000, -4500),
    "uint15_to_int8": (FixedType(15, 10, False), FixedType(8, 6, True), 1000, 0),
    "uint16_scalar": (FixedType(16, 10, False), FixedType(8, 6, True), 3000, 0),
    "narrow_table_above_zero": (FixedType(8, 4, True), FixedType(8, 6, True), 50, 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_emulator_and_native_equal_the_logical_model(case):
    a_t, y_t, entries, lo = CASES[case]
    plan, _ = check(lut_graph(a_t, y_t, entries, lo, seed=sorted(CASES).index(case)))
    (e,) = [x for x in plan.layers if x.op == "act"]
    assert e.lut_variant == ("scalar" if "scalar" in case or lo > 0 else "parallel")


@pytest.mark.parametrize("tiles", [2, 5])
def test_forced_column_splits(tiles):
    g = lut_graph(FixedType(8, 4, True), FixedType(8, 7, True), 256, -128, width=40)
    plan, _ = check(g, overrides={"act": {"cas_num": tiles}})
    assert len(plan.kernels_of("act")) == tiles


def test_tall_tensors_share_their_rows_out_over_tiles():
    """[1024, 4] per event at batch 8: one column slice is too tall for a tile, so the rows go out in pieces."""
    g = lut_graph(FixedType(8, 4, True), FixedType(8, 7, True), 256, -128, width=4, rows=1024, producer=False)
    plan, _ = check(g, batch=8, events=200, cosim_events=16)
    (e,) = plan.layers
    assert e.pieces > 1


def test_verify_refuses_a_table_of_another_type():
    b = GraphBuilder()
    x = b.tensor("x", (16,), FixedType(8, 4, True))
    t = b.tensor("tab", (10,), FixedType(8, 6, True), np.zeros(10, dtype=np.int64))
    y = b.op("act", "eltwise", [x, t], (16,), FixedType(8, 7, True), op="lut", lo=0)
    with pytest.raises(InternalCheckError, match="table's type"):
        b.graph(x, y)


# -- the AIE-API emulation of the lookup ----------------------------------------------------------------------
PROGRAM = r"""
#include <aie_api/aie.hpp>
#include <cstdio>
#include <cstring>
int main(int argc, char** argv) {
  const int n = 13;                      // entries 100 + 3 k, k = 0..12, in the 128-bit x 2 layout
  alignas(32) int16_t ab[32], cd[32];
  for (int k = 0; k < 16; ++k) {
    const int v = 100 + 3 * (k < n ? k : n - 1);
    ab[(k / 8) * 16 + k % 8] = ab[(k / 8) * 16 + 8 + k % 8] = v;
    cd[(k / 8) * 16 + k % 8] = cd[(k / 8) * 16 + 8 + k % 8] = v;
  }
  if (argc > 1 && std::strcmp(argv[1], "corrupt") == 0) cd[8 + 5] = 0;  // one copy of entry 5 differs
  try {
    const aie::lut<4, int16_t> table(n, ab, cd);
    aie::parallel_lookup<int8_t, aie::lut<4, int16_t>, aie::lut_oor_policy::saturate> lookup(table, 0, 4);
    aie::vector<int8_t, 16> x;
    const int codes[16] = {-128, -5, -4, -3, 0, 1, 5, 7, 8, 9, 10, 20, 127, -1, 2, 3};
    for (int i = 0; i < 16; ++i) x[i] = (int8_t)codes[i];
    const aie::vector<int16_t, 16> y = lookup.fetch(x);
    for (int i = 0; i < 16; ++i) std::printf("%d ", (int)y[i]);
    std::printf("\n");
  } catch (const aie_emu::error& e) {
    std::printf("error: %s\n", e.what());
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def lookup_program(tmp_path_factory):
    try:
        cxx = find_compiler()
    except MissingToolError as exc:
        pytest.skip(f"no C++ compiler: {exc}")
    d = tmp_path_factory.mktemp("aie-api-lut")
    src, exe = d / "lut.cc", d / "lut"
    src.write_text(PROGRAM)
    proc = subprocess.run([cxx, "-std=c++20", "-O1", "-I", str(INCLUDE_DIR), str(src), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return lambda *args: subprocess.run([str(exe), *args], capture_output=True, text=True, check=True).stdout


def test_parallel_lookup_saturates_the_index(lookup_program):
    got = [int(v) for v in lookup_program().split()]
    codes = [-128, -5, -4, -3, 0, 1, 5, 7, 8, 9, 10, 20, 127, -1, 2, 3]
    want = [100 + 3 * min(max(c + 4, 0), 12) for c in codes]  # index (x >> 0) + 4, saturated into [0, 12]
    assert got == want


def test_a_table_not_in_the_four_copy_layout_is_reported(lookup_program):
    out = lookup_program("corrupt")
    assert out.startswith("error:") and "entry 5 differs between its four copies" in out
