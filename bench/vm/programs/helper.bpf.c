/* Helper-heavy: one call of a trivial native helper (add_one: r1 + 1) per
 * iteration, with just enough ALU around it that no call can be skipped.
 * The gcc -O2 twin is bh_bench_helper in core/native/bench/src/workloads.c,
 * calling bh_bench_add_one in another translation unit. */
#include "bench.h"

static u64 (*add_one)(u64 v) = (void *)BENCH_HELPER_ADD_ONE;

SEC("bench/helper")
u64 helper(struct loop_ctx *ctx) {
  u64 n = ctx->n;
  u64 acc = ctx->seed;
  for (u64 i = 0; i < n; i++) acc = add_one(acc ^ i);
  return acc;
}
