// bpfinject: loads a shared library into a running process with ptrace
// (x86-64 Linux). The first piece of agent mode (`bpfhook attach -p PID`).
// No Node dependency; the addon binds it (core/native/addon/inject_binding.cpp).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Skip the check that `path` exists in the target's view of the file system
// (/proc/PID/root/path) and the reuse check; the target's dlopen decides
// (tests use it to see the target's dlerror text).
#define BH_INJECT_NO_PATH_CHECK 0x1u

// `sz` first (libbpf rule): set it to sizeof(bh_inject_opts); fields past a
// caller's `sz` take their defaults. NULL opts: all defaults.
struct bh_inject_opts {
  size_t sz;
  // Bound on each wait for the target (the interrupt, the dlopen call, the
  // dlerror call). 0: 5000 ms.
  uint32_t timeout_ms;
  uint32_t flags;  // BH_INJECT_*
  // After the dlopen (or when the library was already loaded): call the
  // library's exported function `call_symbol` (resolved from the file's
  // .dynsym and its load base in the target) as int fn(const char *arg) on
  // the target's main thread, with `call_arg` copied onto its stack (NULL:
  // passes NULL). NULL: no call. The function must return quickly (it runs
  // on a thread held with ptrace). Agent mode: bh_agent_attach_region.
  const char *call_symbol;
  const char *call_arg;
};

struct bh_inject_result {
  // The handle the target's dlopen returned; 0 when reused or when dlopen
  // returned NULL.
  uint64_t handle;
  // The lowest address the library is mapped at in the target (when reused).
  uint64_t base;
  // 1 when the library (same device and inode) was already mapped in the
  // target: nothing was injected.
  int reused;
  // 1 when `dlopen` came from `__libc_dlopen_mode` (glibc < 2.34).
  int used_libc_dlopen_mode;
  // The target's dlerror() text when its dlopen returned NULL.
  char dlerror[512];
  // 1 when call_symbol was called; call_ret is its int result.
  int called;
  int call_ret;
};

// Loads `path` into process `pid` with the target's own dlopen(path,
// RTLD_NOW). Returns 0 (result->handle set, or result->reused), or a negative
// errno with a message in `err` naming the pid and the reason:
//   -ESRCH   no such process, or it exited during the injection
//   -EPERM   ptrace refused: already traced (names the tracer), another
//            user's process, Yama ptrace_scope, missing CAP_SYS_PTRACE
//   -ENOENT  `path` does not exist in the target's file system view
//   -ENOEXEC the target's dlopen returned NULL (result->dlerror, and `err`)
//   -ENOSYS  no dlopen / __libc_dlopen_mode in the target's libc
//   -ETIMEDOUT a wait passed opts->timeout_ms
//   -ENOENT  (with call_symbol) the library exports no such function
// Every path restores the target's registers (and FP/vector state) and
// detaches.
int bh_inject_dlopen(int pid, const char *path, const struct bh_inject_opts *opts, struct bh_inject_result *result,
                     char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
