// The agent's pieces (libbpfhook_agent.so), shared by its three files:
// log.cpp (where the agent's lines and trace_printk output go), apply.cpp
// (the process-wide runtime and applying a region's plan), agent.cpp (life
// cycle: entry points, the control thread, fork). Everything here is hidden
// (-fvisibility=hidden); only bh_agent_* is exported.
#pragma once
#include <stdint.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "bpfhook/agent_area.h"
#include "bpfhook/agent_area.hpp"
#include "bpfhook/maps.h"
#include "bpfhook/plugin.h"
#include "bpfhook/runtime.h"

namespace bpfhook::agent {

// bh_log_level (plugin.h): what plugins pass to host->log, and what the log ring carries.
constexpr int kLogErr = BH_LOG_ERROR, kLogWarn = BH_LOG_WARN, kLogInfo = BH_LOG_INFO;

// ---- log.cpp ----
extern int g_log_fd;                         // BPFHOOK_AGENT_LOG (file or stderr)
extern bool g_log_env;                       // the env chose the destination
extern std::atomic<bh_map *> g_log_ring;     // else the region's log ring
extern std::atomic<bh_map *> g_printk_ring;  // trace_printk lines
void agent_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void trace_sink(void *, const char *msg, size_t len);
void plugin_log(void *, int level, const char *msg);

// ---- apply.cpp ----
// Fault injection for the tests of "the agent dies during an attach":
// BPFHOOK_AGENT_FAULT=N kills this process (SIGKILL) right after its N-th
// successful attachment. Read once at start; -1: off.
extern long g_fault_after;

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

// Never destroyed: the control thread and probes may outlive static
// destruction at exit.
Agent &agent();
// The process-wide runtime, made on first use (under agent().mu).
bh_runtime *runtime();
int claim_proc(Served &s, uint32_t parent);
void raise_event(Served &s);
void sync_rings(Served &s);
void update_proc(Served &s, uint32_t seq, bool set_seq);
// Applies the region's current plan: attaches what is wanted and not held,
// detaches what was removed, answers in the attachment records.
void apply(Served &s);
void detach_everything(Served &s, const char *why);

}  // namespace bpfhook::agent
