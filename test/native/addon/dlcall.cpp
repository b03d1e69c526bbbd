// callLibrary(path, symbol, arg): dlopen()s a shared library into this
// process (once; RTLD_NOW) and calls `long symbol(long arg)` in it. For code
// that must run in the test's own process but is built during the test (the
// USDT plugin's probed library, test 48).
#include <dlfcn.h>
#include <napi.h>

#include <string>

namespace {

Napi::Value CallLibrary(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const std::string path = info[0].As<Napi::String>();
  const std::string symbol = info[1].As<Napi::String>();
  const long arg = static_cast<long>(info[2].As<Napi::Number>().Int64Value());
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    Napi::Error::New(env, std::string("dlopen: ") + dlerror()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto fn = reinterpret_cast<long (*)(long)>(dlsym(h, symbol.c_str()));
  if (fn == nullptr) {
    Napi::Error::New(env, "dlsym: no " + symbol + " in " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // The handle stays open: probes may be attached to the library's code.
  return Napi::Number::New(env, static_cast<double>(fn(arg)));
}

}  // namespace

void InitDlcall(Napi::Env env, Napi::Object exports) {
  exports.Set("callLibrary", Napi::Function::New(env, CallLibrary));
}
