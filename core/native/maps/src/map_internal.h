// Maps' private layout and the inline fast paths shared by map.cpp (life,
// user-space ops), the per-type files and map_helpers.cpp (program side).
//
// Concurrency design (see also docs/ARCHITECTURE.md):
// - hash family: a bucket is {seqlock word, head}. Writers take the bucket's
//   seqlock (shm::SeqLock: CAS (even, 0) -> (odd, tid), unlock stores the
//   next even value)
//   and link or unlink elements with single release stores, so the chain is
//   consistent after every store. Readers take nothing: note the word, walk
//   the chain, check the word. Elements come from a preallocated pool with a
//   lock-free free list (tagged head against ABA) and are reused at once,
//   like the kernel's preallocated hash maps; an element is only pushed back
//   after the writer's unlock changed the bucket's word, so a reader that
//   walked into a retired (maybe already reused) element always sees the
//   change and retries. Walks are bounded by the pool size, so even a chain
//   mangled by reuse cannot loop a reader forever. A pointer returned by a
//   program-side lookup stays valid memory forever (the pool is never
//   unmapped) but, as in the kernel, may be reused after a concurrent delete.
// - replacing an existing key links a fresh element in place of the old one
//   (readers see the old or the new value, never a mix); per-CPU values are
//   overwritten in place, as the kernel does.
// - LPM trie: one map-wide seqlock for writers, lock-free readers with the
//   same validate-and-retry rule.
// - queue/stack, ring buffer producers, perf rings: short spinlocks (the
//   kernel uses spinlocks there too).
// - bloom filter: no lock at all; bits are only ever set, with atomic OR
//   (bloom.cpp), so a death can leave only a value half added.
// - stack trace: a seqlock per bucket. bpf_get_stackid reads the bucket
//   optimistically (a stack seen before costs no write) and only try-locks it
//   to store, failing with -EBUSY rather than waiting, so a probe that fires
//   inside another write on the same thread cannot deadlock; readers retry
//   until they copied a whole stack.
// - every lock records its holder (shm_sync.hpp): a lock whose holder died
//   is taken over, program-side (helper) callers wait at most
//   shm::kProbeWaitNs and then fail with -EBUSY, user-space callers
//   shm::kUserWaitNs; lock-free readers give up after shm::kReadRetries
//   changes of the word. Each such failure counts in MapHeader::busy.
//   What a holder that died can leave, per structure (takeover repairs or
//   tolerates it):
//   * hash bucket: the chain is consistent after every store; a death can
//     leak the element being linked and one slot of `count` (replacements
//     that die before unlock leak the replaced element): at most one
//     element per death, out of kHashExtraElems spares. A per-CPU value
//     overwritten in place may be torn, as concurrent writes can tear it.
//   * LPM trie: links are single stores; `count` is recounted on takeover
//     (lpm_repair); a node allocated or retired by the dead writer may leak.
//   * queue/stack: head and tail are single stores; a death loses at most
//     the element being pushed or popped.
//   * ring buffer producer: nothing is visible before producer_pos moves;
//     a record reserved by a process that died before submitting stays
//     BUSY and would hold the consumer back forever, so a reservation
//     carries the producer's tid in pg_off while BUSY and the consumer
//     discards a BUSY record whose producer is dead.
//   * perf ring: the record is copied under the lock and published by one
//     store of `head`: a death publishes nothing.
//   * consumer locks (ring buffer, perf rings): positions are single stores.
//   * stack trace bucket: frames may be half written: takeover empties the
//     bucket (nr = 0).
#pragma once

#include <sched.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "bpfhook/maps.h"
#include "bpfhook/shm_sync.hpp"

namespace bpfhook::maps {

namespace shm = bpfhook::shm;

constexpr uint32_t kMapMagic = 0x50414d48;  // "HMAP"
constexpr uint32_t kMapLayout = 2;          // 2: owner-recording locks (64-bit seqlocks)
constexpr uint64_t kHeaderBytes = 512;
constexpr uint64_t kCacheLine = 64;
constexpr uint32_t kElemHeader = 16;
constexpr uint32_t kMaxKeySize = 512;  // the kernel's MAX_BPF_STACK
constexpr uint32_t kMaxValueSize = 1u << 20;
constexpr uint32_t kMaxEntries = 1u << 28;
constexpr uint32_t kHashExtraElems = 64;  // spare elements for replacements in flight
constexpr uint32_t kLruSample = 128;      // elements an eviction looks at
constexpr uint64_t kRingCtlBytes = 4096;  // ring buffer: data starts one page in

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
inline uint32_t round8(uint32_t v) { return (v + 7u) & ~7u; }

// At offset 0 of every map's storage. Identity and offsets are written once
// at creation; each mutable group has its own cache line.
struct MapHeader {
  // line 0: identity
  uint32_t magic;
  uint32_t layout;
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
  uint32_t map_flags;
  uint32_t ncpus;
  uint64_t seed;          // hash seed (same in every process)
  uint32_t n_buckets;     // hash: power of two
  uint32_t pool_size;     // hash: elements; LPM: nodes; queue: slots; perf: rings;
                          // bloom: hash functions
  uint32_t elem_size;     // hash element / LPM node bytes
  uint32_t value_stride;  // round_up(value_size, 8)
  uint64_t ring_size;     // ring buffer data bytes / perf bytes per ring / bloom bit array bytes
  // line 1: offsets of the arrays, from the storage block
  uint64_t off_a;
  uint64_t off_b;
  uint64_t off_c;
  uint64_t cpu_block;  // bytes per CPU in per-CPU value arrays
  uint64_t reserved1[4];
  // line 2: map-wide lock words (LPM seqlock; queue/stack spinlock, ring
  // producer lock) and the state they protect
  uint32_t lock;  // spinlock: 0 free, else the holder's tid
  uint32_t root;  // LPM root node
  uint32_t head;  // queue/stack
  uint32_t tail;
  uint32_t node_free;     // LPM free list (under lock)
  uint32_t node_next;     // LPM never-used cursor (under lock)
  uint64_t producer_pos;  // ring buffer
  uint64_t drops;         // ring buffer
  uint64_t seqlock;       // LPM writers (shm::SeqLock)
  uint64_t reserved2[2];
  // line 3: hash element pool and live count
  uint64_t free_head;    // (tag << 32) | element index
  uint32_t next_unused;  // elements [next_unused, pool) were never used
  uint32_t count;        // live entries (hash family, LPM trie)
  uint64_t reserved3[6];
  // line 4: LRU clock
  uint32_t lru_clock;  // ticks on every insert; lookups copy it into the element
  uint32_t lru_hand;   // where the next eviction starts looking
  uint64_t busy;       // operations that failed with -EBUSY (or gave up reading)
  uint64_t takeovers;  // locks taken over from a holder that died
  uint64_t reserved4[5];
  // line 5: ring buffer consumer
  uint64_t consumer_pos;
  uint32_t consumer_lock;  // spinlock: 0 free, else the holder's tid
  uint32_t reserved5a;
  uint64_t stalled_pos;  // consumer: a BUSY record stopped the last pass here
  uint64_t reserved5[5];
  uint64_t reserved6[16];
};
static_assert(sizeof(MapHeader) == kHeaderBytes, "map header is 512 bytes in layout 1");
static_assert(offsetof(MapHeader, off_a) == 64 && offsetof(MapHeader, lock) == 128 &&
                  offsetof(MapHeader, free_head) == 192 && offsetof(MapHeader, lru_clock) == 256 &&
                  offsetof(MapHeader, consumer_pos) == 320,
              "one cache line per mutable group");
static_assert(offsetof(MapHeader, seqlock) % 8 == 0 && offsetof(MapHeader, seqlock) < 192 &&
                  offsetof(MapHeader, busy) % 8 == 0 && offsetof(MapHeader, busy) < 320,
              "the LPM seqlock sits on the lock line, the counters on the LRU line");

struct Bucket {
  uint64_t seq;   // shm::SeqLock word
  uint32_t head;  // first element (1-based), 0 = empty
  uint32_t reserved;
};
static_assert(sizeof(Bucket) == 16, "hash buckets are 16 bytes in layout 2");

enum : uint32_t { kElemLive = 1 };

struct ElemHeader {
  uint32_t next;  // next element in the bucket, or in the free list
  uint32_t hash;
  uint32_t atime;  // LRU: clock value at the last use
  uint32_t flags;  // kElemLive while linked (eviction's hint)
};

// Perf ring control: producer line, consumer line.
struct PerfRingCtl {
  uint32_t lock;  // spinlocks: 0 free, else the holder's tid
  uint32_t reserved0;
  uint64_t head;
  uint64_t lost;
  uint64_t samples;
  uint64_t reserved1[4];
  uint64_t tail;
  uint64_t lost_seen;
  uint32_t consumer_lock;
  uint32_t reserved2;
  uint64_t reserved3[5];
};
static_assert(sizeof(PerfRingCtl) == 128, "perf ring control is two cache lines");

// Stack trace bucket header; value_size bytes of instruction pointers follow.
struct StackBucket {
  uint64_t seq;   // shm::SeqLock word
  uint32_t nr;    // frames stored; 0 = empty
  uint32_t hash;  // of the frames
};
static_assert(sizeof(StackBucket) == 16, "stack bucket header is 16 bytes");

struct RingRecordHeader {
  uint32_t len;     // size | BUSY | DISCARD
  uint32_t pg_off;  // the producer's tid (the kernel's page offset has no use in one mapping)
};

struct PerfRecordHeader {
  uint16_t type;  // kPerfSample
  uint16_t misc;
  uint32_t size;  // payload bytes (the record takes 8 + round_up(size, 8))
};
constexpr uint16_t kPerfSample = 9;  // PERF_RECORD_SAMPLE

}  // namespace bpfhook::maps

// The process-local handle. Hot fields first: the helpers' fast paths read
// the first cache line or two only.
struct bh_map {
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
  uint32_t stride;  // round_up(value_size, 8)
  uint32_t ncpus;
  uint32_t bucket_mask;  // hash, stack trace: buckets - 1; bloom filter: bits - 1
  uint32_t pool_size;    // as MapHeader::pool_size (bloom filter: hash functions, 1..15)
  uint32_t elem_size;
  uint32_t key_stride;  // round_up(key_size, 8): value offset in an element is 16 + key_stride
  uint64_t seed;
  uint64_t cpu_block;
  bpfhook::maps::MapHeader *hdr;
  uint8_t *a;  // array values / buckets / LPM nodes / queue slots / ring data / perf ctls
  uint8_t *b;  // hash elements / perf ring data
  uint8_t *c;  // per-CPU hash values
  uint64_t ring_size;
  uint8_t *storage;
  uint64_t storage_size;
  bh_region *region;
  uint32_t refs;  // handle references (bh_map_ref / bh_map_close)
  bh_map_info info;
  uint64_t corruptions;  // corrupt indices/lengths met in the region (atomic; bh_map_corruptions)
  uint32_t gen;          // the directory entry's gen when opened (bh_region_map_hold)
};

namespace bpfhook::maps {

// The calling thread's CPU (glibc reads it from the rseq area: a load).
// Threads are not pinned, so a caller may move right after this; per-CPU
// data is then merely written from another CPU, which is still correct for
// atomic updates and is the documented user-space caveat for plain ones.
inline uint32_t current_cpu(const bh_map *m) {
  int c = sched_getcpu();
  if (c < 0) return 0;
  uint32_t u = uint32_t(c);
  return u < m->ncpus ? u : u % m->ncpus;
}

// ---- corruption ----
//
// Everything other processes can write (heads, links, free lists, cursors,
// counts, record lengths) is checked against the handle's geometry before it
// is used as an index or a length; geometry itself is only ever read from
// the handle. A value out of bounds is never followed: the operation fails
// with -EFAULT and the handle counts it. Cold, so the checks on hot paths
// stay one compare and a never-taken branch.
constexpr long kCorrupt = -EFAULT;
__attribute__((cold, noinline)) inline long corrupt(const bh_map *m) {
  __atomic_fetch_add(&const_cast<bh_map *>(m)->corruptions, uint64_t(1), __ATOMIC_RELAXED);
  return kCorrupt;
}
// A valid 1-based element / node index (hash pool, LPM nodes).
inline bool index_ok(const bh_map *m, uint32_t idx) { return idx - 1u < m->pool_size; }

// ---- hashing ----

constexpr uint64_t kMul1 = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kMul2 = 0xd6e8feb86659fd93ull;

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 32;
  x *= kMul2;
  x ^= x >> 32;
  x *= kMul2;
  x ^= x >> 32;
  return x;
}

inline uint64_t load64(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
inline uint32_t load32(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

// ---- copies and compares of the program-side paths, without libc ----
//
// libc's memcpy/memcmp/memset use AVX and AVX-512 registers on machines that
// have them (ymm upper halves, zmm16-31, opmask registers), state that a
// system-call hook must then save around a program (BH_PROG_F_VECTOR_CLEAN in
// sdk/include/bpfhook/plugin.h: the lookup, update and delete of the map
// types bh_map_type_vector_clean names go through these instead). Keys and
// values are mostly small: words then bytes, the empty asm keeping GCC from
// turning the loops back into library calls; from 128 bytes on, rep movsb /
// stosb (no vector register either).
inline uint64_t load_tail(const uint8_t *p, uint32_t len) {  // len < 8
  uint64_t v = 0;
  for (uint32_t i = 0; i < len; i++) {
    asm("" : "+r"(i));
    v |= uint64_t(p[i]) << (8 * i);
  }
  return v;
}

inline void copy_bytes(void *dst, const void *src, uint32_t len) {
  auto *d = static_cast<uint8_t *>(dst);
  const auto *s = static_cast<const uint8_t *>(src);
  if (len >= 128) {
    // Microcoded string moves use no vector register and are fast at this size.
    size_t n = len;
    asm volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return;
  }
  uint32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    asm("" : "+r"(i));
    uint64_t w;
    __builtin_memcpy(&w, s + i, 8);
    __builtin_memcpy(d + i, &w, 8);
  }
  for (; i < len; i++) {
    asm("" : "+r"(i));
    d[i] = s[i];
  }
}

inline void zero_bytes(void *dst, uint32_t len) {
  auto *d = static_cast<uint8_t *>(dst);
  if (len >= 128) {
    size_t n = len;
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(0) : "memory");
    return;
  }
  uint32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    asm("" : "+r"(i));
    const uint64_t z = 0;
    __builtin_memcpy(d + i, &z, 8);
  }
  for (; i < len; i++) {
    asm("" : "+r"(i));
    d[i] = 0;
  }
}

inline bool bytes_equal(const uint8_t *a, const uint8_t *b, uint32_t len) {
  uint32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    asm("" : "+r"(i));
    if (load64(a + i) != load64(b + i)) return false;
  }
  return load_tail(a + i, len - i) == load_tail(b + i, len - i);
}

inline uint32_t hash_bytes(uint64_t seed, const void *key, uint32_t len) {
  const auto *p = static_cast<const uint8_t *>(key);
  uint64_t h = seed ^ (uint64_t(len) * kMul1);
  while (len >= 8) {
    h ^= load64(p) * kMul1;
    h = ((h << 31) | (h >> 33)) * kMul2;
    p += 8;
    len -= 8;
  }
  if (len != 0) h ^= load_tail(p, len) * kMul1;
  return uint32_t(mix64(h));
}

// Small keys (the common u32 / u64 ids) get a single mix with no loop.
inline uint32_t hash_key(const bh_map *m, const void *key) {
  if (m->key_size == 4) return uint32_t(mix64(load32(key) ^ m->seed));
  if (m->key_size == 8) return uint32_t(mix64(load64(key) ^ m->seed));
  return hash_bytes(m->seed, key, m->key_size);
}

inline bool key_eq(const bh_map *m, const uint8_t *stored, const void *key) {
  if (m->key_size == 4) return load32(stored) == load32(key);
  if (m->key_size == 8) return load64(stored) == load64(key);
  return bytes_equal(stored, static_cast<const uint8_t *>(key), m->key_size);
}

// ---- element addressing ----

inline ElemHeader *elem(const bh_map *m, uint32_t idx) {
  return reinterpret_cast<ElemHeader *>(m->b + uint64_t(idx - 1) * m->elem_size);
}
inline uint8_t *elem_key(ElemHeader *e) { return reinterpret_cast<uint8_t *>(e) + kElemHeader; }
inline uint8_t *elem_value(const bh_map *m, ElemHeader *e) { return elem_key(e) + m->key_stride; }
inline uint8_t *percpu_value(const bh_map *m, uint32_t idx, uint32_t cpu) {
  return m->c + uint64_t(cpu) * m->cpu_block + uint64_t(idx - 1) * m->stride;
}
inline Bucket *bucket_for(const bh_map *m, uint32_t hash) {
  return reinterpret_cast<Bucket *>(m->a) + (hash & m->bucket_mask);
}

// Counts a failure to get a lock or a consistent read (bh_map_lock_stats).
inline void count_busy(const bh_map *m) { shm::fetch_add_relaxed(&m->hdr->busy, uint64_t(1)); }
inline void count_takeover(const bh_map *m) { shm::fetch_add_relaxed(&m->hdr->takeovers, uint64_t(1)); }
// Folds a lock result into the counters: true if the lock is held.
inline bool locked(const bh_map *m, int rc) {
  if (rc == shm::kLocked) return true;
  if (rc == shm::kTakenOver) {
    count_takeover(m);
    return true;
  }
  count_busy(m);
  return false;
}
// The wait budget of a caller: programs (helpers) or user space.
inline shm::Wait wait_for(bool user) { return user ? shm::Wait::kUser : shm::Wait::kProbe; }
// What a failed lock returns: helpers answer -EBUSY as the kernel's maps do;
// user space also learns -EDEADLK (the lock is its own thread's).
inline long lock_failure(int rc, bool user) { return user ? rc : -EBUSY; }

// One pass over a bucket's chain: the element index holding `key` or 0;
// `bad` when the chain leaves the pool or is longer than it (mangled by a
// concurrent reuse, which the seqlock check then catches, or corrupt).
inline uint32_t hash_walk(const bh_map *m, const Bucket *b, uint32_t hash, const void *key, bool *bad) {
  uint32_t steps = 0;
  for (uint32_t idx = shm::load_acquire(&b->head); idx != 0;) {
    if (__builtin_expect(idx > m->pool_size || ++steps > m->pool_size, 0)) {
      *bad = true;
      return 0;
    }
    ElemHeader *e = elem(m, idx);
    if (shm::load_relaxed(&e->hash) == hash && key_eq(m, elem_key(e), key)) return idx;
    idx = shm::load_acquire(&e->next);
  }
  return 0;
}

// The retries of hash_find, out of line: bounded by kReadRetries (then 0,
// counted as busy); a stable chain out of bounds counts as corruption.
uint32_t hash_find_slow(const bh_map *m, uint32_t hash, const void *key);

// Lock-free lookup: the element index holding `key`, or 0. The first pass is
// inline and carries nothing else; a pass that raced a writer or met a bad
// chain goes to hash_find_slow.
inline uint32_t hash_find(const bh_map *m, uint32_t hash, const void *key) {
  const Bucket *b = bucket_for(m, hash);
  uint64_t seen = shm::SeqLock::read_begin(&b->seq);
  bool bad = false;
  uint32_t found = hash_walk(m, b, hash, key, &bad);
  if (__builtin_expect(!shm::SeqLock::read_changed(&b->seq, seen) && !bad, 1)) return found;
  return hash_find_slow(m, hash, key);
}

inline void lru_touch(const bh_map *m, ElemHeader *e) {
  // Write only when the clock moved, so hot keys read by many threads do not
  // bounce the element's cache line on every lookup.
  uint32_t now = shm::load_relaxed(&m->hdr->lru_clock);
  if (shm::load_relaxed(&e->atime) != now) shm::store_relaxed(&e->atime, now);
}

inline void *array_lookup(const bh_map *m, const void *key) {
  uint32_t idx = load32(key);
  if (idx >= m->max_entries) return nullptr;
  return m->a + uint64_t(idx) * m->stride;
}

inline void *percpu_array_lookup(const bh_map *m, const void *key) {
  uint32_t idx = load32(key);
  if (idx >= m->max_entries) return nullptr;
  return m->a + uint64_t(current_cpu(m)) * m->cpu_block + uint64_t(idx) * m->stride;
}

inline void *hash_lookup_elem(const bh_map *m, const void *key) {
  uint32_t idx = hash_find(m, hash_key(m, key), key);
  if (idx == 0) return nullptr;
  ElemHeader *e = elem(m, idx);
  switch (m->type) {
    case BH_MAP_TYPE_LRU_HASH: lru_touch(m, e); return elem_value(m, e);
    case BH_MAP_TYPE_PERCPU_HASH: return percpu_value(m, idx, current_cpu(m));
    default: return elem_value(m, e);
  }
}

// ---- per-type entry points (hash.cpp, array.cpp, lpm.cpp, queue.cpp,
// ringbuf.cpp, perf.cpp) ----

// hash.cpp; `all_cpus` selects the user-space per-CPU value layout.
long hash_update(bh_map *m, const void *key, const void *value, uint64_t flags, bool all_cpus);
long hash_delete(bh_map *m, const void *key, bool user);
int hash_lookup_copy(bh_map *m, const void *key, void *out);
int hash_lookup_and_delete(bh_map *m, const void *key, void *out);
int hash_next_key(bh_map *m, const void *key, void *next);

// array.cpp
long array_update(bh_map *m, const void *key, const void *value, uint64_t flags, bool all_cpus);
int array_lookup_copy(bh_map *m, const void *key, void *out);
int array_next_key(bh_map *m, const void *key, void *next);

// lpm.cpp
void *lpm_lookup(bh_map *m, const void *key);
int lpm_lookup_copy(bh_map *m, const void *key, void *out);
long lpm_update(bh_map *m, const void *key, const void *value, uint64_t flags, bool user);
long lpm_delete(bh_map *m, const void *key, bool user);
int lpm_next_key(bh_map *m, const void *key, void *next);

// queue.cpp
long queue_push(bh_map *m, const void *value, uint64_t flags, bool user);
long queue_pop(bh_map *m, void *value, bool remove, bool user);
int64_t queue_count(bh_map *m);

// bloom.cpp. The kernel's jhash (lookup3's hashlittle on little-endian).
uint32_t jhash(const void *key, uint32_t length, uint32_t initval);
// BPF_ANY only (-EINVAL); 0 added.
long bloom_push(bh_map *m, const void *value, uint64_t flags);
// 0 maybe present, -ENOENT certainly absent.
long bloom_peek(const bh_map *m, const void *value);

// stackmap.cpp
int stack_lookup_copy(bh_map *m, const void *key, void *out);
long stack_delete(bh_map *m, const void *key, bool user);
int stack_next_key(bh_map *m, const void *key, void *next);

}  // namespace bpfhook::maps
