// The agent's untrusting view of an agent area (agent_area.h): the geometry is
// validated once and kept here, so later writes to the shared header cannot
// move a table; every record read is bounds-checked and copied out. Used by
// the agent (core/native/agent/src/agent.cpp) and the addon's readers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "bpfhook/agent_area.h"

namespace bpfhook::agent {

// Limits on what a reader accepts, whatever the controller wrote.
constexpr uint32_t kMaxInsns = 1u << 20;  // instructions per program
constexpr uint32_t kMaxProgMaps = 64;     // map references per program
constexpr uint32_t kMaxCapacity = 1u << 20;

struct PluginReq {
  std::string name, path;
  uint32_t flags = 0;
};

struct ProgReq {
  std::string name;
  const void *insns = nullptr;  // in the region: copy before use if it may change
  uint32_t insns_len = 0;
  std::vector<bh_agent_map_ref> maps;
  uint32_t flags = 0;
  uint64_t budget = 0;
};

struct AttachReq {
  uint32_t state = 0, plugin = 0, prog = 0, attach_type = 0;
  std::vector<uint8_t> data;  // copied out of the region
  uint64_t cookie = 0;
};

class AreaView {
 public:
  // 0, or -ENOENT (no area) / -EPROTO (malformed) with a message.
  int init(bh_region *r, std::string &err);
  bh_agent_area *area() const { return area_; }
  bh_region *region() const { return r_; }

  uint32_t n_plugins() const;
  uint32_t n_progs() const;
  uint32_t n_prog_arrays() const;
  uint32_t n_attach() const;
  uint32_t cap_procs() const { return cap_procs_; }

  // Records in place (index < capacity, else NULL).
  bh_agent_attach_rec *attach_rec(uint32_t i) const;
  bh_agent_proc_rec *proc_rec(uint32_t i) const;
  bh_agent_prog_array_rec *prog_array_rec(uint32_t i) const;

  // Checked copies: 0, or -EPROTO / -ENOENT with a message naming the record.
  int read_plugin(uint32_t i, PluginReq &out, std::string &err) const;
  int read_prog(uint32_t i, ProgReq &out, std::string &err) const;
  int read_attach(uint32_t i, AttachReq &out, std::string &err) const;
  // The slots of prog array `i` (max_entries u32 in the region) and its gen.
  int read_prog_array(uint32_t i, const uint32_t **slots, uint32_t *max_entries, std::string &err) const;

  // Whether [off, off + len) lies inside the region's data area.
  bool blob_ok(uint64_t off, uint64_t len) const;

 private:
  bh_region *r_ = nullptr;
  bh_agent_area *area_ = nullptr;
  uint8_t *base_ = nullptr;
  uint64_t size_ = 0, data_off_ = 0;
  uint64_t plugins_off_ = 0, progs_off_ = 0, prog_arrays_off_ = 0, attach_off_ = 0, procs_off_ = 0;
  uint32_t cap_plugins_ = 0, cap_progs_ = 0, cap_prog_arrays_ = 0, cap_attach_ = 0, cap_procs_ = 0;
};

// Copies a fixed-size string field if it has a NUL inside it.
bool field_string(const char *field, size_t len, std::string &out);

}  // namespace bpfhook::agent
