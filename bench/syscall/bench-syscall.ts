/**
 * npm run bench:syscall — cost per call of system-call tracing in user space,
 * in one run: a getppid() loop (libc's own `mov $110,%eax; syscall` site) run
 * natively in the test addon (test/native/addon/syscalls.cpp), so Node's
 * overhead is out of it. Each mechanism runs in its own child process (the
 * transformer is process-wide):
 *
 *   plain           no transformer
 *   untraced        transformer installed (a program on getpid), getppid not of interest
 *   traced_empty    a program on sys_enter_getppid that only counts its hits (plain add)
 *   traced_counter  bench.bpf.c's counter: array-map lookup + atomic add
 *   traced_enter_exit  traced_raw_empty's program on sys_enter and sys_exit
 *   sud_trap        traced_empty with Syscall User Dispatch forced (every call traps)
 *
 * "auto" lets the transformer choose (rel32, page 0 with root, SUD for the
 * rest); "rel32" and "page0" allow that mechanism alone (sites it cannot
 * patch stay untraced, and SUD stays off), "sud" forces SUD.
 *   kernel_tracepoint  the kernel's own tracepoint through bpftrace (root), or null
 *
 * Every traced row checks that its program ran exactly once per call. A
 * traced row alternates: a run with its program attached, then one without
 * (detached), RUNS times; its added ns is the median of those paired
 * differences (every row under sud, where untraced calls trap too, against
 * `plain`, measured before the transformer was installed). The untraced row
 * pairs runs with the transformer installed and runs after it was
 * uninstalled. Prints a table per mechanism, then one JSON
 * line of medians (ns per call) with the added ns under "added".
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { assembleBytes, compileBpfC, Runtime, type BpfMap, type Link } from "@bpfhook/core";
import { Mechanism, setMechanisms, syscallTraceStats } from "@bpfhook/plugin-syscall-trace";
import { fixed, formatTable, median, relativeIqr } from "../common/stats.js";
import { repoRoot } from "../common/targets.js";

// RUNS, CALLS and MECHS (a comma list of auto, rel32, page0, sud) from the
// environment for ad hoc comparisons; the defaults are the documented run.
const RUNS = Number(process.env.RUNS ?? 11);
const CALLS = Number(process.env.CALLS ?? 1_000_000);
const MECHS = (process.env.MECHS ?? "auto,rel32,page0,sud").split(",");
const SUD_CALLS = 20_000;
const KERNEL_RUNS = 5;
const KERNEL_CALLS = 200_000;
const PLUGIN = "@bpfhook/plugin-syscall-trace";

interface Loop {
  getppidLoop(iterations: number): number;
}
const addon = (): Loop => require(path.join(repoRoot, "test", "native", "build", "Release", "testaddon.node")) as Loop;

/** hits[0] += 1, no helper: the "empty" program that proves it ran. */
const COUNTING_EMPTY = assembleBytes(`
  lddw %r1, map_value 0, 0
  ldxdw %r2, [%r1+0]
  add %r2, 1
  stxdw [%r1+0], %r2
  mov %r0, 0
  exit
`);

function measure(loop: Loop, runs: number, calls: number): { median: number; iqr: number } {
  loop.getppidLoop(Math.max(1, Math.floor(calls / 10))); // warm-up
  const samples = Array.from({ length: runs }, () => loop.getppidLoop(calls));
  return { median: median(samples), iqr: relativeIqr(samples) };
}
const callsOf = (runs: number, calls: number) => BigInt(Math.max(1, Math.floor(calls / 10)) + runs * calls);
/** A row's added ns: paired where measured so, else against the child's plain run. */
const addedOf = (r: Row, plain: number) => r.added ?? r.ns - plain;

/** `added`: the median of paired differences against untraced runs (traced rows). */
type Row = { key: string; ns: number; iqr: number; added?: number };

/** One mechanism, in this (child) process. */
async function child(mech: string): Promise<void> {
  const loop = addon();
  const bits = { auto: Mechanism.AUTO, rel32: Mechanism.REL32, page0: Mechanism.PAGE0, sud: Mechanism.SUD }[mech];
  if (bits === undefined) throw new Error(`unknown mechanism '${mech}'`);
  const calls = mech === "sud" ? SUD_CALLS : CALLS;
  const rows: Row[] = [];
  const plain = measure(loop, RUNS, calls);
  rows.push({ key: "plain", ns: plain.median, iqr: plain.iqr });

  const rt = await Runtime.create({ plugins: [PLUGIN], resolveFrom: repoRoot });
  setMechanisms(rt, bits);
  const obj = rt.load(compileBpfC(path.join(repoRoot, "test", "fixtures", "syscall", "bench.bpf.c"), { out: path.join(tmp(), "bench.bpf.o") }));
  const raw = rt.load({
    programs: [
      { name: "counting_empty", insns: COUNTING_EMPTY },
      { name: "other", insns: assembleBytes("mov %r0, 0\nexit") },
    ],
    maps: [{ name: "hits", type: 2, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, section: "code" }],
  });
  const key0 = Buffer.alloc(4);
  const hits = () => raw.map<BpfMap<Buffer, Buffer>>("hits").get(key0)!.readBigUInt64LE(0);
  const calls0 = () => obj.map<BpfMap<number, bigint>>("calls").get(0) ?? 0n;
  const emptyHits = () => (obj.map<BpfMap<number, Buffer>>(".bss").get(0) as unknown as Buffer).readBigUInt64LE(0);
  const enter = (syscall: string) => ({ type: "syscall_trace", data: { direction: "enter", syscall } });

  // Paired rounds: each run with the attachment is followed by one without
  // it in the same process, and the row's added cost is the median of the
  // differences. Runs minutes apart on this kind of machine differ by
  // several ns (frequency, neighbours); pairs cancel that. `paired` false:
  // the row's cost is against plain instead (under SUD, where the runs
  // without a traced program trap too).
  const run = async (key: string, attach: () => Promise<Link>, counter?: () => bigint, paired = mech !== "sud") => {
    const traced: number[] = [];
    const diffs: number[] = [];
    let fired = 0n;
    loop.getppidLoop(Math.max(1, Math.floor(calls / 10))); // warm-up, without
    for (let r = 0; r < RUNS; r++) {
      const link = await attach();
      const before = counter?.();
      const t = loop.getppidLoop(calls);
      if (counter !== undefined) fired += counter() - before!;
      link.detach();
      const u = loop.getppidLoop(calls);
      traced.push(t);
      diffs.push(t - u);
    }
    if (counter !== undefined && fired !== BigInt(RUNS * calls)) {
      throw new Error(`${key}: the program ran ${fired} times for ${RUNS * calls} calls`);
    }
    rows.push({ key, ns: median(traced), iqr: relativeIqr(traced), added: paired ? median(diffs) : undefined });
  };

  // The transformer installed by a program on another call: getppid
  // untraced, paired with runs after it was uninstalled (its last
  // attachment detached: plain runs), under every mechanism.
  const attachOther = () => raw.program("other").attach(enter("getpid"));
  await run("untraced", attachOther, undefined, true);
  const other = await attachOther();
  let error: string | undefined;
  let stats;
  try {
    stats = syscallTraceStats(rt);
    await run("traced_empty", () => obj.program("empty").attach(enter("getppid")), emptyHits);
    await run("traced_raw_empty", () => raw.program("counting_empty").attach(enter("getppid")), hits);
    await run("traced_counter", () => obj.program("counter").attach(enter("getppid")), calls0);
    // The counting program on sys_enter_getppid and on sys_exit_getppid:
    // both round trips (hits counts two per call).
    const exit = (syscall: string) => ({ type: "syscall_trace", data: { direction: "exit", syscall } });
    await run(
      "traced_enter_exit",
      async () => {
        const links = [await raw.program("counting_empty").attach(enter("getppid")), await raw.program("counting_empty").attach(exit("getppid"))];
        return { detach: () => links.forEach((l) => l.detach()) } as unknown as Link;
      },
      () => hits() / 2n,
    );
  } catch (e) {
    error = (e as Error).message;
  }
  other.detach();
  rt.close();
  console.log(JSON.stringify({ mech, rows, stats, error }));
}

/**
 * The run's scratch folder: made by the parent, which removes it when it
 * exits; its children (one per mechanism, any of which may crash) get it
 * through BH_BENCH_SYSCALL_DIR.
 */
let tmpDir: string | undefined = process.env["BH_BENCH_SYSCALL_DIR"];
function tmp(): string {
  if (tmpDir === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-bench-syscall-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    tmpDir = dir;
  }
  return tmpDir;
}

/** The kernel's tracepoint through bpftrace while the loop runs here; a reason where it cannot. */
async function kernelTracepoint(loop: Loop): Promise<{ ns: number | null; note: string }> {
  if (process.getuid?.() !== 0) return { ns: null, note: "not root" };
  const probe = spawnSync("bpftrace", ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) return { ns: null, note: "bpftrace not installed" };
  // The kernel's syscall tracepoints need tracefs; these machines boot without it mounted.
  let mounted = "";
  if (!existsSync("/sys/kernel/tracing/events/syscalls")) {
    const m = spawnSync("mount", ["-t", "tracefs", "nodev", "/sys/kernel/tracing"], { encoding: "utf8" });
    if (m.status !== 0) return { ns: null, note: `tracefs is not mounted and mounting it failed: ${(m.stderr || "").trim()}` };
    mounted = "tracefs mounted at /sys/kernel/tracing for the measurement, unmounted after";
  }
  const pid = process.pid;
  const child = spawn("bpftrace", ["-e", `tracepoint:syscalls:sys_enter_getppid /pid == ${pid}/ { @hits = count(); }`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const attached = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 20_000);
    const onData = (c: Buffer) => {
      out += c.toString();
      if (out.includes("Attaching")) {
        clearTimeout(timer);
        setTimeout(() => resolve(true), 1000);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (!attached) {
    child.kill("SIGKILL");
    if (mounted !== "") spawnSync("umount", ["/sys/kernel/tracing"]);
    // bpftrace warns about RLIMIT_MEMLOCK first even when it can attach: name the real error.
    const lines = out.trim().split("\n").filter((l) => l.trim() !== "");
    const why = lines.find((l) => /ERROR/.test(l) && !/RLIMIT_MEMLOCK/.test(l)) ?? lines[0] ?? "no output";
    return { ns: null, note: `bpftrace could not attach: ${why}` };
  }
  const m = measure(loop, KERNEL_RUNS, KERNEL_CALLS);
  const counted = await new Promise<bigint | null>((done) => {
    child.once("exit", () => {
      const hit = /@hits:\s*(\d+)/.exec(out);
      done(hit ? BigInt(hit[1]!) : null);
    });
    child.kill("SIGINT");
  });
  if (mounted !== "") spawnSync("umount", ["/sys/kernel/tracing"]);
  const expected = callsOf(KERNEL_RUNS, KERNEL_CALLS);
  if (counted !== expected) return { ns: null, note: `bpftrace counted ${counted ?? "no"} hits for ${expected} calls` };
  return { ns: m.median, note: mounted };
}

async function main(): Promise<void> {
  const mechIndex = process.argv.indexOf("--child");
  if (mechIndex >= 0) return child(process.argv[mechIndex + 1] ?? "auto");

  const results: Record<string, { rows: Row[]; stats?: Record<string, number | boolean>; error?: string }> = {};
  for (const mech of MECHS) {
    const r = spawnSync(process.execPath, [__filename, "--child", mech], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, BH_BENCH_SYSCALL_DIR: tmp() },
    });
    const line = r.stdout.trim().split("\n").pop() ?? "";
    try {
      results[mech] = JSON.parse(line);
    } catch {
      results[mech] = { rows: [], error: `child exited ${r.status}: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}` };
    }
  }
  const kernel = await kernelTracepoint(addon());

  const get = (mech: string, key: string) => results[mech]?.rows.find((r) => r.key === key)?.ns;
  const added = (mech: string, key: string) => {
    const row = results[mech]?.rows.find((r) => r.key === key);
    const plain = get(mech, "plain");
    return row === undefined || plain === undefined ? undefined : addedOf(row, plain);
  };
  for (const [mech, r] of Object.entries(results)) {
    const s = r.stats;
    const sites = s ? `; sites: ${s.sitesFound} found, ${s.sitesRel32} rel32, ${s.sitesPage0} page0, ${s.sitesSud} sud, ${s.sitesUntouched} untouched; mechanisms ${s.mechanisms}` : "";
    console.log(`\n${mech}${sites}`);
    if (r.error) console.log(`  error: ${r.error}`);
    const plain = get(mech, "plain") ?? 0;
    if (r.rows.length > 0) {
      console.log(
        formatTable(
          ["getppid()", "ns/call", "added ns", "iqr/median"],
          r.rows.map((x) => [x.key, fixed(x.ns, 1), x.key === "plain" ? "-" : fixed(addedOf(x, plain), 1), `${fixed(x.iqr * 100, 1)}%`]),
        ),
      );
    }
  }
  console.log(`\nkernel tracepoint: ${kernel.ns === null ? `null (${kernel.note})` : `${fixed(kernel.ns, 1)} ns/call${kernel.note ? ` (${kernel.note})` : ""}`}`);
  console.log(`median of ${RUNS} runs x ${CALLS} calls (sud: x ${SUD_CALLS}); traced rows' added ns: median of ${RUNS} paired differences against untraced runs between them`);
  const n = (v: number | undefined) => (v === undefined ? null : Number(v.toFixed(2)));
  const json: Record<string, unknown> = {
    plain: n(get("auto", "plain")),
    untraced: n(get("auto", "untraced")),
    traced_empty: n(get("auto", "traced_empty")),
    traced_counter: n(get("auto", "traced_counter")),
    sud_trap: n(get("sud", "traced_empty")),
    kernel_tracepoint: kernel.ns === null ? null : n(kernel.ns),
    added: {
      untraced: n(added("auto", "untraced")),
      traced_empty: n(added("auto", "traced_empty")),
      traced_counter: n(added("auto", "traced_counter")),
      sud_trap: n(added("sud", "traced_empty")),
    },
    mechanisms: Object.fromEntries(
      ["rel32", "page0", "sud"].map((m) => [
        m,
        {
          plain: n(get(m, "plain")),
          untraced: n(get(m, "untraced")),
          traced_empty: n(get(m, "traced_empty")),
          traced_counter: n(get(m, "traced_counter")),
          added: { untraced: n(added(m, "untraced")), traced_empty: n(added(m, "traced_empty")), traced_counter: n(added(m, "traced_counter")) },
        },
      ]),
    ),
  };
  console.log(`\n${JSON.stringify(json)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
