/* The helper of the helper-heavy workload, kept out of workloads.c so that
 * gcc calls it rather than inlining it (no LTO for this library). */
#include "bpfhook/bench.h"

uint64_t bh_bench_add_one(uint64_t v) { return v + 1; }
