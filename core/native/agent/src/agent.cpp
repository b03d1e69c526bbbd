// libbpfhook_agent.so: the agent of agent mode. Preloaded (LD_PRELOAD) or
// injected (bh_inject_dlopen + bh_agent_attach_region) into a target, it
// reads the plan a controller wrote into the shared region's agent area
// (bpfhook/agent_area.h), loads plugins and programs, attaches, and writes the
// outcome of every attachment back. No Node.
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
#include "bpfhook/agent_area.hpp"
#include "bpfhook/helpers.h"
#include "bpfhook/maps.h"
#include "bpfhook/region.h"
#include "bpfhook/runtime.h"
#include "bpfhook/shm_sync.hpp"

#define BH_AGENT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

namespace shm = bpfhook::shm;
using bpfhook::agent::AreaView;

// bh_log_level (plugin.h): what plugins pass to host->log, and what the log ring carries.
constexpr int kLogErr = BH_LOG_ERROR, kLogWarn = BH_LOG_WARN, kLogInfo = BH_LOG_INFO;
constexpr uint32_t kDefaultStartWaitMs = 5000;

// ---- logging ----------------------------------------------------------------

int g_log_fd = -1;                          // BPFHOOK_AGENT_LOG (file or stderr)
bool g_log_env = false;                     // the env chose the destination
std::atomic<bh_map *> g_log_ring{nullptr};  // else the region's log ring
std::atomic<bh_map *> g_printk_ring{nullptr};
// Fault injection for the tests of "the agent dies during an attach":
// BPFHOOK_AGENT_FAULT=N kills this process (SIGKILL) right after its N-th
// successful attachment. Read once at start; -1: off.
long g_fault_after = -1;
long g_attached_total = 0;

uint32_t self_tid() { return uint32_t(syscall(SYS_gettid)); }

void ring_write(bh_map *m, uint32_t a, uint32_t b, const char *msg, size_t len) {
  void *p = bh_ringbuf_reserve(m, 8 + len, 0);
  if (p == nullptr) return;  // full: dropped (the ring counts it)
  auto *u = static_cast<uint32_t *>(p);
  u[0] = a;
  u[1] = b;
  memcpy(u + 2, msg, len);
  bh_ringbuf_submit(p, 0);
}

void agent_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void agent_log(int level, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = size_t(n) < sizeof msg ? size_t(n) : sizeof msg - 1;
  if (g_log_env) {
    if (g_log_fd < 0) return;
    char line[900];
    int m = snprintf(line, sizeof line, "bpfhook-agent[%d] %s: %s\n", int(getpid()),
                     level >= kLogErr    ? "error"
                     : level >= kLogWarn ? "warning"
                                         : "info",
                     msg);
    if (m > 0) {
      ssize_t w = write(g_log_fd, line, size_t(m) < sizeof line ? size_t(m) : sizeof line - 1);
      (void)w;
    }
    return;
  }
  bh_map *ring = g_log_ring.load(std::memory_order_acquire);
  if (ring != nullptr) ring_write(ring, uint32_t(getpid()), uint32_t(level), msg, len);
  // No ring and no env: nowhere (never the program's stderr unasked).
}

void trace_sink(void *, const char *msg, size_t len) {
  bh_map *ring = g_printk_ring.load(std::memory_order_acquire);
  if (ring != nullptr) ring_write(ring, uint32_t(getpid()), self_tid(), msg, len);
}

void plugin_log(void *, int level, const char *msg) { agent_log(level, "plugin: %s", msg); }

// ---- the runtime (process-wide) ---------------------------------------------

int register_defaults(void *, bh_vm *vm) {
  bh_helpers_opts opts{};
  opts.sz = sizeof opts;
  opts.trace_sink = trace_sink;
  if (bh_helpers_register_all(vm, &opts) < 0) return -1;
  return bh_maps_register_helpers(vm) < 0 ? -1 : 0;
}

// ---- served state -------------------------------------------------------------

struct ArrayState {
  bh_prog_array *arr = nullptr;
  uint32_t synced_gen = 0;
  bool synced = false;
};

struct Served {
  std::string name;
  bh_region *region = nullptr;
  AreaView view;
  int proc = -1;                    // our process record
  std::map<uint32_t, int> plugins;  // record -> runtime plugin index, or -errno
  std::map<uint32_t, std::string> plugin_err;
  std::map<uint32_t, bh_program *> progs;  // record -> program (NULL: failed)
  std::map<uint32_t, std::pair<int, std::string>> prog_err;
  std::map<uint32_t, ArrayState> arrays;
  std::map<uint32_t, bh_map *> maps;  // region map index -> handle
  std::map<uint32_t, int> links;      // attach record -> link id
  std::map<uint32_t, bool> answered;  // attach records attached or failed here
  uint32_t failed = 0;
  uint32_t printk_map = ~0u, log_map = ~0u;
  bool controller_gone = false;
  bool foreign_pidns = false;  // the controller runs in another pid namespace
};

struct Agent {
  std::mutex mu;  // cur and everything in it; every runtime call
  bh_runtime *rt = nullptr;
  std::map<std::string, int> plugin_by_key;  // path + '\n' + name -> runtime index
  Served *cur = nullptr;
  std::atomic<bool> thread_running{false};
  std::atomic<bool> exiting{false};
  uint32_t parent_pid = 0;
  // bh_agent_attach_region's request for the control thread.
  std::mutex pending_mu;
  std::string pending;
  std::atomic<bool> has_pending{false};
  uint32_t kick = 0;  // local futex word the control thread waits on when idle
};

// Never destroyed: the control thread and probes may outlive static
// destruction at exit.
Agent &agent() {
  static Agent *a = new Agent();
  return *a;
}

bh_runtime *runtime() {
  Agent &g = agent();
  if (g.rt == nullptr) {
    bh_runtime_opts opts{};
    opts.sz = sizeof opts;
    opts.register_defaults = register_defaults;
    opts.log = plugin_log;
    opts.probe = bh_helpers_probe_api();
    g.rt = bh_runtime_create(&opts);
  }
  return g.rt;
}

void write_result(Served &s, uint32_t i, uint32_t result, int error, const std::string &msg) {
  bh_agent_attach_rec *rec = s.view.attach_rec(i);
  if (rec == nullptr) return;
  size_t n = msg.size() < BH_AGENT_MSG_MAX - 1 ? msg.size() : BH_AGENT_MSG_MAX - 1;
  memcpy(rec->message, msg.data(), n);
  rec->message[n] = '\0';
  shm::store_relaxed(&rec->error, int32_t(error));
  shm::store_relaxed(&rec->result_pid, uint32_t(getpid()));
  shm::store_release(&rec->result, result);
}

void read_comm(char out[16]) {
  memset(out, 0, 16);
  int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, out, 15);
  close(fd);
  if (n > 0 && out[n - 1] == '\n') out[n - 1] = '\0';
}

// Our record: the one that already holds our pid (this image replaced a
// preloaded one with exec), a free one, or one of a dead process.
int claim_proc(Served &s, uint32_t parent) {
  const uint32_t self = uint32_t(getpid());
  const uint32_t cap = s.view.cap_procs();
  int got = -1;
  for (uint32_t i = 0; i < cap && got < 0; i++)
    if (shm::load_acquire(&s.view.proc_rec(i)->pid) == self) got = int(i);
  for (uint32_t i = 0; i < cap && got < 0; i++) {
    uint32_t zero = 0;
    if (shm::cas(&s.view.proc_rec(i)->pid, zero, self)) got = int(i);
  }
  for (uint32_t i = 0; i < cap && got < 0; i++) {
    bh_agent_proc_rec *p = s.view.proc_rec(i);
    uint32_t pid = shm::load_acquire(&p->pid);
    if (pid == 0 || pid == self) continue;
    uint64_t st = bh_agent_proc_start_time(pid);
    bool dead = shm::load_acquire(&p->state) == BH_AGENT_PROC_GONE || st == 0 || st != p->start_time;
    if (dead && shm::cas(&p->pid, pid, self)) got = int(i);
  }
  if (got < 0) return -ENOSPC;
  bh_agent_proc_rec *p = s.view.proc_rec(uint32_t(got));
  p->start_time = bh_agent_proc_start_time(self);
  p->applied_seq = 0;
  p->attached = uint32_t(s.links.size());
  p->failed = s.failed;
  p->parent = parent;
  p->heartbeat_ns = bh_agent_now_ns();
  read_comm(p->comm);
  shm::store_release(&p->state, uint32_t(BH_AGENT_PROC_STARTING));
  return got;
}

void raise_event(Served &s) {
  shm::fetch_add(&s.view.area()->agent_event, 1u);
  bh_agent_futex_wake(&s.view.area()->agent_event);
}

// Opens the region map `index` once per served region, checked against
// the gen the controller recorded.
bh_map *open_map(Served &s, uint32_t index, uint32_t gen, std::string &err) {
  auto it = s.maps.find(index);
  bh_map *m = it != s.maps.end() ? it->second : nullptr;
  if (m == nullptr) {
    int rc = bh_map_open(s.region, index, &m);
    if (rc != 0) {
      err = "region map " + std::to_string(index) + " cannot be opened (" + strerror(-rc) + ")";
      return nullptr;
    }
    s.maps[index] = m;
  }
  if (bh_map_get_info(m)->gen != gen) {
    err = "region map " + std::to_string(index) + " ('" + bh_map_get_info(m)->name + "') was replaced (gen " +
          std::to_string(bh_map_get_info(m)->gen) + ", recorded " + std::to_string(gen) + ")";
    return nullptr;
  }
  return m;
}

// The rings for trace_printk and the log, when the controller changed them.
void sync_rings(Served &s) {
  bh_agent_area *a = s.view.area();
  uint32_t pi = shm::load_acquire(&a->printk_map), li = shm::load_acquire(&a->log_map);
  auto open_ring = [&](uint32_t index, uint32_t gen, std::atomic<bh_map *> &slot, const char *what) {
    std::string err;
    bh_map *m = open_map(s, index, gen, err);
    if (m != nullptr && bh_map_get_info(m)->type != BH_MAP_TYPE_RINGBUF) {
      err = std::string("region map ") + std::to_string(index) + " is not a ring buffer";
      m = nullptr;
    }
    // The old handle stays open: a probe may be writing to it right now.
    slot.store(m, std::memory_order_release);
    if (m == nullptr) agent_log(kLogWarn, "%s ring: %s", what, err.c_str());
  };
  if (pi != s.printk_map) {
    s.printk_map = pi;
    if (pi == ~0u)
      g_printk_ring.store(nullptr, std::memory_order_release);
    else
      open_ring(pi, shm::load_acquire(&a->printk_gen), g_printk_ring, "trace_printk");
  }
  if (li != s.log_map) {
    s.log_map = li;
    if (li == ~0u)
      g_log_ring.store(nullptr, std::memory_order_release);
    else
      open_ring(li, shm::load_acquire(&a->log_gen), g_log_ring, "log");
  }
}

int ensure_plugin(Served &s, uint32_t index, std::string &err) {
  auto it = s.plugins.find(index);
  if (it != s.plugins.end()) {
    if (it->second < 0) err = s.plugin_err[index];
    return it->second;
  }
  bpfhook::agent::PluginReq req;
  int rc = s.view.read_plugin(index, req, err);
  if (rc == 0) {
    std::string key = req.path + "\n" + req.name;
    Agent &g = agent();
    auto k = g.plugin_by_key.find(key);
    if (k != g.plugin_by_key.end()) {
      rc = k->second;
    } else {
      char buf[512] = {0};
      unsigned flags = (req.flags & BH_AGENT_PLUGIN_GLOBAL) ? BH_RUNTIME_PLUGIN_GLOBAL : 0u;
      rc = bh_runtime_open_plugin(runtime(), req.path.c_str(), req.name.c_str(), flags, buf, sizeof buf);
      if (rc >= 0) {
        g.plugin_by_key[key] = rc;
        agent_log(kLogInfo, "plugin '%s' loaded from %s", req.name.c_str(), req.path.c_str());
      } else {
        err = std::string("plugin '") + req.name + "': " + buf;
      }
    }
  }
  s.plugins[index] = rc;
  if (rc < 0) s.plugin_err[index] = err;
  return rc;
}

bh_prog_array *ensure_array(Served &s, uint32_t index, std::string &err) {
  auto it = s.arrays.find(index);
  if (it != s.arrays.end()) return it->second.arr;
  const uint32_t *slots = nullptr;
  uint32_t n = 0;
  if (s.view.read_prog_array(index, &slots, &n, err) != 0) return nullptr;
  char buf[256] = {0};
  bh_prog_array *arr = bh_runtime_prog_array_create(runtime(), n, buf, sizeof buf);
  if (arr == nullptr) {
    err = std::string("prog array ") + std::to_string(index) + ": " + buf;
    return nullptr;
  }
  s.arrays[index].arr = arr;  // filled by sync_arrays
  return arr;
}

// The program of record `index`, loaded once (NULL and err if it failed).
bh_program *ensure_prog(Served &s, uint32_t index, int *rc_out, std::string &err) {
  auto it = s.progs.find(index);
  if (it != s.progs.end()) {
    if (it->second == nullptr) {
      *rc_out = s.prog_err[index].first;
      err = s.prog_err[index].second;
    }
    return it->second;
  }
  auto failed = [&](int rc, const std::string &msg) -> bh_program * {
    s.progs[index] = nullptr;
    s.prog_err[index] = {rc, msg};
    *rc_out = rc;
    err = msg;
    return nullptr;
  };
  bpfhook::agent::ProgReq req;
  if (s.view.read_prog(index, req, err) != 0) return failed(-EPROTO, err);
  // A private copy: the controller's bytes must not change between the
  // validator and the JIT.
  std::vector<uint8_t> insns(static_cast<const uint8_t *>(req.insns),
                             static_cast<const uint8_t *>(req.insns) + req.insns_len);
  std::vector<void *> maps;
  for (size_t i = 0; i < req.maps.size(); i++) {
    const bh_agent_map_ref &ref = req.maps[i];
    std::string why;
    void *m = nullptr;
    if (ref.kind == BH_AGENT_MAP_REGION)
      m = open_map(s, ref.index, ref.gen, why);
    else if (ref.kind == BH_AGENT_MAP_PROG_ARRAY)
      m = ensure_array(s, ref.index, why);
    else
      why = "unknown map reference kind " + std::to_string(ref.kind);
    if (m == nullptr) return failed(-ESTALE, "prog '" + req.name + "': maps[" + std::to_string(i) + "]: " + why);
    maps.push_back(m);
  }
  bh_program_opts po{};
  po.sz = sizeof po;
  po.name = req.name.c_str();
  po.insns = insns.data();
  po.insns_len = insns.size();
  po.checked = (req.flags & BH_AGENT_PROG_CHECKED) ? 1 : 0;
  po.interpreter = (req.flags & BH_AGENT_PROG_INTERPRETER) ? 1 : 0;
  po.budget = req.budget;
  po.maps = maps.data();
  po.nmaps = maps.size();
  po.map_value_addr = bh_map_lddw_value_addr;
  po.map_desc = bh_map_vm_desc;
  po.region_base = bh_region_base(s.region);
  po.region_len = size_t(bh_region_size(s.region));
  char buf[512] = {0};
  bh_program *prog = bh_runtime_load_program(runtime(), &po, buf, sizeof buf);
  if (prog == nullptr) return failed(-EINVAL, "prog '" + req.name + "': " + buf);
  s.progs[index] = prog;
  return prog;
}

// Fills the prog arrays this process uses from their records, again when a
// record's gen moved. Loading a slot's program may bring new arrays: loop.
void sync_arrays(Served &s) {
  for (int round = 0; round < 64; round++) {
    bool again = false;
    std::vector<uint32_t> keys;
    for (auto &kv : s.arrays) keys.push_back(kv.first);
    for (uint32_t idx : keys) {
      ArrayState &st = s.arrays[idx];
      bh_agent_prog_array_rec *rec = s.view.prog_array_rec(idx);
      uint32_t gen = shm::load_acquire(&rec->gen);
      if (st.synced && gen == st.synced_gen) continue;
      const uint32_t *slots = nullptr;
      uint32_t n = 0;
      std::string err;
      if (s.view.read_prog_array(idx, &slots, &n, err) != 0) {
        agent_log(kLogErr, "%s", err.c_str());
        st.synced = true;
        st.synced_gen = gen;
        continue;
      }
      size_t before = s.arrays.size();
      for (uint32_t j = 0; j < n; j++) {
        uint32_t v = shm::load_acquire(slots + j);
        if (v == 0) {
          bh_runtime_prog_array_delete(runtime(), st.arr, j);
          continue;
        }
        int rc = 0;
        bh_program *p = ensure_prog(s, v - 1, &rc, err);
        if (p == nullptr) {
          agent_log(kLogErr, "prog array %u slot %u: %s", idx, j, err.c_str());
          bh_runtime_prog_array_delete(runtime(), st.arr, j);
        } else {
          bh_runtime_prog_array_update(runtime(), st.arr, j, p);
        }
      }
      st.synced = true;
      st.synced_gen = gen;
      if (s.arrays.size() != before) again = true;
    }
    if (!again) return;
  }
}

void detach_one(Served &s, uint32_t i, const char *why) {
  auto it = s.links.find(i);
  if (it == s.links.end()) return;
  int rc = bh_runtime_detach(runtime(), it->second);
  s.links.erase(it);
  write_result(s, i, BH_AGENT_RESULT_DETACHED, rc < 0 ? rc : 0, why);
}

void update_proc(Served &s, uint32_t seq, bool set_seq) {
  bh_agent_proc_rec *p = s.proc >= 0 ? s.view.proc_rec(uint32_t(s.proc)) : nullptr;
  if (p == nullptr) return;
  shm::store_relaxed(&p->attached, uint32_t(s.links.size()));
  shm::store_relaxed(&p->failed, s.failed);
  shm::store_relaxed(&p->heartbeat_ns, bh_agent_now_ns());
  if (set_seq) shm::store_release(&p->applied_seq, seq);
  if (!agent().exiting.load()) shm::store_release(&p->state, uint32_t(BH_AGENT_PROC_RUNNING));
}

// Applies the current plan (under mu).
void apply(Served &s) {
  bh_agent_area *a = s.view.area();
  const uint32_t seq = shm::load_acquire(&a->plan_seq);
  sync_rings(s);
  const uint32_t n = s.view.n_attach();
  struct Todo {
    uint32_t index;
    int plugin;
    bh_program *prog;
    bpfhook::agent::AttachReq req;
  };
  std::vector<Todo> todo;
  for (uint32_t i = 0; i < n; i++) {
    bh_agent_attach_rec *rec = s.view.attach_rec(i);
    uint32_t st = shm::load_acquire(&rec->state);
    if (st == BH_AGENT_ATTACH_REMOVED) {
      if (s.links.count(i) != 0) {
        detach_one(s, i, "detached: removed by the controller");
        agent_log(kLogInfo, "attachment %u detached", i);
      }
      continue;
    }
    if (st != BH_AGENT_ATTACH_WANT || s.answered.count(i) != 0) continue;
    s.answered[i] = true;
    Todo t{i, -1, nullptr, {}};
    std::string err;
    int rc = s.view.read_attach(i, t.req, err);
    if (rc == 0) rc = t.plugin = ensure_plugin(s, t.req.plugin, err);
    if (rc >= 0) {
      t.prog = ensure_prog(s, t.req.prog, &rc, err);
      if (t.prog != nullptr) rc = 0;
    }
    if (rc < 0) {
      s.failed++;
      write_result(s, i, BH_AGENT_RESULT_FAILED, rc, err);
      agent_log(kLogErr, "attachment %u failed: %s", i, err.c_str());
      continue;
    }
    todo.push_back(std::move(t));
  }
  // Tail-call targets in place before any program can run.
  sync_arrays(s);
  for (Todo &t : todo) {
    bh_runtime_attach_opts ao{};
    ao.sz = sizeof ao;
    ao.attach_type = t.req.attach_type;
    ao.private_data = t.req.data.data();
    ao.private_data_len = t.req.data.size();
    ao.cookie = t.req.cookie;
    char buf[1024] = {0};
    int rc = bh_runtime_attach(runtime(), t.plugin, t.prog, &ao, buf, sizeof buf);
    if (rc < 0) {
      s.failed++;
      write_result(s, t.index, BH_AGENT_RESULT_FAILED, rc, buf);
      agent_log(kLogErr, "attachment %u (prog '%s') failed: %s", t.index, bh_program_name(t.prog), buf);
    } else {
      s.links[t.index] = rc;
      write_result(s, t.index, BH_AGENT_RESULT_ATTACHED, 0, "");
      agent_log(kLogInfo, "attachment %u: prog '%s' attached", t.index, bh_program_name(t.prog));
      if (g_fault_after >= 0 && ++g_attached_total == g_fault_after) raise(SIGKILL);
    }
  }
  update_proc(s, seq, true);
  raise_event(s);
}

void detach_everything(Served &s, const char *why) {
  std::vector<uint32_t> idx;
  for (auto &kv : s.links) idx.push_back(kv.first);
  for (uint32_t i : idx) detach_one(s, i, why);
}

// The controller's process is gone (or its pid now names another process).
// A controller in another pid namespace (the region's creator_pidns is not
// ours) has a pid that means nothing here: then only its heartbeat counts,
// gone after 10 missed beats (CLOCK_MONOTONIC is shared across pid namespaces).
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
    uint32_t wait_ms = a->start_wait_ms ? a->start_wait_ms : kDefaultStartWaitMs;
    if (wait_ms > 60000) wait_ms = 60000;
    uint64_t deadline = bh_agent_now_ns() + uint64_t(wait_ms) * 1000000ull;
    while (shm::load_acquire(&a->plan_seq) == 0) {
      uint64_t now = bh_agent_now_ns();
      if (now >= deadline) break;
      bh_agent_futex_wait(&a->plan_seq, 0, uint32_t((deadline - now) / 1000000ull) + 1);
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
