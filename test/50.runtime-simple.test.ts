import { strict as assert } from "node:assert";
import path from "node:path";
import { assembleBytes, AttachPluginToken, Runtime } from "@bpfhook/core";
import { definePlugin, PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import { plugin as simplePlugin, trigger } from "@bpfhook/plugin-simple";
import { z } from "zod";
import { inject, injectable } from "tsyringe";
import { RuntimeToken } from "@bpfhook/core";
import { expectError } from "./support/expect-error.js";
import { makePluginApp } from "./support/plugin-app.js";
import { testAddon } from "./support/test-addon.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const u64 = (v: bigint | number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

// r0 = *(u64 *)ctx + 1; *(u64 *)ctx = r0 * 2
const incrementAndDouble = assembleBytes(`
  ldxdw %r0, [%r1+0]
  add %r0, 1
  mov %r2, %r0
  lsh %r2, 1
  stxdw [%r1+0], %r2
  exit
`);

describe("50 runtime + simple plugin", () => {
  let rt: Runtime;
  beforeEach(async () => {
    rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
  });
  afterEach(() => rt.close());

  it("finds the plugin by package name and lists its attach type", () => {
    const names = rt.registry.list().map((p) => p.name);
    assert.deepEqual(names, ["simple"]);
    assert.deepEqual(
      rt.container.resolveAll<{ name: string }>(AttachPluginToken).map((p) => p.name),
      ["simple"],
      "registered plugins are in the runtime's DI container",
    );
    assert.equal(rt.registry.type("simple").type.id, 2001);
    assert.equal(rt.registry.matchSection("simple/tick")?.rest, "tick");
    assert.equal(rt.registry.matchSection("simplex/tick"), undefined);
  });

  it("attaches by section and runs on a trigger from TypeScript", async () => {
    const obj = rt.load({ programs: [{ name: "on_tick", section: "simple/tick", insns: incrementAndDouble }] });
    const link = await obj.program("on_tick").attach();
    assert.equal(link.type.name, "simple");
    assert.equal(link.description, "simple source 'tick'");
    const r = trigger(rt, "tick", u64(41));
    assert.equal(r.count, 1);
    assert.equal(r.result, 42n);
    assert.equal(r.context.readBigUInt64LE(0), 84n, "the program's write to its context comes back");
    assert.equal(trigger(rt, "other", u64(1)).count, 0, "another source runs nothing");
  });

  it("takes a u64 attach cookie as a number, bigint or decimal string, and refuses anything else", async () => {
    const obj = rt.load({ programs: [{ name: "cookie", section: "simple/cookie", insns: assembleBytes("call 174\nexit") }] });
    const prog = obj.program("cookie");
    for (const [cookie, expected] of [
      [7, 7n],
      [2 ** 53 + 2, 2n ** 53n + 2n],
      [2n ** 64n - 1n, 2n ** 64n - 1n],
      ["18446744073709551615", 2n ** 64n - 1n],
      ["0", 0n],
    ] as const) {
      const link = await prog.attach({ cookie });
      assert.equal(trigger(rt, "cookie").result, expected, `cookie ${String(cookie)}`);
      link.detach();
    }
    for (const [cookie, shown] of [
      [1.5, "1.5"],
      [-1, "-1"],
      [2 ** 64, "18446744073709552000"],
      [Number.NaN, "NaN"],
      [-1n, "-1n"],
      [2n ** 64n, "18446744073709551616n"],
      ["abc", '"abc"'],
      ["-1", '"-1"'],
      ["1e3", '"1e3"'],
      ["18446744073709551616", '"18446744073709551616"'],
      ["", '""'],
      [{}, "object"],
      [null, "null"],
    ] as const) {
      const err = await expectError(
        () => prog.attach({ cookie: cookie as never }),
        "BAD_ARGUMENT",
        /^prog 'cookie': attach option 'cookie' must be an integer in 0\.\.2\^64-1 \(a number, bigint or decimal string\), got /,
      );
      assert.ok(err.message.endsWith(`got ${shown}`), err.message);
    }
    assert.equal(rt.attachments.length, 0, "a refused cookie attaches nothing");
  });

  it("runs programs in attach order and stops after detach", async () => {
    const add = (n: number) => assembleBytes(`ldxdw %r0, [%r1+0]\nadd %r0, ${n}\nstxdw [%r1+0], %r0\nexit`);
    const obj = rt.load({
      programs: [
        { name: "first", section: "simple/chain", insns: add(1) },
        { name: "second", section: "simple/chain", insns: add(10) },
      ],
    });
    const l1 = await obj.program("first").attach();
    await obj.program("second").attach();
    const r = trigger(rt, "chain", u64(0));
    assert.equal(r.count, 2);
    assert.equal(r.result, 11n, "second ran after first, on first's output");
    l1.detach();
    assert.equal(trigger(rt, "chain", u64(0)).result, 10n);
    assert.equal(rt.attachments.length, 1);
  });

  it("runs on triggers from native code, on many threads at once", async () => {
    const obj = rt.load({ programs: [{ name: "on_native", section: "simple/native", insns: incrementAndDouble }] });
    await obj.program("on_native").attach();
    const addon = testAddon();
    const one = addon.fireSimple("native", 7);
    assert.deepEqual([one.rc, one.r0, one.ctx], [1, 8n, 16n]);
    assert.equal(addon.fireSimpleThreads("native", 4, 20000), 80000);
  });

  it("attaches by explicit type and data, and validates data before anything native", async () => {
    const obj = rt.load({ programs: [{ name: "p", insns: incrementAndDouble }] });
    const link = await obj.program("p").attach({ type: "simple", data: { source: "explicit" } });
    assert.equal(trigger(rt, "explicit", u64(1)).result, 2n);
    link.detach();
    await expectError(
      () => obj.program("p").attach({ type: "simple", data: { source: "" } }),
      "SCHEMA_INVALID",
      /\[simple\] simple for prog 'p': invalid private data: source: source name must not be empty/,
    );
    await expectError(() => obj.program("p").attach({ type: 2001, data: { sauce: "x" } }), "SCHEMA_INVALID");
    await expectError(() => obj.program("p").attach(), "NOT_FOUND", /section '' is served by no registered plugin/);
    await expectError(() => obj.program("p").attach({ type: "uprobe" }), "NOT_FOUND", /registered types: simple/);
    assert.equal(rt.attachments.length, 0, "nothing half-attached");
  });

  it("close() detaches everything", async () => {
    const obj = rt.load({ programs: [{ name: "p", section: "simple/closing", insns: incrementAndDouble }] });
    await obj.program("p").attach();
    await obj.program("p").attach({ type: "simple", data: { source: "closing" } });
    assert.equal(trigger(rt, "closing", u64(1)).count, 2);
    rt.close();
    assert.equal(testAddon().fireSimple("closing", 1).rc, 0, "no program runs after close");
    await expectError(() => rt.load({ programs: [] }), "BAD_ARGUMENT", /runtime is closed/);
  });

  it("reports a load error with the program and the pc (the verifier's in strict mode, the VM's with it off)", async () => {
    const bad = { programs: [{ name: "bad", section: "simple/x", insns: assembleBytes("mov %r0, 1\nja +3\nexit") }] };
    await expectError(() => rt.load(bad), "VERIFIER_REFUSED", /prog 'bad': pc 1: ja \+3: jump to pc 5, which is not an instruction/);
    const trusting = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, verifier: "off" });
    try {
      await expectError(() => trusting.load(bad), "VM_LOAD", /prog 'bad': pc 1: /);
    } finally {
      trusting.close();
    }
  });
});

describe("50 plugin registry", () => {
  const fake = (over: Record<string, unknown> = {}) =>
    definePlugin({
      name: "fake",
      abiVersion: PLUGIN_ABI_VERSION,
      attachTypes: [
        {
          id: 5000,
          name: "fake",
          sectionPrefixes: ["fake"],
          contextLayout: { name: "fake event", size: 8, writable: [{ offset: 0, size: 8 }] },
        },
      ],
      privateDataSchema: z.object({}),
      nativeLibrary: "/nonexistent/libfake.so",
      parseSection: () => ({}),
      encode: () => new Uint8Array(),
      ...over,
    });

  it("refuses a duplicate attach type id, name or section prefix, naming both plugins", async () => {
    const rt = await Runtime.create({ plugins: [simplePlugin] });
    try {
      await expectError(
        () => rt.use(fake({ attachTypes: [{ id: 2001, name: "other", sectionPrefixes: ["other"] }] })),
        "DUPLICATE_ATTACH_TYPE",
        /\[fake\] attach type 2001 'other'.*clashes with 2001 'simple' of plugin 'simple'/,
      );
      await expectError(
        () => rt.use(fake({ attachTypes: [{ id: 5001, name: "x", sectionPrefixes: ["simple"] }] })),
        "DUPLICATE_ATTACH_TYPE",
      );
      assert.deepEqual(
        rt.registry.list().map((p) => p.name),
        ["simple"],
        "a refused plugin leaves no trace",
      );
    } finally {
      rt.close();
    }
  });

  it("shared section prefixes: the sharer that claims a section gets it, else the prefix's owner, else the first sharer", async () => {
    const rt = await Runtime.create({ plugins: [] });
    try {
      const asked: string[] = [];
      rt.use(
        fake({
          name: "sharer",
          attachTypes: [{ id: 5002, name: "sharer", sectionPrefixes: ["sharer"], sharedPrefixes: ["kp"] }],
          claimsSection: (_t: unknown, rest: string, section: string, target: unknown) => {
            asked.push(section);
            assert.equal(target, undefined, "this process");
            return rest.startsWith("gpu_");
          },
        }),
      );
      assert.equal(rt.registry.matchSection("kp/gpu_kernel")?.plugin.name, "sharer");
      assert.equal(rt.registry.matchSection("kp/do_open")?.plugin.name, "sharer", "no owner: the first sharer");
      rt.use(fake({ name: "owner", attachTypes: [{ id: 5003, name: "owner", sectionPrefixes: ["kp"] }] }));
      const m = rt.registry.matchSection("kp/gpu_kernel");
      assert.deepEqual([m?.plugin.name, m?.type.id, m?.rest], ["sharer", 5002, "gpu_kernel"]);
      assert.equal(rt.registry.matchSection("kp/do_open")?.plugin.name, "owner");
      assert.equal(rt.registry.matchSection("kp")?.plugin.name, "owner");
      rt.registry.matchSection("kp/gpu_kernel");
      assert.equal(asked.filter((s) => s === "kp/gpu_kernel").length, 2, "asked once per registration change, then cached");
      await expectError(
        () => rt.use(fake({ name: "greedy", attachTypes: [{ id: 5004, name: "greedy", sectionPrefixes: ["greedy"], sharedPrefixes: ["kp"] }] })),
        "PLUGIN_INVALID",
        /\[greedy\] attach type 'greedy' shares prefixes \(kp\) but the plugin has no claimsSection/,
      );
    } finally {
      rt.close();
    }
  });

  it("resolves a plugin class through DI, injecting core services by token", async () => {
    @injectable()
    class InjectedPlugin {
      readonly name = "injected";
      readonly abiVersion = PLUGIN_ABI_VERSION;
      readonly attachTypes = [{ id: 5100, name: "injected", sectionPrefixes: ["injected"] }];
      readonly privateDataSchema = z.object({});
      readonly nativeLibrary = "/nonexistent/libinjected.so";
      constructor(@inject(RuntimeToken) readonly runtime: Runtime) {}
      parseSection() {
        return {};
      }
      encode() {
        return new Uint8Array();
      }
    }
    const rt = await Runtime.create({ plugins: [InjectedPlugin] });
    try {
      const p = rt.registry.get("injected") as unknown as InjectedPlugin;
      assert.equal(p.runtime, rt, "the plugin got its runtime injected");
    } finally {
      rt.close();
    }
  });

  it("refuses an ABI mismatch and a malformed plugin with reasons", async () => {
    const rt = await Runtime.create();
    try {
      await expectError(() => rt.use(fake({ abiVersion: 99 })), "ABI_MISMATCH", /plugin ABI 99, this core speaks ABI 1/);
      await expectError(
        () => rt.use(fake({ privateDataSchema: { not: "zod" } })),
        "PLUGIN_INVALID",
        /privateDataSchema: must be a zod schema/,
      );
      await expectError(() => rt.use(fake({ attachTypes: [] })), "PLUGIN_INVALID", /attachTypes/);
    } finally {
      rt.close();
    }
  });

  it("refuses a native piece whose name or ABI does not match, leaving nothing attached", async () => {
    const rt = await Runtime.create({ plugins: [fake({ nativeLibrary: simplePlugin.nativeLibrary })] });
    try {
      const obj = rt.load({ programs: [{ name: "p", section: "fake/x", insns: incrementAndDouble }] });
      await expectError(() => obj.program("p").attach(), "PLUGIN_INVALID", /native piece is named 'simple'/);
      assert.equal(rt.attachments.length, 0);
    } finally {
      rt.close();
    }
  });

  it("finds third-party plugins by package name and from a package.json", async () => {
    const app = makePluginApp();
    const rt = await Runtime.create({ packageJson: path.join(app, "package.json") });
    try {
      assert.deepEqual(rt.registry.list().map((p) => p.name).sort(), ["echo", "simple"]);
      const obj = rt.load({ programs: [{ name: "p", section: "echo/ch1", insns: incrementAndDouble }] });
      await expectError(() => obj.program("p").attach(), "PLUGIN_INVALID", /cannot load plugin library .*libecho\.so/);
      assert.equal(rt.attachments.length, 0);
    } finally {
      rt.close();
    }
    await expectError(
      () => Runtime.create({ plugins: ["bpfhook-plugin-nope"], resolveFrom: app }),
      "PLUGIN_NOT_FOUND",
      /plugin package 'bpfhook-plugin-nope' not found from .*plugin-app/,
    );
    await expectError(
      () => Runtime.create({ plugins: ["zod"], resolveFrom: app }),
      "PLUGIN_INVALID",
      /has no "bpfhook": \{ "plugin": "<module>" \} field/,
    );
  });

  it("runs in worker threads: three workers each with a runtime, a plugin, programs and maps at once", async () => {
    // Each worker is an env of its own: the addon keeps its class references
    // per env (a static one made in one worker crashed the next).
    const { Worker } = await import("node:worker_threads");
    const code = `
      const { Runtime, assembleBytes } = require("@bpfhook/core");
      const { trigger } = require("@bpfhook/plugin-simple");
      const { parentPort, workerData } = require("node:worker_threads");
      (async () => {
        const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: workerData.root });
        const obj = rt.load({
          programs: [{ name: "p", section: "simple/w" + workerData.i, insns: assembleBytes("lddw %r1, map_value 0, 0\\nldxdw %r2, [%r1+0]\\nadd %r2, 1\\nstxdw [%r1+0], %r2\\nmov %r0, 0\\nexit") }],
          maps: [{ name: "hits", type: 2, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0 }],
        });
        await obj.program("p").attach();
        for (let n = 0; n < 100; n++) trigger(rt, "w" + workerData.i, new Uint8Array(8));
        const v = obj.map("hits").get(Buffer.alloc(4));
        parentPort.postMessage(Buffer.from(v).readBigUInt64LE(0).toString());
        rt.close();
      })().catch((e) => parentPort.postMessage("error: " + e.stack));
    `;
    const root = path.resolve(__dirname, "..", "..");
    const results = await Promise.all(
      [0, 1, 2].map(
        (i) =>
          new Promise<string>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { i, root } });
            let msg = "no message";
            w.on("message", (m: string) => (msg = m));
            w.on("error", reject);
            w.on("exit", (c) => (c === 0 ? resolve(msg) : reject(new Error(`worker ${i} exited with ${c}: ${msg}`))));
          }),
      ),
    );
    assert.deepEqual(results, ["100", "100", "100"]);
  });
});
