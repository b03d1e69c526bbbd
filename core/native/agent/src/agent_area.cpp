// The agent area (agent_area.h): the controller's writers and the agent's
// checked readers. Both sides link this file (static library bpfagentarea).
#include "bpfhook/agent_area.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "bpfhook/agent_area.hpp"
#include "bpfhook/shm_sync.hpp"

namespace shm = bpfhook::shm;
using bpfhook::agent::AreaView;

namespace {

int fail(char *err, size_t err_len, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int fail(char *err, size_t err_len, int rc, const char *fmt, ...) {
  if (err != nullptr && err_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
  }
  return rc;
}

bh_region_header *header(bh_region *r) { return static_cast<bh_region_header *>(bh_region_base(r)); }

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// The controller's own area (it wrote it, so no reader checks): NULL if none.
bh_agent_area *own_area(bh_region *r) {
  uint64_t off = shm::load_acquire(&header(r)->agent_off);
  if (off == 0 || off >= bh_region_size(r)) return nullptr;
  return static_cast<bh_agent_area *>(bh_region_at(r, off));
}

template <class T>
T *table(bh_region *r, uint64_t off) {
  return static_cast<T *>(bh_region_at(r, off));
}

// A blob: `len` bytes copied into a fresh block. 0 and *off (0 for len 0).
int put_blob(bh_region *r, const void *data, size_t len, uint64_t *off, const char *what, char *err, size_t err_len) {
  *off = 0;
  if (len == 0) return 0;
  int rc = bh_region_alloc(r, len, 8, off);
  if (rc != 0) {
    return fail(err, err_len, rc, "agent area: region '%s' is full: %s needs %zu bytes, %llu free at the end",
                bh_region_name(r), what, len, static_cast<unsigned long long>(bh_region_size(r) - bh_region_used(r)));
  }
  memcpy(bh_region_at(r, *off), data, len);
  return 0;
}

bool copy_name(char *dst, size_t cap, const char *src) {
  if (src == nullptr) return false;
  size_t n = strlen(src);
  if (n >= cap) return false;
  memcpy(dst, src, n + 1);
  return true;
}

}  // namespace

// ---- shared --------------------------------------------------------------

uint64_t bh_agent_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

uint64_t bh_agent_proc_start_time(uint32_t pid) {
  if (pid == 0 || pid > uint32_t(INT_MAX)) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // The command (field 2) may hold spaces and ')': count from the last ')'.
  char *p = strrchr(buf, ')');
  if (p == nullptr) return 0;
  int field = 2;
  char *save = nullptr;
  for (char *tok = strtok_r(p + 1, " ", &save); tok != nullptr; tok = strtok_r(nullptr, " ", &save)) {
    field++;
    // A zombie (killed, not reaped) is gone for our purposes.
    if (field == 3 && (tok[0] == 'Z' || tok[0] == 'X')) return 0;
    if (field == 22) return strtoull(tok, nullptr, 10);
  }
  return 0;
}

uint32_t bh_agent_futex_wait(const uint32_t *word, uint32_t seen, uint32_t timeout_ms) {
  uint32_t now = shm::load_acquire(word);
  if (now != seen) return now;
  struct timespec ts;
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = long(timeout_ms % 1000) * 1000000L;
  // Shared futex (no FUTEX_PRIVATE_FLAG): the waker is another process.
  syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, nullptr, 0);
  return shm::load_acquire(word);
}

void bh_agent_futex_wake(uint32_t *word) { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

// ---- controller side -----------------------------------------------------

int bh_agent_area_create(bh_region *r, const bh_agent_area_opts *opts, char *err, size_t err_len) {
  bh_region_header *h = header(r);
  if (!bh_region_is_owner(r))
    return fail(err, err_len, -EPERM, "agent area: only the creator of region '%s' writes its plan", bh_region_name(r));
  if (h->layout_version != 3)
    return fail(err, err_len, -EPROTO, "agent area: region layout %u has no agent area", h->layout_version);
  if (shm::load_acquire(&h->agent_off) != 0)
    return fail(err, err_len, -EEXIST, "agent area: region '%s' has one already", bh_region_name(r));
  bh_agent_area_opts o{};
  if (opts != nullptr) {
    if (opts->sz < sizeof(size_t)) return fail(err, err_len, -EINVAL, "agent area: opts.sz is %zu", opts->sz);
    memcpy(&o, opts, opts->sz < sizeof o ? opts->sz : sizeof o);
  }
  uint32_t caps[5] = {o.cap_plugins ? o.cap_plugins : 32, o.cap_progs ? o.cap_progs : 256,
                      o.cap_prog_arrays ? o.cap_prog_arrays : 64, o.cap_attach ? o.cap_attach : 1024,
                      o.cap_procs ? o.cap_procs : 64};
  const size_t rec[5] = {sizeof(bh_agent_plugin_rec), sizeof(bh_agent_prog_rec), sizeof(bh_agent_prog_array_rec),
                         sizeof(bh_agent_attach_rec), sizeof(bh_agent_proc_rec)};
  static const char *const names[5] = {"plugins", "programs", "prog arrays", "attachments", "processes"};
  uint64_t offs[5];
  uint64_t size = align_up(sizeof(bh_agent_area), 64);
  for (int i = 0; i < 5; i++) {
    if (caps[i] > bpfhook::agent::kMaxCapacity)
      return fail(err, err_len, -EINVAL, "agent area: capacity of %s %u is over %u", names[i], caps[i],
                  bpfhook::agent::kMaxCapacity);
    offs[i] = size;
    size = align_up(size + uint64_t(caps[i]) * rec[i], 64);
  }
  uint64_t off = 0;
  int rc = bh_region_alloc(r, size, 64, &off);
  if (rc != 0)
    return fail(err, err_len, rc, "agent area: region '%s' is full: the area needs %llu bytes", bh_region_name(r),
                static_cast<unsigned long long>(size));
  // The block is zero: write only what is not.
  auto *a = static_cast<bh_agent_area *>(bh_region_at(r, off));
  a->version = BH_AGENT_AREA_VERSION;
  a->area_size = sizeof(bh_agent_area);
  a->flags = o.flags;
  a->start_wait_ms = o.start_wait_ms;
  a->controller_pid = uint32_t(getpid());
  a->controller_start = bh_agent_proc_start_time(uint32_t(getpid()));
  a->heartbeat_ns = bh_agent_now_ns();
  a->plugins_off = off + offs[0];
  a->progs_off = off + offs[1];
  a->prog_arrays_off = off + offs[2];
  a->attach_off = off + offs[3];
  a->procs_off = off + offs[4];
  a->cap_plugins = caps[0];
  a->cap_progs = caps[1];
  a->cap_prog_arrays = caps[2];
  a->cap_attach = caps[3];
  a->cap_procs = caps[4];
  a->printk_map = a->log_map = ~0u;
  shm::store_release(&a->magic, uint64_t(BH_AGENT_AREA_MAGIC));
  // Size first, offset last (release): a reader seeing the offset sees all.
  shm::store_release(&h->agent_size, size);
  shm::store_release(&h->agent_off, off);
  return 0;
}

int bh_agent_area_get(bh_region *r, bh_agent_area **out, char *err, size_t err_len) {
  AreaView v;
  std::string msg;
  int rc = v.init(r, msg);
  if (rc != 0) return fail(err, err_len, rc, "%s", msg.c_str());
  *out = v.area();
  return 0;
}

int bh_agent_area_add_plugin(bh_region *r, const char *name, const char *path, uint32_t flags, char *err,
                             size_t err_len) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return fail(err, err_len, -ENOENT, "agent area: region '%s' has none", bh_region_name(r));
  uint32_t n = a->n_plugins;
  if (n >= a->cap_plugins)
    return fail(err, err_len, -ENOSPC, "agent area: the plugins table is full (capacity %u)", a->cap_plugins);
  bh_agent_plugin_rec *rec = table<bh_agent_plugin_rec>(r, a->plugins_off) + n;
  memset(rec, 0, sizeof *rec);
  if (!copy_name(rec->name, sizeof rec->name, name))
    return fail(err, err_len, -EINVAL, "agent area: plugin name '%s' is missing or over %u bytes",
                name ? name : "(null)", BH_AGENT_NAME_MAX - 1);
  if (path == nullptr || path[0] != '/' || !copy_name(rec->path, sizeof rec->path, path)) {
    memset(rec, 0, sizeof *rec);
    return fail(err, err_len, -EINVAL, "agent area: plugin '%s': path '%s' is not absolute or over %u bytes", name,
                path ? path : "(null)", BH_AGENT_PATH_MAX - 1);
  }
  rec->flags = flags;
  shm::store_release(&rec->state, BH_AGENT_REC_LIVE);
  shm::store_release(&a->n_plugins, n + 1);
  return int(n);
}

int bh_agent_area_add_prog(bh_region *r, const char *name, const void *insns, size_t insns_len,
                           const bh_agent_map_ref *maps, uint32_t nmaps, uint32_t flags, uint64_t budget, char *err,
                           size_t err_len) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return fail(err, err_len, -ENOENT, "agent area: region '%s' has none", bh_region_name(r));
  const char *nm = name ? name : "(null)";
  if (name == nullptr || strlen(name) >= BH_AGENT_NAME_MAX)
    return fail(err, err_len, -EINVAL, "agent area: program name '%s' is missing or over %u bytes", nm,
                BH_AGENT_NAME_MAX - 1);
  if (insns_len == 0 || insns_len % 8 != 0 || insns_len / 8 > bpfhook::agent::kMaxInsns)
    return fail(err, err_len, -EINVAL, "agent area: prog '%s': %zu bytes of instructions (a multiple of 8, 8..%u)", nm,
                insns_len, bpfhook::agent::kMaxInsns * 8);
  if (nmaps > bpfhook::agent::kMaxProgMaps)
    return fail(err, err_len, -E2BIG, "agent area: prog '%s': %u maps, at most %u", nm, nmaps,
                bpfhook::agent::kMaxProgMaps);
  for (uint32_t i = 0; i < nmaps; i++) {
    if (maps[i].kind == BH_AGENT_MAP_PROG_ARRAY ? maps[i].index >= a->n_prog_arrays
                                                : maps[i].kind != BH_AGENT_MAP_REGION)
      return fail(err, err_len, -EINVAL, "agent area: prog '%s': maps[%u] (kind %u, index %u) is not valid", nm, i,
                  maps[i].kind, maps[i].index);
  }
  uint32_t n = a->n_progs;
  if (n >= a->cap_progs)
    return fail(err, err_len, -ENOSPC, "agent area: the programs table is full (capacity %u)", a->cap_progs);
  uint64_t insns_off = 0, maps_off = 0;
  int rc = put_blob(r, insns, insns_len, &insns_off, "the instructions", err, err_len);
  if (rc == 0) rc = put_blob(r, maps, sizeof(bh_agent_map_ref) * nmaps, &maps_off, "the map references", err, err_len);
  if (rc != 0) return rc;  // blobs already taken stay unused: the region is append-only here
  bh_agent_prog_rec *rec = table<bh_agent_prog_rec>(r, a->progs_off) + n;
  memset(rec, 0, sizeof *rec);
  memcpy(rec->name, name, strlen(name) + 1);
  rec->flags = flags;
  rec->insns_off = insns_off;
  rec->insns_len = uint32_t(insns_len);
  rec->nmaps = nmaps;
  rec->maps_off = maps_off;
  rec->budget = budget;
  shm::store_release(&rec->state, BH_AGENT_REC_LIVE);
  shm::store_release(&a->n_progs, n + 1);
  return int(n);
}

int bh_agent_area_add_prog_array(bh_region *r, uint32_t max_entries, char *err, size_t err_len) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return fail(err, err_len, -ENOENT, "agent area: region '%s' has none", bh_region_name(r));
  if (max_entries == 0 || max_entries > bpfhook::agent::kMaxCapacity)
    return fail(err, err_len, -EINVAL, "agent area: prog array of %u entries (1..%u)", max_entries,
                bpfhook::agent::kMaxCapacity);
  uint32_t n = a->n_prog_arrays;
  if (n >= a->cap_prog_arrays)
    return fail(err, err_len, -ENOSPC, "agent area: the prog arrays table is full (capacity %u)", a->cap_prog_arrays);
  uint64_t slots_off = 0;
  int rc = bh_region_alloc(r, uint64_t(max_entries) * 4, 8, &slots_off);  // zero: all slots empty
  if (rc != 0)
    return fail(err, err_len, rc, "agent area: region '%s' is full: a prog array of %u slots", bh_region_name(r),
                max_entries);
  bh_agent_prog_array_rec *rec = table<bh_agent_prog_array_rec>(r, a->prog_arrays_off) + n;
  memset(rec, 0, sizeof *rec);
  rec->max_entries = max_entries;
  rec->slots_off = slots_off;
  shm::store_release(&rec->state, BH_AGENT_REC_LIVE);
  shm::store_release(&a->n_prog_arrays, n + 1);
  return int(n);
}

int bh_agent_area_set_prog_array_slot(bh_region *r, uint32_t array, uint32_t slot, int32_t prog) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return -ENOENT;
  if (array >= a->n_prog_arrays) return -ENOENT;
  bh_agent_prog_array_rec *rec = table<bh_agent_prog_array_rec>(r, a->prog_arrays_off) + array;
  if (slot >= rec->max_entries) return -E2BIG;
  if (prog < -1 || (prog >= 0 && uint32_t(prog) >= a->n_progs)) return -EINVAL;
  shm::store_release(table<uint32_t>(r, rec->slots_off) + slot, uint32_t(prog + 1));
  shm::fetch_add(&rec->gen, 1u);
  return 0;
}

int bh_agent_area_add_attach(bh_region *r, uint32_t plugin, uint32_t prog, uint32_t attach_type, const void *data,
                             size_t data_len, uint64_t cookie, char *err, size_t err_len) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return fail(err, err_len, -ENOENT, "agent area: region '%s' has none", bh_region_name(r));
  if (plugin >= a->n_plugins) return fail(err, err_len, -EINVAL, "agent area: attach: no plugin %u", plugin);
  if (prog >= a->n_progs) return fail(err, err_len, -EINVAL, "agent area: attach: no program %u", prog);
  if (data_len > UINT32_MAX)
    return fail(err, err_len, -E2BIG, "agent area: attach: %zu bytes of private data", data_len);
  uint32_t n = a->n_attach;
  if (n >= a->cap_attach)
    return fail(err, err_len, -ENOSPC, "agent area: the attachments table is full (capacity %u)", a->cap_attach);
  uint64_t data_off = 0;
  int rc = put_blob(r, data, data_len, &data_off, "the private data", err, err_len);
  if (rc != 0) return rc;
  bh_agent_attach_rec *rec = table<bh_agent_attach_rec>(r, a->attach_off) + n;
  memset(rec, 0, sizeof *rec);
  rec->plugin = plugin;
  rec->prog = prog;
  rec->attach_type = attach_type;
  rec->data_off = data_off;
  rec->data_len = uint32_t(data_len);
  rec->cookie = cookie;
  shm::store_release(&rec->state, BH_AGENT_ATTACH_WANT);
  shm::store_release(&a->n_attach, n + 1);
  return int(n);
}

int bh_agent_area_remove_attach(bh_region *r, uint32_t index) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr || index >= a->n_attach) return -ENOENT;
  bh_agent_attach_rec *rec = table<bh_agent_attach_rec>(r, a->attach_off) + index;
  uint32_t want = BH_AGENT_ATTACH_WANT;
  return shm::cas(&rec->state, want, uint32_t(BH_AGENT_ATTACH_REMOVED)) ? 0 : -ENOENT;
}

int bh_agent_area_set_rings(bh_region *r, uint32_t printk_index, uint32_t printk_gen, uint32_t log_index,
                            uint32_t log_gen) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return -ENOENT;
  // Gens before indexes: an agent reading the index reads the gen it goes with.
  shm::store_release(&a->printk_gen, printk_gen);
  shm::store_release(&a->log_gen, log_gen);
  shm::store_release(&a->printk_map, printk_index);
  shm::store_release(&a->log_map, log_index);
  return 0;
}

uint32_t bh_agent_area_publish(bh_region *r) {
  bh_agent_area *a = own_area(r);
  if (a == nullptr) return 0;
  uint32_t seq = shm::fetch_add(&a->plan_seq, 1u) + 1;
  // 0 means "no plan yet" to a starting agent: never publish it.
  if (seq == 0) seq = shm::fetch_add(&a->plan_seq, 1u) + 1;
  bh_agent_futex_wake(&a->plan_seq);
  return seq;
}

void bh_agent_area_heartbeat(bh_region *r) {
  bh_agent_area *a = own_area(r);
  if (a != nullptr) shm::store_release(&a->heartbeat_ns, bh_agent_now_ns());
}

// ---- agent side: the checked view ------------------------------------------

namespace bpfhook::agent {

bool field_string(const char *field, size_t len, std::string &out) {
  const void *nul = memchr(field, '\0', len);
  if (nul == nullptr) return false;
  out.assign(field, static_cast<const char *>(nul) - field);
  return true;
}

int AreaView::init(bh_region *r, std::string &err) {
  char buf[256];
  r_ = r;
  base_ = static_cast<uint8_t *>(bh_region_base(r));
  size_ = bh_region_size(r);
  const bh_region_header *h = header(r);
  data_off_ = shm::load_acquire(&h->data_offset);
  uint64_t off = shm::load_acquire(&h->agent_off);
  uint64_t asize = shm::load_acquire(&h->agent_size);
  auto bad = [&](const char *why) {
    snprintf(buf, sizeof buf, "agent area of region '%s': %s", bh_region_name(r), why);
    err = buf;
    return -EPROTO;
  };
  if (off == 0) {
    snprintf(buf, sizeof buf, "region '%s' has no agent area", bh_region_name(r));
    err = buf;
    return -ENOENT;
  }
  if (data_off_ < BH_REGION_HEADER_BYTES || data_off_ > size_) return bad("the region's data offset is corrupt");
  if (off % 8 != 0 || off < data_off_ || asize < sizeof(bh_agent_area) || asize > size_ - off)
    return bad("offset or size outside the region");
  area_ = reinterpret_cast<bh_agent_area *>(base_ + off);
  if (shm::load_acquire(&area_->magic) != BH_AGENT_AREA_MAGIC) return bad("bad magic");
  if (area_->version != BH_AGENT_AREA_VERSION) return bad("unknown version");
  if (area_->area_size < sizeof(bh_agent_area) || area_->area_size > asize) return bad("bad header size");
  // Snapshot the geometry: checked once, never re-read from shared memory.
  struct Table {
    uint64_t off;
    uint32_t cap;
    size_t rec;
    const char *name;
  } t[5] = {{area_->plugins_off, area_->cap_plugins, sizeof(bh_agent_plugin_rec), "plugins"},
            {area_->progs_off, area_->cap_progs, sizeof(bh_agent_prog_rec), "programs"},
            {area_->prog_arrays_off, area_->cap_prog_arrays, sizeof(bh_agent_prog_array_rec), "prog arrays"},
            {area_->attach_off, area_->cap_attach, sizeof(bh_agent_attach_rec), "attachments"},
            {area_->procs_off, area_->cap_procs, sizeof(bh_agent_proc_rec), "processes"}};
  for (const Table &x : t) {
    if (x.cap > kMaxCapacity || x.off % 8 != 0 || x.off < off + sizeof(bh_agent_area) || x.off > off + asize ||
        uint64_t(x.cap) * x.rec > off + asize - x.off) {
      snprintf(buf, sizeof buf, "agent area of region '%s': the %s table is outside the area", bh_region_name(r),
               x.name);
      err = buf;
      return -EPROTO;
    }
  }
  plugins_off_ = t[0].off, cap_plugins_ = t[0].cap;
  progs_off_ = t[1].off, cap_progs_ = t[1].cap;
  prog_arrays_off_ = t[2].off, cap_prog_arrays_ = t[2].cap;
  attach_off_ = t[3].off, cap_attach_ = t[3].cap;
  procs_off_ = t[4].off, cap_procs_ = t[4].cap;
  return 0;
}

namespace {
uint32_t clamp(uint32_t n, uint32_t cap) { return n < cap ? n : cap; }
}  // namespace

uint32_t AreaView::n_plugins() const { return clamp(shm::load_acquire(&area_->n_plugins), cap_plugins_); }
uint32_t AreaView::n_progs() const { return clamp(shm::load_acquire(&area_->n_progs), cap_progs_); }
uint32_t AreaView::n_prog_arrays() const { return clamp(shm::load_acquire(&area_->n_prog_arrays), cap_prog_arrays_); }
uint32_t AreaView::n_attach() const { return clamp(shm::load_acquire(&area_->n_attach), cap_attach_); }

bh_agent_attach_rec *AreaView::attach_rec(uint32_t i) const {
  return i < cap_attach_ ? reinterpret_cast<bh_agent_attach_rec *>(base_ + attach_off_) + i : nullptr;
}
bh_agent_proc_rec *AreaView::proc_rec(uint32_t i) const {
  return i < cap_procs_ ? reinterpret_cast<bh_agent_proc_rec *>(base_ + procs_off_) + i : nullptr;
}
bh_agent_prog_array_rec *AreaView::prog_array_rec(uint32_t i) const {
  return i < cap_prog_arrays_ ? reinterpret_cast<bh_agent_prog_array_rec *>(base_ + prog_arrays_off_) + i : nullptr;
}

bool AreaView::blob_ok(uint64_t off, uint64_t len) const {
  return off >= data_off_ && off <= size_ && len <= size_ - off;
}

int AreaView::read_plugin(uint32_t i, PluginReq &out, std::string &err) const {
  char buf[160];
  if (i >= n_plugins()) {
    snprintf(buf, sizeof buf, "plugin record %u does not exist", i);
    err = buf;
    return -EPROTO;
  }
  const auto *rec = reinterpret_cast<const bh_agent_plugin_rec *>(base_ + plugins_off_) + i;
  if (shm::load_acquire(&rec->state) != BH_AGENT_REC_LIVE || !field_string(rec->name, sizeof rec->name, out.name) ||
      !field_string(rec->path, sizeof rec->path, out.path) || out.path.empty() || out.path[0] != '/') {
    snprintf(buf, sizeof buf, "plugin record %u is malformed (state, unterminated name or path, relative path)", i);
    err = buf;
    return -EPROTO;
  }
  out.flags = rec->flags;
  return 0;
}

int AreaView::read_prog(uint32_t i, ProgReq &out, std::string &err) const {
  char buf[200];
  if (i >= n_progs()) {
    snprintf(buf, sizeof buf, "program record %u does not exist", i);
    err = buf;
    return -EPROTO;
  }
  const auto *rec = reinterpret_cast<const bh_agent_prog_rec *>(base_ + progs_off_) + i;
  if (shm::load_acquire(&rec->state) != BH_AGENT_REC_LIVE || !field_string(rec->name, sizeof rec->name, out.name)) {
    snprintf(buf, sizeof buf, "program record %u is malformed (state or unterminated name)", i);
    err = buf;
    return -EPROTO;
  }
  const uint64_t insns_off = rec->insns_off, maps_off = rec->maps_off;
  const uint32_t insns_len = rec->insns_len, nmaps = rec->nmaps;
  const char *why = nullptr;
  if (insns_len == 0 || insns_len % 8 != 0 || insns_len / 8 > kMaxInsns)
    why = "instruction bytes not a multiple of 8 in 8..8M";
  else if (!blob_ok(insns_off, insns_len))
    why = "instructions outside the region's data area";
  else if (nmaps > kMaxProgMaps)
    why = "more than 64 maps";
  else if (nmaps != 0 && !blob_ok(maps_off, uint64_t(nmaps) * sizeof(bh_agent_map_ref)))
    why = "map references outside the region's data area";
  if (why != nullptr) {
    snprintf(buf, sizeof buf, "prog '%s' (record %u): %s", out.name.c_str(), i, why);
    err = buf;
    return -EPROTO;
  }
  out.insns = base_ + insns_off;
  out.insns_len = insns_len;
  out.maps.resize(nmaps);
  if (nmaps != 0) memcpy(out.maps.data(), base_ + maps_off, nmaps * sizeof(bh_agent_map_ref));
  out.flags = rec->flags;
  out.budget = rec->budget;
  return 0;
}

int AreaView::read_attach(uint32_t i, AttachReq &out, std::string &err) const {
  char buf[160];
  const bh_agent_attach_rec *rec = i < n_attach() ? attach_rec(i) : nullptr;
  if (rec == nullptr) {
    snprintf(buf, sizeof buf, "attachment record %u does not exist", i);
    err = buf;
    return -EPROTO;
  }
  out.state = shm::load_acquire(&rec->state);
  out.plugin = rec->plugin;
  out.prog = rec->prog;
  out.attach_type = rec->attach_type;
  out.cookie = rec->cookie;
  const uint64_t data_off = rec->data_off;
  const uint32_t data_len = rec->data_len;
  const char *why = nullptr;
  if (out.plugin >= n_plugins())
    why = "its plugin index is past the plugins";
  else if (out.prog >= n_progs())
    why = "its program index is past the programs";
  else if (data_len != 0 && !blob_ok(data_off, data_len))
    why = "its private data is outside the region's data area";
  if (why != nullptr) {
    snprintf(buf, sizeof buf, "attachment record %u: %s", i, why);
    err = buf;
    return -EPROTO;
  }
  out.data.assign(base_ + data_off, base_ + data_off + data_len);
  return 0;
}

int AreaView::read_prog_array(uint32_t i, const uint32_t **slots, uint32_t *max_entries, std::string &err) const {
  char buf[160];
  const bh_agent_prog_array_rec *rec = i < n_prog_arrays() ? prog_array_rec(i) : nullptr;
  uint32_t n = rec ? rec->max_entries : 0;
  uint64_t off = rec ? rec->slots_off : 0;
  if (rec == nullptr || shm::load_acquire(&rec->state) != BH_AGENT_REC_LIVE || n == 0 || n > kMaxCapacity ||
      off % 4 != 0 || !blob_ok(off, uint64_t(n) * 4)) {
    snprintf(buf, sizeof buf, "prog array record %u is missing or malformed", i);
    err = buf;
    return -EPROTO;
  }
  *slots = reinterpret_cast<const uint32_t *>(base_ + off);
  *max_entries = n;
  return 0;
}

}  // namespace bpfhook::agent
