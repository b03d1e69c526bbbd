/**
 * What the native piece needs to intercept a CUDA program
 * (include/bpfhook/nv_cuda_plugin.h): where the runtime's registration and
 * launch functions are (link-time vaddrs from the executable's `.symtab`,
 * where nvcc's default static runtime keeps them as local symbols; the
 * native side falls back to dlsym for libcudart.so's exports), the PTX of the
 * target's fat binary with the program inserted, the mangled names of the
 * kernels it instruments and the object's maps.
 */
import { realpathSync } from "node:fs";
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
export const NV_CUDA_VERSION = 1;
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
    if (ptx) out.push({ where: `${path}: ${ptx.where}`, arch: ptx.arch, ptx: entryPtx(ptx) });
  }
  return out;
}

export interface PreparedModule {
  /** The file whose fat binary is instrumented and whose `.symtab` gave the hooks. */
  readonly modulePath: string;
  readonly hooks: readonly RuntimeHook[];
  readonly kernels: readonly string[];
  readonly maps: readonly { type: number; keySize: number; valueSize: number; maxEntries: number }[];
  readonly ptx: string;
  readonly description: string;
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

export interface PrepareModuleInput {
  readonly exe: string;
  /**
   * The programs of one object attached to this target so far, the one being
   * attached last: the module holds them all (entry and exit probes of one
   * kernel share one module and the object's maps).
   */
  readonly programs: readonly ProgramToInsert[];
}

/** Finds the kernels the last program selects in the executable's fat binary and inserts the programs into their module's PTX. */
export function prepareModule(input: PrepareModuleInput): PreparedModule {
  const { exe, programs } = input;
  const last = programs[programs.length - 1];
  if (!last) throw new Error("no program to insert");
  const modules = modulePtxs(exe);
  if (modules.length === 0) {
    throw new Error(`${exe} has no PTX in its fat binaries (build with a compute_XX PTX entry, nvcc's default, to instrument it)`);
  }
  const all: string[] = [];
  for (const m of modules) {
    const names = parsePtxModule(m.ptx).entries.map((e) => e.name);
    all.push(...names);
    if (!names.some(last.kernel)) continue;
    // Programs of the object whose kernels are in this module (the others belong to another translation unit's).
    const here = programs.filter((p) => names.some(p.kernel));
    const result = instrumentPtx(
      m.ptx,
      here.map((p) => ({ program: { name: p.name, section: p.section, insns: p.code.insns, functions: p.code.functions }, kind: p.kind, kernel: p.kernel })),
      last.code.maps,
    );
    const kernels = [...result.kernels.keys()];
    const progs = here.map((p) => `'${p.name}' (${p.kind})`).join(", ");
    return {
      modulePath: exe,
      hooks: findRuntimeHooks(exe),
      kernels,
      maps: last.code.maps.map((x) => ({ type: x.type, keySize: x.keySize, valueSize: x.valueSize, maxEntries: x.maxEntries })),
      ptx: result.ptx,
      description: `prog ${progs} on ${kernels.join(", ")}`,
    };
  }
  throw new Error(`kernel '${last.kernelPattern}' is not a kernel of ${exe} (its kernels: ${all.join(", ") || "none"})`);
}

/** The private data of include/bpfhook/nv_cuda_plugin.h. */
export function encodeModule(attachType: number, m: PreparedModule): Uint8Array {
  const enc = new TextEncoder();
  const strings = [m.description, m.modulePath, ...m.kernels].map((s) => enc.encode(`${s}\0`));
  const ptx = enc.encode(m.ptx);
  const fixedLen = NV_CUDA_FIXED + 16 * m.hooks.length + 16 * m.maps.length;
  const total = fixedLen + strings.reduce((n, s) => n + s.length, 0) + ptx.length + 1;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(NV_CUDA_MAGIC, 0);
  out.writeUInt32LE(NV_CUDA_VERSION, 4);
  out.writeUInt32LE(attachType, 8);
  out.writeUInt32LE(0, 12);
  out.writeUInt32LE(m.hooks.length, 16);
  out.writeUInt32LE(m.kernels.length, 20);
  out.writeUInt32LE(m.maps.length, 24);
  out.writeUInt32LE(ptx.length, 28);
  let pos = NV_CUDA_FIXED;
  for (const h of m.hooks) {
    out.writeBigUInt64LE(h.vaddr, pos);
    out.writeUInt32LE(h.hook, pos + 8);
    pos += 16;
  }
  for (const x of m.maps) {
    out.writeUInt32LE(x.type, pos);
    out.writeUInt32LE(x.keySize, pos + 4);
    out.writeUInt32LE(x.valueSize, pos + 8);
    out.writeUInt32LE(x.maxEntries, pos + 12);
    pos += 16;
  }
  for (const s of strings) {
    out.set(s, pos);
    pos += s.length;
  }
  out.set(ptx, pos);
  return out;
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
