/**
 * Static facts about the instruction array the verifier needs before it
 * runs: lddw second slots, prune points (jump targets, fall-throughs of
 * conditional jumps, function entries, return points, callback calls) and
 * register liveness (which registers a later instruction may read before
 * writing them), so that pruning ignores dead registers.
 */
import type { Insn } from "../asm/insn.js";
import type { HelperSignature } from "./types.js";

export const CLS_LD = 0x00;
export const CLS_LDX = 0x01;
export const CLS_ST = 0x02;
export const CLS_STX = 0x03;
export const CLS_ALU = 0x04;
export const CLS_JMP = 0x05;
export const CLS_JMP32 = 0x06;
export const CLS_ALU64 = 0x07;
export const OP_LDDW = 0x18;
export const OP_CALL = 0x85;
export const OP_EXIT = 0x95;
export const MODE_MEM = 0x60;
export const MODE_MEMSX = 0x80;
export const MODE_ATOMIC = 0xc0;
export const ATOMIC_FETCH = 0x01;
export const ATOMIC_XCHG = 0xe1;
export const ATOMIC_CMPXCHG = 0xf1;

const bit = (r: number): number => 1 << r;
const ARGS = [1, 2, 3, 4, 5].map(bit).reduce((a, b) => a | b);
const SCRATCH = ARGS | bit(0);

export interface Cfg {
  /** 1 where the slot is an lddw's second half. */
  readonly secondSlot: Uint8Array;
  readonly prunePoint: Uint8Array;
  /** Registers live at the start of each instruction (bit r). */
  readonly liveIn: Int32Array;
  /**
   * Registers whose value at the start of each instruction may still decide
   * something (a branch, a memory offset, a helper argument, a stored value,
   * a subprogram's return): the static stand-in for the kernel's precision
   * tracking. A scalar that is not relevant may differ between two states
   * without changing any verdict, so pruning ignores its value.
   */
  readonly relevant: Int32Array<ArrayBufferLike>;
  /**
   * The same for the running frame's stack, per 4-byte unit (128 bits per pc,
   * 4 words, unit 0 = fp-512): a unit is relevant if a later load may bring
   * it into a relevant register. Loads through other pointers that may point
   * to the stack, subprogram calls and callbacks make every unit relevant.
   */
  readonly stackRelevant: Uint32Array<ArrayBufferLike>;
  /** Pcs of subprogram and callback entries, with 0. */
  readonly entries: ReadonlySet<number>;
}

export function buildCfg(insns: readonly Insn[], helpers: ReadonlyMap<number, HelperSignature>): Cfg {
  const n = insns.length;
  const secondSlot = new Uint8Array(n);
  const prunePoint = new Uint8Array(n);
  const entries = new Set<number>([0]);
  const mark = (pc: number): void => {
    if (pc >= 0 && pc < n) prunePoint[pc] = 1;
  };
  mark(0);
  const succ: number[][] = Array.from({ length: n }, () => []);
  const use = new Int32Array(n);
  const def = new Int32Array(n);
  // Relevance: sink = registers whose value decides something here; flow =
  // registers the written register's value is computed from.
  const sink = new Int32Array(n);
  const flow = new Int32Array(n);
  const exits: number[] = [];
  for (let pc = 0; pc < n; pc++) {
    const i = insns[pc]!;
    const cls = i.opcode & 7;
    const x = (i.opcode & 0x08) !== 0;
    succ[pc] = [pc + 1];
    if (secondSlot[pc]) {
      succ[pc] = [pc + 1];
      continue;
    }
    switch (cls) {
      case CLS_LD:
        if (i.opcode === OP_LDDW) {
          secondSlot[pc + 1] = 1;
          def[pc] = bit(i.dst);
          succ[pc] = [pc + 2];
          if (i.src === 4) {
            entries.add(pc + i.imm + 1);
            mark(pc + i.imm + 1);
          }
        }
        break;
      case CLS_LDX:
        use[pc] = bit(i.src);
        def[pc] = bit(i.dst);
        sink[pc] = bit(i.src);
        break;
      case CLS_ST:
        use[pc] = bit(i.dst);
        sink[pc] = use[pc]!;
        break;
      case CLS_STX:
        use[pc] = bit(i.dst) | bit(i.src);
        sink[pc] = use[pc]!;
        if ((i.opcode & 0xe0) === MODE_ATOMIC) {
          if (i.imm === ATOMIC_CMPXCHG) {
            use[pc] |= bit(0);
            def[pc] = bit(0);
          } else if (i.imm & ATOMIC_FETCH) def[pc] = bit(i.src);
        }
        break;
      case CLS_ALU:
      case CLS_ALU64: {
        const op = i.opcode & 0xf0;
        if (op === 0xb0) use[pc] = x ? bit(i.src) : 0;
        else if (op === 0x80 || op === 0xd0) use[pc] = bit(i.dst);
        else use[pc] = bit(i.dst) | (x ? bit(i.src) : 0);
        def[pc] = bit(i.dst);
        // Pointer arithmetic needs no sink of its own: a pointer is relevant
        // wherever it is used (memory base, helper argument, store), and its
        // offset operand flows into it.
        flow[pc] = use[pc]!;
        break;
      }
      case CLS_JMP:
      case CLS_JMP32: {
        const op = i.opcode & 0xf0;
        if (i.opcode === OP_EXIT) {
          use[pc] = bit(0);
          succ[pc] = [];
          exits.push(pc);
        } else if (i.opcode === OP_CALL) {
          if (i.src === 1) {
            use[pc] = ARGS;
            entries.add(pc + i.imm + 1);
            mark(pc + i.imm + 1);
          } else {
            const sig = helpers.get(i.imm);
            const nargs = sig === undefined ? 5 : sig.args.length;
            for (let a = 1; a <= nargs; a++) use[pc] |= bit(a);
            if (sig?.callback !== undefined) mark(pc);
          }
          def[pc] = SCRATCH;
          sink[pc] = use[pc]!;
          mark(pc + 1);
        } else if (op === 0x00) {
          const t = pc + 1 + (cls === CLS_JMP32 ? i.imm : i.off);
          succ[pc] = [t];
          mark(t);
        } else {
          use[pc] = bit(i.dst) | (x ? bit(i.src) : 0);
          sink[pc] = use[pc]!;
          const t = pc + 1 + i.off;
          succ[pc] = [pc + 1, t];
          mark(t);
          mark(pc + 1);
        }
        break;
      }
    }
  }
  // Backward liveness to a fixed point.
  const liveIn = new Int32Array(n);
  let changed = true;
  while (changed) {
    changed = false;
    for (let pc = n - 1; pc >= 0; pc--) {
      let out = 0;
      for (const s of succ[pc]!) if (s >= 0 && s < n) out |= liveIn[s]!;
      const v = use[pc]! | (out & ~def[pc]!);
      if (v !== liveIn[pc]) {
        liveIn[pc] = v;
        changed = true;
      }
    }
  }
  // A store's value is kept only on the stack (map values, records and the
  // context read back as unknown numbers): it decides something only when
  // the base may point to the stack.
  const mayStack = stackPointers(insns, succ, secondSlot, entries);
  // A subprogram's or callback's r0 decides its caller's state; the program's own r0 only needs to be a number.
  const firstOther = Math.min(n, ...[...entries].filter((e) => e > 0));
  for (const pc of exits) if (pc >= firstOther) sink[pc] = bit(0);
  const baseSink = sink.slice();
  // Stores: the base always matters; the value per the loop below.
  for (let pc = 0; pc < n; pc++) if (!secondSlot[pc] && (insns[pc]!.opcode & 7) === CLS_STX) baseSink[pc] = 0;
  // Registers and stack units depend on each other (a stored value matters if
  // its unit is loaded into a register that matters): iterate both to their
  // least fixed point, which is exactly "may reach a decision".
  let relevant: Int32Array<ArrayBufferLike> = new Int32Array(n);
  let stackRelevant: Uint32Array<ArrayBufferLike> = new Uint32Array(n * WORDS);
  for (;;) {
    for (let pc = 0; pc < n; pc++) {
      const i = insns[pc]!;
      if (secondSlot[pc] || (i.opcode & 7) !== CLS_STX) continue;
      sink[pc] = baseSink[pc]! | bit(i.dst) | (storeMatters(insns, pc, succ, mayStack, stackRelevant) ? bit(i.src) : 0);
      if ((i.opcode & 0xe0) === MODE_ATOMIC && i.imm === ATOMIC_CMPXCHG) sink[pc] |= bit(0);
    }
    relevant = regRelevance(n, succ, sink, def, flow);
    const next = stackRelevance(insns, succ, secondSlot, relevant, mayStack, helpers);
    const same = next.every((v, k) => v === stackRelevant[k]);
    stackRelevant = next;
    if (same) break;
  }
  return { secondSlot, prunePoint, liveIn, relevant, stackRelevant, entries };
}

/**
 * Registers that may hold a pointer to the stack at the start of each
 * instruction (forward, may): r10 and what is computed from it by mov / add /
 * sub, subprogram arguments and results, and loads when any stack pointer is
 * ever stored to memory.
 */
function stackPointers(insns: readonly Insn[], succ: number[][], secondSlot: Uint8Array, entries: ReadonlySet<number>): Int32Array {
  const n = insns.length;
  let spilled = false;
  for (;;) {
    const at = new Int32Array(n);
    const seen = new Uint8Array(n);
    const work: number[] = [];
    const join = (pc: number, m: number): void => {
      if (pc < 0 || pc >= n) return;
      if (seen[pc] && (at[pc]! | m) === at[pc]) return;
      at[pc] = at[pc]! | m;
      seen[pc] = 1;
      work.push(pc);
    };
    for (const e of entries) join(e, bit(10) | (e === 0 ? 0 : ARGS));
    let storesStack = false;
    while (work.length > 0) {
      const pc = work.pop()!;
      if (secondSlot[pc]) continue;
      const i = insns[pc]!;
      let m = at[pc]!;
      const cls = i.opcode & 7;
      const has = (r: number): boolean => (m & bit(r)) !== 0;
      const put = (r: number, v: boolean): void => {
        m = v ? m | bit(r) : m & ~bit(r);
      };
      switch (cls) {
        case CLS_LD:
          put(i.dst, false);
          break;
        case CLS_LDX:
          put(i.dst, spilled);
          break;
        case CLS_STX:
          if (has(i.src)) storesStack = true;
          if ((i.opcode & 0xe0) === MODE_ATOMIC) {
            if (i.imm === ATOMIC_CMPXCHG) put(0, spilled);
            else if (i.imm & ATOMIC_FETCH) put(i.src, spilled);
          }
          break;
        case CLS_ALU64: {
          const op = i.opcode & 0xf0;
          const x = (i.opcode & 0x08) !== 0;
          if (op === 0xb0) put(i.dst, x && i.off === 0 && has(i.src));
          else if (op === 0x00 || op === 0x10) put(i.dst, has(i.dst) || (x && has(i.src)));
          else put(i.dst, false);
          break;
        }
        case CLS_ALU:
          put(i.dst, false);
          break;
        case CLS_JMP:
          if (i.opcode === OP_CALL) {
            m &= ~ARGS;
            put(0, i.src === 1);
          }
          break;
      }
      for (const s of succ[pc]!) join(s, m);
    }
    if (!storesStack || spilled) return at;
    spilled = true;
  }
}

const UNITS = 128;
const WORDS = UNITS / 32;

function stackRelevance(
  insns: readonly Insn[],
  succ: number[][],
  secondSlot: Uint8Array,
  relevant: Int32Array,
  mayStack: Int32Array,
  helpers: ReadonlyMap<number, HelperSignature>,
): Uint32Array {
  const n = insns.length;
  const sets = new Uint32Array(n * WORDS);
  const out = new Uint32Array(WORDS);
  const setUnits = (a: number, z: number, on: boolean): void => {
    for (let u = Math.max(0, a); u <= Math.min(UNITS - 1, z); u++) {
      if (on) out[u >> 5]! |= 1 << (u & 31);
      else out[u >> 5]! &= ~(1 << (u & 31));
    }
  };
  let changed = true;
  while (changed) {
    changed = false;
    for (let pc = n - 1; pc >= 0; pc--) {
      out.fill(0);
      let regsAfter = 0;
      for (const s of succ[pc]!) {
        if (s < 0 || s >= n) continue;
        regsAfter |= relevant[s]!;
        for (let w = 0; w < WORDS; w++) out[w]! |= sets[s * WORDS + w]!;
      }
      const i = insns[pc]!;
      if (!secondSlot[pc]) {
        const cls = i.opcode & 7;
        const size = [4, 2, 1, 8][(i.opcode >> 3) & 3]!;
        if (cls === CLS_LDX && (regsAfter & bit(i.dst)) !== 0) {
          if (i.src === 10) setUnits((STACK + i.off) >> 2, (STACK + i.off + size - 1) >> 2, true);
          else if ((mayStack[pc]! & bit(i.src)) !== 0) out.fill(0xffffffff);
        } else if ((cls === CLS_STX || cls === CLS_ST) && (i.opcode & 0xe0) === MODE_MEM && i.dst === 10) {
          setUnits(Math.ceil((STACK + i.off) / 4), Math.floor((STACK + i.off + size) / 4) - 1, false);
        } else if (cls === CLS_STX && (i.opcode & 0xe0) === MODE_ATOMIC && (mayStack[pc]! & bit(i.dst)) !== 0) {
          if (i.dst === 10) setUnits((STACK + i.off) >> 2, (STACK + i.off + size - 1) >> 2, true);
          else out.fill(0xffffffff);
        } else if (i.opcode === OP_CALL && (i.src === 1 || helpers.get(i.imm)?.callback !== undefined)) {
          out.fill(0xffffffff);
        }
      }
      for (let w = 0; w < WORDS; w++) {
        if (sets[pc * WORDS + w] !== out[w]) {
          sets[pc * WORDS + w] = out[w]!;
          changed = true;
        }
      }
    }
  }
  return sets;
}

const STACK = 512;

function regRelevance(n: number, succ: number[][], sink: Int32Array, def: Int32Array, flow: Int32Array): Int32Array {
  const relevant = new Int32Array(n);
  let changed = true;
  while (changed) {
    changed = false;
    for (let pc = n - 1; pc >= 0; pc--) {
      let out = 0;
      for (const s of succ[pc]!) if (s >= 0 && s < n) out |= relevant[s]!;
      const d = def[pc]!;
      const v = sink[pc]! | (out & ~d) | ((out & d) !== 0 ? flow[pc]! : 0);
      if (v !== relevant[pc]) {
        relevant[pc] = v;
        changed = true;
      }
    }
  }
  return relevant;
}

/** Whether the value a store (stx) writes may matter: its stack units are relevant after it, or it may go to the stack through another pointer. */
function storeMatters(insns: readonly Insn[], pc: number, succ: number[][], mayStack: Int32Array, stackRel: Uint32Array): boolean {
  const i = insns[pc]!;
  if ((mayStack[pc]! & bit(i.dst)) === 0) return false;
  if (i.dst !== 10 || (i.opcode & 0xe0) !== MODE_MEM) return true;
  const size = [4, 2, 1, 8][(i.opcode >> 3) & 3]!;
  const a = (STACK + i.off) >> 2;
  const z = (STACK + i.off + size - 1) >> 2;
  for (const s of succ[pc]!) {
    if (s < 0 || s * WORDS >= stackRel.length) continue;
    for (let u = Math.max(0, a); u <= Math.min(UNITS - 1, z); u++) if ((stackRel[s * WORDS + (u >> 5)]! & (1 << (u & 31))) !== 0) return true;
  }
  return false;
}
