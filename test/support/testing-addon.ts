/**
 * The testing addon (core/native/testing, bpfhook_testing.node): map stress
 * runs and the VM benchmark's timing loops, which the production addon
 * (bpfhook_core.node) does not carry. The one module that finds and types it;
 * tests use it from here, benchmarks from test/dist (bench/vm/native.ts).
 *
 * Test-only plumbing: both addons come from the same cmake-js build
 * (`npm run build:native`) and lie side by side, so the testing addon takes
 * the core addon's maps and VMs as raw addresses (a map's `address`, a Vm's
 * nativeAddresses()) and trusts them. This module reads those from the
 * handles, so callers pass handles as they did to the core addon.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { BpfhookError } from "@bpfhook/core";
import type { NativeMapHandle, NativeVm, NativeVmAddresses } from "@bpfhook/core/dist/native/addon-types.js";
import { native } from "@bpfhook/core/dist/native/binding.js";

// ---- stress_binding.cpp ----

export interface NativeStressOptions {
  op: "add" | "churn" | "ringbuf" | "perf" | "queue" | "insert" | "produce";
  threads: number;
  iterations: number;
  keys?: number;
  paceNs?: number;
}

export interface NativeStressResult {
  ok: number;
  failed: number;
  misses: number;
  consumed: number;
  drops: number;
  discarded: number;
  orderErrors: number;
  sum: bigint;
  elapsedNs: number;
}

export type NativeBenchOp = "lookup" | "update" | "add" | "lookup_miss" | "ringbuf" | "perf";

// ---- bench_binding.cpp ----

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

/** What bpfhook_testing.node exports, taking addresses. */
export interface RawTestingAddon {
  setErrorClass(cls: Function): void;
  mapStress(address: bigint, opts: NativeStressOptions): Promise<NativeStressResult>;
  /** ns per helper call in a tight native loop, or -errno. */
  mapBench(address: bigint, op: NativeBenchOp, iterations: number, keys: number): number;
  vmBenchRun(addrs: NativeVmAddresses, backend: Backend, ctx: Uint8Array | null, runs: number): TimedRuns;
  vmBenchNative(workload: string, ctx: Uint8Array | null, runs: number): TimedRuns;
  vmBenchInfo(): BenchInfo;
}

/** The same entry points taking the core addon's handles. */
export interface TestingAddon {
  /** Native threads calling the map helpers at once (bh_maps_stress); resolves when all are done. */
  mapStress(map: NativeMapHandle, opts: NativeStressOptions): Promise<NativeStressResult>;
  /** ns per helper call in a tight native loop (bh_maps_bench), or -errno. */
  mapBench(map: NativeMapHandle, op: NativeBenchOp, iterations: number, keys: number): number;
  /** Runs a loaded Vm's program `runs` times in the JIT (compiling it first) or the interpreter. */
  vmBenchRun(vm: NativeVm, backend: Backend, ctx: Uint8Array | null, runs: number): TimedRuns;
  /** Runs the gcc baseline of `workload` `runs` times. */
  vmBenchNative(workload: string, ctx: Uint8Array | null, runs: number): TimedRuns;
  vmBenchInfo(): BenchInfo;
}

/** Beside the core addon: core/build/Release (cmake-js), or $BPFHOOK_TESTING_ADDON. */
function candidates(): string[] {
  const coreRoot = path.dirname(require.resolve("@bpfhook/core/package.json"));
  const list = [
    path.join(coreRoot, "build", "Release", "bpfhook_testing.node"),
    path.join(coreRoot, "build", "bpfhook_testing.node"),
    path.join(coreRoot, "build", "testing", "bpfhook_testing.node"),
  ];
  const fromEnv = process.env.BPFHOOK_TESTING_ADDON;
  return fromEnv ? [fromEnv, ...list] : list;
}

let loaded: TestingAddon | undefined;

/** The testing addon; throws when it is not built (npm run build:native builds it). */
export function testingAddon(): TestingAddon {
  if (loaded) return loaded;
  const tried = candidates();
  const found = tried.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`testing addon not built: looked in ${tried.join(", ")}; run 'npm run build:native'`);
  }
  const raw = require(found) as RawTestingAddon;
  raw.setErrorClass(BpfhookError);
  loaded = {
    mapStress: (map, opts) => raw.mapStress(native().mapInfo(map).address, opts),
    mapBench: (map, op, iterations, keys) => raw.mapBench(native().mapInfo(map).address, op, iterations, keys),
    vmBenchRun: (vm, backend, ctx, runs) => raw.vmBenchRun(vmAddresses(vm, backend), backend, ctx, runs),
    vmBenchNative: (workload, ctx, runs) => raw.vmBenchNative(workload, ctx, runs),
    vmBenchInfo: () => raw.vmBenchInfo(),
  };
  return loaded;
}

/**
 * A Vm's addresses, compiled first for the JIT so the testing addon runs the
 * core addon's code. Not a Vm: BAD_ARGUMENT, as the native check says for
 * one without a loaded program (addresses 0n).
 */
function vmAddresses(vm: NativeVm, backend: Backend): NativeVmAddresses {
  if (typeof (vm as Partial<NativeVm> | null)?.nativeAddresses !== "function") {
    throw new BpfhookError("BAD_ARGUMENT", "vmBenchRun: expected a Vm with a loaded program");
  }
  const addrs = vm.nativeAddresses();
  if (backend !== "jit" || addrs.vm === 0n || addrs.jit !== 0n) return addrs;
  vm.compile();
  return vm.nativeAddresses();
}
