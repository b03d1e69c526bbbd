// Native stress runs (several threads calling the helper functions at once,
// with exact expected results) and a timing loop for benchmarks. Both call
// the helpers through function pointers, as JIT code does. Test and benchmark
// code: library bpfmaps_stress, kept out of bpfmaps (map_stress.h).
#include <time.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "map_internal.h"
#include "map_stress.h"

using namespace bpfhook::maps;

namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Busy-waits: nanosleep's timer slack (~50 us) would swamp short paces.
void pace(uint32_t ns) {
  if (ns == 0) return;
  uint64_t until = now_ns() + ns;
  while (now_ns() < until) shm::cpu_relax();
}

bool is_hash_family(uint32_t t) {
  return t == BH_MAP_TYPE_HASH || t == BH_MAP_TYPE_LRU_HASH || t == BH_MAP_TYPE_PERCPU_HASH;
}
bool is_array(uint32_t t) { return t == BH_MAP_TYPE_ARRAY || t == BH_MAP_TYPE_PERCPU_ARRAY; }

// Keys are little-endian integers in the first bytes of a key_size buffer.
struct KeyBuf {
  explicit KeyBuf(uint32_t size) : bytes(size < 8 ? 8 : size, 0), size(size) {}
  const void *set(uint64_t v) {
    uint32_t n = size < 8 ? size : 8;
    memcpy(bytes.data(), &v, n);
    return bytes.data();
  }
  std::vector<uint8_t> bytes;
  uint32_t size;
};

// The VM's helper signature (bh_helper_fn in vm.h), spelled here so this
// file does not depend on the VM.
using HelperFn = uint64_t (*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

// Helper function pointers, read through volatile so the compiler calls them
// like foreign code instead of inlining.
struct Helpers {
  HelperFn lookup, update, del, push, pop, ringbuf_output, ringbuf_reserve, ringbuf_submit, ringbuf_discard,
      perf_output;
  Helpers() {
    HelperFn volatile l = bh_helper_map_lookup_elem;
    HelperFn volatile u = bh_helper_map_update_elem;
    HelperFn volatile d = bh_helper_map_delete_elem;
    HelperFn volatile pu = bh_helper_map_push_elem;
    HelperFn volatile po = bh_helper_map_pop_elem;
    HelperFn volatile ro = bh_helper_ringbuf_output;
    HelperFn volatile rr = bh_helper_ringbuf_reserve;
    HelperFn volatile rs = bh_helper_ringbuf_submit;
    HelperFn volatile rd = bh_helper_ringbuf_discard;
    HelperFn volatile pe = bh_helper_perf_event_output;
    lookup = l;
    update = u;
    del = d;
    push = pu;
    pop = po;
    ringbuf_output = ro;
    ringbuf_reserve = rr;
    ringbuf_submit = rs;
    ringbuf_discard = rd;
    perf_output = pe;
  }
};

uint64_t as_u64(const void *p) { return uint64_t(uintptr_t(p)); }

struct Counters {
  std::atomic<uint64_t> ok{0}, failed{0}, misses{0}, drops{0}, discarded{0};
};

template <class Fn>
void run_threads(uint32_t n, Fn fn) {
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (uint32_t t = 0; t < n; t++) threads.emplace_back(fn, t);
  for (auto &th : threads) th.join();
}

// Sum of the u64 at the start of every value (every CPU's, for per-CPU maps)
// over keys [0, keys), read from user space.
uint64_t sum_values(bh_map *m, uint32_t keys) {
  std::vector<uint8_t> out(m->info.user_value_size);
  KeyBuf key(m->key_size);
  uint64_t sum = 0;
  uint32_t per = (m->type == BH_MAP_TYPE_PERCPU_ARRAY || m->type == BH_MAP_TYPE_PERCPU_HASH) ? m->ncpus : 1;
  for (uint32_t k = 0; k < keys; k++) {
    if (bh_map_lookup(m, key.set(k), out.data()) != 0) continue;
    for (uint32_t c = 0; c < per; c++) sum += load64(out.data() + uint64_t(c) * m->stride);
  }
  return sum;
}

int stress_add(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  if (!is_hash_family(m->type) && !is_array(m->type)) return -EINVAL;
  if (m->value_size < 8 || o.keys == 0) return -EINVAL;
  uint32_t keys = o.keys;
  if (is_array(m->type) && keys > m->max_entries) keys = m->max_entries;
  Counters c;
  Helpers h;
  run_threads(o.threads, [&](uint32_t t) {
    KeyBuf key(m->key_size);
    std::vector<uint8_t> zero(m->value_size, 0);
    uint64_t ok = 0, failed = 0;
    for (uint64_t i = 0; i < o.iterations; i++) {
      const void *k = key.set((i + uint64_t(t) * 7) % keys);
      uint64_t p = h.lookup(as_u64(m), as_u64(k), 0, 0, 0);
      if (p == 0) {
        int64_t r = int64_t(h.update(as_u64(m), as_u64(k), as_u64(zero.data()), BH_NOEXIST, 0));
        if (r != 0 && r != -EEXIST) failed++;
        p = h.lookup(as_u64(m), as_u64(k), 0, 0, 0);
        if (p == 0) {
          failed++;
          continue;
        }
      }
      __atomic_fetch_add(reinterpret_cast<uint64_t *>(uintptr_t(p)), uint64_t(1), __ATOMIC_RELAXED);
      ok++;
    }
    c.ok += ok;
    c.failed += failed;
  });
  res.ok = c.ok;
  res.failed = c.failed;
  res.sum = sum_values(m, keys);
  return 0;
}

int stress_churn(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  if (!is_hash_family(m->type) || m->value_size < 8 || m->key_size < 4 || o.keys == 0) return -EINVAL;
  // Stable keys [0, keys) with value = key, from user space (all CPUs).
  KeyBuf key(m->key_size);
  std::vector<uint8_t> value(m->info.user_value_size, 0);
  for (uint32_t k = 0; k < o.keys; k++) {
    uint32_t per = m->type == BH_MAP_TYPE_PERCPU_HASH ? m->ncpus : 1;
    for (uint32_t c = 0; c < per; c++) memcpy(value.data() + uint64_t(c) * m->stride, &k, 4);
    int r = bh_map_update(m, key.set(k), value.data(), BH_ANY);
    if (r != 0) return r;
  }
  Counters c;
  Helpers h;
  run_threads(o.threads, [&](uint32_t t) {
    KeyBuf kb(m->key_size);
    std::vector<uint8_t> v(m->value_size, 0);
    uint64_t ok = 0, failed = 0, misses = 0;
    if (t % 2 == 0) {
      // Private keys far above the stable range; 16 live at most per thread.
      uint64_t base = (uint64_t(1) << 30) + uint64_t(t) * 1024;
      for (uint64_t i = 0; i < o.iterations; i++) {
        const void *k = kb.set(base + i % 16);
        uint64_t val = i;
        memcpy(v.data(), &val, 8);
        if (int64_t(h.update(as_u64(m), as_u64(k), as_u64(v.data()), BH_NOEXIST, 0)) != 0)
          failed++;
        else
          ok++;
        if (int64_t(h.del(as_u64(m), as_u64(k), 0, 0, 0)) != 0)
          failed++;
        else
          ok++;
      }
    } else {
      for (uint64_t i = 0; i < o.iterations; i++) {
        uint32_t want = uint32_t((i * 2654435761u + t) % o.keys);
        uint64_t p = h.lookup(as_u64(m), as_u64(kb.set(want)), 0, 0, 0);
        if (p == 0 || load32(reinterpret_cast<const void *>(uintptr_t(p))) != want)
          misses++;
        else
          ok++;
      }
    }
    c.ok += ok;
    c.failed += failed;
    c.misses += misses;
  });
  res.ok = c.ok;
  res.failed = c.failed;
  res.misses = c.misses;
  return 0;
}

int stress_insert(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  if (!is_hash_family(m->type) || m->key_size < 4) return -EINVAL;
  Counters c;
  Helpers h;
  run_threads(o.threads, [&](uint32_t t) {
    KeyBuf kb(m->key_size);
    std::vector<uint8_t> v(m->value_size, 0);
    uint64_t ok = 0, failed = 0;
    for (uint64_t i = 0; i < o.iterations; i++) {
      uint64_t k = uint64_t(t) * o.iterations + i;
      memcpy(v.data(), &k, std::min<size_t>(8, v.size()));
      if (int64_t(h.update(as_u64(m), as_u64(kb.set(k)), as_u64(v.data()), BH_ANY, 0)) == 0)
        ok++;
      else
        failed++;
    }
    c.ok += ok;
    c.failed += failed;
  });
  res.ok = c.ok;
  res.failed = c.failed;
  return 0;
}

struct Rec {
  uint32_t thread;
  uint32_t pad;
  uint64_t seq;
};

struct OrderCheck {
  explicit OrderCheck(size_t slots) : last(slots, 0) {}
  // Sequence numbers start at 1 so that 0 means "none yet".
  void see(size_t slot, uint64_t seq) {
    if (slot >= last.size() || seq <= last[slot]) {
      errors++;
      return;
    }
    last[slot] = seq;
  }
  std::vector<uint64_t> last;
  uint64_t errors = 0;
  uint64_t consumed = 0;
};

int stress_ringbuf(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  Counters c;
  Helpers h;
  std::atomic<bool> done{false};
  OrderCheck check(o.threads);
  std::thread consumer([&] {
    auto fn = [](void *ctx, const void *data, uint32_t size) -> int {
      auto *ck = static_cast<OrderCheck *>(ctx);
      Rec r;
      if (size != sizeof(r)) {
        ck->errors++;
        return 0;
      }
      memcpy(&r, data, sizeof(r));
      ck->see(r.thread, r.seq);
      ck->consumed++;
      return 0;
    };
    for (;;) {
      bool finished = done.load(std::memory_order_acquire);
      int n = bh_ringbuf_consume(m, fn, &check, 0);
      if (finished && n == 0) break;
      if (n == 0) std::this_thread::yield();
    }
  });
  run_threads(o.threads, [&](uint32_t t) {
    uint64_t ok = 0, drops = 0, discarded = 0;
    for (uint64_t i = 1; i <= o.iterations; i++) {
      Rec r{t, 0, i};
      if (i % 8 == 0) {
        uint64_t p = h.ringbuf_reserve(as_u64(m), sizeof(r), 0, 0, 0);
        if (p == 0) {
          drops++;
        } else {
          h.ringbuf_discard(p, 0, 0, 0, 0);
          discarded++;
        }
      } else if (i % 2 == 0) {
        if (int64_t(h.ringbuf_output(as_u64(m), as_u64(&r), sizeof(r), 0, 0)) == 0)
          ok++;
        else
          drops++;
      } else {
        uint64_t p = h.ringbuf_reserve(as_u64(m), sizeof(r), 0, 0, 0);
        if (p == 0) {
          drops++;
        } else {
          memcpy(reinterpret_cast<void *>(uintptr_t(p)), &r, sizeof(r));
          h.ringbuf_submit(p, 0, 0, 0, 0);
          ok++;
        }
      }
      pace(o.pace_ns);
    }
    c.ok += ok;
    c.drops += drops;
    c.discarded += discarded;
  });
  done.store(true, std::memory_order_release);
  consumer.join();
  res.ok = c.ok;
  res.drops = c.drops;
  res.discarded = c.discarded;
  res.consumed = check.consumed;
  res.order_errors = check.errors;
  return 0;
}

int stress_perf(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  Counters c;
  Helpers h;
  std::atomic<bool> done{false};
  struct Ctx {
    OrderCheck check;
    uint32_t threads;
    uint64_t lost = 0;
  } ctx{OrderCheck(size_t(o.threads) * m->pool_size), o.threads};
  std::thread consumer([&] {
    auto sample = [](void *p, uint32_t ring, const void *data, uint32_t size) -> int {
      auto *cx = static_cast<Ctx *>(p);
      Rec r;
      if (size != sizeof(r)) {
        cx->check.errors++;
        return 0;
      }
      memcpy(&r, data, sizeof(r));
      // A thread may move between CPUs: order holds per (ring, thread).
      cx->check.see(size_t(ring) * cx->threads + r.thread, r.seq);
      cx->check.consumed++;
      return 0;
    };
    auto lost = [](void *p, uint32_t, uint64_t n) { static_cast<Ctx *>(p)->lost += n; };
    for (;;) {
      bool finished = done.load(std::memory_order_acquire);
      int n = bh_perf_consume(m, -1, sample, lost, &ctx, 0);
      if (finished && n == 0) {
        bh_perf_consume(m, -1, sample, lost, &ctx, 0);  // collect the final lost counts
        break;
      }
      if (n <= 0) std::this_thread::yield();
    }
  });
  run_threads(o.threads, [&](uint32_t t) {
    uint64_t ok = 0, drops = 0;
    for (uint64_t i = 1; i <= o.iterations; i++) {
      Rec r{t, 0, i};
      if (int64_t(h.perf_output(0, as_u64(m), BH_F_CURRENT_CPU, as_u64(&r), sizeof(r))) == 0)
        ok++;
      else
        drops++;
      pace(o.pace_ns);
    }
    c.ok += ok;
    c.drops += drops;
  });
  done.store(true, std::memory_order_release);
  consumer.join();
  res.ok = c.ok;
  res.drops = ctx.lost;
  res.failed = c.drops != ctx.lost ? 1 : 0;  // every refused sample must be reported lost
  res.consumed = ctx.check.consumed;
  res.order_errors = ctx.check.errors;
  return 0;
}

int stress_queue(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  if (m->value_size < 8) return -EINVAL;
  uint32_t pushers = (o.threads + 1) / 2;
  uint32_t poppers = o.threads / 2;
  if (poppers == 0) poppers = 1;  // a single thread still needs someone to pop
  const uint64_t total = uint64_t(pushers) * o.iterations;
  std::atomic<uint64_t> popped{0}, pushed_sum{0}, popped_sum{0};
  Counters c;
  Helpers h;
  run_threads(pushers + poppers, [&](uint32_t t) {
    std::vector<uint8_t> v(m->value_size, 0);
    if (t < pushers) {
      uint64_t sum = 0, failed = 0;
      for (uint64_t i = 0; i < o.iterations; i++) {
        uint64_t val = (uint64_t(t) << 32) | i;
        memcpy(v.data(), &val, 8);
        for (;;) {
          int64_t r = int64_t(h.push(as_u64(m), as_u64(v.data()), 0, 0, 0));
          if (r == 0) break;
          if (r != -E2BIG) {
            failed++;
            break;
          }
          std::this_thread::yield();  // full: let a popper run
        }
        sum += val;
      }
      pushed_sum += sum;
      c.failed += failed;
      return;
    }
    uint64_t sum = 0, n = 0, failed = 0;
    while (popped.load(std::memory_order_relaxed) < total) {
      int64_t r = int64_t(h.pop(as_u64(m), as_u64(v.data()), 0, 0, 0));
      if (r == 0) {
        sum += load64(v.data());
        n++;
        popped.fetch_add(1, std::memory_order_relaxed);
      } else if (r == -ENOENT) {
        std::this_thread::yield();
      } else {
        failed++;
        break;
      }
    }
    popped_sum += sum;
    c.ok += n;
    c.failed += failed;
  });
  res.ok = c.ok;
  res.failed = c.failed;
  res.sum = popped_sum;
  res.misses = pushed_sum != popped_sum ? 1 : 0;
  return 0;
}

int stress_produce(bh_map *m, const bh_maps_stress_opts &o, bh_maps_stress_result &res) {
  const bool ring = m->type == BH_MAP_TYPE_RINGBUF;
  if (!ring && m->type != BH_MAP_TYPE_PERF_EVENT_ARRAY) return -EINVAL;
  Counters c;
  Helpers h;
  run_threads(o.threads, [&](uint32_t t) {
    uint64_t ok = 0, drops = 0;
    for (uint64_t i = 1; i <= o.iterations; i++) {
      Rec r{t, 0, i};
      int64_t rc = ring ? int64_t(h.ringbuf_output(as_u64(m), as_u64(&r), sizeof(r), 0, 0))
                        : int64_t(h.perf_output(0, as_u64(m), BH_F_CURRENT_CPU, as_u64(&r), sizeof(r)));
      if (rc == 0)
        ok++;
      else
        drops++;
      pace(o.pace_ns);
    }
    c.ok += ok;
    c.drops += drops;
  });
  res.ok = c.ok;
  res.drops = c.drops;
  return 0;
}

}  // namespace

extern "C" {

int bh_maps_stress(bh_map *m, const bh_maps_stress_opts *opts, bh_maps_stress_result *res) {
  if (m == nullptr || opts == nullptr || res == nullptr) return -EINVAL;
  bh_maps_stress_opts o{};
  memcpy(&o, opts, opts->sz < sizeof(o) ? opts->sz : sizeof(o));
  if (o.threads == 0 || o.threads > 256) return -EINVAL;
  memset(res, 0, sizeof(*res));
  uint64_t start = now_ns();
  int err;
  switch (o.op) {
    case BH_STRESS_ADD: err = stress_add(m, o, *res); break;
    case BH_STRESS_CHURN: err = stress_churn(m, o, *res); break;
    case BH_STRESS_RINGBUF: err = m->type == BH_MAP_TYPE_RINGBUF ? stress_ringbuf(m, o, *res) : -EINVAL; break;
    case BH_STRESS_PERF: err = m->type == BH_MAP_TYPE_PERF_EVENT_ARRAY ? stress_perf(m, o, *res) : -EINVAL; break;
    case BH_STRESS_QUEUE:
      err = (m->type == BH_MAP_TYPE_QUEUE || m->type == BH_MAP_TYPE_STACK) ? stress_queue(m, o, *res) : -EINVAL;
      break;
    case BH_STRESS_INSERT: err = stress_insert(m, o, *res); break;
    case BH_STRESS_PRODUCE: err = stress_produce(m, o, *res); break;
    default: err = -EINVAL;
  }
  res->elapsed_ns = now_ns() - start;
  return err;
}

int bh_maps_bench(bh_map *m, uint32_t op, uint64_t iterations, uint32_t keys, double *ns_per_op) {
  if (m == nullptr || ns_per_op == nullptr || iterations == 0) return -EINVAL;
  if (keys == 0) keys = 1;
  Helpers h;
  // A table of keys in L1, indexed with a mask: a division per call would
  // cost more than the lookup being measured.
  constexpr uint32_t kTable = 1024;
  const uint32_t ksize = m->key_size >= 4 ? m->key_size : 4;
  std::vector<uint8_t> table(size_t(kTable) * ksize, 0);
  uint32_t range = keys;
  if (is_array(m->type) && range > m->max_entries) range = m->max_entries;
  uint32_t offset = op == BH_BENCH_LOOKUP_MISS ? 0x40000000u : 0;
  for (uint32_t i = 0; i < kTable; i++) {
    uint32_t k = offset + uint32_t((uint64_t(i) * 2654435761u) % range);
    memcpy(table.data() + size_t(i) * ksize, &k, 4);
  }
  if (is_hash_family(m->type) && op != BH_BENCH_RINGBUF && op != BH_BENCH_PERF) {
    KeyBuf key(m->key_size);
    std::vector<uint8_t> zero(m->info.user_value_size, 0);
    for (uint32_t k = 0; k < range; k++) {
      int r = bh_map_update(m, key.set(k), zero.data(), BH_ANY);
      if (r != 0) return r;
    }
  }
  std::vector<uint8_t> value(m->value_size >= 16 ? m->value_size : 16, 0);
  const uint64_t mp = as_u64(m);
  const uint8_t *tb = table.data();
  uint64_t sink = 0;
  auto noop_rb = [](void *, const void *, uint32_t) -> int { return 0; };
  auto noop_perf = [](void *, uint32_t, const void *, uint32_t) -> int { return 0; };
  uint64_t start = now_ns();
  switch (op) {
    case BH_BENCH_LOOKUP:
    case BH_BENCH_LOOKUP_MISS:
      for (uint64_t i = 0; i < iterations; i++) sink += h.lookup(mp, as_u64(tb + (i & (kTable - 1)) * ksize), 0, 0, 0);
      break;
    case BH_BENCH_UPDATE:
      if (!is_hash_family(m->type) && !is_array(m->type)) return -EINVAL;
      for (uint64_t i = 0; i < iterations; i++) {
        sink += h.update(mp, as_u64(tb + (i & (kTable - 1)) * ksize), as_u64(value.data()), BH_ANY, 0);
      }
      break;
    case BH_BENCH_ADD:
      if (m->value_size < 8) return -EINVAL;
      for (uint64_t i = 0; i < iterations; i++) {
        uint64_t p = h.lookup(mp, as_u64(tb + (i & (kTable - 1)) * ksize), 0, 0, 0);
        if (p != 0) __atomic_fetch_add(reinterpret_cast<uint64_t *>(uintptr_t(p)), uint64_t(1), __ATOMIC_RELAXED);
      }
      break;
    case BH_BENCH_RINGBUF:
      if (m->type != BH_MAP_TYPE_RINGBUF) return -EINVAL;
      for (uint64_t i = 0; i < iterations; i++) {
        sink += h.ringbuf_output(mp, as_u64(value.data()), 16, 0, 0);
        if ((i & 255) == 255) bh_ringbuf_consume(m, noop_rb, nullptr, 0);
      }
      break;
    case BH_BENCH_PERF:
      if (m->type != BH_MAP_TYPE_PERF_EVENT_ARRAY) return -EINVAL;
      for (uint64_t i = 0; i < iterations; i++) {
        sink += h.perf_output(0, mp, BH_F_CURRENT_CPU, as_u64(value.data()), 16);
        if ((i & 255) == 255) bh_perf_consume(m, -1, noop_perf, nullptr, nullptr, 0);
      }
      break;
    default: return -EINVAL;
  }
  uint64_t elapsed = now_ns() - start;
  __asm__ volatile("" : : "r"(sink) : "memory");
  *ns_per_op = double(elapsed) / double(iterations);
  return 0;
}

}  // extern "C"
