/** The eBPF assembler and disassembler (bpf_conformance `-- asm` syntax). */
export { assemble, assembleBytes, type AssembleOptions } from "./assembler.js";
export { disassemble, disassembleLines, type DisassembleOptions, type DisasmLine } from "./disassembler.js";
export { decodeInsns, encodeInsns, insn, insnFromU64, insnToU64, type Insn } from "./insn.js";
export { formatRaw, parseRaw } from "./raw.js";
export * as opcodes from "./opcodes.js";
