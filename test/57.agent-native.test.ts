/**
 * The native agent (core/native/agent): a C target built here with gcc
 * (-no-pie, so `work` has the address nm prints) runs with
 * libbpfhook_agent.so preloaded, or gets it injected; the controller side
 * (NativeAgentArea over a SharedRegion) plans one uprobe on `work` whose
 * program counts into an array map, and the test reads the count live.
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, unlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { BpfMap, codec, injectLibrary, SharedRegion } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";
import { encodePrivateData, UPROBE } from "@bpfhook/plugin-frida-uprobe";
import { AgentProcState, AgentResult } from "@bpfhook/core/dist/native/addon-types.js";
import { expectError } from "./support/expect-error.js";
import {
  AGENT_SO,
  countingProgram,
  makePlan,
  printkProgram,
  tailCallProgram,
  UPROBE_SO,
  type Plan,
} from "./support/agent-plan.js";

const fixtures = path.resolve(__dirname, "..", "fixtures", "agent");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A target whose stdin we drive and whose stdout/stderr we collect. */
class Target {
  readonly child: ChildProcess;
  out = "";
  err = "";
  exited = false;
  status: number | null = null;

  constructor(file: string, env: NodeJS.ProcessEnv, args: string[] = []) {
    this.child = spawn(file, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8");
    this.child.stderr!.setEncoding("utf8");
    this.child.stdout!.on("data", (d: string) => (this.out += d));
    this.child.stderr!.on("data", (d: string) => (this.err += d));
    this.child.on("exit", (code) => {
      this.exited = true;
      this.status = code;
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(line: string): void {
    this.child.stdin!.write(line + "\n");
  }

  async waitFor(re: RegExp, ms = 10000): Promise<void> {
    const end = Date.now() + ms;
    while (!re.test(this.out)) {
      if (this.exited && !re.test(this.out)) assert.fail(`exited before ${re}; out:\n${this.out}\nerr:\n${this.err}`);
      if (Date.now() > end) assert.fail(`no ${re} within ${ms} ms; out:\n${this.out}\nerr:\n${this.err}`);
      await sleep(10);
    }
  }

  async quit(): Promise<void> {
    if (this.exited) return;
    this.send("q");
    const end = Date.now() + 5000;
    while (!this.exited && Date.now() < end) await sleep(10);
    assert.ok(this.exited, "the target did not exit");
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function skipReason(): string | undefined {
  if (process.arch !== "x64" || process.platform !== "linux") return "x86-64 Linux only";
  if (spawnSync("gcc", ["--version"]).status !== 0) return "gcc is not installed";
  if (spawnSync("nm", ["--version"]).status !== 0) return "nm (binutils) is not installed";
  if (!existsSync(AGENT_SO)) return `${AGENT_SO} is not built (npm run build:native)`;
  if (!existsSync(UPROBE_SO)) return `${UPROBE_SO} is not built`;
  return undefined;
}

function ptraceSkipReason(): string | undefined {
  try {
    const scope = Number(readFileSync("/proc/sys/kernel/yama/ptrace_scope", "utf8").trim());
    if (scope >= 2 && process.getuid?.() !== 0) return `Yama ptrace_scope is ${scope}`;
  } catch {
    // no Yama: ptrace of our own children is allowed
  }
  return undefined;
}

const uniqueName = (tag: string) => `/bpfhook-t60-${tag}-${process.pid}-${randomBytes(4).toString("hex")}`;

describe("57 native agent", function () {
  let dir: string;
  let target: string;
  let work: { address: bigint; size: bigint };
  const targets: Target[] = [];
  const plans: Plan[] = [];

  before(function () {
    const why = skipReason();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-agent-"));
    target = path.join(dir, "target");
    const cc = spawnSync("gcc", ["-O0", "-no-pie", "-o", target, path.join(fixtures, "target.c")], { encoding: "utf8" });
    assert.equal(cc.status, 0, cc.stderr);
    const nm = spawnSync("nm", ["-S", target], { encoding: "utf8" });
    const m = nm.stdout.match(/^([0-9a-f]+) ([0-9a-f]+) T work$/m);
    assert.ok(m, `no 'work' in nm output:\n${nm.stdout}`);
    work = { address: BigInt("0x" + m[1]), size: BigInt("0x" + m[2]) };
  });

  afterEach(() => {
    for (const t of targets.splice(0)) t.kill();
    for (const p of plans.splice(0)) {
      p.counts.close();
      p.region.close();
    }
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function plan(tag: string, opts: { keepOnExit?: boolean; publish?: boolean } = {}): Plan {
    const p = makePlan(uniqueName(tag), work, opts);
    plans.push(p);
    return p;
  }

  function start(env: NodeJS.ProcessEnv): Target {
    const t = new Target(target, { ...process.env, ...env });
    targets.push(t);
    return t;
  }

  function preloaded(p: Plan, extra: NodeJS.ProcessEnv = {}): Target {
    return start({ LD_PRELOAD: AGENT_SO, BPFHOOK_REGION: p.region.name, ...extra });
  }

  it("attaches before main, counts every call live, and detaches on removeAttach + publish", async () => {
    const p = plan("basic");
    const t = preloaded(p);
    await t.waitFor(/^ready$/m);
    // Applied before main: the result is there as soon as the program talks.
    const r = p.area.attachResult(p.attach);
    assert.equal(r.result, AgentResult.ATTACHED, r.message);
    assert.equal(r.pid, t.pid);
    const procs = p.area.processes();
    assert.equal(procs.length, 1);
    assert.equal(procs[0]!.pid, t.pid);
    assert.equal(procs[0]!.state, AgentProcState.RUNNING);
    assert.equal(procs[0]!.attached, 1);
    assert.equal(procs[0]!.comm, "target");
    assert.equal(procs[0]!.appliedSeq, p.area.info().planSeq);
    t.send("w 1000");
    await t.waitFor(/^did 1000$/m);
    assert.equal(p.counts.get(0), 1000n);
    t.send("w 234");
    await t.waitFor(/^did 234$/m);
    assert.equal(p.counts.get(0), 1234n);

    assert.equal(p.area.removeAttach(p.attach), true);
    assert.equal(p.area.removeAttach(p.attach), false, "removed twice");
    const seq = p.area.publish();
    await until("DETACHED", () => p.area.attachResult(p.attach).result === AgentResult.DETACHED);
    await until("applied seq", () => p.area.processes()[0]!.appliedSeq === seq);
    assert.equal(p.area.processes()[0]!.attached, 0);
    t.send("w 500");
    await t.waitFor(/^did 500$/m);
    assert.equal(p.counts.get(0), 1234n, "the probe still counts after detach");

    // A second attach of the same program is applied, not skipped.
    const data = encodePrivateData({ address: work.address, attachType: UPROBE.id, flags: 0, funcSize: work.size, description: "target:work" });
    const again = p.area.addAttach(p.plugin, p.prog, UPROBE.id, data, 0n);
    p.area.publish();
    await until("re-attach", () => p.area.attachResult(again).result === AgentResult.ATTACHED);
    t.send("w 10");
    await t.waitFor(/^did 10$/m);
    assert.equal(p.counts.get(0), 1244n);
    await t.quit();
    assert.equal(t.status, 0);
    assert.equal(t.err, "");
    assert.equal(p.area.processes()[0]!.state, AgentProcState.GONE);
  });

  it("a forked child keeps its probes and counts into the same map, with its own process record", async () => {
    const p = plan("fork");
    const t = preloaded(p);
    await t.waitFor(/^ready$/m);
    t.send("f 300");
    await t.waitFor(/^forked$/m);
    assert.match(t.out, /^child did 300$/m);
    assert.equal(p.counts.get(0), 300n);
    const child = p.area.processes().find((x) => x.parent === t.pid);
    assert.ok(child, `no record of the child: ${JSON.stringify(p.area.processes(), (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
    assert.equal(child.attached, 1);
    t.send("w 7");
    await t.waitFor(/^did 7$/m);
    assert.equal(p.counts.get(0), 307n);
    await t.quit();
    assert.equal(t.status, 0);
  });

  it("exec with the preload inherited: the new image takes the same process record and counts at once", async () => {
    const p = plan("exec");
    const t = preloaded(p);
    await t.waitFor(/^ready$/m);
    t.send("w 2");
    await t.waitFor(/^did 2$/m);
    t.send("x");
    await t.waitFor(/^ready\n(.|\n)*ready$/m);
    t.send("w 3");
    await t.waitFor(/^did 3$/m);
    assert.equal(p.counts.get(0), 5n);
    const procs = p.area.processes();
    assert.equal(procs.length, 1, "exec reuses the record of its pid");
    assert.equal(procs[0]!.pid, t.pid);
    assert.equal(procs[0]!.state, AgentProcState.RUNNING);
    await t.quit();
  });

  it("BPFHOOK_AGENT_NOINHERIT=1: the program is probed, programs it execs do not inherit the agent", async () => {
    const p = plan("noinherit");
    const t = preloaded(p, { LD_PRELOAD: `/nonexistent-before.so:${AGENT_SO}`, BPFHOOK_AGENT_NOINHERIT: "1" });
    await t.waitFor(/^ready$/m);
    t.send("w 4");
    await t.waitFor(/^did 4$/m);
    assert.equal(p.counts.get(0), 4n);
    t.send("e");
    await t.waitFor(/^env done$/m);
    assert.doesNotMatch(t.out, /^BPFHOOK_REGION=/m);
    assert.match(t.out, /^LD_PRELOAD=\/nonexistent-before\.so$/m, "only the agent's entry is removed");
    await t.quit();
  });

  it("trace_printk lines and the agent's log reach their rings; a failing plugin fails its attachment only", async () => {
    const p = plan("rings", { publish: false });
    const printk = p.region.createMap({ name: "printk", type: "ringbuf", maxEntries: 1 << 16 });
    const log = p.region.createMap({ name: "log", type: "ringbuf", maxEntries: 1 << 16 });
    p.area.setRings(printk.native, log.native);
    const prog = p.area.addProgram("say_hit", printkProgram(), [], {});
    const data = encodePrivateData({ address: work.address, attachType: UPROBE.id, flags: 0, funcSize: work.size, description: "target:work" });
    const hit = p.area.addAttach(p.plugin, prog, UPROBE.id, data, 0n);
    const bogus = p.area.addPlugin("frida-uprobe", "/nonexistent/libbogus.so", false);
    const bad = p.area.addAttach(bogus, p.prog, UPROBE.id, data, 0n);
    p.area.publish();
    const t = preloaded(p);
    await t.waitFor(/^ready$/m);
    assert.equal(p.area.attachResult(p.attach).result, AgentResult.ATTACHED);
    assert.equal(p.area.attachResult(hit).result, AgentResult.ATTACHED, p.area.attachResult(hit).message);
    const failed = p.area.attachResult(bad);
    assert.equal(failed.result, AgentResult.FAILED);
    assert.ok(failed.error < 0);
    assert.match(failed.message, /plugin 'frida-uprobe'.*libbogus\.so/);
    assert.equal(p.area.processes()[0]!.failed, 1);
    t.send("w 2");
    await t.waitFor(/^did 2$/m);
    assert.equal(p.counts.get(0), 2n);
    const lines: Buffer[] = [];
    const c = printk.consumer();
    c.on("data", (b: Buffer) => lines.push(Buffer.from(b)));
    c.poll();
    assert.equal(lines.length, 2);
    for (const b of lines) {
      assert.equal(b.readUInt32LE(0), t.pid);
      assert.equal(b.readUInt32LE(4), t.pid, "the main thread's tid");
      // The helper hands the sink the line without its newline.
      assert.equal(b.toString("utf8", 8).replace(/\0+$/, ""), "hit 42");
    }
    const logs: string[] = [];
    const lc = log.consumer();
    lc.on("data", (b: Buffer) => {
      assert.equal(b.readUInt32LE(0), t.pid);
      logs.push(`${b.readUInt32LE(4)} ${b.toString("utf8", 8)}`);
    });
    lc.poll();
    assert.ok(logs.some((l) => l.startsWith("3 attachment 2 failed: plugin 'frida-uprobe'")), logs.join("\n"));
    await t.quit();
    assert.equal(t.err, "");
    c.close();
    lc.close();
    printk.close();
    log.close();
  });

  it("prog arrays: the agent fills slots from their records and follows slot changes at each publish", async () => {
    const p = plan("tail", { publish: false });
    assert.equal(p.area.removeAttach(p.attach), true); // only the tail-calling program this time
    const arr = p.area.addProgArray(4);
    const caller = p.area.addProgram("caller", tailCallProgram(), [{ progArray: arr }], {});
    const plusOne = p.prog;
    const plusTen = p.area.addProgram("plus_ten", countingProgram(10), [p.counts.native], {});
    p.area.setProgArraySlot(arr, 0, plusOne);
    const data = encodePrivateData({ address: work.address, attachType: UPROBE.id, flags: 0, funcSize: work.size, description: "target:work" });
    const at = p.area.addAttach(p.plugin, caller, UPROBE.id, data, 0n);
    p.area.publish();
    const t = preloaded(p);
    await t.waitFor(/^ready$/m);
    assert.equal(p.area.attachResult(at).result, AgentResult.ATTACHED, p.area.attachResult(at).message);
    t.send("w 5");
    await t.waitFor(/^did 5$/m);
    assert.equal(p.counts.get(0), 5n);
    const step = async (prog: number, n: number, expect: bigint) => {
      p.area.setProgArraySlot(arr, 0, prog);
      const seq = p.area.publish();
      await until(`seq ${seq} applied`, () => p.area.processes()[0]!.appliedSeq === seq);
      t.send(`w ${n}`);
      await t.waitFor(new RegExp(`^did ${n}$`, "m"));
      assert.equal(p.counts.get(0), expect);
    };
    await step(plusTen, 2, 25n);
    await step(-1, 3, 25n); // an empty slot: the caller falls through
    await step(plusOne, 4, 29n);
    assert.throws(() => p.area.setProgArraySlot(arr, 4, plusOne), /slot 4/);
    await t.quit();
  });

  it("injecting into a preloaded target reuses its agent and keeps its probes", async function () {
    const why = ptraceSkipReason();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    const p = plan("reuse");
    const t = preloaded(p);
    await t.waitFor(/^ready$/m);
    const r = injectLibrary(t.pid, AGENT_SO, { callSymbol: "bh_agent_attach_region", callArg: p.region.name });
    assert.equal(r.reused, true);
    assert.equal(r.callRet, 0);
    // Watch the result for a few heartbeats: never detached, not even briefly.
    const seen = new Set<number>();
    for (const end = Date.now() + 500; Date.now() < end; ) {
      seen.add(p.area.attachResult(p.attach).result);
      await sleep(1);
    }
    assert.deepEqual([...seen], [AgentResult.ATTACHED]);
    assert.equal(p.area.processes()[0]!.attached, 1);
    t.send("w 9");
    await t.waitFor(/^did 9$/m);
    assert.equal(p.counts.get(0), 9n);
    await t.quit();
  });

  it("a missing region leaves the program untouched: same output, nothing on stderr", async () => {
    const plain = start({});
    plain.send("w 3");
    await plain.quit();
    const t = start({ LD_PRELOAD: AGENT_SO, BPFHOOK_REGION: uniqueName("missing") });
    t.send("w 3");
    await t.quit();
    assert.equal(t.status, 0);
    assert.equal(t.out, plain.out);
    assert.equal(t.err, "");
  });

  it("a garbage region or one of wrong magic: the program runs untouched and the log file says why", async () => {
    for (const kind of ["garbage", "magic"]) {
      const name = uniqueName(kind);
      const file = path.join("/dev/shm", name.slice(1));
      const bytes = kind === "garbage" ? randomBytes(64 << 10) : Buffer.alloc(64 << 10);
      if (kind === "magic") bytes.write("NOTAREGN", 0);
      writeFileSync(file, bytes, { mode: 0o600 });
      const log = path.join(dir, `${kind}.log`);
      try {
        const t = start({ LD_PRELOAD: AGENT_SO, BPFHOOK_REGION: name, BPFHOOK_AGENT_LOG: log });
        t.send("w 3");
        await t.quit();
        assert.equal(t.status, 0);
        assert.equal(t.out, "ready\ndid 3\nbye\n");
        assert.equal(t.err, "");
        const text = readFileSync(log, "utf8");
        assert.match(text, new RegExp(`region '${name}' refused: not a region of this layout`), text);
      } finally {
        unlinkSync(file);
      }
    }
  });

  for (const keep of [false, true]) {
    it(`a controller killed with SIGKILL: the target runs on and its probes ${keep ? "stay (keepOnExit)" : "go"}`, async function () {
      const name = uniqueName(keep ? "keep" : "ctl");
      const script = path.join(__dirname, "support", "agent-plan.js");
      const args = [script, name, String(work.address), String(work.size), ...(keep ? ["keep"] : [])];
      const ctl = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
      let ctlOut = "";
      ctl.stdout!.setEncoding("utf8");
      ctl.stdout!.on("data", (d: string) => (ctlOut += d));
      try {
        await until("the controller's plan", () => /^plan \d+$/m.test(ctlOut), 10000);
        const region = SharedRegion.open(name);
        const area = native().NativeAgentArea.open(region.native);
        const counts = region.openMap<BpfMap<number, bigint>>("counts", { key: codec.u32, value: codec.u64 });
        const t = preloaded({ region } as Plan);
        await t.waitFor(/^ready$/m);
        assert.equal(area.attachResult(0).result, AgentResult.ATTACHED, area.attachResult(0).message);
        t.send("w 50");
        await t.waitFor(/^did 50$/m);
        assert.equal(counts.get(0), 50n);
        ctl.kill("SIGKILL");
        if (keep) {
          // Two heartbeats: the agent has seen the controller go by then.
          await sleep(600);
          assert.equal(area.attachResult(0).result, AgentResult.ATTACHED);
        } else {
          await until("DETACHED after the controller died", () => area.attachResult(0).result === AgentResult.DETACHED);
          assert.match(area.attachResult(0).message, /controller is gone/);
        }
        t.send("w 50");
        await t.waitFor(/^did 50\n(.|\n)*did 50$/m);
        assert.equal(counts.get(0), keep ? 100n : 50n);
        assert.equal(area.processes()[0]!.attached, keep ? 1 : 0);
        await t.quit();
        assert.equal(t.status, 0);
        counts.close();
        region.close();
      } finally {
        ctl.kill("SIGKILL");
        try {
          unlinkSync(path.join("/dev/shm", name.slice(1)));
        } catch {
          // removed already
        }
      }
    });
  }

  it("a target in another pid namespace judges the controller by its heartbeat, not its pid", async function () {
    if (spawnSync("unshare", ["--pid", "--fork", "--mount-proc", "true"]).status !== 0) {
      console.log("      skipped: cannot make a pid namespace here (unshare --pid needs root or user namespaces)");
      this.skip();
    }
    const p = plan("pidns");
    const beat = setInterval(() => p.area.heartbeat(), 50);
    try {
      // Only the target gets the agent: env sets it inside the namespace.
      const args = ["--pid", "--fork", "--mount-proc", "env", `LD_PRELOAD=${AGENT_SO}`, `BPFHOOK_REGION=${p.region.name}`, target];
      const ns = new Target("unshare", process.env, args);
      targets.push(ns);
      await ns.waitFor(/^ready$/m);
      assert.equal(p.area.attachResult(p.attach).result, AgentResult.ATTACHED, p.area.attachResult(p.attach).message);
      assert.notEqual(p.area.attachResult(p.attach).pid, ns.pid, "the pid as the target's namespace sees it");
      await sleep(600); // beyond a pid check's first tick: still attached
      assert.equal(p.area.attachResult(p.attach).result, AgentResult.ATTACHED);
      ns.send("w 8");
      await ns.waitFor(/^did 8$/m);
      assert.equal(p.counts.get(0), 8n);
      clearInterval(beat);
      await until("DETACHED once the heartbeat stops", () => p.area.attachResult(p.attach).result === AgentResult.DETACHED, 6000);
      assert.match(p.area.attachResult(p.attach).message, /controller is gone/);
      await ns.quit();
    } finally {
      clearInterval(beat);
    }
  });

  it("injected into a running target (not preloaded), bh_agent_attach_region makes it count", async function () {
    const why = ptraceSkipReason();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    const p = plan("inject");
    const t = start({});
    await t.waitFor(/^ready$/m);
    t.send("w 5");
    await t.waitFor(/^did 5$/m);
    const r = injectLibrary(t.pid, AGENT_SO, { callSymbol: "bh_agent_attach_region", callArg: p.region.name });
    assert.equal(r.called, true);
    assert.equal(r.callRet, 0);
    await until("ATTACHED", () => p.area.attachResult(p.attach).result === AgentResult.ATTACHED);
    assert.equal(p.area.attachResult(p.attach).pid, t.pid);
    t.send("w 40");
    await t.waitFor(/^did 40$/m);
    assert.equal(p.counts.get(0), 40n);
    // A second injection reuses the loaded agent and calls it again.
    const r2 = injectLibrary(t.pid, AGENT_SO, { callSymbol: "bh_agent_attach_region", callArg: "relative" });
    assert.equal(r2.reused, true);
    assert.equal(r2.callRet, -22);
    await expectError(
      () => injectLibrary(t.pid, AGENT_SO, { callSymbol: "bh_agent_no_such_function", callArg: "x" }),
      "INJECT_FAILED",
      /exports no function 'bh_agent_no_such_function'/,
    );
    // Switching regions: the old region's probes go, the new plan applies.
    const p2 = plan("inject2");
    const r3 = injectLibrary(t.pid, AGENT_SO, { callSymbol: "bh_agent_attach_region", callArg: p2.region.name });
    assert.equal(r3.callRet, 0);
    await until("ATTACHED in the new region", () => p2.area.attachResult(p2.attach).result === AgentResult.ATTACHED);
    await until("DETACHED in the old one", () => p.area.attachResult(p.attach).result === AgentResult.DETACHED);
    assert.match(p.area.attachResult(p.attach).message, /switched to another region/);
    t.send("w 6");
    await t.waitFor(/^did 6$/m);
    assert.equal(p.counts.get(0), 40n);
    assert.equal(p2.counts.get(0), 6n);
    await t.quit();
    assert.equal(t.status, 0);
  });
});
