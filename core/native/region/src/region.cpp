// The shared region: creation, opening, the bump allocator and the map
// directory. Layout and rules are documented at the top of region.h.
#include "bpfhook/region.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <set>

#include "bpfhook/shm_sync.hpp"

static_assert(sizeof(bh_region_header) <= BH_REGION_HEADER_BYTES, "header must fit its page");
static_assert(sizeof(bh_region_map_desc) == 256, "directory entries are 256 bytes");
static_assert(offsetof(bh_region_header, reserved) + sizeof(uint64_t) * 17 == 272,
              "layouts 2 and 3 took their fields from the reserved space: the header keeps its size");

namespace bpfhook::region {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint32_t kMaxMapsLimit = BH_REGION_MAX_MAPS_LIMIT;
constexpr uint32_t kMaxCpus = 65536;  // per-CPU layouts multiply by ncpus: keep it sane
// Storage blocks are multiples of this, at offsets that are multiples of it,
// so that any piece of a free block can hold a FreeNode.
constexpr uint64_t kBlock = 64;
// How many random names create_unique tries before giving up with -EEXIST.
constexpr int kNameTries = 16;

// The head of a free storage block; the rest of the block is zero.
struct FreeNode {
  uint64_t next;  // offset of the next free block (higher offset), 0 = none
  uint64_t size;
};

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// POSIX leaves names other than "/x" implementation-defined; glibc maps them
// to /dev/shm/x, so a second '/' would name a subdirectory.
bool valid_name(const std::string &name) {
  if (name.size() < 2 || name.size() > 255 || name[0] != '/') return false;
  return name.find('/', 1) == std::string::npos;
}

uint64_t dir_bytes(uint32_t capacity) { return align_up(uint64_t(capacity) * sizeof(bh_region_map_desc), kPage); }

// A process's start time (/proc/<pid>/stat field 22, clock ticks since boot)
// and state (field 3). -ENOENT when there is no such process. The command
// name (field 2) may contain spaces and ')', so fields are counted from the
// last ')'.
int proc_stat(pid_t pid, uint64_t *start, char *state) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int err = errno;
  close(fd);
  if (n <= 0) return n < 0 && err == ESRCH ? -ENOENT : -EIO;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (p == nullptr) return -EIO;
  int field = 2;
  char *save = nullptr;
  for (char *tok = strtok_r(p + 1, " ", &save); tok != nullptr; tok = strtok_r(nullptr, " ", &save)) {
    field++;
    if (field == 3 && state != nullptr) *state = tok[0];
    if (field == 22) {
      *start = strtoull(tok, nullptr, 10);
      return 0;
    }
  }
  return -EIO;
}

// The inode of a pid namespace: pids are only comparable within one.
uint64_t pid_namespace(const char *proc_entry) {
  struct stat st;
  return stat(proc_entry, &st) == 0 ? uint64_t(st.st_ino) : 0;
}

}  // namespace

// For bh_region_clean_stale below (outside this namespace).
int proc_stat_for_clean(pid_t pid, uint64_t *start, char *state) { return proc_stat(pid, start, state); }
uint64_t pid_namespace_for_clean(const char *proc_entry) { return pid_namespace(proc_entry); }

int Region::create(const std::string &name, const bh_region_opts &opts, std::unique_ptr<Region> &out) {
  if (!valid_name(name)) return -EINVAL;
  uint32_t max_maps = opts.max_maps ? opts.max_maps : BH_REGION_DEFAULT_MAX_MAPS;
  if (max_maps > kMaxMapsLimit) return -EINVAL;
  uint64_t data_offset = BH_REGION_HEADER_BYTES + dir_bytes(max_maps);
  uint64_t size = align_up(opts.size ? opts.size : BH_REGION_DEFAULT_SIZE, kPage);
  if (size < data_offset + kPage) return -EINVAL;
  // open() refuses objects that group or others may access, so refuse to make one.
  if ((opts.mode & ~0700u) != 0) return -EINVAL;
  mode_t mode = opts.mode ? mode_t(opts.mode) : 0600;

  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return -errno;
  // From here on a failure must remove the half-made object again.
  auto fail = [&](int err) {
    shm_unlink(name.c_str());
    close(fd);
    return -err;
  };
  if (ftruncate(fd, off_t(size)) != 0) return fail(errno);
  void *mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) return fail(errno);

  // A new object is all zero (ftruncate of a fresh file), so only non-zero
  // fields are written. The magic goes last, with release: an opener that
  // sees it sees a complete header.
  auto *h = static_cast<bh_region_header *>(mem);
  h->layout_version = BH_REGION_LAYOUT_VERSION;
  h->header_size = sizeof(bh_region_header);
  h->size = size;
  h->ncpus = bh_possible_cpus();
  h->creator_pid = uint32_t(getpid());
  // With the pid, the start time tells a dead creator from a reused pid.
  uint64_t start = 0;
  if (proc_stat(getpid(), &start, nullptr) == 0) h->creator_start = start;
  h->creator_pidns = pid_namespace("/proc/self/ns/pid");
  h->dir_offset = BH_REGION_HEADER_BYTES;
  h->dir_capacity = max_maps;
  h->desc_size = sizeof(bh_region_map_desc);
  h->data_offset = data_offset;
  h->alloc_next = data_offset;
  shm::store_release(&h->magic, uint64_t(BH_REGION_MAGIC));

  out.reset(new Region(name, fd, static_cast<uint8_t *>(mem), size, true));
  out->cache_geometry();
  return 0;
}

int Region::create_unique(const bh_region_opts &opts, std::unique_ptr<Region> &out) {
  // A predictable name would let another user create it first (to make us
  // fail, or, with a permissive mode, to hand us their memory).
  for (int i = 0; i < kNameTries; i++) {
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != ssize_t(sizeof rnd)) return errno != 0 ? -errno : -EIO;
    char name[64];
    snprintf(name, sizeof name, BH_REGION_NAME_PREFIX "%d-%016" PRIx64, int(getpid()), rnd);
    int err = create(name, opts, out);
    if (err != -EEXIST) return err;
  }
  return -EEXIST;
}

int Region::open(const std::string &name, std::unique_ptr<Region> &out) {
  if (!valid_name(name)) return -EINVAL;
  int fd = shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  // Only our own, private objects: another user's region could feed us
  // crafted maps, and one others can write could be changed under us.
  if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    close(fd);
    return st.st_uid != geteuid() ? -EPERM : -EACCES;
  }
  uint64_t size = uint64_t(st.st_size);
  // Size 0 means the creator has not truncated it yet: worth a retry.
  if (size == 0) {
    close(fd);
    return -EAGAIN;
  }
  if (size < BH_REGION_HEADER_BYTES + kPage) {
    close(fd);
    return -EPROTO;
  }
  void *mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) {
    int err = errno;
    close(fd);
    return -err;
  }
  auto *h = static_cast<const bh_region_header *>(mem);
  uint64_t magic = shm::load_acquire(&h->magic);
  int err = 0;
  if (magic == 0) {
    err = -EAGAIN;  // created, header not written yet
  } else if (magic != BH_REGION_MAGIC || h->layout_version != BH_REGION_LAYOUT_VERSION ||
             h->header_size < sizeof(bh_region_header) || h->size != size ||
             h->desc_size != sizeof(bh_region_map_desc) || h->dir_offset < BH_REGION_HEADER_BYTES ||
             h->dir_capacity > kMaxMapsLimit || h->dir_offset > size ||
             h->dir_offset + uint64_t(h->dir_capacity) * sizeof(bh_region_map_desc) > h->data_offset ||
             h->data_offset > size || h->ncpus == 0 || h->ncpus > kMaxCpus ||
             shm::load_acquire(&h->dir_count) > h->dir_capacity) {
    err = -EPROTO;
  }
  if (err != 0) {
    munmap(mem, size);
    close(fd);
    return err;
  }
  out.reset(new Region(name, fd, static_cast<uint8_t *>(mem), size, false));
  out->cache_geometry();
  return 0;
}

// Called once the header passed the checks above (or was just written).
void Region::cache_geometry() {
  const bh_region_header *h = header();
  dir_offset_ = h->dir_offset;
  data_offset_ = h->data_offset;
  dir_capacity_ = h->dir_capacity;
  ncpus_ = h->ncpus;
}

Region::~Region() {
  if (owner_) unlink();
  munmap(base_, size_);
  close(fd_);
}

void Region::unlink() {
  if (!owner_ || unlinked_) return;
  shm_unlink(name_.c_str());
  unlinked_ = true;
}

int Region::alloc(uint64_t size, uint64_t align, uint64_t *off) { return alloc(size, align, off, nullptr); }

int Region::alloc(uint64_t size, uint64_t align, uint64_t *off, uint64_t *cursor_before) {
  if (align == 0) align = 64;
  if ((align & (align - 1)) != 0) return -EINVAL;
  bh_region_header *h = header();
  uint64_t cur = shm::load_relaxed(&h->alloc_next);
  // A cursor moved back into the header or directory is corrupt.
  if (cur < data_offset_) return -EPROTO;
  for (;;) {
    uint64_t start = align_up(cur, align);
    if (start < cur || size > size_ || start > size_ - size) return -ENOMEM;
    if (shm::cas(&h->alloc_next, cur, start + size)) {
      *off = start;
      if (cursor_before != nullptr) *cursor_before = cur;
      return 0;
    }
  }
}

uint64_t Region::used() const {
  const bh_region_header *h = header();
  return shm::load_relaxed(&h->alloc_next) - shm::load_relaxed(&h->free_bytes);
}

// ---- the free list (all under the directory lock) ----

// First fit: the first block (lowest offset) with room for `size` bytes at
// `align`; the pieces before and after the taken part go back on the list.
// -ENOMEM when no block fits, -EPROTO when the list is not well formed.
int Region::alloc_from_free_list(uint64_t size, uint64_t align, uint64_t *off) {
  bh_region_header *h = header();
  const uint64_t max_steps = size_ / kBlock;
  uint64_t prev = 0;
  uint64_t cur = h->free_head;
  for (uint64_t steps = 0; cur != 0; steps++) {
    if (steps > max_steps || cur % kBlock != 0 || cur < data_offset_ || cur > size_ - sizeof(FreeNode)) {
      return -EPROTO;
    }
    auto *node = reinterpret_cast<FreeNode *>(base_ + cur);
    uint64_t bsize = node->size;
    uint64_t next = node->next;
    if (bsize < kBlock || bsize % kBlock != 0 || bsize > size_ - cur) return -EPROTO;
    uint64_t start = align_up(cur, align);
    if (start - cur <= bsize && size <= bsize - (start - cur)) {
      if (prev == 0) {
        h->free_head = next;
      } else {
        reinterpret_cast<FreeNode *>(base_ + prev)->next = next;
      }
      h->free_bytes -= bsize;
      memset(node, 0, sizeof *node);  // the block is now all zero
      if (start > cur) insert_free(cur, start - cur);
      uint64_t end = start + size;
      if (end < cur + bsize) insert_free(end, cur + bsize - end);
      *off = start;
      return 0;
    }
    prev = cur;
    cur = next;
  }
  return -ENOMEM;
}

// Puts a zeroed block on the list, in offset order, merged with a neighbour
// that touches it (whose node header is then zeroed, as the merged block's
// interior must be).
int Region::insert_free(uint64_t off, uint64_t size) {
  bh_region_header *h = header();
  const uint64_t max_steps = size_ / kBlock;
  uint64_t prev = 0;
  uint64_t cur = h->free_head;
  for (uint64_t steps = 0; cur != 0 && cur < off; steps++) {
    if (steps > max_steps || cur > size_ - sizeof(FreeNode)) return -EPROTO;
    prev = cur;
    cur = reinterpret_cast<FreeNode *>(base_ + cur)->next;
  }
  h->free_bytes += size;
  uint64_t next = cur;
  uint64_t merged = size;
  if (next != 0 && off + size == next && next <= size_ - sizeof(FreeNode)) {
    auto *nn = reinterpret_cast<FreeNode *>(base_ + next);
    merged += nn->size;
    next = nn->next;
    memset(nn, 0, sizeof *nn);
  }
  auto *pn = prev != 0 ? reinterpret_cast<FreeNode *>(base_ + prev) : nullptr;
  if (pn != nullptr && prev + pn->size == off) {
    pn->size += merged;
    pn->next = next;
  } else {
    auto *node = reinterpret_cast<FreeNode *>(base_ + off);
    node->next = next;
    node->size = merged;
    if (pn == nullptr) {
      h->free_head = off;
    } else {
      pn->next = off;
    }
  }
  return 0;
}

// Zero a freed block: whole pages by punching a hole in the object (the
// memory goes back to the system and reads as zero in every mapping), the
// partial pages at either end with memset.
void Region::zero_block(uint64_t off, uint64_t size) {
  uint64_t end = off + size;
  uint64_t first = align_up(off, kPage);
  uint64_t last = end & ~(kPage - 1);
  if (first < last &&
      fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(first), off_t(last - first)) == 0) {
    memset(base_ + off, 0, first - off);
    memset(base_ + last, 0, end - last);
    return;
  }
  memset(base_ + off, 0, size);
}

// Hands a zeroed block back: onto the list, and if the list's last block
// now ends at the bump cursor, the cursor moves back over it instead (a CAS,
// since bh_region_alloc bumps without the lock; if one got in first, the
// block simply stays listed).
void Region::return_block(uint64_t off, uint64_t size) {
  bh_region_header *h = header();
  if (insert_free(off, size) != 0) return;
  const uint64_t max_steps = size_ / kBlock;
  uint64_t prev = 0;
  uint64_t cur = h->free_head;
  for (uint64_t steps = 0; cur != 0; steps++) {
    if (steps > max_steps || cur > size_ - sizeof(FreeNode)) return;
    auto *node = reinterpret_cast<FreeNode *>(base_ + cur);
    if (node->next == 0) break;
    prev = cur;
    cur = node->next;
  }
  if (cur == 0) return;
  auto *node = reinterpret_cast<FreeNode *>(base_ + cur);
  uint64_t end = cur + node->size;
  if (!shm::cas(&h->alloc_next, end, cur)) return;
  if (prev == 0) {
    h->free_head = 0;
  } else {
    reinterpret_cast<FreeNode *>(base_ + prev)->next = 0;
  }
  h->free_bytes -= node->size;
  memset(node, 0, sizeof *node);
}

// ---- the directory ----

// Never past the capacity this mapping validated, whatever the shared count
// says (check_directory reports a count beyond it).
uint32_t Region::map_count() const {
  uint32_t n = shm::load_acquire(&header()->dir_count);
  return n <= dir_capacity_ ? n : dir_capacity_;
}

const bh_region_map_desc *Region::map_at(uint32_t index) const {
  if (index >= map_count()) return nullptr;
  return reinterpret_cast<const bh_region_map_desc *>(base_ + dir_offset_) + index;
}

int Region::check_directory() const {
  if (shm::load_acquire(&header()->dir_count) > dir_capacity_) return -EPROTO;
  uint32_t n = map_count();
  for (uint32_t i = 0; i < n; i++) {
    const bh_region_map_desc *d = map_at(i);
    uint64_t off = shm::load_relaxed(&d->storage_off);
    uint64_t len = shm::load_relaxed(&d->storage_size);
    if (off < data_offset_ || off > size_ || len > size_ - off) return -EPROTO;
  }
  return 0;
}

// Lock-free consistent read of a live entry: gen, then state (acquire, which
// orders the field reads after it), copy, then both again. A free or reuse
// in between changes one of them, and the copy is thrown away.
int Region::read_map(uint32_t index, bh_region_map_desc *out) const {
  const bh_region_map_desc *d = map_at(index);
  if (d == nullptr) return -ENOENT;
  for (int tries = 0; tries < 1000; tries++) {
    uint32_t gen = shm::load_acquire(&d->gen);
    if (shm::load_acquire(&d->state) != BH_REGION_MAP_LIVE) return -ENOENT;
    memcpy(out, d, sizeof *out);
    shm::fence_acquire();
    if (shm::load_relaxed(&d->gen) == gen && shm::load_relaxed(&d->state) == BH_REGION_MAP_LIVE) {
      out->gen = gen;
      out->state = BH_REGION_MAP_LIVE;
      out->index = index;
      return 0;
    }
    shm::cpu_relax();
  }
  return -EAGAIN;
}

int Region::find_map(const char *name) const {
  if (name == nullptr || name[0] == '\0') return -ENOENT;
  uint32_t n = map_count();
  bh_region_map_desc d;
  for (uint32_t i = 0; i < n; i++) {
    if (read_map(i, &d) != 0) continue;
    if (strncmp(d.name, name, BH_REGION_NAME_MAX) == 0) return int(i);
  }
  return -ENOENT;
}

int Region::add_map(const bh_region_map_desc &desc, uint64_t storage_size, uint64_t align, bh_region_init_fn init,
                    void *cookie, uint32_t *index) {
  if (memchr(desc.name, '\0', BH_REGION_NAME_MAX) == nullptr) return -EINVAL;
  if (align == 0) align = kBlock;
  if ((align & (align - 1)) != 0) return -EINVAL;
  if (align < kBlock) align = kBlock;
  uint64_t block = align_up(storage_size, kBlock);
  if (block < storage_size || block > size_) return -ENOMEM;
  bh_region_header *h = header();
  // User-space wait, bounded; a holder that died is taken over. What a dead
  // holder can leave: an allocated block never published (leaked space) and
  // a half-written entry past dir_count, which this writer overwrites.
  shm::SpinGuard guard(&h->lock, shm::Wait::kUser);
  if (!guard.ok()) return guard.result();
  uint32_t count = shm::load_relaxed(&h->dir_count);
  if (desc.name[0] != '\0' && find_map(desc.name) >= 0) return -EEXIST;
  // A dead entry first, so that maps coming and going never fill the directory.
  // The count is another process's word: never past the capacity validated at open.
  if (count > dir_capacity_) return -EPROTO;
  auto *dir = reinterpret_cast<bh_region_map_desc *>(base_ + dir_offset_);
  uint32_t slot_index = count;
  for (uint32_t i = 0; i < count; i++) {
    if (shm::load_relaxed(&dir[i].state) == BH_REGION_MAP_DEAD) {
      slot_index = i;
      break;
    }
  }
  if (slot_index == count && count >= dir_capacity_) return -ENOSPC;
  uint64_t off = 0;
  int err = alloc_from_free_list(block, align, &off);
  if (err == -ENOMEM) {
    uint64_t before = 0;
    err = alloc(block, align, &off, &before);
    // The padding an aligned bump skipped is zero and unused: list it. (From
    // the cursor this bump moved, not an earlier read: bh_region_alloc may
    // bump concurrently without the lock.)
    uint64_t gap = align_up(before, kBlock);
    if (err == 0 && off > gap && before >= data_offset_) insert_free(gap, off - gap);
  }
  if (err != 0) return err;
  if (init != nullptr) {
    err = init(cookie, base_ + off, off);
    if (err < 0) {
      zero_block(off, block);
      return_block(off, block);
      return err;
    }
  }
  bh_region_map_desc *slot = dir + slot_index;
  bool reuse = slot_index < count;
  // A reused entry gets a new gen before any field changes, so a reader that
  // copied the old map's fields throws its copy away.
  uint32_t gen = reuse ? shm::load_relaxed(&slot->gen) + 1 : 0;
  shm::store_release(&slot->gen, gen);
  bh_region_map_desc e = desc;
  e.index = slot_index;
  e.storage_off = off;
  e.storage_size = storage_size;
  memcpy(slot, &e, offsetof(bh_region_map_desc, state));
  memcpy(&slot->map_extra, &e.map_extra, sizeof e - offsetof(bh_region_map_desc, map_extra));
  shm::store_release(&slot->state, uint32_t(BH_REGION_MAP_LIVE));
  if (!reuse) shm::store_release(&h->dir_count, count + 1);
  h->live_maps++;
  shm::fetch_add(&h->generation, uint64_t(1));
  *index = slot_index;
  return 0;
}

int Region::free_map(uint32_t index, uint32_t gen) {
  bh_region_header *h = header();
  uint64_t off = 0;
  uint64_t block = 0;
  bool reuse_storage = false;
  {
    // User-space wait (bounded; a dead holder is taken over), as add_map.
    shm::SpinGuard guard(&h->lock, shm::Wait::kUser);
    if (!guard.ok()) return guard.result();
    if (index >= map_count()) return -ENOENT;
    auto *slot = reinterpret_cast<bh_region_map_desc *>(base_ + dir_offset_) + index;
    if (shm::load_relaxed(&slot->state) != BH_REGION_MAP_LIVE || shm::load_relaxed(&slot->gen) != gen) {
      return -ENOENT;
    }
    off = slot->storage_off;
    block = align_up(slot->storage_size, kBlock);
    // A block outside the data area (a corrupt entry) is not put on the list.
    reuse_storage =
        off >= data_offset_ && off % kBlock == 0 && block >= kBlock && block <= size_ && off <= size_ - block;
    shm::store_release(&slot->state, uint32_t(BH_REGION_MAP_DEAD));
    shm::store_release(&slot->gen, gen + 1);
    h->live_maps--;
    shm::fetch_add(&h->generation, uint64_t(1));
  }
  if (!reuse_storage) return 0;
  // Outside the lock: zeroing a large map takes a while, and nobody can
  // reach the block now (the entry is dead, the block is on no list yet).
  zero_block(off, block);
  shm::SpinGuard guard(&h->lock, shm::Wait::kUser);
  // A lock we cannot take leaves the zeroed block unlisted (leaked space),
  // never a list changed without the lock.
  if (guard.ok()) return_block(off, block);
  return 0;
}

}  // namespace bpfhook::region

// ---- C API ----

struct bh_region {
  std::unique_ptr<bpfhook::region::Region> region;
  std::atomic<uint32_t> refs{1};
  // Process-local handle counts per map, keyed by gen << 32 | index, and the
  // maps to free when their count reaches zero (bh_region_map_hold ...).
  std::mutex holds_mu;
  std::map<uint64_t, uint32_t> holds;
  std::set<uint64_t> free_on_release;
};

using bpfhook::region::Region;

extern "C" {

int bh_region_create(const char *name, const bh_region_opts *opts, bh_region **out) {
  if (out == nullptr) return -EINVAL;
  bh_region_opts o{};
  if (opts != nullptr) {
    if (opts->sz < sizeof(size_t)) return -EINVAL;
    size_t n = opts->sz < sizeof(o) ? opts->sz : sizeof(o);
    memcpy(&o, opts, n);
    // A caller built against a newer header may set fields we do not know.
    const auto *bytes = reinterpret_cast<const uint8_t *>(opts);
    for (size_t i = sizeof(o); i < opts->sz; i++) {
      if (bytes[i] != 0) return -EINVAL;
    }
  }
  std::unique_ptr<Region> region;
  int err = name != nullptr ? Region::create(name, o, region) : Region::create_unique(o, region);
  if (err != 0) return err;
  auto *r = new (std::nothrow) bh_region();
  if (r == nullptr) return -ENOMEM;
  r->region = std::move(region);
  *out = r;
  return 0;
}

int bh_region_open(const char *name, bh_region **out) {
  if (name == nullptr || out == nullptr) return -EINVAL;
  std::unique_ptr<Region> region;
  int err = Region::open(name, region);
  if (err != 0) return err;
  auto *r = new (std::nothrow) bh_region();
  if (r == nullptr) return -ENOMEM;
  r->region = std::move(region);
  *out = r;
  return 0;
}

void bh_region_close(bh_region *r) {
  if (r == nullptr) return;
  r->region->unlink();
  bh_region_unref(r);
}

void bh_region_ref(bh_region *r) { r->refs.fetch_add(1, std::memory_order_relaxed); }

void bh_region_unref(bh_region *r) {
  if (r->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete r;
}

void *bh_region_base(const bh_region *r) { return r->region->base(); }
uint64_t bh_region_size(const bh_region *r) { return r->region->size(); }
const char *bh_region_name(const bh_region *r) { return r->region->name().c_str(); }
int bh_region_is_owner(const bh_region *r) { return r->region->owner() ? 1 : 0; }
uint32_t bh_region_ncpus(const bh_region *r) { return r->region->ncpus(); }
uint64_t bh_region_generation(const bh_region *r) {
  return bpfhook::shm::load_acquire(&r->region->header()->generation);
}
uint64_t bh_region_used(const bh_region *r) { return r->region->used(); }
uint64_t bh_region_free_bytes(const bh_region *r) {
  return bpfhook::shm::load_relaxed(&r->region->header()->free_bytes);
}
uint32_t bh_region_live_maps(const bh_region *r) { return bpfhook::shm::load_relaxed(&r->region->header()->live_maps); }

int bh_region_alloc(bh_region *r, uint64_t size, uint64_t align, uint64_t *off) {
  if (r == nullptr || off == nullptr) return -EINVAL;
  return r->region->alloc(size, align, off);
}

void *bh_region_at(const bh_region *r, uint64_t off) {
  return off < r->region->size() ? r->region->base() + off : nullptr;
}

uint64_t bh_region_offset_of(const bh_region *r, const void *addr) {
  return uint64_t(static_cast<const uint8_t *>(addr) - r->region->base());
}

uint32_t bh_region_map_count(const bh_region *r) { return r->region->map_count(); }
uint32_t bh_region_map_capacity(const bh_region *r) { return r->region->dir_capacity(); }
int bh_region_check_directory(const bh_region *r) { return r->region->check_directory(); }
const bh_region_map_desc *bh_region_map_at(const bh_region *r, uint32_t index) { return r->region->map_at(index); }
int bh_region_map_read(const bh_region *r, uint32_t index, bh_region_map_desc *out) {
  if (r == nullptr || out == nullptr) return -EINVAL;
  return r->region->read_map(index, out);
}
int bh_region_find_map(const bh_region *r, const char *name) { return r->region->find_map(name); }

int bh_region_add_map(bh_region *r, const bh_region_map_desc *desc, uint64_t storage_size, uint64_t align,
                      bh_region_init_fn init, void *cookie, uint32_t *index) {
  if (r == nullptr || desc == nullptr || index == nullptr) return -EINVAL;
  return r->region->add_map(*desc, storage_size, align, init, cookie, index);
}

int bh_region_free_map(bh_region *r, uint32_t index, uint32_t gen) {
  if (r == nullptr) return -EINVAL;
  return r->region->free_map(index, gen);
}

static uint64_t hold_key(uint32_t index, uint32_t gen) { return uint64_t(gen) << 32 | index; }

int bh_region_map_hold(bh_region *r, uint32_t index, uint32_t gen) {
  if (r == nullptr) return -EINVAL;
  std::lock_guard<std::mutex> lock(r->holds_mu);
  // Checked under holds_mu: a release that frees the map takes it too, so a
  // hold either sees the map gone or keeps it from being freed.
  bh_region_map_desc d;
  if (r->region->read_map(index, &d) != 0 || d.gen != gen) return -ENOENT;
  r->holds[hold_key(index, gen)]++;
  return 0;
}

void bh_region_map_release(bh_region *r, uint32_t index, uint32_t gen) {
  if (r == nullptr) return;
  std::lock_guard<std::mutex> lock(r->holds_mu);
  uint64_t key = hold_key(index, gen);
  auto it = r->holds.find(key);
  if (it == r->holds.end()) return;
  if (--it->second != 0) return;
  r->holds.erase(it);
  if (r->free_on_release.erase(key) != 0) r->region->free_map(index, gen);
}

void bh_region_map_free_on_release(bh_region *r, uint32_t index, uint32_t gen) {
  if (r == nullptr) return;
  std::lock_guard<std::mutex> lock(r->holds_mu);
  uint64_t key = hold_key(index, gen);
  if (r->holds.count(key) == 0) {
    r->region->free_map(index, gen);  // no handle open: the last one is already gone
    return;
  }
  r->free_on_release.insert(key);
}

namespace {

// Whether the creator recorded in a region header is gone: no such process
// (or a zombie: killed, not yet reaped), or a process with another start
// time (its pid was reused). Layout 1 recorded no start time: only a missing
// pid counts there.
bool creator_gone(const bh_region_header &h) {
  if (h.creator_pid == 0 || h.creator_pid > uint32_t(INT32_MAX)) return false;
  uint64_t start = 0;
  char state = '?';
  int err = bpfhook::region::proc_stat_for_clean(pid_t(h.creator_pid), &start, &state);
  if (err == -ENOENT) return true;
  if (err != 0) return false;
  if (state == 'Z' || state == 'X') return true;
  return h.layout_version >= 2 && start != h.creator_start;
}

// For an object whose header is not a region's (its creator died before
// writing the magic, or a hostile writer overwrote the header): the creator's
// pid from the name (/bpfhook-<pid>-...). Gone only if no such process exists
// and the object has not changed for a while (a live creator may still be
// writing its header). Returns that pid, or 0 (not gone, or no pid in the
// name). A pid from another pid namespace cannot be told apart here, which is
// why only an object that has sat unchanged for a while is judged.
uint32_t named_creator_gone(const char *entry, const struct stat &st) {
  const char *p = entry + strlen(BH_REGION_NAME_PREFIX) - 1;  // after "bpfhook-"
  char *end = nullptr;
  errno = 0;
  unsigned long pid = strtoul(p, &end, 10);
  if (errno != 0 || end == p || *end != '-' || pid == 0 || pid > unsigned(INT32_MAX)) return 0;
  if (time(nullptr) - st.st_mtime < 30) return 0;
  uint64_t start = 0;
  char state = '?';
  return bpfhook::region::proc_stat_for_clean(pid_t(pid), &start, &state) == -ENOENT ? uint32_t(pid) : 0;
}

}  // namespace

int bh_region_clean_stale(bh_region_removed_fn removed, void *cookie) {
  return bh_region_clean_stale_except(nullptr, 0, removed, cookie);
}

int bh_region_clean_stale_except(const char *const *keep, size_t nkeep, bh_region_removed_fn removed, void *cookie) {
  DIR *dir = opendir("/dev/shm");
  if (dir == nullptr) return -errno;
  const char *prefix = BH_REGION_NAME_PREFIX + 1;  // directory entries have no '/'
  const size_t prefix_len = strlen(prefix);
  const uid_t uid = geteuid();
  const uint64_t our_ns = bpfhook::region::pid_namespace_for_clean("/proc/self/ns/pid");
  int removed_count = 0;
  while (struct dirent *e = readdir(dir)) {
    if (strncmp(e->d_name, prefix, prefix_len) != 0) continue;
    // O_NOFOLLOW | O_NONBLOCK: a symlink or a FIFO planted under our prefix
    // is neither followed nor waited on.
    int fd = openat(dirfd(dir), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    bh_region_header h;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == uid &&
              pread(fd, &h, sizeof h, 0) == ssize_t(sizeof h);
    close(fd);
    if (!ok) continue;
    if (h.magic != BH_REGION_MAGIC) {
      // Not (yet) a region: its creator may still be writing it, unless the
      // pid in its name is gone.
      h.creator_pid = named_creator_gone(e->d_name, st);
      if (h.creator_pid == 0) continue;
    } else {
      // Every layout this build has known (1..3): a controller of an older
      // build may have left it.
      if (h.layout_version < 1 || h.layout_version > BH_REGION_LAYOUT_VERSION) continue;
      // Pids of another namespace name other processes here: never judge them.
      if (h.layout_version >= 2 && h.creator_pidns != 0 && our_ns != 0 && h.creator_pidns != our_ns) continue;
      if (!creator_gone(h)) continue;
    }
    std::string name = std::string("/") + e->d_name;
    bool kept = false;
    for (size_t k = 0; k < nkeep && !kept; k++) kept = keep[k] != nullptr && name == keep[k];
    if (kept) continue;
    if (shm_unlink(name.c_str()) == 0) {
      removed_count++;
      if (removed != nullptr) removed(cookie, name.c_str(), h.creator_pid);
    }
  }
  closedir(dir);
  return removed_count;
}

uint32_t bh_possible_cpus(void) {
  static std::atomic<uint32_t> cached{0};
  uint32_t n = cached.load(std::memory_order_relaxed);
  if (n != 0) return n;
  // The file lists ranges ("0-3,8-11"); CPU ids index per-CPU storage, so the
  // count that matters is the highest id + 1, as the kernel's nr_cpu_ids.
  if (FILE *f = fopen("/sys/devices/system/cpu/possible", "re")) {
    char buf[256] = {0};
    if (fgets(buf, sizeof(buf), f) != nullptr) {
      // Digits only: strtol would read the '-' of "0-3" as a sign.
      long hi = -1;
      for (const char *p = buf; *p != '\0';) {
        if (*p < '0' || *p > '9') {
          p++;
          continue;
        }
        long v = 0;
        while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
        if (v > hi) hi = v;
      }
      if (hi >= 0) n = uint32_t(hi + 1);
    }
    fclose(f);
  }
  if (n == 0) {
    long c = sysconf(_SC_NPROCESSORS_CONF);
    n = c > 0 ? uint32_t(c) : 1;
  }
  cached.store(n, std::memory_order_relaxed);
  return n;
}

}  // extern "C"
