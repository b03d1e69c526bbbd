// State shared by the helper translation units. Not installed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bpfhook/helpers.h"

#define BH_LIKELY(x) __builtin_expect(!!(x), 1)
#define BH_UNLIKELY(x) __builtin_expect(!!(x), 0)

namespace bh::helpers {

// Everything a helper keeps per thread, in one initial-exec block: a probe hit
// then costs plain %fs-relative loads and stores, no __tls_get_addr call and
// no lazy-init wrapper. It must stay a trivial type (__thread requires it) and
// small (a dlopen'ed library's initial-exec TLS comes out of glibc's limited
// static-TLS surplus).
struct ThreadState {
  bh_probe_ctx *probe;  // current attach point (bh_probe_ctx_enter)
  uint64_t pid_tgid;    // tgid << 32 | tid; 0 = not cached yet
  uint64_t rng;         // get_prandom_u32 state; 0 = not seeded yet
  uint64_t origin_ip;   // stack walks start here without PT_REGS (bh_stack_origin_mark); 0 = none
  uint64_t origin_fp;   //   and go on up the frame-pointer chain from here
  uint32_t tail_depth;  // tail calls in the current chain
};

extern __thread ThreadState tls __attribute__((tls_model("initial-exec")));

// The process's pid, cached (fork-safe, see task.cpp).
uint32_t cached_tgid();

// printk.cpp: the formatter shared by trace_printk, trace_vprintk and
// snprintf. Formats `fmt` (NUL-terminated within fmt_size) with up to
// `nargs` 64-bit arguments into out[0..cap) (NUL-terminated if cap > 0).
// Returns the full length the message needed (excluding the NUL, like
// snprintf), or -EINVAL for a format the kernel would reject.
long format_bprintf(char *out, size_t cap, const char *fmt, size_t fmt_size, const uint64_t *args, size_t nargs);

}  // namespace bh::helpers
