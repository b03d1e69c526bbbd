// bpf_tail_call and the program arrays it jumps through.
//
// The kernel replaces the running program with the target and never comes
// back. Here the target runs nested inside the helper, on the same context,
// and the helper then asks the VM to end the caller with the target's r0
// (bh_vm_request_exit; the helper is registered BH_HELPER_MAY_EXIT). Seen
// from outside, that is the same: the caller's remaining instructions never
// run and its result is the target's. The cost is native stack: a chain of
// 33 tail calls nests 33 program runs, each with its 512-byte eBPF stack.

#include <errno.h>

#include <atomic>
#include <memory>

#include "internal.h"

struct bh_prog_array {
  // Guards against a wrong pointer in r2 (say, another map type's handle)
  // being used as a program array.
  static constexpr uint64_t kMagic = 0x7072676172726179ull;  // "prgarray"
  uint64_t magic = kMagic;
  uint32_t max_entries = 0;
  bh_prog_array_run_fn run = nullptr;
  // One atomic pointer per slot: tail calls read it lock-free while the
  // runtime updates slots from another thread.
  std::unique_ptr<std::atomic<void *>[]> slots;
};

extern "C" {

bh_prog_array *bh_prog_array_create(uint32_t max_entries, bh_prog_array_run_fn run) {
  if (max_entries == 0 || run == nullptr) return nullptr;
  auto *arr = new (std::nothrow) bh_prog_array;
  if (arr == nullptr) return nullptr;
  arr->max_entries = max_entries;
  arr->run = run;
  arr->slots.reset(new (std::nothrow) std::atomic<void *>[max_entries]);
  if (!arr->slots) {
    delete arr;
    return nullptr;
  }
  for (uint32_t i = 0; i < max_entries; i++) arr->slots[i].store(nullptr, std::memory_order_relaxed);
  return arr;
}

void bh_prog_array_destroy(bh_prog_array *arr) {
  if (arr == nullptr) return;
  arr->magic = 0;  // a stale pointer used later fails the magic check, most likely
  delete arr;
}

int bh_prog_array_update(bh_prog_array *arr, uint32_t index, void *prog) {
  if (arr == nullptr || prog == nullptr) return -EINVAL;
  if (index >= arr->max_entries) return -E2BIG;
  arr->slots[index].store(prog, std::memory_order_release);
  return 0;
}

int bh_prog_array_delete(bh_prog_array *arr, uint32_t index) {
  if (arr == nullptr) return -EINVAL;
  if (index >= arr->max_entries) return -E2BIG;
  return arr->slots[index].exchange(nullptr, std::memory_order_acq_rel) != nullptr ? 0 : -ENOENT;
}

void *bh_prog_array_lookup(const bh_prog_array *arr, uint32_t index) {
  if (arr == nullptr || index >= arr->max_entries) return nullptr;
  return arr->slots[index].load(std::memory_order_acquire);
}

uint32_t bh_prog_array_max_entries(const bh_prog_array *arr) { return arr != nullptr ? arr->max_entries : 0; }

uint64_t bh_helper_tail_call(uint64_t ctx, uint64_t prog_array, uint64_t index64, uint64_t, uint64_t) {
  using bh::helpers::tls;
  auto *arr = reinterpret_cast<bh_prog_array *>(prog_array);
  // On every failure the caller continues with its next instruction, as in
  // the kernel; r0 tells why.
  if (arr == nullptr || arr->magic != bh_prog_array::kMagic) return uint64_t(-EINVAL);
  const uint32_t index = uint32_t(index64);  // the kernel compares the low 32 bits
  if (index >= arr->max_entries) return uint64_t(-E2BIG);
  void *prog = arr->slots[index].load(std::memory_order_acquire);
  if (prog == nullptr) return uint64_t(-ENOENT);
  if (tls.tail_depth >= BH_MAX_TAIL_CALL_CNT) return uint64_t(-ELOOP);
  // The chain count is the nesting depth: each tail call in a chain runs
  // inside the previous one and ends right after it.
  tls.tail_depth++;
  const uint64_t r0 = arr->run(prog, reinterpret_cast<void *>(ctx));
  tls.tail_depth--;
  bh_vm_request_exit(r0);
  return 0;
}

}  // extern "C"
