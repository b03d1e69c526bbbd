/**
 * The verifier's acceptance corpus: every eBPF C program of the repository
 * (test fixtures, examples, benchmarks, test/fixtures/verifier), compiled as
 * users compile them, loaded by the loader, with the context of the attach
 * type its section names. Objects the loader refuses on purpose
 * (test/fixtures/errors, ...) are listed apart, not verified.
 */
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { compileBpfC, loadObject, type BpfObject } from "@bpfhook/core";
import { SYS_ENTER_LAYOUT, SYS_EXIT_LAYOUT } from "@bpfhook/plugin-syscall-trace";
import { standardHelpers, type ContextLayout, type HelperSignature, type VerifierMap } from "@bpfhook/core/dist/verifier/index.js";
import { CUDA_CONTEXT_LAYOUT, CUDA_HELPERS } from "@bpfhook/plugin-nv-cuda";

export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..");

/** uprobe family: struct pt_regs on x86-64, read-only (plugins/frida-uprobe). */
export const PT_REGS: ContextLayout = { name: "pt_regs", size: 168 };
/** tracepoint/syscalls/sys_enter_*, raw_syscalls/sys_enter: trace_event_raw_sys_enter (8 common + id + 6 args), read-only (plugins/syscall-trace). */
export const SYS_ENTER: ContextLayout = SYS_ENTER_LAYOUT;
/** tracepoint/syscalls/sys_exit_*, raw_syscalls/sys_exit: trace_event_raw_sys_exit (8 common + id + ret), read-only. */
export const SYS_EXIT: ContextLayout = SYS_EXIT_LAYOUT;
/**
 * simple/*: the simple plugin hands the program the caller's bytes and
 * declares no contextSize, so the corpus uses a generous 4 KiB, readable and writable
 * (the wiring decides the real layout per plugin).
 */
export const SIMPLE: ContextLayout = { name: "simple bytes", size: 4096, writable: [{ offset: 0, size: 4096 }] };
/** bench/*: the VM benchmark's contexts (bench/vm/programs/bench.h, memory_ctx the largest), read-write plain memory (indexed by the histogram). */
export const BENCH: ContextLayout = { name: "bench ctx", size: 9232, writable: [{ offset: 0, size: 9232 }], variableOffsets: true };
/** kprobe/, kretprobe/, cuda/, cudaret/: the nv-cuda plugin's probe context (sdk/include/bpfhook/cuda.h). */
export const CUDA: ContextLayout = CUDA_CONTEXT_LAYOUT;
/** Anything else: a small generic read-only context. */
export const GENERIC: ContextLayout = { name: "generic", size: 64 };

export function contextFor(section: string): ContextLayout {
  const kind = section.split("/")[0]!;
  if (["uprobe", "uretprobe", "uprobe.s", "uretprobe.s", "uprobe.override", "uoverride", "ureplace"].includes(kind)) return PT_REGS;
  const sc = /^(tracepoint|tp)\/(raw_)?syscalls\/sys_(enter|exit)/.exec(section);
  if (sc) return sc[3] === "enter" ? SYS_ENTER : SYS_EXIT;
  if (kind === "simple") return SIMPLE;
  if (kind === "bench") return BENCH;
  if (["kprobe", "kretprobe", "cuda", "cudaret"].includes(kind)) return CUDA;
  return GENERIC;
}

export function verifierMaps(obj: BpfObject): VerifierMap[] {
  return obj.maps.map((m) => ({
    name: m.name,
    type: m.type,
    keySize: m.keySize,
    valueSize: m.valueSize,
    maxEntries: m.maxEntries,
    ...(m.readonly ? { readOnly: true } : {}),
    ...(m.initialData !== undefined ? { initialData: m.initialData } : {}),
  }));
}

/**
 * Standard helpers plus the plugin helpers the fixtures call (their signatures as the plugins would declare them);
 * the nv-cuda plugin's GPU helpers for programs in its sections only (a `simple/` program calling one is refused).
 */
export function corpusHelpers(section = ""): Map<number, HelperSignature> {
  const h = standardHelpers();
  // bench/vm registers a native add_one(v) under 1000 (bench/vm/programs/bench.h).
  h.set(1000, { id: 1000, name: "add_one", args: ["anything"], ret: "scalar" });
  if (contextFor(section) === CUDA) for (const d of CUDA_HELPERS) h.set(d.id, { ...d.signature!, id: d.id, name: d.name });
  return h;
}

function walk(dir: string, out: string[]): void {
  for (const e of readdirSync(dir)) {
    const p = path.join(dir, e);
    if (e === "node_modules" || e === "dist" || e.startsWith(".")) continue;
    if (statSync(p).isDirectory()) walk(p, out);
    else if (e.endsWith(".bpf.c")) out.push(p);
  }
}

/** Every .bpf.c of the corpus, repository-relative, sorted. */
export function corpusSources(): string[] {
  const out: string[] = [];
  for (const d of ["test/fixtures", "examples", "bench"]) walk(path.join(REPO_ROOT, d), out);
  return out.map((p) => path.relative(REPO_ROOT, p)).sort();
}

export interface CorpusObject {
  source: string;
  obj?: BpfObject;
  /** Why the loader refused it (fixtures written to be refused). */
  loadError?: string;
}

export function loadCorpusObject(source: string, outDir: string): CorpusObject {
  const out = path.join(outDir, source.replace(/[/\\]/g, "_").replace(/\.c$/, ".o"));
  try {
    compileBpfC(path.join(REPO_ROOT, source), { out });
  } catch (e) {
    return { source, loadError: `compile: ${(e as Error).message.split("\n")[0]}` };
  }
  try {
    return { source, obj: loadObject(out) };
  } catch (e) {
    return { source, loadError: (e as Error).message };
  }
}
