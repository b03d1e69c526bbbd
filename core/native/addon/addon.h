// One entry point per binding file; addon.cpp calls each in turn. Keeps the
// module init free of knowledge about what each component exports.
#pragma once
#include <napi.h>

#include "bpfhook/region.h"
#include "bpfhook/vm.h"
#include "error_class.h"

namespace bpfhook::addon {

// MakeError: the BpfhookError class from core/src/native/binding.ts (error_class.h).

void InitVm(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitInject(Napi::Env env, Napi::Object exports);
void InitAgent(Napi::Env env, Napi::Object exports);

// Glue between bindings (maps_binding.cpp): the native map behind a JS map
// object (NULL if it is not one), and the shared region programs may access.
void *UnwrapMap(Napi::Value value);
void SharedRegionBounds(const void **base, size_t *len);
// The bounds of a JS region handle; false if `value` is not an open one.
bool RegionBounds(Napi::Value value, const void **base, size_t *len);
// The native region behind a JS region handle; NULL if not an open one.
bh_region *UnwrapRegion(Napi::Value value);

// Registers the standard helpers (bpfhelpers + map helpers) in a new VM.
int RegisterStandardHelpers(void *cookie, bh_vm *vm);

}  // namespace bpfhook::addon
