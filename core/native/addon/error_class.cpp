// The BpfhookError class, per env (error_class.h).
#include "error_class.h"

#include <map>

namespace bpfhook::addon {

namespace {
// Set once by setErrorClass(); a strong reference keeps it alive for the
// addon's lifetime (module-level state, one per env via instance data).
struct AddonData {
  Napi::FunctionReference errorClass;
  std::map<std::string, Napi::FunctionReference> classes;
};
}  // namespace

Napi::Error MakeError(Napi::Env env, const std::string &code, const std::string &message) {
  auto *data = env.GetInstanceData<AddonData>();
  if (data != nullptr && !data->errorClass.IsEmpty()) {
    Napi::Object err = data->errorClass.New({Napi::String::New(env, code), Napi::String::New(env, message)});
    return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Error MakeError(Napi::Env env, const std::string &code, const std::string &message, Napi::Object detail) {
  auto *data = env.GetInstanceData<AddonData>();
  if (data != nullptr && !data->errorClass.IsEmpty()) {
    Napi::Object err = data->errorClass.New({Napi::String::New(env, code), Napi::String::New(env, message), detail});
    return Napi::Error(env, err);
  }
  Napi::Error err = MakeError(env, code, message);
  err.Set("detail", detail);
  return err;
}

Napi::FunctionReference &ClassRef(Napi::Env env, const std::string &name) {
  return env.GetInstanceData<AddonData>()->classes[name];
}

namespace {
Napi::Value SetErrorClass(const Napi::CallbackInfo &info) {
  auto *data = info.Env().GetInstanceData<AddonData>();
  data->errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}
}  // namespace

void InitErrorClass(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
}

}  // namespace bpfhook::addon
