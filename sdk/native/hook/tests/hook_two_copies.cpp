// Two copies of the engine in one process (two plugins, each with bh_hook
// linked in statically): both install their pause handler on SIGRTMAX-3.
// The second's handler must pass the first's signals on (chain), else the
// first copy's pauses never see the other threads arrive and its attaches
// time out with -EAGAIN.  Prints "N passed, N failed" like hook_selftest.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <thread>

#include "testlib.h"

extern "C" {
int copy_init_a(void);
int copy_attach_a(void *);
int copy_detach_a(void);
uint64_t copy_hits_a(void);
uint64_t copy_paused_a(void);
const char *copy_error_a(void);
int copy_init_b(void);
int copy_attach_b(void *);
int copy_detach_b(void);
uint64_t copy_hits_b(void);
uint64_t copy_paused_b(void);
const char *copy_error_b(void);
}

static int g_pass, g_fail;
#define CHECK(cond, ...)               \
  do {                                 \
    if (cond) {                        \
      g_pass++;                        \
    } else {                           \
      g_fail++;                        \
      std::printf("FAIL %s: ", #cond); \
      std::printf(__VA_ARGS__);        \
      std::printf("\n");               \
    }                                  \
  } while (0)

int main() {
  CHECK(copy_init_a() == 0, "a: %s", copy_error_a());
  CHECK(copy_init_b() == 0, "b: %s", copy_error_b());  // b's handler now chains to a's
  // A thread that runs user code all the time: every attach must pause it.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  std::thread spin([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      tl_add(1, 2);
      tl_fib(3);
      calls.fetch_add(1, std::memory_order_relaxed);
    }
  });
  while (calls.load() == 0) std::this_thread::yield();

  int rc = copy_attach_a(reinterpret_cast<void *>(&tl_add));
  CHECK(rc == 0, "copy a (handler installed first) attach: %d %s", rc, copy_error_a());
  CHECK(copy_paused_a() >= 1, "copy a paused %llu threads", (unsigned long long)copy_paused_a());
  rc = copy_attach_b(reinterpret_cast<void *>(&tl_fib));
  CHECK(rc == 0, "copy b attach: %d %s", rc, copy_error_b());
  CHECK(copy_paused_b() >= 1, "copy b paused %llu threads", (unsigned long long)copy_paused_b());

  const uint64_t seen = calls.load();
  while (calls.load() < seen + 1000) std::this_thread::yield();
  CHECK(copy_hits_a() > 0, "a's listener ran %llu times", (unsigned long long)copy_hits_a());
  CHECK(copy_hits_b() > 0, "b's listener ran %llu times", (unsigned long long)copy_hits_b());

  rc = copy_detach_a();
  CHECK(rc == 0, "copy a detach: %d", rc);
  rc = copy_detach_b();
  CHECK(rc == 0, "copy b detach: %d", rc);
  stop = true;
  spin.join();
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
