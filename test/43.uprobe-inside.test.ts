/**
 * Probes that used to be accepted and then crash or corrupt (issue 9): at
 * symbol+offset, inside instructions, on live flags and red-zone locals,
 * with programs that call helpers on functions taking __m256, and programs
 * whose helpers or section do not fit the attach type. What could kill the
 * runner runs in a child process that must exit normally.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Runtime, type BpfMap, type LoadedObject } from "@bpfhook/core";
import { expectError } from "./support/expect-error.js";
import type { TestAddon } from "./support/test-addon.js";
import { useUprobeFixture } from "./support/uprobe-fixture.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const fixture = path.join(repoRoot, "test", "fixtures", "uprobe", "inside.bpf.c");
const TARGETS = "libbpfhook_targets.so";

function hasAvx2(): boolean {
  return /^flags\s*:.*\bavx2\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));
}

/** Runs `body` (JS, with `rt`, `obj`, `t` in scope) in a child node; returns its output. */
function inChild(objectPath: string, body: string, env: NodeJS.ProcessEnv = {}) {
  const script = `
    const { Runtime } = require("@bpfhook/core");
    const t = require(${JSON.stringify(path.join(repoRoot, "test", "native", "build", "Release", "testaddon.node"))});
    (async () => {
      const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-frida-uprobe"], resolveFrom: ${JSON.stringify(repoRoot)} });
      const obj = rt.load(${JSON.stringify(objectPath)});
      ${body}
      rt.close();
    })().catch((e) => { console.error(e); process.exit(3); });`;
  const run = spawnSync(process.execPath, ["-e", script], { cwd: repoRoot, encoding: "utf8", env: { ...process.env, ...env } });
  assert.equal(run.signal, null, `child died with ${run.signal}:\n${run.stdout}\n${run.stderr}`);
  assert.equal(run.status, 0, `child exit ${run.status}:\n${run.stdout}\n${run.stderr}`);
  return run.stdout;
}

describe("43 uprobes inside functions, vector state, attach checks", function () {
  let objectPath: string;
  let rt: Runtime;
  let obj: LoadedObject;
  let t: TestAddon;

  useUprobeFixture(fixture, "bpfhook-inside-", (s) => {
    ({ objectPath, t } = s as { objectPath: string; t: TestAddon });
    if (s.rt) ({ rt, obj } = s as { rt: Runtime; obj: LoadedObject });
  });

  const hits = (k: number) => obj.map<BpfMap<number, bigint>>("hits").get(k) ?? 0n;
  const at = (symbol: string, offset: number) => ({ module: TARGETS, symbol, offset });

  it("refuses uretprobe, uprobe_override and ureplace at symbol+offset, naming the type and the offset", async () => {
    for (const type of ["uretprobe", "uprobe_override", "ureplace"]) {
      await expectError(
        () => obj.program("count_return").attach({ type, data: at("bh_target_je32", 3) }),
        "BAD_ARGUMENT",
        new RegExp(`${type} .*bh_target_je32\\+0x3: a ${type} must be at the function's entry, not at offset 0x3`),
      );
    }
    assert.equal(t.je32(0), -1n);
  });

  it("refuses an offset inside an instruction, naming the nearest boundaries", async () => {
    // bh_target_redzone: 5-byte mov at +0, 4-byte mov at +5, nop at +9, mov at +10
    for (const [off, lo, hi] of [[1, 0, 5], [7, 5, 9], [12, 10, 15]] as const) {
      await expectError(
        () => obj.program("count_entry").attach({ type: "uprobe", data: at("bh_target_redzone", off) }),
        "ATTACH_FAILED",
        new RegExp(`nearest instruction boundaries \\+0x${lo.toString(16)} and \\+0x${hi.toString(16)}`),
      );
    }
    assert.equal(t.redzone(5), 11n);
  });

  it("refuses a function its scan cannot decode to the end (data inside the symbol)", async () => {
    await expectError(
      () => obj.program("count_entry").attach({ type: "uprobe", data: at("bh_target_inline_data", 0) }),
      "ATTACH_FAILED",
      /cannot decode the instruction at \+0x9 of the function's 0xb bytes/,
    );
  });

  it("keeps red-zone locals of a leaf probed in its middle", async () => {
    // count_entry calls helpers (vector state saved), plain calls none.
    for (const prog of ["count_entry", "plain"]) {
      for (const off of [9, 10]) {
        const link = await obj.program(prog).attach({ type: "uprobe", data: at("bh_target_redzone", off) });
        for (const x of [0, 1, 77, -5]) assert.equal(t.redzone(x), BigInt(2 * x + 1), `${prog} at +${off}, x=${x}`);
        link.detach();
      }
    }
    assert.equal(hits(0), 8n);
  });

  it("keeps live flags: a probe on `je rel32` right after `test` (libc free+3's shape)", async () => {
    const link = await obj.program("count_entry").attach({ type: "uprobe", data: at("bh_target_je32", 3) });
    assert.equal(t.je32(0), -1n);
    assert.equal(t.je32(9), 1n);
    assert.equal(hits(0), 2n);
    link.detach();
  });

  it("hooks libc free at every offset of its first 32 bytes: boundaries run right, the rest is refused", function () {
    this.timeout(60_000);
    const out = inChild(
      objectPath,
      `
      let attached = 0, refused = 0;
      for (let off = 0; off < 32; off++) {
        let link;
        try {
          link = await obj.program("count_entry").attach({ type: "uprobe", data: { module: "libc.so.6", symbol: "free", offset: off } });
        } catch (e) {
          if (!/instruction boundaries|patched bytes|too short|cannot relocate|past the function/.test(e.message)) throw e;
          refused++;
          continue;
        }
        attached++;
        t.freeLoop(100, 40);
        global.gc?.();
        const n = obj.map("hits").get(0) ?? 0n;
        // free(NULL) returns before the later offsets: only the 100 free(p) must reach them
        if (n < 100n) throw new Error("free+" + off + ": " + n + " hits");
        obj.map("hits").delete(0);
        link.detach();
      }
      console.log("attached " + attached + " refused " + refused);`,
    );
    const m = /attached (\d+) refused (\d+)/.exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) >= 3, out);
    assert.ok(Number(m[2]) >= 10, out);
  });

  it("keeps __m256 arguments and results whole when the programs call helpers (AVX2 memcpy)", function () {
    if (!hasAvx2()) {
      console.log("      skipped: this CPU has no AVX2");
      this.skip();
    }
    this.timeout(30_000);
    const out = inChild(
      objectPath,
      `
      const a = [1, 2, 3, 4, 5, 6, 7, 8], b = [10, 20, 30, 40, 50, 60, 70, 80];
      const want = JSON.stringify(a.map((x, i) => x + b[i]));
      for (const progs of [["count_entry"], ["count_return"], ["count_entry", "count_return"], ["plain"]]) {
        const links = [];
        for (const p of progs) {
          const type = p === "count_return" ? "uretprobe" : "uprobe";
          links.push(await obj.program(p).attach({ type, data: { module: "${TARGETS}", symbol: "bh_target_m256" } }));
        }
        for (let i = 0; i < 3; i++) {
          const got = JSON.stringify(t.m256Add(a, b));
          if (got !== want) throw new Error(progs.join("+") + ": got " + got + ", want " + want);
        }
        for (const l of links) l.detach();
      }
      console.log("ok " + (obj.map("hits").get(0) ?? 0n) + " " + (obj.map("hits").get(1) ?? 0n));`,
      // glibc's AVX2 string routines even on AVX-512 hosts: their memcpy ends in vzeroupper.
      { GLIBC_TUNABLES: "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-EVEX" },
    );
    assert.match(out, /ok 6 6/);
  });

  it("refuses bpf_override_return in a plain uprobe, pointing to uprobe.override/", async () => {
    await expectError(
      () => obj.program("override_in_uprobe").attach(),
      "BAD_ARGUMENT",
      /prog 'override_in_uprobe' calls bpf_override_return \(helper 58\), which uprobe can't honour: .*'uprobe\.override\/'/,
    );
    assert.equal(rt.attachments.length, 0);
    // As an override it attaches and overrides.
    const link = await obj.program("override_in_uprobe").attach({ type: "uprobe_override", data: { module: TARGETS, symbol: "bh_target_add" } });
    assert.equal(t.add(2, 3), 1n);
    link.detach();
    assert.equal(t.add(2, 3), 5n);
  });

  it("refuses a tracepoint program as a uprobe unless forced", async () => {
    const data = { module: TARGETS, symbol: "bh_target_add" };
    await expectError(
      () => obj.program("tp_prog").attach({ type: "uprobe", data }),
      "BAD_ARGUMENT",
      /section 'tracepoint\/syscalls\/sys_enter_getpid' states a tracepoint record context .*gives it pt_regs; pass \{ force: true \}/,
    );
    const link = await obj.program("tp_prog").attach({ type: "uprobe", data, force: true });
    assert.equal(t.add(2, 3), 5n);
    link.detach();
    // A uprobe-section program as another pt_regs type is fine.
    const ret = await obj.program("count_entry").attach({ type: "uretprobe", data });
    assert.equal(t.add(1, 1), 2n);
    assert.equal(hits(0), 1n);
    ret.detach();
  });
});
