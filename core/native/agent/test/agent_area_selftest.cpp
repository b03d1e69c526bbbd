// Selftest of the agent area (agent_area.cpp) through its C API and the
// agent's checked view, no Node: the controller's writers, then every bound
// the reading side enforces, each broken on purpose in the shared memory (as
// a hostile or buggy writer could). Prints failed checks; exits non-zero.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "bpfhook/agent_area.h"
#include "bpfhook/agent_area.hpp"
#include "bpfhook/region.h"

static int g_failures = 0, g_checks = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    g_checks++;                                                                \
    if (!(cond)) {                                                             \
      g_failures++;                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

using bpfhook::agent::AreaView;

int main() {
  char name[64];
  snprintf(name, sizeof name, "/bpfhook-areatest-%d", int(getpid()));
  bh_region_opts ro{};
  ro.sz = sizeof ro;
  ro.size = 4 << 20;
  bh_region *r = nullptr;
  CHECK(bh_region_create(name, &ro, &r) == 0);
  if (r == nullptr) return 1;
  char err[512];
  bh_agent_area *a = nullptr;
  CHECK(bh_agent_area_get(r, &a, err, sizeof err) == -ENOENT);
  bh_region *other = nullptr;  // a second mapping: not the owner
  CHECK(bh_region_open(name, &other) == 0);
  if (other != nullptr) {
    CHECK(bh_agent_area_create(other, nullptr, err, sizeof err) == -EPERM);
    bh_region_close(other);
  }

  bh_agent_area_opts o{};
  o.sz = sizeof o;
  o.cap_plugins = 2;
  o.cap_progs = 4;
  o.cap_prog_arrays = 1;
  o.cap_attach = 4;
  o.cap_procs = 2;
  CHECK(bh_agent_area_create(r, &o, err, sizeof err) == 0);
  CHECK(bh_agent_area_create(r, &o, err, sizeof err) == -EEXIST);
  CHECK(bh_agent_area_get(r, &a, err, sizeof err) == 0);
  auto *h = static_cast<bh_region_header *>(bh_region_base(r));
  CHECK(h->agent_off != 0 && h->agent_size >= sizeof(bh_agent_area));
  CHECK(a->controller_pid == uint32_t(getpid()));
  CHECK(a->controller_start == bh_agent_proc_start_time(uint32_t(getpid())));
  CHECK(bh_agent_proc_start_time(0) == 0);

  // Writers and their refusals.
  CHECK(bh_agent_area_add_plugin(r, "p", "relative.so", 0, err, sizeof err) == -EINVAL);
  CHECK(bh_agent_area_add_plugin(r, "p", "/x/libp.so", 0, err, sizeof err) == 0);
  CHECK(bh_agent_area_add_plugin(r, "q", "/x/libq.so", 0, err, sizeof err) == 1);
  CHECK(bh_agent_area_add_plugin(r, "r", "/x/libr.so", 0, err, sizeof err) == -ENOSPC);
  CHECK(strstr(err, "plugins table is full (capacity 2)") != nullptr);
  const uint64_t insns[2] = {0xb7, 0x95};  // mov r0, 0; exit
  CHECK(bh_agent_area_add_prog(r, "prog", insns, 12, nullptr, 0, 0, 0, err, sizeof err) == -EINVAL);
  bh_agent_map_ref bad_ref{BH_AGENT_MAP_PROG_ARRAY, 0, 0, 0};
  CHECK(bh_agent_area_add_prog(r, "prog", insns, 16, &bad_ref, 1, 0, 0, err, sizeof err) == -EINVAL);
  CHECK(bh_agent_area_add_prog_array(r, 8, err, sizeof err) == 0);
  CHECK(bh_agent_area_add_prog(r, "prog", insns, 16, &bad_ref, 1, 0, 0, err, sizeof err) == 0);
  CHECK(bh_agent_area_set_prog_array_slot(r, 0, 8, 0) == -E2BIG);
  CHECK(bh_agent_area_set_prog_array_slot(r, 0, 1, 5) == -EINVAL);
  CHECK(bh_agent_area_set_prog_array_slot(r, 0, 1, 0) == 0);
  CHECK(bh_agent_area_add_attach(r, 2, 0, 6, "x", 1, 0, err, sizeof err) == -EINVAL);
  CHECK(bh_agent_area_add_attach(r, 0, 0, 6, "data", 4, 7, err, sizeof err) == 0);
  CHECK(bh_agent_area_remove_attach(r, 1) == -ENOENT);
  CHECK(bh_agent_area_publish(r) == 1);

  // The checked view reads them back.
  AreaView v;
  std::string msg;
  CHECK(v.init(r, msg) == 0);
  bpfhook::agent::PluginReq pl;
  CHECK(v.read_plugin(1, pl, msg) == 0 && pl.name == "q" && pl.path == "/x/libq.so");
  CHECK(v.read_plugin(2, pl, msg) == -EPROTO);
  bpfhook::agent::ProgReq pr;
  CHECK(v.read_prog(0, pr, msg) == 0 && pr.insns_len == 16 && pr.maps.size() == 1);
  bpfhook::agent::AttachReq at;
  CHECK(v.read_attach(0, at, msg) == 0 && at.data.size() == 4 && at.cookie == 7);
  const uint32_t *slots = nullptr;
  uint32_t n = 0;
  CHECK(v.read_prog_array(0, &slots, &n, msg) == 0 && n == 8 && slots[1] == 1);

  // Every bound, broken in place.
  auto *plugins = static_cast<bh_agent_plugin_rec *>(bh_region_at(r, a->plugins_off));
  memset(plugins[1].path, 'A', sizeof plugins[1].path);  // no NUL
  CHECK(v.read_plugin(1, pl, msg) == -EPROTO);
  auto *progs = static_cast<bh_agent_prog_rec *>(bh_region_at(r, a->progs_off));
  bh_agent_prog_rec saved = progs[0];
  progs[0].insns_len = 12;
  CHECK(v.read_prog(0, pr, msg) == -EPROTO);
  progs[0] = saved;
  progs[0].insns_len = (1u << 20) * 8 + 8;
  CHECK(v.read_prog(0, pr, msg) == -EPROTO);
  progs[0] = saved;
  progs[0].insns_off = bh_region_size(r) - 8;
  CHECK(v.read_prog(0, pr, msg) == -EPROTO);
  progs[0] = saved;
  progs[0].insns_off = 100;  // inside the header, not the data area
  CHECK(v.read_prog(0, pr, msg) == -EPROTO);
  progs[0] = saved;
  progs[0].nmaps = 65;
  CHECK(v.read_prog(0, pr, msg) == -EPROTO);
  progs[0] = saved;
  memset(progs[0].name, 'n', sizeof progs[0].name);
  CHECK(v.read_prog(0, pr, msg) == -EPROTO);
  progs[0] = saved;
  CHECK(v.read_prog(0, pr, msg) == 0);
  auto *att = static_cast<bh_agent_attach_rec *>(bh_region_at(r, a->attach_off));
  att[0].plugin = 2;
  CHECK(v.read_attach(0, at, msg) == -EPROTO);
  att[0].plugin = 0;
  att[0].data_off = ~0ull - 2;
  CHECK(v.read_attach(0, at, msg) == -EPROTO);
  att[0].data_off = 0;
  att[0].data_len = 0;
  CHECK(v.read_attach(0, at, msg) == 0);
  // Counts past capacity are clamped, never trusted.
  a->n_attach = 1000;
  CHECK(v.n_attach() == 4);
  CHECK(v.attach_rec(4) == nullptr);
  a->n_attach = 1;
  // Geometry: a table outside the area, or an area outside the region.
  uint64_t po = a->procs_off;
  a->procs_off = h->agent_off + h->agent_size;
  AreaView v2;
  CHECK(v2.init(r, msg) == -EPROTO && msg.find("processes") != std::string::npos);
  a->procs_off = po;
  a->cap_attach = 1u << 21;
  CHECK(v2.init(r, msg) == -EPROTO);
  a->cap_attach = 4;
  uint64_t size = h->agent_size;
  h->agent_size = bh_region_size(r);
  CHECK(v2.init(r, msg) == -EPROTO);
  h->agent_size = size;
  a->magic ^= 1;
  CHECK(bh_agent_area_get(r, &a, err, sizeof err) == -EPROTO);
  a->magic ^= 1;
  CHECK(v2.init(r, msg) == 0);
  // The view kept its own geometry: moving a table later does not move it.
  a->attach_off = 8;
  CHECK(v.attach_rec(0) == att);

  // Futex wait returns at once on a changed word, after the timeout otherwise.
  uint32_t word = 1;
  CHECK(bh_agent_futex_wait(&word, 0, 1000) == 1);
  uint64_t t0 = bh_agent_now_ns();
  CHECK(bh_agent_futex_wait(&word, 1, 20) == 1);
  CHECK(bh_agent_now_ns() - t0 >= 15000000ull);

  bh_region_close(r);
  printf("agent_area_selftest: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
