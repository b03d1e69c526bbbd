/**
 * Programs the verifier accepts keep its promise when they run: random
 * programs (test/support/verifier-smoke-child.ts) that pass verification
 * must not fault in checked mode, and the interpreter and the JIT in fast
 * mode must agree on r0 and on the context's bytes. Runs in a child process:
 * an unsound acceptance may crash it, and the test then fails instead of the
 * suite.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import path from "node:path";

const child = path.join(__dirname, "support", "verifier-smoke-child.js");

describe("37 verifier smoke: accepted programs run safely and the backends agree", function () {
  this.timeout(120_000);
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 3000 random programs`, () => {
      const run = spawnSync(process.execPath, [child, String(seed), "3000"], { encoding: "utf8" });
      assert.equal(run.signal, null, `child killed by ${run.signal}: ${run.stderr}`);
      assert.equal(run.status, 0, run.stderr);
      const out = JSON.parse(run.stdout.trim()) as { generated: number; accepted: number };
      console.log(`      ${out.accepted} of ${out.generated} accepted and run in three modes`);
      assert.ok(out.accepted > 100, "the generator should produce acceptable programs");
    });
  }
});
