// The process-wide runtime and applying a region's plan (agent_area.h's
// protocol, agent's side): plugins by recorded path, programs with their map
// references, program arrays from their slot records, attachments, and the
// answer in every attachment record.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "bpfhook/helpers.h"
#include "bpfhook/shm_sync.hpp"
#include "internal.h"

namespace bpfhook::agent {

namespace shm = bpfhook::shm;

long g_fault_after = -1;

namespace {

long g_attached_total = 0;

int register_defaults(void *, bh_vm *vm) {
  bh_helpers_opts opts{};
  opts.sz = sizeof opts;
  opts.trace_sink = trace_sink;
  if (bh_helpers_register_all(vm, &opts) < 0) return -1;
  return bh_maps_register_helpers(vm) < 0 ? -1 : 0;
}

}  // namespace

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
    opts.maps = bh_runtime_host_maps();
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
}  // namespace bpfhook::agent
