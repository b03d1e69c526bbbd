/**
 * Instructions back to the assembler's syntax. Every line is checked by
 * assembling it again: a slot whose text would not read back as the same
 * bytes (unknown opcodes, fields the syntax cannot spell, a torn lddw) is
 * printed as `.raw 0x...` instead, so disassemble -> assemble is exact for any
 * input, valid or not.
 */
import { decodeInsns, insnToU64, sameInsn, type Insn } from "./insn.js";
import { ALU_BINARY, ATOMIC_OPS, JMP_COND, LDDW_PSEUDO, LDDW_PSEUDO_WITH_OFFSET, nameOf, SIZES } from "./mnemonics.js";
import { AluOp, AtomicOp, CallKind, Cls, JmpOp, Mode, Op, Pseudo, Size, Src } from "./opcodes.js";
import { encodeStatement } from "./statement.js";
import { helperName } from "../kernel-names.js";

export interface DisassembleOptions {
  /** Name jump and call targets (L12:, fn20:) instead of printing +N offsets. */
  labels?: boolean;
  /** Add the helper's name as a comment to helper calls (`call 1  # bpf_map_lookup_elem`); the text still assembles. */
  helperNames?: boolean;
}

export interface DisasmLine {
  /** Index of the first slot. */
  pc: number;
  /** 1, or 2 for lddw. */
  slots: number;
  text: string;
  /** Label that names this pc, when labels are on and something jumps here. */
  label?: string;
}

interface Formatted {
  text: string;
  slots: number;
  /** Relative target printed at the end of `text` (jumps, local calls, lddw func). */
  rel?: number;
  isCall?: boolean;
  /** Helper id of a helper call. */
  helper?: number;
}

const reg = (n: number): string => `%r${n}`;
// Small values read best in decimal; large ones (masks, addresses) in hex.
const imm = (v: number): string => (Math.abs(v) < 0x10000 ? String(v) : `0x${(v >>> 0).toString(16)}`);
const rel = (v: number): string => (v < 0 ? String(v) : `+${v}`);
const mem = (r: number, off: number): string => `[${reg(r)}${off < 0 ? "-" : "+"}${Math.abs(off)}]`;
const sizeName = (opcode: number): string => nameOf(SIZES, (s) => s === (opcode & Size.MASK))!;

function formatAlu(i: Insn, cls: number): string | undefined {
  const op = i.opcode & AluOp.MASK;
  const x = (i.opcode & Src.X) !== 0;
  const suffix = cls === Cls.ALU ? "32" : "";
  if (op === AluOp.END) {
    const name = cls === Cls.ALU ? (x ? "be" : "le") : x ? undefined : "bswap";
    return name === undefined ? undefined : `${name}${i.imm} ${reg(i.dst)}`;
  }
  if (op === AluOp.NEG) return `neg${suffix} ${reg(i.dst)}`;
  if (op === AluOp.MOV && x && i.off !== 0) {
    return `movsx${i.off}${cls === Cls.ALU ? 32 : 64} ${reg(i.dst)}, ${reg(i.src)}`;
  }
  const name = nameOf(ALU_BINARY, (v) => v.op === op && v.off === i.off);
  if (name === undefined) return undefined;
  return `${name}${suffix} ${reg(i.dst)}, ${x ? reg(i.src) : imm(i.imm)}`;
}

function formatLddw(i: Insn, next: Insn | undefined): Formatted | undefined {
  if (i.opcode !== Op.LDDW || next === undefined) return undefined;
  const head = `lddw ${reg(i.dst)}, `;
  if (i.src === 0) {
    const value = (BigInt(next.imm >>> 0) << 32n) | BigInt(i.imm >>> 0);
    return { text: `${head}0x${value.toString(16)}`, slots: 2 };
  }
  const name = nameOf(LDDW_PSEUDO, (v) => v === i.src);
  if (name === undefined) return undefined;
  if (i.src === Pseudo.FUNC) return { text: `${head}func ${rel(i.imm)}`, slots: 2, rel: i.imm, isCall: true };
  const offset = LDDW_PSEUDO_WITH_OFFSET.has(i.src) ? `, ${imm(next.imm)}` : "";
  return { text: `${head}${name} ${imm(i.imm)}${offset}`, slots: 2 };
}

function formatMemory(i: Insn, cls: number): string | undefined {
  const mode = i.opcode & Mode.MASK;
  const size = sizeName(i.opcode);
  if (cls === Cls.LDX && mode === Mode.MEM) return `ldx${size} ${reg(i.dst)}, ${mem(i.src, i.off)}`;
  if (cls === Cls.LDX && mode === Mode.MEMSX) return `ldxs${size} ${reg(i.dst)}, ${mem(i.src, i.off)}`;
  if (cls === Cls.ST && mode === Mode.MEM) return `st${size} ${mem(i.dst, i.off)}, ${imm(i.imm)}`;
  if (cls === Cls.STX && mode === Mode.MEM) return `stx${size} ${mem(i.dst, i.off)}, ${reg(i.src)}`;
  if (cls === Cls.STX && mode === Mode.ATOMIC) {
    const exact = nameOf(ATOMIC_OPS, (v) => v === i.imm && (v & AtomicOp.FETCH) !== 0);
    const base = nameOf(ATOMIC_OPS, (v) => v === (i.imm & ~AtomicOp.FETCH));
    const fetch = exact === undefined && (i.imm & AtomicOp.FETCH) !== 0 ? "fetch " : "";
    const name = exact ?? base;
    if (name === undefined) return undefined;
    const width = (i.opcode & Size.MASK) === Size.W ? "32" : "";
    return `lock ${fetch}${name}${width} ${mem(i.dst, i.off)}, ${reg(i.src)}`;
  }
  return undefined;
}

function formatJump(i: Insn, cls: number): Formatted | undefined {
  const op = i.opcode & JmpOp.MASK;
  const x = (i.opcode & Src.X) !== 0;
  if (op === JmpOp.JA) {
    return cls === Cls.JMP ? { text: `ja ${rel(i.off)}`, slots: 1, rel: i.off } : { text: `ja32 ${rel(i.imm)}`, slots: 1, rel: i.imm };
  }
  if (op === JmpOp.EXIT) return { text: "exit", slots: 1 };
  if (op === JmpOp.CALL) {
    if (x) return { text: `call ${reg(i.dst)}`, slots: 1 };
    if (i.src === CallKind.LOCAL) return { text: `call local ${rel(i.imm)}`, slots: 1, rel: i.imm, isCall: true };
    return { text: `call ${imm(i.imm)}`, slots: 1, helper: i.imm };
  }
  const name = nameOf(JMP_COND, (v) => v === op);
  if (name === undefined) return undefined;
  const suffix = cls === Cls.JMP32 ? "32" : "";
  return { text: `${name}${suffix} ${reg(i.dst)}, ${x ? reg(i.src) : imm(i.imm)}, ${rel(i.off)}`, slots: 1, rel: i.off };
}

function format(i: Insn, next: Insn | undefined): Formatted | undefined {
  const cls = i.opcode & Cls.MASK;
  switch (cls) {
    case Cls.ALU:
    case Cls.ALU64: {
      const text = formatAlu(i, cls);
      return text === undefined ? undefined : { text, slots: 1 };
    }
    case Cls.LD:
      return formatLddw(i, next);
    case Cls.JMP:
    case Cls.JMP32:
      return formatJump(i, cls);
    default: {
      const text = formatMemory(i, cls);
      return text === undefined ? undefined : { text, slots: 1 };
    }
  }
}

/** True if `f.text` assembles back to exactly the slots at `insns[pc..]`. */
function readsBack(f: Formatted, insns: readonly Insn[], pc: number): boolean {
  try {
    const st = encodeStatement(f.text);
    if (st.insns.length !== f.slots) return false;
    const head = { ...st.insns[0]! };
    if (st.target) {
      if (st.target.target.kind !== "rel") return false;
      head[st.target.field] = st.target.target.rel;
    }
    return [head, ...st.insns.slice(1)].every((got, k) => sameInsn(got, insns[pc + k]!));
  } catch {
    return false;
  }
}

const toInsns = (program: Uint8Array | readonly Insn[]): readonly Insn[] =>
  program instanceof Uint8Array ? decodeInsns(program) : program;

export function disassembleLines(program: Uint8Array | readonly Insn[], opts: DisassembleOptions = {}): DisasmLine[] {
  const insns = toInsns(program);
  const lines: (DisasmLine & { f: Formatted })[] = [];
  for (let pc = 0; pc < insns.length; ) {
    let f = format(insns[pc]!, insns[pc + 1]);
    if (f === undefined || !readsBack(f, insns, pc)) {
      f = { text: `.raw 0x${insnToU64(insns[pc]!).toString(16).padStart(16, "0")}`, slots: 1 };
    }
    lines.push({ pc, slots: f.slots, text: f.text, f });
    pc += f.slots;
  }
  if (opts.labels) nameTargets(lines);
  if (opts.helperNames) {
    for (const l of lines) {
      const name = l.f.helper === undefined ? undefined : helperName(l.f.helper);
      if (name !== undefined) l.text += `  # ${name}`;
    }
  }
  return lines.map(({ f: _f, ...line }) => line);
}

/** Replaces +N targets that land on a line start with labels on those lines. */
function nameTargets(lines: (DisasmLine & { f: Formatted })[]): void {
  const byPc = new Map(lines.map((l) => [l.pc, l]));
  for (const l of lines) {
    if (l.f.rel === undefined) continue;
    const target = byPc.get(l.pc + l.f.rel + 1);
    if (target === undefined) continue;
    if (l.f.isCall) target.label = `fn${target.pc}`;
    else target.label ??= `L${target.pc}`;
  }
  for (const l of lines) {
    if (l.f.rel === undefined) continue;
    const target = byPc.get(l.pc + l.f.rel + 1);
    if (target?.label === undefined) continue;
    l.text = l.text.slice(0, l.text.length - rel(l.f.rel).length) + target.label;
  }
}

/** The program as assembler source, one statement per line, labels on their own lines. */
export function disassemble(program: Uint8Array | readonly Insn[], opts: DisassembleOptions = {}): string {
  return disassembleLines(program, opts)
    .flatMap((l) => (l.label === undefined ? [l.text] : [`${l.label}:`, l.text]))
    .join("\n");
}
