// The nv-cuda plugin's native piece: runs in the CUDA program (agent mode or
// an embedded runtime), hooks the CUDA runtime's registration and launch
// functions in place with bpfhook's hook engine (bh_hook, linked statically),
// and launches the instrumented version of each selected kernel.
//
//   __cudaRegisterFatBinary (return)   counts fat binaries (handle -> wrapper)
//   __cudaRegisterFunction (entry)     host stub -> mangled kernel name
//   __cudaRegisterVar (entry)          host variable -> device name
//   __cudaGetKernel (return)           for a selected kernel, the stub's handle
//                                      becomes a token of ours (the real handle
//                                      is kept for the fallback)
//   __cudaLaunchKernel(_ptsz) (entry)  token: cuLaunchKernel of the instrumented
//                                      CUfunction, the body skipped; fallback:
//                                      the real handle put back in rdi
//   cudaLaunchKernel(_ptsz), cudaLaunchKernelExC (entry): by host stub, same
//   cudaMemcpyToSymbol (entry)         the write also goes to the instrumented
//                                      module's global of that name
//   cuLaunchKernel(Ex) (entry, only when libcuda.so.1 is loaded): the
//                                      function's name (cuFuncGetName) selects;
//                                      the CUfunction argument is swapped
//
// Every driver call of the plugin goes through bh_cuda_driver (driver.cpp).
// The instrumented module is loaded at the first launch of one of its kernels
// (a context is current then); when it cannot be, the original kernel runs
// and a warning names it.
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <thread>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bpfhook/errmsg.h"
#include "bpfhook/hook.h"
#include "bpfhook/nv_cuda_plugin.h"
#include "bpfhook/plugin.h"
#include "driver.h"

namespace {

using bh_nv_cuda::load_driver;

const char *const kHookNames[BH_NVH_COUNT] = {
    "__cudaRegisterFatBinary", "__cudaRegisterFatBinaryEnd", "__cudaRegisterFunction",  "__cudaRegisterVar",
    "__cudaGetKernel",         "__cudaLaunchKernel",         "__cudaLaunchKernel_ptsz", "cudaLaunchKernel",
    "cudaLaunchKernel_ptsz",   "cudaLaunchKernelExC",        "cudaMemcpyToSymbol",
};

// Ring buffer of the module (bh_ring): 1 MiB of device memory.
constexpr uint64_t kRingBytes = 1u << 20;
// Shards of a per-CPU array on the GPU (README "GPU maps"): a power of two.
constexpr uint64_t kShards = 1024;
constexpr uint32_t kMapPerCpuArray = 6, kMapHash = 1, kMapLruHash = 9;
// cudaErrorLaunchFailure: what a failed instrumented launch returns.
constexpr int kCudaErrorLaunchFailure = 719;
// CU_STREAM_PER_THREAD: the _ptsz launches' default stream.
void *const kStreamPerThread = reinterpret_cast<void *>(0x2);

struct MapSpec {
  uint32_t type, key_size, value_size, max_entries;
};

struct Module : std::enable_shared_from_this<Module> {
  std::string description;
  std::string ptx;
  std::vector<std::string> kernels;
  // Guard slots (bh_prog_off): the program in each, and whether it is off
  // (no live attachment has it: detached, or only in a later module).
  std::vector<std::string> slots;
  std::vector<uint32_t> off;
  std::vector<MapSpec> maps;
  enum { kPending, kLoaded, kFailed } state = kPending;
  std::string error;
  void *module = nullptr;
  std::map<std::string, void *> functions;  // mangled name -> CUfunction
  // Device memory the host reads back (dump_module): descriptors by map index,
  // each map's storage blocks, bh_ring's address.
  std::vector<uint64_t> descriptors;
  std::vector<std::pair<uint64_t, uint64_t>> blocks;  // address, bytes
  uint64_t ring_global = 0;
  // The live mirror (mirror_module): the context the module lives in (the
  // sync thread makes it current), each map's device storage by map index,
  // the object's maps on the host (bh_attach_opts.maps), the bytes last
  // mirrored per map (only changed entries are written) and bh_ring's data
  // drained so far.
  void *ctx = nullptr;
  struct DevMap {
    uint64_t values = 0, keys = 0, states = 0, capacity = 0;
  };
  std::vector<DevMap> dev_maps;
  std::vector<void *> host_maps;
  std::vector<std::vector<uint8_t>> mirrored;
  uint64_t ring_tail = 0, ring_dropped = 0;
};

struct Kernel {
  std::string name;
  const void *host_fun = nullptr;
  uint64_t real_handle = 0;  // the runtime's cudaKernel_t, 0 if __cudaGetKernel failed
  bool warned = false;
  bool logged = false;  // the first redirected launch is logged at info level
};

struct Attachment {
  int id = -1;
  std::string program;  // its program, as the modules' slots name it
  std::vector<std::shared_ptr<Module>> modules;
};

struct State {
  std::mutex mu;
  const bh_host *host = nullptr;
  bh_hook_engine *engine = nullptr;
  std::vector<bh_hook_link *> links;
  std::set<void *> hooked;  // addresses patched (one runtime copy per file with nvcc's static runtime)
  bool driver_hooked = false;
  bool retired = false;  // fini ran; the hooks pass through (plugin_fini)
  bool driver_tried = false;
  int driver_rc = 0;
  std::string driver_error;
  bh_cuda_driver driver{};
  std::map<int, Attachment> attachments;
  int next_id = 0;
  std::map<std::string, std::shared_ptr<Module>> by_kernel;   // mangled name -> module instrumenting it
  std::vector<std::shared_ptr<Module>> loaded;                // modules loaded, in order (kept for the exit dump)
  std::map<const void *, std::unique_ptr<Kernel>> kernels;    // host stub -> kernel
  std::set<uint64_t> tokens;                                  // Kernel * handed out as cudaKernel_t
  std::map<const void *, std::string> vars;                   // host variable -> device name
  std::map<std::string, std::vector<uint8_t>> symbol_writes;  // device name -> bytes from offset 0 (replayed at load)
  const bh_host_maps *maps_api = nullptr;                     // bh_host.maps: the mirror's way into the CPU maps
  std::thread sync_thread;                                    // mirrors the GPU maps and drains bh_ring (sync_loop)
  std::condition_variable sync_cv;
  uint64_t sync_ms = 100;
  bool sync_stop = false;
  uint64_t fatbins = 0, fatbin_ends = 0, launches = 0, redirected = 0, fallbacks = 0;
};

State *g_state = nullptr;  // hooks are process-wide: one plugin state per process

void logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void logf(int level, const char *fmt, ...) {
  State *s = g_state;
  if (s == nullptr || s->host == nullptr || s->host->log == nullptr) return;
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  s->host->log(s->host->host_ctx, level, msg);
}

// ---- private data -----------------------------------------------------------

struct KernelRef {
  uint64_t stub = 0, handle = 0;  // link-time vaddrs in the module's file; 0 when unknown
  std::string name;
};

struct ModuleData {
  uint32_t path = 0;
  std::string where, ptx;
  std::vector<KernelRef> kernels;
  std::vector<std::pair<uint64_t, std::string>> vars;  // host shadow vaddr, device name
  std::vector<std::string> slots;
};

struct Hook {
  uint64_t vaddr;
  uint32_t hook, path;
};

struct Decoded {
  uint32_t attach_type = 0;
  std::vector<Hook> hooks;
  std::vector<MapSpec> maps;
  std::string description, program;
  std::vector<std::string> paths;
  std::vector<ModuleData> modules;
};

uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

// A bounded reader over the private data: each read fails (false) past the end.
struct Reader {
  const uint8_t *b;
  size_t len, pos;
  bool u32(uint32_t *v) {
    if (len - pos < 4) return false;
    *v = rd32(b + pos);
    pos += 4;
    return true;
  }
  bool u64(uint64_t *v) {
    if (len - pos < 8) return false;
    memcpy(v, b + pos, 8);
    pos += 8;
    return true;
  }
  // A NUL-terminated string.
  bool str(std::string *out) {
    if (pos >= len) return false;
    const void *nul = memchr(b + pos, 0, len - pos);
    if (nul == nullptr) return false;
    const size_t n = static_cast<const uint8_t *>(nul) - (b + pos);
    out->assign(reinterpret_cast<const char *>(b + pos), n);
    pos += n + 1;
    return true;
  }
};

int decode(const void *data, size_t len, Decoded *d, char *err, size_t err_len) {
  const auto *b = static_cast<const uint8_t *>(data);
  if (b == nullptr || len < BH_NV_CUDA_FIXED)
    return bh_fail(err, err_len, -EINVAL, "nv-cuda: private data too short (%zu bytes)", len);
  if (rd32(b) != BH_NV_CUDA_MAGIC || rd32(b + 4) != BH_NV_CUDA_VERSION) {
    return bh_fail(err, err_len, -EINVAL, "nv-cuda: private data has magic 0x%x version %u (want 0x%x version %u)",
                   rd32(b), rd32(b + 4), BH_NV_CUDA_MAGIC, BH_NV_CUDA_VERSION);
  }
  d->attach_type = rd32(b + 8);
  if (rd32(b + 12) != 0) return bh_fail(err, err_len, -EINVAL, "nv-cuda: unknown flags 0x%x", rd32(b + 12));
  const uint32_t n_paths = rd32(b + 16), n_hooks = rd32(b + 20), n_maps = rd32(b + 24), n_modules = rd32(b + 28);
  if (n_paths > 4096 || n_hooks > 4096 * BH_NVH_COUNT || n_maps > 4096 || n_modules > 4096) {
    return bh_fail(err, err_len, -EINVAL, "nv-cuda: private data: %u paths, %u hooks, %u maps, %u modules: too many",
                   n_paths, n_hooks, n_maps, n_modules);
  }
  Reader r{b, len, BH_NV_CUDA_FIXED};
  auto bad = [&](const char *what) {
    return bh_fail(err, err_len, -EINVAL, "nv-cuda: private data: %s malformed (at byte %zu of %zu)", what, r.pos, len);
  };
  for (uint32_t i = 0; i < n_hooks; i++) {
    Hook h{};
    uint32_t path = 0;
    if (!r.u64(&h.vaddr) || !r.u32(&h.hook) || !r.u32(&path)) return bad("hook");
    h.path = path;
    if (h.hook >= BH_NVH_COUNT) return bh_fail(err, err_len, -EINVAL, "nv-cuda: private data: hook %u unknown", h.hook);
    if (h.path >= n_paths) return bad("hook's path index");
    d->hooks.push_back(h);
  }
  for (uint32_t i = 0; i < n_maps; i++) {
    MapSpec m{};
    if (!r.u32(&m.type) || !r.u32(&m.key_size) || !r.u32(&m.value_size) || !r.u32(&m.max_entries)) return bad("map");
    d->maps.push_back(m);
  }
  if (!r.str(&d->description) || !r.str(&d->program)) return bad("description or program");
  for (uint32_t i = 0; i < n_paths; i++) {
    std::string p;
    if (!r.str(&p) || p.empty()) return bad("path");
    d->paths.push_back(std::move(p));
  }
  for (uint32_t i = 0; i < n_modules; i++) {
    ModuleData m;
    uint32_t n_kernels = 0, n_vars = 0, n_slots = 0, ptx_len = 0;
    if (!r.u32(&m.path) || !r.u32(&n_kernels) || !r.u32(&n_vars) || !r.u32(&n_slots) || !r.u32(&ptx_len) ||
        !r.str(&m.where)) {
      return bad("module header");
    }
    if (m.path >= n_paths) return bad("module's path index");
    for (uint32_t k = 0; k < n_kernels; k++) {
      KernelRef ref;
      if (!r.u64(&ref.stub) || !r.u64(&ref.handle) || !r.str(&ref.name) || ref.name.empty()) return bad("kernel");
      m.kernels.push_back(std::move(ref));
    }
    for (uint32_t v = 0; v < n_vars; v++) {
      uint64_t vaddr = 0;
      std::string name;
      if (!r.u64(&vaddr) || !r.str(&name)) return bad("variable");
      m.vars.emplace_back(vaddr, std::move(name));
    }
    for (uint32_t k = 0; k < n_slots; k++) {
      std::string slot;
      if (!r.str(&slot)) return bad("slot");
      m.slots.push_back(std::move(slot));
    }
    if (len - r.pos < static_cast<size_t>(ptx_len) + 1 || b[r.pos + ptx_len] != 0) {
      return bh_fail(err, err_len, -EINVAL, "%s: private data: PTX of module %u (%u bytes) not NUL-terminated",
                     d->description.c_str(), i, ptx_len);
    }
    m.ptx.assign(reinterpret_cast<const char *>(b + r.pos), ptx_len);
    r.pos += static_cast<size_t>(ptx_len) + 1;
    d->modules.push_back(std::move(m));
  }
  if (r.pos != len) return bad("end (bytes left over)");
  return 0;
}

// ---- where the hooked functions are ------------------------------------------

struct ModuleSearch {
  std::string real;      // realpath of the module
  std::string exe_real;  // realpath of /proc/self/exe (the main program is "")
  bool found = false;
  uint64_t bias = 0;
};

std::string real_path(const char *p) {
  char buf[PATH_MAX];
  return realpath(p, buf) != nullptr ? std::string(buf) : std::string();
}

int find_module(struct dl_phdr_info *info, size_t, void *data) {
  auto *m = static_cast<ModuleSearch *>(data);
  const char *name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  const bool match = name[0] == '\0' ? m->exe_real == m->real : real_path(name) == m->real;
  if (!match) return 0;
  m->found = true;
  m->bias = info->dlpi_addr;
  return 1;
}

// The load bias of `path` in this process; false if it is not loaded.
bool load_bias(const std::string &path, uint64_t *bias) {
  ModuleSearch m;
  m.real = real_path(path.c_str());
  m.exe_real = real_path("/proc/self/exe");
  if (m.real.empty()) return false;
  dl_iterate_phdr(find_module, &m);
  *bias = m.bias;
  return m.found;
}

// ---- the driver and the instrumented module -----------------------------------

// Caller holds s->mu.
bool ensure_driver(State *s) {
  if (!s->driver_tried) {
    s->driver_tried = true;
    char msg[512] = {0};
    std::string path;
    s->driver_rc = load_driver(&s->driver, &path, msg, sizeof msg);
    s->driver_error = msg;
    if (s->driver_rc == 0) logf(BH_LOG_INFO, "nv-cuda: CUDA driver functions from %s", path.c_str());
  }
  return s->driver_rc == 0;
}

// Device memory of `bytes` zeroed; 0 on failure.
uint64_t alloc_zeroed(State *s, size_t bytes, Module *m = nullptr) {
  uint64_t d = 0;
  if (bytes == 0) bytes = 8;
  if (s->driver.cuMemAlloc(&d, bytes) != 0) return 0;
  std::vector<uint8_t> zero(bytes, 0);
  if (s->driver.cuMemcpyHtoD(d, zero.data(), bytes) != 0) return 0;
  if (m != nullptr) m->blocks.emplace_back(d, bytes);
  return d;
}

int set_global(State *s, Module *m, const char *name, const void *bytes, size_t len) {
  uint64_t d = 0;
  size_t size = 0;
  const int rc = s->driver.cuModuleGetGlobal(&d, &size, m->module, name);
  if (rc != 0) return rc;
  if (size < len) return -1;
  return s->driver.cuMemcpyHtoD(d, bytes, len);
}

uint64_t next_pow2(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// The device side of each map: a 64-byte descriptor (src/ptx/runtime.ts) and
// its storage; returns the descriptors' addresses by map index.
bool build_maps(State *s, Module *m, std::vector<uint64_t> *table) {
  for (size_t i = 0; i < m->maps.size(); i++) {
    const MapSpec &spec = m->maps[i];
    const uint64_t stride = (static_cast<uint64_t>(spec.value_size) + 7) & ~7ull;
    const uint64_t kstride = (static_cast<uint64_t>(spec.key_size) + 7) & ~7ull;
    const bool hash = spec.type == kMapHash || spec.type == kMapLruHash;
    const bool sharded = spec.type == kMapPerCpuArray;
    uint64_t desc[8] = {spec.type, spec.key_size, spec.value_size, spec.max_entries, 0, 0, 0, 0};
    if (hash) {
      const uint64_t cap = next_pow2(std::max<uint64_t>(8, 2ull * spec.max_entries));
      desc[4] = alloc_zeroed(s, cap * stride, m);
      desc[5] = alloc_zeroed(s, cap * kstride, m);
      desc[6] = alloc_zeroed(s, cap * 4, m);
      desc[7] = cap;
      if (desc[5] == 0 || desc[6] == 0) return false;
    } else {
      desc[4] = alloc_zeroed(s, spec.max_entries * stride * (sharded ? kShards : 1), m);
      desc[7] = sharded ? kShards : 0;
    }
    if (desc[4] == 0) return false;
    m->dev_maps.push_back(Module::DevMap{desc[4], desc[5], desc[6], desc[7]});
    uint64_t d = 0;
    if (s->driver.cuMemAlloc(&d, sizeof desc) != 0 || s->driver.cuMemcpyHtoD(d, desc, sizeof desc) != 0) return false;
    table->push_back(d);
    m->blocks.emplace_back(d, sizeof desc);
  }
  m->descriptors = *table;
  return true;
}

// The GPU maps and ring of a loaded module, copied to a file the host reads
// (src/gpu-maps.ts, readGpuDump): "BHGPUMAP", u32 version 1, u32 maps,
// u64 bh_ring's address, the descriptors' addresses by map index, then
// segments { u64 address, u64 bytes, bytes } of device memory: descriptors,
// storage, bh_ring's 32 bytes and its data up to head.
int dump_module(State *s, Module *m, const char *path) {
  FILE *f = fopen(path, "wb");
  if (f == nullptr) return -errno;
  std::vector<std::pair<uint64_t, uint64_t>> segs = m->blocks;
  uint64_t ring[4] = {0, 0, 0, 0};
  if (m->ring_global != 0 && s->driver.cuMemcpyDtoH(ring, m->ring_global, sizeof ring) == 0) {
    segs.emplace_back(m->ring_global, sizeof ring);
    if (ring[0] != 0) segs.emplace_back(ring[0], std::min(ring[1], ring[2]));
  }
  const uint32_t head[2] = {1, static_cast<uint32_t>(m->descriptors.size())};
  fwrite("BHGPUMAP", 1, 8, f);
  fwrite(head, sizeof head, 1, f);
  fwrite(&m->ring_global, 8, 1, f);
  fwrite(m->descriptors.data(), 8, m->descriptors.size(), f);
  std::vector<uint8_t> buf;
  int rc = 0;
  for (const auto &seg : segs) {
    buf.resize(seg.second);
    if (seg.second != 0 && s->driver.cuMemcpyDtoH(buf.data(), seg.first, seg.second) != 0) {
      rc = -EIO;
      continue;
    }
    const uint64_t hdr[2] = {seg.first, seg.second};
    fwrite(hdr, sizeof hdr, 1, f);
    fwrite(buf.data(), 1, buf.size(), f);
  }
  if (fclose(f) != 0 && rc == 0) rc = -errno;
  return rc;
}

// BPFHOOK_NV_CUDA_DUMP=<file>: each loaded module's maps at exit (the first
// module to <file>, the next ones to <file>.1, <file>.2 ...).
void dump_at_exit() {
  State *s = g_state;
  const char *path = getenv("BPFHOOK_NV_CUDA_DUMP");
  if (s == nullptr || path == nullptr) return;
  std::lock_guard<std::mutex> lock(s->mu);
  int n = 0;
  for (const auto &loaded : s->loaded) {
    Module *m = loaded.get();
    const std::string file = n == 0 ? std::string(path) : std::string(path) + "." + std::to_string(n);
    n++;
    const int rc = dump_module(s, m, file.c_str());
    if (rc < 0) {
      logf(BH_LOG_WARN, "nv-cuda: %s: dumping the GPU maps to %s failed (%d)", m->description.c_str(), file.c_str(),
           rc);
    }
  }
}

// ---- the live mirror: GPU maps into the CPU maps, bh_ring into printk / perf ----

uint64_t round8(uint64_t v) { return (v + 7) & ~7ull; }
constexpr uint32_t kMapArray = 2;

bool dtoh(State *s, std::vector<uint8_t> *out, uint64_t src, size_t bytes) {
  out->assign(bytes, 0);
  return bytes == 0 || s->driver.cuMemcpyDtoH(out->data(), src, bytes) == 0;
}

// Copies a loaded module's arrays (per-CPU ones summed over their shards,
// README "GPU maps") and live hash entries into the object's maps on the
// host, the entries that changed since the last copy only. A per-CPU host map
// gets the sum in CPU 0's slot (the others 0), so summing its CPUs gives the
// GPU's total. Entries deleted on the GPU stay on the host. Caller holds s->mu.
void mirror_maps(State *s, Module *m) {
  const bh_host_maps *api = s->maps_api;
  m->mirrored.resize(m->dev_maps.size());
  std::vector<uint8_t> raw, keys, states;
  for (size_t i = 0; i < m->dev_maps.size() && i < m->host_maps.size() && i < m->maps.size(); i++) {
    void *hm = m->host_maps[i];
    bh_host_map_info hi{};
    if (hm == nullptr || api->info(hm, &hi) != 0) continue;
    const MapSpec &spec = m->maps[i];
    const Module::DevMap &dm = m->dev_maps[i];
    const bool hash = spec.type == kMapHash || spec.type == kMapLruHash;
    const bool array = spec.type == kMapArray || spec.type == kMapPerCpuArray;
    if ((!hash && !array) || hi.key_size != spec.key_size || hi.value_size != spec.value_size ||
        hi.value_bytes < spec.value_size) {
      continue;
    }
    const uint64_t stride = round8(spec.value_size), kstride = round8(spec.key_size);
    std::vector<uint8_t> &last = m->mirrored[i];
    std::vector<uint8_t> value(hi.value_bytes, 0);
    if (array) {
      const uint64_t shards = spec.type == kMapPerCpuArray ? kShards : 1;
      if (!dtoh(s, &raw, dm.values, spec.max_entries * stride * shards)) continue;
      last.resize(spec.max_entries * stride, 0);
      std::vector<uint8_t> sum(stride);
      for (uint32_t e = 0; e < spec.max_entries; e++) {
        if (shards == 1) {
          memcpy(sum.data(), raw.data() + e * stride, stride);
        } else {
          for (uint64_t w = 0; w + 8 <= stride; w += 8) {
            uint64_t total = 0;
            for (uint64_t sh = 0; sh < shards; sh++) {
              uint64_t v;
              memcpy(&v, raw.data() + (e * shards + sh) * stride + w, 8);
              total += v;
            }
            memcpy(sum.data() + w, &total, 8);
          }
        }
        if (memcmp(sum.data(), last.data() + e * stride, spec.value_size) == 0) continue;
        memcpy(value.data(), sum.data(), spec.value_size);
        if (api->update(hm, &e, value.data(), 0) == 0) memcpy(last.data() + e * stride, sum.data(), stride);
      }
    } else {
      const uint64_t cap = dm.capacity;
      if (cap == 0 || cap > (1u << 26) || !dtoh(s, &states, dm.states, cap * 4) ||
          !dtoh(s, &keys, dm.keys, cap * kstride) || !dtoh(s, &raw, dm.values, cap * stride)) {
        continue;
      }
      last.resize(cap * (kstride + stride), 0);
      for (uint64_t slot = 0; slot < cap; slot++) {
        if (rd32(states.data() + slot * 4) != 2) continue;  // 2: live (runtime.ts)
        const uint8_t *k = keys.data() + slot * kstride, *v = raw.data() + slot * stride;
        uint8_t *seen = last.data() + slot * (kstride + stride);
        if (memcmp(seen, k, kstride) == 0 && memcmp(seen + kstride, v, stride) == 0) continue;
        memcpy(value.data(), v, spec.value_size);
        if (api->update(hm, k, value.data(), 0) == 0) {
          memcpy(seen, k, kstride);
          memcpy(seen + kstride, v, stride);
        }
      }
    }
  }
}

// Hands bh_ring's committed records to the host: trace_printk and ebpf_puts
// to the printk sink, perf_event_output to the object's perf event array or
// ring buffer. The ring is linear (README "GPU maps"): once full, records are
// dropped and counted; drops are logged once per growth. Caller holds s->mu.
void drain_ring(State *s, Module *m) {
  uint64_t ring[4] = {0, 0, 0, 0};  // data, size, head, dropped
  if (m->ring_global == 0 || s->driver.cuMemcpyDtoH(ring, m->ring_global, sizeof ring) != 0 || ring[0] == 0) return;
  if (ring[3] > m->ring_dropped) {
    logf(BH_LOG_WARN, "nv-cuda: %s: %llu GPU ring buffer records dropped so far (bh_ring full)", m->description.c_str(),
         static_cast<unsigned long long>(ring[3]));
    m->ring_dropped = ring[3];
  }
  const uint64_t end = std::min(ring[1], ring[2]);
  if (end <= m->ring_tail) return;
  std::vector<uint8_t> buf;
  if (!dtoh(s, &buf, ring[0] + m->ring_tail, end - m->ring_tail)) return;
  const bh_host_maps *api = s->maps_api;
  size_t pos = 0;
  while (pos + 16 <= buf.size()) {
    const uint32_t len = rd32(buf.data() + pos), kind = rd32(buf.data() + pos + 4);
    if (len == 0) break;  // reserved, not committed yet: next time
    if (len < 16 || pos + len > buf.size()) {
      logf(BH_LOG_WARN, "nv-cuda: %s: bh_ring record at %llu has length %u: the rest is skipped",
           m->description.c_str(), static_cast<unsigned long long>(m->ring_tail + pos), len);
      pos = buf.size();
      break;
    }
    uint64_t extra;
    memcpy(&extra, buf.data() + pos + 8, 8);
    const uint8_t *payload = buf.data() + pos + 16;
    const size_t size = len - 16;
    if (kind == 1 && size >= 24) {  // printk: three u64 arguments, then the format
      uint64_t a[3];
      memcpy(a, payload, sizeof a);
      std::string fmt(reinterpret_cast<const char *>(payload + 24), std::min<size_t>(size - 24, extra));
      fmt.push_back('\0');
      api->trace_printk(fmt.c_str(), fmt.size(), a[0], a[1], a[2]);
    } else if (kind == 3) {  // ebpf_puts
      std::string text(reinterpret_cast<const char *>(payload), strnlen(reinterpret_cast<const char *>(payload), size));
      api->trace_printk("%s", 3, reinterpret_cast<uint64_t>(text.c_str()), 0, 0);
    } else if (kind == 2) {  // perf_event_output: extra is the map's descriptor
      for (size_t j = 0; j < m->descriptors.size() && j < m->host_maps.size(); j++) {
        if (m->descriptors[j] == extra && m->host_maps[j] != nullptr) api->output(m->host_maps[j], payload, size);
      }
    }
    pos += round8(len);
  }
  m->ring_tail += pos;
}

// The loaded modules of live attachments, mirrored and drained. Caller holds s->mu.
void sync_modules(State *s, const std::vector<Module *> &modules) {
  static thread_local void *current = nullptr;
  if (s->maps_api == nullptr || s->driver_rc != 0) return;
  for (Module *m : modules) {
    if (m->state != Module::kLoaded) continue;
    if (m->ctx != nullptr && m->ctx != current && s->driver.cuCtxSetCurrent(m->ctx) == 0) current = m->ctx;
    mirror_maps(s, m);
    drain_ring(s, m);
  }
}

std::vector<Module *> live_modules(State *s) {
  std::set<Module *> out;
  for (const auto &a : s->attachments) {
    for (const auto &m : a.second.modules) out.insert(m.get());
  }
  return std::vector<Module *>(out.begin(), out.end());
}

// The mirror's thread: every BPFHOOK_NV_CUDA_SYNC_MS (default 100) ms.
void sync_loop(State *s) {
  std::unique_lock<std::mutex> lock(s->mu);
  while (!s->sync_stop) {
    s->sync_cv.wait_for(lock, std::chrono::milliseconds(s->sync_ms));
    if (!s->sync_stop) sync_modules(s, live_modules(s));
  }
}

// At exit (before the runtime's own handlers tear the context down): the
// thread stops and the last values and records go to the host.
void sync_at_exit() {
  State *s = g_state;
  if (s == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->sync_stop = true;
  }
  s->sync_cv.notify_all();
  if (s->sync_thread.joinable()) s->sync_thread.join();
  std::lock_guard<std::mutex> lock(s->mu);
  if (!s->retired) sync_modules(s, live_modules(s));
}

// Loads the module once; false (and m->error) if it cannot be. Caller holds s->mu.
bool ensure_loaded(State *s, Module *m) {
  if (m->state == Module::kLoaded) return true;
  if (m->state == Module::kFailed) return false;
  auto fail = [&](const std::string &why) {
    m->state = Module::kFailed;
    m->error = why;
    return false;
  };
  if (!ensure_driver(s)) return fail(s->driver_error);
  void *ctx = nullptr;
  if (s->driver.cuCtxGetCurrent(&ctx) != 0 || ctx == nullptr) {
    // No context on this thread yet: the runtime's (the primary context of device 0).
    int dev = 0;
    if (s->driver.cuInit(0) != 0 || s->driver.cuDeviceGet(&dev, 0) != 0 ||
        s->driver.cuDevicePrimaryCtxRetain(&ctx, dev) != 0 || s->driver.cuCtxSetCurrent(ctx) != 0) {
      return fail("no CUDA context (cuInit / cuDevicePrimaryCtxRetain failed)");
    }
  }
  m->ctx = ctx;
  int rc = s->driver.cuModuleLoadData(&m->module, m->ptx.c_str());
  if (rc != 0) return fail("cuModuleLoadData failed (CUresult " + std::to_string(rc) + ")");
  for (const std::string &k : m->kernels) {
    void *fn = nullptr;
    rc = s->driver.cuModuleGetFunction(&fn, m->module, k.c_str());
    if (rc != 0 || fn == nullptr)
      return fail("cuModuleGetFunction(" + k + ") failed (CUresult " + std::to_string(rc) + ")");
    m->functions[k] = fn;
  }
  const uint64_t pid_tgid = static_cast<uint64_t>(getpid()) << 32;
  if (set_global(s, m, "bh_pid_tgid", &pid_tgid, sizeof pid_tgid) != 0) return fail("global bh_pid_tgid not set");
  uint64_t ring[4] = {alloc_zeroed(s, kRingBytes), kRingBytes, 0, 0};
  if (ring[0] == 0 || set_global(s, m, "bh_ring", ring, sizeof ring) != 0) return fail("global bh_ring not set");
  size_t ring_size = 0;
  s->driver.cuModuleGetGlobal(&m->ring_global, &ring_size, m->module, "bh_ring");
  std::vector<uint64_t> table;
  if (!build_maps(s, m, &table)) return fail("device memory for the maps not allocated");
  if (!table.empty() && set_global(s, m, "bh_map_table", table.data(), table.size() * 8) != 0) {
    return fail("global bh_map_table not set");
  }
  if (std::any_of(m->off.begin(), m->off.end(), [](uint32_t o) { return o != 0; }) &&
      set_global(s, m, "bh_prog_off", m->off.data(), m->off.size() * sizeof(uint32_t)) != 0) {
    return fail("global bh_prog_off not set");
  }
  // cudaMemcpyToSymbol writes made before the load: the module's copies of those globals.
  for (const auto &w : s->symbol_writes) {
    if (set_global(s, m, w.first.c_str(), w.second.data(), w.second.size()) == 0) {
      logf(BH_LOG_INFO, "nv-cuda: %s: global %s copied to the instrumented module (%zu bytes)", m->description.c_str(),
           w.first.c_str(), w.second.size());
    }
  }
  m->state = Module::kLoaded;
  s->loaded.push_back(m->shared_from_this());
  if (s->maps_api != nullptr && !s->sync_thread.joinable() && !s->sync_stop) {
    atexit(sync_at_exit);
    s->sync_thread = std::thread(sync_loop, s);
  }
  // After the runtime's own exit handlers were registered (it is initialised
  // by now), so this one runs first, while the context still exists.
  if (getenv("BPFHOOK_NV_CUDA_DUMP") != nullptr) {
    static std::once_flag once;
    std::call_once(once, [] { atexit(dump_at_exit); });
  }
  logf(BH_LOG_INFO, "nv-cuda: %s: instrumented module loaded (%zu kernels, %zu maps)", m->description.c_str(),
       m->kernels.size(), m->maps.size());
  return true;
}

// The instrumented CUfunction of a kernel, loading its module if needed;
// nullptr (with one warning per kernel) when the original must run.
void *instrumented(State *s, Kernel *k) {
  auto it = s->by_kernel.find(k->name);
  if (it == s->by_kernel.end()) return nullptr;
  Module *m = it->second.get();
  if (ensure_loaded(s, m)) return m->functions.at(k->name);
  if (!k->warned) {
    k->warned = true;
    logf(BH_LOG_WARN, "nv-cuda: kernel %s runs uninstrumented: %s: %s", k->name.c_str(), m->description.c_str(),
         m->error.c_str());
  }
  s->fallbacks++;
  return nullptr;
}

struct Dim3 {
  unsigned x, y, z;
};
Dim3 dim3_of(uint64_t xy, uint64_t z) {
  return Dim3{static_cast<unsigned>(xy), static_cast<unsigned>(xy >> 32), static_cast<unsigned>(z)};
}

int launch(State *s, Kernel &k, void *fn, Dim3 grid, Dim3 block, void **args, uint64_t shmem, void *stream) {
  const int rc = s->driver.cuLaunchKernel(fn, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                                          static_cast<unsigned>(shmem), stream, args, nullptr);
  s->launches++;
  if (rc == 0) s->redirected++;
  if (!k.logged) {  // the first launch of each kernel; the rest would flood the log
    logf(BH_LOG_INFO, "nv-cuda: launch of %s (grid %u,%u,%u block %u,%u,%u) redirected to instrumented function %p: %d",
         k.name.c_str(), grid.x, grid.y, grid.z, block.x, block.y, block.z, fn, rc);
  }
  k.logged = true;
  return rc == 0 ? 0 : kCudaErrorLaunchFailure;
}

uint64_t arg(bh_hook_call *call, uint32_t n) {
  uint64_t v = 0;
  bh_hook_call__arg(call, n, &v);
  return v;
}

// ---- the listeners -------------------------------------------------------------

uint64_t on_register_fatbinary(void *, struct pt_regs *regs, bh_hook_call *call) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  g_state->fatbins++;
  logf(BH_LOG_INFO, "nv-cuda: fat binary #%llu registered (wrapper %p, handle %p)",
       static_cast<unsigned long long>(g_state->fatbins), reinterpret_cast<void *>(call->entry_args[0]),
       reinterpret_cast<void *>(regs->rax));
  return 0;
}

uint64_t on_register_fatbinary_end(void *, struct pt_regs *, bh_hook_call *) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  g_state->fatbin_ends++;
  return 0;
}

uint64_t on_register_function(void *, struct pt_regs *regs, bh_hook_call *) {
  const void *host_fun = reinterpret_cast<const void *>(regs->rsi);
  const char *name = reinterpret_cast<const char *>(regs->rcx);
  if (host_fun == nullptr || name == nullptr) return 0;
  std::lock_guard<std::mutex> lock(g_state->mu);
  // A stub registered again keeps its record: the record's address may be a
  // token in the stub's static handle.
  std::unique_ptr<Kernel> &k = g_state->kernels[host_fun];
  if (!k) k = std::make_unique<Kernel>();
  k->name = name;
  k->host_fun = host_fun;
  const bool selected = g_state->by_kernel.count(k->name) != 0;
  logf(selected ? BH_LOG_INFO : BH_LOG_DEBUG, "nv-cuda: kernel %s: host stub %p%s", name, host_fun,
       selected ? " (instrumented)" : "");
  return 0;
}

uint64_t on_register_var(void *, struct pt_regs *regs, bh_hook_call *) {
  const void *host_var = reinterpret_cast<const void *>(regs->rsi);
  const char *name = reinterpret_cast<const char *>(regs->rcx);
  if (host_var == nullptr || name == nullptr) return 0;
  std::lock_guard<std::mutex> lock(g_state->mu);
  g_state->vars[host_var] = name;
  return 0;
}

// __cudaGetKernel(cudaKernel_t *out, const void *host_fun), on return.
uint64_t on_get_kernel(void *, struct pt_regs *regs, bh_hook_call *call) {
  auto *out = reinterpret_cast<uint64_t *>(call->entry_args[0]);
  const void *host_fun = reinterpret_cast<const void *>(call->entry_args[1]);
  if (out == nullptr) return 0;
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto it = g_state->kernels.find(host_fun);
  if (it == g_state->kernels.end() || g_state->by_kernel.count(it->second->name) == 0) return 0;
  Kernel *k = it->second.get();
  k->real_handle = static_cast<uint32_t>(regs->rax) == 0 ? *out : 0;
  const auto token = reinterpret_cast<uint64_t>(k);
  g_state->tokens.insert(token);
  *out = token;
  return 0;
}

// __cudaLaunchKernel(_ptsz)(cudaKernel_t, dim3 grid, dim3 block, void **args, size_t shmem, cudaStream_t stream):
// dim3 travels in two registers (x|y<<32, z), shmem and stream on the stack.
template <bool Ptsz>
uint64_t on_launch_handle(void *, struct pt_regs *regs, bh_hook_call *call) {
  State *s = g_state;
  std::unique_lock<std::mutex> lock(s->mu);
  if (s->tokens.count(regs->rdi) == 0) return 0;
  Kernel *k = reinterpret_cast<Kernel *>(regs->rdi);
  void *fn = instrumented(s, k);
  if (fn == nullptr) {
    regs->rdi = k->real_handle;  // the original runs with the runtime's handle
    return 0;
  }
  void *stream = reinterpret_cast<void *>(arg(call, 7));
  if (Ptsz && stream == nullptr) stream = kStreamPerThread;
  const int rc = launch(s, *k, fn, dim3_of(regs->rsi, regs->rdx), dim3_of(regs->rcx, regs->r8),
                        reinterpret_cast<void **>(regs->r9), arg(call, 6), stream);
  bh_hook_call__override_return(call, static_cast<uint64_t>(rc));
  return 0;
}

// cudaLaunchKernel(_ptsz)(const void *host_fun, dim3, dim3, void **, size_t, cudaStream_t).
template <bool Ptsz>
uint64_t on_launch_stub(void *, struct pt_regs *regs, bh_hook_call *call) {
  State *s = g_state;
  std::unique_lock<std::mutex> lock(s->mu);
  auto it = s->kernels.find(reinterpret_cast<const void *>(regs->rdi));
  if (it == s->kernels.end()) return 0;
  void *fn = instrumented(s, it->second.get());
  if (fn == nullptr) return 0;
  void *stream = reinterpret_cast<void *>(arg(call, 7));
  if (Ptsz && stream == nullptr) stream = kStreamPerThread;
  const int rc = launch(s, *it->second, fn, dim3_of(regs->rsi, regs->rdx), dim3_of(regs->rcx, regs->r8),
                        reinterpret_cast<void **>(regs->r9), arg(call, 6), stream);
  bh_hook_call__override_return(call, static_cast<uint64_t>(rc));
  return 0;
}

// cudaLaunchKernelExC(const cudaLaunchConfig_t *config, const void *host_fun, void **args).
uint64_t on_launch_exc(void *, struct pt_regs *regs, bh_hook_call *call) {
  struct Config {
    Dim3 grid, block;
    size_t shmem;
    void *stream;
    void *attrs;
    unsigned n_attrs;
  };
  State *s = g_state;
  const auto *cfg = reinterpret_cast<const Config *>(regs->rdi);
  std::unique_lock<std::mutex> lock(s->mu);
  auto it = s->kernels.find(reinterpret_cast<const void *>(regs->rsi));
  if (cfg == nullptr || it == s->kernels.end() || s->by_kernel.count(it->second->name) == 0) return 0;
  if (cfg->n_attrs != 0) {
    // Launch attributes (clusters, priorities ...) have no cuLaunchKernel form.
    logf(BH_LOG_WARN, "nv-cuda: kernel %s launched with %u attributes by cudaLaunchKernelExC runs uninstrumented",
         it->second->name.c_str(), cfg->n_attrs);
    return 0;
  }
  void *fn = instrumented(s, it->second.get());
  if (fn == nullptr) return 0;
  const int rc =
      launch(s, *it->second, fn, cfg->grid, cfg->block, reinterpret_cast<void **>(regs->rdx), cfg->shmem, cfg->stream);
  bh_hook_call__override_return(call, static_cast<uint64_t>(rc));
  return 0;
}

// cudaMemcpyToSymbol(const void *symbol, const void *src, size_t count, size_t offset, kind).
uint64_t on_memcpy_to_symbol(void *, struct pt_regs *regs, bh_hook_call *) {
  State *s = g_state;
  const void *sym = reinterpret_cast<const void *>(regs->rdi);
  const auto *src = reinterpret_cast<const uint8_t *>(regs->rsi);
  const size_t count = regs->rdx, offset = regs->rcx;
  std::lock_guard<std::mutex> lock(s->mu);
  auto v = s->vars.find(sym);
  if (v == s->vars.end() || src == nullptr || count > (64u << 20) || offset > (64u << 20)) return 0;
  std::vector<uint8_t> &bytes = s->symbol_writes[v->second];
  if (bytes.size() < offset + count) bytes.resize(offset + count);
  memcpy(bytes.data() + offset, src, count);
  for (auto &entry : s->by_kernel) {
    Module *m = entry.second.get();
    if (m->state != Module::kLoaded) continue;
    uint64_t d = 0;
    size_t size = 0;
    if (s->driver.cuModuleGetGlobal(&d, &size, m->module, v->second.c_str()) == 0 && offset + count <= size) {
      s->driver.cuMemcpyHtoD(d + offset, src, count);
    }
  }
  return 0;
}

// The driver's launches: the CUfunction is swapped, the driver does the rest.
std::map<void *, void *> *g_driver_swaps = nullptr;  // original CUfunction -> instrumented; under mu

void *swap_function(void *fn) {
  State *s = g_state;
  std::lock_guard<std::mutex> lock(s->mu);
  auto it = g_driver_swaps->find(fn);
  if (it != g_driver_swaps->end()) return it->second;
  void *to = nullptr;
  const char *name = nullptr;
  if (s->driver_rc == 0 && s->driver.cuFuncGetName != nullptr && s->driver.cuFuncGetName(&name, fn) == 0 &&
      name != nullptr) {
    for (auto &k : s->kernels) {
      if (k.second->name == name) to = instrumented(s, k.second.get());
    }
  }
  (*g_driver_swaps)[fn] = to;
  return to;
}

uint64_t on_cu_launch_kernel(void *, struct pt_regs *regs, bh_hook_call *) {
  if (void *to = swap_function(reinterpret_cast<void *>(regs->rdi))) regs->rdi = reinterpret_cast<uint64_t>(to);
  return 0;
}
uint64_t on_cu_launch_kernel_ex(void *, struct pt_regs *regs, bh_hook_call *) {
  if (void *to = swap_function(reinterpret_cast<void *>(regs->rsi))) regs->rsi = reinterpret_cast<uint64_t>(to);
  return 0;
}

struct HookSpec {
  bh_hook_fn fn;
  bh_hook_kind kind;
};
HookSpec hook_spec(uint32_t hook) {
  switch (hook) {
    case BH_NVH_REGISTER_FATBINARY: return {on_register_fatbinary, BH_HOOK_RETURN};
    case BH_NVH_REGISTER_FATBINARY_END: return {on_register_fatbinary_end, BH_HOOK_ENTRY};
    case BH_NVH_REGISTER_FUNCTION: return {on_register_function, BH_HOOK_ENTRY};
    case BH_NVH_REGISTER_VAR: return {on_register_var, BH_HOOK_ENTRY};
    case BH_NVH_GET_KERNEL: return {on_get_kernel, BH_HOOK_RETURN};
    case BH_NVH_LAUNCH_KERNEL: return {on_launch_handle<false>, BH_HOOK_ENTRY};
    case BH_NVH_LAUNCH_KERNEL_PTSZ: return {on_launch_handle<true>, BH_HOOK_ENTRY};
    case BH_NVH_CUDA_LAUNCH_KERNEL: return {on_launch_stub<false>, BH_HOOK_ENTRY};
    case BH_NVH_CUDA_LAUNCH_KERNEL_PTSZ: return {on_launch_stub<true>, BH_HOOK_ENTRY};
    case BH_NVH_CUDA_LAUNCH_KERNEL_EXC: return {on_launch_exc, BH_HOOK_ENTRY};
    default: return {on_memcpy_to_symbol, BH_HOOK_ENTRY};
  }
}

int hook_one(State *s, void *func, const char *name, bh_hook_fn fn, bh_hook_kind kind, char *err, size_t err_len) {
  char msg[512] = {0};
  bh_hook_attach_opts ho{};
  ho.sz = sizeof ho;
  ho.func_name = name;
  ho.errbuf = msg;
  ho.errbuf_sz = sizeof msg;
  bh_hook_link *link = nullptr;
  const int rc = bh_hook_attach(s->engine, func, kind, fn, nullptr, &ho, &link);
  if (rc < 0) return bh_fail(err, err_len, rc, "nv-cuda: hooking %s: %s", name, msg);
  s->links.push_back(link);
  return 0;
}

// Installs the hooks of the runtime copies this attachment names (each file's
// .symtab vaddrs, libcudart.so's exports) that are not hooked yet: the hooks
// are process-wide and stay. Caller holds s->mu.
int install_hooks(State *s, const Decoded &d, const std::vector<uint64_t> &bias, char *err, size_t err_len) {
  std::vector<std::pair<void *, uint32_t>> todo;  // address, hook
  std::set<void *> seen;
  std::string symtab_files;
  size_t from_symtab = 0, from_dlsym = 0;
  bool register_function = false;
  for (const Hook &h : d.hooks) {
    void *a = reinterpret_cast<void *>(bias[h.path] + h.vaddr);
    if (h.hook == BH_NVH_REGISTER_FUNCTION) register_function = true;
    if (!seen.insert(a).second) continue;
    from_symtab++;
    const std::string &f = d.paths[h.path];
    if (symtab_files.find(f) == std::string::npos) symtab_files += (symtab_files.empty() ? "" : ",") + f;
    todo.emplace_back(a, h.hook);
  }
  for (uint32_t h = 0; h < BH_NVH_COUNT; h++) {
    void *a = dlsym(RTLD_DEFAULT, kHookNames[h]);  // libcudart.so's exports
    if (a == nullptr) continue;
    if (h == BH_NVH_REGISTER_FUNCTION) register_function = true;
    if (!seen.insert(a).second) continue;
    from_dlsym++;
    todo.emplace_back(a, h);
  }
  if (!register_function && s->hooked.empty()) {
    return bh_fail(err, err_len, -ENOENT,
                   "%s: no __cudaRegisterFunction in process %d (neither in %s's symbol table nor exported): is it a "
                   "CUDA program?",
                   d.description.c_str(), static_cast<int>(getpid()),
                   d.paths.empty() ? "the executable" : d.paths[0].c_str());
  }
  todo.erase(std::remove_if(todo.begin(), todo.end(), [&](const auto &t) { return s->hooked.count(t.first) != 0; }),
             todo.end());
  void *cuda = s->driver_hooked ? nullptr : dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (todo.empty() && cuda == nullptr) return 0;
  const size_t before = s->links.size();
  bh_hook_begin_transaction();
  int rc = 0;
  for (const auto &t : todo) {
    if (rc != 0) break;
    const HookSpec spec = hook_spec(t.second);
    rc = hook_one(s, t.first, kHookNames[t.second], spec.fn, spec.kind, err, err_len);
  }
  // The driver's own launches, when the real driver is in the process.
  if (rc == 0 && cuda != nullptr) {
    if (void *f = dlsym(cuda, "cuLaunchKernel"))
      rc = hook_one(s, f, "cuLaunchKernel", on_cu_launch_kernel, BH_HOOK_ENTRY, err, err_len);
    if (void *f = dlsym(cuda, "cuLaunchKernelEx"); f != nullptr && rc == 0) {
      rc = hook_one(s, f, "cuLaunchKernelEx", on_cu_launch_kernel_ex, BH_HOOK_ENTRY, err, err_len);
    }
  }
  char msg[512] = {0};
  bh_hook_txn_opts to{};
  to.sz = sizeof to;
  to.errbuf = msg;
  to.errbuf_sz = sizeof msg;
  const int end = bh_hook_end_transaction(&to);
  if (rc == 0 && end < 0) rc = bh_fail(err, err_len, end, "nv-cuda: patching the CUDA runtime: %s", msg);
  if (rc < 0) {
    for (size_t i = before; i < s->links.size(); i++) bh_hook_detach(s->links[i]);
    s->links.resize(before);
    return rc;
  }
  for (const auto &t : todo) s->hooked.insert(t.first);
  if (cuda != nullptr) s->driver_hooked = true;
  logf(BH_LOG_INFO,
       "nv-cuda: %zu CUDA runtime functions hooked in process %d (%zu at symbol-table vaddrs of %s, %zu exported)",
       s->links.size() - before, static_cast<int>(getpid()), from_symtab,
       symtab_files.empty() ? "-" : symtab_files.c_str(), from_dlsym);
  return 0;
}

// Late attach and kernels registered before the hooks (a shared object's
// constructors run before the agent's): the module's kernels are known by
// their host stubs from the symbol table, and CUDA 13's cached handle in each
// stub (`__handle`, filled once by __cudaGetKernel) becomes a token of ours
// now, the runtime's handle kept. Caller holds s->mu.
void replay_registration(State *s, const ModuleData &md, uint64_t bias) {
  for (const KernelRef &ref : md.kernels) {
    if (ref.stub == 0) continue;
    const void *host_fun = reinterpret_cast<const void *>(bias + ref.stub);
    std::unique_ptr<Kernel> &k = s->kernels[host_fun];
    if (!k) {
      k = std::make_unique<Kernel>();
      k->name = ref.name;
      k->host_fun = host_fun;
      logf(BH_LOG_INFO, "nv-cuda: kernel %s: host stub %p (instrumented; from the symbol table)", ref.name.c_str(),
           host_fun);
    }
    if (ref.handle == 0) continue;
    // An aligned 8-byte store: a launch on another thread reads the old or the new handle, both valid.
    auto *slot = reinterpret_cast<volatile uint64_t *>(bias + ref.handle);
    const uint64_t token = reinterpret_cast<uint64_t>(k.get());
    const uint64_t cur = *slot;
    if (cur == token) continue;
    k->real_handle = cur;  // 0: __cudaGetKernel not called yet (it will be, and is hooked) or it failed
    s->tokens.insert(token);
    *slot = token;
  }
  for (const auto &v : md.vars) {
    if (v.first != 0) s->vars.emplace(reinterpret_cast<const void *>(bias + v.first), v.second);
  }
}

// Writes each module's guard slots: a slot is on when a live attachment has
// its program. Caller holds s->mu.
void refresh_slots(State *s) {
  std::set<std::string> live;
  std::set<Module *> modules;
  for (const auto &a : s->attachments) {
    live.insert(a.second.program);
    for (const auto &m : a.second.modules) modules.insert(m.get());
  }
  for (const auto &k : s->by_kernel) modules.insert(k.second.get());
  for (Module *m : modules) {
    bool changed = false;
    for (size_t i = 0; i < m->slots.size(); i++) {
      const uint32_t off = live.count(m->slots[i]) != 0 ? 0 : 1;
      if (m->off[i] != off) changed = true;
      m->off[i] = off;
    }
    if (changed && m->state == Module::kLoaded &&
        set_global(s, m, "bh_prog_off", m->off.data(), m->off.size() * sizeof(uint32_t)) != 0) {
      logf(BH_LOG_WARN, "nv-cuda: %s: global bh_prog_off not written: detached programs may still run",
           m->description.c_str());
    }
  }
}

// ---- plugin ops -------------------------------------------------------------

uint64_t gpu_only_helper(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return 0; }

int plugin_init(void **state, const bh_host *host, char *err, size_t err_len) {
  if (g_state != nullptr) {
    std::lock_guard<std::mutex> lock(g_state->mu);
    if (!g_state->retired) {
      return bh_fail(err, err_len, -EBUSY, "nv-cuda: one runtime per process may use the CUDA hooks");
    }
    // A later runtime in the same process (a new agent session): the hooks are still in place.
    g_state->retired = false;
    g_state->host = host;
    g_state->maps_api = BH_SZ_HAS(host, bh_host, maps) ? host->maps : nullptr;
    *state = g_state;
    return 0;
  }
  auto s = std::make_unique<State>();
  s->host = host;
  // Without the host's map access (an older core) the GPU maps reach the host through the exit dump only.
  s->maps_api = BH_SZ_HAS(host, bh_host, maps) ? host->maps : nullptr;
  if (const char *ms = getenv("BPFHOOK_NV_CUDA_SYNC_MS")) s->sync_ms = std::max(1L, strtol(ms, nullptr, 10));
  char msg[256] = {0};
  bh_hook_engine_opts opts{};
  opts.sz = sizeof opts;
  opts.errbuf = msg;
  opts.errbuf_sz = sizeof msg;
  s->engine = bh_hook_engine__new(&opts);
  if (s->engine == nullptr) return bh_fail(err, err_len, -errno, "nv-cuda: hook engine: %s", msg);
  g_driver_swaps = new std::map<void *, void *>();
  g_state = s.release();
  *state = g_state;
  return 0;
}

// The hooks stay: the launch stubs of the program keep the tokens
// __cudaGetKernel handed out in their static handles, and only our
// __cudaLaunchKernel listener turns them back into the runtime's handles. With
// no attachment left every listener passes through (a few ns on a launch of
// several µs). The state stays too, for the listeners and a later runtime.
void plugin_fini(void *state) {
  auto *s = static_cast<State *>(state);
  std::lock_guard<std::mutex> lock(s->mu);
  sync_modules(s, live_modules(s));  // the last values, while the maps are still open
  s->attachments.clear();
  s->by_kernel.clear();
  g_driver_swaps->clear();
  s->host = nullptr;
  s->maps_api = nullptr;
  s->retired = true;
}

int plugin_attach(void *state, const bh_attach_opts *opts, char *err, size_t err_len) {
  auto *s = static_cast<State *>(state);
  if (!BH_SZ_HAS(opts, bh_attach_opts, prog_name))
    return bh_fail(err, err_len, -EINVAL, "nv-cuda: attach options too old");
  Decoded d;
  int rc = decode(opts->private_data, opts->private_data_len, &d, err, err_len);
  if (rc < 0) return rc;
  if (d.attach_type != opts->attach_type) {
    return bh_fail(err, err_len, -EINVAL, "%s: attach type %u does not match the private data's %u",
                   d.description.c_str(), opts->attach_type, d.attach_type);
  }
  std::lock_guard<std::mutex> lock(s->mu);
  std::vector<uint64_t> bias(d.paths.size(), 0);
  for (size_t i = 0; i < d.paths.size(); i++) {
    if (!load_bias(d.paths[i], &bias[i])) {
      return bh_fail(err, err_len, -ENOENT, "%s: %s is not loaded in process %d", d.description.c_str(),
                     d.paths[i].c_str(), static_cast<int>(getpid()));
    }
  }
  rc = install_hooks(s, d, bias, err, err_len);
  if (rc < 0) return rc;
  Attachment a;
  a.id = s->next_id++;
  a.program = d.program;
  size_t n_kernels = 0, n_bytes = 0;
  for (ModuleData &md : d.modules) {
    auto m = std::make_shared<Module>();
    m->description = d.description + " [" + md.where + "]";
    m->ptx = std::move(md.ptx);
    for (const KernelRef &k : md.kernels) m->kernels.push_back(k.name);
    m->maps = d.maps;
    m->slots = md.slots;
    m->off.assign(m->slots.size(), 0);
    if (BH_SZ_HAS(opts, bh_attach_opts, nmaps) && opts->maps != nullptr) {
      m->host_maps.assign(opts->maps, opts->maps + opts->nmaps);
    }
    replay_registration(s, md, bias[md.path]);
    for (const std::string &k : m->kernels) {
      auto it = s->by_kernel.find(k);
      if (it != s->by_kernel.end() && it->second->state != Module::kPending) {
        logf(BH_LOG_WARN,
             "nv-cuda: kernel %s: %s replaces %s, which is already loaded; launches from now on run the new one",
             k.c_str(), m->description.c_str(), it->second->description.c_str());
      }
      s->by_kernel[k] = m;
    }
    n_kernels += m->kernels.size();
    n_bytes += m->ptx.size();
    a.modules.push_back(m);
  }
  s->attachments[a.id] = a;
  refresh_slots(s);
  logf(BH_LOG_INFO, "nv-cuda: %s: %zu kernels selected, %zu modules of %zu bytes", d.description.c_str(), n_kernels,
       a.modules.size(), n_bytes);
  return a.id;
}

// The object's other attachments keep their programs: the module in use
// holds them all, and the detached program's guard slot is turned off. A
// kernel goes back to its original only when no attachment left has a module
// that instruments it.
int plugin_detach(void *state, int id) {
  auto *s = static_cast<State *>(state);
  std::lock_guard<std::mutex> lock(s->mu);
  auto it = s->attachments.find(id);
  if (it == s->attachments.end()) return -ENOENT;
  std::vector<Module *> last;
  for (const auto &m : it->second.modules) last.push_back(m.get());
  sync_modules(s, last);  // the CPU maps keep what the GPU counted until now
  s->attachments.erase(it);
  std::set<std::string> kept;
  for (const auto &a : s->attachments) {
    for (const auto &m : a.second.modules) kept.insert(m->kernels.begin(), m->kernels.end());
  }
  for (auto k = s->by_kernel.begin(); k != s->by_kernel.end();) {
    k = kept.count(k->first) == 0 ? s->by_kernel.erase(k) : std::next(k);
  }
  refresh_slots(s);
  return 0;
}

// GPU helpers: the program is compiled to PTX and runs on the device; the
// CPU copy the runtime loads must still resolve them (never called there).
int plugin_register_helpers(void *, bh_register_helper_fn reg, void *reg_ctx) {
  static const char *const kNames[] = {"ebpf_puts",         "bpf_get_globaltimer", "bpf_get_block_idx",
                                       "bpf_get_block_dim", "bpf_get_thread_idx",  "bpf_gpu_membar",
                                       "bpf_cuda_exit",     "bpf_get_grid_dim",    "bpf_get_sm_id",
                                       "bpf_get_warp_id",   "bpf_get_lane_id"};
  for (uint32_t i = 0; i < 11; i++) {
    const int rc = reg(reg_ctx, 501 + i, kNames[i], gpu_only_helper, 0);
    if (rc < 0) return rc;
  }
  return 0;
}

// call("stats"): out = text "fatbins=N ends=N kernels=N launches=N redirected=N fallbacks=N".
int64_t plugin_call(void *state, const char *name, const void *, size_t, void *out, size_t out_len) {
  auto *s = static_cast<State *>(state);
  if (strcmp(name, "stats") != 0) return -ENOSYS;
  if (out == nullptr || out_len == 0) return -EINVAL;
  std::lock_guard<std::mutex> lock(s->mu);
  const int n = snprintf(static_cast<char *>(out), out_len,
                         "fatbins=%llu ends=%llu kernels=%zu launches=%llu redirected=%llu fallbacks=%llu",
                         static_cast<unsigned long long>(s->fatbins), static_cast<unsigned long long>(s->fatbin_ends),
                         s->kernels.size(), static_cast<unsigned long long>(s->launches),
                         static_cast<unsigned long long>(s->redirected), static_cast<unsigned long long>(s->fallbacks));
  return n;
}

const bh_plugin_ops kOps = {
    sizeof(bh_plugin_ops), BH_PLUGIN_ABI_VERSION,   "nv-cuda",   plugin_init, plugin_fini, plugin_attach,
    plugin_detach,         plugin_register_helpers, plugin_call,
};

}  // namespace

extern "C" BH_PLUGIN_EXPORT const bh_plugin_ops *bh_plugin_entry(void) { return &kOps; }
