// tt_selftest: the text transformer under each mechanism.
//
//   tt_selftest                 runs every mode (auto, rel32, page0, sud), each
//                               in a child process; exits non-zero on a failure
//   tt_selftest --mode M        one mode in this process
//   tt_selftest --bench         ns per getppid: plain, untraced, per mechanism
//
// Each check prints "ok   <name>" or "FAIL <name>: why"; a mode's child
// prints "RUN <name>" first so a crash names the check that crashed.
#include <cpuid.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bpfhook/text_transformer.h"

extern char **environ;

namespace {

std::atomic<uint64_t> g_enter[512], g_exit[512];
std::atomic<bool> g_skip_getpid{false}, g_replace_getppid{false}, g_raise_in_getuid{false};
std::atomic<bool> g_exit_group_marker{false};
int g_marker_fd = -1;
uint64_t g_last_args[6];
std::atomic<uint64_t> g_last_mech{0};
int g_failures = 0;
std::string g_mode;

int hook_enter(void *, const bh_tt_call *c, int64_t *ret) {
  if (c->nr < 512) g_enter[c->nr].fetch_add(1, std::memory_order_relaxed);
  if (c->nr == SYS_getppid) {
    for (int i = 0; i < 6; i++) g_last_args[i] = c->args[i];
    g_last_mech.store(c->mechanism, std::memory_order_relaxed);
  }
  if (c->nr == SYS_getpid && g_skip_getpid.load()) {
    *ret = 4242;
    return BH_TT_SKIP;
  }
  if (c->nr == SYS_write && c->args[2] == 11 && c->args[1] &&
      !memcmp(reinterpret_cast<const void *>(c->args[1]), "skip-me-now", 11)) {
    *ret = 11;
    return BH_TT_SKIP;
  }
  if (c->nr == SYS_getuid && g_raise_in_getuid.load()) {
    // A signal delivered inside the hook: its handler's syscalls nest here.
    bh_tt_raw_syscall(SYS_tgkill, uint64_t(bh_tt_raw_syscall(SYS_getpid, 0, 0, 0, 0, 0, 0)),
                      uint64_t(bh_tt_raw_syscall(SYS_gettid, 0, 0, 0, 0, 0, 0)), SIGUSR1, 0, 0, 0);
  }
  if (c->nr == SYS_exit_group && g_exit_group_marker.load() && g_marker_fd >= 0)
    bh_tt_raw_syscall(SYS_write, uint64_t(g_marker_fd), uint64_t("EG"), 2, 0, 0, 0);
  return BH_TT_RUN;
}

void hook_exit(void *, const bh_tt_call *c, int64_t *ret) {
  if (c->nr < 512) g_exit[c->nr].fetch_add(1, std::memory_order_relaxed);
  if (c->nr == SYS_getppid && g_replace_getppid.load()) *ret = 777;
  if (c->nr == SYS_getuid && g_raise_in_getuid.load()) *ret = 9999;
}

int empty_enter(void *, const bh_tt_call *, int64_t *) { return BH_TT_RUN; }
void empty_exit(void *, const bh_tt_call *, int64_t *) {}

void check(bool ok, const char *name, const char *fmt = "", ...) __attribute__((format(printf, 3, 4)));
void check(bool ok, const char *name, const char *fmt, ...) {
  if (ok) {
    printf("ok   %s [%s]\n", name, g_mode.c_str());
  } else {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("FAIL %s [%s]: %s\n", name, g_mode.c_str(), buf);
    g_failures++;
  }
  fflush(stdout);
}
void run(const char *name) {
  printf("RUN  %s\n", name);
  fflush(stdout);
}

uint64_t n_enter(int nr) { return g_enter[nr].load(); }
uint64_t n_exit(int nr) { return g_exit[nr].load(); }

}  // namespace

// A site of our own: loads known values into every register the kernel
// preserves (and xmm0-15, OF SF CF DF set, ZF clear, 16 words of red zone), runs
// `mov $110,%eax; syscall`, and stores what it finds after.
//   in:  rdi rsi rdx r10 r8 r9 rbx rbp r12 r13 r14 r15 at 0..88, xmm at 128
//   out: [0] = ah after | OF << 8 | red-zone mismatches << 16 | DF << 24, [1] rax, then the
//        12 registers, xmm at 128
// The same with other shapes before the `syscall`, which REL32 covers by
// relocating them into the stub: a je (re-encoded as jcc rel32), a
// RIP-relative mov or lea (disp32 fixed for the stub's address).
extern "C" void tt_reg_test(const uint64_t *in, uint64_t *out);
extern "C" void tt_reg_test_je(const uint64_t *in, uint64_t *out);
extern "C" void tt_reg_test_ripmov(const uint64_t *in, uint64_t *out);
extern "C" void tt_reg_test_lea(const uint64_t *in, uint64_t *out);
__asm__(R"(
  .macro TT_REG_TEST name, shape
  .text
  .globl \name
  .type \name,@function
  .p2align 6  /* keeps its `syscall` off a cache-line end (PAGE0 skips those) */
\name:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  push %rsi
  push %rdi
  movdqu 128(%rdi), %xmm0
  movdqu 144(%rdi), %xmm1
  movdqu 160(%rdi), %xmm2
  movdqu 176(%rdi), %xmm3
  movdqu 192(%rdi), %xmm4
  movdqu 208(%rdi), %xmm5
  movdqu 224(%rdi), %xmm6
  movdqu 240(%rdi), %xmm7
  movdqu 256(%rdi), %xmm8
  movdqu 272(%rdi), %xmm9
  movdqu 288(%rdi), %xmm10
  movdqu 304(%rdi), %xmm11
  movdqu 320(%rdi), %xmm12
  movdqu 336(%rdi), %xmm13
  movdqu 352(%rdi), %xmm14
  movdqu 368(%rdi), %xmm15
  .irp i,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
  movq $(0x5a5a0000 + \i), -8*\i(%rsp)
  .endr
  mov 8(%rdi), %rsi
  mov 16(%rdi), %rdx
  mov 24(%rdi), %r10
  mov 32(%rdi), %r8
  mov 40(%rdi), %r9
  mov 48(%rdi), %rbx
  mov 56(%rdi), %rbp
  mov 64(%rdi), %r12
  mov 72(%rdi), %r13
  mov 80(%rdi), %r14
  mov 88(%rdi), %r15
  mov 0(%rdi), %rdi
  mov $0x7f, %cl
  add $1, %cl
  stc
  std
  .if \shape == 0
  mov $110, %eax  /* static REL32 */
  .elseif \shape == 1
  mov $110, %eax  /* a je (not taken: ZF is clear) right before the syscall */
  je 2f
  .elseif \shape == 2
  mov tt_nr_getppid(%rip), %eax  /* a RIP-relative load right before it */
  .else
  lea tt_nr_getppid(%rip), %rax  /* a RIP-relative lea, then a 2-byte load */
  mov (%rax), %eax
  .endif
  syscall
2:
  mov %rax, %r11
  lahf
  movzbl %ah, %ecx
  seto %ch
  mov %r11, %rax
  xor %r11d, %r11d
  .irp i,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
  cmpq $(0x5a5a0000 + \i), -8*\i(%rsp)
  je 1f
  inc %r11
1:
  .endr
  shl $16, %r11
  or %r11, %rcx
  pushfq
  pop %r11
  cld
  and $0x400, %r11
  shl $14, %r11
  or %r11, %rcx
  mov 8(%rsp), %r11
  mov %rcx, 0(%r11)
  mov %rax, 8(%r11)
  mov %rdi, 16(%r11)
  mov %rsi, 24(%r11)
  mov %rdx, 32(%r11)
  mov %r10, 40(%r11)
  mov %r8, 48(%r11)
  mov %r9, 56(%r11)
  mov %rbx, 64(%r11)
  mov %rbp, 72(%r11)
  mov %r12, 80(%r11)
  mov %r13, 88(%r11)
  mov %r14, 96(%r11)
  mov %r15, 104(%r11)
  movdqu %xmm0, 128(%r11)
  movdqu %xmm1, 144(%r11)
  movdqu %xmm2, 160(%r11)
  movdqu %xmm3, 176(%r11)
  movdqu %xmm4, 192(%r11)
  movdqu %xmm5, 208(%r11)
  movdqu %xmm6, 224(%r11)
  movdqu %xmm7, 240(%r11)
  movdqu %xmm8, 256(%r11)
  movdqu %xmm9, 272(%r11)
  movdqu %xmm10, 288(%r11)
  movdqu %xmm11, 304(%r11)
  movdqu %xmm12, 320(%r11)
  movdqu %xmm13, 336(%r11)
  movdqu %xmm14, 352(%r11)
  movdqu %xmm15, 368(%r11)
  pop %rdi
  pop %rsi
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
  .size \name, .-\name
  .endm
  .section .rodata
  .p2align 2
tt_nr_getppid:
  .long 110
  TT_REG_TEST tt_reg_test, 0
  TT_REG_TEST tt_reg_test_je, 1
  TT_REG_TEST tt_reg_test_ripmov, 2
  TT_REG_TEST tt_reg_test_lea, 3
)");

// `test %rdi,%rdi; je 1f; syscall` (getppid): rdi 0 takes the je (-1).
extern "C" long tt_je_pick(long take_syscall);
__asm__(R"(
  .text
  .globl tt_je_pick
  .type tt_je_pick,@function
  .p2align 4
tt_je_pick:
  mov $110, %eax
  test %rdi, %rdi
  je 1f
  syscall
  ret
1:
  mov $-1, %rax
  ret
  .size tt_je_pick, .-tt_je_pick
)");

// read(2) through a site of our own (`mov $0,%eax; syscall`: static REL32).
extern "C" long tt_own_read(long fd, void *buf, long n);
__asm__(R"(
  .text
  .globl tt_own_read
  .type tt_own_read,@function
tt_own_read:
  mov $0, %eax
  syscall
  ret
  .size tt_own_read, .-tt_own_read
)");

// mmap(0, len, PROT_READ|PROT_EXEC, MAP_PRIVATE, fd, 0) through a site of
// our own, with zmm16-31 loaded from `in` before and stored to `out` after:
// the kernel keeps them, so a traced call must too, even when the exit
// side scans the new code (libc, Zydis and malloc use AVX-512 registers).
extern "C" long tt_mmap_zmm(const void *in, void *out, long len, long fd);
__asm__(R"(
  .text
  .globl tt_mmap_zmm
  .type tt_mmap_zmm,@function
tt_mmap_zmm:
  push %rbx
  mov %rsi, %rbx
  .irp i,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  vmovdqu64 (\i-16)*64(%rdi), %zmm\i
  .endr
  mov %rdx, %rsi
  mov %rcx, %r8
  xor %edi, %edi
  mov $5, %edx
  mov $2, %r10d
  xor %r9d, %r9d
  mov $9, %eax
  syscall
  .irp i,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  vmovdqu64 %zmm\i, (\i-16)*64(%rbx)
  .endr
  pop %rbx
  ret
  .size tt_mmap_zmm, .-tt_mmap_zmm
)");

bool has_avx512() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16))) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;
  unsigned lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xe6) == 0xe6;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM enabled by the OS
}

namespace {

volatile sig_atomic_t g_alarm_calls = 0, g_usr1_getpid = 0;
void on_alarm(int) {
  getppid();
  g_alarm_calls = g_alarm_calls + 1;
}
void on_usr1(int) { g_usr1_getpid = getpid(); }

void *thread_loop(void *arg) {
  const long n = reinterpret_cast<long>(arg);
  for (long i = 0; i < n; i++) getppid();
  return nullptr;
}

constexpr long kBusyCalls = 5000;
struct Busy {
  std::atomic<int> phase{0}, ready{0}, done{0};
};
// getegid: no other check counts it.
void *busy_loop(void *arg) {
  auto *b = static_cast<Busy *>(arg);
  // The signal checks count on the main thread's handlers: a process-wide
  // SIGALRM must not run here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  while (b->phase.load() == 0) {
    getegid();
    syscall(SYS_getegid);
  }
  b->ready++;
  while (b->phase.load() == 1) {
  }
  for (long i = 0; i < kBusyCalls; i++) {
    getegid();
    syscall(SYS_getegid);
  }
  b->done++;
  while (b->phase.load() == 2) {
  }
  while (b->phase.load() < 9) {
    getegid();
    syscall(SYS_getegid);
  }
  return nullptr;
}

int wait_status(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return st;
}

void log_line(void *, int level, const char *msg) { fprintf(stderr, "[tt %d] %s\n", level, msg); }

uint32_t mode_bits(const std::string &m) {
  if (m == "rel32") return BH_TT_MECH_REL32;
  if (m == "page0") return BH_TT_MECH_PAGE0;
  if (m == "sud") return BH_TT_MECH_SUD;
  return 0;
}

// Each shape before the `syscall` (tt_reg_test and its variants).
struct Shape {
  const char *name;
  void (*fn)(const uint64_t *, uint64_t *);
};
const Shape kShapes[] = {
    {"mov", tt_reg_test}, {"je", tt_reg_test_je}, {"rip-mov", tt_reg_test_ripmov}, {"rip-lea", tt_reg_test_lea}};

// Runs one shape with patterned registers and checks what the kernel keeps
// across a syscall: the GPRs, xmm0-15, the flags, the red zone (page 0's
// `call` may take its return slot), the result.
void run_shape(const Shape &sh, const std::string &tag, bool page0) {
  uint64_t in[48], out[48];
  for (int i = 0; i < 48; i++) in[i] = 0x1111111111111111ull * uint64_t(i % 15 + 1) + uint64_t(i);
  memset(out, 0, sizeof out);
  sh.fn(in, out);
  bool regs = true;
  for (int i = 0; i < 12; i++) regs &= out[2 + i] == in[i];
  const unsigned flags = unsigned(out[0] & 0xff), of = unsigned(out[0] >> 8) & 1;
  const unsigned rz = unsigned(out[0] >> 16) & 0xff, df = unsigned(out[0] >> 24) & 1;
  check(regs, ("preserved GPRs intact" + tag).c_str());
  check(!memcmp(in + 16, out + 16, 256), ("xmm0-15 intact" + tag).c_str());
  check((flags & 0xc1) == 0x81 && of == 1 && df == 1, ("flags intact (SF CF OF DF set, ZF clear)" + tag).c_str(),
        "ah %#x OF %u DF %u", flags, of, df);
  if (page0)
    check(rz <= 1, ("red zone: at most the return slot" + tag).c_str(), "%u words changed", rz);
  else
    check(rz == 0, ("red zone intact" + tag).c_str(), "%u words changed", rz);
  // (the raw call: a traced getppid() here would count as the shape's)
  check(int64_t(out[1]) == bh_tt_raw_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0), ("result in rax" + tag).c_str());
}

int run_mode(const std::string &mode) {
  g_mode = mode;
  const uint32_t mech = mode_bits(mode);
  const bool rel32_only = mech == BH_TT_MECH_REL32;
  bh_tt_opts opts{sizeof(bh_tt_opts), mech, 1, log_line, nullptr};
  bh_tt_hooks hooks{sizeof(bh_tt_hooks), hook_enter, hook_exit};
  char err[256] = "";
  // Threads that exist before the install and make system calls while the
  // sites are patched under them (and, under SUD, must get dispatch turned
  // on by the install's signal).
  Busy busy;
  std::vector<pthread_t> early(4);
  for (auto &t : early) pthread_create(&t, nullptr, busy_loop, &busy);
  run("install");
  const int rc = bh_tt_install(&opts, &hooks, nullptr, err, sizeof err);
  if (rc == -EPERM && mech == BH_TT_MECH_PAGE0) {
    printf("SKIP mode page0: %s\n", err);
    busy.phase = 9;
    for (auto &t : early) pthread_join(t, nullptr);
    return 0;
  }
  check(rc == 0, "install", "rc %d: %s", rc, err);
  if (rc != 0) return 1;
  bh_tt_stats st{};
  st.sz = sizeof st;
  bh_tt_get_stats(&st);
  printf(
      "stats [%s]: modules %u sites %llu rel32 %llu page0 %llu sud %llu untouched %llu undecodable %llu active %#x\n",
      mode.c_str(), st.modules_scanned, (unsigned long long)st.sites_found, (unsigned long long)st.sites_rel32,
      (unsigned long long)st.sites_page0, (unsigned long long)st.sites_sud, (unsigned long long)st.sites_untouched,
      (unsigned long long)st.bytes_undecodable, st.mechanisms_active);
  check(st.sites_found > 100, "sites found", "only %llu", (unsigned long long)st.sites_found);

  run("threads from before the install");
  {
    busy.phase = 1;  // each stops calling and reports ready
    while (busy.ready.load() < int(early.size())) sched_yield();
    const uint64_t e0 = n_enter(SYS_getegid);
    busy.phase = 2;  // each makes kBusyCalls calls of each kind, then reports done
    while (busy.done.load() < int(early.size())) sched_yield();
    const uint64_t got = n_enter(SYS_getegid) - e0;
    check(got == early.size() * 2 * kBusyCalls, "threads from before the install: exact counts", "%llu, want %llu",
          (unsigned long long)got, (unsigned long long)(early.size() * 2 * kBusyCalls));
    busy.phase = 3;  // they keep calling through the rest (uninstall included)
  }
  run("count getppid()");
  {
    const uint64_t e0 = n_enter(SYS_getppid), x0 = n_exit(SYS_getppid);
    const pid_t want = pid_t(bh_tt_raw_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0));
    bool same = true;
    for (int i = 0; i < 1000; i++) same &= getppid() == want;
    check(same, "getppid() result");
    check(n_enter(SYS_getppid) - e0 == 1000 && n_exit(SYS_getppid) - x0 == 1000, "count getppid()",
          "enter %llu exit %llu, want 1000", (unsigned long long)(n_enter(SYS_getppid) - e0),
          (unsigned long long)(n_exit(SYS_getppid) - x0));
  }
  run("count syscall(SYS_getppid)");
  {
    const uint64_t e0 = n_enter(SYS_getppid);
    for (int i = 0; i < 1000; i++) syscall(SYS_getppid, 11, 22, 33, 44, 55, 66);
    const uint64_t got = n_enter(SYS_getppid) - e0;
    // glibc's syscall(2) ends in `mov 0x8(%rsp),%r9; syscall`: REL32 with
    // the mov relocated into the stub, so every mode traces it.
    check(got == 1000, "count syscall(SYS_getppid)", "enter %llu, want 1000", (unsigned long long)got);
    check(g_last_args[0] == 11 && g_last_args[1] == 22 && g_last_args[2] == 33 && g_last_args[3] == 44 &&
              g_last_args[4] == 55 && g_last_args[5] == 66,
          "args seen by enter", "%llu %llu %llu %llu %llu %llu", (unsigned long long)g_last_args[0],
          (unsigned long long)g_last_args[1], (unsigned long long)g_last_args[2], (unsigned long long)g_last_args[3],
          (unsigned long long)g_last_args[4], (unsigned long long)g_last_args[5]);
  }
  run("skip getpid");
  {
    g_skip_getpid = true;
    const pid_t p = getpid();
    g_skip_getpid = false;
    check(p == 4242, "skip: getpid() returns the hook's 4242", "got %d", int(p));
    int fds[2];
    if (pipe(fds) != 0) abort();
    const ssize_t w = write(fds[1], "skip-me-now", 11);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    char buf[16];
    const ssize_t r = read(fds[0], buf, sizeof buf);
    check(w == 11 && r < 0 && errno == EAGAIN, "skip: a skipped write writes nothing", "write %zd read %zd", w, r);
    close(fds[0]);
    close(fds[1]);
  }
  run("exit replaces");
  {
    g_replace_getppid = true;
    const pid_t p = getppid();
    g_replace_getppid = false;
    check(p == 777, "exit replaces getppid's result", "got %d", int(p));
  }
  // Each shape before the `syscall`; under auto and rel32 each must be
  // REL32-patched (the relocated je / RIP-relative ones included).
  for (const Shape &sh : kShapes) {
    const std::string tag = std::string(" [") + sh.name + "]";
    run(("registers" + tag).c_str());
    g_last_mech = 0;
    const uint64_t e0 = n_enter(SYS_getppid);
    run_shape(sh, tag, mode == "page0");
    const bool traced = n_enter(SYS_getppid) - e0 == 1;
    check(traced, ("own site traced exactly once" + tag).c_str(), "%llu",
          (unsigned long long)(n_enter(SYS_getppid) - e0));
    if (mech == 0 || mech == BH_TT_MECH_REL32)
      check(g_last_mech.load() == BH_TT_MECH_REL32, ("own site REL32-patched" + tag).c_str(), "mechanism %llu",
            (unsigned long long)g_last_mech.load());
    if (traced && mech == 0)
      printf("note [%s]: own site%s delivered by mechanism %llu\n", mode.c_str(), tag.c_str(),
             (unsigned long long)g_last_mech.load());
  }
  run("a relocated je, taken and not");
  {
    // tt_je_pick(0) takes the je past the `syscall` (no call, -1), any
    // other argument falls through to getppid.
    const long ppid = getppid();
    const uint64_t e0 = n_enter(SYS_getppid);
    g_last_mech = 0;
    bool right = true;
    for (int i = 0; i < 100; i++) right &= tt_je_pick(i & 1) == ((i & 1) ? ppid : -1L);
    check(right, "je before the syscall: results (taken: -1, not taken: getppid)");
    check(n_enter(SYS_getppid) - e0 == 50, "je before the syscall: traced only when not taken", "%llu, want 50",
          (unsigned long long)(n_enter(SYS_getppid) - e0));
    if (mech == 0 || mech == BH_TT_MECH_REL32)
      check(g_last_mech.load() == BH_TT_MECH_REL32, "je before the syscall: REL32-patched", "mechanism %llu",
            (unsigned long long)g_last_mech.load());
  }
  run("signals");
  {
    signal(SIGALRM, on_alarm);
    const uint64_t e0 = n_enter(SYS_getppid), s0 = n_enter(SYS_rt_sigreturn);
    itimerval it{{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, nullptr);
    long n = 0;
    const long deadline = time(nullptr) + 2;
    while (g_alarm_calls < 50 && time(nullptr) < deadline) {
      getppid();
      n++;
    }
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    signal(SIGALRM, SIG_IGN);  // drops one still pending (it may go to any thread, later)
    const uint64_t got = n_enter(SYS_getppid) - e0;
    check(got == uint64_t(n + g_alarm_calls), "signals: handler syscalls counted exactly",
          "enter %llu, loop %ld + handler %d", (unsigned long long)got, n, int(g_alarm_calls));
    const uint64_t sr = n_enter(SYS_rt_sigreturn) - s0;
    if (rel32_only || g_alarm_calls == 0)
      printf("note [%s]: rt_sigreturn traced %llu times\n", mode.c_str(), (unsigned long long)sr);
    else
      check(sr >= uint64_t(g_alarm_calls), "rt_sigreturn traced", "%llu for %d handlers", (unsigned long long)sr,
            int(g_alarm_calls));
    signal(SIGUSR1, on_usr1);
    g_skip_getpid = true;
    g_raise_in_getuid = true;
    const uid_t u = getuid();
    g_raise_in_getuid = false;
    g_skip_getpid = false;
    check(u == 9999 && g_usr1_getpid == 4242, "re-entrant: a handler's skip inside a hook, then the outer exit",
          "getuid %u, handler's getpid %d", unsigned(u), int(g_usr1_getpid));
  }
  run("threads");
  {
    const uint64_t e0 = n_enter(SYS_getppid);
    pthread_t t[8];
    for (auto &x : t) pthread_create(&x, nullptr, thread_loop, reinterpret_cast<void *>(20000L));
    for (auto &x : t) pthread_join(x, nullptr);
    const uint64_t got = n_enter(SYS_getppid) - e0;
    check(got == 8 * 20000, "threads created after install: exact counts", "%llu, want 160000",
          (unsigned long long)got);
  }
  run("fork");
  {
    const uint64_t e0 = n_enter(SYS_getppid);
    const pid_t pid = fork();
    if (pid == 0) {
      getppid();
      g_skip_getpid = true;
      _exit(n_enter(SYS_getppid) - e0 == 1 && getpid() == 4242 ? 0 : 9);
    }
    const int st = wait_status(pid);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork: the child is traced", "status %#x", st);
  }
  run("vfork");
  {
    const uint64_t v0 = n_enter(SYS_vfork);
    const pid_t pid = vfork();
    if (pid == 0) _exit(7);
    const int st = wait_status(pid);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "vfork", "status %#x", st);
    if (!rel32_only)
      check(n_enter(SYS_vfork) - v0 == 1, "vfork traced", "%llu", (unsigned long long)(n_enter(SYS_vfork) - v0));
  }
  run("system");
  {
    const int st = system("exit 3");
    check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "system()", "status %#x", st);
  }
  run("posix_spawn");
  {
    pid_t pid;
    char *argv[] = {const_cast<char *>("/bin/sh"), const_cast<char *>("-c"), const_cast<char *>("exit 4"), nullptr};
    const int r = posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ);
    const int st = r == 0 ? wait_status(pid) : -1;
    check(r == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 4, "posix_spawn", "rc %d status %#x", r, st);
  }
  run("execve");
  {
    const pid_t pid = fork();
    if (pid == 0) {
      char *argv[] = {const_cast<char *>("/bin/sh"), const_cast<char *>("-c"), const_cast<char *>("exit 5"), nullptr};
      execve("/bin/sh", argv, environ);
      _exit(99);
    }
    const int st = wait_status(pid);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 5, "execve in a child", "status %#x", st);
  }
  run("exit_group");
  {
    int fds[2];
    if (pipe(fds) != 0) abort();
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      g_marker_fd = fds[1];
      g_exit_group_marker = true;
      exit(0);
    }
    close(fds[1]);
    char buf[4] = {};
    const ssize_t r = read(fds[0], buf, 2);
    close(fds[0]);
    const int st = wait_status(pid);
    if (rel32_only)
      printf("note [%s]: exit_group marker %s\n", mode.c_str(), r == 2 ? "seen" : "not seen");
    else
      check(r == 2 && !memcmp(buf, "EG", 2) && WIFEXITED(st), "exit_group traced by enter", "read %zd", r);
  }
  run("dlopen");
  {
    // TT_DLOPEN_LIB in the environment: a copy the test user can read (test
    // 46 runs this as nobody, from a checkout nobody may not enter).
    const char *lib = getenv("TT_DLOPEN_LIB");
    void *h = dlopen(lib != nullptr ? lib : TT_DLOPEN_LIB, RTLD_NOW);
    check(h != nullptr, "dlopen after install", "%s", dlerror());
    if (h) {
      auto fn = reinterpret_cast<long (*)()>(dlsym(h, "tt_lib_getppid"));
      const uint64_t e0 = n_enter(SYS_getppid);
      bool same = true;
      for (int i = 0; i < 100; i++) same &= fn() == getppid();
      check(same && n_enter(SYS_getppid) - e0 == 200, "a library dlopen'ed after install is traced",
            "enter %llu, want 200", (unsigned long long)(n_enter(SYS_getppid) - e0));
    }
  }
  run("zmm16-31 across an mmap of new code");
  if (!has_avx512()) {
    printf("note [%s]: zmm check skipped: no AVX-512 here\n", mode.c_str());
  } else {
    const char *lib = getenv("TT_DLOPEN_LIB");
    const int fd = open(lib != nullptr ? lib : TT_DLOPEN_LIB, O_RDONLY | O_CLOEXEC);
    alignas(64) uint8_t in[1024], out[1024];
    for (size_t i = 0; i < sizeof in; i++) in[i] = uint8_t(i * 11 + 5);
    memset(out, 0, sizeof out);
    const uint64_t e0 = n_enter(SYS_mmap), x0 = n_exit(SYS_mmap);
    const long at = tt_mmap_zmm(in, out, 4096, fd);
    check(fd >= 0 && at > 0, "mmap of a library's first page, executable", "fd %d rc %ld", fd, at);
    check(n_enter(SYS_mmap) - e0 == 1 && n_exit(SYS_mmap) - x0 == 1, "that mmap traced, enter and exit");
    check(!memcmp(in, out, sizeof in), "zmm16-31 intact across it (the exit side scanned the new code)");
    if (at > 0) munmap(reinterpret_cast<void *>(at), 4096);
    if (fd >= 0) close(fd);
  }
  run("interest");
  {
    const uint32_t nrs[] = {SYS_getpid};
    bh_tt_set_interest(nrs, 1, 0);
    const uint64_t e0 = n_enter(SYS_getppid);
    const long want = bh_tt_raw_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0);
    bool same = true;
    for (int i = 0; i < 100; i++) same &= getppid() == want && syscall(SYS_getppid) == want;
    check(same, "not of interest: results right (static site untouched, dynamic one without exit)");
    check(n_enter(SYS_getppid) == e0, "not of interest: not seen", "%llu",
          (unsigned long long)(n_enter(SYS_getppid) - e0));
    bh_tt_get_stats(&st);
    printf("stats [%s] interest {getpid}: rel32 %llu page0 %llu sud %llu untouched %llu\n", mode.c_str(),
           (unsigned long long)st.sites_rel32, (unsigned long long)st.sites_page0, (unsigned long long)st.sites_sud,
           (unsigned long long)st.sites_untouched);
    bh_tt_set_interest(nullptr, 0, 1);
    for (int i = 0; i < 100; i++) getppid();
    check(n_enter(SYS_getppid) - e0 == 100, "widened again: seen", "%llu",
          (unsigned long long)(n_enter(SYS_getppid) - e0));
  }
  run("uninstall");
  {
    // A call blocked in a stub across the uninstall returns through it.
    int fds[2];
    if (pipe(fds) != 0) abort();
    struct Blocked {
      int fd;
      long got;
      char buf[8];
    } blocked{fds[0], 0, {}};
    pthread_t t;
    pthread_create(
        &t, nullptr,
        [](void *p) -> void * {
          auto *b = static_cast<Blocked *>(p);
          b->got = tt_own_read(b->fd, b->buf, sizeof b->buf);
          return nullptr;
        },
        &blocked);
    usleep(50000);  // let it block in the read
    check(bh_tt_uninstall() == 0, "uninstall");
    if (write(fds[1], "abc", 3) != 3) abort();
    pthread_join(t, nullptr);
    check(blocked.got == 3 && !memcmp(blocked.buf, "abc", 3), "a call blocked across uninstall returns", "got %ld",
          blocked.got);
    close(fds[0]);
    close(fds[1]);
    const uint64_t e0 = n_enter(SYS_getppid);
    for (int i = 0; i < 100; i++) getppid();
    syscall(SYS_getppid);
    check(n_enter(SYS_getppid) == e0, "after uninstall nothing is traced");
    const int st = system("exit 6");
    check(WIFEXITED(st) && WEXITSTATUS(st) == 6, "system() after uninstall", "status %#x", st);
  }
  busy.phase = 9;
  for (auto &t : early) pthread_join(t, nullptr);
  printf("done [%s]: %d failures\n", mode.c_str(), g_failures);
  return g_failures ? 1 : 0;
}

// ---- the enter-only path with hooks that keep the vector registers -------
// (BH_TT_HOOKS_F_KEEP_VECTORS, no exit hook: every call is enter-only).
// tramp.S then calls enter straight from assembly, saving no vector
// register: the same register, flag, red-zone and xmm checks must hold. The
// hook is built for general registers only, as it promises.
uint64_t g_fast_enter[512], g_fast_site, g_fast_mech, g_fast_skip_getpid;
__attribute__((target("general-regs-only"))) int fast_enter(void *, const bh_tt_call *c, int64_t *ret) {
  if (c->nr < 512) __atomic_fetch_add(&g_fast_enter[c->nr], 1, __ATOMIC_RELAXED);
  if (c->nr == SYS_getppid) {
    __atomic_store_n(&g_fast_site, c->site, __ATOMIC_RELAXED);
    __atomic_store_n(&g_fast_mech, c->mechanism, __ATOMIC_RELAXED);
  }
  if (c->nr == SYS_getpid && __atomic_load_n(&g_fast_skip_getpid, __ATOMIC_RELAXED)) {
    *ret = 4242;
    return BH_TT_SKIP;
  }
  return BH_TT_RUN;
}

// The exit hook of mode rel32_fast_exit: counts, records getpid's result,
// replaces getppid's when asked.
uint64_t g_fast_exit[512], g_fast_exit_getpid_ret, g_fast_replace_getppid;
__attribute__((target("general-regs-only"))) void fast_exit(void *, const bh_tt_call *c, int64_t *ret) {
  if (c->nr < 512) __atomic_fetch_add(&g_fast_exit[c->nr], 1, __ATOMIC_RELAXED);
  if (c->nr == SYS_getpid) __atomic_store_n(&g_fast_exit_getpid_ret, uint64_t(*ret), __ATOMIC_RELAXED);
  if (c->nr == SYS_getppid && __atomic_load_n(&g_fast_replace_getppid, __ATOMIC_RELAXED)) *ret = 777;
}

// An empty enter hook for the enter-only path (bench).
__attribute__((target("general-regs-only"))) int fast_empty_enter(void *, const bh_tt_call *, int64_t *) {
  return BH_TT_RUN;
}

// `mech`: REL32 (mode rel32_fast) or PAGE0 (page0_fast, root); `with_exit`
// (rel32_fast_exit): an exit hook too, so that a static site's calls take
// the enter-and-exit path (bh_tt_simple_exit), the others the C side.
int run_fast_mode(uint32_t mech, bool with_exit = false) {
  g_mode = mech == BH_TT_MECH_PAGE0 ? "page0_fast" : with_exit ? "rel32_fast_exit" : "rel32_fast";
  bh_tt_opts opts{sizeof(bh_tt_opts), mech, 1, log_line, nullptr};
  bh_tt_hooks hooks{sizeof(bh_tt_hooks), fast_enter, with_exit ? fast_exit : nullptr, BH_TT_HOOKS_F_KEEP_VECTORS};
  char err[256] = "";
  run("install");
  const int rc = bh_tt_install(&opts, &hooks, nullptr, err, sizeof err);
  if (rc == -EPERM && mech == BH_TT_MECH_PAGE0) {
    printf("SKIP mode page0_fast: %s\n", err);
    return 0;
  }
  check(rc == 0, "install", "rc %d: %s", rc, err);
  if (rc != 0) return 1;
  const uint32_t nrs[] = {SYS_getppid, SYS_getpid};
  bh_tt_set_interest(nrs, 2, 0);
  for (const Shape &sh : kShapes) {
    const std::string tag = std::string(" [") + sh.name + "]";
    run(("registers" + tag).c_str());
    g_fast_site = g_fast_mech = 0;
    const uint64_t e0 = __atomic_load_n(&g_fast_enter[SYS_getppid], __ATOMIC_RELAXED);
    const uint64_t x0 = __atomic_load_n(&g_fast_exit[SYS_getppid], __ATOMIC_RELAXED);
    run_shape(sh, tag, mech == BH_TT_MECH_PAGE0);
    check(__atomic_load_n(&g_fast_enter[SYS_getppid], __ATOMIC_RELAXED) - e0 == 1,
          ("own site traced exactly once" + tag).c_str());
    if (with_exit)
      check(__atomic_load_n(&g_fast_exit[SYS_getppid], __ATOMIC_RELAXED) - x0 == 1,
            ("own site's exit traced exactly once" + tag).c_str());
    check(g_fast_mech == mech && g_fast_site != 0, ("its mechanism, with its site" + tag).c_str(),
          "mechanism %llu site %#llx", (unsigned long long)g_fast_mech, (unsigned long long)g_fast_site);
  }
  run("skip getpid");
  {
    __atomic_store_n(&g_fast_skip_getpid, 1, __ATOMIC_RELAXED);
    const pid_t p = getpid();
    __atomic_store_n(&g_fast_skip_getpid, 0, __ATOMIC_RELAXED);
    check(p == 4242, "skip: getpid() returns the hook's 4242", "got %d", int(p));
    if (with_exit)
      check(g_fast_exit_getpid_ret == 4242, "skip: the exit hook sees the skipped call's result", "%lld",
            (long long)g_fast_exit_getpid_ret);
    check(getpid() != 4242, "and the real pid once the hook runs it");
  }
  if (with_exit) {
    run("exit replaces");
    __atomic_store_n(&g_fast_replace_getppid, 1, __ATOMIC_RELAXED);
    const pid_t p = getppid();
    __atomic_store_n(&g_fast_replace_getppid, 0, __ATOMIC_RELAXED);
    check(p == 777, "exit replaces getppid's result", "got %d", int(p));
  }
  run("count from threads");
  {
    const uint64_t e0 = __atomic_load_n(&g_fast_enter[SYS_getppid], __ATOMIC_RELAXED);
    const uint64_t x0 = __atomic_load_n(&g_fast_exit[SYS_getppid], __ATOMIC_RELAXED);
    std::vector<pthread_t> ts(4);
    for (auto &t : ts) pthread_create(&t, nullptr, thread_loop, reinterpret_cast<void *>(20000L));
    for (auto &t : ts) pthread_join(t, nullptr);
    const uint64_t got = __atomic_load_n(&g_fast_enter[SYS_getppid], __ATOMIC_RELAXED) - e0;
    check(got == 80000, "4 threads x 20000 getppid counted", "%llu", (unsigned long long)got);
    if (with_exit) {
      const uint64_t gx = __atomic_load_n(&g_fast_exit[SYS_getppid], __ATOMIC_RELAXED) - x0;
      check(gx == 80000, "and their exits", "%llu", (unsigned long long)gx);
    }
  }
  bh_tt_stats first{};
  first.sz = sizeof first;
  bh_tt_get_stats(&first);
  run("uninstall");
  check(bh_tt_uninstall() == 0, "uninstall");
  // Installed again in the same process: the same sites, placed the same
  // way (the first install's stubs serve again: their windows are theirs),
  // the counts exact.
  run("install again");
  for (int round = 0; round < 12; round++) {
    const int again = bh_tt_install(&opts, &hooks, nullptr, err, sizeof err);
    check(again == 0, "install again", "rc %d: %s", again, err);
    if (again != 0) break;
    bh_tt_set_interest(nrs, 2, 0);
    bh_tt_stats st{};
    st.sz = sizeof st;
    bh_tt_get_stats(&st);
    check(st.sites_found == first.sites_found && st.sites_rel32 == first.sites_rel32 &&
              st.modules_scanned == first.modules_scanned && st.bytes_undecodable == first.bytes_undecodable,
          "install again: the same sites and placements",
          "round %d: found %llu/%llu rel32 %llu/%llu modules %u/%u undecodable %llu/%llu", round,
          (unsigned long long)st.sites_found, (unsigned long long)first.sites_found, (unsigned long long)st.sites_rel32,
          (unsigned long long)first.sites_rel32, st.modules_scanned, first.modules_scanned,
          (unsigned long long)st.bytes_undecodable, (unsigned long long)first.bytes_undecodable);
    const uint64_t e0 = __atomic_load_n(&g_fast_enter[SYS_getppid], __ATOMIC_RELAXED);
    for (int i = 0; i < 1000; i++) getppid();
    check(__atomic_load_n(&g_fast_enter[SYS_getppid], __ATOMIC_RELAXED) - e0 == 1000, "install again: counted");
    check(bh_tt_uninstall() == 0, "uninstall again");
  }
  printf("done [%s]: %d failures\n", g_mode.c_str(), g_failures);
  return g_failures ? 1 : 0;
}

double now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}
// getppid() (glibc: `mov $110,%eax; syscall`, a static REL32 site) or
// syscall(SYS_getppid) (`mov 0x8(%rsp),%r9; syscall`: a dynamic one).
double loop_ns(long n, bool dyn) {
  const double t0 = now_ns();
  if (dyn)
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
  else
    for (long i = 0; i < n; i++) getppid();
  return (now_ns() - t0) / n;
}
double median_ns(long n, bool dyn = false) {
  std::vector<double> v;
  for (int r = 0; r < 5; r++) v.push_back(loop_ns(n, dyn));
  std::sort(v.begin(), v.end());
  return v[2];
}

// One measurement in this process: "plain", "untraced" (auto, getppid not
// wanted), or a mechanism with empty hooks. Prints "<name> <ns>".
int bench_one(const std::string &what) {
  const long n = what == "sud" ? 20000 : 300000;
  if (what == "plain") {
    printf("plain %.1f\n", median_ns(n));
    return 0;
  }
  bh_tt_opts opts{sizeof(bh_tt_opts), what == "untraced" ? 0u : mode_bits(what), 0, nullptr, nullptr};
  const bool fast = what == "rel32_fast" || what == "page0_fast";
  const bool enter_only = what == "rel32_enter_only" || fast;
  if (enter_only) opts.mechanisms = what == "page0_fast" ? BH_TT_MECH_PAGE0 : BH_TT_MECH_REL32;
  bh_tt_hooks hooks{sizeof(bh_tt_hooks), fast ? fast_empty_enter : empty_enter, enter_only ? nullptr : empty_exit,
                    fast ? BH_TT_HOOKS_F_KEEP_VECTORS : 0u};
  char err[256] = "";
  const int rc = bh_tt_install(&opts, &hooks, nullptr, err, sizeof err);
  if (rc != 0) {
    printf("%s skipped: %s\n", what.c_str(), err);
    return 0;
  }
  if (what == "untraced") {
    const uint32_t nrs[] = {SYS_openat};
    bh_tt_set_interest(nrs, 1, 0);
  }
  printf("%s %.1f\n", what.c_str(), median_ns(n));
  if (what == "rel32") printf("rel32_dynamic %.1f\n", median_ns(n, true));
  return 0;
}

int spawn_self(const std::vector<std::string> &args, std::string *out) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::vector<char *> av{const_cast<char *>("/proc/self/exe")};
    for (const auto &a : args) av.push_back(const_cast<char *>(a.c_str()));
    av.push_back(nullptr);
    execv("/proc/self/exe", av.data());
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t r;
  while ((r = read(fds[0], buf, sizeof buf)) > 0) out->append(buf, size_t(r));
  close(fds[0]);
  return wait_status(pid);
}

}  // namespace

int main(int argc, char **argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc == 3 && !strcmp(argv[1], "--mode")) {
    if (!strcmp(argv[2], "rel32_fast")) return run_fast_mode(BH_TT_MECH_REL32);
    if (!strcmp(argv[2], "page0_fast")) return run_fast_mode(BH_TT_MECH_PAGE0);
    if (!strcmp(argv[2], "rel32_fast_exit")) return run_fast_mode(BH_TT_MECH_REL32, true);
    return run_mode(argv[2]);
  }
  if (argc == 3 && !strcmp(argv[1], "--bench-one")) return bench_one(argv[2]);
  if (argc == 2 && !strcmp(argv[1], "--bench")) {
    // Each in a fresh process: one transformer per process.
    std::string all = "{";
    for (const char *w :
         {"plain", "untraced", "rel32", "rel32_enter_only", "rel32_fast", "page0", "page0_fast", "sud"}) {
      std::string out;
      spawn_self({"--bench-one", w}, &out);
      printf("%s", out.c_str());
      double v = 0;
      char name[32];
      size_t at = 0;
      int used = 0;
      while (sscanf(out.c_str() + at, "%31s %lf%n", name, &v, &used) == 2) {
        if (v > 0) all += std::string(all.size() > 1 ? "," : "") + "\"" + name + "\":" + std::to_string(v);
        at += size_t(used);
      }
    }
    printf("%s}\n", all.c_str());
    return 0;
  }
  int bad = 0;
  for (const char *m : {"auto", "rel32", "page0", "sud", "rel32_fast", "page0_fast", "rel32_fast_exit"}) {
    std::string out;
    const int st = spawn_self({"--mode", m}, &out);
    printf("%s", out.c_str());
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      const size_t at = out.rfind("RUN  ");
      printf("FAIL mode %s: %s %d during %s", m, WIFSIGNALED(st) ? "signal" : "exit",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
             at == std::string::npos ? "start\n" : out.substr(at + 5).c_str());
      bad++;
    }
  }
  printf("tt_selftest: %s\n", bad ? "FAILED" : "all modes passed");
  return bad ? 1 : 0;
}
