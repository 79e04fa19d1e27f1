// nn2aie native emulation of <aie_api/aie.hpp> (AMD AI Engine API, AIE-ML flavour): the subset nn2aie's
// generated kernels use. See detail/emu_base.hpp for scope and naming rules.
//
// Values, not registers: a vector holds its elements in a plain array, an accumulator holds each lane as an exact
// int64. Hardware acc32 lanes are 32 bits wide and wrap on overflow (AM020; the AIE-API does not define overflow
// behaviour); nn2aie's precision pass sizes every accumulator so no partial sum can exceed the lane width, so the
// exact value IS the hardware value for generated designs. Define AIE_EMU_CHECK_ACC_RANGE=1 to turn that
// guarantee into a run-time check (an acc32 lane outside int32 throws aie_emu::error).
//
// Define AIE_EMU_CHECK_ALIGNMENT=1 to check vector loads and stores against the alignment AIE-ML load/store
// units require (AM020: 256-bit load/store units, aligned accesses only; a smaller vector aligns to its size).
#ifndef NN2AIE_EMU_AIE_HPP
#define NN2AIE_EMU_AIE_HPP

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "detail/emu_base.hpp"

#ifndef AIE_EMU_CHECK_ACC_RANGE
#define AIE_EMU_CHECK_ACC_RANGE 0
#endif
#ifndef AIE_EMU_CHECK_ALIGNMENT
#define AIE_EMU_CHECK_ALIGNMENT 0
#endif

// Memory-resource annotation of AIE-API loads and stores (bank hints for the scheduler); no effect here.
enum class aie_dm_resource { none, a, b, c, d, stack };

namespace aie {

// -- rounding and saturation modes (per tile) --------------------------------------------------------------
// aie::rounding_mode / aie::saturation_mode with the AIE-ML control-register codes (UG1583 "Control registers":
// crRnd and crSat; UG1603 "Rounding and Saturation Modes"). Both are state of the tile, not of a value: every later
// shift-round-saturate uses the modes last set. After reset the tile rounds toward -inf (floor) and wraps (none).
enum class rounding_mode : unsigned {
  floor = 0,             // toward -infinity (truncate the shifted-out bits)
  ceil = 1,              // toward +infinity
  symmetric_floor = 2,   // toward zero
  symmetric_ceil = 3,    // away from zero
  negative_inf = 8,      // to nearest, ties toward -infinity
  positive_inf = 9,      // to nearest, ties toward +infinity
  symmetric_zero = 10,   // to nearest, ties toward zero
  symmetric_inf = 11,    // to nearest, ties away from zero
  conv_even = 12,        // to nearest, ties to the even neighbour
  conv_odd = 13,         // to nearest, ties to the odd neighbour
};

enum class saturation_mode : unsigned {
  none = 0,       // keep the low bits (two's-complement wrap)
  truncate = 1,   // old name of saturate
  saturate = 1,   // clamp to the type's range
  symmetric = 3,  // clamp to a range symmetric around zero (signed: +-(2^(n-1)-1))
};

namespace emu_detail {
struct tile_modes {
  rounding_mode rounding = rounding_mode::floor;
  saturation_mode saturation = saturation_mode::none;
};
// One tile at a time per host thread: the harness runs each kernel instance in its own process.
inline tile_modes& modes() {
  static thread_local tile_modes m;
  return m;
}
template <typename T>
struct identity {
  using type = T;
};
template <typename T>
using identity_t = typename identity<T>::type;
}  // namespace emu_detail

// aie::set_rounding / aie::get_rounding (UG1529; UG1603 "Rounding and Saturation Modes"): write / read the
// tile's rounding mode.
inline void set_rounding(rounding_mode m) { emu_detail::modes().rounding = m; }
inline rounding_mode get_rounding() { return emu_detail::modes().rounding; }

// aie::set_saturation / aie::get_saturation (UG1529): write / read the tile's saturation mode.
inline void set_saturation(saturation_mode m) { emu_detail::modes().saturation = m; }
inline saturation_mode get_saturation() { return emu_detail::modes().saturation; }

}  // namespace aie

namespace aie_emu {

// Back to the reset state of a tile (floor, none); emulation only.
inline void reset_tile_modes() { aie::emu_detail::modes() = aie::emu_detail::tile_modes{}; }

// Shift right by `shift` bits and round with `mode` (the "shift" and "round" of SRS; UG1583 "Shift-Round-
// Saturate" and "Rounding modes"). Writing x = q * 2^s + r with 0 <= r < 2^s (q = floor(x / 2^s)) and h = 2^(s-1):
// the directed modes pick q or q + 1 by the sign of x and whether r is zero; the to-nearest modes take q + 1 when
// r > h, q when r < h, and decide the tie r == h by their rule. shift == 0 returns x; a negative shift (AIE-ML
// accepts down to -4) multiplies by 2^-shift exactly.
inline bool valid_rounding(aie::rounding_mode mode) {
  const unsigned m = static_cast<unsigned>(mode);
  return m <= 3 || (m >= 8 && m <= 13);
}

inline std::int64_t shift_round(std::int64_t x, int shift, aie::rounding_mode mode) {
  using rm = aie::rounding_mode;
  if (!valid_rounding(mode)) fail("unknown rounding mode %u", static_cast<unsigned>(mode));
  if (shift < -4 || shift > 59) fail("SRS shift %d outside the AIE-ML range -4..59", shift);
  if (shift <= 0) {
    const std::int64_t f = std::int64_t(1) << (-shift);
    if (x > std::numeric_limits<std::int64_t>::max() / f || x < std::numeric_limits<std::int64_t>::min() / f)
      fail("SRS up-shift overflows 64 bits");
    return x * f;
  }
  const std::int64_t q = x >> shift;  // arithmetic shift: floor division (GCC/Clang, guaranteed from C++20)
  const std::uint64_t r = static_cast<std::uint64_t>(x) & ((std::uint64_t(1) << shift) - 1);
  const std::uint64_t h = std::uint64_t(1) << (shift - 1);
  const bool inexact = r != 0, negative = x < 0;
  switch (mode) {
    case rm::floor: return q;
    case rm::ceil: return q + inexact;
    case rm::symmetric_floor: return negative ? q + inexact : q;
    case rm::symmetric_ceil: return negative ? q : q + inexact;
    default: break;
  }
  if (r != h) return q + (r > h);
  bool up = false;  // the tie r == h
  switch (mode) {
    case rm::positive_inf: up = true; break;
    case rm::symmetric_zero: up = negative; break;
    case rm::symmetric_inf: up = !negative; break;
    case rm::conv_even: up = (q & 1) != 0; break;
    case rm::conv_odd: up = (q & 1) == 0; break;
    default: break;  // negative_inf
  }
  return q + up;
}

// Bring an integer into a `bits`-wide container with saturation `mode` (the "saturate" of SRS, and what pack does;
// UG1583 "Control registers" crSat: 0 = no saturation, truncate the MSBs; 1 = saturate; 3 = symmetric).
// Unsigned containers clamp to [0, 2^n - 1] in both saturating modes.
inline std::int64_t saturate(std::int64_t v, unsigned bits, bool is_signed, aie::saturation_mode mode) {
  const std::int64_t hi = is_signed ? (std::int64_t(1) << (bits - 1)) - 1 : (std::int64_t(1) << bits) - 1;
  const std::int64_t lo = is_signed ? -hi - 1 : 0;
  switch (static_cast<unsigned>(mode)) {
    case 0: {  // none: keep the low bits
      const std::uint64_t low = static_cast<std::uint64_t>(v) & ((std::uint64_t(1) << bits) - 1);
      const std::int64_t u = static_cast<std::int64_t>(low);
      return (is_signed && u > hi) ? u - (std::int64_t(1) << bits) : u;
    }
    case 1: return v < lo ? lo : (v > hi ? hi : v);
    case 3: {
      const std::int64_t slo = is_signed ? -hi : 0;
      return v < slo ? slo : (v > hi ? hi : v);
    }
    default: fail("unknown saturation mode %u", static_cast<unsigned>(mode));
  }
}

// One lane of SRS into element type T with the tile's current modes.
template <typename T>
T srs_lane(std::int64_t x, int shift) {
  static_assert(is_elem_v<T>, "SRS targets an integer element type");
  return static_cast<T>(saturate(shift_round(x, shift, aie::get_rounding()), 8 * sizeof(T), std::is_signed_v<T>,
                                 aie::get_saturation()));
}

// Narrow a 16-bit element to 8 bits like the AIE-ML pack instruction: saturation per the current mode, no
// rounding (UG1583 "Vector packing operations": "perform saturation based on the control register ...
// Rounding is not done").
template <typename T8, typename T16>
T8 pack_lane(T16 v) {
  static_assert(sizeof(T8) == 1 && sizeof(T16) == 2, "pack narrows 16-bit elements to 8 bits");
  return static_cast<T8>(saturate(v, 8, std::is_signed_v<T8>, aie::get_saturation()));
}

template <typename Tag>
inline void check_lane(std::int64_t v, const char* where) {
#if AIE_EMU_CHECK_ACC_RANGE
  if constexpr (acc_traits<Tag>::bits == 32) {
    if (v < std::numeric_limits<std::int32_t>::min() || v > std::numeric_limits<std::int32_t>::max())
      fail("acc32 lane value %lld exceeds 32 bits in %s (hardware lanes would wrap)", static_cast<long long>(v),
           where);
  }
#else
  (void)v;
  (void)where;
#endif
}

template <typename T>
inline void check_alignment(const T* ptr, unsigned elems, const char* what) {
#if AIE_EMU_CHECK_ALIGNMENT
  const std::size_t bytes = sizeof(T) * elems;
  if ((bytes & (bytes - 1)) == 0) {  // vector sizes are powers of two
    const std::size_t need = bytes < 32 ? bytes : 32;
    if (reinterpret_cast<std::uintptr_t>(ptr) % need != 0)
      fail("%s of %zu bytes at an address not aligned to %zu bytes", what, bytes, need);
  }
#else
  (void)ptr;
  (void)elems;
  (void)what;
#endif
}

}  // namespace aie_emu

namespace aie {

// -- aie::vector -----------------------------------------------------------------------------------------
// aie::vector<T, Elems> (UG1529 "Basic Types"): Elems elements of type T held in a vector register.
template <typename T, unsigned Elems>
class vector {
  static_assert(aie_emu::is_elem_v<T>, "the emulation supports 8/16/32-bit integer vectors");
  static_assert(Elems > 0, "empty vector");
#if AIE_EMU_CHECK_VECTOR_SIZES
  // UG1529 "Basic Types": AIE-ML vectors are 128 bits or more (e.g. int8 16/32/64/128 elements); generated kernels
  // are compiled with this check (sim/native/harness.py), the header's own generic tests without it
  static_assert(8 * sizeof(T) * Elems >= 128, "AIE-ML has no vector type narrower than 128 bits");
#endif

 public:
  using value_type = T;

  // Default construction: contents unspecified on hardware; zero here.
  vector() = default;

  static constexpr unsigned size() { return Elems; }
  static constexpr unsigned bits() { return 8 * sizeof(T) * Elems; }
  static constexpr bool is_signed() { return std::is_signed_v<T>; }

  // vector::get / vector::set / operator[] (UG1529): element access.
  T get(unsigned idx) const { return data_[checked(idx)]; }
  vector& set(T value, unsigned idx) {
    data_[checked(idx)] = value;
    return *this;
  }
  T operator[](unsigned idx) const { return get(idx); }
  T& operator[](unsigned idx) { return data_[checked(idx)]; }

  // vector::insert (UG1529): overwrite sub-vector number idx, i.e. elements [idx * ElemsIn, (idx + 1) * ElemsIn).
  template <unsigned ElemsIn>
  vector& insert(unsigned idx, const vector<T, ElemsIn>& v) {
    static_assert(ElemsIn <= Elems && Elems % ElemsIn == 0, "insert: the sub-vector must tile the vector");
    if (idx >= Elems / ElemsIn) aie_emu::fail("vector::insert index out of range");
    for (unsigned i = 0; i < ElemsIn; ++i) data_[idx * ElemsIn + i] = v.get(i);
    return *this;
  }

  // vector::extract (UG1529): sub-vector number idx of ElemsOut elements.
  template <unsigned ElemsOut>
  vector<T, ElemsOut> extract(unsigned idx) const {
    static_assert(ElemsOut <= Elems && Elems % ElemsOut == 0, "extract: the sub-vector must tile the vector");
    if (idx >= Elems / ElemsOut) aie_emu::fail("vector::extract index out of range");
    vector<T, ElemsOut> r;
    for (unsigned i = 0; i < ElemsOut; ++i) r.set(data_[idx * ElemsOut + i], i);
    return r;
  }

  // Emulation only: raw element storage.
  T* emu_data() { return data_; }
  const T* emu_data() const { return data_; }

 private:
  static unsigned checked(unsigned idx) {
    if (idx >= Elems) aie_emu::fail("vector element index out of range");
    return idx;
  }
  T data_[Elems] = {};
};

// -- aie::accum --------------------------------------------------------------------------------------------
// aie::accum<AccumTag, Elems> (UG1529 "Basic Types"): Elems accumulator lanes of type acc32 / acc64.
template <typename AccumTag, unsigned Elems>
class accum {
  static_assert(aie_emu::is_acc_tag_v<AccumTag>, "the emulation supports acc32 and acc64 accumulators");

 public:
  using value_type = AccumTag;

  // Default construction: contents unspecified on hardware; zero here.
  accum() = default;

  // accum(vector, shift) (UG1529): same as from_vector.
  template <typename T>
  explicit accum(const vector<T, Elems>& v, int shift = 0) {
    from_vector(v, shift);
  }

  static constexpr unsigned size() { return Elems; }
  static constexpr unsigned accum_bits() { return aie_emu::acc_traits<AccumTag>::bits; }
  static constexpr unsigned bits() { return accum_bits() * Elems; }

  // accum::from_vector (UG1529): load the lanes from a vector, each value shifted up by `shift` bits (the
  // AIE-ML UPS instruction; UG1583 ups intrinsics). Signed and unsigned elements extend by their own signedness.
  // 32-bit elements into acc32 lanes are a reinterpretation on AIE-ML, which takes no shift (AIE-API aie2).
  template <typename T>
  accum& from_vector(const vector<T, Elems>& v, int shift = 0) {
    if (shift < 0 || shift > 59) aie_emu::fail("from_vector shift %d outside 0..59", shift);
    if (sizeof(T) == 4 && accum_bits() == 32 && shift != 0)
      aie_emu::fail("from_vector of 32-bit elements into acc32 lanes takes shift 0, not %d", shift);
    for (unsigned i = 0; i < Elems; ++i) {
      const std::int64_t x = static_cast<std::int64_t>(v.get(i));
      const std::int64_t f = std::int64_t(1) << shift;
      if (x > std::numeric_limits<std::int64_t>::max() / f || x < std::numeric_limits<std::int64_t>::min() / f)
        aie_emu::fail("from_vector up-shift overflows 64 bits");
      lanes_[i] = x * f;
      aie_emu::check_lane<AccumTag>(lanes_[i], "accum::from_vector");
    }
    return *this;
  }

  // accum::to_vector<T>(shift) (UG1529): shift-round-saturate every lane into T with the tile's current rounding
  // and saturation modes. How AIE-ML lowers it (AIE-API aie2 accumulator conversion, UG1583 SRS variants):
  //   acc32 -> 8/16-bit : one SRS;
  //   acc64 -> 16/32-bit: one SRS;
  //   acc64 -> 8-bit    : SRS to 16 bits of the same signedness, then pack to 8 bits (saturates, never rounds);
  //   acc32 -> 32-bit   : the lanes are reinterpreted as they are, the shift is IGNORED.
  template <typename T>
  vector<T, Elems> to_vector(int shift = 0) const {
    static_assert(aie_emu::is_elem_v<T>, "to_vector targets an 8/16/32-bit integer vector");
    vector<T, Elems> r;
    for (unsigned i = 0; i < Elems; ++i) {
      if constexpr (accum_bits() == 32 && sizeof(T) == 4) {
        r.set(static_cast<T>(static_cast<std::uint32_t>(lanes_[i])), i);
      } else if constexpr (accum_bits() == 64 && sizeof(T) == 1) {
        using T16 = std::conditional_t<std::is_signed_v<T>, std::int16_t, std::uint16_t>;
        r.set(aie_emu::pack_lane<T>(aie_emu::srs_lane<T16>(lanes_[i], shift)), i);
      } else {
        r.set(aie_emu::srs_lane<T>(lanes_[i], shift), i);
      }
    }
    return r;
  }

  // accum::insert (UG1529): overwrite sub-accumulator number idx (lanes [idx * ElemsIn, (idx + 1) * ElemsIn)).
  template <unsigned ElemsIn>
  accum& insert(unsigned idx, const accum<AccumTag, ElemsIn>& a) {
    static_assert(ElemsIn <= Elems && Elems % ElemsIn == 0, "insert: the sub-accumulator must tile the accumulator");
    if (idx >= Elems / ElemsIn) aie_emu::fail("accum::insert index out of range");
    for (unsigned i = 0; i < ElemsIn; ++i) lanes_[idx * ElemsIn + i] = a.emu_lane(i);
    return *this;
  }

  // accum::extract (UG1529): sub-accumulator number idx of ElemsOut lanes.
  template <unsigned ElemsOut>
  accum<AccumTag, ElemsOut> extract(unsigned idx) const {
    static_assert(ElemsOut <= Elems && Elems % ElemsOut == 0, "extract: the sub-accumulator must tile the accumulator");
    if (idx >= Elems / ElemsOut) aie_emu::fail("accum::extract index out of range");
    accum<AccumTag, ElemsOut> r;
    for (unsigned i = 0; i < ElemsOut; ++i) r.emu_set_lane(i, lanes_[idx * ElemsOut + i]);
    return r;
  }

  // Emulation only: exact lane values.
  std::int64_t emu_lane(unsigned i) const {
    if (i >= Elems) aie_emu::fail("accumulator lane index out of range");
    return lanes_[i];
  }
  accum& emu_set_lane(unsigned i, std::int64_t v) {
    if (i >= Elems) aie_emu::fail("accumulator lane index out of range");
    aie_emu::check_lane<AccumTag>(v, "an accumulator lane write");
    lanes_[i] = v;
    return *this;
  }

 private:
  std::int64_t lanes_[Elems] = {};
};

// -- lookup tables (UG1529 "Lookup Tables"; UG1603 "Lookup Tables and Linear Approximation") -----------------------
// aie::lut<4, T>(elems, lut_ab, lut_cd): a table of `elems` values of T for 4 parallel accesses. AIE-ML wants the
// values in groups of 128 bits, each group stored twice in a row, in each of two arrays placed in different banks:
// four copies of every value. The emulation reads entry k through that layout and checks that all four copies
// agree (a table laid out any other way is reported, not silently looked up).
enum class lut_oor_policy { saturate, truncate };

template <unsigned ParallelAccesses, typename OffsetType, typename SlopeType = OffsetType>
struct lut {
  static_assert(ParallelAccesses == 4, "AIE-ML implements 4 parallel accesses");
  static_assert(std::is_same_v<OffsetType, SlopeType>, "the emulation supports direct-lookup tables only");
  using offset_type = OffsetType;
  static constexpr unsigned group = 16 / sizeof(OffsetType);  // values per 128-bit group

  lut(unsigned elems, const OffsetType* ab, const OffsetType* cd) : LUT_elems_(elems), LUT_ab_(ab), LUT_cd_(cd) {
    if (elems == 0) aie_emu::fail("aie::lut with no elements");
    aie_emu::check_alignment(ab, group, "aie::lut table ab");
    aie_emu::check_alignment(cd, group, "aie::lut table cd");
  }

  // Emulation only: entry k, checked in all four places the layout keeps it.
  OffsetType emu_entry(unsigned k) const {
    const unsigned at = (k / group) * 2 * group + k % group;
    const OffsetType v = LUT_ab_[at];
    if (LUT_ab_[at + group] != v || LUT_cd_[at] != v || LUT_cd_[at + group] != v)
      aie_emu::fail("aie::lut entry %u differs between its four copies (layout: 128-bit groups stored twice, in "
                    "two arrays)", k);
    return v;
  }

  unsigned LUT_elems_;
  const OffsetType* LUT_ab_;
  const OffsetType* LUT_cd_;
};

// aie::parallel_lookup<T, lut, policy>(lut, step_bits, bias).fetch(v): element i is the table entry at index
// (v[i] >> step_bits) + bias; an index outside [0, elems - 1] saturates to the nearest end (policy saturate) or
// wraps modulo elems (truncate; elems a power of two). Keys: int8, uint8, int16; values: int16, and int32 for
// int16 keys (UG1529 lists int16, int32 and bfloat16 for 16-bit keys; int8 and int16 for 8-bit keys).
template <typename T, typename MyLUT, lut_oor_policy oor_policy = lut_oor_policy::saturate>
class parallel_lookup {
  static_assert(std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int16_t>,
                "aie::parallel_lookup keys: int8, uint8, int16");
  static_assert(std::is_same_v<typename MyLUT::offset_type, std::int16_t> ||
                    (std::is_same_v<typename MyLUT::offset_type, std::int32_t> && sizeof(T) == 2),
                "the emulation supports int16 values, and int32 values for 16-bit keys");

 public:
  parallel_lookup(const MyLUT& l, unsigned step_bits = 0, int bias = 0) : lut_(l), step_(step_bits), bias_(bias) {
    if (step_bits >= 8 * sizeof(T)) aie_emu::fail("aie::parallel_lookup step_bits %u leaves no index bits", step_bits);
    if (oor_policy == lut_oor_policy::truncate && (l.LUT_elems_ & (l.LUT_elems_ - 1)) != 0)
      aie_emu::fail("aie::parallel_lookup truncate needs a power-of-two table");
  }

  template <unsigned Elems>
  vector<typename MyLUT::offset_type, Elems> fetch(const vector<T, Elems>& input) const {
    static_assert(Elems <= 32, "aie::parallel_lookup fetches at most 32 values");
    vector<typename MyLUT::offset_type, Elems> out;
    const long long n = lut_.LUT_elems_;
    for (unsigned i = 0; i < Elems; ++i) {
      long long index = (static_cast<long long>(input.get(i)) >> step_) + bias_;  // arithmetic shift
      if (oor_policy == lut_oor_policy::saturate) {
        index = index < 0 ? 0 : (index > n - 1 ? n - 1 : index);
      } else {
        index &= n - 1;
      }
      out.set(lut_.emu_entry(static_cast<unsigned>(index)), i);
    }
    return out;
  }

 private:
  const MyLUT& lut_;
  unsigned step_;
  int bias_;
};

// -- reductions (UG1529 "Reductions") -------------------------------------------------------------------------
// aie::reduce_max(v) / aie::reduce_min(v): the largest / smallest element.
template <typename T, unsigned Elems>
T reduce_max(const vector<T, Elems>& v) {
  T r = v.get(0);
  for (unsigned i = 1; i < Elems; ++i) r = v.get(i) > r ? v.get(i) : r;
  return r;
}
template <typename T, unsigned Elems>
T reduce_min(const vector<T, Elems>& v) {
  T r = v.get(0);
  for (unsigned i = 1; i < Elems; ++i) r = v.get(i) < r ? v.get(i) : r;
  return r;
}

// aie::reduce_add(v): the sum of the elements in the element type; a sum the type cannot hold is reported (the
// hardware would wrap).
template <typename T, unsigned Elems>
T reduce_add(const vector<T, Elems>& v) {
  std::int64_t r = 0;
  for (unsigned i = 0; i < Elems; ++i) r += v.get(i);
  if (r < std::numeric_limits<T>::min() || r > std::numeric_limits<T>::max())
    aie_emu::fail("reduce_add: the sum %lld leaves the element type (hardware would wrap)", (long long)r);
  return static_cast<T>(r);
}

// -- constructors of constant values ----------------------------------------------------------------------
// aie::zeros<T, Elems>() (UG1529): a vector (element type T) or an accumulator (accumulator tag
// T) with every element zero.
template <typename T, unsigned Elems>
auto zeros() {
  if constexpr (aie_emu::is_acc_tag_v<T>) {
    return accum<T, Elems>();
  } else {
    return vector<T, Elems>();
  }
}

// aie::broadcast<T, Elems>(value) (UG1529): every element equal to value.
template <typename T, unsigned Elems>
vector<T, Elems> broadcast(emu_detail::identity_t<T> value) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(value, i);
  return r;
}

// -- memory ------------------------------------------------------------------------------------------------
// aie::load_v<Elems>(ptr) (UG1529 "Memory"): read Elems consecutive elements into a vector. The pointer must meet
// the vector load alignment (checked with AIE_EMU_CHECK_ALIGNMENT).
template <unsigned Elems, aie_dm_resource Resource = aie_dm_resource::none, typename T>
vector<std::remove_cv_t<T>, Elems> load_v(const T* ptr) {
  aie_emu::check_alignment(ptr, Elems, "vector load");
  vector<std::remove_cv_t<T>, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(ptr[i], i);
  return r;
}

// aie::store_v(ptr, v) (UG1529 "Memory"): write the vector's elements to consecutive addresses; returns ptr.
template <aie_dm_resource Resource = aie_dm_resource::none, typename T1, typename T2, unsigned Elems>
T1* store_v(T1* ptr, const vector<T2, Elems>& v) {
  static_assert(std::is_same_v<std::remove_cv_t<T1>, T2>, "store_v: pointer and vector element types differ");
  static_assert(!std::is_const_v<T1>, "store_v: cannot store through a pointer to const");
  aie_emu::check_alignment(ptr, Elems, "vector store");
  for (unsigned i = 0; i < Elems; ++i) ptr[i] = v.get(i);
  return ptr;
}

// aie::load_unaligned_v<Elems>(ptr, aligned_elems) (UG1529 "Memory"; UG1603 "Alignment"): read Elems consecutive
// elements from a pointer that is only known to be aligned to aligned_elems elements (checked here); on hardware
// the load costs more than an aligned one, depending on the misalignment.
template <unsigned Elems, aie_dm_resource Resource = aie_dm_resource::none, typename T>
vector<std::remove_cv_t<T>, Elems> load_unaligned_v(const T* ptr, unsigned aligned_elems = 1) {
  aie_emu::check_alignment(ptr, aligned_elems, "unaligned vector load (aligned_elems)");
  vector<std::remove_cv_t<T>, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(ptr[i], i);
  return r;
}

// -- reshaping ------------------------------------------------------------------------------------------------
// aie::filter_even(v, step) (UG1529 "Reshaping"): the even groups of step consecutive elements, a vector of half
// the size (groups 0, 2, 4, ...).
template <typename T, unsigned Elems>
vector<T, Elems / 2> filter_even(const vector<T, Elems>& v, unsigned step = 1) {
  static_assert(Elems % 2 == 0, "filter_even halves the vector");
  if (step == 0 || Elems % (2 * step) != 0) aie_emu::fail("filter_even: step %u does not divide the vector", step);
  vector<T, Elems / 2> r;
  unsigned o = 0;
  for (unsigned g = 0; g < Elems / step; g += 2)
    for (unsigned i = 0; i < step; ++i) r.set(v.get(g * step + i), o++);
  return r;
}

// aie::interleave_zip(v, w, step) (UG1529 "Reshaping"): the sequence v[0:step], w[0:step], v[step:2 step],
// w[step:2 step], ...; its first half in .first, its second half in .second.
template <typename T, unsigned Elems>
std::pair<vector<T, Elems>, vector<T, Elems>> interleave_zip(const vector<T, Elems>& v, const vector<T, Elems>& w,
                                                             unsigned step) {
  if (step == 0 || Elems % step != 0) aie_emu::fail("interleave_zip: step %u does not divide the vector", step);
  vector<T, Elems> lo, hi;
  unsigned o = 0;
  for (unsigned g = 0; g < Elems; g += step)
    for (const vector<T, Elems>* src : {&v, &w})
      for (unsigned i = 0; i < step; ++i, ++o) {
        if (o < Elems) lo.set(src->get(g + i), o);
        else hi.set(src->get(g + i), o - Elems);
      }
  return {lo, hi};
}

// -- aie::mask ------------------------------------------------------------------------------------------------
// aie::mask<Elems> (UG1529 "Basic Types"): one bit per vector element, as comparisons return it and select
// consumes it. Element i is bit i % 32 of 32-bit word i / 32 (from_uint32 / to_uint32).
template <unsigned Elems>
class mask {
  static_assert(Elems > 0, "empty mask");
  static constexpr unsigned WORDS = (Elems + 31) / 32;

 public:
  static constexpr unsigned size() { return Elems; }

  // mask(initial_set) (UG1529): every element 1 (true) or 0 (false).
  explicit mask(bool initial_set = false) {
    for (unsigned i = 0; i < Elems; ++i) bits_[i] = initial_set;
  }

  // mask::from_uint32(words...) (UG1529): element i from bit i % 32 of word i / 32; one word per 32 elements.
  template <typename... W>
  static mask from_uint32(W... words) {
    static_assert(sizeof...(W) == WORDS, "from_uint32 takes one 32-bit word per 32 elements");
    const std::uint32_t w[] = {static_cast<std::uint32_t>(words)...};
    mask m;
    for (unsigned i = 0; i < Elems; ++i) m.bits_[i] = ((w[i / 32] >> (i % 32)) & 1u) != 0;
    return m;
  }

  // mask::to_uint32(idx) / to_uint32() (UG1529): 32-bit word idx of the mask (unused high bits are 0).
  std::uint32_t to_uint32(unsigned idx) const {
    if (idx >= WORDS) aie_emu::fail("mask::to_uint32 word index out of range");
    std::uint32_t w = 0;
    for (unsigned i = 32 * idx; i < Elems && i < 32 * idx + 32; ++i) w |= std::uint32_t(bits_[i]) << (i % 32);
    return w;
  }
  std::uint32_t to_uint32() const {
    static_assert(Elems <= 32, "to_uint32() without an index needs a mask of at most 32 elements");
    return to_uint32(0);
  }

  // mask::test / set / clear (UG1529): read, set to 1, set to 0 element i.
  bool test(unsigned i) const { return bits_[checked(i)]; }
  void set(unsigned i) { bits_[checked(i)] = true; }
  void clear(unsigned i) { bits_[checked(i)] = false; }

  // mask::count (UG1529): how many elements are 1.
  unsigned count() const {
    unsigned n = 0;
    for (unsigned i = 0; i < Elems; ++i) n += bits_[i];
    return n;
  }

  // Element-wise AND / OR / NOT and equality of masks (UG1529 mask operators).
  mask operator&(const mask& o) const { return combine(o, [](bool a, bool b) { return a && b; }); }
  mask operator|(const mask& o) const { return combine(o, [](bool a, bool b) { return a || b; }); }
  mask& operator&=(const mask& o) { return *this = *this & o; }
  mask& operator|=(const mask& o) { return *this = *this | o; }
  mask operator~() const { return combine(*this, [](bool a, bool) { return !a; }); }
  bool operator==(const mask& o) const {
    for (unsigned i = 0; i < Elems; ++i)
      if (bits_[i] != o.bits_[i]) return false;
    return true;
  }

 private:
  template <typename F>
  mask combine(const mask& o, F f) const {
    mask r;
    for (unsigned i = 0; i < Elems; ++i) r.bits_[i] = f(bits_[i], o.bits_[i]);
    return r;
  }
  static unsigned checked(unsigned i) {
    if (i >= Elems) aie_emu::fail("mask element index out of range");
    return i;
  }
  bool bits_[Elems] = {};
};

// -- comparisons and selection (UG1529 "Comparison" and "Reshaping") ------------------------------------------
// aie::lt / aie::ge (UG1529): mask bit i = (v1[i] < v2[i]) / (v1[i] >= v2[i]), vectors of one type and size, or a
// scalar compared with every element. Real-valued (integer) vectors only.
template <typename T, unsigned Elems>
mask<Elems> lt(const vector<T, Elems>& v1, const vector<T, Elems>& v2) {
  mask<Elems> m;
  for (unsigned i = 0; i < Elems; ++i)
    if (v1.get(i) < v2.get(i)) m.set(i);
  return m;
}
template <typename T, unsigned Elems>
mask<Elems> lt(const vector<T, Elems>& v, emu_detail::identity_t<T> a) {
  return lt(v, broadcast<T, Elems>(a));
}
template <typename T, unsigned Elems>
mask<Elems> lt(emu_detail::identity_t<T> a, const vector<T, Elems>& v) {
  return lt(broadcast<T, Elems>(a), v);
}
template <typename T, unsigned Elems>
mask<Elems> ge(const vector<T, Elems>& v1, const vector<T, Elems>& v2) {
  return ~lt(v1, v2);
}
template <typename T, unsigned Elems>
mask<Elems> ge(const vector<T, Elems>& v, emu_detail::identity_t<T> a) {
  return ge(v, broadcast<T, Elems>(a));
}
template <typename T, unsigned Elems>
mask<Elems> ge(emu_detail::identity_t<T> a, const vector<T, Elems>& v) {
  return ge(broadcast<T, Elems>(a), v);
}

// aie::eq (UG1529 "Comparison"): mask bit i = (v[i] == a), a vector or a scalar for every element.
template <typename T, unsigned Elems>
mask<Elems> eq(const vector<T, Elems>& v1, const vector<T, Elems>& v2) {
  mask<Elems> m;
  for (unsigned i = 0; i < Elems; ++i)
    if (v1.get(i) == v2.get(i)) m.set(i);
  return m;
}
template <typename T, unsigned Elems>
mask<Elems> eq(const vector<T, Elems>& v, emu_detail::identity_t<T> a) {
  return eq(v, broadcast<T, Elems>(a));
}

// aie::select(v1, v2, m) (UG1529 "Reshaping"): element i is v1[i] where mask bit i is 0 and v2[i] where it is 1
// (the second operand where the bit is set). Either operand may be a scalar, used for every element.
template <typename T, unsigned Elems>
vector<T, Elems> select(const vector<T, Elems>& v1, const vector<T, Elems>& v2, const mask<Elems>& m) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(m.test(i) ? v2.get(i) : v1.get(i), i);
  return r;
}
template <typename T, unsigned Elems>
vector<T, Elems> select(emu_detail::identity_t<T> a, const vector<T, Elems>& v, const mask<Elems>& m) {
  return select(broadcast<T, Elems>(a), v, m);
}
template <typename T, unsigned Elems>
vector<T, Elems> select(const vector<T, Elems>& v, emu_detail::identity_t<T> a, const mask<Elems>& m) {
  return select(v, broadcast<T, Elems>(a), m);
}

// -- element-wise maximum / minimum ---------------------------------------------------------------------------
// aie::max / aie::min (UG1529 "Comparison"): element-wise maximum / minimum of two vectors, or of a vector and a
// scalar (the scalar compared with every element).
template <typename T, unsigned Elems>
vector<T, Elems> max(const vector<T, Elems>& a, const vector<T, Elems>& b) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(a.get(i) > b.get(i) ? a.get(i) : b.get(i), i);
  return r;
}
template <typename T, unsigned Elems>
vector<T, Elems> max(const vector<T, Elems>& a, emu_detail::identity_t<T> s) {
  return max(a, broadcast<T, Elems>(s));
}
template <typename T, unsigned Elems>
vector<T, Elems> max(emu_detail::identity_t<T> s, const vector<T, Elems>& a) {
  return max(broadcast<T, Elems>(s), a);
}
template <typename T, unsigned Elems>
vector<T, Elems> min(const vector<T, Elems>& a, const vector<T, Elems>& b) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(a.get(i) < b.get(i) ? a.get(i) : b.get(i), i);
  return r;
}
template <typename T, unsigned Elems>
vector<T, Elems> min(const vector<T, Elems>& a, emu_detail::identity_t<T> s) {
  return min(a, broadcast<T, Elems>(s));
}
template <typename T, unsigned Elems>
vector<T, Elems> min(emu_detail::identity_t<T> s, const vector<T, Elems>& a) {
  return min(broadcast<T, Elems>(s), a);
}

// -- shifts and bit operations (UG1079 / UG1603 "Bitwise Operations", UG1529 "Arithmetic" and "Bits") ---------
// aie::upshift(v, n): every element shifted left by n bits, filled with 0 (modulo the element width).
template <typename T, unsigned Elems>
vector<T, Elems> upshift(const vector<T, Elems>& v, unsigned shift) {
  using U = std::make_unsigned_t<T>;
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) {
    const U bits = static_cast<U>(static_cast<U>(v.get(i)) << shift);  // two's complement, no signed overflow
    r.set(static_cast<T>(bits), i);
  }
  return r;
}
// aie::downshift(v, n): every element shifted right by n bits, arithmetically (sign-extended) for signed
// element types, with zeros for unsigned ones.
template <typename T, unsigned Elems>
vector<T, Elems> downshift(const vector<T, Elems>& v, unsigned shift) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) {
    const std::int64_t x = static_cast<std::int64_t>(v.get(i));
    r.set(static_cast<T>(x >> shift), i);  // x >> s on int64 is arithmetic (C++20; gcc/clang before that)
  }
  return r;
}
// aie::bit_and(a, v) / aie::bit_and(v1, v2): bit-wise AND of a scalar with every element, or element-wise.
template <typename T, unsigned Elems>
vector<T, Elems> bit_and(emu_detail::identity_t<T> a, const vector<T, Elems>& v) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(static_cast<T>(a & v.get(i)), i);
  return r;
}
template <typename T, unsigned Elems>
vector<T, Elems> bit_and(const vector<T, Elems>& v1, const vector<T, Elems>& v2) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.set(static_cast<T>(v1.get(i) & v2.get(i)), i);
  return r;
}

// -- element-wise vector arithmetic (UG1529 "Arithmetic"; UG1603 "Vector Arithmetic Operations") --------------
// aie::add / aie::sub(v1, v2): element-wise sum / difference of two vectors of one type and size, or of a vector
// and a scalar (used for every element). The vector ALU does not saturate (aie::saturating_add is the one that
// does): results wrap modulo 2^bits of the element type.
namespace emu_detail {
template <typename T>
T wrap(std::int64_t x) {
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(static_cast<std::uint64_t>(x)));  // two's complement, no signed overflow
}
}  // namespace emu_detail

template <typename T, unsigned Elems>
vector<T, Elems> add(const vector<T, Elems>& v1, const vector<T, Elems>& v2) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i)
    r.set(emu_detail::wrap<T>(static_cast<std::int64_t>(v1.get(i)) + static_cast<std::int64_t>(v2.get(i))), i);
  return r;
}
template <typename T, unsigned Elems>
vector<T, Elems> add(const vector<T, Elems>& v, emu_detail::identity_t<T> a) {
  return add(v, broadcast<T, Elems>(a));
}
template <typename T, unsigned Elems>
vector<T, Elems> add(emu_detail::identity_t<T> a, const vector<T, Elems>& v) {
  return add(broadcast<T, Elems>(a), v);
}
template <typename T, unsigned Elems>
vector<T, Elems> sub(const vector<T, Elems>& v1, const vector<T, Elems>& v2) {
  vector<T, Elems> r;
  for (unsigned i = 0; i < Elems; ++i)
    r.set(emu_detail::wrap<T>(static_cast<std::int64_t>(v1.get(i)) - static_cast<std::int64_t>(v2.get(i))), i);
  return r;
}
template <typename T, unsigned Elems>
vector<T, Elems> sub(const vector<T, Elems>& v, emu_detail::identity_t<T> a) {
  return sub(v, broadcast<T, Elems>(a));
}
template <typename T, unsigned Elems>
vector<T, Elems> sub(emu_detail::identity_t<T> a, const vector<T, Elems>& v) {
  return sub(broadcast<T, Elems>(a), v);
}

// -- element-wise accumulator arithmetic (UG1529 "Arithmetic") ----------------------------------------------------
// aie::add / aie::sub(acc1, acc2): lane-wise sum / difference of two accumulators of one type (exact here; the
// lanes must stay inside the accumulator's range, checked). aie::add(acc, v): the vector's elements added to the
// lanes (sign- or zero-extended by the element type).
template <typename Tag, unsigned Elems>
accum<Tag, Elems> add(const accum<Tag, Elems>& a, const accum<Tag, Elems>& b) {
  accum<Tag, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.emu_set_lane(i, a.emu_lane(i) + b.emu_lane(i));
  return r;
}
template <typename Tag, unsigned Elems>
accum<Tag, Elems> sub(const accum<Tag, Elems>& a, const accum<Tag, Elems>& b) {
  accum<Tag, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.emu_set_lane(i, a.emu_lane(i) - b.emu_lane(i));
  return r;
}
template <typename Tag, typename T, unsigned Elems>
accum<Tag, Elems> add(const accum<Tag, Elems>& a, const vector<T, Elems>& v) {
  accum<Tag, Elems> r;
  for (unsigned i = 0; i < Elems; ++i) r.emu_set_lane(i, a.emu_lane(i) + static_cast<std::int64_t>(v.get(i)));
  return r;
}

// aie::from_vector<AccumTag>(v, shift) (UG1529 "Vector and Accumulator Conversions"): an accumulator whose lanes
// are the elements shifted up by `shift` bits (as accum::from_vector).
template <typename Tag, typename T, unsigned Elems>
accum<Tag, Elems> from_vector(const vector<T, Elems>& v, int shift = 0) {
  static_assert(aie_emu::is_acc_tag_v<Tag>, "from_vector<AccumTag>: name the accumulator (acc32 / acc64)");
  accum<Tag, Elems> r;
  r.from_vector(v, shift);
  return r;
}

namespace emu_detail {
// Element-wise multiplications AIE-ML implements, by operand widths in either order (UG1529 "Arithmetic": the
// default accumulator per operand pair, and wider accumulators on request; 32b x 32b is not native and runs as two
// 32b x 16b multiplies): into acc32 8x8, 8x16, 16x16 and 16x32; into acc64 8x16, 16x16, 16x32 and 32x32.
// 8b x 32b exists in neither; 32b x 32b needs acc64.
template <typename Tag, typename T1, typename T2>
constexpr bool elementwise_mul_supported() {
  constexpr unsigned a = 8 * sizeof(T1), b = 8 * sizeof(T2);
  constexpr unsigned narrow = a < b ? a : b, wide = a < b ? b : a;
  if constexpr (aie_emu::acc_traits<Tag>::bits == 32) {
    return (narrow == 8 && wide <= 16) || (narrow == 16 && wide <= 32);
  } else {
    return (narrow == 8 && wide == 16) || (narrow == 16 && wide <= 32) || (narrow == 32 && wide == 32);
  }
}

// One lane of mac: the exact sum, refused when it leaves the 64-bit lane (hardware would wrap).
inline std::int64_t mac_lane(std::int64_t acc, std::int64_t a, std::int64_t b) {
  std::int64_t p = 0, s = 0;
  if (__builtin_mul_overflow(a, b, &p) || __builtin_add_overflow(acc, p, &s))
    aie_emu::fail("multiply-accumulate lane overflows 64 bits (hardware lanes would wrap)");
  return s;
}
}  // namespace emu_detail

// aie::mul<AccumTag>(v1, v2) (UG1529 "Arithmetic"): element-wise products, exact, in an accumulator of AccumTag.
template <typename Tag, typename T1, typename T2, unsigned Elems>
accum<Tag, Elems> mul(const vector<T1, Elems>& a, const vector<T2, Elems>& b) {
  static_assert(aie_emu::is_acc_tag_v<Tag>, "mul<AccumTag>: name the accumulator (acc32 / acc64)");
  static_assert(emu_detail::elementwise_mul_supported<Tag, T1, T2>(),
                "aie::mul: AIE-ML has no element-wise multiply of these operand widths into this accumulator");
  accum<Tag, Elems> r;
  for (unsigned i = 0; i < Elems; ++i)
    r.emu_set_lane(i, emu_detail::mac_lane(0, a.get(i), b.get(i)));
  return r;
}

// aie::mac(acc, v1, v2) (UG1529 "Arithmetic"): acc + v1 * v2 element-wise, in the accumulator's own type (the
// accumulation cannot be chosen); the same operand combinations as mul.
template <typename Tag, typename T1, typename T2, unsigned Elems>
accum<Tag, Elems> mac(const accum<Tag, Elems>& acc, const vector<T1, Elems>& a, const vector<T2, Elems>& b) {
  static_assert(emu_detail::elementwise_mul_supported<Tag, T1, T2>(),
                "aie::mac: AIE-ML has no element-wise multiply of these operand widths into this accumulator");
  accum<Tag, Elems> r;
  for (unsigned i = 0; i < Elems; ++i)
    r.emu_set_lane(i, emu_detail::mac_lane(acc.emu_lane(i), a.get(i), b.get(i)));
  return r;
}

// -- aie::mmul -------------------------------------------------------------------------------------------------
namespace emu_detail {
// Accumulator an mmul gets when none is named: 32-bit lanes for 8/16-bit operands, 64-bit lanes when an operand
// is 32 bits wide (AIE-API default accumulation width for AIE-ML).
template <typename TypeA, typename TypeB>
using default_accum_tag_t = std::conditional_t<(sizeof(TypeA) <= 2 && sizeof(TypeB) <= 2), acc32, acc64>;
}  // namespace emu_detail

// aie::mmul<M, K, N, TypeA, TypeB, AccumTag> (UG1529 "Matrix Multiplication"; UG1603 "Matrix Multiplications -
// mmul"): C (M x N) accumulates A (M x K) times B (K x N). A, B and C are row-major blocks held in vectors of
// size_A, size_B and size_C elements. Generic over M, K, N: every shape behaves the same here (the hardware runs
// native shapes in one MAC instruction and the others in several; the arithmetic is identical).
template <unsigned M_Elems, unsigned K_Elems, unsigned N_Elems, typename TypeA, typename TypeB,
          typename AccumTag = emu_detail::default_accum_tag_t<TypeA, TypeB>>
class mmul {
 public:
  static constexpr unsigned M = M_Elems;
  static constexpr unsigned K = K_Elems;
  static constexpr unsigned N = N_Elems;
  static constexpr unsigned size_A = M * K;
  static constexpr unsigned size_B = K * N;
  static constexpr unsigned size_C = M * N;

  using accum_type = accum<AccumTag, size_C>;
  using vector_A_type = vector<TypeA, size_A>;
  using vector_B_type = vector<TypeB, size_B>;

  static constexpr unsigned size() { return size_C; }

  // Default construction: C unspecified on hardware (zero here); start with mul() or from a value.
  mmul() = default;

  // mmul(accum) (UG1529; UG1603: mmul objects can start from accumulators, e.g. partial sums from the cascade).
  mmul(const accum_type& acc) : c_(acc) {}  // NOLINT: implicit, like assignment from an accumulator
  mmul& operator=(const accum_type& acc) {
    c_ = acc;
    return *this;
  }

  // mmul(vector, shift) (UG1529): C starts from vector values shifted up (as accum::from_vector).
  template <typename T>
  explicit mmul(const vector<T, size_C>& v, int shift = 0) : c_(v, shift) {}

  // mmul::mul (UG1529): C = A * B.
  void mul(const vector_A_type& a, const vector_B_type& b) {
    c_ = accum_type();
    mac(a, b);
  }

  // mmul::mac (UG1529): C += A * B, exactly (no intermediate rounding).
  void mac(const vector_A_type& a, const vector_B_type& b) {
    for (unsigned i = 0; i < M; ++i) {
      for (unsigned j = 0; j < N; ++j) {
        std::int64_t s = c_.emu_lane(i * N + j);
        for (unsigned k = 0; k < K; ++k)
          s += static_cast<std::int64_t>(a.get(i * K + k)) * static_cast<std::int64_t>(b.get(k * N + j));
        c_.emu_set_lane(i * N + j, s);
      }
    }
  }

  // mmul::to_accum / conversion to accum_type (UG1529): the accumulator C.
  accum_type to_accum() const { return c_; }
  operator accum_type() const { return c_; }

  // mmul::to_vector<T>(shift) (UG1529): C converted as accum::to_vector (tile rounding and saturation).
  template <typename T>
  vector<T, size_C> to_vector(int shift = 0) const {
    return c_.template to_vector<T>(shift);
  }

 private:
  accum_type c_;
};

}  // namespace aie

#endif  // NN2AIE_EMU_AIE_HPP
