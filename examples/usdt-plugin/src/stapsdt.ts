/**
 * USDT probes of an executable or shared library: the `.note.stapsdt` notes
 * that <sys/sdt.h> emits (owner "stapsdt", type 3), read through the SDK's
 * ELF layer. Each note is one site: its address (a `nop`), the link-time
 * address of `.stapsdt.base` when it was written, the semaphore's address
 * (0: none), provider, name and argument string. As libbpf does, a site's
 * address is moved by however far `.stapsdt.base` has moved since (prelink).
 */
import { ByteReader, FileSource, readElfImage, readSymbols, type ElfImage, type ElfSymbol } from "@bpfhook/sdk";

export interface UsdtSite {
  readonly provider: string;
  readonly name: string;
  /** Link-time address of the site, .stapsdt.base adjustment applied. */
  readonly pc: bigint;
  /** Link-time address of the semaphore (a u16 in .probes), 0n if none. */
  readonly semaphore: bigint;
  readonly args: string;
}

const NT_STAPSDT = 3;

export class UsdtError extends Error {
  constructor(
    message: string,
    readonly code: "NOT_FOUND" | "BAD_ARGUMENT" | "ELF_INVALID",
  ) {
    super(message);
  }
}

function sectionBytes(path: string, image: ElfImage, name: string): Uint8Array | undefined {
  const sec = image.sections.find((s) => s.name === name);
  if (!sec || sec.size === 0n) return undefined;
  const file = FileSource.open(path);
  try {
    return file.read(Number(sec.offset), Number(sec.size), name);
  } finally {
    file.close();
  }
}

const align4 = (n: number) => (n + 3) & ~3;

/** Every USDT site of the file, in note order. */
export function readUsdtSites(path: string, image: ElfImage = readElfImage(path)): UsdtSite[] {
  const notes = sectionBytes(path, image, ".note.stapsdt");
  if (!notes) return [];
  const base = image.sections.find((s) => s.name === ".stapsdt.base");
  const r = new ByteReader(notes);
  const text = new TextDecoder();
  const out: UsdtSite[] = [];
  for (let at = 0; at + 12 <= notes.length; ) {
    const namesz = r.u32(at);
    const descsz = r.u32(at + 4);
    const type = r.u32(at + 8);
    const nameAt = at + 12;
    const descAt = nameAt + align4(namesz);
    const next = descAt + align4(descsz);
    if (next > notes.length) throw new UsdtError(`${path}: .note.stapsdt: a note runs past the section (at ${at})`, "ELF_INVALID");
    const owner = text.decode(notes.subarray(nameAt, nameAt + Math.max(0, namesz - 1)));
    if (owner === "stapsdt" && type === NT_STAPSDT) {
      if (descsz < 24 + 3) throw new UsdtError(`${path}: .note.stapsdt: note at ${at} is ${descsz} bytes`, "ELF_INVALID");
      let pc = r.u64big(descAt);
      const noteBase = r.u64big(descAt + 8);
      const semaphore = r.u64big(descAt + 16);
      const strs = text.decode(notes.subarray(descAt + 24, descAt + descsz)).split("\0");
      if (strs.length < 3) throw new UsdtError(`${path}: .note.stapsdt: note at ${at} lacks provider, name or arguments`, "ELF_INVALID");
      // Prelink may have moved the file: .stapsdt.base's address now vs then.
      if (base && noteBase !== 0n) pc = pc + base.addr - noteBase;
      out.push({ provider: strs[0]!, name: strs[1]!, pc, semaphore, args: strs[2]! });
    }
    at = next;
  }
  return out;
}

/** The function holding `pc` (from .symtab, else .dynsym), for the hook engine's boundary check. */
export function enclosingFunction(image: ElfImage, pc: bigint, cache: Map<string, ElfSymbol[]>): ElfSymbol | undefined {
  for (const table of [".symtab", ".dynsym"] as const) {
    let syms = cache.get(table);
    if (!syms) {
      syms = readSymbols(image, table, "functions");
      cache.set(table, syms);
    }
    const f = syms.find((s) => s.kind === "func" && s.size > 0n && pc >= s.value && pc < s.value + s.size);
    if (f) return f;
  }
  return undefined;
}

/** The link-time address of data symbol `name` (for `sym(%rip)` arguments). */
export function dataSymbol(image: ElfImage, name: string): bigint | undefined {
  for (const table of [".symtab", ".dynsym"] as const) {
    const s = readSymbols(image, table, { name }).find((x) => x.defined && x.name === name);
    if (s) return s.value;
  }
  return undefined;
}

/** The section holding link-time address `addr` (a semaphore must be in .probes). */
export function sectionAt(image: ElfImage, addr: bigint): string | undefined {
  return image.sections.find((s) => s.addr !== 0n && addr >= s.addr && addr < s.addr + s.size)?.name;
}
