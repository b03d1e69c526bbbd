// System calls made from native code, for the syscall-trace tests and
// bench:syscall: each goes through libc's own `syscall` sites (the ones the
// text transformer patches), and loops run here so that Node's overhead is
// not measured.
#include <fcntl.h>
#include <napi.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

uint64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no syscall
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// getppidLoop(iterations) -> ns per getppid() call.
Napi::Value GetppidLoop(const Napi::CallbackInfo &info) {
  const int64_t n = info[0].As<Napi::Number>().Int64Value();
  const uint64_t t0 = now_ns();
  for (int64_t i = 0; i < n; i++) {
    pid_t p = getppid();
    asm volatile("" : : "r"(p));
  }
  const uint64_t t1 = now_ns();
  return Napi::Number::New(info.Env(), n > 0 ? double(t1 - t0) / double(n) : 0.0);
}

// getppidThreads(threads, perThread) -> calls made (native threads, joined).
Napi::Value GetppidThreads(const Napi::CallbackInfo &info) {
  const int threads = info[0].As<Napi::Number>().Int32Value();
  const int per = info[1].As<Napi::Number>().Int32Value();
  std::atomic<int64_t> total{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&] {
      for (int i = 0; i < per; i++) {
        if (getppid() > 0) total.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto &t : ts) t.join();
  return Napi::Number::New(info.Env(), double(total.load()));
}

// libcGetpid() -> getpid() through libc (glibc does not cache it).
Napi::Value LibcGetpid(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), getpid()); }

// openClose(path) -> the fd open(2) returned (closed again) or -errno.
Napi::Value OpenClose(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int r = fd >= 0 ? fd : -errno;
  if (fd >= 0) close(fd);
  return Napi::Number::New(info.Env(), r);
}

// bufferAddress(buf) -> the address of its bytes (fabricated syscall args).
Napi::Value BufferAddress(const Napi::CallbackInfo &info) {
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(b.Data())));
}

// killSelf(sig) / tgkillSelf(sig): signals this process/thread (sigsnoop's
// calls); the signal is one the caller ignores or blocks (0 checks only).
Napi::Value KillSelf(const Napi::CallbackInfo &info) {
  int sig = info[0].As<Napi::Number>().Int32Value();
  int r = kill(getpid(), sig);
  return Napi::Number::New(info.Env(), r < 0 ? -errno : r);
}

}  // namespace

void InitSyscalls(Napi::Env env, Napi::Object exports) {
  exports.Set("getppidLoop", Napi::Function::New(env, GetppidLoop));
  exports.Set("getppidThreads", Napi::Function::New(env, GetppidThreads));
  exports.Set("libcGetpid", Napi::Function::New(env, LibcGetpid));
  exports.Set("openClose", Napi::Function::New(env, OpenClose));
  exports.Set("bufferAddress", Napi::Function::New(env, BufferAddress));
  exports.Set("killSelf", Napi::Function::New(env, KillSelf));
}
