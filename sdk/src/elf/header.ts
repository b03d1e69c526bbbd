/**
 * The ELF header, decoded without judging it: which classes, machines and
 * types a reader accepts, and what it says about the others, is that
 * reader's business (the loader wants EM_BPF ET_REL, the symbol service
 * x86-64 executables and libraries).
 */
import { ByteReader } from "./byte-reader.js";
import type { ByteSource } from "./byte-source.js";
import { ELF_HEADER_SIZE, PN_XNUM, SHN_XINDEX } from "./constants.js";

export interface ElfHeader {
  /** e_ident: magic, class, data encoding, version, OS ABI. */
  readonly ident: Uint8Array;
  /** e_ident[EI_CLASS]: ELFCLASS64 = 2. */
  readonly class: number;
  /** e_ident[EI_DATA]: ELFDATA2LSB = 1. */
  readonly data: number;
  readonly type: number;
  readonly machine: number;
  readonly version: number;
  readonly entry: bigint;
  readonly phoff: bigint;
  readonly shoff: bigint;
  readonly flags: number;
  readonly ehsize: number;
  readonly phentsize: number;
  /** PN_XNUM: the count is in section header 0 (programCount). */
  readonly phnum: number;
  readonly shentsize: number;
  /** 0 with a section header table: the count is in section header 0 (sectionCounts). */
  readonly shnum: number;
  /** SHN_XINDEX: the index is in section header 0 (sectionCounts). */
  readonly shstrndx: number;
}

/** True when bytes start with \x7fELF. */
export function hasElfMagic(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/**
 * Reads the 64-byte ELF64 header. Fields are decoded little-endian whatever
 * EI_DATA says (e_machine sits at the same offset in every ELF, so a reader
 * can name the machine before refusing the class or byte order); check
 * `class` and `data` before trusting the rest.
 */
export function readElfHeader(source: ByteSource): ElfHeader {
  const r = new ByteReader(source.read(0, ELF_HEADER_SIZE, "ELF header"));
  return {
    ident: r.bytes.subarray(0, 16),
    class: r.u8(4),
    data: r.u8(5),
    type: r.u16(16),
    machine: r.u16(18),
    version: r.u32(20),
    entry: r.u64big(24),
    phoff: r.u64big(32),
    shoff: r.u64big(40),
    flags: r.u32(48),
    ehsize: r.u16(52),
    phentsize: r.u16(54),
    phnum: r.u16(56),
    shentsize: r.u16(58),
    shnum: r.u16(60),
    shstrndx: r.u16(62),
  };
}

/**
 * The section count and the section-name table's index: e_shnum and
 * e_shstrndx, or, where those overflow 16 bits, section header 0's sh_size
 * and sh_link. `r` holds section header 0 at `at` (e_shoff for a whole file).
 */
export function sectionCounts(r: ByteReader, header: ElfHeader, at: number): { count: number; namesIndex: number } {
  const count = header.shnum === 0 ? r.u64(at + 32, "section 0 sh_size") : header.shnum;
  const namesIndex = header.shstrndx === SHN_XINDEX ? r.u32(at + 40, "section 0 sh_link") : header.shstrndx;
  return { count, namesIndex };
}

/** The program header count: e_phnum, or section header 0's sh_info where it is PN_XNUM. */
export function programCount(r: ByteReader, header: ElfHeader, at: number): number {
  return header.phnum === PN_XNUM ? r.u32(at + 44, "section 0 sh_info") : header.phnum;
}
