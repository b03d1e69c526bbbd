// Array and per-CPU array maps. Elements always exist, so there is nothing
// to lock: lookups are an index check and an address, updates copy in place
// (a concurrent reader may see a torn value, as with the kernel's arrays).
#include "map_internal.h"

namespace bpfhook::maps {

long array_update(bh_map *m, const void *key, const void *value, uint64_t flags, bool all_cpus) {
  if (flags > BH_EXIST) return -EINVAL;
  uint32_t idx = load32(key);
  if (idx >= m->max_entries) return -E2BIG;
  if (flags == BH_NOEXIST) return -EEXIST;  // every index exists
  const auto *src = static_cast<const uint8_t *>(value);
  if (m->type == BH_MAP_TYPE_ARRAY) {
    copy_bytes(m->a + uint64_t(idx) * m->stride, src, m->value_size);
    return 0;
  }
  if (!all_cpus) {
    copy_bytes(percpu_array_lookup(m, key), src, m->value_size);
    return 0;
  }
  for (uint32_t cpu = 0; cpu < m->ncpus; cpu++) {
    memcpy(m->a + uint64_t(cpu) * m->cpu_block + uint64_t(idx) * m->stride, src + uint64_t(cpu) * m->stride,
           m->value_size);
  }
  return 0;
}

int array_lookup_copy(bh_map *m, const void *key, void *out) {
  uint32_t idx = load32(key);
  if (idx >= m->max_entries) return -ENOENT;
  if (m->type == BH_MAP_TYPE_ARRAY) {
    memcpy(out, m->a + uint64_t(idx) * m->stride, m->value_size);
    return 0;
  }
  auto *dst = static_cast<uint8_t *>(out);
  for (uint32_t cpu = 0; cpu < m->ncpus; cpu++) {
    uint8_t *slot = dst + uint64_t(cpu) * m->stride;
    memcpy(slot, m->a + uint64_t(cpu) * m->cpu_block + uint64_t(idx) * m->stride, m->value_size);
    if (m->stride != m->value_size) memset(slot + m->value_size, 0, m->stride - m->value_size);
  }
  return 0;
}

int array_next_key(bh_map *m, const void *key, void *next) {
  uint32_t idx = key != nullptr ? load32(key) : 0;
  uint32_t n = 0;
  if (key == nullptr || idx >= m->max_entries) {
    n = 0;
  } else if (idx + 1 >= m->max_entries) {
    return -ENOENT;
  } else {
    n = idx + 1;
  }
  memcpy(next, &n, 4);
  return 0;
}

}  // namespace bpfhook::maps
