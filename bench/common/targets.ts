/**
 * The probe targets and timing loops of the test addon (test/native), which
 * the benchmarks share with the tests: `npm run build:test-native` builds it.
 */
import { existsSync } from "node:fs";
import path from "node:path";

export interface Targets {
  /** ns per call of a target in a tight native loop. */
  timeCalls(which: "empty" | "double" | "usdt", iterations: number): number;
  addressOf(symbol: string): bigint;
}

export const repoRoot = path.resolve(__dirname, "..", "..", "..");
export const targetsLibrary = path.join(repoRoot, "test", "native", "build", "Release", "libbpfhook_targets.so");
const addonPath = path.join(repoRoot, "test", "native", "build", "Release", "testaddon.node");

export function loadTargets(): Targets {
  if (!existsSync(addonPath)) {
    throw new Error(`test addon not built at ${addonPath}: run 'npm run build:test-native'`);
  }
  return require(addonPath) as Targets;
}
