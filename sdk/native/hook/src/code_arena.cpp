#include "code_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "sys.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace bh {

bool read_maps(std::vector<Mapping> &out) {
  out.clear();
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f) return false;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    Mapping m;
    char perms[8] = {0};
    int name_at = 0;
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*s %*s %*s %n", &m.start, &m.end, perms, &name_at) < 3) continue;
    m.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
    const char *name = line + name_at;
    m.heap = strncmp(name, "[heap]", 6) == 0;
    m.stack = strncmp(name, "[stack]", 7) == 0;
    out.push_back(m);
  }
  fclose(f);
  return true;
}

bool find_mapping(uint64_t addr, Mapping &out) {
  std::vector<Mapping> maps;
  if (!read_maps(maps)) return false;
  for (const Mapping &m : maps)
    if (addr >= m.start && addr < m.end) {
      out = m;
      return true;
    }
  return false;
}

namespace {

uint64_t dist(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

bool within(uint64_t lo, uint64_t size, uint64_t near, uint64_t max_dist) {
  return dist(lo, near) <= max_dist && dist(lo + size, near) <= max_dist;
}

}  // namespace

// Finds free address space within max_dist of `near`: candidate addresses
// come from the gaps in /proc/self/maps (nearest first, keeping clear of the
// heap's growth and the stack), and each is probed with
// mmap(MAP_FIXED_NOREPLACE), which fails rather than replace a mapping that
// appeared since.
uint8_t *CodeArena::map_near(uint64_t near, uint64_t max_dist) {
  const uint64_t size = kRegionSize, align = kRegionSize, pad = kRegionSize;
  const uint64_t lo = near > max_dist + 0x10000 ? near - max_dist : 0x10000;
  const uint64_t hi = std::min<uint64_t>(near + max_dist, 0x7ffffffff000ull);
  std::vector<Mapping> maps;
  if (!read_maps(maps)) return nullptr;

  std::vector<uint64_t> cands;
  for (size_t i = 0; i <= maps.size(); i++) {
    uint64_t gs = i == 0 ? 0x10000 : maps[i - 1].end + pad;
    uint64_t ge = i == maps.size() ? 0x7ffffffff000ull : maps[i].start;
    // Leave brk 1 GiB to grow into, and the stack all of the gap below it.
    if (i > 0 && maps[i - 1].heap) gs = maps[i - 1].end + (1ull << 30);
    if (i < maps.size() && maps[i].stack) continue;
    ge = ge > pad ? ge - pad : 0;
    gs = std::max(gs, lo);
    ge = std::min(ge, hi);
    if (ge <= gs || ge - gs < size + align) continue;
    // The address in [gs, ge) nearest to `near`.
    uint64_t a;
    if (near >= ge)
      a = (ge - size) & ~(align - 1);
    else if (near <= gs)
      a = (gs + align - 1) & ~(align - 1);
    else
      a = std::min((near & ~(align - 1)), (ge - size) & ~(align - 1));
    if (a < gs || a + size > ge) continue;
    if (within(a, size, near, max_dist)) cands.push_back(a);
  }
  std::sort(cands.begin(), cands.end(), [&](uint64_t x, uint64_t y) { return dist(x, near) < dist(y, near); });
  for (uint64_t a : cands) {
    void *p = sys::mmap(reinterpret_cast<void *>(a), size, PROT_READ | PROT_EXEC,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
    if (sys::mmap_failed(p)) continue;
    if (reinterpret_cast<uint64_t>(p) != a) {  // a kernel that treats it as a hint
      sys::munmap(p, size);
      continue;
    }
    return static_cast<uint8_t *>(p);
  }
  return nullptr;
}

uint8_t *CodeArena::alloc(size_t size, uint64_t near, uint64_t max_dist) {
  size = (size + 15) & ~size_t(15);
  if (size > kRegionSize) return nullptr;
  // Most recently freed first: its cache lines may still be warm.
  for (size_t i = free_.size(); i-- > 0;) {
    const Block b = free_[i];
    if (b.size != size || (near && !within(reinterpret_cast<uint64_t>(b.p), size, near, max_dist))) continue;
    free_.erase(free_.begin() + long(i));
    in_use_ += size;
    return b.p;
  }
  for (Region &r : regions_) {
    if (r.size - r.used < size) continue;
    uint8_t *p = r.base + r.used;
    if (near && !within(reinterpret_cast<uint64_t>(p), size, near, max_dist)) continue;
    r.used += size;
    in_use_ += size;
    return p;
  }
  uint8_t *base;
  if (near) {
    base = map_near(near, max_dist);
  } else {
    void *p = sys::mmap(nullptr, kRegionSize, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS);
    base = sys::mmap_failed(p) ? nullptr : static_cast<uint8_t *>(p);
  }
  if (!base) return nullptr;
  regions_.push_back(Region{base, kRegionSize, size});
  in_use_ += size;
  return base;
}

void CodeArena::unalloc(uint8_t *p, size_t size) {
  size = (size + 15) & ~size_t(15);
  for (Region &r : regions_)
    if (r.base + r.used == p + size && p >= r.base) {
      r.used -= size;
      in_use_ -= size;
      return;
    }
}

void CodeArena::free(uint8_t *p, size_t size) {
  size = (size + 15) & ~size_t(15);
  free_.push_back(Block{p, size});
  in_use_ -= size;
}

int CodeArena::write(void *dst, const void *src, size_t n) {
  const uintptr_t page = 4096;
  uintptr_t a = reinterpret_cast<uintptr_t>(dst) & ~(page - 1);
  uintptr_t e = (reinterpret_cast<uintptr_t>(dst) + n + page - 1) & ~(page - 1);
  long rc = sys::mprotect(reinterpret_cast<void *>(a), e - a, PROT_READ | PROT_WRITE | PROT_EXEC);
  if (rc < 0) return static_cast<int>(rc);
  memcpy(dst, src, n);
  rc = sys::mprotect(reinterpret_cast<void *>(a), e - a, PROT_READ | PROT_EXEC);
  return rc < 0 ? static_cast<int>(rc) : 0;
}

}  // namespace bh
