// Callbacks (bpf_loop, bpf_for_each_map_elem): the thread-local link a run
// publishes around a BH_HELPER_CALLS_BACK helper, and bh_vm_callback_invoke,
// which runs one of the program's functions nested in that run, in the run's
// backend, and turns a fault or an exit request inside it into something the
// run acts on once the helper has returned (a helper is C: nothing unwinds
// through it).
#include <cerrno>

#include "vm_internal.h"

namespace bh {

CallbackLink *&callback_link() {
  thread_local CallbackLink *link = nullptr;
  return link;
}

CallbackWindow &callback_window() {
  thread_local CallbackWindow window;
  return window;
}

const Callback *find_callback(const bh_vm *vm, uint64_t ref) {
  if (vm->callbacks.empty()) return nullptr;
  const uintptr_t p = uintptr_t(ref);
  const uintptr_t base = reinterpret_cast<uintptr_t>(vm->callbacks.data());
  if (p < base) return nullptr;
  const uintptr_t off = p - base;
  if (off % sizeof(Callback) != 0 || off / sizeof(Callback) >= vm->callbacks.size()) return nullptr;
  return &vm->callbacks[off / sizeof(Callback)];
}

}  // namespace bh

extern "C" int bh_vm_callback_invoke(uint64_t ref, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
                                     const void *window, size_t window_len, uint64_t *r0) {
  bh::CallbackLink *link = bh::callback_link();
  if (link == nullptr || !link->active) return -EINVAL;
  // A callback already ended the run: the helper should have returned.
  if (link->pending != 0) return -ECANCELED;
  const bh::Callback *cb = bh::find_callback(link->vm, ref);
  if (cb == nullptr || (link->jit && cb->jit_entry == nullptr)) return -EINVAL;

  bh::CallbackWindow &w = bh::callback_window();
  const bh::CallbackWindow saved = w;
  w = bh::CallbackWindow{reinterpret_cast<uintptr_t>(window), window != nullptr ? window_len : 0};
  link->active = false;
  uint64_t ret = 0;
  int rc = 0;
  if (link->jit) {
    // The enclosing run has no fault recorded (it would have ended), so
    // whatever the callback leaves here is its own.
    bh_fault &f = bh::jit_fault();
    f.code = BH_FAULT_NONE;
    ret = cb->jit_entry(r1, r2, r3, r4, r5, &link->jl);
    if (f.code == BH_FAULT_HELPER_EXIT) {
      // The run notes its own exit (with the helper call's pc) when it ends.
      f.code = BH_FAULT_NONE;
      link->pending = bh::kPendingExit;
      link->exit_value = ret;
      rc = -ECANCELED;
    } else if (f.code != BH_FAULT_NONE) {
      link->pending = bh::kPendingFault;  // the fault stays in jit_fault()
      rc = -ECANCELED;
    }
  } else {
    const uint64_t args[5] = {r1, r2, r3, r4, r5};
    const int outcome = bh::interp_callback(link, *cb, args, &ret);
    if (outcome < 0) {
      link->pending = bh::kPendingFault;  // link->fault
      rc = -ECANCELED;
    } else if (outcome > 0) {
      link->pending = bh::kPendingExit;
      link->exit_value = ret;
      rc = -ECANCELED;
    }
  }
  link->active = true;
  w = saved;
  if (rc == 0 && r0 != nullptr) *r0 = ret;
  return rc;
}
