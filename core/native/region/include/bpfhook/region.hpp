// C++ owner of one mapping of a shared region (the C API in region.h wraps
// it). RAII: the destructor unmaps, closes the descriptor, and, for the
// creator, unlinks the name if close() has not done so already.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "bpfhook/region.h"

namespace bpfhook::region {

class Region {
 public:
  // Both return 0 and set `out`, or a negative errno.
  static int create(const std::string &name, const bh_region_opts &opts, std::unique_ptr<Region> &out);
  // Create under a fresh random name, retrying when a name exists.
  static int create_unique(const bh_region_opts &opts, std::unique_ptr<Region> &out);
  static int open(const std::string &name, std::unique_ptr<Region> &out);

  ~Region();
  Region(const Region &) = delete;
  Region &operator=(const Region &) = delete;

  // Removes the name (creator only, once); the mapping stays usable.
  void unlink();

  uint8_t *base() const { return base_; }
  uint64_t size() const { return size_; }
  const std::string &name() const { return name_; }
  bool owner() const { return owner_; }
  bh_region_header *header() const { return reinterpret_cast<bh_region_header *>(base_); }

  int alloc(uint64_t size, uint64_t align, uint64_t *off);
  // Also reports the cursor the bump moved from (the skipped padding starts there).
  int alloc(uint64_t size, uint64_t align, uint64_t *off, uint64_t *cursor_before);
  uint32_t map_count() const;
  const bh_region_map_desc *map_at(uint32_t index) const;
  int read_map(uint32_t index, bh_region_map_desc *out) const;
  int find_map(const char *name) const;
  int add_map(const bh_region_map_desc &desc, uint64_t storage_size, uint64_t align, bh_region_init_fn init,
              void *cookie, uint32_t *index);
  // 0, or -EPROTO if the directory another process can write is out of
  // bounds: a count past the capacity, an entry whose storage leaves the
  // data area.
  int check_directory() const;
  uint32_t dir_capacity() const { return dir_capacity_; }
  uint32_t ncpus() const { return ncpus_; }
  int free_map(uint32_t index, uint32_t gen);
  uint64_t used() const;

 private:
  // The free list of storage blocks (callers hold the directory lock).
  int alloc_from_free_list(uint64_t size, uint64_t align, uint64_t *off);
  int insert_free(uint64_t off, uint64_t size);
  void zero_block(uint64_t off, uint64_t size);
  void return_block(uint64_t off, uint64_t size);

 public:
 private:
  Region(std::string name, int fd, uint8_t *base, uint64_t size, bool owner)
      : name_(std::move(name)), fd_(fd), base_(base), size_(size), owner_(owner) {}

  std::string name_;
  int fd_;
  uint8_t *base_;
  uint64_t size_;
  bool owner_;
  bool unlinked_ = false;
  // Geometry, validated when the mapping is made and never re-read from the
  // header (another process can rewrite it): cache_geometry().
  void cache_geometry();
  uint64_t dir_offset_ = 0;
  uint64_t data_offset_ = 0;
  uint32_t dir_capacity_ = 0;
  uint32_t ncpus_ = 1;
};

}  // namespace bpfhook::region
