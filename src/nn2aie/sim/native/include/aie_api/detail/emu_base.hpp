// nn2aie native emulation of the AMD AIE-ML programming interfaces: shared base.
//
// Part of a small, header-only C++17 stand-in for the parts of <adf.h> and the AIE-API (<aie_api/aie.hpp>,
// <aie_api/aie_adf.hpp>) that nn2aie's generated kernels use, so the generated kernel text can be compiled and
// run with a plain host compiler (g++) without Vitis. Written by the nn2aie authors from AMD's published
// descriptions (UG1529 AIE-API user guide, UG1603 AIE-ML kernel/graph guide, UG1583 AIE-ML intrinsics, AM020
// AIE-ML architecture). It models arithmetic results only: no timing, no memory banks, no VLIW scheduling.
//
// Emulation-only additions (not part of AMD's interfaces) are named emu_* or live in namespace aie_emu.
#ifndef NN2AIE_EMU_BASE_HPP
#define NN2AIE_EMU_BASE_HPP

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <type_traits>

// -- element types ---------------------------------------------------------------------------------------
// The AIE compilers provide short names for the fixed-width integer element types of buffers, streams and
// vectors (UG1603 "Buffer Port Data Types"). On the host they are the <cstdint> types.
typedef std::int8_t int8;
typedef std::uint8_t uint8;
typedef std::int16_t int16;
typedef std::uint16_t uint16;
typedef std::int32_t int32;
typedef std::uint32_t uint32;
typedef std::int64_t int64;
typedef std::uint64_t uint64;

// -- accumulator element tags ------------------------------------------------------------------------------
// aie::accum<acc32, N> / aie::accum<acc64, N> and input_cascade<acc32> name the accumulator lane type with these
// tags (UG1529 aie::accum; UG1603 cascade ports). acc32 lanes are 32 bits and acc64 lanes 64 bits
// wide on AIE-ML (UG1583 "Integer Accumulator Types": v16acc32 / v8acc64 fill 512 bits).
struct acc32 {};
struct acc64 {};

// -- compiler scheduling hints --------------------------------------------------------------------------
// The AIE compiler (chess) accepts loop and storage annotations; a host compiler must see them as nothing.
#ifndef chess_prepare_for_pipelining
#define chess_prepare_for_pipelining
#endif
#ifndef chess_loop_range
#define chess_loop_range(...)
#endif
#ifndef chess_unroll_loop
#define chess_unroll_loop(...)
#endif
#ifndef chess_flatten_loop
#define chess_flatten_loop
#endif
#ifndef chess_no_hw_loop
#define chess_no_hw_loop
#endif
#ifndef chess_storage
#define chess_storage(...)
#endif
#ifndef chess_protect_access
#define chess_protect_access
#endif
#ifndef chess_separator_scheduler
#define chess_separator_scheduler()
#endif

namespace aie_emu {

// Something the hardware would do differently from what the emulation can represent (reading an empty cascade,
// a misaligned vector load, an accumulator lane outside its width). Thrown, never silently ignored. (Kept free of
// <string>/<stdexcept> so that compiling a kernel stays fast.)
template <typename... Args>
[[noreturn]] void fail(const char* fmt, Args... args);

class error {
 public:
  const char* what() const noexcept { return msg_; }

  template <typename... Args>
  friend void fail(const char* fmt, Args... args);

 private:
  char msg_[512] = {};
};

// Throw aie_emu::error with a printf-style message.
template <typename... Args>
[[noreturn]] void fail(const char* fmt, Args... args) {
  error e;
  if constexpr (sizeof...(Args) == 0) {
    std::snprintf(e.msg_, sizeof(e.msg_), "%s", fmt);
  } else {
    std::snprintf(e.msg_, sizeof(e.msg_), fmt, args...);
  }
  throw e;
}

// Lane width of an accumulator tag, in bits.
template <typename Tag>
struct acc_traits;
template <>
struct acc_traits<acc32> {
  static constexpr unsigned bits = 32;
};
template <>
struct acc_traits<acc64> {
  static constexpr unsigned bits = 64;
};

template <typename T>
struct is_acc_tag : std::false_type {};
template <>
struct is_acc_tag<acc32> : std::true_type {};
template <>
struct is_acc_tag<acc64> : std::true_type {};
template <typename T>
inline constexpr bool is_acc_tag_v = is_acc_tag<T>::value;

// Integer element types the emulation supports in vectors.
template <typename T>
inline constexpr bool is_elem_v = std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 4;

// 512-bit cascade word (AM020 "AIE-ML Interfaces": the cascade carries one 512-bit accumulator word per
// transfer): 16 acc32 lanes or 8 acc64 lanes.
inline constexpr unsigned cascade_word_bits = 512;
template <typename Tag>
inline constexpr unsigned cascade_word_lanes = cascade_word_bits / acc_traits<Tag>::bits;

}  // namespace aie_emu

#endif  // NN2AIE_EMU_BASE_HPP
