/* The syscall-trace plugin's private data: what the TypeScript side
 * (src/encode.ts) encodes for the native attach (native/plugin.cpp). */
#ifndef BPFHOOK_SYSCALL_TRACE_H
#define BPFHOOK_SYSCALL_TRACE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum bh_sc_direction { BH_SC_ENTER = 0, BH_SC_EXIT = 1 };

#define BH_SC_F_ALL 0x1u            /* raw_syscalls: every system call; nr ignored */
#define BH_SC_F_ALLOW_OVERRIDE 0x2u /* bpf_override_return / bpf_set_retval honoured */
#define BH_SC_F_NO_HELPERS 0x4u     /* the program calls no helper: its JIT code leaves vector state alone */

/* Exactly 16 bytes, little-endian. */
struct bh_sc_private_data {
  uint32_t direction; /* bh_sc_direction */
  uint32_t flags;     /* BH_SC_F_* */
  uint32_t nr;        /* the syscall number (x86-64) unless BH_SC_F_ALL */
  uint32_t reserved;  /* 0 */
};

/* Syscall numbers the dispatcher has per-number lists for; every x86-64
 * number is below it. Larger numbers reach raw_syscalls programs only. */
#define BH_SC_MAX_NR 512u

/* The contexts programs get (the kernel's trace_event_raw_sys_enter / _exit).
 * The dispatcher hands every run 64 bytes (the exit context zero-padded). */
struct bh_sc_trace_entry {
  uint16_t type;
  uint8_t flags;
  uint8_t preempt_count;
  int32_t pid; /* the calling thread's id, as the kernel's common_pid */
};

struct bh_sc_sys_enter {
  struct bh_sc_trace_entry ent;
  int64_t id;
  uint64_t args[6];
};

struct bh_sc_sys_exit {
  struct bh_sc_trace_entry ent;
  int64_t id;
  int64_t ret;
};

#define BH_SC_CONTEXT_SIZE 64u

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_SYSCALL_TRACE_H */
