// libbpfhook_agent.so: the agent of agent mode. Preloaded (LD_PRELOAD) or
// injected (bh_inject_dlopen + bh_agent_attach_region) into a target, it
// reads the plan a controller wrote into the shared region's agent area
// (bpfhook/agent_area.h), loads plugins and programs, attaches, and writes the
// outcome of every attachment back. No Node. This file is its life cycle
// (entry points, the control thread, the controller's liveness, fork);
// apply.cpp applies plans, log.cpp carries its lines.
//
// Rules (docs/AGENT.md has the user's view):
// - It never takes the program down: every failure is logged (log file,
//   stderr only when asked, else the region's log ring) and the program runs
//   on. No exception leaves a function of this file.
// - One process-wide runtime (plugins stay loaded for the process's life: a
//   dlclose could pull code from under a thread still leaving a trampoline);
//   per served region: programs, prog arrays, map handles and links.
// - `mu` guards the served state; every runtime call is made under it, so
//   the fork prepare handler, which takes it, never lets a child inherit a
//   runtime or hook engine lock held mid-operation by the control thread.
// - Objects a probe may still reach (ring handles, served state) are never
//   freed: a region switch leaks a few handles rather than race a probe.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "bpfhook/agent_area.h"
#include "bpfhook/helpers.h"
#include "bpfhook/region.h"
#include "bpfhook/runtime.h"
#include "bpfhook/shm_sync.hpp"

#define BH_AGENT_EXPORT extern "C" __attribute__((visibility("default")))
#include "internal.h"

#define BH_AGENT_EXPORT extern "C" __attribute__((visibility("default")))

namespace bpfhook::agent {
namespace {

namespace shm = bpfhook::shm;
constexpr uint32_t kDefaultStartWaitMs = 5000;
// However long a live controller takes, main runs after this.
constexpr uint64_t kStartWaitCapNs = 120ull * 1000000000ull;

bool controller_gone(Served &s) {
  bh_agent_area *a = s.view.area();
  if (s.foreign_pidns) {
    uint64_t beat = shm::load_acquire(&a->heartbeat_ns), now = bh_agent_now_ns();
    return now > beat && now - beat > 10ull * BH_AGENT_HEARTBEAT_MS * 1000000ull;
  }
  uint32_t pid = shm::load_acquire(&a->controller_pid);
  uint64_t start = shm::load_acquire(&a->controller_start);
  uint64_t now = bh_agent_proc_start_time(pid);
  return now == 0 || (start != 0 && now != start);
}

// Maps `name` and prepares serving it (no plan applied yet): NULL and a log
// line on any failure.
Served *open_served(const std::string &name) {
  bh_region *r = nullptr;
  int rc = bh_region_open(name.c_str(), &r);
  if (rc != 0) {
    const char *why = rc == -EPROTO   ? "not a region of this layout (magic, version or size)"
                      : rc == -EPERM  ? "owned by another user"
                      : rc == -EACCES ? "accessible to group or others"
                                      : strerror(-rc);
    agent_log(kLogErr, "region '%s' refused: %s; the program runs without probes", name.c_str(), why);
    return nullptr;
  }
  auto *s = new Served();
  s->name = name;
  s->region = r;
  std::string err;
  rc = s->view.init(r, err);
  if (rc != 0) {
    agent_log(kLogErr, "region '%s' refused: %s; the program runs without probes", name.c_str(), err.c_str());
    bh_region_close(r);
    delete s;
    return nullptr;
  }
  struct stat st {};
  const uint64_t creator_ns = static_cast<const bh_region_header *>(bh_region_base(r))->creator_pidns;
  s->foreign_pidns = creator_ns != 0 && stat("/proc/self/ns/pid", &st) == 0 && uint64_t(st.st_ino) != creator_ns;
  // Logs go to the region's ring from here on (unless the env chose).
  sync_rings(*s);
  return s;
}

// Leaves the served region: links detached, results written, record GONE.
// The Served object and its map handles are kept (probes may be leaving
// code that references them).
void leave(Served &s, const char *why) {
  detach_everything(s, why);
  for (auto &kv : s.progs)
    if (kv.second != nullptr) bh_program_release(kv.second);
  s.progs.clear();
  bh_agent_proc_rec *p = s.proc >= 0 ? s.view.proc_rec(uint32_t(s.proc)) : nullptr;
  if (p != nullptr) {
    shm::store_relaxed(&p->attached, 0u);
    shm::store_release(&p->state, uint32_t(BH_AGENT_PROC_GONE));
  }
  raise_event(s);
}

// Starting to serve: claim a record, wait (bounded) for a plan, apply it.
void serve(Served *s, uint32_t parent, bool wait_for_plan) {
  s->proc = claim_proc(*s, parent);
  if (s->proc < 0) agent_log(kLogWarn, "region '%s': no free process record", s->name.c_str());
  raise_event(*s);
  bh_agent_area *a = s->view.area();
  if (wait_for_plan) {
    // Wait for the first plan while the controller shows signs of life: each
    // heartbeat it writes extends the wait by start_wait_ms (a controller
    // slowed by a loaded machine is not given up on), up to a hard cap.
    uint32_t wait_ms = a->start_wait_ms ? a->start_wait_ms : kDefaultStartWaitMs;
    if (wait_ms > 60000) wait_ms = 60000;
    const uint64_t wait_ns = uint64_t(wait_ms) * 1000000ull;
    uint64_t now = bh_agent_now_ns();
    const uint64_t cap = now + (wait_ns > kStartWaitCapNs ? wait_ns : kStartWaitCapNs);
    uint64_t deadline = now + wait_ns;
    uint64_t last_beat = shm::load_acquire(&a->heartbeat_ns);
    while (shm::load_acquire(&a->plan_seq) == 0) {
      now = bh_agent_now_ns();
      uint64_t beat = shm::load_acquire(&a->heartbeat_ns);
      if (beat != last_beat) {
        last_beat = beat;
        deadline = now + wait_ns < cap ? now + wait_ns : cap;
      }
      if (now >= deadline) break;
      uint64_t left_ms = (deadline - now) / 1000000ull + 1;
      bh_agent_futex_wait(&a->plan_seq, 0, uint32_t(left_ms < BH_AGENT_HEARTBEAT_MS ? left_ms : BH_AGENT_HEARTBEAT_MS));
    }
  }
  if (shm::load_acquire(&a->plan_seq) == 0) {
    agent_log(kLogWarn, "region '%s': no plan yet; the control thread applies it when it comes", s->name.c_str());
    update_proc(*s, 0, false);
  } else {
    apply(*s);
  }
}

void *control_main(void *);

// Starts the control thread with every signal blocked from its first
// instruction (the program's handlers are not for it).
void start_control_thread() {
  Agent &g = agent();
  bool expected = false;
  if (!g.thread_running.compare_exchange_strong(expected, true)) return;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, control_main, nullptr);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    g.thread_running.store(false);
    agent_log(kLogErr, "control thread not started (%s): the plan is not followed any more", strerror(rc));
    return;
  }
  pthread_setname_np(t, "bpfhook-agent");
}

void take_pending() {
  Agent &g = agent();
  if (!g.has_pending.exchange(false)) return;
  std::string name;
  {
    std::lock_guard<std::mutex> l(g.pending_mu);
    name = g.pending;
  }
  std::unique_lock<std::mutex> lock(g.mu);
  if (g.cur != nullptr && g.cur->name == name && !g.cur->controller_gone) {
    // The region it serves already (an injection reusing a preloaded
    // agent): apply what is published, keep what is attached.
    apply(*g.cur);
    return;
  }
  lock.unlock();
  Served *s = open_served(name);  // outside mu: mapping takes no runtime lock
  std::lock_guard<std::mutex> l(g.mu);
  if (g.cur != nullptr) {
    agent_log(kLogInfo, "leaving region '%s' for '%s'", g.cur->name.c_str(), name.c_str());
    leave(*g.cur, "detached: the agent switched to another region");
    g.cur = nullptr;
  }
  if (s == nullptr) return;
  serve(s, 0, false);
  g.cur = s;
}

void *control_main(void *) {
  Agent &g = agent();
  uint32_t seen = 0;
  Served *last = nullptr;
  for (;;) {
    try {
      take_pending();
      Served *s;
      {
        std::lock_guard<std::mutex> l(g.mu);
        s = g.cur;
      }
      if (s == nullptr) {
        uint32_t k = shm::load_acquire(&g.kick);
        if (!g.has_pending.load()) bh_agent_futex_wait(&g.kick, k, BH_AGENT_HEARTBEAT_MS);
        continue;
      }
      if (s != last) {
        last = s;
        seen = s->proc >= 0 ? shm::load_acquire(&s->view.proc_rec(uint32_t(s->proc))->applied_seq) : 0;
      }
      uint32_t seq = bh_agent_futex_wait(&s->view.area()->plan_seq, seen, BH_AGENT_HEARTBEAT_MS);
      std::lock_guard<std::mutex> l(g.mu);
      if (g.cur != s || g.exiting.load()) continue;
      if (s->controller_gone) {
        update_proc(*s, 0, false);
        continue;
      }
      if (controller_gone(*s)) {
        s->controller_gone = true;
        bool keep = (shm::load_acquire(&s->view.area()->flags) & BH_AGENT_F_KEEP_ON_EXIT) != 0;
        agent_log(kLogWarn, "controller of region '%s' is gone: %s", s->name.c_str(),
                  keep ? "probes kept (keep-on-exit)" : "detaching every probe");
        if (!keep) detach_everything(*s, "detached: the controller is gone");
        update_proc(*s, 0, false);
        raise_event(*s);
        continue;
      }
      if (seq != seen) {
        seen = seq;
        apply(*s);
      } else {
        update_proc(*s, 0, false);
      }
    } catch (...) {
      // Nothing may take the program down; try again next tick.
      usleep(BH_AGENT_HEARTBEAT_MS * 1000);
    }
  }
  return nullptr;
}

// ---- fork -----------------------------------------------------------------------

void atfork_prepare() { agent().mu.lock(); }
void atfork_parent() { agent().mu.unlock(); }
void atfork_child() {
  Agent &g = agent();
  g.mu.unlock();  // locked by this very thread in prepare
  // The control thread did not survive the fork.
  g.thread_running.store(false);
  try {
    Served *s = g.cur;
    if (s == nullptr) return;
    // The probes (copied memory) fire here too: the child is an agent of its
    // own, with its own record.
    bh_agent_proc_rec *old = s->proc >= 0 ? s->view.proc_rec(uint32_t(s->proc)) : nullptr;
    uint32_t parent = old != nullptr ? shm::load_relaxed(&old->pid) : 0;
    // What the parent had applied is what the child holds: a plan published
    // since is applied by the child's control thread.
    uint32_t applied = old != nullptr ? shm::load_acquire(&old->applied_seq) : 0;
    s->proc = claim_proc(*s, parent);
    update_proc(*s, applied, true);
    raise_event(*s);
    start_control_thread();
  } catch (...) {
  }
}

// Removes the agent from LD_PRELOAD and BPFHOOK_REGION so exec'd programs
// run without it (before main: single-threaded, setenv is safe).
void drop_inheritance() {
  unsetenv(BH_AGENT_ENV_REGION);
  const char *pre = getenv("LD_PRELOAD");
  if (pre == nullptr) return;
  std::string in(pre), out;
  size_t i = 0;
  while (i <= in.size()) {
    size_t j = in.find_first_of(": ", i);
    if (j == std::string::npos) j = in.size();
    std::string item = in.substr(i, j - i);
    if (!item.empty() && item.find("libbpfhook_agent") == std::string::npos) {
      if (!out.empty()) out += ':';
      out += item;
    }
    i = j + 1;
  }
  if (out.empty())
    unsetenv("LD_PRELOAD");
  else
    setenv("LD_PRELOAD", out.c_str(), 1);
}

__attribute__((constructor)) void agent_init() {
  try {
    Agent &g = agent();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    const char *fault = getenv("BPFHOOK_AGENT_FAULT");
    if (fault != nullptr && fault[0] != '\0') g_fault_after = strtol(fault, nullptr, 10);
    const char *log = getenv(BH_AGENT_ENV_LOG);
    if (log != nullptr && log[0] != '\0') {
      g_log_env = true;
      g_log_fd = strcmp(log, "stderr") == 0 ? 2 : open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    const char *env = getenv(BH_AGENT_ENV_REGION);
    if (env == nullptr || env[0] == '\0') return;  // not ours to do anything
    std::string name(env);
    const char *noinherit = getenv(BH_AGENT_ENV_NOINHERIT);
    if (noinherit != nullptr && strcmp(noinherit, "1") == 0) drop_inheritance();
    Served *s = open_served(name);
    if (s == nullptr) return;
    {
      std::lock_guard<std::mutex> l(g.mu);
      serve(s, 0, true);
      g.cur = s;
    }
    start_control_thread();
  } catch (...) {
  }
}

// At exit (not exec, which runs no destructor: the next image takes over the
// same record by pid).
__attribute__((destructor)) void agent_fini() {
  Agent &g = agent();
  g.exiting.store(true);
  Served *s = g.cur;  // never freed, so a racy read is safe
  if (s != nullptr && s->proc >= 0) {
    bh_agent_proc_rec *p = s->view.proc_rec(uint32_t(s->proc));
    shm::store_release(&p->state, uint32_t(BH_AGENT_PROC_GONE));
    raise_event(*s);
  }
}

}  // namespace
}  // namespace bpfhook::agent

using namespace bpfhook::agent;

// Serve region `name` (an injected agent, or a switch): records the request
// and returns at once (it runs on a thread hijacked by ptrace); the control
// thread, started here if needed, maps the region within a heartbeat, leaves
// the old one (detaching its probes) and applies the new plan.
BH_AGENT_EXPORT int bh_agent_attach_region(const char *name) {
  try {
    if (name == nullptr || name[0] != '/' || strlen(name) > 255) return -EINVAL;
    Agent &g = agent();
    {
      std::lock_guard<std::mutex> l(g.pending_mu);
      g.pending = name;
    }
    g.has_pending.store(true);
    shm::fetch_add(&g.kick, 1u);
    bh_agent_futex_wake(&g.kick);
    start_control_thread();
    return 0;
  } catch (...) {
    return -ENOMEM;
  }
}

// Detaches every probe of the served region and stops serving it. Returns
// the number of probes detached.
BH_AGENT_EXPORT int bh_agent_detach_all(void) {
  try {
    Agent &g = agent();
    std::lock_guard<std::mutex> l(g.mu);
    if (g.cur == nullptr) return 0;
    int n = int(g.cur->links.size());
    leave(*g.cur, "detached: bh_agent_detach_all");
    g.cur = nullptr;
    return n;
  } catch (...) {
    return -ENOMEM;
  }
}
