/* Arithmetic loop: an LCG step, a xorshift-rotate mix and a multiply-
 * accumulate per iteration; 64-bit ALU only, no memory in the loop.
 * The gcc -O2 twin is bh_bench_arith in core/native/bench/src/workloads.c. */
#include "bench.h"

SEC("bench/arith")
u64 arith(struct loop_ctx *ctx) {
  u64 n = ctx->n;
  u64 x = ctx->seed;
  u64 y = ctx->seed ^ 0x9e3779b97f4a7c15ull;
  u64 acc = 0;
  for (u64 i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    y ^= x >> 17;
    y = (y << 5) | (y >> 59);
    acc += (x & 0xffff) * (y | 1);
    acc ^= i;
  }
  return acc + y;
}
