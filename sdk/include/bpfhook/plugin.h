/* The C ABI between bpfhook's core and an attach plugin's native piece.
 *
 * A plugin's native piece is a shared library exporting one symbol,
 * `bh_plugin_entry`, that returns its operations table. The same .so serves
 * the Node addon (embedded mode) and the native agent (agent mode), so nothing
 * here mentions Node.
 *
 * Life of a plugin, as the core drives it:
 *   ops = bh_plugin_entry();            check ops->abi_version, ops->sz
 *   ops->init(&state, host)             once per runtime
 *   ops->register_helpers(state, ...)   before programs are loaded
 *   ops->attach(state, &opts, ...)      returns an attachment id >= 0
 *   ops->detach(state, id)              by id; every id is detached before fini
 *   ops->call(state, "name", data, len) attach-specific functions (optional)
 *   ops->fini(state)
 *
 * Growth: every struct begins with `size_t sz`. The core reads a field of a
 * plugin's struct only if `sz` covers it; a plugin reads a field of the core's
 * struct only if `sz` covers it. New fields go at the end; removed ones stay as
 * padding. BH_PLUGIN_ABI_VERSION changes only when that rule can't hold.
 *
 * Errors: negative errno values; functions that can fail fill a caller-owned
 * message that starts with the plugin's context ("uprobe 'malloc': ...").
 */
#ifndef BPFHOOK_PLUGIN_H
#define BPFHOOK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "bpfhook/probe.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BH_PLUGIN_ABI_VERSION 1u

/* Reads a field of a sized struct only when the caller's sz covers it. */
#define BH_SZ_HAS(ptr, type, field) ((ptr) != NULL && (ptr)->sz >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Attach type ids, compatible with bpftime's. Third parties pick ids >= 4096. */
enum bh_attach_type {
  BH_ATTACH_SYSCALL_TRACE = 2,
  BH_ATTACH_UPROBE = 6,
  BH_ATTACH_URETPROBE = 7,
  BH_ATTACH_CUDA_PROBE = 8,
  BH_ATTACH_CUDA_RETPROBE = 9,
  BH_ATTACH_UPROBE_OVERRIDE = 1008,
  BH_ATTACH_UREPLACE = 1009,
  BH_ATTACH_SIMPLE = 2001,
  BH_ATTACH_THIRD_PARTY_MIN = 4096,
};

/* Runs the attached program on `ctx`. Returns 0 and sets *ret (the program's
 * r0), or a negative errno when the program faulted (checked mode). Safe to
 * call from any thread, concurrently. Never calls into JavaScript. */
typedef int (*bh_prog_run_fn)(void *prog, void *ctx, size_t ctx_len, uint64_t *ret);

/* The compiled program itself, for hot paths that can't afford the extra
 * indirection of `run`: r0 = jit(ctx, ctx_len). NULL when the program runs in
 * the interpreter or in checked mode; then use `run`. */
typedef uint64_t (*bh_prog_jit_fn)(void *ctx, size_t ctx_len);

struct bh_attach_opts {
  size_t sz;
  uint32_t attach_type;     /* one of the plugin's declared types */
  const void *private_data; /* bytes from the plugin's encodePrivateData() */
  size_t private_data_len;
  bh_prog_run_fn run;
  void *prog;            /* first argument of run */
  bh_prog_jit_fn jit;    /* optional fast path, see above */
  uint64_t cookie;       /* bpf_get_attach_cookie() for this attachment */
  const char *prog_name; /* for messages */
  uint32_t prog_flags;   /* BH_PROG_F_* */
  /* The program's maps by the object's map index (lddw's imm), as handles for
   * bh_host.maps; NULL entries for maps it was loaded without. Plugins that
   * keep map data elsewhere (nv-cuda's GPU maps) mirror it into them. */
  void *const *maps;
  size_t nmaps;
};

/* The program calls a helper that may read the attach point (cookie,
 * function arguments, override, stack, tail call, custom helpers): bracket
 * its runs with host->probe->enter/leave. Without it a plugin may skip the
 * bracket; the helpers then see no attach point. */
#define BH_PROG_F_PROBE_CTX 0x1u

/* Run from `jit`, the program leaves the AVX and AVX-512 state alone (the
 * upper halves of ymm/zmm0-15, zmm16-31, the opmask registers): every helper
 * it calls is one of the core's that touches at most xmm0-15 (baseline
 * x86-64 code that calls no libc string function), on map types whose paths
 * are so too (bh_helper_vector_clean, core/native/helpers). A plugin whose
 * hook must preserve that state (a system call's, which the kernel
 * preserves) may skip saving it for such a program; xmm0-15 it must still
 * keep. Never set for `run`, the interpreter or checked mode. */
#define BH_PROG_F_VECTOR_CLEAN 0x2u

/* Run from `jit`, the program touches only general registers and its own
 * stack: its compiled code calls no C at all (no helper call is left once
 * the JIT has inlined what it can, such as an array map's lookup, and it has
 * no fault path). A hook may then skip saving any vector register, xmm0-15
 * included. Implies BH_PROG_F_VECTOR_CLEAN. */
#define BH_PROG_F_GENERAL_REGS 0x4u

/* Registers a custom helper with the core; the core adds it to every program
 * loaded afterwards. `flags`: BH_HELPER_MAY_EXIT, BH_HELPER_ARGS_SCALAR
 * (bpfhook/vm.h). Checked-mode programs may call a plugin helper only if it
 * has BH_HELPER_ARGS_SCALAR (it dereferences no argument); otherwise their
 * load fails, since checked mode cannot test its arguments. */
typedef int (*bh_register_helper_fn)(void *reg_ctx, uint32_t id, const char *name,
                                     uint64_t (*fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t), uint32_t flags);

enum bh_log_level { BH_LOG_DEBUG = 0, BH_LOG_INFO = 1, BH_LOG_WARN = 2, BH_LOG_ERROR = 3 };

/* A map as bh_host.maps sees it. */
struct bh_host_map_info {
  uint32_t type, key_size, value_size, max_entries;
  uint32_t value_bytes; /* what update() takes: value_size, per-CPU maps round8(value_size) x CPUs */
};

/* Map access for plugins (bh_host.maps), on the handles of
 * bh_attach_opts.maps; any thread; 0 or a negative errno. */
struct bh_host_maps {
  size_t sz;
  int (*info)(void *map, struct bh_host_map_info *out);
  /* BPF_MAP_UPDATE_ELEM from user space: `value` holds value_bytes. */
  int (*update)(void *map, const void *key, const void *value, uint64_t flags);
  /* A record into a perf event array (as bpf_perf_event_output with
   * BPF_F_CURRENT_CPU) or a ring buffer (bpf_ringbuf_output). */
  int (*output)(void *map, const void *data, size_t size);
  /* bpf_trace_printk's formatting and sink: `fmt` is fmt_size bytes. */
  void (*trace_printk)(const char *fmt, size_t fmt_size, uint64_t a1, uint64_t a2, uint64_t a3);
};

/* What the core offers a plugin. */
struct bh_host {
  size_t sz;
  uint32_t abi_version;
  void (*log)(void *host_ctx, int level, const char *msg);
  void *host_ctx;
  /* The probe context (bpfhook/probe.h): bracket each program run with
   * probe->enter / probe->leave so helpers see the attach point. */
  const struct bh_probe_api *probe;
  /* Map access (may be NULL: the embedder gives none). */
  const struct bh_host_maps *maps;
};

struct bh_plugin_ops {
  size_t sz;
  uint32_t abi_version; /* BH_PLUGIN_ABI_VERSION the plugin was built with */
  const char *name;     /* must equal the TypeScript side's name */
  int (*init)(void **state, const struct bh_host *host, char *err, size_t err_len);
  void (*fini)(void *state);
  /* Returns an attachment id >= 0, or a negative errno and a message. On
   * failure nothing stays attached. */
  int (*attach)(void *state, const struct bh_attach_opts *opts, char *err, size_t err_len);
  /* Returns 0, or -ENOENT for an unknown id. After detach returns, `run` is
   * never called again for that attachment (a call already in flight on
   * another thread may still finish). */
  int (*detach)(void *state, int id);
  /* Optional (may be NULL). */
  int (*register_helpers)(void *state, bh_register_helper_fn reg, void *reg_ctx);
  /* Optional (may be NULL): attach-specific functions by name; returns >= 0 or
   * a negative errno; -ENOSYS for an unknown name. `out` may be NULL. */
  int64_t (*call)(void *state, const char *name, const void *in, size_t in_len, void *out, size_t out_len);
};

typedef const struct bh_plugin_ops *(*bh_plugin_entry_fn)(void);
#define BH_PLUGIN_ENTRY_SYMBOL "bh_plugin_entry"

#if defined(__GNUC__)
#define BH_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define BH_PLUGIN_EXPORT
#endif

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_PLUGIN_H */
