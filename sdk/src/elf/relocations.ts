/** Entries of SHT_REL and SHT_RELA sections, as stored. */
import type { ByteReader } from "./byte-reader.js";
import { REL_SIZE, RELA_SIZE, SHT_RELA } from "./constants.js";

export interface ElfRelocationEntry {
  /** r_offset: where in the target section (sh_info) the patch goes. */
  readonly offset: bigint;
  /** ELF64_R_SYM(r_info): index into the symbol table (sh_link). */
  readonly symbol: number;
  /** ELF64_R_TYPE(r_info): machine-specific. */
  readonly type: number;
  /** r_addend, RELA only; REL keeps the addend in the patched bytes. */
  readonly addend?: bigint;
}

/** Bytes per entry of a relocation section of type `sectionType` (SHT_REL or SHT_RELA). */
export function relocationEntrySize(sectionType: number): number {
  return sectionType === SHT_RELA ? RELA_SIZE : REL_SIZE;
}

/** The entry at byte `at` of a relocation section's bytes. */
export function readRelocationEntry(section: ByteReader, at: number, sectionType: number): ElfRelocationEntry {
  const offset = section.u64big(at, "r_offset");
  const info = section.u64big(at + 8, "r_info");
  const entry = { offset, symbol: Number(info >> 32n), type: Number(info & 0xffffffffn) };
  return sectionType === SHT_RELA ? { ...entry, addend: section.i64(at + 16, "r_addend") } : entry;
}
