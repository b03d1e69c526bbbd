// Module init of the testing addon (testing.h).
#include "testing.h"

namespace bpfhook::testing {

namespace {
// Per env, as in the core addon (core/native/addon/addon.cpp).
struct AddonData {
  Napi::FunctionReference errorClass;
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

uint64_t AddressValue(const Napi::Value &v) {
  if (!v.IsBigInt()) return 0;
  bool lossless = true;
  const uint64_t addr = v.As<Napi::BigInt>().Uint64Value(&lossless);
  return lossless ? addr : 0;
}

static Napi::Value SetErrorClass(const Napi::CallbackInfo &info) {
  auto *data = info.Env().GetInstanceData<AddonData>();
  data->errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  InitStress(env, exports);
  InitBench(env, exports);
  return exports;
}

}  // namespace bpfhook::testing

// NODE_API_MODULE pastes its second argument into an identifier, so it needs
// an unqualified name.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return bpfhook::testing::Init(env, exports); }

NODE_API_MODULE(bpfhook_testing, InitModule)
