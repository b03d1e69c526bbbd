// bpf_loop (181): runs a callback of the program up to nr_loops times, with
// the kernel's semantics (kernel/bpf/bpf_iter.c): flags must be 0 (-EINVAL),
// at most BPF_MAX_LOOPS (1 << 23) iterations (-E2BIG), callback(i, ctx)
// for i = 0, 1, ... until it returns non-zero (the verifier holds it to 0 or
// 1); returns the number of iterations done, the stopping one included.
#include <errno.h>

#include "internal.h"

namespace {
constexpr uint64_t kMaxLoops = uint64_t(1) << 23;  // the kernel's BPF_MAX_LOOPS
}

extern "C" uint64_t bh_helper_loop(uint64_t nr_loops, uint64_t callback_fn, uint64_t callback_ctx, uint64_t flags,
                                   uint64_t) {
  // nr_loops is a u32 in the kernel's prototype: the upper half is ignored.
  const uint64_t n = uint32_t(nr_loops);
  if (flags != 0) return uint64_t(int64_t(-EINVAL));
  if (n > kMaxLoops) return uint64_t(int64_t(-E2BIG));
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t ret = 0;
    const int rc = bh_vm_callback_invoke(callback_fn, i, callback_ctx, 0, 0, 0, nullptr, 0, &ret);
    // -EINVAL: not a callback of this program; -ECANCELED: the run ends
    // (the value returned then is never seen).
    if (rc != 0) return uint64_t(int64_t(rc));
    if (ret != 0) return i + 1;
  }
  return n;
}
