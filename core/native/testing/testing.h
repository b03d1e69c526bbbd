// The testing addon (bpfhook_testing.node): entry points that only tests and
// benchmarks call, kept out of the production addon (bpfhook_core.node).
//
// Both addons are built by the same cmake-js project (core/native) from the
// same static libraries, so the bh_map* and bh_vm* the core addon hands out
// as bigint addresses (map info `address`, Vm.nativeAddresses()) have exactly
// the layout this addon's code expects. Each addon has its own copy of those
// libraries' code and globals, though: this addon runs its own code only on
// state that lives in the objects it is given (the map helpers on a bh_map,
// all in the shared region) and reaches a VM only through the core addon's
// functions (bench_binding.cpp). Addresses are trusted as given: test-only.
#pragma once
#include <napi.h>

#include "error_class.h"

#include <cstdint>
#include <string>

namespace bpfhook::testing {

// Throws the BpfhookError class that test/support/testing-addon.ts hands in
// (setErrorClass), with the core addon's code (addon/error_class.cpp).
using addon::MakeError;

// A non-negative bigint address, or 0 for anything else (0n, a number, a
// bigint that does not fit in 64 bits).
uint64_t AddressValue(const Napi::Value &v);

void InitStress(Napi::Env env, Napi::Object exports);  // stress_binding.cpp
void InitBench(Napi::Env env, Napi::Object exports);   // bench_binding.cpp

}  // namespace bpfhook::testing
