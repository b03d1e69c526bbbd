/* Arithmetic loop: an LCG step, a xorshift-rotate mix and a multiply-
 * accumulate per iteration; 64-bit ALU only, no memory in the loop.
 * The gcc -O2 twin is bh_bench_arith in core/native/bench/src/workloads.c.
 * The n iterations run in chunks (bench.h, BENCH_CHUNK) so that the program
 * verifies in strict mode; the sequence of steps is the twin's. */
#include "bench.h"

struct arith_state {
  u64 x, y, acc, i;
};

static __attribute__((always_inline)) void step(struct arith_state *s) {
  s->x = s->x * 6364136223846793005ull + 1442695040888963407ull;
  s->y ^= s->x >> 17;
  s->y = (s->y << 5) | (s->y >> 59);
  s->acc += (s->x & 0xffff) * (s->y | 1);
  s->acc ^= s->i;
  s->i++;
}

static long chunk(u64 index, void *p) {
  struct arith_state *st = p;
  struct arith_state s = *st; /* in registers for the chunk */
  for (u64 j = 0; j < BENCH_CHUNK; j++) step(&s);
  *st = s;
  return 0;
}

SEC("bench/arith")
u64 arith(struct loop_ctx *ctx) {
  u64 n = ctx->n;
  struct arith_state s = {ctx->seed, ctx->seed ^ 0x9e3779b97f4a7c15ull, 0, 0};
  bpf_loop(n / BENCH_CHUNK, chunk, &s, 0);
  u32 rest = n % BENCH_CHUNK;
  for (u32 j = 0; j < rest; j++) step(&s);
  return s.acc + s.y;
}
