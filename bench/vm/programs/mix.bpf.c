/* Throughput-bound loop: a 64-bit hash finalizer (murmur3's fmix64) of each
 * index, summed into two accumulators. Iterations do not depend on each
 * other except through the two cheap accumulations, so an out-of-order CPU
 * overlaps them and the time follows the number and kind of instructions the
 * back end emits, which the latency-bound arith loop hides.
 * The gcc -O2 twin is bh_bench_mix in core/native/bench/src/workloads.c.
 * The n iterations run in chunks (bench.h, BENCH_CHUNK) so that the program
 * verifies in strict mode; the sequence of steps is the twin's. */
#include "bench.h"

struct mix_state {
  u64 seed, a, b, i;
};

static __attribute__((always_inline)) void step(struct mix_state *s) {
  u64 x = s->i + s->seed;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  s->a += x;
  s->b ^= x >> 7;
  s->i++;
}

static long chunk(u64 index, void *p) {
  struct mix_state *st = p;
  struct mix_state s = *st;
  for (u64 j = 0; j < BENCH_CHUNK; j++) step(&s);
  *st = s;
  return 0;
}

SEC("bench/mix")
u64 mix(struct loop_ctx *ctx) {
  u64 n = ctx->n;
  struct mix_state s = {ctx->seed, 0, 0, 0};
  bpf_loop(n / BENCH_CHUNK, chunk, &s, 0);
  u32 rest = n % BENCH_CHUNK;
  for (u32 j = 0; j < rest; j++) step(&s);
  return s.a ^ s.b;
}
