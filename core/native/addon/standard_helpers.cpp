// The helpers every program gets: the kernel-id helpers of core/native/helpers
// and the map helpers of core/native/maps.
#include "addon.h"
#include "bpfhook/helpers.h"
#include "bpfhook/maps.h"

namespace bpfhook::addon {

int RegisterStandardHelpers(void *, bh_vm *vm) {
  bh_helpers_opts opts{};
  opts.sz = sizeof opts;
  if (bh_helpers_register_all(vm, &opts) < 0) return -1;
  return bh_maps_register_helpers(vm) < 0 ? -1 : 0;
}

}  // namespace bpfhook::addon
