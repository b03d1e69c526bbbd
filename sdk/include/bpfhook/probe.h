/* The probe context: how an attach point (a uprobe, a syscall, ...) tells the
 * helpers what is being probed. Part of the plugin ABI: a plugin's native
 * piece fills a bh_probe_ctx and brackets each program run with the
 * enter/leave functions it received in bh_host.probe, so that helpers such as
 * bpf_get_func_arg, bpf_override_return and bpf_get_attach_cookie see it.
 * The core's helpers own the one thread-local behind enter/leave. */
#ifndef BPFHOOK_PROBE_H
#define BPFHOOK_PROBE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* regs points to a struct pt_regs in the kernel's x86-64 layout (the uprobe
 * program context): r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di
 * orig_ax ip cs flags sp ss, 8 bytes each. Enables the defaults below. */
#define BH_PROBE_F_PT_REGS 0x1u
/* A return probe: the function has returned (uretprobe / fexit-like); its
 * return value is regs->ax unless ops->get_ret says otherwise. */
#define BH_PROBE_F_RETURN 0x2u

struct bh_probe_ops {
  size_t sz; /* sizeof(struct bh_probe_ops) */
  /* Each may be NULL; then the default described beside it applies. All
   * return 0 or a negative errno. */
  /* get_func_arg: n-th argument (0-based). Default with PT_REGS on an entry
   * probe: rdi rsi rdx rcx r8 r9, then the stack (n < nr_args, or n < 6 when
   * nr_args is unknown). Else -EINVAL. */
  int (*get_arg)(void *opaque, uint32_t n, uint64_t *value);
  /* get_func_ret: default with PT_REGS and RETURN: regs->ax; else -EOPNOTSUPP. */
  int (*get_ret)(void *opaque, uint64_t *value);
  /* override_return / set_retval: make the probed function return `value`
   * (for an entry probe: skip the function). No default: -EOPNOTSUPP. */
  int (*set_ret)(void *opaque, uint64_t value);
  /* get_retval: the value the attach point will return now (an override if
   * one was set, else the function's). Default: as get_ret. */
  int (*get_retval)(void *opaque, uint64_t *value);
};

struct bh_probe_ctx {
  uint64_t func_ip;               /* get_func_ip: address of the probed function */
  uint64_t cookie;                /* get_attach_cookie */
  const void *regs;               /* the program's context; see BH_PROBE_F_PT_REGS */
  const struct bh_probe_ops *ops; /* may be NULL */
  void *opaque;                   /* passed to ops */
  uint32_t flags;                 /* BH_PROBE_F_* */
  int32_t nr_args;                /* argument count if known (get_func_arg_cnt), else -1 */
  /* Private to enter/leave. */
  struct bh_probe_ctx *prev_;
  uint32_t saved_tail_depth_;
  uint32_t reserved_;
};

/* The entry points above as a table, to hand to plugins through the SDK. */
struct bh_probe_api {
  size_t sz;
  void (*enter)(struct bh_probe_ctx *ctx);
  void (*leave)(void);
  struct bh_probe_ctx *(*current)(void);
};

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_PROBE_H */
