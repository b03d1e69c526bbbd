// Hash, LRU hash and per-CPU hash maps: writers under per-bucket seqlocks,
// lock-free readers (hash_find in map_internal.h), a preallocated element
// pool with a lock-free free list. The design and its reuse rule are at the
// top of map_internal.h.
#include "map_internal.h"

namespace bpfhook::maps {
namespace {

// An element index read from the region that is out of bounds (or a chain
// longer than the pool): the callers fail with corrupt().
constexpr uint32_t kBadIdx = UINT32_MAX;

// ---- element pool ----

// Pops a free element: the free list first, then the never-used tail (so a
// big map touches no memory until it fills). Returns 0 when none is left,
// kBadIdx when the free list's head is out of bounds.
uint32_t pool_pop(bh_map *m) {
  MapHeader *h = m->hdr;
  uint64_t head = shm::load_acquire(&h->free_head);
  while (uint32_t(head) != 0) {
    uint32_t idx = uint32_t(head);
    if (!index_ok(m, idx)) return kBadIdx;
    // `next` may be rewritten under us if another thread pops `idx` first;
    // the tag in the high half then makes our CAS fail (no ABA).
    uint32_t next = shm::load_relaxed(&elem(m, idx)->next);
    uint64_t desired = (((head >> 32) + 1) << 32) | next;
    if (shm::cas(&h->free_head, head, desired)) {
      // Stores into the reused element must not move above the pop: a
      // reader that sees them must also see the bucket change that retired
      // the element (see SeqLock in shm_sync.hpp).
      shm::fence_release();
      return idx;
    }
  }
  uint32_t n = shm::load_relaxed(&h->next_unused);
  while (n < m->pool_size) {
    if (shm::cas(&h->next_unused, n, n + 1)) return n + 1;
  }
  return 0;
}

void pool_push(bh_map *m, uint32_t idx) {
  MapHeader *h = m->hdr;
  ElemHeader *e = elem(m, idx);
  uint64_t head = shm::load_relaxed(&h->free_head);
  for (;;) {
    shm::store_relaxed(&e->next, uint32_t(head));
    uint64_t desired = (((head >> 32) + 1) << 32) | idx;
    if (shm::cas(&h->free_head, head, desired)) return;
  }
}

// Reserves one of max_entries live slots. A CAS loop rather than
// fetch_add-then-undo, which could refuse a slot another thread was only
// transiently holding.
bool count_reserve(bh_map *m) {
  uint32_t c = shm::load_relaxed(&m->hdr->count);
  while (c < m->max_entries) {
    if (shm::cas(&m->hdr->count, c, c + 1)) return true;
  }
  return false;
}

void count_release(bh_map *m) { shm::fetch_add(&m->hdr->count, uint32_t(-1)); }

// Under the bucket's lock: the element holding `key` and the link that
// points at it (the bucket head or the previous element's next); 0 if
// absent, kBadIdx if the chain leaves the pool or is longer than it.
uint32_t find_locked(bh_map *m, Bucket *b, uint32_t hash, const void *key, uint32_t **link) {
  uint32_t *l = &b->head;
  uint32_t steps = 0;
  for (uint32_t idx = shm::load_relaxed(l); idx != 0; idx = shm::load_relaxed(l)) {
    if (!index_ok(m, idx) || ++steps > m->pool_size) return kBadIdx;
    ElemHeader *e = elem(m, idx);
    if (e->hash == hash && key_eq(m, elem_key(e), key)) {
      *link = l;
      return idx;
    }
    l = &e->next;
  }
  return 0;
}

void write_value(bh_map *m, uint32_t idx, const void *value, bool all_cpus, bool fresh) {
  if (m->type != BH_MAP_TYPE_PERCPU_HASH) {
    copy_bytes(elem_value(m, elem(m, idx)), value, m->value_size);
    return;
  }
  const auto *src = static_cast<const uint8_t *>(value);
  if (all_cpus) {
    // User space passes round_up(value_size, 8) bytes per CPU.
    for (uint32_t cpu = 0; cpu < m->ncpus; cpu++)
      memcpy(percpu_value(m, idx, cpu), src + uint64_t(cpu) * m->stride, m->value_size);
    return;
  }
  // A program sets its own CPU's value; a new element starts at zero on the
  // others, as in the kernel.
  uint32_t me = current_cpu(m);
  for (uint32_t cpu = 0; cpu < m->ncpus; cpu++) {
    if (cpu == me) {
      copy_bytes(percpu_value(m, idx, cpu), src, m->value_size);
    } else if (fresh) {
      zero_bytes(percpu_value(m, idx, cpu), m->value_size);
    }
  }
}

// LRU: frees the least recently used element among those sampled. For maps
// up to kLruSample elements that is every element, so eviction is exact; for
// larger ones it is approximate, like the kernel's LRU lists. Returns true if
// it freed one (another thread may take the slot first; callers retry).
bool lru_evict(bh_map *m, shm::Wait wait) {
  uint32_t used = shm::load_relaxed(&m->hdr->next_unused);
  if (used == 0) return false;
  if (used > m->pool_size) used = m->pool_size;  // corrupt cursor: sample the pool only
  uint32_t n = used < kLruSample ? used : kLruSample;
  uint32_t start = shm::fetch_add_relaxed(&m->hdr->lru_hand, n) % used;
  uint32_t now = shm::load_relaxed(&m->hdr->lru_clock);
  uint32_t victim = 0;
  uint32_t oldest = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t idx = (start + i) % used + 1;
    ElemHeader *e = elem(m, idx);
    if ((shm::load_relaxed(&e->flags) & kElemLive) == 0) continue;
    uint32_t age = now - shm::load_relaxed(&e->atime);  // wraps correctly
    if (victim == 0 || age > oldest) {
      victim = idx;
      oldest = age;
    }
  }
  if (victim == 0) return false;
  // The sample was read without locks: confirm under the bucket's lock that
  // the victim is still linked there before unlinking it.
  ElemHeader *e = elem(m, victim);
  Bucket *b = bucket_for(m, shm::load_relaxed(&e->hash));
  if (!locked(m, shm::SeqLock::write_lock(&b->seq, wait))) return false;
  uint32_t *link = &b->head;
  bool found = false;
  uint32_t steps = 0;
  for (uint32_t idx = shm::load_relaxed(link); idx != 0; idx = shm::load_relaxed(link)) {
    if (idx == victim) {
      found = true;
      break;
    }
    if (!index_ok(m, idx) || ++steps > m->pool_size) {
      corrupt(m);
      break;
    }
    link = &elem(m, idx)->next;
  }
  if (found) {
    shm::store_release(link, e->next);
    shm::store_relaxed(&e->flags, 0u);
  }
  shm::SeqLock::write_unlock(&b->seq);
  if (!found) return false;
  count_release(m);
  pool_push(m, victim);
  return true;
}

}  // namespace

uint32_t hash_find_slow(const bh_map *m, uint32_t hash, const void *key) {
  const Bucket *b = bucket_for(m, hash);
  for (uint32_t tries = 0;; tries++) {
    uint64_t seen = shm::SeqLock::read_begin(&b->seq);
    bool bad = false;
    uint32_t found = hash_walk(m, b, hash, key, &bad);
    if (!shm::SeqLock::read_changed(&b->seq, seen)) {
      if (bad) corrupt(m);  // a stable chain out of bounds: corrupt, not a race
      return found;
    }
    if (tries == shm::kReadRetries) {
      count_busy(m);
      return 0;
    }
  }
}

long hash_update(bh_map *m, const void *key, const void *value, uint64_t flags, bool all_cpus) {
  if (flags > BH_EXIST) return -EINVAL;  // includes BH_F_LOCK: no bpf_spin_lock support
  // all_cpus is the user-space layout, so it also says who waits how long.
  const shm::Wait wait = wait_for(all_cpus);
  const bool lru = m->type == BH_MAP_TYPE_LRU_HASH;
  const bool percpu = m->type == BH_MAP_TYPE_PERCPU_HASH;
  uint32_t hash = hash_key(m, key);
  Bucket *b = bucket_for(m, hash);
  // Retries only for LRU, after an eviction made room outside the bucket's
  // lock (evicting under it could deadlock with a writer of the victim's
  // bucket). The bound only guards against a corrupted region.
  for (int attempt = 0; attempt < 1000; attempt++) {
    const int rc = shm::SeqLock::write_lock(&b->seq, wait);
    if (!locked(m, rc)) return lock_failure(rc, all_cpus);
    uint32_t *link = nullptr;
    uint32_t old = find_locked(m, b, hash, key, &link);
    if (old == kBadIdx) {
      shm::SeqLock::write_unlock(&b->seq);
      return corrupt(m);
    }
    if (old != 0 && flags == BH_NOEXIST) {
      shm::SeqLock::write_unlock(&b->seq);
      return -EEXIST;
    }
    if (old == 0 && flags == BH_EXIST) {
      shm::SeqLock::write_unlock(&b->seq);
      return -ENOENT;
    }
    if (old != 0 && percpu) {
      write_value(m, old, value, all_cpus, false);
      shm::SeqLock::write_unlock(&b->seq);
      return 0;
    }
    if (old == 0 && !count_reserve(m)) {
      shm::SeqLock::write_unlock(&b->seq);
      if (lru) {
        lru_evict(m, wait);
        continue;
      }
      return -E2BIG;
    }
    uint32_t idx = pool_pop(m);
    if (idx == kBadIdx) {
      if (old == 0) count_release(m);
      shm::SeqLock::write_unlock(&b->seq);
      return corrupt(m);
    }
    if (idx == 0) {
      // Only when more replacements are in flight than there are spare
      // elements: fall back to an in-place copy (readers may see a torn
      // value, which the kernel allows for arrays too).
      if (old != 0) {
        write_value(m, old, value, all_cpus, false);
        shm::SeqLock::write_unlock(&b->seq);
        return 0;
      }
      count_release(m);
      shm::SeqLock::write_unlock(&b->seq);
      if (lru) {
        lru_evict(m, wait);
        continue;
      }
      return -E2BIG;
    }
    ElemHeader *e = elem(m, idx);
    e->hash = hash;
    copy_bytes(elem_key(e), key, m->key_size);
    write_value(m, idx, value, all_cpus, true);
    if (lru) e->atime = shm::fetch_add(&m->hdr->lru_clock, 1u) + 1;
    e->flags = kElemLive;
    if (old != 0) {
      // Replace in the chain: readers see the old element or the new one.
      ElemHeader *o = elem(m, old);
      e->next = o->next;
      shm::store_release(link, idx);
      shm::store_relaxed(&o->flags, 0u);
    } else {
      e->next = b->head;
      shm::store_release(&b->head, idx);
    }
    shm::SeqLock::write_unlock(&b->seq);
    if (old != 0) pool_push(m, old);  // after unlock: the reuse rule
    return 0;
  }
  return -E2BIG;
}

long hash_delete(bh_map *m, const void *key, bool user) {
  uint32_t hash = hash_key(m, key);
  Bucket *b = bucket_for(m, hash);
  const int rc = shm::SeqLock::write_lock(&b->seq, wait_for(user));
  if (!locked(m, rc)) return lock_failure(rc, user);
  uint32_t *link = nullptr;
  uint32_t idx = find_locked(m, b, hash, key, &link);
  if (idx == 0 || idx == kBadIdx) {
    shm::SeqLock::write_unlock(&b->seq);
    return idx == 0 ? -ENOENT : int(corrupt(m));
  }
  ElemHeader *e = elem(m, idx);
  shm::store_release(link, e->next);
  shm::store_relaxed(&e->flags, 0u);
  shm::SeqLock::write_unlock(&b->seq);
  count_release(m);
  pool_push(m, idx);
  return 0;
}

namespace {
void copy_out(bh_map *m, uint32_t idx, void *out) {
  if (m->type != BH_MAP_TYPE_PERCPU_HASH) {
    memcpy(out, elem_value(m, elem(m, idx)), m->value_size);
    return;
  }
  auto *dst = static_cast<uint8_t *>(out);
  for (uint32_t cpu = 0; cpu < m->ncpus; cpu++) {
    uint8_t *slot = dst + uint64_t(cpu) * m->stride;
    memcpy(slot, percpu_value(m, idx, cpu), m->value_size);
    if (m->stride != m->value_size) memset(slot + m->value_size, 0, m->stride - m->value_size);
  }
}
}  // namespace

// User-space lookup: copies inside the read section and validates after, so
// the copy is a consistent snapshot of one element (programs writing through
// pointers can still change a value mid-copy, as in the kernel).
int hash_lookup_copy(bh_map *m, const void *key, void *out) {
  uint32_t hash = hash_key(m, key);
  Bucket *b = bucket_for(m, hash);
  for (uint32_t tries = 0;; tries++) {
    uint64_t seen = shm::SeqLock::read_begin(&b->seq);
    uint32_t found = 0;
    uint32_t steps = 0;
    bool bad = false;
    for (uint32_t idx = shm::load_acquire(&b->head); idx != 0;) {
      if (idx > m->pool_size || ++steps > m->pool_size) {
        bad = true;
        break;
      }
      ElemHeader *e = elem(m, idx);
      if (shm::load_relaxed(&e->hash) == hash && key_eq(m, elem_key(e), key)) {
        found = idx;
        break;
      }
      idx = shm::load_acquire(&e->next);
    }
    if (found != 0) copy_out(m, found, out);
    if (!shm::SeqLock::read_changed(&b->seq, seen)) {
      if (bad) return int(corrupt(m));
      return found != 0 ? 0 : -ENOENT;
    }
    if (tries == shm::kReadRetries) {
      count_busy(m);
      return -EBUSY;
    }
  }
}

int hash_lookup_and_delete(bh_map *m, const void *key, void *out) {
  uint32_t hash = hash_key(m, key);
  Bucket *b = bucket_for(m, hash);
  const int rc = shm::SeqLock::write_lock(&b->seq, shm::Wait::kUser);
  if (!locked(m, rc)) return rc;
  uint32_t *link = nullptr;
  uint32_t idx = find_locked(m, b, hash, key, &link);
  if (idx == 0 || idx == kBadIdx) {
    shm::SeqLock::write_unlock(&b->seq);
    return idx == 0 ? -ENOENT : int(corrupt(m));
  }
  copy_out(m, idx, out);
  ElemHeader *e = elem(m, idx);
  shm::store_release(link, e->next);
  shm::store_relaxed(&e->flags, 0u);
  shm::SeqLock::write_unlock(&b->seq);
  count_release(m);
  pool_push(m, idx);
  return 0;
}

// Kernel semantics: the key after `key` in bucket order; a missing (or NULL)
// key restarts from the first. Concurrent updates can make an iteration skip
// or repeat keys, as with the kernel's.
int hash_next_key(bh_map *m, const void *key, void *next) {
  uint8_t tmp[kMaxKeySize];
  uint32_t start = 0;
  if (key != nullptr) {
    uint32_t hash = hash_key(m, key);
    Bucket *b = bucket_for(m, hash);
    for (uint32_t tries = 0;; tries++) {
      if (tries > shm::kReadRetries) {
        count_busy(m);
        return -EBUSY;
      }
      uint64_t seen = shm::SeqLock::read_begin(&b->seq);
      bool found = false;
      bool bad = false;
      uint32_t after = 0;
      uint32_t steps = 0;
      for (uint32_t idx = shm::load_acquire(&b->head); idx != 0;) {
        if (idx > m->pool_size || ++steps > m->pool_size) {
          bad = true;
          break;
        }
        ElemHeader *e = elem(m, idx);
        uint32_t nx = shm::load_acquire(&e->next);
        if (shm::load_relaxed(&e->hash) == hash && key_eq(m, elem_key(e), key)) {
          found = true;
          after = nx;
          break;
        }
        idx = nx;
      }
      if (after != 0 && after <= m->pool_size) memcpy(tmp, elem_key(elem(m, after)), m->key_size);
      if (shm::SeqLock::read_changed(&b->seq, seen)) continue;
      if (bad || after > m->pool_size) return int(corrupt(m));  // tmp was not filled
      if (found && after != 0) {
        memcpy(next, tmp, m->key_size);
        return 0;
      }
      start = found ? (hash & m->bucket_mask) + 1 : 0;
      break;
    }
  }
  auto *buckets = reinterpret_cast<Bucket *>(m->a);
  for (uint64_t bi = start; bi <= m->bucket_mask; bi++) {
    Bucket *b = &buckets[bi];
    for (uint32_t tries = 0;; tries++) {
      if (tries > shm::kReadRetries) {
        count_busy(m);
        return -EBUSY;
      }
      uint64_t seen = shm::SeqLock::read_begin(&b->seq);
      uint32_t idx = shm::load_acquire(&b->head);
      if (idx != 0 && idx <= m->pool_size) memcpy(tmp, elem_key(elem(m, idx)), m->key_size);
      if (shm::SeqLock::read_changed(&b->seq, seen)) continue;
      if (idx > m->pool_size) return int(corrupt(m));  // tmp was not filled
      if (idx != 0) {
        memcpy(next, tmp, m->key_size);
        return 0;
      }
      break;
    }
  }
  return -ENOENT;
}

}  // namespace bpfhook::maps
