// Proves bh_helper_vector_clean: each helper it names, called the way a
// program calls it (every map type of bh_map_type_vector_clean, hits and
// misses, inserts and replaces, key sizes that take every compare path, a
// thread's first call), leaves the AVX and AVX-512 state as it found it: the
// upper halves of zmm0-15, zmm16-31 and k1-7 are filled with a pattern, the
// helper runs, and every byte is read back. A control call of libc's memcpy
// and memcmp shows the check can fail here (those use that state on this
// machine); if they happen not to, the run says so. Needs AVX-512F (else it
// checks the ymm upper halves alone) and is built with the selftests:
//   cmake -S core/native -B /tmp/bh -DBPFHOOK_BUILD_TESTS=ON
//   cmake --build /tmp/bh --target vector_clean_test -j2 && /tmp/bh/helpers/vector_clean_test
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/helpers.h"
#include "bpfhook/maps.h"

namespace {

int g_failures = 0;
bool g_avx512 = false;

// The state under test: upper 256 bits of zmm0-15 (or upper 128 of ymm0-15
// without AVX-512), zmm16-31, k1-7 (k0 cannot be a write mask, but libc may
// still write it: included).
struct alignas(64) VecState {
  uint8_t hi[16][32];   // zmm0-15 bits 256-511 (AVX-512) / ymm0-15 bits 128-255 (hi[i][0..15])
  uint8_t z16[16][64];  // zmm16-31
  uint64_t k[8];        // k0-7
};

void pattern(VecState *s, uint8_t seed) {
  auto *b = reinterpret_cast<uint8_t *>(s);
  for (size_t i = 0; i < sizeof *s; i++) b[i] = uint8_t(seed + i * 7 + (i >> 8));
  if (!g_avx512)
    for (auto &h : s->hi) memset(h + 16, 0, 16);
}

// Loads and stores are whole asm blocks: the compiler's own code between them
// is SSE only and touches none of this.
__attribute__((noinline)) void load_state(const VecState *s) {
  if (g_avx512) {
#define HI(n) "vinserti64x4 $1, " #n "*32(%0), %%zmm" #n ", %%zmm" #n "\n"
    asm volatile(HI(0) HI(1) HI(2) HI(3) HI(4) HI(5) HI(6) HI(7) HI(8) HI(9) HI(10) HI(11) HI(12) HI(13) HI(14)
                     HI(15)::"r"(s->hi)
                 : "memory");
#undef HI
#define Z(n) "vmovdqu64 (" #n "-16)*64(%0), %%zmm" #n "\n"
    asm volatile(Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27) Z(28) Z(29) Z(30)
                     Z(31)::"r"(s->z16)
                 : "memory");
#undef Z
#define K(n) "kmovq " #n "*8(%0), %%k" #n "\n"
    asm volatile(K(0) K(1) K(2) K(3) K(4) K(5) K(6) K(7)::"r"(s->k) : "memory");
#undef K
  } else {
#define HI(n) "vinserti128 $1, " #n "*32(%0), %%ymm" #n ", %%ymm" #n "\n"
    asm volatile(HI(0) HI(1) HI(2) HI(3) HI(4) HI(5) HI(6) HI(7) HI(8) HI(9) HI(10) HI(11) HI(12) HI(13) HI(14)
                     HI(15)::"r"(s->hi)
                 : "memory");
#undef HI
  }
}

__attribute__((noinline)) void store_state(VecState *s) {
  memset(s, 0, sizeof *s);
  if (g_avx512) {
#define HI(n) "vextracti64x4 $1, %%zmm" #n ", " #n "*32(%0)\n"
    asm volatile(HI(0) HI(1) HI(2) HI(3) HI(4) HI(5) HI(6) HI(7) HI(8) HI(9) HI(10) HI(11) HI(12) HI(13) HI(14)
                     HI(15)::"r"(s->hi)
                 : "memory");
#undef HI
#define Z(n) "vmovdqu64 %%zmm" #n ", (" #n "-16)*64(%0)\n"
    asm volatile(Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27) Z(28) Z(29) Z(30)
                     Z(31)::"r"(s->z16)
                 : "memory");
#undef Z
#define K(n) "kmovq %%k" #n ", " #n "*8(%0)\n"
    asm volatile(K(0) K(1) K(2) K(3) K(4) K(5) K(6) K(7)::"r"(s->k) : "memory");
#undef K
  } else {
#define HI(n) "vextracti128 $1, %%ymm" #n ", " #n "*32(%0)\n"
    asm volatile(HI(0) HI(1) HI(2) HI(3) HI(4) HI(5) HI(6) HI(7) HI(8) HI(9) HI(10) HI(11) HI(12) HI(13) HI(14)
                     HI(15)::"r"(s->hi)
                 : "memory");
#undef HI
  }
}

// Runs `fn` between a load and a store of the pattern; the number of bytes
// of state that changed.
size_t changed_by(const std::function<void()> &fn) {
  static uint8_t seed = 1;
  VecState want, got;
  pattern(&want, seed++);
  load_state(&want);
  fn();
  store_state(&got);
  if (!g_avx512) {
    for (auto &h : got.hi) memset(h + 16, 0, 16);
    memset(got.z16, 0, sizeof got.z16);
    memset(got.k, 0, sizeof got.k);
    memset(want.z16, 0, sizeof want.z16);
    memset(want.k, 0, sizeof want.k);
  }
  size_t n = 0;
  const auto *a = reinterpret_cast<const uint8_t *>(&want), *b = reinterpret_cast<const uint8_t *>(&got);
  for (size_t i = 0; i < sizeof want; i++) n += a[i] != b[i];
  return n;
}

std::set<int32_t> g_covered;

void expect_clean(int32_t id, const char *what, const std::function<void()> &fn) {
  g_covered.insert(id);
  const size_t n = changed_by(fn);
  if (n != 0) {
    g_failures++;
    fprintf(stderr, "helper %d (%s): changed %zu bytes of vector state\n", id, what, n);
  }
}

bh_map *make(bh_region *r, uint32_t type, uint32_t ks, uint32_t vs, uint32_t max) {
  bh_map_spec s{};
  s.sz = sizeof(s);
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  bh_map *m = nullptr;
  if (bh_map_create(r, &s, &m) != 0) {
    fprintf(stderr, "cannot create a map of type %u\n", type);
    g_failures++;
  }
  return m;
}

inline uint64_t u(const void *p) { return uint64_t(uintptr_t(p)); }

void map_cases(bh_region *r) {
  // Key sizes: 4 and 8 (one word), 12 and 20 (words and a tail), 64 (many).
  const uint32_t key_sizes[] = {4, 8, 12, 20, 64};
  const uint32_t value_sizes[] = {8, 24, 100, 200};
  for (uint32_t type : {uint32_t(BH_MAP_TYPE_HASH), uint32_t(BH_MAP_TYPE_PERCPU_HASH)}) {
    for (uint32_t ks : key_sizes) {
      for (uint32_t vs : value_sizes) {
        if (!bh_map_type_vector_clean(type)) continue;
        bh_map *m = make(r, type, ks, vs, 16);
        if (m == nullptr) continue;
        uint8_t key[64], other[64], value[256];
        for (uint32_t i = 0; i < sizeof key; i++) key[i] = uint8_t(i * 3 + 1), other[i] = key[i];
        other[ks - 1] ^= 0x80;  // differs in the last byte only: the tail compare decides
        for (uint32_t i = 0; i < sizeof value; i++) value[i] = uint8_t(0xa0 + i);
        char what[96];
        snprintf(what, sizeof what, "type %u key %u value %u", type, ks, vs);
        expect_clean(2, what, [&] { bh_helper_map_update_elem(u(m), u(key), u(value), BH_ANY, 0); });
        expect_clean(2, what, [&] { bh_helper_map_update_elem(u(m), u(key), u(value), BH_EXIST, 0); });
        uint64_t hit = 0, miss = 1;
        expect_clean(1, what, [&] { hit = bh_helper_map_lookup_elem(u(m), u(key), 0, 0, 0); });
        expect_clean(1, what, [&] { miss = bh_helper_map_lookup_elem(u(m), u(other), 0, 0, 0); });
        if (hit == 0 || miss != 0 || memcmp(reinterpret_cast<void *>(hit), value, vs) != 0) {
          g_failures++;
          fprintf(stderr, "%s: lookup after update: hit %llx miss %llx\n", what, (unsigned long long)hit,
                  (unsigned long long)miss);
        }
        expect_clean(3, what, [&] { bh_helper_map_delete_elem(u(m), u(other), 0, 0, 0); });
        expect_clean(3, what, [&] { bh_helper_map_delete_elem(u(m), u(key), 0, 0, 0); });
        bh_map_close(m);
      }
    }
  }
  for (uint32_t type : {uint32_t(BH_MAP_TYPE_ARRAY), uint32_t(BH_MAP_TYPE_PERCPU_ARRAY)}) {
    for (uint32_t vs : value_sizes) {
      bh_map *m = make(r, type, 4, vs, 4);
      if (m == nullptr) continue;
      uint32_t k = 2, bad = 9;
      uint8_t value[256];
      for (uint32_t i = 0; i < sizeof value; i++) value[i] = uint8_t(0x30 + i);
      char what[64];
      snprintf(what, sizeof what, "type %u value %u", type, vs);
      expect_clean(2, what, [&] { bh_helper_map_update_elem(u(m), u(&k), u(value), BH_ANY, 0); });
      expect_clean(1, what, [&] { bh_helper_map_lookup_elem(u(m), u(&k), 0, 0, 0); });
      expect_clean(1, what, [&] { bh_helper_map_lookup_elem(u(m), u(&bad), 0, 0, 0); });
      expect_clean(3, what, [&] { bh_helper_map_delete_elem(u(m), u(&k), 0, 0, 0); });
      bh_map_close(m);
    }
  }
  bh_map *ring = make(r, BH_MAP_TYPE_RINGBUF, 0, 0, 4096);
  if (ring != nullptr) {
    uint32_t k = 0;
    expect_clean(1, "ringbuf", [&] { bh_helper_map_lookup_elem(u(ring), u(&k), 0, 0, 0); });
    uint64_t a = 0, b = 0;
    expect_clean(131, "ringbuf", [&] { a = bh_helper_ringbuf_reserve(u(ring), 40, 0, 0, 0); });
    expect_clean(131, "ringbuf", [&] { b = bh_helper_ringbuf_reserve(u(ring), 200, 0, 0, 0); });
    expect_clean(132, "ringbuf", [&] { bh_helper_ringbuf_submit(a, 0, 0, 0, 0); });
    expect_clean(133, "ringbuf", [&] { bh_helper_ringbuf_discard(b, 0, 0, 0, 0); });
    bh_map_close(ring);
  }
}

void task_cases() {
  expect_clean(BH_FN_KTIME_GET_NS, "ktime", [] { bh_helper_ktime_get_ns(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_KTIME_GET_BOOT_NS, "ktime boot", [] { bh_helper_ktime_get_boot_ns(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_KTIME_GET_COARSE_NS, "ktime coarse", [] { bh_helper_ktime_get_coarse_ns(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_GET_SMP_PROCESSOR_ID, "cpu", [] { bh_helper_get_smp_processor_id(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_GET_CURRENT_UID_GID, "uid_gid", [] { bh_helper_get_current_uid_gid(0, 0, 0, 0, 0); });
  // First calls on a fresh thread fill the per-thread caches (pid_tgid, the
  // random seed): those paths are the ones that call libc.
  expect_clean(BH_FN_GET_CURRENT_PID_TGID, "pid_tgid", [] { bh_helper_get_current_pid_tgid(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_GET_PRANDOM_U32, "prandom", [] { bh_helper_get_prandom_u32(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_GET_PRANDOM_U32, "prandom", [] { bh_helper_get_prandom_u32(0, 0, 0, 0, 0); });
  expect_clean(BH_FN_GET_ATTACH_COOKIE, "cookie", [] { bh_helper_get_attach_cookie(0, 0, 0, 0, 0); });
  // Reads that succeed, and ones that fault (the guard's handler, the
  // destination zeroed), of several sizes; the first call decides the mode.
  static char src[512], dst[512];
  for (size_t i = 0; i < sizeof src; i++) src[i] = char('a' + i % 26);
  src[sizeof src - 1] = 0;
  const uint64_t bad = 8;  // never mapped
  using Fn = uint64_t (*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
  const struct {
    int32_t id;
    Fn fn;
  } reads[] = {{BH_FN_PROBE_READ, bh_helper_probe_read},
               {BH_FN_PROBE_READ_STR, bh_helper_probe_read_str},
               // The user / kernel forms are aliases of the two (register.cpp).
               {BH_FN_PROBE_READ_USER, bh_helper_probe_read},
               {BH_FN_PROBE_READ_KERNEL, bh_helper_probe_read},
               {BH_FN_PROBE_READ_USER_STR, bh_helper_probe_read_str},
               {BH_FN_PROBE_READ_KERNEL_STR, bh_helper_probe_read_str}};
  for (const auto &r : reads) {
    for (uint64_t n : {uint64_t(8), uint64_t(40), uint64_t(300)}) {
      expect_clean(r.id, "probe_read", [&] { r.fn(uint64_t(uintptr_t(dst)), n, uint64_t(uintptr_t(src)), 0, 0); });
      expect_clean(r.id, "probe_read fault", [&] { r.fn(uint64_t(uintptr_t(dst)), n, bad, 0, 0); });
    }
  }
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx")) {
    printf("skipped: this CPU has no AVX, so there is no state to keep\n");
    return 0;
  }
  g_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  printf("checking %s\n", g_avx512 ? "zmm0-15 upper halves, zmm16-31, k0-7" : "ymm0-15 upper halves (no AVX-512)");

  // The control: libc's own string functions, through pointers the compiler
  // cannot inline.
  static uint8_t a[4096], b[4096];
  void *(*volatile cpy)(void *, const void *, size_t) = memcpy;
  int (*volatile cmp)(const void *, const void *, size_t) = memcmp;
  const size_t control = changed_by([&] {
    cpy(a, b, sizeof a);
    if (cmp(a, b, sizeof a) != 0) abort();
  });
  if (control == 0)
    printf("note: libc's memcpy/memcmp left the state alone here, so the checks below cannot fail on this machine\n");
  else
    printf("control: libc's memcpy/memcmp changed %zu bytes of the state\n", control);

  std::string name = "/bpfhook-vecclean-" + std::to_string(getpid());
  bh_region_opts o{};
  o.sz = sizeof(o);
  o.size = 16ull << 20;
  bh_region *r = nullptr;
  if (bh_region_create(name.c_str(), &o, &r) != 0) {
    fprintf(stderr, "cannot create region\n");
    return 1;
  }
  map_cases(r);
  std::thread t(task_cases);  // a fresh thread: first calls included
  t.join();
  task_cases();
  bh_region_close(r);

  // Every helper the core calls clean is exercised above.
  for (int32_t id = 0; id < 512; id++) {
    if (bh_helper_vector_clean(id) && g_covered.count(id) == 0) {
      g_failures++;
      fprintf(stderr, "helper %d is called vector-clean but this test does not exercise it\n", id);
    }
  }
  for (int32_t id : g_covered) {
    if (!bh_helper_vector_clean(id)) {
      g_failures++;
      fprintf(stderr, "helper %d is exercised here but not in bh_helper_vector_clean\n", id);
    }
  }
  printf("%zu helpers checked: %s\n", g_covered.size(), g_failures == 0 ? "ok" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
