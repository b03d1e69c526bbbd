// The hot path: what the trampolines call on every hooked call and return.
//
// No locks, no allocation, no atomics with more than acquire/release
// ordering (see threads.cpp for how writers make that enough).

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "internal.h"
#include "sys.h"

using namespace bh;

namespace {

inline void section_enter(ThreadState *t, uint64_t c) {
    t->ctr.store(c + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (__builtin_expect(g_reader_fence, 0)) std::atomic_thread_fence(std::memory_order_seq_cst);
}

inline void section_leave(ThreadState *t, uint64_t c) {
    t->ctr.store(c + 2, std::memory_order_release);
}

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
    const uint64_t args[6] = {f->regs.rdi, f->regs.rsi, f->regs.rdx,
                              f->regs.rcx, f->regs.r8,  f->regs.r9};
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
                     static_cast<unsigned long long>(e), static_cast<unsigned long long>(top_rsp),
                     t ? t->top : 0);
    sys::call6(SYS_write, 2, reinterpret_cast<long>(msg), n);
    abort();
}

}  // namespace

extern "C" __attribute__((visibility("hidden"))) uint32_t bh_on_enter(HookCore *h, Frame *f) {
    if (__builtin_expect(h->set.load(std::memory_order_relaxed) == nullptr, 0)) return kRun;
    ThreadState *t = tls_state;
    if (__builtin_expect(t == nullptr, 0)) t = thread_state_init();
    const uint64_t c = t->ctr.load(std::memory_order_relaxed);
    if (__builtin_expect(c & 1, 0)) {
        h->missed.fetch_add(1, std::memory_order_relaxed);
        return kRun;
    }
    section_enter(t, c);
    uint32_t action = kRun;
    const ListenerSet *s = h->set.load(std::memory_order_acquire);
    if (s) {
        bh_hook_call call;
        call.func_ip = h->addr;
        call.regs = &f->regs;
        call.cookie = 0;
        call.retval = 0;
        call.flags = 0;
        call._reserved = 0;
        call.entry_args = nullptr;
        call.xmm = f->xmm;
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
    }
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
        bh_hook_call call;
        call.func_ip = hook->addr;
        call.regs = &f->regs;
        call.cookie = 0;
        call.retval = f->regs.rax;
        call.flags = BH_HOOK_CALL_RETURN;
        call._reserved = 0;
        call.entry_args = en.args;
        call.xmm = f->xmm;
        call._prev = t->current;
        t->current = &call;
        for (const Listener *l = s->items + s->n_entry, *end = l + s->n_return; l != end; ++l) {
            call.cookie = l->cookie;
            l->fn(l->user, &f->regs, &call);
        }
        t->current = call._prev;
    }
    section_leave(t, c);
    return ret;
}
