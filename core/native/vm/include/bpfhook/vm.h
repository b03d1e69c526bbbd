/* bpfhook's eBPF virtual machine: interpreter and x86-64 JIT.
 *
 * The shape follows ubpf's C API. A VM has a plain life, and calls must come
 * in this order:
 *
 *   bh_vm_create()
 *   bh_vm_register_helper()*      any number, before load
 *   bh_vm_set_helper_proto()*     optional, after the helper's registration
 *   bh_vm_add_map()*              optional: the program's maps, for checked mode
 *   bh_vm_set_lddw_resolver()     optional, before load
 *   bh_vm_set_checked() / bh_vm_set_budget() / bh_vm_add_region()*
 *                                 optional, before load
 *   bh_vm_load()                  once: copies, resolves lddw forms, validates
 *   bh_vm_exec()                  interpreter; any number, any thread
 *   bh_vm_compile()               once, after load; then bh_vm_exec_jit() or
 *                                 the returned function, any thread
 *   bh_vm_destroy()
 *
 * After load a VM is immutable, so exec from many threads at once is safe.
 *
 * Errors: functions that can fail return 0 on success and -1 on failure and
 * fill a caller-owned message (`char *err, size_t err_len`, may be NULL) that
 * names the instruction index ("pc 12: invalid source register 11"). Run-time
 * faults (checked mode, budget, helper exit requests) come back the same way
 * through bh_fault; nothing is printed, nothing aborts the host.
 */
#ifndef BPFHOOK_VM_H
#define BPFHOOK_VM_H

#include <stddef.h>
#include <stdint.h>

#include "bpfhook/ebpf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bh_vm bh_vm;

/* A helper receives r1..r5 and returns r0. Helpers that need the program's
 * context get it as an explicit argument (as the kernel's do) or from state
 * the attach point installs thread-locally. */
typedef uint64_t (*bh_helper_fn)(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5);

/* Helper flags. BH_HELPER_MAY_EXIT: after this helper returns, the VM checks
 * bh_vm_request_exit() and, if it was called on this thread during the helper,
 * ends the program at once with the requested r0 (how tail calls and
 * unwinding helpers end the caller). Other helpers pay nothing for this. */
#define BH_HELPER_MAY_EXIT 0x1u
/* BH_HELPER_ARGS_SCALAR: the helper dereferences none of its arguments (they
 * are plain numbers), so checked mode may call it without a prototype. */
#define BH_HELPER_ARGS_SCALAR 0x2u
/* BH_HELPER_CALLS_BACK: the helper runs callbacks of the program with
 * bh_vm_callback_invoke (bpf_loop, bpf_for_each_map_elem). Around a call to
 * it the VM publishes, thread-locally, what a nested run needs (the caller's
 * frame, the shared budget, the call depth); after it returns, a fault or an
 * exit request raised inside a callback ends the program. Other helpers pay
 * nothing for this. */
#define BH_HELPER_CALLS_BACK 0x4u

/* ---- helper argument prototypes (checked mode) ------------------------------
 * The kernel's bpf_func_proto, reduced to what can be tested at run time. In
 * checked mode the VM tests every argument of a helper call against its
 * helper's prototype before the helper runs, with the same memory rules as
 * loads and stores (current and callers' stack frames, the context, the
 * registered regions; writes need a writable region), and ends the run with
 * BH_FAULT_HELPER_ARG if one is bad. A program that calls a helper with
 * neither a prototype nor BH_HELPER_ARGS_SCALAR is refused at load in checked
 * mode (a callx to one faults with BH_FAULT_HELPER_ARG). Fast mode never
 * looks at prototypes. */
enum bh_arg_type {
  BH_ARG_NONE = 0,                     /* not used by the helper: not checked */
  BH_ARG_ANYTHING = 1,                 /* any value (numbers, flags, unsafe pointers
                                          the helper reads with a fault guard) */
  BH_ARG_PTR_TO_MEM = 2,               /* readable memory; its size is the next argument */
  BH_ARG_PTR_TO_MEM_OR_NULL = 3,       /* as PTR_TO_MEM, or 0 (the helper handles NULL) */
  BH_ARG_PTR_TO_UNINIT_MEM = 4,        /* writable memory; its size is the next argument */
  BH_ARG_CONST_SIZE = 5,               /* size of the previous argument's memory, > 0 */
  BH_ARG_CONST_SIZE_OR_ZERO = 6,       /* size of the previous argument's memory, may be 0 */
  BH_ARG_PTR_TO_LONG = 7,              /* 8 writable bytes */
  BH_ARG_CONST_MAP_PTR = 8,            /* one of the program's maps (bh_vm_add_map), of a
                                          type in the prototype's map_types */
  BH_ARG_PTR_TO_MAP_KEY = 9,           /* key_size readable bytes of the call's map */
  BH_ARG_PTR_TO_MAP_VALUE = 10,        /* value_size readable bytes of the call's map */
  BH_ARG_PTR_TO_UNINIT_MAP_VALUE = 11, /* value_size writable bytes of the call's map */
  BH_ARG_PTR_TO_CTX = 12,              /* the program's context pointer, unmodified */
  BH_ARG_PTR_TO_CONST_STR = 13,        /* NUL-terminated string in readable memory */
  BH_ARG_PTR_TO_RINGBUF_MEM = 14,      /* a record of one of the program's ring
                                          buffers: its 8-byte header lies in the ring's storage */
  BH_ARG_PTR_TO_FUNC = 15,             /* a callback reference of this program (the value
                                          of an `lddw rX, <func>`, see "Callbacks") */
  BH_ARG_PTR_TO_STACK_OR_NULL = 16,    /* 0, or an address in the current or a
                                          caller's stack frame (callback_ctx) */
};

struct bh_helper_proto {
  size_t sz;           /* sizeof(struct bh_helper_proto) */
  uint8_t arg_type[5]; /* enum bh_arg_type for r1..r5 */
  /* BH_ARG_CONST_MAP_PTR: bit t set = map type t accepted (kernel map type
   * ids; BPF_MAP_TYPE_PROG_ARRAY is 3). Key and value sizes of the
   * MAP_KEY / MAP_VALUE arguments come from the call's first map argument. */
  uint64_t map_types;
  const char *arg_name[5]; /* for fault messages ("key"); NULL: "arg" */
};

/* A map the program may pass to helpers (the value the lddw map forms put
 * into its registers), with what the argument checks need to know. */
struct bh_vm_map {
  size_t sz;          /* sizeof(struct bh_vm_map) */
  const void *handle; /* the pointer programs hold */
  uint32_t type;      /* kernel map type id */
  uint32_t key_size;
  uint32_t value_size;
  const void *storage; /* ring buffers: where records live (else NULL) */
  size_t storage_len;
  /* Arrays (type 2): value i < max_entries at value_base + i * value_stride,
   * for the JIT's inline lookup (bh_vm_set_inline_lookup); value_base 0
   * where the map has no such layout. */
  uint32_t max_entries;
  uint32_t _pad;
  uint64_t value_base;
  uint64_t value_stride;
};

/* Resolves the special lddw forms (src 1..3, 5, 6; src 4, a function, the VM
 * resolves itself) at load time: map fd -> map pointer, map value -> address of a value plus offset, ... `imm` is the
 * first slot's imm, `next_imm` the second's. Write the 64-bit value to *out and return 0, or return -1 and fill err. */
typedef int (*bh_lddw_resolver)(void *cookie, uint32_t pc, uint8_t src, int32_t imm, int32_t next_imm, uint64_t *out,
                                char *err, size_t err_len);

/* Fault codes reported by bh_vm_exec / bh_vm_exec_jit. */
enum bh_fault_code {
  BH_FAULT_NONE = 0,
  BH_FAULT_OUT_OF_BOUNDS = 1, /* checked mode: load/store outside stack, ctx, regions */
  BH_FAULT_BUDGET = 2,        /* instruction budget exhausted */
  BH_FAULT_CALL_DEPTH = 3,    /* local calls nested too deep */
  BH_FAULT_BAD_HELPER = 4,    /* callx to an unregistered helper id */
  BH_FAULT_HELPER_EXIT = 5,   /* not a fault: a helper ended the program (r0 is valid) */
  BH_FAULT_HELPER_ARG = 6,    /* checked mode: a helper argument failed its prototype
                                 (addr: the argument's value, size: its byte count) */
};

typedef struct bh_fault {
  int code;          /* enum bh_fault_code */
  uint32_t pc;       /* instruction index of the fault */
  uint64_t addr;     /* faulting address (OUT_OF_BOUNDS), helper id (BAD_HELPER) */
  uint32_t size;     /* access size (OUT_OF_BOUNDS) */
  char message[160]; /* "pc 7: store of 8 bytes to 0x10 outside stack, context and regions",
                        "pc 3: bpf_map_lookup_elem: arg 2 (key): 4 bytes at 0x10 outside ..." */
} bh_fault;

bh_vm *bh_vm_create(void);
void bh_vm_destroy(bh_vm *vm);

/* Registers `fn` for helper id `id` (kernel ids: 1 = map_lookup_elem, ...).
 * Re-registering an id replaces it (and drops its prototype). Before load only. */
int bh_vm_register_helper(bh_vm *vm, uint32_t id, const char *name, bh_helper_fn fn, uint32_t flags);
/* Gives registered helper `id` its argument prototype (copied; sz may be
 * that of an older, shorter struct). Before load only. 0 or -1. */
int bh_vm_set_helper_proto(bh_vm *vm, uint32_t id, const struct bh_helper_proto *proto);
/* Declares one of the program's maps for BH_ARG_CONST_MAP_PTR and friends
 * (copied). Before load only. 0 or -1. */
int bh_vm_add_map(bh_vm *vm, const struct bh_vm_map *map);
/* The name registered for `id`, or NULL. */
const char *bh_vm_helper_name(const bh_vm *vm, uint32_t id);

void bh_vm_set_lddw_resolver(bh_vm *vm, bh_lddw_resolver fn, void *cookie);

/* The JIT may compile a call of helper 1 (bpf_map_lookup_elem) as inline
 * code, the kernel's array lookup: when r1 holds a map pointer loaded by an
 * lddw in the same straight-line code and `fn` describes that map (fills
 * *out, returns 0) as an array (type 2, value_base != 0). Setting it promises
 * that helper 1 is the kernel's lookup over such maps. Fast mode only (not
 * checked, no budget). Before bh_vm_compile. */
typedef int (*bh_vm_map_layout_fn)(void *cookie, const void *map, struct bh_vm_map *out);
void bh_vm_set_inline_lookup(bh_vm *vm, bh_vm_map_layout_fn fn, void *cookie);

/* Checked mode: every load and store is checked against the current frame's
 * stack, the context [ctx, ctx+ctx_len) and the registered regions; a bad
 * access ends the program with BH_FAULT_OUT_OF_BOUNDS. Helper arguments are
 * checked against the helpers' prototypes (BH_FAULT_HELPER_ARG). Every stack
 * frame starts zeroed, so no host data reaches the program. Off by default. */
void bh_vm_set_checked(bh_vm *vm, int checked);
/* Adds a memory region programs may access in checked mode (map storage,
 * shared region, ...). `writable` 0 makes stores to it faults. */
int bh_vm_add_region(bh_vm *vm, const void *base, size_t len, int writable);
/* Instruction budget per run (0 = unlimited, the default). The interpreter
 * counts every instruction; the JIT charges each taken backward jump and each
 * local call with the instructions it skips back over, so any loop is bounded
 * within a constant factor of the interpreter's count. */
void bh_vm_set_budget(bh_vm *vm, uint64_t max_insts);

/* Copies and validates `n` instructions (`len` bytes, a multiple of 8).
 * Load-time checks: unknown opcodes, bad registers, writes to r10, jumps out of
 * range or into the middle of lddw, falling off the end, division by an
 * immediate zero, calls to unregistered helpers, local calls out of range,
 * call depth, unsupported lddw forms, callback references (src 4) out of
 * range, into an lddw, or to pc 0. */
int bh_vm_load(bh_vm *vm, const void *code, size_t len, char *err, size_t err_len);
/* The loaded (resolved) instructions. */
const struct bh_inst *bh_vm_insts(const bh_vm *vm, size_t *n);

/* Runs the interpreter. r1 = ctx, r2 = ctx_len at entry, r10 = top of a fresh
 * 512-byte stack. Returns 0 and sets *r0, or -1 and fills *fault (if given). */
int bh_vm_exec(const bh_vm *vm, void *ctx, size_t ctx_len, uint64_t *r0, bh_fault *fault);

/* The compiled program. In fast mode it never faults. In checked or budget
 * mode it returns 0 and records the fault in a thread-local that
 * bh_vm_exec_jit reads; callers on hot paths that need fault reports use
 * bh_vm_exec_jit instead. */
typedef uint64_t (*bh_jit_fn)(void *ctx, size_t ctx_len);

/* Compiles to x86-64 (once; later calls return the same function). The code
 * is written into fresh pages that are made executable and never writable
 * again. Returns NULL and fills err on failure. */
bh_jit_fn bh_vm_compile(bh_vm *vm, char *err, size_t err_len);
/* Size of the compiled code in bytes (0 before compile). */
size_t bh_vm_jit_size(const bh_vm *vm);
/* 0 when the compiled code calls no C at all (no helper call left after
 * inlining, and a leaf run: no fault or exit path), so a run of it touches
 * only general registers and its stack; 1 otherwise, or when not compiled. */
int bh_vm_jit_reaches_c(const bh_vm *vm);
/* Runs the compiled code with the same contract as bh_vm_exec. Compiles on
 * first use. */
int bh_vm_exec_jit(bh_vm *vm, void *ctx, size_t ctx_len, uint64_t *r0, bh_fault *fault);

/* Called by a BH_HELPER_MAY_EXIT helper to end the running program on this
 * thread with r0 = `ret` once the helper returns. */
void bh_vm_request_exit(uint64_t ret);

/* ---- callbacks ----------------------------------------------------------------
 * `lddw rX, <func>` (src 4, BH_PSEUDO_FUNC; imm = the callback's first
 * instruction relative to the next one, as libbpf links it) loads a callback
 * reference: an opaque value the VM resolves itself at load (no resolver is
 * asked). The target must be inside the program, not pc 0, and becomes a
 * function entry with a local call's rules (a fresh 512-byte frame below the
 * caller's, counted against BH_MAX_CALL_DEPTH; checked mode zeroes it and
 * lets the callback reach its callers' frames, where callback_ctx lives).
 *
 * A BH_HELPER_CALLS_BACK helper runs one with bh_vm_callback_invoke: r1..r5
 * as the kernel passes them, r10 a fresh frame below the frame of the
 * program's function that called the helper. The callback runs in the backend
 * the program runs in (the interpreter nested, or the JIT's entry point for
 * that function), in the same mode (checked mode, the budget shared with the
 * enclosing run). `window`/`window_len` (may be NULL/0) name memory the
 * callback may read in checked mode for this invocation only (an array map's
 * key, which lives in the helper's own frame).
 *
 * Returns 0 with the callback's r0 in *r0; -EINVAL if `ref` is not a callback
 * of the program whose BH_HELPER_CALLS_BACK helper is running on this thread
 * (or none is); -ECANCELED if the callback faulted or a helper inside it
 * asked to end the program: the helper must return at once (its value is
 * ignored) and the run ends with that fault or exit. */
int bh_vm_callback_invoke(uint64_t ref, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
                          const void *window, size_t window_len, uint64_t *r0);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_VM_H */
