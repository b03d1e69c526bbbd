/**
 * Compiles eBPF C the way libbpf users do (`clang -O2 -g -target bpf`), with
 * the flags these machines need: Debian keeps asm/types.h under the multiarch
 * include folder, which -target bpf does not search, and libbpf < 1.2 lacks
 * BPF_UPROBE (see sdk/include/bpfhook/bpf_uprobe_compat.h).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { includeDir } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";

export interface CompileOptions {
  /** Output object (default: next to the source, .bpf.c -> .bpf.o). */
  out?: string;
  /** Extra -I folders. */
  includeDirs?: readonly string[];
  /** Extra -D definitions ("NAME" or "NAME=value"). */
  defines?: readonly string[];
  /** clang binary (default: $CLANG or "clang"). */
  clang?: string;
  /** Debug info and BTF (-g); true by default, as libbpf-style builds do. */
  debug?: boolean;
}

function archFlags(): string[] {
  return process.arch === "arm64"
    ? ["-D__TARGET_ARCH_arm64", "-I/usr/include/aarch64-linux-gnu"]
    : ["-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu"];
}

let tracingHasUprobe: boolean | undefined;
function needsUprobeCompat(): boolean {
  if (tracingHasUprobe === undefined) {
    const header = "/usr/include/bpf/bpf_tracing.h";
    tracingHasUprobe = existsSync(header) && readFileSync(header, "utf8").includes("define BPF_UPROBE(");
  }
  return !tracingHasUprobe;
}

/** Compiles `source` unless the object is newer; returns the object's path. */
export function compileBpfC(source: string, options: CompileOptions = {}): string {
  const src = path.resolve(source);
  if (!existsSync(src)) throw new BpfhookError("NOT_FOUND", `${source}: no such file`, { file: source });
  const out = path.resolve(options.out ?? src.replace(/(\.bpf)?\.c$/, "") + ".bpf.o");
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(path.dirname(out), { recursive: true });
  const clang = options.clang ?? process.env.CLANG ?? "clang";
  const args = [
    "-O2",
    ...(options.debug === false ? [] : ["-g"]),
    "-target",
    "bpf",
    ...archFlags(),
    `-I${includeDir()}`,
    ...(needsUprobeCompat() ? ["-include", "bpfhook/bpf_uprobe_compat.h"] : []),
    ...(options.includeDirs ?? []).map((d) => `-I${d}`),
    ...(options.defines ?? []).map((d) => `-D${d}`),
    "-c",
    src,
    "-o",
    out,
  ];
  const run = spawnSync(clang, args, { encoding: "utf8" });
  if (run.error) {
    throw new BpfhookError("CLANG_FAILED", `${source}: cannot run ${clang}: ${run.error.message} (install clang)`, {
      file: source,
      cause: run.error,
    });
  }
  if (run.status !== 0) {
    throw new BpfhookError("CLANG_FAILED", `${source}: clang failed:\n${run.stderr.trim()}`, { file: source });
  }
  return out;
}
