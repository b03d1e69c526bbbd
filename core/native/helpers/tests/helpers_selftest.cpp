// Self-test of the helpers library: every helper called directly, a few
// through real VM programs (interpreter and JIT), and with --bench the cost
// per call of the hot ones.
//
//   cmake -S core/native -B build -DBPFHOOK_BUILD_TESTS=ON
//   cmake --build build --target helpers_selftest && build/helpers/helpers_selftest [--bench]

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/helpers.h"
#include "bpfhook/vm.h"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    g_checks++;                                                       \
    if (!(cond)) {                                                    \
      g_failures++;                                                   \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                 \
  } while (0)

#define CHECK_EQ(a, b)                                                                                     \
  do {                                                                                                     \
    g_checks++;                                                                                            \
    const auto va_ = (a);                                                                                  \
    const auto vb_ = (b);                                                                                  \
    if (!(va_ == vb_)) {                                                                                   \
      g_failures++;                                                                                        \
      fprintf(stderr, "FAIL %s:%d: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b, (long long)va_, \
              (long long)vb_);                                                                             \
    }                                                                                                      \
  } while (0)

#define CHECK_STR(a, b)                                                                                     \
  do {                                                                                                      \
    g_checks++;                                                                                             \
    const std::string va_ = (a);                                                                            \
    const std::string vb_ = (b);                                                                            \
    if (va_ != vb_) {                                                                                       \
      g_failures++;                                                                                         \
      fprintf(stderr, "FAIL %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a, #b, va_.c_str(), \
              vb_.c_str());                                                                                 \
    }                                                                                                       \
  } while (0)

uint64_t as_u64(const void *p) { return reinterpret_cast<uint64_t>(p); }
int64_t s64(uint64_t v) { return int64_t(v); }

// ---- memory layout for fault tests -------------------------------------------
// [rw page][PROT_NONE page]; and one page unmapped after being mapped.
struct FaultPages {
  char *rw = nullptr;
  char *none = nullptr;
  char *unmapped = nullptr;
  FaultPages() {
    void *m = mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    rw = static_cast<char *>(m);
    none = rw + 4096;
    unmapped = rw + 8192;
    mprotect(none, 4096, PROT_NONE);
    munmap(unmapped, 4096);
  }
  ~FaultPages() { munmap(rw, 2 * 4096); }
};

void test_probe_read(int mode) {
  CHECK_EQ(bh_helpers_set_safe_read(mode), mode);
  CHECK_EQ(bh_helpers_safe_read_mode(), mode);
  FaultPages pg;
  // Good reads of several sizes (word loop, tail loop, rep movsb path).
  char src[300];
  for (int i = 0; i < 300; i++) src[i] = char(i * 7 + 1);
  for (size_t n : {size_t(1), size_t(3), size_t(4), size_t(7), size_t(8), size_t(13), size_t(64), size_t(300)}) {
    char dst[300] = {0};
    CHECK_EQ(s64(bh_helper_probe_read(as_u64(dst), n, as_u64(src), 0, 0)), 0);
    CHECK(memcmp(dst, src, n) == 0);
  }
  CHECK_EQ(s64(bh_helper_probe_read(0, 0, 0, 0, 0)), 0);  // size 0: nothing to read

  // Bad addresses: -EFAULT, destination zeroed, process alive.
  const uint64_t bad[] = {0,
                          1,
                          as_u64(pg.none),
                          as_u64(pg.unmapped),
                          0x8000000000000000ull,  // non-canonical (#GP, not #PF)
                          0xffff888000000000ull,  // kernel half
                          as_u64(pg.none) - 4};   // straddles into PROT_NONE
  for (uint64_t a : bad) {
    for (size_t n : {size_t(8), size_t(100)}) {
      char dst[100];
      memset(dst, 0xaa, sizeof dst);
      CHECK_EQ(s64(bh_helper_probe_read(as_u64(dst), n, a, 0, 0)), -EFAULT);
      bool zero = true;
      for (size_t i = 0; i < n; i++) zero &= dst[i] == 0;
      CHECK(zero);
    }
  }
  // A bad destination (the verifier's job, but still no crash) with the guard.
  if (mode == BH_SAFE_READ_FAULT_GUARD) {
    uint64_t v = 1;
    CHECK_EQ(s64(bh_helper_probe_read(as_u64(pg.none), 8, as_u64(&v), 0, 0)), -EFAULT);
    CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(pg.none), 8, as_u64("abc"), 0, 0)), -EFAULT);
  }
  // SIGBUS: a file mapping past the end of the file.
  char path[] = "/tmp/bh_helpers_sigbusXXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) {
    unlink(path);
    void *m = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
      uint64_t v = 1;
      CHECK_EQ(s64(bh_helper_probe_read(as_u64(&v), 8, as_u64(m), 0, 0)), -EFAULT);
      CHECK_EQ(v, 0u);
      char s[8];
      CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(s), 8, as_u64(m), 0, 0)), -EFAULT);
      munmap(m, 4096);
    }
    close(fd);
  }

  // probe_read_str: length including NUL; truncation to size-1 + NUL.
  const char *hello = "hello";
  char out[16];
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 16, as_u64(hello), 0, 0)), 6);
  CHECK_STR(out, "hello");
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 3, as_u64(hello), 0, 0)), 3);
  CHECK_STR(out, "he");
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 6, as_u64(hello), 0, 0)), 6);
  CHECK_STR(out, "hello");
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 1, as_u64(hello), 0, 0)), 1);
  CHECK_EQ(out[0], 0);
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 0, as_u64(hello), 0, 0)), 0);
  // A string that ends right before an inaccessible page is fine...
  char *edge = pg.none - 4;
  memcpy(edge, "abc", 4);
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 16, as_u64(edge), 0, 0)), 4);
  CHECK_STR(out, "abc");
  // ...one that runs into it is a fault, and the buffer comes back zeroed.
  memcpy(edge, "abcd", 4);
  memset(out, 0x55, sizeof out);
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 16, as_u64(edge), 0, 0)), -EFAULT);
  CHECK(out[0] == 0 && out[15] == 0);
  // ...unless the size stops it first.
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 5, as_u64(edge), 0, 0)), 5);
  CHECK_STR(out, "abcd");
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(out), 16, 0, 0, 0)), -EFAULT);
  // A long string across a page boundary (syscall backend reads per page).
  std::vector<char> longs(6000, 'x');
  longs[5000] = 0;
  std::vector<char> lout(6000);
  CHECK_EQ(s64(bh_helper_probe_read_str(as_u64(lout.data()), 6000, as_u64(longs.data()), 0, 0)), 5001);
  CHECK_EQ(strlen(lout.data()), 5000u);
  // The aliases are the same functions.
  uint64_t v = 0, w = 0x1122334455667788ull;
  CHECK_EQ(s64(bh_helper_probe_read(as_u64(&v), 8, as_u64(&w), 0, 0)), 0);
  CHECK_EQ(v, w);
}

// Faults on many threads at once: the handler keeps no shared state.
void test_probe_read_threads() {
  CHECK_EQ(bh_helpers_set_safe_read(BH_SAFE_READ_FAULT_GUARD), BH_SAFE_READ_FAULT_GUARD);
  std::vector<std::thread> ts;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; t++) {
    ts.emplace_back([t, &bad] {
      uint64_t good = 0x42, v;
      for (int i = 0; i < 2000; i++) {
        if (s64(bh_helper_probe_read(as_u64(&v), 8, 0x1000 + 8 * uint64_t(i), 0, 0)) != -EFAULT || v != 0) bad[t]++;
        if (s64(bh_helper_probe_read(as_u64(&v), 8, as_u64(&good), 0, 0)) != 0 || v != 0x42) bad[t]++;
      }
    });
  }
  for (auto &t : ts) t.join();
  for (int b : bad) CHECK_EQ(b, 0);
}

// A real wild store, hidden from the compiler's bounds warnings.
volatile uintptr_t g_wild = 16;
void crash() { *reinterpret_cast<volatile int *>(g_wild) = 1; }

// A handler installed before ours: faults that are not ours must reach it.
void pre_handler(int, siginfo_t *, void *) { _exit(42); }

void test_fault_chaining() {
  CHECK_EQ(bh_helpers_set_safe_read(BH_SAFE_READ_FAULT_GUARD), BH_SAFE_READ_FAULT_GUARD);
  CHECK_EQ(bh_helpers_safe_read_check(0), 1);
  // A real crash in the child (not inside a guarded copy) goes to pre_handler.
  pid_t pid = fork();
  if (pid == 0) {
    uint64_t v;
    bh_helper_probe_read(as_u64(&v), 8, 8, 0, 0);  // ours: survives
    crash();                                       // not ours: forwarded
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42);
  // With no earlier handler the default action (death by SIGSEGV) survives us.
  pid = fork();
  if (pid == 0) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &dfl, nullptr);
    sigaction(SIGBUS, &dfl, nullptr);
    // Re-install ours on top of SIG_DFL: the check sees it is gone first.
    if (bh_helpers_safe_read_check(0) != 0) _exit(3);
    bh_helpers_set_safe_read(BH_SAFE_READ_FAULT_GUARD);
    if (bh_helpers_safe_read_check(0) != 1) _exit(4);
    uint64_t v;
    if (s64(bh_helper_probe_read(as_u64(&v), 8, 8, 0, 0)) != -EFAULT) _exit(5);
    crash();
    _exit(0);
  }
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
}

// ---- printk -------------------------------------------------------------------
std::string g_sink_msg;
int g_sink_calls = 0;
void capture_sink(void *cookie, const char *msg, size_t len) {
  CHECK(cookie == &g_sink_calls);
  g_sink_msg.assign(msg, len);
  g_sink_calls++;
}

std::string printk(const char *fmt, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, int64_t *ret = nullptr) {
  g_sink_msg = "<none>";
  const int64_t r = s64(bh_helper_trace_printk(as_u64(fmt), strlen(fmt) + 1, a1, a2, a3));
  if (ret != nullptr) *ret = r;
  return r < 0 ? "<err>" : g_sink_msg;
}

std::string vprintk(const char *fmt, std::vector<uint64_t> args, int64_t *ret = nullptr) {
  g_sink_msg = "<none>";
  const int64_t r = s64(bh_helper_trace_vprintk(as_u64(fmt), strlen(fmt) + 1, as_u64(args.data()), args.size() * 8, 0));
  if (ret != nullptr) *ret = r;
  return r < 0 ? "<err>" : g_sink_msg;
}

void test_printk() {
  bh_helpers_set_trace_sink(capture_sink, &g_sink_calls);
  int64_t r = 0;
  CHECK_STR(printk("%d %i %u\n", uint64_t(-5), 7, 3000000000u, &r), "-5 7 3000000000");
  CHECK_EQ(r, 16);  // message length, newline included
  CHECK_STR(printk("%x %X %%", 0xabcdef, 0xabcdef), "abcdef ABCDEF %");
  // Without l the argument is 32-bit, as in the kernel.
  CHECK_STR(printk("%d %x %u", 0x100000005ull, 0xffffffff00000010ull, uint64_t(-1)), "5 10 4294967295");
  CHECK_STR(printk("%ld %lu %lx", uint64_t(-1), uint64_t(-1), 0xdeadbeefcafeull),
            "-1 18446744073709551615 deadbeefcafe");
  CHECK_STR(printk("%lld %llu %llx", uint64_t(INT64_MIN), 12345678901234ull, 0x1ull << 40),
            "-9223372036854775808 12345678901234 10000000000");
  CHECK_STR(printk("%p %px %pK", 0x1234, 0, 0xffff), "0x1234 0x0 0xffff");
  CHECK_STR(printk("[%s] [%s] %c", as_u64("str"), 1, 'A'), "[str] [(efault)] A");  // unreadable: a marker
  CHECK_STR(printk("%pks,%pus.", as_u64("k"), as_u64("u")), "k,u.");
  const unsigned char ip4[4] = {192, 168, 1, 20};
  const unsigned char ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  CHECK_STR(printk("%pI4 %pi4", as_u64(ip4), as_u64(ip4)), "192.168.1.20 192.168.001.020");
  CHECK_STR(printk("%pI6", as_u64(ip6)), "2001:0db8:0000:0000:0000:0000:0000:0001");
  CHECK_STR(printk("%pi6", as_u64(ip6)), "20010db8000000000000000000000001");
  CHECK_STR(printk("%pI4", 0), "0.0.0.0");  // unreadable: zeros
  CHECK(printk("%pS", reinterpret_cast<uint64_t>(&write)).find('+') != std::string::npos);
  CHECK_STR(printk("%ps", 0), "0x0");
  // Flags and width.
  CHECK_STR(
      vprintk("%5d|%-5d|%05d|%+d|% d|%3s|%-3s|%08lx", {42, 42, uint64_t(-42), 7, 7, as_u64("a"), as_u64("b"), 0xbeef}),
      "   42|42   |-0042|+7| 7|  a|b  |0000beef");
  // Invalid formats and arguments: -EINVAL, nothing printed.
  g_sink_calls = 0;
  CHECK_STR(printk("%q"), "<err>");
  CHECK_STR(printk("%d %d %d %d"), "<err>");       // more conversions than arguments
  CHECK_STR(printk("%sx", as_u64("a")), "<err>");  // %s must end a word
  CHECK_STR(printk("%#x"), "<err>");
  CHECK_STR(printk("%.3d"), "<err>");
  CHECK_STR(printk("%hd"), "<err>");
  CHECK_STR(printk("%pQ"), "<err>");
  CHECK_STR(printk("tab\tok"), "tab\tok");
  CHECK_STR(printk("bad\x01"), "<err>");
  CHECK_EQ(g_sink_calls, 1);
  const char unterminated[4] = {'a', 'b', 'c', 'd'};
  CHECK_EQ(s64(bh_helper_trace_printk(as_u64(unterminated), 4, 0, 0, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_trace_printk(as_u64("ab\0cd"), 6, 0, 0, 0)), 2);  // NUL inside fmt_size ends it
  // vprintk: up to 12 arguments; data_len must be a multiple of 8.
  CHECK_STR(vprintk("%d%d%d%d%d%d%d%d%d%d%d%d", {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2}), "123456789012");
  uint64_t a[2] = {1, 2};
  CHECK_EQ(s64(bh_helper_trace_vprintk(as_u64("%d"), 3, as_u64(a), 4, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_trace_vprintk(as_u64("%d"), 3, as_u64(a), 13 * 8, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_trace_vprintk(as_u64("%d"), 3, 0, 8, 0)), -EINVAL);
  // Truncation at 1023 bytes.
  std::string big(1500, 'z');
  CHECK_EQ(printk("%s%s%s", as_u64(big.c_str()), as_u64(big.c_str()), as_u64(big.c_str()), &r).size(), 1023u);
  CHECK_EQ(r, 1023);

  // snprintf: length including NUL even when truncated.
  char buf[8];
  uint64_t args[1] = {12345};
  CHECK_EQ(s64(bh_helper_snprintf(as_u64(buf), sizeof buf, as_u64("value=%d"), as_u64(args), 8)), 12);
  CHECK_STR(buf, "value=1");
  CHECK_EQ(s64(bh_helper_snprintf(as_u64(buf), sizeof buf, as_u64("%d"), as_u64(args), 8)), 6);
  CHECK_STR(buf, "12345");
  CHECK_EQ(s64(bh_helper_snprintf(as_u64(buf), sizeof buf, as_u64("%d %d"), as_u64(args), 8)), -EINVAL);

  // The default sink: one line on stderr.
  bh_helpers_set_trace_sink(nullptr, nullptr);
  int p[2];
  if (pipe(p) == 0) {
    fflush(stderr);
    const int saved = dup(2);
    dup2(p[1], 2);
    bh_helper_trace_printk(as_u64("hi %d\n"), 7, 5, 0, 0);
    bh_helper_trace_printk(as_u64("no newline"), 11, 0, 0, 0);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    char got[128] = {0};
    ssize_t n = read(p[0], got, sizeof got - 1);
    (void)n;
    close(p[0]);
    CHECK_STR(got, "bpf_trace_printk: hi 5\nbpf_trace_printk: no newline\n");
  }
}

// ---- current task -------------------------------------------------------------
void test_task() {
  const uint64_t pt = bh_helper_get_current_pid_tgid(0, 0, 0, 0, 0);
  CHECK_EQ(pt, (uint64_t(getpid()) << 32) | uint64_t(gettid()));
  uint64_t other = 0;
  std::thread([&] { other = bh_helper_get_current_pid_tgid(0, 0, 0, 0, 0); }).join();
  CHECK_EQ(other >> 32, uint64_t(getpid()));
  CHECK(uint32_t(other) != uint32_t(pt));
  // After fork the child must not report the parent's cached ids.
  int fds[2];
  if (pipe(fds) == 0) {
    pid_t pid = fork();
    if (pid == 0) {
      uint64_t ids[2] = {bh_helper_get_current_pid_tgid(0, 0, 0, 0, 0),
                         (uint64_t(getpid()) << 32) | uint64_t(gettid())};
      ssize_t n = write(fds[1], ids, sizeof ids);
      _exit(n == sizeof ids ? 0 : 1);
    }
    uint64_t ids[2] = {0, 1};
    ssize_t n = read(fds[0], ids, sizeof ids);
    waitpid(pid, nullptr, 0);
    close(fds[0]);
    close(fds[1]);
    CHECK_EQ(n, ssize_t(sizeof ids));
    CHECK_EQ(ids[0], ids[1]);
    CHECK(ids[0] != pt);
  }

  CHECK_EQ(bh_helper_get_current_uid_gid(0, 0, 0, 0, 0), (uint64_t(getgid()) << 32) | getuid());

  char comm[16];
  prctl(PR_SET_NAME, "bh-selftest", 0, 0, 0);
  CHECK_EQ(s64(bh_helper_get_current_comm(as_u64(comm), sizeof comm, 0, 0, 0)), 0);
  CHECK_STR(comm, "bh-selftest");
  char small[8];
  memset(small, 0x55, sizeof small);
  CHECK_EQ(s64(bh_helper_get_current_comm(as_u64(small), 4, 0, 0, 0)), 0);
  CHECK(memcmp(small, "bh-\0", 4) == 0 && small[4] == 0x55);
  char wide[24];
  memset(wide, 0x55, sizeof wide);
  CHECK_EQ(s64(bh_helper_get_current_comm(as_u64(wide), sizeof wide, 0, 0, 0)), 0);
  CHECK(strcmp(wide, "bh-selftest") == 0 && wide[23] == 0);  // zero padded
  CHECK_EQ(s64(bh_helper_get_current_comm(as_u64(wide), 0, 0, 0, 0)), -EINVAL);
  std::string tname;
  std::thread([&] {
    pthread_setname_np(pthread_self(), "worker-7");
    char c[16];
    bh_helper_get_current_comm(as_u64(c), sizeof c, 0, 0, 0);
    tname = c;
  }).join();
  CHECK_STR(tname, "worker-7");  // the thread's name, not the process's

  const uint64_t t1 = bh_helper_ktime_get_ns(0, 0, 0, 0, 0);
  const uint64_t t2 = bh_helper_ktime_get_ns(0, 0, 0, 0, 0);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  CHECK(t1 <= t2 && t2 <= now);
  CHECK(bh_helper_ktime_get_boot_ns(0, 0, 0, 0, 0) >= t1);
  const uint64_t coarse = bh_helper_ktime_get_coarse_ns(0, 0, 0, 0, 0);
  CHECK(coarse <= now + 1000 && now - coarse < 100000000ull);  // within a few ticks

  uint64_t x = bh_helper_get_prandom_u32(0, 0, 0, 0, 0), distinct = 0, ored = 0;
  for (int i = 0; i < 100; i++) {
    const uint64_t y = bh_helper_get_prandom_u32(0, 0, 0, 0, 0);
    CHECK(y <= 0xffffffffu);
    distinct += y != x;
    ored |= y;
    x = y;
  }
  CHECK(distinct >= 99 && ored == 0xffffffffu);

  const uint64_t cpu = bh_helper_get_smp_processor_id(0, 0, 0, 0, 0);
  CHECK(cpu < uint64_t(sysconf(_SC_NPROCESSORS_CONF)));
}

void test_strncmp() {
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("abc"), 3, as_u64("abc"), 0, 0)), 0);
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("abd"), 3, as_u64("abc"), 0, 0)), 1);
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("abb"), 3, as_u64("abc"), 0, 0)), -1);
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("abx"), 2, as_u64("abc"), 0, 0)), 0);   // only s1_sz bytes
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("ab\0x"), 4, as_u64("ab"), 0, 0)), 0);  // stops at NUL
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("abc"), 4, as_u64("ab"), 0, 0)), 1);    // s1 longer
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("\x80"), 1, as_u64("a"), 0, 0)), 1);    // unsigned chars
  CHECK_EQ(s64(bh_helper_strncmp(as_u64("x"), 0, as_u64("y"), 0, 0)), 0);
}

// ---- probe context ------------------------------------------------------------
struct FakeAttach {
  uint64_t override_value = 0;
  int overrides = 0;
};
int fake_set_ret(void *opaque, uint64_t v) {
  auto *f = static_cast<FakeAttach *>(opaque);
  f->override_value = v;
  f->overrides++;
  return 0;
}
int fake_get_retval(void *opaque, uint64_t *v) {
  auto *f = static_cast<FakeAttach *>(opaque);
  if (f->overrides == 0) return -ENOENT;
  *v = f->override_value;
  return 0;
}

// struct pt_regs slots
enum { R_BP = 4, R_R9 = 8, R_R8 = 9, R_AX = 10, R_CX = 11, R_DX = 12, R_SI = 13, R_DI = 14, R_IP = 16, R_SP = 19 };

void test_probe_ctx() {
  // No attach point.
  CHECK(bh_probe_ctx_current() == nullptr);
  uint64_t val = 0x77;
  CHECK_EQ(s64(bh_helper_override_return(0, 1, 0, 0, 0)), -EOPNOTSUPP);
  CHECK_EQ(s64(bh_helper_set_retval(1, 0, 0, 0, 0)), -EOPNOTSUPP);
  CHECK_EQ(s64(bh_helper_get_retval(0, 0, 0, 0, 0)), -EOPNOTSUPP);
  CHECK_EQ(s64(bh_helper_get_func_arg(0, 0, as_u64(&val), 0, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_get_func_ret(0, as_u64(&val), 0, 0, 0)), -EOPNOTSUPP);
  CHECK_EQ(s64(bh_helper_get_func_arg_cnt(0, 0, 0, 0, 0)), -EOPNOTSUPP);
  CHECK_EQ(bh_helper_get_func_ip(0, 0, 0, 0, 0), 0u);
  CHECK_EQ(bh_helper_get_attach_cookie(0, 0, 0, 0, 0), 0u);
  CHECK_EQ(val, 0x77u);

  // An entry probe with pt_regs and an override-capable attach point.
  uint64_t stack[4] = {0xabcdef /* return address */, 70, 80, 90 /* stack args 6.. */};
  uint64_t regs[21] = {0};
  regs[R_DI] = 10, regs[R_SI] = 11, regs[R_DX] = 12, regs[R_CX] = 13, regs[R_R8] = 14, regs[R_R9] = 15;
  regs[R_IP] = 0x401000;
  regs[R_SP] = as_u64(stack);
  FakeAttach fa;
  static const bh_probe_ops ops = {sizeof(bh_probe_ops), nullptr, nullptr, fake_set_ret, fake_get_retval};
  bh_probe_ctx pc = {};
  pc.func_ip = 0x401000;
  pc.cookie = 0xc00c1e;
  pc.regs = regs;
  pc.flags = BH_PROBE_F_PT_REGS;
  pc.nr_args = 8;
  pc.ops = &ops;
  pc.opaque = &fa;
  bh_probe_ctx_enter(&pc);
  CHECK(bh_probe_ctx_current() == &pc);
  CHECK_EQ(bh_helper_get_func_ip(as_u64(regs), 0, 0, 0, 0), 0x401000u);
  CHECK_EQ(bh_helper_get_attach_cookie(as_u64(regs), 0, 0, 0, 0), 0xc00c1eu);
  CHECK_EQ(bh_helper_get_func_arg_cnt(as_u64(regs), 0, 0, 0, 0), 8u);
  for (uint32_t n = 0; n < 6; n++) {
    CHECK_EQ(s64(bh_helper_get_func_arg(as_u64(regs), n, as_u64(&val), 0, 0)), 0);
    CHECK_EQ(val, 10u + n);
  }
  CHECK_EQ(s64(bh_helper_get_func_arg(as_u64(regs), 6, as_u64(&val), 0, 0)), 0);
  CHECK_EQ(val, 70u);
  CHECK_EQ(s64(bh_helper_get_func_arg(as_u64(regs), 7, as_u64(&val), 0, 0)), 0);
  CHECK_EQ(val, 80u);
  val = 5;
  CHECK_EQ(s64(bh_helper_get_func_arg(as_u64(regs), 8, as_u64(&val), 0, 0)), -EINVAL);
  CHECK_EQ(val, 5u);
  CHECK_EQ(s64(bh_helper_get_func_ret(as_u64(regs), as_u64(&val), 0, 0, 0)), -EOPNOTSUPP);  // entry probe
  CHECK_EQ(s64(bh_helper_get_retval(0, 0, 0, 0, 0)), -ENOENT);
  CHECK_EQ(s64(bh_helper_override_return(as_u64(regs), uint64_t(-12), 0, 0, 0)), 0);
  CHECK_EQ(fa.override_value, uint64_t(-12));
  CHECK_EQ(s64(bh_helper_get_retval(0, 0, 0, 0, 0)), -12);
  CHECK_EQ(s64(bh_helper_set_retval(0x1234567890ull, 0, 0, 0, 0)), 0);  // full 64 bits
  CHECK_EQ(fa.override_value, 0x1234567890ull);
  CHECK_EQ(fa.overrides, 2);

  // Nested: a probe hit while a program runs; leave restores the outer one.
  regs[R_AX] = 99;
  bh_probe_ctx inner = {};
  inner.func_ip = 0x402000;
  inner.regs = regs;
  inner.flags = BH_PROBE_F_PT_REGS | BH_PROBE_F_RETURN;
  inner.nr_args = -1;
  bh_probe_ctx_enter(&inner);
  CHECK_EQ(bh_helper_get_func_ip(0, 0, 0, 0, 0), 0x402000u);
  CHECK_EQ(s64(bh_helper_get_func_ret(0, as_u64(&val), 0, 0, 0)), 0);
  CHECK_EQ(val, 99u);
  CHECK_EQ(s64(bh_helper_get_retval(0, 0, 0, 0, 0)), 99);
  CHECK_EQ(s64(bh_helper_get_func_arg(0, 0, as_u64(&val), 0, 0)), -EINVAL);  // args are gone at return
  CHECK_EQ(s64(bh_helper_get_func_arg_cnt(0, 0, 0, 0, 0)), -EOPNOTSUPP);
  CHECK_EQ(s64(bh_helper_set_retval(1, 0, 0, 0, 0)), -EOPNOTSUPP);  // no set_ret op
  bh_probe_ctx_leave();
  CHECK(bh_probe_ctx_current() == &pc);
  CHECK_EQ(bh_helper_get_func_ip(0, 0, 0, 0, 0), 0x401000u);
  bh_probe_ctx_leave();
  CHECK(bh_probe_ctx_current() == nullptr);
  bh_probe_ctx_leave();  // unbalanced: harmless
  // Another thread sees no attach point.
  bh_probe_ctx_enter(&pc);
  bh_probe_ctx *seen = &pc;
  std::thread([&] { seen = bh_probe_ctx_current(); }).join();
  CHECK(seen == nullptr);
  bh_probe_ctx_leave();

  // An older plugin's shorter ops struct: members past its sz are absent.
  static const bh_probe_ops short_ops = {offsetof(bh_probe_ops, set_ret), nullptr, nullptr, fake_set_ret,
                                         fake_get_retval};
  pc.ops = &short_ops;
  bh_probe_ctx_enter(&pc);
  CHECK_EQ(s64(bh_helper_set_retval(3, 0, 0, 0, 0)), -EOPNOTSUPP);
  bh_probe_ctx_leave();
  const struct bh_probe_api *api = bh_helpers_probe_api();
  CHECK(api->sz == sizeof(struct bh_probe_api) && api->enter == bh_probe_ctx_enter &&
        api->current == bh_probe_ctx_current);
}

__attribute__((noinline)) uint64_t stack_here(uint64_t *buf, uint32_t size, uint64_t flags) {
  return bh_helper_get_stack(0, as_u64(buf), size, flags, 0);
}

__attribute__((noinline)) int64_t walk_from_origin(uint64_t *buf, uint32_t size, uint64_t flags) {
  const bh_stack_origin saved = bh_stack_origin_mark();
  const int64_t n = s64(stack_here(buf, size, flags));
  bh_stack_origin_restore(saved);
  return n;
}

void test_get_stack() {
  const uint64_t kUser = 1u << 8, kBuildId = 1u << 11;
  uint64_t buf[8];
  // A synthetic stack: entry probe at 0x1000, called from 0x2000, frames 0x3000, 0x4000.
  uint64_t outer[2] = {0, 0x4000};
  uint64_t inner[2] = {as_u64(outer), 0x3000};
  uint64_t ret_at_sp = 0x2000;
  uint64_t regs[21] = {0};
  regs[R_IP] = 0x1000;
  regs[R_SP] = as_u64(&ret_at_sp);
  regs[R_BP] = as_u64(inner);
  if (as_u64(outer) <= as_u64(inner)) {  // the chain must go up the stack
    inner[0] = 0;
    outer[0] = 0;
  }
  bh_probe_ctx pc = {};
  pc.func_ip = 0x1000;
  pc.regs = regs;
  pc.flags = BH_PROBE_F_PT_REGS;
  bh_probe_ctx_enter(&pc);
  memset(buf, 0x55, sizeof buf);
  const int64_t expect_frames = inner[0] != 0 ? 4 : 3;
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), sizeof buf, kUser, 0)), expect_frames * 8);
  CHECK_EQ(buf[0], 0x1000u);
  CHECK_EQ(buf[1], 0x2000u);
  CHECK_EQ(buf[2], 0x3000u);
  if (expect_frames == 4) CHECK_EQ(buf[3], 0x4000u);
  CHECK_EQ(buf[7], 0u);  // zero tail
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), sizeof buf, kUser | 2, 0)),
           (expect_frames - 2) * 8);  // skip 2
  CHECK_EQ(buf[0], 0x3000u);
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), 16, kUser, 0)), 16);  // truncated to the buffer
  CHECK_EQ(buf[1], 0x2000u);
  regs[R_BP] = 0xdead0000;  // garbage frame pointer: stops, no crash
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), sizeof buf, kUser, 0)), 16);
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), sizeof buf, 0, 0)), 0);  // no kernel stack
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), 12, kUser, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), sizeof buf, 1u << 9, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(buf), sizeof buf, kBuildId, 0)), -EINVAL);
  // Build ids: a real code address resolves to this executable's build id.
  struct {
    int32_t status;
    unsigned char id[20];
    uint64_t off;
  } bid[2];
  regs[R_IP] = reinterpret_cast<uint64_t>(&test_get_stack);
  pc.func_ip = regs[R_IP];
  regs[R_BP] = 0;
  ret_at_sp = 0;
  CHECK_EQ(s64(bh_helper_get_stack(as_u64(regs), as_u64(bid), sizeof bid, kUser | kBuildId, 0)), 32);
  CHECK(bid[0].status == 1 || bid[0].status == 2);
  if (bid[0].status == 1) CHECK(bid[0].off < reinterpret_cast<uint64_t>(&test_get_stack));
  bh_probe_ctx_leave();

  // No context: this thread's own stack, through frame pointers.
  uint64_t own[16];
  const int64_t n = s64(stack_here(own, sizeof own, kUser));
  CHECK(n >= 8 && n % 8 == 0);

  // With an origin: the walk starts at the code that marked it.
  uint64_t marked[16];
  CHECK(s64(walk_from_origin(marked, sizeof marked, kUser)) >= 8);
  const uint64_t fn = reinterpret_cast<uint64_t>(&walk_from_origin);
  CHECK(marked[0] > fn && marked[0] < fn + 512);         // a return address inside walk_from_origin
  CHECK_EQ(s64(stack_here(own, sizeof own, kUser)), n);  // restored: no origin any more
  CHECK(own[0] != marked[0]);
  // An origin does not apply while a PT_REGS context is current.
  regs[R_IP] = 0x1000;
  regs[R_BP] = 0;
  pc.func_ip = 0;
  bh_probe_ctx_enter(&pc);
  const bh_stack_origin saved = bh_stack_origin_mark();
  CHECK_EQ(s64(stack_here(own, sizeof own, kUser)), 8);
  CHECK_EQ(own[0], 0x1000u);
  bh_stack_origin_restore(saved);
  bh_probe_ctx_leave();
}

// ---- tail calls ---------------------------------------------------------------
struct Counter {
  uint64_t runs = 0;
  bh_prog_array *arr = nullptr;
  std::vector<int64_t> results;
  Counter *nested = nullptr;  // a fresh chain started under a probe context at run 5
};
uint64_t self_caller(void *, void *ctx);

uint64_t plus_one(void *prog, void *ctx) { return *static_cast<uint64_t *>(ctx) + reinterpret_cast<uint64_t>(prog); }

// Tail-calls itself until refused, like a recursive BPF program.
uint64_t self_caller(void *, void *ctx) {
  auto *c = static_cast<Counter *>(ctx);
  c->runs++;
  if (c->runs == 5 && c->nested != nullptr) {
    bh_probe_ctx pc = {};
    bh_probe_ctx_enter(&pc);
    self_caller(nullptr, c->nested);
    bh_probe_ctx_leave();
  }
  const int64_t r = s64(bh_helper_tail_call(as_u64(ctx), as_u64(c->arr), 0, 0, 0));
  c->results.push_back(r);
  return c->runs;
}

void test_tail_call_direct() {
  bh_prog_array *arr = bh_prog_array_create(4, plus_one);
  CHECK(arr != nullptr);
  CHECK(bh_prog_array_create(0, plus_one) == nullptr);
  CHECK_EQ(bh_prog_array_max_entries(arr), 4u);
  uint64_t ctx = 100;
  CHECK_EQ(s64(bh_helper_tail_call(as_u64(&ctx), as_u64(arr), 1, 0, 0)), -ENOENT);
  CHECK_EQ(s64(bh_helper_tail_call(as_u64(&ctx), as_u64(arr), 4, 0, 0)), -E2BIG);
  CHECK_EQ(s64(bh_helper_tail_call(as_u64(&ctx), as_u64(&ctx), 0, 0, 0)), -EINVAL);  // not a prog array
  CHECK_EQ(s64(bh_helper_tail_call(as_u64(&ctx), 0, 0, 0, 0)), -EINVAL);
  CHECK_EQ(bh_prog_array_update(arr, 1, reinterpret_cast<void *>(5)), 0);
  CHECK_EQ(bh_prog_array_update(arr, 4, reinterpret_cast<void *>(5)), -E2BIG);
  CHECK_EQ(bh_prog_array_update(arr, 0, nullptr), -EINVAL);
  CHECK(bh_prog_array_lookup(arr, 1) == reinterpret_cast<void *>(5));
  CHECK_EQ(s64(bh_helper_tail_call(as_u64(&ctx), as_u64(arr), 1, 0, 0)), 0);
  CHECK_EQ(bh_prog_array_delete(arr, 1), 0);
  CHECK_EQ(bh_prog_array_delete(arr, 1), -ENOENT);
  bh_prog_array_destroy(arr);

  // The chain limit: 1 run + 33 tail calls, then the 34th is refused and
  // that program continues.
  Counter c;
  c.arr = bh_prog_array_create(1, self_caller);
  bh_prog_array_update(c.arr, 0, reinterpret_cast<void *>(1));
  self_caller(nullptr, &c);
  CHECK_EQ(c.runs, uint64_t(1 + BH_MAX_TAIL_CALL_CNT));
  CHECK_EQ(c.results.size(), size_t(1 + BH_MAX_TAIL_CALL_CNT));
  CHECK_EQ(c.results.front(), -ELOOP);  // innermost pushes first
  CHECK_EQ(c.results.back(), 0);
  // The count is per chain: a new chain may go as deep again.
  c.runs = 0;
  c.results.clear();
  self_caller(nullptr, &c);
  CHECK_EQ(c.runs, uint64_t(1 + BH_MAX_TAIL_CALL_CNT));
  // A probe that fires inside a chain starts its own count, and the outer
  // chain's count is back when it leaves.
  Counter inner;
  inner.arr = c.arr;
  c.runs = 0;
  c.results.clear();
  c.nested = &inner;
  self_caller(nullptr, &c);
  CHECK_EQ(inner.runs, uint64_t(1 + BH_MAX_TAIL_CALL_CNT));
  CHECK_EQ(c.runs, uint64_t(1 + BH_MAX_TAIL_CALL_CNT));
  bh_prog_array_destroy(c.arr);
}

// ---- through the VM -----------------------------------------------------------
bh_inst ins(uint8_t op, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bh_inst i;
  i.opcode = op;
  i.dst = dst;
  i.src = src;
  i.off = off;
  i.imm = imm;
  return i;
}
constexpr uint8_t MOV64_K = BH_CLS_ALU64 | BH_ALU_MOV | BH_SRC_K;
constexpr uint8_t MOV64_X = BH_CLS_ALU64 | BH_ALU_MOV | BH_SRC_X;
constexpr uint8_t ADD64_K = BH_CLS_ALU64 | BH_ALU_ADD | BH_SRC_K;
constexpr uint8_t CALL = BH_CLS_JMP | BH_JMP_CALL;
constexpr uint8_t EXIT = BH_CLS_JMP | BH_JMP_EXIT;
constexpr uint8_t LDDW = BH_CLS_LD | BH_MODE_IMM | BH_SIZE_DW;
constexpr uint8_t LDXDW = BH_CLS_LDX | 0x60 /* MEM */ | BH_SIZE_DW;
constexpr uint8_t STXDW = BH_CLS_STX | 0x60 /* MEM */ | BH_SIZE_DW;

void lddw(std::vector<bh_inst> &p, uint8_t dst, uint64_t v) {
  p.push_back(ins(LDDW, dst, 0, 0, int32_t(uint32_t(v))));
  p.push_back(ins(0, 0, 0, 0, int32_t(uint32_t(v >> 32))));
}

struct Vm {
  bh_vm *vm = bh_vm_create();
  bool ok = false;
  explicit Vm(const std::vector<bh_inst> &prog) {
    if (vm == nullptr || bh_helpers_register_all(vm, nullptr) != 0) return;
    char err[256] = {0};
    ok = bh_vm_load(vm, prog.data(), prog.size() * sizeof(bh_inst), err, sizeof err) == 0;
    if (!ok) fprintf(stderr, "load: %s\n", err);
  }
  ~Vm() { bh_vm_destroy(vm); }
  Vm(const Vm &) = delete;
  Vm &operator=(const Vm &) = delete;
  bool run(bool jit, void *ctx, size_t len, uint64_t *r0) {
    bh_fault f{};
    const int rc = jit ? bh_vm_exec_jit(vm, ctx, len, r0, &f) : bh_vm_exec(vm, ctx, len, r0, &f);
    if (rc != 0) fprintf(stderr, "exec (%s): %s\n", jit ? "jit" : "interp", f.message);
    return rc == 0;
  }
};

bool g_use_jit = false;
uint64_t run_vm_prog(void *prog, void *ctx) {
  uint64_t r0 = ~0ull;
  static_cast<Vm *>(prog)->run(g_use_jit, ctx, 8, &r0);
  return r0;
}

void test_vm() {
  {
    // Registration: names, options validation.
    bh_vm *vm = bh_vm_create();
    CHECK_EQ(bh_helpers_register_all(vm, nullptr), 0);
    CHECK_STR(bh_vm_helper_name(vm, 14), "bpf_get_current_pid_tgid");
    CHECK_STR(bh_vm_helper_name(vm, 187), "bpf_set_retval");
    CHECK(bh_vm_helper_name(vm, 1) == nullptr);  // map helpers are not ours
    bh_helpers_opts o = {};
    o.sz = 2;
    CHECK_EQ(bh_helpers_register_all(vm, &o), -EINVAL);
    struct {
      bh_helpers_opts o;
      uint64_t future;
    } newer = {};
    newer.o.sz = sizeof newer;
    CHECK_EQ(bh_helpers_register_all(vm, &newer.o), 0);  // unknown tail is zero: fine
    newer.future = 1;
    CHECK_EQ(bh_helpers_register_all(vm, &newer.o), -EINVAL);
    CHECK_EQ(bh_helpers_register_all(nullptr, nullptr), -EINVAL);
    bh_vm_destroy(vm);
    size_t n = 0;
    const bh_helper_desc *t = bh_helpers_table(&n);
    CHECK(n >= 25);
    for (size_t k = 1; k < n; k++) CHECK(t[k - 1].id < t[k].id);
    // skip_ids
    vm = bh_vm_create();
    const uint32_t skip[] = {6, 58};
    o = {};
    o.sz = sizeof o;
    o.skip_ids = skip;
    o.skip_cnt = 2;
    CHECK_EQ(bh_helpers_register_all(vm, &o), 0);
    CHECK(bh_vm_helper_name(vm, 6) == nullptr && bh_vm_helper_name(vm, 58) == nullptr);
    CHECK(bh_vm_helper_name(vm, 5) != nullptr);
    bh_vm_destroy(vm);
  }

  for (bool jit : {false, true}) {
    g_use_jit = jit;
    uint64_t r0 = 0;
    {
      // call bpf_get_current_pid_tgid; exit
      Vm v({ins(CALL, 0, 0, 0, 14), ins(EXIT, 0, 0, 0, 0)});
      CHECK(v.ok && v.run(jit, nullptr, 0, &r0));
      CHECK_EQ(r0, (uint64_t(getpid()) << 32) | uint64_t(gettid()));
    }
    {
      // r1 = fp - 8; r2 = 8; r3 = bad; call probe_read; exit -> -EFAULT
      std::vector<bh_inst> p = {ins(MOV64_X, 1, BH_REG_FP, 0, 0), ins(ADD64_K, 1, 0, 0, -8), ins(MOV64_K, 2, 0, 0, 8)};
      lddw(p, 3, 0x10);
      p.push_back(ins(CALL, 0, 0, 0, 4));
      p.push_back(ins(EXIT, 0, 0, 0, 0));
      Vm v(p);
      CHECK(v.ok && v.run(jit, nullptr, 0, &r0));
      CHECK_EQ(s64(r0), -EFAULT);
    }
    {
      // Reads ctx->value through probe_read into the stack, returns it.
      std::vector<bh_inst> p = {ins(MOV64_X, 3, 1, 0, 0),  ins(MOV64_X, 1, BH_REG_FP, 0, 0),
                                ins(ADD64_K, 1, 0, 0, -8), ins(MOV64_K, 2, 0, 0, 8),
                                ins(CALL, 0, 0, 0, 4),     ins(LDXDW, 0, BH_REG_FP, -8, 0),
                                ins(EXIT, 0, 0, 0, 0)};
      Vm v(p);
      uint64_t ctx = 0x5eed;
      CHECK(v.ok && v.run(jit, &ctx, sizeof ctx, &r0));
      CHECK_EQ(r0, 0x5eedu);
    }
    {
      // Tail calls. Target: r0 = 42. Caller: tail_call(ctx, arr, idx); r0 = 7.
      Vm target({ins(MOV64_K, 0, 0, 0, 42), ins(EXIT, 0, 0, 0, 0)});
      bh_prog_array *arr = bh_prog_array_create(2, run_vm_prog);
      bh_prog_array_update(arr, 0, &target);
      for (int idx : {0, 1}) {
        std::vector<bh_inst> p;
        lddw(p, 2, as_u64(arr));
        p.push_back(ins(MOV64_K, 3, 0, 0, idx));
        p.push_back(ins(CALL, 0, 0, 0, 12));
        p.push_back(ins(MOV64_K, 0, 0, 0, 7));
        p.push_back(ins(EXIT, 0, 0, 0, 0));
        Vm caller(p);
        uint64_t ctx = 0;
        CHECK(caller.ok && caller.run(jit, &ctx, 8, &r0));
        CHECK_EQ(r0, idx == 0 ? 42u : 7u);  // slot 1 is empty: the caller goes on
      }
      // Self tail call with a counter in ctx: 1 + 33 runs.
      std::vector<bh_inst> p = {ins(MOV64_X, 6, 1, 0, 0), ins(LDXDW, 2, 6, 0, 0), ins(ADD64_K, 2, 0, 0, 1),
                                ins(STXDW, 6, 2, 0, 0), ins(MOV64_X, 1, 6, 0, 0)};
      lddw(p, 2, as_u64(arr));
      p.push_back(ins(MOV64_K, 3, 0, 0, 1));
      p.push_back(ins(CALL, 0, 0, 0, 12));
      p.push_back(ins(LDXDW, 0, 6, 0, 0));
      p.push_back(ins(EXIT, 0, 0, 0, 0));
      Vm self(p);
      bh_prog_array_update(arr, 1, &self);
      uint64_t ctx = 0;
      CHECK(self.ok && self.run(jit, &ctx, 8, &r0));
      CHECK_EQ(ctx, uint64_t(1 + BH_MAX_TAIL_CALL_CNT));
      CHECK_EQ(r0, uint64_t(1 + BH_MAX_TAIL_CALL_CNT));
      bh_prog_array_destroy(arr);
    }
    {
      // override through an installed probe context: r1 = ctx; r2 = -1; call 58; r0 = 0; exit
      FakeAttach fa;
      static const bh_probe_ops ops = {sizeof(bh_probe_ops), nullptr, nullptr, fake_set_ret, nullptr};
      uint64_t regs[21] = {0};
      bh_probe_ctx pc = {};
      pc.regs = regs;
      pc.flags = BH_PROBE_F_PT_REGS;
      pc.ops = &ops;
      pc.opaque = &fa;
      pc.nr_args = -1;
      Vm v({ins(MOV64_K, 2, 0, 0, -1), ins(CALL, 0, 0, 0, 58), ins(EXIT, 0, 0, 0, 0)});
      bh_probe_ctx_enter(&pc);
      CHECK(v.ok && v.run(jit, regs, sizeof regs, &r0));
      bh_probe_ctx_leave();
      CHECK_EQ(r0, 0u);
      CHECK_EQ(fa.override_value, ~0ull);
    }
  }
}

// ---- bench --------------------------------------------------------------------
template <class F>
double ns_per_call(F f, int iters) {
  for (int i = 0; i < iters / 10; i++) f();  // warm
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; i++) f();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / iters;
}

// Called through a pointer, as the VM calls helpers.
bh_helper_fn volatile g_fn;
volatile uint64_t g_sink_u64;

void null_sink(void *, const char *, size_t) {}

void bench() {
  uint64_t src = 0x1234, dst = 0;
  const char *str = "sixteen chars ok";
  char sbuf[64];
  auto fn = [](bh_helper_fn f, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
    g_fn = f;
    return [=] { g_sink_u64 = g_fn(a, b, c, d, 0); };
  };
  struct Row {
    const char *name;
    double ns;
  };
  std::vector<Row> rows;
  const int N = 2000000;
  for (int mode : {BH_SAFE_READ_FAULT_GUARD, BH_SAFE_READ_SYSCALL}) {
    bh_helpers_set_safe_read(mode);
    const bool guard = mode == BH_SAFE_READ_FAULT_GUARD;
    const int n = guard ? N : N / 20;
    rows.push_back({guard ? "probe_read 8B (fault guard)" : "probe_read 8B (process_vm_readv)",
                    ns_per_call(fn(bh_helper_probe_read, as_u64(&dst), 8, as_u64(&src)), n)});
    rows.push_back({guard ? "probe_read 64B (fault guard)" : "probe_read 64B (process_vm_readv)",
                    ns_per_call(fn(bh_helper_probe_read, as_u64(sbuf), 64, as_u64(sbuf)), n)});
    rows.push_back({guard ? "probe_read_str 17B (fault guard)" : "probe_read_str 17B (process_vm_readv)",
                    ns_per_call(fn(bh_helper_probe_read_str, as_u64(sbuf), 64, as_u64(str)), n)});
    rows.push_back({guard ? "probe_read bad addr (fault guard)" : "probe_read bad addr (process_vm_readv)",
                    ns_per_call(fn(bh_helper_probe_read, as_u64(&dst), 8, 0x10), n / 100)});
  }
  bh_helpers_set_safe_read(BH_SAFE_READ_AUTO);
  rows.push_back({"get_current_pid_tgid", ns_per_call(fn(bh_helper_get_current_pid_tgid), N)});
  rows.push_back({"ktime_get_ns", ns_per_call(fn(bh_helper_ktime_get_ns), N)});
  rows.push_back({"ktime_get_coarse_ns", ns_per_call(fn(bh_helper_ktime_get_coarse_ns), N)});
  rows.push_back({"ktime_get_boot_ns", ns_per_call(fn(bh_helper_ktime_get_boot_ns), N)});
  rows.push_back({"get_prandom_u32", ns_per_call(fn(bh_helper_get_prandom_u32), N)});
  rows.push_back({"get_smp_processor_id", ns_per_call(fn(bh_helper_get_smp_processor_id), N)});
  rows.push_back({"get_current_uid_gid", ns_per_call(fn(bh_helper_get_current_uid_gid), N / 20)});
  rows.push_back({"get_current_comm", ns_per_call(fn(bh_helper_get_current_comm, as_u64(sbuf), 16), N / 20)});
  bh_probe_ctx pc = {};
  rows.push_back({"probe_ctx enter+leave", ns_per_call(
                                               [&] {
                                                 bh_probe_ctx_enter(&pc);
                                                 bh_probe_ctx_leave();
                                               },
                                               N)});
  bh_helpers_set_trace_sink(null_sink, nullptr);
  rows.push_back({"trace_printk \"%d %s\" (null sink)",
                  ns_per_call(fn(bh_helper_trace_printk, as_u64("x=%d s=%s"), 10, 42, as_u64("str")), N / 20)});
  bh_helpers_set_trace_sink(nullptr, nullptr);
  for (const Row &r : rows) printf("  %-42s %8.1f ns/call\n", r.name, r.ns);
}

}  // namespace

int main(int argc, char **argv) {
  // Installed before the helpers' handler, which must chain to it.
  struct sigaction sa = {};
  sa.sa_sigaction = pre_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);

  test_probe_read(BH_SAFE_READ_FAULT_GUARD);
  test_probe_read(BH_SAFE_READ_SYSCALL);
  test_probe_read_threads();
  test_fault_chaining();
  test_printk();
  test_task();
  test_strncmp();
  test_probe_ctx();
  test_get_stack();
  test_tail_call_direct();
  test_vm();

  printf("helpers_selftest: %d checks, %d failures\n", g_checks, g_failures);
  if (argc > 1 && strcmp(argv[1], "--bench") == 0) bench();
  return g_failures == 0 ? 0 : 1;
}
