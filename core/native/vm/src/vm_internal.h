// The VM's private state, shared by vm.cpp (lifecycle, load), validate.cpp,
// interp.cpp and the JIT (jit.cpp driver + jit_x86_64.cpp emitter).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
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
bool access_ok(const bh_vm *vm, uintptr_t addr, size_t size, bool is_store, uintptr_t stack_lo,
               uintptr_t stack_hi, uintptr_t ctx, size_t ctx_len);

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
  bool checked = false;
  uint64_t budget = 0;
  std::vector<bh::Region> regions;
  std::vector<bh::VmMap> maps;
  bool loaded = false;
  bh::Analysis analysis;

  // JIT state (owned by jit.cpp).
  std::mutex jit_mutex;
  void *jit_code = nullptr;
  size_t jit_size = 0;
  size_t jit_map_size = 0;
  bh_jit_fn jit_fn = nullptr;
};
