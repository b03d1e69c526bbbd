/**
 * npm run bench:agent — agent mode's figures, in one run:
 *
 * 1. Per-hit cost of the probes of bench:uprobe (uprobe, uretprobe, both,
 *    override, a hash-map counter) on bh_target_empty, with the program
 *    running under the agent (`AgentSession.run`, what `bpfhook run` does):
 *    a C loop in the target times its own calls. The embedded figures of
 *    bench:uprobe are measured in the same run (its script, spawned) and
 *    shown beside them. Each agent row checks that its probe fired once per
 *    call (the programs count into an array map the controller reads).
 * 2. Start-up: wall time from launching `bpfhook run -c ten.yaml -- prog`
 *    (10 programs attached) to the program's main, against launching the
 *    program directly; median of START_RUNS.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AgentSession, compileBpfC } from "@bpfhook/core";
import { fixed, formatTable, median } from "../common/stats.js";
import { repoRoot, targetsLibrary } from "../common/targets.js";

const RUNS = 11;
const CALLS = 2_000_000;
const START_RUNS = 7;
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
const src = path.join(repoRoot, "bench", "agent");

const CASES: { key: string; label: string; programs: string[]; slots: number[] }[] = [
  { key: "call", label: "bare call (no probe)", programs: [], slots: [] },
  { key: "uprobe", label: "uprobe, empty program", programs: ["up"], slots: [0] },
  { key: "uretprobe", label: "uretprobe, empty program", programs: ["uret"], slots: [1] },
  { key: "uprobe_uretprobe", label: "uprobe + uretprobe, empty", programs: ["up2", "uret2"], slots: [2, 3] },
  { key: "override", label: "uprobe_override, not overriding", programs: ["override"], slots: [4] },
  { key: "uprobe_hash_counter", label: "uprobe counting in a hash map", programs: ["hash_counter"], slots: [] },
];
const ALL = ["up", "uret", "up2", "uret2", "override", "hash_counter", ...Array.from({ length: 10 }, (_, i) => `start${i}`)];

/** A config attaching `programs` of probes.bpf.o by section, and nothing else. */
function config(dir: string, name: string, programs: readonly string[]): string {
  const lines = ["plugins: ['@bpfhook/plugin-frida-uprobe']", "objects:", "  - path: probes.bpf.o", "    programs:"];
  for (const p of ALL) if (!programs.includes(p)) lines.push(`      ${p}: { attach: false }`);
  const file = path.join(dir, name);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

async function underAgent(target: string, cfg: string, programs: readonly string[], slots: readonly number[]): Promise<number> {
  let out = "";
  const session = await AgentSession.run({
    config: cfg,
    command: target,
    args: ["loop", String(RUNS), String(CALLS)],
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, LD_LIBRARY_PATH: path.dirname(targetsLibrary) },
  });
  session.child!.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const st = await session.exited;
  try {
    if (st.status !== 0) throw new Error(`bench_target exited with ${st.status}`);
    const obj = session.objects.get("probes")!;
    const bss = obj.map<any>(".bss").get(0) as Buffer;
    const expected = BigInt(CALLS / 10 + RUNS * CALLS);
    for (const s of slots) {
      const n = bss.readBigUInt64LE(s * 8);
      if (n !== expected) throw new Error(`${programs.join("+")}: slot ${s} fired ${n} times for ${expected} calls`);
    }
    if (programs.includes("hash_counter")) {
      const n = BigInt(obj.map<any>("counts").get(0) ?? 0);
      if (n !== expected) throw new Error(`hash_counter fired ${n} times for ${expected} calls`);
    }
  } finally {
    session.close();
  }
  const samples = [...out.matchAll(/^run ([\d.]+)$/gm)].map((m) => Number(m[1]));
  if (samples.length !== RUNS) throw new Error(`expected ${RUNS} runs from bench_target, got:\n${out}`);
  return median(samples);
}

/**
 * ms from spawning `argv` to the "main <ns>" the program prints, and (for
 * bpfhook run with BPFHOOK_TIMING) from the run command's first line to it.
 */
function timeToMain(argv: string[], env: NodeJS.ProcessEnv, split?: number[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.timeOrigin + performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code) => {
      const m = /^main (\d+)$/m.exec(out);
      if (code !== 0 || !m) return reject(new Error(`${argv.join(" ")} exited ${code}:\n${out}\n${err}`));
      const atMain = Number(BigInt(m[1]!) / 1000n) / 1000;
      const action = /^bpfhook-timing action (\d+)$/m.exec(err);
      if (split && action) split.push(atMain - Number(BigInt(action[1]!) / 1000n) / 1000);
      resolve(atMain - t0);
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-bench-agent-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true })); // also after a failure
  const target = path.join(dir, "bench_target");
  const cc = spawnSync(
    "gcc",
    ["-O2", "-o", target, path.join(src, "bench_target.c"), targetsLibrary, `-Wl,-rpath,${path.dirname(targetsLibrary)}`],
    { encoding: "utf8" },
  );
  if (cc.status !== 0) throw new Error(`gcc: ${cc.stderr}`);
  compileBpfC(path.join(src, "probes.bpf.c"), { out: path.join(dir, "probes.bpf.o") });

  console.log("embedded figures: npm run bench:uprobe (same run) ...");
  const embeddedRun = spawnSync(process.execPath, [path.join(repoRoot, "bench", "dist", "uprobe", "bench-uprobe.js")], {
    encoding: "utf8",
  });
  const lastLine = embeddedRun.stdout.trim().split("\n").pop() ?? "{}";
  let embedded: Record<string, number | null> = {};
  try {
    embedded = JSON.parse(lastLine) as Record<string, number | null>;
  } catch {
    console.log(`  bench:uprobe gave no figures (${embeddedRun.stderr.split("\n")[0]})`);
  }

  const rows: string[][] = [];
  const json: Record<string, number | null> = {};
  let bareAgent = 0;
  for (const c of CASES) {
    const ns = await underAgent(target, config(dir, `${c.key}.yaml`, c.programs), c.programs, c.slots);
    if (c.key === "call") bareAgent = ns;
    const emb = embedded[c.key] ?? null;
    rows.push([c.label, fixed(ns, 1), c.key === "call" ? "-" : fixed(ns - bareAgent, 1), emb === null ? "-" : fixed(emb, 1), emb === null ? "-" : fixed(ns / emb, 2)]);
    json[`agent_${c.key}`] = Number(ns.toFixed(2));
  }
  console.log(`\nbh_target_empty called from a C loop in a program under the agent; median of ${RUNS} runs x ${CALLS} calls\n`);
  console.log(formatTable(["probe", "agent ns/call", "added ns", "embedded ns/call", "agent/embedded"], rows));

  const ten = config(dir, "ten.yaml", Array.from({ length: 10 }, (_, i) => `start${i}`));
  const env = { ...process.env, LD_LIBRARY_PATH: path.dirname(targetsLibrary), BPFHOOK_TIMING: "1" };
  const direct: number[] = [];
  const viaRun: number[] = [];
  const afterLoad: number[] = [];
  await timeToMain([process.execPath, cli, "run", "-q", "-c", ten, "--", target, "start"], env); // warm the page cache
  for (let i = 0; i < START_RUNS; i++) {
    direct.push(await timeToMain([target, "start"], env));
    viaRun.push(await timeToMain([process.execPath, cli, "run", "-q", "-c", ten, "--", target, "start"], env, afterLoad));
  }
  const nodeOnly: number[] = [];
  for (let i = 0; i < START_RUNS; i++) nodeOnly.push(await timeToMain([process.execPath, "-e", "console.log('main ' + BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)))"], env));
  console.log(`\nstart-up, median of ${START_RUNS} (ms from launch to the program's main):`);
  console.log(
    formatTable(
      ["launch", "ms"],
      [
        ["program alone", fixed(median(direct), 1)],
        ["bpfhook run -c ten.yaml (10 programs attached)", fixed(median(viaRun), 1)],
        ["  of which: from the run command's start (modules loaded) to main", fixed(median(afterLoad), 1)],
        ["(node itself, to its first line)", fixed(median(nodeOnly), 1)],
      ],
    ),
  );
  json.start_direct_ms = Number(median(direct).toFixed(1));
  json.start_run_10_programs_ms = Number(median(viaRun).toFixed(1));
  json.start_node_ms = Number(median(nodeOnly).toFixed(1));
  json.start_run_after_load_ms = Number(median(afterLoad).toFixed(1));
  console.log(`\n${JSON.stringify(json)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
