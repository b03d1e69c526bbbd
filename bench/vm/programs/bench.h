/* Shared by the VM benchmark's eBPF programs (compiled with clang -O2 -target
 * bpf by bench/vm/bench-vm.ts). No system headers, so building them needs
 * clang alone. The contexts' layouts are the ones bench/vm/workloads.ts
 * writes and core/native/bench/src/workloads.c reads: keep the three in step. */
#ifndef BPFHOOK_BENCH_PROGRAMS_H
#define BPFHOOK_BENCH_PROGRAMS_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#define SEC(name) __attribute__((section(name), used))

/* arith and helper: r1 points at this. */
struct loop_ctx {
  u64 n;    /* iterations */
  u64 seed;
};

/* memory: a 256-bucket histogram of `len` bytes, all inside the context. */
#define BENCH_MEMORY_BYTES 8192
struct memory_ctx {
  u64 len;
  u64 seed;
  u32 hist[256];
  u8 data[BENCH_MEMORY_BYTES];
};

/* The helper id bench-vm.ts registers the addon's native "add_one" under. */
#define BENCH_HELPER_ADD_ONE 1000

/* Loops over ctx->n run as the kernel's verifier (and ours, in strict mode)
 * accepts them: bpf_loop calls a callback n / BENCH_CHUNK times, and the
 * callback runs a loop with the constant bound BENCH_CHUNK; the n % BENCH_CHUNK
 * iterations left run in a loop bounded by BENCH_CHUNK too. One helper call
 * per 1024 iterations costs well under 0.1 ns an iteration, so the loop body
 * is still what is measured. */
#define BENCH_CHUNK 1024
static long (*bpf_loop)(u32 nr_loops, void *callback_fn, void *callback_ctx, u64 flags) = (void *)181;

#endif
