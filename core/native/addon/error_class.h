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

// The constructor of a wrapped class (NativeProgram, ...) in this env. Each
// worker thread that loads the addon is an env of its own: a reference made
// in one must never be used from another, so none is kept in a static.
Napi::FunctionReference &ClassRef(Napi::Env env, const std::string &name);

// Sets up the per-env state and exports setErrorClass(cls). Call first in a
// module's init.
void InitErrorClass(Napi::Env env, Napi::Object exports);

}  // namespace bpfhook::addon
