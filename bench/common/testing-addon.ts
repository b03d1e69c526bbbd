/**
 * The testing addon (bpfhook_testing.node: VM timing loops, map stress and
 * helper timing) for the benchmarks. Found and typed in one place,
 * test/support/testing-addon.ts, which benchmarks load from its compiled
 * form in test/dist (tsc -b builds test before bench: bench/tsconfig.json
 * references it).
 */
import path from "node:path";
import { repoRoot } from "./targets.js";

type TestingAddonModule = typeof import("../../test/support/testing-addon.js");
export type { Backend, BenchInfo, TestingAddon, TimedRuns } from "../../test/support/testing-addon.js";

const modulePath = path.join(repoRoot, "test", "dist", "support", "testing-addon.js");

/** The testing addon; throws when it (or test/dist) is not built: run 'npm run build'. */
export function testingAddon(): import("../../test/support/testing-addon.js").TestingAddon {
  return (require(modulePath) as TestingAddonModule).testingAddon();
}
