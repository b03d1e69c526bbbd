// The hot path: what the trampolines call on every hooked call and return.
//
// Once the calling thread has its state, a hit takes no lock, allocates
// nothing on the heap (vector state is saved in an alloca'd area of the
// stack) and uses no atomics stronger than acquire/release (see threads.cpp
// for how writers make that enough).  The exception is a thread's first hit:
// thread_state_init() takes a free state or maps a new one (mmap) and
// registers it with pthread_setspecific, which may allocate in libc; probes
// that fire inside that set-up are skipped (the state is the sentinel
// meanwhile).

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cpuid.h>

#include "internal.h"
#include "sys.h"

using namespace bh;

namespace {

inline void section_enter(ThreadState *t, uint64_t c) {
  t->ctr.store(c + 1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (__builtin_expect(g_reader_fence, 0)) std::atomic_thread_fence(std::memory_order_seq_cst);
}

inline void section_leave(ThreadState *t, uint64_t c) { t->ctr.store(c + 2, std::memory_order_release); }

// Remembers the caller's return address; the stub then drops it and calls
// the function, so that the function returns into the stub.  Entries of
// frames that were unwound without returning (longjmp, exceptions) sit at or
// below the current entry rsp: drop them first.
bool push_return(ThreadState *t, HookCore *h, Frame *f) {
  const uint64_t e = f->regs.rsp;
  const uint64_t ra = *reinterpret_cast<const uint64_t *>(e);
  uint32_t top = t->top;
  while (top && t->stack[top - 1].rsp < e) top--;
  // The same slot again: a new call at the depth of an unwound one, unless
  // the slot holds that entry's own return point, which means a probed
  // function tail-called us and its entry is still live.
  if (top && t->stack[top - 1].rsp == e && ra != t->stack[top - 1].hook->after) top--;
  if (top == t->cap) {
    t->top = top;
    h->missed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  ShadowEntry &en = t->stack[top];
  en.ret = ra;
  en.hook = h;
  en.rsp = e;
  en.args[0] = f->regs.rdi;
  en.args[1] = f->regs.rsi;
  en.args[2] = f->regs.rdx;
  en.args[3] = f->regs.rcx;
  en.args[4] = f->regs.r8;
  en.args[5] = f->regs.r9;
  t->top = top + 1;
  return true;
}

// An overridden call returns at once: its return listeners run right here,
// seeing the registers as the caller will.
void returns_now(const ListenerSet *s, Frame *f, bh_hook_call &call) {
  const uint64_t args[6] = {f->regs.rdi, f->regs.rsi, f->regs.rdx, f->regs.rcx, f->regs.r8, f->regs.r9};
  const uint64_t e = f->regs.rsp;
  f->regs.rip = *reinterpret_cast<const uint64_t *>(e);
  f->regs.rsp = e + 8;  // rip and rsp are not reloaded from the frame
  call.flags |= BH_HOOK_CALL_RETURN;
  call.entry_args = args;
  for (const Listener *l = s->items + s->n_entry, *end = l + s->n_return; l != end; ++l) {
    call.cookie = l->cookie;
    call.retval = f->regs.rax;
    l->fn(l->user, &f->regs, &call);
  }
  call.entry_args = nullptr;
}

[[noreturn]] void shadow_mismatch(ThreadState *t, uint64_t e) {
  char msg[200];
  const uint64_t top_rsp = (t && t->top) ? t->stack[t->top - 1].rsp : 0;
  int n = snprintf(msg, sizeof msg,
                   "bpfhook: return trampoline reached with no shadow-stack entry for rsp "
                   "0x%llx (top entry rsp 0x%llx, depth %u); cannot continue\n",
                   static_cast<unsigned long long>(e), static_cast<unsigned long long>(top_rsp), t ? t->top : 0);
  sys::call6(SYS_write, 2, reinterpret_cast<long>(msg), n);
  abort();
}

}  // namespace

namespace {

// ---- vector, x87 and mask state ------------------------------------------
// This file is compiled with -mgeneral-regs-only, and so is the trampoline
// code around it: nothing here touches that state.  Listeners that may (any
// C code: libc's memcpy ends in vzeroupper on AVX2 machines) run between a
// save and a restore:
//  - inside a function every register may be live: all of the state, with
//    XSAVE in the layout it picks for this CPU (costly: 70-110 ns per
//    save+restore measured on this VM, whatever the mask);
//  - at a function's entry only the argument registers xmm0-7 carry values
//    (everything else is caller-saved, so dead), at a return only xmm0-1 and
//    st0-1: those vector registers are saved at the width the CPU has
//    enabled (zmm, ymm or xmm), 2 ns for zmm0-7.

inline void vec_save(uint8_t *area) {
  const uint32_t lo = uint32_t(g_vec.mask), hi = uint32_t(g_vec.mask >> 32);
  switch (g_vec.mode) {
    case 2:
      // XRSTOR faults on non-zero reserved header bytes, which XSAVEC does
      // not write: clear the header first.
      for (int i = 0; i < 8; i++) reinterpret_cast<uint64_t *>(area + 512)[i] = 0;
      asm volatile("xsavec64 %0" : "=m"(*area) : "a"(lo), "d"(hi) : "memory");
      break;
    case 1:
      for (int i = 0; i < 8; i++) reinterpret_cast<uint64_t *>(area + 512)[i] = 0;
      asm volatile("xsave64 %0" : "=m"(*area) : "a"(lo), "d"(hi) : "memory");
      break;
    default: asm volatile("fxsave64 %0" : "=m"(*area) : : "memory"); break;
  }
}

inline void vec_restore(const uint8_t *area) {
  const uint32_t lo = uint32_t(g_vec.mask), hi = uint32_t(g_vec.mask >> 32);
  if (g_vec.mode != 0)
    asm volatile("xrstor64 %0" : : "m"(*area), "a"(lo), "d"(hi) : "memory");
  else
    asm volatile("fxrstor64 %0" : : "m"(*area) : "memory");
}

// Vector registers 0..7 (or 0..1) at width W into/from `area` (64-byte
// aligned, W bytes apart).
template <unsigned W, bool All8>
inline void args_save(uint8_t *area) {
  if (W == 64) {
    asm volatile("vmovdqu64 %%zmm0,0(%0)\n vmovdqu64 %%zmm1,64(%0)" : : "r"(area) : "memory");
    if (All8)
      asm volatile(
          "vmovdqu64 %%zmm2,128(%0)\n vmovdqu64 %%zmm3,192(%0)\n vmovdqu64 %%zmm4,256(%0)\n"
          "vmovdqu64 %%zmm5,320(%0)\n vmovdqu64 %%zmm6,384(%0)\n vmovdqu64 %%zmm7,448(%0)"
          :
          : "r"(area)
          : "memory");
  } else if (W == 32) {
    asm volatile("vmovdqu %%ymm0,0(%0)\n vmovdqu %%ymm1,32(%0)" : : "r"(area) : "memory");
    if (All8)
      asm volatile(
          "vmovdqu %%ymm2,64(%0)\n vmovdqu %%ymm3,96(%0)\n vmovdqu %%ymm4,128(%0)\n"
          "vmovdqu %%ymm5,160(%0)\n vmovdqu %%ymm6,192(%0)\n vmovdqu %%ymm7,224(%0)"
          :
          : "r"(area)
          : "memory");
  } else {
    asm volatile("movdqu %%xmm0,0(%0)\n movdqu %%xmm1,16(%0)" : : "r"(area) : "memory");
    if (All8)
      asm volatile(
          "movdqu %%xmm2,32(%0)\n movdqu %%xmm3,48(%0)\n movdqu %%xmm4,64(%0)\n"
          "movdqu %%xmm5,80(%0)\n movdqu %%xmm6,96(%0)\n movdqu %%xmm7,112(%0)"
          :
          : "r"(area)
          : "memory");
  }
}
template <unsigned W, bool All8>
inline void args_restore(const uint8_t *area) {
  if (W == 64) {
    asm volatile("vmovdqu64 0(%0),%%zmm0\n vmovdqu64 64(%0),%%zmm1" : : "r"(area) : "memory");
    if (All8)
      asm volatile(
          "vmovdqu64 128(%0),%%zmm2\n vmovdqu64 192(%0),%%zmm3\n vmovdqu64 256(%0),%%zmm4\n"
          "vmovdqu64 320(%0),%%zmm5\n vmovdqu64 384(%0),%%zmm6\n vmovdqu64 448(%0),%%zmm7"
          :
          : "r"(area)
          : "memory");
  } else if (W == 32) {
    asm volatile("vmovdqu 0(%0),%%ymm0\n vmovdqu 32(%0),%%ymm1" : : "r"(area) : "memory");
    if (All8)
      asm volatile(
          "vmovdqu 64(%0),%%ymm2\n vmovdqu 96(%0),%%ymm3\n vmovdqu 128(%0),%%ymm4\n"
          "vmovdqu 160(%0),%%ymm5\n vmovdqu 192(%0),%%ymm6\n vmovdqu 224(%0),%%ymm7"
          :
          : "r"(area)
          : "memory");
  } else {
    asm volatile("movdqu 0(%0),%%xmm0\n movdqu 16(%0),%%xmm1" : : "r"(area) : "memory");
    if (All8)
      asm volatile(
          "movdqu 32(%0),%%xmm2\n movdqu 48(%0),%%xmm3\n movdqu 64(%0),%%xmm4\n"
          "movdqu 80(%0),%%xmm5\n movdqu 96(%0),%%xmm6\n movdqu 112(%0),%%xmm7"
          :
          : "r"(area)
          : "memory");
  }
}

// x87 st0/st1 at a return (long double results), if in use: a C listener
// may empty the x87 stack (MMX code ends in emms), so they are popped here
// and pushed back.  How many: from TOP in the status word (fnstsw, under a
// nanosecond; fxam would say it too but costs 76 ns on an empty register).
// At a return the ABI leaves 0, 1 or 2 values there (TOP 0, 7, 6).
inline int x87_save(uint8_t *area) {
  uint16_t sw;
  asm volatile("fnstsw %0" : "=a"(sw));
  const int n = (8 - ((sw >> 11) & 7)) & 7;
  if (n == 0) return 0;
  asm volatile("fstpt %0" : "=m"(*reinterpret_cast<uint8_t(*)[10]>(area)));
  if (n == 1) return 1;
  asm volatile("fstpt %0" : "=m"(*reinterpret_cast<uint8_t(*)[10]>(area + 16)));
  return 2;
}
inline void x87_restore(const uint8_t *area, int n) {
  if (n >= 2) asm volatile("fldt %0" : : "m"(*reinterpret_cast<const uint8_t(*)[10]>(area + 16)));
  if (n >= 1) asm volatile("fldt %0" : : "m"(*reinterpret_cast<const uint8_t(*)[10]>(area)));
}

// 64-byte aligned save area on the stack (2.5 KiB with AVX-512, 0.8 with AVX).
#define BH_VEC_AREA(name)                                                                                             \
  uint8_t *name = reinterpret_cast<uint8_t *>((reinterpret_cast<uintptr_t>(__builtin_alloca(g_vec.size + 64)) + 63) & \
                                              ~uintptr_t(63))

// The first probe on a thread sets up its state (mmap, pthread_setspecific:
// system calls and libc, which may clobber vector registers, hence the save).
__attribute__((noinline)) ThreadState *thread_state_init_saved() {
  BH_VEC_AREA(area);
  vec_save(area);
  ThreadState *t = thread_state_init();
  vec_restore(area);
  return t;
}

// Entry listeners; returns the stub's action.
inline uint32_t run_entry(ThreadState *t, HookCore *h, Frame *f, const ListenerSet *s, const void *xmm,
                          uint32_t stride) {
  uint32_t action = kRun;
  bh_hook_call call;
  call.func_ip = h->addr;
  call.regs = &f->regs;
  call.cookie = 0;
  call.retval = 0;
  call.flags = h->call_flags;
  call.xmm_stride = stride;
  call.entry_args = nullptr;
  call.xmm = xmm;
  call._prev = t->current;
  t->current = &call;
  for (const Listener *l = s->items, *end = l + s->n_entry; l != end; ++l) {
    call.cookie = l->cookie;
    const uint64_t v = l->fn(l->user, &f->regs, &call);
    if (l->replace) {
      call.retval = v;
      call.flags |= BH_HOOK_CALL_OVERRIDE;
    }
  }
  if (call.flags & BH_HOOK_CALL_OVERRIDE) {
    f->regs.rax = call.retval;
    action = kReturnNow;
    if (s->n_return) returns_now(s, f, call);
  } else if (s->n_return && push_return(t, h, f)) {
    action = kRunAndTrap;
  }
  t->current = call._prev;
  return action;
}

// Inside a function: everything, with XSAVE.
__attribute__((noinline)) uint32_t run_entry_mid(ThreadState *t, HookCore *h, Frame *f, const ListenerSet *s) {
  BH_VEC_AREA(area);
  vec_save(area);
  const uint32_t action = run_entry(t, h, f, s, area + 160, 16);  // xmm0.. in the legacy area
  vec_restore(area);
  return action;
}

// At a function's entry: the argument registers.
template <unsigned W>
__attribute__((noinline)) uint32_t run_entry_args(ThreadState *t, HookCore *h, Frame *f, const ListenerSet *s) {
  alignas(64) uint8_t area[8 * W];
  args_save<W, true>(area);
  const uint32_t action = run_entry(t, h, f, s, area, W);
  args_restore<W, true>(area);
  return action;
}

// Inside a function, listeners that touch at most xmm0-15 (SSE_ONLY): those.
__attribute__((noinline)) uint32_t run_entry_mid_sse(ThreadState *t, HookCore *h, Frame *f, const ListenerSet *s) {
  alignas(64) uint8_t area[256];
  asm volatile(
      "movaps %%xmm0,0(%0)\n movaps %%xmm1,16(%0)\n movaps %%xmm2,32(%0)\n movaps %%xmm3,48(%0)\n"
      "movaps %%xmm4,64(%0)\n movaps %%xmm5,80(%0)\n movaps %%xmm6,96(%0)\n movaps %%xmm7,112(%0)\n"
      "movaps %%xmm8,128(%0)\n movaps %%xmm9,144(%0)\n movaps %%xmm10,160(%0)\n movaps %%xmm11,176(%0)\n"
      "movaps %%xmm12,192(%0)\n movaps %%xmm13,208(%0)\n movaps %%xmm14,224(%0)\n movaps %%xmm15,240(%0)"
      :
      : "r"(area)
      : "memory");
  const uint32_t action = run_entry(t, h, f, s, area, 16);
  asm volatile(
      "movaps 0(%0),%%xmm0\n movaps 16(%0),%%xmm1\n movaps 32(%0),%%xmm2\n movaps 48(%0),%%xmm3\n"
      "movaps 64(%0),%%xmm4\n movaps 80(%0),%%xmm5\n movaps 96(%0),%%xmm6\n movaps 112(%0),%%xmm7\n"
      "movaps 128(%0),%%xmm8\n movaps 144(%0),%%xmm9\n movaps 160(%0),%%xmm10\n movaps 176(%0),%%xmm11\n"
      "movaps 192(%0),%%xmm12\n movaps 208(%0),%%xmm13\n movaps 224(%0),%%xmm14\n movaps 240(%0),%%xmm15"
      :
      : "r"(area)
      : "memory");
  return action;
}

inline uint32_t run_entry_saved(ThreadState *t, HookCore *h, Frame *f, const ListenerSet *s) {
  if (s->save_vec == kSaveSse) {
    // Legacy SSE leaves the upper halves alone: the xmm parts are all.
    if (h->call_flags & BH_HOOK_CALL_MIDFUNC) return run_entry_mid_sse(t, h, f, s);
    return run_entry_args<16>(t, h, f, s);
  }
  if (h->call_flags & BH_HOOK_CALL_MIDFUNC) return run_entry_mid(t, h, f, s);
  switch (g_vec.width) {
    case 64: return run_entry_args<64>(t, h, f, s);
    case 32: return run_entry_args<32>(t, h, f, s);
    default: return run_entry_args<16>(t, h, f, s);
  }
}

inline void run_return(ThreadState *t, HookCore *hook, Frame *f, const ListenerSet *s, const ShadowEntry &en,
                       const void *xmm, uint32_t stride) {
  bh_hook_call call;
  call.func_ip = hook->addr;
  call.regs = &f->regs;
  call.cookie = 0;
  call.retval = f->regs.rax;
  call.flags = BH_HOOK_CALL_RETURN;
  call.xmm_stride = stride;
  call.entry_args = en.args;
  call.xmm = xmm;
  call._prev = t->current;
  t->current = &call;
  for (const Listener *l = s->items + s->n_entry, *end = l + s->n_return; l != end; ++l) {
    call.cookie = l->cookie;
    l->fn(l->user, &f->regs, &call);
  }
  t->current = call._prev;
}

// At a return: the result registers xmm0-1 (at the CPU's width) and st0-1.
template <unsigned W>
__attribute__((noinline)) void run_return_args(ThreadState *t, HookCore *hook, Frame *f, const ListenerSet *s,
                                               const ShadowEntry &en) {
  alignas(64) uint8_t area[2 * W + 32];
  args_save<W, false>(area);
  const int st = x87_save(area + 2 * W);
  run_return(t, hook, f, s, en, area, W);
  x87_restore(area + 2 * W, st);
  args_restore<W, false>(area);
}

inline void run_return_saved(ThreadState *t, HookCore *hook, Frame *f, const ListenerSet *s, const ShadowEntry &en) {
  if (s->save_vec == kSaveSse) return run_return_args<16>(t, hook, f, s, en);
  switch (g_vec.width) {
    case 64: return run_return_args<64>(t, hook, f, s, en);
    case 32: return run_return_args<32>(t, hook, f, s, en);
    default: return run_return_args<16>(t, hook, f, s, en);
  }
}

}  // namespace

extern "C" __attribute__((visibility("hidden"))) uint32_t bh_on_enter(HookCore *h, Frame *f) {
  if (__builtin_expect(h->set.load(std::memory_order_relaxed) == nullptr, 0)) return kRun;
  ThreadState *t = tls_state;
  if (__builtin_expect(t == nullptr, 0)) t = thread_state_init_saved();
  const uint64_t c = t->ctr.load(std::memory_order_relaxed);
  if (__builtin_expect(c & 1, 0)) {
    h->missed.fetch_add(1, std::memory_order_relaxed);
    return kRun;
  }
  section_enter(t, c);
  uint32_t action = kRun;
  const ListenerSet *s = h->set.load(std::memory_order_acquire);
  if (s) action = s->save_vec ? run_entry_saved(t, h, f, s) : run_entry(t, h, f, s, nullptr, 0);
  section_leave(t, c);
  return action;
}

extern "C" __attribute__((visibility("hidden"))) uint64_t bh_on_return(Frame *f) {
  ThreadState *t = tls_state;
  const uint64_t e = f->regs.rsp - 8;
  if (__builtin_expect(!t || t == &g_sentinel, 0)) shadow_mismatch(nullptr, e);
  uint32_t top = t->top;
  while (top && t->stack[top - 1].rsp < e) top--;  // frames unwound by longjmp
  if (!top || t->stack[top - 1].rsp != e) shadow_mismatch(t, e);
  // Field by field: the entry was written moments ago with 8-byte stores,
  // and a wider copy would stall on store forwarding.
  const ShadowEntry &en = t->stack[top - 1];
  const uint64_t ret = en.ret;
  HookCore *const hook = en.hook;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t->top = top - 1;
  f->jump = ret;
  f->regs.rip = ret;

  const uint64_t c = t->ctr.load(std::memory_order_relaxed);
  if (__builtin_expect(c & 1, 0)) {
    hook->missed.fetch_add(1, std::memory_order_relaxed);
    return ret;
  }
  section_enter(t, c);
  // No push can reuse the entry while the counter is odd (on this thread
  // probes are skipped, signal handlers included), so en.args stays valid.
  const ListenerSet *s = hook->set.load(std::memory_order_acquire);
  if (s && s->n_return) {
    if (s->save_vec)
      run_return_saved(t, hook, f, s, en);
    else
      run_return(t, hook, f, s, en, nullptr, 0);
  }
  section_leave(t, c);
  return ret;
}

// ---- CPU features (once, at engine init) -----------------------------------

VecInfo bh::g_vec = {0, 512, 0, 16};

void bh::vec_init() {
  uint32_t a, b, c, d;
  __cpuid(1, a, b, c, d);
  const bool xsave = (c & (1u << 26)) && (c & (1u << 27));  // XSAVE, OSXSAVE
  if (!xsave) {
    g_vec = {0, 512, 0, 16};  // x87 and SSE only: FXSAVE holds all of it
    return;
  }
  uint32_t xlo, xhi;
  asm volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const uint64_t xcr0 = (uint64_t(xhi) << 32) | xlo;
  // x87, SSE, AVX, MPX, opmask, ZMM_Hi256, Hi16_ZMM: the user state a C
  // listener can change.  Not PKRU (no listener writes it) nor AMX tiles
  // (8 KiB; a thread must ask the kernel for them first).
  const uint64_t mask = xcr0 & 0xffull;
  __cpuid_count(0xd, 1, a, b, c, d);
  if (a & (1u << 1)) {  // XSAVEC: compacted, only the enabled components
    uint32_t size = 576;
    for (unsigned i = 2; i < 8; i++) {
      if (!(mask & (1ull << i))) continue;
      uint32_t sa, sb, sc, sd;
      __cpuid_count(0xd, i, sa, sb, sc, sd);
      if (sc & (1u << 1)) size = (size + 63) & ~63u;  // 64-byte aligned component
      size += sa;
    }
    g_vec = {2, size, mask, 16};
  } else {
    __cpuid_count(0xd, 0, a, b, c, d);
    g_vec = {1, b, mask, 16};  // ebx: the standard area for what XCR0 enables
  }
  // The width of argument registers: zmm when the OS enabled AVX-512
  // state (opmask, ZMM_Hi256, Hi16_ZMM) and the CPU has AVX512F, ymm with
  // AVX state, else xmm.
  __cpuid_count(7, 0, a, b, c, d);
  if ((xcr0 & 0xe6) == 0xe6 && (b & (1u << 16)))
    g_vec.width = 64;
  else if ((xcr0 & 0x6) == 0x6)
    g_vec.width = 32;
}
