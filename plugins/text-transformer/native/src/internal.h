// Shared between the transformer's C++ and its assembly (tramp.S).
#pragma once

// Offsets and constants tramp.S uses (checked by static_asserts in tt.cpp).
#define BH_TT_SITE_ADDR 0       /* Site::addr */
#define BH_TT_SITE_STUB_SKIP 80 /* Site::stub_skip */
#define BH_TT_SITE_NR 8         /* Site::nr (int32) */
#define BH_TT_SITE_RUN_EXIT 128 /* Site::run_exit */
#define BH_TT_MAX_NR 512        /* kMaxNr */
#define BH_TT_HOOKS_ENTER 8     /* bh_tt_hooks::enter */
#define BH_TT_HOOKS_EXIT 16     /* bh_tt_hooks::exit */
#define BH_TT_FRAME_NR 8        /* Frame::cf.call.nr (rax) */
#define BH_TT_FRAME_CALL 8      /* Frame::cf.call */
#define BH_TT_FRAME_SITE 64     /* Frame::cf.call.site */
#define BH_TT_FRAME_MECH 72     /* Frame::cf.call.mechanism, reserved */
#define BH_TT_FRAME_RET 104     /* Frame::ret */
#define BH_TT_FRAME_INFO 112    /* Frame::info */
#define BH_TT_FRAME_RCX 80      /* Frame::rcx */
#define BH_TT_FRAME_ORIG 248    /* the program's rsp: sizeof(Frame) + the 128-byte red zone */

#ifndef __ASSEMBLER__

#include <cstddef>
#include <cstdint>

#include "bpfhook/text_transformer.h"

namespace bh_tt {

// What tramp.S's SAVE_GPR leaves on the stack (lowest address first): the
// hooks' call frame (headroom, then rax and the argument registers in the
// kernel's order, then site and mechanism, which the C side writes), then rcx
// and rbx, the flags, the return address and the info word.
struct Frame {
  bh_tt_call_frame cf;
  uint64_t rcx, rbx, rflags, ret, info;
};
static_assert(sizeof(bh_tt_call_frame) == 80 && sizeof(Frame) == 120, "tramp.S's frame: 15 words");
static_assert(offsetof(Frame, cf.call.nr) == BH_TT_FRAME_NR && offsetof(Frame, cf.call) == BH_TT_FRAME_CALL &&
                  offsetof(Frame, cf.call.args) == 16 && offsetof(Frame, cf.call.site) == BH_TT_FRAME_SITE &&
                  offsetof(Frame, cf.call.mechanism) == BH_TT_FRAME_MECH && offsetof(Frame, rcx) == 80 &&
                  offsetof(Frame, rflags) == 96 && offsetof(Frame, ret) == BH_TT_FRAME_RET &&
                  offsetof(Frame, info) == BH_TT_FRAME_INFO && offsetof(Frame, rcx) == BH_TT_FRAME_RCX &&
                  sizeof(Frame) + 128 == BH_TT_FRAME_ORIG,
              "tramp.S's offsets");
inline uint64_t &frame_rax(Frame *f) { return f->cf.call.nr; }

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
// Read by tramp.S's enter (see refresh_simple in tt.cpp).
extern uint64_t bh_tt_simple[BH_TT_MAX_NR / 64] __attribute__((visibility("hidden")));
extern uint64_t bh_tt_simple_exit[BH_TT_MAX_NR / 64] __attribute__((visibility("hidden")));
extern const bh_tt_hooks *bh_tt_fast_hooks __attribute__((visibility("hidden")));
extern void *bh_tt_fast_user __attribute__((visibility("hidden")));
void bh_tt_c_enter(bh_tt::Frame *f);
void bh_tt_c_exit(bh_tt::Frame *f);
extern char bh_tt_text_begin[], bh_tt_text_end[];
extern char bh_tt_enter_asm[], bh_tt_exit_asm[], bh_tt_page0_entry[], bh_tt_page0_run_syscall[];
extern char bh_tt_page0_skip[], bh_tt_page0_vfork[], bh_tt_page0_vfork_syscall[], bh_tt_restorer[];
}

#endif  // __ASSEMBLER__
