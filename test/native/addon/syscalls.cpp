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
#include <cstddef>
#include <cstdint>
#include <cstring>
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

// getppidKeepsVectors() -> bytes of xmm0-15 (and, with AVX-512, of the
// upper halves of zmm0-15, zmm16-31 and k1-7) that a libc getppid() changed:
// the kernel preserves all of it, so a traced call must too. The registers
// are loaded, the call made and the registers stored in one asm block, so
// no compiled code runs in between.
struct alignas(64) VecFile {
  uint8_t x[16][16];   // xmm0-15
  uint8_t hi[16][32];  // zmm0-15 bits 256-511
  uint8_t z[16][64];   // zmm16-31
  uint64_t k[8];       // k0-7
};

__attribute__((noinline)) void call_with_vectors(const VecFile *in, VecFile *out, pid_t (*fn)(), bool avx512) {
#define X(n) "movdqu " #n "*16(%[i]), %%xmm" #n "\n"
#define XS(n) "movdqu %%xmm" #n ", " #n "*16(%[o])\n"
#define HI(n) "vinserti64x4 $1, 256+" #n "*32(%[i]), %%zmm" #n ", %%zmm" #n "\n"
#define HIS(n) "vextracti64x4 $1, %%zmm" #n ", 256+" #n "*32(%[o])\n"
#define Z(n) "vmovdqu64 768+(" #n "-16)*64(%[i]), %%zmm" #n "\n"
#define ZS(n) "vmovdqu64 %%zmm" #n ", 768+(" #n "-16)*64(%[o])\n"
#define K(n) "kmovq 1792+" #n "*8(%[i]), %%k" #n "\n"
#define KS(n) "kmovq %%k" #n ", 1792+" #n "*8(%[o])\n"
  if (avx512) {
    asm volatile(X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)  //
                 HI(0) HI(1) HI(2) HI(3) HI(4) HI(5) HI(6) HI(7) HI(8) HI(9) HI(10) HI(11) HI(12) HI(13) HI(14)
                     HI(15)                                                                                       //
                 Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27) Z(28) Z(29) Z(30) Z(31)  //
                 K(1) K(2) K(3) K(4) K(5) K(6) K(7)                                                               //
                 "mov %%rsp, %%r12\n sub $128, %%rsp\n and $-16, %%rsp\n"
                 "push %[o]\n push %[o]\n call *%[fn]\n pop %[o]\n pop %[o]\n mov %%r12, %%rsp\n"  //
                 XS(0) XS(1) XS(2) XS(3) XS(4) XS(5) XS(6) XS(7) XS(8) XS(9) XS(10) XS(11) XS(12) XS(13) XS(14) XS(15)
                     HIS(0) HIS(1) HIS(2) HIS(3) HIS(4) HIS(5) HIS(6) HIS(7) HIS(8) HIS(9) HIS(10) HIS(11) HIS(12)
                         HIS(13) HIS(14) HIS(15)  //
                 ZS(16) ZS(17) ZS(18) ZS(19) ZS(20) ZS(21) ZS(22) ZS(23) ZS(24) ZS(25) ZS(26) ZS(27) ZS(28) ZS(29)
                     ZS(30) ZS(31)  //
                 KS(1) KS(2) KS(3) KS(4) KS(5) KS(6) KS(7)
                 : [o] "+r"(out)
                 : [i] "r"(in), [fn] "r"(fn)
                 : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "memory", "cc");
  } else {
    asm volatile(X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)  //
                 "mov %%rsp, %%r12\n sub $128, %%rsp\n and $-16, %%rsp\n"
                 "push %[o]\n push %[o]\n call *%[fn]\n pop %[o]\n pop %[o]\n mov %%r12, %%rsp\n"  //
                 XS(0) XS(1) XS(2) XS(3) XS(4) XS(5) XS(6) XS(7) XS(8) XS(9) XS(10) XS(11) XS(12) XS(13) XS(14) XS(15)
                 : [o] "+r"(out)
                 : [i] "r"(in), [fn] "r"(fn)
                 : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "memory", "cc");
  }
#undef X
#undef XS
#undef HI
#undef HIS
#undef Z
#undef ZS
#undef K
#undef KS
}

Napi::Value GetppidKeepsVectors(const Napi::CallbackInfo &info) {
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  static VecFile in, out;
  auto *b = reinterpret_cast<uint8_t *>(&in);
  for (size_t i = 0; i < sizeof in; i++) b[i] = uint8_t(i * 13 + 7);
  in.k[0] = 0;  // k0 is not loaded
  memset(&out, 0, sizeof out);
  pid_t (*volatile fn)() = getppid;
  call_with_vectors(&in, &out, fn, avx512);
  const size_t n = avx512 ? sizeof in : sizeof in.x;
  const auto *a = reinterpret_cast<const uint8_t *>(&in), *c = reinterpret_cast<const uint8_t *>(&out);
  size_t changed = 0;
  for (size_t i = 0; i < n; i++)
    changed += a[i] != c[i] && !(i >= offsetof(VecFile, k) && i < offsetof(VecFile, k) + 8);
  return Napi::Number::New(info.Env(), double(changed));
}

void InitSyscalls(Napi::Env env, Napi::Object exports) {
  exports.Set("getppidKeepsVectors", Napi::Function::New(env, GetppidKeepsVectors));
  exports.Set("getppidLoop", Napi::Function::New(env, GetppidLoop));
  exports.Set("getppidThreads", Napi::Function::New(env, GetppidThreads));
  exports.Set("libcGetpid", Napi::Function::New(env, LibcGetpid));
  exports.Set("openClose", Napi::Function::New(env, OpenClose));
  exports.Set("bufferAddress", Napi::Function::New(env, BufferAddress));
  exports.Set("killSelf", Napi::Function::New(env, KillSelf));
}
