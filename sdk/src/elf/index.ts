/**
 * ELF64 little-endian, read from a buffer or a file at offsets, with every
 * read bounds-checked: the one ELF layer of bpfhook. Core's loader reads
 * eBPF objects with it, the symbol service executables and libraries; each
 * decides what it accepts and how its errors read.
 */
export * from "./constants.js";
export { ElfFormatError } from "./errors.js";
export type { ElfErrorCode, ElfProblemDetail } from "./errors.js";
export { FileSource } from "./byte-source.js";
export type { ByteSource } from "./byte-source.js";
export { ByteReader } from "./byte-reader.js";
export type { OutOfBounds } from "./byte-reader.js";
export { hasElfMagic, readElfHeader, sectionCounts, programCount } from "./header.js";
export type { ElfHeader } from "./header.js";
export { readSectionHeaders } from "./section-headers.js";
export type { ElfSectionHeader } from "./section-headers.js";
export { readProgramHeaders } from "./program-headers.js";
export type { ElfProgramHeader } from "./program-headers.js";
export { StringTable } from "./string-table.js";
export { SymbolTable } from "./symbols.js";
export type { ElfSymbolEntry } from "./symbols.js";
export { readRelocationEntry, relocationEntrySize } from "./relocations.js";
export type { ElfRelocationEntry } from "./relocations.js";
