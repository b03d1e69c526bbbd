// Calls into the probe targets (targets/targets.c) and libc from native code:
// one call, loops on several threads, and timed loops for benchmarks.
#include <dlfcn.h>
#include <napi.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "targets.h"

namespace {

int64_t I(const Napi::CallbackInfo &info, size_t i) { return info[i].As<Napi::Number>().Int64Value(); }
Napi::Value Big(Napi::Env env, int64_t v) { return Napi::BigInt::New(env, v); }

Napi::Value Add(const Napi::CallbackInfo &info) { return Big(info.Env(), bh_target_add(I(info, 0), I(info, 1))); }
Napi::Value Args8(const Napi::CallbackInfo &info) {
  return Big(info.Env(), bh_target_args8(I(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4), I(info, 5),
                                         I(info, 6), I(info, 7)));
}
Napi::Value Mix(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), bh_target_mix(I(info, 0), info[1].As<Napi::Number>().DoubleValue(), I(info, 2),
                                                     info[3].As<Napi::Number>().DoubleValue()));
}
Napi::Value Fib(const Napi::CallbackInfo &info) { return Big(info.Env(), bh_target_fib(I(info, 0))); }
Napi::Value Double(const Napi::CallbackInfo &info) { return Big(info.Env(), bh_target_double(I(info, 0))); }
Napi::Value DoubleBodyCalls(const Napi::CallbackInfo &info) { return Napi::BigInt::New(info.Env(), bh_target_calls()); }
Napi::Value Escape(const Napi::CallbackInfo &info) { return Big(info.Env(), bh_target_escape(I(info, 0))); }
Napi::Value Strlen(const Napi::CallbackInfo &info) {
  std::string s = info[0].As<Napi::String>();
  return Napi::Number::New(info.Env(), static_cast<double>(strlen(s.c_str())));
}

// free(NULL) and free(malloc(size)), n times each (probes inside libc's free).
Napi::Value FreeLoop(const Napi::CallbackInfo &info) {
  void (*volatile f)(void *) = free;
  const int64_t n = I(info, 0);
  for (int64_t i = 0; i < n; i++) {
    f(nullptr);
    f(malloc(static_cast<size_t>(I(info, 1))));
  }
  return info.Env().Undefined();
}
Napi::Value Redzone(const Napi::CallbackInfo &info) { return Big(info.Env(), bh_target_redzone(I(info, 0))); }
Napi::Value Je32(const Napi::CallbackInfo &info) { return Big(info.Env(), bh_target_je32(I(info, 0))); }
// 8 floats + 8 floats through a function of __m256 (AVX2 machines only).
Napi::Value M256Add(const Napi::CallbackInfo &info) {
  float a[8], b[8], out[8];
  auto xa = info[0].As<Napi::Array>(), xb = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < 8; i++) {
    a[i] = xa.Get(i).As<Napi::Number>().FloatValue();
    b[i] = xb.Get(i).As<Napi::Number>().FloatValue();
  }
  bh_target_m256_add(a, b, out);
  auto r = Napi::Array::New(info.Env(), 8);
  for (uint32_t i = 0; i < 8; i++) r.Set(i, Napi::Number::New(info.Env(), out[i]));
  return r;
}

// Allocates and frees `n` blocks of `size` bytes (malloc probes).
Napi::Value MallocLoop(const Napi::CallbackInfo &info) {
  int64_t n = I(info, 0), size = I(info, 1);
  for (int64_t i = 0; i < n; i++) {
    void *volatile p = malloc(static_cast<size_t>(size));
    free(p);
  }
  return info.Env().Undefined();
}

// addThreads(threads, perThread) -> number of calls whose result was right.
// Each thread calls bh_target_add(i, t) and checks the sum.
Napi::Value AddThreads(const Napi::CallbackInfo &info) {
  int threads = static_cast<int>(I(info, 0));
  int64_t per = I(info, 1);
  std::atomic<int64_t> good{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      int64_t ok = 0;
      for (int64_t i = 0; i < per; i++) ok += bh_target_add(i, t) == i + t;
      good.fetch_add(ok);
    });
  }
  for (auto &th : pool) th.join();
  return Napi::Number::New(info.Env(), static_cast<double>(good.load()));
}

// timeCalls(which, iterations) -> ns per call of a target in a tight loop.
Napi::Value TimeCalls(const Napi::CallbackInfo &info) {
  std::string which = info[0].As<Napi::String>();
  int64_t n = I(info, 1);
  int64_t (*fn)(int64_t) = which == "double" ? bh_target_double : which == "usdt" ? bh_target_usdt : bh_target_empty;
  volatile int64_t sink = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; i++) sink = fn(i);
  auto t1 = std::chrono::steady_clock::now();
  (void)sink;
  return Napi::Number::New(info.Env(),
                           std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n));
}

// addressOf(symbol) -> bigint: what dlsym finds in the process.
Napi::Value AddressOf(const Napi::CallbackInfo &info) {
  std::string name = info[0].As<Napi::String>();
  return Napi::BigInt::New(info.Env(),
                           static_cast<uint64_t>(reinterpret_cast<uintptr_t>(dlsym(RTLD_DEFAULT, name.c_str()))));
}

// readBytes(symbol, n) -> Buffer: the first n bytes of a function's code.
Napi::Value ReadBytes(const Napi::CallbackInfo &info) {
  std::string name = info[0].As<Napi::String>();
  size_t n = static_cast<size_t>(I(info, 1));
  void *p = dlsym(RTLD_DEFAULT, name.c_str());
  if (p == nullptr) {
    Napi::Error::New(info.Env(), "no symbol " + name).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Buffer<uint8_t>::Copy(info.Env(), static_cast<const uint8_t *>(p), n);
}

// Background callers: startAddThreads(n) starts n threads calling
// bh_target_add in a loop and checking results; stopAddThreads() joins them
// and returns { calls, good }. JS attaches and detaches in between.
struct Hammer {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> calls{0}, good{0};
  std::vector<std::thread> threads;
};
Hammer *g_hammer = nullptr;

Napi::Value StartAddThreads(const Napi::CallbackInfo &info) {
  if (g_hammer != nullptr) {
    Napi::Error::New(info.Env(), "already running").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  g_hammer = new Hammer();
  int n = static_cast<int>(I(info, 0));
  for (int t = 0; t < n; t++) {
    g_hammer->threads.emplace_back([h = g_hammer, t] {
      int64_t calls = 0, good = 0;
      for (int64_t i = 0; !h->stop.load(std::memory_order_relaxed); i++) {
        good += bh_target_add(i, t) == i + t;
        calls++;
      }
      h->calls.fetch_add(calls);
      h->good.fetch_add(good);
    });
  }
  return info.Env().Undefined();
}

Napi::Value StopAddThreads(const Napi::CallbackInfo &info) {
  Napi::Object out = Napi::Object::New(info.Env());
  if (g_hammer == nullptr) return out;
  g_hammer->stop = true;
  for (auto &th : g_hammer->threads) th.join();
  out.Set("calls", Napi::Number::New(info.Env(), static_cast<double>(g_hammer->calls.load())));
  out.Set("good", Napi::Number::New(info.Env(), static_cast<double>(g_hammer->good.load())));
  delete g_hammer;
  g_hammer = nullptr;
  return out;
}

}  // namespace

void InitTargets(Napi::Env env, Napi::Object exports) {
  exports.Set("add", Napi::Function::New(env, Add));
  exports.Set("freeLoop", Napi::Function::New(env, FreeLoop));
  exports.Set("redzone", Napi::Function::New(env, Redzone));
  exports.Set("je32", Napi::Function::New(env, Je32));
  exports.Set("m256Add", Napi::Function::New(env, M256Add));
  exports.Set("args8", Napi::Function::New(env, Args8));
  exports.Set("mix", Napi::Function::New(env, Mix));
  exports.Set("fib", Napi::Function::New(env, Fib));
  exports.Set("double", Napi::Function::New(env, Double));
  exports.Set("doubleBodyCalls", Napi::Function::New(env, DoubleBodyCalls));
  exports.Set("escape", Napi::Function::New(env, Escape));
  exports.Set("strlen", Napi::Function::New(env, Strlen));
  exports.Set("mallocLoop", Napi::Function::New(env, MallocLoop));
  exports.Set("addThreads", Napi::Function::New(env, AddThreads));
  exports.Set("timeCalls", Napi::Function::New(env, TimeCalls));
  exports.Set("addressOf", Napi::Function::New(env, AddressOf));
  exports.Set("readBytes", Napi::Function::New(env, ReadBytes));
  exports.Set("startAddThreads", Napi::Function::New(env, StartAddThreads));
  exports.Set("stopAddThreads", Napi::Function::New(env, StopAddThreads));
}
