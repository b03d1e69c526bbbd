/**
 * npm run bench:vm: the eBPF VM's JIT and interpreter against the same
 * algorithm compiled by gcc -O2, side by side, on an arithmetic loop (one
 * multiply-add latency chain), a throughput-bound hash mix (independent
 * iterations: shows the emitted code's quality, which a latency chain hides),
 * a memory-heavy loop and a helper-heavy loop.
 *
 * The eBPF programs are bench/vm/programs/*.bpf.c, built with clang -O2
 * -target bpf when the benchmark starts (so the JIT runs real compiler
 * output); the baselines are their C twins in core/native/bench, linked into
 * the addon at -O2. Timing is native (bench_binding.cpp): one call runs a
 * program many times between two clock reads. Per workload and back end: a
 * calibration run, a warm-up sample, then --samples samples interleaved
 * across the back ends; figures are medians in ns per iteration.
 *
 * Prints a table, then one JSON line of the medians as the last line.
 *
 *   npm run bench:vm [-- --samples 11 --sample-ms 50 --check]
 *
 * --check exits 1 when the JIT is not within 2x of gcc on the arithmetic loop.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { fixed, formatTable, median, relativeIqr } from "../common/stats.js";
import { addon, type Addon, type TimedRuns } from "./native.js";
import { buildPrograms, CLANG_FLAGS, findClang, type BuiltProgram } from "./programs.js";
import { WORKLOADS, type Workload } from "./workloads.js";

const BACKENDS = ["gcc", "jit", "interp"] as const;
type Backend = (typeof BACKENDS)[number];

/** The issue's target: the JIT within 2x of gcc -O2 on the arithmetic loop. */
const ARITH_TARGET = 2;
const SEED = 0x243f6a8885a308d3n;

interface Options {
  samples: number;
  sampleNs: number;
  check: boolean;
}

interface Measured {
  workload: Workload;
  program: BuiltProgram;
  /** Program runs per sample, per back end. */
  runs: Record<Backend, number>;
  /** ns per iteration of each sample, per back end. */
  samples: Record<Backend, number[]>;
  r0: bigint;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      samples: { type: "string", default: "11" },
      "sample-ms": { type: "string", default: "50" },
      check: { type: "boolean", default: false },
    },
  });
  const samples = Number(values.samples);
  const sampleMs = Number(values["sample-ms"]);
  if (!Number.isInteger(samples) || samples < 1 || samples > 1001) {
    throw new Error("--samples must be an integer in [1, 1001]");
  }
  if (!(sampleMs > 0 && sampleMs <= 10_000)) throw new Error("--sample-ms must be in (0, 10000]");
  return { samples, sampleNs: sampleMs * 1e6, check: values.check === true };
}

/** `lscpu`'s model name (from /proc/cpuinfo), falling back on what Node reports. */
function cpuModel(): string {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"));
    const model = line?.split(":")[1]?.trim();
    if (model) return model;
  } catch {
    // not Linux: use Node's view
  }
  return os.cpus()[0]?.model ?? "unknown";
}

function runner(native: Addon, w: Workload, p: BuiltProgram, ctx: Uint8Array, backend: Backend): (runs: number) => TimedRuns {
  switch (backend) {
    case "gcc":
      return (runs) => native.vmBenchNative(w.name, ctx, runs);
    case "jit":
      return (runs) => native.vmBenchRun(p.vm, "jit", ctx, runs);
    case "interp":
      return (runs) => native.vmBenchRun(p.vm, "interpreter", ctx, runs);
  }
}

function measure(native: Addon, w: Workload, program: BuiltProgram, opts: Options): Measured {
  const ctx = w.context(SEED);
  const run = Object.fromEntries(BACKENDS.map((b) => [b, runner(native, w, program, ctx, b)])) as Record<
    Backend,
    (runs: number) => TimedRuns
  >;

  // Calibrate: one run each says how many runs fill a sample. All three back
  // ends must agree on r0, or the comparison is meaningless.
  const runs = {} as Record<Backend, number>;
  const r0 = {} as Record<Backend, bigint>;
  for (const b of BACKENDS) {
    const once = run[b](1);
    r0[b] = once.r0;
    runs[b] = Math.min(1e9, Math.max(1, Math.ceil(opts.sampleNs / Math.max(once.ns, 1))));
  }
  if (r0.jit !== r0.gcc || r0.interp !== r0.gcc) {
    throw new Error(`${w.name}: the back ends disagree: gcc ${r0.gcc}, jit ${r0.jit}, interpreter ${r0.interp}`);
  }
  for (const b of BACKENDS) run[b](runs[b]); // warm-up sample, discarded

  // Interleave the back ends sample by sample, rotating who goes first, so
  // that a burst of load from elsewhere hits all three alike.
  const samples: Record<Backend, number[]> = { gcc: [], jit: [], interp: [] };
  for (let s = 0; s < opts.samples; s++) {
    for (let k = 0; k < BACKENDS.length; k++) {
      const b = BACKENDS[(s + k) % BACKENDS.length]!;
      const t = run[b](runs[b]);
      if (t.r0 !== r0.gcc) throw new Error(`${w.name}: ${b} returned ${t.r0}, expected ${r0.gcc}`);
      samples[b].push(t.ns / (runs[b] * w.iterations));
    }
  }
  return { workload: w, program, runs, samples, r0: r0.gcc };
}

function main(): void {
  const opts = options();
  const started = process.hrtime.bigint();
  const clang = findClang();
  if ("reason" in clang) {
    console.log(`bench:vm skipped: ${clang.reason}`);
    console.log(JSON.stringify({ skipped: clang.reason }));
    return;
  }
  const native = addon();
  const info = native.vmBenchInfo();

  console.log("bpfhook VM benchmark: JIT and interpreter vs gcc -O2 (npm run bench:vm)");
  console.log(`  machine   ${cpuModel()}, ${os.availableParallelism()} cores, ${os.type()} ${os.release()}`);
  console.log(`  node      ${process.version}`);
  console.log(`  baseline  ${info.compiler} (core/native/bench)`);
  console.log(`  eBPF      ${clang.version}, ${CLANG_FLAGS.join(" ")} (bench/vm/programs); VM in fast mode (unchecked, no budget)`);
  console.log(`  method    median of ${opts.samples} samples of ~${opts.sampleNs / 1e6} ms after a warm-up, back ends interleaved`);
  console.log("");

  const programs = buildPrograms(clang, WORKLOADS, native);
  const results = WORKLOADS.map((w) => measure(native, w, programs.get(w.name)!, opts));
  for (const p of programs.values()) p.vm.close();

  const med = (m: Measured, b: Backend) => median(m.samples[b]);
  console.log("ns per iteration (median); ratios against gcc -O2 measured in the same run");
  console.log(
    formatTable(
      ["workload", "iteration", "gcc -O2", "JIT", "interp", "JIT/gcc", "interp/gcc", "interp/JIT"],
      results.map((m) => [
        m.workload.name,
        m.workload.unit,
        fixed(med(m, "gcc"), 3),
        fixed(med(m, "jit"), 3),
        fixed(med(m, "interp"), 3),
        `${fixed(med(m, "jit") / med(m, "gcc"), 2)}x`,
        `${fixed(med(m, "interp") / med(m, "gcc"), 1)}x`,
        `${fixed(med(m, "interp") / med(m, "jit"), 1)}x`,
      ]),
    ),
  );
  console.log("");
  for (const m of results) console.log(`  ${m.workload.name.padEnd(8)}${m.workload.what}`);
  console.log("");
  console.log(
    formatTable(
      ["workload", "eBPF insns", "verify ms", "JIT bytes", "iters/run", "runs/sample gcc|jit|interp", "IQR/median gcc|jit|interp"],
      results.map((m) => [
        m.workload.name,
        String(m.program.slots),
        fixed(m.program.verifyMs, 0),
        String(m.program.jitBytes),
        String(m.workload.iterations),
        BACKENDS.map((b) => m.runs[b]).join(" | "),
        BACKENDS.map((b) => `${fixed(relativeIqr(m.samples[b]) * 100, 1)}%`).join(" | "),
      ]),
    ),
  );

  const arith = results.find((m) => m.workload.name === "arith")!;
  const ratio = med(arith, "jit") / med(arith, "gcc");
  const met = ratio < ARITH_TARGET;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log("");
  console.log(
    `JIT vs gcc -O2 on the arithmetic loop: ${fixed(ratio, 2)}x (target: within ${ARITH_TARGET}x): ${met ? "met" : "NOT met"}; ` +
      `all back ends returned the same r0 on every workload; ${fixed(seconds, 1)} s`,
  );

  const json: Record<string, unknown> = {};
  const round = (x: number) => Number(x.toFixed(3));
  for (const m of results) {
    json[m.workload.name] = { gcc_ns: round(med(m, "gcc")), jit_ns: round(med(m, "jit")), interp_ns: round(med(m, "interp")) };
  }
  json["jit_vs_gcc_arith"] = round(ratio);
  const mix = results.find((m) => m.workload.name === "mix");
  if (mix) json["jit_vs_gcc_mix"] = round(med(mix, "jit") / med(mix, "gcc"));
  console.log(JSON.stringify(json));
  if (opts.check && !met) process.exitCode = 1;
}

try {
  main();
} catch (e) {
  console.error(`bench:vm: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
