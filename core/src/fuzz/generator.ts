/**
 * The structure-aware program generator: every program it makes has valid
 * encodings, jumps only to real instructions and, unless it is tagged, only
 * well-defined and safe behaviour (registers and stack read after they are
 * written, map values behind a null check, bounded loops). A small share of
 * programs carries one deliberate defect, named by a tag:
 *
 *   ub:*      undefined behaviour the interpreter and the JIT may disagree on
 *             (uninitialised stack or registers, scratch registers after a
 *             call, stack addresses or nondeterministic helper results
 *             reaching the program's output);
 *   unsafe:*  what a verifier must refuse (no null check, out-of-bounds
 *             stack, map value or context access, wild pointers, unbounded
 *             loops, helper sizes past the buffer).
 *
 * The generator keeps its own must-state while it emits (registers holding
 * defined scalars, initialised stack bytes), merged at control-flow joins,
 * so an untagged program is defined on every path, not just the one run.
 */
import { insn, type Insn } from "../asm/insn.js";
import { AluOp, AtomicOp, CallKind, Cls, JmpOp, Mode, Op, Pseudo, Size, Src } from "../asm/opcodes.js";
import { CTX_SIZE, CTX_WRITABLE, FUZZ_MAPS, MAP_ARR, MAP_DATA, MAP_HASH } from "./env.js";
import { Rng } from "./rng.js";

export const UB_TAGS = [
  "ub:uninit-stack",
  "ub:uninit-reg",
  "ub:scratch-after-call",
  "ub:pointer-leak",
  "ub:nondet-helper",
] as const;
export const UNSAFE_TAGS = [
  "unsafe:no-null-check",
  "unsafe:oob-stack",
  "unsafe:oob-map-value",
  "unsafe:ctx-readonly-write",
  "unsafe:wild-access",
  "unsafe:unbounded-loop",
  "unsafe:helper-size",
] as const;
export type DefectTag = (typeof UB_TAGS)[number] | (typeof UNSAFE_TAGS)[number];

export interface FuzzProgram {
  insns: Insn[];
  /** Deliberate defects (empty: the generator vouches for the program). "mutated" when a mutator touched it. */
  tags: string[];
}

// ---- emission with labels ----

class Emitter {
  readonly out: Insn[] = [];
  readonly #fixups: { at: number; label: number; call: boolean }[] = [];
  readonly #labels: number[] = [];

  get pc(): number {
    return this.out.length;
  }
  label(): number {
    this.#labels.push(-1);
    return this.#labels.length - 1;
  }
  bind(label: number): void {
    this.#labels[label] = this.out.length;
  }
  emit(i: Insn): void {
    this.out.push(i);
  }
  jmp(opcode: number, dst: number, src: number, imm: number, label: number): void {
    this.#fixups.push({ at: this.out.length, label, call: false });
    this.emit(insn(opcode, dst, src, 0, imm));
  }
  call(label: number): void {
    this.#fixups.push({ at: this.out.length, label, call: true });
    this.emit(insn(Op.CALL, 0, CallKind.LOCAL, 0, 0));
  }
  helper(id: number): void {
    this.emit(insn(Op.CALL, 0, CallKind.HELPER, 0, id));
  }
  lddw(dst: number, src: number, lo: number, hi: number): void {
    this.emit(insn(Op.LDDW, dst, src, 0, lo | 0));
    this.emit(insn(0, 0, 0, 0, hi | 0));
  }
  finish(): Insn[] {
    for (const f of this.#fixups) {
      const target = this.#labels[f.label]!;
      if (target < 0) throw new Error(`fuzz generator: unbound label ${f.label}`);
      const rel = target - f.at - 1;
      const i = this.out[f.at]!;
      if (f.call) i.imm = rel;
      else i.off = rel;
    }
    return this.out;
  }
}

// ---- the generator's must-state ----

interface State {
  /** Registers holding a defined scalar. */
  defined: Set<number>;
  /** Initialised bytes of the frame: index 512 + offset from r10. */
  stack: Uint8Array;
}

const clone = (s: State): State => ({ defined: new Set(s.defined), stack: s.stack.slice() });
function meet(a: State, b: State): State {
  const stack = new Uint8Array(512);
  for (let i = 0; i < 512; i++) stack[i] = a.stack[i]! & b.stack[i]!;
  return { defined: new Set([...a.defined].filter((r) => b.defined.has(r))), stack };
}
const kill = (s: State, regs: readonly number[]): void => regs.forEach((r) => s.defined.delete(r));
const CALLER_SAVED = [0, 1, 2, 3, 4, 5];
const ARGS = [1, 2, 3, 4, 5];

interface Sub {
  label: number;
  nargs: number;
  /** r3 points at 8 initialised bytes of the caller's frame. */
  ptrArg: boolean;
}

interface Fn {
  main: boolean;
  index: number; // -1 for the main function
  reserved: Set<number>; // loop counters in use
  loopDepth: number;
  depth: number; // nesting of blocks
}

const SIZES = [Size.B, Size.H, Size.W, Size.DW];
const bytesOf = (size: number): number => (size === Size.B ? 1 : size === Size.H ? 2 : size === Size.W ? 4 : 8);
const ALU_OPS = [
  AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.DIV, AluOp.OR, AluOp.AND, AluOp.LSH, AluOp.RSH,
  AluOp.NEG, AluOp.MOD, AluOp.XOR, AluOp.MOV, AluOp.ARSH, AluOp.END,
];
const COND_OPS = [
  JmpOp.JEQ, JmpOp.JGT, JmpOp.JGE, JmpOp.JSET, JmpOp.JNE, JmpOp.JSGT,
  JmpOp.JSGE, JmpOp.JLT, JmpOp.JLE, JmpOp.JSLT, JmpOp.JSLE,
];
const ATOMICS = [
  AtomicOp.ADD, AtomicOp.OR, AtomicOp.AND, AtomicOp.XOR,
  AtomicOp.ADD | AtomicOp.FETCH, AtomicOp.OR | AtomicOp.FETCH, AtomicOp.AND | AtomicOp.FETCH,
  AtomicOp.XOR | AtomicOp.FETCH, AtomicOp.XCHG, AtomicOp.CMPXCHG,
];

// Stack areas: general slots, the map key and value, helper buffers; the
// bottom 64 bytes are never written, so a deliberate uninitialised read finds them.
const GENERAL_LO = -256;
const KEY_OFF = -264;
const HASH_VALUE_OFF = -272;
const BUF_OFF = -320; // 32 bytes: probe_read and get_current_comm
const NEVER_WRITTEN = -504;

type Snippet = "alu" | "lddw" | "stack_store" | "stack_load" | "ctx_read" | "ctx_write" | "map_lookup" | "hash_op"
  | "global" | "atomic_stack" | "if" | "loop" | "helper" | "call";

const SNIPPETS: readonly (readonly [Snippet, number])[] = [
  ["alu", 30], ["lddw", 3], ["stack_store", 8], ["stack_load", 7], ["ctx_read", 5], ["ctx_write", 2],
  ["map_lookup", 7], ["hash_op", 4], ["global", 5], ["atomic_stack", 4], ["if", 9], ["loop", 3], ["helper", 4],
  ["call", 4],
];

export class Generator {
  readonly #r: Rng;
  readonly #e = new Emitter();
  readonly #subs: Sub[] = [];
  readonly #tags = new Set<string>();
  #defect: DefectTag | undefined;
  #budget: number; // instructions still to spend on bodies

  constructor(rng: Rng) {
    this.#r = rng;
    this.#budget = rng.chance(0.15) ? rng.range(80, 300) : rng.range(8, 80);
    if (rng.chance(0.14)) this.#defect = rng.pick([...UB_TAGS, ...UNSAFE_TAGS]);
  }

  generate(): FuzzProgram {
    const r = this.#r;
    const e = this.#e;
    const fn: Fn = { main: true, index: -1, reserved: new Set(), loopDepth: 0, depth: 0 };
    const st: State = { defined: new Set(), stack: new Uint8Array(512) };
    // r6 keeps the context for the whole main function.
    e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, 6, 1));
    if (this.#defect === "ub:uninit-reg") this.#uninitReg(st);
    // A few defined registers and stack bytes to start from.
    for (const reg of [7, 8, 9, 0]) if (r.chance(0.6)) this.#movImm(st, reg);
    if (r.chance(0.5)) this.#stackStore(fn, st);
    const defectAt = this.#defect === undefined || this.#defect === "ub:uninit-reg" ? -1 : r.int(6);
    let step = 0;
    while (this.#budget > 0) {
      if (step++ === defectAt) this.#emitDefect(fn, st);
      this.#snippet(fn, st);
    }
    if (step <= defectAt) this.#emitDefect(fn, st);
    this.#epilogue(fn, st);
    // Subprograms, each after the main function; a subprogram calls only later ones.
    for (let i = 0; i < this.#subs.length; i++) this.#subprogram(i);
    return { insns: e.finish(), tags: [...this.#tags] };
  }

  // ---- helpers ----

  #writable(fn: Fn): number[] {
    const regs = fn.main ? [0, 1, 2, 3, 4, 5, 7, 8, 9] : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    return regs.filter((reg) => !fn.reserved.has(reg));
  }
  #dst(fn: Fn, exclude: readonly number[] = []): number {
    return this.#r.pick(this.#writable(fn).filter((reg) => !exclude.includes(reg)));
  }
  #src(st: State): number | undefined {
    return st.defined.size === 0 ? undefined : this.#r.pick([...st.defined]);
  }
  #movImm(st: State, reg: number): void {
    if (this.#r.chance(0.2)) {
      this.#e.lddw(reg, 0, this.#r.imm(), this.#r.imm());
    } else {
      this.#e.emit(insn(Cls.ALU64 | AluOp.MOV, reg, 0, 0, this.#r.imm()));
    }
    st.defined.add(reg);
    this.#budget--;
  }
  #markStack(st: State, off: number, n: number): void {
    for (let i = 0; i < n; i++) st.stack[512 + off + i] = 1;
  }
  #stackInit(st: State, off: number, n: number): boolean {
    for (let i = 0; i < n; i++) if (!st.stack[512 + off + i]) return false;
    return true;
  }
  /** r`reg` = r10 + off. */
  #stackPtr(reg: number, off: number): void {
    this.#e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, reg, 10));
    this.#e.emit(insn(Cls.ALU64 | AluOp.ADD, reg, 0, 0, off));
  }
  #mapFd(reg: number, map: number): void {
    this.#e.lddw(reg, this.#r.chance(0.8) ? Pseudo.MAP_FD : Pseudo.MAP_IDX, map, 0);
  }

  #snippet(fn: Fn, st: State): void {
    const r = this.#r;
    let kind = r.weighted(SNIPPETS);
    if ((kind === "ctx_read" || kind === "ctx_write") && !fn.main) kind = "alu";
    if (kind === "if" && fn.depth >= 3) kind = "alu";
    if (kind === "loop" && (fn.loopDepth > 0 || fn.reserved.size > 0)) kind = "alu";
    if (kind === "call" && this.#subs.length >= 3 && !this.#subs.some((_, i) => i > fn.index)) kind = "alu";
    switch (kind) {
      case "alu": return this.#alu(fn, st);
      case "lddw": return this.#movImm(st, this.#dst(fn));
      case "stack_store": return this.#stackStore(fn, st);
      case "stack_load": return this.#stackLoad(fn, st);
      case "ctx_read": return this.#ctxRead(fn, st);
      case "ctx_write": return this.#ctxWrite(st, false);
      case "map_lookup": return this.#mapLookup(fn, st, true);
      case "hash_op": return this.#hashOp(fn, st);
      case "global": return this.#global(fn, st);
      case "atomic_stack": return this.#atomicStack(fn, st);
      case "if": return this.#if(fn, st);
      case "loop": return this.#loop(fn, st, false);
      case "helper": return this.#helper(fn, st);
      case "call": return this.#call(fn, st);
    }
  }

  #alu(fn: Fn, st: State): void {
    const r = this.#r;
    const e = this.#e;
    this.#budget--;
    const is64 = r.chance(0.55);
    const cls = is64 ? Cls.ALU64 : Cls.ALU;
    let op = r.pick(ALU_OPS);
    const readsDst = op !== AluOp.MOV;
    const candidates = this.#writable(fn).filter((reg) => !readsDst || st.defined.has(reg));
    if (candidates.length === 0) op = AluOp.MOV;
    const dst = candidates.length === 0 ? this.#dst(fn) : r.pick(candidates);
    const src = this.#src(st);
    const x = src !== undefined && r.chance(0.6);
    switch (op) {
      case AluOp.NEG:
        e.emit(insn(cls | op, dst));
        break;
      case AluOp.END: {
        const width = r.pick([16, 32, 64]);
        if (is64) e.emit(insn(Cls.ALU64 | AluOp.END, dst, 0, 0, width));
        else e.emit(insn(Cls.ALU | AluOp.END | (r.chance(0.5) ? Src.X : Src.K), dst, 0, 0, width));
        break;
      }
      case AluOp.DIV:
      case AluOp.MOD: {
        const off = r.chance(0.3) ? 1 : 0;
        if (x && r.chance(0.25)) {
          // Division and modulo by a register holding 0: defined (0, and dst unchanged).
          const zero = this.#dst(fn, [dst]);
          e.emit(insn(cls | AluOp.MOV, zero, 0, 0, 0));
          st.defined.add(zero);
          e.emit(insn(cls | op | Src.X, dst, zero, off));
        } else if (x) {
          e.emit(insn(cls | op | Src.X, dst, src, off));
        } else {
          let imm = r.imm();
          if (imm === 0) imm = r.pick([1, -1, 3]);
          e.emit(insn(cls | op, dst, 0, off, imm));
        }
        break;
      }
      case AluOp.LSH:
      case AluOp.RSH:
      case AluOp.ARSH:
        if (x) e.emit(insn(cls | op | Src.X, dst, src));
        // Mostly in range; sometimes past the width (the kernel refuses those; the ISA masks them).
        else e.emit(insn(cls | op, dst, 0, 0, r.chance(0.9) ? r.int(is64 ? 64 : 32) : r.range(32, 200)));
        break;
      case AluOp.MOV:
        if (x && r.chance(0.25)) {
          // movsx: 8/16 (and 32 in ALU64) bit sign extension.
          e.emit(insn(cls | AluOp.MOV | Src.X, dst, src, r.pick(is64 ? [8, 16, 32] : [8, 16])));
        } else if (x) {
          e.emit(insn(cls | AluOp.MOV | Src.X, dst, src));
        } else {
          e.emit(insn(cls | AluOp.MOV, dst, 0, 0, r.imm()));
        }
        break;
      default:
        if (x) e.emit(insn(cls | op | Src.X, dst, src));
        else e.emit(insn(cls | op, dst, 0, 0, r.imm()));
    }
    st.defined.add(dst);
  }

  #stackStore(fn: Fn, st: State): void {
    const r = this.#r;
    this.#budget--;
    const size = r.pick(SIZES);
    const n = bytesOf(size);
    const off = -n * r.range(1, -GENERAL_LO / n);
    const src = this.#src(st);
    if (src !== undefined && r.chance(0.6)) {
      this.#e.emit(insn(Cls.STX | Mode.MEM | size, 10, src, off));
    } else {
      this.#e.emit(insn(Cls.ST | Mode.MEM | size, 10, 0, off, r.imm()));
    }
    this.#markStack(st, off, n);
    void fn;
  }

  #stackLoad(fn: Fn, st: State): void {
    const r = this.#r;
    for (let tries = 0; tries < 8; tries++) {
      const size = r.pick(SIZES);
      const n = bytesOf(size);
      const off = -n * r.range(1, -GENERAL_LO / n);
      if (!this.#stackInit(st, off, n)) continue;
      const dst = this.#dst(fn);
      const sx = size !== Size.DW && r.chance(0.25);
      this.#e.emit(insn(Cls.LDX | (sx ? Mode.MEMSX : Mode.MEM) | size, dst, 10, off));
      st.defined.add(dst);
      this.#budget--;
      return;
    }
    this.#stackStore(fn, st);
  }

  #ctxRead(fn: Fn, st: State): void {
    const r = this.#r;
    const size = r.pick(SIZES);
    const n = bytesOf(size);
    const off = n * r.int(CTX_SIZE / n);
    const dst = this.#dst(fn);
    const sx = size !== Size.DW && r.chance(0.2);
    this.#e.emit(insn(Cls.LDX | (sx ? Mode.MEMSX : Mode.MEM) | size, dst, 6, off));
    st.defined.add(dst);
    this.#budget--;
  }

  #ctxWrite(st: State, readOnlyPart: boolean): void {
    const r = this.#r;
    const size = r.pick(SIZES);
    const n = bytesOf(size);
    const base = readOnlyPart ? 0 : CTX_WRITABLE.offset;
    const off = base + n * r.int(CTX_WRITABLE.size / n);
    const src = this.#src(st);
    if (src !== undefined && r.chance(0.5)) this.#e.emit(insn(Cls.STX | Mode.MEM | size, 6, src, off));
    else this.#e.emit(insn(Cls.ST | Mode.MEM | size, 6, 0, off, r.imm()));
    this.#budget--;
  }

  /** Loads, stores and atomics through `ptr`, `valueSize` bytes behind it, the value registers not `ptr`. */
  #memOps(fn: Fn, st: State, ptr: number, lo: number, valueSize: number, count: number): void {
    const r = this.#r;
    const e = this.#e;
    for (let k = 0; k < count; k++) {
      const what = r.int(3);
      const size = what === 2 ? r.pick([Size.W, Size.DW]) : r.pick(SIZES);
      const n = bytesOf(size);
      const off = lo + n * r.int(valueSize / n);
      const src = this.#src(st);
      if (what === 0) {
        const dst = this.#dst(fn, [ptr]);
        e.emit(insn(Cls.LDX | Mode.MEM | size, dst, ptr, off));
        st.defined.add(dst);
      } else if (what === 1 || src === undefined || src === ptr) {
        if (src !== undefined && src !== ptr && r.chance(0.6)) e.emit(insn(Cls.STX | Mode.MEM | size, ptr, src, off));
        else e.emit(insn(Cls.ST | Mode.MEM | size, ptr, 0, off, r.imm()));
      } else {
        this.#atomic(fn, st, ptr, off, size, src);
      }
      this.#budget--;
    }
  }

  #atomic(fn: Fn, st: State, base: number, off: number, size: number, src: number): void {
    let op = this.#r.pick(ATOMICS);
    if (op === AtomicOp.CMPXCHG && (!st.defined.has(0) || base === 0 || src === 0)) op = AtomicOp.ADD;
    const fetch = (op & AtomicOp.FETCH) !== 0 && op !== AtomicOp.CMPXCHG;
    if (fetch && fn.reserved.has(src)) op = AtomicOp.ADD; // fetch writes src: not a loop counter
    this.#e.emit(insn(Cls.STX | Mode.ATOMIC | size, base, src, off, op));
    if (op === AtomicOp.CMPXCHG) st.defined.add(0);
  }

  #atomicStack(fn: Fn, st: State): void {
    const r = this.#r;
    const src = this.#src(st);
    const size = r.pick([Size.W, Size.DW]);
    const n = bytesOf(size);
    const off = -n * r.range(1, -GENERAL_LO / n);
    if (src === undefined || !this.#stackInit(st, off, n)) return this.#stackStore(fn, st);
    this.#atomic(fn, st, 10, off, size, src);
    this.#budget--;
  }

  /** Array lookup, a null check, accesses to the value. */
  #mapLookup(fn: Fn, st: State, nullCheck: boolean): void {
    const r = this.#r;
    const e = this.#e;
    const key = r.chance(0.8) ? r.int(4) : r.range(4, 6); // 4..6: past max_entries, the lookup gives NULL
    e.emit(insn(Cls.ST | Mode.MEM | Size.W, 10, 0, KEY_OFF, key));
    this.#markStack(st, KEY_OFF, 4);
    this.#mapFd(1, MAP_ARR);
    this.#stackPtr(2, KEY_OFF);
    e.helper(1);
    kill(st, CALLER_SAVED);
    const skip = e.label();
    if (nullCheck) e.jmp(Cls.JMP | JmpOp.JEQ, 0, 0, 0, skip);
    const inner = clone(st);
    this.#memOps(fn, inner, 0, 0, FUZZ_MAPS[MAP_ARR]!.valueSize, r.range(1, 3));
    e.bind(skip);
    this.#budget -= 6;
  }

  #hashOp(fn: Fn, st: State): void {
    const r = this.#r;
    const e = this.#e;
    e.emit(insn(Cls.ST | Mode.MEM | Size.W, 10, 0, KEY_OFF, r.int(10)));
    this.#markStack(st, KEY_OFF, 4);
    const op = r.pick([1, 2, 2, 3]);
    if (op === 2) {
      const src = this.#src(st);
      if (src !== undefined) e.emit(insn(Cls.STX | Mode.MEM | Size.DW, 10, src, HASH_VALUE_OFF));
      else e.emit(insn(Cls.ST | Mode.MEM | Size.DW, 10, 0, HASH_VALUE_OFF, r.imm()));
      this.#markStack(st, HASH_VALUE_OFF, 8);
    }
    this.#mapFd(1, MAP_HASH);
    this.#stackPtr(2, KEY_OFF);
    if (op === 2) {
      this.#stackPtr(3, HASH_VALUE_OFF);
      e.emit(insn(Cls.ALU64 | AluOp.MOV, 4, 0, 0, r.pick([0, 0, 1, 2]))); // BPF_ANY, NOEXIST, EXIST
    }
    e.helper(op);
    kill(st, CALLER_SAVED);
    if (op === 1) {
      const skip = e.label();
      e.jmp(Cls.JMP | JmpOp.JEQ, 0, 0, 0, skip);
      this.#memOps(fn, clone(st), 0, 0, 8, r.range(1, 2));
      e.bind(skip);
    } else {
      st.defined.add(0); // the helper's return code
    }
    this.#budget -= 6;
  }

  /** Global data: lddw map_value (src 2), then accesses at offsets inside the 64-byte value. */
  #global(fn: Fn, st: State): void {
    const r = this.#r;
    const ptr = r.pick(fn.reserved.has(1) ? [2, 3, 4, 5] : [1, 2, 3, 4, 5]);
    const base = 8 * r.int(5); // 0..32
    this.#e.lddw(ptr, r.chance(0.8) ? Pseudo.MAP_VALUE : Pseudo.MAP_IDX_VALUE, MAP_DATA, base);
    st.defined.delete(ptr);
    this.#memOps(fn, st, ptr, 0, FUZZ_MAPS[MAP_DATA]!.valueSize - base, r.range(1, 3));
    st.defined.delete(ptr);
    this.#budget -= 2;
  }

  #cond(st: State, label: number): boolean {
    const r = this.#r;
    const a = this.#src(st);
    if (a === undefined) return false;
    const cls = r.chance(0.7) ? Cls.JMP : Cls.JMP32;
    const op = r.pick(COND_OPS);
    const b = this.#src(st);
    if (b !== undefined && r.chance(0.5)) this.#e.jmp(cls | op | Src.X, a, b, 0, label);
    else this.#e.jmp(cls | op, a, 0, r.imm(), label);
    return true;
  }

  #block(fn: Fn, st: State, max: number): void {
    const n = this.#r.range(1, max);
    fn.depth++;
    for (let i = 0; i < n && this.#budget > -20; i++) this.#snippet(fn, st);
    fn.depth--;
  }

  #if(fn: Fn, st: State): void {
    const e = this.#e;
    const elseL = e.label();
    if (!this.#cond(st, elseL)) return this.#alu(fn, st);
    this.#budget--;
    const thenSt = clone(st);
    this.#block(fn, thenSt, 4);
    if (this.#r.chance(0.4)) {
      const end = e.label();
      e.jmp(Cls.JMP | JmpOp.JA, 0, 0, 0, end);
      e.bind(elseL);
      const elseSt = clone(st);
      this.#block(fn, elseSt, 3);
      e.bind(end);
      Object.assign(st, meet(thenSt, elseSt));
    } else {
      e.bind(elseL);
      Object.assign(st, meet(st, thenSt));
    }
  }

  /** A counted loop (bounded by a constant), or with `unbounded` one that never ends. */
  #loop(fn: Fn, st: State, unbounded: boolean): void {
    const r = this.#r;
    const e = this.#e;
    const free = [7, 8, 9].filter((reg) => !fn.reserved.has(reg));
    const c = r.pick(free);
    const n = r.range(1, 10);
    const countDown = r.chance(0.4);
    const cls = r.chance(0.7) ? Cls.JMP : Cls.JMP32;
    e.emit(insn(Cls.ALU64 | AluOp.MOV, c, 0, 0, unbounded ? 1 : countDown ? n : 0));
    st.defined.add(c);
    fn.reserved.add(c);
    fn.loopDepth++;
    // r0..r5 may be lost in an iteration (calls, lookups): the body starts without them.
    kill(st, CALLER_SAVED);
    const top = e.label();
    e.bind(top);
    const body = clone(st);
    this.#block(fn, body, 4);
    if (unbounded) {
      if (r.chance(0.5)) e.jmp(cls | JmpOp.JNE, c, 0, 0, top);
      else e.jmp(Cls.JMP | JmpOp.JA, 0, 0, 0, top);
    } else if (countDown) {
      e.emit(insn(Cls.ALU64 | AluOp.SUB, c, 0, 0, 1));
      e.jmp(cls | JmpOp.JNE, c, 0, 0, top);
    } else {
      e.emit(insn(Cls.ALU64 | AluOp.ADD, c, 0, 0, 1));
      e.jmp(cls | r.pick([JmpOp.JLT, JmpOp.JNE, JmpOp.JSLT]), c, 0, n, top);
    }
    fn.loopDepth--;
    fn.reserved.delete(c);
    Object.assign(st, meet(st, body));
    kill(st, CALLER_SAVED);
    this.#budget -= 3;
  }

  #helper(fn: Fn, st: State): void {
    const r = this.#r;
    const e = this.#e;
    const which = r.int(fn.main ? 5 : 4);
    if (which === 0) {
      // ktime: a nondeterministic number; its top bits are 0 for the next century.
      e.helper(r.pick([5, 125, 160]));
      kill(st, CALLER_SAVED);
      e.emit(insn(Cls.ALU64 | AluOp.RSH, 0, 0, 0, 63));
    } else if (which === 1) {
      e.helper(r.pick([14, 15]));
      kill(st, CALLER_SAVED);
    } else if (which === 2) {
      this.#stackPtr(1, BUF_OFF);
      e.emit(insn(Cls.ALU64 | AluOp.MOV, 2, 0, 0, 16));
      e.helper(16);
      kill(st, CALLER_SAVED);
      this.#markStack(st, BUF_OFF, 16);
    } else {
      // probe_read into a stack buffer from the context (main) or from global data.
      const n = r.range(1, 32);
      this.#stackPtr(1, BUF_OFF);
      e.emit(insn(Cls.ALU64 | AluOp.MOV, 2, 0, 0, n));
      if (which === 4) {
        e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, 3, 6));
        e.emit(insn(Cls.ALU64 | AluOp.ADD, 3, 0, 0, r.int(CTX_SIZE - n + 1)));
      } else {
        e.lddw(3, Pseudo.MAP_VALUE, MAP_DATA, r.int(64 - n + 1));
      }
      e.helper(r.pick([4, 112, 113]));
      kill(st, CALLER_SAVED);
      this.#markStack(st, BUF_OFF, n);
    }
    st.defined.add(0);
    this.#budget -= 4;
  }

  #call(fn: Fn, st: State): void {
    const r = this.#r;
    const e = this.#e;
    const later = this.#subs.map((s, i) => ({ s, i })).filter(({ i }) => i > fn.index);
    let sub: Sub;
    if (later.length > 0 && (this.#subs.length >= 3 || r.chance(0.5))) sub = r.pick(later).s;
    else {
      sub = { label: e.label(), nargs: r.int(3), ptrArg: r.chance(0.4) };
      this.#subs.push(sub);
    }
    for (let a = 1; a <= sub.nargs; a++) {
      const src = this.#src(st);
      if (src !== undefined && r.chance(0.7)) e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, a, src));
      else e.emit(insn(Cls.ALU64 | AluOp.MOV, a, 0, 0, r.imm()));
      st.defined.add(a);
    }
    if (sub.ptrArg) {
      const off = -8 * r.range(1, -GENERAL_LO / 8);
      if (!this.#stackInit(st, off, 8)) {
        e.emit(insn(Cls.ST | Mode.MEM | Size.DW, 10, 0, off, r.imm()));
        this.#markStack(st, off, 8);
      }
      this.#stackPtr(3, off);
    }
    e.call(sub.label);
    kill(st, CALLER_SAVED);
    st.defined.add(0);
    this.#budget -= 3;
  }

  #subprogram(index: number): void {
    const r = this.#r;
    const e = this.#e;
    const sub = this.#subs[index]!;
    e.bind(sub.label);
    const fn: Fn = { main: false, index, reserved: new Set(), loopDepth: 0, depth: 0 };
    const st: State = { defined: new Set(ARGS.slice(0, sub.nargs)), stack: new Uint8Array(512) };
    if (sub.ptrArg) {
      // The caller's stack, through r3: read it, sometimes write it.
      const dst = r.pick([0, 4, 5, 6, 7]);
      e.emit(insn(Cls.LDX | Mode.MEM | Size.DW, dst, 3, 0));
      if (r.chance(0.5)) e.emit(insn(Cls.ST | Mode.MEM | Size.W, 3, 0, 4 * r.int(2), r.imm()));
      st.defined.add(dst);
    }
    this.#budget = r.range(3, 25);
    while (this.#budget > 0) this.#snippet(fn, st);
    this.#epilogue(fn, st);
  }

  /** r0 = a mix of defined registers; sometimes the result goes to the hash map first. */
  #epilogue(fn: Fn, st: State): void {
    const r = this.#r;
    const e = this.#e;
    if (fn.main && r.chance(0.3) && st.defined.size > 0) {
      const src = this.#src(st)!;
      e.emit(insn(Cls.STX | Mode.MEM | Size.DW, 10, src, HASH_VALUE_OFF));
      e.emit(insn(Cls.ST | Mode.MEM | Size.W, 10, 0, KEY_OFF, r.int(10)));
      this.#mapFd(1, MAP_HASH);
      this.#stackPtr(2, KEY_OFF);
      this.#stackPtr(3, HASH_VALUE_OFF);
      e.emit(insn(Cls.ALU64 | AluOp.MOV, 4, 0, 0, 0));
      e.helper(2);
      kill(st, CALLER_SAVED);
      st.defined.add(0);
    }
    const regs = [...st.defined].filter((reg) => reg !== 0);
    if (!st.defined.has(0)) {
      if (regs.length > 0) e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, 0, r.pick(regs)));
      else e.emit(insn(Cls.ALU64 | AluOp.MOV, 0, 0, 0, r.imm()));
    }
    for (let k = r.int(3); k > 0 && regs.length > 0; k--) {
      e.emit(insn(Cls.ALU64 | r.pick([AluOp.XOR, AluOp.ADD, AluOp.SUB]) | Src.X, 0, r.pick(regs)));
    }
    e.emit(insn(Op.EXIT));
  }

  // ---- deliberate defects ----

  #uninitReg(st: State): void {
    // Before anything else: r7, r8, r9 and r3..r5 were never written.
    const r = this.#r;
    const from = r.pick([3, 4, 5, 7, 8, 9]);
    const to = r.pick([7, 8, 9].filter((reg) => reg !== from));
    this.#e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, to, from));
    st.defined.add(to);
    this.#tags.add("ub:uninit-reg");
  }

  #emitDefect(fn: Fn, st: State): void {
    const r = this.#r;
    const e = this.#e;
    const d = this.#defect!;
    this.#tags.add(d);
    switch (d) {
      case "ub:uninit-stack": {
        const dst = this.#dst(fn);
        e.emit(insn(Cls.LDX | Mode.MEM | Size.DW, dst, 10, NEVER_WRITTEN - 8 * r.int(2)));
        st.defined.add(dst);
        break;
      }
      case "ub:scratch-after-call": {
        e.helper(14);
        kill(st, CALLER_SAVED);
        const dst = this.#dst(fn, CALLER_SAVED);
        e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, dst, r.range(1, 5)));
        st.defined.add(dst);
        break;
      }
      case "ub:pointer-leak": {
        if (r.chance(0.5)) {
          const dst = this.#dst(fn);
          e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, dst, 10));
          e.emit(insn(Cls.ALU64 | AluOp.ADD, dst, 0, 0, -8));
          st.defined.add(dst);
        } else {
          const ptr = fn.reserved.has(1) ? 2 : 1;
          e.lddw(ptr, Pseudo.MAP_VALUE, MAP_DATA, 0);
          e.emit(insn(Cls.STX | Mode.MEM | Size.DW, ptr, 10, 8 * r.int(8)));
          st.defined.delete(ptr);
        }
        break;
      }
      case "ub:nondet-helper":
        e.helper(r.pick([5, 7]));
        kill(st, CALLER_SAVED);
        st.defined.add(0);
        break;
      case "ub:uninit-reg":
        break;
      case "unsafe:no-null-check":
        this.#mapLookup(fn, st, false);
        break;
      case "unsafe:oob-stack": {
        const off = r.pick([8, 0, -520, -1024, 504]);
        if (r.chance(0.5)) e.emit(insn(Cls.ST | Mode.MEM | Size.DW, 10, 0, off, r.imm()));
        else {
          const dst = this.#dst(fn);
          e.emit(insn(Cls.LDX | Mode.MEM | Size.DW, dst, 10, off));
          st.defined.add(dst);
        }
        break;
      }
      case "unsafe:oob-map-value": {
        const ptr = fn.reserved.has(1) ? 2 : 1;
        e.lddw(ptr, Pseudo.MAP_VALUE, MAP_DATA, 56);
        e.emit(insn(Cls.ST | Mode.MEM | Size.DW, ptr, 0, r.pick([8, 16, -64, 4096]), r.imm()));
        st.defined.delete(ptr);
        break;
      }
      case "unsafe:ctx-readonly-write":
        if (fn.main) this.#ctxWrite(st, true);
        else e.emit(insn(Cls.ST | Mode.MEM | Size.DW, 10, 0, 0, 1)); // not main: out of frame instead
        break;
      case "unsafe:wild-access": {
        const ptr = this.#dst(fn);
        e.emit(insn(Cls.ALU64 | AluOp.MOV, ptr, 0, 0, r.pick([0, 0x1000, 0x7fff0000])));
        e.emit(insn(Cls.LDX | Mode.MEM | Size.W, ptr, ptr, 0));
        st.defined.add(ptr);
        break;
      }
      case "unsafe:unbounded-loop":
        if (fn.reserved.size === 0) this.#loop(fn, st, true);
        else e.jmp(Cls.JMP | JmpOp.JA, 0, 0, 0, (() => {
          const l = e.label();
          e.bind(l);
          return l;
        })());
        break;
      case "unsafe:helper-size":
        // probe_read of 4 KiB into a 32-byte buffer near the frame's bottom.
        this.#stackPtr(1, -32);
        e.emit(insn(Cls.ALU64 | AluOp.MOV, 2, 0, 0, 4096));
        e.emit(insn(Cls.ALU64 | AluOp.MOV | Src.X, 3, 10));
        e.helper(4);
        kill(st, CALLER_SAVED);
        st.defined.add(0);
        break;
    }
  }
}

/** Program `index` of the stream `seed`: generated, or (often) a mutation of an earlier generated one. */
export function generateProgram(seed: number, index: number): FuzzProgram {
  return new Generator(new Rng(seed, index)).generate();
}
