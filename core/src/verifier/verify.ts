/**
 * The verifier's driver: depth-first exploration of every path from pc 0
 * with a work stack of states (the kernel's do_check), pruning a state when
 * one already verified at the same prune point covers it, and the
 * instruction semantics over abstract states. Memory accesses live in
 * memory.ts, calls in calls.ts, numbers in scalar.ts / branch.ts.
 */
import { disassembleLines } from "../asm/disassembler.js";
import { decodeInsns, type Insn } from "../asm/insn.js";
import { branchScalar, immScalar, type Side } from "./branch.js";
import { callHelper, clobberArgs, enterFrame, type CallEnv } from "./calls.js";
import { buildCfg, CLS_ALU, CLS_ALU64, CLS_JMP, CLS_JMP32, CLS_LD, CLS_LDX, CLS_ST, CLS_STX, MODE_ATOMIC, MODE_MEM, MODE_MEMSX, OP_CALL, OP_EXIT, OP_LDDW, ATOMIC_CMPXCHG, ATOMIC_FETCH, type Cfg } from "./cfg.js";
import { checkRegion, frozenRead, sizedUnknown, stackCheckInit, stackRead, stackWrite, stackWriteRange } from "./memory.js";
import { Refusal } from "./refusal.js";
import { Alu, aluScalar, isConst, sConst, sEnd, sNeg, sSext, sTrunc, sWithin, sZext32, S_UNKNOWN, type Scalar } from "./scalar.js";
import { Frame, formatReg, isPtr, scalarReg, State, statesEqual, UNKNOWN_SCALAR, ZERO_VR, type Checkpoint, type Ptr, type Reg } from "./state.js";
import type { ContextLayout, HelperSignature, VerifierErrorInfo, VerifierMap, VerifyOptions, VerifyResult } from "./types.js";

const DEFAULT_LIMIT = 1_000_000;
/** What one side of a branch does to a state. */
type Edit = (st: State) => void;
const NO_EDIT: Edit = () => {};
/** Checkpoints kept and compared per pc (newest first): more only costs time and memory. */
const MAX_COMPARED = 64;
const PATH_LEN = 8;

class Verifier implements CallEnv {
  readonly insns: Insn[];
  readonly cfg: Cfg;
  readonly maps: readonly VerifierMap[];
  readonly context: ContextLayout;
  readonly helpers: ReadonlyMap<number, HelperSignature>;
  private readonly limit: number;
  private readonly explored = new Map<number, Checkpoint[]>();
  private readonly work: State[] = [];
  private readonly callsCallback: Uint8Array;
  processed = 0;
  checkpoints = 0;
  peak = 0;
  private ids = 0;
  /** The state being stepped, for messages. */
  current: State | undefined;

  constructor(code: Uint8Array, opts: VerifyOptions) {
    this.insns = decodeInsns(code);
    this.maps = opts.maps;
    this.context = opts.context;
    this.helpers = opts.helpers;
    this.limit = opts.maxInsnsProcessed ?? DEFAULT_LIMIT;
    this.cfg = buildCfg(this.insns, this.helpers);
    this.callsCallback = new Uint8Array(this.insns.length);
    this.insns.forEach((i, pc) => {
      if (i.opcode === OP_CALL && i.src === 0 && this.helpers.get(i.imm)?.callback !== undefined && !this.cfg.secondSlot[pc]) this.callsCallback[pc] = 1;
    });
  }

  mapName(i: number): string {
    return this.maps[i]?.name ?? `#${i}`;
  }
  describe(r: Reg): string {
    return formatReg(r, (i) => this.mapName(i));
  }
  newId(): number {
    return ++this.ids;
  }
  use(st: State, pc: number, r: number): Reg {
    const v = st.top.regs[r]!;
    if (v.k === "uninit") throw new Refusal(pc, `r${r} is ${v.why ?? "not initialised"}`, r);
    if (v.k === "released") throw new Refusal(pc, `r${r} is ${v.why}: it may not be used after submit or discard`, r);
    return v;
  }
  fork(st: State): void {
    if (st.parent !== undefined) st.parent.branches++;
    this.work.push(st);
  }

  run(): void {
    if (this.insns.length === 0) throw new Refusal(0, "empty program");
    const init = new State([Frame.fresh(-1, false)], new Map(), 0, undefined, [], undefined);
    init.top.regs[1] = { k: "ctx", off: 0, vr: ZERO_VR };
    init.top.regs[10] = { k: "stack", off: 0, vr: ZERO_VR, frame: 0 };
    this.work.push(init);
    for (;;) {
      const st = this.work.pop();
      if (st === undefined) return;
      this.explore(st);
    }
  }

  private explore(st: State): void {
    this.current = st;
    for (;;) {
      if (++this.processed > this.limit) {
        const what = st.backEdge === undefined ? "too many paths" : `loop not proven to end (back edge pc ${st.backEdge[0]} -> ${st.backEdge[1]})`;
        throw new Refusal(st.pc, `too complex: ${what}: more than ${this.limit} instructions processed`);
      }
      if (st.pc < 0 || st.pc >= this.insns.length || this.cfg.secondSlot[st.pc]) {
        throw new Refusal(Math.max(0, Math.min(st.pc, this.insns.length - 1)), `control flow reaches pc ${st.pc}, which is not an instruction`);
      }
      if (this.cfg.prunePoint[st.pc] && this.visit(st)) break;
      st.insnsSince++;
      if (this.step(st)) break;
    }
    this.endPath(st);
  }

  private endPath(st: State): void {
    for (let cp = st.parent; cp !== undefined; cp = cp.parent) {
      if (--cp.branches > 0) break;
    }
  }

  /** Registers of frame f that matter at the state's position. */
  private liveOf(st: State): (f: number) => readonly [number, number] {
    const { liveIn, relevant } = this.cfg;
    return (f: number): readonly [number, number] => {
      if (f === st.frames.length - 1) return [liveIn[st.pc]!, relevant[st.pc]!];
      const child = st.frames[f + 1]!;
      const at = child.callback ? child.callsite : child.callsite + 1;
      const mask = child.callback ? ~0 : ~0x3f;
      return [liveIn[at]! & mask, relevant[at]! & mask];
    };
  }

  /** At a prune point: true when a verified state covers st (prune), else records st. */
  private visit(st: State): boolean {
    let list = this.explored.get(st.pc);
    if (list === undefined) this.explored.set(st.pc, (list = []));
    const live = this.liveOf(st);
    const units = { sets: this.cfg.stackRelevant, at: st.pc * 4 };
    // Only a return from a callback may close on an ancestor: the helper bounds
    // those iterations; any other repetition must be proven to end.
    const cb = this.callsCallback[st.pc] === 1 && st.fromCallback;
    st.fromCallback = false;
    let widened = false;
    for (let i = list.length - 1; i >= 0; i--) {
      const cp = list[i]!;
      const old = cp.state!;
      if (cp.branches > 0) {
        if (cb) {
          // Callback iterations are bounded by the helper: a fixed point is enough.
          if (statesEqual(old, st, live, false, units)) return true;
          if (!widened && old.frames.length === st.frames.length) widened = widen(old, st);
        } else if (statesEqual(old, st, live, true, units)) {
          throw new Refusal(st.pc, `infinite loop: the state at pc ${st.pc} repeats${st.backEdge ? ` (back edge pc ${st.backEdge[0]} -> ${st.backEdge[1]})` : ""}`);
        }
        continue;
      }
      if (statesEqual(old, st, live, false, units)) return true;
    }
    // As the kernel: a new checkpoint only every few jumps and instructions
    // (pruning still compares at every prune point); callback calls always.
    if (!cb && (st.jumpsSince < 2 || st.insnsSince < 8)) return false;
    st.jumpsSince = 0;
    st.insnsSince = 0;
    const cp: Checkpoint = { state: st.clone(), branches: 1, parent: st.parent };
    list.push(cp);
    this.checkpoints++;
    if (list.length > MAX_COMPARED) {
      // Only the newest are compared: older snapshots are memory for nothing.
      list.shift()!.state = undefined;
      this.checkpoints--;
    }
    st.parent = cp;
    this.peak = Math.max(this.peak, this.checkpoints);
    return false;
  }

  /** Executes the instruction at st.pc; true when the path ends. */
  private step(st: State): boolean {
    const pc = st.pc;
    const i = this.insns[pc]!;
    const cls = i.opcode & 7;
    if (!knownOpcode(i)) throw new Refusal(pc, `unknown opcode 0x${i.opcode.toString(16).padStart(2, "0")}`);
    if (i.dst > 10 || i.src > 10) throw new Refusal(pc, `invalid register r${i.dst > 10 ? i.dst : i.src} (r0..r10 only)`);
    // Fields whose value sizes the analysis' arithmetic (a width of 2^30 bits
    // would take the bigint code forever): refused here, as the VM does.
    if ((cls === CLS_ALU || cls === CLS_ALU64) && (i.opcode & 0xf0) === 0xd0 && i.imm !== 16 && i.imm !== 32 && i.imm !== 64) {
      throw new Refusal(pc, `invalid byte swap width ${i.imm} (must be 16, 32 or 64)`);
    }
    if ((cls === CLS_ALU || cls === CLS_ALU64) && (i.opcode & 0xf0) === 0xb0 && i.off !== 0 && i.off !== 8 && i.off !== 16 && i.off !== 32) {
      throw new Refusal(pc, `invalid sign-extension width ${i.off} for mov (must be 8, 16 or 32)`);
    }
    switch (cls) {
      case CLS_ALU:
      case CLS_ALU64:
        this.alu(st, pc, i, cls === CLS_ALU64 ? 64 : 32);
        st.pc++;
        return false;
      case CLS_LD:
        this.lddw(st, pc, i);
        st.pc += 2;
        return false;
      case CLS_LDX:
        this.load(st, pc, i);
        st.pc++;
        return false;
      case CLS_ST:
      case CLS_STX:
        if ((i.opcode & 0xe0) === MODE_ATOMIC) this.atomic(st, pc, i);
        else this.store(st, pc, i, cls === CLS_STX);
        st.pc++;
        return false;
      default:
        return this.jump(st, pc, i, cls === CLS_JMP32 ? 32 : 64);
    }
  }

  private set(st: State, r: number, v: Reg, pc: number): void {
    if (r === 10) throw new Refusal(pc, "r10 (the frame pointer) is read-only", 10);
    st.top.regs[r] = v;
  }

  private lddw(st: State, pc: number, i: Insn): void {
    if (i.opcode !== OP_LDDW) throw new Refusal(pc, `unsupported load opcode 0x${i.opcode.toString(16)}`);
    const hi = this.insns[pc + 1];
    if (hi === undefined) throw new Refusal(pc, "incomplete lddw");
    const map = (): number => {
      if (i.imm < 0 || i.imm >= this.maps.length) throw new Refusal(pc, `lddw refers to map index ${i.imm}, but the program has ${this.maps.length} maps`);
      return i.imm;
    };
    switch (i.src) {
      case 0:
        this.set(st, i.dst, scalarReg(sConst((BigInt(hi.imm >>> 0) << 32n) | BigInt(i.imm >>> 0))), pc);
        return;
      case 1:
      case 5:
        this.set(st, i.dst, { k: "map_ptr", off: 0, vr: ZERO_VR, map: map() }, pc);
        return;
      case 2:
      case 6: {
        const m = map();
        if (hi.imm < 0 || hi.imm >= this.maps[m]!.valueSize) throw new Refusal(pc, `lddw: offset ${hi.imm} outside the ${this.maps[m]!.valueSize}-byte value of map '${this.maps[m]!.name}'`);
        this.set(st, i.dst, { k: "map_value", off: hi.imm, vr: ZERO_VR, map: m }, pc);
        return;
      }
      case 4: {
        const target = pc + i.imm + 1;
        if (!this.cfg.entries.has(target) || target < 0 || target >= this.insns.length) throw new Refusal(pc, `lddw func: pc ${target} is not a function`);
        this.set(st, i.dst, { k: "func", off: 0, vr: ZERO_VR, target }, pc);
        return;
      }
    }
    throw new Refusal(pc, `unsupported lddw source ${i.src}`);
  }

  private alu(st: State, pc: number, i: Insn, bits: 32 | 64): void {
    const op = i.opcode & 0xf0;
    const x = (i.opcode & 0x08) !== 0;
    const regs = st.top.regs;
    if (op === Alu.MOV) {
      if (!x) {
        this.set(st, i.dst, scalarReg(bits === 64 ? sConst(BigInt(i.imm)) : sConst(BigInt(i.imm >>> 0))), pc);
        return;
      }
      const src = this.use(st, pc, i.src);
      if (i.off !== 0 || bits === 32) this.noStackCast(pc, i.src, src);
      if (i.off !== 0) {
        const s = src.k === "scalar" ? src.s : S_UNKNOWN;
        const v = sSext(s, i.off);
        this.set(st, i.dst, scalarReg(bits === 32 ? sZext32(v) : v), pc);
        return;
      }
      if (bits === 32) {
        this.set(st, i.dst, scalarReg(src.k === "scalar" ? sZext32(src.s) : sTrunc(S_UNKNOWN, 32)), pc);
        return;
      }
      if (src.k === "scalar" && !isConst(src.s)) {
        // Linked copies: a branch on one refines the other (find_equal_scalars).
        const id = src.id !== 0 ? src.id : this.newId();
        regs[i.src] = scalarReg(src.s, id);
        this.set(st, i.dst, scalarReg(src.s, id), pc);
        return;
      }
      this.set(st, i.dst, src, pc);
      return;
    }
    const d = this.use(st, pc, i.dst);
    if (op === Alu.NEG || op === Alu.END) {
      const s = d.k === "scalar" ? d.s : S_UNKNOWN;
      if (isPtr(d)) this.noPtrMath(pc, i.dst, d, op === Alu.NEG ? "neg" : "byte swap");
      this.noStackCast(pc, i.dst, d);
      const v = op === Alu.NEG ? sNeg(s, bits) : sEnd(s, i.imm, bits === 64 || x);
      this.set(st, i.dst, scalarReg(v), pc);
      return;
    }
    const s: Reg = x ? this.use(st, pc, i.src) : scalarReg(bits === 64 ? sConst(BigInt(i.imm)) : sConst(BigInt(i.imm >>> 0)));
    const signed = (op === Alu.DIV || op === Alu.MOD) && i.off === 1;
    if (d.k === "scalar" && s.k === "scalar") {
      this.set(st, i.dst, scalarReg(aluScalar(op, d.s, s.s, bits, signed)), pc);
      return;
    }
    if (isPtr(d)) this.noPtrMath(pc, i.dst, d, "arithmetic");
    if (isPtr(s)) this.noPtrMath(pc, i.src, s, "arithmetic");
    if (bits === 64 && isPtr(d) && s.k === "scalar" && (op === Alu.ADD || op === Alu.SUB)) {
      this.set(st, i.dst, this.ptrAdd(d, s.s, op === Alu.SUB), pc);
      return;
    }
    if (bits === 64 && d.k === "scalar" && isPtr(s) && op === Alu.ADD) {
      this.set(st, i.dst, this.ptrAdd(s, d.s, false), pc);
      return;
    }
    if (bits === 64 && op === Alu.SUB && d.k === "stack" && s.k === "stack" && d.frame === s.frame) {
      // The distance between two places of one frame: the same in both backends.
      this.set(st, i.dst, scalarReg(aluScalar(Alu.SUB, aluScalar(Alu.ADD, sConst(BigInt(d.off)), d.vr, 64, false), aluScalar(Alu.ADD, sConst(BigInt(s.off)), s.vr, 64, false), 64, false)), pc);
      return;
    }
    // Anything else turns the address into a plain number (never dereferenceable).
    this.noStackCast(pc, i.dst, d);
    this.noStackCast(pc, i.src, s);
    this.set(st, i.dst, scalarReg(bits === 32 ? sTrunc(S_UNKNOWN, 32) : S_UNKNOWN), pc);
  }

  /**
   * A stack address may not become a number: the interpreter and the JIT put
   * the stack in different places, so anything computed from it would differ.
   */
  private noStackCast(pc: number, r: number, v: Reg): void {
    if (v.k === "stack") throw new Refusal(pc, `a stack address (r${r}) may not be turned into a number: it differs between the interpreter and the JIT`, r);
  }

  private noPtrMath(pc: number, r: number, p: Ptr, what: string): void {
    if (p.k === "map_value_or_null" || p.k === "ringbuf_mem_or_null") {
      throw new Refusal(pc, `${what} on r${r}, which may be NULL: compare it with 0 first`, r);
    }
    if (p.k === "map_ptr" || p.k === "func") throw new Refusal(pc, `${what} on a ${p.k === "func" ? "function" : "map"} pointer (r${r})`, r);
  }

  private ptrAdd(p: Ptr, s: Scalar, sub: boolean): Reg {
    if (isConst(s)) {
      const c = Number(BigInt.asIntN(64, s.umin));
      const off = p.off + (sub ? -c : c);
      if (Math.abs(off) < 1 << 29) return { ...p, off };
    }
    return { ...p, vr: aluScalar(sub ? Alu.SUB : Alu.ADD, p.vr, s, 64, false) };
  }

  private load(st: State, pc: number, i: Insn): void {
    const mode = i.opcode & 0xe0;
    if (mode !== MODE_MEM && mode !== MODE_MEMSX) throw new Refusal(pc, `unsupported load mode 0x${mode.toString(16)}`);
    const signed = mode === MODE_MEMSX;
    const size = [4, 2, 1, 8][(i.opcode >> 3) & 3]!;
    const p = this.use(st, pc, i.src);
    checkRegion(this, st, pc, i.src, p, i.off, size, "read", "load");
    const q = p as Ptr;
    let v: Reg;
    if (q.k === "stack") {
      const f = st.frames[q.frame!]!;
      if (isConst(q.vr)) v = stackRead(f, q.off + Number(q.vr.smin) + i.off, size, signed, pc, i.src);
      else {
        stackCheckInit(f, q.off + i.off + Number(q.vr.smin), q.off + i.off + Number(q.vr.smax) + size, pc, i.src, `a load of ${size} bytes at a variable offset`);
        v = sizedUnknown(size, signed);
      }
    } else if (q.k === "map_value" && isConst(q.vr)) {
      const c = frozenRead(this.maps[q.map!]!, q.off + Number(q.vr.umin) + i.off, size, signed);
      v = c === undefined ? sizedUnknown(size, signed) : scalarReg(c);
    } else {
      v = sizedUnknown(size, signed);
    }
    this.set(st, i.dst, v, pc);
  }

  private store(st: State, pc: number, i: Insn, fromReg: boolean): void {
    const size = [4, 2, 1, 8][(i.opcode >> 3) & 3]!;
    const p = this.use(st, pc, i.dst);
    const value: Reg = fromReg ? this.use(st, pc, i.src) : scalarReg(sTrunc(sConst(BigInt(i.imm)), size * 8));
    checkRegion(this, st, pc, i.dst, p, i.off, size, "write", "store");
    const q = p as Ptr;
    if (q.k !== "stack") {
      if (isPtr(value)) {
        throw new Refusal(pc, `store of a pointer (r${i.src} is ${this.describe(value)}) into ${q.k === "ctx" ? "the context" : q.k === "map_value" ? `map '${this.mapName(q.map!)}'` : "a ring-buffer record"}: addresses may not leak`, i.src);
      }
      return;
    }
    if (value.k === "stack" && value.frame! > q.frame!) {
      throw new Refusal(pc, `store of a pointer to frame ${value.frame}'s stack into the stack of its caller (frame ${q.frame})`, i.src);
    }
    const f = st.frames[q.frame!]!;
    if (isConst(q.vr)) stackWrite(f, q.off + Number(q.vr.smin) + i.off, size, value);
    else stackWriteRange(f, q.off + i.off + Number(q.vr.smin), q.off + i.off + Number(q.vr.smax) + size, false);
  }

  private atomic(st: State, pc: number, i: Insn): void {
    const size = [4, 2, 1, 8][(i.opcode >> 3) & 3]!;
    if ((i.opcode & 7) !== CLS_STX || (size !== 4 && size !== 8)) throw new Refusal(pc, "atomic operations take 4 or 8 bytes (stx)");
    const p = this.use(st, pc, i.dst);
    const v = this.use(st, pc, i.src);
    if (v.k !== "scalar") throw new Refusal(pc, `atomic operation with a pointer operand (r${i.src} is ${this.describe(v)})`, i.src);
    if (i.imm === ATOMIC_CMPXCHG) {
      const r0 = this.use(st, pc, 0);
      if (r0.k !== "scalar") throw new Refusal(pc, `cmpxchg compares with r0, which is ${this.describe(r0)}`, 0);
    }
    if (isPtr(p) && p.k !== "stack" && p.k !== "map_value" && p.k !== "map_value_or_null" && p.k !== "ringbuf_mem_or_null") {
      throw new Refusal(pc, `atomic operation on ${this.describe(p)}: only the stack and map values`, i.dst);
    }
    checkRegion(this, st, pc, i.dst, p, i.off, size, "read", "atomic operation");
    checkRegion(this, st, pc, i.dst, p, i.off, size, "write", "atomic operation");
    const q = p as Ptr;
    // A locked operation across a cache line is very slow (a split lock; some
    // kernels kill the process for it): atomics must be naturally aligned,
    // as the kernel demands. Stack slots and map values start 8-aligned.
    const low = BigInt(size - 1);
    const fixed = BigInt(q.off + i.off);
    if (((q.vr.t.v + fixed) & low) !== 0n || (q.vr.t.m & low) !== 0n) {
      throw new Refusal(pc, `misaligned atomic operation: ${size} bytes at ${this.describe(p)}${i.off >= 0 ? "+" : ""}${i.off} is not ${size}-byte aligned`, i.dst);
    }
    if (q.k === "stack") {
      const f = st.frames[q.frame!]!;
      const lo = q.off + i.off + Number(q.vr.smin);
      const hi = q.off + i.off + Number(q.vr.smax) + size;
      stackCheckInit(f, lo, hi, pc, i.dst, `atomic operation on ${size} bytes`);
      stackWriteRange(f, lo, hi, false);
    }
    if (i.imm === ATOMIC_CMPXCHG) st.top.regs[0] = sizedUnknown(size, false);
    else if (i.imm & ATOMIC_FETCH) this.set(st, i.src, sizedUnknown(size, false), pc);
  }

  /** A jump must land on an instruction: refused at the jump, not where control would arrive. */
  private checkTarget(pc: number, target: number): void {
    if (target < 0 || target >= this.insns.length || this.cfg.secondSlot[target]) {
      throw new Refusal(pc, `jump to pc ${target}, which is not an instruction (the program has ${this.insns.length})`);
    }
  }

  private jump(st: State, pc: number, i: Insn, bits: 32 | 64): boolean {
    const op = i.opcode & 0xf0;
    if (i.opcode === OP_EXIT) return this.exit(st, pc);
    if (op === 0x80) {
      this.call(st, pc, i);
      return false;
    }
    if (op === 0x00) {
      const target = pc + 1 + (bits === 32 ? i.imm : i.off);
      this.checkTarget(pc, target);
      st.jumpsSince++;
      if (target <= pc) st.backEdge = [pc, target];
      st.pc = target;
      return false;
    }
    const x = (i.opcode & 0x08) !== 0;
    const target = pc + 1 + i.off;
    this.checkTarget(pc, target);
    st.jumpsSince++;
    const d = this.use(st, pc, i.dst);
    const s: Reg = x ? this.use(st, pc, i.src) : scalarReg(immScalar(i.imm, bits));
    // Each side as an edit of a state (undefined: that side cannot happen); only a real fork clones.
    let taken: Edit | undefined;
    let fall: Edit | undefined;
    if (d.k === "scalar" && s.k === "scalar") {
      const [t, f] = branchScalar(op, d.s, s.s, bits);
      taken = this.refined(t, i, x);
      fall = this.refined(f, i, x);
    } else {
      [taken, fall] = this.pointerBranch(st, pc, op, d, s, bits, i);
    }
    if (taken === undefined && fall === undefined) return true; // no value reaches here: the path is impossible
    const path = [...st.path.slice(-(PATH_LEN - 1)), pc];
    if (taken !== undefined) {
      const t = fall === undefined ? st : st.clone();
      taken(t);
      t.pc = target;
      t.path = path;
      if (target <= pc) t.backEdge = [pc, target];
      if (t !== st) this.fork(t);
    }
    if (fall !== undefined) {
      fall(st);
      st.pc = pc + 1;
      st.path = path;
    }
    return false;
  }

  /** The edit one side of a scalar branch makes, or undefined if that side is impossible. */
  private refined(side: Side, i: Insn, x: boolean): Edit | undefined {
    if (side === undefined) return undefined;
    return (n: State): void => {
      this.setScalar(n, i.dst, side[0]);
      if (x) this.setScalar(n, i.src, side[1]);
    };
  }

  /** Sets a scalar register and every linked copy (same id) in all frames. */
  private setScalar(st: State, r: number, s: Scalar): void {
    const cur = st.top.regs[r]!;
    const id = cur.k === "scalar" ? cur.id : 0;
    if (id === 0) {
      st.top.regs[r] = scalarReg(s);
      return;
    }
    for (const f of st.frames) {
      for (let k = 0; k < 11; k++) {
        const v = f.regs[k]!;
        if (v.k === "scalar" && v.id === id && !sWithin(s, v.s)) f.regs[k] = scalarReg(s, id);
      }
      f.spills = f.spills.map((sp) => (sp !== undefined && sp.reg.k === "scalar" && sp.reg.id === id && sp.size === 8 ? { size: 8, reg: scalarReg(s, id) } : sp));
    }
  }

  private pointerBranch(st: State, pc: number, op: number, d: Reg, s: Reg, bits: 32 | 64, i: Insn): [Edit | undefined, Edit | undefined] {
    const isZero = (r: Reg): boolean => r.k === "scalar" && isConst(r.s) && r.s.umin === 0n;
    const eq = op === 0x10;
    const ne = op === 0x50;
    if ((eq || ne) && bits === 64 && (isZero(s) || isZero(d))) {
      const p = (isZero(s) ? d : s) as Reg;
      if (p.k === "map_value_or_null" || p.k === "ringbuf_mem_or_null") {
        const isNull = (n: State): void => this.markNull(n, p, true);
        const notNull = (n: State): void => this.markNull(n, p, false);
        return eq ? [isNull, notNull] : [notNull, isNull];
      }
      if (isPtr(p) && p.k !== "func") return eq ? [undefined, NO_EDIT] : [NO_EDIT, undefined];
    }
    const sameFrame = d.k === "stack" && s.k === "stack" && d.frame === s.frame;
    if ((d.k === "stack" || s.k === "stack") && !sameFrame) {
      const r = d.k === "stack" ? i.dst : i.src;
      throw new Refusal(pc, `comparison of a stack address (r${r}) with ${this.describe(d.k === "stack" ? s : d)}: its outcome differs between the interpreter and the JIT`, r);
    }
    void st;
    return [NO_EDIT, NO_EDIT];
  }

  /** The null check's verdict for every copy of an _or_null pointer. */
  private markNull(st: State, p: Ptr, isNull: boolean): void {
    const id = p.id!;
    if (isNull && p.ref !== undefined) st.refs.delete(p.ref);
    const fix = (r: Reg): Reg => {
      if (!isPtr(r) || r.id !== id || (r.k !== "map_value_or_null" && r.k !== "ringbuf_mem_or_null")) return r;
      if (isNull) return scalarReg(sConst(0n));
      const { id: _id, ...rest } = r;
      return { ...rest, k: r.k === "map_value_or_null" ? "map_value" : "ringbuf_mem" };
    };
    for (const f of st.frames) {
      f.regs = f.regs.map(fix);
      f.spills = f.spills.map((sp) => (sp === undefined ? sp : { ...sp, reg: fix(sp.reg) }));
    }
  }

  private call(st: State, pc: number, i: Insn): void {
    if (i.opcode !== OP_CALL) throw new Refusal(pc, "indirect calls (callx) are not supported");
    if (i.src === 1) {
      const target = pc + i.imm + 1;
      if (target < 0 || target >= this.insns.length) throw new Refusal(pc, `call to pc ${target}, outside the program`);
      enterFrame(st, pc, target, [1, 2, 3, 4, 5].map((r) => st.top.regs[r]!), false);
      return;
    }
    if (i.src !== 0) throw new Refusal(pc, i.src === 2 ? "kfunc calls are not supported" : `unknown call kind (src ${i.src})`);
    const { callback } = callHelper(this, st, pc, i.imm);
    if (callback === undefined) {
      st.pc = pc + 1;
      return;
    }
    // The helper may call the callback no more times: continue after the call.
    const after = st.clone();
    after.top.regs[0] = UNKNOWN_SCALAR;
    clobberArgs(after, pc);
    after.pc = pc + 1;
    this.fork(after);
    // Or once more: this path enters it, and comes back to the call when it returns.
    enterFrame(st, pc, callback.target, callback.args, true);
  }

  private exit(st: State, pc: number): boolean {
    const r0 = st.top.regs[0]!;
    if (st.frames.length === 1) {
      if (r0.k !== "scalar") {
        throw new Refusal(pc, r0.k === "uninit" || r0.k === "released" ? `r0 (the return value) is ${this.describe(r0)} at exit` : `r0 (the return value) must be a number at exit, not ${this.describe(r0)}`, 0);
      }
      const held = [...st.refs.values()];
      if (held.length > 0) throw new Refusal(pc, `the ring-buffer record reserved at pc ${held[0]} is neither submitted nor discarded on this path`);
      return true;
    }
    const callee = st.top;
    this.use(st, pc, 0);
    if (r0.k === "stack" && r0.frame === st.frames.length - 1) throw new Refusal(pc, "returns a pointer to its own stack frame", 0);
    if (callee.callback) {
      if (r0.k !== "scalar" || r0.s.umin > 1n) throw new Refusal(pc, `a callback must return 0 or 1, and r0 is ${this.describe(r0)}`, 0);
      st.frames.pop();
      st.pc = callee.callsite;
      st.fromCallback = true;
      return false;
    }
    st.frames.pop();
    st.top.regs[0] = r0;
    clobberArgs(st, callee.callsite);
    st.pc = callee.callsite + 1;
    return false;
  }

  errorInfo(name: string, e: Refusal): VerifierErrorInfo {
    const line = disassembleLines(this.insns).find((l) => l.pc === e.pc);
    const insn = (line?.text ?? "?").replace(/%r/g, "r");
    const st = this.current;
    const regState = e.register !== undefined && st !== undefined ? this.describe(st.top.regs[e.register]!) : undefined;
    const path = st === undefined ? [] : st.path.slice(-PATH_LEN);
    const who = e.register !== undefined && regState !== undefined && !e.reason.startsWith(`r${e.register} is`) ? `r${e.register} is ${regState}: ` : "";
    const pathText = path.length === 0 ? "" : ` (path: ${compressPath([...path, e.pc])})`;
    const message = `prog '${name}': pc ${e.pc}: ${insn}: ${who}${e.reason}${pathText}`;
    return { program: name, pc: e.pc, insn, ...(e.register !== undefined ? { register: `r${e.register}`, state: regState } : {}), reason: e.reason, path, message };
  }
}

/** "1 -> 5 -> 5 -> 5 -> 9" as "1 -> 5 (x3) -> 9": loops read shorter. */
function compressPath(pcs: number[]): string {
  const out: string[] = [];
  for (let k = 0; k < pcs.length; ) {
    let n = 1;
    while (k + n < pcs.length && pcs[k + n] === pcs[k]) n++;
    out.push(n > 1 ? `${pcs[k]} (x${n})` : String(pcs[k]));
    k += n;
  }
  return out.join(" -> ");
}

/** Opcodes the ISA defines (the VM's validator checks the other fields). */
function knownOpcode(i: Insn): boolean {
  const cls = i.opcode & 7;
  const op = i.opcode & 0xf0;
  switch (cls) {
    case CLS_ALU:
    case CLS_ALU64:
      return op <= 0xd0;
    case CLS_JMP:
      return op <= 0xd0;
    case CLS_JMP32:
      return op <= 0xd0 && op !== 0x80 && op !== 0x90;
    case CLS_ST:
      return (i.opcode & 0xe0) === MODE_MEM;
    case CLS_STX:
      return (i.opcode & 0xe0) === MODE_MEM || (i.opcode & 0xe0) === MODE_ATOMIC;
    default:
      return true; // LD and LDX check their modes where they run
  }
}

/** Widening for callback iterations: scalars that grew since the previous iteration become unknown. */
function widen(old: State, cur: State): boolean {
  let changed = false;
  for (let f = 0; f < old.frames.length; f++) {
    const o = old.frames[f]!;
    const n = cur.frames[f]!;
    for (let r = 0; r < 10; r++) {
      const a = o.regs[r]!;
      const b = n.regs[r]!;
      if (a.k === "scalar" && b.k === "scalar" && !sWithin(a.s, b.s)) {
        n.regs[r] = UNKNOWN_SCALAR;
        changed = true;
      }
    }
    for (let s = 0; s < n.spills.length; s++) {
      const a = o.spills[s];
      const b = n.spills[s];
      if (a !== undefined && b !== undefined && a.reg.k === "scalar" && b.reg.k === "scalar" && a.size === b.size && !sWithin(a.reg.s, b.reg.s)) {
        n.spills[s] = { size: b.size, reg: b.size === 8 ? UNKNOWN_SCALAR : scalarReg(sTrunc(S_UNKNOWN, 32)) };
        changed = true;
      }
    }
  }
  return changed;
}

export function verifyProgram(name: string, insns: Uint8Array, opts: VerifyOptions): VerifyResult {
  const start = process.hrtime.bigint();
  let v: Verifier | undefined;
  const stats = (): { insnsProcessed: number; peakStates: number; ms: number } => ({
    insnsProcessed: v?.processed ?? 0,
    peakStates: v?.peak ?? 0,
    ms: Number(process.hrtime.bigint() - start) / 1e6,
  });
  try {
    v = new Verifier(insns, opts);
    v.run();
    return { ok: true, stats: stats() };
  } catch (e) {
    if (e instanceof Refusal && v !== undefined) return { ok: false, error: v.errorInfo(name, e), stats: stats() };
    // Fail safe: input the analysis does not understand (a bug of ours or a
    // malformed program) is refused, never accepted and never thrown at the loader.
    const why = e instanceof Error ? e.message : String(e);
    const reason = `internal error of the verifier (${why}): refusing the program`;
    const pc = e instanceof Refusal ? e.pc : 0;
    return {
      ok: false,
      error: { program: name, pc, insn: "", reason, path: [], message: `prog '${name}': ${reason}` },
      stats: stats(),
    };
  }
}
