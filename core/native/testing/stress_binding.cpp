// Map stress runs and the helper timing loop (core/native/maps/test/
// map_stress.h), for tests 22 and 23: native threads calling the map helpers
// as JIT code does. In the testing addon (testing.h), not the production one.
//
//   mapStress(address, {op, threads, iterations, keys?, paceNs?}) -> Promise<result>
//   mapBench(address, op, iterations, keys) -> ns per helper call, or -errno
//
// `address` is a map's bh_map* as the core addon reports it (mapInfo's
// `address`); test/support/testing-addon.ts takes a map handle and passes it.
#include <cerrno>
#include <cstring>
#include <string>

#include "bpfhook/maps.h"
#include "map_stress.h"
#include "testing.h"

namespace bpfhook::testing {

namespace {

Napi::Error BadArg(Napi::Env env, const std::string &msg) { return MakeError(env, "BAD_ARGUMENT", msg); }

// The map at argument 0. Trusted (test-only): the caller read it from an
// open handle of the core addon, which keeps it alive while JS runs.
bh_map *GetMap(const Napi::CallbackInfo &info, const char *fn) {
  auto *m = reinterpret_cast<bh_map *>(AddressValue(info[0]));
  if (m == nullptr) throw BadArg(info.Env(), std::string(fn) + ": argument 0 is not a map address (a bigint)");
  return m;
}

uint32_t GetU32(const Napi::CallbackInfo &info, size_t i, uint32_t def = 0) {
  Napi::Value v = info[i];
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : def;
}

Napi::Value Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }
Napi::Value Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

// Runs bh_maps_stress on a worker thread (it spawns its own threads) so the
// event loop stays free: a JS consumer can drain a ring meanwhile.
class StressWorker : public Napi::AsyncWorker {
 public:
  StressWorker(Napi::Env env, bh_map *m, const bh_maps_stress_opts &o)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), map_(m), opts_(o) {
    bh_map_ref(map_);  // a close() from JS meanwhile must not free the handle
  }
  ~StressWorker() override { bh_map_close(map_); }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override { err_ = bh_maps_stress(map_, &opts_, &res_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      Napi::Error e = MakeError(env, "MAP_ERROR", "mapStress: " + std::string(strerror(-err_)));
      e.Set("errno", Num(env, err_));
      deferred_.Reject(e.Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("ok", Num(env, double(res_.ok)));
    o.Set("failed", Num(env, double(res_.failed)));
    o.Set("misses", Num(env, double(res_.misses)));
    o.Set("consumed", Num(env, double(res_.consumed)));
    o.Set("drops", Num(env, double(res_.drops)));
    o.Set("discarded", Num(env, double(res_.discarded)));
    o.Set("orderErrors", Num(env, double(res_.order_errors)));
    o.Set("sum", Big(env, res_.sum));
    o.Set("elapsedNs", Num(env, double(res_.elapsed_ns)));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  bh_map *map_;
  bh_maps_stress_opts opts_;
  bh_maps_stress_result res_{};
  int err_ = 0;
};

uint32_t StressOp(Napi::Env env, const std::string &op) {
  if (op == "add") return BH_STRESS_ADD;
  if (op == "churn") return BH_STRESS_CHURN;
  if (op == "ringbuf") return BH_STRESS_RINGBUF;
  if (op == "perf") return BH_STRESS_PERF;
  if (op == "queue") return BH_STRESS_QUEUE;
  if (op == "insert") return BH_STRESS_INSERT;
  if (op == "produce") return BH_STRESS_PRODUCE;
  throw BadArg(env, "mapStress: unknown op '" + op + "' (add, churn, ringbuf, perf, queue, insert, produce)");
}

// mapStress(map, {op, threads, iterations, keys?, paceNs?}) -> Promise<result>
Napi::Value MapStress(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map *m = GetMap(info, "mapStress");
  if (!info[1].IsObject()) throw BadArg(env, "mapStress: options must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  if (!o.Get("op").IsString()) throw BadArg(env, "mapStress: op must be a string");
  auto num = [&](const char *k, double def) {
    Napi::Value v = o.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
  };
  bh_maps_stress_opts so{};
  so.sz = sizeof(so);
  so.op = StressOp(env, o.Get("op").As<Napi::String>().Utf8Value());
  so.threads = uint32_t(num("threads", 4));
  so.iterations = uint64_t(num("iterations", 10000));
  so.keys = uint32_t(num("keys", 0));
  so.pace_ns = uint32_t(num("paceNs", 0));
  if (so.threads == 0 || so.threads > 256) throw BadArg(env, "mapStress: threads must be 1..256");
  auto *w = new StressWorker(env, m, so);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// mapBench(map, op, iterations, keys) -> ns per helper call
Napi::Value MapBench(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bh_map *m = GetMap(info, "mapBench");
  if (!info[1].IsString()) throw BadArg(env, "mapBench: op must be a string");
  std::string op = info[1].As<Napi::String>().Utf8Value();
  uint32_t code = op == "lookup"        ? BH_BENCH_LOOKUP
                  : op == "update"      ? BH_BENCH_UPDATE
                  : op == "add"         ? BH_BENCH_ADD
                  : op == "lookup_miss" ? BH_BENCH_LOOKUP_MISS
                  : op == "ringbuf"     ? BH_BENCH_RINGBUF
                  : op == "perf"        ? BH_BENCH_PERF
                                        : 0;
  if (code == 0)
    throw BadArg(env, "mapBench: unknown op '" + op + "' (lookup, update, add, lookup_miss, ringbuf, perf)");
  double ns = 0;
  int err = bh_maps_bench(m, code, uint64_t(info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 1000000),
                          GetU32(info, 3, 1024), &ns);
  if (err != 0) return Num(env, err);
  return Num(env, ns);
}

}  // namespace

void InitStress(Napi::Env env, Napi::Object exports) {
  exports.Set("mapStress", Napi::Function::New(env, MapStress, "mapStress"));
  exports.Set("mapBench", Napi::Function::New(env, MapBench, "mapBench"));
}

}  // namespace bpfhook::testing
