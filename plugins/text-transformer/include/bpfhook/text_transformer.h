/* The text transformer: finds the `syscall` instructions of a process and
 * sends each system call through a dispatcher, with no kernel support and,
 * by default, no root. The contract between the transformer (this package)
 * and its one consumer, the syscall-trace plugin (plugins/syscall-trace),
 * which links it statically into its plugin library.
 *
 * One transformer per process (it owns process-wide things: the patched
 * text, the SIGSYS handler of Syscall User Dispatch, page 0). Its life:
 *
 *   bh_tt_install(&opts, &hooks, user, err, len)   scan, pick mechanisms, patch
 *   bh_tt_set_interest(nrs, n, all)                which syscalls are wanted
 *   ... every syscall of every thread goes through hooks->enter / ->exit ...
 *   bh_tt_uninstall()                              undo every patch, SUD off
 *
 * The hooks run on the syscall path, on the calling thread, in whatever state
 * it is in (inside malloc, inside a signal handler, in a vfork child, during
 * thread start-up). They must take no lock, allocate nothing, and make no
 * system call through a patched site (the transformer's own raw syscall,
 * bh_tt_raw_syscall, is never patched). The transformer guarantees:
 *   - every register the kernel preserves across `syscall` (all but rax, rcx,
 *     r11) is preserved, and the red zone and the flags; of the vector state
 *     the trampolines save xmm0-15 around hooks that do not keep it
 *     themselves (BH_TT_HOOKS_F_KEEP_VECTORS): a hook that calls code which
 *     may use AVX or AVX-512 (libc's string functions do) keeps the rest
 *     itself (the syscall-trace dispatcher does, see its vec_guard);
 *   - a call with a new stack (clone, clone3) returns in the child on the
 *     child's stack with the child's registers; vfork shares the parent's
 *     stack safely; rt_sigreturn, execve, exit and exit_group are handled
 *     (enter runs for them; exit runs only where the call returns);
 *   - hooks may run re-entrantly (a signal handler's syscall inside another
 *     syscall's hook) and concurrently on many threads.
 */
#ifndef BPFHOOK_TEXT_TRANSFORMER_H
#define BPFHOOK_TEXT_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One system call as the hooks see it: the trampoline's own saved
 * registers (nr and args are where it pushed rax and the argument
 * registers); valid only during the hook. */
struct bh_tt_call {
  uint64_t nr;      /* rax at the call: the syscall number */
  uint64_t args[6]; /* rdi rsi rdx r10 r8 r9 (the kernel's order) */
  uint64_t site;    /* address of the `syscall` instruction (0 if unknown) */
  uint32_t mechanism; /* BH_TT_MECH_* that delivered it */
  uint32_t reserved;
};

/* Every call the hooks get is the `call` of one of these: 8 bytes before it
 * that the hook may write (nobody else reads them). With a tracepoint's
 * common header written there, header, nr and args are the kernel's
 * trace_event_raw_sys_enter (64 bytes), in place: the dispatcher runs a
 * program that only reads its context on the call itself, no copy. Callers
 * of the hooks other than the transformer (tests, a "dispatch" call) must
 * pass a call inside one too. */
struct bh_tt_call_frame {
  uint64_t headroom;
  struct bh_tt_call call;
};


/* Returned by enter. */
enum bh_tt_action {
  BH_TT_RUN = 0,  /* execute the system call (then call exit) */
  BH_TT_SKIP = 1, /* do not execute it; its result is *ret (exit is still called) */
};

struct bh_tt_hooks {
  size_t sz; /* sizeof(struct bh_tt_hooks) */
  /* Before the call. May set *ret and return BH_TT_SKIP (bpf_override_return
   * on sys_enter). Must not change call->nr or args. */
  int (*enter)(void *user, const struct bh_tt_call *call, int64_t *ret);
  /* After the call, with its result (or the skip's); may replace *ret. Not
   * called where the call does not return (exit, exit_group, a successful
   * execve, rt_sigreturn); called in both parent and child of fork/clone
   * (child: *ret == 0), on the child's own stack. May be NULL. */
  void (*exit)(void *user, const struct bh_tt_call *call, int64_t *ret);
  /* BH_TT_HOOKS_F_*. Added after the first version of this header: a
   * smaller sz (without it) means 0. */
  uint32_t flags;
};

/* The hooks leave every vector register as they found it (xmm0-15 too:
 * their C code uses none, or saves what it uses). The transformer then calls
 * enter for a call that needs nothing else without saving any vector
 * register. Without it, it saves xmm0-15 around the hooks, whose C code must
 * then touch nothing more (baseline x86-64 SSE code that calls no libc
 * string function). */
#define BH_TT_HOOKS_F_KEEP_VECTORS 0x1u

/* How a site reaches the dispatcher. */
enum bh_tt_mechanism {
  BH_TT_MECH_NONE = 0,
  BH_TT_MECH_REL32 = 1, /* site rewritten to jmp/call rel32 into a stub near its module (no root) */
  BH_TT_MECH_PAGE0 = 2, /* site rewritten to `call *%rax` into the page-0 trampoline (root) */
  BH_TT_MECH_SUD = 4,   /* caught by Syscall User Dispatch (SIGSYS), for sites that cannot be patched */
};

/* Levels of bh_tt_opts.log, the same numbers as bpfhook/plugin.h's bh_log_level. */
enum bh_tt_log_level { BH_TT_LOG_DEBUG = 0, BH_TT_LOG_INFO = 1, BH_TT_LOG_WARN = 2, BH_TT_LOG_ERROR = 3 };

struct bh_tt_opts {
  size_t sz; /* sizeof(struct bh_tt_opts) */
  /* BH_TT_MECH_* allowed; 0 = automatic (REL32 where a site can be patched,
   * then PAGE0 if page 0 can be mapped, then SUD for the rest). */
  uint32_t mechanisms;
  /* Also rewrite code mapped later (dlopen, mmap/mprotect with PROT_EXEC). */
  uint32_t watch_new_code;
  /* Where log lines go (may be NULL); level: BH_TT_LOG_*. */
  void (*log)(void *log_ctx, int level, const char *msg);
  void *log_ctx;
};

/* What the transformer did, for `bpfhook` to report. */
struct bh_tt_stats {
  size_t sz;
  uint32_t mechanisms_active; /* BH_TT_MECH_* in use now */
  uint32_t modules_scanned;
  uint64_t sites_found;       /* syscall instructions found at instruction starts */
  uint64_t sites_rel32;       /* patched with rel32 */
  uint64_t sites_page0;       /* patched to call *%rax */
  uint64_t sites_sud;         /* left to Syscall User Dispatch */
  uint64_t sites_untouched;   /* number known, not of interest: left as they are */
  uint64_t bytes_undecodable; /* bytes the decoder skipped */
};

/* Installs the transformer in the calling process. Returns 0, or a negative
 * errno and a message (-EALREADY if installed). On failure nothing stays
 * patched. */
int bh_tt_install(const struct bh_tt_opts *opts, const struct bh_tt_hooks *hooks, void *user, char *err,
                  size_t err_len);
/* Which syscall numbers the hooks want (`all`: every one, nrs ignored).
 * Sites whose number is known at the site and not wanted may stay untouched,
 * so they cost nothing; widening the set patches them. */
int bh_tt_set_interest(const uint32_t *nrs, size_t n, int all);
/* Which of the wanted numbers also want the exit hook (`all`: every wanted
 * one; the default until first called). A call whose number is wanted for
 * enter only skips the exit round trip (about 5 ns). Added after the first
 * version of this header. */
int bh_tt_set_exit_interest(const uint32_t *nrs, size_t n, int all);
/* Undoes every patch and turns dispatch off. Returns once no thread can
 * enter the hooks again (a hook already running may finish). */
int bh_tt_uninstall(void);
int bh_tt_get_stats(struct bh_tt_stats *out);
/* A system call that never goes through the transformer. */
int64_t bh_tt_raw_syscall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                          uint64_t a5);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_TEXT_TRANSFORMER_H */
