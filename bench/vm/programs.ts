/**
 * Builds the benchmark's eBPF programs from bench/vm/programs/*.bpf.c with
 * clang -O2 -target bpf, at bench time, into a temporary folder, and loads
 * each one into a raw native Vm (the object bench_binding.cpp times).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadObject, standardHelpers, verifyProgram } from "@bpfhook/core";
import type { ContextLayout } from "@bpfhook/sdk";
import type { Addon, NativeVm } from "./native.js";
import { HELPER_ADD_ONE_ID, type Workload } from "./workloads.js";

/** bench/vm/programs, from bench/dist/vm where this file runs. */
export const PROGRAMS_DIR = resolve(__dirname, "..", "..", "vm", "programs");

export const CLANG_FLAGS = ["-O2", "-target", "bpf"];

export interface Clang {
  path: string;
  version: string;
}

/** clang (or $CLANG) and its version line, or the reason it cannot be used. */
export function findClang(): Clang | { reason: string } {
  const clang = process.env["CLANG"] ?? "clang";
  const run = spawnSync(clang, ["--version"], { encoding: "utf8" });
  if (run.error !== undefined || run.status !== 0) {
    return { reason: `${clang} not found (install clang 14+, or set CLANG): the eBPF programs cannot be built` };
  }
  return { path: clang, version: run.stdout.split("\n")[0]?.trim() ?? clang };
}

/** The workloads' contexts (programs/bench.h; memory_ctx is the largest): read-write plain memory. */
const BENCH_CONTEXT: ContextLayout = { name: "bench ctx", size: 9232, writable: [{ offset: 0, size: 9232 }], variableOffsets: true };

export interface BuiltProgram {
  vm: NativeVm;
  /** Milliseconds strict mode's verifier took to accept it. */
  verifyMs: number;
  /** Instruction slots of the linked program. */
  slots: number;
  /** Bytes of x86-64 the JIT emitted. */
  jitBytes: number;
}

/**
 * Compiles every workload's program, verifies it as strict mode does (the
 * benchmark runs only what the verifier accepts) and loads it: JIT
 * compiled, fast mode (no checks, no budget).
 */
export function buildPrograms(clang: Clang, workloads: readonly Workload[], native: Addon): Map<string, BuiltProgram> {
  const dir = mkdtempSync(join(tmpdir(), "bpfhook-bench-vm-"));
  try {
    const built = new Map<string, BuiltProgram>();
    for (const w of workloads) {
      const out = join(dir, w.file.replace(/\.c$/, ".o"));
      try {
        execFileSync(clang.path, [...CLANG_FLAGS, "-c", join(PROGRAMS_DIR, w.file), "-o", out], {
          stdio: ["ignore", "pipe", "pipe"],
          encoding: "utf8",
        });
      } catch (err) {
        throw new Error(`clang failed on ${w.file}:\n${(err as { stderr?: string }).stderr ?? String(err)}`);
      }
      const spec = loadObject(out).programs.find((p) => p.name === w.program);
      if (spec === undefined) throw new Error(`${w.file}: no program named '${w.program}'`);
      const helpers = standardHelpers();
      helpers.set(HELPER_ADD_ONE_ID, { id: HELPER_ADD_ONE_ID, name: "add_one", args: ["anything"], ret: "scalar" });
      const verdict = verifyProgram(spec.name, spec.insns, { maps: [], context: BENCH_CONTEXT, helpers });
      if (!verdict.ok) throw new Error(`${w.file}: strict mode refuses it: ${verdict.error.message}`);
      const vm = new native.Vm();
      for (const [id, name] of Object.entries(w.helpers)) vm.registerHelper(Number(id), name);
      vm.setChecked(false);
      vm.setBudget(0n);
      vm.load(spec.insns);
      const jitBytes = vm.compile();
      built.set(w.name, { vm, verifyMs: verdict.stats.ms, slots: spec.insns.length / 8, jitBytes });
    }
    return built;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
