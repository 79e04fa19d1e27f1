"""The AIE-API emulation pieces the requantisation epilogues use (aie::mask, lt / ge, select, vector add / sub,
element-wise mul / mac into acc32 / acc64, aie::from_vector, acc64 -> 8/16-bit SRS after a mac) against values
computed here with numpy / Python ints from the documented definitions; and the operand combinations AIE-ML has
no element-wise multiply for, refused at compile time.

One C++ test program is compiled per module and fed many values from Python."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from nn2aie.numerics import AIE_ROUNDING_MODES, srs
from nn2aie.sim.native import INCLUDE_DIR

TYPES = {"i8": np.int8, "u8": np.uint8, "i16": np.int16, "u16": np.uint16, "i32": np.int32, "u32": np.uint32}
CXX_TYPES = {"i8": "int8", "u8": "uint8", "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32"}
N = 32

PROGRAM = r"""
#include <aie_api/aie.hpp>

#include <cstdio>
#include <cstring>
#include <vector>

using ll = long long;
constexpr unsigned N = 32;

template <typename T>
aie::vector<T, N> read_vector() {
  aie::vector<T, N> v;
  for (unsigned i = 0; i < N; ++i) { ll x; std::scanf("%lld", &x); v[i] = static_cast<T>(x); }
  return v;
}

template <typename T>
void print_vector(const aie::vector<T, N>& v) {
  for (unsigned i = 0; i < N; ++i) std::printf("%lld ", static_cast<ll>(v[i]));
}

template <unsigned E>
void print_mask(const aie::mask<E>& m) {
  for (unsigned i = 0; i < E; ++i) std::printf("%d", m.test(i) ? 1 : 0);
  std::printf(" ");
}

// lt / ge vector-vector and with a scalar on either side; select both ways; add / sub; one line per case
template <typename T>
void vector_ops(ll scalar) {
  const auto a = read_vector<T>(), b = read_vector<T>();
  const T s = static_cast<T>(scalar);
  print_mask(aie::lt(a, b)); print_mask(aie::ge(a, b));
  print_mask(aie::lt(a, s)); print_mask(aie::ge(a, s)); print_mask(aie::lt(s, a)); print_mask(aie::ge(s, a));
  const auto m = aie::lt(a, b);
  print_vector(aie::select(a, b, m)); print_vector(aie::select(s, b, m)); print_vector(aie::select(a, s, m));
  print_vector(aie::add(a, b)); print_vector(aie::sub(a, b));
  print_vector(aie::add(a, s)); print_vector(aie::sub(a, s));
  print_vector(aie::add(s, a)); print_vector(aie::sub(s, a));
  std::printf("\n");
}

// mul<Tag>(a, b), mac(c, a, b) and from_vector<Tag>(c_as_vector, shift): lanes
template <typename Tag, typename T1, typename T2, typename TC>
void mul_ops(int shift) {
  const auto a = read_vector<T1>();
  const auto b = read_vector<T2>();
  const auto c = read_vector<TC>();
  const aie::accum<Tag, N> c0 = aie::from_vector<Tag>(c, shift);
  const auto p = aie::mul<Tag>(a, b);
  const auto q = aie::mac(c0, a, b);
  for (unsigned i = 0; i < N; ++i) std::printf("%lld ", static_cast<ll>(c0.emu_lane(i)));
  for (unsigned i = 0; i < N; ++i) std::printf("%lld ", static_cast<ll>(p.emu_lane(i)));
  for (unsigned i = 0; i < N; ++i) std::printf("%lld ", static_cast<ll>(q.emu_lane(i)));
  std::printf("\n");
}

// the multiplier epilogue's arithmetic by hand: UPS of b, mac of int32 x int32, SRS to O
template <typename O>
void mac_srs(int offset_shift, int shift) {
  const auto x = read_vector<int32>(), m = read_vector<int32>(), b = read_vector<int32>();
  aie::accum<acc64, N> y;
  y.from_vector(b, offset_shift);
  y = aie::mac(y, x, m);
  print_vector(y.template to_vector<O>(shift));
  std::printf("\n");
}

void masks() {
  unsigned w0, w1;
  std::scanf("%u %u", &w0, &w1);
  const auto m = aie::mask<64>::from_uint32(w0, w1);
  const auto n = aie::mask<64>::from_uint32(w1, w0);
  print_mask(m); print_mask(m & n); print_mask(m | n); print_mask(~m);
  std::printf("%u %u %u %u %d %d ", m.count(), (m & n).count(), m.to_uint32(0), m.to_uint32(1), m == m, m == n);
  aie::mask<64> e;
  e.set(3); e.set(40); e.clear(3); e |= m; e &= n;
  print_mask(e);
  const auto small = aie::mask<16>::from_uint32(w0 & 0xFFFFu);
  std::printf("%u %u %u %u\n", small.to_uint32(), aie::mask<16>(true).count(), aie::mask<16>().count(),
              aie::mask<40>(true).to_uint32(1));
}

void error_case(const char* kind) {
  try {
    if (!std::strcmp(kind, "mac64")) {
      aie::accum<acc64, N> y;
      y.from_vector(aie::broadcast<int32, N>(1 << 30), 32);  // 2^62
      const auto most_negative = aie::broadcast<int32, N>(-2147483647 - 1);
      y = aie::mac(y, most_negative, most_negative);  // + 2^62: the sum 2^63 leaves the lane
    } else if (!std::strcmp(kind, "mac32")) {
      aie::accum<acc32, N> y;
      y.from_vector(aie::broadcast<int16, N>(30000), 16);
      y = aie::mac(y, aie::broadcast<int16, N>(30000), aie::broadcast<int16, N>(30000));
    } else if (!std::strcmp(kind, "ups32")) {
      aie::accum<acc32, N> y;
      y.from_vector(aie::broadcast<int32, N>(1), 2);
    } else if (!std::strcmp(kind, "mask_index")) {
      aie::mask<16> m;
      (void)m.test(16);
    }
    std::printf("no error\n");
  } catch (const aie_emu::error& e) {
    std::printf("error: %s\n", e.what());
  }
}

int main() {
  char cmd[32];
  while (std::scanf("%31s", cmd) == 1) {
    if (!std::strcmp(cmd, "vec")) {
      char t[8];
      ll s;
      std::scanf("%7s %lld", t, &s);
      if (!std::strcmp(t, "i8")) vector_ops<int8>(s);
      else if (!std::strcmp(t, "u8")) vector_ops<uint8>(s);
      else if (!std::strcmp(t, "i16")) vector_ops<int16>(s);
      else if (!std::strcmp(t, "u16")) vector_ops<uint16>(s);
      else if (!std::strcmp(t, "i32")) vector_ops<int32>(s);
      else vector_ops<uint32>(s);
    } else if (!std::strcmp(cmd, "mul")) {
      int combo, shift;
      std::scanf("%d %d", &combo, &shift);
      switch (combo) {
        case 0: mul_ops<acc64, int32, int32, int32>(shift); break;
        case 1: mul_ops<acc64, int32, int16, int32>(shift); break;
        case 2: mul_ops<acc64, uint16, int32, int16>(shift); break;
        case 3: mul_ops<acc32, int8, int8, int16>(shift); break;
        case 4: mul_ops<acc32, uint8, int16, int8>(shift); break;
        case 5: mul_ops<acc32, int16, int16, int32>(shift); break;
        case 6: mul_ops<acc64, int16, int8, int32>(shift); break;
        default: mul_ops<acc32, int32, int16, int16>(shift); break;
      }
    } else if (!std::strcmp(cmd, "macsrs")) {
      char t[8];
      int rnd, offset_shift, shift;
      std::scanf("%7s %d %d %d", t, &rnd, &offset_shift, &shift);
      aie::set_rounding(static_cast<aie::rounding_mode>(rnd));
      aie::set_saturation(aie::saturation_mode::saturate);
      if (!std::strcmp(t, "i8")) mac_srs<int8>(offset_shift, shift);
      else if (!std::strcmp(t, "u8")) mac_srs<uint8>(offset_shift, shift);
      else if (!std::strcmp(t, "i16")) mac_srs<int16>(offset_shift, shift);
      else mac_srs<uint16>(offset_shift, shift);
    } else if (!std::strcmp(cmd, "masks")) {
      masks();
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

FLAGS = ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DAIE_EMU_CHECK_ACC_RANGE=1",
         "-DAIE_EMU_CHECK_ALIGNMENT=1"]
ROUNDING_CODES = {"floor": 0, "ceil": 1, "symmetric_floor": 2, "symmetric_ceil": 3, "negative_inf": 8,
                  "positive_inf": 9, "symmetric_zero": 10, "symmetric_inf": 11, "conv_even": 12, "conv_odd": 13}
# combo -> (accumulator bits, operand a, operand b, accumulator start vector type), as in PROGRAM
MUL_COMBOS = {0: (64, "i32", "i32", "i32"), 1: (64, "i32", "i16", "i32"), 2: (64, "u16", "i32", "i16"),
              3: (32, "i8", "i8", "i16"), 4: (32, "u8", "i16", "i8"), 5: (32, "i16", "i16", "i32"),
              6: (64, "i16", "i8", "i32"), 7: (32, "i32", "i16", "i16")}


@pytest.fixture(scope="module")
def program(cxx, tmp_path_factory):
    d = tmp_path_factory.mktemp("aie-api-requant-ops")
    src, exe = d / "ops_test.cc", d / "ops_test"
    src.write_text(PROGRAM)
    proc = subprocess.run([cxx, *FLAGS, "-I", str(INCLUDE_DIR), str(src), "-o", str(exe)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr

    def run(text: str) -> list[str]:
        out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    return run


def _vals(x: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in x)


def _draw(rng: np.random.Generator, t: str, size: int = N) -> np.ndarray:
    info = np.iinfo(TYPES[t])
    edges = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1], dtype=np.int64)
    x = rng.integers(info.min, info.max, size=size, endpoint=True, dtype=np.int64)
    x[:min(size, 6)] = edges[:size]
    return x


def _wrap(x: np.ndarray, t: str) -> np.ndarray:
    """Python ints reduced modulo 2^bits into the type's range (two's complement), independently of numpy casts."""
    info = np.iinfo(TYPES[t])
    span = 1 << info.bits
    return np.array([((int(v) - info.min) % span) + info.min for v in x], dtype=np.int64)


def _bits(m: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in m)


@pytest.mark.parametrize("t", sorted(TYPES))
def test_compare_select_add_sub(program, t):
    rng = np.random.default_rng(sorted(TYPES).index(t))
    cases, text = [], []
    for r in range(40):
        a, b = _draw(rng, t), _draw(rng, t)
        if r % 4 == 0:  # many equal elements: lt and ge must split them
            b[::2] = a[::2]
        s = int(a[r % N]) if r % 3 else int(_draw(rng, t, 1)[0])
        cases.append((a, b, s))
        text.append(f"vec {t} {s} {_vals(a)} {_vals(b)}\n")
    lines = program("".join(text))
    assert len(lines) == len(cases)
    for (a, b, s), line in zip(cases, lines, strict=True):
        parts = line.split()
        masks, rest = parts[:6], np.array([int(v) for v in parts[6:]], dtype=np.int64).reshape(-1, N)
        assert masks == [_bits(a < b), _bits(a >= b), _bits(a < s), _bits(a >= s), _bits(s < a), _bits(s >= a)]
        lt = a < b  # select takes the second operand where the bit is set
        want = [np.where(lt, b, a), np.where(lt, b, s), np.where(lt, s, a),
                _wrap(a + b, t), _wrap(a - b, t), _wrap(a + s, t), _wrap(a - s, t), _wrap(s + a, t), _wrap(s - a, t)]
        for k, (got, w) in enumerate(zip(rest, want, strict=True)):
            assert np.array_equal(got, w), (t, k, a, b, s)


@pytest.mark.parametrize("combo", sorted(MUL_COMBOS))
def test_mul_mac_from_vector_are_exact(program, combo):
    acc_bits, ta, tb, tc = MUL_COMBOS[combo]
    rng = np.random.default_rng(100 + combo)
    cases, text = [], []
    for _ in range(25):
        a, b, c = _draw(rng, ta), _draw(rng, tb), _draw(rng, tc)
        # the start value shifted up: acc32 lanes must stay inside int32, acc64 lanes leave room for the product
        shift = 0 if tc in ("i32", "u32") and acc_bits == 32 else int(rng.integers(0, 3 if acc_bits == 32 else 28))
        if acc_bits == 32:
            if ta == "i32":  # 32b x 16b into acc32: products must stay inside the 32-bit lanes
                a = a >> 17
            prod_max = max(abs(int(v)) for v in a) * max(abs(int(v)) for v in b)
            limit = (1 << 31) - 1 - prod_max
            c = np.clip(c, -(limit >> shift), limit >> shift)
        cases.append((a, b, c, shift))
        text.append(f"mul {combo} {shift} {_vals(a)} {_vals(b)} {_vals(c)}\n")
    lines = program("".join(text))
    for (a, b, c, shift), line in zip(cases, lines, strict=True):
        got = [int(v) for v in line.split()]
        c0 = [int(v) << shift for v in c]
        prod = [int(x) * int(y) for x, y in zip(a, b, strict=True)]
        assert got[:N] == c0
        assert got[N:2 * N] == prod
        assert got[2 * N:] == [u + p for u, p in zip(c0, prod, strict=True)]


@pytest.mark.parametrize("rounding", AIE_ROUNDING_MODES)
def test_multiplier_arithmetic_ups_mac_srs(program, rounding):
    """UPS(b, t) + x * m in acc64, then SRS by s into 8/16-bit codes, against the exact value rounded by
    nn2aie.numerics.srs (itself tested against the definitions in test_aie_api_header.py)."""
    rng = np.random.default_rng(ROUNDING_CODES[rounding])
    cases, text = [], []
    for t in ("i8", "u8", "i16", "u16"):
        for _ in range(6):
            x = rng.integers(-(1 << 31), 1 << 31, size=N, dtype=np.int64)
            m = rng.integers(1, 1 << 31, size=N, dtype=np.int64)
            b = rng.integers(-(1 << 30), 1 << 30, size=N, dtype=np.int64)
            offset_shift = int(rng.integers(0, 31))
            shift = int(rng.integers(40, 60))
            x[:4] = [0, 1, -1, 7]  # small values: exact ties and in-range codes at small shifts
            cases.append((t, x, m, b, offset_shift, shift))
            text.append(f"macsrs {t} {ROUNDING_CODES[rounding]} {offset_shift} {shift} {_vals(x)} {_vals(m)} "
                        f"{_vals(b)}\n")
    lines = program("".join(text))
    for (t, x, m, b, offset_shift, shift), line in zip(cases, lines, strict=True):
        exact = np.array([int(u) * int(v) + (int(w) << offset_shift) for u, v, w in zip(x, m, b, strict=True)],
                         dtype=object)
        info = np.iinfo(TYPES[t])
        want = srs(exact, shift, info.bits, info.min < 0, rounding, "saturate")
        assert [int(v) for v in line.split()] == [int(v) for v in want], (t, offset_shift, shift)


def test_masks(program):
    rng = np.random.default_rng(7)
    words = [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x80000001, 0x00010000)]
    words += [tuple(int(v) for v in rng.integers(0, 1 << 32, size=2)) for _ in range(10)]
    lines = program("".join(f"masks\n{w0} {w1}\n" for w0, w1 in words))
    for (w0, w1), line in zip(words, lines, strict=True):
        m = np.array([(w0 >> i) & 1 for i in range(32)] + [(w1 >> i) & 1 for i in range(32)], dtype=bool)
        n = np.array([(w1 >> i) & 1 for i in range(32)] + [(w0 >> i) & 1 for i in range(32)], dtype=bool)
        e = np.zeros(64, dtype=bool)
        e[40] = True
        e = (e | m) & n
        want = [_bits(m), _bits(m & n), _bits(m | n), _bits(~m), str(int(m.sum())), str(int((m & n).sum())),
                str(w0), str(w1), "1", str(int(bool(np.array_equal(m, n)))), _bits(e),
                str(w0 & 0xFFFF), "16", "0", str(0xFF)]
        assert line.split() == want


@pytest.mark.parametrize("kind, message", [
    ("mac64", "multiply-accumulate lane overflows 64 bits"),
    ("mac32", "acc32 lane value"),
    ("ups32", "from_vector of 32-bit elements into acc32 lanes takes shift 0"),
    ("mask_index", "mask element index out of range"),
])
def test_emulation_errors(program, kind, message):
    (line,) = program(f"error {kind}\n")
    assert line.startswith("error: ") and message in line, line


REFUSED = {  # element-wise multiplies AIE-ML does not implement (UG1529 "Arithmetic", AIE-API aie2)
    "int32 x int32 into acc32": "aie::mul<acc32>(aie::zeros<int32, 16>(), aie::zeros<int32, 16>())",
    "int8 x int32 into acc64": "aie::mul<acc64>(aie::zeros<int8, 16>(), aie::zeros<int32, 16>())",
    "int8 x int8 into acc64": "aie::mul<acc64>(aie::zeros<uint8, 16>(), aie::zeros<int8, 16>())",
    "mac int32 x int32 on acc32": "aie::mac(aie::zeros<acc32, 16>(), aie::zeros<int32, 16>(), "
                                  "aie::zeros<int32, 16>())",
    "mac int32 x int8 on acc64": "aie::mac(aie::zeros<acc64, 16>(), aie::zeros<int32, 16>(), aie::zeros<int8, 16>())",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_multiplies_do_not_compile(cxx, tmp_path, name):
    src = tmp_path / "refused.cc"
    src.write_text("#include <aie_api/aie.hpp>\nint main() {\n  auto r = " + REFUSED[name]
                   + ";\n  return static_cast<int>(r.emu_lane(0));\n}\n")
    proc = subprocess.run([cxx, *FLAGS, "-fsyntax-only", "-I", str(INCLUDE_DIR), str(src)], capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert "AIE-ML has no element-wise multiply" in proc.stderr
