// Module init of the testing addon (testing.h).
#include "testing.h"

namespace bpfhook::testing {

uint64_t AddressValue(const Napi::Value &v) {
  if (!v.IsBigInt()) return 0;
  bool lossless = true;
  const uint64_t addr = v.As<Napi::BigInt>().Uint64Value(&lossless);
  return lossless ? addr : 0;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  addon::InitErrorClass(env, exports);
  InitStress(env, exports);
  InitBench(env, exports);
  return exports;
}

}  // namespace bpfhook::testing

// NODE_API_MODULE pastes its second argument into an identifier, so it needs
// an unqualified name.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return bpfhook::testing::Init(env, exports); }

NODE_API_MODULE(bpfhook_testing, InitModule)
