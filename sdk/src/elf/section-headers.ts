/** The section header table, as stored: names are offsets into the table e_shstrndx names. */
import type { ByteReader } from "./byte-reader.js";
import type { ByteSource } from "./byte-source.js";
import { SECTION_HEADER_SIZE } from "./constants.js";
import { readRecords } from "./records.js";

export interface ElfSectionHeader {
  /** sh_name: offset into the section-name string table. */
  readonly nameOffset: number;
  readonly type: number;
  /** The 64-bit fields stay bigints: readers that need numbers convert them with a check. */
  readonly flags: bigint;
  readonly addr: bigint;
  readonly offset: bigint;
  readonly size: bigint;
  readonly link: number;
  readonly info: number;
  readonly addralign: bigint;
  readonly entsize: bigint;
}

/** Reads `count` section headers at `offset`; `what` names the table in the error when it is not all there. */
export function readSectionHeaders(source: ByteSource, offset: number, count: number, what: string): ElfSectionHeader[] {
  return readRecords(source, offset, count, SECTION_HEADER_SIZE, what, decodeSectionHeader);
}

function decodeSectionHeader(r: ByteReader, h: number): ElfSectionHeader {
  return {
    nameOffset: r.u32(h),
    type: r.u32(h + 4),
    flags: r.u64big(h + 8),
    addr: r.u64big(h + 16),
    offset: r.u64big(h + 24),
    size: r.u64big(h + 32),
    link: r.u32(h + 40),
    info: r.u32(h + 44),
    addralign: r.u64big(h + 48),
    entsize: r.u64big(h + 56),
  };
}
