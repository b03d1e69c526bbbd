/**
 * Programs for tests: eBPF C compiled with the core's compileBpfC (clang
 * -O2 -g -target bpf with bpfhook's include paths), assembly through the
 * core's assembler, or a prebuilt object; and reading their maps.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  assemble,
  compileBpfC,
  encodeInsns,
  type BpfMap,
  type LoadedObject,
  type LoadOptions,
  type MapSpec,
  type Program,
  type Runtime,
} from "@bpfhook/core";

/** eBPF C source; `name` picks the program when the object has several (default: the first). */
export interface CSource {
  readonly c: string;
  readonly name?: string;
  readonly includeDirs?: readonly string[];
  readonly defines?: readonly string[];
}

/**
 * Assembly in the conformance suite's syntax (`mov %r0, 0` / `exit`), one
 * program, loaded as a raw object (no ELF). `lddw %r1, map:NAME` loads the
 * address of map NAME of `maps` (the kernel's BPF_PSEUDO_MAP_FD form: src 1,
 * imm = the map's index).
 */
export interface AsmSource {
  readonly asm: string;
  readonly name?: string;
  /** Its section, which selects the attach type when attached by section (default "": none). */
  readonly section?: string;
  readonly maps?: readonly AsmMap[];
}

/** A map of an {@link AsmSource}: no BTF, so {@link readMap} reads it as integers. */
export interface AsmMap {
  readonly name: string;
  /** BPF_MAP_TYPE_* (core's BPF_MAP_TYPE). */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags?: number;
}

/** A clang-built object file; `name` picks the program (default: the first). */
export interface ObjectSource {
  readonly object: string;
  readonly name?: string;
}

export type ProgramSource = CSource | AsmSource | ObjectSource;

/** A loaded object and the program picked from it. */
export interface LoadedProgram {
  readonly object: LoadedObject;
  readonly program: Program;
}

let clangReason: string | null | undefined;

/**
 * Why eBPF C cannot be compiled here (no clang, or no libbpf headers), or
 * undefined when it can. Probed once per process; `$CLANG` names the binary.
 */
export function clangMissing(): string | undefined {
  if (clangReason === undefined) {
    const clang = process.env.CLANG ?? "clang";
    const run = spawnSync(clang, ["--version"], { encoding: "utf8" });
    if (run.error !== undefined || run.status !== 0) clangReason = `${clang} not found (install clang, or set CLANG): eBPF C cannot be compiled`;
    else if (!existsSync("/usr/include/bpf/bpf_helpers.h")) clangReason = "libbpf headers (bpf/bpf_helpers.h) not found (install libbpf-dev)";
    else clangReason = null;
  }
  return clangReason ?? undefined;
}

/** What `requireClang` needs of mocha's `this` (a Mocha.Context). */
export interface SkippableContext {
  skip(): void;
}

/**
 * For mocha's `before`/`it` (`requireClang(this)`): skips the suite or test,
 * printing why, when eBPF C cannot be compiled here.
 */
export function requireClang(ctx: SkippableContext): void {
  const reason = clangMissing();
  if (reason !== undefined) {
    console.log(`      skipped: ${reason}`);
    ctx.skip();
  }
}

let buildRoot: string | undefined;
const compiled = new Map<string, string>();

/**
 * Compiles eBPF C source text into an object file (cached per source and
 * flags for the process; the files go under one temporary folder removed
 * at exit). Throws CLANG_FAILED with clang's message on a compile error.
 */
export function compileC(source: CSource): string {
  const key = createHash("sha256")
    .update(JSON.stringify([source.c, source.includeDirs ?? [], source.defines ?? []]))
    .digest("hex")
    .slice(0, 16);
  const known = compiled.get(key);
  if (known !== undefined) return known;
  if (buildRoot === undefined) {
    buildRoot = path.join(os.tmpdir(), `bpfhook-testkit-${process.pid}-${Date.now().toString(36)}`);
    process.once("exit", removeCompiled);
  }
  const dir = path.join(buildRoot, key);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "prog.bpf.c");
  writeFileSync(file, source.c);
  const out = compileBpfC(file, {
    out: path.join(dir, "prog.bpf.o"),
    ...(source.includeDirs ? { includeDirs: source.includeDirs } : {}),
    ...(source.defines ? { defines: source.defines } : {}),
  });
  compiled.set(key, out);
  return out;
}

/**
 * Removes the folder of {@link compileC}'s objects now (it also goes at
 * exit), for a suite that checks before its process ends that it left
 * nothing behind. Objects compiled before are gone: the next compileC
 * builds again.
 */
export function removeCompiled(): void {
  if (buildRoot !== undefined) rmSync(buildRoot, { recursive: true, force: true });
  buildRoot = undefined;
  compiled.clear();
}

/**
 * Loads a program into `rt`: C (compiled here; call requireClang first),
 * assembly (a raw object), or an object file. Returns the object and the
 * program picked by `name` (default: the object's first program).
 */
export function loadProgram(rt: Runtime, source: ProgramSource, options?: LoadOptions): LoadedProgram {
  let object: LoadedObject;
  if ("c" in source) {
    object = rt.load(compileC(source), options);
  } else if ("asm" in source) {
    const insns = encodeInsns(assembleWithMaps(source.asm, source.maps ?? []));
    object = rt.load({
      programs: [{ name: source.name ?? "prog", section: source.section ?? "", insns }],
      ...(source.maps ? { maps: source.maps.map((m): MapSpec => ({ flags: 0, ...m, section: ".maps" })) } : {}),
    });
  } else {
    object = rt.load(source.object, options);
  }
  const program = source.name !== undefined ? object.program(source.name) : object.programs[0];
  if (program === undefined) throw new Error("the object has no program");
  return { object, program };
}

/** Sentinel immediates for `map:NAME` operands while the core's assembler runs. */
const MAP_SENTINEL = 0x7fbe0000;
const LDDW = 0x18;
const PSEUDO_MAP_FD = 1;

function assembleWithMaps(text: string, maps: readonly AsmMap[]) {
  const replaced = text.replace(/\bmap:([A-Za-z_][A-Za-z0-9_.]*)/g, (_m, name: string) => {
    const index = maps.findIndex((m) => m.name === name);
    if (index < 0) throw new Error(`assembly: map:${name} is not one of the maps given (${maps.map((m) => m.name).join(", ") || "none"})`);
    return `0x${(MAP_SENTINEL + index).toString(16)}`;
  });
  // lddw's second slot has opcode 0 and carries the upper half (0 here).
  return assemble(replaced).map((i) =>
    i.opcode === LDDW && i.imm >= MAP_SENTINEL && i.imm < MAP_SENTINEL + maps.length
      ? { ...i, src: PSEUDO_MAP_FD, imm: i.imm - MAP_SENTINEL }
      : i,
  );
}

/**
 * A map's value at `key` (default 0), as the map's BTF codecs decode it
 * (a u64 value: bigint). A map without BTF (assembly, legacy maps) is read
 * as integers: a number key is encoded little-endian in its key size, and
 * a value of 1, 2, 4 or 8 bytes decoded as an unsigned little-endian
 * bigint (other sizes: the bytes).
 */
export function readMap<V = bigint, K = number>(object: LoadedObject, name: string, key?: K): V | undefined {
  const m = object.objectMap(name);
  const k = key ?? (0 as K);
  if (m.spec.keyType !== undefined || typeof k !== "number") return (m.map as BpfMap<K, V>).get(k);
  const kb = Buffer.alloc(m.spec.keySize);
  if (m.spec.keySize >= 8) kb.writeBigUInt64LE(BigInt(k));
  else kb.writeUIntLE(k, 0, m.spec.keySize);
  const v = (m.map as unknown as BpfMap<Buffer, Buffer | bigint>).get(kb);
  if (!Buffer.isBuffer(v) || ![1, 2, 4, 8].includes(v.length)) return v as V | undefined;
  return (v.length === 8 ? v.readBigUInt64LE(0) : BigInt(v.readUIntLE(0, v.length))) as V;
}

/** The counter's map name and key in {@link counterProgram}'s programs. */
export const COUNTER_MAP = "hits";

/**
 * eBPF C for one program in `section` that adds 1 to `hits[0]` (an array
 * map of one u64) on every run and returns 0. It never reads its context,
 * so it is valid for every attach type.
 */
export function counterProgram(section: string, name = "count_hits"): CSource {
  if (/["\\\n]/.test(section)) throw new Error(`section ${JSON.stringify(section)}: no quotes, backslashes or newlines`);
  return {
    name,
    c: `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} ${COUNTER_MAP} SEC(".maps");

SEC("${section}")
int ${name}(void *ctx) {
  __u32 key = 0;
  __u64 *v = bpf_map_lookup_elem(&${COUNTER_MAP}, &key);
  if (v) __sync_fetch_and_add(v, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
`,
  };
}
