"""The AIE-API emulation header against nn2aie.numerics: shift-round-saturate in every rounding x saturation mode
on exact ties, negatives and overflow boundaries; the documented lowering gotchas (acc64 -> 8-bit goes through
16 bits then pack; acc32 -> 32-bit ignores the shift); mmul, cascade words and the small vector helpers.

One C++ test program is compiled per session and fed many values from Python."""

from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest

from nn2aie.numerics import AIE_ROUNDING_MODES, saturate, shift_round, srs
from nn2aie.sim.native import INCLUDE_DIR

ROUNDING_CODES = {"floor": 0, "ceil": 1, "symmetric_floor": 2, "symmetric_ceil": 3, "negative_inf": 8,
                  "positive_inf": 9, "symmetric_zero": 10, "symmetric_inf": 11, "conv_even": 12, "conv_odd": 13}
SATURATION_CODES = {"none": 0, "saturate": 1, "symmetric": 3}
TYPES = {"i8": (8, True), "u8": (8, False), "i16": (16, True), "u16": (16, False), "i32": (32, True),
         "u32": (32, False)}

PROGRAM = r"""
#include <adf.h>
#include <aie_api/aie.hpp>
#include <aie_api/aie_adf.hpp>

#include <cstdio>
#include <cstring>
#include <vector>

using ll = long long;

template <typename Tag, typename T>
void srs_case(int shift, const std::vector<ll>& in) {
  for (std::size_t base = 0; base < in.size(); base += 8) {
    aie::accum<Tag, 8> a;
    for (unsigned i = 0; i < 8; ++i) a.emu_set_lane(i, base + i < in.size() ? in[base + i] : 0);
    const aie::vector<T, 8> v = a.template to_vector<T>(shift);
    for (unsigned i = 0; i < 8 && base + i < in.size(); ++i) std::printf("%lld ", static_cast<ll>(v[i]));
  }
  std::printf("\n");
}

template <typename Tag>
void srs_dispatch(const char* type, int shift, const std::vector<ll>& in) {
  if (!std::strcmp(type, "i8")) srs_case<Tag, int8>(shift, in);
  else if (!std::strcmp(type, "u8")) srs_case<Tag, uint8>(shift, in);
  else if (!std::strcmp(type, "i16")) srs_case<Tag, int16>(shift, in);
  else if (!std::strcmp(type, "u16")) srs_case<Tag, uint16>(shift, in);
  else if (!std::strcmp(type, "i32")) srs_case<Tag, int32>(shift, in);
  else srs_case<Tag, uint32>(shift, in);
}

template <typename MM, typename TA, typename TB>
void mmul_case(int reps) {
  for (int r = 0; r < reps; ++r) {
    ll x;
    typename MM::accum_type c0;
    for (unsigned i = 0; i < MM::size_C; ++i) { std::scanf("%lld", &x); c0.emu_set_lane(i, x); }
    aie::vector<TA, MM::size_A> a;
    aie::vector<TB, MM::size_B> b;
    for (unsigned i = 0; i < MM::size_A; ++i) { std::scanf("%lld", &x); a[i] = static_cast<TA>(x); }
    for (unsigned i = 0; i < MM::size_B; ++i) { std::scanf("%lld", &x); b[i] = static_cast<TB>(x); }
    MM m(c0);
    m.mac(a, b);
    MM p;
    p.mul(a, b);
    p.mac(a, b);
    const auto ca = m.to_accum(), cp = p.to_accum();
    for (unsigned i = 0; i < MM::size_C; ++i) std::printf("%lld ", static_cast<ll>(ca.emu_lane(i)));
    for (unsigned i = 0; i < MM::size_C; ++i) std::printf("%lld ", static_cast<ll>(cp.emu_lane(i)));
    std::printf("\n");
  }
}

#define CHECK(c) do { if (!(c)) { std::printf("FAIL line %d: %s\n", __LINE__, #c); return; } } while (0)

template <typename Tag, unsigned N>
void cascade_round_trip(bool& ok) {
  ok = false;
  constexpr unsigned lanes = aie_emu::cascade_word_lanes<Tag>;
  aie::accum<Tag, N> a;
  for (unsigned i = 0; i < N; ++i) a.emu_set_lane(i, ll(i) * 1000 - 7);
  adf::output_cascade<Tag> out;
  writeincr(&out, a);
  if (out.emu_pending() != N / lanes) return;
  adf::input_cascade<Tag> in;
  while (out.emu_pending()) in.emu_push_word(out.emu_pop_word());
  aie::accum<Tag, N> b;
  for (unsigned w = 0; w < N / lanes; ++w) b.insert(w, readincr_v<lanes>(&in));
  for (unsigned i = 0; i < N; ++i) if (b.emu_lane(i) != a.emu_lane(i)) return;
  if (in.emu_pending() != 0) return;
  ok = true;
}

void cascade() {
  bool ok = false;
  cascade_round_trip<acc32, 32>(ok); CHECK(ok);
  cascade_round_trip<acc64, 32>(ok); CHECK(ok);
  cascade_round_trip<acc64, 16>(ok); CHECK(ok);
  // a read of two words at once returns the lanes of both, in order
  adf::input_cascade<acc32> in;
  for (unsigned w = 0; w < 2; ++w) {
    adf::input_cascade<acc32>::word word;
    for (unsigned i = 0; i < 16; ++i) word[i] = 100 * w + i;
    in.emu_push_word(word);
  }
  const aie::accum<acc32, 32> two = readincr_v<32>(&in);
  CHECK(two.emu_lane(0) == 0 && two.emu_lane(17) == 101 && in.emu_pending() == 0);
  std::printf("cascade ok\n");
}

void misc() {
  aie_emu::reset_tile_modes();
  CHECK(aie::get_rounding() == aie::rounding_mode::floor && aie::get_saturation() == aie::saturation_mode::none);
  aie::set_rounding(aie::rounding_mode::conv_odd);
  aie::set_saturation(aie::saturation_mode::symmetric);
  CHECK(aie::get_rounding() == aie::rounding_mode::conv_odd);
  CHECK(aie::get_saturation() == aie::saturation_mode::symmetric);
  CHECK(aie::saturation_mode::truncate == aie::saturation_mode::saturate);
  aie_emu::reset_tile_modes();

  alignas(32) int8 buf[64];
  for (int i = 0; i < 64; ++i) buf[i] = static_cast<int8>(i - 32);
  aie::vector<int8, 32> v = aie::load_v<32>(buf);
  CHECK(v[0] == -32 && v[31] == -1);
  const auto mx = aie::max(v, (int8)-3), mn = aie::min((int8)4, v);
  CHECK(mx[0] == -3 && mx[31] == -1 && mn[0] == -32);
  aie::vector<int8, 32> w = aie::load_v<32>(buf + 32);
  CHECK(aie::max(v, w)[5] == w[5] && aie::min(v, w)[5] == v[5]);
  const auto z = aie::zeros<int8, 32>();
  CHECK(z[7] == 0);
  const auto za = aie::zeros<acc64, 16>();
  CHECK(za.emu_lane(15) == 0);
  aie::vector<int8, 32> ins = z;
  ins.insert(1, v.extract<16>(0));
  CHECK(ins[15] == 0 && ins[16] == -32 && ins[31] == -17);
  alignas(32) int8 dst[32] = {};
  aie::store_v(dst, ins);
  CHECK(dst[16] == -32);
  aie::vector<uint8, 16> u = aie::broadcast<uint8, 16>(200);
  aie::accum<acc32, 16> ua;
  ua.from_vector(u, 3);
  CHECK(ua.emu_lane(4) == 1600);  // unsigned elements zero-extend
  aie::accum<acc64, 16> sa(aie::broadcast<int16, 16>(-5), 2);
  CHECK(sa.emu_lane(0) == -20);
  using MM = aie::mmul<4, 8, 8, int8, int8, acc32>;
  CHECK(MM::size_A == 32 && MM::size_B == 64 && MM::size_C == 32 && MM::size() == 32);
  using MD = aie::mmul<4, 4, 4, int16, int16>;  // default accumulator: 32-bit lanes for 16-bit operands
  CHECK(MD::accum_type::accum_bits() == 32);
  std::printf("misc ok\n");
}

void error_case(const char* kind) {
  try {
    if (!std::strcmp(kind, "align")) {
      alignas(32) int8 buf[64] = {};
      (void)aie::load_v<32>(buf + 16);
    } else if (!std::strcmp(kind, "store_align")) {
      alignas(32) int16 buf[64] = {};
      aie::store_v(buf + 4, aie::zeros<int16, 16>());
    } else if (!std::strcmp(kind, "overflow")) {
      aie::mmul<4, 8, 8, int8, int8, acc32> m(aie::broadcast<int32, 32>(2147483000));
      m.mac(aie::broadcast<int8, 32>(127), aie::broadcast<int8, 64>(127));
    } else if (!std::strcmp(kind, "cascade_empty")) {
      adf::input_cascade<acc64> in;
      (void)readincr_v<8>(&in);
    } else if (!std::strcmp(kind, "shift")) {
      (void)aie::zeros<acc64, 8>().to_vector<int16>(60);
    } else if (!std::strcmp(kind, "index")) {
      aie::vector<int16, 16> v;
      v.insert(2, aie::zeros<int16, 8>());
    }
    std::printf("no error\n");
  } catch (const aie_emu::error& e) {
    std::printf("error: %s\n", e.what());
  }
}

int main() {
  char cmd[32];
  while (std::scanf("%31s", cmd) == 1) {
    if (!std::strcmp(cmd, "srs")) {
      int acc, rnd, sat, shift;
      unsigned n;
      char type[8];
      std::scanf("%d %7s %d %d %d %u", &acc, type, &rnd, &sat, &shift, &n);
      std::vector<ll> in(n);
      for (auto& x : in) std::scanf("%lld", &x);
      aie_emu::reset_tile_modes();
      if (rnd >= 0) aie::set_rounding(static_cast<aie::rounding_mode>(rnd));
      if (sat >= 0) aie::set_saturation(static_cast<aie::saturation_mode>(sat));
      if (acc == 32) srs_dispatch<acc32>(type, shift, in);
      else srs_dispatch<acc64>(type, shift, in);
    } else if (!std::strcmp(cmd, "mmul")) {
      int shape, reps;
      std::scanf("%d %d", &shape, &reps);
      if (shape == 0) mmul_case<aie::mmul<4, 8, 8, int8, int8, acc32>, int8, int8>(reps);
      else if (shape == 1) mmul_case<aie::mmul<4, 8, 8, uint8, int8, acc32>, uint8, int8>(reps);
      else if (shape == 2) mmul_case<aie::mmul<4, 4, 8, int16, int8, acc64>, int16, int8>(reps);
      else if (shape == 3) mmul_case<aie::mmul<4, 4, 4, int16, int16, acc64>, int16, int16>(reps);
      else mmul_case<aie::mmul<3, 5, 2, uint16, int8, acc64>, uint16, int8>(reps);
    } else if (!std::strcmp(cmd, "cascade")) {
      cascade();
    } else if (!std::strcmp(cmd, "misc")) {
      misc();
    } else if (!std::strcmp(cmd, "error")) {
      char kind[32];
      std::scanf("%31s", kind);
      error_case(kind);
    }
    std::fflush(stdout);
  }
  return 0;
}
"""

MMUL_SHAPES = {0: ((4, 8, 8), "int8", "int8"), 1: ((4, 8, 8), "uint8", "int8"), 2: ((4, 4, 8), "int16", "int8"),
               3: ((4, 4, 4), "int16", "int16"), 4: ((3, 5, 2), "uint16", "int8")}


@pytest.fixture(scope="module")
def program(cxx, tmp_path_factory):
    d = tmp_path_factory.mktemp("aie-api-header")
    src, exe = d / "header_test.cc", d / "header_test"
    src.write_text(PROGRAM)
    flags = ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DAIE_EMU_CHECK_ACC_RANGE=1",
             "-DAIE_EMU_CHECK_ALIGNMENT=1"]
    proc = subprocess.run([cxx, *flags, "-I", str(INCLUDE_DIR), str(src), "-o", str(exe)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr

    def run(text: str) -> list[str]:
        out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    return run


def _values(shift: int, bits: int, signed: bool, acc_bits: int, rng: np.random.Generator) -> np.ndarray:
    """Exact ties (both signs), values around every overflow boundary, zero, and random values."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    one = 1 << max(shift, 0)
    half = one >> 1
    vals = [0, 1, -1, half, -half, one, -one]
    for k in range(-6, 7):
        vals += [k * one + half, k * one + half - 1, k * one + half + 1, k * one - half]
    for edge in (hi, hi + 1, lo, lo - 1, -hi, -hi - 1, 2 * hi, -2 * hi, hi + 2, (1 << bits) + 3, -(1 << bits) - 3):
        base = edge * one
        vals += [base - 1, base, base + 1, base + half, base - half, base + half - 1, base - half + 1]
    amax = (1 << (acc_bits - 1)) - 1
    vals += list(rng.integers(-amax, amax, size=24, dtype=np.int64, endpoint=True))
    span = min(4 * (hi + 1) * one, amax)
    vals += list(rng.integers(-span, span, size=24, dtype=np.int64))
    v = np.unique(np.array([int(t) for t in vals if -amax - 1 <= int(t) <= amax], dtype=np.int64))
    return v


def _expected(x: np.ndarray, acc_bits: int, bits: int, signed: bool, shift: int, rounding: str,
              saturation: str) -> np.ndarray:
    if acc_bits == 32 and bits == 32:  # reinterpretation: the shift is ignored
        return saturate(x, 32, signed, "none")
    if acc_bits == 64 and bits == 8:  # SRS to 16 bits, then pack (saturation only)
        return saturate(srs(x, shift, 16, signed, rounding, saturation), 8, signed, saturation)
    return srs(x, shift, bits, signed, rounding, saturation)


def _srs_command(acc_bits: int, type_name: str, rounding: str | None, saturation: str | None, shift: int,
                 x: np.ndarray) -> str:
    rnd = ROUNDING_CODES[rounding] if rounding else -1
    sat = SATURATION_CODES[saturation] if saturation else -1
    return f"srs {acc_bits} {type_name} {rnd} {sat} {shift} {x.size} " + " ".join(str(int(v)) for v in x) + "\n"


# (accumulator bits, output type, shifts): what AIE-ML can convert (acc64 -> 8-bit: two steps)
CONVERSIONS = [(32, "i8", (0, 1, 3, 7, 12)), (32, "u8", (0, 2, 9)), (32, "i16", (1, 5, 15)), (32, "u16", (4,)),
               (64, "i8", (0, 1, 6, 17, 40)), (64, "u8", (3, 20)), (64, "i16", (0, 1, 9, 26, 47)),
               (64, "u16", (2, 18)), (64, "i32", (1, 16, 31, 59)), (64, "u32", (5,))]


@pytest.mark.parametrize("rounding", AIE_ROUNDING_MODES)
def test_to_vector_matches_numerics_in_every_mode(program, rounding):
    rng = np.random.default_rng(ROUNDING_CODES[rounding])
    cases, text = [], []
    for (acc_bits, type_name, shifts), saturation in itertools.product(CONVERSIONS, SATURATION_CODES):
        bits, signed = TYPES[type_name]
        for shift in shifts:
            x = _values(shift, bits, signed, acc_bits, rng)
            cases.append((acc_bits, type_name, saturation, shift, x))
            text.append(_srs_command(acc_bits, type_name, rounding, saturation, shift, x))
    lines = program("".join(text))
    assert len(lines) == len(cases)
    for (acc_bits, type_name, saturation, shift, x), line in zip(cases, lines, strict=True):
        bits, signed = TYPES[type_name]
        got = np.array([int(t) for t in line.split()], dtype=np.int64)
        want = _expected(x, acc_bits, bits, signed, shift, rounding, saturation)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (f"acc{acc_bits} -> {type_name}, shift {shift}, {rounding}/{saturation}: "
                               f"x={x[bad[:5]]} got {got[bad[:5]]} want {want[bad[:5]]}")


def test_exact_ties_round_per_mode(program):
    """Spot values: +-2.5 and +-3.5 (shift 1) in every mode, as the definitions say."""
    x = np.array([5, -5, 7, -7], dtype=np.int64)
    table = {"floor": [2, -3, 3, -4], "ceil": [3, -2, 4, -3], "symmetric_floor": [2, -2, 3, -3],
             "symmetric_ceil": [3, -3, 4, -4], "negative_inf": [2, -3, 3, -4], "positive_inf": [3, -2, 4, -3],
             "symmetric_zero": [2, -2, 3, -3], "symmetric_inf": [3, -3, 4, -4], "conv_even": [2, -2, 4, -4],
             "conv_odd": [3, -3, 3, -3]}
    lines = program("".join(_srs_command(32, "i16", m, "saturate", 1, x) for m in table))
    for (mode, want), line in zip(table.items(), lines, strict=True):
        assert [int(t) for t in line.split()] == want, mode
        assert list(shift_round(x, 1, mode)) == want, mode


def test_reset_state_is_floor_and_wrap(program):
    x = np.array([3, -3, 1000, -1000, 255, 256], dtype=np.int64)
    (line,) = program(_srs_command(32, "i8", None, None, 1, x))
    assert [int(t) for t in line.split()] == list(srs(x, 1, 8, True, "floor", "none"))


def test_acc64_to_int8_is_two_steps_and_equals_one_saturation(program):
    """acc64 -> int8 is SRS to int16 then pack; since the saturations nest (and wraps compose), the result equals
    a single SRS to 8 bits in every mode — the emulator's model — including values that overflow 16 bits."""
    x = np.array([40000 * 8 + 4, -40000 * 8 - 4, 300 * 8 + 4, -300 * 8 - 4, 127 * 8 + 4, -128 * 8 - 4,
                  (1 << 40) + 12345, -(1 << 41) - 999], dtype=np.int64)
    for rounding, saturation in itertools.product(AIE_ROUNDING_MODES, SATURATION_CODES):
        for type_name, signed in (("i8", True), ("u8", False)):
            (line,) = program(_srs_command(64, type_name, rounding, saturation, 3, x))
            got = [int(t) for t in line.split()]
            assert got == list(_expected(x, 64, 8, signed, 3, rounding, saturation))
            assert got == list(srs(x, 3, 8, signed, rounding, saturation))


def test_acc32_to_int32_ignores_the_shift(program):
    x = np.array([7, -7, 1 << 30, -(1 << 31), (1 << 31) - 1], dtype=np.int64)
    lines = program(_srs_command(32, "i32", "conv_even", "saturate", 5, x)
                    + _srs_command(32, "u32", "floor", "none", 9, x))
    assert [int(t) for t in lines[0].split()] == list(x)
    assert [int(t) for t in lines[1].split()] == list(x & 0xFFFFFFFF)


@pytest.mark.parametrize("shape", sorted(MMUL_SHAPES))
def test_mmul_matches_numpy(program, shape):
    (m, k, n), ta, tb = MMUL_SHAPES[shape]
    rng = np.random.default_rng(shape)
    reps, text, cases = 20, [f"mmul {shape} 20\n"], []
    for r in range(reps):
        ia, ib = np.iinfo(ta), np.iinfo(tb)
        a = rng.integers(ia.min, ia.max, size=(m, k), endpoint=True)
        b = rng.integers(ib.min, ib.max, size=(k, n), endpoint=True)
        if r == 0:  # extremes
            a[:] = ia.min if ia.min < 0 else ia.max
            b[:] = ib.min
        c0 = rng.integers(-(1 << 20), 1 << 20, size=(m, n))
        cases.append((a, b, c0))
        text.append(" ".join(str(int(v)) for v in np.concatenate([c0.ravel(), a.ravel(), b.ravel()])) + "\n")
    lines = program("".join(text))
    for (a, b, c0), line in zip(cases, lines, strict=True):
        got = np.array([int(t) for t in line.split()], dtype=np.int64)
        prod = (a.astype(object) @ b.astype(object)).astype(np.int64)
        assert np.array_equal(got[: m * n], (c0 + prod).ravel())
        assert np.array_equal(got[m * n:], (2 * prod).ravel())


def test_cascade_words_and_helpers(program):
    assert program("cascade\nmisc\n") == ["cascade ok", "misc ok"]


@pytest.mark.parametrize("kind, message", [
    ("align", "vector load of 32 bytes at an address not aligned to 32 bytes"),
    ("store_align", "vector store of 32 bytes at an address not aligned to 32 bytes"),
    ("overflow", "acc32 lane value"),
    ("cascade_empty", "cascade read with no word available"),
    ("shift", "SRS shift 60 outside"),
    ("index", "vector::insert index out of range"),
])
def test_emulation_errors(program, kind, message):
    (line,) = program(f"error {kind}\n")
    assert line.startswith("error: ") and message in line, line
