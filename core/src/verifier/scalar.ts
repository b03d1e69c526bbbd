/**
 * Abstract numbers: unsigned and signed 64-bit bounds plus a tnum, kept
 * consistent with each other (the kernel's reg_bounds_sync), and the ALU
 * transfer functions over them. 32-bit operations are computed on the low
 * 32 bits (truncate, operate, truncate) and zero-extend like the ISA.
 * Everything here is sound: a result holds every value the operation can
 * produce on values its operands hold.
 */
import { tAdd, tAnd, tArsh, tConst, tIn, tIntersect, tLow32, tLsh, tMul, tOr, tRange, tRsh, tSub, tXor, T_UNKNOWN, U32, U64, type Tnum } from "./tnum.js";

export interface Scalar {
  readonly umin: bigint;
  readonly umax: bigint;
  readonly smin: bigint;
  readonly smax: bigint;
  readonly t: Tnum;
  /**
   * Bounds of the low 32 bits, when a 32-bit comparison taught more than the
   * 64-bit bounds can say (the upper half unknown): `if w1 < 100` then
   * `w1 = w1`. Dropped by any arithmetic; kept by moves and spills.
   */
  readonly lo?: readonly [bigint, bigint];
}

const S64MAX = (1n << 63n) - 1n;
const S64MIN = -(1n << 63n);
const TWO64 = 1n << 64n;
const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

export const S_UNKNOWN: Scalar = { umin: 0n, umax: U64, smin: S64MIN, smax: S64MAX, t: T_UNKNOWN };

export function sConst(x: bigint): Scalar {
  const u = BigInt.asUintN(64, x);
  const s = BigInt.asIntN(64, x);
  return { umin: u, umax: u, smin: s, smax: s, t: tConst(u) };
}

export const isConst = (s: Scalar): boolean => s.umin === s.umax;

/** The scalar of every value in [lo, hi] (unsigned). */
export const sRangeU = (lo: bigint, hi: bigint): Scalar => sync({ umin: lo, umax: hi, smin: S64MIN, smax: S64MAX, t: T_UNKNOWN })!;

/**
 * Tightens bounds and tnum against each other; undefined when no value
 * satisfies them all (an impossible branch).
 */
export function sync(s: Scalar): Scalar | undefined {
  let { umin, umax, smin, smax, t } = s;
  let lo = s.lo;
  if (lo !== undefined) {
    if (lo[0] > lo[1]) return undefined;
    if (umax <= U32) {
      umin = max(umin, lo[0]);
      umax = min(umax, lo[1]);
      lo = undefined;
    } else if (lo[0] === 0n && lo[1] === U32) {
      lo = undefined;
    }
  }
  for (let pass = 0; pass < 2; pass++) {
    umin = max(umin, t.v);
    umax = min(umax, t.v | t.m);
    const signUnknown = t.m & (1n << 63n);
    smin = max(smin, BigInt.asIntN(64, t.v | signUnknown));
    smax = min(smax, BigInt.asIntN(64, (t.v | t.m) & ~signUnknown & U64));
    if (umax <= S64MAX) {
      smin = max(smin, umin);
      smax = min(smax, umax);
    } else if (umin > S64MAX) {
      smin = max(smin, umin - TWO64);
      smax = min(smax, umax - TWO64);
    }
    if (smin >= 0n) {
      umin = max(umin, smin);
      umax = min(umax, smax);
    } else if (smax < 0n) {
      umin = max(umin, smin + TWO64);
      umax = min(umax, smax + TWO64);
    }
    if (umin > umax || smin > smax) return undefined;
    const r = tRange(umin, umax);
    if (((r.v ^ t.v) & ~r.m & ~t.m & U64) !== 0n) return undefined;
    t = tIntersect(t, r);
  }
  if (lo !== undefined) {
    const l = tLow32(t);
    lo = [max(lo[0], l.v), min(lo[1], l.v | l.m)];
    if (lo[0] > lo[1]) return undefined;
  }
  return lo === undefined ? { umin, umax, smin, smax, t } : { umin, umax, smin, smax, t, lo };
}

/** The low 32 bits' unsigned bounds. */
export function low32Bounds(s: Scalar): [bigint, bigint] {
  const z = sTrunc(s, 32);
  return [z.umin, z.umax];
}

const must = (s: Scalar): Scalar => sync(s) ?? S_UNKNOWN;

/** new holds only values old holds. */
export function sWithin(old: Scalar, n: Scalar): boolean {
  if (!(old.umin <= n.umin && n.umax <= old.umax && old.smin <= n.smin && n.smax <= old.smax && tIn(old.t, n.t))) return false;
  if (old.lo === undefined) return true;
  const [a, z] = low32Bounds(n);
  return old.lo[0] <= a && z <= old.lo[1];
}

export const sEqual = (a: Scalar, b: Scalar): boolean =>
  a.umin === b.umin &&
  a.umax === b.umax &&
  a.smin === b.smin &&
  a.smax === b.smax &&
  a.t.v === b.t.v &&
  a.t.m === b.t.m &&
  a.lo?.[0] === b.lo?.[0] &&
  a.lo?.[1] === b.lo?.[1];

/** The low `bits` bits of every value, zero-extended. */
export function sTrunc(a: Scalar, bits: number): Scalar {
  const mask = (1n << BigInt(bits)) - 1n;
  if (a.umax <= mask) return a;
  const t = { v: a.t.v & mask, m: a.t.m & mask };
  let r: Scalar =
    a.umin >> BigInt(bits) === a.umax >> BigInt(bits)
      ? { umin: a.umin & mask, umax: a.umax & mask, smin: 0n, smax: mask, t }
      : { umin: t.v, umax: t.v | t.m, smin: 0n, smax: mask, t };
  if (a.lo !== undefined) {
    // The low 32 bits' own bounds; narrower truncations keep what fits.
    const [l0, l1] = a.lo;
    if (bits === 32) r = { ...r, umin: max(r.umin, l0), umax: min(r.umax, l1) };
    else if (l1 <= mask) r = { ...r, umin: max(r.umin, l0), umax: min(r.umax, l1) };
  }
  return must(r);
}

/** The low `bits` bits of every value, sign-extended to 64. */
export function sSext(a: Scalar, bits: number): Scalar {
  const z = sTrunc(a, bits);
  const half = 1n << BigInt(bits - 1);
  if (z.umax < half) return z;
  const upper = U64 & ~((1n << BigInt(bits)) - 1n);
  if (z.umin >= half) {
    return must({ umin: z.umin | upper, umax: z.umax | upper, smin: S64MIN, smax: S64MAX, t: { v: z.t.v | upper, m: z.t.m } });
  }
  return must({ umin: 0n, umax: U64, smin: -half, smax: half - 1n, t: { v: z.t.v & ~half, m: z.t.m | upper | half } });
}

export const sZext32 = (a: Scalar): Scalar => sTrunc(a, 32);

function add(a: Scalar, b: Scalar): Scalar {
  let umin = a.umin + b.umin;
  let umax = a.umax + b.umax;
  if (umax > U64) [umin, umax] = umin > U64 ? [umin - TWO64, umax - TWO64] : [0n, U64];
  let smin = a.smin + b.smin;
  let smax = a.smax + b.smax;
  if (smin < S64MIN || smax > S64MAX) [smin, smax] = [S64MIN, S64MAX];
  return must({ umin, umax, smin, smax, t: tAdd(a.t, b.t) });
}

function sub(a: Scalar, b: Scalar): Scalar {
  let umin = a.umin - b.umax;
  let umax = a.umax - b.umin;
  if (umin < 0n) [umin, umax] = umax < 0n ? [umin + TWO64, umax + TWO64] : [0n, U64];
  let smin = a.smin - b.smax;
  let smax = a.smax - b.smin;
  if (smin < S64MIN || smax > S64MAX) [smin, smax] = [S64MIN, S64MAX];
  return must({ umin, umax, smin, smax, t: tSub(a.t, b.t) });
}

function mul(a: Scalar, b: Scalar): Scalar {
  let [umin, umax] = a.umax * b.umax <= U64 ? [a.umin * b.umin, a.umax * b.umax] : [0n, U64];
  const p = [a.smin * b.smin, a.smin * b.smax, a.smax * b.smin, a.smax * b.smax];
  let smin = p.reduce(min);
  let smax = p.reduce(max);
  if (smin < S64MIN || smax > S64MAX) [smin, smax] = [S64MIN, S64MAX];
  if (umin > umax) [umin, umax] = [0n, U64];
  return must({ umin, umax, smin, smax, t: tMul(a.t, b.t) });
}

function fromTnum(t: Tnum, umin = t.v, umax = t.v | t.m): Scalar {
  return must({ umin, umax, smin: S64MIN, smax: S64MAX, t });
}

const bitAnd = (a: Scalar, b: Scalar): Scalar => {
  const t = tAnd(a.t, b.t);
  return fromTnum(t, t.v, min(min(a.umax, b.umax), t.v | t.m));
};
const bitOr = (a: Scalar, b: Scalar): Scalar => {
  const t = tOr(a.t, b.t);
  return fromTnum(t, max(max(a.umin, b.umin), t.v));
};
const bitXor = (a: Scalar, b: Scalar): Scalar => fromTnum(tXor(a.t, b.t));

function lsh(a: Scalar, k: number): Scalar {
  const K = BigInt(k);
  const t = tLsh(a.t, k);
  if (a.umax << K <= U64) return must({ umin: a.umin << K, umax: a.umax << K, smin: S64MIN, smax: S64MAX, t });
  return fromTnum(t);
}

function rsh(a: Scalar, k: number): Scalar {
  const K = BigInt(k);
  return must({ umin: a.umin >> K, umax: a.umax >> K, smin: S64MIN, smax: S64MAX, t: tRsh(a.t, k) });
}

function arsh(a: Scalar, k: number): Scalar {
  const K = BigInt(k);
  return must({ umin: 0n, umax: U64, smin: a.smin >> K, smax: a.smax >> K, t: tArsh(a.t, k, 64) });
}

function udiv(a: Scalar, b: Scalar): Scalar {
  if (isConst(b) && b.umin === 0n) return sConst(0n); // the ISA defines x / 0 == 0
  if (b.umin === 0n) return sRangeU(0n, a.umax);
  return sRangeU(a.umin / b.umax, a.umax / b.umin);
}

function umod(a: Scalar, b: Scalar): Scalar {
  if (isConst(b) && b.umin === 0n) return a; // the ISA defines x % 0 == x
  if (b.umin > 0n && a.umax < b.umin) return a;
  if (b.umin === 0n) return sRangeU(0n, a.umax);
  return sRangeU(0n, min(a.umax, b.umax - 1n));
}

/** Signed division and modulo (off 1): exact on constants, unknown otherwise. */
function sdivmod(a: Scalar, b: Scalar, isMod: boolean, bits: 32 | 64): Scalar {
  if (!isConst(a) || !isConst(b)) return S_UNKNOWN;
  const x = BigInt.asIntN(bits, a.umin);
  const y = BigInt.asIntN(bits, b.umin);
  if (y === 0n) return isMod ? sConst(x) : sConst(0n);
  return sConst(BigInt.asUintN(bits, isMod ? x % y : x / y));
}

function bswap(a: Scalar, bits: number): Scalar {
  if (!isConst(a)) return sTrunc(S_UNKNOWN, bits);
  let x = a.umin;
  let r = 0n;
  for (let i = 0; i < bits / 8; i++) {
    r = (r << 8n) | (x & 0xffn);
    x >>= 8n;
  }
  return sConst(r);
}

/** ALU op codes (the high nibble of the opcode). */
export const Alu = { ADD: 0x00, SUB: 0x10, MUL: 0x20, DIV: 0x30, OR: 0x40, AND: 0x50, LSH: 0x60, RSH: 0x70, NEG: 0x80, MOD: 0x90, XOR: 0xa0, MOV: 0xb0, ARSH: 0xc0, END: 0xd0 } as const;

/**
 * dst op src on `bits` (64, or 32 with zero-extension of the result).
 * `signed` is the div/mod off 1 form. MOV, NEG and END are handled by the caller.
 */
export function aluScalar(op: number, a: Scalar, b: Scalar, bits: 32 | 64, signed: boolean): Scalar {
  if (bits === 32) {
    const x = sZext32(a);
    const y = sZext32(b);
    switch (op) {
      case Alu.ARSH: {
        if (!isConst(y)) return sTrunc(S_UNKNOWN, 32);
        const k = Number(y.umin & 31n);
        return sZext32(must({ ...arsh(sSext(x, 32), k) }));
      }
      case Alu.DIV:
      case Alu.MOD:
        if (signed) return sZext32(sdivmod(x, y, op === Alu.MOD, 32));
        break;
      case Alu.LSH:
      case Alu.RSH:
        if (!isConst(y)) return sTrunc(S_UNKNOWN, 32);
        return sZext32(op === Alu.LSH ? lsh(x, Number(y.umin & 31n)) : rsh(x, Number(y.umin & 31n)));
    }
    return sZext32(aluScalar(op, x, y, 64, signed));
  }
  switch (op) {
    case Alu.ADD:
      return add(a, b);
    case Alu.SUB:
      return sub(a, b);
    case Alu.MUL:
      return mul(a, b);
    case Alu.DIV:
      return signed ? sdivmod(a, b, false, 64) : udiv(a, b);
    case Alu.MOD:
      return signed ? sdivmod(a, b, true, 64) : umod(a, b);
    case Alu.OR:
      return bitOr(a, b);
    case Alu.AND:
      return bitAnd(a, b);
    case Alu.XOR:
      return bitXor(a, b);
    case Alu.LSH:
    case Alu.RSH:
    case Alu.ARSH: {
      if (!isConst(b)) return S_UNKNOWN;
      const k = Number(b.umin & 63n);
      return op === Alu.LSH ? lsh(a, k) : op === Alu.RSH ? rsh(a, k) : arsh(a, k);
    }
  }
  return S_UNKNOWN;
}

export const sNeg = (a: Scalar, bits: 32 | 64): Scalar => aluScalar(Alu.SUB, sConst(0n), a, bits, false);

/** END: le (truncate on a little-endian machine) or a byte swap of `width` bits. */
export function sEnd(a: Scalar, width: number, swap: boolean): Scalar {
  if (!swap) return width === 64 ? a : sTrunc(a, width);
  return bswap(sTrunc(a, width), width);
}

export { tLow32 };

const hex = (x: bigint): string => (x < 0x10000n && x > -0x10000n ? String(x) : (x < 0n ? "-0x" + (-x).toString(16) : "0x" + x.toString(16)));

/** "5", "scalar(umax=4095)", "scalar" (unknown). */
export function formatScalar(s: Scalar): string {
  if (isConst(s)) return `scalar(${hex(s.smin >= -0x10000n && s.smin < 0n ? s.smin : s.umin)})`;
  const parts: string[] = [];
  if (s.lo !== undefined) parts.push(`lo32=[${hex(s.lo[0])}, ${hex(s.lo[1])}]`);
  if (s.umin !== 0n) parts.push(`umin=${hex(s.umin)}`);
  if (s.umax !== U64) parts.push(`umax=${hex(s.umax)}`);
  if (s.smin !== S64MIN && !(s.smin === 0n && s.umax <= S64MAX)) parts.push(`smin=${hex(s.smin)}`);
  if (s.smax !== S64MAX && s.smax !== s.umax) parts.push(`smax=${hex(s.smax)}`);
  if (s.t.m !== U64 && s.t.m !== 0n && parts.length === 0) parts.push(`var_off=(${hex(s.t.v)}; ${hex(s.t.m)})`);
  return parts.length === 0 ? "scalar" : `scalar(${parts.join(",")})`;
}

export { S64MAX, S64MIN, U32, U64, tIntersect, tConst, tRange };
