// Executable memory for trampolines, allocated near the code it serves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bh {

struct Mapping {
  uint64_t start = 0, end = 0;
  int prot = 0;        // PROT_* bits
  bool heap = false;   // [heap]
  bool stack = false;  // [stack]
};

// Parses /proc/self/maps (sorted by address).
bool read_maps(std::vector<Mapping> &out);
// The mapping that contains `addr`, if any.
bool find_mapping(uint64_t addr, Mapping &out);

// A bump allocator over 64 KiB regions of RX memory, with a free list for
// blocks given back.  Not thread-safe: the interceptor's mutex guards it.
// The caller frees a block only once no thread can run in it (see
// interceptor.cpp, reclaim); regions stay mapped and are reused.
class CodeArena {
 public:
  // `size` bytes (16-aligned) with every byte within `max_dist` of `near`
  // (near == 0: anywhere).  nullptr if no such memory can be mapped.
  uint8_t *alloc(size_t size, uint64_t near, uint64_t max_dist);
  // Gives back the most recent allocation (a failed attach).
  void unalloc(uint8_t *p, size_t size);
  // Puts a block on the free list for a later alloc of the same size.
  void free(uint8_t *p, size_t size);
  // Bytes handed out and not freed (tests, diagnostics).
  uint64_t bytes_in_use() const { return in_use_; }
  // The regions mapped so far, appended to `out`.
  template <class R>
  void regions(std::vector<R> &out) const {
    for (const Region &r : regions_)
      out.push_back(R{reinterpret_cast<uint64_t>(r.base), reinterpret_cast<uint64_t>(r.base) + r.size});
  }
  // Writes code: makes the pages RWX, copies, makes them RX again.
  int write(void *dst, const void *src, size_t n);

 private:
  struct Region {
    uint8_t *base;
    size_t size, used;
  };
  uint8_t *map_near(uint64_t near, uint64_t max_dist);
  std::vector<Region> regions_;
  struct Block {
    uint8_t *p;
    size_t size;
  };
  std::vector<Block> free_;
  uint64_t in_use_ = 0;
};

constexpr size_t kRegionSize = 64 * 1024;
// Reach of a rel32 jump, less a margin for the code around the target.
constexpr uint64_t kNearDist = 0x7ff00000ull;

}  // namespace bh
