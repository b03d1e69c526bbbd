// One entry point per binding file; addon.cpp calls each in turn. Keeps the
// module init free of knowledge about what each component exports.
#pragma once
#include <napi.h>

namespace bpfhook::addon {

// The JS error class passed in by core/src/native/binding.ts, so native code
// throws the same BpfhookError (with code, errno, detail) as TypeScript does.
Napi::Error MakeError(Napi::Env env, const std::string &code, const std::string &message);

void InitVm(Napi::Env env, Napi::Object exports);

}  // namespace bpfhook::addon
