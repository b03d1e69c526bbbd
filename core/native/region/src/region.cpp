// The shared region: creation, opening, the bump allocator and the map
// directory. Layout and rules are documented at the top of region.h.
#include "bpfhook/region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "bpfhook/shm_sync.hpp"

static_assert(sizeof(bh_region_header) <= BH_REGION_HEADER_BYTES, "header must fit its page");
static_assert(sizeof(bh_region_map_desc) == 256, "directory entries are 256 bytes in layout 1");

namespace bpfhook::region {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint32_t kMaxMapsLimit = 65536;
constexpr uint32_t kMaxCpus = 65536;  // per-CPU layouts multiply by ncpus: keep it sane

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// POSIX leaves names other than "/x" implementation-defined; glibc maps them
// to /dev/shm/x, so a second '/' would name a subdirectory.
bool ValidName(const std::string &name) {
  if (name.size() < 2 || name.size() > 255 || name[0] != '/') return false;
  return name.find('/', 1) == std::string::npos;
}

uint64_t DirBytes(uint32_t capacity) { return AlignUp(uint64_t(capacity) * sizeof(bh_region_map_desc), kPage); }

}  // namespace

int Region::Create(const std::string &name, const bh_region_opts &opts, std::unique_ptr<Region> &out) {
  if (!ValidName(name)) return -EINVAL;
  uint32_t max_maps = opts.max_maps ? opts.max_maps : BH_REGION_DEFAULT_MAX_MAPS;
  if (max_maps > kMaxMapsLimit) return -EINVAL;
  uint64_t data_offset = BH_REGION_HEADER_BYTES + DirBytes(max_maps);
  uint64_t size = AlignUp(opts.size ? opts.size : BH_REGION_DEFAULT_SIZE, kPage);
  if (size < data_offset + kPage) return -EINVAL;
  mode_t mode = opts.mode ? mode_t(opts.mode & 0777) : 0600;

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
  h->dir_offset = BH_REGION_HEADER_BYTES;
  h->dir_capacity = max_maps;
  h->desc_size = sizeof(bh_region_map_desc);
  h->data_offset = data_offset;
  h->alloc_next = data_offset;
  shm::store_release(&h->magic, uint64_t(BH_REGION_MAGIC));

  out.reset(new Region(name, fd, static_cast<uint8_t *>(mem), size, true));
  out->CacheGeometry();
  return 0;
}

int Region::Open(const std::string &name, std::unique_ptr<Region> &out) {
  if (!ValidName(name)) return -EINVAL;
  int fd = shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return -err;
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
             h->dir_capacity > kMaxMapsLimit ||
             h->dir_offset > size ||
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
  out->CacheGeometry();
  return 0;
}

// Called once the header passed the checks above (or was just written).
void Region::CacheGeometry() {
  const bh_region_header *h = header();
  dir_offset_ = h->dir_offset;
  data_offset_ = h->data_offset;
  dir_capacity_ = h->dir_capacity;
  ncpus_ = h->ncpus;
}

Region::~Region() {
  if (owner_) Unlink();
  munmap(base_, size_);
  close(fd_);
}

void Region::Unlink() {
  if (!owner_ || unlinked_) return;
  shm_unlink(name_.c_str());
  unlinked_ = true;
}

int Region::Alloc(uint64_t size, uint64_t align, uint64_t *off) {
  if (align == 0) align = 64;
  if ((align & (align - 1)) != 0) return -EINVAL;
  bh_region_header *h = header();
  uint64_t cur = shm::load_relaxed(&h->alloc_next);
  // A cursor moved back into the header or directory is corrupt.
  if (cur < data_offset_) return -EPROTO;
  for (;;) {
    uint64_t start = AlignUp(cur, align);
    if (start < cur || size > size_ || start > size_ - size) return -ENOMEM;
    if (shm::cas(&h->alloc_next, cur, start + size)) {
      *off = start;
      return 0;
    }
  }
}

// Never past the capacity this mapping validated, whatever the shared count
// says (CheckDirectory reports a count beyond it).
uint32_t Region::MapCount() const {
  uint32_t n = shm::load_acquire(&header()->dir_count);
  return n <= dir_capacity_ ? n : dir_capacity_;
}

const bh_region_map_desc *Region::MapAt(uint32_t index) const {
  if (index >= MapCount()) return nullptr;
  return reinterpret_cast<const bh_region_map_desc *>(base_ + dir_offset_) + index;
}

int Region::CheckDirectory() const {
  if (shm::load_acquire(&header()->dir_count) > dir_capacity_) return -EPROTO;
  uint32_t n = MapCount();
  for (uint32_t i = 0; i < n; i++) {
    const bh_region_map_desc *d = MapAt(i);
    uint64_t off = shm::load_relaxed(&d->storage_off);
    uint64_t len = shm::load_relaxed(&d->storage_size);
    if (off < data_offset_ || off > size_ || len > size_ - off) return -EPROTO;
  }
  return 0;
}

int Region::FindMap(const char *name) const {
  if (name == nullptr || name[0] == '\0') return -ENOENT;
  uint32_t n = MapCount();
  for (uint32_t i = 0; i < n; i++) {
    const bh_region_map_desc *d = MapAt(i);
    if (strncmp(d->name, name, BH_REGION_NAME_MAX) == 0) return int(i);
  }
  return -ENOENT;
}

int Region::AddMap(const bh_region_map_desc &desc, uint64_t storage_size, uint64_t align,
                   bh_region_init_fn init, void *cookie, uint32_t *index) {
  if (memchr(desc.name, '\0', BH_REGION_NAME_MAX) == nullptr) return -EINVAL;
  bh_region_header *h = header();
  // User-space wait, bounded; a holder that died is taken over. What a dead
  // holder can leave: an allocated block never published (leaked space) and
  // a half-written entry past dir_count, which this writer overwrites.
  shm::SpinGuard guard(&h->lock, shm::Wait::kUser);
  if (!guard.ok()) return guard.result();
  uint32_t count = shm::load_relaxed(&h->dir_count);
  if (desc.name[0] != '\0' && FindMap(desc.name) >= 0) return -EEXIST;
  if (count >= dir_capacity_) return -ENOSPC;
  uint64_t off = 0;
  int err = Alloc(storage_size, align, &off);
  if (err != 0) return err;
  if (init != nullptr) {
    err = init(cookie, base_ + off, off);
    if (err < 0) return err;
  }
  auto *slot = reinterpret_cast<bh_region_map_desc *>(base_ + dir_offset_) + count;
  *slot = desc;
  slot->index = count;
  slot->state = 1;
  slot->storage_off = off;
  slot->storage_size = storage_size;
  shm::store_release(&h->dir_count, count + 1);
  shm::fetch_add(&h->generation, uint64_t(1));
  *index = count;
  return 0;
}

}  // namespace bpfhook::region

// ---- C API ----

struct bh_region {
  std::unique_ptr<bpfhook::region::Region> region;
  std::atomic<uint32_t> refs{1};
};

using bpfhook::region::Region;

extern "C" {

int bh_region_create(const char *name, const bh_region_opts *opts, bh_region **out) {
  if (name == nullptr || out == nullptr) return -EINVAL;
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
  int err = Region::Create(name, o, region);
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
  int err = Region::Open(name, region);
  if (err != 0) return err;
  auto *r = new (std::nothrow) bh_region();
  if (r == nullptr) return -ENOMEM;
  r->region = std::move(region);
  *out = r;
  return 0;
}

void bh_region_close(bh_region *r) {
  if (r == nullptr) return;
  r->region->Unlink();
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
uint64_t bh_region_used(const bh_region *r) {
  return bpfhook::shm::load_relaxed(&r->region->header()->alloc_next);
}

int bh_region_alloc(bh_region *r, uint64_t size, uint64_t align, uint64_t *off) {
  if (r == nullptr || off == nullptr) return -EINVAL;
  return r->region->Alloc(size, align, off);
}

void *bh_region_at(const bh_region *r, uint64_t off) {
  return off < r->region->size() ? r->region->base() + off : nullptr;
}

uint64_t bh_region_offset_of(const bh_region *r, const void *addr) {
  return uint64_t(static_cast<const uint8_t *>(addr) - r->region->base());
}

uint32_t bh_region_map_count(const bh_region *r) { return r->region->MapCount(); }
uint32_t bh_region_map_capacity(const bh_region *r) { return r->region->dir_capacity(); }
int bh_region_check_directory(const bh_region *r) { return r->region->CheckDirectory(); }
const bh_region_map_desc *bh_region_map_at(const bh_region *r, uint32_t index) { return r->region->MapAt(index); }
int bh_region_find_map(const bh_region *r, const char *name) { return r->region->FindMap(name); }

int bh_region_add_map(bh_region *r, const bh_region_map_desc *desc, uint64_t storage_size, uint64_t align,
                      bh_region_init_fn init, void *cookie, uint32_t *index) {
  if (r == nullptr || desc == nullptr || index == nullptr) return -EINVAL;
  return r->region->AddMap(*desc, storage_size, align, init, cookie, index);
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
