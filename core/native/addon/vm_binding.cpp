// The Node binding of the eBPF VM (bpfhook/vm.h): one JS `Vm` object owns one
// bh_vm. It mirrors the C API's order (register helpers and set modes, load
// once, then exec / compile) and turns every -1 into a thrown BpfhookError:
// VM_LOAD and VM_COMPILE with the VM's message, VM_FAULT with pc, fault kind
// and address in the detail. Arguments were checked in TypeScript already
// (core/src/vm/); the checks here only keep a misuse from crashing the host.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "addon.h"
#include "bpfhook/helpers.h"
#include "bpfhook/vm.h"

namespace bpfhook::addon {
namespace {

// ---- Helpers implemented natively, selectable by name from JS ----
// Programs run with no JS on the hot path, so a helper is chosen from this
// table rather than supplied as a JS function.

// The bpf_conformance suite's helper 5: returns its argument, and when that
// is 0 ends the calling program with r0 = 0 ("unwind").
uint64_t HelperUnwind(uint64_t r1, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (r1 == 0) bh_vm_request_exit(0);
  return r1;
}

// Packs the low byte of each argument, r1 highest: shows that all five
// arguments arrive in order (0x0102030405 for 1, 2, 3, 4, 5).
uint64_t HelperGatherBytes(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5) {
  return ((r1 & 0xff) << 32) | ((r2 & 0xff) << 24) | ((r3 & 0xff) << 16) | ((r4 & 0xff) << 8) | (r5 & 0xff);
}

// XORs r2 bytes at r1 with 42 and returns r2: a helper that writes program
// memory. Test-only: it trusts its pointer, as native helpers do.
uint64_t HelperMemfrob(uint64_t r1, uint64_t r2, uint64_t, uint64_t, uint64_t) {
  auto *p = reinterpret_cast<uint8_t *>(static_cast<uintptr_t>(r1));
  for (uint64_t i = 0; i < r2; i++) p[i] ^= 42;
  return r2;
}

// Ends the program at once with r0 = r1 (what tail calls and bpf_exit-style
// helpers do), whatever follows the call.
uint64_t HelperExitWith(uint64_t r1, uint64_t, uint64_t, uint64_t, uint64_t) {
  bh_vm_request_exit(r1);
  return 0;
}

// r1 + 1: the trivial helper of the VM benchmark's helper-heavy workload
// (bench/vm), as cheap as a helper gets, so the figure is the call's cost.
uint64_t HelperAddOne(uint64_t r1, uint64_t, uint64_t, uint64_t, uint64_t) { return r1 + 1; }

struct NativeHelper {
  const char *name;
  bh_helper_fn fn;
  uint32_t flags;
  const bh_helper_proto *proto;  // checked mode; NULL for number-only helpers
};

// memfrob reads and writes r2 bytes at r1.
constexpr bh_helper_proto kMemfrobProto = {sizeof(bh_helper_proto),
                                           {BH_ARG_PTR_TO_UNINIT_MEM, BH_ARG_CONST_SIZE_OR_ZERO, 0, 0, 0},
                                           0,
                                           {"buf", "size", nullptr, nullptr, nullptr}};

constexpr NativeHelper kNativeHelpers[] = {
    {"add_one", HelperAddOne, BH_HELPER_ARGS_SCALAR, nullptr},
    // The kernel's bpf_loop, for programs that loop as strict mode requires (bench/vm).
    {"bpf_loop", bh_helper_loop, BH_HELPER_CALLS_BACK, nullptr},
    {"exit_with", HelperExitWith, BH_HELPER_MAY_EXIT | BH_HELPER_ARGS_SCALAR, nullptr},
    {"gather_bytes", HelperGatherBytes, BH_HELPER_ARGS_SCALAR, nullptr},
    {"memfrob", HelperMemfrob, 0, &kMemfrobProto},
    {"unwind", HelperUnwind, BH_HELPER_MAY_EXIT | BH_HELPER_ARGS_SCALAR, nullptr},
};

const NativeHelper *FindHelper(const std::string &name) {
  for (const auto &h : kNativeHelpers) {
    if (name == h.name) return &h;
  }
  return nullptr;
}

const char *FaultName(int code) {
  switch (code) {
    case BH_FAULT_OUT_OF_BOUNDS: return "out_of_bounds";
    case BH_FAULT_BUDGET: return "budget";
    case BH_FAULT_CALL_DEPTH: return "call_depth";
    case BH_FAULT_BAD_HELPER: return "bad_helper";
    case BH_FAULT_HELPER_ARG: return "helper_arg";
    default: return "unknown";
  }
}

// A view of a Buffer / Uint8Array argument, or nothing for undefined / null.
struct Bytes {
  uint8_t *data = nullptr;
  size_t len = 0;
};

Bytes BytesArg(const Napi::Value &v, const char *what) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto arr = v.As<Napi::Uint8Array>();
    return {arr.Data(), arr.ByteLength()};
  }
  throw MakeError(v.Env(), "BAD_ARGUMENT", std::string(what) + " must be a Buffer or Uint8Array");
}

// Marks JS objects that are Vm instances.
constexpr napi_type_tag kVmTag = {0x62706668766d3031ull, 0x5e0c7a1d93b24f68ull};

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Vm",
                       {
                           InstanceMethod<&Vm::RegisterHelper>("registerHelper"),
                           InstanceMethod<&Vm::SetChecked>("setChecked"),
                           InstanceMethod<&Vm::SetBudget>("setBudget"),
                           InstanceMethod<&Vm::Load>("load"),
                           InstanceMethod<&Vm::Exec>("exec"),
                           InstanceMethod<&Vm::Compile>("compile"),
                           InstanceMethod<&Vm::JitSize>("jitSize"),
                           InstanceMethod<&Vm::NativeAddresses>("nativeAddresses"),
                           InstanceMethod<&Vm::Close>("close"),
                       });
  }

  explicit Vm(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Vm>(info), vm_(bh_vm_create()) {
    if (vm_ == nullptr) throw MakeError(info.Env(), "VM_LOAD", "bh_vm_create failed (out of memory)");
    info.This().As<Napi::Object>().TypeTag(&kVmTag);
  }

  // The bh_vm once a program is loaded (and until close), else NULL.
  bh_vm *LoadedVm() const { return loaded_ ? vm_ : nullptr; }

  ~Vm() override { Destroy(); }

 private:
  void Destroy() {
    if (vm_ != nullptr) bh_vm_destroy(vm_);
    vm_ = nullptr;
  }

  // Throws unless the VM is open and, per `wantLoaded`, loaded or not yet.
  void Require(Napi::Env env, const char *method, bool wantLoaded) const {
    if (vm_ == nullptr) throw MakeError(env, "BAD_ARGUMENT", std::string("Vm.") + method + ": the VM is closed");
    if (wantLoaded && !loaded_) {
      throw MakeError(env, "BAD_ARGUMENT", std::string("Vm.") + method + ": load a program first");
    }
    if (!wantLoaded && loaded_) {
      throw MakeError(env, "BAD_ARGUMENT", std::string("Vm.") + method + ": must come before load");
    }
  }

  // registerHelper(id: number, name: string): one of kNativeHelpers by name.
  Napi::Value RegisterHelper(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Require(env, "registerHelper", false);
    if (!info[0].IsNumber() || !info[1].IsString()) {
      throw MakeError(env, "BAD_ARGUMENT", "Vm.registerHelper(id, name): expected a number and a string");
    }
    const int64_t id = info[0].As<Napi::Number>().Int64Value();
    const std::string name = info[1].As<Napi::String>().Utf8Value();
    const NativeHelper *h = FindHelper(name);
    if (h == nullptr) throw MakeError(env, "NOT_FOUND", "Vm.registerHelper: no native helper named '" + name + "'");
    if (id < 0 || id > UINT32_MAX ||
        bh_vm_register_helper(vm_, static_cast<uint32_t>(id), h->name, h->fn, h->flags) != 0 ||
        (h->proto != nullptr && bh_vm_set_helper_proto(vm_, static_cast<uint32_t>(id), h->proto) != 0)) {
      throw MakeError(env, "BAD_ARGUMENT", "Vm.registerHelper: helper id " + std::to_string(id) + " is out of range");
    }
    return env.Undefined();
  }

  Napi::Value SetChecked(const Napi::CallbackInfo &info) {
    Require(info.Env(), "setChecked", false);
    bh_vm_set_checked(vm_, info[0].ToBoolean().Value() ? 1 : 0);
    return info.Env().Undefined();
  }

  // setBudget(max: bigint | number): instructions per run, 0 = unlimited.
  Napi::Value SetBudget(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Require(env, "setBudget", false);
    uint64_t budget = 0;
    if (info[0].IsBigInt()) {
      bool lossless = true;
      budget = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw MakeError(env, "BAD_ARGUMENT", "Vm.setBudget: budget must fit in a u64");
    } else if (info[0].IsNumber() && info[0].As<Napi::Number>().DoubleValue() >= 0) {
      budget = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
    } else {
      throw MakeError(env, "BAD_ARGUMENT", "Vm.setBudget: budget must be a non-negative bigint or number");
    }
    bh_vm_set_budget(vm_, budget);
    return env.Undefined();
  }

  // load(code: Buffer | Uint8Array): copies and validates.
  Napi::Value Load(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Require(env, "load", false);
    if (info[0].IsUndefined() || info[0].IsNull()) throw MakeError(env, "BAD_ARGUMENT", "Vm.load: code is missing");
    Bytes code = BytesArg(info[0], "Vm.load: code");
    char err[256] = {0};
    if (bh_vm_load(vm_, code.data, code.len, err, sizeof err) != 0) {
      Napi::Object detail = Napi::Object::New(env);
      unsigned pc = 0;
      if (std::sscanf(err, "pc %u", &pc) == 1) detail.Set("pc", Napi::Number::New(env, pc));
      throw MakeError(env, "VM_LOAD", err[0] != 0 ? err : "bh_vm_load failed", detail);
    }
    loaded_ = true;
    return env.Undefined();
  }

  // exec(ctx: Uint8Array | null, opts?: { jit?: boolean }): bigint r0. The
  // program gets a pointer to ctx's own bytes, so its stores are visible.
  Napi::Value Exec(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Require(env, "exec", true);
    Bytes ctx = BytesArg(info[0], "Vm.exec: ctx");
    bool jit = false;
    if (info[1].IsObject()) jit = info[1].As<Napi::Object>().Get("jit").ToBoolean().Value();
    uint64_t r0 = 0;
    bh_fault fault{};
    const int rc =
        jit ? bh_vm_exec_jit(vm_, ctx.data, ctx.len, &r0, &fault) : bh_vm_exec(vm_, ctx.data, ctx.len, &r0, &fault);
    // A helper ending the program is a normal return, however it is reported.
    if (rc != 0 && fault.code != BH_FAULT_HELPER_EXIT) throw FaultError(env, fault, jit);
    return Napi::BigInt::New(env, r0);
  }

  static Napi::Error FaultError(Napi::Env env, const bh_fault &fault, bool jit) {
    Napi::Object detail = Napi::Object::New(env);
    detail.Set("pc", Napi::Number::New(env, fault.pc));
    detail.Set("fault", Napi::String::New(env, FaultName(fault.code)));
    if (fault.code == BH_FAULT_OUT_OF_BOUNDS || fault.code == BH_FAULT_HELPER_ARG) {
      detail.Set("address", Napi::BigInt::New(env, fault.addr));
    }
    std::string message = fault.message[0] != 0
                              ? std::string(fault.message, strnlen(fault.message, sizeof fault.message))
                              : "pc " + std::to_string(fault.pc) + ": " + FaultName(fault.code);
    return MakeError(env, "VM_FAULT", std::string(jit ? "jit: " : "interpreter: ") + message, detail);
  }

  // compile(): JIT-compiles once; returns the code size in bytes.
  Napi::Value Compile(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Require(env, "compile", true);
    char err[256] = {0};
    if (bh_vm_compile(vm_, err, sizeof err) == nullptr) {
      throw MakeError(env, "VM_COMPILE", err[0] != 0 ? err : "bh_vm_compile failed");
    }
    return Napi::Number::New(env, static_cast<double>(bh_vm_jit_size(vm_)));
  }

  Napi::Value JitSize(const Napi::CallbackInfo &info) {
    if (vm_ == nullptr) return Napi::Number::New(info.Env(), 0);
    return Napi::Number::New(info.Env(), static_cast<double>(bh_vm_jit_size(vm_)));
  }

  // nativeAddresses() -> { vm, exec, jit } as bigints, for the testing addon
  // only (core/native/testing: the VM benchmark's timing loops): the loaded
  // bh_vm* (0n if none), this addon's bh_vm_exec, and the JIT code once
  // compile() ran (else 0n). That addon links its own copies of the static
  // libraries, whose thread-locals (exit requests, JIT faults) are not the
  // ones this addon's helpers use; calling through these addresses keeps a
  // run inside this addon's copy. Valid until close().
  Napi::Value NativeAddresses(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_vm *vm = LoadedVm();
    // bh_vm_compile returns the cached code; it compiles nothing when
    // jitSize() is 0, because then it is not called.
    const bh_jit_fn jit = vm != nullptr && bh_vm_jit_size(vm) > 0 ? bh_vm_compile(vm, nullptr, 0) : nullptr;
    Napi::Object out = Napi::Object::New(env);
    out.Set("vm", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(vm))));
    out.Set("exec", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&bh_vm_exec))));
    out.Set("jit", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(jit))));
    return out;
  }

  // Frees the VM now instead of at garbage collection; later calls throw.
  Napi::Value Close(const Napi::CallbackInfo &info) {
    Destroy();
    return info.Env().Undefined();
  }

  bh_vm *vm_;
  bool loaded_ = false;
};

Napi::Value HelperNames(const Napi::CallbackInfo &info) {
  Napi::Array names = Napi::Array::New(info.Env());
  uint32_t i = 0;
  for (const auto &h : kNativeHelpers) names.Set(i++, Napi::String::New(info.Env(), h.name));
  return names;
}

}  // namespace

void InitVm(Napi::Env env, Napi::Object exports) {
  exports.Set("Vm", Vm::Define(env));
  exports.Set("vmHelperNames", Napi::Function::New(env, HelperNames));
}

}  // namespace bpfhook::addon
