// nn2aie native emulation of <aie_api/aie_adf.hpp>: AIE-API access to ADF kernel ports, limited to the
// accumulator cascade that nn2aie's generated kernels use. See detail/emu_base.hpp for scope and naming rules.
#ifndef NN2AIE_EMU_AIE_ADF_HPP
#define NN2AIE_EMU_AIE_ADF_HPP

#include "../adf.h"
#include "aie.hpp"

// readincr_v<Elems>(input_cascade<Tag>*) (UG1529 AIE-API on ADF cascade ports; UG1603 cascades): read
// accumulator lanes from the cascade input. On AIE-ML one transfer is a 512-bit word (16 acc32 or 8 acc64 lanes;
// AM020, UG1583 "Cascade read"); a read of Elems lanes takes Elems / lanes-per-word consecutive words, lanes in order.
template <unsigned Elems, typename Tag>
aie::accum<Tag, Elems> readincr_v(adf::input_cascade<Tag>* in) {
  constexpr unsigned lanes = aie_emu::cascade_word_lanes<Tag>;
  static_assert(Elems % lanes == 0, "cascade reads move whole 512-bit words (16 acc32 / 8 acc64 lanes)");
  aie::accum<Tag, Elems> a;
  for (unsigned w = 0; w < Elems / lanes; ++w) {
    const auto word = in->emu_pop_word();
    for (unsigned i = 0; i < lanes; ++i) a.emu_set_lane(w * lanes + i, word[i]);
  }
  return a;
}

// writeincr(output_cascade<Tag>*, accum) (UG1529 AIE-API on ADF cascade ports; UG1583 "Cascade write"): send the
// accumulator's lanes to the cascade output as consecutive 512-bit words, lanes in order.
template <typename Tag, unsigned Elems>
void writeincr(adf::output_cascade<Tag>* out, const aie::accum<Tag, Elems>& acc) {
  constexpr unsigned lanes = aie_emu::cascade_word_lanes<Tag>;
  static_assert(Elems % lanes == 0, "cascade writes move whole 512-bit words (16 acc32 / 8 acc64 lanes)");
  for (unsigned w = 0; w < Elems / lanes; ++w) {
    typename adf::output_cascade<Tag>::word word{};
    for (unsigned i = 0; i < lanes; ++i) word[i] = acc.emu_lane(w * lanes + i);
    out->emu_push_word(word);
  }
}

#endif  // NN2AIE_EMU_AIE_ADF_HPP
