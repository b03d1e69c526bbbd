/**
 * A small ELF64 reader for what clang emits with `-target bpf`: a
 * little-endian relocatable object (ET_REL, EM_BPF). It reads section
 * headers, names, the symbol table and REL/RELA sections, and nothing that a
 * linked executable would need (program headers, dynamic tables).
 */
import { ByteReader } from "./bytes.js";
import type { LoadContext } from "./context.js";

export const EM_BPF = 247;
const ET_REL = 1;
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;

export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHT_REL = 9;

export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;

export const SHN_UNDEF = 0;
/** Reserved section indexes start here (ABS, COMMON, XINDEX...). */
const SHN_LORESERVE = 0xff00;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;
const SHN_XINDEX = 0xffff;

export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;

export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
  /** The section's bytes; empty for SHT_NOBITS (.bss has a size, no bytes). */
  data: Uint8Array;
}

export interface ElfSymbol {
  index: number;
  name: string;
  /** STB_* */
  bind: number;
  /** STT_* */
  type: number;
  /** Section index (SHN_UNDEF for externs). */
  shndx: number;
  value: number;
  size: number;
}

export interface ElfRelocation {
  /** Byte offset inside the section the relocations apply to. */
  offset: number;
  type: number;
  symbol: ElfSymbol;
  /** Explicit addend for RELA; REL (what clang emits for BPF) keeps it in place. */
  addend?: bigint;
}

export interface ElfFile {
  sections: ElfSection[];
  symbols: ElfSymbol[];
  /** Relocations keyed by the index of the section they patch. */
  relocations: Map<number, ElfRelocation[]>;
  sectionByName(name: string): ElfSection | undefined;
}

export function parseElf(input: Uint8Array, ctx: LoadContext): ElfFile {
  // A Node Buffer's slice() is a view, not a copy; later steps copy section
  // bytes with slice() before patching them, so read through a plain
  // Uint8Array whose slice() does copy and the caller's buffer stays intact.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const r = new ByteReader(bytes, (what) => ctx.invalid(`truncated or corrupt ELF: ${what}`));

  if (bytes.byteLength < 4 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    ctx.invalid("not an ELF file (bad magic)");
  }
  if (bytes.byteLength < EHDR_SIZE) ctx.invalid(`truncated ELF header (${bytes.byteLength} of ${EHDR_SIZE} bytes)`);
  // e_machine sits at the same offset for 32- and 64-bit ELF, so check it
  // first: "this is an x86 object" is the most useful thing to tell someone.
  const machine = r.u16(18);
  if (machine !== EM_BPF) ctx.unsupported(`not an eBPF ELF object (e_machine ${machine}, expected ${EM_BPF})`);
  if (r.u8(4) !== ELFCLASS64) ctx.unsupported(`not a 64-bit ELF (EI_CLASS ${r.u8(4)})`);
  if (r.u8(5) !== ELFDATA2LSB) {
    ctx.unsupported("big-endian eBPF objects (-target bpfeb) are not supported; build with -target bpf on a little-endian host");
  }
  const type = r.u16(16);
  if (type !== ET_REL) ctx.unsupported(`not a relocatable object (e_type ${type}, expected ${ET_REL}); pass the .o from clang -c`);

  const shoff = r.u64(40, "e_shoff");
  const shentsize = r.u16(58, "e_shentsize");
  let shnum = r.u16(60, "e_shnum");
  let shstrndx = r.u16(62, "e_shstrndx");
  if (shoff === 0) ctx.invalid("no section header table");
  if (shentsize !== SHDR_SIZE) ctx.invalid(`unexpected section header size ${shentsize}`);
  // Extended numbering: huge counts live in section 0's header.
  if (shnum === 0) shnum = r.u64(shoff + 32, "section 0 sh_size");
  if (shstrndx === SHN_XINDEX) shstrndx = r.u32(shoff + 40, "section 0 sh_link");
  r.check(shoff, shnum * SHDR_SIZE, "section header table");

  const raw: Omit<ElfSection, "name">[] = [];
  const nameOffsets: number[] = [];
  for (let i = 0; i < shnum; i++) {
    const h = shoff + i * SHDR_SIZE;
    nameOffsets.push(r.u32(h));
    const sectionType = r.u32(h + 4);
    const offset = r.u64(h + 24, "sh_offset");
    const size = r.u64(h + 32, "sh_size");
    const data =
      sectionType === SHT_NOBITS || sectionType === 0
        ? new Uint8Array(0)
        : r.slice(offset, size, `contents of section ${i}`).bytes;
    raw.push({
      index: i,
      type: sectionType,
      flags: r.u64(h + 8, "sh_flags"),
      offset,
      size,
      link: r.u32(h + 40),
      info: r.u32(h + 44),
      entsize: r.u64(h + 56, "sh_entsize"),
      data,
    });
  }

  const shstr = raw[shstrndx];
  if (shstr === undefined || shstr.type !== SHT_STRTAB) ctx.invalid(`bad section name table index ${shstrndx}`);
  const shstrReader = new ByteReader(shstr.data, (what) => ctx.invalid(`bad section name: ${what}`));
  const sections: ElfSection[] = raw.map((s, i) => ({ ...s, name: shstrReader.cstring(nameOffsets[i] ?? 0, "section name") }));

  const symbols = readSymbols(sections, ctx);
  const relocations = readRelocations(sections, symbols, ctx);
  const byName = new Map<string, ElfSection>();
  for (const s of sections) if (!byName.has(s.name)) byName.set(s.name, s);

  return { sections, symbols, relocations, sectionByName: (name) => byName.get(name) };
}

function readSymbols(sections: ElfSection[], ctx: LoadContext): ElfSymbol[] {
  const symtabs = sections.filter((s) => s.type === SHT_SYMTAB);
  if (symtabs.length === 0) return [];
  if (symtabs.length > 1) ctx.invalid("more than one symbol table");
  const symtab = symtabs[0]!;
  const where = { section: symtab.name };
  if (symtab.entsize !== SYM_SIZE || symtab.size % SYM_SIZE !== 0) ctx.invalid(`bad symbol entry size ${symtab.entsize}`, where);
  const strtab = sections[symtab.link];
  if (strtab === undefined || strtab.type !== SHT_STRTAB) ctx.invalid(`symbol table links to section ${symtab.link}, not a string table`, where);

  const r = new ByteReader(symtab.data, (what) => ctx.invalid(`truncated symbol table: ${what}`, where));
  const strings = new ByteReader(strtab.data, (what) => ctx.invalid(`bad symbol name: ${what}`, where));
  const symbols: ElfSymbol[] = [];
  for (let i = 0; i < symtab.size / SYM_SIZE; i++) {
    const o = i * SYM_SIZE;
    const info = r.u8(o + 4);
    const shndx = r.u16(o + 6);
    const symbol: ElfSymbol = {
      index: i,
      name: strings.cstring(r.u32(o), "symbol name"),
      bind: info >> 4,
      type: info & 0xf,
      shndx,
      value: r.u64(o + 8, "st_value"),
      size: r.u64(o + 16, "st_size"),
    };
    // Section symbols carry no name of their own; use the section's, which
    // is what every message about them wants to print.
    if (symbol.type === STT_SECTION && symbol.name === "" && shndx < sections.length) {
      symbol.name = sections[shndx]!.name;
    }
    if (shndx === SHN_XINDEX) ctx.unsupported("extended section indexes (SHT_SYMTAB_SHNDX) are not supported", { ...where, symbol: symbol.name });
    if (shndx !== SHN_UNDEF && shndx < SHN_LORESERVE && shndx >= sections.length) {
      ctx.invalid(`symbol refers to section ${shndx}, which does not exist`, { ...where, symbol: symbol.name });
    }
    symbols.push(symbol);
  }
  return symbols;
}

function readRelocations(sections: ElfSection[], symbols: ElfSymbol[], ctx: LoadContext): Map<number, ElfRelocation[]> {
  const out = new Map<number, ElfRelocation[]>();
  for (const s of sections) {
    if (s.type !== SHT_REL && s.type !== SHT_RELA) continue;
    const where = { section: s.name };
    const entry = s.type === SHT_REL ? 16 : 24;
    if (s.size % entry !== 0) ctx.invalid(`relocation section size ${s.size} is not a multiple of ${entry}`, where);
    const target = sections[s.info];
    if (target === undefined || s.info === 0) ctx.invalid(`relocation section applies to missing section ${s.info}`, where);
    const r = new ByteReader(s.data, (what) => ctx.invalid(`truncated relocations: ${what}`, where));
    const list: ElfRelocation[] = out.get(s.info) ?? [];
    for (let o = 0; o < s.size; o += entry) {
      const offset = r.u64(o, "r_offset");
      const info = r.u64big(o + 8, "r_info");
      const symIndex = Number(info >> 32n);
      const symbol = symbols[symIndex];
      if (symbol === undefined) ctx.invalid(`relocation at 0x${offset.toString(16)} uses symbol ${symIndex}, which does not exist`, where);
      const rel: ElfRelocation = { offset, type: Number(info & 0xffffffffn), symbol };
      if (s.type === SHT_RELA) rel.addend = r.i64(o + 16, "r_addend");
      list.push(rel);
    }
    out.set(s.info, list);
  }
  return out;
}
