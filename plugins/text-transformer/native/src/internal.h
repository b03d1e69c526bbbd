// Shared between the transformer's C++ and its assembly (tramp.S).
#pragma once

#include <cstdint>

namespace bh_tt {

// What tramp.S's SAVE_ALL leaves on the stack (lowest address first).
struct Frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax, rflags, ret, info;
};
static_assert(sizeof(Frame) == 144, "tramp.S pushes 18 words");

// The rsp the program had at its `syscall`: the frame, then the red zone the
// stub or handler stepped over.
inline uint64_t frame_orig_rsp(const Frame *f) { return reinterpret_cast<uint64_t>(f) + sizeof(Frame) + 128; }

// Tags pushed instead of a Site pointer (tramp.S).
constexpr uint64_t kTagPage0 = 1;  // page-0 entry: return address at orig-8
constexpr uint64_t kTagWord = 2;   // after the call: (ret | nr << 48 | mech << 60) at orig-8
constexpr uint64_t kTagVfork = 3;  // after vfork: that word in the thread's TLS

// The word that carries a return address and a number across the call on
// the dynamic (page-0, re-issued) paths.
inline uint64_t word_make(uint64_t ret, uint64_t nr, uint64_t mech) {
  return (ret & ((1ull << 48) - 1)) | ((nr & 0xfff) << 48) | (mech << 60);
}
inline uint64_t word_ret(uint64_t w) { return w & ((1ull << 48) - 1); }
inline uint64_t word_nr(uint64_t w) { return (w >> 48) & 0xfff; }
inline uint32_t word_mech(uint64_t w) { return uint32_t(w >> 60); }

}  // namespace bh_tt

extern "C" {
void bh_tt_c_enter(bh_tt::Frame *f);
void bh_tt_c_exit(bh_tt::Frame *f);
extern char bh_tt_text_begin[], bh_tt_text_end[];
extern char bh_tt_enter_asm[], bh_tt_exit_asm[], bh_tt_page0_entry[], bh_tt_page0_run_syscall[];
extern char bh_tt_page0_skip[], bh_tt_page0_vfork[], bh_tt_page0_vfork_syscall[], bh_tt_restorer[];
}
