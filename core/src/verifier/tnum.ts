/**
 * Tristate numbers (the kernel's tnum.c): a 64-bit value whose bits are each
 * known 0, known 1 or unknown. `v` holds the known ones, `m` the unknown
 * ones (v & m == 0). BigInt because every operation must wrap at 64 bits
 * exactly as the ISA does.
 */
export interface Tnum {
  readonly v: bigint;
  readonly m: bigint;
}

export const U64 = (1n << 64n) - 1n;
export const U32 = (1n << 32n) - 1n;

export const tConst = (x: bigint): Tnum => ({ v: x & U64, m: 0n });
export const T_UNKNOWN: Tnum = { v: 0n, m: U64 };

/** Bits needed for x (fls64). */
function fls(x: bigint): number {
  return x === 0n ? 0 : x.toString(2).length;
}

/** The smallest tnum holding every value of [min, max] (unsigned). */
export function tRange(min: bigint, max: bigint): Tnum {
  const chi = min ^ max;
  const bits = fls(chi);
  if (bits > 63) return T_UNKNOWN;
  const delta = (1n << BigInt(bits)) - 1n;
  return { v: min & ~delta & U64, m: delta };
}

export function tAdd(a: Tnum, b: Tnum): Tnum {
  const sm = (a.m + b.m) & U64;
  const sv = (a.v + b.v) & U64;
  const sigma = (sm + sv) & U64;
  const chi = sigma ^ sv;
  const mu = chi | a.m | b.m;
  return { v: sv & ~mu & U64, m: mu };
}

export function tSub(a: Tnum, b: Tnum): Tnum {
  const dv = (a.v - b.v) & U64;
  const alpha = (dv + a.m) & U64;
  const beta = (dv - b.m) & U64;
  const chi = alpha ^ beta;
  const mu = chi | a.m | b.m;
  return { v: dv & ~mu & U64, m: mu };
}

export function tAnd(a: Tnum, b: Tnum): Tnum {
  const alpha = a.v | a.m;
  const beta = b.v | b.m;
  const v = a.v & b.v;
  return { v, m: alpha & beta & ~v & U64 };
}

export function tOr(a: Tnum, b: Tnum): Tnum {
  const v = a.v | b.v;
  const mu = a.m | b.m;
  return { v, m: mu & ~v & U64 };
}

export function tXor(a: Tnum, b: Tnum): Tnum {
  const v = a.v ^ b.v;
  const mu = a.m | b.m;
  return { v: v & ~mu & U64, m: mu };
}

export const tLsh = (a: Tnum, s: number): Tnum => ({ v: (a.v << BigInt(s)) & U64, m: (a.m << BigInt(s)) & U64 });
export const tRsh = (a: Tnum, s: number): Tnum => ({ v: a.v >> BigInt(s), m: a.m >> BigInt(s) });

/** Arithmetic shift right of a `bits`-wide tnum (32 or 64), result in that width. */
export function tArsh(a: Tnum, s: number, bits: 32 | 64): Tnum {
  const w = BigInt(bits);
  const sx = (x: bigint): bigint => BigInt.asIntN(bits, x) >> BigInt(s);
  return { v: BigInt.asUintN(bits, sx(a.v)) & ((1n << w) - 1n), m: BigInt.asUintN(bits, sx(a.m)) & ((1n << w) - 1n) };
}

export function tMul(a: Tnum, b: Tnum): Tnum {
  if (a.m === 0n && b.m === 0n) return tConst(a.v * b.v);
  // A fully unknown factor makes a fully unknown product (unless the other is 0): skip the 64 rounds.
  if ((a.m === U64 && (b.v | b.m) !== 0n) || (b.m === U64 && (a.v | a.m) !== 0n)) return T_UNKNOWN;
  const accV = (a.v * b.v) & U64;
  let accM: Tnum = { v: 0n, m: 0n };
  let x = a;
  let y = b;
  while (x.v !== 0n || x.m !== 0n) {
    if ((x.v & 1n) !== 0n) accM = tAdd(accM, { v: 0n, m: y.m });
    else if ((x.m & 1n) !== 0n) accM = tAdd(accM, { v: 0n, m: y.v | y.m });
    x = tRsh(x, 1);
    y = tLsh(y, 1);
  }
  return tAdd({ v: accV, m: 0n }, accM);
}

export function tIntersect(a: Tnum, b: Tnum): Tnum {
  const v = a.v | b.v;
  const mu = a.m & b.m;
  return { v: v & ~mu & U64, m: mu };
}

/** Whether every value of b is a value of a. */
export const tIn = (a: Tnum, b: Tnum): boolean => (b.m & ~a.m) === 0n && (b.v & ~a.m) === a.v;

/** The low 32 bits. */
export const tLow32 = (a: Tnum): Tnum => ({ v: a.v & U32, m: a.m & U32 });

export const tIsConst = (a: Tnum): boolean => a.m === 0n;
export const tEq = (a: Tnum, b: Tnum): boolean => a.v === b.v && a.m === b.m;
