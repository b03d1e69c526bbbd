/* bpfhook's eBPF virtual machine: interpreter and x86-64 JIT.
 *
 * The shape follows ubpf's C API. A VM has a plain life, and calls must come
 * in this order:
 *
 *   bh_vm_create()
 *   bh_vm_register_helper()*      any number, before load
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

/* Resolves the special lddw forms (src 1..6) at load time: map fd -> map
 * pointer, map value -> address of a value plus offset, ... `imm` is the first
 * slot's imm, `next_imm` the second's. Write the 64-bit value to *out and
 * return 0, or return -1 and fill err. */
typedef int (*bh_lddw_resolver)(void *cookie, uint32_t pc, uint8_t src, int32_t imm, int32_t next_imm,
                                uint64_t *out, char *err, size_t err_len);

/* Fault codes reported by bh_vm_exec / bh_vm_exec_jit. */
enum bh_fault_code {
  BH_FAULT_NONE = 0,
  BH_FAULT_OUT_OF_BOUNDS = 1,   /* checked mode: load/store outside stack, ctx, regions */
  BH_FAULT_BUDGET = 2,          /* instruction budget exhausted */
  BH_FAULT_CALL_DEPTH = 3,      /* local calls nested too deep */
  BH_FAULT_BAD_HELPER = 4,      /* callx to an unregistered helper id */
  BH_FAULT_HELPER_EXIT = 5,     /* not a fault: a helper ended the program (r0 is valid) */
};

typedef struct bh_fault {
  int code;          /* enum bh_fault_code */
  uint32_t pc;       /* instruction index of the fault */
  uint64_t addr;     /* faulting address (OUT_OF_BOUNDS), helper id (BAD_HELPER) */
  uint32_t size;     /* access size (OUT_OF_BOUNDS) */
  char message[160]; /* "pc 7: store of 8 bytes to 0x10 outside stack, context and regions" */
} bh_fault;

bh_vm *bh_vm_create(void);
void bh_vm_destroy(bh_vm *vm);

/* Registers `fn` for helper id `id` (kernel ids: 1 = map_lookup_elem, ...).
 * Re-registering an id replaces it. Before load only. */
int bh_vm_register_helper(bh_vm *vm, uint32_t id, const char *name, bh_helper_fn fn, uint32_t flags);
/* The name registered for `id`, or NULL. */
const char *bh_vm_helper_name(const bh_vm *vm, uint32_t id);

void bh_vm_set_lddw_resolver(bh_vm *vm, bh_lddw_resolver fn, void *cookie);

/* Checked mode: every load and store is checked against the current frame's
 * stack, the context [ctx, ctx+ctx_len) and the registered regions; a bad
 * access ends the program with BH_FAULT_OUT_OF_BOUNDS. Off by default. */
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
 * call depth, unsupported lddw forms. */
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
/* Runs the compiled code with the same contract as bh_vm_exec. Compiles on
 * first use. */
int bh_vm_exec_jit(bh_vm *vm, void *ctx, size_t ctx_len, uint64_t *r0, bh_fault *fault);

/* Called by a BH_HELPER_MAY_EXIT helper to end the running program on this
 * thread with r0 = `ret` once the helper returns. */
void bh_vm_request_exit(uint64_t ret);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_VM_H */
