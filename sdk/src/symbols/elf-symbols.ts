/**
 * The little of ELF that symbol resolution needs, read straight from a file:
 * the header, the PT_LOAD program headers (for the load bias and file-offset
 * translation), the section headers, and the .dynsym / .symtab symbol tables
 * with their string tables. ELF64 little-endian only (x86-64's format).
 *
 * Files are read piecewise at offsets, never whole: an executable like node
 * is ~100 MB with debug info, of which the tables are a few MB.
 *
 * Self-contained on purpose (no core import); core/src/loader/elf.ts reads
 * BPF objects and the two may be unified later.
 */
import fs from "node:fs";
import { symbolError } from "./errors.js";

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;

const ET_EXEC = 2;
const ET_DYN = 3;
const PT_LOAD = 1;
const PN_XNUM = 0xffff;
const SHN_UNDEF = 0;
const SHN_XINDEX = 0xffff;
const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const SHT_DYNSYM = 11;
const SHT_GNU_VERSYM = 0x6fffffff;
/** In a .gnu.version entry: the symbol's version is not the default one. */
const VERSYM_HIDDEN = 0x8000;

const STT_OBJECT = 1;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const STB_LOCAL = 0;
const STB_GLOBAL = 1;
const STB_WEAK = 2;

export type ElfType = "exec" | "dyn";
export type SymbolTableName = ".dynsym" | ".symtab";
/** "ifunc": the value is an IFUNC resolver, which returns the real function. */
export type ElfSymbolKind = "func" | "ifunc" | "object" | "other";
export type ElfSymbolBind = "local" | "global" | "weak" | "other";

export interface ElfLoadSegment {
  readonly offset: bigint;
  readonly vaddr: bigint;
  readonly filesz: bigint;
  readonly memsz: bigint;
  /** PF_X = 1, PF_W = 2, PF_R = 4. */
  readonly flags: number;
}

export interface ElfSection {
  readonly index: number;
  readonly name: string;
  readonly type: number;
  readonly addr: bigint;
  readonly offset: bigint;
  readonly size: bigint;
  readonly link: number;
  readonly entsize: bigint;
}

export interface ElfImage {
  /** The file that was read. */
  readonly path: string;
  readonly type: ElfType;
  /** e_machine (62 for x86-64). */
  readonly machine: number;
  readonly entry: bigint;
  /** PT_LOAD segments in file order. */
  readonly loads: readonly ElfLoadSegment[];
  readonly sections: readonly ElfSection[];
}

export interface ElfSymbol {
  /** The name as stored; a "@VERSION" suffix (rare in tables) is cut off. */
  readonly name: string;
  readonly value: bigint;
  readonly size: bigint;
  readonly kind: ElfSymbolKind;
  readonly bind: ElfSymbolBind;
  /** False for imports (st_shndx == SHN_UNDEF). */
  readonly defined: boolean;
  /**
   * .gnu.version marks this a non-default version (glibc's old
   * memcpy@GLIBC_2.2.5 next to the default memcpy@@GLIBC_2.14).
   */
  readonly hiddenVersion: boolean;
  readonly table: SymbolTableName;
}

/** Reads the headers of an ELF file; throws ELF_INVALID / ELF_UNSUPPORTED / NOT_FOUND. */
export function readElfImage(path: string): ElfImage {
  return withFile(path, (read) => {
    const eh = read(0, EHDR_SIZE, "ELF header");
    if (eh.readUInt32BE(0) !== 0x7f454c46) throw symbolError("ELF_INVALID", `${path}: not an ELF file`, { file: path });
    if (eh[4] !== 2 || eh[5] !== 1) {
      throw symbolError("ELF_UNSUPPORTED", `${path}: only 64-bit little-endian ELF is supported`, { file: path });
    }
    const etype = eh.readUInt16LE(16);
    if (etype !== ET_EXEC && etype !== ET_DYN) {
      throw symbolError("ELF_UNSUPPORTED", `${path}: ELF type ${etype} is neither an executable nor a shared object`, {
        file: path,
      });
    }
    const phoff = Number(eh.readBigUInt64LE(32));
    const shoff = Number(eh.readBigUInt64LE(40));
    let phnum = eh.readUInt16LE(56);
    let shnum = eh.readUInt16LE(60);
    let shstrndx = eh.readUInt16LE(62);
    if (shoff !== 0 && eh.readUInt16LE(58) !== SHDR_SIZE) {
      throw symbolError("ELF_INVALID", `${path}: unexpected section header size`, { file: path });
    }
    if (phnum !== 0 && eh.readUInt16LE(54) !== PHDR_SIZE) {
      throw symbolError("ELF_INVALID", `${path}: unexpected program header size`, { file: path });
    }
    // Counts that overflow 16 bits live in section header 0.
    if (shoff !== 0 && (shnum === 0 || shstrndx === SHN_XINDEX || phnum === PN_XNUM)) {
      const sh0 = read(shoff, SHDR_SIZE, "section header 0");
      if (shnum === 0) shnum = Number(sh0.readBigUInt64LE(32));
      if (shstrndx === SHN_XINDEX) shstrndx = sh0.readUInt32LE(40);
      if (phnum === PN_XNUM) phnum = sh0.readUInt32LE(44);
    }

    const loads: ElfLoadSegment[] = [];
    if (phnum > 0) {
      const ph = read(phoff, phnum * PHDR_SIZE, "program headers");
      for (let i = 0; i < phnum; i++) {
        const o = i * PHDR_SIZE;
        if (ph.readUInt32LE(o) !== PT_LOAD) continue;
        loads.push({
          flags: ph.readUInt32LE(o + 4),
          offset: ph.readBigUInt64LE(o + 8),
          vaddr: ph.readBigUInt64LE(o + 16),
          filesz: ph.readBigUInt64LE(o + 32),
          memsz: ph.readBigUInt64LE(o + 40),
        });
      }
    }

    const sections: ElfSection[] = [];
    if (shoff !== 0 && shnum > 0) {
      const sh = read(shoff, shnum * SHDR_SIZE, "section headers");
      const raw = [];
      for (let i = 0; i < shnum; i++) {
        const o = i * SHDR_SIZE;
        raw.push({
          nameOff: sh.readUInt32LE(o),
          type: sh.readUInt32LE(o + 4),
          addr: sh.readBigUInt64LE(o + 16),
          offset: sh.readBigUInt64LE(o + 24),
          size: sh.readBigUInt64LE(o + 32),
          link: sh.readUInt32LE(o + 40),
          entsize: sh.readBigUInt64LE(o + 56),
        });
      }
      const strSec = raw[shstrndx];
      const names =
        strSec && strSec.type !== SHT_NOBITS
          ? read(Number(strSec.offset), Number(strSec.size), "section names")
          : undefined;
      raw.forEach((r, index) => {
        const { nameOff, ...rest } = r;
        sections.push({ index, name: names ? cString(names, nameOff) : "", ...rest });
      });
    }
    return {
      path,
      type: etype === ET_EXEC ? "exec" : "dyn",
      machine: eh.readUInt16LE(18),
      entry: eh.readBigUInt64LE(24),
      loads,
      sections,
    };
  });
}

/** The symbol tables the file has, .dynsym first. */
export function symbolTables(image: ElfImage): SymbolTableName[] {
  const out: SymbolTableName[] = [];
  if (image.sections.some((s) => s.type === SHT_DYNSYM)) out.push(".dynsym");
  if (image.sections.some((s) => s.type === SHT_SYMTAB)) out.push(".symtab");
  return out;
}

/**
 * Reads one symbol table. `which` = "functions" keeps defined STT_FUNC and
 * STT_GNU_IFUNC symbols (what probes attach to); { name } keeps every entry
 * with that name, of any kind, for error messages that say what a name is.
 */
export function readSymbols(
  image: ElfImage,
  table: SymbolTableName,
  which: "functions" | { readonly name: string },
): ElfSymbol[] {
  const sec = image.sections.find((s) => s.type === (table === ".dynsym" ? SHT_DYNSYM : SHT_SYMTAB));
  if (!sec || sec.type === SHT_NOBITS || sec.size === 0n) return [];
  const strSec = image.sections[sec.link];
  if (!strSec) {
    throw symbolError("ELF_INVALID", `${image.path}: ${table} links to a missing string table`, { file: image.path });
  }
  const versym =
    table === ".dynsym"
      ? image.sections.find((s) => s.type === SHT_GNU_VERSYM && s.link === sec.index)
      : undefined;
  const wanted = which === "functions" ? undefined : Buffer.from(which.name, "utf8");

  return withFile(image.path, (read) => {
    const syms = read(Number(sec.offset), Number(sec.size), table);
    const strs = read(Number(strSec.offset), Number(strSec.size), `${table} strings`);
    const vers = versym ? read(Number(versym.offset), Number(versym.size), ".gnu.version") : undefined;
    const count = Math.floor(syms.length / SYM_SIZE);
    const out: ElfSymbol[] = [];
    // Entry 0 is the reserved null symbol.
    for (let i = 1; i < count; i++) {
      const o = i * SYM_SIZE;
      const info = syms[o + 4]!;
      const type = info & 0xf;
      const shndx = syms.readUInt16LE(o + 6);
      if (wanted === undefined && (shndx === SHN_UNDEF || (type !== STT_FUNC && type !== STT_GNU_IFUNC))) continue;
      const nameOff = syms.readUInt32LE(o);
      if (wanted !== undefined && !nameMatches(strs, nameOff, wanted)) continue;
      const name = stripVersion(cString(strs, nameOff));
      if (name === "") continue;
      const bind = info >> 4;
      out.push({
        name,
        value: syms.readBigUInt64LE(o + 8),
        size: syms.readBigUInt64LE(o + 16),
        kind: type === STT_FUNC ? "func" : type === STT_GNU_IFUNC ? "ifunc" : type === STT_OBJECT ? "object" : "other",
        bind: bind === STB_LOCAL ? "local" : bind === STB_GLOBAL ? "global" : bind === STB_WEAK ? "weak" : "other",
        defined: shndx !== SHN_UNDEF,
        hiddenVersion: vers !== undefined && 2 * i + 1 < vers.length && (vers.readUInt16LE(2 * i) & VERSYM_HIDDEN) !== 0,
        table,
      });
    }
    return out;
  });
}

/** The file offset holding link-time address `vaddr`, if a PT_LOAD maps it from the file. */
export function vaddrToFileOffset(image: ElfImage, vaddr: bigint): bigint | undefined {
  const seg = image.loads.find((l) => vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz);
  return seg ? seg.offset + (vaddr - seg.vaddr) : undefined;
}

/** The link-time address of file offset `offset`, if a PT_LOAD maps it. */
export function fileOffsetToVaddr(image: ElfImage, offset: bigint): ElfLoadSegment & { readonly at: bigint } | undefined {
  const seg = image.loads.find((l) => offset >= l.offset && offset < l.offset + l.filesz);
  return seg ? { ...seg, at: seg.vaddr + (offset - seg.offset) } : undefined;
}

/** "malloc@@GLIBC_2.2.5" -> "malloc"; names users give and names in tables alike. */
export function stripVersion(name: string): string {
  const at = name.indexOf("@");
  return at > 0 ? name.slice(0, at) : name;
}

type Reader = (offset: number, length: number, what: string) => Buffer;

function withFile<T>(path: string, use: (read: Reader) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw symbolError("NOT_FOUND", `cannot open ${path} to read its symbols (${why})`, { file: path });
  }
  try {
    return use((offset, length, what) => {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const n = fs.readSync(fd, buf, got, length - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      if (got < length) {
        throw symbolError("ELF_INVALID", `${path}: truncated (${what} at offset ${offset}, ${length} bytes)`, { file: path });
      }
      return buf;
    });
  } finally {
    fs.closeSync(fd);
  }
}

function cString(buf: Buffer, offset: number): string {
  if (offset >= buf.length) return "";
  const end = buf.indexOf(0, offset);
  return buf.toString("utf8", offset, end < 0 ? buf.length : end);
}

/** Compares a table name with `wanted` without decoding it; "name@VER" matches too. */
function nameMatches(strs: Buffer, offset: number, wanted: Buffer): boolean {
  if (offset + wanted.length > strs.length) return false;
  if (strs.compare(wanted, 0, wanted.length, offset, offset + wanted.length) !== 0) return false;
  const next = strs[offset + wanted.length];
  return next === 0 || next === 0x40 /* '@' */ || next === undefined;
}
