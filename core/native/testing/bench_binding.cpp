// The VM benchmark's timing loops (npm run bench:vm, bench/vm/bench-vm.ts),
// in the testing addon (testing.h), not the production one.
// Timing happens here, natively: one N-API call runs a program `runs` times
// back to back and returns the elapsed nanoseconds, so no JS or N-API cost is
// inside the measured interval. The same loop times the gcc -O2 baselines of
// core/native/bench, which have the shape of a compiled program.
//
//   vmBenchRun(addrs, "jit" | "interpreter", ctx, runs) -> { ns, r0 }
//   vmBenchNative(workload, ctx, runs)                  -> { ns, r0 }
//   vmBenchInfo()                 -> { compiler, workloads: [{ name, ctxSize }] }
//
// `addrs` is what a loaded core-addon Vm's nativeAddresses() returns
// ({ vm, exec, jit } bigints; checked mode and budget as the caller set
// them): the program runs through the core addon's own bh_vm_exec and JIT
// code, never this addon's copy of the VM (whose thread-locals the core's
// helpers do not see). test/support/testing-addon.ts compiles the Vm first
// for "jit". `ctx` is passed by pointer, as Vm.exec does; `r0` is the last
// run's result, for the caller to compare across back ends.
#include <chrono>
#include <cstdint>
#include <string>

#include "bpfhook/bench.h"
#include "bpfhook/vm.h"
#include "testing.h"

namespace bpfhook::testing {
namespace {

// Every result is added in here, so no run's work is dead to the compiler.
volatile uint64_t g_sink = 0;

constexpr double kMaxRuns = 1e9;

struct Ctx {
  uint8_t *data = nullptr;
  size_t len = 0;
};

Ctx CtxArg(const Napi::Value &v, const char *fn) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto arr = v.As<Napi::Uint8Array>();
    return {arr.Data(), arr.ByteLength()};
  }
  throw MakeError(v.Env(), "BAD_ARGUMENT", std::string(fn) + ": ctx must be a Buffer, a Uint8Array or null");
}

uint32_t RunsArg(const Napi::Value &v, const char *fn) {
  const double runs = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(runs >= 1 && runs <= kMaxRuns) || runs != static_cast<double>(static_cast<uint32_t>(runs))) {
    throw MakeError(v.Env(), "BAD_ARGUMENT", std::string(fn) + ": runs must be an integer in [1, 1e9]");
  }
  return static_cast<uint32_t>(runs);
}

Napi::Object Result(Napi::Env env, int64_t ns, uint64_t r0) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("ns", Napi::Number::New(env, static_cast<double>(ns)));
  out.Set("r0", Napi::BigInt::New(env, r0));
  return out;
}

// Calls fn(ctx, len) `runs` times between two clock reads: the loop shared by
// the JIT and the gcc baselines, so both pay the same per-run call.
template <typename Fn>
int64_t TimeCalls(Fn fn, const Ctx &ctx, uint32_t runs, uint64_t *last) {
  uint64_t sum = 0, r0 = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint32_t i = 0; i < runs; i++) {
    r0 = fn(ctx.data, ctx.len);
    sum += r0;
  }
  const auto t1 = std::chrono::steady_clock::now();
  g_sink = g_sink + sum;
  *last = r0;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
}

Napi::Value BenchRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const char *fn = "vmBenchRun";
  // The core addon's bh_vm_exec signature (bpfhook/vm.h).
  using ExecFn = int (*)(const bh_vm *, void *, size_t, uint64_t *, bh_fault *);
  const Napi::Object addrs = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const auto *vm = reinterpret_cast<const bh_vm *>(AddressValue(addrs.Get("vm")));
  const auto exec = reinterpret_cast<ExecFn>(AddressValue(addrs.Get("exec")));
  if (vm == nullptr || exec == nullptr) {
    throw MakeError(env, "BAD_ARGUMENT", "vmBenchRun: expected a Vm with a loaded program (its nativeAddresses())");
  }
  const std::string backend = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (backend != "jit" && backend != "interpreter") {
    throw MakeError(env, "BAD_ARGUMENT", "vmBenchRun: backend must be 'jit' or 'interpreter'");
  }
  const Ctx ctx = CtxArg(info[2], fn);
  const uint32_t runs = RunsArg(info[3], fn);
  uint64_t r0 = 0;

  if (backend == "jit") {
    const auto jit = reinterpret_cast<bh_jit_fn>(AddressValue(addrs.Get("jit")));
    if (jit == nullptr)
      throw MakeError(env, "BAD_ARGUMENT", "vmBenchRun: jit: the Vm is not compiled (call compile() first)");
    // The compiled function itself, as an attach point calls it: in fast mode
    // it cannot fault (checked or budget mode would report through a
    // thread-local this loop does not read; the benchmark uses neither).
    const int64_t ns = TimeCalls(jit, ctx, runs, &r0);  // before reading r0
    return Result(env, ns, r0);
  }

  uint64_t sum = 0;
  bh_fault fault{};
  int rc = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint32_t i = 0; i < runs && rc == 0; i++) {
    rc = exec(vm, ctx.data, ctx.len, &r0, &fault);
    sum += r0;
  }
  const auto t1 = std::chrono::steady_clock::now();
  g_sink = g_sink + sum;
  if (rc != 0 && fault.code != BH_FAULT_HELPER_EXIT) {
    throw MakeError(env, "VM_FAULT", std::string("vmBenchRun: interpreter: ") + fault.message);
  }
  return Result(env, std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count(), r0);
}

Napi::Value BenchNative(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const char *fn = "vmBenchNative";
  const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  size_t n = 0;
  const bh_bench_workload *all = bh_bench_workloads(&n);
  const bh_bench_workload *w = nullptr;
  for (size_t i = 0; i < n; i++) {
    if (name == all[i].name) w = &all[i];
  }
  if (w == nullptr) throw MakeError(env, "NOT_FOUND", "vmBenchNative: no native workload named '" + name + "'");
  const Ctx ctx = CtxArg(info[1], fn);
  // The baselines trust their context as programs do; here it is checked.
  if (ctx.len < w->ctx_size) {
    throw MakeError(
        env, "BAD_ARGUMENT",
        "vmBenchNative: workload '" + name + "' needs a ctx of at least " + std::to_string(w->ctx_size) + " bytes");
  }
  const uint32_t runs = RunsArg(info[2], fn);
  uint64_t r0 = 0;
  const int64_t ns = TimeCalls(w->fn, ctx, runs, &r0);  // before reading r0
  return Result(env, ns, r0);
}

Napi::Value BenchInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("compiler", Napi::String::New(env, bh_bench_compiler()));
  size_t n = 0;
  const bh_bench_workload *all = bh_bench_workloads(&n);
  Napi::Array workloads = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    Napi::Object w = Napi::Object::New(env);
    w.Set("name", Napi::String::New(env, all[i].name));
    w.Set("ctxSize", Napi::Number::New(env, static_cast<double>(all[i].ctx_size)));
    workloads.Set(static_cast<uint32_t>(i), w);
  }
  out.Set("workloads", workloads);
  return out;
}

}  // namespace

void InitBench(Napi::Env env, Napi::Object exports) {
  exports.Set("vmBenchRun", Napi::Function::New(env, BenchRun));
  exports.Set("vmBenchNative", Napi::Function::New(env, BenchNative));
  exports.Set("vmBenchInfo", Napi::Function::New(env, BenchInfo));
}

}  // namespace bpfhook::testing
