/**
 * The plugin contract (@bpfhook/testkit's runContractTests) over every plugin
 * in the repository: simple (by directory), frida-uprobe and syscall-trace
 * (by package name), nv-cuda (what runs without a GPU and a CUDA program).
 * The agent-mode case runs fixtures/contract/target.c under the agent; the
 * threads case fires from the test addon's native threads.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { strict as assert } from "node:assert";
import { BPF_MAP_TYPE } from "@bpfhook/core";
import { compileC, counterProgram, createTestRuntime, loadProgram, readMap, requireClang, runContractTests, withRuntime } from "@bpfhook/testkit";
import { trigger as fireSimple } from "@bpfhook/plugin-simple";
import { dispatch } from "@bpfhook/plugin-syscall-trace";
import { testAddon } from "./support/test-addon.js";
import { removeTempDir } from "./support/tmp.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const fixtures = path.join(repoRoot, "test", "fixtures");
const GETPPID = 110;

// The agent's target, built once with gcc (the case skips without it); -O0
// so that contract_work is long enough to patch.
// The folder is made when the file loads (the contract's cases name the
// target then) and goes after the suite.
const buildDir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-contract-"));
const target = path.join(buildDir, "contract_target");
let targetMissing: string | undefined;
function buildTarget(): void {
  const cc = spawnSync("gcc", ["-O0", "-g", "-o", target, path.join(fixtures, "contract", "target.c"), "-ldl"], { encoding: "utf8" });
  if (cc.error || cc.status !== 0) targetMissing = `gcc could not build the agent's target program: ${cc.error?.message ?? cc.stderr}`;
}
buildTarget();
const agentTarget = (mode: string, program: ReturnType<typeof counterProgram>, n: number) =>
  targetMissing !== undefined ? { skip: targetMissing } : { command: target, args: [mode, String(n)], program, expectHits: n };

describe("58 plugin contract", () => {
  after(() => removeTempDir(buildDir));
  describe("the test kit's own pieces", () => {
    const simpleDir = path.join(repoRoot, "plugins", "simple");

    it("loads assembly with a map (lddw map:NAME) as a raw object, attaches it by its section, and reads the map", () =>
      withRuntime({ plugins: [simpleDir] }, async (rt) => {
        // hits[0] += 1, through bpf_map_lookup_elem
        const asm = [
          "mov %r1, 0",
          "stxw [%r10-4], %r1",
          "lddw %r1, map:hits",
          "mov %r2, %r10",
          "add %r2, -4",
          "call 1",
          "jeq %r0, 0, out",
          "ldxdw %r1, [%r0]",
          "add %r1, 1",
          "stxdw [%r0], %r1",
          "out:",
          "mov %r0, 0",
          "exit",
        ].join("\n");
        const { object, program } = loadProgram(rt, {
          asm,
          name: "asm_count",
          section: "simple/asm",
          maps: [{ name: "hits", type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 8, maxEntries: 1 }],
        });
        await program.attach();
        for (let i = 0; i < 3; i++) fireSimple(rt, "asm");
        assert.equal(readMap(object, "hits"), 3n);
      }));

    it("loads an object file and C source; a closed runtime from withRuntime refuses further use", async function () {
      requireClang(this);
      const rt = await createTestRuntime({ plugins: [simpleDir] });
      try {
        const c = loadProgram(rt, counterProgram("simple/kit"));
        await c.program.attach();
        const again = loadProgram(rt, { object: compileC(counterProgram("simple/kit")), name: "count_hits" });
        await again.program.attach();
        fireSimple(rt, "kit");
        assert.equal(readMap(c.object, "hits"), 1n);
        assert.equal(readMap(again.object, "hits"), 1n, "the object file's own maps");
      } finally {
        rt.close();
      }
      let kept: import("@bpfhook/core").Runtime | undefined;
      await withRuntime({}, (r) => {
        kept = r;
      });
      assert.throws(() => kept!.load({ programs: [] }), /runtime is closed/);
    });
  });

  runContractTests(describe, {
    plugin: path.join(repoRoot, "plugins", "simple"),
    attachType: "simple",
    validData: { source: "contract" },
    invalidData: [
      { data: { source: "" }, field: "source" },
      { data: { source: 42 }, field: "source" },
    ],
    trigger: (rt, n) => {
      for (let i = 0; i < n; i++) fireSimple(rt, "contract");
    },
    threads: {
      start: () => testAddon().startSimpleThreads("contract", 3),
      stop: () => testAddon().stopSimpleThreads().fires,
    },
    agent: agentTarget("simple", counterProgram("simple/contract"), 25),
  });

  runContractTests(describe, {
    plugin: "@bpfhook/plugin-frida-uprobe",
    resolveFrom: repoRoot,
    attachType: "uprobe",
    validData: { module: "libbpfhook_targets.so", symbol: "bh_target_add" },
    invalidData: [
      { data: { module: 5, symbol: "bh_target_add" }, field: "module" },
      { data: { module: "libbpfhook_targets.so", symbol: "" }, field: "symbol" },
    ],
    setupModule: path.join(__dirname, "support", "contract-setup-uprobe.js"),
    // The harness process does not map libbpfhook_targets.so: hook libc there.
    nativeData: { module: "libc.so.6", symbol: "getppid" },
    trigger: (_rt, n) => {
      const t = testAddon();
      for (let i = 0; i < n; i++) t.add(i, 1);
    },
    threads: {
      start: () => testAddon().startAddThreads(3),
      stop: () => testAddon().stopAddThreads().calls,
    },
    agent: agentTarget("work", counterProgram(`uprobe/${target}:contract_work`), 30),
  });

  runContractTests(describe, {
    plugin: "@bpfhook/plugin-syscall-trace",
    resolveFrom: repoRoot,
    attachType: "syscall_trace",
    validData: { syscall: "getppid", direction: "enter" },
    invalidData: [
      { data: { syscall: "getppid", direction: "sideways" }, field: "direction" },
      { data: { nr: 100000, direction: "enter" }, field: "nr" },
      { data: { syscall: "getppid", direction: "enter", override: "maybe" }, field: "override" },
    ],
    // Dispatch only: the dispatcher is driven as the transformer's hooks
    // drive it, never rewriting this process's system calls.
    setupModule: path.join(__dirname, "support", "contract-setup-syscall.js"),
    trigger: (rt, n) => {
      for (let i = 0; i < n; i++) dispatch(rt, GETPPID, [], 1);
    },
    threads: {
      skip:
        "syscall-trace runs dispatch-only in this process (its transformer would rewrite the test process's system " +
        "calls); test 47 fires getppid from 8 native threads under the transformer, in a child process",
    },
    agent: agentTarget("getppid", counterProgram("tracepoint/syscalls/sys_enter_getppid"), 40),
  });

  runContractTests(describe, {
    plugin: "@bpfhook/plugin-nv-cuda",
    resolveFrom: repoRoot,
    attachType: "cuda_probe",
    validData: { kernel: "vec_add", match: "pattern", at: "entry" },
    invalidData: [
      { data: { kernel: "", match: "pattern", at: "entry" }, field: "kernel" },
      { data: { kernel: 5 }, field: "kernel" },
    ],
    noAttach:
      "nv-cuda attaches in a CUDA program's process (prepare reads the target executable's fat binary, the native piece " +
      "hooks the CUDA runtime): test 72 covers it with nvcc and the stand-in driver, npm run test:gpu on a GPU",
  });
});
