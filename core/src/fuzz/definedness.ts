/**
 * Does a program depend on what the ISA leaves undefined? A small forward
 * data-flow analysis, run only on programs where the interpreter and the JIT
 * disagreed (or a fast-mode run crashed or hung), to tell a VM bug from a
 * program whose result the ISA does not fix:
 *
 *  - a register read before it is written (at entry only r1 and r10 are set;
 *    after a helper or local call r1..r5 are scratch; a subprogram starts
 *    with r6..r9 unset as the kernel's verifier sees them);
 *  - a stack byte read before it is written (through r10 + a known offset);
 *  - a value derived from a stack address (different in each backend) or from
 *    a nondeterministic helper (time, random, CPU) reaching r0 at exit, a
 *    branch, or memory other than the stack.
 *
 * Must-analysis over all paths: a read is flagged if any path reaches it
 * unset. Memory reached through pointers other than r10 + constant (context,
 * map values, the caller's frame) is taken as defined. Not a verifier: it
 * proves nothing about bounds or termination, which checked mode judges.
 */
import { decodeInsns, type Insn } from "../asm/insn.js";
import { AluOp, AtomicOp, CallKind, Cls, JmpOp, Mode, Op, Pseudo, Size, Src } from "../asm/opcodes.js";
import { standardHelpers } from "../verifier/helpers.js";
import { FUZZ_MAPS } from "./env.js";

interface Reg {
  init: boolean;
  /** Depends on a stack address or a nondeterministic helper. */
  taint: boolean;
  /** r10 + fp when known (a pointer into this function's frame). */
  fp?: number;
  /** Known constant. */
  k?: bigint;
  /** lddw map_fd N: which of FUZZ_MAPS. */
  map?: number;
  /** An address of a map or map value (differs between runs; fine to dereference, not to leak). */
  addr?: boolean;
  /** A map value pointer: the value's size and this pointer's offset into it (or null, after a lookup). */
  mv?: { size: number; off: number };
  /**
   * A pointer into the caller's frame (a subprogram's argument): the caller's
   * r10 + cs of the frame csUp levels up (0: the caller), or NaN when not
   * known. Dereferenceable,
   * not to be leaked.
   */
  cs?: number;
  csUp?: number;
}

interface AState {
  regs: Reg[];
  init: Uint8Array; // 512 bytes of the frame
  taint: Uint8Array;
  /** A subprogram's view of its callers' frames at the call (bytes initialised), the caller's first. */
  callers?: Uint8Array[];
}

const NONDET_HELPERS = new Set([5, 7, 8, 125, 160]);
const WRITES_BUF = new Set([4, 16, 45, 112, 113, 114, 115]); // (r1 = buffer, r2 = size)
const HELPERS = standardHelpers();

const uninit = (): Reg => ({ init: false, taint: false });
const cloneState = (s: AState): AState => ({
  regs: s.regs.map((r) => ({ ...r })),
  init: s.init.slice(),
  taint: s.taint.slice(),
  ...(s.callers ? { callers: s.callers } : {}),
});

function meetReg(a: Reg, b: Reg): Reg {
  const r: Reg = { init: a.init && b.init, taint: a.taint || b.taint };
  if (a.fp !== undefined && a.fp === b.fp) r.fp = a.fp;
  if (a.k !== undefined && a.k === b.k) r.k = a.k;
  if (a.map !== undefined && a.map === b.map) r.map = a.map;
  if (a.addr || b.addr) r.addr = true;
  if (a.mv && b.mv && a.mv.size === b.mv.size && a.mv.off === b.mv.off) r.mv = a.mv;
  if (a.cs !== undefined && b.cs !== undefined) {
    const same = a.cs === b.cs && a.csUp === b.csUp;
    r.cs = same ? a.cs : NaN;
    r.csUp = same ? (a.csUp ?? 0) : 0;
  }
  return r;
}

/** Meets `b` into `a`; true if `a` changed. */
function meetInto(a: AState, b: AState): boolean {
  let changed = false;
  for (let i = 0; i < 11; i++) {
    const m = meetReg(a.regs[i]!, b.regs[i]!);
    const o = a.regs[i]!;
    if (m.init !== o.init || m.taint !== o.taint || m.fp !== o.fp || m.k !== o.k || m.map !== o.map || m.addr !== o.addr || m.mv?.off !== o.mv?.off || m.mv?.size !== o.mv?.size || !Object.is(m.cs, o.cs) || m.csUp !== o.csUp) {
      a.regs[i] = m;
      changed = true;
    }
  }
  if (a.callers && b.callers && a.callers !== b.callers) {
    const merged = a.callers.map((frame, up) => {
      const other = b.callers![up];
      if (!other) return frame;
      const m = frame.slice();
      for (let i = 0; i < 512; i++) m[i] = m[i]! & other[i]!;
      if (m.some((v, i) => v !== frame[i])) changed = true;
      return m;
    });
    a.callers = merged;
  }
  for (let i = 0; i < 512; i++) {
    const init = a.init[i]! & b.init[i]!;
    const taint = a.taint[i]! | b.taint[i]!;
    if (init !== a.init[i] || taint !== a.taint[i]) {
      a.init[i] = init;
      a.taint[i] = taint;
      changed = true;
    }
  }
  return changed;
}

const fpText = (off: number): string => `r10${off < 0 ? "" : "+"}${off}`;
const sizeBytes = (opcode: number): number => [4, 2, 1, 8][(opcode & Size.MASK) >> 3]!;

class Found extends Error {}
class GiveUp extends Error {}

export interface UndefinedUse {
  pc: number;
  reason: string;
}

/**
 * The first use of undefined behaviour found, or undefined when the program's
 * result is fixed by the ISA on every path (as far as this analysis sees).
 */
export function findUndefinedBehaviour(code: Uint8Array | readonly Insn[]): UndefinedUse | undefined {
  const insns = code instanceof Uint8Array ? decodeInsns(code) : [...code];
  const n = insns.length;
  const second = new Uint8Array(n);
  for (let pc = 0; pc < n; pc++) if (insns[pc]!.opcode === Op.LDDW) second[++pc] = 1;

  let found: UndefinedUse | undefined;
  const fail = (pc: number, reason: string): never => {
    found = { pc, reason };
    throw new Found();
  };

  const fresh = (): AState => ({
    regs: Array.from({ length: 11 }, uninit),
    init: new Uint8Array(512),
    taint: new Uint8Array(512),
  });
  const main = fresh();
  main.regs[1] = { init: true, taint: false };
  main.regs[10] = { init: true, taint: true, fp: 0 };

  // Each call is analysed in its caller's context (which bytes of the
  // caller's frame are set, what the arguments are), so two call sites
  // passing different slots are judged each on its own.
  let steps = 0;
  const analyse = (entry: number, start: AState, depth: number): Reg | undefined => {
    const isMain = depth === 0;
    const ret: { r?: Reg } = {};
    const states = new Map<number, AState>([[entry, cloneState(start)]]);
    const work = [entry];
    while (work.length > 0) {
      if (++steps > 2_000_000) throw new GiveUp(); // too big to judge
      const pc = work.pop()!;
      if (pc < 0 || pc >= n || second[pc]) continue;
      const s = cloneState(states.get(pc)!);
      const i = insns[pc]!;
      const succ = step(pc, i, s, isMain, ret, depth);
      // After a null check of a map value pointer, the null side holds the number 0.
      const nullSide = nullCheckSide(pc, i, s);
      for (const t of succ) {
        let out = s;
        if (nullSide !== undefined && t === nullSide) {
          out = cloneState(s);
          out.regs[i.dst] = { init: true, taint: false, k: 0n };
        }
        const old = states.get(t);
        if (!old) {
          states.set(t, cloneState(out));
          work.push(t);
        } else if (meetInto(old, out)) work.push(t);
      }
    }
    return ret.r;
  };

  // Checked mode lets a program reach the whole region of its maps, so an
  // access past a map value is not caught there; its effect on the map's
  // neighbours depends on their layout (hash seeds, allocation order).
  const outOfValue = (pc: number, base: Reg, off: number, size: number): boolean => {
    if (base.mv && (base.mv.off + off < 0 || base.mv.off + off + size > base.mv.size)) {
      fail(pc, `access of ${size} bytes at offset ${base.mv.off + off} of a ${base.mv.size}-byte map value (out of bounds)`);
    }
    return false;
  };

  const nullCheckSide = (pc: number, i: Insn, s: AState): number | undefined => {
    if ((i.opcode & Cls.MASK) !== Cls.JMP || (i.opcode & Src.X) !== 0 || i.imm !== 0) return undefined;
    if (!s.regs[i.dst]?.addr) return undefined;
    const op = i.opcode & 0xf0;
    if (op === JmpOp.JEQ) return pc + i.off + 1;
    if (op === JmpOp.JNE) return pc + 1;
    return undefined;
  };

  const callerBytes = (s: AState, pc: number, up: number, off: number, size: number, how: string): void => {
    const frame = s.callers?.[up];
    if (Number.isNaN(off) || !frame) return;
    for (let b = 0; b < size; b++) {
      const at = 512 + off + b;
      if (at < 0 || at >= 512 || !frame[at]) {
        fail(pc, `the ${up === 0 ? "caller" : `caller ${up + 1} levels up`}'s stack byte ${fpText(off + b)} is ${how} before it is written`);
      }
    }
  };

  const read = (s: AState, pc: number, r: number, what: string): Reg => {
    const reg = s.regs[r] ?? uninit();
    if (!reg.init) fail(pc, `r${r} is read (${what}) before it is written`);
    return reg;
  };

  const step = (pc: number, i: Insn, s: AState, isMain: boolean, ret: { r?: Reg }, depth: number): number[] => {
    const cls = i.opcode & Cls.MASK;
    const next = [pc + 1];
    const regs = s.regs;
    switch (cls) {
      case Cls.ALU:
      case Cls.ALU64: {
        const op = i.opcode & AluOp.MASK;
        const x = (i.opcode & Src.X) !== 0;
        const is64 = cls === Cls.ALU64;
        if (op === AluOp.MOV) {
          if (x && i.src < 11) {
            const src = read(s, pc, i.src, "mov source");
            // A truncated or sign-extended copy keeps what the value depends on, not what it points at.
            regs[i.dst] = is64 && i.off === 0 ? { ...src } : { init: true, taint: src.taint || src.fp !== undefined || src.cs !== undefined, ...(src.addr ? { addr: true } : {}) };
          } else regs[i.dst] = { init: true, taint: false, k: BigInt(is64 ? i.imm : i.imm >>> 0) };
          break;
        }
        const dst = read(s, pc, i.dst, "alu operand");
        let taint = dst.taint;
        let addr = dst.addr === true;
        if (x && op !== AluOp.END && op !== AluOp.NEG && i.src < 11) {
          const src = read(s, pc, i.src, "alu operand"); // read even when dst is tainted already
          taint = taint || src.taint;
          addr = addr || src.addr === true;
        }
        const out: Reg = { init: true, taint, ...(addr ? { addr } : {}) };
        if (dst.fp !== undefined && is64 && !x && (op === AluOp.ADD || op === AluOp.SUB)) {
          out.fp = dst.fp + (op === AluOp.ADD ? i.imm : -i.imm);
        }
        if (dst.cs !== undefined && is64 && !x && (op === AluOp.ADD || op === AluOp.SUB)) {
          out.cs = dst.cs + (op === AluOp.ADD ? i.imm : -i.imm);
          out.csUp = dst.csUp ?? 0;
        }
        if (dst.mv && is64 && !x && (op === AluOp.ADD || op === AluOp.SUB)) {
          out.mv = { size: dst.mv.size, off: dst.mv.off + (op === AluOp.ADD ? i.imm : -i.imm) };
        }
        // The clock's top bits: a ktime value shifted right by 62 or more is 0 for a century.
        // (The ISA masks the amount: 64 shifts by 0.)
        if (is64 && !x && op === AluOp.RSH && (i.imm & 63) >= 62) out.taint = false;
        regs[i.dst] = out;
        break;
      }
      case Cls.LD:
        if (i.opcode === Op.LDDW) {
          const hi = insns[pc + 1]?.imm ?? 0;
          if (i.src === 0) {
            regs[i.dst] = { init: true, taint: false, k: BigInt.asUintN(64, (BigInt(hi) << 32n) | BigInt(i.imm >>> 0)) };
          } else if (i.src === Pseudo.MAP_FD || i.src === Pseudo.MAP_IDX) {
            regs[i.dst] = { init: true, taint: false, map: i.imm, addr: true };
          } else {
            const m = FUZZ_MAPS[i.imm];
            const mv = m && (i.src === Pseudo.MAP_VALUE || i.src === Pseudo.MAP_IDX_VALUE) ? { size: m.valueSize, off: hi } : undefined;
            regs[i.dst] = { init: true, taint: false, addr: true, ...(mv ? { mv } : {}) };
          }
          return [pc + 2];
        }
        return [];
      case Cls.LDX: {
        const base = read(s, pc, i.src, "load base");
        const size = sizeBytes(i.opcode);
        let taint = false;
        if (base.fp !== undefined) {
          const at = 512 + base.fp + i.off;
          if (at < 0 || at + size > 512) fail(pc, `load outside the frame (${fpText(base.fp + i.off)})`);
          for (let b = 0; b < size; b++) {
            if (!s.init[at + b]) fail(pc, `stack byte ${fpText(base.fp + i.off + b)} is read before it is written`);
            taint ||= s.taint[at + b] !== 0;
          }
        } else if (base.cs !== undefined) {
          callerBytes(s, pc, base.csUp ?? 0, base.cs + i.off, size, "read");
        } else if (base.taint) fail(pc, "a load through an address that depends on where the stack is");
        outOfValue(pc, base, i.off, size);
        regs[i.dst] = { init: true, taint };
        void Mode;
        break;
      }
      case Cls.ST:
      case Cls.STX: {
        const base = read(s, pc, i.dst, "store base");
        const size = sizeBytes(i.opcode);
        const atomic = cls === Cls.STX && (i.opcode & 0xe0) === Mode.ATOMIC;
        const src = cls === Cls.STX ? read(s, pc, i.src, "store source") : { init: true, taint: false };
        if (atomic && i.imm === AtomicOp.CMPXCHG) read(s, pc, 0, "cmpxchg comparand");
        // The value an atomic fetches is the memory's old one; cmpxchg's outcome also depends on r0.
        let oldTaint = false;
        const cmp = atomic && i.imm === AtomicOp.CMPXCHG ? regs[0]! : undefined;
        if (base.fp !== undefined) {
          const at = 512 + base.fp + i.off;
          if (at < 0 || at + size > 512) fail(pc, `store outside the frame (${fpText(base.fp + i.off)})`);
          if (atomic) {
            for (let b = 0; b < size; b++) {
              if (!s.init[at + b]) fail(pc, `atomic on stack byte ${fpText(base.fp + i.off + b)} before it is written`);
              oldTaint ||= s.taint[at + b] !== 0;
            }
          }
          const t = src.taint || src.addr === true || oldTaint || (cmp !== undefined && (cmp.taint || cmp.addr === true));
          for (let b = 0; b < size; b++) {
            s.init[at + b] = 1;
            s.taint[at + b] = t ? 1 : 0;
          }
        } else if (base.cs !== undefined) {
          if (atomic) callerBytes(s, pc, base.csUp ?? 0, base.cs + i.off, size, "updated by an atomic");
        } else if (base.taint) {
          fail(pc, "a store through an address that depends on where the stack is");
        } else if (outOfValue(pc, base, i.off, size)) {
        } else if (src.taint || src.addr || (cmp !== undefined && (cmp.taint || cmp.addr))) {
          fail(pc, "an address or a nondeterministic value is stored outside the stack");
        }
        if (atomic && (i.imm & AtomicOp.FETCH) !== 0) {
          const dst = i.imm === AtomicOp.CMPXCHG ? 0 : i.src;
          regs[dst] = { init: true, taint: oldTaint };
        }
        break;
      }
      default: {
        // JMP / JMP32
        const op = i.opcode & 0xf0;
        if (op === JmpOp.EXIT) {
          const r0 = read(s, pc, 0, "return value");
          if (isMain && (r0.taint || r0.addr)) fail(pc, "r0 at exit holds an address or a nondeterministic value");
          if (!isMain) ret.r = ret.r ? meetReg(ret.r, r0) : { ...r0 };
          return [];
        }
        if (op === JmpOp.CALL) {
          if (i.src === CallKind.LOCAL) {
            const target = pc + i.imm + 1;
            const callee = fresh();
            for (let a = 1; a <= 5; a++) {
              const r = regs[a]!;
              const where =
                r.fp !== undefined ? { cs: r.fp, csUp: 0 } : r.cs !== undefined ? { cs: r.cs, csUp: (r.csUp ?? 0) + 1 } : {};
              // Everything but a frame offset (the callee has its own frame) carries over.
              const { fp: _fp, cs: _cs, csUp: _csUp, ...rest } = r;
              callee.regs[a] = { ...rest, ...where };
            }
            callee.callers = [s.init.slice(), ...(s.callers ?? [])];
            callee.regs[10] = { init: true, taint: true, fp: 0 };
            // Past the VM's 8 frames the call faults at run time: nothing to follow.
            const r = depth < 8 ? analyse(target, callee, depth + 1) : undefined;
            const leaks = r !== undefined && (r.taint || r.addr === true || r.fp !== undefined || r.cs !== undefined);
            for (let a = 0; a <= 5; a++) regs[a] = uninit();
            regs[0] = { init: true, taint: leaks };
            return next;
          }
          if ((i.opcode & Src.X) !== 0) read(s, pc, i.dst, "callx helper id");
          const id = (i.opcode & Src.X) !== 0 ? -1 : i.imm;
          const sig = HELPERS.get(id);
          const nargs = sig ? sig.args.length : 0;
          for (let a = 1; a <= nargs; a++) read(s, pc, a, `argument ${a} of helper ${id}`);
          // Memory the helper reads (keys, values, buffers) must be initialised when it is on the stack.
          sig?.args.forEach((kind, k) => {
            const arg = regs[k + 1]!;
            const isPtr = kind.startsWith("ptr_to_") && kind !== "ptr_to_ctx" && kind !== "ptr_to_func";
            if (isPtr && arg.fp === undefined && arg.taint && arg.cs === undefined) {
              fail(pc, `helper ${id} argument ${k + 1} is an address that depends on where the stack is`);
            }
            // A map or map value address bent by arithmetic (shifts, masks): differs run to run.
            if (arg.addr && arg.map === undefined && arg.mv === undefined) {
              fail(pc, `helper ${id} argument ${k + 1} is computed from the address of a map or map value`);
            }
            if (arg.fp === undefined && arg.cs === undefined) return;
            let size: number | undefined;
            if (kind === "ptr_to_map_key" || kind === "ptr_to_map_value") {
              const m = regs[1]!.map === undefined ? undefined : FUZZ_MAPS[regs[1]!.map];
              size = m ? (kind === "ptr_to_map_key" ? m.keySize : m.valueSize) : undefined;
            } else if (kind === "ptr_to_mem") {
              const k2 = regs[k + 2]?.k;
              size = k2 === undefined ? undefined : Number(k2 & 0xffffn);
            }
            if (arg.fp === undefined) {
              if (size !== undefined) callerBytes(s, pc, arg.csUp ?? 0, arg.cs!, size, `read by helper ${id}`);
              return;
            }
            for (let b = 0; size !== undefined && b < size; b++) {
              const at = 512 + arg.fp + b;
              if (at < 0 || at >= 512 || !s.init[at]) {
                fail(pc, `helper ${id} reads stack byte ${fpText(arg.fp + b)} (argument ${k + 1}) before it is written`);
              }
              if (s.taint[at]) {
                fail(pc, `helper ${id} is given a stack address or nondeterministic value (argument ${k + 1}, ${fpText(arg.fp + b)})`);
              }
            }
          });
          if (WRITES_BUF.has(id) && regs[1]!.fp !== undefined && regs[2]!.k !== undefined) {
            const at = 512 + regs[1]!.fp!;
            const size = Number(regs[2]!.k! & 0xffffffffn);
            for (let b = 0; b < size && at + b < 512; b++) if (at + b >= 0) s.init[at + b] = 1;
          }
          const m = regs[1]!.map === undefined ? undefined : FUZZ_MAPS[regs[1]!.map];
          for (let a = 0; a <= 5; a++) regs[a] = uninit();
          regs[0] = {
            init: true,
            taint: NONDET_HELPERS.has(id),
            ...(sig?.ret === "map_value_or_null" ? { addr: true, ...(m ? { mv: { size: m.valueSize, off: 0 } } : {}) } : {}),
          };
          return next;
        }
        const gotol = cls === Cls.JMP32 && op === JmpOp.JA;
        const target = pc + (gotol ? i.imm : i.off) + 1;
        if (op === JmpOp.JA) return [target];
        const a = read(s, pc, i.dst, "comparison");
        const b = (i.opcode & Src.X) !== 0 ? read(s, pc, i.src, "comparison") : { init: true, taint: false };
        const pointers = a.fp !== undefined && b.fp !== undefined;
        // A null check of a map value pointer is defined; any other comparison of an address is not.
        const nullCheck = (op === JmpOp.JEQ || op === JmpOp.JNE) && (i.opcode & Src.X) === 0 && i.imm === 0;
        if ((a.addr || b.addr) && !nullCheck) fail(pc, "a branch depends on the address of a map or map value");
        if ((a.taint || b.taint) && !pointers) {
          fail(pc, "a branch depends on a stack address or a nondeterministic value");
        }
        return [pc + 1, target];
      }
    }
    return next;
  };

  try {
    analyse(0, main, 0);
  } catch (e) {
    if (e instanceof GiveUp) return undefined;
    if (!(e instanceof Found)) throw e;
  }
  return found;
}
