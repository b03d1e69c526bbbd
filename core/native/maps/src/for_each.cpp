// bh_map_for_each_elem: the iteration behind bpf_for_each_map_elem (arrays
// and the hash family). The callback is a program, so nothing is held while
// it runs: a hash bucket is read optimistically (seqlock, as hash_find), its
// element indices copied a chunk at a time, and the callback then sees the
// copied elements' live key and value.
#include "map_internal.h"

using namespace bpfhook::maps;

namespace {

long array_for_each(bh_map *m, bh_map_elem_fn fn, void *cookie) {
  uint8_t *base = m->a;
  if (m->type == BH_MAP_TYPE_PERCPU_ARRAY) base += uint64_t(current_cpu(m)) * m->cpu_block;
  long visited = 0;
  for (uint32_t i = 0; i < m->max_entries; i++) {
    const uint32_t key = i;
    visited++;
    if (fn(cookie, &key, base + uint64_t(i) * m->stride) != 0) break;
  }
  return visited;
}

long hash_for_each(bh_map *m, bh_map_elem_fn fn, void *cookie) {
  // Elements copied per read of a bucket; chains are short (a load factor of
  // about 1), longer ones are read again from where the last chunk ended.
  constexpr uint32_t kChunk = 16;
  const bool percpu = m->type == BH_MAP_TYPE_PERCPU_HASH;
  const uint32_t cpu = percpu ? current_cpu(m) : 0;
  auto *buckets = reinterpret_cast<Bucket *>(m->a);
  long visited = 0;
  for (uint64_t bi = 0; bi <= m->bucket_mask; bi++) {
    Bucket *b = &buckets[bi];
    uint32_t skip = 0;  // elements of this chain already handed out
    for (;;) {
      uint32_t got[kChunk];
      uint32_t n = 0;
      bool more = false;
      for (uint32_t tries = 0;; tries++) {
        if (tries > shm::kReadRetries) {
          count_busy(m);
          return -EBUSY;
        }
        const uint64_t seen = shm::SeqLock::read_begin(&b->seq);
        n = 0;
        more = false;
        bool bad = false;
        uint32_t pos = 0;
        uint32_t steps = 0;
        for (uint32_t idx = shm::load_acquire(&b->head); idx != 0;) {
          // Mangled by reuse (the check below fails and we retry) or corrupt.
          if (idx > m->pool_size || ++steps > m->pool_size) {
            bad = true;
            break;
          }
          if (pos++ >= skip) {
            if (n == kChunk) {
              more = true;
              break;
            }
            got[n++] = idx;
          }
          idx = shm::load_acquire(&elem(m, idx)->next);
        }
        if (shm::SeqLock::read_changed(&b->seq, seen)) continue;
        if (bad) return corrupt(m);  // a stable chain out of bounds
        break;
      }
      for (uint32_t k = 0; k < n; k++) {
        ElemHeader *e = elem(m, got[k]);
        void *value = percpu ? static_cast<void *>(percpu_value(m, got[k], cpu)) : elem_value(m, e);
        visited++;
        if (fn(cookie, elem_key(e), value) != 0) return visited;
      }
      if (!more) break;
      skip += n;
    }
  }
  return visited;
}

}  // namespace

extern "C" long bh_map_for_each_elem(bh_map *m, bh_map_elem_fn fn, void *cookie) {
  if (m == nullptr || fn == nullptr) return -EINVAL;
  switch (m->type) {
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY: return array_for_each(m, fn, cookie);
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH: return hash_for_each(m, fn, cookie);
    default: return -EINVAL;
  }
}
