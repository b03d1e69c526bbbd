/**
 * What the loader takes from an ELF file: clang's `-target bpf` output, a
 * little-endian relocatable ELF64 (ET_REL, EM_BPF). The SDK's ELF layer
 * decodes the records; this module decides what is accepted, keeps each
 * section's bytes, resolves names and symbols, and words every problem
 * through LoadContext (the readers' out-of-bounds callbacks call it, so a
 * short or lying file is an ELF_INVALID BpfhookError, never a RangeError).
 * Program headers and dynamic tables, which only linked files have, are
 * not read.
 */
import {
  ByteReader,
  EM_BPF,
  ELF_HEADER_SIZE,
  ELFCLASS64,
  ELFDATA2LSB,
  ET_REL,
  SECTION_HEADER_SIZE,
  SHN_LORESERVE,
  SHN_UNDEF,
  SHN_XINDEX,
  SHT_NOBITS,
  SHT_NULL,
  SHT_REL,
  SHT_RELA,
  SHT_STRTAB,
  SHT_SYMTAB,
  STT_SECTION,
  StringTable,
  SYMBOL_SIZE,
  SymbolTable,
  hasElfMagic,
  readElfHeader,
  readRelocationEntry,
  readSectionHeaders,
  relocationEntrySize,
  sectionCounts,
} from "@bpfhook/sdk";
import type { LoadContext } from "./context.js";

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

  if (!hasElfMagic(bytes)) ctx.invalid("not an ELF file (bad magic)");
  if (bytes.byteLength < ELF_HEADER_SIZE) ctx.invalid(`truncated ELF header (${bytes.byteLength} of ${ELF_HEADER_SIZE} bytes)`);
  const header = readElfHeader(r);
  // e_machine sits at the same offset for 32- and 64-bit ELF, so check it
  // first: "this is an x86 object" is the most useful thing to tell someone.
  if (header.machine !== EM_BPF) ctx.unsupported(`not an eBPF ELF object (e_machine ${header.machine}, expected ${EM_BPF})`);
  if (header.class !== ELFCLASS64) ctx.unsupported(`not a 64-bit ELF (EI_CLASS ${header.class})`);
  if (header.data !== ELFDATA2LSB) {
    ctx.unsupported("big-endian eBPF objects (-target bpfeb) are not supported; build with -target bpf on a little-endian host");
  }
  if (header.type !== ET_REL) ctx.unsupported(`not a relocatable object (e_type ${header.type}, expected ${ET_REL}); pass the .o from clang -c`);

  const shoff = r.safeNumber(header.shoff, "e_shoff");
  if (shoff === 0) ctx.invalid("no section header table");
  if (header.shentsize !== SECTION_HEADER_SIZE) ctx.invalid(`unexpected section header size ${header.shentsize}`);
  const { count, namesIndex } = sectionCounts(r, header, shoff);
  const headers = readSectionHeaders(r, shoff, count, "section header table");

  const raw: Omit<ElfSection, "name">[] = headers.map((h, i) => {
    // The order of these checks decides which fault of a corrupt file is reported; keep it.
    const offset = r.safeNumber(h.offset, "sh_offset");
    const size = r.safeNumber(h.size, "sh_size");
    const data = h.type === SHT_NOBITS || h.type === SHT_NULL ? new Uint8Array(0) : r.read(offset, size, `contents of section ${i}`);
    return {
      index: i,
      type: h.type,
      flags: r.safeNumber(h.flags, "sh_flags"),
      offset,
      size,
      link: h.link,
      info: h.info,
      entsize: r.safeNumber(h.entsize, "sh_entsize"),
      data,
    };
  });

  const shstr = raw[namesIndex];
  if (shstr === undefined || shstr.type !== SHT_STRTAB) ctx.invalid(`bad section name table index ${namesIndex}`);
  const names = new StringTable(shstr.data, (what) => ctx.invalid(`bad section name: ${what}`));
  const sections: ElfSection[] = raw.map((s, i) => ({ ...s, name: names.name(headers[i]!.nameOffset, "section name") }));

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
  if (symtab.entsize !== SYMBOL_SIZE || symtab.size % SYMBOL_SIZE !== 0) ctx.invalid(`bad symbol entry size ${symtab.entsize}`, where);
  const strtab = sections[symtab.link];
  if (strtab === undefined || strtab.type !== SHT_STRTAB) ctx.invalid(`symbol table links to section ${symtab.link}, not a string table`, where);

  const r = new ByteReader(symtab.data, (what) => ctx.invalid(`truncated symbol table: ${what}`, where));
  const table = new SymbolTable(r);
  const strings = new StringTable(strtab.data, (what) => ctx.invalid(`bad symbol name: ${what}`, where));
  const symbols: ElfSymbol[] = [];
  for (let i = 0; i < table.count; i++) {
    const entry = table.entry(i);
    const shndx = entry.shndx;
    const symbol: ElfSymbol = {
      index: i,
      name: strings.name(entry.nameOffset, "symbol name"),
      bind: entry.bind,
      type: entry.type,
      shndx,
      value: r.safeNumber(entry.value, "st_value"),
      size: r.safeNumber(entry.size, "st_size"),
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
    const entry = relocationEntrySize(s.type);
    if (s.size % entry !== 0) ctx.invalid(`relocation section size ${s.size} is not a multiple of ${entry}`, where);
    const target = sections[s.info];
    if (target === undefined || s.info === 0) ctx.invalid(`relocation section applies to missing section ${s.info}`, where);
    const r = new ByteReader(s.data, (what) => ctx.invalid(`truncated relocations: ${what}`, where));
    const list: ElfRelocation[] = out.get(s.info) ?? [];
    for (let o = 0; o < s.size; o += entry) {
      const e = readRelocationEntry(r, o, s.type);
      const offset = r.safeNumber(e.offset, "r_offset");
      const symbol = symbols[e.symbol];
      if (symbol === undefined) ctx.invalid(`relocation at 0x${offset.toString(16)} uses symbol ${e.symbol}, which does not exist`, where);
      const rel: ElfRelocation = { offset, type: e.type, symbol };
      if (e.addend !== undefined) rel.addend = e.addend;
      list.push(rel);
    }
    out.set(s.info, list);
  }
  return out;
}
