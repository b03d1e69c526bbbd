/**
 * The root hooks (support/root-hooks.ts) fail a run that leaves a file in the
 * temporary directory or a name in /dev/shm, naming it and the test after
 * which it appeared. Proven on a child mocha run of a spec that leaks both,
 * and one that cleans up.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { testTempDir } from "./support/tmp.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const mocha = path.join(repoRoot, "node_modules", "mocha", "bin", "mocha.js");
const rootHooks = path.join(__dirname, "support", "root-hooks.js");

function runSpec(dir: string, body: string): { status: number | null; out: string } {
  const spec = path.join(dir, "spec.test.js");
  writeFileSync(spec, `const fs = require("node:fs");\nconst os = require("node:os");\nconst path = require("node:path");\n${body}\n`);
  const r = spawnSync(process.execPath, [mocha, "--no-config", "--require", rootHooks, "--reporter", "spec", spec], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("02 the leak guard (root hooks)", function () {
  this.timeout(60_000);

  it("fails the run, naming a temporary folder and a /dev/shm name left behind and the test that left them", () => {
    const dir = testTempDir("bpfhook-guard-");
    const r = runSpec(
      dir,
      `it("cleans up", () => { fs.rmSync(fs.mkdtempSync(path.join(os.tmpdir(), "bpfhook-clean-")), { recursive: true }); });
       it("leaks", () => {
         fs.mkdtempSync(path.join(os.tmpdir(), "bpfhook-leaked-"));
         // A region of a process of the run that is gone (a killed child).
         require("node:child_process").spawnSync(process.execPath, ["-e", "require('fs').writeFileSync('/dev/shm/bpfhook-' + process.pid + '-guardtest', 'x')"]);
       });`,
    );
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /the test run left 2 file\(s\) behind/, r.out);
    assert.match(r.out, /bpfhook-leaked-\w+ {2}\(first seen after: leaks\)/, r.out);
    assert.match(r.out, /\/dev\/shm\/bpfhook-\d+-guardtest {2}\(first seen after: leaks\)/, r.out);
    assert.doesNotMatch(r.out, /bpfhook-clean-/);
    // The guard removed what it reported: nothing of the child's is left.
    assert.deepEqual(readdirSync("/dev/shm").filter((n) => n.endsWith("-guardtest")), []);
  });

  it("a region of the test process itself still there at exit fails the exit status, naming it", () => {
    const dir = testTempDir("bpfhook-guard-");
    const r = runSpec(dir, `it("keeps one", () => { fs.writeFileSync("/dev/shm/bpfhook-" + process.pid + "-guardown", "x"); });`);
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /LEAK: this test process's regions were not removed at exit:\n {2}\/dev\/shm\/bpfhook-\d+-guardown/, r.out);
    assert.deepEqual(readdirSync("/dev/shm").filter((n) => n.endsWith("-guardown")), []);
  });

  it("passes a run that cleans up, and removes its own temporary directory", () => {
    const dir = testTempDir("bpfhook-guard-");
    const r = runSpec(
      dir,
      `let seen;
       it("cleans up", () => {
         seen = os.tmpdir();
         fs.writeFileSync(path.join(os.tmpdir(), "bpfhook-x"), "x");
         fs.rmSync(path.join(os.tmpdir(), "bpfhook-x"));
         console.log("run tmpdir " + seen);
       });`,
    );
    assert.equal(r.status, 0, r.out);
    const m = /run tmpdir (\S+)/.exec(r.out);
    assert.ok(m, r.out);
    assert.match(path.basename(m[1]!), /^bpfhook-testrun-/, "the run's own TMPDIR");
    assert.equal(existsSync(m[1]!), false, "removed at the end of the run");
  });
});
