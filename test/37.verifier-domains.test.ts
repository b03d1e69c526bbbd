/**
 * The verifier's number domains checked against the ISA on random values:
 * for every ALU operation (64 and 32-bit), every conditional jump, and the
 * truncations and sign extensions, a concrete result computed as the VM
 * computes it must lie inside the abstract result computed from abstract
 * operands that hold the concrete operands. A failure prints the operands:
 * an unsound transfer function would let the verifier accept unsafe code.
 */
import { strict as assert } from "node:assert";
import { branchScalar } from "@bpfhook/core/dist/verifier/branch.js";
import { Alu, aluScalar, sConst, sEnd, sNeg, sSext, sync, sTrunc, S_UNKNOWN, formatScalar, type Scalar } from "@bpfhook/core/dist/verifier/scalar.js";

const U64 = (1n << 64n) - 1n;
const M32 = (1n << 32n) - 1n;

/** Small deterministic PRNG (xorshift64*), so a failure reproduces. */
let seed = 0x9e3779b97f4a7c15n;
function rnd64(): bigint {
  seed ^= seed >> 12n;
  seed ^= (seed << 25n) & U64;
  seed ^= seed >> 27n;
  return (seed * 0x2545f4914f6cdd1dn) & U64;
}
/** Values that find edge cases: small, near 2^31/2^32/2^63, all ones. */
function interesting(): bigint {
  const r = Number(rnd64() % 8n);
  const small = rnd64() % 300n;
  switch (r) {
    case 0: return small;
    case 1: return (U64 - small) & U64;
    case 2: return ((1n << 31n) + small - 150n) & U64;
    case 3: return ((1n << 32n) + small - 150n) & U64;
    case 4: return ((1n << 63n) + small - 150n) & U64;
    case 5: return rnd64() & M32;
    default: return rnd64();
  }
}

const contains = (s: Scalar, x: bigint): boolean =>
  s.umin <= x &&
  x <= s.umax &&
  s.smin <= BigInt.asIntN(64, x) &&
  BigInt.asIntN(64, x) <= s.smax &&
  (x & ~s.t.m & U64) === s.t.v &&
  (s.lo === undefined || (s.lo[0] <= (x & M32) && (x & M32) <= s.lo[1]));

/** An abstract scalar holding x: a constant, a range around it, a masked form, or unknown. */
function abstractOf(x: bigint): Scalar {
  switch (Number(rnd64() % 6n)) {
    case 0: return sConst(x);
    case 1: {
      const lo = x - (rnd64() % 1000n);
      const hi = x + (rnd64() % 1000n);
      return sync({ umin: lo < 0n ? 0n : lo, umax: hi > U64 ? U64 : hi, smin: -(1n << 63n), smax: (1n << 63n) - 1n, t: { v: 0n, m: U64 } })!;
    }
    case 2: {
      const m = rnd64() & rnd64();
      return sync({ umin: 0n, umax: U64, smin: -(1n << 63n), smax: (1n << 63n) - 1n, t: { v: x & ~m & U64, m } })!;
    }
    case 3: {
      const sx = BigInt.asIntN(64, x);
      const lo = sx - (rnd64() % 500n);
      const hi = sx + (rnd64() % 500n);
      const c = (v: bigint): bigint => (v < -(1n << 63n) ? -(1n << 63n) : v > (1n << 63n) - 1n ? (1n << 63n) - 1n : v);
      return sync({ umin: 0n, umax: U64, smin: c(lo), smax: c(hi), t: { v: 0n, m: U64 } })!;
    }
    case 4: {
      // Upper half unknown, low half bounded (what a 32-bit comparison teaches).
      const l = x & M32;
      const lo = l - (rnd64() % 2n === 0n ? 0n : rnd64() % 300n);
      const hi = l + (rnd64() % 2n === 0n ? 0n : rnd64() % 300n);
      return sync({ ...S_UNKNOWN, lo: [lo < 0n ? 0n : lo, hi > M32 ? M32 : hi] })!;
    }
    default: return S_UNKNOWN;
  }
}

function concreteAlu(op: number, a: bigint, b: bigint, bits: 32 | 64, signed: boolean): bigint {
  const W = BigInt(bits);
  const mask = bits === 32 ? M32 : U64;
  const x = a & mask;
  const y = b & mask;
  const sx = BigInt.asIntN(bits, x);
  const sy = BigInt.asIntN(bits, y);
  let r: bigint;
  switch (op) {
    case Alu.ADD: r = x + y; break;
    case Alu.SUB: r = x - y; break;
    case Alu.MUL: r = x * y; break;
    case Alu.DIV: r = signed ? (sy === 0n ? 0n : sx / sy) : y === 0n ? 0n : x / y; break;
    case Alu.MOD: r = signed ? (sy === 0n ? sx : sx % sy) : y === 0n ? x : x % y; break;
    case Alu.OR: r = x | y; break;
    case Alu.AND: r = x & y; break;
    case Alu.XOR: r = x ^ y; break;
    case Alu.LSH: r = x << (y & (W - 1n)); break;
    case Alu.RSH: r = x >> (y & (W - 1n)); break;
    case Alu.ARSH: r = sx >> (y & (W - 1n)); break;
    default: throw new Error("op");
  }
  return BigInt.asUintN(bits, r);
}

const OPS = [Alu.ADD, Alu.SUB, Alu.MUL, Alu.DIV, Alu.MOD, Alu.OR, Alu.AND, Alu.XOR, Alu.LSH, Alu.RSH, Alu.ARSH];
const JMPS: [number, string, (a: bigint, b: bigint, bits: 32 | 64) => boolean][] = [
  [0x10, "jeq", (a, b) => a === b],
  [0x50, "jne", (a, b) => a !== b],
  [0x20, "jgt", (a, b) => a > b],
  [0x30, "jge", (a, b) => a >= b],
  [0xa0, "jlt", (a, b) => a < b],
  [0xb0, "jle", (a, b) => a <= b],
  [0x60, "jsgt", (a, b, w) => BigInt.asIntN(w, a) > BigInt.asIntN(w, b)],
  [0x70, "jsge", (a, b, w) => BigInt.asIntN(w, a) >= BigInt.asIntN(w, b)],
  [0xc0, "jslt", (a, b, w) => BigInt.asIntN(w, a) < BigInt.asIntN(w, b)],
  [0xd0, "jsle", (a, b, w) => BigInt.asIntN(w, a) <= BigInt.asIntN(w, b)],
  [0x40, "jset", (a, b) => (a & b) !== 0n],
];

const ROUNDS = 4000;

describe("37 verifier domains: transfer functions hold every concrete result", () => {
  it("ALU ops, 64 and 32-bit, signed div/mod, neg, byte order, sign extension", () => {
    for (let n = 0; n < ROUNDS; n++) {
      const a = interesting();
      const b = rnd64() % 4n === 0n ? rnd64() % 70n : interesting();
      const A = abstractOf(a);
      const B = abstractOf(b);
      assert.ok(contains(A, a) && contains(B, b), "generator");
      for (const bits of [64, 32] as const) {
        for (const op of OPS) {
          for (const signed of op === Alu.DIV || op === Alu.MOD ? [false, true] : [false]) {
            const r = aluScalar(op, A, B, bits, signed);
            const c = concreteAlu(op, a, b, bits, signed);
            assert.ok(contains(r, c), `op 0x${op.toString(16)}/${bits}${signed ? "s" : ""}: ${a} (${formatScalar(A)}) , ${b} (${formatScalar(B)}) = ${c} not in ${formatScalar(r)}`);
          }
        }
        const neg = BigInt.asUintN(bits, -(a & (bits === 32 ? M32 : U64)));
        assert.ok(contains(sNeg(A, bits), neg), `neg${bits} ${a}`);
      }
      for (const w of [8, 16, 32]) {
        const t = a & ((1n << BigInt(w)) - 1n);
        assert.ok(contains(sTrunc(A, w), t), `trunc${w} ${a} in ${formatScalar(A)}`);
        assert.ok(contains(sSext(A, w), BigInt.asUintN(64, BigInt.asIntN(w, t))), `sext${w} ${a} in ${formatScalar(A)}`);
      }
      for (const w of [16, 32, 64]) {
        let v = a & (w === 64 ? U64 : (1n << BigInt(w)) - 1n);
        let sw = 0n;
        for (let k = 0; k < w / 8; k++) {
          sw = (sw << 8n) | (v & 0xffn);
          v >>= 8n;
        }
        assert.ok(contains(sEnd(A, w, true), sw), `bswap${w} ${a}`);
        assert.ok(contains(sEnd(A, w, false), w === 64 ? a : a & ((1n << BigInt(w)) - 1n)), `le${w} ${a}`);
      }
    }
  });

  it("conditional jumps: each outcome lies in its side's refinement, and an impossible side never happens", () => {
    for (let n = 0; n < ROUNDS; n++) {
      const a = interesting();
      const b = rnd64() % 3n === 0n ? (a + (rnd64() % 3n) - 1n) & U64 : interesting();
      const A = abstractOf(a);
      const B = abstractOf(b);
      for (const bits of [64, 32] as const) {
        const mask = bits === 32 ? M32 : U64;
        for (const [op, name, f] of JMPS) {
          const [taken, fall] = branchScalar(op, A, B, bits);
          const outcome = f(a & mask, b & mask, bits);
          const side = outcome ? taken : fall;
          const what = `${name}${bits === 32 ? "32" : ""} ${a} (${formatScalar(A)}), ${b} (${formatScalar(B)}) is ${outcome}`;
          assert.ok(side !== undefined, `${what}, but that side was judged impossible`);
          assert.ok(contains(side[0], a), `${what}: dst refined to ${formatScalar(side[0])}`);
          assert.ok(contains(side[1], b), `${what}: src refined to ${formatScalar(side[1])}`);
        }
      }
    }
  });
});
