/**
 * The verifier's view of what plugins declare: helper signatures (argument
 * and return kinds) and context layouts. They live in the SDK so that a
 * plugin declares them (AttachTypeSpec.contextLayout, HelperDecl.signature)
 * depending on @bpfhook/sdk alone; core/src/verifier/types.ts re-exports
 * them (one definition).
 */
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
  /**
   * The context is plain memory the plugin owns (a byte buffer, like packet
   * data), so a program may index it: accesses at variable offsets are
   * allowed when every offset the pointer may have lies in the ranges above.
   * Absent or false: as the kernel does for its contexts, only constant
   * offsets (the plugin may rewrite or check each field).
   */
  readonly variableOffsets?: boolean;
}
