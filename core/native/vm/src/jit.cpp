// The arch-neutral JIT driver: asks the back end for machine code, places it
// in fresh pages that are writable only until the code is in, then seals them
// read+exec for good (W^X: no page of ours is ever writable and executable at
// once), and runs the result with the same contract as the interpreter.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <vector>

#include "vm_internal.h"

#if defined(__x86_64__)
#include "jit_x86_64.h"
#endif

namespace {

// Owns an anonymous mapping until it is sealed and handed to the VM (which
// unmaps it in bh_vm_destroy); any failure on the way unmaps it here.
class CodePages {
 public:
  CodePages() = default;
  CodePages(const CodePages &) = delete;
  CodePages &operator=(const CodePages &) = delete;
  ~CodePages() {
    if (base_ != nullptr) munmap(base_, map_size_);
  }

  bool allocate(size_t bytes) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    map_size_ = (bytes + page - 1) / page * page;
    void *p = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    base_ = p;
    return true;
  }
  void *data() const { return base_; }
  size_t map_size() const { return map_size_; }
  // From here on the pages are code: never writable again.
  bool seal() { return mprotect(base_, map_size_, PROT_READ | PROT_EXEC) == 0; }
  void *release() {
    void *p = base_;
    base_ = nullptr;
    return p;
  }

 private:
  void *base_ = nullptr;
  size_t map_size_ = 0;
};

int emit(const bh_vm *vm, std::vector<uint8_t> &out, std::vector<size_t> &entries, bool *reaches_c, char *err,
         size_t err_len) {
#if defined(__x86_64__)
  return bh::jit_emit_x86_64(vm, out, entries, reaches_c, err, err_len);
#else
  (void)vm;
  (void)out;
  (void)entries;
  (void)reaches_c;
  return bh::fail(err, err_len, "jit: no code generator for this architecture");
#endif
}

// jit_fn is written once under jit_mutex and read without it on every run.
bh_jit_fn published(const bh_vm *vm) { return __atomic_load_n(&vm->jit_fn, __ATOMIC_ACQUIRE); }

}  // namespace

extern "C" {

bh_jit_fn bh_vm_compile(bh_vm *vm, char *err, size_t err_len) {
  if (err != nullptr && err_len > 0) err[0] = '\0';
  if (vm == nullptr) {
    bh::fail(err, err_len, "no vm");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(vm->jit_mutex);
  if (vm->jit_fn != nullptr) return vm->jit_fn;
  if (!vm->loaded) {
    bh::fail(err, err_len, "no program loaded");
    return nullptr;
  }
  std::vector<uint8_t> code;
  std::vector<size_t> entries;
  bool reaches_c = true;
  if (emit(vm, code, entries, &reaches_c, err, err_len) != 0) return nullptr;
  CodePages pages;
  if (!pages.allocate(code.size())) {
    bh::fail(err, err_len, "jit: cannot map %zu bytes for code", code.size());
    return nullptr;
  }
  std::memcpy(pages.data(), code.data(), code.size());
  // A no-op on x86; other architectures must sync their caches before running.
  __builtin___clear_cache(static_cast<char *>(pages.data()), static_cast<char *>(pages.data()) + code.size());
  if (!pages.seal()) {
    bh::fail(err, err_len, "jit: cannot make the code executable");
    return nullptr;
  }
  vm->jit_size = code.size();
  vm->jit_reaches_c = reaches_c;
  vm->jit_map_size = pages.map_size();
  vm->jit_code = pages.release();
  // Callback entry points, before the program is published: a callback runs
  // only from a run of the published program.
  for (size_t i = 0; i < entries.size() && i < vm->callbacks.size(); ++i) {
    vm->callbacks[i].jit_entry =
        reinterpret_cast<decltype(bh::Callback::jit_entry)>(static_cast<uint8_t *>(vm->jit_code) + entries[i]);
  }
  const bh_jit_fn fn = reinterpret_cast<bh_jit_fn>(vm->jit_code);
  __atomic_store_n(&vm->jit_fn, fn, __ATOMIC_RELEASE);
  return fn;
}

int bh_vm_jit_reaches_c(const bh_vm *vm) {
  if (vm == nullptr || published(vm) == nullptr) return 1;
  return vm->jit_reaches_c ? 1 : 0;
}

size_t bh_vm_jit_size(const bh_vm *vm) {
  if (vm == nullptr || published(vm) == nullptr) return 0;
  return vm->jit_size;
}

int bh_vm_exec_jit(bh_vm *vm, void *ctx, size_t ctx_len, uint64_t *r0, bh_fault *fault) {
  // The generated code writes every field when it records something, so a
  // cleared code is enough to start from.
  bh_fault &f = bh::jit_fault();
  f.code = BH_FAULT_NONE;
  bh_jit_fn fn = vm != nullptr ? published(vm) : nullptr;
  if (fn == nullptr) {
    char err[sizeof f.message] = "";
    fn = bh_vm_compile(vm, err, sizeof err);
    if (fn == nullptr) {
      if (fault != nullptr) {
        *fault = bh_fault{};
        std::memcpy(fault->message, err, sizeof err);
      }
      return -1;
    }
  }
  const uint64_t ret = fn(ctx, ctx_len);
  const int code = f.code;
  // A helper may run another program on this thread; whatever it leaves in
  // the thread-local must not be read as this run's result, and ours must
  // not be read by a run that encloses this one.
  f.code = BH_FAULT_NONE;
  if (code != BH_FAULT_NONE && code != BH_FAULT_HELPER_EXIT) {
    if (fault != nullptr) {
      *fault = f;
      fault->code = code;
    }
    return -1;
  }
  if (r0 != nullptr) *r0 = ret;
  if (fault != nullptr) {
    // As the interpreter: success, or a helper's exit request (with its pc).
    if (code == BH_FAULT_HELPER_EXIT) {
      *fault = f;
      fault->code = code;
    } else {
      fault->code = BH_FAULT_NONE;
      fault->pc = 0;
      fault->addr = 0;
      fault->size = 0;
      fault->message[0] = '\0';
    }
  }
  return 0;
}

}  // extern "C"
