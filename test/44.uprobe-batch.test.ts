/**
 * Runtime.batch(): frida-uprobe attachments made inside a batch are patched
 * at its end, in one engine transaction (one pause of the threads for all of
 * them); a batch that fails leaves nothing attached. Other plugins attach as
 * usual inside a batch.
 */
import { strict as assert } from "node:assert";
import path from "node:path";
import { assembleBytes, Runtime, type BpfMap, type LoadedObject } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import { plugin as uprobePlugin } from "@bpfhook/plugin-frida-uprobe";
import type { NativeCaller } from "@bpfhook/sdk";
import type { TestAddon } from "./support/test-addon.js";
import { useUprobeFixture } from "./support/uprobe-fixture.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const fixture = path.join(repoRoot, "test", "fixtures", "uprobe", "probes.bpf.c");

/** bh_hook_stats (sdk/native/hook/include/bpfhook/hook.h). */
interface HookStats {
  pauses: bigint;
  transactions: bigint;
  trampolines: bigint;
}

function hookStats(rt: Runtime): HookStats {
  const { out } = rt.callNative("frida-uprobe", "hook_stats", new Uint8Array(0), 88);
  const at = (i: number) => out.readBigUInt64LE(8 + 8 * i);
  return { pauses: at(0), transactions: at(4), trampolines: at(6) };
}

function funcPatched(rt: Runtime, address: bigint): boolean {
  const input = Buffer.alloc(8);
  input.writeBigUInt64LE(address);
  try {
    const { out } = rt.callNative("frida-uprobe", "func_info", input, 64);
    return out.readUInt32LE(8) === 1;
  } catch {
    return false; // -ENOENT: not hooked (or its trampoline was freed)
  }
}

describe("44 uprobe batches (engine transactions)", function () {
  let objectPath: string;
  let rt: Runtime;
  let obj: LoadedObject;
  let t: TestAddon;

  useUprobeFixture(fixture, "bpfhook-batch-", (s) => {
    ({ objectPath, t } = s as { objectPath: string; t: TestAddon });
    if (s.rt) ({ rt, obj } = s as { rt: Runtime; obj: LoadedObject });
  });

  const count = (k: number) => obj.map<BpfMap<number, bigint>>("counts").get(k) ?? 0n;
  const targets = ["bh_target_add", "bh_target_args8", "bh_target_fib", "bh_target_double"];

  it("patches every function at the batch's end, with one pause, and nested batches wait for the outermost", async () => {
    const before = hookStats(rt);
    const links = await rt.batch(async () => {
      const inner = await rt.batch(async () => [
        await obj.program("on_add").attach(),
        await obj.program("on_add_second").attach(),
        await obj.program("on_args8").attach(),
      ]);
      // The inner batch ended, the outer one is open: nothing is patched yet.
      for (const name of targets.slice(0, 2)) assert.equal(funcPatched(rt, t.addressOf(name)), false, name);
      t.add(1, 2);
      assert.equal(count(0), 0n, "a link of an open batch does not fire");
      return [
        ...inner,
        await obj.program("fib_in").attach(),
        await obj.program("fib_out").attach(),
        await obj.program("filter_double").attach(),
      ];
    });
    const after = hookStats(rt);
    for (const name of targets) assert.equal(funcPatched(rt, t.addressOf(name)), true, name);
    assert.equal(after.transactions - before.transactions, 1n, "one transaction");
    assert.equal(after.pauses - before.pauses, 1n, "one pause for the four functions");
    assert.equal(links.length, 6);
    assert.ok(links.every((l) => l.attached));
    assert.equal(t.add(2, 3), 5n);
    assert.equal(count(0), 1n);
    assert.equal(count(1), 1n);
    t.fib(3);
    assert.ok(count(4) > 0n && count(5) > 0n);

    // Detaching in a batch restores every function at its end.
    await rt.batch(() => {
      for (const l of links) l.detach();
    });
    for (const name of targets) assert.equal(funcPatched(rt, t.addressOf(name)), false, name);
    t.add(1, 1);
    assert.equal(count(0), 1n, "no run after detach");
  });

  it("an attach that fails inside a batch leaves nothing of the batch attached", async () => {
    const before = hookStats(rt);
    await assert.rejects(
      rt.batch(async () => {
        await obj.program("on_add").attach();
        await obj.program("on_args8").attach();
        await obj.program("fib_in").attach({
          type: "uprobe",
          data: { module: "libbpfhook_targets.so", symbol: "bh_no_such_function" },
        });
      }),
      (err: Error & { code?: string }) => err.code === "NOT_FOUND" && /bh_no_such_function/.test(err.message),
    );
    for (const name of targets) assert.equal(funcPatched(rt, t.addressOf(name)), false, name);
    assert.equal(hookStats(rt).pauses, before.pauses, "nothing was patched, so nothing paused");
    t.add(4, 5);
    assert.equal(count(0), 0n, "the probe attached before the failure never ran");
    // The runtime is usable afterwards: a plain attach works at once.
    const link = await obj.program("on_add").attach();
    t.add(4, 5);
    assert.equal(count(0), 1n);
    link.detach();
  });

  it("a plugin without batch hooks attaches at once inside a batch, and its links go too if the batch fails", async () => {
    const both = await Runtime.create({
      plugins: ["@bpfhook/plugin-frida-uprobe", "@bpfhook/plugin-simple"],
      resolveFrom: repoRoot,
    });
    try {
      const simple = both.load({ programs: [{ name: "tick", section: "simple/tick", insns: assembleBytes("mov %r0, 7\nexit") }] });
      const uprobes = both.load(objectPath);
      await both.batch(async () => {
        await simple.program("tick").attach();
        assert.equal(trigger(both, "tick").count, 1, "the simple plugin's link runs inside the batch");
        await uprobes.program("on_add").attach();
      });
      assert.equal(trigger(both, "tick").count, 1);
      await assert.rejects(
        both.batch(async () => {
          await simple.program("tick").attach();
          throw new Error("give up");
        }),
        /give up/,
      );
      assert.equal(trigger(both, "tick").count, 1, "the failed batch's simple link was detached");
    } finally {
      both.close();
    }
  });

  it("a plugin whose endBatch throws: the batch's links are detached and the error names the plugin", async () => {
    let ended = 0;
    const failing = {
      ...uprobePlugin,
      endBatch: (native: NativeCaller) => {
        uprobePlugin.endBatch!(native); // really patches...
        ended++;
        throw Object.assign(new Error("batch refused for the test"), { code: "ATTACH_FAILED" });
      },
    };
    const own = await Runtime.create({ plugins: [failing], resolveFrom: repoRoot });
    try {
      const o = own.load(objectPath);
      let links: Awaited<ReturnType<ReturnType<typeof o.program>["attach"]>>[] = [];
      await assert.rejects(
        own.batch(async () => {
          links = [await o.program("on_add").attach(), await o.program("on_args8").attach()];
        }),
        (err: Error & { code?: string }) => err.code === "ATTACH_FAILED" && /\[frida-uprobe\].*batch refused for the test/.test(err.message),
      );
      assert.equal(ended, 1);
      assert.ok(links.length === 2 && links.every((l) => !l.attached), "...then the runtime detached them");
      assert.equal(funcPatched(own, t.addressOf("bh_target_add")), false);
      assert.equal(funcPatched(own, t.addressOf("bh_target_args8")), false);
      t.add(1, 1);
      assert.equal(o.map<BpfMap<number, bigint>>("counts").get(0) ?? 0n, 0n);
    } finally {
      own.close();
    }
  });

  it("frida-uprobe's endBatch turns the engine's failure into an error with its message", () => {
    const out = Buffer.alloc(4 + 1024);
    out.writeInt32LE(-16, 0);
    out.write("end_transaction: 'f' (0x1000): its first bytes changed\0", 4);
    const native: NativeCaller = { callNative: () => ({ rc: 0, out }) };
    assert.throws(
      () => uprobePlugin.endBatch!(native),
      (err: Error & { code?: string; errno?: number }) =>
        err.code === "ATTACH_FAILED" && err.errno === -16 && err.message.endsWith("its first bytes changed (-16)"),
    );
    out.writeInt32LE(0, 0);
    uprobePlugin.endBatch!(native); // 0: applied
  });

  it("closing the runtime inside a batch ends it (later attaches are not held back)", async () => {
    await rt
      .batch(async () => {
        await obj.program("on_add").attach();
        rt.close();
        throw new Error("closed inside");
      })
      .catch(() => {});
    const rt2 = await Runtime.create({ plugins: ["@bpfhook/plugin-frida-uprobe"], resolveFrom: repoRoot });
    try {
      const obj2 = rt2.load(objectPath);
      await obj2.program("on_add").attach();
      assert.equal(funcPatched(rt2, t.addressOf("bh_target_add")), true, "patched at once: no transaction left open");
      t.add(1, 1);
      assert.equal(obj2.map<BpfMap<number, bigint>>("counts").get(0), 1n);
    } finally {
      rt2.close();
    }
  });
});
