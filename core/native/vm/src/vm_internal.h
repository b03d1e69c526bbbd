// The VM's private state, shared by vm.cpp (lifecycle, load), validate.cpp,
// interp.cpp and the JIT (jit.cpp driver + jit_x86_64.cpp emitter).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bpfhook/vm.h"

namespace bh {

constexpr uint32_t kMaxHelperId = 65535;

struct Helper {
  bh_helper_fn fn = nullptr;
  uint32_t flags = 0;
  std::string name;
  // Checked mode's argument prototype (bh_vm_set_helper_proto).
  bool has_proto = false;
  uint8_t arg_type[5] = {};
  uint64_t map_types = 0;
  uint8_t check_upto = 0;  // 1 + the last argument that needs a test (0: none)
  std::string arg_name[5];
};

// A map programs may pass to helpers (bh_vm_add_map).
struct VmMap {
  uintptr_t handle;
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uintptr_t storage;
  size_t storage_len;
};

struct Region {
  uintptr_t base;
  size_t len;
  bool writable;
};

// Facts the validator derives once and every backend reuses (the PTX backend
// of a later issue reads the same shape on the TS side).
struct Analysis {
  // Entry pc of every function: 0 first, then each local-call target, sorted.
  std::vector<uint32_t> functions;
  // Per instruction: 1 if some jump or call lands on it.
  std::vector<uint8_t> is_target;
};

// A callback target (lddw src 4). The program's register holds this
// object's address: callbacks is sized once at load, so addresses are stable.
struct Callback {
  const bh_vm *vm;
  uint32_t pc;  // the function's first instruction
  // JIT entry point (C ABI: r1..r5, then the JitLink), set by bh_vm_compile
  // before the compiled program is published.
  uint64_t (*jit_entry)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, const void *) = nullptr;
};

// What a JIT callback entry needs from the run that called the helper: its
// run state (r12) and the frame top (r10) of the calling function.
struct JitLink {
  uint64_t state;
  uint64_t frame_top;
};

// Published (thread-locally) around each call of a BH_HELPER_CALLS_BACK
// helper: how bh_vm_callback_invoke runs a callback of this run, and where it
// leaves a fault or an exit request for the run to act on after the helper.
struct CallbackLink {
  const bh_vm *vm = nullptr;
  bool jit = false;
  // Set while the helper itself runs, cleared while one of its callbacks
  // runs: only the innermost CALLS_BACK helper may invoke (a plain helper
  // inside a callback must not start a second frame over the running one).
  bool active = false;
  CallbackLink *prev = nullptr;
  // JIT runs.
  JitLink jl{};
  // Interpreter runs: the calling function's r10, the top of the stack
  // block, frames in use (0 = the entry function), instructions executed.
  uint64_t frame_top = 0;
  uint64_t stack_top = 0;
  int depth = 0;
  uint64_t executed = 0;
  void *ctx = nullptr;
  size_t ctx_len = 0;
  // Outcome: 0 none, kPendingExit (exit_value is r0), kPendingFault
  // (interpreter: in `fault`; JIT: in jit_fault()).
  int pending = 0;
  uint64_t exit_value = 0;
  bh_fault fault{};
};
constexpr int kPendingExit = 1;
constexpr int kPendingFault = 2;
CallbackLink *&callback_link();  // this thread's innermost

// Checked mode: memory a callback may read besides stack, context and
// regions (bh_vm_callback_invoke's window), this thread's, for the duration
// of the invocation. Consulted only on the access tests' slow paths.
struct CallbackWindow {
  uintptr_t base = 0;
  size_t len = 0;
};
CallbackWindow &callback_window();

// The callback `ref` of vm, or NULL if it is none.
const Callback *find_callback(const bh_vm *vm, uint64_t ref);

// Runs callback `cb` in the interpreter, nested in the run `link` describes
// (interp.cpp), and updates link->executed. Returns 0 with the callback's r0
// in *r0; 1 if a helper inside asked to end the program (*r0 = its value);
// -1 with link->fault filled if the callback faulted.
int interp_callback(CallbackLink *link, const Callback &cb, const uint64_t *args, uint64_t *r0);

// Thread-local per-run state used by helpers and by the JIT's slow paths.
struct ExitRequest {
  bool requested = false;
  uint64_t ret = 0;
};
ExitRequest &exit_request();  // this thread's
bh_fault &jit_fault();        // this thread's last JIT fault

// Formats "pc N: ..." into a caller-owned buffer (NULL-safe); returns -1,
// the VM API's failure value (bh_fail of sdk/include/bpfhook/errmsg.h with -1).
int fail(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Validation of vm->insts after lddw resolution; fills vm->analysis.
int validate(bh_vm *vm, char *err, size_t err_len);

// Checked-mode access test shared by the interpreter and the JIT's slow path:
// true if [addr, addr+size) lies in [stack_lo, stack_hi), in [ctx, ctx+len)
// or in a registered region (writable if is_store).
bool access_ok(const bh_vm *vm, uintptr_t addr, size_t size, bool is_store, uintptr_t stack_lo, uintptr_t stack_hi,
               uintptr_t ctx, size_t ctx_len);

// Checked mode's test of a helper call's arguments against the helper's
// prototype, shared by the interpreter and the JIT (same stack and context
// bounds as access_ok). `args` are r1..r5. Returns true if the helper may run;
// else fills *fault (code BH_FAULT_HELPER_ARG, "pc N: name: arg K (what): ...").
// An id without a registered helper passes: callx reports those itself.
bool check_helper_args(const bh_vm *vm, uint32_t id, const uint64_t *args, uint32_t pc, uintptr_t stack_lo,
                       uintptr_t stack_hi, uintptr_t ctx, size_t ctx_len, bh_fault *fault);

}  // namespace bh

struct bh_vm {
  std::vector<bh_inst> insts;
  // Dense by id (index = helper id) so callx and the JIT look up in O(1).
  std::vector<bh::Helper> helpers;
  bh_lddw_resolver resolver = nullptr;
  void *resolver_cookie = nullptr;
  // Which lddw loaded a map pointer (src 1 or 5 before resolution, which
  // leaves src 0): the only values the JIT's inline lookup may describe.
  std::vector<bool> map_lddw;
  bh_vm_map_layout_fn inline_lookup = nullptr;  // bh_vm_set_inline_lookup
  void *inline_lookup_cookie = nullptr;
  bool checked = false;
  uint64_t budget = 0;
  std::vector<bh::Region> regions;
  std::vector<bh::VmMap> maps;
  // Callback targets (lddw src 4), sorted by pc; sized once at load.
  std::vector<bh::Callback> callbacks;
  // (lddw pc, target pc) of every function reference, for the validator.
  std::vector<std::pair<uint32_t, uint32_t>> func_refs;
  bool loaded = false;
  bh::Analysis analysis;

  // JIT state (owned by jit.cpp).
  std::mutex jit_mutex;
  void *jit_code = nullptr;
  size_t jit_size = 0;
  bool jit_reaches_c = true;  // bh_vm_jit_reaches_c
  size_t jit_map_size = 0;
  bh_jit_fn jit_fn = nullptr;
};
