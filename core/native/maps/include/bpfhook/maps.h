/* bpfhook's eBPF maps: storage in a shared region (region.h), kernel
 * semantics, a C ABI usable without Node (the agent links this too).
 *
 * Two sides, as in the kernel:
 * - user space (bh_map_lookup / update / delete / get_next_key /
 *   lookup_and_delete) behaves like the bpf() syscall: values are copied,
 *   per-CPU maps take and return all CPUs' values (value_size rounded up to 8,
 *   times ncpus), results are 0 or a negative errno;
 * - programs (bh_map_lookup_elem, ..., and the helper functions registered by
 *   bh_maps_register_helpers) behave like the kernel helpers: lookup returns a
 *   pointer into the map's storage that the program may write through, and
 *   per-CPU maps act on the calling CPU's value only.
 *
 * Map types (kernel ids): hash 1, array 2, perf event array 4, per-CPU hash
 * 5, per-CPU array 6, stack trace 7, LRU hash 9, LPM trie 11, queue 22,
 * stack 23, ring buffer 27, bloom filter 30. (Program arrays, 3, hold
 * process-local programs and live in the runtime instead: bpfhook/runtime.h.)
 *
 * Errors: -E2BIG map full / index out of range / record too big, -ENOENT no
 * such key or empty queue, -EEXIST BPF_NOEXIST on an existing key, -EINVAL
 * bad flags or sizes (and delete on an array), -ENOSPC LPM trie full or perf
 * ring full (as the kernel), -ENOMEM region full at creation, -EFAULT the
 * map's shared storage is corrupt (an index, offset, length or count that
 * another process wrote is out of bounds: it is never followed, and
 * bh_map_corruptions counts it).
 * -EBUSY: a lock stayed held by a live holder past the wait budget (helpers:
 * 20 ms, user space: 1 s; counted, bh_map_get_lock_stats), or a lock-free read
 * kept being overtaken by writers. -EDEADLK (user space only; helpers say
 * -EBUSY): the lock is held by the calling thread. A lock whose holder died
 * is taken over, never waited for (bpfhook/shm_sync.hpp).
 *
 * STORAGE LAYOUT (inside the map's region block; offsets from the block)
 *
 *   0     map header, 512 bytes: identity (magic, type, sizes, ncpus, hash
 *         seed, offsets of the arrays below), then one 64-byte line each for
 *         the map-wide lock word, the live count / free list, and the LRU
 *         clock, so that writers of one do not invalidate the others
 *   array           values[max_entries], stride round_up(value_size, 8)
 *   per-CPU array   ncpus blocks (64-byte aligned), each values[max_entries]
 *   hash, LRU hash  buckets[n] (16 bytes: 64-bit seqlock word, head element), n the
 *                   power of two >= max_entries; then the element pool:
 *                   {next, hash, atime, flags; key; value}, element indexes
 *                   1-based (0 = none)
 *   per-CPU hash    as hash without the value in the element, plus ncpus
 *                   blocks of values[pool], indexed by element
 *   LPM trie        node pool (2 x max_entries: real + intermediate nodes)
 *   queue, stack    slots[max_entries + 1]
 *   ring buffer     control page (producer lock, positions, drops, each on
 *                   its own cache line), then data[max_entries] (power of two)
 *   perf array      one 128-byte control per ring, then the rings' data
 *                   (map_extra bytes each, power of two)
 *   stack trace     buckets[n], n the power of two >= max_entries, each
 *                   {64-bit seqlock word, frame count (0 = empty), hash} then
 *                   value_size bytes of instruction pointers; a stack id is
 *                   a bucket index
 *   bloom filter    the bit array, 64-bit words, sized as the kernel's
 *                   bloom_map_alloc does (below); no lock: bits are set with
 *                   atomic OR and only ever set
 *
 * A bh_map* is a process-local handle: it caches the addresses of the arrays
 * above for this process's mapping. Programs get it through the lddw
 * resolver (map-fd forms) or bh_map_value_addr (map-value forms). The handle
 * must outlive every program that uses it (take a reference with
 * bh_map_ref); closing it does not touch the storage, which lives as long as
 * the region unless the map was marked with bh_map_free_on_close.
 */
#ifndef BPFHOOK_MAPS_H
#define BPFHOOK_MAPS_H

#include <stddef.h>
#include <stdint.h>

#include "bpfhook/region.h"

#ifdef __cplusplus
extern "C" {
#endif

enum bh_map_type {
  BH_MAP_TYPE_HASH = 1,
  BH_MAP_TYPE_ARRAY = 2,
  BH_MAP_TYPE_PERF_EVENT_ARRAY = 4,
  BH_MAP_TYPE_PERCPU_HASH = 5,
  BH_MAP_TYPE_PERCPU_ARRAY = 6,
  BH_MAP_TYPE_STACK_TRACE = 7,
  BH_MAP_TYPE_LRU_HASH = 9,
  BH_MAP_TYPE_LPM_TRIE = 11,
  BH_MAP_TYPE_QUEUE = 22,
  BH_MAP_TYPE_STACK = 23,
  BH_MAP_TYPE_RINGBUF = 27,
  BH_MAP_TYPE_BLOOM_FILTER = 30,
};

/* Update flags (the kernel's BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK). */
#define BH_ANY 0ull
#define BH_NOEXIST 1ull
#define BH_EXIST 2ull
#define BH_F_LOCK 4ull /* no bpf_spin_lock support: rejected with -EINVAL */

/* Creation flags accepted (the kernel's values). Stored and reported; only
 * BH_F_ZERO_SEED changes behaviour (hash seed 0: same bucket order in every
 * run). Maps are always preallocated; NO_PREALLOC is accepted for source
 * compatibility (LPM tries require it in the kernel; here it is optional). */
#define BH_F_NO_PREALLOC (1u << 0)
#define BH_F_NO_COMMON_LRU (1u << 1)
#define BH_F_NUMA_NODE (1u << 2)
#define BH_F_RDONLY (1u << 3)
#define BH_F_WRONLY (1u << 4)
#define BH_F_ZERO_SEED (1u << 6)
#define BH_F_RDONLY_PROG (1u << 7)
#define BH_F_WRONLY_PROG (1u << 8)
#define BH_F_MMAPABLE (1u << 10)

/* Ring buffer: record header and flags (the kernel's values). */
#define BH_RINGBUF_BUSY_BIT (1u << 31)
#define BH_RINGBUF_DISCARD_BIT (1u << 30)
#define BH_RINGBUF_HDR_SZ 8u
#define BH_RB_NO_WAKEUP 1ull
#define BH_RB_FORCE_WAKEUP 2ull
/* bpf_ringbuf_query flags */
#define BH_RB_AVAIL_DATA 0ull
#define BH_RB_RING_SIZE 1ull
#define BH_RB_CONS_POS 2ull
#define BH_RB_PROD_POS 3ull

/* bpf_get_stackid flags (the kernel's values): frames to skip, the user
 * stack (the only one a user-space process has; without it the trace is
 * empty and get_stackid returns -EFAULT), compare hashes only, replace a
 * different stack in the bucket instead of failing with -EEXIST. */
#define BH_F_SKIP_FIELD_MASK 0xffull
#define BH_F_USER_STACK (1ull << 8)
#define BH_F_FAST_STACK_CMP (1ull << 9)
#define BH_F_REUSE_STACKID (1ull << 10)
/* Most frames a stack-trace value holds (sysctl perf_event_max_stack's default). */
#define BH_STACK_MAX_DEPTH 127u

/* perf_event_output flags */
#define BH_F_INDEX_MASK 0xffffffffull
#define BH_F_CURRENT_CPU 0xffffffffull
#define BH_PERF_DEFAULT_RING_SIZE (64u << 10)

typedef struct bh_map bh_map;

/* `sz` first (see bh_region_opts). */
typedef struct bh_map_spec {
  size_t sz;
  const char *name; /* up to 63 printable ASCII bytes, no spaces, unique in
                     * the region (-EEXIST); "" or NULL = anonymous */
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries; /* perf event array: 0 = one ring per possible CPU */
  uint32_t map_flags;
  uint64_t map_extra; /* perf event array: bytes per ring (power of two >= 4096, 0 = 64 KiB);
                       * bloom filter: hash functions (1..15, 0 = 5) */
} bh_map_spec;

typedef struct bh_map_info {
  char name[BH_REGION_NAME_MAX];
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
  uint32_t map_flags;
  uint32_t index;           /* position in the region's directory */
  uint32_t ncpus;           /* possible CPUs the storage is laid out for */
  uint32_t user_value_size; /* bytes bh_map_lookup/update copy: per-CPU: round8(value) * ncpus */
  uint64_t map_extra;
  uint64_t storage_off;
  uint64_t storage_size;
  uint32_t gen; /* the directory entry's gen (index + gen name this map, agent mode's map refs) */
} bh_map_info;

/* ---- life ---- */

/* Creates a map in `r` (a directory entry and its storage). -EINVAL for sizes
 * or flags the type does not allow, -EEXIST for a name in use, -ENOMEM if the
 * region is full, -ENOSPC if its directory is. The handle holds a reference
 * on the region. */
int bh_map_create(bh_region *r, const bh_map_spec *spec, bh_map **out);
/* Opens the map at directory `index` / called `name` (-ENOENT). -EPROTO if
 * its storage does not match this build's layout. */
int bh_map_open(bh_region *r, uint32_t index, bh_map **out);
int bh_map_open_by_name(bh_region *r, const char *name, bh_map **out);
/* Handles are reference counted: whoever keeps a bh_map* beyond the
 * caller's own use (a loaded program, a worker thread) takes a reference
 * and closes it when done. The last close frees the handle (never the
 * storage) and drops its region reference. */
void bh_map_ref(bh_map *m);
void bh_map_close(bh_map *m);
/* Frees the map's storage and directory entry when the last handle on it in
 * this region mapping closes (now, if none is open). For maps whose creator
 * owns their life, as the runtime does for the maps of an object it unloads:
 * nothing may use the map afterwards (programs referencing it must be gone;
 * other processes' handles see zeroed, reused memory). */
void bh_map_free_on_close(bh_map *m);

const bh_map_info *bh_map_get_info(const bh_map *m);
/* The map's storage in this process (for bh_vm_add_region in checked mode). */
void *bh_map_storage(const bh_map *m, size_t *len);
/* Live entries (hash family, LPM trie, queue/stack); -EINVAL otherwise. */
int64_t bh_map_count(const bh_map *m);
/* How many times this handle met a corrupt index, offset, length or count
 * in the map's shared storage (each such operation failed with -EFAULT, or
 * a program-side lookup returned NULL, and nothing outside the storage was
 * touched). Process-local. */
uint64_t bh_map_corruptions(const bh_map *m);

/* Lock outcomes, shared by every process that maps the region. busy: helper
 * calls that failed with -EBUSY because a lock stayed held past the probe
 * budget (a live holder, or the calling thread itself) and lock-free reads
 * that gave up because writers kept changing what they read; user-space
 * calls that timed out count too. takeovers: locks (and ring buffer
 * records) taken over from a holder that had died. */
typedef struct bh_map_lock_stats {
  uint64_t busy;
  uint64_t takeovers;
} bh_map_lock_stats;
int bh_map_get_lock_stats(const bh_map *m, bh_map_lock_stats *st);

/* ---- user space (bpf() syscall semantics) ---- */

int bh_map_lookup(bh_map *m, const void *key, void *value);
int bh_map_update(bh_map *m, const void *key, const void *value, uint64_t flags);
int bh_map_delete(bh_map *m, const void *key);
/* Queue/stack: pop (key NULL). Hash family: lookup then delete. */
int bh_map_lookup_and_delete(bh_map *m, const void *key, void *value);
/* key NULL (or not found, for hash maps) gives the first key; -ENOENT after
 * the last. Arrays iterate indexes in order. */
int bh_map_get_next_key(bh_map *m, const void *key, void *next_key);

/* ---- programs (helper semantics) ---- */

/* Pointer to the value (the calling CPU's, for per-CPU maps), or NULL. */
void *bh_map_lookup_elem(bh_map *m, const void *key);
long bh_map_update_elem(bh_map *m, const void *key, const void *value, uint64_t flags);
long bh_map_delete_elem(bh_map *m, const void *key);
long bh_map_push_elem(bh_map *m, const void *value, uint64_t flags);
long bh_map_pop_elem(bh_map *m, void *value);
long bh_map_peek_elem(bh_map *m, void *value);
/* Iteration, for bpf_for_each_map_elem: calls fn(cookie, key, value) for
 * each element, in index (arrays) or bucket (hash family) order, and stops
 * after fn returns non-zero. Values are the live ones (the calling CPU's for
 * per-CPU maps), as the kernel passes them; an array's key points at a u32
 * that lives only for the call. Hash maps are read without locks (buckets
 * are snapshotted under their seqlock, a few elements at a time, and fn runs
 * outside any read section), so concurrent updates may make the iteration
 * miss or repeat elements, as in the kernel. Returns the number of elements
 * fn was called for, -EINVAL for other map types, -EBUSY (writers kept a
 * bucket changing) or -EFAULT (a corrupt chain). */
typedef int (*bh_map_elem_fn)(void *cookie, const void *key, void *value);
long bh_map_for_each_elem(bh_map *m, bh_map_elem_fn fn, void *cookie);
/* Address of element `index`'s value in a (non-per-CPU) array map, for the
 * lddw map-value forms (.data, .rodata, .bss); NULL otherwise. */
void *bh_map_value_addr(bh_map *m, uint32_t index);

/* ---- ring buffer ---- */

void *bh_ringbuf_reserve(bh_map *m, uint64_t size, uint64_t flags);
void bh_ringbuf_submit(void *sample, uint64_t flags);
void bh_ringbuf_discard(void *sample, uint64_t flags);
long bh_ringbuf_output(bh_map *m, const void *data, uint64_t size, uint64_t flags);
uint64_t bh_ringbuf_query(bh_map *m, uint64_t flags);

/* Called for each submitted record in order; a non-zero return stops the
 * consumer after this record (it is consumed). */
typedef int (*bh_ringbuf_sample_fn)(void *ctx, const void *data, uint32_t size);
/* Consumes up to max_records (0 = all available) records; returns how many
 * were delivered, or -EBUSY if another consumer holds the consumer lock.
 * One consumer at a time per ring (any process). */
int bh_ringbuf_consume(bh_map *m, bh_ringbuf_sample_fn fn, void *ctx, uint32_t max_records);

typedef struct bh_ringbuf_stats {
  uint64_t size; /* data bytes */
  uint64_t producer_pos;
  uint64_t consumer_pos;
  uint64_t drops; /* reservations refused because the ring was full */
} bh_ringbuf_stats;
int bh_ringbuf_get_stats(bh_map *m, bh_ringbuf_stats *st);

/* ---- perf event array ---- */

/* flags: ring index, or BH_F_CURRENT_CPU. -E2BIG index out of range or record
 * too big, -ENOSPC ring full (counted as lost), -EINVAL bad flags. */
long bh_perf_event_output(bh_map *m, uint64_t flags, const void *data, uint64_t size);

typedef int (*bh_perf_sample_fn)(void *ctx, uint32_t ring, const void *data, uint32_t size);
typedef void (*bh_perf_lost_fn)(void *ctx, uint32_t ring, uint64_t lost);
/* Consumes ring `ring` (or all rings, ring < 0), up to max_records (0 = all)
 * in total; reports samples lost since the last call through `lost` first.
 * Returns samples delivered, or -EBUSY / -E2BIG. */
int bh_perf_consume(bh_map *m, int ring, bh_perf_sample_fn sample, bh_perf_lost_fn lost, void *ctx,
                    uint32_t max_records);

typedef struct bh_perf_ring_stats {
  uint64_t size;
  uint64_t head;
  uint64_t tail;
  uint64_t lost; /* total lost samples on this ring */
} bh_perf_ring_stats;
int bh_perf_get_stats(bh_map *m, uint32_t ring, bh_perf_ring_stats *st);

/* ---- stack trace ----
 * key: u32 stack id; value: value_size / 8 instruction pointers, innermost
 * first, zero-filled past the stack's depth (what bh_map_lookup copies).
 * bh_map_delete frees an id, bh_map_get_next_key lists the ids in use;
 * bh_map_update is -EINVAL and program-side lookups give NULL, as in the
 * kernel. Buckets are seqlocked: readers in any process see whole stacks. */

/* The map side of bpf_get_stackid: stores `ips[0..nr)` (nr capped at the
 * map's depth) in the bucket of its hash and returns the stack id (the bucket
 * index), or the id it already has. A different stack in that bucket gives
 * -EEXIST unless BH_F_REUSE_STACKID replaces it; BH_F_FAST_STACK_CMP takes an
 * equal hash for an equal stack. -EFAULT for nr 0, -EINVAL for a map of
 * another type or other flags, -EBUSY if another thread is writing the
 * bucket (a writer never waits: a probe may fire inside another's write). */
long bh_stackmap_get_id(bh_map *m, const uint64_t *ips, uint32_t nr, uint64_t flags);

/* ---- bloom filter ----
 * The kernel's BPF_MAP_TYPE_BLOOM_FILTER (kernel/bpf/bloom_filter.c): key
 * size 0, value_size > 0, max_entries > 0 (the number of values expected),
 * map_extra = hash functions k (low 4 bits only: 1..15, 0 = 5), flags
 * BH_F_ZERO_SEED (seed 0 instead of a random one), NUMA and access flags;
 * anything else is -EINVAL, value_size over 1 MiB -E2BIG. The bit array
 * holds roundup_pow_of_two(max_entries * k / 5 * 7) bits (7/5 for 1/ln 2; at
 * least 64; 2^32 when that passes 2^31): holding n values in m bits, a test
 * of a value never added passes with probability about (1 - e^(-k n / m))^k.
 * Hash function j (j < k) sets bit jhash(value, value_size, seed + j) & (m - 1)
 * (jhash2 when value_size is a multiple of 4), as the kernel does: with
 * BH_F_ZERO_SEED the bits are those the kernel would set.
 * Programs: bpf_map_push_elem adds a value (flags must be BH_ANY, else
 * -EINVAL), bpf_map_peek_elem tests one: 0 maybe present, -ENOENT certainly
 * not (no false negatives). pop, delete -EOPNOTSUPP; update -EINVAL; lookup
 * NULL. User space, as the bpf() syscall: bh_map_update(m, NULL, value,
 * BH_ANY) adds, bh_map_lookup(m, NULL, value) tests (value is read, not
 * written), delete, get_next_key and lookup_and_delete -EOPNOTSUPP. Nothing
 * can be removed: values are only ever added. */

/* ---- helpers (uint64_t fn(r1..r5), kernel ids) ---- */

uint64_t bh_helper_map_lookup_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_map_update_elem(uint64_t map, uint64_t key, uint64_t value, uint64_t flags, uint64_t);
uint64_t bh_helper_map_delete_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_perf_event_output(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t data, uint64_t size);
uint64_t bh_helper_map_push_elem(uint64_t map, uint64_t value, uint64_t flags, uint64_t, uint64_t);
uint64_t bh_helper_map_pop_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_map_peek_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_ringbuf_output(uint64_t map, uint64_t data, uint64_t size, uint64_t flags, uint64_t);
uint64_t bh_helper_ringbuf_reserve(uint64_t map, uint64_t size, uint64_t flags, uint64_t, uint64_t);
uint64_t bh_helper_ringbuf_submit(uint64_t sample, uint64_t flags, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_ringbuf_discard(uint64_t sample, uint64_t flags, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_ringbuf_query(uint64_t map, uint64_t flags, uint64_t, uint64_t, uint64_t);
/* bpf_for_each_map_elem(map, callback_fn, callback_ctx, flags): through
 * bh_map_for_each_elem and the VM's bh_vm_callback_invoke (registered with
 * BH_HELPER_CALLS_BACK), so it works only when called by a program. */
uint64_t bh_helper_for_each_map_elem(uint64_t map, uint64_t callback_fn, uint64_t callback_ctx, uint64_t flags,
                                     uint64_t);
/* bpf_get_stackid(ctx, map, flags): walks the stack with bh_stack_walk
 * (bpfhook/helpers.h: the probed code's stack from PT_REGS, else the code
 * that started the run) and stores it with bh_stackmap_get_id. */
uint64_t bh_helper_get_stackid(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t, uint64_t);

struct bh_vm;
/* Registers the helpers above under their kernel ids (1, 2, 3, 25, 27, 87,
 * 88, 89, 130, 131, 132, 133, 134, 164). Returns 0 or the first failure. */
int bh_maps_register_helpers(struct bh_vm *vm);

/* What a program loader (bh_program_opts in runtime.h) needs of a map, one
 * implementation for the Node addon and the agent. `map` is a bh_map *.
 * lddw map-value forms: the address of entry 0's value of an array map plus
 * `offset`, only within that value (as the kernel's array maps allow); 0
 * otherwise. vm_desc: checked mode's view (type, key and value sizes, a ring
 * buffer's storage); -1 for NULL. */
struct bh_vm_map;
uint64_t bh_map_lddw_value_addr(void *map, uint32_t offset);
int bh_map_vm_desc(void *map, struct bh_vm_map *out);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_MAPS_H */
