/**
 * The addon's benchmark entry points (core/native/addon/bench_binding.cpp)
 * and the raw VM binding they time. Timing happens natively: one call runs a
 * program `runs` times and returns the elapsed nanoseconds.
 */
import type { NativeAddon, NativeVm } from "@bpfhook/core/dist/native/addon-types.js";
import { native } from "@bpfhook/core/dist/native/binding.js";

export type { NativeVm };

export type Backend = "jit" | "interpreter";

export interface TimedRuns {
  /** Wall time of all runs, measured around the native loop. */
  ns: number;
  /** r0 of the last run. */
  r0: bigint;
}

export interface BenchInfo {
  /** What compiled the native baselines, e.g. "gcc 12.2.0 -O2". */
  compiler: string;
  workloads: { name: string; ctxSize: number }[];
}

interface BenchAddon {
  /** Runs a loaded Vm's program `runs` times in the JIT or the interpreter. */
  vmBenchRun(vm: NativeVm, backend: Backend, ctx: Uint8Array, runs: number): TimedRuns;
  /** Runs the gcc baseline of `workload` `runs` times. */
  vmBenchNative(workload: string, ctx: Uint8Array, runs: number): TimedRuns;
  vmBenchInfo(): BenchInfo;
}

export type Addon = NativeAddon & BenchAddon;

/** The addon, with the benchmark entry points typed; throws NATIVE_NOT_BUILT when absent. */
export function addon(): Addon {
  const a = native() as Addon;
  if (typeof a.vmBenchRun !== "function") {
    throw new Error("the native addon has no benchmark entry points: rebuild it (npm run build:native)");
  }
  return a;
}
