/**
 * Compiles the .bpf.c fixtures under test/fixtures with clang, the way users
 * build their objects, once per test run into a temporary folder. Suites call
 * skipWithoutClang(this) in a `before` hook: without clang they are skipped
 * with the reason printed, instead of failing on a machine that cannot build.
 */
import { spawnSync } from "node:child_process";
import { compileBpfC } from "@bpfhook/core";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { runTempDir } from "./tmp.js";

/** test/fixtures, from test/dist/support where this file runs. */
export const FIXTURES_DIR = resolve(__dirname, "..", "..", "fixtures");

export interface CompileOptions {
  /** Emit debug info and BTF (-g); true by default, as libbpf-style builds do. */
  debug?: boolean;
}

let clangProbe: { path?: string; reason?: string } | undefined;
let buildDir: string | undefined;
const built = new Map<string, string>();

function probe(): { path?: string; reason?: string } {
  if (clangProbe !== undefined) return clangProbe;
  const clang = process.env["CLANG"] ?? "clang";
  const run = spawnSync(clang, ["--version"], { encoding: "utf8" });
  if (run.error !== undefined || run.status !== 0) {
    clangProbe = { reason: `${clang} not found (install clang, or set CLANG): eBPF fixtures cannot be built` };
  } else if (!existsSync("/usr/include/bpf/bpf_helpers.h")) {
    clangProbe = { reason: "libbpf headers (bpf/bpf_helpers.h) not found (install libbpf-dev): eBPF fixtures cannot be built" };
  } else {
    clangProbe = { path: clang };
  }
  return clangProbe;
}

/** Why fixtures cannot be compiled here, or undefined when they can. */
export function clangUnavailable(): string | undefined {
  return probe().reason;
}

/** Use in a `before` hook: skips the whole suite, saying why, when clang is missing. */
export function skipWithoutClang(ctx: Mocha.Context): void {
  const reason = clangUnavailable();
  if (reason !== undefined) {
    console.log(`      skipped: ${reason}`);
    ctx.skip();
  }
}

/**
 * Path of the compiled object for test/fixtures/<name> (e.g. "globals.bpf.c"
 * or "errors/kfunc.bpf.c"). Compiles on first use; a compile error throws
 * with clang's message, failing the test that asked.
 */
export function compileFixture(name: string, opts: CompileOptions = {}): string {
  const debug = opts.debug ?? true;
  const key = `${name}|${debug}`;
  const cached = built.get(key);
  if (cached !== undefined) return cached;
  const clang = probe().path;
  if (clang === undefined) throw new Error(probe().reason);
  // Removed at the end of the run (the root hooks, support/tmp.ts).
  buildDir ??= runTempDir("bpfhook-fixtures-");
  const out = join(buildDir, `${name.replace(/[/\\]/g, "_").replace(/\.c$/, "")}${debug ? "" : ".nodebug"}.o`);
  // The same flags users get from @bpfhook/core's compileBpfC.
  compileBpfC(join(FIXTURES_DIR, name), { out, debug, clang });
  built.set(key, out);
  return out;
}
