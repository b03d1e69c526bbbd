/** The program header table: the segments a loader maps (PT_LOAD) and the rest. */
import type { ByteReader } from "./byte-reader.js";
import type { ByteSource } from "./byte-source.js";
import { PROGRAM_HEADER_SIZE } from "./constants.js";
import { readRecords } from "./records.js";

export interface ElfProgramHeader {
  readonly type: number;
  /** PF_X = 1, PF_W = 2, PF_R = 4. */
  readonly flags: number;
  readonly offset: bigint;
  readonly vaddr: bigint;
  readonly paddr: bigint;
  readonly filesz: bigint;
  readonly memsz: bigint;
  readonly align: bigint;
}

/** Reads `count` program headers at `offset`; `what` names the table in the error when it is not all there. */
export function readProgramHeaders(source: ByteSource, offset: number, count: number, what: string): ElfProgramHeader[] {
  return readRecords(source, offset, count, PROGRAM_HEADER_SIZE, what, decodeProgramHeader);
}

function decodeProgramHeader(r: ByteReader, p: number): ElfProgramHeader {
  return {
    type: r.u32(p),
    flags: r.u32(p + 4),
    offset: r.u64big(p + 8),
    vaddr: r.u64big(p + 16),
    paddr: r.u64big(p + 24),
    filesz: r.u64big(p + 32),
    memsz: r.u64big(p + 40),
    align: r.u64big(p + 48),
  };
}
