/* bpfhook's non-map eBPF helpers, with the kernel's ids and semantics.
 *
 * Every helper is a plain C function with the VM's helper signature
 * (bh_helper_fn: r1..r5 in, r0 out), so it can be registered into any bh_vm,
 * called from JIT code, or called directly by native code and tests. Errors
 * come back as negative errno values in r0, as in the kernel.
 *
 *   bh_helpers_register_all(vm, &opts)   registers them all (before bh_vm_load)
 *   bh_helpers_table(&n)                 the same set as data, for selective use
 *
 * Four pieces of process-wide or thread-local state connect the helpers to the
 * rest of the data plane:
 *
 *   1. The attach point (probe context). Helpers that act on "the function
 *      being probed" (override_return, set_retval, get_retval, get_func_ip,
 *      get_attach_cookie, get_func_arg, get_func_arg_cnt, get_func_ret,
 *      get_stack) read a thread-local pointer that the hook engine sets around
 *      each program run with bh_probe_ctx_enter / bh_probe_ctx_leave. See the
 *      section "Probe context" below.
 *   2. The trace sink: where bpf_trace_printk / bpf_trace_vprintk output goes.
 *   3. The safe-read backend used by probe_read* and by %s in printk.
 *   4. Program arrays for bpf_tail_call (bh_prog_array).
 */
#ifndef BPFHOOK_HELPERS_H
#define BPFHOOK_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "bpfhook/probe.h"
#include "bpfhook/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- helper ids (the kernel's enum bpf_func_id) ------------------------- */

#define BH_FN_PROBE_READ 4
#define BH_FN_KTIME_GET_NS 5
#define BH_FN_TRACE_PRINTK 6
#define BH_FN_GET_PRANDOM_U32 7
#define BH_FN_GET_SMP_PROCESSOR_ID 8
#define BH_FN_TAIL_CALL 12
#define BH_FN_GET_CURRENT_PID_TGID 14
#define BH_FN_GET_CURRENT_UID_GID 15
#define BH_FN_GET_CURRENT_COMM 16
#define BH_FN_GET_STACKID 27 /* needs a stack-trace map: not registered here */
#define BH_FN_PROBE_READ_STR 45
#define BH_FN_OVERRIDE_RETURN 58
#define BH_FN_GET_STACK 67
#define BH_FN_PROBE_READ_USER 112
#define BH_FN_PROBE_READ_KERNEL 113
#define BH_FN_PROBE_READ_USER_STR 114
#define BH_FN_PROBE_READ_KERNEL_STR 115
#define BH_FN_KTIME_GET_BOOT_NS 125
#define BH_FN_KTIME_GET_COARSE_NS 160
#define BH_FN_FOR_EACH_MAP_ELEM 164 /* with the maps: bh_maps_register_helpers */
#define BH_FN_SNPRINTF 165
#define BH_FN_GET_FUNC_IP 173
#define BH_FN_GET_ATTACH_COOKIE 174
#define BH_FN_TRACE_VPRINTK 177
#define BH_FN_LOOP 181
#define BH_FN_STRNCMP 182
#define BH_FN_GET_FUNC_ARG 183
#define BH_FN_GET_FUNC_RET 184
#define BH_FN_GET_FUNC_ARG_CNT 185
#define BH_FN_GET_RETVAL 186
#define BH_FN_SET_RETVAL 187

/* Non-zero when helper `id` leaves AVX and AVX-512 state alone (the upper
 * halves of ymm/zmm0-15, zmm16-31, the opmask registers): it is compiled for
 * baseline x86-64 (SSE only) and calls no libc function that may use more,
 * such as the string functions. The map helpers 1-3 (lookup, update, delete)
 * are, on the map types of bh_map_type_vector_clean; so are 131-133 (ring
 * buffer reserve, submit, discard), the probe_read family and
 * get_attach_cookie. BH_PROG_F_VECTOR_CLEAN (plugin.h) is built
 * from it; core/native/helpers/tests/vector_clean_test.cpp proves each one. */
int bh_helper_vector_clean(int32_t id);
/* The map types (kernel ids) on which helpers 1-3 are: array, per-CPU array,
 * hash, per-CPU hash (their copies and compares are core/native/maps'
 * copy_bytes / bytes_equal, not libc's), and ring buffer (lookups fail, and
 * reserve/submit/discard copy nothing). */
static inline int bh_map_type_vector_clean(uint32_t type) {
  return type == 1 || type == 2 || type == 5 || type == 6 || type == 27;
}

/* ---- the helpers ---------------------------------------------------------
 * Arguments as in the kernel's documentation (bpf-helpers(7)); pointers travel
 * as uint64_t. Unused trailing arguments are ignored. */

uint64_t bh_helper_probe_read(uint64_t dst, uint64_t size, uint64_t unsafe_ptr, uint64_t, uint64_t);
uint64_t bh_helper_probe_read_str(uint64_t dst, uint64_t size, uint64_t unsafe_ptr, uint64_t, uint64_t);
uint64_t bh_helper_ktime_get_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_ktime_get_boot_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_ktime_get_coarse_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_trace_printk(uint64_t fmt, uint64_t fmt_size, uint64_t a1, uint64_t a2, uint64_t a3);
uint64_t bh_helper_trace_vprintk(uint64_t fmt, uint64_t fmt_size, uint64_t data, uint64_t data_len, uint64_t);
uint64_t bh_helper_snprintf(uint64_t str, uint64_t str_size, uint64_t fmt, uint64_t data, uint64_t data_len);
uint64_t bh_helper_get_prandom_u32(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_smp_processor_id(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_tail_call(uint64_t ctx, uint64_t prog_array, uint64_t index, uint64_t, uint64_t);
uint64_t bh_helper_get_current_pid_tgid(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_current_uid_gid(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_current_comm(uint64_t buf, uint64_t size, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_override_return(uint64_t ctx, uint64_t rc, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_stack(uint64_t ctx, uint64_t buf, uint64_t size, uint64_t flags, uint64_t);
uint64_t bh_helper_get_func_ip(uint64_t ctx, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_attach_cookie(uint64_t ctx, uint64_t, uint64_t, uint64_t, uint64_t);
/* BH_HELPER_CALLS_BACK: runs the program's callback through
 * bh_vm_callback_invoke, so it works only when called by a program. */
uint64_t bh_helper_loop(uint64_t nr_loops, uint64_t callback_fn, uint64_t callback_ctx, uint64_t flags, uint64_t);
uint64_t bh_helper_strncmp(uint64_t s1, uint64_t s1_sz, uint64_t s2, uint64_t, uint64_t);
uint64_t bh_helper_get_func_arg(uint64_t ctx, uint64_t n, uint64_t value_ptr, uint64_t, uint64_t);
uint64_t bh_helper_get_func_ret(uint64_t ctx, uint64_t value_ptr, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_func_arg_cnt(uint64_t ctx, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_get_retval(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t bh_helper_set_retval(uint64_t retval, uint64_t, uint64_t, uint64_t, uint64_t);

/* ---- registration --------------------------------------------------------- */

struct bh_helper_desc {
  uint32_t id;
  const char *name; /* the kernel's name: "bpf_probe_read", ... */
  bh_helper_fn fn;
  uint32_t flags; /* BH_HELPER_MAY_EXIT for tail_call, BH_HELPER_CALLS_BACK for loop */
};

/* All helpers of this library, sorted by id. Static storage; never NULL. */
const struct bh_helper_desc *bh_helpers_table(size_t *count);

/* The argument prototype (checked mode, bpfhook/vm.h) of this library's
 * helper `id`, or NULL if it has none. bh_helpers_register_all sets them;
 * with bh_helpers_table, call bh_vm_set_helper_proto yourself. Static. */
const struct bh_helper_proto *bh_helpers_proto(uint32_t id);

/* Options, libbpf style: set sz = sizeof(struct bh_helpers_opts); fields this
 * library does not know must be zero (then an older library still accepts a
 * newer caller's struct). NULL opts = all defaults. */
struct bh_helpers_opts {
  size_t sz;
  /* If not 0, switches the process-wide safe-read backend (see
   * bh_helpers_set_safe_read). 0 leaves it as it is. */
  int safe_read;
  /* If not NULL, installs a process-wide trace sink (see
   * bh_helpers_set_trace_sink). NULL leaves it as it is. */
  void (*trace_sink)(void *cookie, const char *msg, size_t len);
  void *trace_sink_cookie;
  /* Helper ids not to register (a plugin brings its own), or NULL. */
  const uint32_t *skip_ids;
  size_t skip_cnt;
};

/* Registers every helper of bh_helpers_table() into `vm` (before bh_vm_load),
 * except opts->skip_ids. Returns 0, or -EINVAL (bad vm or opts, or the VM
 * refused a registration). */
int bh_helpers_register_all(bh_vm *vm, const struct bh_helpers_opts *opts);

/* ---- trace sink ------------------------------------------------------------
 * bpf_trace_printk / bpf_trace_vprintk hand each formatted message to the sink,
 * without a trailing newline (one is stripped if the format had it), at most
 * 1023 bytes. The sink may run on any thread, inside a probe, concurrently with
 * itself; it must not call back into JavaScript synchronously. The default
 * sink writes "bpf_trace_printk: <msg>\n" to stderr with one write(2), so
 * lines from several threads never interleave. fn NULL restores the default. */
typedef void (*bh_trace_sink_fn)(void *cookie, const char *msg, size_t len);
void bh_helpers_set_trace_sink(bh_trace_sink_fn fn, void *cookie);

/* ---- safe reads ------------------------------------------------------------
 * How probe_read* read memory that may be unmapped. Both backends return
 * -EFAULT for any address the process cannot read and never crash it.
 *
 * BH_SAFE_READ_FAULT_GUARD (x86-64, the default): the copy runs in a small
 *   assembly routine; a SIGSEGV/SIGBUS handler recognises a fault inside that
 *   routine by its instruction pointer and resumes at the routine's error exit
 *   (the kernel's exception-table technique). No per-call setup, no syscall.
 *   Faults elsewhere go on to the handler that was installed before ours.
 * BH_SAFE_READ_SYSCALL: process_vm_readv(2) on our own pid. No signal handler,
 *   but one syscall per read.
 * BH_SAFE_READ_AUTO: FAULT_GUARD if its handler can be installed, else
 *   SYSCALL. The choice is made on first use. */
enum bh_safe_read_mode {
  BH_SAFE_READ_AUTO = 1,
  BH_SAFE_READ_FAULT_GUARD = 2,
  BH_SAFE_READ_SYSCALL = 3,
};
/* Switches the backend; returns the mode in effect afterwards (FAULT_GUARD or
 * SYSCALL), or -EINVAL / -ENOTSUP. */
int bh_helpers_set_safe_read(int mode);
/* The backend in effect (deciding it now if nobody has yet). */
int bh_helpers_safe_read_mode(void);
/* 1 if the fault-guard handler is still the installed SIGSEGV and SIGBUS
 * handler, 0 if someone replaced it since (then faults reach us only if the
 * newcomer chains to its predecessor, as V8, Go and crash reporters do). With
 * `fallback` != 0 and the answer 0, switches to SYSCALL. For the runtime to
 * call at attach time; not for hot paths. */
int bh_helpers_safe_read_check(int fallback);

/* Copies n bytes from an untrusted address. 0, or -EFAULT with dst zeroed. */
int bh_safe_read(void *dst, const void *unsafe_src, size_t n);
/* Copies a NUL-terminated string of at most n-1 bytes plus NUL (kernel
 * strncpy_from_user_nofault semantics): returns the length including the NUL
 * (n if truncated), 0 if n == 0, or -EFAULT with dst zeroed. */
long bh_safe_read_str(char *dst, const void *unsafe_src, size_t n);

/* ---- probe context ----------------------------------------------------------
 * The hook engine describes the current attach point in a bh_probe_ctx
 * (usually on its own stack) and brackets the program run:
 *
 *     struct bh_probe_ctx pc = {0};
 *     pc.func_ip = (uint64_t)target; pc.cookie = attach_cookie;
 *     pc.regs = &regs; pc.flags = BH_PROBE_F_PT_REGS;    // regs: struct pt_regs
 *     pc.nr_args = -1; pc.ops = &my_ops; pc.opaque = &my_state;
 *     bh_probe_ctx_enter(&pc);
 *     r0 = run_program(&regs);
 *     bh_probe_ctx_leave();
 *
 * Enter/leave are a few stores to an initial-exec thread-local; they nest
 * (a probe hit inside a program's helper saves and restores the outer one) and
 * each entry starts a fresh tail-call count. The pointer must stay valid until
 * leave. There must be one copy of this library per process: a plugin's
 * shared library must receive enter/leave from the host (bh_helpers_probe_api()),
 * not link its own copy, or the helpers would read a different thread-local.
 *
 * Helper behaviour with no current context, or a context that lacks what the
 * helper needs: override_return, set_retval, get_retval, get_func_ret and
 * get_func_arg_cnt return -EOPNOTSUPP; get_func_arg returns -EINVAL;
 * get_func_ip and get_attach_cookie return 0 (as the kernel does when it has
 * no answer); get_stack walks the current thread's own stack (from the run's
 * origin, see bh_stack_walk). */

void bh_probe_ctx_enter(struct bh_probe_ctx *ctx);
void bh_probe_ctx_leave(void);
/* The current thread's attach point, or NULL. */
struct bh_probe_ctx *bh_probe_ctx_current(void);

/* The entry points above as a table (struct bh_probe_api in bpfhook/probe.h),
 * handed to plugins through bh_host.probe. */
const struct bh_probe_api *bh_helpers_probe_api(void);

/* Frame-pointer stack walk as used by get_stack (and by a stack-trace map's
 * get_stackid): fills up to `max` return addresses, innermost first, after
 * skipping `skip`; returns the count. With a current PT_REGS context it walks
 * the probed code's stack from regs (ip, then the return address at sp for an
 * entry probe, then the rbp chain); otherwise, if the run has an origin (see
 * below), the stack of the code that started the run; otherwise it starts at
 * its caller. Every stack read is a safe read; the walk stops at the first
 * implausible frame. */
uint32_t bh_stack_walk(uint64_t *ips, uint32_t max, uint32_t skip);

/* The origin of stack walks without PT_REGS. JIT code keeps no frame-pointer
 * chain (rbp holds the eBPF frame pointer), so a walk that starts inside a
 * helper ends at the program. Code that starts a run (the runtime, for
 * programs that walk stacks or tail-call) brackets it:
 *
 *     struct bh_stack_origin saved = bh_stack_origin_mark();
 *     run(...);
 *     bh_stack_origin_restore(saved);
 *
 * mark makes its caller's frame this thread's origin: walks then report the
 * return address into that caller first, then the caller's frame-pointer
 * chain (the caller should keep frame pointers). The pair nests. */
struct bh_stack_origin {
  uint64_t ip;
  uint64_t fp;
};
struct bh_stack_origin bh_stack_origin_mark(void);
void bh_stack_origin_restore(struct bh_stack_origin prev);

/* ---- program arrays (bpf_tail_call) -----------------------------------------
 * The runtime creates one per BPF_MAP_TYPE_PROG_ARRAY map and makes its lddw
 * resolver hand the bh_prog_array pointer to programs (r2 of bpf_tail_call).
 * `run(prog, ctx)` executes a program with the caller's context and returns its
 * r0 (one runner per array; the runtime's knows the caller's ctx_len from the
 * run it brackets, see bh_runtime_prog_array_create in bpfhook/runtime.h).
 * Slots are read lock-free; updates may race with tail calls (a tail call sees
 * the old or the new program). A program removed from a slot may still be
 * running on another thread: free it only when no run can be in flight. */
typedef uint64_t (*bh_prog_array_run_fn)(void *prog, void *ctx);
struct bh_prog_array;

#define BH_MAX_TAIL_CALL_CNT 33

struct bh_prog_array *bh_prog_array_create(uint32_t max_entries, bh_prog_array_run_fn run);
void bh_prog_array_destroy(struct bh_prog_array *arr);
/* 0, -E2BIG (index out of range), -EINVAL (NULL array or prog). */
int bh_prog_array_update(struct bh_prog_array *arr, uint32_t index, void *prog);
/* 0, -E2BIG, -ENOENT (slot empty). */
int bh_prog_array_delete(struct bh_prog_array *arr, uint32_t index);
/* The program in the slot, or NULL. */
void *bh_prog_array_lookup(const struct bh_prog_array *arr, uint32_t index);
uint32_t bh_prog_array_max_entries(const struct bh_prog_array *arr);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_HELPERS_H */
