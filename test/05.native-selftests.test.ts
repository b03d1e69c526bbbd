/**
 * The data plane's own C++ test drivers (built by `npm run build:selftests`):
 * byte-exact and edge-case tables that are easiest to state natively. Each
 * prints its checks and exits non-zero on any failure.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const repoRoot = path.resolve(__dirname, "..", "..");
const core = path.join(repoRoot, "core", "build-selftests");
const hook = path.join(repoRoot, "sdk", "native", "hook", "build-selftests");

const selftests: [name: string, binary: string, timeoutMs: number][] = [
  ["VM: validator and interpreter", path.join(core, "vm", "bpfvm_selftest"), 60_000],
  ["VM: JIT against the interpreter", path.join(core, "vm", "bpfvm_jit_selftest"), 120_000],
  ["helpers", path.join(core, "helpers", "helpers_selftest"), 60_000],
  ["maps", path.join(core, "maps", "maps_native_test"), 120_000],
  ["maps through the VM", path.join(core, "maps", "maps_vm_test"), 60_000],
  ["helpers that leave vector state alone", path.join(core, "helpers", "vector_clean_test"), 60_000],
  ["agent area bounds", path.join(core, "agent", "agent_area_selftest"), 60_000],
  ["hook engine", path.join(hook, "hook_selftest"), 300_000],
  ["hook engine: two copies in one process (as two plugins link it)", path.join(hook, "hook_two_copies"), 60_000],
  ["syscall dispatcher", path.join(repoRoot, "plugins", "syscall-trace", "build-selftests", "sc_dispatch_selftest"), 120_000],
];

describe("05 native selftests", () => {
  for (const [name, binary, timeoutMs] of selftests) {
    it(name, function () {
      if (!existsSync(binary)) {
        console.log(`      skipped: ${binary} not built (run 'npm run build:selftests')`);
        this.skip();
      }
      this.timeout(timeoutMs + 5_000);
      const run = spawnSync(binary, [], { encoding: "utf8", timeout: timeoutMs });
      const tail = `${run.stdout}\n${run.stderr}`.trim().split("\n").slice(-15).join("\n");
      assert.equal(run.signal, null, `${name} died with ${run.signal}:\n${tail}`);
      assert.equal(run.status, 0, `${name} failed:\n${tail}`);
    });
  }
});
