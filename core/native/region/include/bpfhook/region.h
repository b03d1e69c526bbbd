/* bpfhook's shared region: one named POSIX shared-memory object holding what
 * a controller and a target process share (maps in layout version 2;
 * programs and attachment records come later). Embedded mode uses one too, so
 * that both modes run the same code and the agent of a later issue only has
 * to open the region by name.
 *
 * LAYOUT (version 3: version 2's freed maps, free list and locks that hold
 * their owner's tid, plus the header's agent_off / agent_size: where agent
 * mode's agent area is, bpfhook/agent_area.h; 0 in embedded mode)
 *
 * Every reference inside the region is a byte offset from the region's first
 * byte, never a pointer: each process maps the object wherever mmap puts it
 * and turns offsets into addresses with its own base. All multi-byte fields
 * are native-endian (controller and agent run on the same machine).
 *
 *   offset 0            bh_region_header (in a 4096-byte page)
 *                         magic "BHREGION", layout_version, header_size,
 *                         size, generation, ncpus, directory and data area
 *                         offsets, the bump allocator's cursor, the lock
 *                         that serialises directory writers and the
 *                         allocator's free list, the creator's identity
 *                         (pid, start time, pid namespace) for stale cleanup,
 *                         the agent area's offset and size (0: none)
 *   dir_offset (4096)   map directory: dir_capacity x bh_region_map_desc
 *                         (256 bytes each): name, type, key/value size,
 *                         max_entries, flags, map_extra, state, gen, and the
 *                         offset and size of the map's storage block
 *   data_offset         data area, page aligned
 *   (page aligned)        each map's storage is one block (64-byte aligned,
 *                         4096 for ring buffers, sizes rounded up to 64) that
 *                         begins with a map header; its inner layout is in
 *                         maps.h. Free blocks form a list sorted by offset:
 *                         each begins with {next offset, size}; the rest of
 *                         a free block is zero.
 *   size                end of the object
 *
 * Rules every process follows:
 * - Directory entries [0, dir_count) have been used; dir_count only grows
 *   (release store after the entry is written; readers load it with
 *   acquire). An entry's `state` says whether it holds a live map (1) or a
 *   freed one (2, reusable); `gen` changes whenever the entry is freed or
 *   reused. A reader takes no lock: it notes gen, checks state is live with
 *   acquire, copies the entry, and accepts the copy only if gen and state are
 *   unchanged afterwards (bh_region_map_read). Every change bumps the
 *   header's `generation`, so a process can poll it to notice new or freed
 *   maps.
 * - Writers (adding a map, freeing one, the free list) hold `lock`. A map is
 *   freed by its creating process when its last handle there closes (if it
 *   was created with free-on-close): the entry turns dead, its storage is
 *   zeroed (holes punched in whole pages, so the memory goes back too) and
 *   goes on the free list, coalescing with its neighbours; a block that ends
 *   at the bump cursor moves the cursor back instead. Allocation is first
 *   fit on the free list, then the bump cursor; running past `size` fails
 *   with -ENOMEM and changes nothing.
 * - Locks inside the region are plain 32- or 64-bit words used with atomic
 *   instructions, so they work across processes. A held lock records its
 *   holder's thread id; a waiter takes over the lock of a holder that died
 *   and never waits without a bound (bpfhook/shm_sync.hpp). The directory
 *   lock (`lock`) holds the tid of the writer, 0 when free; bh_region_add_map
 *   waits at most about a second for a live holder, then fails with -EBUSY
 *   (-EDEADLK if the holder is the calling thread).
 * - `ncpus` is the number of possible CPUs when the region was created;
 *   per-CPU maps are laid out for that many CPUs in every process.
 * - A reader refuses an object whose magic, layout_version or size it does
 *   not recognise (-EPROTO), so a version mismatch between a controller and
 *   an agent shows up at open, not as corruption. It also refuses an object
 *   that another user owns (-EPERM) or that group or others may access
 *   (-EACCES): the region holds code-visible data, so only its owner may
 *   map it.
 * - Nothing read from the object is trusted after that: the geometry
 *   (directory offset and capacity, data offset, ncpus) is validated at open
 *   and kept in the process's handle, dir_count is never used past the
 *   capacity, a descriptor's storage range is checked against the size
 *   before a map is opened (bh_region_check_directory, bh_map_open).
 * - Names are /bpfhook-<pid>-<16 random hex digits> unless the caller gives
 *   one, so another user cannot take a name in advance; creation retries a
 *   fresh random name when one exists.
 * - A region whose creator died without closing it (killed by a signal) is
 *   found by bh_region_clean_stale: creator pid gone, or alive with another
 *   start time (the pid was reused).
 *
 * C API life: bh_region_create (the owner; unlinks the name at close) or
 * bh_region_open (another mapping, any process), then bh_region_close. Maps
 * opened on a region hold a reference, so the mapping outlives close() until
 * the last map handle is closed; the name disappears at the owner's close.
 * Errors are negative errno values.
 */
#ifndef BPFHOOK_REGION_H
#define BPFHOOK_REGION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_REGION_MAGIC 0x4e4f494745524842ULL /* "BHREGION" in memory order */
#define BH_REGION_LAYOUT_VERSION 3u
#define BH_REGION_HEADER_BYTES 4096u
#define BH_REGION_NAME_MAX 64u /* map names: up to 63 bytes + NUL */
#define BH_REGION_DEFAULT_SIZE (64ull << 20)
#define BH_REGION_DEFAULT_MAX_MAPS 256u
#define BH_REGION_MAX_MAPS_LIMIT 65536u
/* Names bh_region_create makes, and what bh_region_clean_stale looks for. */
#define BH_REGION_NAME_PREFIX "/bpfhook-"

/* bh_region_map_desc.state */
#define BH_REGION_MAP_UNUSED 0u
#define BH_REGION_MAP_LIVE 1u
#define BH_REGION_MAP_DEAD 2u /* freed; the entry may be reused */

typedef struct bh_region_header {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_size; /* sizeof(bh_region_header) of the writer */
  uint64_t size;        /* bytes in the object */
  uint64_t generation;  /* bumped on every directory change */
  uint32_t ncpus;       /* possible CPUs at creation */
  uint32_t creator_pid;
  uint64_t dir_offset; /* first bh_region_map_desc */
  uint32_t dir_capacity;
  uint32_t dir_count;   /* entries ever used, live or dead (acquire to read) */
  uint32_t desc_size;   /* sizeof(bh_region_map_desc) */
  uint32_t lock;        /* directory writers and the free list; 0 free, else the holder's tid */
  uint64_t data_offset; /* start of the data area */
  uint64_t alloc_next;  /* bump cursor: next free offset */
  /* Layout version 2: */
  uint64_t creator_start; /* creator's start time: /proc/<pid>/stat field 22 */
  uint64_t creator_pidns; /* inode of the creator's /proc/self/ns/pid (0 unknown) */
  uint64_t free_head;     /* first free block (offset), 0 = none */
  uint64_t free_bytes;    /* bytes in free blocks */
  uint32_t live_maps;     /* entries in state LIVE */
  uint32_t reserved0;
  /* Layout version 3: */
  uint64_t agent_off;    /* the agent area (bpfhook/agent_area.h), 0 = none */
  uint64_t agent_size;   /* its bytes (the area struct and its tables) */
  uint64_t reserved[17]; /* zero; later versions add tables here */
} bh_region_header;

typedef struct bh_region_map_desc {
  char name[BH_REGION_NAME_MAX];
  uint32_t type; /* kernel map type id */
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
  uint32_t map_flags;
  uint32_t index; /* this entry's position */
  uint32_t state; /* BH_REGION_MAP_LIVE / _DEAD (UNUSED: never used) */
  uint32_t gen;   /* changes when the entry is freed or reused */
  uint64_t map_extra;
  uint64_t storage_off; /* the map's storage block */
  uint64_t storage_size;
  uint8_t reserved[136]; /* pads the entry to 256 bytes */
} bh_region_map_desc;

typedef struct bh_region bh_region;

/* Options for bh_region_create. `sz` first, as libbpf's option structs do: a
 * field is read only if `sz` covers it, and unknown non-zero bytes past the
 * known fields are rejected (-EINVAL). NULL means all defaults. */
typedef struct bh_region_opts {
  size_t sz;
  uint64_t size;     /* bytes; 0 = BH_REGION_DEFAULT_SIZE; rounded up to a page */
  uint32_t max_maps; /* directory capacity; 0 = BH_REGION_DEFAULT_MAX_MAPS */
  uint32_t mode;     /* permission bits; 0 = 0600; group/other bits: -EINVAL */
} bh_region_opts;

/* Creates the object `name` ("/bpfhook-..."; a leading '/' and no other) with
 * O_EXCL and maps it. -EEXIST if the name exists, -EINVAL for a bad name or
 * options. `name` NULL: an unpredictable name, BH_REGION_NAME_PREFIX<pid>-<16
 * hex digits from getrandom>, retried with a fresh one (up to 16 times) when
 * it exists. The caller owns the name: close unlinks it. */
int bh_region_create(const char *name, const bh_region_opts *opts, bh_region **out);
/* Maps an existing object by name (another process or a second mapping in
 * this one, at whatever address). -ENOENT if missing, -EPERM if another user
 * owns it, -EACCES if its mode grants group or others any access, -EPROTO if
 * the header is not a layout this build understands. */
int bh_region_open(const char *name, bh_region **out);
/* Drops the caller's reference; the owner's close also unlinks the name.
 * The mapping goes away with the last reference (maps hold one each). */
void bh_region_close(bh_region *r);

/* References for objects that live inside the region (map handles). */
void bh_region_ref(bh_region *r);
void bh_region_unref(bh_region *r);

void *bh_region_base(const bh_region *r);
uint64_t bh_region_size(const bh_region *r);
const char *bh_region_name(const bh_region *r);
int bh_region_is_owner(const bh_region *r);
uint32_t bh_region_ncpus(const bh_region *r);
uint64_t bh_region_generation(const bh_region *r);
/* Bytes in use: header, directory and allocated blocks (the bump cursor
 * less the free list). */
uint64_t bh_region_used(const bh_region *r);
/* Bytes on the free list. */
uint64_t bh_region_free_bytes(const bh_region *r);
/* Entries in state LIVE. */
uint32_t bh_region_live_maps(const bh_region *r);

/* Bump allocation inside the data area: `align` a power of two (0 = 64). The
 * block is zero (the object starts zeroed and the cursor only moves back over
 * zeroed blocks). Writes the block's offset to *off. -ENOMEM when it does not
 * fit. Safe from any thread of any process, without the lock. (Maps allocate
 * through bh_region_add_map, which also reuses freed blocks.) */
int bh_region_alloc(bh_region *r, uint64_t size, uint64_t align, uint64_t *off);
/* Offset <-> address in this process's mapping. */
void *bh_region_at(const bh_region *r, uint64_t off);
uint64_t bh_region_offset_of(const bh_region *r, const void *addr);

/* Directory. */
/* Entries ever used (live or dead): the bound for iterating indexes. */
uint32_t bh_region_map_count(const bh_region *r);
uint32_t bh_region_map_capacity(const bh_region *r);
/* The entry `index` in place (any state), or NULL past the count. Its fields
 * may change under the caller once the map is freed; prefer
 * bh_region_map_read. */
const bh_region_map_desc *bh_region_map_at(const bh_region *r, uint32_t index);
/* A consistent copy of entry `index` if it holds a live map: 0, or -ENOENT
 * (past the count, never used, or freed). */
int bh_region_map_read(const bh_region *r, uint32_t index, bh_region_map_desc *out);
/* Index of the live map called `name`, or -ENOENT. */
int bh_region_find_map(const bh_region *r, const char *name);
/* 0, or -EPROTO when the directory is corrupt: dir_count past dir_capacity
 * (the count above is then clamped to the capacity), or an entry whose
 * storage is outside the data area. The directory's geometry (offset,
 * capacity, ncpus) is read once, when the region is mapped, and validated
 * then; later changes to those header fields are ignored. */
int bh_region_check_directory(const bh_region *r);

/* Adds a map under the directory lock: checks that the name is free among
 * live maps (-EEXIST; empty names are anonymous and never clash), takes a
 * dead entry or a new one (-ENOSPC when the directory is full), allocates
 * `storage_size` bytes aligned to `align` (first fit on the free list, then
 * the bump cursor; -ENOMEM), calls init(cookie, block, offset) to lay out
 * the (zeroed) storage before anyone can see it (a negative return aborts
 * and is passed on; the block goes back), then publishes the entry
 * (desc->storage_off, storage_size, index, state and gen are filled in here)
 * and bumps generation. Writes the new index to *index. */
typedef int (*bh_region_init_fn)(void *cookie, void *block, uint64_t off);
int bh_region_add_map(bh_region *r, const bh_region_map_desc *desc, uint64_t storage_size, uint64_t align,
                      bh_region_init_fn init, void *cookie, uint32_t *index);

/* Frees the live map at `index` whose entry has generation `gen` (what
 * bh_region_map_read gave): the entry turns dead and its storage is zeroed
 * and reused. -ENOENT if that map is no longer there (freed already, or the
 * entry reused). Handles still open on it, in any process, see freed memory:
 * callers free a map only when nothing uses it (see bh_region_map_hold). */
int bh_region_free_map(bh_region *r, uint32_t index, uint32_t gen);

/* Process-local handle counts, for freeing a map with its creator's last
 * handle (maps.h does this for handles of maps made with free-on-close).
 * hold: -ENOENT if (index, gen) is not a live map. release: drops one; when
 * the count reaches zero and the map was marked with
 * bh_region_map_free_on_release, frees it. Counts are per bh_region (per
 * mapping), not per process: a second mapping of the same region in one
 * process keeps its own. */
int bh_region_map_hold(bh_region *r, uint32_t index, uint32_t gen);
void bh_region_map_release(bh_region *r, uint32_t index, uint32_t gen);
void bh_region_map_free_on_release(bh_region *r, uint32_t index, uint32_t gen);

/* Removes regions left by dead processes: scans /dev/shm for names with our
 * prefix, skips objects not owned by our uid, not regular files, not valid
 * region headers, or created in another pid namespace, and unlinks those
 * whose creator is gone (no such pid, or a pid whose start time differs from
 * the recorded one). A live creator's region is never removed; layout 1
 * regions (no start time) only when their pid is gone. Calls
 * removed(cookie, name, pid) for each name unlinked (may be NULL). Returns
 * the number removed, or a negative errno if /dev/shm cannot be read. */
typedef void (*bh_region_removed_fn)(void *cookie, const char *name, uint32_t creator_pid);
int bh_region_clean_stale(bh_region_removed_fn removed, void *cookie);
/* The same, sparing the `nkeep` names in `keep` ("/bpfhook-..."): the
 * automatic clean-up keeps regions of dead controllers whose agents still run
 * (their maps are still written, and `bpfhook maps -p` reads them). */
int bh_region_clean_stale_except(const char *const *keep, size_t nkeep, bh_region_removed_fn removed, void *cookie);

/* Number of possible CPUs on this machine (/sys/devices/system/cpu/possible,
 * as libbpf counts them), cached after the first call. */
uint32_t bh_possible_cpus(void);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_REGION_H */
