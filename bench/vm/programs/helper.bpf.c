/* Helper-heavy: one call of a trivial native helper (add_one: r1 + 1) per
 * iteration, with just enough ALU around it that no call can be skipped.
 * The gcc -O2 twin is bh_bench_helper in core/native/bench/src/workloads.c,
 * calling bh_bench_add_one in another translation unit. The n iterations run
 * in chunks (bench.h, BENCH_CHUNK) so that the program verifies in strict
 * mode; the sequence of calls is the twin's. */
#include "bench.h"

static u64 (*add_one)(u64 v) = (void *)BENCH_HELPER_ADD_ONE;

struct helper_state {
  u64 acc, i;
};

static long chunk(u64 index, void *p) {
  struct helper_state *st = p;
  u64 acc = st->acc, i = st->i;
  for (u64 j = 0; j < BENCH_CHUNK; j++, i++) acc = add_one(acc ^ i);
  st->acc = acc;
  st->i = i;
  return 0;
}

SEC("bench/helper")
u64 helper(struct loop_ctx *ctx) {
  u64 n = ctx->n;
  struct helper_state s = {ctx->seed, 0};
  bpf_loop(n / BENCH_CHUNK, chunk, &s, 0);
  u32 rest = n % BENCH_CHUNK;
  for (u32 j = 0; j < rest; j++, s.i++) s.acc = add_one(s.acc ^ s.i);
  return s.acc;
}
