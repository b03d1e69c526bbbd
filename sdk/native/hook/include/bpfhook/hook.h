/* SPDX-License-Identifier: MIT */
/*
 * bpfhook inline-hook engine (x86-64, Linux): the C ABI.
 *
 * Order of calls:
 *   1. bh_hook_engine__new()          once per user (the plugin, a test, ...)
 *   2. bh_hook_attach()               any number of times, from any thread,
 *                                     also from inside a listener
 *   3. bh_hook_detach()               once per link; when it returns no
 *                                     thread runs that listener any more, so
 *                                     its user data may be freed; the last
 *                                     link of a function unpatches it, and
 *                                     its trampoline is freed once no thread
 *                                     can be inside it
 *   4. bh_hook_engine__destroy()      detaches what the engine still holds
 *
 * Many hooks at once: bh_hook_begin_transaction() ... attach/detach ...
 * bh_hook_end_transaction() patches every function they touched while the
 * other threads are paused once (Frida-gum's begin/end_transaction).
 *
 * Every fallible call returns 0 or a negative errno value and, when the
 * caller passes an errbuf in the options, a message that begins with the
 * function's name or address ("attach 'add' (0x7f12...): ...").
 *
 * Listeners run on whatever thread calls the hooked function, with no lock
 * held.  A listener that calls a hooked function (or any code that does) does
 * not re-enter listeners on the same thread: such nested calls run the
 * original function and are counted as missed (bh_hook_link__missed).
 *
 * See sdk/native/hook/README.md for the design.
 */
#ifndef BPFHOOK_HOOK_H
#define BPFHOOK_HOOK_H

#include <stddef.h>
#include <stdint.h>
#include <asm/ptrace.h> /* struct pt_regs: the kernel's x86-64 layout */

#ifdef __cplusplus
extern "C" {
#endif

#ifndef BH_HOOK_API
#define BH_HOOK_API __attribute__((visibility("default")))
#endif

struct bh_hook_engine;
struct bh_hook_link;
struct bh_hook_call;

/* What a listener is attached as. */
enum bh_hook_kind {
  BH_HOOK_ENTRY = 0,   /* uprobe: runs before the function body */
  BH_HOOK_RETURN = 1,  /* uretprobe: runs when the function returns */
  BH_HOOK_REPLACE = 2, /* ureplace: the body never runs; the listener's
                           value is returned (one per function) */
};

/*
 * A listener.  `regs` holds every integer register at the probe point in
 * the kernel's pt_regs layout:
 *   entry:  rip = the function's address, rsp = the caller's rsp at entry
 *           (pointing at the return address), orig_rax = -1, eflags, cs, ss
 *           read from the CPU.  Argument registers written by an entry
 *           listener are what the function sees.
 *   return: rip = the address returned to, rsp = the caller's rsp after the
 *           return, rax (rdx) = the return value.  Writing rax changes it.
 * The value returned by the listener is the function's return value for
 * BH_HOOK_REPLACE and ignored otherwise.
 */
typedef uint64_t (*bh_hook_fn)(void *user, struct pt_regs *regs, struct bh_hook_call *call);

/*
 * The running probe: what helpers (get_func_ip, get_func_arg, get_func_ret,
 * get_attach_cookie, override_return, set_retval) read.  Valid only inside a
 * listener, on the listener's thread.  Read fields directly or through the
 * accessors below; write only through the accessors.
 */
struct bh_hook_call {
  uint64_t func_ip;           /* address of the hooked function */
  struct pt_regs *regs;       /* the probe's registers */
  uint64_t cookie;            /* cookie of the listener now running */
  uint64_t retval;            /* return probes: the return value;
                                 entry: the override value, if set */
  uint32_t flags;             /* BH_HOOK_CALL_* */
  uint32_t xmm_stride;        /* bytes from one register to the next
                                 in `xmm` (16, 32 or 64: saved at the
                                 width the CPU has enabled) */
  const uint64_t *entry_args; /* return probes: rdi, rsi, rdx, rcx,
                                 r8, r9 as they were at entry */
  const void *xmm;            /* xmm0..xmm7 at entry (the low 16
                                 bytes of each xmm_stride-byte slot);
                                 xmm0..xmm1 at return; NULL when
                                 every listener is NO_VECTOR */
  struct bh_hook_call *_prev; /* private: the probe this one nests in */
};

#define BH_HOOK_CALL_RETURN (1u << 0) /* a return probe */
#define BH_HOOK_CALL_OVERRIDE                \
  (1u << 1) /* the function returns `retval` \
               without running its body */
#define BH_HOOK_CALL_MIDFUNC                    \
  (1u << 2) /* an entry probe inside a function \
               (func_offset != 0): no override */

/* The probe running on this thread, or NULL outside listeners. */
BH_HOOK_API struct bh_hook_call *bh_hook_current(void);

BH_HOOK_API uint64_t bh_hook_call__func_ip(const struct bh_hook_call *call);
BH_HOOK_API uint64_t bh_hook_call__cookie(const struct bh_hook_call *call);
/* The n-th integer argument (SysV order; n >= 6 reads the caller's stack).
 * In return probes arguments 0..5 are the values at entry; stack arguments
 * are read from the caller's frame and may have been overwritten by the
 * callee.  -EINVAL if n > 63. */
BH_HOOK_API int bh_hook_call__arg(const struct bh_hook_call *call, uint32_t n, uint64_t *value);
/* The return value; -EOPNOTSUPP in an entry probe. */
BH_HOOK_API int bh_hook_call__ret(const struct bh_hook_call *call, uint64_t *value);
/* Entry probes only: return `value` to the caller at once; the function's
 * body does not run (bpf_override_return).  The last call wins. */
BH_HOOK_API int bh_hook_call__override_return(struct bh_hook_call *call, uint64_t value);
/* Return probes: change the value the caller receives.  Entry probes: same
 * as override_return. */
BH_HOOK_API int bh_hook_call__set_retval(struct bh_hook_call *call, uint64_t value);
/* xmm register n (0..7 at entry, 0..1 at return) as 16 bytes; NULL if out
 * of range. */
BH_HOOK_API const void *bh_hook_call__xmm(const struct bh_hook_call *call, uint32_t n);

/* Log levels for bh_hook_engine_opts.log. */
enum bh_hook_log_level { BH_HOOK_LOG_WARN = 1, BH_HOOK_LOG_INFO = 2, BH_HOOK_LOG_DEBUG = 3 };

/* Every options struct starts with `sz` (sizeof as the caller knows it);
 * fields past `sz` read as zero; non-zero bytes past the fields this library
 * knows are rejected with -EINVAL. */
struct bh_hook_engine_opts {
  size_t sz;
  /* Signal used to pause threads while code is patched.  0 = SIGRTMAX-3.
   * Process-wide: the first engine's choice stays. */
  int patch_signal;
  /* How long attach/detach wait for every thread to pause; 0 = 1000 ms. */
  uint32_t quiesce_timeout_ms;
  /* Optional sink for warnings (a thread that could not be paused, ...). */
  void (*log)(void *ctx, int level, const char *msg);
  void *log_ctx;
  /* Caller-owned buffer for the error message of bh_hook_engine__new. */
  char *errbuf;
  size_t errbuf_sz;
};
#define bh_hook_engine_opts__last_field errbuf_sz

struct bh_hook_attach_opts {
  size_t sz;
  uint64_t cookie;       /* bpf_get_attach_cookie */
  const char *func_name; /* names the function in error messages */
  size_t func_size;      /* the whole function's size (from func -
                            func_offset) if known: the scan for
                            branches back into the patched bytes then
                            covers the function, and the attach is
                            refused if it cannot decode all of it
                            (0 = scan 512 bytes past the patch, or to
                            the mapping end, stopping quietly) */
  char *errbuf;          /* caller-owned buffer for the error message */
  size_t errbuf_sz;
  /* Bytes from the function's start to `func` (a probe at symbol+offset).
   * Non-zero: `func` must be an instruction boundary of a linear decode
   * from func - func_offset (else -EINVAL naming the nearest boundaries);
   * only BH_HOOK_ENTRY is allowed there (-EINVAL for RETURN and REPLACE:
   * [rsp] is not a return address), and an entry listener cannot override
   * the return value.  The probe keeps every register, the flags and the
   * 128-byte red zone below rsp as they were. */
  size_t func_offset;
  uint32_t flags; /* BH_HOOK_ATTACH_F_* */
  uint32_t _pad;
};
#define bh_hook_attach_opts__last_field _pad

/* The listener touches no vector, x87 or mask register and calls nothing
 * that does (say, a function compiled with -mgeneral-regs-only that calls
 * JIT code without helpers).  While every listener of a function says so the
 * engine does not save that state; otherwise it saves all of it (XSAVE with
 * the CPU's enabled components) around the listeners. bh_hook_call.xmm is
 * then NULL. */
#define BH_HOOK_ATTACH_F_NO_VECTOR (1u << 0)

/* The listener touches at most xmm0-15, with legacy SSE instructions: C
 * compiled for baseline x86-64 that calls nothing using more (libc's string
 * functions do: AVX, vzeroupper), no x87, no floating-point arithmetic (the
 * MXCSR flags are not kept). While every listener of a function is so (or
 * NO_VECTOR), the engine saves xmm0-15 inside a function, xmm0-7 at its
 * entry and xmm0-1 at a return, with plain moves, instead of the whole state
 * with XSAVE (BH_PROG_F_VECTOR_CLEAN programs, bpfhook/plugin.h). */
#define BH_HOOK_ATTACH_F_SSE_ONLY (1u << 1)

/* NULL and errno set on error. */
BH_HOOK_API struct bh_hook_engine *bh_hook_engine__new(const struct bh_hook_engine_opts *opts);
/* Detaches every link the engine still holds, then frees it.  Must not run
 * concurrently with attach calls on the same engine. */
BH_HOOK_API void bh_hook_engine__destroy(struct bh_hook_engine *engine);

/*
 * Attach `fn` to the function at `func`.  Listeners of a function run in
 * attach order, entry and replace listeners before the body, return
 * listeners after it.  The first attachment patches the function; the last
 * detach restores its bytes.
 * Errors: -EINVAL (bad argument), -EFAULT (not in an executable mapping),
 * -ENOTSUP (its first bytes cannot be relocated: too short, a branch back
 * into them, ...), -ERANGE (an operand out of reach of the trampoline),
 * -EEXIST (a second REPLACE), -EAGAIN / -EBUSY (a thread could not be
 * paused, or is stopped inside the bytes to patch), -ENOMEM.
 */
BH_HOOK_API int bh_hook_attach(struct bh_hook_engine *engine, void *func, enum bh_hook_kind kind, bh_hook_fn fn,
                               void *user, const struct bh_hook_attach_opts *opts, struct bh_hook_link **link);
/* Removes the listener and frees the link.  When it returns no thread runs
 * the listener any more, except a caller that is itself inside it. */
BH_HOOK_API int bh_hook_detach(struct bh_hook_link *link);

BH_HOOK_API void *bh_hook_link__func(const struct bh_hook_link *link);
BH_HOOK_API enum bh_hook_kind bh_hook_link__kind(const struct bh_hook_link *link);
/* Calls of the function this link's listener did not see (nested in another
 * listener on the same thread, or return probes over the shadow stack's
 * depth).  Counted per function. */
BH_HOOK_API uint64_t bh_hook_link__missed(const struct bh_hook_link *link);

/* What the engine did to a function; for tests and diagnostics. */
struct bh_hook_func_info {
  size_t sz;
  uint32_t patched;   /* 1 while the entry jump is in place */
  uint32_t patch_len; /* 5 (jmp rel32) or 14 (jmp [rip]; .quad) */
  uint32_t reloc_len; /* bytes of whole instructions relocated */
  uint32_t n_listeners;
  uint64_t trampoline;  /* where the entry jump goes */
  uint8_t original[16]; /* the function's first reloc_len bytes */
};
#define bh_hook_func_info__last_field original
/* -ENOENT if the engine does not hook `func` (never did, or its trampoline
 * was freed after the last detach). */
BH_HOOK_API int bh_hook_get_func_info(const void *func, struct bh_hook_func_info *info);

/* Process-wide counters of the patcher (diagnostics, tests). */
struct bh_hook_stats {
  size_t sz;
  uint64_t pauses;              /* attach/detach operations that paused threads */
  uint64_t threads_paused;      /* threads parked in the pause handler, summed */
  uint64_t threads_moved;       /* parked threads moved from inside the patched
                                   bytes to the relocated copy */
  uint64_t threads_unpausable;  /* threads that blocked the signal but were
                                   proven asleep outside the patched bytes */
  uint64_t transactions;        /* outermost transaction ends that patched */
  uint64_t checks;              /* pauses that only looked for threads in
                                   retired trampolines (not in `pauses`) */
  uint64_t trampolines;         /* hooked functions' trampolines in memory */
  uint64_t trampolines_retired; /* of those: unhooked, waiting to be freed */
  uint64_t trampolines_freed;   /* freed since start */
  uint64_t code_bytes;          /* trampoline memory in use (bytes) */
};
#define bh_hook_stats__last_field code_bytes
BH_HOOK_API int bh_hook_get_stats(struct bh_hook_stats *stats);

/*
 * Transactions.  Between begin and the matching end, bh_hook_attach and
 * bh_hook_detach validate, build trampolines and change listener lists as
 * usual but leave the functions' code alone; the outermost end writes every
 * patch (and restores every unhooked function) in one pause of the other
 * threads.  Transactions nest (only the outermost end writes) and are
 * process-wide: attaches from other threads meanwhile join the open one.
 * Links attached inside a transaction are live (their listeners run) once
 * the outermost end returns 0.
 *
 * A failed end writes nothing: every link attached in the transaction to a
 * function that was not hooked before fails with the error
 * (bh_hook_link__error; its listener never runs; bh_hook_detach only frees
 * it), and a function whose last link was detached keeps its jump to an
 * empty trampoline (as when a plain detach cannot write).  The message
 * names the function that refused.  Errors: -EINVAL (no transaction open,
 * or no engine yet), those of bh_hook_attach's patching (-EBUSY, -EAGAIN).
 */
struct bh_hook_txn_opts {
  size_t sz;
  char *errbuf; /* caller-owned buffer for the error message */
  size_t errbuf_sz;
};
#define bh_hook_txn_opts__last_field errbuf_sz
/* 0, or -EINVAL if no engine exists yet. */
BH_HOOK_API int bh_hook_begin_transaction(void);
/* opts may be NULL. */
BH_HOOK_API int bh_hook_end_transaction(const struct bh_hook_txn_opts *opts);
/* 0 while the link is (or will be, at its transaction's end) attached; the
 * negative errno of its transaction's end if that failed. */
BH_HOOK_API int bh_hook_link__error(const struct bh_hook_link *link);

/*
 * Trampolines of functions no longer hooked are freed once a pause of the
 * other threads shows none of them in one (or about to return into one).
 * Every patching pause looks, and a dedicated pause runs when 8 wait.
 * bh_hook_collect() looks now (one pause); it returns how many still wait
 * (a thread was in one, or this thread is inside a listener).
 */
BH_HOOK_API int bh_hook_collect(void);

/* Return-probe entries pending on the calling thread (diagnostics). */
BH_HOOK_API uint32_t bh_hook_thread_shadow_depth(void);

#ifdef __cplusplus
}
#endif

#endif /* BPFHOOK_HOOK_H */
