// The map helpers with the kernel's ids and signatures, as the VM calls them:
// uint64_t fn(r1..r5). The map argument is the process-local bh_map* that
// the lddw resolver put into the program. Lookup inlines the array and hash
// fast paths (map_internal.h) so a call costs one dispatch on the map type.
#include "bpfhook/vm.h"
#include "map_internal.h"

using namespace bpfhook::maps;

namespace {
inline bh_map *AsMap(uint64_t v) { return reinterpret_cast<bh_map *>(uintptr_t(v)); }
inline const void *AsPtr(uint64_t v) { return reinterpret_cast<const void *>(uintptr_t(v)); }
inline void *AsMutPtr(uint64_t v) { return reinterpret_cast<void *>(uintptr_t(v)); }
inline uint64_t Ret(long v) { return uint64_t(int64_t(v)); }
}  // namespace

extern "C" {

uint64_t bh_helper_map_lookup_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t) {
  bh_map *m = AsMap(map);
  const void *k = AsPtr(key);
  // Most probes hit arrays and hashes: test those before the generic switch.
  if (m->type == BH_MAP_TYPE_ARRAY) return uint64_t(uintptr_t(ArrayLookup(m, k)));
  if (m->type == BH_MAP_TYPE_HASH) {
    uint32_t idx = HashFind(m, HashKey(m, k), k);
    return idx != 0 ? uint64_t(uintptr_t(ElemValue(m, Elem(m, idx)))) : 0;
  }
  return uint64_t(uintptr_t(bh_map_lookup_elem(m, k)));
}

uint64_t bh_helper_map_update_elem(uint64_t map, uint64_t key, uint64_t value, uint64_t flags, uint64_t) {
  return Ret(bh_map_update_elem(AsMap(map), AsPtr(key), AsPtr(value), flags));
}

uint64_t bh_helper_map_delete_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t) {
  return Ret(bh_map_delete_elem(AsMap(map), AsPtr(key)));
}

// The context argument is unused: samples are the program's own bytes (no
// BPF_F_CTXLEN_MASK payload from a packet).
uint64_t bh_helper_perf_event_output(uint64_t, uint64_t map, uint64_t flags, uint64_t data, uint64_t size) {
  return Ret(bh_perf_event_output(AsMap(map), flags, AsPtr(data), size));
}

uint64_t bh_helper_map_push_elem(uint64_t map, uint64_t value, uint64_t flags, uint64_t, uint64_t) {
  return Ret(bh_map_push_elem(AsMap(map), AsPtr(value), flags));
}

uint64_t bh_helper_map_pop_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t) {
  return Ret(bh_map_pop_elem(AsMap(map), AsMutPtr(value)));
}

uint64_t bh_helper_map_peek_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t) {
  return Ret(bh_map_peek_elem(AsMap(map), AsMutPtr(value)));
}

uint64_t bh_helper_ringbuf_output(uint64_t map, uint64_t data, uint64_t size, uint64_t flags, uint64_t) {
  return Ret(bh_ringbuf_output(AsMap(map), AsPtr(data), size, flags));
}

uint64_t bh_helper_ringbuf_reserve(uint64_t map, uint64_t size, uint64_t flags, uint64_t, uint64_t) {
  return uint64_t(uintptr_t(bh_ringbuf_reserve(AsMap(map), size, flags)));
}

uint64_t bh_helper_ringbuf_submit(uint64_t sample, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  bh_ringbuf_submit(AsMutPtr(sample), flags);
  return 0;
}

uint64_t bh_helper_ringbuf_discard(uint64_t sample, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  bh_ringbuf_discard(AsMutPtr(sample), flags);
  return 0;
}

uint64_t bh_helper_ringbuf_query(uint64_t map, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  return bh_ringbuf_query(AsMap(map), flags);
}

int bh_maps_register_helpers(bh_vm *vm) {
  struct Entry {
    uint32_t id;
    const char *name;
    bh_helper_fn fn;
  };
  static const Entry kHelpers[] = {
      {1, "bpf_map_lookup_elem", bh_helper_map_lookup_elem},
      {2, "bpf_map_update_elem", bh_helper_map_update_elem},
      {3, "bpf_map_delete_elem", bh_helper_map_delete_elem},
      {25, "bpf_perf_event_output", bh_helper_perf_event_output},
      {27, "bpf_get_stackid", bh_helper_get_stackid},
      {87, "bpf_map_push_elem", bh_helper_map_push_elem},
      {88, "bpf_map_pop_elem", bh_helper_map_pop_elem},
      {89, "bpf_map_peek_elem", bh_helper_map_peek_elem},
      {130, "bpf_ringbuf_output", bh_helper_ringbuf_output},
      {131, "bpf_ringbuf_reserve", bh_helper_ringbuf_reserve},
      {132, "bpf_ringbuf_submit", bh_helper_ringbuf_submit},
      {133, "bpf_ringbuf_discard", bh_helper_ringbuf_discard},
      {134, "bpf_ringbuf_query", bh_helper_ringbuf_query},
  };
  for (const Entry &e : kHelpers) {
    int err = bh_vm_register_helper(vm, e.id, e.name, e.fn, 0);
    if (err != 0) return err;
  }
  return 0;
}

}  // extern "C"
