/**
 * The program stream of a seed: program `index` is a pure function of
 * (seed, index). Most are freshly generated; the rest are mutations of
 * another program of the same stream (the corpus is the stream itself, so a
 * mutated program needs no history to be made again) or, when the run has
 * one, of a file of the corpus directory.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { decodeInsns, encodeInsns } from "../asm/insn.js";
import { Generator, type FuzzProgram } from "./generator.js";
import { mutate } from "./mutator.js";
import { mix32, Rng } from "./rng.js";

/** Share of the stream that is mutated rather than generated. */
export const MUTATED_SHARE = 0.3;

export interface StreamProgram extends FuzzProgram {
  code: Uint8Array;
  /** "gen", "mut(3) of #812", "mut(2) of corpus[4]". */
  origin: string;
}

export function streamProgram(seed: number, index: number, corpus: readonly Uint8Array[] = []): StreamProgram {
  const r = new Rng(mix32(seed, 0x6d757461), index);
  if (!r.chance(MUTATED_SHARE)) {
    const p = new Generator(new Rng(seed, index)).generate();
    return { ...p, code: encodeInsns(p.insns), origin: "gen" };
  }
  const rounds = r.range(1, 4);
  let parent: FuzzProgram;
  let from: string;
  if (corpus.length > 0 && r.chance(0.3)) {
    const c = r.int(corpus.length);
    parent = { insns: decodeInsns(corpus[c]!), tags: [] };
    from = `corpus[${c}]`;
  } else {
    // Any other index of the stream: generated programs are pure functions of their index.
    const j = r.u32() >>> 1;
    parent = new Generator(new Rng(seed, j)).generate();
    from = `#${j}`;
  }
  const insns = mutate(parent.insns, r, rounds);
  return { insns, tags: [...parent.tags, "mutated"], code: encodeInsns(insns), origin: `mut(${rounds}) of ${from}` };
}

/** The raw programs (*.bin) of a corpus directory, sorted by name. */
export function readCorpus(dir: string | undefined): Uint8Array[] {
  if (!dir) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".bin"))
    .sort()
    .map((f) => readFileSync(path.join(dir, f)))
    .filter((b) => b.length > 0 && b.length % 8 === 0);
}
