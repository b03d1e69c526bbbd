/**
 * The little of ELF that symbol resolution needs, read from a file in pieces
 * at offsets (an executable like node is ~100 MB with debug info, of which
 * the tables are a few MB): the header, the PT_LOAD program headers (for the
 * load bias and file-offset translation), the section headers, and the
 * .dynsym / .symtab symbol tables with their string tables. ELF64
 * little-endian only (x86-64's format).
 *
 * The records are decoded by ../elf (shared with core's loader); this module
 * decides what it accepts and turns every ElfFormatError into a SymbolError
 * that names the file. Tables of system files are taken as found: a name
 * outside its string table reads as "" instead of failing the file.
 */
// Imported from the modules, not the ../elf barrel: CommonJS re-exports are
// getters, and the symbol scan reads these constants 185k times for node.
import { ByteReader } from "../elf/byte-reader.js";
import { FileSource, type ByteSource } from "../elf/byte-source.js";
import {
  ELFCLASS64,
  ELFDATA2LSB,
  ET_DYN,
  ET_EXEC,
  PN_XNUM,
  PROGRAM_HEADER_SIZE,
  PT_LOAD,
  SECTION_HEADER_SIZE,
  SHN_UNDEF,
  SHN_XINDEX,
  SHT_DYNSYM,
  SHT_GNU_VERSYM,
  SHT_NOBITS,
  SHT_SYMTAB,
  STB_GLOBAL,
  STB_LOCAL,
  STB_WEAK,
  STT_FUNC,
  STT_GNU_IFUNC,
  STT_OBJECT,
  VERSYM_HIDDEN,
} from "../elf/constants.js";
import { ElfFormatError } from "../elf/errors.js";
import { hasElfMagic, programCount, readElfHeader, sectionCounts } from "../elf/header.js";
import { readProgramHeaders } from "../elf/program-headers.js";
import { readSectionHeaders } from "../elf/section-headers.js";
import { StringTable } from "../elf/string-table.js";
import { SymbolTable, type ElfSymbolEntry } from "../elf/symbols.js";
import { symbolError } from "./errors.js";

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
  return withFile(path, (file) => {
    const eh = readElfHeader(file);
    if (!hasElfMagic(eh.ident)) throw new ElfFormatError("ELF_INVALID", "not an ELF file");
    if (eh.class !== ELFCLASS64 || eh.data !== ELFDATA2LSB) {
      throw new ElfFormatError("ELF_UNSUPPORTED", "only 64-bit little-endian ELF is supported");
    }
    if (eh.type !== ET_EXEC && eh.type !== ET_DYN) {
      throw new ElfFormatError("ELF_UNSUPPORTED", `ELF type ${eh.type} is neither an executable nor a shared object`);
    }
    const phoff = Number(eh.phoff);
    const shoff = Number(eh.shoff);
    if (shoff !== 0 && eh.shentsize !== SECTION_HEADER_SIZE) throw new ElfFormatError("ELF_INVALID", "unexpected section header size");
    if (eh.phnum !== 0 && eh.phentsize !== PROGRAM_HEADER_SIZE) throw new ElfFormatError("ELF_INVALID", "unexpected program header size");
    // Counts that overflow 16 bits live in section header 0.
    let counts = { count: eh.shnum, namesIndex: eh.shstrndx };
    let phnum = eh.phnum;
    if (shoff !== 0 && (eh.shnum === 0 || eh.shstrndx === SHN_XINDEX || eh.phnum === PN_XNUM)) {
      const sh0 = new ByteReader(file.read(shoff, SECTION_HEADER_SIZE, "section header 0"));
      counts = sectionCounts(sh0, eh, 0);
      phnum = programCount(sh0, eh, 0);
    }

    const loads: ElfLoadSegment[] = [];
    if (phnum > 0) {
      for (const ph of readProgramHeaders(file, phoff, phnum, "program headers")) {
        if (ph.type !== PT_LOAD) continue;
        loads.push({ flags: ph.flags, offset: ph.offset, vaddr: ph.vaddr, filesz: ph.filesz, memsz: ph.memsz });
      }
    }

    const sections: ElfSection[] = [];
    if (shoff !== 0 && counts.count > 0) {
      const headers = readSectionHeaders(file, shoff, counts.count, "section headers");
      const strSec = headers[counts.namesIndex];
      const names =
        strSec && strSec.type !== SHT_NOBITS ? new StringTable(readSection(file, strSec, "section names")) : undefined;
      headers.forEach((h, index) => {
        sections.push({
          index,
          name: names ? names.nameOrEmpty(h.nameOffset) : "",
          type: h.type,
          addr: h.addr,
          offset: h.offset,
          size: h.size,
          link: h.link,
          entsize: h.entsize,
        });
      });
    }
    return {
      path,
      type: eh.type === ET_EXEC ? "exec" : "dyn",
      machine: eh.machine,
      entry: eh.entry,
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
  const wanted = which === "functions" ? undefined : new TextEncoder().encode(which.name);

  return withFile(image.path, (file) => {
    const syms = new SymbolTable(new ByteReader(readSection(file, sec, table)));
    const strs = new StringTable(readSection(file, strSec, `${table} strings`));
    const vers = versym ? new ByteReader(readSection(file, versym, ".gnu.version")) : undefined;
    const out: ElfSymbol[] = [];
    // Entry 0 is the reserved null symbol. Entries are filtered on single
    // fields first: most of a big table is skipped without being decoded.
    for (let i = 1; i < syms.count; i++) {
      const type = syms.type(i);
      const shndx = syms.shndx(i);
      if (wanted === undefined && (shndx === SHN_UNDEF || (type !== STT_FUNC && type !== STT_GNU_IFUNC))) continue;
      const nameOffset = syms.nameOffset(i);
      if (wanted !== undefined && !nameMatches(strs.bytes, nameOffset, wanted)) continue;
      const name = stripVersion(strs.nameOrEmpty(nameOffset));
      if (name === "") continue;
      const entry = syms.entry(i);
      out.push({
        name,
        value: entry.value,
        size: entry.size,
        kind: kindOf(entry),
        bind: bindOf(entry),
        defined: shndx !== SHN_UNDEF,
        hiddenVersion: vers !== undefined && 2 * i + 1 < vers.length && (vers.u16(2 * i) & VERSYM_HIDDEN) !== 0,
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

/**
 * Opens `path` and runs `use`; the file missing is NOT_FOUND, and an
 * ElfFormatError becomes a SymbolError whose message starts with the path.
 */
function withFile<T>(path: string, use: (file: ByteSource) => T): T {
  let file: FileSource;
  try {
    file = FileSource.open(path);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw symbolError("NOT_FOUND", `cannot open ${path} to read its symbols (${why})`, { file: path });
  }
  try {
    return use(file);
  } catch (err) {
    if (err instanceof ElfFormatError) throw symbolError(err.code, `${path}: ${err.message}`, { file: path });
    throw err;
  } finally {
    file.close();
  }
}

/** A section's bytes as the header places them (the section header's numbers, taken as they are). */
function readSection(file: ByteSource, section: { readonly offset: bigint; readonly size: bigint }, what: string): Uint8Array {
  return file.read(Number(section.offset), Number(section.size), what);
}

function kindOf(entry: ElfSymbolEntry): ElfSymbolKind {
  const { type } = entry;
  return type === STT_FUNC ? "func" : type === STT_GNU_IFUNC ? "ifunc" : type === STT_OBJECT ? "object" : "other";
}

function bindOf(entry: ElfSymbolEntry): ElfSymbolBind {
  const { bind } = entry;
  return bind === STB_LOCAL ? "local" : bind === STB_GLOBAL ? "global" : bind === STB_WEAK ? "weak" : "other";
}

/** Compares a table name with `wanted` without decoding it; "name@VER" matches too. */
function nameMatches(strs: Uint8Array, offset: number, wanted: Uint8Array): boolean {
  if (offset + wanted.length > strs.length) return false;
  for (let k = 0; k < wanted.length; k++) if (strs[offset + k] !== wanted[k]) return false;
  const next = strs[offset + wanted.length];
  return next === 0 || next === 0x40 /* '@' */ || next === undefined;
}
