/**
 * What the native piece needs to intercept a CUDA program
 * (include/bpfhook/nv_cuda_plugin.h): where the runtime's registration and
 * launch functions are (link-time vaddrs from the executable's `.symtab`,
 * where nvcc's default static runtime keeps them as local symbols; the
 * native side falls back to dlsym for libcudart.so's exports), the PTX of the
 * target's fat binary with the program inserted, the mangled names of the
 * kernels it instruments and the object's maps.
 */
import { readFileSync, realpathSync } from "node:fs";
import { readElfImage, readSymbols, symbolTables } from "@bpfhook/sdk";
import type { AttachProgramCode } from "@bpfhook/sdk";
import { entryPtx, findFatbins, type FatbinEntry } from "./fatbin/index.js";
import { instrumentPtx } from "./ptx/module.js";
import { parsePtxModule } from "./ptx/insert.js";

/** The hooked functions, in the order of enum bh_nv_cuda_hook. */
export const HOOK_NAMES = Object.freeze([
  "__cudaRegisterFatBinary",
  "__cudaRegisterFatBinaryEnd",
  "__cudaRegisterFunction",
  "__cudaRegisterVar",
  "__cudaGetKernel",
  "__cudaLaunchKernel",
  "__cudaLaunchKernel_ptsz",
  "cudaLaunchKernel",
  "cudaLaunchKernel_ptsz",
  "cudaLaunchKernelExC",
  "cudaMemcpyToSymbol",
] as const);

export const NV_CUDA_MAGIC = 0x434e4842;
export const NV_CUDA_VERSION = 2;
export const NV_CUDA_FIXED = 32;

export interface RuntimeHook {
  readonly hook: number;
  readonly name: string;
  readonly vaddr: bigint;
}

/** The runtime's functions defined in `path`'s `.symtab` (local ones included); empty for `-cudart shared`. */
export function findRuntimeHooks(path: string): RuntimeHook[] {
  const image = readElfImage(path);
  if (!symbolTables(image).includes(".symtab")) return [];
  const byName = new Map<string, bigint>();
  for (const s of readSymbols(image, ".symtab", "functions")) {
    if (s.defined && s.value !== 0n && !byName.has(s.name)) byName.set(s.name, s.value);
  }
  const out: RuntimeHook[] = [];
  HOOK_NAMES.forEach((name, hook) => {
    const vaddr = byName.get(name);
    if (vaddr !== undefined) out.push({ hook, name, vaddr });
  });
  return out;
}

/** One translation unit's PTX: the highest-arch PTX entry of each container. */
export function modulePtxs(path: string): { where: string; arch: number; ptx: string }[] {
  const found = findFatbins(path);
  const groups: FatbinEntry[][] = found.wrappers.length > 0 ? found.wrappers.map((w) => [...w.fatbin.entries]) : [];
  if (groups.length === 0 && found.section) {
    const byContainer = new Map<string, FatbinEntry[]>();
    for (const e of found.section.entries) {
      const c = /^container \d+/.exec(e.where)?.[0] ?? e.where;
      byContainer.set(c, [...(byContainer.get(c) ?? []), e]);
    }
    groups.push(...byContainer.values());
  }
  const out: { where: string; arch: number; ptx: string }[] = [];
  for (const entries of groups) {
    const ptx = entries.filter((e) => e.kind === "ptx").sort((a, b) => b.arch - a.arch)[0];
    if (ptx) out.push({ where: ptx.where.startsWith(path) ? ptx.where : `${path}: ${ptx.where}`, arch: ptx.arch, ptx: entryPtx(ptx) });
  }
  return out;
}

/** One instrumented module: the PTX of one fat binary (one translation unit) with the programs inserted. */
export interface InstrumentedModule {
  /** Index into PreparedModule.paths: the file whose fat binary this is. */
  readonly pathIndex: number;
  /** Where the PTX came from (file, container, entry), for messages. */
  readonly where: string;
  /**
   * The kernels it instruments, each with what late attach needs to redirect it without having
   * seen its registration (link-time vaddrs in the file, 0 when not found): the host stub (the
   * function named like the kernel, which __cudaRegisterFunction maps) and the stub's static
   * `__handle` (CUDA 13's cached cudaKernel_t, `_ZZ<n>__device_stub_<kernel><params>E8__handle`).
   */
  readonly kernels: readonly { name: string; stub: bigint; handle: bigint }[];
  /** Host shadows of the module's `.global` variables (cudaMemcpyToSymbol's first argument), by device name. */
  readonly vars: readonly { name: string; vaddr: bigint }[];
  /** The program in each guard slot (`bh_prog_off[i]`), as programKey() writes it. */
  readonly slots: readonly string[];
  readonly ptx: string;
}

export interface PreparedModule {
  /** The executable first, then the shared objects with fat binaries (as mapped in the target). */
  readonly paths: readonly string[];
  /** The runtime's functions found in the files' `.symtab` (nvcc's static runtime: one copy per file). */
  readonly hooks: readonly (RuntimeHook & { pathIndex: number })[];
  readonly maps: readonly { type: number; keySize: number; valueSize: number; maxEntries: number }[];
  /** One per fat binary with selected kernels. */
  readonly modules: readonly InstrumentedModule[];
  /** This attachment's program (programKey()): the slot detach turns off. */
  readonly program: string;
  readonly description: string;
  /** What the attach could not do as asked, for the log (memory accesses left without probes). */
  readonly warnings: readonly string[];
}

/** One program to insert: what the attach gives, with its place and kernel selector. */
export interface ProgramToInsert {
  readonly name: string;
  readonly section: string;
  readonly code: AttachProgramCode;
  readonly kind: "entry" | "exit" | "memory";
  readonly kernel: (mangled: string) => boolean;
  /** The kernel as the section or config wrote it, for messages. */
  readonly kernelPattern: string;
}

/** Names one attachment's program in every module that holds it (the native side matches slots by it). */
export function programKey(p: Pick<ProgramToInsert, "name" | "kind" | "kernelPattern">): string {
  return `${p.name} ${p.kind} ${p.kernelPattern}`;
}

export interface PrepareModuleInput {
  /** The executable, or the target's files with fat binaries (targetObjects()), the executable first. */
  readonly exe: string | readonly string[];
  /**
   * The programs of one object attached to this target so far, the one being
   * attached last: the modules hold them all (entry and exit probes of one
   * kernel share one module and the object's maps).
   */
  readonly programs: readonly ProgramToInsert[];
}

/** Function and object symbols of a file (`.symtab`, else `.dynsym`) by name; first definition wins. */
function definedSymbols(path: string): Map<string, bigint> {
  const image = readElfImage(path);
  const out = new Map<string, bigint>();
  for (const table of [".symtab", ".dynsym"] as const) {
    if (!symbolTables(image).includes(table)) continue;
    for (const s of readSymbols(image, table, "functions")) if (s.defined && s.value !== 0n && !out.has(s.name)) out.set(s.name, s.value);
  }
  return out;
}

/** A data symbol's link-time vaddr by exact name (`.symtab`, then `.dynsym`), 0n when absent. */
function objectSymbol(path: string, names: readonly string[]): bigint {
  const image = readElfImage(path);
  for (const table of [".symtab", ".dynsym"] as const) {
    if (!symbolTables(image).includes(table)) continue;
    for (const name of names) {
      const s = readSymbols(image, table, { name }).find((x) => x.defined && x.value !== 0n);
      if (s) return s.value;
    }
  }
  return 0n;
}

/**
 * The name of CUDA 13's cached handle of a kernel's host stub: the stub is
 * `__device_stub_<mangled>` with the kernel's parameters, and its static
 * `__handle` is a local name in it. Only for kernels mangled as
 * `_Z<n><name><params>` (no namespace, not a template); others give undefined.
 */
export function stubHandleSymbol(kernel: string): string | undefined {
  const m = /^_Z(\d+)(.*)$/.exec(kernel);
  if (!m) return undefined;
  const n = Number(m[1]);
  const params = m[2]!.slice(n);
  if (params === "" || m[2]!.length < n) return undefined;
  const stub = `__device_stub_${kernel}`;
  return `_ZZ${stub.length}${stub}${params}E8__handle`;
}

/** The names of a PTX module's `.global` variables (not the plugin runtime's `bh_*`). */
export function ptxGlobals(ptx: string): string[] {
  const out: string[] = [];
  for (const line of ptx.split("\n")) {
    if (!/^\s*(\.visible\s+|\.weak\s+)?\.global\s/.test(line)) continue;
    const decl = line.replace(/\/\/.*$/, "").replace(/=.*$/, "").replace(/\[[^\]]*\]/g, "").replace(/;.*$/, "").trim();
    const name = /([A-Za-z_$%][\w$]*)\s*$/.exec(decl)?.[1];
    if (name && !name.startsWith("bh_")) out.push(name);
  }
  return out;
}

/**
 * The target's files that hold CUDA code: its executable first, then every
 * shared object mapped in it (`/proc/<pid>/maps`) with a `.nv_fatbin`
 * section. A kernel in a library linked by the executable is found so.
 */
export function targetObjects(pid: number | undefined): string[] {
  const exe = processExecutable(pid);
  const out = [exe];
  let maps = "";
  try {
    maps = readFileSync(`/proc/${pid ?? "self"}/maps`, "utf8");
  } catch {
    return out;
  }
  const seen = new Set(out);
  for (const line of maps.split("\n")) {
    const file = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*)$/.exec(line)?.[1];
    if (file === undefined || file.endsWith(" (deleted)") || seen.has(file)) continue;
    seen.add(file);
    try {
      if (readElfImage(file).sections.some((s) => s.name === ".nv_fatbin" && s.size > 0n)) out.push(file);
    } catch {
      // Not an ELF file we can read (a data file mapped by the program): it holds no kernels.
    }
  }
  return out;
}

const kernelsByFiles = new Map<string, Set<string>>();

/** The mangled names of the kernels in the target's files (targetObjects), cached per set of files. */
export function targetKernels(pid: number | undefined): Set<string> {
  const files = targetObjects(pid);
  const key = files.join("\0");
  let names = kernelsByFiles.get(key);
  if (names === undefined) {
    names = new Set(files.flatMap((f) => modulePtxs(f).flatMap((m) => parsePtxModule(m.ptx).entries.map((e) => e.name))));
    kernelsByFiles.set(key, names);
  }
  return names;
}

/**
 * Finds the kernels the programs select in the fat binaries of the target's
 * files and inserts the programs into each translation unit's PTX that has
 * any: one instrumented module per fat binary. The last program must select
 * a kernel somewhere.
 */
export function prepareModule(input: PrepareModuleInput): PreparedModule {
  const { programs } = input;
  const paths = typeof input.exe === "string" ? [input.exe] : [...input.exe];
  const last = programs[programs.length - 1];
  if (!last) throw new Error("no program to insert");
  const all: string[] = [];
  const modules: InstrumentedModule[] = [];
  const warnings: string[] = [];
  let anyPtx = false;
  paths.forEach((file, pathIndex) => {
    const ptxs = modulePtxs(file);
    if (ptxs.length > 0) anyPtx = true;
    let symbols: Map<string, bigint> | undefined;
    for (const m of ptxs) {
      const names = parsePtxModule(m.ptx).entries.map((e) => e.name);
      all.push(...names);
      const here = programs.filter((p) => names.some(p.kernel));
      if (here.length === 0) continue;
      const result = instrumentPtx(
        m.ptx,
        here.map((p) => ({ program: { name: p.name, section: p.section, insns: p.code.insns, functions: p.code.functions }, kind: p.kind, kernel: p.kernel })),
        last.code.maps,
      );
      symbols ??= definedSymbols(file);
      const kernels = [...result.kernels.keys()].map((name) => {
        const handle = stubHandleSymbol(name);
        return { name, stub: symbols!.get(name) ?? 0n, handle: handle === undefined ? 0n : objectSymbol(file, [handle]) };
      });
      const vars = ptxGlobals(m.ptx)
        .map((name) => ({ name, vaddr: objectSymbol(file, [name, `_ZL${name.length}${name}`]) }))
        .filter((v) => v.vaddr !== 0n);
      modules.push({ pathIndex, where: m.where, kernels, vars, slots: here.map(programKey), ptx: result.ptx });
      for (const [name, k] of result.kernels) {
        if (k.memorySkipped.length === 0) continue;
        const more = k.memorySkipped.length > 1 ? ` (and ${k.memorySkipped.length - 1} more)` : "";
        warnings.push(`kernel ${name} in ${m.where}: ${k.memorySkipped.length} global load(s)/store(s) of a type memory capture cannot size are not captured: ${k.memorySkipped[0]}${more}`);
      }
    }
  });
  if (!anyPtx) {
    throw new Error(`${paths.join(", ")} ha${paths.length > 1 ? "ve" : "s"} no PTX in ${paths.length > 1 ? "their" : "its"} fat binaries (build with a compute_XX PTX entry, nvcc's default, to instrument it)`);
  }
  if (!modules.some((m) => m.kernels.some((k) => last.kernel(k.name)))) {
    throw new Error(`kernel '${last.kernelPattern}' is not a kernel of ${paths.join(", ")} (its kernels: ${all.join(", ") || "none"})`);
  }
  const hooks = paths.flatMap((p, pathIndex) => findRuntimeHooks(p).map((h) => ({ ...h, pathIndex })));
  const progs = programs.map((p) => `'${p.name}' (${p.kind})`).join(", ");
  const kernelNames = [...new Set(modules.flatMap((m) => m.kernels.map((k) => k.name)))];
  return {
    paths,
    hooks,
    maps: last.code.maps.map((x) => ({ type: x.type, keySize: x.keySize, valueSize: x.valueSize, maxEntries: x.maxEntries })),
    modules,
    program: programKey(last),
    description: `prog ${progs} on ${kernelNames.join(", ")}`,
    warnings,
  };
}

/** The private data of include/bpfhook/nv_cuda_plugin.h (version 2). */
export function encodeModule(attachType: number, m: PreparedModule): Uint8Array {
  const parts: Buffer[] = [];
  const u32 = (...v: number[]): void => {
    const b = Buffer.alloc(4 * v.length);
    v.forEach((x, i) => b.writeUInt32LE(x, 4 * i));
    parts.push(b);
  };
  const u64 = (v: bigint): void => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    parts.push(b);
  };
  const str = (s: string): void => {
    if (s.includes("\0")) throw new Error(`a NUL in '${s}'`);
    parts.push(Buffer.from(`${s}\0`, "utf8"));
  };
  u32(NV_CUDA_MAGIC, NV_CUDA_VERSION, attachType, 0, m.paths.length, m.hooks.length, m.maps.length, m.modules.length);
  for (const h of m.hooks) {
    u64(h.vaddr);
    u32(h.hook, h.pathIndex);
  }
  for (const x of m.maps) u32(x.type, x.keySize, x.valueSize, x.maxEntries);
  str(m.description);
  str(m.program);
  for (const p of m.paths) str(p);
  for (const mod of m.modules) {
    const ptx = Buffer.from(mod.ptx, "utf8");
    u32(mod.pathIndex, mod.kernels.length, mod.vars.length, mod.slots.length, ptx.length);
    str(mod.where);
    for (const k of mod.kernels) {
      u64(k.stub);
      u64(k.handle);
      str(k.name);
    }
    for (const v of mod.vars) {
      u64(v.vaddr);
      str(v.name);
    }
    for (const s of mod.slots) str(s);
    parts.push(ptx, Buffer.from([0]));
  }
  return Buffer.concat(parts);
}

/** The executable of process `pid` (this process when undefined), as a real path. */
export function processExecutable(pid: number | undefined): string {
  const link = `/proc/${pid ?? "self"}/exe`;
  try {
    return realpathSync(link);
  } catch (err) {
    throw new Error(`cannot read ${link}: ${(err as Error).message}`);
  }
}
