/**
 * A small deterministic PRNG (sfc32) for the fuzzer: every program is a pure
 * function of (seed, index), so any program a run reports can be made again
 * from those two numbers alone, in any process, without replaying the run.
 */

/** Mixes two 32-bit words into one (murmur3's finaliser over a combination). */
export function mix32(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** The stream of (seed, index): independent of every other index's. */
  constructor(seed: number, index = 0) {
    this.#a = mix32(seed, index);
    this.#b = mix32(this.#a, 0x243f6a88);
    this.#c = mix32(this.#b, index ^ 0x13198a2e);
    this.#d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** Uniform in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** One of `entries` with probability proportional to its weight. */
  weighted<T>(entries: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, w] of entries) total += w;
    let x = (this.u32() / 0x1_0000_0000) * total;
    for (const [v, w] of entries) {
      if (x < w) return v;
      x -= w;
    }
    return entries[entries.length - 1]![0];
  }

  /** A signed 32-bit immediate, biased to the values where ALU edge cases live. */
  imm(): number {
    if (this.chance(0.6)) return this.pick(INTERESTING);
    if (this.chance(0.5)) return this.range(-300, 300);
    return this.u32() | 0;
  }
}

const INTERESTING: readonly number[] = [
  0, 1, -1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 0x7fff, 0x8000, 0xffff, 0x10000,
  0x7fffffff, -0x80000000, -2, -0x8000, 0x55555555, 0x0f0f0f0f,
];
