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

/**
 * strict: refuse what cannot be proven safe; the program then runs with no
 * run-time checks (the JIT's fast mode). checked: accept, and run with the
 * VM's checked mode. off: trusted input, no verification.
 */
export type VerifierMode = "strict" | "checked" | "off";

/** Kinds of helper arguments: the kernel's bpf_arg_type, as the VM's checked mode knows them (vm.h bh_arg_type). */
export type ArgKind =
  | "none"
  | "anything" // any value: numbers, flags, and unsafe pointers the helper reads with its own fault guard
  | "ptr_to_mem" // readable, initialised memory; its size is the next argument
  | "ptr_to_mem_or_null"
  | "ptr_to_uninit_mem" // writable memory (the helper fills it); its size is the next argument
  | "const_size" // size of the previous argument's memory, > 0, bounded
  | "const_size_or_zero"
  | "ptr_to_long" // 8 writable bytes
  | "const_map_ptr" // one of the program's maps, of a type in mapTypes
  | "ptr_to_map_key" // key_size readable bytes (the call's map)
  | "ptr_to_map_value" // value_size readable bytes
  | "ptr_to_uninit_map_value" // value_size writable bytes
  | "ptr_to_ctx" // the program's context pointer, unmodified
  | "ptr_to_const_str" // NUL-terminated string in readable memory (read-only map value in the kernel)
  | "ptr_to_ringbuf_mem" // a record from bpf_ringbuf_reserve, not yet submitted or discarded
  | "ptr_to_func" // a callback: lddw src 4
  | "ptr_to_stack_or_null"; // 0, or a stack pointer (callback_ctx)

/** What a helper returns into r0. */
export type RetKind =
  | "scalar" // any number (also helpers declared void)
  | "map_value_or_null" // NULL or a pointer to value_size bytes of the call's map
  | "ringbuf_mem_or_null"; // NULL or a record of `size` bytes (the constant in argument retSizeArg)

/** One helper, as the verifier checks a call to it. */
export interface HelperSignature {
  readonly id: number;
  readonly name: string;
  /** r1..r5; shorter arrays mean "none" for the rest. */
  readonly args: readonly ArgKind[];
  /** const_map_ptr: the kernel map type ids accepted. */
  readonly mapTypes?: readonly number[];
  readonly ret: RetKind;
  /** ringbuf_mem_or_null: the (0-based) argument holding the record's constant size. */
  readonly retSizeArg?: number;
  /** Releases the ptr_to_ringbuf_mem argument (submit, discard): it is unusable afterwards. */
  readonly releasesRecord?: boolean;
  /**
   * Calls back a ptr_to_func argument: bpf_loop calls it with (u64 index,
   * callback_ctx), bpf_for_each_map_elem with (map, key, value, callback_ctx).
   */
  readonly callback?: "loop" | "for_each_map_elem";
  /** Ends the program when it succeeds (bpf_tail_call): the path after it continues as if it failed. */
  readonly tailCall?: boolean;
  /**
   * The helper may write only part of its ptr_to_uninit_mem buffer (the
   * probe_read_*_str family stops after the NUL): bytes the program had not
   * initialised stay uninitialised, since what they hold after the call
   * differs between the interpreter and the JIT.
   */
  readonly partialWrite?: boolean;
}

/** A byte range of the context. */
export interface ContextRange {
  readonly offset: number;
  readonly size: number;
}

/**
 * The context (r1 at entry) of an attach type: its size and which bytes a
 * program may read and write. uprobes: struct pt_regs, 168 bytes, read-only.
 */
export interface ContextLayout {
  readonly name: string;
  readonly size: number;
  /** Readable ranges; absent: all of [0, size). */
  readonly readable?: readonly ContextRange[];
  /** Writable ranges; absent: none. */
  readonly writable?: readonly ContextRange[];
}

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
