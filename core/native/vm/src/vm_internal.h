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

// Formats "pc N: ..." into a caller-owned buffer (NULL-safe); returns -1.
int fail(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Validation of vm->insts after lddw resolution; fills vm->analysis.
int validate(bh_vm *vm, char *err, size_t err_len);

// Checked-mode access test shared by the interpreter and the JIT's slow path:
// true if [addr, addr+size) lies in [stack_lo, stack_hi), in [ctx, ctx+len)
// or in a registered region (writable if is_store).
bool access_ok(const bh_vm *vm, uintptr_t addr, size_t size, bool is_store, uintptr_t stack_lo,
               uintptr_t stack_hi, uintptr_t ctx, size_t ctx_len);

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
  bool loaded = false;
  bh::Analysis analysis;

  // JIT state (owned by jit.cpp).
  std::mutex jit_mutex;
  void *jit_code = nullptr;
  size_t jit_size = 0;
  size_t jit_map_size = 0;
  bh_jit_fn jit_fn = nullptr;
};
