// Per-thread state, the registry of threads, and grace periods.
//
// Read side (the hot path, see dispatch.cpp): a thread makes its counter odd,
// loads a function's listener set, runs the listeners, makes the counter even
// again.  No fence: writers pay instead, with membarrier(PRIVATE_EXPEDITED),
// which runs a full barrier on every CPU running one of our threads.  After
// that barrier every reader either has published its odd counter or will
// load the new set; grace_period() then waits for each odd counter to move.
// Without membarrier, readers fall back to a full fence (g_reader_fence).

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/mman.h>

#include <new>

#include "internal.h"
#include "sys.h"

namespace bh {

__thread ThreadState *tls_state __attribute__((tls_model("initial-exec"))) = nullptr;
ThreadState g_sentinel;
bool g_reader_fence = false;

namespace {

// 4096 return-probe frames per thread: 320 KiB of address space, committed
// only as deep as the thread's probed recursion goes.
constexpr uint32_t kShadowCap = 4096;
constexpr size_t kHeader = (sizeof(ThreadState) + 63) & ~size_t(63);
constexpr size_t kStateBytes = kHeader + size_t(kShadowCap) * sizeof(ShadowEntry);

std::atomic<ThreadState *> g_head{nullptr};
pthread_key_t g_key;

void on_thread_exit(void *p) {
  auto *t = static_cast<ThreadState *>(p);
  tls_state = &g_sentinel;  // destructors that run after this one skip probes
  // pthread_exit() from inside a listener leaves the counter odd; a dead
  // thread must not stall grace periods.
  uint64_t c = t->ctr.load(std::memory_order_relaxed);
  if (c & 1) t->ctr.store(c + 1, std::memory_order_release);
  t->top = 0;
  t->current = nullptr;
  sys::call6(SYS_madvise, reinterpret_cast<long>(t->stack), static_cast<long>(kShadowCap * sizeof(ShadowEntry)),
             MADV_DONTNEED);
  t->in_use.store(false, std::memory_order_release);
}

void after_fork_child() {
  // Only the forking thread exists in the child: free every other state.
  ThreadState *self = tls_state;
  for (ThreadState *t = g_head.load(std::memory_order_acquire); t; t = t->next) {
    if (t == self || !t->in_use.load(std::memory_order_relaxed)) continue;
    uint64_t c = t->ctr.load(std::memory_order_relaxed);
    if (c & 1) t->ctr.store(c + 1, std::memory_order_relaxed);
    t->top = 0;
    t->current = nullptr;
    t->in_use.store(false, std::memory_order_release);
  }
  if (self && self != &g_sentinel) self->tid = sys::gettid();
}

}  // namespace

void threads_init() {
  g_sentinel.ctr.store(1, std::memory_order_relaxed);
  pthread_key_create(&g_key, on_thread_exit);
  if (sys::membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) < 0) g_reader_fence = true;
  pthread_atfork(nullptr, nullptr, after_fork_child);
}

ThreadState *thread_state_init() {
  tls_state = &g_sentinel;  // probes nested in this set-up are skipped
  const int tid = sys::gettid();
  ThreadState *t = nullptr;
  for (ThreadState *s = g_head.load(std::memory_order_acquire); s; s = s->next) {
    bool expected = false;
    if (!s->in_use.load(std::memory_order_relaxed) &&
        s->in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      t = s;
      break;
    }
  }
  if (!t) {
    void *mem = sys::mmap(nullptr, kStateBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (sys::mmap_failed(mem)) {
      tls_state = nullptr;  // try again on the next probe
      return &g_sentinel;
    }
    t = new (mem) ThreadState;
    t->stack = reinterpret_cast<ShadowEntry *>(static_cast<char *>(mem) + kHeader);
    t->cap = kShadowCap;
    t->in_use.store(true, std::memory_order_relaxed);
    ThreadState *head = g_head.load(std::memory_order_relaxed);
    do {
      t->next = head;
    } while (!g_head.compare_exchange_weak(head, t, std::memory_order_release, std::memory_order_relaxed));
  }
  t->tid = tid;
  t->top = 0;
  t->current = nullptr;
  pthread_setspecific(g_key, t);
  tls_state = t;
  return t;
}

bool shadow_refers(bool (*pred)(const HookCore *, void *), void *ctx) {
  for (ThreadState *t = g_head.load(std::memory_order_acquire); t; t = t->next) {
    const uint32_t top = t->top < t->cap ? t->top : t->cap;
    for (uint32_t i = 0; i < top; i++)
      if (pred(t->stack[i].hook, ctx)) return true;
  }
  return false;
}

bool in_probe() {
  ThreadState *t = tls_state;
  return t && t != &g_sentinel && (t->ctr.load(std::memory_order_relaxed) & 1);
}

namespace {
// Grace periods are numbered as they start; g_gp_done is the highest number
// of one that has completed.
std::atomic<uint64_t> g_gp_started{0}, g_gp_done{0};
}  // namespace

uint64_t grace_ticket() { return g_gp_started.load(); }
bool grace_passed(uint64_t ticket) { return g_gp_done.load() > ticket; }

void grace_period() {
  const uint64_t seq = g_gp_started.fetch_add(1) + 1;
  if (g_reader_fence)
    std::atomic_thread_fence(std::memory_order_seq_cst);
  else
    sys::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
  ThreadState *self = tls_state;
  for (ThreadState *t = g_head.load(std::memory_order_acquire); t; t = t->next) {
    if (t == self) continue;
    const uint64_t c = t->ctr.load(std::memory_order_acquire);
    if (!(c & 1)) continue;
    for (unsigned spins = 0; t->ctr.load(std::memory_order_acquire) == c; spins++) {
      if (spins < 64)
        __builtin_ia32_pause();
      else if (spins < 2000)
        sys::sched_yield();
      else
        sys::nanosleep_ns(100000);
    }
  }
  uint64_t done = g_gp_done.load();
  while (done < seq && !g_gp_done.compare_exchange_weak(done, seq)) {
  }
}

}  // namespace bh

extern "C" uint32_t bh_hook_thread_shadow_depth(void) {
  bh::ThreadState *t = bh::tls_state;
  return (t && t != &bh::g_sentinel) ? t->top : 0;
}
