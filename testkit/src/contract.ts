/**
 * The contract tests every plugin must pass, as mocha cases:
 *
 * - its attach type is registered and its native piece is built;
 * - a plugin object with another ABI version is refused at registration;
 * - bad private data is refused by the schema before any native code runs
 *   (the plugin's prepare/encode are not called and its library is not
 *   opened), and the message names the field;
 * - attach then detach leaves nothing behind (no link in the runtime or in
 *   the native runtime, nothing fires), detach is idempotent and the native
 *   detach of a detached or unknown link is -ENOENT, re-attach works, two
 *   attachments run twice, closing the runtime detaches everything;
 * - attach/detach while other threads run the programs: many attaches in
 *   flight at once in one runtime (Promise.all), and native threads firing
 *   the attach point while this thread attaches and detaches (a Runtime
 *   lives on one JS thread: the core addon cannot be used from worker
 *   threads, it aborts the process);
 * - the native piece alone, driven through bh_plugin_ops by a harness in a
 *   child process (testkit/native): entry, ABI and name; detach of an
 *   unknown id and a second detach of an id are -ENOENT; re-attach; attach
 *   and detach from several native threads at once on one state;
 * - the plugin works under the agent (AgentSession.run of a target program)
 *   as well as embedded.
 *
 * A check that cannot apply (no trigger, no target program for the agent)
 * skips with the reason printed.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { AgentSession, type Runtime } from "@bpfhook/core";
import type { AttachPlugin } from "@bpfhook/sdk";
import { clangMissing, COUNTER_MAP, counterProgram, compileC, loadProgram, readMap, type CSource, type LoadedProgram } from "./program.js";
import { createTestRuntime, isPluginDirectory, registerPlugin, type TestRuntimeOptions } from "./runtime.js";

/** A private-data entry the schema must refuse, and the field its message must name. */
export interface InvalidData {
  readonly data: Record<string, unknown>;
  readonly field: string;
}

/** The agent-mode check: a target program run under the agent with a counting program attached by section. */
export interface AgentContract {
  /** The target program and its arguments. */
  readonly command: string;
  readonly args?: readonly string[];
  /**
   * The program, attached by its section in the target: eBPF C that counts
   * into an array map `hits` at key 0 ({@link counterProgram} writes one).
   */
  readonly program: CSource;
  /** hits[0] once the target exited: the exact count, or a check. */
  readonly expectHits: number | ((hits: bigint) => void);
  /** The target's exit status (default 0). */
  readonly exitStatus?: number;
}

/** ContractOptions.threads. */
export interface ThreadedTrigger {
  start(rt: Runtime): void | Promise<void>;
  stop(rt: Runtime): number | Promise<number>;
  readonly rounds?: number;
}

/** A check left out, and why (printed when the case skips). */
export interface Skip {
  readonly skip: string;
}

export interface ContractOptions {
  /** The plugin: a package directory (absolute or starting with ".") or an npm package name. */
  readonly plugin: string;
  /** Where package names resolve from (default: the working directory). */
  readonly resolveFrom?: string;
  /** The attach type under test, by name. */
  readonly attachType: string;
  /** A config entry the plugin accepts for `attachType` (AttachOptions.data). */
  readonly validData: Record<string, unknown>;
  /** Entries the schema must refuse, each with the field the message must name (at least one). */
  readonly invalidData: readonly InvalidData[];
  /**
   * Fires the attach point `validData` names `times` times, in this
   * process, for the programs attached in `rt` (the simple plugin's
   * trigger, a call of the hooked function ...). Absent: the checks that
   * count runs skip.
   */
  readonly trigger?: (rt: Runtime, times: number) => void | Promise<void>;
  /**
   * A module (absolute path) exporting `setup(rt)`, run on every runtime
   * these tests create with the plugin, before anything is loaded (e.g. the syscall-trace plugin's dispatch-only mode).
   */
  readonly setupModule?: string;
  /**
   * The config entry the native-piece case attaches with in its own
   * process (default `validData`): data that holds there too (prepared
   * module-relative; e.g. a function of libc rather than of a library only
   * the test process maps).
   */
  readonly nativeData?: Record<string, unknown>;
  /** Threads of the native-piece case (default 4), each attaching and detaching 50 times. */
  readonly nativeThreads?: number;
  /** Attaching cannot be tested here (every attach check skips with this reason). */
  readonly noAttach?: string;
  /** The agent-mode check, or why it is left out. */
  readonly agent?: AgentContract | Skip;
  /**
   * Native threads firing the attach point in the background (start) until
   * stopped (stop: how many times they fired, each fire running every
   * program attached to the point once), while this thread attaches and
   * detaches `rounds` times (default 24); or why the check is left out.
   * (A Runtime lives on the JS thread that created it; worker threads may
   * each have their own, but a plugin's events fire on native threads, so
   * concurrency here means native threads running programs while attaches
   * and detaches happen.)
   */
  readonly threads?: ThreadedTrigger | Skip;
  /** More options of every runtime (verifier mode ...). */
  readonly runtime?: Omit<TestRuntimeOptions, "plugins">;
  /** Per-case timeout in ms (default 60000). */
  readonly timeoutMs?: number;
}

/** What the cases need of mocha's `this`. */
interface CaseContext {
  skip(): void;
  timeout(ms: number): void;
}
type CaseFn = (this: CaseContext) => void | Promise<void>;
interface MochaGlobals {
  it(title: string, fn: CaseFn): unknown;
}

/** The trivial program attached where counting is not needed: valid for every context. */
const NOOP = { asm: "mov %r0, 0\nexit", name: "contract_noop" } as const;
const ENOENT = -2;

/**
 * The native runtime's link table, which the public API does not expose;
 * reached through the Runtime's private field (same package version as the
 * test kit). Undefined when the runtime's shape changed: those checks then
 * skip.
 */
function nativeOf(rt: Runtime): { linkCount(): number; detach(link: number): number } | undefined {
  const n = (rt as unknown as { nativeRt?: { linkCount?: unknown; detach?: unknown } }).nativeRt;
  if (n && typeof n.linkCount === "function" && typeof n.detach === "function") {
    return n as { linkCount(): number; detach(link: number): number };
  }
  return undefined;
}

function skipWith(ctx: CaseContext, reason: string): void {
  console.log(`      skipped: ${reason}`);
  ctx.skip();
}

/**
 * Defines the contract cases for one plugin inside `describeFn(title, ...)`
 * (mocha's `describe`; `it` is mocha's global). Use in a test file:
 *
 * ```ts
 * runContractTests(describe, {
 *   plugin: path.resolve(__dirname, ".."),
 *   attachType: "myevent",
 *   validData: { channel: "a" },
 *   invalidData: [{ data: { channel: "" }, field: "channel" }],
 *   trigger: (rt, n) => { for (let i = 0; i < n; i++) fire(rt, "a"); },
 * });
 * ```
 */
export function runContractTests(describeFn: (title: string, fn: () => void) => unknown, opts: ContractOptions): void {
  const g = globalThis as unknown as MochaGlobals;
  if (typeof g.it !== "function") throw new Error("runContractTests: run it under mocha (no global it())");
  if (opts.invalidData.length === 0) throw new Error("runContractTests: give at least one invalidData entry");
  const timeout = opts.timeoutMs ?? 60_000;
  const resolveFrom = opts.resolveFrom ?? process.cwd();
  const pluginRef = typeof opts.plugin === "string" && isPluginDirectory(opts.plugin) ? path.resolve(opts.plugin) : opts.plugin;
  const baseOptions: TestRuntimeOptions = { ...opts.runtime, resolveFrom };

  const it = (title: string, fn: CaseFn) =>
    g.it(title, function (this: CaseContext) {
      this.timeout(timeout);
      return fn.call(this);
    });

  /** A runtime with the plugin (as the user gives it) and the setup module run. */
  async function pluginRuntime(): Promise<{ rt: Runtime; plugin: AttachPlugin }> {
    const rt = await createTestRuntime(baseOptions);
    try {
      const plugin = registerPlugin(rt, pluginRef);
      if (opts.setupModule) await (require(opts.setupModule) as { setup(rt: Runtime): unknown }).setup(rt);
      return { rt, plugin };
    } catch (err) {
      rt.close();
      throw err;
    }
  }

  /** The plugin object itself (loaded once, from a runtime closed again). */
  let pluginObject: AttachPlugin | undefined;
  async function thePlugin(): Promise<AttachPlugin> {
    if (!pluginObject) {
      const rt = await createTestRuntime(baseOptions);
      try {
        pluginObject = registerPlugin(rt, pluginRef);
      } finally {
        rt.close();
      }
    }
    return pluginObject;
  }

  /**
   * Whether an attaching case can run here; otherwise skips it, printing
   * why. `counting`: the case counts runs (it needs the trigger, and clang
   * for the counting program).
   */
  function attachable(ctx: CaseContext, counting: boolean): boolean {
    if (opts.noAttach !== undefined) {
      skipWith(ctx, opts.noAttach);
      return false;
    }
    if (counting && !opts.trigger) {
      skipWith(ctx, `plugin ${opts.plugin} has no trigger in its contract options: runs cannot be counted`);
      return false;
    }
    const missing = counting ? clangMissing() : undefined;
    if (missing !== undefined) {
      skipWith(ctx, missing);
      return false;
    }
    return true;
  }

  const counter = () => counterProgram("contract");
  const hits = (p: LoadedProgram) => Number(readMap(p.object, COUNTER_MAP) ?? 0n);
  const attach = (p: LoadedProgram) => p.program.attach({ type: opts.attachType, data: opts.validData });
  const fire = async (rt: Runtime, times: number) => {
    await opts.trigger!(rt, times);
  };

  describeFn(`plugin contract: ${opts.plugin} (${opts.attachType})`, () => {
    it("registers, serves its attach type and has its native piece built", async () => {
      const plugin = await thePlugin();
      const type = plugin.attachTypes.find((t) => t.name === opts.attachType);
      assert.ok(type, `plugin '${plugin.name}' declares attach type '${opts.attachType}' (it has: ${plugin.attachTypes.map((t) => t.name).join(", ")})`);
      assert.ok(path.isAbsolute(plugin.nativeLibrary), `nativeLibrary is absolute: ${plugin.nativeLibrary}`);
      assert.ok(existsSync(plugin.nativeLibrary), `native piece built: ${plugin.nativeLibrary} (build the plugin first)`);
    });

    it("a plugin object with another ABI version is refused at registration", async () => {
      const plugin = await thePlugin();
      for (const abiVersion of plugin.abiVersion > 1 ? [plugin.abiVersion + 1, plugin.abiVersion - 1] : [plugin.abiVersion + 1]) {
        const other: AttachPlugin = Object.assign(Object.create(Object.getPrototypeOf(plugin) as object) as AttachPlugin, plugin, { abiVersion });
        const rt = await createTestRuntime({ ...baseOptions });
        try {
          assert.throws(
            () => registerPlugin(rt, other),
            (e: Error) => /ABI/.test(e.message) && e.message.includes(String(abiVersion)),
            `ABI ${abiVersion} (the core speaks ${plugin.abiVersion}) refused, naming both`,
          );
          assert.equal(rt.registry.get(plugin.name), undefined, "nothing registered");
        } finally {
          rt.close();
        }
      }
    });

    it("bad private data is refused by the schema before native code runs, naming the field", async function () {
      const plugin = await thePlugin();
      const missingLib = path.join(path.sep, "nonexistent", `bpfhook-contract-${plugin.name}`, "must-not-load.so");
      const calls: string[] = [];
      // The same plugin with a native piece that cannot load and spies on
      // its hooks: an error other than the schema's means native code (or
      // prepare/encode) was reached first.
      const spy: AttachPlugin = Object.assign(Object.create(Object.getPrototypeOf(plugin) as object) as AttachPlugin, plugin, {
        nativeLibrary: missingLib,
        ...(plugin.prepare ? { prepare: (...a: Parameters<NonNullable<AttachPlugin["prepare"]>>) => (calls.push("prepare"), plugin.prepare!.apply(spy, a)) } : {}),
        encode: (...a: Parameters<AttachPlugin["encode"]>) => (calls.push("encode"), plugin.encode.apply(spy, a)),
      });
      const rt = await createTestRuntime({ ...baseOptions, plugins: [spy] });
      try {
        const p = loadProgram(rt, NOOP);
        for (const bad of opts.invalidData) {
          await assert.rejects(
            () => p.program.attach({ type: opts.attachType, data: bad.data }),
            (e: Error & { code?: string }) => {
              assert.equal(e.code, "SCHEMA_INVALID", `${JSON.stringify(bad.data)}: ${e.message}`);
              assert.ok(e.message.includes(bad.field), `the message names '${bad.field}': ${e.message}`);
              return true;
            },
          );
        }
        assert.equal(calls.join(", "), "", "neither prepare nor encode ran for refused data");
        assert.equal(rt.attachments.length, 0);
        if (opts.noAttach === undefined) {
          // Good data does go on to the native piece (here: one that cannot load).
          await assert.rejects(() => attach(p), (e: Error) => e.message.includes(missingLib), "valid data reaches the native piece");
          assert.ok(calls.includes("encode"), "encode ran for valid data");
        }
      } finally {
        rt.close();
      }
    });

    it("attach then detach leaves nothing behind; detach is idempotent; a detached or unknown link is -ENOENT natively", async function () {
      if (!attachable(this, opts.trigger !== undefined)) return;
      const { rt } = await pluginRuntime();
      try {
        const native = nativeOf(rt);
        const linksBefore = native?.linkCount() ?? 0;
        const p = loadProgram(rt, opts.trigger ? counter() : NOOP);
        const link = await attach(p);
        assert.equal(link.attached, true);
        assert.deepEqual(rt.attachments, [link]);
        if (native) assert.equal(native.linkCount(), linksBefore + 1, "one native link");
        if (opts.trigger) {
          await fire(rt, 3);
          assert.equal(hits(p), 3, "the attached program ran once per trigger");
        }
        link.detach();
        assert.equal(link.attached, false);
        assert.deepEqual(rt.attachments, [], "no link left in the runtime");
        if (native) assert.equal(native.linkCount(), linksBefore, "no native link left");
        if (opts.trigger) {
          await fire(rt, 3);
          assert.equal(hits(p), 3, "nothing runs once detached");
        }
        link.detach(); // idempotent by the Runtime's contract
        if (native) {
          assert.equal(native.detach(link.id), ENOENT, "native detach of a detached link: -ENOENT");
          assert.equal(native.detach(link.id + 100000), ENOENT, "native detach of an unknown link: -ENOENT");
          assert.equal(native.detach(-1), ENOENT, "native detach of a negative id: -ENOENT");
        } else {
          console.log("      (native link checks left out: this runtime does not expose its native link table)");
        }
      } finally {
        rt.close();
      }
    });

    it("re-attach works, and two attachments of one program both run", async function () {
      if (!attachable(this, opts.trigger !== undefined)) return;
      const { rt } = await pluginRuntime();
      try {
        const p = loadProgram(rt, opts.trigger ? counter() : NOOP);
        (await attach(p)).detach();
        const again = await attach(p);
        const second = await attach(p);
        assert.equal(rt.attachments.length, 2);
        if (opts.trigger) {
          await fire(rt, 2);
          assert.equal(hits(p), 4, "2 triggers x 2 attachments");
          second.detach();
          await fire(rt, 2);
          assert.equal(hits(p), 6, "one attachment left: 2 more runs");
        } else {
          second.detach();
        }
        again.detach();
        assert.equal(rt.attachments.length, 0);
      } finally {
        rt.close();
      }
    });

    it("closing the runtime detaches every link", async function () {
      if (!attachable(this, false)) return;
      const { rt } = await pluginRuntime();
      let closed = false;
      try {
        const p = loadProgram(rt, NOOP);
        const links = [await attach(p), await attach(p), await attach(p)];
        links[1]!.detach();
        rt.close();
        closed = true;
        assert.deepEqual(links.map((l) => l.attached), [false, false, false]);
        rt.close(); // twice is fine
      } finally {
        if (!closed) rt.close();
      }
    });

    it("many attaches and detaches in flight at once in one runtime", async function () {
      if (!attachable(this, opts.trigger !== undefined)) return;
      const { rt } = await pluginRuntime();
      try {
        const p = loadProgram(rt, opts.trigger ? counter() : NOOP);
        const links = await Promise.all(Array.from({ length: 16 }, () => attach(p)));
        assert.equal(new Set(links.map((l) => l.id)).size, 16, "16 distinct links");
        await Promise.all(links.slice(0, 12).map(async (l) => l.detach()));
        assert.equal(rt.attachments.length, 4);
        if (opts.trigger) {
          await fire(rt, 1);
          assert.equal(hits(p), 4, "the 4 attachments left ran once each");
        }
        for (const l of links) l.detach();
        assert.equal(rt.attachments.length, 0);
      } finally {
        rt.close();
      }
    });

    it("native threads fire the attach point while this thread attaches and detaches", async function () {
      const threads = opts.threads;
      if (!attachable(this, false)) return;
      if (threads === undefined || "skip" in threads) {
        skipWith(this, threads?.skip ?? `no background trigger (threads) in the contract options of ${opts.plugin}`);
        return;
      }
      const missing = clangMissing();
      if (missing !== undefined) {
        skipWith(this, missing);
        return;
      }
      const { rt } = await pluginRuntime();
      let running = false;
      try {
        // One steady attachment counts every fire; a second program is
        // attached and detached meanwhile, one by one and many at once.
        const steady = loadProgram(rt, counter());
        await attach(steady);
        const churn = loadProgram(rt, NOOP);
        await threads.start(rt);
        running = true;
        const rounds = threads.rounds ?? 24;
        // At least 100 ms in all, yielding between rounds: the threads
        // must be firing while the links change.
        const until = Date.now() + 100;
        for (let i = 0; i < rounds || Date.now() < until; i++) {
          await new Promise((r) => setTimeout(r, 1));
          if (i % 8 === 7) {
            const links = await Promise.all(Array.from({ length: 8 }, () => attach(churn)));
            for (const l of links) l.detach();
          } else {
            (await attach(churn)).detach();
          }
        }
        running = false;
        const fires = await threads.stop(rt);
        assert.ok(fires > 0, "the threads fired");
        assert.equal(hits(steady), fires, `the steady attachment ran once per fire (${fires}) while links came and went`);
        assert.equal(rt.attachments.length, 1, "only the steady link is left");
      } finally {
        if (running) await threads.stop(rt);
        rt.close();
      }
    });

    it("its native piece alone (bh_plugin_ops driven directly, in a child process): detach of an unknown or detached id is -ENOENT, attach/detach from several threads", async function () {
      const harness = path.join(__dirname, "..", "build", "bpfhook_contract_harness");
      if (!existsSync(harness)) {
        skipWith(this, `the contract harness is not built (${harness}: npm run build:native in @bpfhook/testkit)`);
        return;
      }
      const plugin = await thePlugin();
      const type = plugin.attachTypes.find((t) => t.name === opts.attachType);
      assert.ok(type, `attach type '${opts.attachType}'`);
      let hex = "-";
      if (opts.noAttach === undefined) {
        // The bytes a Runtime would hand the native attach, prepared for
        // another process (moduleRelative), as agent mode prepares them.
        const entry = opts.nativeData ?? opts.validData;
        const raw = plugin.parseConfig ? plugin.parseConfig(type, entry) : entry;
        const parsed = plugin.privateDataSchema.safeParse(raw);
        assert.ok(parsed.success, `nativeData/validData passes the schema: ${JSON.stringify(entry)}`);
        const host = { log: () => undefined, target: { pid: process.pid, moduleRelative: true } };
        const prepared = plugin.prepare ? await plugin.prepare({ type, data: parsed.data }, host) : parsed.data;
        hex = Buffer.from(plugin.encode({ type, data: prepared })).toString("hex");
      } else {
        console.log(`      (attach checks left out: ${opts.noAttach})`);
      }
      const threads = String(opts.nativeThreads ?? 4);
      const r = spawnSync(harness, [plugin.nativeLibrary, plugin.name, String(type.id), hex, threads, "50"], {
        encoding: "utf8",
        timeout: timeout - 5000,
      });
      const out = `${r.stdout}${r.stderr}`;
      assert.equal(r.signal, null, `the harness was killed by ${r.signal}: ${out}`);
      assert.equal(r.status, 0, out);
      assert.match(r.stdout, /^ok detach of an unknown id is -ENOENT$/m);
      assert.match(r.stdout, /^ok fini$/m);
      if (hex !== "-") {
        assert.match(r.stdout, /^ok attach, detach, and a second detach of the same id is -ENOENT$/m);
        assert.match(r.stdout, new RegExp(`^ok attach/detach from ${threads} threads at once, nothing left$`, "m"));
      }
    });

    it("works under the agent (AgentSession.run of a target) as well as embedded", async function () {
      const agent = opts.agent;
      if (!attachable(this, false)) return;
      if (agent === undefined || "skip" in agent) {
        skipWith(this, agent?.skip ?? `no agent target given in the contract options of ${opts.plugin}`);
        return;
      }
      const missing = clangMissing();
      if (missing !== undefined) {
        skipWith(this, missing);
        return;
      }
      const object = compileC(agent.program);
      const s = await AgentSession.run({
        objects: [object],
        plugins: [pluginRef],
        command: agent.command,
        args: agent.args ?? [],
        stdio: ["ignore", "pipe", "pipe"],
        ...(opts.runtime?.verifier ? { verifier: opts.runtime.verifier } : {}),
      });
      try {
        let output = "";
        s.child?.stdout?.on("data", (d: Buffer) => (output += d.toString()));
        s.child?.stderr?.on("data", (d: Buffer) => (output += d.toString()));
        const st = await s.exited;
        assert.equal(st.status, agent.exitStatus ?? 0, `target's exit status (output: ${output})`);
        const failed = s.attachments.filter((a) => !a.ok);
        assert.deepEqual(failed, [], "every attachment applied in the target");
        const obj = [...s.objects.values()][0]!;
        const n = readMap(obj, COUNTER_MAP) ?? 0n;
        if (typeof agent.expectHits === "number") assert.equal(n, BigInt(agent.expectHits), `hits in the target (output: ${output})`);
        else agent.expectHits(n);
      } finally {
        s.child?.kill("SIGKILL");
        s.close();
      }
    });
  });
}
