// Map life (create, open, close), the storage layout of each type, and the
// user-space and program-side entry points that dispatch on the type.
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <new>

#include "map_internal.h"

using namespace bpfhook::maps;

namespace {

bool is_per_cpu(uint32_t t) { return t == BH_MAP_TYPE_PERCPU_HASH || t == BH_MAP_TYPE_PERCPU_ARRAY; }
bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

struct Layout {
  uint32_t n_buckets = 0;
  uint32_t pool_size = 0;
  uint32_t elem_size = 0;
  uint32_t stride = 0;
  uint64_t off_a = 0;
  uint64_t off_b = 0;
  uint64_t off_c = 0;
  uint64_t cpu_block = 0;
  uint64_t ring_size = 0;
  uint32_t bit_mask = 0;  // bloom filter: bits - 1
  uint64_t total = 0;
  uint64_t align = kCacheLine;
};

constexpr uint32_t kBloomDefaultHashes = 5;  // the kernel's default for map_extra 0

// The kernel's bloom_map_alloc sizing, with its u32 arithmetic: n * k / 5 * 7
// bits (7/5 for 1/ln 2, the size that minimises false positives), rounded up
// to a power of two and at least 64; 2^32 bits when the product overflows or
// passes 2^31.
uint64_t bloom_bits(uint32_t max_entries, uint32_t hashes) {
  uint64_t n = uint64_t(max_entries) * hashes;
  if (n > UINT32_MAX) return uint64_t(1) << 32;
  uint64_t bits = (n / 5) * 7;
  if (bits > (uint64_t(1) << 31)) return uint64_t(1) << 32;
  if (bits <= 64) return 64;
  uint64_t p = 128;
  while (p < bits) p <<= 1;
  return p;
}

// Products below are bounded by the spec limits (entries < 2^28, values <=
// 2^20, CPUs < 2^16), so 64-bit arithmetic cannot overflow; the region's
// size bounds the result afterwards (-ENOMEM).
Layout compute_layout(const bh_map_info &s, uint32_t ncpus) {
  Layout L;
  L.stride = round8(s.value_size);
  uint64_t stride = L.stride;
  switch (s.type) {
    case BH_MAP_TYPE_ARRAY:
      L.off_a = kHeaderBytes;
      L.total = L.off_a + uint64_t(s.max_entries) * stride;
      break;
    case BH_MAP_TYPE_PERCPU_ARRAY:
      // CPU-major: each CPU's values are contiguous and start on their own
      // cache line, so CPUs never share a line (no false sharing), and a
      // CPU's neighbouring entries pack densely.
      L.off_a = kHeaderBytes;
      L.cpu_block = align_up(uint64_t(s.max_entries) * stride, kCacheLine);
      L.total = L.off_a + uint64_t(ncpus) * L.cpu_block;
      break;
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH: {
      uint32_t n = 2;
      while (n < s.max_entries) n <<= 1;
      L.n_buckets = n;
      L.pool_size = s.max_entries + kHashExtraElems;
      bool percpu = s.type == BH_MAP_TYPE_PERCPU_HASH;
      L.elem_size = kElemHeader + round8(s.key_size) + (percpu ? 0 : L.stride);
      L.off_a = kHeaderBytes;
      L.off_b = align_up(L.off_a + uint64_t(n) * sizeof(Bucket), kCacheLine);
      L.total = L.off_b + uint64_t(L.pool_size) * L.elem_size;
      if (percpu) {
        L.cpu_block = align_up(uint64_t(L.pool_size) * stride, kCacheLine);
        L.off_c = align_up(L.total, kCacheLine);
        L.total = L.off_c + uint64_t(ncpus) * L.cpu_block;
      }
      break;
    }
    case BH_MAP_TYPE_LPM_TRIE:
      // Real nodes <= max_entries; intermediate nodes always have two
      // children, so there are fewer of them than real ones; +1 lets an
      // update build the replacement before it frees the old node.
      L.pool_size = 2 * s.max_entries + 1;
      L.elem_size = kElemHeader + round8(s.key_size - 4) + L.stride;
      L.off_a = kHeaderBytes;
      L.total = L.off_a + uint64_t(L.pool_size) * L.elem_size;
      break;
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK:
      L.pool_size = s.max_entries + 1;  // one slot stays empty: full != empty
      L.off_a = kHeaderBytes;
      L.total = L.off_a + uint64_t(L.pool_size) * stride;
      break;
    case BH_MAP_TYPE_RINGBUF:
      L.ring_size = s.max_entries;
      L.off_a = kRingCtlBytes;
      L.total = L.off_a + L.ring_size;
      L.align = 4096;
      break;
    case BH_MAP_TYPE_STACK_TRACE: {
      uint32_t n = 1;
      while (n < s.max_entries) n <<= 1;
      L.n_buckets = n;
      L.elem_size = uint32_t(sizeof(StackBucket)) + s.value_size;
      L.off_a = kHeaderBytes;
      L.total = L.off_a + uint64_t(n) * L.elem_size;
      break;
    }
    case BH_MAP_TYPE_BLOOM_FILTER: {
      L.pool_size = s.map_extra != 0 ? uint32_t(s.map_extra) : kBloomDefaultHashes;
      uint64_t bits = bloom_bits(s.max_entries, L.pool_size);
      L.bit_mask = uint32_t(bits - 1);
      L.ring_size = bits / 8;  // a multiple of 8: bits >= 64
      L.off_a = kHeaderBytes;
      L.total = L.off_a + L.ring_size;
      break;
    }
    case BH_MAP_TYPE_PERF_EVENT_ARRAY:
      L.pool_size = s.max_entries;
      L.ring_size = s.map_extra;
      L.off_a = kHeaderBytes;
      L.off_b = align_up(L.off_a + uint64_t(s.max_entries) * sizeof(PerfRingCtl), 4096);
      L.total = L.off_b + uint64_t(s.max_entries) * L.ring_size;
      L.align = 4096;
      break;
    default: break;
  }
  return L;
}

// Printable ASCII without spaces: wider than the kernel's [A-Za-z0-9_.], so
// a runtime can qualify names ("probe.bpf.o/counts"), and still safe to
// print in any log line or error message.
bool valid_name(const char *name) {
  size_t n = strnlen(name, BH_REGION_NAME_MAX);
  if (n >= BH_REGION_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// Checks a spec the way the kernel's map_alloc_check functions do and fills
// `info` with the resolved values (perf rings, ring size).
int check_spec(const bh_map_spec &s, uint32_t ncpus, bh_map_info &info) {
  memset(&info, 0, sizeof(info));
  const char *name = s.name != nullptr ? s.name : "";
  if (!valid_name(name)) return -EINVAL;
  strncpy(info.name, name, BH_REGION_NAME_MAX - 1);
  info.type = s.type;
  info.key_size = s.key_size;
  info.value_size = s.value_size;
  info.max_entries = s.max_entries;
  info.map_flags = s.map_flags;
  info.map_extra = s.map_extra;
  info.ncpus = ncpus;

  const uint32_t common = BH_F_NUMA_NODE | BH_F_RDONLY | BH_F_WRONLY | BH_F_RDONLY_PROG | BH_F_WRONLY_PROG;
  uint32_t allowed = common;
  switch (s.type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_PERCPU_HASH:
    case BH_MAP_TYPE_LRU_HASH:
      allowed |= BH_F_NO_PREALLOC | BH_F_ZERO_SEED;
      if (s.type == BH_MAP_TYPE_LRU_HASH) allowed |= BH_F_NO_COMMON_LRU;
      if (s.key_size == 0 || s.value_size == 0 || s.max_entries == 0) return -EINVAL;
      if (s.key_size > kMaxKeySize || s.value_size > kMaxValueSize) return -E2BIG;
      if (s.max_entries > kMaxEntries) return -E2BIG;
      break;
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY:
      if (s.type == BH_MAP_TYPE_ARRAY) allowed |= BH_F_MMAPABLE;
      if (s.key_size != 4 || s.value_size == 0 || s.max_entries == 0) return -EINVAL;
      if (s.value_size > kMaxValueSize) return -E2BIG;
      if (s.max_entries > kMaxEntries) return -E2BIG;
      break;
    case BH_MAP_TYPE_LPM_TRIE:
      allowed |= BH_F_NO_PREALLOC;
      if (s.key_size < 5 || s.key_size > 4 + 256 || s.value_size == 0 || s.max_entries == 0) return -EINVAL;
      if (s.value_size > kMaxValueSize) return -E2BIG;
      if (s.max_entries > kMaxEntries / 2) return -E2BIG;
      break;
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK:
      if (s.key_size != 0 || s.value_size == 0 || s.max_entries == 0) return -EINVAL;
      if (s.value_size > kMaxValueSize) return -E2BIG;
      if (s.max_entries > kMaxEntries) return -E2BIG;
      break;
    case BH_MAP_TYPE_STACK_TRACE:
      // As the kernel's stack_map_alloc; BPF_F_STACK_BUILD_ID (values of
      // struct bpf_stack_build_id) is not supported.
      allowed = BH_F_NUMA_NODE | BH_F_RDONLY | BH_F_WRONLY;
      if (s.key_size != 4 || s.value_size < 8 || s.value_size % 8 != 0 || s.max_entries == 0) return -EINVAL;
      if (s.value_size / 8 > BH_STACK_MAX_DEPTH) return -EINVAL;
      if (s.max_entries > kMaxEntries) return -E2BIG;
      break;
    case BH_MAP_TYPE_RINGBUF:
      allowed = BH_F_NUMA_NODE;
      // The kernel wants a power of two and a multiple of the page size.
      if (s.key_size != 0 || s.value_size != 0) return -EINVAL;
      if (!is_pow2(s.max_entries) || s.max_entries < 4096 || s.max_entries > (1u << 30)) return -EINVAL;
      break;
    case BH_MAP_TYPE_BLOOM_FILTER:
      // As the kernel's bloom_map_alloc: keyless; map_extra's low 4 bits are
      // the number of hash functions and the rest must be 0. No bound on
      // max_entries: the bit array is capped (bloom_bits).
      allowed |= BH_F_ZERO_SEED;
      if (s.key_size != 0 || s.value_size == 0 || s.max_entries == 0) return -EINVAL;
      if ((s.map_extra & ~uint64_t(0xf)) != 0) return -EINVAL;
      if (s.value_size > kMaxValueSize) return -E2BIG;
      break;
    case BH_MAP_TYPE_PERF_EVENT_ARRAY: {
      // key and value are ints (CPU index, perf fd) in the kernel; here the
      // value slot is unused but kept for source compatibility.
      if ((s.key_size != 0 && s.key_size != 4) || (s.value_size != 0 && s.value_size != 4)) return -EINVAL;
      info.key_size = 4;
      info.value_size = 4;
      info.max_entries = s.max_entries != 0 ? s.max_entries : ncpus;
      if (info.max_entries > 4096) return -E2BIG;
      uint64_t ring = s.map_extra != 0 ? s.map_extra : BH_PERF_DEFAULT_RING_SIZE;
      if (!is_pow2(ring) || ring < 4096 || ring > (1u << 30)) return -EINVAL;
      info.map_extra = ring;
      break;
    }
    default: return -EINVAL;
  }
  if ((s.map_flags & ~allowed) != 0) return -EINVAL;
  if (s.type != BH_MAP_TYPE_PERF_EVENT_ARRAY && s.type != BH_MAP_TYPE_BLOOM_FILTER && s.map_extra != 0) return -EINVAL;
  info.user_value_size = is_per_cpu(s.type) ? round8(info.value_size) * ncpus : info.value_size;
  return 0;
}

uint64_t random_seed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = mix64(uint64_t(ts.tv_nsec) ^ (uint64_t(ts.tv_sec) << 32) ^ uint64_t(getpid()));
  }
  return seed;
}

struct InitCtx {
  const bh_map_info *info;
  const Layout *layout;
  uint32_t ncpus;
  uint64_t seed;
};

// Writes the map header into fresh (zeroed) storage before the directory
// entry is published. Pools are lazy (next_unused), so nothing else needs
// touching and the region's pages stay unallocated until used.
int init_storage(void *cookie, void *block, uint64_t) {
  const auto &c = *static_cast<const InitCtx *>(cookie);
  auto *h = static_cast<MapHeader *>(block);
  h->layout = kMapLayout;
  h->type = c.info->type;
  h->key_size = c.info->key_size;
  h->value_size = c.info->value_size;
  h->max_entries = c.info->max_entries;
  h->map_flags = c.info->map_flags;
  h->ncpus = c.ncpus;
  h->seed = c.seed;
  h->n_buckets = c.layout->n_buckets;
  h->pool_size = c.layout->pool_size;
  h->elem_size = c.layout->elem_size;
  h->value_stride = c.layout->stride;
  h->ring_size = c.layout->ring_size;
  h->off_a = c.layout->off_a;
  h->off_b = c.layout->off_b;
  h->off_c = c.layout->off_c;
  h->cpu_block = c.layout->cpu_block;
  shm::store_release(&h->magic, kMapMagic);
  return 0;
}

}  // namespace

extern "C" {

int bh_map_create(bh_region *r, const bh_map_spec *spec, bh_map **out) {
  if (r == nullptr || spec == nullptr || out == nullptr) return -EINVAL;
  if (spec->sz < offsetof(bh_map_spec, map_flags) + sizeof(uint32_t)) return -EINVAL;
  bh_map_spec s{};
  memcpy(&s, spec, spec->sz < sizeof(s) ? spec->sz : sizeof(s));
  const auto *bytes = reinterpret_cast<const uint8_t *>(spec);
  for (size_t i = sizeof(s); i < spec->sz; i++) {
    if (bytes[i] != 0) return -EINVAL;
  }
  uint32_t ncpus = bh_region_ncpus(r);
  bh_map_info info;
  int err = check_spec(s, ncpus, info);
  if (err != 0) return err;
  Layout layout = compute_layout(info, ncpus);

  bh_region_map_desc desc;
  memset(&desc, 0, sizeof(desc));
  memcpy(desc.name, info.name, sizeof(desc.name));
  desc.type = info.type;
  desc.key_size = info.key_size;
  desc.value_size = info.value_size;
  desc.max_entries = info.max_entries;
  desc.map_flags = info.map_flags;
  desc.map_extra = info.map_extra;
  InitCtx ctx{&info, &layout, ncpus, (info.map_flags & BH_F_ZERO_SEED) ? 0 : random_seed()};
  uint32_t index = 0;
  err = bh_region_add_map(r, &desc, layout.total, layout.align, init_storage, &ctx, &index);
  if (err != 0) return err;
  return bh_map_open(r, index, out);
}

int bh_map_open(bh_region *r, uint32_t index, bh_map **out) {
  if (r == nullptr || out == nullptr) return -EINVAL;
  // One copy of the entry, checked and then used: another process can
  // rewrite the shared one between two reads, and the entry may be freed and
  // reused meanwhile (the hold below notices, by its gen).
  bh_region_map_desc desc;
  int err = bh_region_map_read(r, index, &desc);
  if (err != 0) return err;
  desc.name[BH_REGION_NAME_MAX - 1] = '\0';
  const bh_region_map_desc *d = &desc;
  uint64_t region_size = bh_region_size(r);
  if (d->storage_off > region_size || d->storage_size > region_size - d->storage_off ||
      d->storage_size < kHeaderBytes) {
    return -EPROTO;
  }
  auto *storage = static_cast<uint8_t *>(bh_region_base(r)) + d->storage_off;
  auto *h = reinterpret_cast<MapHeader *>(storage);

  // Re-derive the layout from the directory entry and insist that the
  // header agrees: a region written by another build fails here, cleanly.
  bh_map_info info;
  memset(&info, 0, sizeof(info));
  memcpy(info.name, d->name, sizeof(info.name));
  info.name[BH_REGION_NAME_MAX - 1] = '\0';
  info.type = d->type;
  info.key_size = d->key_size;
  info.value_size = d->value_size;
  info.max_entries = d->max_entries;
  info.map_flags = d->map_flags;
  info.map_extra = d->map_extra;
  info.index = index;
  info.ncpus = bh_region_ncpus(r);
  info.user_value_size = is_per_cpu(d->type) ? round8(d->value_size) * info.ncpus : d->value_size;
  info.storage_off = d->storage_off;
  info.storage_size = d->storage_size;
  info.gen = d->gen;
  // The entry's sizes pass the same checks as a new map's before they size
  // anything (compute_layout trusts them: a huge max_entries would never end
  // its bucket loop, a small LPM key would wrap its node size).
  bh_map_spec spec{};
  spec.sz = sizeof(spec);
  spec.name = d->name;
  spec.type = d->type;
  spec.key_size = d->key_size;
  spec.value_size = d->value_size;
  spec.max_entries = d->max_entries;
  spec.map_flags = d->map_flags;
  spec.map_extra = d->map_extra;
  bh_map_info checked;
  if (check_spec(spec, info.ncpus, checked) != 0 || checked.key_size != d->key_size ||
      checked.value_size != d->value_size || checked.max_entries != d->max_entries ||
      checked.map_extra != d->map_extra) {
    return -EPROTO;
  }
  Layout L = compute_layout(info, info.ncpus);
  if (shm::load_acquire(&h->magic) != kMapMagic || h->layout != kMapLayout || h->type != d->type ||
      h->key_size != d->key_size || h->value_size != d->value_size || h->max_entries != d->max_entries ||
      h->ncpus != info.ncpus || L.total == 0 || L.total > d->storage_size || h->n_buckets != L.n_buckets ||
      h->pool_size != L.pool_size || h->elem_size != L.elem_size || h->off_a != L.off_a || h->off_b != L.off_b ||
      h->off_c != L.off_c || h->cpu_block != L.cpu_block || h->ring_size != L.ring_size) {
    return -EPROTO;
  }

  auto *m = new (std::nothrow) bh_map();
  if (m == nullptr) return -ENOMEM;
  // Counted per region mapping, so that a map made with free-on-close goes
  // when the last handle of this process does, not with the first.
  err = bh_region_map_hold(r, index, d->gen);
  if (err != 0) {
    delete m;
    return err;
  }
  m->gen = d->gen;
  m->type = d->type;
  m->key_size = d->key_size;
  m->value_size = d->value_size;
  m->max_entries = d->max_entries;
  m->stride = L.stride;
  m->ncpus = info.ncpus;
  m->bucket_mask = d->type == BH_MAP_TYPE_BLOOM_FILTER ? L.bit_mask : L.n_buckets ? L.n_buckets - 1 : 0;
  m->pool_size = L.pool_size;
  m->elem_size = L.elem_size;
  m->key_stride = round8(d->key_size);
  m->seed = h->seed;
  m->cpu_block = L.cpu_block;
  m->hdr = h;
  m->a = storage + L.off_a;
  m->b = L.off_b ? storage + L.off_b : nullptr;
  m->c = L.off_c ? storage + L.off_c : nullptr;
  m->ring_size = L.ring_size;
  m->storage = storage;
  m->storage_size = d->storage_size;
  m->region = r;
  m->refs = 1;
  m->info = info;
  bh_region_ref(r);
  *out = m;
  return 0;
}

int bh_map_open_by_name(bh_region *r, const char *name, bh_map **out) {
  if (r == nullptr || name == nullptr) return -EINVAL;
  int index = bh_region_find_map(r, name);
  if (index < 0) return index;
  return bh_map_open(r, uint32_t(index), out);
}

void bh_map_ref(bh_map *m) { __atomic_fetch_add(&m->refs, 1u, __ATOMIC_RELAXED); }

void bh_map_close(bh_map *m) {
  if (m == nullptr) return;
  if (__atomic_fetch_sub(&m->refs, 1u, __ATOMIC_ACQ_REL) != 1) return;
  bh_region *r = m->region;
  uint32_t index = m->info.index;
  uint32_t gen = m->gen;
  delete m;
  bh_region_map_release(r, index, gen);  // may free the map's storage (free-on-close)
  bh_region_unref(r);
}

void bh_map_free_on_close(bh_map *m) {
  if (m != nullptr) bh_region_map_free_on_release(m->region, m->info.index, m->gen);
}

const bh_map_info *bh_map_get_info(const bh_map *m) { return &m->info; }

uint64_t bh_map_corruptions(const bh_map *m) { return __atomic_load_n(&m->corruptions, __ATOMIC_RELAXED); }

int bh_map_get_lock_stats(const bh_map *m, bh_map_lock_stats *st) {
  if (m == nullptr || st == nullptr) return -EINVAL;
  st->busy = shm::load_relaxed(&m->hdr->busy);
  st->takeovers = shm::load_relaxed(&m->hdr->takeovers);
  return 0;
}

void *bh_map_storage(const bh_map *m, size_t *len) {
  if (len != nullptr) *len = size_t(m->storage_size);
  return m->storage;
}

int64_t bh_map_count(const bh_map *m) {
  switch (m->type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH:
    case BH_MAP_TYPE_LPM_TRIE: {
      // Writers never let the count pass max_entries.
      uint32_t n = shm::load_relaxed(&m->hdr->count);
      return n <= m->max_entries ? int64_t(n) : int64_t(corrupt(m));
    }
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return queue_count(const_cast<bh_map *>(m));
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY: return m->max_entries;
    default: return -EINVAL;
  }
}

// ---- user space ----

int bh_map_lookup(bh_map *m, const void *key, void *value) {
  if (m == nullptr || value == nullptr) return -EINVAL;
  switch (m->type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH:
      if (key == nullptr) return -EINVAL;
      return hash_lookup_copy(m, key, value);
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY:
      if (key == nullptr) return -EINVAL;
      return array_lookup_copy(m, key, value);
    case BH_MAP_TYPE_LPM_TRIE:
      if (key == nullptr) return -EINVAL;
      return lpm_lookup_copy(m, key, value);
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return int(queue_pop(m, value, false, true));
    case BH_MAP_TYPE_STACK_TRACE:
      if (key == nullptr) return -EINVAL;
      return stack_lookup_copy(m, key, value);
    case BH_MAP_TYPE_BLOOM_FILTER: return int(bloom_peek(m, value));  // the syscall reads the value: a membership test
    default: return -EOPNOTSUPP;
  }
}

int bh_map_update(bh_map *m, const void *key, const void *value, uint64_t flags) {
  if (m == nullptr || value == nullptr) return -EINVAL;
  switch (m->type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH:
      if (key == nullptr) return -EINVAL;
      return int(hash_update(m, key, value, flags, true));
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY:
      if (key == nullptr) return -EINVAL;
      return int(array_update(m, key, value, flags, true));
    case BH_MAP_TYPE_LPM_TRIE:
      if (key == nullptr) return -EINVAL;
      return int(lpm_update(m, key, value, flags, true));
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return int(queue_push(m, value, flags, true));
    case BH_MAP_TYPE_STACK_TRACE: return -EINVAL;                            // only bpf_get_stackid stores stacks
    case BH_MAP_TYPE_BLOOM_FILTER: return int(bloom_push(m, value, flags));  // the syscall maps update to push
    default: return -EOPNOTSUPP;
  }
}

}  // extern "C"

namespace {
// Delete for both sides; `user` picks the lock wait budget (shm::Wait).
int map_delete(bh_map *m, const void *key, bool user) {
  if (m == nullptr) return -EINVAL;
  switch (m->type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH:
      if (key == nullptr) return -EINVAL;
      return int(hash_delete(m, key, user));
    case BH_MAP_TYPE_LPM_TRIE:
      if (key == nullptr) return -EINVAL;
      return int(lpm_delete(m, key, user));
    case BH_MAP_TYPE_STACK_TRACE:
      if (key == nullptr) return -EINVAL;
      return int(stack_delete(m, key, user));
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY:
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return -EINVAL;  // array elements always exist; queues pop instead
    default: return -EOPNOTSUPP;
  }
}
}  // namespace

extern "C" {

int bh_map_delete(bh_map *m, const void *key) { return map_delete(m, key, true); }

int bh_map_lookup_and_delete(bh_map *m, const void *key, void *value) {
  if (m == nullptr || value == nullptr) return -EINVAL;
  switch (m->type) {
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return int(queue_pop(m, value, true, true));
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH:
      if (key == nullptr) return -EINVAL;
      return hash_lookup_and_delete(m, key, value);
    default: return -EOPNOTSUPP;
  }
}

int bh_map_get_next_key(bh_map *m, const void *key, void *next_key) {
  // A keyless map has no key bytes to write (an empty buffer may be NULL).
  if (m == nullptr || (next_key == nullptr && m->key_size != 0)) return -EINVAL;
  switch (m->type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH: return hash_next_key(m, key, next_key);
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY: return array_next_key(m, key, next_key);
    case BH_MAP_TYPE_LPM_TRIE: return lpm_next_key(m, key, next_key);
    case BH_MAP_TYPE_STACK_TRACE: return stack_next_key(m, key, next_key);
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return -EINVAL;
    default: return -EOPNOTSUPP;
  }
}

// ---- programs ----

void *bh_map_lookup_elem(bh_map *m, const void *key) {
  switch (m->type) {
    case BH_MAP_TYPE_ARRAY: return array_lookup(m, key);
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH: return hash_lookup_elem(m, key);
    case BH_MAP_TYPE_PERCPU_ARRAY: return percpu_array_lookup(m, key);
    case BH_MAP_TYPE_LPM_TRIE: return lpm_lookup(m, key);
    default: return nullptr;
  }
}

long bh_map_update_elem(bh_map *m, const void *key, const void *value, uint64_t flags) {
  switch (m->type) {
    case BH_MAP_TYPE_HASH:
    case BH_MAP_TYPE_LRU_HASH:
    case BH_MAP_TYPE_PERCPU_HASH: return hash_update(m, key, value, flags, false);
    case BH_MAP_TYPE_ARRAY:
    case BH_MAP_TYPE_PERCPU_ARRAY: return array_update(m, key, value, flags, false);
    case BH_MAP_TYPE_LPM_TRIE: return lpm_update(m, key, value, flags, false);
    case BH_MAP_TYPE_QUEUE:
    case BH_MAP_TYPE_STACK: return queue_push(m, value, flags, false);  // the kernel maps update to push
    case BH_MAP_TYPE_BLOOM_FILTER: return -EINVAL;  // the kernel's bloom_map_update_elem: programs push
    default: return -EOPNOTSUPP;
  }
}

long bh_map_delete_elem(bh_map *m, const void *key) { return map_delete(m, key, false); }

long bh_map_push_elem(bh_map *m, const void *value, uint64_t flags) {
  if (m->type == BH_MAP_TYPE_BLOOM_FILTER) return bloom_push(m, value, flags);
  if (m->type != BH_MAP_TYPE_QUEUE && m->type != BH_MAP_TYPE_STACK) return -EINVAL;
  return queue_push(m, value, flags, false);
}

long bh_map_pop_elem(bh_map *m, void *value) {
  if (m->type == BH_MAP_TYPE_BLOOM_FILTER) return -EOPNOTSUPP;  // the kernel's bloom_map_pop_elem
  if (m->type != BH_MAP_TYPE_QUEUE && m->type != BH_MAP_TYPE_STACK) return -EINVAL;
  return queue_pop(m, value, true, false);
}

// For a bloom filter `value` is read (the value to test), not written.
long bh_map_peek_elem(bh_map *m, void *value) {
  if (m->type == BH_MAP_TYPE_BLOOM_FILTER) return bloom_peek(m, value);
  if (m->type != BH_MAP_TYPE_QUEUE && m->type != BH_MAP_TYPE_STACK) return -EINVAL;
  return queue_pop(m, value, false, false);
}

void *bh_map_value_addr(bh_map *m, uint32_t index) {
  if (m == nullptr || m->type != BH_MAP_TYPE_ARRAY || index >= m->max_entries) return nullptr;
  return m->a + uint64_t(index) * m->stride;
}

}  // extern "C"
