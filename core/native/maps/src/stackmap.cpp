// Stack trace maps (BPF_MAP_TYPE_STACK_TRACE) and bpf_get_stackid.
//
// As in the kernel, a stack id is the index of the bucket the stack's hash
// selects: equal stacks get equal ids, and two stacks that share a bucket
// collide (-EEXIST, or the newer replaces the older with
// BPF_F_REUSE_STACKID). The hash has a fixed seed, so ids do not change
// between runs. Concurrency: see the top of map_internal.h.
//
// This file keeps frame pointers (CMakeLists.txt): with neither PT_REGS nor a
// run origin, bh_stack_walk starts from the helper's frame and needs its link.
#include "bpfhook/helpers.h"
#include "map_internal.h"

namespace bpfhook::maps {
namespace {

constexpr uint64_t kKnownFlags = BH_F_SKIP_FIELD_MASK | BH_F_USER_STACK | BH_F_FAST_STACK_CMP | BH_F_REUSE_STACKID;
// How often a program-side access retries a bucket another thread is writing.
constexpr int kTries = 64;

inline StackBucket *bucket_at(const bh_map *m, uint32_t id) {
  return reinterpret_cast<StackBucket *>(m->a + uint64_t(id) * m->elem_size);
}
inline uint64_t *frames(StackBucket *b) { return reinterpret_cast<uint64_t *>(b + 1); }
inline uint32_t depth(const bh_map *m) { return m->value_size / 8; }

// Frames are copied word by word through atomics: another process may read
// them meanwhile (the seqlock makes it retry), and no libc call runs while a
// bucket is locked.
void store_frames(uint64_t *dst, const uint64_t *src, uint32_t n) {
  for (uint32_t k = 0; k < n; k++) shm::store_relaxed(&dst[k], src[k]);
}

bool same_frames(const uint64_t *stored, const uint64_t *ips, uint32_t n) {
  for (uint32_t k = 0; k < n; k++) {
    if (shm::load_relaxed(&stored[k]) != ips[k]) return false;
  }
  return true;
}

bool holds(StackBucket *b, uint32_t n, const uint64_t *ips, uint32_t nr, uint32_t hash, bool fast) {
  return n != 0 && shm::load_relaxed(&b->hash) == hash && (fast || (n == nr && same_frames(frames(b), ips, nr)));
}

// A probe can fire inside a write on the same thread: the lock sees its own
// tid and fails at once (-EDEADLK) instead of waiting. Other writers are
// waited for within the probe budget. A writer that died may have left the
// frames half written: the one that takes its lock over empties the bucket.
int lock(const bh_map *m, StackBucket *b, shm::Wait wait) {
  const int rc = shm::SeqLock::write_lock(&b->seq, wait);
  if (!locked(m, rc)) return rc;
  if (rc == shm::kTakenOver) shm::store_relaxed(&b->nr, 0u);
  return 0;
}

enum class Seen { kEmpty, kSame, kOther, kBusy };

// The bucket against the stack, read without a lock.
Seen peek(StackBucket *b, const uint64_t *ips, uint32_t nr, uint32_t hash, bool fast) {
  for (int i = 0; i < kTries; i++) {
    const uint64_t seq = shm::SeqLock::read_begin(&b->seq);
    if ((seq & 1u) != 0) {
      shm::cpu_relax();
      continue;
    }
    const uint32_t n = shm::load_relaxed(&b->nr);
    const Seen seen = n == 0 ? Seen::kEmpty : holds(b, n, ips, nr, hash, fast) ? Seen::kSame : Seen::kOther;
    if (!shm::SeqLock::read_changed(&b->seq, seq)) return seen;
  }
  return Seen::kBusy;
}

}  // namespace

int stack_lookup_copy(bh_map *m, const void *key, void *out) {
  const uint32_t id = load32(key);
  if (id > m->bucket_mask) return -ENOENT;
  StackBucket *b = bucket_at(m, id);
  const uint32_t max_depth = depth(m);
  auto *dst = static_cast<uint8_t *>(out);  // a caller's buffer: maybe unaligned
  uint32_t n = 0;
  bool bad = false;
  shm::Backoff backoff;
  bool copied = false;
  for (int i = 0; i < kTries && !copied; i++) {
    const uint64_t seq = shm::SeqLock::read_begin(&b->seq);
    if ((seq & 1u) == 0) {
      n = shm::load_relaxed(&b->nr);
      // More frames than the value holds: never read past the bucket.
      bad = n > max_depth;
      if (bad) n = max_depth;
      for (uint32_t k = 0; k < n; k++) {
        const uint64_t ip = shm::load_relaxed(&frames(b)[k]);
        memcpy(dst + 8 * k, &ip, 8);
      }
      copied = !shm::SeqLock::read_changed(&b->seq, seq);
    }
    if (!copied) backoff.pause();
  }
  if (!copied) {
    // A writer is slow, or died mid-write: read under the lock instead
    // (bounded wait; a dead writer's lock is taken over, which empties it).
    const int rc = lock(m, b, shm::Wait::kUser);
    if (rc < 0) return rc;
    n = b->nr;
    if (n > max_depth) n = max_depth;
    memcpy(dst, frames(b), 8 * size_t(n));
    shm::SeqLock::write_unlock(&b->seq);
  }
  if (bad) return int(corrupt(m));
  if (n == 0) return -ENOENT;
  memset(dst + 8 * n, 0, 8 * (max_depth - n));
  return 0;
}

long stack_delete(bh_map *m, const void *key, bool user) {
  const uint32_t id = load32(key);
  if (id > m->bucket_mask) return -ENOENT;
  StackBucket *b = bucket_at(m, id);
  const int rc = lock(m, b, wait_for(user));
  if (rc < 0) return lock_failure(rc, user);
  long ret = 0;
  if (b->nr == 0) {
    ret = -ENOENT;
  } else {
    shm::store_relaxed(&b->nr, 0u);
  }
  shm::SeqLock::write_unlock(&b->seq);
  return ret;
}

// The kernel's order: the next id in use after `key`, or the first one if
// `key` is absent, out of range or no longer in use.
int stack_next_key(bh_map *m, const void *key, void *next) {
  const uint64_t n_buckets = uint64_t(m->bucket_mask) + 1;
  uint64_t id = 0;
  if (key != nullptr) {
    id = load32(key);
    id = id < n_buckets && shm::load_relaxed(&bucket_at(m, uint32_t(id))->nr) != 0 ? id + 1 : 0;
  }
  while (id < n_buckets && shm::load_relaxed(&bucket_at(m, uint32_t(id))->nr) == 0) id++;
  if (id >= n_buckets) return -ENOENT;
  const uint32_t out = uint32_t(id);
  memcpy(next, &out, 4);
  return 0;
}

}  // namespace bpfhook::maps

using namespace bpfhook::maps;

extern "C" {

long bh_stackmap_get_id(bh_map *m, const uint64_t *ips, uint32_t nr, uint64_t flags) {
  if (m == nullptr || m->type != BH_MAP_TYPE_STACK_TRACE || (flags & ~kKnownFlags) != 0) return -EINVAL;
  if (ips == nullptr || nr == 0) return -EFAULT;
  if (nr > depth(m)) nr = depth(m);
  const bool fast = (flags & BH_F_FAST_STACK_CMP) != 0;
  const bool reuse = (flags & BH_F_REUSE_STACKID) != 0;
  const uint32_t hash = hash_bytes(0, ips, nr * 8);
  const uint32_t id = hash & m->bucket_mask;
  StackBucket *b = bucket_at(m, id);
  // A stack seen before (the common case in a hot probe) costs no write.
  const Seen seen = peek(b, ips, nr, hash, fast);
  if (seen == Seen::kSame) return id;
  if (seen == Seen::kOther && !reuse) return -EEXIST;
  if (lock(m, b, shm::Wait::kProbe) < 0) return -EBUSY;
  long rc = id;
  // The bucket may have changed since the peek.
  const uint32_t n = b->nr;
  if (!holds(b, n, ips, nr, hash, fast)) {
    if (n != 0 && !reuse) {
      rc = -EEXIST;
    } else {
      store_frames(frames(b), ips, nr);
      shm::store_relaxed(&b->hash, hash);
      shm::store_relaxed(&b->nr, nr);
    }
  }
  shm::SeqLock::write_unlock(&b->seq);
  return rc;
}

uint64_t bh_helper_get_stackid(uint64_t, uint64_t map, uint64_t flags, uint64_t, uint64_t) {
  auto *m = reinterpret_cast<bh_map *>(uintptr_t(map));
  if (m == nullptr || m->type != BH_MAP_TYPE_STACK_TRACE || (flags & ~kKnownFlags) != 0) return uint64_t(-EINVAL);
  // A user-space process has no kernel stack: an empty trace, which the
  // kernel answers with -EFAULT.
  if ((flags & BH_F_USER_STACK) == 0) return uint64_t(-EFAULT);
  uint64_t ips[BH_STACK_MAX_DEPTH];
  const uint32_t n = bh_stack_walk(ips, depth(m), uint32_t(flags & BH_F_SKIP_FIELD_MASK));
  return uint64_t(int64_t(bh_stackmap_get_id(m, ips, n, flags)));
}

}  // extern "C"
