/**
 * Names of the assembly syntax (the `-- asm` dialect of the bpf_conformance
 * suite) next to the numbers they stand for. The assembler reads these tables
 * forwards and the disassembler backwards, so the two cannot drift apart.
 */
import { AluOp, AtomicOp, JmpOp, Size } from "./opcodes.js";

/** Two-operand ALU mnemonics ("add" / "add32"); sdiv and smod set off = 1. */
export const ALU_BINARY: ReadonlyMap<string, { op: number; off: number }> = new Map([
  ["add", { op: AluOp.ADD, off: 0 }],
  ["sub", { op: AluOp.SUB, off: 0 }],
  ["mul", { op: AluOp.MUL, off: 0 }],
  ["div", { op: AluOp.DIV, off: 0 }],
  ["sdiv", { op: AluOp.DIV, off: 1 }],
  ["or", { op: AluOp.OR, off: 0 }],
  ["and", { op: AluOp.AND, off: 0 }],
  ["lsh", { op: AluOp.LSH, off: 0 }],
  ["rsh", { op: AluOp.RSH, off: 0 }],
  ["mod", { op: AluOp.MOD, off: 0 }],
  ["smod", { op: AluOp.MOD, off: 1 }],
  ["xor", { op: AluOp.XOR, off: 0 }],
  ["mov", { op: AluOp.MOV, off: 0 }],
  ["arsh", { op: AluOp.ARSH, off: 0 }],
]);

/** Conditional jumps ("jeq" / "jeq32"). */
export const JMP_COND: ReadonlyMap<string, number> = new Map([
  ["jeq", JmpOp.JEQ],
  ["jgt", JmpOp.JGT],
  ["jge", JmpOp.JGE],
  ["jset", JmpOp.JSET],
  ["jne", JmpOp.JNE],
  ["jsgt", JmpOp.JSGT],
  ["jsge", JmpOp.JSGE],
  ["jlt", JmpOp.JLT],
  ["jle", JmpOp.JLE],
  ["jslt", JmpOp.JSLT],
  ["jsle", JmpOp.JSLE],
]);

/** Access-size suffixes of ldx / st / stx ("ldxdw"). */
export const SIZES: ReadonlyMap<string, number> = new Map([
  ["b", Size.B],
  ["h", Size.H],
  ["w", Size.W],
  ["dw", Size.DW],
]);

/** Widths of the sign-extending move (movsx832 = from 8 bits, into 32). */
export const MOVSX_FROM = [8, 16, 32] as const;

/** Widths accepted by le / be / bswap. */
export const ENDIAN_WIDTHS = [16, 32, 64] as const;

/** Atomic operations after "lock" ("lock fetch add32 [...], %r1"). */
export const ATOMIC_OPS: ReadonlyMap<string, number> = new Map([
  ["add", AtomicOp.ADD],
  ["or", AtomicOp.OR],
  ["and", AtomicOp.AND],
  ["xor", AtomicOp.XOR],
  ["xchg", AtomicOp.XCHG],
  ["cmpxchg", AtomicOp.CMPXCHG],
]);

/** Keywords for lddw's pseudo forms (src 1..6), so relocated programs print. */
export const LDDW_PSEUDO: ReadonlyMap<string, number> = new Map([
  ["map_fd", 1],
  ["map_value", 2],
  ["btf_id", 3],
  ["func", 4],
  ["map_idx", 5],
  ["map_idx_value", 6],
]);

/** Pseudo forms whose second slot's imm is an offset into the value. */
export const LDDW_PSEUDO_WITH_OFFSET: ReadonlySet<number> = new Set([2, 6]);

/** The first name in `table` whose value passes `match` (for the disassembler). */
export function nameOf<V>(table: ReadonlyMap<string, V>, match: (v: V) => boolean): string | undefined {
  for (const [name, v] of table) if (match(v)) return name;
  return undefined;
}
