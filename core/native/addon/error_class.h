// The BpfhookError class handed in from TypeScript (setErrorClass), so native
// code throws the same error class, with code, errno and detail, as
// TypeScript does. Shared by the core addon and the testing addon
// (core/native/testing compiles error_class.cpp too): one copy of the rule.
#pragma once
#include <napi.h>

#include <string>

namespace bpfhook::addon {

// A BpfhookError(code, message) once setErrorClass ran, else a plain Error
// with `code` set.
Napi::Error MakeError(Napi::Env env, const std::string &code, const std::string &message);
// The same with BpfhookError's detail object ({ pc, address, fault, ... }).
Napi::Error MakeError(Napi::Env env, const std::string &code, const std::string &message, Napi::Object detail);

// Sets up the per-env state and exports setErrorClass(cls). Call first in a
// module's init.
void InitErrorClass(Napi::Env env, Napi::Object exports);

}  // namespace bpfhook::addon
