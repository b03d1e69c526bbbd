// bh_host_maps over the maps library's handles (bh_map *): what the addon and
// the agent hand plugins (bh_host.maps), so a plugin whose programs run
// elsewhere (nv-cuda: on the GPU) can mirror their map data into the maps the
// TypeScript map API and `bpfhook maps` read, and hand their output to the
// same printk sink and perf / ring buffers as programs on the CPU.
#include <cerrno>

#include "bpfhook/helpers.h"
#include "bpfhook/maps.h"
#include "bpfhook/runtime.h"

namespace {

constexpr uint32_t kPerfEventArray = 4, kRingbuf = 27;

int info(void *map, bh_host_map_info *out) {
  if (map == nullptr || out == nullptr) return -EINVAL;
  const bh_map_info *i = bh_map_get_info(static_cast<bh_map *>(map));
  if (i == nullptr) return -EINVAL;
  *out = bh_host_map_info{i->type, i->key_size, i->value_size, i->max_entries, i->user_value_size};
  return 0;
}

int update(void *map, const void *key, const void *value, uint64_t flags) {
  if (map == nullptr) return -EINVAL;
  return bh_map_update(static_cast<bh_map *>(map), key, value, flags);
}

int output(void *map, const void *data, size_t size) {
  if (map == nullptr) return -EINVAL;
  auto *m = static_cast<bh_map *>(map);
  const bh_map_info *i = bh_map_get_info(m);
  if (i == nullptr) return -EINVAL;
  long rc = -EINVAL;
  if (i->type == kPerfEventArray) rc = bh_perf_event_output(m, BH_F_CURRENT_CPU, data, size);
  if (i->type == kRingbuf) rc = bh_ringbuf_output(m, data, size, 0);
  return static_cast<int>(rc);
}

void trace_printk(const char *fmt, size_t fmt_size, uint64_t a1, uint64_t a2, uint64_t a3) {
  bh_helper_trace_printk(reinterpret_cast<uint64_t>(fmt), fmt_size, a1, a2, a3);
}

const bh_host_maps kHostMaps = {sizeof(bh_host_maps), info, update, output, trace_printk};

}  // namespace

extern "C" const bh_host_maps *bh_runtime_host_maps(void) { return &kHostMaps; }
