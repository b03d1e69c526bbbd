#include <napi.h>

void InitSimpleSource(Napi::Env env, Napi::Object exports);
void InitTargets(Napi::Env env, Napi::Object exports);
void InitSyscalls(Napi::Env env, Napi::Object exports);
void InitDlcall(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitSimpleSource(env, exports);
  InitTargets(env, exports);
  InitSyscalls(env, exports);
  InitDlcall(env, exports);
  return exports;
}

NODE_API_MODULE(testaddon, Init)
