// Node binding of the agent area (core/native/agent, agent_area.h): the
// controller's side of agent mode. NativeAgentArea writes the plan (plugins,
// programs, prog arrays, attachments), publishes it and reads back what the
// agents did. Errors are BpfhookError AGENT_ERROR, REGION_FULL (region out
// of space, -ENOMEM) or BAD_ARGUMENT.
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "bpfhook/agent_area.h"
#include "bpfhook/agent_area.hpp"
#include "bpfhook/maps.h"
#include "bpfhook/region.h"
#include "bpfhook/shm_sync.hpp"

namespace bpfhook::addon {

namespace {

namespace shm = bpfhook::shm;

Napi::Error AgentError(Napi::Env env, int rc, const std::string &msg) {
  Napi::Error err = MakeError(env, rc == -ENOMEM ? "REGION_FULL" : "AGENT_ERROR", msg);
  err.Set("errno", Napi::Number::New(env, rc));
  return err;
}

uint32_t U32(const Napi::Value &v, const char *what) {
  if (!v.IsNumber()) throw MakeError(v.Env(), "BAD_ARGUMENT", std::string("agent area: ") + what + " must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

class NativeAgentArea : public Napi::ObjectWrap<NativeAgentArea> {
 public:
  static void Define(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(
        env, "NativeAgentArea",
        {StaticMethod<&NativeAgentArea::Create>("create"), StaticMethod<&NativeAgentArea::Open>("open"),
         InstanceMethod<&NativeAgentArea::AddPlugin>("addPlugin"),
         InstanceMethod<&NativeAgentArea::AddProgram>("addProgram"),
         InstanceMethod<&NativeAgentArea::AddProgArray>("addProgArray"),
         InstanceMethod<&NativeAgentArea::SetProgArraySlot>("setProgArraySlot"),
         InstanceMethod<&NativeAgentArea::AddAttach>("addAttach"),
         InstanceMethod<&NativeAgentArea::RemoveAttach>("removeAttach"),
         InstanceMethod<&NativeAgentArea::SetRings>("setRings"), InstanceMethod<&NativeAgentArea::Publish>("publish"),
         InstanceMethod<&NativeAgentArea::Heartbeat>("heartbeat"), InstanceMethod<&NativeAgentArea::Info>("info"),
         InstanceMethod<&NativeAgentArea::AttachResult>("attachResult"),
         InstanceMethod<&NativeAgentArea::Processes>("processes")});
    ClassRef(env, "NativeAgentArea") = Napi::Persistent(fn);
    exports.Set("NativeAgentArea", fn);
  }

  explicit NativeAgentArea(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeAgentArea>(info) {}
  ~NativeAgentArea() override {
    if (region_ != nullptr) bh_region_unref(region_);
  }

 private:
  bh_region *region_ = nullptr;
  bpfhook::agent::AreaView view_;  // validated geometry, for the readers

  static bh_region *RegionArg(const Napi::CallbackInfo &info, const char *fn) {
    bh_region *r = UnwrapRegion(info[0]);
    if (r == nullptr)
      throw MakeError(info.Env(), "BAD_ARGUMENT", std::string("NativeAgentArea.") + fn + ": not an open region");
    return r;
  }

  static Napi::Value Wrap(Napi::Env env, bh_region *r) {
    Napi::Object obj = ClassRef(env, "NativeAgentArea").New({});
    NativeAgentArea *a = Unwrap(obj);
    std::string err;
    int rc = a->view_.init(r, err);
    if (rc != 0) throw AgentError(env, rc, err);
    bh_region_ref(r);  // the area lives in the mapping: keep it while this object does
    a->region_ = r;
    return obj;
  }

  // create(region, {capPlugins, capProgs, capProgArrays, capAttach, capProcs, keepOnExit, startWaitMs})
  static Napi::Value Create(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_region *r = RegionArg(info, "create");
    bh_agent_area_opts o{};
    o.sz = sizeof o;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Object opts = info[1].As<Napi::Object>();
      auto num = [&](const char *k) -> uint32_t {
        Napi::Value v = opts.Get(k);
        return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
      };
      o.cap_plugins = num("capPlugins");
      o.cap_progs = num("capProgs");
      o.cap_prog_arrays = num("capProgArrays");
      o.cap_attach = num("capAttach");
      o.cap_procs = num("capProcs");
      o.start_wait_ms = num("startWaitMs");
      if (opts.Get("keepOnExit").ToBoolean().Value()) o.flags |= BH_AGENT_F_KEEP_ON_EXIT;
    }
    char err[512] = {0};
    int rc = bh_agent_area_create(r, &o, err, sizeof err);
    if (rc != 0) throw AgentError(env, rc, err);
    return Wrap(env, r);
  }

  static Napi::Value Open(const Napi::CallbackInfo &info) { return Wrap(info.Env(), RegionArg(info, "open")); }

  bh_region *Live(Napi::Env env) {
    if (region_ == nullptr) throw MakeError(env, "BAD_ARGUMENT", "agent area: not open");
    return region_;
  }

  Napi::Value AddPlugin(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_region *r = Live(env);
    std::string name = info[0].ToString(), path = info[1].ToString();
    char err[512] = {0};
    int rc = bh_agent_area_add_plugin(r, name.c_str(), path.c_str(),
                                      info[2].ToBoolean().Value() ? BH_AGENT_PLUGIN_GLOBAL : 0u, err, sizeof err);
    if (rc < 0) throw AgentError(env, rc, err);
    return Napi::Number::New(env, rc);
  }

  // addProgram(name, insns, maps: (map handle | {progArray: n})[], {checked, interpreter, budget})
  Napi::Value AddProgram(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_region *r = Live(env);
    std::string name = info[0].ToString();
    if (!info[1].IsTypedArray()) throw MakeError(env, "BAD_ARGUMENT", "prog '" + name + "': insns must be bytes");
    auto insns = info[1].As<Napi::Uint8Array>();
    std::vector<bh_agent_map_ref> refs;
    if (info[2].IsArray()) {
      Napi::Array arr = info[2].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        bh_agent_map_ref ref{};
        auto *m = static_cast<bh_map *>(UnwrapMap(v));
        if (m != nullptr) {
          const bh_map_info *mi = bh_map_get_info(m);
          // The map must live in this area's region: the agent opens it by index there.
          size_t len = 0;
          const uint8_t *st = static_cast<const uint8_t *>(bh_map_storage(m, &len));
          const uint8_t *base = static_cast<const uint8_t *>(bh_region_base(r));
          if (st < base || st >= base + bh_region_size(r))
            throw MakeError(env, "BAD_ARGUMENT",
                            "prog '" + name + "': maps[" + std::to_string(i) + "] ('" + mi->name +
                                "') is not in the agent area's region");
          ref.kind = BH_AGENT_MAP_REGION;
          ref.index = mi->index;
          ref.gen = mi->gen;
        } else if (v.IsObject() && v.As<Napi::Object>().Get("progArray").IsNumber()) {
          ref.kind = BH_AGENT_MAP_PROG_ARRAY;
          ref.index = v.As<Napi::Object>().Get("progArray").As<Napi::Number>().Uint32Value();
        } else {
          throw MakeError(env, "BAD_ARGUMENT",
                          "prog '" + name + "': maps[" + std::to_string(i) + "] is not a map or {progArray}");
        }
        refs.push_back(ref);
      }
    }
    uint32_t flags = 0;
    uint64_t budget = 0;
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object o = info[3].As<Napi::Object>();
      if (o.Get("checked").ToBoolean().Value()) flags |= BH_AGENT_PROG_CHECKED;
      if (o.Get("interpreter").ToBoolean().Value()) flags |= BH_AGENT_PROG_INTERPRETER;
      Napi::Value b = o.Get("budget");
      if (b.IsNumber()) budget = uint64_t(b.As<Napi::Number>().Int64Value());
    }
    char err[512] = {0};
    int rc = bh_agent_area_add_prog(r, name.c_str(), insns.Data(), insns.ByteLength(), refs.data(),
                                    uint32_t(refs.size()), flags, budget, err, sizeof err);
    if (rc < 0) throw AgentError(env, rc, err);
    return Napi::Number::New(env, rc);
  }

  Napi::Value AddProgArray(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    char err[256] = {0};
    int rc = bh_agent_area_add_prog_array(Live(env), U32(info[0], "maxEntries"), err, sizeof err);
    if (rc < 0) throw AgentError(env, rc, err);
    return Napi::Number::New(env, rc);
  }

  Napi::Value SetProgArraySlot(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t array = U32(info[0], "array"), slot = U32(info[1], "slot");
    if (!info[2].IsNumber()) throw MakeError(env, "BAD_ARGUMENT", "agent area: prog must be a number");
    int32_t prog = info[2].As<Napi::Number>().Int32Value();
    int rc = bh_agent_area_set_prog_array_slot(Live(env), array, slot, prog);
    if (rc < 0)
      throw AgentError(env, rc,
                       "agent area: prog array " + std::to_string(array) + " slot " + std::to_string(slot) +
                           " <- program " + std::to_string(prog) + ": " + strerror(-rc));
    return env.Undefined();
  }

  // addAttach(plugin, prog, type, data, cookie)
  Napi::Value AddAttach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_region *r = Live(env);
    uint32_t plugin = U32(info[0], "plugin"), prog = U32(info[1], "prog"), type = U32(info[2], "type");
    if (!info[3].IsTypedArray()) throw MakeError(env, "BAD_ARGUMENT", "agent area: attach data must be bytes");
    auto data = info[3].As<Napi::Uint8Array>();
    bool lossless = true;
    uint64_t cookie = info[4].IsBigInt() ? info[4].As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    char err[512] = {0};
    int rc = bh_agent_area_add_attach(r, plugin, prog, type, data.Data(), data.ByteLength(), cookie, err, sizeof err);
    if (rc < 0) throw AgentError(env, rc, err);
    return Napi::Number::New(env, rc);
  }

  Napi::Value RemoveAttach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    return Napi::Boolean::New(env, bh_agent_area_remove_attach(Live(env), U32(info[0], "index")) == 0);
  }

  // setRings(printk map | null, log map | null)
  Napi::Value SetRings(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bh_region *r = Live(env);
    uint32_t idx[2] = {~0u, ~0u}, gen[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
      if (info[k].IsNull() || info[k].IsUndefined()) continue;
      auto *m = static_cast<bh_map *>(UnwrapMap(info[k]));
      if (m == nullptr || bh_map_get_info(m)->type != BH_MAP_TYPE_RINGBUF)
        throw MakeError(env, "BAD_ARGUMENT",
                        std::string("agent area: setRings: the ") + (k ? "log" : "printk") +
                            " ring must be a ring buffer map or null");
      idx[k] = bh_map_get_info(m)->index;
      gen[k] = bh_map_get_info(m)->gen;
    }
    bh_agent_area_set_rings(r, idx[0], gen[0], idx[1], gen[1]);
    return env.Undefined();
  }

  Napi::Value Publish(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), bh_agent_area_publish(Live(info.Env())));
  }

  Napi::Value Heartbeat(const Napi::CallbackInfo &info) {
    bh_agent_area_heartbeat(Live(info.Env()));
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Live(env);
    const bh_agent_area *a = view_.area();
    Napi::Object o = Napi::Object::New(env);
    o.Set("planSeq", shm::load_acquire(&a->plan_seq));
    o.Set("agentEvent", shm::load_acquire(&a->agent_event));
    o.Set("controllerPid", a->controller_pid);
    o.Set("controllerStart", Napi::BigInt::New(env, a->controller_start));
    o.Set("flags", a->flags);
    o.Set("nAttach", view_.n_attach());
    o.Set("nProgs", view_.n_progs());
    o.Set("nPlugins", view_.n_plugins());
    return o;
  }

  Napi::Value AttachResult(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Live(env);
    uint32_t i = U32(info[0], "index");
    if (i >= view_.n_attach()) throw MakeError(env, "BAD_ARGUMENT", "agent area: no attachment " + std::to_string(i));
    const bh_agent_attach_rec *rec = view_.attach_rec(i);
    Napi::Object o = Napi::Object::New(env);
    o.Set("state", shm::load_acquire(&rec->state));
    o.Set("result", shm::load_acquire(&rec->result));
    o.Set("error", rec->error);
    o.Set("pid", rec->result_pid);
    std::string msg;
    bpfhook::agent::field_string(rec->message, sizeof rec->message, msg);
    o.Set("message", msg);
    return o;
  }

  Napi::Value Processes(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Live(env);
    Napi::Array out = Napi::Array::New(env);
    uint32_t k = 0;
    for (uint32_t i = 0; i < view_.cap_procs(); i++) {
      const bh_agent_proc_rec *p = view_.proc_rec(i);
      uint32_t pid = shm::load_acquire(&p->pid);
      if (pid == 0) continue;
      Napi::Object o = Napi::Object::New(env);
      o.Set("pid", pid);
      o.Set("state", shm::load_acquire(&p->state));
      o.Set("startTime", Napi::BigInt::New(env, p->start_time));
      o.Set("appliedSeq", shm::load_acquire(&p->applied_seq));
      o.Set("attached", p->attached);
      o.Set("failed", p->failed);
      o.Set("parent", p->parent);
      o.Set("heartbeatNs", Napi::BigInt::New(env, p->heartbeat_ns));
      std::string comm;
      if (!bpfhook::agent::field_string(p->comm, sizeof p->comm, comm)) comm.assign(p->comm, sizeof p->comm);
      o.Set("comm", comm);
      out.Set(k++, o);
    }
    return out;
  }
};

}  // namespace

void InitAgent(Napi::Env env, Napi::Object exports) { NativeAgentArea::Define(env, exports); }

}  // namespace bpfhook::addon
