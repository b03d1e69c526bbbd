// The syscall dispatcher: the transformer's hooks (enter/exit) and the
// copy-on-write attachment tables they read. See dispatch.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "bpfhook/plugin.h"
#include "bpfhook/syscall_trace.h"
#include "bpfhook/text_transformer.h"

namespace sc {

struct Attachment {
  bh_prog_run_fn run;
  void *prog;
  bh_prog_jit_fn jit;  // NULL: run through `run`
  uint64_t cookie;
  int id;
  bool reads_probe;     // bracket with probe enter/leave (helpers see the attach point)
  bool allow_override;  // bpf_override_return honoured
  bool no_vector;       // JIT code calling no helper: leaves the vector state alone (vec_guard.h)
  bool general_regs;    // JIT code reaching no C: leaves xmm0-15 alone too (BH_PROG_F_GENERAL_REGS)
};

// The transformer's hooks (user pointer unused: the tables are process-wide).
// They keep every vector register (BH_TT_HOOKS_F_KEEP_VECTORS): dispatch.cpp
// is compiled without vector registers, and runs of programs that may touch
// them are guarded (XmmGuard, VecGuard).
int hook_enter(void *user, const bh_tt_call *call, int64_t *ret);
void hook_exit(void *user, const bh_tt_call *call, int64_t *ret);

// Control path (takes a mutex; never called from the hooks).
void set_probe_api(const bh_probe_api *probe);
// Adds an attachment; returns its id (>= 0) or a negative errno with *err.
int add(const Attachment &a, const bh_sc_private_data &pd, void *owner, std::string *err);
// Removes one; after it returns no thread runs it again (bounded wait, see
// grace_period). Returns 0 or -ENOENT. *now_empty: no attachment is left.
int remove(int id, void *owner, bool *now_empty);
// The numbers some program wants, for bh_tt_set_interest. *all: a raw_syscalls
// program is attached.
void interest(uint32_t *nrs, size_t *n, bool *all);
// The numbers some exit program wants, for bh_tt_set_exit_interest (calls
// wanted for enter only then skip the exit round trip).
void exit_interest(uint32_t *nrs, size_t *n, bool *all);
// Attachments of `owner` (a plugin state) still attached.
int count(void *owner);
// Detaches every attachment of `owner`; returns how many. *now_empty as remove.
int remove_all(void *owner, bool *now_empty);

struct Stats {
  uint64_t missed;          // calls not traced: no per-thread slot was free
  uint64_t grace_timeouts;  // grace periods that gave up waiting (old lists leaked)
  uint64_t threads;         // per-thread slots in use
  uint64_t guarded;         // attachments whose runs keep the vector state (vec_guard.h)
};
Stats stats();

}  // namespace sc
