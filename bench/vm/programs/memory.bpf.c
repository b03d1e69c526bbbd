/* Memory-heavy: a byte histogram of the context's data (a load, a dependent
 * load and a store per byte), then a prefix sum written back over the
 * buckets and a weighted checksum of it. The gcc -O2 twin is bh_bench_memory
 * in core/native/bench/src/workloads.c. The length is clamped to the data
 * the context holds, which bounds the loop (strict mode's verifier needs
 * that; the benchmark always passes BENCH_MEMORY_BYTES). */
#include "bench.h"

SEC("bench/memory")
u64 memory(struct memory_ctx *ctx) {
  u64 len = ctx->len;
  if (len > BENCH_MEMORY_BYTES) len = BENCH_MEMORY_BYTES;
  for (u32 k = 0; k < 256; k++) ctx->hist[k] = 0;
  for (u64 i = 0; i < len; i++) ctx->hist[ctx->data[i]]++;
  u64 run = 0, sum = 0;
  for (u32 k = 0; k < 256; k++) {
    run += ctx->hist[k];
    ctx->hist[k] = (u32)run;
    sum += run * (k + 1);
  }
  return sum;
}
