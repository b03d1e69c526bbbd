/** Symbol table sections (SHT_SYMTAB, SHT_DYNSYM), entries as stored. */
import type { ByteReader } from "./byte-reader.js";
import { SYMBOL_SIZE } from "./constants.js";

export interface ElfSymbolEntry {
  /** st_name: offset into the string table the symbol table's sh_link names. */
  readonly nameOffset: number;
  /** STB_*, st_info >> 4. */
  readonly bind: number;
  /** STT_*, st_info & 0xf. */
  readonly type: number;
  /** st_other: the visibility. */
  readonly other: number;
  /** Section index, or SHN_UNDEF (imports, externs) or another SHN_* value. */
  readonly shndx: number;
  readonly value: bigint;
  readonly size: bigint;
}

/**
 * One symbol table, read entry by entry. Besides whole entries it reads
 * single fields, so a scan of node's 185k symbols for a few can skip the
 * rest without decoding them.
 */
export class SymbolTable {
  /** `section` holds the table's bytes; reads outside them go to its out-of-bounds handler. */
  constructor(private readonly section: ByteReader) {}

  /** Entries, the reserved null symbol (entry 0) included; a trailing partial entry does not count. */
  get count(): number {
    return Math.floor(this.section.length / SYMBOL_SIZE);
  }

  /** STT_* of entry `index`. */
  type(index: number): number {
    return this.section.u8(index * SYMBOL_SIZE + 4) & 0xf;
  }

  shndx(index: number): number {
    return this.section.u16(index * SYMBOL_SIZE + 6);
  }

  nameOffset(index: number): number {
    return this.section.u32(index * SYMBOL_SIZE);
  }

  entry(index: number): ElfSymbolEntry {
    const o = index * SYMBOL_SIZE;
    const info = this.section.u8(o + 4);
    return {
      nameOffset: this.section.u32(o),
      bind: info >> 4,
      type: info & 0xf,
      other: this.section.u8(o + 5),
      shndx: this.section.u16(o + 6),
      value: this.section.u64big(o + 8),
      size: this.section.u64big(o + 16),
    };
  }
}
