/* Throughput-bound loop: a 64-bit hash finalizer (murmur3's fmix64) of each
 * index, summed into two accumulators. Iterations do not depend on each
 * other except through the two cheap accumulations, so an out-of-order CPU
 * overlaps them and the time follows the number and kind of instructions the
 * back end emits, which the latency-bound arith loop hides.
 * The gcc -O2 twin is bh_bench_mix in core/native/bench/src/workloads.c. */
#include "bench.h"

SEC("bench/mix")
u64 mix(struct loop_ctx *ctx) {
  u64 n = ctx->n;
  u64 seed = ctx->seed;
  u64 a = 0, b = 0;
  for (u64 i = 0; i < n; i++) {
    u64 x = i + seed;
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
