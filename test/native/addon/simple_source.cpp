// Native code firing a simple-plugin source, the way a library or another
// addon would: find bh_simple_trigger at run time, call it from C++ threads.
#include <dlfcn.h>
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "bpfhook/simple.h"

namespace {

bh_simple_trigger_fn FindTrigger() {
  return reinterpret_cast<bh_simple_trigger_fn>(dlsym(RTLD_DEFAULT, "bh_simple_trigger"));
}

// fireSimple(source, value: number) -> { rc, r0 }: context is one u64 = value.
Napi::Value FireSimple(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_simple_trigger_fn trigger = FindTrigger();
  if (trigger == nullptr) {
    Napi::Error::New(env, "bh_simple_trigger not found: the simple plugin is not loaded").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = info[0].As<Napi::String>();
  uint64_t ctx = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  uint64_t r0 = 0;
  int rc = trigger(source.c_str(), &ctx, sizeof ctx, &r0);
  Napi::Object out = Napi::Object::New(env);
  out.Set("rc", rc);
  out.Set("r0", Napi::BigInt::New(env, r0));
  out.Set("ctx", Napi::BigInt::New(env, ctx));
  return out;
}

// fireSimpleThreads(source, threads, perThread) -> total programs run.
Napi::Value FireSimpleThreads(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_simple_trigger_fn trigger = FindTrigger();
  if (trigger == nullptr) {
    Napi::Error::New(env, "bh_simple_trigger not found").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = info[0].As<Napi::String>();
  int threads = info[1].As<Napi::Number>().Int32Value();
  int per = info[2].As<Napi::Number>().Int32Value();
  std::atomic<int64_t> total{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per; i++) {
        uint64_t ctx = static_cast<uint64_t>(t) * 1000000 + i;
        int rc = trigger(source.c_str(), &ctx, sizeof ctx, nullptr);
        if (rc > 0) total.fetch_add(rc);
      }
    });
  }
  for (auto &th : pool) th.join();
  return Napi::Number::New(env, static_cast<double>(total.load()));
}

// Background firing: startSimpleThreads(source, n) starts n threads firing
// `source` in a loop; stopSimpleThreads() joins them and returns
// { fires, runs } (programs run, summed). JS attaches and detaches in between.
struct SimpleHammer {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> fires{0}, runs{0};
  std::vector<std::thread> threads;
};
SimpleHammer *g_simple_hammer = nullptr;

Napi::Value StartSimpleThreads(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_simple_trigger_fn trigger = FindTrigger();
  if (trigger == nullptr || g_simple_hammer != nullptr) {
    Napi::Error::New(env, trigger == nullptr ? "bh_simple_trigger not found" : "already running")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = info[0].As<Napi::String>();
  int n = info[1].As<Napi::Number>().Int32Value();
  g_simple_hammer = new SimpleHammer();
  for (int t = 0; t < n; t++) {
    g_simple_hammer->threads.emplace_back([h = g_simple_hammer, trigger, source] {
      int64_t fires = 0, runs = 0;
      while (!h->stop.load(std::memory_order_relaxed)) {
        uint64_t ctx = static_cast<uint64_t>(fires);
        int rc = trigger(source.c_str(), &ctx, sizeof ctx, nullptr);
        if (rc > 0) runs += rc;
        fires++;
      }
      h->fires.fetch_add(fires);
      h->runs.fetch_add(runs);
    });
  }
  return env.Undefined();
}

Napi::Value StopSimpleThreads(const Napi::CallbackInfo &info) {
  Napi::Object out = Napi::Object::New(info.Env());
  if (g_simple_hammer == nullptr) return out;
  g_simple_hammer->stop = true;
  for (auto &th : g_simple_hammer->threads) th.join();
  out.Set("fires", Napi::Number::New(info.Env(), static_cast<double>(g_simple_hammer->fires.load())));
  out.Set("runs", Napi::Number::New(info.Env(), static_cast<double>(g_simple_hammer->runs.load())));
  delete g_simple_hammer;
  g_simple_hammer = nullptr;
  return out;
}

}  // namespace

void InitSimpleSource(Napi::Env env, Napi::Object exports) {
  exports.Set("fireSimple", Napi::Function::New(env, FireSimple));
  exports.Set("fireSimpleThreads", Napi::Function::New(env, FireSimpleThreads));
  exports.Set("startSimpleThreads", Napi::Function::New(env, StartSimpleThreads));
  exports.Set("stopSimpleThreads", Napi::Function::New(env, StopSimpleThreads));
}
