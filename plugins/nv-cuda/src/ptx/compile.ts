/**
 * eBPF to PTX: every function of a linked program (the loader's ProgramSpec:
 * the program's own function first, then the subprograms it calls) becomes
 * one PTX `.func`. No LLVM: a direct translation that leaves optimisation to
 * ptxas (register allocation, constant folding, dead code, inlining).
 *
 *  - r0..r10 are `.reg .b64 %r0..%r10`; 32-bit operations work on `.b32`
 *    copies and zero-extend their result, as the ISA says.
 *  - The 512-byte stack is `.local` memory; r10 is its generic address + 512,
 *    so loads and stores through any pointer are generic `ld`/`st`.
 *  - Jumps are `bra` to labels `$L<pc>`; conditions are `setp` + `@%p bra`.
 *  - bpf-to-bpf calls are calls of the callee's `.func` with r1..r5; r6..r9
 *    survive because each function has its own registers.
 *  - Helpers are calls of the runtime's `bh_helper_<id>` (runtime.ts).
 *  - Map references (lddw src 1/5 and 2/6) read the map table `bh_map_table`
 *    (the descriptor addresses the host writes at load).
 *  - Division by zero gives 0, modulo by zero leaves the dividend, and the
 *    signed forms of INT_MIN / -1 give INT_MIN (modulo: 0), as the ISA says.
 */
import { contextReads, type ContextReads } from "./ctx-reads.js";
import { GPU_HELPER_BY_ID, helperSymbol } from "./helpers.js";

export interface BpfFunctionInput {
  readonly name: string;
  /** First instruction in insns (8-byte slots). */
  readonly start: number;
  readonly count: number;
}

/** What the compiler needs of a loaded program (structurally, core's ProgramSpec). */
export interface BpfProgramInput {
  readonly name: string;
  readonly section?: string;
  /** Linked 8-byte little-endian instructions. */
  readonly insns: Uint8Array;
  /** Function layout; absent: found from the call instructions. */
  readonly functions?: readonly BpfFunctionInput[];
}

/** What the compiler needs of a map (structurally, core's MapSpec). */
export interface BpfMapInput {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
}

export interface CompileOptions {
  /** The object's maps (index = lddw imm); bounds the map indices the program uses. */
  readonly maps?: readonly BpfMapInput[];
  /** Name of the PTX function of the program (default `bpf_prog_<name>`). */
  readonly symbol?: string;
  /** Declare the program's function `.visible` (default: internal to the module). */
  readonly visible?: boolean;
}

export interface CompiledProgram {
  /** The `.func` of the program: `.func (.param .b64 ret) <symbol>(.param .b64 ctx)`. */
  readonly symbol: string;
  /** The `.func` definitions (subprograms first), without the runtime. */
  readonly ptx: string;
  /** Helper ids called. */
  readonly helpers: readonly number[];
  /** Highest map index used + 1 (the map table needs this many slots). */
  readonly mapSlots: number;
  /** The context bytes the program reads (the insertion pass fills only those). */
  readonly contextReads: ContextReads;
}

export class PtxCompileError extends Error {
  readonly code = "PTX_COMPILE";
  constructor(message: string) {
    super(message);
    this.name = "PtxCompileError";
  }
}

interface Insn {
  readonly code: number;
  readonly dst: number;
  readonly src: number;
  readonly off: number;
  readonly imm: number;
  /** lddw: the second slot's imm. */
  readonly imm2: number;
}

const STACK_SIZE = 512;

/** Names usable in PTX: [A-Za-z0-9_$], not starting with a digit. */
export function ptxIdent(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_$]/g, "_");
  return /^[A-Za-z_$]/.test(s) ? s : `_${s}`;
}

function decode(insns: Uint8Array, what: string): Insn[] {
  if (insns.length % 8 !== 0) throw new PtxCompileError(`${what}: ${insns.length} bytes of instructions is not a multiple of 8`);
  const v = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  const out: Insn[] = [];
  const n = insns.length / 8;
  for (let i = 0; i < n; i++) {
    const regs = v.getUint8(i * 8 + 1);
    const code = v.getUint8(i * 8);
    const imm2 = code === 0x18 && i + 1 < n ? v.getInt32((i + 1) * 8 + 4, true) : 0;
    out.push({ code, dst: regs & 0xf, src: regs >> 4, off: v.getInt16(i * 8 + 2, true), imm: v.getInt32(i * 8 + 4, true), imm2 });
  }
  return out;
}

/** Functions of the program from the call instructions, when the loader's layout is not given. */
function findFunctions(insns: readonly Insn[], name: string): BpfFunctionInput[] {
  const starts = new Set<number>([0]);
  insns.forEach((ins, pc) => {
    if (ins.code === 0x85 && ins.src === 1) starts.add(pc + ins.imm + 1);
  });
  const sorted = [...starts].sort((a, b) => a - b);
  return sorted.map((start, i) => ({
    name: i === 0 ? name : `sub_${start}`,
    start,
    count: (sorted[i + 1] ?? insns.length) - start,
  }));
}

/** Compiles one linked program to PTX functions. */
export function compileProgram(program: BpfProgramInput, options: CompileOptions = {}): CompiledProgram {
  const what = `prog '${program.name}'`;
  const insns = decode(program.insns, what);
  if (insns.length === 0) throw new PtxCompileError(`${what}: has no instructions`);
  const functions = program.functions && program.functions.length > 0 ? program.functions : findFunctions(insns, program.name);
  const symbol = options.symbol ?? `bpf_prog_${ptxIdent(program.name)}`;
  const fnSymbol = new Map<number, string>();
  functions.forEach((f, i) => {
    if (f.start < 0 || f.count <= 0 || f.start + f.count > insns.length) {
      throw new PtxCompileError(`${what}: function '${f.name}' (${f.start}+${f.count}) is outside its ${insns.length} instructions`);
    }
    fnSymbol.set(f.start, i === 0 ? symbol : `${symbol}__${ptxIdent(f.name)}`);
  });
  if (functions[0]!.start !== 0) throw new PtxCompileError(`${what}: the program's own function must come first`);
  const state = { helpers: new Set<number>(), mapSlots: 0 };
  const bodies = functions.map((f, i) =>
    compileFunction(insns, f, i === 0, fnSymbol, options, state, `${what}${i === 0 ? "" : ` function '${f.name}'`}`),
  );
  // Callees before callers: PTX wants a function declared before it is called.
  const prototypes = functions
    .slice(1)
    .map((f) => `.func (.param .b64 ret) ${fnSymbol.get(f.start)!}(.param .b64 a1, .param .b64 a2, .param .b64 a3, .param .b64 a4, .param .b64 a5);`);
  return {
    symbol,
    ptx: [...prototypes, ...bodies.slice(1), bodies[0]!].join("\n"),
    helpers: [...state.helpers].sort((a, b) => a - b),
    mapSlots: state.mapSlots,
    contextReads: contextReads(program.insns, functions[0]!.start, functions[0]!.count),
  };
}

function compileFunction(
  insns: readonly Insn[],
  fn: BpfFunctionInput,
  isMain: boolean,
  fnSymbol: ReadonlyMap<number, string>,
  options: CompileOptions,
  state: { helpers: Set<number>; mapSlots: number },
  what: string,
): string {
  const end = fn.start + fn.count;
  const body: string[] = [];
  const targets = new Set<number>();
  const emit = (s: string) => body.push(`\t${s}`);
  const at = (pc: number) => `${what}: insn ${pc}`;
  const jumpTarget = (pc: number, rel: number): number => {
    const t = pc + rel + 1;
    if (t < fn.start || t >= end) throw new PtxCompileError(`${at(pc)}: jump to ${t} leaves the function (${fn.start}..${end - 1})`);
    targets.add(t);
    return t;
  };
  const R = (r: number, pc: number): string => {
    if (r > 10) throw new PtxCompileError(`${at(pc)}: register r${r} does not exist`);
    return `%r${r}`;
  };
  const W = (r: number, pc: number): string => {
    if (r >= 10) throw new PtxCompileError(`${at(pc)}: r${r} is read-only or does not exist`);
    return `%r${r}`;
  };

  for (let pc = fn.start; pc < end; pc++) {
    const ins = insns[pc]!;
    body.push(`$L${pc}:`);
    const cls = ins.code & 7;
    switch (cls) {
      case 0x04: // ALU (32-bit)
      case 0x07: // ALU64
        alu(ins, cls === 0x07, pc, emit, R, W, at);
        break;
      case 0x05: // JMP
      case 0x06: // JMP32
        jmp(ins, cls === 0x06, pc, emit, R, at, jumpTarget, fnSymbol, state);
        break;
      case 0x00: {
        // LD: only lddw
        if (ins.code !== 0x18) throw new PtxCompileError(`${at(pc)}: opcode 0x${ins.code.toString(16)} (legacy packet access) is not supported on the GPU`);
        if (pc + 1 >= end) throw new PtxCompileError(`${at(pc)}: lddw has no second slot`);
        lddw(ins, pc, emit, W, at, options, state);
        pc++; // the second slot is no instruction
        body.push(`$L${pc}:`);
        break;
      }
      case 0x01: // LDX
        ldx(ins, pc, emit, R, W, at);
        break;
      case 0x02: // ST
      case 0x03: // STX
        store(ins, cls === 0x03, pc, emit, R, at);
        break;
    }
  }
  // Falling off the end is refused by the loader's checks; keep ptxas sure every path returns.
  emit("st.param.b64 [ret], %r0;");
  emit("ret;");
  // Labels nobody jumps to are dropped (ptxas does not care, readers do).
  const lines = body.filter((l) => !/^\$L\d+:$/.test(l) || targets.has(Number(l.slice(2, -1))));

  const name = fnSymbol.get(fn.start)!;
  const head: string[] = [];
  const linkage = isMain && options.visible ? ".visible " : "";
  if (isMain) head.push(`${linkage}.func (.param .b64 ret) ${name}(.param .b64 ctx)`);
  else head.push(`.func (.param .b64 ret) ${name}(.param .b64 a1, .param .b64 a2, .param .b64 a3, .param .b64 a4, .param .b64 a5)`);
  head.push("{");
  head.push("\t.reg .b64 %r<11>;", "\t.reg .b64 %t<4>;", "\t.reg .b32 %w<4>;", "\t.reg .pred %p<3>;");
  head.push(`\t.local .align 8 .b8 stack[${STACK_SIZE}];`);
  for (let r = 0; r <= 9; r++) head.push(`\tmov.b64 %r${r}, 0;`);
  if (isMain) head.push("\tld.param.b64 %r1, [ctx];");
  else for (let r = 1; r <= 5; r++) head.push(`\tld.param.b64 %r${r}, [a${r}];`);
  head.push("\tmov.u64 %r10, stack;", "\tcvta.local.u64 %r10, %r10;", `\tadd.u64 %r10, %r10, ${STACK_SIZE};`);
  return [...head, ...lines, "}", ""].join("\n");
}

type Emit = (s: string) => void;
type Reg = (r: number, pc: number) => string;
type At = (pc: number) => string;

/** The 32-bit view of a register or immediate into %w<n>. */
function low32(ins: Insn, fromReg: boolean, reg: number, into: string, emit: Emit, R: Reg, pc: number): void {
  if (fromReg) emit(`cvt.u32.u64 ${into}, ${R(reg, pc)};`);
  else emit(`mov.b32 ${into}, ${ins.imm};`);
}

function alu(ins: Insn, is64: boolean, pc: number, emit: Emit, R: Reg, W: Reg, at: At): void {
  const op = ins.code & 0xf0;
  const x = (ins.code & 0x08) !== 0;
  const d = W(ins.dst, pc);
  const bad = (why: string): never => {
    throw new PtxCompileError(`${at(pc)}: ${is64 ? "alu64" : "alu"} opcode 0x${ins.code.toString(16)}: ${why}`);
  };
  if (op === 0xd0) return endian(ins, is64, emit, d, bad);
  if (op === 0x80) {
    if (is64) emit(`neg.s64 ${d}, ${d};`);
    else {
      emit(`cvt.u32.u64 %w0, ${d};`);
      emit("neg.s32 %w0, %w0;");
      emit(`cvt.u64.u32 ${d}, %w0;`);
    }
    return;
  }
  if (op === 0xb0) {
    // mov / movsx (off 8, 16, 32)
    if (ins.off !== 0 && !x) bad(`movsx needs a register source (off ${ins.off})`);
    if (ins.off !== 0 && ![8, 16, 32].includes(ins.off)) bad(`movsx offset ${ins.off} is not 8, 16 or 32`);
    if (ins.off === 32 && !is64) bad("32-bit movsx from 32 bits does not exist");
    if (is64) {
      if (!x) emit(`mov.b64 ${d}, ${ins.imm};`);
      else if (ins.off === 0) emit(`mov.b64 ${d}, ${R(ins.src, pc)};`);
      else {
        emit(`shl.b64 %t0, ${R(ins.src, pc)}, ${64 - ins.off};`);
        emit(`shr.s64 ${d}, %t0, ${64 - ins.off};`);
      }
    } else {
      if (!x) emit(`mov.b64 ${d}, ${ins.imm >>> 0};`);
      else if (ins.off === 0) {
        emit(`cvt.u32.u64 %w0, ${R(ins.src, pc)};`);
        emit(`cvt.u64.u32 ${d}, %w0;`);
      } else {
        emit(`cvt.u32.u64 %w0, ${R(ins.src, pc)};`);
        emit(`shl.b32 %w0, %w0, ${32 - ins.off};`);
        emit(`shr.s32 %w0, %w0, ${32 - ins.off};`);
        emit(`cvt.u64.u32 ${d}, %w0;`);
      }
    }
    return;
  }
  const signed = ins.off === 1;
  if (ins.off !== 0 && !((op === 0x30 || op === 0x90) && signed)) bad(`offset ${ins.off} is not allowed`);
  if (is64) {
    let s: string;
    if (x) s = R(ins.src, pc);
    else {
      emit(`mov.b64 %t1, ${ins.imm};`);
      s = "%t1";
    }
    binary(op, signed, "64", d, s, emit, bad, x, ins.imm);
  } else {
    emit(`cvt.u32.u64 %w0, ${d};`);
    low32(ins, x, ins.src, "%w1", emit, R, pc);
    binary(op, signed, "32", "%w0", "%w1", emit, bad, x, ins.imm);
    emit(`cvt.u64.u32 ${d}, %w0;`);
  }
}

/** d = d op s at width w ("64": .b64 registers, "32": .b32); temporaries of that width. */
function binary(op: number, signed: boolean, w: "64" | "32", d: string, s: string, emit: Emit, bad: (why: string) => never, x: boolean, imm: number): void {
  const t = w === "64" ? "%t2" : "%w2";
  const bits = Number(w);
  switch (op) {
    case 0x00:
      return emit(`add.s${w} ${d}, ${d}, ${s};`);
    case 0x10:
      return emit(`sub.s${w} ${d}, ${d}, ${s};`);
    case 0x20:
      return emit(`mul.lo.s${w} ${d}, ${d}, ${s};`);
    case 0x40:
      return emit(`or.b${w} ${d}, ${d}, ${s};`);
    case 0x50:
      return emit(`and.b${w} ${d}, ${d}, ${s};`);
    case 0xa0:
      return emit(`xor.b${w} ${d}, ${d}, ${s};`);
    case 0x60:
    case 0x70:
    case 0xc0: {
      const inst = op === 0x60 ? `shl.b${w}` : op === 0x70 ? `shr.u${w}` : `shr.s${w}`;
      // The ISA masks the shift count to the width; PTX clamps it instead.
      if (!x) return emit(`${inst} ${d}, ${d}, ${imm & (bits - 1)};`);
      if (w === "64") emit(`cvt.u32.u64 %w3, ${s};`);
      else emit(`mov.b32 %w3, ${s};`);
      emit(`and.b32 %w3, %w3, ${bits - 1};`);
      return emit(`${inst} ${d}, ${d}, %w3;`);
    }
    case 0x30:
      if (!signed) {
        emit(`setp.eq.u${w} %p0, ${s}, 0;`);
        emit(`@%p0 mov.b${w} ${d}, 0;`);
        return emit(`@!%p0 div.u${w} ${d}, ${d}, ${s};`);
      }
      // sdiv: /0 -> 0; /-1 -> -d (wraps for INT_MIN, where PTX is undefined)
      emit(`mov.b${w} ${t}, 0;`);
      emit(`setp.ne.s${w} %p0, ${s}, 0;`);
      emit(`setp.ne.s${w} %p1, ${s}, -1;`);
      emit("and.pred %p2, %p0, %p1;");
      emit(`@%p2 div.s${w} ${t}, ${d}, ${s};`);
      emit(`@!%p1 neg.s${w} ${t}, ${d};`);
      return emit(`mov.b${w} ${d}, ${t};`);
    case 0x90:
      if (!signed) {
        emit(`setp.ne.u${w} %p0, ${s}, 0;`);
        return emit(`@%p0 rem.u${w} ${d}, ${d}, ${s};`);
      }
      // smod: %0 -> d; %-1 -> 0
      emit(`setp.ne.s${w} %p0, ${s}, 0;`);
      emit(`setp.ne.s${w} %p1, ${s}, -1;`);
      emit("and.pred %p2, %p0, %p1;");
      emit(`@%p2 rem.s${w} ${d}, ${d}, ${s};`);
      return emit(`@!%p1 mov.b${w} ${d}, 0;`);
    default:
      return bad(`operation 0x${op.toString(16)} does not exist`);
  }
}

function endian(ins: Insn, is64: boolean, emit: Emit, d: string, bad: (why: string) => never): void {
  const width = ins.imm;
  if (width !== 16 && width !== 32 && width !== 64) bad(`byte swap width ${width} is not 16, 32 or 64`);
  // alu END: source bit 0 = to little endian (the GPU's order: truncation), 1 = to big endian (swap);
  // alu64 END: bswap, whatever the source bit.
  const swap = is64 || (ins.code & 0x08) !== 0;
  if (!swap) {
    if (width === 16) emit(`and.b64 ${d}, ${d}, 0xffff;`);
    else if (width === 32) emit(`and.b64 ${d}, ${d}, 0xffffffff;`);
    return;
  }
  if (width === 16) {
    emit(`cvt.u32.u64 %w0, ${d};`);
    emit("prmt.b32 %w0, %w0, 0, 0x4401;");
    emit(`cvt.u64.u32 ${d}, %w0;`);
  } else if (width === 32) {
    emit(`cvt.u32.u64 %w0, ${d};`);
    emit("prmt.b32 %w0, %w0, 0, 0x0123;");
    emit(`cvt.u64.u32 ${d}, %w0;`);
  } else {
    emit(`mov.b64 {%w0, %w1}, ${d};`);
    emit("prmt.b32 %w0, %w0, 0, 0x0123;");
    emit("prmt.b32 %w1, %w1, 0, 0x0123;");
    emit(`mov.b64 ${d}, {%w1, %w0};`);
  }
}

const JMP_CMP: Record<number, string> = {
  0x10: "eq.u",
  0x20: "gt.u",
  0x30: "ge.u",
  0x50: "ne.u",
  0x60: "gt.s",
  0x70: "ge.s",
  0xa0: "lt.u",
  0xb0: "le.u",
  0xc0: "lt.s",
  0xd0: "le.s",
};

function jmp(
  ins: Insn,
  is32: boolean,
  pc: number,
  emit: Emit,
  R: Reg,
  at: At,
  jumpTarget: (pc: number, rel: number) => number,
  fnSymbol: ReadonlyMap<number, string>,
  state: { helpers: Set<number> },
): void {
  const op = ins.code & 0xf0;
  const x = (ins.code & 0x08) !== 0;
  if (op === 0x00) {
    const t = jumpTarget(pc, is32 ? ins.imm : ins.off);
    return emit(`bra $L${t};`);
  }
  if (op === 0x90) {
    if (is32) throw new PtxCompileError(`${at(pc)}: jmp32 exit does not exist`);
    emit("st.param.b64 [ret], %r0;");
    return emit("ret;");
  }
  if (op === 0x80) {
    if (is32) throw new PtxCompileError(`${at(pc)}: jmp32 call does not exist`);
    if (x) throw new PtxCompileError(`${at(pc)}: callx (call by register) is not supported on the GPU`);
    return call(ins, pc, emit, at, fnSymbol, state);
  }
  const t = jumpTarget(pc, ins.off);
  if (op === 0x40) {
    // jset: taken when d & s != 0
    if (is32) {
      emit(`cvt.u32.u64 %w0, ${R(ins.dst, pc)};`);
      if (x) emit(`cvt.u32.u64 %w1, ${R(ins.src, pc)};`);
      else emit(`mov.b32 %w1, ${ins.imm};`);
      emit("and.b32 %w0, %w0, %w1;");
      emit("setp.ne.u32 %p0, %w0, 0;");
    } else {
      if (x) emit(`and.b64 %t0, ${R(ins.dst, pc)}, ${R(ins.src, pc)};`);
      else {
        emit(`mov.b64 %t1, ${ins.imm};`);
        emit(`and.b64 %t0, ${R(ins.dst, pc)}, %t1;`);
      }
      emit("setp.ne.u64 %p0, %t0, 0;");
    }
    return emit(`@%p0 bra $L${t};`);
  }
  const cmp = JMP_CMP[op];
  if (!cmp) throw new PtxCompileError(`${at(pc)}: ${is32 ? "jmp32" : "jmp"} opcode 0x${ins.code.toString(16)} does not exist`);
  if (is32) {
    emit(`cvt.u32.u64 %w0, ${R(ins.dst, pc)};`);
    if (x) emit(`cvt.u32.u64 %w1, ${R(ins.src, pc)};`);
    else emit(`mov.b32 %w1, ${ins.imm};`);
    emit(`setp.${cmp}32 %p0, %w0, %w1;`);
  } else {
    let s: string;
    if (x) s = R(ins.src, pc);
    else {
      emit(`mov.b64 %t1, ${ins.imm};`);
      s = "%t1";
    }
    emit(`setp.${cmp}64 %p0, ${R(ins.dst, pc)}, ${s};`);
  }
  emit(`@%p0 bra $L${t};`);
}

function call(ins: Insn, pc: number, emit: Emit, at: At, fnSymbol: ReadonlyMap<number, string>, state: { helpers: Set<number> }): void {
  let callee: string;
  let args: number;
  if (ins.src === 1) {
    const target = pc + ins.imm + 1;
    const name = fnSymbol.get(target);
    if (!name) throw new PtxCompileError(`${at(pc)}: call to instruction ${target}, where no function starts`);
    callee = name;
    args = 5;
  } else if (ins.src === 0) {
    const helper = GPU_HELPER_BY_ID.get(ins.imm);
    if (!helper) {
      throw new PtxCompileError(
        `${at(pc)}: helper ${ins.imm} is not available on the GPU (available: ${[...GPU_HELPER_BY_ID.keys()].join(", ")})`,
      );
    }
    state.helpers.add(helper.id);
    callee = helperSymbol(helper.id);
    args = helper.args;
  } else {
    throw new PtxCompileError(`${at(pc)}: call with src ${ins.src} (kfunc or unknown) is not supported on the GPU`);
  }
  emit("{");
  const names: string[] = [];
  for (let a = 1; a <= args; a++) {
    emit(`.param .b64 c${a};`);
    emit(`st.param.b64 [c${a}], %r${a};`);
    names.push(`c${a}`);
  }
  emit(".param .b64 cr;");
  emit(`call (cr), ${callee}${names.length > 0 ? `, (${names.join(", ")})` : ""};`);
  emit("ld.param.b64 %r0, [cr];");
  emit("}");
}

function lddw(ins: Insn, pc: number, emit: Emit, W: Reg, at: At, options: CompileOptions, state: { mapSlots: number }): void {
  const d = W(ins.dst, pc);
  switch (ins.src) {
    case 0: {
      const value = (BigInt(ins.imm2) << 32n) | BigInt(ins.imm >>> 0);
      return emit(`mov.b64 ${d}, ${BigInt.asIntN(64, value)};`);
    }
    case 1:
    case 5:
    case 2:
    case 6: {
      const index = ins.imm;
      if (index < 0 || (options.maps && index >= options.maps.length)) {
        throw new PtxCompileError(`${at(pc)}: map index ${index} is outside the object's ${options.maps?.length ?? 0} maps`);
      }
      state.mapSlots = Math.max(state.mapSlots, index + 1);
      emit(`ld.global.u64 ${d}, [bh_map_table+${index * 8}];`);
      if (ins.src === 2 || ins.src === 6) {
        // the map's value area (array maps and global data: entry 0) + offset
        emit(`ld.u64 ${d}, [${d}+${DESC_VALUES}];`);
        if (ins.imm2 !== 0) emit(`add.s64 ${d}, ${d}, ${ins.imm2};`);
      }
      return;
    }
    default:
      throw new PtxCompileError(`${at(pc)}: lddw src ${ins.src} (function, BTF id or kfunc address) is not supported on the GPU`);
  }
}

/** Offset of `values` in a map descriptor (runtime.ts). */
const DESC_VALUES = 32;

const SIZE_SUFFIX: Record<number, { bits: number; u: string; s: string; b: string }> = {
  0x00: { bits: 32, u: "u32", s: "s32", b: "b32" },
  0x08: { bits: 16, u: "u16", s: "s16", b: "b16" },
  0x10: { bits: 8, u: "u8", s: "s8", b: "b8" },
  0x18: { bits: 64, u: "u64", s: "s64", b: "b64" },
};

function addr(reg: string, off: number): string {
  return off === 0 ? `[${reg}]` : `[${reg}+${off}]`;
}

function ldx(ins: Insn, pc: number, emit: Emit, R: Reg, W: Reg, at: At): void {
  const mode = ins.code & 0xe0;
  const size = SIZE_SUFFIX[ins.code & 0x18]!;
  const d = W(ins.dst, pc);
  if (mode === 0x60) return emit(`ld.${size.u} ${d}, ${addr(R(ins.src, pc), ins.off)};`);
  if (mode === 0x80 && size.bits !== 64) return emit(`ld.${size.s} ${d}, ${addr(R(ins.src, pc), ins.off)};`);
  throw new PtxCompileError(`${at(pc)}: ldx opcode 0x${ins.code.toString(16)} does not exist`);
}

const ATOMIC_OPS: Record<number, string> = { 0x00: "add", 0x40: "or", 0x50: "and", 0xa0: "xor" };

function store(ins: Insn, isX: boolean, pc: number, emit: Emit, R: Reg, at: At): void {
  const mode = ins.code & 0xe0;
  const size = SIZE_SUFFIX[ins.code & 0x18]!;
  const base = R(ins.dst, pc);
  if (mode === 0x60) {
    if (isX) return emit(`st.${size.u} ${addr(base, ins.off)}, ${R(ins.src, pc)};`);
    emit(`mov.b64 %t0, ${ins.imm};`);
    return emit(`st.${size.u} ${addr(base, ins.off)}, %t0;`);
  }
  if (mode !== 0xc0 || !isX || (size.bits !== 32 && size.bits !== 64)) {
    throw new PtxCompileError(`${at(pc)}: ${isX ? "stx" : "st"} opcode 0x${ins.code.toString(16)} does not exist`);
  }
  // Atomics: generic `atom` (global memory, which map values are; shared too).
  const w = size.bits === 64 ? "64" : "32";
  const src = R(ins.src, pc);
  const v = w === "64" ? src : "%w1";
  const old = w === "64" ? "%t0" : "%w0";
  if (w === "32") emit(`cvt.u32.u64 %w1, ${src};`);
  const fetch = (ins.imm & 1) !== 0;
  const op = ins.imm & ~1;
  if (ATOMIC_OPS[op] !== undefined) {
    const kind = op === 0x00 ? `u${w}` : `b${w}`;
    emit(`atom.${ATOMIC_OPS[op]}.${kind} ${old}, ${addr(base, ins.off)}, ${v};`);
    if (fetch) emit(w === "64" ? `mov.b64 ${src}, %t0;` : `cvt.u64.u32 ${src}, %w0;`);
    return;
  }
  if (ins.imm === 0xe1) {
    emit(`atom.exch.b${w} ${old}, ${addr(base, ins.off)}, ${v};`);
    return emit(w === "64" ? `mov.b64 ${src}, %t0;` : `cvt.u64.u32 ${src}, %w0;`);
  }
  if (ins.imm === 0xf1) {
    // r0 = cmpxchg(addr, r0, src)
    if (w === "64") {
      emit(`atom.cas.b64 %t0, ${addr(base, ins.off)}, %r0, ${src};`);
      return emit("mov.b64 %r0, %t0;");
    }
    emit("cvt.u32.u64 %w2, %r0;");
    emit(`atom.cas.b32 %w0, ${addr(base, ins.off)}, %w2, %w1;`);
    return emit("cvt.u64.u32 %r0, %w0;");
  }
  throw new PtxCompileError(`${at(pc)}: atomic operation 0x${ins.imm.toString(16)} does not exist`);
}
