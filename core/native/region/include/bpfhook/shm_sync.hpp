// Synchronisation on plain integers that live in shared memory.
//
// The region's structures are plain C structs (region.h, maps' storage) that
// several processes map, so they cannot hold std::atomic or std::mutex
// objects: std::mutex is not process-shared, and std::atomic objects are never
// constructed in memory that another process created. GCC's __atomic builtins
// work on ordinary aligned integers and compile to the same lock-free
// instructions, which are coherent across processes sharing the pages.
#pragma once

#include <errno.h>
#include <sched.h>

#include <cstdint>

namespace bpfhook::shm {

template <class T>
inline T load_relaxed(const T *p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
template <class T>
inline T load_acquire(const T *p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
template <class T>
inline void store_relaxed(T *p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
template <class T>
inline void store_release(T *p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
template <class T>
inline T fetch_add(T *p, T v) {
  return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}
template <class T>
inline T fetch_add_relaxed(T *p, T v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
template <class T>
inline bool cas(T *p, T &expected, T desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
inline void fence_acquire() { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
inline void fence_release() { __atomic_thread_fence(__ATOMIC_RELEASE); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Backoff for spinning waiters. User-space threads get preempted while
// holding a lock (the kernel's spinlocks disable preemption; ours cannot), so
// after a short spin a waiter yields the CPU instead of burning its time
// slice waiting for a holder that is not running.
class Backoff {
 public:
  void pause() {
    if (++spins_ < 64) {
      cpu_relax();
    } else {
      sched_yield();
    }
  }

 private:
  uint32_t spins_ = 0;
};

// ---- locks that survive the death of their holder ----
//
// Every lock word in the region records who holds it: the holder's kernel
// thread id (tids are below 2^22, PID_MAX_LIMIT). Another process maps the
// region, so a holder can be killed (kill -9) at any point of its section.
// A waiter that has spun for a while checks whether the recorded thread still
// exists (owner_dead: /proc/<tid>/stat missing or a zombie, or kill() saying
// ESRCH) and, if not, takes the lock over with a CAS from the exact word it
// saw, so two waiters cannot both take it. Limits: tids are only meaningful
// inside one pid namespace (all processes sharing a region must be in the
// same one), and a dead holder whose tid the kernel already gave to a new
// thread looks alive: the waiter then gives up after its bound (-EBUSY)
// instead of taking over.
//
// No wait is unbounded. Two budgets:
// - kProbe: a helper called from a program (a probe on the application's
//   thread): short (kProbeWaitNs), then -EBUSY, which the caller counts in
//   the map's busy counter, as the kernel's maps answer -EBUSY when a bucket
//   is locked by a reentrant program;
// - kUser: the TS API / C API of user space (and the directory lock):
//   kUserWaitNs, then -EBUSY with the map's name in the TS error.
// A holder that is the calling thread itself (a probe that fired inside a
// write section on the same thread) gets -EDEADLK at once: waiting would
// never end.
//
// Results of the lock functions: kLocked (0), kTakenOver (1: the previous
// holder died inside its section; the caller repairs what that section may
// have left, see each structure's comment), -EBUSY, -EDEADLK.
enum class Wait : uint8_t { kProbe, kUser };
constexpr int kLocked = 0;
constexpr int kTakenOver = 1;
constexpr uint64_t kProbeWaitNs = 20ull * 1000 * 1000;   // 20 ms
constexpr uint64_t kUserWaitNs = 1000ull * 1000 * 1000;  // 1 s
// Lock-free readers retry when a writer changed the word during their read;
// after this many changes in a row they give up (not found / -EBUSY) rather
// than loop for as long as writers keep writing.
constexpr uint32_t kReadRetries = 1u << 16;

}  // namespace bpfhook::shm

// The calling thread's tid, cached per thread (reset in a forked child).
// initial-exec: one TLS load on the lock fast path, no __tls_get_addr.
extern "C" __thread uint32_t bh_shm_self_tid __attribute__((tls_model("initial-exec")));

namespace bpfhook::shm {

uint32_t self_tid_slow();
inline uint32_t self_tid() {
  uint32_t t = bh_shm_self_tid;
  return __builtin_expect(t != 0, 1) ? t : self_tid_slow();
}
// True only when thread `tid` surely no longer runs (see above).
bool owner_dead(uint32_t tid);
uint64_t mono_ns();

// Slow paths (shm_sync.cpp): the fast paths below inline one CAS.
int spin_lock_slow(uint32_t *word, uint32_t me, Wait wait);
int spin_try_lock_slow(uint32_t *word, uint32_t me);
int seq_lock_slow(uint64_t *word, uint32_t me, Wait wait);

// Spinlock on a 32-bit word: 0 free, the holder's tid while held.
inline int spin_lock(uint32_t *word, Wait wait) {
  const uint32_t me = self_tid();
  uint32_t expected = 0;
  if (__atomic_compare_exchange_n(word, &expected, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return kLocked;
  return spin_lock_slow(word, me, wait);
}
// One attempt, plus takeover from a dead holder: kLocked, kTakenOver or
// -EBUSY (a live holder, or the caller itself: -EDEADLK).
inline int spin_trylock(uint32_t *word) {
  const uint32_t me = self_tid();
  uint32_t expected = 0;
  if (__atomic_compare_exchange_n(word, &expected, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return kLocked;
  return spin_try_lock_slow(word, me);
}
inline void spin_unlock(uint32_t *word) { store_release(word, 0u); }

// Holds a spinlock for a scope if it got it: check ok() / result().
class SpinGuard {
 public:
  SpinGuard(uint32_t *word, Wait wait) : word_(word), rc_(spin_lock(word, wait)) {}
  ~SpinGuard() {
    if (rc_ >= 0) spin_unlock(word_);
  }
  bool ok() const { return rc_ >= 0; }
  int result() const { return rc_; }
  SpinGuard(const SpinGuard &) = delete;
  SpinGuard &operator=(const SpinGuard &) = delete;

 private:
  uint32_t *word_;
  int rc_;
};

// A write lock and a sequence count in one 64-bit word ("seqlock"): the low
// 32 bits count (odd = a write in progress), the high 32 bits hold the
// writer's tid while odd and 0 while even.
//
// Writers serialise on it: lock turns (even s, 0) into (s + 1, tid) with a
// CAS, unlock stores (s + 2, 0). Readers take no lock: they note the whole
// word, read optimistically, then check that the word has not changed; if it
// has, some writer ran during the read and the reader retries (at most
// kReadRetries times). Readers do not wait for odd values: writers keep the
// protected structure consistent at every single store, and the change check
// alone catches the one real hazard, memory that a writer retired (and
// someone reused) while the reader was looking at it. That only works if
// retired memory is handed back for reuse after the writer's unlock, which is
// the rule every user of this class follows. Because of that, a writer that
// died holding the word leaves readers unharmed: the word stays put.
//
// Takeover turns (s odd, dead) into (s + 2, me): still odd, and different
// from every value a reader can have noted (the count only grows), so readers
// that overlapped the dead writer's section retry, and the next even value
// (s + 3) was never seen before either.
struct SeqLock {
  static uint32_t count(uint64_t w) { return uint32_t(w); }
  static uint32_t owner(uint64_t w) { return uint32_t(w >> 32); }
  static uint64_t held(uint32_t count, uint32_t owner) { return (uint64_t(owner) << 32) | count; }

  static int write_lock(uint64_t *word, Wait wait) {
    const uint32_t me = self_tid();
    uint64_t v = load_relaxed(word);
    if ((v & 1u) == 0 &&
        __atomic_compare_exchange_n(word, &v, held(count(v) + 1, me), false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
      // Keep the protected stores after the odd value is visible (pairs
      // with the readers' acquire fence in read_changed).
      fence_release();
      return kLocked;
    }
    return seq_lock_slow(word, me, wait);
  }
  static void write_unlock(uint64_t *word) {
    uint64_t v = load_relaxed(word);
    store_release(word, uint64_t(count(v) + 1));
  }
  static uint64_t read_begin(const uint64_t *word) { return load_acquire(word); }
  static bool read_changed(const uint64_t *word, uint64_t seen) {
    fence_acquire();
    return load_relaxed(word) != seen;
  }
};

class SeqWriteGuard {
 public:
  SeqWriteGuard(uint64_t *word, Wait wait) : word_(word), rc_(SeqLock::write_lock(word, wait)) {}
  ~SeqWriteGuard() {
    if (rc_ >= 0) SeqLock::write_unlock(word_);
  }
  bool ok() const { return rc_ >= 0; }
  int result() const { return rc_; }
  SeqWriteGuard(const SeqWriteGuard &) = delete;
  SeqWriteGuard &operator=(const SeqWriteGuard &) = delete;

 private:
  uint64_t *word_;
  int rc_;
};

}  // namespace bpfhook::shm
