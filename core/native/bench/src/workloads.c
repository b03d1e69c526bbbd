/* The VM benchmark's workloads as gcc -O2 compiles them. Each function is the
 * algorithm of its bench/vm/programs/<name>.bpf.c twin, statement for
 * statement; bench-vm.ts refuses to report a workload whose three back ends
 * do not return the same value.
 *
 * Nothing here can be folded away: every input comes from the context the
 * caller fills at run time, the result is returned (and the harness adds it
 * into a volatile sink), and the memory workload's stores land in the
 * caller's buffer. */
#include "bpfhook/bench.h"

struct loop_ctx {
  uint64_t n;
  uint64_t seed;
};

#define BENCH_MEMORY_BYTES 8192
struct memory_ctx {
  uint64_t len;
  uint64_t seed;
  uint32_t hist[256];
  uint8_t data[BENCH_MEMORY_BYTES];
};

uint64_t bh_bench_arith(void *c, size_t ctx_len) {
  (void)ctx_len;
  const struct loop_ctx *ctx = c;
  uint64_t n = ctx->n;
  uint64_t x = ctx->seed;
  uint64_t y = ctx->seed ^ 0x9e3779b97f4a7c15ull;
  uint64_t acc = 0;
  for (uint64_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    y ^= x >> 17;
    y = (y << 5) | (y >> 59);
    acc += (x & 0xffff) * (y | 1);
    acc ^= i;
  }
  return acc + y;
}

uint64_t bh_bench_memory(void *c, size_t ctx_len) {
  (void)ctx_len;
  struct memory_ctx *ctx = c;
  uint64_t len = ctx->len;
  if (len > BENCH_MEMORY_BYTES) len = BENCH_MEMORY_BYTES;
  for (uint32_t k = 0; k < 256; k++) ctx->hist[k] = 0;
  for (uint64_t i = 0; i < len; i++) ctx->hist[ctx->data[i]]++;
  uint64_t run = 0, sum = 0;
  for (uint32_t k = 0; k < 256; k++) {
    run += ctx->hist[k];
    ctx->hist[k] = (uint32_t)run;
    sum += run * (k + 1);
  }
  return sum;
}

uint64_t bh_bench_mix(void *c, size_t ctx_len) {
  (void)ctx_len;
  const struct loop_ctx *ctx = c;
  uint64_t n = ctx->n;
  uint64_t seed = ctx->seed;
  uint64_t a = 0, b = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t x = i + seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    a += x;
    b ^= x >> 7;
  }
  return a ^ b;
}

uint64_t bh_bench_helper(void *c, size_t ctx_len) {
  (void)ctx_len;
  const struct loop_ctx *ctx = c;
  uint64_t n = ctx->n;
  uint64_t acc = ctx->seed;
  for (uint64_t i = 0; i < n; i++) acc = bh_bench_add_one(acc ^ i);
  return acc;
}

static const bh_bench_workload kWorkloads[] = {
    {"arith", bh_bench_arith, sizeof(struct loop_ctx)},
    {"memory", bh_bench_memory, sizeof(struct memory_ctx)},
    {"mix", bh_bench_mix, sizeof(struct loop_ctx)},
    {"helper", bh_bench_helper, sizeof(struct loop_ctx)},
};

const bh_bench_workload *bh_bench_workloads(size_t *n) {
  *n = sizeof kWorkloads / sizeof kWorkloads[0];
  return kWorkloads;
}

const char *bh_bench_compiler(void) {
#if defined(__clang__)
  return "clang " __clang_version__ " -O2";
#elif defined(__GNUC__)
  return "gcc " __VERSION__ " -O2";
#else
  return "unknown compiler";
#endif
}
