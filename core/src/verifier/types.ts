/**
 * The verifier's contract (issue 11): what a caller gives it and what it
 * answers. Everything else in core/src/verifier is the implementation.
 *
 *   const r = verifyProgram("on_malloc", insns, { maps, context: PT_REGS, helpers: standardHelpers() });
 *   if (!r.ok) throw new BpfhookError("VERIFIER_REFUSED", r.error.message);
 *
 * Instructions are as the loader links them (docs: core/src/loader/README.md):
 * the program's own function first, then its subprograms; calls and
 * function references (lddw src 4) pc-relative; map references are lddw
 * src 1 or 5 (imm = index into `maps`) and src 2 or 6 (imm = map index, the
 * second slot's imm = byte offset into the map's single value: global data).
 */
import type { ContextLayout, HelperSignature } from "@bpfhook/sdk";

/**
 * strict: refuse what cannot be proven safe; the program then runs with no
 * run-time checks (the JIT's fast mode). checked: accept, and run with the
 * VM's checked mode. off: trusted input, no verification.
 */
export type VerifierMode = "strict" | "checked" | "off";

// Declared in the SDK so plugins can declare them without core; one definition.
export type { ArgKind, ContextLayout, ContextRange, HelperSignature, RetKind } from "@bpfhook/sdk";

/** One of the program's maps, by its lddw index. */
export interface VerifierMap {
  readonly name: string;
  /** Kernel map type id. */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** Frozen global data (.rodata, .kconfig): programs may not write its value. */
  readonly readOnly?: boolean;
  /**
   * readOnly maps: the value's bytes as frozen. Lets loads at constant
   * offsets read constants (`const volatile` loop bounds) and proves the NUL
   * of ptr_to_const_str arguments; without it those loads are unknown numbers
   * and such arguments are refused.
   */
  readonly initialData?: Uint8Array;
}

export interface VerifyOptions {
  /** The program's maps, indexed by the lddw imm. */
  readonly maps: readonly VerifierMap[];
  readonly context: ContextLayout;
  /** Helpers the program may call, by id. */
  readonly helpers: ReadonlyMap<number, HelperSignature>;
  /** Instructions processed over all paths before the program is refused as too complex (default 1,000,000). */
  readonly maxInsnsProcessed?: number;
}

export interface VerifyStats {
  /** Instructions processed over all explored paths. */
  readonly insnsProcessed: number;
  /** States kept for pruning at the peak. */
  readonly peakStates: number;
  readonly ms: number;
}

/** Why a program was refused, for people: where, what, and how it got there. */
export interface VerifierErrorInfo {
  readonly program: string;
  /** Instruction index of the refused instruction. */
  readonly pc: number;
  /** Its disassembly ("stxdw [r1+32767], r2"). */
  readonly insn: string;
  /** The register the reason is about ("r1"), when there is one. */
  readonly register?: string;
  /** That register's abstract state ("ctx+0", "scalar(umax=4096)", "map_value_or_null(counts)"). */
  readonly state?: string;
  readonly reason: string;
  /** Instruction indexes of the branches taken on the way there (the last few, oldest first). */
  readonly path: readonly number[];
  /**
   * All of it in one message:
   * "prog 'p': pc 4: stxdw [r1+32767], r2: r1 is ctx+0: write of 8 bytes at ctx+32767 outside the 168-byte context (pt_regs)
   *  (path: 0 -> 2 -> 4)"
   */
  readonly message: string;
}

export type VerifyResult =
  | { readonly ok: true; readonly stats: VerifyStats }
  | { readonly ok: false; readonly error: VerifierErrorInfo; readonly stats: VerifyStats };
