// nn2aie native emulation of <adf.h>: the kernel-side pieces of AMD's ADF programming model that nn2aie's
// generated kernels use (buffer and cascade ports, kernel-class registration). Graph-side classes (adf::graph,
// kernel::create_object, PLIOs, constraints) are not emulated: the harness drives each kernel itself.
// See aie_api/detail/emu_base.hpp for scope and naming rules.
#ifndef NN2AIE_EMU_ADF_H
#define NN2AIE_EMU_ADF_H

#include <cstddef>
#include <cstdint>

#include "aie_api/detail/emu_base.hpp"

// Kernel classes name their run method and their array-reference parameters in registerKernelClass() so the AIE
// compiler can allocate them (UG1603 "C++ Kernel Class Support"; UG1483 "Constructor with Reference to an
// Array"). On the host the registration does nothing.
#ifndef REGISTER_FUNCTION
#define REGISTER_FUNCTION(...)
#endif
#ifndef REGISTER_PARAMETER
#define REGISTER_PARAMETER(...)
#endif

namespace adf {

// Buffer port sizes in samples: adf::extents<N> (UG1603 "Buffer Port Attributes and API"). inherited_extent
// means "size given by the graph"; the emulation only records the number.
inline constexpr unsigned inherited_extent = 0;

template <unsigned... Ns>
struct extents {
  static constexpr std::size_t rank = sizeof...(Ns);
  static constexpr unsigned size() { return (Ns * ... * 1u); }
};

// Kernel buffer ports (UG1603 adf::input_buffer / adf::output_buffer): the kernel receives a reference to a port
// object whose data() is the start of the buffer the lock currently grants it (ping or pong). In the emulation the
// driver builds the port around its own memory (the pointer constructors are emulation-only).
template <typename T, typename Extents = extents<inherited_extent>>
class input_buffer {
 public:
  using value_type = T;
  explicit input_buffer(T* ptr) : ptr_(ptr) {}
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  static constexpr unsigned size() { return Extents::size(); }

 private:
  T* ptr_;
};

template <typename T, typename Extents = extents<inherited_extent>>
class output_buffer {
 public:
  using value_type = T;
  explicit output_buffer(T* ptr) : ptr_(ptr) {}
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  static constexpr unsigned size() { return Extents::size(); }

 private:
  T* ptr_;
};

namespace emu_detail {
// One 512-bit cascade word as exact lanes.
template <unsigned Lanes>
struct cascade_word {
  std::int64_t lane[Lanes] = {};
  std::int64_t& operator[](unsigned i) { return lane[i]; }
  std::int64_t operator[](unsigned i) const { return lane[i]; }
};

// First-in first-out queue of cascade words (growable; kept free of <deque> so kernels compile fast).
template <unsigned Lanes>
class word_queue {
 public:
  using word = cascade_word<Lanes>;
  word_queue() = default;
  word_queue(const word_queue&) = delete;
  word_queue& operator=(const word_queue&) = delete;
  ~word_queue() { delete[] buf_; }

  void push(const word& w) {
    if (tail_ == cap_) grow();
    buf_[tail_++] = w;
  }
  bool pop(word& w) {
    if (head_ == tail_) return false;
    w = buf_[head_++];
    return true;
  }
  std::size_t size() const { return tail_ - head_; }

 private:
  void grow() {
    const std::size_t live = tail_ - head_;
    const std::size_t cap = live * 2 < 16 ? 16 : live * 2;
    word* nb = new word[cap];
    for (std::size_t i = 0; i < live; ++i) nb[i] = buf_[head_ + i];
    delete[] buf_;
    buf_ = nb;
    cap_ = cap;
    head_ = 0;
    tail_ = live;
  }
  word* buf_ = nullptr;
  std::size_t cap_ = 0, head_ = 0, tail_ = 0;
};
}  // namespace emu_detail

// Cascade ports (UG1603 input_cascade / output_cascade; AM020 "AIE-ML Interfaces"): a 512-bit accumulator word
// per transfer, passed to kernels by pointer. The emulation queues whole words; each lane is held as an exact
// int64 (see aie::accum). A kernel that reads past the words the driver queued is an error (hardware would stall).
template <typename Tag>
class input_cascade {
  static_assert(aie_emu::is_acc_tag_v<Tag>, "cascade ports carry accumulator words (acc32 / acc64)");

 public:
  static constexpr unsigned lanes = aie_emu::cascade_word_lanes<Tag>;
  using word = emu_detail::cascade_word<lanes>;

  void emu_push_word(const word& w) { words_.push(w); }
  word emu_pop_word() {
    word w;
    if (!words_.pop(w)) aie_emu::fail("cascade read with no word available (the west neighbour sent fewer words)");
    return w;
  }
  std::size_t emu_pending() const { return words_.size(); }

 private:
  emu_detail::word_queue<lanes> words_;
};

template <typename Tag>
class output_cascade {
  static_assert(aie_emu::is_acc_tag_v<Tag>, "cascade ports carry accumulator words (acc32 / acc64)");

 public:
  static constexpr unsigned lanes = aie_emu::cascade_word_lanes<Tag>;
  using word = emu_detail::cascade_word<lanes>;

  void emu_push_word(const word& w) { words_.push(w); }
  word emu_pop_word() {
    word w;
    if (!words_.pop(w)) aie_emu::fail("no cascade word was written");
    return w;
  }
  std::size_t emu_pending() const { return words_.size(); }

 private:
  emu_detail::word_queue<lanes> words_;
};

}  // namespace adf

// AMD's kernel examples write the port types both with and without the adf:: qualifier; accept both.
using adf::input_buffer;
using adf::input_cascade;
using adf::output_buffer;
using adf::output_cascade;

#endif  // NN2AIE_EMU_ADF_H
