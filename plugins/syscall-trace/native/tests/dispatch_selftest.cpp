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

int attach(Prog *g, uint32_t dir, uint32_t nr, bool all = false, bool allow = true) {
  sc::Attachment a{};
  a.run = run_prog;
  a.prog = g;
  a.reads_probe = true;
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
  bh_tt_call c{};
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
  bh_tt_call c{};
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

}  // namespace

int main() {
  sc::set_probe_api(&kProbe);
  test_contexts_and_overrides();
  test_depth();
  test_signals();
  test_races();
  test_fork();
  sc::Stats st = sc::stats();
  printf("threads with slots: %llu, missed: %llu\n", (unsigned long long)st.threads, (unsigned long long)st.missed);
  if (g_failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("dispatch selftest: all passed\n");
  return 0;
}
