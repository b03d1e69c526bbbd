// Node binding of the ptrace injector (core/native/inject): injectDlopen.
// Synchronous on purpose: the thread that seizes a tracee is its tracer, so
// the whole injection runs on the calling thread (bounded by timeoutMs).
#include <cerrno>
#include <string>

#include "addon.h"
#include "bpfhook/inject.h"

namespace bpfhook::addon {

namespace {

std::string InjectErrnoName(int e) {
  switch (-e) {
    case ESRCH: return "ESRCH";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ENOEXEC: return "ENOEXEC";
    case ENOSYS: return "ENOSYS";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "errno " + std::to_string(-e);
  }
}

// injectDlopen(pid, path, { timeoutMs?, noPathCheck?, callSymbol?, callArg? })
//   -> { handle: bigint, base: bigint, reused: boolean, usedLibcDlopenMode: boolean, called: boolean,
//        callRet: number }
// Throws INJECT_FAILED with errno (and detail.dlerror when the target's
// dlopen returned NULL).
Napi::Value InjectDlopen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) {
    MakeError(env, "BAD_ARGUMENT", "injectDlopen(pid: number, path: string, opts?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int pid = info[0].As<Napi::Number>().Int32Value();
  const std::string path = info[1].As<Napi::String>().Utf8Value();
  bh_inject_opts opts{};
  opts.sz = sizeof opts;
  std::string call_symbol, call_arg;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (o.Get("timeoutMs").IsNumber()) opts.timeout_ms = o.Get("timeoutMs").As<Napi::Number>().Uint32Value();
    if (o.Get("noPathCheck").ToBoolean().Value()) opts.flags |= BH_INJECT_NO_PATH_CHECK;
    if (o.Get("callSymbol").IsString()) {
      call_symbol = o.Get("callSymbol").As<Napi::String>().Utf8Value();
      opts.call_symbol = call_symbol.c_str();
    }
    if (o.Get("callArg").IsString()) {
      call_arg = o.Get("callArg").As<Napi::String>().Utf8Value();
      opts.call_arg = call_arg.c_str();
    }
  }
  bh_inject_result res{};
  char err[1024] = {0};
  int rc = bh_inject_dlopen(pid, path.c_str(), &opts, &res, err, sizeof err);
  if (rc != 0) {
    Napi::Object detail = Napi::Object::New(env);
    detail.Set("errno", Napi::Number::New(env, rc));
    if (res.dlerror[0] != '\0') detail.Set("dlerror", Napi::String::New(env, res.dlerror));
    Napi::Error e = MakeError(env, "INJECT_FAILED", std::string(err) + " (" + InjectErrnoName(rc) + ")", detail);
    e.Set("errno", Napi::Number::New(env, rc));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", Napi::BigInt::New(env, static_cast<uint64_t>(res.handle)));
  out.Set("base", Napi::BigInt::New(env, static_cast<uint64_t>(res.base)));
  out.Set("reused", Napi::Boolean::New(env, res.reused != 0));
  out.Set("usedLibcDlopenMode", Napi::Boolean::New(env, res.used_libc_dlopen_mode != 0));
  out.Set("called", Napi::Boolean::New(env, res.called != 0));
  out.Set("callRet", Napi::Number::New(env, res.call_ret));
  return out;
}

}  // namespace

void InitInject(Napi::Env env, Napi::Object exports) {
  exports.Set("injectDlopen", Napi::Function::New(env, InjectDlopen));
}

}  // namespace bpfhook::addon
