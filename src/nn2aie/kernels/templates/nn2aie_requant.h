// nn2aie requantisation epilogues: accumulator lanes -> output codes for any per-channel scale, exactly as
// nn2aie/kernels/requant.py chose and verified them (kind "multiplier" or "table"; kind "shift" is the plain
// SRS epilogue of each family). Plain C++17 on the AMD AIE API only, so the same text builds for the tile and
// against nn2aie's host emulation of the API.
//
// A block is N accumulator lanes; for an MMUL_M x MMUL_N mmul block the lanes are row-major, so a per-channel
// constant is the block's row of MMUL_N values repeated MMUL_M times (repeat_row).
//
// Preconditions set by the calling kernel: aie::set_rounding(<the Requant's rounding>) and
// aie::set_saturation(aie::saturation_mode::saturate); accumulator values inside int32 (requant.py verifies it).
#ifndef NN2AIE_REQUANT_H
#define NN2AIE_REQUANT_H

#include <aie_api/aie.hpp>
#include <type_traits>

#ifndef __chess__
// Scheduling hints of the AIE compiler; plain C++ compilers ignore them.
#ifndef chess_prepare_for_pipelining
#define chess_prepare_for_pipelining
#endif
#ifndef chess_unroll_loop
#define chess_unroll_loop(...)
#endif
#endif

namespace nn2aie_requant {

template <typename O>
inline constexpr bool is_code_type_v = std::is_integral_v<O> && (sizeof(O) == 1 || sizeof(O) == 2);

// ROWS copies of the COLS values at `row` (the per-channel constants of one column block), as one vector.
template <unsigned ROWS, unsigned COLS, typename T>
inline aie::vector<T, ROWS * COLS> repeat_row(const T* __restrict row) {
  const aie::vector<T, COLS> r = aie::load_v<COLS>(row);
  aie::vector<T, ROWS * COLS> out;
  for (unsigned i = 0; i < ROWS; ++i) chess_unroll_loop() {
    out.insert(i, r);
  }
  return out;
}

// The accumulator as int32 lanes: a reinterpretation for acc32, an SRS by 0 for acc64 (exact: the range is
// verified inside int32, so neither rounding nor saturation changes a value).
template <typename AccTag, unsigned N>
inline aie::vector<int32, N> as_int32(const aie::accum<AccTag, N>& acc) {
  return acc.template to_vector<int32>(0);
}

// clamp(srs(acc * m + (b << offset_shift), shift), lo, hi) per lane: m and b are int32 (M_n, B'_n), the product
// and the offset are exact in acc64 lanes (|acc * M + B| < 2^62 is verified), one SRS with the tile's rounding.
// The SRS saturates to O's range, which contains [lo, hi], so the clamp afterwards gives clamp(round(.)).
template <typename O, typename AccTag, unsigned N>
inline aie::vector<O, N> requant_multiplier(const aie::accum<AccTag, N>& acc, const aie::vector<int32, N>& m,
                                           const aie::vector<int32, N>& b, int offset_shift, int shift, O lo,
                                           O hi) {
  static_assert(is_code_type_v<O>, "output codes are 8- or 16-bit integers");
  aie::accum<acc64, N> y;
  y.from_vector(b, offset_shift);  // UPS: B'_n << offset_shift
  y = aie::mac(y, as_int32(acc), m);  // int32 x int32 -> acc64
  const aie::vector<O, N> v = y.template to_vector<O>(shift);
  return aie::min(aie::max(v, lo), hi);
}

// int32 codes (already inside O's range) -> O: through acc32 lanes and an SRS by 0, exact.
template <typename O, unsigned N>
inline aie::vector<O, N> narrow_codes(const aie::vector<int32, N>& code) {
  aie::accum<acc32, N> a;
  a.from_vector(code);
  return a.template to_vector<O>(0);
}

// base + #{j : acc >= levels[j]} per lane: one compare (ge), one select of 0 / 1 and one add per level. `levels`
// holds `count` rows of N lanes (thresholds per lane, padded with values no accumulator reaches).
template <typename O, typename AccTag, unsigned N>
inline aie::vector<O, N> requant_table(const aie::accum<AccTag, N>& acc, const aie::vector<int32, N>& base,
                                      const int32* __restrict levels, unsigned count) {
  static_assert(is_code_type_v<O>, "output codes are 8- or 16-bit integers");
  const aie::vector<int32, N> x = as_int32(acc);
  const aie::vector<int32, N> zero = aie::zeros<int32, N>();
  const aie::vector<int32, N> one = aie::broadcast<int32, N>(1);
  aie::vector<int32, N> code = base;
  for (unsigned j = 0; j < count; ++j) chess_prepare_for_pipelining {
    const aie::vector<int32, N> t = aie::load_v<N>(levels + j * N);
    code = aie::add(code, aie::select(zero, one, aie::ge(x, t)));
  }
  return narrow_codes<O>(code);
}

// requant_table with the thresholds stored per channel: `levels` holds `count` rows of COLS values, each row
// repeated on the ROWS rows of the block (ROWS times less data memory than per-lane rows).
template <typename O, unsigned ROWS, unsigned COLS, typename AccTag>
inline aie::vector<O, ROWS * COLS> requant_table_rows(const aie::accum<AccTag, ROWS * COLS>& acc,
                                                      const aie::vector<int32, ROWS * COLS>& base,
                                                      const int32* __restrict levels, unsigned count) {
  static_assert(is_code_type_v<O>, "output codes are 8- or 16-bit integers");
  constexpr unsigned N = ROWS * COLS;
  const aie::vector<int32, N> x = as_int32(acc);
  const aie::vector<int32, N> zero = aie::zeros<int32, N>();
  const aie::vector<int32, N> one = aie::broadcast<int32, N>(1);
  aie::vector<int32, N> code = base;
  for (unsigned j = 0; j < count; ++j) chess_prepare_for_pipelining {
    const aie::vector<int32, N> t = repeat_row<ROWS, COLS>(levels + j * COLS);
    code = aie::add(code, aie::select(zero, one, aie::ge(x, t)));
  }
  return narrow_codes<O>(code);
}

// Where the accumulator equals one of a channel's corrected values, add its delta to the code: per slot j,
// acc == a as (acc >= a) - (acc >= a + 1). `fix` holds `slots` pairs of rows of COLS values (accumulators, then
// deltas), each row repeated on the ROWS rows of the block; unused slots hold a value no accumulator reaches.
template <typename O, unsigned ROWS, unsigned COLS, typename AccTag>
inline aie::vector<O, ROWS * COLS> correct_rows(const aie::accum<AccTag, ROWS * COLS>& acc,
                                                const aie::vector<O, ROWS * COLS>& v, const int32* __restrict fix,
                                                unsigned slots) {
  static_assert(is_code_type_v<O>, "output codes are 8- or 16-bit integers");
  constexpr unsigned N = ROWS * COLS;
  const aie::vector<int32, N> x = as_int32(acc);
  const aie::vector<int32, N> zero = aie::zeros<int32, N>();
  const aie::vector<int32, N> one = aie::broadcast<int32, N>(1);
  aie::accum<acc32, N> wide;
  wide.from_vector(v, 0);
  aie::vector<int32, N> code = wide.template to_vector<int32>(0);  // acc32 -> int32: the lanes as they are
  for (unsigned j = 0; j < slots; ++j) chess_prepare_for_pipelining {
    const aie::vector<int32, N> a = repeat_row<ROWS, COLS>(fix + 2 * j * COLS);
    const aie::vector<int32, N> d = repeat_row<ROWS, COLS>(fix + (2 * j + 1) * COLS);
    code = aie::add(code, aie::select(zero, d, aie::ge(x, a)));
    code = aie::sub(code, aie::select(zero, d, aie::ge(x, aie::add(a, one))));
  }
  return narrow_codes<O>(code);
}
}  // namespace nn2aie_requant

#endif  // NN2AIE_REQUANT_H
