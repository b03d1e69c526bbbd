/**
 * uprobes on real code in this Node process: the test targets library
 * (test/native/targets), libc and node itself, through the frida-uprobe
 * plugin's inline-hook engine.
 */
import { strict as assert } from "node:assert";
import path from "node:path";
import { assembleBytes, Runtime, type BpfMap, type LoadedObject } from "@bpfhook/core";
import { symbolResolver } from "@bpfhook/sdk";
import { expectError } from "./support/expect-error.js";
import { testAddon, type TestAddon } from "./support/test-addon.js";
import { useUprobeFixture } from "./support/uprobe-fixture.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const fixture = path.join(repoRoot, "test", "fixtures", "uprobe", "probes.bpf.c");

describe("42 uprobes on real functions", function () {
  let rt: Runtime;
  let obj: LoadedObject;
  let t: TestAddon;

  useUprobeFixture(fixture, "bpfhook-uprobe-", (s) => {
    t = s.t!;
    if (s.rt) ({ rt, obj } = s as { rt: Runtime; obj: LoadedObject });
  });

  const slots = () => obj.map<BpfMap<number, bigint>>("slots");
  const counts = () => obj.map<BpfMap<number, bigint>>("counts");
  const slot = (i: number) => slots().get(i) ?? 0n;
  const count = (k: number) => counts().get(k) ?? 0n;

  it("an entry probe sees the arguments, the function's address and the cookie", async () => {
    const link = await obj.program("on_add").attach({ cookie: 77n });
    assert.match(link.description, /libbpfhook_targets\.so:bh_target_add/);
    assert.equal(t.add(3, 4), 7n);
    assert.deepEqual([slot(0), slot(1)], [3n, 4n]);
    assert.equal(slot(2), t.addressOf("bh_target_add"), "bpf_get_func_ip");
    assert.equal(slot(3), 77n, "bpf_get_attach_cookie");
    assert.equal(count(0), 1n);
    link.detach();
    t.add(1, 1);
    assert.equal(count(0), 1n, "no run after detach");
  });

  it("a return probe sees the return value and the entry arguments", async () => {
    await obj.program("on_add_ret").attach();
    assert.equal(t.add(20, 22), 42n);
    assert.equal(slot(4), 42n, "PT_REGS_RC");
    assert.equal(slot(5), 20n, "bpf_get_func_arg in a return probe");
  });

  it("reads all six register arguments and the stack arguments", async () => {
    await obj.program("on_args8").attach();
    assert.equal(t.args8(1, 2, 3, 4, 5, 6, 7, 8), 204n, "the function still computes with every argument");
    assert.deepEqual([slot(0), slot(1), slot(2), slot(3)], [15n, 6n, 7n, 8n]);
  });

  it("override as a filter: only some calls are overridden, the others run intact", async () => {
    await obj.program("filter_double").attach();
    const before = t.doubleBodyCalls();
    assert.equal(t.double(21), 42n);
    assert.equal(t.double(-5), -1n, "overridden");
    assert.equal(t.double(-6), -1n);
    assert.equal(t.double(100), 200n);
    assert.equal(t.doubleBodyCalls() - before, 2n, "the body ran only for the calls not overridden");
  });

  it("an override that does not override passes every argument, vector registers too", async () => {
    await obj.program("pass_mix").attach();
    assert.equal(t.mix(3, 1.5, 4, 0.25), 3 * 1.5 + 4 * 0.25);
    assert.equal(count(3), 1n);
  });

  it("replace: the program's r0 is the return value and the original never runs", async () => {
    const link = await obj.program("replace_add").attach();
    assert.equal(t.add(6, 7), 42n);
    link.detach();
    assert.equal(t.add(6, 7), 13n, "the original is back");
  });

  it("refuses a second override or replace on one function with EEXIST, whatever came first", async () => {
    await obj.program("replace_add").attach();
    const err = await expectError(
      () => obj.program("replace_add").attach(),
      "ATTACH_FAILED",
      /ureplace .*bh_target_add.*already has ureplace/,
    );
    assert.equal(err.errno, -17);
    await obj.program("filter_double").attach();
    await expectError(
      () => obj.program("replace_add").attach({ type: "ureplace", data: { module: "libbpfhook_targets.so", symbol: "bh_target_double" } }),
      "ATTACH_FAILED",
      /already has uprobe_override/,
    );
    assert.equal(rt.attachments.length, 2, "the refused attachments left nothing behind");
  });

  it("runs several programs on one function in attach order, entry before return", async () => {
    await obj.program("on_add").attach();
    await obj.program("on_add_second").attach();
    await obj.program("on_add_ret").attach();
    t.add(1, 2);
    assert.deepEqual([slot(8), slot(9), slot(10)], [1n, 2n, 3n]);
  });

  it("return probes are right under recursion", async () => {
    await obj.program("fib_in").attach();
    await obj.program("fib_out").attach();
    assert.equal(t.fib(15), 610n);
    assert.equal(count(4), 1973n, "fib(15) makes 1973 calls");
    assert.equal(count(5), 1973n, "and as many returns");
  });

  it("survives longjmp out of probed frames", async () => {
    await obj.program("escape_out").attach();
    await obj.program("fib_out").attach();
    for (let i = 0; i < 50; i++) assert.equal(t.escape(5), -1n);
    assert.equal(count(6), 50n, "only the outermost call returns: the 5 frames longjmp unwound never do");
    assert.equal(t.fib(10), 55n, "later return probes still land correctly");
    assert.equal(count(5), 177n);
  });

  it("counts libc malloc calls", async () => {
    await obj.program("on_malloc").attach();
    t.mallocLoop(1000, 12345);
    assert.equal(count(7), 1000n);
  });

  it("probes libc strlen (an IFUNC) and reads its string argument", async () => {
    await obj.program("on_strlen").attach();
    for (let i = 0; i < 25; i++) assert.equal(t.strlen("bpfhook-marker!"), 15);
    assert.equal(count(8), 25n);
  });

  it("probes a function of the node executable itself", async () => {
    await obj.program("on_hrtime").attach();
    for (let i = 0; i < 100; i++) process.hrtime.bigint();
    assert.ok(count(9) >= 100n, `uv_hrtime hits: ${count(9)}`);
  });

  it("attaches from config entries: module and file offset, or an absolute address", async () => {
    const resolved = symbolResolver.resolveSymbol({ module: "libbpfhook_targets.so", symbol: "bh_target_add" });
    await obj.program("on_add").attach({
      type: "uprobe",
      data: { module: "libbpfhook_targets.so", offset: `0x${resolved.fileOffset!.toString(16)}` },
    });
    await obj.program("on_add_second").attach({ type: "uprobe", data: { address: t.addressOf("bh_target_add") } });
    t.add(1, 2);
    assert.deepEqual([count(0), count(1)], [1n, 1n]);
  });

  it("names what was not found", async () => {
    await expectError(
      () => obj.program("on_add").attach({ type: "uprobe", data: { module: "libbpfhook_targets.so", symbol: "nope" } }),
      "NOT_FOUND",
      /symbol 'nope' not found in .*libbpfhook_targets\.so/,
    );
    await expectError(
      () => obj.program("on_add").attach({ type: "uprobe", data: { module: "libnothere", symbol: "x" } }),
      "NOT_FOUND",
      /module 'libnothere' is not mapped/,
    );
    await expectError(() => obj.program("on_add").attach({ type: "uprobe", data: { module: 5 } }), "SCHEMA_INVALID");
    assert.equal(rt.attachments.length, 0);
  });

  it("attach and detach in a loop while four threads call the function hard", async function () {
    this.timeout(60_000);
    t.startAddThreads(4);
    let cycles = 0;
    try {
      // At least 2.5 s and at least 50 cycles: on a loaded machine each attach
      // waits for the hammering threads to be paused, so time alone says little.
      const until = Date.now() + 2500;
      const giveUp = Date.now() + 45_000;
      while ((Date.now() < until || cycles < 50) && Date.now() < giveUp) {
        const a = await obj.program("on_add").attach();
        const r = await obj.program("on_add_ret").attach();
        await new Promise((res) => setTimeout(res, 1));
        a.detach();
        r.detach();
        cycles++;
      }
    } finally {
      var { calls, good } = t.stopAddThreads();
    }
    assert.ok(cycles >= 50, `attach/detach cycles: ${cycles}`);
    assert.ok(calls > 100_000, `calls: ${calls}`);
    assert.equal(good, calls, "every call returned the right sum");
    assert.ok(count(0) > 0n && count(2) > 0n, "the probes ran while attached");
  });

  it("a return probe reads the return value and may change it", async () => {
    await obj.program("double_ret").attach();
    assert.equal(t.double(5), 10n);
    assert.equal(slot(6), 10n, "bpf_get_func_ret");
    assert.equal(slot(7), 1n, "bpf_get_retval works in a return probe");
    assert.equal(t.double(21), 99n, "bpf_set_retval changed what the caller received");
  });

  it("bpf_get_stack gives a real backtrace: the function, then its callers", async () => {
    await obj.program("fib_stack").attach();
    assert.equal(t.fib(1), 1n);
    const n = Number(slot(11));
    assert.ok(n >= 16, `bytes of stack: ${n}`);
    const bss = obj.objectMap(".bss");
    const at = bss.spec.valueType!.members!.find((m) => m.name === "frames")!.offset;
    const frames = (bss.map as BpfMap<number, Buffer>).get(0)!;
    const ip = (i: number) => frames.readBigUInt64LE(at + i * 8);
    assert.equal(ip(0), t.addressOf("bh_target_fib"), "frame 0 is the probed function");
    const caller = symbolResolver.addressInfo(ip(1));
    assert.match(caller?.module?.path ?? "", /testaddon\.node$/, "frame 1 returns into the test addon that called it");
  });

  it("detaching the last probe of a function restores its bytes", async () => {
    const original = t.readBytes("bh_target_add", 16);
    const a = await obj.program("on_add").attach();
    const b = await obj.program("on_add_ret").attach();
    a.detach();
    assert.notDeepEqual(t.readBytes("bh_target_add", 16), original, "still patched: one probe left");
    b.detach();
    assert.deepEqual(t.readBytes("bh_target_add", 16), original);
  });

  it("closing the runtime restores the original bytes", async () => {
    const original = t.readBytes("bh_target_add", 16);
    await obj.program("on_add").attach();
    await obj.program("on_add_ret").attach();
    assert.notDeepEqual(t.readBytes("bh_target_add", 16), original, "patched while attached");
    rt.close();
    assert.deepEqual(t.readBytes("bh_target_add", 16), original);
    assert.equal(t.add(2, 2), 4n);
  });
});

describe("42 uprobes: checked mode", function () {
  it("a bad program faults instead of crashing the process, and the fault is reported", async function () {
    const t = testAddon();
    const rt = await Runtime.create({
      plugins: ["@bpfhook/plugin-frida-uprobe"],
      resolveFrom: repoRoot,
      checked: true,
      budget: 10_000,
    });
    try {
      const obj = rt.load({
        programs: [
          // Reads through the function's first argument as a pointer: add(0, ..) makes it NULL.
          { name: "deref_arg", insns: assembleBytes("ldxdw %r2, [%r1+112]\nldxdw %r0, [%r2+0]\nexit") },
          { name: "spin", insns: assembleBytes("spin:\nja spin") },
        ],
      });
      const target = { module: "libbpfhook_targets.so", symbol: "bh_target_add" };
      await obj.program("deref_arg").attach({ type: "uprobe", data: target });
      await obj.program("spin").attach({ type: "uprobe", data: target });
      assert.equal(t.add(0, 5), 5n, "the function still runs and returns");
      assert.equal(t.add(0, 6), 6n);
      const bad = obj.program("deref_arg").faults;
      assert.equal(bad.count, 2);
      assert.match(bad.last ?? "", /pc 1: load of 8 bytes at 0x0 outside stack, context and regions/);
      const spin = obj.program("spin").faults;
      assert.equal(spin.count, 2);
      assert.match(spin.last ?? "", /budget/);
    } finally {
      rt.close();
    }
  });
});
