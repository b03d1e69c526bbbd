/**
 * The CUDA toolchain for the nv-cuda tests: nvcc builds real kernels and
 * ptxas assembles what the plugin produces. Without them the suites skip
 * with the reason printed. Builds go into one temporary folder per run and
 * are cached by their arguments.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { FIXTURES_DIR } from "./clang.js";
import { runTempDir } from "./tmp.js";

const nvcc = process.env["NVCC"] ?? "nvcc";
const ptxas = process.env["PTXAS"] ?? "ptxas";
let dir: string | undefined;
const built = new Map<string, string>();

function toolMissing(tool: string): string | undefined {
  const r = spawnSync(tool, ["--version"], { encoding: "utf8" });
  return r.error !== undefined || r.status !== 0 ? `${tool} not found (install the CUDA toolkit, or set ${tool.toUpperCase()})` : undefined;
}

/** Skips the suite (printing why) without nvcc and ptxas. */
export function skipWithoutCuda(ctx: Mocha.Context): void {
  const reason = toolMissing(nvcc) ?? toolMissing(ptxas);
  if (reason !== undefined) {
    console.log(`      skipped: ${reason}`);
    ctx.skip();
  }
}

export function cudaBuildDir(): string {
  dir ??= runTempDir("bpfhook-cuda-"); // removed at the end of the run
  return dir;
}

/** Runs nvcc on a fixture of test/fixtures/nv-cuda; returns the output path (cached). */
export function nvccBuild(fixture: string, output: string, args: readonly string[]): string {
  const key = [fixture, output, ...args].join("\0");
  const hit = built.get(key);
  if (hit !== undefined) return hit;
  const out = path.join(cudaBuildDir(), output);
  const r = spawnSync(nvcc, [...args, "-o", out, path.join(FIXTURES_DIR, "nv-cuda", fixture)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`nvcc ${args.join(" ")} ${fixture} failed: ${r.stderr || r.error?.message}`);
  built.set(key, out);
  return out;
}

/** The PTX nvcc emits for a fixture and arch (the reference the parser's output is compared to). */
export function nvccPtx(fixture: string, arch: number): string {
  return readFileSync(nvccBuild(fixture, `${path.basename(fixture, ".cu")}.sm_${arch}.ptx`, [`-arch=sm_${arch}`, "-ptx"]), "utf8");
}

/** Assembles PTX text with ptxas for an arch; returns its status and messages. */
export function ptxasCheck(ptx: string, arch: number, name: string): { status: number | null; output: string; file: string } {
  const file = path.join(cudaBuildDir(), `${name}.sm_${arch}.ptx`);
  writeFileSync(file, ptx);
  const r = spawnSync(ptxas, [`-arch=sm_${arch}`, file, "-o", `${file}.cubin`], { encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}${r.error?.message ?? ""}`, file };
}

/** PTX as the fat binary keeps it: comments dropped, whitespace collapsed, empty lines gone. */
export function normalizePtx(ptx: string): string {
  return ptx
    .split("\n")
    .map((l) => l.replace(/\/\/.*$/, "").replace(/\s+/g, " ").trim())
    .filter((l) => l !== "")
    .join("\n");
}
