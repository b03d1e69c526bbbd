// End to end with the real VM: a program that counts keys in a hash map
// (lookup, insert on a miss, atomic add through the returned pointer), emits
// each key to a ring buffer and bumps a global counter reached through a
// map-value lddw. Runs on several threads at once, in the interpreter and in
// the JIT, and checks exact totals. Then bpf_get_stackid against
// bpf_get_stack from a program, on a probed stack and on the stack of the
// code that started the run. Built when the VM library is in the tree:
//   cmake -S core/native -B /tmp/bh -DBPFHOOK_BUILD_TESTS=ON
//   cmake --build /tmp/bh --target maps_vm_test -j2 && /tmp/bh/maps/maps_vm_test
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/helpers.h"
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

bh_inst ins(uint8_t op, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bh_inst i{};
  i.opcode = op;
  i.dst = dst;
  i.src = src;
  i.off = off;
  i.imm = imm;
  return i;
}

void lddw(std::vector<bh_inst> &p, uint8_t dst, uint8_t src, int32_t imm, int32_t next_imm) {
  p.push_back(ins(BH_OP_LDDW, dst, src, 0, imm));
  p.push_back(ins(0, 0, 0, 0, next_imm));
}

struct Maps {
  bh_map *counts, *events, *global;
};

int resolve(void *cookie, uint32_t, uint8_t src, int32_t imm, int32_t next_imm, uint64_t *out, char *err,
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

std::vector<bh_inst> program() {
  const uint8_t ALU64_MOV_X = 0xbf, ALU64_MOV_K = 0xb7, ALU64_ADD_K = 0x07, LDXW = 0x61, STXW = 0x63, STDW = 0x7a,
                JNE_K = 0x55, JA = 0x05, ATOMIC_DW = 0xdb;
  std::vector<bh_inst> p;
  p.push_back(ins(ALU64_MOV_X, 6, 1, 0, 0));  // r6 = ctx
  p.push_back(ins(LDXW, 1, 6, 0, 0));         // r1 = *(u32 *)ctx
  p.push_back(ins(STXW, 10, 1, -4, 0));       // key at fp-4
  lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);         // r1 = &counts
  p.push_back(ins(ALU64_MOV_X, 2, 10, 0, 0));
  p.push_back(ins(ALU64_ADD_K, 2, 0, 0, -4));  // r2 = &key
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 1));    // map_lookup_elem
  p.push_back(ins(JNE_K, 0, 0, 11, 0));        // found -> +11
  p.push_back(ins(STDW, 10, 0, -16, 1));       // value 1 at fp-16
  lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);
  p.push_back(ins(ALU64_MOV_X, 2, 10, 0, 0));
  p.push_back(ins(ALU64_ADD_K, 2, 0, 0, -4));
  p.push_back(ins(ALU64_MOV_X, 3, 10, 0, 0));
  p.push_back(ins(ALU64_ADD_K, 3, 0, 0, -16));
  p.push_back(ins(ALU64_MOV_K, 4, 0, 0, BH_NOEXIST));
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 2));  // map_update_elem
  // A racing thread may have inserted first (EEXIST): look up and add then.
  p.push_back(ins(JNE_K, 0, 0, -16, 0));                // r0 != 0 -> back to the lookup
  p.push_back(ins(JA, 0, 0, 2, 0));                     // inserted 1: skip the add
  p.push_back(ins(ALU64_MOV_K, 1, 0, 0, 1));            // found:
  p.push_back(ins(ATOMIC_DW, 0, 1, 0, BH_ATOMIC_ADD));  // lock *(u64 *)r0 += 1
  lddw(p, 1, BH_PSEUDO_MAP_FD, 1, 0);                   // r1 = &events
  p.push_back(ins(ALU64_MOV_X, 2, 10, 0, 0));
  p.push_back(ins(ALU64_ADD_K, 2, 0, 0, -4));
  p.push_back(ins(ALU64_MOV_K, 3, 0, 0, 4));
  p.push_back(ins(ALU64_MOV_K, 4, 0, 0, 0));
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 130));  // ringbuf_output
  lddw(p, 1, BH_PSEUDO_MAP_VALUE, 2, 8);       // r1 = &global value + 8
  p.push_back(ins(ALU64_MOV_K, 2, 0, 0, 1));
  p.push_back(ins(ATOMIC_DW, 1, 2, 0, BH_ATOMIC_ADD));
  p.push_back(ins(ALU64_MOV_K, 0, 0, 0, 0));
  p.push_back(ins(BH_OP_EXIT, 0, 0, 0, 0));
  return p;
}

bh_map *make(bh_region *r, const char *name, uint32_t type, uint32_t ks, uint32_t vs, uint32_t max) {
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

void run_case(bh_region *r, bool jit, const char *tag) {
  std::string suffix = tag;
  Maps maps{make(r, ("counts_" + suffix).c_str(), BH_MAP_TYPE_HASH, 4, 8, 64),
            make(r, ("events_" + suffix).c_str(), BH_MAP_TYPE_RINGBUF, 0, 0, 1 << 22),
            make(r, ("global_" + suffix).c_str(), BH_MAP_TYPE_ARRAY, 4, 16, 1)};
  bh_vm *vm = bh_vm_create();
  CHECK_EQ(bh_maps_register_helpers(vm), 0);
  bh_vm_set_lddw_resolver(vm, resolve, &maps);
  std::vector<bh_inst> prog = program();
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
  // A record may be refused when a producer holding the ring's lock is
  // preempted past the probe's wait budget (a loaded machine): then it is
  // counted as a drop, never lost silently.
  bh_ringbuf_stats st{};
  CHECK_EQ(bh_ringbuf_get_stats(maps.events, &st), 0);
  CHECK_EQ(uint64_t(n) + st.drops, uint64_t(threads * iters));
  CHECK_EQ(events, uint64_t(n));
  if (st.drops != 0)
    printf("%s: %llu records dropped (lock wait budget), counted\n", tag, (unsigned long long)st.drops);
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

// ---- bpf_get_stackid -----------------------------------------------------------

// The program's context: what the helpers returned and what get_stack wrote.
struct StackCtx {
  int64_t id;          // get_stackid
  uint64_t frames[6];  // get_stack
  int64_t stack_rc;    // get_stack: bytes written
  int64_t id_again;    // get_stackid a second time, from another call site
};

int resolve_one(void *cookie, uint32_t, uint8_t src, int32_t, int32_t, uint64_t *out, char *, size_t) {
  if (src != BH_PSEUDO_MAP_FD) return -1;
  *out = uint64_t(uintptr_t(cookie));
  return 0;
}

std::vector<bh_inst> stack_program(uint64_t flags) {
  const uint8_t MOV_X = 0xbf, MOV_K = 0xb7, ADD_K = 0x07, STXDW = 0x7b;
  std::vector<bh_inst> p;
  p.push_back(ins(MOV_X, 6, 1, 0, 0));  // r6 = ctx
  lddw(p, 2, BH_PSEUDO_MAP_FD, 0, 0);
  p.push_back(ins(MOV_K, 3, 0, 0, int32_t(flags)));
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 27));  // get_stackid(ctx, map, flags)
  p.push_back(ins(STXDW, 6, 0, offsetof(StackCtx, id), 0));
  p.push_back(ins(MOV_X, 1, 6, 0, 0));
  p.push_back(ins(MOV_X, 2, 6, 0, 0));
  p.push_back(ins(ADD_K, 2, 0, 0, offsetof(StackCtx, frames)));
  p.push_back(ins(MOV_K, 3, 0, 0, sizeof(StackCtx::frames)));
  p.push_back(ins(MOV_K, 4, 0, 0, int32_t(flags)));
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 67));  // get_stack(ctx, buf, size, flags)
  p.push_back(ins(STXDW, 6, 0, offsetof(StackCtx, stack_rc), 0));
  p.push_back(ins(MOV_X, 1, 6, 0, 0));
  lddw(p, 2, BH_PSEUDO_MAP_FD, 0, 0);
  p.push_back(ins(MOV_K, 3, 0, 0, int32_t(flags)));
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 27));
  p.push_back(ins(STXDW, 6, 0, offsetof(StackCtx, id_again), 0));
  p.push_back(ins(MOV_K, 0, 0, 0, 0));
  p.push_back(ins(BH_OP_EXIT, 0, 0, 0, 0));
  return p;
}

bool run_stack(bh_map *m, bool jit, uint64_t flags, StackCtx *c) {
  bh_vm *vm = bh_vm_create();
  CHECK_EQ(bh_maps_register_helpers(vm), 0);
  CHECK_EQ(bh_vm_register_helper(vm, BH_FN_GET_STACK, "bpf_get_stack", bh_helper_get_stack, 0), 0);
  bh_vm_set_lddw_resolver(vm, resolve_one, m);
  std::vector<bh_inst> prog = stack_program(flags);
  char err[256] = {0};
  bool ok = bh_vm_load(vm, prog.data(), prog.size() * sizeof(bh_inst), err, sizeof(err)) == 0;
  if (!ok) fprintf(stderr, "stack program: %s\n", err);
  uint64_t r0 = 1;
  *c = StackCtx{};
  if (ok) ok = (jit ? bh_vm_exec_jit(vm, c, sizeof *c, &r0, nullptr) : bh_vm_exec(vm, c, sizeof *c, &r0, nullptr)) == 0;
  bh_vm_destroy(vm);
  CHECK_EQ(ok, true);
  return ok;
}

// get_stack's frames are what get_stackid stored under the id.
void check_same_frames(bh_map *m, const StackCtx &c, const char *what) {
  CHECK_EQ(c.id >= 0, true);
  CHECK_EQ(c.id_again, c.id);
  const int64_t n = c.stack_rc / 8;
  CHECK_EQ(n > 0, true);
  uint64_t stored[6];
  uint32_t key = uint32_t(c.id);
  CHECK_EQ(bh_map_lookup(m, &key, stored), 0);
  for (int64_t k = 0; k < 6; k++) {
    if (stored[k] != (k < n ? c.frames[k] : 0)) {
      fprintf(stderr, "%s: frame %lld: stored 0x%llx, get_stack 0x%llx\n", what, (long long)k,
              (unsigned long long)stored[k], (unsigned long long)c.frames[k]);
      g_failures++;
    }
  }
}

__attribute__((noinline)) bool run_stack_from_here(bh_map *m, bool jit, StackCtx *c) {
  const bh_stack_origin saved = bh_stack_origin_mark();
  const bool ok = run_stack(m, jit, BH_F_USER_STACK, c);
  bh_stack_origin_restore(saved);
  return ok;
}

void stack_case(bh_region *r, bool jit, const char *tag) {
  bh_map *m = make(r, (std::string("stacks_") + tag).c_str(), BH_MAP_TYPE_STACK_TRACE, 4, 6 * 8, 64);
  StackCtx c;

  // A probed stack (PT_REGS): entry probe at 0x1000, called from 0x2000,
  // frames 0x3000 and 0x4000 through a synthetic rbp chain.
  uint64_t outer[2] = {0, 0x4000};
  uint64_t inner[2] = {uint64_t(uintptr_t(outer)), 0x3000};
  uint64_t ret_at_sp = 0x2000;
  uint64_t regs[21] = {0};
  regs[16] = 0x1000;                           // ip
  regs[19] = uint64_t(uintptr_t(&ret_at_sp));  // sp
  regs[4] = uint64_t(uintptr_t(inner));        // bp
  const bool chain_up = uintptr_t(outer) > uintptr_t(inner);
  if (!chain_up) inner[0] = 0;
  bh_probe_ctx pc{};
  pc.func_ip = 0x1000;
  pc.regs = regs;
  pc.flags = BH_PROBE_F_PT_REGS;
  pc.nr_args = -1;
  bh_probe_ctx_enter(&pc);
  if (run_stack(m, jit, BH_F_USER_STACK, &c)) {
    CHECK_EQ(c.stack_rc, (chain_up ? 4 : 3) * 8);
    CHECK_EQ(c.frames[0], 0x1000);
    CHECK_EQ(c.frames[1], 0x2000);
    CHECK_EQ(c.frames[2], 0x3000);
    check_same_frames(m, c, "probed");
    const int64_t first = c.id;
    // skip 1: another stack, another id (here: a different bucket or -EEXIST).
    if (run_stack(m, jit, BH_F_USER_STACK | 1, &c)) {
      CHECK_EQ(c.frames[0], 0x2000);
      if (c.id >= 0) check_same_frames(m, c, "probed, skip 1");
      CHECK_EQ(c.id != first, true);
    }
  }
  // No user stack asked for: the (absent) kernel stack.
  if (run_stack(m, jit, 0, &c)) {
    CHECK_EQ(c.id, -EFAULT);
    CHECK_EQ(c.stack_rc, 0);
  }
  bh_probe_ctx_leave();

  // No probe context: the stack of the code that started the run. A map of
  // its own: in the one above, this stack's bucket may already hold another
  // stack (a hash collision, -EEXIST), which is the kernel's behaviour too.
  bh_map *om = make(r, (std::string("stacks_origin_") + tag).c_str(), BH_MAP_TYPE_STACK_TRACE, 4, 6 * 8, 64);
  if (run_stack_from_here(om, jit, &c)) {
    check_same_frames(om, c, "origin");
    CHECK_EQ(c.frames[0] != 0, true);
  }
  printf("%s: get_stackid ids %lld and %lld, frames match get_stack\n", tag, (long long)c.id, (long long)c.id_again);
  bh_map_close(om);
  bh_map_close(m);
}

// ---- the JIT's inline array lookup (bh_vm_set_inline_lookup) ----
//
// Three shapes, each run in the interpreter, the JIT with the inline lookup
// and the JIT without it, which must all agree: a straight lookup in an
// array (inlined); a lookup whose r1 comes from two paths, the array's or a
// hash map's (the call is a jump target: never inlined); and an array
// pointer in r1 overwritten by a hash map's before the call.
struct InlineMaps {
  bh_map *arr, *hash;
};

int resolve_inline(void *cookie, uint32_t, uint8_t src, int32_t imm, int32_t, uint64_t *out, char *err,
                   size_t err_len) {
  auto *m = static_cast<InlineMaps *>(cookie);
  if (src != BH_PSEUDO_MAP_FD || imm < 0 || imm > 1) {
    snprintf(err, err_len, "no map %d", imm);
    return -1;
  }
  *out = uint64_t(uintptr_t(imm == 0 ? m->arr : m->hash));
  return 0;
}

int layout(void *, const void *map, bh_vm_map *out) { return bh_map_vm_desc(const_cast<void *>(map), out); }

// ctx: u32 key, u32 sel. Returns the value found, or 0xdead.
std::vector<bh_inst> inline_program(int shape) {
  const uint8_t ALU64_MOV_X = 0xbf, ALU64_MOV_K = 0xb7, ALU64_ADD_K = 0x07, LDXW = 0x61, STXW = 0x63, LDXDW = 0x79,
                JNE_K = 0x55, JEQ_K = 0x15, JA = 0x05;
  std::vector<bh_inst> p;
  p.push_back(ins(LDXW, 2, 1, 0, 0));    // r2 = key
  p.push_back(ins(STXW, 10, 2, -4, 0));  // at fp-4
  p.push_back(ins(LDXW, 3, 1, 4, 0));    // r3 = sel
  if (shape == 0) {
    lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);  // r1 = &arr
  } else if (shape == 1) {
    // The array's lddw falls through into the join, the hash's jumps to it.
    p.push_back(ins(JEQ_K, 3, 0, 3, 0));  // sel == 0 -> the array
    lddw(p, 1, BH_PSEUDO_MAP_FD, 1, 0);   // r1 = &hash
    p.push_back(ins(JA, 0, 0, 2, 0));     // -> the join
    lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);   // r1 = &arr
  } else {
    lddw(p, 7, BH_PSEUDO_MAP_FD, 1, 0);         // r7 = &hash
    lddw(p, 1, BH_PSEUDO_MAP_FD, 0, 0);         // r1 = &arr
    p.push_back(ins(ALU64_MOV_X, 1, 7, 0, 0));  // r1 = r7
  }
  p.push_back(ins(ALU64_MOV_X, 2, 10, 0, 0));  // the join of shape 1
  p.push_back(ins(ALU64_ADD_K, 2, 0, 0, -4));
  p.push_back(ins(BH_OP_CALL, 0, 0, 0, 1));
  p.push_back(ins(JNE_K, 0, 0, 2, 0));
  p.push_back(ins(ALU64_MOV_K, 0, 0, 0, 0xdead));
  p.push_back(ins(BH_OP_EXIT, 0, 0, 0, 0));
  p.push_back(ins(LDXDW, 0, 0, 0, 0));
  p.push_back(ins(BH_OP_EXIT, 0, 0, 0, 0));
  return p;
}

void inline_case(bh_region *r) {
  InlineMaps maps{make(r, "inline_arr", BH_MAP_TYPE_ARRAY, 4, 8, 5),
                  make(r, "inline_hash", BH_MAP_TYPE_HASH, 4, 8, 16)};
  for (uint32_t k = 0; k < 5; k++) {
    uint64_t v = 100 + k, h = 1000 + k;
    CHECK_EQ(bh_map_update(maps.arr, &k, &v, BH_ANY), 0);
    CHECK_EQ(bh_map_update(maps.hash, &k, &h, BH_ANY), 0);
  }
  const uint32_t keys[] = {0, 3, 4, 5, 6, 0x7fffffff, 0x80000000u, 0xffffffffu};
  for (int shape = 0; shape < 3; shape++) {
    bh_vm *vm[3];
    size_t jit_size[3] = {0, 0, 0};
    char err[256] = {0};
    for (int v = 0; v < 3; v++) {  // interpreter, JIT, JIT with the inline lookup
      vm[v] = bh_vm_create();
      CHECK_EQ(bh_maps_register_helpers(vm[v]), 0);
      bh_vm_set_lddw_resolver(vm[v], resolve_inline, &maps);
      if (v == 2) bh_vm_set_inline_lookup(vm[v], layout, nullptr);
      std::vector<bh_inst> prog = inline_program(shape);
      if (bh_vm_load(vm[v], prog.data(), prog.size() * sizeof(bh_inst), err, sizeof err) != 0 ||
          (v > 0 && bh_vm_compile(vm[v], err, sizeof err) == nullptr)) {
        fprintf(stderr, "inline shape %d: %s\n", shape, err);
        g_failures++;
        return;
      }
      if (v > 0) jit_size[v] = bh_vm_jit_size(vm[v]);
    }
    for (uint32_t key : keys) {
      for (uint32_t sel : {0u, 1u}) {
        uint32_t ctx[2] = {key, sel};
        uint64_t r[3] = {0, 0, 0};
        for (int v = 0; v < 3; v++) {
          bh_fault f{};
          const int rc = v == 0 ? bh_vm_exec(vm[v], ctx, sizeof ctx, &r[v], &f)
                                : bh_vm_exec_jit(vm[v], ctx, sizeof ctx, &r[v], &f);
          CHECK_EQ(rc, 0);
        }
        const bool hash = shape == 2 || (shape == 1 && sel != 0);
        const uint64_t want = key < 5 ? (hash ? 1000 + key : 100 + key) : 0xdead;
        for (int v = 0; v < 3; v++) {
          if (r[v] != want) {
            g_failures++;
            fprintf(stderr, "inline shape %d backend %d key %u sel %u: %llu, expected %llu\n", shape, v, key, sel,
                    (unsigned long long)r[v], (unsigned long long)want);
          }
        }
      }
    }
    // Reaching no C (BH_PROG_F_GENERAL_REGS) only where the one call was inlined.
    CHECK_EQ(bh_vm_jit_reaches_c(vm[1]), 1);
    CHECK_EQ(bh_vm_jit_reaches_c(vm[2]), shape == 0 ? 0 : 1);
    // Inlined (different code) exactly where r1 is known to be the array.
    if ((jit_size[1] != jit_size[2]) != (shape == 0)) {
      g_failures++;
      fprintf(stderr, "inline shape %d: JIT sizes %zu without and %zu with the inline lookup\n", shape, jit_size[1],
              jit_size[2]);
    }
    for (bh_vm *x : vm) bh_vm_destroy(x);
  }
  printf("inline array lookup: 3 shapes agree in the interpreter and both JITs\n");
  bh_map_close(maps.arr);
  bh_map_close(maps.hash);
}

}  // namespace

int main() {
  std::string name = "/bpfhook-mapsvm-" + std::to_string(getpid());
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = 64ull << 20;
  bh_region *r = nullptr;
  if (bh_region_create(name.c_str(), &o, &r) != 0) return 1;
  run_case(r, false, "interp");
  run_case(r, true, "jit");
  stack_case(r, false, "interp");
  stack_case(r, true, "jit");
  inline_case(r);
  bh_region_close(r);
  printf("%s\n", g_failures == 0 ? "ok" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
