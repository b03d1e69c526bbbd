/**
 * Agent mode end to end, through the CLI as an operator runs it: real C
 * programs built here, started under `bpfhook run` or attached to with
 * `bpfhook attach -p`, probes on their own function and on libc, maps read
 * live while they run (`bpfhook maps -p`), `-j` output parsed, and the
 * failures: a crashing target, a killed controller, a bad config, a missing
 * symbol, a full region, a refused ptrace.
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { removeTempDir } from "./support/tmp.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
const fixtures = path.resolve(__dirname, "..", "fixtures", "agent");

interface JsonLine {
  type: string;
  data: any;
}

/** `bpfhook ARGS` to the end, bounded. */
function bpfhook(args: string[], timeout = 30_000) {
  return spawnSync(process.execPath, [cli, ...args], { cwd: repoRoot, encoding: "utf8", timeout });
}

function jsonLines(stdout: string): JsonLine[] {
  return stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      try {
        return JSON.parse(l) as JsonLine;
      } catch {
        assert.fail(`not a JSON line: ${l}\nstdout:\n${stdout}`);
      }
    });
}

function mapEntries(lines: JsonLine[], name: string): Map<number, number> {
  const m = lines.find((l) => l.type === "map" && l.data.name === name);
  assert.ok(m, `no map '${name}' in ${JSON.stringify(lines)}`);
  return new Map(m.data.entries.map((e: { key: number; value: number }) => [e.key, e.value]));
}

/** A long-running command (bpfhook or the victim), its output collected. */
class Proc {
  readonly child: ChildProcess;
  out = "";
  err = "";
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done = false;

  constructor(file: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(file, args, { env, cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (d: string) => (this.out += d));
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.err += d));
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code, signal) => {
        this.done = true;
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  async waitFor(re: RegExp, ms = 15_000, where: "out" | "err" = "out"): Promise<RegExpMatchArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = (where === "out" ? this.out : this.err).match(re);
      if (m) return m;
      if (this.done) assert.fail(`exited before ${re}; stdout:\n${this.out}\nstderr:\n${this.err}`);
      if (Date.now() > end) assert.fail(`no ${re} within ${ms} ms; stdout:\n${this.out}\nstderr:\n${this.err}`);
      await sleep(20);
    }
  }

  kill(sig: NodeJS.Signals = "SIGKILL"): void {
    if (!this.done) this.child.kill(sig);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** agent_work calls counted so far in process `pid`, read live by `bpfhook maps -p`. */
function liveWorkCalls(pid: string): number {
  const r = bpfhook(["maps", "-j", "-p", pid]);
  assert.equal(r.status, 0, r.stderr);
  return mapEntries(jsonLines(r.stdout), "calls").get(0)!;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

/** Regions in /dev/shm created by process `pid`. */
function regionsOf(pid: number): string[] {
  return readdirSync("/dev/shm").filter((n) => n.startsWith(`bpfhook-${pid}-`));
}

describe("61 agent mode: bpfhook run / attach / maps / ps / detach", function () {
  this.timeout(60_000);
  let dir: string;
  let victim: string;
  let object: string;
  const procs: Proc[] = [];

  function start(file: string, args: string[]): Proc {
    const p = new Proc(file, args);
    procs.push(p);
    return p;
  }

  before(function () {
    skipWithoutClang(this);
    if (spawnSync("gcc", ["--version"]).status !== 0) {
      console.log("      skipped: gcc not found (the test programs are C)");
      this.skip();
    }
    dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-agent-"));
    victim = path.join(dir, "agent_victim");
    const cc = spawnSync("gcc", ["-O1", "-g", "-o", victim, path.join(fixtures, "victim.c")], { encoding: "utf8" });
    assert.equal(cc.status, 0, cc.stderr);
    object = path.join(dir, "count.bpf.o");
    copyFileSync(compileFixture("agent/count.bpf.c"), object);
    copyFileSync(path.join(fixtures, "count.yaml"), path.join(dir, "count.yaml"));
  });

  /** Programs started by a bpfhook run of a test: they may outlive it (and hold this test's pipes). */
  const programs: number[] = [];
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill();
    for (const pid of programs.splice(0)) killQuietly(pid);
  });
  after(() => removeTempDir(dir));

  it("run -j: probes on the program's own function and on libc are in place before main; events, printk, maps, exit", () => {
    const r = bpfhook(["run", "-j", object, "--", victim, "50", "0"]);
    assert.equal(r.status, 7, `exit status is the command's\n${r.stdout}\n${r.stderr}`);
    const lines = jsonLines(r.stdout);
    const attached = lines.filter((l) => l.type === "attached");
    assert.deepEqual(attached.map((l) => l.data.program).sort(), ["on_malloc", "on_work", "on_work_ret"]);
    const work = attached.find((l) => l.data.program === "on_work")!;
    assert.equal(work.data.attach, "uprobe");
    assert.match(work.data.target, /agent_victim:agent_work/);
    const pid = Number(/main (\d+)/.exec(r.stderr)?.[1]);
    assert.ok(pid > 0, `with -j the command's stdout goes to stderr: ${r.stderr}`);
    assert.equal(work.data.pid, pid);

    const printk = lines.filter((l) => l.type === "printk");
    assert.deepEqual(
      printk.map((l) => l.data.message),
      ["agent_work(0) call 1", "agent_work(1) call 2", "agent_work(2) call 3"],
      "the first calls of main were probed: the agent attached before main",
    );
    assert.ok(printk.every((l) => l.data.pid === pid));
    const perf = lines.filter((l) => l.type === "event" && l.data.map === "perf_events");
    assert.deepEqual(
      perf.map((l) => l.data.value),
      [{ pid, arg: 24 * 2 + 1, count: 25 }, { pid, arg: 49 * 2 + 1, count: 50 }],
      "perf buffer records, decoded too",
    );
    assert.ok(perf.every((l) => Number.isInteger(l.data.cpu)), "perf records say their CPU");
    const events = lines.filter((l) => l.type === "event" && l.data.map === "events");
    assert.deepEqual(
      events.map((l) => l.data.value),
      [1, 2, 3, 4, 5].map((k) => ({ pid, arg: k * 10 - 1, count: k * 10 })),
      "ring buffer records decoded with the object's struct event (BTF)",
    );
    const calls = mapEntries(lines, "calls");
    assert.equal(calls.get(0), 50, "every agent_work call counted");
    assert.equal(calls.get(2), 50, "every return counted");
    assert.ok(calls.get(1)! >= 50, `malloc counted (${calls.get(1)})`);
    assert.deepEqual(lines[lines.length - 1], { type: "exit", data: { status: 7 } });
    assert.deepEqual(regionsOf(r.pid!), [], "the region is removed when bpfhook ends");
  });

  it("run (human output): the program's output, trace_printk lines, the maps at the end", () => {
    const r = bpfhook(["run", "-q", object, "--", victim, "5", "0"]);
    assert.equal(r.status, 7, r.stderr);
    assert.match(r.stdout, /^main \d+$/m);
    assert.match(r.stdout, /^\[\d+\] agent_work\(0\) call 1$/m);
    assert.match(r.stdout, /^map calls \(array, 4 entries\):\n {2}0: 5\n {2}1: \d+\n {2}2: 5\n/m);
    assert.match(r.stderr, /attached uprobe \S*agent_victim:agent_work.* \(prog on_work\) in process \d+/);
    assert.match(r.stderr, /command exited with status 7/);
  });

  it("run -c CONFIG: the config chooses what attaches (attach: false leaves malloc alone)", () => {
    const r = bpfhook(["run", "-j", "-c", path.join(dir, "count.yaml"), "--", victim, "20", "0"]);
    assert.equal(r.status, 7, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.deepEqual(lines.filter((l) => l.type === "attached").map((l) => l.data.program).sort(), ["on_work", "on_work_ret"]);
    const calls = mapEntries(lines, "calls");
    assert.equal(calls.get(0), 20);
    assert.equal(calls.get(1), 0, "malloc was not attached");
  });

  it("fork: the child keeps the probes and shares the maps; exec with the preload inherited attaches the new image", () => {
    const f = bpfhook(["run", "-j", object, "--", victim, "20", "0", "fork"]);
    assert.equal(f.status, 7, f.stderr);
    assert.equal(mapEntries(jsonLines(f.stdout), "calls").get(0), 40, "parent 20 + child 20");
    const e = bpfhook(["run", "-j", object, "--", victim, "20", "0", "exec"]);
    assert.equal(e.status, 7, e.stderr);
    assert.equal(mapEntries(jsonLines(e.stdout), "calls").get(0), 40, "before exec 20 + the new image 20");
  });

  it("maps -p reads the maps live while the program runs; ps lists it; detach -p stops the probes and leaves it running", async () => {
    const run = start(process.execPath, [cli, "run", "-j", object, "--", victim, "-1", "5"]);
    await run.waitFor(/"type":"attached".*on_work"/);
    const pid = (await run.waitFor(/main (\d+)/, 15_000, "err"))[1]!;
    programs.push(Number(pid));
    const read = () => liveWorkCalls(pid);
    const a = read();
    await sleep(300);
    const b = read();
    assert.ok(b > a, `the count grows while the program runs (${a} then ${b})`);

    const ps = bpfhook(["ps", "-j"]);
    assert.equal(ps.status, 0, ps.stderr);
    const mine = jsonLines(ps.stdout).find((l) => l.data.processes.some((p: { pid: number }) => p.pid === Number(pid)));
    assert.ok(mine, ps.stdout);
    assert.equal(mine.data.controller, run.pid);
    const proc = mine.data.processes.find((p: { pid: number }) => p.pid === Number(pid));
    assert.equal(proc.state, "running");
    assert.equal(proc.attached, 3);

    const d = bpfhook(["detach", "-p", pid]);
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, /detached 3 attachments from process \d+/);
    const c = read();
    await sleep(300);
    assert.equal(read(), c, "no more counting after detach");
    assert.ok(alive(Number(pid)), "the program keeps running");
    process.kill(Number(pid), "SIGTERM");
    const st = await run.exited;
    assert.equal(st.code, 128 + 15, run.err);
    assert.match(run.out, /"type":"exit","data":\{"status":143\}/);
  });

  it("attach -p: injects into a running program, counts, detaches at --duration and leaves it running; a second attach reuses the agent", async () => {
    const v = start(victim, ["-1", "2"]);
    const pid = String(v.pid);
    await v.waitFor(/main \d+/);
    for (const round of [1, 2]) {
      const r = bpfhook(["attach", "-j", "-p", pid, "--duration", "0.5", object]);
      assert.equal(r.status, 0, `round ${round}: ${r.stdout}\n${r.stderr}`);
      const lines = jsonLines(r.stdout);
      assert.equal(lines.filter((l) => l.type === "attached").length, 3, r.stdout);
      const calls = mapEntries(lines, "calls");
      assert.ok(calls.get(0)! > 10, `round ${round}: agent_work counted while attached (${calls.get(0)})`);
      assert.ok(calls.get(1)! > 10, `round ${round}: malloc counted (${calls.get(1)})`);
      assert.ok(alive(v.pid), "the program keeps running after detach");
    }
    const maps = readFileSync(`/proc/${pid}/maps`, "utf8").split("\n").filter((l) => l.includes("libbpfhook_agent.so"));
    assert.ok(maps.length > 0, "the agent stays loaded");
    assert.equal(new Set(maps.map((l) => l.split(/\s+/)[4])).size, 1, "loaded once (reused), not twice");
  });

  it("a crash of the target: bpfhook prints the maps, exits with 128+signal, removes its region", () => {
    const r = bpfhook(["run", "-j", object, "--", victim, "10", "0", "crash"]);
    assert.equal(r.status, 128 + 11, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.equal(mapEntries(lines, "calls").get(0), 10);
    assert.deepEqual(lines[lines.length - 1], { type: "exit", data: { status: 139 } });
    assert.deepEqual(regionsOf(r.pid!), []);
  });

  it("a killed controller: the program keeps running without its probes; ps shows the region as gone and clean removes it", async () => {
    const run = start(process.execPath, [cli, "run", "-j", object, "--", victim, "-1", "5"]);
    await run.waitFor(/"type":"attached"/);
    const pid = Number((await run.waitFor(/main (\d+)/, 15_000, "err"))[1]);
    programs.push(pid);
    try {
      run.kill("SIGKILL");
      await run.exited;
      await sleep(600); // agents check the controller every 200 ms
      assert.ok(alive(pid), "the program survives its controller");
      const ps = jsonLines(bpfhook(["ps", "-j"]).stdout).find((l) => l.data.controller === run.pid);
      assert.ok(ps, "ps still finds the region of the dead controller");
      assert.equal(ps.data.controllerAlive, false);
      assert.equal(ps.data.processes.find((p: { pid: number }) => p.pid === pid).attached, 0, "the agent detached its probes");
      const clean = bpfhook(["clean"]);
      assert.equal(clean.status, 0, clean.stderr);
      assert.deepEqual(regionsOf(run.pid), []);
    } finally {
      killQuietly(pid);
    }
  });

  it("--keep-probes: after the controller dies the probes keep counting, a new runtime's clean-up spares the region, maps -p reads it, clean removes it", async () => {
    const run = start(process.execPath, [cli, "run", "-j", "--keep-probes", object, "--", victim, "-1", "5"]);
    await run.waitFor(/"type":"attached"/);
    const pid = (await run.waitFor(/main (\d+)/, 15_000, "err"))[1]!;
    // The program outlives its controller and holds this test's pipes: it must die whatever happens.
    try {
      run.kill("SIGKILL");
      await run.exited;
      // Any runtime created now cleans stale regions: this one has a live agent.
      const rt = spawnSync(process.execPath, ["-e", "require('@bpfhook/core').Runtime.create().then((r) => r.close())"], { cwd: repoRoot, encoding: "utf8" });
      assert.equal(rt.status, 0, rt.stderr);
      assert.equal(regionsOf(run.pid).length, 1, "the region of a dead controller whose agent runs is kept");
      const read = () => liveWorkCalls(pid);
      const a = read();
      await sleep(300);
      assert.ok(read() > a, "still counting without a controller");
      const clean = bpfhook(["clean"]);
      assert.equal(clean.status, 0, clean.stderr);
      assert.deepEqual(regionsOf(run.pid), [], "bpfhook clean removes it");
    } finally {
      killQuietly(Number(pid));
    }
  });

  it("an agent that dies during the attach (its process with it): bpfhook reports which attachments have no answer, exits 1, removes its region", () => {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [cli, "run", "-j", object, "--", victim, "5", "0"], {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, BPFHOOK_AGENT_FAULT: "1" },
    });
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.ok(Date.now() - t0 < 10_000, "nothing waited for the dead agent's bound");
    const err = jsonLines(r.stdout).find((l) => l.type === "error");
    assert.ok(err, r.stdout);
    assert.match(err.data.message, /no agent answered/);
    assert.doesNotMatch(r.stderr, /^main /m, "the program died before main");
    assert.deepEqual(regionsOf(r.pid!), []);
  });

  it("errors: a bad config names file:line:column; a missing symbol names it and leaves no process behind; exit 1 and a JSON error", () => {
    const bad = path.join(dir, "bad.yaml");
    writeFileSync(bad, "objects:\n  - path: count.bpf.o\n    progams: {}\n");
    const r = bpfhook(["run", "-j", "-c", bad, "--", victim, "1", "0"]);
    assert.equal(r.status, 1);
    const err = jsonLines(r.stdout).find((l) => l.type === "error");
    assert.ok(err, r.stdout);
    assert.match(err.data.message, /bad\.yaml:3:5: .*progams/);

    const missing = path.join(dir, "missing.yaml");
    writeFileSync(
      missing,
      [
        "plugins: ['@bpfhook/plugin-frida-uprobe']",
        "objects:",
        "  - path: count.bpf.o",
        "    programs:",
        "      on_malloc: { attach: false }",
        "      on_work_ret: { attach: false }",
        "      on_work: { attach: { type: uprobe, module: agent_victim, symbol: no_such_function } }",
        "",
      ].join("\n"),
    );
    const m = bpfhook(["run", "-c", missing, "--", victim, "1", "0"]);
    assert.equal(m.status, 1, m.stdout);
    assert.match(m.stderr, /missing\.yaml:7:\d+: .*no_such_function/);
    assert.doesNotMatch(m.stdout + m.stderr, /^main /m, "the program never reached main");

    const nothing = bpfhook(["run", "--", victim]);
    assert.equal(nothing.status, 1);
    assert.match(nothing.stderr, /give a config \(-c\) or objects/);
    const nocmd = bpfhook(["run", object]);
    assert.equal(nocmd.status, 1);
    assert.match(nocmd.stderr, /give the command after '--'/);
  });

  it("errors: a region too small for the maps is refused with the sizes; a missing command is named", () => {
    const r = bpfhook(["run", "--region-size", "200000", object, "--", victim, "1", "0"]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /region|ENOMEM|no room|full/i);
    const n = bpfhook(["run", object, "--", path.join(dir, "no-such-program")]);
    assert.equal(n.status, 1);
    assert.match(n.stderr, /cannot start \S*no-such-program: no such file/);
  });

  it("errors: attach to a process another tracer holds is refused and names the tracer; a missing pid is named", async function () {
    const v = start(victim, ["-1", "5"]);
    await v.waitFor(/main \d+/);
    const tracerSrc = path.resolve(__dirname, "..", "fixtures", "inject", "tracer.c");
    const tracer = path.join(dir, "tracer");
    if (!existsSync(tracer)) assert.equal(spawnSync("gcc", ["-O2", "-o", tracer, tracerSrc]).status, 0);
    const t = start(tracer, [String(v.pid)]);
    const line = await t.waitFor(/^(traced|failed \d+)$/m);
    if (line[1] !== "traced") {
      console.log(`      skipped: the test tracer could not attach (${line[1]})`);
      this.skip();
    }
    const r = bpfhook(["attach", "-p", String(v.pid), object]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`already traced by PID ${t.pid}`));
    assert.ok(alive(v.pid));
    const gone = bpfhook(["attach", "-p", "999999999", object]);
    assert.equal(gone.status, 1);
    assert.match(gone.stderr, /no process 999999999/);
  });

  it("SIGTERM or SIGINT while bpfhook run is starting: the command gets it once it runs, bpfhook exits with its status and removes its region", async () => {
    for (const [sig, n] of [
      ["SIGTERM", 15],
      ["SIGINT", 2],
    ] as const) {
      const run = start(process.execPath, [cli, "run", "-j", object, "--", victim, "-1", "5"]);
      // The region exists from the session's start, long before the command's probes are in place.
      const end = Date.now() + 20_000;
      while (regionsOf(run.pid).length === 0) {
        if (run.done || Date.now() > end) assert.fail(`no region of ${run.pid}; stdout:\n${run.out}\nstderr:\n${run.err}`);
        await sleep(2);
      }
      assert.doesNotMatch(run.out, /"type":"attached"/, "the signal comes while bpfhook is still starting");
      run.kill(sig);
      const st = await run.exited;
      assert.deepEqual(st, { code: 128 + n, signal: null }, `${sig}: bpfhook ends with the command's status\nstdout:\n${run.out}\nstderr:\n${run.err}`);
      assert.deepEqual(jsonLines(run.out).pop(), { type: "exit", data: { status: 128 + n } });
      assert.deepEqual(regionsOf(run.pid), [], `${sig}: the region is removed`);
    }
  });

  it("SIGINT while bpfhook attach is attaching: it detaches once attached, exits 0, removes its region; the program runs on", async () => {
    const v = start(victim, ["-1", "2"]);
    await v.waitFor(/main \d+/);
    const at = start(process.execPath, [cli, "attach", "-j", "-p", String(v.pid), object]);
    const end = Date.now() + 20_000;
    while (regionsOf(at.pid).length === 0) {
      if (at.done || Date.now() > end) assert.fail(`no region of ${at.pid}; stdout:\n${at.out}\nstderr:\n${at.err}`);
      await sleep(2);
    }
    assert.doesNotMatch(at.out, /"type":"attached"/, "the signal comes while bpfhook is still attaching");
    at.kill("SIGINT");
    const st = await at.exited;
    assert.deepEqual(st, { code: 0, signal: null }, `stdout:\n${at.out}\nstderr:\n${at.err}`);
    assert.deepEqual(regionsOf(at.pid), [], "the region is removed");
    assert.ok(alive(v.pid), "the program keeps running");
  });

  it("--help for every agent command", () => {
    for (const cmd of ["run", "attach", "detach", "maps", "ps"]) {
      const r = bpfhook([cmd, "--help"]);
      assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`Usage: bpfhook ${cmd}`));
    }
  });
});
