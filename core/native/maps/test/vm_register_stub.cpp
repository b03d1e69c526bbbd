// Stands in for the VM's bh_vm_register_helper in the standalone test build:
// records what bh_maps_register_helpers registers. Also stands in for the
// helpers library's stack walk, which bpf_get_stackid calls.
#include <cstdint>
#include <map>
#include <string>

#include "bpfhook/vm.h"

std::map<uint32_t, std::string> g_registered_helpers;

extern "C" int bh_vm_register_helper(bh_vm *, uint32_t id, const char *name, bh_helper_fn fn, uint32_t) {
  if (fn == nullptr) return -1;
  g_registered_helpers[id] = name;
  return 0;
}

// No helpers library here: an empty stack (bpf_get_stackid then returns -EFAULT).
extern "C" uint32_t bh_stack_walk(uint64_t *, uint32_t, uint32_t) { return 0; }

// Argument prototypes (checked mode) are the VM's business; accepted here.
extern "C" int bh_vm_set_helper_proto(bh_vm *, uint32_t, const struct bh_helper_proto *proto) {
  return proto != nullptr ? 0 : -1;
}

// Callbacks run in the VM; without one there is no run to call back into.
extern "C" int bh_vm_callback_invoke(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, const void *, size_t,
                                     uint64_t *) {
  return -22;  // -EINVAL
}
