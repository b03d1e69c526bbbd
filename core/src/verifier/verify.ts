/**
 * PLACEHOLDER until the verifier core lands (issue 11, helper branch
 * wip-verifier replaces this file): refuses nothing. Never ships: the
 * branch that implements it deletes this comment.
 */
import type { VerifyOptions, VerifyResult } from "./types.js";

export function verifyProgram(name: string, insns: Uint8Array, opts: VerifyOptions): VerifyResult {
  void name;
  void insns;
  void opts;
  return { ok: true, stats: { insnsProcessed: 0, peakStates: 0, ms: 0 } };
}
