// Queue (FIFO) and stack (LIFO) maps: a ring of max_entries + 1 slots under
// one spinlock, as in the kernel. Elements live in [tail, head); a queue pops
// at tail, a stack at head - 1. Pushing to a full map with BH_EXIST drops the
// oldest element (tail) for both, as the kernel does. head and tail are
// single stores, so a holder that died leaves a consistent ring (see
// map_internal.h): a takeover needs no repair.
#include "map_internal.h"

namespace bpfhook::maps {

namespace {
uint8_t *Slot(bh_map *m, uint32_t i) { return m->a + uint64_t(i) * m->stride; }
uint32_t Used(const MapHeader *h, uint32_t slots) { return (h->head + slots - h->tail) % slots; }
}  // namespace

long QueuePush(bh_map *m, const void *value, uint64_t flags, bool user) {
  if ((flags & ~BH_EXIST) != 0) return -EINVAL;
  MapHeader *h = m->hdr;
  const uint32_t slots = m->pool_size;
  shm::SpinGuard guard(&h->lock, WaitFor(user));
  if (!Locked(m, guard.result())) return LockFailure(guard.result(), user);
  if (Used(h, slots) == m->max_entries) {
    if (flags != BH_EXIST) return -E2BIG;
    h->tail = (h->tail + 1) % slots;
  }
  memcpy(Slot(m, h->head), value, m->value_size);
  h->head = (h->head + 1) % slots;
  return 0;
}

long QueuePop(bh_map *m, void *value, bool remove, bool user) {
  MapHeader *h = m->hdr;
  const uint32_t slots = m->pool_size;
  shm::SpinGuard guard(&h->lock, WaitFor(user));
  if (!Locked(m, guard.result())) return LockFailure(guard.result(), user);
  if (h->head == h->tail) return -ENOENT;
  uint32_t at;
  if (m->type == BH_MAP_TYPE_QUEUE) {
    at = h->tail;
    if (remove) h->tail = (h->tail + 1) % slots;
  } else {
    at = (h->head + slots - 1) % slots;
    if (remove) h->head = at;
  }
  memcpy(value, Slot(m, at), m->value_size);
  return 0;
}

int64_t QueueCount(bh_map *m) {
  shm::SpinGuard guard(&m->hdr->lock, shm::Wait::kUser);
  if (!Locked(m, guard.result())) return guard.result();
  return Used(m->hdr, m->pool_size);
}

}  // namespace bpfhook::maps
