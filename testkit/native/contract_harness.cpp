// The plugin contract at the C ABI, without the core: loads a plugin's
// native piece the way bh_runtime does and drives its bh_plugin_ops
// directly, in a process of its own (the test kit spawns it, so a crash is
// a failed check, not a dead test runner).
//
//   bpfhook_contract_harness LIB NAME TYPE_ID HEX_PRIVATE_DATA THREADS ROUNDS
//
// HEX_PRIVATE_DATA "-": only the checks that attach nothing. Prints one line
// per check passed ("ok <what>"); on the first failure prints "FAIL <what>"
// and exits 1. Exit 0: every check passed.
#include <dlfcn.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/plugin.h"

namespace {

[[noreturn]] void fail(const std::string &what) {
  printf("FAIL %s\n", what.c_str());
  fflush(stdout);
  exit(1);
}

void ok(const std::string &what) {
  printf("ok %s\n", what.c_str());
  fflush(stdout);
}

// The probe context API a host offers: a thread-local slot, as the core's.
thread_local bh_probe_ctx *t_probe = nullptr;
void probe_enter(bh_probe_ctx *ctx) { t_probe = ctx; }
void probe_leave() { t_probe = nullptr; }
bh_probe_ctx *probe_current() { return t_probe; }
const bh_probe_api kProbe = {sizeof(bh_probe_api), probe_enter, probe_leave, probe_current};

void host_log(void *, int level, const char *msg) { fprintf(stderr, "plugin log %d: %s\n", level, msg); }

// The "program": counts its runs. Never called here unless the plugin
// fires on its own; a run after detach would be a contract breach, but
// nothing in this process fires events, so runs are only reported.
std::atomic<uint64_t> g_runs{0};
int count_run(void *, void *, size_t, uint64_t *ret) {
  g_runs.fetch_add(1, std::memory_order_relaxed);
  if (ret != nullptr) *ret = 0;
  return 0;
}

int register_helper(void *, uint32_t, const char *name,
                    uint64_t (*fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t), uint32_t) {
  return name != nullptr && fn != nullptr ? 0 : -EINVAL;
}

std::vector<uint8_t> from_hex(const char *hex) {
  std::vector<uint8_t> out;
  const size_t n = strlen(hex);
  if (n % 2 != 0) fail("private data: odd number of hex digits");
  for (size_t i = 0; i < n; i += 2) {
    char byte[3] = {hex[i], hex[i + 1], 0};
    char *end = nullptr;
    const long v = strtol(byte, &end, 16);
    if (end != byte + 2) fail("private data: not hex");
    out.push_back(static_cast<uint8_t>(v));
  }
  return out;
}

struct Plugin {
  const bh_plugin_ops *ops;
  void *state;
  uint32_t type;
  std::vector<uint8_t> data;

  int attach(std::string *err) const {
    bh_attach_opts o{};
    o.sz = sizeof o;
    o.attach_type = type;
    o.private_data = data.data();
    o.private_data_len = data.size();
    o.run = count_run;
    o.prog = nullptr;
    o.jit = nullptr;
    o.cookie = 0;
    o.prog_name = "contract";
    o.prog_flags = BH_PROG_F_PROBE_CTX;
    char msg[512] = "";
    const int rc = ops->attach(state, &o, msg, sizeof msg);
    if (rc < 0 && err != nullptr) *err = msg;
    return rc;
  }
};

}  // namespace

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s LIB NAME TYPE_ID HEX_PRIVATE_DATA|- THREADS ROUNDS\n", argv[0]);
    return 2;
  }
  const char *lib = argv[1];
  const std::string name = argv[2];
  const int threads = atoi(argv[5]);
  const int rounds = atoi(argv[6]);

  // As bh_runtime opens a plugin: RTLD_LOCAL, the entry symbol, the table's size, ABI and name.
  void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) fail(std::string("dlopen: ") + dlerror());
  auto entry = reinterpret_cast<bh_plugin_entry_fn>(dlsym(handle, BH_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) fail("exports bh_plugin_entry");
  const bh_plugin_ops *ops = entry();
  if (ops == nullptr || ops->sz < offsetof(bh_plugin_ops, register_helpers)) fail("bh_plugin_entry returns a table");
  if (ops->abi_version != BH_PLUGIN_ABI_VERSION) fail("ABI version " + std::to_string(ops->abi_version));
  if (ops->name == nullptr || name != ops->name)
    fail(std::string("native name '") + (ops->name ? ops->name : "(null)") + "'");
  if (ops->attach == nullptr || ops->detach == nullptr) fail("attach and detach present");
  ok("entry, table size, ABI version and name");

  bh_host host{};
  host.sz = sizeof host;
  host.abi_version = BH_PLUGIN_ABI_VERSION;
  host.log = host_log;
  host.host_ctx = nullptr;
  host.probe = &kProbe;
  Plugin p{ops, nullptr, static_cast<uint32_t>(atoi(argv[3])), {}};
  if (ops->init != nullptr) {
    char msg[512] = "";
    const int rc = ops->init(&p.state, &host, msg, sizeof msg);
    if (rc < 0) fail("init: " + std::to_string(rc) + " " + msg);
  }
  ok("init");
  if (BH_SZ_HAS(ops, bh_plugin_ops, register_helpers) && ops->register_helpers != nullptr) {
    const int rc = ops->register_helpers(p.state, register_helper, nullptr);
    if (rc < 0) fail("register_helpers: " + std::to_string(rc));
    ok("register_helpers");
  }

  for (int id : {-1, 0, 12345, 1 << 30}) {
    const int rc = ops->detach(p.state, id);
    if (rc != -ENOENT) fail("detach of unknown id " + std::to_string(id) + " before any attach: " + std::to_string(rc));
  }
  ok("detach of an unknown id is -ENOENT");

  if (strcmp(argv[4], "-") != 0) {
    p.data = from_hex(argv[4]);
    std::string err;
    const int id = p.attach(&err);
    if (id < 0) fail("attach: " + std::to_string(id) + " " + err);
    if (ops->detach(p.state, id) != 0) fail("detach of a live id");
    const int again = ops->detach(p.state, id);
    if (again != -ENOENT) fail("second detach of id " + std::to_string(id) + ": " + std::to_string(again));
    ok("attach, detach, and a second detach of the same id is -ENOENT");

    const int id2 = p.attach(&err);
    if (id2 < 0) fail("re-attach: " + err);
    const int id3 = p.attach(&err);
    if (id3 < 0 || id3 == id2) fail("a second attachment gets its own id");
    if (ops->detach(p.state, id2) != 0 || ops->detach(p.state, id3) != 0) fail("detach of both");
    ok("re-attach, and two attachments with distinct ids");

    // Several threads attach and detach at once on one state: every call
    // succeeds, live ids are distinct, and nothing is left afterwards.
    std::atomic<int> bad{0};
    std::vector<std::vector<int>> seen(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
      pool.emplace_back([&, t] {
        for (int r = 0; r < rounds; r++) {
          const int a = p.attach(nullptr);
          const int b = p.attach(nullptr);
          if (a < 0 || b < 0 || a == b) {
            bad++;
            continue;
          }
          seen[t].push_back(a);
          seen[t].push_back(b);
          if (ops->detach(p.state, b) != 0 || ops->detach(p.state, a) != 0) bad++;
        }
      });
    }
    for (auto &th : pool) th.join();
    if (bad.load() != 0)
      fail(std::to_string(bad.load()) + " failed attach/detach calls from " + std::to_string(threads) + " threads");
    for (const auto &ids : seen) {
      for (int id_seen : ids) {
        if (ops->detach(p.state, id_seen) != -ENOENT)
          fail("id " + std::to_string(id_seen) + " still attached after the threads");
      }
    }
    ok("attach/detach from " + std::to_string(threads) + " threads at once, nothing left");
  }

  if (ops->fini != nullptr) ops->fini(p.state);
  ok("fini");
  printf("runs %llu\n", static_cast<unsigned long long>(g_runs.load()));
  // The library stays loaded: a plugin may have started threads that end at exit.
  return 0;
}
