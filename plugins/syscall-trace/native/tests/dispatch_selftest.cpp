// The dispatcher's own test driver: the hooks called directly with
// fabricated calls, as the text transformer calls them, and "programs" that
// are plain C functions. Covers the contexts, overrides, the depth guard,
// signal handlers (re-entrancy), attach/detach racing with many threads
// (no run after detach returns), and grace periods after fork.
// Exits 0 when every check passed; prints each failure.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cpuid.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "../dispatch.h"

namespace {

int g_failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      g_failures++;                                                   \
    }                                                                 \
  } while (0)

// A probe API like the core's: one thread-local current context.
thread_local bh_probe_ctx *t_pc = nullptr;
void probe_enter(bh_probe_ctx *pc) {
  pc->prev_ = t_pc;
  t_pc = pc;
}
void probe_leave() { t_pc = t_pc != nullptr ? t_pc->prev_ : nullptr; }
bh_probe_ctx *probe_current() { return t_pc; }
const bh_probe_api kProbe = {sizeof(bh_probe_api), probe_enter, probe_leave, probe_current};

// What a program sees, and what it does (its `prog` pointer).
struct Prog {
  std::atomic<long> runs{0};
  std::atomic<bool> detached{false};
  std::atomic<long> after_detach{0};
  long override_value = 0;
  bool do_override = false;
  int set_ret_rc = 1;
  unsigned char ctx[64] = {};
  void (*also)(Prog *) = nullptr;  // extra work inside the program
};

int run_prog(void *p, void *ctx, size_t len, uint64_t *r0) {
  auto *g = static_cast<Prog *>(p);
  if (g->detached.load(std::memory_order_acquire)) g->after_detach.fetch_add(1);
  g->runs.fetch_add(1, std::memory_order_relaxed);
  if (len >= 64) memcpy(g->ctx, ctx, 64);
  if (g->do_override && t_pc != nullptr) g->set_ret_rc = t_pc->ops->set_ret(t_pc->opaque, uint64_t(g->override_value));
  if (g->also != nullptr) g->also(g);
  *r0 = 0;
  return 0;
}

// `clean`: claims to leave the AVX state alone (BH_PROG_F_VECTOR_CLEAN), so
// only xmm0-15 are kept around it.
int attach(Prog *g, uint32_t dir, uint32_t nr, bool all = false, bool allow = true, bool clean = false) {
  sc::Attachment a{};
  a.run = run_prog;
  a.prog = g;
  a.reads_probe = true;
  a.no_vector = clean;
  a.allow_override = allow;
  bh_sc_private_data pd{dir, (all ? BH_SC_F_ALL : 0u) | (allow ? BH_SC_F_ALLOW_OVERRIDE : 0u), nr, 0};
  std::string err;
  int id = sc::add(a, pd, const_cast<bh_probe_api *>(&kProbe), &err);
  if (id < 0) fprintf(stderr, "attach: %s\n", err.c_str());
  return id;
}

bool detach(int id) {
  bool empty = false;
  return sc::remove(id, const_cast<bh_probe_api *>(&kProbe), &empty) == 0;
}

// One call through both hooks; returns what the caller would see.
int64_t call(uint64_t nr, int64_t result, int *action = nullptr, uint64_t a0 = 0) {
  bh_tt_call_frame cf{};
  bh_tt_call &c = cf.call;
  c.nr = nr;
  c.args[0] = a0;
  for (int i = 1; i < 6; i++) c.args[i] = 100 + i;
  int64_t ret = 0;
  int act = sc::hook_enter(nullptr, &c, &ret);
  if (act == BH_TT_RUN) ret = result;
  sc::hook_exit(nullptr, &c, &ret);
  if (action != nullptr) *action = act;
  return ret;
}

void test_contexts_and_overrides() {
  Prog en, ex;
  int a = attach(&en, BH_SC_ENTER, SYS_getppid);
  int b = attach(&ex, BH_SC_EXIT, SYS_getppid);
  CHECK(a >= 0 && b >= 0);
  int act = -1;
  CHECK(call(SYS_getppid, 7, &act, 42) == 7);
  CHECK(act == BH_TT_RUN);
  CHECK(en.runs == 1 && ex.runs == 1);
  bh_sc_sys_enter e;
  memcpy(&e, en.ctx, sizeof e);
  CHECK(e.id == SYS_getppid && e.args[0] == 42 && e.args[5] == 105);
  CHECK(e.ent.pid == int32_t(syscall(SYS_gettid)));
  bh_sc_sys_exit x;
  memcpy(&x, ex.ctx, sizeof x);
  CHECK(x.id == SYS_getppid && x.ret == 7);
  for (int i = 24; i < 64; i++) CHECK(ex.ctx[i] == 0);  // zero-padded exit context
  // Enter override: skipped, the exit sees the value.
  en.do_override = true;
  en.override_value = 4242;
  CHECK(call(SYS_getppid, 7, &act) == 4242);
  CHECK(act == BH_TT_SKIP && en.set_ret_rc == 0);
  memcpy(&x, ex.ctx, sizeof x);
  CHECK(x.ret == 4242);
  en.do_override = false;
  // Exit override replaces the result.
  ex.do_override = true;
  ex.override_value = -2;
  CHECK(call(SYS_getppid, 7, &act) == -2 && act == BH_TT_RUN);
  ex.do_override = false;
  CHECK(detach(a) && detach(b));
  CHECK(!detach(a));  // unknown id
  // Override denied.
  Prog d;
  d.do_override = true;
  d.override_value = 1;
  int c = attach(&d, BH_SC_ENTER, SYS_getpid, false, false);
  CHECK(call(SYS_getpid, 9, &act) == 9 && act == BH_TT_RUN && d.set_ret_rc == -EPERM);
  CHECK(detach(c));
  // raw_syscalls: every number, large ones too; untraced numbers run nothing.
  Prog all;
  int r = attach(&all, BH_SC_ENTER, 0, true);
  call(0, 0);
  call(600, -38);
  CHECK(all.runs == 2);
  CHECK(detach(r));
  call(0, 0);
  CHECK(all.runs == 2);
}

// A "helper" making a syscall inside a program: not traced.
void nested_call(Prog *) { call(SYS_getppid, 1); }

void test_depth() {
  Prog outer, inner;
  outer.also = nested_call;
  int a = attach(&outer, BH_SC_ENTER, SYS_getpid);
  int b = attach(&inner, BH_SC_ENTER, SYS_getppid);
  call(SYS_getpid, 1);
  CHECK(outer.runs == 1);
  CHECK(inner.runs == 0);  // the program's own syscall is not traced
  call(SYS_getppid, 1);
  CHECK(inner.runs == 1);  // outside a program it is
  CHECK(detach(a) && detach(b));
}

// Signals: a handler between the real call and the exit hook is a new
// outer call (traced); one that interrupts a program is not.
void on_sigusr1(int) { call(SYS_getppid, 1); }
void raise_inside(Prog *) { raise(SIGUSR1); }

void test_signals() {
  signal(SIGUSR1, on_sigusr1);
  Prog en, ex;
  int a = attach(&en, BH_SC_ENTER, SYS_getppid);
  int b = attach(&ex, BH_SC_EXIT, SYS_getppid);
  bh_tt_call_frame cf{};
  bh_tt_call &c = cf.call;
  c.nr = SYS_getppid;
  int64_t ret = 0;
  CHECK(sc::hook_enter(nullptr, &c, &ret) == BH_TT_RUN);
  raise(SIGUSR1);  // "during" the real call: the handler's call is traced
  ret = 5;
  sc::hook_exit(nullptr, &c, &ret);
  CHECK(en.runs == 2 && ex.runs == 2 && ret == 5);
  Prog p;
  p.also = raise_inside;
  int d = attach(&p, BH_SC_ENTER, SYS_getpid);
  call(SYS_getpid, 1);
  CHECK(p.runs == 1 && en.runs == 2);  // the handler ran inside a program: untraced
  CHECK(detach(a) && detach(b) && detach(d));
  signal(SIGUSR1, SIG_DFL);
}

// Many threads calling while attachments come and go: after detach
// returns, its program never runs again.
void test_races() {
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::vector<std::thread> ts;
  Prog steady;
  int s = attach(&steady, BH_SC_ENTER, SYS_getppid);
  for (int i = 0; i < 3; i++)
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        call(SYS_getppid, 1);
        call(SYS_getpid, 1);
        calls.fetch_add(2, std::memory_order_relaxed);
      }
    });
  long violations = 0, churn_runs = 0;
  for (int round = 0; round < 300; round++) {
    auto *p = new Prog();
    const uint32_t nr = (round & 1) ? SYS_getppid : SYS_getpid;
    int id = attach(p, round % 3 == 0 ? BH_SC_EXIT : BH_SC_ENTER, nr, round % 7 == 0);
    if (round % 5 == 0) std::this_thread::yield();
    CHECK(detach(id));
    p->detached.store(true, std::memory_order_release);
    for (int i = 0; i < 3; i++) std::this_thread::yield();
    violations += p->after_detach.load();
    churn_runs += p->runs.load();
    delete p;  // freed: a run after detach would touch freed memory
  }
  stop = true;
  for (auto &t : ts) t.join();
  const long n = calls.load();
  CHECK(violations == 0);
  // Every getppid call of every thread ran the steady program exactly once.
  CHECK(steady.runs.load() == n / 2);
  CHECK(detach(s));
  printf("races: %ld calls on 3 threads, 300 attach/detach rounds (%ld churn runs), %ld runs after detach\n", n,
         churn_runs, violations);
  CHECK(sc::stats().grace_timeouts == 0);
}

// After fork, only the forking thread exists: a detach in the child does not
// wait for the parent's threads.
void test_fork() {
  std::atomic<bool> stop{false};
  Prog p;
  int id = attach(&p, BH_SC_ENTER, SYS_getppid);
  std::thread busy([&] {
    while (!stop) call(SYS_getppid, 1);
  });
  pid_t child = fork();
  if (child == 0) {
    alarm(5);
    Prog q;
    int j = attach(&q, BH_SC_ENTER, SYS_getpid);
    call(SYS_getpid, 1);
    bool ok = detach(j) && detach(id) && q.runs == 1;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  stop = true;
  busy.join();
  CHECK(detach(id));
}

// Vector state around a program that calls helpers: libc's string functions
// (and anything a helper calls) may use AVX-512: zmm16-31, the opmask
// registers and the upper halves of ymm0-15. "Programs" here clobber all of
// it on purpose; the caller's values must be there after the hooks (the
// moved path: zmm16-31 and k1-7 in use, ymm upper halves clean; the saved
// path: the upper halves hold values too).
bool has_avx512() {
  uint32_t a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xe6) != 0xe6) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (b & (1u << 16)) && (b & (1u << 30));  // AVX512F, AVX512BW
}

__attribute__((target("avx512f,avx512bw"))) void clobber_vectors(Prog *) {
  char big[8192];
  memset(big, 0x5a, sizeof big);  // libc's EVEX/AVX2 code
  asm volatile("" : : "r"(big) : "memory");
  asm volatile(
      "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
      "vpternlogd $0xff, %%zmm17, %%zmm17, %%zmm17\n\t"
      "vpternlogd $0xff, %%zmm18, %%zmm18, %%zmm18\n\t"
      "vpternlogd $0xff, %%zmm19, %%zmm19, %%zmm19\n\t"
      "vpternlogd $0xff, %%zmm20, %%zmm20, %%zmm20\n\t"
      "vpternlogd $0xff, %%zmm21, %%zmm21, %%zmm21\n\t"
      "vpternlogd $0xff, %%zmm22, %%zmm22, %%zmm22\n\t"
      "vpternlogd $0xff, %%zmm23, %%zmm23, %%zmm23\n\t"
      "vpternlogd $0xff, %%zmm24, %%zmm24, %%zmm24\n\t"
      "vpternlogd $0xff, %%zmm25, %%zmm25, %%zmm25\n\t"
      "vpternlogd $0xff, %%zmm26, %%zmm26, %%zmm26\n\t"
      "vpternlogd $0xff, %%zmm27, %%zmm27, %%zmm27\n\t"
      "vpternlogd $0xff, %%zmm28, %%zmm28, %%zmm28\n\t"
      "vpternlogd $0xff, %%zmm29, %%zmm29, %%zmm29\n\t"
      "vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\n\t"
      "vpternlogd $0xff, %%zmm31, %%zmm31, %%zmm31\n\t"
      "kxnorw %%k1, %%k1, %%k1\n\t"
      "kxnorw %%k2, %%k2, %%k2\n\t"
      "kxnorw %%k3, %%k3, %%k3\n\t"
      "kxnorw %%k4, %%k4, %%k4\n\t"
      "kxnorw %%k5, %%k5, %%k5\n\t"
      "kxnorw %%k6, %%k6, %%k6\n\t"
      "kxnorw %%k7, %%k7, %%k7\n\t"
      "vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpcmpeqd %%ymm1, %%ymm1, %%ymm1\n\t"
      "vpcmpeqd %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpcmpeqd %%ymm3, %%ymm3, %%ymm3\n\t"
      "vpcmpeqd %%ymm4, %%ymm4, %%ymm4\n\t"
      "vpcmpeqd %%ymm5, %%ymm5, %%ymm5\n\t"
      "vpcmpeqd %%ymm6, %%ymm6, %%ymm6\n\t"
      "vpcmpeqd %%ymm7, %%ymm7, %%ymm7\n\t"
      "vpcmpeqd %%ymm8, %%ymm8, %%ymm8\n\t"
      "vpcmpeqd %%ymm9, %%ymm9, %%ymm9\n\t"
      "vpcmpeqd %%ymm10, %%ymm10, %%ymm10\n\t"
      "vpcmpeqd %%ymm11, %%ymm11, %%ymm11\n\t"
      "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n\t"
      "vpcmpeqd %%ymm13, %%ymm13, %%ymm13\n\t"
      "vpcmpeqd %%ymm14, %%ymm14, %%ymm14\n\t"
      "vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t" ::
          : "memory");
}

extern "C" __attribute__((noinline, used)) void vec_test_call() { call(SYS_getppid, 1); }

// in/out: zmm16-31 at 0, k0-7 at 1024 (k1-7 used), ymm0-15 at 1088 (in: 32
// bytes each; out: their upper 16 bytes). with_upper: load ymm0-15 too.
__attribute__((target("avx512f,avx512bw"), noinline)) void vec_round(const uint8_t *in, uint8_t *out, bool with_upper) {
  if (with_upper) {
    asm volatile(
        "vmovdqu 1088(%%rsi), %%ymm0\n\t"
        "vmovdqu 1120(%%rsi), %%ymm1\n\t"
        "vmovdqu 1152(%%rsi), %%ymm2\n\t"
        "vmovdqu 1184(%%rsi), %%ymm3\n\t"
        "vmovdqu 1216(%%rsi), %%ymm4\n\t"
        "vmovdqu 1248(%%rsi), %%ymm5\n\t"
        "vmovdqu 1280(%%rsi), %%ymm6\n\t"
        "vmovdqu 1312(%%rsi), %%ymm7\n\t"
        "vmovdqu 1344(%%rsi), %%ymm8\n\t"
        "vmovdqu 1376(%%rsi), %%ymm9\n\t"
        "vmovdqu 1408(%%rsi), %%ymm10\n\t"
        "vmovdqu 1440(%%rsi), %%ymm11\n\t"
        "vmovdqu 1472(%%rsi), %%ymm12\n\t"
        "vmovdqu 1504(%%rsi), %%ymm13\n\t"
        "vmovdqu 1536(%%rsi), %%ymm14\n\t"
        "vmovdqu 1568(%%rsi), %%ymm15\n\t"
        :
        : "S"(in)
        : "memory");
  }
  asm volatile(
      "vmovdqu64 0(%%rsi), %%zmm16\n\t"
      "vmovdqu64 64(%%rsi), %%zmm17\n\t"
      "vmovdqu64 128(%%rsi), %%zmm18\n\t"
      "vmovdqu64 192(%%rsi), %%zmm19\n\t"
      "vmovdqu64 256(%%rsi), %%zmm20\n\t"
      "vmovdqu64 320(%%rsi), %%zmm21\n\t"
      "vmovdqu64 384(%%rsi), %%zmm22\n\t"
      "vmovdqu64 448(%%rsi), %%zmm23\n\t"
      "vmovdqu64 512(%%rsi), %%zmm24\n\t"
      "vmovdqu64 576(%%rsi), %%zmm25\n\t"
      "vmovdqu64 640(%%rsi), %%zmm26\n\t"
      "vmovdqu64 704(%%rsi), %%zmm27\n\t"
      "vmovdqu64 768(%%rsi), %%zmm28\n\t"
      "vmovdqu64 832(%%rsi), %%zmm29\n\t"
      "vmovdqu64 896(%%rsi), %%zmm30\n\t"
      "vmovdqu64 960(%%rsi), %%zmm31\n\t"
      "kmovq 1032(%%rsi), %%k1\n\t"
      "kmovq 1040(%%rsi), %%k2\n\t"
      "kmovq 1048(%%rsi), %%k3\n\t"
      "kmovq 1056(%%rsi), %%k4\n\t"
      "kmovq 1064(%%rsi), %%k5\n\t"
      "kmovq 1072(%%rsi), %%k6\n\t"
      "kmovq 1080(%%rsi), %%k7\n\t"
      "mov %%rdi, %%r12\n\t"
      "mov %%rsp, %%rbx\n\t"
      "sub $128, %%rsp\n\t"
      "and $-64, %%rsp\n\t"
      "call vec_test_call\n\t"
      "mov %%rbx, %%rsp\n\t"
      "vmovdqu64 %%zmm16, 0(%%r12)\n\t"
      "vmovdqu64 %%zmm17, 64(%%r12)\n\t"
      "vmovdqu64 %%zmm18, 128(%%r12)\n\t"
      "vmovdqu64 %%zmm19, 192(%%r12)\n\t"
      "vmovdqu64 %%zmm20, 256(%%r12)\n\t"
      "vmovdqu64 %%zmm21, 320(%%r12)\n\t"
      "vmovdqu64 %%zmm22, 384(%%r12)\n\t"
      "vmovdqu64 %%zmm23, 448(%%r12)\n\t"
      "vmovdqu64 %%zmm24, 512(%%r12)\n\t"
      "vmovdqu64 %%zmm25, 576(%%r12)\n\t"
      "vmovdqu64 %%zmm26, 640(%%r12)\n\t"
      "vmovdqu64 %%zmm27, 704(%%r12)\n\t"
      "vmovdqu64 %%zmm28, 768(%%r12)\n\t"
      "vmovdqu64 %%zmm29, 832(%%r12)\n\t"
      "vmovdqu64 %%zmm30, 896(%%r12)\n\t"
      "vmovdqu64 %%zmm31, 960(%%r12)\n\t"
      "kmovq %%k1, 1032(%%r12)\n\t"
      "kmovq %%k2, 1040(%%r12)\n\t"
      "kmovq %%k3, 1048(%%r12)\n\t"
      "kmovq %%k4, 1056(%%r12)\n\t"
      "kmovq %%k5, 1064(%%r12)\n\t"
      "kmovq %%k6, 1072(%%r12)\n\t"
      "kmovq %%k7, 1080(%%r12)\n\t"
      "vextracti128 $1, %%ymm0, 1088(%%r12)\n\t"
      "vextracti128 $1, %%ymm1, 1104(%%r12)\n\t"
      "vextracti128 $1, %%ymm2, 1120(%%r12)\n\t"
      "vextracti128 $1, %%ymm3, 1136(%%r12)\n\t"
      "vextracti128 $1, %%ymm4, 1152(%%r12)\n\t"
      "vextracti128 $1, %%ymm5, 1168(%%r12)\n\t"
      "vextracti128 $1, %%ymm6, 1184(%%r12)\n\t"
      "vextracti128 $1, %%ymm7, 1200(%%r12)\n\t"
      "vextracti128 $1, %%ymm8, 1216(%%r12)\n\t"
      "vextracti128 $1, %%ymm9, 1232(%%r12)\n\t"
      "vextracti128 $1, %%ymm10, 1248(%%r12)\n\t"
      "vextracti128 $1, %%ymm11, 1264(%%r12)\n\t"
      "vextracti128 $1, %%ymm12, 1280(%%r12)\n\t"
      "vextracti128 $1, %%ymm13, 1296(%%r12)\n\t"
      "vextracti128 $1, %%ymm14, 1312(%%r12)\n\t"
      "vextracti128 $1, %%ymm15, 1328(%%r12)\n\t"
      :
      : "S"(in), "D"(out)
      : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "memory", "cc");
}

void test_vector_state() {
  if (!has_avx512()) {
    printf("vector state: skipped: this CPU or OS has no AVX-512 (AVX512F+BW, opmask and zmm state)\n");
    return;
  }
  Prog p;
  p.also = clobber_vectors;
  const int id = attach(&p, BH_SC_ENTER, SYS_getppid);
  CHECK(id >= 0);
  for (int with_upper = 0; with_upper < 2; with_upper++) {
    alignas(64) uint8_t in[1088 + 32 * 16], out[1088 + 16 * 16];
    for (size_t i = 0; i < sizeof in; i++) in[i] = uint8_t(i * 7 + 3 + with_upper);
    memset(out, 0, sizeof out);
    vec_round(in, out, with_upper != 0);
    CHECK(memcmp(out, in, 1024) == 0);                 // zmm16-31
    CHECK(memcmp(out + 1032, in + 1032, 7 * 8) == 0);  // k1-7
    if (with_upper) {
      for (int r = 0; r < 16; r++) CHECK(memcmp(out + 1088 + 16 * r, in + 1088 + 32 * r + 16, 16) == 0);
    }
  }
  CHECK(p.runs == 2);
  CHECK(detach(id));
  printf("vector state: zmm16-31, k1-7 and the ymm upper halves kept around a clobbering program\n");
}

// ---- plain lists and xmm0-15 ---------------------------------------------------
// The transformer saves no vector register for these hooks
// (BH_TT_HOOKS_F_KEEP_VECTORS): the dispatcher must keep xmm0-15 itself
// around anything that is not a plain list's JIT code.

void clobber_xmm(Prog *) {
  asm volatile(
      "pcmpeqd %%xmm0, %%xmm0\n\tpcmpeqd %%xmm1, %%xmm1\n\tpcmpeqd %%xmm2, %%xmm2\n\tpcmpeqd %%xmm3, %%xmm3\n\t"
      "pcmpeqd %%xmm4, %%xmm4\n\tpcmpeqd %%xmm5, %%xmm5\n\tpcmpeqd %%xmm6, %%xmm6\n\tpcmpeqd %%xmm7, %%xmm7\n\t"
      "pcmpeqd %%xmm8, %%xmm8\n\tpcmpeqd %%xmm9, %%xmm9\n\tpcmpeqd %%xmm10, %%xmm10\n\tpcmpeqd %%xmm11, %%xmm11\n\t"
      "pcmpeqd %%xmm12, %%xmm12\n\tpcmpeqd %%xmm13, %%xmm13\n\tpcmpeqd %%xmm14, %%xmm14\n\tpcmpeqd %%xmm15, %%xmm15" ::
          : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
            "xmm13", "xmm14", "xmm15");
}

// xmm0-15 from `in`, then both hooks called straight from assembly as the
// transformer calls them (no C of the test in between, which may use SSE),
// then xmm0-15 to `out`.
bh_tt_call_frame g_xmm_cf;
void xmm_round(const uint8_t *in, uint8_t *out) {
  int (*enter)(void *, const bh_tt_call *, int64_t *) = sc::hook_enter;
  void (*exit)(void *, const bh_tt_call *, int64_t *) = sc::hook_exit;
  register void *r13 asm("r13") = reinterpret_cast<void *>(enter);
  register void *r14 asm("r14") = reinterpret_cast<void *>(exit);
  register void *r15 asm("r15") = &g_xmm_cf.call;
#define L(n) "movdqu " #n "*16(%%rsi), %%xmm" #n "\n\t"
#define S(n) "movdqu %%xmm" #n ", " #n "*16(%%r12)\n\t"
  asm volatile(L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)  //
               "mov %%rdi, %%r12\n\t"
               "mov %%rsp, %%rbx\n\t"
               "sub $128, %%rsp\n\t"
               "and $-16, %%rsp\n\t"
               "sub $16, %%rsp\n\t"
               "movq $0, (%%rsp)\n\t"
               "xor %%edi, %%edi\n\t"
               "mov %%r15, %%rsi\n\t"
               "mov %%rsp, %%rdx\n\t"
               "call *%%r13\n\t"
               "xor %%edi, %%edi\n\t"
               "mov %%r15, %%rsi\n\t"
               "mov %%rsp, %%rdx\n\t"
               "call *%%r14\n\t"
               "mov %%rbx, %%rsp\n\t"  //
               S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
               : "+r"(r13), "+r"(r14), "+r"(r15)
               : "S"(in), "D"(out)
               : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "memory", "cc", "xmm0", "xmm1", "xmm2",
                 "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                 "xmm15");
#undef L
#undef S
}

// A plain program (JIT code that reaches no C): copies its context, with
// general registers only, as JIT code would.
struct PlainSeen {
  long runs = 0;
  const void *ctx = nullptr;
  unsigned char bytes[64] = {};
};
PlainSeen g_plain[2];
template <int I>
__attribute__((target("general-regs-only"))) uint64_t plain_jit(void *ctx, size_t) {
  g_plain[I].runs++;
  g_plain[I].ctx = ctx;
  memcpy(g_plain[I].bytes, ctx, 64);
  return 0;
}

int attach_plain(bh_prog_jit_fn fn, uint32_t dir, uint32_t nr) {
  sc::Attachment a{};
  a.jit = fn;
  a.no_vector = true;
  a.general_regs = true;
  bh_sc_private_data pd{dir, 0, nr, 0};
  std::string err;
  int id = sc::add(a, pd, const_cast<bh_probe_api *>(&kProbe), &err);
  if (id < 0) fprintf(stderr, "attach: %s\n", err.c_str());
  return id;
}

void test_plain_and_xmm() {
  // Enter: the context is the call frame itself; exit: a zero-padded copy.
  const int e = attach_plain(plain_jit<0>, BH_SC_ENTER, SYS_gettid);
  const int x = attach_plain(plain_jit<1>, BH_SC_EXIT, SYS_gettid);
  CHECK(e >= 0 && x >= 0);
  bh_tt_call_frame cf{};
  cf.headroom = 0x5a5a5a5a5a5a5a5aull;
  cf.call.nr = SYS_gettid;
  for (int i = 0; i < 6; i++) cf.call.args[i] = 200 + i;
  int64_t ret = 0;
  CHECK(sc::hook_enter(nullptr, &cf.call, &ret) == BH_TT_RUN);
  CHECK(g_plain[0].runs == 1 && g_plain[0].ctx == &cf);
  bh_sc_sys_enter en;
  memcpy(&en, g_plain[0].bytes, sizeof en);
  CHECK(en.ent.type == 0 && en.ent.flags == 0 && en.ent.preempt_count == 0);
  CHECK(en.ent.pid == int32_t(syscall(SYS_gettid)) && en.id == SYS_gettid);
  CHECK(en.args[0] == 200 && en.args[5] == 205);
  CHECK(cf.call.nr == SYS_gettid && cf.call.args[3] == 203);  // the call itself is unchanged
  ret = 77;
  sc::hook_exit(nullptr, &cf.call, &ret);
  CHECK(g_plain[1].runs == 1 && g_plain[1].ctx != &cf && ret == 77);
  bh_sc_sys_exit ex;
  memcpy(&ex, g_plain[1].bytes, sizeof ex);
  CHECK(ex.id == SYS_gettid && ex.ret == 77 && ex.ent.pid == en.ent.pid);
  for (int i = 24; i < 64; i++) CHECK(g_plain[1].bytes[i] == 0);
  // A list with a plain and a bracketed program: both run, the slow path.
  Prog p;
  const int b = attach(&p, BH_SC_ENTER, SYS_gettid, false, true, true);
  CHECK(call(SYS_gettid, 5) == 5 && g_plain[0].runs == 2 && p.runs == 1);
  bh_sc_sys_enter copy;
  memcpy(&copy, p.ctx, sizeof copy);
  CHECK(copy.id == SYS_gettid && copy.ent.pid == en.ent.pid);

  // xmm0-15 around each kind of list: plain, a vector-clean C program that
  // clobbers them (xmm0-15 are all it may touch), both.
  alignas(16) uint8_t in[256], out[256];
  for (size_t i = 0; i < sizeof in; i++) in[i] = uint8_t(i * 13 + 1);
  g_xmm_cf = bh_tt_call_frame{};
  g_xmm_cf.call.nr = SYS_gettid;
  p.also = clobber_xmm;
  memset(out, 0, sizeof out);
  xmm_round(in, out);
  CHECK(memcmp(in, out, sizeof in) == 0);
  CHECK(p.runs == 2 && g_plain[0].runs == 3);
  CHECK(detach(b));
  memset(out, 0, sizeof out);
  xmm_round(in, out);
  CHECK(memcmp(in, out, sizeof in) == 0);
  CHECK(g_plain[0].runs == 4);
  CHECK(detach(e) && detach(x));
  // An exit program that clobbers, alone.
  Prog q;
  q.also = clobber_xmm;
  const int c = attach(&q, BH_SC_EXIT, SYS_gettid, false, true, true);
  memset(out, 0, sizeof out);
  xmm_round(in, out);
  CHECK(memcmp(in, out, sizeof in) == 0);
  CHECK(q.runs == 1);
  CHECK(detach(c));
  printf("plain lists: enter context in place; xmm0-15 kept around clobbering programs\n");
}

}  // namespace

int main() {
  sc::set_probe_api(&kProbe);
  test_contexts_and_overrides();
  test_depth();
  test_signals();
  test_races();
  test_fork();
  test_vector_state();
  test_plain_and_xmm();
  sc::Stats st = sc::stats();
  printf("threads with slots: %llu, missed: %llu\n", (unsigned long long)st.threads, (unsigned long long)st.missed);
  if (g_failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("dispatch selftest: all passed\n");
  return 0;
}
