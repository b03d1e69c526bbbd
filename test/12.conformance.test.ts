import { strict as assert } from "node:assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { conformanceFiles, runConformance } from "@bpfhook/core";
import { conformanceDir } from "./helpers/conformance-dir.js";

describe("12 conformance", () => {
  describe("runner", () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), "bpfhook-conf-"));
      const files: Record<string, string> = {
        "pass.data": "# ok\n-- asm\nmov %r0, %r2\nexit\n-- mem\n00 01 02\n-- result\n0x3\n",
        "wrong.data": "-- asm\nmov %r0, 1\nexit\n-- result\n0x2\n",
        "rejected.data": "-- asm\nmov %r0, 1\ndiv %r0, 0\nexit\n-- error\ndivision by zero\n",
        "not-rejected.data": "-- asm\nmov %r0, 1\nexit\n-- error\nanything\n",
        "syntax.data": "-- asm\nmov %r0, 1\nfrob %r1\nexit\n-- result\n0x1\n",
        "raw.data": "-- asm\nmov %r0, 7\nexit\n-- raw\n0x00000007000000b7\n0x0000000000000095\n-- result\n0x7\n",
        "writes-mem.data": "-- asm\nstb [%r1+0], 9\nldxb %r0, [%r1+0]\nexit\n-- mem\n01\n-- result\n0x9\n",
      };
      for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
      writeFileSync(path.join(dir, "README"), "not a test");
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it("counts each .data file once per backend and says why each failure failed", () => {
      const report = runConformance(dir);
      const failed = report.outcomes.filter((o) => !o.passed).map((o) => `${o.file} [${o.backend}]: ${o.detail}`);
      assert.equal(report.outcomes.length, 14);
      assert.equal(report.passed, 8);
      assert.equal(report.failed, 6);
      assert.match(failed.join("\n"), /^wrong\.data \[interpreter\]: expected 0x2, got 0x1$/m);
      assert.match(failed.join("\n"), /^wrong\.data \[jit\]: expected 0x2, got 0x1$/m);
      assert.match(failed.join("\n"), /^not-rejected\.data \[jit\]: expected error 'anything', got 0x1$/m);
      assert.match(failed.join("\n"), /^syntax\.data \[interpreter\]: cannot read test: syntax\.data:3: unknown mnemonic 'frob'/m);
    });

    it("runs one backend when asked", () => {
      const report = runConformance([path.join(dir, "pass.data")], { backends: ["jit"] });
      assert.deepEqual(
        report.outcomes.map((o) => [o.backend, o.passed]),
        [["jit", true]],
      );
    });
  });

  // The bpf_conformance suite through the runner's core, in both backends.
  const suite = conformanceDir();
  for (const checked of [false, true]) {
    it(`passes every bpf_conformance file in the interpreter and the JIT${checked ? " (checked mode)" : ""}`, function () {
      if (!suite) {
        console.log("    skipped: bpf_conformance not found (set BPFHOOK_CONFORMANCE_DIR or add shared/conformance)");
        this.skip();
      }
      const report = runConformance(suite, { checked });
      const failures = report.outcomes.filter((o) => !o.passed).map((o) => `${o.file} [${o.backend}]: ${o.detail}`);
      assert.deepEqual(failures, []);
      assert.equal(report.failed, 0);
      assert.equal(report.passed, 2 * conformanceFiles(suite).length);
    });
  }
});
