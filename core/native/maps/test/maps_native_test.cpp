// Native tests of the region and the maps through their C API alone (no
// Node), as the agent will use them. Prints one line per failed check and a
// summary; exits non-zero on failure.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/maps.h"
#include "bpfhook/region.h"
#include "bpfhook/vm.h"
#include "map_internal.h"
#include "map_stress.h"

extern std::map<uint32_t, std::string> g_registered_helpers __attribute__((weak));

static int g_failures = 0;
static int g_checks = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    g_checks++;                                                                \
    if (!(cond)) {                                                             \
      g_failures++;                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)
#define CHECK_EQ(a, b)                                                                                   \
  do {                                                                                                   \
    g_checks++;                                                                                          \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                                \
    if (va_ != vb_) {                                                                                    \
      g_failures++;                                                                                      \
      fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, va_, #b, vb_); \
    }                                                                                                    \
  } while (0)

static int64_t s64(uint64_t v) { return int64_t(v); }

static std::string region_name(const char *tag) { return "/bpfhook-test-" + std::to_string(getpid()) + "-" + tag; }

static bh_map *make(bh_region *r, const char *name, uint32_t type, uint32_t ks, uint32_t vs, uint32_t max,
                    uint32_t flags = 0, uint64_t extra = 0) {
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.name = name;
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  s.map_flags = flags;
  s.map_extra = extra;
  bh_map *m = nullptr;
  int err = bh_map_create(r, &s, &m);
  if (err != 0) fprintf(stderr, "create %s: %d\n", name, err);
  return m;
}

static int create_err(bh_region *r, uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags = 0,
                      const char *name = "") {
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.name = name;
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  s.map_flags = flags;
  bh_map *m = nullptr;
  int err = bh_map_create(r, &s, &m);
  if (err == 0) bh_map_close(m);
  return err;
}

static void test_region() {
  std::string name = region_name("region");
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = 1 << 20;
  o.max_maps = 8;
  bh_region *r = nullptr;
  CHECK_EQ(bh_region_create(name.c_str(), &o, &r), 0);
  bh_region *dup = nullptr;
  CHECK_EQ(bh_region_create(name.c_str(), &o, &dup), -EEXIST);
  CHECK_EQ(bh_region_create("no-slash", &o, &dup), -EINVAL);
  CHECK_EQ(bh_region_create("/a/b", &o, &dup), -EINVAL);
  CHECK_EQ(bh_region_size(r), 1 << 20);
  CHECK(bh_region_ncpus(r) >= 1);
  CHECK_EQ(bh_region_ncpus(r), bh_possible_cpus());
  auto *h = static_cast<bh_region_header *>(bh_region_base(r));
  CHECK(h->magic == BH_REGION_MAGIC);
  CHECK_EQ(h->layout_version, 3);
  CHECK_EQ(h->agent_off, 0);
  CHECK_EQ(h->dir_capacity, 8);
  CHECK_EQ(h->data_offset % 4096, 0);

  uint64_t off = 0;
  CHECK_EQ(bh_region_alloc(r, 100, 64, &off), 0);
  CHECK_EQ(off % 64, 0);
  CHECK(off >= h->data_offset);
  CHECK_EQ(bh_region_alloc(r, 2 << 20, 64, &off), -ENOMEM);
  uint64_t used = bh_region_used(r);
  CHECK_EQ(bh_region_alloc(r, 1 << 20, 64, &off), -ENOMEM);
  CHECK_EQ(bh_region_used(r), used);  // a failed allocation changes nothing

  bh_map *a = make(r, "counts", BH_MAP_TYPE_ARRAY, 4, 8, 16);
  CHECK(a != nullptr);
  uint64_t gen = bh_region_generation(r);
  CHECK_EQ(gen, 1);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 16, 0, "counts"), -EEXIST);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 16, 0, "bad name"), -EINVAL);
  CHECK_EQ(
      create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 16, 0, "0123456789012345678901234567890123456789012345678901234567890123"),
      -EINVAL);
  uint32_t key = 3;
  uint64_t val = 42;
  CHECK_EQ(bh_map_update(a, &key, &val, BH_ANY), 0);

  // A second mapping of the same object, as an agent opens it by name: at a
  // different address, same contents, writes visible both ways.
  bh_region *r2 = nullptr;
  CHECK_EQ(bh_region_open(name.c_str(), &r2), 0);
  CHECK(bh_region_base(r2) != bh_region_base(r));
  CHECK_EQ(bh_region_map_count(r2), 1);
  CHECK_EQ(bh_region_find_map(r2, "counts"), 0);
  CHECK_EQ(bh_region_find_map(r2, "nope"), -ENOENT);
  bh_map *a2 = nullptr;
  CHECK_EQ(bh_map_open_by_name(r2, "counts", &a2), 0);
  uint64_t got = 0;
  CHECK_EQ(bh_map_lookup(a2, &key, &got), 0);
  CHECK_EQ(got, 42);
  auto *p2 = static_cast<uint64_t *>(bh_map_lookup_elem(a2, &key));
  *p2 = 7;
  CHECK_EQ(bh_map_lookup(a, &key, &got), 0);
  CHECK_EQ(got, 7);

  // Too many maps: -ENOSPC; too big: -ENOMEM.
  CHECK_EQ(create_err(r, BH_MAP_TYPE_HASH, 4, 8, 1 << 20), -ENOMEM);
  for (int i = 1; i < 8; i++) CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 1), 0);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 1), -ENOSPC);

  // The owner's close unlinks the name; open handles keep the mapping.
  bh_map_close(a);
  bh_region_close(r);
  bh_region *r3 = nullptr;
  CHECK_EQ(bh_region_open(name.c_str(), &r3), -ENOENT);
  CHECK_EQ(bh_map_lookup(a2, &key, &got), 0);
  CHECK_EQ(got, 7);
  bh_map_close(a2);
  bh_region_close(r2);

  // Not our layout: refused at open.
  std::string junk = region_name("junk");
  CHECK_EQ(bh_region_create(junk.c_str(), &o, &r), 0);
  static_cast<bh_region_header *>(bh_region_base(r))->layout_version = 99;
  CHECK_EQ(bh_region_open(junk.c_str(), &r2), -EPROTO);
  bh_region_close(r);
}

// Life cycle (layout 2): freed maps give back their entry and storage, the
// storage comes back zeroed, the free list coalesces, other mappings see the
// entry die; opening checks owner and mode; random names.
static void test_region_lifecycle() {
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = 1 << 20;
  o.max_maps = 4;
  bh_region *r = nullptr;
  CHECK_EQ(bh_region_create(nullptr, &o, &r), 0);  // a random name
  std::string name = bh_region_name(r);
  CHECK_EQ(name.rfind("/bpfhook-" + std::to_string(getpid()) + "-", 0), 0);
  CHECK_EQ(name.size(), std::string("/bpfhook-" + std::to_string(getpid()) + "-").size() + 16);
  bh_region *r2 = nullptr;
  CHECK_EQ(bh_region_create(nullptr, &o, &r2), 0);
  CHECK(std::string(bh_region_name(r2)) != name);
  bh_region_close(r2);
  auto *h = static_cast<bh_region_header *>(bh_region_base(r));
  CHECK(h->creator_start != 0);
  CHECK(h->creator_pidns != 0);
  o.mode = 0640;
  CHECK_EQ(bh_region_create(nullptr, &o, &r2), -EINVAL);  // group bits: refused
  o.mode = 0;

  uint64_t used0 = bh_region_used(r);
  bh_map *a = make(r, "a", BH_MAP_TYPE_ARRAY, 4, 8, 1000);
  bh_map *b = make(r, "b", BH_MAP_TYPE_HASH, 4, 8, 100);
  bh_map *c = make(r, "c", BH_MAP_TYPE_ARRAY, 4, 8, 10);
  CHECK(a != nullptr && b != nullptr && c != nullptr);
  uint32_t key = 5;
  uint64_t v = 99;
  CHECK_EQ(bh_map_update(a, &key, &v, BH_ANY), 0);
  CHECK_EQ(bh_map_update(b, &key, &v, BH_ANY), 0);
  uint64_t a_off = bh_map_get_info(a)->storage_off;
  CHECK_EQ(bh_region_live_maps(r), 3);

  // Another mapping holds its own handle on "a": freeing follows this
  // mapping's handles only, and the other one sees the entry die.
  bh_region *other = nullptr;
  CHECK_EQ(bh_region_open(name.c_str(), &other), 0);
  uint64_t gen_before = bh_region_generation(other);

  // Two handles in this mapping: free-on-close waits for both.
  bh_map *a_again = nullptr;
  CHECK_EQ(bh_map_open_by_name(r, "a", &a_again), 0);
  bh_map_free_on_close(a);
  bh_map_close(a);
  CHECK_EQ(bh_region_find_map(r, "a"), 0);  // still there: a_again is open
  bh_map_close(a_again);
  CHECK_EQ(bh_region_find_map(r, "a"), -ENOENT);
  CHECK_EQ(bh_region_find_map(other, "a"), -ENOENT);
  CHECK(bh_region_generation(other) > gen_before);
  bh_region_map_desc d;
  CHECK_EQ(bh_region_map_read(other, 0, &d), -ENOENT);
  CHECK_EQ(bh_region_map_at(other, 0)->state, BH_REGION_MAP_DEAD);
  bh_map *stale = nullptr;
  CHECK_EQ(bh_map_open(other, 0, &stale), -ENOENT);
  CHECK_EQ(bh_region_live_maps(r), 2);
  CHECK(bh_region_free_bytes(r) > 0);

  // The entry and the (zeroed) storage are reused.
  bh_map *a2 = make(r, "a2", BH_MAP_TYPE_ARRAY, 4, 8, 1000);
  CHECK(a2 != nullptr);
  CHECK_EQ(bh_map_get_info(a2)->index, 0);
  CHECK_EQ(bh_map_get_info(a2)->storage_off, a_off);
  uint64_t got = 1;
  CHECK_EQ(bh_map_lookup(a2, &key, &got), 0);
  CHECK_EQ(got, 0);
  CHECK_EQ(bh_region_map_read(other, 0, &d), 0);
  CHECK(std::string(d.name) == "a2");
  CHECK_EQ(d.gen, 2);  // freed (1), reused (2)

  // Freeing the last block moves the bump cursor back; freeing neighbours
  // coalesces them; at the end usage is what it was.
  bh_map_free_on_close(c);
  bh_map_close(c);
  bh_map_free_on_close(b);
  bh_map_close(b);
  bh_map_free_on_close(a2);
  bh_map_close(a2);
  CHECK_EQ(bh_region_live_maps(r), 0);
  CHECK_EQ(bh_region_used(r), used0);
  CHECK_EQ(bh_region_free_bytes(r), 0);
  CHECK_EQ(h->free_head, 0);
  CHECK_EQ(h->alloc_next, used0);

  // Many cycles: no -ENOSPC (4 entries), no growth.
  for (int i = 0; i < 1000; i++) {
    bh_map *x = make(r, "x", BH_MAP_TYPE_HASH, 8, 16, 64);
    bh_map *y = make(r, "y", BH_MAP_TYPE_RINGBUF, 0, 0, 4096);
    if (x == nullptr || y == nullptr) {
      CHECK(false);
      break;
    }
    bh_map_free_on_close(x);
    bh_map_free_on_close(y);
    bh_map_close(x);
    bh_map_close(y);
  }
  CHECK(bh_region_used(r) <= used0 + 8192);
  CHECK_EQ(bh_region_live_maps(r), 0);

  // A hole in the middle is reused first fit, and the rest stays listed.
  bh_map *p = make(r, "p", BH_MAP_TYPE_ARRAY, 4, 8, 4096);
  bh_map *q = make(r, "q", BH_MAP_TYPE_ARRAY, 4, 8, 16);
  bh_map_free_on_close(p);
  bh_map_close(p);
  uint64_t free_hole = bh_region_free_bytes(r);
  CHECK(free_hole >= 4096 * 8);
  bh_map *small = make(r, "small", BH_MAP_TYPE_ARRAY, 4, 8, 16);
  CHECK(bh_map_get_info(small)->storage_off < bh_map_get_info(q)->storage_off);
  CHECK(bh_region_free_bytes(r) < free_hole && bh_region_free_bytes(r) > 0);
  bh_map_close(small);
  bh_map_close(q);
  bh_map_close(stale);
  bh_region_close(other);
  bh_region_close(r);

  // Owner and mode checks at open.
  std::string loose = region_name("loose");
  CHECK_EQ(bh_region_create(loose.c_str(), nullptr, &r), 0);
  CHECK_EQ(fchmod(shm_open(loose.c_str(), O_RDWR, 0), 0644), 0);
  CHECK_EQ(bh_region_open(loose.c_str(), &r2), -EACCES);
  if (geteuid() == 0) {
    int fd = shm_open(loose.c_str(), O_RDWR, 0);
    CHECK_EQ(fchmod(fd, 0600), 0);
    CHECK_EQ(fchown(fd, 12345, 12345), 0);
    close(fd);
    CHECK_EQ(bh_region_open(loose.c_str(), &r2), -EPERM);
  }
  bh_region_close(r);
}

static void test_array(bh_region *r) {
  bh_map *m = make(r, "arr", BH_MAP_TYPE_ARRAY, 4, 12, 4);
  uint32_t k = 0;
  uint8_t v[12] = {1, 2, 3};
  uint8_t out[12];
  CHECK_EQ(bh_map_lookup(m, &k, out), 0);
  CHECK_EQ(out[0], 0);
  CHECK_EQ(bh_map_update(m, &k, v, BH_ANY), 0);
  CHECK_EQ(bh_map_update(m, &k, v, BH_EXIST), 0);
  CHECK_EQ(bh_map_update(m, &k, v, BH_NOEXIST), -EEXIST);
  CHECK_EQ(bh_map_update(m, &k, v, 7), -EINVAL);
  CHECK_EQ(bh_map_update(m, &k, v, BH_F_LOCK), -EINVAL);
  k = 4;
  CHECK_EQ(bh_map_update(m, &k, v, BH_ANY), -E2BIG);
  CHECK_EQ(bh_map_lookup(m, &k, out), -ENOENT);
  CHECK(bh_map_lookup_elem(m, &k) == nullptr);
  CHECK_EQ(bh_map_delete(m, &k), -EINVAL);
  k = 2;
  auto *p = static_cast<uint8_t *>(bh_map_lookup_elem(m, &k));
  CHECK(p != nullptr);
  p[5] = 99;  // programs write through the pointer
  CHECK_EQ(bh_map_lookup(m, &k, out), 0);
  CHECK_EQ(out[5], 99);
  CHECK(bh_map_value_addr(m, 2) == p);
  CHECK(bh_map_value_addr(m, 4) == nullptr);
  uint32_t next = 0;
  CHECK_EQ(bh_map_get_next_key(m, nullptr, &next), 0);
  CHECK_EQ(next, 0);
  k = 2;
  CHECK_EQ(bh_map_get_next_key(m, &k, &next), 0);
  CHECK_EQ(next, 3);
  k = 3;
  CHECK_EQ(bh_map_get_next_key(m, &k, &next), -ENOENT);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 8, 8, 4), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 0, 4), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 0), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_ARRAY, 4, 8, 4, 1u << 20), -EINVAL);
  bh_map_close(m);
}

static void test_hash(bh_region *r) {
  bh_map *m = make(r, "hash", BH_MAP_TYPE_HASH, 4, 8, 64);
  uint64_t v = 0, out = 0;
  for (uint32_t k = 0; k < 64; k++) {
    v = k * 10;
    CHECK_EQ(bh_map_update(m, &k, &v, BH_NOEXIST), 0);
  }
  CHECK_EQ(bh_map_count(m), 64);
  uint32_t k = 64;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_ANY), -E2BIG);
  k = 5;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_NOEXIST), -EEXIST);
  v = 555;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_EXIST), 0);  // replacement works when full
  CHECK_EQ(bh_map_lookup(m, &k, &out), 0);
  CHECK_EQ(out, 555);
  k = 100;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_EXIST), -ENOENT);
  CHECK_EQ(bh_map_lookup(m, &k, &out), -ENOENT);
  CHECK_EQ(bh_map_delete(m, &k), -ENOENT);
  k = 7;
  CHECK_EQ(bh_map_delete(m, &k), 0);
  CHECK_EQ(bh_map_delete(m, &k), -ENOENT);
  CHECK_EQ(bh_map_count(m), 63);
  k = 100;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_ANY), 0);
  auto *p = static_cast<uint64_t *>(bh_map_lookup_elem(m, &k));
  CHECK(p != nullptr && *p == 555);
  *p = 1;
  CHECK_EQ(bh_map_lookup(m, &k, &out), 0);
  CHECK_EQ(out, 1);

  // Iteration visits every key once.
  std::map<uint32_t, int> seen;
  uint32_t cur = 0, nk = 0;
  const void *prev = nullptr;
  while (bh_map_get_next_key(m, prev, &nk) == 0) {
    seen[nk]++;
    cur = nk;
    prev = &cur;
    if (seen.size() > 100) break;
  }
  CHECK_EQ(seen.size(), 64);
  CHECK(seen.count(7) == 0 && seen.count(100) == 1);
  uint32_t missing = 9999;
  CHECK_EQ(bh_map_get_next_key(m, &missing, &nk), 0);  // restarts at the first key

  k = 3;
  CHECK_EQ(bh_map_lookup_and_delete(m, &k, &out), 0);
  CHECK_EQ(out, 30);
  CHECK_EQ(bh_map_lookup(m, &k, &out), -ENOENT);
  bh_map_close(m);

  // Odd key sizes take the generic hash and compare.
  bh_map *g = make(r, "hash13", BH_MAP_TYPE_HASH, 13, 3, 8);
  uint8_t key13[13] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  uint8_t v3[3] = {7, 8, 9}, o3[3] = {0};
  CHECK_EQ(bh_map_update(g, key13, v3, BH_ANY), 0);
  CHECK_EQ(bh_map_lookup(g, key13, o3), 0);
  CHECK(memcmp(o3, v3, 3) == 0);
  key13[12] = 0;
  CHECK_EQ(bh_map_lookup(g, key13, o3), -ENOENT);
  bh_map_close(g);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_HASH, 0, 8, 4), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_HASH, 513, 8, 4), -E2BIG);
}

static void test_lru(bh_region *r) {
  bh_map *m = make(r, "lru", BH_MAP_TYPE_LRU_HASH, 4, 8, 4);
  uint64_t v = 1, out;
  for (uint32_t k = 1; k <= 4; k++) CHECK_EQ(bh_map_update(m, &k, &v, BH_ANY), 0);
  uint32_t k = 1;
  CHECK(bh_map_lookup_elem(m, &k) != nullptr);  // 1 is now the most recently used
  k = 5;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_ANY), 0);  // evicts 2, not E2BIG
  CHECK_EQ(bh_map_count(m), 4);
  k = 2;
  CHECK_EQ(bh_map_lookup(m, &k, &out), -ENOENT);
  for (uint32_t kk : {1u, 3u, 4u, 5u}) CHECK_EQ(bh_map_lookup(m, &kk, &out), 0);
  k = 6;
  CHECK_EQ(bh_map_update(m, &k, &v, BH_ANY), 0);  // evicts 3
  k = 3;
  CHECK_EQ(bh_map_lookup(m, &k, &out), -ENOENT);
  bh_map_close(m);
}

static void test_per_cpu(bh_region *r) {
  const uint32_t n = bh_region_ncpus(r);
  bh_map *a = make(r, "pca", BH_MAP_TYPE_PERCPU_ARRAY, 4, 4, 2);
  CHECK_EQ(bh_map_get_info(a)->user_value_size, 8 * n);
  std::vector<uint8_t> all(8 * n, 0);
  for (uint32_t c = 0; c < n; c++) {
    uint32_t x = 100 + c;
    memcpy(all.data() + 8 * c, &x, 4);
  }
  uint32_t k = 1;
  CHECK_EQ(bh_map_update(a, &k, all.data(), BH_ANY), 0);
  auto *mine = static_cast<uint32_t *>(bh_map_lookup_elem(a, &k));
  int cpu = sched_getcpu();
  CHECK(mine != nullptr && *mine == uint32_t(100 + cpu));
  *mine = 7;
  std::vector<uint8_t> out(8 * n, 0xff);
  CHECK_EQ(bh_map_lookup(a, &k, out.data()), 0);
  for (uint32_t c = 0; c < n; c++) {
    uint32_t x;
    memcpy(&x, out.data() + 8 * c, 4);
    CHECK_EQ(x, c == uint32_t(cpu) ? 7 : 100 + c);
    CHECK_EQ(out[8 * c + 4], 0);  // padding zeroed
  }
  bh_map_close(a);

  bh_map *h = make(r, "pch", BH_MAP_TYPE_PERCPU_HASH, 8, 8, 4);
  uint64_t key = 77, v = 5;
  CHECK_EQ(bh_map_update_elem(h, &key, &v, BH_ANY), 0);  // program side: this CPU only
  int me = sched_getcpu();
  std::vector<uint64_t> vals(n, 123);
  CHECK_EQ(bh_map_lookup(h, &key, vals.data()), 0);
  uint64_t sum = 0;
  for (uint32_t c = 0; c < n; c++) sum += vals[c];
  CHECK_EQ(sum, 5);  // others start at zero (unless the thread moved: then still one 5)
  (void)me;
  for (uint32_t c = 0; c < n; c++) vals[c] = c + 1;
  CHECK_EQ(bh_map_update(h, &key, vals.data(), BH_EXIST), 0);
  std::vector<uint64_t> back(n, 0);
  CHECK_EQ(bh_map_lookup(h, &key, back.data()), 0);
  CHECK(back == vals);
  bh_map_close(h);
}

static void test_lpm(bh_region *r) {
  struct Key {
    uint32_t prefixlen;
    uint8_t addr[4];
  };
  bh_map *m = make(r, "lpm", BH_MAP_TYPE_LPM_TRIE, 8, 4, 8, BH_F_NO_PREALLOC);
  auto put = [&](uint32_t plen, uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint32_t val) {
    Key k{plen, {a, b, c, d}};
    return bh_map_update(m, &k, &val, BH_ANY);
  };
  auto get = [&](uint8_t a, uint8_t b, uint8_t c, uint8_t d) -> long long {
    Key k{32, {a, b, c, d}};
    uint32_t out = 0;
    int err = bh_map_lookup(m, &k, &out);
    return err != 0 ? err : out;
  };
  CHECK_EQ(put(8, 10, 0, 0, 0, 1), 0);
  CHECK_EQ(put(16, 10, 1, 0, 0, 2), 0);
  CHECK_EQ(put(24, 10, 1, 2, 0, 3), 0);
  CHECK_EQ(put(16, 10, 2, 0, 0, 4), 0);  // creates an intermediate at /14
  CHECK_EQ(put(32, 192, 168, 0, 1, 5), 0);
  CHECK_EQ(put(0, 0, 0, 0, 0, 6), 0);  // default route
  CHECK_EQ(get(10, 1, 2, 3), 3);
  CHECK_EQ(get(10, 1, 3, 3), 2);
  CHECK_EQ(get(10, 2, 9, 9), 4);
  CHECK_EQ(get(10, 3, 0, 0), 1);
  CHECK_EQ(get(192, 168, 0, 1), 5);
  CHECK_EQ(get(192, 168, 0, 2), 6);
  CHECK_EQ(bh_map_count(m), 6);
  Key k16{16, {10, 1, 0, 0}};
  uint32_t v = 0;
  CHECK_EQ(bh_map_update(m, &k16, &v, BH_NOEXIST), -EEXIST);
  v = 22;
  CHECK_EQ(bh_map_update(m, &k16, &v, BH_EXIST), 0);
  CHECK_EQ(get(10, 1, 3, 3), 22);
  CHECK_EQ(bh_map_delete(m, &k16), 0);
  CHECK_EQ(bh_map_delete(m, &k16), -ENOENT);
  CHECK_EQ(get(10, 1, 3, 3), 1);
  CHECK_EQ(get(10, 1, 2, 3), 3);
  Key k24{24, {10, 1, 2, 0}};
  CHECK_EQ(bh_map_delete(m, &k24), 0);
  CHECK_EQ(get(10, 1, 2, 3), 1);
  Key k33{33, {0}};
  CHECK_EQ(bh_map_update(m, &k33, &v, BH_ANY), -EINVAL);
  // Full: the kernel's trie answers -ENOSPC.
  for (uint8_t i = 0; i < 4; i++) put(32, 1, 1, 1, i, i);
  CHECK_EQ(bh_map_count(m), 8);
  CHECK_EQ(put(32, 2, 2, 2, 2, 0), -ENOSPC);
  // Iteration sees every key once.
  int count = 0;
  Key cur{}, nk{};
  const void *prev = nullptr;
  while (bh_map_get_next_key(m, prev, &nk) == 0 && count < 20) {
    count++;
    cur = nk;
    prev = &cur;
  }
  CHECK_EQ(count, 8);
  CHECK(bh_map_lookup_elem(m, &k24) != nullptr);  // /8 covers it
  bh_map_close(m);
}

static void test_queue(bh_region *r) {
  bh_map *q = make(r, "q", BH_MAP_TYPE_QUEUE, 0, 8, 3);
  bh_map *s = make(r, "s", BH_MAP_TYPE_STACK, 0, 8, 3);
  uint64_t v, out;
  for (v = 1; v <= 3; v++) {
    CHECK_EQ(bh_map_push_elem(q, &v, 0), 0);
    CHECK_EQ(bh_map_push_elem(s, &v, 0), 0);
  }
  v = 4;
  CHECK_EQ(bh_map_push_elem(q, &v, 0), -E2BIG);
  CHECK_EQ(bh_map_push_elem(q, &v, BH_EXIST), 0);  // drops the oldest (1)
  CHECK_EQ(bh_map_push_elem(q, &v, BH_NOEXIST), -EINVAL);
  CHECK_EQ(bh_map_peek_elem(q, &out), 0);
  CHECK_EQ(out, 2);
  for (uint64_t want : {2, 3, 4}) {
    CHECK_EQ(bh_map_pop_elem(q, &out), 0);
    CHECK_EQ(out, want);
  }
  CHECK_EQ(bh_map_pop_elem(q, &out), -ENOENT);
  CHECK_EQ(bh_map_peek_elem(q, &out), -ENOENT);
  for (uint64_t want : {3, 2, 1}) {
    CHECK_EQ(bh_map_pop_elem(s, &out), 0);
    CHECK_EQ(out, want);
  }
  CHECK_EQ(bh_map_lookup_and_delete(s, nullptr, &out), -ENOENT);
  v = 9;
  CHECK_EQ(bh_map_update(s, nullptr, &v, BH_ANY), 0);
  CHECK_EQ(bh_map_lookup(s, nullptr, &out), 0);
  CHECK_EQ(out, 9);
  CHECK_EQ(bh_map_delete(s, nullptr), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_QUEUE, 4, 8, 3), -EINVAL);
  bh_map_close(q);
  bh_map_close(s);
}

static int bloom_create_err(bh_region *r, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags, uint64_t extra) {
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.type = BH_MAP_TYPE_BLOOM_FILTER;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  s.map_flags = flags;
  s.map_extra = extra;
  bh_map *m = nullptr;
  int err = bh_map_create(r, &s, &m);
  if (err == 0) bh_map_close(m);
  return err;
}

static int bloom_bits_set(const bh_map *m) {
  int n = 0;
  const auto *w = reinterpret_cast<const uint64_t *>(m->a);
  for (uint64_t i = 0; i < (uint64_t(m->bucket_mask) + 1) / 64; i++) n += __builtin_popcountll(w[i]);
  return n;
}

// Bloom filter: the kernel's sizing, hash and refusals; push/peek from
// helpers and user space; the other operations refused as the kernel does;
// no bit lost to concurrent pushes (atomic OR); a second mapping sees them.
static void test_bloom(bh_region *r) {
  // jhash is lookup3's hashlittle (little-endian): its published vectors.
  CHECK_EQ(bpfhook::maps::jhash("", 0, 0), 0xdeadbeef);
  CHECK_EQ(bpfhook::maps::jhash("Four score and seven years ago", 30, 0), 0x17770551);
  CHECK_EQ(bpfhook::maps::jhash("Four score and seven years ago", 30, 1), 0xcd628161);

  // Sizing: n * k / 5 * 7 bits rounded up to a power of two, at least 64.
  bh_map *b = make(r, "bloom", BH_MAP_TYPE_BLOOM_FILTER, 0, 4, 1000, BH_F_ZERO_SEED, 3);
  bh_map *d = make(r, "bloom_d", BH_MAP_TYPE_BLOOM_FILTER, 0, 8, 1, 0, 0);
  bh_map *big = make(r, "bloom_big", BH_MAP_TYPE_BLOOM_FILTER, 0, 4, 1u << 20, 0, 15);
  if (b == nullptr || d == nullptr || big == nullptr) {
    CHECK(false);
    return;
  }
  CHECK_EQ(b->bucket_mask, 8191);  // 1000 * 3 / 5 * 7 = 4200 -> 8192
  CHECK_EQ(b->pool_size, 3);
  CHECK_EQ(b->seed, 0);
  CHECK_EQ(d->bucket_mask, 63);                // 7 bits -> the 64 minimum
  CHECK_EQ(d->pool_size, 5);                   // map_extra 0: five hash functions
  CHECK_EQ(big->bucket_mask, (1u << 25) - 1);  // 2^20 * 15 / 5 * 7 = 22020096 -> 2^25
  CHECK(bh_map_get_info(big)->storage_size >= 512 + (1u << 22));
  CHECK_EQ(bh_map_get_info(b)->map_extra, 3);
  CHECK_EQ(bh_map_get_info(d)->map_extra, 0);
  CHECK_EQ(bh_map_count(b), -EINVAL);
  // Past 2^31 bits the array is capped at 2^32 bits (512 MiB): more than this region holds.
  CHECK_EQ(bloom_create_err(r, 0, 4, 0xffffffffu, 0, 1), -ENOMEM);
  CHECK_EQ(bloom_create_err(r, 0, 4, 0x7fffffffu, 0, 15), -ENOMEM);  // n * k overflows u32
  // Refusals, as bloom_map_alloc.
  CHECK_EQ(bloom_create_err(r, 4, 4, 10, 0, 0), -EINVAL);   // a key
  CHECK_EQ(bloom_create_err(r, 0, 0, 10, 0, 0), -EINVAL);   // no value
  CHECK_EQ(bloom_create_err(r, 0, 4, 0, 0, 0), -EINVAL);    // no entries
  CHECK_EQ(bloom_create_err(r, 0, 4, 10, 0, 16), -EINVAL);  // map_extra past the low 4 bits
  CHECK_EQ(bloom_create_err(r, 0, 4, 10, 0, 0x13), -EINVAL);
  CHECK_EQ(bloom_create_err(r, 0, 4, 10, BH_F_NO_PREALLOC, 0), -EINVAL);
  CHECK_EQ(bloom_create_err(r, 0, 4, 10, BH_F_MMAPABLE, 0), -EINVAL);
  CHECK_EQ(bloom_create_err(r, 0, (1u << 20) + 1, 10, 0, 0), -E2BIG);
  CHECK_EQ(bloom_create_err(r, 0, 3, 10, BH_F_RDONLY_PROG | BH_F_NUMA_NODE, 15), 0);

  // Push and peek (helpers): the bits set are the kernel's, jhash(value, seed + j).
  uint32_t v = 42;
  CHECK_EQ(s64(bh_helper_map_peek_elem(uint64_t(uintptr_t(b)), uint64_t(uintptr_t(&v)), 0, 0, 0)), -ENOENT);
  CHECK_EQ(s64(bh_helper_map_push_elem(uint64_t(uintptr_t(b)), uint64_t(uintptr_t(&v)), 0, 0, 0)), 0);
  CHECK_EQ(s64(bh_helper_map_peek_elem(uint64_t(uintptr_t(b)), uint64_t(uintptr_t(&v)), 0, 0, 0)), 0);
  CHECK_EQ(v, 42);  // peek reads the value, never writes it
  const auto *words = reinterpret_cast<const uint64_t *>(b->a);
  for (uint32_t j = 0; j < 3; j++) {
    uint32_t bit = bpfhook::maps::jhash(&v, 4, j) & 8191;
    CHECK((words[bit / 64] >> (bit % 64)) & 1);
  }
  CHECK(bloom_bits_set(b) >= 1 && bloom_bits_set(b) <= 3);
  CHECK_EQ(bh_map_push_elem(b, &v, 0), 0);  // again: nothing changes
  CHECK(bloom_bits_set(b) <= 3);
  CHECK_EQ(bh_map_push_elem(b, &v, BH_NOEXIST), -EINVAL);
  CHECK_EQ(bh_map_push_elem(b, &v, BH_EXIST), -EINVAL);
  // The rest, as the kernel's bloom_map ops.
  CHECK_EQ(bh_map_pop_elem(b, &v), -EOPNOTSUPP);
  CHECK(bh_map_lookup_elem(b, &v) == nullptr);
  CHECK_EQ(bh_map_update_elem(b, nullptr, &v, 0), -EINVAL);
  CHECK_EQ(bh_map_delete_elem(b, &v), -EOPNOTSUPP);
  // User space, as the bpf() syscall: update pushes, lookup tests.
  uint32_t u = 7;
  CHECK_EQ(bh_map_lookup(b, nullptr, &u), -ENOENT);
  CHECK_EQ(bh_map_update(b, nullptr, &u, BH_ANY), 0);
  CHECK_EQ(bh_map_lookup(b, nullptr, &u), 0);
  CHECK_EQ(bh_map_update(b, nullptr, &u, BH_NOEXIST), -EINVAL);
  CHECK_EQ(bh_map_delete(b, nullptr), -EOPNOTSUPP);
  CHECK_EQ(bh_map_get_next_key(b, nullptr, &u), -EOPNOTSUPP);
  CHECK_EQ(bh_map_lookup_and_delete(b, nullptr, &u), -EOPNOTSUPP);
  // Values of a size not a multiple of 4 hash with jhash.
  uint8_t odd[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  bh_map *o = make(r, "bloom_odd", BH_MAP_TYPE_BLOOM_FILTER, 0, 7, 100, BH_F_ZERO_SEED, 2);
  if (o != nullptr) {
    CHECK_EQ(bh_map_push_elem(o, odd, 0), 0);
    CHECK_EQ(bh_map_peek_elem(o, odd), 0);
    for (uint32_t j = 0; j < 2; j++) {
      uint32_t bit = bpfhook::maps::jhash(odd, 7, j) & o->bucket_mask;
      CHECK((reinterpret_cast<const uint64_t *>(o->a)[bit / 64] >> (bit % 64)) & 1);
    }
    odd[7] = 9;  // the eighth byte is not part of the value
    CHECK_EQ(bh_map_peek_elem(o, odd), 0);
    bh_map_close(o);
  }

  // Concurrent pushes lose no bit: 4 threads, disjoint values, then every value tests present.
  constexpr uint32_t kThreads = 4, kPer = 20000;
  bh_map *c = make(r, "bloom_mt", BH_MAP_TYPE_BLOOM_FILTER, 0, 8, kThreads * kPer, 0, 4);
  if (c != nullptr) {
    std::vector<std::thread> ts;
    for (uint32_t t = 0; t < kThreads; t++) {
      ts.emplace_back([c, t] {
        for (uint64_t i = 0; i < kPer; i++) {
          uint64_t val = (uint64_t(t) << 32) | i;
          bh_map_push_elem(c, &val, 0);
        }
      });
    }
    for (auto &t : ts) t.join();
    uint32_t missing = 0;
    for (uint64_t t = 0; t < kThreads; t++) {
      for (uint64_t i = 0; i < kPer; i++) {
        uint64_t val = (t << 32) | i;
        if (bh_map_peek_elem(c, &val) != 0) missing++;
      }
    }
    CHECK_EQ(missing, 0);
    // A second mapping of the region (as another process) sees the same filter.
    bh_region *r2 = nullptr;
    CHECK_EQ(bh_region_open(bh_region_name(r), &r2), 0);
    bh_map *c2 = nullptr;
    if (r2 != nullptr && bh_map_open_by_name(r2, "bloom_mt", &c2) == 0) {
      CHECK_EQ(c2->seed, c->seed);
      CHECK_EQ(c2->bucket_mask, c->bucket_mask);
      CHECK_EQ(c2->pool_size, 4);
      uint64_t val = (uint64_t(3) << 32) | 777;
      CHECK_EQ(bh_map_peek_elem(c2, &val), 0);
      val = uint64_t(1) << 40;
      CHECK_EQ(bh_map_push_elem(c2, &val, 0), 0);
      CHECK_EQ(bh_map_peek_elem(c, &val), 0);
      bh_map_close(c2);
    } else {
      CHECK(false);
    }
    if (r2 != nullptr) bh_region_close(r2);
    bh_map_close(c);
  }
  bh_map_close(b);
  bh_map_close(d);
  bh_map_close(big);
}

// A lock held by the calling thread itself (a probe firing inside a write
// section on the same thread): helpers fail at once with -EBUSY (counted),
// user space gets -EDEADLK; lock-free reads still work; after the unlock all
// goes on. Another thread of this process holding it: the helper gives up
// within its bound.
static void test_self_held_lock(bh_region *r) {
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.name = "self_lock";
  s.type = BH_MAP_TYPE_HASH;
  s.key_size = 4;
  s.value_size = 8;
  s.max_entries = 8;
  bh_map *m = nullptr;
  CHECK_EQ(bh_map_create(r, &s, &m), 0);
  uint32_t k = 1;
  uint64_t v = 11;
  CHECK_EQ(bh_map_update(m, &k, &v, 0), 0);
  using namespace bpfhook::maps;
  uint64_t *word = &bucket_for(m, hash_key(m, &k))->seq;
  CHECK_EQ(bpfhook::shm::SeqLock::write_lock(word, bpfhook::shm::Wait::kUser), 0);
  CHECK_EQ(uint32_t(*word >> 32), bpfhook::shm::self_tid());
  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK_EQ(bh_map_update_elem(m, &k, &v, 0), -EBUSY);
  CHECK_EQ(bh_map_update(m, &k, &v, 0), -EDEADLK);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 5000000L);  // no waiting
  CHECK(bh_map_lookup_elem(m, &k) != nullptr);
  bh_map_lock_stats st{};
  CHECK_EQ(bh_map_get_lock_stats(m, &st), 0);
  CHECK_EQ(st.busy, 2u);
  // Another live thread holds it now: the helper waits its bound, then -EBUSY.
  bpfhook::shm::SeqLock::write_unlock(word);
  std::thread holder([&] {
    bpfhook::shm::SeqLock::write_lock(word, bpfhook::shm::Wait::kUser);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    bpfhook::shm::SeqLock::write_unlock(word);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK_EQ(bh_map_update_elem(m, &k, &v, 0), -EBUSY);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 200000000L);
  // User space waits longer: it gets the lock once the holder lets go.
  v = 12;
  CHECK_EQ(bh_map_update(m, &k, &v, 0), 0);
  holder.join();
  CHECK_EQ(bh_map_get_lock_stats(m, &st), 0);
  CHECK_EQ(st.busy, 3u);
  CHECK_EQ(st.takeovers, 0u);
  bh_map_close(m);
}

static void test_stack_trace(bh_region *r) {
  const uint32_t kBuildId = 1u << 5;
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 8, 64, 16), -EINVAL);  // key is a u32 id
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 4, 12, 16), -EINVAL);  // whole frames
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 4, 0, 16), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 4, 128 * 8, 16), -EINVAL);  // above perf_event_max_stack
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 4, 64, 0), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 4, 64, 16, kBuildId), -EINVAL);  // build-id values: not supported
  CHECK_EQ(create_err(r, BH_MAP_TYPE_STACK_TRACE, 4, 64, 16, BH_F_RDONLY_PROG), -EINVAL);

  // Depth 4, 16 buckets (max_entries rounds up to a power of two).
  bh_map *m = make(r, "stacks", BH_MAP_TYPE_STACK_TRACE, 4, 4 * 8, 10);
  CHECK(m != nullptr);
  if (m == nullptr) return;
  const uint64_t a[3] = {0x1000, 0x2000, 0x3000};
  const long id = bh_stackmap_get_id(m, a, 3, 0);
  CHECK(id >= 0 && id < 16);
  CHECK_EQ(bh_stackmap_get_id(m, a, 3, 0), id);  // same stack, same id
  CHECK_EQ(bh_stackmap_get_id(m, a, 3, BH_F_FAST_STACK_CMP), id);
  uint32_t key = uint32_t(id);
  uint64_t v[4];
  memset(v, 0x55, sizeof v);
  CHECK_EQ(bh_map_lookup(m, &key, v), 0);
  CHECK_EQ(v[0], 0x1000);
  CHECK_EQ(v[2], 0x3000);
  CHECK_EQ(v[3], 0);  // zero-filled past the depth of the stack
  uint32_t other = (key + 1) % 16, past = 16, next = 0;
  CHECK_EQ(bh_map_lookup(m, &other, v), -ENOENT);
  CHECK_EQ(bh_map_lookup(m, &past, v), -ENOENT);
  CHECK_EQ(bh_map_get_next_key(m, nullptr, &next), 0);
  CHECK_EQ(next, key);
  CHECK_EQ(bh_map_get_next_key(m, &key, &next), -ENOENT);
  CHECK_EQ(bh_map_get_next_key(m, &past, &next), 0);     // unknown key: from the start
  CHECK_EQ(bh_map_update(m, &key, v, BH_ANY), -EINVAL);  // only get_stackid stores stacks
  CHECK(bh_map_lookup_elem(m, &key) == nullptr);         // no program-side lookup, as the kernel
  CHECK_EQ(bh_map_count(m), -EINVAL);

  // Deeper stacks are cut to the map's depth; empty ones are -EFAULT.
  const uint64_t deep[6] = {1, 2, 3, 4, 5, 6};
  const long deep_id = bh_stackmap_get_id(m, deep, 6, 0);
  CHECK(deep_id >= 0);
  key = uint32_t(deep_id);
  CHECK_EQ(bh_map_lookup(m, &key, v), 0);
  CHECK_EQ(v[3], 4);
  CHECK_EQ(bh_stackmap_get_id(m, deep, 4, 0), deep_id);  // the same four frames
  CHECK_EQ(bh_stackmap_get_id(m, a, 0, 0), -EFAULT);
  CHECK_EQ(bh_stackmap_get_id(m, a, 3, 1u << 11), -EINVAL);  // unknown flag
  bh_map *h = make(r, "not_stacks", BH_MAP_TYPE_HASH, 4, 8, 4);
  CHECK_EQ(bh_stackmap_get_id(h, a, 3, 0), -EINVAL);
  CHECK_EQ(s64(bh_helper_get_stackid(0, uint64_t(uintptr_t(h)), BH_F_USER_STACK, 0, 0)), -EINVAL);
  CHECK_EQ(s64(bh_helper_get_stackid(0, uint64_t(uintptr_t(m)), 0, 0, 0)), -EFAULT);  // no kernel stack
  bh_map_close(h);

  // Another handle (another process would do the same) sees the stored stacks.
  bh_map *again = nullptr;
  CHECK_EQ(bh_map_open_by_name(r, "stacks", &again), 0);
  key = uint32_t(id);
  CHECK_EQ(bh_map_lookup(again, &key, v), 0);
  CHECK_EQ(v[1], 0x2000);
  CHECK_EQ(bh_map_delete(again, &key), 0);
  CHECK_EQ(bh_map_delete(m, &key), -ENOENT);
  CHECK_EQ(bh_map_lookup(m, &key, v), -ENOENT);
  bh_map_close(again);
  bh_map_close(m);

  // One bucket: every stack collides.
  bh_map *one = make(r, "stacks1", BH_MAP_TYPE_STACK_TRACE, 4, 8 * 8, 1);
  const uint64_t b[2] = {0x7000, 0x8000};
  key = 0;
  CHECK_EQ(bh_stackmap_get_id(one, a, 3, 0), 0);
  CHECK_EQ(bh_stackmap_get_id(one, b, 2, 0), -EEXIST);
  CHECK_EQ(bh_stackmap_get_id(one, b, 2, BH_F_REUSE_STACKID), 0);  // replaces a
  uint64_t w[8];
  CHECK_EQ(bh_map_lookup(one, &key, w), 0);
  CHECK_EQ(w[0], 0x7000);
  CHECK_EQ(w[2], 0);
  CHECK_EQ(bh_stackmap_get_id(one, a, 3, 0), -EEXIST);
  CHECK_EQ(bh_stackmap_get_id(one, b, 2, 0), 0);
  CHECK_EQ(bh_map_delete(one, &key), 0);
  CHECK_EQ(bh_stackmap_get_id(one, a, 3, 0), 0);  // free again
  CHECK_EQ(bh_map_delete(one, &key), 0);          // empty for the stress below

  // Writers replacing the one bucket while a reader copies it: every copy is
  // one whole stack (frame k = base + k, depth base / 0x1000), never a mix.
  // The writers go on until the reader has made its copies (or 10 s passed).
  const int kThreads = 4;
  const long kCopies = 20000;
  bool stop = false;
  long torn = 0, copies = 0, bad_rc = 0, writes = 0;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; t++) {
    writers.emplace_back([&, t] {
      uint64_t stack[8];
      const uint32_t depth = uint32_t(t % 4) + 2;
      for (uint32_t k = 0; k < depth; k++) stack[k] = uint64_t(depth) * 0x1000 + k;
      while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        const long rc = bh_stackmap_get_id(one, stack, depth, BH_F_REUSE_STACKID);
        if (rc != 0 && rc != -EBUSY) __atomic_fetch_add(&bad_rc, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&writes, 1, __ATOMIC_RELAXED);
      }
    });
  }
  std::thread reader([&] {
    uint64_t f[8];
    uint32_t k0 = 0;
    const time_t deadline = time(nullptr) + 10;
    while (copies < kCopies && time(nullptr) < deadline) {
      if (bh_map_lookup(one, &k0, f) != 0) continue;
      copies++;
      const uint64_t depth = f[0] / 0x1000;
      for (uint64_t k = 0; k < 8; k++) {
        if (f[k] != (k < depth ? f[0] + k : 0)) {
          torn++;
          break;
        }
      }
    }
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
  });
  reader.join();
  for (auto &t : writers) t.join();
  CHECK_EQ(bad_rc, 0);
  CHECK_EQ(torn, 0);
  CHECK_EQ(copies, kCopies);
  CHECK(writes > 0);
  bh_map_close(one);
}

struct Collected {
  std::vector<std::vector<uint8_t>> records;
};
static int collect(void *ctx, const void *data, uint32_t size) {
  auto *c = static_cast<Collected *>(ctx);
  const auto *p = static_cast<const uint8_t *>(data);
  c->records.emplace_back(p, p + size);
  return 0;
}

static void test_ringbuf(bh_region *r) {
  CHECK_EQ(create_err(r, BH_MAP_TYPE_RINGBUF, 0, 0, 3000), -EINVAL);
  CHECK_EQ(create_err(r, BH_MAP_TYPE_RINGBUF, 4, 0, 4096), -EINVAL);
  bh_map *m = make(r, "rb", BH_MAP_TYPE_RINGBUF, 0, 0, 4096);
  Collected c;
  // In order, discards skipped, a busy record holds back later ones.
  uint32_t x = 1;
  CHECK_EQ(bh_ringbuf_output(m, &x, 4, 0), 0);
  auto *busy = static_cast<uint32_t *>(bh_ringbuf_reserve(m, 4, 0));
  CHECK(busy != nullptr);
  auto *gone = static_cast<uint32_t *>(bh_ringbuf_reserve(m, 4, 0));
  *gone = 99;
  bh_ringbuf_discard(gone, 0);
  x = 3;
  CHECK_EQ(bh_ringbuf_output(m, &x, 4, 0), 0);
  CHECK_EQ(bh_ringbuf_consume(m, collect, &c, 0), 1);
  *busy = 2;
  bh_ringbuf_submit(busy, 0);
  CHECK_EQ(bh_ringbuf_consume(m, collect, &c, 0), 2);
  CHECK_EQ(c.records.size(), 3);
  for (uint32_t i = 0; i < c.records.size(); i++) {
    uint32_t got;
    memcpy(&got, c.records[i].data(), 4);
    CHECK_EQ(got, i + 1);
  }
  CHECK(bh_ringbuf_reserve(m, 4, 1) == nullptr);  // flags must be 0
  CHECK_EQ(bh_ringbuf_output(m, &x, 4, 4), -EINVAL);
  CHECK(bh_ringbuf_reserve(m, 5000, 0) == nullptr);

  // Fill: 100-byte records take 112 bytes; the ring holds 36 of them.
  c.records.clear();
  bh_ringbuf_stats st{};
  bh_ringbuf_get_stats(m, &st);
  uint64_t drops0 = st.drops;
  uint8_t rec[100];
  int accepted = 0, refused = 0;
  for (int i = 0; i < 50; i++) {
    memset(rec, i, sizeof(rec));
    if (bh_ringbuf_output(m, rec, sizeof(rec), 0) == 0)
      accepted++;
    else
      refused++;
  }
  bh_ringbuf_get_stats(m, &st);
  CHECK_EQ(st.drops - drops0, uint64_t(refused));
  CHECK(refused > 0);
  CHECK_EQ(bh_ringbuf_query(m, BH_RB_RING_SIZE), 4096);
  CHECK_EQ(bh_ringbuf_consume(m, collect, &c, 0), accepted);
  for (int i = 0; i < accepted; i++) CHECK(c.records[i].size() == 100 && c.records[i][0] == uint8_t(i));
  // Wrap-around: keep cycling well past the end of the ring.
  uint64_t seq = 0, got = 0;
  bool ordered = true;
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < 7; i++) {
      uint8_t buf[72];
      memset(buf, 0, sizeof(buf));
      memcpy(buf, &seq, 8);
      if (bh_ringbuf_output(m, buf, 40 + (seq % 32), 0) == 0) seq++;
    }
    c.records.clear();
    bh_ringbuf_consume(m, collect, &c, 0);
    for (auto &rr : c.records) {
      uint64_t s;
      memcpy(&s, rr.data(), 8);
      if (s != got || rr.size() != 40 + (s % 32)) ordered = false;
      got++;
    }
  }
  CHECK(ordered);
  CHECK_EQ(got, seq);
  bh_map_close(m);
}

struct PerfCollected {
  std::vector<std::pair<uint32_t, uint32_t>> samples;  // ring, first u32
  uint64_t lost = 0;
};

static void test_perf(bh_region *r) {
  bh_map *m = make(r, "events", BH_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 2, 0, 4096);
  CHECK_EQ(bh_map_get_info(m)->max_entries, 2);
  PerfCollected pc;
  auto sample = [](void *ctx, uint32_t ring, const void *data, uint32_t) -> int {
    uint32_t v;
    memcpy(&v, data, 4);
    static_cast<PerfCollected *>(ctx)->samples.push_back({ring, v});
    return 0;
  };
  auto lost = [](void *ctx, uint32_t, uint64_t n) { static_cast<PerfCollected *>(ctx)->lost += n; };
  uint32_t v = 1;
  CHECK_EQ(bh_perf_event_output(m, 0, &v, 4), 0);
  v = 2;
  CHECK_EQ(bh_perf_event_output(m, 1, &v, 4), 0);
  v = 3;
  CHECK_EQ(bh_perf_event_output(m, 2, &v, 4), -E2BIG);
  CHECK_EQ(bh_perf_event_output(m, 1ull << 40, &v, 4), -EINVAL);
  CHECK_EQ(bh_perf_consume(m, -1, sample, lost, &pc, 0), 2);
  CHECK(pc.samples.size() == 2 && pc.samples[0].first == 0 && pc.samples[0].second == 1 && pc.samples[1].first == 1 &&
        pc.samples[1].second == 2);
  // 4096-byte ring, 104-byte records (8 + 96): 39 fit.
  uint8_t buf[96] = {0};
  int ok = 0, full = 0;
  for (uint32_t i = 0; i < 50; i++) {
    memcpy(buf, &i, 4);
    long rc = bh_perf_event_output(m, 0, buf, sizeof(buf));
    if (rc == 0)
      ok++;
    else if (rc == -ENOSPC)
      full++;
  }
  CHECK_EQ(ok, 39);
  CHECK_EQ(full, 11);
  pc.samples.clear();
  CHECK_EQ(bh_perf_consume(m, 0, sample, lost, &pc, 0), 39);
  CHECK_EQ(pc.lost, 11);
  bh_perf_ring_stats st{};
  CHECK_EQ(bh_perf_get_stats(m, 0, &st), 0);
  CHECK_EQ(st.lost, 11);
  CHECK_EQ(st.head, st.tail);
  // Wrapping payloads come out whole and in order.
  bool ordered = true;
  uint32_t next = 0, sent = 0;
  for (int round = 0; round < 100; round++) {
    for (int i = 0; i < 5; i++) {
      uint8_t big[300];
      memset(big, uint8_t(sent), sizeof(big));
      memcpy(big, &sent, 4);
      if (bh_perf_event_output(m, 1, big, 200 + sent % 100) == 0) sent++;
    }
    pc.samples.clear();
    bh_perf_consume(m, 1, sample, lost, &pc, 0);
    for (auto &s : pc.samples) {
      if (s.second != next) ordered = false;
      next++;
    }
  }
  CHECK(ordered);
  CHECK_EQ(next, sent);
  bh_map_close(m);
}

static void test_stress(bh_region *r) {
  const uint32_t threads = 4;
  auto run = [&](bh_map *m, uint32_t op, uint64_t iters, uint32_t keys, uint32_t pace = 0) {
    bh_maps_stress_opts o{};
    o.sz = sizeof(o);
    o.op = op;
    o.threads = threads;
    o.iterations = iters;
    o.keys = keys;
    o.pace_ns = pace;
    bh_maps_stress_result res{};
    int err = bh_maps_stress(m, &o, &res);
    CHECK_EQ(err, 0);
    return res;
  };
  bh_map *h = make(r, "s_hash", BH_MAP_TYPE_HASH, 4, 8, 1024);
  auto res = run(h, BH_STRESS_ADD, 200000, 100);
  CHECK_EQ(res.failed, 0);
  CHECK_EQ(res.sum, threads * 200000ull);
  bh_map *pa = make(r, "s_pca", BH_MAP_TYPE_PERCPU_ARRAY, 4, 8, 16);
  res = run(pa, BH_STRESS_ADD, 200000, 16);
  CHECK_EQ(res.sum, threads * 200000ull);
  bh_map *ph = make(r, "s_pch", BH_MAP_TYPE_PERCPU_HASH, 4, 8, 64);
  res = run(ph, BH_STRESS_ADD, 200000, 50);
  CHECK_EQ(res.sum, threads * 200000ull);
  bh_map *ch = make(r, "s_churn", BH_MAP_TYPE_HASH, 4, 8, 256);
  res = run(ch, BH_STRESS_CHURN, 200000, 64);
  CHECK_EQ(res.failed, 0);
  CHECK_EQ(res.misses, 0);
  CHECK_EQ(bh_map_count(ch), 64);
  bh_map *lr = make(r, "s_lru", BH_MAP_TYPE_LRU_HASH, 8, 8, 512);
  res = run(lr, BH_STRESS_INSERT, 20000, 0);
  CHECK_EQ(res.failed, 0);
  CHECK_EQ(bh_map_count(lr), 512);
  bh_map *rb = make(r, "s_rb", BH_MAP_TYPE_RINGBUF, 0, 0, 1 << 16);
  res = run(rb, BH_STRESS_RINGBUF, 100000, 0);
  CHECK_EQ(res.order_errors, 0);
  CHECK_EQ(res.consumed, res.ok);
  CHECK_EQ(res.ok + res.drops + res.discarded, threads * 100000ull);
  printf("ringbuf stress: %llu consumed, %llu drops\n", (unsigned long long)res.consumed,
         (unsigned long long)res.drops);
  bh_map *pf = make(r, "s_perf", BH_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0, 0, 1 << 16);
  res = run(pf, BH_STRESS_PERF, 100000, 0);
  CHECK_EQ(res.order_errors, 0);
  CHECK_EQ(res.failed, 0);
  CHECK_EQ(res.consumed + res.drops, threads * 100000ull);
  bh_map *q = make(r, "s_q", BH_MAP_TYPE_QUEUE, 0, 8, 64);
  res = run(q, BH_STRESS_QUEUE, 50000, 0);
  CHECK_EQ(res.failed, 0);
  CHECK_EQ(res.misses, 0);
  CHECK_EQ(res.ok, 2 * 50000ull);
  for (bh_map *m : {h, pa, ph, ch, lr, rb, pf, q}) bh_map_close(m);
}

static void test_bench(bh_region *r) {
  auto bench = [&](const char *label, bh_map *m, uint32_t op, uint32_t keys) {
    double ns = 0;
    int err = bh_maps_bench(m, op, 20000000, keys, &ns);
    CHECK_EQ(err, 0);
    printf("bench %-34s %6.2f ns/op\n", label, ns);
  };
  bh_map *h = make(r, "b_hash", BH_MAP_TYPE_HASH, 4, 8, 1024);
  bh_map *a = make(r, "b_arr", BH_MAP_TYPE_ARRAY, 4, 8, 1024);
  bh_map *pa = make(r, "b_pca", BH_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1024);
  bh_map *h8 = make(r, "b_hash8", BH_MAP_TYPE_HASH, 8, 8, 1024);
  bh_map *lru = make(r, "b_lru", BH_MAP_TYPE_LRU_HASH, 4, 8, 1024);
  bh_map *rb = make(r, "b_rb", BH_MAP_TYPE_RINGBUF, 0, 0, 1 << 20);
  bh_map *pf = make(r, "b_pf", BH_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0, 0, 1 << 20);
  bench("hash u32 lookup (1000 keys)", h, BH_BENCH_LOOKUP, 1000);
  bench("hash u32 lookup miss", h, BH_BENCH_LOOKUP_MISS, 1000);
  bench("hash u32 lookup + atomic add", h, BH_BENCH_ADD, 1000);
  bench("hash u32 update existing", h, BH_BENCH_UPDATE, 1000);
  bench("hash u64 lookup", h8, BH_BENCH_LOOKUP, 1000);
  bench("lru u32 lookup", lru, BH_BENCH_LOOKUP, 1000);
  bench("array lookup", a, BH_BENCH_LOOKUP, 1000);
  bench("array update", a, BH_BENCH_UPDATE, 1000);
  bench("percpu array lookup", pa, BH_BENCH_LOOKUP, 1000);
  bench("ringbuf output 16 B (+drain)", rb, BH_BENCH_RINGBUF, 0);
  bench("perf output 16 B (+drain)", pf, BH_BENCH_PERF, 0);
  for (bh_map *m : {h, a, pa, h8, lru, rb, pf}) bh_map_close(m);
}

// bh_map_for_each_elem: every element once, early stop, per-CPU values,
// and a lock-free walk of a hash map that another thread keeps changing.
static void test_for_each(bh_region *r) {
  struct Seen {
    std::map<uint64_t, int> keys;  // key -> times seen
    uint64_t values = 0;
    long stop_after = 0;
    long calls = 0;
    uint32_t key_size = 4;
  };
  auto visit = [](void *cookie, const void *key, void *value) -> int {
    auto *s = static_cast<Seen *>(cookie);
    uint32_t k = 0;
    memcpy(&k, key, 4);
    s->keys[k]++;
    s->values += *static_cast<uint64_t *>(value);
    s->calls++;
    return s->stop_after != 0 && s->calls == s->stop_after ? 1 : 0;
  };

  bh_map *a = make(r, "fe_array", BH_MAP_TYPE_ARRAY, 4, 8, 10);
  for (uint32_t k = 0; k < 10; k++) {
    uint64_t v = 100 + k;
    CHECK_EQ(bh_map_update(a, &k, &v, BH_ANY), 0);
  }
  Seen s;
  CHECK_EQ(bh_map_for_each_elem(a, visit, &s), 10);
  CHECK_EQ(s.keys.size(), 10);
  CHECK_EQ(s.values, 1045);
  Seen early;
  early.stop_after = 4;
  CHECK_EQ(bh_map_for_each_elem(a, visit, &early), 4);
  CHECK(early.keys.count(3) == 1 && early.keys.count(4) == 0);
  bh_map_close(a);

  bh_map *pc = make(r, "fe_pcpu", BH_MAP_TYPE_PERCPU_ARRAY, 4, 8, 3);
  for (uint32_t k = 0; k < 3; k++) {
    std::vector<uint64_t> all(bh_region_ncpus(r), 7 + k);  // same on every CPU: the thread may move
    CHECK_EQ(bh_map_update(pc, &k, all.data(), BH_ANY), 0);
  }
  Seen sp;
  CHECK_EQ(bh_map_for_each_elem(pc, visit, &sp), 3);
  CHECK_EQ(sp.values, 7 + 8 + 9);
  bh_map_close(pc);

  bh_map *h = make(r, "fe_hash", BH_MAP_TYPE_HASH, 4, 8, 256);
  Seen empty;
  CHECK_EQ(bh_map_for_each_elem(h, visit, &empty), 0);
  for (uint32_t k = 0; k < 64; k++) {
    uint64_t v = k;
    CHECK_EQ(bh_map_update(h, &k, &v, BH_ANY), 0);
  }
  Seen sh;
  CHECK_EQ(bh_map_for_each_elem(h, visit, &sh), 64);
  CHECK_EQ(sh.keys.size(), 64);
  CHECK_EQ(sh.values, 63 * 64 / 2);
  Seen eh;
  eh.stop_after = 10;
  CHECK_EQ(bh_map_for_each_elem(h, visit, &eh), 10);

  // Keys 0..63 stay; keys 1000..1099 come and go on another thread. Every
  // walk sees each stable key exactly once (its bucket is read whole) and
  // never more elements than can exist.
  std::atomic<bool> done{false};
  std::thread churn([&] {
    for (uint32_t round = 0; !done.load(); round++) {
      for (uint32_t k = 1000; k < 1100; k++) {
        uint64_t v = 0;
        if (round % 2 == 0) {
          bh_map_update_elem(h, &k, &v, BH_ANY);
        } else {
          bh_map_delete_elem(h, &k);
        }
      }
    }
  });
  bool each_once = true;
  bool bounded = true;
  for (int i = 0; i < 2000; i++) {
    Seen c;
    const long n = bh_map_for_each_elem(h, visit, &c);
    if (n == -EBUSY) continue;
    if (n < 64 || n > 164) bounded = false;
    for (uint32_t k = 0; k < 64; k++) {
      if (c.keys[k] != 1) each_once = false;
    }
  }
  done = true;
  churn.join();
  CHECK(each_once);
  CHECK(bounded);

  bh_map *q = make(r, "fe_queue", BH_MAP_TYPE_QUEUE, 0, 8, 4);
  CHECK_EQ(bh_map_for_each_elem(q, visit, &s), -EINVAL);
  bh_map_close(q);
  bh_map_close(h);
}

static void test_helpers_registered() {
  if (&g_registered_helpers == nullptr) return;  // linked against the real VM
  CHECK_EQ(bh_maps_register_helpers(nullptr), 0);
  for (uint32_t id : {1u, 2u, 3u, 25u, 27u, 87u, 88u, 89u, 130u, 131u, 132u, 133u, 134u, 164u}) {
    CHECK(g_registered_helpers.count(id) == 1);
  }
  CHECK(g_registered_helpers[1] == "bpf_map_lookup_elem");
  CHECK(g_registered_helpers[27] == "bpf_get_stackid");
}

int main(int argc, char **argv) {
  bool bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
  test_region();
  test_region_lifecycle();
  std::string name = region_name("maps");
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = 256ull << 20;
  bh_region *r = nullptr;
  if (bh_region_create(name.c_str(), &o, &r) != 0) {
    fprintf(stderr, "cannot create region\n");
    return 1;
  }
  test_array(r);
  test_hash(r);
  test_lru(r);
  test_per_cpu(r);
  test_lpm(r);
  test_queue(r);
  test_bloom(r);
  test_stack_trace(r);
  test_self_held_lock(r);
  test_ringbuf(r);
  test_perf(r);
  test_stress(r);
  test_for_each(r);
  test_helpers_registered();
  if (bench) test_bench(r);
  bh_region_close(r);
  printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
