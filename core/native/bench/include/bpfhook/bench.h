/* gcc -O2 baselines of the VM benchmark's workloads (npm run bench:vm).
 *
 * Each takes the same context the eBPF program gets and has the shape of a
 * compiled program (bh_jit_fn: ctx, ctx_len -> r0), so the harness times all
 * three back ends with one loop. Context layouts: bench/vm/programs/bench.h. */
#ifndef BPFHOOK_BENCH_H
#define BPFHOOK_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t (*bh_bench_fn)(void *ctx, size_t ctx_len);

/* Twins of arith.bpf.c, memory.bpf.c, mix.bpf.c and helper.bpf.c. */
uint64_t bh_bench_arith(void *ctx, size_t ctx_len);
uint64_t bh_bench_mix(void *ctx, size_t ctx_len);
uint64_t bh_bench_memory(void *ctx, size_t ctx_len);
uint64_t bh_bench_helper(void *ctx, size_t ctx_len);

/* The trivial helper bh_bench_helper calls per iteration (v + 1); in its own
 * translation unit so that gcc cannot inline it, as the VM cannot. */
uint64_t bh_bench_add_one(uint64_t v);

/* The workloads by name ("arith", "memory", "mix", "helper"), each with the least
 * context size its function reads; *n gets the count. */
typedef struct bh_bench_workload {
  const char *name;
  bh_bench_fn fn;
  size_t ctx_size;
} bh_bench_workload;
const bh_bench_workload *bh_bench_workloads(size_t *n);

/* "gcc 12.2.0 -O2": what compiled the functions above. */
const char *bh_bench_compiler(void);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_BENCH_H */
