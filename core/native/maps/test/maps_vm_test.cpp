// End to end with the real VM: a program that counts keys in a hash map
// (lookup, insert on a miss, atomic add through the returned pointer), emits
// each key to a ring buffer and bumps a global counter reached through a
// map-value lddw. Runs on several threads at once, in the interpreter and in
// the JIT, and checks exact totals. Built when the VM library is in the tree:
//   cmake -S core/native -B /tmp/bh -DBPFHOOK_BUILD_TESTS=ON
//   cmake --build /tmp/bh --target maps_vm_test -j2 && /tmp/bh/maps/maps_vm_test
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/maps.h"
#include "bpfhook/vm.h"

namespace {

int g_failures = 0;
#define CHECK_EQ(a, b)                                                                                   \
  do {                                                                                                   \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                                \
    if (va_ != vb_) {                                                                                    \
      g_failures++;                                                                                      \
      fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, va_, #b, vb_); \
    }                                                                                                    \
  } while (0)

bh_inst I(uint8_t op, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bh_inst i{};
  i.opcode = op;
  i.dst = dst;
  i.src = src;
  i.off = off;
  i.imm = imm;
  return i;
}

void Lddw(std::vector<bh_inst> &p, uint8_t dst, uint8_t src, int32_t imm, int32_t next_imm) {
  p.push_back(I(BH_OP_LDDW, dst, src, 0, imm));
  p.push_back(I(0, 0, 0, 0, next_imm));
}

struct Maps {
  bh_map *counts, *events, *global;
};

int Resolve(void *cookie, uint32_t, uint8_t src, int32_t imm, int32_t next_imm, uint64_t *out, char *err,
            size_t err_len) {
  auto *m = static_cast<Maps *>(cookie);
  bh_map *table[] = {m->counts, m->events, m->global};
  if (imm < 0 || imm > 2) {
    snprintf(err, err_len, "no map %d", imm);
    return -1;
  }
  if (src == BH_PSEUDO_MAP_FD) {
    *out = uint64_t(uintptr_t(table[imm]));
    return 0;
  }
  if (src == BH_PSEUDO_MAP_VALUE) {
    auto *v = static_cast<uint8_t *>(bh_map_value_addr(table[imm], 0));
    if (v == nullptr) return -1;
    *out = uint64_t(uintptr_t(v + next_imm));
    return 0;
  }
  return -1;
}

std::vector<bh_inst> Program() {
  const uint8_t ALU64_MOV_X = 0xbf, ALU64_MOV_K = 0xb7, ALU64_ADD_K = 0x07, LDXW = 0x61, STXW = 0x63, STDW = 0x7a,
                JNE_K = 0x55, JA = 0x05, ATOMIC_DW = 0xdb;
  std::vector<bh_inst> p;
  p.push_back(I(ALU64_MOV_X, 6, 1, 0, 0));    // r6 = ctx
  p.push_back(I(LDXW, 1, 6, 0, 0));           // r1 = *(u32 *)ctx
  p.push_back(I(STXW, 10, 1, -4, 0));         // key at fp-4
  Lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);         // r1 = &counts
  p.push_back(I(ALU64_MOV_X, 2, 10, 0, 0));
  p.push_back(I(ALU64_ADD_K, 2, 0, 0, -4));   // r2 = &key
  p.push_back(I(BH_OP_CALL, 0, 0, 0, 1));     // map_lookup_elem
  p.push_back(I(JNE_K, 0, 0, 11, 0));         // found -> +11
  p.push_back(I(STDW, 10, 0, -16, 1));        // value 1 at fp-16
  Lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);
  p.push_back(I(ALU64_MOV_X, 2, 10, 0, 0));
  p.push_back(I(ALU64_ADD_K, 2, 0, 0, -4));
  p.push_back(I(ALU64_MOV_X, 3, 10, 0, 0));
  p.push_back(I(ALU64_ADD_K, 3, 0, 0, -16));
  p.push_back(I(ALU64_MOV_K, 4, 0, 0, BH_NOEXIST));
  p.push_back(I(BH_OP_CALL, 0, 0, 0, 2));     // map_update_elem
  // A racing thread may have inserted first (EEXIST): look up and add then.
  p.push_back(I(JNE_K, 0, 0, -16, 0));        // r0 != 0 -> back to the lookup
  p.push_back(I(JA, 0, 0, 2, 0));             // inserted 1: skip the add
  p.push_back(I(ALU64_MOV_K, 1, 0, 0, 1));    // found:
  p.push_back(I(ATOMIC_DW, 0, 1, 0, BH_ATOMIC_ADD));  // lock *(u64 *)r0 += 1
  Lddw(p, 1, BH_PSEUDO_MAP_FD, 1, 0);         // r1 = &events
  p.push_back(I(ALU64_MOV_X, 2, 10, 0, 0));
  p.push_back(I(ALU64_ADD_K, 2, 0, 0, -4));
  p.push_back(I(ALU64_MOV_K, 3, 0, 0, 4));
  p.push_back(I(ALU64_MOV_K, 4, 0, 0, 0));
  p.push_back(I(BH_OP_CALL, 0, 0, 0, 130));   // ringbuf_output
  Lddw(p, 1, BH_PSEUDO_MAP_VALUE, 2, 8);      // r1 = &global value + 8
  p.push_back(I(ALU64_MOV_K, 2, 0, 0, 1));
  p.push_back(I(ATOMIC_DW, 1, 2, 0, BH_ATOMIC_ADD));
  p.push_back(I(ALU64_MOV_K, 0, 0, 0, 0));
  p.push_back(I(BH_OP_EXIT, 0, 0, 0, 0));
  return p;
}

bh_map *Make(bh_region *r, const char *name, uint32_t type, uint32_t ks, uint32_t vs, uint32_t max) {
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.name = name;
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  bh_map *m = nullptr;
  if (bh_map_create(r, &s, &m) != 0) fprintf(stderr, "create %s failed\n", name);
  return m;
}

void RunCase(bh_region *r, bool jit, const char *tag) {
  std::string suffix = tag;
  Maps maps{Make(r, ("counts_" + suffix).c_str(), BH_MAP_TYPE_HASH, 4, 8, 64),
            Make(r, ("events_" + suffix).c_str(), BH_MAP_TYPE_RINGBUF, 0, 0, 1 << 22),
            Make(r, ("global_" + suffix).c_str(), BH_MAP_TYPE_ARRAY, 4, 16, 1)};
  bh_vm *vm = bh_vm_create();
  CHECK_EQ(bh_maps_register_helpers(vm), 0);
  bh_vm_set_lddw_resolver(vm, Resolve, &maps);
  std::vector<bh_inst> prog = Program();
  char err[256] = {0};
  if (bh_vm_load(vm, prog.data(), prog.size() * sizeof(bh_inst), err, sizeof(err)) != 0) {
    fprintf(stderr, "load: %s\n", err);
    g_failures++;
    return;
  }
  if (jit && bh_vm_compile(vm, err, sizeof(err)) == nullptr) {
    fprintf(stderr, "compile: %s\n", err);
    g_failures++;
    return;
  }
  const int threads = 4, iters = 50000, keys = 10;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < iters; i++) {
        uint32_t ctx = uint32_t((i + t) % keys);
        uint64_t r0 = 1;
        bh_fault f{};
        int rc = jit ? bh_vm_exec_jit(vm, &ctx, sizeof(ctx), &r0, &f) : bh_vm_exec(vm, &ctx, sizeof(ctx), &r0, &f);
        if (rc != 0 || r0 != 0) {
          __atomic_fetch_add(&g_failures, 1, __ATOMIC_RELAXED);
          return;
        }
      }
    });
  }
  for (auto &t : ts) t.join();
  uint64_t total = 0;
  for (uint32_t k = 0; k < keys; k++) {
    uint64_t v = 0;
    CHECK_EQ(bh_map_lookup(maps.counts, &k, &v), 0);
    total += v;
  }
  CHECK_EQ(total, threads * iters);
  uint64_t events = 0;
  auto count4 = [](void *c, const void *, uint32_t size) {
    if (size == 4) ++*static_cast<uint64_t *>(c);
    return 0;
  };
  int n = bh_ringbuf_consume(maps.events, count4, &events, 0);
  CHECK_EQ(n, threads * iters);
  CHECK_EQ(events, threads * iters);
  uint32_t zero = 0;
  uint64_t global[2] = {0, 0};
  CHECK_EQ(bh_map_lookup(maps.global, &zero, global), 0);
  CHECK_EQ(global[1], threads * iters);
  printf("%s: %d runs on %d threads, counts %llu, events %llu, global %llu\n", tag, threads * iters, threads,
         (unsigned long long)total, (unsigned long long)events, (unsigned long long)global[1]);
  bh_vm_destroy(vm);
  bh_map_close(maps.counts);
  bh_map_close(maps.events);
  bh_map_close(maps.global);
}

}  // namespace

int main() {
  std::string name = "/bpfhook-mapsvm-" + std::to_string(getpid());
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = 64ull << 20;
  bh_region *r = nullptr;
  if (bh_region_create(name.c_str(), &o, &r) != 0) return 1;
  RunCase(r, false, "interp");
  RunCase(r, true, "jit");
  bh_region_close(r);
  printf("%s\n", g_failures == 0 ? "ok" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
