#include "addon.h"

namespace bpfhook::addon {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitErrorClass(env, exports);
  InitVm(env, exports);
  InitMaps(env, exports);
  InitRuntime(env, exports);
  InitInject(env, exports);
  InitAgent(env, exports);
  return exports;
}

}  // namespace bpfhook::addon

// NODE_API_MODULE pastes its second argument into an identifier, so it needs
// an unqualified name.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return bpfhook::addon::Init(env, exports); }

NODE_API_MODULE(bpfhook_core, InitModule)
