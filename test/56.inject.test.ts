/**
 * The ptrace injector (core/native/inject, injectLibrary): builds a target
 * program, a library whose constructor writes a marker file and a tiny
 * tracer with gcc, then injects into the running target and checks that it
 * loaded, that the target carries on unharmed (its counter, its interrupted
 * nanosleep restarted with the time left, its vector registers), reuse, and
 * each refusal.
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { injectLibrary } from "@bpfhook/core";
import { expectError } from "./support/expect-error.js";

const fixtures = path.resolve(__dirname, "..", "fixtures", "inject");

/** A spawned program whose stdout lines we collect. */
class Proc {
  readonly child: ChildProcess;
  out = "";
  exited = false;

  constructor(file: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(file, args, { env, stdio: ["ignore", "pipe", "inherit"] });
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (d: string) => (this.out += d));
    this.child.on("exit", () => (this.exited = true));
  }

  get pid(): number {
    return this.child.pid!;
  }

  async waitFor(re: RegExp, ms = 10000): Promise<RegExpMatchArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.out.match(re);
      if (m) return m;
      if (this.exited) assert.fail(`exited before ${re}; output:\n${this.out}`);
      if (Date.now() > end) assert.fail(`no ${re} within ${ms} ms; output:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The last "tick N". */
  ticks(): number {
    const all = [...this.out.matchAll(/^tick (\d+)$/gm)];
    return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}

function procState(pid: number): string {
  // "pid (comm) S ...": the state follows the last ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

describe("56 ptrace injector", function () {
  let dir: string;
  let target: string;
  let lib: string;
  let tracer: string;
  const procs: Proc[] = [];

  function start(mode: "sleep" | "busy"): Proc {
    const p = new Proc(target, [mode], { ...process.env, INJECT_MARKER_DIR: dir });
    procs.push(p);
    return p;
  }

  before(function () {
    const why = skipReason();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-inject-"));
    target = path.join(dir, "target");
    lib = path.join(dir, "libmarker.so");
    tracer = path.join(dir, "tracer");
    gcc(["-O2", "-o", target, path.join(fixtures, "target.c")]);
    gcc(["-O2", "-shared", "-fPIC", "-o", lib, path.join(fixtures, "marker.c")]);
    gcc(["-O2", "-o", tracer, path.join(fixtures, "tracer.c")]);
  });

  afterEach(() => {
    for (const p of procs.splice(0)) p.kill();
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("loads a library into a process sleeping in nanosleep, which restarts with its time left", async () => {
    const p = start("sleep");
    await p.waitFor(/^tick 1$/m);
    const marker = path.join(dir, `marker.${p.pid}`);
    assert.equal(procState(p.pid), "S", "the target should be asleep in nanosleep");
    const r = injectLibrary(p.pid, lib);
    assert.equal(r.reused, false);
    assert.notEqual(r.handle, 0n);
    assert.notEqual(r.base, 0n);
    assert.equal(readFileSync(marker, "utf8"), "loaded 1\n");
    assert.match(readFileSync(`/proc/${p.pid}/maps`, "utf8"), new RegExp(lib.replace(/[.]/g, "\\.")));
    // More injections that run code in the target while it sleeps (the
    // target's dlopen failing), each interrupting a nanosleep.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 70));
      await expectError(() => injectLibrary(p.pid, path.join(dir, "missing.so"), { noPathCheck: true }), "INJECT_FAILED");
    }
    const before = p.ticks();
    await p.waitFor(new RegExp(`^tick ${before + 3}$`, "m"));
    assert.doesNotMatch(p.out, /EINTR|short/, "a sleep was cut short by the injection");
    assert.equal(p.exited, false);
  });

  it("loads a library into a busy process without touching its registers or vector state", async () => {
    const p = start("busy");
    await p.waitFor(/^tick 2$/m);
    assert.equal(procState(p.pid), "R", "the target should be running in user space");
    const r = injectLibrary(p.pid, lib);
    assert.equal(r.reused, false);
    assert.equal(readFileSync(path.join(dir, `marker.${p.pid}`), "utf8"), "loaded 1\n");
    for (let i = 0; i < 4; i++) {
      await expectError(() => injectLibrary(p.pid, path.join(dir, "missing.so"), { noPathCheck: true }), "INJECT_FAILED");
    }
    const before = p.ticks();
    await p.waitFor(new RegExp(`^tick ${before + 5}$`, "m"));
    assert.doesNotMatch(p.out, /fpbad/, "the injection changed the target's floating point state");
  });

  it("reuses a library that is already loaded (same inode) without calling dlopen", async () => {
    const p = start("sleep");
    await p.waitFor(/^ready/m);
    const first = injectLibrary(p.pid, lib);
    const second = injectLibrary(p.pid, lib);
    assert.equal(second.reused, true);
    assert.equal(second.handle, 0n);
    assert.equal(second.base, first.base);
    // The constructor ran once: nothing was loaded again.
    assert.equal(readFileSync(path.join(dir, `marker.${p.pid}`), "utf8"), "loaded 1\n");
  });

  it("gives the target's dlerror text for a missing file and for a file that is not a library", async () => {
    const p = start("sleep");
    await p.waitFor(/^ready/m);
    const missing = path.join(dir, "nope.so");
    const e1 = await expectError(() => injectLibrary(p.pid, missing, { noPathCheck: true }), "INJECT_FAILED", /failed/);
    assert.equal(e1.errno, -8); // ENOEXEC: the target's dlopen returned NULL
    assert.equal(e1.detail.dlerror, `${missing}: cannot open shared object file: No such file or directory`);
    const notLib = path.join(fixtures, "target.c");
    const e2 = await expectError(() => injectLibrary(p.pid, notLib), "INJECT_FAILED", /invalid ELF header/);
    assert.equal(e2.detail.dlerror, `${notLib}: invalid ELF header`);
    // Without noPathCheck a missing file is refused before any ptrace.
    const e3 = await expectError(() => injectLibrary(p.pid, missing), "INJECT_FAILED", /does not exist/);
    assert.equal(e3.errno, -2);
    await p.waitFor(new RegExp(`^tick ${p.ticks() + 2}$`, "m"));
    assert.doesNotMatch(p.out, /EINTR|short/);
    assert.equal(existsSync(path.join(dir, `marker.${p.pid}`)), false);
  });

  it("refuses a pid that does not exist with ESRCH", async () => {
    const dead = spawnSync("true");
    const e = await expectError(() => injectLibrary(dead.pid!, lib), "INJECT_FAILED", /no such process/);
    assert.equal(e.errno, -3);
  });

  it("refuses a target another tracer holds, naming the tracer", async function () {
    const p = start("sleep");
    await p.waitFor(/^ready/m);
    const t = new Proc(tracer, [String(p.pid)]);
    procs.push(t);
    const line = await t.waitFor(/^(traced|failed \d+)$/m);
    if (line[1] !== "traced") {
      console.log(`      skipped: the test tracer could not attach (${line[1]})`);
      this.skip();
    }
    const e = await expectError(
      () => injectLibrary(p.pid, lib),
      "INJECT_FAILED",
      new RegExp(`already traced by PID ${t.pid} \\(tracer\\)`),
    );
    assert.equal(e.errno, -1);
    t.kill();
    await new Promise((r) => t.child.once("exit", r));
    // Free again: the injection works.
    assert.equal(injectLibrary(p.pid, lib).reused, false);
  });
});

function gcc(args: string[]): void {
  const run = spawnSync("gcc", args, { encoding: "utf8" });
  assert.equal(run.status, 0, `gcc ${args.join(" ")}: ${run.stderr}`);
}

/** Why this machine cannot run the suite, or undefined. */
function skipReason(): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") return "the injector is x86-64 Linux only";
  if (process.getuid?.() !== 0) return "not root: ptrace of a sibling process may be forbidden (Yama, CAP_SYS_PTRACE)";
  try {
    if (readFileSync("/proc/sys/kernel/yama/ptrace_scope", "utf8").trim() === "3") return "Yama ptrace_scope=3 forbids ptrace";
  } catch {
    // No Yama: nothing forbids it.
  }
  if (spawnSync("gcc", ["--version"]).status !== 0) return "gcc not found: the target program cannot be built";
  return undefined;
}
