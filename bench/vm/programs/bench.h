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

#endif
