// The map helpers with the kernel's ids and signatures, as the VM calls them:
// uint64_t fn(r1..r5). The map argument is the process-local bh_map* that
// the lddw resolver put into the program. Lookup inlines the array and hash
// fast paths (map_internal.h) so a call costs one dispatch on the map type.
#include "bpfhook/vm.h"
#include "map_internal.h"

using namespace bpfhook::maps;

namespace {
inline bh_map *as_map(uint64_t v) { return reinterpret_cast<bh_map *>(uintptr_t(v)); }
inline const void *as_ptr(uint64_t v) { return reinterpret_cast<const void *>(uintptr_t(v)); }
inline void *as_mut_ptr(uint64_t v) { return reinterpret_cast<void *>(uintptr_t(v)); }
inline uint64_t ret(long v) { return uint64_t(int64_t(v)); }
}  // namespace

extern "C" {

// Aligned to a cache line: the hottest helper's fast paths then sit at the
// same offsets whatever else the library links, so its cost (measured at
// 1.4 ns for arrays) does not move by a few tenths with unrelated code.
__attribute__((aligned(64))) uint64_t bh_helper_map_lookup_elem(uint64_t map, uint64_t key, uint64_t, uint64_t,
                                                                uint64_t) {
  bh_map *m = as_map(map);
  const void *k = as_ptr(key);
  // Most probes hit arrays and hashes: test those before the generic switch.
  if (m->type == BH_MAP_TYPE_ARRAY) return uint64_t(uintptr_t(array_lookup(m, k)));
  if (m->type == BH_MAP_TYPE_HASH) {
    uint32_t idx = hash_find(m, hash_key(m, k), k);
    return idx != 0 ? uint64_t(uintptr_t(elem_value(m, elem(m, idx)))) : 0;
  }
  return uint64_t(uintptr_t(bh_map_lookup_elem(m, k)));
}

uint64_t bh_helper_map_update_elem(uint64_t map, uint64_t key, uint64_t value, uint64_t flags, uint64_t) {
  return ret(bh_map_update_elem(as_map(map), as_ptr(key), as_ptr(value), flags));
}

uint64_t bh_helper_map_delete_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t) {
  return ret(bh_map_delete_elem(as_map(map), as_ptr(key)));
}

// The context argument is unused: samples are the program's own bytes (no
// BPF_F_CTXLEN_MASK payload from a packet).
uint64_t bh_helper_perf_event_output(uint64_t, uint64_t map, uint64_t flags, uint64_t data, uint64_t size) {
  return ret(bh_perf_event_output(as_map(map), flags, as_ptr(data), size));
}

uint64_t bh_helper_map_push_elem(uint64_t map, uint64_t value, uint64_t flags, uint64_t, uint64_t) {
  return ret(bh_map_push_elem(as_map(map), as_ptr(value), flags));
}

uint64_t bh_helper_map_pop_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t) {
  return ret(bh_map_pop_elem(as_map(map), as_mut_ptr(value)));
}

uint64_t bh_helper_map_peek_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t) {
  return ret(bh_map_peek_elem(as_map(map), as_mut_ptr(value)));
}

uint64_t bh_helper_ringbuf_output(uint64_t map, uint64_t data, uint64_t size, uint64_t flags, uint64_t) {
  return ret(bh_ringbuf_output(as_map(map), as_ptr(data), size, flags));
}

uint64_t bh_helper_ringbuf_reserve(uint64_t map, uint64_t size, uint64_t flags, uint64_t, uint64_t) {
  return uint64_t(uintptr_t(bh_ringbuf_reserve(as_map(map), size, flags)));
}

uint64_t bh_helper_ringbuf_submit(uint64_t sample, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  bh_ringbuf_submit(as_mut_ptr(sample), flags);
  return 0;
}

uint64_t bh_helper_ringbuf_discard(uint64_t sample, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  bh_ringbuf_discard(as_mut_ptr(sample), flags);
  return 0;
}

// bpf_for_each_map_elem (164): callback(map, key, value, callback_ctx) for
// each element until it returns non-zero; returns the number of elements
// visited (the stopping one included), as the kernel's. The key is readable
// by the callback in checked mode (an array's key lives in our frame).
namespace {
struct ForEach {
  bh_map *map;
  uint64_t callback;
  uint64_t ctx;
  int rc;  // bh_vm_callback_invoke's failure, if any
};

int for_each_visit(void *cookie, const void *key, void *value) {
  auto *c = static_cast<ForEach *>(cookie);
  uint64_t ret = 0;
  const int rc = bh_vm_callback_invoke(c->callback, uint64_t(uintptr_t(c->map)), uint64_t(uintptr_t(key)),
                                       uint64_t(uintptr_t(value)), c->ctx, 0, key, c->map->key_size, &ret);
  if (rc != 0) {
    c->rc = rc;
    return 1;
  }
  return ret != 0;
}
}  // namespace

uint64_t bh_helper_for_each_map_elem(uint64_t map, uint64_t callback_fn, uint64_t callback_ctx, uint64_t flags,
                                     uint64_t) {
  if (flags != 0) return ret(-EINVAL);
  ForEach c{as_map(map), callback_fn, callback_ctx, 0};
  const long n = bh_map_for_each_elem(c.map, for_each_visit, &c);
  // -EINVAL (not a callback of this program) or -ECANCELED (the run ends).
  return ret(c.rc != 0 ? c.rc : n);
}

uint64_t bh_helper_ringbuf_query(uint64_t map, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  return bh_ringbuf_query(as_map(map), flags);
}

// Checked mode's argument prototypes (the kernel's bpf_func_proto): which map
// types each helper takes (the kernel's check_map_func_compatibility), and
// that keys and values are the map's key_size / value_size bytes.
namespace {
constexpr uint8_t kAny = BH_ARG_ANYTHING, kCtx = BH_ARG_PTR_TO_CTX, kMap = BH_ARG_CONST_MAP_PTR,
                  kKey = BH_ARG_PTR_TO_MAP_KEY, kValue = BH_ARG_PTR_TO_MAP_VALUE,
                  kValueOut = BH_ARG_PTR_TO_UNINIT_MAP_VALUE, kMem = BH_ARG_PTR_TO_MEM,
                  kSize0 = BH_ARG_CONST_SIZE_OR_ZERO, kRecord = BH_ARG_PTR_TO_RINGBUF_MEM;
constexpr uint64_t bit(uint32_t t) { return uint64_t(1) << t; }
constexpr uint64_t kKeyed = bit(BH_MAP_TYPE_HASH) | bit(BH_MAP_TYPE_ARRAY) | bit(BH_MAP_TYPE_PERCPU_HASH) |
                            bit(BH_MAP_TYPE_PERCPU_ARRAY) | bit(BH_MAP_TYPE_LRU_HASH) | bit(BH_MAP_TYPE_LPM_TRIE);
constexpr uint64_t kQueues = bit(BH_MAP_TYPE_QUEUE) | bit(BH_MAP_TYPE_STACK);
constexpr uint64_t kRing = bit(BH_MAP_TYPE_RINGBUF);
// Bloom filters take push (add) and peek (test) only, as in the kernel.
constexpr uint64_t kPushPeek = kQueues | bit(BH_MAP_TYPE_BLOOM_FILTER);
constexpr uint8_t kFunc = BH_ARG_PTR_TO_FUNC, kStackOrNull = BH_ARG_PTR_TO_STACK_OR_NULL;
constexpr uint64_t kIterable = bit(BH_MAP_TYPE_HASH) | bit(BH_MAP_TYPE_ARRAY) | bit(BH_MAP_TYPE_PERCPU_HASH) |
                               bit(BH_MAP_TYPE_PERCPU_ARRAY) | bit(BH_MAP_TYPE_LRU_HASH);
}  // namespace

uint64_t bh_map_lddw_value_addr(void *map, uint32_t offset) {
  auto *m = static_cast<bh_map *>(map);
  if (m == nullptr) return 0;
  const bh_map_info *i = bh_map_get_info(m);
  if (i->type != BH_MAP_TYPE_ARRAY || offset >= i->value_size) return 0;
  void *base = bh_map_value_addr(m, 0);
  return base != nullptr ? uint64_t(uintptr_t(base)) + offset : 0;
}

int bh_map_vm_desc(void *map, bh_vm_map *out) {
  auto *m = static_cast<bh_map *>(map);
  if (m == nullptr) return -1;
  const bh_map_info *i = bh_map_get_info(m);
  out->type = i->type;
  out->key_size = i->key_size;
  out->value_size = i->value_size;
  if (i->type == BH_MAP_TYPE_RINGBUF) out->storage = bh_map_storage(m, &out->storage_len);
  if (out->sz >= offsetof(bh_vm_map, value_stride) + sizeof out->value_stride) {
    out->max_entries = i->max_entries;
    out->value_base = 0;
    out->value_stride = 0;
    if (m->type == BH_MAP_TYPE_ARRAY) {
      out->value_base = uint64_t(uintptr_t(m->a));
      out->value_stride = m->stride;
    }
  }
  return 0;
}

int bh_maps_register_helpers(bh_vm *vm) {
  struct Entry {
    uint32_t id;
    const char *name;
    bh_helper_fn fn;
    bh_helper_proto proto;
    uint32_t flags = 0;
  };
#define BH_P(A1, N1, A2, N2, A3, N3, A4, N4, A5, N5, MAPS)                      \
  {                                                                             \
    sizeof(bh_helper_proto), {A1, A2, A3, A4, A5}, MAPS, { N1, N2, N3, N4, N5 } \
  }
  static const Entry kHelpers[] = {
      {1, "bpf_map_lookup_elem", bh_helper_map_lookup_elem,
       BH_P(kMap, "map", kKey, "key", 0, nullptr, 0, nullptr, 0, nullptr, kKeyed)},
      {2, "bpf_map_update_elem", bh_helper_map_update_elem,
       BH_P(kMap, "map", kKey, "key", kValue, "value", kAny, "flags", 0, nullptr, kKeyed)},
      {3, "bpf_map_delete_elem", bh_helper_map_delete_elem,
       BH_P(kMap, "map", kKey, "key", 0, nullptr, 0, nullptr, 0, nullptr, kKeyed)},
      {25, "bpf_perf_event_output", bh_helper_perf_event_output,
       BH_P(kCtx, "ctx", kMap, "map", kAny, "flags", kMem, "data", kSize0, "size", bit(BH_MAP_TYPE_PERF_EVENT_ARRAY))},
      {27, "bpf_get_stackid", bh_helper_get_stackid,
       BH_P(kCtx, "ctx", kMap, "map", kAny, "flags", 0, nullptr, 0, nullptr, bit(BH_MAP_TYPE_STACK_TRACE))},
      {87, "bpf_map_push_elem", bh_helper_map_push_elem,
       BH_P(kMap, "map", kValue, "value", kAny, "flags", 0, nullptr, 0, nullptr, kPushPeek)},
      {88, "bpf_map_pop_elem", bh_helper_map_pop_elem,
       BH_P(kMap, "map", kValueOut, "value", 0, nullptr, 0, nullptr, 0, nullptr, kQueues)},
      {89, "bpf_map_peek_elem", bh_helper_map_peek_elem,
       BH_P(kMap, "map", kValueOut, "value", 0, nullptr, 0, nullptr, 0, nullptr, kPushPeek)},
      {130, "bpf_ringbuf_output", bh_helper_ringbuf_output,
       BH_P(kMap, "map", kMem, "data", kSize0, "size", kAny, "flags", 0, nullptr, kRing)},
      {131, "bpf_ringbuf_reserve", bh_helper_ringbuf_reserve,
       BH_P(kMap, "map", kAny, "size", kAny, "flags", 0, nullptr, 0, nullptr, kRing)},
      {132, "bpf_ringbuf_submit", bh_helper_ringbuf_submit,
       BH_P(kRecord, "sample", kAny, "flags", 0, nullptr, 0, nullptr, 0, nullptr, 0)},
      {133, "bpf_ringbuf_discard", bh_helper_ringbuf_discard,
       BH_P(kRecord, "sample", kAny, "flags", 0, nullptr, 0, nullptr, 0, nullptr, 0)},
      {134, "bpf_ringbuf_query", bh_helper_ringbuf_query,
       BH_P(kMap, "map", kAny, "flags", 0, nullptr, 0, nullptr, 0, nullptr, kRing)},
      {164, "bpf_for_each_map_elem", bh_helper_for_each_map_elem,
       BH_P(kMap, "map", kFunc, "callback_fn", kStackOrNull, "callback_ctx", kAny, "flags", 0, nullptr, kIterable),
       BH_HELPER_CALLS_BACK},
  };
#undef BH_P
  for (const Entry &e : kHelpers) {
    int err = bh_vm_register_helper(vm, e.id, e.name, e.fn, e.flags);
    if (err == 0) err = bh_vm_set_helper_proto(vm, e.id, &e.proto);
    if (err != 0) return err;
  }
  return 0;
}

}  // extern "C"
