/* The native runtime: programs, plugins and attachments, with no Node in
 * sight, so the Node addon (embedded mode) and the agent (agent mode) share it.
 *
 *   rt = bh_runtime_create(&opts)
 *   bh_runtime_open_plugin(rt, "/path/libplugin.so", "frida-uprobe", ...)  -> plugin index
 *   prog = bh_runtime_load_program(rt, &prog_opts, ...)  VM + helpers + JIT
 *   link = bh_runtime_attach(rt, plugin, prog, &attach, ...)
 *   bh_runtime_detach(rt, link)
 *   bh_runtime_destroy(rt)   detaches every link, finalizes every plugin
 *
 * Thread safety: control calls (everything above) are serialized by the
 * runtime's own mutex; programs run concurrently on any thread.
 * Errors: negative errno plus a message in a caller-owned buffer.
 */
#ifndef BPFHOOK_RUNTIME_H
#define BPFHOOK_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "bpfhook/plugin.h"
#include "bpfhook/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bh_runtime bh_runtime;
typedef struct bh_program bh_program;

/* Called for every program the runtime loads, before its helpers from
 * plugins: the embedder registers the standard helpers (bpfhelpers, maps). */
typedef int (*bh_register_defaults_fn)(void *cookie, bh_vm *vm);

struct bh_runtime_opts {
  size_t sz;
  bh_register_defaults_fn register_defaults;
  void *register_defaults_cookie;
  void (*log)(void *log_ctx, int level, const char *msg); /* plugins' log lines; NULL: stderr */
  void *log_ctx;
  const struct bh_probe_api *probe; /* handed to plugins in bh_host */
  /* Handed to plugins in bh_host: access to the maps programs are loaded
   * with (bh_program_opts.maps; bh_runtime_host_maps() for bh_map handles). */
  const struct bh_host_maps *maps;
};

/* bh_host_maps over the maps library's handles (bh_map *), with
 * bpf_trace_printk's sink: what the addon and the agent hand plugins. */
const struct bh_host_maps *bh_runtime_host_maps(void);

struct bh_program_opts {
  size_t sz;
  const char *name;
  const void *insns;
  size_t insns_len; /* bytes, multiple of 8 */
  int checked;      /* checked mode (both backends) */
  uint64_t budget;  /* instruction budget, 0 = none */
  int interpreter;  /* 1: run in the interpreter instead of the JIT */
  /* lddw map forms: src 1/5 (map by fd / index) -> maps[imm]; src 2/6 (value)
   * -> map_value_addr(maps[imm], next_imm). */
  void *const *maps;
  size_t nmaps;
  uint64_t (*map_value_addr)(void *map, uint32_t offset);
  /* Memory checked mode allows besides stack and context (the shared region). */
  const void *region_base;
  size_t region_len;
  /* Checked mode: describes maps[i] for the helper-argument checks (type,
   * key and value sizes, ring storage; handle and sz are set by the
   * runtime). Return 0, or -1 if it is not a map. NULL: the maps are
   * unknown to the checks, so a helper call that passes one faults (program
   * arrays of this runtime are known without it). */
  int (*map_desc)(void *map, struct bh_vm_map *out);
};

bh_runtime *bh_runtime_create(const struct bh_runtime_opts *opts);
void bh_runtime_destroy(bh_runtime *rt);

/* bh_runtime_open_plugin flags. */
#define BH_RUNTIME_PLUGIN_GLOBAL 0x1u /* dlopen with RTLD_GLOBAL (default RTLD_LOCAL) */

/* dlopens a plugin's native piece, checks its ABI and name, calls init and
 * register_helpers. Returns a plugin index >= 0. On any failure the library
 * is closed again (dlclose) and nothing of it stays registered. */
int bh_runtime_open_plugin(bh_runtime *rt, const char *path, const char *expect_name, unsigned flags, char *err,
                           size_t err_len);
/* Attach-specific functions (ops->call) by plugin index. Clears this
 * thread's bh_runtime_thread_fault first. */
int64_t bh_runtime_plugin_call(bh_runtime *rt, int plugin, const char *name, const void *in, size_t in_len, void *out,
                               size_t out_len);

bh_program *bh_runtime_load_program(bh_runtime *rt, const struct bh_program_opts *opts, char *err, size_t err_len);
/* Drops the caller's reference; the program lives on while attached (or
 * once put into a program array). */
void bh_program_release(bh_program *prog);
/* Runs a program directly (tests, simple triggers): bh_prog_run_fn shape. */
int bh_program_run(void *prog, void *ctx, size_t ctx_len, uint64_t *ret);
/* Same, with the VM's fault report. */
int bh_program_run_fault(bh_program *prog, void *ctx, size_t ctx_len, uint64_t *ret, bh_fault *fault);
const bh_vm *bh_program_vm(const bh_program *prog);
const char *bh_program_name(const bh_program *prog);
/* The message of the last fault of a program run on this thread
 * ("prog 'name': pc 3: instruction budget of 100 exhausted"), "" if none
 * since this thread's last bh_runtime_plugin_call began: how a caller of a
 * plugin function that ran programs (the simple plugin's trigger) learns why
 * it failed. Returns the message's length. */
size_t bh_runtime_thread_fault(char *buf, size_t len);
/* Runs that faulted (checked mode, budget), and the last fault's message
 * ("pc 3: load of 8 bytes at 0x0 outside stack, context and regions"). */
uint64_t bh_program_faults(bh_program *prog, char *last, size_t last_len);

/* Program arrays (BPF_MAP_TYPE_PROG_ARRAY) for bpf_tail_call.
 *
 * A slot holds a process-local bh_program pointer, so unlike other maps a
 * program array is not in the shared region: it belongs to the runtime and
 * lives until bh_runtime_destroy. (Agent mode, where another process fills
 * slots, will need slots of program ids resolved by the agent instead.)
 * Programs reach an array through the lddw map forms: pass the pointer in
 * bh_program_opts.maps; the map-value forms are refused for it.
 *
 * A tail call runs the target on the caller's context with the caller's
 * ctx_len (0 if the program passes another pointer as ctx), ends the caller
 * with the target's r0, and makes a fault of the target a fault of the whole
 * run (reported by bh_program_run_fault as "tail call to 'name': ...").
 * Semantics otherwise as bpf_tail_call (bpfhook/helpers.h): an empty slot or
 * an index out of range lets the caller go on; a chain stops after 33.
 *
 * update puts `prog` (of this runtime: else -EXDEV) into slot `index`
 * (-E2BIG past max_entries) and keeps it alive until the runtime is
 * destroyed, since a tail call may be running it whatever happens to the slot
 * later. delete empties a slot (-ENOENT if it was empty). lookup returns the
 * slot's program or NULL. An array of another runtime is -ENOENT / NULL. */
struct bh_prog_array;
struct bh_prog_array *bh_runtime_prog_array_create(bh_runtime *rt, uint32_t max_entries, char *err, size_t err_len);
int bh_runtime_prog_array_update(bh_runtime *rt, struct bh_prog_array *arr, uint32_t index, bh_program *prog);
int bh_runtime_prog_array_delete(bh_runtime *rt, struct bh_prog_array *arr, uint32_t index);
bh_program *bh_runtime_prog_array_lookup(bh_runtime *rt, struct bh_prog_array *arr, uint32_t index);

struct bh_runtime_attach_opts {
  size_t sz;
  uint32_t attach_type;
  const void *private_data;
  size_t private_data_len;
  uint64_t cookie;
};

/* Returns a link id >= 0. On failure nothing is attached. */
int bh_runtime_attach(bh_runtime *rt, int plugin, bh_program *prog, const struct bh_runtime_attach_opts *opts,
                      char *err, size_t err_len);
/* Returns 0 or -ENOENT. */
int bh_runtime_detach(bh_runtime *rt, int link);
/* Live links (for close and for tests). */
size_t bh_runtime_link_count(const bh_runtime *rt);

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_RUNTIME_H */
