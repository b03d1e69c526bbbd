// Node binding of the native runtime (core/native/runtime): NativeRuntime
// (plugins, links), NativeProgram (a loaded, compiled program) and
// NativeProgArray (a program array for bpf_tail_call).
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "bpfhook/helpers.h"
#include "bpfhook/maps.h"
#include "bpfhook/runtime.h"

namespace bpfhook::addon {

namespace {

std::string ErrnoName(int e) {
  switch (-e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case E2BIG: return "E2BIG";
    case EFAULT: return "EFAULT";
    case EPROTO: return "EPROTO";
    case ENOSYS: return "ENOSYS";
    case EBUSY: return "EBUSY";
    case EPERM: return "EPERM";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EXDEV: return "EXDEV";
    default: return "errno " + std::to_string(-e);
  }
}

Napi::Error ErrnoError(Napi::Env env, const char *code, int rc, const std::string &msg) {
  Napi::Error err = MakeError(env, code, msg + " (" + ErrnoName(rc) + ")");
  err.Set("errno", Napi::Number::New(env, rc));
  return err;
}

class NativeProgram : public Napi::ObjectWrap<NativeProgram> {
 public:
  static void Define(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(
        env, "NativeProgram",
        {InstanceMethod<&NativeProgram::Run>("run"), InstanceMethod<&NativeProgram::Release>("release"),
         InstanceAccessor<&NativeProgram::JitSize>("jitSize"), InstanceAccessor<&NativeProgram::Faults>("faults")});
    ClassRef(env, "NativeProgram") = Napi::Persistent(fn);
    exports.Set("NativeProgram", fn);
  }

  explicit NativeProgram(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeProgram>(info) {}
  ~NativeProgram() override { bh_program_release(prog_); }

  bh_program *prog_ = nullptr;

 private:
  bh_program *Get(Napi::Env env) {
    if (prog_ == nullptr) {
      MakeError(env, "BAD_ARGUMENT", "program was released").ThrowAsJavaScriptException();
    }
    return prog_;
  }

  // run(ctx: Buffer) -> bigint r0; throws VM_FAULT.
  Napi::Value Run(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_program *prog = Get(env);
    if (prog == nullptr) return env.Undefined();
    void *ctx = nullptr;
    size_t len = 0;
    if (info.Length() > 0 && info[0].IsBuffer()) {
      auto buf = info[0].As<Napi::Buffer<uint8_t>>();
      ctx = buf.Data();
      len = buf.Length();
    }
    uint64_t r0 = 0;
    bh_fault fault{};
    if (bh_program_run_fault(prog, ctx, len, &r0, &fault) < 0) {
      Napi::Error err = MakeError(env, "VM_FAULT", fault.message);
      err.Set("pc", Napi::Number::New(env, fault.pc));
      err.Set("fault", Napi::Number::New(env, fault.code));
      err.Set("address", Napi::BigInt::New(env, fault.addr));
      err.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::BigInt::New(env, r0);
  }

  Napi::Value Release(const Napi::CallbackInfo &info) {
    bh_program_release(prog_);
    prog_ = nullptr;
    return info.Env().Undefined();
  }

  // faults -> { count, last }: runs that faulted while attached or run.
  Napi::Value Faults(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    char last[256] = {0};
    uint64_t n = prog_ != nullptr ? bh_program_faults(prog_, last, sizeof last) : 0;
    out.Set("count", Napi::Number::New(env, static_cast<double>(n)));
    if (last[0] != '\0') out.Set("last", Napi::String::New(env, last));
    return out;
  }

  Napi::Value JitSize(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), prog_ ? static_cast<double>(bh_vm_jit_size(bh_program_vm(prog_))) : 0);
  }
};

class NativeRuntime;

// A program array owned by a native runtime (bh_runtime_prog_array_create).
// It keeps its runtime's JS object alive and refuses calls once that runtime
// is closed (the array died with it). Data calls return 0 or -errno; TS
// builds the error with the map's name.
class NativeProgArray : public Napi::ObjectWrap<NativeProgArray> {
 public:
  static void Define(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(
        env, "NativeProgArray",
        {InstanceMethod<&NativeProgArray::Update>("update"), InstanceMethod<&NativeProgArray::Delete>("delete"),
         InstanceMethod<&NativeProgArray::Lookup>("lookup"),
         InstanceAccessor<&NativeProgArray::MaxEntries>("maxEntries")});
    ClassRef(env, "NativeProgArray") = Napi::Persistent(fn);
    exports.Set("NativeProgArray", fn);
  }

  explicit NativeProgArray(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeProgArray>(info) {}

  // The NativeProgArray behind `value`, or NULL if it is not one.
  static NativeProgArray *From(Napi::Value value) {
    if (!value.IsObject()) return nullptr;
    Napi::FunctionReference &ctor = ClassRef(value.Env(), "NativeProgArray");
    Napi::Object o = value.As<Napi::Object>();
    if (ctor.IsEmpty() || !o.InstanceOf(ctor.Value())) return nullptr;
    return Unwrap(o);
  }

  bh_runtime *Runtime() const;  // NULL once the owner is closed

  bh_prog_array *arr_ = nullptr;
  uint32_t max_entries_ = 0;
  NativeRuntime *owner_ = nullptr;
  Napi::ObjectReference owner_ref_;

 private:
  bh_runtime *Live(Napi::Env env) {
    bh_runtime *rt = Runtime();
    if (rt == nullptr)
      MakeError(env, "BAD_ARGUMENT", "program array: its runtime is closed").ThrowAsJavaScriptException();
    return rt;
  }

  // update(index, program) -> 0 | -errno
  Napi::Value Update(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_runtime *rt = Live(env);
    if (rt == nullptr) return env.Undefined();
    if (!info[1].IsObject() || !info[1].As<Napi::Object>().InstanceOf(ClassRef(info.Env(), "NativeProgram").Value())) {
      MakeError(env, "BAD_ARGUMENT", "program array: update needs a program").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    bh_program *prog = NativeProgram::Unwrap(info[1].As<Napi::Object>())->prog_;
    if (prog == nullptr) {
      MakeError(env, "BAD_ARGUMENT", "program was released").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env,
                             bh_runtime_prog_array_update(rt, arr_, info[0].As<Napi::Number>().Uint32Value(), prog));
  }

  // delete(index) -> 0 | -errno
  Napi::Value Delete(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_runtime *rt = Live(env);
    if (rt == nullptr) return env.Undefined();
    return Napi::Number::New(env, bh_runtime_prog_array_delete(rt, arr_, info[0].As<Napi::Number>().Uint32Value()));
  }

  // lookup(index) -> the slot's program name | null
  Napi::Value Lookup(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_runtime *rt = Live(env);
    if (rt == nullptr) return env.Undefined();
    bh_program *prog = bh_runtime_prog_array_lookup(rt, arr_, info[0].As<Napi::Number>().Uint32Value());
    if (prog == nullptr) return env.Null();
    return Napi::String::New(env, bh_program_name(prog));
  }

  Napi::Value MaxEntries(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), max_entries_); }
};

class NativeRuntime : public Napi::ObjectWrap<NativeRuntime> {
 public:
  static void Define(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(
        env, "NativeRuntime",
        {InstanceMethod<&NativeRuntime::OpenPlugin>("openPlugin"),
         InstanceMethod<&NativeRuntime::LoadProgram>("loadProgram"),
         InstanceMethod<&NativeRuntime::CreateProgArray>("createProgArray"),
         InstanceMethod<&NativeRuntime::Attach>("attach"), InstanceMethod<&NativeRuntime::Detach>("detach"),
         InstanceMethod<&NativeRuntime::CallPlugin>("callPlugin"),
         InstanceMethod<&NativeRuntime::LinkCount>("linkCount"), InstanceMethod<&NativeRuntime::Close>("close")});
    exports.Set("NativeRuntime", fn);
  }

  explicit NativeRuntime(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeRuntime>(info) {
    bh_runtime_opts opts{};
    opts.sz = sizeof opts;
    opts.register_defaults = RegisterStandardHelpers;
    opts.probe = bh_helpers_probe_api();
    opts.maps = bh_runtime_host_maps();
    rt_ = bh_runtime_create(&opts);
  }
  ~NativeRuntime() override { bh_runtime_destroy(rt_); }

  bh_runtime *rt() const { return rt_; }

 private:
  bh_runtime *rt_ = nullptr;

  bool Alive(Napi::Env env) {
    if (rt_ != nullptr) return true;
    MakeError(env, "BAD_ARGUMENT", "runtime is closed").ThrowAsJavaScriptException();
    return false;
  }

  // openPlugin(path, name, global) -> index
  Napi::Value OpenPlugin(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    std::string path = info[0].As<Napi::String>();
    std::string name = info[1].As<Napi::String>();
    const unsigned flags = info.Length() > 2 && info[2].ToBoolean().Value() ? BH_RUNTIME_PLUGIN_GLOBAL : 0u;
    char err[512] = {0};
    int rc = bh_runtime_open_plugin(rt_, path.c_str(), name.c_str(), flags, err, sizeof err);
    if (rc < 0) {
      ErrnoError(env, rc == -EPROTO ? "ABI_MISMATCH" : "PLUGIN_INVALID", rc, std::string("[") + name + "] " + err)
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, rc);
  }

  // loadProgram({name, insns, checked, budget, interpreter, maps, region}) -> NativeProgram
  Napi::Value LoadProgram(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    Napi::Object o = info[0].As<Napi::Object>();
    std::string name = o.Get("name").As<Napi::String>();
    auto insns = o.Get("insns").As<Napi::Uint8Array>();
    std::vector<void *> maps;
    if (o.Has("maps") && o.Get("maps").IsArray()) {
      Napi::Array arr = o.Get("maps").As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        void *m = UnwrapMap(v);
        if (m == nullptr) {
          // A program array: the runtime's own only (it checks ownership of
          // the arrays it resolves, not of foreign pointers).
          NativeProgArray *pa = NativeProgArray::From(v);
          if (pa != nullptr && pa->Runtime() == rt_) m = pa->arr_;
        }
        if (m == nullptr) {
          MakeError(
              env, "BAD_ARGUMENT",
              "prog '" + name + "': maps[" + std::to_string(i) + "] is not a map or a program array of this runtime")
              .ThrowAsJavaScriptException();
          return env.Undefined();
        }
        maps.push_back(m);
      }
    }
    bh_program_opts po{};
    po.sz = sizeof po;
    po.name = name.c_str();
    po.insns = insns.Data();
    po.insns_len = insns.ByteLength();
    po.checked = o.Get("checked").ToBoolean() ? 1 : 0;
    po.interpreter = o.Get("interpreter").ToBoolean() ? 1 : 0;
    Napi::Value budget = o.Get("budget");
    po.budget = budget.IsNumber() ? static_cast<uint64_t>(budget.As<Napi::Number>().Int64Value()) : 0;
    po.maps = maps.data();
    po.nmaps = maps.size();
    po.map_value_addr = bh_map_lddw_value_addr;
    po.map_desc = bh_map_vm_desc;
    // The region that holds the maps (the runtime's own), else the default.
    if (!o.Has("region") || !RegionBounds(o.Get("region"), &po.region_base, &po.region_len)) {
      SharedRegionBounds(&po.region_base, &po.region_len);
    }
    char err[512] = {0};
    bh_program *prog = bh_runtime_load_program(rt_, &po, err, sizeof err);
    if (prog == nullptr) {
      MakeError(env, "VM_LOAD", err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object obj = ClassRef(info.Env(), "NativeProgram").New({});
    NativeProgram::Unwrap(obj)->prog_ = prog;
    return obj;
  }

  // createProgArray(maxEntries) -> NativeProgArray
  Napi::Value CreateProgArray(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    uint32_t max_entries = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    char err[256] = {0};
    bh_prog_array *arr = bh_runtime_prog_array_create(rt_, max_entries, err, sizeof err);
    if (arr == nullptr) {
      MakeError(env, "MAP_ERROR", err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object obj = ClassRef(info.Env(), "NativeProgArray").New({});
    NativeProgArray *pa = NativeProgArray::Unwrap(obj);
    pa->arr_ = arr;
    pa->max_entries_ = max_entries;
    pa->owner_ = this;
    pa->owner_ref_ = Napi::Persistent(Value());
    return obj;
  }

  // attach(plugin, program, type, privateData, cookie) -> link id
  Napi::Value Attach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    int plugin = info[0].As<Napi::Number>().Int32Value();
    NativeProgram *prog = NativeProgram::Unwrap(info[1].As<Napi::Object>());
    if (prog->prog_ == nullptr) {
      MakeError(env, "BAD_ARGUMENT", "program was released").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto priv = info[3].As<Napi::Uint8Array>();
    bool lossless = true;
    bh_runtime_attach_opts ao{};
    ao.sz = sizeof ao;
    ao.attach_type = info[2].As<Napi::Number>().Uint32Value();
    ao.private_data = priv.Data();
    ao.private_data_len = priv.ByteLength();
    ao.cookie = info.Length() > 4 && info[4].IsBigInt() ? info[4].As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    char err[1024] = {0};
    int rc = bh_runtime_attach(rt_, plugin, prog->prog_, &ao, err, sizeof err);
    if (rc < 0) {
      ErrnoError(env, "ATTACH_FAILED", rc, err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, rc);
  }

  Napi::Value Detach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    return Napi::Number::New(env, bh_runtime_detach(rt_, info[0].As<Napi::Number>().Int32Value()));
  }

  // callPlugin(plugin, name, input, outSize) -> {rc, out}
  Napi::Value CallPlugin(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    int plugin = info[0].As<Napi::Number>().Int32Value();
    std::string name = info[1].As<Napi::String>();
    auto input = info[2].As<Napi::Uint8Array>();
    size_t out_size = info[3].As<Napi::Number>().Uint32Value();
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, out_size);
    memset(out.Data(), 0, out_size);
    int64_t rc =
        bh_runtime_plugin_call(rt_, plugin, name.c_str(), input.Data(), input.ByteLength(), out.Data(), out_size);
    Napi::Object result = Napi::Object::New(env);
    result.Set("rc", Napi::Number::New(env, static_cast<double>(rc)));
    result.Set("out", out);
    // Why a program run by the call faulted (budget, bounds, helper argument).
    char fault[256] = "";
    if (rc < 0 && bh_runtime_thread_fault(fault, sizeof fault) > 0) result.Set("fault", fault);
    return result;
  }

  Napi::Value LinkCount(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), rt_ ? static_cast<double>(bh_runtime_link_count(rt_)) : 0);
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    bh_runtime_destroy(rt_);
    rt_ = nullptr;
    return info.Env().Undefined();
  }
};

bh_runtime *NativeProgArray::Runtime() const { return owner_ != nullptr ? owner_->rt() : nullptr; }

}  // namespace

void InitRuntime(Napi::Env env, Napi::Object exports) {
  NativeProgram::Define(env, exports);
  NativeProgArray::Define(env, exports);
  NativeRuntime::Define(env, exports);
}

}  // namespace bpfhook::addon
