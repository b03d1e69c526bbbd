/**
 * The benchmark's entry points (the testing addon's timing loops,
 * core/native/testing/bench_binding.cpp) and the raw VM binding they time.
 * Timing happens natively: one call runs a program `runs` times and returns
 * the elapsed nanoseconds.
 */
import type { NativeAddon, NativeVm } from "@bpfhook/core/dist/native/addon-types.js";
import { native } from "@bpfhook/core/dist/native/binding.js";
import { testingAddon, type TestingAddon } from "../common/testing-addon.js";

export type { NativeVm };
export type { Backend, BenchInfo, TimedRuns } from "../common/testing-addon.js";

/** The core addon's Vm and the testing addon's timing loops. */
export type Addon = Pick<NativeAddon, "Vm"> & Pick<TestingAddon, "vmBenchRun" | "vmBenchNative" | "vmBenchInfo">;

/** Both addons; throws NATIVE_NOT_BUILT (or a testing-addon error) when one is absent. */
export function addon(): Addon {
  const core = native();
  const testing = testingAddon();
  return {
    Vm: core.Vm,
    vmBenchRun: testing.vmBenchRun,
    vmBenchNative: testing.vmBenchNative,
    vmBenchInfo: testing.vmBenchInfo,
  };
}
