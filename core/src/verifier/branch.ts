/**
 * Conditional jumps on scalars: what each side of the branch teaches about
 * both operands (the kernel's reg_set_min_max), 64-bit and 32-bit. A side
 * whose refinement is empty cannot be taken, which is also how a branch
 * with a known outcome is found.
 */
import { isConst, sConst, sync, S64MAX, S64MIN, sZext32, U32, U64, type Scalar } from "./scalar.js";
import { tIntersect } from "./tnum.js";

export const Jmp = { JA: 0x00, JEQ: 0x10, JGT: 0x20, JGE: 0x30, JSET: 0x40, JNE: 0x50, JSGT: 0x60, JSGE: 0x70, CALL: 0x80, EXIT: 0x90, JLT: 0xa0, JLE: 0xb0, JSLT: 0xc0, JSLE: 0xd0 } as const;

/** Both operands after a side of the branch, or undefined when that side is impossible. */
export type Side = readonly [Scalar, Scalar] | undefined;

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

/** The opposite condition (for the fall-through side). */
function negate(op: number): number {
  switch (op) {
    case Jmp.JEQ: return Jmp.JNE;
    case Jmp.JNE: return Jmp.JEQ;
    case Jmp.JGT: return Jmp.JLE;
    case Jmp.JLE: return Jmp.JGT;
    case Jmp.JGE: return Jmp.JLT;
    case Jmp.JLT: return Jmp.JGE;
    case Jmp.JSGT: return Jmp.JSLE;
    case Jmp.JSLE: return Jmp.JSGT;
    case Jmp.JSGE: return Jmp.JSLT;
    case Jmp.JSLT: return Jmp.JSGE;
  }
  return -1; // JSET: handled apart
}

type Bounds = { umin: bigint; umax: bigint; smin: bigint; smax: bigint };

/** d op s holds: refine both (64-bit, on the scalars' own bounds). */
function refine64(op: number, d: Scalar, s: Scalar): Side {
  const D: Bounds & { t: Scalar["t"] } = { ...d };
  const S: Bounds & { t: Scalar["t"] } = { ...s };
  switch (op) {
    case Jmp.JEQ: {
      const b = { umin: max(d.umin, s.umin), umax: min(d.umax, s.umax), smin: max(d.smin, s.smin), smax: min(d.smax, s.smax) };
      if (((d.t.v ^ s.t.v) & ~d.t.m & ~s.t.m & U64) !== 0n) return undefined;
      const t = tIntersect(d.t, s.t);
      const r = sync({ ...b, t });
      return r === undefined ? undefined : [r, r];
    }
    case Jmp.JNE:
      for (const [x, y] of [[D, s], [S, d]] as const) {
        if (!isConst(y)) continue;
        const c = y.umin;
        const sc = y.smin;
        if (x.umin === c) x.umin++;
        if (x.umax === c) x.umax--;
        if (x.smin === sc) x.smin++;
        if (x.smax === sc) x.smax--;
      }
      break;
    case Jmp.JGT:
      D.umin = max(D.umin, s.umin + 1n);
      S.umax = min(S.umax, d.umax - 1n);
      break;
    case Jmp.JGE:
      D.umin = max(D.umin, s.umin);
      S.umax = min(S.umax, d.umax);
      break;
    case Jmp.JLT:
      D.umax = min(D.umax, s.umax - 1n);
      S.umin = max(S.umin, d.umin + 1n);
      break;
    case Jmp.JLE:
      D.umax = min(D.umax, s.umax);
      S.umin = max(S.umin, d.umin);
      break;
    case Jmp.JSGT:
      D.smin = max(D.smin, s.smin + 1n);
      S.smax = min(S.smax, d.smax - 1n);
      break;
    case Jmp.JSGE:
      D.smin = max(D.smin, s.smin);
      S.smax = min(S.smax, d.smax);
      break;
    case Jmp.JSLT:
      D.smax = min(D.smax, s.smax - 1n);
      S.smin = max(S.smin, d.smin + 1n);
      break;
    case Jmp.JSLE:
      D.smax = min(D.smax, s.smax);
      S.smin = max(S.smin, d.smin);
      break;
  }
  if (D.umin > D.umax || S.umin > S.umax || D.smin > D.smax || S.smin > S.smax) return undefined;
  const rd = sync(D);
  const rs = sync(S);
  return rd === undefined || rs === undefined ? undefined : [rd, rs];
}

/** JSET: taken when d & s != 0. */
function refineSet(taken: boolean, d: Scalar, s: Scalar, bits: 32 | 64): Side {
  const mask = bits === 32 ? U32 : U64;
  if (!isConst(s)) return [d, s];
  const c = s.umin & mask;
  const maybe = (d.t.v | d.t.m) & c;
  const surely = d.t.v & c;
  if (taken) {
    if (maybe === 0n) return undefined;
    if ((c & (c - 1n)) === 0n) {
      const r = sync({ ...d, t: tIntersect(d.t, { v: c, m: U64 & ~c }) });
      return r === undefined ? undefined : [r, s];
    }
    return [d, s];
  }
  if (surely !== 0n) return undefined;
  const r = sync({ ...d, t: tIntersect(d.t, { v: 0n, m: U64 & ~c }) });
  return r === undefined ? undefined : [r, s];
}

/**
 * Puts refined low-32-bit knowledge back into a 64-bit scalar: exact when
 * its upper half is one known value, else only a check that the branch is possible.
 */
function lift(orig: Scalar, low: Scalar): Scalar | undefined {
  const hiMin = orig.umin >> 32n;
  const hiMax = orig.umax >> 32n;
  if (hiMin === hiMax) {
    const base = hiMin << 32n;
    return sync({ umin: max(orig.umin, base + low.umin), umax: min(orig.umax, base + low.umax), smin: orig.smin, smax: orig.smax, t: tIntersect(orig.t, { v: base | low.t.v, m: low.t.m }) });
  }
  const lo: [bigint, bigint] = [max(low.umin, orig.lo?.[0] ?? 0n), min(low.umax, orig.lo?.[1] ?? U32)];
  return sync({ ...orig, t: tIntersect(orig.t, { v: (orig.t.v & ~U32 & U64) | low.t.v, m: (orig.t.m & ~U32 & U64) | low.t.m }), lo });
}

/** The 32-bit signed view of a 32-bit scalar, as a 64-bit scalar of the sign-extended values. */
function s32view(x: Scalar): Scalar {
  const half = 1n << 31n;
  if (x.umax < half) return x;
  if (x.umin >= half) return sync({ umin: x.umin | (U64 & ~U32), umax: x.umax | (U64 & ~U32), smin: S64MIN, smax: S64MAX, t: { v: x.t.v | (U64 & ~U32), m: x.t.m } })!;
  return sync({ umin: 0n, umax: U64, smin: -half, smax: half - 1n, t: { v: x.t.v & ~half, m: x.t.m | (U64 & ~U32) | half } })!;
}
/** Back from the signed view to 32-bit values. */
const fromS32 = (x: Scalar): Scalar => sZext32(x);

function refine32(op: number, d: Scalar, s: Scalar): Side {
  const d32 = sZext32(d);
  const s32 = sZext32(s);
  const signed = op === Jmp.JSGT || op === Jmp.JSGE || op === Jmp.JSLT || op === Jmp.JSLE;
  const r = signed ? refine64(op, s32view(d32), s32view(s32)) : refine64(op, d32, s32);
  if (r === undefined) return undefined;
  const nd = lift(d, signed ? fromS32(r[0]) : r[0]);
  const ns = lift(s, signed ? fromS32(r[1]) : r[1]);
  return nd === undefined || ns === undefined ? undefined : [nd, ns];
}

/** [taken side, fall-through side] of `if d op s goto`. */
export function branchScalar(op: number, d: Scalar, s: Scalar, bits: 32 | 64): [Side, Side] {
  if (op === Jmp.JSET) {
    const dd = bits === 32 ? sZext32(d) : d;
    const ss = bits === 32 ? sZext32(s) : s;
    const t = refineSet(true, dd, ss, bits);
    const f = refineSet(false, dd, ss, bits);
    const back = (side: Side, orig: Scalar): Side => {
      if (side === undefined) return undefined;
      if (bits === 64) return side;
      const n = lift(orig, side[0]);
      return n === undefined ? undefined : [n, s];
    };
    return [back(t, d), back(f, d)];
  }
  const refine = bits === 32 ? refine32 : refine64;
  return [refine(op, d, s), refine(negate(op), d, s)];
}

export const immScalar = (imm: number, bits: 32 | 64): Scalar => (bits === 32 ? sConst(BigInt(imm >>> 0)) : sConst(BigInt(imm)));
