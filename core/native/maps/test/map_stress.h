/* Stress runs and a timing loop over the map helpers, for tests and
 * benchmarks only: library `bpfmaps_stress` (core/native/maps/CMakeLists.txt),
 * linked by the native map tests and the testing addon
 * (core/native/testing), never by `bpfmaps` or the production addon.
 * map_stress.cpp reads map internals (map_internal.h), so it must be built
 * from the same tree as the bpfmaps it runs against. */
#ifndef BPFHOOK_MAP_STRESS_H
#define BPFHOOK_MAP_STRESS_H

#include "bpfhook/maps.h"

#ifdef __cplusplus
extern "C" {
#endif

enum bh_maps_stress_op {
  /* Each thread: look up key (i % keys), insert 0 with BH_NOEXIST if missing,
   * atomically add 1 to the u64 at the start of the value (hash family,
   * arrays, per-CPU). Total over keys (and CPUs) = threads * iterations. */
  BH_STRESS_ADD = 1,
  /* Hash family: even threads insert and delete private keys (every op must
   * succeed), odd threads look up keys [0, keys) inserted beforehand with
   * value = key (every lookup must hit with the right value). */
  BH_STRESS_CHURN = 2,
  /* Ring buffer: producers write {thread, seq} records (reserve/submit,
   * output, and every 8th one discarded) while a consumer thread checks
   * per-thread order. consumed + drops + discarded = threads * iterations. */
  BH_STRESS_RINGBUF = 3,
  /* Perf event array: producers output {thread, seq} to their CPU's ring
   * while a consumer checks per-ring per-thread order. consumed + lost = all. */
  BH_STRESS_PERF = 4,
  /* Queue/stack: even threads push (retrying when full), odd threads pop;
   * sum of popped values = sum pushed. */
  BH_STRESS_QUEUE = 5,
  /* Hash family: every thread inserts distinct keys; counts failures (an LRU
   * map must never fail: it evicts). */
  BH_STRESS_INSERT = 6,
  /* Ring buffer or perf event array: producers only, each writing records
   * {u32 thread, u32 0, u64 seq} with seq 1, 2, ... (bpf_ringbuf_output /
   * bpf_perf_event_output to the calling CPU); someone else consumes.
   * ok = records written, drops = refused. */
  BH_STRESS_PRODUCE = 7,
};

typedef struct bh_maps_stress_opts {
  size_t sz;
  uint32_t op;
  uint32_t threads;
  uint64_t iterations; /* per thread */
  uint32_t keys;       /* key space for ADD / CHURN */
  uint32_t pace_ns;    /* producers sleep this long between records (0 = none) */
} bh_maps_stress_opts;

typedef struct bh_maps_stress_result {
  uint64_t ok;           /* operations that succeeded */
  uint64_t failed;       /* operations that returned an unexpected error */
  uint64_t misses;       /* CHURN: lookups of stable keys that failed or saw a wrong value */
  uint64_t consumed;     /* records received by the consumer thread */
  uint64_t drops;        /* ring: refused reservations; perf: lost samples */
  uint64_t discarded;    /* ring: records discarded on purpose */
  uint64_t order_errors; /* records out of per-producer order */
  uint64_t sum;          /* QUEUE: sum popped; ADD: sum read back over all keys */
  uint64_t elapsed_ns;
} bh_maps_stress_result;

int bh_maps_stress(bh_map *m, const bh_maps_stress_opts *opts, bh_maps_stress_result *res);

enum bh_maps_bench_op {
  BH_BENCH_LOOKUP = 1, /* helper map_lookup_elem on existing keys (i % keys) */
  BH_BENCH_UPDATE = 2, /* helper map_update_elem BH_ANY on existing keys */
  BH_BENCH_ADD = 3,    /* lookup + atomic add through the pointer */
  BH_BENCH_LOOKUP_MISS = 4,
  BH_BENCH_RINGBUF = 5, /* ringbuf_output of 16 bytes, drained every 256 records */
  BH_BENCH_PERF = 6,    /* perf_event_output of 16 bytes, drained every 256 */
};
/* Times `iterations` helper calls in a tight loop through a function pointer
 * (as JIT code calls helpers). Prepares the keys it needs (inserting
 * [0, keys) into hash maps). Writes ns per call. */
int bh_maps_bench(bh_map *m, uint32_t op, uint64_t iterations, uint32_t keys, double *ns_per_op);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_MAP_STRESS_H */
