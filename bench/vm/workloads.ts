/**
 * The VM benchmark's workloads: which eBPF program (bench/vm/programs) and
 * which gcc baseline (core/native/bench) run each, the context they share,
 * and what one "iteration" is. Context layouts follow programs/bench.h.
 */

/** Helper id the helper workload calls; BENCH_HELPER_ADD_ONE in programs/bench.h. */
export const HELPER_ADD_ONE_ID = 1000;
/** The kernel's bpf_loop: the loop workloads run their iterations in chunks through it (programs/bench.h). */
export const BPF_LOOP_ID = 181;
/** Data bytes in the memory workload's context; BENCH_MEMORY_BYTES in programs/bench.h. */
export const MEMORY_BYTES = 8192;

export interface Workload {
  /** Key in the report and name of the native baseline ("arith", ...). */
  name: string;
  /** bench/vm/programs/<file> and the program (function) in it. */
  file: string;
  program: string;
  /** What is measured, for the table. */
  what: string;
  /** What one iteration is, for the table. */
  unit: string;
  /** Iterations one run of the program does. */
  iterations: number;
  /** Helpers to register: id -> native helper name (vm_binding.cpp). */
  helpers: Record<number, string>;
  /** A fresh context, filled from `seed`. */
  context(seed: bigint): Uint8Array;
}

/** struct loop_ctx { u64 n; u64 seed; } */
function loopContext(n: number, seed: bigint): Uint8Array {
  const ctx = new Uint8Array(16);
  const view = new DataView(ctx.buffer);
  view.setBigUint64(0, BigInt(n), true);
  view.setBigUint64(8, seed, true);
  return ctx;
}

/** struct memory_ctx { u64 len; u64 seed; u32 hist[256]; u8 data[MEMORY_BYTES]; }, data from xorshift64. */
function memoryContext(seed: bigint): Uint8Array {
  const ctx = new Uint8Array(16 + 256 * 4 + MEMORY_BYTES);
  const view = new DataView(ctx.buffer);
  view.setBigUint64(0, BigInt(MEMORY_BYTES), true);
  view.setBigUint64(8, seed, true);
  const mask = (1n << 64n) - 1n;
  let x = seed | 1n;
  const data = 16 + 256 * 4;
  for (let i = 0; i < MEMORY_BYTES; i += 8) {
    x ^= (x << 13n) & mask;
    x ^= x >> 7n;
    x ^= (x << 17n) & mask;
    view.setBigUint64(data + i, x, true);
  }
  return ctx;
}

const ARITH_ITERATIONS = 1_000_000;
const HELPER_ITERATIONS = 200_000;
const MIX_ITERATIONS = 1_000_000;

export const WORKLOADS: readonly Workload[] = [
  {
    name: "arith",
    file: "arith.bpf.c",
    program: "arith",
    what: "LCG + xorshift-rotate + multiply-accumulate, 64-bit ALU",
    unit: "loop iteration",
    iterations: ARITH_ITERATIONS,
    helpers: { [BPF_LOOP_ID]: "bpf_loop" },
    context: (seed) => loopContext(ARITH_ITERATIONS, seed),
  },
  {
    name: "memory",
    file: "memory.bpf.c",
    program: "memory",
    what: `byte histogram of ${MEMORY_BYTES / 1024} KiB in the context + prefix sum of 256 buckets`,
    unit: "input byte",
    iterations: MEMORY_BYTES,
    helpers: {},
    context: memoryContext,
  },
  {
    name: "mix",
    file: "mix.bpf.c",
    program: "mix",
    what: "fmix64 hash of each index into two accumulators: independent iterations, throughput-bound",
    unit: "loop iteration",
    iterations: MIX_ITERATIONS,
    helpers: { [BPF_LOOP_ID]: "bpf_loop" },
    context: (seed) => loopContext(MIX_ITERATIONS, seed),
  },
  {
    name: "helper",
    file: "helper.bpf.c",
    program: "helper",
    what: "one call of a native helper (add_one: r1 + 1) per iteration",
    unit: "helper call",
    iterations: HELPER_ITERATIONS,
    helpers: { [HELPER_ADD_ONE_ID]: "add_one", [BPF_LOOP_ID]: "bpf_loop" },
    context: (seed) => loopContext(HELPER_ITERATIONS, seed),
  },
];
