// Reading memory that may not be mapped, without crashing: the backends of
// probe_read*, and of %s / %pI4 in the printk formatter.
//
// FAULT_GUARD (x86-64): two small assembly routines do the loads. If one of
// them faults, our SIGSEGV/SIGBUS handler sees an instruction pointer inside
// the routine and moves it to the routine's error exit, which returns -EFAULT.
// Nothing is set up per call (no sigsetjmp, no thread-local guard flag, no
// syscall), so a good read costs about what a memcpy costs. Any other fault is
// passed to the handler that was installed before ours.
//
// SYSCALL: process_vm_readv(2) on our own pid. The kernel does the checking;
// it costs one syscall per read (and one per page for strings), but needs no
// signal handler, so it is the fallback where ours cannot be installed.
//
// Measured on the development VM (see tests/helpers_selftest.cpp --bench): an
// 8-byte read costs a few ns with FAULT_GUARD, several hundred with SYSCALL.

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <initializer_list>

#include "internal.h"

namespace bh::helpers {
namespace {

constexpr long kPage = 4096;  // the smallest page size: a string read never crosses one in a single syscall

// ---- backend state ---------------------------------------------------------
// 0 = undecided, kInstalling while one thread installs the handler, else the
// bh_safe_read_mode in effect. Read with one relaxed load per call.
constexpr int kUndecided = 0;
constexpr int kInstalling = -1;
std::atomic<int> g_mode{kUndecided};

#if defined(__x86_64__)
#define BH_HAVE_FAULT_GUARD 1

// ---- the guarded routines ----------------------------------------------------
// bh_gcopy(dst, src, n) -> 0 or -EFAULT.
//   Word loop for small sizes (probe reads are mostly 1..16 bytes, where
//   `rep movsb` has a start-up cost of tens of cycles), `rep movsb` from 64.
// bh_gstr(dst, src, n) -> length including NUL, n if truncated, or -EFAULT.
//   n >= 1. Byte loop: never loads a byte past the terminating NUL, so it can
//   never fault on a page the string does not reach.
// Each routine's fixup label must come right after its body: the handler
// treats [start, fixup) as the guarded range.
asm(R"(
  .text
  .p2align 4
  .globl bh_gcopy
  .hidden bh_gcopy
  .type bh_gcopy, @function
bh_gcopy:
  .cfi_startproc
  mov %rdx, %rcx
  cmp $64, %rcx
  jae 5f
1:
  cmp $8, %rcx
  jb 2f
  mov (%rsi), %rax
  mov %rax, (%rdi)
  add $8, %rsi
  add $8, %rdi
  sub $8, %rcx
  jmp 1b
2:
  cmp $4, %rcx
  jb 3f
  mov (%rsi), %eax
  mov %eax, (%rdi)
  add $4, %rsi
  add $4, %rdi
  sub $4, %rcx
3:
  test %rcx, %rcx
  jz 6f
  movzbl (%rsi), %eax
  mov %al, (%rdi)
  inc %rsi
  inc %rdi
  dec %rcx
  jmp 3b
5:
  rep movsb
6:
  xor %eax, %eax
  ret
  .globl bh_gcopy_fixup
  .hidden bh_gcopy_fixup
bh_gcopy_fixup:
  mov $-14, %rax
  ret
  .cfi_endproc
  .size bh_gcopy, .-bh_gcopy

  .p2align 4
  .globl bh_gstr
  .hidden bh_gstr
  .type bh_gstr, @function
bh_gstr:
  .cfi_startproc
  xor %eax, %eax
  lea -1(%rdx), %r8
1:
  cmp %r8, %rax
  jae 2f
  movzbl (%rsi,%rax), %ecx
  mov %cl, (%rdi,%rax)
  inc %rax
  test %ecx, %ecx
  jnz 1b
  ret
2:
  movb $0, (%rdi,%rax)
  inc %rax
  ret
  .globl bh_gstr_fixup
  .hidden bh_gstr_fixup
bh_gstr_fixup:
  mov $-14, %rax
  ret
  .cfi_endproc
  .size bh_gstr, .-bh_gstr
)");

// Hidden, so the addresses are rip-relative constants, not GOT loads.
#define BH_HIDDEN __attribute__((visibility("hidden")))
extern "C" {
BH_HIDDEN long bh_gcopy(void *dst, const void *src, size_t n);
BH_HIDDEN long bh_gstr(void *dst, const void *src, size_t n);
BH_HIDDEN extern const char bh_gcopy_fixup[];
BH_HIDDEN extern const char bh_gstr_fixup[];
}

// The handlers that were installed before ours; written before ours goes in
// (see install_guard), read only by on_fault.
struct sigaction g_prev_segv;
struct sigaction g_prev_bus;

bool in_range(uintptr_t ip, const void *start, const void *end) {
  return ip >= reinterpret_cast<uintptr_t>(start) && ip < reinterpret_cast<uintptr_t>(end);
}

// Hands a fault that is not ours to whoever handled it before us, so hosts
// that rely on SIGSEGV (V8's wasm trap handler, crash reporters) keep working.
//
// If ours was re-installed on top of a newcomer that itself chains to us, the
// newcomer calls back into on_fault from inside our forward: t_forwarding
// notices, and the fault gets the default action instead of looping.
__thread bool t_forwarding __attribute__((tls_model("initial-exec")));

void forward(int sig, siginfo_t *si, void *uc) {
  const struct sigaction &prev = sig == SIGBUS ? g_prev_bus : g_prev_segv;
  if (!t_forwarding) {
    bool called = false;
    t_forwarding = true;
    if (prev.sa_flags & SA_SIGINFO) {
      if (prev.sa_sigaction != nullptr) {
        prev.sa_sigaction(sig, si, uc);
        called = true;
      }
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
      prev.sa_handler(sig);
      called = true;
    }
    t_forwarding = false;
    if (called) return;
  }
  // No previous handler. A signal sent by kill() that was ignored stays
  // ignored; anything else gets the default action, as if we were not here: a
  // real fault re-executes when we return and now kills with a core dump; a
  // sent one is re-raised (blocked until we return, then delivered).
  if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler == SIG_IGN && si->si_code <= 0) return;
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  if (si->si_code <= 0) raise(sig);
}

void on_fault(int sig, siginfo_t *si, void *ucv) {
  auto *uc = static_cast<ucontext_t *>(ucv);
  // si_code > 0: raised by the CPU, not sent with kill() while we happened to
  // be copying.
  if (si->si_code > 0) {
    const uintptr_t ip = uc->uc_mcontext.gregs[REG_RIP];
    if (in_range(ip, reinterpret_cast<const void *>(&bh_gcopy), bh_gcopy_fixup)) {
      uc->uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(bh_gcopy_fixup);
      return;
    }
    if (in_range(ip, reinterpret_cast<const void *>(&bh_gstr), bh_gstr_fixup)) {
      uc->uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(bh_gstr_fixup);
      return;
    }
  }
  forward(sig, si, ucv);
}

bool handler_is_ours(int sig) {
  struct sigaction cur;
  if (sigaction(sig, nullptr, &cur) != 0) return false;
  return (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault;
}

// Installs on_fault for SIGSEGV and SIGBUS unless it is already there (signal
// dispositions survive fork, so children keep it). Called on first use and
// when the embedder picks a mode, never on a hot path. Returns success.
bool install_guard() {
  for (int sig : {SIGSEGV, SIGBUS}) {
    if (handler_is_ours(sig)) continue;
    struct sigaction &prev = sig == SIGBUS ? g_prev_bus : g_prev_segv;
    // Record the predecessor before we become reachable, so a fault on
    // another thread right after the switch already finds it.
    if (sigaction(sig, nullptr, &prev) != 0) return false;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    // SA_ONSTACK: use the thread's alternate stack if the host set one (a
    // fault from stack overflow would otherwise have nowhere to run). No
    // SA_NODEFER: the handler returns normally, so sigreturn restores the mask.
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, nullptr) != 0) return false;
  }
  return true;
}
#else
#define BH_HAVE_FAULT_GUARD 0
#endif

// ---- SYSCALL backend --------------------------------------------------------
int vm_read(void *dst, const void *src, size_t n) {
  struct iovec local = {dst, n};
  struct iovec remote = {const_cast<void *>(src), n};
  const ssize_t got = process_vm_readv(static_cast<pid_t>(cached_tgid()), &local, 1, &remote, 1, 0);
  return got == static_cast<ssize_t>(n) ? 0 : -EFAULT;
}

// Reads page by page so that a string ending just before an unmapped page is
// still read (a single large read would fail as a whole on the next page).
long vm_read_str(char *dst, const char *src, size_t n) {
  size_t done = 0;
  const size_t limit = n - 1;  // room for the NUL
  while (done < limit) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(src) + done;
    size_t chunk = static_cast<size_t>(kPage - static_cast<long>(at % kPage));
    if (chunk > limit - done) chunk = limit - done;
    if (vm_read(dst + done, src + done, chunk) != 0) return -EFAULT;
    const void *nul = memchr(dst + done, 0, chunk);
    if (nul != nullptr) return static_cast<const char *>(nul) - dst + 1;
    done += chunk;
  }
  dst[limit] = '\0';
  return static_cast<long>(n);
}

// Settles the backend on first use (AUTO). Lock-free, because the first use
// may come from a probe on any thread, even inside a signal handler.
int decide() {
  int expected = kUndecided;
  if (g_mode.compare_exchange_strong(expected, kInstalling, std::memory_order_acq_rel)) {
#if BH_HAVE_FAULT_GUARD
    const int mode = install_guard() ? BH_SAFE_READ_FAULT_GUARD : BH_SAFE_READ_SYSCALL;
#else
    const int mode = BH_SAFE_READ_SYSCALL;
#endif
    g_mode.store(mode, std::memory_order_release);
    return mode;
  }
  // Another thread is installing right now: this one read takes the syscall
  // path, which needs nothing installed.
  return expected == kInstalling ? BH_SAFE_READ_SYSCALL : expected;
}

inline int mode() {
  const int m = g_mode.load(std::memory_order_relaxed);
  return BH_LIKELY(m > 0) ? m : decide();
}

// Zeroes without libc (whose memset may use AVX registers): probe_read is
// one of the vector-clean helpers (bh_helper_vector_clean).
inline void zero_bytes(void *dst, size_t n) { asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(0) : "memory"); }

// The kernel zeroes the destination on failure, so a program never sees
// stale stack bytes (partial copies are wiped too). The zeroing itself goes
// through the guarded copy when it can, so even a bad destination cannot
// crash the host.
__attribute__((noinline, cold)) void zero_fill(void *dst, size_t n) {
#if BH_HAVE_FAULT_GUARD
  if (mode() == BH_SAFE_READ_FAULT_GUARD) {
    static const char zeros[256] = {};
    for (size_t off = 0; off < n; off += sizeof zeros) {
      const size_t k = n - off < sizeof zeros ? n - off : sizeof zeros;
      if (bh_gcopy(static_cast<char *>(dst) + off, zeros, k) != 0) return;
    }
    return;
  }
#endif
  zero_bytes(dst, n);
}

__attribute__((noinline)) int read_slow(void *dst, const void *src, size_t n) {
  if (n == 0) return 0;
#if BH_HAVE_FAULT_GUARD
  if (mode() == BH_SAFE_READ_FAULT_GUARD) {
    if (bh_gcopy(dst, src, n) == 0) return 0;
    zero_fill(dst, n);
    return -EFAULT;
  }
#endif
  if (vm_read(dst, src, n) == 0) return 0;
  zero_bytes(dst, n);
  return -EFAULT;
}

__attribute__((noinline)) long read_str_slow(char *dst, const void *src, size_t n) {
#if BH_HAVE_FAULT_GUARD
  if (mode() == BH_SAFE_READ_FAULT_GUARD) {
    const long rc = bh_gstr(dst, src, n);
    if (rc >= 0) return rc;
    zero_fill(dst, n);
    return -EFAULT;
  }
#endif
  const long rc = vm_read_str(dst, static_cast<const char *>(src), n);
  if (rc < 0) zero_bytes(dst, n);
  return rc;
}

}  // namespace
}  // namespace bh::helpers

using namespace bh::helpers;

extern "C" {

int bh_safe_read(void *dst, const void *src, size_t n) {
#if BH_HAVE_FAULT_GUARD
  // Fast path first and alone, so it compiles to a load, a compare and the
  // guarded copy (which handles n == 0).
  if (BH_LIKELY(g_mode.load(std::memory_order_relaxed) == BH_SAFE_READ_FAULT_GUARD)) {
    if (BH_LIKELY(bh_gcopy(dst, src, n) == 0)) return 0;
    zero_fill(dst, n);
    return -EFAULT;
  }
#endif
  return read_slow(dst, src, n);
}

long bh_safe_read_str(char *dst, const void *src, size_t n) {
  if (n == 0) return 0;
#if BH_HAVE_FAULT_GUARD
  if (BH_LIKELY(g_mode.load(std::memory_order_relaxed) == BH_SAFE_READ_FAULT_GUARD)) {
    const long rc = bh_gstr(dst, src, n);
    if (BH_LIKELY(rc >= 0)) return rc;
    zero_fill(dst, n);
    return -EFAULT;
  }
#endif
  return read_str_slow(dst, src, n);
}

int bh_helpers_set_safe_read(int m) {
  switch (m) {
    case BH_SAFE_READ_AUTO:
    case BH_SAFE_READ_FAULT_GUARD: {
#if BH_HAVE_FAULT_GUARD
      if (install_guard()) {
        g_mode.store(BH_SAFE_READ_FAULT_GUARD, std::memory_order_release);
        return BH_SAFE_READ_FAULT_GUARD;
      }
#endif
      if (m == BH_SAFE_READ_FAULT_GUARD) return -ENOTSUP;
      g_mode.store(BH_SAFE_READ_SYSCALL, std::memory_order_release);
      return BH_SAFE_READ_SYSCALL;
    }
    case BH_SAFE_READ_SYSCALL:
      // The handler stays installed (removing it could race with a copy in
      // flight on another thread); it is simply no longer needed.
      g_mode.store(BH_SAFE_READ_SYSCALL, std::memory_order_release);
      return BH_SAFE_READ_SYSCALL;
    default: return -EINVAL;
  }
}

int bh_helpers_safe_read_mode(void) { return mode(); }

int bh_helpers_safe_read_check(int fallback) {
#if BH_HAVE_FAULT_GUARD
  if (mode() != BH_SAFE_READ_FAULT_GUARD) return 1;  // nothing depends on the handler
  if (handler_is_ours(SIGSEGV) && handler_is_ours(SIGBUS)) return 1;
  if (fallback) g_mode.store(BH_SAFE_READ_SYSCALL, std::memory_order_release);
  return 0;
#else
  return 1;
#endif
}

}  // extern "C"
