#include <sys/syscall.h>
#include <time.h>
#include <cstdio>
#include <string>
#include "../dispatch.h"
static uint64_t now() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
static int prog(void *p, void *, size_t, uint64_t *r0) { ++*static_cast<uint64_t *>(p); *r0 = 0; return 0; }
static uint64_t jitlike_count = 0;
static uint64_t jitprog(void *, size_t) { ++jitlike_count; return 0; }
int main() {
  uint64_t hits = 0;
  sc::Attachment a{}; a.run = prog; a.prog = &hits; a.reads_probe = false;
  bh_sc_private_data pd{0, 2, SYS_getppid, 0};
  std::string err;
  const int N = 20000000;
  bh_tt_call c{}; c.nr = SYS_getppid;
  for (int round = 0; round < 3; round++) {
    int64_t ret;
    uint64_t t0 = now();
    for (int i = 0; i < N; i++) { ret = 0; if (sc::hook_enter(nullptr, &c, &ret) == 0) ret = 1; sc::hook_exit(nullptr, &c, &ret); asm volatile("" ::"r"(ret)); }
    uint64_t t1 = now();
    printf("%s: %.2f ns per enter+exit\n", round == 0 ? "nothing attached" : round == 1 ? "run()" : "jit()", double(t1 - t0) / N);
    if (round == 0) sc::add(a, pd, nullptr, &err);
    if (round == 1) { bool e; sc::remove(0, nullptr, &e); a.run = prog; a.jit = jitprog; sc::add(a, pd, nullptr, &err); }
  }
}
