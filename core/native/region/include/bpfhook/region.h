/* bpfhook's shared region: one named POSIX shared-memory object holding what
 * a controller and a target process share (maps in layout version 2;
 * programs and attachment records come later). Embedded mode uses one too, so
 * that both modes run the same code and the agent of a later issue only has
 * to open the region by name.
 *
 * LAYOUT (version 2: version 1 plus locks that hold their owner's tid)
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
 *                         that serialises directory writers
 *   dir_offset (4096)   map directory: dir_capacity x bh_region_map_desc
 *                         (256 bytes each): name, type, key/value size,
 *                         max_entries, flags, map_extra, and the offset and
 *                         size of the map's storage block
 *   data_offset         data area, page aligned, bump-allocated
 *   (page aligned)        each map's storage is one block (64-byte aligned,
 *                         4096 for ring buffers) that begins with a map
 *                         header; its inner layout is in maps.h
 *   size                end of the object
 *
 * Rules every process follows:
 * - Directory entries [0, dir_count) are published and immutable. A writer
 *   fills entry dir_count completely, then stores dir_count + 1 with release
 *   ordering and bumps generation; readers load dir_count with acquire. So a
 *   reader never needs the lock, and a later process can poll `generation`
 *   to notice new maps.
 * - The allocator only moves forward (no free in this version): a block once
 *   handed out stays valid for the life of the object. Running past `size`
 *   fails with -ENOMEM and changes nothing.
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
 *   an agent shows up at open, not as corruption.
 * - Nothing read from the object is trusted after that: the geometry
 *   (directory offset and capacity, data offset, ncpus) is validated at open
 *   and kept in the process's handle, dir_count is never used past the
 *   capacity, a descriptor's storage range is checked against the size
 *   before a map is opened (bh_region_check_directory, bh_map_open).
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
#define BH_REGION_LAYOUT_VERSION 2u
#define BH_REGION_HEADER_BYTES 4096u
#define BH_REGION_NAME_MAX 64u /* map names: up to 63 bytes + NUL */
#define BH_REGION_DEFAULT_SIZE (64ull << 20)
#define BH_REGION_DEFAULT_MAX_MAPS 256u

typedef struct bh_region_header {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_size;    /* sizeof(bh_region_header) of the writer */
  uint64_t size;           /* bytes in the object */
  uint64_t generation;     /* bumped on every directory change */
  uint32_t ncpus;          /* possible CPUs at creation */
  uint32_t creator_pid;
  uint64_t dir_offset;     /* first bh_region_map_desc */
  uint32_t dir_capacity;
  uint32_t dir_count;      /* published entries (acquire to read) */
  uint32_t desc_size;      /* sizeof(bh_region_map_desc) */
  uint32_t lock;           /* directory writers; 0 free, else the holder's tid */
  uint64_t data_offset;    /* start of the data area */
  uint64_t alloc_next;     /* bump cursor: next free offset */
  uint64_t reserved[24];   /* zero; later versions add tables here */
} bh_region_header;

typedef struct bh_region_map_desc {
  char name[BH_REGION_NAME_MAX];
  uint32_t type;           /* kernel map type id */
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
  uint32_t map_flags;
  uint32_t index;          /* this entry's position */
  uint32_t state;          /* 1 = live (version 1 never removes maps) */
  uint32_t reserved0;
  uint64_t map_extra;
  uint64_t storage_off;    /* the map's storage block */
  uint64_t storage_size;
  uint8_t reserved[136];   /* pads the entry to 256 bytes */
} bh_region_map_desc;

typedef struct bh_region bh_region;

/* Options for bh_region_create. `sz` first, as libbpf's option structs do: a
 * field is read only if `sz` covers it, and unknown non-zero bytes past the
 * known fields are rejected (-EINVAL). NULL means all defaults. */
typedef struct bh_region_opts {
  size_t sz;
  uint64_t size;           /* bytes; 0 = BH_REGION_DEFAULT_SIZE; rounded up to a page */
  uint32_t max_maps;       /* directory capacity; 0 = BH_REGION_DEFAULT_MAX_MAPS */
  uint32_t mode;           /* permission bits; 0 = 0600 */
} bh_region_opts;

/* Creates the object `name` ("/bpfhook-..."; a leading '/' and no other) with
 * O_EXCL and maps it. -EEXIST if the name exists, -EINVAL for a bad name or
 * options. The caller owns the name: close unlinks it. */
int bh_region_create(const char *name, const bh_region_opts *opts, bh_region **out);
/* Maps an existing object by name (another process or a second mapping in
 * this one, at whatever address). -ENOENT if missing, -EPROTO if the header
 * is not a layout this build understands. */
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
/* Bytes handed out by the allocator so far, header and directory included. */
uint64_t bh_region_used(const bh_region *r);

/* Bump allocation inside the data area: `align` a power of two (0 = 64). The
 * block is zero (the object starts zeroed and blocks are never reused).
 * Writes the block's offset to *off. -ENOMEM when it does not fit. Safe from
 * any thread of any process. */
int bh_region_alloc(bh_region *r, uint64_t size, uint64_t align, uint64_t *off);
/* Offset <-> address in this process's mapping. */
void *bh_region_at(const bh_region *r, uint64_t off);
uint64_t bh_region_offset_of(const bh_region *r, const void *addr);

/* Directory. */
uint32_t bh_region_map_count(const bh_region *r);
uint32_t bh_region_map_capacity(const bh_region *r);
/* The published entry `index`, or NULL past the count. */
const bh_region_map_desc *bh_region_map_at(const bh_region *r, uint32_t index);
/* Index of the map called `name`, or -ENOENT. */
int bh_region_find_map(const bh_region *r, const char *name);
/* 0, or -EPROTO when the directory is corrupt: dir_count past dir_capacity
 * (the count above is then clamped to the capacity), or an entry whose
 * storage is outside the data area. The directory's geometry (offset,
 * capacity, ncpus) is read once, when the region is mapped, and validated
 * then; later changes to those header fields are ignored. */
int bh_region_check_directory(const bh_region *r);

/* Adds a map under the directory lock: checks that the name is free
 * (-EEXIST; empty names are anonymous and never clash), that the directory
 * has room (-ENOSPC), allocates `storage_size` bytes aligned to `align`
 * (-ENOMEM), calls init(cookie, block, offset) to lay out the storage before
 * anyone can see it (a negative return aborts and is passed on; the block
 * stays allocated), then publishes the entry (desc->storage_off,
 * storage_size, index and state are filled in here) and bumps generation.
 * Writes the new index to *index. */
typedef int (*bh_region_init_fn)(void *cookie, void *block, uint64_t off);
int bh_region_add_map(bh_region *r, const bh_region_map_desc *desc, uint64_t storage_size, uint64_t align,
                      bh_region_init_fn init, void *cookie, uint32_t *index);

/* Number of possible CPUs on this machine (/sys/devices/system/cpu/possible,
 * as libbpf counts them), cached after the first call. */
uint32_t bh_possible_cpus(void);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_REGION_H */
