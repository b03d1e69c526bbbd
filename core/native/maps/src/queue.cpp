// Queue (FIFO) and stack (LIFO) maps: a ring of max_entries + 1 slots under
// one spinlock, as in the kernel. Elements live in [tail, head); a queue pops
// at tail, a stack at head - 1. Pushing to a full map with BH_EXIST drops the
// oldest element (tail) for both, as the kernel does. head and tail are
// single stores, so a holder that died leaves a consistent ring (see
// map_internal.h): a takeover needs no repair.
#include "map_internal.h"

namespace bpfhook::maps {

namespace {
uint8_t *slot(bh_map *m, uint32_t i) { return m->a + uint64_t(i) * m->stride; }
uint32_t used(uint32_t head, uint32_t tail, uint32_t slots) { return (head + slots - tail) % slots; }
// head and tail are read once each under the lock and checked against the
// handle's slot count before they index a slot (another process can write
// any value there).
bool load(const MapHeader *h, uint32_t slots, uint32_t &head, uint32_t &tail) {
  head = shm::load_relaxed(&h->head);
  tail = shm::load_relaxed(&h->tail);
  return head < slots && tail < slots;
}
}  // namespace

long queue_push(bh_map *m, const void *value, uint64_t flags, bool user) {
  if ((flags & ~BH_EXIST) != 0) return -EINVAL;
  MapHeader *h = m->hdr;
  const uint32_t slots = m->pool_size;
  shm::SpinGuard guard(&h->lock, wait_for(user));
  if (!locked(m, guard.result())) return lock_failure(guard.result(), user);
  uint32_t head, tail;
  if (!load(h, slots, head, tail)) return corrupt(m);
  if (used(head, tail, slots) == m->max_entries) {
    if (flags != BH_EXIST) return -E2BIG;
    h->tail = (tail + 1) % slots;
  }
  memcpy(slot(m, head), value, m->value_size);
  h->head = (head + 1) % slots;
  return 0;
}

long queue_pop(bh_map *m, void *value, bool remove, bool user) {
  MapHeader *h = m->hdr;
  const uint32_t slots = m->pool_size;
  shm::SpinGuard guard(&h->lock, wait_for(user));
  if (!locked(m, guard.result())) return lock_failure(guard.result(), user);
  uint32_t head, tail;
  if (!load(h, slots, head, tail)) return corrupt(m);
  if (head == tail) return -ENOENT;
  uint32_t at;
  if (m->type == BH_MAP_TYPE_QUEUE) {
    at = tail;
    if (remove) h->tail = (tail + 1) % slots;
  } else {
    at = (head + slots - 1) % slots;
    if (remove) h->head = at;
  }
  memcpy(value, slot(m, at), m->value_size);
  return 0;
}

int64_t queue_count(bh_map *m) {
  shm::SpinGuard guard(&m->hdr->lock, shm::Wait::kUser);
  if (!locked(m, guard.result())) return guard.result();
  uint32_t head, tail;
  if (!load(m->hdr, m->pool_size, head, tail)) return corrupt(m);
  return used(head, tail, m->pool_size);
}

}  // namespace bpfhook::maps
