// Helpers about "current": time, cpu, pid/tid, uid/gid, comm, randomness.
//
// pid_tgid is on many programs' hot path, so it is cached per thread. The
// cache must not survive fork(): the child's only thread inherits the parent
// thread's thread-local block. A pthread_atfork child handler clears it;
// since the child has exactly that one thread, clearing the calling thread's
// block is complete. Not covered: children made by a raw clone syscall or by
// glibc's _Fork (no atfork handlers run), and probes that fire inside a vfork
// child (it shares the parent thread's TLS) — there the parent's ids show.

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

namespace bh::helpers {

__thread ThreadState tls __attribute__((tls_model("initial-exec")));

namespace {

void child_after_fork() {
  tls.pid_tgid = 0;
  // A child must not replay the parent's random sequence.
  tls.rng = 0;
}

// Registered when the library is loaded; glibc unregisters atfork handlers of
// a dlclose'd object itself (they are keyed by the object's __dso_handle).
__attribute__((constructor)) void register_atfork() { pthread_atfork(nullptr, nullptr, child_after_fork); }

__attribute__((noinline)) uint64_t fill_pid_tgid() {
  const uint64_t v = (uint64_t(uint32_t(getpid())) << 32) | uint32_t(gettid());
  tls.pid_tgid = v;
  return v;
}

inline uint64_t pid_tgid() {
  const uint64_t v = tls.pid_tgid;
  return BH_LIKELY(v != 0) ? v : fill_pid_tgid();
}

uint64_t clock_ns(clockid_t clk) {
  struct timespec ts;
  // Through the vDSO for these clocks: no syscall.
  clock_gettime(clk, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

__attribute__((noinline)) uint64_t seed_rng() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) {
    // No entropy yet (early boot) or no syscall: time and addresses still
    // differ between threads and runs, which is all prandom promises.
    seed = clock_ns(CLOCK_MONOTONIC) ^ (reinterpret_cast<uintptr_t>(&tls) << 16) ^ pid_tgid();
  }
  return seed | 1;  // 0 means "not seeded"
}

}  // namespace

uint32_t cached_tgid() { return uint32_t(pid_tgid() >> 32); }

}  // namespace bh::helpers

using namespace bh::helpers;

extern "C" {

uint64_t bh_helper_ktime_get_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return clock_ns(CLOCK_MONOTONIC); }

uint64_t bh_helper_ktime_get_boot_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  return clock_ns(CLOCK_BOOTTIME);
}

uint64_t bh_helper_ktime_get_coarse_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  return clock_ns(CLOCK_MONOTONIC_COARSE);
}

uint64_t bh_helper_get_prandom_u32(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  // splitmix64 on a per-thread state: no shared cache line, no lock. Not
  // cryptographic, and the kernel's prandom is not either.
  uint64_t s = tls.rng;
  if (BH_UNLIKELY(s == 0)) s = seed_rng();
  s += 0x9e3779b97f4a7c15ull;
  tls.rng = s;
  uint64_t z = s;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return uint32_t(z >> 32);
}

uint64_t bh_helper_get_smp_processor_id(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  // glibc answers from the rseq area when the kernel supports it (no syscall).
  const int cpu = sched_getcpu();
  return cpu < 0 ? 0 : uint64_t(cpu);
}

uint64_t bh_helper_get_current_pid_tgid(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return pid_tgid(); }

uint64_t bh_helper_get_current_uid_gid(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  // Not cached: setuid() and friends may change them at any time, and there
  // is no hook to invalidate a cache. The kernel reports the real ids.
  return (uint64_t(uint32_t(getgid())) << 32) | uint32_t(getuid());
}

uint64_t bh_helper_get_current_comm(uint64_t buf, uint64_t size, uint64_t, uint64_t, uint64_t) {
  char *out = reinterpret_cast<char *>(buf);
  if (out == nullptr || size == 0) return uint64_t(-EINVAL);
  // The calling thread's name, as the kernel's task->comm. Not cached: the
  // name may change (pthread_setname_np, /proc/self/task/N/comm) unseen.
  char name[16] = {0};  // TASK_COMM_LEN
  if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) {
    memset(out, 0, size);
    return uint64_t(-EINVAL);
  }
  // strscpy_pad: at most size-1 bytes, NUL, zero padding to size.
  size_t n = strnlen(name, sizeof name - 1);
  if (n > size - 1) n = size - 1;
  memcpy(out, name, n);
  memset(out + n, 0, size - n);
  return 0;
}

}  // extern "C"
