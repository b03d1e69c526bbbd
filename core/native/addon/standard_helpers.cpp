// The helpers every program gets: the kernel-id helpers of core/native/helpers
// and the map helpers of core/native/maps.
#include "addon.h"
#include "bpfhook/helpers.h"

namespace bpfhook::addon {

int RegisterStandardHelpers(void *, bh_vm *vm) {
  bh_helpers_opts opts{};
  opts.sz = sizeof opts;
  return bh_helpers_register_all(vm, &opts);
}

// Weak fallbacks until maps_binding.cpp provides the real ones.
__attribute__((weak)) void *UnwrapMap(Napi::Value) { return nullptr; }
__attribute__((weak)) uint64_t MapValueAddr(void *, uint32_t) { return 0; }
__attribute__((weak)) void SharedRegionBounds(const void **base, size_t *len) {
  *base = nullptr;
  *len = 0;
}

}  // namespace bpfhook::addon
